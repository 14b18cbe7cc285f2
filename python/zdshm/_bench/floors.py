"""The hardware floors, in C, compiled at run time with the system ``cc``.

``FLOOR_C`` is one program with four modes; each prints one JSON object:

  cacheline ITERS WARM PCPU CCPU   two processes (fork) bounce a counter through
                                   two cache lines of a shared anonymous
                                   mapping, spinning (pause) on each side
  futex ITERS WARM PCPU CCPU       the same with FUTEX_WAIT/FUTEX_WAKE (shared
                                   futexes: the waiter parks at once, the
                                   notifier always wakes) -- the kernel floor
                                   of a parked round trip
  memcpy SIZE ITERS                memcpy between two pre-faulted buffers
  pagetouch SIZE ITERS             store one byte per 4 KiB page, then load one
                                   byte per page, of a pre-faulted buffer

Round trips are timed per iteration with CLOCK_MONOTONIC in the measuring
process (as the Python side does with perf_counter_ns); percentiles use the
same linear interpolation as numpy.

``CORE_C`` (optional) links the zdshm C core from a source tree (``csrc/``)
and measures the core without Python: loan+commit and take+release pairs in
one process, and the S1 ping-pong (parked and bounded spin).  It only runs
when the sources are found (the benchmark is started from the repository
root, or ZDSHM_SRC points at it); it splits each S1 figure into kernel floor,
C core and Python binding.
"""
from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import tempfile
from typing import Any

from .common import BenchError, pair_cpus

STATS_C = r"""
static void pin(int cpu)
{
	cpu_set_t s;
	if (cpu < 0)
		return;
	CPU_ZERO(&s);
	CPU_SET(cpu, &s);
	(void)sched_setaffinity(0, sizeof s, &s);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* numpy's default (linear) percentile of a sorted array */
static double pct(const uint64_t *s, size_t n, double p)
{
	double r = p / 100.0 * (double)(n - 1);
	size_t lo = (size_t)r;
	double f = r - (double)lo;
	if (lo + 1 >= n)
		return (double)s[n - 1];
	return (double)s[lo] + f * ((double)s[lo + 1] - (double)s[lo]);
}

static void print_stats(const char *key, uint64_t *d, size_t n)
{
	double sum = 0;
	qsort(d, n, sizeof *d, cmp_u64);
	for (size_t i = 0; i < n; i++)
		sum += (double)d[i];
	printf("\"%s\": {\"n\": %zu, \"mean\": %.1f, \"min\": %.1f, \"p50\": %.1f, "
	       "\"p90\": %.1f, \"p99\": %.1f, \"p999\": %.1f, \"max\": %.1f}",
	       key, n, sum / (double)n, (double)d[0], pct(d, n, 50), pct(d, n, 90),
	       pct(d, n, 99), pct(d, n, 99.9), (double)d[n - 1]);
}
"""

