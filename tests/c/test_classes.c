/* test_classes.c — size classes: one segment, slots of several capacities.
 *
 * The segment of most cases has three classes: 2 x 64 B (slots 0-1),
 * 2 x 256 B (slots 2-3) and 1 x 1024 B (slot 4).  A loan of n bytes must
 * land in the smallest class that holds n and has a loanable slot, then the
 * next larger one, never a smaller one; the overflow policies apply to the
 * classes that fit; one sequence-number space orders every class; the
 * class table is the geometry attach validates (hostile tables are in
 * test_hostile.c).
 */
#include "zdtest.h"

#include "internal.h"

#define LATE_NS (ZDT_SANITIZED ? 1500 * ZDT_MS : 700 * ZDT_MS)

static zd_config_t classes_cfg(void)
{
	zd_config_t c;

	memset(&c, 0, sizeof(c));
	c.class_count = 3;
	c.classes[0].slot_count = 2;
	c.classes[0].slot_capacity = 64;
	c.classes[1].slot_count = 2;
	c.classes[1].slot_capacity = 256;
	c.classes[2].slot_count = 1;
	c.classes[2].slot_capacity = 1024;
	return c;
}

static uint32_t loan(zd_segment_t *seg, uint64_t n, zd_overflow_t policy)
{
	uint32_t s = UINT32_MAX;

	REQUIRE_OK(zd_writer_loan_size(seg, n, policy, zd_now_ns() + 5 * ZDT_S, 0, &s));
	return s;
}

/* Loans n bytes (FAIL), fills them with `fill`, commits; returns the sn. */
static uint64_t put_n(zd_segment_t *seg, uint64_t n, unsigned char fill,
		      uint32_t *slot_out)
{
	void *data;
	uint64_t cap, sn = UINT64_MAX;
	uint32_t s = loan(seg, n, ZD_OVERFLOW_FAIL);

	REQUIRE_OK(zd_slot_data_ptr(seg, s, &data, &cap, NULL));
	CHECK_GE(cap, n);
	memset(data, fill, (size_t)n);
	REQUIRE_OK(zd_slot_commit_in_place(seg, s, n, &sn));
	if (slot_out)
		*slot_out = s;
	return sn;
}

static int states(zd_segment_t *seg, char *out)
{
	uint32_t n = zd_segment_slot_count(seg);

	for (uint32_t i = 0; i < n; i++)
		out[i] = (char)('0' + zd_slot_state(seg, i));
	out[n] = 0;
	return (int)n;
}

static void geometry(zdt_ctx_t *c)
{
	zd_class_t k[3];
	zd_segment_info_t info;
	uint64_t end;

	CHECK_EQ(zd_segment_class_count(c->seg), 3);
	CHECK_EQ(zd_segment_slot_count(c->seg), 5);
	CHECK_EQ(zd_segment_slot_capacity(c->seg), 1024);
	for (uint32_t i = 0; i < 3; i++)
		REQUIRE_OK(zd_segment_class(c->seg, i, &k[i]));
	CHECK_RC(zd_segment_class(c->seg, 3, &k[0]), -ERANGE);
	CHECK_EQ(k[0].first_slot, 0);
	CHECK_EQ(k[1].first_slot, 2);
	CHECK_EQ(k[2].first_slot, 4);
	CHECK_EQ(k[0].slot_stride, 192);
	CHECK_EQ(k[1].slot_stride, 384);
	CHECK_EQ(k[2].slot_stride, 1152);
	CHECK_EQ(k[0].slots_offset % 4096, 0);
	CHECK_EQ(k[1].slots_offset, k[0].slots_offset + 2 * 192);
	CHECK_EQ(k[2].slots_offset, k[1].slots_offset + 2 * 384);
	end = k[2].slots_offset + 1152;
	CHECK_EQ(zd_segment_total_size(c->seg), end);
	CHECK_EQ(zd_segment_slot_capacity_of(c->seg, 1), 64);
	CHECK_EQ(zd_segment_slot_capacity_of(c->seg, 2), 256);
	CHECK_EQ(zd_segment_slot_capacity_of(c->seg, 4), 1024);
	CHECK_EQ(zd_segment_slot_capacity_of(c->seg, 5), 0);
	CHECK_EQ(zd_segment_class_of(c->seg, 0), 0);
	CHECK_EQ(zd_segment_class_of(c->seg, 3), 1);
	CHECK_EQ(zd_segment_class_of(c->seg, 4), 2);
	CHECK_RC(zd_segment_class_of(c->seg, 5), -ERANGE);
	REQUIRE_OK(zd_segment_info(c->seg, &info));
	CHECK_EQ(info.geo.class_count, 3);
	CHECK_EQ(info.classes[1].slot_capacity, 256);
	CHECK_EQ(info.classes[3].slot_capacity, 0);
	CHECK_EQ(info.class_stats[0].free, 2);
	CHECK_EQ(info.class_stats[2].free, 1);
	if (c->backend == ZD_BACKEND_POSIX) {
		zd_segment_t *h = zdt_attach(c);
		zd_class_t a;

		CHECK_EQ(zd_segment_class_count(h), 3);
		REQUIRE_OK(zd_segment_class(h, 1, &a));
		CHECK(memcmp(&a, &k[1], sizeof(a)) == 0);
		REQUIRE_OK(zd_segment_describe_posix(c->name, &info));
		CHECK_EQ(info.geo.class_count, 3);
		CHECK_EQ(info.classes[2].slot_count, 1);
	}
}

