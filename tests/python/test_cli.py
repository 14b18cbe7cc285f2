"""python -m zdshm: list, describe, rm, bench, demo (incl. Ctrl-C cleanup)."""
from __future__ import annotations

import importlib
import json
import re
import os
import signal
import subprocess
import sys
import time

import pytest

import zdshm

pytestmark = pytest.mark.timeout(120)


def run(*args, timeout=60):
    # bytes, decoded by hand: text mode would turn the progress line's \r into \n
    p = subprocess.run([sys.executable, "-m", "zdshm", *args], capture_output=True,
                       timeout=timeout)
    p.stdout, p.stderr = p.stdout.decode(), p.stderr.decode()
    return p


def test_usage():
    p = run()
    assert p.returncode == 2 and "demo" in p.stderr
    assert run("--help").returncode == 0
    assert run("nonsense").returncode == 2


def test_version():
    for flag in ("--version", "-V"):
        p = run(flag)
        assert p.returncode == 0, p.stderr
        assert p.stdout == f"zdshm {zdshm.__version__}\n"


def test_list_describe_rm(posix_factory):
    seg = posix_factory(slot_count=3, slot_capacity=100)
    p = run("list")
    assert p.returncode == 0 and seg.name in p.stdout
    p = run("describe", seg.name)
    assert p.returncode == 0
    d = json.loads(p.stdout)
    assert d["slot_count"] == 3 and d["slot_capacity"] == 100 and d["name"] == seg.name
    p = run("rm", seg.name)
    assert p.returncode == 0
    assert seg.name not in zdshm.list_segments()
    p = run("rm", seg.name)
    assert p.returncode == 1 and "no such segment" in p.stderr
    p = run("describe", "bad/name")
    assert p.returncode == 1 and "bad/name" in p.stderr


def _list_line(name):
    p = run("list")
    assert p.returncode == 0, p.stderr
    header = p.stdout.splitlines()[0].split()
    line = next(ln for ln in p.stdout.splitlines() if ln.startswith(name + " "))
    return dict(zip(header, line.split()))


def test_list_shows_liveness_and_rm_stale_keeps_live(posix_factory):
    seg = posix_factory(slot_count=2, slot_capacity=16)
    readers = [seg.reader() for _ in range(2)]
    row = _list_line(seg.name)
    assert row["STATE"] == "ALIVE" and row["READERS"] == "2" and row["ATTACHED"] == "1"
    p = run("rm", "--stale", seg.name)
    assert p.returncode == 0 and f"kept {seg.name}: its creator" in p.stdout
    assert seg.name in zdshm.list_segments()
    for r in readers:
        r.close()
    seg.close()                          # goodbye: the creator's lock is gone
    row = _list_line(seg.name)
    assert row["STATE"] == "STALE" and row["READERS"] == "0" and row["GOODBYE"] == "True"
    p = run("rm", "--stale", seg.name)
    assert p.returncode == 0 and f"removed {seg.name} (stale" in p.stdout, p.stdout
    assert seg.name not in zdshm.list_segments()
    p = run("rm")
    assert p.returncode == 2 and "--stale" in p.stderr


def test_rm_stale_without_names_scans_every_segment(posix_factory, monkeypatch, capsys):
    from zdshm import cli

    live = posix_factory(slot_count=2, slot_capacity=16)
    stale = posix_factory(slot_count=2, slot_capacity=16)
    stale.close()
    # only this test's segments: others on the machine are not ours to remove
    monkeypatch.setattr(zdshm, "list_segments", lambda: [live.name, stale.name])
    assert cli.main(["rm", "--stale"]) == 0
    out = capsys.readouterr().out
    assert f"kept {live.name}" in out and f"removed {stale.name}" in out
    names = os.listdir("/dev/shm")
    assert live.name in names and stale.name not in names


def test_bench_points_to_the_repository():
    # The benchmarks are project tooling, not installed: the subcommand says
    # where they are and how to run them, and fails so a script notices.
    for args in (("bench",), ("bench", "--quick")):
        p = run(*args)
        assert p.returncode == 2, (args, p.returncode, p.stderr)
        lines = p.stderr.strip().splitlines()
        assert len(lines) == 2, lines
        assert "benchmarks/" in lines[0] and "python -m benchmarks" in lines[1], lines
        assert p.stdout == ""
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("zdshm.bench")


def _demo_segments() -> list[str]:
    return [n for n in os.listdir("/dev/shm") if n.startswith("zdshm-demo-")]


def test_demo_short_run():
    before = _demo_segments()
    p = run("demo", "--seconds", "0.5", "--shape", "64", "64", "3", timeout=120)
    assert p.returncode == 0, p.stderr
    assert "zdshm (posix shm):" in p.stdout
    assert "multiprocessing.Queue:" in p.stdout
    assert "ratio:" in p.stdout
    # stderr is a pipe here: plain lines, no carriage returns.
    assert "\r" not in p.stderr
    lines = [ln for ln in p.stderr.splitlines() if "frames/s" in ln]
    assert len(lines) >= 2, p.stderr            # at least one per leg
    assert _demo_segments() == before


def test_demo_progress_is_live_on_a_terminal():
    import pty

    master, slave = pty.openpty()
    try:
        p = subprocess.run([sys.executable, "-m", "zdshm", "demo", "--seconds", "0.5",
                            "--shape", "64", "64", "3"], stdout=subprocess.PIPE,
                           stderr=slave, timeout=120)
        os.close(slave)
        slave = -1
        chunks = []
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:             # EIO: the child side is closed
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        if slave >= 0:
            os.close(slave)
        os.close(master)
    assert p.returncode == 0
    err = b"".join(chunks).decode()
    # A carriage return that is not the terminal's own "\r\n" rewrites the line.
    assert re.search("\r(?!\n)", err) and "frames/s" in err, err


def test_demo_cleans_up_on_ctrl_c():
    before = _demo_segments()
    proc = subprocess.Popen([sys.executable, "-m", "zdshm", "demo", "--seconds", "30",
                             "--shape", "32", "32"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(_demo_segments()) == len(before):
            time.sleep(0.05)
        assert len(_demo_segments()) > len(before), "the demo did not create its segment"
        time.sleep(1.0)
        os.killpg(proc.pid, signal.SIGINT)       # Ctrl-C reaches the whole group
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130, err
    assert "interrupted" in err
    assert _demo_segments() == before
