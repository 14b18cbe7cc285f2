"""Every wait is interruptible: Ctrl-C raises KeyboardInterrupt within 100 ms."""
from __future__ import annotations

import os
import signal
import threading
import time

import pytest

import zdshm

pytestmark = pytest.mark.timeout(30)


def _interrupt_after(delay: float) -> list[float]:
    sent: list[float] = []

    def fire():
        sent.append(time.monotonic())
        os.kill(os.getpid(), signal.SIGINT)

    t = threading.Timer(delay, fire)
    t.start()
    return sent


def _assert_prompt_interrupt(block) -> None:
    sent = _interrupt_after(0.2)
    returned = []
    with pytest.raises(KeyboardInterrupt):
        block()
        returned.append(True)   # not reached if block() was interrupted
        time.sleep(5)
    caught = time.monotonic()
    assert not returned, "the call returned instead of waiting until Ctrl-C"
    assert sent, "the signal was not sent"
    assert caught - sent[0] < 0.1, f"KeyboardInterrupt after {caught - sent[0]:.3f} s"


def test_ctrl_c_during_take(seg):
    r = seg.reader()
    _assert_prompt_interrupt(lambda: r.take())
    # the reader still works afterwards
    seg.writer().publish(b"after")
    assert r.take(timeout=1).tobytes() == b"after"


def test_ctrl_c_during_iteration(seg):
    r = seg.reader()
    _assert_prompt_interrupt(lambda: next(iter(r)))


def test_ctrl_c_during_blocked_loan(make_segment):
    seg = make_segment(slot_count=1)
    r = seg.reader()
    w = seg.writer(overflow="block")
    w.publish(b"full")
    _assert_prompt_interrupt(lambda: w.loan())
    _assert_prompt_interrupt(lambda: w.publish(b"x"))
    assert r.take(timeout=1).tobytes() == b"full"


def test_ctrl_c_during_reclaim_wait(make_segment):
    seg = make_segment(slot_count=1)
    w = seg.writer(overflow="reclaim")
    held = w.loan()
    _assert_prompt_interrupt(lambda: w.loan())
    held.discard()


def test_ctrl_c_during_wait_for_change(seg):
    g = seg.notify_generation
    _assert_prompt_interrupt(lambda: seg.wait_for_change(g))


def test_ctrl_c_during_spin(seg):
    r = seg.reader(spin=0.05)
    _assert_prompt_interrupt(lambda: r.take())


def test_gil_released_while_waiting(seg):
    r = seg.reader()
    counter = [0]
    stop = threading.Event()

    def spin():
        while not stop.is_set():
            counter[0] += 1

    t = threading.Thread(target=spin)
    t.start()
    try:
        with pytest.raises(zdshm.WaitTimeoutError):
            r.take(timeout=0.3)
        during = counter[0]
    finally:
        stop.set()
        t.join()
    assert during > 1000     # the other thread ran while we waited


def test_close_segment_while_other_thread_waits(seg):
    r = seg.reader()
    errors = []

    def wait():
        try:
            r.take(timeout=10)
        except zdshm.ClosedError as exc:
            errors.append(exc)

    t = threading.Thread(target=wait)
    t.start()
    time.sleep(0.1)
    t0 = time.monotonic()
    seg.close()
    t.join(5)
    assert not t.is_alive()
    assert time.monotonic() - t0 < 1.0
    assert len(errors) == 1


# --- a signal handler that closes what the same thread waits on ------------------
#
# Each case runs in its own interpreter under a watchdog: a deadlock fails
# the test (timeout) instead of hanging the suite.  SIGALRM fires while the
# main thread blocks; the handler closes the reader, writer or segment; the
# wait must end at once with ClosedError (iteration: the reader's end).

_CLOSE_IN_HANDLER = """
import signal, sys, time
import zdshm

backend, wait, target, name = sys.argv[1:5]
if backend == "memory":
    seg = zdshm.MemorySegment(1, 64)
else:
    seg = zdshm.PosixSegment.create(name, 1, 64)
try:
    r = seg.reader()
    w = seg.writer(timeout=None)
    if wait in ("loan", "publish"):
        w.publish(b"full")          # r has not read it: the next loan blocks
    closers = {"reader": r.close, "writer": w.close, "segment": seg.close}
    waits = {
        "take": r.take,
        "iterate": lambda: list(r),
        "loan": w.loan,
        "publish": lambda: w.publish(b"x"),
        "wait_for_change": lambda: seg.wait_for_change(seg.notify_generation),
    }
    if wait == "take+thread":           # another thread waits on the segment too
        import threading
        other, seen = seg.reader(), []

        def wait_other():
            try:
                other.take()
            except zdshm.ClosedError:
                seen.append("ClosedError")

        t = threading.Thread(target=wait_other)
        t.start()
        waits[wait] = lambda: (r.take(), t.join())
    signal.signal(signal.SIGALRM, lambda *_: closers[target]())
    signal.setitimer(signal.ITIMER_REAL, 0.2)
    t0 = time.monotonic()
    try:
        outcome = repr(waits[wait]())
    except zdshm.ClosedError:
        outcome = "ClosedError"
    if wait == "take+thread":
        t.join(5)
        outcome += "+" + "".join(seen)
    print(outcome, time.monotonic() - t0)
    seg.close()
finally:
    if backend == "posix":
        seg.unlink()
"""

_SIGNAL_CASES = [
    ("take", "reader", "ClosedError"),
    ("take", "segment", "ClosedError"),
    ("take+thread", "segment", "ClosedError+ClosedError"),
    ("iterate", "reader", "[]"),
    ("iterate", "segment", "[]"),
    ("loan", "writer", "ClosedError"),
    ("loan", "segment", "ClosedError"),
    ("publish", "segment", "ClosedError"),
    ("wait_for_change", "segment", "ClosedError"),
]


@pytest.mark.parametrize("backend", ["memory", "posix"])
@pytest.mark.parametrize("wait,target,expected", _SIGNAL_CASES,
                         ids=[f"{w}-close-{t}" for w, t, _ in _SIGNAL_CASES])
def test_close_from_signal_handler_while_waiting(backend, wait, target, expected):
    import subprocess
    import sys

    from zdpy_support import shm_listing, unique_name

    name = unique_name("sig")
    try:
        proc = subprocess.run([sys.executable, "-c", _CLOSE_IN_HANDLER, backend,
                               wait, target, name],
                              capture_output=True, text=True, timeout=10)
    except subprocess.TimeoutExpired:
        pytest.fail(f"close() from a signal handler deadlocked {wait}()")
    finally:
        if name in shm_listing():
            zdshm.unlink(name)
    assert proc.returncode == 0, proc.stderr
    outcome, elapsed = proc.stdout.split()
    assert outcome == expected, proc.stdout
    # 0.2 s to the alarm, then at once (slack for a loaded machine)
    assert float(elapsed) < 2.0, proc.stdout
