"""Worker functions for the zdshm notebooks.

``multiprocessing`` with the *spawn* start method pickles the target function
by reference (module + name), so a function defined in a notebook cell cannot
run in a child process.  The notebooks add this folder to ``sys.path`` and
import the workers from here.

Every worker attaches to a posix segment by name, does its part, closes its
handles (``with``) and reports through a ``multiprocessing`` queue.  Times are
``time.monotonic_ns()``: CLOCK_MONOTONIC, the same clock a slot's
``commit_ns`` is stamped with, and the same in every process of the host.
"""
from __future__ import annotations

import time
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event
from typing import Any

import numpy as np

import zdshm


# --- 02, 04: the frame pipeline ---------------------------------------------

def frame_value(i: int) -> int:
    """The byte every pixel of frame i holds (a cheap, checkable pattern)."""
    return (i * 7 + 3) % 256


def produce_frames(name: str, start: Event, n_frames: int, shape: tuple[int, ...],
                   results: Queue[tuple[str, dict[str, Any]]],
                   fps: float | None = None) -> None:
    """Producer process: fills n_frames uint8 frames in place, in the slot,
    at most fps frames per second (None: as fast as the slots allow)."""
    with zdshm.PosixSegment.attach(name) as seg:
        writer = seg.writer(overflow="block", timeout=30.0)
        if not start.wait(30.0):
            raise TimeoutError("the consumers never became ready")
        t0 = time.monotonic_ns()
        period = 0 if fps is None else int(1e9 / fps)
        for i in range(n_frames):
            delay = t0 + i * period - time.monotonic_ns()
            if delay > 0:
                time.sleep(delay / 1e9)   # a camera: one frame per period
            # The array *is* the slot: filling it is the only write of the frame.
            with writer.loan_array(shape, np.uint8) as frame:
                frame.fill(frame_value(i))
        results.put(("producer", {"frames": n_frames,
                                  "seconds": (time.monotonic_ns() - t0) / 1e9}))


def consume_frames(name: str, ready: Event, n_frames: int,
                   results: Queue[tuple[str, dict[str, Any]]]) -> None:
    """Consumer process: takes every frame, checks it, records its latency."""
    with zdshm.PosixSegment.attach(name) as seg, seg.reader() as reader:
        ready.set()                       # registered: from now on it gets every frame
        latencies_ns: list[int] = []
        bad = 0
        for i in range(n_frames):
            with reader.take(timeout=30.0) as sample:
                arrived = time.monotonic_ns()
                frame = np.asarray(sample)            # zero-copy view of the slot
                want = frame_value(i)
                if frame[0, 0, 0] != want or frame[-1, -1, -1] != want or \
                        not (frame == want).all():
                    bad += 1
                shape, dtype = frame.shape, str(frame.dtype)
                del frame                 # the view must die before the sample is released
                latencies_ns.append(arrived - sample.commit_ns)
        results.put(("consumer", {"index": reader.index, "bad": bad,
                                  "shape": shape, "dtype": dtype,
                                  "latency_ns": latencies_ns,
                                  "stats": reader.stats()}))


# --- 02: throughput against multiprocessing.Queue -----------------------------

def zdshm_sink(name: str, ready: Event, n_msgs: int,
               results: Queue[tuple[int, int]]) -> None:
    """Takes n_msgs arrays, checks the stamp in element 0, reports the end time."""
    with zdshm.PosixSegment.attach(name) as seg, seg.reader() as reader:
        ready.set()
        bad = 0
        for i in range(n_msgs):
            with reader.take(timeout=30.0) as sample:
                arr = np.asarray(sample)
                bad += int(arr[0]) != i
                del arr
        results.put((time.monotonic_ns(), bad))


def queue_sink(queue: Queue[Any], ready: Event, n_msgs: int,
               results: Queue[tuple[int, int]]) -> None:
    """The same consumer over a multiprocessing.Queue (pickle + copies)."""
    ready.set()
    bad = 0
    for i in range(n_msgs):
        arr = queue.get(timeout=30.0)
        bad += int(arr[0]) != i
        del arr
    results.put((time.monotonic_ns(), bad))


# --- 04: variable-size images through size classes ----------------------------

# Three kinds of image, as a photo service might decode them: (share, smallest
# side, largest side) of square-ish uint8 RGB images.
IMAGE_KINDS = ((0.6, 64, 128), (0.3, 200, 290), (0.1, 400, 590))


def image_shapes(n_images: int, key: int = 4) -> list[tuple[int, int, int]]:
    """The shapes (h, w, 3) of the producer's images: the same list for the
    same n_images and key, so the consumer can check every one."""
    rng = np.random.default_rng(key)
    shares = np.array([k[0] for k in IMAGE_KINDS])
    shapes = []
    for kind in rng.choice(len(IMAGE_KINDS), size=n_images, p=shares / shares.sum()):
        _, lo, hi = IMAGE_KINDS[int(kind)]
        h, w = (int(x) for x in rng.integers(lo, hi, size=2, endpoint=True))
        shapes.append((h, w, 3))
    return shapes


def produce_images(name: str, start: Event, n_images: int,
                   results: Queue[tuple[str, dict[str, Any]]]) -> None:
    """Producer process: loans each image by its size (loan_array picks the
    smallest class that fits and has a free slot) and fills it in place."""
    with zdshm.PosixSegment.attach(name) as seg:
        writer = seg.writer(overflow="block", timeout=30.0)
        if not start.wait(30.0):
            raise TimeoutError("the consumer never became ready")
        t0 = time.monotonic_ns()
        for i, shape in enumerate(image_shapes(n_images)):
            with writer.loan_array(shape, np.uint8) as image:
                image.fill(frame_value(i))
        results.put(("producer", {"images": n_images,
                                  "seconds": (time.monotonic_ns() - t0) / 1e9}))


# --- 04: a latest-value camera ------------------------------------------------

def camera(name: str, start: Event, stop: Event, max_frames: int, shape: tuple[int, ...],
           fps: float, results: Queue[tuple[str, dict[str, Any]]]) -> None:
    """A fast camera: frames at fps until stop is set (at most max_frames),
    overflow="reclaim" (it never waits for a reader: the oldest sample nobody
    is viewing makes room).  Every pixel of frame i holds frame_value(i)."""
    with zdshm.PosixSegment.attach(name) as seg:
        writer = seg.writer(overflow="reclaim")
        if not start.wait(30.0):
            raise TimeoutError("the consumer never became ready")
        t0 = time.monotonic_ns()
        period = int(1e9 / fps)
        frames = 0
        while frames < max_frames and not stop.is_set():
            delay = t0 + frames * period - time.monotonic_ns()
            if delay > 0:
                time.sleep(delay / 1e9)
            with writer.loan_array(shape, np.uint8) as frame:
                frame.fill(frame_value(frames))
            frames += 1
        results.put(("camera", {"frames": frames,
                                "seconds": (time.monotonic_ns() - t0) / 1e9}))
