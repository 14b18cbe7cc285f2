/* test_registry.c — the reader registry (zdshm/reader.h): claiming and
 * freeing entries, the join policy, delivery order, stats, close.
 */
#include "zdtest.h"

#define put(seg, fill, slot_out) zdt_put(seg, fill, 16, slot_out)

/* Takes one sample, checks its sn (and that its bytes are the fill the
 * test used: fill == sn & 0xff), releases it.  Returns the slot. */
static uint32_t take_sn(zd_segment_t *seg, zd_reader_t *r, uint64_t want_sn)
{
	zd_view_t v;
	int rc = zd_reader_take(seg, r, &v);

	CHECK_OK(rc);
	if (rc != 0)
		return UINT32_MAX;
	CHECK_EQ(v.sn, want_sn);
	CHECK_EQ(v.size, 16);
	CHECK_EQ(((const unsigned char *)v.data)[15], (unsigned char)want_sn);
	CHECK_EQ(v.reader, (int32_t)r->index);
	CHECK_OK(zd_slot_release(seg, &v));
	return v.slot;
}

static void take_none(zd_segment_t *seg, zd_reader_t *r)
{
	zd_view_t v;
	int rc = zd_reader_take(seg, r, &v);

	CHECK_RC(rc, -EAGAIN);
	if (rc == 0)
		zd_slot_release(seg, &v);
}

/* ------------------------------------------------------------------ */

static void open_until_eusers(zdt_ctx_t *c)
{
	static zd_reader_t r[ZD_READER_MAX];
	zd_reader_t extra, again;
	uint64_t seen = 0;
	uint32_t old_epoch;

	for (uint32_t i = 0; i < ZD_READER_MAX; i++) {
		REQUIRE_OK(zd_reader_open(c->seg, 0, &r[i]));
		REQUIRE(r[i].index < ZD_READER_MAX);
		CHECK(!(seen & ((uint64_t)1 << r[i].index)));
		seen |= (uint64_t)1 << r[i].index;
	}
	CHECK_EQ(seen, UINT64_MAX);
	CHECK_EQ(zd_segment_active_mask(c->seg), UINT64_MAX);
	CHECK_RC(zd_reader_open(c->seg, 0, &extra), -EUSERS);
	CHECK_RC(zd_reader_open(c->seg, 5, &extra), -EUSERS);
	if (c->backend == ZD_BACKEND_POSIX) {
		/* the table is in the segment: another handle is refused too */
		zd_segment_t *other = zdt_attach(c);

		CHECK_RC(zd_reader_open(other, 0, &extra), -EUSERS);
	}
	/* closing one frees exactly its index, with a new epoch */
	old_epoch = r[17].epoch;
	CHECK_OK(zd_reader_close(c->seg, &r[17]));
	CHECK_EQ(zd_segment_active_mask(c->seg),
		 UINT64_MAX & ~((uint64_t)1 << r[17].index));
	REQUIRE_OK(zd_reader_open(c->seg, 0, &again));
	CHECK_EQ(again.index, r[17].index);
	CHECK_NE(again.epoch, old_epoch);
	CHECK_RC(zd_reader_open(c->seg, 0, &extra), -EUSERS);
	/* the stale struct of the closed reader is not the new reader */
	{
		zd_view_t v;
		zd_reader_stats_t st;

		put(c->seg, 0, NULL);
		CHECK_RC(zd_reader_take(c->seg, &r[17], &v), -ENOTCONN);
		CHECK_RC(zd_reader_stats(c->seg, &r[17], &st), -ENOTCONN);
		CHECK_RC(zd_reader_close(c->seg, &r[17]), -ENOTCONN);
		/* and did not steal the new reader's sample */
		take_sn(c->seg, &again, 0);
	}
	r[17] = again;
	for (uint32_t i = 0; i < ZD_READER_MAX; i++)
		CHECK_OK(zd_reader_close(c->seg, &r[i]));
	CHECK_EQ(zd_segment_active_mask(c->seg), 0);
	CHECK_OK(zd_reader_open(c->seg, 0, &extra));
	CHECK_OK(zd_reader_close(c->seg, &extra));
	CHECK_RC(zd_reader_open(c->seg, 0, NULL), -EINVAL);
}

