"""Module surface: constants, exception hierarchy, .pyi parity, names, no numpy import."""
from __future__ import annotations

import ast
import errno
import importlib.metadata
import os
import pathlib
import subprocess
import sys

import pytest

import zdshm
from zdshm import _zdshm

from zdpy_support import PREFIX, unique_name

HIERARCHY = [
    (zdshm.NoFreeSlotError, BlockingIOError),
    (zdshm.WaitTimeoutError, TimeoutError),
    (zdshm.SegmentExistsError, FileExistsError),
    (zdshm.SegmentNotFoundError, FileNotFoundError),
    (zdshm.SegmentPermissionError, PermissionError),
    (zdshm.SegmentOwnerError, PermissionError),
    (zdshm.SampleTooLargeError, ValueError),
    (zdshm.StaleLoanError, RuntimeError),
    (zdshm.NoSampleError, LookupError),
    (zdshm.SlotBusyError, BlockingIOError),
    (zdshm.TooManyReadersError, OSError),
    (zdshm.DisconnectedError, ConnectionError),
    (zdshm.SegmentClosedError, BrokenPipeError),
    (zdshm.CorruptSegmentError, ValueError),
    (zdshm.NoSpaceError, OSError),
    (zdshm.ViewsAliveError, BufferError),
    (zdshm.ClosedError, ValueError),
    (zdshm.ForkedHandleError, RuntimeError),
    (zdshm.InvalidArgumentError, ValueError),
    (zdshm.SizeOverflowError, OverflowError),
    (zdshm.SystemCallError, OSError),
]


@pytest.mark.parametrize("cls,builtin", HIERARCHY, ids=lambda c: c.__name__)
def test_exception_hierarchy(cls, builtin):
    assert issubclass(cls, zdshm.Error)
    assert issubclass(cls, builtin)
    assert cls.__module__ == "zdshm"
    exc = cls(errno.EIO, "x") if issubclass(cls, OSError) else cls("x")
    assert isinstance(exc, zdshm.Error) and isinstance(exc, builtin)
    if issubclass(cls, OSError):
        assert exc.errno == errno.EIO
    else:
        assert exc.errno is None


def test_error_base():
    assert issubclass(zdshm.Error, Exception)
    assert not issubclass(zdshm.Error, OSError)


def test_raised_errors_carry_errno(make_segment):
    seg = make_segment(slot_count=1)
    loan = seg.reserve()
    with pytest.raises(zdshm.NoFreeSlotError) as ei:
        seg.reserve()
    assert ei.value.errno == errno.EAGAIN
    assert isinstance(ei.value, BlockingIOError) and isinstance(ei.value, zdshm.Error)
    loan.commit(1)
    with pytest.raises(zdshm.StaleLoanError) as ei:
        loan.commit(1)
    assert ei.value.errno == errno.ESTALE
    assert "already committed" in str(ei.value)


def test_missing_segment_errno():
    with pytest.raises(zdshm.SegmentNotFoundError) as ei:
        zdshm.PosixSegment.attach(unique_name("missing"))
    assert ei.value.errno == errno.ENOENT
    assert isinstance(ei.value, FileNotFoundError)


def test_constants():
    assert zdshm.READER_MAX == 64
    assert zdshm.ATTACH_MAX == 64
    assert zdshm.SLOT_META_SIZE == 64
    assert zdshm.NAME_MAX == 200
    assert zdshm.META_NDIM_MAX == 6
    assert zdshm.META_FORMAT_MAX == 11
    assert zdshm.SLOT_COUNT_MAX == 1 << 20
    assert zdshm.SLOT_CAPACITY_MAX == 1 << 40


def test_counter_names():
    from zdshm.testing import model
    assert type(zdshm.COUNTER_NAMES) is tuple
    assert zdshm.COUNTER_NAMES == model.COUNTERS
    assert zdshm.COUNTER_NAMES[:2] == ("loans", "commits")
    assert len(set(zdshm.COUNTER_NAMES)) == len(zdshm.COUNTER_NAMES)


def test_info_counters_are_the_counter_names(make_segment):
    seg = make_segment(slot_count=2)
    seg.reserve().commit(1)
    seg.reserve().discard()
    c = seg.info()["counters"]
    assert tuple(c) == zdshm.COUNTER_NAMES
    assert c["loans"] == 2 and c["commits"] == 1 and c["discards"] == 1
    assert all(c[k] == 0 for k in zdshm.COUNTER_NAMES[3:]), c
    if seg.info()["backend"] == "posix":
        assert tuple(zdshm.describe(seg.name)["counters"]) == zdshm.COUNTER_NAMES


def test_model_counters_need_no_extension():
    # The model is standard library only: load its file alone, without the
    # zdshm package (whose __init__ imports the extension).
    code = ("import importlib.util, sys; "
            "spec = importlib.util.spec_from_file_location('m', sys.argv[1]); "
            "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m); "
            "assert not any(n.startswith('zdshm') for n in sys.modules), sys.modules; "
            "print(','.join(m.COUNTERS))")
    path = pathlib.Path(zdshm.__file__).with_name("testing") / "model.py"
    out = subprocess.run([sys.executable, "-c", code, str(path)], check=True,
                         timeout=60, capture_output=True, text=True).stdout
    assert tuple(out.strip().split(",")) == zdshm.COUNTER_NAMES


def test_version_matches_metadata():
    assert zdshm.__version__ == importlib.metadata.version("zdshm")


def test_all_is_complete():
    for name in zdshm.__all__:
        assert hasattr(zdshm, name), name
    public = {n for n in dir(_zdshm) if not n.startswith("_")}
    assert public <= set(zdshm.__all__), public - set(zdshm.__all__)


