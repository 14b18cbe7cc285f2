/* arrays.c — Writer.loan_array: a context manager (LoanArray) whose `with`
 * yields a numpy array over a loan, and that array's type, LoanFrame.
 *
 * numpy stays an optional dependency and its C API is not used: LoanFrame
 * is a heap subclass of numpy.ndarray made on first use, its instances are
 * built by ndarray's own constructor (shape, dtype, buffer=loan), and the
 * frame is made read-only with ndarray.setflags.  The dtype is resolved
 * (numpy.dtype, zdshm.arrays.dtype_to_format) and the slot meta laid out
 * once per (shape, dtype) and writer: the plan cache of the Writer.
 *
 * Lifetime (README "Lifetime rules", loan_array): a LoanFrame holds one
 * export of its loan (frame_ext.loan) from its creation to its dealloc, as
 * a memoryview would; every LoanFrame made from a frame while its loan is
 * live (a slice, .view(), reshape, transpose: numpy calls
 * __array_finalize__ on each, and their base is the frame) holds one
 * more.  So at the block's exit the loan's export count says whether a
 * view other than the frame is alive, and the commit allows exactly the
 * frame's own export to remain.  ndarray views that are not LoanFrames
 * (np.asarray(frame), memoryview(frame)) are not seen.
 */
#include "ext.h"

#include <errno.h>
#include <stddef.h>
#include <string.h>

/* The fields LoanFrame adds after numpy's ndarray. */
typedef struct frame_ext {
	LoanObject *loan;   /* strong; holds one export of it while set */
} frame_ext;

static void frame_dealloc(PyObject *self);

/* LoanFrame itself among the bases of tp (a Python subclass of it has
 * subtype_dealloc, LoanFrame has frame_dealloc). */
static PyTypeObject *
frame_root(PyTypeObject *tp)
{
	while (tp->tp_dealloc != frame_dealloc)
		tp = tp->tp_base;
	return tp;
}

static frame_ext *
frame_ext_of(PyObject *frame)
{
	PyTypeObject *root = frame_root(Py_TYPE(frame));

	return (frame_ext *)((char *)frame + root->tp_basicsize -
			     (Py_ssize_t)sizeof(frame_ext));
}

static void
frame_dealloc(PyObject *self)
{
	PyTypeObject *tp = Py_TYPE(self);
	PyTypeObject *root = frame_root(tp);
	frame_ext *x = frame_ext_of(self);
	LoanObject *l = x->loan;

	x->loan = NULL;
	/* ndarray's dealloc drops its base (a reference to the loan too)
	 * and frees the object; the export goes after it. */
	root->tp_base->tp_dealloc(self);
	if (l != NULL) {
		zdext_loan_unexport(l);
		Py_DECREF(l);
	}
	Py_DECREF(tp);
}

/* 1 if o is a LoanFrame (or an instance of a subclass of it). */
static int
is_frame(PyObject *o)
{
	PyTypeObject *tp;

	for (tp = Py_TYPE(o); tp != NULL; tp = tp->tp_base)
		if (tp->tp_dealloc == frame_dealloc)
			return 1;
	return 0;
}

/* numpy calls this on every new LoanFrame with the array it came from
 * (None for the frame itself).  Only a view of a frame whose loan is live
 * takes an export: it shares the frame's memory, so its base is the frame
 * (ufunc results and copies have memory of their own). */
static PyObject *
frame_array_finalize(PyObject *self, PyObject *obj)
{
	PyObject *mod, *base;
	zdext_state *st;
	LoanObject *l;

	if (!is_frame(obj) || frame_ext_of(obj)->loan == NULL ||
	    frame_ext_of(self)->loan != NULL)
		Py_RETURN_NONE;
	mod = PyType_GetModuleByDef(Py_TYPE(self), &zdext_module_def);
	if (mod == NULL)
		return NULL;
	st = PyModule_GetState(mod);
	base = PyObject_GetAttr(self, st->str_base);
	if (base == NULL)
		return NULL;
	if (is_frame(base)) {
		l = frame_ext_of(base)->loan;
		if (l != NULL && l->state == ZDEXT_LOAN_LIVE &&
		    l->segment->state == ZDEXT_OPEN && l->segment->seg != NULL) {
			zdext_loan_export(l);
			frame_ext_of(self)->loan = (LoanObject *)Py_NewRef(l);
		}
	}
	Py_DECREF(base);
	Py_RETURN_NONE;
}

