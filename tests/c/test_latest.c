/* test_latest.c — latest-value readers (zd_reader_open_flags with
 * ZD_READER_LATEST): a take returns the newest committed sample, marks
 * every older unread one read (so its slot goes back to the pool) and
 * counts it as skipped; then a writer thread committing while a latest
 * reader takes, with the RECLAIM policy (the writer never blocks, the
 * reader never sees a torn sample) and with BLOCK.
 */
#include "zdtest.h"

#define put(seg, fill, slot_out) zdt_put(seg, fill, 32, slot_out)

static zd_reader_stats_t stats_of(zd_segment_t *seg, zd_reader_t *r)
{
	zd_reader_stats_t st;

	memset(&st, 0xff, sizeof(st));
	CHECK_OK(zd_reader_stats(seg, r, &st));
	return st;
}

static void newest_skips_and_frees(zdt_ctx_t *c)
{
	zd_reader_t r;
	zd_view_t v;
	zd_reader_stats_t st;

	REQUIRE_OK(zd_reader_open_flags(c->seg, 0, ZD_READER_LATEST, &r));
	CHECK_EQ(r.flags, ZD_READER_LATEST);
	CHECK_RC(zd_reader_take(c->seg, &r, &v), -EAGAIN);
	for (unsigned i = 0; i < 8; i++)
		CHECK_EQ(put(c->seg, (unsigned char)i, NULL), i);
	CHECK_EQ(zdt_loanable(c->seg), 0);  /* all eight held for the reader */
	REQUIRE_OK(zd_reader_take(c->seg, &r, &v));
	CHECK_EQ(v.sn, 7);
	CHECK_EQ(((const unsigned char *)v.data)[0], 7);
	st = stats_of(c->seg, &r);
	CHECK_EQ(st.taken, 1);
	CHECK_EQ(st.skipped, 7);
	CHECK_EQ(st.dropped, 0);
	CHECK_EQ(st.last_sn, 7);
	CHECK_EQ(st.lag, 0);
	/* The seven skipped slots are back in the pool; the taken one is
	 * pinned by the view until it is released. */
	CHECK_EQ(zdt_loanable(c->seg), 7);
	CHECK_OK(zd_slot_release(c->seg, &v));
	CHECK_EQ(zdt_loanable(c->seg), 8);
	CHECK_RC(zd_reader_take(c->seg, &r, &v), -EAGAIN);
	/* One more: taken, nothing skipped. */
	CHECK_EQ(put(c->seg, 9, NULL), 8);
	REQUIRE_OK(zd_reader_take(c->seg, &r, &v));
	CHECK_EQ(v.sn, 8);
	CHECK_OK(zd_slot_release(c->seg, &v));
	st = stats_of(c->seg, &r);
	CHECK_EQ(st.taken, 2);
	CHECK_EQ(st.skipped, 7);
	CHECK_OK(zd_reader_close(c->seg, &r));
}

/* A plain reader beside it keeps receiving everything, and the latest
 * reader's skips do not free what the plain one still needs. */
static void beside_a_plain_reader(zdt_ctx_t *c)
{
	zd_reader_t l, p;
	zd_view_t v;

	REQUIRE_OK(zd_reader_open_flags(c->seg, 0, ZD_READER_LATEST, &l));
	REQUIRE_OK(zd_reader_open(c->seg, 0, &p));
	for (unsigned i = 0; i < 4; i++)
		put(c->seg, (unsigned char)i, NULL);
	REQUIRE_OK(zd_reader_take(c->seg, &l, &v));
	CHECK_EQ(v.sn, 3);
	CHECK_OK(zd_slot_release(c->seg, &v));
	CHECK_EQ(stats_of(c->seg, &l).skipped, 3);
	CHECK_EQ(zdt_loanable(c->seg), 0);  /* the plain reader needs all four */
	for (unsigned i = 0; i < 4; i++) {
		REQUIRE_OK(zd_reader_take(c->seg, &p, &v));
		CHECK_EQ(v.sn, i);
		CHECK_OK(zd_slot_release(c->seg, &v));
	}
	CHECK_EQ(stats_of(c->seg, &p).skipped, 0);
	CHECK_EQ(zdt_loanable(c->seg), 4);
}

