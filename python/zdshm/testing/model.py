"""A pure-Python reference model of zdshm's slot semantics.

The model mirrors the Python surface of :mod:`zdshm` (``Segment``, ``Loan``,
``Sample``, ``Writer``, ``Reader``) closely enough that the same driver code
runs against either, and it predicts every observable outcome of a
single-threaded sequence of calls: which slot a reserve picks, the sequence
numbers, what each reader receives and in which order, which slots an
eviction frees, the reader drop counts and the segment counters.

It is the oracle of zdshm's property tests, and users may drive it alone (it
imports nothing but the standard library, never the C extension) to check
their own protocols on top of zdshm.

What it models
--------------
* Slots: each is FREE, LOANED or COMMITTED.  A committed slot has a sequence
  number, a size, a commit time (``CLOCK_MONOTONIC`` nanoseconds, from an
  injectable clock), a 64-bit read mask (bit r: reader r has read it or no
  longer needs it), its bytes, and its pins: the readers that took it and
  have not released it, and the number of ``Segment.read`` samples alive.
* ``reserve(mask)`` loans the lowest-index FREE slot, or else the COMMITTED
  slot with the oldest sample among those no view pins and every reader of
  ``mask`` has read.  A commit takes the next segment-global sequence number
  and resets the read mask.
* Size classes (``classes=[(slot_count, slot_capacity), ...]``): a loan of
  ``nbytes`` looks for such a slot in the smallest class whose capacity holds
  ``nbytes``, then in each larger class in turn, never in a smaller one; the
  overflow policies apply to all the classes that fit (``reclaim`` takes the
  oldest unpinned sample among them).  A loan without a size asks for the
  largest capacity.  One sequence-number space spans the classes.
* Readers: ``Segment.reader(join_last)`` claims the lowest free index, joins
  "from now" (older samples are marked read for it) or also receives the
  ``join_last`` newest samples still held in committed slots.  ``take``
  delivers the unread sample with the smallest sequence number, marks it
  read and pins it until released.  A latest reader (``latest=True``,
  ``join_last`` 0 or 1) takes the unread sample with the largest sequence
  number instead and marks every older unread one read, counting it in
  ``skipped``.  ``close`` disconnects at once; samples
  the reader still holds stay valid and keep its index taken until released.
* ``evict_stale`` and the three writer overflow policies, each counting one
  drop per reader that had not read the sample it frees.
* The segment counters of ``Segment.info()``.

Dead processes are modelled coarsely: :meth:`SegmentModel.process_died`
records a death, :meth:`SegmentModel.reap` cleans up after it.

What it does not model: concurrency (every call is atomic here), the
reaping a writer does on its own when it finds no free slot, the goodbye
flag, sample formats and shapes, views and their export counts
(``ViewsAliveError``), and blocking: a wait that could only end by another
thread's action raises :class:`WaitTimeoutError` when it has a timeout and
:class:`WouldBlockForever` when it has none.

Errors carry the names of zdshm's exceptions, so a test compares outcomes by
``type(exc).__name__``.
"""
from __future__ import annotations

import time
from typing import Callable, Iterable, Iterator, Sequence

__all__ = [
    "READER_MAX", "FREE", "LOANED", "COMMITTED", "COUNTERS",
    "ModelError", "NoFreeSlotError", "WaitTimeoutError", "SampleTooLargeError",
    "StaleLoanError", "NoSampleError", "TooManyReadersError",
    "DisconnectedError", "SlotBusyError", "ClosedError", "WouldBlockForever",
    "seconds_to_ns", "SlotModel", "LoanModel", "SampleModel", "ReaderModel",
    "WriterModel", "SegmentModel", "CLASS_MAX",
]

READER_MAX = 64
CLASS_MAX = 16
FREE, LOANED, COMMITTED = "free", "loaned", "committed"
# The C core declares these once (ZD_COUNTERS); zdshm.COUNTER_NAMES must equal
# this tuple, and a test holds them together.
COUNTERS = ("loans", "commits", "discards", "evictions", "reclaims",
            "loans_reclaimed", "readers_reaped", "corrupt_dropped")
