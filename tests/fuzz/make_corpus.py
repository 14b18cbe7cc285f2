#!/usr/bin/env python3
"""Writes the seed corpus of tests/fuzz/fuzz_attach.c: real segments (layout
version 5) in a few states, made with zdshm, captured from /dev/shm and
packed the way the target reads its input: header, reader table,
attachment table, ring entries 0..15, the first 64 bytes of the free map
and of the old map, slot headers 0..7, each taken from where the header's
geometry (for the slots: its class table) says it is.  Trailing zero bytes are dropped (the target pads them
back); packed ring entries past the segment's ring_size read "unwritten".

    python tests/fuzz/make_corpus.py          # rewrites tests/fuzz/corpus/
"""
from __future__ import annotations

import os
import struct
import sys
import uuid

import zdshm

HEADER, SLOT_HEADER, ENTRY, TABLE = 2048, 128, 64, 64
PACKED_SLOTS, PACKED_RING, PACKED_MAP = 8, 16, 64
# offsets of the parts in a packed input
P_READERS = HEADER
P_ATTACH = P_READERS + TABLE * ENTRY
P_RING = P_ATTACH + TABLE * ENTRY
P_FREE = P_RING + PACKED_RING * 8
P_OLD = P_FREE + PACKED_MAP
P_SLOTS = P_OLD + PACKED_MAP
P_SIZE = P_SLOTS + PACKED_SLOTS * SLOT_HEADER
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")

GEO = struct.Struct("<IIQQQQQQQQQII")   # zd_geometry_t at header offset 16
GEO_FIELDS = ("slot_count", "ring_size", "slot_capacity", "slot_stride",
              "total_size", "readers_offset", "attach_offset", "ring_offset",
              "free_offset", "old_offset", "slots_offset", "class_count", "reserved")
CLASS = struct.Struct("<IIQQQ")         # zd_class_t, 16 of them at header offset 1024
CLASS_FIELDS = ("slot_count", "first_slot", "slot_capacity", "slot_stride", "slots_offset")
CLASSES_AT = 1024
# slot header fields (struct zdi_slot_header)
SLOT_STATE, SLOT_READ_MASK, SLOT_READER_PINS, SLOT_SN = 0, 8, 16, 32


def geometry(raw: bytes) -> dict[str, int]:
    return dict(zip(GEO_FIELDS, GEO.unpack_from(raw, 16)))


def class_table(raw: bytes, n: int) -> list[dict[str, int]]:
    return [dict(zip(CLASS_FIELDS, CLASS.unpack_from(raw, CLASSES_AT + k * CLASS.size)))
            for k in range(n)]


def slot_offset(classes: list[dict[str, int]], i: int) -> int:
    c = next(c for c in reversed(classes) if c["first_slot"] <= i)
    return c["slots_offset"] + (i - c["first_slot"]) * c["slot_stride"]


def pack(raw: bytes) -> bytes:
    g = geometry(raw)
    assert g["total_size"] == len(raw), (g, len(raw))
    classes = class_table(raw, g["class_count"])
    ring = bytearray(b"\xff" * (PACKED_RING * 8))
    n = min(g["ring_size"], PACKED_RING) * 8
    ring[:n] = raw[g["ring_offset"]:g["ring_offset"] + n]
    slots = bytearray(PACKED_SLOTS * SLOT_HEADER)
    for i in range(min(g["slot_count"], PACKED_SLOTS)):
        off = slot_offset(classes, i)
        assert off + SLOT_HEADER <= len(raw)
        slots[i * SLOT_HEADER:(i + 1) * SLOT_HEADER] = raw[off:off + SLOT_HEADER]
    packed = (raw[:HEADER] +
              raw[g["readers_offset"]:g["readers_offset"] + TABLE * ENTRY] +
              raw[g["attach_offset"]:g["attach_offset"] + TABLE * ENTRY] +
              bytes(ring) +
              raw[g["free_offset"]:g["free_offset"] + PACKED_MAP] +
              raw[g["old_offset"]:g["old_offset"] + PACKED_MAP] +
              bytes(slots))
    assert len(packed) == P_SIZE
    return packed.rstrip(b"\0")


def u64(packed: bytes, off: int) -> int:
    return int.from_bytes(packed[off:off + 8].ljust(8, b"\0"), "little")


def with_u64(packed: bytes, off: int, value: int) -> bytes:
    b = bytearray(packed.ljust(P_SIZE, b"\0"))
    b[off:off + 8] = value.to_bytes(8, "little")
    return bytes(b).rstrip(b"\0")


def slot_field(i: int, field: int) -> int:
    return P_SLOTS + i * SLOT_HEADER + field


def snapshot(name: str) -> bytes:
    with open(os.path.join("/dev/shm", name), "rb") as f:
        return f.read()


