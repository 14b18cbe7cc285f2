/* zdshm/notify.h — waiting for a change without busy-polling.
 *
 * The segment has two 32-bit event counts: data (a commit, the goodbye)
 * and space (a release that leaves a slot reusable, a discard, a mark read,
 * an eviction, a reap, a reader that leaves).  The generation is both side
 * by side (space in the high half), so it changes on every change that can
 * unblock someone; an increment makes a futex wake only when someone sleeps
 * on that count.  A waiter captures the generation, checks its condition,
 * and calls zd_notify_wait with the captured value: a change in between
 * makes the wait return at once (no lost wake-up).  Wake-ups are hints;
 * callers re-check their condition.  (zd_reader_wait_take sleeps on the
 * data count alone, zd_writer_loan on the space count alone.)
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
 * deadline_ns (UINT64_MAX: no deadline), sleeping on both counts at once
 * (futex_waitv; on a kernel without it, in slices of 1 ms).  Spins up to spin_ns first (0: park
 * at once).  Returns 0 (changed), -ETIMEDOUT, -EINTR (a signal arrived; the
 * caller checks its signals and calls again). */
int zd_notify_wait(zd_segment_t *seg, uint64_t last, uint64_t deadline_ns,
		   uint64_t spin_ns);

/* Seed parity: wait with a relative timeout in nanoseconds. */
int zd_notify_wait_for(zd_segment_t *seg, uint64_t last, uint64_t timeout_ns);

/* Bumps both counts and wakes sleepers if any. */
void zd_notify_bump(zd_segment_t *seg);

#ifdef __cplusplus
}
#endif
#endif