/* A handle's readers are closed with the handle. */
static void handle_close_closes_its_readers(zdt_ctx_t *c)
{
	zd_segment_t *other = NULL;
	zd_reader_t mine, theirs;
	uint32_t x;

	REQUIRE_OK(zd_reader_open(c->seg, 0, &mine));
	REQUIRE_OK(zd_segment_attach_posix(c->name, &other));
	REQUIRE_OK(zd_reader_open(other, 0, &theirs));
	CHECK_NE(mine.index, theirs.index);
	CHECK_EQ(zd_segment_active_mask(c->seg),
		 ((uint64_t)1 << mine.index) | ((uint64_t)1 << theirs.index));
	put(c->seg, 0, NULL);
	put(c->seg, 1, NULL);
	/* both readers hold both slots */
	CHECK_RC(zd_writer_loan(c->seg, ZD_OVERFLOW_FAIL, 0, 0, &x), -EAGAIN);
	take_sn(c->seg, &mine, 0);
	take_sn(c->seg, &mine, 1);
	CHECK_RC(zd_writer_loan(c->seg, ZD_OVERFLOW_FAIL, 0, 0, &x), -EAGAIN);
	zd_segment_close(other);
	CHECK_EQ(zd_segment_active_mask(c->seg), (uint64_t)1 << mine.index);
	/* the slots that waited only on it are free */
	CHECK_OK(zd_writer_loan(c->seg, ZD_OVERFLOW_FAIL, 0, 0, &x));
	CHECK_OK(zd_writer_loan(c->seg, ZD_OVERFLOW_FAIL, 0, 0, &x));
	/* a reader cannot be used through a handle that did not open it */
	{
		zd_segment_t *third = zdt_attach(c);
		zd_view_t v;

		CHECK_RC(zd_reader_take(third, &mine, &v), -ENOTCONN);
	}
}

static void join_from_now(zdt_ctx_t *c)
{
	zd_reader_t r;
	zd_reader_stats_t st;
	uint32_t s[4];

	put(c->seg, 0, NULL);
	put(c->seg, 1, NULL);
	put(c->seg, 2, NULL);
	REQUIRE_OK(zd_reader_open(c->seg, 0, &r));
	CHECK_EQ(r.start_sn, 3);
	take_none(c->seg, &r);
	CHECK_OK(zd_reader_stats(c->seg, &r, &st));
	CHECK_EQ(st.taken, 0);
	CHECK_EQ(st.dropped, 0);
	CHECK_EQ(st.lag, 0);
	CHECK_EQ(st.last_sn, UINT64_MAX);
	/* the old samples are not held for it: all four slots can be loaned */
	for (int i = 0; i < 4; i++)
		CHECK_OK(zd_writer_loan(c->seg, ZD_OVERFLOW_FAIL, 0, 0, &s[i]));
	for (int i = 0; i < 4; i++)
		CHECK_OK(zd_slot_discard(c->seg, s[i]));
	/* and it gets what comes next */
	put(c->seg, 3, NULL);
	take_sn(c->seg, &r, 3);
	take_none(c->seg, &r);
	/* a reader opened while an old sample is pinned elsewhere */
	{
		zd_view_t v;
		zd_reader_t r2;
		uint32_t slot;

		put(c->seg, 4, &slot);
		REQUIRE_OK(zd_slot_acquire(c->seg, slot, &v));
		REQUIRE_OK(zd_reader_open(c->seg, 0, &r2));
		take_none(c->seg, &r2);
		CHECK_OK(zd_slot_release(c->seg, &v));
		take_none(c->seg, &r2);
		take_sn(c->seg, &r, 4);
		CHECK_OK(zd_reader_close(c->seg, &r2));
	}
}

/* Note: with no reader registered every committed slot is free, and
 * loans take the lowest free index, so a segment without readers keeps
 * only its newest sample.  The join tests keep history with a "holder"
 * reader that reads nothing. */