static PyMethodDef frame_methods[] = {
	{"__array_finalize__", frame_array_finalize, METH_O,
	 "__array_finalize__($self, obj, /)\n--\n\n"
	 "A view of a frame whose loan is live holds an export of the loan."},
	{NULL, NULL, 0, NULL},
};

/* Imports numpy and zdshm.arrays and makes LoanFrame, once. */
static int
frame_type_ready(PyObject *module, zdext_state *st)
{
	PyObject *np = NULL, *nd = NULL, *arrays = NULL, *bases = NULL, *tp;
	Py_ssize_t off;
	PyType_Slot slots[] = {
		{Py_tp_dealloc, (void *)frame_dealloc},
		{Py_tp_methods, frame_methods},
		{Py_tp_doc, "A writable array over a loaned slot, made by "
			    "Writer.loan_array: it and every view made of it "
			    "while the loan is live hold an export of the loan."},
		{0, NULL},
	};
	PyType_Spec spec = {
		.name = "zdshm.arrays.LoanFrame",
		.flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
		.slots = slots,
	};
	int rc = -1;

	if (st->frame_type != NULL)
		return 0;
	np = PyImport_ImportModule("numpy");
	if (np == NULL)
		goto done;
	nd = PyObject_GetAttrString(np, "ndarray");
	if (nd == NULL)
		goto done;
	if (!PyType_Check(nd)) {
		PyErr_SetString(PyExc_TypeError, "numpy.ndarray is not a type");
		goto done;
	}
	if (st->np_dtype == NULL &&
	    (st->np_dtype = PyObject_GetAttrString(np, "dtype")) == NULL)
		goto done;
	if (st->ndarray_setflags == NULL &&
	    (st->ndarray_setflags = PyObject_GetAttrString(nd, "setflags")) == NULL)
		goto done;
	arrays = PyImport_ImportModule("zdshm.arrays");
	if (arrays == NULL)
		goto done;
	if (st->dtype_to_format == NULL &&
	    (st->dtype_to_format = PyObject_GetAttrString(arrays,
							  "dtype_to_format")) == NULL)
		goto done;
	/* frame_ext after ndarray's fields, pointer aligned. */
	off = ((PyTypeObject *)nd)->tp_basicsize;
	off = (off + (Py_ssize_t)_Alignof(frame_ext) - 1) &
	      ~((Py_ssize_t)_Alignof(frame_ext) - 1);
	spec.basicsize = (int)(off + (Py_ssize_t)sizeof(frame_ext));
	bases = PyTuple_Pack(1, nd);
	if (bases == NULL)
		goto done;
	tp = PyType_FromModuleAndSpec(module, &spec, bases);
	if (tp == NULL)
		goto done;
	st->frame_type = (PyTypeObject *)tp;
	rc = 0;
done:
	Py_XDECREF(bases);
	Py_XDECREF(arrays);
	Py_XDECREF(nd);
	Py_XDECREF(np);
	return rc;
}

PyObject *
zdext_loan_frame_type(PyObject *module, PyObject *Py_UNUSED(ignored))
{
	zdext_state *st = PyModule_GetState(module);

	if (frame_type_ready(module, st) < 0)
		return NULL;
	return Py_NewRef(st->frame_type);
}

/* --------------------------------------------------------------------------
 * The plan: (shape, dtype) resolved once per writer
 * ------------------------------------------------------------------------ */

void
zdext_plan_clear(zdext_plan *p)
{
	Py_CLEAR(p->shape);
	Py_CLEAR(p->dtype);
	Py_CLEAR(p->descr);
	Py_CLEAR(p->args);
}

/* 1 if a and b are the same int or tuple of ints (exact types: a float or
 * an int subclass is resolved again and refused there). */
static int
shape_same(PyObject *a, PyObject *b)
{
	Py_ssize_t i, n;

	if (a == b)
		return 1;
	if (PyLong_CheckExact(a) && PyLong_CheckExact(b))
		return PyObject_RichCompareBool(a, b, Py_EQ) == 1;
	if (!PyTuple_CheckExact(a) || !PyTuple_CheckExact(b) ||
	    (n = PyTuple_GET_SIZE(a)) != PyTuple_GET_SIZE(b))
		return 0;
	for (i = 0; i < n; i++) {
		PyObject *x = PyTuple_GET_ITEM(a, i), *y = PyTuple_GET_ITEM(b, i);

		if (x != y && (!PyLong_CheckExact(x) || !PyLong_CheckExact(y) ||
			       PyObject_RichCompareBool(x, y, Py_EQ) != 1))
			return 0;
	}
	return 1;
}

