"""S2 (1 writer -> 1 reader numpy throughput) and S3 (fan-out to N readers).

S2: the writer is a child process, the reader (measuring side) is the parent.
Each message is a 1-D uint8 numpy array of `size` bytes, written in place
where the transport allows it (zdshm: ``Writer.loan_array``; shared-memory
rings: a numpy view of the free slot; iceoryx2: a numpy view of the loaned
slice) or built per message where it does not (Queue, faster-fifo: a fresh
``np.empty``; Pipe: one reused array, since send_bytes copies at once).

Two labelled variants, for every transport:

  header  the writer stores the message number in the first and last
          element, the reader checks both: the cost of moving the message
          and nothing else ("transport only")
  touch   the writer stores one byte in every 4 KiB page, the reader sums
          one byte of every page (``a[::4096].sum()``): per-page work on
          both sides, as a producer that fills and a consumer that reads

and, for zdshm only, ``sum``: the reader runs ``np.sum`` over the whole array
(memory-bandwidth bound).  Every transport gets `SLOTS` messages of buffering
(slots, queue bound, ring entries, subscriber buffer) and blocks when full.

Per step the parent runs `warm` untimed messages, then times `count`
messages: per-message time = elapsed / count, with rusage deltas of both
sides over the same messages.  Message counts adapt to a time budget.
"""
from __future__ import annotations

import contextlib
import ctypes
import functools
import time
from collections.abc import Callable
from typing import Any

from .common import BenchError, Child, child_ready, spawn_context, unique_name, usage, usage_delta

PAGE = 4096
SLOTS = 4
SPIN_S = 50e-6   # the bounded spin of the "-spin" variants (as in S1)
WARM_PAUSE_S = 0.05  # the reader starts this late, so the writer fills every buffer first


def _np() -> Any:
    import numpy as np

    return np


# --------------------------------------------------------------------------
# the per-message work of writer and reader, shared by every transport
# --------------------------------------------------------------------------
def base_variant(variant: str) -> str:
    """ "header-spin" -> "header": the -spin suffix only changes how zdshm waits."""
    return variant.split("-", 1)[0]


def fill(a: Any, i: int, variant: str) -> None:
    v = i & 0xFF
    if variant == "touch":
        a[::PAGE] = v
        a[-1] = v
    else:
        a[0] = v
        a[-1] = v


