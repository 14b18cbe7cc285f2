/* zdshm/slot.h — the low-level slot API (parity with the seeds' SlotBackend).
 *
 * Reader indices here are raw bit positions 0..ZD_READER_MAX-1 chosen by the
 * caller; the registry in zdshm/reader.h hands them out safely.  A slot is
 * free for reserve when it is FREE, or COMMITTED with no view pinning it and
 * no reader of active_mask needing it: its read bit is set, or it is a
 * registered reader that joined after the sample.
 */
#ifndef ZDSHM_SLOT_H
#define ZDSHM_SLOT_H

#include <stddef.h>
#include <stdint.h>

#include "zdshm/segment.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A pinned, zero-copy view of a committed slot.  While it is held the slot
 * cannot be recycled, evicted or reclaimed. */
typedef struct zd_view {
	uint32_t slot;
	uint32_t version;          /* slot version the pin was taken at  */
	int32_t reader;            /* pinning reader index, or -1: the
				      handle pinned it (zd_slot_acquire)  */
	uint32_t reserved;
	uint64_t sn;               /* sequence number                     */
	uint64_t size;             /* sample bytes, <= slot capacity      */
	uint64_t commit_ns;        /* CLOCK_MONOTONIC at commit           */
	const void *data;          /* size bytes                          */
	const void *meta;          /* ZD_SLOT_META_SIZE bytes             */
} zd_view_t;

/* Header of a committed slot, as copied by zd_slot_read. */
typedef struct zd_slot_header {
	uint64_t sn;
	uint64_t size;
	uint64_t commit_ns;
	uint64_t read_mask;
} zd_slot_header_t;

/* Loans a slot for this handle: the FREE slot with the lowest index, or
 * else the free committed slot with the oldest sample (so the newest
 * samples stay held).  The oldest is looked for from the ring's tail up to
 * the first sample a registered reader still needs (it needs every later
 * one too), or, once zd_slot_mark_read has marked a sample for a registered
 * reader out of order, through the whole ring.  Returns 0, -EAGAIN (no free
 * slot). */
int zd_slot_reserve(zd_segment_t *seg, uint64_t active_mask, uint32_t *slot);

/* The same for a loan of nbytes: in the smallest size class that holds
 * nbytes and has a loanable slot, else the next larger one, and so on
 * (zd_slot_reserve asks for the largest capacity: the largest class).
 * Returns 0, -EAGAIN, -EMSGSIZE (nbytes > the largest capacity). */
int zd_slot_reserve_size(zd_segment_t *seg, uint64_t nbytes,
			 uint64_t active_mask, uint32_t *slot);

/* One slot as seen now (for diagnostics; may be stale at once). */
typedef struct zd_slot_info {
	uint32_t slot;
	uint32_t class_index;
	int32_t state;             /* 0 FREE, 1 LOANED, 2 COMMITTED          */
	int32_t loaned_by;         /* LOANED: the attachment entry, else -1  */
	uint64_t capacity;
	uint64_t sn;               /* COMMITTED: its sequence number, else
				      UINT64_MAX                            */
	uint64_t size;             /* COMMITTED: sample bytes, else 0        */
	uint64_t read_mask;        /* COMMITTED: readers that read it        */
	uint64_t reader_pins;      /* readers holding a view of it           */
	uint64_t handle_pins;      /* attachments holding a view of it       */
} zd_slot_info_t;

/* Describes a slot.  Returns 0, -ERANGE, -EBADMSG (no valid state). */
int zd_slot_describe(const zd_segment_t *seg, uint32_t slot,
		     zd_slot_info_t *out);

/* Writable data pointer and capacity, and the meta area, of a live loan of
 * this handle.  Valid until commit or discard.  meta may be NULL.
 * Returns 0, -ERANGE, -ESTALE. */
int zd_slot_data_ptr(zd_segment_t *seg, uint32_t slot, void **data,
		     uint64_t *capacity, void **meta);

