/* reader.c — Reader: a registered reader taking samples oldest-first, or
 * (latest=True) the newest, skipping the older ones (the core's take).
 *
 * take() first tries without waiting, with the GIL held; then it waits in
 * slices of at most ZDEXT_SLICE_NS with the GIL released, checking signals
 * between slices.  One thread at a time may wait on a Reader; close() from
 * another thread makes the waiter leave at its next slice.
 */
#include "ext.h"

#include <errno.h>

PyObject *
zdext_segment_reader(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
		     PyObject *kwnames)
{
	static const char *const names[] = {"join_last", "spin", "latest"};
	SegmentObject *seg = (SegmentObject *)self;
	zdext_state *st = zdext_state_of(self);
	PyObject *a[3];
	uint64_t join_last = 0, spin = 0;
	uint32_t flags = 0;
	zd_reader_t reg;
	zd_segment_t *h;
	ReaderObject *r;
	int rc;

	/* join_last and spin may be positional; latest only by keyword. */
	if (zdext_bind("reader", args, nargs, kwnames, names, 3, 2, a) < 0)
		return NULL;
	if (a[0] != NULL &&
	    zdext_u64_arg(a[0], "join_last", 0, UINT64_MAX, &join_last) < 0)
		return NULL;
	if (a[1] != NULL && zdext_seconds_arg(a[1], "spin", 0, 10.0, &spin) < 0)
		return NULL;
	if (a[2] != NULL) {
		if (!PyBool_Check(a[2])) {
			PyErr_Format(PyExc_TypeError,
				     "latest must be a bool, got %.200R (%s)",
				     a[2], Py_TYPE(a[2])->tp_name);
			return NULL;
		}
		if (a[2] == Py_True)
			flags |= ZD_READER_LATEST;
	}
	if ((flags & ZD_READER_LATEST) && join_last > 1) {
		PyErr_Format(PyExc_ValueError,
			     "join_last must be 0 or 1 with latest=True (a latest "
			     "reader only ever takes the newest sample), got %llu",
			     (unsigned long long)join_last);
		return NULL;
	}
	if (zdext_segment_check(seg) < 0)
		return NULL;
	h = seg->seg;
	seg->inflight++;
	Py_BEGIN_ALLOW_THREADS
	rc = zd_reader_open_flags(h, join_last, flags, &reg);
	Py_END_ALLOW_THREADS
	seg->inflight--;
	if (rc < 0)
		return zdext_raise(st, rc, "reader");
	r = PyObject_New(ReaderObject, st->reader_type);
	if (r == NULL) {
		zd_reader_close(h, &reg);
		return NULL;
	}
	r->segment = (SegmentObject *)Py_NewRef(seg);
	r->r = reg;
	r->spin_ns = spin;
	r->closed = 0;
	r->busy = 0;
	r->has_fd = 0;
	seg->n_readers++;
	return (PyObject *)r;
}

/* Closed by close(), or with its segment (whose close closes every reader
 * of the handle in the core). */
static int
reader_is_closed(const ReaderObject *r)
{
	return r->closed || r->segment->state != ZDEXT_OPEN ||
	       r->segment->seg == NULL;
}

/* Marks the reader closed: a wait on it leaves at its next slice. */
static void
reader_mark_closed(ReaderObject *r)
{
	r->closed = 1;
	r->segment->n_readers--;
}

/* Closes the registration in the core.  -EBUSY (a view it took is still
 * pinned) needs nothing more: the release of the last such view frees the
 * entry.  In a fork child or after the segment's close the registration
 * is not this object's to close. */
static void
reader_unregister(ReaderObject *r)
{
	if (zdext_segment_attached(r->segment))
		(void)zd_reader_close(r->segment->seg, &r->r);
}

struct take_ctx {
	zd_segment_t *seg;
	zd_reader_t *r;
	zd_view_t view;
};

static int
take_slice(void *p, uint64_t deadline, uint64_t spin)
{
	struct take_ctx *c = p;

	return zd_reader_wait_take(c->seg, c->r, &c->view, deadline, spin);
}

/* Returns a Sample, or NULL with an exception, or NULL without one when
 * `iterating` and the stream ended (goodbye, or the reader was closed).  A
 * dead creator raises CreatorDeadError even when iterating: a silent end
 * would hide the crash. */
