/* futex.h — futex wait/wake with absolute CLOCK_MONOTONIC deadlines. */
#ifndef ZDSHM_FUTEX_H
#define ZDSHM_FUTEX_H

#include <stdint.h>

/* Returns 0 (woken, or *word != expected), -ETIMEDOUT, -EINTR. */
int zdi_futex_wait(uint32_t *word, uint32_t expected, uint64_t deadline_ns,
		   int process_private);
void zdi_futex_wake(uint32_t *word, int process_private);
/* Sleeps while *a == ea and *b == eb (futex_waitv, Linux 5.16); where the
 * kernel lacks it, sleeps on a alone for at most 1 ms (the caller loops).
 * Returns 0, -ETIMEDOUT, -EINTR. */
int zdi_futex_wait2(uint32_t *a, uint32_t ea, uint32_t *b, uint32_t eb,
		    uint64_t deadline_ns, int process_private);

#endif
