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

#ifndef SYS_futex_waitv
#define SYS_futex_waitv 449
#endif

static uint64_t monotonic_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* The absolute deadline as a timespec, or NULL for none (UINT64_MAX). */
static struct timespec *deadline_ts(uint64_t deadline_ns, struct timespec *ts)
{
	if (deadline_ns == UINT64_MAX)
		return NULL;
	ts->tv_sec = (time_t)(deadline_ns / 1000000000u);
	ts->tv_nsec = (long)(deadline_ns % 1000000000u);
	return ts;
}

/* A failed wait's errno as our result: ETIMEDOUT, EINTR, or 0 (EAGAIN: a
 * value already differs); ENOSYS is returned as -ENOSYS. */
static int wait_errno(void)
{
	switch (errno) {
	case ETIMEDOUT:
		return -ETIMEDOUT;
	case EINTR:
		return -EINTR;
	case ENOSYS:
		return -ENOSYS;
	default:
		return 0;
	}
}

int zdi_futex_wait(uint32_t *word, uint32_t expected, uint64_t deadline_ns,
		   int process_private)
{
	struct timespec ts;
	int op = FUTEX_WAIT_BITSET | (process_private ? FUTEX_PRIVATE_FLAG : 0);

	if (syscall(SYS_futex, word, op, expected, deadline_ts(deadline_ns, &ts),
		    NULL, FUTEX_BITSET_MATCH_ANY) == 0)
		return 0;
	return wait_errno();
}

void zdi_futex_wake(uint32_t *word, int process_private)
{
	int op = FUTEX_WAKE | (process_private ? FUTEX_PRIVATE_FLAG : 0);

	syscall(SYS_futex, word, op, INT_MAX, NULL, NULL, 0);
}

int zdi_futex_wait2(uint32_t *a, uint32_t ea, uint32_t *b, uint32_t eb,
		    uint64_t deadline_ns, int process_private)
{
	static int no_waitv;
	struct futex_waitv w[2];
	struct timespec ts;
	uint32_t flags = FUTEX_32 | (process_private ? FUTEX_PRIVATE_FLAG : 0);
	uint64_t slice;
	int rc;

	if (!__atomic_load_n(&no_waitv, __ATOMIC_RELAXED)) {
		w[0] = (struct futex_waitv){.val = ea, .uaddr = (uintptr_t)a, .flags = flags};
		w[1] = (struct futex_waitv){.val = eb, .uaddr = (uintptr_t)b, .flags = flags};
		if (syscall(SYS_futex_waitv, w, 2u, 0u, deadline_ts(deadline_ns, &ts),
			    CLOCK_MONOTONIC) >= 0)
			return 0;
		rc = wait_errno();
		if (rc != -ENOSYS)
			return rc;
		__atomic_store_n(&no_waitv, 1, __ATOMIC_RELAXED);
	}
	slice = monotonic_ns() + 1000000u;
	if (__atomic_load_n(b, __ATOMIC_SEQ_CST) != eb)
		return 0;
	if (zdi_futex_wait(a, ea, slice < deadline_ns ? slice : deadline_ns,
			   process_private) == -EINTR)
		return -EINTR;
	return monotonic_ns() >= deadline_ns ? -ETIMEDOUT : 0;
}
