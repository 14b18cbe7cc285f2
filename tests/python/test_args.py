"""Every argument of every public call, given a bad type and a bad value,
raises TypeError/ValueError/OverflowError naming the value before anything
happens: slot states, counters, notify generation, active readers, open
objects and the /dev/shm listing are unchanged."""
from __future__ import annotations

import math

import numpy as np
import pytest

import zdshm

from zdpy_support import snapshot, unique_name

NAN = float("nan")
BIG = 2 ** 64
HUGE = 2 ** 70

# (id, call(ctx), bad value, exception).  ctx has seg, writer, reader, loan.
CASES = [
    # Segment.reserve
    ("reserve-type", lambda c, v: c.seg.reserve(v), "1", TypeError),
    ("reserve-float", lambda c, v: c.seg.reserve(v), 1.5, TypeError),
    ("reserve-bool", lambda c, v: c.seg.reserve(v), True, TypeError),
    ("reserve-neg", lambda c, v: c.seg.reserve(v), -1, ValueError),
    ("reserve-big", lambda c, v: c.seg.reserve(v), BIG, OverflowError),
    ("reserve-kw", lambda c, v: c.seg.reserve(active_readers_mask=v), None, TypeError),
    # next_unread
    ("next_unread-type", lambda c, v: c.seg.next_unread(v), "0", TypeError),
    ("next_unread-neg", lambda c, v: c.seg.next_unread(v), -1, ValueError),
    ("next_unread-64", lambda c, v: c.seg.next_unread(v), 64, ValueError),
    ("next_unread-big", lambda c, v: c.seg.next_unread(v), BIG, OverflowError),
    # read / read_copy / slot_state
    ("read-type", lambda c, v: c.seg.read(v), 0.0, TypeError),
    ("read-neg", lambda c, v: c.seg.read(v), -1, ValueError),
    ("read-count", lambda c, v: c.seg.read(v), 4, ValueError),
    ("read-big", lambda c, v: c.seg.read(v), HUGE, OverflowError),
    ("read_copy-type", lambda c, v: c.seg.read_copy(v), None, TypeError),
    ("read_copy-count", lambda c, v: c.seg.read_copy(v), 4, ValueError),
    ("slot_state-type", lambda c, v: c.seg.slot_state(v), "1", TypeError),
    ("slot_state-count", lambda c, v: c.seg.slot_state(v), 99, ValueError),
    # mark_read(slot, reader)
    ("mark_read-slot-type", lambda c, v: c.seg.mark_read(v, 0), "0", TypeError),
    ("mark_read-slot-value", lambda c, v: c.seg.mark_read(v, 0), 4, ValueError),
    ("mark_read-reader-type", lambda c, v: c.seg.mark_read(0, v), [0], TypeError),
    ("mark_read-reader-value", lambda c, v: c.seg.mark_read(0, v), 64, ValueError),
    ("mark_read-reader-big", lambda c, v: c.seg.mark_read(0, v), BIG, OverflowError),
    # mark_reader_disconnected
    ("disconnected-type", lambda c, v: c.seg.mark_reader_disconnected(v), "3", TypeError),
    ("disconnected-value", lambda c, v: c.seg.mark_reader_disconnected(v), 64, ValueError),
    ("disconnected-neg", lambda c, v: c.seg.mark_reader_disconnected(v), -5, ValueError),
    # evict_stale(max_age, active_mask, *, now_ns)
    ("evict-age-type", lambda c, v: c.seg.evict_stale(v, 1), "1", TypeError),
    ("evict-age-neg", lambda c, v: c.seg.evict_stale(v, 1), -1.0, ValueError),
    ("evict-age-nan", lambda c, v: c.seg.evict_stale(v, 1), NAN, ValueError),
    ("evict-age-none", lambda c, v: c.seg.evict_stale(v, 1), None, TypeError),
    ("evict-mask-type", lambda c, v: c.seg.evict_stale(0.0, v), 1.0, TypeError),
    ("evict-mask-neg", lambda c, v: c.seg.evict_stale(0.0, v), -1, ValueError),
    ("evict-mask-big", lambda c, v: c.seg.evict_stale(0.0, v), BIG, OverflowError),
    ("evict-now-type", lambda c, v: c.seg.evict_stale(0.0, 1, now_ns=v), 1.5, TypeError),
    ("evict-now-neg", lambda c, v: c.seg.evict_stale(0.0, 1, now_ns=v), -1, ValueError),
    ("evict-now-big", lambda c, v: c.seg.evict_stale(0.0, 1, now_ns=v), BIG, OverflowError),
    # wait_for_change(last, timeout)
    ("wait-last-type", lambda c, v: c.seg.wait_for_change(v, 0), "0", TypeError),
    ("wait-last-neg", lambda c, v: c.seg.wait_for_change(v, 0), -1, ValueError),
    ("wait-last-big", lambda c, v: c.seg.wait_for_change(v, 0), BIG, OverflowError),
    ("wait-timeout-type", lambda c, v: c.seg.wait_for_change(0, v), "1", TypeError),
    ("wait-timeout-neg", lambda c, v: c.seg.wait_for_change(0, v), -0.5, ValueError),
    ("wait-timeout-nan", lambda c, v: c.seg.wait_for_change(0, v), NAN, ValueError),
    # writer(overflow, timeout, spin)
    ("writer-overflow-type", lambda c, v: c.seg.writer(v), 1, TypeError),
    ("writer-overflow-value", lambda c, v: c.seg.writer(v), "drop", ValueError),
    ("writer-timeout-type", lambda c, v: c.seg.writer(timeout=v), "1", TypeError),
    ("writer-timeout-neg", lambda c, v: c.seg.writer(timeout=v), -1, ValueError),
    ("writer-timeout-nan", lambda c, v: c.seg.writer(timeout=v), NAN, ValueError),
    ("writer-spin-type", lambda c, v: c.seg.writer(spin=v), None, TypeError),
    ("writer-spin-neg", lambda c, v: c.seg.writer(spin=v), -0.1, ValueError),
    ("writer-spin-big", lambda c, v: c.seg.writer(spin=v), 11.0, ValueError),
    ("writer-spin-inf", lambda c, v: c.seg.writer(spin=v), math.inf, ValueError),
    ("writer-unknown-kw", lambda c, v: c.seg.writer(policy=v), "block", TypeError),
    # reader(join_last, spin)
    ("reader-join-type", lambda c, v: c.seg.reader(v), "1", TypeError),
    ("reader-join-neg", lambda c, v: c.seg.reader(v), -1, ValueError),
    ("reader-join-big", lambda c, v: c.seg.reader(v), BIG, OverflowError),
    ("reader-spin-type", lambda c, v: c.seg.reader(spin=v), "0", TypeError),
    ("reader-spin-nan", lambda c, v: c.seg.reader(spin=v), NAN, ValueError),
    # Writer.loan(timeout) / publish(obj, timeout)
    ("loan-timeout-type", lambda c, v: c.writer.loan(v), "0", TypeError),
    ("loan-timeout-neg", lambda c, v: c.writer.loan(timeout=v), -1, ValueError),
    ("loan-timeout-nan", lambda c, v: c.writer.loan(timeout=v), NAN, ValueError),
    ("publish-obj-type", lambda c, v: c.writer.publish(v), 12345, TypeError),
    ("publish-obj-str", lambda c, v: c.writer.publish(v), "text", TypeError),
    ("publish-noncontig", lambda c, v: c.writer.publish(v),
     np.arange(20, dtype=np.int16)[::2], ValueError),
    ("publish-format", lambda c, v: c.writer.publish(v),
     np.zeros(2, dtype=[("a", "i4"), ("b", "f4")]), ValueError),
    ("publish-ndim", lambda c, v: c.writer.publish(v), np.zeros((1,) * 7, np.uint8), ValueError),
    ("publish-too-large", lambda c, v: c.writer.publish(v), bytes(257), zdshm.SampleTooLargeError),
    ("publish-timeout-type", lambda c, v: c.writer.publish(b"x", v), "1", TypeError),
    ("publish-timeout-nan", lambda c, v: c.writer.publish(b"x", timeout=v), NAN, ValueError),
    # Reader.take(timeout)
    ("take-timeout-type", lambda c, v: c.reader.take(v), "1", TypeError),
    ("take-timeout-neg", lambda c, v: c.reader.take(timeout=v), -1e-9, ValueError),
    ("take-timeout-nan", lambda c, v: c.reader.take(v), NAN, ValueError),
    # Loan.commit(nbytes)
    ("commit-type", lambda c, v: c.loan.commit(v), "10", TypeError),
    ("commit-float", lambda c, v: c.loan.commit(v), 10.0, TypeError),
    ("commit-neg", lambda c, v: c.loan.commit(v), -1, ValueError),
    ("commit-capacity", lambda c, v: c.loan.commit(v), 257, zdshm.SampleTooLargeError),
    ("commit-big", lambda c, v: c.loan.commit(v), BIG, OverflowError),
    # Loan.set_format(format, shape)
    ("set_format-format-type", lambda c, v: c.loan.set_format(v, (1,)), 1, TypeError),
    ("set_format-format-bytes", lambda c, v: c.loan.set_format(v, (1,)), b"B", TypeError),
    ("set_format-format-value", lambda c, v: c.loan.set_format(v, (1,)), "ii", ValueError),
    ("set_format-format-struct", lambda c, v: c.loan.set_format(v, (1,)), "T{i:a:}", ValueError),
    ("set_format-format-std-g", lambda c, v: c.loan.set_format(v, (1,)), "<g", ValueError),
    ("set_format-format-Zq", lambda c, v: c.loan.set_format(v, (1,)), "Zq", ValueError),
    ("set_format-format-empty", lambda c, v: c.loan.set_format(v, (1,)), "", ValueError),
    ("set_format-shape-type", lambda c, v: c.loan.set_format("B", v), "ab", TypeError),
    ("set_format-shape-int", lambda c, v: c.loan.set_format("B", v), 3, TypeError),
    ("set_format-shape-item", lambda c, v: c.loan.set_format("B", v), (1, "2"), TypeError),
    ("set_format-shape-neg", lambda c, v: c.loan.set_format("B", v), (1, -1), ValueError),
    ("set_format-shape-ndim", lambda c, v: c.loan.set_format("B", v), (1,) * 7, ValueError),
    ("set_format-shape-overflow", lambda c, v: c.loan.set_format("d", v),
     (2 ** 62, 2 ** 62), OverflowError),
    ("set_format-shape-capacity", lambda c, v: c.loan.set_format("d", v), (33,),
     zdshm.SampleTooLargeError),
]