static void join_last_k(zdt_ctx_t *c)
{
	zd_reader_t holder, r2, r10, r0;
	uint32_t x;
	int n;

	REQUIRE_OK(zd_reader_open(c->seg, 0, &holder));
	for (unsigned i = 0; i < 5; i++)
		put(c->seg, (unsigned char)i, NULL);
	REQUIRE_OK(zd_reader_open(c->seg, 2, &r2));
	REQUIRE_OK(zd_reader_open(c->seg, 10, &r10));
	REQUIRE_OK(zd_reader_open(c->seg, 0, &r0));
	CHECK_EQ(r2.start_sn, 3);
	take_sn(c->seg, &r2, 3);
	take_sn(c->seg, &r2, 4);
	take_none(c->seg, &r2);
	for (unsigned i = 0; i < 5; i++)
		take_sn(c->seg, &r10, i);
	take_none(c->seg, &r10);
	take_none(c->seg, &r0);
	/* only the holder holds anything: 3 slots are free */
	for (n = 0; n < 8; n++)
		if (zd_writer_loan(c->seg, ZD_OVERFLOW_FAIL, 0, 0, &x) != 0)
			break;
	CHECK_EQ(n, 3);
	/* without it, everything was read by whoever needed it */
	CHECK_OK(zd_reader_close(c->seg, &holder));
	for (n = 0; n < 8; n++)
		if (zd_writer_loan(c->seg, ZD_OVERFLOW_FAIL, 0, 0, &x) != 0)
			break;
	CHECK_EQ(n, 5);
}

/* Without any reader only the newest sample survives: a late reader
 * asking for 10 gets just that one. */
static void no_reader_keeps_newest_only(zdt_ctx_t *c)
{
	zd_reader_t r, k2;
	uint32_t slot[6];

	/* No reader: free slots first (lowest index), then the slot with the
	 * oldest sample, so the 4 newest samples stay held. */
	for (unsigned i = 0; i < 6; i++)
		put(c->seg, (unsigned char)i, &slot[i]);
	CHECK_EQ(slot[0], 0);
	CHECK_EQ(slot[1], 1);
	CHECK_EQ(slot[2], 2);
	CHECK_EQ(slot[3], 3);
	CHECK_EQ(slot[4], 0);
	CHECK_EQ(slot[5], 1);
	REQUIRE_OK(zd_reader_open(c->seg, 10, &r));
	for (uint64_t sn = 2; sn < 6; sn++)
		take_sn(c->seg, &r, sn);
	take_none(c->seg, &r);
	REQUIRE_OK(zd_reader_open(c->seg, 2, &k2));
	take_sn(c->seg, &k2, 4);
	take_sn(c->seg, &k2, 5);
	take_none(c->seg, &k2);
}

/* Reader A read the first samples; B joins for the last 3: those are
 * still held (A read them, but no one recycled them). */
static void join_last_includes_samples_read_by_others(zdt_ctx_t *c)
{
	zd_reader_t a, b;

	REQUIRE_OK(zd_reader_open(c->seg, 0, &a));
	for (unsigned i = 0; i < 4; i++)
		put(c->seg, (unsigned char)i, NULL);
	take_sn(c->seg, &a, 0);
	take_sn(c->seg, &a, 1);
	REQUIRE_OK(zd_reader_open(c->seg, 3, &b));
	take_sn(c->seg, &b, 1);
	take_sn(c->seg, &b, 2);
	take_sn(c->seg, &b, 3);
	take_none(c->seg, &b);
	take_sn(c->seg, &a, 2);
}

/* A holder reader that read sn 0 and 1 lets newer samples recycle the
 * lowest slots; a late reader asking for everything still gets them
 * oldest-first. */
