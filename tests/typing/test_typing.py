"""Type checking: the stubs against the runtime, and users' code against the stubs.

- ``mypy.stubtest`` compares ``zdshm/_zdshm.pyi`` with the extension as built
  (every name, every signature: the C methods carry text signatures);
- ``mypy --strict`` checks the README's complete examples (the blocks that
  start with an import), the notebooks' code cells, and a contract file of
  ``assert_type`` lines (what a user's editor infers);
- a second file of deliberate mistakes must be rejected, line by line, so the
  stubs are known to say something.

All of it runs with the interpreter running the tests, so each supported
Python version checks the stubs its users get.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(300)

# torch's own stubs import from_dlpack without re-exporting it; torch is only
# installed where its wheel is available, so it may be missing altogether.
MYPY_INI = """\
[mypy]
strict = True

[mypy-torch.*]
implicit_reexport = True
ignore_missing_imports = True

[mypy-torch]
implicit_reexport = True
ignore_missing_imports = True
"""


def mypy(where: Path, *files: str) -> subprocess.CompletedProcess[str]:
    (where / "mypy.ini").write_text(MYPY_INI)
    return subprocess.run([sys.executable, "-m", "mypy", "--config-file", "mypy.ini",
                           "--no-incremental", "--hide-error-context", *files],
                          cwd=where, capture_output=True, text=True, timeout=280)


def readme_programs() -> list[str]:
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
    programs = [b for b in blocks if b.startswith(("import ", "from "))]
    assert len(programs) >= 4, "the README's complete examples were not found"
    return programs


def notebook_programs() -> dict[str, str]:
    out = {}
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        cells = json.loads(nb.read_text())["cells"]
        out[nb.stem] = "\n\n".join("".join(c["source"]) for c in cells
                                   if c["cell_type"] == "code")
    assert len(out) >= 3
    return out


def test_stubtest_finds_no_difference(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "mypy.stubtest", "zdshm._zdshm"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=280)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Success" in proc.stdout


CONTRACT = '''
from typing import Any, Literal, assert_type

import numpy as np
import numpy.typing as npt

import zdshm


def contract(name: str) -> None:
    with zdshm.PosixSegment.create(name, 4, 1 << 12) as seg:
        assert_type(seg, zdshm.PosixSegment)
        seg.unlink()                                   # only a PosixSegment has it
        again = zdshm.PosixSegment.attach(name=name, allow_owner="any")
        assert_type(again, zdshm.PosixSegment)
        with seg.writer(overflow="reclaim") as w, seg.reader(join_last=1) as r:
            assert_type(w, zdshm.Writer)
            assert_type(r, zdshm.Reader)
            assert_type(w.wait_for_readers(1, timeout=1.0), int)
            with w.loan_array((2, 3), np.float32) as frame:
                assert_type(frame, npt.NDArray[Any])
                frame[...] = 1.0
            sn: int = w.publish(np.zeros(4, np.uint8))
            batch = {"image": np.zeros((2, 2), np.uint8), "label": np.zeros(1, np.int64)}
            sn = w.publish(batch)
            spec = {"image": ((2, 2), np.uint8), "label": ((), "i8")}
            with w.loan_arrays(spec) as arrs:
                assert_type(arrs, dict[str, npt.NDArray[Any]])
                arrs["label"][...] = 1
            with r.take(timeout=1) as several:
                assert_type(several.keys(), tuple[str, ...])
                assert_type(several["image"], npt.NDArray[Any])
                assert_type("image" in several, bool)
                assert_type(several.arrays(), dict[str, npt.NDArray[Any]])
                del arrs
            stats = r.stats()
            assert_type(stats, zdshm.ReaderStats)
            assert_type(stats["last_sn"], int | None)
            assert_type(stats["taken"], int)
            with seg.reader(join_last=1, latest=True) as newest:
                assert_type(newest.latest, bool)
                assert_type(newest.stats()["skipped"], int)
            with r.take(timeout=1) as sample:
                assert_type(sample, zdshm.Sample)
                arr = np.asarray(sample)
                assert_type(sample.shape, tuple[int, ...])
                del arr
            maybe = r.try_take()
            assert_type(maybe, zdshm.Sample | None)
            with w.loan() as loan:
                assert_type(loan, zdshm.Loan)
                memoryview(loan)[:1] = b"x"
        assert_type(seg.slot_state(0), Literal["free", "loaned", "committed"])
        again.close()
    with zdshm.MemorySegment(2, 64) as mem:
        assert_type(mem, zdshm.MemorySegment)
    with zdshm.MemorySegment(classes=[(8, 64), (2, 1 << 20)]) as sized:
        assert_type(sized.slot_capacity_of(0), int)
        assert_type(sized.slots(), list[dict[str, Any]])
        with sized.writer() as w2:
            assert_type(w2.loan(nbytes=100), zdshm.Loan)
            assert_type(w2.try_loan(nbytes=100), zdshm.Loan | None)
        assert_type(sized.reserve(nbytes=10), zdshm.Loan)
    with zdshm.AnonymousSegment(classes=((1, 8), (1, 16))) as anon:
        assert_type(anon, zdshm.AnonymousSegment)
    named = zdshm.PosixSegment.create(name + "-c", classes=[(4, 64), (1, 4096)])
    assert_type(named, zdshm.PosixSegment)
    named.unlink()
    named.close()
    print(sn)


def bridges(seg: zdshm.PosixSegment, sample: zdshm.Sample) -> None:
    from zdshm import bridge

    out = bridge.ToZenoh("frames", "lab/cam0", connect=["tcp/10.0.0.2:7447"], policy="drop")
    st = out.stats()
    assert_type(st, bridge.BridgeStats)
    assert_type(st["forwarded"], int)
    assert_type(st["last_error"], str | None)
    assert_type(bridge.origin(sample, seg), bridge.Origin | None)
    with bridge.FromIceoryx2(seg, "camera/frames", prefix="lab_") as inn:
        assert_type(inn, bridge.FromIceoryx2)
    assert_type(inn.stop(), bridge.BridgeStats)
'''

# Each line must be an error (the line numbers are checked).
MISTAKES = '''
import zdshm

seg = zdshm.MemorySegment(2, 64)
seg.read(slot=0)                            # positional-only
seg.unlink()                                # a MemorySegment has no name
seg.writer(overflow="drop")                 # not a policy
seg.reader().stats()["nope"]                # not a key
zdshm.unlink(name="x")                      # positional-only
seg.writer().wait_for_readers("2")          # n is an int
seg.reader(0, 0.0, True)                    # latest is keyword-only
zdshm.PosixSegment.attach("x", None)        # allow_owner is keyword-only
zdshm.MemorySegment(2, 64, classes=[(2, 64)])  # one form or the other
zdshm.MemorySegment(classes=[(2, "64")])    # pairs of ints
seg.writer().loan(nbytes="10")              # nbytes is an int
from zdshm import bridge
bridge.ToZenoh("frames", "k", policy="sometimes")  # not a policy
bridge.ToIceoryx2("frames", "k", "drop")    # policy is keyword-only
'''


def test_users_code_type_checks_strict(tmp_path):
    files = []
    for i, program in enumerate(readme_programs()):
        (tmp_path / f"readme_{i}.py").write_text(program)
        files.append(f"readme_{i}.py")
    for stem, program in notebook_programs().items():
        (tmp_path / f"nb_{stem}.py").write_text(program)
        files.append(f"nb_{stem}.py")
    shutil.copy(ROOT / "notebooks" / "_helpers.py", tmp_path / "_helpers.py")
    (tmp_path / "contract.py").write_text(textwrap.dedent(CONTRACT))
    files += ["_helpers.py", "contract.py"]
    proc = mypy(tmp_path, *files)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"no issues found in {len(files)} source files" in proc.stdout, proc.stdout


def test_mistakes_are_rejected(tmp_path):
    (tmp_path / "mistakes.py").write_text(MISTAKES)
    proc = mypy(tmp_path, "mistakes.py")
    lines = MISTAKES.splitlines()
    expected = {n for n, line in enumerate(lines, 1) if "#" in line}
    flagged = {int(m) for m in re.findall(r"^mistakes\.py:(\d+): error", proc.stdout, re.M)}
    assert flagged == expected, proc.stdout