OVERFLOW_POLICIES = ("block", "fail", "reclaim")
_UINT64_MAX = (1 << 64) - 1


# --- errors (named like zdshm's) ---------------------------------------------
class ModelError(Exception):
    """Base of the errors the model predicts."""


class NoFreeSlotError(ModelError):
    """reserve / a "fail" writer found no free slot."""


class WaitTimeoutError(ModelError):
    """A bounded wait would time out (nothing else can happen in the model)."""


class SampleTooLargeError(ModelError):
    """commit of more bytes than the slot capacity; the loan stays live."""


class StaleLoanError(ModelError):
    """commit or discard of a loan that is no longer live."""


class NoSampleError(ModelError):
    """read / read_copy / mark_read of a slot that holds no committed sample."""


class TooManyReadersError(ModelError):
    """Every one of the READER_MAX reader entries is taken."""


class DisconnectedError(ModelError):
    """The reader is no longer registered."""


class SlotBusyError(ModelError):
    """A slot is pinned by the maximum number of views (never in the model)."""


class ClosedError(ModelError):
    """An operation on a closed reader or writer."""


class WouldBlockForever(ModelError):
    """A wait without timeout that only another thread could end."""


def seconds_to_ns(seconds: float) -> int:
    """Converts a duration the way zdshm's argument parser does.

    ``round(seconds * 1e9)`` in double precision, at least 1 ns when
    ``seconds > 0``; ``None``, +inf and values beyond 64 bits mean "no limit"
    (2**64 - 1).
    """
    if seconds is None:
        return _UINT64_MAX
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise TypeError(f"seconds must be a number, got {seconds!r}")
    d = float(seconds)
    if d != d or d < 0.0:
        raise ValueError(f"seconds must be >= 0 (not NaN), got {seconds!r}")
    if d == float("inf") or d * 1e9 >= 18446744073709549568.0:
        return _UINT64_MAX
    ns = int(d * 1e9 + 0.5)
    return 1 if ns == 0 and d > 0.0 else ns


def _bits(mask: int) -> Iterator[int]:
    while mask:
        low = mask & -mask
        yield low.bit_length() - 1
        mask ^= low


def _check_reader_index(reader: int) -> int:
    if isinstance(reader, bool) or not isinstance(reader, int):
        raise TypeError(f"reader must be an int, got {reader!r}")
    if not 0 <= reader < READER_MAX:
        raise ValueError(f"reader must be in 0..{READER_MAX - 1}, got {reader!r}")
    return reader


def _check_mask(mask: int) -> int:
    if isinstance(mask, bool) or not isinstance(mask, int):
        raise TypeError(f"active_readers_mask must be an int, got {mask!r}")
    if not 0 <= mask <= _UINT64_MAX:
        raise ValueError(f"active_readers_mask must be in 0..2**64-1, got {mask!r}")
    return mask


# --- slots, loans, samples ----------------------------------------------------
class SlotModel:
    """One slot.  ``buf`` is its data area: it keeps its bytes across loans,
    as the real slot does (a new loan shows the previous sample's bytes)."""

    __slots__ = ("index", "buf", "state", "sn", "size", "commit_ns",
                 "read_mask", "data", "reader_pins", "handle_pins", "loan",
                 "capacity", "size_class")

    def __init__(self, index: int, capacity: int, size_class: int = 0) -> None:
        self.index = index
        self.capacity = capacity
        self.size_class = size_class
        self.buf = bytearray(capacity)
        self.state = FREE
        self.sn = -1
        self.size = 0
        self.commit_ns = 0
        self.read_mask = 0
        self.data = b""
        self.reader_pins = 0          # bit r: reader r holds a taken sample
        self.handle_pins = 0          # Segment.read samples alive
        self.loan: LoanModel | None = None

    @property
    def pinned(self) -> bool:
        return self.reader_pins != 0 or self.handle_pins != 0

    def header(self) -> dict[str, int]:
        return {"sn": self.sn, "size": self.size, "commit_ns": self.commit_ns,
                "read_mask": self.read_mask}

    def __repr__(self) -> str:
        if self.state != COMMITTED:
            return f"<slot {self.index} {self.state}>"
        return (f"<slot {self.index} committed sn={self.sn} size={self.size} "
                f"read_mask={self.read_mask:#x} reader_pins={self.reader_pins:#x} "
                f"handle_pins={self.handle_pins}>")