FLOOR_C = r"""
#define _GNU_SOURCE
#include <errno.h>
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

@STATS@
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

static long futex(_Atomic uint32_t *addr, int op, uint32_t val)
{
	return syscall(SYS_futex, (uint32_t *)addr, op, val, NULL, NULL, 0);
}

struct shared {
	_Alignas(64) _Atomic uint32_t ping;
	_Alignas(64) _Atomic uint32_t pong;
	_Alignas(64) _Atomic uint32_t ready;
};

/* wait until *w == want: spinning (mode 0) or parked on the futex (mode 1) */
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

static inline void post(_Atomic uint32_t *w, uint32_t val, int parked)
{
	atomic_store_explicit(w, val, memory_order_release);
	if (parked)
		futex(w, FUTEX_WAKE, 1);
}

static int pingpong(int parked, size_t iters, size_t warm, int pcpu, int ccpu)
{
	struct shared *sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE,
				 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	size_t total = warm + iters;
	uint64_t *t = calloc(iters + 1, sizeof *t);
	uint64_t cpu0, cpu1;
	long flt0, flt1;
	pid_t pid;
	int status;
	struct rusage cru;

	if (sh == MAP_FAILED || !t)
		return 1;
	memset(t, 0, (iters + 1) * sizeof *t);
	pid = fork();
	if (pid < 0)
		return 1;
	if (pid == 0) {
		pin(ccpu);
		atomic_store(&sh->ready, 1);
		for (uint32_t i = 1; i <= total; i++) {
			await(&sh->ping, i, parked);
			post(&sh->pong, i, parked);
		}
		_exit(0);
	}
	pin(pcpu);
	while (atomic_load(&sh->ready) == 0)
		sched_yield();
	for (uint32_t i = 1; i <= warm; i++) {
		post(&sh->ping, i, parked);
		await(&sh->pong, i, parked);
	}
	usage_now(&cpu0, &flt0);
	t[0] = now_ns();
	for (uint32_t k = 0; k < iters; k++) {
		uint32_t i = (uint32_t)(warm + k + 1);
		post(&sh->ping, i, parked);
		await(&sh->pong, i, parked);
		t[k + 1] = now_ns();
	}
	usage_now(&cpu1, &flt1);
	wait4(pid, &status, 0, &cru);
	for (size_t k = 0; k < iters; k++)
		t[k] = t[k + 1] - t[k];
	printf("{\"mode\": \"%s\", \"iters\": %zu, ", parked ? "futex" : "cacheline", iters);
	print_stats("rtt_ns", t, iters);
	printf(", \"parent_cpu_ns_per_msg\": %.1f, \"parent_minflt_per_msg\": %.4f, "
	       "\"child_cpu_ns_per_msg\": %.1f, \"child_ok\": %d}\n",
	       (double)(cpu1 - cpu0) / (double)iters, (double)(flt1 - flt0) / (double)iters,
	       (double)(tv_ns(cru.ru_utime) + tv_ns(cru.ru_stime)) / (double)total,
	       WIFEXITED(status) && WEXITSTATUS(status) == 0);
	return 0;
}

static int copy(size_t size, size_t iters)
{
	unsigned char *src = aligned_alloc(4096, size), *dst = aligned_alloc(4096, size);
	uint64_t *d = calloc(iters, sizeof *d);
	if (!src || !dst || !d)
		return 1;
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
	print_stats("ns", d, iters);
	printf("}\n");
	return 0;
}

static int touch(size_t size, size_t iters)
{
	volatile unsigned char *b = aligned_alloc(4096, size);
	uint64_t *dw = calloc(iters, sizeof *dw), *dr = calloc(iters, sizeof *dr);
	unsigned sum = 0;
	if (!b || !dw || !dr)
		return 1;
	memset((void *)b, 1, size);
	for (size_t k = 0; k < iters + 2; k++) {
		uint64_t t0 = now_ns(), t1, t2;
		for (size_t off = 0; off < size; off += 4096)
			b[off] = (unsigned char)k;
		t1 = now_ns();
		for (size_t off = 0; off < size; off += 4096)
			sum += b[off];
		t2 = now_ns();
		if (k >= 2) {
			dw[k - 2] = t1 - t0;
			dr[k - 2] = t2 - t1;
		}
	}
	printf("{\"mode\": \"pagetouch\", \"size\": %zu, \"iters\": %zu, \"pages\": %zu, ",
	       size, iters, (size + 4095) / 4096);
	print_stats("write_ns", dw, iters);
	printf(", ");
	print_stats("read_ns", dr, iters);
	printf(", \"checksum\": %u}\n", sum);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc >= 6 && strcmp(argv[1], "cacheline") == 0)
		return pingpong(0, strtoull(argv[2], 0, 10), strtoull(argv[3], 0, 10),
				atoi(argv[4]), atoi(argv[5]));
	if (argc >= 6 && strcmp(argv[1], "futex") == 0)
		return pingpong(1, strtoull(argv[2], 0, 10), strtoull(argv[3], 0, 10),
				atoi(argv[4]), atoi(argv[5]));
	if (argc >= 4 && strcmp(argv[1], "memcpy") == 0)
		return copy(strtoull(argv[2], 0, 10), strtoull(argv[3], 0, 10));
	if (argc >= 4 && strcmp(argv[1], "pagetouch") == 0)
		return touch(strtoull(argv[2], 0, 10), strtoull(argv[3], 0, 10));
	fprintf(stderr, "usage: floor cacheline|futex ITERS WARM PCPU CCPU | memcpy|pagetouch SIZE ITERS\n");
	return 2;
}
"""

