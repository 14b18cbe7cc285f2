/* test_sn_wrap.c — sequence numbers are 64-bit: they stay consecutive
 * across 2^32 (where a u32 would wrap) and across 2^63 (where a signed
 * comparison would flip), and readers receive them in order while slots
 * are recycled out of index order.  At the top of the range, from below
 * 2^64 - 3 * slot_count up to the last sequence number UINT64_MAX - 1
 * (where sn + slot_count and friends overflow), delivery, join_last,
 * reclaim drops and the reader statistics still hold, with 4 and with 1024
 * slots.
 *
 * UINT64_MAX itself is no sequence number: it is the "none" value of
 * zd_reader_stats_t.last_sn.  A commit made when next_sn is UINT64_MAX
 * (reached after 2^64 - 1 commits, 584 years at 10^9 commits a second)
 * returns -EOVERFLOW and leaves its loan live; loans and discards, which
 * take no sequence number, still work there.
 *
 * The segment's next_sn lives in the header (layout.h).  For the posix
 * backend it is written with pwrite into /dev/shm/<name> (the creator's
 * mapping sees it: same pages); for the memory backend through the region,
 * whose base is found from a loan's data pointer.
 */
#include "zdtest.h"

#include "layout.h"

static void set_next_sn(zdt_ctx_t *c, uint64_t sn)
{
	if (c->backend == ZD_BACKEND_POSIX) {
		char path[512];
		int fd;

		REQUIRE(zdt_shm_path(path, sizeof(path), c->name));
		fd = open(path, O_RDWR | O_CLOEXEC);
		REQUIRE(fd >= 0);
		REQUIRE(pwrite(fd, &sn, 8, offsetof(struct zdi_segment_header,
						    next_sn)) == 8);
		close(fd);
	} else {
		uint32_t s;
		void *data = NULL;
		unsigned char *base;

		REQUIRE_OK(zd_slot_reserve(c->seg, 0, &s));
		REQUIRE_OK(zd_slot_data_ptr(c->seg, s, &data, NULL, NULL));
		REQUIRE_OK(zd_slot_discard(c->seg, s));
		base = (unsigned char *)data - ZD_SLOT_HEADER_SIZE - zdt_slots_offset(c->seg) -
		       (uint64_t)s * zd_segment_slot_total_size(c->seg);
		REQUIRE(((struct zdi_segment_header *)base)->magic == ZDI_MAGIC);
		__atomic_store_n(&((struct zdi_segment_header *)base)->next_sn, sn,
				 __ATOMIC_SEQ_CST);
	}
	{
		zd_segment_info_t i;

		REQUIRE_OK(zd_segment_info(c->seg, &i));
		REQUIRE(i.next_sn == sn);
	}
}

static uint64_t commit_tagged(zd_segment_t *seg, uint32_t *slot_out)
{
	uint32_t s;
	uint64_t sn = 0, tag;
	void *data = NULL;
	zd_segment_info_t i;

	REQUIRE_OK(zd_writer_loan(seg, ZD_OVERFLOW_FAIL, 0, 0, &s));
	REQUIRE_OK(zd_slot_data_ptr(seg, s, &data, NULL, NULL));
	/* the payload is the sn the writer expects to get */
	REQUIRE_OK(zd_segment_info(seg, &i));
	tag = i.next_sn;
	memcpy(data, &tag, 8);
	REQUIRE_OK(zd_slot_commit_in_place(seg, s, 8, &sn));
	CHECK_EQ(sn, tag);
	if (slot_out)
		*slot_out = s;
	return sn;
}

static void take_expect(zd_segment_t *seg, zd_reader_t *r, uint64_t want)
{
	zd_view_t v;
	uint64_t tag = 0;
	int rc = zd_reader_take(seg, r, &v);

	CHECK_OK(rc);
	if (rc != 0)
		return;
	CHECK_EQ(v.sn, want);
	memcpy(&tag, v.data, 8);
	CHECK_EQ(tag, want);
	CHECK_OK(zd_slot_release(seg, &v));
}

/* start: the first sn; 10 commits; 4 slots, so slots are recycled and
 * newer samples land in lower slots than older unread ones. */
