/* meta.c — the array description stored in a slot's 64-byte meta area
 * (layout in ext.h): PEP 3118 formats, encoding, validated decoding, and
 * building a layout from Python arguments or from an exported buffer.
 */
#include "ext.h"

#include <errno.h>
#include <string.h>

Py_ssize_t
zdext_format_itemsize(const char *fmt, size_t len, char *canon)
{
	size_t i = 0, rest;
	char order = 0, code;
	int native, cplx = 0;
	Py_ssize_t size;
	char *p = canon;

	if (len >= 1 && fmt[0] != '\0' && strchr("<>=!@", fmt[0]) != NULL) {
		order = fmt[0];
		i = 1;
	}
	native = (order == 0 || order == '@');
	rest = len - i;
	if (rest == 1) {
		code = fmt[i];
		if (code == 'F' || code == 'D' || code == 'G') {
			cplx = 1;
			code = (char)(code - 'A' + 'a');
		}
	} else if (rest == 2 && fmt[i] == 'Z') {
		cplx = 1;
		code = fmt[i + 1];
		if (code != 'f' && code != 'd' && code != 'g')
			return 0;
	} else {
		return 0;
	}
	switch (code) {
	case '?': size = native ? (Py_ssize_t)sizeof(_Bool) : 1; break;
	case 'b': case 'B': size = 1; break;
	case 'h': case 'H': size = native ? (Py_ssize_t)sizeof(short) : 2; break;
	case 'i': case 'I': size = native ? (Py_ssize_t)sizeof(int) : 4; break;
	case 'l': case 'L': size = native ? (Py_ssize_t)sizeof(long) : 4; break;
	case 'q': case 'Q': size = native ? (Py_ssize_t)sizeof(long long) : 8; break;
	case 'e': size = 2; break;
	case 'f': size = 4; break;
	case 'd': size = 8; break;
	case 'g':
		if (!native)
			return 0;
		size = (Py_ssize_t)sizeof(long double);
		break;
	default:
		return 0;
	}
	if (cplx) {
		if (code != 'f' && code != 'd' && code != 'g')
			return 0;
		size *= 2;
	}
	if (order)
		*p++ = order;
	if (cplx)
		*p++ = 'Z';
	*p++ = code;
	*p = '\0';
	return size;
}

void
zdext_meta_encode(const zdext_layout *lay, uint8_t *meta)
{
	uint8_t m[ZD_SLOT_META_SIZE];
	size_t flen = strlen(lay->format);
	int d;

	memset(m, 0, sizeof(m));
	m[0] = ZDEXT_META_MAGIC0;
	m[1] = ZDEXT_META_MAGIC1;
	m[2] = (uint8_t)lay->ndim;
	m[3] = (uint8_t)flen;
	memcpy(m + ZDEXT_META_FORMAT_OFF, lay->format, flen);
	for (d = 0; d < lay->ndim; d++)
		zdext_put_le64(m + ZDEXT_META_SHAPE_OFF + 8 * d, (uint64_t)lay->shape[d]);
	memcpy(meta, m, sizeof(m));
}

/* The one bound on an array description, applied alike by the writer
 * (Loan.set_format, Writer.publish) and by the reader (zdext_meta_decode):
 *
 *     span = itemsize * (the product of the nonzero dimensions) <= capacity
 *
 * computed with overflow checks.  Without a zero dimension the span is the
 * array's size, so this is the slot capacity bound.  An empty array (some
 * dimension 0, size 0) may not describe more than a full slot could: its
 * other dimensions are bounded all the same.  What this guarantees for any
 * accepted description, a hostile one included:
 *   - every dimension and every stride is at most span <= capacity, which
 *     fits in Py_ssize_t (capacity <= 2**40);
 *   - numpy accepts it: it refuses an array when itemsize times its nonzero
 *     dimensions exceeds NPY_MAX_INTP ("array is too big");
 *   - memoryview.tolist() and ndarray.tolist() build at most
 *     capacity / itemsize lists, as for a full slot (a shape such as
 *     (2**40, 0) would make them allocate 2**40 empty lists).
 * Fills lay->ndim, shape, strides (C-contiguous, in bytes; 0 after a zero
 * dimension, as PyBuffer_FillContiguousStrides has them) and nbytes (the
 * product of all dimensions times itemsize) from dims[0..ndim), with
 * lay->itemsize already set.  Returns 0; -EOVERFLOW when the span does not
 * fit in Py_ssize_t (lay partly filled); -EMSGSIZE when it exceeds capacity
 * (everything filled, for the message). */
