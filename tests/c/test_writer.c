/* test_writer.c — zd_writer_loan and its overflow policies: FAIL, BLOCK
 * (deadline, woken by a release from another thread), RECLAIM (oldest
 * committed unpinned slot, drops counted per reader, pinned slots never
 * taken).
 */
#include "zdtest.h"

/* How late a timed-out call may return.  Generous: the machines are
 * shared and the sanitizer builds are slow. */
#define LATE_NS (ZDT_SANITIZED ? 1500 * ZDT_MS : 700 * ZDT_MS)

#define put(seg, fill, slot_out) zdt_put(seg, fill, 32, slot_out)

static uint64_t dropped(zd_segment_t *seg, zd_reader_t *r)
{
	zd_reader_stats_t st;

	if (zd_reader_stats(seg, r, &st) != 0)
		return UINT64_MAX;
	return st.dropped;
}

static void fail_policy(zdt_ctx_t *c)
{
	zd_reader_t r;
	uint32_t x = 4242;
	uint64_t t0, took;
	zd_view_t v;

	REQUIRE_OK(zd_reader_open(c->seg, 0, &r));
	put(c->seg, 1, NULL);
	put(c->seg, 2, NULL);
	t0 = zdt_now_ns();
	CHECK_RC(zd_writer_loan(c->seg, ZD_OVERFLOW_FAIL, UINT64_MAX, 0, &x), -EAGAIN);
	took = zdt_now_ns() - t0;
	CHECK_LT(took, 50 * ZDT_MS);
	CHECK_EQ(x, 4242);
	/* a deadline does not turn FAIL into a wait */
	t0 = zdt_now_ns();
	CHECK_RC(zd_writer_loan(c->seg, ZD_OVERFLOW_FAIL, zd_now_ns() + 2 * ZDT_S,
				0, &x), -EAGAIN);
	CHECK_LT(zdt_now_ns() - t0, 50 * ZDT_MS);
	/* nothing was dropped, nothing reclaimed */
	CHECK_EQ(dropped(c->seg, &r), 0);
	REQUIRE_OK(zd_reader_take(c->seg, &r, &v));
	CHECK_EQ(v.sn, 0);
	CHECK_OK(zd_slot_release(c->seg, &v));
	CHECK_OK(zd_writer_loan(c->seg, ZD_OVERFLOW_FAIL, 0, 0, &x));
	CHECK_EQ(x, v.slot);
	/* all loaned (no reader needed): still -EAGAIN */
	CHECK_RC(zd_writer_loan(c->seg, ZD_OVERFLOW_FAIL, 0, 0, &x), -EAGAIN);
}

static void bad_arguments(zdt_ctx_t *c)
{
	uint32_t x;

	CHECK_RC(zd_writer_loan(c->seg, (zd_overflow_t)3, 0, 0, &x), -EINVAL);
	CHECK_RC(zd_writer_loan(c->seg, (zd_overflow_t)-1, 0, 0, &x), -EINVAL);
	/* nothing was loaned by the refused calls */
	CHECK_EQ(zd_slot_state(c->seg, 0), 0);
	CHECK_EQ(zd_slot_state(c->seg, 1), 0);
}

static void block_times_out_at_deadline(zdt_ctx_t *c)
{
	zd_reader_t r;
	uint32_t x = 4242;
	uint64_t t0, deadline, back;

	REQUIRE_OK(zd_reader_open(c->seg, 0, &r));
	put(c->seg, 1, NULL);
	put(c->seg, 2, NULL);
	t0 = zdt_now_ns();
	deadline = t0 + 250 * ZDT_MS;
	CHECK_RC(zd_writer_loan(c->seg, ZD_OVERFLOW_BLOCK, deadline, 0, &x),
		 -ETIMEDOUT);
	back = zdt_now_ns();
	CHECK_GE(back, deadline);          /* not early */
	CHECK_LT(back - deadline, LATE_NS); /* not much later */
	CHECK_EQ(x, 4242);
	/* the same with spinning first */
	deadline = zdt_now_ns() + 100 * ZDT_MS;
	CHECK_RC(zd_writer_loan(c->seg, ZD_OVERFLOW_BLOCK, deadline, 5 * ZDT_MS,
				&x), -ETIMEDOUT);
	back = zdt_now_ns();
	CHECK_GE(back, deadline);
	CHECK_LT(back - deadline, LATE_NS);
	/* a deadline in the past: at once */
	t0 = zdt_now_ns();
	CHECK_RC(zd_writer_loan(c->seg, ZD_OVERFLOW_BLOCK, 0, 0, &x), -ETIMEDOUT);
	CHECK_RC(zd_writer_loan(c->seg, ZD_OVERFLOW_BLOCK, zd_now_ns() - 1, 0, &x),
		 -ETIMEDOUT);
	CHECK_LT(zdt_now_ns() - t0, 200 * ZDT_MS);
	/* and the deadline is CLOCK_MONOTONIC: zd_now_ns agrees with ours */
	{
		uint64_t a = zdt_now_ns(), b = zd_now_ns(), d = zdt_now_ns();

		CHECK_LE(a, b);
		CHECK_LE(b, d);
	}
}

