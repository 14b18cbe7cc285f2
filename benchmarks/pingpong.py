"""S1: ping-pong round trip between two processes, zdshm and every peer.

The parent sends a message of `size` bytes, the child echoes it back on a
second channel, the parent waits for the echo: one round trip.  Each
direction has its own channel (for zdshm, its own posix segment with one
writer and one registered reader).  The parent stamps perf_counter_ns once
per round trip into a preallocated int64 array (no allocation in the loop),
after `warm` untimed round trips; rusage deltas cover the timed loop only.
After the timed loop one more round trip carries a distinct pattern and the
parent checks that the echo matches it.

Every transport function has the signature
    fn(sizes, iters, warm, timeout) -> list[dict]   (one dict per size)
with keys  ``intervals`` (int64 ndarray of round-trip times, ns),
``measuring`` and ``peer`` (rusage deltas per message), ``check_ok``.
"""
from __future__ import annotations

import contextlib
import ctypes
import time
from array import array
from typing import Any
from collections.abc import Callable

from .common import Child, child_ready, unique_name, usage, usage_delta

SPIN_S = 50e-6          # the bounded spin of the "spin" variants
SLOTS = 4


def payload(size: int, salt: int = 0) -> bytes:
    return bytes((i * 7 + salt) & 0xFF for i in range(size))


def _stamps(iters: int) -> array:
    return array("q", bytes(8 * (iters + 1)))


def _intervals(ts: array) -> Any:
    import numpy as np

    return np.diff(np.frombuffer(ts, dtype=np.int64))


def _add_peer(out: list[dict], rep: dict) -> list[dict]:
    """Adds the child's per-size rusage deltas (rep["per_size"]) as "peer"."""
    for o, r in zip(out, rep["per_size"], strict=False):
        o["peer"] = r
    return out


def _echo_queue(get: Callable[[], Any], put: Callable[[Any], Any], sizes: list[int],
                iters: int, warm: int) -> list[dict]:
    """The child side of a queue-like round trip: put(get()) for warm + iters
    + 1 messages per size; returns the rusage deltas of the timed ones."""
    reps = []
    for _size in sizes:
        for _ in range(warm):
            put(get())
        u0 = usage()
        for _ in range(iters):
            put(get())
        reps.append(usage_delta(u0, iters))
        put(get())
    return reps


def _queue_round_trips(put: Callable[[Any], Any], get: Callable[[], Any], sizes: list[int],
                       iters: int, warm: int) -> list[dict]:
    """The parent side of a queue-like round trip (put the message, get the
    echo), per size: warm-up, timed loop, then the check message."""
    out = []
    pc = time.perf_counter_ns
    for size in sizes:
        msg = payload(size)
        ts = _stamps(iters)
        for _ in range(warm):
            put(msg)
            get()
        u0 = usage()
        ts[0] = pc()
        for i in range(1, iters + 1):
            put(msg)
            get()
            ts[i] = pc()
        ud = usage_delta(u0, iters)
        check = payload(size, 1)
        put(check)
        ok = get() == check
        out.append({"intervals": _intervals(ts), "measuring": ud, "check_ok": ok})
    return out


# ==========================================================================
# zdshm
# ==========================================================================
def _zd_child(ctrl: Any, a: tuple) -> dict:
    import zdshm

    na, nb, spin, sizes, iters, warm, mode = a
    sa = zdshm.PosixSegment.attach(na)
    sb = zdshm.PosixSegment.attach(nb)
    ra = sa.reader(spin=spin)
    wb = sb.writer()
    child_ready(ctrl)
    reps = []
    take = ra.take
    pub = wb.publish
    loan = wb.loan
    for size in sizes:
        if mode == "loan":
            for j in range(warm + iters):
                if j == warm:
                    u0 = usage()
                s = take()
                ln = loan()
                m = memoryview(ln)
                src = memoryview(s)
                m[:size] = src
                src.release()
                m.release()
                ln.commit(size)
                s.release()
        else:
            for _ in range(warm):
                s = take()
                pub(s)
                s.release()
            u0 = usage()
            for _ in range(iters):
                s = take()
                pub(s)
                s.release()
        reps.append(usage_delta(u0, iters))
        s = take()
        pub(s)
        s.release()
    ra.close()
    wb.close()
    sa.close()
    sb.close()
    return {"per_size": reps}


