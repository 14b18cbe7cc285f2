/* segment.c — Segment (abstract base), MemorySegment, PosixSegment and
 * AnonymousSegment.
 *
 * A segment object owns one zd_segment_t handle.  Loans, samples, readers
 * and writers hold strong references to it; loans and samples with views
 * are on its `viewed` list, so close() can refuse while views are alive
 * and otherwise leave the rest to the core (see the lifetime model in
 * ext.h).
 */
#include "ext.h"

#include <errno.h>
#include <limits.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* --------------------------------------------------------------------------
 * Exporters with views, closing, waiting
 * ------------------------------------------------------------------------ */

static void segment_settle(SegmentObject *self);

void
zdext_viewed_add(SegmentObject *seg, zdext_viewed *v)
{
	v->next = &seg->viewed;
	v->prev = seg->viewed.prev;
	seg->viewed.prev->next = v;
	seg->viewed.prev = v;
}

void
zdext_viewed_remove(SegmentObject *seg, zdext_viewed *v)
{
	v->prev->next = v->next;
	v->next->prev = v->prev;
	v->next = v->prev = v;
	segment_settle(seg);
}

void
zdext_exporter_made(SegmentObject *seg)
{
	seg->exporters++;
}

void
zdext_exporter_gone(SegmentObject *seg)
{
	seg->exporters--;
	segment_settle(seg);
}

/* The mapped handles of this process (SegmentObject.open_prev/next). */
static SegmentObject *open_segments;

static void
open_list_add(SegmentObject *self)
{
	self->open_prev = NULL;
	self->open_next = open_segments;
	if (open_segments != NULL)
		open_segments->open_prev = self;
	open_segments = self;
}

static void
open_list_remove(SegmentObject *self)
{
	if (self->open_prev != NULL)
		self->open_prev->open_next = self->open_next;
	else if (open_segments == self)
		open_segments = self->open_next;
	if (self->open_next != NULL)
		self->open_next->open_prev = self->open_prev;
	self->open_prev = self->open_next = NULL;
}

void
zdext_segments_disown(void)
{
	SegmentObject *s;

	/* Every shared segment (the memory backend has nothing to let go of).
	 * An anonymous segment keeps the descriptor it hands over, which holds
	 * no lock, so the child can still attach again through it. */
	for (s = open_segments; s != NULL; s = s->open_next)
		if (s->seg != NULL)
			zd_segment_disown(s->seg);
}

/* Unmaps: nothing points into the mapping any more (no exports, no
 * Loan or Sample object).  The
 * core ends whatever of the handle is left (zd_segment_close); in a fork
 * child only the local mapping goes (zd_segment_abandon). */
static void
segment_unmap(SegmentObject *self)
{
	zd_segment_t *h = self->seg;
	int foreign = zdext_foreign(self);

	self->seg = NULL;
	if (self->state == ZDEXT_OPEN)
		self->state = ZDEXT_DETACHED;
	if (h == NULL)
		return;
	open_list_remove(self);
	Py_BEGIN_ALLOW_THREADS
	if (foreign)
		zd_segment_abandon(h);
	else
		zd_segment_close(h);
	Py_END_ALLOW_THREADS
}

/* Views that keep close() from ending the stream's part of the handle:
 * those of a live loan (it would be discarded under a writable view) and
 * of an unreleased sample (its slot would be recycled under the view).  A
 * committed or discarded loan's views only keep the mapping. */
static Py_ssize_t
viewed_blocking(const zdext_viewed *v)
{
	if (v->is_loan) {
		const LoanObject *l = (const LoanObject *)v->owner;

		return l->state == ZDEXT_LOAN_LIVE ? l->exports : 0;
	}
	return ((const SampleObject *)v->owner)->released
	       ? 0 : ((const SampleObject *)v->owner)->exports;
}

static Py_ssize_t
segment_blocking(const SegmentObject *self)
{
	const zdext_viewed *v;
	Py_ssize_t n = 0;

	for (v = self->viewed.next; v != &self->viewed; v = v->next)
		n += viewed_blocking(v);
	return n;
}

/* What a close left for the views, done as soon as they allow it: the
 * detach once no view of a live loan or unreleased sample is left, the
 * unmap once no view and no Loan or Sample object is left.  Called by
 * close(), whenever an exporter loses its last view, and when a Loan or
 * Sample object goes. */
static void
segment_settle(SegmentObject *self)
{
	zd_segment_t *h = self->seg;

	/* Not while another thread is inside the core on this handle (the
	 * detach below runs with the GIL released): it settles again when it
	 * is back.  This thread's own waits are between two slices. */
	if (self->state < ZDEXT_DEFERRED || h == NULL ||
	    self->inflight > zdext_own_waits(self, NULL))
		return;
	if (self->viewed.next == &self->viewed && self->exporters == 0) {
		segment_unmap(self);
	} else if (self->state == ZDEXT_DEFERRED && !zdext_foreign(self) &&
		   segment_blocking(self) == 0) {
		/* (A fork child never detaches: the parent's part is not its
		 * to end; it only abandons its mapping, above.) */
		self->state = ZDEXT_DETACHED;
		self->inflight++;
		Py_BEGIN_ALLOW_THREADS
		zd_segment_detach(h);
		Py_END_ALLOW_THREADS
		self->inflight--;
		segment_settle(self);   /* the last view may have gone meanwhile */
	}
}

int
zdext_check_owner(SegmentObject *seg, const char *what)
{
	if (!zdext_foreign(seg))
		return 0;
	zdext_forked(zdext_state_of((PyObject *)seg), what, seg->pid,
		     seg->backend == ZD_BACKEND_POSIX);
	return -1;
}

int
zdext_segment_check(SegmentObject *seg)
{
	if (zdext_check_owner(seg, "the segment") < 0)
		return -1;
	if (seg->state != ZDEXT_OPEN || seg->seg == NULL) {
		zdext_closed(zdext_state_of((PyObject *)seg), "the segment");
		return -1;
	}
	return 0;
}

/* The waits of this thread, innermost first: a signal handler may start
 * another wait between two slices of an outer one. */
struct wait_frame {
	SegmentObject *seg;
	const int *abort;
	struct wait_frame *prev;
};

static _Thread_local struct wait_frame *thread_waits;

Py_ssize_t
zdext_own_waits(SegmentObject *seg, const int *abort)
{
	struct wait_frame *f;
	Py_ssize_t n = 0;

	for (f = thread_waits; f != NULL; f = f->prev)
		if (abort != NULL ? f->abort == abort : f->seg == seg)
			n++;
	return n;
}

void
zdext_wait_idle(Py_ssize_t *counter, Py_ssize_t own)
{
	/* *counter changes only under the GIL; each poll drops the GIL so the
	 * waiting thread can leave its slice (at most ZDEXT_SLICE_NS). */
	while (*counter > own) {
		Py_BEGIN_ALLOW_THREADS
		struct timespec ts = {0, 1000 * 1000};
		nanosleep(&ts, NULL);
		Py_END_ALLOW_THREADS
	}
}

int
zdext_wait(SegmentObject *seg, zdext_slice_fn fn, void *ctx,
	   uint64_t timeout_ns, uint64_t spin_ns, const int *abort)
{
	uint64_t now = zd_now_ns(), deadline, slice;
	struct wait_frame frame = {seg, abort, thread_waits};
	int rc;

	if (timeout_ns == UINT64_MAX || timeout_ns > UINT64_MAX - now)
		deadline = UINT64_MAX;
	else
		deadline = now + timeout_ns;
	seg->inflight++;
	thread_waits = &frame;
	for (;;) {
		slice = now + ZDEXT_SLICE_NS;
		if (slice > deadline)
			slice = deadline;
		Py_BEGIN_ALLOW_THREADS
		rc = fn(ctx, slice, spin_ns);
		Py_END_ALLOW_THREADS
		spin_ns = 0;   /* spin once, before the first park */
		if (rc != -ETIMEDOUT && rc != -EINTR)
			break;
		now = zd_now_ns();
		if (rc == -ETIMEDOUT && now >= deadline)
			break;
		if (PyErr_CheckSignals() < 0) {
			rc = ZDEXT_PYERR;
			break;
		}
		/* A handler (or another thread) may have closed the segment,
		 * the reader or the writer: ctx may point to a freed handle. */
		if (seg->state != ZDEXT_OPEN || seg->seg == NULL ||
		    (abort != NULL && *abort)) {
			rc = ZDEXT_CLOSED;
			break;
		}
	}
	thread_waits = frame.prev;
	seg->inflight--;
	return rc;
}

/* ViewsAliveError naming each loan and sample whose views block close(). */
static void
segment_views_alive(SegmentObject *self)
{
	char msg[640];
	size_t len;
	zdext_viewed *v;
	Py_ssize_t objects = 0, shown = 0, n;

	len = (size_t)PyOS_snprintf(msg, sizeof(msg),
				    "cannot close the segment: views are alive of");
	for (v = self->viewed.next; v != &self->viewed; v = v->next) {
		n = viewed_blocking(v);
		if (n == 0)
			continue;
		objects++;
		if (shown == 4 || len >= sizeof(msg) - 96)
			continue;
		shown++;
		if (v->is_loan)
			len += (size_t)PyOS_snprintf(
				msg + len, sizeof(msg) - len,
				"%s the live loan of slot %u (%zd view%s)",
				shown > 1 ? "," : "",
				(unsigned)((LoanObject *)v->owner)->slot, n,
				n == 1 ? "" : "s");
		else
			len += (size_t)PyOS_snprintf(
				msg + len, sizeof(msg) - len,
				"%s the sample of slot %u, sn %llu (%zd view%s)",
				shown > 1 ? "," : "",
				(unsigned)((SampleObject *)v->owner)->view.slot,
				(unsigned long long)((SampleObject *)v->owner)->view.sn,
				n, n == 1 ? "" : "s");
	}
	if (objects > shown)
		len += (size_t)PyOS_snprintf(msg + len, sizeof(msg) - len,
					     " and %zd more", objects - shown);
	PyOS_snprintf(msg + len, sizeof(msg) - len,
		      "; del those arrays or call .release() on the memoryviews "
		      "(and samples) first, or close with `with seg:`, which "
		      "says goodbye at once and unmaps when they are gone");
	PyErr_SetString(zdext_state_of((PyObject *)self)->ViewsAliveError, msg);
}

