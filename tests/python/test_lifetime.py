"""The lifetime matrix: memoryview, numpy array, slice and .view() outliving
commit, release, close and `del seg; gc.collect()`.  Each case ends in the
documented exception or a kept-alive mapping, never in a crash."""
from __future__ import annotations

import gc
import time
import weakref

import numpy as np
import pytest

import zdshm

# A "view" of an exporter, built four ways.
VIEWS = {
    "memoryview": lambda obj: memoryview(obj),
    "numpy": lambda obj: np.asarray(obj),
    "slice": lambda obj: memoryview(obj)[3:9],
    "np-view": lambda obj: np.frombuffer(obj, dtype=np.uint8)[2:].view(np.int8),
}


def _read(view) -> bytes:
    return bytes(memoryview(view).cast("B")[:3]) if not isinstance(view, np.ndarray) \
        else view.view(np.uint8).reshape(-1)[:3].tobytes()


# --- loans --------------------------------------------------------------------

@pytest.mark.parametrize("kind", VIEWS)
def test_loan_commit_refused_while_view_alive(seg, kind):
    loan = seg.reserve()
    view = VIEWS[kind](loan)
    assert loan.exports >= 1
    with pytest.raises(zdshm.ViewsAliveError, match=r"view.* alive") as ei:
        loan.commit(8)
    assert isinstance(ei.value, BufferError)
    assert loan.live and seg.slot_state(loan.slot) == "loaned"
    with pytest.raises(zdshm.ViewsAliveError):
        loan.discard()
    assert loan.live
    del view
    gc.collect()
    assert loan.exports == 0
    assert loan.commit(8) >= 0


def test_loan_commit_message_names_count(seg):
    loan = seg.reserve()
    a, b = memoryview(loan), memoryview(loan)
    with pytest.raises(zdshm.ViewsAliveError, match="2 views"):
        loan.commit()
    a.release()
    b.release()
    loan.commit()


def test_no_new_views_after_commit(seg):
    loan = seg.reserve()
    loan.commit(1)
    with pytest.raises(BufferError, match="already committed"):
        memoryview(loan)
    with pytest.raises(BufferError):
        np.frombuffer(loan, np.uint8)


@pytest.mark.parametrize("kind", VIEWS)
def test_loan_view_blocks_segment_close(seg, kind):
    loan = seg.reserve()
    view = VIEWS[kind](loan)
    with pytest.raises(zdshm.ViewsAliveError):
        seg.close()
    assert not seg.closed
    assert seg.slot_state(loan.slot) == "loaned"
    del view
    gc.collect()
    seg.close()
    assert seg.closed and not loan.live
    with pytest.raises(zdshm.ClosedError):
        loan.commit()


@pytest.mark.parametrize("kind", VIEWS)
def test_loan_view_outlives_del_seg(make_segment, kind):
    seg = make_segment()
    make_segment.segments.clear()       # the test owns the only reference
    ref = weakref.ref(seg)
    loan = seg.reserve()
    view = VIEWS[kind](loan)
    del seg, loan
    gc.collect()
    assert ref() is not None            # kept alive by loan <- view
    # the mapping is alive: writing and reading through the view works
    if isinstance(view, np.ndarray):
        view[:] = 7
        assert int(view[0]) == 7
    else:
        view[0] = 7
        assert view[0] == 7
    del view
    gc.collect()
    assert ref() is None                # loan discarded, segment closed


def test_abandoned_loan_is_discarded(seg):
    r = seg.reader()
    discards = seg.info()["counters"]["discards"]
    loan = seg.reserve()
    memoryview(loan)[:4] = b"lost"
    slot = loan.slot
    del loan
    gc.collect()
    assert seg.slot_state(slot) == "free"
    assert seg.info()["counters"]["discards"] == discards + 1
    assert r.try_take() is None


