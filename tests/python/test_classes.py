"""Size classes through the Python API: classes=[(slot_count, slot_capacity), ...].

The segment of most tests has three classes: 2 x 64 B (slots 0-1), 2 x 256 B
(slots 2-3) and 1 x 1024 B (slot 4).  A loan of n bytes lands in the
smallest class that holds n and has a loanable slot, else the next larger
one, never a smaller one; the overflow policies apply to the classes that
fit; one sequence-number space orders them all.
"""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import zdshm

from zdpy_support import own_prefix, shm_listing, unique_name

CLASSES = [(2, 64), (2, 256), (1, 1024)]


@pytest.fixture
def cseg(make_segment):
    return make_segment(None, None, classes=CLASSES)


def classes_of(seg):
    return [seg.slots()[i]["class"] for i in range(seg.slot_count)]


def test_geometry_and_info(cseg):
    assert cseg.slot_count == 5
    assert cseg.slot_capacity == 1024
    assert [cseg.slot_capacity_of(i) for i in range(5)] == [64, 64, 256, 256, 1024]
    assert classes_of(cseg) == [0, 0, 1, 1, 2]
    with pytest.raises(ValueError, match="5"):
        cseg.slot_capacity_of(5)
    info = cseg.info()
    assert [(c["slot_count"], c["slot_capacity"]) for c in info["classes"]] == CLASSES
    assert [c["first_slot"] for c in info["classes"]] == [0, 2, 4]
    assert [c["slot_stride"] for c in info["classes"]] == [192, 384, 1152]
    assert info["classes"][1]["slots_offset"] == info["classes"][0]["slots_offset"] + 2 * 192
    assert [c["free"] for c in info["classes"]] == [2, 2, 1]
    assert info["layout_version"] == zdshm.LAYOUT_VERSION
    assert zdshm.CLASS_MAX == 16


def test_one_class_forms_agree(make_segment):
    a = make_segment(4, 64)
    b = make_segment(None, None, classes=[(4, 64)])
    ia, ib = a.info(), b.info()
    for key in ("slot_count", "slot_capacity", "slot_stride", "total_size", "classes"):
        assert ia[key] == ib[key], key
    assert ia["classes"] == [{"slot_count": 4, "first_slot": 0, "slot_capacity": 64,
                              "slot_stride": 192, "slots_offset": ia["slots_offset"],
                              "free": 4, "loaned": 0, "committed": 0}]


def test_smallest_fitting_class_with_a_free_slot(cseg):
    w = cseg.writer(overflow="fail")
    loans = [w.loan(nbytes=n) for n in (10, 64, 1, 65, 0)]
    assert [l.slot for l in loans] == [0, 1, 2, 3, 4]
    assert [l.capacity for l in loans] == [64, 64, 256, 256, 1024]
    with pytest.raises(zdshm.NoFreeSlotError):
        w.loan(nbytes=1)
    assert w.try_loan(nbytes=1) is None
    # a free slot of a smaller class is never taken for a larger loan
    loans[0].discard()
    loans[1].discard()
    with pytest.raises(zdshm.NoFreeSlotError):
        w.loan(nbytes=65)
    assert w.try_loan(nbytes=200) is None
    with pytest.raises(zdshm.NoFreeSlotError):
        cseg.reserve(nbytes=100)
    small = [w.try_loan(nbytes=64), cseg.reserve(nbytes=3)]
    assert [l.slot for l in small] == [0, 1]
    # a loan without a size is one of the largest class
    loans[4].discard()
    big = w.loan()
    assert (big.slot, big.capacity) == (4, 1024)
    counts = {c: [r["state"] for r in cseg.slots() if r["class"] == c] for c in range(3)}
    assert counts == {0: ["loaned", "loaned"], 1: ["loaned", "loaned"], 2: ["loaned"]}


