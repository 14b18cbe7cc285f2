"""Zero-copy: the writer's array, the reader's array and every sample of a
slot share the slot's memory; addresses prove it.  Samples see the pages
through a second, read-only mapping, so a sample's address differs from its
loan's; a write through the loan's (writable) address shows in the sample."""
from __future__ import annotations

import ctypes

import numpy as np
import pytest

import zdshm


def _addr(obj) -> int:
    return np.asarray(obj).__array_interface__["data"][0]


def test_loan_address_is_slot_address(seg):
    loan = seg.reserve()
    a = np.asarray(loan)
    assert _addr(loan) == loan.address
    assert a.__array_interface__["data"][0] == loan.address
    mv = memoryview(loan)
    mv[0] = 42
    assert a[0] == 42              # same memory
    del a, mv


def test_writer_and_reader_share_memory(seg):
    w = seg.writer()
    r = seg.reader()
    with w.loan_array((8, 8), np.float32) as frame:
        frame[:] = 1.5
        writer_addr = frame.__array_interface__["data"][0]
    s = r.take(timeout=1)
    arr = np.asarray(s)
    assert arr.__array_interface__["data"][0] == s.address != writer_addr
    assert arr.dtype == np.float32 and arr.shape == (8, 8) and float(arr[3, 3]) == 1.5
    ctypes.memmove(writer_addr, np.float32(2.5).tobytes(), 4)   # the writable mapping
    assert float(arr[0, 0]) == 2.5                               # same pages


def test_two_samples_of_one_slot(seg):
    loan = seg.reserve()
    loan_addr = loan.address
    memoryview(loan)[:4] = b"same"
    loan.commit(4)
    s1 = seg.read(loan.slot)
    s2 = seg.read(loan.slot)
    a1, a2 = np.asarray(s1), np.asarray(s2)
    assert _addr(s1) == _addr(s2) == s1.address != loan_addr
    ctypes.memmove(loan_addr, b"SAME", 4)
    assert bytes(s1) == bytes(s2) == b"SAME"
    assert np.shares_memory(a1, a2)
    assert memoryview(s1).obj is s1


def test_samples_of_different_slots_differ(seg):
    w = seg.writer()
    r = seg.reader()
    w.publish(b"a")
    w.publish(b"b")
    s1, s2 = r.take(1), r.take(1)
    assert s1.slot != s2.slot
    assert not np.shares_memory(np.asarray(s1), np.asarray(s2))
    assert abs(s1.address - s2.address) >= seg.slot_total_size


def test_posix_second_handle_sees_writes_in_place(posix_factory):
    a = posix_factory(slot_capacity=4096)
    b = posix_factory.attach(a)
    loan = a.reserve()
    view = np.asarray(loan)
    view[:4] = [1, 2, 3, 4]
    del view
    loan.commit(4)
    s = b.read(loan.slot)
    assert bytes(s) == b"\x01\x02\x03\x04"
    assert s.address != loan.address     # different mappings of the same pages
    s.release()


def test_publish_copies_exactly_once(seg):
    src = np.arange(32, dtype=np.uint8)
    w, r = seg.writer(), seg.reader()
    w.publish(src)
    s = r.take(1)
    out = np.asarray(s)
    assert not np.shares_memory(out, src)       # publish is a copy-in...
    src[:] = 0
    assert out[5] == 5                          # ...taken at publish time


class _PyBuffer(ctypes.Structure):
    _fields_ = [("buf", ctypes.c_void_p), ("obj", ctypes.py_object),
                ("len", ctypes.c_ssize_t), ("itemsize", ctypes.c_ssize_t),
                ("readonly", ctypes.c_int), ("ndim", ctypes.c_int),
                ("format", ctypes.c_char_p),
                ("shape", ctypes.POINTER(ctypes.c_ssize_t)),
                ("strides", ctypes.POINTER(ctypes.c_ssize_t)),
                ("suboffsets", ctypes.c_void_p), ("internal", ctypes.c_void_p)]


PyBUF_F_CONTIGUOUS = 0x0040 | 0x0010 | 0x0008     # with PyBUF_STRIDES, ND
PyBUF_C_CONTIGUOUS = 0x0020 | 0x0010 | 0x0008


def _contiguous_request(obj, flags) -> tuple[int, bool, bool]:
    """PyObject_GetBuffer(obj, flags): (ndim, C-contiguous, F-contiguous)
    as PyBuffer_IsContiguous judges the view; raises what the exporter
    raised."""
    get = ctypes.pythonapi.PyObject_GetBuffer
    get.argtypes = [ctypes.py_object, ctypes.POINTER(_PyBuffer), ctypes.c_int]
    release = ctypes.pythonapi.PyBuffer_Release
    release.argtypes = [ctypes.POINTER(_PyBuffer)]
    iscontig = ctypes.pythonapi.PyBuffer_IsContiguous
    iscontig.argtypes = [ctypes.POINTER(_PyBuffer), ctypes.c_char]
    view = _PyBuffer()
    get(obj, ctypes.byref(view), flags)           # raises on failure
    try:
        return (view.ndim, bool(iscontig(ctypes.byref(view), b"C")),
                bool(iscontig(ctypes.byref(view), b"F")))
    finally:
        release(ctypes.byref(view))


# Regression: a Fortran-contiguous request of an empty multi-dimensional
# sample was refused, though an empty array is both C- and F-contiguous.
@pytest.mark.parametrize("shape", [(0, 3), (3, 0), (2, 0, 4), (0, 0), (5, 4, 0)])
def test_fortran_request_of_empty_sample(seg, shape):
    w, r = seg.writer(), seg.reader()
    w.publish(np.zeros(shape, dtype=np.float32))
    s = r.take(1)
    assert s.shape == shape
    assert _contiguous_request(s, PyBUF_F_CONTIGUOUS) == (len(shape), True, True)
    assert _contiguous_request(s, PyBUF_C_CONTIGUOUS) == (len(shape), True, True)
    assert s.exports == 0
    s.release()


def test_fortran_request_of_nonempty_sample(seg):
    w, r = seg.writer(), seg.reader()
    w.publish(np.zeros((2, 3), dtype=np.float32))
    w.publish(np.zeros((1, 3, 1), dtype=np.float32))
    s = r.take(1)
    with pytest.raises(BufferError, match="not Fortran-contiguous"):
        _contiguous_request(s, PyBUF_F_CONTIGUOUS)
    assert s.exports == 0
    s.release()
    s = r.take(1)                       # one dimension above 1: both
    assert _contiguous_request(s, PyBUF_F_CONTIGUOUS) == (3, True, True)
    s.release()
