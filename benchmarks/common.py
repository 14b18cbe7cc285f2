"""Shared machinery: child processes with watchdogs, statistics, rusage, environment.

Every two-process measurement runs as a *pair*: the parent (this process) is
the measuring side, a child started with the ``spawn`` method is the peer.
The child speaks a tiny protocol over a control pipe::

    child -> parent   ("ready", info)        set up, about to run its loop
    child -> parent   ("done", report)       finished; report is a dict
    child -> parent   ("error", traceback)   failed

A watchdog kills a child that outlives its time limit, so a measuring loop
blocked on a dead peer sees EOF or a timeout instead of hanging.  The parent
and the child are pinned to different CPUs when there are at least two, the
same way for zdshm, every peer and the C floors.
"""
from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import platform
import resource
import signal
import subprocess
import sys
import threading
import time
import traceback
from typing import Any
from collections.abc import Callable

NS = 1_000_000_000


class BenchError(RuntimeError):
    """A measurement failed; the message says where and why."""


# --------------------------------------------------------------------------
# rusage
# --------------------------------------------------------------------------
def _usage() -> tuple[int, int, int]:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return int((r.ru_utime + r.ru_stime) * NS), r.ru_minflt, r.ru_majflt


def usage() -> tuple[int, int, int]:
    """(cpu_ns, minor_faults, major_faults) of this process so far.

    The objects a reading allocates come after its system call; the first
    time, pymalloc may take a fresh page for them, and that fault would be
    charged to the window the reading opens.  A first, discarded reading
    makes the second one reuse the memory it freed."""
    _usage()
    return _usage()


def usage_delta(before: tuple[int, int, int], n: int) -> dict[str, float]:
    """Per-message CPU time and faults since `before`, over n messages."""
    after = usage()
    n = max(n, 1)
    return {
        "cpu_ns_per_msg": (after[0] - before[0]) / n,
        "minflt_per_msg": (after[1] - before[1]) / n,
        "minflt_total": after[1] - before[1],
        "majflt_total": after[2] - before[2],
    }


# --------------------------------------------------------------------------
# statistics
# --------------------------------------------------------------------------
def interval_stats(stamps: Any) -> dict[str, float]:
    """Statistics of the differences between consecutive timestamps (ns)."""
    import numpy as np

    t = np.frombuffer(stamps, dtype=np.int64) if not isinstance(stamps, np.ndarray) else stamps
    d = np.diff(t).astype(np.float64)
    if d.size == 0:
        raise BenchError("no intervals measured")
    return sample_stats(d)


def sample_stats(d: Any) -> dict[str, float]:
    import numpy as np

    d = np.sort(np.asarray(d, dtype=np.float64))
    return {
        "n": int(d.size),
        "mean": float(d.mean()),
        "min": float(d[0]),
        "p50": float(np.percentile(d, 50)),
        "p90": float(np.percentile(d, 90)),
        "p99": float(np.percentile(d, 99)),
        "p999": float(np.percentile(d, 99.9)),
        "max": float(d[-1]),
    }


def median(xs: list[float]) -> float:
    s = sorted(xs)
    n = len(s)
    if n == 0:
        return float("nan")
    return s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])


# --------------------------------------------------------------------------
# CPU placement
# --------------------------------------------------------------------------
def cpus() -> list[int]:
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return list(range(os.cpu_count() or 1))


def pin_self(cpu: int | None) -> None:
    if cpu is None:
        return
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setaffinity(0, {cpu})


def pair_cpus() -> tuple[int | None, int | None]:
    """(parent cpu, child cpu) for a pair, or (None, None) on one CPU."""
    c = cpus()
    if len(c) < 2:
        return None, None
    return c[0], c[1]


# --------------------------------------------------------------------------
# children
# --------------------------------------------------------------------------
def _child_entry(fn: Callable[..., dict | None], ctrl: Any, args: Any, cpu: int | None) -> None:
    pin_self(cpu)
    try:
        rep = fn(ctrl, args)
        ctrl.send(("done", rep or {}))
    except BaseException:  # noqa: BLE001 - everything goes back to the parent
        with contextlib.suppress(Exception):
            ctrl.send(("error", traceback.format_exc()))
    finally:
        with contextlib.suppress(Exception):
            ctrl.close()