static int
dtype_same(PyObject *a, PyObject *b)
{
	int eq;

	if (a == b)
		return 1;
	if (Py_TYPE(a) != Py_TYPE(b))
		return 0;
	eq = PyObject_RichCompareBool(a, b, Py_EQ);
	if (eq < 0)
		PyErr_Clear();
	return eq == 1;
}

/* Resolves one (shape, dtype) for a slot of `capacity` bytes: *shape_t
 * (a tuple), *descr (numpy.dtype(dtype)) and *lay; the errors name the
 * value (TypeError, ValueError, SampleTooLargeError, OverflowError).
 * numpy is imported (frame_type_ready).  0 or -1 (nothing held). */
static int
resolve_spec(zdext_state *st, PyObject *shape, PyObject *dtype,
	     uint64_t capacity, PyObject **shape_t, PyObject **descr,
	     zdext_layout *lay)
{
	PyObject *fmt = NULL;

	*shape_t = *descr = NULL;
	if (PyLong_Check(shape) && !PyBool_Check(shape)) {
		*shape_t = PyTuple_Pack(1, shape);
	} else if (PyTuple_Check(shape) || PyList_Check(shape)) {
		*shape_t = PySequence_Tuple(shape);
	} else {
		PyErr_Format(PyExc_TypeError,
			     "shape must be an int or a tuple of ints, got %.200R (%s)",
			     shape, Py_TYPE(shape)->tp_name);
		return -1;
	}
	if (*shape_t == NULL)
		return -1;
	*descr = PyObject_CallOneArg(st->np_dtype, dtype);
	if (*descr == NULL)
		goto fail;
	fmt = PyObject_CallOneArg(st->dtype_to_format, *descr);
	if (fmt == NULL)
		goto fail;
	if (zdext_layout_from_py(st, fmt, *shape_t, capacity, lay) < 0)
		goto fail;
	Py_DECREF(fmt);
	return 0;
fail:
	Py_XDECREF(fmt);
	Py_CLEAR(*descr);
	Py_CLEAR(*shape_t);
	return -1;
}

/* Resolves (shape, dtype) for w's slot capacity into w->plan: the errors
 * name the value (TypeError, ValueError, SampleTooLargeError,
 * OverflowError), before anything is loaned. */
static int
plan_resolve(WriterObject *w, PyObject *shape, PyObject *dtype)
{
	zdext_state *st = zdext_state_of((PyObject *)w);
	PyObject *mod = PyType_GetModuleByDef(Py_TYPE(w), &zdext_module_def);
	PyObject *shape_t = NULL, *descr = NULL, *args = NULL;
	zdext_layout lay;
	uint64_t need;
	int rc = -1;

	if (mod == NULL || frame_type_ready(mod, st) < 0)
		return -1;
	if (resolve_spec(st, shape, dtype, w->segment->slot_capacity, &shape_t,
			 &descr, &lay) < 0)
		return -1;
	args = PyTuple_Pack(2, shape_t, descr);
	if (args == NULL)
		goto done;
	/* The capacity the meta needs: the item size times the nonzero
	 * dimensions (the bytes, unless the array is empty), which the
	 * layout was checked against; the loan is of the smallest size class
	 * that holds it. */
	need = zdext_layout_span(&lay);
	zdext_plan_clear(&w->plan);
	w->plan.need = need;
	w->plan.shape = Py_NewRef(shape);
	w->plan.dtype = Py_NewRef(dtype);
	w->plan.descr = Py_NewRef(descr);
	w->plan.args = args;
	w->plan.layout = lay;
	rc = 0;
done:
	Py_XDECREF(descr);
	Py_XDECREF(shape_t);
	return rc;
}

/* --------------------------------------------------------------------------
 * LoanArray: the context manager
 * ------------------------------------------------------------------------ */