def test_abandoned_writer_loan_is_discarded(seg):
    w = seg.writer()
    r = seg.reader()
    w.loan()                      # result dropped at once
    assert all(seg.slot_state(i) == "free" for i in range(seg.slot_count))
    assert r.try_take() is None


# --- samples -------------------------------------------------------------------

def _one_sample(seg, payload=b"0123456789abcdef"):
    w = seg.writer()
    r = seg.reader()
    w.publish(payload)
    return r, r.take(timeout=1)


@pytest.mark.parametrize("kind", VIEWS)
def test_sample_release_refused_while_view_alive(make_segment, kind):
    seg = make_segment(slot_count=1)
    r, s = _one_sample(seg)
    view = VIEWS[kind](s)
    with pytest.raises(zdshm.ViewsAliveError, match="release"):
        s.release()
    assert not s.released
    # the slot stays pinned: nothing can reuse it, even with no reader left
    r.close()
    with pytest.raises(zdshm.NoFreeSlotError):
        seg.reserve(0)
    assert _read(view) == b"012"[:3] or kind in ("slice", "np-view")
    del view
    gc.collect()
    s.release()
    seg.reserve(0).discard()


@pytest.mark.parametrize("kind", VIEWS)
def test_view_outlives_sample_object(make_segment, kind):
    seg = make_segment(slot_count=1)
    r, s = _one_sample(seg)
    view = VIEWS[kind](s)
    expected = _read(view)
    del s
    gc.collect()
    r.close()
    with pytest.raises(zdshm.NoFreeSlotError):
        seg.reserve(0)               # still pinned by the view
    assert _read(view) == expected
    del view
    gc.collect()
    seg.reserve(0).discard()         # released when the last view died


@pytest.mark.parametrize("kind", VIEWS)
def test_sample_view_blocks_segment_close(seg, kind):
    r, s = _one_sample(seg)
    view = VIEWS[kind](s)
    with pytest.raises(zdshm.ViewsAliveError):
        seg.close()
    assert not seg.closed and not s.released
    assert _read(view)
    del view
    gc.collect()
    seg.close()
    assert s.released and r.closed
    with pytest.raises(zdshm.ClosedError):
        memoryview(s)


@pytest.mark.parametrize("kind", VIEWS)
def test_sample_view_outlives_del_seg(make_segment, kind):
    seg = make_segment()
    make_segment.segments.clear()
    ref = weakref.ref(seg)
    payload = bytes(range(16))
    r, s = _one_sample(seg, payload)
    view = VIEWS[kind](s)
    expected = _read(view)
    del seg, r, s
    gc.collect()
    assert ref() is not None
    assert _read(view) == expected
    del view
    gc.collect()
    assert ref() is None


def test_numpy_array_over_sample_survives_everything(make_segment):
    seg = make_segment()
    make_segment.segments.clear()
    w = seg.writer()
    r = seg.reader()
    w.publish(np.arange(16, dtype=np.float64).reshape(4, 4))
    arr = np.asarray(r.take(timeout=1))
    del seg, w, r
    gc.collect()
    assert arr.sum() == sum(range(16))
    assert arr.base is not None


def test_exit_defers_close_while_views_alive(make_segment):
    seg = make_segment()
    with seg:
        w = seg.writer()
        r = seg.reader()
        w.publish(b"deferred")
        arr = np.asarray(r.take(timeout=1))
    assert seg.closed
    with pytest.raises(zdshm.ClosedError):
        seg.reserve()
    with pytest.raises(zdshm.ClosedError):
        r.take(timeout=0)
    assert arr.tobytes() == b"deferred"       # still mapped
    del arr
    gc.collect()
    assert "closed" in repr(seg)              # really closed now


def test_close_releases_samples_and_discards_loans(seg):
    r, s = _one_sample(seg)
    loan = seg.reserve()
    seg.close()
    assert s.released and not loan.live and r.closed
    s.release()          # no-op
    with pytest.raises(zdshm.ClosedError):
        loan.discard()
    with pytest.raises(zdshm.ClosedError):
        s.tobytes()


