/* multi.c — several named arrays in one sample (layout in ext.h): the
 * directory's encoding and its validated decoding, Writer.publish of a
 * dict, and SamplePart, the read-only exporter of one array of a Sample.
 *
 * Lifetime: Sample[name] is numpy.asarray(SamplePart).  A SamplePart holds
 * a strong reference to its Sample and each of its buffer views is one
 * export of that Sample (zdext_sample_export), so the array pins the
 * sample exactly as a memoryview of the whole sample does: release()
 * refuses with ViewsAliveError while it lives.
 */
#include "ext.h"

#include <errno.h>
#include <string.h>

static uint64_t
align_up(uint64_t v)
{
	return (v + ZDEXT_DIR_ALIGN - 1) & ~(uint64_t)(ZDEXT_DIR_ALIGN - 1);
}

/* --------------------------------------------------------------------------
 * Writing
 * ------------------------------------------------------------------------ */

void
zdext_dir_clear(zdext_dir *d)
{
	int i;

	for (i = 0; i < d->n; i++)
		Py_CLEAR(d->names[i]);
}

void
zdext_name_error(PyObject *key, const char *fn)
{
	PyObject *type, *value, *tb;

	PyObject *msg;
	const char *m;
	size_t fl = strlen(fn);

	PyErr_Fetch(&type, &value, &tb);
	PyErr_NormalizeException(&type, &value, &tb);
	msg = value != NULL ? PyObject_Str(value) : NULL;
	m = msg != NULL ? PyUnicode_AsUTF8(msg) : NULL;
	if (m == NULL) {
		PyErr_Clear();
		m = "";
	}
	/* "publish(): ..." from the single-array check: say it once. */
	if (strncmp(m, fn, fl) == 0 && strncmp(m + fl, "(): ", 4) == 0)
		m += fl + 4;
	PyErr_Format(type, "%s(): the array %.200R: %s", fn, key, m);
	Py_XDECREF(msg);
	Py_XDECREF(type);
	Py_XDECREF(value);
	Py_XDECREF(tb);
}

int
zdext_dir_check_dict(PyObject *dict, const char *fn)
{
	Py_ssize_t n;

	if (!PyDict_Check(dict)) {
		PyErr_Format(PyExc_TypeError,
			     "%s() needs a dict of named arrays, got %.200R (%s)",
			     fn, dict, Py_TYPE(dict)->tp_name);
		return -1;
	}
	n = PyDict_GET_SIZE(dict);
	if (n < 1 || n > ZDEXT_DIR_MAX) {
		PyErr_Format(PyExc_ValueError,
			     "%s() takes 1..%d named arrays, got %zd", fn,
			     ZDEXT_DIR_MAX, n);
		return -1;
	}
	return 0;
}

int
zdext_dir_add(zdext_dir *d, PyObject *key, const zdext_layout *lay,
	      const char *fn)
{
	const char *s;
	Py_ssize_t len;
	uint64_t off;
	int i;

	if (!PyUnicode_Check(key)) {
		PyErr_Format(PyExc_TypeError,
			     "%s(): array names must be str, got %.200R (%s)", fn,
			     key, Py_TYPE(key)->tp_name);
		return -1;
	}
	s = PyUnicode_AsUTF8AndSize(key, &len);
	if (s == NULL) {
		PyErr_Clear();
		PyErr_Format(PyExc_ValueError,
			     "%s(): the array name %.200R is not valid UTF-8", fn, key);
		return -1;
	}
	if (len < 1 || len > ZDEXT_DIR_NAME_MAX || (size_t)len != strlen(s)) {
		PyErr_Format(PyExc_ValueError,
			     "%s(): the array name %.200R must be 1..%d UTF-8 bytes "
			     "without NUL (it has %zd)", fn, key, ZDEXT_DIR_NAME_MAX,
			     len);
		return -1;
	}
	if (d->n >= ZDEXT_DIR_MAX) {
		PyErr_Format(PyExc_ValueError, "%s() takes at most %d named arrays",
			     fn, ZDEXT_DIR_MAX);
		return -1;
	}
	for (i = 0; i < d->n; i++) {
		if (PyUnicode_Compare(d->names[i], key) == 0) {
			PyErr_Format(PyExc_ValueError,
				     "%s(): the array name %.200R is given twice",
				     fn, key);
			return -1;
		}
	}
	/* Every bytes count is at most the largest capacity (< 2**41) and
	 * there are at most 16 arrays: no overflow. */
	off = align_up(d->n == 0 ? (uint64_t)ZDEXT_DIR_ENTRY * ZDEXT_DIR_MAX
			       : d->total);
	d->names[d->n] = Py_NewRef(key);
	d->lay[d->n] = *lay;
	d->off[d->n] = off;
	d->total = off + lay->nbytes;
	d->n++;
	return 0;
}