/* close(): defer == 0 refuses while a live loan or an unreleased sample
 * has views; __exit__ defers instead.  Either way the goodbye and the
 * readers' close happen now; the rest (the end of the loans and pins of
 * the handle, the unmap) as soon as the views allow (segment_settle). */
static int
segment_close_impl(SegmentObject *self, int defer)
{
	zd_segment_t *h = self->seg;

	if (zdext_foreign(self)) {
		if (!defer)
			return zdext_check_owner(self, "the segment");
		/* Unmapped locally when collected (zd_segment_abandon). */
		if (self->state == ZDEXT_OPEN)
			self->state = ZDEXT_DETACHED;
		return 0;
	}
	if (h == NULL || self->state != ZDEXT_OPEN)
		return 0;
	if (!defer && segment_blocking(self) > 0) {
		segment_views_alive(self);
		return -1;
	}
	self->state = ZDEXT_CLOSING;
	/* Other threads inside the core leave at their next slice; this
	 * thread's own waits (we run in a signal handler between two of their
	 * slices) leave once it returns. */
	zdext_wait_idle(&self->inflight, zdext_own_waits(self, NULL));
	if (self->viewed.next != &self->viewed) {
		/* Views remain: end the stream's part now, keep the mapping
		 * (and the loans and pins those views need). */
		Py_BEGIN_ALLOW_THREADS
		zd_segment_goodbye(h);
		zd_segment_close_readers(h);
		Py_END_ALLOW_THREADS
	}
	self->state = ZDEXT_DEFERRED;
	segment_settle(self);
	return 0;
}

/* --------------------------------------------------------------------------
 * Construction
 * ------------------------------------------------------------------------ */

/* The geometry a repr shows (SegmentObject.geometry). */
static PyObject *
geometry_text(zd_segment_t *h)
{
	uint32_t n = zd_segment_class_count(h);
	PyObject *parts, *sep = NULL, *joined = NULL, *out = NULL;

	if (n <= 1)
		return PyUnicode_FromFormat("slots=%ux%llu",
					    (unsigned)zd_segment_slot_count(h),
					    (unsigned long long)zd_segment_slot_capacity(h));
	parts = PyList_New((Py_ssize_t)n);
	if (parts == NULL)
		return NULL;
	for (uint32_t c = 0; c < n; c++) {
		zd_class_t cl;
		PyObject *item;

		if (zd_segment_class(h, c, &cl) < 0)
			memset(&cl, 0, sizeof(cl));     /* c < n: not reached */
		item = PyUnicode_FromFormat("(%u, %llu)", (unsigned)cl.slot_count,
					    (unsigned long long)cl.slot_capacity);
		if (item == NULL)
			goto done;
		PyList_SET_ITEM(parts, (Py_ssize_t)c, item);
	}
	sep = PyUnicode_FromString(", ");
	if (sep != NULL)
		joined = PyUnicode_Join(sep, parts);
	if (joined != NULL)
		out = PyUnicode_FromFormat("classes=[%U]", joined);
done:
	Py_XDECREF(joined);
	Py_XDECREF(sep);
	Py_DECREF(parts);
	return out;
}

static PyObject *
segment_wrap(PyTypeObject *tp, zd_segment_t *h, PyObject *name)
{
	SegmentObject *self = (SegmentObject *)tp->tp_alloc(tp, 0);

	if (self == NULL) {
		Py_BEGIN_ALLOW_THREADS
		zd_segment_close(h);
		Py_END_ALLOW_THREADS
		return NULL;
	}
	self->seg = h;
	self->pid = zdext_pid;
	open_list_add(self);
	self->viewed.next = self->viewed.prev = &self->viewed;
	self->viewed.owner = NULL;
	self->backend = zd_segment_backend(h);
	self->slot_count = zd_segment_slot_count(h);
	self->slot_capacity = zd_segment_slot_capacity(h);
	self->slot_total_size = zd_segment_slot_total_size(h);
	self->total_size = zd_segment_total_size(h);
	self->has_type_hash = zd_segment_type_hash(h, self->type_hash);
	self->is_creator = zd_segment_is_creator(h);
	self->name = Py_XNewRef(name);
	self->geometry = geometry_text(h);
	if (self->geometry == NULL) {
		Py_DECREF(self);
		return NULL;
	}
	if (self->slot_capacity > (uint64_t)PY_SSIZE_T_MAX) {
		PyErr_Format(PyExc_OverflowError,
			     "slot_capacity %llu does not fit this platform",
			     (unsigned long long)self->slot_capacity);
		Py_DECREF(self);
		return NULL;
	}
	return (PyObject *)self;
}

/* classes=[(slot_count, slot_capacity), ...] into cfg: a list or tuple of
 * 1..ZD_CLASS_MAX pairs of ints, capacities strictly increasing (unsorted
 * or duplicate capacities are refused, not sorted: the order is the class
 * numbering the caller sees in info() and slots()).  No system call. */
static int
classes_arg(PyObject *classes, zd_config_t *cfg)
{
	Py_ssize_t n, i;
	uint64_t total = 0;

	if (!PyList_Check(classes) && !PyTuple_Check(classes)) {
		PyErr_Format(PyExc_TypeError,
			     "classes must be a list of (slot_count, slot_capacity) "
			     "pairs, got %.200R (%s)", classes, Py_TYPE(classes)->tp_name);
		return -1;
	}
	n = PySequence_Fast_GET_SIZE(classes);
	if (n < 1 || n > (Py_ssize_t)ZD_CLASS_MAX) {
		PyErr_Format(PyExc_ValueError,
			     "classes must hold 1..%u (slot_count, slot_capacity) "
			     "pairs, got %zd", (unsigned)ZD_CLASS_MAX, n);
		return -1;
	}
	for (i = 0; i < n; i++) {
		PyObject *item = PySequence_Fast_GET_ITEM(classes, i);
		uint64_t count, cap;

		if ((!PyTuple_Check(item) && !PyList_Check(item)) ||
		    PySequence_Fast_GET_SIZE(item) != 2) {
			PyErr_Format(PyExc_TypeError,
				     "classes[%zd] must be a (slot_count, slot_capacity) "
				     "pair, got %.200R (%s)", i, item,
				     Py_TYPE(item)->tp_name);
			return -1;
		}
		if (zdext_u64_arg(PySequence_Fast_GET_ITEM(item, 0), "a class's slot_count",
				  1, ZD_SLOT_COUNT_MAX, &count) < 0 ||
		    zdext_u64_arg(PySequence_Fast_GET_ITEM(item, 1),
				  "a class's slot_capacity", 1, ZD_SLOT_CAPACITY_MAX,
				  &cap) < 0)
			return -1;
		if (i > 0 && cap <= cfg->classes[i - 1].slot_capacity) {
			PyErr_Format(PyExc_ValueError,
				     "classes must be in strictly increasing order of "
				     "slot_capacity: classes[%zd] has %llu after %llu",
				     i, (unsigned long long)cap,
				     (unsigned long long)cfg->classes[i - 1].slot_capacity);
			return -1;
		}
		total += count;
		cfg->classes[i].slot_count = (uint32_t)count;
		cfg->classes[i].slot_capacity = cap;
	}
	if (total > ZD_SLOT_COUNT_MAX) {
		PyErr_Format(PyExc_ValueError,
			     "classes hold %llu slots in all, more than %u",
			     (unsigned long long)total, (unsigned)ZD_SLOT_COUNT_MAX);
		return -1;
	}
	cfg->class_count = (uint32_t)n;
	return 0;
}

/* The checks shared by MemorySegment(), AnonymousSegment() and
 * PosixSegment.create(): either slot_count and slot_capacity (one class),
 * or classes; never both. */
static int
config_from_args(PyObject *count, PyObject *cap, PyObject *classes,
		 PyObject *hash, PyObject *mode, zd_config_t *cfg)
{
	uint64_t n = 0, c = 0, m = 0600;

	memset(cfg, 0, sizeof(*cfg));
	/* None is the default of each: absent. */
	if (classes == Py_None)
		classes = NULL;
	if (count == Py_None)
		count = NULL;
	if (cap == Py_None)
		cap = NULL;
	if (classes != NULL && (count != NULL || cap != NULL)) {
		PyErr_Format(PyExc_TypeError,
			     "pass either slot_count and slot_capacity (one size "
			     "class) or classes=[(slot_count, slot_capacity), ...], "
			     "not both: got slot_count=%R, slot_capacity=%R, "
			     "classes=%.200R", count ? count : Py_None,
			     cap ? cap : Py_None, classes);
		return -1;
	}
	if (classes == NULL && (count == NULL || cap == NULL)) {
		PyErr_Format(PyExc_TypeError,
			     "needs slot_count and slot_capacity (ints), or "
			     "classes=[(slot_count, slot_capacity), ...]: got "
			     "slot_count=%R, slot_capacity=%R",
			     count ? count : Py_None, cap ? cap : Py_None);
		return -1;
	}
	if (classes != NULL) {
		if (classes_arg(classes, cfg) < 0)
			return -1;
	} else if (zdext_u64_arg(count, "slot_count", 1, ZD_SLOT_COUNT_MAX, &n) < 0 ||
		   zdext_u64_arg(cap, "slot_capacity", 1, ZD_SLOT_CAPACITY_MAX, &c) < 0) {
		return -1;
	}
	if (zdext_type_hash_arg(hash ? hash : Py_None, cfg->type_hash) < 0)
		return -1;
	if (mode != NULL && zdext_u64_arg(mode, "mode", 1, 0777, &m) < 0)
		return -1;
	cfg->slot_count = (uint32_t)n;
	cfg->slot_capacity = c;
	cfg->mode = (uint32_t)m;
	/* Pure arithmetic, no system call: the geometry must fit. */
	if (classes != NULL) {
		if (zd_config_validate(cfg) < 0 ||
		    cfg->classes[cfg->class_count - 1].slot_capacity > (uint64_t)PY_SSIZE_T_MAX) {
			PyErr_Format(PyExc_OverflowError,
				     "classes %.200R do not fit in memory (segment "
				     "size overflows)", classes);
			return -1;
		}
	} else if (zd_config_validate(cfg) < 0 ||
		   c > (uint64_t)PY_SSIZE_T_MAX) {
		PyErr_Format(PyExc_OverflowError,
			     "slot_count %R x slot_capacity %R does not fit in "
			     "memory (segment size overflows)", count, cap);
		return -1;
	}
	return 0;
}

