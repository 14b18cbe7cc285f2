"""A sweep of hostile segments: a small posix segment is captured as raw
bytes, then each trial writes a mutated copy into a fresh /dev/shm object
and a child process attaches it, registers a reader with join_last, takes
and releases a few samples, loans and commits one, and closes.

Trials: every byte of the segment header, of the reader table, of the
attachment table and of one committed slot header set to 0x00, 0xFF, 0x7F
and 0x80 (a value equal to the original byte is skipped), plus seeded
random multi-byte mutations anywhere in the control area (header, tables,
slot headers).  No trial may crash the child (death by a signal) or hang
it (a trial longer than HANG_S seconds).

The trials run in batches inside long-lived worker processes (this file run
as a script), each reporting "S <trial>" before and "F <trial> <outcome>"
after every trial on its stdout.  The parent kills a worker stuck in a
trial for more than HANG_S seconds, records the hang and starts a new
worker at the next trial; a worker that dies of a signal is a crash,
recorded with its trial, and is restarted the same way.
"""
from __future__ import annotations

import collections
import fcntl
import os
import random
import selectors
import signal
import struct
import subprocess
import sys
import tempfile
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
SHM = "/dev/shm"

HANG_S = 10.0
WORKERS = 2
RANDOM_TRIALS = 2000
SEED = 0x5EED
VALUES = (0x00, 0xFF, 0x7F, 0x80)

# The layout of a 4 x 256 segment (the shared-memory layout is an ABI).
HEADER = (0, 640)                   # up to the end of the counters; the rest is reserved
CLASSES = (1024, 2 * 32)            # the class table: its one entry and the next
READERS = (2048, 64 * 64)           # after the 2048-byte header
ATTACH = (2048 + 64 * 64, 64 * 64)
RING = (2048 + 2 * 64 * 64, 8 * 8)  # ring_size 8 for 4 slots
MAPS = (RING[0] + RING[1], 2 * 64)  # the free map, then the old map
SLOTS_OFFSET = 12288
SLOT_STRIDE = 384                   # align64(128-byte header + 256)
SLOT_HEADER = 128
SLOT_COUNT = 4
TOTAL = SLOTS_OFFSET + SLOT_COUNT * SLOT_STRIDE
CONTROL = [HEADER, CLASSES, (READERS[0], READERS[1] + ATTACH[1]), RING, MAPS] + [
    (SLOTS_OFFSET + i * SLOT_STRIDE, SLOT_HEADER) for i in range(SLOT_COUNT)]


def committed_slot(base: bytes) -> int:
    """Offset of the slot header holding the oldest committed sample."""
    best = None
    for i in range(SLOT_COUNT):
        off = SLOTS_OFFSET + i * SLOT_STRIDE
        state = int.from_bytes(base[off:off + 8], "little")
        sn = int.from_bytes(base[off + 32:off + 40], "little")
        if state & 3 == 2 and (best is None or sn < best[0]):
            best = (sn, off)
    assert best is not None, "the base segment has no committed slot"
    return best[1]


def systematic(base: bytes) -> list[tuple[int, int]]:
    """(offset, value) of every single-byte trial that changes the base."""
    regions = [HEADER, CLASSES, READERS, ATTACH, RING, MAPS,
               (committed_slot(base), SLOT_HEADER)]
    return [(off, v) for start, n in regions for off in range(start, start + n)
            for v in VALUES if base[off] != v]


def random_mutation(base: bytes, j: int) -> bytearray:
    """1 to 4 spans of 1 to 16 bytes at seeded places in the control area,
    each random or one of the edge values repeated."""
    rng = random.Random(SEED * 1_000_003 + j)
    data = bytearray(base)
    for _ in range(rng.randint(1, 4)):
        start, n = CONTROL[rng.randrange(len(CONTROL))]
        width = rng.randint(1, 16)
        off = start + rng.randrange(n - width + 1) if width <= n else start
        if rng.random() < 0.5:
            span = bytes(rng.randrange(256) for _ in range(width))
        else:
            span = bytes([rng.choice(VALUES)]) * width
        data[off:off + width] = span
    return data


def trial_bytes(base: bytes, single: list[tuple[int, int]], i: int) -> bytes:
    if i < len(single):
        off, v = single[i]
        data = bytearray(base)
        data[off] = v
        return bytes(data)
    return bytes(random_mutation(base, i - len(single)))


def describe_trial(base: bytes, single: list[tuple[int, int]], i: int) -> str:
    if i < len(single):
        off, v = single[i]
        return f"trial {i}: byte {off} = 0x{v:02x}"
    data = random_mutation(base, i - len(single))
    changed = [k for k in range(len(base)) if data[k] != base[k]]
    return f"trial {i}: random mutation {i - len(single)} (bytes {changed[:24]})"


# ---- the worker (this file run as a script) ---------------------------------

