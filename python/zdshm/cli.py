"""Command line of zdshm: ``python -m zdshm {demo,list,describe,rm,bench,bridge}``.

``demo`` is the main job: a producer process and two consumer processes
(start method "spawn") pass numpy frames through a posix segment for a few
seconds with a live progress line, then the same frames through
``multiprocessing.Queue`` for the same time, and print both rates.
"""
from __future__ import annotations

import argparse
import functools
import json
import math
import os
import sys
import time
from typing import Any

import zdshm

# --------------------------------------------------------------------------
# demo: child processes (top level so "spawn" can import them)
# --------------------------------------------------------------------------

_VALUE_MOD = 251   # frame i is filled with i % 251


def _quiet_interrupt(fn: Any) -> Any:
    """Ctrl-C reaches every process of the group: children exit quietly."""
    @functools.wraps(fn)
    def run(*args: Any) -> None:
        try:
            fn(*args)
        except KeyboardInterrupt:
            sys.exit(130)
    return run


@_quiet_interrupt
def _zd_producer(name: str, shape: tuple[int, ...], seconds: float,
                 results: Any) -> None:
    import numpy as np

    i = 0
    t0 = time.monotonic()
    try:
        seg = zdshm.PosixSegment.attach(name)
        with seg:
            w = seg.writer(overflow="block", timeout=10.0)
            t0 = time.monotonic()
            deadline = t0 + seconds
            while time.monotonic() < deadline:
                with w.loan_array(shape, np.uint8) as frame:
                    frame.fill(i % _VALUE_MOD)
                i += 1
            frame = None
        results.put(("producer", i, None, t0, time.monotonic()))
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            raise
        results.put(("producer", i, f"{type(exc).__name__}: {exc}", t0, time.monotonic()))
        raise SystemExit(3) from None