class Watchdog:
    """Raises BenchError in the main thread when a measurement overruns.

    SIGALRM interrupts a blocking system call (the handler runs, raises, and
    the call is not retried), so a parent blocked on a dead peer's channel
    comes back.  Nested watchdogs keep the outermost deadline.
    """

    active = False

    def __init__(self, timeout: float, label: str) -> None:
        self.timeout = timeout
        self.label = label
        self.armed = False
        self.old: Any = None

    def _fire(self, signum: int, frame: Any) -> None:
        raise BenchError(f"{self.label}: watchdog fired after {self.timeout:.0f} s")

    def __enter__(self) -> Watchdog:
        if Watchdog.active or threading.current_thread() is not threading.main_thread():
            return self
        self.old = signal.signal(signal.SIGALRM, self._fire)
        signal.setitimer(signal.ITIMER_REAL, self.timeout)
        Watchdog.active = self.armed = True
        return self

    def __exit__(self, *exc: object) -> None:
        if self.armed:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, self.old)
            Watchdog.active = self.armed = False


def spawn_context() -> Any:
    return mp.get_context("spawn")


class Child:
    """One spawned peer process with a control pipe and a watchdog.

    ``Child(fn, args)`` runs ``fn(ctrl, args)`` in a new process; ``fn`` must
    be a module-level function.  Use as a context manager: leaving it joins
    the child, kills it if it does not exit, and restores the parent's CPU
    affinity.  ``pin`` places parent and child on different CPUs.
    """

    def __init__(self, fn: Callable[..., Any], args: Any, *, timeout: float,
                 pin: bool = True, cpu: int | None = None, label: str = "") -> None:
        self.fn = fn
        self.args = args
        self.timeout = timeout
        self.label = label or getattr(fn, "__name__", "child")
        self.pin = pin
        self.cpu = cpu
        self.proc: Any = None
        self.ctrl: Any = None
        self._old_aff: set[int] | None = None
        self._timer: threading.Timer | None = None
        self._dog = Watchdog(timeout + 3, self.label)
        self.killed = False

    def __enter__(self) -> Child:
        ctx = spawn_context()
        mine, theirs = ctx.Pipe(duplex=True)
        pcpu, ccpu = pair_cpus() if self.pin else (None, None)
        if self.cpu is not None:
            ccpu = self.cpu
        if pcpu is not None:
            with contextlib.suppress(AttributeError, OSError):
                self._old_aff = os.sched_getaffinity(0)
            pin_self(pcpu)
        self.proc = ctx.Process(target=_child_entry, args=(self.fn, theirs, self.args, ccpu),
                                daemon=True, name=f"zdbench-{self.label}")
        self.proc.start()
        theirs.close()
        self.ctrl = mine
        self._timer = threading.Timer(self.timeout, self._kill)
        self._timer.daemon = True
        self._timer.start()
        self._dog.__enter__()
        return self

    def _kill(self) -> None:
        if self.proc is not None and self.proc.is_alive():
            self.killed = True
            with contextlib.suppress(Exception):
                self.proc.kill()

    def recv(self, timeout: float | None = None) -> tuple[str, Any]:
        t = self.timeout if timeout is None else timeout
        if not self.ctrl.poll(t):
            self._kill()
            raise BenchError(f"{self.label}: no answer from the child within {t:.0f} s")
        try:
            kind, payload = self.ctrl.recv()
        except (EOFError, OSError) as e:
            self.proc.join(1)
            code = self.proc.exitcode
            why = " (killed by the watchdog)" if self.killed else ""
            raise BenchError(f"{self.label}: child exited (code {code}){why}") from e
        if kind == "error":
            raise BenchError(f"{self.label}: child failed:\n{payload}")
        return kind, payload

    def expect(self, kind: str, timeout: float | None = None) -> Any:
        k, payload = self.recv(timeout)
        if k != kind:
            raise BenchError(f"{self.label}: expected {kind!r} from the child, got {k!r}")
        return payload

    def send(self, obj: Any) -> None:
        self.ctrl.send(obj)

    def result(self, timeout: float | None = None) -> dict:
        return self.expect("done", timeout)

    def __exit__(self, *exc: object) -> None:
        self._dog.__exit__()
        if self._timer is not None:
            self._timer.cancel()
        child_error = None
        if exc[0] is not None and self.ctrl is not None:
            # the parent failed: if the child failed first, its traceback says why
            with contextlib.suppress(Exception):
                while self.ctrl.poll(0.2):
                    kind, payload = self.ctrl.recv()
                    if kind == "error":
                        child_error = payload
                        break
        if self.proc is not None:
            self.proc.join(5 if exc[0] is None else 0.5)
            if self.proc.is_alive():
                with contextlib.suppress(Exception):
                    self.proc.kill()
                self.proc.join(2)
        if self.ctrl is not None:
            with contextlib.suppress(Exception):
                self.ctrl.close()
        if self._old_aff is not None:
            with contextlib.suppress(AttributeError, OSError):
                os.sched_setaffinity(0, self._old_aff)
        if child_error is not None:
            raise BenchError(f"{self.label}: child failed:\n{child_error}") from exc[1]  # type: ignore[misc]


