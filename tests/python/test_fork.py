"""Fork safety: a handle belongs to the process that opened its segment.

In a fork child every operation of an inherited segment, reader, writer,
loan or sample raises ForkedHandleError, and the child's finalisation only
drops its own mapping: the parent keeps its reader index, its active mask,
its loans and pins, and its readers get no goodbye.
"""
from __future__ import annotations

import gc
import multiprocessing
import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import zdshm

from zdpy_support import unique_name

pytestmark = [pytest.mark.timeout(60),
              pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")]

WATCHDOG = 10.0


def _wait_child(pid: int) -> int:
    """The exit code of a forked child; kills it after WATCHDOG seconds."""
    deadline = time.monotonic() + WATCHDOG
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.005)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    pytest.fail("the fork child hung (killed by the watchdog)")


def _in_child(body) -> int:
    """Runs body() in a fork child that leaves with os._exit: 0 if body
    returned, 1 if it raised (its traceback goes to stderr)."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            body()
            code = 0
        except BaseException:
            import traceback
            traceback.print_exc()
        finally:
            os._exit(code)
    return _wait_child(pid)


def _refuses(call, what: str) -> None:
    try:
        call()
    except zdshm.ForkedHandleError as exc:
        msg = str(exc)
        assert what in msg, msg
        assert f"process {os.getppid()}" in msg and f"process {os.getpid()}" in msg, msg
        assert "attach again (PosixSegment.attach(name)) in this process" in msg, msg
        assert isinstance(exc, RuntimeError)
        return
    raise AssertionError(f"{call} did not raise ForkedHandleError")


def test_child_use_of_inherited_handles_is_refused(make_segment):
    seg = make_segment(slot_count=4, slot_capacity=64)
    w, r = seg.writer(), seg.reader()
    w.publish(b"held")
    sample = r.take(timeout=1)
    w.publish(b"first")
    w.publish(b"second")
    loan = w.loan()
    index, mask = r.index, seg.active_mask

    def child():
        _refuses(lambda: r.take(timeout=0.1), "the reader")
        _refuses(r.try_take, "the reader")
        _refuses(lambda: next(iter(r)), "the reader")
        _refuses(r.stats, "the reader")
        _refuses(r.close, "the reader")
        _refuses(lambda: w.publish(b"child"), "the writer")
        _refuses(w.loan, "the writer")
        _refuses(lambda: w.loan_array((2,), np.uint8).__enter__(), "the writer")
        _refuses(w.close, "the writer")
        _refuses(seg.reserve, "the segment")
        _refuses(seg.reader, "the segment")
        _refuses(seg.writer, "the segment")
        _refuses(seg.info, "the segment")
        _refuses(lambda: seg.active_mask, "the segment")
        _refuses(lambda: seg.wait_for_change(0, 0.1), "the segment")
        _refuses(lambda: seg.read(sample.slot), "the segment")
        _refuses(lambda: memoryview(loan), "the loan")
        _refuses(loan.commit, "the loan")
        _refuses(loan.discard, "the loan")
        _refuses(lambda: memoryview(sample), "the sample")
        _refuses(sample.tobytes, "the sample")
        _refuses(sample.release, "the sample")
        # the context managers' exits end nothing that is the parent's
        loan.__exit__(None, None, None)
        sample.__exit__(None, None, None)
        r.__exit__(None, None, None)
        seg.__exit__(None, None, None)

    assert _in_child(child) == 0
    # the parent lost nothing: same index and mask, its samples, loan and pin
    assert r.index == index and seg.active_mask == mask and not r.closed
    assert r.take(timeout=1).tobytes() == b"first"
    assert r.take(timeout=1).tobytes() == b"second"
    assert sample.tobytes() == b"held" and not sample.released
    assert loan.live
    loan.commit(3)
    assert r.take(timeout=1).tobytes()[:3] == bytes(3)
    assert not seg.info()["goodbye"]


def test_child_close_of_creator_handle_is_refused(posix_factory):
    seg = posix_factory(slot_count=4, slot_capacity=64)
    other = posix_factory.attach(seg)
    r = other.reader()
    w = seg.writer()

    def child():
        _refuses(seg.close, "the segment")
        _refuses(seg.unlink, "the segment")
        with pytest.raises(zdshm.ForkedHandleError):
            with seg:
                pass

    assert _in_child(child) == 0
    assert not seg.closed and not other.info()["goodbye"]
    w.publish(b"after")
    assert r.take(timeout=1).tobytes() == b"after"
    assert other.reap() == (0, 0)


# A script, so that the child really exits normally (sys.exit, or falling
# off the end) and the interpreter's finalisation collects every inherited
# object: segment, reader, writer, loan (with a view) and sample (with an
# array).
_NORMAL_EXIT = textwrap.dedent("""
    import gc, os, sys
    import numpy as np
    import zdshm

    name, how = sys.argv[1], sys.argv[2]
    seg = zdshm.PosixSegment.create(name, 4, 64)
    w, r = seg.writer(), seg.reader()
    w.publish(b"held")
    sample = r.take(timeout=1)
    arr = np.asarray(sample)
    loan = w.loan()
    view = memoryview(loan)
    index, mask = r.index, seg.active_mask
    pid = os.fork()
    if pid == 0:
        if how == "sys.exit":
            sys.exit(0)
        # inherited views still read the segment (remapped at fork)
        assert arr.tobytes() == b"held" and bytes(view[:4]) == bytes(4)
        if how == "collect":
            del seg, w, r, sample, arr, loan, view
            gc.collect()
        # "fall": off the end of the script with everything alive
    else:
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, status
        other = zdshm.PosixSegment.attach(name)
        assert other.reap() == (0, 0), "the child dropped a lock of ours"
        info = other.info()
        assert not info["goodbye"], "the child said goodbye"
        assert r.index == index and seg.active_mask == mask == info["active_mask"]
        assert r.stats()["taken"] == 1
        assert arr.tobytes() == b"held" and seg.slot_state(sample.slot) == "committed"
        assert loan.live and seg.slot_state(loan.slot) == "loaned"
        w.publish(b"after")
        assert r.take(timeout=1).tobytes() == b"after"
        view.release()
        loan.commit(5)
        assert r.take(timeout=1).tobytes() == bytes(5)
        other.close()
        del arr
        sample.release()
        seg.close()
        seg.unlink()
        print("parent ok")
