/* zdshm/writer.h — loaning a slot under an overflow policy.
 *
 * The active-reader mask is taken from the registry, so a slot is free when
 * every registered reader has read it.  With no registered reader every
 * committed, unpinned slot is free.
 */
#ifndef ZDSHM_WRITER_H
#define ZDSHM_WRITER_H

#include <stdint.h>

#include "zdshm/segment.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum zd_overflow {
	ZD_OVERFLOW_BLOCK = 0,   /* wait for a free slot until the deadline   */
	ZD_OVERFLOW_FAIL = 1,    /* -EAGAIN at once                           */
	ZD_OVERFLOW_RECLAIM = 2, /* take the oldest committed slot no view
				    pins; each active reader that had not
				    read it gets one drop counted            */
} zd_overflow_t;

/* Loans a slot for this handle that holds nbytes: of the smallest size
 * class whose capacity is >= nbytes and that has a loanable slot, trying
 * each larger class in turn (never a smaller one).  When no class that fits
 * has one, the segment is reaped (dead readers and dead writers' loans),
 * then the policy applies to all the classes that fit: BLOCK waits for a
 * slot in any of them, RECLAIM takes the oldest unpinned sample among them
 * (and waits like BLOCK when every such slot is loaned or pinned).
 * Returns 0, -EINVAL (policy), -EMSGSIZE (nbytes > the largest capacity,
 * before anything is touched), -EAGAIN (FAIL), -ETIMEDOUT, -EINTR. */
int zd_writer_loan_size(zd_segment_t *seg, uint64_t nbytes,
			zd_overflow_t policy, uint64_t deadline_ns,
			uint64_t spin_ns, uint32_t *slot);

/* zd_writer_loan_size for the largest capacity: a slot of the largest
 * class (the only class of a one-class segment). */
int zd_writer_loan(zd_segment_t *seg, zd_overflow_t policy,
		   uint64_t deadline_ns, uint64_t spin_ns, uint32_t *slot);

#ifdef __cplusplus
}
#endif
#endif
