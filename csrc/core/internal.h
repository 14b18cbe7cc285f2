/* internal.h — the private handle and the helpers shared by the core files. */
#ifndef ZDSHM_INTERNAL_H
#define ZDSHM_INTERNAL_H

#include <errno.h>
#include <pthread.h>
#include <stdint.h>

#include "atomics.h"
#include "backend.h"
#include "layout.h"
#include "zdshm/zdshm.h"

/* A bitmap of slots in the segment: bit i of words[i / 64] for slot i, and
 * bit w of summary[w / 64] set whenever words[w] may be non-zero.  Both are
 * hints that the slot state words overrule (pool.c). */
struct zdi_map {
	uint64_t *words;
	uint64_t *summary;
	uint32_t nwords;
	uint32_t nsummary;
};

/* A handle.  Geometry is the private, validated copy; pointers are derived
 * from it, never from shared memory. */
struct zd_segment {
	const struct zdi_backend_ops *ops;
	uint8_t *base;
	struct zdi_segment_header *hdr;
	struct zdi_reader_entry *readers;
	struct zdi_attach_entry *attach;
	uint64_t *ring;                /* geo.ring_size entries (delivery.c) */
	struct zdi_map free_map;       /* FREE slots (pool.c)                */
	struct zdi_map old_map;        /* samples out of the ring's reach    */
	uint8_t *slots;
	uint8_t *ro_base;              /* read-only alias of the same object */
	const uint8_t *ro_slots;       /* slots in the alias: sample data    */

	zd_geometry_t geo;
	zd_class_t classes[ZD_CLASS_MAX]; /* geo.class_count, validated    */
	uint8_t *class_slots[ZD_CLASS_MAX];          /* each class's slot 0 */
	const uint8_t *class_ro_slots[ZD_CLASS_MAX]; /* same, read-only     */
	uint64_t ring_mask;            /* geo.ring_size - 1                  */
	uint32_t flags;
	uint8_t type_hash[ZD_TYPE_HASH_SIZE];
	int32_t owner_pid;
	uint32_t owner_uid;
	uint64_t created_realtime_ns;

	int creator;
	int fd;                        /* posix: the shm fd (holds the locks) */
	int share_fd;                  /* anonymous: the fd to hand on, no locks */
	int sealed;                    /* cannot shrink or grow */
	char name[ZD_NAME_MAX + 1];

	uint32_t attach_index;         /* this handle's attachment entry */
	uint32_t attach_epoch;
	uint64_t own_readers;          /* readers opened here (atomic) */
	/* Readers of own_readers closed while a view they took was still
	 * pinned (atomic): each entry is freed by the release of its last
	 * pinned view (zdi_reader_close_unpinned). */
	uint64_t closing_readers;
	uint64_t last_reap_ns;         /* rate limit of the writer's reap */
	uint64_t last_creator_check_ns; /* rate limit of the creator check */
	uint32_t creator_dead;         /* 1 once the creator was found dead */
	zd_handle_counters_t hc;       /* this handle's system calls (relaxed) */

	/* Readiness sockets of this handle (ready.c), each stored as the
	 * descriptor + 1 so that 0 (a zeroed handle) means none: the unbound
	 * socket datagrams are sent from (made on first use, by CAS), the
	 * bound socket of each of its readers, and of its attachment. */
	uint32_t ready_tx;
	uint32_t ready_rx[ZD_READER_MAX];
	uint32_t ready_space_rx;

	/* Handle pins: how many views this handle holds per slot (under
	 * pin_mu); the shared handle_pins bit is set while the count is > 0. */
	pthread_mutex_t pin_mu;
	uint32_t *pin_count;
	uint32_t *pin_version;

	uint8_t *mem_locks;            /* memory backend: liveness flags */

	/* Calls of this handle working on reader r now (take, mark read),
	 * one cache line each: a set pin bit of r on a sample r has not read
	 * is legitimate only while one of them runs (see zd_reader_take). */
	struct { uint32_t n; uint8_t pad[60]; } takers[ZD_READER_MAX];
};

