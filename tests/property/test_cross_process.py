"""Cross-process property tests on a posix segment.

A writer process and reader processes (multiprocessing spawn, kept alive
across examples) run a hypothesis-generated schedule:

* lockstep: the parent hands out one operation at a time, so the outcome of
  every operation — which sequence number a publish gets, what each take
  returns, each reader's drop count — is determined, and must equal the
  model's prediction (zdshm.testing.run_schedule on a SegmentModel);
* free running: the writer publishes with overflow="block" while the
  readers take concurrently; every reader must receive every sample, in
  commit order, with its bytes.

Fewer examples than the state machines (processes are slow); every wait has
a watchdog timeout.
"""
from __future__ import annotations

import os
import sys

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _xproc import WorkerPool  # noqa: E402
from _zdprop import TEST_TIMEOUT, scaled, unique_segment_name  # noqa: E402

zdshm = pytest.importorskip("zdshm")
from zdshm.testing import ReaderRole, SegmentModel, WriterRole, role_of  # noqa: E402
from zdshm.testing import strategies as zst  # noqa: E402
from zdshm.testing.schedule import WRITER  # noqa: E402

MAX_READERS = 3
pytestmark = [pytest.mark.crossproc, pytest.mark.timeout(TEST_TIMEOUT, method="thread")]


@pytest.fixture(scope="module")
def pool():
    p = WorkerPool(1 + MAX_READERS)       # worker 0 writes, 1.. read
    yield p
    p.close()


class Attached:
    """Attaches the workers to a fresh posix segment; detaches and unlinks
    on exit, whatever happened."""

    def __init__(self, pool, geometry, roles):
        self.pool = pool
        self.geometry = geometry
        self.roles = roles            # [(worker, "writer"|"reader"|None, overflow)]

    def __enter__(self):
        self.name = unique_segment_name("xp")
        self.seg = zdshm.PosixSegment.create(self.name, self.geometry.slot_count,
                                             self.geometry.slot_capacity)
        self.attached = []
        try:
            for worker, which, overflow in self.roles:
                self.attached.append(worker)
                self.pool.call(worker, ("attach", self.name, which, overflow))
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc):
        errors = []
        for worker in self.attached:
            try:
                self.pool.call(worker, ("detach",))
            except Exception as e:  # noqa: BLE001 - detach the others first
                errors.append(e)
        try:
            self.seg.close()
        finally:
            zdshm.unlink(self.name)
        if errors and (not exc or exc[0] is None):
            raise errors[0]


def observe(seg, slot_count):
    """What the parent's own handle sees of the shared state (reading it
    changes nothing): counters, active mask, each slot's state, and each
    committed slot's sn, size, read mask and bytes."""
    info = seg.info()
    slots = []
    for i in range(slot_count):
        state = seg.slot_state(i)
        if state == "committed":
            hdr, data = seg.read_copy(i)
            slots.append((state, hdr["sn"], hdr["size"], hdr["read_mask"], data))
        else:
            slots.append((state,))
    return (info["counters"], info["next_sn"], info["active_mask"], slots)


def observe_model(model):
    slots = []
    for s in model.slots:
        if s.state == "committed":
            slots.append((s.state, s.sn, s.size, s.read_mask, s.data))
        else:
            slots.append((s.state,))
    return (model.counters, model.next_sn, model.active_mask, slots)


