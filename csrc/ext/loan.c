/* loan.c — Loan: a writable buffer exporter over a reserved slot.
 *
 * Rules (README "Lifetime rules"):
 *   - len(loan) == slot capacity; views are 1-D unsigned bytes, writable;
 *   - the Loan counts its exports; commit() and discard() refuse with
 *     ViewsAliveError while any view is alive, so after commit the writer
 *     holds no writable view of a published slot;
 *   - a Loan collected without commit is discarded, never published;
 *   - a loan_array frame (arrays.c) is one export of its loan, and so is
 *     every ndarray view made of it while the loan is live: its commit
 *     allows exactly the frame's own export to remain.
 */
#include "ext.h"

#include <errno.h>
#include <string.h>

PyObject *
zdext_loan_new(zdext_state *st, SegmentObject *seg, uint32_t slot)
{
	LoanObject *l;
	void *data = NULL, *meta = NULL;
	uint64_t cap = 0;
	int rc;

	rc = zd_slot_data_ptr(seg->seg, slot, &data, &cap, &meta);
	if (rc < 0) {
		zd_slot_discard(seg->seg, slot);
		return zdext_raise(st, rc, "loan");
	}
	l = PyObject_New(LoanObject, st->loan_type);
	if (l == NULL) {
		zd_slot_discard(seg->seg, slot);
		return NULL;
	}
	l->segment = (SegmentObject *)Py_NewRef(seg);
	l->link.next = l->link.prev = &l->link;
	l->link.owner = (PyObject *)l;
	l->link.is_loan = 1;
	l->data = data;
	l->meta = meta;
	l->capacity = (Py_ssize_t)cap;
	l->fmt_nbytes = 0;
	l->sn = 0;
	l->slot = slot;
	l->state = ZDEXT_LOAN_LIVE;
	l->has_format = 0;
	l->exports = 0;
	seg->n_loans++;
	zdext_exporter_made(seg);
	return (PyObject *)l;
}

/* A live loan is committed or discarded: it leaves the open objects. */
static void
loan_ended(LoanObject *l, int state)
{
	l->state = state;
	l->segment->n_loans--;
}

/* Ends a live loan without publishing: discarded in the core while the
 * slot is still this handle's (otherwise the core's detach or close, or
 * the parent of this fork child, owns it). */
static void
loan_drop(LoanObject *l)
{
	if (l->state != ZDEXT_LOAN_LIVE)
		return;
	if (zdext_segment_attached(l->segment))
		zd_slot_discard(l->segment->seg, l->slot);
	loan_ended(l, ZDEXT_LOAN_DISCARDED);
}

void
zdext_loan_export(LoanObject *l)
{
	if (l->exports++ == 0)
		zdext_viewed_add(l->segment, &l->link);
}

void
zdext_loan_unexport(LoanObject *l)
{
	if (--l->exports > 0)
		return;
	/* A close deferred for this view: the loan ends with it. */
	if (l->segment->state >= ZDEXT_DEFERRED)
		loan_drop(l);
	zdext_viewed_remove(l->segment, &l->link);
}

/* 0 if the loan may be committed/discarded/formatted now, else -1. */
static int
loan_check_live(LoanObject *l, const char *action)
{
	zdext_state *st = zdext_state_of((PyObject *)l);
	char what[80];

	if (zdext_check_owner(l->segment, "the loan") < 0)
		return -1;
	if (l->segment->state != ZDEXT_OPEN || l->segment->seg == NULL) {
		zdext_closed(st, "the loan's segment");
		return -1;
	}
	if (l->state != ZDEXT_LOAN_LIVE) {
		PyOS_snprintf(what, sizeof(what), "%s: the loan was already %s",
			      action, l->state == ZDEXT_LOAN_COMMITTED
			      ? "committed" : "discarded");
		zdext_raise(st, -ESTALE, what);
		return -1;
	}
	return 0;
}