def test_close_posix_creator_with_reader_elsewhere(posix_factory):
    creator = posix_factory()
    other = posix_factory.attach(creator)
    r = other.reader()
    creator.writer().publish(b"x")
    s = r.take(timeout=1)
    arr = np.asarray(s)
    creator.close()
    assert arr.tobytes() == b"x"               # other handle's mapping is independent
    with pytest.raises(zdshm.ViewsAliveError):
        other.close()
    del arr
    s.release()
    other.close()


# --- ending a producer -----------------------------------------------------------

def test_committed_frame_does_not_block_close(make_segment):
    seg = make_segment()
    w, r = seg.writer(), seg.reader()
    with w.loan_array((16,), np.uint8) as frame:
        frame[:] = 3
    tail = frame[8:]                     # a (read-only) view made after the commit
    seg.close()                          # the frames are committed: no ViewsAliveError
    assert seg.closed and r.closed
    assert "closing" in repr(seg)        # the unmap waits for the frame
    assert frame.sum() == 48 and tail.sum() == 24      # still mapped
    with pytest.raises(zdshm.ClosedError):
        w.publish(b"x")
    del frame, tail
    gc.collect()
    assert "closed" in repr(seg)


def test_close_and_exit_say_goodbye_at_once(posix_factory):
    for how in ("close", "exit"):
        creator = posix_factory()
        other = posix_factory.attach(creator)
        r = other.reader()
        w = creator.writer()
        mine = creator.reader()
        with w.loan_array((4,), np.uint8) as frame:
            frame[:] = 1
        w.publish(b"last")
        held = np.asarray(mine.take(timeout=1))         # a sample view: defers
        if how == "close":
            del held
            creator.close()
        else:
            creator.__exit__(None, None, None)
        assert "closing" in repr(creator)               # not unmapped yet
        assert other.info()["goodbye"]
        t0 = time.monotonic()
        assert [s.tobytes() for s in r] == [bytes([1] * 4), b"last"]   # drained, ended
        assert time.monotonic() - t0 < 1.0
        assert other.info()["active_mask"] == 1 << r.index  # the creator's reader is gone
        del frame
        if how == "exit":
            assert held.tobytes() == bytes([1] * 4)    # still pinned and mapped
            del held
        gc.collect()
        assert "closed" in repr(creator)


def test_views_alive_error_names_what_is_alive(make_segment):
    seg = make_segment()
    w, r = seg.writer(), seg.reader()
    w.publish(b"abc")
    s = r.take(timeout=1)
    views = [memoryview(s), np.asarray(s)]
    loan = seg.reserve()
    lv = memoryview(loan)
    with pytest.raises(zdshm.ViewsAliveError) as ei:
        seg.close()
    msg = str(ei.value)
    assert f"the sample of slot {s.slot}, sn {s.sn} (2 views)" in msg, msg
    assert f"the live loan of slot {loan.slot} (1 view)" in msg, msg
    assert "del those arrays or call .release()" in msg and "with seg:" in msg
    with pytest.raises(zdshm.ViewsAliveError, match=f"2 views of the sample of slot "
                       f"{s.slot}, sn {s.sn} are still alive.*del the arrays"):
        s.release()
    with pytest.raises(zdshm.ViewsAliveError,
                       match=f"1 view of the loan of slot {loan.slot} is still alive"):
        loan.commit()
    del views, lv
    seg.close()


# Regression: numpy used to wrap a released sample in a 0-d object array
# (its buffer request failed, and numpy falls back to treating the object as
# a scalar); __array__ now lets the buffer's error through.
@pytest.mark.parametrize("convert", [np.asarray, np.array,
                                     lambda s: np.asarray(s, dtype=np.uint8),
                                     lambda s: np.array(s, copy=True)])