static void run_across(zdt_ctx_t *c, uint64_t start)
{
	zd_reader_t r, late;
	zd_reader_stats_t st;
	zd_view_t v;
	uint64_t sns[10];
	uint32_t slots[10];
	int n = 0;

	set_next_sn(c, start);
	REQUIRE_OK(zd_reader_open(c->seg, 0, &r));
	CHECK_EQ(r.start_sn, start);
	/* 4 commits fill the ring */
	for (; n < 4; n++)
		sns[n] = commit_tagged(c->seg, &slots[n]);
	take_expect(c->seg, &r, start + 0);
	take_expect(c->seg, &r, start + 1);
	/* two more go into the two freed (lower) slots */
	for (; n < 6; n++)
		sns[n] = commit_tagged(c->seg, &slots[n]);
	CHECK_LT(slots[4], slots[2]);
	take_expect(c->seg, &r, start + 2);
	take_expect(c->seg, &r, start + 3);
	take_expect(c->seg, &r, start + 4);
	for (; n < 10; n++) {
		sns[n] = commit_tagged(c->seg, &slots[n]);
		if (n == 7) {
			take_expect(c->seg, &r, start + 5);
			take_expect(c->seg, &r, start + 6);
		}
	}
	for (int i = 0; i < 10; i++)
		CHECK_EQ(sns[i], start + (uint64_t)i);
	/* a late reader asking for the last 3 gets them in order */
	REQUIRE_OK(zd_reader_open(c->seg, 3, &late));
	for (uint64_t k = 7; k < 10; k++) {
		take_expect(c->seg, &r, start + k);
		take_expect(c->seg, &late, start + k);
	}
	CHECK_RC(zd_reader_take(c->seg, &r, &v), -EAGAIN);
	CHECK_RC(zd_reader_take(c->seg, &late, &v), -EAGAIN);
	CHECK_OK(zd_reader_stats(c->seg, &r, &st));
	CHECK_EQ(st.taken, 10);
	CHECK_EQ(st.last_sn, start + 9);
	CHECK_EQ(st.lag, 0);
	CHECK_EQ(st.dropped, 0);
	/* next_unread (raw API) agrees on the order too */
	{
		uint32_t s;
		zd_slot_header_t h;

		commit_tagged(c->seg, NULL);
		commit_tagged(c->seg, NULL);
		REQUIRE_OK(zd_slot_next_unread(c->seg, r.index, &s));
		CHECK_OK(zd_slot_read(c->seg, s, &h, NULL, 0, NULL));
		CHECK_EQ(h.sn, start + 10);
	}
	{
		zd_segment_info_t i;

		CHECK_OK(zd_segment_info(c->seg, &i));
		CHECK_EQ(i.next_sn, start + 12);
	}
}

static void across_2_32(zdt_ctx_t *c)
{
	run_across(c, ((uint64_t)1 << 32) - 5);
}

static void across_2_63(zdt_ctx_t *c)
{
	run_across(c, ((uint64_t)1 << 63) - 5);
}

/* RECLAIM picks the oldest by 64-bit sn too: with sn 2^32-1 in a high
 * slot and 2^32 in a low one, the high slot is the oldest. */
static void reclaim_oldest_across_2_32(zdt_ctx_t *c)
{
	zd_reader_t r;
	uint32_t s[4], x;
	uint64_t base = ((uint64_t)1 << 32) - 3;

	set_next_sn(c, base);
	REQUIRE_OK(zd_reader_open(c->seg, 0, &r));
	for (int i = 0; i < 4; i++)
		commit_tagged(c->seg, &s[i]);   /* base .. base+3 = 2^32 */
	take_expect(c->seg, &r, base);
	take_expect(c->seg, &r, base + 1);
	commit_tagged(c->seg, &s[0]);           /* 2^32 + 1 into a low slot */
	commit_tagged(c->seg, &s[1]);           /* 2^32 + 2 */
	/* unread: base+2 (= 2^32-1), base+3 (= 2^32), 2^32+1, 2^32+2 */
	REQUIRE_OK(zd_writer_loan(c->seg, ZD_OVERFLOW_RECLAIM, 0, 0, &x));
	CHECK_EQ(x, s[2]);
	CHECK_OK(zd_slot_discard(c->seg, x));
	take_expect(c->seg, &r, base + 3);
	take_expect(c->seg, &r, base + 4);
	take_expect(c->seg, &r, base + 5);
}

