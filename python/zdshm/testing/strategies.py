"""Hypothesis strategies for zdshm: geometries, reader masks, schedules.

Requires ``hypothesis`` (``pip install zdshm[test]``).  Small geometries are
the default on purpose: with one to six slots, loans, unread samples and
pins collide within a few operations, which is where the bugs are.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st

from .model import OVERFLOW_POLICIES, READER_MAX

__all__ = ["Geometry", "geometries", "class_geometries", "reader_indices", "reader_masks",
           "overflow_policies", "payloads", "max_ages", "schedule_ops",
           "Scenario", "scenarios"]


@dataclass(frozen=True)
class Geometry:
    """A segment geometry: slot_count slots of slot_capacity bytes, or, with
    ``classes`` non-empty, those size classes ((slot_count, slot_capacity)
    pairs, capacities increasing); slot_count is then their total and
    slot_capacity the largest."""
    slot_count: int
    slot_capacity: int
    classes: tuple[tuple[int, int], ...] = ()

    def create_args(self) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """(args, kwargs) of MemorySegment / SegmentModel for this geometry
        (PosixSegment.create takes the name first)."""
        if self.classes:
            return (), {"classes": [tuple(c) for c in self.classes]}
        return (self.slot_count, self.slot_capacity), {}


def geometries(*, min_slots: int = 1, max_slots: int = 6,
               min_capacity: int = 1, max_capacity: int = 64) -> st.SearchStrategy[Geometry]:
    """Segment geometries; shrinks towards one slot of ``min_capacity`` bytes."""
    return st.builds(Geometry,
                     st.integers(min_slots, max_slots),
                     st.integers(min_capacity, max_capacity))


@st.composite
def class_geometries(draw, *, min_classes: int = 1, max_classes: int = 4,
                     max_slots_per_class: int = 3,
                     max_capacity: int = 96) -> Geometry:
    """Size-class layouts: ``min_classes`` to ``max_classes`` classes of 1 to
    ``max_slots_per_class`` slots, with distinct capacities up to
    ``max_capacity`` (sorted).  Shrinks towards one class of one small slot."""
    n = draw(st.integers(min_classes, max_classes))
    caps = sorted(draw(st.sets(st.integers(1, max_capacity), min_size=n, max_size=n)))
    counts = [draw(st.integers(1, max_slots_per_class)) for _ in range(n)]
    classes = tuple(zip(counts, caps))
    return Geometry(sum(counts), caps[-1], classes)


def reader_indices(max_readers: int = 4) -> st.SearchStrategy[int]:
    """Raw reader indices 0..max_readers-1 (bits of a read mask)."""
    if not 1 <= max_readers <= READER_MAX:
        raise ValueError(f"max_readers must be in 1..{READER_MAX}")
    return st.integers(0, max_readers - 1)


def reader_masks(max_readers: int = 4) -> st.SearchStrategy[int]:
    """Active-reader masks over the first ``max_readers`` bits (0 included)."""
    if not 1 <= max_readers <= READER_MAX:
        raise ValueError(f"max_readers must be in 1..{READER_MAX}")
    return st.integers(0, (1 << max_readers) - 1)


def overflow_policies() -> st.SearchStrategy[str]:
    return st.sampled_from(OVERFLOW_POLICIES)


def payloads(capacity: int, *, min_size: int = 0) -> st.SearchStrategy[bytes]:
    """Sample bytes that fit a slot of ``capacity`` bytes."""
    return st.binary(min_size=min_size, max_size=capacity)


def max_ages() -> st.SearchStrategy[float]:
    """Eviction ages in seconds whose nanosecond value is exact in binary
    floating point (so a test can aim at the boundary age == max_age)."""
    return st.sampled_from([0.0, 2.0 ** -20, 0.125, 0.5, 1.0, 4.0])


def schedule_ops(n_readers: int, capacity: int, *,
                 max_raw_reader: int = 4) -> st.SearchStrategy[tuple[Any, ...]]:
    """One operation of a schedule (see :mod:`zdshm.testing.schedule`) for a
    writer and readers ``0..n_readers-1``."""
    k = st.integers(0, max(0, n_readers - 1))
    write = st.tuples(st.just("write"), payloads(capacity))
    writer_ops = [
        write, write, write, write,
        st.tuples(st.just("loan"), payloads(capacity)),
        st.tuples(st.just("commit")),
        st.tuples(st.just("discard")),
        st.tuples(st.just("evict"), st.sampled_from([0.0, 3600.0])),
        st.tuples(st.just("disconnect"), reader_indices(max_raw_reader)),
    ]
    if n_readers == 0:
        return st.sampled_from(writer_ops).flatmap(lambda s: s)
    take = st.tuples(st.just("take"), k, st.booleans())
    reader_ops = [
        take, take, take, take, take,
        st.tuples(st.just("release"), k),
        st.tuples(st.just("release"), k),
        st.tuples(st.just("stats"), k),
        st.tuples(st.just("leave"), k),
        st.tuples(st.just("join"), k, st.integers(0, 3)),
    ]
    # Weighted by repetition: mostly writes and takes, sometimes the rest.
    return st.sampled_from(writer_ops + reader_ops).flatmap(lambda s: s)


@dataclass(frozen=True)
class Scenario:
    """A segment geometry, a writer policy and a schedule to run on it."""
    geometry: Geometry
    overflow: str
    n_readers: int
    ops: list = field(default_factory=list)


@st.composite
def scenarios(draw, *, max_readers: int = 3, min_ops: int = 10, max_ops: int = 30,
              geometry: st.SearchStrategy[Geometry] | None = None,
              overflow: st.SearchStrategy[str] | None = None) -> Scenario:
    """Complete scenarios: every reader joins before the rest of the schedule
    (with a drawn ``join_last``), then ``min_ops`` to ``max_ops`` mixed
    operations."""
    geo = draw(geometry if geometry is not None else geometries(max_slots=4, max_capacity=32))
    policy = draw(overflow if overflow is not None else overflow_policies())
    n = draw(st.integers(0, max_readers))
    ops: list = [("join", k, draw(st.integers(0, 3))) for k in range(n)]
    ops += draw(st.lists(schedule_ops(n, geo.slot_capacity), min_size=min_ops,
                         max_size=max_ops))
    return Scenario(geo, policy, n, ops)
