/* notify.c — two futex event counts: "a sample arrived" and "a slot came
 * free".
 *
 * Modelled on the idea of Concurrency Kit's ck_ec: each channel's word is
 * an event count, a separate waiter count lets a notifier skip the system
 * call when nobody sleeps on that channel, deadlines are absolute
 * CLOCK_MONOTONIC values, and a wake-up is only a hint: the caller
 * re-checks its condition.
 *
 * Readers sleep on the data channel, which commits and the goodbye bump;
 * writers sleep on the space channel, which everything that can make a slot
 * reusable bumps (a release, a discard, an eviction, a reap, a reader that
 * leaves).  So a commit never wakes a writer and a release never wakes a
 * reader, and with nobody asleep on a channel its notifier makes no system
 * call.
 *
 * Ordering (the Dekker pair of one channel; all four accesses seq_cst):
 *   notifier: fetch_add(gen)      then load(waiters)
 *   waiter:   fetch_add(waiters)  then load(gen), then futex_wait(gen, last)
 * Either the notifier sees the waiter and wakes it, or the waiter sees the
 * new count and does not sleep; futex_wait itself re-checks the value
 * atomically in the kernel.
 *
 * The low-level generation (zd_notify_generation) is both counts side by
 * side, so it moves on every event of either kind; zd_notify_wait sleeps on
 * both words at once (futex_waitv).
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

static void wake(zd_segment_t *seg, struct zdi_channel *ch)
{
	zdi_fetch_add_seqcst_u32(&ch->gen, 1);
	if (zdi_load_seqcst_u32(&ch->waiters) != 0) {
		ZDI_HCOUNT(seg, futex_wakes);
		seg->ops->futex_wake(&ch->gen);
	}
}

/* After the futex pair, the readiness pair (ready.c): the count was bumped
 * (seq_cst) before the armed count is loaded (seq_cst). */
void zdi_wake_data(zd_segment_t *seg)
{
	wake(seg, &seg->hdr->data);
	if (zdi_load_seqcst_u32(&seg->hdr->data.armed) != 0)
		zdi_ready_send(seg, 0);
}

void zdi_wake_space(zd_segment_t *seg)
{
	wake(seg, &seg->hdr->space);
	if (zdi_load_seqcst_u32(&seg->hdr->space.armed) != 0)
		zdi_ready_send(seg, 1);
}

/* Spins until *word != want or spin_ns (capped by the deadline) pass.
 * Returns 1 when it changed. */
static int spin_for_change(const uint32_t *w1, uint32_t want1,
			   const uint32_t *w2, uint32_t want2,
			   uint64_t spin_ns, uint64_t deadline_ns)
{
	uint64_t end = zd_now_ns() + spin_ns;

	if (end > deadline_ns)
		end = deadline_ns;
	for (unsigned i = 0;; i++) {
		if (zdi_load_acquire_u32(w1) != want1 ||
		    (w2 != NULL && zdi_load_acquire_u32(w2) != want2))
			return 1;
		if ((i & 63) == 0 && zd_now_ns() >= end)
			return 0;
		zdi_cpu_relax();
	}
}

int zdi_wait(zd_segment_t *seg, struct zdi_channel *ch, uint32_t last,
	     uint64_t deadline_ns, uint64_t spin_ns)
{
	int rc = 0;

	if (zdi_load_acquire_u32(&ch->gen) != last)
		return 0;
	if (spin_ns > 0 && spin_for_change(&ch->gen, last, NULL, 0, spin_ns,
					   deadline_ns))
		return 0;
	zdi_fetch_add_seqcst_u32(&ch->waiters, 1);
	for (;;) {
		if (zdi_load_seqcst_u32(&ch->gen) != last)
			break;
		if (zd_now_ns() >= deadline_ns) {
			rc = -ETIMEDOUT;
			break;
		}
		ZDI_HCOUNT(seg, futex_waits);
		rc = seg->ops->futex_wait(&ch->gen, last, deadline_ns);
		if (rc == -EINTR)
			break;
		rc = 0;
	}
	zdi_fetch_sub_seqcst_u32(&ch->waiters, 1);
	return rc;
}

uint64_t zd_notify_generation(const zd_segment_t *seg)
{
	return (uint64_t)zdi_load_acquire_u32(&seg->hdr->space.gen) << 32 |
	       zdi_load_acquire_u32(&seg->hdr->data.gen);
}

void zd_notify_bump(zd_segment_t *seg)
{
	zdi_wake_data(seg);
	zdi_wake_space(seg);
}

int zd_notify_wait(zd_segment_t *seg, uint64_t last, uint64_t deadline_ns,
		   uint64_t spin_ns)
{
	struct zdi_channel *d = &seg->hdr->data, *s = &seg->hdr->space;
	uint32_t want_d = (uint32_t)last, want_s = (uint32_t)(last >> 32);
	int rc = 0;

	if (zd_notify_generation(seg) != last)
		return 0;
	if (spin_ns > 0 && spin_for_change(&d->gen, want_d, &s->gen, want_s,
					   spin_ns, deadline_ns))
		return 0;
	zdi_fetch_add_seqcst_u32(&d->waiters, 1);
	zdi_fetch_add_seqcst_u32(&s->waiters, 1);
	for (;;) {
		if (zdi_load_seqcst_u32(&d->gen) != want_d ||
		    zdi_load_seqcst_u32(&s->gen) != want_s)
			break;
		if (zd_now_ns() >= deadline_ns) {
			rc = -ETIMEDOUT;
			break;
		}
		ZDI_HCOUNT(seg, futex_waits);
		rc = seg->ops->futex_wait2(&d->gen, want_d, &s->gen, want_s,
					   deadline_ns);
		if (rc == -EINTR)
			break;
		rc = 0;
	}
	zdi_fetch_sub_seqcst_u32(&s->waiters, 1);
	zdi_fetch_sub_seqcst_u32(&d->waiters, 1);
	return rc;
}

int zd_notify_wait_for(zd_segment_t *seg, uint64_t last, uint64_t timeout_ns)
{
	uint64_t now = zd_now_ns();
	uint64_t deadline = timeout_ns > UINT64_MAX - now ? UINT64_MAX : now + timeout_ns;

	return zd_notify_wait(seg, last, deadline, 0);
}
