/*
 * The zdshm C core measured without Python: the floor between the kernel
 * (floor.c) and the Python binding.  Each mode prints one JSON object on one
 * line to stdout:
 *
 *   pairs ROUNDS memory|posix SLOTS
 *       in one process, ROUNDS batches of SLOTS loan+commit then SLOTS
 *       take+release (one reader, 64-byte slots); ns per pair of each kind
 *   pingpong ITERS WARM SPIN_NS SIZE PCPU CCPU
 *       the ping-pong round trip through two posix segments (one per
 *       direction, 4 slots of SIZE bytes), the child echoing every message;
 *       readers parked (SPIN_NS 0) or spinning up to SPIN_NS before parking
 *   check
 *       both modes once with tiny counts, on both backends; exits 0 only if
 *       every call succeeded and the child echoed every message (the test
 *       suite's self-check, not a measurement)
 *
 * PCPU/CCPU pin the measuring process and its child; -1 leaves one unpinned.
 * Exit status: 0, 1 when a resource could not be had, 2 on bad arguments,
 * 3 when a core call failed (the call and its error go to stderr).  Posix
 * segments are named zdbench-core-<pid>-* (check: zdtest-bench-core-<pid>-*)
 * and unlinked before exit.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "zdshm/zdshm.h"

#include "stats.h"

#define CHECK(x) do { int rc_ = (x); if (rc_ != 0) { \
	fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #x, zd_strerror(rc_)); \
	exit(3); } } while (0)

/* Prefix of the posix segment names; the check mode uses the test suite's
 * prefix, so a segment it left behind fails the suite's /dev/shm check. */
static const char *name_prefix = "zdbench-core";

/* loan+commit and take+release pairs in one process */
static int pairs(size_t rounds, int posix, uint32_t slots)
{
	zd_config_t cfg;
	zd_segment_t *seg;
	zd_reader_t r;
	uint64_t tl = 0, tt = 0;
	char name[64];

	memset(&cfg, 0, sizeof cfg);
	cfg.slot_count = slots;
	cfg.slot_capacity = 64;
	if (posix) {
		snprintf(name, sizeof name, "%s-%d-pairs", name_prefix, (int)getpid());
		CHECK(zd_segment_create_posix(name, &cfg, &seg));
	} else {
		CHECK(zd_segment_create_memory(&cfg, &seg));
	}
	CHECK(zd_reader_open(seg, 0, &r));
	for (size_t k = 0; k < rounds + 2; k++) {
		uint64_t t0 = zd_now_ns(), t1, t2;

		for (uint32_t i = 0; i < slots; i++) {
			uint32_t slot;
			void *data;
			uint64_t cap;

			CHECK(zd_writer_loan(seg, ZD_OVERFLOW_FAIL, 0, 0, &slot));
			CHECK(zd_slot_data_ptr(seg, slot, &data, &cap, NULL));
			((volatile char *)data)[0] = (char)i;
			CHECK(zd_slot_commit_in_place(seg, slot, 1, NULL));
		}
		t1 = zd_now_ns();
		for (uint32_t i = 0; i < slots; i++) {
			zd_view_t v;

			CHECK(zd_reader_take(seg, &r, &v));
			(void)((const volatile char *)v.data)[0];
			CHECK(zd_slot_release(seg, &v));
		}
		t2 = zd_now_ns();
		if (k >= 2) {
			tl += t1 - t0;
			tt += t2 - t1;
		}
	}
	printf("{\"mode\": \"pairs\", \"backend\": \"%s\", \"slots\": %u, \"pairs\": %zu, "
	       "\"loan_commit_ns\": %.2f, \"take_release_ns\": %.2f}\n",
	       posix ? "posix" : "memory", slots, rounds * slots,
	       (double)tl / (double)(rounds * slots), (double)tt / (double)(rounds * slots));
	CHECK(zd_reader_close(seg, &r));
	CHECK(zd_segment_close(seg));
	if (posix)
		CHECK(zd_segment_unlink_posix(name));
	return 0;
}

/* The child of the ping-pong: takes each message from `na`, copies it into a
 * loan of `nb`, commits, releases.  Never returns. */
static void echo(const char *na, const char *nb, size_t total, uint64_t spin_ns, int ready_fd)
{
	zd_segment_t *ca, *cb;
	zd_reader_t cr;
	char x = 0;

	CHECK(zd_segment_attach_posix(na, &ca));
	CHECK(zd_segment_attach_posix(nb, &cb));
	CHECK(zd_reader_open(ca, 0, &cr));
	if (write(ready_fd, &x, 1) != 1)
		_exit(4);
	for (size_t i = 0; i < total; i++) {
		zd_view_t v;
		uint32_t slot;
		void *data;
		uint64_t cap;

		CHECK(zd_reader_wait_take(ca, &cr, &v, UINT64_MAX, spin_ns));
		CHECK(zd_writer_loan(cb, ZD_OVERFLOW_BLOCK, UINT64_MAX, 0, &slot));
		CHECK(zd_slot_data_ptr(cb, slot, &data, &cap, NULL));
		memcpy(data, v.data, v.size);
		CHECK(zd_slot_commit_in_place(cb, slot, v.size, NULL));
		CHECK(zd_slot_release(ca, &v));
	}
	CHECK(zd_reader_close(ca, &cr));
	CHECK(zd_segment_close(ca));
	CHECK(zd_segment_close(cb));
	_exit(0);
}

