"""zdshm.arrays: loan_array, publish_array, dtype <-> format."""
from __future__ import annotations

import gc

import numpy as np
import pytest

import zdshm
from zdshm import arrays

DTYPES = [np.bool_, np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32,
          np.int64, np.uint64, np.float16, np.float32, np.float64, np.longdouble,
          np.complex64, np.complex128, np.clongdouble, ">i4", "<i8", ">f8",
          ">c8", np.intc, np.longlong, np.ulonglong]


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).str)
def test_format_roundtrip(dtype):
    dt = np.dtype(dtype)
    fmt = arrays.dtype_to_format(dt)
    assert arrays.format_to_dtype(fmt) == dt
    assert arrays.format_to_dtype(memoryview(np.empty(0, dt)).format) == dt


@pytest.mark.parametrize("dtype", ["M8[s]", "m8[s]", "U4", "S3", "O",
                                   [("a", "i4"), ("b", "f8")], "V8"])
def test_unsupported_dtypes(dtype):
    with pytest.raises(ValueError, match="cannot travel"):
        arrays.dtype_to_format(dtype)


@pytest.mark.parametrize("fmt", ["x", "ii", "<g", "Zq", "", "T{i:a:}"])
def test_format_to_dtype_refuses(fmt):
    with pytest.raises(ValueError):
        arrays.format_to_dtype(fmt)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).str)
@pytest.mark.parametrize("shape", [(7,), (3, 4), (2, 3, 2), (), (0, 5)])
def test_loan_array_roundtrip(make_segment, dtype, shape):
    seg = make_segment(slot_capacity=1024)
    w, r = seg.writer(), seg.reader()
    dt = np.dtype(dtype)
    expected = (np.arange(int(np.prod(shape))) % 2 == 0 if dt.kind == "b"
                else np.arange(int(np.prod(shape))).astype(dt)).reshape(shape)
    with w.loan_array(shape, dt) as frame:
        assert frame.flags.writeable and frame.shape == shape and frame.dtype == dt
        frame[...] = expected
    assert not frame.flags.writeable
    with pytest.raises(ValueError):
        frame[...] = expected            # read-only after commit
    s = r.take(timeout=1)
    out = np.asarray(s)
    assert out.dtype == dt and out.shape == shape
    np.testing.assert_array_equal(out, expected)


def test_loan_array_int_shape_and_module_function(seg):
    w, r = seg.writer(), seg.reader()
    with arrays.loan_array(w, 5, np.int32) as f:
        f[:] = [1, 2, 3, 4, 5]
    out = arrays.asarray(r.take(1))
    assert out.tolist() == [1, 2, 3, 4, 5]


def test_loan_array_derived_view_refuses_publish(seg):
    w, r = seg.writer(), seg.reader()
    commits = seg.info()["counters"]["commits"]
    with pytest.raises(zdshm.ViewsAliveError, match="NOT published"):
        with w.loan_array((10,), np.int32) as f:
            tail = f[5:]
    assert seg.info()["counters"]["commits"] == commits
    assert r.try_take() is None
    assert not f.flags.writeable
    slot_states = [seg.slot_state(i) for i in range(seg.slot_count)]
    assert "loaned" in slot_states       # held while the writable slice lives
    tail[0] = 1                          # still memory-safe
    del tail, f
    gc.collect()
    assert all(seg.slot_state(i) == "free" for i in range(seg.slot_count))
    assert r.try_take() is None


@pytest.mark.parametrize("derive", [
    lambda f: f.view(np.uint8),
    lambda f: f.reshape(-1),
    lambda f: f[::2],
    lambda f: f.T,
    lambda f: f[1],
    lambda f: f[1:][::2],                # a view of a view
])
def test_loan_array_derived_view_is_an_export(seg, derive):
    w, r = seg.writer(), seg.reader()
    with pytest.raises(zdshm.ViewsAliveError, match="1 other view .*slot"):
        with w.loan_array((4, 4), np.uint8) as f:
            extra = derive(f)
            assert w.segment.info()["open_objects"]["loans"] == 1
    assert r.try_take() is None
    del extra, f
    gc.collect()
    assert all(seg.slot_state(i) == "free" for i in range(seg.slot_count))


def test_loan_array_temporaries_and_results_do_not_count(seg):
    w, r = seg.writer(), seg.reader()
    with w.loan_array((4, 4), np.int32) as f:
        f[1:3] = 5                       # temporary views, gone at once
        total = int(f.sum())
        doubled = f * 2                  # a result with its own memory
        second_name = [f]
    assert total == 40 and int(doubled.sum()) == 80
    assert not second_name[0].flags.writeable       # the same, read-only array
    assert int(np.asarray(r.take(timeout=1)).sum()) == 40
    tail = f[2:]                         # views after the commit: read-only
    assert not tail.flags.writeable


