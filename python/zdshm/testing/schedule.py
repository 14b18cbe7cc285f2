"""Schedules: operation sequences that run on the model or on a real segment.

A schedule is a list of plain tuples (so it pickles to other processes).
Each operation belongs to one *role*: the writer, or reader ``k``.  A role
object executes its operations against any segment with zdshm's API — a
:class:`~zdshm.testing.model.SegmentModel` or a ``zdshm`` segment — and
returns one comparable outcome per operation: a value, ``"noop"`` when the
operation does not apply (taking before joining), or the name of the
exception raised.  Running the same schedule on the model and on a real
segment, in one process or with each role in its own process, must give the
same outcomes.

Operations::

    ("write", payload)          writer: publish payload          -> sn
    ("loan", payload)           writer: loan, write payload, keep -> slot
    ("commit",)                 writer: commit its oldest kept loan -> sn
    ("discard",)                writer: discard its oldest kept loan -> None
    ("evict", max_age)          writer: evict_stale(max_age, active_mask)
                                with the real clock (use 0 or a large
                                age, so the outcome does not depend on
                                timing)                             -> count
    ("disconnect", r)           writer: mark_reader_disconnected(r) -> None
    ("join", k, join_last)      reader k registers                -> index
    ("take", k, hold)           reader k: try_take; keeps the sample
                                pinned if hold, else releases it  -> (sn, bytes) or None
    ("release", k)              reader k releases its oldest kept
                                sample                             -> sn
    ("stats", k)                reader k                           -> stats
    ("leave", k)                reader k releases everything and
                                closes                             -> stats before

A reader's operations are "noop" while it has not joined (or after it
left), except ``join``, which is "noop" while it is joined.
"""
from __future__ import annotations

from typing import Any, Sequence

__all__ = ["WRITER", "WRITER_OPS", "READER_OPS", "role_of", "WriterRole",
           "ReaderRole", "run_schedule", "normalize_stats"]

WRITER = "writer"
WRITER_OPS = ("write", "loan", "commit", "discard", "evict", "disconnect")
READER_OPS = ("join", "take", "release", "stats", "leave")
_UINT64_MAX = (1 << 64) - 1


def role_of(op: Sequence[Any]) -> str | int:
    """``WRITER`` or the reader number ``k`` that executes ``op``."""
    if op[0] in WRITER_OPS:
        return WRITER
    if op[0] in READER_OPS:
        return op[1]
    raise ValueError(f"unknown schedule operation {op!r}")


def normalize_stats(stats: dict[str, Any]) -> dict[str, Any]:
    """Reader stats with "nothing taken yet" spelled None whatever the
    backend says (None, -1 or 2**64-1)."""
    out = {k: stats[k] for k in ("taken", "dropped", "skipped", "lag", "last_sn")}
    if out["last_sn"] in (-1, _UINT64_MAX):
        out["last_sn"] = None
    return out


def _outcome(fn, *args) -> Any:
    try:
        return fn(*args)
    except Exception as exc:  # noqa: BLE001 - outcomes compare by class name
        return type(exc).__name__


class WriterRole:
    """Executes the writer's operations on ``segment``.

    Every loan goes through ``segment.writer(overflow, timeout)`` so the
    overflow policy applies; ``timeout`` 0 keeps "block" and "reclaim" from
    waiting (nothing else runs while a schedule step runs)."""

    def __init__(self, segment: Any, overflow: str = "fail",
                 timeout: float | None = 0.0) -> None:
        self.segment = segment
        self.writer = segment.writer(overflow=overflow, timeout=timeout)
        self.kept: list[tuple[Any, int]] = []       # (loan, nbytes)

    def step(self, op: Sequence[Any]) -> Any:
        kind = op[0]
        if kind == "write":
            return _outcome(self.writer.publish, op[1])
        if kind == "loan":
            return _outcome(self._loan, op[1])
        if kind == "commit":
            if not self.kept:
                return "noop"
            loan, n = self.kept.pop(0)
            return _outcome(loan.commit, n)
        if kind == "discard":
            if not self.kept:
                return "noop"
            loan, _ = self.kept.pop(0)
            return _outcome(loan.discard)
        if kind == "evict":
            seg = self.segment
            return _outcome(lambda: seg.evict_stale(op[1], seg.active_mask))
        if kind == "disconnect":
            return _outcome(self.segment.mark_reader_disconnected, op[1])
        raise ValueError(f"not a writer operation: {op!r}")

    def _loan(self, payload: bytes) -> int:
        loan = self.writer.loan()
        _write_into(loan, payload)
        self.kept.append((loan, len(payload)))
        return loan.slot

    def close(self) -> None:
        for loan, _ in self.kept:
            _outcome(loan.discard)
        self.kept.clear()


def _write_into(loan: Any, payload: bytes) -> None:
    if hasattr(loan, "write"):                   # the model
        loan.write(payload)
        return
    with memoryview(loan) as mv:                 # a real Loan
        mv[:len(payload)] = payload


class ReaderRole:
    """Executes reader ``k``'s operations on ``segment``."""

    def __init__(self, segment: Any) -> None:
        self.segment = segment
        self.reader: Any = None
        self.kept: list[Any] = []

    def step(self, op: Sequence[Any]) -> Any:
        kind = op[0]
        if kind == "join":
            if self.reader is not None:
                return "noop"
            try:
                self.reader = self.segment.reader(join_last=op[2])
            except Exception as exc:  # noqa: BLE001
                return type(exc).__name__
            return self.reader.index
        if self.reader is None:
            return "noop"
        if kind == "take":
            return _outcome(self._take, op[2])
        if kind == "release":
            if not self.kept:
                return "noop"
            sample = self.kept.pop(0)
            sn = sample.sn
            return _outcome(lambda: (sample.release(), sn)[1])
        if kind == "stats":
            return _outcome(lambda: normalize_stats(self.reader.stats()))
        if kind == "leave":
            return _outcome(self._leave)
        raise ValueError(f"not a reader operation: {op!r}")

    def _take(self, hold: bool) -> Any:
        sample = self.reader.try_take()
        if sample is None:
            return None
        got = (sample.sn, sample.tobytes())
        if hold:
            self.kept.append(sample)
        else:
            sample.release()
        return got

    def _leave(self) -> Any:
        for sample in self.kept:
            sample.release()
        self.kept.clear()
        stats = normalize_stats(self.reader.stats())
        self.reader.close()
        self.reader = None
        return stats

    def close(self) -> None:
        if self.reader is not None:
            _outcome(self._leave)


def run_schedule(segment: Any, ops: Sequence[Sequence[Any]], *,
                 overflow: str = "fail", n_readers: int | None = None,
                 close: bool = True) -> list[Any]:
    """Runs ``ops`` in one process on ``segment`` (model or real) and returns
    the outcome of each operation.  Roles are created up front; with
    ``close`` the readers are closed and the writer's kept loans discarded
    at the end (also when an operation raised)."""
    if n_readers is None:
        n_readers = 1 + max((r for r in map(role_of, ops) if r != WRITER), default=-1)
    writer = WriterRole(segment, overflow)
    readers = [ReaderRole(segment) for _ in range(n_readers)]
    ok = False
    try:
        out = []
        for op in ops:
            role = role_of(op)
            out.append((writer if role == WRITER else readers[role]).step(op))
        ok = True
        return out
    finally:
        if close or not ok:
            for r in readers:
                r.close()
            writer.close()