class Ctx:
    pass


@pytest.fixture
def ctx(make_segment):
    c = Ctx()
    c.seg = make_segment(slot_count=4, slot_capacity=256)
    c.writer = c.seg.writer(overflow="fail")
    c.reader = c.seg.reader()
    c.writer.publish(b"committed sample")
    c.loan = c.seg.reserve()
    return c


def _named(value, message: str) -> bool:
    if isinstance(value, float) and math.isnan(value):
        return "nan" in message
    if isinstance(value, np.ndarray):
        return "array(" in message or "publish()" in message
    text = repr(value)
    return text[:40] in message or str(value)[:40] in message


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_argument(ctx, case):
    _, call, value, exc = case
    before = snapshot(ctx.seg)
    loan_state = (ctx.loan.live, ctx.loan.exports)
    with pytest.raises(exc) as ei:
        call(ctx, value)
    message = str(ei.value)
    if not case[0].endswith("-kw") and not case[0] == "writer-unknown-kw":
        assert _named(value, message), message
    assert snapshot(ctx.seg) == before
    assert (ctx.loan.live, ctx.loan.exports) == loan_state


# --- constructors and module functions (no segment to snapshot) -------------

SEG_CASES = [
    ("count-type", dict(slot_count="4"), TypeError, "'4'"),
    ("count-float", dict(slot_count=4.0), TypeError, "4.0"),
    ("count-zero", dict(slot_count=0), ValueError, "slot_count must be an int in 1..1048576, got 0"),
    ("count-neg", dict(slot_count=-3), ValueError, "-3"),
    ("count-max", dict(slot_count=2 ** 20 + 1), ValueError, str(2 ** 20 + 1)),
    ("count-big", dict(slot_count=BIG), OverflowError, str(BIG)),
    ("cap-type", dict(slot_capacity=None), TypeError, "None"),
    ("cap-zero", dict(slot_capacity=0), ValueError, "slot_capacity"),
    ("cap-max", dict(slot_capacity=2 ** 40 + 1), ValueError, str(2 ** 40 + 1)),
    ("hash-type", dict(type_hash="0123456789abcdef"), TypeError, "0123456789abcdef"),
    ("hash-len", dict(type_hash=b"short"), ValueError, "b'short'"),
    ("hash-zero", dict(type_hash=bytes(16)), ValueError, "all zero"),
]


