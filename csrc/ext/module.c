/* module.c — zdshm._zdshm: module state, exceptions, argument converters and
 * the module-level functions list_segments, describe, unlink, validate_name.
 *
 * Modelled on CPython's Modules/xxlimited.c: multi-phase initialisation, all
 * types are heap types created from specs and kept in the module state,
 * no PyObject * globals.
 */
#include "ext.h"

#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <unistd.h>
#include <sys/stat.h>
#include <errno.h>
#include <math.h>
#include <string.h>
#include <unistd.h>

/* --------------------------------------------------------------------------
 * Errors
 * ------------------------------------------------------------------------ */

PyObject *
zdext_raise_named(zdext_state *st, int rc, const char *verb, PyObject *name)
{
	PyObject *what = PyUnicode_FromFormat("%s %R", verb, name);

	if (what != NULL) {
		zdext_raise(st, rc, PyUnicode_AsUTF8(what));
		Py_DECREF(what);
	}
	return NULL;
}

PyObject *
zdext_raise(zdext_state *st, int rc, const char *what)
{
	return zdext_raise_hint(st, rc, what, NULL);
}

/* THE one place where a core return code becomes a Python exception. */
PyObject *
zdext_raise_hint(zdext_state *st, int rc, const char *what, const char *hint)
{
	PyObject *cls;
	PyObject *msg = NULL, *exc = NULL, *code = NULL;
	/* .errno: the errno value, EPERM for the library's own -ZD_EOWNER. */
	int err = rc == -ZD_EOWNER ? EPERM : rc < 0 ? -rc : rc;

	switch (rc) {
	case -EAGAIN:       cls = st->NoFreeSlotError; break;
	case -ETIMEDOUT:    cls = st->WaitTimeoutError; break;
	case -EEXIST:       cls = st->SegmentExistsError; break;
	case -ENOENT:       cls = st->SegmentNotFoundError; break;
	case -EACCES:
	case -EPERM:        cls = st->SegmentPermissionError; break;
	case -ZD_EOWNER:    cls = st->SegmentOwnerError; break;
	case -EMSGSIZE:     cls = st->SampleTooLargeError; break;
	case -ESTALE:       cls = st->StaleLoanError; break;
	case -ENODATA:      cls = st->NoSampleError; break;
	case -EBUSY:        cls = st->SlotBusyError; break;
	case -EUSERS:       cls = st->TooManyReadersError; break;
	case -ENOTCONN:     cls = st->DisconnectedError; break;
	case -EPIPE:        cls = st->SegmentClosedError; break;
	case -EOWNERDEAD:   cls = st->CreatorDeadError; break;
	case -EBADMSG:
	case -EPROTO:
	case -EINPROGRESS:  cls = st->CorruptSegmentError; break;
	case -ENOSPC:       cls = st->NoSpaceError; break;
	case -EINVAL:
	case -ERANGE:
	case -ENAMETOOLONG: cls = st->InvalidArgumentError; break;
	case -EOVERFLOW:    cls = st->SizeOverflowError; break;
	case ZDEXT_CLOSED:
		PyErr_Format(st->ClosedError, "%s: the object was closed while waiting", what);
		return NULL;
	case ZDEXT_PYERR:
		return NULL; /* already set (a signal handler raised) */
	default:            cls = st->SystemCallError; break;
	}

	if (hint != NULL)
		msg = PyUnicode_FromFormat("%s: %s; %s", what, zd_strerror(rc), hint);
	else
		msg = PyUnicode_FromFormat("%s: %s", what, zd_strerror(rc));
	if (msg == NULL)
		goto out;
	code = PyLong_FromLong(err);
	if (code == NULL)
		goto out;
	if (PyType_IsSubtype((PyTypeObject *)cls, (PyTypeObject *)PyExc_OSError)) {
		/* OSError subclasses take (errno, strerror): .errno is set. */
		exc = PyObject_CallFunctionObjArgs(cls, code, msg, NULL);
		if (exc == NULL)
			goto out;
	} else {
		exc = PyObject_CallOneArg(cls, msg);
		if (exc == NULL)
			goto out;
		if (PyObject_SetAttrString(exc, "errno", code) < 0)
			goto out;
	}
	PyErr_SetObject(cls, exc);
out:
	Py_XDECREF(exc);
	Py_XDECREF(code);
	Py_XDECREF(msg);
	return NULL;
}

PyObject *
zdext_raise_policy(zdext_state *st, int rc, const char *verb, PyObject *name_obj,
		   const char *name, const zd_attach_opts_t *opts)
{
	char hint[512];
	unsigned euid = (unsigned)geteuid();
	PyObject *what;

	if (rc == -EPROTO && opts->found_version != 0)
		snprintf(hint, sizeof(hint),
			 "/dev/shm/%s has layout version %u; this zdshm reads "
			 "version %u only: recreate the segment with this version",
			 name, (unsigned)opts->found_version,
			 (unsigned)ZD_LAYOUT_VERSION);
	else if (rc != -ZD_EOWNER)
		return zdext_raise_named(st, rc, verb, name_obj);
	else if (opts->found_uid == euid)
		snprintf(hint, sizeof(hint),
			 "/dev/shm/%s is owned by this process's uid %u but is "
			 "writable by group or other (mode 0o%03o): whoever may "
			 "write it can truncate it under a reader (SIGBUS); pass "
			 "allow_owner=%u to accept it anyway, or allow_owner='any'",
			 name, opts->found_uid, (unsigned)opts->found_mode, euid);
	else
		snprintf(hint, sizeof(hint),
			 "/dev/shm/%s is owned by uid %u (mode 0o%03o), not by "
			 "this process's effective uid %u; pass allow_owner=%u if "
			 "you trust that user not to truncate it under a reader "
			 "(SIGBUS), or allow_owner='any'",
			 name, opts->found_uid, (unsigned)opts->found_mode, euid,
			 opts->found_uid);
	what = PyUnicode_FromFormat("%s %R", verb, name_obj);
	if (what != NULL) {
		zdext_raise_hint(st, rc, PyUnicode_AsUTF8(what), hint);
		Py_DECREF(what);
	}
	return NULL;
}

