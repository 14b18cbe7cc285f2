"""Worker processes for the cross-process property tests.

A :class:`WorkerPool` keeps a few processes (multiprocessing "spawn") alive
across hypothesis examples, since starting one costs ~100 ms.  The parent
sends each worker one command at a time over a pipe and waits for the
answer with a watchdog timeout; a worker that does not answer in time is
killed, the pool is rebuilt and the test fails with the command it was
running.

Commands (tuples):
    ("attach", name, role, overflow)  open the posix segment, make a role
                                      (zdshm.testing.schedule)
    ("step", op)                      run one schedule operation -> outcome
    ("run_writer", payloads, overflow, timeout)
                                      publish every payload -> [sn, ...]
    ("run_reader", n, timeout)        take n samples, releasing each
                                      -> [(sn, bytes), ...], stats
    ("detach",)                       close the role and the segment
    ("stop",)                         exit
Each command travels as (seq, command); the answer is (seq, "ok", value)
or (seq, "error", formatted traceback).  An answer with an older seq (a
command whose caller gave up on it) is skipped, so one failed example
cannot feed stale answers to the next.
"""
from __future__ import annotations

import multiprocessing as mp
import time
import traceback

WATCHDOG_S = 20.0


def _serve(conn) -> None:
    import zdshm
    from zdshm.testing.schedule import ReaderRole, WriterRole, normalize_stats

    seg = None
    role = None
    while True:
        try:
            seq, cmd = conn.recv()
        except EOFError:
            return
        try:
            kind = cmd[0]
            if kind == "stop":
                conn.send((seq, "ok", None))
                return
            if kind == "attach":
                _, name, which, overflow = cmd
                seg = zdshm.PosixSegment.attach(name)
                role = (WriterRole(seg, overflow) if which == "writer"
                        else ReaderRole(seg) if which == "reader" else None)
                value = None
            elif kind == "step":
                value = role.step(cmd[1])
            elif kind == "join":
                reader = seg.reader(join_last=cmd[1])
                role = reader
                value = reader.index
            elif kind == "run_writer":
                _, payloads, overflow, timeout = cmd
                w = seg.writer(overflow=overflow, timeout=timeout)
                value = [w.publish(p) for p in payloads]
            elif kind == "run_reader":
                _, n, timeout = cmd
                got = []
                for _ in range(n):
                    with role.take(timeout=timeout) as s:
                        got.append((s.sn, s.tobytes()))
                value = (got, normalize_stats(role.stats()))
            elif kind == "detach":
                if role is not None:
                    role.close()
                role = None
                if seg is not None:
                    seg.close()
                seg = None
                value = None
            else:
                raise ValueError(f"unknown command {cmd!r}")
            conn.send((seq, "ok", value))
        except BaseException:  # noqa: BLE001 - reported to the parent
            conn.send((seq, "error", traceback.format_exc()))


class WorkerError(AssertionError):
    pass


class WorkerPool:
    def __init__(self, size: int) -> None:
        self.size = size
        self.ctx = mp.get_context("spawn")
        self.procs: list = []
        self.conns: list = []
        self.seq: list[int] = []
        self._start()

    def _start(self) -> None:
        for _ in range(self.size):
            parent, child = self.ctx.Pipe()
            p = self.ctx.Process(target=_serve, args=(child,), daemon=True)
            p.start()
            child.close()
            self.procs.append(p)
            self.conns.append(parent)
            self.seq.append(0)

    def send(self, i: int, cmd) -> None:
        self.seq[i] += 1
        self.conns[i].send((self.seq[i], cmd))

    def recv(self, i: int, cmd, timeout: float = WATCHDOG_S):
        """The answer to the last command sent to worker i."""
        conn = self.conns[i]
        deadline = time.monotonic() + timeout
        while True:
            if not conn.poll(max(0.0, deadline - time.monotonic())):
                self.restart()
                raise WorkerError(f"worker {i} did not answer {cmd!r} within {timeout} s "
                                  "(watchdog): killed")
            try:
                seq, status, value = conn.recv()
            except EOFError:
                self.restart()
                raise WorkerError(f"worker {i} died while running {cmd!r}") from None
            if seq == self.seq[i]:
                break                           # else: a stale answer, skipped
        if status != "ok":
            raise WorkerError(f"worker {i} failed on {cmd!r}:\n{value}")
        return value

    def call(self, i: int, cmd, timeout: float = WATCHDOG_S):
        self.send(i, cmd)
        return self.recv(i, cmd, timeout)

    def kill(self, i: int) -> None:
        """SIGKILLs worker i (a crash: no cleanup runs) and starts a fresh
        one in its place, attached to nothing."""
        p = self.procs[i]
        p.kill()
        p.join(10)
        self.conns[i].close()
        parent, child = self.ctx.Pipe()
        q = self.ctx.Process(target=_serve, args=(child,), daemon=True)
        q.start()
        child.close()
        self.procs[i] = q
        self.conns[i] = parent

    def restart(self) -> None:
        self.close(kill=True)
        self._start()

    def close(self, kill: bool = False) -> None:
        for i, (p, c) in enumerate(zip(self.procs, self.conns)):
            if not kill and p.is_alive():
                try:
                    c.send((0, ("stop",)))
                    c.poll(5)
                except (OSError, EOFError):
                    pass
            p.join(0 if kill else 5)
            if p.is_alive():
                p.kill()
                p.join(5)
            c.close()
        self.procs.clear()
        self.conns.clear()
        self.seq.clear()