typedef struct LoanArrayObject {
	PyObject_HEAD
	WriterObject *writer;     /* strong                                   */
	PyObject *args;           /* (shape, descr) of the frame              */
	zdext_layout layout;
	uint64_t need;            /* the capacity to loan (zdext_plan.need)   */
	uint64_t timeout_ns;
	LoanObject *loan;         /* strong, inside the block                 */
	PyObject *frame;          /* strong, inside the block                 */
} LoanArrayObject;

PyObject *
zdext_writer_loan_array(WriterObject *w, PyObject *const *args,
			Py_ssize_t nargs, PyObject *kwnames)
{
	static const char *const names[] = {"shape", "dtype", "timeout"};
	zdext_state *st = zdext_state_of((PyObject *)w);
	PyObject *a[3];
	uint64_t timeout = w->timeout_ns;
	LoanArrayObject *cm;

	if (kwnames == NULL && nargs == 2) {
		a[0] = args[0];
		a[1] = args[1];
		a[2] = NULL;
	} else if (zdext_bind("loan_array", args, nargs, kwnames, names, 3, 3,
			      a) < 0) {
		return NULL;
	}
	if (a[0] == NULL || a[1] == NULL) {
		PyErr_SetString(PyExc_TypeError, "loan_array() needs shape and dtype");
		return NULL;
	}
	/* Absent or ... (the default the signature shows): the writer's. */
	if (a[2] != NULL && a[2] != Py_Ellipsis &&
	    zdext_seconds_arg(a[2], "timeout", 1, 0.0, &timeout) < 0)
		return NULL;
	if (w->plan.args == NULL || !shape_same(a[0], w->plan.shape) ||
	    !dtype_same(a[1], w->plan.dtype)) {
		if (plan_resolve(w, a[0], a[1]) < 0)
			return NULL;
	}
	cm = PyObject_New(LoanArrayObject, st->loan_array_type);
	if (cm == NULL)
		return NULL;
	cm->writer = (WriterObject *)Py_NewRef(w);
	cm->args = Py_NewRef(w->plan.args);
	cm->layout = w->plan.layout;
	cm->need = w->plan.need;
	cm->timeout_ns = timeout;
	cm->loan = NULL;
	cm->frame = NULL;
	return (PyObject *)cm;
}

static PyObject *
loan_array_enter(LoanArrayObject *self, PyObject *Py_UNUSED(ignored))
{
	zdext_state *st = zdext_state_of((PyObject *)self);
	WriterObject *w = self->writer;
	LoanObject *l;
	PyObject *fargs, *frame;
	uint32_t slot;
	int rc;

	if (self->loan != NULL) {
		PyErr_SetString(PyExc_RuntimeError,
				"loan_array context manager is not reentrant");
		return NULL;
	}
	if (zdext_writer_check(w) < 0)
		return NULL;
	rc = zdext_writer_loan_slot(w, self->timeout_ns, self->need, &slot);
	if (rc < 0)
		return zdext_raise(st, rc, "loan");
	l = (LoanObject *)zdext_loan_new(st, w->segment, slot);
	if (l == NULL)
		return NULL;
	zdext_meta_encode(&self->layout, l->meta);
	l->has_format = 1;
	l->fmt_nbytes = self->layout.nbytes;
	/* The frame's export, taken before ndarray asks for (and gives back)
	 * a buffer of its own. */
	zdext_loan_export(l);
	fargs = PyTuple_New(3);
	if (fargs == NULL)
		goto fail;
	PyTuple_SET_ITEM(fargs, 0, Py_NewRef(PyTuple_GET_ITEM(self->args, 0)));
	PyTuple_SET_ITEM(fargs, 1, Py_NewRef(PyTuple_GET_ITEM(self->args, 1)));
	PyTuple_SET_ITEM(fargs, 2, Py_NewRef(l));
	frame = st->frame_type->tp_new(st->frame_type, fargs, NULL);
	Py_DECREF(fargs);
	if (frame == NULL)
		goto fail;
	frame_ext_of(frame)->loan = (LoanObject *)Py_NewRef(l);
	self->loan = l;
	self->frame = frame;
	return Py_NewRef(frame);
fail:
	zdext_loan_unexport(l);
	Py_DECREF(l);         /* no view: discarded */
	return NULL;
}