static void join_and_flags(zdt_ctx_t *c)
{
	zd_reader_t r;
	zd_view_t v;

	CHECK_RC(zd_reader_open_flags(c->seg, 2, ZD_READER_LATEST, &r), -EINVAL);
	CHECK_RC(zd_reader_open_flags(c->seg, 0, 2u, &r), -EINVAL);
	CHECK_EQ(zd_segment_active_mask(c->seg), 0);   /* nothing registered */
	for (unsigned i = 0; i < 3; i++)
		put(c->seg, (unsigned char)i, NULL);
	/* join_last 1: the newest held sample is the first take. */
	REQUIRE_OK(zd_reader_open_flags(c->seg, 1, ZD_READER_LATEST, &r));
	REQUIRE_OK(zd_reader_take(c->seg, &r, &v));
	CHECK_EQ(v.sn, 2);
	CHECK_OK(zd_slot_release(c->seg, &v));
	CHECK_EQ(stats_of(c->seg, &r).skipped, 0);
	CHECK_RC(zd_reader_take(c->seg, &r, &v), -EAGAIN);
	CHECK_OK(zd_reader_close(c->seg, &r));
	/* A plain open leaves the flags clear. */
	REQUIRE_OK(zd_reader_open(c->seg, 0, &r));
	CHECK_EQ(r.flags, 0);
	CHECK_EQ(stats_of(c->seg, &r).skipped, 0);
}

/* The newest already marked read (zd_slot_mark_read) is not delivered:
 * the newest unread one is, and only the older ones count as skipped. */
static void newest_marked_read(zdt_ctx_t *c)
{
	zd_reader_t r;
	zd_view_t v;
	uint32_t newest;

	REQUIRE_OK(zd_reader_open_flags(c->seg, 0, ZD_READER_LATEST, &r));
	put(c->seg, 0, NULL);
	put(c->seg, 1, NULL);
	put(c->seg, 2, &newest);
	CHECK_OK(zd_slot_mark_read(c->seg, newest, r.index));
	REQUIRE_OK(zd_reader_take(c->seg, &r, &v));
	CHECK_EQ(v.sn, 1);
	CHECK_OK(zd_slot_release(c->seg, &v));
	CHECK_EQ(stats_of(c->seg, &r).skipped, 1);
	CHECK_RC(zd_reader_take(c->seg, &r, &v), -EAGAIN);
}

/* After the goodbye a latest reader still gets the newest, then -EPIPE. */
static void goodbye(zdt_ctx_t *c)
{
	zd_segment_t *reader_seg;
	zd_reader_t r;
	zd_view_t v;

	if (c->backend != ZD_BACKEND_POSIX)
		return;
	reader_seg = zdt_attach(c);
	REQUIRE(reader_seg != NULL);
	REQUIRE_OK(zd_reader_open_flags(reader_seg, 0, ZD_READER_LATEST, &r));
	put(c->seg, 0, NULL);
	put(c->seg, 1, NULL);
	REQUIRE_OK(zd_segment_goodbye(c->seg));
	REQUIRE_OK(zd_reader_take(reader_seg, &r, &v));
	CHECK_EQ(v.sn, 1);
	CHECK_OK(zd_slot_release(reader_seg, &v));
	CHECK_RC(zd_reader_take(reader_seg, &r, &v), -EPIPE);
	CHECK_EQ(stats_of(reader_seg, &r).skipped, 1);
}

/* The ring wrapped past the cursor: the newest is still found, and every
 * skipped sample is counted once, whichever lookup finds it. */
static void far_behind(zdt_ctx_t *c)
{
	zd_reader_t r;
	zd_view_t v;
	uint32_t x;
	zd_reader_stats_t st;
	uint64_t n = 0;

	REQUIRE_OK(zd_reader_open_flags(c->seg, 0, ZD_READER_LATEST, &r));
	/* Four slots, ring of eight: 100 commits reclaim most of them. */
	for (; n < 100; n++) {
		REQUIRE_OK(zd_writer_loan(c->seg, ZD_OVERFLOW_RECLAIM, 0, 0, &x));
		REQUIRE_OK(zd_slot_commit(c->seg, x, &n, sizeof(n), NULL));
	}
	REQUIRE_OK(zd_reader_take(c->seg, &r, &v));
	CHECK_EQ(v.sn, 99);
	CHECK_OK(zd_slot_release(c->seg, &v));
	st = stats_of(c->seg, &r);
	CHECK_EQ(st.taken + st.skipped + st.dropped, 100);
	CHECK_EQ(st.skipped, 3);        /* the three older ones still held */
	CHECK_EQ(zdt_loanable(c->seg), 4);
}

/* ---- a writer thread and a latest reader ------------------------------- */

#define STREAM_N (ZDT_SANITIZED ? 20000u : 200000u)

struct stream {
	zd_segment_t *seg;
	zd_overflow_t policy;
	int go;
	int wrc;
	uint64_t sent;
	/* reader side */
	uint64_t torn, backwards, taken;
};