static PyObject *
reader_take_impl(ReaderObject *r, uint64_t timeout, int iterating)
{
	zdext_state *st = zdext_state_of((PyObject *)r);
	SegmentObject *seg = r->segment;
	struct take_ctx ctx;
	int rc;

	if (zdext_check_owner(seg, "the reader") < 0)
		return NULL;
	if (reader_is_closed(r)) {
		if (iterating)
			return NULL;
		return zdext_closed(st, "the reader");
	}
	if (r->busy) {
		PyErr_SetString(PyExc_RuntimeError,
				"another thread is already waiting on this Reader");
		return NULL;
	}
	rc = zd_reader_take(seg->seg, &r->r, &ctx.view);
	if (rc == -EAGAIN) {
		if (timeout == 0) {
			rc = -ETIMEDOUT;
		} else {
			ctx.seg = seg->seg;
			ctx.r = &r->r;
			r->busy = 1;
			rc = zdext_wait(seg, take_slice, &ctx, timeout, r->spin_ns,
					&r->closed);
			r->busy = 0;
		}
	}
	if (rc == 0)
		return zdext_sample_new(st, seg, &ctx.view);
	if (iterating && (rc == -EPIPE || rc == ZDEXT_CLOSED))
		return NULL;
	return zdext_raise(st, rc, "take");
}

static PyObject *
reader_take(ReaderObject *r, PyObject *const *args, Py_ssize_t nargs,
	    PyObject *kwnames)
{
	static const char *const names[] = {"timeout"};
	PyObject *a[1];
	uint64_t timeout = UINT64_MAX;

	if (kwnames == NULL && nargs == 0) {
		a[0] = NULL;
	} else if (zdext_bind("take", args, nargs, kwnames, names, 1, 1, a) < 0) {
		return NULL;
	}
	if (a[0] != NULL && zdext_seconds_arg(a[0], "timeout", 1, 0.0, &timeout) < 0)
		return NULL;
	return reader_take_impl(r, timeout, 0);
}

static PyObject *reader_take_or_arm(ReaderObject *r);

static PyObject *
reader_try_take(ReaderObject *r, PyObject *Py_UNUSED(ignored))
{
	zdext_state *st = zdext_state_of((PyObject *)r);
	SegmentObject *seg = r->segment;
	zd_view_t view;
	int rc;

	if (zdext_check_owner(seg, "the reader") < 0)
		return NULL;
	if (reader_is_closed(r))
		return zdext_closed(st, "the reader");
	if (r->busy) {
		PyErr_SetString(PyExc_RuntimeError,
				"another thread is already waiting on this Reader");
		return NULL;
	}
	if (r->has_fd)
		return reader_take_or_arm(r);
	rc = zd_reader_take(seg->seg, &r->r, &view);
	if (rc == 0)
		return zdext_sample_new(st, seg, &view);
	if (rc == -EAGAIN)
		Py_RETURN_NONE;
	return zdext_raise(st, rc, "try_take");
}

/* Checks that the reader may be used now (not closed, not waited on by
 * another thread).  Returns 0, or -1 with an exception. */
static int
reader_usable(ReaderObject *r)
{
	zdext_state *st = zdext_state_of((PyObject *)r);

	if (zdext_check_owner(r->segment, "the reader") < 0)
		return -1;
	if (reader_is_closed(r)) {
		zdext_closed(st, "the reader");
		return -1;
	}
	if (r->busy) {
		PyErr_SetString(PyExc_RuntimeError,
				"another thread is already waiting on this Reader");
		return -1;
	}
	return 0;
}

static PyObject *
reader_fileno(ReaderObject *r, PyObject *Py_UNUSED(ignored))
{
	int fd;

	if (reader_usable(r) < 0)
		return NULL;
	fd = zd_reader_ready_fd(r->segment->seg, &r->r);
	if (fd < 0)
		return zdext_raise(zdext_state_of((PyObject *)r), fd, "fileno");
	if (!r->has_fd) {
		/* From now on try_take() arms.  Samples already waiting make
		 * the new descriptor readable at once. */
		zd_reader_stats_t s;

		r->has_fd = 1;
		if (zd_reader_stats(r->segment->seg, &r->r, &s) == 0 && s.lag > 0)
			zd_reader_ready_poke(r->segment->seg, &r->r);
		else
			zd_reader_ready_arm(r->segment->seg, &r->r,
					    zd_notify_generation(r->segment->seg));
	}
	return PyLong_FromLong(fd);
}

