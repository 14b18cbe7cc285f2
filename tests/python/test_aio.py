"""asyncio and readiness descriptors: Reader.atake/aiter/fileno,
Writer.aloan/apublish/try_loan/try_publish/fileno.

Every asyncio test runs on the default loop and on uvloop.  Cross-process
tests use real processes (spawn), with pytest-timeout as watchdog.
"""
from __future__ import annotations

import asyncio
import errno
import multiprocessing as mp
import os
import select
import signal
import time

import pytest

import zdshm
from zdshm import aio

import zdpy_aio_children as kids

pytestmark = [pytest.mark.crossproc, pytest.mark.timeout(120)]

CTX = mp.get_context("spawn")


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request):
    """Runs a coroutine to completion on a fresh loop of the given kind."""
    factory = None
    if request.param == "uvloop":
        import uvloop

        factory = uvloop.new_event_loop

    def runner(coro):
        with asyncio.Runner(loop_factory=factory) as r:
            return r.run(coro)

    return runner


def ready_sockets(seg: zdshm.Segment) -> int:
    """Bound readiness sockets of this segment on the host."""
    info = seg.info()
    prefix = f"@zdshm-ready/{info['created_realtime_ns']:016x}/{info['owner_pid']}/"
    with open("/proc/net/unix") as f:
        return sum(1 for line in f if prefix in line)


def registered(loop: asyncio.AbstractEventLoop) -> dict:
    """Our descriptor registrations with this loop (fd -> waiters)."""
    return aio._registered(loop)


# ---- cross-process delivery --------------------------------------------------

def test_two_tasks_two_readers_10000_from_another_process(posix_factory, run):
    count = 10_000
    seg = posix_factory(slot_count=16, slot_capacity=64)
    readers = [seg.reader(), seg.reader()]
    start, done = CTX.Event(), CTX.Event()
    p = CTX.Process(target=kids.publish_n, args=(seg.name, count, start, done))
    p.start()

    async def consume(r):
        got = []
        for _ in range(count):
            s = await r.atake(timeout=30)
            got.append((s.sn, kids.check(s.tobytes())))
            s.release()
        return got

    async def main():
        tasks = [asyncio.create_task(consume(r)) for r in readers]
        await asyncio.sleep(0.05)
        start.set()
        return await asyncio.gather(*tasks)

    try:
        results = run(main())
        p.join(30)
        assert p.exitcode == 0
    finally:
        if p.is_alive():
            p.kill()
            p.join()
    for got in results:
        assert [n for _, n in got] == list(range(count))
        sns = [sn for sn, _ in got]
        assert sns == list(range(sns[0], sns[0] + count))
    assert seg.info()["open_objects"]["samples"] == 0
    for r in readers:
        assert r.stats()["taken"] == count
        assert r.stats()["dropped"] == 0


def test_select_on_fileno_across_processes(posix_factory):
    seg = posix_factory(slot_count=4, slot_capacity=64)
    r = seg.reader()
    fd = r.fileno()
    assert r.fileno() == fd
    go, done = CTX.Event(), CTX.Event()
    p = CTX.Process(target=kids.publish_on_signal, args=(seg.name, go, done))
    p.start()
    try:
        for i in range(2):
            assert select.select([fd], [], [], 0.2)[0] == []
            assert r.try_take() is None
            go.set()
            assert select.select([fd], [], [], 20)[0] == [fd]
            s = r.try_take()
            assert s is not None and kids.check(s.tobytes()) == i
            s.release()
            assert done.wait(10)
            done.clear()
            assert r.try_take() is None       # arms again
        p.join(30)
        assert p.exitcode == 0
    finally:
        if p.is_alive():
            p.kill()
            p.join()


