"""Fixtures of the Python tests in tests/python.

- ``make_segment``: a factory parametrised over both backends (memory, and
  posix with a unique name, closed and unlinked after the test);
- ``seg``: one small segment of that backend; ``posix_factory``: posix only;
- an autouse fixture asserting /dev/shm is left as the test found it.

/dev/shm check: names made by these tests carry PREFIX and this session's
pid; any new entry with that prefix, and any new zdshm segment owned by this
process, fails the test (names of other test sessions are left alone).  In strict mode (ZDSHM_STRICT_SHM=1, set by .ci/run, where nothing
else runs on the machine) any new or vanished entry at all fails it.
Outside strict mode other programs may create and remove their own entries
concurrently, so those are ignored.
"""
from __future__ import annotations

import gc
import os
import time

import pytest

import zdshm

from zdpy_support import SegmentFactory, own_prefix, ours, shm_listing


@pytest.fixture(autouse=True)
def shm_left_as_found():
    before = shm_listing()
    yield
    strict = os.environ.get("ZDSHM_STRICT_SHM") == "1"
    deadline = time.monotonic() + 3.0
    collect = False        # the first look is free; collect only if needed
    while True:
        if collect:
            gc.collect()
        collect = True
        after = shm_listing()
        added, removed = after - before, before - after
        if not strict:
            added = {n for n in added if ours(n)}
            removed = {n for n in removed if n.startswith(own_prefix())}
        if not added and not removed:
            return
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    for n in added:
        if n.startswith(own_prefix()):
            try:
                zdshm.unlink(n)
            except zdshm.Error:
                pass
    pytest.fail(f"/dev/shm not left as found: added {sorted(added)}, "
                f"removed {sorted(removed)}")


@pytest.fixture(params=["memory", "posix"])
def make_segment(request):
    factory = SegmentFactory(request.param)
    yield factory
    factory.cleanup()


@pytest.fixture
def seg(make_segment):
    return make_segment()


@pytest.fixture
def posix_factory():
    factory = SegmentFactory("posix")
    yield factory
    factory.cleanup()