def test_asarray_of_released_sample_raises_closed(seg, convert):
    r, s = _one_sample(seg)
    s.release()
    with pytest.raises(zdshm.ClosedError, match="released"):
        convert(s)
    with pytest.raises(zdshm.ClosedError):
        s.__array__()


def test_asarray_of_ended_loan_raises_buffer_error(seg):
    loan = seg.reserve()
    loan.commit(1)
    with pytest.raises(BufferError, match="already committed"):
        np.asarray(loan)
    loan = seg.reserve()
    loan.discard()
    with pytest.raises(BufferError, match="already discarded"):
        np.asarray(loan)


def test_dunder_array_of_live_sample(seg):
    r, s = _one_sample(seg)
    a = s.__array__()
    assert a.tobytes() == s.tobytes() and not a.flags.writeable
    assert a.__array_interface__["data"][0] == s.address
    assert s.__array__(np.int8).dtype == np.int8
    assert s.__array__(copy=True).flags.writeable
    del a


# --- export counts carry the close path -----------------------------------------

def test_closed_reader_index_freed_by_last_release(seg):
    w, r = seg.writer(), seg.reader()
    w.publish(b"held")
    s = r.take(timeout=1)
    index = r.index
    r.close()                                  # disconnected at once
    assert r.closed and seg.active_mask == 0
    assert s.tobytes() == b"held"              # still pinned
    others = [seg.reader() for _ in range(zdshm.READER_MAX - 1)]
    assert index not in {o.index for o in others}   # kept while pinned
    with pytest.raises(zdshm.TooManyReadersError):
        seg.reader()
    s.release()                                # the core frees the entry now
    again = seg.reader()
    assert again.index == index
    for o in [again, *others]:
        o.close()


def test_deferred_close_ends_when_last_view_goes(make_segment):
    seg = make_segment()
    w, r = seg.writer(), seg.reader()
    w.publish(b"one")
    w.publish(b"two")
    viewed = r.take(timeout=1)
    bare = r.take(timeout=1)                   # a sample without views
    loan = seg.reserve()                       # a live loan without views
    arr = np.asarray(viewed)
    with seg:
        pass
    assert seg.closed and r.closed and "closing" in repr(seg)
    with pytest.raises(zdshm.ClosedError):
        memoryview(loan)                       # no new views of a closed segment
    assert bare.tobytes() == b"two" and arr.tobytes() == b"one"
    del arr                                    # the last view: detach
    assert viewed.released and bare.released and not loan.live
    with pytest.raises(zdshm.ClosedError):
        bare.tobytes()
    assert "closing" in repr(seg)              # the objects keep the mapping
    del viewed, bare, loan
    gc.collect()
    assert "closed" in repr(seg)               # unmapped with the last of them


def test_segment_dealloc_unmaps_once_nothing_references_it(make_segment):
    seg = make_segment()
    make_segment.segments.clear()
    w, r = seg.writer(), seg.reader()
    w.publish(b"x")
    s = r.take(timeout=1)
    ref = weakref.ref(seg)
    del seg, w, r
    gc.collect()
    assert ref() is not None                   # the sample holds it
    assert s.tobytes() == b"x"
    del s
    gc.collect()
    assert ref() is None


def test_consecutive_samples_keep_their_own_layouts(seg):
    # The segment remembers the last decoded meta: a sample with another
    # meta (or none) is decoded, one with the same meta shares the layout.
    w, r = seg.writer(), seg.reader()
    sent = [np.arange(6, dtype=np.float32).reshape(2, 3),
            np.arange(6, dtype=np.float32).reshape(3, 2),
            np.arange(6, dtype=np.float32).reshape(3, 2) + 1,
            np.arange(3, dtype=">i8"),
            b"raw bytes",
            np.arange(6, dtype=np.float32).reshape(2, 3)]
    for obj in sent:                     # one at a time: any slot count
        w.publish(obj, timeout=5)
        with r.take(timeout=1) as s:
            out = np.asarray(s)
            want = np.frombuffer(obj, np.uint8) if isinstance(obj, bytes) else obj
            assert out.dtype == want.dtype and out.shape == want.shape
            np.testing.assert_array_equal(out, want)
            del out


