"""DLPack: Sample and Loan as DLPack producers (np.from_dlpack, torch).

A DLPack export is a buffer export of the Sample or Loan, held until the
consumer's deleter runs: zero-copy, read-only for a sample (versioned
capsules), writable for a loan, and it pins the slot like any view."""
from __future__ import annotations

import ctypes
import gc
import importlib
import importlib.util
import multiprocessing as mp
import os
import pathlib
import re
import subprocess
import sys
import threading

import numpy as np
import pytest

import zdshm

import zdpy_children

CTX = mp.get_context("spawn")

ARRAYS = [
    np.arange(12, dtype=np.float32).reshape(3, 4),
    np.arange(2 * 3 * 4, dtype=np.float64).reshape(2, 3, 4) / 7,
    np.array([[True, False, True], [False, False, True]]),
    np.arange(100, dtype=np.uint8),
    np.arange(-6, 6, dtype=np.int8),
    np.arange(10, dtype=np.int16),
    np.arange(10, dtype=np.uint16),
    np.arange(10, dtype=np.int32).reshape(2, 5),
    np.arange(10, dtype=np.uint32),
    np.arange(6, dtype=np.int64).reshape(1, 2, 3, 1),
    np.arange(6, dtype=np.uint64),
    np.arange(6, dtype=np.float16),
    np.array([1.5 - 2j, 3j], dtype=np.complex128),
    np.array([1 + 1j, 2], dtype=np.complex64),
    np.array(42, dtype=np.int16),                 # 0-d
    np.array(2.5),                                # 0-d float64
    np.zeros((0,), dtype=np.float32),             # empty
    np.zeros((3, 0, 2), dtype=np.int32),          # empty, several dims
    np.arange(2 * 3 * 1 * 2 * 1 * 2, dtype="<i2").reshape(2, 3, 1, 2, 1, 2),
]


def _take(seg, a):
    w = seg.writer()
    r = seg.reader()
    w.publish(a)
    return r, r.take(timeout=1)


def _data(arr) -> int:
    return arr.__array_interface__["data"][0]


@pytest.mark.parametrize("a", ARRAYS, ids=lambda a: f"{a.dtype.str}{a.shape}")
def test_from_dlpack_zero_copy_dtype_shape(make_segment, a):
    seg = make_segment(slot_count=2, slot_capacity=1024)
    r, s = _take(seg, a)
    out = np.from_dlpack(s)
    assert out.dtype == a.dtype and out.shape == a.shape
    np.testing.assert_array_equal(out, a)
    if a.size:
        assert _data(out) == s.address               # zero-copy
        assert np.shares_memory(out, np.asarray(s))
    assert not out.flags.writeable                   # read-only sample
    assert s.exports == 1
    del out
    gc.collect()
    assert s.exports == 0
    s.release()


def test_dlpack_device(seg):
    r, s = _take(seg, b"abc")
    assert s.__dlpack_device__() == (1, 0)
    assert seg.reserve().__dlpack_device__() == (1, 0)


def test_raw_bytes_are_uint8(seg):
    r, s = _take(seg, b"hello")
    out = np.from_dlpack(s)
    assert out.dtype == np.uint8 and out.shape == (5,)
    assert out.tobytes() == b"hello"


def test_sample_pinned_until_array_dies(make_segment):
    seg = make_segment(slot_count=1, slot_capacity=64)
    r, s = _take(seg, np.arange(4, dtype=np.int32))
    out = np.from_dlpack(s)
    del s
    gc.collect()
    r.close()
    with pytest.raises(zdshm.NoFreeSlotError):
        seg.reserve(0)                # still pinned by the DLPack array
    assert out.tolist() == [0, 1, 2, 3]
    del out
    gc.collect()
    seg.reserve(0).discard()          # released with the consumer's array


def test_release_and_close_refused_while_exported(make_segment):
    seg = make_segment(slot_count=1, slot_capacity=64)
    r, s = _take(seg, b"xyz")
    out = np.from_dlpack(s)
    with pytest.raises(zdshm.ViewsAliveError, match="DLPack"):
        s.release()
    with pytest.raises(zdshm.ViewsAliveError, match="sample of slot 0"):
        seg.close()
    del out
    gc.collect()
    s.release()
    assert s.released


