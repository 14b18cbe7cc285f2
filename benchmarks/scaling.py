"""Scaling: how the per-message cost grows with the slot count, how many futex
calls a message costs with readers parked, and the writer rate with many readers.

Three measurements, all on segments of 64-byte slots, messages made with the
bare API (``w.loan().commit(1)``, ``r.take().release()``: no payload work, so
what grows is the core):

cost vs slot count (slot_count in SLOTS)
  one process   writer and reader in the same thread, in batches of BATCH
                loans+commits then BATCH takes+releases; every batch is timed,
                the median batch counts, minus the median of an empty timed
                batch (the timer and the loop, the same for every slot count).
                *steady*: every slot was filled once before (committed with no
                reader registered, so every slot holds a committed sample that
                nobody has to read): each loan has to recycle a committed slot,
                the cost that matters once a segment has run for a while.
                *fresh*: a new segment, measured from its first messages: for
                slot counts above the messages measured every loan finds a
                never-used slot; below, the run wraps into the steady state.
                Both backends.
  two processes the same steady posix segment, a spawned child reader taking
                and releasing (bounded spin, SPIN_S), the parent writer
                (bounded spin): per-message time = the reader's time from its
                `warm`-th to its last message / messages.

futex calls per message (readers in FUTEX_READERS)
  Readers in child processes block in ``take`` (spin 0, parked); the writer
  publishes at a pace (PACE_S between messages, so every reader is parked when
  a message arrives) or unpaced.  The handles' own counters
  (``seg.info()["futex_waits"]``, ``["futex_wakes"]``: futex(2) calls made
  through that handle) give writer-side and reader-side calls per message.
  "Nobody sleeps": readers that poll with ``try_take`` (never block), paced
  writer; and readers with a bounded spin, unpaced writer.

writer rate (registered readers in RATE_READERS)
  *drain*: N registered readers, spread over the child processes, each child
  polling its readers in turn with ``try_take``; the writer (overflow "block",
  bounded spin, RATE_SLOTS slots) publishes as fast as they let it.
  *idle*: N registered readers that never take; the writer (overflow
  "reclaim") recycles the oldest slot every time: the writer's own cost with N
  readers in the active mask.

Child processes: a pool of `procs` spawned once for the whole scenario (quick:
2, full: 8), every one pinned to the second CPU, the parent (writer) to the
first.  Parked readers are spread round-robin over the pool (full mode: one
process per reader up to 8); a child with several parked readers runs one
thread per reader, each blocking in its own ``take``.  Polling and idle
readers (up to 32) all live in one child, which polls them in turn: two
busy-polling processes on one CPU would measure the scheduler's time slice.
"""
from __future__ import annotations

import contextlib
import threading
import time
from array import array
from typing import Any

from .common import BenchError, Child, child_ready, median, unique_name

MSG = 64
SLOTS = (4, 16, 64, 256, 1024, 16384)
BATCH = 2            # loans per timed batch: below the smallest slot count
FUTEX_READERS = (1, 2, 4, 8)
NOSLEEP_READERS = (1, 2)
RATE_READERS = (1, 2, 4, 8, 16, 32)
FUTEX_SLOTS = 64
RATE_SLOTS = 256
PACE_S = 1e-3
SPIN_S = 50e-6

_pc = time.perf_counter_ns


# ==========================================================================
# counters
# ==========================================================================
def _futex(seg: Any) -> tuple[int, int]:
    i = seg.info()
    return int(i["futex_waits"]), int(i["futex_wakes"])


def _delta(before: tuple[int, int], after: tuple[int, int]) -> dict[str, int]:
    return {"waits": after[0] - before[0], "wakes": after[1] - before[1]}


# ==========================================================================
# one process
# ==========================================================================
def named_segment(slots: int) -> tuple[Any, str]:
    """A posix segment that children can attach; the caller unlinks it."""
    import zdshm

    name = unique_name("scale")
    return zdshm.PosixSegment.create(name, slot_count=slots, slot_capacity=MSG), name


