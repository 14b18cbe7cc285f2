"""Latest-value readers: ``Segment.reader(latest=True)``.

Each take (take, try_take, iteration, atake, aiter) returns the newest
committed sample and skips -- marks read, so the slots go back to the pool
-- every older one the reader has not taken, counted in
``stats()["skipped"]``.  Both backends where the behaviour is shared; the
cross-process runs use real processes (spawn) with a watchdog.
"""
from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import re
import signal
import struct
import time

import pytest

import zdshm

import zdpy_latest_children as kids


def publish_n(w: zdshm.Writer, first: int, n: int) -> None:
    for i in range(first, first + n):
        w.publish(struct.pack("<Q", i), timeout=0)


def value(sample: zdshm.Sample) -> int:
    return struct.unpack("<Q", sample.tobytes()[:8])[0]


def test_take_returns_newest_and_counts_skipped(seg):
    w = seg.writer(overflow="fail")
    r = seg.reader(latest=True)
    assert r.latest is True
    assert "latest" in repr(r)
    publish_n(w, 0, 4)
    with r.take(timeout=1) as s:
        assert (s.sn, value(s)) == (3, 3)
    st = r.stats()
    assert st == {"taken": 1, "dropped": 0, "skipped": 3, "lag": 0, "last_sn": 3}
    publish_n(w, 4, 2)
    s = r.try_take()
    assert s is not None and s.sn == 5
    s.release()
    assert r.stats()["skipped"] == 4
    assert r.try_take() is None


def test_plain_reader_beside_it_gets_everything(seg):
    w = seg.writer(overflow="fail")
    latest, plain = seg.reader(latest=True), seg.reader()
    assert plain.latest is False and "latest" not in repr(plain)
    publish_n(w, 0, 4)
    assert latest.take(timeout=0).sn == 3
    assert [plain.take(timeout=0).sn for _ in range(4)] == [0, 1, 2, 3]
    assert plain.stats()["skipped"] == 0
    assert latest.stats()["skipped"] == 3


def test_skipped_slots_go_back_to_the_pool(make_segment):
    seg = make_segment(4, 64)
    w = seg.writer(overflow="fail")
    r = seg.reader(latest=True)
    publish_n(w, 0, 4)
    assert w.try_publish(b"x") is None          # every slot held for the reader
    s = r.take(timeout=0)
    assert s.sn == 3
    publish_n(w, 4, 3)                          # the three skipped slots
    assert w.try_publish(b"x") is None          # the fourth is the pinned sample
    assert s.tobytes()[:8] == struct.pack("<Q", 3)
    s.release()
    assert r.take(timeout=0).sn == 6
    assert r.stats()["skipped"] == 5            # 0, 1, 2, then 4, 5


def test_reclaim_writer_never_blocks_and_the_taken_sample_stays_intact(make_segment):
    seg = make_segment(4, 64)
    w = seg.writer(overflow="reclaim")
    r = seg.reader(latest=True)
    publish_n(w, 0, 1)
    held = r.take(timeout=0)
    publish_n(w, 1, 1000)                       # timeout=0: never waits
    assert value(held) == 0 and held.sn == 0
    held.release()
    with r.take(timeout=0) as s:
        assert (s.sn, value(s)) == (1000, 1000)
    st = r.stats()
    # Every sample once: taken, skipped (still held when the take came) or
    # reclaimed under the reader before it (dropped).
    assert st["taken"] + st["skipped"] + st["dropped"] == 1001
    assert st["taken"] == 2 and st["skipped"] == 2


def test_join_last_one_takes_the_newest_held(seg):
    w = seg.writer(overflow="fail")
    publish_n(w, 0, 3)
    r = seg.reader(join_last=1, latest=True)
    assert r.take(timeout=0).sn == 2
    assert r.stats()["skipped"] == 0
    r0 = seg.reader(latest=True)                # join_last=0: from now on
    assert r0.try_take() is None


