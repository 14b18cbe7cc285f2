"""Pinned examples: what the property tests found wrong, written out as
plain regression tests on both backends with the model's verdict beside the
real one, plus the 65-reader limit and the model's independence from the C
extension.
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _zdprop import unique_segment_name  # noqa: E402

zdshm = pytest.importorskip("zdshm")
from zdshm.testing import SegmentModel  # noqa: E402


@pytest.fixture(params=["memory", "posix"])
def make_segment(request):
    made = []

    def make(slot_count, slot_capacity):
        if request.param == "memory":
            seg = zdshm.MemorySegment(slot_count, slot_capacity)
        else:
            name = unique_segment_name("pin")
            seg = zdshm.PosixSegment.create(name, slot_count, slot_capacity)
            made.append(name)
        return seg

    yield make
    for name in made:
        try:
            zdshm.unlink(name)
        except zdshm.SegmentNotFoundError:
            pass


def test_close_reader_holding_a_sample_disconnects_it(make_segment):
    """reader.close() while a sample it took is alive must disconnect the
    reader (its bit leaves the active mask, writers stop waiting for it) and
    keep the sample valid; once the sample is released its index is free.

    Regression (found by the state machine): the extension ignored the
    core's -EBUSY from zd_reader_close, so the reader said closed but stayed
    registered for good (bit still in active_mask, index never reused), and
    a writer with overflow="fail" was refused forever once the slots filled."""
    seg = make_segment(2, 16)
    model = SegmentModel(2, 16)
    with seg:
        r, mr = seg.reader(), model.reader()
        w, mw = seg.writer(overflow="fail"), model.writer(overflow="fail")
        assert w.publish(b"abc") == mw.publish(b"abc") == 0
        s, ms = r.try_take(), mr.try_take()
        assert s.sn == ms.sn == 0
        r.close()
        mr.close()
        assert r.closed
        assert s.tobytes() == ms.tobytes() == b"abc"        # still valid
        assert model.active_mask == 0
        assert seg.active_mask == model.active_mask, "closed reader still active"
        # Nobody is registered: the writer may take every unpinned slot.
        assert w.publish(b"x") == mw.publish(b"x")
        assert w.publish(b"y") == mw.publish(b"y")
        s.release()
        ms.release()
        r2, mr2 = seg.reader(), model.reader()
        assert r2.index == mr2.index == 0
        r2.close()


def test_discard_of_a_discarded_loan_raises_stale(make_segment):
    """Contract: "Committing/discarding a non-live loan raises
    StaleLoanError", after a discard too.  Regression: the extension
    returned None for a second discard."""
    seg = make_segment(1, 8)
    model = SegmentModel(1, 8)
    with seg:
        loan, mloan = seg.reserve(0), model.reserve(0)
        loan.discard()
        mloan.discard()
        with pytest.raises(Exception) as model_exc:
            mloan.discard()
        assert type(model_exc.value).__name__ == "StaleLoanError"
        with pytest.raises(zdshm.StaleLoanError):
            loan.discard()
        assert seg.info()["counters"]["discards"] == model.counters["discards"] == 1


def test_the_65th_reader_is_refused(make_segment):
    """READER_MAX readers register (indices 0..63, lowest free first); the
    next raises TooManyReadersError; closing one frees exactly its index."""
    seg = make_segment(1, 8)
    model = SegmentModel(1, 8)
    with seg:
        readers = [seg.reader() for _ in range(zdshm.READER_MAX)]
        mreaders = [model.reader() for _ in range(zdshm.READER_MAX)]
        assert [r.index for r in readers] == [r.index for r in mreaders] == list(range(64))
        assert seg.active_mask == model.active_mask == (1 << 64) - 1
        with pytest.raises(zdshm.TooManyReadersError):
            seg.reader()
        with pytest.raises(Exception) as exc:
            model.reader()
        assert type(exc.value).__name__ == "TooManyReadersError"
        readers[37].close()
        mreaders[37].close()
        assert seg.reader().index == model.reader().index == 37
        for r in readers:
            r.close()


def test_model_runs_without_the_extension(tmp_path):
    """zdshm.testing.model and .schedule use the standard library only: they
    load and run as standalone files, without zdshm or its C extension."""
    import zdshm.testing.model as model_mod
    import zdshm.testing.schedule as schedule_mod

    script = tmp_path / "alone.py"
    script.write_text(f"""
