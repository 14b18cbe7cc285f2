"""What a commit in flight leaves behind for a moment, frozen.

The state machines cannot stop a commit half way, so these tests write the
in-between state into a posix segment's bytes and check that readers and
writers treat it as the core's rules say:

* Between a commit's sequence-number claim and its ring store, a reader that
  looks the sn up finds the entry of sn - ring_size, which names another
  slot.  It must hold back (the commit is in flight) and then find the
  sample, never take the old entry for the current one and skip the sample
  as gone.
* A commit in flight while a reader joins resets the read mask of a sample
  older than the reader's start: the reader's bit is clear on a sample it
  will never take.  Writers must not hold that sample for it.
"""
from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _zdprop import unique_segment_name  # noqa: E402

zdshm = pytest.importorskip("zdshm")

pytestmark = pytest.mark.timeout(60)

# csrc/core/layout.h: the ring follows the 2048-byte header, the reader
# table and the attachment table (64 entries of 64 bytes each).
RING_OFFSET = 2048 + 2 * 64 * 64     # geo.ring_offset (layout.h): after the header and the two tables


@pytest.fixture
def posix():
    name = unique_segment_name("inflight")
    seg = zdshm.PosixSegment.create(name, 2, 16)
    try:
        yield seg, os.path.join("/dev/shm", name)
    finally:
        seg.close()
        try:
            zdshm.unlink(name)
        except zdshm.SegmentNotFoundError:
            pass


def word(path, off, value=None):
    """Reads (and with value, first writes) the 8-byte word at off."""
    fd = os.open(path, os.O_RDWR)
    try:
        if value is not None:
            os.pwrite(fd, value.to_bytes(8, "little"), off)
        return int.from_bytes(os.pread(fd, 8, off), "little")
    finally:
        os.close(fd)


def entry(path, ring_size, sn, value=None):
    """The ring entry of sn (see word)."""
    return word(path, RING_OFFSET + 8 * (sn % ring_size), value)


def test_an_entry_of_the_previous_lap_is_not_the_current_one(posix):
    seg, path = posix
    ring = seg.info()["ring_size"]
    mask = ring - 1
    reader = seg.reader()
    writer = seg.writer(overflow="fail")
    for i in range(ring + 1):               # one lap and one more sample, all read
        writer.publish(bytes([i]) * 4)
        with reader.take(timeout=1.0) as s:
            assert s.sn == i
    sn = writer.publish(b"next")
    assert sn == ring + 1
    e = entry(path, ring, sn)
    slot = e & mask
    assert e & ~mask == sn & ~mask                          # written for this lap
    assert seg.read_copy(slot)[0]["sn"] == sn
    other = 1 - slot
    assert seg.read_copy(other)[0]["sn"] == sn - 1          # a committed slot, another sn
    # As a reader sees it before the commit's ring store: the previous lap,
    # naming the slot of an older sample.
    assert entry(path, ring, sn, ((sn & ~mask) - ring) | other) != e

    s = reader.try_take()
    assert s is not None, "the sample was skipped: a stale ring entry counted as current"
    assert (s.sn, s.tobytes()) == (sn, b"next")
    s.release()
    assert reader.stats()["dropped"] == 0
    assert reader.try_take() is None
    writer.close()
    reader.close()


def test_a_sample_older_than_a_readers_start_is_not_held_for_it(posix):
    seg, path = posix
    info = seg.info()
    read_mask_of_slot_0 = info["slots_offset"] + 8      # slot header: state, read_mask
    writer = seg.writer(overflow="fail")
    assert writer.publish(b"old") == 0                  # slot 0, before the join
    reader = seg.reader()                               # starts at sn 1
    assert reader.stats()["lag"] == 0
    bit = 1 << reader.index
    assert seg.read_copy(0)[0]["read_mask"] & bit       # marked read by the join
    # As if sample 0's commit was still in flight at the join and reset the
    # mask after the join had marked it.
    mask = word(path, read_mask_of_slot_0)
    assert word(path, read_mask_of_slot_0, mask & ~bit) == mask & ~bit

    assert writer.publish(b"new") == 1                  # slot 1, the free one
    with reader.take(timeout=1.0) as s:
        assert (s.sn, s.tobytes()) == (1, b"new")
    assert reader.try_take() is None                    # sample 0 is not the reader's
    # Both samples are reusable; the older goes first.
    loan = writer.loan(timeout=0)
    assert loan.slot == 0
    loan.discard()
    assert reader.stats()["dropped"] == 0
    writer.close()
    reader.close()
