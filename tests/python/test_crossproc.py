"""Real processes (start method "spawn"), with pytest-timeout as watchdog."""
from __future__ import annotations

import multiprocessing as mp
import os
import signal
import threading
import time

import numpy as np
import pytest

import zdshm

import zdpy_children

pytestmark = [pytest.mark.crossproc, pytest.mark.timeout(90)]

CTX = mp.get_context("spawn")

ARRAYS = [
    np.arange(2 * 3 * 4, dtype=np.float64).reshape(2, 3, 4) / 7,
    np.array([[True, False, True], [False, False, True]]),
    np.arange(100, dtype=np.uint8),
    np.arange(12, dtype=">i4").reshape(3, 4),
    np.arange(6, dtype=np.int64).reshape(1, 2, 3, 1),
    np.array([1.5 - 2j, 3j], dtype=np.complex128),
    np.array(42, dtype=np.int16),
    np.linspace(0, 1, 50, dtype=np.float32).reshape(5, 10),
]


def _transform(a):
    return ~a if a.dtype == np.bool_ else a * 2 + 1


def test_roundtrip_numpy_arrays(posix_factory):
    seg_out = posix_factory(slot_count=4, slot_capacity=4096)
    seg_back = posix_factory(slot_count=4, slot_capacity=4096)
    back = seg_back.reader()
    ready, done = CTX.Event(), CTX.Event()
    p = CTX.Process(target=zdpy_children.echo_arrays,
                    args=(seg_out.name, seg_back.name, len(ARRAYS), ready, done))
    p.start()
    try:
        assert ready.wait(60), "child did not start"
        w = seg_out.writer(timeout=30)
        for a in ARRAYS:
            w.publish(a)
        for a in ARRAYS:
            s = back.take(timeout=30)
            out = np.asarray(s)
            assert out.dtype == a.dtype and out.shape == a.shape
            np.testing.assert_array_equal(out, _transform(a))
            del out
            s.release()
        done.set()
        p.join(30)
        assert p.exitcode == 0
    finally:
        if p.is_alive():
            p.kill()
            p.join()


def test_sigkill_reader_does_not_block_writer(posix_factory):
    seg = posix_factory(slot_count=2, slot_capacity=64)
    ready = CTX.Event()
    p = CTX.Process(target=zdpy_children.idle_reader, args=(seg.name, ready))
    p.start()
    try:
        assert ready.wait(60)
        assert bin(seg.active_mask).count("1") == 1
        w = seg.writer(overflow="block")
        w.publish(b"1")
        w.publish(b"2")
        with pytest.raises(zdshm.WaitTimeoutError):
            w.loan(timeout=0.2)          # the live reader holds both slots
        os.kill(p.pid, signal.SIGKILL)
        p.join(10)
        t0 = time.monotonic()
        loan = w.loan(timeout=10)
        elapsed = time.monotonic() - t0
        assert elapsed < 1.0, elapsed
        loan.discard()
        assert seg.active_mask == 0
        assert seg.info()["counters"]["readers_reaped"] == 1
    finally:
        if p.is_alive():
            p.kill()
            p.join()


def test_sigkill_reader_while_writer_blocked(posix_factory):
    seg = posix_factory(slot_count=1, slot_capacity=64)
    ready = CTX.Event()
    p = CTX.Process(target=zdpy_children.idle_reader, args=(seg.name, ready))
    p.start()
    try:
        assert ready.wait(60)
        w = seg.writer(overflow="block")
        w.publish(b"held")
        t_kill = time.monotonic() + 0.3
        threading.Timer(0.3, lambda: os.kill(p.pid, signal.SIGKILL)).start()
        loan = w.loan(timeout=10)        # blocked when the reader dies
        assert time.monotonic() - t_kill < 1.0
        loan.discard()
    finally:
        p.join(10)
        if p.is_alive():
            p.kill()
            p.join()


def test_iteration_ends_at_goodbye_across_processes(posix_factory):
    seg = posix_factory(slot_count=8, slot_capacity=64)
    ready, result = CTX.Event(), CTX.Queue()
    p = CTX.Process(target=zdpy_children.iterate_until_goodbye, args=(seg.name, ready, result))
    p.start()
    try:
        assert ready.wait(60)
        w = seg.writer(timeout=10)
        sns = [w.publish(f"msg{i}".encode()) for i in range(20)]
        seg.close()                      # goodbye
        got = result.get(timeout=30)
        p.join(30)
        assert p.exitcode == 0
        assert [sn for sn, _ in got] == sns
        assert [b for _, b in got] == [f"msg{i}".encode() for i in range(20)]
    finally:
        if p.is_alive():
            p.kill()
            p.join()


def test_sigint_interrupts_blocking_take_in_child(posix_factory):
    seg = posix_factory()
    ready, result = CTX.Event(), CTX.Queue()
    p = CTX.Process(target=zdpy_children.interrupted_take, args=(seg.name, ready, result))
    p.start()
    try:
        assert ready.wait(60)
        time.sleep(0.3)
        os.kill(p.pid, signal.SIGINT)
        what, waited = result.get(timeout=10)
        assert what == "interrupted" and waited >= 0.3
        p.join(10)
        assert p.exitcode == 0
    finally:
        if p.is_alive():
            p.kill()
            p.join()


def test_wait_for_readers_woken_by_registrations_in_other_processes(posix_factory):
    seg = posix_factory(slot_count=2, slot_capacity=64)
    w = seg.writer()
    assert w.wait_for_readers(0, timeout=0) == 0
    with pytest.raises(zdshm.WaitTimeoutError):
        w.wait_for_readers(1, timeout=0.05)
    events = [CTX.Event() for _ in range(2)]
    procs = [CTX.Process(target=zdpy_children.idle_reader, args=(seg.name, ev))
             for ev in events]
    try:
        t0 = time.monotonic()
        for p in procs:
            p.start()
        assert w.wait_for_readers(2, timeout=60) == 2
        waited = time.monotonic() - t0
        # Each child registered; it signals just after, so wait for that.
        assert all(ev.wait(60) for ev in events)
        assert bin(seg.active_mask).count("1") == 2
        assert waited < 60
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
            p.join(10)
    seg.reap()
