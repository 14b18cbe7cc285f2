#!/usr/bin/env python3
"""Mutation check of the property suite: does it catch deliberate bugs in the
C core?

    python tests/mutation/run.py                 # every mutant, "dev" profile
    python tests/mutation/run.py --list          # the mutants
    python tests/mutation/run.py --check-sites   # does every mutant apply? (1 s, no build)
    python tests/mutation/run.py --check-sites --diff --only ring_ignores_lap
    python tests/mutation/run.py --only evict_ignores_age --only commit_keeps_sn
    python tests/mutation/run.py --profile ci    # more examples per run

A mutant is a list of edits.  Each edit names a file of csrc/core/*.c, a
function in it and a short pattern inside that function's body: the body is
found by the function's definition (a line that starts with its return type
and name, parameters, then "{"; the braces are matched), the pattern must
match exactly once in it (literal text, any run of whitespace matching any
run of whitespace; or a regular expression), and the match is replaced.  So
editing other functions, or other lines of the same one, does not disturb a
mutant; a function that is gone or defined twice, or a pattern found zero or
several times, stops the run with a message naming the mutant, the function
and the pattern: the core changed there and the mutant must follow.
--check-sites applies every mutant in memory, prints where each edit lands
and, if a C compiler is at hand, checks that each mutated file still
compiles (cc -fsyntax-only); it builds and runs nothing else.

For the unmodified code first, then for each mutant: the repository's files
(git ls-files, tracked and untracked-but-not-ignored) are copied to a work
folder, the mutant is applied there, the copy is pip-installed (--no-deps
--force-reinstall, without build isolation, reusing one CMake build folder
so only the mutated files recompile) into one reusable venv that has
hypothesis, pytest and numpy, and SUITE runs against it: the state machines
and the cross-process tests, plus the plain tests of what the machines
cannot drive (wake-ups of parked readers and writers, a ring entry of the
previous lap, a join's in-flight commit, a reader that dies holding a
sample, a sample held for a lap of the ring).  A mutant is KILLED when the
suite fails (or hangs past --timeout), SURVIVED when it passes.  The
unmodified code must pass, or nothing is reported.  Exit status: 0 when
every mutant was killed, 1 when one survived, 2 on a setup error.

Not part of the normal test command (about 10 minutes on 2 cores).  The
build runs with ZD_WERROR=OFF: a mutant may leave a variable unused.
"""
from __future__ import annotations

import argparse
import difflib
import os
import re
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
SUITE = ["tests/property/test_slot_machine.py", "tests/property/test_cross_process.py",
         "tests/property/test_wakeups.py", "tests/property/test_in_flight.py",
         "tests/property/test_cleanup.py", "tests/property/test_pinned.py",
         "tests/property/test_latest_model.py"]
VENV_PACKAGES = ["pytest", "pytest-timeout", "hypothesis", "numpy", "scikit-build-core"]


@dataclass(frozen=True)
class Edit:
    """One replacement in csrc/core/*.c: inside the body of the C function
    ``function`` of ``file``, the text that ``find`` matches (exactly once in
    that body) becomes ``new``.  ``find`` is literal text in which any run of
    whitespace matches any run of whitespace (so re-indenting or re-wrapping
    the site does not matter), or, with ``regex``, a regular expression
    (then ``new`` may use its groups: \\1, \\g<name>)."""
    file: str
    function: str
    find: str
    new: str
    regex: bool = False


@dataclass
class Mutant:
    """A deliberate bug: one or more edits, applied in order."""
    name: str
    what: str
    edits: list[Edit] = field(default_factory=list)


SLOT, POOL = "csrc/core/slot.c", "csrc/core/pool.c"
DELIVERY, REGISTRY = "csrc/core/delivery.c", "csrc/core/registry.c"
RING = "csrc/core/ring.c"
WRITER = "csrc/core/writer.c"

