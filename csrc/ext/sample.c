/* sample.c — Sample: a read-only buffer exporter over a pinned committed slot.
 *
 * A Sample holds the pin (zd_view_t) taken by zd_reader_take or
 * zd_slot_acquire: while it exists and is not released, the slot cannot be
 * recycled.  Views (memoryview, numpy array) hold a reference to the Sample,
 * so the pin outlives every view; release() refuses while views are alive;
 * collection releases automatically.  The published format and shape (slot
 * meta, see ext.h) are exported through PEP 3118 when valid.  A sample of
 * several named arrays (multi.c) exports its raw bytes and is also a small
 * read-only mapping: keys(), [name], `in`, arrays(); each array is an
 * export of the sample through a SamplePart.
 */
#include "ext.h"

#include <errno.h>
#include <string.h>

PyObject *
zdext_sample_new(zdext_state *st, SegmentObject *seg, const zd_view_t *view)
{
	SampleObject *s;

	if (view->size > (uint64_t)PY_SSIZE_T_MAX) {
		zd_slot_release(seg->seg, view);
		return zdext_raise(st, -EBADMSG, "take");
	}
	s = PyObject_New(SampleObject, st->sample_type);
	if (s == NULL) {
		zd_slot_release(seg->seg, view);
		return NULL;
	}
	s->segment = (SegmentObject *)Py_NewRef(seg);
	s->link.next = s->link.prev = &s->link;
	s->link.owner = (PyObject *)s;
	s->link.is_loan = 0;
	s->view = *view;
	s->released = 0;
	s->parsed = 0;
	s->exports = 0;
	s->dir = NULL;
	seg->n_samples++;
	zdext_exporter_made(seg);
	return (PyObject *)s;
}

/* Drops the pin (no view is left).  The core frees a closed reader's
 * entry with the release of its last pinned view.  After a detach or in
 * a fork child the pin is not this handle's to drop. */
static void
sample_unpin(SampleObject *s)
{
	if (s->released)
		return;
	s->released = 1;
	s->segment->n_samples--;
	if (zdext_segment_attached(s->segment))
		zd_slot_release(s->segment->seg, &s->view);
}

/* Decodes the meta once; the layout never changes for this Sample.  The
 * meta is copied out of the slot first; a copy equal to the segment's last
 * decoded one (same committed size, same capacity) has that layout. */
static void
sample_parse(SampleObject *s)
{
	SegmentObject *seg = s->segment;
	/* The bound of the sample's own slot (its size class). */
	uint64_t cap = zd_segment_slot_capacity_of(seg->seg, s->view.slot);
	uint8_t meta[ZD_SLOT_META_SIZE];

	if (s->parsed)
		return;
	memcpy(meta, s->view.meta, sizeof(meta));
	if (seg->meta_cached && seg->meta_size == s->view.size &&
	    seg->meta_capacity == cap &&
	    memcmp(meta, seg->meta_key, sizeof(meta)) == 0) {
		s->layout = seg->meta_layout;
	} else {
		/* Bounded shape and strides, or 1-D "B" (see the meta layout). */
		zdext_meta_decode(meta, s->view.size, cap, &s->layout);
		memcpy(seg->meta_key, meta, sizeof(meta));
		seg->meta_size = s->view.size;
		seg->meta_capacity = cap;
		seg->meta_layout = s->layout;
		seg->meta_cached = 1;
	}
	s->parsed = 1;
}

int
zdext_sample_check(SampleObject *s)
{
	if (zdext_check_owner(s->segment, "the sample") < 0)
		return -1;
	if (s->released || s->segment->seg == NULL ||
	    s->segment->state >= ZDEXT_DETACHED) {
		zdext_closed(zdext_state_of((PyObject *)s), "the sample (released)");
		return -1;
	}
	return 0;
}

/* --------------------------------------------------------------------------
 * Buffer protocol
 * ------------------------------------------------------------------------ */