typedef int (*unnamed_create_fn)(const zd_config_t *cfg, zd_segment_t **out);

/* MemorySegment(...) and AnonymousSegment(...): the same arguments, no name. */
static PyObject *
unnamed_segment_new(PyTypeObject *tp, PyObject *args, PyObject *kwds,
		    const char *parse_fmt, unnamed_create_fn create,
		    const char *what)
{
	static char *kwlist[] = {"slot_count", "slot_capacity", "type_hash",
				 "classes", NULL};
	zdext_state *st = zdext_state_of_type(tp);
	PyObject *count = NULL, *cap = NULL, *hash = Py_None, *classes = NULL;
	zd_config_t cfg;
	zd_segment_t *h = NULL;
	int rc;

	if (!PyArg_ParseTupleAndKeywords(args, kwds, parse_fmt, kwlist,
					 &count, &cap, &hash, &classes))
		return NULL;
	if (config_from_args(count, cap, classes, hash, NULL, &cfg) < 0)
		return NULL;
	Py_BEGIN_ALLOW_THREADS
	rc = create(&cfg, &h);
	Py_END_ALLOW_THREADS
	if (rc < 0)
		return zdext_raise(st, rc, what);
	return segment_wrap(tp, h, NULL);
}

static PyObject *
memory_segment_new(PyTypeObject *tp, PyObject *args, PyObject *kwds)
{
	return unnamed_segment_new(tp, args, kwds, "|OO$OO:MemorySegment",
				   zd_segment_create_memory, "create memory segment");
}

static PyObject *
what_name(const char *verb, PyObject *name)
{
	return PyUnicode_FromFormat("%s %R", verb, name);
}

/* SegmentExistsError saying what lives under the name: whether its creator
 * is alive, and how a stale segment is removed. */
static PyObject *
raise_exists(zdext_state *st, PyObject *name_obj, const char *name)
{
	zd_segment_info_t info;
	zd_attach_opts_t any = {.flags = ZD_ATTACH_ANY_OWNER};
	PyObject *what = what_name("create", name_obj), *hint = NULL;
	int rc;

	if (what == NULL)
		return NULL;
	Py_BEGIN_ALLOW_THREADS
	rc = zd_segment_describe_posix_opts(name, &any, &info);
	Py_END_ALLOW_THREADS
	if (rc < 0)
		hint = PyUnicode_FromFormat(
			"it is no zdshm segment this process can describe (%s): "
			"replace_stale=True and `python -m zdshm rm --stale` never "
			"remove such a name", zd_strerror(rc));
	else if (info.creator_alive)
		hint = PyUnicode_FromFormat(
			"its creator (pid %d) is alive; only a stale segment (creator "
			"dead, nothing attached) is replaced by replace_stale=True or "
			"removed by `python -m zdshm rm --stale`", (int)info.owner_pid);
	else if (info.live_attachments > 0)
		hint = PyUnicode_FromFormat(
			"its creator (pid %d) %s but %u live handle%s still "
			"attached; once %s detach, replace_stale=True or `python -m "
			"zdshm rm --stale` removes it", (int)info.owner_pid,
			info.goodbye ? "has closed it" : "is dead",
			(unsigned)info.live_attachments,
			info.live_attachments == 1 ? " is" : "s are",
			info.live_attachments == 1 ? "it" : "they");
	else
		hint = PyUnicode_FromFormat(
			"its creator (pid %d) %s: the segment is stale; "
			"replace_stale=True or `python -m zdshm rm --stale` removes it",
			(int)info.owner_pid, info.goodbye ? "has closed it" : "is dead");
	if (hint != NULL)
		zdext_raise_hint(st, -EEXIST, PyUnicode_AsUTF8(what),
				 PyUnicode_AsUTF8(hint));
	Py_XDECREF(hint);
	Py_DECREF(what);
	return NULL;
}

static PyObject *
posix_segment_create(PyObject *cls, PyObject *const *args, Py_ssize_t nargs,
		     PyObject *kwnames)
{
	static const char *const names[] = {"name", "slot_count", "slot_capacity",
					    "type_hash", "mode", "replace_stale",
					    "classes"};
	PyTypeObject *tp = (PyTypeObject *)cls;
	zdext_state *st = zdext_state_of_type(tp);
	PyObject *a[7], *policy;
	SegmentObject *self;
	const char *name;
	zd_config_t cfg;
	zd_segment_t *h = NULL;
	int rc;

	if (zdext_bind("create", args, nargs, kwnames, names, 7, 3, a) < 0)
		return NULL;
	if (a[0] == NULL) {
		PyErr_SetString(PyExc_TypeError,
				"create() needs name, and slot_count and slot_capacity "
				"or classes=[(slot_count, slot_capacity), ...]");
		return NULL;
	}
	if (zdext_name_arg(a[0], "name", &name) < 0)
		return NULL;
	if (config_from_args(a[1], a[2], a[6], a[3], a[4] ? a[4] : NULL, &cfg) < 0)
		return NULL;
	if (a[5] != NULL && !PyBool_Check(a[5])) {
		PyErr_Format(PyExc_TypeError,
			     "replace_stale must be True or False, got %.200R (%s)",
			     a[5], Py_TYPE(a[5])->tp_name);
		return NULL;
	}
	if (a[5] == Py_True)
		cfg.flags |= ZD_CREATE_REPLACE_STALE;
	/* The creator trusts its own object whatever its mode; an attach
	 * under the default policy refuses one group or other may write. */
	policy = (cfg.mode & 022) ? PyLong_FromUnsignedLong((unsigned long)geteuid())
				  : Py_NewRef(Py_None);
	if (policy == NULL)
		return NULL;
	Py_BEGIN_ALLOW_THREADS
	rc = zd_segment_create_posix(name, &cfg, &h);
	Py_END_ALLOW_THREADS
	if (rc < 0) {
		Py_DECREF(policy);
		if (rc == -EEXIST)
			return raise_exists(st, a[0], name);
		return zdext_raise_named(st, rc, "create", a[0]);
	}
	self = (SegmentObject *)segment_wrap(tp, h, a[0]);
	if (self == NULL) {
		Py_DECREF(policy);
		return NULL;
	}
	self->allow_owner = policy;
	return (PyObject *)self;
}

/* The allow_owner a pickle of the handle carries (see SegmentObject). */
static PyObject *
owner_policy_obj(const zd_attach_opts_t *opts)
{
	if (opts->flags & ZD_ATTACH_ANY_OWNER)
		return PyUnicode_FromString("any");
	if (opts->flags & ZD_ATTACH_ALLOW_UID)
		return PyLong_FromUnsignedLong(opts->allow_uid);
	return Py_NewRef(Py_None);
}

/* Attaches to name (already checked) under opts and wraps the handle; the
 * arguments are checked before, so this is the first system call.  verb
 * starts the message of an error. */
static PyObject *
attach_by_name(PyTypeObject *tp, const char *verb, PyObject *name_obj,
	       const char *name, zd_attach_opts_t *opts)
{
	zdext_state *st = zdext_state_of_type(tp);
	PyObject *policy = owner_policy_obj(opts);
	SegmentObject *self;
	zd_segment_t *h = NULL;
	int rc;

	if (policy == NULL)
		return NULL;
	Py_BEGIN_ALLOW_THREADS
	rc = zd_segment_attach_posix_opts(name, opts, &h);
	Py_END_ALLOW_THREADS
	if (rc < 0) {
		Py_DECREF(policy);
		return zdext_raise_policy(st, rc, verb, name_obj, name, opts);
	}
	self = (SegmentObject *)segment_wrap(tp, h, name_obj);
	if (self == NULL) {
		Py_DECREF(policy);
		return NULL;
	}
	self->allow_owner = policy;
	return (PyObject *)self;
}

static PyObject *
posix_segment_attach(PyObject *cls, PyObject *const *args, Py_ssize_t nargs,
		     PyObject *kwnames)
{
	static const char *const names[] = {"name", "allow_owner"};
	const char *name;
	zd_attach_opts_t opts;
	PyObject *a[2];

	if (zdext_bind("attach", args, nargs, kwnames, names, 2, 1, a) < 0)
		return NULL;
	if (a[0] == NULL) {
		PyErr_SetString(PyExc_TypeError, "attach() needs name");
		return NULL;
	}
	if (zdext_name_arg(a[0], "name", &name) < 0 ||
	    zdext_owner_arg(a[1], &opts) < 0)
		return NULL;
	return attach_by_name((PyTypeObject *)cls, "attach", a[0], name, &opts);
}

static PyObject *
anonymous_segment_new(PyTypeObject *tp, PyObject *args, PyObject *kwds)
{
	return unnamed_segment_new(tp, args, kwds, "|OO$OO:AnonymousSegment",
				   zd_segment_create_anonymous,
				   "create anonymous segment");
}

