"""Child-process targets of the pickling tests (importable by "spawn" and
"forkserver"): each receives PosixSegment objects as arguments, unpickled
in the child by an attach of their names."""
from __future__ import annotations

import os

import zdshm


def echo_reversed(to_child: zdshm.PosixSegment, to_parent: zdshm.PosixSegment,
                  count: int, ready) -> None:
    """Reads `count` samples of to_child and publishes each reversed, with
    this process's pid, to to_parent; raises (exit code 1) on any surprise."""
    for seg in (to_child, to_parent):
        if not isinstance(seg, zdshm.PosixSegment) or seg.is_creator:
            raise AssertionError(f"expected an attached PosixSegment, got {seg!r}")
    r = to_child.reader()
    w = to_parent.writer(timeout=10)
    ready.set()
    for _ in range(count):
        s = r.take(timeout=10)
        data = s.tobytes()
        s.release()
        w.publish(data[::-1] + b"|%d" % os.getpid())
    r.close()
    to_child.close()
    to_parent.close()


def publish_task(seg: zdshm.PosixSegment, count: int) -> tuple:
    """A ProcessPoolExecutor task: publishes `count` samples through the
    segment it was given and reports what the handle looked like."""
    w = seg.writer(timeout=10)
    for i in range(count):
        w.publish(b"task %d of %d" % (i, os.getpid()))
    seen = (seg.name, seg.is_creator, seg.slot_count, seg.slot_capacity,
            os.getpid())
    seg.close()
    return seen