MUTANTS = [
    # -- reading and marking ------------------------------------------------------
    Mutant("mark_read_wrong_bit",
           "zdi_mark_bit sets bit r+1 instead of bit r",
           [Edit(SLOT, "zdi_mark_bit", "uint64_t bit = zdi_bit(r);",
                 "uint64_t bit = zdi_bit(r + 1u);")]),
    Mutant("disconnect_skips_slot_0",
           "zd_slot_mark_reader_disconnected starts its loop at slot 1",
           [Edit(SLOT, "zd_slot_mark_reader_disconnected", "for (uint32_t i = 0;",
                 "for (uint32_t i = 1;")]),
    Mutant("close_keeps_unread",
           "zdi_reader_disconnect (close, reap) does not mark the slots read for the reader",
           [Edit(REGISTRY, "zdi_reader_disconnect",
                 "for (uint32_t i = 0; i < seg->geo.slot_count; i++)\n"
                 "\tzdi_fetch_or_seqcst_u64(&zdi_slot(seg, i)->read_mask, bit);", "")]),
    Mutant("forget_keeps_reader_pins",
           "zdi_forget does not drop the pins of a reader that left or was reaped",
           [Edit(SLOT, "zdi_forget",
                 "if (rbit && (zdi_load_relaxed_u64(&h->reader_pins) & rbit))\n"
                 "\tzdi_fetch_and_seqcst_u64(&h->reader_pins, ~rbit);", "")]),
    # -- eviction -----------------------------------------------------------------
    Mutant("evict_ignores_age",
           "zd_slot_evict_stale_at drops the max_age check",
           [Edit(SLOT, "zd_slot_evict_stale_at",
                 "if ((now_ns > t ? now_ns - t : 0) < max_age_ns)\n\tcontinue;", "(void)t;")]),
    Mutant("evict_age_off_by_one",
           "zd_slot_evict_stale_at keeps a slot exactly max_age old (< becomes <=)",
           [Edit(SLOT, "zd_slot_evict_stale_at", "< max_age_ns)", "<= max_age_ns)")]),
    # -- commit and delivery ------------------------------------------------------
    Mutant("commit_keeps_sn",
           "publish does not advance next_sn (CAS to the same value)",
           [Edit(DELIVERY, "publish",
                 "zdi_cas_acq_rel_u64(&seg->hdr->next_sn, &sn, sn + 1u)",
                 "zdi_cas_acq_rel_u64(&seg->hdr->next_sn, &sn, sn)")]),
    Mutant("commit_keeps_read_mask",
           "publish does not reset the read mask of the new sample",
           [Edit(DELIVERY, "publish", "zdi_store_relaxed_u64(&h->read_mask, 0);", "")]),
    Mutant("ring_ignores_lap",
           "zdi_ring_find accepts an entry of any lap: stale (older) and taken-over "
           "(newer) entries count as current",
           [Edit(RING, "zdi_ring_find",
                 "int64_t lap = (int64_t)(zdi_lap_of(seg, e) - zdi_lap_of(seg, sn));",
                 "int64_t lap = 0;")]),
    Mutant("lost_entry_untracked",
           "zdi_keep_track does not put a held sample whose ring entry is taken over "
           "into the old map",
           [Edit(RING, "zdi_keep_track", "zdi_map_set(&seg->old_map, (uint32_t)i);",
                 "(void)0;")]),
    Mutant("take_without_pin",
           "zdi_reader_deliver advances the cursor without pinning the sample",
           [Edit(DELIVERY, "zdi_reader_deliver",
                 "rc = zdi_pin(seg, i, s, &h->reader_pins, bit);", "rc = 0;")]),
    Mutant("latest_skip_keeps_unread",
           "a latest reader's take counts the older samples as skipped but does not "
           "mark them read (their slots stay held)",
           [Edit(DELIVERY, "skip_one",
                 "set = !(zdi_fetch_or_seqcst_u64(&h->read_mask, bit) & bit);",
                 "set = 1;")]),
    Mutant("latest_takes_oldest",
           "a latest reader's walk keeps the first unread sample it finds: it takes "
           "the oldest, not the newest",
           [Edit(DELIVERY, "newest_unread",
                 "if (f == ZDI_FOUND &&", "if (f == ZDI_FOUND && !found &&")]),
    Mutant("join_ignores_join_last",
           "zdi_join starts every reader at next_sn (join_last ignored)",
           [Edit(DELIVERY, "zdi_join",
                 "join_last == 0 ? next : held_start(seg, next, join_last)", "next")]),
    Mutant("join_holds_old_samples",
           "zdi_join does not mark the samples before its start read",
           [Edit(DELIVERY, "zdi_join",
                 "if (want)\n\tzdi_fetch_or_seqcst_u64(&h->read_mask, bit);",
                 "if (want)\n\t;")]),
    # -- loans: free map, reuse, reclaim ------------------------------------------
    Mutant("discard_skips_free_map",
           "zdi_free_loan (discard, evict, dead loans) frees the slot without setting "
           "its free-map bit",
           [Edit(SLOT, "zdi_free_loan", "zdi_map_set(&seg->free_map, slot);", "")]),
    Mutant("reserve_ignores_mask",
           "the pool's reusable() ignores the readers of the mask: every unpinned "
           "held sample may be reused",
           [Edit(POOL, "reusable", "need = zdi_needed_by(seg, h, sn, read_by);",
                 "need = 0;")]),
    Mutant("needed_by_ignores_start_sn",
           "zdi_needed_by also counts an active reader that joined after the sample",
           [Edit(SLOT, "zdi_needed_by", "zdi_load_acquire_u64(&e->start_sn) > sn", "0")]),
    Mutant("recycle_before_release",
           "a held sample is recycled while a view still pins it (reusable() and "
           "zdi_recycle ignore the pins)",
           [Edit(POOL, "reusable", "if (zdi_pins_of(h) != 0)\n\treturn 0;", ""),
            Edit(SLOT, "zdi_recycle", "if (zdi_pins_of(h) != 0) {", "if (0) {")]),
    Mutant("walk_stop_ignores_unordered",
           "the window walk stops at the first needed sample even after an "
           "out-of-order mark_read (marks_unordered ignored)",
           [Edit(POOL, "reusable",
                 "if (zdi_load_relaxed_u32(&seg->hdr->marks_unordered) == 0)", "if (1)")]),
    Mutant("recycle_newest",
           "the window walk goes newest first: reserve recycles the newest reusable "
           "sample, not the oldest",
           [Edit(POOL, "take_window", "for (uint64_t sn = start; sn < hi; sn++)",
                 "for (uint64_t sn = hi; sn-- > start;)")]),
    Mutant("reclaim_without_drops",
           "the reclaim policy does not count drops for the readers that had not read",
           [Edit(WRITER, "reclaim_oldest", "zdi_count_drops(seg, unread);", "")]),
    # -- size classes: which class a loan takes ------------------------------------
    Mutant("class_largest_first",
           "zd_slot_reserve_size tries the fitting classes largest first: a loan "
           "takes the largest class that fits, not the smallest",
           [Edit(POOL, "zd_slot_reserve_size",
                 "for (uint32_t k = (uint32_t)c; k < seg->geo.class_count; k++)",
                 "for (uint32_t k = seg->geo.class_count; k-- > (uint32_t)c;)")]),
    Mutant("class_no_fallback",
           "zd_slot_reserve_size tries only the smallest fitting class: when it is "
           "full the loan does not go on to the next larger class",
           [Edit(POOL, "zd_slot_reserve_size",
                 "k < seg->geo.class_count; k++)", "k <= (uint32_t)c; k++)")]),
    Mutant("reclaim_own_class_only",
           "the reclaim policy reclaims only in the smallest fitting class, not in "
           "the larger classes that fit too",
           [Edit(WRITER, "reclaim_oldest", "seg->geo.slot_count, slot, &unread);",
                 "seg->classes[c].first_slot + seg->classes[c].slot_count, slot, "
                 "&unread);")]),
    # -- wake-ups -----------------------------------------------------------------
    Mutant("commit_skips_data_wake",
           "publish does not call zdi_wake_data: readers asleep are not woken by a commit",
           [Edit(DELIVERY, "publish", "zdi_wake_data(seg);", "")]),
    Mutant("unpin_skips_space_wake",
           "zdi_unpin never calls zdi_wake_space: the last release of a sample wakes "
           "no writer",
           [Edit(SLOT, "zdi_unpin", "zdi_wake_space(seg);", "(void)0;")]),
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


def _skip_to(text: str, i: int, close: str) -> int:
    """Index just past the ``close`` that ends the comment or literal that
    starts at i."""
    j = text.find(close, i)
    while close in "\"'" and j > 0 and text[j - 1] == "\\" and text[j - 2] != "\\":
        j = text.find(close, j + 1)
    return len(text) if j < 0 else j + len(close)


def _matching(text: str, i: int, open_: str, close: str) -> int:
    """Index just past the bracket that closes the one at text[i] (comments,
    string and character literals skipped), or -1."""
    depth = 0
    while i < len(text):
        c, two = text[i], text[i:i + 2]
        if two == "/*":
            i = _skip_to(text, i + 2, "*/")
            continue
        if two == "//":
            i = _skip_to(text, i + 2, "\n")
            continue
        if c in "\"'":
            i = _skip_to(text, i + 1, c)
            continue
        if c == open_:
            depth += 1
        elif c == close:
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return -1


def function_body(text: str, name: str, where: str) -> tuple[int, int]:
    """(start, end) of the body, braces included, of the one definition of
    the C function ``name`` in text: a line that starts with its return type
    and has ``name(`` before any ';', whose parameter list is followed by
    '{'.  None or several: SetupError."""
    head = re.compile(rf"^[A-Za-z_][^;{{}}()\n]*?(?<![\w]){re.escape(name)}\s*\(", re.M)
    spans = []
    for m in head.finditer(text):
        params_end = _matching(text, m.end() - 1, "(", ")")
        if params_end < 0:
            continue
        rest = text[params_end:]
        brace = len(rest) - len(rest.lstrip())
        if rest[brace:brace + 1] != "{":
            continue                      # a prototype, or a macro use
        body_end = _matching(text, params_end + brace, "{", "}")
        if body_end > 0:
            spans.append((params_end + brace, body_end))
    if len(spans) != 1:
        raise SetupError(f"{where}: function {name}() is defined {len(spans)} times "
                         f"(must be once); update the mutant")
    return spans[0]


def site_pattern(edit: Edit) -> re.Pattern:
    if edit.regex:
        return re.compile(edit.find, re.M)
    words = edit.find.split()
    if not words:
        raise SetupError(f"empty site pattern in {edit.file}:{edit.function}")
    pat = r"\s+".join(re.escape(w) for w in words)
    # A literal that starts or ends with a name must not match inside a longer one.
    if re.match(r"\w", words[0]):
        pat = r"(?<!\w)" + pat
    if re.search(r"\w$", words[-1]):
        pat += r"(?!\w)"
    return re.compile(pat)


def apply_edit(text: str, edit: Edit, where: str) -> tuple[str, int]:
    """Text with the edit applied, and the 1-based line of the site."""
    lo, hi = function_body(text, edit.function, where)
    body = text[lo:hi]
    found = list(site_pattern(edit).finditer(body))
    if len(found) != 1:
        what = "not found" if not found else f"ambiguous ({len(found)} matches)"
        raise SetupError(f"{where}: site {what} in {edit.function}() of {edit.file}; "
                         f"update the mutant.  Pattern:\n{edit.find}")
    m = found[0]
    new = m.expand(edit.new) if edit.regex else edit.new
    if new == m.group(0):
        raise SetupError(f"{where}: the edit in {edit.function}() changes nothing")
    line = text.count("\n", 0, lo + m.start()) + 1
    return text[:lo] + body[:m.start()] + new + body[m.end():] + text[hi:], line


def mutate(mutant: Mutant, pristine: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    """The mutated text of every file the mutant touches, and where each edit
    landed ("file:line function()").  A site that is missing or ambiguous
    stops everything: the core changed and the mutant must follow."""
    texts: dict[str, str] = {}
    sites = []
    for n, edit in enumerate(mutant.edits, 1):
        where = f"mutant {mutant.name}, edit {n}"
        if not edit.file.startswith("csrc/core/") or not edit.file.endswith(".c"):
            raise SetupError(f"{where}: edits must stay in csrc/core/*.c, not {edit.file}")
        if edit.file not in pristine:
            raise SetupError(f"{where}: no file {edit.file}")
        texts[edit.file], line = apply_edit(texts.get(edit.file, pristine[edit.file]),
                                            edit, where)
        sites.append(f"{edit.file}:{line} {edit.function}()")
    return texts, sites


def apply(mutant: Mutant, work: Path, pristine: dict[str, str]) -> list[str]:
    """Writes the mutated files into the work folder; returns the files touched."""
    texts, _ = mutate(mutant, pristine)
    for rel, text in texts.items():
        (work / rel).write_text(text)
    return list(texts)


def syntax_errors(rel: str, text: str, cc: str) -> str:
    """The C compiler's complaints about the file text (syntax and types
    only, nothing built), or ""."""
    res = run([cc, "-std=gnu11", "-D_GNU_SOURCE", "-fsyntax-only", "-w",
               "-I", str(REPO / "csrc" / "include"), "-I", str(REPO / "csrc" / "core"),
               "-x", "c", "-o", os.devnull, "-"], input=text)
    return "" if res.returncode == 0 else res.stderr.replace("<stdin>", rel)


def check_sites(mutants: list[Mutant], show_diff: bool) -> int:
    """Applies every mutant to the repository's core in memory (no copy, no
    build) and says where each edit lands; with a C compiler (cc) at hand,
    also checks that each mutated file still compiles (-fsyntax-only)."""
    pristine = {str(p.relative_to(REPO)): p.read_text()
                for p in sorted((REPO / "csrc" / "core").glob("*.c"))}
    cc = shutil.which(os.environ.get("CC", "cc"))
    if cc is None:
        print("(no C compiler found: the mutated files are not compiled)")
    bad = 0
    for m in mutants:
        try:
            texts, sites = mutate(m, pristine)
        except SetupError as exc:
            print(f"{m.name:28} FAILED: {exc}")
            bad += 1
            continue
        errors = "".join(syntax_errors(rel, text, cc) for rel, text in texts.items()) \
            if cc else ""
        if errors:
            print(f"{m.name:28} FAILED: does not compile:\n{errors}")
            bad += 1
            continue
        print(f"{m.name:28} {', '.join(sites)}")
        if show_diff:
            for rel, text in texts.items():
                sys.stdout.writelines(difflib.unified_diff(
                    pristine[rel].splitlines(True), text.splitlines(True),
                    f"a/{rel}", f"b/{rel}", n=1))
    print(f"{len(mutants) - bad}/{len(mutants)} mutants apply")
    return 0 if bad == 0 else 2


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
        counts = re.findall(r"(\d+) (failed|passed|error)", out.splitlines()[-1] if out else "")
        total = sum(int(n) for n, _ in counts) or len(failed)
        names = ", ".join(failed[:3]) + (", ..." if len(failed) > 3 else "")
        detail = (f"{len(failed)}/{total} tests ({names})"
                  + (f"; first: {why[0][:70]}" if why else ""))
        return "failed", detail, dt
    return "error", out[-3000:], dt


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", action="append", default=[], metavar="NAME",
                    help="run only this mutant (repeatable)")
    ap.add_argument("--list", action="store_true", help="list the mutants and exit")
    ap.add_argument("--check-sites", action="store_true",
                    help="only check that every mutant applies to the core as it is "
                         "(no build, no tests) and show where")
    ap.add_argument("--diff", action="store_true",
                    help="with --check-sites: print each mutant as a diff")
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
            print(f"{m.name:28} {m.what}")
        return 0
    unknown = set(args.only) - {m.name for m in MUTANTS}
    if unknown:
        ap.error(f"unknown mutant(s): {', '.join(sorted(unknown))}")
    mutants = [m for m in MUTANTS if not args.only or m.name in args.only]
    if args.check_sites:
        try:
            return check_sites(mutants, args.diff)
        except SetupError as exc:
            print(f"mutation check stopped: {exc}", file=sys.stderr)
            return 2

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