static PyObject *
anonymous_segment_attach_fd(PyObject *cls, PyObject *arg)
{
	PyTypeObject *tp = (PyTypeObject *)cls;
	zdext_state *st = zdext_state_of_type(tp);
	zd_segment_t *h = NULL;
	uint64_t fd;
	PyObject *what;
	int rc;

	if (zdext_u64_arg(arg, "fd", 0, INT_MAX, &fd) < 0)
		return NULL;
	Py_BEGIN_ALLOW_THREADS
	rc = zd_segment_attach_fd((int)fd, &h);
	Py_END_ALLOW_THREADS
	if (rc < 0) {
		what = PyUnicode_FromFormat("attach descriptor %d", (int)fd);
		if (what != NULL) {
			zdext_raise(st, rc, PyUnicode_AsUTF8(what));
			Py_DECREF(what);
		}
		return NULL;
	}
	return segment_wrap(tp, h, NULL);
}

static void
segment_dealloc(SegmentObject *self)
{
	PyTypeObject *tp = Py_TYPE(self);

	if (self->weakreflist != NULL)
		PyObject_ClearWeakRefs((PyObject *)self);
	/* Every exporter holds a reference: no view is left. */
	if (self->seg != NULL)
		segment_unmap(self);
	Py_CLEAR(self->name);
	Py_CLEAR(self->geometry);
	Py_CLEAR(self->allow_owner);
	tp->tp_free((PyObject *)self);
	Py_DECREF(tp);
}

static PyObject *
segment_repr(SegmentObject *self)
{
	const char *state = self->seg == NULL ? "closed"
			    : self->state != ZDEXT_OPEN ? "closing" : "open";

	if (self->name != NULL)
		return PyUnicode_FromFormat("<%s name=%R %U %s>",
					    Py_TYPE(self)->tp_name, self->name,
					    self->geometry, state);
	return PyUnicode_FromFormat("<%s %U %s>", Py_TYPE(self)->tp_name,
				    self->geometry, state);
}

/* --------------------------------------------------------------------------
 * Properties
 * ------------------------------------------------------------------------ */

static PyObject *
seg_get_backend(SegmentObject *self, void *Py_UNUSED(c))
{
	return PyUnicode_FromString(zdext_backend_name(self->backend));
}

static PyObject *
seg_get_slot_count(SegmentObject *self, void *Py_UNUSED(c))
{
	return PyLong_FromUnsignedLong(self->slot_count);
}

static PyObject *
seg_get_slot_capacity(SegmentObject *self, void *Py_UNUSED(c))
{
	return PyLong_FromUnsignedLongLong(self->slot_capacity);
}

static PyObject *
seg_get_slot_total_size(SegmentObject *self, void *Py_UNUSED(c))
{
	return PyLong_FromUnsignedLongLong(self->slot_total_size);
}

static PyObject *
seg_get_total_size(SegmentObject *self, void *Py_UNUSED(c))
{
	return PyLong_FromUnsignedLongLong(self->total_size);
}

static PyObject *
seg_get_type_hash(SegmentObject *self, void *Py_UNUSED(c))
{
	if (!self->has_type_hash)
		Py_RETURN_NONE;
	return PyBytes_FromStringAndSize((const char *)self->type_hash,
					 ZD_TYPE_HASH_SIZE);
}

static PyObject *
seg_get_closed(SegmentObject *self, void *Py_UNUSED(c))
{
	return PyBool_FromLong(self->state != ZDEXT_OPEN || self->seg == NULL);
}

static PyObject *
seg_get_notify_generation(SegmentObject *self, void *Py_UNUSED(c))
{
	if (zdext_segment_check(self) < 0)
		return NULL;
	return PyLong_FromUnsignedLongLong(zd_notify_generation(self->seg));
}

static PyObject *
seg_get_active_mask(SegmentObject *self, void *Py_UNUSED(c))
{
	if (zdext_segment_check(self) < 0)
		return NULL;
	return PyLong_FromUnsignedLongLong(zd_segment_active_mask(self->seg));
}

static PyObject *
seg_get_creator_alive(SegmentObject *self, void *Py_UNUSED(c))
{
	zd_segment_t *h;
	int rc;

	if (zdext_segment_check(self) < 0)
		return NULL;
	h = self->seg;
	self->inflight++;
	Py_BEGIN_ALLOW_THREADS
	rc = zd_segment_creator_alive(h);
	Py_END_ALLOW_THREADS
	self->inflight--;
	if (rc < 0)
		return zdext_raise(zdext_state_of((PyObject *)self), rc, "creator_alive");
	return PyBool_FromLong(rc);
}

static PyObject *
seg_get_name(SegmentObject *self, void *Py_UNUSED(c))
{
	if (self->name == NULL)
		Py_RETURN_NONE;
	return Py_NewRef(self->name);
}

static PyObject *
seg_get_is_creator(SegmentObject *self, void *Py_UNUSED(c))
{
	return PyBool_FromLong(self->is_creator);
}

static PyObject *
seg_get_sealed(SegmentObject *self, void *Py_UNUSED(c))
{
	if (zdext_segment_check(self) < 0)
		return NULL;
	return PyBool_FromLong(zd_segment_sealed(self->seg));
}

static PyObject *
anonymous_segment_fileno(SegmentObject *self, PyObject *Py_UNUSED(ignored))
{
	int fd;

	if (zdext_segment_check(self) < 0)
		return NULL;
	fd = zd_segment_fd(self->seg);
	if (fd < 0)
		return zdext_raise(zdext_state_of((PyObject *)self), fd, "fileno");
	return PyLong_FromLong(fd);
}

/* --------------------------------------------------------------------------
 * Low-level methods (seed parity)
 * ------------------------------------------------------------------------ */

static int
slot_arg(SegmentObject *self, PyObject *o, uint32_t *slot)
{
	uint64_t v;

	if (zdext_u64_arg(o, "slot", 0, self->slot_count - 1, &v) < 0)
		return -1;
	*slot = (uint32_t)v;
	return 0;
}

static int
reader_arg(PyObject *o, uint32_t *reader)
{
	uint64_t v;

	if (zdext_u64_arg(o, "reader", 0, ZD_READER_MAX - 1, &v) < 0)
		return -1;
	*reader = (uint32_t)v;
	return 0;
}

/* A loan's nbytes argument: absent or None -> the largest capacity (a slot
 * of the largest class); else an int no larger than the largest capacity
 * (SampleTooLargeError naming both, before anything is touched). */
int
zdext_nbytes_arg(SegmentObject *seg, PyObject *o, const char *what,
		 uint64_t *nbytes)
{
	if (o == NULL || o == Py_None) {
		*nbytes = seg->slot_capacity;
		return 0;
	}
	if (zdext_u64_arg(o, "nbytes", 0, UINT64_MAX, nbytes) < 0)
		return -1;
	if (*nbytes > seg->slot_capacity) {
		PyErr_Format(zdext_state_of((PyObject *)seg)->SampleTooLargeError,
			     "%s: a sample of %llu bytes does not fit: the largest "
			     "slot capacity is %llu bytes", what,
			     (unsigned long long)*nbytes,
			     (unsigned long long)seg->slot_capacity);
		return -1;
	}
	return 0;
}

static PyObject *
seg_slot_capacity_of(SegmentObject *self, PyObject *arg)
{
	uint64_t v;

	/* The argument first: its __index__ may close the segment. */
	if (zdext_u64_arg(arg, "slot", 0, self->slot_count - 1, &v) < 0 ||
	    zdext_segment_check(self) < 0)
		return NULL;
	return PyLong_FromUnsignedLongLong(
		zd_segment_slot_capacity_of(self->seg, (uint32_t)v));
}

static const char *const slot_state_names[] = {"free", "loaned", "committed"};

/* Bit positions of a mask, as a tuple of ints. */
static PyObject *
mask_tuple(uint64_t m)
{
	PyObject *t = PyTuple_New(__builtin_popcountll(m));
	Py_ssize_t k = 0;

	if (t == NULL)
		return NULL;
	for (; m != 0; m &= m - 1) {
		PyObject *v = PyLong_FromLong(__builtin_ctzll(m));

		if (v == NULL) {
			Py_DECREF(t);
			return NULL;
		}
		PyTuple_SET_ITEM(t, k++, v);
	}
	return t;
}

/* d[key] = v, stealing v (NULL: an exception is set, -1). */
static int
row_set(PyObject *d, const char *key, PyObject *v)
{
	int rc;

	if (v == NULL)
		return -1;
	rc = PyDict_SetItemString(d, key, v);
	Py_DECREF(v);
	return rc;
}

/* One slot of slots(), read from the core before any object is made. */
typedef struct slot_row {
	zd_slot_info_t si;
	int rc;
	int cls;
	uint64_t capacity;
} slot_row;

/* slots(): one dict per slot, a snapshot of words others keep changing.
 * Every slot is read first: making the dicts may run a collection, and a
 * finalizer may close the segment. */