/* The directory takes n entries; zdext_dir_add laid the arrays out after
 * ZDEXT_DIR_MAX entries (n is not known while adding), so move them down. */
static void
dir_pack(zdext_dir *d)
{
	uint64_t shift = (uint64_t)ZDEXT_DIR_ENTRY * (ZDEXT_DIR_MAX - d->n);
	int i;

	if (d->n == 0)
		return;
	for (i = 0; i < d->n; i++)
		d->off[i] -= shift;
	d->total -= shift;
}

int
zdext_dir_finish(zdext_state *st, zdext_dir *d, uint64_t capacity,
		 const char *fn)
{
	int i;

	dir_pack(d);
	/* An empty array's span counts too: a reader bounds each entry by
	 * the capacity of the slot (zdext_meta_decode). */
	d->need = d->total;
	for (i = 0; i < d->n; i++) {
		uint64_t span = zdext_layout_span(&d->lay[i]);

		if (span > d->need)
			d->need = span;
	}
	if (d->total <= capacity)
		return 0;
	PyErr_Format(st->SampleTooLargeError,
		     "%s(): the %d arrays with their directory need %llu bytes, "
		     "more than the largest slot capacity %llu", fn, d->n,
		     (unsigned long long)d->total, (unsigned long long)capacity);
	return -1;
}

void
zdext_dir_encode(const zdext_dir *d, uint8_t *meta, uint8_t *data)
{
	uint8_t m[ZD_SLOT_META_SIZE];
	uint8_t e[ZDEXT_DIR_ENTRY];
	int i;

	for (i = 0; i < d->n; i++) {
		Py_ssize_t len;
		const char *s = PyUnicode_AsUTF8AndSize(d->names[i], &len);

		/* Checked by zdext_dir_add: the UTF-8 is cached, no failure. */
		memset(e, 0, sizeof(e));
		zdext_meta_encode(&d->lay[i], e);
		zdext_put_le64(e + 64, d->off[i]);
		zdext_put_le64(e + 72, d->lay[i].nbytes);
		e[80] = (uint8_t)len;
		memcpy(e + ZDEXT_DIR_NAME_OFF, s, (size_t)len);
		memcpy(data + (size_t)i * ZDEXT_DIR_ENTRY, e, sizeof(e));
	}
	memset(m, 0, sizeof(m));
	m[0] = ZDEXT_META_MAGIC0;
	m[1] = ZDEXT_DIR_MAGIC1;
	m[2] = ZDEXT_DIR_VERSION;
	m[3] = (uint8_t)d->n;
	zdext_put_le64(m + 8, (uint64_t)d->n * ZDEXT_DIR_ENTRY);
	memcpy(meta, m, sizeof(m));
}

/* --------------------------------------------------------------------------
 * Reading: everything is copied out of the slot once, then checked.
 * ------------------------------------------------------------------------ */

/* Decodes the directory of a pinned sample.  Returns 0 (d->n == 0: not
 * several arrays; or d filled, names owned), or -1 with `why` set to the
 * fault (nothing owned). */