PyObject *
zdext_loan_commit(LoanObject *l, PyObject *nbytes_obj, Py_ssize_t allowed)
{
	zdext_state *st = zdext_state_of((PyObject *)l);
	uint64_t n = 0, sn = 0;
	int given = nbytes_obj != NULL && nbytes_obj != Py_None;
	int rc;

	if (given) {
		if (zdext_u64_arg(nbytes_obj, "nbytes", 0, UINT64_MAX, &n) < 0)
			return NULL;
		if (n > (uint64_t)l->capacity) {
			PyErr_Format(st->SampleTooLargeError,
				     "nbytes must be an int in 0..%zd (the slot "
				     "capacity), got %R", l->capacity, nbytes_obj);
			return NULL;
		}
	}
	if (loan_check_live(l, "commit") < 0)
		return NULL;
	if (l->exports > allowed) {
		char what[48];

		PyOS_snprintf(what, sizeof(what), "the loan of slot %u",
			      (unsigned)l->slot);
		return zdext_views_alive(st, l->exports - allowed, what, "commit");
	}
	if (l->has_format) {
		if (given && n != l->fmt_nbytes) {
			PyErr_Format(PyExc_ValueError,
				     "nbytes %R does not match the format and shape "
				     "set with set_format() (%llu bytes)", nbytes_obj,
				     (unsigned long long)l->fmt_nbytes);
			return NULL;
		}
		n = l->fmt_nbytes;
	} else {
		if (!given)
			n = (uint64_t)l->capacity;
		/* No description: clear the magic a previous sample left. */
		l->meta[0] = 0;
		l->meta[1] = 0;
	}
	rc = zd_slot_commit_in_place(l->segment->seg, l->slot, n, &sn);
	if (rc < 0)
		return zdext_raise(st, rc, "commit");
	loan_ended(l, ZDEXT_LOAN_COMMITTED);
	l->sn = sn;
	return PyLong_FromUnsignedLongLong(sn);
}

static PyObject *
loan_commit(LoanObject *l, PyObject *const *args, Py_ssize_t nargs,
	    PyObject *kwnames)
{
	static const char *const names[] = {"nbytes"};
	PyObject *a[1];

	if (kwnames == NULL && nargs <= 1)
		return zdext_loan_commit(l, nargs ? args[0] : NULL, 0);
	if (zdext_bind("commit", args, nargs, kwnames, names, 1, 1, a) < 0)
		return NULL;
	return zdext_loan_commit(l, a[0], 0);
}

PyObject *
zdext_loan_discard(LoanObject *l, Py_ssize_t allowed)
{
	zdext_state *st = zdext_state_of((PyObject *)l);
	int rc;

	if (loan_check_live(l, "discard") < 0)
		return NULL;
	if (l->exports > allowed) {
		char what[48];

		PyOS_snprintf(what, sizeof(what), "the loan of slot %u",
			      (unsigned)l->slot);
		return zdext_views_alive(st, l->exports - allowed, what, "discard");
	}
	rc = zd_slot_discard(l->segment->seg, l->slot);
	loan_ended(l, ZDEXT_LOAN_DISCARDED);
	if (rc < 0)
		return zdext_raise(st, rc, "discard");
	Py_RETURN_NONE;
}

static PyObject *
loan_discard(LoanObject *l, PyObject *Py_UNUSED(ignored))
{
	return zdext_loan_discard(l, 0);
}

static PyObject *
loan_set_format(LoanObject *l, PyObject *const *args, Py_ssize_t nargs,
		PyObject *kwnames)
{
	static const char *const names[] = {"format", "shape"};
	zdext_state *st = zdext_state_of((PyObject *)l);
	PyObject *a[2];
	zdext_layout lay;

	if (zdext_bind("set_format", args, nargs, kwnames, names, 2, 2, a) < 0)
		return NULL;
	if (a[0] == NULL || a[1] == NULL) {
		PyErr_SetString(PyExc_TypeError, "set_format() needs format and shape");
		return NULL;
	}
	if (zdext_layout_from_py(st, a[0], a[1], (uint64_t)l->capacity, &lay) < 0)
		return NULL;
	if (loan_check_live(l, "set_format") < 0)
		return NULL;
	zdext_meta_encode(&lay, l->meta);
	l->has_format = 1;
	l->fmt_nbytes = lay.nbytes;
	Py_RETURN_NONE;
}

static int loan_can_export(LoanObject *l);

static PyObject *
loan_dlpack(LoanObject *l, PyObject *const *args, Py_ssize_t nargs,
	    PyObject *kwnames)
{
	zdext_dlpack_req req;
	zdext_layout lay;

	if (zdext_dlpack_args(args, nargs, kwnames, &req) < 0 ||
	    loan_can_export(l) < 0)
		return NULL;
	/* The set_format description (decoded as a reader would), else the
	 * whole slot as bytes. */
	if (!l->has_format ||
	    !zdext_meta_decode(l->meta, l->fmt_nbytes, (uint64_t)l->capacity,
			       &lay))
		zdext_layout_raw(&lay, (uint64_t)l->capacity);
	return zdext_dlpack_export((PyObject *)l, &lay, 0, &req);
}