static int
layout_bound(zdext_layout *lay, const uint64_t *dims, int ndim,
	     uint64_t capacity)
{
	uint64_t span = (uint64_t)lay->itemsize, run = span;
	int d;

	for (d = ndim - 1; d >= 0; d--) {
		/* span <= PY_SSIZE_T_MAX here, and run <= span. */
		lay->strides[d] = (Py_ssize_t)run;
		if (dims[d] == 0) {
			run = 0;
			continue;
		}
		if (__builtin_mul_overflow(span, dims[d], &span) ||
		    span > (uint64_t)PY_SSIZE_T_MAX)
			return -EOVERFLOW;
		run *= dims[d];   /* 0, or a product of some of span's factors */
	}
	lay->ndim = ndim;
	lay->nbytes = run;
	for (d = 0; d < ZDEXT_META_NDIM_MAX; d++) {
		lay->shape[d] = d < ndim ? (Py_ssize_t)dims[d] : 0;
		if (d >= ndim)
			lay->strides[d] = 0;
	}
	return span > capacity ? -EMSGSIZE : 0;
}

uint64_t
zdext_layout_span(const zdext_layout *lay)
{
	uint64_t span = (uint64_t)lay->itemsize;
	int d;

	/* Validated: the product is at most the largest capacity. */
	for (d = 0; d < lay->ndim; d++)
		if (lay->shape[d] != 0)
			span *= (uint64_t)lay->shape[d];
	return span;
}

/* The description of a sample without a valid meta: 1-D unsigned bytes. */
void
zdext_layout_raw(zdext_layout *lay, uint64_t size)
{
	memset(lay, 0, sizeof(*lay));
	lay->ndim = 1;
	lay->itemsize = 1;
	lay->nbytes = size;
	strcpy(lay->format, "B");
	lay->shape[0] = (Py_ssize_t)size;
	lay->strides[0] = 1;
}

int
zdext_meta_decode(const uint8_t *meta, uint64_t size, uint64_t capacity,
		  zdext_layout *lay)
{
	uint8_t m[ZD_SLOT_META_SIZE];
	uint64_t shape[ZDEXT_META_NDIM_MAX];
	zdext_layout parsed;
	const char *fmt;
	size_t flen, i;
	int ndim, d;

	/* One copy out of shared memory; nothing below reads it again. */
	memcpy(m, meta, sizeof(m));
	zdext_layout_raw(lay, size);
	if (m[0] != ZDEXT_META_MAGIC0 || m[1] != ZDEXT_META_MAGIC1)
		return 0;
	ndim = m[2];
	flen = m[3];
	if (ndim > ZDEXT_META_NDIM_MAX || flen < 1 || flen > ZDEXT_META_FORMAT_MAX)
		return 0;
	fmt = (const char *)m + ZDEXT_META_FORMAT_OFF;
	for (i = 0; i < flen; i++)
		if (fmt[i] == '\0')
			return 0;
	for (i = flen; i < ZDEXT_META_FORMAT_MAX + 1; i++)
		if (fmt[i] != '\0')
			return 0;
	for (d = 0; d < ZDEXT_META_NDIM_MAX; d++) {
		shape[d] = zdext_get_le64(m + ZDEXT_META_SHAPE_OFF + 8 * d);
		if (d >= ndim && shape[d] != 0)
			return 0;
	}
	parsed.itemsize = zdext_format_itemsize(fmt, flen, parsed.format);
	if (parsed.itemsize <= 0 || strcmp(parsed.format, fmt) != 0 ||
	    layout_bound(&parsed, shape, ndim, capacity) < 0 ||
	    parsed.nbytes != size)
		return 0;
	*lay = parsed;
	return 1;
}

static int
format_from_py(PyObject *format, const char *what, zdext_layout *lay)
{
	Py_ssize_t len;
	const char *s;

	if (!PyUnicode_Check(format)) {
		PyErr_Format(PyExc_TypeError,
			     "%s must be a str (a PEP 3118 format such as 'B', "
			     "'<f4', 'Zd'), got %.200R (%s)", what, format,
			     Py_TYPE(format)->tp_name);
		return -1;
	}
	s = PyUnicode_AsUTF8AndSize(format, &len);
	if (s == NULL)
		PyErr_Clear();
	if (s == NULL || len < 1 || len > ZDEXT_META_FORMAT_MAX ||
	    (size_t)len != strlen(s) ||
	    (lay->itemsize = zdext_format_itemsize(s, (size_t)len,
						   lay->format)) <= 0) {
		PyErr_Format(PyExc_ValueError,
			     "%s %.200R is not supported: use an optional byte "
			     "order among '<>=!@' and one of ?bBhHiIlLqQefdg, "
			     "Zf, Zd, Zg (F, D, G)", what, format);
		return -1;
	}
	return 0;
}

