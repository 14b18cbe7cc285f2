"""aio: asyncio round trips and what readiness costs a commit.

Round trip, 64 B, between two processes (as S1, measured in the same run):
- ``zdshm asyncio``: both processes run an event loop and ``await
  reader.atake()``; the message goes out with ``writer.publish``;
- ``socket asyncio``: the same loop shape over a ``socket.socketpair`` with
  ``loop.sock_sendall`` / ``loop.sock_recv`` (what an asyncio service would
  use without zdshm);
- the blocking parked zdshm round trip (pingpong.zdshm_pingpong) beside them;
- ``zdshm uvloop``: the zdshm asyncio round trip on uvloop, when installed.

Commit cost, one process: publish + try_take + release of 64 B with a
reader that never called fileno() ("plain") and with one whose descriptor
exists but is not armed ("fd, no waiter": the consumer keeps up, so the
commit only reads the armed count).  Rounds alternate.
"""
from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from typing import Any

from .common import Child, child_ready, unique_name, usage, usage_delta
from .pingpong import SLOTS, _add_peer, _intervals, _stamps, payload


def have_uvloop() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def _run(coro: Any, loop: str) -> Any:
    """Runs coro on a fresh event loop: "asyncio" (the default) or "uvloop"."""
    factory = None
    if loop == "uvloop":
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as r:
        return r.run(coro)


def _zd_aio_child(ctrl: Any, a: tuple) -> dict:
    import zdshm

    na, nb, sizes, iters, warm, loop = a
    sa = zdshm.PosixSegment.attach(na)
    sb = zdshm.PosixSegment.attach(nb)
    ra = sa.reader()
    wb = sb.writer()
    ra.fileno()
    child_ready(ctrl)

    async def echo() -> list[dict]:
        reps = []
        atake, pub = ra.atake, wb.publish
        for _size in sizes:
            for _ in range(warm):
                s = await atake()
                pub(s)
                s.release()
            u0 = usage()
            for _ in range(iters):
                s = await atake()
                pub(s)
                s.release()
            reps.append(usage_delta(u0, iters))
            s = await atake()
            pub(s)
            s.release()
        return reps

    reps = _run(echo(), loop)
    ra.close()
    wb.close()
    sa.close()
    sb.close()
    return {"per_size": reps}


def zdshm_aio_pingpong(sizes: list[int], iters: int, warm: int, timeout: float,
                       loop: str = "asyncio") -> list[dict]:
    """zdshm round trip with await atake() on both sides, on the given loop."""
    import zdshm

    cap = max(sizes)
    na, nb = unique_name("aa"), unique_name("ab")
    sa = zdshm.PosixSegment.create(na, slot_count=SLOTS, slot_capacity=cap)
    sb = None
    out: list[dict] = []
    try:
        sb = zdshm.PosixSegment.create(nb, slot_count=SLOTS, slot_capacity=cap)
        rb = sb.reader()
        wa = sa.writer()
        rb.fileno()
        with Child(_zd_aio_child, (na, nb, sizes, iters, warm, loop), timeout=timeout,
                   label=f"zdshm {loop}") as ch:
            ch.expect("ready")
            sa.unlink()
            sb.unlink()

            async def drive() -> None:
                atake, pub = rb.atake, wa.publish
                pc = time.perf_counter_ns
                for size in sizes:
                    msg = payload(size)
                    ts = _stamps(iters)
                    for _ in range(warm):
                        pub(msg)
                        (await atake()).release()
                    u0 = usage()
                    ts[0] = pc()
                    for i in range(1, iters + 1):
                        pub(msg)
                        (await atake()).release()
                        ts[i] = pc()
                    ud = usage_delta(u0, iters)
                    check = payload(size, 1)
                    pub(check)
                    s = await atake()
                    ok = s.tobytes()[:size] == check
                    s.release()
                    out.append({"intervals": _intervals(ts), "measuring": ud, "check_ok": ok})

            _run(drive(), loop)
            rep = ch.result()
        rb.close()
        wa.close()
    finally:
        for seg, name in ((sa, na), (sb, nb)):
            if seg is None:
                continue
            with contextlib.suppress(Exception):
                seg.close()
            with contextlib.suppress(Exception):
                zdshm.unlink(name)
    return _add_peer(out, rep)


async def _recv_exact(loop: asyncio.AbstractEventLoop, sock: socket.socket, buf: bytearray,
                      n: int) -> int:
    view = memoryview(buf)
    got = 0
    while got < n:
        k = await loop.sock_recv_into(sock, view[got:n])
        if k == 0:
            raise EOFError("socket closed")
        got += k
    return got


