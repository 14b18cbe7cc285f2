"""Writer / Reader: policies, join, iteration, goodbye, stats, formats."""
from __future__ import annotations

import ctypes
import threading
import time

import numpy as np
import pytest

import zdshm


def test_publish_take_roundtrip(seg):
    w = seg.writer()
    r = seg.reader()
    sns = [w.publish(bytes([i]) * (i + 1)) for i in range(3)]
    assert sns == sorted(sns) and len(set(sns)) == 3
    for i, sn in enumerate(sns):
        s = r.take(timeout=1)
        assert s.sn == sn and bytes(s) == bytes([i]) * (i + 1)
        assert s.format == "B" and s.shape == (i + 1,)
        s.release()
    assert r.try_take() is None
    st = r.stats()
    assert st["taken"] == 3 and st["dropped"] == 0 and st["lag"] == 0
    assert st["last_sn"] == sns[-1]


def test_stats_before_first_take(seg):
    r = seg.reader()
    assert r.stats()["last_sn"] is None


def test_reader_joins_now_by_default(seg):
    w = seg.writer()
    w.publish(b"before")
    r = seg.reader()
    assert r.try_take() is None
    w.publish(b"after")
    s = r.take(timeout=1)
    assert bytes(s) == b"after"


def test_join_last(make_segment):
    seg = make_segment(slot_count=8)
    w = seg.writer()
    keeper = seg.reader()    # holds every sample (with no reader, slot 0 is reused)
    for i in range(5):
        w.publish(bytes([i]))
    r = seg.reader(join_last=2)
    got = []
    while (s := r.try_take()) is not None:
        got.append(bytes(s))
        s.release()
    assert got == [b"\x03", b"\x04"]
    keeper.close()


def test_two_readers_each_get_everything(seg):
    w = seg.writer(overflow="fail")
    ra, rb = seg.reader(), seg.reader()
    assert ra.index != rb.index
    for i in range(3):
        w.publish(bytes([i]))
    for r in (ra, rb):
        got = []
        for _ in range(3):
            s = r.take(timeout=1)
            got.append(bytes(s))
            s.release()
        assert got == [b"\x00", b"\x01", b"\x02"]


def test_overflow_fail(make_segment):
    seg = make_segment(slot_count=2)
    w = seg.writer(overflow="fail")
    r = seg.reader()
    w.publish(b"1")
    w.publish(b"2")
    before = seg.info()["counters"]
    with pytest.raises(zdshm.NoFreeSlotError):
        w.publish(b"3")
    with pytest.raises(zdshm.NoFreeSlotError):
        w.loan()
    assert seg.info()["counters"] == before
    s = r.take(timeout=1)
    s.release()
    w.publish(b"3")


def test_overflow_block_times_out(make_segment):
    seg = make_segment(slot_count=1)
    w = seg.writer(overflow="block", timeout=0.15)
    r = seg.reader()
    w.publish(b"1")
    t0 = time.monotonic()
    with pytest.raises(zdshm.WaitTimeoutError) as ei:
        w.loan()
    assert 0.12 <= time.monotonic() - t0 < 1.0
    assert isinstance(ei.value, TimeoutError)
    with pytest.raises(zdshm.WaitTimeoutError):
        w.loan(timeout=0)
    assert r.take(timeout=1).tobytes() == b"1"


def test_overflow_block_woken_by_release(make_segment):
    seg = make_segment(slot_count=1)
    w = seg.writer(overflow="block")
    r = seg.reader()
    w.publish(b"1")
    s = r.take(timeout=1)

    def release_later():
        time.sleep(0.1)
        s.release()

    t = threading.Thread(target=release_later)
    t.start()
    t0 = time.monotonic()
    loan = w.loan(timeout=5)
    t.join()
    assert time.monotonic() - t0 < 2.0
    loan.discard()


def test_overflow_reclaim_counts_drops(make_segment):
    seg = make_segment(slot_count=2)
    w = seg.writer(overflow="reclaim")
    r = seg.reader()
    for i in range(5):
        w.publish(bytes([i]))
    got = []
    while (s := r.try_take()) is not None:
        got.append(bytes(s)[0])
        s.release()
    assert got == [3, 4]
    st = r.stats()
    assert st["dropped"] == 3 and st["taken"] == 2
    assert seg.info()["counters"]["reclaims"] == 3


