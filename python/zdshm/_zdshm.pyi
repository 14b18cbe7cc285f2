"""Type stubs for the C extension ``zdshm._zdshm`` (the contract of the Python surface).

Times are in seconds (float). ``timeout=None`` waits without limit; every wait
is sliced so Ctrl-C raises ``KeyboardInterrupt`` within 100 ms.  A close() from
a signal handler of the waiting thread ends the wait with ClosedError.  Every
object belongs to the process that opened its segment: in a fork child each
operation raises ForkedHandleError.  No object pickles (TypeError) but a
PosixSegment, which pickles to an attach of its name.
"""
from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Coroutine, Iterator, Sequence
from typing import Any, Literal, NoReturn, Self, SupportsIndex, TypeAlias, final, overload

import numpy.typing

from zdshm._types import ReaderStats

from typing_extensions import disjoint_base

if sys.version_info >= (3, 12):
    from collections.abc import Buffer
else:                                   # the same protocol, for type checkers on 3.11
    from typing_extensions import Buffer

# What publish() copies in: any buffer.  numpy declares ndarray's __buffer__
# only from 3.12 on, so an ndarray is named explicitly for 3.11.
_BufferLike: TypeAlias = Buffer | numpy.typing.NDArray[Any]

__version__: str
READER_MAX: int          # 64
ATTACH_MAX: int          # 64
SLOT_META_SIZE: int      # 64
NAME_MAX: int            # 200
# additions
SLOT_COUNT_MAX: int      # 1 << 20
SLOT_CAPACITY_MAX: int   # 1 << 40
TYPE_HASH_SIZE: int      # 16
META_NDIM_MAX: int       # 6: dimensions a slot's meta can describe
META_FORMAT_MAX: int     # 11: characters of a stored PEP 3118 format
LAYOUT_VERSION: int      # segment layout version of the C core
CLASS_MAX: int           # 16: size classes per segment
COUNTER_NAMES: tuple[str, ...]  # keys of info()["counters"], in layout order

# --- exceptions: each derives from Error and the fitting builtin -------------
class Error(Exception):
    errno: int | None
class NoFreeSlotError(Error, BlockingIOError): ...        # -EAGAIN on loan/reserve
class WaitTimeoutError(Error, TimeoutError): ...          # -ETIMEDOUT
class SegmentExistsError(Error, FileExistsError): ...     # -EEXIST
class SegmentNotFoundError(Error, FileNotFoundError): ... # -ENOENT
class SegmentPermissionError(Error, PermissionError): ... # -EACCES
class SegmentOwnerError(Error, PermissionError): ...      # owner/mode outside the policy (.errno EPERM)
class SampleTooLargeError(Error, ValueError): ...         # -EMSGSIZE
class StaleLoanError(Error, RuntimeError): ...            # -ESTALE
class NoSampleError(Error, LookupError): ...              # -ENODATA
class SlotBusyError(Error, BlockingIOError): ...          # -EBUSY
class TooManyReadersError(Error, OSError): ...            # -EUSERS
class DisconnectedError(Error, ConnectionError): ...      # -ENOTCONN
class SegmentClosedError(Error, BrokenPipeError): ...     # -EPIPE (creator said goodbye)
class CreatorDeadError(Error, ConnectionError): ...       # -EOWNERDEAD (creator died, no goodbye)
class CorruptSegmentError(Error, ValueError): ...         # -EBADMSG, -EPROTO, -EINPROGRESS
class NoSpaceError(Error, OSError): ...                   # -ENOSPC
class ViewsAliveError(Error, BufferError): ...            # close/commit while views are alive
class ClosedError(Error, ValueError): ...                 # operation on a closed object
class ForkedHandleError(Error, RuntimeError): ...         # a handle used in another process (fork child)
# additions: the remaining core codes (normally prevented by argument checks)
class InvalidArgumentError(Error, ValueError): ...        # -EINVAL, -ERANGE, -ENAMETOOLONG
class SizeOverflowError(Error, OverflowError): ...        # -EOVERFLOW
class SystemCallError(Error, OSError): ...                # anything else (-ENOMEM, -EMFILE, ...)