static void join_last_in_sn_order_after_recycling(zdt_ctx_t *c)
{
	zd_reader_t holder, r;
	uint32_t slot[6];

	REQUIRE_OK(zd_reader_open(c->seg, 0, &holder));
	for (unsigned i = 0; i < 4; i++)
		put(c->seg, (unsigned char)i, &slot[i]);
	take_sn(c->seg, &holder, 0);
	take_sn(c->seg, &holder, 1);
	put(c->seg, 4, &slot[4]);
	put(c->seg, 5, &slot[5]);
	/* 4 slots: sn 4 and 5 went into the slots of sn 0 and 1 */
	CHECK_EQ(slot[4], slot[0]);
	CHECK_EQ(slot[5], slot[1]);
	REQUIRE_OK(zd_reader_open(c->seg, 100, &r));
	CHECK_EQ(take_sn(c->seg, &r, 2), slot[2]);
	CHECK_EQ(take_sn(c->seg, &r, 3), slot[3]);
	CHECK_EQ(take_sn(c->seg, &r, 4), slot[4]);
	CHECK_EQ(take_sn(c->seg, &r, 5), slot[5]);
	take_none(c->seg, &r);
}

/* "the last K samples that are still held" (reader.h): when sequence
 * numbers have a hole (a sample recycled while an older one was pinned),
 * K counts held samples, not sequence numbers. */
static void join_last_counts_held_samples(zdt_ctx_t *c)
{
	zd_reader_t holder, r;
	zd_view_t pin;
	uint32_t s0, s1, s2;

	REQUIRE_OK(zd_reader_open(c->seg, 0, &holder));
	put(c->seg, 0, &s0);               /* sn 0 */
	put(c->seg, 1, &s1);               /* sn 1 */
	CHECK_NE(s0, s1);
	take_sn(c->seg, &holder, 0);
	take_sn(c->seg, &holder, 1);
	/* sn 2: slot s0 is pinned, so s1 (sn 1, read) is recycled */
	REQUIRE_OK(zd_slot_acquire(c->seg, s0, &pin));
	put(c->seg, 2, &s2);
	CHECK_EQ(s2, s1);
	CHECK_OK(zd_slot_release(c->seg, &pin));
	/* held now: sn 0 (slot s0) and sn 2 (slot s1): the last two held */
	REQUIRE_OK(zd_reader_open(c->seg, 2, &r));
	take_sn(c->seg, &r, 0);
	take_sn(c->seg, &r, 2);
	take_none(c->seg, &r);
}

static void take_is_oldest_first_never_twice(zdt_ctx_t *c)
{
	zd_reader_t r;
	zd_view_t held, v;
	uint32_t slot[6];

	REQUIRE_OK(zd_reader_open(c->seg, 0, &r));
	for (unsigned i = 0; i < 4; i++)
		put(c->seg, (unsigned char)i, &slot[i]);
	take_sn(c->seg, &r, 0);
	take_sn(c->seg, &r, 1);
	put(c->seg, 4, &slot[4]);
	put(c->seg, 5, &slot[5]);
	/* sn 4 and 5 sit in lower slots than sn 2 and 3 */
	CHECK_LT(slot[4], slot[2]);
	CHECK_LT(slot[5], slot[3]);
	/* hold sn 2 unreleased: the next take must go on to sn 3, not
	 * hand out sn 2 again */
	REQUIRE_OK(zd_reader_take(c->seg, &r, &held));
	CHECK_EQ(held.sn, 2);
	take_sn(c->seg, &r, 3);
	take_sn(c->seg, &r, 4);
	take_sn(c->seg, &r, 5);
	take_none(c->seg, &r);
	CHECK_OK(zd_slot_release(c->seg, &held));
	CHECK_RC(zd_slot_release(c->seg, &held), -ESTALE);
	take_none(c->seg, &r);
	/* next_unread agrees: nothing unread for r */
	{
		uint32_t x;

		CHECK_RC(zd_slot_next_unread(c->seg, r.index, &x), -EAGAIN);
	}
	/* many rounds through a small ring keep order */
	for (uint64_t sn = 6; sn < 200; sn++) {
		put(c->seg, (unsigned char)sn, NULL);
		if (sn % 3 == 2) {
			for (uint64_t k = sn - 2; k <= sn; k++)
				take_sn(c->seg, &r, k);
		}
	}
	CHECK_OK(zd_reader_take(c->seg, &r, &v));
	CHECK_EQ(v.sn, 198);
	CHECK_OK(zd_slot_release(c->seg, &v));
	take_sn(c->seg, &r, 199);
	take_none(c->seg, &r);
}

