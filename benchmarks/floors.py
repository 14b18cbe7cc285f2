"""The hardware floors and the C core floor: C programs built with CMake.

The sources are in ``benchmarks/c`` (``floor.c``, ``core.c``; each file says
what its modes measure) and build with ``-DZD_BUILD_BENCH=ON``:

  zdbench_floor   cache-line and futex ping-pong between two processes,
                  memcpy, page touch -- what the hardware and the kernel cost
  zdbench_core    the zdshm C core without Python: loan+commit and
                  take+release pairs in one process, and the S1 ping-pong
                  (parked and bounded spin); it splits each S1 figure into
                  kernel floor, C core and Python binding

Each run prints one JSON object.  ``Floors.build`` configures a CMake tree
under the repository (``build/bench``, or the ``--build-dir`` given) once and
runs the (incremental) build every time, so the core floor always measures
the current sources; without cmake it takes programs already built there.
"""
from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
from typing import Any

from . import common
from .common import BenchError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_BUILD_DIR = os.path.join(ROOT, "build", "bench")
TARGETS = ("zdbench_floor", "zdbench_core")


def _binary(build_dir: str, target: str) -> str | None:
    path = os.path.join(build_dir, "benchmarks", "c", target)
    return path if os.path.isfile(path) and os.access(path, os.X_OK) else None


def _cache_value(build_dir: str, key: str) -> str | None:
    try:
        with open(os.path.join(build_dir, "CMakeCache.txt"), encoding="utf-8") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return line.split("=", 1)[1].strip()
    except OSError:
        pass
    return None


def _tail(proc: subprocess.CompletedProcess) -> str:
    return ((proc.stdout or "") + (proc.stderr or ""))[-2000:]


class Floors:
    """Builds (or finds) the C floors and runs them."""

    def __init__(self, build_dir: str | None = None) -> None:
        self.build_dir = os.path.abspath(build_dir or DEFAULT_BUILD_DIR)
        self.cc: str | None = None
        self.floor_bin: str | None = None
        self.core_bin: str | None = None
        self.floor_error: str | None = None
        self.core_error: str | None = None
        self.core_src: str | None = None

    def close(self) -> None:
        """Nothing to remove: the build tree is kept for the next run."""

    def _configure(self, cmake: str) -> None:
        cmd = [cmake, "-S", ROOT, "-B", self.build_dir, "-DZD_BUILD_BENCH=ON",
               "-DZD_BUILD_TESTS=OFF", "-DCMAKE_BUILD_TYPE=Release"]
        if shutil.which("ninja"):
            cmd += ["-G", "Ninja"]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
        if r.returncode != 0:
            raise BenchError(f"cmake configure of {self.build_dir} failed:\n{_tail(r)}")

    def _build_target(self, cmake: str, target: str) -> str:
        r = subprocess.run([cmake, "--build", self.build_dir, "--target", target],
                           capture_output=True, text=True, timeout=600, check=False)
        path = _binary(self.build_dir, target)
        if r.returncode != 0 or path is None:
            raise BenchError(f"building {target} failed:\n{_tail(r)}")
        return path

    def build(self) -> None:
        cmake = shutil.which("cmake")
        if cmake is None:
            # no cmake: programs built earlier (or by the C test suites) still serve
            self.floor_bin = _binary(self.build_dir, TARGETS[0])
            self.core_bin = _binary(self.build_dir, TARGETS[1])
            why = f"cmake not found and not built in {self.build_dir}"
            self.floor_error = None if self.floor_bin else why
            self.core_error = None if self.core_bin else why
        else:
            os.makedirs(self.build_dir, exist_ok=True)
            # one build at a time in a tree (two runs started together)
            with open(os.path.join(self.build_dir, ".zdbench.lock"), "w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                try:
                    if _cache_value(self.build_dir, "ZD_BUILD_BENCH") not in ("ON", "TRUE", "1"):
                        self._configure(cmake)
                except (BenchError, OSError, subprocess.SubprocessError) as e:
                    self.floor_error = self.core_error = str(e)
                    return
                try:
                    self.floor_bin = self._build_target(cmake, TARGETS[0])
                except (BenchError, OSError, subprocess.SubprocessError) as e:
                    self.floor_error = str(e)
                try:
                    self.core_bin = self._build_target(cmake, TARGETS[1])
                except (BenchError, OSError, subprocess.SubprocessError) as e:
                    self.core_error = str(e)
        self.cc = _cache_value(self.build_dir, "CMAKE_C_COMPILER")
        if self.core_bin is not None:
            self.core_src = _cache_value(self.build_dir, "CMAKE_HOME_DIRECTORY") or ROOT

    @staticmethod
    def _run(binary: str | None, args: list[object], timeout: float) -> dict[str, Any]:
        if binary is None:
            raise BenchError("not built")
        r = subprocess.run([binary, *map(str, args)], capture_output=True, text=True,
                           timeout=timeout, check=False)
        if r.returncode != 0:
            raise BenchError(f"{os.path.basename(binary)} {' '.join(map(str, args))} exited "
                             f"{r.returncode}: {r.stderr[-1000:]}")
        return json.loads(r.stdout.strip().splitlines()[-1])

    def pingpong(self, mode: str, iters: int, warm: int, timeout: float = 120) -> dict[str, Any]:
        p, c = common.pair_cpus()  # through the module: --no-pin replaces it
        return self._run(self.floor_bin, [mode, iters, warm, -1 if p is None else p,
                                          -1 if c is None else c], timeout)

    def memcpy(self, size: int, iters: int, timeout: float = 120) -> dict[str, Any]:
        return self._run(self.floor_bin, ["memcpy", size, iters], timeout)

    def pagetouch(self, size: int, iters: int, timeout: float = 120) -> dict[str, Any]:
        return self._run(self.floor_bin, ["pagetouch", size, iters], timeout)

    def core_pairs(self, rounds: int, backend: str, slots: int, timeout: float = 120) -> dict[str, Any]:
        return self._run(self.core_bin, ["pairs", rounds, backend, slots], timeout)

    def core_pingpong(self, iters: int, warm: int, spin_ns: int, size: int,
                      timeout: float = 120) -> dict[str, Any]:
        p, c = common.pair_cpus()  # through the module: --no-pin replaces it
        return self._run(self.core_bin, ["pingpong", iters, warm, spin_ns, size,
                                         -1 if p is None else p, -1 if c is None else c], timeout)
