"""Helpers shared by the tests in tests/python (imported by conftest.py and
the test modules; a unique module name, since other test folders have their
own conftest.py)."""
from __future__ import annotations

import gc
import os
import stat
import uuid

import zdshm

SHM = "/dev/shm"
PREFIX = "zdpytest-"


def own_prefix() -> str:
    """The prefix of the names this test session makes: other sessions on
    the machine (with their own pid) are left alone."""
    return f"{PREFIX}{os.getpid()}-"


def unique_name(tag: str = "seg") -> str:
    return f"{own_prefix()}{tag}-{uuid.uuid4().hex[:12]}"


def shm_listing() -> set[str]:
    try:
        return set(os.listdir(SHM))
    except FileNotFoundError:  # pragma: no cover
        return set()


def ours(name: str) -> bool:
    """True for /dev/shm entries this test run is responsible for."""
    if name.startswith(PREFIX):
        return name.startswith(own_prefix())
    try:
        if not stat.S_ISREG(os.lstat(os.path.join(SHM, name)).st_mode):
            return False       # describe() of a FIFO would block in the core
    except OSError:
        return False
    try:
        return zdshm.describe(name)["owner_pid"] == os.getpid()
    except (zdshm.Error, ValueError):
        return False


class SegmentFactory:
    """Makes segments of one backend and cleans them up after the test."""

    def __init__(self, backend: str) -> None:
        self.backend = backend
        self.segments: list[zdshm.Segment] = []
        self.names: list[str] = []

    def __call__(self, slot_count: int = 4, slot_capacity: int = 256,
                 **kw) -> zdshm.Segment:
        if self.backend == "memory":
            seg = zdshm.MemorySegment(slot_count, slot_capacity, **kw)
        else:
            name = unique_name()
            self.names.append(name)
            seg = zdshm.PosixSegment.create(name, slot_count, slot_capacity, **kw)
        self.segments.append(seg)
        return seg

    def attach(self, seg: zdshm.Segment) -> zdshm.Segment:
        """A second handle on the same segment (posix), or the same object."""
        if self.backend == "memory":
            return seg
        other = zdshm.PosixSegment.attach(seg.name)
        self.segments.append(other)
        return other

    def cleanup(self) -> None:
        for seg in reversed(self.segments):
            try:
                seg.close()
            except zdshm.ViewsAliveError:
                gc.collect()                     # views in reference cycles
                try:
                    seg.close()
                except zdshm.ViewsAliveError:
                    seg.__exit__(None, None, None)   # deferred close
        for name in self.names:
            try:
                zdshm.unlink(name)
            except zdshm.SegmentNotFoundError:
                pass
        self.segments.clear()


def snapshot(seg: zdshm.Segment) -> tuple:
    """Everything a failed call must leave unchanged."""
    info = seg.info()
    return (
        [seg.slot_state(i) for i in range(seg.slot_count)],
        info["counters"], info["next_sn"], info["active_mask"],
        info["notify_generation"], info["open_objects"], _shm_view(),
    )


def _shm_view() -> list[str]:
    # Strict mode (CI, nothing else running): the whole listing; otherwise
    # only our entries, as other programs may create theirs concurrently.
    names = shm_listing()
    if os.environ.get("ZDSHM_STRICT_SHM") != "1":
        names = {n for n in names if n.startswith(own_prefix())}
    return sorted(names)