def _stub_names() -> set[str]:
    stub = pathlib.Path(zdshm.__file__).with_name("_zdshm.pyi")
    tree = ast.parse(stub.read_text())
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef)):
            names.add(node.name)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    # Private names (type aliases such as _BufferLike) exist for the checker only.
    return {n for n in names if not n.startswith("_") or n == "__version__"}


def test_stub_matches_module():
    stub = _stub_names()
    module = {n for n in dir(_zdshm) if not n.startswith("_")} | {"__version__"}
    assert stub == module, (stub - module, module - stub)


def test_stub_methods_exist():
    stub = pathlib.Path(zdshm.__file__).with_name("_zdshm.pyi")
    tree = ast.parse(stub.read_text())
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            cls = getattr(_zdshm, node.name)
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and not item.name.startswith("__"):
                    assert hasattr(cls, item.name), f"{node.name}.{item.name}"


def test_py_typed_is_shipped():
    assert pathlib.Path(zdshm.__file__).with_name("py.typed").exists()


def test_import_does_not_need_numpy():
    code = ("import sys, zdshm; s = zdshm.MemorySegment(2, 16); "
            "w = s.writer(); w.publish(b'abc'); s.close(); "
            "assert 'numpy' not in sys.modules, 'numpy imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


@pytest.mark.parametrize("name", ["a", "frames", "A-b_c.9", "x" * 200])
def test_validate_name_accepts(name):
    assert zdshm.validate_name(name) is None


@pytest.mark.parametrize("name", ["", ".hidden", "a/b", "/abs", "x" * 201,
                                  "sp ace", "a\0b", "é", "a*"])
def test_validate_name_refuses(name):
    with pytest.raises(ValueError) as ei:
        zdshm.validate_name(name)
    assert repr(name)[:60] in str(ei.value) or "longer than" in str(ei.value)


@pytest.mark.parametrize("bad", [None, 1, b"abc", ["a"]])
def test_validate_name_type(bad):
    with pytest.raises(TypeError, match="name must be a str"):
        zdshm.validate_name(bad)


def test_list_describe_unlink(posix_factory):
    seg = posix_factory(slot_count=3, slot_capacity=100,
                        type_hash=bytes(range(1, 17)))
    assert seg.name in zdshm.list_segments()
    d = zdshm.describe(seg.name)
    assert d["slot_count"] == 3 and d["slot_capacity"] == 100
    assert d["type_hash"] == bytes(range(1, 17))
    assert d["backend"] == "posix" and d["name"] == seg.name
    assert d["goodbye"] is False
    info = seg.info()
    for key in ("slot_count", "slot_capacity", "slot_stride", "total_size",
                "owner_pid", "layout_version"):
        assert d[key] == info[key], key
    zdshm.unlink(seg.name)
    assert seg.name not in zdshm.list_segments()
    with pytest.raises(zdshm.SegmentNotFoundError):
        zdshm.describe(seg.name)
    with pytest.raises(zdshm.SegmentNotFoundError):
        zdshm.unlink(seg.name)
    # the handle stays valid after unlink
    seg.writer().publish(b"still works")


def test_list_segments_skips_fifos():
    # Opening a FIFO blocks; list_segments must not even try.
    path = pathlib.Path("/dev/shm") / unique_name("fifo")
    os.mkfifo(path)
    try:
        assert path.name not in zdshm.list_segments()
    finally:
        path.unlink()


def test_list_segments_ignores_foreign_files():
    path = pathlib.Path("/dev/shm") / unique_name("foreign")
    path.write_bytes(b"not a segment" * 100)
    try:
        assert path.name not in zdshm.list_segments()
        with pytest.raises(zdshm.CorruptSegmentError):
            zdshm.describe(path.name)
    finally:
        path.unlink()
    assert all(not n.startswith(PREFIX + "x") for n in zdshm.list_segments())


def _c_callables():
    """Every function of the extension and every method its types define."""
    for name in dir(_zdshm):
        obj = getattr(_zdshm, name)
        if callable(obj) and not isinstance(obj, type):
            yield name, obj
        elif isinstance(obj, type) and obj.__module__ == "zdshm" \
                and not issubclass(obj, BaseException):
            yield name, obj
            for attr, member in vars(obj).items():
                if callable(member) or isinstance(member, (classmethod, staticmethod)):
                    yield f"{name}.{attr}", getattr(obj, attr)


def test_every_c_callable_has_a_signature():
    import inspect

    missing = []
    for name, obj in _c_callables():
        if isinstance(obj, type) and name in ("Segment", "PosixSegment", "Loan", "Sample",
                                              "Reader", "Writer"):
            continue     # not instantiable: no constructor signature to give
        try:
            inspect.signature(obj)
        except (ValueError, TypeError) as e:
            missing.append(f"{name}: {e}")
    assert missing == []


def test_help_shows_no_signature_markers():
    import pydoc

    for cls in (zdshm.Segment, zdshm.PosixSegment, zdshm.MemorySegment,
                zdshm.AnonymousSegment, zdshm.Loan, zdshm.Sample, zdshm.Reader,
                zdshm.Writer):
        text = pydoc.render_doc(cls, renderer=pydoc.plaintext)
        assert "\n--\n" not in text and "--\n\n" not in text, cls
        assert ") ->" not in text.replace("-> Self", ""), cls
    text = pydoc.render_doc(_zdshm, renderer=pydoc.plaintext)
    assert "--\n" not in text.replace("----", "")
