/* notify.c — a futex event count on the segment's generation word.
 *
 * Modelled on the idea of Concurrency Kit's ck_ec: the generation word is
 * the event count, a separate waiter count lets a notifier skip the system
 * call when nobody sleeps, deadlines are absolute CLOCK_MONOTONIC values,
 * and a wake-up is only a hint: the caller re-checks its condition.
 *
 * Ordering (the Dekker pair; all four accesses are seq_cst):
 *   notifier: fetch_add(gen)      then load(waiters)
 *   waiter:   fetch_add(waiters)  then load(gen), then futex_wait(gen, last)
 * Either the notifier sees the waiter and wakes it, or the waiter sees the
 * new generation and does not sleep; futex_wait itself re-checks the value
 * atomically in the kernel.
 */
#include <limits.h>
#include <time.h>

#include "internal.h"

uint64_t zd_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t zd_notify_generation(const zd_segment_t *seg)
{
	return zdi_load_acquire_u32(&seg->hdr->notify_gen);
}

void zd_notify_bump(zd_segment_t *seg)
{
	zdi_fetch_add_seqcst_u32(&seg->hdr->notify_gen, 1);
	if (zdi_load_seqcst_u32(&seg->hdr->notify_waiters) != 0) {
		zdi_fetch_add_relaxed_u64(&seg->futex_wakes, 1);
		seg->ops->futex_wake(&seg->hdr->notify_gen);
	}
}

int zd_notify_wait(zd_segment_t *seg, uint64_t last, uint64_t deadline_ns,
		   uint64_t spin_ns)
{
	uint32_t *gen = &seg->hdr->notify_gen;
	uint32_t want = (uint32_t)last;
	int rc = 0;

	if (zdi_load_acquire_u32(gen) != want)
		return 0;
	if (spin_ns > 0) {
		uint64_t now = zd_now_ns();
		uint64_t end = now + spin_ns;

		if (end > deadline_ns)
			end = deadline_ns;
		for (unsigned i = 0;; i++) {
			if (zdi_load_acquire_u32(gen) != want)
				return 0;
			if ((i & 63) == 0 && zd_now_ns() >= end)
				break;
			zdi_cpu_relax();
		}
	}
	zdi_fetch_add_seqcst_u32(&seg->hdr->notify_waiters, 1);
	for (;;) {
		if (zdi_load_seqcst_u32(gen) != want)
			break;
		if (zd_now_ns() >= deadline_ns) {
			rc = -ETIMEDOUT;
			break;
		}
		zdi_fetch_add_relaxed_u64(&seg->futex_waits, 1);
		rc = seg->ops->futex_wait(gen, want, deadline_ns);
		if (rc == -EINTR)
			break;
		rc = 0;
	}
	zdi_fetch_sub_seqcst_u32(&seg->hdr->notify_waiters, 1);
	return rc;
}

int zd_notify_wait_for(zd_segment_t *seg, uint64_t last, uint64_t timeout_ns)
{
	uint64_t now = zd_now_ns();
	uint64_t deadline = timeout_ns > UINT64_MAX - now ? UINT64_MAX : now + timeout_ns;

	return zd_notify_wait(seg, last, deadline, 0);
}