def zdshm_pingpong(sizes: list[int], iters: int, warm: int, timeout: float, *,
                   spin: float = 0.0, mode: str = "publish") -> list[dict]:
    """zdshm round trip; mode "publish" (copy-in of the message) or "loan"
    (the parent loans, writes through a memoryview and commits; the child
    echoes by loaning and copying the sample in)."""
    import zdshm

    cap = max(sizes)
    na, nb = unique_name("pa"), unique_name("pb")
    sa = zdshm.PosixSegment.create(na, slot_count=SLOTS, slot_capacity=cap)
    sb = None
    out: list[dict] = []
    try:
        sb = zdshm.PosixSegment.create(nb, slot_count=SLOTS, slot_capacity=cap)
        rb = sb.reader(spin=spin)
        wa = sa.writer()
        with Child(_zd_child, (na, nb, spin, sizes, iters, warm, mode), timeout=timeout,
                   label="zdshm") as ch:
            ch.expect("ready")
            sa.unlink()
            sb.unlink()
            take = rb.take
            pub = wa.publish
            loan = wa.loan
            pc = time.perf_counter_ns
            for size in sizes:
                msg = payload(size)
                ts = _stamps(iters)
                if mode == "loan":
                    for _ in range(SLOTS):
                        pub(msg)
                    for _ in range(SLOTS):
                        take().release()
                    for _ in range(warm - SLOTS):
                        ln = loan()
                        m = memoryview(ln)
                        m[:size] = msg
                        m.release()
                        ln.commit(size)
                        take().release()
                    u0 = usage()
                    ts[0] = pc()
                    for i in range(1, iters + 1):
                        ln = loan()
                        m = memoryview(ln)
                        m[:size] = msg
                        m.release()
                        ln.commit(size)
                        take().release()
                        ts[i] = pc()
                else:
                    # a burst first: every slot of both segments is used once
                    # before the timed loop, in both processes (an attacher
                    # maps a slot's pages on its first use)
                    for _ in range(SLOTS):
                        pub(msg)
                    for _ in range(SLOTS):
                        take().release()
                    for _ in range(warm - SLOTS):
                        pub(msg)
                        take().release()
                    u0 = usage()
                    ts[0] = pc()
                    for i in range(1, iters + 1):
                        pub(msg)
                        take().release()
                        ts[i] = pc()
                ud = usage_delta(u0, iters)
                check = payload(size, 1)
                pub(check)
                s = take()
                ok = s.tobytes()[:size] == check
                s.release()
                out.append({"intervals": _intervals(ts), "measuring": ud, "check_ok": ok})
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


# ==========================================================================
# multiprocessing.Queue (pickle protocol 5)
# ==========================================================================
def _queue_child(ctrl: Any, a: tuple) -> dict:
    from .peers import force_pickle5

    force_pickle5()
    qa, qb, sizes, iters, warm = a
    child_ready(ctrl)
    reps = _echo_queue(qa.get, qb.put, sizes, iters, warm)
    qb.close()
    qb.join_thread()
    return {"per_size": reps}


def queue_pingpong(sizes: list[int], iters: int, warm: int, timeout: float) -> list[dict]:
    from .common import spawn_context
    from .peers import force_pickle5

    force_pickle5()
    ctx = spawn_context()
    qa, qb = ctx.Queue(), ctx.Queue()
    with Child(_queue_child, (qa, qb, sizes, iters, warm), timeout=timeout, label="mp.Queue") as ch:
        ch.expect("ready")
        out = _queue_round_trips(qa.put, qb.get, sizes, iters, warm)
        rep = ch.result()
    qa.close()
    qa.join_thread()
    return _add_peer(out, rep)