PyObject *
zdext_views_alive(zdext_state *st, Py_ssize_t n, const char *what,
		  const char *action)
{
	PyErr_Format(st->ViewsAliveError,
		     "cannot %s: %zd view%s of %s %s still alive "
		     "(memoryview, numpy array, slice, DLPack tensor); del the "
		     "array%s or call .release() on the memoryview%s first",
		     action, n, n == 1 ? "" : "s", what, n == 1 ? "is" : "are",
		     n == 1 ? "" : "s", n == 1 ? "" : "s");
	return NULL;
}

PyObject *
zdext_closed(zdext_state *st, const char *what)
{
	PyErr_Format(st->ClosedError, "%s is closed", what);
	return NULL;
}

/* --------------------------------------------------------------------------
 * Fork and pickling
 * ------------------------------------------------------------------------ */

pid_t zdext_pid;

/* Runs in the child of every fork() (pthread_atfork): async-signal-safe. */
static void
fork_child(void)
{
	zdext_pid = getpid();
	zdext_segments_disown();
}

static void
fork_hook_install(void)
{
	zdext_pid = getpid();
	(void)pthread_atfork(NULL, NULL, fork_child);
}

PyObject *
zdext_forked(zdext_state *st, const char *what, pid_t owner, int posix)
{
	PyErr_Format(st->ForkedHandleError,
		     "%s belongs to process %d and cannot be used in process %d "
		     "(inherited across fork): %s", what, (int)owner,
		     (int)zdext_pid, posix
		     ? "attach again (PosixSegment.attach(name)) in this process"
		     : "a MemorySegment lives in one process only; create a "
		       "PosixSegment and attach again (PosixSegment.attach(name)) "
		       "in this process");
	return NULL;
}

PyObject *
zdext_reduce_ex(PyObject *self, PyObject *Py_UNUSED(protocol))
{
	zdext_state *st = zdext_state_of(self);
	PyTypeObject *tp = Py_TYPE(self);
	const char *advice;

	/* Segments have their own (ext/segment.c): a PosixSegment pickles. */
	if (tp == st->reader_type)
		advice = "pass its PosixSegment (which pickles to an attach of "
			 "its name) and call seg.reader() in the other process";
	else if (tp == st->writer_type)
		advice = "pass its PosixSegment (which pickles to an attach of "
			 "its name) and call seg.writer() in the other process";
	else if (tp == st->loan_array_type)
		advice = "call writer.loan_array() in the process that writes";
	else if (tp == st->loan_arrays_type)
		advice = "call writer.loan_arrays() in the process that writes";
	else if (tp == st->loan_type)
		advice = "fill and commit it here, and take the sample through a "
			 "reader of PosixSegment.attach(name) in the other process, "
			 "or pickle a copy (bytes(loan))";
	else
		advice = "take it through a reader of PosixSegment.attach(name) in "
			 "the other process, or pickle a copy (sample.tobytes() or "
			 "numpy.array(sample))";
	PyErr_Format(PyExc_TypeError, "cannot pickle a %s object (a handle on "
		     "shared memory of this process): %s", tp->tp_name, advice);
	return NULL;
}

/* --------------------------------------------------------------------------
 * Argument converters
 * ------------------------------------------------------------------------ */

int
zdext_u64_arg(PyObject *o, const char *what, uint64_t lo, uint64_t hi,
	      uint64_t *out)
{
	PyObject *n;
	long long sv;
	unsigned long long v;
	int ovf;

	if (PyLong_CheckExact(o)) {
		/* Fast path (hot methods): a plain int that fits. */
		int o_ovf;
		long long q = PyLong_AsLongLongAndOverflow(o, &o_ovf);

		if (o_ovf == 0 && q >= 0 && (uint64_t)q >= lo && (uint64_t)q <= hi) {
			*out = (uint64_t)q;
			return 0;
		}
		if (q == -1 && PyErr_Occurred())
			return -1;
	}
	if (PyBool_Check(o) || !PyIndex_Check(o)) {
		PyErr_Format(PyExc_TypeError,
			     "%s must be an int in %llu..%llu, got %.200R (%s)",
			     what, (unsigned long long)lo, (unsigned long long)hi,
			     o, Py_TYPE(o)->tp_name);
		return -1;
	}
	n = PyNumber_Index(o);
	if (n == NULL)
		return -1;
	sv = PyLong_AsLongLongAndOverflow(n, &ovf);
	if (sv == -1 && ovf == 0 && PyErr_Occurred()) {
		Py_DECREF(n);
		return -1;
	}
	if (ovf < 0 || (ovf == 0 && sv < 0)) {
		PyErr_Format(PyExc_ValueError,
			     "%s must be an int in %llu..%llu, got %.200R",
			     what, (unsigned long long)lo, (unsigned long long)hi, n);
		Py_DECREF(n);
		return -1;
	}
	if (ovf > 0) {
		v = PyLong_AsUnsignedLongLong(n);
		if (v == (unsigned long long)-1 && PyErr_Occurred()) {
			PyErr_Clear();
			PyErr_Format(PyExc_OverflowError,
				     "%s must be an int in %llu..%llu, got %.200R",
				     what, (unsigned long long)lo,
				     (unsigned long long)hi, n);
			Py_DECREF(n);
			return -1;
		}
	} else {
		v = (unsigned long long)sv;
	}
	if (v < lo || v > hi) {
		PyErr_Format(PyExc_ValueError,
			     "%s must be an int in %llu..%llu, got %.200R",
			     what, (unsigned long long)lo, (unsigned long long)hi, n);
		Py_DECREF(n);
		return -1;
	}
	Py_DECREF(n);
	*out = v;
	return 0;
}