def exercise(name: str) -> str:
    """Attach, read, write, close; returns a short outcome word."""
    import zdshm

    try:
        seg = zdshm.PosixSegment.attach(name)
    except zdshm.Error:
        return "rejected"
    outcome = "ok"
    reader = None
    try:
        try:
            reader = seg.reader(join_last=2)
        except zdshm.Error:
            outcome = "no-reader"
        if reader is not None:
            for k in range(4):
                try:
                    s = reader.try_take() if k < 3 else reader.take(timeout=0.0002)
                except zdshm.WaitTimeoutError:
                    break
                except zdshm.Error:
                    outcome = "take-error"
                    continue
                if s is None:
                    continue
                s.tobytes()
                s.release()
        try:
            with seg.writer(overflow="fail") as w:
                loan = w.loan(timeout=0)
                with memoryview(loan) as m:
                    m[:4] = b"evil"
                loan.commit(4)
        except zdshm.Error:
            pass
        if reader is not None:
            try:
                s = reader.try_take()
                if s is not None:
                    s.release()
            except zdshm.Error:
                pass
    finally:
        if reader is not None:
            try:
                reader.close()
            except zdshm.Error:
                pass
        try:
            seg.close()
        except zdshm.Error:
            seg.__exit__(None, None, None)
    return outcome


F_OFD_SETLK = 37          # <fcntl.h> on Linux


def hold_creator_lock(fd: int) -> None:
    """Takes the creator's liveness lock byte (after the reader and
    attachment locks) with an open-file-description lock, as a creator does."""
    import zdshm

    byte = zdshm.READER_MAX + zdshm.ATTACH_MAX
    # struct flock on Linux x86_64/aarch64: short type, short whence,
    # off_t start, off_t len, pid_t pid (0 for OFD locks).
    fl = struct.pack("hh4xqqi4x", fcntl.F_WRLCK, os.SEEK_SET, byte, 1, 0)
    fcntl.fcntl(fd, F_OFD_SETLK, fl)


def worker(base_path: str, tag: str, start: int, step: int, stop: int) -> None:
    with open(base_path, "rb") as f:
        base = f.read()
    single = systematic(base)
    out = sys.stdout
    for i in range(start, stop, step):
        name = f"{tag}-{i}"
        path = os.path.join(SHM, name)
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        try:
            os.write(fd, trial_bytes(base, single, i))
            # Stand in for a live creator: hold its liveness lock, so the
            # takes are not ended early by CreatorDeadError.
            hold_creator_lock(fd)
            out.write(f"S {i}\n")
            out.flush()
            try:
                outcome = exercise(name)
            finally:
                try:
                    os.unlink(path)
                except FileNotFoundError:   # removed by a cleaner of stale segments
                    outcome = "vanished"
        finally:
            os.close(fd)
        out.write(f"F {i} {outcome}\n")
        out.flush()


# ---- the parent -------------------------------------------------------------

def make_base(path: str) -> bytes:
    """4 x 256: one registered reader, two committed samples, one slot
    loaned by a second handle; the raw bytes while all of it is live."""
    import zdshm
    from zdpy_support import unique_name

    name = unique_name("sweepbase")
    seg = zdshm.PosixSegment.create(name, SLOT_COUNT, 256)
    try:
        info = seg.info()
        assert (info["slots_offset"], info["slot_stride"], info["ring_size"]) == \
            (SLOTS_OFFSET, SLOT_STRIDE, RING[1] // 8), "the layout constants above are stale"
        reader = seg.reader()
        with seg.writer(overflow="fail") as w:
            w.publish(b"first sample")
            w.publish(b"second")
        other = zdshm.PosixSegment.attach(name)
        loan = other.writer(overflow="fail").loan(timeout=0)
        with open(os.path.join(SHM, name), "rb") as f:
            base = f.read()
        loan.discard()
        other.close()
        reader.close()
    finally:
        seg.close()
        zdshm.unlink(name)
    assert len(base) == TOTAL
    with open(path, "wb") as f:
        f.write(base)
    return base


class Worker:
    def __init__(self, base_path: str, tag: str, start: int, step: int,
                 stop: int, errlog) -> None:
        self.tag, self.step, self.stop = tag, step, stop
        self.current: int | None = None
        self.since = 0.0
        self.buf = b""
        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), base_path, tag,
             str(start), str(step), str(stop)],
            stdout=subprocess.PIPE, stderr=errlog, cwd=HERE)

    def lines(self, chunk: bytes) -> list[str]:
        self.buf += chunk
        *done, self.buf = self.buf.split(b"\n")
        return [d.decode() for d in done]