static PyObject *
loan_array_exit(LoanArrayObject *self, PyObject *const *args, Py_ssize_t nargs)
{
	zdext_state *st = zdext_state_of((PyObject *)self);
	LoanObject *l = self->loan;
	PyObject *frame = self->frame, *r;
	Py_ssize_t others;
	int failed = nargs >= 1 && args[0] != Py_None;

	if (l == NULL)
		Py_RETURN_FALSE;
	self->loan = NULL;
	self->frame = NULL;
	if (zdext_foreign(l->segment)) {
		r = Py_NewRef(Py_False);    /* a fork child: nothing is ours */
		goto done;
	}
	/* No writable frame past the block, whatever happens next. */
	{
		PyObject *argv[2] = {frame, Py_False};

		/* ndarray.setflags(frame, False): write=False. */
		r = PyObject_Vectorcall(st->ndarray_setflags, argv, 2, NULL);
	}
	if (r == NULL)
		goto done;
	Py_DECREF(r);
	r = NULL;
	others = l->exports - 1;        /* the frame's own export aside */
	if (l->state != ZDEXT_LOAN_LIVE || l->segment->state != ZDEXT_OPEN ||
	    l->segment->seg == NULL) {
		/* Ended with its segment's close: nothing to publish. */
		r = Py_NewRef(Py_False);
		goto done;
	}
	if (failed) {
		/* Never publish.  With other views alive the loan stays loaned
		 * and is discarded when the last of them is gone. */
		if (others == 0) {
			r = zdext_loan_discard(l, 1);
			if (r == NULL)
				goto done;
			Py_DECREF(r);
		}
		r = Py_NewRef(Py_False);
		goto done;
	}
	if (others > 0) {
		PyErr_Format(st->ViewsAliveError,
			     "loan_array: %zd other view%s of the frame (slice, "
			     ".view(), reshape) %s still alive, so the frame in slot "
			     "%u was NOT published: del them before the block ends; "
			     "the slot is discarded once they are gone",
			     others, others == 1 ? "" : "s",
			     others == 1 ? "is" : "are", (unsigned)l->slot);
		goto done;
	}
	r = zdext_loan_commit(l, NULL, 1);
	if (r == NULL)
		goto done;
	Py_DECREF(r);
	r = Py_NewRef(Py_False);
done:
	Py_DECREF(frame);
	Py_DECREF(l);
	return r;
}

static void
loan_array_dealloc(LoanArrayObject *self)
{
	PyTypeObject *tp = Py_TYPE(self);

	Py_XDECREF(self->frame);
	Py_XDECREF(self->loan);
	Py_DECREF(self->args);
	Py_DECREF(self->writer);
	tp->tp_free((PyObject *)self);
	Py_DECREF(tp);
}

static PyObject *
loan_array_repr(LoanArrayObject *self)
{
	return PyUnicode_FromFormat("<zdshm.LoanArray shape=%R dtype=%R%s>",
				    PyTuple_GET_ITEM(self->args, 0),
				    PyTuple_GET_ITEM(self->args, 1),
				    self->loan != NULL ? " entered" : "");
}

static PyMethodDef loan_array_methods[] = {
	{"__enter__", (PyCFunction)loan_array_enter, METH_NOARGS,
	 "__enter__($self, /)\n--\n\n"
	 "Loans a slot, stores the format and shape in its meta and returns "
	 "the writable frame (a LoanFrame)."},
	{"__exit__", (PyCFunction)(void (*)(void))loan_array_exit, METH_FASTCALL,
	 "__exit__($self, /, *exc_info)\n--\n\n"
	 "Makes the frame read-only; commits on success (ViewsAliveError, "
	 "nothing published, while another view of the frame is alive), "
	 "discards on an exception."},
	{"__reduce_ex__", (PyCFunction)zdext_reduce_ex, METH_O,
	 "__reduce_ex__($self, protocol, /)\n--\n\n"
	 "Refused (TypeError): make it with Writer.loan_array in the process "
	 "that writes."},
	{NULL, NULL, 0, NULL},
};

static PyType_Slot loan_array_slots[] = {
	{Py_tp_doc, "The context manager of Writer.loan_array."},
	{Py_tp_dealloc, loan_array_dealloc},
	{Py_tp_repr, loan_array_repr},
	{Py_tp_methods, loan_array_methods},
	{0, NULL},
};

