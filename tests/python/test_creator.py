"""Creator liveness: a dead creator ends its readers with CreatorDeadError
after they drained it; stale segments are replaced or removed, live ones
never.  Real processes (start method "spawn"), pytest-timeout as watchdog."""
from __future__ import annotations

import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time

import pytest

import zdshm

import zdpy_children
import zdpy_creator
from zdpy_support import unique_name

pytestmark = [pytest.mark.crossproc, pytest.mark.timeout(90)]

CTX = mp.get_context("spawn")
COUNT = 20


def _kill(p) -> None:
    if p.is_alive():
        os.kill(p.pid, signal.SIGKILL)
    p.join(10)


def _start_creator(name: str):
    """A creator process that publishes COUNT samples on demand; returns
    (process, go, published) once the segment exists."""
    created, go, published = CTX.Event(), CTX.Event(), CTX.Event()
    p = CTX.Process(target=zdpy_creator.creator,
                    args=(name, COUNT, created, go, published))
    p.start()
    assert created.wait(60), "the creator did not start"
    return p, go, published


def _stale(name: str) -> None:
    """Leaves a stale segment under name: COUNT samples, creator killed."""
    p, go, published = _start_creator(name)
    try:
        go.set()                     # no reader: nothing blocks the writer
        assert published.wait(60)
    finally:
        _kill(p)
    assert p.exitcode == -signal.SIGKILL


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "zdshm", *args],
                          capture_output=True, text=True, timeout=60)


def _cleanup(name: str) -> None:
    try:
        zdshm.unlink(name)
    except zdshm.SegmentNotFoundError:
        pass


# ---------------------------------------------------------------------------

def test_info_reports_liveness(make_segment):
    seg = make_segment()
    readers = [seg.reader() for _ in range(3)]
    d = seg.info()
    assert d["creator_alive"] is True and seg.creator_alive is True
    assert d["live_readers"] == 3
    assert d["live_attachments"] == 1
    readers[0].close()
    assert seg.info()["live_readers"] == 2
    if seg.backend == "posix":
        other = make_segment.attach(seg)
        r = other.reader()
        for d in (seg.info(), other.info(), zdshm.describe(seg.name)):
            assert d["creator_alive"] is True
            assert d["live_readers"] == 3
            assert d["live_attachments"] == 2
        assert other.creator_alive is True
        r.close()
        other.close()
        assert zdshm.describe(seg.name)["live_attachments"] == 1
        late = make_segment.attach(seg)
        seg.close()                  # goodbye: the creator's lock goes with it
        assert late.creator_alive is False
        assert late.info()["creator_alive"] is False
        with pytest.raises(zdshm.SegmentClosedError):
            late.reader().take(timeout=1)     # a goodbye stays a goodbye


def test_sigkill_creator_ends_three_blocked_readers():
    name = unique_name("dead")
    creator, go, published = _start_creator(name)
    ready, results = CTX.Semaphore(0), CTX.Queue()
    readers = [CTX.Process(target=zdpy_creator.iterate_until_dead,
                           args=(name, ready, results)) for _ in range(3)]
    try:
        for p in readers:
            p.start()
        for _ in readers:
            assert ready.acquire(timeout=60), "a reader did not start"
        go.set()
        assert published.wait(60)
        time.sleep(0.3)              # the readers drain and park in the loop
        assert all(p.is_alive() for p in readers)
        t_kill = time.monotonic()
        os.kill(creator.pid, signal.SIGKILL)
        ends = [results.get(timeout=30) for _ in readers]
        for p in readers:
            p.join(30)
            assert p.exitcode == 0
        want = [(i, zdpy_creator.payload(i)) for i in range(COUNT)]
        for got, ended, t_end in ends:
            assert ended == "CreatorDeadError"
            assert got == want       # every sample committed before the kill
            assert t_end - t_kill < 1.0, t_end - t_kill
        d = zdshm.describe(name)
        assert d["creator_alive"] is False and d["goodbye"] is False
        assert d["live_attachments"] == 0 and d["live_readers"] == 0
        assert zdshm.unlink_stale(name) is True
    finally:
        _kill(creator)
        for p in readers:
            _kill(p)
        _cleanup(name)