def test_versioned_capsule_read_only_flag(seg):
    r, s = _take(seg, np.arange(3, dtype=np.float64))
    cap = s.__dlpack__(max_version=(1, 0))
    assert _capsule_name(cap) == b"dltensor_versioned"
    m = _versioned(cap)
    assert (m.major, m.minor) == (1, 0)
    assert m.flags & 1                       # DLPACK_FLAG_BITMASK_READ_ONLY
    assert m.ndim == 1 and m.code == 2 and m.bits == 64 and m.lanes == 1
    assert m.data == s.address and m.device_type == 1 and m.device_id == 0
    assert s.exports == 1
    del cap, m
    gc.collect()
    assert s.exports == 0                    # never consumed: deleted


@pytest.mark.parametrize("max_version", [None, (0, 8)])
def test_legacy_capsule(seg, max_version):
    r, s = _take(seg, np.arange(6, dtype=np.int32).reshape(2, 3))
    kw = {} if max_version is None else {"max_version": max_version}
    cap = s.__dlpack__(**kw)
    assert _capsule_name(cap) == b"dltensor"
    t = _legacy(cap)
    assert t.data == s.address and t.ndim == 2
    assert (t.code, t.bits, t.lanes) == (0, 32, 1)
    assert [t.shape[0], t.shape[1]] == [2, 3]
    assert [t.strides[0], t.strides[1]] == [3, 1]        # in elements
    assert s.exports == 1
    with pytest.raises(zdshm.ViewsAliveError):
        s.release()
    del cap, t
    gc.collect()
    assert s.exports == 0                    # never consumed: no pin left
    s.release()


def test_legacy_capsule_consumed_by_deleter(seg):
    """A consumer takes the tensor, renames the capsule, later calls the
    deleter: the export lives exactly until then."""
    r, s = _take(seg, b"abcd")
    cap = s.__dlpack__()
    ptr = ctypes.pythonapi.PyCapsule_GetPointer
    ptr.restype = ctypes.c_void_p
    ptr.argtypes = [ctypes.py_object, ctypes.c_char_p]
    addr = ptr(cap, b"dltensor")
    rename = ctypes.pythonapi.PyCapsule_SetName
    rename.argtypes = [ctypes.py_object, ctypes.c_char_p]
    used = ctypes.c_char_p(b"used_dltensor")
    assert rename(cap, used) == 0
    del cap
    gc.collect()
    assert s.exports == 1                    # the consumer owns it now
    m = _LegacyManaged.from_address(addr)
    assert m.tensor.data == s.address and m.tensor.ndim == 1
    m.deleter(addr)
    assert s.exports == 0
    s.release()


def test_deleter_called_from_another_thread(seg):
    """A consumer may delete from any thread (ctypes calls the deleter
    without the GIL; the deleter takes it)."""
    r, s = _take(seg, np.arange(4, dtype=np.uint16))
    cap = s.__dlpack__(max_version=(1, 0))
    addr = _pointer(cap, b"dltensor_versioned")
    rename = ctypes.pythonapi.PyCapsule_SetName
    rename.argtypes = [ctypes.py_object, ctypes.c_char_p]
    used = ctypes.c_char_p(b"used_dltensor_versioned")
    assert rename(cap, used) == 0
    del cap
    m = _VersionedManaged.from_address(addr)
    t = threading.Thread(target=m.deleter, args=(addr,))
    t.start()
    t.join(10)
    assert not t.is_alive() and s.exports == 0
    s.release()


def test_with_segment_defers_close_for_a_dlpack_array(make_segment):
    seg = make_segment()
    with seg:
        w = seg.writer()
        r = seg.reader()
        w.publish(np.arange(5, dtype=np.int32))
        arr = np.from_dlpack(r.take(timeout=1))
    assert seg.closed
    assert arr.tolist() == [0, 1, 2, 3, 4]       # still pinned and mapped
    assert "closed" not in repr(seg)
    del arr
    gc.collect()
    assert "closed" in repr(seg)                 # really closed now