static void *stream_writer(void *arg)
{
	struct stream *s = arg;

	while (!__atomic_load_n(&s->go, __ATOMIC_ACQUIRE))
		sched_yield();
	for (uint64_t i = 0; i < STREAM_N; i++) {
		uint32_t slot;
		void *data = NULL;
		uint64_t cap = 0, len;

		s->wrc = zd_writer_loan(s->seg, s->policy, zd_now_ns() + 30 * ZDT_S,
					0, &slot);
		if (s->wrc == 0)
			s->wrc = zd_slot_data_ptr(s->seg, slot, &data, &cap, NULL);
		if (s->wrc != 0)
			break;
		len = zdt_msg_len(0, i, cap);
		zdt_msg_build(data, 0, i, len);
		s->wrc = zd_slot_commit_in_place(s->seg, slot, len, NULL);
		if (s->wrc != 0)
			break;
		s->sent++;
	}
	return NULL;
}

static void stream(zdt_ctx_t *c, zd_overflow_t policy)
{
	struct stream s;
	zd_reader_t r;
	zd_reader_stats_t st;
	pthread_t th;
	uint64_t last = UINT64_MAX;
	int rc;

	memset(&s, 0, sizeof(s));
	s.seg = c->seg;
	s.policy = policy;
	REQUIRE_OK(zd_reader_open_flags(c->seg, 0, ZD_READER_LATEST, &r));
	REQUIRE(pthread_create(&th, NULL, stream_writer, &s) == 0);
	__atomic_store_n(&s.go, 1, __ATOMIC_RELEASE);
	for (;;) {
		zd_view_t v;
		zdt_msg_head_t head;

		rc = zd_reader_wait_take(c->seg, &r, &v, zd_now_ns() + 30 * ZDT_S, 0);
		if (rc != 0)
			break;
		/* The pin holds the sample: intact however hard the writer
		 * reclaims, and its counter is its sn (one writer). */
		if (!zdt_msg_verify(v.data, v.size, &head) || head.counter != v.sn)
			s.torn++;
		if (last != UINT64_MAX && v.sn <= last)
			s.backwards++;
		last = v.sn;
		s.taken++;
		CHECK_OK(zd_slot_release(c->seg, &v));
		if (v.sn == STREAM_N - 1)
			break;
	}
	pthread_join(th, NULL);
	CHECK_OK(rc);
	CHECK_OK(s.wrc);
	CHECK_EQ(s.sent, STREAM_N);
	CHECK_EQ(s.torn, 0);
	CHECK_EQ(s.backwards, 0);
	CHECK_EQ(last, STREAM_N - 1);
	st = stats_of(c->seg, &r);
	CHECK_EQ(st.taken, s.taken);
	/* Each sample was taken, skipped or reclaimed under the reader:
	 * exactly once. */
	CHECK_EQ(st.taken + st.skipped + st.dropped, STREAM_N);
	if (policy == ZD_OVERFLOW_BLOCK)
		CHECK_EQ(st.dropped, 0);
	/* Every slot went back to the pool. */
	CHECK_EQ(zdt_loanable(c->seg), c->cfg.slot_count);
	printf("  %s: taken %llu, skipped %llu, dropped %llu of %u\n",
	       policy == ZD_OVERFLOW_BLOCK ? "block" : "reclaim",
	       (unsigned long long)st.taken, (unsigned long long)st.skipped,
	       (unsigned long long)st.dropped, STREAM_N);
}

static void stream_reclaim(zdt_ctx_t *c) { stream(c, ZD_OVERFLOW_RECLAIM); }
static void stream_block(zdt_ctx_t *c) { stream(c, ZD_OVERFLOW_BLOCK); }

int main(void)
{
	zd_config_t c4 = zdt_cfg(4, 64);
	zd_config_t c8 = zdt_cfg(8, 64);
	zd_config_t cs = zdt_cfg(4, 256);

	zdt_run_both("newest_skips_and_frees", &c8, newest_skips_and_frees);
	zdt_run_both("beside_a_plain_reader", &c4, beside_a_plain_reader);
	zdt_run_both("join_and_flags", &c4, join_and_flags);
	zdt_run_both("newest_marked_read", &c4, newest_marked_read);
	zdt_run_posix("goodbye", &c4, goodbye);
	zdt_run_both("far_behind", &c4, far_behind);
	zdt_run_both("stream_reclaim", &cs, stream_reclaim);
	zdt_run_both("stream_block", &cs, stream_block);
	return zdt_finish();
}
