/* zdtest.h — the tiny harness shared by the C test programs.
 *
 * One test program per behaviour (liburing style).  A program is a main()
 * that runs named cases with zdt_case / zdt_run_both / zdt_run_posix and
 * returns zdt_finish(), which exits non-zero when any check failed.
 *
 *   CHECK(cond)            counts a check; on failure prints file:line and
 *                          the condition, and the case goes on
 *   CHECK_EQ(a, b)         compares as 64-bit integers, prints both values
 *   CHECK_LT/LE/GT/GE      unsigned 64-bit comparisons, print both values
 *   CHECK_RC(expr, want)   for a zd_* call returning 0 / -errno: prints the
 *                          errno names (-EAGAIN ...) and zd_strerror
 *   REQUIRE, REQUIRE_RC    like CHECK / CHECK_RC, but a failure ends the case
 *                          (longjmp back to the runner, which still closes
 *                          the segments and unlinks the names it made); in a
 *                          forked child it ends the child with status 3
 *
 * Every posix name a test makes comes from zdt_unique_name(), of the form
 * "zdtest-<pid>-<n>".  The names are remembered: zdt_finish() (and the
 * watchdog, and exit) unlink any that are left, and zdt_finish() fails the
 * program when /dev/shm still holds an entry with this process's prefix.
 *
 * Checks may run on any thread (the counters are atomic).  REQUIRE belongs
 * on the thread that runs the case.
 */
#ifndef ZDTEST_H
#define ZDTEST_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <zdshm/zdshm.h>

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define ZDT_SANITIZED 1
#else
#define ZDT_SANITIZED 0
#endif
#if defined(__SANITIZE_THREAD__)
#define ZDT_TSAN 1
#else
#define ZDT_TSAN 0
#endif

#define ZDT_MAX_NAMES 256
#define ZDT_MAX_CHILDREN 64
#define ZDT_MAX_EXTRA 70

typedef struct zdt_ctx {
	zd_segment_t *seg;          /* the handle the case runs on           */
	zd_backend_kind_t backend;
	char name[64];              /* posix name, "" for memory              */
	zd_config_t cfg;
	zd_segment_t *extra[ZDT_MAX_EXTRA]; /* handles closed by the runner   */
	int n_extra;
} zdt_ctx_t;

static struct zdt_state {
	long checks;
	long failures;
	int cases;
	int failed_cases;
	pid_t main_pid;
	int inited;
	const char *current;        /* name of the running case              */
	jmp_buf jb;
	volatile int jb_armed;
	pthread_t case_thread;
	char names[ZDT_MAX_NAMES][64];
	int n_names;
	pid_t children[ZDT_MAX_CHILDREN];
	int n_children;
} zdt;

/* ------------------------------------------------------------------ */
/* basics                                                              */

static inline const char *zdt_errname(int rc)
{
	static __thread char bufs[4][32];
	static __thread unsigned turn;
	char *buf = bufs[turn++ % 4];
	const char *n;

	if (rc == 0)
		return "0";
	n = strerrorname_np(rc < 0 ? -rc : rc);
	if (!n) {
		snprintf(buf, 32, "%d", rc);
		return buf;
	}
	snprintf(buf, 32, "%s%s", rc < 0 ? "-" : "", n);
	return buf;
}

static inline uint64_t zdt_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline void zdt_sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

#define ZDT_MS 1000000ull
#define ZDT_S 1000000000ull

static inline void zdt_cleanup_names(void);

static inline void zdt_fail_end(void)
{
	if (getpid() != zdt.main_pid)
		_exit(3);
	if (zdt.jb_armed && pthread_equal(pthread_self(), zdt.case_thread))
		longjmp(zdt.jb, 1);
	fprintf(stderr, "  fatal check failed outside a case: aborting\n");
	zdt_cleanup_names();
	_exit(3);
}

static inline void zdt_count(void)
{
	__atomic_fetch_add(&zdt.checks, 1, __ATOMIC_RELAXED);
}

__attribute__((format(printf, 3, 4)))
static inline void zdt_fail(const char *file, int line, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	__atomic_fetch_add(&zdt.failures, 1, __ATOMIC_RELAXED);
	fprintf(stderr, "%s:%d: [%s%s] FAILED: %s\n", file, line,
		zdt.current ? zdt.current : "-",
		getpid() != zdt.main_pid ? ", child" : "", msg);
}

