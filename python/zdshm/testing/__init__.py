"""Property-testing support for zdshm.

* :mod:`zdshm.testing.model` — a pure-Python reference model of the slot
  semantics (slots, loans, commits, read masks, pins, readers joining and
  leaving, eviction with an injectable clock, the overflow policies, the
  counters).  Standard library only; it never imports the C extension.
* :mod:`zdshm.testing.schedule` — operation sequences with a writer role and
  reader roles that run on the model or on a real segment, in one process or
  spread over several.
* :mod:`zdshm.testing.strategies` — hypothesis strategies (geometries, reader
  masks, schedules); imported on first use, since it needs hypothesis.

Example::

    from zdshm.testing import SegmentModel

    model = SegmentModel(slot_count=2, slot_capacity=16)
    reader = model.reader()
    loan = model.reserve(model.active_mask)
    loan.write(b"hello")
    assert loan.commit(5) == 0
    sample = reader.try_take()
    assert (sample.sn, sample.tobytes()) == (0, b"hello")
"""
from __future__ import annotations

from typing import Any

from .model import (CLASS_MAX, COMMITTED, COUNTERS, FREE, LOANED, READER_MAX, ClosedError,
                    DisconnectedError, LoanModel, ModelError, NoFreeSlotError,
                    NoSampleError, ReaderModel, SampleModel, SampleTooLargeError,
                    SegmentModel, SlotBusyError, SlotModel, StaleLoanError,
                    TooManyReadersError, WaitTimeoutError, WouldBlockForever,
                    WriterModel, seconds_to_ns)
from .schedule import ReaderRole, WriterRole, normalize_stats, role_of, run_schedule

__all__ = [
    "CLASS_MAX", "COMMITTED", "COUNTERS", "FREE", "LOANED", "READER_MAX",
    "ClosedError", "DisconnectedError", "LoanModel", "ModelError",
    "NoFreeSlotError", "NoSampleError", "ReaderModel", "SampleModel",
    "SampleTooLargeError", "SegmentModel", "SlotBusyError", "SlotModel",
    "StaleLoanError", "TooManyReadersError", "WaitTimeoutError",
    "WouldBlockForever", "WriterModel", "seconds_to_ns",
    "ReaderRole", "WriterRole", "normalize_stats", "role_of", "run_schedule",
    "strategies",
]


def __getattr__(name: str) -> Any:
    if name == "strategies":
        import importlib

        return importlib.import_module(".strategies", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