def test_reclaim_never_takes_pinned_slot(make_segment):
    seg = make_segment(slot_count=2)
    w = seg.writer(overflow="reclaim", timeout=0.1)
    r = seg.reader()
    w.publish(b"a")
    pinned = r.take(timeout=1)      # slot of "a" is pinned
    w.publish(b"b")
    w.publish(b"c")                  # reclaims "b", never "a"
    assert bytes(pinned) == b"a"
    loan = w.loan()                  # reclaims "c"
    assert loan.slot != pinned.slot
    with pytest.raises(zdshm.WaitTimeoutError):
        w.loan()                     # one loaned, one pinned: waits like block
    loan.discard()
    pinned.release()


def test_take_timeout(seg):
    r = seg.reader()
    t0 = time.monotonic()
    with pytest.raises(zdshm.WaitTimeoutError):
        r.take(timeout=0.2)
    assert 0.18 <= time.monotonic() - t0 < 1.0
    with pytest.raises(zdshm.WaitTimeoutError):
        r.take(timeout=0)


def test_take_woken_by_other_thread(seg):
    w = seg.writer()
    r = seg.reader()
    t = threading.Timer(0.1, lambda: w.publish(b"late"))
    t.start()
    try:
        s = r.take(timeout=5)
    finally:
        t.join()
    assert bytes(s) == b"late"


def test_reader_close_from_other_thread_ends_iteration(seg):
    r = seg.reader()
    t = threading.Timer(0.1, r.close)
    t.start()
    t0 = time.monotonic()
    assert list(r) == []
    t.join()
    assert time.monotonic() - t0 < 1.0
    assert r.closed
    with pytest.raises(zdshm.ClosedError):
        r.take(timeout=0)
    with pytest.raises(zdshm.ClosedError):
        r.try_take()


def test_closed_reader_releases_its_bit(seg):
    w = seg.writer(overflow="fail")
    r = seg.reader()
    for _ in range(seg.slot_count):
        w.publish(b"x")
    with pytest.raises(zdshm.NoFreeSlotError):
        w.publish(b"x")
    r.close()
    assert seg.active_mask == 0
    w.publish(b"x")      # nobody needs the old samples any more


def test_iteration_ends_at_goodbye(posix_factory):
    creator = posix_factory()
    other = posix_factory.attach(creator)
    r = other.reader()
    w = creator.writer()
    for i in range(3):
        w.publish(bytes([i]))
    creator.close()
    got = []
    for s in r:
        got.append(bytes(s))
        s.release()
    assert got == [b"\x00", b"\x01", b"\x02"]
    with pytest.raises(zdshm.SegmentClosedError):
        r.take(timeout=0)


def test_writer_close(seg):
    w = seg.writer()
    w.close()
    assert w.closed
    with pytest.raises(zdshm.ClosedError):
        w.loan()
    with pytest.raises(zdshm.ClosedError):
        w.publish(b"x")


def test_writer_properties(seg):
    w = seg.writer("reclaim", timeout=1.5, spin=0.001)
    assert w.overflow == "reclaim" and w.timeout == 1.5 and w.spin == 0.001
    assert w.segment is seg
    assert seg.writer().timeout is None


def test_reader_context_manager(seg):
    with seg.reader() as r:
        assert seg.active_mask == 1 << r.index
    assert r.closed and seg.active_mask == 0


def test_loan_context_manager(seg):
    w = seg.writer()
    r = seg.reader()
    with w.loan() as loan:
        memoryview(loan)[:2] = b"ok"
        loan.set_format("B", (2,))
    assert not loan.live and loan.sn is not None
    with pytest.raises(RuntimeError):
        with w.loan() as loan2:
            raise RuntimeError("boom")
    assert not loan2.live and seg.slot_state(loan2.slot) == "free"
    s = r.take(timeout=1)
    assert bytes(s) == b"ok"
    assert r.try_take() is None


def test_sample_context_manager(seg):
    w = seg.writer()
    r = seg.reader()
    w.publish(b"abc")
    with r.take(timeout=1) as s:
        assert bytes(s) == b"abc"
    assert s.released