static int
dir_decode(const uint8_t *meta_shm, const uint8_t *data_shm, uint64_t size,
	   uint64_t capacity, zdext_dir *d, char *why, size_t whylen)
{
	uint8_t m[ZD_SLOT_META_SIZE];
	uint8_t dir[ZDEXT_DIR_ENTRY * ZDEXT_DIR_MAX];
	uint64_t dir_bytes, end;
	int n, i, j;

	memset(d, 0, sizeof(*d));
	memcpy(m, meta_shm, sizeof(m));
	if (m[0] != ZDEXT_META_MAGIC0 || m[1] != ZDEXT_DIR_MAGIC1)
		return 0;
	n = m[3];
	dir_bytes = zdext_get_le64(m + 8);
	if (m[2] != ZDEXT_DIR_VERSION) {
		PyOS_snprintf(why, whylen, "directory version %d (this build reads "
			      "version %d)", m[2], ZDEXT_DIR_VERSION);
		return -1;
	}
	if (n < 1 || n > ZDEXT_DIR_MAX) {
		PyOS_snprintf(why, whylen, "%d arrays (1..%d)", n, ZDEXT_DIR_MAX);
		return -1;
	}
	for (i = 4; i < (int)ZD_SLOT_META_SIZE; i++) {
		if (i < 16 && i >= 8)
			continue;
		if (m[i] != 0) {
			PyOS_snprintf(why, whylen, "meta byte %d is not 0", i);
			return -1;
		}
	}
	if (dir_bytes != (uint64_t)n * ZDEXT_DIR_ENTRY || dir_bytes > size) {
		PyOS_snprintf(why, whylen, "a directory of %llu bytes for %d arrays "
			      "in a sample of %llu bytes",
			      (unsigned long long)dir_bytes, n,
			      (unsigned long long)size);
		return -1;
	}
	memcpy(dir, data_shm, (size_t)dir_bytes);
	end = dir_bytes;
	for (i = 0; i < n; i++) {
		const uint8_t *e = dir + (size_t)i * ZDEXT_DIR_ENTRY;
		uint64_t off = zdext_get_le64(e + 64), nbytes = zdext_get_le64(e + 72), stop;
		size_t len = e[80];
		const char *name = (const char *)e + ZDEXT_DIR_NAME_OFF;
		size_t k;

		if (!zdext_meta_decode(e, nbytes, capacity, &d->lay[i])) {
			PyOS_snprintf(why, whylen, "entry %d: its format and shape "
				      "do not describe its %llu bytes", i,
				      (unsigned long long)nbytes);
			goto bad;
		}
		if (off % ZDEXT_DIR_ALIGN != 0 || off < end ||
		    __builtin_add_overflow(off, nbytes, &stop) || stop > size) {
			PyOS_snprintf(why, whylen, "entry %d: %llu bytes at offset "
				      "%llu (aligned to %d, from %llu, within the "
				      "%llu committed bytes)", i,
				      (unsigned long long)nbytes,
				      (unsigned long long)off, ZDEXT_DIR_ALIGN,
				      (unsigned long long)end,
				      (unsigned long long)size);
			goto bad;
		}
		if (len < 1 || len > ZDEXT_DIR_NAME_MAX ||
		    memchr(name, '\0', len) != NULL) {
			PyOS_snprintf(why, whylen, "entry %d: a name of %zu bytes "
				      "(1..%d, no NUL)", i, len, ZDEXT_DIR_NAME_MAX);
			goto bad;
		}
		for (k = len; k < ZDEXT_DIR_NAME_MAX; k++) {
			if (name[k] != '\0') {
				PyOS_snprintf(why, whylen, "entry %d: the name is "
					      "not NUL padded", i);
				goto bad;
			}
		}
		d->names[i] = PyUnicode_DecodeUTF8(name, (Py_ssize_t)len, "strict");
		if (d->names[i] == NULL) {
			PyErr_Clear();
			PyOS_snprintf(why, whylen, "entry %d: the name is not "
				      "valid UTF-8", i);
			goto bad;
		}
		d->n = i + 1;      /* owned so far, for the cleanup */
		for (j = 0; j < i; j++) {
			if (PyUnicode_Compare(d->names[j], d->names[i]) == 0) {
				PyOS_snprintf(why, whylen, "entry %d: the name "
					      "%s is used twice", i,
					      PyUnicode_AsUTF8(d->names[i]));
				goto bad;
			}
		}
		d->off[i] = off;
		end = stop;
	}
	d->n = n;
	d->total = end;
	return 0;
bad:
	zdext_dir_clear(d);
	d->n = 0;
	return -1;
}

const zdext_dir *
zdext_sample_dir(SampleObject *s)
{
	static const zdext_dir none = {0};
	zdext_state *st = zdext_state_of((PyObject *)s);
	zdext_dir d;
	char why[200];

	if (zdext_sample_check(s) < 0)
		return NULL;
	if (s->dir != NULL)
		return s->dir;
	/* Each entry is bounded by the capacity of the sample's own slot
	 * (its size class), as a writer's loan was. */
	if (dir_decode(s->view.meta, s->view.data, s->view.size,
		       zd_segment_slot_capacity_of(s->segment->seg, s->view.slot),
		       &d, why, sizeof(why)) < 0) {
		PyErr_Format(st->CorruptSegmentError,
			     "the sample of slot %u, sn %llu has an invalid array "
			     "directory: %s (its bytes are still readable as the "
			     "raw sample)", (unsigned)s->view.slot,
			     (unsigned long long)s->view.sn, why);
		return NULL;
	}
	if (d.n == 0)
		return &none;
	s->dir = PyMem_Malloc(sizeof(d));
	if (s->dir == NULL) {
		zdext_dir_clear(&d);
		PyErr_NoMemory();
		return NULL;
	}
	*s->dir = d;
	return s->dir;
}

