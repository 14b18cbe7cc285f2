"""Readers cannot scribble: a sample is exported from a read-only mapping, so
a process that writes through one anyway (ctypes, a writeable flag forced
through a ctypes buffer) dies of SIGSEGV and every reader still sees the
bytes that were committed."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import zdshm

pytestmark = [pytest.mark.crossproc, pytest.mark.timeout(90)]

PAYLOAD = np.arange(64, dtype=np.uint8)

CHILD = textwrap.dedent(r"""
    import ctypes, resource, sys
    import numpy as np
    import zdshm

    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))   # no core file
    backend, arg, via, how = sys.argv[1:5]
    if backend == "memory":
        seg = zdshm.MemorySegment(2, 64)
        r = seg.reader()
        seg.writer().publish(np.arange(64, dtype=np.uint8))
    elif backend == "posix":
        seg = zdshm.PosixSegment.attach(arg)
        r = seg.reader(join_last=1)
    else:
        seg = zdshm.AnonymousSegment.attach_fd(int(arg))
        r = seg.reader(join_last=1)
    s = r.take(timeout=20) if via == "take" else seg.read(0)
    a = np.asarray(s)
    assert not a.flags.writeable and a[5] == 5
    print("scribbling", flush=True)
    if how == "memmove":
        ctypes.memmove(a.ctypes.data, b"\xee" * a.nbytes, a.nbytes)
    else:
        forced = np.frombuffer((ctypes.c_uint8 * a.nbytes).from_address(a.ctypes.data),
                               dtype=np.uint8)
        assert forced.flags.writeable
        forced[:] = 0xEE
    print("survived", flush=True)
""")


def _scribble(backend, arg, via, how, **kw):
    p = subprocess.Popen([sys.executable, "-c", CHILD, backend, str(arg), via, how],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)
    try:
        out, err = p.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
        pytest.fail("child timed out")
    assert out.decode().split() == ["scribbling"], err.decode()
    assert p.returncode == -signal.SIGSEGV, err.decode()


CASES = [("take", "memmove"), ("read", "forced-writeable")]


@pytest.mark.parametrize("via, how", CASES)
def test_memory_sample_write_faults(via, how):
    _scribble("memory", "-", via, how)


@pytest.mark.parametrize("backend", ["posix", "anonymous"])
@pytest.mark.parametrize("via, how", CASES)
def test_shared_sample_write_faults_and_changes_nothing(backend, via, how,
                                                        posix_factory):
    if backend == "posix":
        seg = posix_factory(slot_count=2, slot_capacity=64)
        arg, kw = seg.name, {}
    else:
        seg = zdshm.AnonymousSegment(2, 64)
        arg, kw = seg.fileno(), {"pass_fds": [seg.fileno()]}
    try:
        mine = seg.reader()
        seg.writer().publish(PAYLOAD)
        _scribble(backend, arg, via, how, **kw)
        # The dead child's reader is found by its free liveness lock (the
        # anonymous handle holds its own lock on the memfd).
        seg.reap()
        assert seg.info()["counters"]["readers_reaped"] == 1
        with mine.take(timeout=1) as s:              # the parent survived
            np.testing.assert_array_equal(np.asarray(s), PAYLOAD)
        with seg.read(0) as s:
            assert bytes(s) == PAYLOAD.tobytes()
    finally:
        if backend == "anonymous":
            seg.close()


def test_loans_stay_writable_and_samples_see_them(seg):
    # The two mappings show the same pages: what the loan holds is what the
    # sample shows, at a different (read-only) address.
    loan = seg.reserve()
    np.asarray(loan)[:4] = [9, 8, 7, 6]
    loan.commit(4)
    with seg.read(loan.slot) as s:
        assert bytes(s) == b"\x09\x08\x07\x06"
        assert s.address != loan.address
        mv = memoryview(s)
        assert mv.readonly
        with pytest.raises(TypeError):
            mv[0] = 1
        mv.release()
