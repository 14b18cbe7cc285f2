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
import os
import weakref
from typing import Any, AsyncIterator

from ._zdshm import ClosedError, SegmentClosedError, WaitTimeoutError

__all__ = ["atake", "aiter", "aloan", "apublish", "RECHECK"]

RECHECK = 0.1
"""Seconds between two looks of a wait that nothing woke (a dead creator)."""

_DEFAULT: Any = ...       # "the writer's timeout", as the signatures show it


class _Watch:
    """The readiness descriptors one event loop watches.

    One ``add_reader`` per descriptor, however many waiters (the writers of
    one segment handle share one descriptor).  A descriptor whose waiters
    were all woken stays registered until the loop has run the woken tasks
    once (``_idle``): a task that takes its sample and waits again at once,
    as a consumer loop does, then costs no registration system call.  One
    timer per loop wakes every waiter each RECHECK seconds.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.fds: dict[int, list[asyncio.Future[None]]] = {}
        self.ticker: asyncio.TimerHandle | None = None

    def wait(self, fd: int) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = self.loop.create_future()
        futures = self.fds.get(fd)
        if futures is None:
            self.fds[fd] = [fut]
            self.loop.add_reader(fd, self._ready, fd)
        else:
            futures.append(fut)
        if self.ticker is None:
            self.ticker = self.loop.call_later(RECHECK, self._tick)
        return fut

    def leave(self, fd: int, fut: asyncio.Future[None]) -> None:
        """A waiter that was not woken through fd (cancelled, timed out)."""
        futures = self.fds.get(fd)
        if futures is not None and fut in futures:
            futures.remove(fut)
            if not futures:
                self._unregister(fd)

    def _unregister(self, fd: int) -> None:
        del self.fds[fd]
        try:
            self.loop.remove_reader(fd)
        except OSError:
            pass                      # closed meanwhile: the kernel forgot it

    def _ready(self, fd: int) -> None:
        futures = self.fds.get(fd)
        if not futures:
            if futures is not None:
                self._unregister(fd)  # readable with nobody waiting
            return
        # Consume the datagram now: the descriptor is level-triggered and
        # the woken tasks run only in the next iteration of the loop, which
        # would otherwise see it readable again.
        try:
            os.read(fd, 64)
        except OSError:
            pass
        self.fds[fd] = []
        for fut in futures:
            if not fut.done():
                fut.set_result(None)
        self.loop.call_soon(self._idle, fd)

    def _idle(self, fd: int) -> None:
        if self.fds.get(fd) == []:
            self._unregister(fd)

    def _tick(self) -> None:
        self.ticker = None
        for futures in self.fds.values():
            for fut in futures:
                if not fut.done():
                    fut.set_result(None)


_watches: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Watch]" = weakref.WeakKeyDictionary()


_last: _Watch | None = None   # the watch of the loop that asked last


def _watch(loop: asyncio.AbstractEventLoop) -> _Watch:
    global _last
    w = _last
    if w is not None and w.loop is loop:
        return w
    w = _watches.get(loop)
    if w is None:
        w = _watches[loop] = _Watch(loop)
    _last = w
    return w


def _registered(loop: asyncio.AbstractEventLoop) -> dict[int, int]:
    """Descriptors this module has registered with loop: fd -> waiters."""
    w = _watches.get(loop)
    return {fd: len(f) for fd, f in w.fds.items()} if w is not None else {}


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


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


async def _readable(watch: _Watch, fd: int, deadline: float | None) -> None:
    """Returns when fd is readable, at the next RECHECK tick, or at the
    deadline (loop time)."""
    fut = watch.wait(fd)
    timer = None
    if deadline is not None:
        timer = watch.loop.call_at(deadline, _wake, fut)
    try:
        await fut
    finally:
        if timer is not None:
            timer.cancel()
        watch.leave(fd, fut)


async def atake(reader: Any, timeout: float | None = None) -> Any:
    """The next sample of reader (the oldest unread; the newest for a latest
    reader), awaited (see Reader.take)."""
    limit = None if timeout is None else _seconds(timeout, "timeout")
    fd = reader.fileno()
    sample = reader.try_take()        # with a descriptor: takes or arms
    if sample is not None:
        return sample
    loop = asyncio.get_running_loop()
    watch = _watch(loop)
    if limit is not None:
        return await _atake_until(reader, watch, fd, loop.time() + limit, timeout)
    try:
        while True:
            fut = watch.wait(fd)
            try:
                await fut
            finally:
                watch.leave(fd, fut)
            sample = reader.try_take()
            if sample is not None:
                return sample
    finally:
        reader._disarm()


async def _atake_until(reader: Any, watch: _Watch, fd: int, deadline: float,
                       timeout: Any) -> Any:
    try:
        while True:
            await _readable(watch, fd, deadline)
            sample = reader.try_take()
            if sample is not None:
                return sample
            if watch.loop.time() >= deadline:
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
    watch = _watch(loop)
    deadline = None if limit is None else loop.time() + limit
    fd = writer.fileno()
    try:
        while True:
            if writer._arm(last):
                if deadline is not None and loop.time() >= deadline:
                    raise WaitTimeoutError(f"{what}: no free slot within {limit!r} s")
                await _readable(watch, fd, deadline)
            last = seg.notify_generation
            got = attempt()
            if got is not None:
                return got
    finally:
        writer._disarm()


async def aloan(writer: Any, timeout: Any = _DEFAULT, *, nbytes: Any = None) -> Any:
    """writer.loan(), awaited: a free slot's Loan (of the smallest size class
    that holds nbytes; None: the largest).  overflow="fail" raises at once
    as loan() does; "block" and "reclaim" wait for space."""
    if writer.overflow == "fail":
        return writer.loan(nbytes=nbytes)
    return await _await_space(writer, lambda: writer.try_loan(nbytes=nbytes),
                              timeout, "aloan")


async def apublish(writer: Any, obj: Any, timeout: Any = _DEFAULT) -> int:
    """writer.publish(obj), awaited: copies obj into a free slot and returns
    its sequence number."""
    if writer.overflow == "fail":
        return int(writer.publish(obj))
    return int(await _await_space(writer, lambda: writer.try_publish(obj), timeout, "apublish"))