def prefill(seg: Any) -> None:
    """Commit one sample into every slot with no reader registered."""
    w = seg.writer(overflow="fail")
    try:
        loan = w.loan
        for _ in range(seg.slot_count):
            loan().commit(1)
    finally:
        w.close()


def one_process(seg: Any, batches: int, warm: int) -> dict[str, Any]:
    """Median ns per loan+commit and per take+release, batches of BATCH."""
    w = seg.writer(overflow="fail")
    r = seg.reader()
    try:
        bl = array("q", bytes(8 * batches))
        bt = array("q", bytes(8 * batches))
        be = array("q", bytes(8 * batches))
        loan, take, pc = w.loan, r.take, _pc
        rng = range(BATCH)
        errors = 0
        for k in range(warm + batches):
            t0 = pc()
            for _ in rng:
                loan().commit(1)
            t1 = pc()
            for _ in rng:
                take().release()
            t2 = pc()
            if k >= warm:
                bl[k - warm] = t1 - t0
                bt[k - warm] = t2 - t1
        # the same timed batch with nothing in it: timer and loop overhead
        for k in range(batches):
            t0 = pc()
            for _ in rng:
                pass
            t1 = pc()
            be[k] = t1 - t0
        s = r.try_take()
        if s is not None:      # every sample was taken: nothing may be left
            errors += 1
            s.release()
        st = r.stats()
        errors += int(st.get("dropped") or 0)
        taken = st.get("taken")
    finally:
        r.close()
        w.close()
    ovh = median(list(be))
    lc = (median(list(bl)) - ovh) / BATCH
    tr = (median(list(bt)) - ovh) / BATCH
    return {"loan_commit_ns": lc, "take_release_ns": tr, "overhead_ns_per_batch": ovh,
            "loan_commit_ns_mean": (sum(bl) / batches - ovh) / BATCH,
            "take_release_ns_mean": (sum(bt) / batches - ovh) / BATCH,
            "messages": batches * BATCH, "taken": taken, "errors": errors}


# ==========================================================================
# children: a pool of readers
# ==========================================================================
def _take_loop(r: Any, total: int, warm: int, timeout: float, out: dict) -> None:
    try:
        take, pc = r.take, _pc
        prev = None
        errors = 0
        t_warm = pc()
        for i in range(total):
            s = take(timeout)
            sn = s.sn
            s.release()
            if prev is not None and sn != prev + 1:
                errors += 1
            prev = sn
            if i + 1 == warm:
                t_warm = pc()
        out.update(t_warm=t_warm, t_end=pc(), taken=total, errors=errors)
    except BaseException as e:  # noqa: BLE001 - reported by the serving thread
        out["error"] = f"{type(e).__name__}: {e}"


def _poll_loop(rs: list[Any], total: int, warm: int, timeout: float) -> list[dict]:
    pc = _pc
    outs = [{"taken": 0, "errors": 0, "prev": None, "t_warm": pc(), "t_end": 0} for _ in rs]
    tries = [r.try_take for r in rs]
    left = len(rs)
    deadline = time.monotonic() + timeout
    polls = 0
    while left:
        for j, tt in enumerate(tries):
            o = outs[j]
            if o["taken"] >= total:
                continue
            s = tt()
            if s is None:
                continue
            sn = s.sn
            s.release()
            if o["prev"] is not None and sn != o["prev"] + 1:
                o["errors"] += 1
            o["prev"] = sn
            o["taken"] += 1
            if o["taken"] == warm:
                o["t_warm"] = pc()
            if o["taken"] == total:
                o["t_end"] = pc()
                left -= 1
        polls += 1
        if not polls & 0x3FF and time.monotonic() > deadline:
            raise BenchError(f"poll readers: {sum(o['taken'] for o in outs)} of "
                             f"{total * len(rs)} messages in {timeout:.0f} s")
    for o in outs:
        del o["prev"]
    return outs


