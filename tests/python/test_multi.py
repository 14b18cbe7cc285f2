"""Several named arrays in one sample: Writer.publish of a dict,
Writer.loan_arrays, and the Sample's mapping surface (keys, [], in, arrays).

The directory (ext.h "Several named arrays in one sample") sits at the start
of the slot's data; entry i at 128 * i holds the array's single-array meta
(bytes 0..63), its offset (64..71), its bytes (72..79), the name length (80)
and the name (81..127).  The hostile tests write those bytes through a
loan's writable memoryview before the commit, or the slot meta directly in
the posix segment's file.
"""
from __future__ import annotations

import gc
import mmap
import multiprocessing as mp
import os
import pathlib
import pickle
import re
import struct
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import zdshm

import zdpy_multi_children as kids

ENTRY = 128


@pytest.fixture
def seg(make_segment):
    """Room for 16 arrays: 4 slots of 256 KiB."""
    return make_segment(4, 1 << 18)


def addr(a: np.ndarray) -> int:
    return a.__array_interface__["data"][0]


def mixed(n: int) -> dict[str, np.ndarray]:
    """n arrays of mixed dtypes and shapes, including 0-d and empty ones."""
    dtypes = ["u1", "<i2", "<u4", "<i8", "<f2", "<f4", "<f8", "<c8", "<c16",
              "?", "i1", ">i4", ">f8", "<u2", "<u8", "=f4"]
    shapes = [(3, 5), (), (0,), (7,), (2, 3, 4), (1,), (0, 4), (5, 1, 2),
              (64,), (), (9, 2), (1, 1, 1, 1, 1, 1), (3,), (0, 0), (33,), (4, 4)]
    out = {}
    for i in range(n):
        dt = np.dtype(dtypes[i % len(dtypes)])
        shape = shapes[i % len(shapes)]
        size = int(np.prod(shape, dtype=np.int64))
        a = (np.arange(size) * (i + 3) % 97).astype(dt).reshape(shape)
        out[f"arr{i}_" + "x" * (i % 3)] = a
    return out


def check_sample(s, want: dict[str, np.ndarray]) -> None:
    assert s.keys() == tuple(want)
    base = s.address
    got = s.arrays()
    assert list(got) == list(want)
    ends = []
    for name, w in want.items():
        assert name in s
        a = s[name]
        assert a.dtype == w.dtype and a.shape == w.shape, name
        assert np.array_equal(a, w), name
        assert not a.flags.writeable
        assert addr(a) % 64 == 0, (name, addr(a))
        assert base <= addr(a) and addr(a) + a.nbytes <= base + s.size
        assert np.array_equal(got[name], w)
        ends.append((addr(a), addr(a) + a.nbytes))
    ends.sort()
    for (s0, e0), (s1, _) in zip(ends, ends[1:]):
        assert e0 <= s1            # side by side, no overlap
    assert ends[0][0] >= base + ENTRY * len(want)   # past the directory
    del got, a


# --- round trips ----------------------------------------------------------------

@pytest.mark.parametrize("n", [1, 2, 3, 7, 16])
def test_publish_round_trip(make_segment, n):
    seg = make_segment(4, 1 << 16)
    w, r = seg.writer(), seg.reader()
    want = mixed(n)
    sn = w.publish(want)
    with r.take(timeout=5) as s:
        assert s.sn == sn
        check_sample(s, want)
        # The buffer of the whole sample stays the raw bytes.
        assert s.format == "B" and s.shape == (s.size,) and len(s) == s.size
    gc.collect()


@pytest.mark.parametrize("n", [1, 4, 16])
def test_loan_arrays_round_trip(make_segment, n):
    seg = make_segment(4, 1 << 16)
    w, r = seg.writer(), seg.reader()
    want = mixed(n)
    cm = w.loan_arrays({k: (v.shape, v.dtype) for k, v in want.items()})
    with cm as arrs:
        assert list(arrs) == list(want)
        for k, v in want.items():
            a = arrs[k]
            assert a.flags.writeable and a.shape == v.shape and a.dtype == v.dtype
            assert addr(a) % 64 == 0
            a[...] = v
        del a
    assert all(not a.flags.writeable for a in arrs.values())
    with r.take(timeout=5) as s:
        assert s.size == cm.nbytes
        check_sample(s, want)
    gc.collect()