def test_copy_true_is_a_private_writable_copy(seg):
    a = np.arange(8, dtype=np.float32)
    r, s = _take(seg, a)
    out = np.from_dlpack(s, copy=True)
    assert out.flags.writeable and _data(out) != s.address
    assert s.exports == 0                    # a copy pins nothing
    out[0] = 99
    assert np.asarray(s)[0] == 0
    m = _versioned(s.__dlpack__(max_version=(1, 0), copy=True))
    assert m.flags & 2 and not m.flags & 1   # IS_COPIED, not READ_ONLY
    del m
    gc.collect()
    s.release()
    assert out.tolist()[0] == 99


def test_copy_false_and_cpu_device_accepted(seg):
    r, s = _take(seg, np.arange(3, dtype=np.int64))
    out = np.from_dlpack(s, copy=False, device="cpu")
    assert _data(out) == s.address
    cap = s.__dlpack__(stream=None, max_version=(1, 3), dl_device=(1, 0),
                       copy=False)
    assert _capsule_name(cap) == b"dltensor_versioned"


@pytest.mark.parametrize("kw, exc, match", [
    ({"stream": 1}, ValueError, r"stream must be None.*got 1"),
    ({"stream": -1}, ValueError, r"stream must be None.*got -1"),
    ({"dl_device": (2, 0)}, BufferError, r"dl_device \(2, 0\) is not supported"),
    ({"dl_device": (1, 1)}, BufferError, r"dl_device \(1, 1\) is not supported"),
    ({"dl_device": "cpu"}, TypeError, r"dl_device must be None or a tuple.*'cpu'"),
    ({"max_version": 1}, TypeError, r"max_version must be None or a tuple.*got 1"),
    ({"max_version": (1,)}, TypeError, r"max_version must be.*\(1,\)"),
    ({"max_version": (1.0, 0)}, TypeError, r"max_version must be"),
    ({"copy": 1}, TypeError, r"copy must be None, True or False, got 1"),
    ({"copy": "yes"}, TypeError, r"copy must be None, True or False"),
    ({"device": (1, 0)}, TypeError, r"unexpected keyword argument 'device'"),
])
def test_bad_arguments(seg, kw, exc, match):
    r, s = _take(seg, b"abc")
    with pytest.raises(exc, match=match):
        s.__dlpack__(**kw)
    with pytest.raises(exc, match=match):
        seg.reserve().__dlpack__(**kw)
    assert s.exports == 0


def test_positional_refused(seg):
    r, s = _take(seg, b"abc")
    with pytest.raises(TypeError, match="positional"):
        s.__dlpack__(None)


def test_unsupported_types_refused(seg):
    for a in (np.arange(3, dtype=np.longdouble), np.arange(3, dtype=">i4")):
        r, s = _take(seg, a)
        with pytest.raises(BufferError, match="DLPack"):
            s.__dlpack__(max_version=(1, 0))
        assert s.exports == 0
        s.release()
        r.close()


def test_released_sample_raises_closed(seg):
    r, s = _take(seg, b"abc")
    s.release()
    with pytest.raises(zdshm.ClosedError):
        s.__dlpack__()
    with pytest.raises(zdshm.ClosedError):
        np.from_dlpack(s)


def test_loan_exports_writable(make_segment):
    seg = make_segment(slot_count=2, slot_capacity=256)
    w = seg.writer()
    r = seg.reader()
    loan = w.loan()
    loan.set_format("<f", (4, 2))
    t = np.from_dlpack(loan)
    assert t.flags.writeable and t.dtype == np.float32 and t.shape == (4, 2)
    assert _data(t) == loan.address
    t[...] = np.arange(8).reshape(4, 2)
    assert _versioned(loan.__dlpack__(max_version=(1, 0))).flags == 0
    gc.collect()
    with pytest.raises(zdshm.ViewsAliveError, match="cannot commit.*DLPack"):
        loan.commit()                  # a DLPack export is an export
    assert loan.live
    del t
    gc.collect()
    loan.commit()
    s = r.take(timeout=1)
    assert np.asarray(s).tolist() == np.arange(8.0).reshape(4, 2).tolist()
    with pytest.raises(BufferError, match="already committed"):
        loan.__dlpack__()


