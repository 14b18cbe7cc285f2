/* ext.h — private header of the CPython extension module zdshm._zdshm.
 *
 * One C file per Python type (python-zstandard style):
 *   module.c   module definition and state, the exception hierarchy, the one
 *              function that maps C return codes to exceptions (zdext_raise),
 *              argument converters, list_segments/describe/unlink/validate_name
 *   segment.c  Segment (base), MemorySegment, PosixSegment, AnonymousSegment;
 *              the close path and the sliced, interruptible wait loop
 *   loan.c     Loan: writable buffer exporter over a reserved slot
 *   sample.c   Sample: read-only buffer exporter over a pinned committed slot
 *   writer.c   Writer: loan/publish under an overflow policy
 *   arrays.c   Writer.loan_array (LoanArray), Writer.loan_arrays
 *              (LoanArrays) and their frame type, LoanFrame
 *   multi.c    several named arrays in one sample: the directory, its
 *              validated decoding, publish of a dict, and SamplePart, the
 *              exporter of one array of a sample
 *   reader.c   Reader: registered reader, take/try_take/iteration
 *   interop.c  DLPack export and __array__, shared by Loan and Sample
 *
 * Lifetime model
 * --------------
 * Export counts and strong references, as CPython's mmap and
 * python-zstandard do it.  A Loan or Sample is a buffer exporter that
 * counts its exports; bf_releasebuffer is one decrement.  A view
 * (memoryview, numpy array, a DLPack tensor until its deleter runs, a
 * loan_array frame: arrays.c) holds a strong reference to its exporter,
 * and every Loan, Sample, Reader and Writer holds one to its Segment, so
 * view -> exporter -> segment -> mapping: nothing unmaps while a pointer
 * into the mapping is in use, and a segment nobody references unmaps in
 * its dealloc.  An exporter is on its segment's `viewed` list exactly
 * while it has exports (0 -> 1 joins, 1 -> 0 leaves): the list is what
 * ViewsAliveError names (slot, sn, number of views) and what a deferred
 * close waits for; objects without views are on no list.
 *
 * Segment.close() raises ViewsAliveError while a live loan or an
 * unreleased sample has views.  Otherwise it waits for the calls inside
 * the core (below) and, with no view and no Loan or Sample object left,
 * unmaps: zd_segment_close ends whatever of the handle is left (readers,
 * live loans, pins, the attachment entry; the creator's goodbye).  Views
 * of committed loans (a loan_array frame) do not block, nor do Loan and
 * Sample objects without views: the close then detaches at once
 * (zd_segment_detach: all of the above but the unmap) and the unmap waits
 * for the last view and the last of those objects.  (A consumer such as
 * np.ndarray(buffer=sample) or torch.frombuffer gives its buffer back at
 * once and keeps only a reference to the exporter: the export counts do
 * not see it, but the mapping under it stays.)  Segment.__exit__ defers instead of raising: it
 * says goodbye and closes the handle's readers now (zd_segment_goodbye,
 * zd_segment_close_readers), and the segment refuses new operations; each
 * exporter whose last view goes then ends (a live loan is discarded, a
 * sample unpinned), the detach follows once no view of a live loan or
 * unreleased sample is left, the unmap once no view is left.  The state
 * only moves forward (enum zdext_seg_state), and after the detach no
 * object touches the core any more (zdext_segment_attached).
 *
 * A reader closed while a sample it took is still pinned needs nothing
 * from the extension: the core frees its entry with the release of that
 * sample's pin (zd_slot_release), so Reader.close() is one call.
 *
 * Threads: every call into the core that may block or make system calls runs
 * with the GIL released and with segment->inflight raised, so close() (which
 * moves the segment to ZDEXT_CLOSING, then waits with the GIL released for
 * inflight to drop to the calling thread's own waits) never frees the handle
 * under a thread that is inside the core.  A wait leaves at its next slice
 * once the segment is no longer open (or its reader or writer is closed).
 *
 * Signals: a blocking wait runs the signal handlers between two slices,
 * outside the core.  A close() of the segment, the reader or the writer the
 * same thread is waiting on, made from such a handler, does not wait for
 * that thread (it would wait for itself): it completes at once, and the
 * wait, once the handler returns, ends with ClosedError (iteration: the
 * reader's end).  Each wait records itself in a per-thread list so close()
 * can tell its own thread's waits from other threads' (zdext_wait).
 *
 * Fork: every handle belongs to the process that opened its segment
 * (SegmentObject.pid; loans, samples, readers and writers are made only
 * there).  In another process (a fork child) every operation raises
 * ForkedHandleError, and finalisation only drops the local mapping
 * (zd_segment_abandon): no goodbye, no reader or attachment release, no
 * discard, no unpin, no unlock.  A pthread_atfork child handler updates
 * zdext_pid, so the check is one comparison, and covers every fork made
 * through the C library (os.fork, multiprocessing, C code alike); it also
 * makes the child let go of each shared handle's open file description
 * (zd_segment_disown: descriptor closed, both mappings replaced in place), so a
 * long-lived fork child never keeps its parent's liveness locks alive after
 * the parent dies.  (It walks a list changed only under the GIL, which the
 * thread calling os.fork holds; a fork from C code in a thread without the
 * GIL races with a handle being opened or closed at that moment.)
 */