# --- segments ----------------------------------------------------------------
@disjoint_base
class Segment:
    """Common base of MemorySegment and PosixSegment (not instantiable)."""
    @property
    def backend(self) -> Literal["memory", "posix", "anonymous"]: ...
    @property
    def slot_count(self) -> int: ...
    @property
    def slot_capacity(self) -> int: ...
    @property
    def slot_total_size(self) -> int: ...
    @property
    def total_size(self) -> int: ...
    @property
    def type_hash(self) -> bytes | None: ...
    @property
    def closed(self) -> bool: ...
    @property
    def notify_generation(self) -> int: ...
    @property
    def active_mask(self) -> int: ...
    @property
    def creator_alive(self) -> bool: ...                 # the creator's handle is open (asks its lock)
    # low level (seed parity)
    def reserve(self, active_readers_mask: int = 0, *, nbytes: int | None = None) -> Loan: ...  # NoFreeSlotError; nbytes: smallest class that fits (None: the largest)
    def slot_capacity_of(self, slot: int, /) -> int: ...  # the capacity of the slot's size class
    def slots(self) -> list[dict[str, Any]]: ...          # one row per slot: slot, class, capacity, state, sn, size, read_by, pinned_by_readers, pinned_by_handles, loaned_by
    def next_unread(self, reader: int, /) -> int | None: ...
    def read(self, slot: int, /) -> Sample: ...          # zero-copy (read-only mapping), pins the slot until released
    def read_copy(self, slot: int, /) -> tuple[dict[str, int], bytes]: ...  # header {sn,size,commit_ns,read_mask}, bytes
    def mark_read(self, slot: int, reader: int) -> None: ...
    def mark_reader_disconnected(self, reader: int, /) -> None: ...
    def evict_stale(self, max_age: float, active_mask: int, *, now_ns: int | None = None) -> int: ...
    def wait_for_change(self, last: int, timeout: float | None = None) -> bool: ...  # True: changed
    def slot_state(self, slot: int, /) -> Literal["free", "loaned", "committed"]: ...
    def info(self) -> dict[str, Any]: ...               # describe()'s keys (classes: one dict per size class with its table entry and free/loaned/committed) + name, is_creator, notify_generation, open_objects; futex_waits/futex_wakes, ready_sends/ready_send_errors: this handle's system calls
    def reap(self) -> tuple[int, int]: ...               # (readers_reaped, loans_reclaimed)
    # high level
    def writer(self, overflow: Literal["block", "fail", "reclaim"] = "block",
               timeout: float | None = None, spin: float = 0.0) -> Writer: ...
    def reader(self, join_last: int = 0, spin: float = 0.0, *, latest: bool = False) -> Reader: ...  # latest: each take returns the newest sample, skipping older ones (join_last 0 or 1)
    def close(self) -> None: ...                         # ViewsAliveError while live loans/samples have views
    # Refused (TypeError, any protocol) but by PosixSegment: memory lives in one
    # process, an anonymous segment travels as a descriptor (send_segment).
    def __reduce_ex__(self, protocol: SupportsIndex, /) -> Any: ...
    def __copy__(self) -> NoReturn: ...                  # TypeError: share the handle
    def __deepcopy__(self, memo: Any, /) -> NoReturn: ...  # TypeError: share the handle
    def __enter__(self) -> Self: ...
    def __exit__(self, *exc_info: object) -> None: ...  # close(), deferring what still has views

# A size class: (slot_count, slot_capacity); classes= takes 1..CLASS_MAX of
# them in strictly increasing order of capacity, instead of slot_count and
# slot_capacity (one class).
_Classes: TypeAlias = Sequence[tuple[int, int]]

@final
class MemorySegment(Segment):
    @overload
    def __new__(cls, slot_count: int, slot_capacity: int, *, type_hash: bytes | None = None,
                classes: None = None) -> Self: ...
    @overload
    def __new__(cls, slot_count: None = None, slot_capacity: None = None, *,
                type_hash: bytes | None = None, classes: _Classes) -> Self: ...

