"""The README's tour runs verbatim: the producer block on its own, and the
consumer block in a second process against a producer.  Both must end
cleanly and leave /dev/shm as they found it."""
from __future__ import annotations

import pathlib
import re
import subprocess
import sys
import time

import numpy as np
import pytest

import zdshm

from zdpy_support import shm_listing, unique_name

pytestmark = pytest.mark.timeout(120)

README = pathlib.Path(__file__).resolve().parents[2] / "README.md"
WATCHDOG = 60.0


def _tour_blocks() -> list[str]:
    text = README.read_text()
    tour = text[text.index("\n## A tour\n"):]
    tour = tour[:tour.index("\n## ", 1)]
    return re.findall(r"```python\n(.*?)```", tour, flags=re.S)


def _with_name(block: str, name: str) -> str:
    assert block.count('"frames"') >= 1
    return block.replace('"frames"', repr(name))


def test_tour_producer_block_runs_verbatim():
    name = unique_name("tour")
    left = True
    try:
        proc = subprocess.run([sys.executable, "-c", _with_name(_tour_blocks()[0], name)],
                              capture_output=True, text=True, timeout=WATCHDOG)
        left = name in shm_listing()
    finally:
        if name in shm_listing():
            zdshm.unlink(name)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert proc.stdout.splitlines() == ["0 uint8 (1080, 1920, 3)", "1 float64 (3, 4)"]
    assert not left, "the tour did not unlink its segment"


def test_tour_consumer_block_in_a_second_process():
    name = unique_name("tour")
    seg = zdshm.PosixSegment.create(name, slot_count=8, slot_capacity=4096)
    consumer = None
    try:
        consumer = subprocess.Popen(
            [sys.executable, "-c", _with_name(_tour_blocks()[1], name)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + WATCHDOG
        while seg.active_mask == 0:
            assert consumer.poll() is None, consumer.communicate()
            assert time.monotonic() < deadline, "the consumer never registered"
            seg.wait_for_change(seg.notify_generation, timeout=0.05)
        w = seg.writer(timeout=5)
        for i in range(3):
            w.publish(np.full((4, 5), i, dtype=np.int16))
        seg.close()                      # goodbye: the consumer's loop ends
        out, err = consumer.communicate(timeout=WATCHDOG)
    finally:
        if consumer is not None and consumer.poll() is None:
            consumer.kill()
            consumer.wait()
        seg.close()
        seg.unlink()
    assert consumer.returncode == 0, err
    assert err == ""
    assert out.splitlines() == ["0 (4, 5)", "1 (4, 5)", "2 (4, 5)"]
