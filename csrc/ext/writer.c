/* writer.c — Writer: loaning slots under an overflow policy, and publish().
 *
 * A loan first tries once without waiting, with the GIL held (no system
 * call unless the segment is full and must be reaped); only then does it
 * wait, in slices, with the GIL released.
 */
#include "ext.h"

#include <errno.h>
#include <string.h>

static const char *const policy_names[] = {"block", "fail", "reclaim"};

PyObject *
zdext_segment_writer(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
		     PyObject *kwnames)
{
	static const char *const names[] = {"overflow", "timeout", "spin"};
	SegmentObject *seg = (SegmentObject *)self;
	zdext_state *st = zdext_state_of(self);
	PyObject *a[3];
	zd_overflow_t policy = ZD_OVERFLOW_BLOCK;
	uint64_t timeout = UINT64_MAX, spin = 0;
	WriterObject *w;

	if (zdext_bind("writer", args, nargs, kwnames, names, 3, 3, a) < 0)
		return NULL;
	if (a[0] != NULL) {
		int i;

		if (!PyUnicode_Check(a[0])) {
			PyErr_Format(PyExc_TypeError,
				     "overflow must be 'block', 'fail' or 'reclaim', "
				     "got %.200R (%s)", a[0], Py_TYPE(a[0])->tp_name);
			return NULL;
		}
		for (i = 0; i < 3; i++)
			if (PyUnicode_CompareWithASCIIString(a[0], policy_names[i]) == 0)
				break;
		if (i == 3) {
			PyErr_Format(PyExc_ValueError,
				     "overflow must be 'block', 'fail' or 'reclaim', "
				     "got %.200R", a[0]);
			return NULL;
		}
		policy = i == 0 ? ZD_OVERFLOW_BLOCK
			 : i == 1 ? ZD_OVERFLOW_FAIL : ZD_OVERFLOW_RECLAIM;
	}
	if (a[1] != NULL && zdext_seconds_arg(a[1], "timeout", 1, 0.0, &timeout) < 0)
		return NULL;
	if (a[2] != NULL && zdext_seconds_arg(a[2], "spin", 0, 10.0, &spin) < 0)
		return NULL;
	if (spin == UINT64_MAX) {
		PyErr_Format(PyExc_ValueError,
			     "spin must be a number of seconds in 0..10, got %R", a[2]);
		return NULL;
	}
	if (zdext_segment_check(seg) < 0)
		return NULL;
	w = PyObject_New(WriterObject, st->writer_type);
	if (w == NULL)
		return NULL;
	w->segment = (SegmentObject *)Py_NewRef(seg);
	w->policy = policy;
	w->timeout_ns = timeout;
	w->spin_ns = spin;
	w->closed = 0;
	memset(&w->plan, 0, sizeof(w->plan));
	return (PyObject *)w;
}

struct loan_ctx {
	zd_segment_t *seg;
	zd_overflow_t policy;
	uint64_t nbytes;
	uint32_t slot;
};

static int
loan_slice(void *p, uint64_t deadline, uint64_t spin)
{
	struct loan_ctx *c = p;

	return zd_writer_loan_size(c->seg, c->nbytes, c->policy, deadline, spin,
				   &c->slot);
}

/* Loans a slot for nbytes (of the smallest size class that fits and has
 * one) per the writer's policy; returns 0 or a code for zdext_raise.  The
 * segment is open. */
int
zdext_writer_loan_slot(WriterObject *w, uint64_t timeout_ns, uint64_t nbytes,
		       uint32_t *slot)
{
	SegmentObject *seg = w->segment;
	struct loan_ctx ctx;
	int rc;

	/* One attempt without waiting: FAIL never waits; RECLAIM with a
	 * deadline already passed reclaims or times out at once. */
	rc = zd_writer_loan_size(seg->seg, nbytes,
				 w->policy == ZD_OVERFLOW_RECLAIM
				 ? ZD_OVERFLOW_RECLAIM : ZD_OVERFLOW_FAIL,
				 0, 0, slot);
	if (rc == 0 || w->policy == ZD_OVERFLOW_FAIL)
		return rc;
	if (rc != -EAGAIN && rc != -ETIMEDOUT)
		return rc;
	if (timeout_ns == 0)
		return -ETIMEDOUT;
	ctx.seg = seg->seg;
	ctx.policy = w->policy;
	ctx.nbytes = nbytes;
	ctx.slot = 0;
	rc = zdext_wait(seg, loan_slice, &ctx, timeout_ns, w->spin_ns, &w->closed);
	if (rc == 0)
		*slot = ctx.slot;
	return rc;
}

