/*
 * The hardware floors of the zdshm benchmark: what the same exchange costs
 * with nothing but the kernel and the caches in the way.  One program with
 * four modes; each prints one JSON object on one line to stdout:
 *
 *   cacheline ITERS WARM PCPU CCPU   two processes (fork) bounce a counter
 *                                    through two cache lines of a shared
 *                                    anonymous mapping, spinning (pause) on
 *                                    each side
 *   futex ITERS WARM PCPU CCPU       the same with FUTEX_WAIT/FUTEX_WAKE
 *                                    (shared futexes: the waiter parks at
 *                                    once, the notifier always wakes) -- the
 *                                    kernel floor of a parked round trip
 *   memcpy SIZE ITERS                memcpy between two pre-faulted buffers
 *   pagetouch SIZE ITERS             store one byte per 4 KiB page, then load
 *                                    one byte per page, of a pre-faulted buffer
 *   check                            every mode once with tiny counts; exits 0
 *                                    only if each ran and the ping-pong child
 *                                    echoed every message (the test suite's
 *                                    self-check, not a measurement)
 *
 * PCPU/CCPU pin the measuring process and its child; -1 leaves one unpinned.
 * Round trips are timed per iteration with CLOCK_MONOTONIC in the measuring
 * process (as the Python side does with perf_counter_ns).  Exit status: 0
 * (the JSON says whether the child did its part), 1 when a resource could not
 * be had, 2 on bad arguments.
 */
#define _GNU_SOURCE
#include <linux/futex.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "stats.h"

#define PAGE 4096u

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield" ::: "memory");
#endif
}

static uint64_t tv_ns(struct timeval tv)
{
	return (uint64_t)tv.tv_sec * 1000000000u + (uint64_t)tv.tv_usec * 1000u;
}

static void usage_now(uint64_t *cpu, long *minflt)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	*cpu = tv_ns(ru.ru_utime) + tv_ns(ru.ru_stime);
	*minflt = ru.ru_minflt;
}

/* A buffer of whole pages (aligned_alloc wants a multiple of the alignment). */
static void *page_alloc(size_t size)
{
	return aligned_alloc(PAGE, (size + PAGE - 1) / PAGE * PAGE);
}

static long futex(_Atomic uint32_t *addr, int op, uint32_t val)
{
	return syscall(SYS_futex, (uint32_t *)addr, op, val, NULL, NULL, 0);
}

struct shared {
	_Alignas(64) _Atomic uint32_t ping;
	_Alignas(64) _Atomic uint32_t pong;
	_Alignas(64) _Atomic uint32_t ready;
};

/* Waits until *w == want: spinning, or parked on the futex.  The acquire load
 * pairs with the release store in post() on the other side. */
static inline void await(_Atomic uint32_t *w, uint32_t want, int parked)
{
	uint32_t v;

	while ((v = atomic_load_explicit(w, memory_order_acquire)) != want) {
		if (parked)
			futex(w, FUTEX_WAIT, v);
		else
			cpu_relax();
	}
}

/* Publishes val; the release store pairs with the acquire load in await(). */
static inline void post(_Atomic uint32_t *w, uint32_t val, int parked)
{
	atomic_store_explicit(w, val, memory_order_release);
	if (parked)
		futex(w, FUTEX_WAKE, 1);
}

/* One ping-pong run; *child_ok tells whether the child answered every ping
 * and exited cleanly.  Returns 0, or 1 when a resource could not be had. */
static int pingpong(int parked, size_t iters, size_t warm, int pcpu, int ccpu, int *child_ok)
{
	struct shared *sh;
	size_t total = warm + iters;
	uint64_t *t;
	uint64_t cpu0, cpu1;
	long flt0, flt1;
	pid_t pid;
	int status;
	struct rusage cru;

	sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sh == MAP_FAILED)
		return 1;
	t = calloc(iters + 1, sizeof *t);
	if (!t) {
		munmap(sh, sizeof *sh);
		return 1;
	}
	pid = fork();
	if (pid < 0) {
		free(t);
		munmap(sh, sizeof *sh);
		return 1;
	}
	if (pid == 0) {
		bench_pin(ccpu);
		atomic_store(&sh->ready, 1);
		for (size_t i = 1; i <= total; i++) {
			await(&sh->ping, (uint32_t)i, parked);
			post(&sh->pong, (uint32_t)i, parked);
		}
		_exit(0);
	}
	bench_pin(pcpu);
	while (atomic_load(&sh->ready) == 0)
		sched_yield();
	for (size_t i = 1; i <= warm; i++) {
		post(&sh->ping, (uint32_t)i, parked);
		await(&sh->pong, (uint32_t)i, parked);
	}
	usage_now(&cpu0, &flt0);
	t[0] = now_ns();
	for (size_t k = 0; k < iters; k++) {
		uint32_t i = (uint32_t)(warm + k + 1);

		post(&sh->ping, i, parked);
		await(&sh->pong, i, parked);
		t[k + 1] = now_ns();
	}
	usage_now(&cpu1, &flt1);
	if (wait4(pid, &status, 0, &cru) != pid) {
		status = -1;
		memset(&cru, 0, sizeof cru);
	}
	*child_ok = status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0;
	for (size_t k = 0; k < iters; k++)
		t[k] = t[k + 1] - t[k];
	printf("{\"mode\": \"%s\", \"iters\": %zu, ", parked ? "futex" : "cacheline", iters);
	bench_print_stats("rtt_ns", t, iters);
	printf(", \"parent_cpu_ns_per_msg\": %.1f, \"parent_minflt_per_msg\": %.4f, "
	       "\"child_cpu_ns_per_msg\": %.1f, \"child_ok\": %d}\n",
	       (double)(cpu1 - cpu0) / (double)iters, (double)(flt1 - flt0) / (double)iters,
	       (double)(tv_ns(cru.ru_utime) + tv_ns(cru.ru_stime)) / (double)total, *child_ok);
	free(t);
	munmap(sh, sizeof *sh);
	return 0;
}

