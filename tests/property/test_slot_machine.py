"""Stateful property tests: each backend's low-level and high-level API in
lockstep with the reference model (zdshm.testing.model).

Every rule performs one call on the real segment and the same call on the
model and requires the same outcome (value, or exception class name).
After every step the invariants compare the whole observable state: each
slot's state, header and bytes, the counters, next_unread of every reader
bit, the registered readers' stats.  Geometries are tiny (1..6 slots) so
that loans, unread samples and pins collide.

The classed machines run the same rules on segments of 1 to 4 size classes
(zdshm.testing.strategies.class_geometries) and add sized loans: a loan
always lands in the smallest fitting class that had a loanable slot, never
in a smaller class than its size; each reader receives every sample once, in
sn order across the classes.
"""
from __future__ import annotations

import os
import re
import sys
import time

import pytest
from hypothesis import event
from hypothesis import strategies as st
from hypothesis.stateful import (RuleBasedStateMachine, initialize, invariant,
                                 precondition, rule)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _zdprop import PROFILE, TEST_TIMEOUT, unique_segment_name  # noqa: E402

pytestmark = pytest.mark.timeout(TEST_TIMEOUT, method="thread")
zdshm = pytest.importorskip("zdshm")
from zdshm.testing import SegmentModel, normalize_stats, seconds_to_ns  # noqa: E402
from zdshm.testing import strategies as zst  # noqa: E402

RAW_READERS = 4                     # raw reader bits the low-level rules use
MAX_REGISTERED = 4                  # registered readers at once
MASKS = st.one_of(zst.reader_masks(RAW_READERS), st.just("active"))
RAW = zst.reader_indices(RAW_READERS)
PICK = st.integers(0, 1 << 16)      # an index into a list, taken modulo its length
HANDLE = st.integers(0, 1)          # posix: the creator's handle or a second one


class Outcome:
    """The result of one call: a value, or the exception's class name."""

    __slots__ = ("value", "error", "exc")

    def __init__(self, fn, *args, **kwargs):
        self.value = self.error = self.exc = None
        try:
            self.value = fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - compared by name below
            self.error = type(exc).__name__
            self.exc = exc

    def __repr__(self):
        return f"error {self.error}: {self.exc}" if self.error else f"-> {self.value!r}"


def lockstep(what, real_fn, model_fn):
    """Runs both calls; they must both succeed or raise the same-named error."""
    real, model = Outcome(real_fn), Outcome(model_fn)
    event(f"{re.sub(r'[(].*?[)]', '', what)}: {real.error or 'ok'}")
    assert real.error == model.error, (
        f"{what}: real {real!r} but model {model!r}")
    return real, model


