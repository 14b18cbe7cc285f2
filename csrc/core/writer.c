/* writer.c — loaning under an overflow policy. */
#include "internal.h"

#define ZDI_REAP_INTERVAL_NS 50000000u  /* at most one reap per 50 ms */
#define ZDI_WAIT_SLICE_NS 100000000u    /* re-reap while blocked */

/* The oldest committed slot that no view pins, taken for this handle; each
 * active reader that had not read it gets a drop. */
static int reclaim_oldest(zd_segment_t *seg, uint64_t active, uint32_t *slot)
{
	for (;;) {
		uint32_t best = UINT32_MAX;
		uint64_t best_sn = UINT64_MAX, best_s = 0, rm;
		struct zdi_slot_header *h;

		for (uint32_t i = 0; i < seg->slot_count; i++) {
			struct zdi_slot_header *hi = zdi_slot(seg, i);
			uint64_t s = zdi_load_acquire_u64(&hi->state);
			uint64_t sn;

			if (ZDI_ST_KIND(s) != ZDI_SLOT_COMMITTED ||
			    (zdi_load_relaxed_u64(&hi->reader_pins) |
			     zdi_load_relaxed_u64(&hi->handle_pins)) != 0)
				continue;
			sn = zdi_load_relaxed_u64(&hi->sn);
			if (best == UINT32_MAX || sn < best_sn) {
				best = i;
				best_sn = sn;
				best_s = s;
			}
		}
		if (best == UINT32_MAX)
			return -EAGAIN;
		if (zdi_recycle(seg, best, best_s) < 0)
			continue;
		h = zdi_slot(seg, best);
		rm = zdi_load_acquire_u64(&h->read_mask);
		if ((active & ~rm) != 0) {
			zdi_count_drops(seg, active & ~rm);
			ZDI_COUNT(seg, reclaims);
		}
		zdi_loan_taken(seg, best);
		*slot = best;
		return 0;
	}
}

void zdi_maybe_reap(zd_segment_t *seg, int force)
{
	uint64_t now = zd_now_ns();
	uint64_t last = zdi_load_relaxed_u64(&seg->last_reap_ns);

	if (!force && now - last < ZDI_REAP_INTERVAL_NS)
		return;
	zdi_store_relaxed_u64(&seg->last_reap_ns, now);
	(void)zd_segment_reap(seg, NULL, NULL);
}

int zd_writer_loan(zd_segment_t *seg, zd_overflow_t policy,
		   uint64_t deadline_ns, uint64_t spin_ns, uint32_t *slot)
{
	int reaped = 0;

	if (policy != ZD_OVERFLOW_BLOCK && policy != ZD_OVERFLOW_FAIL &&
	    policy != ZD_OVERFLOW_RECLAIM)
		return -EINVAL;
	if (slot == NULL)
		return -EINVAL;
	for (;;) {
		uint64_t gen = zd_notify_generation(seg);
		uint64_t active = zd_segment_active_mask(seg);
		uint64_t now, until;
		int rc;

		if (zd_slot_reserve(seg, active, slot) == 0)
			return 0;
		if (!reaped) {
			/* Dead readers or dead writers' loans may hold slots. */
			zdi_maybe_reap(seg, 0);
			reaped = 1;
			continue;
		}
		if (policy == ZD_OVERFLOW_FAIL)
			return -EAGAIN;
		if (policy == ZD_OVERFLOW_RECLAIM && reclaim_oldest(seg, active, slot) == 0)
			return 0;
		now = zd_now_ns();
		if (now >= deadline_ns)
			return -ETIMEDOUT;
		until = deadline_ns - now > ZDI_WAIT_SLICE_NS ? now + ZDI_WAIT_SLICE_NS
							       : deadline_ns;
		rc = zd_notify_wait(seg, gen, until, spin_ns);
		if (rc == -EINTR)
			return rc;
		if (rc == -ETIMEDOUT && until != deadline_ns)
			reaped = 0;     /* a quiet slice: look for the dead again */
	}
}