""")


@pytest.mark.parametrize("how", ["sys.exit", "fall", "collect"])
def test_child_normal_exit_leaves_parent_intact(how):
    name = unique_name("fork")
    try:
        proc = subprocess.run([sys.executable, "-c", _NORMAL_EXIT, name, how],
                              capture_output=True, text=True, timeout=WATCHDOG * 2)
    finally:
        try:
            zdshm.unlink(name)
        except zdshm.SegmentNotFoundError:
            pass
    assert proc.returncode == 0, proc.stderr
    assert "parent ok" in proc.stdout
    assert "Traceback" not in proc.stderr, proc.stderr


def _take_through(reader, results) -> None:
    try:
        reader.take(timeout=0.5)
        results.put("took a sample")
    except zdshm.ForkedHandleError as exc:
        results.put(type(exc).__name__)


def test_multiprocessing_fork_child_cannot_take(posix_factory):
    ctx = multiprocessing.get_context("fork")
    seg = posix_factory(slot_count=4, slot_capacity=64)
    r, w = seg.reader(), seg.writer()
    w.publish(b"mine")
    index, mask = r.index, seg.active_mask
    results = ctx.Queue()
    p = ctx.Process(target=_take_through, args=(r, results))
    p.start()
    p.join(WATCHDOG)
    if p.is_alive():
        p.kill()
        p.join()
        pytest.fail("the multiprocessing child hung")
    assert p.exitcode == 0
    assert results.get(timeout=1) == "ForkedHandleError"
    assert r.index == index and seg.active_mask == mask
    assert r.take(timeout=1).tobytes() == b"mine"
    assert not seg.info()["goodbye"]


# The parent registers a reader, forks a child that lives on with every
# inherited object, and is then killed: its reader must be found dead at
# once, although the child still runs (the child's copy of the descriptor
# is closed at fork, so it cannot keep the parent's locks alive).
_PARENT_DIES = textwrap.dedent("""
    import os, sys, time
    import zdshm

    seg = zdshm.PosixSegment.attach(sys.argv[1])
    r = seg.reader()
    pid = os.fork()
    if pid == 0:
        # the fork handlers have run: the child let go of the descriptor
        # (each line one write, so the two processes' lines never mix)
        os.write(1, b"ready\\n")
        time.sleep(30)
        os._exit(0)
    os.write(1, f"{pid}\\n".encode())
    time.sleep(30)
