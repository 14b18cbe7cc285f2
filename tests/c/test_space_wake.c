/* test_space_wake.c — who wakes whom: a writer blocked for space is woken
 * by the release that frees a slot, promptly, and not by commits; a reader
 * blocked for data is woken by a commit, promptly, and not by releases.
 *
 * The sleeper is a thread with its own attached handle (posix backend), so
 * the handle's futex_waits (zd_segment_info: futex(2) waits made through
 * that handle) counts its wake-ups: a sleeper woken for nothing re-checks
 * and waits again, one more futex wait.  It parks with spin_ns 0.  The
 * other party acts through other handles, whose futex_wakes count the
 * wake calls they make; with nobody asleep on what they change, they must
 * make none.
 *
 * A parked reader or writer ends its futex wait every ZD_CREATOR_CHECK_NS
 * at most (to notice a dead creator, to reap dead readers) and waits
 * again; each such slice that ends inside a measured window is one wait
 * allowed for.
 *
 * Prompt: the release (commit) makes one futex wake, and the time from
 * that call to the sleeper's return (CLOCK_MONOTONIC on both sides), over
 * several rounds, has its median within 1 ms (5 ms under sanitizers) and
 * every round within 50 ms, well inside one park slice, so a wake-up that
 * is missed in any round fails.
 */
#include "zdtest.h"

#define SLOTS 16u
#define LOANS 8u            /* held by the second writer, committed later */
#define EVENTS 8u           /* commits (releases) while the sleeper waits */
#define ROUNDS 15
#define SLICE_NS ((uint64_t)ZD_CREATOR_CHECK_NS)
#define WAKE_MEDIAN_NS (ZDT_SANITIZED ? 5 * ZDT_MS : 1 * ZDT_MS)
#define WAKE_MAX_NS (50 * ZDT_MS)

/* A thread blocked in zd_writer_loan (r == NULL) or zd_reader_wait_take. */
struct sleeper {
	pthread_t th;
	zd_segment_t *seg;
	zd_reader_t *r;
	int rc;
	uint32_t slot;
	zd_view_t view;
	uint64_t t_ret;         /* CLOCK_MONOTONIC when the call returned */
	int done;               /* release store after the fields above    */
};