@final
class PosixSegment(Segment):
    @overload
    @classmethod
    def create(cls, name: str, slot_count: int, slot_capacity: int, *,
               type_hash: bytes | None = None, mode: int = 0o600,
               replace_stale: bool = False, classes: None = None) -> PosixSegment: ...  # SegmentExistsError says whether its creator is alive
    @overload
    @classmethod
    def create(cls, name: str, slot_count: None = None, slot_capacity: None = None, *,
               type_hash: bytes | None = None, mode: int = 0o600,
               replace_stale: bool = False, classes: _Classes) -> PosixSegment: ...
    @classmethod
    def attach(cls, name: str, *,
               allow_owner: int | Literal["any"] | None = None) -> PosixSegment: ...
    @property
    def name(self) -> str: ...
    @property
    def is_creator(self) -> bool: ...
    def unlink(self) -> None: ...
    # Pickles to an attach of the name (with this handle's allow_owner) that
    # raises SegmentNotFoundError if the name is gone or now holds another
    # segment (creation time, creator pid, geometry or type hash differ).
    def __reduce_ex__(self, protocol: SupportsIndex, /) -> tuple[Any, tuple[str, dict[str, Any], int | str | None]]: ...
    @classmethod
    def _reattach(cls, name: str, identity: dict[str, Any], allow_owner: int | str | None, /) -> PosixSegment: ...

@final
class AnonymousSegment(Segment):
    """A nameless segment: a memfd sealed against shrinking and growing (a peer's
    ftruncate fails with EPERM), nothing in /dev/shm, shared by descriptor."""
    @overload
    def __new__(cls, slot_count: int, slot_capacity: int, *, type_hash: bytes | None = None,
                classes: None = None) -> Self: ...
    @overload
    def __new__(cls, slot_count: None = None, slot_capacity: None = None, *,
                type_hash: bytes | None = None, classes: _Classes) -> Self: ...
    @classmethod
    def attach_fd(cls, fd: int, /) -> AnonymousSegment: ...  # fd stays the caller's; must be open read-write
    def fileno(self) -> int: ...                         # owned by the segment (closed by close()), not inheritable
    @property
    def is_creator(self) -> bool: ...
    @property
    def sealed(self) -> bool: ...                        # False for a named or unsealed object attached by fd

def list_segments() -> list[str]: ...                   # names of zdshm segments in /dev/shm, any owner (validated by pread)
def describe(name: str, *,
             allow_owner: int | Literal["any"] | None = None) -> dict[str, Any]: ...  # pread, no mapping, no attachment; owner policy as attach
def unlink(name: str, /) -> None: ...
def unlink_stale(name: str, /) -> bool: ...             # True: removed (stale); False: alive, kept
def validate_name(name: str, /) -> None: ...

# --- loans and samples (buffer exporters) -------------------------------------
@final
class Loan(Buffer):
    """Writable buffer over a reserved slot, len == capacity. Commit refuses (ViewsAliveError)
    while any view (memoryview, numpy array, slice) of it is alive; a Loan collected without
    commit is discarded."""
    @property
    def slot(self) -> int: ...
    @property
    def capacity(self) -> int: ...
    @property
    def live(self) -> bool: ...
    @property
    def exports(self) -> int: ...
    def set_format(self, format: str, shape: tuple[int, ...]) -> None: ...  # PEP 3118 format + shape stored in the slot; itemsize * nonzero dims <= capacity
    def commit(self, nbytes: int | None = None) -> int: ...   # returns sn; nbytes None: shape*itemsize if set, else capacity
    def discard(self) -> None: ...
    # additions
    @property
    def address(self) -> int: ...                        # slot data address in this process (diagnostics)
    @property
    def sn(self) -> int | None: ...                      # sequence number once committed
    def __len__(self) -> int: ...
    def __buffer__(self, flags: int, /) -> memoryview: ...
    # DLPack (a PyCapsule; an export like a memoryview) and numpy's fallback
    def __dlpack__(self, *, stream: object = None, max_version: tuple[int, int] | None = None,
                   dl_device: tuple[int, int] | None = None, copy: bool | None = None) -> Any: ...
    def __dlpack_device__(self) -> tuple[int, int]: ...  # (1, 0): kDLCPU
    def __array__(self, dtype: Any = None, copy: bool | None = None) -> numpy.typing.NDArray[Any]: ...
    def __enter__(self) -> Self: ...
    def __exit__(self, *exc_info: object) -> None: ...   # commit on success, discard on exception

