"""Latest-value readers against the model: bursts of publishes, each
followed by a take of a latest reader (and of a plain reader beside it),
on both backends.

Each latest take must return the newest committed sample -- never one
older than the reader received before -- with the model's skipped count,
and leave every older sample marked read (its slot free for the writer).
The plain reader takes only a few samples per burst, so it falls more than
two rings behind while the latest reader keeps its samples for some bursts:
it must still receive every held sample it has not read, oldest first, as
the model does.  The state machine (test_slot_machine.py) mixes latest
readers with everything else; this test drives only them, so that every
example exercises the skip.
"""
from __future__ import annotations

import os
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _zdprop import PROFILE, TEST_TIMEOUT, unique_segment_name  # noqa: E402

pytestmark = pytest.mark.timeout(TEST_TIMEOUT, method="thread")
zdshm = pytest.importorskip("zdshm")
from zdshm.testing import SegmentModel, normalize_stats  # noqa: E402

# (publishes, bursts the latest take is kept for, takes of the plain reader)
BURSTS = st.lists(st.tuples(st.integers(0, 8), st.integers(0, 3), st.integers(0, 2)),
                  min_size=1, max_size=12)


def run(backend, slot_count, policy, bursts, join_last):
    if backend == "memory":
        seg, name = zdshm.MemorySegment(slot_count, 16), None
    else:
        name = unique_segment_name("latest")
        seg = zdshm.PosixSegment.create(name, slot_count, 16)
    model = SegmentModel(slot_count, 16)
    try:
        w, mw = seg.writer(overflow=policy), model.writer(overflow=policy)
        w.publish(b"first"), mw.publish(b"first")
        r = seg.reader(join_last=join_last, latest=True)
        mr = model.reader(join_last=join_last, latest=True)
        plain, mplain = seg.reader(), model.reader()
        last, held = -1, []
        for n, hold, plain_takes in bursts:
            for i in range(n):
                payload = bytes([len(bursts), n, i])
                try:
                    sn = w.publish(payload, timeout=0)
                except (zdshm.NoFreeSlotError, zdshm.WaitTimeoutError) as exc:
                    with pytest.raises(Exception) as mexc:
                        mw.publish(payload, timeout=0)
                    assert type(mexc.value).__name__ == type(exc).__name__
                    break
                assert mw.publish(payload, timeout=0) == sn
            newest = max((s.sn for s in model.committed_slots()
                          if not s.read_mask & (1 << mr.index)), default=None)
            s, ms = r.try_take(), mr.try_take()
            for entry in held:          # what earlier takes kept
                entry[2] -= 1
                if entry[2] < 0:
                    entry[0].release()
                    entry[1].release()
            held = [entry for entry in held if entry[2] >= 0]
            assert (s is None) == (ms is None) == (newest is None)
            if s is not None:
                assert s.sn == ms.sn == newest
                assert s.sn > last
                last = s.sn
                assert s.tobytes() == ms.tobytes()
                for i in range(slot_count):
                    if seg.slot_state(i) == "committed":
                        hdr = seg.read_copy(i)[0]
                        assert hdr["sn"] >= s.sn or hdr["read_mask"] & (1 << r.index)
                if hold:
                    held.append([s, ms, hold - 1])
                else:
                    s.release()
                    ms.release()
            assert normalize_stats(r.stats()) == mr.stats()
            # The plain reader, oldest first, a few per burst: it falls
            # behind, past samples the latest reader still holds.
            for _ in range(plain_takes):
                p, mp = plain.try_take(), mplain.try_take()
                assert (None if p is None else p.sn) == (None if mp is None else mp.sn)
                if p is None:
                    break
                assert p.tobytes() == mp.tobytes()
                p.release()
                mp.release()
            assert normalize_stats(plain.stats()) == mplain.stats()
            for i in range(slot_count):
                assert seg.slot_state(i) == model.slot_state(i)
        while True:                     # the rest, still oldest first
            p, mp = plain.try_take(), mplain.try_take()
            assert (None if p is None else p.sn) == (None if mp is None else mp.sn)
            if p is None:
                break
            p.release()
            mp.release()
        assert normalize_stats(plain.stats()) == mplain.stats()
        for real, mod, _ in held:
            real.release()
            mod.release()
    finally:
        seg.close()
        if name is not None:
            zdshm.unlink(name)


@pytest.mark.parametrize("backend", ["memory", "posix"])
@PROFILE
@given(slot_count=st.integers(1, 6), policy=st.sampled_from(["fail", "reclaim"]),
       bursts=BURSTS, join_last=st.integers(0, 1))
def test_latest_takes_track_the_model(backend, slot_count, policy, bursts, join_last):
    run(backend, slot_count, policy, bursts, join_last)