def child_ready(ctrl: Any, **info: Any) -> None:
    ctrl.send(("ready", info))


# --------------------------------------------------------------------------
# names
# --------------------------------------------------------------------------
_counter = 0


def unique_name(tag: str) -> str:
    """A name no other run on this host uses: zdbench-<pid>-<n>-<tag>."""
    global _counter
    _counter += 1
    return f"zdbench-{os.getpid()}-{_counter}-{tag}"


# --------------------------------------------------------------------------
# progress
# --------------------------------------------------------------------------
class Progress:
    """Prints one line per measurement to stderr, with the elapsed time."""

    def __init__(self, total: int, stream: Any = None, quiet: bool = False) -> None:
        self.total = max(total, 1)
        self.done = 0
        self.t0 = time.monotonic()
        self.stream = stream or sys.stderr
        self.quiet = quiet

    def start(self, what: str) -> None:
        if self.quiet:
            return
        self.stream.write(f"[{time.monotonic() - self.t0:6.1f}s {self.done + 1:3d}/{self.total}] {what} ...")
        self.stream.flush()

    def end(self, outcome: str) -> None:
        self.done += 1
        if self.quiet:
            return
        self.stream.write(f" {outcome}\n")
        self.stream.flush()

    def note(self, text: str) -> None:
        if not self.quiet:
            self.stream.write(f"[{time.monotonic() - self.t0:6.1f}s] {text}\n")
            self.stream.flush()


# --------------------------------------------------------------------------
# environment record
# --------------------------------------------------------------------------
def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError:
        return None


def cpu_model() -> str:
    info = _read("/proc/cpuinfo") or ""
    for line in info.splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def git_revision(start: str | None = None) -> str | None:
    """The git revision of the source tree the benchmark runs from, if any."""
    here = start or os.getcwd()
    for cand in (here, os.path.dirname(os.path.abspath(__file__))):
        try:
            out = subprocess.run(["git", "-C", cand, "rev-parse", "HEAD"], capture_output=True,
                                 text=True, timeout=5, check=False)
        except (OSError, subprocess.SubprocessError):
            continue
        if out.returncode == 0 and out.stdout.strip():
            rev = out.stdout.strip()
            dirty = subprocess.run(["git", "-C", cand, "status", "--porcelain", "--untracked-files=no"],
                                   capture_output=True, text=True, timeout=5, check=False)
            if dirty.returncode == 0 and dirty.stdout.strip():
                rev += "+dirty"
            return rev
    return None


def env_record(packages: dict[str, str | None]) -> dict[str, Any]:
    uname = platform.uname()
    shm = None
    with contextlib.suppress(OSError):
        st = os.statvfs("/dev/shm")
        shm = st.f_bavail * st.f_frsize
    gov = _read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor")
    return {
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(cpus()),
        "machine": uname.machine,
        "kernel": uname.release,
        "os": f"{uname.system} {uname.version}",
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "executable": sys.executable,
        "packages": packages,
        "git_revision": git_revision(),
        "dev_shm_free_bytes": shm,
        "cpu_governor": gov.strip() if gov else None,
        "page_size": os.sysconf("SC_PAGE_SIZE"),
        "loadavg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