def test_loan_without_format_is_its_bytes(seg):
    loan = seg.reserve()
    t = np.from_dlpack(loan)
    assert t.dtype == np.uint8 and t.shape == (loan.capacity,)
    assert t.flags.writeable
    t[:3] = [1, 2, 3]
    del t
    loan.commit(3)
    assert seg.read(loan.slot).tobytes() == b"\x01\x02\x03"


def test_loan_dlpack_blocks_discard_then_abandon(seg):
    loan = seg.reserve()
    slot = loan.slot
    t = np.from_dlpack(loan)
    with pytest.raises(zdshm.ViewsAliveError):
        loan.discard()
    del loan
    gc.collect()
    assert seg.slot_state(slot) == "loaned"     # the tensor keeps the loan
    del t
    gc.collect()
    assert seg.slot_state(slot) == "free"       # abandoned: discarded


def test_cross_process_loan_and_sample(posix_factory):
    """A child fills loans through DLPack and commits them; this process
    sees each as a zero-copy DLPack array with its dtype and shape."""
    seg = posix_factory(slot_count=4, slot_capacity=1024)
    r = seg.reader()
    specs = [("<d", (2, 3)), ("<i", (5,)), ("?", (2, 2)), ("<H", ())]
    p = CTX.Process(target=zdpy_children.dlpack_fill, args=(seg.name, specs))
    p.start()
    try:
        for fmt, shape in specs:
            s = None
            for _ in range(60):
                try:
                    s = r.take(timeout=1)
                    break
                except zdshm.WaitTimeoutError:
                    assert p.exitcode is None, "the child failed"
            assert s is not None
            out = np.from_dlpack(s)
            expect = np.arange(int(np.prod(shape)) + 1)[1:].reshape(shape)
            assert out.dtype == np.dtype(fmt) and out.shape == shape
            assert _data(out) == s.address
            np.testing.assert_array_equal(out, expect.astype(fmt))
            del out
            s.release()
        p.join(60)
        assert p.exitcode == 0
    finally:
        if p.is_alive():
            p.kill()
            p.join()


# ---------------------------------------------------------------------------
# torch
# ---------------------------------------------------------------------------

_HAVE_TORCH = importlib.util.find_spec("torch") is not None
_REQUIRE_TORCH = os.environ.get("ZDSHM_REQUIRE_TORCH") == "1"
# The torch extra (torch==2.13.0) has a CPU wheel for Python 3.11 only on the
# machines we test on; .ci/run installs it there and sets ZDSHM_REQUIRE_TORCH=1,
# which turns a missing torch into failures instead of this skip.
needs_torch = pytest.mark.skipif(
    not _HAVE_TORCH and not _REQUIRE_TORCH,
    reason="torch is not installed (the torch extra, a CPU wheel for Python 3.11)")


def _torch():
    if not _HAVE_TORCH:
        pytest.fail("ZDSHM_REQUIRE_TORCH=1 but torch is not installed "
                    "(pip install '.[torch]')")
    return importlib.import_module("torch")


@pytest.mark.parametrize("a", [
    np.arange(12, dtype=np.float32).reshape(3, 4),
    np.arange(6, dtype=np.int64).reshape(1, 2, 3),
    np.array([True, False]),
    np.arange(4, dtype=np.uint8),
    np.array(7, dtype=np.int16),
    np.array([1 + 2j], dtype=np.complex64),
], ids=lambda a: f"{a.dtype.str}{a.shape}")
@needs_torch
def test_torch_from_dlpack_zero_copy(make_segment, a):
    torch = _torch()
    seg = make_segment(slot_count=1, slot_capacity=256)
    r, s = _take(seg, a)
    t = torch.from_dlpack(s)
    assert tuple(t.shape) == a.shape
    assert t.dtype == torch.from_numpy(a.copy()).dtype
    assert t.data_ptr() == s.address
    assert t.tolist() == a.tolist()
    with pytest.raises(zdshm.ViewsAliveError):
        s.release()
    del s
    gc.collect()
    r.close()
    with pytest.raises(zdshm.NoFreeSlotError):
        seg.reserve(0)                   # pinned by the torch tensor
    del t
    gc.collect()
    seg.reserve(0).discard()