/* Creation and geometry (segment.c): the geometry and the class table
 * (zeroed past n) of n class specs.  Returns 0, -EINVAL, -EOVERFLOW. */
int zdi_geometry(const zd_class_spec_t *specs, uint32_t n, zd_geometry_t *geo,
		 zd_class_t classes[ZD_CLASS_MAX]);
/* zd_config_validate, then the geometry, which must fit in size_t too.
 * Returns 0, -EINVAL, -EOVERFLOW. */
int zdi_config_geometry(const zd_config_t *cfg, zd_geometry_t *geo,
			zd_class_t classes[ZD_CLASS_MAX]);
int zdi_segment_init_handle(zd_segment_t *seg);      /* after mapping */
/* The creator fills the header of a zeroed region (and the initial ring
 * and free map) and stores the init flag last. */
void zdi_segment_write_header(zd_segment_t *seg, const zd_config_t *cfg,
			      const zd_geometry_t *geo,
			      const zd_class_t classes[ZD_CLASS_MAX]);
/* Derives every table pointer from seg->base and seg->geo. */
void zdi_derive_pointers(zd_segment_t *seg);
int zdi_header_validate(const struct zdi_segment_header *h, uint64_t real_size);
void zdi_segment_free(zd_segment_t *seg);

/* A memfd of total bytes with its space reserved (backend_memory.c).  A
 * size beyond RAM + swap is refused before posix_fallocate, which would
 * otherwise fill memory page by page (a memfd has no size limit).
 * Returns 0 and the descriptor in *fd, or -ENOSPC, -ENOMEM, -EMFILE. */
int zdi_memfd_sized(unsigned int flags, uint64_t total, int *fd);

/* The class of slot i (< geo.slot_count): the last whose first slot is
 * at or below i (one compare for a one-class segment). */
static inline uint32_t zdi_class_of(const zd_segment_t *seg, uint32_t i)
{
	uint32_t c = seg->geo.class_count - 1u;

	while (c > 0 && i < seg->classes[c].first_slot)
		c--;
	return c;
}

/* Byte offset of slot i from its class's first slot. */
static inline uint64_t zdi_slot_off(const zd_segment_t *seg, uint32_t c,
				    uint32_t i)
{
	return (uint64_t)(i - seg->classes[c].first_slot) * seg->classes[c].slot_stride;
}

static inline struct zdi_slot_header *zdi_slot(const zd_segment_t *seg,
					       uint32_t i)
{
	uint32_t c = zdi_class_of(seg, i);

	return (struct zdi_slot_header *)(seg->class_slots[c] + zdi_slot_off(seg, c, i));
}

static inline uint8_t *zdi_slot_data(const zd_segment_t *seg, uint32_t i)
{
	return (uint8_t *)zdi_slot(seg, i) + ZD_SLOT_HEADER_SIZE;
}

/* Sample data: the same bytes seen through the read-only mapping. */
static inline const uint8_t *zdi_slot_data_ro(const zd_segment_t *seg,
					      uint32_t i)
{
	uint32_t c = zdi_class_of(seg, i);

	return seg->class_ro_slots[c] + zdi_slot_off(seg, c, i) + ZD_SLOT_HEADER_SIZE;
}

static inline uint64_t zdi_capacity_of(const zd_segment_t *seg, uint32_t i)
{
	return seg->classes[zdi_class_of(seg, i)].slot_capacity;
}

static inline uint64_t zdi_bit(uint32_t i)
{
	return (uint64_t)1 << i;
}

/* The state word of a loan of this handle. */
static inline uint64_t zdi_my_loan(const zd_segment_t *seg, uint32_t version)
{
	return ZDI_ST_MAKE(ZDI_SLOT_LOANED, seg->attach_index, seg->attach_epoch,
			   version);
}

static inline uint64_t zdi_pins_of(struct zdi_slot_header *h)
{
	return zdi_load_seqcst_u64(&h->reader_pins) |
	       zdi_load_seqcst_u64(&h->handle_pins);
}

