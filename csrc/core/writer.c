/* writer.c — loaning under an overflow policy. */
#include "internal.h"

#define ZDI_WAIT_SLICE_NS 100000000u    /* re-reap while blocked */

/* The oldest held sample that no view pins, read or not, among the slots
 * of class c and every larger class, taken for this handle; each active
 * reader that still needed it gets a drop. */
static int reclaim_oldest(zd_segment_t *seg, uint32_t c, uint32_t *slot)
{
	uint64_t unread;
	int rc = zdi_take_loanable(seg, 0, 1, seg->classes[c].first_slot,
				   seg->geo.slot_count, slot, &unread);

	if (rc == 0 && unread != 0) {
		zdi_count_drops(seg, unread);
		ZDI_COUNT(seg, reclaims);
	}
	return rc;
}

int zd_writer_loan(zd_segment_t *seg, zd_overflow_t policy,
		   uint64_t deadline_ns, uint64_t spin_ns, uint32_t *slot)
{
	if (seg == NULL)
		return -EINVAL;
	return zd_writer_loan_size(seg, seg->geo.slot_capacity, policy,
				   deadline_ns, spin_ns, slot);
}

int zd_writer_loan_size(zd_segment_t *seg, uint64_t nbytes,
			zd_overflow_t policy, uint64_t deadline_ns,
			uint64_t spin_ns, uint32_t *slot)
{
	int reaped = 0, c;

	if (policy != ZD_OVERFLOW_BLOCK && policy != ZD_OVERFLOW_FAIL &&
	    policy != ZD_OVERFLOW_RECLAIM)
		return -EINVAL;
	if (seg == NULL || slot == NULL)
		return -EINVAL;
	c = zdi_class_for(seg, nbytes);
	if (c < 0)
		return c;       /* -EMSGSIZE before anything is touched */
	for (;;) {
		/* Writers sleep on the space channel only (notify.c). */
		uint32_t gen = zdi_load_acquire_u32(&seg->hdr->space.gen);
		uint64_t active = zd_segment_active_mask(seg);
		uint64_t now, until;
		int rc;

		if (zd_slot_reserve_size(seg, nbytes, active, slot) == 0)
			return 0;
		if (!reaped) {
			/* Dead readers or dead writers' loans may hold slots. */
			zdi_maybe_reap(seg, 0);
			reaped = 1;
			continue;
		}
		if (policy == ZD_OVERFLOW_FAIL)
			return -EAGAIN;
		if (policy == ZD_OVERFLOW_RECLAIM && reclaim_oldest(seg, (uint32_t)c, slot) == 0)
			return 0;
		now = zd_now_ns();
		if (now >= deadline_ns)
			return -ETIMEDOUT;
		until = deadline_ns - now > ZDI_WAIT_SLICE_NS ? now + ZDI_WAIT_SLICE_NS
							       : deadline_ns;
		rc = zdi_wait(seg, &seg->hdr->space, gen, until, spin_ns);
		if (rc == -EINTR)
			return rc;
		if (rc == -ETIMEDOUT && until != deadline_ns)
			reaped = 0;     /* a quiet slice: look for the dead again */
	}
}