/* Every slot filled to its capacity: none overwrites another's bytes. */
static void slots_do_not_overlap(zdt_ctx_t *c)
{
	void *data[5];
	uint64_t cap[5];
	uint32_t s;

	for (uint32_t i = 0; i < 5; i++) {
		REQUIRE_OK(zd_slot_reserve_size(c->seg, 1, 0, &s));
		CHECK_EQ(s, i);
		REQUIRE_OK(zd_slot_data_ptr(c->seg, s, &data[i], &cap[i], NULL));
		memset(data[i], 0xa0 + (int)i, (size_t)cap[i]);
	}
	CHECK_EQ(cap[0], 64);
	CHECK_EQ(cap[3], 256);
	CHECK_EQ(cap[4], 1024);
	for (uint32_t i = 0; i < 5; i++) {
		const unsigned char *p = data[i];
		int ok = 1;

		for (uint64_t b = 0; b < cap[i]; b++)
			ok &= p[b] == 0xa0 + i;
		CHECK(ok);
		CHECK_OK(zd_slot_commit_in_place(c->seg, i, cap[i], NULL));
	}
}

static void smallest_fitting_class(zdt_ctx_t *c)
{
	char st[8];
	uint32_t x = 4242;
	zd_segment_info_t before, after;

	CHECK_EQ(loan(c->seg, 10, ZD_OVERFLOW_FAIL), 0);
	CHECK_EQ(loan(c->seg, 64, ZD_OVERFLOW_FAIL), 1);
	/* class 0 is full: the next larger class */
	CHECK_EQ(loan(c->seg, 1, ZD_OVERFLOW_FAIL), 2);
	CHECK_EQ(loan(c->seg, 65, ZD_OVERFLOW_FAIL), 3);
	CHECK_EQ(loan(c->seg, 0, ZD_OVERFLOW_FAIL), 4);
	CHECK_RC(zd_writer_loan_size(c->seg, 1, ZD_OVERFLOW_FAIL, 0, 0, &x), -EAGAIN);
	/* a free slot of a smaller class is never taken for a larger loan */
	CHECK_OK(zd_slot_discard(c->seg, 0));
	CHECK_OK(zd_slot_discard(c->seg, 1));
	CHECK_RC(zd_writer_loan_size(c->seg, 65, ZD_OVERFLOW_FAIL, 0, 0, &x), -EAGAIN);
	CHECK_RC(zd_slot_reserve_size(c->seg, 200, 0, &x), -EAGAIN);
	CHECK_EQ(x, 4242);
	CHECK_EQ(loan(c->seg, 64, ZD_OVERFLOW_FAIL), 0);
	/* a size-less loan is one of the largest class */
	CHECK_OK(zd_slot_discard(c->seg, 4));
	CHECK_RC(zd_writer_loan(c->seg, ZD_OVERFLOW_FAIL, 0, 0, &x), 0);
	CHECK_EQ(x, 4);
	/* too large: refused before anything is touched */
	REQUIRE_OK(zd_segment_info(c->seg, &before));
	states(c->seg, st);
	x = 4242;
	CHECK_RC(zd_writer_loan_size(c->seg, 1025, ZD_OVERFLOW_BLOCK, UINT64_MAX, 0, &x),
		 -EMSGSIZE);
	CHECK_RC(zd_writer_loan_size(c->seg, UINT64_MAX, ZD_OVERFLOW_RECLAIM, 0, 0, &x),
		 -EMSGSIZE);
	CHECK_RC(zd_slot_reserve_size(c->seg, 1025, 0, &x), -EMSGSIZE);
	CHECK_EQ(x, 4242);
	REQUIRE_OK(zd_segment_info(c->seg, &after));
	CHECK_EQ(after.counters.loans, before.counters.loans);
	{
		char st2[8];

		states(c->seg, st2);
		CHECK(strcmp(st, st2) == 0);
	}
	CHECK_EQ(after.class_stats[0].loaned, 1);
	CHECK_EQ(after.class_stats[0].free, 1);
	CHECK_EQ(after.class_stats[1].loaned, 2);
	CHECK_EQ(after.class_stats[2].loaned, 1);
}

