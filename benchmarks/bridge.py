"""Bridges: zdshm -> zenoh -> zdshm over a veth link beside zenoh's own
Python pub/sub over the same link, and zdshm -> iceoryx2 -> zdshm beside
iceoryx2's own publisher -> subscriber; same payloads, same run.

Optional (``python -m benchmarks --only bridge``): it needs root for the two
network namespaces (without them it runs over loopback and says so),
eclipse-zenoh and iceoryx2.  Every process is a script run of this module
(``python -m benchmarks.bridge ROLE ...``); the receiving side measures:
throughput from its first to its last frame, latency as its receive time
minus the send (or original commit) time, CLOCK_MONOTONIC being one clock
for every namespace of the host.
"""
from __future__ import annotations

import ctypes
import json
import os
import shutil
import struct
import subprocess
import sys
import threading
import time
import uuid
from statistics import median
from typing import Any

SIZE = 1 << 20
IP = shutil.which("ip") or shutil.which("ip", path="/usr/sbin:/sbin:/usr/bin:/bin") or "ip"
TS = struct.Struct("<Q")


def _say(obj: Any) -> None:
    print(obj if isinstance(obj, str) else json.dumps(obj), flush=True)


def _summary(times: list[float], lat: list[float], n: int, size: int) -> dict:
    lat.sort()
    secs = max(times[-1] - times[0], 1e-9) if len(times) > 1 else float("nan")
    return {"received": len(times), "n": n, "fps": (len(times) - 1) / secs,
            "gbps": (len(times) - 1) * size / secs / 1e9,
            "lat_p50_us": lat[len(lat) // 2] / 1e3, "lat_p99_us": lat[int(len(lat) * 0.99)] / 1e3}


# -- roles --------------------------------------------------------------------

def zn_pub(ep: str, key: str, n: str, size: str, pace: str = "0") -> None:
    import zenoh

    from zdshm.bridge import zenoh_config
    n_, size_ = int(n), int(size)
    s = zenoh.open(zenoh_config(connect=[ep]))
    pub = s.declare_publisher(key, congestion_control=zenoh.CongestionControl.BLOCK)
    _say("ready")
    while not pub.matching_status.matching:
        time.sleep(0.005)
    buf = bytearray(size_)
    cbuf = (ctypes.c_char * size_).from_buffer(buf)
    for i in range(n_):
        ctypes.memset(cbuf, i % 251, size_)           # the producer writes its frame
        TS.pack_into(buf, 0, time.monotonic_ns())
        pub.put(bytes(buf))                 # a bytes object per frame, as zdshm -> zenoh makes
        if float(pace):
            time.sleep(float(pace))
    sys.stdin.read()
    pub.undeclare()
    s.close()


def zn_sub(ep: str, key: str, n: str, size: str) -> None:
    import zenoh

    from zdshm.bridge import zenoh_config
    n_ = int(n)
    s = zenoh.open(zenoh_config(listen=[ep]))
    times: list[float] = []
    lat: list[float] = []
    done = threading.Event()

    def on_sample(zs: Any) -> None:
        # As the zdshm bridge receives: in zenoh's thread, payload as bytes.
        p = zs.payload.to_bytes()
        t = time.monotonic_ns()
        times.append(t / 1e9)
        lat.append(t - TS.unpack_from(p, 0)[0])
        if len(times) == n_:
            done.set()

    sub = s.declare_subscriber(key, zenoh.handlers.Callback(on_sample, indirect=False))
    _say("ready")
    done.wait(300)
    _say(_summary(times, lat, n_, int(size)))
    sub.undeclare()
    s.close()


def zd_write(name: str, n: str, size: str, pace: str = "0") -> None:
    import zdshm
    n_, size_ = int(n), int(size)
    seg = zdshm.PosixSegment.create(name, 8, size_ + 64)
    w = seg.writer(timeout=60)
    _say("ready")
    w.wait_for_readers(1, timeout=60)
    for i in range(n_):
        loan = w.loan()
        ctypes.memset(loan.address, i % 251, size_)   # the producer writes its frame
        with memoryview(loan) as mv:
            TS.pack_into(mv, 0, time.monotonic_ns())
        loan.commit(size_)
        if float(pace):
            time.sleep(float(pace))
    sys.stdin.read()
    w.close()
    seg.close()
    seg.unlink()


def zd_read(name: str, n: str, size: str) -> None:
    import zdshm
    from zdshm import bridge
    n_, size_ = int(n), int(size)
    seg = zdshm.PosixSegment.create(name, 8, size_ + bridge.ORIGIN_SIZE)
    r = seg.reader()
    _say("ready")
    times, lat = [], []
    for _ in range(n_):
        s = r.take(timeout=60)
        t = time.monotonic_ns()
        o = bridge.origin(s, seg)
        times.append(t / 1e9)
        lat.append(t - (o.commit_ns if o else t))
        s.release()
    _say(_summary(times, lat, n_, size_))
    r.close()
    seg.close()
    seg.unlink()


def _iox(prefix: str, service: str) -> tuple[Any, Any, Any]:
    import iceoryx2 as iox

    from zdshm.bridge import FrameHeader
    iox.set_log_level(iox.LogLevel.Error)
    cfg = iox.config.global_config()
    cfg.global_cfg.prefix = iox.FileName.new(prefix)
    node = iox.NodeBuilder.new().config(cfg).create(iox.ServiceType.Ipc)
    svc = (node.service_builder(iox.ServiceName.new(service))
           .publish_subscribe(iox.Slice[ctypes.c_uint8]).user_header(FrameHeader)
           .subscriber_max_buffer_size(8).history_size(0)
           .enable_safe_overflow(False).open_or_create())
    return iox, node, svc


def iox_pub(prefix: str, service: str, n: str, size: str, pace: str = "0") -> None:
    import gc
    n_, size_ = int(n), int(size)
    iox, node, svc = _iox(prefix, service)
    pub = (svc.publisher_builder().initial_max_slice_len(size_)
           .backpressure_strategy(iox.BackpressureStrategy.RetryUntilDelivered).create())
    _say("ready")
    while svc.dynamic_config.number_of_subscribers == 0:
        time.sleep(0.005)
    pub.update_connections()
    for i in range(n_):
        while True:           # iceoryx2 0.10: send() may reach 0 receivers; send again
            out = pub.loan_slice_uninit(size_)
            ctypes.memset(out.payload_ptr, i % 251, size_)   # the producer writes its frame
            ctypes.c_uint64.from_address(out.payload_ptr).value = time.monotonic_ns()
            if out.assume_init().send() >= 1:
                break
        if float(pace):
            time.sleep(float(pace))
    sys.stdin.read()
    pub.delete()
    del svc, node
    gc.collect()


def iox_sub(prefix: str, service: str, n: str, size: str) -> None:
    import gc
    n_ = int(n)
    iox, node, svc = _iox(prefix, service)
    sub = svc.subscriber_builder().buffer_size(8).create()
    _say("ready")
    times, lat = [], []
    while len(times) < n_:
        s = sub.receive()
        if s is None:
            continue
        t = time.monotonic_ns()
        times.append(t / 1e9)
        lat.append(t - ctypes.c_uint64.from_address(s.payload_ptr).value)
        s.delete()
    _say(_summary(times, lat, n_, int(size)))
    sub.delete()
    del svc, node
    gc.collect()


# -- the parent ------------------------------------------------------------------

class _Proc:
    def __init__(self, argv: list[str], ns: str | None, tmp: str, tag: str) -> None:
        if ns:
            argv = [IP, "netns", "exec", ns] + argv
        self.bridge = "bridge" in argv
        self.out = os.path.join(tmp, tag + ".out")
        self.err = os.path.join(tmp, tag + ".err")
        with open(self.out, "wb") as o, open(self.err, "wb") as e:
            self.p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=o, stderr=e,
                                      cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

    def wait(self, what: str, err: bool = False, timeout: float = 120) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with open(self.err if err else self.out) as f:
                text = f.read()
            if what in text:
                return text
            if self.p.poll() is not None:
                break
            time.sleep(0.02)
        raise RuntimeError(f"no {what!r} from {self.p.args}: {open(self.err).read()[-2000:]}")

    def result(self, timeout: float = 180) -> dict:
        text = self.wait("{", timeout=timeout)
        return json.loads([ln for ln in text.splitlines() if ln.startswith("{")][-1])

    def end(self, sigint: bool = False) -> None:
        import signal
        if sigint and self.p.poll() is None:
            self.p.send_signal(signal.SIGINT)
        try:
            self.p.stdin.close()
        except OSError:
            pass
        try:
            self.p.wait(30)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait(10)


def _role(name: str, *args: Any) -> list[str]:
    return [sys.executable, "-m", "benchmarks.bridge", name, *map(str, args)]


def _bridge(*args: Any) -> list[str]:
    return [sys.executable, "-m", "zdshm", "bridge", *map(str, args)]


class Link:
    """Two network namespaces joined by a veth pair, or loopback (reason)."""

    def __init__(self) -> None:
        tag = uuid.uuid4().hex[:6]
        self.ns: tuple[str | None, str | None] = (f"zdbenchA{tag}", f"zdbenchB{tag}")
        self.addr = (f"10.214.{int(tag[:2], 16)}.1", f"10.214.{int(tag[:2], 16)}.2")
        self.reason = None
        self.made: list[str] = []
        try:
            for ns in self.ns:
                self._ip("netns", "add", ns)
                self.made.append(ns)
            va, vb = f"zdba{tag}", f"zdbb{tag}"
            self._ip("link", "add", va, "type", "veth", "peer", "name", vb)
            for ns, dev, addr in zip(self.ns, (va, vb), self.addr):
                self._ip("link", "set", dev, "netns", ns)
                self._ip("-n", ns, "addr", "add", f"{addr}/30", "dev", dev)
                self._ip("-n", ns, "link", "set", dev, "up")
                self._ip("-n", ns, "link", "set", "lo", "up")
        except (OSError, subprocess.CalledProcessError) as exc:
            self.close()
            self.reason = f"no network namespaces here ({exc}): loopback instead"
            self.ns = (None, None)
            self.addr = ("127.0.0.1", "127.0.0.1")

    @staticmethod
    def _ip(*args: str) -> None:
        subprocess.run([IP, *args], check=True, capture_output=True, timeout=20)

    def close(self) -> None:
        for ns in self.made:
            subprocess.run([IP, "netns", "del", ns], capture_output=True, timeout=20)
        self.made.clear()


def zenoh_pair(link: Link, tmp: str, n: int, bridged: bool, pace: float = 0.0) -> dict:
    nsA, nsB = link.ns
    ep = f"tcp/{link.addr[1]}:{17500 + int(uuid.uuid4().hex[:3], 16)}"
    key = f"zdbench/{uuid.uuid4().hex[:8]}"
    procs: list[_Proc] = []
    try:
        if not bridged:
            sub = _Proc(_role("zn_sub", ep, key, n, SIZE), nsB, tmp, "zsub")
            procs.append(sub)
            sub.wait("ready")
            procs.append(_Proc(_role("zn_pub", ep, key, n, SIZE, pace), nsA, tmp, "zpub"))
            return sub.result()
        tag = uuid.uuid4().hex[:8]
        a, b = f"zdbench-{tag}-a", f"zdbench-{tag}-b"
        rd = _Proc(_role("zd_read", b, n, SIZE), nsB, tmp, "rd")
        procs.append(rd)
        rd.wait("ready")
        bin_ = _Proc(_bridge(b, "--from", f"zenoh:{key}", "--listen", ep), nsB, tmp, "bin")
        procs.append(bin_)
        bin_.wait("running", err=True)
        wr = _Proc(_role("zd_write", a, n, SIZE, pace), nsA, tmp, "wr")
        procs.append(wr)
        wr.wait("ready")
        bout = _Proc(_bridge(a, "--to", f"zenoh:{key}", "--connect", ep), nsA, tmp, "bout")
        procs.append(bout)
        return rd.result()
    finally:
        for p in reversed(procs):
            p.end(sigint=p.bridge)


def iox_pair(tmp: str, n: int, bridged: bool, pace: float = 0.0) -> dict:
    prefix = f"zdbench{uuid.uuid4().hex[:8]}_"
    service = f"zdbench/{uuid.uuid4().hex[:8]}"
    procs: list[_Proc] = []
    try:
        if not bridged:
            sub = _Proc(_role("iox_sub", prefix, service, n, SIZE), None, tmp, "isub")
            procs.append(sub)
            sub.wait("ready")
            procs.append(_Proc(_role("iox_pub", prefix, service, n, SIZE, pace), None, tmp, "ipub"))
            return sub.result()
        tag = uuid.uuid4().hex[:8]
        a, b = f"zdbench-{tag}-a", f"zdbench-{tag}-b"
        rd = _Proc(_role("zd_read", b, n, SIZE), None, tmp, "rd")
        procs.append(rd)
        rd.wait("ready")
        bin_ = _Proc(_bridge(b, "--from", f"iceoryx2:{service}", "--iceoryx2-prefix", prefix),
                     None, tmp, "bin")
        procs.append(bin_)
        bin_.wait("running", err=True)
        wr = _Proc(_role("zd_write", a, n, SIZE, pace), None, tmp, "wr")
        procs.append(wr)
        wr.wait("ready")
        bout = _Proc(_bridge(a, "--to", f"iceoryx2:{service}", "--iceoryx2-prefix", prefix),
                     None, tmp, "bout")
        procs.append(bout)
        return rd.result()
    finally:
        for p in reversed(procs):
            p.end(sigint=p.bridge)
        _remove_domain(prefix)


def _remove_domain(prefix: str) -> None:
    """iceoryx2 keeps one global_mgmt object per domain: ours go at the end."""
    for f in os.listdir("/dev/shm"):
        if f.startswith(prefix) and f.endswith(".global_mgmt"):
            os.unlink(os.path.join("/dev/shm", f))


STEPS = 4 * 2
LAT_N, LAT_PACE = 300, 0.002     # the latency runs: paced, so no queue builds up


def run_all(run: Any, n: int, rounds: int = 1) -> None:
    """Measures the four pipelines (interleaved): throughput with the
    producer at full speed, latency with the producer paced."""
    import tempfile
    tmp = tempfile.mkdtemp(prefix="zdbench-bridge-")
    link = Link()
    if link.reason:
        run.progress.note(link.reason)
    try:
        cases = (("zenoh", "own pub/sub", lambda k, p: zenoh_pair(link, tmp, k, False, p)),
                 ("zenoh", "zdshm bridge", lambda k, p: zenoh_pair(link, tmp, k, True, p)),
                 ("iceoryx2", "own pub/sub", lambda k, p: iox_pair(tmp, k, False, p)),
                 ("iceoryx2", "zdshm bridge", lambda k, p: iox_pair(tmp, k, True, p)))
        # Both producers write every byte of their frames; the receivers
        # take them and let them go (the zdshm readers read the origin record).
        thr: dict[tuple[str, str], list[float]] = {}
        lat: dict[tuple[str, str], list[dict]] = {}
        for _ in range(rounds):
            for engine, variant, fn in cases:
                def one(engine: str = engine, variant: str = variant, fn: Any = fn) -> None:
                    r = fn(n, 0.0)
                    thr.setdefault((engine, variant), []).append(r["gbps"])
                    run.progress.end(f"{r['gbps']:.2f} GB/s")

                def paced(engine: str = engine, variant: str = variant, fn: Any = fn) -> None:
                    r = fn(LAT_N, LAT_PACE)
                    lat.setdefault((engine, variant), []).append(r)
                    run.progress.end(f"p50 {r['lat_p50_us']:.0f} us, p99 {r['lat_p99_us']:.0f} us")
                run.guarded("bridge", f"{engine} {variant}: throughput, {SIZE >> 20} MiB x {n}", one)
                run.guarded("bridge", f"{engine} {variant}: latency, {LAT_N} frames "
                            f"every {LAT_PACE * 1e3:g} ms", paced)
        for (engine, variant), vals in thr.items():
            run.add(scenario="bridge", impl=engine, variant=variant, size=SIZE,
                    metric="gbps", unit="GB/s", value=median(vals), rounds_p50=vals,
                    link=("veth" if not link.reason else "loopback") if engine == "zenoh" else "local")
        for (engine, variant), rs in lat.items():
            p50s = [r["lat_p50_us"] for r in rs]
            run.add(scenario="bridge", impl=engine, variant=variant, size=SIZE,
                    metric="latency_p50_us", unit="us", value=median(p50s), rounds_p50=p50s,
                    p99_us=median([r["lat_p99_us"] for r in rs]))
        for engine in ("zenoh", "iceoryx2"):
            own, br = thr.get((engine, "own pub/sub")), thr.get((engine, "zdshm bridge"))
            if own and br:
                run.add(scenario="bridge", impl=engine, variant="bridge/own throughput",
                        size=SIZE, metric="ratio", unit="x", value=median(br) / median(own),
                        target=0.8 if engine == "zenoh" else None)
    finally:
        link.close()


if __name__ == "__main__":
    globals()[sys.argv[1]](*sys.argv[2:])