#define ZDT_CHECK_(fatal, cond)                                               \
	do {                                                                  \
		zdt_count();                                                  \
		if (!(cond)) {                                                \
			zdt_fail(__FILE__, __LINE__, "%s", #cond);            \
			if (fatal)                                            \
				zdt_fail_end();                               \
		}                                                             \
	} while (0)

#define CHECK(cond) ZDT_CHECK_(0, cond)
#define REQUIRE(cond) ZDT_CHECK_(1, cond)

#define CHECK_EQ(a, b)                                                        \
	do {                                                                  \
		unsigned long long zdt_a_ = (unsigned long long)(a);          \
		unsigned long long zdt_b_ = (unsigned long long)(b);          \
		zdt_count();                                                  \
		if (zdt_a_ != zdt_b_)                                         \
			zdt_fail(__FILE__, __LINE__,                          \
				 "CHECK_EQ(%s, %s): %lld (0x%llx) != %lld "   \
				 "(0x%llx)",                                  \
				 #a, #b, (long long)zdt_a_, zdt_a_,           \
				 (long long)zdt_b_, zdt_b_);                  \
	} while (0)

#define ZDT_CMP_(a, op, b)                                                    \
	do {                                                                  \
		unsigned long long zdt_a_ = (unsigned long long)(a);          \
		unsigned long long zdt_b_ = (unsigned long long)(b);          \
		zdt_count();                                                  \
		if (!(zdt_a_ op zdt_b_))                                      \
			zdt_fail(__FILE__, __LINE__,                          \
				 "%s %s %s: got %llu vs %llu", #a, #op, #b,   \
				 zdt_a_, zdt_b_);                             \
	} while (0)

#define CHECK_LT(a, b) ZDT_CMP_(a, <, b)
#define CHECK_LE(a, b) ZDT_CMP_(a, <=, b)
#define CHECK_GT(a, b) ZDT_CMP_(a, >, b)
#define CHECK_GE(a, b) ZDT_CMP_(a, >=, b)
#define CHECK_NE(a, b) ZDT_CMP_(a, !=, b)

#define ZDT_RC_(fatal, expr, want)                                            \
	do {                                                                  \
		int zdt_rc_ = (expr);                                         \
		int zdt_want_ = (want);                                       \
		zdt_count();                                                  \
		if (zdt_rc_ != zdt_want_) {                                   \
			char zdt_w_[32];                                      \
			snprintf(zdt_w_, sizeof(zdt_w_), "%s",                \
				 zdt_errname(zdt_want_));                     \
			zdt_fail(__FILE__, __LINE__,                          \
				 "%s returned %s (%s), expected %s", #expr,   \
				 zdt_errname(zdt_rc_), zd_strerror(zdt_rc_),  \
				 zdt_w_);                                     \
			if (fatal)                                            \
				zdt_fail_end();                               \
		}                                                             \
	} while (0)

#define CHECK_RC(expr, want) ZDT_RC_(0, expr, want)
#define REQUIRE_RC(expr, want) ZDT_RC_(1, expr, want)
#define CHECK_OK(expr) ZDT_RC_(0, expr, 0)
#define REQUIRE_OK(expr) ZDT_RC_(1, expr, 0)

/* ------------------------------------------------------------------ */
/* names and /dev/shm                                                  */

/* Copies /dev/shm/<name> into path (PATH_MAX bytes); 0 if too long. */
static inline int zdt_shm_path(char *path, size_t size, const char *name)
{
	static const char dir[] = "/dev/shm/";
	size_t m = strlen(name);

	if (sizeof(dir) + m > size)
		return 0;
	memcpy(path, dir, sizeof(dir) - 1);
	memcpy(path + sizeof(dir) - 1, name, m + 1);
	return 1;
}

static inline int zdt_shm_exists(const char *name)
{
	char path[512];
	struct stat st;

	return zdt_shm_path(path, sizeof(path), name) && stat(path, &st) == 0;
}

/* Unlinks /dev/shm/<name> directly (works for names the library rejects
 * too).  Async-signal-safe. */
static inline void zdt_unlink_raw(const char *name)
{
	char path[512];

	if (zdt_shm_path(path, sizeof(path), name))
		unlink(path);
}

static inline void zdt_cleanup_names(void)
{
	if (!zdt.inited || getpid() != zdt.main_pid)
		return;
	for (int i = 0; i < zdt.n_names; i++)
		zdt_unlink_raw(zdt.names[i]);
}

static void zdt_atexit(void)
{
	zdt_cleanup_names();
}

static inline void zdt_init(void)
{
	if (zdt.inited)
		return;
	zdt.inited = 1;
	zdt.main_pid = getpid();
	zdt.case_thread = pthread_self();
	atexit(zdt_atexit);
	setvbuf(stdout, NULL, _IOLBF, 0);
}

/* Fills buf (>= 64 bytes) with "zdtest-<pid>-<n>" and remembers it. */
static inline const char *zdt_unique_name(char *buf)
{
	static int counter;

	zdt_init();
	snprintf(buf, 64, "zdtest-%d-%d", (int)getpid(),
		 __atomic_fetch_add(&counter, 1, __ATOMIC_RELAXED));
	if (getpid() == zdt.main_pid && zdt.n_names < ZDT_MAX_NAMES)
		memcpy(zdt.names[zdt.n_names++], buf, strlen(buf) + 1);
	return buf;
}

/* Number of /dev/shm entries whose name contains "zdtest-<pid>-". */
static inline int zdt_count_own_entries(int unlink_them)
{
	char prefix[48];
	DIR *d = opendir("/dev/shm");
	struct dirent *e;
	int n = 0;

	if (!d)
		return 0;
	snprintf(prefix, sizeof(prefix), "zdtest-%d-", (int)zdt.main_pid);
	while ((e = readdir(d)) != NULL) {
		if (strstr(e->d_name, prefix)) {
			n++;
			if (unlink_them) {
				fprintf(stderr, "  leaked /dev/shm/%s\n", e->d_name);
				zdt_unlink_raw(e->d_name);
			}
		}
	}
	closedir(d);
	return n;
}

/* ------------------------------------------------------------------ */
/* cases                                                               */

static inline zd_config_t zdt_cfg(uint32_t count, uint64_t capacity)
{
	zd_config_t c;

	memset(&c, 0, sizeof(c));
	c.slot_count = count;
	c.slot_capacity = capacity;
	return c;
}

/* Attaches one more handle to a posix case's segment; the runner closes it. */
/* Loans with the FAIL policy, commits `len` (<= 64) bytes of `fill`.
 * Returns the sequence number; *slot_out (may be NULL) gets the slot. */
static inline uint64_t zdt_put(zd_segment_t *seg, unsigned char fill,
			       size_t len, uint32_t *slot_out)
{
	unsigned char buf[64];
	uint32_t s;
	uint64_t sn = UINT64_MAX;

	REQUIRE(len <= sizeof(buf));
	memset(buf, fill, len);
	REQUIRE_OK(zd_writer_loan(seg, ZD_OVERFLOW_FAIL, 0, 0, &s));
	REQUIRE_OK(zd_slot_commit(seg, s, buf, len, &sn));
	if (slot_out)
		*slot_out = s;
	return sn;
}

static inline zd_segment_t *zdt_attach(zdt_ctx_t *c)
{
	zd_segment_t *h = NULL;

	REQUIRE(c->backend == ZD_BACKEND_POSIX);
	REQUIRE(c->n_extra < ZDT_MAX_EXTRA);
	REQUIRE_OK(zd_segment_attach_posix(c->name, &h));
	REQUIRE(h != NULL);
	c->extra[c->n_extra++] = h;
	return h;
}

static inline void zdt_case_begin(const char *name)
{
	zdt_init();
	zdt.current = name;
	zdt.cases++;
}

static inline void zdt_kill_children(void);

static inline void zdt_case_end(const char *name, long failures_before,
				const char *tag)
{
	long f;

	/* a case that ended early may have left children and a watchdog */
	zdt_kill_children();
	alarm(0);
	f = __atomic_load_n(&zdt.failures, __ATOMIC_RELAXED);

	if (f != failures_before) {
		zdt.failed_cases++;
		printf("not ok %d - %s%s\n", zdt.cases, name, tag);
	} else {
		printf("ok %d - %s%s\n", zdt.cases, name, tag);
	}
	zdt.current = NULL;
}

/* Runs a case that needs no segment of the runner's. */
static inline void zdt_case(const char *name, void (*fn)(void))
{
	long before;

	zdt_case_begin(name);
	before = zdt.failures;
	if (setjmp(zdt.jb) == 0) {
		zdt.jb_armed = 1;
		fn();
	}
	zdt.jb_armed = 0;
	zdt_case_end(name, before, "");
}

static zdt_ctx_t zdt_cur_ctx;

static inline void zdt_run_on(const char *name, const zd_config_t *cfg,
			      zd_backend_kind_t kind, void (*fn)(zdt_ctx_t *))
{
	zdt_ctx_t *c = &zdt_cur_ctx;
	long before;
	int rc;

	zdt_case_begin(name);
	before = zdt.failures;
	memset(c, 0, sizeof(*c));
	c->cfg = *cfg;
	c->backend = kind;
	if (kind == ZD_BACKEND_MEMORY) {
		rc = zd_segment_create_memory(cfg, &c->seg);
	} else {
		zdt_unique_name(c->name);
		rc = zd_segment_create_posix(c->name, cfg, &c->seg);
	}
	zdt_count();
	if (rc != 0) {
		zdt_fail(__FILE__, __LINE__, "creating the %s segment: %s (%s)",
			 kind == ZD_BACKEND_MEMORY ? "memory" : "posix",
			 zdt_errname(rc), zd_strerror(rc));
	} else if (setjmp(zdt.jb) == 0) {
		zdt.jb_armed = 1;
		fn(c);
	}
	zdt.jb_armed = 0;
	for (int i = c->n_extra - 1; i >= 0; i--)
		if (c->extra[i])
			zd_segment_close(c->extra[i]);
	if (c->seg)
		zd_segment_close(c->seg);
	if (kind == ZD_BACKEND_POSIX) {
		rc = zd_segment_unlink_posix(c->name);
		if (rc != 0 && rc != -ENOENT)
			zdt_fail(__FILE__, __LINE__, "unlink %s: %s", c->name,
				 zdt_errname(rc));
		if (zdt_shm_exists(c->name)) {
			zdt_fail(__FILE__, __LINE__, "/dev/shm/%s left behind",
				 c->name);
			zdt_unlink_raw(c->name);
		}
	}
	zdt_case_end(name, before,
		     kind == ZD_BACKEND_MEMORY ? " [memory]" : " [posix]");
}

/* Runs one case body on a fresh memory segment, then on a fresh posix one. */
static inline void zdt_run_both(const char *name, const zd_config_t *cfg,
				void (*fn)(zdt_ctx_t *))
{
	zdt_run_on(name, cfg, ZD_BACKEND_MEMORY, fn);
	zdt_run_on(name, cfg, ZD_BACKEND_POSIX, fn);
}

static inline void zdt_run_posix(const char *name, const zd_config_t *cfg,
				 void (*fn)(zdt_ctx_t *))
{
	zdt_run_on(name, cfg, ZD_BACKEND_POSIX, fn);
}

static inline void zdt_run_memory(const char *name, const zd_config_t *cfg,
				  void (*fn)(zdt_ctx_t *))
{
	zdt_run_on(name, cfg, ZD_BACKEND_MEMORY, fn);
}

/* Prints the summary; returns the exit status for main(). */
static inline int zdt_finish(void)
{
	int leaked;

	zdt_init();
	leaked = zdt_count_own_entries(1);
	if (leaked) {
		__atomic_fetch_add(&zdt.failures, 1, __ATOMIC_RELAXED);
		fprintf(stderr, "%d /dev/shm entries left behind\n", leaked);
	}
	zdt_cleanup_names();
	printf("# %d cases, %d failed; %ld checks, %ld failed\n", zdt.cases,
	       zdt.failed_cases, zdt.checks, zdt.failures);
	return zdt.failures == 0 && zdt.cases > 0 ? 0 : 1;
}

/* ------------------------------------------------------------------ */
/* processes                                                           */

static void zdt_watchdog_handler(int sig)
{
	static const char msg[] = "zdtest watchdog: time is up, killing children\n";
	ssize_t r;

	(void)sig;
	r = write(2, msg, sizeof(msg) - 1);
	(void)r;
	for (int i = 0; i < zdt.n_children; i++)
		if (zdt.children[i] > 0)
			kill(zdt.children[i], SIGKILL);
	if (getpid() == zdt.main_pid)
		for (int i = 0; i < zdt.n_names; i++)
			zdt_unlink_raw(zdt.names[i]);
	_exit(2);
}

/* The parent's watchdog: after `seconds` it kills the children it forked,
 * unlinks its names and exits with status 2. */
static inline void zdt_watchdog(unsigned seconds)
{
	struct sigaction sa;

	zdt_init();
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = zdt_watchdog_handler;
	sigaction(SIGALRM, &sa, NULL);
	alarm(seconds);
}

/* Forks a child that runs fn(arg) under alarm(60) and _exits with its
 * return value.  The child never runs atexit handlers. */
static inline pid_t zdt_fork(int (*fn)(void *), void *arg)
{
	pid_t pid;

	zdt_init();
	fflush(stdout);
	fflush(stderr);
	pid = fork();
	if (pid < 0) {
		zdt_fail(__FILE__, __LINE__, "fork: %s", strerror(errno));
		zdt_fail_end();
	}
	if (pid == 0) {
		struct sigaction sa;

		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = SIG_DFL;
		sigaction(SIGALRM, &sa, NULL);
		zdt.n_children = 0;
		alarm(60);
		_exit(fn(arg));
	}
	if (zdt.n_children < ZDT_MAX_CHILDREN)
		zdt.children[zdt.n_children++] = pid;
	return pid;
}

static inline void zdt_forget_child(pid_t pid)
{
	for (int i = 0; i < zdt.n_children; i++)
		if (zdt.children[i] == pid)
			zdt.children[i] = 0;
}

/* Waits for a child; returns its exit status, or 128 + signal. */
static inline int zdt_wait(pid_t pid)
{
	int st = 0;
	pid_t r;

	do {
		r = waitpid(pid, &st, 0);
	} while (r < 0 && errno == EINTR);
	zdt_forget_child(pid);
	if (r < 0)
		return -1;
	if (WIFEXITED(st))
		return WEXITSTATUS(st);
	if (WIFSIGNALED(st))
		return 128 + WTERMSIG(st);
	return -1;
}

/* Kills (SIGKILL) and reaps every child still known. */
static inline void zdt_kill_children(void)
{
	for (int i = 0; i < zdt.n_children; i++) {
		if (zdt.children[i] > 0) {
			kill(zdt.children[i], SIGKILL);
			zdt_wait(zdt.children[i]);
		}
	}
	zdt.n_children = 0;
}

/* Writes all of buf; returns 0 or -errno. */
static inline int zdt_write_full(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len) {
		ssize_t w = write(fd, p, len);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += w;
		len -= (size_t)w;
	}
	return 0;
}