static PyObject *
loan_enter(LoanObject *l, PyObject *Py_UNUSED(ignored))
{
	if (loan_check_live(l, "enter") < 0)
		return NULL;
	return Py_NewRef(l);
}

static PyObject *
loan_exit(LoanObject *l, PyObject *const *args, Py_ssize_t nargs)
{
	PyObject *r;

	if (zdext_foreign(l->segment))
		Py_RETURN_FALSE;    /* a fork child: neither commit nor discard */
	if (nargs >= 1 && args[0] != Py_None) {
		/* The body raised: never publish.  With views still alive the
		 * loan stays loaned and is discarded when the Loan is collected. */
		if (l->exports == 0)
			loan_drop(l);
		Py_RETURN_FALSE;
	}
	if (l->state != ZDEXT_LOAN_LIVE)
		Py_RETURN_FALSE;
	r = zdext_loan_commit(l, NULL, 0);
	if (r == NULL)
		return NULL;
	Py_DECREF(r);
	Py_RETURN_FALSE;
}


/* --------------------------------------------------------------------------
 * Buffer protocol
 * ------------------------------------------------------------------------ */

/* 0 if a new view (buffer or DLPack export) may be made, else -1. */
static int
loan_can_export(LoanObject *l)
{
	if (zdext_check_owner(l->segment, "the loan") < 0)
		return -1;
	if (l->segment->state != ZDEXT_OPEN || l->segment->seg == NULL) {
		zdext_closed(zdext_state_of((PyObject *)l), "the loan's segment");
		return -1;
	}
	if (l->state != ZDEXT_LOAN_LIVE) {
		PyErr_Format(PyExc_BufferError,
			     "the loan of slot %u was already %s: no new views",
			     (unsigned)l->slot, l->state == ZDEXT_LOAN_COMMITTED
			     ? "committed" : "discarded");
		return -1;
	}
	return 0;
}

static int
loan_getbuffer(LoanObject *l, Py_buffer *view, int flags)
{
	if (loan_can_export(l) < 0) {
		view->obj = NULL;
		return -1;
	}
	if (PyBuffer_FillInfo(view, (PyObject *)l, l->data, l->capacity, 0,
			      flags) < 0)
		return -1;
	zdext_loan_export(l);
	return 0;
}

static void
loan_releasebuffer(LoanObject *l, Py_buffer *Py_UNUSED(view))
{
	zdext_loan_unexport(l);
}

static void
loan_dealloc(LoanObject *l)
{
	PyTypeObject *tp = Py_TYPE(l);
	SegmentObject *seg = l->segment;

	/* An abandoned loan is discarded, never published.  No view is
	 * left (each holds a reference), so it is on no list. */
	loan_drop(l);
	tp->tp_free((PyObject *)l);
	Py_DECREF(tp);
	zdext_exporter_gone(seg);
	Py_DECREF(seg);
}

static Py_ssize_t
loan_len(LoanObject *l)
{
	return l->capacity;
}

static PyObject *
loan_repr(LoanObject *l)
{
	static const char *const states[] = {"live", "committed", "discarded"};

	return PyUnicode_FromFormat("<zdshm.Loan slot=%u capacity=%zd %s exports=%zd>",
				    (unsigned)l->slot, l->capacity,
				    states[l->state], l->exports);
}

static PyObject *
loan_get_slot(LoanObject *l, void *Py_UNUSED(c))
{
	return PyLong_FromUnsignedLong(l->slot);
}

static PyObject *
loan_get_capacity(LoanObject *l, void *Py_UNUSED(c))
{
	return PyLong_FromSsize_t(l->capacity);
}

static PyObject *
loan_get_live(LoanObject *l, void *Py_UNUSED(c))
{
	return PyBool_FromLong(l->state == ZDEXT_LOAN_LIVE &&
			       l->segment->seg != NULL &&
			       l->segment->state < ZDEXT_DETACHED);
}

static PyObject *
loan_get_exports(LoanObject *l, void *Py_UNUSED(c))
{
	return PyLong_FromSsize_t(l->exports);
}

static PyObject *
loan_get_address(LoanObject *l, void *Py_UNUSED(c))
{
	return PyLong_FromVoidPtr(l->data);
}