def test_take_drains_then_raises_creator_dead():
    name = unique_name("take")
    try:
        _stale(name)
        seg = zdshm.PosixSegment.attach(name)
        r = seg.reader(join_last=2)
        got = [r.take(timeout=5).tobytes() for _ in range(2)]
        assert got == [zdpy_creator.payload(COUNT - 2), zdpy_creator.payload(COUNT - 1)]
        t0 = time.monotonic()
        with pytest.raises(zdshm.CreatorDeadError) as ei:
            r.take(timeout=5)
        assert time.monotonic() - t0 < 1.0
        assert isinstance(ei.value, ConnectionError)
        assert not isinstance(ei.value, BrokenPipeError)
        assert "died" in str(ei.value)
        with pytest.raises(zdshm.CreatorDeadError):
            r.try_take()             # found dead once: it stays dead
        with pytest.raises(zdshm.CreatorDeadError):
            next(iter(r))
        r.close()
        seg.close()
    finally:
        _cleanup(name)


def test_replace_stale():
    name = unique_name("repl")
    try:
        _stale(name)
        d = zdshm.describe(name)
        assert d["creator_alive"] is False and d["live_attachments"] == 0
        assert d["next_sn"] == COUNT
        with pytest.raises(zdshm.SegmentExistsError) as ei:
            zdshm.PosixSegment.create(name, 4, 64)
        msg = str(ei.value)
        assert "is dead" in msg and "stale" in msg
        assert "replace_stale=True" in msg and "rm --stale" in msg
        with pytest.raises(TypeError, match="replace_stale"):
            zdshm.PosixSegment.create(name, 4, 64, replace_stale=1)
        seg = zdshm.PosixSegment.create(name, 2, 32, replace_stale=True)
        d = seg.info()
        assert d["next_sn"] == 0 and d["slot_count"] == 2 and seg.is_creator
        assert d["owner_pid"] == os.getpid()
        seg.close()
        # closed by its creator and nothing attached: stale as well
        seg = zdshm.PosixSegment.create(name, 3, 32, replace_stale=True)
        assert seg.slot_count == 3
        seg.close()
    finally:
        _cleanup(name)


def test_live_segment_never_replaced_or_removed():
    name = unique_name("live")
    creator, go, published = _start_creator(name)
    ready = CTX.Event()
    attacher = CTX.Process(target=zdpy_children.idle_reader, args=(name, ready))
    try:
        go.set()
        assert published.wait(60)
        # a live creator
        with pytest.raises(zdshm.SegmentExistsError) as ei:
            zdshm.PosixSegment.create(name, 4, 64, replace_stale=True)
        assert f"its creator (pid {creator.pid}) is alive" in str(ei.value)
        assert zdshm.unlink_stale(name) is False
        p = _cli("rm", "--stale", name)
        assert p.returncode == 0 and f"kept {name}" in p.stdout, p.stdout + p.stderr
        p = _cli("list")
        line = next(ln for ln in p.stdout.splitlines() if ln.startswith(name))
        assert line.split()[1] == "ALIVE"
        # a dead creator, but another live process has it attached
        attacher.start()
        assert ready.wait(60)
        _kill(creator)
        d = zdshm.describe(name)
        assert d["creator_alive"] is False
        assert d["live_attachments"] == 1 and d["live_readers"] == 1
        with pytest.raises(zdshm.SegmentExistsError) as ei:
            zdshm.PosixSegment.create(name, 4, 64, replace_stale=True)
        assert "1 live handle is still attached" in str(ei.value)
        assert zdshm.unlink_stale(name) is False
        p = _cli("rm", "--stale", name)
        assert p.returncode == 0 and f"kept {name}" in p.stdout, p.stdout + p.stderr
        p = _cli("list")
        line = next(ln for ln in p.stdout.splitlines() if ln.startswith(name))
        assert line.split()[1:2] == ["STALE"] and line.split()[4:6] == ["1", "1"], line
        assert zdshm.describe(name)["next_sn"] == COUNT    # the same object
        # the attacher dies too: now it is stale and goes
        _kill(attacher)
        p = _cli("rm", "--stale", name)
        assert p.returncode == 0 and f"removed {name}" in p.stdout, p.stdout + p.stderr
        assert name not in zdshm.list_segments()
    finally:
        _kill(creator)
        if attacher.pid is not None:
            _kill(attacher)
        _cleanup(name)