PyType_Spec zdext_loan_array_spec = {
	.name = "zdshm.LoanArray",
	.basicsize = sizeof(LoanArrayObject),
	.flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_DISALLOW_INSTANTIATION |
		 Py_TPFLAGS_IMMUTABLETYPE,
	.slots = loan_array_slots,
};

/* --------------------------------------------------------------------------
 * LoanArrays: several named frames over one loan (Writer.loan_arrays)
 *
 * The same rules as LoanArray, for n frames: each frame holds one export of
 * the loan, so the exit commits allowing exactly n exports to remain (any
 * other view of a frame: ViewsAliveError, nothing published), and discards
 * on an exception.  The directory (multi.c) is resolved and laid out when
 * loan_arrays() is called, so its total size -- and with it the size class
 * of the loan -- is known before anything is loaned.
 * ------------------------------------------------------------------------ */

typedef struct LoanArraysObject {
	PyObject_HEAD
	WriterObject *writer;     /* strong                                   */
	PyObject *specs;          /* tuple of (shape tuple, descr) per array  */
	zdext_dir dir;            /* names, offsets, layouts, total           */
	uint64_t timeout_ns;
	LoanObject *loan;         /* strong, inside the block                 */
	PyObject *frames;         /* tuple of the frames, inside the block    */
} LoanArraysObject;

PyObject *
zdext_writer_loan_arrays(WriterObject *w, PyObject *const *args,
			 Py_ssize_t nargs, PyObject *kwnames)
{
	static const char *const names[] = {"arrays", "timeout"};
	zdext_state *st = zdext_state_of((PyObject *)w);
	PyObject *mod = PyType_GetModuleByDef(Py_TYPE(w), &zdext_module_def);
	PyObject *a[2], *items = NULL, *specs = NULL;
	uint64_t timeout = w->timeout_ns, cap = w->segment->slot_capacity;
	LoanArraysObject *cm = NULL;
	zdext_dir dir;
	Py_ssize_t i, n;

	memset(&dir, 0, sizeof(dir));
	if (zdext_bind("loan_arrays", args, nargs, kwnames, names, 2, 2, a) < 0)
		return NULL;
	if (a[0] == NULL) {
		PyErr_SetString(PyExc_TypeError,
				"loan_arrays() needs arrays, a dict of name -> "
				"(shape, dtype)");
		return NULL;
	}
	if (a[1] != NULL && a[1] != Py_Ellipsis &&
	    zdext_seconds_arg(a[1], "timeout", 1, 0.0, &timeout) < 0)
		return NULL;
	if (zdext_dir_check_dict(a[0], "loan_arrays") < 0)
		return NULL;
	if (mod == NULL || frame_type_ready(mod, st) < 0)
		return NULL;
	items = PyDict_Items(a[0]);
	if (items == NULL)
		return NULL;
	n = PyList_GET_SIZE(items);
	specs = PyTuple_New(n);
	if (specs == NULL)
		goto fail;
	for (i = 0; i < n; i++) {
		PyObject *key = PyTuple_GET_ITEM(PyList_GET_ITEM(items, i), 0);
		PyObject *val = PyTuple_GET_ITEM(PyList_GET_ITEM(items, i), 1);
		PyObject *shape_t, *descr, *spec;
		zdext_layout lay;

		if (!PyUnicode_Check(key)) {
			PyErr_Format(PyExc_TypeError,
				     "loan_arrays(): array names must be str, got "
				     "%.200R (%s)", key, Py_TYPE(key)->tp_name);
			goto fail;
		}
		if (!PyTuple_Check(val) || PyTuple_GET_SIZE(val) != 2) {
			PyErr_Format(PyExc_TypeError,
				     "loan_arrays(): the array %.200R needs a tuple "
				     "(shape, dtype), got %.200R (%s)", key, val,
				     Py_TYPE(val)->tp_name);
			goto fail;
		}
		if (resolve_spec(st, PyTuple_GET_ITEM(val, 0),
				 PyTuple_GET_ITEM(val, 1), cap, &shape_t, &descr,
				 &lay) < 0) {
			zdext_name_error(key, "loan_arrays");
			goto fail;
		}
		spec = PyTuple_Pack(2, shape_t, descr);
		Py_DECREF(shape_t);
		Py_DECREF(descr);
		if (spec == NULL)
			goto fail;
		PyTuple_SET_ITEM(specs, i, spec);
		if (zdext_dir_add(&dir, key, &lay, "loan_arrays") < 0)
			goto fail;
	}
	if (zdext_dir_finish(st, &dir, cap, "loan_arrays") < 0)
		goto fail;
	cm = PyObject_New(LoanArraysObject, st->loan_arrays_type);
	if (cm == NULL)
		goto fail;
	cm->writer = (WriterObject *)Py_NewRef(w);
	cm->specs = specs;
	cm->dir = dir;            /* the names move to cm */
	cm->timeout_ns = timeout;
	cm->loan = NULL;
	cm->frames = NULL;
	Py_DECREF(items);
	return (PyObject *)cm;
fail:
	zdext_dir_clear(&dir);
	Py_XDECREF(specs);
	Py_XDECREF(items);
	return NULL;
}

