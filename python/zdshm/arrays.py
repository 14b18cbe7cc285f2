"""numpy helpers for zdshm.

numpy is imported lazily (on first use), so ``import zdshm`` works without it.

- :func:`loan_array` (also ``Writer.loan_array``): a context manager that
  yields a writable ndarray over a loaned slot and commits it on exit;
- :func:`publish_array`: copy any array into a slot (C-contiguous copy if
  needed), dtype and shape included;
- :func:`asarray`: the zero-copy ndarray of a :class:`~zdshm.Sample`;
- :func:`dtype_to_format` / :func:`format_to_dtype`: the PEP 3118 formats
  that can travel in a slot's meta area.

Lifetime rule of :func:`loan_array`: on a normal exit the array it yielded
becomes read-only and the slot is published; no other numpy view of it may
be alive at that moment (no slice, ``.view()``, reshape or transpose kept
past the block).  If one is, the frame is *not* published:
:class:`~zdshm.ViewsAliveError` is raised and the slot stays loaned until
the last view is gone, then it is discarded.  On an exception the loan is
discarded.  A second name for the frame is fine: it is the same array, and
read-only after the commit.

How views are seen: by export counts.  The frame is a :class:`LoanFrame`
(an ndarray subclass made by the extension) that holds one buffer export
of its loan, and every view derived from it while the loan is live holds
one more, so ``loan.exports`` is 1 (the frame) plus the number of views
alive.  A buffer-protocol view (``memoryview(frame)``) or a plain-ndarray
conversion (``np.asarray(frame)``) is not an ndarray view of the frame and
is not counted: do not keep one past the block.
"""
from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from zdshm import _zdshm
from zdshm._zdshm import LoanArray, Sample, Writer

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    from numpy.typing import DTypeLike

__all__ = [
    "asarray",
    "dtype_to_format",
    "format_to_dtype",
    "loan_array",
    "publish_array",
]

_np: Any = None


def _numpy() -> Any:
    global _np
    if _np is None:
        try:
            import numpy
        except ImportError as exc:  # pragma: no cover - depends on the machine
            raise ImportError(
                "zdshm.arrays needs numpy: pip install 'zdshm[numpy]'") from exc
        _np = numpy
    return _np


# PEP 3118 codes zdshm can store, mapped to numpy type codes
# (native sizes for '' and '@', standard sizes for '<', '>', '=', '!').
_NATIVE = {
    "?": "?", "b": "b", "B": "B", "h": "h", "H": "H", "i": "i", "I": "I",
    "l": "l", "L": "L", "q": "q", "Q": "Q", "e": "e", "f": "f", "d": "d",
    "g": "g", "Zf": "F", "Zd": "D", "Zg": "G",
}
_STANDARD = {
    "?": "b1", "b": "i1", "B": "u1", "h": "i2", "H": "u2", "i": "i4",
    "I": "u4", "l": "i4", "L": "u4", "q": "i8", "Q": "u8", "e": "f2",
    "f": "f4", "d": "f8", "Zf": "c8", "Zd": "c16",
}
_ORDER = {"<": "<", ">": ">", "!": ">", "=": "="}


@functools.lru_cache(maxsize=256)
def format_to_dtype(fmt: str) -> np.dtype:
    """The numpy dtype of a format stored in a slot (e.g. ``'<f4'``, ``'Zd'``)."""
    np = _numpy()
    order = fmt[:1] if fmt[:1] in "<>=!@" else ""
    code = fmt[len(order):]
    code = {"F": "Zf", "D": "Zd", "G": "Zg"}.get(code, code)
    if order in ("", "@"):
        if code in _NATIVE:
            return np.dtype(_NATIVE[code])
    elif code in _STANDARD:
        return np.dtype(_ORDER[order] + _STANDARD[code])
    raise ValueError(f"format {fmt!r} is not a zdshm array format")


@functools.lru_cache(maxsize=256)
def _format_of(dtype: Any) -> str:
    np = _numpy()
    try:
        fmt = memoryview(np.empty(0, dtype)).format
    except (ValueError, TypeError, BufferError) as exc:
        raise ValueError(f"dtype {dtype} cannot travel in a zdshm slot "
                         f"(no PEP 3118 format)") from exc
    try:
        format_to_dtype(fmt)
    except ValueError:
        raise ValueError(f"dtype {dtype} (format {fmt!r}) cannot travel in a "
                         f"zdshm slot: only bool, integer, float and complex "
                         f"scalars are supported") from None
    return fmt


def dtype_to_format(dtype: DTypeLike) -> str:
    """The PEP 3118 format numpy exports for ``dtype`` (``'d'``, ``'>q'``, ``'Zf'``...)."""
    return _format_of(_numpy().dtype(dtype))


_DEFAULT: Any = ...       # "the writer's timeout", as the C methods' signatures show it


def __getattr__(name: str) -> Any:
    # LoanFrame is made on first use, like the numpy import it needs.
    if name == "LoanFrame":
        return _zdshm._loan_frame_type()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def loan_array(writer: Writer, shape: Any, dtype: DTypeLike,
               timeout: float | None = _DEFAULT) -> LoanArray:
    """Context manager yielding a writable ndarray over a loaned slot.

    ``with loan_array(w, (480, 640, 3), np.uint8) as frame: fill(frame)``
    commits on normal exit (the array becomes read-only) and discards on an
    exception.  ``timeout`` defaults to the writer's.  The frame is a
    :class:`LoanFrame` (an ndarray subclass, see the module docstring).
    The same as ``writer.loan_array(shape, dtype, timeout)``.
    """
    if not isinstance(writer, Writer):
        raise TypeError(f"writer must be a zdshm.Writer, got {writer!r}")
    return writer.loan_array(shape, dtype, timeout)


def publish_array(writer: Writer, arr: Any, timeout: float | None = _DEFAULT) -> int:
    """Copies ``arr`` (any array-like) into a slot with its dtype and shape;
    returns the sequence number."""
    np = _numpy()
    a = np.ascontiguousarray(arr)
    dtype_to_format(a.dtype)   # a clear error for unsupported dtypes
    if timeout is _DEFAULT:
        return writer.publish(a)
    return writer.publish(a, timeout=timeout)


def asarray(sample: Sample) -> np.ndarray:
    """The zero-copy, read-only ndarray of a sample (its published dtype and shape)."""
    if not isinstance(sample, Sample):
        raise TypeError(f"asarray() needs a zdshm.Sample, got {sample!r}")
    return _numpy().asarray(sample)
