"""The low-level slot API (seed parity), on both backends."""
from __future__ import annotations

import os
import stat
import threading
import time

import pytest

import zdshm

from zdpy_support import unique_name


def commit_bytes(seg, data: bytes, mask: int = 0) -> tuple[int, int]:
    loan = seg.reserve(mask)
    with memoryview(loan) as mv:
        mv[:len(data)] = data
    slot = loan.slot
    return slot, loan.commit(len(data))


def test_geometry(make_segment):
    seg = make_segment(slot_count=5, slot_capacity=1000)
    assert seg.slot_count == 5
    assert seg.slot_capacity == 1000
    assert seg.slot_total_size >= 1000 + 128
    assert seg.slot_total_size % 64 == 0
    assert seg.total_size >= 5 * seg.slot_total_size
    assert seg.type_hash is None
    assert seg.backend == make_segment.backend
    assert seg.closed is False
    info = seg.info()
    assert info["slot_stride"] == seg.slot_total_size
    assert info["total_size"] == seg.total_size
    assert info["owner_pid"] == os.getpid()
    assert info["is_creator"] is True


def test_type_hash(make_segment):
    h = bytes(range(16))[::-1]
    seg = make_segment(type_hash=h)
    assert seg.type_hash == h
    other = make_segment.attach(seg)
    assert other.type_hash == h


def test_reserve_commit_read(seg):
    loan = seg.reserve()
    assert isinstance(loan, zdshm.Loan)
    assert len(loan) == seg.slot_capacity == loan.capacity
    assert loan.live and loan.exports == 0 and loan.sn is None
    assert seg.slot_state(loan.slot) == "loaned"
    with memoryview(loan) as mv:
        assert not mv.readonly and mv.format == "B" and mv.nbytes == seg.slot_capacity
        mv[:5] = b"hello"
    sn0 = loan.commit(5)
    assert loan.sn == sn0 and not loan.live
    assert seg.slot_state(loan.slot) == "committed"
    sample = seg.read(loan.slot)
    assert isinstance(sample, zdshm.Sample)
    assert (sample.slot, sample.sn, sample.size, len(sample)) == (loan.slot, sn0, 5, 5)
    assert bytes(sample) == b"hello" == sample.tobytes()
    assert sample.commit_ns > 0
    sample.release()
    assert sample.released
    _, sn1 = commit_bytes(seg, b"x")
    assert sn1 == sn0 + 1


def test_reserve_lowest_free_slot(make_segment):
    seg = make_segment(slot_count=3)
    loans = [seg.reserve() for _ in range(3)]
    assert [l.slot for l in loans] == [0, 1, 2]
    with pytest.raises(zdshm.NoFreeSlotError):
        seg.reserve()
    loans[1].discard()
    assert seg.slot_state(1) == "free"
    again = seg.reserve()
    assert again.slot == 1
    for l in (loans[0], loans[2], again):
        l.discard()


def test_discard(seg):
    before = seg.info()["counters"]["discards"]
    loan = seg.reserve()
    loan.discard()
    assert not loan.live and seg.slot_state(loan.slot) == "free"
    with pytest.raises(zdshm.StaleLoanError, match="already discarded"):
        loan.discard()
    assert seg.info()["counters"]["discards"] == before + 1
    with pytest.raises(zdshm.StaleLoanError, match="already discarded"):
        loan.commit(1)
    assert seg.next_unread(0) is None


def test_commit_too_large_keeps_loan(seg):
    loan = seg.reserve()
    with pytest.raises(zdshm.SampleTooLargeError, match=str(seg.slot_capacity + 1)):
        loan.commit(seg.slot_capacity + 1)
    assert loan.live and seg.slot_state(loan.slot) == "loaned"
    assert loan.commit(seg.slot_capacity) >= 0


def test_commit_default_is_capacity(seg):
    loan = seg.reserve()
    loan.commit()
    s = seg.read(loan.slot)
    assert s.size == seg.slot_capacity
    s.release()


def test_commit_zero_bytes(seg):
    loan = seg.reserve()
    loan.commit(0)
    s = seg.read(loan.slot)
    assert s.size == 0 and bytes(s) == b""
    s.release()


def test_next_unread_oldest_first_not_lowest_index(make_segment):
    # The seed scanned by slot index, so a recycled low slot overtook an
    # older sample.  We deliver by sequence number.
    seg = make_segment(slot_count=2)
    reader_a, reader_b = 0, 1
    mask = (1 << reader_a) | (1 << reader_b)
    s0, sn0 = commit_bytes(seg, b"first", mask)
    s1, sn1 = commit_bytes(seg, b"second", mask)
    assert (s0, s1) == (0, 1)
    # both readers finish slot 0; reader b also slot 1 -> slot 0 is recycled
    seg.mark_read(0, reader_a)
    seg.mark_read(0, reader_b)
    s2, sn2 = commit_bytes(seg, b"third", mask)
    assert s2 == 0 and sn2 > sn1
    assert seg.next_unread(reader_a) == 1       # sn1 before sn2 in slot 0
    seg.mark_read(1, reader_a)
    assert seg.next_unread(reader_a) == 0
    seg.mark_read(0, reader_a)
    assert seg.next_unread(reader_a) is None
    assert seg.next_unread(reader_b) == 1