@pytest.mark.parametrize("case", SEG_CASES, ids=[c[0] for c in SEG_CASES])
@pytest.mark.parametrize("backend", ["memory", "posix"])
def test_bad_segment_arguments(backend, case):
    _, kw, exc, text = case
    args = dict(slot_count=2, slot_capacity=64)
    args.update(kw)
    type_hash = args.pop("type_hash", None)
    name = unique_name("bad")
    with pytest.raises(exc) as ei:
        if backend == "memory":
            zdshm.MemorySegment(args["slot_count"], args["slot_capacity"], type_hash=type_hash)
        else:
            zdshm.PosixSegment.create(name, args["slot_count"], args["slot_capacity"],
                                      type_hash=type_hash)
    assert text in str(ei.value)
    assert name not in zdshm.list_segments()


@pytest.mark.parametrize("backend", ["memory", "posix"])
def test_huge_segment_fails_cleanly(backend):
    # 2**20 slots of 2**40 bytes: the geometry fits in 64 bits, the machine
    # does not: a clear error, and nothing left behind.
    name = unique_name("huge")
    with pytest.raises((zdshm.NoSpaceError, zdshm.SystemCallError, MemoryError)):
        if backend == "memory":
            zdshm.MemorySegment(2 ** 20, 2 ** 40)
        else:
            zdshm.PosixSegment.create(name, 2 ** 20, 2 ** 40)
    assert name not in zdshm.list_segments()


