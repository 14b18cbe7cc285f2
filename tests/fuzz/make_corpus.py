#!/usr/bin/env python3
"""Writes the seed corpus of tests/fuzz/fuzz_attach.c: real segments in a
few states, made with zdshm, captured from /dev/shm and packed the way the
target reads its input (header, slot headers 0..7, reader table,
attachment table; trailing zero bytes dropped, the target pads them back).

    python tests/fuzz/make_corpus.py          # rewrites tests/fuzz/corpus/
"""
from __future__ import annotations

import os
import sys
import uuid

import zdshm

HEADER, SLOT_HEADER, ENTRY, TABLE = 512, 128, 64, 64
READERS_OFFSET = HEADER
ATTACH_OFFSET = READERS_OFFSET + TABLE * ENTRY
SLOTS_OFFSET = 12288
PACKED_SLOTS = 8
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def pack(raw: bytes) -> bytes:
    stride = int.from_bytes(raw[32:40], "little")
    count = int.from_bytes(raw[64:68], "little")
    slots = bytearray(PACKED_SLOTS * SLOT_HEADER)
    for i in range(min(count, PACKED_SLOTS)):
        off = SLOTS_OFFSET + i * stride
        assert off + SLOT_HEADER <= len(raw)
        slots[i * SLOT_HEADER:(i + 1) * SLOT_HEADER] = raw[off:off + SLOT_HEADER]
    packed = (raw[:HEADER] + bytes(slots) +
              raw[READERS_OFFSET:READERS_OFFSET + TABLE * ENTRY] +
              raw[ATTACH_OFFSET:ATTACH_OFFSET + TABLE * ENTRY])
    return packed.rstrip(b"\0")


def snapshot(name: str) -> bytes:
    with open(os.path.join("/dev/shm", name), "rb") as f:
        return f.read()


def states():
    """(file name, packed bytes) of each seed."""
    name = f"zdfuzz-corpus-{os.getpid()}-{uuid.uuid4().hex[:8]}"

    # an empty 4 x 256 segment
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
    # the same with every reader-pin bit of the committed slots set: the
    # take that spun forever on its own pin bit
    hostile = bytearray(packed)
    for i in range(2):
        off = HEADER + i * SLOT_HEADER + 16        # slot i's reader_pins
        hostile[off:off + 8] = b"\xff" * 8
    yield "hostile-reader-pins", bytes(hostile)
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

    # 8 x 64, three readers at different places, every slot committed
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

    # one slot of one byte
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