/* A read sample of a small class is recycled for a small loan rather than
 * spilling into a larger class; and a commit larger than the slot it was
 * loaned in is refused. */
static void recycle_within_class(zdt_ctx_t *c)
{
	zd_reader_t r;
	zd_view_t v;
	uint32_t s;
	uint64_t big = 100;

	REQUIRE_OK(zd_reader_open(c->seg, 0, &r));
	put_n(c->seg, 10, 1, NULL);
	put_n(c->seg, 10, 2, NULL);
	for (int i = 0; i < 2; i++) {
		REQUIRE_OK(zd_reader_take(c->seg, &r, &v));
		CHECK_OK(zd_slot_release(c->seg, &v));
	}
	s = loan(c->seg, 10, ZD_OVERFLOW_FAIL);
	CHECK_EQ(s, 0);                 /* the oldest read sample of class 0 */
	CHECK_RC(zd_slot_commit_in_place(c->seg, s, big, NULL), -EMSGSIZE);
	CHECK_OK(zd_slot_commit_in_place(c->seg, s, 64, NULL));
}

/* Samples in every class come out in one sequence-number order. */
static void one_sn_order(zdt_ctx_t *c)
{
	static const uint64_t sizes[] = {10, 900, 100, 64, 65, 1024, 1, 255};
	zd_reader_t r, late;
	zd_view_t v;

	REQUIRE_OK(zd_reader_open(c->seg, 0, &r));
	for (unsigned round = 0; round < 4; round++) {
		uint64_t first = UINT64_MAX;

		for (unsigned i = 0; i < 4; i++) {
			uint64_t n = sizes[(round * 4 + i) % 8];
			uint32_t s;
			uint64_t sn = put_n(c->seg, n, (unsigned char)(round * 4 + i), &s);

			if (first == UINT64_MAX)
				first = sn;
			CHECK_EQ(sn, first + i);
			CHECK_GE(zd_segment_slot_capacity_of(c->seg, s), n);
		}
		for (unsigned i = 0; i < 4; i++) {
			uint64_t n = sizes[(round * 4 + i) % 8];
			const unsigned char *p;

			REQUIRE_OK(zd_reader_take(c->seg, &r, &v));
			CHECK_EQ(v.sn, first + i);
			CHECK_EQ(v.size, n);
			p = v.data;
			CHECK(n == 0 || (p[0] == round * 4 + i && p[n - 1] == round * 4 + i));
			CHECK_OK(zd_slot_release(c->seg, &v));
		}
	}
	CHECK_RC(zd_reader_take(c->seg, &r, &v), -EAGAIN);
	/* join_last counts samples across classes */
	put_n(c->seg, 10, 50, NULL);
	put_n(c->seg, 500, 51, NULL);
	REQUIRE_OK(zd_reader_open(c->seg, 2, &late));
	REQUIRE_OK(zd_reader_take(c->seg, &late, &v));
	CHECK_EQ(v.size, 10);
	CHECK_OK(zd_slot_release(c->seg, &v));
	REQUIRE_OK(zd_reader_take(c->seg, &late, &v));
	CHECK_EQ(v.size, 500);
	CHECK_OK(zd_slot_release(c->seg, &v));
}

