"""A reader process that dies while it holds a sample: the reap that finds
it gone drops its pin, so the slot is reusable again (the lockstep tests
kill readers between operations, when they hold nothing)."""
from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import textwrap

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _zdprop import unique_segment_name  # noqa: E402

zdshm = pytest.importorskip("zdshm")

pytestmark = [pytest.mark.crossproc, pytest.mark.timeout(60)]

CHILD = textwrap.dedent("""
    import sys, time
    import zdshm

    seg = zdshm.PosixSegment.attach(sys.argv[1])
    reader = seg.reader(join_last=1)
    s = reader.take(timeout=5)
    print("held", s.sn, reader.index, flush=True)
    time.sleep(60)
""")


def test_reap_drops_the_pins_of_a_dead_reader():
    name = unique_segment_name("cleanup")
    seg = zdshm.PosixSegment.create(name, 1, 16)
    child = None
    try:
        writer = seg.writer(overflow="fail")
        assert writer.publish(b"held") == 0
        child = subprocess.Popen([sys.executable, "-c", CHILD, name],
                                 stdout=subprocess.PIPE, text=True)
        ready, _, _ = select.select([child.stdout], [], [], 20.0)
        assert ready, "the reader process did not take the sample"
        assert child.stdout.readline().split()[:2] == ["held", "0"]
        # Alive and holding it: no slot for the writer.
        with pytest.raises(zdshm.NoFreeSlotError):
            writer.loan(timeout=0)
        child.send_signal(signal.SIGKILL)
        assert child.wait(timeout=20) == -signal.SIGKILL
        assert seg.reap() == (1, 0)
        assert seg.active_mask == 0
        loan = writer.loan(timeout=0)
        assert loan.slot == 0
        loan.discard()
        writer.close()
    finally:
        if child is not None and child.poll() is None:
            child.kill()
            child.wait()
        if child is not None:
            child.stdout.close()
        seg.close()
        zdshm.unlink(name)