def test_fileno_readable_at_once_when_samples_wait(make_segment):
    seg = make_segment(slot_count=4, slot_capacity=64)
    r = seg.reader()
    seg.writer().publish(b"waiting")
    fd = r.fileno()
    assert select.select([fd], [], [], 0)[0] == [fd]
    s = r.try_take()
    assert s.tobytes() == b"waiting"
    s.release()
    assert r.try_take() is None
    assert select.select([fd], [], [], 0)[0] == []


def test_reader_process_killed_while_registered(posix_factory):
    seg = posix_factory(slot_count=4, slot_capacity=64)
    ready = CTX.Event()
    p = CTX.Process(target=kids.await_forever, args=(seg.name, ready))
    p.start()
    try:
        assert ready.wait(60)
        assert ready_sockets(seg) == 1
        os.kill(p.pid, signal.SIGKILL)
        p.join(10)
        assert ready_sockets(seg) == 0      # the kernel removed the name
        w = seg.writer(overflow="block", timeout=10)
        before = seg.info()
        for i in range(50):                 # fills the 4 slots, then reaps
            w.publish(kids.payload(i))
        after = seg.info()
        # The armed entry of the dead reader cost one failed datagram.
        assert after["ready_send_errors"] - before["ready_send_errors"] == 1
        assert after["ready_sends"] == before["ready_sends"]
        assert after["counters"]["readers_reaped"] == 1
        assert after["live_readers"] == 0
    finally:
        if p.is_alive():
            p.kill()
            p.join()


def test_fileno_closed_with_reader(make_segment):
    seg = make_segment()
    r = seg.reader()
    fd = r.fileno()
    os.fstat(fd)
    assert ready_sockets(seg) == 1
    r.close()
    with pytest.raises(OSError) as e:
        os.fstat(fd)
    assert e.value.errno == errno.EBADF
    assert ready_sockets(seg) == 0
    with pytest.raises(zdshm.ClosedError):
        r.fileno()


def test_unarmed_commit_makes_no_send(make_segment):
    seg = make_segment()
    r = seg.reader()
    w = seg.writer()
    r.fileno()
    s = r.try_take()
    assert s is None                         # armed
    w.publish(b"a")
    assert seg.info()["ready_sends"] == 1    # one-shot: disarmed by it
    w.publish(b"b")
    w.publish(b"c")
    assert seg.info()["ready_sends"] == 1
    for want in (b"a", b"b", b"c"):
        s = r.try_take()
        assert s.tobytes() == want
        s.release()


# ---- asyncio: readers -----------------------------------------------------------

def test_atake_timeout(make_segment, run):
    seg = make_segment()
    r = seg.reader()

    async def main():
        t0 = time.monotonic()
        with pytest.raises(zdshm.WaitTimeoutError, match="atake"):
            await r.atake(timeout=0.15)
        elapsed = time.monotonic() - t0
        with pytest.raises(zdshm.WaitTimeoutError):
            await r.atake(timeout=0)
        assert not registered(asyncio.get_running_loop())
        return elapsed

    elapsed = run(main())
    assert 0.14 <= elapsed < 2.0, elapsed
    assert isinstance(zdshm.WaitTimeoutError("x"), TimeoutError)


@pytest.mark.parametrize("bad, exc", [("1", TypeError), (True, TypeError),
                                      (-1, ValueError), (float("nan"), ValueError)])
def test_atake_bad_timeout(make_segment, run, bad, exc):
    seg = make_segment()
    r = seg.reader()

    async def main():
        with pytest.raises(exc, match="timeout"):
            await r.atake(timeout=bad)

    run(main())