/* Commits n tagged samples from the current next_sn (== first) in batches
 * of `batch`, taking after each batch all but `keep` of the unread ones,
 * so slots are recycled while up to keep + batch (<= slot_count) are
 * unread; then takes the rest.  Every take must be the next sn in order. */
static void stream(zdt_ctx_t *c, zd_reader_t *r, uint64_t first, uint64_t n,
		   uint64_t batch, uint64_t keep)
{
	uint64_t committed = 0, taken = 0;

	while (committed < n) {
		for (uint64_t k = 0; k < batch && committed < n; k++)
			CHECK_EQ(commit_tagged(c->seg, NULL), first + committed++);
		while (committed - taken > keep)
			take_expect(c->seg, r, first + taken++);
	}
	while (taken < n)
		take_expect(c->seg, r, first + taken++);
}

static void check_stats(zdt_ctx_t *c, zd_reader_t *r, uint64_t taken,
			uint64_t dropped, uint64_t last_sn)
{
	zd_reader_stats_t st;

	CHECK_OK(zd_reader_stats(c->seg, r, &st));
	CHECK_EQ(st.taken, taken);
	CHECK_EQ(st.dropped, dropped);
	CHECK_EQ(st.last_sn, last_sn);
	CHECK_EQ(st.lag, 0);
}

static void check_next_sn(zdt_ctx_t *c, uint64_t want)
{
	zd_segment_info_t i;

	CHECK_OK(zd_segment_info(c->seg, &i));
	CHECK_EQ(i.next_sn, want);
}

/* Four rings of samples across 2^32, slots recycled out of index order. */
static void deep_across_2_32(zdt_ctx_t *c)
{
	uint64_t n = 4u * c->cfg.slot_count;
	uint64_t start = ((uint64_t)1 << 32) - n / 2 - 3;
	zd_reader_t r;

	set_next_sn(c, start);
	REQUIRE_OK(zd_reader_open(c->seg, 0, &r));
	CHECK_EQ(r.start_sn, start);
	stream(c, &r, start, n, c->cfg.slot_count - 3, 2);
	check_stats(c, &r, n, 0, start + n - 1);
	check_next_sn(c, start + n);
}

/* From 2^64 - 3 * slot_count - 1 up to the last sn, UINT64_MAX - 1. */
static void up_to_the_last_sn(zdt_ctx_t *c)
{
	uint64_t slots = c->cfg.slot_count;
	uint64_t n = 3 * slots + 1, start = UINT64_MAX - n;
	uint64_t k = slots / 2;
	zd_reader_t r, late;
	zd_view_t v;
	uint32_t s;

	set_next_sn(c, start);
	REQUIRE_OK(zd_reader_open(c->seg, 0, &r));
	CHECK_EQ(r.start_sn, start);
	stream(c, &r, start, n, slots - 1, 1);
	check_stats(c, &r, n, 0, UINT64_MAX - 1);
	check_next_sn(c, UINT64_MAX);
	CHECK_RC(zd_reader_take(c->seg, &r, &v), -EAGAIN);
	/* a late reader asks for the newest k and gets them in order */
	REQUIRE_OK(zd_reader_open(c->seg, k, &late));
	CHECK_EQ(late.start_sn, UINT64_MAX - k);
	for (uint64_t i = k; i > 0; i--)
		take_expect(c->seg, &late, UINT64_MAX - i);
	CHECK_RC(zd_reader_take(c->seg, &late, &v), -EAGAIN);
	check_stats(c, &late, k, 0, UINT64_MAX - 1);
	/* loans and discards take no sn: they still work at the end; a
	 * commit is refused and its loan stays live */
	for (uint64_t i = 0; i < slots; i++) {
		REQUIRE_OK(zd_writer_loan(c->seg, ZD_OVERFLOW_FAIL, 0, 0, &s));
		CHECK_RC(zd_slot_commit(c->seg, s, "x", 1, NULL), -EOVERFLOW);
		CHECK_OK(zd_slot_discard(c->seg, s));
	}
	check_next_sn(c, UINT64_MAX);
	CHECK_RC(zd_reader_take(c->seg, &r, &v), -EAGAIN);
	CHECK_OK(zd_reader_close(c->seg, &late));
}

