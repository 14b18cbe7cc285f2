"""Child-process targets for the cross-process tests (importable by "spawn")."""
from __future__ import annotations

import os
import signal
import sys
import time

import zdshm


def echo_arrays(in_name: str, out_name: str, count: int, ready, done) -> None:
    """Takes `count` arrays from in_name and publishes each, transformed, to
    out_name (numbers * 2 + 1, bool negated) with its dtype and shape."""
    import numpy as np

    seg_in = zdshm.PosixSegment.attach(in_name)
    seg_out = zdshm.PosixSegment.attach(out_name)
    r = seg_in.reader()
    w = seg_out.writer(timeout=30)
    ready.set()
    for _ in range(count):
        s = r.take(timeout=30)
        a = np.asarray(s)
        if a.dtype == np.bool_:
            b = ~a
        else:
            b = a * 2 + 1
        with w.loan_array(a.shape, a.dtype) as out:
            out[...] = b
        del a, b, out
        s.release()
    done.wait(30)
    r.close()
    seg_in.close()
    seg_out.close()


def dlpack_fill(name: str, specs) -> None:
    """For each (format, shape): loans a slot, fills it through a DLPack
    array with 1, 2, 3, ... and commits."""
    import numpy as np

    seg = zdshm.PosixSegment.attach(name)
    w = seg.writer(timeout=30)
    for fmt, shape in specs:
        loan = w.loan()
        loan.set_format(fmt, shape)
        t = np.from_dlpack(loan)
        t[...] = np.arange(1, t.size + 1).reshape(shape)
        del t
        loan.commit()
    seg.close()


def idle_reader(name: str, ready) -> None:
    """Registers a reader and never reads (killed by the test)."""
    seg = zdshm.PosixSegment.attach(name)
    r = seg.reader()
    ready.set()
    time.sleep(600)
    r.close()


def iterate_until_goodbye(name: str, ready, result) -> None:
    seg = zdshm.PosixSegment.attach(name)
    r = seg.reader()
    ready.set()
    sns = []
    for s in r:
        sns.append((s.sn, s.tobytes()))
        s.release()
    result.put(sns)
    r.close()
    seg.close()


def interrupted_take(name: str, ready, result) -> None:
    """Blocks in take(); the parent sends SIGINT."""
    seg = zdshm.PosixSegment.attach(name)
    r = seg.reader()
    ready.set()
    t0 = time.monotonic()
    try:
        r.take()
        result.put(("took", 0.0))
    except KeyboardInterrupt:
        result.put(("interrupted", time.monotonic() - t0))
    r.close()
    seg.close()