#ifndef ZDSHM_EXT_H
#define ZDSHM_EXT_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include <stdint.h>
#include <sys/types.h>

#include "zdshm/zdshm.h"

#define ZDEXT_VERSION "0.1.0"

/* A blocking wait is cut in slices of at most this long; signals are
 * checked between slices, so Ctrl-C is seen within one slice. */
#define ZDEXT_SLICE_NS (50ull * 1000 * 1000)

/* Wait-loop results beside the core's negative errno codes. */
#define ZDEXT_PYERR (-100000)   /* a Python exception is set (signal)     */
#define ZDEXT_CLOSED (-100001)  /* the segment or reader is being closed   */

/* Copies at least this large run with the GIL released. */
#define ZDEXT_NOGIL_COPY (256u * 1024u)

/* ---------------------------------------------------------------------------
 * Slot meta layout (ZD_SLOT_META_SIZE == 64 bytes, written by Loan.set_format
 * and Writer.publish, read by Sample when a buffer is requested):
 *
 *   0..1    magic "ZA"
 *   2       ndim, 0..ZDEXT_META_NDIM_MAX
 *   3       format length, 1..ZDEXT_META_FORMAT_MAX
 *   4..15   PEP 3118 format, NUL padded (canonical form, see below)
 *   16..63  shape: ZDEXT_META_NDIM_MAX little-endian uint64, unused ones 0
 *
 * A format is one optional byte-order character among "<>=!@" and one of
 * "?bBhHiIlLqQefdg" or "Zf", "Zd", "Zg" (complex).  "F", "D", "G" are taken
 * as "Zf", "Zd", "Zg" and stored in that canonical form.  Native mode (no
 * prefix or '@') uses C sizes, the others struct's standard sizes ('g' and
 * "Zg" are native only).  The meta is valid only if
 * prod(shape) * itemsize == the committed size and itemsize times the
 * product of the nonzero dimensions is at most the slot capacity (both
 * overflow-checked; the second bounds the dimensions and strides of an
 * empty array as a full slot's are bounded).  Writers refuse anything else;
 * a reader copies the 64 bytes to private memory before validating them,
 * and falls back to 1-D unsigned bytes ("B") when anything is off.  (A
 * sample of several named arrays has the magic "ZM" and a directory in its
 * data instead: see "Several named arrays in one sample" below; its buffer
 * is its raw bytes.)
 * ------------------------------------------------------------------------- */
#define ZDEXT_META_MAGIC0 'Z'
#define ZDEXT_META_MAGIC1 'A'
#define ZDEXT_META_NDIM_MAX 6
#define ZDEXT_META_FORMAT_MAX 11
#define ZDEXT_META_FORMAT_OFF 4
#define ZDEXT_META_SHAPE_OFF 16

_Static_assert(ZDEXT_META_SHAPE_OFF + 8 * ZDEXT_META_NDIM_MAX == ZD_SLOT_META_SIZE,
	       "meta layout must fill the slot meta area exactly");
_Static_assert(ZDEXT_META_FORMAT_OFF + ZDEXT_META_FORMAT_MAX + 1 == ZDEXT_META_SHAPE_OFF,
	       "format field must end where the shape begins");

/* A parsed, validated array description. */
typedef struct zdext_layout {
	int ndim;                                   /* 0..6                 */
	Py_ssize_t itemsize;
	uint64_t nbytes;                            /* prod(shape)*itemsize */
	char format[ZDEXT_META_FORMAT_MAX + 1];     /* canonical, NUL ended */
	Py_ssize_t shape[ZDEXT_META_NDIM_MAX];
	Py_ssize_t strides[ZDEXT_META_NDIM_MAX];    /* C-contiguous, bytes  */
} zdext_layout;

/* Canonicalises a format (see above) into canon (ZDEXT_META_FORMAT_MAX+1
 * bytes) and returns its item size, or 0 if it is not a supported format. */
Py_ssize_t zdext_format_itemsize(const char *fmt, size_t len, char *canon);

/* Encodes a validated layout into a 64-byte meta area. */
void zdext_meta_encode(const zdext_layout *lay, uint8_t *meta);