static uint64_t dropped(zd_segment_t *seg, zd_reader_t *r)
{
	zd_reader_stats_t st;

	if (zd_reader_stats(seg, r, &st) != 0)
		return UINT64_MAX;
	return st.dropped;
}

/* Class 0 free, classes 1 and 2 full of unread samples: a loan that needs
 * class 1 fails (FAIL), times out (BLOCK), or reclaims the oldest sample of
 * a class that fits, never one of class 0 (RECLAIM). */
static void overflow_policies(zdt_ctx_t *c)
{
	zd_reader_t r;
	zd_view_t v;
	uint32_t x = 4242, s;
	uint64_t t0, deadline;

	REQUIRE_OK(zd_reader_open(c->seg, 0, &r));
	put_n(c->seg, 10, 0, &s);       /* sn 0, slot 0 */
	CHECK_EQ(s, 0);
	put_n(c->seg, 100, 1, &s);      /* sn 1, slot 2 */
	CHECK_EQ(s, 2);
	put_n(c->seg, 100, 2, &s);      /* sn 2, slot 3 */
	CHECK_EQ(s, 3);
	put_n(c->seg, 1000, 3, &s);     /* sn 3, slot 4 */
	CHECK_EQ(s, 4);
	CHECK_RC(zd_writer_loan_size(c->seg, 100, ZD_OVERFLOW_FAIL, 0, 0, &x), -EAGAIN);
	CHECK_EQ(x, 4242);
	t0 = zdt_now_ns();
	deadline = t0 + 150 * ZDT_MS;
	CHECK_RC(zd_writer_loan_size(c->seg, 100, ZD_OVERFLOW_BLOCK, deadline, 0, &x),
		 -ETIMEDOUT);
	CHECK_GE(zdt_now_ns(), deadline);
	CHECK_LT(zdt_now_ns() - deadline, LATE_NS);
	CHECK_EQ(x, 4242);
	CHECK_EQ(dropped(c->seg, &r), 0);
	/* a small loan still finds class 0 */
	CHECK_EQ(loan(c->seg, 10, ZD_OVERFLOW_FAIL), 1);
	CHECK_OK(zd_slot_discard(c->seg, 1));
	/* RECLAIM: the oldest among classes 1-2 (sn 1), not sn 0 of class 0 */
	s = loan(c->seg, 100, ZD_OVERFLOW_RECLAIM);
	CHECK_EQ(s, 2);
	CHECK_EQ(dropped(c->seg, &r), 1);
	CHECK_OK(zd_slot_discard(c->seg, s));
	/* a loan for class 2 only reclaims in class 2 */
	s = loan(c->seg, 300, ZD_OVERFLOW_RECLAIM);
	CHECK_EQ(s, 4);
	CHECK_EQ(dropped(c->seg, &r), 2);
	CHECK_OK(zd_slot_discard(c->seg, s));
	/* the survivors arrive in order */
	REQUIRE_OK(zd_reader_take(c->seg, &r, &v));
	CHECK_EQ(v.sn, 0);
	CHECK_OK(zd_slot_release(c->seg, &v));
	REQUIRE_OK(zd_reader_take(c->seg, &r, &v));
	CHECK_EQ(v.sn, 2);
	CHECK_EQ(v.slot, 3);
	CHECK_OK(zd_slot_release(c->seg, &v));
	CHECK_RC(zd_reader_take(c->seg, &r, &v), -EAGAIN);
}

struct taker {
	zd_segment_t *seg;
	zd_reader_t *r;
	unsigned ms;
	int rc;
};

static void *take_later(void *p)
{
	struct taker *t = p;
	zd_view_t v;

	zdt_sleep_ms(t->ms);
	t->rc = zd_reader_take(t->seg, t->r, &v);
	if (t->rc == 0)
		t->rc = zd_slot_release(t->seg, &v);
	return NULL;
}