static void *sleeper_main(void *arg)
{
	struct sleeper *s = arg;
	uint64_t deadline = zd_now_ns() + 20 * ZDT_S;

	if (s->r == NULL)
		s->rc = zd_writer_loan(s->seg, ZD_OVERFLOW_BLOCK, deadline, 0,
				       &s->slot);
	else
		s->rc = zd_reader_wait_take(s->seg, s->r, &s->view, deadline, 0);
	s->t_ret = zdt_now_ns();
	__atomic_store_n(&s->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

static void sleeper_start(struct sleeper *s, zd_segment_t *seg, zd_reader_t *r)
{
	memset(s, 0, sizeof(*s));
	s->seg = seg;
	s->r = r;
	REQUIRE(pthread_create(&s->th, NULL, sleeper_main, s) == 0);
}

static int sleeper_done(struct sleeper *s)
{
	return __atomic_load_n(&s->done, __ATOMIC_ACQUIRE);
}

static void sleeper_join(struct sleeper *s)
{
	REQUIRE(pthread_join(s->th, NULL) == 0);
}

static uint64_t futex_waits(zd_segment_t *h)
{
	zd_segment_info_t i;

	REQUIRE_OK(zd_segment_info(h, &i));
	return i.handle.futex_waits;
}

static uint64_t futex_wakes(zd_segment_t *h)
{
	zd_segment_info_t i;

	REQUIRE_OK(zd_segment_info(h, &i));
	return i.handle.futex_wakes;
}

/* Waits until the sleeper's handle has made a futex wait beyond `before`
 * (at most 5 s), then 3 ms more so it is in the kernel.  Returns when the
 * wait began (as seen here). */
static uint64_t wait_parked(struct sleeper *s, uint64_t before)
{
	uint64_t until = zdt_now_ns() + 5 * ZDT_S, t;

	while (futex_waits(s->seg) <= before) {
		REQUIRE(!sleeper_done(s));
		REQUIRE(zdt_now_ns() < until);
		usleep(50);
	}
	t = zdt_now_ns();
	zdt_sleep_ms(3);
	REQUIRE(!sleeper_done(s));
	return t;
}

/* Waits (at most 5 s) for the sleeper to return; joins it. */
static void wait_returned(struct sleeper *s)
{
	uint64_t until = zdt_now_ns() + 5 * ZDT_S;

	while (!sleeper_done(s) && zdt_now_ns() < until)
		usleep(20);
	REQUIRE(sleeper_done(s));
	sleeper_join(s);
}

/* The sleeper's handle: not given to the runner, so a case that ends early
 * (a REQUIRE failing while the thread still waits) leaves it mapped under
 * the thread instead of closing it there; the case closes it after the
 * join.  Each case also arms the watchdog. */
static zd_segment_t *sleeper_handle(zdt_ctx_t *c)
{
	zd_segment_t *h = NULL;

	zdt_watchdog(40);
	REQUIRE_OK(zd_segment_attach_posix(c->name, &h));
	return h;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static void check_latencies(const char *what, uint64_t *ns, int n)
{
	qsort(ns, (size_t)n, sizeof(ns[0]), cmp_u64);
	printf("# %s: %d rounds, min %.1f us, median %.1f us, max %.1f us\n",
	       what, n, (double)ns[0] / 1e3, (double)ns[n / 2] / 1e3,
	       (double)ns[n - 1] / 1e3);
	CHECK_LE(ns[n / 2], WAKE_MEDIAN_NS);
	CHECK_LE(ns[n - 1], WAKE_MAX_NS);
}

/* The segment is full: SLOTS - LOANS samples unread by reader R (the first
 * taken and held, so its slot is read but pinned), LOANS slots loaned by
 * writer X.  Writer W blocks.  X commits its loans one by one: W must not
 * wake, and X must make no futex wake (only a writer sleeps).  Then R
 * releases its view, which frees that slot: W's loan returns with it. */
static void writer_not_woken_by_commits(zdt_ctx_t *c)
{
	zd_segment_t *x = zdt_attach(c), *w = sleeper_handle(c);
	uint32_t loans[LOANS], first_slot = UINT32_MAX;
	uint64_t base, after, wakes0, wakes1, t_park, t_end, t_rel;
	struct sleeper s;
	zd_reader_t r;
	zd_view_t held;

	REQUIRE_OK(zd_reader_open(c->seg, 0, &r));
	for (uint32_t i = 0; i < LOANS; i++)
		REQUIRE_OK(zd_writer_loan(x, ZD_OVERFLOW_FAIL, 0, 0, &loans[i]));
	for (uint32_t i = 0; i < SLOTS - LOANS; i++)
		zdt_put(c->seg, (unsigned char)i, 8, i == 0 ? &first_slot : NULL);
	REQUIRE_OK(zd_reader_take(c->seg, &r, &held));
	CHECK_EQ(held.sn, 0);
	CHECK_EQ(held.slot, first_slot);
	{
		uint32_t t;

		REQUIRE_RC(zd_writer_loan(w, ZD_OVERFLOW_FAIL, 0, 0, &t), -EAGAIN);
	}

	base = futex_waits(w);
	sleeper_start(&s, w, NULL);
	t_park = wait_parked(&s, base);
	base = futex_waits(w);
	wakes0 = futex_wakes(x);
	for (uint32_t i = 0; i < LOANS; i++) {
		CHECK_OK(zd_slot_commit(x, loans[i], "x", 1, NULL));
		zdt_sleep_ms(1);
	}
	zdt_sleep_ms(3);
	t_end = zdt_now_ns();
	after = futex_waits(w);
	wakes1 = futex_wakes(x);
	printf("# blocked writer: futex waits %llu -> %llu over %u commits in "
	       "%.1f ms; the committer made %llu futex wakes\n",
	       (unsigned long long)base, (unsigned long long)after, LOANS,
	       (double)(t_end - t_park) / 1e6,
	       (unsigned long long)(wakes1 - wakes0));
	CHECK(!sleeper_done(&s));
	CHECK_LE(after - base, (t_end - t_park) / SLICE_NS);
	CHECK_EQ(wakes1 - wakes0, 0);

	t_rel = zdt_now_ns();
	CHECK_OK(zd_slot_release(c->seg, &held));
	wait_returned(&s);
	printf("# release to loan: %.1f us\n", (double)(s.t_ret - t_rel) / 1e3);
	CHECK_OK(s.rc);
	CHECK_EQ(s.slot, first_slot);
	CHECK_LE(s.t_ret - t_rel, WAKE_MAX_NS);
	if (s.rc == 0)
		CHECK_OK(zd_slot_discard(w, s.slot));
	CHECK_OK(zd_reader_close(c->seg, &r));
	zd_segment_close(w);
}

/* Reader R1 has taken everything and blocks; reader R2 holds EVENTS views
 * of samples R1 has read and releases them one by one: R1 must not wake,
 * and R2 must make no futex wake (only a reader sleeps).  Then a commit:
 * R1 returns with it. */
static void reader_not_woken_by_releases(zdt_ctx_t *c)
{
	zd_segment_t *h1 = sleeper_handle(c), *h2 = zdt_attach(c);
	uint64_t base, after, wakes0, wakes1, t_park, t_end, t_commit, sn;
	zd_view_t held[EVENTS], v;
	struct sleeper s;
	zd_reader_t r1, r2;

	REQUIRE_OK(zd_reader_open(h1, 0, &r1));
	REQUIRE_OK(zd_reader_open(h2, 0, &r2));
	for (uint32_t i = 0; i < EVENTS; i++)
		zdt_put(c->seg, (unsigned char)i, 8, NULL);
	for (uint32_t i = 0; i < EVENTS; i++) {
		REQUIRE_OK(zd_reader_take(h1, &r1, &v));
		CHECK_EQ(v.sn, i);
		REQUIRE_OK(zd_slot_release(h1, &v));
		REQUIRE_OK(zd_reader_take(h2, &r2, &held[i]));
		CHECK_EQ(held[i].sn, i);
	}
	REQUIRE_RC(zd_reader_take(h1, &r1, &v), -EAGAIN);

	base = futex_waits(h1);
	sleeper_start(&s, h1, &r1);
	t_park = wait_parked(&s, base);
	base = futex_waits(h1);
	wakes0 = futex_wakes(h2);
	for (uint32_t i = 0; i < EVENTS; i++) {
		CHECK_OK(zd_slot_release(h2, &held[i]));
		zdt_sleep_ms(1);
	}
	zdt_sleep_ms(3);
	t_end = zdt_now_ns();
	after = futex_waits(h1);
	wakes1 = futex_wakes(h2);
	printf("# blocked reader: futex waits %llu -> %llu over %u releases in "
	       "%.1f ms; the releaser made %llu futex wakes\n",
	       (unsigned long long)base, (unsigned long long)after, EVENTS,
	       (double)(t_end - t_park) / 1e6,
	       (unsigned long long)(wakes1 - wakes0));
	CHECK(!sleeper_done(&s));
	CHECK_LE(after - base, (t_end - t_park) / SLICE_NS);
	CHECK_EQ(wakes1 - wakes0, 0);

	t_commit = zdt_now_ns();
	sn = zdt_put(c->seg, 0xee, 8, NULL);
	wait_returned(&s);
	printf("# commit to take: %.1f us\n", (double)(s.t_ret - t_commit) / 1e3);
	CHECK_OK(s.rc);
	CHECK_EQ(sn, EVENTS);
	CHECK_LE(s.t_ret - t_commit, WAKE_MAX_NS);
	if (s.rc == 0) {
		CHECK_EQ(s.view.sn, sn);
		CHECK_OK(zd_slot_release(h1, &s.view));
	}
	CHECK_OK(zd_reader_close(h1, &r1));
	CHECK_OK(zd_reader_close(h2, &r2));
	zd_segment_close(h1);
}

/* ROUNDS times: fill the segment (the first sample taken and held by R),
 * block W, release: one futex wake, and the loan returns promptly. */
static void writer_woken_by_release_promptly(zdt_ctx_t *c)
{
	zd_segment_t *w = sleeper_handle(c);
	uint64_t lat[ROUNDS];
	zd_reader_t r;

	REQUIRE_OK(zd_reader_open(c->seg, 0, &r));
	for (int k = 0; k < ROUNDS; k++) {
		struct sleeper s;
		zd_view_t held, v;
		uint64_t t_rel, before, wakes;
		uint32_t first = UINT32_MAX;

		for (uint32_t i = 0; i < SLOTS; i++)
			zdt_put(c->seg, (unsigned char)i, 8, i == 0 ? &first : NULL);
		REQUIRE_OK(zd_reader_take(c->seg, &r, &held));
		before = futex_waits(w);
		sleeper_start(&s, w, NULL);
		(void)wait_parked(&s, before);
		wakes = futex_wakes(c->seg);
		t_rel = zdt_now_ns();
		CHECK_OK(zd_slot_release(c->seg, &held));
		CHECK_EQ(futex_wakes(c->seg) - wakes, 1);
		wait_returned(&s);
		REQUIRE_OK(s.rc);
		CHECK_EQ(s.slot, first);
		lat[k] = s.t_ret - t_rel;
		CHECK_OK(zd_slot_discard(w, s.slot));
		/* drain the rest so the next round starts empty */
		for (uint32_t i = 1; i < SLOTS; i++) {
			REQUIRE_OK(zd_reader_take(c->seg, &r, &v));
			CHECK_OK(zd_slot_release(c->seg, &v));
		}
	}
	check_latencies("release to blocked loan", lat, ROUNDS);
	CHECK_OK(zd_reader_close(c->seg, &r));
	zd_segment_close(w);
}

/* ROUNDS times: R1 blocks with nothing unread; a commit makes one futex
 * wake and R1 returns promptly. */
static void reader_woken_by_commit_promptly(zdt_ctx_t *c)
{
	zd_segment_t *h1 = sleeper_handle(c);
	uint64_t lat[ROUNDS];
	zd_reader_t r1;

	REQUIRE_OK(zd_reader_open(h1, 0, &r1));
	for (int k = 0; k < ROUNDS; k++) {
		struct sleeper s;
		uint64_t t_commit, sn, before = futex_waits(h1), wakes;

		sleeper_start(&s, h1, &r1);
		(void)wait_parked(&s, before);
		wakes = futex_wakes(c->seg);
		t_commit = zdt_now_ns();
		sn = zdt_put(c->seg, (unsigned char)k, 8, NULL);
		CHECK_EQ(futex_wakes(c->seg) - wakes, 1);
		wait_returned(&s);
		REQUIRE_OK(s.rc);
		CHECK_EQ(s.view.sn, sn);
		lat[k] = s.t_ret - t_commit;
		CHECK_OK(zd_slot_release(h1, &s.view));
	}
	check_latencies("commit to blocked take", lat, ROUNDS);
	CHECK_OK(zd_reader_close(h1, &r1));
	zd_segment_close(h1);
}

int main(void)
{
	zd_config_t cfg = zdt_cfg(SLOTS, 64);

	zdt_run_posix("writer_not_woken_by_commits", &cfg,
		      writer_not_woken_by_commits);
	zdt_run_posix("reader_not_woken_by_releases", &cfg,
		      reader_not_woken_by_releases);
	zdt_run_posix("writer_woken_by_release_promptly", &cfg,
		      writer_woken_by_release_promptly);
	zdt_run_posix("reader_woken_by_commit_promptly", &cfg,
		      reader_woken_by_commit_promptly);
	return zdt_finish();
}