static PyObject *
seg_slots(SegmentObject *self, PyObject *Py_UNUSED(ignored))
{
	PyObject *list = NULL;
	slot_row *rows;

	if (zdext_segment_check(self) < 0)
		return NULL;
	rows = PyMem_Malloc(sizeof(*rows) * self->slot_count);
	if (rows == NULL)
		return PyErr_NoMemory();
	for (uint32_t i = 0; i < self->slot_count; i++) {
		slot_row *row = &rows[i];

		row->rc = zd_slot_describe(self->seg, i, &row->si);
		if (row->rc < 0 && row->rc != -EBADMSG) {
			zdext_raise(zdext_state_of((PyObject *)self), row->rc,
				    "slots");
			goto done;
		}
		row->cls = zd_segment_class_of(self->seg, i);
		row->capacity = zd_segment_slot_capacity_of(self->seg, i);
	}
	list = PyList_New(self->slot_count);
	if (list == NULL)
		goto done;
	for (uint32_t i = 0; i < self->slot_count; i++) {
		const zd_slot_info_t si = rows[i].si;
		int rc = rows[i].rc;
		int committed = rc == 0 && si.state == 2;
		PyObject *d = PyDict_New();

		if (d == NULL ||
		    row_set(d, "slot", PyLong_FromUnsignedLong(i)) < 0 ||
		    row_set(d, "class", PyLong_FromLong(rows[i].cls)) < 0 ||
		    row_set(d, "capacity",
			    PyLong_FromUnsignedLongLong(rows[i].capacity)) < 0 ||
		    row_set(d, "state", PyUnicode_FromString(
				    rc < 0 ? "corrupt" : slot_state_names[si.state])) < 0 ||
		    row_set(d, "sn", committed ? PyLong_FromUnsignedLongLong(si.sn)
					       : Py_NewRef(Py_None)) < 0 ||
		    row_set(d, "size", committed ? PyLong_FromUnsignedLongLong(si.size)
						 : Py_NewRef(Py_None)) < 0 ||
		    row_set(d, "read_by", mask_tuple(committed ? si.read_mask : 0)) < 0 ||
		    row_set(d, "pinned_by_readers",
			    mask_tuple(rc < 0 ? 0 : si.reader_pins)) < 0 ||
		    row_set(d, "pinned_by_handles",
			    mask_tuple(rc < 0 ? 0 : si.handle_pins)) < 0 ||
		    row_set(d, "loaned_by", rc == 0 && si.loaned_by >= 0
				    ? PyLong_FromLong(si.loaned_by)
				    : Py_NewRef(Py_None)) < 0) {
			Py_XDECREF(d);
			Py_CLEAR(list);
			goto done;
		}
		PyList_SET_ITEM(list, i, d);
	}
done:
	PyMem_Free(rows);
	return list;
}

static PyObject *
seg_reserve(SegmentObject *self, PyObject *const *args, Py_ssize_t nargs,
	    PyObject *kwnames)
{
	static const char *const names[] = {"active_readers_mask", "nbytes"};
	zdext_state *st = zdext_state_of((PyObject *)self);
	PyObject *a[2];
	uint64_t mask = 0, nbytes;
	uint32_t slot;
	int rc;

	if (zdext_bind("reserve", args, nargs, kwnames, names, 2, 1, a) < 0)
		return NULL;
	if (a[0] != NULL &&
	    zdext_u64_arg(a[0], "active_readers_mask", 0, UINT64_MAX, &mask) < 0)
		return NULL;
	if (zdext_nbytes_arg(self, a[1], "reserve", &nbytes) < 0 ||
	    zdext_segment_check(self) < 0)
		return NULL;
	rc = zd_slot_reserve_size(self->seg, nbytes, mask, &slot);
	if (rc < 0)
		return zdext_raise(st, rc, "reserve");
	return zdext_loan_new(st, self, slot);
}

static PyObject *
seg_next_unread(SegmentObject *self, PyObject *arg)
{
	uint32_t reader, slot;
	int rc;

	if (reader_arg(arg, &reader) < 0 || zdext_segment_check(self) < 0)
		return NULL;
	rc = zd_slot_next_unread(self->seg, reader, &slot);
	if (rc == -EAGAIN)
		Py_RETURN_NONE;
	if (rc < 0)
		return zdext_raise(zdext_state_of((PyObject *)self), rc, "next_unread");
	return PyLong_FromUnsignedLong(slot);
}

static PyObject *
seg_read(SegmentObject *self, PyObject *arg)
{
	zdext_state *st = zdext_state_of((PyObject *)self);
	uint32_t slot;
	zd_view_t view;
	int rc;

	if (slot_arg(self, arg, &slot) < 0 || zdext_segment_check(self) < 0)
		return NULL;
	rc = zd_slot_acquire(self->seg, slot, &view);
	if (rc < 0)
		return zdext_raise(st, rc, "read");
	return zdext_sample_new(st, self, &view);
}

static PyObject *
seg_read_copy(SegmentObject *self, PyObject *arg)
{
	zdext_state *st = zdext_state_of((PyObject *)self);
	uint32_t slot;
	zd_slot_header_t first, hdr;
	PyObject *bytes = NULL, *d;
	uint64_t copied = 0;
	int rc, tries;

	if (slot_arg(self, arg, &slot) < 0 || zdext_segment_check(self) < 0)
		return NULL;
	/* Two passes: learn the size, then copy; a slot recycled in between
	 * (other sequence number or size) is read again. */
	for (tries = 0; tries < 64; tries++) {
		rc = zd_slot_read(self->seg, slot, &first, NULL, 0, NULL);
		if (rc < 0)
			return zdext_raise(st, rc, "read_copy");
		if (first.size > (uint64_t)PY_SSIZE_T_MAX) {
			return zdext_raise(st, -EBADMSG, "read_copy");
		}
		Py_XDECREF(bytes);
		bytes = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)first.size);
		if (bytes == NULL)
			return NULL;
		if (first.size >= ZDEXT_NOGIL_COPY) {
			zd_segment_t *h = self->seg;
			char *buf = PyBytes_AS_STRING(bytes);
			uint64_t len = first.size;

			self->inflight++;
			Py_BEGIN_ALLOW_THREADS
			rc = zd_slot_read(h, slot, &hdr, buf, len, &copied);
			Py_END_ALLOW_THREADS
			self->inflight--;
		} else {
			rc = zd_slot_read(self->seg, slot, &hdr,
					  PyBytes_AS_STRING(bytes), first.size,
					  &copied);
		}
		if (rc < 0) {
			Py_DECREF(bytes);
			return zdext_raise(st, rc, "read_copy");
		}
		if (hdr.sn == first.sn && hdr.size == first.size &&
		    copied == first.size)
			break;
	}
	if (tries == 64) {
		Py_DECREF(bytes);
		return zdext_raise(st, -EBUSY, "read_copy");
	}
	d = Py_BuildValue("{s:K,s:K,s:K,s:K}", "sn", (unsigned long long)hdr.sn,
			  "size", (unsigned long long)hdr.size, "commit_ns",
			  (unsigned long long)hdr.commit_ns, "read_mask",
			  (unsigned long long)hdr.read_mask);
	if (d == NULL) {
		Py_DECREF(bytes);
		return NULL;
	}
	return Py_BuildValue("(NN)", d, bytes);
}

static PyObject *
seg_mark_read(SegmentObject *self, PyObject *const *args, Py_ssize_t nargs,
	      PyObject *kwnames)
{
	static const char *const names[] = {"slot", "reader"};
	PyObject *a[2];
	uint32_t slot, reader;
	int rc;

	if (zdext_bind("mark_read", args, nargs, kwnames, names, 2, 2, a) < 0)
		return NULL;
	if (a[0] == NULL || a[1] == NULL) {
		PyErr_SetString(PyExc_TypeError, "mark_read() needs slot and reader");
		return NULL;
	}
	if (slot_arg(self, a[0], &slot) < 0 || reader_arg(a[1], &reader) < 0 ||
	    zdext_segment_check(self) < 0)
		return NULL;
	rc = zd_slot_mark_read(self->seg, slot, reader);
	if (rc < 0)
		return zdext_raise(zdext_state_of((PyObject *)self), rc, "mark_read");
	Py_RETURN_NONE;
}

static PyObject *
seg_mark_reader_disconnected(SegmentObject *self, PyObject *arg)
{
	uint32_t reader;
	int rc;

	if (reader_arg(arg, &reader) < 0 || zdext_segment_check(self) < 0)
		return NULL;
	rc = zd_slot_mark_reader_disconnected(self->seg, reader);
	if (rc < 0)
		return zdext_raise(zdext_state_of((PyObject *)self), rc,
				   "mark_reader_disconnected");
	Py_RETURN_NONE;
}

static PyObject *
seg_evict_stale(SegmentObject *self, PyObject *const *args, Py_ssize_t nargs,
		PyObject *kwnames)
{
	static const char *const names[] = {"max_age", "active_mask", "now_ns"};
	PyObject *a[3];
	uint64_t max_age, mask, now = 0;
	uint32_t evicted = 0;
	int rc;

	if (zdext_bind("evict_stale", args, nargs, kwnames, names, 3, 2, a) < 0)
		return NULL;
	if (a[0] == NULL || a[1] == NULL) {
		PyErr_SetString(PyExc_TypeError,
				"evict_stale() needs max_age and active_mask");
		return NULL;
	}
	if (zdext_seconds_arg(a[0], "max_age", 0, 0.0, &max_age) < 0 ||
	    zdext_u64_arg(a[1], "active_mask", 0, UINT64_MAX, &mask) < 0)
		return NULL;
	if (a[2] != NULL && a[2] != Py_None &&
	    zdext_u64_arg(a[2], "now_ns", 0, UINT64_MAX, &now) < 0)
		return NULL;
	if (zdext_segment_check(self) < 0)
		return NULL;
	if (a[2] != NULL && a[2] != Py_None)
		rc = zd_slot_evict_stale_at(self->seg, now, max_age, mask, &evicted);
	else
		rc = zd_slot_evict_stale(self->seg, max_age, mask, &evicted);
	if (rc < 0)
		return zdext_raise(zdext_state_of((PyObject *)self), rc, "evict_stale");
	return PyLong_FromUnsignedLong(evicted);
}

struct change_ctx {
	zd_segment_t *seg;
	uint64_t last;
};

static int
change_slice(void *p, uint64_t deadline, uint64_t spin)
{
	struct change_ctx *c = p;

	return zd_notify_wait(c->seg, c->last, deadline, spin);
}

