"""Executes every notebook under notebooks/ top to bottom.

Each notebook runs in a fresh ipykernel started with *this* interpreter
(sys.executable, through a kernelspec written to a temporary JUPYTER_PATH), so
it sees the zdshm under test.  A cell that raises fails the test with the
cell's traceback; a notebook that runs past its budget fails too.  Each
notebook's run time is printed, and /dev/shm must be as the notebook found it
(what it left is removed, and the test fails).

Needs the ``notebooks`` extra (nbclient, nbformat, ipykernel, matplotlib);
without it these tests are skipped.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("matplotlib")
pytest.importorskip("numpy")
pytest.importorskip("zdshm")

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
KERNEL = "zdshm-test-python3"
SHM = Path("/dev/shm")
# What a notebook may create in /dev/shm: its segments (every name starts with
# "zdnb-") and multiprocessing's named semaphores ("sem.mp-").  Only these are
# compared, so that files of unrelated processes on the host do not count.
SHM_PREFIXES = ("zdnb-", "sem.mp-")

# Whole-notebook budgets in seconds (kernel start included).  02 must stay
# well under a minute on the project's 2-core machines.
BUDGET = {
    "01_quickstart.ipynb": 60,
    "02_numpy_pipeline.ipynb": 60,
    "03_property_testing.ipynb": 90,
    "04_classes_and_latest.ipynb": 60,
}
DEFAULT_BUDGET = 60


def notebook_paths() -> list[Path]:
    return sorted(NOTEBOOKS.glob("[0-9]*.ipynb"))


def test_notebooks_are_found_and_stored_without_outputs():
    paths = notebook_paths()
    missing = sorted(set(BUDGET) - {p.name for p in paths})
    assert not missing, f"notebooks missing from {NOTEBOOKS}: {missing}"
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        dirty = [i for i, cell in enumerate(nb.cells) if cell.cell_type == "code"
                 and (cell.get("outputs") or cell.get("execution_count") is not None)]
        assert not dirty, f"{path.name}: cells {dirty} were stored with outputs"


@pytest.fixture(scope="module")
def kernel_env(tmp_path_factory):
    """A kernelspec that runs ipykernel with sys.executable, found through
    JUPYTER_PATH; IPython's and Jupyter's state goes to a temporary folder."""
    root = tmp_path_factory.mktemp("jupyter")
    spec = root / "share" / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": f"zdshm tests ({sys.executable})",
        "language": "python",
    }))
    env = {
        "JUPYTER_PATH": str(root / "share"),
        "JUPYTER_RUNTIME_DIR": str(root / "runtime"),
        "JUPYTER_DATA_DIR": str(root / "data"),
        "JUPYTER_CONFIG_DIR": str(root / "config"),
        "IPYTHONDIR": str(root / "ipython"),
        "JUPYTER_PLATFORM_DIRS": "1",
        "MPLBACKEND": "Agg",
        "PYDEVD_DISABLE_FILE_VALIDATION": "1",
    }
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)       # the kernel inherits this environment
        yield env


def shm_entries() -> set[str]:
    if not SHM.is_dir():
        return set()
    return {name for name in os.listdir(SHM) if name.startswith(SHM_PREFIXES)}


@pytest.mark.parametrize("path", notebook_paths(), ids=lambda p: p.stem)
def test_notebook_runs(path: Path, kernel_env, capsys):
    budget = BUDGET.get(path.name, DEFAULT_BUDGET)
    nb = nbformat.read(path, as_version=4)
    before = shm_entries()

    start = time.monotonic()
    deadline = start + budget
    client = nbclient.NotebookClient(
        nb,
        kernel_name=KERNEL,
        # The budget is for the whole notebook: each cell gets what is left.
        timeout_func=lambda cell: max(1, int(deadline - time.monotonic())),
        startup_timeout=60,
        resources={"metadata": {"path": str(NOTEBOOKS)}},   # the kernel's cwd
        allow_errors=False,
        record_timing=True,
    )
    failure = None
    try:
        client.execute()
    except Exception as exc:            # a cell error, a cell timeout, a dead kernel
        failure = exc
    elapsed = time.monotonic() - start

    # Multiprocessing's named semaphores are removed by finalizers as the
    # kernel exits; give them a moment before comparing.
    settle = time.monotonic() + 5
    while shm_entries() - before and time.monotonic() < settle:
        time.sleep(0.1)
    added = shm_entries() - before
    for name in sorted(added):          # the kernel is gone: clean up what it left
        (SHM / name).unlink(missing_ok=True)

    with capsys.disabled():
        print(f"\n[notebook] {path.name}: {elapsed:.1f} s (budget {budget} s)")

    if failure is not None:
        pytest.fail(f"{path.name} failed after {elapsed:.1f} s: "
                    f"{type(failure).__name__}: {failure}", pytrace=False)
    assert elapsed < budget, f"{path.name} took {elapsed:.1f} s, over its {budget} s budget"
    assert not added, f"{path.name} left {sorted(added)} in /dev/shm"

    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    size = len(json.dumps(outputs))
    assert size < 512 * 1024, f"{path.name} produced {size} bytes of output: keep it small"