static PyObject *
loan_arrays_enter(LoanArraysObject *self, PyObject *Py_UNUSED(ignored))
{
	zdext_state *st = zdext_state_of((PyObject *)self);
	WriterObject *w = self->writer;
	const zdext_dir *dir = &self->dir;
	LoanObject *l;
	PyObject *frames = NULL, *out = NULL;
	uint32_t slot;
	int rc, i;

	if (self->loan != NULL) {
		PyErr_SetString(PyExc_RuntimeError,
				"loan_arrays context manager is not reentrant");
		return NULL;
	}
	if (zdext_writer_check(w) < 0)
		return NULL;
	rc = zdext_writer_loan_slot(w, self->timeout_ns, dir->need, &slot);
	if (rc < 0)
		return zdext_raise(st, rc, "loan");
	l = (LoanObject *)zdext_loan_new(st, w->segment, slot);
	if (l == NULL)
		return NULL;
	zdext_dir_encode(dir, l->meta, l->data);
	l->has_format = 1;
	l->fmt_nbytes = dir->total;
	frames = PyTuple_New(dir->n);
	out = PyDict_New();
	if (frames == NULL || out == NULL)
		goto fail;
	for (i = 0; i < dir->n; i++) {
		PyObject *spec = PyTuple_GET_ITEM(self->specs, i), *fargs, *frame;

		/* The frame's export, as in loan_array_enter. */
		zdext_loan_export(l);
		fargs = Py_BuildValue("(OOOK)", PyTuple_GET_ITEM(spec, 0),
				      PyTuple_GET_ITEM(spec, 1), (PyObject *)l,
				      (unsigned long long)dir->off[i]);
		frame = fargs == NULL ? NULL
			: st->frame_type->tp_new(st->frame_type, fargs, NULL);
		Py_XDECREF(fargs);
		if (frame == NULL) {
			zdext_loan_unexport(l);
			goto fail;
		}
		frame_ext_of(frame)->loan = (LoanObject *)Py_NewRef(l);
		PyTuple_SET_ITEM(frames, i, frame);
		if (PyDict_SetItem(out, dir->names[i], frame) < 0)
			goto fail;
	}
	self->loan = l;
	self->frames = frames;
	return out;
fail:
	/* The frames made so far give their exports back as they go. */
	Py_XDECREF(out);
	Py_XDECREF(frames);
	Py_DECREF(l);         /* no view left: discarded */
	return NULL;
}

static PyObject *
loan_arrays_exit(LoanArraysObject *self, PyObject *const *args,
		 Py_ssize_t nargs)
{
	zdext_state *st = zdext_state_of((PyObject *)self);
	LoanObject *l = self->loan;
	PyObject *frames = self->frames, *r = NULL;
	Py_ssize_t others, n, i;
	int failed = nargs >= 1 && args[0] != Py_None;

	if (l == NULL)
		Py_RETURN_FALSE;
	self->loan = NULL;
	self->frames = NULL;
	n = PyTuple_GET_SIZE(frames);
	if (zdext_foreign(l->segment)) {
		r = Py_NewRef(Py_False);    /* a fork child: nothing is ours */
		goto done;
	}
	/* No writable frame past the block, whatever happens next. */
	for (i = 0; i < n; i++) {
		PyObject *argv[2] = {PyTuple_GET_ITEM(frames, i), Py_False};

		r = PyObject_Vectorcall(st->ndarray_setflags, argv, 2, NULL);
		if (r == NULL)
			goto done;
		Py_DECREF(r);
		r = NULL;
	}
	others = l->exports - n;        /* the frames' own exports aside */
	if (l->state != ZDEXT_LOAN_LIVE || l->segment->state != ZDEXT_OPEN ||
	    l->segment->seg == NULL) {
		r = Py_NewRef(Py_False);
		goto done;
	}
	if (failed) {
		if (others == 0) {
			r = zdext_loan_discard(l, n);
			if (r == NULL)
				goto done;
			Py_DECREF(r);
		}
		r = Py_NewRef(Py_False);
		goto done;
	}
	if (others > 0) {
		PyErr_Format(st->ViewsAliveError,
			     "loan_arrays: %zd other view%s of the frames (slice, "
			     ".view(), reshape) %s still alive, so the arrays in slot "
			     "%u were NOT published: del them before the block ends; "
			     "the slot is discarded once they are gone",
			     others, others == 1 ? "" : "s",
			     others == 1 ? "is" : "are", (unsigned)l->slot);
		goto done;
	}
	r = zdext_loan_commit(l, NULL, n);
	if (r == NULL)
		goto done;
	Py_DECREF(r);
	r = Py_NewRef(Py_False);
done:
	Py_DECREF(frames);
	Py_DECREF(l);
	return r;
}