struct releaser {
	zd_segment_t *seg;
	zd_reader_t *r;
	unsigned delay_ms;
	int rc_take, rc_release;
	uint64_t released_at;
};

static void *take_and_release_later(void *arg)
{
	struct releaser *a = arg;
	zd_view_t v;

	zdt_sleep_ms(a->delay_ms);
	a->rc_take = zd_reader_take(a->seg, a->r, &v);
	if (a->rc_take == 0) {
		a->released_at = zdt_now_ns();
		a->rc_release = zd_slot_release(a->seg, &v);
	}
	return NULL;
}

static void block_woken_by_release(zdt_ctx_t *c, uint64_t spin_ns)
{
	zd_reader_t r;
	struct releaser a = { c->seg, &r, 100, -1, -1, 0 };
	pthread_t th;
	uint32_t x = 4242, s0;
	uint64_t t0, back;
	int rc;

	REQUIRE_OK(zd_reader_open(c->seg, 0, &r));
	put(c->seg, 1, &s0);
	put(c->seg, 2, NULL);
	REQUIRE(pthread_create(&th, NULL, take_and_release_later, &a) == 0);
	t0 = zdt_now_ns();
	rc = zd_writer_loan(c->seg, ZD_OVERFLOW_BLOCK, t0 + 10 * ZDT_S, spin_ns, &x);
	back = zdt_now_ns();
	pthread_join(th, NULL);
	CHECK_OK(rc);
	CHECK_OK(a.rc_take);
	CHECK_OK(a.rc_release);
	/* the slot of sn 0, read and released by the thread */
	CHECK_EQ(x, s0);
	/* it waited for the release, and woke soon after it */
	CHECK_GE(back, a.released_at);
	CHECK_GE(back - t0, 80 * ZDT_MS);
	CHECK_LT(back - a.released_at, LATE_NS);
	CHECK_EQ(dropped(c->seg, &r), 0);
}

static void block_woken_by_release_parked(zdt_ctx_t *c)
{
	block_woken_by_release(c, 0);
}

static void block_woken_by_release_spinning(zdt_ctx_t *c)
{
	block_woken_by_release(c, 2 * ZDT_MS);
}

/* A writer blocked because every slot is loaned wakes when another
 * thread commits-and-frees or discards. */
struct discarder {
	zd_segment_t *seg;
	uint32_t slot;
	int rc;
};

static void *discard_later(void *arg)
{
	struct discarder *d = arg;

	zdt_sleep_ms(80);
	d->rc = zd_slot_discard(d->seg, d->slot);
	return NULL;
}

static void block_woken_by_discard(zdt_ctx_t *c)
{
	struct discarder d = { c->seg, 0, -1 };
	uint32_t a, b, x = 4242;
	pthread_t th;
	int rc;

	REQUIRE_OK(zd_writer_loan(c->seg, ZD_OVERFLOW_BLOCK, UINT64_MAX, 0, &a));
	REQUIRE_OK(zd_writer_loan(c->seg, ZD_OVERFLOW_BLOCK, UINT64_MAX, 0, &b));
	d.slot = b;
	REQUIRE(pthread_create(&th, NULL, discard_later, &d) == 0);
	rc = zd_writer_loan(c->seg, ZD_OVERFLOW_BLOCK, zd_now_ns() + 10 * ZDT_S, 0,
			    &x);
	pthread_join(th, NULL);
	CHECK_OK(rc);
	CHECK_OK(d.rc);
	CHECK_EQ(x, b);
}

