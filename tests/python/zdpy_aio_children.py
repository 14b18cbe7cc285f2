"""Child-process targets of test_aio.py (importable by "spawn")."""
from __future__ import annotations

import asyncio
import time
import zlib

import zdshm


def payload(i: int) -> bytes:
    """Sample i: its number and a checksum of it."""
    body = i.to_bytes(8, "little") * 4
    return body + zlib.crc32(body).to_bytes(4, "little")


def check(data: bytes) -> int:
    """The number of a payload, after checking its checksum."""
    body, crc = data[:-4], int.from_bytes(data[-4:], "little")
    if zlib.crc32(body) != crc:
        raise AssertionError(f"bad checksum in {data!r}")
    return int.from_bytes(body[:8], "little")


def publish_n(name: str, count: int, start, done) -> None:
    """Publishes payload(0..count-1), blocking for space."""
    seg = zdshm.PosixSegment.attach(name)
    w = seg.writer(overflow="block", timeout=60)
    start.wait(60)
    for i in range(count):
        w.publish(payload(i))
    done.set()
    seg.close()


def publish_on_signal(name: str, go, done) -> None:
    """Publishes one sample each time `go` is set (and cleared by us)."""
    seg = zdshm.PosixSegment.attach(name)
    w = seg.writer(overflow="block", timeout=60)
    for i in range(2):
        go.wait(60)
        go.clear()
        time.sleep(0.05)
        w.publish(payload(i))
        done.set()
    seg.close()


def await_forever(name: str, ready) -> None:
    """A reader whose descriptor is registered with an event loop, waiting
    (killed by the test)."""
    seg = zdshm.PosixSegment.attach(name)
    r = seg.reader()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.call_later(0.2, ready.set)
        await r.atake()

    asyncio.run(main())