/* The state word of a live loan of this handle, or 0. */
static inline uint64_t zdi_live_loan(const zd_segment_t *seg, uint32_t slot)
{
	uint64_t s = zdi_load_acquire_u64(&zdi_slot(seg, slot)->state);

	return s == zdi_my_loan(seg, ZDI_ST_VERSION(s)) ? s : 0;
}

/* Slots (slot.c): the state machine, pins, the sweep. */
int zdi_pin(zd_segment_t *seg, uint32_t slot, uint64_t expected_state,
	    uint64_t *pins, uint64_t bit);
/* Drops a pin; when that leaves the slot reusable, wakes writers. */
void zdi_unpin(zd_segment_t *seg, uint32_t slot, uint64_t *pins, uint64_t bit);
/* COMMITTED (as expected_state) -> loaned by this handle, if no view pins
 * it (the Dekker pair at the top of slot.c).  Returns 0, -EAGAIN. */
int zdi_recycle(zd_segment_t *seg, uint32_t slot, uint64_t expected_state);
/* A loan of this handle (state as given) back to FREE, into the free map.
 * Returns 0, -ESTALE (not that loan any more). */
int zdi_free_loan(zd_segment_t *seg, uint32_t slot, uint64_t loaned);
/* The active readers (of read_by) that still need the sample sn in slot h:
 * their read bit is clear and they joined at or before sn. */
uint64_t zdi_needed_by(const zd_segment_t *seg, struct zdi_slot_header *h,
		       uint64_t sn, uint64_t read_by);
/* Sets (set != 0) or clears reader r's read bit on the sample now in the
 * slot, holding a reader pin so the bit cannot land on a later sample.
 * Returns 0, -ENODATA (not committed), -EBUSY. */
int zdi_mark_bit(zd_segment_t *seg, uint32_t slot, uint32_t r, int set);
void zdi_count_drops(zd_segment_t *seg, uint64_t unread_mask);
int zdi_view_fill(zd_segment_t *seg, uint32_t slot, uint64_t state,
		  int32_t reader, zd_view_t *view);
/* The one cleanup sweep: drops reader r's pins (r < ZD_READER_MAX), or
 * attachment a's pins and frees its loans (a < ZD_ATTACH_MAX; pass
 * UINT32_MAX for "none").  Returns the number of loans freed. */
uint32_t zdi_forget(zd_segment_t *seg, uint32_t r, uint32_t a);

/* Sets the bit of a slot in a map: word first, then summary, so a loaner
 * that clears a summary bit and re-checks the word sees it (pool.c). */
static inline void zdi_map_set(const struct zdi_map *m, uint32_t slot)
{
	uint32_t w = slot / 64u;

	zdi_fetch_or_seqcst_u64(&m->words[w], zdi_bit(slot % 64u));
	zdi_fetch_or_seqcst_u64(&m->summary[w / 64u], zdi_bit(w % 64u));
}

/* The search for a loanable slot (pool.c). */
/* Loans, among the slots lo .. hi - 1 (global indices), a FREE slot (lowest
 * index), else the held sample that is oldest among those every reader in
 * read_by no longer needs and no view pins (reclaim: among those no view
 * pins); *unread_by gets the active readers that still needed the
 * displaced sample.  Returns 0, -EAGAIN. */
int zdi_take_loanable(zd_segment_t *seg, uint64_t read_by, int reclaim,
		      uint32_t lo, uint32_t hi, uint32_t *slot,
		      uint64_t *unread_by);
/* The smallest class whose capacity holds nbytes, or -EMSGSIZE. */
int zdi_class_for(const zd_segment_t *seg, uint64_t nbytes);

/* Lookups (ring.c) and delivery (delivery.c). */
enum zdi_find {
	ZDI_FOUND,      /* *slot holds sn, committed, as *state */
	ZDI_INFLIGHT,   /* claimed, not published yet (or its writer died) */
	ZDI_GONE,       /* published and freed, or never published */
	ZDI_LOST,       /* the ring entry was reused: see the old map */
};
enum zdi_find zdi_ring_find(const zd_segment_t *seg, uint64_t sn,
			    uint32_t *slot, uint64_t *state);