/* BLOCK waits for a slot of any class that fits: the first one the reader
 * lets go of (here a class-2 sample, after the class-0 sample). */
static void block_any_fitting_class(zdt_ctx_t *c)
{
	zd_reader_t r;
	struct taker t;
	pthread_t th;
	uint32_t s, x = 4242;
	uint64_t t0;

	REQUIRE_OK(zd_reader_open(c->seg, 0, &r));
	put_n(c->seg, 1000, 0, &s);     /* sn 0, slot 4 */
	CHECK_EQ(s, 4);
	put_n(c->seg, 100, 1, NULL);    /* sn 1, slot 2 */
	put_n(c->seg, 100, 2, NULL);    /* sn 2, slot 3 */
	CHECK_RC(zd_writer_loan_size(c->seg, 65, ZD_OVERFLOW_FAIL, 0, 0, &x), -EAGAIN);
	t.seg = c->seg;
	t.r = &r;
	t.ms = 100;
	t.rc = -1;
	REQUIRE(pthread_create(&th, NULL, take_later, &t) == 0);
	t0 = zdt_now_ns();
	CHECK_RC(zd_writer_loan_size(c->seg, 65, ZD_OVERFLOW_BLOCK,
				     t0 + 10 * ZDT_S, 0, &x), 0);
	pthread_join(th, NULL);
	CHECK_OK(t.rc);
	CHECK_EQ(x, 4);                 /* the class-2 sample the reader read */
	CHECK_GE(zdt_now_ns() - t0, 50 * ZDT_MS);
	CHECK_EQ(dropped(c->seg, &r), 0);
	CHECK_OK(zd_slot_discard(c->seg, x));
}

static void eviction_across_classes(zdt_ctx_t *c)
{
	zd_reader_t r;
	zd_view_t v;
	uint32_t evicted = 0;

	REQUIRE_OK(zd_reader_open(c->seg, 0, &r));
	put_n(c->seg, 10, 0, NULL);
	put_n(c->seg, 100, 1, NULL);
	put_n(c->seg, 1000, 2, NULL);
	CHECK_OK(zd_slot_evict_stale_at(c->seg, zd_now_ns() + ZDT_S, 1,
					zd_segment_active_mask(c->seg), &evicted));
	CHECK_EQ(evicted, 3);
	CHECK_EQ(dropped(c->seg, &r), 3);
	CHECK_RC(zd_reader_take(c->seg, &r, &v), -EAGAIN);
	put_n(c->seg, 200, 3, NULL);
	REQUIRE_OK(zd_reader_take(c->seg, &r, &v));
	CHECK_EQ(v.sn, 3);
	CHECK_OK(zd_slot_release(c->seg, &v));
}

static void describe_slots(zdt_ctx_t *c)
{
	zd_reader_t r;
	zd_view_t v;
	zd_slot_info_t si;
	uint32_t s;

	REQUIRE_OK(zd_reader_open(c->seg, 0, &r));
	put_n(c->seg, 100, 7, &s);
	CHECK_EQ(s, 2);
	(void)loan(c->seg, 5, ZD_OVERFLOW_FAIL);
	REQUIRE_OK(zd_slot_describe(c->seg, 2, &si));
	CHECK_EQ(si.class_index, 1);
	CHECK_EQ(si.state, 2);
	CHECK_EQ(si.sn, 0);
	CHECK_EQ(si.size, 100);
	CHECK_EQ(si.capacity, 256);
	CHECK_EQ(si.read_mask, 0);
	CHECK_EQ(si.loaned_by, -1);
	REQUIRE_OK(zd_reader_take(c->seg, &r, &v));
	REQUIRE_OK(zd_slot_describe(c->seg, 2, &si));
	CHECK_EQ(si.reader_pins, (uint64_t)1 << r.index);
	CHECK_EQ(si.read_mask, (uint64_t)1 << r.index);
	CHECK_OK(zd_slot_release(c->seg, &v));
	REQUIRE_OK(zd_slot_describe(c->seg, 0, &si));
	CHECK_EQ(si.state, 1);
	CHECK_GE(si.loaned_by, 0);
	CHECK_EQ(si.sn, UINT64_MAX);
	REQUIRE_OK(zd_slot_describe(c->seg, 4, &si));
	CHECK_EQ(si.state, 0);
	CHECK_EQ(si.class_index, 2);
	CHECK_RC(zd_slot_describe(c->seg, 5, &si), -ERANGE);
}