def _serve(ctrl: Any, job: dict) -> dict:
    import zdshm

    seg = zdshm.PosixSegment.attach(job["name"])
    try:
        rs = [seg.reader(spin=job["spin"]) for _ in range(job["readers"])]
        c0 = _futex(seg)
        ctrl.send(("ready", {}))
        total, warm, timeout = job["total"], job["warm"], job["timeout"]
        if job["mode"] == "idle":
            msg = ctrl.recv()
            if msg[0] != "stop":
                raise BenchError(f"idle readers: expected 'stop', got {msg[0]!r}")
            outs = [{"taken": 0, "errors": 0} for _ in rs]
        elif job["mode"] == "poll":
            outs = _poll_loop(rs, total, warm, timeout)
        elif job["mode"] == "take":
            outs = [{} for _ in rs]
            ths = [threading.Thread(target=_take_loop, args=(r, total, warm, timeout, o), daemon=True)
                   for r, o in zip(rs, outs, strict=True)]
            for t in ths:
                t.start()
            for t in ths:
                t.join()
            bad = [o["error"] for o in outs if "error" in o]
            if bad:
                raise BenchError("reader thread failed: " + "; ".join(bad))
        else:
            raise ValueError(job["mode"])
        c1 = _futex(seg)
        for r in rs:
            r.close()
    finally:
        seg.close()
    return {"futex": _delta(c0, c1), "readers": outs}


def _worker(ctrl: Any, args: Any) -> dict:
    import zdshm  # noqa: F401 - imported before "ready": the first job does not pay for it

    child_ready(ctrl)
    while True:
        msg = ctrl.recv()
        if msg[0] == "quit":
            return {}
        ctrl.send(("ok", _serve(ctrl, msg[1])))