def test_shape_as_int_and_dtype_objects(seg):
    w, r = seg.writer(), seg.reader()
    with w.loan_arrays({"a": (3, np.int16), "b": ((), "f8")}) as arrs:
        arrs["a"][:] = [1, 2, 3]
        arrs["b"][()] = 2.5
    with r.take(timeout=5) as s:
        assert s["a"].tolist() == [1, 2, 3] and s["a"].dtype == np.int16
        assert s["b"].shape == () and float(s["b"]) == 2.5


def test_mapping_surface_and_plain_samples(seg):
    w, r = seg.writer(), seg.reader()
    w.publish({"image": np.ones((2, 2), np.uint8), "label": np.int64(7)})
    w.publish(np.arange(4, dtype=np.uint8))
    with r.take(timeout=5) as s:
        assert "image" in s and "label" in s and "nope" not in s and 3 not in s
        with pytest.raises(KeyError, match="nope"):
            s["nope"]
        with pytest.raises(TypeError, match="str"):
            s[0]
        assert dict(s).keys() == {"image", "label"}      # dict() uses keys() and []
        assert int(s["label"]) == 7
    with r.take(timeout=5) as s:                       # one array: no names
        assert s.keys() == () and s.arrays() == {} and "image" not in s
        with pytest.raises(KeyError, match="image"):
            s["image"]
        assert np.asarray(s).tolist() == [0, 1, 2, 3]
    gc.collect()


def test_alternating_single_and_several_keep_their_layouts(seg):
    w, r = seg.writer(), seg.reader()
    for i in range(6):
        if i % 2:
            w.publish(np.full(3, i, dtype="<i4"))
        else:
            w.publish({"v": np.full(3, i, dtype="<i4")})
        with r.take(timeout=5) as s:
            if i % 2:
                assert s.keys() == () and np.asarray(s).tolist() == [i] * 3
            else:
                assert s["v"].tolist() == [i] * 3 and s.format == "B"


def test_try_publish_and_apublish(seg):
    import asyncio

    w, r = seg.writer(), seg.reader()
    assert w.try_publish({"a": np.arange(3)}) == 0
    assert asyncio.run(w.apublish({"b": np.arange(2)})) == 1
    with r.take(timeout=5) as s:
        assert s["a"].tolist() == [0, 1, 2]
    with r.take(timeout=5) as s:
        assert s["b"].tolist() == [0, 1]


# --- lifetime ------------------------------------------------------------------

def test_array_pins_the_sample(make_segment):
    seg = make_segment(2, 4096)
    w, r = seg.writer(), seg.reader()
    w.publish({"image": np.arange(12, dtype=np.uint8), "label": np.int32(1)})
    s = r.take(timeout=5)
    img = s["image"]
    assert s.exports == 1
    with pytest.raises(zdshm.ViewsAliveError, match="1 view"):
        s.release()
    with pytest.raises(zdshm.ViewsAliveError):
        seg.close()
    with pytest.raises(ValueError):
        img[0] = 1                               # read-only
    slot = s.slot
    del s
    gc.collect()
    assert seg.slots()[slot]["pinned_by_readers"] == (r.index,)
    assert img.tolist() == list(range(12))       # outlives the Sample object
    del img
    gc.collect()
    assert seg.slots()[slot]["pinned_by_readers"] == ()


def test_exit_defers_close_while_an_array_lives(make_segment):
    seg = make_segment(2, 4096)
    with seg:
        w, r = seg.writer(), seg.reader()
        w.publish({"a": np.arange(5, dtype="<i4"), "b": np.ones(3, "u1")})
        a = r.take(timeout=5)["a"]
    assert seg.closed
    with pytest.raises(zdshm.ClosedError):
        r.take(timeout=0)
    assert a.tolist() == [0, 1, 2, 3, 4]         # still mapped and pinned
    del a
    gc.collect()
    assert "closed" in repr(seg)