PUBLISH_ARRAYS = [
    np.arange(12, dtype=np.uint8).reshape(3, 4),
    np.arange(24, dtype=np.float64).reshape(2, 3, 4),
    np.array([True, False, True]),
    np.arange(6, dtype=np.int16).reshape(3, 2),
    np.arange(4, dtype=">i4"),
    np.arange(4, dtype="<u8"),
    np.array([1 + 2j, 3 - 4j], dtype=np.complex64),
    np.array([1 + 2j], dtype=np.complex128),
    np.array(3.5, dtype=np.float32),            # 0-d
    np.zeros((0, 3), dtype=np.int32),           # empty
    np.arange(6, dtype=np.float16),
    np.ones((1, 1, 1, 1, 1, 2), dtype=np.int8),  # 6-d
]


@pytest.mark.parametrize("arr", PUBLISH_ARRAYS, ids=lambda a: f"{a.dtype.str}{a.shape}")
def test_publish_keeps_dtype_and_shape(make_segment, arr):
    seg = make_segment(slot_capacity=1024)
    w = seg.writer()
    r = seg.reader()
    w.publish(arr)
    s = r.take(timeout=1)
    out = np.asarray(s)
    assert out.dtype == arr.dtype and out.shape == arr.shape
    np.testing.assert_array_equal(out, arr)
    assert not out.flags.writeable
    mv = memoryview(s)
    assert mv.format == memoryview(arr).format and mv.shape == arr.shape
    assert mv.readonly
    del out, mv


def test_publish_bytes_like(seg):
    w, r = seg.writer(), seg.reader()
    w.publish(bytearray(b"ba"))
    w.publish(memoryview(b"mv"))
    assert [r.take(1).tobytes() for _ in range(2)] == [b"ba", b"mv"]


def test_set_format_roundtrip(seg):
    r = seg.reader()
    loan = seg.writer().loan()
    loan.set_format("<h", (2, 3))
    with memoryview(loan) as mv:
        mv[:12] = np.arange(6, dtype="<i2").tobytes()
    assert loan.commit() == loan.sn
    s = r.take(timeout=1)
    assert s.format == "<h" and s.shape == (2, 3) and s.size == 12
    np.testing.assert_array_equal(np.asarray(s), np.arange(6, dtype="<i2").reshape(2, 3))


def test_set_format_canonical_complex(seg):
    r = seg.reader()
    loan = seg.reserve()
    loan.set_format("D", (1,))
    loan.commit()
    s = r.take(timeout=1)
    assert s.format == "Zd" and np.asarray(s).dtype == np.complex128


def test_commit_nbytes_must_match_format(seg):
    loan = seg.reserve()
    loan.set_format("d", (4,))
    with pytest.raises(ValueError, match="does not match"):
        loan.commit(31)
    assert loan.live
    assert loan.commit(32) >= 0


def test_raw_commit_clears_old_format(make_segment):
    seg = make_segment(slot_count=1)
    w = seg.writer()
    r = seg.reader()
    w.publish(np.zeros((2, 2), np.float64))
    r.take(1).release()
    loan = w.loan()
    assert loan.slot == 0
    loan.commit(5)                   # no set_format: the old "d" meta must not apply
    s = r.take(timeout=1)
    assert s.format == "B" and s.shape == (5,)


def _meta_address(loan) -> int:
    return loan.address - zdshm.SLOT_META_SIZE   # slot header: control, meta, data


CORRUPTIONS = [
    ("magic", 0, b"XX"),
    ("ndim", 2, b"\x07"),
    ("fmt-len-0", 3, b"\x00"),
    ("fmt-len-big", 3, b"\x0c"),
    ("fmt-char", 4, b"Q"),            # 'd' -> 'Q': same size, but not what was set
    ("fmt-garbage", 4, b"\xff"),
    ("pad", 6, b"x"),
    ("shape", 16, (2 ** 63).to_bytes(8, "little")),
    ("shape-unused", 40, b"\x01"),
    ("shape-mismatch", 16, (5).to_bytes(8, "little")),
]


