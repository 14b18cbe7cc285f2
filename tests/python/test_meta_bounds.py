"""Slot meta (format and shape) is bounded, for writers and readers alike.

The rule (csrc/ext/meta.c, layout_bound): the item size times the product
of the nonzero dimensions is at most the slot capacity, and the product of
all dimensions times the item size is the sample's size.  Loan.set_format
and Writer.publish refuse anything else, naming the shape; a reader
exports a sample whose meta breaks the rule as 1-D "B".

The hostile sweep writes meta bytes straight into committed slots, the way
another process with the segment mapped can: through a mapping of
/dev/shm/<name> at the offsets of csrc/core/layout.h (posix), or through
the writable address of the loan (memory).  Each sample then goes through
memoryview (cast, tolist, tobytes), numpy (asarray, tolist) and bytes();
each must give the array the meta describes, a clean error, or the 1-D
fallback.  Run under the ASan+UBSan build (tests/run_asan_python.sh -k
meta) this also shows that no such meta makes the extension overflow.
"""
from __future__ import annotations

import ctypes
import itertools
import mmap
import os
import random
import struct

import pytest

import zdshm

np = pytest.importorskip("numpy")

CAPACITY = 256
SLOT_META_OFFSET = 64            # meta within the slot header (layout.h)
SLOT_HEADER_SIZE = 128           # the data follows the slot header
SLOTS_OFFSET_FIELD = 88          # segment header: uint64 geo.slots_offset
SLOT_STRIDE_FIELD = 32           # segment header: uint64 slot_stride

# Formats of the sweep: item size and numpy dtype.
FORMATS = {
    "B": (1, np.uint8),
    "<h": (2, np.dtype("<i2")),
    "d": (8, np.float64),
    "Zd": (16, np.complex128),
}

# Data bytes below 0x64: no float made of them is a NaN, so tolist()
# results compare equal.
PATTERN = bytes(i % 100 for i in range(1, CAPACITY + 1))


def encode_meta(fmt: str, shape: tuple[int, ...]) -> bytes:
    """The 64 meta bytes as ext.h lays them out, for any shape values."""
    dims = list(shape) + [0] * (6 - len(shape))
    return (b"ZA" + bytes([len(shape), len(fmt)]) + fmt.encode().ljust(12, b"\0")
            + b"".join((d % 2**64).to_bytes(8, "little") for d in dims))


def model(fmt: str, shape: tuple[int, ...], size: int) -> tuple[str, tuple]:
    """What a reader must export: the rule above with exact integers."""
    itemsize = FORMATS[fmt][0]
    span = nbytes = itemsize
    for d in shape:
        nbytes *= d
        if d:
            span *= d
    if span <= CAPACITY and nbytes == size:
        return fmt, shape
    return "B", (size,)


class MetaWriter:
    """Writes raw meta bytes into a committed slot as a peer could."""

    def __init__(self, seg: zdshm.Segment) -> None:
        self.seg = seg
        self.map = None
        if seg.backend == "posix":
            fd = os.open(f"/dev/shm/{seg.name}", os.O_RDWR)
            try:
                self.map = mmap.mmap(fd, seg.total_size)
            finally:
                os.close(fd)
            self.slots_offset, = struct.unpack_from("<Q", self.map,
                                                    SLOTS_OFFSET_FIELD)
            self.stride, = struct.unpack_from("<Q", self.map, SLOT_STRIDE_FIELD)
            assert self.stride == seg.info()["slot_stride"]

    def _offset(self, slot: int) -> int:
        return self.slots_offset + slot * self.stride + SLOT_META_OFFSET

    def write(self, slot: int, address: int, meta: bytes) -> None:
        """address: the data address of the slot's loan (memory backend)."""
        assert len(meta) == 64
        if self.map is not None:
            off = self._offset(slot)
            self.map[off:off + 64] = meta
        else:
            ctypes.memmove(address - SLOT_HEADER_SIZE + SLOT_META_OFFSET,
                           meta, 64)

    def read(self, slot: int, address: int) -> bytes:
        if self.map is not None:
            off = self._offset(slot)
            return bytes(self.map[off:off + 64])
        return ctypes.string_at(address - SLOT_HEADER_SIZE + SLOT_META_OFFSET, 64)

    def close(self) -> None:
        if self.map is not None:
            self.map.close()


@pytest.fixture
def hostile(make_segment):
    seg = make_segment(slot_count=2, slot_capacity=CAPACITY)
    writer = MetaWriter(seg)
    yield seg, writer
    writer.close()