def test_arrays_of_a_released_sample_refused(seg):
    w, r = seg.writer(), seg.reader()
    w.publish({"a": np.arange(3)})
    s = r.take(timeout=5)
    assert s.keys() == ("a",)
    s.release()
    for op in (lambda: s["a"], s.keys, s.arrays, lambda: "a" in s):
        with pytest.raises(zdshm.ClosedError):
            op()


def test_loan_arrays_exception_discards(seg):
    w, r = seg.writer(), seg.reader()
    with pytest.raises(RuntimeError, match="boom"):
        with w.loan_arrays({"a": ((4,), "u1"), "b": ((2,), "f8")}) as arrs:
            arrs["a"][:] = 1
            raise RuntimeError("boom")
    assert all(seg.slot_state(i) == "free" for i in range(seg.slot_count))
    assert r.try_take() is None
    assert not arrs["a"].flags.writeable


def test_loan_arrays_refuses_commit_while_a_view_lives(seg):
    w, r = seg.writer(), seg.reader()
    with pytest.raises(zdshm.ViewsAliveError, match="NOT published"):
        with w.loan_arrays({"a": ((4,), "u1"), "b": ((2,), "f8")}) as arrs:
            part = arrs["b"][1:]
    assert r.try_take() is None
    loaned = [i for i in range(seg.slot_count) if seg.slot_state(i) == "loaned"]
    assert len(loaned) == 1
    del part, arrs
    gc.collect()
    assert seg.slot_state(loaned[0]) == "free"
    assert r.try_take() is None


def test_loan_arrays_not_reentrant_and_reusable(seg):
    w, r = seg.writer(), seg.reader()
    cm = w.loan_arrays({"a": ((1,), "u1")})
    with cm as arrs:
        arrs["a"][0] = 5
        with pytest.raises(RuntimeError, match="reentrant"):
            cm.__enter__()
    with cm as arrs:
        arrs["a"][0] = 6
    assert [int(r.take(timeout=5)["a"][0]) for _ in range(2)] == [5, 6]
    gc.collect()


def test_no_pickle(seg):
    w, r = seg.writer(), seg.reader()
    cm = w.loan_arrays({"a": ((1,), "u1")})
    with pytest.raises(TypeError, match="loan_arrays"):
        pickle.dumps(cm)
    w.publish({"a": np.arange(2)})
    with r.take(timeout=5) as s:
        a = s["a"]
        part = a.base.obj if isinstance(a.base, memoryview) else a.base
        assert isinstance(part, zdshm.SamplePart)
        with pytest.raises(TypeError):
            pickle.dumps(part)
        del a, part


# --- bad input -------------------------------------------------------------------

BAD = [
    ({}, ValueError, "1..16"),
    ({1: np.zeros(2)}, TypeError, "str, got 1"),
    ({f"a{i}": np.zeros(1) for i in range(17)}, ValueError, "got 17"),
    ({"n" * 48: np.zeros(1)}, ValueError, "1..47"),
    ({"": np.zeros(1)}, ValueError, "1..47"),
    ({"a\0b": np.zeros(1)}, ValueError, "NUL"),
    ({"\udc80": np.zeros(1)}, ValueError, "UTF-8"),
    ({"a": np.zeros((4, 4))[:, ::2]}, ValueError, "'a'.*C-contiguous"),
    ({"a": np.zeros(2, "M8[s]")}, ValueError, "'a'"),
    ({"a": 3}, TypeError, "'a'.*buffer protocol"),
    ({"a": np.zeros((1,) * 7)}, ValueError, "'a'.*dimensions"),
]


@pytest.mark.parametrize("arrays,exc,match", BAD)
def test_publish_bad_input(seg, arrays, exc, match):
    w = seg.writer()
    with pytest.raises(exc, match=match):
        w.publish(arrays)
    assert all(seg.slot_state(i) == "free" for i in range(seg.slot_count))