# --- consumers that keep a reference, not a view ---------------------------------

def test_reference_only_consumer_keeps_the_mapping_after_close(make_segment):
    # np.ndarray(buffer=...) takes a buffer and gives it back at once,
    # keeping only a reference to the sample or loan: no export.  Release,
    # commit and close cannot see it, but the mapping stays under it until
    # the sample and the loan are collected.
    seg = make_segment()
    w, r = seg.writer(), seg.reader()
    w.publish(np.arange(4, dtype=np.int32))
    s = r.take(timeout=1)
    a = np.ndarray((4,), np.int32, buffer=s)
    assert s.exports == 0
    loan = w.loan()
    b = np.ndarray((8,), np.uint8, buffer=loan)
    s.release()
    loan.commit(8)
    b[0] = 99
    r.close()
    w.close()
    seg.close()
    assert seg.closed and "closing" in repr(seg)      # not unmapped under a and b
    assert a.tolist() == [0, 1, 2, 3] and b[0] == 99
    del s, loan
    gc.collect()
    assert "closing" in repr(seg)                     # a and b hold them still
    assert a.sum() == 6
    del a, b
    gc.collect()
    assert "closed" in repr(seg)


# --- a segment closed by Python code that runs inside a method -------------------

GC_CLOSES = """
import gc, sys, zdshm
seg = zdshm.{cls}
class Closer:
    def __del__(self):
        seg.close()
def garbage():
    a = Closer(); a.me = a
gc.disable(); garbage()
keep = [{{}} for _ in range(200)] + [[] for _ in range(200)]
gc.set_threshold(1); gc.enable()
out = seg.{method}()
print(type(out).__name__, seg.closed)
"""


@pytest.mark.parametrize("method", ["info", "slots"])
def test_a_finalizer_closing_the_segment_inside_a_method(tmp_path, method):
    # Making the result's objects may run a collection, whose finalizer
    # closes the segment: the method must not touch the handle after that
    # (it used to, and crashed).  In a child, so a crash is a failure here.
    import subprocess
    import sys

    for cls in ("MemorySegment(slot_count=4, slot_capacity=64)",
                "MemorySegment(classes=[(2, 64), (2, 4096)])"):
        p = subprocess.run([sys.executable, "-c", GC_CLOSES.format(cls=cls, method=method)],
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, (cls, p.returncode, p.stderr[-2000:])
        assert p.stdout.split() == [{"info": "dict", "slots": "list"}[method], "True"], p.stdout


class _ClosesOnIndex:
    """An int-like argument whose __index__ closes the segment."""

    def __init__(self, seg, value: int) -> None:
        self.seg, self.value = seg, value

    def __index__(self) -> int:
        self.seg.close()
        return self.value


@pytest.mark.parametrize("call", ["reserve", "slot_capacity_of", "loan", "try_loan"])
def test_an_argument_closing_the_segment_before_the_call(make_segment, call):
    # Arguments are converted before the segment is checked: an __index__
    # that closes it gives ClosedError, never a call on a closed handle
    # (a crash) nor a loan made after the goodbye.
    seg = make_segment(4, 64)
    w = seg.writer()
    arg = _ClosesOnIndex(seg, 1 if call == "slot_capacity_of" else 8)
    with pytest.raises(zdshm.ClosedError):
        {"reserve": lambda: seg.reserve(0, nbytes=arg),
         "slot_capacity_of": lambda: seg.slot_capacity_of(arg),
         "loan": lambda: w.loan(nbytes=arg),
         "try_loan": lambda: w.try_loan(nbytes=arg)}[call]()
    assert seg.closed and "closed" in repr(seg)