#define ZDEXT_ARM_TRIES 64

/* try_take() once the reader has a readiness descriptor: takes if a
 * sample is there (the reader then stays disarmed), else arms the
 * descriptor and takes again if a commit came in between.  Returns a
 * Sample, or None when armed with nothing to take (the descriptor becomes
 * readable at the next commit or goodbye).  The reader is usable. */
static PyObject *
reader_take_or_arm(ReaderObject *r)
{
	zdext_state *st = zdext_state_of((PyObject *)r);
	zd_segment_t *h = r->segment->seg;
	zd_view_t view;
	int rc = 1;

	for (int i = 0; i < ZDEXT_ARM_TRIES && rc == 1; i++) {
		uint64_t last = zd_notify_generation(h);

		rc = zd_reader_take(h, &r->r, &view);
		if (rc == 0) {
			zd_reader_ready_disarm(h, &r->r);
			return zdext_sample_new(st, r->segment, &view);
		}
		if (rc != -EAGAIN) {
			zd_reader_ready_disarm(h, &r->r);
			return zdext_raise(st, rc, "take");
		}
		rc = zd_reader_ready_arm(h, &r->r, last);
		if (rc < 0)
			return zdext_raise(st, rc, "arm");
	}
	/* Armed.  After ZDEXT_ARM_TRIES busy rounds the caller waits anyway:
	 * the next commit sends, and the caller re-checks on a timer. */
	Py_RETURN_NONE;
}

static PyObject *
reader_disarm(ReaderObject *r, PyObject *Py_UNUSED(ignored))
{
	/* Harmless on a closed reader: nothing is armed any more. */
	if (!r->closed && zdext_segment_attached(r->segment))
		zd_reader_ready_disarm(r->segment->seg, &r->r);
	Py_RETURN_NONE;
}

PyObject *
zdext_aio_call(PyObject *self, const char *name, PyObject *const *args,
	       Py_ssize_t nargs, PyObject *kwnames)
{
	zdext_state *st = zdext_state_of(self);
	PyObject *stack[8], *fn, *res;
	Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0, i;

	if (st->aio == NULL) {
		st->aio = PyImport_ImportModule("zdshm.aio");
		if (st->aio == NULL)
			return NULL;
	}
	if (1 + nargs + nkw > (Py_ssize_t)(sizeof(stack) / sizeof(stack[0]))) {
		PyErr_Format(PyExc_TypeError, "%s(): too many arguments", name);
		return NULL;
	}
	fn = PyObject_GetAttrString(st->aio, name);
	if (fn == NULL)
		return NULL;
	stack[0] = self;
	for (i = 0; i < nargs + nkw; i++)
		stack[1 + i] = args[i];
	res = PyObject_Vectorcall(fn, stack, (size_t)(1 + nargs), kwnames);
	Py_DECREF(fn);
	return res;
}

static PyObject *
reader_atake(PyObject *r, PyObject *const *args, Py_ssize_t nargs,
	     PyObject *kwnames)
{
	return zdext_aio_call(r, "atake", args, nargs, kwnames);
}

static PyObject *
reader_aiter_method(PyObject *r, PyObject *const *args, Py_ssize_t nargs,
		    PyObject *kwnames)
{
	return zdext_aio_call(r, "aiter", args, nargs, kwnames);
}

static PyObject *
reader_am_aiter(PyObject *r)
{
	return zdext_aio_call(r, "aiter", NULL, 0, NULL);
}

static PyObject *
reader_iternext(ReaderObject *r)
{
	return reader_take_impl(r, UINT64_MAX, 1);
}