static PyObject *
seg_wait_for_change(SegmentObject *self, PyObject *const *args,
		    Py_ssize_t nargs, PyObject *kwnames)
{
	static const char *const names[] = {"last", "timeout"};
	PyObject *a[2];
	struct change_ctx ctx;
	uint64_t timeout = UINT64_MAX;
	int rc;

	if (zdext_bind("wait_for_change", args, nargs, kwnames, names, 2, 2, a) < 0)
		return NULL;
	if (a[0] == NULL) {
		PyErr_SetString(PyExc_TypeError, "wait_for_change() needs last");
		return NULL;
	}
	if (zdext_u64_arg(a[0], "last", 0, UINT64_MAX, &ctx.last) < 0)
		return NULL;
	if (a[1] != NULL &&
	    zdext_seconds_arg(a[1], "timeout", 1, 0.0, &timeout) < 0)
		return NULL;
	if (zdext_segment_check(self) < 0)
		return NULL;
	ctx.seg = self->seg;
	rc = zdext_wait(self, change_slice, &ctx, timeout, 0, NULL);
	if (rc == 0)
		Py_RETURN_TRUE;
	if (rc == -ETIMEDOUT)
		Py_RETURN_FALSE;
	return zdext_raise(zdext_state_of((PyObject *)self), rc, "wait_for_change");
}

static PyObject *
seg_slot_state(SegmentObject *self, PyObject *arg)
{
	zdext_state *st = zdext_state_of((PyObject *)self);
	uint32_t slot;
	int rc;

	if (slot_arg(self, arg, &slot) < 0 || zdext_segment_check(self) < 0)
		return NULL;
	rc = zd_slot_state(self->seg, slot);
	switch (rc) {
	case 0: return Py_NewRef(st->str_free);
	case 1: return Py_NewRef(st->str_loaned);
	case 2: return Py_NewRef(st->str_committed);
	default:
		return zdext_raise(st, rc < 0 ? rc : -EBADMSG, "slot_state");
	}
}

static PyObject *
seg_info(SegmentObject *self, PyObject *Py_UNUSED(ignored))
{
	zd_segment_info_t info;
	zd_segment_t *h;
	uint64_t generation;
	PyObject *d;
	int rc;

	if (zdext_segment_check(self) < 0)
		return NULL;
	h = self->seg;
	self->inflight++;
	Py_BEGIN_ALLOW_THREADS
	rc = zd_segment_info(h, &info);     /* one fcntl per live entry */
	Py_END_ALLOW_THREADS
	self->inflight--;
	if (rc < 0)
		return zdext_raise(zdext_state_of((PyObject *)self), rc, "info");
	/* Read before any object is made: an allocation may run a collection,
	 * and a finalizer may close the segment. */
	generation = zd_notify_generation(h);
	d = zdext_info_dict(&info);
	if (d == NULL)
		return NULL;
	{
		PyObject *v;

		v = self->name ? Py_NewRef(self->name) : Py_NewRef(Py_None);
		if (PyDict_SetItemString(d, "name", v) < 0)
			goto fail_v;
		Py_DECREF(v);
		v = PyBool_FromLong(self->is_creator);
		if (PyDict_SetItemString(d, "is_creator", v) < 0)
			goto fail_v;
		Py_DECREF(v);
		v = PyLong_FromUnsignedLongLong(generation);
		if (v == NULL || PyDict_SetItemString(d, "notify_generation", v) < 0)
			goto fail_v;
		Py_DECREF(v);
		v = Py_BuildValue("{s:n,s:n,s:n}", "loans", self->n_loans,
				  "samples", self->n_samples, "readers",
				  self->n_readers);
		if (v == NULL || PyDict_SetItemString(d, "open_objects", v) < 0)
			goto fail_v;
		Py_DECREF(v);
		return d;
fail_v:
		Py_XDECREF(v);
		Py_DECREF(d);
		return NULL;
	}
}

static PyObject *
seg_reap(SegmentObject *self, PyObject *Py_UNUSED(ignored))
{
	zd_segment_t *h;
	uint32_t readers = 0, loans = 0;
	int rc;

	if (zdext_segment_check(self) < 0)
		return NULL;
	h = self->seg;
	self->inflight++;
	Py_BEGIN_ALLOW_THREADS
	rc = zd_segment_reap(h, &readers, &loans);
	Py_END_ALLOW_THREADS
	self->inflight--;
	if (rc < 0)
		return zdext_raise(zdext_state_of((PyObject *)self), rc, "reap");
	return Py_BuildValue("(kk)", (unsigned long)readers, (unsigned long)loans);
}

static PyObject *
seg_close(SegmentObject *self, PyObject *Py_UNUSED(ignored))
{
	if (segment_close_impl(self, 0) < 0)
		return NULL;
	Py_RETURN_NONE;
}

static PyObject *
seg_enter(SegmentObject *self, PyObject *Py_UNUSED(ignored))
{
	if (zdext_check_owner(self, "the segment") < 0)
		return NULL;
	if (zdext_segment_check(self) < 0)
		return NULL;
	return Py_NewRef(self);
}

static PyObject *
seg_exit(SegmentObject *self, PyObject *const *Py_UNUSED(args),
	 Py_ssize_t Py_UNUSED(nargs))
{
	if (segment_close_impl(self, 1) < 0)
		return NULL;
	Py_RETURN_FALSE;
}

static PyObject *
posix_segment_unlink(SegmentObject *self, PyObject *Py_UNUSED(ignored))
{
	const char *name;
	int rc;

	if (zdext_check_owner(self, "the segment") < 0)
		return NULL;
	if (self->name == NULL || zdext_name_arg(self->name, "name", &name) < 0)
		return NULL;
	Py_BEGIN_ALLOW_THREADS
	rc = zd_segment_unlink_posix(name);
	Py_END_ALLOW_THREADS
	if (rc < 0)
		return zdext_raise_named(zdext_state_of((PyObject *)self), rc, "unlink",
				   self->name);
	Py_RETURN_NONE;
}

/* --------------------------------------------------------------------------
 * Pickling and copying
 *
 * A PosixSegment pickles to "attach this name": __reduce_ex__ returns
 * (PosixSegment._reattach, (name, identity, allow_owner)).  identity holds
 * header fields no process changes after creation and that tell two
 * segments of one name apart: the creation time (CLOCK_REALTIME, ns) and
 * the creator's pid, which no two creations share, and the geometry and
 * type hash, which a reader and a writer of the other process rely on.
 * _reattach attaches like attach(name, allow_owner=...) and then compares;
 * a name that now holds another segment (removed and created again) is
 * closed again and refused with SegmentNotFoundError, as a vanished name
 * is: the segment that was pickled is not found under its name any more.
 * The pickle carries the attach's owner policy (see SegmentObject) and no
 * reader, writer or creatorship: the other process gets a handle of its
 * own, an attachment like any other.
 *
 * Every other segment refuses, as do readers, writers, loans and samples
 * (zdext_reduce_ex): a MemorySegment lives in one process, an
 * AnonymousSegment travels as a descriptor.  copy.copy and copy.deepcopy
 * refuse every segment: a copy would be a second attachment, with its own
 * locks and its own close, made by a deepcopy of whatever holds the
 * handle; like a file, a socket or an mmap, a handle is shared, not copied.
 * ------------------------------------------------------------------------ */

/* The identity fields, in the order a mismatch names them. */
static const char *const identity_keys[] = {
	"created_realtime_ns", "owner_pid", "slot_count", "slot_capacity",
	"type_hash",
};
#define IDENTITY_N (sizeof(identity_keys) / sizeof(identity_keys[0]))

/* The identity dict of an open handle: one zd_segment_info. */
static PyObject *
segment_identity(SegmentObject *self)
{
	zd_segment_info_t info;
	zd_segment_t *h = self->seg;
	PyObject *d, *th;
	size_t i;
	int rc, nonzero = 0;

	self->inflight++;
	Py_BEGIN_ALLOW_THREADS
	rc = zd_segment_info(h, &info);     /* one fcntl per live entry */
	Py_END_ALLOW_THREADS
	self->inflight--;
	if (rc < 0)
		return zdext_raise(zdext_state_of((PyObject *)self), rc,
				   "read the segment's identity");
	for (i = 0; i < ZD_TYPE_HASH_SIZE; i++)
		nonzero |= info.type_hash[i];
	th = nonzero ? PyBytes_FromStringAndSize((const char *)info.type_hash,
						 ZD_TYPE_HASH_SIZE)
		     : Py_NewRef(Py_None);
	d = PyDict_New();
	if (d == NULL) {
		Py_XDECREF(th);
		return NULL;
	}
	if (row_set(d, "created_realtime_ns",
			 PyLong_FromUnsignedLongLong(info.created_realtime_ns)) < 0 ||
	    row_set(d, "owner_pid", PyLong_FromLong(info.owner_pid)) < 0 ||
	    row_set(d, "slot_count",
			 PyLong_FromUnsignedLong(info.geo.slot_count)) < 0 ||
	    row_set(d, "slot_capacity",
			 PyLong_FromUnsignedLongLong(info.geo.slot_capacity)) < 0 ||
	    row_set(d, "type_hash", th) < 0) {
		Py_DECREF(d);
		return NULL;
	}
	return d;
}

/* TypeError naming the value unless identity is a dict of exactly the
 * identity keys with values of their types. */
static int
identity_arg(PyObject *identity)
{
	size_t i;

	if (!PyDict_Check(identity) ||
	    PyDict_GET_SIZE(identity) != (Py_ssize_t)IDENTITY_N)
		goto bad;
	for (i = 0; i < IDENTITY_N; i++) {
		PyObject *v = PyDict_GetItemString(identity, identity_keys[i]);

		if (v == NULL)
			goto bad;
		if (i == IDENTITY_N - 1) {     /* type_hash */
			if (v != Py_None && !(PyBytes_Check(v) &&
					      PyBytes_GET_SIZE(v) == ZD_TYPE_HASH_SIZE))
				goto bad;
		} else if (!PyLong_CheckExact(v)) {
			goto bad;
		}
	}
	return 0;
bad:
	PyErr_Format(PyExc_TypeError,
		     "identity must be the dict a pickled PosixSegment carries "
		     "(created_realtime_ns, owner_pid, slot_count, slot_capacity: "
		     "int; type_hash: %u bytes or None), got %.200R",
		     (unsigned)ZD_TYPE_HASH_SIZE, identity);
	return -1;
}

