"""Child processes of test_latest.py (spawned: importable top-level functions).

A frame is [counter u64][body length u64][body: the counter repeated][crc32
u32 of everything before it]; a frame mixing two writes fails the crc.
"""
from __future__ import annotations

import struct
import time
import zlib

import zdshm


def frame(counter: int) -> bytes:
    body_len = 8 * (8 + (counter * 2654435761) % 480)      # 64 .. 3896 bytes
    head = struct.pack("<QQ", counter, body_len)
    body = struct.pack("<Q", counter) * (body_len // 8)
    data = head + body
    return data + struct.pack("<I", zlib.crc32(data))


def check(sample: zdshm.Sample) -> int | None:
    """The frame's counter if it is complete, else None."""
    m = memoryview(sample)
    try:
        if len(m) < 20:
            return None
        counter, body_len = struct.unpack_from("<QQ", m, 0)
        if len(m) != 16 + body_len + 4:
            return None
        (crc,) = struct.unpack_from("<I", m, 16 + body_len)
        if crc != zlib.crc32(m[:16 + body_len]):
            return None
        return counter
    finally:
        m.release()


def numbered_writer(name: str, n: int, overflow: str, ready, n_readers: int) -> None:
    seg = zdshm.PosixSegment.attach(name)
    with seg.writer(overflow=overflow, timeout=60) as w:
        ready.wait(60)
        w.wait_for_readers(n_readers, timeout=60)
        for i in range(n):
            w.publish(frame(i))
    seg.close()


def latest_reader(name: str, n: int, ready, result, check=check) -> None:
    """Takes with a latest reader until sn n - 1 and checks each take:
    complete (``check(sample)`` gives the number the sample carries, None
    for a torn or wrong one; that number must be its sn), newer than the one
    before, and at most one sample behind the newest committed sn when the
    take started.  ``check`` must pickle (the process is spawned); the
    default reads the frames of this module.

    That bound, measured honestly: `before` is the segment's next_sn read
    just before the take, so every sn below it is claimed; the one writer
    has at most one commit in flight (claimed, not yet published), so the
    newest committed sn then is at least before - 2, and the take returns
    that one or a newer one (commits that land during the take or between
    the read and the take only make it newer).  behind = (before - 1) - sn,
    the distance to the newest claimed sn, must be <= 1.  `after`, read
    right after the take, bounds it from above (sn < after)."""
    seg = zdshm.PosixSegment.attach(name)
    errors: list[str] = []
    taken, last, max_behind = 0, -1, -10**9
    r = seg.reader(latest=True)
    ready.set()
    deadline = time.monotonic() + 120
    while last != n - 1 and time.monotonic() < deadline:
        before = seg.info()["next_sn"]
        try:
            s = r.take(timeout=5)
        except zdshm.WaitTimeoutError:
            errors.append(f"timed out after sn {last}")
            break
        after = seg.info()["next_sn"]
        counter = check(s)
        if counter is None:
            errors.append(f"sn {s.sn}: torn or wrong sample")
        elif counter != s.sn:
            errors.append(f"sn {s.sn}: carries frame {counter}")
        if s.sn <= last:
            errors.append(f"sn {s.sn} after {last}")
        if not s.sn < after:
            errors.append(f"sn {s.sn} not below next_sn {after} read after the take")
        max_behind = max(max_behind, before - 1 - s.sn)
        last = s.sn
        taken += 1
        s.release()
    result.put({"kind": "latest", "errors": errors, "taken": taken, "last": last,
                "max_behind": max_behind, "stats": r.stats()})
    r.close()
    seg.close()


def plain_reader(name: str, n: int, ready, result) -> None:
    seg = zdshm.PosixSegment.attach(name)
    errors: list[str] = []
    taken = 0
    with seg.reader() as r:
        ready.set()
        for i in range(n):
            try:
                s = r.take(timeout=30)
            except zdshm.WaitTimeoutError:
                errors.append(f"timed out at {i}")
                break
            counter = check(s)
            if counter != i or s.sn != i:
                errors.append(f"expected {i}, got sn {s.sn} frame {counter}")
            taken += 1
            s.release()
        result.put({"kind": "plain", "errors": errors, "taken": taken,
                    "stats": r.stats()})
    seg.close()


def idle_latest_reader(name: str, ready) -> None:
    """Registers a latest reader and never takes (killed by the test)."""
    seg = zdshm.PosixSegment.attach(name)
    r = seg.reader(latest=True)
    ready.set()
    time.sleep(600)
    r.close()