class SlotMachine(RuleBasedStateMachine):
    """The lockstep machine; the backend comes from the subclass."""

    backend = ""
    GEOMETRIES = zst.geometries(max_slots=6, max_capacity=48)

    def __init__(self):
        super().__init__()
        self.seg = None
        self.handles = []
        self.model = None
        self.name = None
        self.loans = []             # [real Loan, LoanModel], live or not
        self.samples = []           # [real Sample, SampleModel], held
        self.readers = []           # [real Reader, ReaderModel], registered
        self.closed_readers = []
        self.writers = {}
        self.last_sn = -1
        self.received = {}          # id(reader pair) -> real sns in order

    # -- setup / teardown -------------------------------------------------------
    @initialize(n_readers=st.integers(0, 2), n_samples=st.integers(0, 6), data=st.data())
    def create(self, n_readers, n_samples, data):
        """A segment of the drawn geometry, with readers and committed
        samples to start from (shrinks to an empty one)."""
        geo = data.draw(self.GEOMETRIES, label="geometry")
        args, kwargs = geo.create_args()
        if self.backend == "memory":
            self.seg = zdshm.MemorySegment(*args, **kwargs)
        else:
            self.name = unique_segment_name("sm")
            self.seg = zdshm.PosixSegment.create(self.name, *args, **kwargs)
        self.handles = [self.seg]
        if self.backend == "posix":
            # A second attachment: loans, pins and readers of either handle
            # must count the same (all shared state lives in the segment).
            self.handles.append(zdshm.PosixSegment.attach(self.name))
        assert self.seg.slot_count == geo.slot_count
        assert self.seg.slot_capacity == geo.slot_capacity
        self.model = SegmentModel(*args, **kwargs)
        assert [self.seg.slot_capacity_of(i) for i in range(geo.slot_count)] == \
            [s.capacity for s in self.model.slots]
        for _ in range(n_readers):
            self.open_reader(0, latest=data.draw(st.booleans(), label="latest"))
        for _ in range(n_samples):
            self.publish("fail", data, oversize=False)

    def teardown(self):
        try:
            for real, _ in self.samples:
                real.release()
            for real, _ in self.readers:
                real.close()
            for real, model in self.loans:
                if model.live:
                    real.discard()
            for handle in reversed(self.handles):
                handle.close()
        finally:
            if self.name is not None:
                try:
                    zdshm.unlink(self.name)
                except zdshm.SegmentNotFoundError:
                    pass

    # -- helpers -------------------------------------------------------------------
    def mask(self, m):
        """A drawn mask as an int.  Bits of readers closed while holding
        samples are dropped: whether later samples carry them is left open
        (see SegmentModel.closing_readers)."""
        if m == "active":
            assert self.seg.active_mask == self.model.active_mask
            return self.model.active_mask
        return m & ~sum(1 << r for r in self.model.closing_readers)

    def live_loans(self):
        return [p for p in self.loans if p[1].live]

    def dead_loans(self):
        return [p for p in self.loans if not p[1].live]

    def handle(self, h):
        return self.handles[h % len(self.handles)]

    def writer(self, policy, timeout, h=0):
        key = (policy, timeout, h % len(self.handles))
        if key not in self.writers:
            self.writers[key] = (self.handle(h).writer(overflow=policy, timeout=timeout),
                                 self.model.writer(overflow=policy, timeout=timeout))
        return self.writers[key]

    def add_loan(self, real, model):
        assert real.slot == model.slot, f"loaned slot {real.slot}, model {model.slot}"
        assert len(real) == real.capacity == model.capacity == \
            self.seg.slot_capacity_of(real.slot)
        assert real.live
        # A loan shows the slot's bytes as the last sample left them.
        assert bytes(real) == model.read(), "loan buffer differs from the model"
        self.loans.append([real, model])

    def after_commit(self, real_sn, model_sn, slot, t0, t1):
        """Checks a commit's sequence number and time; feeds the real commit
        time to the model."""
        assert real_sn == model_sn, f"commit returned sn {real_sn}, model {model_sn}"
        assert real_sn > self.last_sn, "sequence numbers must strictly increase"
        self.last_sn = real_sn
        hdr, _ = self.seg.read_copy(slot)
        assert hdr["sn"] == real_sn
        assert t0 <= hdr["commit_ns"] <= t1, "commit time is not CLOCK_MONOTONIC now"
        self.model.slots[slot].commit_ns = hdr["commit_ns"]

    # -- loans ---------------------------------------------------------------------
    @rule(mask=MASKS, h=HANDLE)
    def reserve(self, mask, h):
        m = self.mask(mask)
        expected = self.model.reservable_slots(m)
        real, model = lockstep(f"reserve({m:#x})", lambda: self.handle(h).reserve(m),
                               lambda: self.model.reserve(m))
        if real.error is None:
            assert real.value.slot == expected[0], \
                f"reserve took slot {real.value.slot}, not {expected[0]}"
            self.add_loan(real.value, model.value)
        else:
            assert real.error == "NoFreeSlotError" and not expected

    @rule(mask=MASKS)
    def reserve_all(self, mask):
        """Loans until none is free: exactly the reservable slots, lowest
        first.  Then discards them all."""
        m = self.mask(mask)
        expected = self.model.reservable_slots(m)
        got = []
        while True:
            real, model = lockstep(f"reserve({m:#x})", lambda: self.seg.reserve(m),
                                   lambda: self.model.reserve(m))
            if real.error is not None:
                break
            got.append((real.value, model.value))
        assert [r.slot for r, _ in got] == expected
        for real_loan, model_loan in got:
            real_loan.discard()
            model_loan.discard()

    @rule(policy=zst.overflow_policies(), timeout=st.sampled_from([0, 0, 0.001]), h=HANDLE)
    def writer_loan(self, policy, timeout, h):
        w_real, w_model = self.writer(policy, timeout, h)
        real, model = lockstep(f"writer({policy}).loan", w_real.loan, w_model.loan)
        if real.error is None:
            self.add_loan(real.value, model.value)

    @precondition(lambda self: self.live_loans())
    @rule(i=PICK, data=st.data(), viewed=st.booleans())
    def commit(self, i, data, viewed):
        """In-place commit: write through memoryview(loan) (anywhere: bytes
        not written keep what the slot held), release the view, commit
        nbytes (None: the capacity; past it: SampleTooLargeError and the loan
        stays live).  With ``viewed`` a commit is tried first while a view is
        alive: ViewsAliveError, and the loan stays live."""
        real, model = self.live_loans()[i % len(self.live_loans())]
        cap = model.capacity
        offset = data.draw(st.integers(0, cap), label="offset")
        payload = data.draw(zst.payloads(cap - offset), label="payload")
        nbytes = data.draw(st.one_of(st.none(), st.integers(0, cap), st.integers(0, cap),
                                     st.integers(cap + 1, cap + 3)), label="nbytes")
        with memoryview(real) as mv:
            mv[offset:offset + len(payload)] = payload
        model.write(payload, offset)
        if viewed:
            mv = memoryview(real)
            try:
                with pytest.raises(zdshm.ViewsAliveError):
                    real.commit(nbytes if nbytes is None or nbytes <= cap else cap)
            finally:
                mv.release()
            assert real.live and self.seg.slot_state(real.slot) == "loaned"
        t0 = time.monotonic_ns()
        r, m = lockstep(f"commit({nbytes})", lambda: real.commit(nbytes),
                        lambda: model.commit(nbytes))
        t1 = time.monotonic_ns()
        if r.error is None:
            assert not real.live
            self.after_commit(r.value, m.value, model.slot, t0, t1)
        else:
            assert r.error == "SampleTooLargeError"
            assert real.live and self.seg.slot_state(real.slot) == "loaned"

    @precondition(lambda self: self.live_loans())
    @rule(i=PICK)
    def discard(self, i):
        real, model = self.live_loans()[i % len(self.live_loans())]
        lockstep("discard", real.discard, model.discard)
        assert not real.live

    @precondition(lambda self: self.dead_loans() or self.closed_readers)
    @rule(i=PICK, op=st.sampled_from(["commit", "commit0", "discard",
                                      "try_take", "stats", "close"]))
    def misuse(self, i, op):
        """Committing a loan that is no longer live raises StaleLoanError, so
        does discarding a committed one; a closed reader raises ClosedError
        (closing it again does nothing)."""
        if op in ("commit", "commit0", "discard"):
            if not self.dead_loans():
                return
            real, model = self.dead_loans()[i % len(self.dead_loans())]
            if op == "discard" and model.sn is None:
                return          # discarding a discarded loan: see test_pinned.py
            call = {"commit": (lambda x: x.commit()), "commit0": (lambda x: x.commit(0)),
                    "discard": (lambda x: x.discard())}[op]
            r, _ = lockstep(f"stale {op}", lambda: call(real), lambda: call(model))
            assert r.error == "StaleLoanError"
        else:
            if not self.closed_readers:
                return
            real_r, model_r = self.closed_readers[i % len(self.closed_readers)]
            r, _ = lockstep(f"closed reader.{op}", getattr(real_r, op),
                            getattr(model_r, op))
            assert r.error == (None if op == "close" else "ClosedError")

    @rule(policy=zst.overflow_policies(), data=st.data(), h=HANDLE)
    def publish(self, policy, data, h=0, oversize=True):
        """Writer.publish under each overflow policy ("block" and "reclaim"
        with timeout 0): the model predicts the slot, the error, the drops."""
        self.publish_one(policy, data, h, oversize)

    def publish_one(self, policy, data, h=0, oversize=True, payload=None):
        """One publish of the rule above (payload: drawn when None);
        returns whether it succeeded."""
        w_real, w_model = self.writer(policy, 0, h)
        cap = self.model.slot_capacity
        payload = payload if payload is not None else data.draw(st.one_of(zst.payloads(cap), zst.payloads(cap),
                                      zst.payloads(cap + 1, min_size=cap + 1))
                            if oversize else zst.payloads(cap), label="payload")
        t0 = time.monotonic_ns()
        r, m = lockstep(f"writer({policy}).publish", lambda: w_real.publish(payload),
                        lambda: w_model.publish(payload))
        t1 = time.monotonic_ns()
        if r.error is None:
            slot = next(s.index for s in self.model.slots
                        if s.state == "committed" and s.sn == m.value)
            self.after_commit(r.value, m.value, slot, t0, t1)
        return r.error is None

    @rule(policy=st.sampled_from(["reclaim", "reclaim", "fail"]), n=st.integers(1, 50),
          data=st.data(), h=HANDLE)
    def publish_burst(self, policy, n, data, h=0):
        """Up to n publishes in one step (to the first error): enough for
        a sample that a view keeps to outlive laps of the ring, and for a
        reader to fall more than two rings behind it."""
        payload = data.draw(zst.payloads(self.model.slot_capacity), label="payload")
        for _ in range(n):
            if not self.publish_one(policy, data, h, payload=payload):
                break

    # -- reading ---------------------------------------------------------------------
    def pick_slot(self, data):
        """Mostly a committed slot (when there is one), sometimes any."""
        committed = [s.index for s in self.model.committed_slots()]
        if committed and data.draw(st.integers(0, 3), label="committed?"):
            return data.draw(st.sampled_from(committed), label="slot")
        return data.draw(st.integers(0, self.model.slot_count - 1), label="slot")

    @rule(data=st.data(), hold=st.booleans(), h=HANDLE)
    def read(self, data, hold, h):
        slot = self.pick_slot(data)
        r, m = lockstep(f"read({slot})", lambda: self.handle(h).read(slot),
                        lambda: self.model.read(slot))
        if r.error is not None:
            assert r.error == "NoSampleError"
            return
        real, model = r.value, m.value
        assert (real.slot, real.sn, real.size, real.commit_ns) == \
            (model.slot, model.sn, model.size, model.commit_ns)
        assert real.tobytes() == model.tobytes()
        with memoryview(real) as mv:
            assert mv.readonly and bytes(mv) == model.tobytes()
        if hold:
            self.samples.append([real, model])
        else:
            real.release()
            model.release()

    @precondition(lambda self: self.samples)
    @rule(i=PICK, viewed=st.booleans())
    def release(self, i, viewed):
        """Releasing a sample unpins its slot; it refuses while a view of
        the sample is alive."""
        pair = self.samples[i % len(self.samples)]
        real, model = pair
        if viewed:
            mv = memoryview(real)
            try:
                with pytest.raises(zdshm.ViewsAliveError):
                    real.release()
            finally:
                mv.release()
            assert not real.released
            return
        real.release()
        model.release()
        assert real.released
        self.samples.remove(pair)
        real.release()          # a second release does nothing
        with pytest.raises(zdshm.ClosedError):
            real.tobytes()

    @rule(data=st.data(), r=RAW, h=HANDLE)
    def mark_read(self, data, r, h):
        slot = self.pick_slot(data)
        res, _ = lockstep(f"mark_read({slot}, {r})",
                          lambda: self.handle(h).mark_read(slot, r),
                          lambda: self.model.mark_read(slot, r))
        assert res.error in (None, "NoSampleError")

    @rule(r=RAW, mask=MASKS)
    def mark_reader_disconnected(self, r, mask):
        """Disconnecting reader r frees exactly the slots that waited only
        on r (against the mask)."""
        m = self.mask(mask) | (1 << r)
        before = set(self.model.reservable_slots(m, 0))   # every class
        waiting_only_on_r = {
            s.index for s in self.model.committed_slots()
            if not s.pinned and (m & ~s.read_mask) == (1 << r)}
        lockstep(f"mark_reader_disconnected({r})",
                 lambda: self.seg.mark_reader_disconnected(r),
                 lambda: self.model.mark_reader_disconnected(r))
        after = set(self.model.reservable_slots(m, 0))
        assert after - before == waiting_only_on_r
        for i in waiting_only_on_r:
            hdr, _ = self.seg.read_copy(i)
            assert hdr["read_mask"] & m == m

    # -- eviction --------------------------------------------------------------------
    @rule(max_age=zst.max_ages(), mask=MASKS, data=st.data(),
          when=st.sampled_from([-2, -1, 0, 0, 1, 2, 10 ** 9, -10 ** 9, "real"]))
    def evict(self, max_age, mask, data, when):
        """evict_stale frees exactly the committed, unpinned, not fully read
        slots at least max_age old.  "Now" is aimed at a committed slot's
        exact age boundary (when == 0: age == max_age, which evicts) or
        off it by a few ns or a second; or, with when == "real", it is the
        real clock (then max_age 0 evicts every candidate, larger ages none:
        no sample here is that old)."""
        m = self.mask(mask)
        if when == "real":
            max_age = data.draw(st.sampled_from([0, 3600.0]), label="max_age")
            expected = self.model.stale_slots(seconds_to_ns(max_age), m,
                                              time.monotonic_ns())
            r = Outcome(self.seg.evict_stale, max_age, m)
            mo = Outcome(self.model.evict_stale, max_age, m, now_ns=time.monotonic_ns())
        else:
            committed = self.model.committed_slots()
            if committed:
                anchor = data.draw(st.sampled_from(committed), label="anchor").commit_ns
            else:
                anchor = time.monotonic_ns()
            now = max(0, anchor + seconds_to_ns(max_age) + when)
            expected = self.model.stale_slots(seconds_to_ns(max_age), m, now)
            r = Outcome(self.seg.evict_stale, max_age, m, now_ns=now)
            mo = Outcome(self.model.evict_stale, max_age, m, now_ns=now)
        assert r.error is None and mo.error is None, (r, mo)
        assert r.value == mo.value == len(expected), \
            f"evicted {r.value}, model {mo.value}, expected slots {expected}"
        event(f"evict: {'some' if expected else 'none'} evicted")
        for i in expected:
            assert self.seg.slot_state(i) == "free"

    # -- registered readers -------------------------------------------------------------
    @precondition(lambda self: len(self.readers) < MAX_REGISTERED)
    @rule(join_last=st.sampled_from([0, 0, 1, 2, 5]), h=HANDLE, latest=st.booleans())
    def open_reader(self, join_last, h=0, latest=False):
        r, m = lockstep(f"reader(join_last={join_last}, latest={latest})",
                        lambda: self.handle(h).reader(join_last=join_last, latest=latest),
                        lambda: self.model.reader(join_last=join_last, latest=latest))
        if latest and join_last > 1:
            assert r.error == "ValueError"
            return
        assert r.error is None
        assert r.value.latest == latest
        assert r.value.index == m.value.index, "reader index differs from the model"
        assert not r.value.closed
        self.readers.append([r.value, m.value])
        self.received[id(m.value)] = []

    @precondition(lambda self: self.readers)
    @rule(i=PICK, hold=st.booleans(), blocking=st.booleans())
    def take(self, i, hold, blocking):
        """A reader receives the unread sample with the smallest sn, never
        twice, in commit order.  A latest reader receives the newest
        committed sample it has not read (read off the real segment before
        the take), never one older than it received before, and afterwards
        every older committed sample is marked read for it (skipped: its
        slot may be reused)."""
        real_r, model_r = self.readers[i % len(self.readers)]
        bit = 1 << model_r.index
        newest = None
        if model_r.latest:
            unread = [self.seg.read_copy(s)[0]["sn"] for s in range(self.seg.slot_count)
                      if self.seg.slot_state(s) == "committed"
                      and not self.seg.read_copy(s)[0]["read_mask"] & bit]
            newest = max(unread, default=None)
        if blocking:
            r, m = lockstep("take(timeout=0)", lambda: real_r.take(timeout=0),
                            lambda: model_r.take(timeout=0))
            if r.error is not None:
                assert r.error == "WaitTimeoutError"
                return
        else:
            r, m = lockstep("try_take", real_r.try_take, model_r.try_take)
            assert (r.value is None) == (m.value is None), f"take: real {r} model {m}"
            if r.value is None:
                event("try_take: nothing")
                assert newest is None, f"latest reader got nothing, newest unread {newest}"
                return
        real, model = r.value, m.value
        event("take: got a sample" + (" (latest)" if model_r.latest else ""))
        if model_r.latest:
            assert real.sn == newest, f"latest reader got sn {real.sn}, newest unread {newest}"
            for s in range(self.seg.slot_count):
                if self.seg.slot_state(s) == "committed":
                    hdr = self.seg.read_copy(s)[0]
                    assert hdr["sn"] > real.sn or hdr["read_mask"] & bit, \
                        f"latest reader left older sn {hdr['sn']} unread"
        assert (real.slot, real.sn, real.size) == (model.slot, model.sn, model.size)
        assert real.tobytes() == model.tobytes()
        got = self.received[id(model_r)]
        assert not got or real.sn > got[-1], f"reader got sn {real.sn} after {got}"
        got.append(real.sn)
        if hold:
            self.samples.append([real, model])
        else:
            real.release()
            model.release()

    @precondition(lambda self: self.readers)
    @rule(i=PICK, release_first=st.booleans())
    def close_reader(self, i, release_first):
        """Closing a reader disconnects it: its bit leaves the active mask and
        every slot is marked read for it.  Samples it took stay valid until
        released, and its index is not reused before that (pinned regression:
        test_pinned.py::test_close_reader_holding_a_sample_disconnects_it)."""
        pair = self.readers[i % len(self.readers)]
        real_r, model_r = pair
        if release_first:
            for s in [s for s in self.samples if s[1].reader == model_r.index]:
                s[0].release()
                s[1].release()
                self.samples.remove(s)
        lockstep("reader.close", real_r.close, model_r.close)
        assert real_r.closed
        assert not self.seg.active_mask & (1 << model_r.index)
        self.readers.remove(pair)
        self.closed_readers.append(pair)

    # -- invariants -------------------------------------------------------------------
    @invariant()
    def model_is_consistent(self):
        if self.model is not None:
            self.model.check()

    @invariant()
    def slots_match(self):
        """Each slot is in exactly the model's state; committed slots have the
        model's header and bytes."""
        if self.seg is None:
            return
        # The bits of readers closed while holding samples are left open on
        # later samples (see SegmentModel.closing_readers).
        keep = ~sum(1 << r for r in self.model.closing_readers)
        for s in self.model.slots:
            state = self.seg.slot_state(s.index)
            assert state == s.state, f"slot {s.index} is {state}, model {s!r}"
            if s.state == "committed":
                hdr, data = self.seg.read_copy(s.index)
                want = s.header()
                hdr["read_mask"] &= keep
                want["read_mask"] &= keep
                assert hdr == want, f"slot {s.index}: header {hdr}, model {s!r}"
                assert data == s.data, f"slot {s.index}: bytes differ"
            else:
                with pytest.raises(zdshm.NoSampleError):
                    self.seg.read_copy(s.index)

    @invariant()
    def counters_match(self):
        if self.seg is None:
            return
        want = self.model.info()
        for handle in self.handles[1:]:
            assert handle.info()["counters"] == want["counters"]
        info = self.seg.info()
        assert info["counters"] == want["counters"]
        assert info["next_sn"] == want["next_sn"]
        assert info["active_mask"] == want["active_mask"] == self.seg.active_mask
        assert info["readers_active"] == want["readers_active"]

    @invariant()
    def next_unread_matches(self):
        if self.seg is None:
            return
        for r in range(RAW_READERS + 2):
            if r in self.model.closing_readers:
                continue
            assert self.seg.next_unread(r) == self.model.next_unread(r), \
                f"next_unread({r})"

    @invariant()
    def reader_stats_match(self):
        for real_r, model_r in self.readers:
            assert normalize_stats(real_r.stats()) == model_r.stats(), \
                f"stats of reader {model_r.index}"