static int
sample_getbuffer(SampleObject *s, Py_buffer *view, int flags)
{
	view->obj = NULL;
	if (zdext_sample_check(s) < 0)
		return -1;
	sample_parse(s);
	if (zdext_fill_readonly_view(view, flags, (PyObject *)s, s->view.data,
				     (Py_ssize_t)s->view.size, &s->layout,
				     "a Sample") < 0)
		return -1;
	zdext_sample_export(s);
	return 0;
}

/* One for Sample and SamplePart (multi.c): C-contiguous always; also
 * Fortran-contiguous with at most one dimension above 1, or when empty (as
 * PyBuffer_IsContiguous has it). */
int
zdext_fill_readonly_view(Py_buffer *view, int flags, PyObject *owner,
			 const void *buf, Py_ssize_t len, zdext_layout *lay,
			 const char *what)
{
	if (flags & PyBUF_WRITABLE) {
		PyErr_Format(PyExc_BufferError,
			     "%s is read-only: no writable views", what);
		return -1;
	}
	if ((flags & PyBUF_F_CONTIGUOUS) == PyBUF_F_CONTIGUOUS && lay->ndim > 1 &&
	    lay->nbytes != 0) {
		int d, big = 0;

		for (d = 0; d < lay->ndim; d++)
			big += lay->shape[d] > 1;
		if (big > 1) {
			PyErr_Format(PyExc_BufferError,
				     "%s is C-contiguous, not Fortran-contiguous",
				     what);
			return -1;
		}
	}
	view->buf = (void *)buf;
	view->len = len;
	view->readonly = 1;
	view->itemsize = lay->itemsize;
	view->format = (flags & PyBUF_FORMAT) ? lay->format : NULL;
	if (flags & PyBUF_ND) {
		view->ndim = lay->ndim;
		view->shape = lay->shape;
	} else {
		view->ndim = 1;
		view->shape = NULL;
	}
	view->strides = (flags & PyBUF_STRIDES) == PyBUF_STRIDES ? lay->strides : NULL;
	view->suboffsets = NULL;
	view->internal = NULL;
	view->obj = Py_NewRef(owner);
	return 0;
}

void
zdext_sample_export(SampleObject *s)
{
	if (s->exports++ == 0)
		zdext_viewed_add(s->segment, &s->link);
}

static void
sample_releasebuffer(SampleObject *s, Py_buffer *Py_UNUSED(view))
{
	zdext_sample_unexport(s);
}

void
zdext_sample_unexport(SampleObject *s)
{
	if (--s->exports > 0)
		return;
	/* A close deferred for this view: the pin goes with it. */
	if (s->segment->state >= ZDEXT_DEFERRED)
		sample_unpin(s);
	zdext_viewed_remove(s->segment, &s->link);
}

static void
sample_dealloc(SampleObject *s)
{
	PyTypeObject *tp = Py_TYPE(s);
	SegmentObject *seg = s->segment;

	/* No view is alive (each holds a reference): unpin. */
	sample_unpin(s);
	if (s->dir != NULL) {
		zdext_dir_clear(s->dir);
		PyMem_Free(s->dir);
	}
	tp->tp_free((PyObject *)s);
	Py_DECREF(tp);
	zdext_exporter_gone(seg);
	Py_DECREF(seg);
}

/* --------------------------------------------------------------------------
 * Methods
 * ------------------------------------------------------------------------ */

static PyObject *
sample_release(SampleObject *s, PyObject *Py_UNUSED(ignored))
{
	if (zdext_check_owner(s->segment, "the sample") < 0)
		return NULL;
	if (s->released || s->segment->seg == NULL ||
	    s->segment->state >= ZDEXT_DETACHED)
		Py_RETURN_NONE;
	if (s->exports > 0) {
		char what[64];

		PyOS_snprintf(what, sizeof(what), "the sample of slot %u, sn %llu",
			      (unsigned)s->view.slot,
			      (unsigned long long)s->view.sn);
		return zdext_views_alive(zdext_state_of((PyObject *)s), s->exports,
					 what, "release");
	}
	sample_unpin(s);
	Py_RETURN_NONE;
}

