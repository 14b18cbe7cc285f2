/* registry.c — reader and attachment entries, liveness, reaping.
 *
 * An entry (reader r or attachment a) is owned by whoever holds its
 * liveness lock; the state word only says whether it was left ACTIVE.  So:
 *   claim:   take the lock; if the entry is still ACTIVE its owner died
 *            without cleaning up: clean up now; then epoch+1, ACTIVE.
 *   release: clean up, FREE, drop the lock.
 *   reap:    for each ACTIVE entry that is not ours, try its lock; getting
 *            it proves the owner is gone: clean up, FREE, drop the lock.
 * Cleanup always runs under the lock, so it can never touch an entry that a
 * new owner has claimed (the epoch lets a handle see its entry was reused),
 * and every cleanup is the one slot sweep, zdi_forget.
 */
#include <unistd.h>

#include "internal.h"

/* ---- attachments ------------------------------------------------------ */

int zdi_attach_claim(zd_segment_t *seg)
{
	for (uint32_t a = 0; a < ZD_ATTACH_MAX; a++) {
		struct zdi_attach_entry *e = &seg->attach[a];
		uint32_t epoch;

		if (seg->ops->lock_try(seg, ZDI_LOCK_ATTACH(a)) != 0)
			continue;
		if (zdi_load_acquire_u32(&e->state) == ZDI_ENTRY_ACTIVE) {
			uint32_t n = zdi_forget(seg, UINT32_MAX, a);

			zdi_ready_clear(seg, UINT32_MAX, a);

			zdi_fetch_add_relaxed_u64(&seg->hdr->counters.loans_reclaimed, n);
		}
		epoch = zdi_load_relaxed_u32(&e->epoch) + 1u;
		zdi_store_relaxed_u32(&e->epoch, epoch);
		zdi_store_relaxed_u32((uint32_t *)&e->pid, (uint32_t)getpid());
		/* Pairs with the acquire loads of reap. */
		zdi_store_release_u32(&e->state, ZDI_ENTRY_ACTIVE);
		seg->attach_index = a;
		seg->attach_epoch = epoch & 0xffffu;
		return 0;
	}
	return -EUSERS;
}

void zdi_attach_release(zd_segment_t *seg)
{
	uint32_t a = seg->attach_index;
	uint32_t n = zdi_forget(seg, UINT32_MAX, a);

	zdi_ready_clear(seg, UINT32_MAX, a);
	zdi_fetch_add_relaxed_u64(&seg->hdr->counters.discards, n);
	zdi_store_release_u32(&seg->attach[a].state, ZDI_ENTRY_FREE);
	seg->ops->lock_release(seg, ZDI_LOCK_ATTACH(a));
	seg->attach_index = UINT32_MAX;
}

/* ---- readers ------------------------------------------------------------ */

/* Disconnects reader r: out of the active mask and every slot marked read
 * for it, so no writer waits on it any more.  Its pins are left alone: the
 * views they protect may still be alive. */
void zdi_reader_disconnect(zd_segment_t *seg, uint32_t r)
{
	uint64_t bit = zdi_bit(r);

	zdi_fetch_and_seqcst_u64(&seg->hdr->active_mask, ~bit);
	for (uint32_t i = 0; i < seg->geo.slot_count; i++)
		zdi_fetch_or_seqcst_u64(&zdi_slot(seg, i)->read_mask, bit);
	zdi_wake_space(seg);
}

/* Disconnects reader r and drops its pins (lock r held, its owner gone or
 * done), then frees the entry. */
void zdi_reader_cleanup(zd_segment_t *seg, uint32_t r)
{
	zdi_reader_disconnect(seg, r);
	zdi_ready_clear(seg, r, UINT32_MAX);
	zdi_forget(seg, r, UINT32_MAX);
	zdi_store_release_u32(&seg->readers[r].state, ZDI_ENTRY_FREE);
}

static void reader_claim(zd_segment_t *seg, uint32_t r, uint64_t join_last,
			 zd_reader_t *out)
{
	struct zdi_reader_entry *e = &seg->readers[r];
	uint32_t epoch = zdi_load_relaxed_u32(&e->epoch) + 1u;
	uint64_t next, start;

	zdi_store_relaxed_u32(&e->epoch, epoch);
	zdi_store_relaxed_u32((uint32_t *)&e->pid, (uint32_t)getpid());
	zdi_store_relaxed_u64(&e->taken, 0);
	zdi_store_relaxed_u64(&e->dropped, 0);
	zdi_store_relaxed_u64(&e->last_sn, UINT64_MAX);
	zdi_store_relaxed_u64(&e->start_sn, 0);
	/* Active first, then read next_sn: a sample that gets a sequence
	 * number >= next is committed after we count as active. */
	zdi_fetch_or_seqcst_u64(&seg->hdr->active_mask, zdi_bit(r));
	next = zdi_load_seqcst_u64(&seg->hdr->next_sn);
	start = zdi_join(seg, r, next, join_last);
	zdi_store_relaxed_u64(&e->cursor, start);
	zdi_store_release_u64(&e->start_sn, start);
	/* Pairs with the acquire loads of zdi_reader_live and zdi_needed_by. */
	zdi_store_release_u32(&e->state, ZDI_ENTRY_ACTIVE);
	zdi_wake_space(seg);    /* samples below start are not ours to wait for */
	out->index = r;
	out->epoch = epoch;
	out->start_sn = start;
}

int zd_reader_open(zd_segment_t *seg, uint64_t join_last, zd_reader_t *out)
{
	return zd_reader_open_flags(seg, join_last, 0, out);
}