def test_publish_and_loan_array_pick_the_class(cseg):
    w = cseg.writer(overflow="fail")
    assert w.publish(b"x" * 60) == 0
    assert w.publish(np.zeros(50, np.float32)) == 1           # 200 B: class 1
    assert w.publish(np.zeros((2, 3), np.uint8)) == 2          # 6 B: class 0
    with w.loan_array((100,), np.float64) as frame:            # 800 B: class 2
        frame[...] = 3.0
    rows = cseg.slots()
    assert [(r["slot"], r["sn"], r["size"]) for r in rows if r["state"] == "committed"] == \
        [(0, 0, 60), (1, 2, 6), (2, 1, 200), (4, 3, 800)]
    r = cseg.reader(join_last=4)
    got = [r.take(timeout=1) for _ in range(4)]
    assert [s.sn for s in got] == [0, 1, 2, 3]
    assert [s.slot for s in got] == [0, 2, 1, 4]
    assert np.asarray(got[3]).tolist() == [3.0] * 100
    assert np.asarray(got[1]).dtype == np.float32
    for s in got:
        s.release()


def test_too_large_names_size_and_largest_capacity(cseg):
    w = cseg.writer(overflow="block")
    before = cseg.slots()
    for call in (lambda: w.loan(nbytes=1025),
                 lambda: w.loan(timeout=None, nbytes=10 ** 9),
                 lambda: w.try_loan(nbytes=1025),
                 lambda: cseg.reserve(nbytes=1025)):
        with pytest.raises(zdshm.SampleTooLargeError) as e:
            call()
        assert "1024" in str(e.value)
        assert "1025" in str(e.value) or str(10 ** 9) in str(e.value)
    with pytest.raises(zdshm.SampleTooLargeError, match=r"5000 bytes.*largest slot capacity 1024"):
        w.publish(b"z" * 5000)
    with pytest.raises(zdshm.SampleTooLargeError, match="1024"):
        with w.loan_array((2000,), np.uint8):
            pass
    assert cseg.slots() == before
    assert cseg.info()["counters"]["loans"] == 0
    for bad in (-1, 1.5, "10", True):
        with pytest.raises((TypeError, ValueError), match=repr(bad).strip("'")):
            w.loan(nbytes=bad)


def test_one_sn_order_across_classes(cseg):
    r = cseg.reader()
    w = cseg.writer(overflow="fail")
    sizes = [10, 900, 100, 64, 65, 1024, 1, 255] * 3
    expect = []
    for i in range(0, len(sizes), 4):
        for n in sizes[i:i + 4]:
            sn = w.publish(bytes([len(expect) % 256]) * n)
            assert sn == len(expect)
            expect.append(n)
        for k in range(4):
            s = r.take(timeout=1)
            assert s.sn == i + k
            assert s.size == expect[i + k]
            assert cseg.slot_capacity_of(s.slot) >= s.size
            assert s.tobytes() == bytes([(i + k) % 256]) * s.size
            s.release()
    assert r.try_take() is None
    st = r.stats()
    assert st["taken"] == len(sizes) and st["dropped"] == 0


def test_overflow_policies_across_classes(cseg):
    r = cseg.reader()
    fail = cseg.writer(overflow="fail")
    assert fail.publish(b"a" * 10) == 0        # slot 0
    assert fail.publish(b"b" * 100) == 1       # slot 2
    assert fail.publish(b"c" * 100) == 2       # slot 3
    assert fail.publish(b"d" * 1000) == 3      # slot 4
    # class 0 has a free slot, but a 100-byte loan needs class 1 or 2
    with pytest.raises(zdshm.NoFreeSlotError):
        fail.loan(nbytes=100)
    with pytest.raises(zdshm.WaitTimeoutError):
        cseg.writer(overflow="block").loan(timeout=0.1, nbytes=100)
    small = fail.loan(nbytes=10)               # small loans still fit
    assert small.slot == 1
    small.discard()
    # reclaim: the oldest sample of a class that fits (sn 1), not sn 0
    rec = cseg.writer(overflow="reclaim")
    l = rec.loan(nbytes=100)
    assert l.slot == 2
    assert r.stats()["dropped"] == 1
    l.commit(5)                                # sn 4
    l2 = rec.loan(nbytes=300)                  # class 2 only: sn 3
    assert l2.slot == 4
    assert r.stats()["dropped"] == 2
    l2.discard()
    assert [s.sn for s in iter(r.try_take, None)] == [0, 2, 4]


