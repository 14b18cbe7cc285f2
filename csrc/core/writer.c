/* writer.c — loaning under an overflow policy. */
#include "internal.h"

#define ZDI_REAP_INTERVAL_NS 50000000u  /* at most one reap per 50 ms */
#define ZDI_WAIT_SLICE_NS 100000000u    /* re-reap while blocked */

/* The oldest committed slot that no view pins, read or not, taken for this
 * handle; each active reader that had not read it gets a drop. */
static int reclaim_oldest(zd_segment_t *seg, uint64_t active, uint32_t *slot)
{
	uint64_t unread;
	int rc = zdi_take_loanable(seg, 0, slot, &unread);

	if (rc == 0 && (active & unread) != 0) {
		zdi_count_drops(seg, active & unread);
		ZDI_COUNT(seg, reclaims);
	}
	return rc;
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