static void stats_count(zdt_ctx_t *c)
{
	zd_reader_t r, other;
	zd_reader_stats_t st;
	uint32_t ev = 0;

	REQUIRE_OK(zd_reader_open(c->seg, 0, &r));
	REQUIRE_OK(zd_reader_open(c->seg, 0, &other));
	put(c->seg, 0, NULL);
	put(c->seg, 1, NULL);
	put(c->seg, 2, NULL);
	CHECK_OK(zd_reader_stats(c->seg, &r, &st));
	CHECK_EQ(st.taken, 0);
	CHECK_EQ(st.lag, 3);
	CHECK_EQ(st.last_sn, UINT64_MAX);
	take_sn(c->seg, &r, 0);
	CHECK_OK(zd_reader_stats(c->seg, &r, &st));
	CHECK_EQ(st.taken, 1);
	CHECK_EQ(st.lag, 2);
	CHECK_EQ(st.last_sn, 0);
	CHECK_EQ(st.dropped, 0);
	/* `other` read none; evicting everything drops 3 for it, 2 for r */
	take_sn(c->seg, &other, 0);
	take_sn(c->seg, &other, 1);
	CHECK_OK(zd_slot_evict_stale(c->seg, 0, zd_segment_active_mask(c->seg),
				     &ev));
	CHECK_EQ(ev, 2); /* sn 1 (unread by r) and sn 2 (unread by both) */
	CHECK_OK(zd_reader_stats(c->seg, &r, &st));
	CHECK_EQ(st.dropped, 2);
	CHECK_EQ(st.taken, 1);
	CHECK_OK(zd_reader_stats(c->seg, &other, &st));
	CHECK_EQ(st.dropped, 1);
	CHECK_EQ(st.taken, 2);
	CHECK_EQ(st.last_sn, 1);
	take_none(c->seg, &r);
	put(c->seg, 3, NULL);
	take_sn(c->seg, &r, 3);
	CHECK_OK(zd_reader_stats(c->seg, &r, &st));
	CHECK_EQ(st.taken, 2);
	CHECK_EQ(st.last_sn, 3);
	CHECK_EQ(st.lag, 0);
	/* a reopened index starts from zero */
	CHECK_OK(zd_reader_close(c->seg, &r));
	REQUIRE_OK(zd_reader_open(c->seg, 0, &r));
	CHECK_OK(zd_reader_stats(c->seg, &r, &st));
	CHECK_EQ(st.taken, 0);
	CHECK_EQ(st.dropped, 0);
	CHECK_EQ(st.last_sn, UINT64_MAX);
}

static void close_frees_slots_waiting_on_it(zdt_ctx_t *c)
{
	zd_reader_t a, b;
	uint32_t x, y;

	REQUIRE_OK(zd_reader_open(c->seg, 0, &a));
	REQUIRE_OK(zd_reader_open(c->seg, 0, &b));
	put(c->seg, 0, NULL);
	put(c->seg, 1, NULL);
	take_sn(c->seg, &a, 0);
	take_sn(c->seg, &a, 1);
	CHECK_RC(zd_writer_loan(c->seg, ZD_OVERFLOW_FAIL, 0, 0, &x), -EAGAIN);
	CHECK_OK(zd_reader_close(c->seg, &b));
	CHECK_EQ(zd_segment_active_mask(c->seg), (uint64_t)1 << a.index);
	CHECK_OK(zd_writer_loan(c->seg, ZD_OVERFLOW_FAIL, 0, 0, &x));
	CHECK_OK(zd_writer_loan(c->seg, ZD_OVERFLOW_FAIL, 0, 0, &y));
	CHECK_NE(x, y);
}