CORE_C = r"""
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "zdshm/zdshm.h"

@STATS@

#define CHECK(x) do { int rc_ = (x); if (rc_ != 0) { \
	fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #x, zd_strerror(rc_)); \
	exit(3); } } while (0)

/* loan+commit and take+release pairs in one process (memory backend) */
static int pairs(size_t rounds, int posix, int B)
{
	zd_config_t cfg;
	zd_segment_t *seg;
	zd_reader_t r;
	uint64_t tl = 0, tt = 0;
	char name[64];

	memset(&cfg, 0, sizeof cfg);
	cfg.slot_count = B;
	cfg.slot_capacity = 64;
	if (posix) {
		snprintf(name, sizeof name, "zdbench-core-%d-pairs", (int)getpid());
		CHECK(zd_segment_create_posix(name, &cfg, &seg));
	} else {
		CHECK(zd_segment_create_memory(&cfg, &seg));
	}
	CHECK(zd_reader_open(seg, 0, &r));
	for (size_t k = 0; k < rounds + 2; k++) {
		uint64_t t0 = zd_now_ns(), t1, t2;
		for (int i = 0; i < B; i++) {
			uint32_t slot;
			void *data;
			uint64_t cap;
			CHECK(zd_writer_loan(seg, ZD_OVERFLOW_FAIL, 0, 0, &slot));
			CHECK(zd_slot_data_ptr(seg, slot, &data, &cap, NULL));
			((volatile char *)data)[0] = (char)i;
			CHECK(zd_slot_commit_in_place(seg, slot, 1, NULL));
		}
		t1 = zd_now_ns();
		for (int i = 0; i < B; i++) {
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
	printf("{\"mode\": \"pairs\", \"backend\": \"%s\", \"slots\": %d, \"pairs\": %zu, "
	       "\"loan_commit_ns\": %.2f, \"take_release_ns\": %.2f}\n",
	       posix ? "posix" : "memory", B, rounds * B,
	       (double)tl / (double)(rounds * B), (double)tt / (double)(rounds * B));
	CHECK(zd_reader_close(seg, &r));
	CHECK(zd_segment_close(seg));
	if (posix)
		zd_segment_unlink_posix(name);
	return 0;
}

/* the S1 ping-pong through the core: two posix segments, one per direction */
static int pingpong(size_t iters, size_t warm, uint64_t spin_ns, uint64_t size,
		    int pcpu, int ccpu)
{
	zd_config_t cfg;
	zd_segment_t *a, *b;
	zd_reader_t r;
	char na[64], nb[64];
	int p2c[2], c2p[2];
	char x = 0;
	size_t total = warm + iters;
	uint64_t *t = calloc(iters + 1, sizeof *t);
	pid_t pid;
	int status;

	memset(&cfg, 0, sizeof cfg);
	cfg.slot_count = 4;
	cfg.slot_capacity = size;
	snprintf(na, sizeof na, "zdbench-core-%d-a", (int)getpid());
	snprintf(nb, sizeof nb, "zdbench-core-%d-b", (int)getpid());
	CHECK(zd_segment_create_posix(na, &cfg, &a));
	CHECK(zd_segment_create_posix(nb, &cfg, &b));
	if (pipe(p2c) || pipe(c2p) || !t)
		return 1;
	pid = fork();
	if (pid == 0) {
		zd_segment_t *ca, *cb;
		zd_reader_t cr;
		pin(ccpu);
		CHECK(zd_segment_attach_posix(na, &ca));
		CHECK(zd_segment_attach_posix(nb, &cb));
		CHECK(zd_reader_open(ca, 0, &cr));
		if (write(c2p[1], &x, 1) != 1)
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
		zd_reader_close(ca, &cr);
		zd_segment_close(ca);
		zd_segment_close(cb);
		_exit(0);
	}
	pin(pcpu);
	CHECK(zd_reader_open(b, 0, &r));
	if (read(c2p[0], &x, 1) != 1)
		return 1;
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
		CHECK(zd_slot_release(b, &v));
		if (i >= warm)
			t[i - warm + 1] = zd_now_ns();
	}
	waitpid(pid, &status, 0);
	for (size_t k = 0; k < iters; k++)
		t[k] = t[k + 1] - t[k];
	printf("{\"mode\": \"core_pingpong\", \"spin_ns\": %llu, \"size\": %llu, \"iters\": %zu, ",
	       (unsigned long long)spin_ns, (unsigned long long)size, iters);
	print_stats("rtt_ns", t, iters);
	printf(", \"child_ok\": %d}\n", WIFEXITED(status) && WEXITSTATUS(status) == 0);
	zd_reader_close(b, &r);
	zd_segment_close(a);
	zd_segment_close(b);
	zd_segment_unlink_posix(na);
	zd_segment_unlink_posix(nb);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc >= 5 && strcmp(argv[1], "pairs") == 0)
		return pairs(strtoull(argv[2], 0, 10), strcmp(argv[3], "posix") == 0, atoi(argv[4]));
	if (argc >= 8 && strcmp(argv[1], "pingpong") == 0)
		return pingpong(strtoull(argv[2], 0, 10), strtoull(argv[3], 0, 10),
				strtoull(argv[4], 0, 10), strtoull(argv[5], 0, 10),
				atoi(argv[6]), atoi(argv[7]));
	fprintf(stderr, "usage: core pairs ROUNDS memory|posix SLOTS | pingpong ITERS WARM SPIN_NS SIZE PCPU CCPU\n");
	return 2;
}
"""

# Both programs share the pinning and percentile helpers (numpy's linear
# percentile, so C and Python figures are comparable).
FLOOR_C = FLOOR_C.replace("@STATS@", STATS_C)
CORE_C = CORE_C.replace("@STATS@", STATS_C)