/* Decides an sn the ring shows as INFLIGHT: marks it a HOLE when no slot
 * holds it (its loan was freed).  Returns ZDI_INFLIGHT, ZDI_GONE, or
 * ZDI_FOUND (committed; slot and state filled). */
enum zdi_find zdi_ring_settle(zd_segment_t *seg, uint64_t sn, uint32_t *slot,
			      uint64_t *state);
/* The commit of sn (or a HOLE mark) is about to replace the ring entry
 * `old` of sn's index: if `old` names a sample of an older lap that is still
 * held (committed, or in a recycle that may give it back), its slot's bit
 * goes into the old map, so that the sample stays findable. */
void zdi_keep_track(zd_segment_t *seg, uint64_t sn, uint64_t old);
/* The sequence number bounds of the ring window: [*lo, *hi). */
void zdi_window(const zd_segment_t *seg, uint64_t *lo, uint64_t *hi);
/* sn with its low log2(ring_size) bits cleared: its "lap". */
static inline uint64_t zdi_lap_of(const zd_segment_t *seg, uint64_t sn)
{
	return sn & ~seg->ring_mask;
}
/* Among the committed samples of the old map that the ring no longer
 * indexes (stale bits are cleared on the way), the one with the smallest
 * sn >= from that accept() takes.  Returns 0 and fills the outputs, or
 * -ENOENT. */
int zdi_old_best(const zd_segment_t *seg, uint64_t from,
		 int (*accept)(const zd_segment_t *seg, struct zdi_slot_header *h,
			       uint64_t sn, void *arg),
		 void *arg, uint32_t *slot, uint64_t *sn, uint64_t *state);
int zdi_reader_deliver(zd_segment_t *seg, uint32_t r, zd_view_t *view);
/* The take of a latest-value reader: the newest sample r has not read,
 * every older one marked read and added to *skipped (relaxed).  Returns as
 * zdi_reader_deliver. */
int zdi_reader_deliver_latest(zd_segment_t *seg, uint32_t r, zd_view_t *view,
			      uint64_t *skipped);
/* Join: the first sn a reader that wants the join_last newest held samples
 * receives, with every older held sample marked read for it and the newer
 * ones marked unread. */
uint64_t zdi_join(zd_segment_t *seg, uint32_t r, uint64_t next, uint64_t join_last);

/* Wake-ups (notify.c). */
void zdi_wake_data(zd_segment_t *seg);
void zdi_wake_space(zd_segment_t *seg);
/* Waits on one channel until its event count moves past last.  Returns 0,
 * -ETIMEDOUT, -EINTR. */
int zdi_wait(zd_segment_t *seg, struct zdi_channel *ch, uint32_t last,
	     uint64_t deadline_ns, uint64_t spin_ns);

/* Readiness (ready.c).  zdi_ready_send: the channel's armed count was
 * seen non-zero: sends to every armed entry of that channel. */
void zdi_ready_send(zd_segment_t *seg, int space);
/* Disarms entry r (or the attachment a; UINT32_MAX: none) and forgets its
 * token (cleanup of an entry). */
void zdi_ready_clear(zd_segment_t *seg, uint32_t r, uint32_t a);
/* Closes this handle's sockets of reader r / of everything. */
void zdi_ready_close_reader(zd_segment_t *seg, uint32_t r);
void zdi_ready_close_all(zd_segment_t *seg);

#define ZDI_HCOUNT(seg, field) \
	zdi_fetch_add_relaxed_u64(&(seg)->hc.field, 1)

/* Registry (registry.c). */
void zdi_reader_cleanup(zd_segment_t *seg, uint32_t r);
/* reader.c: called after a pin of reader r was dropped; when r was closed
 * with views pinned (closing_readers) and none is left, frees its entry
 * as zd_reader_close would have. */
void zdi_reader_close_unpinned(zd_segment_t *seg, uint32_t r);
void zdi_reader_disconnect(zd_segment_t *seg, uint32_t r);
int zdi_attach_claim(zd_segment_t *seg);
void zdi_attach_release(zd_segment_t *seg);
/* Reaps at most once per ZDI_REAP_INTERVAL_NS per handle. */
void zdi_maybe_reap(zd_segment_t *seg, int force);