class LoanModel:
    """A loan of one slot (mirrors ``zdshm.Loan``)."""

    def __init__(self, segment: SegmentModel, slot: int) -> None:
        self._segment = segment
        self.slot = slot
        self.capacity = segment.slots[slot].capacity
        self.live = True
        self.sn: int | None = None

    def __len__(self) -> int:
        return self.capacity

    def write(self, data: bytes, offset: int = 0) -> None:
        """What writing through ``memoryview(loan)[offset:...]`` does."""
        if not self.live:
            raise StaleLoanError(f"slot {self.slot}: loan is no longer live")
        data = bytes(data)
        if offset < 0 or offset + len(data) > self.capacity:
            raise ValueError("write outside the loan")
        self._segment.slots[self.slot].buf[offset:offset + len(data)] = data

    def read(self) -> bytes:
        """The loan's current bytes (the whole capacity)."""
        return bytes(self._segment.slots[self.slot].buf)

    def commit(self, nbytes: int | None = None, *, commit_ns: int | None = None) -> int:
        """Publishes the first ``nbytes`` bytes (default: the capacity) and
        returns the sequence number.  ``commit_ns`` overrides the clock (a
        lockstep test passes the real commit time it read back)."""
        return self._segment._commit(self, nbytes, commit_ns)

    def discard(self) -> None:
        self._segment._discard(self)

    def __repr__(self) -> str:
        return f"<LoanModel slot={self.slot} live={self.live} sn={self.sn}>"


class SampleModel:
    """A pinned sample (mirrors ``zdshm.Sample``).  ``reader`` is the index
    of the reader that took it, or None for ``Segment.read``."""

    def __init__(self, segment: SegmentModel, slot: SlotModel,
                 reader: int | None) -> None:
        self._segment = segment
        self.slot = slot.index
        self.sn = slot.sn
        self.size = slot.size
        self.commit_ns = slot.commit_ns
        self._data = slot.data
        self.reader = reader
        self.released = False

    def __len__(self) -> int:
        return self.size

    def tobytes(self) -> bytes:
        if self.released:
            raise ClosedError("sample is released")
        return self._data

    def release(self) -> None:
        """Unpins the slot; releasing twice does nothing."""
        if self.released:
            return
        self.released = True
        slot = self._segment.slots[self.slot]
        if self.reader is None:
            assert slot.handle_pins > 0, "model: handle pin count underflow"
            slot.handle_pins -= 1
        else:
            bit = 1 << self.reader
            slot.reader_pins &= ~bit
            seg = self._segment
            if self.reader in seg.closing_readers and \
                    not any(s.reader_pins & bit for s in seg.slots):
                # The close completes: marked read everywhere once more, the
                # index is free again.
                seg.closing_readers.discard(self.reader)
                for s in seg.slots:
                    s.read_mask |= bit

    def __enter__(self) -> SampleModel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __repr__(self) -> str:
        return (f"<SampleModel slot={self.slot} sn={self.sn} size={self.size} "
                f"reader={self.reader} released={self.released}>")


# --- readers and writers ---------------------------------------------------------
class ReaderModel:
    """A registered reader (mirrors ``zdshm.Reader``)."""

    def __init__(self, segment: SegmentModel, index: int, start_sn: int,
                 latest: bool = False) -> None:
        self._segment = segment
        self.index = index
        self.start_sn = start_sn
        self.latest = latest
        self.skipped = 0                  # latest: samples marked read unseen
        self.closed = False
        self.received: list[int] = []     # sequence numbers, in take order

    def try_take(self) -> SampleModel | None:
        return self._segment._take(self)

    def take(self, timeout: float | None = None) -> SampleModel:
        sample = self._segment._take(self)
        if sample is None:
            if timeout is None:
                raise WouldBlockForever(f"reader {self.index}: nothing unread")
            raise WaitTimeoutError(f"reader {self.index}: nothing unread")
        return sample

    def stats(self) -> dict[str, int | None]:
        """taken, dropped, skipped, lag, last_sn (None: nothing taken yet)."""
        return self._segment._reader_stats(self)

    def close(self) -> None:
        self._segment._close_reader(self)

    def __repr__(self) -> str:
        return (f"<ReaderModel index={self.index} start_sn={self.start_sn} "
                f"latest={self.latest} closed={self.closed}>")