def find_compiler() -> str | None:
    for cc in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if cc and shutil.which(cc):
            return shutil.which(cc)
    return None


def find_core_sources() -> str | None:
    """The repository root holding csrc/core and csrc/include, if reachable."""
    cands = [os.environ.get("ZDSHM_SRC"), os.getcwd()]
    here = os.path.dirname(os.path.abspath(__file__))
    cands.append(os.path.normpath(os.path.join(here, "..", "..", "..")))  # editable / in-tree
    for c in cands:
        if c and os.path.isfile(os.path.join(c, "csrc", "include", "zdshm", "zdshm.h")) \
                and glob.glob(os.path.join(c, "csrc", "core", "*.c")):
            return os.path.abspath(c)
    return None


class Floors:
    """Compiles and runs the C floors in a private temporary directory."""

    def __init__(self) -> None:
        self.tmp = tempfile.mkdtemp(prefix="zdbench-floors-")
        self.cc = find_compiler()
        self.floor_bin: str | None = None
        self.core_bin: str | None = None
        self.floor_error: str | None = None
        self.core_error: str | None = None
        self.core_src: str | None = None

    def close(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)

    def _cc(self, src: str, out: str, extra: list[str]) -> None:
        cmd = [self.cc or "cc", "-O2", "-std=gnu11", "-Wall", "-o", out, src, *extra]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=False)
        if r.returncode != 0:
            raise BenchError(f"compiling {os.path.basename(src)} failed:\n{r.stderr[-2000:]}")

    def build(self) -> None:
        if self.cc is None:
            self.floor_error = "no C compiler (cc, gcc, clang) on PATH"
            self.core_error = self.floor_error
            return
        src = os.path.join(self.tmp, "floor.c")
        with open(src, "w", encoding="utf-8") as f:
            f.write(FLOOR_C)
        try:
            self._cc(src, os.path.join(self.tmp, "floor"), [])
            self.floor_bin = os.path.join(self.tmp, "floor")
        except (BenchError, OSError, subprocess.SubprocessError) as e:
            self.floor_error = str(e)
        root = find_core_sources()
        if root is None:
            self.core_error = "zdshm C sources not found (run from the repository root or set ZDSHM_SRC)"
            return
        self.core_src = root
        src = os.path.join(self.tmp, "core.c")
        with open(src, "w", encoding="utf-8") as f:
            f.write(CORE_C)
        core_files = sorted(glob.glob(os.path.join(root, "csrc", "core", "*.c")))
        try:
            self._cc(src, os.path.join(self.tmp, "core"),
                     ["-D_GNU_SOURCE", "-I", os.path.join(root, "csrc", "include"),
                      "-I", os.path.join(root, "csrc", "core"), *core_files, "-lrt"])
            self.core_bin = os.path.join(self.tmp, "core")
        except (BenchError, OSError, subprocess.SubprocessError) as e:
            self.core_error = str(e)

    @staticmethod
    def _run(binary: str | None, args: list[str], timeout: float) -> dict[str, Any]:
        if binary is None:
            raise BenchError("not built")
        r = subprocess.run([binary, *map(str, args)], capture_output=True, text=True,
                           timeout=timeout, check=False)
        if r.returncode != 0:
            raise BenchError(f"{os.path.basename(binary)} {' '.join(map(str, args))} exited "
                             f"{r.returncode}: {r.stderr[-1000:]}")
        return json.loads(r.stdout.strip().splitlines()[-1])

    def pingpong(self, mode: str, iters: int, warm: int, timeout: float = 120) -> dict[str, Any]:
        p, c = pair_cpus()
        return self._run(self.floor_bin, [mode, iters, warm, -1 if p is None else p,
                                          -1 if c is None else c], timeout)

    def memcpy(self, size: int, iters: int, timeout: float = 120) -> dict[str, Any]:
        return self._run(self.floor_bin, ["memcpy", size, iters], timeout)

    def pagetouch(self, size: int, iters: int, timeout: float = 120) -> dict[str, Any]:
        return self._run(self.floor_bin, ["pagetouch", size, iters], timeout)

    def core_pairs(self, rounds: int, backend: str, slots: int, timeout: float = 120) -> dict[str, Any]:
        return self._run(self.core_bin, ["pairs", rounds, backend, slots], timeout)

    def core_pingpong(self, iters: int, warm: int, spin_ns: int, size: int,
                      timeout: float = 120) -> dict[str, Any]:
        p, c = pair_cpus()
        return self._run(self.core_bin, ["pingpong", iters, warm, spin_ns, size,
                                         -1 if p is None else p, -1 if c is None else c], timeout)