/* Little-endian 64-bit fields of the meta and of a sample's directory. */
static inline void
zdext_put_le64(uint8_t *p, uint64_t v)
{
	int i;

	for (i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static inline uint64_t
zdext_get_le64(const uint8_t *p)
{
	uint64_t v = 0;
	int i;

	for (i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

/* Fills a read-only buffer view of `len` bytes at `buf` described by
 * `lay` for a request with `flags`: BufferError for a writable request
 * (`what` names the object: "a Sample") or a Fortran-contiguous one the
 * layout is not.  Sets view->obj to a new reference to `owner`; the
 * caller counts the export.  0 or -1. */
int zdext_fill_readonly_view(Py_buffer *view, int flags, PyObject *owner,
			     const void *buf, Py_ssize_t len,
			     zdext_layout *lay, const char *what);

/* Decodes and validates 64 meta bytes against a sample of `size` bytes in
 * a slot of `capacity` bytes.  Returns 1 and fills *lay, or 0 (no or
 * invalid meta) and fills *lay with 1-D unsigned bytes ("B", size). */
int zdext_meta_decode(const uint8_t *meta, uint64_t size, uint64_t capacity,
		      zdext_layout *lay);

/* The capacity a slot needs for a validated layout: the item size times
 * the nonzero dimensions (the bound zdext_meta_decode checks), which is
 * more than the bytes when the array is empty.  A writer loans a slot of
 * at least this capacity, since a reader checks the meta against the
 * capacity of the sample's own slot. */
uint64_t zdext_layout_span(const zdext_layout *lay);

/* ---------------------------------------------------------------------------
 * Several named arrays in one sample (multi.c; Writer.publish of a dict,
 * Writer.loan_arrays).  The slot meta then reads:
 *
 *   0..1    magic "ZM"
 *   2       directory version, ZDEXT_DIR_VERSION
 *   3       number of arrays n, 1..ZDEXT_DIR_MAX
 *   4..7    0
 *   8..15   directory bytes, little-endian uint64, == n * ZDEXT_DIR_ENTRY
 *   16..63  0
 *
 * and the directory fills the first n * ZDEXT_DIR_ENTRY bytes of the slot's
 * data, one entry per array in the order they were given:
 *
 *   0..63    the array's description in the single-array meta layout above
 *            ("ZA", ndim, format, shape) for its own bytes
 *   64..71   offset of its data from the start of the slot's data, LE
 *            uint64, a multiple of ZDEXT_DIR_ALIGN
 *   72..79   its bytes, LE uint64 (== prod(shape) * itemsize)
 *   80       name length, 1..ZDEXT_DIR_NAME_MAX
 *   81..127  name, UTF-8, NUL padded
 *
 * The arrays follow the directory in entry order, each at the next multiple
 * of ZDEXT_DIR_ALIGN; the committed size is the end of the last one.  A
 * reader copies the meta and the directory to private memory once and
 * accepts them only if every entry's description is valid for its bytes,
 * the offsets are aligned, increasing and non-overlapping (each at or past
 * the end of the previous array, the first past the directory), every
 * array ends within the committed size (overflow-checked), and the names
 * are valid UTF-8 without NUL, NUL padded and distinct.  Anything else:
 * CorruptSegmentError from the mapping methods of the Sample (its buffer
 * stays the raw bytes, as for every sample that is not one array).
 * ------------------------------------------------------------------------- */
#define ZDEXT_DIR_MAGIC1 'M'
#define ZDEXT_DIR_VERSION 1
#define ZDEXT_DIR_MAX 16
#define ZDEXT_DIR_ENTRY 128
#define ZDEXT_DIR_ALIGN 64
#define ZDEXT_DIR_NAME_OFF 81
#define ZDEXT_DIR_NAME_MAX (ZDEXT_DIR_ENTRY - ZDEXT_DIR_NAME_OFF)

_Static_assert(ZDEXT_DIR_NAME_MAX == 47, "names of up to 47 bytes");
_Static_assert(ZDEXT_DIR_ENTRY % ZDEXT_DIR_ALIGN == 0,
	       "the directory ends on an alignment boundary");

struct zdext_state;

/* A directory: written by publish/loan_arrays, decoded by a Sample. */
typedef struct zdext_dir {
	int n;                                 /* 0: not several arrays     */
	uint64_t total;                        /* end of the last array     */
	uint64_t need;                         /* slot capacity it needs:
						  total, or an empty
						  array's span if larger    */
	PyObject *names[ZDEXT_DIR_MAX];        /* str, strong               */
	uint64_t off[ZDEXT_DIR_MAX];
	zdext_layout lay[ZDEXT_DIR_MAX];
} zdext_dir;

/* Drops the names of d (n stays). */
void zdext_dir_clear(zdext_dir *d);

/* Adds an array named `key` (checked: a str of 1..47 UTF-8 bytes without
 * NUL, not yet in d; TypeError/ValueError naming it, `fn` the caller's name)
 * described by lay to d, at the next aligned offset.  0 or -1. */
int zdext_dir_add(zdext_dir *d, PyObject *key, const zdext_layout *lay,
		  const char *fn);

/* Re-raises the pending exception (same class) with its message prefixed
 * by "<fn>(): the array <repr(key)>: ". */
void zdext_name_error(PyObject *key, const char *fn);

/* The count check of a dict of arrays (TypeError unless a dict; ValueError
 * when empty or with more than ZDEXT_DIR_MAX entries).  0 or -1. */
int zdext_dir_check_dict(PyObject *dict, const char *fn);

/* Ends the adding: the arrays move down behind the directory of d->n
 * entries (zdext_dir_add left room for ZDEXT_DIR_MAX) and d->need is set;
 * SampleTooLargeError when the directory and arrays then need more than
 * `capacity`.  0 or -1. */
int zdext_dir_finish(struct zdext_state *st, zdext_dir *d, uint64_t capacity,
		     const char *fn);

/* Writes the meta and the directory of d (n >= 1) into a loaned slot. */
void zdext_dir_encode(const zdext_dir *d, uint8_t *meta, uint8_t *data);

/* --------------------------------------------------------------------------
 * Module state
 * ------------------------------------------------------------------------ */
typedef struct zdext_state {
	PyTypeObject *segment_type;
	PyTypeObject *memory_segment_type;
	PyTypeObject *posix_segment_type;
	PyTypeObject *anonymous_segment_type;
	PyTypeObject *loan_type;
	PyTypeObject *sample_type;
	PyTypeObject *writer_type;
	PyTypeObject *reader_type;

	PyObject *Error;
	PyObject *NoFreeSlotError;
	PyObject *WaitTimeoutError;
	PyObject *SegmentExistsError;
	PyObject *SegmentNotFoundError;
	PyObject *SegmentPermissionError;
	PyObject *SegmentOwnerError;
	PyObject *SampleTooLargeError;
	PyObject *StaleLoanError;
	PyObject *NoSampleError;
	PyObject *SlotBusyError;
	PyObject *TooManyReadersError;
	PyObject *DisconnectedError;
	PyObject *SegmentClosedError;
	PyObject *CreatorDeadError;
	PyObject *CorruptSegmentError;
	PyObject *NoSpaceError;
	PyObject *ViewsAliveError;
	PyObject *ClosedError;
	PyObject *ForkedHandleError;
	PyObject *InvalidArgumentError;
	PyObject *SizeOverflowError;
	PyObject *SystemCallError;

	PyObject *str_free;
	PyObject *str_loaned;
	PyObject *str_committed;

	/* loan_array (arrays.c), filled on first use: numpy is optional. */
	PyTypeObject *loan_array_type;  /* the context manager             */
	PyTypeObject *frame_type;       /* LoanFrame, an ndarray subclass  */
	PyObject *np_dtype;             /* numpy.dtype                     */
	PyObject *dtype_to_format;      /* zdshm.arrays.dtype_to_format    */
	PyObject *ndarray_setflags;     /* numpy.ndarray.setflags          */
	PyObject *str_base;
	PyObject *np_asarray;           /* numpy.asarray (Sample.__getitem__) */
	PyTypeObject *loan_arrays_type; /* Writer.loan_arrays' manager        */
	PyTypeObject *sample_part_type; /* one array of a Sample (multi.c)    */
	PyObject *aio;              /* zdshm.aio, imported lazily              */
} zdext_state;

extern PyModuleDef zdext_module_def;

static inline zdext_state *
zdext_state_of_type(PyTypeObject *tp)
{
	return (zdext_state *)PyType_GetModuleState(tp);
}

static inline zdext_state *
zdext_state_of(PyObject *obj)
{
	return zdext_state_of_type(Py_TYPE(obj));
}

/* THE mapping from a core return code (negative errno) to a Python
 * exception.  `what` says what was being done ("reserve", "attach 'x'").
 * Always returns NULL with an exception set. */
PyObject *zdext_raise(zdext_state *st, int rc, const char *what);

/* zdext_raise with what = "<verb> <repr(name)>" ("attach 'frames'"). */
PyObject *zdext_raise_named(zdext_state *st, int rc, const char *verb,
			    PyObject *name);

/* The same, with `hint` (or NULL) appended to the message after "; ". */
PyObject *zdext_raise_hint(zdext_state *st, int rc, const char *what,
			   const char *hint);

#if PY_VERSION_HEX < 0x030C0000
/* PEP 688's __buffer__ for Pythons that do not derive it from the buffer
 * slots (3.11): a memoryview over `self`, for Loan and Sample alike. */
PyObject *zdext_dunder_buffer(PyObject *self, PyObject *flags);
#define ZDEXT_BUFFER_DOC \
	"__buffer__($self, flags, /)\n--\n\n" \
	"A memoryview of the object (the buffer protocol, for Python 3.11)."

#endif

/* Raises ViewsAliveError for `n` live views of `what`; returns NULL. */
PyObject *zdext_views_alive(zdext_state *st, Py_ssize_t n, const char *what,
			    const char *action);

/* Raises ClosedError("<what> is closed"); returns NULL. */
PyObject *zdext_closed(zdext_state *st, const char *what);

/* The pid of this process, updated in every fork child (module.c). */
extern pid_t zdext_pid;

/* Fork child handler of segment.c: disowns the descriptor of every mapped
 * handle (zd_segment_disown), so none keeps its owner's locks alive. */
void zdext_segments_disown(void);

/* Raises ForkedHandleError: `what` ("the reader") of a segment opened by
 * process `owner` is used in this process; says to attach again.  `posix`
 * selects the advice (attach by name, or a new MemorySegment).  NULL. */
PyObject *zdext_forked(zdext_state *st, const char *what, pid_t owner,
		       int posix);

/* Refuses to pickle a reader, writer, loan or sample (every protocol):
 * TypeError naming the object and what to pass instead.  Used as their
 * __reduce_ex__ (segments have their own in ext/segment.c). */
PyObject *zdext_reduce_ex(PyObject *self, PyObject *protocol);

/* --------------------------------------------------------------------------
 * Argument converters.  Each raises TypeError, ValueError or OverflowError
 * naming the argument and the bad value, and returns -1; 0 on success.
 * ------------------------------------------------------------------------ */

/* An int (bool refused, __index__ accepted) in lo..hi.  Negative or out of
 * range: ValueError; beyond 64 bits: OverflowError. */
int zdext_u64_arg(PyObject *o, const char *what, uint64_t lo, uint64_t hi,
		  uint64_t *out);

/* A duration in seconds: int or float, not bool, >= 0, not NaN; +inf and
 * (when allow_none) None mean "no limit" (UINT64_MAX).  Values too large
 * for uint64 nanoseconds are clamped to no limit; values below one
 * nanosecond round up to 1 ns unless exactly 0.  max_s > 0 bounds it. */
int zdext_seconds_arg(PyObject *o, const char *what, int allow_none,
		      double max_s, uint64_t *ns);

/* A segment name: str, no NUL, valid per zd_name_validate.  *out points
 * into the str's UTF-8 cache (valid while o lives). */
int zdext_name_arg(PyObject *o, const char *what, const char **out);

/* A type hash: None (all zero out) or a bytes-like of exactly 16 bytes,
 * not all zero. */
int zdext_type_hash_arg(PyObject *o, uint8_t out[ZD_TYPE_HASH_SIZE]);

/* The owner policy of attach and describe by name: None (or NULL, not
 * passed: the default policy), a uid in 0..2**32-2 (ZD_ATTACH_ALLOW_UID) or
 * the string "any" (ZD_ATTACH_ANY_OWNER).  bool, float and other types:
 * TypeError; a negative or too large uid, another string: ValueError. */
int zdext_owner_arg(PyObject *o, zd_attach_opts_t *opts);

/* Raises for a failed attach or describe by name ("<verb> 'name'"):
 * SegmentOwnerError with the owner, the mode and the option to pass for
 * -ZD_EOWNER (from the found_* fields of opts), else as zdext_raise_named.
 * Returns NULL. */
PyObject *zdext_raise_policy(zdext_state *st, int rc, const char *verb,
			     PyObject *name_obj, const char *name,
			     const zd_attach_opts_t *opts);

/* Binds the arguments of a METH_FASTCALL|METH_KEYWORDS call: out[i] gets
 * the object passed for names[i] or NULL.  At most maxpos positionals. */
int zdext_bind(const char *fname, PyObject *const *args, Py_ssize_t nargs,
	       PyObject *kwnames, const char *const *names, int nparams,
	       int maxpos, PyObject **out);

/* The description of bytes without a valid meta: 1-D unsigned bytes
 * ("B") of `size` bytes. */
void zdext_layout_raw(zdext_layout *lay, uint64_t size);

/* A layout from Loan.set_format arguments for a slot of `capacity` bytes
 * (TypeError/ValueError/OverflowError naming the value; SampleTooLargeError
 * when it needs more than the capacity). */
int zdext_layout_from_py(zdext_state *st, PyObject *format, PyObject *shape,
			 uint64_t capacity, zdext_layout *lay);

/* A layout from an exported C-contiguous buffer (publish) for a slot of
 * `capacity` bytes; ValueError when its format is not supported, it has more
 * than 6 dimensions or an empty shape spanning more than the capacity;
 * SampleTooLargeError when it has more bytes than the capacity. */
int zdext_layout_from_buffer(zdext_state *st, const Py_buffer *v,
			     PyObject *obj, uint64_t capacity,
			     zdext_layout *lay);

/* "memory", "posix" or "anonymous". */
const char *zdext_backend_name(zd_backend_kind_t kind);

/* Builds the dict of zd_segment_info_t (describe(), Segment.info()). */
PyObject *zdext_info_dict(const zd_segment_info_t *info);

/* --------------------------------------------------------------------------
 * Objects
 * ------------------------------------------------------------------------ */

/* A segment's close moves it forward through these states, never back. */
enum zdext_seg_state {
	ZDEXT_OPEN = 0,
	ZDEXT_CLOSING = 1,   /* close() runs: no new operations, waits bail   */
	ZDEXT_DEFERRED = 2,  /* goodbye said, readers closed; views of live
				loans or samples keep their loans and pins   */
	ZDEXT_DETACHED = 3,  /* nothing shared left (zd_segment_detach): only
				views of committed loans keep the mapping    */
};

/* Link of a Loan or Sample on its segment's list of exporters that have
 * views (exports > 0): what ViewsAliveError names and what a deferred
 * close waits for.  `owner` is borrowed (the view holds it). */
typedef struct zdext_viewed {
	struct zdext_viewed *prev;
	struct zdext_viewed *next;
	PyObject *owner;
	int is_loan;
} zdext_viewed;

typedef struct SegmentObject {
	PyObject_HEAD
	zd_segment_t *seg;        /* NULL once unmapped                       */
	pid_t pid;                /* the process that opened the handle       */
	/* On the process-wide list of mapped handles (under the GIL), which
	 * the fork child handler walks to disown their descriptors. */
	struct SegmentObject *open_prev, *open_next;
	int state;                /* enum zdext_seg_state                     */
	Py_ssize_t inflight;      /* calls running with the GIL released      */
	zdext_viewed viewed;      /* sentinel: exporters with views           */
	Py_ssize_t n_loans;       /* live loans, unreleased samples, open     */
	Py_ssize_t n_samples;     /* readers (Segment.info open_objects)      */
	Py_ssize_t n_readers;
	/* Loan and Sample objects alive, ended or not: the mapping stays
	 * while one is, since a consumer may keep one as the base of its
	 * memory without holding a view (np.ndarray(buffer=...),
	 * torch.frombuffer take a buffer and give it back at once). */
	Py_ssize_t exporters;
	zd_backend_kind_t backend; /* geometry, cached at open: valid after close */
	uint32_t slot_count;
	int is_creator;
	int has_type_hash;
	uint64_t slot_capacity;
	uint64_t slot_total_size;
	uint64_t total_size;
	uint8_t type_hash[ZD_TYPE_HASH_SIZE];
	PyObject *name;           /* str (posix) or NULL                      */
	PyObject *geometry;       /* str for the repr, built at open: "slots=
				     <count>x<capacity>", or with several size
				     classes "classes=[(count, capacity), ...]" */
	/* Posix: the owner policy a pickle of the handle carries to the
	 * attach in the other process: the allow_owner given to attach (None,
	 * a uid or 'any'); for the creator None, or its euid when the mode
	 * lets group or other write (the default policy would refuse it). */
	PyObject *allow_owner;
	PyObject *weakreflist;
	/* The last slot meta a Sample decoded, with the committed size and
	 * the slot capacity it was validated against, and its layout: consecutive samples of one stream share their meta, so
	 * a sample's first view costs a 64-byte compare, not a decode. */
	int meta_cached;
	uint64_t meta_size;
	uint64_t meta_capacity;
	uint8_t meta_key[ZD_SLOT_META_SIZE];
	zdext_layout meta_layout;
} SegmentObject;

/* A loan's nbytes argument (None or absent: the largest capacity); raises
 * SampleTooLargeError beyond the largest capacity.  Returns 0 or -1. */
int zdext_nbytes_arg(SegmentObject *seg, PyObject *o, const char *what,
		     uint64_t *nbytes);

enum zdext_loan_state {
	ZDEXT_LOAN_LIVE = 0,
	ZDEXT_LOAN_COMMITTED = 1,
	ZDEXT_LOAN_DISCARDED = 2,
};

typedef struct LoanObject {
	PyObject_HEAD
	SegmentObject *segment;   /* strong                                   */
	zdext_viewed link;        /* on segment->viewed while exports > 0     */
	uint8_t *data;
	uint8_t *meta;
	Py_ssize_t capacity;
	uint64_t fmt_nbytes;      /* bytes described by set_format            */
	uint64_t sn;
	uint32_t slot;
	int state;
	int has_format;
	Py_ssize_t exports;       /* buffer exports and loan_array frames     */
} LoanObject;

typedef struct SampleObject {
	PyObject_HEAD
	SegmentObject *segment;   /* strong                                   */
	zdext_viewed link;        /* on segment->viewed while exports > 0     */
	zd_view_t view;
	int released;
	int parsed;               /* layout below is filled                   */
	Py_ssize_t exports;
	zdext_layout layout;
	zdext_dir *dir;           /* several arrays: decoded, valid; or NULL  */
} SampleObject;

/* The last (shape, dtype) a Writer's loan_array resolved. */
typedef struct zdext_plan {
	PyObject *shape;          /* the shape as passed (a tuple), or NULL   */
	PyObject *dtype;          /* the dtype as passed                      */
	PyObject *descr;          /* numpy.dtype(dtype)                       */
	PyObject *args;           /* (shape tuple, descr): the frame's ndarray
				     arguments without the buffer           */
	zdext_layout layout;
	uint64_t need;            /* the slot capacity the layout needs       */
} zdext_plan;

typedef struct WriterObject {
	PyObject_HEAD
	SegmentObject *segment;   /* strong                                   */
	zd_overflow_t policy;
	uint64_t timeout_ns;      /* UINT64_MAX: none                         */
	uint64_t spin_ns;
	int closed;
	zdext_plan plan;          /* loan_array's cache                       */
} WriterObject;

typedef struct ReaderObject {
	PyObject_HEAD
	SegmentObject *segment;   /* strong                                   */
	zd_reader_t r;
	uint64_t spin_ns;
	int closed;               /* set first by close(): the wait's abort   */
	Py_ssize_t busy;          /* a take is waiting with the GIL released  */
	int has_fd;               /* fileno() was called: try_take() arms     */
} ReaderObject;

extern PyType_Spec zdext_segment_spec;
extern PyType_Spec zdext_memory_segment_spec;
extern PyType_Spec zdext_posix_segment_spec;
extern PyType_Spec zdext_anonymous_segment_spec;
extern PyType_Spec zdext_loan_spec;
extern PyType_Spec zdext_sample_spec;
extern PyType_Spec zdext_writer_spec;
extern PyType_Spec zdext_reader_spec;
extern PyType_Spec zdext_loan_array_spec;
extern PyType_Spec zdext_loan_arrays_spec;
extern PyType_Spec zdext_sample_part_spec;

/* segment.c: an exporter got its first view (exports 0 -> 1) / lost its
 * last (1 -> 0).  The latter finishes what a deferred close left. */
void zdext_viewed_add(SegmentObject *seg, zdext_viewed *v);
void zdext_viewed_remove(SegmentObject *seg, zdext_viewed *v);
/* segment.c: a Loan or Sample object is made / is gone (its dealloc,
 * before it drops its reference to seg: a closed segment may unmap). */
void zdext_exporter_made(SegmentObject *seg);
void zdext_exporter_gone(SegmentObject *seg);
/* ClosedError unless the segment is open, ForkedHandleError in another
 * process than the segment's; returns 0 or -1. */
int zdext_segment_check(SegmentObject *seg);

/* 1 while this handle's loans, pins and readers are its own to end: the
 * segment is mapped, not detached, and this is the process that opened
 * it.  Otherwise the core (zd_segment_detach/close) ended them, or they
 * belong to the parent of this fork child: touch none of them. */
static inline int
zdext_segment_attached(const SegmentObject *seg)
{
	return seg->seg != NULL && seg->state < ZDEXT_DETACHED &&
	       seg->pid == zdext_pid;
}

/* 1 when the handle was opened by another process (this is a fork child). */
static inline int
zdext_foreign(const SegmentObject *seg)
{
	return seg->pid != zdext_pid;
}

/* ForkedHandleError for `what` ("the loan") when seg is foreign: -1, else 0. */
int zdext_check_owner(SegmentObject *seg, const char *what);
/* Waits with the GIL released until *counter is at most `own` (polls every
 * ms); `own` counts the waits of the calling thread itself, which are
 * between two slices when it gets here (see Signals above). */
void zdext_wait_idle(Py_ssize_t *counter, Py_ssize_t own);
/* How many waits of the calling thread are on seg (abort == NULL) or use
 * the abort flag `abort`. */
Py_ssize_t zdext_own_waits(SegmentObject *seg, const int *abort);

/* One slice of a blocking wait: called with the GIL released; returns a
 * core code (0, -ETIMEDOUT, -EINTR, or an error). */
typedef int (*zdext_slice_fn)(void *ctx, uint64_t deadline_ns,
			      uint64_t spin_ns);
/* Runs fn in slices until it returns something else than -ETIMEDOUT or
 * -EINTR, the deadline passes (-ETIMEDOUT), a signal handler raises
 * (ZDEXT_PYERR), or *abort becomes non-zero (ZDEXT_CLOSED).  Raises
 * segment->inflight for the duration. */
int zdext_wait(SegmentObject *seg, zdext_slice_fn fn, void *ctx,
	       uint64_t timeout_ns, uint64_t spin_ns, const int *abort);

/* loan.c */
PyObject *zdext_loan_new(zdext_state *st, SegmentObject *seg, uint32_t slot);
/* One export more / less of a live or ended loan (a loan_array frame's). */
void zdext_loan_export(LoanObject *l);
void zdext_loan_unexport(LoanObject *l);
/* commit(nbytes) allowing `allowed` exports to remain (a frame's own). */
PyObject *zdext_loan_commit(LoanObject *l, PyObject *nbytes, Py_ssize_t allowed);
/* discard() allowing `allowed` exports to remain. */
PyObject *zdext_loan_discard(LoanObject *l, Py_ssize_t allowed);

/* sample.c */
PyObject *zdext_sample_new(zdext_state *st, SegmentObject *seg,
			   const zd_view_t *view);
/* ClosedError/ForkedHandleError unless the sample is pinned and usable. */
int zdext_sample_check(SampleObject *s);
/* One export more / less of a sample (a SamplePart's buffer views). */
void zdext_sample_export(SampleObject *s);
void zdext_sample_unexport(SampleObject *s);

/* multi.c: the directory of a usable sample, decoded once (s->dir; n == 0
 * for a sample that is not several arrays); CorruptSegmentError naming the
 * fault when it is invalid (not cached).  NULL on error. */
const zdext_dir *zdext_sample_dir(SampleObject *s);
/* A read-only numpy array over array i of s's directory: an export of s. */
PyObject *zdext_sample_array(SampleObject *s, int i);
/* Writer.publish/try_publish of a dict of arrays (try_: never waits,
 * None when no slot is free now). */
PyObject *zdext_publish_arrays(WriterObject *w, PyObject *dict,
			       uint64_t timeout_ns, int try_);

/* arrays.c: Writer.loan_array and the LoanFrame ndarray subclass. */
PyObject *zdext_writer_loan_array(WriterObject *w, PyObject *const *args,
				  Py_ssize_t nargs, PyObject *kwnames);
/* The LoanFrame type (made on first use, numpy imported then). */
PyObject *zdext_loan_frame_type(PyObject *module, PyObject *ignored);
void zdext_plan_clear(zdext_plan *p);
/* writer.c: loans a slot of the smallest size class that holds nbytes,
 * per the writer's policy (0 or a core code). */
int zdext_writer_loan_slot(WriterObject *w, uint64_t timeout_ns, uint64_t nbytes,
			   uint32_t *slot);
/* writer.c: one loan attempt that never waits: 0 (*slot loaned), 1 (no
 * slot now) or a negative code. */
int zdext_writer_try_slot(WriterObject *w, uint64_t nbytes, uint32_t *slot);
/* arrays.c: Writer.loan_arrays. */
PyObject *zdext_writer_loan_arrays(WriterObject *w, PyObject *const *args,
				   Py_ssize_t nargs, PyObject *kwnames);
/* writer.c: ClosedError/ForkedHandleError unless the writer may loan. */
int zdext_writer_check(WriterObject *w);

/* reader.c: calls zdshm.aio.<name>(self, *args, **kwargs), the asyncio
 * side of Reader and Writer (written in Python: it drives the event loop
 * through the readiness descriptors, see zdshm/ready.h). */
PyObject *zdext_aio_call(PyObject *self, const char *name,
			 PyObject *const *args, Py_ssize_t nargs,
			 PyObject *kwnames);

/* writer.c: Segment.writer(); reader.c: Segment.reader(). */
PyObject *zdext_segment_writer(PyObject *seg, PyObject *const *args,
			       Py_ssize_t nargs, PyObject *kwnames);
PyObject *zdext_segment_reader(PyObject *seg, PyObject *const *args,
			       Py_ssize_t nargs, PyObject *kwnames);

/* interop.c: DLPack and __array__ for Sample and Loan. */
typedef struct zdext_dlpack_req {
	int versioned;            /* max_version >= (1, 0): versioned capsule */
	int copy;                 /* -1 None, 0 False, 1 True                 */
} zdext_dlpack_req;
/* Checks the keyword-only __dlpack__ arguments (stream, max_version,
 * dl_device, copy) before anything else is done: TypeError for a wrong
 * type, BufferError for a device other than (1, 0), ValueError for a
 * stream other than None.  0 or -1. */
int zdext_dlpack_args(PyObject *const *args, Py_ssize_t nargs,
		      PyObject *kwnames, zdext_dlpack_req *req);
/* A DLPack capsule over the buffer of `owner` (a Sample or Loan, checked
 * usable by the caller) described by `lay`: holds one buffer export of
 * owner until the consumer's deleter runs (none for a copy). */
PyObject *zdext_dlpack_export(PyObject *owner, const zdext_layout *lay,
			      int readonly, const zdext_dlpack_req *req);
/* __dlpack_device__: (1, 0), kDLCPU. */
PyObject *zdext_dlpack_device(PyObject *self, PyObject *ignored);
/* __array__(dtype=None, copy=None): numpy.asarray of a memoryview of self,
 * so that the buffer's error propagates instead of an object array. */
PyObject *zdext_dunder_array(PyObject *self, PyObject *const *args,
			     Py_ssize_t nargs, PyObject *kwnames);

#endif
