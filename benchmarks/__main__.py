"""``python -m benchmarks``: zdshm side by side with its peers and the hardware floors.

Run from the repository root, with zdshm installed (``pip install '.[bench]'``
also installs numpy, matplotlib and the peers)::

    python -m benchmarks [--quick | --full] [--out DIR] [--markdown FILE]
                         [--only S1,S2,...] [--no-pin] [--no-plots] [--quiet]
                         [--from-json FILE] [--check-targets] [--build-dir DIR]

--quick (the default) takes about a minute; --full a few minutes.
Results go to DIR (default ``benchmarks/results/<mode>``): ``results.json``
and PNG plots.  The table of the performance targets (target, measured, met)
is printed at the end.  ``--markdown FILE`` also writes the report
(BENCHMARKS.md is made with ``python -m benchmarks --full --out
benchmarks/results/full --markdown BENCHMARKS.md``).  ``--from-json`` redoes
the report and the plots of an earlier run without measuring.

The C floors (``benchmarks/c``) are configured once into ``build/bench`` (or
``--build-dir DIR``, e.g. a tree of ``tests/run_c_suites.sh``) and rebuilt
incrementally at the start of every run.  The scenarios, the C floors and the
JSON schema are described in ``benchmarks/README.md``.  Peers (iceoryx2,
SharedArray, faster-fifo) are optional: a missing one is recorded with the
reason.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
from typing import Any

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m benchmarks",
                                 description="zdshm benchmarks: peers, C floors, performance targets")
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--quick", dest="mode", action="store_const", const="quick",
                   help="short run, under a minute (default)")
    g.add_argument("--full", dest="mode", action="store_const", const="full",
                   help="longer run with 3 interleaved rounds of S1, a few minutes")
    ap.add_argument("--out", metavar="DIR", help="output directory (results.json, *.png)")
    ap.add_argument("--markdown", metavar="FILE", help="also write the report as Markdown")
    ap.add_argument("--only", metavar="LIST",
                    help="comma-separated subset of floors,S1,S2,S3,S4,S5,scaling,aio,classes (S6 is part "
                         "of S4), or the optional bridge (run only when named)")
    ap.add_argument("--no-pin", dest="pin", action="store_false",
                    help="do not pin the two processes of a pair to different CPUs")
    ap.add_argument("--no-plots", dest="plots", action="store_false", help="skip the PNG plots")
    ap.add_argument("--quiet", action="store_true", help="no progress lines")
    ap.add_argument("--from-json", metavar="FILE", help="report an earlier results.json, measure nothing")
    ap.add_argument("--check-targets", action="store_true",
                    help="exit with status 3 when a performance target is not met")
    ap.add_argument("--build-dir", metavar="DIR",
                    help="CMake tree of the C floors (default: build/bench under the repository)")
    ap.set_defaults(mode="quick")
    return ap


def default_out(mode: str) -> str:
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", mode)


def _clean(o: Any) -> Any:
    """JSON-safe: numpy scalars to Python, NaN/inf to None."""
    if isinstance(o, dict):
        return {str(k): _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    if isinstance(o, bool) or o is None or isinstance(o, str):
        return o
    if isinstance(o, int):
        return int(o)
    try:
        f = float(o)
    except (TypeError, ValueError):
        return str(o)
    if isinstance(o, float) or hasattr(o, "dtype"):
        if hasattr(o, "dtype") and getattr(o.dtype, "kind", "f") in "iu":
            return int(o)
        return f if math.isfinite(f) else None
    return f


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        import zdshm  # noqa: F401
    except ImportError as exc:
        print(f"python -m benchmarks measures the installed zdshm, which is not importable "
              f"({exc}): pip install '.[bench]' first", file=sys.stderr)
        return 2
    try:
        import numpy  # noqa: F401
    except ImportError:
        print("python -m benchmarks needs numpy (and, for the plots and peers, "
              "matplotlib, iceoryx2, SharedArray, faster-fifo): pip install '.[bench]'",
              file=sys.stderr)
        return 2

    from . import report
    from .common import Progress

    if args.from_json:
        with open(args.from_json, encoding="utf-8") as f:
            result = json.load(f)
        out = args.out or os.path.dirname(os.path.abspath(args.from_json))
        report.add_ratios(result["records"])
        result["targets"] = report.targets(result["records"])
    else:
        from .runner import SCENARIOS, Run

        only = None
        if args.only:
            only = {s.strip() for s in args.only.split(",") if s.strip()}
            if "S6" in only:
                only.add("S4")
            bad = only - set(SCENARIOS) - {"S6"}
            if bad:
                print(f"--only: unknown scenario(s) {sorted(bad)}; choose from {', '.join(SCENARIOS)}",
                      file=sys.stderr)
                return 2
        out = args.out or default_out(args.mode)
        progress = Progress(1, quiet=args.quiet)
        run = Run(args.mode, only, progress, pin=args.pin, build_dir=args.build_dir)
        if not args.pin:
            from . import common

            common.pair_cpus = lambda: (None, None)  # type: ignore[assignment]
        result = run.run()
        result["command"] = "python -m benchmarks " + " ".join(sys.argv[1:] if argv is None else argv)
        report.add_ratios(result["records"])
        result["targets"] = report.targets(result["records"])
    os.makedirs(out, exist_ok=True)
    json_path = os.path.join(out, "results.json")
    files: dict[str, str] = {}
    if args.plots:
        files, err = report.plots(result, out)
        if err:
            result.setdefault("notes", []).append(err)
    result["plots"] = {k: os.path.basename(v) for k, v in files.items()}
    with open(json_path, "w", encoding="utf-8") as f:
        json.dump(_clean(result), f, indent=1, allow_nan=False)
    files["json"] = json_path

    print()
    print("zdshm vs its performance targets (ratios measured side by side in this run)")
    print(report.table_text(result))
    if result.get("errors"):
        print(f"\n{len(result['errors'])} measurement(s) failed:")
        for e in result["errors"]:
            lines = (e.get("error") or "").strip().splitlines()
            print(f"  {e['scenario']} {e['what']}: {lines[-1] if lines else '?'}")
    pngs = sorted(os.path.basename(v) for k, v in files.items() if k != "json")
    print(f"\nresults: {json_path}" + (f"; plots: {', '.join(pngs)}" if pngs else ""))
    if args.markdown:
        cmd = result.get("command") or "python -m benchmarks"
        md = report.markdown(result, files, os.path.dirname(os.path.abspath(args.markdown)),
                             cmd.strip())
        with open(args.markdown, "w", encoding="utf-8") as f:
            f.write(md)
        print(f"report: {args.markdown}")
    if args.check_targets and any(t["met"] is False and not t.get("note")
                                  for t in result["targets"]):
        return 3
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