def run_sweep(tmp: str):
    base_path = os.path.join(tmp, "base.bin")
    base = make_base(base_path)
    single = systematic(base)
    total = len(single) + RANDOM_TRIALS
    tag = f"zdpytest-{os.getpid()}-sweep"
    outcomes: collections.Counter[str] = collections.Counter()
    crashes: list[str] = []
    hangs: list[str] = []
    finished = 0
    errlog = open(os.path.join(tmp, "workers.err"), "w+b")
    sel = selectors.DefaultSelector()

    def start(k_start: int, step: int) -> None:
        if k_start < total:
            w = Worker(base_path, tag, k_start, step, total, errlog)
            sel.register(w.proc.stdout, selectors.EVENT_READ, w)

    def forget(w: Worker) -> None:
        sel.unregister(w.proc.stdout)
        w.proc.stdout.close()
        try:
            os.unlink(os.path.join(SHM, f"{w.tag}-{w.current}"))
        except FileNotFoundError:
            pass

    for k in range(WORKERS):
        start(k, WORKERS)
    try:
        while sel.get_map():
            for key, _ in sel.select(timeout=0.5):
                w = key.data
                chunk = os.read(key.fileobj.fileno(), 65536)
                for line in w.lines(chunk):
                    kind, i, *rest = line.split()
                    if kind == "S":
                        w.current, w.since = int(i), time.monotonic()
                    else:
                        w.current = None
                        finished += 1
                        outcomes[rest[0]] += 1
                if chunk:
                    continue
                rc = w.proc.wait()
                cur = w.current
                forget(w)
                if rc < 0 and cur is not None:
                    crashes.append(f"{describe_trial(base, single, cur)}: "
                                   f"{signal.Signals(-rc).name}")
                    start(cur + w.step, w.step)
                elif rc != 0:
                    errlog.seek(0)
                    raise AssertionError(
                        f"sweep worker failed (exit {rc}):\n"
                        f"{errlog.read().decode(errors='replace')[-4000:]}")
            now = time.monotonic()
            for key in list(sel.get_map().values()):
                w = key.data
                if w.current is not None and now - w.since > HANG_S:
                    cur = w.current
                    w.proc.kill()
                    w.proc.wait()
                    forget(w)
                    hangs.append(describe_trial(base, single, cur))
                    start(cur + w.step, w.step)
    finally:
        for key in list(sel.get_map().values()):
            key.data.proc.kill()
            key.data.proc.wait()
            forget(key.data)
        errlog.close()
    return total, finished, outcomes, crashes, hangs


def test_hostile_segment_sweep():
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        total, finished, outcomes, crashes, hangs = run_sweep(tmp)
    took = time.monotonic() - t0
    summary = (f"{total} trials in {took:.1f} s: {len(crashes)} crashes, "
               f"{len(hangs)} hangs; outcomes {dict(outcomes)}")
    assert not crashes and not hangs, (
        summary + "\ncrashes:\n  " + "\n  ".join(crashes[:20]) +
        "\nhangs:\n  " + "\n  ".join(hangs[:20]))
    assert finished == total, summary
    # The sweep must reach the take paths, not only attach's validation.
    assert outcomes["ok"] > total // 4, summary


# ---- one hostile pin, through the Python surface, on both backends --------

def hostile_pin_child(backend: str, name: str) -> None:
    """The taking reader's pin bit set on the oldest unread sample: the
    try_take that spun forever with the GIL held now raises
    CorruptSegmentError at once, counts the drop, and the next sample
    follows."""
    import ctypes

    import zdshm

    if backend == "memory":
        seg = zdshm.MemorySegment(SLOT_COUNT, 256)
    else:
        seg = zdshm.PosixSegment.create(name, SLOT_COUNT, 256)
    try:
        r = seg.reader()
        w = seg.writer(overflow="fail")
        loan = w.loan(timeout=0)
        with memoryview(loan) as m:
            m[:5] = b"first"
        header = loan.address - SLOT_HEADER     # the slot header
        loan.commit(5)
        w.publish(b"second")
        pins = ctypes.c_uint64.from_address(header + 16)
        pins.value = 1 << r.index
        t0 = time.monotonic()
        try:
            r.try_take()
        except zdshm.CorruptSegmentError:
            pass
        else:
            raise AssertionError("try_take did not report the hostile pin")
        assert time.monotonic() - t0 < 1.0
        assert seg.info()["counters"]["corrupt_dropped"] == 1
        s = r.try_take()
        assert s is not None and s.tobytes() == b"second", s
        s.release()
        assert r.try_take() is None
        pins.value = 0
        r.close()
        w.close()
    finally:
        seg.close()
        if backend == "posix":
            zdshm.unlink(name)


@pytest.mark.parametrize("backend", ["memory", "posix"])
def test_hostile_reader_pin_try_take(backend):
    from zdpy_support import unique_name

    name = unique_name("pin")
    try:
        res = subprocess.run([sys.executable, os.path.abspath(__file__), "pin",
                              backend, name], cwd=HERE, capture_output=True,
                             text=True, timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail("try_take on a hostile pin hung (killed after 30 s)")
    finally:
        if os.path.exists(os.path.join(SHM, name)):
            os.unlink(os.path.join(SHM, name))
    assert res.returncode == 0, res.stderr[-3000:]


if __name__ == "__main__":
    if sys.argv[1] == "pin":
        hostile_pin_child(sys.argv[2], sys.argv[3])
    else:
        worker(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]),
               int(sys.argv[5]))
