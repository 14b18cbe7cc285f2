"""Bridges: a zdshm segment to and from iceoryx2 (same host) or zenoh (across hosts).

A bridge is a plain zdshm reader (``To*``: segment -> engine) or a plain
zdshm writer (``From*``: engine -> segment) with the other engine's own
publisher or subscriber beside it, run by one worker thread::

    with ToZenoh("frames", "lab/camera0", connect=["tcp/10.0.0.2:7447"]) as b:
        ...                      # every frame committed to "frames" is published
    print(b.stats())             # forwarded, dropped, lost, restarts, bytes, last_error

Each direction is an object with ``start()``, ``stop()``, the context manager
(start on enter, stop on exit) and :meth:`Bridge.stats`.  The command line is
``python -m zdshm bridge SEGMENT --to zenoh:KEY`` (see :mod:`zdshm.cli`).

What travels with every frame: a 96-byte :class:`FrameHeader` (the slot meta
-- PEP 3118 format and shape --, the frame's sequence number and commit time
in its source segment, and its size).  Over iceoryx2 it is the sample's user
header (type name ``zdshm::FrameHeader``), over zenoh the sample's attachment;
the payload is the frame's bytes.

On the far side the frame is committed to the bridge's segment with the same
format and shape, so ``np.asarray(sample)`` gives the same array; its ``sn``
is that segment's own.  The original sequence number and commit time are
written in the last :data:`ORIGIN_SIZE` bytes of the slot, past the frame
(the core keeps a slot's bytes until it is loaned again), and read back by
:func:`origin`.  A segment a bridge writes to therefore needs a slot capacity
of at least the largest frame plus :data:`ORIGIN_SIZE`.

Policies (``policy=``): ``"block"`` -- the bridge waits for the far side (a
connected subscriber, a free slot), so zdshm writers feel it through their own
overflow policy and the engine's sender through its congestion control;
``"drop"`` -- what the far side cannot take now is dropped and counted in
``dropped``.  Frames missing from the incoming sequence numbers (lost on the
way, or sent while this bridge or the far side was restarting) are counted in
``lost``; a sequence that starts again from lower numbers (a restarted
source) is counted in ``restarts``.  Nothing is lost without a count.

iceoryx2 (``pip install 'zdshm[iceoryx2]'``) and zenoh
(``pip install 'zdshm[zenoh]'``) are imported when a bridge starts.
"""
from __future__ import annotations

import ctypes
import struct
import threading
import time
from typing import Any, Literal, NamedTuple, Self, TypedDict

import zdshm
from zdshm._zdshm import PosixSegment, Sample, Segment

__all__ = [
    "FRAME_HEADER_TYPE_NAME",
    "ORIGIN_SIZE",
    "Bridge",
    "BridgeStats",
    "FrameHeader",
    "FromIceoryx2",
    "FromZenoh",
    "Origin",
    "ToIceoryx2",
    "ToZenoh",
    "origin",
    "zenoh_config",
]

Policy = Literal["block", "drop"]

FRAME_MAGIC = 0x52464458          # b"XDFR" read as a little-endian u32
FRAME_VERSION = 1
FRAME_HEADER_TYPE_NAME = "zdshm::FrameHeader"
FLAG_TYPED = 1                    # format and shape are valid


class FrameHeader(ctypes.Structure):
    """What travels with every frame (96 bytes, native byte order, no padding).

    ``format`` is the PEP 3118 format (NUL padded), ``shape[:ndim]`` the
    shape; ``sn`` and ``commit_ns`` are the frame's sequence number and commit
    time (CLOCK_MONOTONIC of the source host) in the segment it was first
    committed to; ``nbytes`` is the payload size.  A peer that publishes to a
    ``--from iceoryx2`` bridge declares the same structure as its user header,
    with the type name :data:`FRAME_HEADER_TYPE_NAME`."""

    _fields_ = [
        ("magic", ctypes.c_uint32),
        ("version", ctypes.c_uint16),
        ("ndim", ctypes.c_uint8),
        ("flags", ctypes.c_uint8),
        ("format", ctypes.c_char * 16),
        ("shape", ctypes.c_uint64 * 6),
        ("sn", ctypes.c_uint64),
        ("commit_ns", ctypes.c_uint64),
        ("nbytes", ctypes.c_uint64),
    ]

    @staticmethod
    def type_name() -> str:
        """The name iceoryx2 compares when a port opens the service."""
        return FRAME_HEADER_TYPE_NAME