static void close_with_views_and_after(zdt_ctx_t *c)
{
	zd_reader_t r;
	zd_reader_stats_t st;
	zd_view_t v, w;
	uint32_t x;

	REQUIRE_OK(zd_reader_open(c->seg, 0, &r));
	put(c->seg, 7, NULL);
	put(c->seg, 8, NULL);
	REQUIRE_OK(zd_reader_take(c->seg, &r, &v));
	/* a view is still pinned: close disconnects at once (no writer waits
	 * on it: its unread sn 1 is free), keeps the index while the view
	 * lives, and says so with -EBUSY */
	CHECK_RC(zd_reader_close(c->seg, &r), -EBUSY);
	CHECK_EQ(zd_segment_active_mask(c->seg), 0);
	CHECK_OK(zd_reader_stats(c->seg, &r, &st));
	CHECK_RC(zd_reader_take(c->seg, &r, &w), -EAGAIN);
	CHECK_OK(zd_writer_loan(c->seg, ZD_OVERFLOW_FAIL, 0, 0, &x));
	CHECK(x != v.slot);
	CHECK_OK(zd_slot_discard(c->seg, x));
	/* the pinned slot is not reused while the view lives */
	CHECK_RC(zd_writer_loan(c->seg, ZD_OVERFLOW_FAIL, 0, 0, &x), 0);
	CHECK(x != v.slot);
	CHECK_OK(zd_slot_discard(c->seg, x));
	CHECK_EQ(((const unsigned char *)v.data)[0], 7);
	/* closing again while the view lives changes nothing */
	CHECK_RC(zd_reader_close(c->seg, &r), -EBUSY);
	/* the release of the last view frees the entry: nothing to call */
	CHECK_OK(zd_slot_release(c->seg, &v));
	CHECK_EQ(zd_segment_active_mask(c->seg), 0);
	/* everything after close is -ENOTCONN */
	CHECK_RC(zd_reader_take(c->seg, &r, &w), -ENOTCONN);
	CHECK_RC(zd_reader_wait_take(c->seg, &r, &w, zd_now_ns() + ZDT_S, 0),
		 -ENOTCONN);
	CHECK_RC(zd_reader_stats(c->seg, &r, &st), -ENOTCONN);
	CHECK_RC(zd_reader_close(c->seg, &r), -ENOTCONN);
	/* its unread sample (sn 1) no longer holds a slot */
	CHECK_OK(zd_writer_loan(c->seg, ZD_OVERFLOW_FAIL, 0, 0, &x));
	CHECK_OK(zd_writer_loan(c->seg, ZD_OVERFLOW_FAIL, 0, 0, &x));
	/* a garbage reader struct is refused, not trusted */
	{
		zd_reader_t bad = { .index = ZD_READER_MAX + 3, .epoch = 1 };

		CHECK(zd_reader_take(c->seg, &bad, &w) < 0);
		CHECK(zd_reader_stats(c->seg, &bad, &st) < 0);
		CHECK(zd_reader_close(c->seg, &bad) < 0);
	}
}

/* A reader closed with two views pinned keeps its index until the second
 * is released, then the entry is free: a new reader of the handle gets
 * that very index again (the only free one). */
static void closed_reader_freed_by_last_release(zdt_ctx_t *c)
{
	static zd_reader_t fill[ZD_READER_MAX];
	zd_reader_t r, again;
	zd_view_t v1, v2;
	uint32_t n = 0;

	REQUIRE_OK(zd_reader_open(c->seg, 0, &r));
	put(c->seg, 1, NULL);
	put(c->seg, 2, NULL);
	REQUIRE_OK(zd_reader_take(c->seg, &r, &v1));
	REQUIRE_OK(zd_reader_take(c->seg, &r, &v2));
	CHECK_RC(zd_reader_close(c->seg, &r), -EBUSY);
	/* every other index taken: only r's could be handed out */
	while (zd_reader_open(c->seg, 0, &fill[n]) == 0)
		n++;
	CHECK_EQ(n, ZD_READER_MAX - 1);
	CHECK_OK(zd_slot_release(c->seg, &v1));
	CHECK_RC(zd_reader_open(c->seg, 0, &again), -EUSERS);   /* v2 pins it */
	CHECK_RC(zd_reader_stats(c->seg, &r, &(zd_reader_stats_t){0}), 0);
	CHECK_OK(zd_slot_release(c->seg, &v2));
	CHECK_RC(zd_reader_stats(c->seg, &r, &(zd_reader_stats_t){0}), -ENOTCONN);
	CHECK_RC(zd_reader_close(c->seg, &r), -ENOTCONN);
	REQUIRE_OK(zd_reader_open(c->seg, 0, &again));
	CHECK_EQ(again.index, r.index);
	CHECK(again.epoch != r.epoch);
	/* a view of the new reader and the old one's struct do not mix */
	CHECK_RC(zd_reader_close(c->seg, &r), -ENOTCONN);
	CHECK_OK(zd_reader_close(c->seg, &again));
	for (uint32_t i = 0; i < n; i++)
		CHECK_OK(zd_reader_close(c->seg, &fill[i]));
}