int
zdext_seconds_arg(PyObject *o, const char *what, int allow_none, double max_s,
		  uint64_t *ns)
{
	double d;

	if (o == Py_None && allow_none) {
		*ns = UINT64_MAX;
		return 0;
	}
	if (PyBool_Check(o) ||
	    !(PyFloat_Check(o) || PyLong_Check(o) || PyIndex_Check(o))) {
		PyErr_Format(PyExc_TypeError,
			     "%s must be a number of seconds >= 0%s, got %.200R (%s)",
			     what, allow_none ? " or None" : "", o,
			     Py_TYPE(o)->tp_name);
		return -1;
	}
	d = PyFloat_AsDouble(o);
	if (d == -1.0 && PyErr_Occurred()) {
		PyErr_Clear();
		PyErr_Format(PyExc_OverflowError,
			     "%s must be a number of seconds >= 0, got %.200R",
			     what, o);
		return -1;
	}
	if (isnan(d) || d < 0.0 || (max_s > 0.0 && d > max_s)) {
		if (max_s > 0.0)
			PyErr_Format(PyExc_ValueError,
				     "%s must be a number of seconds in 0..%d, got %.200R",
				     what, (int)max_s, o);
		else
			PyErr_Format(PyExc_ValueError,
				     "%s must be a number of seconds >= 0 (not NaN), got %.200R",
				     what, o);
		return -1;
	}
	if (isinf(d) || d * 1e9 >= 18446744073709549568.0) {
		*ns = UINT64_MAX;
		return 0;
	}
	*ns = (uint64_t)(d * 1e9 + 0.5);
	if (*ns == 0 && d > 0.0)
		*ns = 1;
	return 0;
}

int
zdext_name_arg(PyObject *o, const char *what, const char **out)
{
	Py_ssize_t len;
	const char *s;
	int rc;

	if (!PyUnicode_Check(o)) {
		PyErr_Format(PyExc_TypeError, "%s must be a str, got %.200R (%s)",
			     what, o, Py_TYPE(o)->tp_name);
		return -1;
	}
	s = PyUnicode_AsUTF8AndSize(o, &len);
	if (s == NULL) {
		PyErr_Clear();
		PyErr_Format(PyExc_ValueError,
			     "%s %.200R is not a valid segment name: it cannot be "
			     "encoded as UTF-8", what, o);
		return -1;
	}
	if ((size_t)len != strlen(s)) {
		PyErr_Format(PyExc_ValueError,
			     "%s %.200R is not a valid segment name: it contains NUL",
			     what, o);
		return -1;
	}
	rc = zd_name_validate(s);
	if (rc == -ENAMETOOLONG) {
		PyErr_Format(PyExc_ValueError,
			     "%s %.200R is not a valid segment name: longer than %u "
			     "characters", what, o, (unsigned)ZD_NAME_MAX);
		return -1;
	}
	if (rc != 0) {
		PyErr_Format(PyExc_ValueError,
			     "%s %.200R is not a valid segment name: use 1..%u "
			     "characters of [A-Za-z0-9._-], not starting with '.', "
			     "without a leading '/'", what, o, (unsigned)ZD_NAME_MAX);
		return -1;
	}
	*out = s;
	return 0;
}

int
zdext_owner_arg(PyObject *o, zd_attach_opts_t *opts)
{
	long long v;
	int ovf;
	PyObject *n;

	memset(opts, 0, sizeof(*opts));
	if (o == NULL || o == Py_None)
		return 0;
	if (PyUnicode_Check(o)) {
		if (PyUnicode_CompareWithASCIIString(o, "any") == 0) {
			opts->flags = ZD_ATTACH_ANY_OWNER;
			return 0;
		}
		PyErr_Format(PyExc_ValueError,
			     "allow_owner must be a uid (int), 'any' or None, got %.200R",
			     o);
		return -1;
	}
	if (PyBool_Check(o) || !PyIndex_Check(o)) {
		PyErr_Format(PyExc_TypeError,
			     "allow_owner must be a uid (int), 'any' or None, got "
			     "%.200R (%s)", o, Py_TYPE(o)->tp_name);
		return -1;
	}
	n = PyNumber_Index(o);
	if (n == NULL)
		return -1;
	v = PyLong_AsLongLongAndOverflow(n, &ovf);
	Py_DECREF(n);
	if (v == -1 && ovf == 0 && PyErr_Occurred())
		return -1;
	/* (uid_t)-1 is no uid: chown and setuid take it for "unchanged". */
	if (ovf != 0 || v < 0 || v >= (long long)UINT32_MAX) {
		PyErr_Format(PyExc_ValueError,
			     "allow_owner must be a uid in 0..%u, 'any' or None, "
			     "got %.200R", (unsigned)(UINT32_MAX - 1), o);
		return -1;
	}
	opts->flags = ZD_ATTACH_ALLOW_UID;
	opts->allow_uid = (uint32_t)v;
	return 0;
}