static PyObject *
loan_get_sn(LoanObject *l, void *Py_UNUSED(c))
{
	if (l->state != ZDEXT_LOAN_COMMITTED)
		Py_RETURN_NONE;
	return PyLong_FromUnsignedLongLong(l->sn);
}

static PyGetSetDef loan_getset[] = {
	{"slot", (getter)loan_get_slot, NULL, "The loaned slot index.", NULL},
	{"capacity", (getter)loan_get_capacity, NULL, "Writable bytes (== len).", NULL},
	{"live", (getter)loan_get_live, NULL,
	 "True until commit, discard or the segment's close.", NULL},
	{"exports", (getter)loan_get_exports, NULL,
	 "Number of buffer views alive.", NULL},
	{"address", (getter)loan_get_address, NULL,
	 "Address of the slot's data in this process (diagnostics).", NULL},
	{"sn", (getter)loan_get_sn, NULL,
	 "Sequence number once committed, else None.", NULL},
	{NULL, NULL, NULL, NULL, NULL},
};

static PyMethodDef loan_methods[] = {
	{"commit", (PyCFunction)(void (*)(void))loan_commit,
	 METH_FASTCALL | METH_KEYWORDS,
	 "commit($self, /, nbytes=None)\n--\n\n"
	 "Publishes nbytes (default: the set_format size, else the capacity) and "
	 "returns the sequence number.  ViewsAliveError while views are alive."},
	{"discard", (PyCFunction)loan_discard, METH_NOARGS,
	 "discard($self, /)\n--\n\nEnds the loan without publishing."},
	{"set_format", (PyCFunction)(void (*)(void))loan_set_format,
	 METH_FASTCALL | METH_KEYWORDS,
	 "set_format($self, /, format, shape)\n--\n\n"
	 "Stores a PEP 3118 format and shape in the slot's meta area."},
	{"__enter__", (PyCFunction)loan_enter, METH_NOARGS,
	 "__enter__($self, /)\n--\n\nThe loan itself."},
	{"__exit__", (PyCFunction)(void (*)(void))loan_exit, METH_FASTCALL,
	 "__exit__($self, /, *exc_info)\n--\n\nCommits on success, discards on exception."},
	{"__reduce_ex__", (PyCFunction)zdext_reduce_ex, METH_O,
	 "__reduce_ex__($self, protocol, /)\n--\n\n"
	 "Refused (TypeError): commit it and take the sample in the other process."},
	{"__dlpack__", (PyCFunction)(void (*)(void))loan_dlpack,
	 METH_FASTCALL | METH_KEYWORDS,
	 "__dlpack__($self, /, *, stream=None, max_version=None, dl_device=None, "
	 "copy=None)\n--\n\n"
	 "A writable DLPack capsule of the loan (the set_format description, "
	 "else the slot's bytes); an export like a memoryview: commit() refuses "
	 "while the consumer's tensor is alive."},
	{"__dlpack_device__", (PyCFunction)zdext_dlpack_device, METH_NOARGS,
	 "__dlpack_device__($self, /)\n--\n\n(1, 0): host memory (kDLCPU)."},
	{"__array__", (PyCFunction)(void (*)(void))zdext_dunder_array,
	 METH_FASTCALL | METH_KEYWORDS,
	 "__array__($self, /, dtype=None, copy=None)\n--\n\n"
	 "numpy.asarray(memoryview(self)): BufferError once committed."},
#if PY_VERSION_HEX < 0x030C0000
	{"__buffer__", (PyCFunction)zdext_dunder_buffer, METH_O, ZDEXT_BUFFER_DOC},
#endif
	{NULL, NULL, 0, NULL},
};

static PyType_Slot loan_slots[] = {
	{Py_tp_doc, "A writable loan of one slot (see Segment.reserve, Writer.loan)."},
	{Py_tp_dealloc, loan_dealloc},
	{Py_tp_repr, loan_repr},
	{Py_tp_getset, loan_getset},
	{Py_tp_methods, loan_methods},
	{Py_sq_length, loan_len},
	{Py_bf_getbuffer, loan_getbuffer},
	{Py_bf_releasebuffer, loan_releasebuffer},
	{0, NULL},
};

PyType_Spec zdext_loan_spec = {
	.name = "zdshm.Loan",
	.basicsize = sizeof(LoanObject),
	.flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_DISALLOW_INSTANTIATION |
		 Py_TPFLAGS_IMMUTABLETYPE,
	.slots = loan_slots,
};