def _sock_aio_child(ctrl: Any, a: tuple) -> dict:
    sock, sizes, iters, warm = a
    sock.setblocking(False)
    child_ready(ctrl)

    async def echo() -> list[dict]:
        loop = asyncio.get_running_loop()
        buf = bytearray(max(sizes))
        reps = []
        for size in sizes:
            for _ in range(warm):
                await _recv_exact(loop, sock, buf, size)
                await loop.sock_sendall(sock, memoryview(buf)[:size])
            u0 = usage()
            for _ in range(iters):
                await _recv_exact(loop, sock, buf, size)
                await loop.sock_sendall(sock, memoryview(buf)[:size])
            reps.append(usage_delta(u0, iters))
            await _recv_exact(loop, sock, buf, size)
            await loop.sock_sendall(sock, memoryview(buf)[:size])
        return reps

    reps = asyncio.run(echo())
    sock.close()
    return {"per_size": reps}


def socket_aio_pingpong(sizes: list[int], iters: int, warm: int, timeout: float) -> list[dict]:
    """asyncio round trip over a unix socketpair (sock_sendall / sock_recv_into)."""
    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    out: list[dict] = []
    try:
        with Child(_sock_aio_child, (theirs, sizes, iters, warm), timeout=timeout,
                   label="socket asyncio") as ch:
            theirs.close()
            ch.expect("ready")
            mine.setblocking(False)

            async def drive() -> None:
                loop = asyncio.get_running_loop()
                buf = bytearray(max(sizes))
                pc = time.perf_counter_ns
                for size in sizes:
                    msg = payload(size)
                    ts = _stamps(iters)
                    for _ in range(warm):
                        await loop.sock_sendall(mine, msg)
                        await _recv_exact(loop, mine, buf, size)
                    u0 = usage()
                    ts[0] = pc()
                    for i in range(1, iters + 1):
                        await loop.sock_sendall(mine, msg)
                        await _recv_exact(loop, mine, buf, size)
                        ts[i] = pc()
                    ud = usage_delta(u0, iters)
                    check = payload(size, 1)
                    await loop.sock_sendall(mine, check)
                    await _recv_exact(loop, mine, buf, size)
                    out.append({"intervals": _intervals(ts), "measuring": ud,
                                "check_ok": bytes(buf[:size]) == check})

            asyncio.run(drive())
            rep = ch.result()
    finally:
        mine.close()
        with contextlib.suppress(OSError):
            theirs.close()
    return _add_peer(out, rep)


def commit_cost(rounds: int, batch: int) -> dict[str, list[float]]:
    """ns per publish + try_take + release (64 B, posix segment, one
    process), per round, for a reader without a descriptor ("plain") and
    one with a descriptor that is not armed ("fd"); rounds alternate.  Also
    checks that the "fd" rounds sent no datagram."""
    import zdshm

    name = unique_name("ac")
    seg = zdshm.PosixSegment.create(name, slot_count=SLOTS, slot_capacity=64)
    try:
        seg.unlink()
        w = seg.writer(overflow="fail")
        plain = seg.reader()
        out: dict[str, list[float]] = {"plain": [], "fd": []}
        msg = b"x" * 64
        pc = time.perf_counter_ns

        def loop(r: Any) -> float:
            pub, take = w.publish, r.try_take
            for _ in range(batch // 10):
                pub(msg)
                take().release()
            t0 = pc()
            for _ in range(batch):
                pub(msg)
                take().release()
            return (pc() - t0) / batch

        with_fd = None
        for rnd in range(2 * rounds):
            if rnd % 2 == 0:
                out["plain"].append(loop(plain))
                continue
            plain.close()
            with_fd = seg.reader()
            with_fd.fileno()
            with_fd.try_take()            # arms once ...
            w.publish(msg)                # ... this commit disarms it
            with_fd.try_take().release()
            sends = seg.info()["ready_sends"]
            out["fd"].append(loop(with_fd))
            if seg.info()["ready_sends"] != sends:
                raise RuntimeError("a commit with no waiter sent a datagram")
            with_fd.close()
            plain = seg.reader()
        plain.close()
        w.close()
    finally:
        with contextlib.suppress(Exception):
            seg.close()
        with contextlib.suppress(Exception):
            zdshm.unlink(name)
    return out
