"""The order of a run, the quick and full budgets, and the records it produces.

A record is one measured figure::

    {"scenario": "S1", "impl": "zdshm", "variant": "parked", "size": 64,
     "metric": "rtt_ns", "unit": "ns", "value": 12345.0,      # the headline
     "stats": {...}, "measuring": {...}, "peer": {...}, ...}

``report.finish`` adds the ratios (to the floor, to each peer) and the targets.
"""
from __future__ import annotations

import math
import os
import time
import traceback
from typing import Any
from collections.abc import Callable

from . import floors as floors_mod
from . import aio as aio_mod
from . import bridge as bridge_mod
from . import classes as classes_mod
from . import local, peers, pingpong, scaling, stream
from .common import BenchError, Progress, env_record, median, sample_stats

SCHEMA = "zdshm-bench/1"

MODES: dict[str, dict[str, Any]] = {
    "quick": {
        "rounds": 1, "pp_iters": 1000, "pp_warm": 100,
        "cl_iters": 100_000, "fx_iters": 5_000,
        "core_pp_iters": 5_000, "core_spin_iters": 50_000, "core_pair_rounds": 2_000,
        "memcpy_budget_s": 0.05, "s2_budget_s": 0.12, "s2_min": 3, "s2_max": 2_000,
        "s2_first": 300, "s2_sum": False, "s2_rounds": 1,
        "s3_count": 150, "s3_warm": 10,
        "s4_rounds": 2_000, "s4_repeat": 2, "s5_rounds": 3, "timeout": 60.0,
        "sc_rounds": 1, "sc_batches": 150, "sc_warm": 10, "sc_fresh_batches": 100,
        "sc_procs": 2, "sc_2p_count": 300, "sc_2p_warm": 20, "sc_fx_paced": 40,
        "sc_fx_count": 300, "sc_rate_count": 300,
        "aio_rounds": 3, "aio_iters": 2_000, "aio_warm": 200, "aio_batch": 100_000,
        "cl_rounds": 5, "cl_count": 2_000, "cl_queue_count": 150, "cl_warm": 64,
        "bridge_n": 2_000, "bridge_rounds": 1,
    },
    "full": {
        "rounds": 3, "pp_iters": 10_000, "pp_warm": 1_000,
        "cl_iters": 1_000_000, "fx_iters": 30_000,
        "core_pp_iters": 30_000, "core_spin_iters": 300_000, "core_pair_rounds": 30_000,
        "memcpy_budget_s": 0.5, "s2_budget_s": 1.5, "s2_min": 10, "s2_max": 30_000,
        "s2_first": 3_000, "s2_sum": True, "s2_rounds": 3,
        "s3_count": 2_000, "s3_warm": 50,
        "s4_rounds": 20_000, "s4_repeat": 5, "s5_rounds": 10, "timeout": 300.0,
        "sc_rounds": 3, "sc_batches": 2_000, "sc_warm": 50, "sc_fresh_batches": 400,
        "sc_procs": 8, "sc_2p_count": 4_000, "sc_2p_warm": 100, "sc_fx_paced": 400,
        "sc_fx_count": 3_000, "sc_rate_count": 3_000,
        "aio_rounds": 5, "aio_iters": 10_000, "aio_warm": 1_000, "aio_batch": 300_000,
        "cl_rounds": 9, "cl_count": 10_000, "cl_queue_count": 500, "cl_warm": 200,
        "bridge_n": 5_000, "bridge_rounds": 3,
    },
}

S1_SIZES = [64, 4096]
S2_SIZES = [4096, 1 << 20, 64 << 20]
S3_SIZE = 1 << 20
SCENARIOS = ("floors", "S1", "S2", "S3", "S4", "S5", "scaling", "aio", "classes", "bridge")
# Run only when named in --only (they need root, zenoh and iceoryx2, and time).
OPTIONAL = ("bridge",)