def test_publish_not_a_dict(seg):
    with pytest.raises(TypeError, match="buffer protocol"):
        seg.writer().publish([np.zeros(2)])


LOAN_BAD = [
    ({}, ValueError, "1..16"),
    ([("a", ((1,), "u1"))], TypeError, "dict"),
    ({1: ((1,), "u1")}, TypeError, "str, got 1"),
    ({f"a{i}": ((1,), "u1") for i in range(17)}, ValueError, "got 17"),
    ({"n" * 48: ((1,), "u1")}, ValueError, "1..47"),
    ({"a": (1, "u1", 2)}, TypeError, "'a'.*\\(shape, dtype\\)"),
    ({"a": "u1"}, TypeError, "'a'"),
    ({"a": ((1,), "M8[s]")}, ValueError, "'a'"),
    ({"a": ((1,), "O")}, ValueError, "'a'"),
    ({"a": ((-1,), "u1")}, ValueError, "'a'.*shape"),
    ({"a": ((1.5,), "u1")}, TypeError, "'a'"),
    ({"a": ((1,) * 7, "u1")}, ValueError, "'a'.*dimensions"),
]


@pytest.mark.parametrize("arrays,exc,match", LOAN_BAD)
def test_loan_arrays_bad_input(seg, arrays, exc, match):
    w = seg.writer()
    with pytest.raises(exc, match=match):
        w.loan_arrays(arrays)
    assert all(seg.slot_state(i) == "free" for i in range(seg.slot_count))


# --- size classes ----------------------------------------------------------------

CLASSES = [(2, 256), (2, 1024), (1, 8192)]


def test_size_class_of_several_arrays(make_segment):
    seg = make_segment(None, None, classes=CLASSES)
    w, r = seg.writer(), seg.reader()
    # Two arrays: 256 directory bytes, 100 at 256, 100 at 384 -> 484: class 1.
    two = {"a": np.zeros(100, np.uint8), "b": np.ones(100, np.uint8)}
    cm = w.loan_arrays({k: (v.shape, v.dtype) for k, v in two.items()})
    assert cm.nbytes == 484
    w.publish(two)
    with cm as arrs:
        arrs["b"][:] = 1
    # One tiny array: 128 + 8 = 136 bytes: class 0.
    w.publish({"x": np.int64(1)})
    # 5000 + 2000 bytes with the directory: only class 2 holds it.
    w.publish({"a": np.zeros(5000, np.uint8), "b": np.zeros(2000, np.uint8)})
    classes = []
    for size in (484, 484, 136, 7312):       # 256 + 5000 -> 5312 + 2000
        with r.take(timeout=5) as s:
            classes.append(seg.slots()[s.slot]["class"])
            assert s.size == size
    assert classes == [1, 1, 0, 2]
    # Each fits alone, together they do not.
    too_big = {"a": np.zeros(5000, np.uint8), "b": np.zeros(4000, np.uint8)}
    with pytest.raises(zdshm.SampleTooLargeError, match="9"):
        w.publish(too_big)
    with pytest.raises(zdshm.SampleTooLargeError, match="largest slot capacity 8192"):
        w.loan_arrays({k: (v.shape, v.dtype) for k, v in too_big.items()})
    assert "loaned" not in [seg.slot_state(i) for i in range(seg.slot_count)]


# --- hostile directories ------------------------------------------------------------

def _corrupt(seg, patch):
    """Commits {"a": 8 x <i8, "b": 4 x u1} with `patch(bytearray of the
    directory)` written over the directory before the commit."""
    w = seg.writer()
    with w.loan_arrays({"a": ((8,), "<i8"), "b": ((4,), "u1")}) as arrs:
        arrs["a"][:] = np.arange(8)
        arrs["b"][:] = 7
        loan = arrs["a"].base
        assert isinstance(loan, zdshm.Loan)
        mv = memoryview(loan)
        d = bytearray(mv[:2 * ENTRY])
        patch(d)
        mv[:2 * ENTRY] = d
        mv.release()
        del loan


def _le(d, off, v):
    d[off:off + 8] = struct.pack("<Q", v)