def test_cancel_mid_wait_leaves_nothing(make_segment, run):
    seg = make_segment()
    r = seg.reader()
    w = seg.writer()

    async def main():
        loop = asyncio.get_running_loop()
        t = asyncio.create_task(r.atake())
        await asyncio.sleep(0.05)
        assert not t.done()
        assert len(registered(loop)) == 1
        t.cancel()
        with pytest.raises(asyncio.CancelledError):
            await t
        assert registered(loop) == {}
        if hasattr(loop, "_selector"):
            assert r.fileno() not in loop._selector.get_map()
        sends = seg.info()["ready_sends"]
        sn = w.publish(b"after")
        assert seg.info()["ready_sends"] == sends     # disarmed
        return sn

    sn = run(main())
    info = seg.info()
    assert info["open_objects"]["samples"] == 0
    assert info["open_objects"]["loans"] == 0
    assert all(seg.slot_state(i) in ("free", "committed") for i in range(seg.slot_count))
    s = r.try_take()
    assert s.sn == sn and s.tobytes() == b"after"
    s.release()


def test_cancel_after_wakeup_keeps_the_sample(make_segment, run):
    seg = make_segment()
    r = seg.reader()
    w = seg.writer()

    async def main():
        t = asyncio.create_task(r.atake())
        await asyncio.sleep(0.05)
        sn = w.publish(b"raced")
        t.cancel()                 # before the task saw the wake-up
        with pytest.raises(asyncio.CancelledError):
            await t
        return sn

    sn = run(main())
    assert seg.info()["open_objects"]["samples"] == 0
    s = r.try_take()
    assert s.sn == sn and s.tobytes() == b"raced"
    s.release()


def test_loop_stays_responsive_while_readers_wait(make_segment, run):
    seg = make_segment()
    readers = [seg.reader(), seg.reader()]

    async def main():
        waits = [asyncio.create_task(r.atake()) for r in readers]
        gaps = []
        for _ in range(300):
            t0 = time.monotonic()
            await asyncio.sleep(0.001)
            gaps.append(time.monotonic() - t0)
        assert not any(t.done() for t in waits)
        for t in waits:
            t.cancel()
        await asyncio.gather(*waits, return_exceptions=True)
        return sorted(gaps)

    gaps = run(main())
    assert gaps[int(len(gaps) * 0.99)] <= 0.005, gaps[-10:]
    assert seg.info()["futex_waits"] == 0         # nobody parked a thread


def test_aiter_ends_at_goodbye(posix_factory, run):
    seg = posix_factory()
    other = posix_factory.attach(seg)
    r = other.reader()
    w = seg.writer()

    async def main():
        async def produce():
            for i in range(3):
                await asyncio.sleep(0.02)
                w.publish(bytes([i]))
            seg.close()

        p = asyncio.create_task(produce())
        got = []
        async for s in r:
            got.append(s.tobytes())
            s.release()
        await p
        return got

    assert run(main()) == [b"\x00", b"\x01", b"\x02"]


def test_aiter_method_and_closed_reader(make_segment, run):
    seg = make_segment()
    r = seg.reader()
    w = seg.writer()

    async def main():
        got = []
        w.publish(b"1")
        w.publish(b"2")
        async for s in r.aiter():
            got.append(s.tobytes())
            s.release()
            if len(got) == 2:
                asyncio.get_running_loop().call_later(0.05, r.close)
        return got

    assert run(main()) == [b"1", b"2"]


# ---- asyncio: writers -------------------------------------------------------------

def test_try_loan_and_try_publish(make_segment):
    seg = make_segment(slot_count=2, slot_capacity=64)
    r = seg.reader()
    w = seg.writer(overflow="block")
    assert w.try_publish(b"a") == 0
    loan = w.try_loan()
    assert loan is not None
    loan.discard()
    assert w.try_publish(b"b") == 1
    assert w.try_loan() is None
    assert w.try_publish(b"c") is None
    with pytest.raises(TypeError, match="buffer"):
        w.try_publish(12)
    s = r.try_take()
    s.release()
    assert w.try_publish(b"c") == 2


def test_apublish_waits_for_space(make_segment, run):
    seg = make_segment(slot_count=2, slot_capacity=64)
    r = seg.reader()
    w = seg.writer(overflow="block")
    w.publish(b"0")
    w.publish(b"1")

    async def main():
        t = asyncio.create_task(w.apublish(b"2", timeout=10))
        await asyncio.sleep(0.1)
        assert not t.done()
        s = r.try_take()
        s.release()
        return await asyncio.wait_for(t, 5)

    assert run(main()) == 2
    assert seg.info()["futex_waits"] == 0


