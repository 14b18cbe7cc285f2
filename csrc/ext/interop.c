/* interop.c — array interchange shared by Sample and Loan: DLPack export
 * (__dlpack__, __dlpack_device__) and numpy's __array__ fallback.
 *
 * DLPack (see dlpack_abi.h).  An export is one buffer export of the Sample
 * or Loan, held by the managed tensor until the consumer's deleter runs (or
 * the capsule is collected unconsumed): it is counted and ruled exactly like
 * a memoryview of the object.  So a Sample stays pinned, release() and
 * Segment.close() refuse with ViewsAliveError, and Loan.commit() refuses,
 * for as long as the consumer's tensor lives.  A Sample exports read-only
 * (the versioned capsule's READ_ONLY flag; the legacy capsule has no flag,
 * and its memory is the read-only mapping all the same: a consumer that
 * writes through it faults, see README "Lifetime rules"); a Loan exports
 * writable.  copy=True exports a private, writable copy that holds no
 * export.
 *
 * __array__.  numpy converts an object by trying, in order, the buffer
 * protocol, __array_interface__ and __array__, and silently wraps the object
 * in a 0-d object array when all of them are missing or the buffer request
 * failed.  Defining __array__ as "the buffer, else its error" makes
 * np.asarray(sample) of a released sample raise ClosedError (and of a
 * committed loan BufferError) instead of returning that object array.
 */
#include "ext.h"
#include "dlpack_abi.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* The managed tensor and everything it points to, in one allocation;
 * manager_ctx points at the whole. */
typedef struct dlpack_ctx {
	union {
		DLManagedTensor legacy;
		DLManagedTensorVersioned versioned;
	} m;
	Py_buffer view;          /* the export that pins; obj NULL for a copy */
	void *copy;              /* the copy's memory (copy=True) or NULL     */
	int64_t shape[ZDEXT_META_NDIM_MAX];
	int64_t strides[ZDEXT_META_NDIM_MAX];
} dlpack_ctx;

/* Frees a context: releases its export with the GIL (a consumer may call
 * the deleter from any thread, holding the GIL or not).  After the
 * interpreter finalised, nothing may be touched: the context is leaked. */
static void
dlpack_ctx_free(dlpack_ctx *c)
{
	PyGILState_STATE g;

	if (c == NULL || !Py_IsInitialized())
		return;
	g = PyGILState_Ensure();
	if (c->view.obj != NULL) {
		PyObject *type, *value, *tb;

		/* The caller may be unwinding an exception (a capsule collected
		 * during one): keep it. */
		PyErr_Fetch(&type, &value, &tb);
		PyBuffer_Release(&c->view);
		PyErr_Restore(type, value, tb);
	}
	free(c->copy);
	PyMem_RawFree(c);
	PyGILState_Release(g);
}

static void
dlpack_delete_legacy(DLManagedTensor *m)
{
	dlpack_ctx_free(m->manager_ctx);
}

static void
dlpack_delete_versioned(DLManagedTensorVersioned *m)
{
	dlpack_ctx_free(m->manager_ctx);
}

/* A capsule never consumed still owns its tensor: delete it.  A consumed
 * one was renamed ("used_...") and belongs to the consumer. */
static void
dlpack_capsule_destructor(PyObject *cap)
{
	if (PyCapsule_IsValid(cap, DLPACK_CAPSULE_VERSIONED)) {
		DLManagedTensorVersioned *m =
			PyCapsule_GetPointer(cap, DLPACK_CAPSULE_VERSIONED);
		if (m->deleter != NULL)
			m->deleter(m);
	} else if (PyCapsule_IsValid(cap, DLPACK_CAPSULE_LEGACY)) {
		DLManagedTensor *m = PyCapsule_GetPointer(cap, DLPACK_CAPSULE_LEGACY);
		if (m->deleter != NULL)
			m->deleter(m);
	}
}

/* The DLPack type of a canonical PEP 3118 format (see meta.c); -1 with
 * BufferError for a type DLPack cannot describe (long double, a byte order
 * other than this machine's). */