/* RECLAIM with two readers over four slots. */
static void reclaim_oldest_unpinned(zdt_ctx_t *c)
{
	zd_reader_t a, b;
	zd_view_t va, vb, v;
	zd_segment_info_t info;
	uint32_t slot[8], x;
	uint64_t sn;

	REQUIRE_OK(zd_reader_open(c->seg, 0, &a));
	REQUIRE_OK(zd_reader_open(c->seg, 0, &b));
	for (unsigned i = 0; i < 4; i++)
		put(c->seg, (unsigned char)(0x10 + i), &slot[i]);
	/* a reads sn 0; b reads nothing */
	REQUIRE_OK(zd_reader_take(c->seg, &a, &v));
	CHECK_EQ(v.sn, 0);
	CHECK_OK(zd_slot_release(c->seg, &v));
	CHECK_RC(zd_writer_loan(c->seg, ZD_OVERFLOW_FAIL, 0, 0, &x), -EAGAIN);

	/* 1: the oldest is sn 0; a had read it, b had not */
	REQUIRE_OK(zd_writer_loan(c->seg, ZD_OVERFLOW_RECLAIM, 0, 0, &x));
	CHECK_EQ(x, slot[0]);
	CHECK_EQ(dropped(c->seg, &a), 0);
	CHECK_EQ(dropped(c->seg, &b), 1);
	CHECK_OK(zd_segment_info(c->seg, &info));
	CHECK_EQ(info.counters.reclaims, 1);
	REQUIRE_OK(zd_slot_commit(c->seg, x, "\x14\x14\x14\x14", 4, &sn));
	CHECK_EQ(sn, 4);

	/* both readers now hold views of sn 1 */
	REQUIRE_OK(zd_reader_take(c->seg, &a, &va));
	REQUIRE_OK(zd_reader_take(c->seg, &b, &vb));
	CHECK_EQ(va.sn, 1);
	CHECK_EQ(vb.sn, 1);
	CHECK_EQ(va.slot, slot[1]);

	/* 2: sn 1 is pinned, so sn 2 is the oldest that can go; neither
	 * reader had read it */
	REQUIRE_OK(zd_writer_loan(c->seg, ZD_OVERFLOW_RECLAIM, 0, 0, &x));
	CHECK_EQ(x, slot[2]);
	CHECK_NE(x, va.slot);
	CHECK_EQ(dropped(c->seg, &a), 1);
	CHECK_EQ(dropped(c->seg, &b), 2);
	{
		unsigned char junk[32];

		memset(junk, 0xee, sizeof(junk));
		CHECK_OK(zd_slot_commit(c->seg, x, junk, sizeof(junk), &sn));
		CHECK_EQ(sn, 5);
	}
	/* the pinned views still show sn 1's bytes */
	CHECK_EQ(((const unsigned char *)va.data)[0], 0x11);
	CHECK_EQ(((const unsigned char *)vb.data)[31], 0x11);
	CHECK_OK(zd_slot_release(c->seg, &va));
	CHECK_OK(zd_slot_release(c->seg, &vb));

	/* the readers go on with sn 3 (sn 2 is gone), then 4, then 5 */
	for (uint64_t want = 3; want <= 5; want++) {
		REQUIRE_OK(zd_reader_take(c->seg, &a, &v));
		CHECK_EQ(v.sn, want);
		CHECK_OK(zd_slot_release(c->seg, &v));
		REQUIRE_OK(zd_reader_take(c->seg, &b, &v));
		CHECK_EQ(v.sn, want);
		CHECK_OK(zd_slot_release(c->seg, &v));
	}
	CHECK_OK(zd_segment_info(c->seg, &info));
	CHECK_EQ(info.counters.reclaims, 2);

	/* 3: with a free slot available, RECLAIM takes it and drops nothing */
	REQUIRE_OK(zd_writer_loan(c->seg, ZD_OVERFLOW_RECLAIM, 0, 0, &x));
	CHECK_EQ(dropped(c->seg, &a), 1);
	CHECK_EQ(dropped(c->seg, &b), 2);
	CHECK_OK(zd_segment_info(c->seg, &info));
	CHECK_EQ(info.counters.reclaims, 2);
	CHECK_OK(zd_slot_discard(c->seg, x));
}

/* A slot pinned by zd_slot_acquire (a handle view, not a reader's) is not
 * reclaimed either, and when everything is pinned RECLAIM waits like
 * BLOCK. */