assert ctypes.sizeof(FrameHeader) == 96


class Origin(NamedTuple):
    """Where a bridged frame came from: its sequence number and commit time
    (nanoseconds, CLOCK_MONOTONIC of the source host) in the source segment."""

    sn: int
    commit_ns: int


# The origin record, in the last ORIGIN_SIZE bytes of a slot a bridge wrote:
# magic, version, the frame's committed size (so a record left by an older
# frame in the slot is not taken for this one), origin sn, origin commit time.
_ORIGIN = struct.Struct("<IIQQQ")
ORIGIN_SIZE = _ORIGIN.size          # 32
_ORIGIN_MAGIC = 0x4f524458          # b"XDRO"


def origin(sample: Sample, segment: Segment) -> Origin | None:
    """The original sequence number and commit time of a sample a bridge
    committed to ``segment`` (the segment the sample was taken from), or None
    if the slot holds no origin record for this sample (not written by a
    bridge)."""
    if not isinstance(sample, Sample):
        raise TypeError(f"origin() needs a zdshm.Sample, got {sample!r}")
    if not isinstance(segment, Segment):
        raise TypeError(f"origin() needs the sample's zdshm.Segment, got {segment!r}")
    cap = segment.slot_capacity_of(sample.slot)
    if sample.size + ORIGIN_SIZE > cap:
        return None
    # The slot is pinned while the sample lives: its bytes past the frame are
    # mapped (read-only) and stay as the bridge wrote them.
    raw = ctypes.string_at(sample.address + cap - ORIGIN_SIZE, ORIGIN_SIZE)
    magic, version, nbytes, sn, commit_ns = _ORIGIN.unpack(raw)
    if magic != _ORIGIN_MAGIC or version != 1 or nbytes != sample.size:
        return None
    return Origin(sn, commit_ns)


class BridgeStats(TypedDict):
    """:meth:`Bridge.stats`: counts since ``start()``."""

    forwarded: int          #: frames handed to the far side
    dropped: int            #: frames this bridge dropped (policy "drop", or too large)
    lost: int               #: frames missing from the incoming sequence numbers
    restarts: int           #: times the incoming sequence started again (a restarted source)
    bytes: int              #: payload bytes forwarded
    last_error: str | None  #: the last error met (the bridge keeps running unless it is fatal)


def zenoh_config(connect: Any = (), listen: Any = (), *, config: str | None = None,
                 mode: str = "peer") -> Any:
    """A zenoh Config: ``config`` (a JSON5 file) or zenoh's defaults, with
    multicast scouting off (peers are found through ``connect``/``listen``
    endpoints only, never by scouting the network) and the given endpoints
    (e.g. ``"tcp/10.0.0.2:7447"``).  Without a config file zenoh's own
    shared-memory transport is turned off too."""
    import json

    import zenoh

    for what, eps in (("connect", connect), ("listen", listen)):
        if isinstance(eps, str) or any(not isinstance(e, str) or "/" not in e for e in eps):
            raise ValueError(f"{what} endpoints must be a list of strings such as "
                             f"'tcp/10.0.0.2:7447', got {eps!r}")
    if mode not in ("peer", "client", "router"):
        raise ValueError(f"zenoh mode must be 'peer', 'client' or 'router', got {mode!r}")
    if config is not None:
        cfg = zenoh.Config.from_file(config)
    else:
        # zenoh's shared-memory transport serves one host, which a zdshm
        # segment already does: off (it would make files in /dev/shm).
        cfg = zenoh.Config()
        cfg.insert_json5("transport/shared_memory/enabled", "false")
    cfg.insert_json5("mode", json.dumps(mode))
    cfg.insert_json5("scouting/multicast/enabled", "false")
    if connect:
        cfg.insert_json5("connect/endpoints", json.dumps(list(connect)))
    if listen:
        cfg.insert_json5("listen/endpoints", json.dumps(list(listen)))
    return cfg


