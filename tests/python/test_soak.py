"""Crash-restart soak: a creator, a writer and three readers (real processes,
start method "spawn") share one posix segment; each round SIGKILLs one of
them at random (seeded) and starts it again.  A new creator replaces the
stale segment (replace_stale=True) once everyone has let go of it; readers
end with CreatorDeadError and attach again; the writer notices through
Segment.creator_alive.

Checked: 0 torn payloads (sn, segment and CRC in the payload), 0 duplicated
and 0 reordered samples per reader registration, 0 false CreatorDeadError,
0 unexpected exits, 0 hangs (every round must see every reader receive new
samples within ROUND_TIMEOUT), 0 leaked /dev/shm names.

ZDSHM_SOAK_ROUNDS and ZDSHM_SOAK_SEED change the length and the draw.
"""
from __future__ import annotations

import glob
import multiprocessing as mp
import os
import random
import signal
import time

import pytest

import zdshm

import zdpy_soak as soak
from zdpy_support import unique_name

pytestmark = [pytest.mark.crossproc, pytest.mark.timeout(240)]

CTX = mp.get_context("spawn")
ROUNDS = int(os.environ.get("ZDSHM_SOAK_ROUNDS", "100"))
SEED = int(os.environ.get("ZDSHM_SOAK_SEED", "9"))
ROUND_TIMEOUT = 20.0       # seconds for a round to show progress: else a hang
PROGRESS = 3               # new samples every reader must receive per round
TARGETS = {"creator": soak.creator, "writer": soak.writer,
           "r0": soak.reader, "r1": soak.reader, "r2": soak.reader}
READERS = ("r0", "r1", "r2")


class Soak:
    def __init__(self, name: str, errdir: str) -> None:
        self.name, self.errdir = name, errdir
        self.counters = CTX.RawArray("q", len(soak.ROLES) * len(soak.COLS))
        self.procs: dict[str, mp.Process] = {}

    def value(self, role: str, col: int) -> int:
        return self.counters[soak.cell(role, col)]

    def start(self, role: str) -> None:
        p = CTX.Process(target=TARGETS[role], name=f"soak-{role}",
                        args=(role, self.name, self.counters, self.errdir, os.getpid()))
        p.start()
        self.procs[role] = p

    def kill(self, role: str) -> None:
        p = self.procs.pop(role)
        if p.is_alive():
            os.kill(p.pid, signal.SIGKILL)
        p.join(10)
        assert p.exitcode == -signal.SIGKILL, f"{role} exited with {p.exitcode}: {self.errors()}"

    def stop(self) -> None:
        for role in list(self.procs):
            self.kill(role)

    def errors(self) -> str:
        out = []
        for path in sorted(glob.glob(os.path.join(self.errdir, "*.txt"))):
            with open(path) as f:
                out.append(f.read())
        return "".join(out)[-4000:]

    def state(self) -> str:
        """Counters, and what the segment looks like, for a failure message."""
        out = " ".join(f"{r}: lives {self.value(r, soak.LIVES)} items "
                       f"{self.value(r, soak.ITEMS)};" for r in soak.ROLES)
        try:
            d = zdshm.describe(self.name)
            seg = zdshm.PosixSegment.attach(self.name)
            try:
                slots = [seg.slot_state(i) for i in range(seg.slot_count)]
            finally:
                seg.close()
            out += (f" segment: creator_alive {d['creator_alive']} live_readers "
                    f"{d['live_readers']} live_attachments {d['live_attachments']} "
                    f"active_mask {d['active_mask']:#x} next_sn {d['next_sn']} "
                    f"counters {d['counters']} slots {slots}")
        except zdshm.Error as exc:
            out += f" segment: {exc!r}"
        return out

    def wait_progress(self, victim: str, lives: int, rnd: int) -> float:
        """Waits until the restarted victim is running and every reader has
        received PROGRESS new samples; returns the time it took."""
        t0 = time.monotonic()
        base = {r: self.value(r, soak.ITEMS) for r in READERS}
        incarnations = self.value("creator", soak.ITEMS)
        while True:
            done = (self.value(victim, soak.LIVES) > lives
                    and all(self.value(r, soak.ITEMS) >= base[r] + PROGRESS
                            for r in READERS)
                    and (victim != "creator"
                         or self.value("creator", soak.ITEMS) > incarnations))
            if done:
                return time.monotonic() - t0
            for role, p in self.procs.items():
                assert p.exitcode is None, (
                    f"round {rnd}: {role} exited with {p.exitcode}: {self.errors()}")
            assert time.monotonic() - t0 < ROUND_TIMEOUT, (
                f"round {rnd} (seed {SEED}, killed {victim}) hangs: "
                f"{self.state()} {self.errors()}")
            time.sleep(0.002)


def test_crash_restart_soak(tmp_path):
    rng = random.Random(SEED)
    name = unique_name("soak")
    run = Soak(name, str(tmp_path))
    killed = {role: 0 for role in soak.ROLES}
    slowest = 0.0
    try:
        run.start("creator")
        for role in ("writer", *READERS):
            run.start(role)
        run.wait_progress("creator", 0, 0)
        for rnd in range(1, ROUNDS + 1):
            victim = rng.choice(soak.ROLES)
            time.sleep(rng.uniform(0.0, 0.02))   # kill at a random point
            lives = run.value(victim, soak.LIVES)
            run.kill(victim)
            killed[victim] += 1
            run.start(victim)
            slowest = max(slowest, run.wait_progress(victim, lives, rnd))
    finally:
        run.stop()
    print(f"soak: {ROUNDS} rounds (seed {SEED}), killed {killed}, slowest round "
          f"{slowest:.2f} s, samples " + " ".join(
              f"{r}={run.value(r, soak.ITEMS)}" for r in soak.ROLES))
    for col in (soak.TORN, soak.DUP, soak.REORDER, soak.FALSE_DEAD, soak.ERRORS):
        assert sum(run.value(r, col) for r in soak.ROLES) == 0, (
            f"{soak.COLS[col]}: {run.errors()}")
    assert run.errors() == ""
    assert all(killed[r] > 0 for r in soak.ROLES) or ROUNDS < 20
    # every participant is dead: what is left is stale and goes
    assert zdshm.describe(name)["live_attachments"] == 0
    assert zdshm.unlink_stale(name) is True
    assert not [n for n in os.listdir("/dev/shm") if n.startswith(name)]
