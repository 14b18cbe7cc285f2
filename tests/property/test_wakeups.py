"""Wake-ups: a commit wakes a reader parked in take, the last release of a
sample wakes a writer parked in loan, and the low-level generation moves for
both (wait_for_change returns).

The state machines never block, and a parked reader or writer also looks
again every 100 ms slice on its own, so a missing wake-up shows only as
latency there.  Here it shows for sure: the waker's handle must have made a
futex wake call (its ``info()["futex_wakes"]``), and a low-level
``wait_for_change`` with a 5 s timeout, which nothing else ends, must return
within 1 s of the event.  On both backends; posix with the writer and the
reader on two handles of one segment.
"""
from __future__ import annotations

import os
import sys
import threading
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _zdprop import unique_segment_name  # noqa: E402

zdshm = pytest.importorskip("zdshm")

pytestmark = pytest.mark.timeout(120, method="thread")

BLOCK_S = 5.0      # the blocked call's own timeout
PROMPT_S = 1.0     # it must return this soon after the event
ROUNDS = 3         # a waiter between two of its slices is not asleep: retry


@pytest.fixture(params=["memory", "posix"])
def handles(request):
    """(writer's handle, reader's handle) of one fresh 1-slot segment."""
    if request.param == "memory":
        seg = zdshm.MemorySegment(1, 16)
        yield seg, seg
        seg.close()
        return
    name = unique_segment_name("wake")
    wseg = zdshm.PosixSegment.create(name, 1, 16)
    try:
        rseg = zdshm.PosixSegment.attach(name)
        try:
            yield wseg, rseg
        finally:
            rseg.close()
    finally:
        wseg.close()
        try:
            zdshm.unlink(name)
        except zdshm.SegmentNotFoundError:
            pass


class Blocked:
    """Runs fn in a thread; .done_at is when it returned, .result/.error what."""

    def __init__(self, fn):
        self.result = self.error = self.done_at = None
        self.thread = threading.Thread(target=self._run, args=(fn,), daemon=True)
        self.thread.start()

    def _run(self, fn):
        try:
            self.result = fn()
        except BaseException as exc:    # reported by the test
            self.error = exc
        self.done_at = time.monotonic()

    def join(self):
        self.thread.join(BLOCK_S + 5.0)
        assert not self.thread.is_alive(), "the blocked call did not return"
        if self.error is not None:
            raise self.error
        return self.result


def wait_parked(seg, waits_before):
    """Until seg's handle has entered one more futex wait (the blocked call
    is asleep), at most 2 s."""
    deadline = time.monotonic() + 2.0
    while seg.info()["futex_waits"] <= waits_before:
        assert time.monotonic() < deadline, "the call never went to sleep"
        time.sleep(0.001)


def test_commit_wakes_a_parked_reader(handles):
    wseg, rseg = handles
    reader = rseg.reader()
    writer = wseg.writer(overflow="fail")
    woke = []
    for i in range(ROUNDS):
        waits = rseg.info()["futex_waits"]

        def take():
            with reader.take(timeout=BLOCK_S) as s:
                return s.sn, s.tobytes()

        blocked = Blocked(take)
        wait_parked(rseg, waits)
        wakes = wseg.info()["futex_wakes"]
        t0 = time.monotonic()
        sn = writer.publish(bytes([i]) * 4)
        assert blocked.join() == (sn, bytes([i]) * 4)
        assert blocked.done_at - t0 < PROMPT_S
        woke.append(wseg.info()["futex_wakes"] - wakes)
        if woke[-1] > 0:
            break
    # The commit found the reader asleep and woke it (not its own slice).
    assert max(woke) > 0, f"no futex wake by the commits ({woke})"
    writer.close()
    reader.close()


def test_release_wakes_a_parked_writer(handles):
    wseg, rseg = handles
    reader = rseg.reader()
    writer = wseg.writer(overflow="block")
    woke = []
    for i in range(ROUNDS):
        writer.publish(bytes([i]) * 4)
        held = reader.take(timeout=1.0)     # read, and pinned: no free slot
        waits = wseg.info()["futex_waits"]

        def loan():
            got = writer.loan(timeout=BLOCK_S)
            slot = got.slot
            got.discard()
            return slot

        blocked = Blocked(loan)
        wait_parked(wseg, waits)
        assert blocked.done_at is None      # still waiting for space
        wakes = rseg.info()["futex_wakes"]
        t0 = time.monotonic()
        held.release()
        assert blocked.join() == 0
        assert blocked.done_at - t0 < PROMPT_S
        woke.append(rseg.info()["futex_wakes"] - wakes)
        if woke[-1] > 0:
            break
    # The release found the writer asleep and woke it (not its own slice).
    assert max(woke) > 0, f"no futex wake by the releases ({woke})"
    writer.close()
    reader.close()


def test_commit_moves_the_generation(handles):
    """With a reader registered, a commit is the only event: a waiter in
    wait_for_change returns because of it."""
    wseg, rseg = handles
    reader = rseg.reader()
    writer = wseg.writer(overflow="fail")
    gen = rseg.notify_generation
    assert rseg.wait_for_change(gen, timeout=0.05) is False    # nothing happens alone
    blocked = Blocked(lambda: rseg.wait_for_change(gen, timeout=BLOCK_S))
    time.sleep(0.05)
    t0 = time.monotonic()
    writer.publish(b"abcd")
    assert blocked.join() is True
    assert blocked.done_at - t0 < PROMPT_S
    writer.close()
    reader.close()


def test_last_release_moves_the_generation(handles):
    """A release that makes a slot reusable is the only event: a waiter in
    wait_for_change returns because of it."""
    wseg, rseg = handles
    reader = rseg.reader()
    writer = wseg.writer(overflow="fail")
    writer.publish(b"abcd")
    held = reader.take(timeout=1.0)
    gen = wseg.notify_generation
    assert wseg.wait_for_change(gen, timeout=0.05) is False
    blocked = Blocked(lambda: wseg.wait_for_change(gen, timeout=BLOCK_S))
    time.sleep(0.05)
    t0 = time.monotonic()
    held.release()
    assert blocked.join() is True
    assert blocked.done_at - t0 < PROMPT_S
    writer.close()
    reader.close()
