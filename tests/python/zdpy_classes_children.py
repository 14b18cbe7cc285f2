"""Child processes of test_classes_crossproc.py (importable by "spawn").

The stream: message i has a size drawn log-uniformly from 16 B .. 8 MiB and
a body cut from a shared pseudo-random pool at a drawn 8-byte-aligned
offset; its first 16 bytes are i and a checksum of the body (the wrapping
sum of its 64-bit words plus the sum of its tail bytes).  Writer and
readers derive sizes, offsets and pool from the same seed.
"""
from __future__ import annotations

import numpy as np

import zdshm

MIN_SIZE = 16
MAX_SIZE = 8 << 20
POOL_SIZE = 16 << 20
MASK = (1 << 64) - 1
CLASSES = [(256, 4 << 10), (32, 256 << 10), (4, 8 << 20)]
CAPACITIES = [cap for _, cap in CLASSES]


def plan(seed: int, count: int):
    """(sizes, offsets, pool) of the stream."""
    rng = np.random.default_rng(seed)
    sizes = np.exp(rng.uniform(np.log(MIN_SIZE), np.log(MAX_SIZE + 1), count))
    sizes = np.clip(sizes.astype(np.int64), MIN_SIZE, MAX_SIZE)
    offsets = rng.integers(0, (POOL_SIZE - MAX_SIZE) // 8, count) * 8
    pool = rng.integers(0, 256, POOL_SIZE, dtype=np.uint8)
    return sizes, offsets, pool


def checksum(body: np.ndarray) -> int:
    """The wrapping sum of the body's 64-bit words plus its tail bytes."""
    nw = len(body) // 8
    words = int(body[:nw * 8].view(np.uint64).sum(dtype=np.uint64)) if nw else 0
    return (words + int(body[nw * 8:].sum(dtype=np.uint64))) & MASK


def _check(s, i: int, sizes, offsets, pool, report) -> None:
    """Size, checksum and the ends of message i's body (the array views die
    with this frame, before the sample is released)."""
    if s.size != sizes[i]:
        report["bad_size"] += 1
        return
    a = np.asarray(s)
    body = a[16:]
    if checksum(body) != int(a[8:16].view(np.uint64)[0]):
        report["bad_checksum"] += 1
    off, n = int(offsets[i]), len(body)
    if (body[:64] != pool[off:off + min(n, 64)]).any() or \
            (body[max(0, n - 64):] != pool[off + max(0, n - 64):off + n]).any():
        report["bad_content"] += 1


class MessageIndex:
    """The check of zdpy_latest_children.latest_reader for this stream:
    message i's index when the sample is complete (size, checksum and the
    ends of the body as read_stream checks them), else None.  Pickles as
    (seed, count); the stream is derived again where it is unpickled, so a
    spawned reader has it before it registers."""

    def __init__(self, seed: int, count: int) -> None:
        self.seed, self.count = seed, count
        self.sizes = self.offsets = self.pool = None

    def __getstate__(self):
        return self.seed, self.count

    def __setstate__(self, state) -> None:
        self.seed, self.count = state
        self.sizes, self.offsets, self.pool = plan(self.seed, self.count)

    def __call__(self, s) -> int | None:
        if self.sizes is None:
            self.__setstate__((self.seed, self.count))
        if s.size < 16:
            return None
        i = int.from_bytes(s.tobytes()[:8], "little") if s.size < 64 else \
            int(np.asarray(s)[:8].view(np.uint64)[0])
        if i >= self.count:
            return None
        report = {"bad_size": 0, "bad_checksum": 0, "bad_content": 0}
        _check(s, i, self.sizes, self.offsets, self.pool, report)
        return i if not any(report.values()) else None


def read_stream(name: str, seed: int, count: int, ready, results) -> None:
    """Reads count messages, checks each, and puts a report on results."""
    sizes, offsets, pool = plan(seed, count)
    seg = zdshm.PosixSegment.attach(name)
    r = seg.reader()
    ready.set()
    seen = bytearray(count)
    report = {"count": 0, "lost": 0, "duplicated": 0, "reordered": 0,
              "bad_checksum": 0, "bad_size": 0, "bad_content": 0, "bad_sn": 0,
              "bad_index": 0, "too_small_slot": 0, "classes": [0, 0, 0],
              "dropped": -1}
    expected = 0
    try:
        while report["count"] < count:
            s = r.take(timeout=60)
            i = int.from_bytes(s.tobytes()[:8], "little") if s.size < 64 else \
                int(np.asarray(s)[:8].view(np.uint64)[0])
            report["count"] += 1
            cap = seg.slot_capacity_of(s.slot)
            if cap < s.size:
                report["too_small_slot"] += 1
            report["classes"][CAPACITIES.index(cap)] += 1
            if i >= count:
                report["bad_index"] += 1
                s.release()
                continue
            if seen[i]:
                report["duplicated"] += 1
            elif i < expected:
                report["reordered"] += 1
            elif i > expected:
                report["lost"] += i - expected
            seen[i] = 1
            expected = max(expected, i + 1)
            if s.sn != i:
                report["bad_sn"] += 1
            _check(s, i, sizes, offsets, pool, report)
            s.release()
        report["lost"] += count - expected
        report["dropped"] = r.stats()["dropped"]
    finally:
        results.put(report)
        r.close()
        seg.close()