/* Bounds of the retry loops over words other processes can write.  Every
 * retry in a correct segment means another thread or process made progress
 * (a commit, a recycle, a pin of its own) between two of our loads, so a
 * loop that needs more than this many is looking at words that keep
 * changing for no good reason: it gives up with an error code instead. */
#define ZDI_PIN_TRIES 64u               /* a pin refused as stale */
#define ZDI_LOANABLE_TRIES 64u          /* a recycle lost to a pin or a CAS */
#define ZDI_TAKE_TRIES 256u             /* a take that lost its slot */
#define ZDI_SETTLES 8u                  /* holes decided per take */
#define ZDI_INFLIGHT_SPINS 128u         /* looks at an unpublished sn */
#define ZDI_REAP_INTERVAL_NS 50000000u  /* at most one reap per 50 ms */

/* Brackets a call that may pin reader r (take, mark read).  seq_cst like
 * the pins themselves: a pin_refused (reader.c) that sees one of our pins
 * and then loads takers[r] (seq_cst) sees this call counted, unless the
 * call already set its read bit or dropped its pin and left. */
static inline void zdi_takers_enter(zd_segment_t *seg, uint32_t r)
{
	zdi_fetch_add_seqcst_u32(&seg->takers[r].n, 1);
}

static inline void zdi_takers_leave(zd_segment_t *seg, uint32_t r)
{
	zdi_fetch_sub_seqcst_u32(&seg->takers[r].n, 1);
}

/* 0 if r is an open registration of this handle (its bit in own_readers,
 * the entry ACTIVE with r's epoch), else -ENOTCONN; -EINVAL for a bad
 * index.  Pairs with the release store that activates an entry. */
static inline int zdi_reader_live(const zd_segment_t *seg, const zd_reader_t *r)
{
	const struct zdi_reader_entry *e;

	if (seg == NULL || r == NULL || r->index >= ZD_READER_MAX)
		return -EINVAL;
	e = &seg->readers[r->index];
	if (!(zdi_load_acquire_u64(&seg->own_readers) & zdi_bit(r->index)) ||
	    zdi_load_acquire_u32(&e->state) != ZDI_ENTRY_ACTIVE ||
	    zdi_load_relaxed_u32(&e->epoch) != r->epoch)
		return -ENOTCONN;
	return 0;
}

#define ZDI_COUNT(seg, field) \
	zdi_fetch_add_relaxed_u64(&(seg)->hdr->counters.field, 1)

/* Test hooks: interleaving points for the race tests of tests/c.  Only a
 * build with ZD_TEST_HOOKS defined (the hooked copy of the core that those
 * tests link) has them; the library, the extension and every other build
 * compile ZDI_TEST_HOOK to nothing.  Each hook is NULL until a test sets
 * it, and is called on the thread that reaches its point:
 *   recycle_loaned  zdi_recycle, after its CAS COMMITTED -> LOANED and
 *                   before its pin check (the slot);
 *   commit_claimed  publish, after the sn claim and before the ring entry
 *                   is written (the claimed sn);
 *   latest_pinned   a latest-value take, after it pinned its newest
 *                   sample t and before its cursor CAS (reader, t). */
#ifdef ZD_TEST_HOOKS
struct zdi_test_hooks {
	void (*recycle_loaned)(zd_segment_t *seg, uint32_t slot);
	void (*commit_claimed)(zd_segment_t *seg, uint64_t sn);
	void (*latest_pinned)(zd_segment_t *seg, uint32_t r, uint64_t t);
};
extern struct zdi_test_hooks zdi_test_hooks;   /* defined in slot.c */
#define ZDI_TEST_HOOK(name, ...)                                \
	do {                                                    \
		if (zdi_test_hooks.name != NULL)                \
			zdi_test_hooks.name(__VA_ARGS__);       \
	} while (0)
#else
#define ZDI_TEST_HOOK(name, ...) ((void)0)
#endif

#endif