@_quiet_interrupt
def _zd_consumer(index: int, name: str, shape: tuple[int, ...], counts: Any,
                 ready: Any, results: Any) -> None:
    import numpy as np

    error = None
    n = 0
    t_last = time.monotonic()
    try:
        seg = zdshm.PosixSegment.attach(name)
        with seg:
            reader = seg.reader()
            ready.release()
            first_sn = first_value = last_sn = None
            for sample in reader:
                arr = np.asarray(sample)
                if arr.shape != shape or arr.dtype != np.uint8:
                    error = f"frame sn={sample.sn}: shape {arr.shape} dtype {arr.dtype}"
                    break
                value = int(arr.flat[0])
                if first_sn is None:
                    first_sn, first_value = sample.sn, value
                expected = (first_value + (sample.sn - first_sn)) % _VALUE_MOD
                middle, last = int(arr.flat[arr.size // 2]), int(arr.flat[-1])
                if value != expected or middle != expected or last != expected:
                    error = (f"frame sn={sample.sn}: bytes {value}, {middle}, "
                             f"{last}, expected {expected}")
                    break
                if last_sn is not None and sample.sn != last_sn + 1:
                    error = f"frame sn={sample.sn} after sn={last_sn}: a frame was lost"
                    break
                last_sn = sample.sn
                del arr
                sample.release()
                n += 1
                counts[index] = n
                t_last = time.monotonic()
            sample = arr = None
            reader.close()
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            raise
        error = f"{type(exc).__name__}: {exc}"
    results.put((f"consumer{index}", n, error, 0.0, t_last))
    if error is not None:
        raise SystemExit(3)


@_quiet_interrupt
def _q_producer(queues: Any, shape: tuple[int, ...], seconds: float,
                results: Any) -> None:
    import queue as queue_mod

    import numpy as np

    i = 0
    t0 = time.monotonic()
    deadline = t0 + seconds
    while time.monotonic() < deadline:
        # A new array per frame: Queue.put pickles later, in a feeder thread.
        frame = np.empty(shape, np.uint8)
        frame.fill(i % _VALUE_MOD)
        for q in queues:
            while True:
                try:
                    q.put((i, frame), timeout=0.2)
                    break
                except queue_mod.Full:
                    if time.monotonic() > deadline + 10:
                        results.put(("producer", i, "queue stayed full", t0,
                                     time.monotonic()))
                        raise SystemExit(3) from None
        i += 1
    for q in queues:
        try:
            q.put(None, timeout=10)
        except queue_mod.Full:
            pass
    results.put(("producer", i, None, t0, time.monotonic()))


@_quiet_interrupt
def _q_consumer(index: int, q: Any, shape: tuple[int, ...], counts: Any,
                ready: Any, results: Any) -> None:
    import queue as queue_mod

    import numpy as np

    error = None
    n = 0
    t_last = time.monotonic()
    ready.release()
    while True:
        try:
            item = q.get(timeout=30)
        except queue_mod.Empty:
            error = "no frame for 30 s"
            break
        if item is None:
            break
        i, arr = item
        expected = i % _VALUE_MOD
        if (arr.shape != shape or arr.dtype != np.uint8
                or int(arr.flat[0]) != expected or int(arr.flat[-1]) != expected):
            error = f"queue frame {i}: wrong content"
            break
        n += 1
        counts[index] = n
        t_last = time.monotonic()
    results.put((f"consumer{index}", n, error, 0.0, t_last))
    if error is not None:
        raise SystemExit(3)


# --------------------------------------------------------------------------
# demo: the parent
# --------------------------------------------------------------------------

class _Progress:
    """The live progress line on stderr; its clock starts at the first frame.

    On a terminal one line is rewritten in place (carriage return); anywhere
    else (a pipe, a log file, CI) a plain line is printed once a second, so
    the output stays readable."""

    PLAIN_EVERY = 1.0

    def __init__(self, label: str, counts: Any, nbytes: int) -> None:
        self.label, self.counts, self.nbytes = label, counts, nbytes
        self.start: float | None = None
        self.live = sys.stderr.isatty()
        self.last_plain = float("-inf")

    def show(self, final: bool = False) -> None:
        per = [self.counts[i] for i in range(len(self.counts))]
        now = time.monotonic()
        if self.start is None and any(per):
            self.start = now
        elapsed = now - self.start if self.start is not None else 0.0
        rate = sum(per) / len(per) / elapsed if elapsed > 0 else 0.0
        gbs = rate * len(per) * self.nbytes / 1e9
        line = (f"{self.label:<22} {elapsed:5.1f} s  frames "
                + " ".join(f"c{i}={n:<6d}" for i, n in enumerate(per))
                + f" {rate:8.1f} frames/s per consumer {gbs:6.2f} GB/s")
        if self.live:
            sys.stderr.write("\r" + line + ("\n" if final else ""))
        elif final or now - self.last_plain >= self.PLAIN_EVERY:
            self.last_plain = now
            sys.stderr.write(line + "\n")
        else:
            return
        sys.stderr.flush()


def _check_exits(label: str, procs: list[Any]) -> None:
    for p in procs:
        if p.exitcode not in (None, 0):
            raise RuntimeError(f"{label}: {p.name} exited with code {p.exitcode}")


def _finish(label: str, procs: list[Any], progress: _Progress, results: Any,
            seconds: float) -> tuple[float, list[int]]:
    """Waits for every process, then returns (frames/s per consumer, counts)
    measured from the producer's first loan to each consumer's last frame."""
    import queue as queue_mod

    limit = time.monotonic() + seconds + 120
    while any(p.is_alive() for p in procs):
        progress.show()
        _check_exits(label, procs)
        if time.monotonic() > limit:
            raise RuntimeError(f"{label}: processes did not finish in time")
        time.sleep(0.2)
    progress.show(final=True)
    _check_exits(label, procs)
    res = {}
    for _ in procs:
        try:
            who, n, err, t0, t1 = results.get(timeout=5)
        except queue_mod.Empty:
            break
        res[who] = (n, err, t0, t1)
    errors = [f"{who}: {err}" for who, (n, err, t0, t1) in sorted(res.items()) if err]
    if errors:
        raise RuntimeError(f"{label}: " + "; ".join(errors))
    if "producer" not in res or len(res) != len(procs):
        raise RuntimeError(f"{label}: missing results from {sorted(res)}")
    t0 = res["producer"][2]
    rates = [n / max(t1 - t0, 1e-9) for who, (n, err, _, t1) in res.items()
             if who != "producer"]
    counts = [n for who, (n, *_rest) in sorted(res.items()) if who != "producer"]
    if any(n != res["producer"][0] for n in counts):
        raise RuntimeError(f"{label}: producer sent {res['producer'][0]} frames, "
                           f"consumers got {counts}")
    return sum(rates) / len(rates), counts


def _stop(procs: list[Any]) -> None:
    for p in procs:
        if p.is_alive():
            p.terminate()
    for p in procs:
        p.join(timeout=5)
        if p.is_alive():
            p.kill()
            p.join(timeout=5)


def _launch(ctx: Any, label: str, tag: str, procs: list[Any], nbytes: int,
            consumer: Any, consumer_args: Any, producer: Any,
            producer_args: tuple) -> tuple[Any, list[Any], Any, Any]:
    """Starts two consumers (args: consumer_args(i) + (counts, ready, results)),
    waits until both are ready, then starts the producer (args:
    producer_args + (results,)).  Every process goes into procs for cleanup."""
    counts = ctx.RawArray("q", 2)
    ready = ctx.Semaphore(0)
    results = ctx.Queue()
    consumers = [ctx.Process(target=consumer, name=f"{tag}-consumer{i}",
                             args=(*consumer_args(i), counts, ready, results))
                 for i in range(2)]
    for p in consumers:
        procs.append(p)
        p.start()
    for _ in consumers:
        while not ready.acquire(timeout=0.2):
            _check_exits(label, consumers)
    prod = ctx.Process(target=producer, name=f"{tag}-producer",
                       args=(*producer_args, results))
    procs.append(prod)
    prod.start()
    return prod, consumers, _Progress(label, counts, nbytes), results


def _run_zdshm(ctx: Any, name: str, shape: tuple[int, ...], nbytes: int,
               seconds: float, slots: int, procs: list[Any]) -> tuple[float, list[int]]:
    label = "zdshm (posix shm)"
    seg = zdshm.PosixSegment.create(name, slot_count=slots, slot_capacity=nbytes)
    try:
        producer, consumers, progress, results = _launch(
            ctx, label, "zdshm", procs, nbytes,
            _zd_consumer, lambda i: (i, name, shape),
            _zd_producer, (name, shape, seconds))
        while producer.is_alive():
            progress.show()
            _check_exits(label, consumers)
            time.sleep(0.2)
        # The creator's goodbye ends the consumers' iteration once they
        # have drained the segment.
        seg.close()
        return _finish(label, [producer] + consumers, progress, results, seconds)
    finally:
        seg.close()
        try:
            zdshm.unlink(name)
        except zdshm.SegmentNotFoundError:
            pass


def _run_queue(ctx: Any, shape: tuple[int, ...], nbytes: int, seconds: float,
               procs: list[Any]) -> tuple[float, list[int]]:
    label = "multiprocessing.Queue"
    queues = [ctx.Queue(maxsize=4) for _ in range(2)]
    producer, consumers, progress, results = _launch(
        ctx, label, "queue", procs, nbytes,
        _q_consumer, lambda i: (i, queues[i], shape),
        _q_producer, (queues, shape, seconds))
    return _finish(label, [producer] + consumers, progress, results, seconds)


def demo(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m zdshm demo",
                                description="numpy frames through a posix segment "
                                            "vs multiprocessing.Queue")
    p.add_argument("--seconds", type=float, default=4.0,
                   help="how long each transport runs (default 4)")
    p.add_argument("--shape", type=int, nargs="+", default=[1080, 1920, 3],
                   help="frame shape, uint8 (default 1080 1920 3)")
    p.add_argument("--slots", type=int, default=8, help="slots in the segment (default 8)")
    p.add_argument("--skip-queue", action="store_true",
                   help="run only the zdshm part")
    args = p.parse_args(argv)
    if args.seconds <= 0 or args.slots < 1 or any(d < 1 for d in args.shape):
        p.error("--seconds, --slots and every --shape dimension must be positive")
    try:
        import multiprocessing as mp

        import numpy  # noqa: F401
    except ImportError:
        print("the demo needs numpy: pip install 'zdshm[numpy]'", file=sys.stderr)
        return 2
    shape = tuple(args.shape)
    nbytes = math.prod(shape)
    name = f"zdshm-demo-{os.getpid()}"
    ctx = mp.get_context("spawn")
    procs: list[Any] = []
    print(f"zdshm {zdshm.__version__} demo: 1 producer, 2 consumers, uint8 frames "
          f"{'x'.join(map(str, shape))} ({nbytes / 1e6:.2f} MB), "
          f"{args.seconds:g} s per transport", file=sys.stderr)
    try:
        zd_rate, _ = _run_zdshm(ctx, name, shape, nbytes, args.seconds,
                                args.slots, procs)
        _stop(procs)
        procs.clear()
        q_rate = None
        if not args.skip_queue:
            q_rate, _ = _run_queue(ctx, shape, nbytes, args.seconds, procs)
            _stop(procs)
            procs.clear()
    except KeyboardInterrupt:
        sys.stderr.write("\ninterrupted\n")
        return 130
    except (RuntimeError, zdshm.Error, OSError) as exc:
        sys.stderr.write(f"\ndemo failed: {exc}\n")
        return 1
    finally:
        _stop(procs)
        try:
            zdshm.unlink(name)
        except (zdshm.SegmentNotFoundError, ValueError):
            pass
    print(f"zdshm (posix shm):     {zd_rate:10.1f} frames/s per consumer "
          f"{zd_rate * nbytes * 2 / 1e9:8.2f} GB/s delivered")
    if q_rate is not None:
        print(f"multiprocessing.Queue: {q_rate:10.1f} frames/s per consumer "
              f"{q_rate * nbytes * 2 / 1e9:8.2f} GB/s delivered")
        ratio = zd_rate / q_rate if q_rate > 0 else float("inf")
        print(f"ratio: zdshm is {ratio:.1f}x multiprocessing.Queue")
    return 0


# --------------------------------------------------------------------------
# list, describe, rm, bench
# --------------------------------------------------------------------------

def _state(d: dict[str, Any]) -> str:
    """ALIVE while the creator's handle is open, else STALE."""
    return "ALIVE" if d["creator_alive"] else "STALE"


def _cmd_list(argv: list[str]) -> int:
    argparse.ArgumentParser(
        prog="python -m zdshm list",
        description="zdshm segments in /dev/shm: STATE is ALIVE while the "
                    "creator has the segment open, STALE once it closed it or "
                    "died; READERS and ATTACHED count live readers and live "
                    "handles").parse_args(argv)
    names = zdshm.list_segments()
    if not names:
        print("no zdshm segments")
        return 0
    print(f"{'NAME':<32} {'STATE':<5} {'SLOTS':>6} {'CAPACITY':>12} {'READERS':>7} "
          f"{'ATTACHED':>8} {'OWNER':>8} GOODBYE")
    for name in names:
        try:
            # Shown, not trusted: describe maps nothing, whoever owns it.
            d = zdshm.describe(name, allow_owner="any")
        except zdshm.Error:
            continue
        print(f"{name:<32} {_state(d):<5} {d['slot_count']:>6} {d['slot_capacity']:>12} "
              f"{d['live_readers']:>7} {d['live_attachments']:>8} {d['owner_pid']:>8} "
              f"{d['goodbye']}")
    return 0


def _cmd_describe(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m zdshm describe",
                                description="describe a segment (read-only)")
    p.add_argument("name")
    args = p.parse_args(argv)
    try:
        d = zdshm.describe(args.name, allow_owner="any")
    except (zdshm.Error, ValueError) as exc:
        print(f"describe: {exc}", file=sys.stderr)
        return 1
    if d.get("type_hash") is not None:
        d["type_hash"] = d["type_hash"].hex()
    print(json.dumps(d, indent=2, sort_keys=True))
    return 0


def _rm_stale(names: list[str]) -> int:
    """Removes the stale segments among names (all zdshm segments when
    empty); a live one (creator alive, or any live handle attached) stays."""
    rc = 0
    for name in names or zdshm.list_segments():
        try:
            d = zdshm.describe(name, allow_owner="any")
            if d["creator_alive"]:
                print(f"kept {name}: its creator (pid {d['owner_pid']}) is alive")
                continue
            if zdshm.unlink_stale(name):
                how = "closed it" if d["goodbye"] else "is dead"
                print(f"removed {name} (stale: its creator, pid {d['owner_pid']}, {how})")
            else:
                now = zdshm.describe(name, allow_owner="any")
                print(f"kept {name}: its creator is not alive but "
                      f"{now['live_attachments']} live handle(s) have it attached")
        except zdshm.SegmentNotFoundError:
            continue            # removed meanwhile
        except (zdshm.Error, ValueError) as exc:
            print(f"rm: {exc}", file=sys.stderr)
            rc = 1
    return rc


def _cmd_rm(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m zdshm rm",
                                description="remove segments by name, or with "
                                            "--stale the stale ones only")
    p.add_argument("names", nargs="*", metavar="NAME")
    p.add_argument("--stale", action="store_true",
                   help="remove only segments whose creator is dead (or closed "
                        "them) and that no live process has attached; without "
                        "NAMEs, every such segment in /dev/shm")
    args = p.parse_args(argv)
    if args.stale:
        return _rm_stale(args.names)
    if not args.names:
        p.error("give NAMEs, or --stale")
    rc = 0
    for name in args.names:
        try:
            zdshm.unlink(name)
        except (zdshm.Error, ValueError) as exc:
            print(f"rm: {exc}", file=sys.stderr)
            rc = 1
    return rc


def _cmd_bench(argv: list[str]) -> int:
    """The benchmarks are not installed: say where they are (status 2)."""
    del argv
    print("python -m zdshm bench: the benchmarks are not part of the installed package; "
          "they are in benchmarks/ of the zdshm source repository.\n"
          "From the repository root run: python -m benchmarks --quick   (--help for the options)",
          file=sys.stderr)
    return 2


def _cmd_bridge(argv: list[str]) -> int:
    """Runs one bridge until Ctrl-C (or SIGTERM); the final stats go to
    stdout as one JSON line, the progress line to stderr."""
    import signal

    from zdshm import bridge as zb

    p = argparse.ArgumentParser(
        prog="python -m zdshm bridge",
        description="forward the frames of a zdshm segment to iceoryx2 (same host) or "
                    "zenoh (across hosts), or from them into the segment")
    p.add_argument("segment", metavar="SEGMENT", help="the zdshm segment (posix name)")
    way = p.add_mutually_exclusive_group(required=True)
    way.add_argument("--to", metavar="ENGINE:NAME",
                     help="publish the segment's frames: iceoryx2:SERVICE or zenoh:KEY_EXPR")
    way.add_argument("--from", dest="from_", metavar="ENGINE:NAME",
                     help="commit frames received on iceoryx2:SERVICE or zenoh:KEY_EXPR "
                          "to the segment")
    p.add_argument("--policy", choices=("block", "drop"), default="block",
                   help="when the far side cannot keep up: wait for it (block, the "
                        "default) or drop the frame and count it")
    p.add_argument("--create", nargs=2, type=int, metavar=("SLOTS", "CAPACITY"),
                   help="with --from: create SEGMENT (SLOTS slots of CAPACITY bytes; "
                        "a bridge needs the largest frame + %d bytes) and remove it "
                        "at exit, instead of attaching it" % zb.ORIGIN_SIZE)
    p.add_argument("--connect", action="append", default=[], metavar="ENDPOINT",
                   help="zenoh: an endpoint to connect to, e.g. tcp/10.0.0.2:7447 (repeatable)")
    p.add_argument("--listen", action="append", default=[], metavar="ENDPOINT",
                   help="zenoh: an endpoint to listen on, e.g. tcp/0.0.0.0:7447 (repeatable)")
    p.add_argument("--zenoh-config", metavar="FILE",
                   help="zenoh: a JSON5 config file (multicast scouting is turned off)")
    p.add_argument("--zenoh-mode", choices=("peer", "client", "router"), default="peer",
                   help="zenoh: the session mode (default peer)")
    p.add_argument("--iceoryx2-prefix", metavar="PREFIX",
                   help="iceoryx2: the domain (file prefix) of the service (default iox2_)")
    p.add_argument("--depth", type=int, default=None,
                   help="iceoryx2: the subscribers' buffer size the service is made "
                        "with (default 8)")
    p.add_argument("--interval", type=float, default=1.0,
                   help="seconds between progress lines when stderr is not a terminal")
    args = p.parse_args(argv)
    spec = args.to if args.to is not None else args.from_
    try:
        engine, name = zb.parse_target(spec)
        zdshm.validate_name(args.segment)
    except ValueError as exc:
        p.error(str(exc))
    if args.create is not None and args.to is not None:
        p.error("--create goes with --from (the bridge then writes the segment)")
    if engine == "iceoryx2" and (args.connect or args.listen or args.zenoh_config):
        p.error("--connect, --listen and --zenoh-config are zenoh options")
    if engine == "zenoh" and (args.iceoryx2_prefix or args.depth is not None):
        p.error("--iceoryx2-prefix and --depth are iceoryx2 options")
    if args.interval <= 0:
        p.error("--interval must be positive")

    # Ctrl-C and SIGTERM end the loop below; the bridge then stops cleanly.
    stopping: list[int] = []

    def on_signal(signum: int, frame: Any) -> None:
        stopping.append(signum)

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    seg = None
    bridge: Any = None
    rc = 0
    try:
        try:
            if args.create is not None:
                slots, cap = args.create
                seg = zdshm.PosixSegment.create(args.segment, slots, cap, replace_stale=True)
            target: Any = seg if seg is not None else args.segment
            kw: dict[str, Any] = {"policy": args.policy}
            cls: Any
            if args.depth is not None:
                kw["depth"] = args.depth
            if engine == "iceoryx2":
                cls = zb.ToIceoryx2 if args.to is not None else zb.FromIceoryx2
                bridge = cls(target, name, prefix=args.iceoryx2_prefix, **kw)
            else:
                cls = zb.ToZenoh if args.to is not None else zb.FromZenoh
                bridge = cls(target, name, connect=args.connect, listen=args.listen,
                             config=args.zenoh_config, mode=args.zenoh_mode, **kw)
            bridge.start()
        except (zdshm.Error, ValueError, ImportError, OSError) as exc:
            print(f"bridge: {exc}", file=sys.stderr)
            return 1
        except Exception as exc:  # noqa: BLE001 - the engines' own errors
            print(f"bridge: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 1
        label = f"{args.segment} {'->' if args.to else '<-'} {spec}"
        print(f"bridge {label} ({args.policy}) running; Ctrl-C stops it",
              file=sys.stderr, flush=True)
        live = sys.stderr.isatty()
        t0 = last = time.monotonic()
        while not stopping and bridge.running:
            time.sleep(0.1)
            now = time.monotonic()
            if live or now - last >= args.interval:
                last = now
                _bridge_line(label, bridge.stats(), now - t0, live)
        stats = bridge.stop()
        _bridge_line(label, stats, time.monotonic() - t0, live, final=True)
        if bridge.error is not None:
            print(f"bridge stopped: {bridge.error}", file=sys.stderr)
            rc = 1
        print(json.dumps(dict(stats)), flush=True)
        return rc
    finally:
        if bridge is not None and bridge.running:
            bridge.stop()
        if seg is not None:
            try:
                seg.close()
            except zdshm.ViewsAliveError:
                seg.__exit__(None, None, None)
            try:
                seg.unlink()
            except zdshm.Error:
                pass
        for s, h in old.items():
            signal.signal(s, h)


def _bridge_line(label: str, st: Any, elapsed: float, live: bool,
                 final: bool = False) -> None:
    rate = st["bytes"] / elapsed / 1e6 if elapsed > 0 else 0.0
    line = (f"{label}  {elapsed:6.1f} s  forwarded {st['forwarded']}  dropped "
            f"{st['dropped']}  lost {st['lost']}  restarts {st['restarts']}  "
            f"{rate:8.1f} MB/s")
    if st["last_error"]:
        line += f"  last error: {st['last_error']}"
    if live:
        sys.stderr.write("\r\x1b[K" + line + ("\n" if final else ""))
    else:
        sys.stderr.write(line + "\n")
    sys.stderr.flush()


_COMMANDS = {
    "demo": demo,
    "list": _cmd_list,
    "describe": _cmd_describe,
    "rm": _cmd_rm,
    "bench": _cmd_bench,
    "bridge": _cmd_bridge,
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("-V", "--version"):
        print(f"zdshm {zdshm.__version__}")
        return 0
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in _COMMANDS:
        print("usage: python -m zdshm {demo,list,describe,rm,bench,bridge} [...]\n"
              "       python -m zdshm --version\n\n"
              "  demo [--seconds 4] [--shape 1080 1920 3]\n"
              "                 frames through a posix segment vs multiprocessing.Queue\n"
              "  list           zdshm segments in /dev/shm (ALIVE/STALE, live readers)\n"
              "  describe NAME  a segment's header and counters (read-only)\n"
              "  rm NAME...     remove segments\n"
              "  rm --stale [NAME...]  remove stale segments (creator gone, nothing attached)\n"
              "  bench          where the benchmarks are (not installed)\n"
              "  bridge SEGMENT --to|--from iceoryx2:SERVICE|zenoh:KEY_EXPR [...]\n"
              "                 forward frames to or from iceoryx2 or zenoh (Ctrl-C stops)",
              file=sys.stdout if argv and argv[0] in ("-h", "--help") else sys.stderr)
        if argv and argv[0] in ("-h", "--help"):
            return 0
        return 2
    return _COMMANDS[argv[0]](argv[1:])


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