import importlib.util, sys

class Block:
    def find_spec(self, name, path=None, target=None):
        if name == "zdshm" or name.startswith("zdshm."):
            raise ImportError("blocked: " + name)

sys.meta_path.insert(0, Block())

def load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod

model = load("alone_model", {model_mod.__file__!r})
schedule = load("alone_schedule", {schedule_mod.__file__!r})
seg = model.SegmentModel(2, 8)
out = schedule.run_schedule(seg, [("join", 0, 0), ("write", b"hi"), ("take", 0, False)])
assert out == [0, 0, (0, b"hi")], out
assert not any(m == "zdshm" or m.startswith("zdshm.") for m in sys.modules)
print("ok")
""")
    res = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "ok"


def test_a_sample_held_for_a_lap_of_the_ring_stays_reachable(make_segment):
    """A view holds a sample while ring_size later samples are committed, so
    its ring entry is taken over: the reader that has not read it still gets
    it first (then the newest; the reclaimed ones count as dropped), and once
    it is released it is the sample a writer reuses first."""
    seg = make_segment(2, 8)
    model = SegmentModel(2, 8)
    with seg:
        ring = seg.info()["ring_size"]
        r, mr = seg.reader(), model.reader()
        w, mw = seg.writer(overflow="reclaim"), model.writer(overflow="reclaim")
        assert w.publish(b"zero") == mw.publish(b"zero") == 0
        v, mv = seg.read(0), model.read(0)
        for sn in range(1, ring + 1):           # through slot 1, reclaimed from r
            assert w.publish(bytes([sn])) == mw.publish(bytes([sn])) == sn
        s, ms = r.try_take(), mr.try_take()
        assert s is not None and ms is not None
        assert (s.sn, s.tobytes()) == (ms.sn, ms.tobytes()) == (0, b"zero")
        s.release()
        ms.release()
        v.release()
        mv.release()
        s, ms = r.try_take(), mr.try_take()
        assert (s.sn, s.tobytes()) == (ms.sn, ms.tobytes()) == (ring, bytes([ring]))
        assert r.stats()["dropped"] == mr.stats()["dropped"] == ring - 1
        loan, mloan = seg.reserve(1 << r.index), model.reserve(1 << mr.index)
        assert loan.slot == mloan.slot == 0
        loan.discard()
        mloan.discard()
        s.release()
        ms.release()
        r.close()


def test_a_sample_marked_read_out_of_order_is_reusable(make_segment):
    """A registered reader that has not read the oldest sample, but had a
    later one marked read for it (mark_read on its index), does not hold
    the later one: a writer reuses it, the oldest stays for the reader."""
    seg = make_segment(3, 8)
    model = SegmentModel(3, 8)
    with seg:
        r, mr = seg.reader(), model.reader()
        w, mw = seg.writer(overflow="fail"), model.writer(overflow="fail")
        for sn in range(3):
            assert w.publish(bytes([sn])) == mw.publish(bytes([sn])) == sn
        with pytest.raises(zdshm.NoFreeSlotError):
            w.loan(timeout=0)
        seg.mark_read(2, r.index)
        model.mark_read(2, mr.index)
        loan, mloan = w.loan(timeout=0), mw.loan(timeout=0)
        assert loan.slot == mloan.slot == 2
        loan.discard()
        mloan.discard()
        s, ms = r.try_take(), mr.try_take()
        assert (s.sn, s.tobytes()) == (ms.sn, ms.tobytes()) == (0, b"\x00")
        s.release()
        ms.release()
        r.close()