static PyObject *
sample_tobytes(SampleObject *s, PyObject *Py_UNUSED(ignored))
{
	if (zdext_sample_check(s) < 0)
		return NULL;
	return PyBytes_FromStringAndSize(s->view.data, (Py_ssize_t)s->view.size);
}

static PyObject *
sample_dlpack(SampleObject *s, PyObject *const *args, Py_ssize_t nargs,
	      PyObject *kwnames)
{
	zdext_dlpack_req req;

	if (zdext_dlpack_args(args, nargs, kwnames, &req) < 0 ||
	    zdext_sample_check(s) < 0)
		return NULL;
	sample_parse(s);
	return zdext_dlpack_export((PyObject *)s, &s->layout, 1, &req);
}

static PyObject *
sample_enter(SampleObject *s, PyObject *Py_UNUSED(ignored))
{
	if (zdext_sample_check(s) < 0)
		return NULL;
	return Py_NewRef(s);
}

static PyObject *
sample_exit(SampleObject *s, PyObject *const *Py_UNUSED(args),
	    Py_ssize_t Py_UNUSED(nargs))
{
	PyObject *r;

	if (zdext_foreign(s->segment))
		Py_RETURN_FALSE;    /* a fork child: the pin stays the owner's */
	r = sample_release(s, NULL);
	if (r == NULL)
		return NULL;
	Py_DECREF(r);
	Py_RETURN_FALSE;
}

/* --------------------------------------------------------------------------
 * Several named arrays (multi.c): a small read-only mapping surface.
 * ------------------------------------------------------------------------ */

/* The index of `key` in dir, -1 if absent (a str key only). */
static int
dir_find(const zdext_dir *dir, PyObject *key)
{
	int i;

	for (i = 0; i < dir->n; i++)
		if (PyUnicode_Compare(dir->names[i], key) == 0)
			return i;
	return -1;
}

static PyObject *
sample_keys(SampleObject *s, PyObject *Py_UNUSED(ignored))
{
	const zdext_dir *dir = zdext_sample_dir(s);
	PyObject *t;
	int i;

	if (dir == NULL)
		return NULL;
	t = PyTuple_New(dir->n);
	if (t == NULL)
		return NULL;
	for (i = 0; i < dir->n; i++)
		PyTuple_SET_ITEM(t, i, Py_NewRef(dir->names[i]));
	return t;
}

static PyObject *
sample_getitem(SampleObject *s, PyObject *key)
{
	const zdext_dir *dir;
	int i;

	if (!PyUnicode_Check(key)) {
		PyErr_Format(PyExc_TypeError,
			     "a sample's arrays are named by str, got %.200R (%s)",
			     key, Py_TYPE(key)->tp_name);
		return NULL;
	}
	dir = zdext_sample_dir(s);
	if (dir == NULL)
		return NULL;
	i = dir_find(dir, key);
	if (i < 0) {
		PyErr_SetObject(PyExc_KeyError, key);
		return NULL;
	}
	return zdext_sample_array(s, i);
}

static int
sample_contains(SampleObject *s, PyObject *key)
{
	const zdext_dir *dir;

	if (!PyUnicode_Check(key))
		return 0;
	dir = zdext_sample_dir(s);
	if (dir == NULL)
		return -1;
	return dir_find(dir, key) >= 0;
}

static PyObject *
sample_arrays(SampleObject *s, PyObject *Py_UNUSED(ignored))
{
	const zdext_dir *dir = zdext_sample_dir(s);
	PyObject *d, *a;
	int i;

	if (dir == NULL)
		return NULL;
	d = PyDict_New();
	if (d == NULL)
		return NULL;
	for (i = 0; i < dir->n; i++) {
		a = zdext_sample_array(s, i);
		if (a == NULL || PyDict_SetItem(d, dir->names[i], a) < 0) {
			Py_XDECREF(a);
			Py_DECREF(d);
			return NULL;
		}
		Py_DECREF(a);
	}
	return d;
}