# ==========================================================================
# multiprocessing.Pipe (send_bytes / recv_bytes_into)
# ==========================================================================
def _pipe_child(ctrl: Any, a: tuple) -> dict:
    c, sizes, iters, warm = a
    child_ready(ctrl)
    reps = []
    buf = bytearray(max(sizes))
    rbi, sb = c.recv_bytes_into, c.send_bytes
    for _size in sizes:
        for _ in range(warm):
            n = rbi(buf)
            sb(buf, 0, n)
        u0 = usage()
        for _ in range(iters):
            n = rbi(buf)
            sb(buf, 0, n)
        reps.append(usage_delta(u0, iters))
        n = rbi(buf)
        sb(buf, 0, n)
    return {"per_size": reps}


def pipe_pingpong(sizes: list[int], iters: int, warm: int, timeout: float) -> list[dict]:
    from .common import spawn_context

    mine, theirs = spawn_context().Pipe()
    out = []
    with Child(_pipe_child, (theirs, sizes, iters, warm), timeout=timeout, label="mp.Pipe") as ch:
        theirs.close()
        ch.expect("ready")
        buf = bytearray(max(sizes))
        sb, rbi = mine.send_bytes, mine.recv_bytes_into
        pc = time.perf_counter_ns
        for size in sizes:
            msg = payload(size)
            ts = _stamps(iters)
            for _ in range(warm):
                sb(msg)
                rbi(buf)
            u0 = usage()
            ts[0] = pc()
            for i in range(1, iters + 1):
                sb(msg)
                rbi(buf)
                ts[i] = pc()
            ud = usage_delta(u0, iters)
            check = payload(size, 1)
            sb(check)
            n = rbi(buf)
            out.append({"intervals": _intervals(ts), "measuring": ud,
                        "check_ok": bytes(buf[:n]) == check})
        rep = ch.result()
    mine.close()
    return _add_peer(out, rep)


# ==========================================================================
# hand-rolled shared memory: multiprocessing.shared_memory or SharedArray,
# signalled through a Pipe (parked) or by spinning on a sequence word
# ==========================================================================
HDR = 128  # two sequence words on their own cache lines: [0] ping, [8] pong (uint64 index)


def _open_region(kind: str, name: str, nbytes: int, create: bool) -> tuple[Any, memoryview]:
    if kind == "SharedArray":
        import numpy as np
        import SharedArray

        arr = (SharedArray.create(f"shm://{name}", nbytes, dtype=np.uint8) if create
               else SharedArray.attach(f"shm://{name}"))
        return arr, memoryview(arr)
    from multiprocessing import shared_memory

    if create:
        shm = shared_memory.SharedMemory(name=name, create=True, size=nbytes)
    else:
        # a spawned child shares its parent's resource tracker: attaching
        # registers the name once more (a set), the creator's unlink removes it
        shm = shared_memory.SharedMemory(name=name)
    return shm, shm.buf


def _close_region(kind: str, name: str, obj: Any, mv: memoryview, unlink: bool) -> None:
    mv.release()
    if kind == "SharedArray":
        if unlink:
            import SharedArray

            with contextlib.suppress(Exception):
                SharedArray.delete(f"shm://{name}")
        return
    with contextlib.suppress(Exception):
        obj.close()
    if unlink:
        with contextlib.suppress(Exception):
            obj.unlink()


def _shm_child(ctrl: Any, a: tuple) -> dict:
    kind, name, c, spin, sizes, iters, warm = a
    cap = max(sizes)
    obj, mv = _open_region(kind, name, HDR + 2 * cap, create=False)
    seq = mv[:HDR].cast("Q")
    A = mv[HDR:HDR + cap]
    B = mv[HDR + cap:HDR + 2 * cap]
    child_ready(ctrl)
    reps = []
    sig = bytearray(8)
    k = 0
    for size in sizes:
        n_total = warm + iters + 1
        u0 = None
        for j in range(n_total):
            if j == warm:
                u0 = usage()
            if j == warm + iters:
                reps.append(usage_delta(u0, iters))
            k += 1
            if spin:
                while seq[0] != k:
                    pass
                B[:size] = A[:size]
                seq[8] = k
            else:
                c.recv_bytes_into(sig)
                B[:size] = A[:size]
                c.send_bytes(sig, 0, 1)
    del A, B, seq
    _close_region(kind, name, obj, mv, unlink=False)
    return {"per_size": reps}