static PyObject *
reader_stats(ReaderObject *r, PyObject *Py_UNUSED(ignored))
{
	zdext_state *st = zdext_state_of((PyObject *)r);
	zd_reader_stats_t s;
	PyObject *last;
	int rc;

	if (zdext_check_owner(r->segment, "the reader") < 0)
		return NULL;
	if (reader_is_closed(r))
		return zdext_closed(st, "the reader");
	rc = zd_reader_stats(r->segment->seg, &r->r, &s);
	if (rc < 0)
		return zdext_raise(st, rc, "stats");
	if (s.last_sn == UINT64_MAX)
		last = Py_NewRef(Py_None);
	else
		last = PyLong_FromUnsignedLongLong(s.last_sn);
	if (last == NULL)
		return NULL;
	return Py_BuildValue("{s:K,s:K,s:K,s:K,s:N}", "taken",
			     (unsigned long long)s.taken, "dropped",
			     (unsigned long long)s.dropped, "skipped",
			     (unsigned long long)s.skipped, "lag",
			     (unsigned long long)s.lag, "last_sn", last);
}

static PyObject *
reader_close(ReaderObject *r, PyObject *Py_UNUSED(ignored))
{
	SegmentObject *seg = r->segment;

	if (zdext_check_owner(seg, "the reader") < 0)
		return NULL;
	if (reader_is_closed(r))
		Py_RETURN_NONE;
	/* A waiter in another thread leaves at its next slice; this thread's
	 * own wait (we run in a signal handler between two of its slices)
	 * leaves once the handler returns. */
	reader_mark_closed(r);
	zdext_wait_idle(&r->busy, zdext_own_waits(seg, &r->closed));
	reader_unregister(r);
	Py_RETURN_NONE;
}

static PyObject *
reader_enter(ReaderObject *r, PyObject *Py_UNUSED(ignored))
{
	if (zdext_check_owner(r->segment, "the reader") < 0)
		return NULL;
	if (reader_is_closed(r))
		return zdext_closed(zdext_state_of((PyObject *)r), "the reader");
	return Py_NewRef(r);
}

static PyObject *
reader_exit(ReaderObject *r, PyObject *const *Py_UNUSED(args),
	    Py_ssize_t Py_UNUSED(nargs))
{
	PyObject *res;

	if (zdext_foreign(r->segment)) {
		if (!r->closed)     /* a fork child: the registration stays */
			reader_mark_closed(r);
		Py_RETURN_FALSE;
	}
	res = reader_close(r, NULL);
	if (res == NULL)
		return NULL;
	Py_DECREF(res);
	Py_RETURN_FALSE;
}

static void
reader_dealloc(ReaderObject *r)
{
	PyTypeObject *tp = Py_TYPE(r);
	SegmentObject *seg = r->segment;

	if (!r->closed) {
		reader_mark_closed(r);
		reader_unregister(r);
	}
	tp->tp_free((PyObject *)r);
	Py_DECREF(tp);
	Py_DECREF(seg);
}

static PyObject *
reader_repr(ReaderObject *r)
{
	return PyUnicode_FromFormat("<zdshm.Reader index=%u%s%s>",
				    (unsigned)r->r.index,
				    (r->r.flags & ZD_READER_LATEST) ? " latest" : "",
				    reader_is_closed(r) ? " closed" : "");
}

static PyObject *
reader_get_index(ReaderObject *r, void *Py_UNUSED(c))
{
	return PyLong_FromUnsignedLong(r->r.index);
}

static PyObject *
reader_get_closed(ReaderObject *r, void *Py_UNUSED(c))
{
	return PyBool_FromLong(reader_is_closed(r));
}

static PyObject *
reader_get_segment(ReaderObject *r, void *Py_UNUSED(c))
{
	return Py_NewRef(r->segment);
}

static PyObject *
reader_get_latest(ReaderObject *r, void *Py_UNUSED(c))
{
	return PyBool_FromLong((r->r.flags & ZD_READER_LATEST) != 0);
}

static PyGetSetDef reader_getset[] = {
	{"latest", (getter)reader_get_latest, NULL,
	 "True for a latest-value reader (Segment.reader(latest=True)).", NULL},
	{"index", (getter)reader_get_index, NULL,
	 "This reader's bit in the read masks (0..63).", NULL},
	{"closed", (getter)reader_get_closed, NULL, "True after close().", NULL},
	{"segment", (getter)reader_get_segment, NULL, "The segment.", NULL},
	{NULL, NULL, NULL, NULL, NULL},
};