@scaled(divisor=8, minimum=20)
@given(scenario=zst.scenarios(max_readers=MAX_READERS, max_ops=30), data=st.data())
def test_lockstep_schedule_matches_model(pool, scenario, data):
    """Each operation runs in its role's process, one at a time, and on the
    model; every outcome equals the model's, and after every operation the
    parent's handle sees the state the model has.

    Up to two ("crash", who) operations SIGKILL the writer or a reader
    process; the parent then reaps (dead readers disconnected, their pins
    dropped; dead loans freed, counted) and a fresh process takes the role."""
    geo = scenario.geometry
    ops = list(scenario.ops)
    who = st.sampled_from([WRITER] + list(range(scenario.n_readers)))
    for _ in range(data.draw(st.integers(0, 2), label="crashes")):
        at = data.draw(st.integers(scenario.n_readers, len(ops)), label="crash at")
        ops.insert(at, ("crash", data.draw(who, label="crash who")))

    model = SegmentModel(geo.slot_count, geo.slot_capacity)
    model_roles = {WRITER: WriterRole(model, scenario.overflow)}
    model_roles.update({k: ReaderRole(model) for k in range(scenario.n_readers)})
    roles = [(0, "writer", scenario.overflow)]
    roles += [(1 + k, "reader", None) for k in range(scenario.n_readers)]
    with Attached(pool, geo, roles) as att:
        done = []
        for i, op in enumerate(ops):
            if op[0] == "crash":
                got, want = crash(pool, att, model, model_roles, op[1], scenario.overflow)
            else:
                role = role_of(op)
                got = pool.call(0 if role == WRITER else 1 + role, ("step", op))
                want = model_roles[role].step(op)
            done.append((op, got))
            if op[0] in ("write", "take", "leave"):
                event(f"{op[0]}: {type(want).__name__ if not isinstance(want, str) else want}")
            assert got == want, (f"operation {i} {op!r}: got {got!r}, model predicts "
                                 f"{want!r}\nafter {done[:-1]!r}")
            seen, expected = observe(att.seg, geo.slot_count), observe_model(model)
            assert seen == expected, (f"after operation {i} {op!r}: segment "
                                      f"{seen!r}\nmodel {expected!r}\nafter {done!r}")


def crash(pool, att, model, model_roles, who, overflow):
    """Kills the role's process, reaps from the parent, and gives the role
    to a fresh process.  Returns (real, predicted) reap results."""
    worker = 0 if who == WRITER else 1 + who
    role = model_roles[who]
    if who == WRITER:
        model.process_died(loans=[loan for loan, _ in role.kept])
        role.kept.clear()
        model_roles[who] = WriterRole(model, overflow)
    else:
        model.process_died(readers=[role.reader] if role.reader is not None else [])
        role.reader = None
        role.kept.clear()
    pool.kill(worker)
    got = att.seg.reap()
    want = model.reap()
    event(f"crash of the {'writer' if who == WRITER else 'reader'}: reap -> {want}")
    pool.call(worker, ("attach", att.name, "writer" if who == WRITER else "reader",
                       overflow))
    return got, want


@st.composite
def free_runs(draw):
    geo = draw(zst.geometries(max_slots=4, min_capacity=1, max_capacity=64))
    n_readers = draw(st.integers(1, MAX_READERS))
    payloads = draw(st.lists(zst.payloads(geo.slot_capacity), min_size=1, max_size=40))
    return geo, n_readers, payloads


@scaled(divisor=8, minimum=20)
@given(run=free_runs())
def test_free_running_readers_receive_everything_in_order(pool, run):
    """overflow="block": no sample is lost, each reader receives every one
    in commit order, never twice, with its bytes; nothing is dropped."""
    geo, n_readers, payloads = run
    with Attached(pool, geo, [(k, None, None) for k in range(1 + n_readers)]) as att:
        for k in range(1, 1 + n_readers):
            assert pool.call(k, ("join", 0)) == k - 1
        for k in range(1, 1 + n_readers):
            pool.send(k, ("run_reader", len(payloads), 15.0))
        pool.send(0, ("run_writer", payloads, "block", 15.0))
        sns = pool.recv(0, "run_writer")
        results = [pool.recv(k, "run_reader") for k in range(1, 1 + n_readers)]
        info = att.seg.info()
    assert sns == list(range(len(payloads)))
    expected = list(enumerate(payloads))
    for k, (got, stats) in enumerate(results):
        assert got == expected, f"reader {k} received {got!r}"
        assert stats["taken"] == len(payloads) and stats["dropped"] == 0, stats
        assert stats["last_sn"] == len(payloads) - 1 and stats["lag"] == 0, stats
    c = info["counters"]
    assert c["commits"] == c["loans"] == len(payloads)
    assert c["reclaims"] == c["evictions"] == c["discards"] == 0
