"""Participants of the crash-restart soak (importable by "spawn").

Each role runs until it is SIGKILLed (or its parent is gone) and reports
through a shared array of counters (no locks: a process killed while holding
a lock would block the others) and, for anything unexpected, one line per
event in its own file of the error folder.

Payload: header (incarnation u64, sn u64, body length u32), body, then
zlib.crc32 of header + body (u32).  The incarnation is the segment's
created_realtime_ns, so a sample is also checked against the segment it came
from.  The writer predicts the sequence number of its next commit (it is the
only writer) and checks what commit returns.
"""
from __future__ import annotations

import os
import random
import struct
import sys
import time
import traceback
import zlib

import zdshm

HEAD = struct.Struct("<QQI")
CRC = struct.Struct("<I")
BODY_MAX = 200
CAPACITY = HEAD.size + BODY_MAX + CRC.size
SLOTS = 8

# counters: one row per role, these columns
ROLES = ("creator", "writer", "r0", "r1", "r2")
COLS = ("lives", "items", "torn", "dup", "reorder", "false_dead", "errors")
LIVES, ITEMS, TORN, DUP, REORDER, FALSE_DEAD, ERRORS = range(len(COLS))


def cell(role: str, col: int) -> int:
    return ROLES.index(role) * len(COLS) + col


class _Ctx:
    def __init__(self, role: str, counters, errdir: str, ppid: int) -> None:
        self.role, self.counters, self.ppid = role, counters, ppid
        self.errfile = os.path.join(errdir, f"{role}-{os.getpid()}.txt")

    def add(self, col: int, n: int = 1) -> None:
        self.counters[cell(self.role, col)] += n

    def report(self, col: int, what: str) -> None:
        self.add(col)
        with open(self.errfile, "a") as f:
            f.write(f"{self.role} pid {os.getpid()}: {COLS[col]}: {what}\n")

    def orphaned(self) -> bool:
        return os.getppid() != self.ppid


def _run(fn, role: str, name: str, counters, errdir: str, ppid: int) -> None:
    ctx = _Ctx(role, counters, errdir, ppid)
    ctx.add(LIVES)
    try:
        fn(ctx, name)
    except BaseException:                        # noqa: BLE001 - report it all
        ctx.report(ERRORS, traceback.format_exc())
        sys.exit(1)


def _attach_live(ctx: _Ctx, name: str) -> zdshm.PosixSegment | None:
    """A handle on the segment under name once its creator is alive; None
    when the parent is gone."""
    while not ctx.orphaned():
        try:
            seg = zdshm.PosixSegment.attach(name)
        except (zdshm.SegmentNotFoundError, zdshm.CorruptSegmentError):
            time.sleep(0.005)                    # not there, or being created
            continue
        if seg.creator_alive:
            return seg
        seg.close()                              # stale: let it be replaced
        time.sleep(0.01)
    return None


def _creator(ctx: _Ctx, name: str) -> None:
    while True:
        if ctx.orphaned():
            return
        try:
            seg = zdshm.PosixSegment.create(name, SLOTS, CAPACITY, replace_stale=True)
            break
        except zdshm.SegmentExistsError:
            time.sleep(0.005)                    # alive, or still attached
    ctx.add(ITEMS)                               # one more incarnation
    while not ctx.orphaned():
        time.sleep(0.05)
    seg.close()


def _writer(ctx: _Ctx, name: str) -> None:
    rng = random.Random(os.getpid())
    while True:
        seg = _attach_live(ctx, name)
        if seg is None:
            return
        info = seg.info()
        inc, sn = info["created_realtime_ns"], info["next_sn"]
        w = seg.writer(overflow="block", timeout=0.05)
        while seg.creator_alive and not ctx.orphaned():
            body = rng.randbytes(rng.randrange(BODY_MAX + 1))
            msg = HEAD.pack(inc, sn, len(body)) + body
            try:
                got = w.publish(msg + CRC.pack(zlib.crc32(msg)))
            except zdshm.WaitTimeoutError:
                continue                         # readers lag, or one died
            if got != sn:
                ctx.report(ERRORS, f"commit returned sn {got}, expected {sn}")
                sn = got
            sn += 1
            ctx.add(ITEMS)
            time.sleep(0.0005)                   # leave the cores to the readers
        seg.close()


def _check(ctx: _Ctx, inc: int, s: zdshm.Sample) -> bool:
    data = s.tobytes()
    if len(data) < HEAD.size + CRC.size:
        ctx.report(TORN, f"sn {s.sn}: {len(data)} bytes")
        return False
    h_inc, h_sn, n = HEAD.unpack_from(data)
    if (n != len(data) - HEAD.size - CRC.size or h_inc != inc or h_sn != s.sn
            or CRC.unpack_from(data, len(data) - CRC.size)[0]
            != zlib.crc32(data[:-CRC.size])):
        ctx.report(TORN, f"sn {s.sn}: header ({h_inc}, {h_sn}, {n}), "
                         f"{len(data)} bytes, segment {inc}")
        return False
    return True


def _reader(ctx: _Ctx, name: str) -> None:
    while True:
        seg = _attach_live(ctx, name)
        if seg is None:
            return
        inc = seg.info()["created_realtime_ns"]
        r = seg.reader()
        last, seen = -1, set()
        try:
            for s in r:
                if _check(ctx, inc, s):
                    if s.sn in seen:
                        ctx.report(DUP, f"sn {s.sn} again")
                    elif s.sn < last:
                        ctx.report(REORDER, f"sn {s.sn} after {last}")
                    seen.add(s.sn)
                    last = max(last, s.sn)
                    ctx.add(ITEMS)
                s.release()
                if ctx.orphaned():
                    return
        except zdshm.CreatorDeadError:
            if seg.creator_alive:
                ctx.report(FALSE_DEAD, "CreatorDeadError with the creator alive")
        r.close()
        seg.close()


def creator(*args) -> None:
    _run(_creator, *args)


def writer(*args) -> None:
    _run(_writer, *args)


def reader(*args) -> None:
    _run(_reader, *args)