static Py_ssize_t
sample_len(SampleObject *s)
{
	return (Py_ssize_t)s->view.size;
}

static PyObject *
sample_repr(SampleObject *s)
{
	int pinned = !s->released && zdext_segment_attached(s->segment);

	/* The meta may be read only while the slot is pinned. */
	if (pinned)
		sample_parse(s);
	return PyUnicode_FromFormat("<zdshm.Sample slot=%u sn=%llu size=%llu "
				    "format=%s ndim=%d%s>", (unsigned)s->view.slot,
				    (unsigned long long)s->view.sn,
				    (unsigned long long)s->view.size,
				    s->parsed ? s->layout.format : "?",
				    s->parsed ? s->layout.ndim : -1,
				    pinned ? "" : " released");
}

static PyObject *
sample_get_slot(SampleObject *s, void *Py_UNUSED(c))
{
	return PyLong_FromUnsignedLong(s->view.slot);
}

static PyObject *
sample_get_sn(SampleObject *s, void *Py_UNUSED(c))
{
	return PyLong_FromUnsignedLongLong(s->view.sn);
}

static PyObject *
sample_get_size(SampleObject *s, void *Py_UNUSED(c))
{
	return PyLong_FromUnsignedLongLong(s->view.size);
}

static PyObject *
sample_get_commit_ns(SampleObject *s, void *Py_UNUSED(c))
{
	return PyLong_FromUnsignedLongLong(s->view.commit_ns);
}

static PyObject *
sample_get_format(SampleObject *s, void *Py_UNUSED(c))
{
	if (!s->parsed && zdext_sample_check(s) < 0)
		return NULL;
	sample_parse(s);
	return PyUnicode_FromString(s->layout.format);
}

static PyObject *
sample_get_shape(SampleObject *s, void *Py_UNUSED(c))
{
	PyObject *t;
	int d;

	if (!s->parsed && zdext_sample_check(s) < 0)
		return NULL;
	sample_parse(s);
	t = PyTuple_New(s->layout.ndim);
	if (t == NULL)
		return NULL;
	for (d = 0; d < s->layout.ndim; d++) {
		PyObject *v = PyLong_FromSsize_t(s->layout.shape[d]);
		if (v == NULL) {
			Py_DECREF(t);
			return NULL;
		}
		PyTuple_SET_ITEM(t, d, v);
	}
	return t;
}

static PyObject *
sample_get_released(SampleObject *s, void *Py_UNUSED(c))
{
	return PyBool_FromLong(s->released || s->segment->seg == NULL ||
			       s->segment->state >= ZDEXT_DETACHED);
}

static PyObject *
sample_get_exports(SampleObject *s, void *Py_UNUSED(c))
{
	return PyLong_FromSsize_t(s->exports);
}

static PyObject *
sample_get_address(SampleObject *s, void *Py_UNUSED(c))
{
	return PyLong_FromVoidPtr((void *)s->view.data);
}

static PyGetSetDef sample_getset[] = {
	{"slot", (getter)sample_get_slot, NULL, "The slot index.", NULL},
	{"sn", (getter)sample_get_sn, NULL, "Sequence number.", NULL},
	{"size", (getter)sample_get_size, NULL, "Committed bytes (== len).", NULL},
	{"commit_ns", (getter)sample_get_commit_ns, NULL,
	 "CLOCK_MONOTONIC time of the commit in ns.", NULL},
	{"format", (getter)sample_get_format, NULL,
	 "PEP 3118 format of the exported buffer ('B' without a description).", NULL},
	{"shape", (getter)sample_get_shape, NULL, "Shape of the exported buffer.", NULL},
	{"released", (getter)sample_get_released, NULL,
	 "True once the pin was dropped.", NULL},
	{"exports", (getter)sample_get_exports, NULL,
	 "Number of buffer views alive.", NULL},
	{"address", (getter)sample_get_address, NULL,
	 "Address of the sample's data in this process (diagnostics).", NULL},
	{NULL, NULL, NULL, NULL, NULL},
};