# --------------------------------------------------------------------------
# the common part
# --------------------------------------------------------------------------

_POLL = 0.1        # seconds between looks at the stop flag while waiting


class Bridge:
    """One direction between a zdshm segment and another engine.

    ``segment`` is a segment name (attached at start, closed at stop) or an
    open :class:`~zdshm.Segment` (left open).  ``start()`` returns once the
    far side's ports exist (it raises what their setup raised); a bridge
    starts once.  ``stop()`` ends the worker and releases every port; it may
    be called again (it returns the final stats)."""

    direction = ""      # "to" or "from"
    engine = ""         # "iceoryx2" or "zenoh"

    def __init__(self, segment: str | Segment, target: str, *, policy: Policy = "block") -> None:
        if not isinstance(segment, (str, Segment)):
            raise TypeError(f"segment must be a name or a zdshm.Segment, got {segment!r}")
        if isinstance(segment, str):
            zdshm.validate_name(segment)
        if not isinstance(target, str) or not target:
            raise ValueError(f"{self.engine} {self._target_word()} must be a non-empty "
                             f"string, got {target!r}")
        if policy not in ("block", "drop"):
            raise ValueError(f"policy must be 'block' or 'drop', got {policy!r}")
        self.segment_arg = segment
        self.target = target
        self.policy = policy
        self._lock = threading.Lock()
        self._stats: dict[str, Any] = {}
        self._reset_stats()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._setup_error: BaseException | None = None
        self._fatal: BaseException | None = None
        self._last_sn: int | None = None

    @classmethod
    def _target_word(cls) -> str:
        return "service name" if cls.engine == "iceoryx2" else "key expression"

    def __repr__(self) -> str:
        seg = self.segment_arg if isinstance(self.segment_arg, str) else repr(self.segment_arg)
        return (f"<zdshm.bridge.{type(self).__name__} {seg!r} {self.direction} "
                f"{self.engine}:{self.target} policy={self.policy} "
                f"{'running' if self.running else 'stopped'}>")

    # -- stats ----------------------------------------------------------------
    def _reset_stats(self) -> None:
        self._stats = {"forwarded": 0, "dropped": 0, "lost": 0, "restarts": 0,
                       "bytes": 0, "last_error": None}

    def stats(self) -> BridgeStats:
        """A snapshot of the counters (see :class:`BridgeStats`)."""
        with self._lock:
            st = dict(self._stats)
        return BridgeStats(forwarded=st["forwarded"], dropped=st["dropped"], lost=st["lost"],
                           restarts=st["restarts"], bytes=st["bytes"],
                           last_error=st["last_error"])

    def _count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self._stats[key] += n

    def _forwarded(self, nbytes: int) -> None:
        with self._lock:
            self._stats["forwarded"] += 1
            self._stats["bytes"] += nbytes

    def _error(self, exc: BaseException | str) -> None:
        msg = exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}"
        with self._lock:
            self._stats["last_error"] = msg

    def _incoming(self, sn: int) -> None:
        """Counts the frames missing before sn, and restarts of the source."""
        last = self._last_sn
        self._last_sn = sn
        if last is None:
            return
        if sn > last + 1:
            self._count("lost", sn - last - 1)
        elif sn <= last:
            self._count("restarts")

    # -- life -----------------------------------------------------------------
    @property
    def running(self) -> bool:
        """True while the worker runs (False after stop() or a fatal error)."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def error(self) -> BaseException | None:
        """The error that ended the worker, if one did."""
        return self._fatal

    def start(self) -> Self:
        if self._thread is not None:
            raise RuntimeError(f"{self!r} was already started")
        self._reset_stats()
        self._thread = threading.Thread(target=self._main, name=f"zdshm-bridge-{self.direction}-"
                                        f"{self.engine}", daemon=True)
        self._thread.start()
        while not self._ready.wait(_POLL):
            if not self._thread.is_alive():
                break
        if self._setup_error is not None:
            self._thread.join()
            raise self._setup_error
        return self

    def stop(self, timeout: float = 10.0) -> BridgeStats:
        """Stops the worker (the frame in hand is finished first) and releases
        every port; returns the final stats."""
        self._stop.set()
        t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join(timeout)
            if t.is_alive():
                raise TimeoutError(f"{self!r}: the worker did not stop within {timeout} s")
        return self.stats()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _main(self) -> None:
        seg: Any = None
        own = isinstance(self.segment_arg, str)
        try:
            try:
                arg = self.segment_arg
                seg = PosixSegment.attach(arg) if isinstance(arg, str) else arg
                self._setup(seg)
            except BaseException as exc:  # noqa: BLE001 - handed to start()
                self._setup_error = exc
                return
            finally:
                self._ready.set()
            try:
                self._run(seg)
            except BaseException as exc:  # noqa: BLE001 - recorded; stats show it
                self._fatal = exc
                self._error(exc)
        finally:
            try:
                self._teardown()
            except Exception as exc:  # noqa: BLE001
                self._error(exc)
            if own and seg is not None:
                try:
                    seg.close()
                except zdshm.ViewsAliveError:
                    seg.__exit__(None, None, None)

    def _setup(self, seg: Any) -> None:
        raise NotImplementedError

    def _run(self, seg: Any) -> None:
        raise NotImplementedError

    def _teardown(self) -> None:
        raise NotImplementedError

    # -- the zdshm sides --------------------------------------------------------
    def _open_reader(self, seg: Any) -> None:
        self._reader = seg.reader()
        self._seen_dropped = 0

    def _take(self) -> Any:
        """The next sample, or None when nothing came within _POLL seconds."""
        try:
            s = self._reader.take(timeout=_POLL)
        except zdshm.WaitTimeoutError:
            return None
        except zdshm.SegmentClosedError:
            # The creator said goodbye and every frame was taken: the end.
            self._error("the segment's creator closed it: the bridge stopped")
            self._stop.set()
            return None
        dropped = self._reader.stats()["dropped"]
        if dropped != self._seen_dropped:       # reclaimed by a writer before we read
            self._count("lost", dropped - self._seen_dropped)
            self._seen_dropped = dropped
        return s

    def _header(self, s: Sample) -> FrameHeader:
        h = FrameHeader()
        h.magic, h.version = FRAME_MAGIC, FRAME_VERSION
        shape = s.shape
        fmt = s.format.encode()
        if len(shape) <= 6 and len(fmt) < 16:
            h.flags, h.ndim, h.format = FLAG_TYPED, len(shape), fmt
            for i, d in enumerate(shape):
                h.shape[i] = d
        h.sn, h.commit_ns, h.nbytes = s.sn, s.commit_ns, s.size
        return h

    def _open_writer(self, seg: Any) -> None:
        # block: wait in slices (the stop flag is looked at between them);
        # drop: never wait.
        self._writer = seg.writer(overflow="block" if self.policy == "block" else "fail",
                                  timeout=_POLL)
        self._capacity = seg.slot_capacity          # the largest size class

    def _loan(self, nbytes: int) -> Any:
        """A loan for a frame of nbytes (and its origin record: in a segment
        of several size classes, from the smallest class that fits), or None
        (dropped and counted, or stopping)."""
        need = nbytes + ORIGIN_SIZE
        if need > self._capacity:
            self._count("dropped")
            self._error(f"a frame of {nbytes} bytes does not fit a slot of "
                        f"{self._capacity} bytes (a bridge needs the frame plus "
                        f"{ORIGIN_SIZE} bytes for its origin record)")
            return None
        if self.policy == "drop":
            loan = self._writer.try_loan(nbytes=need)
            if loan is None:
                self._count("dropped")
            return loan
        while not self._stop.is_set():
            try:
                return self._writer.loan(nbytes=need)
            except zdshm.WaitTimeoutError:
                continue
        self._count("dropped")          # still waiting when the bridge stopped
        return None

    def _commit(self, loan: Any, h: FrameHeader, nbytes: int) -> None:
        """Completes a loan whose first nbytes hold the frame: origin record,
        format and shape, commit."""
        with memoryview(loan) as mv:
            mv[loan.capacity - ORIGIN_SIZE:] = _ORIGIN.pack(
                _ORIGIN_MAGIC, 1, nbytes, h.sn, h.commit_ns)
        if h.flags & FLAG_TYPED and h.ndim <= 6:
            try:
                loan.set_format(h.format.decode(), tuple(h.shape[:h.ndim]))
            except (ValueError, UnicodeDecodeError) as exc:
                self._error(f"frame sn {h.sn}: its format and shape are not valid "
                            f"here ({exc}); forwarded as bytes")
        loan.commit(nbytes)
        self._forwarded(nbytes)
        self._incoming(h.sn)


# --------------------------------------------------------------------------
# iceoryx2
# --------------------------------------------------------------------------

def _iceoryx2(prefix: str | None) -> tuple[Any, Any]:
    """The iceoryx2 module and a node (in the given domain prefix, if any)."""
    import importlib
    try:
        iox: Any = importlib.import_module("iceoryx2")    # no type information of its own
    except ImportError as exc:
        raise ImportError("the iceoryx2 bridge needs iceoryx2: "
                          "pip install 'zdshm[iceoryx2]'") from exc
    iox.set_log_level(iox.LogLevel.Error)
    cfg = iox.config.global_config()
    if prefix is not None:
        cfg.global_cfg.prefix = iox.FileName.new(prefix)
    node = iox.NodeBuilder.new().config(cfg).create(iox.ServiceType.Ipc)
    return iox, node


def _iox_service(iox: Any, node: Any, name: str, depth: int, safe_overflow: bool) -> Any:
    b = (node.service_builder(iox.ServiceName.new(name))
         .publish_subscribe(iox.Slice[ctypes.c_uint8])
         .user_header(FrameHeader)
         .subscriber_max_buffer_size(depth)
         .history_size(0))
    if not safe_overflow:
        b = b.enable_safe_overflow(False)
    return b.open_or_create()


def _check_common(prefix: str | None, depth: int) -> None:
    if prefix is not None and (not isinstance(prefix, str) or not prefix):
        raise ValueError(f"the iceoryx2 prefix must be a non-empty string, got {prefix!r}")
    if not isinstance(depth, int) or isinstance(depth, bool) or not 1 <= depth <= 1024:
        raise ValueError(f"depth must be an int in 1..1024, got {depth!r}")


class _IoxBridge(Bridge):
    engine = "iceoryx2"

    def __init__(self, segment: str | Segment, service: str, *, policy: Policy = "block",
                 prefix: str | None = None, depth: int = 8) -> None:
        super().__init__(segment, service, policy=policy)
        _check_common(prefix, depth)
        self.prefix, self.depth = prefix, depth
        self._ports: list[Any] = []
        self._node: Any = None
        self._service: Any = None

    def _teardown(self) -> None:
        # iceoryx2 removes a port's shared memory when the port is deleted and
        # the node's when the node is collected: do both explicitly, in order.
        for p in reversed(self._ports):
            p.delete()
        self._ports.clear()
        self._service = None
        self._node = None
        import gc
        gc.collect()


class ToIceoryx2(_IoxBridge):
    """Frames committed to a zdshm segment, published on an iceoryx2 service
    (payload ``Slice[c_uint8]``, user header :class:`FrameHeader`).

    Each frame is copied once, from the zdshm sample into a loaned iceoryx2
    sample.  ``block``: no frame is sent while the service has no subscriber,
    and the publisher retries until every subscriber's buffer took it;
    ``drop``: a frame that reached no subscriber, or not every one, is counted
    in ``dropped``.  ``prefix`` selects the iceoryx2 domain (its file prefix);
    ``depth`` is the subscribers' buffer size the service is made with."""

    direction = "to"

    def _setup(self, seg: Any) -> None:
        iox, self._node = _iceoryx2(self.prefix)
        self._iox = iox
        self._service = _iox_service(iox, self._node, self.target, self.depth,
                                     self.policy == "drop")
        pb = self._service.publisher_builder().initial_max_slice_len(max(seg.slot_capacity, 1))
        pb = pb.allocation_strategy(iox.AllocationStrategy.PowerOfTwo)
        if self.policy == "block":
            pb = pb.backpressure_strategy(iox.BackpressureStrategy.RetryUntilDelivered)
        self._pub = pb.create()
        self._ports.append(self._pub)
        self._open_reader(seg)

    def _subscribers(self) -> int:
        return int(self._service.dynamic_config.number_of_subscribers)

    def _run(self, seg: Any) -> None:
        pub = self._pub
        had_subscribers = False
        while not self._stop.is_set():
            if self.policy == "block":
                # Nothing goes out to an empty service: the zdshm writers wait.
                while self._subscribers() == 0 and not self._stop.is_set():
                    if had_subscribers:
                        had_subscribers = False
                        self._count("restarts")
                    time.sleep(0.005)
                if self._stop.is_set():
                    break
                had_subscribers = True
            s = self._take()
            if s is None:
                continue
            with s:
                self._send(pub, s)

    def _send(self, pub: Any, s: Sample) -> None:
        """Sends one frame; under block, again until every subscriber took
        it: iceoryx2 0.10's RetryUntilDelivered does not wait for a
        subscriber in another process whose buffer is full -- send() then
        reports fewer receivers, and the frame (still in the zdshm slot) is
        loaned and sent once more."""
        n = s.size
        h = self._header(s)
        while True:
            pub.update_connections()
            want = self._subscribers()
            if want == 0:
                self._count("dropped")
                return
            out = pub.loan_slice_uninit(n)
            ctypes.memmove(out.user_header_ptr, ctypes.addressof(h), ctypes.sizeof(h))
            if n:
                ctypes.memmove(out.payload_ptr, s.address, n)
            got = out.assume_init().send()
            if got >= want:
                break
            if self.policy == "drop" or self._stop.is_set():
                self._count("dropped")
                return
            if got > 0:
                # Some subscribers have it: sending again would duplicate it
                # for them.  Counted as dropped for the others.
                self._count("dropped")
                self._error(f"frame sn {s.sn} reached {got} of {want} subscribers")
                break
            time.sleep(0.0002)
        self._forwarded(n)

    def _teardown(self) -> None:
        r = getattr(self, "_reader", None)
        if r is not None:
            r.close()
        super()._teardown()


