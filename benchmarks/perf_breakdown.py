"""Where the time of a message goes: system calls, futex calls, context switches,
faults and CPU per message, counted by ``perf stat`` over the whole process tree.

    python -m benchmarks.perf_breakdown [--iters N] [--cases a,b,...]

Each case runs twice in a fresh interpreter, with N/10 and N messages; the
difference of the two counts divided by the difference of the message counts
is the cost per message, free of start-up and set-up.  Needs ``perf`` with
the syscalls tracepoints (``perf list | grep sys_enter_futex``) and the zdshm
package; run it from the repository root (it uses the benchmark's modules and
its C floors, built as ``python -m benchmarks`` builds them).  This is a
diagnostic companion of ``python -m benchmarks``, not part of it.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]   # the children import benchmarks from here

EVENTS = ["raw_syscalls:sys_enter", "syscalls:sys_enter_futex", "context-switches",
          "cpu-migrations", "minor-faults", "task-clock"]

PY = {
    # name: python code run with N = number of messages (S1: round trips)
    "zdshm parked 64B": "from benchmarks import pingpong as p; p.zdshm_pingpong([64], N, 200, 600)",
    "zdshm spin 64B": "from benchmarks import pingpong as p; p.zdshm_pingpong([64], N, 200, 600, spin=50e-6)",
    "mp.Pipe 64B": "from benchmarks import pingpong as p; p.pipe_pingpong([64], N, 200, 600)",
    "mp.Queue 64B": "from benchmarks import pingpong as p; p.queue_pingpong([64], N, 200, 600)",
    "iceoryx2 parked 64B": "from benchmarks import pingpong as p; p.iox_pingpong([64], N, 200, 600)",
    "S2 zdshm header 1MiB": ("from benchmarks import stream as s; "
                             "s.stream_run('zdshm', [('header', 1 << 20)], lambda v, z, q: (N, 50), 600)"),
    "S2 zdshm header-spin 1MiB": ("from benchmarks import stream as s; "
                                  "s.stream_run('zdshm', [('header-spin', 1 << 20)], lambda v, z, q: (N, 50), 600)"),
    "S2 shm+Pipe header 1MiB": ("from benchmarks import stream as s; s.stream_run('shared_memory+Pipe', "
                                "[('header', 1 << 20)], lambda v, z, q: (N, 50), 600)"),
    "S2 iceoryx2 header 1MiB": ("from benchmarks import stream as s; s.stream_run('iceoryx2', "
                                "[('header', 1 << 20)], lambda v, z, q: (N, 50), 600)"),
    "S3 zdshm 1 reader": "from benchmarks import stream as s; s.fanout_run('zdshm', 1, 1 << 20, N, 20, 600)",
    "S3 zdshm 2 readers": "from benchmarks import stream as s; s.fanout_run('zdshm', 2, 1 << 20, N, 20, 600)",
}


def perf_counts(cmd: list[str]) -> dict[str, float]:
    with tempfile.NamedTemporaryFile("r", suffix=".csv") as out:
        subprocess.run(["perf", "stat", "-x", ",", "-o", out.name, "-e", ",".join(EVENTS), "--", *cmd],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
        counts: dict[str, float] = {}
        for line in out.read().splitlines():
            parts = line.split(",")
            if len(parts) < 3 or line.startswith("#"):
                continue
            try:
                counts[parts[2]] = float(parts[0])
            except ValueError:
                counts[parts[2]] = float("nan")
        return counts


def per_message(cmd_of: object, n: int) -> dict[str, float]:
    small, large = max(100, n // 10), n
    a = perf_counts(cmd_of(small))  # type: ignore[operator]
    b = perf_counts(cmd_of(large))  # type: ignore[operator]
    return {k: (b.get(k, 0) - a.get(k, 0)) / (large - small) for k in EVENTS}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iters", type=int, default=20000)
    ap.add_argument("--cases", help="comma-separated subset of the case names")
    args = ap.parse_args()
    if shutil.which("perf") is None:
        print("perf is not installed", file=sys.stderr)
        return 2
    from benchmarks.floors import Floors

    fl = Floors()
    fl.build()
    cases: dict[str, object] = {}
    if fl.floor_bin:
        for mode in ("futex", "cacheline"):
            cases[f"C {mode} ping-pong"] = (lambda m: lambda n: [fl.floor_bin, m, str(n), "100", "0", "1"])(mode)
    if fl.core_bin:
        for name, spin in (("C core parked 64B", "0"), ("C core spin 64B", "50000")):
            cases[name] = (lambda s: lambda n: [fl.core_bin, "pingpong", str(n), "100", s, "64", "0", "1"])(spin)
    for name, code in PY.items():
        cases[name] = (lambda c: lambda n: [sys.executable, "-c",
                                            f"if __name__ == '__main__':\n N = {n}\n " + c])(code)
    if args.cases:
        want = {c.strip() for c in args.cases.split(",")}
        cases = {k: v for k, v in cases.items() if k in want}
    print(f"{'case':28s} {'syscalls':>9s} {'futex':>7s} {'ctx-sw':>7s} {'migr':>6s} "
          f"{'faults':>7s} {'CPU us':>8s}   (per message / round trip, all processes)")
    try:
        for name, cmd_of in cases.items():
            try:
                r = per_message(cmd_of, args.iters)
            except subprocess.CalledProcessError as e:
                print(f"{name:28s} failed: {e}")
                continue
            print(f"{name:28s} {r['raw_syscalls:sys_enter']:9.2f} {r['syscalls:sys_enter_futex']:7.2f} "
                  f"{r['context-switches']:7.2f} {r['cpu-migrations']:6.2f} {r['minor-faults']:7.3f} "
                  f"{r['task-clock'] * 1e3:8.2f}", flush=True)
    finally:
        fl.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
