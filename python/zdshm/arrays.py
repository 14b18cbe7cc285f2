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

How views are seen: by export counts.  The frame is an ndarray subclass
whose every derived view takes its own buffer export of the loan while the
loan is live, so ``loan.exports`` is 1 (the frame) plus the number of views
alive.  A buffer-protocol view (``memoryview(frame)``) or a plain-ndarray
conversion (``np.asarray(frame)``) is not an ndarray view of the frame and
is not counted: do not keep one past the block.
"""
from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING, Any

from zdshm._zdshm import Sample, SampleTooLargeError, ViewsAliveError, Writer

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


def _shape_tuple(shape: Any) -> tuple[int, ...]:
    if isinstance(shape, int) and not isinstance(shape, bool):
        return (shape,)
    if not isinstance(shape, (tuple, list)):
        raise TypeError(f"shape must be an int or a tuple of ints, got {shape!r}")
    return tuple(shape)


_DEFAULT: Any = ...       # "the writer's timeout", as the C methods' signatures show it

_FRAME: Any = None


def _frame_type() -> Any:
    """The ndarray subclass of loan_array frames (made once numpy is in)."""
    global _FRAME
    if _FRAME is None:
        np = _numpy()

        class LoanFrame(np.ndarray):
            """A loan_array frame: every view derived from it while its loan
            is live holds a buffer export of the loan, so the loan's export
            count tells whether views other than the frame are alive."""

            def __array_finalize__(self, obj: Any) -> None:
                self._zd_loan = None
                self._zd_export = None
                # Views share memory with their base; ufunc results and
                # copies have a fresh base array (or own their data).
                loan = getattr(self.base, "_zd_loan", None)
                if loan is not None and loan.live:
                    self._zd_export = memoryview(loan)

        LoanFrame.__module__ = __name__
        LoanFrame.__qualname__ = "LoanFrame"
        _FRAME = LoanFrame
    return _FRAME


@functools.lru_cache(maxsize=256)
def _plan(shape: tuple[int, ...], dtype: Any) -> tuple[Any, str, int]:
    """(numpy dtype, slot format, element count) of a (shape, dtype) request:
    validated once, then served from the cache on the hot path."""
    for dim in shape:
        if not isinstance(dim, int) or isinstance(dim, bool) or dim < 0:
            raise ValueError(f"shape must be a tuple of ints >= 0, got {shape!r}")
    dt = _numpy().dtype(dtype)
    return dt, dtype_to_format(dt), math.prod(shape)


class _LoanArray:
    """Context manager of :func:`loan_array` (see the module docstring)."""

    __slots__ = ("_writer", "_shape", "_dtype", "_fmt", "_count", "_timeout",
                 "_loan", "_base", "_arr")

    def __init__(self, writer: Writer, shape: Any, dtype: Any,
                 timeout: Any = _DEFAULT) -> None:
        if not isinstance(writer, Writer):
            raise TypeError(f"writer must be a zdshm.Writer, got {writer!r}")
        self._writer = writer
        self._shape = _shape_tuple(shape)
        try:
            plan = _plan(self._shape, dtype)
        except TypeError:           # an unhashable dtype spec: no caching
            plan = _plan.__wrapped__(self._shape, dtype)
        self._dtype, self._fmt, self._count = plan
        self._timeout = timeout
        self._loan: Any = None
        self._base: Any = None
        self._arr: Any = None

    def __enter__(self) -> np.ndarray:
        np = _numpy()
        frame_type = _frame_type()
        if self._loan is not None:
            raise RuntimeError("loan_array context manager is not reentrant")
        # The smallest size class that holds the frame; a frame larger
        # than every slot is refused before anything is loaned.
        nbytes = self._count * self._dtype.itemsize
        largest = self._writer.segment.slot_capacity
        if nbytes > largest:
            raise SampleTooLargeError(
                f"loan_array: shape {self._shape!r} of {self._dtype} needs "
                f"{nbytes} bytes, more than the largest slot capacity {largest}")
        if self._timeout is _DEFAULT:
            loan = self._writer.loan(nbytes=nbytes)
        else:
            loan = self._writer.loan(timeout=self._timeout, nbytes=nbytes)
        try:
            loan.set_format(self._fmt, self._shape)
            # The loan's one export: base; arr is a view of base.
            base = np.frombuffer(loan, dtype=self._dtype, count=self._count)
            arr = base.reshape(self._shape).view(frame_type)
            arr._zd_loan = loan
        except BaseException:
            base = arr = None
            if loan.exports == 0:
                loan.discard()
            raise
        self._loan, self._base, self._arr = loan, base, arr
        return arr

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        loan, base, arr = self._loan, self._base, self._arr
        self._loan = self._base = self._arr = None
        if loan is None:
            return False
        arr._zd_loan = None             # views made from now on take no export
        arr.flags.writeable = False
        base.flags.writeable = False
        others = loan.exports - 1       # the frame's own export is base's
        if exc_type is not None:
            if others == 0 and loan.live:
                loan._discard_sealed()
            return False
        if not loan.live:
            return False
        if others > 0:
            slot = loan.slot
            del arr, base, loan
            raise ViewsAliveError(
                f"loan_array: {others} other view{'s' if others > 1 else ''} of "
                f"the frame (slice, .view(), reshape) "
                f"{'are' if others > 1 else 'is'} still alive, so the frame in "
                f"slot {slot} was NOT published: del them before the block "
                f"ends; the slot is discarded once they are gone")
        loan._commit_sealed()
        return False


def __getattr__(name: str) -> Any:
    # LoanFrame is made on first use, like the numpy import it needs.
    if name == "LoanFrame":
        return _frame_type()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def loan_array(writer: Writer, shape: Any, dtype: DTypeLike,
               timeout: float | None = _DEFAULT) -> _LoanArray:
    """Context manager yielding a writable ndarray over a loaned slot.

    ``with loan_array(w, (480, 640, 3), np.uint8) as frame: fill(frame)``
    commits on normal exit (the array becomes read-only) and discards on an
    exception.  ``timeout`` defaults to the writer's.  The frame is a
    :class:`LoanFrame` (an ndarray subclass, see the module docstring).
    """
    return _LoanArray(writer, shape, dtype, timeout)


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