def test_timeouts(seg):
    r = seg.reader(latest=True)
    t0 = time.monotonic()
    with pytest.raises(zdshm.WaitTimeoutError):
        r.take(timeout=0.05)
    assert time.monotonic() - t0 >= 0.04
    with pytest.raises(zdshm.WaitTimeoutError):
        r.take(timeout=0)
    assert r.try_take() is None
    seg.writer().publish(b"a")
    assert r.take(timeout=0.05).sn == 0
    with pytest.raises(zdshm.WaitTimeoutError):
        r.take(timeout=0.01)


def test_closed_reader(seg):
    r = seg.reader(latest=True)
    seg.writer().publish(b"a")
    r.close()
    with pytest.raises(zdshm.ClosedError):
        r.take(timeout=0)
    with pytest.raises(zdshm.ClosedError):
        r.try_take()
    with pytest.raises(zdshm.ClosedError):
        r.stats()
    assert list(r) == []


def test_goodbye_delivers_the_newest_then_ends(posix_factory):
    seg = posix_factory(4, 64)
    other = zdshm.PosixSegment.attach(seg.name)
    try:
        r = other.reader(latest=True)
        publish_n(seg.writer(), 0, 3)
        seg.close()
        got = [s.sn for s in r]                 # ends at the goodbye
        assert got == [2]
        assert r.stats()["skipped"] == 2
        with pytest.raises(zdshm.SegmentClosedError):
            r.take(timeout=0)
    finally:
        other.close()


def test_iteration_returns_only_newer_samples(seg):
    w = seg.writer(overflow="reclaim")
    r = seg.reader(latest=True)
    seen = []
    for burst in range(5):
        publish_n(w, burst * 3, 3)
        s = next(iter(r))
        seen.append(s.sn)
        s.release()
    assert seen == [2, 5, 8, 11, 14]
    assert r.stats()["skipped"] == 10


def test_atake_and_aiter(seg):
    w = seg.writer(overflow="reclaim")
    r = seg.reader(latest=True)

    async def main():
        publish_n(w, 0, 3)
        first = await r.atake(timeout=1)
        loop = asyncio.get_running_loop()
        loop.call_later(0.05, publish_n, w, 3, 4)
        second = await r.atake(timeout=5)
        got = []
        publish_n(w, 7, 2)
        async for s in r.aiter():
            got.append(s.sn)
            s.release()
            break
        return first.sn, second.sn, got

    first, second, got = asyncio.run(main())
    assert first == 2
    assert second in range(3, 7)                # the newest when it woke
    assert got == [8]


@pytest.mark.parametrize("bad", [1, 0, "yes", None, 1.0, [True]])
def test_latest_must_be_a_bool(seg, bad):
    with pytest.raises(TypeError, match=re.escape(f"latest must be a bool, got {bad!r}")):
        seg.reader(latest=bad)
    assert seg.active_mask == 0                 # nothing registered


@pytest.mark.parametrize("join_last", [2, 10])
def test_join_last_beyond_one_is_refused(seg, join_last):
    with pytest.raises(ValueError, match=f"join_last must be 0 or 1 with latest=True.*{join_last}"):
        seg.reader(join_last=join_last, latest=True)
    assert seg.active_mask == 0
    seg.reader(join_last=join_last, latest=False).close()


def test_latest_is_keyword_only(seg):
    with pytest.raises(TypeError):
        seg.reader(0, 0.0, True)


# ---- cross-process ---------------------------------------------------------

CTX = mp.get_context("spawn")
FRAMES = 20_000


def run_children(targets, timeout=120.0):
    procs = [CTX.Process(target=t, args=a) for t, a in targets]
    for p in procs:
        p.start()
    deadline = time.monotonic() + timeout
    for p in procs:
        p.join(max(0.1, deadline - time.monotonic()))
    alive = [p for p in procs if p.is_alive()]
    for p in alive:
        p.kill()
        p.join()
    assert not alive, "watchdog: a child did not finish in time"
    return [p.exitcode for p in procs]