/* Reads exactly len bytes within timeout_ms.  Returns 0, -ETIMEDOUT,
 * -EPIPE (end of file) or -errno. */
static inline int zdt_read_full(int fd, void *buf, size_t len, int timeout_ms)
{
	char *p = buf;
	uint64_t deadline = zdt_now_ns() + (uint64_t)timeout_ms * ZDT_MS;

	while (len) {
		struct pollfd pfd = { fd, POLLIN, 0 };
		uint64_t now = zdt_now_ns();
		int pr;
		ssize_t r;

		if (now >= deadline)
			return -ETIMEDOUT;
		pr = poll(&pfd, 1, (int)((deadline - now) / ZDT_MS) + 1);
		if (pr < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (pr == 0)
			continue;
		r = read(fd, p, len);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (r == 0)
			return -EPIPE;
		p += r;
		len -= (size_t)r;
	}
	return 0;
}

static inline void zdt_pipe(int fds[2])
{
	REQUIRE(pipe2(fds, O_CLOEXEC) == 0);
}

/* ------------------------------------------------------------------ */
/* payloads                                                            */

static inline uint64_t zdt_fnv1a(const void *p, size_t n)
{
	const unsigned char *b = p;
	uint64_t h = 0xcbf29ce484222325ull;

	for (size_t i = 0; i < n; i++) {
		h ^= b[i];
		h *= 0x100000001b3ull;
	}
	return h;
}

static inline uint64_t zdt_xorshift(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *s = x;
}

/* Fills n bytes with a stream determined by seed. */
static inline void zdt_fill(void *p, size_t n, uint64_t seed)
{
	unsigned char *b = p;
	uint64_t s = seed * 0x9e3779b97f4a7c15ull + 0x2545f4914f6cdd1dull;

	if (s == 0)
		s = 1;
	for (size_t i = 0; i < n; i++) {
		if ((i & 7) == 0)
			zdt_xorshift(&s);
		b[i] = (unsigned char)(s >> ((i & 7) * 8));
	}
}

/* A self-describing message: tag words, a body of varying length filled
 * from the tag, and the FNV-1a of everything before the checksum. */
typedef struct zdt_msg_head {
	uint64_t writer;   /* writer id                */
	uint64_t counter;  /* per-writer counter       */
	uint64_t body_len; /* bytes after this header  */
} zdt_msg_head_t;

#define ZDT_MSG_MIN (sizeof(zdt_msg_head_t) + sizeof(uint64_t))

/* Message length for (writer, counter), between ZDT_MSG_MIN and max_len. */
static inline uint64_t zdt_msg_len(uint64_t writer, uint64_t counter,
				   uint64_t max_len)
{
	uint64_t span = max_len - ZDT_MSG_MIN + 1;

	return ZDT_MSG_MIN + ((counter * 2654435761u + writer * 97u) % span);
}

/* Writes the message into dst (len bytes, from zdt_msg_len). */
static inline void zdt_msg_build(void *dst, uint64_t writer, uint64_t counter,
				 uint64_t len)
{
	unsigned char *p = dst;
	zdt_msg_head_t h = { writer, counter, len - ZDT_MSG_MIN };
	uint64_t sum;

	memcpy(p, &h, sizeof(h));
	zdt_fill(p + sizeof(h), (size_t)h.body_len, writer * 1000003u + counter);
	sum = zdt_fnv1a(p, (size_t)(len - sizeof(uint64_t)));
	memcpy(p + len - sizeof(uint64_t), &sum, sizeof(sum));
}

/* Checks a received message.  Returns 1 if it is intact (the length
 * matches the header and the checksum matches), filling *head. */
static inline int zdt_msg_verify(const void *src, uint64_t len,
				 zdt_msg_head_t *head)
{
	const unsigned char *p = src;
	uint64_t sum;

	if (len < ZDT_MSG_MIN)
		return 0;
	memcpy(head, p, sizeof(*head));
	if (head->body_len != len - ZDT_MSG_MIN)
		return 0;
	memcpy(&sum, p + len - sizeof(uint64_t), sizeof(sum));
	return sum == zdt_fnv1a(p, (size_t)(len - sizeof(uint64_t)));
}

/* ------------------------------------------------------------------ */
/* receive-side bookkeeping for stream tests                           */

#define ZDT_MAX_WRITERS 8

/* What a reader saw; fixed-size so children can send it through a pipe
 * in one write (< PIPE_BUF). */
typedef struct zdt_rx_report {
	int32_t id;           /* reader number in the test          */
	int32_t last_rc;      /* last unexpected return code (0)    */
	uint64_t received;    /* samples taken                      */
	uint64_t lost;        /* expected samples never seen        */
	uint64_t dup;         /* samples seen twice                 */
	uint64_t reordered;   /* per-writer counter went backwards  */
	uint64_t bad;         /* checksum or length mismatch        */
	uint64_t foreign;     /* writer id or counter out of range  */
	uint64_t sn_back;     /* global sn not increasing           */
	uint64_t sn_mismatch; /* sn != counter (single-writer tests) */
} zdt_rx_report_t;

typedef struct zdt_rx {
	zdt_rx_report_t rep;
	uint64_t n_writers, per_writer;
	uint64_t next[ZDT_MAX_WRITERS];
	uint64_t last_sn;
	int check_sn_equals_counter;
	unsigned char *seen;
} zdt_rx_t;

static inline void zdt_rx_init(zdt_rx_t *rx, int id, uint64_t n_writers,
			       uint64_t per_writer)
{
	memset(rx, 0, sizeof(*rx));
	rx->rep.id = id;
	rx->n_writers = n_writers;
	rx->per_writer = per_writer;
	rx->last_sn = UINT64_MAX;
	rx->seen = calloc((size_t)(n_writers * per_writer / 8 + 1), 1);
}

static inline void zdt_rx_feed(zdt_rx_t *rx, const zd_view_t *v)
{
	zdt_msg_head_t h;
	uint64_t bit;

	rx->rep.received++;
	if (rx->last_sn != UINT64_MAX && v->sn <= rx->last_sn)
		rx->rep.sn_back++;
	rx->last_sn = v->sn;
	if (!zdt_msg_verify(v->data, v->size, &h)) {
		rx->rep.bad++;
		return;
	}
	if (h.writer >= rx->n_writers || h.counter >= rx->per_writer) {
		rx->rep.foreign++;
		return;
	}
	if (rx->check_sn_equals_counter && v->sn != h.counter)
		rx->rep.sn_mismatch++;
	bit = h.writer * rx->per_writer + h.counter;
	if (rx->seen[bit / 8] & (1u << (bit % 8))) {
		rx->rep.dup++;
		return;
	}
	rx->seen[bit / 8] |= (unsigned char)(1u << (bit % 8));
	if (h.counter < rx->next[h.writer])
		rx->rep.reordered++;
	else
		rx->next[h.writer] = h.counter + 1;
}

/* Every expected sample seen (or one seen twice: then it can end). */
static inline int zdt_rx_complete(const zdt_rx_t *rx)
{
	uint64_t distinct = rx->rep.received - rx->rep.dup - rx->rep.bad -
			    rx->rep.foreign;

	return distinct >= rx->n_writers * rx->per_writer;
}

static inline void zdt_rx_finish(zdt_rx_t *rx)
{
	uint64_t total = rx->n_writers * rx->per_writer, seen = 0;

	for (uint64_t b = 0; b < total; b++)
		if (rx->seen[b / 8] & (1u << (b % 8)))
			seen++;
	rx->rep.lost = total - seen;
	free(rx->seen);
	rx->seen = NULL;
}

static inline int zdt_rx_ok(const zdt_rx_report_t *r, int want_sn_order)
{
	return r->last_rc == 0 && r->lost == 0 && r->dup == 0 &&
	       r->reordered == 0 && r->bad == 0 && r->foreign == 0 &&
	       r->sn_mismatch == 0 && (!want_sn_order || r->sn_back == 0);
}

/* Checks a report field by field, so a failure says what went wrong. */
#define CHECK_RX(rep, total)                                                  \
	do {                                                                  \
		const zdt_rx_report_t *r_ = (rep);                            \
		if (r_->last_rc != 0)                                         \
			zdt_fail(__FILE__, __LINE__, "reader %d: stopped on %s",\
				 r_->id, zdt_errname(r_->last_rc));           \
		zdt_count();                                                  \
		CHECK_EQ(r_->received, (total));                              \
		CHECK_EQ(r_->lost, 0);                                        \
		CHECK_EQ(r_->dup, 0);                                         \
		CHECK_EQ(r_->reordered, 0);                                   \
		CHECK_EQ(r_->bad, 0);                                         \
		CHECK_EQ(r_->foreign, 0);                                     \
		CHECK_EQ(r_->sn_mismatch, 0);                                 \
	} while (0)

/* Reads up to n reader reports from fd (30 s each) into rep[id], setting
 * got[id]; stops at the first report that does not arrive. */
static inline void zdt_rx_collect(int fd, zdt_rx_report_t *rep, int *got, int n)
{
	for (int i = 0; i < n; i++) {
		zdt_rx_report_t r;

		if (zdt_read_full(fd, &r, sizeof(r), 30000) != 0)
			break;
		if (r.id >= 0 && r.id < n) {
			rep[r.id] = r;
			got[r.id] = 1;
		}
	}
}

static inline void zdt_rx_print(const zdt_rx_report_t *r)
{
	printf("# reader %d: received %llu lost %llu dup %llu reordered %llu "
	       "bad %llu foreign %llu sn_back %llu sn_mismatch %llu last_rc %s\n",
	       r->id, (unsigned long long)r->received,
	       (unsigned long long)r->lost, (unsigned long long)r->dup,
	       (unsigned long long)r->reordered, (unsigned long long)r->bad,
	       (unsigned long long)r->foreign, (unsigned long long)r->sn_back,
	       (unsigned long long)r->sn_mismatch, zdt_errname(r->last_rc));
}

/* Loans (BLOCK), builds message (writer, counter) in place, commits it.
 * Returns 0 or the failing code; *sn gets the sequence number. */
static inline int zdt_send(zd_segment_t *seg, uint64_t writer, uint64_t counter,
			   uint64_t deadline_ns, uint64_t *sn)
{
	uint32_t slot;
	void *data = NULL;
	uint64_t cap = 0, len;
	int rc = zd_writer_loan(seg, ZD_OVERFLOW_BLOCK, deadline_ns, 0, &slot);

	if (rc != 0)
		return rc;
	rc = zd_slot_data_ptr(seg, slot, &data, &cap, NULL);
	if (rc != 0)
		return rc;
	len = zdt_msg_len(writer, counter, cap);
	zdt_msg_build(data, writer, counter, len);
	return zd_slot_commit_in_place(seg, slot, len, sn);
}

/* Takes until the stream is complete; each wait is bounded by
 * idle_timeout_ns.  Fills rx. */
static inline void zdt_receive(zd_segment_t *seg, zd_reader_t *r, zdt_rx_t *rx,
			       uint64_t idle_timeout_ns, uint64_t spin_ns)
{
	while (!zdt_rx_complete(rx)) {
		zd_view_t v;
		int rc = zd_reader_wait_take(seg, r, &v,
					     zd_now_ns() + idle_timeout_ns,
					     spin_ns);

		if (rc == -EBADMSG) {
			rx->rep.bad++;
			continue;
		}
		if (rc != 0) {
			rx->rep.last_rc = rc;
			break;
		}
		zdt_rx_feed(rx, &v);
		rc = zd_slot_release(seg, &v);
		if (rc != 0) {
			rx->rep.last_rc = rc;
			break;
		}
	}
	zdt_rx_finish(rx);
}

/* Where the slots start in the object (the geometry in the header). */
static inline uint64_t zdt_slots_offset(const zd_segment_t *seg)
{
	zd_segment_info_t info;

	REQUIRE_OK(zd_segment_info(seg, &info));
	return info.geo.slots_offset;
}

/* How many FAIL loans succeed now (each discarded afterwards, at most 64). */
static inline uint32_t zdt_loanable(zd_segment_t *seg)
{
	uint32_t slots[64], n = 0;

	while (n < 64 && zd_writer_loan(seg, ZD_OVERFLOW_FAIL, 0, 0, &slots[n]) == 0)
		n++;
	for (uint32_t i = 0; i < n; i++)
		CHECK_OK(zd_slot_discard(seg, slots[i]));
	return n;
}

/* How many low-level reserves for no reader succeed now (each discarded
 * afterwards, at most 64). */
static inline uint32_t zdt_reservable(zd_segment_t *seg)
{
	uint32_t slots[64], n = 0;

	while (n < 64 && zd_slot_reserve(seg, 0, &slots[n]) == 0)
		n++;
	for (uint32_t i = 0; i < n; i++)
		CHECK_OK(zd_slot_discard(seg, slots[i]));
	return n;
}

/* Reserves a slot for no reader and commits an 8-byte payload; the sn. */
static inline uint64_t zdt_put_u64(zd_segment_t *seg, uint64_t payload)
{
	uint32_t x;
	uint64_t sn = UINT64_MAX;

	REQUIRE_OK(zd_slot_reserve(seg, 0, &x));
	REQUIRE_OK(zd_slot_commit(seg, x, &payload, sizeof(payload), &sn));
	return sn;
}

#endif