def check(a: Any, i: int, variant: str) -> int:
    """Reads the message as the variant says; returns 1 if it is not message i."""
    v = i & 0xFF
    if variant == "touch":
        s = int(a[::PAGE].sum())
        return int(s != v * ((a.shape[0] + PAGE - 1) // PAGE) or a[-1] != v)
    if variant == "sum":
        a.sum()
    return int(a[0] != v or a[-1] != v)


# ==========================================================================
# the timed loops: warm-up, then `n` timed messages with rusage deltas
# ==========================================================================
def timed_reads(read_one: Callable[[int], int], n: int, warm: int) -> dict:
    """Runs read_one(i) for warm + n messages (it returns 1 if message i is
    wrong); times the last n.  Returns elapsed_ns, measuring (rusage delta
    per message) and errors."""
    bad = 0
    pc = time.perf_counter_ns
    u0 = usage()
    t0 = pc()
    for i in range(warm + n):
        if i == warm:
            u0 = usage()
            t0 = pc()
        bad += read_one(i)
    t1 = pc()
    return {"elapsed_ns": t1 - t0, "measuring": usage_delta(u0, n), "errors": bad}


def timed_writes(write_one: Callable[[int], Any], n: int, warm: int) -> dict:
    """Runs write_one(i) for warm + n messages; the rusage delta of the last n."""
    u0 = usage()
    for i in range(warm + n):
        if i == warm:
            u0 = usage()
        write_one(i)
    return usage_delta(u0, n)


# ==========================================================================
# transports: parent (reader) side and child (writer) side
# ==========================================================================
class _Stream:
    """The hooks stream_run and _stream_child call, as no-ops; a transport
    overrides what it needs and defines parent_read, child_new, child_write
    (and, where it has them, started, close, child_close)."""

    zero_copy = False

    def spawn_args(self) -> Any:
        return None

    def parent_setup(self, size: int, variant: str = "") -> Any:
        return None

    def attached(self) -> None:
        pass

    def parent_teardown(self) -> None:
        pass

    def child_setup(self, step_args: Any) -> None:
        pass

    def child_teardown(self) -> None:
        pass


class ZdshmStream(_Stream):
    """zdshm posix segment, SLOTS slots of `size`; Writer.loan_array / Reader.take."""

    zero_copy = True

    name = "zdshm"

    def __init__(self, spin: float = 0.0) -> None:
        self.spin = spin
        self.seg: Any = None
        self.r: Any = None
        self.segname = ""

    def parent_setup(self, size: int, variant: str = "") -> Any:
        import zdshm

        spin = SPIN_S if variant.endswith("-spin") else self.spin
        self.segname = unique_name("s2")
        self.seg = zdshm.PosixSegment.create(self.segname, slot_count=SLOTS, slot_capacity=size)
        self.r = self.seg.reader(spin=spin)
        return (self.segname, spin)

    def attached(self) -> None:
        self.seg.unlink()

    def parent_read(self, variant: str, size: int, n: int, warm: int) -> dict:
        np = _np()
        variant = base_variant(variant)
        take = self.r.take
        asarray = np.asarray

        def read_one(i: int) -> int:
            s = take()
            a = asarray(s)
            bad = check(a, i, variant)
            del a
            s.release()
            return bad
        return timed_reads(read_one, n, warm)

    def parent_teardown(self) -> None:
        import zdshm

        for o in (self.r, self.seg):
            if o is not None:
                with contextlib.suppress(Exception):
                    o.close()
        with contextlib.suppress(Exception):
            zdshm.unlink(self.segname)
        self.r = self.seg = None

    # child
    @staticmethod
    def child_new(spawn_args: Any) -> ZdshmStream:
        return ZdshmStream()

    def child_setup(self, step_args: Any) -> None:
        import zdshm

        name, spin = step_args
        self.seg = zdshm.PosixSegment.attach(name)
        self.w = self.seg.writer(spin=spin)

    def child_write(self, variant: str, size: int, n: int, warm: int) -> dict:
        np = _np()
        variant = base_variant(variant)
        la = self.w.loan_array

        def write_one(i: int) -> None:
            with la((size,), np.uint8) as a:
                fill(a, i, variant)
        return timed_writes(write_one, n, warm)

    def child_teardown(self) -> None:
        self.w.close()
        self.seg.close()


class _QueueLikeStream(_Stream):
    """A queue `self.q` shared with the child: the writer puts a fresh array
    per message, the reader gets it.  _get / _put give the bound calls."""

    def _get(self) -> Callable[[], Any]:
        return self.q.get

    def _put(self) -> Callable[[Any], Any]:
        return self.q.put

    def spawn_args(self) -> Any:
        return self.q

    def parent_read(self, variant: str, size: int, n: int, warm: int) -> dict:
        get = self._get()
        return timed_reads(lambda i: check(get(), i, variant), n, warm)

    @classmethod
    def child_new(cls, spawn_args: Any) -> Any:
        o = cls.__new__(cls)
        o.q = spawn_args
        return o

    def child_write(self, variant: str, size: int, n: int, warm: int) -> dict:
        np = _np()
        put = self._put()
        empty = np.empty

        def write_one(i: int) -> None:
            a = empty(size, np.uint8)
            fill(a, i, variant)
            put(a)
        return timed_writes(write_one, n, warm)


class QueueStream(_QueueLikeStream):
    """multiprocessing.Queue(maxsize=SLOTS), pickle protocol 5; a fresh array per message."""

    name = "mp.Queue"

    def __init__(self) -> None:
        from .peers import force_pickle5

        force_pickle5()
        self.q = spawn_context().Queue(maxsize=SLOTS)

    def close(self) -> None:
        self.q.close()
        self.q.join_thread()

    @classmethod
    def child_new(cls, spawn_args: Any) -> QueueStream:
        from .peers import force_pickle5

        force_pickle5()
        return super().child_new(spawn_args)

    def child_close(self) -> None:
        self.q.close()
        self.q.join_thread()


class PipeStream(_Stream):
    """multiprocessing.Pipe: send_bytes(array) / recv_bytes_into(preallocated buffer)."""

    name = "mp.Pipe"

    def __init__(self) -> None:
        self.mine, self.theirs = spawn_context().Pipe()

    def spawn_args(self) -> Any:
        return self.theirs

    def started(self) -> None:
        self.theirs.close()

    def parent_setup(self, size: int, variant: str = "") -> Any:
        self.buf = bytearray(size)
        return None

    def parent_read(self, variant: str, size: int, n: int, warm: int) -> dict:
        np = _np()
        rbi = self.mine.recv_bytes_into
        buf = self.buf
        a = np.frombuffer(buf, np.uint8)

        def read_one(i: int) -> int:
            rbi(buf)
            return check(a, i, variant)
        r = timed_reads(read_one, n, warm)
        del a, read_one
        return r

    def parent_teardown(self) -> None:
        self.buf = None  # type: ignore[assignment]

    def close(self) -> None:
        self.mine.close()

    @staticmethod
    def child_new(spawn_args: Any) -> PipeStream:
        o = PipeStream.__new__(PipeStream)
        o.c = spawn_args
        return o

    def child_write(self, variant: str, size: int, n: int, warm: int) -> dict:
        np = _np()
        a = np.zeros(size, np.uint8)
        sb = self.c.send_bytes

        def write_one(i: int) -> None:
            fill(a, i, variant)
            sb(a)
        return timed_writes(write_one, n, warm)


class ShmRingStream(_Stream):
    """A ring of SLOTS slots in multiprocessing.shared_memory (or SharedArray),
    numpy views created once; the writer sends the slot index over a Pipe, the
    reader sends it back when done (hand-rolled, what people write today)."""

    zero_copy = True

    def __init__(self, kind: str = "shared_memory") -> None:
        self.kind = kind
        self.name = f"{kind}+Pipe"
        self.mine, self.theirs = spawn_context().Pipe()
        self.region: Any = None

    def spawn_args(self) -> Any:
        return (self.kind, self.theirs)

    def started(self) -> None:
        self.theirs.close()

    def _open(self, name: str, size: int, create: bool) -> None:
        from .pingpong import _open_region

        np = _np()
        self.region = name
        self.obj, self.mv = _open_region(self.kind, name, SLOTS * size, create)
        self.views = [np.frombuffer(self.mv, np.uint8, size, j * size) for j in range(SLOTS)]

    def _close(self, unlink: bool) -> None:
        from .pingpong import _close_region

        self.views = []
        _close_region(self.kind, self.region, self.obj, self.mv, unlink)
        self.region = None

    def parent_setup(self, size: int, variant: str = "") -> Any:
        name = unique_name("ring")
        self._open(name, size, True)
        return name

    def parent_read(self, variant: str, size: int, n: int, warm: int) -> dict:
        c = self.mine
        sig = bytearray(8)
        rbi, sb = c.recv_bytes_into, c.send_bytes
        views = self.views

        def read_one(i: int) -> int:
            rbi(sig)
            bad = check(views[sig[0]], i, variant)
            sb(sig, 0, 1)
            return bad
        return timed_reads(read_one, n, warm)

    def parent_teardown(self) -> None:
        if self.region is not None:
            self._close(True)

    def close(self) -> None:
        self.mine.close()

    @staticmethod
    def child_new(spawn_args: Any) -> ShmRingStream:
        o = ShmRingStream.__new__(ShmRingStream)
        o.kind, o.c = spawn_args
        o.region = None
        return o

    def child_setup(self, step_args: Any) -> None:
        self.step_name = step_args

    def child_write(self, variant: str, size: int, n: int, warm: int) -> dict:
        self._open(self.step_name, size, False)
        c = self.c
        sig = bytearray(8)
        free = list(range(SLOTS))
        rbi, sb = c.recv_bytes_into, c.send_bytes
        views = self.views

        def write_one(i: int) -> None:
            if not free:
                rbi(sig)
                free.append(sig[0])
            j = free.pop()
            fill(views[j], i, variant)
            sig[0] = j
            sb(sig, 0, 1)
        ud = timed_writes(write_one, n, warm)
        for _ in range(SLOTS - len(free)):
            rbi(sig)
        return ud

    def child_teardown(self) -> None:
        if self.region is not None:
            self._close(False)


class FifoStream(_QueueLikeStream):
    """faster-fifo Queue (pickle protocol 5), a fresh array per message."""

    name = "faster-fifo"

    def __init__(self, max_size: int) -> None:
        import faster_fifo

        from .peers import p5_dumps, p5_loads

        self.q = faster_fifo.Queue(max_size_bytes=SLOTS * max_size + (1 << 20),
                                   dumps=p5_dumps, loads=p5_loads)

    def _get(self) -> Callable[[], Any]:
        return functools.partial(self.q.get, timeout=60.0)

    def _put(self) -> Callable[[Any], Any]:
        return functools.partial(self.q.put, timeout=60.0)


class IoxStream(_Stream):
    """iceoryx2 publish-subscribe of u8 slices; numpy views of the loaned and
    received slices; the reader parks on an event service the writer notifies."""

    zero_copy = True

    name = "iceoryx2"

    def __init__(self) -> None:
        self.x: Any = None

    def parent_setup(self, size: int, variant: str = "") -> Any:
        from .pingpong import Iox

        base = unique_name("ioxs").replace("-", "/")
        self.x = Iox(base, size, create=True, parked=True, send_dir="", recv_dir="d",
                     blocking=True, ack=True)
        self.T = ctypes.c_uint8 * size
        return base

    def parent_read(self, variant: str, size: int, n: int, warm: int) -> dict:
        from .pingpong import _iox_receive

        np = _np()
        sub, listener, wait_d = self.x.sub, self.x.listener, self.x.wait_d
        ack, ack_id = self.x.ack_notifier.notify_with_custom_event_id, self.x.iox.EventId.new(0)
        T = self.T
        frombuffer = np.frombuffer
        u8 = np.uint8

        def read_one(i: int) -> int:
            s = _iox_receive(sub, listener, wait_d)
            a = frombuffer(T.from_address(s.payload_ptr), u8)
            bad = check(a, i, variant)
            del a
            s.delete()
            ack(ack_id)
            return bad
        return timed_reads(read_one, n, warm)

    def parent_teardown(self) -> None:
        if self.x is not None:
            self.x.close()
            self.x = None

    @staticmethod
    def child_new(spawn_args: Any) -> IoxStream:
        return IoxStream()

    def child_setup(self, step_args: Any) -> None:
        self.base = step_args

    def child_write(self, variant: str, size: int, n: int, warm: int) -> dict:
        from .pingpong import Iox

        np = _np()
        x = Iox(self.base, size, create=False, parked=True, send_dir="d", recv_dir="",
                blocking=True, ack=True)
        self.x = x
        x.pub.update_connections()
        T = ctypes.c_uint8 * size
        frombuffer = np.frombuffer
        u8 = np.uint8
        pub, notify = x.pub, x.notifier.notify
        credits = [SLOTS]

        def write_one(i: int) -> None:
            if credits[0] <= 0:
                x.wait_credits(credits)
            credits[0] -= 1
            o = pub.loan_slice_uninit(size)
            a = frombuffer(T.from_address(o.payload_ptr), u8)
            fill(a, i, variant)
            del a
            o.assume_init().send()
            notify()
        return timed_writes(write_one, n, warm)

    def child_teardown(self) -> None:
        self.x.close()


STREAMS = {
    "zdshm": ZdshmStream,
    "mp.Queue": QueueStream,
    "mp.Pipe": PipeStream,
    "shared_memory+Pipe": ShmRingStream,
    "SharedArray+Pipe": ShmRingStream,
    "faster-fifo": FifoStream,
    "iceoryx2": IoxStream,
}


def _new_stream(kind: str, max_size: int) -> Any:
    if kind == "SharedArray+Pipe":
        return ShmRingStream("SharedArray")
    if kind == "faster-fifo":
        return FifoStream(max_size)
    return STREAMS[kind]()


def _stream_child(ctrl: Any, a: tuple) -> dict:
    kind, spawn_args = a
    t = STREAMS[kind].child_new(spawn_args)
    child_ready(ctrl)
    while True:
        msg = ctrl.recv()
        if msg[0] == "stop":
            break
        _, variant, size, n, warm, step_args = msg
        t.child_setup(step_args)
        ctrl.send(("ready", {}))
        try:
            ud = t.child_write(variant, size, n, warm)
            ctrl.send(("step", ud))
            ctrl.recv()  # ("release",): the reader has everything; samples
            #              in flight may die with the writer's port
        finally:
            t.child_teardown()
    if hasattr(t, "child_close"):
        t.child_close()
    return {}


def stream_run(kind: str, steps: list[tuple[str, int]], plan: Any, timeout: float,
               progress: Any = None) -> list[dict]:
    """Runs the (variant, size) steps of one transport in one child process.

    plan(variant, size, previous_results) -> (count, warm).  Returns one dict
    per step: variant, size, count, per_msg_ns, measuring/peer usage, errors.
    A step that fails ends the transport's run (the rest are reported missing).
    """
    max_size = max(s for _, s in steps)
    t = _new_stream(kind, max_size)
    out: list[dict] = []
    try:
        with Child(_stream_child, (kind, t.spawn_args()), timeout=timeout, label=kind) as ch:
            if hasattr(t, "started"):
                t.started()
            ch.expect("ready")
            for variant, size in steps:
                n, warm = plan(variant, size, out)
                if progress:
                    progress.start(f"S2 {kind:<20} {variant:<6} {_fmt_size(size):>7} x{n}")
                step_args = t.parent_setup(size, variant)
                try:
                    ch.send(("run", variant, size, n, warm, step_args))
                    ch.expect("ready")
                    t.attached()
                    # let the writer fill every buffer before the first read:
                    # the warm-up then uses (and maps) all of them
                    time.sleep(WARM_PAUSE_S)
                    r = t.parent_read(variant, size, n, warm)
                    peer = ch.expect("step")
                    ch.send(("release",))
                finally:
                    t.parent_teardown()
                r.update({"variant": variant, "size": size, "count": n, "warm": warm,
                          "per_msg_ns": r["elapsed_ns"] / n, "peer": peer})
                out.append(r)
                if progress:
                    progress.end(f"{r['per_msg_ns'] / 1e3:10.1f} us/msg"
                                 + (f"  ERRORS {r['errors']}" if r["errors"] else ""))
            ch.send(("stop",))
            ch.result()
    finally:
        if hasattr(t, "close"):
            with contextlib.suppress(Exception):
                t.close()
    return out


def _fmt_size(n: int) -> str:
    for unit, k in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= k and n % k == 0:
            return f"{n // k} {unit}"
    return f"{n} B"


# ==========================================================================
# S3: fan-out, writer = parent, N reader children
# ==========================================================================
def _fan_reader(ctrl: Any, a: tuple) -> dict:
    kind, idx, size, n, warm, spawn_args = a
    np = _np()
    pause = lambda: time.sleep(WARM_PAUSE_S)  # noqa: E731 - the writer fills every slot first
    if kind == "zdshm":
        import zdshm

        seg = zdshm.PosixSegment.attach(spawn_args)
        r = seg.reader()
        child_ready(ctrl)
        pause()
        take = r.take

        def read_one(i: int) -> int:
            s = take()
            x = np.asarray(s)
            bad = check(x, i, "header")
            del x
            s.release()
            return bad
        res = timed_reads(read_one, n, warm)
        r.close()
        seg.close()
    elif kind == "mp.Queue":
        from .peers import force_pickle5

        force_pickle5()
        q = spawn_args
        child_ready(ctrl)
        pause()
        res = timed_reads(lambda i: check(q.get(), i, "header"), n, warm)
    elif kind == "shared_memory+Pipe":
        from .pingpong import _close_region, _open_region

        name, c = spawn_args
        obj, mv = _open_region("shared_memory", name, SLOTS * size, False)
        views = [np.frombuffer(mv, np.uint8, size, j * size) for j in range(SLOTS)]
        child_ready(ctrl)
        pause()
        sig = bytearray(8)
        rbi, sb = c.recv_bytes_into, c.send_bytes

        def read_one(i: int) -> int:
            rbi(sig)
            bad = check(views[sig[0]], i, "header")
            sb(sig, 0, 1)
            return bad
        res = timed_reads(read_one, n, warm)
        del views, read_one
        _close_region("shared_memory", name, obj, mv, False)
    elif kind == "iceoryx2":
        from .pingpong import Iox, _iox_receive

        x = Iox(spawn_args, size, create=False, parked=True, send_dir="", recv_dir="d",
                blocking=True, subscribers=idx[1], ack=True)
        child_ready(ctrl)
        pause()
        ack, ack_id = x.ack_notifier.notify_with_custom_event_id, x.iox.EventId.new(idx[0])
        T = ctypes.c_uint8 * size

        def read_one(i: int) -> int:
            s = _iox_receive(x.sub, x.listener, x.wait_d)
            xa = np.frombuffer(T.from_address(s.payload_ptr), np.uint8)
            bad = check(xa, i, "header")
            del xa
            s.delete()
            ack(ack_id)
            return bad
        res = timed_reads(read_one, n, warm)
        ctrl.send(("read", {}))
        ctrl.recv()   # the writer closes first: samples in flight die with the publisher
        x.close()
    else:
        raise BenchError(f"unknown fan-out transport {kind}")
    return {"t_end": time.perf_counter_ns(), "errors": res["errors"], "usage": res["measuring"]}

FANOUT = ("zdshm", "mp.Queue", "shared_memory+Pipe", "iceoryx2")


def fanout_run(kind: str, readers: int, size: int, n: int, warm: int, timeout: float) -> dict:
    """One writer (this process) to `readers` reader processes, header variant."""
    np = _np()
    ctx = spawn_context()
    children: list[Child] = []
    cleanup: list[Any] = []
    try:
        if kind == "zdshm":
            import zdshm

            name = unique_name("fan")
            seg = zdshm.PosixSegment.create(name, slot_count=SLOTS, slot_capacity=size)
            cleanup.append(lambda: (seg.close(), zdshm.unlink(name)))
            args = [name] * readers
        elif kind == "mp.Queue":
            from .peers import force_pickle5

            force_pickle5()
            qs = [ctx.Queue(maxsize=SLOTS) for _ in range(readers)]
            args = qs
        elif kind == "shared_memory+Pipe":
            from .pingpong import _close_region, _open_region

            name = unique_name("fanring")
            obj, mv = _open_region("shared_memory", name, SLOTS * size, True)
            views = [np.frombuffer(mv, np.uint8, size, j * size) for j in range(SLOTS)]
            pipes = [ctx.Pipe() for _ in range(readers)]
            args = [(name, p[1]) for p in pipes]

            def _rel() -> None:
                views.clear()
                _close_region("shared_memory", name, obj, mv, True)
            cleanup.append(_rel)
        elif kind == "iceoryx2":
            from .pingpong import Iox

            base = unique_name("fanx").replace("-", "/")
            x = Iox(base, size, create=True, parked=True, send_dir="d", recv_dir="",
                    blocking=True, subscribers=readers, ack=True)
            cleanup.append(x.close)
            args = [base] * readers
        else:
            raise BenchError(f"unknown fan-out transport {kind}")

        for k in range(readers):
            ch = Child(_fan_reader, (kind, (k, readers), size, n, warm, args[k]),
                       timeout=timeout, pin=False, label=f"{kind} reader {k}")
            ch.__enter__()
            children.append(ch)
        if kind == "shared_memory+Pipe":
            for p in pipes:
                p[1].close()
        for ch in children:
            ch.expect("ready")
        pc = time.perf_counter_ns
        total = warm + n
        u0 = usage()
        t0 = pc()
        if kind == "zdshm":
            seg.unlink()
            w = seg.writer()
            la = w.loan_array
            for i in range(total):
                if i == warm:
                    u0 = usage()
                    t0 = pc()
                with la((size,), np.uint8) as a:
                    fill(a, i, "header")
            del a
            w.close()
        elif kind == "mp.Queue":
            for i in range(total):
                if i == warm:
                    u0 = usage()
                    t0 = pc()
                a = np.empty(size, np.uint8)
                fill(a, i, "header")
                for q in qs:
                    q.put(a)
                del a
        elif kind == "shared_memory+Pipe":
            conns = [p[0] for p in pipes]
            sig = bytearray(8)
            pending = [0] * SLOTS    # acks still due per slot
            free = list(range(SLOTS))
            for i in range(total):
                if i == warm:
                    u0 = usage()
                    t0 = pc()
                while not free:
                    # collect one ack from every reader for the oldest slots
                    for c in conns:
                        c.recv_bytes_into(sig)
                        j = sig[0]
                        pending[j] -= 1
                        if pending[j] == 0:
                            free.append(j)
                j = free.pop()
                fill(views[j], i, "header")
                pending[j] = readers
                sig[0] = j
                for c in conns:
                    c.send_bytes(sig, 0, 1)
        elif kind == "iceoryx2":
            x.pub.update_connections()
            T = ctypes.c_uint8 * size
            credits = [SLOTS] * readers
            for i in range(total):
                if i == warm:
                    u0 = usage()
                    t0 = pc()
                if min(credits) <= 0:
                    x.wait_credits(credits)
                for k in range(readers):
                    credits[k] -= 1
                o = x.pub.loan_slice_uninit(size)
                a = np.frombuffer(T.from_address(o.payload_ptr), np.uint8)
                fill(a, i, "header")
                del a
                o.assume_init().send()
                x.notifier.notify()
        writer_usage = usage_delta(u0, n)
        if kind == "iceoryx2":
            for ch in children:
                ch.expect("read")
            for ch in children:
                ch.send("close")
        reps = [ch.result() for ch in children]
        if kind == "shared_memory+Pipe":
            # drain the last acks so the readers' pipes close cleanly
            for c in conns:
                with contextlib.suppress(Exception):
                    while c.poll(0):
                        c.recv_bytes_into(sig)
        if kind == "mp.Queue":
            for q in qs:
                q.close()
                q.join_thread()
    finally:
        for ch in children:
            with contextlib.suppress(Exception):
                ch.__exit__(None, None, None)
        for f in cleanup:
            with contextlib.suppress(Exception):
                f()
    t_end = max(r["t_end"] for r in reps)
    return {
        "impl": kind, "readers": readers, "size": size, "count": n, "warm": warm,
        "per_msg_ns": (t_end - t0) / n,
        "measuring": writer_usage,
        "readers_usage": [r["usage"] for r in reps],
        "errors": sum(r["errors"] for r in reps),
    }