class Run:
    def __init__(self, mode: str, only: set[str] | None, progress: Progress, *,
                 pin: bool = True, build_dir: str | None = None) -> None:
        self.mode = mode
        self.p = MODES[mode]
        self.only = only
        self.progress = progress
        self.pin = pin
        self.records: list[dict] = []
        self.errors: list[dict] = []
        self.peers = peers.probe()
        self.floors = floors_mod.Floors(build_dir)
        self.cpu_count = os.cpu_count() or 1
        self.usable_cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else self.cpu_count

    # ------------------------------------------------------------------
    def want(self, scenario: str) -> bool:
        if scenario in OPTIONAL:
            return self.only is not None and scenario in self.only
        return self.only is None or scenario in self.only

    def peer_ok(self, key: str) -> bool:
        if not key:
            return True
        base = "SharedArray" if key.startswith("SharedArray") else key
        return bool(self.peers.get(base, {"available": True})["available"])

    def add(self, **rec: Any) -> dict:
        self.records.append(rec)
        return rec

    def fail(self, scenario: str, what: str, exc: BaseException) -> None:
        msg = str(exc) if isinstance(exc, BenchError) else \
            "".join(traceback.format_exception_only(type(exc), exc)).strip()
        self.errors.append({"scenario": scenario, "what": what, "error": msg,
                            "traceback": traceback.format_exc(limit=6)})
        self.progress.end(f"FAILED: {msg.splitlines()[0] if msg else type(exc).__name__}")

    def guarded(self, scenario: str, what: str, fn: Callable[[], Any]) -> Any:
        self.progress.start(f"{scenario} {what}")
        try:
            return fn()
        except KeyboardInterrupt:
            raise
        except BaseException as e:  # noqa: BLE001 - a failed measurement is recorded, not fatal
            self.fail(scenario, what, e)
            return None

    # ------------------------------------------------------------------
    def plan_total(self) -> int:
        n = 1  # building the floors
        r = self.p["rounds"]
        if self.want("floors"):
            n += 1 + 2 * len(S2_SIZES) + 2
        if self.want("S1"):
            n += r * (len(pingpong.transports(self.usable_cpus)) + 2 + 2)
        if self.want("S2"):
            n += len(stream.STREAMS) * len(S2_SIZES) * 2 + (2 if self.p["s2_sum"] else 0) + len(S2_SIZES)
            n += sum(1 for k in stream.STREAMS.values() if k.zero_copy) * 2 * (self.p["s2_rounds"] - 1)
        if self.want("S3"):
            n += len(stream.FANOUT) * self.cpu_count
        if self.want("S4"):
            n += 2 * 5 + 1
        if self.want("S5"):
            n += 4
        if self.want("scaling"):
            n += scaling.steps(self.p)
        if self.want("aio"):
            n += self.p["aio_rounds"] * (4 if aio_mod.have_uvloop() else 3) + 1
        if self.want("classes"):
            n += self.p["cl_rounds"] * len(classes_mod.TRANSPORTS)
        if self.want("bridge"):
            n += bridge_mod.STEPS * self.p["bridge_rounds"]
        return n

    def run(self) -> dict[str, Any]:
        t_start = time.time()
        self.progress.total = self.plan_total()
        self.progress.note(f"zdshm benchmark, {self.mode} mode, {self.cpu_count} CPUs")
        self.progress.start("building the C floors")
        self.floors.build()
        self.progress.end("ok" if self.floors.floor_bin else f"unavailable: {self.floors.floor_error}")
        try:
            if self.want("floors"):
                self.run_floors()
            if self.want("S1"):
                self.run_s1()
            if self.want("S2"):
                self.run_s2()
            if self.want("S3"):
                self.run_s3()
            if self.want("S4"):
                self.run_s4()
            if self.want("S5"):
                self.run_s5()
            if self.want("scaling"):
                scaling.run_all(self)
            if self.want("aio"):
                self.run_aio()
            if self.want("classes"):
                self.run_classes()
            if self.want("bridge"):
                bridge_mod.run_all(self, self.p["bridge_n"], self.p["bridge_rounds"])
        finally:
            self.floors.close()
        return {
            "schema": SCHEMA,
            "mode": self.mode,
            "started_unix": t_start,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(t_start)),
            "duration_s": time.time() - t_start,
            "scenarios": [s for s in SCENARIOS if self.want(s)],
            "parameters": dict(self.p, s1_sizes=S1_SIZES, s2_sizes=S2_SIZES, s3_size=S3_SIZE,
                               s1_spin_s=pingpong.SPIN_S, slots=stream.SLOTS,
                               s4_batch=local.BATCH, pinned=self.pin,
                               scaling_slots=list(scaling.SLOTS), scaling_batch=scaling.BATCH,
                               scaling_futex_readers=list(scaling.FUTEX_READERS),
                               scaling_rate_readers=list(scaling.RATE_READERS),
                               scaling_pace_s=scaling.PACE_S, scaling_spin_s=scaling.SPIN_S,
                               classes_depth=classes_mod.DEPTH,
                               classes_layouts=dict(classes_mod.LAYOUTS),
                               classes_mix={"control_bytes": classes_mod.CONTROL,
                                            "image_bytes": list(classes_mod.IMAGE),
                                            "frame_bytes": list(classes_mod.FRAME),
                                            "shares": dict(classes_mod.MIX)}),
            "env": env_record(peers.package_versions()),
            "peers": self.peers,
            "floors_build": {"compiler": self.floors.cc, "floor_error": self.floors.floor_error,
                             "core_error": self.floors.core_error,
                             "core_sources": self.floors.core_src,
                             "build_dir": self.floors.build_dir},
            "records": self.records,
            "errors": self.errors,
        }

    # ------------------------------------------------------------------
    # floors that do not depend on S1's interleaving
    def run_floors(self) -> None:
        if self.floors.floor_bin is None:
            return
        budget = self.p["memcpy_budget_s"]
        for size in S2_SIZES:
            iters = max(3, min(100_000, int(budget * 1e9 / max(size / 5.0, 50))))  # ~5 GB/s guess

            def memcpy(size: int = size, iters: int = iters) -> None:
                r = self.floors.memcpy(size, iters)
                self.add(scenario="floor", impl="C", variant="memcpy", size=size, metric="ns_per_copy",
                         unit="ns", value=r["ns"]["p50"], stats=r["ns"],
                         gbps=size / r["ns"]["p50"])
                self.progress.end(f"{r['ns']['p50'] / 1e3:10.1f} us  ({size / r['ns']['p50']:.1f} GB/s)")
            self.guarded("floor", f"memcpy {stream._fmt_size(size)}", memcpy)

            def touch(size: int = size, iters: int = iters) -> None:
                r = self.floors.pagetouch(size, max(3, min(iters, 2000)))
                v = r["write_ns"]["p50"] + r["read_ns"]["p50"]
                self.add(scenario="floor", impl="C", variant="pagetouch", size=size,
                         metric="ns_per_pass", unit="ns", value=v,
                         write=r["write_ns"], read=r["read_ns"], pages=r["pages"])
                self.progress.end(f"{v / 1e3:10.1f} us  (write+read one byte per page)")
            self.guarded("floor", f"page touch {stream._fmt_size(size)}", touch)
        if self.floors.core_bin is not None:
            for backend in ("memory", "posix"):
                def core_pairs(backend: str = backend) -> None:
                    r = self.floors.core_pairs(max(10, self.p["core_pair_rounds"] // local.BATCH),
                                               backend, local.BATCH)
                    for m in ("loan_commit_ns", "take_release_ns"):
                        self.add(scenario="floor", impl="C core", variant=f"pairs-{m[:-3]}",
                                 backend=backend, size=local.MSG, metric=m, unit="ns",
                                 value=r[m], slots=local.BATCH)
                    self.progress.end(f"loan+commit {r['loan_commit_ns']:.0f} ns, "
                                      f"take+release {r['take_release_ns']:.0f} ns")
                self.guarded("floor", f"C core pairs ({backend})", core_pairs)
            # how the core's per-operation cost grows with the slot count
            scaling = []
            for slots in (4, 16, 64, 256, 1024):
                try:
                    r = self.floors.core_pairs(max(4, 20_000 // slots), "memory", slots)
                    scaling.append({"slots": slots, "loan_commit_ns": r["loan_commit_ns"],
                                    "take_release_ns": r["take_release_ns"]})
                except (BenchError, OSError, ValueError) as e:
                    self.errors.append({"scenario": "floor", "what": "core slot scaling",
                                        "error": str(e)})
                    break
            if scaling:
                self.add(scenario="floor", impl="C core", variant="slot-scaling", size=local.MSG,
                         metric="loan_commit_ns_at_max_slots", unit="ns",
                         value=scaling[-1]["loan_commit_ns"], points=scaling)

    # ------------------------------------------------------------------
    def run_s1(self) -> None:
        p = self.p
        iters, warm = p["pp_iters"], p["pp_warm"]
        acc: dict[tuple, dict] = {}   # (impl, variant, size) -> merged rounds

        def merge(key: tuple, intervals: Any, extra: dict) -> None:
            import numpy as np

            a = acc.setdefault(key, {"intervals": [], "measuring": [], "peer": [], "ok": True,
                                     "floor": extra.get("floor", False), "p50s": []})
            a["intervals"].append(np.asarray(intervals, dtype=np.float64))
            a["p50s"].append(float(np.median(intervals)))
            for k in ("measuring", "peer"):
                if extra.get(k) is not None:
                    a[k].append(extra[k])
            a["ok"] = a["ok"] and extra.get("check_ok", True)

        for rnd in range(p["rounds"]):
            tag = f"(round {rnd + 1}/{p['rounds']})" if p["rounds"] > 1 else ""
            if self.floors.floor_bin is not None:
                for mode, n in (("futex", p["fx_iters"]), ("cacheline", p["cl_iters"])):
                    if mode == "cacheline" and self.usable_cpus < 2:
                        continue

                    def floor(mode: str = mode, n: int = n) -> None:
                        r = self.floors.pingpong(mode, n, max(100, n // 10))
                        st = r["rtt_ns"]
                        merge(("C", mode, 4), _synthetic(st), {
                            "floor": True,
                            "measuring": {"cpu_ns_per_msg": r["parent_cpu_ns_per_msg"],
                                          "minflt_per_msg": r["parent_minflt_per_msg"]},
                            "peer": {"cpu_ns_per_msg": r["child_cpu_ns_per_msg"]},
                            "check_ok": bool(r["child_ok"])})
                        acc[("C", mode, 4)].setdefault("stats_list", []).append(st)
                        self.progress.end(f"p50 {st['p50'] / 1e3:8.2f} us  p99 {st['p99'] / 1e3:8.2f} us")
                    self.guarded("S1", f"C {mode} ping-pong {tag}", floor)
            if self.floors.core_bin is not None:
                for variant, spin in (("parked", 0), ("spin", int(pingpong.SPIN_S * 1e9))):
                    if spin and self.usable_cpus < 2:
                        continue

                    def core(variant: str = variant, spin: int = spin) -> None:
                        n = p["core_pp_iters"] if not spin else p["core_spin_iters"]
                        r = self.floors.core_pingpong(n, max(100, n // 10), spin, 64)
                        st = r["rtt_ns"]
                        merge(("C core", variant, 64), _synthetic(st),
                              {"floor": True, "check_ok": bool(r["child_ok"])})
                        acc[("C core", variant, 64)].setdefault("stats_list", []).append(st)
                        self.progress.end(f"p50 {st['p50'] / 1e3:8.2f} us  p99 {st['p99'] / 1e3:8.2f} us")
                    self.guarded("S1", f"C core ping-pong {variant} 64 B {tag}", core)
            for impl, variant, key, fn, kw in pingpong.transports(self.usable_cpus):
                if not self.peer_ok(key):
                    self.progress.start(f"S1 {impl} {variant}")
                    self.progress.end(f"skipped: {self.peers[_peer_base(key)]['reason']}")
                    continue

                def one(impl: str = impl, variant: str = variant, fn: Any = fn, kw: dict = kw) -> None:
                    res = fn(S1_SIZES, iters, warm, p["timeout"], **kw)
                    parts = []
                    for size, r in zip(S1_SIZES, res, strict=False):
                        merge((impl, variant, size), r["intervals"], r)
                        st = sample_stats(r["intervals"])
                        parts.append(f"{size} B p50 {st['p50'] / 1e3:7.2f} us")
                        if not r["check_ok"]:
                            parts.append("ECHO MISMATCH")
                    self.progress.end(", ".join(parts))
                self.guarded("S1", f"{impl} {variant} {tag}", one)

        import numpy as np

        for (impl, variant, size), a in acc.items():
            if a.get("stats_list"):
                # C floors report their own statistics: keep the round with the median p50
                sts = sorted(a["stats_list"], key=lambda s: s["p50"])
                st = dict(sts[len(sts) // 2])
            else:
                st = sample_stats(np.concatenate(a["intervals"]))
            self.add(scenario="S1", impl=impl, variant=variant, size=size, metric="rtt_ns", unit="ns",
                     value=st["p50"], stats=st, floor=a["floor"],
                     rounds_p50=a["p50s"],
                     measuring=_avg_usage(a["measuring"]), peer=_avg_usage(a["peer"]),
                     check_ok=a["ok"])

    # ------------------------------------------------------------------
    def run_s2(self) -> None:
        p = self.p
        budget = p["s2_budget_s"] * 1e9

        def make_plan(zero_copy: bool) -> Callable[[str, int, list[dict]], tuple[int, int]]:
            # Message counts from the previous step of the same transport,
            # scaled to the new size: linearly where bytes are copied or pages
            # touched, weakly (size ** 0.25) for the header variant of a
            # zero-copy transport.  Warm-up cycles every buffer of a zero-copy
            # transport (its pages are then mapped in both processes);
            # copying transports allocate per message anyway.
            def plan(variant: str, size: int, prev: list[dict]) -> tuple[int, int]:
                est = None
                same = [r for r in prev if r["variant"] == variant]
                if same:
                    r = same[-1]
                    expo = 0.25 if (zero_copy and variant.startswith("header")) else 1.0
                    est = r["per_msg_ns"] * max(1.0, size / r["size"]) ** expo
                elif prev:
                    # a new variant: what the last step cost, plus reading or
                    # touching the message at a pessimistic 1 byte/ns
                    est = prev[-1]["per_msg_ns"]
                    if variant.startswith(("touch", "sum")) or not zero_copy:
                        est += size / (1.0 if variant.startswith("sum") else 64.0)
                n = p["s2_first"] if est is None else int(budget / max(est, 1.0))
                n = max(p["s2_min"], min(p["s2_max"], n))
                floor_warm = 3 * stream.SLOTS if zero_copy else 2
                warm = max(floor_warm, min(n // 10, 200))
                return n, warm
            return plan

        variants = ["header", "touch"]
        for kind in stream.STREAMS:
            key = "SharedArray" if kind.startswith("SharedArray") else kind
            if kind not in ("zdshm",) and not self.peer_ok(key):
                self.progress.start(f"S2 {kind}")
                self.progress.end(f"skipped: {self.peers[key]['reason']}")
                continue
            steps = [(v, s) for v in variants for s in S2_SIZES]
            if stream.STREAMS[kind].zero_copy:
                # the header figures of the zero-copy transports are cheap and
                # carry the 64 MiB / 1 MiB target: interleave extra rounds of
                # 1 MiB and 64 MiB, the median of each is reported
                steps += [("header", s) for _ in range(p["s2_rounds"] - 1) for s in S2_SIZES[1:]]
            if kind == "zdshm" and self.usable_cpus >= 2:
                steps += [("header-spin", s) for s in S2_SIZES]
            if kind == "zdshm" and p["s2_sum"]:
                steps += [("sum", 1 << 20), ("sum", 64 << 20)]
            try:
                res = stream.stream_run(kind, steps, make_plan(stream.STREAMS[kind].zero_copy),
                                        p["timeout"] * 3, self.progress)
            except KeyboardInterrupt:
                raise
            except BaseException as e:  # noqa: BLE001
                self.fail("S2", kind, e)
                continue
            groups: dict[tuple[str, int], list[dict]] = {}
            for r in res:
                groups.setdefault((r["variant"], r["size"]), []).append(r)
            for (variant, size), rs in groups.items():
                by_time = sorted(rs, key=lambda r: r["per_msg_ns"])
                r = by_time[len(by_time) // 2]   # the median round (the only one, mostly)
                self.add(scenario="S2", impl=kind, variant=variant, size=size,
                         metric="per_msg_ns", unit="ns", value=r["per_msg_ns"],
                         count=r["count"], warm=r["warm"], gbps=size / r["per_msg_ns"],
                         msgs_per_s=1e9 / r["per_msg_ns"], errors=sum(x["errors"] for x in rs),
                         rounds_per_msg_ns=[x["per_msg_ns"] for x in rs],
                         measuring=r["measuring"], peer=r["peer"],
                         faults_all_rounds={"measuring": sum(x["measuring"]["minflt_total"] for x in rs),
                                            "peer": sum(x["peer"]["minflt_total"] for x in rs)})

    # ------------------------------------------------------------------
    def run_s3(self) -> None:
        p = self.p
        for readers in range(1, self.cpu_count + 1):
            for kind in stream.FANOUT:
                if kind != "zdshm" and not self.peer_ok(kind):
                    continue

                def one(kind: str = kind, readers: int = readers) -> None:
                    n = p["s3_count"]
                    if kind == "mp.Queue":
                        n = max(20, n // 5)
                    r = stream.fanout_run(kind, readers, S3_SIZE, n, p["s3_warm"], p["timeout"])
                    self.add(scenario="S3", impl=kind, variant="header", size=S3_SIZE,
                             readers=readers, metric="per_msg_ns", unit="ns", value=r["per_msg_ns"],
                             count=r["count"], errors=r["errors"], measuring=r["measuring"],
                             readers_usage=r["readers_usage"],
                             gbps_delivered=readers * S3_SIZE / r["per_msg_ns"])
                    self.progress.end(f"{r['per_msg_ns'] / 1e3:10.1f} us/msg"
                                      + (f"  ERRORS {r['errors']}" if r["errors"] else ""))
                self.guarded("S3", f"{kind} 1 MiB -> {readers} reader(s)", one)

    # ------------------------------------------------------------------
    def run_s4(self) -> None:
        # One process, CPU-bound: like timeit, the headline is the best of
        # several rounds (the others measured the neighbours on this shared
        # machine as much as zdshm); every round's figure is kept.
        p = self.p
        rounds = p["s4_repeat"]
        for backend in ("memory", "posix"):
            for variant in ("mv", "bare", "publish", "lowlevel", "numpy"):
                def one(backend: str = backend, variant: str = variant) -> None:
                    rs = []
                    for k in range(rounds):
                        if k:
                            time.sleep(0.05)
                        rs.append(local.api_pairs(backend, variant, p["s4_rounds"] // local.BATCH))
                    for m, ns in (("loan_commit_per_s", "loan_commit_ns"),
                                  ("take_release_per_s", "take_release_ns")):
                        best = max(rs, key=lambda r: r[m])
                        self.add(scenario="S4", impl="zdshm", variant=variant, backend=backend,
                                 size=local.MSG, metric=m, unit="pairs/s", value=best[m],
                                 ns_per_pair=best[ns], ns_per_pair_mean=best[ns + "_mean"],
                                 rounds_per_s=[r[m] for r in rs],
                                 median_per_s=median([r[m] for r in rs]),
                                 pairs=best["pairs"], slots=local.BATCH,
                                 measuring=max((r["usage"] for r in rs),
                                               key=lambda u: u["minflt_per_msg"]))
                    lc = max(r["loan_commit_per_s"] for r in rs)
                    tr = max(r["take_release_per_s"] for r in rs)
                    self.progress.end(f"loan+commit {lc / 1e6:5.2f} M/s, take+release {tr / 1e6:5.2f} M/s"
                                      f" (best of {rounds})")
                self.guarded("S4", f"{backend} {variant}", one)

        def base() -> None:
            rs = [local.python_baselines(max(100_000, p["s4_rounds"] * 5)) for _ in range(rounds)]
            # the round with the cheapest empty loop was the least disturbed
            r = min(rs, key=lambda r: r["empty_loop_iteration"])
            for k, v in r.items():
                self.add(scenario="S4", impl="python", variant=k, size=0, metric="ns_per_op",
                         unit="ns", value=max(v, 0.0))
            self.progress.end(", ".join(f"{k} {max(v, 0):.0f} ns" for k, v in r.items()))
        self.guarded("S4", "python baselines", base)

    # ------------------------------------------------------------------
    def run_s5(self) -> None:
        p = self.p
        for kind in ("zdshm", "shared_memory", "SharedArray", "iceoryx2"):
            if kind not in ("zdshm", "shared_memory") and not self.peer_ok(kind):
                continue

            def one(kind: str = kind) -> None:
                r = local.setup_run(kind, p["s5_rounds"], p["timeout"])
                vals = {k: v for k, v in r.items() if k.endswith("_ns")}
                self.add(scenario="S5", impl=kind, variant="posix" if kind == "zdshm" else "",
                         size=r["size"], metric="first_message_ns", unit="ns",
                         value=r["first_message_ns"], values=vals, rounds=r["rounds"],
                         slot_count=r["slot_count"])
                self.progress.end(f"create {vals['create_ns'] / 1e3:.0f} us, attach "
                                  f"{(vals['attach_ns'] + vals['register_ns']) / 1e3:.0f} us, first msg "
                                  f"{vals['first_message_ns'] / 1e3:.0f} us, next "
                                  f"{vals['second_message_ns'] / 1e3:.0f} us")
            self.guarded("S5", kind, one)

    # ------------------------------------------------------------------
    def run_aio(self) -> None:
        """asyncio round trips beside the parked one, interleaved rounds;
        then the commit cost with and without a readiness descriptor."""
        import numpy as np

        p = self.p
        iters, warm = p["aio_iters"], p["aio_warm"]
        kinds = (("zdshm", "parked", lambda: pingpong.zdshm_pingpong([64], iters, warm, p["timeout"])),
                 ("zdshm", "asyncio", lambda: aio_mod.zdshm_aio_pingpong([64], iters, warm, p["timeout"])),
                 ("socket", "asyncio", lambda: aio_mod.socket_aio_pingpong([64], iters, warm, p["timeout"])))
        if aio_mod.have_uvloop():
            kinds += (("zdshm", "uvloop",
                       lambda: aio_mod.zdshm_aio_pingpong([64], iters, warm, p["timeout"], loop="uvloop")),)
        acc: dict[tuple, dict] = {}
        for rnd in range(p["aio_rounds"]):
            for impl, variant, fn in kinds:
                def one(impl: str = impl, variant: str = variant, fn: Any = fn) -> None:
                    r = fn()[0]
                    a = acc.setdefault((impl, variant), {"iv": [], "p50s": [], "ok": True, "m": [], "peer": []})
                    a["iv"].append(np.asarray(r["intervals"], dtype=np.float64))
                    a["p50s"].append(float(np.median(r["intervals"])))
                    a["ok"] = a["ok"] and r["check_ok"]
                    a["m"].append(r.get("measuring"))
                    a["peer"].append(r.get("peer"))
                    self.progress.end(f"p50 {a['p50s'][-1] / 1e3:7.2f} us")
                self.guarded("aio", f"{impl} {variant} round trip 64 B (round {rnd + 1})", one)
        for (impl, variant), a in acc.items():
            st = sample_stats(np.concatenate(a["iv"]))
            self.add(scenario="aio", impl=impl, variant=variant, size=64, metric="rtt_ns", unit="ns",
                     value=st["p50"], stats=st, rounds_p50=a["p50s"], check_ok=a["ok"],
                     measuring=_avg_usage([m for m in a["m"] if m]),
                     peer=_avg_usage([m for m in a["peer"] if m]))

        def commits() -> None:
            r = aio_mod.commit_cost(p["aio_rounds"], p["aio_batch"])
            for variant, vals in r.items():
                self.add(scenario="aio", impl="zdshm", variant=f"commit-{variant}", size=64,
                         metric="ns_per_op", unit="ns", value=median(vals), rounds_p50=vals)
            self.progress.end(f"plain {median(r['plain']):.0f} ns, fd no waiter {median(r['fd']):.0f} ns")
        self.guarded("aio", "publish + take + release, with and without a descriptor", commits)

    # ------------------------------------------------------------------
    def run_classes(self) -> None:
        """A mixed-size stream: a classed segment, a one-class segment sized
        for the largest message, and mp.Queue (benchmarks/classes.py)."""
        p = self.p
        try:
            res = classes_mod.classes_run(p["cl_rounds"], p["cl_count"], p["cl_queue_count"],
                                          p["cl_warm"], p["timeout"], self.progress)
        except KeyboardInterrupt:
            raise
        except BaseException as e:  # noqa: BLE001
            self.fail("classes", "zdshm mixed-size stream", e)
            return
        for kind, rounds in res.items():
            if not rounds:
                continue
            r = classes_mod.summary(rounds)
            impl, variant = ("mp.Queue", "") if kind == "mp.Queue" else ("zdshm", kind)
            rec = self.add(scenario="classes", impl=impl, variant=variant,
                           size=max(classes_mod.FRAME), metric="msgs_per_s", unit="msgs/s",
                           value=r["msgs_per_s"], count=r["count"], warm=p["cl_warm"],
                           errors=r["errors"], rounds_msgs_per_s=r["rounds_msgs_per_s"],
                           median_msgs_per_s=r["median_msgs_per_s"],
                           cpu_ns_per_msg=r["cpu_ns_per_msg"],
                           rounds_cpu_ns_per_msg=r["rounds_cpu_ns_per_msg"],
                           measuring=r["measuring"], peer=r["peer"])
            if impl == "zdshm":
                rec.update(classes=[list(c) for c in classes_mod.LAYOUTS[kind]],
                           shm_resident_bytes=r["shm_resident_bytes"],
                           shm_total_bytes=r["shm_total_bytes"],
                           per_class_messages=r["per_class_messages"])


# --------------------------------------------------------------------------
def _peer_base(key: str) -> str:
    return "SharedArray" if key.startswith("SharedArray") else key


def _synthetic(st: dict) -> list[float]:
    return [st["p50"]]


def _avg_usage(us: list[dict]) -> dict | None:
    us = [u for u in us if u]
    if not us:
        return None
    keys = set().union(*us)
    out = {}
    for k in keys:
        vals = [u[k] for u in us if k in u and isinstance(u[k], (int, float)) and math.isfinite(u[k])]
        if vals:
            out[k] = sum(vals) / len(vals) if k.endswith("_per_msg") else median(vals)
    return out
