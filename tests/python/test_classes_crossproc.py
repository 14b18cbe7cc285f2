"""Size classes across real processes (start method "spawn", pytest-timeout
as watchdog): one writer publishes messages of random sizes from 16 B to
8 MiB through three classes (4 KiB x 256, 256 KiB x 32, 8 MiB x 4); three
reader processes check every message (sequence, size, checksum, content)
and report; nothing may be lost, duplicated or reordered.  A latest-value
reader on the same segment checks each take: the sample is complete
(checksum), newer than its previous one, and at most one sample behind
(zdpy_latest_children.latest_reader measures that).

ZDSHM_CLASSES_MESSAGES sets the number of messages (default 100000: about
30 s on a 2-core machine, some 59 GiB through the segment).
"""
from __future__ import annotations

import multiprocessing as mp
import os
import time

import numpy as np
import pytest

import zdshm

import zdpy_classes_children as kids
import zdpy_latest_children as latest_kids

pytestmark = [pytest.mark.crossproc, pytest.mark.timeout(300)]

CTX = mp.get_context("spawn")
READERS = 3
SEED = 20261207


def test_random_sizes_three_readers_and_a_latest_reader(posix_factory):
    count = int(os.environ.get("ZDSHM_CLASSES_MESSAGES", "100000"))
    sizes, offsets, pool = kids.plan(SEED, count)
    seg = posix_factory(None, None, classes=kids.CLASSES)
    results = CTX.Queue()
    readies = [CTX.Event() for _ in range(READERS)]
    procs = [CTX.Process(target=kids.read_stream,
                         args=(seg.name, SEED, count, readies[k], results))
             for k in range(READERS)]
    latest_ready, latest_result = CTX.Event(), CTX.Queue()
    procs.append(CTX.Process(target=latest_kids.latest_reader,
                             args=(seg.name, count, latest_ready, latest_result,
                                   kids.MessageIndex(SEED, count))))
    for p in procs:
        p.start()
    try:
        for ev in readies + [latest_ready]:
            assert ev.wait(120), "a reader did not start"
        w = seg.writer(overflow="block", timeout=60)
        assert w.wait_for_readers(READERS + 1, timeout=60) == READERS + 1
        pool_mv = memoryview(pool)
        spilled = 0
        t0 = time.monotonic()
        for i in range(count):
            n = int(sizes[i])
            off = int(offsets[i])
            body = pool[off:off + n - 16]
            loan = w.loan(nbytes=n)
            cap = loan.capacity
            assert cap >= n
            smallest = next(c for c in kids.CAPACITIES if c >= n)
            spilled += cap != smallest
            mv = memoryview(loan)
            mv[:8] = i.to_bytes(8, "little")
            mv[8:16] = kids.checksum(body).to_bytes(8, "little")
            mv[16:n] = pool_mv[off:off + n - 16]
            mv.release()
            assert loan.commit(n) == i
        elapsed = time.monotonic() - t0
        reports = [results.get(timeout=120) for _ in range(READERS)]
        latest = latest_result.get(timeout=120)
        for p in procs:
            p.join(60)
            assert p.exitcode == 0
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join()
    total = int(sizes.sum())
    print(f"\n{count} messages, {total / 2**30:.2f} GiB, {elapsed:.1f} s writer, "
          f"{spilled} loans in a larger class than the smallest fitting one; "
          f"reader class use {[r['classes'] for r in reports]}")
    for r in reports:
        assert r["count"] == count
        assert (r["lost"], r["duplicated"], r["reordered"]) == (0, 0, 0), r
        assert (r["bad_checksum"], r["bad_size"], r["bad_content"], r["bad_sn"],
                r["bad_index"]) == (0, 0, 0, 0, 0), r
        assert r["too_small_slot"] == 0 and r["dropped"] == 0, r
        assert sum(r["classes"]) == count
        # every class carried messages
        assert all(c > 0 for c in r["classes"]), r
    # The latest reader: every take complete and newer, never more than one
    # behind, and it ended on the last message; what it did not take it
    # skipped (a blocking writer drops nothing).
    assert latest["errors"] == [], latest["errors"][:5]
    assert latest["last"] == count - 1
    assert latest["max_behind"] <= 1, latest
    st = latest["stats"]
    assert (st["taken"], st["dropped"]) == (latest["taken"], 0)
    assert st["taken"] + st["skipped"] == count, st
    print(f"latest reader: {st['taken']} taken, {st['skipped']} skipped, "
          f"at most {latest['max_behind']} behind")
    info = seg.info()
    assert info["counters"]["commits"] == count
    assert info["counters"]["reclaims"] == 0
    del pool_mv