/* One loan attempt that never waits (the reclaim policy reclaims). */
int
zdext_writer_try_slot(WriterObject *w, uint64_t nbytes, uint32_t *slot)
{
	int rc = zd_writer_loan_size(w->segment->seg, nbytes,
				     w->policy == ZD_OVERFLOW_RECLAIM
				     ? ZD_OVERFLOW_RECLAIM : ZD_OVERFLOW_FAIL,
				     0, 0, slot);

	return rc == -EAGAIN || rc == -ETIMEDOUT ? 1 : rc;
}

int
zdext_writer_check(WriterObject *w)
{
	if (zdext_check_owner(w->segment, "the writer") < 0)
		return -1;
	if (w->closed) {
		zdext_closed(zdext_state_of((PyObject *)w), "the writer");
		return -1;
	}
	return zdext_segment_check(w->segment);
}

/* timeout argument: absent -> the writer's default. */
static int
timeout_arg(WriterObject *w, PyObject *o, uint64_t *ns)
{
	/* Absent or ... (the default the signature shows): the writer's. */
	if (o == NULL || o == Py_Ellipsis) {
		*ns = w->timeout_ns;
		return 0;
	}
	return zdext_seconds_arg(o, "timeout", 1, 0.0, ns);
}

static PyObject *
writer_loan(WriterObject *w, PyObject *const *args, Py_ssize_t nargs,
	    PyObject *kwnames)
{
	static const char *const names[] = {"timeout", "nbytes"};
	zdext_state *st = zdext_state_of((PyObject *)w);
	PyObject *a[2];
	uint64_t timeout, nbytes;
	uint32_t slot;
	int rc;

	if (kwnames == NULL && nargs == 0) {
		a[0] = a[1] = NULL;
	} else if (zdext_bind("loan", args, nargs, kwnames, names, 2, 1, a) < 0) {
		return NULL;
	}
	/* The arguments first: an __index__ may close the segment. */
	if (timeout_arg(w, a[0], &timeout) < 0 ||
	    zdext_nbytes_arg(w->segment, a[1], "loan", &nbytes) < 0 ||
	    zdext_writer_check(w) < 0)
		return NULL;
	rc = zdext_writer_loan_slot(w, timeout, nbytes, &slot);
	if (rc < 0)
		return zdext_raise(st, rc, "loan");
	return zdext_loan_new(st, w->segment, slot);
}

/* publish() and, with `try_` set, try_publish(): the same copy-in, but
 * try_publish never waits and returns None when no slot is free now. */