def test_mark_read_and_read_copy(seg):
    slot, sn = commit_bytes(seg, b"payload", mask=0b101)
    hdr, data = seg.read_copy(slot)
    assert data == b"payload"
    assert hdr["sn"] == sn and hdr["size"] == 7 and hdr["read_mask"] == 0
    assert hdr["commit_ns"] > 0
    seg.mark_read(slot, 2)
    assert seg.read_copy(slot)[0]["read_mask"] == 0b100
    assert seg.next_unread(2) is None
    assert seg.next_unread(0) == slot


def test_read_copy_large(make_segment):
    seg = make_segment(slot_count=1, slot_capacity=1 << 20)
    payload = os.urandom(1 << 20)
    commit_bytes(seg, payload)
    hdr, data = seg.read_copy(0)
    assert data == payload and hdr["size"] == 1 << 20


def test_mark_read_on_free_slot(seg):
    with pytest.raises(zdshm.NoSampleError):
        seg.mark_read(0, 0)
    with pytest.raises(zdshm.NoSampleError):
        seg.read(0)
    with pytest.raises(zdshm.NoSampleError):
        seg.read_copy(0)


def test_mark_reader_disconnected(seg):
    slots = [commit_bytes(seg, bytes([i]), mask=0b11)[0] for i in range(3)]
    seg.mark_reader_disconnected(1)
    for s in slots:
        assert seg.read_copy(s)[0]["read_mask"] == 0b10
    assert seg.next_unread(1) is None
    assert seg.next_unread(0) == slots[0]


def test_read_pins_slot(make_segment):
    seg = make_segment(slot_count=1)
    commit_bytes(seg, b"pinned")
    s = seg.read(0)
    with pytest.raises(zdshm.NoFreeSlotError):
        seg.reserve(0)
    s2 = seg.read(0)          # a second pin of the same slot
    s.release()
    with pytest.raises(zdshm.NoFreeSlotError):
        seg.reserve(0)
    s2.release()
    loan = seg.reserve(0)
    assert loan.slot == 0
    loan.discard()


def test_fully_read_slot_is_recycled(make_segment):
    seg = make_segment(slot_count=1)
    commit_bytes(seg, b"a", mask=0b1)
    with pytest.raises(zdshm.NoFreeSlotError):
        seg.reserve(0b1)
    seg.mark_read(0, 0)
    loan = seg.reserve(0b1)
    assert loan.slot == 0
    loan.discard()


def test_evict_stale_with_clock(seg):
    slot, _ = commit_bytes(seg, b"old", mask=0b1)
    t = seg.read_copy(slot)[0]["commit_ns"]
    assert seg.evict_stale(1.0, 0b1, now_ns=t + 500_000_000) == 0
    assert seg.slot_state(slot) == "committed"
    assert seg.evict_stale(1.0, 0b1, now_ns=t + 1_500_000_000) == 1
    assert seg.slot_state(slot) == "free"
    assert seg.info()["counters"]["evictions"] == 1


def test_evict_stale_skips_read_and_pinned(seg):
    a, _ = commit_bytes(seg, b"read", mask=0b1)
    b, _ = commit_bytes(seg, b"pinned", mask=0b1)
    seg.mark_read(a, 0)
    pin = seg.read(b)
    t = seg.read_copy(b)[0]["commit_ns"]
    assert seg.evict_stale(0.001, 0b1, now_ns=t + 10**10) == 0
    assert seg.slot_state(b) == "committed"
    pin.release()
    assert seg.evict_stale(0.001, 0b1, now_ns=t + 10**10) == 1


def test_evict_stale_real_clock(seg):
    slot, _ = commit_bytes(seg, b"x", mask=0b1)
    assert seg.evict_stale(3600.0, 0b1) == 0
    time.sleep(0.02)
    assert seg.evict_stale(0.01, 0b1) == 1
    assert seg.slot_state(slot) == "free"


def test_notify_generation_and_wait(seg):
    g0 = seg.notify_generation
    t0 = time.monotonic()
    assert seg.wait_for_change(g0, timeout=0.1) is False
    assert 0.08 <= time.monotonic() - t0 < 1.0
    commit_bytes(seg, b"x")
    g1 = seg.notify_generation
    assert g1 != g0
    assert seg.wait_for_change(g0, timeout=0) is True