HOSTILE = {
    "offset unaligned": (lambda d: _le(d, 64, 257), "aligned"),
    "offset beyond size": (lambda d: _le(d, ENTRY + 64, 1 << 40), "committed"),
    "offset wraps": (lambda d: _le(d, ENTRY + 64, (1 << 64) - 64), "committed"),
    "offset in directory": (lambda d: _le(d, 64, 128), "offset 128"),
    "overlap": (lambda d: _le(d, ENTRY + 64, 256), "offset 256"),
    "bytes mismatch": (lambda d: _le(d, 72, 65), "describe"),
    "huge bytes": (lambda d: _le(d, 72, (1 << 64) - 1), "describe"),
    "bad format": (lambda d: d.__setitem__(slice(4, 5), b"X"), "entry 0"),
    "bad magic": (lambda d: d.__setitem__(slice(0, 2), b"QQ"), "entry 0"),
    "huge shape": (lambda d: (_le(d, 16, 1 << 62), _le(d, 72, 1 << 62)), "entry 0"),
    "empty name": (lambda d: d.__setitem__(80, 0), "name"),
    "long name": (lambda d: d.__setitem__(80, 200), "name"),
    "name with NUL": (lambda d: d.__setitem__(slice(80, 83), b"\x02\x00a"), "name"),
    "name not padded": (lambda d: d.__setitem__(ENTRY - 1, 1), "padded"),
    "name not UTF-8": (lambda d: d.__setitem__(slice(81, 82), b"\xff"), "UTF-8"),
    "duplicate name": (lambda d: d.__setitem__(ENTRY + 81, ord("a")), "twice"),
}


@pytest.mark.parametrize("case", HOSTILE)
def test_hostile_directory(make_segment, case):
    seg = make_segment(2, 4096)
    r = seg.reader()
    patch, match = HOSTILE[case]
    _corrupt(seg, patch)
    with r.take(timeout=5) as s:
        for op in (s.keys, s.arrays, lambda: s["a"], lambda: "a" in s):
            with pytest.raises(zdshm.CorruptSegmentError, match=match):
                op()
        # the raw bytes stay readable
        raw = np.asarray(s)
        assert raw.dtype == np.uint8 and raw.shape == (s.size,)
        del raw


def test_untouched_directory_is_accepted(seg):
    # The control case of the hostile tests: the same path without a patch.
    _corrupt(seg, lambda d: None)
    with seg.reader(join_last=1).take(timeout=5) as s:
        assert s["a"].tolist() == list(range(8)) and s["b"].tolist() == [7] * 4


def _meta_patch(posix_factory, patch):
    seg = posix_factory(2, 4096)
    w, r = seg.writer(), seg.reader()
    w.publish({"a": np.arange(4, dtype="<i4"), "b": np.zeros(2, "u1")})
    meta = b"ZM\x01\x02\0\0\0\0" + struct.pack("<Q", 2 * ENTRY) + bytes(48)
    with open(f"/dev/shm/{seg.name}", "r+b") as f, \
            mmap.mmap(f.fileno(), 0) as m:
        at = m.find(meta)
        assert at >= 0 and m.find(meta, at + 1) < 0
        m[at:at + 64] = patch(bytearray(meta))
    return seg, r


META_HOSTILE = {
    "version": (lambda m: m[:2] + b"\x02" + m[3:], "version 2"),
    "zero arrays": (lambda m: m[:3] + b"\x00" + m[4:], "0 arrays"),
    "17 arrays": (lambda m: m[:3] + b"\x11" + m[4:], "17 arrays"),
    "more arrays than size": (lambda m: m[:3] + b"\x10" + m[4:8]
                              + struct.pack("<Q", 16 * ENTRY) + m[16:], "directory of 2048"),
    "directory bytes": (lambda m: m[:8] + struct.pack("<Q", 3 * ENTRY) + m[16:],
                        "directory of 384"),
    "reserved byte": (lambda m: m[:40] + b"\x01" + m[41:], "meta byte 40"),
}


