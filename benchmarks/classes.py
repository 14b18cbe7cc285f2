"""classes: a mixed-size stream through size classes.

One writer process, one reader process (the parent, measuring), the same
stream of messages through three transports, interleaved in rounds:

- ``zdshm classed``: one posix segment with three size classes for the
  three kinds of message in the stream (``CLASSED``: 4 slots of 4 KiB, 9
  of 160 KiB, 3 of 6 MiB);
- ``zdshm one-class``: one posix segment whose slots all have the largest
  message's capacity (``ONE_CLASS``: 16 of 6 MiB).  Both have DEPTH = 16
  slots, so both hold at most 16 messages in flight; in the classed one a
  message whose class is full takes a slot of a larger class;
- ``mp.Queue``: ``multiprocessing.Queue(maxsize=DEPTH)``, pickle protocol 5,
  a fresh array per message.

The stream (``message_sizes``): a fixed pseudo-random sequence, the same in
every run, of

- 15 % control messages of 64 B,
- 80 % images of 48 to 160 KiB (uniform, in bytes),
- 5 % frames of 2 to 6 MiB (uniform).

The writer first stores a byte in every page of every slot (loans of each
slot's capacity, discarded), so the rate is the steady state's, not that of
the first stores to each page (a fault each, and the one-class segment has
five times the pages).  Then it loans each message by its size
(``loan_array((size,), uint8)``: the classed segment takes the smallest class
that fits and has a free slot) and stores one byte per 4 KiB page and the
last byte (S2's *touch*); the reader takes it, checks its size and those
bytes, and releases it.  The figures: messages/s on the reader's clock (the
median round), CPU time per message of both processes, and the shared
memory each zdshm segment holds: the bytes ``/dev/shm`` allocated for its
object (``st_blocks * 512`` after the stream, the whole object: the posix
backend allocates it at create) and the segment's ``total_size``.  The
reader also counts the messages each class carried, warm-up included (a
message goes to a larger class when its own is full).
"""
from __future__ import annotations

import contextlib
import math
import os
import random
import time
from typing import Any

from .common import Child, child_ready, median, unique_name
from .stream import PAGE, WARM_PAUSE_S, check, fill, timed_reads, timed_writes

DEPTH = 16                      # messages in flight at most, every transport
CONTROL = 64
IMAGE = (48 << 10, 160 << 10)
FRAME = (2 << 20, 6 << 20)
MIX = (("control", 0.15), ("image", 0.80), ("frame", 0.05))
SEQUENCE = 20_261_207           # fixes the pseudo-random sizes

# 16 slots, as ONE_CLASS.  Frames are 5 % of the stream: among 16 messages
# in flight there are 3 or more frames in 4 % of windows (binomial), 4 or more
# in 0.7 %, so the frame class has 3 slots (and images spill into it when
# theirs is full).
CLASSED = [(4, 4 << 10), (DEPTH - 7, IMAGE[1]), (3, FRAME[1])]
ONE_CLASS = [(DEPTH, FRAME[1])]
LAYOUTS = {"classed": CLASSED, "one-class": ONE_CLASS}
TRANSPORTS = ("classed", "one-class", "mp.Queue")


def message_sizes(n: int) -> list[int]:
    """The first n sizes of the stream (the same list in every call)."""
    rng = random.Random(SEQUENCE)
    out = []
    for _ in range(n):
        u = rng.random()
        if u < MIX[0][1]:
            out.append(CONTROL)
        elif u < MIX[0][1] + MIX[1][1]:
            out.append(rng.randint(*IMAGE))
        else:
            out.append(rng.randint(*FRAME))
    return out


# --------------------------------------------------------------------------
# the writer (child process)
# --------------------------------------------------------------------------
def _touch_every_slot(seg: Any, w: Any) -> None:
    """Stores a byte in every page of every slot through loans that are then
    discarded.  A process's first store to a page of its shared mapping
    faults once; the one-class segment has five times the pages, and a
    short stream would otherwise measure those faults, not the steady state."""
    loans = []
    try:
        for c in seg.info()["classes"]:         # smallest first: each loan lands in its own class
            for _ in range(c["slot_count"]):
                loans.append(w.loan(nbytes=c["slot_capacity"]))
        for loan in loans:
            m = memoryview(loan)
            m[::PAGE] = bytes(len(range(0, len(m), PAGE)))
            m.release()
    finally:
        for loan in loans:
            loan.discard()


def _writer(ctrl: Any, a: tuple) -> dict:
    import numpy as np

    import zdshm

    from .peers import force_pickle5

    q, timeout = a
    force_pickle5()
    child_ready(ctrl)
    while True:
        msg = ctrl.recv()
        if msg[0] == "stop":
            break
        _, kind, name, sizes, warm = msg
        seg = w = None
        try:
            if kind == "mp.Queue":
                put, empty, u8 = q.put, np.empty, np.uint8

                def write_one(i: int) -> None:
                    arr = empty(sizes[i], u8)
                    fill(arr, i, "touch")
                    put(arr)
            else:
                seg = zdshm.PosixSegment.attach(name)
                w = seg.writer(overflow="block", timeout=timeout)
                _touch_every_slot(seg, w)
                la, u8 = w.loan_array, np.uint8

                def write_one(i: int) -> None:
                    with la((sizes[i],), u8) as arr:
                        fill(arr, i, "touch")
            ctrl.send(("ready", {}))
            ud = timed_writes(write_one, len(sizes) - warm, warm)
            ctrl.send(("step", ud))
            ctrl.recv()                 # ("release",): the reader has every message
        finally:
            for o in (w, seg):
                if o is not None:
                    o.close()
    q.close()
    q.join_thread()
    return {}