MODE_CASES = [("mode-type", "rw", TypeError), ("mode-float", 0o600 * 1.0, TypeError),
              ("mode-zero", 0, ValueError), ("mode-big", 0o1000, ValueError),
              ("mode-neg", -1, ValueError)]


@pytest.mark.parametrize("case", MODE_CASES, ids=[c[0] for c in MODE_CASES])
def test_bad_mode(case):
    _, mode, exc = case
    name = unique_name("mode")
    with pytest.raises(exc) as ei:
        zdshm.PosixSegment.create(name, 2, 64, mode=mode)
    assert repr(mode) in str(ei.value) or str(mode) in str(ei.value)
    assert name not in zdshm.list_segments()


BAD_NAMES = [(123, TypeError), (None, TypeError), (b"bytes", TypeError),
             ("", ValueError), ("a/b", ValueError), ("/lead", ValueError),
             (".dot", ValueError), ("x" * 201, ValueError), ("nul\0", ValueError),
             ("sp ace", ValueError)]


@pytest.mark.parametrize("name,exc", BAD_NAMES, ids=[repr(n)[:20] for n, _ in BAD_NAMES])
@pytest.mark.parametrize("fn", ["create", "attach", "describe", "unlink", "validate_name"])
def test_bad_names(fn, name, exc):
    calls = {
        "create": lambda: zdshm.PosixSegment.create(name, 2, 64),
        "attach": lambda: zdshm.PosixSegment.attach(name),
        "describe": lambda: zdshm.describe(name),
        "unlink": lambda: zdshm.unlink(name),
        "validate_name": lambda: zdshm.validate_name(name),
    }
    listing = zdshm.list_segments()
    with pytest.raises(exc) as ei:
        calls[fn]()
    assert repr(name)[:40] in str(ei.value) or "longer than" in str(ei.value)
    assert zdshm.list_segments() == listing


def test_not_instantiable():
    for cls in (zdshm.Segment, zdshm.PosixSegment, zdshm.Loan, zdshm.Sample,
                zdshm.Writer, zdshm.Reader):
        with pytest.raises(TypeError):
            cls()


def test_final_types():
    for cls in (zdshm.MemorySegment, zdshm.PosixSegment, zdshm.Loan,
                zdshm.Sample, zdshm.Writer, zdshm.Reader):
        with pytest.raises(TypeError):
            type("Sub", (cls,), {})


def test_missing_arguments(seg):
    with pytest.raises(TypeError):
        seg.mark_read(0)
    with pytest.raises(TypeError):
        seg.evict_stale(1.0)
    with pytest.raises(TypeError):
        seg.wait_for_change()
    with pytest.raises(TypeError):
        seg.reserve(0, 1)
    with pytest.raises(TypeError):
        zdshm.MemorySegment(4)
    with pytest.raises(TypeError):
        zdshm.PosixSegment.create("x", 4)