/* --------------------------------------------------------------------------
 * SamplePart: one array of a sample, exported read-only
 * ------------------------------------------------------------------------ */

typedef struct SamplePartObject {
	PyObject_HEAD
	SampleObject *sample;     /* strong                                   */
	uint64_t off;
	zdext_layout lay;
} SamplePartObject;

PyObject *
zdext_sample_array(SampleObject *s, int i)
{
	zdext_state *st = zdext_state_of((PyObject *)s);
	SamplePartObject *p;
	PyObject *arr;

	if (st->np_asarray == NULL) {
		PyObject *np = PyImport_ImportModule("numpy");

		if (np == NULL)
			return NULL;
		st->np_asarray = PyObject_GetAttrString(np, "asarray");
		Py_DECREF(np);
		if (st->np_asarray == NULL)
			return NULL;
	}
	p = PyObject_New(SamplePartObject, st->sample_part_type);
	if (p == NULL)
		return NULL;
	p->sample = (SampleObject *)Py_NewRef(s);
	p->off = s->dir->off[i];
	p->lay = s->dir->lay[i];
	arr = PyObject_CallOneArg(st->np_asarray, (PyObject *)p);
	Py_DECREF(p);
	return arr;
}

static int
part_getbuffer(SamplePartObject *p, Py_buffer *view, int flags)
{
	view->obj = NULL;
	if (zdext_sample_check(p->sample) < 0)
		return -1;
	if (zdext_fill_readonly_view(view, flags, (PyObject *)p,
				     (const uint8_t *)p->sample->view.data + p->off,
				     (Py_ssize_t)p->lay.nbytes, &p->lay,
				     "an array of a Sample") < 0)
		return -1;
	zdext_sample_export(p->sample);
	return 0;
}

static void
part_releasebuffer(SamplePartObject *p, Py_buffer *Py_UNUSED(view))
{
	zdext_sample_unexport(p->sample);
}

static void
part_dealloc(SamplePartObject *p)
{
	PyTypeObject *tp = Py_TYPE(p);

	Py_DECREF(p->sample);
	tp->tp_free((PyObject *)p);
	Py_DECREF(tp);
}

static PyObject *
part_repr(SamplePartObject *p)
{
	return PyUnicode_FromFormat("<zdshm.SamplePart of sn %llu format=%s "
				    "ndim=%d>",
				    (unsigned long long)p->sample->view.sn,
				    p->lay.format, p->lay.ndim);
}

static PyMethodDef part_methods[] = {
	{"__reduce_ex__", (PyCFunction)zdext_reduce_ex, METH_O,
	 "__reduce_ex__($self, protocol, /)\n--\n\n"
	 "Refused (TypeError): pickle a copy of the array."},
#if PY_VERSION_HEX < 0x030C0000
	{"__buffer__", (PyCFunction)zdext_dunder_buffer, METH_O, ZDEXT_BUFFER_DOC},
#endif
	{NULL, NULL, 0, NULL},
};

static PyType_Slot part_slots[] = {
	{Py_tp_doc, "One array of a Sample of several arrays: the base of "
		    "sample[name]; each buffer view is an export of the sample."},
	{Py_tp_dealloc, part_dealloc},
	{Py_tp_repr, part_repr},
	{Py_tp_methods, part_methods},
	{Py_bf_getbuffer, part_getbuffer},
	{Py_bf_releasebuffer, part_releasebuffer},
	{0, NULL},
};

PyType_Spec zdext_sample_part_spec = {
	.name = "zdshm.SamplePart",
	.basicsize = sizeof(SamplePartObject),
	.flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_DISALLOW_INSTANTIATION |
		 Py_TPFLAGS_IMMUTABLETYPE,
	.slots = part_slots,
};

/* --------------------------------------------------------------------------
 * Writer.publish of a dict
 * ------------------------------------------------------------------------ */