static PyMethodDef sample_methods[] = {
	{"release", (PyCFunction)sample_release, METH_NOARGS,
	 "release($self, /)\n--\n\n"
	 "Unpins the slot; ViewsAliveError while views are alive."},
	{"keys", (PyCFunction)sample_keys, METH_NOARGS,
	 "keys($self, /)\n--\n\n"
	 "The names of the sample's arrays in published order (a tuple; empty "
	 "for a sample that is not several named arrays).  CorruptSegmentError "
	 "when its array directory is invalid."},
	{"arrays", (PyCFunction)sample_arrays, METH_NOARGS,
	 "arrays($self, /)\n--\n\n"
	 "A dict of every named array (read-only, zero-copy numpy arrays, each "
	 "an export of the sample); empty for a sample that is not several "
	 "named arrays."},
	{"tobytes", (PyCFunction)sample_tobytes, METH_NOARGS,
	 "tobytes($self, /)\n--\n\nA copy of the sample's bytes."},
	{"__enter__", (PyCFunction)sample_enter, METH_NOARGS,
	 "__enter__($self, /)\n--\n\nThe sample itself."},
	{"__exit__", (PyCFunction)(void (*)(void))sample_exit, METH_FASTCALL,
	 "__exit__($self, /, *exc_info)\n--\n\nReleases the sample."},
	{"__reduce_ex__", (PyCFunction)zdext_reduce_ex, METH_O,
	 "__reduce_ex__($self, protocol, /)\n--\n\n"
	 "Refused (TypeError): pickle a copy, or take the sample in the other process."},
	{"__dlpack__", (PyCFunction)(void (*)(void))sample_dlpack,
	 METH_FASTCALL | METH_KEYWORDS,
	 "__dlpack__($self, /, *, stream=None, max_version=None, dl_device=None, "
	 "copy=None)\n--\n\n"
	 "A DLPack capsule of the sample (read-only, zero-copy unless copy=True); "
	 "the sample stays pinned until the consumer's tensor is gone."},
	{"__dlpack_device__", (PyCFunction)zdext_dlpack_device, METH_NOARGS,
	 "__dlpack_device__($self, /)\n--\n\n(1, 0): host memory (kDLCPU)."},
	{"__array__", (PyCFunction)(void (*)(void))zdext_dunder_array,
	 METH_FASTCALL | METH_KEYWORDS,
	 "__array__($self, /, dtype=None, copy=None)\n--\n\n"
	 "numpy.asarray(memoryview(self)): ClosedError once released."},
#if PY_VERSION_HEX < 0x030C0000
	{"__buffer__", (PyCFunction)zdext_dunder_buffer, METH_O, ZDEXT_BUFFER_DOC},
#endif
	{NULL, NULL, 0, NULL},
};

static PyType_Slot sample_slots[] = {
	{Py_tp_doc, "A read-only, zero-copy view of a committed slot."},
	{Py_tp_dealloc, sample_dealloc},
	{Py_tp_repr, sample_repr},
	{Py_tp_getset, sample_getset},
	{Py_tp_methods, sample_methods},
	{Py_sq_length, sample_len},
	{Py_sq_contains, sample_contains},
	{Py_mp_subscript, sample_getitem},
	{Py_bf_getbuffer, sample_getbuffer},
	{Py_bf_releasebuffer, sample_releasebuffer},
	{0, NULL},
};

PyType_Spec zdext_sample_spec = {
	.name = "zdshm.Sample",
	.basicsize = sizeof(SampleObject),
	.flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_DISALLOW_INSTANTIATION |
		 Py_TPFLAGS_IMMUTABLETYPE,
	.slots = sample_slots,
};