def states():
    """(file name, packed bytes) of each seed."""
    name = f"zdfuzz-corpus-{os.getpid()}-{uuid.uuid4().hex[:8]}"

    # an empty 4 x 256 segment: ring of 8 unwritten entries, all slots free
    with zdshm.PosixSegment.create(name, 4, 256) as seg:
        yield "empty-4x256", pack(snapshot(name))
    zdshm.unlink(name)

    # one reader, two committed samples, a slot loaned by a second handle
    seg = zdshm.PosixSegment.create(name, 4, 256)
    reader = seg.reader()
    w = seg.writer(overflow="fail")
    w.publish(b"first sample")
    w.publish(b"second")
    other = zdshm.PosixSegment.attach(name)
    loan = other.writer(overflow="fail").loan(timeout=0)
    packed = pack(snapshot(name))
    yield "reader-2committed-1loaned", packed
    # the same with every reader-pin bit of the committed slots set
    hostile = packed
    for i in range(2):
        hostile = with_u64(hostile, slot_field(i, SLOT_READER_PINS), 2**64 - 1)
    yield "hostile-reader-pins", hostile
    # the same with ring entries 0 and 1 naming each other's slot: a
    # lookup lands on a committed slot holding another sn
    e0, e1 = u64(packed, P_RING), u64(packed, P_RING + 8)
    swapped = with_u64(with_u64(packed, P_RING, e1), P_RING + 8, e0)
    yield "hostile-ring-swapped", swapped
    # the same with the free map claiming every slot free
    yield "hostile-free-map", with_u64(with_u64(packed, P_FREE, 0xf), P_FREE + 8, 1)
    # the reader took one and holds it
    s = reader.take(timeout=1)
    yield "reader-holds-view", pack(snapshot(name))
    s.release()
    loan.discard()
    other.close()
    w.close()
    reader.close()
    seg.close()
    yield "after-goodbye", pack(snapshot(name))
    zdshm.unlink(name)

    # 8 x 64 (ring of 16), three readers at different places, 11 commits
    # with reclaim: every slot committed, a late reader joined with join_last
    seg = zdshm.PosixSegment.create(name, 8, 64, type_hash=b"0123456789abcdef")
    readers = [seg.reader() for _ in range(3)]
    w = seg.writer(overflow="reclaim")
    for i in range(11):
        w.publish(i.to_bytes(8, "little") * (1 + i % 8))
        if i % 3 == 0:
            readers[i % 3].take(timeout=1).release()
    late = seg.reader(join_last=4)
    yield "8x64-readers-reclaimed", pack(snapshot(name))
    for r in readers + [late]:
        r.close()
    w.close()
    seg.close()
    zdshm.unlink(name)

    # 8 x 64: a reader holds a view of sn 0 while 40 later commits wrap the
    # ring twice and more: its slot is in the old map, the ring's laps > 0
    seg = zdshm.PosixSegment.create(name, 8, 64)
    r = seg.reader()
    w = seg.writer(overflow="reclaim")
    w.publish(b"held")
    held = r.take(timeout=1)
    for i in range(40):
        w.publish(i.to_bytes(4, "little"))
    packed = pack(snapshot(name))
    yield "8x64-ring-wrapped-old-map", packed
    # the same with the reader's cursor put back to 0 and its last_sn
    # cleared: it asks for sequence numbers the ring has long lost
    cursor = P_READERS + r.index * ENTRY + 24
    yield "8x64-cursor-behind", with_u64(with_u64(packed, cursor, 0), cursor + 8, 2**64 - 1)
    held.release()
    r.close()
    w.close()
    seg.close()
    zdshm.unlink(name)

    # 16 x 64 (ring of 32): only the first half of the ring and of the
    # slots is packed; two readers, one of them behind
    seg = zdshm.PosixSegment.create(name, 16, 64)
    fast, slow = seg.reader(), seg.reader()
    w = seg.writer(overflow="reclaim")
    for i in range(24):
        w.publish(bytes([i]) * (i % 64 + 1))
        fast.take(timeout=1).release()
    for _ in range(3):
        slow.take(timeout=1).release()
    yield "16x64-two-readers", pack(snapshot(name))
    fast.close()
    slow.close()
    w.close()
    seg.close()
    zdshm.unlink(name)

    # three size classes (2 x 64, 3 x 256, 2 x 1024): samples in each, a
    # loan in class 1, a reader holding a view of the class-2 sample
    seg = zdshm.PosixSegment.create(name, classes=[(2, 64), (3, 256), (2, 1024)])
    r = seg.reader()
    w = seg.writer(overflow="fail")
    w.publish(b"small")
    w.publish(b"m" * 200)
    w.publish(b"L" * 1000)
    loan = w.loan(nbytes=100)
    r.take(timeout=1).release()
    r.take(timeout=1).release()
    held = r.take(timeout=1)
    packed = pack(snapshot(name))
    yield "classes-3-held-loaned", packed
    # the same with class 1's capacity claimed as class 2's: sizes that
    # no longer fit the strides
    yield "classes-hostile-capacity", with_u64(packed, CLASSES_AT + CLASS.size + 8, 1024)
    held.release()
    loan.discard()
    r.close()
    w.close()
    seg.close()
    zdshm.unlink(name)

    # one slot of one byte (ring of 4)
    with zdshm.PosixSegment.create(name, 1, 1) as seg:
        r = seg.reader()
        seg.writer(overflow="fail").publish(b"x")
        yield "1x1-committed", pack(snapshot(name))
        r.close()
    zdshm.unlink(name)


def main() -> int:
    os.makedirs(OUT, exist_ok=True)
    for old in os.listdir(OUT):
        os.unlink(os.path.join(OUT, old))
    for fname, data in states():
        with open(os.path.join(OUT, fname), "wb") as f:
            f.write(data)
        print(f"{fname}: {len(data)} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
