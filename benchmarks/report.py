"""Ratios, the performance targets, the printed table, Markdown and plots."""
from __future__ import annotations

import math
import os
from typing import Any

from .common import median
from .stream import _fmt_size

PEER_ORDER = ["mp.Queue", "mp.Pipe", "shared_memory+Pipe", "SharedArray+Pipe", "faster-fifo",
              "iceoryx2", "shared_memory+spin"]


def _find(records: list[dict], **kw: Any) -> dict | None:
    for r in records:
        if all(r.get(k) == v for k, v in kw.items()):
            return r
    return None


def _ok(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


# ==========================================================================
# ratios
# ==========================================================================
def add_ratios(records: list[dict]) -> None:
    """Each zdshm record gets ratios = {floor: {...}, peers: {peer: peer/zdshm}}.

    floor.value = zdshm / floor (1.0 = at the floor; for times, lower is better);
    peers[p] = p's time / zdshm's time (how many times faster zdshm is).
    For S4 (pairs/s) floor.value = core ns / Python ns per pair.
    """
    for r in records:
        if r.get("impl") != "zdshm":
            continue
        if not _ok(r.get("value")):
            # a zero (no futex call per message) has nothing to be divided by
            r["ratios"] = {"floor": None, "peers": {}}
            continue
        sc = r["scenario"]
        floor = None
        peers: dict[str, float] = {}
        if sc == "S1":
            spin = r["variant"] == "spin"
            f = _find(records, scenario="S1", impl="C", variant="cacheline" if spin else "futex")
            if f:
                floor = {"name": "C cache-line ping-pong" if spin else "C futex ping-pong",
                         "value": r["value"] / f["value"]}
            core = _find(records, scenario="S1", impl="C core", variant="spin" if spin else "parked",
                         size=64)
            if core and r["size"] == 64:
                r["vs_core"] = r["value"] / core["value"]
            for o in records:
                if o["scenario"] == "S1" and o["size"] == r["size"] and o["impl"] not in ("zdshm", "C", "C core") \
                        and _ok(o.get("value")):
                    peers[f"{o['impl']} ({o['variant']})"] = o["value"] / r["value"]
        elif sc == "S2":
            if r["variant"] == "touch":
                f = _find(records, scenario="floor", variant="pagetouch", size=r["size"])
                fname = "C page touch (write + read one byte per page)"
            else:
                f = _find(records, scenario="floor", variant="memcpy", size=r["size"])
                fname = "C memcpy of the message"
            if f:
                floor = {"name": fname, "value": r["value"] / f["value"]}
            for o in records:
                if o["scenario"] == "S2" and o["impl"] != "zdshm" and o["size"] == r["size"] \
                        and o["variant"] == r["variant"] and _ok(o.get("value")):
                    peers[o["impl"]] = o["value"] / r["value"]
        elif sc == "S3":
            f = _find(records, scenario="floor", variant="memcpy", size=r["size"])
            if f:
                floor = {"name": "C memcpy of the message (one copy)", "value": r["value"] / f["value"]}
            for o in records:
                if o["scenario"] == "S3" and o["impl"] != "zdshm" and o["readers"] == r["readers"] \
                        and _ok(o.get("value")):
                    peers[o["impl"]] = o["value"] / r["value"]
        elif sc == "S4":
            m = "loan_commit_ns" if r["metric"].startswith("loan") else "take_release_ns"
            f = _find(records, scenario="floor", impl="C core", metric=m, backend=r["backend"])
            if f and _ok(r.get("ns_per_pair")):
                floor = {"name": f"C core {m[:-3].replace('_', '+')} ({r['backend']}), same slot count",
                         "value": r["ns_per_pair"] / f["value"]}
        elif sc == "classes":
            # a rate: peers[p] = zdshm msgs/s / p's msgs/s (how many times faster zdshm is)
            for o in records:
                if o["scenario"] == "classes" and o["impl"] != "zdshm" and _ok(o.get("value")):
                    peers[o["impl"]] = r["value"] / o["value"]
        elif sc == "S5":
            for o in records:
                if o["scenario"] == "S5" and o["impl"] != "zdshm" and _ok(o.get("value")):
                    peers[o["impl"]] = o["value"] / r["value"]
        r["ratios"] = {"floor": floor, "peers": peers}


# ==========================================================================
# the performance targets
# ==========================================================================
def _target(tid: str, scenario: str, desc: str, op: str, threshold: float, measured: float | None,
            unit: str, detail: str, note: str = "") -> dict:
    met = None
    if measured is not None and math.isfinite(measured):
        met = {"<=": measured <= threshold, ">=": measured >= threshold,
               ">": measured > threshold, "==": measured == threshold}[op]
    return {"id": tid, "scenario": scenario, "description": desc,
            "target": f"{op} {threshold:g}{'' if unit == 'x' else ' ' + unit}".replace("<=", "≤")
            .replace(">=", "≥"),
            "op": op, "threshold": threshold, "measured": measured, "unit": unit, "met": met,
            "detail": detail, "note": note}


def _us(ns: float) -> str:
    return f"{ns / 1e3:.2f} µs" if ns < 1e6 else f"{ns / 1e6:.2f} ms"


def _gbps_detail(row: dict, num: dict | None, den: dict | None) -> None:
    """The detail of a throughput ratio, in GB/s."""
    if num and den and _ok(num.get("value")) and _ok(den.get("value")):
        row["detail"] = (f"bridge {num['value']:.2f} GB/s / own {den['value']:.2f} GB/s"
                         + (row["detail"][row["detail"].find(";"):]
                            if ";" in row["detail"] else ""))


def targets(records: list[dict]) -> list[dict]:
    out: list[dict] = []

    def s1(impl: str, variant: str, size: int = 64) -> dict | None:
        return _find(records, scenario="S1", impl=impl, variant=variant, size=size)

    zp, zs = s1("zdshm", "parked"), s1("zdshm", "spin")
    fx, cl = _find(records, scenario="S1", impl="C", variant="futex"), \
        _find(records, scenario="S1", impl="C", variant="cacheline")

    def ratio_row(tid: str, sc: str, desc: str, op: str, thr: float, num: dict | None,
                  den: dict | None, numname: str, denname: str, unit: str = "x") -> None:
        if num and den and _ok(num.get("value")) and _ok(den.get("value")):
            m = num["value"] / den["value"]
            detail = f"{numname} {_us(num['value'])} / {denname} {_us(den['value'])}"
            rn = num.get("rounds_p50") or num.get("rounds_per_msg_ns") or []
            rd = den.get("rounds_p50") or den.get("rounds_per_msg_ns") or []
            if len(rn) > 1 and len(rn) == len(rd) and all(_ok(x) for x in rn + rd):
                # interleaved rounds: the median of the per-round ratios is
                # robust against the machine's load changing between rounds
                per = sorted(a / b for a, b in zip(rn, rd, strict=False))
                pooled = m
                m = per[len(per) // 2] if len(per) % 2 else 0.5 * (per[len(per) // 2 - 1] + per[len(per) // 2])
                detail += (f"; median of {len(per)} per-round ratios "
                           f"({', '.join(f'{x:.2f}' for x in per)}), pooled {pooled:.2f}")
        else:
            m = None
            missing = numname if not (num and _ok(num.get("value"))) else denname
            detail = f"not measured: {missing} missing"
        out.append(_target(tid, sc, desc, op, thr, m, unit, detail))

    ratio_row("S1-parked-vs-futex", "S1", "ping-pong 64 B, readers parked (futex): round trip vs C futex "
              "ping-pong", "<=", 1.3, zp, fx, "zdshm p50", "C futex p50")
    ratio_row("S1-spin-vs-cacheline", "S1", "ping-pong 64 B, bounded spin: round trip vs C cache-line "
              "ping-pong", "<=", 10, zs, cl, "zdshm p50", "C cache-line p50")
    q, pi = s1("mp.Queue", "parked"), s1("mp.Pipe", "parked")
    ratio_row("S1-parked-vs-queue", "S1", "64 B parked: multiprocessing.Queue / zdshm", ">=", 4, q, zp,
              "Queue p50", "zdshm p50")
    ratio_row("S1-parked-vs-pipe", "S1", "64 B parked: multiprocessing.Pipe / zdshm", ">=", 2, pi, zp,
              "Pipe p50", "zdshm p50")
    ratio_row("S1-spin-vs-queue", "S1", "64 B spinning: multiprocessing.Queue / zdshm", ">=", 40, q, zs,
              "Queue p50", "zdshm spin p50")
    ratio_row("S1-spin-vs-pipe", "S1", "64 B spinning: multiprocessing.Pipe / zdshm", ">=", 20, pi, zs,
              "Pipe p50", "zdshm spin p50")
    ratio_row("S1-parked-vs-iceoryx2", "S1", "vs iceoryx2 (Python), same scenario, parked: iceoryx2 / zdshm",
              ">", 1, s1("iceoryx2", "parked"), zp, "iceoryx2 p50", "zdshm p50")
    ratio_row("S1-spin-vs-iceoryx2", "S1", "vs iceoryx2 (Python), same scenario, spinning: iceoryx2 / zdshm",
              ">", 1, s1("iceoryx2", "spin"), zs, "iceoryx2 p50", "zdshm spin p50")

    def s2(impl: str, variant: str, size: int) -> dict | None:
        return _find(records, scenario="S2", impl=impl, variant=variant, size=size)

    ratio_row("S2-64M-vs-1M", "S2", "numpy 64 MiB vs 1 MiB, transport only (header): per-message time ratio",
              "<=", 1.1, s2("zdshm", "header", 64 << 20), s2("zdshm", "header", 1 << 20),
              "64 MiB", "1 MiB")
    ratio_row("S2-64M-vs-queue", "S2", "numpy 64 MiB, transport only (header): multiprocessing.Queue / zdshm",
              ">=", 1000, s2("mp.Queue", "header", 64 << 20), s2("zdshm", "header", 64 << 20),
              "Queue", "zdshm")
    # the same two with one byte per page touched on both sides (informational rows)
    ratio_row("S2-64M-vs-1M-touch", "S2", "(touch one byte per page) 64 MiB vs 1 MiB per-message ratio",
              "<=", 1.1, s2("zdshm", "touch", 64 << 20), s2("zdshm", "touch", 1 << 20), "64 MiB", "1 MiB")
    out[-1]["note"] = "informational: per-page work grows 64x with the size (see the C page-touch floor)"
    ratio_row("S2-64M-vs-queue-touch", "S2", "(touch one byte per page) 64 MiB: multiprocessing.Queue / zdshm",
              ">=", 1000, s2("mp.Queue", "touch", 64 << 20), s2("zdshm", "touch", 64 << 20), "Queue", "zdshm")
    out[-1]["note"] = "informational"

    for backend in ("memory", "posix"):
        for m, label in (("loan_commit_per_s", "loan + commit"), ("take_release_per_s", "take + release")):
            r = _find(records, scenario="S4", impl="zdshm", variant="mv", backend=backend, metric=m)
            val = r["value"] if r else None
            detail = "not measured"
            if r:
                detail = f"{r['ns_per_pair']:.0f} ns per pair, {r['slots']} slots of 64 B"
                if r.get("rounds_per_s") and len(r["rounds_per_s"]) > 1:
                    detail += (f"; best of {len(r['rounds_per_s'])} rounds (median "
                               f"{r['median_per_s'] / 1e6:.2f} M/s)")
            # 2 M pairs/s each on both backends, raised to 3 M on the memory backend
            out.append(_target(f"S4-{backend}-{m}", "S4", f"{label} through memoryviews, one process "
                               f"({backend})", ">=", 3e6 if backend == "memory" else 2e6, val,
                               "pairs/s", detail))

    # The numpy conveniences against the bare calls, memory backend, same run:
    # with w.loan_array((64,), np.uint8) as a: a[0] = 7  /  w.loan().commit(1);
    # np.asarray(r.take()), a[0], release  /  r.take().release()
    numpy_part = {"S4-loan_array-vs-bare": ("numpy_ndarray_over_a_buffer", "numpy's ndarray over a buffer"),
                  "S4-asarray-vs-bare": ("numpy_asarray_of_a_memoryview", "numpy's asarray of a memoryview")}
    for tid, m, label, thr in (
            ("S4-loan_array-vs-bare", "loan_commit", "loan_array + commit vs a bare loan + commit", 3),
            ("S4-asarray-vs-bare", "take_release", "np.asarray(take()) + release vs a bare take + release",
             2)):
        num = _find(records, scenario="S4", impl="zdshm", variant="numpy", backend="memory",
                    metric=m + "_per_s")
        den = _find(records, scenario="S4", impl="zdshm", variant="bare", backend="memory",
                    metric=m + "_per_s")
        val = None
        detail = "not measured: " + ("numpy" if not num else "bare") + " missing"
        if num and den and _ok(num.get("ns_per_pair")) and _ok(den.get("ns_per_pair")):
            val = num["ns_per_pair"] / den["ns_per_pair"]
            detail = (f"{num['ns_per_pair']:.0f} ns / {den['ns_per_pair']:.0f} ns per pair, "
                      "one process (memory), best of each's rounds")
            # numpy's part alone, with no zdshm object, against the same bare pair
            block = _find(records, scenario="S4", impl="python", variant=numpy_part[tid][0])
            if block and _ok(block.get("value")):
                detail += (f"; {numpy_part[tid][1]} alone {block['value']:.0f} ns = "
                           f"{block['value'] / den['ns_per_pair']:.2f}x the bare pair")
        out.append(_target(tid, "S4", label, "<=", thr, val, "x", detail))

    _scaling_targets(records, out, ratio_row)

    def aio(impl: str, variant: str) -> dict | None:
        return _find(records, scenario="aio", impl=impl, variant=variant)

    ratio_row("aio-rtt-vs-parked", "aio", "asyncio round trip 64 B (await atake in both processes) vs the "
              "blocking parked round trip", "<=", 1.5, aio("zdshm", "asyncio"), aio("zdshm", "parked"),
              "asyncio p50", "parked p50")
    ratio_row("aio-uvloop-vs-parked", "aio", "the same on uvloop vs the blocking parked round trip",
              "<=", 1.5, aio("zdshm", "uvloop"), aio("zdshm", "parked"), "uvloop p50", "parked p50")
    out[-1]["note"] = "informational"
    ratio_row("aio-vs-socket", "aio", "asyncio round trip 64 B: socketpair sock_recv / zdshm atake",
              ">=", 1, aio("socket", "asyncio"), aio("zdshm", "asyncio"), "socket p50", "zdshm p50")
    out[-1]["note"] = "informational"
    ratio_row("aio-commit-no-waiter", "aio", "publish + take + release with a readiness descriptor and no "
              "waiter vs without one", "<=", 1.05, aio("zdshm", "commit-fd"), aio("zdshm", "commit-plain"),
              "with descriptor", "plain")

    # bridges (optional scenario): only when it ran
    if any(r["scenario"] == "bridge" for r in records):
        def br(impl: str, variant: str) -> dict | None:
            return _find(records, scenario="bridge", impl=impl, variant=variant, metric="gbps")

        ratio_row("bridge-zenoh-throughput", "bridge", "1 MiB frames over veth: zdshm -> zenoh -> "
                  "zdshm throughput / zenoh's own Python pub/sub", ">=", 0.8,
                  br("zenoh", "zdshm bridge"), br("zenoh", "own pub/sub"), "bridge GB/s", "zenoh GB/s")
        _gbps_detail(out[-1], br("zenoh", "zdshm bridge"), br("zenoh", "own pub/sub"))
        ratio_row("bridge-iceoryx2-throughput", "bridge", "1 MiB frames: zdshm -> iceoryx2 -> zdshm "
                  "throughput / iceoryx2's own publisher -> subscriber", ">", 0,
                  br("iceoryx2", "zdshm bridge"), br("iceoryx2", "own pub/sub"), "bridge GB/s",
                  "iceoryx2 GB/s")
        _gbps_detail(out[-1], br("iceoryx2", "zdshm bridge"), br("iceoryx2", "own pub/sub"))
        out[-1]["note"] = "informational"

    _classes_targets(records, out)

    # steady state faults: every zdshm record measured after warm-up
    worst = None
    offenders = []
    for r in records:
        if r.get("impl") != "zdshm" or r["scenario"] not in ("S1", "S2", "S3", "S4"):
            continue
        for side in ("measuring", "peer"):
            u = dict(r.get(side) or {})
            allr = (r.get("faults_all_rounds") or {}).get(side)
            if allr is not None and allr > u.get("minflt_total", 0):
                # a round other than the reported (median) one faulted
                u["minflt_total"] = allr
                u["minflt_per_msg"] = allr / (r["count"] * len(r.get("rounds_per_msg_ns") or [1]))
            v = u.get("minflt_per_msg")
            if v is None:
                continue
            worst = v if worst is None else max(worst, v)
            if v > 0:
                where = f"{r['scenario']} {r['variant']} {_fmt_size(r['size'])}"
                if r.get("backend"):
                    where += f" {r['backend']}"
                if r.get("readers"):
                    where += f" N={r['readers']}"
                offenders.append(f"{where} ({side}: {v:.3g}/msg, {u.get('minflt_total', '?')} total)")
    detail = "max over every zdshm measurement, both processes" + \
        (("; nonzero: " + "; ".join(offenders[:6]) + (" ..." if len(offenders) > 6 else ""))
         if offenders else "; all zero")
    out.append(_target("steady-faults", "S1-S4", "steady state: minor page faults per message after warm-up",
                       "==", 0, worst, "faults/msg", detail))
    return out


def _classes_targets(records: list[dict], out: list[dict]) -> None:
    """Size classes: shared memory and message rate of a mixed-size stream,
    classed segment vs one class sized for the largest message."""
    cl = _find(records, scenario="classes", impl="zdshm", variant="classed")
    one = _find(records, scenario="classes", impl="zdshm", variant="one-class")
    queue = _find(records, scenario="classes", impl="mp.Queue")
    desc = "mixed-size stream: shared memory of a one-class segment sized for the largest message / classed"
    if cl and one and _ok(cl.get("shm_resident_bytes")) and _ok(one.get("shm_resident_bytes")):
        m = one["shm_resident_bytes"] / cl["shm_resident_bytes"]
        detail = (f"/dev/shm bytes {one['shm_resident_bytes'] / 2**20:.1f} MiB / "
                  f"{cl['shm_resident_bytes'] / 2**20:.1f} MiB (total size {one['shm_total_bytes'] / 2**20:.1f}"
                  f" / {cl['shm_total_bytes'] / 2**20:.1f} MiB)")
    else:
        m, detail = None, "not measured: no classes records"
    out.append(_target("classes-shm-vs-one-class", "classes", desc, ">=", 4, m, "x", detail))
    desc = "mixed-size stream: messages/s through the classed segment / the one-class segment"
    if cl and one and _ok(cl.get("value")) and _ok(one.get("value")):
        m = cl["value"] / one["value"]
        detail = f"{cl['value']:.0f} / {one['value']:.0f} msgs/s"
        rc, ro = cl.get("rounds_msgs_per_s") or [], one.get("rounds_msgs_per_s") or []
        if len(rc) > 1 and len(rc) == len(ro) and all(_ok(x) for x in rc + ro):
            # interleaved rounds: the median of the per-round ratios
            per = sorted(a / b for a, b in zip(rc, ro, strict=False))
            m = per[len(per) // 2] if len(per) % 2 else 0.5 * (per[len(per) // 2 - 1] + per[len(per) // 2])
            detail = (f"median of {len(per)} interleaved rounds' ratios ("
                      + ", ".join(f"{x:.2f}" for x in per) + f"); median rounds {detail}")
    else:
        m, detail = None, "not measured: no classes records"
    out.append(_target("classes-rate-vs-one-class", "classes", desc, ">=", 0.9, m, "x", detail))
    desc = "mixed-size stream: CPU per message (writer + reader), classed segment / one-class segment"
    cc, co = (cl or {}).get("rounds_cpu_ns_per_msg") or [], (one or {}).get("rounds_cpu_ns_per_msg") or []
    if cc and len(cc) == len(co) and all(_ok(x) for x in cc + co):
        per = sorted(a / b for a, b in zip(cc, co, strict=False))
        m = per[len(per) // 2] if len(per) % 2 else 0.5 * (per[len(per) // 2 - 1] + per[len(per) // 2])
        detail = (f"median of {len(per)} interleaved rounds' ratios ({', '.join(f'{x:.2f}' for x in per)}); "
                  f"medians {_us(median(cc))} / {_us(median(co))}")
    else:
        m, detail = None, "not measured: no classes records"
    out.append(_target("classes-cpu-vs-one-class", "classes", desc, "<=", 1.1, m, "x", detail,
                       "informational: the rate is sensitive to other processes on the CPUs, this is not"))
    desc = "mixed-size stream: messages/s through the classed segment / multiprocessing.Queue"
    if cl and queue and _ok(cl.get("value")) and _ok(queue.get("value")):
        m = cl["value"] / queue["value"]
        detail = f"{cl['value']:.0f} / {queue['value']:.0f} msgs/s ({queue['count']} queue messages per round)"
    else:
        m, detail = None, "not measured: mp.Queue unavailable or failed"
    out.append(_target("classes-rate-vs-queue", "classes", desc, ">=", 1, m, "x", detail,
                       "informational"))


def _scaling_targets(records: list[dict], out: list[dict], ratio_row: Any) -> None:
    """Slot scaling: cost at 1024 and 16384 slots vs 4 slots; futex calls per message."""
    cases = (("loan_commit", "steady", "loan_commit_ns", "loan + commit, one process"),
             ("take_release", "steady", "take_release_ns", "take + release, one process"),
             ("two_process", "two-process", "per_msg_ns", "per message, writer and reader in two processes"))
    for hi, thr in ((1024, 1.2), (16384, 1.5)):
        for short, variant, metric, label in cases:
            def f(slots: int, variant: str = variant, metric: str = metric) -> dict | None:
                return _find(records, scenario="scaling", impl="zdshm", variant=variant, backend="posix",
                             slots=slots, metric=metric)
            ratio_row(f"scaling-{hi}-vs-4-{short}", "scaling",
                      f"slot scaling: {label} (posix, steady), {hi} slots / 4 slots", "<=", thr,
                      f(hi), f(4), f"{hi} slots", "4 slots")

    def futex_row(tid: str, variant: str, desc: str, op: str, thr: float) -> None:
        rs = sorted((r for r in records if r["scenario"] == "scaling" and r["variant"] == variant
                     and _ok(r.get("count"))), key=lambda r: r["readers"])
        if rs:
            m = max(r["value"] for r in rs)
            detail = "worst over readers: " + ", ".join(
                f"N={r['readers']} {r['writer_wakes_per_msg']:.3g} wakes + {r['writer_waits_per_msg']:.3g} "
                f"waits" for r in rs) + f" per message ({rs[0]['count']} messages each)"
        else:
            m, detail = None, f"not measured: no '{variant}' records"
        out.append(_target(tid, "scaling", desc, op, thr, m, "calls/msg", detail))

    futex_row("scaling-futex-parked", "futex parked, paced",
              "writer-side futex calls per message, readers parked in take (paced writer)", "<=", 1)
    futex_row("scaling-futex-nobody-sleeps", "futex polling, paced",
              "writer-side futex calls per message, nobody sleeps (readers poll with try_take)", "==", 0)


# ==========================================================================
# printed table
# ==========================================================================
def _fmt_measured(t: dict) -> str:
    m = t["measured"]
    if m is None:
        return "—"
    if t["unit"] == "pairs/s":
        return f"{m / 1e6:.2f} M/s"
    if t["unit"] in ("faults/msg", "calls/msg"):
        return f"{m:.3g}"
    return f"{m:.3g}x"


def _met(t: dict) -> str:
    return {True: "met", False: "NOT met", None: "n/a"}[t["met"]] + (" (info)" if t.get("note", "").startswith(
        "informational") else "")


def table_text(result: dict) -> str:
    rows = [("target", "goal", "measured", "met", "detail")]
    for t in result["targets"]:
        rows.append((t["description"], t["target"], _fmt_measured(t), _met(t), t["detail"]))
    w = [min(max(len(r[i]) for r in rows), cap) for i, cap in enumerate((70, 12, 11, 14, 200))]
    lines = []
    for k, r in enumerate(rows):
        cells = [r[i][:w[i]].ljust(w[i]) for i in range(4)] + [r[4]]
        lines.append("  ".join(cells).rstrip())
        if k == 0:
            lines.append("  ".join("-" * x for x in w[:4]) + "  " + "-" * 20)
    return "\n".join(lines)


# ==========================================================================
# Markdown
# ==========================================================================
def _md_table(header: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def _fl(x: Any, fmt: str = "{:.3g}") -> str:
    return fmt.format(x) if isinstance(x, (int, float)) and math.isfinite(x) else "—"


def markdown(result: dict, plots: dict[str, str], md_dir: str, command: str) -> str:
    recs = result["records"]
    env = result["env"]
    rel = {k: os.path.relpath(v, md_dir) for k, v in plots.items()}
    L: list[str] = []
    L.append("# zdshm benchmarks\n")
    L.append("Generated by `" + command + "` — do not edit by hand; rerun the command.\n")
    L.append(f"Run: {result['started']}, {result['mode']} mode, {result['duration_s']:.0f} s. "
             f"Machine: {env['cpu_model']}, {env['cpu_count']} CPUs, Linux {env['kernel']}, "
             f"Python {env['python']}, git {env.get('git_revision') or 'unknown'}. "
             f"Load average at the end: {', '.join(f'{x:.2f}' for x in (env.get('loadavg') or []))}. "
             "The machine is shared and noisy: read the ratios (measured side by side in the same "
             "run), not the absolute times. "
             + ("Parent and child are pinned to different CPUs. " if result["parameters"].get("pinned")
                else "Processes are not pinned. "))
    pk = ", ".join(f"{k} {v}" for k, v in env["packages"].items() if v)
    L.append(f"Packages: {pk}.\n")
    unavailable = {k: v["reason"] for k, v in result["peers"].items() if not v["available"]}
    if unavailable:
        L.append("Unavailable peers: " + "; ".join(f"{k} ({v})" for k, v in unavailable.items()) + ".\n")

    L.append("## Performance targets\n")
    L.append(_md_table(["scenario", "target", "measured", "met", "detail"],
                       [[t["description"], t["target"], _fmt_measured(t), _met(t), t["detail"]]
                        for t in result["targets"]]))
    L.append("")

    # ---- S1
    L.append("## S1 — ping-pong round trip between two processes\n")
    L.append("One segment (or channel) per direction, message copied in by the sender, echoed by the "
             "child. Round-trip times in µs; CPU time per round trip in µs (parent + child); "
             "minor faults per message in the measuring process after warm-up.\n")
    if "s1" in rel:
        L.append(f"![S1]({rel['s1']})\n")
    rows = []
    s1 = [r for r in recs if r["scenario"] == "S1"]
    for r in sorted(s1, key=lambda r: (r["size"], r["value"])):
        st = r["stats"]
        cpu = sum((r.get(k) or {}).get("cpu_ns_per_msg", 0) or 0 for k in ("measuring", "peer"))
        ratio = ""
        if r["impl"] == "zdshm" and r.get("ratios", {}).get("floor"):
            ratio = f"{r['ratios']['floor']['value']:.2f}x {r['ratios']['floor']['name']}"
        rows.append([f"{r['impl']}", r["variant"], _fmt_size(r["size"]) if r["impl"] != "C" else "4 B",
                     _fl(st["p50"] / 1e3), _fl(st["p99"] / 1e3), _fl(st["p999"] / 1e3),
                     _fl(cpu / 1e3) if cpu else "—",
                     _fl((r.get("measuring") or {}).get("minflt_per_msg")), ratio])
    L.append(_md_table(["impl", "variant", "size", "p50 µs", "p99 µs", "p99.9 µs", "CPU µs/rt",
                        "faults/msg", "zdshm vs floor"], rows))
    L.append("")
    L.append(_s1_breakdown(recs))
    L.append(_speedups(recs, "S1"))

    # ---- S2
    L.append("## S2 — numpy throughput, 1 writer → 1 reader\n")
    L.append("Per-message time (µs) with the writer in a child process and the reader (measuring) in the "
             "parent, 4 messages of buffering everywhere. *header*: the writer writes the first and last "
             "element, the reader checks them (transport only). *touch*: one byte written per 4 KiB page, "
             "one byte per page read back (`a[::4096].sum()`). *sum*: the reader runs `np.sum` on the "
             "whole array.\n")
    if "s2" in rel:
        L.append(f"![S2]({rel['s2']})\n")
    s2 = [r for r in recs if r["scenario"] == "S2"]
    rows = []
    for r in sorted(s2, key=lambda r: (r["variant"], r["size"], r["value"])):
        rows.append([r["impl"], r["variant"], _fmt_size(r["size"]), _fl(r["value"] / 1e3, "{:.4g}"),
                     _fl(r.get("gbps"), "{:.3g}"), str(r.get("count")),
                     _fl((r.get("measuring") or {}).get("minflt_per_msg")),
                     _fl((r.get("peer") or {}).get("minflt_per_msg")),
                     _fl((r.get("measuring") or {}).get("cpu_ns_per_msg", float("nan")) / 1e3),
                     str(r.get("errors", 0))])
    L.append(_md_table(["impl", "variant", "size", "µs/msg", "GB/s", "msgs", "faults/msg reader",
                        "faults/msg writer", "reader CPU µs/msg", "errors"], rows))
    L.append("")
    fl = [r for r in recs if r["scenario"] == "floor" and r["variant"] in ("memcpy", "pagetouch")]
    if fl:
        L.append("C floors: " + "; ".join(
            f"{r['variant']} {_fmt_size(r['size'])} {_fl(r['value'] / 1e3, '{:.4g}')} µs"
            for r in sorted(fl, key=lambda r: (r['variant'], r['size']))) + ".\n")
    L.append(_speedups(recs, "S2"))

    # ---- S3
    L.append("## S3 — fan-out of 1 MiB arrays to N readers\n")
    L.append(f"N from 1 to os.cpu_count() = {env['cpu_count']}. Writer in the parent, readers in child "
             "processes (not pinned: N + 1 processes share the CPUs). Per-message time = time until every "
             "reader has checked every message / messages.\n")
    if "s3" in rel:
        L.append(f"![S3]({rel['s3']})\n")
    rows = []
    for r in sorted([r for r in recs if r["scenario"] == "S3"], key=lambda r: (r["readers"], r["value"])):
        rows.append([r["impl"], str(r["readers"]), _fl(r["value"] / 1e3, "{:.4g}"),
                     _fl(r.get("gbps_delivered"), "{:.3g}"),
                     _fl((r.get("measuring") or {}).get("minflt_per_msg")), str(r.get("errors", 0))])
    L.append(_md_table(["impl", "readers", "µs/msg", "GB/s delivered", "writer faults/msg", "errors"], rows))
    L.append("")
    L.append(_speedups(recs, "S3"))

    # ---- S4 / S6
    L.append("## S4 / S6 — Python API cost in one process, memory and posix backends\n")
    L.append("Pairs per second (best of several rounds, like timeit: one CPU-bound process on a shared "
             "machine), in batches of 16 loans then 16 takes on a segment of 16 slots of 64 B "
             "with one registered reader. *mv*: through memoryviews (the target); *bare*: "
             "`w.loan().commit(1)` / `r.take().release()`; *publish*: `w.publish(64 B)` / "
             "`r.try_take().release()`; *lowlevel*: `seg.reserve(mask).commit(1)` / "
             "`seg.read(seg.next_unread(i))` + `mark_read` + `release`; *numpy*: "
             "`with w.loan_array((64,), np.uint8) as a: a[0] = 7` / `np.asarray(r.take())`, read, release.\n")
    if "s4" in rel:
        L.append(f"![S4]({rel['s4']})\n")
    rows = []
    s4 = [r for r in recs if r["scenario"] == "S4" and r["impl"] == "zdshm"]
    for variant in ("mv", "bare", "publish", "lowlevel", "numpy"):
        for backend in ("memory", "posix"):
            lc = _find(s4, variant=variant, backend=backend, metric="loan_commit_per_s")
            tr = _find(s4, variant=variant, backend=backend, metric="take_release_per_s")
            if not lc or not tr:
                continue
            rows.append([variant, backend, _fl(lc["value"] / 1e6), _fl(lc["ns_per_pair"], "{:.0f}"),
                         _fl(tr["value"] / 1e6), _fl(tr["ns_per_pair"], "{:.0f}"),
                         _fl((lc.get("measuring") or {}).get("minflt_per_msg"))])
    L.append(_md_table(["variant", "backend", "loan+commit M/s", "ns", "take+release M/s", "ns",
                        "faults/op"], rows))
    L.append("")
    s6 = []
    for variant in ("mv", "bare", "publish", "lowlevel", "numpy"):
        for m in ("loan_commit_per_s", "take_release_per_s"):
            a = _find(s4, variant=variant, backend="memory", metric=m)
            b = _find(s4, variant=variant, backend="posix", metric=m)
            if a and b:
                s6.append(f"{variant} {m.split('_per')[0].replace('_', '+')} {a['value'] / b['value']:.2f}")
    if s6:
        L.append("S6, memory / posix throughput (1.00 = same): " + ", ".join(s6) + ".\n")
    L.append(_breakdown(recs))

    # ---- S5
    L.append("## S5 — setup and teardown\n")
    L.append("Medians over rounds; 8 slots of 1 MiB (the peers: a region of the same size). Attach is "
             "measured in the child process; first and next message are one-way latencies from the "
             "writer's call to the reader's return (the first one includes first-touch page faults).\n")
    if "s5" in rel:
        L.append(f"![S5]({rel['s5']})\n")
    rows = []
    for r in [r for r in recs if r["scenario"] == "S5"]:
        v = r["values"]
        rows.append([r["impl"], _fl(v["create_ns"] / 1e3), _fl((v["attach_ns"] + v["register_ns"]) / 1e3),
                     _fl(v["first_message_ns"] / 1e3), _fl(v["second_message_ns"] / 1e3),
                     _fl(v["teardown_attacher_ns"] / 1e3), _fl(v["teardown_creator_ns"] / 1e3)])
    L.append(_md_table(["impl", "create µs", "attach µs", "first msg µs", "next msg µs",
                        "teardown (attacher) µs", "teardown (creator) µs"], rows))
    L.append("")

    L.append(_scaling_md(recs, rel))
    L.append(_classes_md(recs, rel))

    if result["errors"]:
        L.append("## Errors\n")
        for e in result["errors"]:
            first = (e["error"] or "").strip().splitlines()
            L.append(f"- {e['scenario']} {e['what']}: {first[-1] if first else '?'}")
        L.append("")
    L.append("## Method\n")
    L.append("See `benchmarks/README.md` for the scenarios, the C floors, the peers and the JSON schema. "
             "The raw results of this run are in `" + os.path.relpath(plots.get("json", "results.json"), md_dir)
             + "`.\n")
    return "\n".join(L)


def _classes_md(recs: list[dict], rel: dict[str, str]) -> str:
    rs = [r for r in recs if r["scenario"] == "classes"]
    if not rs:
        return ""
    L = ["## classes — a mixed-size stream through size classes\n",
         "One writer process, the reader (measuring) in the parent, the same stream of messages: "
         "15 % control messages of 64 B, 80 % images of 48–160 KiB, 5 % frames of 2–6 MiB (a fixed "
         "pseudo-random sequence). *classed*: one posix segment with 4 slots of 4 KiB, 9 of 160 KiB "
         "and 3 of 6 MiB; *one-class*: 16 slots of 6 MiB; mp.Queue with maxsize 16 (fewer messages per "
         "round: it is much slower). The writer stores one byte per 4 KiB page of each message, the "
         "reader checks them. Shared memory: the bytes /dev/shm allocated for the segment (st_blocks "
         "× 512) and its total size. Messages/s: the median of the interleaved rounds; CPU: writer + "
         "reader CPU time per message, the median round.\n"]
    if "classes" in rel:
        L.append(f"![classes]({rel['classes']})\n")
    rows = []
    for r in rs:
        rows.append([r["impl"], r["variant"] or "—",
                     _fl(r.get("shm_resident_bytes", float("nan")) / 2**20, "{:.1f}"),
                     _fl(r.get("shm_total_bytes", float("nan")) / 2**20, "{:.1f}"),
                     _fl(r["value"], "{:.0f}"),
                     " ".join(f"{x:.0f}" for x in r.get("rounds_msgs_per_s") or []),
                     _fl((r.get("cpu_ns_per_msg") or float("nan")) / 1e3, "{:.1f}"),
                     "/".join(str(x) for x in r.get("per_class_messages") or []) or "—",
                     str(r.get("count")), str(r.get("errors", 0))])
    L.append(_md_table(["impl", "segment", "/dev/shm MiB", "total MiB", "msgs/s", "rounds msgs/s",
                        "CPU µs/msg (both)", "messages per class", "msgs/round", "errors"], rows))
    L.append("")
    return "\n".join(L)


def _scaling_md(recs: list[dict], rel: dict[str, str]) -> str:
    sc = [r for r in recs if r["scenario"] == "scaling"]
    if not sc:
        return ""
    L = ["## Scaling — slot count, futex calls per message, registered readers\n"]
    L.append("Segments of 64 B slots, bare API (`w.loan().commit(1)`, `r.take().release()`). "
             "*One process*: batches of 2 loans+commits then 2 takes+releases, median batch minus an "
             "empty timed batch; *steady*: every slot filled once before (a loan recycles a committed "
             "slot), *fresh*: a new segment (above ~200 slots every loan finds a never-used slot). "
             "*Two processes*: the steady posix segment, parent writer, child reader, both with a "
             "bounded spin; ns per message on the reader's clock. Ratios are to 4 slots.\n")
    if "scaling_cost" in rel:
        L.append(f"![scaling cost]({rel['scaling_cost']})\n")

    def v(variant: str, backend: str, slots: int, metric: str) -> float | None:
        r = _find(sc, variant=variant, backend=backend, slots=slots, metric=metric)
        return r["value"] if r else None

    slots = sorted({r["slots"] for r in sc if r["variant"] in ("steady", "fresh", "two-process")})
    rows = []
    for n in slots:
        row = [str(n)]
        for variant, backend in (("steady", "memory"), ("steady", "posix"), ("fresh", "memory")):
            for m in ("loan_commit_ns", "take_release_ns"):
                row.append(_fl(v(variant, backend, n, m), "{:.0f}"))
        row.append(_fl(v("two-process", "posix", n, "per_msg_ns"), "{:.0f}"))
        for variant, m in (("steady", "loan_commit_ns"), ("steady", "take_release_ns"),
                           ("two-process", "per_msg_ns")):
            a, b = v(variant, "posix", n, m), v(variant, "posix", 4, m)
            row.append(_fl(a / b, "{:.2f}x") if a is not None and b else "—")
        rows.append(row)
    L.append(_md_table(["slots", "steady mem loan+commit ns", "take+release ns",
                        "steady posix loan+commit ns", "take+release ns", "fresh mem loan+commit ns",
                        "take+release ns", "two processes ns/msg", "posix loan+commit vs 4",
                        "take+release vs 4", "two processes vs 4"], rows))
    L.append("")

    fx = [r for r in sc if r["variant"].startswith("futex ")]
    if fx:
        L.append("Futex system calls per message, counted by the handles themselves "
                 "(`seg.info()['futex_waits']`, `['futex_wakes']`): the writer's handle in the parent, "
                 "the readers' handles in the children (summed). *Parked*: readers block in `take` "
                 "(no spin); *paced*: the writer waits 1 ms between messages, so every reader is asleep "
                 "when a message arrives; *polling*: readers that only `try_take`; *spinning*: readers "
                 "with a 50 µs bounded spin. 64 slots.\n")
        if "scaling_futex" in rel:
            L.append(f"![scaling futex]({rel['scaling_futex']})\n")
        rows = []
        for r in sorted(fx, key=lambda r: (r["variant"], r["readers"])):
            rows.append([r["variant"][6:], str(r["readers"]), str(r["count"]),
                         _fl(r["writer_wakes_per_msg"]), _fl(r["writer_waits_per_msg"]),
                         _fl(r["reader_waits_per_msg"]), _fl(r["reader_waits_per_msg_per_reader"]),
                         _fl(r["reader_wakes_per_msg"]), str(r.get("errors", 0))])
        L.append(_md_table(["readers", "N", "messages", "writer wakes/msg", "writer waits/msg",
                            "reader waits/msg (all)", "reader waits/msg (each)", "reader wakes/msg",
                            "errors"], rows))
        L.append("")

    rt = [r for r in sc if r["variant"].startswith("rate ")]
    if rt:
        L.append("Writer rate with N registered readers, all of them in one child process. *drain*: the "
                 "child polls its readers in turn (`try_take`, release), the writer (overflow "
                 "\"block\", 50 µs spin, 256 slots) goes as fast as they let it; *idle*: the readers "
                 "never take and the writer (overflow \"reclaim\", 64 slots) recycles the oldest slot "
                 "every time (its own cost with N readers in the mask).\n")
        if "scaling_rate" in rel:
            L.append(f"![scaling rate]({rel['scaling_rate']})\n")
        rows = []
        for n in sorted({r["readers"] for r in rt}):
            d = _find(rt, variant="rate drain", readers=n)
            i = _find(rt, variant="rate idle", readers=n)
            rows.append([str(n), _fl(d["value"] / 1e3, "{:.1f}") if d else "—",
                         _fl(i["value"] / 1e3, "{:.1f}") if i else "—",
                         _fl(d.get("writer_calls_per_msg")) if d else "—"])
        L.append(_md_table(["readers", "drain k msgs/s", "idle (reclaim) k msgs/s",
                            "drain: writer futex calls/msg"], rows))
        L.append("")
    return "\n".join(L)


def _speedups(recs: list[dict], sc: str) -> str:
    z = [r for r in recs if r["scenario"] == sc and r["impl"] == "zdshm" and r.get("ratios")]
    if not z:
        return ""
    peers = sorted({p for r in z for p in r["ratios"]["peers"]},
                   key=lambda p: next((i for i, x in enumerate(PEER_ORDER) if p.startswith(x)), 99))
    if not peers:
        return ""
    rows = []
    for r in z:
        if not r["ratios"]["peers"]:
            continue
        label = f"zdshm {r['variant']} {_fmt_size(r['size'])}"
        if r.get("readers"):
            label += f", {r['readers']} reader(s)"
        rows.append([label] + [_fl(r["ratios"]["peers"].get(p), "{:.3g}x") for p in peers])
    return ("How many times faster zdshm is (peer time / zdshm time):\n\n"
            + _md_table(["zdshm"] + peers, rows) + "\n")


def _s1_breakdown(recs: list[dict]) -> str:
    """Round trip = kernel floor + C core + Python binding, from this run's S1 records."""
    lines = []
    for variant, floor_variant, floor_name in (("parked", "futex", "C futex ping-pong"),
                                               ("spin", "cacheline", "C cache-line ping-pong")):
        f = _find(recs, scenario="S1", impl="C", variant=floor_variant)
        c = _find(recs, scenario="S1", impl="C core", variant=variant, size=64)
        z = _find(recs, scenario="S1", impl="zdshm", variant=variant, size=64)
        if not (f and z):
            continue
        parts = [f"{floor_name} {_us(f['value'])}"]
        if c:
            parts.append(f"+ C core {_us(c['value'] - f['value'])} (C core round trip {_us(c['value'])})")
            parts.append(f"+ Python binding and interpreter {_us(z['value'] - c['value'])}")
        parts.append(f"= zdshm {_us(z['value'])}")
        hand = _find(recs, scenario="S1", impl="shared_memory+spin", variant="spin", size=64)
        extra = ""
        if variant == "spin" and hand:
            extra = (f" (a hand-written Python spin on a shared-memory word, no library at all: "
                     f"{_us(hand['value'])})")
        lines.append(f"- S1 64 B {variant} (p50): " + " ".join(parts) + extra)
    if not lines:
        return ""
    return "Where the time of a round trip goes (this run):\n\n" + "\n".join(lines) + "\n"


def _breakdown(recs: list[dict]) -> str:
    """Where the time of one Python pair goes, from the measurements of this run."""
    lines = []
    base = {r["variant"]: r["value"] for r in recs if r["scenario"] == "S4" and r["impl"] == "python"}
    for backend in ("memory",):
        for m, core_m in (("loan_commit_per_s", "loan_commit_ns"), ("take_release_per_s", "take_release_ns")):
            mv = _find(recs, scenario="S4", impl="zdshm", variant="mv", backend=backend, metric=m)
            bare = _find(recs, scenario="S4", impl="zdshm", variant="bare", backend=backend, metric=m)
            core = _find(recs, scenario="floor", impl="C core", backend=backend, metric=core_m)
            if not mv:
                continue
            parts = [f"total {mv['ns_per_pair']:.0f} ns"]
            if core:
                parts.append(f"C core {core['value']:.0f} ns")
            if bare and core:
                parts.append(f"binding (bare - core) {bare['ns_per_pair'] - core['value']:.0f} ns")
            if bare:
                parts.append(f"memoryview work (mv - bare) {mv['ns_per_pair'] - bare['ns_per_pair']:.0f} ns")
            lines.append(f"- {m.split('_per')[0].replace('_', ' + ')} ({backend}): " + ", ".join(parts))
    if base:
        lines.append("- Python building blocks: " + ", ".join(
            f"{k.replace('_', ' ')} {v:.0f} ns" for k, v in base.items()))
    sc = _find(recs, scenario="floor", variant="slot-scaling")
    if sc:
        lines.append("- C core loan+commit / take+release vs slot count: " + ", ".join(
            f"{p['slots']} slots {p['loan_commit_ns']:.0f}/{p['take_release_ns']:.0f} ns" for p in sc["points"]))
    if not lines:
        return ""
    return "Where the time of a pair goes (this run):\n\n" + "\n".join(lines) + "\n"


# ==========================================================================
# plots
# ==========================================================================
def plots(result: dict, out_dir: str) -> tuple[dict[str, str], str | None]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception as e:  # noqa: BLE001
        return {}, f"matplotlib unavailable: {e}"
    recs = result["records"]
    files: dict[str, str] = {}
    colors = {"zdshm": "#d62728", "C": "#7f7f7f", "C core": "#bcbd22", "mp.Queue": "#1f77b4",
              "mp.Pipe": "#ff7f0e", "shared_memory+Pipe": "#2ca02c", "SharedArray+Pipe": "#9467bd",
              "faster-fifo": "#8c564b", "iceoryx2": "#e377c2", "shared_memory+spin": "#17becf",
              "shared_memory": "#2ca02c", "SharedArray": "#9467bd"}

    # S1
    s1 = [r for r in recs if r["scenario"] == "S1"]
    if s1:
        fig, axes = plt.subplots(1, 2, figsize=(13, 0.42 * max(len(s1) // 2, 6) + 1.5), sharey=False)
        for ax, size in zip(axes, (64, 4096), strict=False):
            rs = [r for r in s1 if r["size"] == size or r["impl"] == "C" or (r["impl"] == "C core")]
            rs = sorted(rs, key=lambda r: r["value"])
            y = range(len(rs))
            ax.barh(list(y), [r["value"] / 1e3 for r in rs],
                    color=[colors.get(r["impl"], "#333") for r in rs])
            ax.errorbar([r["stats"]["p99"] / 1e3 for r in rs], list(y), fmt="|", color="black",
                        label="p99")
            ax.set_yticks(list(y))
            ax.set_yticklabels([f"{r['impl']} {r['variant']}" for r in rs], fontsize=8)
            ax.set_xscale("log")
            ax.set_xlabel("round trip, µs (bar: p50, tick: p99; log)")
            ax.set_title(f"S1 ping-pong, {_fmt_size(size)} (C floors: 4 B, C core: 64 B)")
            ax.grid(axis="x", alpha=0.3)
        fig.tight_layout()
        files["s1"] = os.path.join(out_dir, "s1_pingpong.png")
        fig.savefig(files["s1"], dpi=110)
        plt.close(fig)

    # S2
    s2 = [r for r in recs if r["scenario"] == "S2"]
    if s2:
        fig, axes = plt.subplots(1, 2, figsize=(13, 5))
        for ax, variant in zip(axes, ("header", "touch"), strict=False):
            impls = sorted({r["impl"] for r in s2 if r["variant"] == variant})
            for impl in impls:
                rs = sorted([r for r in s2 if r["impl"] == impl and r["variant"] == variant],
                            key=lambda r: r["size"])
                ax.plot([r["size"] for r in rs], [r["value"] / 1e3 for r in rs], "o-",
                        color=colors.get(impl), label=impl, lw=2.5 if impl == "zdshm" else 1.2)
            rs = sorted([r for r in s2 if r["impl"] == "zdshm" and r["variant"] == f"{variant}-spin"],
                        key=lambda r: r["size"])
            if rs:
                ax.plot([r["size"] for r in rs], [r["value"] / 1e3 for r in rs], "o:",
                        color=colors["zdshm"], label="zdshm (bounded spin)", lw=2)
            fl = sorted([r for r in recs if r["scenario"] == "floor"
                         and r["variant"] == ("memcpy" if variant == "header" else "pagetouch")],
                        key=lambda r: r["size"])
            if fl:
                ax.plot([r["size"] for r in fl], [r["value"] / 1e3 for r in fl], "k--",
                        label="C memcpy" if variant == "header" else "C page touch")
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            sizes = sorted({r["size"] for r in s2})
            ax.set_xticks(sizes)
            ax.set_xticklabels([_fmt_size(x) for x in sizes])
            ax.minorticks_off()
            ax.set_xlabel("message size")
            ax.set_ylabel("µs per message (log)")
            ax.set_title(f"S2 1 writer → 1 reader, {variant}")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        fig.tight_layout()
        files["s2"] = os.path.join(out_dir, "s2_throughput.png")
        fig.savefig(files["s2"], dpi=110)
        plt.close(fig)

    # S3
    s3 = [r for r in recs if r["scenario"] == "S3"]
    if s3:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for impl in sorted({r["impl"] for r in s3}):
            rs = sorted([r for r in s3 if r["impl"] == impl], key=lambda r: r["readers"])
            ax.plot([r["readers"] for r in rs], [r["value"] / 1e3 for r in rs], "o-",
                    color=colors.get(impl), label=impl, lw=2.5 if impl == "zdshm" else 1.2)
        ax.set_yscale("log")
        ax.set_xlabel("readers")
        ax.set_xticks(sorted({r["readers"] for r in s3}))
        ax.set_ylabel("µs per 1 MiB message (log)")
        ax.set_title("S3 fan-out, 1 MiB arrays")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        files["s3"] = os.path.join(out_dir, "s3_fanout.png")
        fig.savefig(files["s3"], dpi=110)
        plt.close(fig)

    # S4
    s4 = [r for r in recs if r["scenario"] == "S4" and r["impl"] == "zdshm"]
    if s4:
        import numpy as np

        variants = [v for v in ("mv", "bare", "publish", "lowlevel", "numpy") if any(r["variant"] == v for r in s4)]
        fig, ax = plt.subplots(figsize=(10, 4.5))
        x = np.arange(len(variants))
        wdt = 0.2
        k = 0
        for backend in ("memory", "posix"):
            for m, hatch in (("loan_commit_per_s", ""), ("take_release_per_s", "//")):
                vals = [(_find(s4, variant=v, backend=backend, metric=m) or {}).get("value", 0) / 1e6
                        for v in variants]
                ax.bar(x + (k - 1.5) * wdt, vals, wdt, hatch=hatch,
                       color="#d62728" if backend == "memory" else "#1f77b4",
                       label=f"{backend} {m.split('_per')[0].replace('_', '+')}", edgecolor="white")
                k += 1
        ax.axhline(2.0, color="black", ls="--", lw=1, label="target 2 M/s")
        ax.set_xticks(x)
        ax.set_xticklabels(variants)
        ax.set_ylabel("M pairs/s")
        ax.set_title("S4/S6 Python API, one process")
        ax.legend(fontsize=8)
        ax.grid(axis="y", alpha=0.3)
        fig.tight_layout()
        files["s4"] = os.path.join(out_dir, "s4_api.png")
        fig.savefig(files["s4"], dpi=110)
        plt.close(fig)

    # S5
    s5 = [r for r in recs if r["scenario"] == "S5"]
    if s5:
        import numpy as np

        keys = [("create_ns", "create"), ("attach_ns", "attach"), ("first_message_ns", "first msg"),
                ("second_message_ns", "next msg"), ("teardown_creator_ns", "teardown")]
        fig, ax = plt.subplots(figsize=(10, 4.5))
        x = np.arange(len(keys))
        wdt = 0.8 / len(s5)
        for i, r in enumerate(s5):
            vals = [(r["values"][k] + (r["values"]["register_ns"] if k == "attach_ns" else 0)) / 1e3
                    for k, _ in keys]
            ax.bar(x + (i - (len(s5) - 1) / 2) * wdt, vals, wdt, label=r["impl"],
                   color=colors.get(r["impl"]))
        ax.set_xticks(x)
        ax.set_xticklabels([k[1] for k in keys])
        ax.set_yscale("log")
        ax.set_ylabel("µs (log)")
        ax.set_title("S5 setup, 8 x 1 MiB")
        ax.legend(fontsize=8)
        ax.grid(axis="y", alpha=0.3)
        fig.tight_layout()
        files["s5"] = os.path.join(out_dir, "s5_setup.png")
        fig.savefig(files["s5"], dpi=110)
        plt.close(fig)

    _scaling_plots(plt, recs, out_dir, files)
    _classes_plot(plt, recs, out_dir, files, colors)
    return files, None


def _classes_plot(plt: Any, recs: list[dict], out_dir: str, files: dict[str, str],
                  colors: dict[str, str]) -> None:
    rs = [r for r in recs if r["scenario"] == "classes" and _ok(r.get("value"))]
    if not rs:
        return
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.2))
    zd = [r for r in rs if r["impl"] == "zdshm" and _ok(r.get("shm_resident_bytes"))]
    ax1.barh([r["variant"] for r in zd], [r["shm_resident_bytes"] / 2**20 for r in zd],
             color=colors["zdshm"])
    ax1.set_xlabel("MiB allocated in /dev/shm")
    ax1.set_title("classes: shared memory of the segment")
    labels = [f"{r['impl']} {r['variant']}".strip() for r in rs]
    ax2.barh(labels, [r["value"] for r in rs], color=[colors.get(r["impl"], "#333") for r in rs])
    ax2.set_xscale("log")
    ax2.set_xlabel("messages/s (log)")
    ax2.set_title("classes: mixed-size stream, 1 writer → 1 reader")
    for ax in (ax1, ax2):
        ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    files["classes"] = os.path.join(out_dir, "classes.png")
    fig.savefig(files["classes"], dpi=110)
    plt.close(fig)


def _scaling_plots(plt: Any, recs: list[dict], out_dir: str, files: dict[str, str]) -> None:
    sc = [r for r in recs if r["scenario"] == "scaling"]
    # cost vs slot count
    lines = [("steady", "memory", "loan_commit_ns", "steady memory loan+commit", "#d62728", "o-"),
             ("steady", "memory", "take_release_ns", "steady memory take+release", "#d62728", "s--"),
             ("steady", "posix", "loan_commit_ns", "steady posix loan+commit", "#1f77b4", "o-"),
             ("steady", "posix", "take_release_ns", "steady posix take+release", "#1f77b4", "s--"),
             ("fresh", "memory", "loan_commit_ns", "fresh memory loan+commit", "#ff7f0e", "o:"),
             ("fresh", "memory", "take_release_ns", "fresh memory take+release", "#ff7f0e", "s:"),
             ("two-process", "posix", "per_msg_ns", "two processes, per message", "#2ca02c", "D-")]
    if any(r["variant"] in ("steady", "fresh", "two-process") for r in sc):
        fig, ax = plt.subplots(figsize=(8, 5))
        for variant, backend, metric, label, color, style in lines:
            rs = sorted((r for r in sc if r["variant"] == variant and r.get("backend") == backend
                         and r["metric"] == metric and _ok(r["value"])), key=lambda r: r["slots"])
            if rs:
                ax.plot([r["slots"] for r in rs], [r["value"] for r in rs], style, color=color,
                        label=label, lw=1.5)
        slots = sorted({r["slots"] for r in sc if r["variant"] == "steady"})
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        if slots:
            ax.set_xticks(slots)
            ax.set_xticklabels([str(x) for x in slots])
        ax.minorticks_off()
        ax.set_xlabel("slot count")
        ax.set_ylabel("ns per message (log)")
        ax.set_title("Cost vs slot count, 64 B slots")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        files["scaling_cost"] = os.path.join(out_dir, "scaling_cost.png")
        fig.savefig(files["scaling_cost"], dpi=110)
        plt.close(fig)
    # futex calls per message vs readers
    fx = [r for r in sc if r["variant"].startswith("futex ")]
    if fx:
        fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
        styles = {"futex parked, paced": "o-", "futex parked, unpaced": "s--",
                  "futex polling, paced": "^:", "futex spinning, unpaced": "v:"}
        hues = {"futex parked, paced": "#d62728", "futex parked, unpaced": "#1f77b4",
                "futex polling, paced": "#2ca02c", "futex spinning, unpaced": "#9467bd"}
        for ax, side in zip(axes, ("writer", "reader"), strict=False):
            for variant in sorted({r["variant"] for r in fx}):
                rs = sorted((r for r in fx if r["variant"] == variant), key=lambda r: r["readers"])
                if side == "writer":
                    ax.plot([r["readers"] for r in rs], [r["writer_wakes_per_msg"] for r in rs],
                            styles.get(variant, "o-"), color=hues.get(variant), label=f"{variant[6:]}: wakes")
                    ax.plot([r["readers"] for r in rs], [r["writer_waits_per_msg"] for r in rs],
                            styles.get(variant, "o-"), color=hues.get(variant), alpha=0.4,
                            mfc="none", label=f"{variant[6:]}: waits")
                else:
                    ax.plot([r["readers"] for r in rs], [r["reader_waits_per_msg"] for r in rs],
                            styles.get(variant, "o-"), color=hues.get(variant), label=f"{variant[6:]}: waits")
                    ax.plot([r["readers"] for r in rs], [r["reader_wakes_per_msg"] for r in rs],
                            styles.get(variant, "o-"), color=hues.get(variant), alpha=0.4,
                            mfc="none", label=f"{variant[6:]}: wakes")
            if side == "writer":
                ax.axhline(1.0, color="black", ls="--", lw=1, label="target ≤ 1 (parked)")
            ax.set_xscale("log", base=2)
            ns = sorted({r["readers"] for r in fx})
            ax.set_xticks(ns)
            ax.set_xticklabels([str(x) for x in ns])
            ax.minorticks_off()
            ax.set_xlabel("readers")
            ax.set_ylabel("futex calls per message")
            ax.set_title(f"{side}-side futex calls per message" + (" (all readers)" if side == "reader" else ""))
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        fig.tight_layout()
        files["scaling_futex"] = os.path.join(out_dir, "scaling_futex.png")
        fig.savefig(files["scaling_futex"], dpi=110)
        plt.close(fig)
    # writer rate vs readers
    rt = [r for r in sc if r["variant"].startswith("rate ")]
    if rt:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for variant, style in (("rate drain", "o-"), ("rate idle", "s--")):
            rs = sorted((r for r in rt if r["variant"] == variant), key=lambda r: r["readers"])
            if rs:
                ax.plot([r["readers"] for r in rs], [r["value"] / 1e3 for r in rs], style,
                        label={"rate drain": "readers drain (try_take)",
                               "rate idle": "readers idle, overflow reclaim"}[variant])
        ns = sorted({r["readers"] for r in rt})
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(ns)
        ax.set_xticklabels([str(x) for x in ns])
        ax.minorticks_off()
        ax.set_xlabel("registered readers")
        ax.set_ylabel("writer rate, k messages/s (log)")
        ax.set_title("Writer rate vs registered readers, 64 B")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        files["scaling_rate"] = os.path.join(out_dir, "scaling_rate.png")
        fig.savefig(files["scaling_rate"], dpi=110)
        plt.close(fig)