def shm_pingpong(sizes: list[int], iters: int, warm: int, timeout: float, *,
                 kind: str = "shared_memory", spin: bool = False) -> list[dict]:
    from .common import spawn_context

    cap = max(sizes)
    name = unique_name("shm")
    obj, mv = _open_region(kind, name, HDR + 2 * cap, create=True)
    mine, theirs = spawn_context().Pipe()
    out = []
    try:
        seq = mv[:HDR].cast("Q")
        A = mv[HDR:HDR + cap]
        B = mv[HDR + cap:HDR + 2 * cap]
        with Child(_shm_child, (kind, name, theirs, spin, sizes, iters, warm), timeout=timeout,
                   label=f"{kind}+{'spin' if spin else 'Pipe'}") as ch:
            theirs.close()
            ch.expect("ready")
            sig = bytearray(8)
            sb, rbi = mine.send_bytes, mine.recv_bytes_into
            pc = time.perf_counter_ns
            k = 0
            for size in sizes:
                msg = payload(size)
                ts = _stamps(iters)
                if spin:
                    for _ in range(warm):
                        k += 1
                        A[:size] = msg
                        seq[0] = k
                        while seq[8] != k:
                            pass
                        B[0]
                    u0 = usage()
                    ts[0] = pc()
                    for i in range(1, iters + 1):
                        k += 1
                        A[:size] = msg
                        seq[0] = k
                        while seq[8] != k:
                            pass
                        B[0]
                        ts[i] = pc()
                else:
                    for _ in range(warm):
                        k += 1
                        A[:size] = msg
                        sb(sig, 0, 1)
                        rbi(sig)
                        B[0]
                    u0 = usage()
                    ts[0] = pc()
                    for i in range(1, iters + 1):
                        k += 1
                        A[:size] = msg
                        sb(sig, 0, 1)
                        rbi(sig)
                        B[0]
                        ts[i] = pc()
                ud = usage_delta(u0, iters)
                check = payload(size, 1)
                k += 1
                A[:size] = check
                if spin:
                    seq[0] = k
                    while seq[8] != k:
                        pass
                else:
                    sb(sig, 0, 1)
                    rbi(sig)
                out.append({"intervals": _intervals(ts), "measuring": ud,
                            "check_ok": bytes(B[:size]) == check})
            rep = ch.result()
        del A, B, seq
    finally:
        mine.close()
        _close_region(kind, name, obj, mv, unlink=True)
    return _add_peer(out, rep)


# ==========================================================================
# faster-fifo
# ==========================================================================
def _ff_child(ctrl: Any, a: tuple) -> dict:
    qa, qb, sizes, iters, warm = a
    child_ready(ctrl)
    return {"per_size": _echo_queue(qa.get, qb.put, sizes, iters, warm)}


def fifo_pingpong(sizes: list[int], iters: int, warm: int, timeout: float) -> list[dict]:
    import faster_fifo

    from .peers import p5_dumps, p5_loads

    size_bytes = max(1 << 20, 16 * max(sizes))
    qa = faster_fifo.Queue(max_size_bytes=size_bytes, dumps=p5_dumps, loads=p5_loads)
    qb = faster_fifo.Queue(max_size_bytes=size_bytes, dumps=p5_dumps, loads=p5_loads)
    with Child(_ff_child, (qa, qb, sizes, iters, warm), timeout=timeout, label="faster-fifo") as ch:
        ch.expect("ready")
        out = _queue_round_trips(qa.put, qb.get, sizes, iters, warm)
        rep = ch.result()
    return _add_peer(out, rep)