static int copy(size_t size, size_t iters)
{
	unsigned char *src = page_alloc(size), *dst = page_alloc(size);
	uint64_t *d = calloc(iters, sizeof *d);
	int rc = 1;

	if (!src || !dst || !d)
		goto out;
	memset(src, 1, size);
	memset(dst, 2, size);
	for (int w = 0; w < 2; w++) {
		memcpy(dst, src, size);
		__asm__ __volatile__("" ::: "memory");
	}
	for (size_t k = 0; k < iters; k++) {
		uint64_t t0 = now_ns();

		memcpy(dst, src, size);
		__asm__ __volatile__("" ::: "memory");
		d[k] = now_ns() - t0;
		src[k % size] ^= 1;
	}
	printf("{\"mode\": \"memcpy\", \"size\": %zu, \"iters\": %zu, ", size, iters);
	bench_print_stats("ns", d, iters);
	printf("}\n");
	rc = 0;
out:
	free(src);
	free(dst);
	free(d);
	return rc;
}

static int touch(size_t size, size_t iters)
{
	unsigned char *buf = page_alloc(size);
	volatile unsigned char *b = buf;
	uint64_t *dw = calloc(iters, sizeof *dw), *dr = calloc(iters, sizeof *dr);
	unsigned sum = 0;
	int rc = 1;

	if (!buf || !dw || !dr)
		goto out;
	memset(buf, 1, size);
	for (size_t k = 0; k < iters + 2; k++) {
		uint64_t t0 = now_ns(), t1, t2;

		for (size_t off = 0; off < size; off += PAGE)
			b[off] = (unsigned char)k;
		t1 = now_ns();
		for (size_t off = 0; off < size; off += PAGE)
			sum += b[off];
		t2 = now_ns();
		if (k >= 2) {
			dw[k - 2] = t1 - t0;
			dr[k - 2] = t2 - t1;
		}
	}
	printf("{\"mode\": \"pagetouch\", \"size\": %zu, \"iters\": %zu, \"pages\": %zu, ",
	       size, iters, (size + PAGE - 1) / PAGE);
	bench_print_stats("write_ns", dw, iters);
	printf(", ");
	bench_print_stats("read_ns", dr, iters);
	printf(", \"checksum\": %u}\n", sum);
	rc = 0;
out:
	free(buf);
	free(dw);
	free(dr);
	return rc;
}

/* Every mode with tiny counts, unpinned: fails on a child that did not echo
 * every message, on a resource failure, or (in a sanitizer build) on anything
 * the sanitizers see. */
static int check(void)
{
	int ok_spin = 0, ok_futex = 0;

	if (pingpong(0, 200, 20, -1, -1, &ok_spin) || !ok_spin)
		return 1;
	if (pingpong(1, 200, 20, -1, -1, &ok_futex) || !ok_futex)
		return 1;
	if (copy(PAGE + 1, 10) || copy(1 << 20, 3))
		return 1;
	if (touch(PAGE + 1, 10) || touch(1 << 20, 3))
		return 1;
	return 0;
}

/* A positive count or size; 0 on anything else (the caller rejects 0). */
static size_t count_arg(const char *s)
{
	char *end;
	unsigned long long v = strtoull(s, &end, 10);

	return (*s != '\0' && *s != '-' && *end == '\0') ? (size_t)v : 0;
}

int main(int argc, char **argv)
{
	int child_ok;

	if (argc == 2 && strcmp(argv[1], "check") == 0)
		return check();
	if (argc == 6 && (strcmp(argv[1], "cacheline") == 0 || strcmp(argv[1], "futex") == 0)) {
		size_t iters = count_arg(argv[2]), warm = count_arg(argv[3]);

		if (iters > 0 && (warm > 0 || strcmp(argv[3], "0") == 0) && iters + warm < UINT32_MAX)
			return pingpong(strcmp(argv[1], "futex") == 0, iters, warm,
					atoi(argv[4]), atoi(argv[5]), &child_ok);
	}
	if (argc == 4 && (strcmp(argv[1], "memcpy") == 0 || strcmp(argv[1], "pagetouch") == 0)) {
		size_t size = count_arg(argv[2]), iters = count_arg(argv[3]);

		if (size > 0 && iters > 0)
			return strcmp(argv[1], "memcpy") == 0 ? copy(size, iters) : touch(size, iters);
	}
	fprintf(stderr, "usage: %s cacheline|futex ITERS WARM PCPU CCPU | memcpy|pagetouch SIZE ITERS"
		" | check\n", argv[0]);
	return 2;
}