static void bad_configs(void)
{
	zd_config_t c;
	zd_segment_t *seg = NULL;

	c = classes_cfg();
	CHECK_OK(zd_config_validate(&c));
	c.classes[1].slot_capacity = 64;            /* duplicate */
	CHECK_RC(zd_config_validate(&c), -EINVAL);
	c.classes[1].slot_capacity = 32;            /* unsorted */
	CHECK_RC(zd_config_validate(&c), -EINVAL);
	CHECK_RC(zd_segment_create_memory(&c, &seg), -EINVAL);
	CHECK(seg == NULL);
	c = classes_cfg();
	c.classes[2].slot_count = 0;
	CHECK_RC(zd_config_validate(&c), -EINVAL);
	c = classes_cfg();
	c.classes[0].slot_capacity = 0;
	CHECK_RC(zd_config_validate(&c), -EINVAL);
	c = classes_cfg();
	c.classes[2].slot_capacity = ZD_SLOT_CAPACITY_MAX + 1;
	CHECK_RC(zd_config_validate(&c), -EINVAL);
	c = classes_cfg();
	c.slot_count = 4;                           /* both forms */
	CHECK_RC(zd_config_validate(&c), -EINVAL);
	c = classes_cfg();
	c.slot_capacity = 4;
	CHECK_RC(zd_config_validate(&c), -EINVAL);
	c = classes_cfg();
	c.class_count = ZD_CLASS_MAX + 1;
	CHECK_RC(zd_config_validate(&c), -EINVAL);
	/* the total slot count is bounded like one class's */
	memset(&c, 0, sizeof(c));
	c.class_count = 2;
	c.classes[0].slot_count = ZD_SLOT_COUNT_MAX;
	c.classes[0].slot_capacity = 1;
	c.classes[1].slot_count = 1;
	c.classes[1].slot_capacity = 2;
	CHECK_RC(zd_config_validate(&c), -EINVAL);
	/* the largest table the limits allow still has a size that fits
	 * (2^20 slots x 2^40 bytes < 2^63): validated, not created */
	c.classes[0].slot_count = 1;
	c.classes[0].slot_capacity = ZD_SLOT_CAPACITY_MAX - 1;
	c.classes[1].slot_count = ZD_SLOT_COUNT_MAX - 1;
	c.classes[1].slot_capacity = ZD_SLOT_CAPACITY_MAX;
	CHECK_OK(zd_config_validate(&c));
	/* sixteen classes are fine */
	memset(&c, 0, sizeof(c));
	c.class_count = ZD_CLASS_MAX;
	for (uint32_t i = 0; i < ZD_CLASS_MAX; i++) {
		c.classes[i].slot_count = 1 + i;
		c.classes[i].slot_capacity = (uint64_t)8 << i;
	}
	REQUIRE_OK(zd_segment_create_memory(&c, &seg));
	CHECK_EQ(zd_segment_class_count(seg), ZD_CLASS_MAX);
	CHECK_EQ(zd_segment_slot_count(seg), 136);
	for (uint32_t i = 0; i < ZD_CLASS_MAX; i++) {
		uint32_t s;

		REQUIRE_OK(zd_slot_reserve_size(seg, (uint64_t)8 << i, 0, &s));
		CHECK_EQ(zd_segment_class_of(seg, s), (int)i);
	}
	zd_segment_close(seg);
	/* one class given as a table is the same segment as the old form */
	{
		zd_config_t a = zdt_cfg(4, 64), b;
		zd_segment_t *sa = NULL, *sb = NULL;
		zd_segment_info_t ia, ib;

		memset(&b, 0, sizeof(b));
		b.class_count = 1;
		b.classes[0].slot_count = 4;
		b.classes[0].slot_capacity = 64;
		REQUIRE_OK(zd_segment_create_memory(&a, &sa));
		REQUIRE_OK(zd_segment_create_memory(&b, &sb));
		zd_segment_info(sa, &ia);
		zd_segment_info(sb, &ib);
		CHECK(memcmp(&ia.geo, &ib.geo, sizeof(ia.geo)) == 0);
		CHECK(memcmp(ia.classes, ib.classes, sizeof(ia.classes)) == 0);
		zd_segment_close(sa);
		zd_segment_close(sb);
	}
}