# ==========================================================================
# iceoryx2 (publish-subscribe of u8 slices; parked: event service, spin: polling)
# ==========================================================================
class Iox:
    """One iceoryx2 node with a pub/sub service (and an event service) per direction."""

    def __init__(self, base: str, max_len: int, create: bool, parked: bool,
                 send_dir: str, recv_dir: str, depth: int = SLOTS, subscribers: int = 1,
                 blocking: bool = False, ack: bool = False) -> None:
        """ack: a second event service per direction on which a reader
        acknowledges every sample it released (event id = reader index), for
        the writer's credit-based flow control.  (Across processes the
        RetryUntilDelivered backpressure of iceoryx2 0.10 did not block a
        publisher whose subscriber buffer was full: send() returned 0
        receivers and the sample was lost, so the benchmark bounds the
        samples in flight itself.)"""
        import iceoryx2 as iox

        iox.set_log_level(iox.LogLevel.Error)
        self.iox = iox
        self.node = iox.NodeBuilder.new().create(iox.ServiceType.Ipc)
        self.pub = self.sub = self.notifier = self.listener = None
        self.ack_listener = self.ack_notifier = None
        self.services = []
        if send_dir:
            ps = self._pubsub(f"{base}/{send_dir}", create, depth, subscribers, blocking)
            pb = ps.publisher_builder().initial_max_slice_len(max_len)
            if blocking:
                pb = pb.backpressure_strategy(iox.BackpressureStrategy.RetryUntilDelivered)
            self.pub = pb.create()
            if parked:
                ev = self._event(f"{base}/{send_dir}/ev", create)
                self.notifier = ev.notifier_builder().create()
            if ack:
                ev = self._event(f"{base}/{send_dir}/ack", create)
                self.ack_listener = ev.listener_builder().create()
        if recv_dir:
            ps = self._pubsub(f"{base}/{recv_dir}", create, depth, subscribers, blocking)
            self.sub = ps.subscriber_builder().buffer_size(depth).create()
            if parked:
                ev = self._event(f"{base}/{recv_dir}/ev", create)
                self.listener = ev.listener_builder().create()
            if ack:
                ev = self._event(f"{base}/{recv_dir}/ack", create)
                self.ack_notifier = ev.notifier_builder().create()
        self.wait_d = iox.Duration.from_secs(1)

    def _pubsub(self, name: str, create: bool, depth: int, subscribers: int, blocking: bool) -> Any:
        iox = self.iox
        b = (self.node.service_builder(iox.ServiceName.new(name))
             .publish_subscribe(iox.Slice[ctypes.c_uint8])
             .max_publishers(1).max_subscribers(max(subscribers, 1))
             .history_size(0).subscriber_max_buffer_size(depth))
        if blocking:
            b = b.enable_safe_overflow(False)
        s = b.open_or_create()
        self.services.append(s)
        return s

    def _event(self, name: str, create: bool) -> Any:
        s = (self.node.service_builder(self.iox.ServiceName.new(name)).event()
             .event_id_max_value(255).open_or_create())
        self.services.append(s)
        return s

    def wait_credits(self, credits: list[int]) -> None:
        """Blocks until every reader has a credit (acks add credits by reader index)."""
        while min(credits) <= 0:
            for act in self.ack_listener.timed_wait(self.wait_d):
                credits[act.id.as_value] += act.count

    def close(self) -> None:
        for attr in ("pub", "sub", "notifier", "listener", "ack_listener", "ack_notifier"):
            o = getattr(self, attr)
            if o is not None:
                with contextlib.suppress(Exception):
                    o.delete()
                setattr(self, attr, None)
        self.services.clear()
        with contextlib.suppress(Exception):
            self.node.delete()


def _iox_receive(sub: Any, listener: Any, wait_d: Any) -> Any:
    """Next sample: polling (listener None) or parked on the event listener."""
    recv = sub.receive
    if listener is None:
        while True:
            s = recv()
            if s is not None:
                return s
    while True:
        s = recv()
        if s is not None:
            return s
        listener.timed_wait(wait_d)


def _iox_child(ctrl: Any, a: tuple) -> dict:
    base, parked, sizes, iters, warm = a
    x = Iox(base, max(sizes), create=False, parked=parked, send_dir="b", recv_dir="a")
    child_ready(ctrl)
    ctrl.recv()  # "go": the parent's ports exist
    x.pub.update_connections()
    reps = []
    sub, listener, pub, notifier, wait_d = x.sub, x.listener, x.pub, x.notifier, x.wait_d
    mm = ctypes.memmove
    for size in sizes:
        n_total = warm + iters + 1
        u0 = None
        for j in range(n_total):
            if j == warm:
                u0 = usage()
            if j == warm + iters:
                reps.append(usage_delta(u0, iters))
            s = _iox_receive(sub, listener, wait_d)
            o = pub.loan_slice_uninit(size)
            mm(o.payload_ptr, s.payload_ptr, size)
            o.assume_init().send()
            if notifier is not None:
                notifier.notify()
            s.delete()
    x.close()
    return {"per_size": reps}