_IOX_NAP = 0.0003       # the longest nap between two looks at an idle subscriber


class FromIceoryx2(_IoxBridge):
    """Frames received on an iceoryx2 service (payload ``Slice[c_uint8]``,
    user header :class:`FrameHeader`), committed to a zdshm segment with the
    header's format and shape and an origin record (:func:`origin`).

    Each frame is copied once, from the received iceoryx2 sample into a zdshm
    loan.  ``block``: the bridge waits for a free slot (a publisher with
    ``RetryUntilDelivered`` then waits for the bridge); ``drop``: a frame
    with no free slot is counted in ``dropped``."""

    direction = "from"

    def _setup(self, seg: Any) -> None:
        iox, self._node = _iceoryx2(self.prefix)
        self._iox = iox
        self._service = _iox_service(iox, self._node, self.target, self.depth,
                                     self.policy == "drop")
        self._sub = self._service.subscriber_builder().buffer_size(self.depth).create()
        self._ports.append(self._sub)
        self._open_writer(seg)

    def _run(self, seg: Any) -> None:
        recv = self._sub.receive
        idle = 0
        while not self._stop.is_set():
            r = recv()
            if r is None:
                # An iceoryx2 subscriber has no wait of its own (that takes
                # an event service the publisher notifies): back off from a
                # short spin to naps of _IOX_NAP.
                idle += 1
                if idle > 50:
                    time.sleep(min(_IOX_NAP, 0.00001 * idle))
                continue
            idle = 0
            try:
                hp = r.user_header().contents
                n = int(r.header.number_of_elements)
                if hp.magic != FRAME_MAGIC or hp.nbytes != n:
                    self._count("dropped")
                    self._error(f"a sample without a valid zdshm frame header "
                                f"(magic {hp.magic:#x}, nbytes {hp.nbytes}, payload {n})")
                    continue
                h = FrameHeader.from_buffer_copy(hp)
                loan = self._loan(n)
                if loan is None:
                    self._incoming(h.sn)
                    continue
                if n:
                    ctypes.memmove(loan.address, r.payload_ptr, n)
                self._commit(loan, h, n)
            finally:
                r.delete()

    def _teardown(self) -> None:
        w = getattr(self, "_writer", None)
        if w is not None:
            w.close()
        super()._teardown()