/* "key pickled != found" for every identity field that differs, or an
 * empty string. */
static PyObject *
identity_diff(PyObject *want, PyObject *found)
{
	PyObject *parts = PyList_New(0), *sep = NULL, *out = NULL;
	size_t i;

	if (parts == NULL)
		return NULL;
	for (i = 0; i < IDENTITY_N; i++) {
		PyObject *a = PyDict_GetItemString(want, identity_keys[i]);
		PyObject *b = PyDict_GetItemString(found, identity_keys[i]);
		PyObject *line;
		int eq;

		if (a == NULL || b == NULL) {
			PyErr_SetString(PyExc_SystemError, "identity field missing");
			goto out;
		}
		eq = PyObject_RichCompareBool(a, b, Py_EQ);
		if (eq < 0)
			goto out;
		if (eq)
			continue;
		line = PyUnicode_FromFormat("%s %R when pickled, %R now",
					    identity_keys[i], a, b);
		if (line == NULL || PyList_Append(parts, line) < 0) {
			Py_XDECREF(line);
			goto out;
		}
		Py_DECREF(line);
	}
	sep = PyUnicode_FromString(", ");
	if (sep != NULL)
		out = PyUnicode_Join(sep, parts);
out:
	Py_XDECREF(sep);
	Py_DECREF(parts);
	return out;
}

static PyObject *
posix_segment_reduce_ex(SegmentObject *self, PyObject *Py_UNUSED(protocol))
{
	PyObject *ctor, *identity, *res;

	if (zdext_check_owner(self, "the segment") < 0)
		return NULL;
	if (self->state != ZDEXT_OPEN || self->seg == NULL) {
		PyErr_Format(zdext_state_of((PyObject *)self)->ClosedError,
			     "cannot pickle the segment %R: it is closed (a pickle "
			     "carries the open segment's identity)", self->name);
		return NULL;
	}
	identity = segment_identity(self);
	if (identity == NULL)
		return NULL;
	ctor = PyObject_GetAttrString((PyObject *)Py_TYPE(self), "_reattach");
	if (ctor == NULL) {
		Py_DECREF(identity);
		return NULL;
	}
	res = Py_BuildValue("(N(ONO))", ctor, self->name, identity,
			    self->allow_owner ? self->allow_owner : Py_None);
	return res;
}

static PyObject *
posix_segment_reattach(PyObject *cls, PyObject *const *args, Py_ssize_t nargs)
{
	PyTypeObject *tp = (PyTypeObject *)cls;
	zdext_state *st = zdext_state_of_type(tp);
	zd_attach_opts_t opts;
	const char *name;
	PyObject *seg, *found, *diff, *what, *hint;
	int differs;

	if (nargs != 3) {
		PyErr_Format(PyExc_TypeError,
			     "_reattach() takes (name, identity, allow_owner), got "
			     "%zd arguments", nargs);
		return NULL;
	}
	if (zdext_name_arg(args[0], "name", &name) < 0 ||
	    identity_arg(args[1]) < 0 || zdext_owner_arg(args[2], &opts) < 0)
		return NULL;
	seg = attach_by_name(tp, "attach pickled segment", args[0], name, &opts);
	if (seg == NULL)
		return NULL;
	found = segment_identity((SegmentObject *)seg);
	diff = found ? identity_diff(args[1], found) : NULL;
	Py_XDECREF(found);
	if (diff == NULL) {
		Py_DECREF(seg);
		return NULL;
	}
	differs = PyUnicode_GET_LENGTH(diff) > 0;
	if (!differs) {
		Py_DECREF(diff);
		return seg;
	}
	/* Not the pickled segment: let go of it before raising. */
	Py_DECREF(seg);
	what = PyUnicode_FromFormat("attach pickled segment %R", args[0]);
	hint = PyUnicode_FromFormat(
		"the name now holds another segment (removed and created "
		"again): %U", diff);
	if (what != NULL && hint != NULL)
		zdext_raise_hint(st, -ENOENT, PyUnicode_AsUTF8(what),
				 PyUnicode_AsUTF8(hint));
	Py_XDECREF(what);
	Py_XDECREF(hint);
	Py_DECREF(diff);
	return NULL;
}

/* Memory and anonymous segments (PosixSegment overrides it). */
static PyObject *
segment_reduce_ex(SegmentObject *self, PyObject *Py_UNUSED(protocol))
{
	const char *advice = self->backend == ZD_BACKEND_ANONYMOUS
		? "an AnonymousSegment has no name and travels as a descriptor: "
		  "zdshm.send_segment(sock, seg) and zdshm.recv_segment(sock) on "
		  "an AF_UNIX socket, or pass_fds=[seg.fileno()] and "
		  "AnonymousSegment.attach_fd(fd) in the child; or create a "
		  "PosixSegment, which pickles"
		: "a MemorySegment lives in one process only: share it with "
		  "threads, or create a PosixSegment, which pickles (or pass its "
		  "name and call PosixSegment.attach(name) in the other process)";

	PyErr_Format(PyExc_TypeError, "cannot pickle a %s object (a handle on "
		     "shared memory of this process): %s", Py_TYPE(self)->tp_name,
		     advice);
	return NULL;
}

static PyObject *
segment_refuse_copy(SegmentObject *self)
{
	const char *second = self->backend == ZD_BACKEND_POSIX
		? "; a second handle of its own is PosixSegment.attach(seg.name)"
		: self->backend == ZD_BACKEND_ANONYMOUS
		? "; a second handle of its own is "
		  "AnonymousSegment.attach_fd(seg.fileno())"
		: "";

	PyErr_Format(PyExc_TypeError, "cannot copy a %s object (a handle on "
		     "shared memory): pass the object itself, its threads may "
		     "share it%s", Py_TYPE(self)->tp_name, second);
	return NULL;
}

static PyObject *
segment_copy(SegmentObject *self, PyObject *Py_UNUSED(ignored))
{
	return segment_refuse_copy(self);
}

static PyObject *
segment_deepcopy(SegmentObject *self, PyObject *Py_UNUSED(memo))
{
	return segment_refuse_copy(self);
}

/* --------------------------------------------------------------------------
 * Type specs
 * ------------------------------------------------------------------------ */

static PyGetSetDef segment_getset[] = {
	{"backend", (getter)seg_get_backend, NULL,
	 "'memory', 'posix' or 'anonymous'.", NULL},
	{"slot_count", (getter)seg_get_slot_count, NULL, "Number of slots.", NULL},
	{"slot_capacity", (getter)seg_get_slot_capacity, NULL,
	 "Data bytes per slot.", NULL},
	{"slot_total_size", (getter)seg_get_slot_total_size, NULL,
	 "Bytes per slot including its header and padding.", NULL},
	{"total_size", (getter)seg_get_total_size, NULL,
	 "Size of the whole segment in bytes.", NULL},
	{"type_hash", (getter)seg_get_type_hash, NULL,
	 "The 16-byte type hash, or None.", NULL},
	{"closed", (getter)seg_get_closed, NULL,
	 "True once close() or __exit__ ran.", NULL},
	{"notify_generation", (getter)seg_get_notify_generation, NULL,
	 "The current notify generation (for wait_for_change).", NULL},
	{"active_mask", (getter)seg_get_active_mask, NULL,
	 "Bit mask of the registered readers.", NULL},
	{"creator_alive", (getter)seg_get_creator_alive, NULL,
	 "True while the creator's handle is open (asks its lock: one fcntl, "
	 "no lock taken); False once it closed the segment or died.", NULL},
	{NULL, NULL, NULL, NULL, NULL},
};

