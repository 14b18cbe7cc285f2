/* zdshm/notify.h — waiting for a change without busy-polling.
 *
 * The segment has one 32-bit generation word.  Every change that can
 * unblock someone (commit, discard, release, mark read, evict, disconnect)
 * increments it; the increment makes a futex wake only when the waiter
 * count is non-zero.  A waiter captures the generation, checks its
 * condition, and calls zd_notify_wait with the captured value: a change in
 * between makes the wait return at once (no lost wake-up).  Wake-ups are
 * hints; callers re-check their condition.
 */
#ifndef ZDSHM_NOTIFY_H
#define ZDSHM_NOTIFY_H

#include <stdint.h>

#include "zdshm/segment.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The current generation (acquire). */
uint64_t zd_notify_generation(const zd_segment_t *seg);

/* Waits until the generation differs from `last` or CLOCK_MONOTONIC reaches
 * deadline_ns (UINT64_MAX: no deadline).  Spins up to spin_ns first (0: park
 * at once).  Returns 0 (changed), -ETIMEDOUT, -EINTR (a signal arrived; the
 * caller checks its signals and calls again). */
int zd_notify_wait(zd_segment_t *seg, uint64_t last, uint64_t deadline_ns,
		   uint64_t spin_ns);

/* Seed parity: wait with a relative timeout in nanoseconds. */
int zd_notify_wait_for(zd_segment_t *seg, uint64_t last, uint64_t timeout_ns);

/* Bumps the generation and wakes sleepers if any. */
void zd_notify_bump(zd_segment_t *seg);

#ifdef __cplusplus
}
#endif
#endif