PyObject *
zdext_publish_arrays(WriterObject *w, PyObject *dict, uint64_t timeout_ns,
		     int try_)
{
	const char *fn = try_ ? "try_publish" : "publish";
	zdext_state *st = zdext_state_of((PyObject *)w);
	SegmentObject *seg = w->segment;
	Py_buffer v[ZDEXT_DIR_MAX];
	PyObject *items = NULL, *r = NULL;
	zdext_dir d;
	uint64_t sn = 0, cap;
	uint32_t slot;
	void *data = NULL, *meta = NULL;
	Py_ssize_t n, i, got = 0;
	int rc;

	memset(&d, 0, sizeof(d));
	if (zdext_dir_check_dict(dict, fn) < 0)
		return NULL;
	/* A snapshot: a value's __buffer__ cannot change what is iterated. */
	items = PyDict_Items(dict);
	if (items == NULL)
		return NULL;
	n = PyList_GET_SIZE(items);
	if (n < 1 || n > ZDEXT_DIR_MAX) {
		zdext_dir_check_dict(dict, fn);
		goto done;
	}
	for (i = 0; i < n; i++) {
		PyObject *key = PyTuple_GET_ITEM(PyList_GET_ITEM(items, i), 0);
		PyObject *val = PyTuple_GET_ITEM(PyList_GET_ITEM(items, i), 1);
		zdext_layout lay;

		if (!PyUnicode_Check(key)) {
			PyErr_Format(PyExc_TypeError,
				     "%s(): array names must be str, got %.200R (%s)",
				     fn, key, Py_TYPE(key)->tp_name);
			goto done;
		}
		if (!PyObject_CheckBuffer(val)) {
			PyErr_Format(PyExc_TypeError,
				     "%s(): the array %.200R must support the buffer "
				     "protocol, got %.200R (%s)", fn, key, val,
				     Py_TYPE(val)->tp_name);
			goto done;
		}
		if (PyObject_GetBuffer(val, &v[got], PyBUF_C_CONTIGUOUS |
				       PyBUF_FORMAT) < 0) {
			PyObject *type, *value, *tb;

			PyErr_Fetch(&type, &value, &tb);
			PyErr_Format(PyExc_ValueError,
				     "%s(): the array %.200R has no C-contiguous "
				     "buffer with a format (%S; for a strided array "
				     "use numpy.ascontiguousarray)", fn, key,
				     value != NULL ? value : Py_None);
			Py_XDECREF(type);
			Py_XDECREF(value);
			Py_XDECREF(tb);
			goto done;
		}
		got++;
		if (zdext_layout_from_buffer(st, &v[got - 1], val,
					     seg->slot_capacity, &lay) < 0) {
			zdext_name_error(key, fn);
			goto done;
		}
		if (zdext_dir_add(&d, key, &lay, fn) < 0)
			goto done;
	}
	if (zdext_dir_finish(st, &d, seg->slot_capacity, fn) < 0 ||
	    zdext_writer_check(w) < 0)
		goto done;
	rc = try_ ? zdext_writer_try_slot(w, d.need, &slot)
		  : zdext_writer_loan_slot(w, timeout_ns, d.need, &slot);
	if (rc == 1) {
		r = Py_NewRef(Py_None);
		goto done;
	}
	if (rc < 0) {
		zdext_raise(st, rc, fn);
		goto done;
	}
	rc = zd_slot_data_ptr(seg->seg, slot, &data, &cap, &meta);
	if (rc < 0) {
		zd_slot_discard(seg->seg, slot);
		zdext_raise(st, rc, fn);
		goto done;
	}
	zdext_dir_encode(&d, meta, data);
	if (d.total >= ZDEXT_NOGIL_COPY) {
		seg->inflight++;
		Py_BEGIN_ALLOW_THREADS
		for (i = 0; i < n; i++)
			memcpy((uint8_t *)data + d.off[i], v[i].buf, (size_t)v[i].len);
		Py_END_ALLOW_THREADS
		seg->inflight--;
	} else {
		for (i = 0; i < n; i++)
			memcpy((uint8_t *)data + d.off[i], v[i].buf, (size_t)v[i].len);
	}
	rc = zd_slot_commit_in_place(seg->seg, slot, d.total, &sn);
	if (rc < 0) {
		zd_slot_discard(seg->seg, slot);
		zdext_raise(st, rc, fn);
		goto done;
	}
	r = PyLong_FromUnsignedLongLong(sn);
done:
	for (i = 0; i < got; i++)
		PyBuffer_Release(&v[i]);
	zdext_dir_clear(&d);
	Py_XDECREF(items);
	return r;
}