def committed(seg, writer, size, meta):
    """Commits `size` bytes of PATTERN with `meta` written over the meta
    area afterwards (set_format is not used: a peer's bytes); returns the
    slot."""
    loan = seg.reserve()
    slot, address = loan.slot, loan.address
    memoryview(loan)[:] = PATTERN
    loan.commit(size)
    writer.write(slot, address, meta)
    return slot


def outcome(f):
    """f()'s result, or the class of the clean error it raised."""
    try:
        return f()
    except (TypeError, ValueError, NotImplementedError) as e:
        return type(e)


def check_sample(s, fmt, shape, size):
    """Every consumer sees (fmt, shape) over the first `size` bytes: what
    it gives (or refuses) is what it gives for a numpy array of that shape
    over the same bytes."""
    data = PATTERN[:size]
    ref = np.frombuffer(data, dtype=FORMATS[fmt][1]).reshape(shape)
    assert (s.format, s.shape, len(s)) == (fmt, shape, size)
    assert bytes(s) == data and s.tobytes() == data
    with memoryview(s) as m, memoryview(ref) as mref:
        assert (m.format, m.shape, m.nbytes, m.readonly) == (fmt, shape, size, True)
        assert m.tobytes() == data
        for got, want in ((m.tolist, mref.tolist),
                          (lambda: m.cast("B").tobytes(),
                           lambda: mref.cast("B").tobytes())):
            got, want = outcome(got), outcome(want)
            if m.format == mref.format:
                assert got == want
            else:   # "<h": numpy says "h"; memoryview refuses a "<" format
                assert got == want or got in (ValueError, NotImplementedError)
    a = np.asarray(s)
    assert (a.shape, a.dtype, a.nbytes) == (shape, ref.dtype, size)
    assert a.tobytes() == data and a.tolist() == ref.tolist()
    del a
    assert s.exports == 0


# --------------------------------------------------------------------------
# Writers: set_format and publish
# --------------------------------------------------------------------------

# Accepted: the nonzero dimensions times the item size fit the slot.
ACCEPTED = [
    ("d", (0,)), ("d", (0, 5)), ("d", (5, 0)), ("d", (3, 0, 2)),
    ("d", (0, 32)), ("B", (0, 256)), ("Zd", (2, 0, 8)),
    ("B", (0, 1, 0, 1, 0, 1)), ("<h", (1, 128, 0)), ("d", ()),
]

# Refused, with the exception set_format raises.
REFUSED = [
    ("d", (0, 2**62, 2**62), OverflowError),
    ("d", (2**62, 2**62), OverflowError),
    ("B", (0, 2**32, 2**32), OverflowError),
    ("d", (3, 0, 2**40), ValueError),
    ("d", (0, 33), ValueError),
    ("B", (2**31, 0), ValueError),
    ("B", (0, 2**31), ValueError),
    ("d", (0, 2**63), ValueError),       # a dimension beyond Py_ssize_t
    ("d", (33,), zdshm.SampleTooLargeError),
]


@pytest.mark.parametrize("fmt,shape", ACCEPTED)
def test_set_format_accepts_consistent_shapes(make_segment, fmt, shape):
    seg = make_segment(slot_count=2, slot_capacity=CAPACITY)
    size = FORMATS[fmt][0] * int(np.prod(shape, dtype=object))
    with seg.reader() as r, seg.writer() as w:
        loan = w.loan()
        memoryview(loan)[:] = PATTERN
        loan.set_format(fmt, shape)
        loan.commit()
        with r.take(timeout=5) as s:
            check_sample(s, fmt, shape, size)


@pytest.mark.parametrize("fmt,shape,exc", REFUSED)
def test_set_format_refuses_unbounded_shapes(make_segment, fmt, shape, exc):
    seg = make_segment(slot_count=2, slot_capacity=CAPACITY)
    loan = seg.reserve()
    with pytest.raises(exc) as info:
        loan.set_format(fmt, shape)
    assert str(shape) in str(info.value)
    assert issubclass(info.type, (ValueError, OverflowError))
    # Nothing was written: the loan commits without a format.
    assert loan.live
    slot = loan.slot
    loan.commit(0)
    with seg.read(slot) as s:
        assert (s.format, s.shape) == ("B", (0,))


def test_set_format_list_shape_mutated_by_index(seg):
    """A dimension whose __index__ empties the list shape: the list is
    copied first, so this reads no freed memory."""
    class Shrink:
        def __init__(self, target):
            self.target = target

        def __index__(self):
            self.target.clear()
            return 2

    shape = [1, 3, 4]
    shape[0] = Shrink(shape)
    loan = seg.reserve()
    loan.set_format("B", shape)
    slot = loan.slot
    loan.commit()
    with seg.read(slot) as s:
        assert s.shape == (2, 3, 4)