/* the ping-pong through the core: two posix segments, one per direction */
static int pingpong(size_t iters, size_t warm, uint64_t spin_ns, uint64_t size,
		    int pcpu, int ccpu, int *child_ok)
{
	zd_config_t cfg;
	zd_segment_t *a, *b;
	zd_reader_t r;
	char na[64], nb[64];
	int ready[2];
	char x = 0;
	size_t total = warm + iters;
	uint64_t *t;
	pid_t pid;
	int status, rc = 1;

	memset(&cfg, 0, sizeof cfg);
	cfg.slot_count = 4;
	cfg.slot_capacity = size;
	snprintf(na, sizeof na, "%s-%d-a", name_prefix, (int)getpid());
	snprintf(nb, sizeof nb, "%s-%d-b", name_prefix, (int)getpid());
	t = calloc(iters + 1, sizeof *t);
	if (!t)
		return 1;
	if (pipe(ready)) {
		free(t);
		return 1;
	}
	CHECK(zd_segment_create_posix(na, &cfg, &a));
	CHECK(zd_segment_create_posix(nb, &cfg, &b));
	pid = fork();
	if (pid < 0)
		goto out;
	if (pid == 0) {
		close(ready[0]);
		bench_pin(ccpu);
		echo(na, nb, total, spin_ns, ready[1]);
	}
	bench_pin(pcpu);
	CHECK(zd_reader_open(b, 0, &r));
	if (read(ready[0], &x, 1) != 1) {
		waitpid(pid, &status, 0);
		goto out_reader;
	}
	for (size_t i = 0; i < total; i++) {
		zd_view_t v;
		uint32_t slot;
		void *data;
		uint64_t cap;

		if (i == warm)
			t[0] = zd_now_ns();
		CHECK(zd_writer_loan(a, ZD_OVERFLOW_BLOCK, UINT64_MAX, 0, &slot));
		CHECK(zd_slot_data_ptr(a, slot, &data, &cap, NULL));
		memset(data, (int)i, size);
		CHECK(zd_slot_commit_in_place(a, slot, size, NULL));
		CHECK(zd_reader_wait_take(b, &r, &v, UINT64_MAX, spin_ns));
		if (v.size != size)
			*child_ok = 0;
		CHECK(zd_slot_release(b, &v));
		if (i >= warm)
			t[i - warm + 1] = zd_now_ns();
	}
	if (waitpid(pid, &status, 0) != pid)
		status = -1;
	*child_ok = *child_ok && status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0;
	for (size_t k = 0; k < iters; k++)
		t[k] = t[k + 1] - t[k];
	printf("{\"mode\": \"core_pingpong\", \"spin_ns\": %llu, \"size\": %llu, \"iters\": %zu, ",
	       (unsigned long long)spin_ns, (unsigned long long)size, iters);
	bench_print_stats("rtt_ns", t, iters);
	printf(", \"child_ok\": %d}\n", *child_ok);
	rc = 0;
out_reader:
	CHECK(zd_reader_close(b, &r));
out:
	CHECK(zd_segment_close(a));
	CHECK(zd_segment_close(b));
	zd_segment_unlink_posix(na);
	zd_segment_unlink_posix(nb);
	close(ready[0]);
	close(ready[1]);
	free(t);
	return rc;
}

/* Both modes with tiny counts, unpinned. */
static int check(void)
{
	int ok_parked = 1, ok_spin = 1;

	name_prefix = "zdtest-bench-core";
	if (pairs(10, 0, 16) || pairs(10, 1, 16) || pairs(3, 0, 1024))
		return 1;
	if (pingpong(200, 20, 0, 64, -1, -1, &ok_parked) || !ok_parked)
		return 1;
	if (pingpong(200, 20, 50000, 4096, -1, -1, &ok_spin) || !ok_spin)
		return 1;
	return 0;
}

/* A positive number; 0 on anything else (the caller rejects 0). */
static uint64_t count_arg(const char *s)
{
	char *end;
	unsigned long long v = strtoull(s, &end, 10);

	return (*s != '\0' && *s != '-' && *end == '\0') ? (uint64_t)v : 0;
}

int main(int argc, char **argv)
{
	int child_ok = 1;

	if (argc == 2 && strcmp(argv[1], "check") == 0)
		return check();
	if (argc == 5 && strcmp(argv[1], "pairs") == 0) {
		uint64_t rounds = count_arg(argv[2]), slots = count_arg(argv[4]);
		int posix = strcmp(argv[3], "posix") == 0;

		if (rounds > 0 && slots > 0 && slots <= UINT32_MAX &&
		    (posix || strcmp(argv[3], "memory") == 0))
			return pairs((size_t)rounds, posix, (uint32_t)slots);
	}
	if (argc == 8 && strcmp(argv[1], "pingpong") == 0) {
		uint64_t iters = count_arg(argv[2]), warm = count_arg(argv[3]);
		uint64_t spin = count_arg(argv[4]), size = count_arg(argv[5]);

		if (iters > 0 && (warm > 0 || strcmp(argv[3], "0") == 0) &&
		    (spin > 0 || strcmp(argv[4], "0") == 0) && size > 0)
			return pingpong((size_t)iters, (size_t)warm, spin, size,
					atoi(argv[6]), atoi(argv[7]), &child_ok);
	}
	fprintf(stderr, "usage: %s pairs ROUNDS memory|posix SLOTS"
		" | pingpong ITERS WARM SPIN_NS SIZE PCPU CCPU | check\n", argv[0]);
	return 2;
}