@pytest.mark.parametrize("what,offset,data", CORRUPTIONS, ids=[c[0] for c in CORRUPTIONS])
def test_corrupt_meta_falls_back_to_bytes(seg, what, offset, data):
    r = seg.reader()
    loan = seg.reserve()
    loan.set_format("d", (4,))
    with memoryview(loan) as mv:
        mv[:32] = np.arange(4, dtype="d").tobytes()
    ctypes.memmove(_meta_address(loan) + offset, data, len(data))
    loan.commit()
    s = r.take(timeout=1)
    if what == "fmt-char":
        # 'Q' is a valid 8-byte format: the meta stays valid, with the new meaning
        assert s.format == "Q"
        return
    assert s.format == "B" and s.shape == (32,) and len(memoryview(s)) == 32
    assert np.asarray(s).dtype == np.uint8


def test_sample_buffer_flags(seg):
    w, r = seg.writer(), seg.reader()
    w.publish(np.arange(6, dtype=np.int32).reshape(2, 3))
    s = r.take(timeout=1)
    with pytest.raises(ValueError):
        np.frombuffer(s, dtype=np.int32).setflags(write=True)
    raw = np.frombuffer(s, dtype=np.uint8)     # simple 1-D request
    assert raw.nbytes == 24
    a = np.asarray(s)
    with pytest.raises(ValueError):
        a.flags.writeable = True
    with pytest.raises((BufferError, TypeError)):
        memoryview(s).cast("B")[0:1] = b"x"


def test_reader_close_with_held_sample_takes_effect_after_release(make_segment):
    seg = make_segment(slot_count=2)
    w = seg.writer(overflow="fail")
    r = seg.reader()
    w.publish(b"a")
    w.publish(b"b")
    s = r.take(timeout=1)
    r.close()
    assert r.closed
    assert bytes(s) == b"a"                 # the sample stays valid
    s.release()
    assert seg.active_mask == 0             # the registration is gone
    w.publish(b"c")
    w.publish(b"d")                          # both slots are free again


# Pinned: the core disconnects at once on close, even while a sample the
# reader took is still held (its index is freed when the sample goes).
def test_reader_close_with_held_sample(make_segment):
    seg = make_segment(slot_count=2)
    w = seg.writer(overflow="fail")
    r = seg.reader()
    w.publish(b"a")
    w.publish(b"b")
    s = r.take(timeout=1)
    r.close()
    assert seg.active_mask == 0             # header contract: unregistered at once
    w.publish(b"c")                          # "b" is no longer needed by anyone
    assert bytes(s) == b"a"
    s.release()


def test_wait_for_readers_wakes_on_registration(seg):
    w = seg.writer()
    readers = []
    timer = threading.Timer(0.1, lambda: readers.append(seg.reader()))
    t0 = time.monotonic()
    timer.start()
    try:
        assert w.wait_for_readers(1, timeout=10) == 1
        assert 0.05 < time.monotonic() - t0 < 5
        timer.join()    # the registration is done; seg.reader() may not have returned yet
        assert len(readers) == 1
        # Already enough: returns at once with the count.
        assert w.wait_for_readers(1, timeout=0) == 1
        with pytest.raises(zdshm.WaitTimeoutError):
            w.wait_for_readers(2, timeout=0.05)
    finally:
        timer.join()
        for r in readers:
            r.close()


@pytest.mark.parametrize("n, exc", [(-1, ValueError), (zdshm.READER_MAX + 1, ValueError),
                                    ("2", TypeError), (True, TypeError), (2**70, OverflowError)])
def test_wait_for_readers_bad_n(seg, n, exc):
    with pytest.raises(exc, match="n"):
        seg.writer().wait_for_readers(n, timeout=0)


def test_wait_for_readers_bad_timeout(seg):
    with pytest.raises(ValueError, match="timeout"):
        seg.writer().wait_for_readers(1, timeout=-1)


def test_timeout_ellipsis_means_the_writers(make_segment):
    seg = make_segment(slot_count=1, slot_capacity=64)
    r = seg.reader()
    w = seg.writer(overflow="block", timeout=0.05)
    w.publish(b"held", timeout=...)
    for call in (lambda: w.loan(timeout=...), lambda: w.publish(b"x", timeout=...),
                 lambda: w.loan_array(4, "u1", timeout=...).__enter__()):
        t0 = time.monotonic()
        with pytest.raises(zdshm.WaitTimeoutError):
            call()
        assert time.monotonic() - t0 < 5
    r.close()