class WriterModel:
    """A writer with an overflow policy (mirrors ``zdshm.Writer``)."""

    _DEFAULT = object()

    def __init__(self, segment: SegmentModel, overflow: str,
                 timeout: float | None) -> None:
        if overflow not in OVERFLOW_POLICIES:
            raise ValueError(f"overflow must be one of {OVERFLOW_POLICIES}, got {overflow!r}")
        self._segment = segment
        self.overflow = overflow
        self.timeout = timeout
        self.closed = False

    def loan(self, timeout: object = _DEFAULT, *, nbytes: int | None = None) -> LoanModel:
        """A slot of the smallest class that holds ``nbytes`` and has one
        (None: the largest class)."""
        if self.closed:
            raise ClosedError("writer is closed")
        t = self.timeout if timeout is WriterModel._DEFAULT else timeout
        return self._segment._writer_loan(self.overflow, t, nbytes)

    def try_loan(self, *, nbytes: int | None = None) -> LoanModel | None:
        """loan() that never waits: None where loan() would wait."""
        try:
            return self.loan(0, nbytes=nbytes)
        except (WaitTimeoutError, NoFreeSlotError):
            return None

    def publish(self, obj: bytes, timeout: object = _DEFAULT) -> int:
        """Copy-in of a bytes-like object into a slot of the smallest class
        that holds it.  Checks the size before loaning."""
        data = bytes(memoryview(obj).cast("B")) if not isinstance(obj, bytes) else obj
        if len(data) > self._segment.slot_capacity:
            raise SampleTooLargeError(
                f"{len(data)} bytes do not fit a slot of {self._segment.slot_capacity}")
        loan = self.loan(timeout, nbytes=len(data))
        loan.write(data)
        return loan.commit(len(data))

    def close(self) -> None:
        self.closed = True