@pytest.mark.parametrize("case", META_HOSTILE)
def test_hostile_meta_in_shared_memory(posix_factory, case):
    patch, match = META_HOSTILE[case]
    seg, r = _meta_patch(posix_factory, patch)
    with r.take(timeout=5) as s:
        with pytest.raises(zdshm.CorruptSegmentError, match=match):
            s.keys()
        with pytest.raises(zdshm.CorruptSegmentError, match=match):
            s["a"]
        assert s.tobytes()[:1] is not None


def test_meta_written_back_unchanged_is_accepted(posix_factory):
    # Control of the meta tests: the found meta, written back unchanged.
    seg, r = _meta_patch(posix_factory, bytes)
    with r.take(timeout=5) as s:
        assert s["a"].tolist() == [0, 1, 2, 3]


# --- cross-process --------------------------------------------------------------------

@pytest.mark.crossproc
@pytest.mark.timeout(240)
def test_crossproc_stream_of_samples(posix_factory):
    count = 2000
    ctx = mp.get_context("spawn")
    seg = posix_factory(8, 4096)
    results = ctx.Queue()
    ready = ctx.Event()
    reader = ctx.Process(target=kids.read_stream, args=(seg.name, count, ready, results))
    writer = ctx.Process(target=kids.write_stream, args=(seg.name, count, results))
    reader.start()
    try:
        assert ready.wait(120), "the reader did not start"
        writer.start()
        reports = [results.get(timeout=180) for _ in range(2)]
        for p in (writer, reader):
            p.join(60)
            assert p.exitcode == 0
    finally:
        for p in (reader, writer):
            if p.is_alive():
                p.kill()
                p.join()
    report = next(x for x in reports if "count" in x)
    assert report == {"count": count, "bad_keys": 0, "bad_content": 0, "bad_sn": 0,
                      "bad_align": 0, "bad_meta": 0}
    assert seg.info()["counters"]["commits"] == count


# --- properties ------------------------------------------------------------------------

NAMES = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"),
                min_size=1, max_size=11)   # at most 44 UTF-8 bytes
DTYPES = st.sampled_from(["u1", "i1", "<u2", "<i2", ">i4", "<u4", "<i8", "<f2", "<f4",
                          ">f8", "<c8", "?"])
SHAPES = st.lists(st.integers(0, 5), min_size=0, max_size=4).map(tuple)


@st.composite
def array_dicts(draw):
    names = draw(st.lists(NAMES, min_size=1, max_size=16, unique=True))
    out = {}
    for name in names:
        dt = np.dtype(draw(DTYPES))
        shape = draw(SHAPES)
        raw = draw(st.binary(min_size=dt.itemsize * int(np.prod(shape, dtype=np.int64)),
                             max_size=dt.itemsize * int(np.prod(shape, dtype=np.int64))))
        out[name] = np.frombuffer(raw, dtype=dt).reshape(shape).copy()
    return out


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(want=array_dicts(), loan=st.booleans())
def test_property_round_trip(seg, want, loan):
    w, r = seg.writer(overflow="reclaim"), seg.reader()
    try:
        if loan:
            with w.loan_arrays({k: (v.shape, v.dtype) for k, v in want.items()}) as arrs:
                for k, v in want.items():
                    arrs[k][...] = v
        else:
            w.publish(want)
        with r.take(timeout=5) as s:
            assert s.keys() == tuple(want)
            for k, v in want.items():
                a = s[k]
                assert a.dtype == v.dtype and a.shape == v.shape
                assert a.tobytes() == v.tobytes()      # bitwise (NaN-safe)
                assert addr(a) % 64 == 0
                del a
    finally:
        r.close()
        w.close()


# --- README ---------------------------------------------------------------------------

def test_readme_example_runs_verbatim():
    text = (pathlib.Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = text[text.index("\n## Several arrays in one sample\n"):]
    section = section[:section.index("\n## ", 1)]
    block = re.findall(r"```python\n(.*?)```", section, flags=re.S)[0]
    proc = subprocess.run([sys.executable, "-c", block], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["('image', 'label') (4, 6, 3) uint8 3",
                                        "1 1"]