class ClassMachine(SlotMachine):
    """The same machine on segments of 1 to 4 size classes, with sized loans."""

    GEOMETRIES = zst.class_geometries(max_classes=4, max_slots_per_class=3,
                                      max_capacity=64)

    def sizes(self, data):
        """A loan size: mostly a class's capacity or one past it, or any
        size up to the largest capacity, sometimes one past that."""
        caps = [cap for _, cap, _ in self.model.classes]
        edges = caps + [c + 1 for c in caps[:-1]] + [0]
        return data.draw(st.one_of(st.sampled_from(edges),
                                   st.integers(0, self.model.slot_capacity),
                                   st.just(self.model.slot_capacity + 1)), label="nbytes")

    def check_class(self, nbytes, slot, mask):
        """The loan of nbytes in slot is in the smallest class that fits and
        had a loanable slot (computed before the loan): never a smaller one,
        never a larger one while a fitting class had a slot."""
        got = self.model.slots[slot].size_class
        want = self.model.class_for(nbytes)
        assert got >= want, f"a loan of {nbytes} bytes took class {got} < {want}"
        assert self.seg.slot_capacity_of(slot) >= nbytes
        event(f"sized loan: {got - want} classes up")
        return got

    @rule(mask=MASKS, data=st.data(), h=HANDLE)
    def reserve_sized(self, mask, data, h):
        m = self.mask(mask)
        n = self.sizes(data)
        if n > self.model.slot_capacity:
            r, _ = lockstep(f"reserve(nbytes={n})",
                            lambda: self.handle(h).reserve(m, nbytes=n),
                            lambda: self.model.reserve(m, nbytes=n))
            assert r.error == "SampleTooLargeError"
            return
        expected = self.model.reservable_slots(m, n)
        real, model = lockstep(f"reserve({m:#x}, nbytes={n})",
                               lambda: self.handle(h).reserve(m, nbytes=n),
                               lambda: self.model.reserve(m, nbytes=n))
        if real.error is None:
            assert real.value.slot == expected[0], \
                f"reserve took slot {real.value.slot}, not {expected[0]}"
            got = self.check_class(n, real.value.slot, m)
            # every fitting class below the one taken had no loanable slot
            for c in range(self.model.class_for(n), got):
                count, _, first = self.model.classes[c]
                assert not [i for i in expected if first <= i < first + count]
            self.add_loan(real.value, model.value)
        else:
            assert real.error == "NoFreeSlotError" and not expected

    @rule(policy=zst.overflow_policies(), timeout=st.sampled_from([0, 0, 0.001]),
          data=st.data(), h=HANDLE, try_=st.booleans())
    def writer_loan_sized(self, policy, timeout, data, h, try_):
        w_real, w_model = self.writer(policy, timeout, h)
        n = self.sizes(data)
        active = self.model.active_mask
        fits = self.model.slot_capacity >= n
        reservable = self.model.reservable_slots(active, n) if fits else []
        if try_:
            real, model = lockstep(f"writer({policy}).try_loan(nbytes={n})",
                                   lambda: w_real.try_loan(nbytes=n),
                                   lambda: w_model.try_loan(nbytes=n))
            assert (real.value is None) == (model.value is None)
        else:
            real, model = lockstep(f"writer({policy}).loan(nbytes={n})",
                                   lambda: w_real.loan(nbytes=n),
                                   lambda: w_model.loan(nbytes=n))
        if not fits:
            assert real.error == "SampleTooLargeError"
            return
        if real.error is None and real.value is not None:
            slot = real.value.slot
            self.check_class(n, slot, active)
            if reservable:
                assert slot == reservable[0], \
                    f"loan of {n} took slot {slot}, not {reservable[0]}"
            else:
                # only the reclaim policy finds one: the oldest unpinned
                # sample of a class that fits
                assert policy == "reclaim"
            self.add_loan(real.value, model.value)


# To replay a failure, put the printed @reproduce_failure(...) line above the
# class of the failing backend (see README.md).
class MemorySlotMachine(SlotMachine):
    backend = "memory"


class PosixSlotMachine(SlotMachine):
    backend = "posix"


TestMemorySlots = MemorySlotMachine.TestCase
TestMemorySlots.settings = PROFILE
TestPosixSlots = PosixSlotMachine.TestCase
TestPosixSlots.settings = PROFILE


class MemoryClassMachine(ClassMachine):
    backend = "memory"


class PosixClassMachine(ClassMachine):
    backend = "posix"


TestMemoryClasses = MemoryClassMachine.TestCase
TestMemoryClasses.settings = PROFILE
TestPosixClasses = PosixClassMachine.TestCase
TestPosixClasses.settings = PROFILE