# --------------------------------------------------------------------------
# the reader (parent, measuring)
# --------------------------------------------------------------------------
def _read_zdshm(seg: Any, r: Any, sizes: list[int], n: int, warm: int) -> tuple[dict, list[int]]:
    import numpy as np

    classes = seg.info()["classes"]
    class_of = [k for k, c in enumerate(classes) for _ in range(c["slot_count"])]
    per_class = [0] * len(classes)
    take, asarray = r.take, np.asarray

    def read_one(i: int) -> int:
        s = take()
        a = asarray(s)
        bad = check(a, i, "touch") or int(a.shape[0] != sizes[i])
        del a
        per_class[class_of[s.slot]] += 1
        s.release()
        return bad
    return timed_reads(read_one, n, warm), per_class


def _read_queue(q: Any, sizes: list[int], n: int, warm: int) -> dict:
    get = q.get

    def read_one(i: int) -> int:
        a = get()
        return check(a, i, "touch") or int(a.shape[0] != sizes[i])
    return timed_reads(read_one, n, warm)


def classes_run(rounds: int, n: int, n_queue: int, warm: int, timeout: float,
                progress: Any = None) -> dict[str, list[dict]]:
    """`rounds` interleaved rounds of the three transports (the order turns
    each round) over the first warm + n messages of the stream (mp.Queue,
    tens of times slower, over the first warm + n_queue).  Returns, per
    transport, one dict per round: msgs_per_s, count, elapsed_ns, errors,
    usage, and for zdshm the memory figures and per-class counts."""
    import zdshm

    from .peers import force_pickle5
    from .common import spawn_context

    force_pickle5()
    sizes = message_sizes(warm + max(n, n_queue))
    q = spawn_context().Queue(maxsize=DEPTH)
    out: dict[str, list[dict]] = {k: [] for k in TRANSPORTS}
    try:
        with Child(_writer, (q, timeout), timeout=timeout * (3 * rounds + 1), label="classes writer") as ch:
            ch.expect("ready")
            for rnd in range(rounds):
                order = TRANSPORTS if rnd % 2 == 0 else TRANSPORTS[::-1]
                for kind in order:
                    count = n_queue if kind == "mp.Queue" else n
                    todo = sizes[:warm + count]
                    if progress:
                        progress.start(f"classes {kind:<9} {warm + count} messages (round {rnd + 1}/{rounds})")
                    rec: dict[str, Any] = {}
                    seg = r = None
                    name = ""
                    try:
                        if kind != "mp.Queue":
                            name = unique_name("classes")
                            seg = zdshm.PosixSegment.create(name, classes=LAYOUTS[kind])
                            r = seg.reader()
                        ch.send(("run", kind, name, todo, warm))
                        ch.expect("ready")
                        time.sleep(WARM_PAUSE_S)   # the writer fills every buffer first
                        if seg is not None:
                            res, per_class = _read_zdshm(seg, r, todo, count, warm)
                            st = os.stat(os.path.join("/dev/shm", name))
                            rec.update(shm_resident_bytes=st.st_blocks * 512,
                                       shm_total_bytes=seg.info()["total_size"],
                                       per_class_messages=per_class)
                        else:
                            res = _read_queue(q, todo, count, warm)
                        rec["peer"] = ch.expect("step")
                        ch.send(("release",))
                    finally:
                        for o in (r, seg):
                            if o is not None:
                                with contextlib.suppress(Exception):
                                    o.close()
                        if name:
                            with contextlib.suppress(FileNotFoundError):
                                zdshm.unlink(name)
                    rec.update(res, count=count, msgs_per_s=count * 1e9 / res["elapsed_ns"])
                    out[kind].append(rec)
                    if progress:
                        extra = ""
                        if "shm_resident_bytes" in rec:
                            extra = f", {rec['shm_resident_bytes'] / 2**20:6.1f} MiB in /dev/shm"
                        progress.end(f"{rec['msgs_per_s']:9.0f} msgs/s{extra}"
                                     + (f"  ERRORS {rec['errors']}" if rec["errors"] else ""))
            ch.send(("stop",))
            ch.result()
    finally:
        with contextlib.suppress(Exception):
            q.close()
            q.join_thread()
    return out


def summary(rounds: list[dict]) -> dict:
    """The median round of one transport, with every round's rate."""
    by_rate = sorted(rounds, key=lambda r: r["msgs_per_s"])
    mid = dict(by_rate[len(by_rate) // 2])
    mid["rounds_msgs_per_s"] = [r["msgs_per_s"] for r in rounds]
    mid["median_msgs_per_s"] = median(mid["rounds_msgs_per_s"])
    mid["errors"] = sum(r["errors"] for r in rounds)
    # CPU time per message of both processes: what the transport costs, much
    # less sensitive than the rate to other processes taking the CPUs
    mid["rounds_cpu_ns_per_msg"] = [(r["measuring"] or {}).get("cpu_ns_per_msg", math.nan)
                                    + (r["peer"] or {}).get("cpu_ns_per_msg", math.nan) for r in rounds]
    mid["cpu_ns_per_msg"] = median(mid["rounds_cpu_ns_per_msg"])
    return mid