# --- the segment ------------------------------------------------------------------
class SegmentModel:
    """The model of one segment (mirrors the low-level and high-level API of
    ``zdshm.Segment``).

    ``clock`` returns ``CLOCK_MONOTONIC``-like nanoseconds; it stamps commits
    and is "now" for ``evict_stale`` without ``now_ns``.  The default is
    :func:`time.monotonic_ns`; tests inject a fake clock, or pass the real
    commit time to :meth:`LoanModel.commit` and ``now_ns`` to
    :meth:`evict_stale`.
    """

    def __init__(self, slot_count: int | None = None, slot_capacity: int | None = None,
                 *, classes: Sequence[tuple[int, int]] | None = None,
                 clock: Callable[[], int] | None = None) -> None:
        if classes is not None:
            if slot_count is not None or slot_capacity is not None:
                raise TypeError("pass either slot_count and slot_capacity or classes, not both")
            classes = [tuple(c) for c in classes]
            if not 1 <= len(classes) <= CLASS_MAX:
                raise ValueError(f"classes must hold 1..{CLASS_MAX} pairs, got {len(classes)}")
        elif slot_count is None or slot_capacity is None:
            raise TypeError("needs slot_count and slot_capacity, or classes")
        else:
            classes = [(slot_count, slot_capacity)]
        for i, (count, cap) in enumerate(classes):
            if not 1 <= count <= (1 << 20):
                raise ValueError(f"slot_count must be in 1..{1 << 20}, got {count!r}")
            if not 1 <= cap:
                raise ValueError(f"slot_capacity must be >= 1, got {cap!r}")
            if i and cap <= classes[i - 1][1]:
                raise ValueError(f"classes[{i}] has {cap} after {classes[i - 1][1]}")
        self.slot_count = sum(count for count, _ in classes)
        if self.slot_count > (1 << 20):
            raise ValueError(f"classes hold {self.slot_count} slots in all")
        self.slot_capacity = classes[-1][1]
        # (slot_count, slot_capacity, first_slot) of each class
        self.classes: list[tuple[int, int, int]] = []
        first = 0
        for count, cap in classes:
            self.classes.append((count, cap, first))
            first += count
        self.clock = clock if clock is not None else time.monotonic_ns
        self.slots = [SlotModel(first + i, cap, c)
                      for c, (count, cap, first) in enumerate(self.classes)
                      for i in range(count)]
        self.next_sn = 0
        self.active_mask = 0
        self.counters = dict.fromkeys(COUNTERS, 0)
        self.readers: dict[int, ReaderModel] = {}
        # Closed readers whose taken samples are still pinned: their index
        # is not handed out again yet, and whether samples committed since
        # the close have their bit set is left open (zdshm may mark them
        # read again at any time: compare read masks without these bits).
        self.closing_readers: set[int] = set()
        # Readers and loans of dead processes, until reap() cleans up.
        self._dead_readers: list[ReaderModel] = []
        self._dead_loans: list[LoanModel] = []
        # Reader-table entries: counters per index, reset when claimed.
        self.entry_taken = [0] * READER_MAX
        self.entry_dropped = [0] * READER_MAX
        self.entry_last_sn: list[int | None] = [None] * READER_MAX

    # -- queries ---------------------------------------------------------------
    def slot_state(self, slot: int) -> str:
        return self._slot(slot).state

    def slot_capacity_of(self, slot: int) -> int:
        return self._slot(slot).capacity

    def class_for(self, nbytes: int | None) -> int:
        """The smallest class whose capacity holds nbytes (None: the largest
        capacity); SampleTooLargeError beyond the largest."""
        n = self.slot_capacity if nbytes is None else nbytes
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"nbytes must be an int >= 0, got {nbytes!r}")
        for c, (_, cap, _) in enumerate(self.classes):
            if n <= cap:
                return c
        raise SampleTooLargeError(
            f"a sample of {n} bytes does not fit: the largest slot capacity is "
            f"{self.slot_capacity} bytes")

    def info(self) -> dict[str, object]:
        return {
            "slot_count": self.slot_count,
            "slot_capacity": self.slot_capacity,
            "active_mask": self.active_mask,
            "readers_active": bin(self.active_mask).count("1"),
            "next_sn": self.next_sn,
            "counters": dict(self.counters),
            "classes": [
                {"slot_count": count, "first_slot": first, "slot_capacity": cap,
                 **{state: sum(1 for s in self.slots[first:first + count] if s.state == state)
                    for state in (FREE, LOANED, COMMITTED)}}
                for count, cap, first in self.classes],
        }

    def is_reservable(self, slot: int, mask: int) -> bool:
        """Whether ``reserve(mask)`` may take this slot."""
        s = self._slot(slot)
        if s.state == FREE:
            return True
        return (s.state == COMMITTED and not s.pinned
                and (s.read_mask & mask) == mask)

    def reservable_slots(self, mask: int, nbytes: int | None = None) -> list[int]:
        """The slots ``reserve(mask, nbytes=nbytes)`` may take, in the order
        successive reserves take them: class by class from the smallest that
        holds ``nbytes`` (None: the largest class), within a class its FREE
        slots by index, then its reusable committed slots oldest sample
        first (so the newest samples stay held for readers that join with
        ``join_last``)."""
        out: list[int] = []
        for count, _, first in self.classes[self.class_for(nbytes):]:
            mine = self.slots[first:first + count]
            out += [s.index for s in mine if s.state == FREE]
            out += [s.index for s in sorted(
                (s for s in mine
                 if s.state == COMMITTED and self.is_reservable(s.index, mask)),
                key=lambda s: s.sn)]
        return out

    def stale_slots(self, max_age_ns: int, mask: int, now_ns: int) -> list[int]:
        """The slots ``evict_stale`` would free: committed, unpinned, not
        fully read against ``mask``, committed at least ``max_age_ns`` before
        ``now_ns`` (a commit time after ``now_ns`` counts as age 0)."""
        out = []
        for s in self.slots:
            if s.state != COMMITTED or s.pinned:
                continue
            if (s.read_mask & mask) == mask:
                continue
            age = now_ns - s.commit_ns if now_ns > s.commit_ns else 0
            if age >= max_age_ns:
                out.append(s.index)
        return out

    def committed_slots(self) -> list[SlotModel]:
        return [s for s in self.slots if s.state == COMMITTED]

    # -- low level ---------------------------------------------------------------
    def reserve(self, active_readers_mask: int = 0, *,
                nbytes: int | None = None) -> LoanModel:
        """Loans the lowest FREE slot; failing that, the committed slot with
        the oldest sample that no view pins and every reader of the mask has
        read -- in the smallest class that holds nbytes and has one, else
        the next larger class."""
        mask = _check_mask(active_readers_mask)
        order = self.reservable_slots(mask, nbytes)
        if not order:
            raise NoFreeSlotError("no free slot")
        return self._loan_slot(self.slots[order[0]])

    def next_unread(self, reader: int) -> int | None:
        bit = 1 << _check_reader_index(reader)
        best = None
        for s in self.slots:
            if s.state == COMMITTED and not (s.read_mask & bit):
                if best is None or s.sn < best.sn:
                    best = s
        return None if best is None else best.index

    def read(self, slot: int) -> SampleModel:
        s = self._committed(slot)
        s.handle_pins += 1
        return SampleModel(self, s, None)

    def read_copy(self, slot: int) -> tuple[dict[str, int], bytes]:
        s = self._committed(slot)
        return s.header(), s.data

    def mark_read(self, slot: int, reader: int) -> None:
        bit = 1 << _check_reader_index(reader)
        self._committed(slot).read_mask |= bit

    def mark_reader_disconnected(self, reader: int) -> None:
        bit = 1 << _check_reader_index(reader)
        # The real core sets the bit on every slot; a commit resets the
        # mask, so only committed slots matter.
        for s in self.slots:
            s.read_mask |= bit

    def evict_stale(self, max_age: float, active_mask: int, *,
                    now_ns: int | None = None) -> int:
        """``max_age`` in seconds, as in zdshm; see :meth:`evict_stale_ns`."""
        return self.evict_stale_ns(seconds_to_ns(max_age), active_mask, now_ns=now_ns)

    def evict_stale_ns(self, max_age_ns: int, active_mask: int, *,
                       now_ns: int | None = None) -> int:
        mask = _check_mask(active_mask)
        now = self.clock() if now_ns is None else now_ns
        victims = self.stale_slots(max_age_ns, mask, now)
        for i in victims:
            s = self.slots[i]
            self._count_drops(mask & ~s.read_mask)
            s.state = FREE
            self.counters["evictions"] += 1
        return len(victims)

    # -- high level --------------------------------------------------------------
    def writer(self, overflow: str = "block", timeout: float | None = None,
               spin: float = 0.0) -> WriterModel:
        return WriterModel(self, overflow, timeout)

    def reader(self, join_last: int = 0, spin: float = 0.0, *,
               latest: bool = False) -> ReaderModel:
        if isinstance(join_last, bool) or not isinstance(join_last, int) or join_last < 0:
            raise ValueError(f"join_last must be an int >= 0, got {join_last!r}")
        if not isinstance(latest, bool):
            raise TypeError(f"latest must be a bool, got {latest!r}")
        if latest and join_last > 1:
            raise ValueError("join_last must be 0 or 1 with latest=True, "
                             f"got {join_last!r}")
        free = [r for r in range(READER_MAX)
                if r not in self.readers and r not in self.closing_readers]
        if not free:
            raise TooManyReadersError(f"all {READER_MAX} reader entries are taken")
        r = free[0]
        bit = 1 << r
        self.entry_taken[r] = 0
        self.entry_dropped[r] = 0
        self.entry_last_sn[r] = None
        self.active_mask |= bit
        # join_last == K: the K newest samples still held in committed slots
        # (whatever their read state) are delivered; none held: from now.
        held = sorted((s.sn for s in self.committed_slots()), reverse=True)[:join_last]
        start = held[-1] if held else self.next_sn
        for s in self.committed_slots():
            if s.sn < start:
                s.read_mask |= bit          # never hold older samples hostage
            else:
                s.read_mask &= ~bit         # the last join_last ones are ours
        reader = ReaderModel(self, r, start, latest)
        self.readers[r] = reader
        return reader

    # -- dead processes -------------------------------------------------------------
    def process_died(self, readers: Iterable[ReaderModel] = (),
                     loans: Iterable[LoanModel] = ()) -> None:
        """A process died holding these registered readers and live loans.
        Nothing changes until :meth:`reap` (the real segment only learns of
        a death when someone looks: reap, or a writer that finds no slot)."""
        for reader in readers:
            if not reader.closed:
                self._dead_readers.append(reader)
        for loan in loans:
            if loan.live:
                self._dead_loans.append(loan)

    def reap(self) -> tuple[int, int]:
        """Disconnects the dead readers (like close, and their pins are
        dropped) and frees the dead loans; returns (readers_reaped,
        loans_reclaimed), counted in the counters of the same names."""
        readers, loans = self._dead_readers, self._dead_loans
        self._dead_readers, self._dead_loans = [], []
        for reader in readers:
            bit = 1 << reader.index
            for s in self.slots:
                s.reader_pins &= ~bit
            self.closing_readers.discard(reader.index)
            self._close_reader(reader)
            self.counters["readers_reaped"] += 1
        for loan in loans:
            s = self.slots[loan.slot]
            s.state = FREE
            s.loan = None
            loan.live = False
            self.counters["loans_reclaimed"] += 1
        return len(readers), len(loans)

    # -- internals ---------------------------------------------------------------
    def _slot(self, slot: int) -> SlotModel:
        if isinstance(slot, bool) or not isinstance(slot, int):
            raise TypeError(f"slot must be an int, got {slot!r}")
        if not 0 <= slot < self.slot_count:
            raise ValueError(f"slot must be in 0..{self.slot_count - 1}, got {slot!r}")
        return self.slots[slot]

    def _committed(self, slot: int) -> SlotModel:
        s = self._slot(slot)
        if s.state != COMMITTED:
            raise NoSampleError(f"slot {slot} holds no committed sample ({s.state})")
        return s

    def _loan_slot(self, s: SlotModel) -> LoanModel:
        s.state = LOANED
        loan = LoanModel(self, s.index)
        s.loan = loan
        self.counters["loans"] += 1
        return loan

    def _live(self, loan: LoanModel) -> SlotModel:
        s = self.slots[loan.slot]
        if not loan.live or s.loan is not loan or s.state != LOANED:
            raise StaleLoanError(f"slot {loan.slot}: loan is no longer live")
        return s

    def _commit(self, loan: LoanModel, nbytes: int | None,
                commit_ns: int | None) -> int:
        # Arguments are checked before the loan's state, as zdshm does.
        cap = loan.capacity
        n = cap if nbytes is None else nbytes
        if n < 0:
            raise ValueError(f"nbytes must be >= 0, got {nbytes!r}")
        if n > cap:
            raise SampleTooLargeError(f"{n} bytes do not fit a slot of {cap}")
        s = self._live(loan)
        sn = self.next_sn
        self.next_sn += 1
        s.state = COMMITTED
        s.sn = sn
        s.size = n
        s.commit_ns = self.clock() if commit_ns is None else commit_ns
        s.read_mask = 0
        s.data = bytes(s.buf[:n])
        s.loan = None
        loan.live = False
        loan.sn = sn
        self.counters["commits"] += 1
        return sn

    def _discard(self, loan: LoanModel) -> None:
        s = self._live(loan)
        s.state = FREE
        s.loan = None
        loan.live = False
        self.counters["discards"] += 1

    def _count_drops(self, unread_mask: int) -> None:
        for r in _bits(unread_mask):
            self.entry_dropped[r] += 1

    def _reclaim_oldest(self, active: int, min_class: int = 0) -> LoanModel | None:
        candidates = [s for s in self.slots if s.state == COMMITTED and not s.pinned
                      and s.size_class >= min_class]
        if not candidates:
            return None
        best = min(candidates, key=lambda s: s.sn)
        unread = active & ~best.read_mask
        if unread:
            self._count_drops(unread)
            self.counters["reclaims"] += 1
        return self._loan_slot(best)

    def _writer_loan(self, overflow: str, timeout: float | None,
                     nbytes: int | None = None) -> LoanModel:
        c = self.class_for(nbytes)          # too large: before anything
        try:
            return self.reserve(self.active_mask, nbytes=nbytes)
        except NoFreeSlotError:
            pass
        if overflow == "fail":
            raise NoFreeSlotError("no free slot (overflow='fail')")
        if overflow == "reclaim":
            loan = self._reclaim_oldest(self.active_mask, c)
            if loan is not None:
                return loan
        if timeout is None:
            raise WouldBlockForever("every slot is loaned, pinned or unread")
        raise WaitTimeoutError(f"no free slot within {timeout} s")

    def _registered(self, reader: ReaderModel) -> None:
        if reader.closed:
            raise ClosedError(f"reader {reader.index} is closed")
        if self.readers.get(reader.index) is not reader:
            raise DisconnectedError(f"reader {reader.index} was disconnected")

    def _take(self, reader: ReaderModel) -> SampleModel | None:
        self._registered(reader)
        r = reader.index
        bit = 1 << r
        best = None
        for s in self.slots:
            if s.state != COMMITTED or (s.read_mask & bit):
                continue
            if s.sn < reader.start_sn:
                s.read_mask |= bit          # committed before the join
                continue
            if best is None or (s.sn > best.sn if reader.latest else s.sn < best.sn):
                best = s
        if best is None:
            return None
        if reader.latest:
            # Every older sample it has not taken is skipped: marked read
            # (its slot may be reused), counted once.
            for s in self.slots:
                if s.state == COMMITTED and s.sn < best.sn and not (s.read_mask & bit):
                    s.read_mask |= bit
                    reader.skipped += 1
        assert not (best.reader_pins & bit), \
            f"model: reader {r} pins slot {best.index} without its read bit"
        best.reader_pins |= bit
        best.read_mask |= bit
        self.entry_taken[r] += 1
        self.entry_last_sn[r] = best.sn
        reader.received.append(best.sn)
        return SampleModel(self, best, r)

    def _reader_stats(self, reader: ReaderModel) -> dict[str, int | None]:
        self._registered(reader)
        r = reader.index
        last = self.entry_last_sn[r]
        done = reader.start_sn if last is None else last + 1
        return {"taken": self.entry_taken[r], "dropped": self.entry_dropped[r],
                "skipped": reader.skipped, "lag": max(0, self.next_sn - done),
                "last_sn": last}

    def _close_reader(self, reader: ReaderModel) -> None:
        """Disconnects at once: the bit leaves the active mask and every slot
        is marked read for it.  Samples it took stay valid (and pinned) until
        released; its index is not handed out again before that."""
        if reader.closed:
            return
        self._registered(reader)
        r = reader.index
        bit = 1 << r
        self.active_mask &= ~bit
        for s in self.slots:
            s.read_mask |= bit
        del self.readers[r]
        reader.closed = True
        if any(s.reader_pins & bit for s in self.slots):
            self.closing_readers.add(r)

    # -- consistency of the model itself -------------------------------------------
    def check(self) -> None:
        """Asserts the model's own invariants (a bug here is a model bug)."""
        live_loans = 0
        sns = []
        for s in self.slots:
            assert s.state in (FREE, LOANED, COMMITTED), s
            if s.state != COMMITTED:
                assert not s.pinned, f"model: non-committed slot pinned: {s!r}"
            if s.state == LOANED:
                assert s.loan is not None and s.loan.live, s
                live_loans += 1
            else:
                assert s.loan is None, s
            if s.state == COMMITTED:
                assert 0 <= s.sn < self.next_sn, s
                assert len(s.data) == s.size <= s.capacity <= self.slot_capacity, s
                sns.append(s.sn)
                for r in _bits(s.reader_pins):
                    assert s.read_mask & (1 << r), f"model: pinned but unread: {s!r}"
        assert len(sns) == len(set(sns)), "model: duplicate sequence numbers"
        assert self.active_mask == sum(1 << r for r in self.readers)
        c = self.counters
        assert c["loans"] == (c["commits"] + c["discards"] + c["loans_reclaimed"]
                              + live_loans), "model: loan accounting"