def test_wait_for_change_woken_by_thread(seg):
    g0 = seg.notify_generation
    timer = threading.Timer(0.1, lambda: commit_bytes(seg, b"wake"))
    timer.start()
    t0 = time.monotonic()
    try:
        assert seg.wait_for_change(g0, timeout=5) is True
    finally:
        timer.join()
    assert time.monotonic() - t0 < 2.0


def test_slot_state_values(seg):
    assert seg.slot_state(0) == "free"
    loan = seg.reserve()
    assert seg.slot_state(0) == "loaned"
    loan.commit(1)
    assert seg.slot_state(0) == "committed"


def test_counters(seg):
    c0 = seg.info()["counters"]
    a = seg.reserve()
    b = seg.reserve()
    a.commit(1)
    b.discard()
    c1 = seg.info()["counters"]
    assert c1["loans"] == c0["loans"] + 2
    assert c1["commits"] == c0["commits"] + 1
    assert c1["discards"] == c0["discards"] + 1
    assert seg.info()["next_sn"] == a.sn + 1


def test_reap_healthy(seg):
    r = seg.reader()
    assert seg.reap() == (0, 0)
    assert seg.active_mask == 1 << r.index
    r.close()
    assert seg.active_mask == 0


def test_open_objects(seg):
    loan = seg.reserve()
    r = seg.reader()
    commit_bytes(seg, b"x")
    s = seg.read(1)
    assert seg.info()["open_objects"] == {"loans": 1, "samples": 1, "readers": 1}
    loan.discard()
    s.release()
    r.close()
    assert seg.info()["open_objects"] == {"loans": 0, "samples": 0, "readers": 0}


def test_closed_segment_refuses(seg):
    seg.close()
    assert seg.closed
    seg.close()  # idempotent
    for call in (lambda: seg.reserve(), lambda: seg.read(0), lambda: seg.info(),
                 lambda: seg.next_unread(0), lambda: seg.writer(),
                 lambda: seg.reader(), lambda: seg.notify_generation,
                 lambda: seg.slot_state(0), lambda: seg.reap(),
                 lambda: seg.wait_for_change(0, 0)):
        with pytest.raises(zdshm.ClosedError):
            call()
    # geometry stays readable
    assert seg.slot_count == 4


def test_repr(seg):
    assert "slots=4x256" in repr(seg) and "open" in repr(seg)
    loan = seg.reserve()
    assert "slot=0" in repr(loan) and "live" in repr(loan)
    loan.commit(3)
    s = seg.read(0)
    assert "sn=" in repr(s) and "size=3" in repr(s)
    s.release()
    seg.close()
    # the Loan and Sample objects keep the mapping until they are collected
    assert "closing" in repr(seg)
    del loan, s
    assert "closed" in repr(seg)


# --- posix specifics ---------------------------------------------------------

def test_posix_create_exists_attach(posix_factory):
    seg = posix_factory(slot_count=2, slot_capacity=64)
    assert seg.name.startswith("zdpytest-") and seg.is_creator
    with pytest.raises(zdshm.SegmentExistsError) as ei:
        zdshm.PosixSegment.create(seg.name, 2, 64)
    assert isinstance(ei.value, FileExistsError)
    other = posix_factory.attach(seg)
    assert not other.is_creator
    assert (other.slot_count, other.slot_capacity) == (2, 64)
    slot, sn = commit_bytes(seg, b"shared")
    s = other.read(slot)
    assert bytes(s) == b"shared" and s.sn == sn
    s.release()


def test_posix_mode(posix_factory):
    old = os.umask(0o077)
    try:
        a = posix_factory()
        name_b = unique_name("mode")
        b = zdshm.PosixSegment.create(name_b, 1, 16, mode=0o640)
        posix_factory.segments.append(b)
        posix_factory.names.append(name_b)
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(f"/dev/shm/{a.name}").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(f"/dev/shm/{name_b}").st_mode) == 0o640


def test_posix_unlink_method(posix_factory):
    seg = posix_factory()
    seg.unlink()
    assert not os.path.exists(f"/dev/shm/{seg.name}")
    with pytest.raises(zdshm.SegmentNotFoundError):
        zdshm.PosixSegment.attach(seg.name)
    commit_bytes(seg, b"after unlink")   # the mapping is still valid


def test_posix_goodbye_flag(posix_factory):
    seg = posix_factory()
    other = posix_factory.attach(seg)
    assert other.info()["goodbye"] is False
    seg.close()
    assert other.info()["goodbye"] is True
    assert zdshm.describe(other.name)["goodbye"] is True


def test_posix_too_many_readers(posix_factory):
    seg = posix_factory()
    readers = [seg.reader() for _ in range(zdshm.READER_MAX)]
    assert sorted(r.index for r in readers) == list(range(64))
    assert seg.active_mask == (1 << 64) - 1
    with pytest.raises(zdshm.TooManyReadersError):
        seg.reader()
    readers[5].close()
    again = seg.reader()
    assert again.index == 5
    for r in readers + [again]:
        r.close()
