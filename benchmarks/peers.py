"""Which peers can run here, with their versions (a missing peer is recorded, never fatal)."""
from __future__ import annotations

import importlib
import importlib.metadata as md
import pickle
from typing import Any

# name in the report -> (module to import, distribution name on PyPI)
OPTIONAL = {
    "iceoryx2": ("iceoryx2", "iceoryx2"),
    "SharedArray": ("SharedArray", "SharedArray"),
    "faster-fifo": ("faster_fifo", "faster-fifo"),
}

# the stdlib peers are always there
STDLIB = ("mp.Queue", "mp.Pipe", "shared_memory+Pipe", "shared_memory+spin")


def dist_version(dist: str) -> str | None:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


def probe() -> dict[str, dict[str, Any]]:
    """{peer: {available, version, reason}} for every peer."""
    out: dict[str, dict[str, Any]] = {}
    for name in STDLIB:
        out[name] = {"available": True, "version": "stdlib", "reason": None}
    for name, (mod, dist) in OPTIONAL.items():
        try:
            importlib.import_module(mod)
        except Exception as e:  # noqa: BLE001 - any import failure makes it unavailable
            out[name] = {"available": False, "version": dist_version(dist),
                         "reason": f"import {mod} failed: {type(e).__name__}: {e}"}
        else:
            out[name] = {"available": True, "version": dist_version(dist), "reason": None}
    # the SharedArray peers are "SharedArray+Pipe"
    return out


def package_versions() -> dict[str, str | None]:
    names = ["zdshm", "numpy", "matplotlib", "iceoryx2", "SharedArray", "faster-fifo"]
    return {n: dist_version(n) for n in names}


def force_pickle5() -> None:
    """Make multiprocessing pickle with protocol 5 (the default from Python 3.14 on).

    multiprocessing.Queue pickles with ForkingPickler.dumps(obj) and the
    default protocol, which is 4 before Python 3.14; protocol 5 lets numpy
    write an array into the pickle without the intermediate tobytes() copy.
    Called in the parent and in every child that uses a Queue.
    """
    from multiprocessing.reduction import ForkingPickler

    if pickle.DEFAULT_PROTOCOL >= 5 or getattr(ForkingPickler, "_zdbench_p5", False):
        return
    orig = ForkingPickler.dumps.__func__  # type: ignore[attr-defined]

    def dumps(cls: Any, obj: Any, protocol: int | None = None) -> Any:
        return orig(cls, obj, 5 if protocol is None else protocol)

    ForkingPickler.dumps = classmethod(dumps)  # type: ignore[method-assign]
    ForkingPickler._zdbench_p5 = True  # type: ignore[attr-defined]


def p5_dumps(obj: Any) -> bytes:
    """faster-fifo serializer: pickle protocol 5 (module level: picklable for spawn)."""
    return pickle.dumps(obj, protocol=5)


def p5_loads(data: Any) -> Any:
    return pickle.loads(data)
