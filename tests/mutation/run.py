#!/usr/bin/env python3
"""Mutation check of the property suite: does it catch deliberate bugs in the
C core?

    python tests/mutation/run.py                 # every mutant, "dev" profile
    python tests/mutation/run.py --list          # the mutants
    python tests/mutation/run.py --only evict_ignores_age --only commit_keeps_sn
    python tests/mutation/run.py --profile ci    # more examples per run

For the unmodified code first, then for each mutant: the repository's files
(git ls-files, tracked and untracked-but-not-ignored) are copied to a work
folder, the mutant's (file, old, new) string replacements are applied to
csrc/core/*.c (each old string must occur exactly once, else the run stops:
the core changed and the mutant must be updated), the copy is pip-installed
(--no-deps --force-reinstall, without build isolation, reusing one CMake
build folder so only the mutated files recompile) into one reusable venv
that has hypothesis, pytest and numpy, and the property suite runs against
it (the state machines and the cross-process tests).  A mutant is KILLED
when the suite fails, SURVIVED when it passes.  The unmodified code must
pass, or nothing is reported.  Exit status: 0 when every mutant was killed,
1 when one survived, 2 on a setup error.

Not part of the normal test command (a few minutes).  The build runs with
ZD_WERROR=OFF: a mutant may leave a variable unused.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import venv
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SUITE = ["tests/property/test_slot_machine.py", "tests/property/test_cross_process.py"]
N_TESTS = 4                      # 2 state machines + 2 cross-process tests
VENV_PACKAGES = ["pytest", "pytest-timeout", "hypothesis", "numpy", "scikit-build-core"]


@dataclass
class Mutant:
    """A deliberate bug: string replacements in csrc/core/*.c.  Each edit is
    a list of alternatives (file, old, new): the first whose old text occurs
    exactly once in its file is applied (later alternatives follow newer
    versions of the core); when none does, the run stops."""
    name: str
    what: str
    edits: list[list[tuple[str, str, str]]] = field(default_factory=list)


SLOT, READER, WRITER = "csrc/core/slot.c", "csrc/core/reader.c", "csrc/core/writer.c"

MUTANTS = [
    Mutant("mark_read_wrong_bit",
           "zdi_mark_bit sets bit r+1 instead of bit r",
           [[(SLOT, "\tstruct zdi_slot_header *h = zdi_slot(seg, slot);\n"
                    "\tuint64_t bit = zdi_bit(r);\n",
                    "\tstruct zdi_slot_header *h = zdi_slot(seg, slot);\n"
                    "\tuint64_t bit = zdi_bit(r + 1u);\n")]]),
    Mutant("evict_ignores_age",
           "zd_slot_evict_stale_at drops the max_age check",
           [[(SLOT, "\t\tif ((now_ns > t ? now_ns - t : 0) < max_age_ns)\n\t\t\tcontinue;\n",
                    "\t\t(void)t;\n")]]),
    Mutant("evict_age_off_by_one",
           "zd_slot_evict_stale_at keeps a slot exactly max_age old (< becomes <=)",
           [[(SLOT, "(now_ns > t ? now_ns - t : 0) < max_age_ns)",
                    "(now_ns > t ? now_ns - t : 0) <= max_age_ns)")]]),
    Mutant("disconnect_skips_slot_0",
           "zd_slot_mark_reader_disconnected starts its loop at slot 1",
           [[(SLOT, "\tfor (uint32_t i = 0; i < seg->slot_count; i++)\n"
                    "\t\tzdi_fetch_or_acq_rel_u64(&zdi_slot(seg, i)->read_mask, zdi_bit(reader));",
                    "\tfor (uint32_t i = 1; i < seg->slot_count; i++)\n"
                    "\t\tzdi_fetch_or_acq_rel_u64(&zdi_slot(seg, i)->read_mask, zdi_bit(reader));")]]),
    Mutant("commit_keeps_sn",
           "publish does not advance next_sn (fetch_add of 0 / CAS to the same value)",
           [[(SLOT, "zdi_fetch_add_relaxed_u64(&seg->hdr->next_sn, 1)",
                    "zdi_fetch_add_relaxed_u64(&seg->hdr->next_sn, 0)"),
             (SLOT, "zdi_cas_acq_rel_u64(&seg->hdr->next_sn, &sn, sn + 1u)",
                    "zdi_cas_acq_rel_u64(&seg->hdr->next_sn, &sn, sn)")]]),
    Mutant("commit_keeps_read_mask",
           "publish does not reset the read mask of the new sample",
           [[(SLOT, "\tzdi_store_relaxed_u64(&h->read_mask, 0);\n", "")]]),
    Mutant("reserve_ignores_mask",
           "reserve drops the (read_mask & mask) == mask check",
           [[(SLOT, "\t\t\tif ((rm & active_mask) != active_mask)\n\t\t\t\tcontinue;\n",
                    "\t\t\t(void)rm;\n"),
             (SLOT, "pins_of(h) != 0 ||\n\t\t\t    (zdi_load_acquire_u64(&h->read_mask) & "
                    "active_mask) != active_mask)",
                    "pins_of(h) != 0)"),
             (SLOT, "pins_of(h) != 0 ||\n\t\t\t    (zdi_load_acquire_u64(&h->read_mask) & "
                    "read_by) != read_by)",
                    "pins_of(h) != 0)")]]),
    Mutant("reserve_ignores_pins",
           "reserve (and the recycle re-check) ignore pins",
           [[(SLOT, "\t\t\tif (pins_of(h) != 0)\n\t\t\t\tcontinue;\n\t\t\trm = ",
                    "\t\t\trm = "),
             (SLOT, "if (ZDI_ST_KIND(s) != ZDI_SLOT_COMMITTED || pins_of(h) != 0 ||\n"
                    "\t\t\t    (zdi_load_acquire_u64(&h->read_mask) & ",
                    "if (ZDI_ST_KIND(s) != ZDI_SLOT_COMMITTED ||\n"
                    "\t\t\t    (zdi_load_acquire_u64(&h->read_mask) & ")],
            [(SLOT, "\tif (pins_of(h) != 0) {\n\t\t/* A view pinned it meanwhile",
                    "\tif (0) {\n\t\t/* A view pinned it meanwhile")]]),
    Mutant("take_by_slot_index",
           "the oldest-unread scan (take, next_unread) picks the first slot, not the smallest sn",
           [[(SLOT, "\t\t\tif (best == UINT32_MAX || sn < best_sn) {\n"
                    "\t\t\t\tbest = i;\n\t\t\t\tbest_sn = sn;\n\t\t\t\tbest_s = s;\n"
                    "\t\t\t}\n\t\t}\n\t\tif (best == UINT32_MAX)\n\t\t\treturn -EAGAIN;\n"
                    "\t\tif (zdi_load_acquire_u32",
                    "\t\t\tif (best == UINT32_MAX) {\n"
                    "\t\t\t\tbest = i;\n\t\t\t\tbest_sn = sn;\n\t\t\t\tbest_s = s;\n"
                    "\t\t\t}\n\t\t}\n\t\tif (best == UINT32_MAX)\n\t\t\treturn -EAGAIN;\n"
                    "\t\tif (zdi_load_acquire_u32"),
             (SLOT, "\t\tif (out->best == UINT32_MAX || sn < out->best_sn) {",
                    "\t\tif (out->best == UINT32_MAX) {")]]),
    Mutant("join_ignores_join_last",
           "reader_claim starts every reader at next_sn (join_last ignored)",
           [[(READER, "\tstart = join_last >= next ? 0 : next - join_last;",
                      "\tstart = next;\n\t(void)join_last;"),
             (READER, "\tstart = join_last == 0 ? next : held_start(seg, next, join_last);",
                      "\tstart = next;\n\t(void)join_last;\n\t(void)held_start;")]]),
    Mutant("join_holds_old_samples",
           "reader_claim does not mark the samples before its start read",
           [[(READER, "\t\tif (zdi_load_relaxed_u64(&h->sn) < start)\n"
                      "\t\t\tzdi_fetch_or_acq_rel_u64(&h->read_mask, bit);\n\t\telse\n",
                      "\t\tif (zdi_load_relaxed_u64(&h->sn) < start)\n\t\t\t;\n\t\telse\n")]]),
    Mutant("close_keeps_unread",
           "closing a reader does not mark the slots read for it",
           [[(READER, "\t\tzdi_fetch_or_acq_rel_u64(&h->read_mask, bit);\n"
                      "\t\tif (zdi_load_relaxed_u64(&h->reader_pins) & bit)",
                      "\t\tif (zdi_load_relaxed_u64(&h->reader_pins) & bit)"),
             (READER, "\tfor (uint32_t i = 0; i < seg->slot_count; i++)\n"
                      "\t\tzdi_fetch_or_acq_rel_u64(&zdi_slot(seg, i)->read_mask, bit);\n",
                      "")]]),
    Mutant("reclaim_without_drops",
           "the reclaim policy does not count drops for the readers that had not read",
           [[(WRITER, "\t\t\tzdi_count_drops(seg, active & ~rm);\n", ""),
             (WRITER, "\t\tzdi_count_drops(seg, active & unread);\n", "")]]),
    Mutant("recycle_newest",
           "reclaim (and, in the newer core, reserve) recycles the newest committed slot, "
           "not the oldest",
           [[(WRITER, "\t\t\tif (best == UINT32_MAX || sn < best_sn) {",
                      "\t\t\tif (best == UINT32_MAX || sn > best_sn) {"),
             (SLOT, "\t\t\tif (best == UINT32_MAX || sn < best_sn) {\n"
                    "\t\t\t\tbest = i;\n\t\t\t\tbest_sn = sn;\n\t\t\t\tbest_s = s;\n"
                    "\t\t\t}\n\t\t}\n\t\tif (best == UINT32_MAX)\n\t\t\treturn -EAGAIN;\n"
                    "\t\tif (zdi_recycle",
                    "\t\t\tif (best == UINT32_MAX || sn > best_sn) {\n"
                    "\t\t\t\tbest = i;\n\t\t\t\tbest_sn = sn;\n\t\t\t\tbest_s = s;\n"
                    "\t\t\t}\n\t\t}\n\t\tif (best == UINT32_MAX)\n\t\t\treturn -EAGAIN;\n"
                    "\t\tif (zdi_recycle")]]),
]


class SetupError(Exception):
    pass


def run(cmd, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, text=True, capture_output=True, **kw)


def repo_files() -> list[str]:
    res = run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
              cwd=REPO)
    if res.returncode != 0:
        raise SetupError(f"git ls-files failed: {res.stderr}")
    return [f for f in res.stdout.split("\0") if f and (REPO / f).is_file()]


def ensure_venv(path: Path) -> Path:
    python = path / "bin" / "python"
    if not python.exists():
        print(f"creating venv {path} ...", flush=True)
        venv.EnvBuilder(with_pip=True).create(path)
    have = run([str(python), "-c",
                "import pytest, pytest_timeout, hypothesis, numpy, scikit_build_core"])
    if have.returncode != 0:
        print(f"installing {' '.join(VENV_PACKAGES)} into {path} ...", flush=True)
        res = run([str(python), "-m", "pip", "install", "-q", *VENV_PACKAGES])
        if res.returncode != 0:
            raise SetupError(f"pip install into {path} failed:\n{res.stdout}{res.stderr}")
    return python


def copy_tree(files: list[str], dest: Path) -> None:
    for f in files:
        target = dest / f
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / f, target)


def apply(mutant: Mutant, work: Path, pristine: dict[str, str]) -> list[str]:
    """Applies the edits to the pristine text of each file; returns the files
    touched.  An edit none of whose old texts occurs exactly once stops
    everything: the core changed and the mutant must follow."""
    texts: dict[str, str] = {}
    for alternatives in mutant.edits:
        for rel, old, new in alternatives:
            if not rel.startswith("csrc/core/") or not rel.endswith(".c"):
                raise SetupError(f"{mutant.name}: edits must stay in csrc/core/*.c, not {rel}")
            text = texts.get(rel, pristine[rel])
            if text.count(old) == 1:
                texts[rel] = text.replace(old, new)
                break
        else:
            counts = ", ".join(f"{rel}: {texts.get(rel, pristine[rel]).count(old)}"
                               for rel, old, _ in alternatives)
            raise SetupError(
                f"mutant {mutant.name}: no text to replace occurs exactly once "
                f"({counts}); update the mutant.  First alternative:\n{alternatives[0][1]}")
    for rel, text in texts.items():
        (work / rel).write_text(text)
    return list(texts)


def restore(files: list[str], work: Path, pristine: dict[str, str]) -> None:
    for rel in files:
        (work / rel).write_text(pristine[rel])     # newer mtime: rebuilt


def build(python: Path, work: Path, build_dir: Path) -> tuple[bool, str]:
    res = run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--force-reinstall",
               "--no-build-isolation",
               "-C", f"build-dir={build_dir}", "-C", "cmake.define.ZD_WERROR=OFF",
               str(work)])
    return res.returncode == 0, res.stdout + res.stderr


def remove_leftovers(pid: int) -> int:
    """Removes the posix segments a suite run (process pid) left behind."""
    found = list(Path("/dev/shm").glob(f"zdprop-*-{pid}-*"))
    for leftover in found:
        leftover.unlink(missing_ok=True)
    return len(found)


def test(python: Path, work: Path, profile: str, timeout: float) -> tuple[str, str, float]:
    """Runs the suite; returns (passed|failed|timeout|error, detail, seconds).
    A run past ``timeout`` (a mutant can make a C loop spin forever, where
    pytest-timeout's signal cannot reach) is killed, and the posix segments
    it left in /dev/shm are removed."""
    shutil.rmtree(work / ".hypothesis", ignore_errors=True)    # no replay of old finds
    env = dict(os.environ, ZDSHM_HYPOTHESIS_PROFILE=profile, ZDSHM_HYPOTHESIS_NO_SHRINK="1")
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "-o", "addopts=", *SUITE],
        cwd=work, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        remove_leftovers(proc.pid)
        return "timeout", f"no result within {timeout:.0f} s", time.monotonic() - t0
    dt = time.monotonic() - t0
    if remove_leftovers(proc.pid):
        print("  (warning: the run left posix segments behind; removed)", flush=True)
    if proc.returncode == 0:
        return "passed", "", dt
    if proc.returncode == 1:
        failed = [ln.split(" - ")[0].replace("FAILED ", "").split("::", 1)[-1]
                  .replace("::runTest", "")
                  for ln in out.splitlines() if ln.startswith("FAILED ")]
        why = [ln[1:].strip() for ln in out.splitlines()
               if ln.startswith("E ") and ln[1:].strip()]
        detail = (f"{len(failed)}/{N_TESTS} tests ({', '.join(failed)})"
                  + (f"; first: {why[0][:70]}" if why else ""))
        return "failed", detail, dt
    return "error", out[-3000:], dt


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", action="append", default=[], metavar="NAME",
                    help="run only this mutant (repeatable)")
    ap.add_argument("--list", action="store_true", help="list the mutants and exit")
    ap.add_argument("--profile", default="dev", choices=["dev", "ci", "heavy"],
                    help="hypothesis profile of the property suite (default dev)")
    ap.add_argument("--venv", type=Path,
                    default=Path(tempfile.gettempdir()) / "zdshm-mutation-venv",
                    help="venv to (create and) reuse (default: %(default)s)")
    ap.add_argument("--timeout", type=float, default=None,
                    help="seconds per mutant run before it counts as killed by a hang "
                         "(default: 6 times the unmodified run, at least 120)")
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    args = ap.parse_args(argv)

    if args.list:
        for m in MUTANTS:
            print(f"{m.name:26} {m.what}")
        return 0
    unknown = set(args.only) - {m.name for m in MUTANTS}
    if unknown:
        ap.error(f"unknown mutant(s): {', '.join(sorted(unknown))}")
    mutants = [m for m in MUTANTS if not args.only or m.name in args.only]

    work_root = Path(tempfile.mkdtemp(prefix="zdshm-mutation-"))
    work, build_dir = work_root / "src", work_root / "build"
    rows = []
    try:
        python = ensure_venv(args.venv)
        files = repo_files()
        copy_tree(files, work)
        # The core as it was when the run started (the repository may change
        # under a long run).
        pristine = {f: (work / f).read_text() for f in files
                    if f.startswith("csrc/core/") and f.endswith(".c")}
        # Every mutant must apply to the core as it is now: check them all
        # before spending minutes on builds.
        for m in mutants:
            restore(apply(m, work, pristine), work, pristine)

        print(f"baseline (unmodified core), profile {args.profile} ...", flush=True)
        ok, log = build(python, work, build_dir)
        if not ok:
            raise SetupError(f"the unmodified code does not build:\n{log[-3000:]}")
        status, detail, dt = test(python, work, args.profile, args.timeout or 3600.0)
        if status != "passed":
            raise SetupError(f"the unmodified code must pass the property suite, but it "
                             f"{status} ({dt:.0f} s): {detail}")
        print(f"  passed in {dt:.0f} s", flush=True)
        timeout = args.timeout or max(120.0, 6 * dt)

        for m in mutants:
            print(f"{m.name} ...", flush=True)
            touched = apply(m, work, pristine)
            try:
                ok, log = build(python, work, build_dir)
                if not ok:
                    verdict, detail, dt = "ERROR", "build failed: " + log[-600:], 0.0
                else:
                    status, detail, dt = test(python, work, args.profile, timeout)
                    verdict = {"failed": "KILLED", "timeout": "KILLED",
                               "passed": "SURVIVED"}.get(status, "ERROR")
                    if status == "timeout":
                        detail = "hang: " + detail
            finally:
                restore(touched, work, pristine)
            print(f"  {verdict} ({dt:.0f} s) {detail.splitlines()[0] if detail else ''}",
                  flush=True)
            rows.append((m, verdict, dt, detail))
        # Leave the venv with the unmodified code installed.
        build(python, work, build_dir)
    except SetupError as exc:
        print(f"\nmutation check stopped: {exc}", file=sys.stderr)
        return 2
    finally:
        if args.keep:
            print(f"work folder kept: {work_root}")
        else:
            shutil.rmtree(work_root, ignore_errors=True)

    print("\nMutant                      Result     Time  "
          "Killed by (test: first error line) / what it does")
    print("-" * 132)
    for m, verdict, dt, detail in rows:
        by = detail.splitlines()[0] if (verdict == "KILLED" and detail) else m.what
        print(f"{m.name:27} {verdict:9} {dt:5.0f}s  {by}")
    killed = sum(v == "KILLED" for _, v, _, _ in rows)
    print("-" * 132)
    print(f"{killed}/{len(rows)} mutants killed (profile {args.profile})")
    return 0 if killed == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
