/* test_race_lap.c — a commit delayed between its sn claim and its ring
 * entry until ring_size later commits wrote that entry (delivery.c,
 * publish): it must not overwrite the newer lap's entry, and its sample
 * goes to the old map.
 *
 * The test hook commit_claimed stops writer A after it claimed sn 0 in
 * slot 0; meanwhile writer B commits sn 1..4 through slot 1 (2 slots, a
 * ring of 4: sn 4 writes sn 0's entry).  Afterwards both samples are
 * found, sample 0 first, and a writer can loan again and again: neither
 * sample leaks, and sn 4's entry does not look in flight forever.
 *
 * The same hook stops the commit of sn 4 while sample 0 (a view keeps it)
 * still owns the entry that sn 4 will take over; meanwhile the loan is
 * freed under the writer and a lookup settles sn 4 as a hole (ring.c,
 * zdi_ring_settle).  The hole takes the entry over as a commit would:
 * sample 0 must go to the old map, and stay findable and recyclable.
 */
#include "zdtest.h"

#include "internal.h"

static int armed, inner_ok;

static void commit_claimed(zd_segment_t *seg, uint64_t sn)
{
	if (!armed)
		return;
	armed = 0;
	inner_ok = sn == 0;
	for (uint64_t k = 1; k <= 4; k++) {
		uint32_t x;
		uint64_t got = UINT64_MAX;

		if (zd_slot_reserve(seg, 0, &x) != 0 ||
		    zd_slot_commit(seg, x, &k, sizeof(k), &got) != 0 || got != k)
			inner_ok = 0;
	}
}

static uint64_t payload_at(zd_segment_t *seg, uint32_t slot)
{
	zd_view_t v;
	uint64_t p = UINT64_MAX;

	if (zd_slot_acquire(seg, slot, &v) != 0)
		return UINT64_MAX;
	if (v.size == sizeof(p))
		memcpy(&p, v.data, sizeof(p));
	CHECK_OK(zd_slot_release(seg, &v));
	return p;
}

static void delayed_commit(zdt_ctx_t *c)
{
	uint32_t a = UINT32_MAX, s = UINT32_MAX;
	uint64_t sn = UINT64_MAX, zero = 0;
	zd_slot_info_t in;

	REQUIRE_OK(zd_slot_reserve(c->seg, 0, &a));
	CHECK_EQ(a, 0);
	zdi_test_hooks.commit_claimed = commit_claimed;
	armed = 1;
	CHECK_OK(zd_slot_commit(c->seg, a, &zero, sizeof(zero), &sn));
	zdi_test_hooks.commit_claimed = NULL;
	CHECK(!armed);
	CHECK(inner_ok);
	CHECK_EQ(sn, 0);

	/* Both samples held: slot 0 has sn 0, slot 1 sn 4. */
	CHECK_OK(zd_slot_describe(c->seg, 0, &in));
	CHECK_EQ(in.state, 2);
	CHECK_EQ(in.sn, 0);
	CHECK_OK(zd_slot_describe(c->seg, 1, &in));
	CHECK_EQ(in.state, 2);
	CHECK_EQ(in.sn, 4);
	/* Sample 0 is found first (the old map), as the oldest. */
	CHECK_OK(zd_slot_next_unread(c->seg, 9, &s));
	CHECK_EQ(s, 0);
	/* With no reader, every later loan succeeds: both slots are found
	 * again, oldest sample first. */
	for (uint64_t k = 5; k < 13; k++)
		CHECK_EQ(zdt_put_u64(c->seg, k), k);
	CHECK_OK(zd_slot_describe(c->seg, 0, &in));
	CHECK_EQ(in.state, 2);
	CHECK_GE(in.sn, 11);
	CHECK_EQ(payload_at(c->seg, 0), in.sn);
	CHECK_OK(zd_slot_describe(c->seg, 1, &in));
	CHECK_EQ(in.state, 2);
	CHECK_GE(in.sn, 11);
	CHECK_EQ(payload_at(c->seg, 1), in.sn);
}

static uint32_t freed_slot = UINT32_MAX;

static void loan_freed_then_settled(zd_segment_t *seg, uint64_t sn)
{
	uint32_t s;

	if (!armed)
		return;
	armed = 0;
	/* As a reaper does for a dead writer, then a lookup that finds sn 4
	 * unpublished and no slot holding it. */
	inner_ok = sn == 4 && zd_slot_discard(seg, freed_slot) == 0 &&
		   zd_slot_next_unread(seg, 9, &s) == -EAGAIN;
}

static void hole_takes_over_held_entry(zdt_ctx_t *c)
{
	zd_view_t v;
	uint32_t s = UINT32_MAX;
	uint64_t sn = UINT64_MAX, four = 4;

	CHECK_EQ(zdt_put_u64(c->seg, 0), 0);
	REQUIRE_OK(zd_slot_acquire(c->seg, 0, &v));
	for (uint64_t k = 1; k <= 3; k++)
		CHECK_EQ(zdt_put_u64(c->seg, k), k);
	REQUIRE_OK(zd_slot_reserve(c->seg, 0, &freed_slot));
	CHECK_EQ(freed_slot, 1);
	zdi_test_hooks.commit_claimed = loan_freed_then_settled;
	armed = 1;
	CHECK_RC(zd_slot_commit(c->seg, freed_slot, &four, sizeof(four), &sn), -ESTALE);
	zdi_test_hooks.commit_claimed = NULL;
	CHECK(!armed);
	CHECK(inner_ok);
	/* Sample 0 is still found, and once its view is gone both slots can
	 * be loaned. */
	CHECK_OK(zd_slot_next_unread(c->seg, 9, &s));
	CHECK_EQ(s, 0);
	CHECK_OK(zd_slot_release(c->seg, &v));
	CHECK_EQ(zdt_reservable(c->seg), 2);
}

int main(void)
{
	zd_config_t c2 = zdt_cfg(2, 64);

	zdt_run_both("delayed_commit", &c2, delayed_commit);
	zdt_run_both("hole_takes_over_held_entry", &c2, hole_takes_over_held_entry);
	return zdt_finish();
}