int zd_reader_open_flags(zd_segment_t *seg, uint64_t join_last, uint32_t flags,
			 zd_reader_t *out)
{
	if (out == NULL || (flags & ~ZD_READER_FLAGS_KNOWN) != 0 ||
	    ((flags & ZD_READER_LATEST) && join_last > 1))
		return -EINVAL;
	/* Pass 0 looks at FREE entries; pass 1 tries ACTIVE ones whose owner
	 * may have died (their lock is free). */
	for (int pass = 0; pass < 2; pass++) {
		for (uint32_t r = 0; r < ZD_READER_MAX; r++) {
			struct zdi_reader_entry *e = &seg->readers[r];
			int active = zdi_load_acquire_u32(&e->state) == ZDI_ENTRY_ACTIVE;

			if (active != pass)
				continue;
			/* Claim r inside this handle first: the OFD lock alone
			 * cannot tell two threads of one handle apart. */
			if (zdi_fetch_or_acq_rel_u64(&seg->own_readers, zdi_bit(r)) &
			    zdi_bit(r))
				continue;
			if (seg->ops->lock_try(seg, ZDI_LOCK_READER(r)) != 0) {
				zdi_fetch_and_acq_rel_u64(&seg->own_readers, ~zdi_bit(r));
				continue;
			}
			if (zdi_load_acquire_u32(&e->state) == ZDI_ENTRY_ACTIVE) {
				zdi_reader_cleanup(seg, r);
				ZDI_COUNT(seg, readers_reaped);
			}
			reader_claim(seg, r, join_last, out);
			out->flags = flags;
			out->reserved = 0;
			out->skipped = 0;
			return 0;
		}
	}
	return -EUSERS;
}

/* ---- reap --------------------------------------------------------------- */

void zdi_maybe_reap(zd_segment_t *seg, int force)
{
	uint64_t now = zd_now_ns();
	uint64_t last = zdi_load_relaxed_u64(&seg->last_reap_ns);

	if (!force && now - last < ZDI_REAP_INTERVAL_NS)
		return;
	zdi_store_relaxed_u64(&seg->last_reap_ns, now);
	(void)zd_segment_reap(seg, NULL, NULL);
}

int zd_segment_reap(zd_segment_t *seg, uint32_t *readers_reaped,
		    uint32_t *loans_reclaimed)
{
	uint64_t own = zdi_load_acquire_u64(&seg->own_readers);
	uint32_t nr = 0, nl = 0;

	for (uint32_t r = 0; r < ZD_READER_MAX; r++) {
		if ((own & zdi_bit(r)) ||
		    zdi_load_acquire_u32(&seg->readers[r].state) != ZDI_ENTRY_ACTIVE)
			continue;
		if (seg->ops->lock_try(seg, ZDI_LOCK_READER(r)) != 0)
			continue;       /* alive */
		if (zdi_load_acquire_u32(&seg->readers[r].state) == ZDI_ENTRY_ACTIVE) {
			zdi_reader_cleanup(seg, r);
			ZDI_COUNT(seg, readers_reaped);
			nr++;
		}
		seg->ops->lock_release(seg, ZDI_LOCK_READER(r));
	}
	for (uint32_t a = 0; a < ZD_ATTACH_MAX; a++) {
		if (a == seg->attach_index ||
		    zdi_load_acquire_u32(&seg->attach[a].state) != ZDI_ENTRY_ACTIVE)
			continue;
		if (seg->ops->lock_try(seg, ZDI_LOCK_ATTACH(a)) != 0)
			continue;
		if (zdi_load_acquire_u32(&seg->attach[a].state) == ZDI_ENTRY_ACTIVE) {
			nl += zdi_forget(seg, UINT32_MAX, a);
			zdi_ready_clear(seg, UINT32_MAX, a);
			zdi_store_release_u32(&seg->attach[a].state, ZDI_ENTRY_FREE);
		}
		seg->ops->lock_release(seg, ZDI_LOCK_ATTACH(a));
	}
	/* Loans whose owner entry is gone or reused (or a corrupt owner), and
	 * FREE slots missing from the free map (a process died between the
	 * two). */
	for (uint32_t i = 0; i < seg->geo.slot_count; i++) {
		struct zdi_slot_header *h = zdi_slot(seg, i);
		uint64_t s = zdi_load_acquire_u64(&h->state);
		uint32_t a = ZDI_ST_OWNER(s);

		if (ZDI_ST_KIND(s) == ZDI_SLOT_FREE &&
		    !(zdi_load_acquire_u64(&seg->free_map.words[i / 64u]) & zdi_bit(i % 64u)))
			zdi_map_set(&seg->free_map, i);
		if (ZDI_ST_KIND(s) != ZDI_SLOT_LOANED)
			continue;
		if (a < ZD_ATTACH_MAX &&
		    zdi_load_acquire_u32(&seg->attach[a].state) == ZDI_ENTRY_ACTIVE &&
		    (zdi_load_relaxed_u32(&seg->attach[a].epoch) & 0xffffu) == ZDI_ST_EPOCH(s))
			continue;
		if (zdi_free_loan(seg, i, s) == 0)
			nl++;
	}
	if (nl > 0) {
		zdi_fetch_add_relaxed_u64(&seg->hdr->counters.loans_reclaimed, nl);
		zd_notify_bump(seg);    /* space, and a held-back delivery */
	}
	if (readers_reaped != NULL)
		*readers_reaped = nr;
	if (loans_reclaimed != NULL)
		*loans_reclaimed = nl;
	return 0;
}