def test_block_waits_for_any_class_that_fits(cseg):
    import threading

    r = cseg.reader()
    w = cseg.writer(overflow="block")
    w.publish(b"x" * 1000)                     # sn 0, class 2
    w.publish(b"y" * 100)                      # sn 1, class 1
    w.publish(b"z" * 100)                      # sn 2, class 1

    def take_one():
        s = r.take(timeout=5)
        s.release()

    t = threading.Timer(0.1, take_one)
    t.start()
    loan = w.loan(timeout=10, nbytes=65)
    t.join()
    assert loan.slot == 4                      # the class-2 sample the reader let go
    assert r.stats()["dropped"] == 0
    loan.discard()


def test_slots_rows(cseg):
    r = cseg.reader()
    w = cseg.writer(overflow="fail")
    w.publish(b"q" * 100)
    held = w.loan(nbytes=5)
    s = r.take(timeout=1)
    rows = cseg.slots()
    assert len(rows) == 5
    assert rows[2] == {"slot": 2, "class": 1, "capacity": 256, "state": "committed",
                       "sn": 0, "size": 100, "read_by": (r.index,),
                       "pinned_by_readers": (r.index,), "pinned_by_handles": (),
                       "loaned_by": None}
    assert rows[0]["state"] == "loaned" and rows[0]["sn"] is None
    assert isinstance(rows[0]["loaned_by"], int)
    assert rows[4]["state"] == "free" and rows[4]["class"] == 2
    s.release()
    held.discard()
    assert cseg.slots()[2]["pinned_by_readers"] == ()
    info = cseg.info()
    assert [(c["free"], c["loaned"], c["committed"]) for c in info["classes"]] == \
        [(2, 0, 0), (1, 0, 1), (1, 0, 0)]


