/* zdshm/reader.h — the reader registry and the take/release loop.
 *
 * A reader owns one entry of the segment's reader table; its index is its
 * bit in every read mask and in the segment's active mask.  Opening claims a
 * free entry by taking its liveness lock and CAS-ing it to ACTIVE with a new
 * epoch; closing (or the death of its process, found by zd_segment_reap)
 * disconnects it.  Cleanup of a dead reader holds that reader's liveness
 * lock, so it can never clear a new reader that reused the index.
 */
#ifndef ZDSHM_READER_H
#define ZDSHM_READER_H

#include <stdint.h>

#include "zdshm/segment.h"
#include "zdshm/slot.h"

#ifdef __cplusplus
extern "C" {
#endif

/* How often an idle reader asks whether the creator is alive (ns). */
#define ZD_CREATOR_CHECK_NS 100000000ull

/* zd_reader_open_flags: every take delivers the newest sample and marks
 * the older unread ones read (skips them). */
#define ZD_READER_LATEST 1u
#define ZD_READER_FLAGS_KNOWN ZD_READER_LATEST

/* Private to the opening handle: nothing here is shared.  A latest-value
 * reader differs only in how its own takes move its cursor (writers and
 * other processes need not know), so its mode and its skip count live
 * here, not in the segment's reader entry. */
typedef struct zd_reader {
	uint32_t index;        /* bit in the masks                           */
	uint32_t epoch;        /* entry epoch this reader was opened with    */
	uint64_t start_sn;     /* first sequence number it may receive       */
	uint32_t flags;        /* ZD_READER_*                                */
	uint32_t reserved;
	uint64_t skipped;      /* latest: samples marked read unseen (relaxed
				  fetch_add by its takes)                   */
} zd_reader_t;

typedef struct zd_reader_stats {
	uint64_t taken;        /* samples delivered                          */
	uint64_t dropped;      /* samples freed before it read them          */
	uint64_t lag;          /* committed sequence numbers not yet taken   */
	uint64_t last_sn;      /* last sequence number taken (UINT64_MAX: none) */
	uint64_t skipped;      /* samples a latest reader passed over: marked
				  read by its takes, never delivered         */
} zd_reader_stats_t;

/* Registers a reader.  join_last == 0: it receives samples committed from
 * now on.  join_last == K: it also receives the K newest samples that are
 * still held in committed slots (fewer if fewer are held).  Older committed samples are marked read
 * for it, so it never holds them hostage.
 * Returns 0, -EUSERS (all ZD_READER_MAX entries taken), -EINVAL. */
int zd_reader_open(zd_segment_t *seg, uint64_t join_last, zd_reader_t *out);

/* zd_reader_open with flags.  ZD_READER_LATEST: each take delivers the
 * newest committed sample this reader has not read (among those whose
 * predecessors are all published: it does not pass an sn still in
 * flight), and marks every older one it has not taken read, counting
 * them in zd_reader_stats_t.skipped; a sample recycled before the take
 * reaches it is the writer's drop, as for any reader.  join_last may then
 * be 0 (samples from now on) or 1 (the newest held one too): more would
 * only be skipped.  A take costs up to ring_size lookups.
 * Returns 0, -EUSERS, -EINVAL (unknown flags, or join_last > 1 with
 * ZD_READER_LATEST). */
int zd_reader_open_flags(zd_segment_t *seg, uint64_t join_last, uint32_t flags,
			 zd_reader_t *out);

/* Takes the oldest unread sample (a ZD_READER_LATEST reader: the newest,
 * skipping the older ones): pins its slot, sets the reader's read bit
 * and fills *view.  Release the view with zd_slot_release.
 * Returns 0, -EAGAIN (nothing unread), -ENOTCONN (this reader was
 * disconnected), -EPIPE (the creator said goodbye and nothing is unread),
 * -EOWNERDEAD (the creator died without a goodbye and nothing is unread),
 * -EBADMSG (a published slot was corrupt: a size beyond the capacity, or
 * this reader's pin bit set by someone else; it was dropped for this reader
 * and counted in corrupt_dropped; the next call goes on).  Every sample
 * committed before the goodbye or the death is delivered first.  Whether
 * the creator lives is asked at most once per ZD_CREATOR_CHECK_NS per
 * handle, and only when nothing is unread; once found dead it stays dead for
 * this handle.  Every retry over words that other processes can write is
 * bounded: a slot that keeps changing under the take ends it with -EAGAIN. */
int zd_reader_take(zd_segment_t *seg, zd_reader_t *r, zd_view_t *view);

/* Like zd_reader_take but waits until CLOCK_MONOTONIC deadline_ns
 * (UINT64_MAX: none), spinning up to spin_ns before parking on the futex.
 * It parks at most ZD_CREATOR_CHECK_NS at a time, so a dead creator is
 * noticed within about twice that.
 * Returns what zd_reader_take returns except -EAGAIN, plus -ETIMEDOUT and
 * -EINTR. */
int zd_reader_wait_take(zd_segment_t *seg, zd_reader_t *r, zd_view_t *view,
			uint64_t deadline_ns, uint64_t spin_ns);

/* Counters of this reader (from the shared entry). Returns 0, -ENOTCONN. */
int zd_reader_stats(const zd_segment_t *seg, const zd_reader_t *r,
		    zd_reader_stats_t *out);

/* Unregisters: clears the active bit and marks every committed slot read
 * for this index at once, so no writer waits on it; then frees the entry.
 * While a view it took is still pinned the entry (and its index) is kept
 * and -EBUSY is returned: the release of the last such view
 * (zd_slot_release) frees it, so nothing needs to be called again (a
 * second close meanwhile returns -EBUSY again; take delivers nothing new:
 * every slot is marked read).  zd_segment_close frees it in any case.
 * Returns 0, -EBUSY, -ENOTCONN (already disconnected: nothing to do). */
int zd_reader_close(zd_segment_t *seg, zd_reader_t *r);

/* zd_reader_close for every reader opened through this handle (a
 * segment's close that must keep the handle mapped while views live).
 * Returns 0. */
int zd_segment_close_readers(zd_segment_t *seg);

/* The segment's active-reader mask (acquire). */
uint64_t zd_segment_active_mask(const zd_segment_t *seg);

#ifdef __cplusplus
}
#endif
#endif