static PyMethodDef reader_methods[] = {
	{"take", (PyCFunction)(void (*)(void))reader_take,
	 METH_FASTCALL | METH_KEYWORDS,
	 "take($self, /, timeout=None)\n--\n\n"
	 "The oldest unread sample (a latest reader: the newest, skipping the "
	 "older ones); waits (GIL released, Ctrl-C works).  "
	 "WaitTimeoutError, SegmentClosedError after the creator's goodbye, "
	 "CreatorDeadError once the creator died (each after every sample "
	 "committed before is taken)."},
	{"try_take", (PyCFunction)reader_try_take, METH_NOARGS,
	 "try_take($self, /)\n--\n\nThe oldest unread sample (a latest reader: "
	 "the newest), or None.  "
	 "Once fileno() was called, a None also arms the descriptor: it becomes "
	 "readable at the next commit or goodbye."},
	{"fileno", (PyCFunction)reader_fileno, METH_NOARGS,
	 "fileno($self, /)\n--\n\n"
	 "The readiness descriptor (made on first call, closed with the "
	 "reader; do not close it), for select/poll/event loops: wait until "
	 "it is readable, then call try_take() until it returns None (which "
	 "arms it again).  Readable at once if samples are waiting."},
	{"atake", (PyCFunction)(void (*)(void))reader_atake,
	 METH_FASTCALL | METH_KEYWORDS,
	 "atake($self, /, timeout=None)\n--\n\n"
	 "Coroutine: the next sample (as take()), awaited without blocking the "
	 "event loop (WaitTimeoutError, SegmentClosedError, CreatorDeadError "
	 "as take()).  Cancelling it leaves nothing behind."},
	{"aiter", (PyCFunction)(void (*)(void))reader_aiter_method,
	 METH_FASTCALL | METH_KEYWORDS,
	 "aiter($self, /)\n--\n\n"
	 "Asynchronous iterator of samples (also `async for s in reader`); "
	 "ends like the blocking iterator."},
	{"_disarm", (PyCFunction)reader_disarm, METH_NOARGS,
	 "_disarm($self, /)\n--\n\nStops an armed wait."},
	{"stats", (PyCFunction)reader_stats, METH_NOARGS,
	 "stats($self, /)\n--\n\nA dict: taken, dropped, skipped (a latest reader's "
	 "passed-over samples), lag, last_sn (None before the first)."},
	{"close", (PyCFunction)reader_close, METH_NOARGS,
	 "close($self, /)\n--\n\nUnregisters; taken samples stay valid."},
	{"__enter__", (PyCFunction)reader_enter, METH_NOARGS,
	 "__enter__($self, /)\n--\n\nThe reader itself."},
	{"__exit__", (PyCFunction)(void (*)(void))reader_exit, METH_FASTCALL,
	 "__exit__($self, /, *exc_info)\n--\n\nCloses the reader."},
	{"__reduce_ex__", (PyCFunction)zdext_reduce_ex, METH_O,
	 "__reduce_ex__($self, protocol, /)\n--\n\n"
	 "Refused (TypeError): pass the segment name and open a reader in the other process."},
	{NULL, NULL, 0, NULL},
};

static PyType_Slot reader_slots[] = {
	{Py_tp_doc, "A registered reader (see Segment.reader).  Iterating blocks "
		    "and ends when the creator closes the segment; it raises "
		    "CreatorDeadError when the creator died (after every sample "
		    "committed before)."},
	{Py_tp_dealloc, reader_dealloc},
	{Py_tp_repr, reader_repr},
	{Py_tp_getset, reader_getset},
	{Py_tp_methods, reader_methods},
	{Py_tp_iter, PyObject_SelfIter},
	{Py_tp_iternext, reader_iternext},
	{Py_am_aiter, reader_am_aiter},
	{0, NULL},
};

PyType_Spec zdext_reader_spec = {
	.name = "zdshm.Reader",
	.basicsize = sizeof(ReaderObject),
	.flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_DISALLOW_INSTANTIATION |
		 Py_TPFLAGS_IMMUTABLETYPE,
	.slots = reader_slots,
};