def test_loan_array_exception_discards(seg):
    w, r = seg.writer(), seg.reader()
    discards = seg.info()["counters"]["discards"]
    with pytest.raises(KeyError):
        with w.loan_array((3,), np.float64) as f:
            f[:] = 1
            raise KeyError("fail")
    assert seg.info()["counters"]["discards"] == discards + 1
    assert r.try_take() is None
    assert not f.flags.writeable


def test_loan_array_too_large(seg):
    w = seg.writer()
    with pytest.raises(zdshm.SampleTooLargeError):
        with w.loan_array((1000,), np.float64):
            pass
    assert all(seg.slot_state(i) == "free" for i in range(seg.slot_count))


def test_loan_array_bad_arguments(seg):
    w = seg.writer()
    with pytest.raises(TypeError):
        arrays.loan_array(object(), (2,), np.uint8)
    with pytest.raises(ValueError):
        w.loan_array((2, -1), np.uint8)
    with pytest.raises(TypeError):
        w.loan_array("2", np.uint8)
    with pytest.raises(ValueError):
        w.loan_array((2,), "M8[s]")
    with pytest.raises(ValueError):
        w.loan_array((1,) * 7, np.uint8).__enter__()
    assert all(seg.slot_state(i) == "free" for i in range(seg.slot_count))


def test_loan_array_timeout(make_segment):
    seg = make_segment(slot_count=1)
    w = seg.writer(timeout=5)
    r = seg.reader()
    w.publish(b"x")
    with pytest.raises(zdshm.WaitTimeoutError):
        with w.loan_array((2,), np.uint8, timeout=0.05):
            pass
    del r


def test_publish_array_noncontiguous(seg):
    w, r = seg.writer(), seg.reader()
    src = np.arange(20, dtype=np.int16).reshape(4, 5)[:, ::2]
    arrays.publish_array(w, src)
    out = np.asarray(r.take(1))
    np.testing.assert_array_equal(out, src)
    assert out.shape == (4, 3)


def test_asarray_type():
    with pytest.raises(TypeError):
        arrays.asarray(b"bytes")


def test_torch_frombuffer_style_consumer(seg):
    # torch.frombuffer(buffer, dtype) asks for a simple read-only buffer;
    # emulate that consumer with the same buffer request through numpy.
    w, r = seg.writer(), seg.reader()
    w.publish(np.arange(6, dtype=np.float32).reshape(2, 3))
    s = r.take(1)
    flat = np.frombuffer(s, dtype=np.float32)
    assert flat.tolist() == [0, 1, 2, 3, 4, 5]
    m = memoryview(s)
    assert (m.format, m.shape, m.itemsize, m.nbytes) == ("f", (2, 3), 4, 24)


def test_loan_array_frame_and_its_views_are_exports_of_the_loan(seg):
    w, r = seg.writer(), seg.reader()
    cm = w.loan_array((4, 4), np.float32)
    assert isinstance(cm, zdshm.LoanArray)
    with cm as f:
        loan = f.base                    # the frame is built over the loan
        assert isinstance(f, arrays.LoanFrame) and isinstance(loan, zdshm.Loan)
        assert loan.exports == 1 and loan.live
        v = f[1:]
        assert loan.exports == 2
        del v
        assert loan.exports == 1
        f[...] = 2
        copy = f.copy()                  # memory of its own: no export
        assert loan.exports == 1
    assert loan.sn is not None and not loan.live
    assert loan.exports == 1             # the frame keeps the mapping
    assert float(np.asarray(r.take(timeout=1)).sum()) == 32.0
    assert not f[1:].flags.writeable and loan.exports == 1
    del f
    gc.collect()
    assert loan.exports == 0 and float(copy.sum()) == 32.0
    with pytest.raises(RuntimeError, match="not reentrant"):
        with cm:
            cm.__enter__()
    with pytest.raises(TypeError, match="cannot pickle"):
        import pickle
        pickle.dumps(cm)


def test_loan_array_plan_follows_shape_and_dtype(seg):
    w, r = seg.writer(), seg.reader()
    for shape, dtype in [((2, 3), np.int16), ((2, 3), np.int16), ([2, 3], "i2"),
                         (6, np.float64), ((3, 2), np.dtype(">i4"))]:
        with w.loan_array(shape, dtype) as f:
            f[...] = 1
        out = np.asarray(r.take(timeout=1))
        want = (shape,) if isinstance(shape, int) else tuple(shape)
        assert out.shape == want and out.dtype == np.dtype(dtype)
    with pytest.raises(TypeError):
        w.loan_array((2.0, 3), np.int16)          # not served from the cache