static PyMethodDef segment_methods[] = {
	{"reserve", (PyCFunction)(void (*)(void))seg_reserve,
	 METH_FASTCALL | METH_KEYWORDS,
	 "reserve($self, /, active_readers_mask=0, *, nbytes=None)\n--\n\n"
	 "Loans the free slot with the lowest index of the smallest size class "
	 "that holds nbytes and has one (None: the largest class): a Loan "
	 "(NoFreeSlotError if none, SampleTooLargeError beyond the largest capacity)."},
	{"slot_capacity_of", (PyCFunction)seg_slot_capacity_of, METH_O,
	 "slot_capacity_of($self, slot, /)\n--\n\n"
	 "The data capacity of a slot (that of its size class)."},
	{"slots", (PyCFunction)seg_slots, METH_NOARGS,
	 "slots($self, /)\n--\n\n"
	 "One dict per slot, a snapshot: slot, class, capacity, state "
	 "('free', 'loaned', 'committed'), sn and size (committed, else None), "
	 "read_by (reader indices), pinned_by_readers, pinned_by_handles, "
	 "loaned_by (attachment index or None)."},
	{"next_unread", (PyCFunction)seg_next_unread, METH_O,
	 "next_unread($self, reader, /)\n--\n\n"
	 "The committed slot with the smallest sequence number not read by reader, or None."},
	{"read", (PyCFunction)seg_read, METH_O,
	 "read($self, slot, /)\n--\n\n"
	 "A Sample: zero-copy view of a committed slot; pins the slot until released."},
	{"read_copy", (PyCFunction)seg_read_copy, METH_O,
	 "read_copy($self, slot, /)\n--\n\n"
	 "Copies a committed slot: ({sn, size, commit_ns, read_mask}, bytes)."},
	{"mark_read", (PyCFunction)(void (*)(void))seg_mark_read,
	 METH_FASTCALL | METH_KEYWORDS,
	 "mark_read($self, /, slot, reader)\n--\n\nSets reader's bit in the slot's read mask."},
	{"mark_reader_disconnected", (PyCFunction)seg_mark_reader_disconnected,
	 METH_O,
	 "mark_reader_disconnected($self, reader, /)\n--\n\n"
	 "Sets reader's bit on every committed slot."},
	{"evict_stale", (PyCFunction)(void (*)(void))seg_evict_stale,
	 METH_FASTCALL | METH_KEYWORDS,
	 "evict_stale($self, /, max_age, active_mask, *, now_ns=None)\n--\n\n"
	 "Frees committed, unpinned, not fully read slots older than max_age "
	 "seconds; returns how many."},
	{"wait_for_change", (PyCFunction)(void (*)(void))seg_wait_for_change,
	 METH_FASTCALL | METH_KEYWORDS,
	 "wait_for_change($self, /, last, timeout=None)\n--\n\n"
	 "Waits until notify_generation differs from last (True) or the timeout (False)."},
	{"slot_state", (PyCFunction)seg_slot_state, METH_O,
	 "slot_state($self, slot, /)\n--\n\n"
	 "The slot's state: 'free', 'loaned' or 'committed'."},
	{"info", (PyCFunction)seg_info, METH_NOARGS,
	 "info($self, /)\n--\n\nHeader fields, counters and this handle's open objects."},
	{"reap", (PyCFunction)seg_reap, METH_NOARGS,
	 "reap($self, /)\n--\n\n"
	 "Disconnects dead readers and frees the loans of dead attachments; "
	 "returns (readers_reaped, loans_reclaimed)."},
	{"writer", (PyCFunction)(void (*)(void))zdext_segment_writer,
	 METH_FASTCALL | METH_KEYWORDS,
	 "writer($self, /, overflow='block', timeout=None, spin=0.0)\n--\n\n"
	 "A Writer with this overflow policy ('block', 'fail', 'reclaim'), "
	 "default loan timeout and spin before parking."},
	{"reader", (PyCFunction)(void (*)(void))zdext_segment_reader,
	 METH_FASTCALL | METH_KEYWORDS,
	 "reader($self, /, join_last=0, spin=0.0, *, latest=False)\n--\n\n"
	 "Registers a Reader in the segment; latest=True: each take returns "
	 "the newest sample and skips the older ones."},
	{"close", (PyCFunction)seg_close, METH_NOARGS,
	 "close($self, /)\n--\n\n"
	 "Says goodbye, discards live loans, releases samples, closes readers "
	 "and unmaps (once views of committed loans are gone); "
	 "ViewsAliveError while a live loan or a sample has views."},
	{"__enter__", (PyCFunction)seg_enter, METH_NOARGS,
	 "__enter__($self, /)\n--\n\nThe segment itself."},
	{"__exit__", (PyCFunction)(void (*)(void))seg_exit, METH_FASTCALL,
	 "__exit__($self, /, *exc_info)\n--\n\nCloses like close(), but defers the unmap while views are alive."},
	{"__reduce_ex__", (PyCFunction)segment_reduce_ex, METH_O,
	 "__reduce_ex__($self, protocol, /)\n--\n\nRefused (TypeError) but by a PosixSegment, which pickles to an "
	 "attach of its name."},
	{"__copy__", (PyCFunction)segment_copy, METH_NOARGS,
	 "__copy__($self, /)\n--\n\nRefused (TypeError): share the handle, or attach a second one."},
	{"__deepcopy__", (PyCFunction)segment_deepcopy, METH_O,
	 "__deepcopy__($self, memo, /)\n--\n\nRefused (TypeError): share the handle, or attach a second one."},
	{NULL, NULL, 0, NULL},
};

static PyMemberDef segment_members[] = {
	{"__weaklistoffset__", T_PYSSIZET, offsetof(SegmentObject, weakreflist),
	 READONLY, NULL},
	{NULL, 0, 0, 0, NULL},
};

static PyType_Slot segment_slots[] = {
	{Py_tp_doc, "Common base of MemorySegment and PosixSegment (not instantiable)."},
	{Py_tp_dealloc, segment_dealloc},
	{Py_tp_repr, segment_repr},
	{Py_tp_getset, segment_getset},
	{Py_tp_methods, segment_methods},
	{Py_tp_members, segment_members},
	{0, NULL},
};

PyType_Spec zdext_segment_spec = {
	.name = "zdshm.Segment",
	.basicsize = sizeof(SegmentObject),
	.flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE |
		 Py_TPFLAGS_DISALLOW_INSTANTIATION | Py_TPFLAGS_IMMUTABLETYPE,
	.slots = segment_slots,
};

static PyType_Slot memory_segment_slots[] = {
	{Py_tp_doc, "MemorySegment(slot_count=None, slot_capacity=None, *, type_hash=None,"
		    " classes=None)\n--\n\n"
		    "A segment on the heap, shared by the threads of this process.  "
		    "classes=[(slot_count, slot_capacity), ...] instead of slot_count "
		    "and slot_capacity: size classes, capacities increasing."},
	{Py_tp_new, memory_segment_new},
	{0, NULL},
};

PyType_Spec zdext_memory_segment_spec = {
	.name = "zdshm.MemorySegment",
	.basicsize = 0,
	.flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
	.slots = memory_segment_slots,
};

static PyGetSetDef posix_segment_getset[] = {
	{"name", (getter)seg_get_name, NULL, "The segment's name (no '/').", NULL},
	{"is_creator", (getter)seg_get_is_creator, NULL,
	 "True if this handle created the segment.", NULL},
	{NULL, NULL, NULL, NULL, NULL},
};

static PyMethodDef posix_segment_methods[] = {
	{"create", (PyCFunction)(void (*)(void))posix_segment_create,
	 METH_FASTCALL | METH_KEYWORDS | METH_CLASS,
	 "create($type, /, name, slot_count=None, slot_capacity=None, *, type_hash=None,"
	 " mode=0o600, replace_stale=False, classes=None)\n--\n\n"
	 "classes=[(slot_count, slot_capacity), ...] instead of slot_count and "
	 "slot_capacity: size classes, capacities increasing.  "
	 "Creates /dev/shm/<name> exclusively (SegmentExistsError if it exists).  "
	 "replace_stale=True first removes a stale segment under the name (its "
	 "creator dead, no live process attached); a live one is never touched."},
	{"attach", (PyCFunction)(void (*)(void))posix_segment_attach,
	 METH_FASTCALL | METH_KEYWORDS | METH_CLASS,
	 "attach($type, /, name, *, allow_owner=None)\n--\n\n"
	 "Attaches to an existing segment.  By default only an object owned by "
	 "this process's effective uid without group/other write bits is "
	 "accepted (SegmentOwnerError otherwise): anyone who may write the "
	 "object can truncate it under a reader, which then dies of SIGBUS.  "
	 "allow_owner=UID also accepts objects of that owner, whatever their "
	 "mode; allow_owner='any' accepts every owner and mode."},
	{"unlink", (PyCFunction)posix_segment_unlink, METH_NOARGS,
	 "unlink($self, /)\n--\n\nRemoves the segment's name; mappings stay valid."},
	{"__reduce_ex__", (PyCFunction)posix_segment_reduce_ex, METH_O,
	 "__reduce_ex__($self, protocol, /)\n--\n\nPickles to an attach of the name that checks the segment's identity "
	 "(creation time, creator pid, geometry, type hash) and carries the "
	 "allow_owner of this handle's attach."},
	{"_reattach", (PyCFunction)(void (*)(void))posix_segment_reattach,
	 METH_FASTCALL | METH_CLASS,
	 "_reattach($type, name, identity, allow_owner, /)\n--\n\n"
	 "Unpickles a PosixSegment: attach(name, allow_owner=allow_owner), then "
	 "SegmentNotFoundError unless the segment has the pickled identity."},
	{NULL, NULL, 0, NULL},
};

static PyType_Slot posix_segment_slots[] = {
	{Py_tp_doc, "A POSIX shared-memory segment (shm_open + mmap).  Use "
		    "PosixSegment.create() or PosixSegment.attach()."},
	{Py_tp_getset, posix_segment_getset},
	{Py_tp_methods, posix_segment_methods},
	{0, NULL},
};

PyType_Spec zdext_posix_segment_spec = {
	.name = "zdshm.PosixSegment",
	.basicsize = 0,
	.flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_DISALLOW_INSTANTIATION |
		 Py_TPFLAGS_IMMUTABLETYPE,
	.slots = posix_segment_slots,
};

static PyGetSetDef anonymous_segment_getset[] = {
	{"is_creator", (getter)seg_get_is_creator, NULL,
	 "True if this handle created the segment.", NULL},
	{"sealed", (getter)seg_get_sealed, NULL,
	 "True if the object can neither shrink nor grow (F_SEAL_SHRINK and "
	 "F_SEAL_GROW).", NULL},
	{NULL, NULL, NULL, NULL, NULL},
};

static PyMethodDef anonymous_segment_methods[] = {
	{"attach_fd", (PyCFunction)anonymous_segment_attach_fd, METH_O | METH_CLASS,
	 "attach_fd($type, fd, /)\n--\n\n"
	 "Attaches to the segment behind descriptor fd (open read-write).  fd "
	 "stays the caller's: close it when it is no longer needed."},
	{"fileno", (PyCFunction)anonymous_segment_fileno, METH_NOARGS,
	 "fileno($self, /)\n--\n\n"
	 "The descriptor to hand to another process (pass_fds, send_segment). "
	 "Owned by the segment: closed by close(); not inheritable."},
	{NULL, NULL, 0, NULL},
};

static PyType_Slot anonymous_segment_slots[] = {
	{Py_tp_doc, "AnonymousSegment(slot_count=None, slot_capacity=None, *, type_hash=None,"
		    " classes=None)\n--\n\n"
		    "A nameless segment: a memfd sealed against shrinking and growing, "
		    "shared by descriptor (fileno(), attach_fd())."},
	{Py_tp_new, anonymous_segment_new},
	{Py_tp_getset, anonymous_segment_getset},
	{Py_tp_methods, anonymous_segment_methods},
	{0, NULL},
};

PyType_Spec zdext_anonymous_segment_spec = {
	.name = "zdshm.AnonymousSegment",
	.basicsize = 0,
	.flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
	.slots = anonymous_segment_slots,
};