int
zdext_layout_from_py(zdext_state *st, PyObject *format, PyObject *shape,
		     uint64_t capacity, zdext_layout *lay)
{
	PyObject *seq;
	Py_ssize_t n, d;
	uint64_t dims[ZDEXT_META_NDIM_MAX];
	int rc, empty = 0;

	if (format_from_py(format, "format", lay) < 0)
		return -1;
	if (!PyTuple_Check(shape) && !PyList_Check(shape)) {
		PyErr_Format(PyExc_TypeError,
			     "shape must be a tuple of ints, got %.200R (%s)",
			     shape, Py_TYPE(shape)->tp_name);
		return -1;
	}
	/* A tuple: a dimension's __index__ cannot resize it under the loop. */
	seq = PySequence_Tuple(shape);
	if (seq == NULL)
		return -1;
	n = PyTuple_GET_SIZE(seq);
	if (n > ZDEXT_META_NDIM_MAX) {
		PyErr_Format(PyExc_ValueError,
			     "shape must have at most %d dimensions, got %.200R",
			     ZDEXT_META_NDIM_MAX, shape);
		Py_DECREF(seq);
		return -1;
	}
	for (d = 0; d < n; d++) {
		if (zdext_u64_arg(PyTuple_GET_ITEM(seq, d), "a dimension",
				  0, (uint64_t)PY_SSIZE_T_MAX, &dims[d]) < 0) {
			/* Name the whole shape, keep the exception class. */
			PyObject *type, *value, *tb;

			PyErr_Fetch(&type, &value, &tb);
			PyErr_Format(type, "shape must be a tuple of ints in 0..%zd, "
				     "got %.200R", PY_SSIZE_T_MAX, shape);
			Py_XDECREF(type);
			Py_XDECREF(value);
			Py_XDECREF(tb);
			Py_DECREF(seq);
			return -1;
		}
		empty |= dims[d] == 0;
	}
	Py_DECREF(seq);
	rc = layout_bound(lay, dims, (int)n, capacity);
	if (rc == -EOVERFLOW) {
		PyErr_Format(PyExc_OverflowError,
			     "shape %.200R of %.200R items does not fit in memory "
			     "(the item size times the nonzero dimensions exceeds "
			     "%zd)", shape, format, PY_SSIZE_T_MAX);
		return -1;
	}
	if (rc == -EMSGSIZE && !empty) {
		PyErr_Format(st->SampleTooLargeError,
			     "format %R with shape %R needs %llu bytes, more than "
			     "the slot capacity %llu", format, shape,
			     (unsigned long long)lay->nbytes,
			     (unsigned long long)capacity);
		return -1;
	}
	if (rc == -EMSGSIZE) {
		PyErr_Format(PyExc_ValueError,
			     "shape %.200R of %.200R items is empty, but its nonzero "
			     "dimensions span more than the slot capacity %llu "
			     "bytes: an empty array may not describe more than a "
			     "full slot could", shape, format,
			     (unsigned long long)capacity);
		return -1;
	}
	return 0;
}

int
zdext_layout_from_buffer(zdext_state *st, const Py_buffer *v, PyObject *obj,
			 uint64_t capacity, zdext_layout *lay)
{
	const char *fmt = v->format ? v->format : "B";
	size_t flen = strlen(fmt);
	uint64_t dims[ZDEXT_META_NDIM_MAX];
	int d, rc, empty = 0;

	if (flen < 1 || flen > ZDEXT_META_FORMAT_MAX ||
	    (lay->itemsize = zdext_format_itemsize(fmt, flen, lay->format)) <= 0 ||
	    lay->itemsize != v->itemsize) {
		PyErr_Format(PyExc_ValueError,
			     "publish() cannot describe the buffer format %.50s of "
			     "%.200R (supported: an optional byte order among "
			     "'<>=!@' and one of ?bBhHiIlLqQefdg, Zf, Zd, Zg); "
			     "publish memoryview(obj).cast('B') to send raw bytes",
			     fmt, obj);
		return -1;
	}
	if (v->ndim < 0 || v->ndim > ZDEXT_META_NDIM_MAX) {
		PyErr_Format(PyExc_ValueError,
			     "publish() supports at most %d dimensions, %.200R has %d",
			     ZDEXT_META_NDIM_MAX, obj, v->ndim);
		return -1;
	}
	for (d = 0; d < v->ndim; d++) {
		dims[d] = v->shape ? (uint64_t)v->shape[d]
				   : (uint64_t)(v->len / v->itemsize);
		empty |= dims[d] == 0;
	}
	rc = layout_bound(lay, dims, v->ndim, capacity);
	if (rc == -EMSGSIZE && !empty) {
		PyErr_Format(st->SampleTooLargeError,
			     "publish(): %.100R has %zd bytes, more than the "
			     "largest slot capacity %llu", obj, v->len,
			     (unsigned long long)capacity);
		return -1;
	}
	if (rc == -EMSGSIZE) {
		PyErr_Format(PyExc_ValueError,
			     "publish(): %.100R is empty, but its nonzero dimensions "
			     "span more than the slot capacity %llu bytes: an empty "
			     "array may not describe more than a full slot could",
			     obj, (unsigned long long)capacity);
		return -1;
	}
	if (rc < 0 || lay->nbytes != (uint64_t)v->len) {
		PyErr_Format(PyExc_ValueError,
			     "publish(): the shape of the buffer of %.100R does not "
			     "match its %zd bytes", obj, v->len);
		return -1;
	}
	return 0;
}
