"""Child-process targets of the creator-liveness tests (importable by "spawn")."""
from __future__ import annotations

import time

import zdshm


def payload(sn: int) -> bytes:
    return f"sample-{sn:04d}".encode()


def creator(name: str, count: int, created, go, published) -> None:
    """Creates the segment, publishes `count` samples once `go` is set
    (blocking while the readers lag), says so and waits to be killed."""
    seg = zdshm.PosixSegment.create(name, 4, 64)
    created.set()
    if not go.wait(60):
        return
    w = seg.writer(overflow="block", timeout=30)
    for i in range(count):
        sn = w.publish(payload(i))
        assert sn == i, (sn, i)
    published.set()
    time.sleep(600)


def iterate_until_dead(name: str, ready, results) -> None:
    """Iterates a reader; reports what it received, the exception that ended
    the loop and when (CLOCK_MONOTONIC is shared by every process)."""
    seg = zdshm.PosixSegment.attach(name)
    r = seg.reader()
    ready.release()
    got = []
    ended = "no exception"
    try:
        for s in r:
            got.append((s.sn, s.tobytes()))
            s.release()
    except zdshm.Error as exc:
        ended = type(exc).__name__
    t_end = time.monotonic()
    results.put((got, ended, t_end))
    r.close()
    seg.close()