static void
loan_arrays_dealloc(LoanArraysObject *self)
{
	PyTypeObject *tp = Py_TYPE(self);

	Py_XDECREF(self->frames);
	Py_XDECREF(self->loan);
	zdext_dir_clear(&self->dir);
	Py_DECREF(self->specs);
	Py_DECREF(self->writer);
	tp->tp_free((PyObject *)self);
	Py_DECREF(tp);
}

static PyObject *
loan_arrays_repr(LoanArraysObject *self)
{
	PyObject *names = PyTuple_New(self->dir.n), *r;
	int i;

	if (names == NULL)
		return NULL;
	for (i = 0; i < self->dir.n; i++)
		PyTuple_SET_ITEM(names, i, Py_NewRef(self->dir.names[i]));
	r = PyUnicode_FromFormat("<zdshm.LoanArrays %R nbytes=%llu%s>", names,
				 (unsigned long long)self->dir.total,
				 self->loan != NULL ? " entered" : "");
	Py_DECREF(names);
	return r;
}

static PyObject *
loan_arrays_get_nbytes(LoanArraysObject *self, void *Py_UNUSED(c))
{
	return PyLong_FromUnsignedLongLong(self->dir.total);
}

static PyGetSetDef loan_arrays_getset[] = {
	{"nbytes", (getter)loan_arrays_get_nbytes, NULL,
	 "The bytes of the sample (directory and arrays): the size the loan "
	 "is made for.", NULL},
	{NULL, NULL, NULL, NULL, NULL},
};

static PyMethodDef loan_arrays_methods[] = {
	{"__enter__", (PyCFunction)loan_arrays_enter, METH_NOARGS,
	 "__enter__($self, /)\n--\n\n"
	 "Loans a slot, writes the directory and returns a dict of writable "
	 "frames (LoanFrames), one per name."},
	{"__exit__", (PyCFunction)(void (*)(void))loan_arrays_exit, METH_FASTCALL,
	 "__exit__($self, /, *exc_info)\n--\n\n"
	 "Makes the frames read-only; commits on success (ViewsAliveError, "
	 "nothing published, while another view of a frame is alive), "
	 "discards on an exception."},
	{"__reduce_ex__", (PyCFunction)zdext_reduce_ex, METH_O,
	 "__reduce_ex__($self, protocol, /)\n--\n\n"
	 "Refused (TypeError): make it with Writer.loan_arrays in the process "
	 "that writes."},
	{NULL, NULL, 0, NULL},
};

static PyType_Slot loan_arrays_slots[] = {
	{Py_tp_doc, "The context manager of Writer.loan_arrays."},
	{Py_tp_dealloc, loan_arrays_dealloc},
	{Py_tp_repr, loan_arrays_repr},
	{Py_tp_getset, loan_arrays_getset},
	{Py_tp_methods, loan_arrays_methods},
	{0, NULL},
};

PyType_Spec zdext_loan_arrays_spec = {
	.name = "zdshm.LoanArrays",
	.basicsize = sizeof(LoanArraysObject),
	.flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_DISALLOW_INSTANTIATION |
		 Py_TPFLAGS_IMMUTABLETYPE,
	.slots = loan_arrays_slots,
};