@needs_torch
def test_torch_loan_writable(seg):
    torch = _torch()
    w = seg.writer()
    r = seg.reader()
    loan = w.loan()
    loan.set_format("<f", (2, 2))
    t = torch.from_dlpack(loan)
    t.fill_(3.0)
    del t
    gc.collect()
    loan.commit()
    assert np.asarray(r.take(timeout=1)).tolist() == [[3.0, 3.0], [3.0, 3.0]]


@needs_torch
def test_torch_frombuffer_keeps_the_mapping_after_close(make_segment):
    # torch.frombuffer takes a buffer, gives it back at once and keeps a
    # reference to the sample: no view, but the mapping stays under it.
    torch = _torch()
    seg = make_segment()
    w, r = seg.writer(), seg.reader()
    w.publish(np.arange(6, dtype=np.float32))
    s = r.take(timeout=1)
    t = torch.frombuffer(s, dtype=torch.float32)
    assert s.exports == 0
    del s
    seg.close()
    assert seg.closed and "closing" in repr(seg)
    assert t.tolist() == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    del t
    gc.collect()
    assert "closed" in repr(seg)


@needs_torch
def test_readme_dlpack_block_runs_verbatim():
    """The README's DLPack example (numpy and torch) in a fresh process."""
    _torch()
    readme = pathlib.Path(__file__).resolve().parents[2] / "README.md"
    text = readme.read_text()
    section = text[text.index("\n## torch and JAX via DLPack\n"):]
    section = section[:section.index("\n## ", 1)]
    (block,) = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    proc = subprocess.run([sys.executable, "-W", "error", "-c", block],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert proc.stdout.splitlines() == ["float32 (3, 4) False torch.float32 True"]


# ---------------------------------------------------------------------------
# Reading capsules with ctypes (the ABI of csrc/ext/dlpack_abi.h)
# ---------------------------------------------------------------------------

class _Tensor(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("device_type", ctypes.c_int32),
                ("device_id", ctypes.c_int32), ("ndim", ctypes.c_int32),
                ("code", ctypes.c_uint8), ("bits", ctypes.c_uint8),
                ("lanes", ctypes.c_uint16),
                ("shape", ctypes.POINTER(ctypes.c_int64)),
                ("strides", ctypes.POINTER(ctypes.c_int64)),
                ("byte_offset", ctypes.c_uint64)]


_DELETER = ctypes.CFUNCTYPE(None, ctypes.c_void_p)


class _LegacyManaged(ctypes.Structure):
    _fields_ = [("tensor", _Tensor), ("ctx", ctypes.c_void_p),
                ("deleter", _DELETER)]


class _VersionedManaged(ctypes.Structure):
    _fields_ = [("major", ctypes.c_uint32), ("minor", ctypes.c_uint32),
                ("ctx", ctypes.c_void_p), ("deleter", _DELETER),
                ("flags", ctypes.c_uint64), ("tensor", _Tensor)]


class _Flat:
    """The fields of a managed tensor, read once (no pointer kept)."""

    def __init__(self, m, t) -> None:
        for name, _ in _Tensor._fields_:
            setattr(self, name, getattr(t, name))
        for name in ("major", "minor", "flags"):
            if hasattr(m, name):
                setattr(self, name, getattr(m, name))


def _capsule_name(cap) -> bytes:
    get = ctypes.pythonapi.PyCapsule_GetName
    get.restype = ctypes.c_char_p
    get.argtypes = [ctypes.py_object]
    return get(cap)


def _pointer(cap, name: bytes) -> int:
    ptr = ctypes.pythonapi.PyCapsule_GetPointer
    ptr.restype = ctypes.c_void_p
    ptr.argtypes = [ctypes.py_object, ctypes.c_char_p]
    return ptr(cap, name)


def _versioned(cap):
    m = _VersionedManaged.from_address(_pointer(cap, b"dltensor_versioned"))
    return _Flat(m, m.tensor)


def _legacy(cap):
    m = _LegacyManaged.from_address(_pointer(cap, b"dltensor"))
    return _Flat(m, m.tensor)