static int
dlpack_dtype(const zdext_layout *lay, DLDataType *dt)
{
	const char *f = lay->format;
	char code;
	int cplx = 0;

	if (*f == '>' || *f == '!' || *f == '<') {
#if PY_LITTLE_ENDIAN
		int foreign = *f != '<';
#else
		int foreign = *f == '<';
#endif
		if (foreign) {
			PyErr_Format(PyExc_BufferError,
				     "__dlpack__: format %s is not in this machine's "
				     "byte order, which DLPack cannot describe",
				     lay->format);
			return -1;
		}
		f++;
	} else if (*f == '=' || *f == '@') {
		f++;
	}
	if (*f == 'Z') {
		cplx = 1;
		f++;
	}
	code = *f;
	switch (code) {
	case '?':
		dt->code = DLPACK_CODE_BOOL;
		break;
	case 'b': case 'h': case 'i': case 'l': case 'q':
		dt->code = DLPACK_CODE_INT;
		break;
	case 'B': case 'H': case 'I': case 'L': case 'Q':
		dt->code = DLPACK_CODE_UINT;
		break;
	case 'e': case 'f': case 'd':
		dt->code = cplx ? DLPACK_CODE_COMPLEX : DLPACK_CODE_FLOAT;
		break;
	default:
		/* 'g', "Zg": long double has no DLPack type (it is padded). */
		PyErr_Format(PyExc_BufferError,
			     "__dlpack__: format %s has no DLPack type (long double "
			     "is not exchangeable); publish float64 or copy",
			     lay->format);
		return -1;
	}
	if (lay->itemsize * 8 > 255) {
		PyErr_Format(PyExc_BufferError,
			     "__dlpack__: format %s is too wide for DLPack",
			     lay->format);
		return -1;
	}
	dt->bits = (uint8_t)(lay->itemsize * 8);
	dt->lanes = 1;
	return 0;
}

/* A (major, minor) or (device_type, device_id) pair of ints: 0, or -1
 * with TypeError naming the argument. */
static int
int_pair(PyObject *o, const char *what, long long *a, long long *b)
{
	if (!PyTuple_Check(o) || PyTuple_GET_SIZE(o) != 2 ||
	    !PyLong_Check(PyTuple_GET_ITEM(o, 0)) ||
	    !PyLong_Check(PyTuple_GET_ITEM(o, 1)) ||
	    PyBool_Check(PyTuple_GET_ITEM(o, 0)) ||
	    PyBool_Check(PyTuple_GET_ITEM(o, 1))) {
		PyErr_Format(PyExc_TypeError,
			     "__dlpack__: %s must be None or a tuple of two ints, "
			     "got %.200R", what, o);
		return -1;
	}
	*a = PyLong_AsLongLong(PyTuple_GET_ITEM(o, 0));
	if (*a == -1 && PyErr_Occurred())
		goto overflow;
	*b = PyLong_AsLongLong(PyTuple_GET_ITEM(o, 1));
	if (*b == -1 && PyErr_Occurred())
		goto overflow;
	return 0;
overflow:
	PyErr_Clear();
	*a = *b = -1;       /* out of any range: refused by the caller */
	return 0;
}

int
zdext_dlpack_args(PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
		  zdext_dlpack_req *req)
{
	static const char *const names[] = {"stream", "max_version",
					    "dl_device", "copy"};
	PyObject *a[4];
	long long x, y;

	req->versioned = 0;
	req->copy = -1;
	if (zdext_bind("__dlpack__", args, nargs, kwnames, names, 4, 0, a) < 0)
		return -1;
	if (a[1] != NULL && a[1] != Py_None) {
		if (int_pair(a[1], "max_version", &x, &y) < 0)
			return -1;
		req->versioned = x >= 1;
	}
	if (a[3] != NULL && a[3] != Py_None) {
		if (!PyBool_Check(a[3])) {
			PyErr_Format(PyExc_TypeError,
				     "__dlpack__: copy must be None, True or False, "
				     "got %.200R", a[3]);
			return -1;
		}
		req->copy = a[3] == Py_True;
	}
	if (a[2] != NULL && a[2] != Py_None) {
		if (int_pair(a[2], "dl_device", &x, &y) < 0)
			return -1;
		if (x != DLPACK_DEVICE_CPU || y != 0) {
			PyErr_Format(PyExc_BufferError,
				     "__dlpack__: dl_device %.200R is not supported: "
				     "the data is in host memory, device (1, 0) (kDLCPU)",
				     a[2]);
			return -1;
		}
	}
	if (a[0] != NULL && a[0] != Py_None) {
		PyErr_Format(PyExc_ValueError,
			     "__dlpack__: stream must be None for a CPU tensor, "
			     "got %.200R", a[0]);
		return -1;
	}
	return 0;
}