def test_describe_and_cli_show_classes(posix_factory):
    seg = posix_factory(None, None, classes=CLASSES)
    w = seg.writer(overflow="fail")
    w.publish(b"1" * 10)
    w.publish(b"2" * 500)
    loan = w.loan(nbytes=100)
    d = zdshm.describe(seg.name)
    assert [(c["slot_count"], c["slot_capacity"]) for c in d["classes"]] == CLASSES
    assert [(c["free"], c["loaned"], c["committed"]) for c in d["classes"]] == \
        [(1, 0, 1), (1, 1, 0), (0, 0, 1)]
    out = subprocess.run([sys.executable, "-m", "zdshm", "describe", seg.name],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    shown = json.loads(out.stdout)
    assert shown["classes"] == d["classes"]
    other = zdshm.PosixSegment.attach(seg.name)
    try:
        assert [other.slot_capacity_of(i) for i in range(5)] == [64, 64, 256, 256, 1024]
        assert other.info()["classes"] == seg.info()["classes"]
        other_loan = other.writer(overflow="fail").loan(nbytes=200)
        assert other_loan.slot == 3
        other_loan.discard()
    finally:
        other.close()
    loan.discard()


def test_anonymous_segment_classes():
    with zdshm.AnonymousSegment(classes=CLASSES) as seg:
        with zdshm.AnonymousSegment.attach_fd(seg.fileno()) as other:
            assert other.info()["classes"] == seg.info()["classes"]
            assert other.writer().publish(b"k" * 200) == 0
        assert seg.slots()[2]["sn"] == 0


# --- bad arguments: named, before any system call ---------------------------

BAD = [
    ({"classes": {64: 2}}, TypeError, "classes must be a list"),
    ({"classes": 4}, TypeError, "got 4"),
    ({"classes": "ab"}, TypeError, "'ab'"),
    ({"classes": (c for c in CLASSES)}, TypeError, "generator"),
    ({"classes": []}, ValueError, "got 0"),
    ({"classes": [(2, 64)] * 0 + [(1, 8 << i) for i in range(17)]}, ValueError, "got 17"),
    ({"classes": [(2,)]}, TypeError, r"classes\[0\].*\(2,\)"),
    ({"classes": [(2, 64, 1)]}, TypeError, r"\(2, 64, 1\)"),
    ({"classes": [(2, 64), 5]}, TypeError, r"classes\[1\].*5"),
    ({"classes": [(0, 64)]}, ValueError, "slot_count must be an int in 1..1048576, got 0"),
    ({"classes": [(2, 0)]}, ValueError, "slot_capacity must be an int in 1..1099511627776, got 0"),
    ({"classes": [(-1, 64)]}, ValueError, "-1"),
    ({"classes": [(2, -64)]}, ValueError, "-64"),
    ({"classes": [(True, 64)]}, TypeError, "True"),
    ({"classes": [(2, False)]}, TypeError, "False"),
    ({"classes": [(2, 64.0)]}, TypeError, "64.0"),
    ({"classes": [(2, "64")]}, TypeError, "'64'"),
    ({"classes": [(2, 2 ** 40 + 1)]}, ValueError, str(2 ** 40 + 1)),
    ({"classes": [(2 ** 20, 8), (1, 16)]}, ValueError, "1048577 slots"),
    ({"classes": [(2, 256), (2, 64)]}, ValueError, r"classes\[1\] has 64 after 256"),
    ({"classes": [(2, 64), (3, 64)]}, ValueError, r"classes\[1\] has 64 after 64"),
    ({"classes": [(2, 64)], "slot_count": 2, "slot_capacity": 64}, TypeError, "not both"),
    ({"classes": [(2, 64)], "slot_count": 2}, TypeError, "not both"),
    ({}, TypeError, "slot_count=None, slot_capacity=None"),
    ({"slot_count": 2}, TypeError, "slot_capacity=None"),
]


@pytest.mark.parametrize("kind", ["memory", "anonymous", "posix"])
@pytest.mark.parametrize("kw,exc,msg", BAD, ids=[str(i) for i in range(len(BAD))])
def test_bad_classes_arguments(kind, kw, exc, msg):
    before = shm_listing()
    name = unique_name("badcls")
    kw = dict(kw)
    count, cap = kw.pop("slot_count", None), kw.pop("slot_capacity", None)
    with pytest.raises(exc, match=msg):
        if kind == "memory":
            zdshm.MemorySegment(count, cap, **kw)
        elif kind == "anonymous":
            zdshm.AnonymousSegment(count, cap, **kw)
        else:
            zdshm.PosixSegment.create(name, count, cap, **kw)
    # (entries of other processes may come and go meanwhile)
    assert {n for n in shm_listing() - before if n.startswith(own_prefix())} == set()
    with pytest.raises(zdshm.SegmentNotFoundError):
        zdshm.describe(name)


def test_sixteen_classes(make_segment):
    classes = [(1 + i, 8 << i) for i in range(16)]
    seg = make_segment(None, None, classes=classes)
    assert seg.slot_count == sum(c for c, _ in classes)
    w = seg.writer(overflow="fail")
    for i, (_, cap) in enumerate(classes):
        loan = w.loan(nbytes=cap)
        assert seg.slots()[loan.slot]["class"] == i
        assert loan.capacity == cap
        loan.discard()


def test_aloan_takes_nbytes(cseg):
    import asyncio

    r = cseg.reader()                          # keeps the samples unread
    w = cseg.writer(overflow="block")
    w.publish(b"x" * 100)                      # slot 2
    w.publish(b"x" * 100)                      # slot 3

    async def go():
        return await w.aloan(timeout=1, nbytes=65)

    loan = asyncio.run(go())
    assert (loan.slot, loan.capacity) == (4, 1024)
    loan.discard()
    assert r.stats()["dropped"] == 0


def test_loan_array_of_an_empty_shape_takes_a_class_its_meta_fits(cseg):
    # (0, 40) float64 has no bytes, but its meta bounds 40 * 8 = 320 bytes:
    # the loan is of the smallest class that holds 320, so the reader sees
    # the shape, not raw bytes.
    w, r = cseg.writer(overflow="fail"), cseg.reader()
    with w.loan_array((0, 40), np.float64) as frame:
        loan = frame.base
        assert loan.capacity >= 320
    with r.take(timeout=1) as s:
        assert (s.format, s.shape, s.size) == ("d", (0, 40), 0)
    del frame, loan


def test_repr_shows_the_classes(make_segment):
    seg = make_segment(None, None, classes=[(256, 4096), (32, 262144)])
    text = repr(seg)
    assert "classes=[(256, 4096), (32, 262144)] open>" in text, text
    assert "slots=" not in text
    assert "slots=4x64 open>" in repr(make_segment(4, 64))
    # one class given as a table: the one-class form
    assert "slots=3x128 open>" in repr(make_segment(None, None, classes=[(3, 128)]))
    seg.close()
    assert "classes=[(256, 4096), (32, 262144)] closed>" in repr(seg)


# --- a sample's meta is bounded by its own slot's capacity ---------------------------

SLOT_HEADER_SIZE, SLOT_META_OFFSET = 128, 64     # csrc/core/layout.h


def _meta(fmt, shape):
    """The 64 meta bytes of (fmt, shape) as csrc/ext/ext.h lays them out."""
    dims = list(shape) + [0] * (6 - len(shape))
    return (b"ZA" + bytes([len(shape), len(fmt)]) + fmt.encode().ljust(12, b"\0")
            + b"".join(d.to_bytes(8, "little") for d in dims))


def _committed_with_meta(seg, nbytes, meta):
    """Commits an empty sample in a slot of the smallest class holding
    nbytes, then writes `meta` over its meta area (a peer's bytes, not
    set_format); returns the slot."""
    import ctypes

    loan = seg.reserve(nbytes=nbytes)
    slot, address = loan.slot, loan.address
    loan.commit(0)
    ctypes.memmove(address - SLOT_HEADER_SIZE + SLOT_META_OFFSET, meta, 64)
    return slot


def test_meta_bounded_by_the_slots_own_capacity(make_segment):
    # (0, 100) float64: no bytes, but its meta bounds 800 bytes.  That fits
    # the 1024-byte class, not a 64- or 256-byte slot: there the sample is
    # raw bytes, as in a one-class segment of that capacity.
    cseg = make_segment(None, None, classes=CLASSES)
    meta = _meta("d", (0, 100))
    big = _committed_with_meta(cseg, 1024, meta)
    small = _committed_with_meta(cseg, 0, meta)
    middle = _committed_with_meta(cseg, 256, meta)
    assert [cseg.slot_capacity_of(i) for i in (big, small, middle)] == [1024, 64, 256]
    # the big slot first: its decoded layout must not be reused for the others
    with cseg.read(big) as s:
        assert (s.format, s.shape, s.size) == ("d", (0, 100), 0)
    for slot in (small, middle):
        with cseg.read(slot) as s:
            assert (s.format, s.shape, s.size) == ("B", (0,), 0), slot
            assert np.asarray(s).shape == (0,)
    for cap in (64, 256):
        one = make_segment(1, cap)
        with one.read(_committed_with_meta(one, 0, meta)) as s:
            assert (s.format, s.shape) == ("B", (0,))


def test_empty_arrays_take_a_class_their_meta_fits(make_segment):
    # publish() of an empty array and of a dict holding one: the loan is of
    # a class whose capacity holds the meta's bound, so the reader sees the
    # shape (a 0-byte sample would otherwise land in the 64-byte class).
    cseg = make_segment(None, None, classes=CLASSES)
    w, r = cseg.writer(overflow="fail"), cseg.reader()
    w.publish(np.empty((0, 100), np.float64))
    with r.take(timeout=1) as s:
        assert cseg.slot_capacity_of(s.slot) == 1024
        assert (s.format, s.shape, s.size) == ("d", (0, 100), 0)
    w.publish({"a": np.empty((0, 100), np.float64), "b": np.int8(1)})
    with r.take(timeout=1) as s:
        assert cseg.slot_capacity_of(s.slot) == 1024
        assert s["a"].shape == (0, 100) and s["b"].tolist() == 1


def test_directory_entry_bounded_by_the_slots_own_capacity(make_segment):
    # One empty array (0, 10) <f8 (bound 80) in a directory of 128 bytes:
    # a 256-byte slot.  Its entry rewritten to (0, 100) (bound 800: within
    # the largest class, not this slot) is refused as a corrupt directory.
    cseg = make_segment(None, None, classes=CLASSES)
    w, r = cseg.writer(overflow="fail"), cseg.reader()
    for dims in ((0, 10), (0, 100)):
        with w.loan_arrays({"a": ((0, 10), "<f8")}) as arrs:
            loan = arrs["a"].base
            assert loan.capacity == 256
            with memoryview(loan) as mv:
                mv[24:32] = dims[1].to_bytes(8, "little")    # the entry's shape[1]
            del loan
    with r.take(timeout=1) as s:
        assert s["a"].shape == (0, 10)
    with r.take(timeout=1) as s:
        with pytest.raises(zdshm.CorruptSegmentError, match="entry 0"):
            s.keys()
        assert np.asarray(s).shape == (s.size,)