/* A class table with many slots per class crosses map words: the free map
 * search stays inside the class. */
static void classes_across_map_words(void)
{
	zd_config_t c;
	zd_segment_t *seg = NULL;
	uint32_t s, n = 0;

	memset(&c, 0, sizeof(c));
	c.class_count = 3;
	c.classes[0].slot_count = 70;
	c.classes[0].slot_capacity = 8;
	c.classes[1].slot_count = 100;
	c.classes[1].slot_capacity = 16;
	c.classes[2].slot_count = 3;
	c.classes[2].slot_capacity = 32;
	REQUIRE_OK(zd_segment_create_memory(&c, &seg));
	/* 16-byte loans: all of class 1 in index order, then class 2 */
	for (uint32_t i = 0; i < 103; i++) {
		REQUIRE_OK(zd_slot_reserve_size(seg, 9, 0, &s));
		CHECK_EQ(s, 70 + i);
		n++;
	}
	CHECK_RC(zd_slot_reserve_size(seg, 9, 0, &s), -EAGAIN);
	/* class 0 is untouched, and fills in order */
	for (uint32_t i = 0; i < 70; i++) {
		REQUIRE_OK(zd_slot_reserve_size(seg, 8, 0, &s));
		CHECK_EQ(s, i);
	}
	CHECK_RC(zd_slot_reserve_size(seg, 1, 0, &s), -EAGAIN);
	/* a discard in the middle of class 1 is found again */
	CHECK_OK(zd_slot_discard(seg, 130));
	CHECK_OK(zd_slot_discard(seg, 5));
	REQUIRE_OK(zd_slot_reserve_size(seg, 10, 0, &s));
	CHECK_EQ(s, 130);
	REQUIRE_OK(zd_slot_reserve_size(seg, 1, 0, &s));
	CHECK_EQ(s, 5);
	CHECK_EQ(n, 103);
	zd_segment_close(seg);
}

/* A class's loans walk from that class's tail: past the other classes'
 * held samples once, not at every loan. */
static void class_tail_passes_other_classes(zdt_ctx_t *c)
{
	zd_reader_t r;
	zd_view_t v;
	uint32_t s;
	uint64_t last = 0;

	REQUIRE_OK(zd_reader_open(c->seg, 0, &r));
	put_n(c->seg, 10, 1, NULL);     /* sn 0, slot 0 */
	put_n(c->seg, 10, 2, NULL);     /* sn 1, slot 1 */
	for (int i = 0; i < 3; i++)
		last = put_n(c->seg, 100 + 300 * (i == 2), 3, NULL);  /* sn 2..4: classes 1, 1, 2 */
	for (int i = 0; i < 5; i++) {
		REQUIRE_OK(zd_reader_take(c->seg, &r, &v));
		CHECK_OK(zd_slot_release(c->seg, &v));
	}
	/* class 0 recycles its oldest, then its next: the class-0 tail ends
	 * past the other classes' held samples, which stay held */
	s = loan(c->seg, 10, ZD_OVERFLOW_FAIL);
	CHECK_EQ(s, 0);
	CHECK_OK(zd_slot_commit_in_place(c->seg, s, 1, NULL));      /* sn 5 */
	s = loan(c->seg, 10, ZD_OVERFLOW_FAIL);
	CHECK_EQ(s, 1);
	CHECK_OK(zd_slot_commit_in_place(c->seg, s, 1, NULL));      /* sn 6 */
	CHECK_EQ(zdi_load_acquire_u64(&c->seg->hdr->class_tail[0]), 2);
	REQUIRE_OK(zd_reader_take(c->seg, &r, &v));
	CHECK_OK(zd_slot_release(c->seg, &v));
	s = loan(c->seg, 10, ZD_OVERFLOW_FAIL);                      /* sn 5's slot */
	CHECK_EQ(s, 0);
	CHECK_EQ(zdi_load_acquire_u64(&c->seg->hdr->class_tail[0]), last + 2);
	CHECK_OK(zd_slot_discard(c->seg, s));
	CHECK_EQ(zd_slot_state(c->seg, 2), 2);
	CHECK_EQ(zd_slot_state(c->seg, 4), 2);
	/* the other classes' own walks still find their held samples */
	CHECK_EQ(loan(c->seg, 100, ZD_OVERFLOW_FAIL), 2);
	CHECK_EQ(loan(c->seg, 1000, ZD_OVERFLOW_FAIL), 4);
}