/* zd_segment_close_readers closes every reader of the handle: the free
 * ones at once, a pinned one at the release of its view. */
static void segment_close_readers(zdt_ctx_t *c)
{
	zd_reader_t a, b;
	zd_view_t v;

	REQUIRE_OK(zd_reader_open(c->seg, 0, &a));
	REQUIRE_OK(zd_reader_open(c->seg, 0, &b));
	put(c->seg, 1, NULL);
	REQUIRE_OK(zd_reader_take(c->seg, &b, &v));
	CHECK_OK(zd_segment_close_readers(c->seg));
	CHECK_EQ(zd_segment_active_mask(c->seg), 0);
	CHECK_RC(zd_reader_close(c->seg, &a), -ENOTCONN);
	CHECK_RC(zd_reader_close(c->seg, &b), -EBUSY);
	CHECK_EQ(((const unsigned char *)v.data)[0], 1);
	CHECK_OK(zd_slot_release(c->seg, &v));
	CHECK_RC(zd_reader_close(c->seg, &b), -ENOTCONN);
}

/* Two readers in two handles each receive every sample once, in order. */
static void two_handles_fan_out(zdt_ctx_t *c)
{
	zd_segment_t *h2 = zdt_attach(c);
	zd_reader_t r1, r2;

	REQUIRE_OK(zd_reader_open(c->seg, 0, &r1));
	REQUIRE_OK(zd_reader_open(h2, 0, &r2));
	for (uint64_t sn = 0; sn < 50; sn++) {
		put(sn % 2 ? h2 : c->seg, (unsigned char)sn, NULL);
		if (sn % 2) {
			take_sn(c->seg, &r1, sn - 1);
			take_sn(c->seg, &r1, sn);
			take_sn(h2, &r2, sn - 1);
			take_sn(h2, &r2, sn);
		}
	}
	take_none(c->seg, &r1);
	take_none(h2, &r2);
}

int main(void)
{
	zd_config_t c2 = zdt_cfg(2, 16);
	zd_config_t c4 = zdt_cfg(4, 16);
	zd_config_t c8 = zdt_cfg(8, 16);

	zdt_run_both("open_until_eusers", &c4, open_until_eusers);
	zdt_run_posix("handle_close_closes_its_readers", &c2,
		      handle_close_closes_its_readers);
	zdt_run_both("join_from_now", &c4, join_from_now);
	zdt_run_both("join_last_k", &c8, join_last_k);
	zdt_run_both("no_reader_keeps_newest_only", &c4,
		     no_reader_keeps_newest_only);
	zdt_run_both("join_last_includes_samples_read_by_others", &c8,
		     join_last_includes_samples_read_by_others);
	zdt_run_both("join_last_in_sn_order_after_recycling", &c4,
		     join_last_in_sn_order_after_recycling);
	zdt_run_both("join_last_counts_held_samples", &c2,
		     join_last_counts_held_samples);
	zdt_run_both("take_is_oldest_first_never_twice", &c4,
		     take_is_oldest_first_never_twice);
	zdt_run_both("stats_count", &c4, stats_count);
	zdt_run_both("close_frees_slots_waiting_on_it", &c2,
		     close_frees_slots_waiting_on_it);
	zdt_run_both("close_with_views_and_after", &c2,
		     close_with_views_and_after);
	zdt_run_both("closed_reader_freed_by_last_release", &c2,
		     closed_reader_freed_by_last_release);
	zdt_run_both("segment_close_readers", &c2, segment_close_readers);
	zdt_run_posix("two_handles_fan_out", &c4, two_handles_fan_out);
	return zdt_finish();
}
