/* test_notify.c — the generation word and zd_notify_wait (zdshm/notify.h):
 * which operations bump it, immediate return on a stale generation,
 * deadlines, the spin path, many sleepers, signals, 32-bit wrap.
 */
#include "zdtest.h"

#include "layout.h"

#define LATE_NS (ZDT_SANITIZED ? 1500 * ZDT_MS : 700 * ZDT_MS)

#define CHECK_BUMPS(seg, stmt)                                               \
	do {                                                                 \
		uint64_t g_before_ = zd_notify_generation(seg);              \
		stmt;                                                        \
		zdt_count();                                                 \
		if (zd_notify_generation(seg) == g_before_)                  \
			zdt_fail(__FILE__, __LINE__,                         \
				 "generation did not change after %s", #stmt);\
	} while (0)

static void operations_bump_generation(zdt_ctx_t *c)
{
	zd_reader_t r;
	zd_view_t v;
	uint32_t s, ev;

	REQUIRE_OK(zd_reader_open(c->seg, 0, &r));
	REQUIRE_OK(zd_slot_reserve(c->seg, 0, &s));
	CHECK_BUMPS(c->seg, CHECK_OK(zd_slot_commit(c->seg, s, "a", 1, NULL)));
	REQUIRE_OK(zd_slot_reserve(c->seg, zd_segment_active_mask(c->seg), &s));
	CHECK_BUMPS(c->seg, CHECK_OK(zd_slot_discard(c->seg, s)));
	REQUIRE_OK(zd_slot_reserve(c->seg, zd_segment_active_mask(c->seg), &s));
	CHECK_BUMPS(c->seg, CHECK_OK(zd_slot_commit_in_place(c->seg, s, 0, NULL)));
	/* the release of a reader view that makes the slot reusable wakes
	 * writers; the release of a handle view of a sample r still needs
	 * frees nothing and wakes nobody */
	REQUIRE_OK(zd_reader_take(c->seg, &r, &v));
	CHECK_BUMPS(c->seg, CHECK_OK(zd_slot_release(c->seg, &v)));
	REQUIRE_OK(zd_slot_acquire(c->seg, s, &v));
	{
		uint64_t g = zd_notify_generation(c->seg);

		CHECK_OK(zd_slot_release(c->seg, &v));
		CHECK_EQ(zd_notify_generation(c->seg), g);
	}
	CHECK_BUMPS(c->seg, CHECK_OK(zd_slot_mark_read(c->seg, s, 5)));
	CHECK_BUMPS(c->seg, CHECK_OK(zd_slot_mark_reader_disconnected(c->seg, 6)));
	CHECK_BUMPS(c->seg, CHECK_OK(zd_slot_evict_stale(c->seg, 0,
							zd_segment_active_mask(c->seg),
							&ev)));
	CHECK_EQ(ev, 1); /* sn 1, unread by r */
	CHECK_BUMPS(c->seg, CHECK_OK(zd_reader_close(c->seg, &r)));
	CHECK_BUMPS(c->seg, zd_notify_bump(c->seg));
	/* the generation is shared by every handle of the segment */
	if (c->backend == ZD_BACKEND_POSIX) {
		zd_segment_t *other = zdt_attach(c);

		CHECK_EQ(zd_notify_generation(other), zd_notify_generation(c->seg));
		CHECK_BUMPS(c->seg, zd_notify_bump(other));
	}
}

static void stale_generation_returns_at_once(zdt_ctx_t *c)
{
	uint64_t g = zd_notify_generation(c->seg), t0;
	uint32_t s;

	REQUIRE_OK(zd_slot_reserve(c->seg, 0, &s));
	REQUIRE_OK(zd_slot_commit(c->seg, s, "x", 1, NULL));
	t0 = zdt_now_ns();
	CHECK_OK(zd_notify_wait(c->seg, g, UINT64_MAX, 0));
	CHECK_OK(zd_notify_wait(c->seg, g, zd_now_ns() + 10 * ZDT_S, 1 * ZDT_MS));
	CHECK_OK(zd_notify_wait_for(c->seg, g, 10 * ZDT_S));
	/* even with a deadline that has passed, a change is reported */
	CHECK_OK(zd_notify_wait(c->seg, g, 0, 0));
	CHECK_LT(zdt_now_ns() - t0, 100 * ZDT_MS);
}

static void times_out_at_deadline(zdt_ctx_t *c)
{
	uint64_t g = zd_notify_generation(c->seg), deadline, back, t0;

	deadline = zdt_now_ns() + 120 * ZDT_MS;
	CHECK_RC(zd_notify_wait(c->seg, g, deadline, 0), -ETIMEDOUT);
	back = zdt_now_ns();
	CHECK_GE(back, deadline);
	CHECK_LT(back - deadline, LATE_NS);
	/* relative form */
	t0 = zdt_now_ns();
	CHECK_RC(zd_notify_wait_for(c->seg, g, 80 * ZDT_MS), -ETIMEDOUT);
	back = zdt_now_ns();
	CHECK_GE(back - t0, 80 * ZDT_MS);
	CHECK_LT(back - t0, 80 * ZDT_MS + LATE_NS);
	/* a past deadline: at once */
	t0 = zdt_now_ns();
	CHECK_RC(zd_notify_wait(c->seg, g, 0, 0), -ETIMEDOUT);
	CHECK_RC(zd_notify_wait(c->seg, g, zd_now_ns(), 0), -ETIMEDOUT);
	CHECK_RC(zd_notify_wait_for(c->seg, g, 0), -ETIMEDOUT);
	CHECK_LT(zdt_now_ns() - t0, 100 * ZDT_MS);
	CHECK_EQ(zd_notify_generation(c->seg), g);
}

static void spin_path(zdt_ctx_t *c)
{
	uint64_t g = zd_notify_generation(c->seg), deadline, back;

	/* spinning alone, then parking, then the deadline */
	deadline = zdt_now_ns() + 60 * ZDT_MS;
	CHECK_RC(zd_notify_wait(c->seg, g, deadline, 10 * ZDT_MS), -ETIMEDOUT);
	back = zdt_now_ns();
	CHECK_GE(back, deadline);
	CHECK_LT(back - deadline, LATE_NS);
	/* a spin longer than the deadline stops at the deadline */
	deadline = zdt_now_ns() + 50 * ZDT_MS;
	CHECK_RC(zd_notify_wait(c->seg, g, deadline, 5 * ZDT_S), -ETIMEDOUT);
	back = zdt_now_ns();
	CHECK_GE(back, deadline);
	CHECK_LT(back - deadline, LATE_NS);
	/* an absurd spin does not overflow into "no spin" or "forever" */
	deadline = zdt_now_ns() + 50 * ZDT_MS;
	CHECK_RC(zd_notify_wait(c->seg, g, deadline, UINT64_MAX), -ETIMEDOUT);
	back = zdt_now_ns();
	CHECK_GE(back, deadline);
	CHECK_LT(back - deadline, LATE_NS);
}

struct bumper {
	zd_segment_t *seg;
	unsigned delay_ms;
	uint64_t bumped_at;
};

static void *bump_later(void *arg)
{
	struct bumper *b = arg;

	zdt_sleep_ms(b->delay_ms);
	b->bumped_at = zdt_now_ns();
	zd_notify_bump(b->seg);
	return NULL;
}

static void woken_while_spinning_and_parked(zdt_ctx_t *c)
{
	static const struct {
		unsigned delay_ms;
		uint64_t spin_ns;
	} t[] = {
		{ 5, 500 * ZDT_MS },   /* the change comes during the spin   */
		{ 100, 5 * ZDT_MS },   /* after the spin: parked on the futex */
		{ 50, 0 },             /* no spin at all                      */
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		struct bumper b = { c->seg, t[i].delay_ms, 0 };
		uint64_t g = zd_notify_generation(c->seg), t0, back;
		pthread_t th;
		int rc;

		REQUIRE(pthread_create(&th, NULL, bump_later, &b) == 0);
		t0 = zdt_now_ns();
		do {
			rc = zd_notify_wait(c->seg, g, t0 + 10 * ZDT_S, t[i].spin_ns);
		} while (rc == 0 && zd_notify_generation(c->seg) == g);
		back = zdt_now_ns();
		pthread_join(th, NULL);
		CHECK_OK(rc);
		CHECK_NE(zd_notify_generation(c->seg), g);
		CHECK_GE(back, b.bumped_at);
		CHECK_LT(back - b.bumped_at, LATE_NS);
	}
}

/* Many sleepers, one bump: all wake. */
#define NWAITERS 8

struct waiter {
	zd_segment_t *seg;
	uint64_t gen;
	int *ready;
	int rc;
	uint64_t woke_at;
};

static void *wait_once(void *arg)
{
	struct waiter *w = arg;

	__atomic_fetch_add(w->ready, 1, __ATOMIC_SEQ_CST);
	do {
		w->rc = zd_notify_wait(w->seg, w->gen, zd_now_ns() + 10 * ZDT_S, 0);
	} while (w->rc == 0 && zd_notify_generation(w->seg) == w->gen);
	w->woke_at = zdt_now_ns();
	return NULL;
}

static void many_waiters_all_wake(zdt_ctx_t *c)
{
	struct waiter w[NWAITERS];
	pthread_t th[NWAITERS];
	zd_segment_t *other = c->backend == ZD_BACKEND_POSIX ? zdt_attach(c) : NULL;
	uint64_t g = zd_notify_generation(c->seg), bumped;
	int ready = 0;

	for (int i = 0; i < NWAITERS; i++) {
		/* on posix half of them sleep through a second mapping */
		w[i].seg = other && (i & 1) ? other : c->seg;
		w[i].gen = g;
		w[i].ready = &ready;
		w[i].rc = -1;
		REQUIRE(pthread_create(&th[i], NULL, wait_once, &w[i]) == 0);
	}
	while (__atomic_load_n(&ready, __ATOMIC_SEQ_CST) < NWAITERS)
		zdt_sleep_ms(1);
	zdt_sleep_ms(100); /* let them park */
	bumped = zdt_now_ns();
	zd_notify_bump(c->seg);
	for (int i = 0; i < NWAITERS; i++)
		pthread_join(th[i], NULL);
	for (int i = 0; i < NWAITERS; i++) {
		CHECK_OK(w[i].rc);
		CHECK_LT(w[i].woke_at - bumped, LATE_NS);
	}
	/* every waiter deregistered: the waiter count is back to 0 */
	if (c->backend == ZD_BACKEND_POSIX) {
		char path[512];
		uint32_t waiters = 99;
		int fd;

		REQUIRE(zdt_shm_path(path, sizeof(path), c->name));
		fd = open(path, O_RDONLY | O_CLOEXEC);
		REQUIRE(fd >= 0);
		CHECK_EQ(pread(fd, &waiters, 4,
			       offsetof(struct zdi_segment_header, data.waiters)), 4);
		close(fd);
		CHECK_EQ(waiters, 0);
	}
}

/* A signal ends the wait with -EINTR (the caller checks its signals). */
static volatile sig_atomic_t got_usr1;

static void on_usr1(int sig)
{
	(void)sig;
	got_usr1 = 1;
}

struct intr_waiter {
	zd_segment_t *seg;
	uint64_t gen;
	volatile int started;
	int rc;
};

static void *wait_for_signal(void *arg)
{
	struct intr_waiter *w = arg;

	__atomic_store_n(&w->started, 1, __ATOMIC_SEQ_CST);
	w->rc = zd_notify_wait(w->seg, w->gen, zd_now_ns() + 5 * ZDT_S, 0);
	return NULL;
}

static void signal_interrupts_wait(zdt_ctx_t *c)
{
	struct sigaction sa, old;
	struct intr_waiter w = { c->seg, zd_notify_generation(c->seg), 0, 1 };
	pthread_t th;
	uint64_t t0;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_usr1; /* no SA_RESTART */
	sigaction(SIGUSR1, &sa, &old);
	got_usr1 = 0;
	REQUIRE(pthread_create(&th, NULL, wait_for_signal, &w) == 0);
	while (!__atomic_load_n(&w.started, __ATOMIC_SEQ_CST))
		zdt_sleep_ms(1);
	zdt_sleep_ms(100);
	t0 = zdt_now_ns();
	pthread_kill(th, SIGUSR1);
	pthread_join(th, NULL);
	sigaction(SIGUSR1, &old, NULL);
	CHECK(got_usr1);
	CHECK_RC(w.rc, -EINTR);
	CHECK_LT(zdt_now_ns() - t0, 2 * ZDT_S);
}

/* The generation is a 32-bit futex word: it wraps, and waiting across
 * the wrap works. */
static void generation_wraps(zdt_ctx_t *c)
{
	uint32_t *gen_word = NULL;
	uint64_t g;
	uint32_t s;
	void *data = NULL;

	/* locate the header from a loan's data pointer (both backends) */
	REQUIRE_OK(zd_slot_reserve(c->seg, 0, &s));
	REQUIRE_OK(zd_slot_data_ptr(c->seg, s, &data, NULL, NULL));
	{
		unsigned char *base = (unsigned char *)data - ZD_SLOT_HEADER_SIZE -
				      zdt_slots_offset(c->seg) -
				      (uint64_t)s * zd_segment_slot_total_size(c->seg);

		REQUIRE(((struct zdi_segment_header *)base)->magic == ZDI_MAGIC);
		gen_word = &((struct zdi_segment_header *)base)->data.gen;
	}
	__atomic_store_n(gen_word, UINT32_MAX, __ATOMIC_SEQ_CST);
	g = zd_notify_generation(c->seg);
	CHECK_EQ((uint32_t)g, UINT32_MAX);     /* the data word; space above */
	CHECK_RC(zd_notify_wait(c->seg, g, zd_now_ns() + 20 * ZDT_MS, 0), -ETIMEDOUT);
	CHECK_OK(zd_slot_commit(c->seg, s, "w", 1, NULL));
	CHECK_NE(zd_notify_generation(c->seg), g);
	CHECK_EQ((uint32_t)zd_notify_generation(c->seg), 0);
	CHECK_OK(zd_notify_wait(c->seg, g, zd_now_ns() + 5 * ZDT_S, 0));
	/* and a sleeper parked on UINT32_MAX is woken by the wrapping bump */
	__atomic_store_n(gen_word, UINT32_MAX, __ATOMIC_SEQ_CST);
	{
		struct bumper b = { c->seg, 50, 0 };
		pthread_t th;
		int rc;

		g = zd_notify_generation(c->seg);
		CHECK_EQ((uint32_t)g, UINT32_MAX);
		REQUIRE(pthread_create(&th, NULL, bump_later, &b) == 0);
		rc = zd_notify_wait(c->seg, g, zd_now_ns() + 5 * ZDT_S, 0);
		pthread_join(th, NULL);
		CHECK_OK(rc);
		CHECK_EQ((uint32_t)zd_notify_generation(c->seg), 0);
		CHECK_LT(zdt_now_ns() - b.bumped_at, LATE_NS);
	}
}

int main(void)
{
	zd_config_t c4 = zdt_cfg(4, 16);

	zdt_run_both("operations_bump_generation", &c4, operations_bump_generation);
	zdt_run_both("stale_generation_returns_at_once", &c4,
		     stale_generation_returns_at_once);
	zdt_run_both("times_out_at_deadline", &c4, times_out_at_deadline);
	zdt_run_both("spin_path", &c4, spin_path);
	zdt_run_both("woken_while_spinning_and_parked", &c4,
		     woken_while_spinning_and_parked);
	zdt_run_both("many_waiters_all_wake", &c4, many_waiters_all_wake);
	zdt_run_both("signal_interrupts_wait", &c4, signal_interrupts_wait);
	zdt_run_both("generation_wraps", &c4, generation_wraps);
	return zdt_finish();
}