def iox_pingpong(sizes: list[int], iters: int, warm: int, timeout: float, *,
                 parked: bool = True) -> list[dict]:
    base = unique_name("iox").replace("-", "/")
    x = Iox(base, max(sizes), create=True, parked=parked, send_dir="a", recv_dir="b")
    out = []
    try:
        with Child(_iox_child, (base, parked, sizes, iters, warm), timeout=timeout,
                   label="iceoryx2") as ch:
            ch.expect("ready")
            x.pub.update_connections()
            ch.send("go")
            sub, listener, pub, notifier, wait_d = x.sub, x.listener, x.pub, x.notifier, x.wait_d
            mm = ctypes.memmove
            pc = time.perf_counter_ns
            recv = _iox_receive
            for size in sizes:
                msg = payload(size)
                ts = _stamps(iters)
                # warm-up burst: every sample of the pools is used once
                for _ in range(SLOTS):
                    o = pub.loan_slice_uninit(size)
                    mm(o.payload_ptr, msg, size)
                    o.assume_init().send()
                    if notifier is not None:
                        notifier.notify()
                for _ in range(SLOTS):
                    recv(sub, listener, wait_d).delete()
                rest = warm - SLOTS
                # a round trip: loan, copy the message in, send, notify; wait for the echo
                for j in range(rest + iters):
                    if j == rest:
                        u0 = usage()
                        ts[0] = pc()
                    o = pub.loan_slice_uninit(size)
                    mm(o.payload_ptr, msg, size)
                    o.assume_init().send()
                    if notifier is not None:
                        notifier.notify()
                    recv(sub, listener, wait_d).delete()
                    if j >= rest:
                        ts[j - rest + 1] = pc()
                ud = usage_delta(u0, iters)
                check = payload(size, 1)
                o = pub.loan_slice_uninit(size)
                mm(o.payload_ptr, check, size)
                o.assume_init().send()
                if notifier is not None:
                    notifier.notify()
                s = recv(sub, listener, wait_d)
                ok = ctypes.string_at(s.payload_ptr, size) == check
                s.delete()
                out.append({"intervals": _intervals(ts), "measuring": ud, "check_ok": ok})
            rep = ch.result()
    finally:
        x.close()
    return _add_peer(out, rep)


# ==========================================================================
# the list S1 runs
# ==========================================================================
def transports(cpu_count: int) -> list[tuple[str, str, str, Callable[..., list[dict]], dict]]:
    """(impl, variant, peer key, function, kwargs) in the order S1 runs them.

    peer key is the entry of peers.probe() that must be available ("" for zdshm).
    Spinning transports need two CPUs.
    """
    two = cpu_count >= 2
    t: list[tuple[str, str, str, Callable[..., list[dict]], dict]] = [
        ("zdshm", "parked", "", zdshm_pingpong, {"spin": 0.0}),
        ("zdshm", "parked-loan", "", zdshm_pingpong, {"spin": 0.0, "mode": "loan"}),
    ]
    if two:
        t.append(("zdshm", "spin", "", zdshm_pingpong, {"spin": SPIN_S}))
    t += [
        ("mp.Queue", "parked", "mp.Queue", queue_pingpong, {}),
        ("mp.Pipe", "parked", "mp.Pipe", pipe_pingpong, {}),
        ("shared_memory+Pipe", "parked", "shared_memory+Pipe", shm_pingpong, {}),
        ("SharedArray+Pipe", "parked", "SharedArray", shm_pingpong, {"kind": "SharedArray"}),
        ("faster-fifo", "parked", "faster-fifo", fifo_pingpong, {}),
        ("iceoryx2", "parked", "iceoryx2", iox_pingpong, {"parked": True}),
    ]
    if two:
        t += [
            ("shared_memory+spin", "spin", "shared_memory+spin", shm_pingpong, {"spin": True}),
            ("iceoryx2", "spin", "iceoryx2", iox_pingpong, {"parked": False}),
        ]
    return t
