/* test_race_recycle.c — a held sample out of the ring's reach survives a
 * recycle that is given back (ring.c: zdi_old_best, zdi_keep_track).
 *
 * zdi_recycle moves a committed slot to LOANED, then finds a pin that
 * slipped in and gives the slot back unchanged.  The test hook
 * recycle_loaned stops it between the two, plays the pinner (its pin bit,
 * set before the pin check: the recycler must give the slot back) and,
 * meanwhile, another party that looks at the slot:
 *   - a lookup that scans the old map: it must not drop the slot's bit;
 *   - a commit whose ring entry takes the sample's over: it must put the
 *     slot's bit in.
 * Afterwards the sample is still found (zd_slot_next_unread), and a writer
 * can still recycle it: with nothing held, every slot is loanable again.
 */
#include "zdtest.h"

#include "internal.h"

#define PINNER ((uint64_t)1 << 5)       /* a racing pinner's reader bit */

static int armed;
static int (*during)(zd_segment_t *seg);
static int during_rc = 1;

static void recycle_loaned(zd_segment_t *seg, uint32_t slot)
{
	if (!armed)
		return;
	armed = 0;
	/* A reader's pin lands before the recycler's pin check (the pinner
	 * then sees LOANED and backs off: below, after the recycle). */
	__atomic_fetch_or(&zdi_slot(seg, slot)->reader_pins, PINNER, __ATOMIC_SEQ_CST);
	during_rc = during(seg);
}

static void pinner_backs_off(zd_segment_t *seg, uint32_t slot)
{
	__atomic_fetch_and(&zdi_slot(seg, slot)->reader_pins, ~PINNER, __ATOMIC_SEQ_CST);
}

/* Sample 0 is still committed in slot 0 and found, and recycled like
 * any other: with nothing held both slots can be loaned. */
static void sample0_still_tracked(zd_segment_t *seg)
{
	zd_slot_info_t in;
	uint32_t s = UINT32_MAX;

	CHECK_OK(zd_slot_describe(seg, 0, &in));
	CHECK_EQ(in.state, 2);
	CHECK_EQ(in.sn, 0);
	CHECK_OK(zd_slot_next_unread(seg, 9, &s));
	CHECK_EQ(s, 0);
	CHECK_EQ(zdt_reservable(seg), 2);
}

static int look_up(zd_segment_t *seg)
{
	uint32_t s;

	return zd_slot_next_unread(seg, 9, &s);
}

/* Sample 0 in slot 0, kept by a view while sn 1..4 go through slot 1: sn
 * 4's commit takes its ring entry over (2 slots, ring of 4), so it is in
 * the old map.  The recycle of slot 0 is stopped after its CAS; a lookup
 * scans the old map meanwhile; the pinner makes the recycle give it back. */
static void old_map_scan_during_recycle(zdt_ctx_t *c)
{
	zd_view_t v;
	uint32_t s = UINT32_MAX, x = UINT32_MAX;

	CHECK_EQ(zdt_put_u64(c->seg, 0), 0);
	REQUIRE_OK(zd_slot_acquire(c->seg, 0, &v));
	for (uint64_t k = 1; k <= 4; k++)
		CHECK_EQ(zdt_put_u64(c->seg, k), k);
	CHECK_OK(zd_slot_release(c->seg, &v));
	REQUIRE_OK(zd_slot_next_unread(c->seg, 9, &s));
	CHECK_EQ(s, 0);

	during = look_up;
	zdi_test_hooks.recycle_loaned = recycle_loaned;
	armed = 1;
	REQUIRE_OK(zd_slot_reserve(c->seg, 0, &x));     /* tries slot 0 first */
	zdi_test_hooks.recycle_loaned = NULL;
	CHECK(!armed);                                  /* the race ran */
	CHECK_OK(during_rc);
	CHECK_EQ(x, 1);                                 /* slot 0 was given back */
	pinner_backs_off(c->seg, 0);
	CHECK_OK(zd_slot_discard(c->seg, x));

	sample0_still_tracked(c->seg);
}

static int commit_one(zd_segment_t *seg)
{
	uint32_t x;
	uint64_t sn = UINT64_MAX, payload = 4;
	int rc = zd_slot_reserve(seg, 0, &x);

	if (rc == 0)
		rc = zd_slot_commit(seg, x, &payload, sizeof(payload), &sn);
	return rc == 0 && sn != 4 ? -EPROTO : rc;
}

/* Sample 0 in slot 0 and sn 1..3 through slot 1: sample 0's entry is still
 * its own.  The recycle of slot 0 is stopped after its CAS; meanwhile sn 4
 * is committed (through slot 1) and takes sample 0's entry over; the
 * pinner makes the recycle give slot 0 back. */
static void takeover_during_recycle(zdt_ctx_t *c)
{
	zd_view_t v;
	uint32_t x;

	CHECK_EQ(zdt_put_u64(c->seg, 0), 0);
	REQUIRE_OK(zd_slot_acquire(c->seg, 0, &v));
	for (uint64_t k = 1; k <= 3; k++)
		CHECK_EQ(zdt_put_u64(c->seg, k), k);
	CHECK_OK(zd_slot_release(c->seg, &v));

	during = commit_one;
	zdi_test_hooks.recycle_loaned = recycle_loaned;
	armed = 1;
	/* The walk starts at sn 0; the window it walks ends before sn 4, and
	 * sn 1..3 are gone: it finds nothing. */
	CHECK_RC(zd_slot_reserve(c->seg, 0, &x), -EAGAIN);
	zdi_test_hooks.recycle_loaned = NULL;
	CHECK(!armed);
	CHECK_OK(during_rc);
	pinner_backs_off(c->seg, 0);

	sample0_still_tracked(c->seg);
}

int main(void)
{
	zd_config_t c2 = zdt_cfg(2, 64);

	zdt_run_both("old_map_scan_during_recycle", &c2, old_map_scan_during_recycle);
	zdt_run_both("takeover_during_recycle", &c2, takeover_during_recycle);
	return zdt_finish();
}