/* Class tails are shared words: any value must leave loans bounded, and a
 * value outside the window is ignored. */
static void hostile_class_tails(zdt_ctx_t *c)
{
	static const uint64_t bad[] = {0, 1, UINT64_MAX, (uint64_t)1 << 63,
				       1000000, 0 /* next_sn */, 0 /* next_sn - 1 */};
	zd_reader_t r;
	zd_view_t v;

	REQUIRE_OK(zd_reader_open(c->seg, 0, &r));
	for (unsigned k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
		uint64_t next = zdi_load_acquire_u64(&c->seg->hdr->next_sn);
		uint64_t val = k == 5 ? next : k == 6 ? next - 1 : bad[k];
		uint32_t s, x;
		uint64_t t0;
		int rc;

		/* every class full of read samples */
		for (int i = 0; i < 5; i++) {
			put_n(c->seg, i < 2 ? 10 : i < 4 ? 100 : 1000, (unsigned char)k, NULL);
			REQUIRE_OK(zd_reader_take(c->seg, &r, &v));
			CHECK_OK(zd_slot_release(c->seg, &v));
		}
		for (uint32_t t = 0; t < ZD_CLASS_MAX; t++)
			zdi_store_release_u64(&c->seg->hdr->class_tail[t], val);
		t0 = zdt_now_ns();
		rc = zd_writer_loan_size(c->seg, 10, ZD_OVERFLOW_BLOCK, t0 + 100 * ZDT_MS, 0, &x);
		CHECK(rc == 0 || rc == -ETIMEDOUT);
		CHECK_LT(zdt_now_ns() - t0, LATE_NS + 100 * ZDT_MS);
		if (rc == 0)
			CHECK_OK(zd_slot_discard(c->seg, x));
		/* a value outside the window changes nothing */
		if (k == 0 || k == 2 || k == 3 || k == 4) {
			CHECK_EQ(rc, 0);
			s = loan(c->seg, 200, ZD_OVERFLOW_FAIL);
			CHECK_EQ(zd_segment_class_of(c->seg, s), 1);
			CHECK_OK(zd_slot_discard(c->seg, s));
		}
		/* whatever the tails, a reclaim (from the segment's tail) works */
		s = loan(c->seg, 10, ZD_OVERFLOW_RECLAIM);
		CHECK_OK(zd_slot_discard(c->seg, s));
	}
	CHECK_EQ(dropped(c->seg, &r), 0);
}

int main(void)
{
	zd_config_t cfg = classes_cfg();

	zdt_watchdog(100);
	zdt_case("bad_configs", bad_configs);
	zdt_case("classes_across_map_words", classes_across_map_words);
	zdt_run_both("geometry", &cfg, geometry);
	zdt_run_both("slots_do_not_overlap", &cfg, slots_do_not_overlap);
	zdt_run_both("smallest_fitting_class", &cfg, smallest_fitting_class);
	zdt_run_both("recycle_within_class", &cfg, recycle_within_class);
	zdt_run_both("one_sn_order", &cfg, one_sn_order);
	zdt_run_both("overflow_policies", &cfg, overflow_policies);
	zdt_run_both("block_any_fitting_class", &cfg, block_any_fitting_class);
	zdt_run_both("eviction_across_classes", &cfg, eviction_across_classes);
	zdt_run_both("describe_slots", &cfg, describe_slots);
	zdt_run_both("class_tail_passes_other_classes", &cfg,
		     class_tail_passes_other_classes);
	zdt_run_both("hostile_class_tails", &cfg, hostile_class_tails);
	return zdt_finish();
}