@final
class Sample(Buffer):
    """Read-only buffer over a committed slot, with the published format and shape.
    Exported from a read-only mapping: writing through it anyway (ctypes, a forced
    writeable flag) kills the writing process with SIGSEGV and changes nothing.
    Releasing it (release(), the context manager, or collection once no view is alive)
    unpins the slot."""
    @property
    def slot(self) -> int: ...
    @property
    def sn(self) -> int: ...
    @property
    def size(self) -> int: ...
    @property
    def commit_ns(self) -> int: ...
    @property
    def format(self) -> str: ...
    @property
    def shape(self) -> tuple[int, ...]: ...
    @property
    def released(self) -> bool: ...
    @property
    def exports(self) -> int: ...
    @property
    def address(self) -> int: ...                        # addition: data address in this process (read-only mapping)
    def release(self) -> None: ...                       # ViewsAliveError while views are alive
    def tobytes(self) -> bytes: ...
    def __len__(self) -> int: ...                        # the committed bytes (also for several arrays)
    # several named arrays in one sample (Writer.publish of a dict, Writer.loan_arrays);
    # a sample of one array or raw bytes has none.  CorruptSegmentError: invalid directory.
    def keys(self) -> tuple[str, ...]: ...               # published order; () when not several arrays
    def __getitem__(self, name: str, /) -> numpy.typing.NDArray[Any]: ...  # read-only, zero-copy, an export of the sample; KeyError
    def __contains__(self, name: object, /) -> bool: ...
    def arrays(self) -> dict[str, numpy.typing.NDArray[Any]]: ...  # every named array
    def __buffer__(self, flags: int, /) -> memoryview: ...
    # DLPack (a PyCapsule; an export like a memoryview) and numpy's fallback
    def __dlpack__(self, *, stream: object = None, max_version: tuple[int, int] | None = None,
                   dl_device: tuple[int, int] | None = None, copy: bool | None = None) -> Any: ...
    def __dlpack_device__(self) -> tuple[int, int]: ...  # (1, 0): kDLCPU
    def __array__(self, dtype: Any = None, copy: bool | None = None) -> numpy.typing.NDArray[Any]: ...
    def __enter__(self) -> Self: ...
    def __exit__(self, *exc_info: object) -> None: ...

@final
class LoanArray:
    """Context manager of Writer.loan_array: __enter__ loans a slot and returns a writable
    zdshm.arrays.LoanFrame over it; a normal exit makes it read-only and commits (ViewsAliveError,
    nothing published, while another view of the frame is alive); an exception discards."""
    def __enter__(self) -> numpy.typing.NDArray[Any]: ...
    def __exit__(self, *exc_info: object) -> Literal[False]: ...

@final
class LoanArrays:
    """Context manager of Writer.loan_arrays: __enter__ loans one slot (of the smallest
    size class that holds nbytes) and returns a dict of writable LoanFrames, one per name,
    each aligned to 64 bytes; a normal exit makes them read-only and commits
    (ViewsAliveError, nothing published, while another view of a frame is alive); an
    exception discards."""
    @property
    def nbytes(self) -> int: ...                         # directory + arrays: the size loaned
    def __enter__(self) -> dict[str, numpy.typing.NDArray[Any]]: ...
    def __exit__(self, *exc_info: object) -> Literal[False]: ...

