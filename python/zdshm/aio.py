"""asyncio for readers and writers: awaiting samples and free slots.

``await reader.atake()``, ``async for sample in reader``,
``await writer.aloan()`` and ``await writer.apublish(obj)`` are these
functions.  They never block the event loop and use no thread: a wait arms
the object's readiness descriptor (``fileno()``), registers it with
``loop.add_reader`` and sleeps until a commit (or a freed slot) in any
process makes it readable; the condition is then checked again, since a
readiness is only a hint.  Because the creator dying wakes nobody, a wait
also looks again every ``RECHECK`` seconds (a timer, not a busy poll).

Cancellation rule: a take or a loan happens only synchronously, between two
awaits, and its result is returned at once; so a cancelled ``atake`` or
``aloan`` leaves no pin, no loan and no registered callback behind (the
descriptor is unregistered and disarmed on the way out).  Works with any
asyncio loop that implements ``add_reader`` (the default loop, uvloop).
"""

from __future__ import annotations

import asyncio
import math
import weakref
from typing import Any, AsyncIterator

from ._zdshm import ClosedError, SegmentClosedError, WaitTimeoutError

__all__ = ["atake", "aiter", "aloan", "apublish", "RECHECK"]

RECHECK = 0.1
"""Seconds between two looks of a wait that nothing woke (a dead creator)."""

_DEFAULT: Any = object()

# Per event loop: descriptor -> the futures waiting for it to become
# readable.  One add_reader per descriptor, however many waiters (the
# writers of one segment handle share one descriptor).
_waiters: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[int, list[asyncio.Future[None]]]]" = (
    weakref.WeakKeyDictionary()
)


def _seconds(value: Any, what: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(
            f"{what} must be a number of seconds >= 0 or None, got {value!r} "
            f"({type(value).__name__})"
        )
    t = float(value)
    if math.isnan(t) or t < 0:
        raise ValueError(f"{what} must be a number of seconds >= 0 or None, got {value!r}")
    return t


def _on_readable(loop: asyncio.AbstractEventLoop, fd: int) -> None:
    table = _waiters.get(loop)
    futures = table.pop(fd, None) if table is not None else None
    loop.remove_reader(fd)
    for fut in futures or ():
        if not fut.done():
            fut.set_result(None)


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


async def _readable(loop: asyncio.AbstractEventLoop, fd: int, timeout: float) -> None:
    """Returns when fd is readable or after timeout seconds."""
    table = _waiters.get(loop)
    if table is None:
        table = _waiters[loop] = {}
    fut: asyncio.Future[None] = loop.create_future()
    futures = table.get(fd)
    if futures is None:
        futures = table[fd] = []
        loop.add_reader(fd, _on_readable, loop, fd)
    futures.append(fut)
    timer = loop.call_later(timeout, _wake, fut)
    try:
        await fut
    finally:
        timer.cancel()
        futures = table.get(fd)
        if futures is not None and fut in futures:
            futures.remove(fut)
            if not futures:
                del table[fd]
                loop.remove_reader(fd)


async def atake(reader: Any, timeout: float | None = None) -> Any:
    """The oldest unread sample of reader, awaited (see Reader.take)."""
    limit = _seconds(timeout, "timeout")
    fd = reader.fileno()
    sample = reader.try_take()        # with a descriptor: takes or arms
    if sample is not None:
        return sample
    loop = asyncio.get_running_loop()
    deadline = None if limit is None else loop.time() + limit
    try:
        while True:
            await _readable(loop, fd, RECHECK if deadline is None
                            else max(0.0, min(RECHECK, deadline - loop.time())))
            sample = reader.try_take()
            if sample is not None:
                return sample
            if deadline is not None and loop.time() >= deadline:
                raise WaitTimeoutError(f"atake: no sample within {timeout!r} s")
    finally:
        reader._disarm()


async def aiter(reader: Any) -> AsyncIterator[Any]:
    """Samples of reader as they come; ends like iterating the reader does
    (the creator's goodbye, or the reader closed)."""
    while True:
        try:
            sample = await atake(reader)
        except SegmentClosedError:
            return
        except ClosedError:
            if reader.closed:
                return
            raise
        yield sample


async def _await_space(writer: Any, attempt: Any, timeout: Any, what: str) -> Any:
    limit = writer.timeout if timeout is _DEFAULT else _seconds(timeout, "timeout")
    seg = writer.segment
    last = seg.notify_generation
    got = attempt()
    if got is not None:
        return got
    loop = asyncio.get_running_loop()
    deadline = None if limit is None else loop.time() + limit
    fd = writer.fileno()
    try:
        while True:
            if writer._arm(last):
                wait = RECHECK
                if deadline is not None:
                    left = deadline - loop.time()
                    if left <= 0:
                        raise WaitTimeoutError(f"{what}: no free slot within {limit!r} s")
                    wait = min(wait, left)
                await _readable(loop, fd, wait)
            last = seg.notify_generation
            got = attempt()
            if got is not None:
                return got
    finally:
        writer._disarm()


async def aloan(writer: Any, timeout: Any = _DEFAULT) -> Any:
    """writer.loan(), awaited: a free slot's Loan.  overflow="fail" raises
    at once as loan() does; "block" and "reclaim" wait for space."""
    if writer.overflow == "fail":
        return writer.loan()
    return await _await_space(writer, writer.try_loan, timeout, "aloan")


async def apublish(writer: Any, obj: Any, timeout: Any = _DEFAULT) -> int:
    """writer.publish(obj), awaited: copies obj into a free slot and returns
    its sequence number."""
    if writer.overflow == "fail":
        return int(writer.publish(obj))
    return int(await _await_space(writer, lambda: writer.try_publish(obj), timeout, "apublish"))