/* A reader that takes nothing while the writer reclaims through the top
 * of the range: it gets the newest slot_count samples, in order, and every
 * other one is counted dropped. */
static void reclaim_up_to_the_last_sn(zdt_ctx_t *c)
{
	uint64_t slots = c->cfg.slot_count;
	uint64_t n = 3 * slots + 1, start = UINT64_MAX - n;
	zd_reader_t r;
	zd_view_t v;

	set_next_sn(c, start);
	REQUIRE_OK(zd_reader_open(c->seg, 0, &r));
	for (uint64_t i = 0; i < n; i++) {
		uint64_t sn = 0, tag = start + i;
		void *data = NULL;
		uint32_t s;

		REQUIRE_OK(zd_writer_loan(c->seg, ZD_OVERFLOW_RECLAIM, 0, 0, &s));
		REQUIRE_OK(zd_slot_data_ptr(c->seg, s, &data, NULL, NULL));
		memcpy(data, &tag, 8);
		REQUIRE_OK(zd_slot_commit_in_place(c->seg, s, 8, &sn));
		CHECK_EQ(sn, tag);
	}
	check_next_sn(c, UINT64_MAX);
	for (uint64_t i = slots; i > 0; i--)
		take_expect(c->seg, &r, UINT64_MAX - i);
	CHECK_RC(zd_reader_take(c->seg, &r, &v), -EAGAIN);
	check_stats(c, &r, slots, n - slots, UINT64_MAX - 1);
	{
		zd_segment_info_t i;

		CHECK_OK(zd_segment_info(c->seg, &i));
		CHECK_EQ(i.counters.reclaims, n - slots);
	}
}

/* A reader opened one commit before the end receives exactly the last sn. */
static void open_just_before_the_end(zdt_ctx_t *c)
{
	zd_reader_t r;
	zd_view_t v;

	set_next_sn(c, UINT64_MAX - 1);
	REQUIRE_OK(zd_reader_open(c->seg, 0, &r));
	CHECK_EQ(r.start_sn, UINT64_MAX - 1);
	check_stats(c, &r, 0, 0, UINT64_MAX);   /* none taken: last_sn "none" */
	CHECK_EQ(commit_tagged(c->seg, NULL), UINT64_MAX - 1);
	{
		zd_reader_stats_t st;

		CHECK_OK(zd_reader_stats(c->seg, &r, &st));
		CHECK_EQ(st.lag, 1);
	}
	take_expect(c->seg, &r, UINT64_MAX - 1);
	CHECK_RC(zd_reader_take(c->seg, &r, &v), -EAGAIN);
	check_stats(c, &r, 1, 0, UINT64_MAX - 1);
	check_next_sn(c, UINT64_MAX);
}

int main(void)
{
	zd_config_t c4 = zdt_cfg(4, 64);
	zd_config_t c1024 = zdt_cfg(1024, 8);

	zdt_run_both("across_2_32", &c4, across_2_32);
	zdt_run_both("across_2_63", &c4, across_2_63);
	zdt_run_both("reclaim_oldest_across_2_32", &c4, reclaim_oldest_across_2_32);
	zdt_run_both("deep_across_2_32 (1024 slots)", &c1024, deep_across_2_32);
	zdt_run_both("up_to_the_last_sn (4 slots)", &c4, up_to_the_last_sn);
	zdt_run_both("up_to_the_last_sn (1024 slots)", &c1024, up_to_the_last_sn);
	zdt_run_both("reclaim_up_to_the_last_sn (4 slots)", &c4,
		     reclaim_up_to_the_last_sn);
	zdt_run_both("reclaim_up_to_the_last_sn (1024 slots)", &c1024,
		     reclaim_up_to_the_last_sn);
	zdt_run_both("open_just_before_the_end", &c4, open_just_before_the_end);
	return zdt_finish();
}