int
zdext_type_hash_arg(PyObject *o, uint8_t out[ZD_TYPE_HASH_SIZE])
{
	Py_buffer v;
	size_t i;
	int nonzero = 0;

	memset(out, 0, ZD_TYPE_HASH_SIZE);
	if (o == Py_None)
		return 0;
	if (!PyObject_CheckBuffer(o) || PyUnicode_Check(o)) {
		PyErr_Format(PyExc_TypeError,
			     "type_hash must be None or %u bytes, got %.200R (%s)",
			     (unsigned)ZD_TYPE_HASH_SIZE, o, Py_TYPE(o)->tp_name);
		return -1;
	}
	if (PyObject_GetBuffer(o, &v, PyBUF_C_CONTIGUOUS) < 0)
		return -1;
	if (v.len != (Py_ssize_t)ZD_TYPE_HASH_SIZE) {
		PyErr_Format(PyExc_ValueError,
			     "type_hash must be exactly %u bytes, got %zd bytes (%.200R)",
			     (unsigned)ZD_TYPE_HASH_SIZE, v.len, o);
		PyBuffer_Release(&v);
		return -1;
	}
	memcpy(out, v.buf, ZD_TYPE_HASH_SIZE);
	PyBuffer_Release(&v);
	for (i = 0; i < ZD_TYPE_HASH_SIZE; i++)
		nonzero |= out[i];
	if (!nonzero) {
		PyErr_Format(PyExc_ValueError,
			     "type_hash must not be all zero (that means 'no hash': "
			     "pass None), got %.200R", o);
		return -1;
	}
	return 0;
}

int
zdext_bind(const char *fname, PyObject *const *args, Py_ssize_t nargs,
	   PyObject *kwnames, const char *const *names, int nparams,
	   int maxpos, PyObject **out)
{
	Py_ssize_t i, k, nkw;

	for (i = 0; i < nparams; i++)
		out[i] = NULL;
	if (nargs > maxpos) {
		PyErr_Format(PyExc_TypeError,
			     "%s() takes at most %d positional argument%s (%zd given)",
			     fname, maxpos, maxpos == 1 ? "" : "s", nargs);
		return -1;
	}
	for (i = 0; i < nargs; i++)
		out[i] = args[i];
	if (kwnames == NULL)
		return 0;
	nkw = PyTuple_GET_SIZE(kwnames);
	for (k = 0; k < nkw; k++) {
		PyObject *key = PyTuple_GET_ITEM(kwnames, k);
		for (i = 0; i < nparams; i++)
			if (PyUnicode_CompareWithASCIIString(key, names[i]) == 0)
				break;
		if (i == nparams) {
			PyErr_Format(PyExc_TypeError,
				     "%s() got an unexpected keyword argument %R",
				     fname, key);
			return -1;
		}
		if (out[i] != NULL) {
			PyErr_Format(PyExc_TypeError,
				     "%s() got multiple values for argument '%s'",
				     fname, names[i]);
			return -1;
		}
		out[i] = args[nargs + k];
	}
	return 0;
}

/* --------------------------------------------------------------------------
 * Segment descriptions
 * ------------------------------------------------------------------------ */

static int
dict_set_u64(PyObject *d, const char *key, uint64_t v)
{
	PyObject *o = PyLong_FromUnsignedLongLong(v);
	int rc;

	if (o == NULL)
		return -1;
	rc = PyDict_SetItemString(d, key, o);
	Py_DECREF(o);
	return rc;
}

static int
dict_set_obj(PyObject *d, const char *key, PyObject *o)
{
	int rc;

	if (o == NULL)
		return -1;
	rc = PyDict_SetItemString(d, key, o);
	Py_DECREF(o);
	return rc;
}

const char *
zdext_backend_name(zd_backend_kind_t kind)
{
	switch (kind) {
	case ZD_BACKEND_POSIX:     return "posix";
	case ZD_BACKEND_ANONYMOUS: return "anonymous";
	default:                   return "memory";
	}
}