static PyObject *
publish_impl(WriterObject *w, PyObject *const *args, Py_ssize_t nargs,
	     PyObject *kwnames, int try_)
{
	static const char *const names[] = {"obj", "timeout"};
	zdext_state *st = zdext_state_of((PyObject *)w);
	SegmentObject *seg = w->segment;
	PyObject *a[2];
	Py_buffer v;
	zdext_layout lay;
	uint64_t timeout = 0, cap, sn = 0, need;
	uint32_t slot;
	void *data = NULL, *meta = NULL;
	int rc;

	if (zdext_bind(try_ ? "try_publish" : "publish", args, nargs, kwnames,
		       names, try_ ? 1 : 2, try_ ? 1 : 2, a) < 0)
		return NULL;
	if (a[0] == NULL) {
		PyErr_Format(PyExc_TypeError, "%s() needs obj",
			     try_ ? "try_publish" : "publish");
		return NULL;
	}
	if (!try_ && timeout_arg(w, a[1], &timeout) < 0)
		return NULL;
	if (PyDict_Check(a[0]))
		return zdext_publish_arrays(w, a[0], timeout, try_);
	if (!PyObject_CheckBuffer(a[0])) {
		PyErr_Format(PyExc_TypeError,
			     "publish() needs an object supporting the buffer "
			     "protocol, got %.200R (%s)", a[0], Py_TYPE(a[0])->tp_name);
		return NULL;
	}
	if (PyObject_GetBuffer(a[0], &v, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) {
		PyErr_Clear();
		PyErr_Format(PyExc_ValueError,
			     "publish() needs a C-contiguous buffer, got %.200R "
			     "(use numpy.ascontiguousarray)", a[0]);
		return NULL;
	}
	if (zdext_layout_from_buffer(st, &v, a[0], seg->slot_capacity, &lay) < 0)
		goto fail;
	if (zdext_writer_check(w) < 0)
		goto fail;
	/* The smallest size class that holds the bytes and, for an empty
	 * array, its span: a reader bounds the meta by the slot's capacity. */
	need = zdext_layout_span(&lay);
	if (need < (uint64_t)v.len)
		need = (uint64_t)v.len;
	rc = try_ ? zdext_writer_try_slot(w, need, &slot)
		  : zdext_writer_loan_slot(w, timeout, need, &slot);
	if (rc == 1) {
		PyBuffer_Release(&v);
		Py_RETURN_NONE;
	}
	if (rc < 0) {
		zdext_raise(st, rc, "publish");
		goto fail;
	}
	rc = zd_slot_data_ptr(seg->seg, slot, &data, &cap, &meta);
	if (rc < 0) {
		zd_slot_discard(seg->seg, slot);
		zdext_raise(st, rc, "publish");
		goto fail;
	}
	if ((size_t)v.len >= ZDEXT_NOGIL_COPY) {
		seg->inflight++;
		Py_BEGIN_ALLOW_THREADS
		memcpy(data, v.buf, (size_t)v.len);
		Py_END_ALLOW_THREADS
		seg->inflight--;
	} else {
		memcpy(data, v.buf, (size_t)v.len);
	}
	zdext_meta_encode(&lay, meta);
	rc = zd_slot_commit_in_place(seg->seg, slot, (uint64_t)v.len, &sn);
	if (rc < 0) {
		zd_slot_discard(seg->seg, slot);
		zdext_raise(st, rc, "publish");
		goto fail;
	}
	PyBuffer_Release(&v);
	return PyLong_FromUnsignedLongLong(sn);
fail:
	PyBuffer_Release(&v);
	return NULL;
}

static PyObject *
writer_publish(WriterObject *w, PyObject *const *args, Py_ssize_t nargs,
	       PyObject *kwnames)
{
	return publish_impl(w, args, nargs, kwnames, 0);
}

static PyObject *
writer_try_publish(WriterObject *w, PyObject *const *args, Py_ssize_t nargs,
		   PyObject *kwnames)
{
	return publish_impl(w, args, nargs, kwnames, 1);
}

static PyObject *
writer_try_loan(WriterObject *w, PyObject *const *args, Py_ssize_t nargs,
		PyObject *kwnames)
{
	static const char *const names[] = {"nbytes"};
	zdext_state *st = zdext_state_of((PyObject *)w);
	PyObject *a[1] = {NULL};
	uint64_t nbytes;
	uint32_t slot;
	int rc;

	if ((nargs != 0 || kwnames != NULL) &&
	    zdext_bind("try_loan", args, nargs, kwnames, names, 1, 0, a) < 0)
		return NULL;
	if (zdext_nbytes_arg(w->segment, a[0], "try_loan", &nbytes) < 0 ||
	    zdext_writer_check(w) < 0)
		return NULL;
	rc = zdext_writer_try_slot(w, nbytes, &slot);
	if (rc == 1)
		Py_RETURN_NONE;
	if (rc < 0)
		return zdext_raise(st, rc, "try_loan");
	return zdext_loan_new(st, w->segment, slot);
}

static PyObject *
writer_fileno(WriterObject *w, PyObject *Py_UNUSED(ignored))
{
	int fd;

	if (zdext_writer_check(w) < 0)
		return NULL;
	fd = zd_writer_ready_fd(w->segment->seg);
	if (fd < 0)
		return zdext_raise(zdext_state_of((PyObject *)w), fd, "fileno");
	return PyLong_FromLong(fd);
}

/* _arm(last): arms the handle's readiness descriptor for "a slot came
 * free"; last is a notify_generation read before the caller's last try.
 * True: wait for fileno(); False: something changed since, try again. */
static PyObject *
writer_arm(WriterObject *w, PyObject *arg)
{
	unsigned long long last;
	int rc;

	last = PyLong_AsUnsignedLongLong(arg);
	if ((last == (unsigned long long)-1 && PyErr_Occurred()) ||
	    zdext_writer_check(w) < 0)
		return NULL;
	rc = zd_writer_ready_arm(w->segment->seg, (uint64_t)last);
	if (rc < 0)
		return zdext_raise(zdext_state_of((PyObject *)w), rc, "arm");
	return PyBool_FromLong(rc == 0);
}

static PyObject *
writer_disarm(WriterObject *w, PyObject *Py_UNUSED(ignored))
{
	if (w->segment->seg != NULL && !zdext_foreign(w->segment))
		zd_writer_ready_disarm(w->segment->seg);
	Py_RETURN_NONE;
}

static PyObject *
writer_aloan(PyObject *w, PyObject *const *args, Py_ssize_t nargs,
	     PyObject *kwnames)
{
	return zdext_aio_call(w, "aloan", args, nargs, kwnames);
}

static PyObject *
writer_apublish(PyObject *w, PyObject *const *args, Py_ssize_t nargs,
		PyObject *kwnames)
{
	return zdext_aio_call(w, "apublish", args, nargs, kwnames);
}

/* wait_for_readers: one slice waits for the next change of the segment's
 * generation (a reader's registration bumps the space count) unless enough
 * readers are registered already. */
struct readers_ctx {
	zd_segment_t *seg;
	uint64_t want;
};

static int
readers_slice(void *p, uint64_t deadline, uint64_t spin)
{
	struct readers_ctx *c = p;
	uint64_t last = zd_notify_generation(c->seg);
	int rc;

	if ((uint64_t)__builtin_popcountll(zd_segment_active_mask(c->seg)) >= c->want)
		return 0;
	rc = zd_notify_wait(c->seg, last, deadline, spin);
	return rc == 0 ? -EINTR : rc;   /* changed: look again */
}

static PyObject *
writer_wait_for_readers(WriterObject *w, PyObject *const *args,
			Py_ssize_t nargs, PyObject *kwnames)
{
	static const char *const names[] = {"n", "timeout"};
	zdext_state *st = zdext_state_of((PyObject *)w);
	PyObject *a[2];
	struct readers_ctx ctx;
	uint64_t timeout = UINT64_MAX;
	int rc;

	if (zdext_bind("wait_for_readers", args, nargs, kwnames, names, 2, 2, a) < 0)
		return NULL;
	if (a[0] == NULL) {
		PyErr_SetString(PyExc_TypeError, "wait_for_readers() needs n");
		return NULL;
	}
	if (zdext_u64_arg(a[0], "n", 0, ZD_READER_MAX, &ctx.want) < 0 ||
	    (a[1] != NULL &&
	     zdext_seconds_arg(a[1], "timeout", 1, 0.0, &timeout) < 0) ||
	    zdext_writer_check(w) < 0)
		return NULL;
	ctx.seg = w->segment->seg;
	rc = zdext_wait(w->segment, readers_slice, &ctx, timeout, 0, NULL);
	if (rc < 0)
		return zdext_raise(st, rc, "wait_for_readers");
	return PyLong_FromLong(__builtin_popcountll(zd_segment_active_mask(ctx.seg)));
}

static PyObject *
writer_close(WriterObject *w, PyObject *Py_UNUSED(ignored))
{
	if (zdext_check_owner(w->segment, "the writer") < 0)
		return NULL;
	w->closed = 1;
	Py_RETURN_NONE;
}

static PyObject *
writer_enter(WriterObject *w, PyObject *Py_UNUSED(ignored))
{
	if (zdext_writer_check(w) < 0)
		return NULL;
	return Py_NewRef(w);
}

static PyObject *
writer_exit(WriterObject *w, PyObject *const *Py_UNUSED(args),
	    Py_ssize_t Py_UNUSED(nargs))
{
	w->closed = 1;
	Py_RETURN_FALSE;
}

static void
writer_dealloc(WriterObject *w)
{
	PyTypeObject *tp = Py_TYPE(w);

	zdext_plan_clear(&w->plan);
	Py_DECREF(w->segment);
	tp->tp_free((PyObject *)w);
	Py_DECREF(tp);
}

static PyObject *
writer_repr(WriterObject *w)
{
	return PyUnicode_FromFormat("<zdshm.Writer overflow=%s%s>",
				    policy_names[w->policy],
				    w->closed ? " closed" : "");
}

static PyObject *
writer_get_overflow(WriterObject *w, void *Py_UNUSED(c))
{
	return PyUnicode_FromString(policy_names[w->policy]);
}

static PyObject *
writer_get_timeout(WriterObject *w, void *Py_UNUSED(c))
{
	if (w->timeout_ns == UINT64_MAX)
		Py_RETURN_NONE;
	return PyFloat_FromDouble((double)w->timeout_ns / 1e9);
}

static PyObject *
writer_get_spin(WriterObject *w, void *Py_UNUSED(c))
{
	return PyFloat_FromDouble((double)w->spin_ns / 1e9);
}

static PyObject *
writer_get_closed(WriterObject *w, void *Py_UNUSED(c))
{
	return PyBool_FromLong(w->closed);
}

static PyObject *
writer_get_segment(WriterObject *w, void *Py_UNUSED(c))
{
	return Py_NewRef(w->segment);
}

static PyGetSetDef writer_getset[] = {
	{"overflow", (getter)writer_get_overflow, NULL,
	 "'block', 'fail' or 'reclaim'.", NULL},
	{"timeout", (getter)writer_get_timeout, NULL,
	 "Default loan timeout in seconds, or None.", NULL},
	{"spin", (getter)writer_get_spin, NULL, "Spin before parking, seconds.", NULL},
	{"closed", (getter)writer_get_closed, NULL, "True after close().", NULL},
	{"segment", (getter)writer_get_segment, NULL, "The segment.", NULL},
	{NULL, NULL, NULL, NULL, NULL},
};

static PyMethodDef writer_methods[] = {
	{"loan", (PyCFunction)(void (*)(void))writer_loan,
	 METH_FASTCALL | METH_KEYWORDS,
	 "loan($self, /, timeout=..., *, nbytes=None)\n--\n\n"
	 "Loans a slot under the writer's overflow policy (a Loan); timeout "
	 "defaults to the writer's.  nbytes: the smallest size class that holds "
	 "it and has a slot, else the next larger (None: the largest class)."},
	{"publish", (PyCFunction)(void (*)(void))writer_publish,
	 METH_FASTCALL | METH_KEYWORDS,
	 "publish($self, /, obj, timeout=...)\n--\n\n"
	 "Copies a C-contiguous buffer into a slot, with its format and shape, "
	 "commits it and returns the sequence number; timeout defaults to the "
	 "writer's.  A dict of str -> buffer publishes several named arrays in "
	 "one sample (each aligned to 64 bytes, a directory in the slot)."},
	{"try_loan", (PyCFunction)(void (*)(void))writer_try_loan,
	 METH_FASTCALL | METH_KEYWORDS,
	 "try_loan($self, /, *, nbytes=None)\n--\n\n"
	 "A loan if a slot is free now (the reclaim policy reclaims), else None."},
	{"try_publish", (PyCFunction)(void (*)(void))writer_try_publish,
	 METH_FASTCALL | METH_KEYWORDS,
	 "try_publish($self, /, obj)\n--\n\n"
	 "publish() without waiting: the sequence number, or None when no slot "
	 "is free now."},
	{"fileno", (PyCFunction)writer_fileno, METH_NOARGS,
	 "fileno($self, /)\n--\n\n"
	 "The readiness descriptor of this handle's writers (one per segment "
	 "handle, closed with it; do not close it): readable after an armed "
	 "wait when a slot may have come free."},
	{"aloan", (PyCFunction)(void (*)(void))writer_aloan,
	 METH_FASTCALL | METH_KEYWORDS,
	 "aloan($self, /, timeout=..., *, nbytes=None)\n--\n\n"
	 "Coroutine: loan() awaited without blocking the event loop; timeout "
	 "defaults to the writer's."},
	{"apublish", (PyCFunction)(void (*)(void))writer_apublish,
	 METH_FASTCALL | METH_KEYWORDS,
	 "apublish($self, /, obj, timeout=...)\n--\n\n"
	 "Coroutine: publish() awaited without blocking the event loop; "
	 "timeout defaults to the writer's."},
	{"_arm", (PyCFunction)writer_arm, METH_O,
	 "_arm($self, last, /)\n--\n\nArms the readiness descriptor; True: wait."},
	{"_disarm", (PyCFunction)writer_disarm, METH_NOARGS,
	 "_disarm($self, /)\n--\n\nStops an armed wait."},
	{"loan_array", (PyCFunction)(void (*)(void))zdext_writer_loan_array,
	 METH_FASTCALL | METH_KEYWORDS,
	 "loan_array($self, /, shape, dtype, timeout=...)\n--\n\n"
	 "A context manager (LoanArray) whose `with` loans a slot and yields a "
	 "writable numpy array (a zdshm.arrays.LoanFrame) of that shape and "
	 "dtype over it; a normal exit makes the array read-only and commits, "
	 "an exception discards.  ViewsAliveError (nothing published) while "
	 "another view of the frame is alive at the exit.  timeout defaults to "
	 "the writer's."},
	{"loan_arrays", (PyCFunction)(void (*)(void))zdext_writer_loan_arrays,
	 METH_FASTCALL | METH_KEYWORDS,
	 "loan_arrays($self, /, arrays, timeout=...)\n--\n\n"
	 "loan_array for several named arrays in one sample: arrays is a dict "
	 "of name -> (shape, dtype); the `with` loans one slot of the smallest "
	 "size class that holds them all and yields a dict of writable numpy "
	 "arrays (LoanFrames), each aligned to 64 bytes; a normal exit makes "
	 "them read-only and commits, an exception discards.  ViewsAliveError "
	 "(nothing published) while another view of a frame is alive at the "
	 "exit.  timeout defaults to the writer's."},
	{"wait_for_readers", (PyCFunction)(void (*)(void))writer_wait_for_readers,
	 METH_FASTCALL | METH_KEYWORDS,
	 "wait_for_readers($self, /, n, timeout=None)\n--\n\n"
	 "Waits (GIL released, Ctrl-C works) until at least n readers are "
	 "registered in the segment and returns how many are; "
	 "WaitTimeoutError after timeout seconds."},
	{"close", (PyCFunction)writer_close, METH_NOARGS,
	 "close($self, /)\n--\n\nFurther loans raise ClosedError."},
	{"__enter__", (PyCFunction)writer_enter, METH_NOARGS,
	 "__enter__($self, /)\n--\n\nThe writer itself."},
	{"__exit__", (PyCFunction)(void (*)(void))writer_exit, METH_FASTCALL,
	 "__exit__($self, /, *exc_info)\n--\n\nCloses the writer."},
	{"__reduce_ex__", (PyCFunction)zdext_reduce_ex, METH_O,
	 "__reduce_ex__($self, protocol, /)\n--\n\n"
	 "Refused (TypeError): pass the segment name and open a writer in the other process."},
	{NULL, NULL, 0, NULL},
};

static PyType_Slot writer_slots[] = {
	{Py_tp_doc, "Loans and publishes slots (see Segment.writer)."},
	{Py_tp_dealloc, writer_dealloc},
	{Py_tp_repr, writer_repr},
	{Py_tp_getset, writer_getset},
	{Py_tp_methods, writer_methods},
	{0, NULL},
};

PyType_Spec zdext_writer_spec = {
	.name = "zdshm.Writer",
	.basicsize = sizeof(WriterObject),
	.flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_DISALLOW_INSTANTIATION |
		 Py_TPFLAGS_IMMUTABLETYPE,
	.slots = writer_slots,
};