def test_apublish_and_aloan_time_out(make_segment, run):
    seg = make_segment(slot_count=2, slot_capacity=64)
    r = seg.reader()                             # holds both samples
    w = seg.writer(overflow="block", timeout=0.1)
    w.publish(b"0")
    w.publish(b"1")

    async def main():
        with pytest.raises(zdshm.WaitTimeoutError, match="apublish"):
            await w.apublish(b"2")               # the writer's timeout
        with pytest.raises(zdshm.WaitTimeoutError, match="aloan"):
            await w.aloan(timeout=0.05)
        assert not registered(asyncio.get_running_loop())

    run(main())
    assert seg.info()["open_objects"]["loans"] == 0
    assert r.stats()["lag"] == 2


def test_aloan_cancel_leaves_no_loan(make_segment, run):
    seg = make_segment(slot_count=2, slot_capacity=64)
    r = seg.reader()
    w = seg.writer(overflow="block")
    w.publish(b"0")
    w.publish(b"1")
    loans = seg.info()["counters"]["loans"]

    async def main():
        t = asyncio.create_task(w.aloan())
        await asyncio.sleep(0.05)
        t.cancel()
        with pytest.raises(asyncio.CancelledError):
            await t
        assert registered(asyncio.get_running_loop()) == {}
        s = r.try_take()
        sends = seg.info()["ready_sends"]
        s.release()                              # frees a slot: nobody armed
        assert seg.info()["ready_sends"] == sends

    run(main())
    info = seg.info()
    assert info["open_objects"]["loans"] == 0
    assert info["counters"]["loans"] == loans
    assert "loaned" not in [seg.slot_state(i) for i in range(seg.slot_count)]


def test_aloan_fail_policy_raises_at_once(make_segment, run):
    seg = make_segment(slot_count=1, slot_capacity=64)
    r = seg.reader()                             # holds the sample
    w = seg.writer(overflow="fail")
    w.publish(b"0")

    async def main():
        with pytest.raises(zdshm.NoFreeSlotError):
            await w.aloan()
        with pytest.raises(zdshm.NoFreeSlotError):
            await w.apublish(b"1")

    run(main())
    assert r.stats()["lag"] == 1


def test_two_writers_of_one_handle_share_the_descriptor(make_segment, run):
    seg = make_segment(slot_count=2, slot_capacity=64)
    r = seg.reader()
    w1, w2 = seg.writer(), seg.writer()
    assert w1.fileno() == w2.fileno()
    w1.publish(b"0")
    w1.publish(b"1")

    async def main():
        t1 = asyncio.create_task(w1.apublish(b"a", timeout=10))
        t2 = asyncio.create_task(w2.apublish(b"b", timeout=10))
        await asyncio.sleep(0.05)
        assert not t1.done() and not t2.done()
        for _ in range(2):
            s = await r.atake(timeout=5)
            s.release()
        return sorted(await asyncio.gather(t1, t2))

    assert run(main()) == [2, 3]


def test_readme_asyncio_block_runs_verbatim():
    import pathlib
    import re
    import subprocess
    import sys

    from zdpy_support import shm_listing, unique_name

    text = (pathlib.Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = text[text.index("\n## asyncio and readiness\n"):]
    section = section[:section.index("\n## ", 1)]
    block = re.findall(r"```python\n(.*?)```", section, flags=re.S)[0]
    name = unique_name("aio")
    assert block.count('"frames"') == 2
    try:
        proc = subprocess.run([sys.executable, "-c", block.replace('"frames"', repr(name))],
                              capture_output=True, text=True, timeout=60)
    finally:
        if name in shm_listing():
            zdshm.unlink(name)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["[b'frame 0', b'frame 1', b'frame 2']"]