static void reclaim_never_takes_pinned(zdt_ctx_t *c)
{
	zd_reader_t r;
	zd_view_t p0, p1;
	uint32_t s0, s1, x = 4242;
	uint64_t deadline, back;

	REQUIRE_OK(zd_reader_open(c->seg, 0, &r));
	put(c->seg, 1, &s0);
	put(c->seg, 2, &s1);
	REQUIRE_OK(zd_slot_acquire(c->seg, s0, &p0));
	REQUIRE_OK(zd_reader_take(c->seg, &r, &p1)); /* pins s0 too */
	CHECK_EQ(p1.slot, s0);
	/* s1 unread and unpinned: RECLAIM takes s1, not the older s0 */
	REQUIRE_OK(zd_writer_loan(c->seg, ZD_OVERFLOW_RECLAIM, 0, 0, &x));
	CHECK_EQ(x, s1);
	CHECK_EQ(dropped(c->seg, &r), 1);
	/* now: s0 pinned twice, s1 loaned: RECLAIM must wait and time out */
	deadline = zdt_now_ns() + 150 * ZDT_MS;
	x = 4242;
	CHECK_RC(zd_writer_loan(c->seg, ZD_OVERFLOW_RECLAIM, deadline, 0, &x),
		 -ETIMEDOUT);
	back = zdt_now_ns();
	CHECK_GE(back, deadline);
	CHECK_LT(back - deadline, LATE_NS);
	CHECK_EQ(x, 4242);
	CHECK_EQ(zd_slot_state(c->seg, s0), 2);
	/* releasing one pin is not enough; releasing both frees s0 */
	CHECK_OK(zd_slot_release(c->seg, &p1));
	CHECK_RC(zd_writer_loan(c->seg, ZD_OVERFLOW_RECLAIM, 0, 0, &x), -ETIMEDOUT);
	CHECK_OK(zd_slot_release(c->seg, &p0));
	CHECK_OK(zd_writer_loan(c->seg, ZD_OVERFLOW_RECLAIM, 0, 0, &x));
	CHECK_EQ(x, s0);
	/* r had read sn 0: no new drop */
	CHECK_EQ(dropped(c->seg, &r), 1);
}

/* RECLAIM blocked on pins wakes when another thread releases. */
static void *release_later(void *arg)
{
	void **a = arg;

	zdt_sleep_ms(80);
	*(int *)a[2] = zd_slot_release(a[0], a[1]);
	return NULL;
}

static void reclaim_woken_by_release(zdt_ctx_t *c)
{
	zd_view_t p;
	uint32_t s0, x = 4242;
	pthread_t th;
	int rc_rel = -1, rc;
	void *args[3] = { c->seg, &p, &rc_rel };

	put(c->seg, 1, &s0);
	REQUIRE_OK(zd_slot_acquire(c->seg, s0, &p));
	REQUIRE(pthread_create(&th, NULL, release_later, args) == 0);
	rc = zd_writer_loan(c->seg, ZD_OVERFLOW_RECLAIM, zd_now_ns() + 10 * ZDT_S,
			    0, &x);
	pthread_join(th, NULL);
	CHECK_OK(rc);
	CHECK_OK(rc_rel);
	CHECK_EQ(x, s0);
}

int main(void)
{
	zd_config_t c1 = zdt_cfg(1, 32);
	zd_config_t c2 = zdt_cfg(2, 32);
	zd_config_t c4 = zdt_cfg(4, 32);

	zdt_run_both("fail_policy", &c2, fail_policy);
	zdt_run_both("bad_arguments", &c2, bad_arguments);
	zdt_run_both("block_times_out_at_deadline", &c2,
		     block_times_out_at_deadline);
	zdt_run_both("block_woken_by_release_parked", &c2,
		     block_woken_by_release_parked);
	zdt_run_both("block_woken_by_release_spinning", &c2,
		     block_woken_by_release_spinning);
	zdt_run_both("block_woken_by_discard", &c2, block_woken_by_discard);
	zdt_run_both("reclaim_oldest_unpinned", &c4, reclaim_oldest_unpinned);
	zdt_run_both("reclaim_never_takes_pinned", &c2,
		     reclaim_never_takes_pinned);
	zdt_run_both("reclaim_woken_by_release", &c1, reclaim_woken_by_release);
	return zdt_finish();
}
