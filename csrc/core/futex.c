/* futex.c — the only place that calls futex(2).  FUTEX_WAIT_BITSET takes an
 * absolute deadline on CLOCK_MONOTONIC, so a wait that is resumed after
 * EINTR never stretches its deadline. */
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "futex.h"

int zdi_futex_wait(uint32_t *word, uint32_t expected, uint64_t deadline_ns,
		   int process_private)
{
	struct timespec ts;
	struct timespec *tsp = NULL;
	int op = FUTEX_WAIT_BITSET | (process_private ? FUTEX_PRIVATE_FLAG : 0);

	if (deadline_ns != UINT64_MAX) {
		ts.tv_sec = (time_t)(deadline_ns / 1000000000u);
		ts.tv_nsec = (long)(deadline_ns % 1000000000u);
		tsp = &ts;
	}
	if (syscall(SYS_futex, word, op, expected, tsp, NULL,
		    FUTEX_BITSET_MATCH_ANY) == 0)
		return 0;
	switch (errno) {
	case ETIMEDOUT:
		return -ETIMEDOUT;
	case EINTR:
		return -EINTR;
	default: /* EAGAIN: the value already differs */
		return 0;
	}
}

void zdi_futex_wake(uint32_t *word, int process_private)
{
	int op = FUTEX_WAKE | (process_private ? FUTEX_PRIVATE_FLAG : 0);

	syscall(SYS_futex, word, op, INT_MAX, NULL, NULL, 0);
}