# --------------------------------------------------------------------------
# zenoh
# --------------------------------------------------------------------------

class _ZenohBridge(Bridge):
    engine = "zenoh"

    def __init__(self, segment: str | Segment, key_expr: str, *, policy: Policy = "block",
                 connect: Any = (), listen: Any = (), config: str | None = None,
                 mode: str = "peer") -> None:
        super().__init__(segment, key_expr, policy=policy)
        for what, eps in (("connect", connect), ("listen", listen)):
            if isinstance(eps, str) or any(not isinstance(e, str) or "/" not in e for e in eps):
                raise ValueError(f"{what} endpoints must be a list of strings such as "
                                 f"'tcp/10.0.0.2:7447', got {eps!r}")
        if mode not in ("peer", "client", "router"):
            raise ValueError(f"zenoh mode must be 'peer', 'client' or 'router', got {mode!r}")
        self.connect, self.listen = list(connect), list(listen)
        self.config, self.mode = config, mode
        self._session: Any = None

    def _open_session(self) -> Any:
        try:
            import zenoh
        except ImportError as exc:
            raise ImportError("the zenoh bridge needs eclipse-zenoh: "
                              "pip install 'zdshm[zenoh]'") from exc
        self._zenoh = zenoh
        self._session = zenoh.open(zenoh_config(self.connect, self.listen,
                                                config=self.config, mode=self.mode))
        return zenoh

    def _close_session(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None


class ToZenoh(_ZenohBridge):
    """Frames committed to a zdshm segment, put on a zenoh key expression
    (payload: the frame's bytes; attachment: its :class:`FrameHeader`).

    zenoh's Python API takes a payload as ``bytes``: the bridge makes one
    from the sample (one copy) and hands it over.  ``block``: no frame is put
    while no subscriber matches the key, and the publisher uses zenoh's
    ``CongestionControl.BLOCK``; ``drop``: a frame with no matching subscriber
    is counted in ``dropped``, and ``CongestionControl.DROP`` lets zenoh drop
    in its queue (the receiving bridge counts those in ``lost``)."""

    direction = "to"

    def _setup(self, seg: Any) -> None:
        zenoh = self._open_session()
        cc = zenoh.CongestionControl.BLOCK if self.policy == "block" else zenoh.CongestionControl.DROP
        self._pub = self._session.declare_publisher(
            self.target, congestion_control=cc, reliability=zenoh.Reliability.RELIABLE)
        # Whether a subscriber matches the key, kept by zenoh's notifications.
        self._match = threading.Event()
        self._listener = self._pub.declare_matching_listener(
            zenoh.handlers.Callback(self._on_matching, indirect=False))
        if self._pub.matching_status.matching:
            self._match.set()
        self._open_reader(seg)

    def _on_matching(self, status: Any) -> None:
        if status.matching:
            self._match.set()
        else:
            self._match.clear()

    def _run(self, seg: Any) -> None:
        put = self._pub.put
        match = self._match
        had = False
        while not self._stop.is_set():
            if self.policy == "block" and not match.is_set():
                # Nothing is put while no subscriber matches: the zdshm writers wait.
                if had:
                    had = False
                    self._count("restarts")
                match.wait(_POLL)
                continue
            had = True
            s = self._take()
            if s is None:
                continue
            with s:
                h = self._header(s)
                payload = s.tobytes()
            if self.policy == "drop" and not match.is_set():
                self._count("dropped")
                continue
            try:
                put(payload, attachment=bytes(h))
            except Exception as exc:  # noqa: BLE001 - zenoh.ZError: counted, the bridge goes on
                self._count("dropped")
                self._error(exc)
                continue
            self._forwarded(len(payload))

    def _teardown(self) -> None:
        r = getattr(self, "_reader", None)
        if r is not None:
            r.close()
        listener = getattr(self, "_listener", None)
        if listener is not None:
            listener.undeclare()
        pub = getattr(self, "_pub", None)
        if pub is not None:
            pub.undeclare()
        self._close_session()


class FromZenoh(_ZenohBridge):
    """Samples received on a zenoh key expression (payload: a frame's bytes,
    attachment: its :class:`FrameHeader`), committed to a zdshm segment with
    the header's format and shape and an origin record (:func:`origin`).

    zenoh's Python API hands the payload over as ``bytes``; the bridge writes
    it straight into a zdshm loan (one copy), in zenoh's receiving thread.
    ``block``: the bridge waits there for a free slot, which holds the link
    back (a ``BLOCK`` sender then waits); ``drop``: a frame with no free slot
    is counted in ``dropped``."""

    direction = "from"

    def _setup(self, seg: Any) -> None:
        zenoh = self._open_session()
        self._open_writer(seg)
        self._busy = threading.Lock()
        # Each sample is committed in zenoh's receiving thread: a wait for a
        # free slot (block) holds that thread, and so the link, back.
        self._sub = self._session.declare_subscriber(
            self.target, zenoh.handlers.Callback(self._on_sample, indirect=False))

    def _run(self, seg: Any) -> None:
        while not self._stop.wait(_POLL):
            pass

    def _on_sample(self, zs: Any) -> None:
        with self._busy:
            try:
                self._receive(zs)
            except BaseException as exc:  # noqa: BLE001 - zenoh's thread must go on
                self._count("dropped")
                self._error(exc)

    def _receive(self, zs: Any) -> None:
        att = zs.attachment
        payload = zs.payload.to_bytes()
        n = len(payload)
        h = None
        if att is not None:
            raw = att.to_bytes()
            if len(raw) == ctypes.sizeof(FrameHeader):
                h = FrameHeader.from_buffer_copy(raw)
        if h is None or h.magic != FRAME_MAGIC or h.nbytes != n:
            self._count("dropped")
            self._error("a zenoh sample without a valid zdshm frame header")
            return
        if self._stop.is_set():
            self._count("dropped")      # arrived while stopping
            return
        loan = self._loan(n)
        if loan is None:
            self._incoming(h.sn)
            return
        with memoryview(loan) as mv:
            mv[:n] = payload
        self._commit(loan, h, n)

    def _teardown(self) -> None:
        sub = getattr(self, "_sub", None)
        if sub is not None:
            sub.undeclare()
        busy = getattr(self, "_busy", None)
        if busy is not None:
            with busy:                  # a callback still running finishes first
                pass
        w = getattr(self, "_writer", None)
        if w is not None:
            w.close()
        self._close_session()


def parse_target(spec: str) -> tuple[str, str]:
    """``"zenoh:lab/cam"`` -> ``("zenoh", "lab/cam")``; ValueError otherwise."""
    engine, sep, name = spec.partition(":")
    if not sep or engine not in ("iceoryx2", "zenoh") or not name:
        raise ValueError(f"{spec!r} is not ENGINE:NAME with ENGINE iceoryx2 or zenoh "
                         f"(e.g. iceoryx2:camera/frames, zenoh:lab/camera0)")
    return engine, name