@pytest.mark.crossproc
@pytest.mark.timeout(180)
def test_cross_process_latest_reader_beside_a_reclaim_writer(posix_factory):
    """A writer process publishes FRAMES numbered, checksummed frames with
    overflow="reclaim"; a latest reader in another process checks each take:
    complete (checksum), newer than the one before, and at most one sample
    behind the newest committed sn when the take started (see
    zdpy_latest_children.latest_reader for how that is measured)."""
    seg = posix_factory(8, 4096)
    ready = CTX.Event()
    result = CTX.Queue()
    codes = run_children([
        (kids.latest_reader, (seg.name, FRAMES, ready, result)),
        (kids.numbered_writer, (seg.name, FRAMES, "reclaim", ready, 1)),
    ])
    assert codes == [0, 0]
    res = result.get(timeout=5)
    assert res["errors"] == [], res["errors"][:5]
    assert res["last"] == FRAMES - 1
    assert res["taken"] >= 2
    st = res["stats"]
    assert st["taken"] + st["skipped"] + st["dropped"] == FRAMES
    assert res["max_behind"] <= 1


@pytest.mark.crossproc
@pytest.mark.timeout(180)
def test_cross_process_block_writer_plain_reader_gets_all_latest_gets_newest(posix_factory):
    """overflow="block": the plain reader in its own process receives every
    frame in order; the latest reader beside it never holds the writer back
    for long (each take frees what it skips) and still ends on the last."""
    seg = posix_factory(8, 4096)
    ready = CTX.Event()
    result = CTX.Queue()
    codes = run_children([
        (kids.latest_reader, (seg.name, FRAMES, ready, result)),
        (kids.plain_reader, (seg.name, FRAMES, ready, result)),
        (kids.numbered_writer, (seg.name, FRAMES, "block", ready, 2)),
    ])
    assert codes == [0, 0, 0]
    res = {}
    for _ in range(2):
        r = result.get(timeout=5)
        res[r["kind"]] = r
    assert res["plain"]["errors"] == [], res["plain"]["errors"][:5]
    assert res["plain"]["taken"] == FRAMES
    assert res["latest"]["errors"] == [], res["latest"]["errors"][:5]
    assert res["latest"]["last"] == FRAMES - 1
    st = res["latest"]["stats"]
    assert st["dropped"] == 0
    assert st["taken"] + st["skipped"] == FRAMES


@pytest.mark.crossproc
@pytest.mark.timeout(60)
def test_killed_latest_reader_leaks_no_slot(posix_factory):
    """A latest reader's process dies holding its samples unread; the block
    writer reaps it and gets every slot back."""
    seg = posix_factory(4, 64)
    ready = CTX.Event()
    p = CTX.Process(target=kids.idle_latest_reader, args=(seg.name, ready))
    p.start()
    try:
        assert ready.wait(30)
        w = seg.writer(overflow="block")
        publish_n(w, 0, 4)
        assert w.try_publish(b"x") is None      # held for the idle reader
        os.kill(p.pid, signal.SIGKILL)
        p.join(30)
        publish_n_blocking = [w.publish(struct.pack("<Q", i), timeout=10)
                              for i in range(4, 8)]
        assert publish_n_blocking == [4, 5, 6, 7]
    finally:
        if p.is_alive():
            p.kill()
            p.join()


def test_readme_example_runs_verbatim():
    import pathlib
    import subprocess
    import sys

    text = (pathlib.Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = text[text.index("\n## Latest-value readers\n"):]
    section = section[:section.index("\n## ", 1)]
    block = re.findall(r"```python\n(.*?)```", section, flags=re.S)[0]
    proc = subprocess.run([sys.executable, "-c", block], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["9 9 3", "None"]