/* Copies len bytes in and publishes them: sn, size, commit time, read mask 0,
 * the ring entry, then the state word (release).  *sn may be NULL.
 * Returns 0, -ERANGE, -ESTALE, -EMSGSIZE (the loan stays live), -EOVERFLOW
 * (the segment's sequence numbers are used up: the next would be
 * UINT64_MAX, which means "none"; the loan stays live). */
int zd_slot_commit(zd_segment_t *seg, uint32_t slot, const void *bytes,
		   uint64_t len, uint64_t *sn);

/* Publishes len bytes already written through zd_slot_data_ptr (no copy).
 * Returns 0, -ERANGE, -ESTALE, -EMSGSIZE, -EOVERFLOW (the loan stays live). */
int zd_slot_commit_in_place(zd_segment_t *seg, uint32_t slot, uint64_t len,
			    uint64_t *sn);

/* Ends a loan without publishing; the slot becomes FREE.
 * Returns 0, -ERANGE, -ESTALE. */
int zd_slot_discard(zd_segment_t *seg, uint32_t slot);

/* Pins a committed slot and describes it (zero-copy read).
 * Returns 0, -ERANGE, -ENODATA, -EBUSY (this handle holds UINT32_MAX views
 * of it, or its state word kept changing), -EBADMSG (size > capacity). */
int zd_slot_acquire(zd_segment_t *seg, uint32_t slot, zd_view_t *view);

/* Drops the pin taken by zd_slot_acquire / zd_reader_take.  The release
 * of the last view of a reader closed while it was pinned frees that
 * reader's entry (see zd_reader_close).
 * Returns 0, -ERANGE, -ESTALE (the view was already released). */
int zd_slot_release(zd_segment_t *seg, const zd_view_t *view);

/* Copies the header and up to buflen sample bytes of a committed slot.
 * *copied gets the number of bytes copied (min(size, buflen)); it may be NULL.
 * Returns 0, -ERANGE, -ENODATA, -EBUSY, -EBADMSG. */
int zd_slot_read(zd_segment_t *seg, uint32_t slot, zd_slot_header_t *hdr,
		 void *buf, uint64_t buflen, uint64_t *copied);

/* The committed slot with the smallest sequence number whose read bit for
 * `reader` is clear (none while an older commit is still in flight).
 * Returns 0, -EAGAIN (none), -ERANGE (reader index). */
int zd_slot_next_unread(zd_segment_t *seg, uint32_t reader, uint32_t *slot);

/* Sets the reader's bit in the slot's read mask.  Returns 0, -ERANGE,
 * -ENODATA (slot not committed), -EBUSY (its state word kept changing). */
int zd_slot_mark_read(zd_segment_t *seg, uint32_t slot, uint32_t reader);

/* Sets the reader's bit on every committed slot (the reader is gone).
 * Returns 0, -ERANGE. */
int zd_slot_mark_reader_disconnected(zd_segment_t *seg, uint32_t reader);

/* Frees every committed, not fully read (against active_mask), unpinned slot
 * committed at least max_age_ns ago.  Counts one drop for each active reader
 * that had not read it.  *evicted may be NULL.  Returns 0. */
int zd_slot_evict_stale(zd_segment_t *seg, uint64_t max_age_ns,
			uint64_t active_mask, uint32_t *evicted);

/* Same, with "now" supplied by the caller (CLOCK_MONOTONIC ns): for tests
 * and models with a controllable clock. */
int zd_slot_evict_stale_at(zd_segment_t *seg, uint64_t now_ns,
			   uint64_t max_age_ns, uint64_t active_mask,
			   uint32_t *evicted);

/* Kind of a slot right now: 0 FREE, 1 LOANED, 2 COMMITTED; -ERANGE,
 * -EBADMSG (the state word holds no valid kind).
 * For tests and diagnostics only: the answer may be stale at once. */
int zd_slot_state(const zd_segment_t *seg, uint32_t slot);

/* CLOCK_MONOTONIC in nanoseconds. */
uint64_t zd_now_ns(void);

#ifdef __cplusplus
}
#endif
#endif