PyObject *
zdext_dlpack_export(PyObject *owner, const zdext_layout *lay, int readonly,
		    const zdext_dlpack_req *req)
{
	DLTensor t;
	dlpack_ctx *c;
	PyObject *cap;
	int d;

	memset(&t, 0, sizeof(t));
	if (dlpack_dtype(lay, &t.dtype) < 0)
		return NULL;
	c = PyMem_RawCalloc(1, sizeof(*c));
	if (c == NULL)
		return PyErr_NoMemory();
	/* A copy only reads; a zero-copy export of a Loan writes. */
	if (PyObject_GetBuffer(owner, &c->view, readonly || req->copy == 1
			       ? PyBUF_SIMPLE : PyBUF_WRITABLE) < 0) {
		PyMem_RawFree(c);
		return NULL;
	}
	if ((uint64_t)c->view.len < lay->nbytes) {
		/* The layout promises more than the export covers: a bug. */
		PyErr_SetString(PyExc_SystemError,
				"__dlpack__: layout larger than the buffer");
		goto fail;
	}
	t.data = c->view.buf;
	if (req->copy == 1) {
		size_t n = (size_t)lay->nbytes;

		if (posix_memalign(&c->copy, 64, n ? n : 1) != 0) {
			c->copy = NULL;
			PyErr_NoMemory();
			goto fail;
		}
		if (n >= ZDEXT_NOGIL_COPY) {
			Py_BEGIN_ALLOW_THREADS
			memcpy(c->copy, c->view.buf, n);
			Py_END_ALLOW_THREADS
		} else {
			memcpy(c->copy, c->view.buf, n);
		}
		PyBuffer_Release(&c->view);   /* the copy pins nothing */
		c->view.obj = NULL;
		t.data = c->copy;
	}
	t.device.device_type = DLPACK_DEVICE_CPU;
	t.device.device_id = 0;
	t.ndim = lay->ndim;
	for (d = 0; d < lay->ndim; d++) {
		c->shape[d] = lay->shape[d];
		c->strides[d] = lay->strides[d] / lay->itemsize;
	}
	t.shape = c->shape;
	t.strides = c->strides;
	t.byte_offset = 0;
	if (req->versioned) {
		c->m.versioned.version.major = DLPACK_MAJOR_VERSION;
		c->m.versioned.version.minor = DLPACK_MINOR_VERSION;
		c->m.versioned.manager_ctx = c;
		c->m.versioned.deleter = dlpack_delete_versioned;
		c->m.versioned.flags = req->copy == 1
			? DLPACK_FLAG_BITMASK_IS_COPIED
			: (readonly ? DLPACK_FLAG_BITMASK_READ_ONLY : 0);
		c->m.versioned.dl_tensor = t;
		cap = PyCapsule_New(&c->m.versioned, DLPACK_CAPSULE_VERSIONED,
				    dlpack_capsule_destructor);
	} else {
		c->m.legacy.dl_tensor = t;
		c->m.legacy.manager_ctx = c;
		c->m.legacy.deleter = dlpack_delete_legacy;
		cap = PyCapsule_New(&c->m.legacy, DLPACK_CAPSULE_LEGACY,
				    dlpack_capsule_destructor);
	}
	if (cap == NULL)
		goto fail;
	return cap;
fail:
	if (c->view.obj != NULL)
		PyBuffer_Release(&c->view);
	free(c->copy);
	PyMem_RawFree(c);
	return NULL;
}

PyObject *
zdext_dlpack_device(PyObject *Py_UNUSED(self), PyObject *Py_UNUSED(ignored))
{
	return Py_BuildValue("(ii)", DLPACK_DEVICE_CPU, 0);
}

PyObject *
zdext_dunder_array(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
		   PyObject *kwnames)
{
	static const char *const names[] = {"dtype", "copy"};
	PyObject *a[2], *mv, *np = NULL, *asarray = NULL, *kw = NULL;
	PyObject *r = NULL;

	if (zdext_bind("__array__", args, nargs, kwnames, names, 2, 2, a) < 0)
		return NULL;
	/* The buffer's own error (ClosedError, BufferError, ...) propagates. */
	mv = PyMemoryView_FromObject(self);
	if (mv == NULL)
		return NULL;
	np = PyImport_ImportModule("numpy");
	if (np == NULL)
		goto done;
	asarray = PyObject_GetAttrString(np, "asarray");
	kw = PyDict_New();
	if (asarray == NULL || kw == NULL)
		goto done;
	if (a[0] != NULL && a[0] != Py_None &&
	    PyDict_SetItemString(kw, "dtype", a[0]) < 0)
		goto done;
	/* numpy 2 passes copy (and its asarray takes it); numpy 1 does not. */
	if (a[1] != NULL && PyDict_SetItemString(kw, "copy", a[1]) < 0)
		goto done;
	{
		PyObject *argv = PyTuple_Pack(1, mv);

		if (argv == NULL)
			goto done;
		r = PyObject_Call(asarray, argv, kw);
		Py_DECREF(argv);
	}
done:
	Py_XDECREF(kw);
	Py_XDECREF(asarray);
	Py_XDECREF(np);
	Py_DECREF(mv);
	return r;
}
