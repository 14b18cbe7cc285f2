/* test_ring_lap.c — a reader more than two rings behind, past a sample that
 * another reader still holds (delivery.c, "Lost entries"): the held sample's
 * ring entry was taken over by later laps, yet the reader that has not read
 * it receives it first, in sn order, then the newest; what a reclaiming
 * writer took from it is counted as dropped, nothing else.  Once both have
 * read and released it, its slot is free again: no read bit is left clear
 * that would keep it from the writers until the reader leaves.
 */
#include "zdtest.h"

static uint64_t ring_size(zd_segment_t *seg)
{
	zd_segment_info_t i;

	REQUIRE_OK(zd_segment_info(seg, &i));
	return i.geo.ring_size;
}

static zd_reader_stats_t stats_of(zd_segment_t *seg, zd_reader_t *r)
{
	zd_reader_stats_t st;

	memset(&st, 0xff, sizeof(st));
	CHECK_OK(zd_reader_stats(seg, r, &st));
	return st;
}

static uint64_t put_reclaim(zd_segment_t *seg, uint64_t payload)
{
	uint32_t x;
	uint64_t sn = UINT64_MAX;

	REQUIRE_OK(zd_writer_loan(seg, ZD_OVERFLOW_RECLAIM, 0, 0, &x));
	REQUIRE_OK(zd_slot_commit(seg, x, &payload, sizeof(payload), &sn));
	return sn;
}

static uint64_t payload_of(const zd_view_t *v)
{
	uint64_t p = UINT64_MAX;

	if (v->size == sizeof(p))
		memcpy(&p, v->data, sizeof(p));
	return p;
}

/* `held` samples taken and kept by a (b has not read them), then `later`
 * samples through the remaining slots by reclaim.  b receives the held
 * ones in sn order, then the newest later ones the slots still hold. */
static void held_behind(zdt_ctx_t *c, uint32_t held, uint64_t later)
{
	zd_reader_t a, b;
	zd_view_t kept[8], v;
	zd_reader_stats_t st;
	uint32_t slots = c->cfg.slot_count, free_slots = slots - held;
	uint64_t n = 0, first_kept;

	REQUIRE(held < slots && held <= 8);
	REQUIRE_OK(zd_reader_open(c->seg, 0, &a));
	REQUIRE_OK(zd_reader_open(c->seg, 0, &b));
	/* One sample read by both, so that b's cursor is past sn 0. */
	CHECK_EQ(put_reclaim(c->seg, n++), 0);
	REQUIRE_OK(zd_reader_take(c->seg, &a, &v));
	CHECK_OK(zd_slot_release(c->seg, &v));
	REQUIRE_OK(zd_reader_take(c->seg, &b, &v));
	CHECK_OK(zd_slot_release(c->seg, &v));
	first_kept = n;
	for (uint32_t k = 0; k < held; k++) {
		CHECK_EQ(put_reclaim(c->seg, n), n);
		n++;
		REQUIRE_OK(zd_reader_take(c->seg, &a, &kept[k]));
		CHECK_EQ(kept[k].sn, first_kept + k);
	}
	for (uint64_t k = 0; k < later; k++, n++)
		CHECK_EQ(put_reclaim(c->seg, n), n);
	/* The held samples first, oldest first ... */
	for (uint32_t k = 0; k < held; k++) {
		REQUIRE_OK(zd_reader_take(c->seg, &b, &v));
		CHECK_EQ(v.sn, first_kept + k);
		CHECK_EQ(payload_of(&v), first_kept + k);
		CHECK_OK(zd_slot_release(c->seg, &v));
	}
	/* ... then the newest, as many as the other slots hold. */
	for (uint64_t sn = n - free_slots; sn < n; sn++) {
		REQUIRE_OK(zd_reader_take(c->seg, &b, &v));
		CHECK_EQ(v.sn, sn);
		CHECK_EQ(payload_of(&v), sn);
		CHECK_OK(zd_slot_release(c->seg, &v));
	}
	CHECK_RC(zd_reader_take(c->seg, &b, &v), -EAGAIN);
	st = stats_of(c->seg, &b);
	CHECK_EQ(st.taken, 1 + held + free_slots);
	CHECK_EQ(st.dropped, later - free_slots);      /* reclaimed, counted */
	CHECK_EQ(st.taken + st.dropped, n);
	CHECK_EQ(st.lag, 0);
	/* b has read everything: the low-level scan agrees. */
	{
		uint32_t s;

		CHECK_RC(zd_slot_next_unread(c->seg, b.index, &s), -EAGAIN);
	}
	/* a reads the rest; once a releases, every slot is free for a FAIL
	 * writer: nothing stays unread by b. */
	while (zd_reader_take(c->seg, &a, &v) == 0)
		CHECK_OK(zd_slot_release(c->seg, &v));
	CHECK_EQ(zdt_loanable(c->seg), free_slots);
	for (uint32_t k = 0; k < held; k++)
		CHECK_OK(zd_slot_release(c->seg, &kept[k]));
	CHECK_EQ(zdt_loanable(c->seg), slots);
	CHECK_EQ(stats_of(c->seg, &b).dropped, later - free_slots);
	CHECK_OK(zd_reader_close(c->seg, &a));
	CHECK_OK(zd_reader_close(c->seg, &b));
}

static void one_held_three_rings(zdt_ctx_t *c)
{
	held_behind(c, 1, 3 * ring_size(c->seg));
}

static void one_held_just_over_two_rings(zdt_ctx_t *c)
{
	held_behind(c, 1, 2 * ring_size(c->seg) + 1);
}

static void three_held_many_laps(zdt_ctx_t *c)
{
	held_behind(c, 3, 40 * ring_size(c->seg) + 5);
}

/* Every count of later samples around the ring's length and two. */
static void every_distance(zdt_ctx_t *c)
{
	uint64_t ring = ring_size(c->seg);

	for (uint64_t later = 1; later <= 3 * ring; later++) {
		zd_segment_t *seg;

		REQUIRE_OK(zd_segment_create_memory(&c->cfg, &seg));
		{
			zdt_ctx_t sub = *c;

			sub.seg = seg;
			held_behind(&sub, 1, later);
		}
		CHECK_OK(zd_segment_close(seg));
	}
}

int main(void)
{
	zd_config_t c2 = zdt_cfg(2, 64);
	zd_config_t c4 = zdt_cfg(4, 64);

	zdt_run_both("one_held_three_rings", &c2, one_held_three_rings);
	zdt_run_both("one_held_just_over_two_rings", &c2, one_held_just_over_two_rings);
	zdt_run_both("three_held_many_laps", &c4, three_held_many_laps);
	zdt_run_both("every_distance", &c2, every_distance);
	return zdt_finish();
}