@final
class SamplePart(Buffer):
    """One array of a sample of several arrays (the base of sample[name]); each of its
    buffer views is an export of the sample."""
    def __buffer__(self, flags: int, /) -> memoryview: ...

# publish()/try_publish() of several named arrays: a dict (no other mapping) of 1..16
# str names of 1..47 UTF-8 bytes to C-contiguous buffers (numpy arrays).  Any, not
# _BufferLike: a dict is invariant, and dict[str, NDArray] must pass.
_Arrays: TypeAlias = dict[str, Any]

def _loan_frame_type() -> type[numpy.ndarray[Any, Any]]: ...   # zdshm.arrays.LoanFrame; imports numpy

@final
class Writer:
    @property
    def overflow(self) -> str: ...
    def loan(self, timeout: float | None = ..., *, nbytes: int | None = None) -> Loan: ...  # nbytes: smallest size class that fits and has a slot (None: the largest); SampleTooLargeError beyond the largest
    def publish(self, obj: _BufferLike | _Arrays, timeout: float | None = ...) -> int: ...  # copy-in; keeps format/shape; a dict: several named arrays
    def wait_for_readers(self, n: int, timeout: float | None = None) -> int: ...  # WaitTimeoutError; returns the registered count
    def close(self) -> None: ...
    # additions
    def loan_array(self, shape: int | tuple[int, ...], dtype: Any,
                   timeout: float | None = ...) -> LoanArray: ...  # with: a writable LoanFrame; commit on exit
    def loan_arrays(self, arrays: dict[str, tuple[Any, Any]],     # name -> (shape, dtype)
                    timeout: float | None = ...) -> LoanArrays: ...  # with: a dict of writable LoanFrames in one slot
    @property
    def timeout(self) -> float | None: ...
    @property
    def spin(self) -> float: ...
    @property
    def closed(self) -> bool: ...
    @property
    def segment(self) -> Segment: ...
    def __enter__(self) -> Self: ...
    def __exit__(self, *exc_info: object) -> None: ...   # close()
    # readiness and asyncio (zdshm.aio)
    def try_loan(self, *, nbytes: int | None = None) -> Loan | None: ...  # never waits
    def try_publish(self, obj: _BufferLike | _Arrays) -> int | None: ...  # never waits
    def fileno(self) -> int: ...                         # one per segment handle; readable when a slot may be free
    def aloan(self, timeout: float | None = ..., *, nbytes: int | None = None) -> Coroutine[Any, Any, Loan]: ...
    def apublish(self, obj: _BufferLike | _Arrays, timeout: float | None = ...) -> Coroutine[Any, Any, int]: ...
    def _arm(self, last: int, /) -> bool: ...
    def _disarm(self) -> None: ...

@final
class Reader:
    @property
    def index(self) -> int: ...
    @property
    def closed(self) -> bool: ...
    @property
    def latest(self) -> bool: ...                        # Segment.reader(latest=True)
    def take(self, timeout: float | None = None) -> Sample: ...   # WaitTimeoutError; SegmentClosedError at goodbye; CreatorDeadError
    def try_take(self) -> Sample | None: ...             # both: CorruptSegmentError once per corrupt sample (dropped, counted)
    def stats(self) -> ReaderStats: ...
    @property
    def segment(self) -> Segment: ...                    # addition
    def close(self) -> None: ...
    def __iter__(self) -> Iterator[Sample]: ...          # ends at goodbye; raises CreatorDeadError if the creator died
    def __next__(self) -> Sample: ...
    def __enter__(self) -> Self: ...
    def __exit__(self, *exc_info: object) -> None: ...
    # readiness and asyncio (zdshm.aio)
    def fileno(self) -> int: ...                         # readable when try_take() has something; closed with the reader
    def atake(self, timeout: float | None = None) -> Coroutine[Any, Any, Sample]: ...
    def aiter(self) -> AsyncIterator[Sample]: ...
    def __aiter__(self) -> AsyncIterator[Sample]: ...
    def _disarm(self) -> None: ...