""")


def _parent_dies_child_lives(seg, script, arg, **popen):
    """Runs script (it attaches to seg, registers a reader and forks a child
    that lives on), kills it, and checks that its reader is found dead."""
    parent = subprocess.Popen([sys.executable, "-c", script, arg],
                              stdout=subprocess.PIPE, text=True, **popen)
    child = None
    try:
        # the child's pid (from the parent) and the child's "ready", in
        # either order: killing the parent before the child's fork handler
        # ran would leave the lock with the child for that moment
        lines = sorted(parent.stdout.readline().strip() for _ in range(2))
        assert lines[1] == "ready", lines
        child = int(lines[0])
        assert seg.active_mask != 0
        parent.kill()
        parent.wait(WATCHDOG)
        os.kill(child, 0)                  # the fork child is still alive
        assert seg.reap() == (1, 0)        # and the dead parent's reader is reaped
        assert seg.active_mask == 0
    finally:
        parent.kill()
        parent.wait()
        if child is not None:
            try:
                os.kill(child, 9)
            except ProcessLookupError:
                pass


def test_fork_child_does_not_keep_dead_parent_alive(posix_factory):
    seg = posix_factory(slot_count=2, slot_capacity=16)
    _parent_dies_child_lives(seg, _PARENT_DIES, seg.name)


# The same with an anonymous segment handed over as a descriptor: the fork
# child lets go of the lock-holding description of the handle attached by
# fd as well (its mappings are replaced by ones of a new description).
_PARENT_DIES_FD = _PARENT_DIES.replace(
    "zdshm.PosixSegment.attach(sys.argv[1])",
    "zdshm.AnonymousSegment.attach_fd(int(sys.argv[1]))")


def test_fork_child_does_not_keep_dead_parent_alive_anonymous():
    seg = zdshm.AnonymousSegment(2, 16)
    try:
        fd = seg.fileno()
        _parent_dies_child_lives(seg, _PARENT_DIES_FD, str(fd), pass_fds=[fd])
    finally:
        seg.close()


_HELD: list = []


def test_fork_child_ending_a_deferred_close_detaches_nothing(posix_factory):
    # `with seg:` deferred for a view; a fork child that drops its copy of
    # that view must only unmap its copy, never detach the parent's handle
    # (which would discard the parent's loan and drop its pins).
    seg = posix_factory(slot_count=4, slot_capacity=64)
    other = posix_factory.attach(seg)
    w, r = seg.writer(), seg.reader()
    with w.loan_array((4,), np.uint8) as frame:     # a committed frame: a view
        frame[:] = 1                                # that only keeps the mapping
    r.take(timeout=1).release()
    w.publish(b"held")
    _HELD.append(np.asarray(r.take(timeout=1)))     # its only reference
    loan = seg.reserve()
    seg.__exit__(None, None, None)                  # deferred: the view is alive
    assert "closing" in repr(seg)

    def body():
        _HELD.clear()                               # the child's last sample view
        gc.collect()                                # (the frame stays)

    assert _in_child(body) == 0
    assert other.slot_state(loan.slot) == "loaned"  # the parent's loan stays
    assert _HELD[0].tobytes() == b"held"
    _HELD.clear()                      # the parent's last blocking view: detach
    gc.collect()
    assert other.slot_state(loan.slot) == "free"    # ended with the detach
    assert "closing" in repr(seg)                   # the frame keeps the mapping
    del frame
    gc.collect()
    assert "closing" in repr(seg)                   # and so does the ended loan
    del loan
    gc.collect()
    assert "closed" in repr(seg)