class Pool:
    """`n` spawned reader processes, kept for the whole scenario."""

    def __init__(self, n: int, timeout: float, pin: bool) -> None:
        self.n = n
        self.timeout = timeout
        self.pin = pin
        self.stack = contextlib.ExitStack()
        self.kids: list[Child] = []

    def __enter__(self) -> Pool:
        try:
            for j in range(self.n):
                self.kids.append(self.stack.enter_context(
                    Child(_worker, None, timeout=self.timeout, pin=self.pin, label=f"scaling reader {j}")))
            for c in self.kids:
                c.expect("ready", 60)
        except BaseException:
            self.stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            for c in self.kids:
                with contextlib.suppress(Exception):
                    c.send(("quit",))
            for c in self.kids:
                with contextlib.suppress(Exception):
                    c.result(10)
        self.stack.__exit__(*exc)

    def spread(self, readers: int, mode: str) -> list[int]:
        """Readers per child: parked readers round-robin over the pool; polling
        (and idle) readers all in the first child, so that no two busy-polling
        processes share the readers' CPU."""
        if mode != "take":
            return [readers] + [0] * (self.n - 1)
        return [readers // self.n + (1 if j < readers % self.n else 0) for j in range(self.n)]

    def start(self, name: str, readers: int, *, total: int, warm: int, spin: float, mode: str,
              timeout: float) -> list[Child]:
        used = []
        for c, k in zip(self.kids, self.spread(readers, mode), strict=True):
            if k:
                c.send(("job", {"name": name, "readers": k, "total": total, "warm": warm,
                                "spin": spin, "mode": mode, "timeout": timeout}))
                used.append(c)
        for c in used:
            c.expect("ready")
        return used

    @staticmethod
    def finish(used: list[Child], stop: bool = False) -> list[dict]:
        if stop:
            for c in used:
                c.send(("stop",))
        return [c.expect("ok") for c in used]


def _gather(reps: list[dict]) -> dict[str, Any]:
    readers = [o for rep in reps for o in rep["readers"]]
    return {"waits": sum(r["futex"]["waits"] for r in reps),
            "wakes": sum(r["futex"]["wakes"] for r in reps),
            "readers": readers,
            "errors": sum(o.get("errors", 0) for o in readers)}


# ==========================================================================
# two processes
# ==========================================================================
def two_process(pool: Pool, seg: Any, name: str, count: int, warm: int, timeout: float) -> dict:
    """Parent writes, one child reader keeps up; ns per message on the reader's clock."""
    total = warm + count
    used = pool.start(name, 1, total=total, warm=warm, spin=SPIN_S, mode="take", timeout=timeout)
    w = seg.writer(overflow="block", timeout=timeout, spin=SPIN_S)
    try:
        c0 = _futex(seg)
        loan, pc = w.loan, _pc
        t_warm = pc()
        for i in range(total):
            loan().commit(1)
            if i + 1 == warm:
                t_warm = pc()
        t_end = pc()
        c1 = _futex(seg)
    finally:
        w.close()
    g = _gather(Pool.finish(used))
    rd = g["readers"][0]
    return {"per_msg_ns": (rd["t_end"] - rd["t_warm"]) / count,
            "writer_per_msg_ns": (t_end - t_warm) / count, "count": count, "warm": warm,
            "errors": g["errors"] + (0 if rd["taken"] == total else 1),
            "writer_futex": _delta(c0, c1), "reader_futex": {"waits": g["waits"], "wakes": g["wakes"]}}


# ==========================================================================
# futex calls per message
# ==========================================================================
def futex_run(pool: Pool, readers: int, mode: str, paced: bool, count: int, timeout: float,
              spin: float = 0.0) -> dict:
    seg, name = named_segment(FUTEX_SLOTS)
    try:
        used = pool.start(name, readers, total=count, warm=0, spin=spin, mode=mode, timeout=timeout)
        w = seg.writer(overflow="block", timeout=timeout)
        try:
            c0 = _futex(seg)
            loan, sleep = w.loan, time.sleep
            t0 = _pc()
            for _ in range(count):
                loan().commit(1)
                if paced:
                    sleep(PACE_S)
            el = _pc() - t0
            c1 = _futex(seg)
        finally:
            w.close()
        g = _gather(Pool.finish(used))
    finally:
        seg.close()
        with contextlib.suppress(Exception):
            import zdshm

            zdshm.unlink(name)
    wd = _delta(c0, c1)
    taken = sum(o.get("taken", 0) for o in g["readers"])
    return {"readers": readers, "mode": mode, "paced": paced, "count": count,
            "writer_waits": wd["waits"], "writer_wakes": wd["wakes"],
            "reader_waits": g["waits"], "reader_wakes": g["wakes"],
            "writer_calls_per_msg": (wd["waits"] + wd["wakes"]) / count,
            "writer_wakes_per_msg": wd["wakes"] / count,
            "writer_waits_per_msg": wd["waits"] / count,
            "reader_waits_per_msg": g["waits"] / count,
            "reader_waits_per_msg_per_reader": g["waits"] / (count * readers),
            "reader_wakes_per_msg": g["wakes"] / count,
            "per_msg_ns": el / count,
            "errors": g["errors"] + (0 if taken == count * readers else 1)}


# ==========================================================================
# writer rate vs registered readers
# ==========================================================================
def rate_run(pool: Pool, readers: int, variant: str, count: int, warm: int, timeout: float) -> dict:
    slots = RATE_SLOTS if variant == "drain" else FUTEX_SLOTS
    seg, name = named_segment(slots)
    try:
        total = warm + count
        mode = "poll" if variant == "drain" else "idle"
        used = pool.start(name, readers, total=total, warm=warm, spin=0.0, mode=mode, timeout=timeout)
        if variant == "drain":
            w = seg.writer(overflow="block", timeout=timeout, spin=SPIN_S)
        else:
            w = seg.writer(overflow="reclaim")
        try:
            c0 = _futex(seg)
            loan, pc = w.loan, _pc
            t_warm = pc()
            for i in range(total):
                loan().commit(1)
                if i + 1 == warm:
                    t_warm = pc()
            t_end = pc()
            c1 = _futex(seg)
        finally:
            w.close()
        g = _gather(Pool.finish(used, stop=variant == "idle"))
    finally:
        seg.close()
        with contextlib.suppress(Exception):
            import zdshm

            zdshm.unlink(name)
    per = (t_end - t_warm) / count
    taken = sum(o.get("taken", 0) for o in g["readers"])
    want = total * readers if variant == "drain" else 0
    wd = _delta(c0, c1)
    return {"readers": readers, "variant": variant, "slots": slots, "count": count,
            "per_msg_ns": per, "msgs_per_s": 1e9 / per,
            "writer_calls_per_msg": (wd["waits"] + wd["wakes"]) / count,
            "errors": g["errors"] + (0 if taken == want else 1)}


# ==========================================================================
# the scenario
# ==========================================================================
def run_all(run: Any) -> None:
    """Measure everything and add the records to `run` (a runner.Run)."""
    import zdshm

    p = run.p
    timeout = p["timeout"]
    rounds = p["sc_rounds"]
    segs: dict[tuple[str, int], Any] = {}
    names: dict[int, str] = {}
    try:
        # ---- one process: steady segments, filled once, measured in rounds
        def setup() -> None:
            t0 = time.monotonic()
            for backend in ("memory", "posix"):
                for slots in SLOTS:
                    if backend == "memory":
                        seg = zdshm.MemorySegment(slot_count=slots, slot_capacity=MSG)
                    else:
                        seg, names[slots] = named_segment(slots)
                    segs[(backend, slots)] = seg
                    prefill(seg)
            run.progress.end(f"{len(segs)} segments filled in {time.monotonic() - t0:.2f} s")
        run.guarded("scaling", "fill every slot of the steady segments", setup)

        acc: dict[tuple[str, int], list[dict]] = {}
        for rnd in range(rounds):
            for backend in ("memory", "posix"):
                def one(backend: str = backend, rnd: int = rnd) -> None:
                    parts = []
                    for slots in SLOTS:
                        seg = segs.get((backend, slots))
                        if seg is None:
                            raise BenchError(f"no steady segment of {slots} slots")
                        r = one_process(seg, p["sc_batches"], p["sc_warm"])
                        acc.setdefault((backend, slots), []).append(r)
                        parts.append(f"{slots}: {r['loan_commit_ns']:.0f}/{r['take_release_ns']:.0f}")
                    run.progress.end("ns loan+commit/take+release  " + ", ".join(parts))
                tag = f" (round {rnd + 1}/{rounds})" if rounds > 1 else ""
                run.guarded("scaling", f"one process, steady, {backend}{tag}", one)
        for (backend, slots), rs in acc.items():
            for m in ("loan_commit_ns", "take_release_ns"):
                vals = [r[m] for r in rs]
                run.add(scenario="scaling", impl="zdshm", variant="steady", backend=backend,
                        slots=slots, size=MSG, metric=m, unit="ns", value=median(vals),
                        rounds_p50=vals, batch=BATCH, messages=rs[0]["messages"],
                        overhead_ns_per_batch=median([r["overhead_ns_per_batch"] for r in rs]),
                        errors=sum(r["errors"] for r in rs))

        for backend in ("memory", "posix"):
            def fresh(backend: str = backend) -> None:
                parts = []
                for slots in SLOTS:
                    if backend == "memory":
                        seg = zdshm.MemorySegment(slot_count=slots, slot_capacity=MSG)
                    else:
                        seg = zdshm.PosixSegment.create(unique_name("scale"), slot_count=slots,
                                                        slot_capacity=MSG)
                        seg.unlink()
                    try:
                        r = one_process(seg, p["sc_fresh_batches"], 2)
                    finally:
                        seg.close()
                    for m in ("loan_commit_ns", "take_release_ns"):
                        run.add(scenario="scaling", impl="zdshm", variant="fresh", backend=backend,
                                slots=slots, size=MSG, metric=m, unit="ns", value=max(r[m], 0.0),
                                batch=BATCH, messages=r["messages"], errors=r["errors"],
                                overhead_ns_per_batch=r["overhead_ns_per_batch"])
                    parts.append(f"{slots}: {r['loan_commit_ns']:.0f}/{r['take_release_ns']:.0f}")
                run.progress.end("ns loan+commit/take+release  " + ", ".join(parts))
            run.guarded("scaling", f"one process, fresh, {backend}", fresh)

        # ---- the child processes
        with Pool(p["sc_procs"], timeout * 4 + 60, run.pin) as pool:
            def two(slots: int) -> None:
                seg = segs.get(("posix", slots))
                if seg is None:
                    raise BenchError(f"no steady posix segment of {slots} slots")
                n = p["sc_2p_count"] if slots < 16384 else max(50, p["sc_2p_count"] // 4)
                r = two_process(pool, seg, names[slots], n, p["sc_2p_warm"], timeout)
                run.add(scenario="scaling", impl="zdshm", variant="two-process", backend="posix",
                        slots=slots, size=MSG, metric="per_msg_ns", unit="ns", value=r["per_msg_ns"],
                        **{k: v for k, v in r.items() if k != "per_msg_ns"})
                run.progress.end(f"{r['per_msg_ns']:8.0f} ns/msg (writer {r['writer_per_msg_ns']:.0f})"
                                 + (f"  ERRORS {r['errors']}" if r["errors"] else ""))
            for slots in SLOTS:
                run.guarded("scaling", f"two processes, steady, {slots} slots",
                            lambda slots=slots: two(slots))
            for seg in segs.values():
                with contextlib.suppress(Exception):
                    seg.close()
            segs.clear()
            for name in names.values():
                with contextlib.suppress(Exception):
                    zdshm.unlink(name)
            names.clear()

            # ---- futex calls per message
            cases = [(n, "take", True, 0.0, "parked, paced") for n in FUTEX_READERS]
            cases += [(n, "take", False, 0.0, "parked, unpaced") for n in FUTEX_READERS]
            cases += [(n, "poll", True, 0.0, "polling, paced") for n in NOSLEEP_READERS]
            cases += [(n, "take", False, SPIN_S, "spinning, unpaced") for n in NOSLEEP_READERS]
            for n, mode, paced, spin, label in cases:
                def fx(n: int = n, mode: str = mode, paced: bool = paced, spin: float = spin,
                       label: str = label) -> None:
                    count = p["sc_fx_paced"] if paced else p["sc_fx_count"]
                    r = futex_run(pool, n, mode, paced, count, timeout, spin)
                    run.add(scenario="scaling", impl="zdshm", variant=f"futex {label}",
                            backend="posix", readers=n, size=MSG, slots=FUTEX_SLOTS,
                            metric="writer_futex_per_msg", unit="calls/msg",
                            value=r["writer_calls_per_msg"], sleepers=mode == "take" and spin == 0,
                            **{k: v for k, v in r.items() if k not in ("readers", "mode")})
                    run.progress.end(f"writer {r['writer_wakes_per_msg']:.2f} wakes + "
                                     f"{r['writer_waits_per_msg']:.2f} waits /msg, readers "
                                     f"{r['reader_waits_per_msg']:.2f} waits + "
                                     f"{r['reader_wakes_per_msg']:.2f} wakes /msg"
                                     + (f"  ERRORS {r['errors']}" if r["errors"] else ""))
                run.guarded("scaling", f"futex calls, {n} reader(s) {label}", fx)

            # ---- writer rate
            for variant in ("drain", "idle"):
                for n in RATE_READERS:
                    def rate(n: int = n, variant: str = variant) -> None:
                        count = p["sc_rate_count"]
                        r = rate_run(pool, n, variant, count, p["sc_2p_warm"], timeout)
                        run.add(scenario="scaling", impl="zdshm", variant=f"rate {variant}",
                                backend="posix", readers=n, size=MSG, slots=r["slots"],
                                metric="msgs_per_s", unit="msgs/s", value=r["msgs_per_s"],
                                per_msg_ns=r["per_msg_ns"], count=count, errors=r["errors"],
                                writer_calls_per_msg=r["writer_calls_per_msg"])
                        run.progress.end(f"{r['msgs_per_s'] / 1e3:8.1f} k msgs/s"
                                         + (f"  ERRORS {r['errors']}" if r["errors"] else ""))
                    run.guarded("scaling", f"writer rate, {n} reader(s), {variant}", rate)
    finally:
        for seg in segs.values():
            with contextlib.suppress(Exception):
                seg.close()
        for name in names.values():
            with contextlib.suppress(Exception):
                zdshm.unlink(name)


def steps(p: dict) -> int:
    """Progress lines of run_all."""
    return (1 + 2 * p["sc_rounds"] + 2 + len(SLOTS)
            + 2 * len(FUTEX_READERS) + 2 * len(NOSLEEP_READERS) + 2 * len(RATE_READERS))