PyObject *
zdext_info_dict(const zd_segment_info_t *in)
{
	PyObject *d = PyDict_New(), *c = NULL, *th;
	size_t i;
	int nonzero = 0;

	if (d == NULL)
		return NULL;
	for (i = 0; i < ZD_TYPE_HASH_SIZE; i++)
		nonzero |= in->type_hash[i];
	if (nonzero)
		th = PyBytes_FromStringAndSize((const char *)in->type_hash,
					       ZD_TYPE_HASH_SIZE);
	else
		th = Py_NewRef(Py_None);
	if (dict_set_obj(d, "backend",
			 PyUnicode_FromString(zdext_backend_name(in->backend))) < 0 ||
	    dict_set_u64(d, "layout_version", in->layout_version) < 0 ||
	    dict_set_u64(d, "slot_count", in->geo.slot_count) < 0 ||
	    dict_set_u64(d, "slot_capacity", in->geo.slot_capacity) < 0 ||
	    dict_set_u64(d, "slot_stride", in->geo.slot_stride) < 0 ||
	    dict_set_u64(d, "total_size", in->geo.total_size) < 0 ||
	    dict_set_u64(d, "ring_size", in->geo.ring_size) < 0 ||
	    dict_set_u64(d, "slots_offset", in->geo.slots_offset) < 0 ||
	    dict_set_obj(d, "type_hash", th) < 0 ||
	    dict_set_obj(d, "owner_pid", PyLong_FromLong(in->owner_pid)) < 0 ||
	    dict_set_u64(d, "owner_uid", in->owner_uid) < 0 ||
	    dict_set_u64(d, "created_realtime_ns", in->created_realtime_ns) < 0 ||
	    dict_set_obj(d, "goodbye", PyBool_FromLong(in->goodbye != 0)) < 0 ||
	    dict_set_u64(d, "readers_active", in->readers_active) < 0 ||
	    dict_set_obj(d, "creator_alive", PyBool_FromLong(in->creator_alive != 0)) < 0 ||
	    dict_set_u64(d, "live_readers", in->live_readers) < 0 ||
	    dict_set_u64(d, "live_attachments", in->live_attachments) < 0 ||
	    dict_set_u64(d, "active_mask", in->active_mask) < 0 ||
	    dict_set_u64(d, "next_sn", in->next_sn) < 0)
		goto fail;
#define SET_HANDLE_COUNTER(name, doc) \
	if (dict_set_u64(d, #name, in->handle.name) < 0) \
		goto fail;
	ZD_HANDLE_COUNTERS(SET_HANDLE_COUNTER)
#undef SET_HANDLE_COUNTER
	c = PyDict_New();
	if (c == NULL)
		goto fail;
#define SET_COUNTER(name, doc) \
	if (dict_set_u64(c, #name, in->counters.name) < 0) \
		goto fail;
	ZD_COUNTERS(SET_COUNTER)
#undef SET_COUNTER
	if (PyDict_SetItemString(d, "counters", c) < 0)
		goto fail;
	Py_CLEAR(c);
	/* classes: one dict per size class, its table entry and slot counts */
	c = PyList_New(0);
	if (c == NULL)
		goto fail;
	for (uint32_t k = 0; k < in->geo.class_count && k < ZD_CLASS_MAX; k++) {
		PyObject *cd = PyDict_New();

		if (cd == NULL || PyList_Append(c, cd) < 0) {
			Py_XDECREF(cd);
			goto fail;
		}
		Py_DECREF(cd);
#define SET_CLASS_FIELD(type, name, doc) \
		if (dict_set_u64(cd, #name, in->classes[k].name) < 0) \
			goto fail;
		ZD_CLASS_FIELDS(SET_CLASS_FIELD)
#undef SET_CLASS_FIELD
#define SET_CLASS_STAT(name, doc) \
		if (dict_set_u64(cd, #name, in->class_stats[k].name) < 0) \
			goto fail;
		ZD_CLASS_STATS(SET_CLASS_STAT)
#undef SET_CLASS_STAT
	}
	if (PyDict_SetItemString(d, "classes", c) < 0)
		goto fail;
	Py_DECREF(c);
	return d;
fail:
	Py_XDECREF(c);
	Py_DECREF(d);
	return NULL;
}

/* --------------------------------------------------------------------------
 * Module functions
 * ------------------------------------------------------------------------ */

#define ZDEXT_SHM_DIR "/dev/shm"

static int
cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Collects the names of /dev/shm entries that describe as zdshm segments,
 * whoever owns them (entries that fail validation are skipped).
 * Runs without the GIL.  Returns 0 or -errno; *names is malloc'd. */
static int
scan_segments(char ***names, size_t *count)
{
	DIR *dir;
	struct dirent *de;
	char **v = NULL;
	size_t n = 0, cap = 0;
	zd_segment_info_t info;
	zd_attach_opts_t any = {.flags = ZD_ATTACH_ANY_OWNER};

	*names = NULL;
	*count = 0;
	dir = opendir(ZDEXT_SHM_DIR);
	if (dir == NULL)
		return errno == ENOENT ? 0 : -errno;
	while ((de = readdir(dir)) != NULL) {
		char *copy;

		if (zd_name_validate(de->d_name) != 0)
			continue;
		/* Only regular files: opening a FIFO would block. */
		if (de->d_type != DT_REG) {
			struct stat st;

			if (de->d_type != DT_UNKNOWN ||
			    fstatat(dirfd(dir), de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 ||
			    !S_ISREG(st.st_mode))
				continue;
		}
		/* Every owner: describe maps nothing, so a hostile object
		 * is refused (skipped), never a signal. */
		if (zd_segment_describe_posix_opts(de->d_name, &any, &info) != 0)
			continue;
		if (n == cap) {
			size_t ncap = cap ? cap * 2 : 16;
			char **nv = realloc(v, ncap * sizeof(*nv));
			if (nv == NULL)
				goto nomem;
			v = nv;
			cap = ncap;
		}
		copy = strdup(de->d_name);
		if (copy == NULL)
			goto nomem;
		v[n++] = copy;
	}
	closedir(dir);
	if (n > 1)
		qsort(v, n, sizeof(*v), cmp_names);
	*names = v;
	*count = n;
	return 0;
nomem:
	closedir(dir);
	while (n > 0)
		free(v[--n]);
	free(v);
	return -ENOMEM;
}

static PyObject *
zdext_list_segments(PyObject *module, PyObject *Py_UNUSED(ignored))
{
	zdext_state *st = PyModule_GetState(module);
	char **names;
	size_t n, i;
	int rc;
	PyObject *list = NULL;

	Py_BEGIN_ALLOW_THREADS
	rc = scan_segments(&names, &n);
	Py_END_ALLOW_THREADS
	if (rc < 0)
		return zdext_raise(st, rc, "list_segments");
	list = PyList_New((Py_ssize_t)n);
	for (i = 0; i < n; i++) {
		if (list != NULL) {
			PyObject *s = PyUnicode_DecodeFSDefault(names[i]);
			if (s == NULL)
				Py_CLEAR(list);
			else
				PyList_SET_ITEM(list, (Py_ssize_t)i, s);
		}
		free(names[i]);
	}
	free(names);
	return list;
}

static PyObject *
zdext_describe(PyObject *module, PyObject *const *args, Py_ssize_t nargs,
	       PyObject *kwnames)
{
	static const char *const names[] = {"name", "allow_owner"};
	zdext_state *st = PyModule_GetState(module);
	const char *name;
	zd_segment_info_t info;
	zd_attach_opts_t opts;
	PyObject *a[2], *arg, *d;
	int rc;

	if (zdext_bind("describe", args, nargs, kwnames, names, 2, 1, a) < 0)
		return NULL;
	arg = a[0];
	if (arg == NULL) {
		PyErr_SetString(PyExc_TypeError, "describe() needs name");
		return NULL;
	}
	if (zdext_name_arg(arg, "name", &name) < 0 ||
	    zdext_owner_arg(a[1], &opts) < 0)
		return NULL;
	Py_BEGIN_ALLOW_THREADS
	rc = zd_segment_describe_posix_opts(name, &opts, &info);
	Py_END_ALLOW_THREADS
	if (rc < 0)
		return zdext_raise_policy(st, rc, "describe", arg, name,
					  &opts);
	d = zdext_info_dict(&info);
	if (d != NULL && PyDict_SetItemString(d, "name", arg) < 0)
		Py_CLEAR(d);
	return d;
}

static PyObject *
zdext_unlink(PyObject *module, PyObject *arg)
{
	zdext_state *st = PyModule_GetState(module);
	const char *name;
	int rc;

	if (zdext_name_arg(arg, "name", &name) < 0)
		return NULL;
	Py_BEGIN_ALLOW_THREADS
	rc = zd_segment_unlink_posix(name);
	Py_END_ALLOW_THREADS
	if (rc < 0)
		return zdext_raise_named(st, rc, "unlink", arg);
	Py_RETURN_NONE;
}

static PyObject *
zdext_unlink_stale(PyObject *module, PyObject *arg)
{
	zdext_state *st = PyModule_GetState(module);
	const char *name;
	int rc;

	if (zdext_name_arg(arg, "name", &name) < 0)
		return NULL;
	Py_BEGIN_ALLOW_THREADS
	rc = zd_segment_unlink_stale_posix(name);
	Py_END_ALLOW_THREADS
	if (rc == 0)
		Py_RETURN_TRUE;
	if (rc == -EBUSY)
		Py_RETURN_FALSE;
	return zdext_raise_named(st, rc, "unlink_stale", arg);
}

static PyObject *
zdext_validate_name(PyObject *Py_UNUSED(module), PyObject *arg)
{
	const char *name;

	if (zdext_name_arg(arg, "name", &name) < 0)
		return NULL;
	Py_RETURN_NONE;
}

static PyMethodDef zdext_methods[] = {
	{"_loan_frame_type", zdext_loan_frame_type, METH_NOARGS,
	 "_loan_frame_type()\n--\n\n"
	 "The ndarray subclass of loan_array frames (zdshm.arrays.LoanFrame); "
	 "imports numpy."},
	{"list_segments", zdext_list_segments, METH_NOARGS,
	 "list_segments()\n--\n\n"
	 "Names of the zdshm segments in /dev/shm (sorted), whoever owns them.  "
	 "Each entry is validated with pread (nothing is mapped); one that "
	 "does not validate is skipped."},
	{"describe", (PyCFunction)(void (*)(void))zdext_describe,
	 METH_FASTCALL | METH_KEYWORDS,
	 "describe(name, *, allow_owner=None)\n--\n\n"
	 "Describes a posix segment without attaching to it or mapping it (the "
	 "header and tables are read with pread).  The owner policy is "
	 "attach's: by default only an object owned by this process's "
	 "effective uid without group/other write bits (SegmentOwnerError "
	 "otherwise); allow_owner=UID also accepts that owner, 'any' every one."},
	{"unlink", zdext_unlink, METH_O,
	 "unlink(name, /)\n--\n\n"
	 "Removes a posix segment's name; open handles stay valid."},
	{"unlink_stale", zdext_unlink_stale, METH_O,
	 "unlink_stale(name, /)\n--\n\n"
	 "Removes a posix segment's name only if it is stale: its creator is dead "
	 "(or closed it) and no live process has it attached.  True if removed, "
	 "False if it is alive (never removed)."},
	{"validate_name", zdext_validate_name, METH_O,
	 "validate_name(name, /)\n--\n\n"
	 "Raises TypeError or ValueError if name is not a valid segment name."},
	{NULL, NULL, 0, NULL},
};

/* --------------------------------------------------------------------------
 * Initialisation
 * ------------------------------------------------------------------------ */

struct exc_def {
	size_t offset;            /* of the PyObject * in zdext_state */
	const char *name;         /* "zdshm.X"                          */
	PyObject **builtin;       /* the fitting builtin base            */
	const char *doc;
};

#define EXC(field, builtin, doc) \
	{offsetof(zdext_state, field), "zdshm." #field, &builtin, doc}

static int
add_exceptions(PyObject *m, zdext_state *st)
{
	const struct exc_def defs[] = {
		EXC(NoFreeSlotError, PyExc_BlockingIOError,
		    "No free slot to loan or reserve (EAGAIN)."),
		EXC(WaitTimeoutError, PyExc_TimeoutError,
		    "A deadline passed (ETIMEDOUT)."),
		EXC(SegmentExistsError, PyExc_FileExistsError,
		    "A segment of that name exists (EEXIST)."),
		EXC(SegmentNotFoundError, PyExc_FileNotFoundError,
		    "No segment of that name (ENOENT)."),
		EXC(SegmentPermissionError, PyExc_PermissionError,
		    "Access to the segment was denied (EACCES)."),
		EXC(SegmentOwnerError, PyExc_PermissionError,
		    "attach or describe refused the segment: its owner is not "
		    "this process's effective uid, or it is writable by group or "
		    "other (.errno EPERM); allow_owner= accepts it."),
		EXC(SampleTooLargeError, PyExc_ValueError,
		    "A sample is larger than the slot capacity (EMSGSIZE)."),
		EXC(StaleLoanError, PyExc_RuntimeError,
		    "The loan is no longer live: committed, discarded or reclaimed (ESTALE)."),
		EXC(NoSampleError, PyExc_LookupError,
		    "The slot holds no committed sample (ENODATA)."),
		EXC(SlotBusyError, PyExc_BlockingIOError,
		    "The slot is pinned by the maximum number of views (EBUSY)."),
		EXC(TooManyReadersError, PyExc_OSError,
		    "Every reader or attachment entry of the segment is taken (EUSERS)."),
		EXC(DisconnectedError, PyExc_ConnectionError,
		    "The reader was disconnected (ENOTCONN)."),
		EXC(SegmentClosedError, PyExc_BrokenPipeError,
		    "The segment's creator has closed it and nothing is left (EPIPE)."),
		/* A ConnectionError but not a BrokenPipeError: code that treats
		 * BrokenPipeError (SegmentClosedError) as the clean end of a
		 * stream must not take a crash for one. */
		EXC(CreatorDeadError, PyExc_ConnectionError,
		    "The segment's creator died without closing it and nothing is "
		    "left (EOWNERDEAD)."),
		EXC(CorruptSegmentError, PyExc_ValueError,
		    "The segment or a slot is corrupt, incompatible or not yet "
		    "initialised (EBADMSG, EPROTO, EINPROGRESS)."),
		EXC(NoSpaceError, PyExc_OSError,
		    "No space left for the segment (ENOSPC)."),
		EXC(ViewsAliveError, PyExc_BufferError,
		    "close, commit, discard or release refused while views are alive."),
		EXC(ClosedError, PyExc_ValueError,
		    "Operation on a closed segment, reader, writer, loan or sample."),
		EXC(ForkedHandleError, PyExc_RuntimeError,
		    "A segment, reader, writer, loan or sample used in another "
		    "process than the one that made it (a fork child): attach "
		    "again in this process."),
		EXC(InvalidArgumentError, PyExc_ValueError,
		    "The core refused an argument (EINVAL, ERANGE, ENAMETOOLONG)."),
		EXC(SizeOverflowError, PyExc_OverflowError,
		    "The requested geometry does not fit (EOVERFLOW)."),
		EXC(SystemCallError, PyExc_OSError,
		    "Any other system error (ENOMEM, EMFILE, ...)."),
	};
	PyObject *dict = NULL, *osdict = NULL, *oserrno;
	size_t i;
	int rc = -1;

	dict = Py_BuildValue("{s:O}", "errno", Py_None);
	if (dict == NULL)
		goto out;
	st->Error = PyErr_NewExceptionWithDoc(
		"zdshm.Error",
		"Base class of every zdshm error.  Each subclass also derives from "
		"the fitting builtin exception; .errno holds the C error code, or "
		"None.", PyExc_Exception, dict);
	if (st->Error == NULL || PyModule_AddObjectRef(m, "Error", st->Error) < 0)
		goto out;
	/* OSError keeps .errno in a member descriptor; Error's class attribute
	 * would shadow it (Error comes first in the MRO), so OSError-derived
	 * classes get the descriptor back in their own dict. */
	/* Looked up through the type, not tp_dict: static builtin types have
	 * no tp_dict of their own from Python 3.12 on. */
	oserrno = PyObject_GetAttrString(PyExc_OSError, "errno");
	if (oserrno == NULL)
		goto out;
	osdict = Py_BuildValue("{s:O}", "errno", oserrno);
	Py_DECREF(oserrno);
	if (osdict == NULL)
		goto out;
	for (i = 0; i < sizeof(defs) / sizeof(defs[0]); i++) {
		PyObject **slot = (PyObject **)((char *)st + defs[i].offset);
		PyObject *bases;
		int is_os = PyType_IsSubtype((PyTypeObject *)*defs[i].builtin,
					     (PyTypeObject *)PyExc_OSError);

		bases = PyTuple_Pack(2, st->Error, *defs[i].builtin);
		if (bases == NULL)
			goto out;
		*slot = PyErr_NewExceptionWithDoc(defs[i].name, defs[i].doc, bases,
						  is_os ? osdict : NULL);
		Py_DECREF(bases);
		if (*slot == NULL)
			goto out;
		if (PyModule_AddObjectRef(m, defs[i].name + strlen("zdshm."),
					  *slot) < 0)
			goto out;
	}
	rc = 0;
out:
	Py_XDECREF(osdict);
	Py_XDECREF(dict);
	return rc;
}

static int
add_type(PyObject *m, PyTypeObject **slot, PyType_Spec *spec, PyObject *base)
{
	*slot = (PyTypeObject *)PyType_FromModuleAndSpec(m, spec, base);
	if (*slot == NULL)
		return -1;
	return PyModule_AddType(m, *slot);
}

/* COUNTER_NAMES: the keys of info()["counters"], in ZD_COUNTERS order. */
static int
add_counter_names(PyObject *m)
{
#define COUNTER_NAME(name, doc) #name,
	static const char *const names[] = { ZD_COUNTERS(COUNTER_NAME) };
#undef COUNTER_NAME
	const Py_ssize_t n = (Py_ssize_t)(sizeof(names) / sizeof(names[0]));
	PyObject *t = PyTuple_New(n), *s;
	Py_ssize_t i;
	int rc;

	if (t == NULL)
		return -1;
	for (i = 0; i < n; i++) {
		s = PyUnicode_InternFromString(names[i]);
		if (s == NULL) {
			Py_DECREF(t);
			return -1;
		}
		PyTuple_SET_ITEM(t, i, s);
	}
	rc = PyModule_AddObjectRef(m, "COUNTER_NAMES", t);
	Py_DECREF(t);
	return rc;
}

static int
zdext_exec(PyObject *m)
{
	static pthread_once_t fork_hook_once = PTHREAD_ONCE_INIT;
	zdext_state *st = PyModule_GetState(m);

	(void)pthread_once(&fork_hook_once, fork_hook_install);
	if (add_exceptions(m, st) < 0)
		return -1;
	if (add_type(m, &st->segment_type, &zdext_segment_spec, NULL) < 0 ||
	    add_type(m, &st->memory_segment_type, &zdext_memory_segment_spec,
		     (PyObject *)st->segment_type) < 0 ||
	    add_type(m, &st->posix_segment_type, &zdext_posix_segment_spec,
		     (PyObject *)st->segment_type) < 0 ||
	    add_type(m, &st->anonymous_segment_type, &zdext_anonymous_segment_spec,
		     (PyObject *)st->segment_type) < 0 ||
	    add_type(m, &st->loan_type, &zdext_loan_spec, NULL) < 0 ||
	    add_type(m, &st->sample_type, &zdext_sample_spec, NULL) < 0 ||
	    add_type(m, &st->writer_type, &zdext_writer_spec, NULL) < 0 ||
	    add_type(m, &st->reader_type, &zdext_reader_spec, NULL) < 0 ||
	    add_type(m, &st->loan_array_type, &zdext_loan_array_spec, NULL) < 0 ||
	    add_type(m, &st->loan_arrays_type, &zdext_loan_arrays_spec, NULL) < 0 ||
	    add_type(m, &st->sample_part_type, &zdext_sample_part_spec, NULL) < 0)
		return -1;
	st->str_base = PyUnicode_InternFromString("base");
	if (st->str_base == NULL)
		return -1;
	st->str_free = PyUnicode_InternFromString("free");
	st->str_loaned = PyUnicode_InternFromString("loaned");
	st->str_committed = PyUnicode_InternFromString("committed");
	if (st->str_free == NULL || st->str_loaned == NULL ||
	    st->str_committed == NULL)
		return -1;
	if (PyModule_AddStringConstant(m, "__version__", ZDEXT_VERSION) < 0 ||
	    PyModule_AddIntConstant(m, "READER_MAX", ZD_READER_MAX) < 0 ||
	    PyModule_AddIntConstant(m, "ATTACH_MAX", ZD_ATTACH_MAX) < 0 ||
	    PyModule_AddIntConstant(m, "SLOT_META_SIZE", ZD_SLOT_META_SIZE) < 0 ||
	    PyModule_AddIntConstant(m, "NAME_MAX", ZD_NAME_MAX) < 0 ||
	    PyModule_AddIntConstant(m, "SLOT_COUNT_MAX", ZD_SLOT_COUNT_MAX) < 0 ||
	    PyModule_AddObject(m, "SLOT_CAPACITY_MAX",
			       PyLong_FromUnsignedLongLong(ZD_SLOT_CAPACITY_MAX)) < 0 ||
	    PyModule_AddIntConstant(m, "TYPE_HASH_SIZE", ZD_TYPE_HASH_SIZE) < 0 ||
	    PyModule_AddIntConstant(m, "META_NDIM_MAX", ZDEXT_META_NDIM_MAX) < 0 ||
	    PyModule_AddIntConstant(m, "META_FORMAT_MAX", ZDEXT_META_FORMAT_MAX) < 0 ||
	    PyModule_AddIntConstant(m, "LAYOUT_VERSION", ZD_LAYOUT_VERSION) < 0 ||
	    PyModule_AddIntConstant(m, "CLASS_MAX", ZD_CLASS_MAX) < 0 ||
	    add_counter_names(m) < 0)
		return -1;
	return 0;
}

#if PY_VERSION_HEX < 0x030C0000
PyObject *
zdext_dunder_buffer(PyObject *self, PyObject *arg)
{
	Py_buffer v;
	long flags = PyLong_AsLong(arg);

	if (flags == -1 && PyErr_Occurred())
		return NULL;
	/* Ask with the caller's flags first, so a writable request on a
	 * Sample fails the way the buffer protocol says it should. */
	if (PyObject_GetBuffer(self, &v, (int)flags) < 0)
		return NULL;
	PyBuffer_Release(&v);
	return PyMemoryView_FromObject(self);
}
#endif

static int
zdext_traverse(PyObject *m, visitproc visit, void *arg)
{
	zdext_state *st = PyModule_GetState(m);
	PyObject **p, **end;

	if (st == NULL)
		return 0;
	p = (PyObject **)st;
	end = (PyObject **)(st + 1);
	for (; p < end; p++)
		Py_VISIT(*p);
	return 0;
}

static int
zdext_clear(PyObject *m)
{
	zdext_state *st = PyModule_GetState(m);
	PyObject **p, **end;

	if (st == NULL)
		return 0;
	p = (PyObject **)st;
	end = (PyObject **)(st + 1);
	for (; p < end; p++)
		Py_CLEAR(*p);
	return 0;
}

static void
zdext_free(void *m)
{
	zdext_clear((PyObject *)m);
}

/* The state is a plain array of object pointers (traverse/clear rely on it). */
_Static_assert(sizeof(zdext_state) % sizeof(PyObject *) == 0,
	       "zdext_state must hold only PyObject pointers");

static PyModuleDef_Slot zdext_slots[] = {
	{Py_mod_exec, zdext_exec},
	{0, NULL},
};

PyModuleDef zdext_module_def = {
	PyModuleDef_HEAD_INIT,
	.m_name = "zdshm._zdshm",
	.m_doc = "Zero-copy shared-memory slots: the C extension of zdshm.",
	.m_size = sizeof(zdext_state),
	.m_methods = zdext_methods,
	.m_slots = zdext_slots,
	.m_traverse = zdext_traverse,
	.m_clear = zdext_clear,
	.m_free = zdext_free,
};

PyMODINIT_FUNC
PyInit__zdshm(void)
{
	return PyModuleDef_Init(&zdext_module_def);
}