def test_publish_bounds_empty_arrays(make_segment):
    seg = make_segment(slot_count=2, slot_capacity=CAPACITY)
    with seg.reader() as r, seg.writer() as w:
        w.publish(np.empty((0, 32)))
        with r.take(timeout=5) as s:
            check_sample(s, "d", (0, 32), 0)
        with pytest.raises(ValueError, match=r"shape=\(0, 33\)"):
            w.publish(np.empty((0, 33)))
        with pytest.raises(zdshm.SampleTooLargeError):
            w.publish(np.zeros(33))
        counters = seg.info()["counters"]
        assert (counters["loans"], counters["commits"]) == (1, 1)


def test_loan_array_refuses_unbounded_empty_shape(make_segment):
    seg = make_segment(slot_count=2, slot_capacity=CAPACITY)
    with seg.writer(overflow="fail") as w:
        with pytest.raises(ValueError, match=r"\(0, 33\)"):
            with w.loan_array((0, 33), "f8"):
                pass
        # The loan was given back: both slots can be loaned again.
        loans = [w.loan(), w.loan()]
        for loan in loans:
            loan.discard()


# --------------------------------------------------------------------------
# Readers: hostile meta bytes in a committed slot
# --------------------------------------------------------------------------

VALUES = (0, 1, 2, 2**31, 2**62, 2**63)


def sweep_shapes() -> list[tuple[int, ...]]:
    """Every combination for 1..4 dimensions, a fixed sample beyond."""
    shapes = []
    for ndim in range(1, 5):
        shapes += itertools.product(VALUES, repeat=ndim)
    rng = random.Random(20240615)
    for ndim in range(5, 7):
        shapes += [(v,) * ndim for v in VALUES]
        shapes += [tuple(rng.choice(VALUES) for _ in range(ndim))
                   for _ in range(300)]
        shapes.append((1,) * (ndim - 1) + (2,))
        shapes.append((2,) * (ndim - 2) + (0, 2**63))
    return shapes


def committed_size(fmt: str, shape: tuple[int, ...]) -> int:
    """The true size if it fits, else the size wrapped to 64 bits (what an
    unchecked product would compute), else 0."""
    nbytes = FORMATS[fmt][0]
    for d in shape:
        nbytes *= d
    for size in (nbytes, nbytes % 2**64):
        if size <= CAPACITY:
            return size
    return 0


def test_meta_writer_offsets(hostile):
    """The sweep writes where set_format does."""
    seg, writer = hostile
    loan = seg.reserve()
    slot, address = loan.slot, loan.address
    loan.set_format("<h", (2, 3))
    loan.commit()
    assert writer.read(slot, address) == encode_meta("<h", (2, 3))
    writer.write(slot, address, encode_meta("B", (3, 4)))
    with seg.read(slot) as s:
        assert s.shape == (3, 4) and s.format == "B"


def test_hostile_meta_sweep(hostile):
    seg, writer = hostile
    shapes = sweep_shapes()
    accepted = 0
    for fmt in FORMATS:
        for shape in shapes:
            size = committed_size(fmt, shape)
            slot = committed(seg, writer, size, encode_meta(fmt, shape))
            want_fmt, want_shape = model(fmt, shape, size)
            accepted += (want_fmt, want_shape) == (fmt, shape)
            with seg.read(slot) as s:
                try:
                    check_sample(s, want_fmt, want_shape, size)
                except AssertionError as e:
                    raise AssertionError(f"meta {fmt!r} {shape}, size {size}: "
                                         f"{e}") from None
    # The sweep covers both outcomes.
    assert 100 < accepted < len(FORMATS) * len(shapes) - 100


@pytest.mark.parametrize("fmt,shape,size", [
    ("d", (0, 2**62, 2**62), 0),     # overflowing strides of the fixed bug
    ("d", (2**31, 0), 0),            # 2**31 empty rows: tolist() would
    ("B", (2**62, 0, 2**62), 0),     # build them all
    ("B", (2**32, 2**32), 0),        # product wraps to 0
    ("d", (2, 3), 40),               # size does not match
    ("d", (2**63,), 0),              # beyond Py_ssize_t
])
def test_hostile_meta_falls_back(hostile, fmt, shape, size):
    seg, writer = hostile
    slot = committed(seg, writer, size, encode_meta(fmt, shape))
    with seg.read(slot) as s:
        check_sample(s, "B", (size,), size)
