/* test_race_latest.c — two takes of one latest-value reader (delivery.c,
 * zdi_reader_deliver_latest): every sample is delivered or counted as
 * skipped, exactly once, and none is left unread below the cursor.
 *
 * Take A pins its newest sample t (sn 2) and the test hook latest_pinned
 * stops it before its cursor CAS.  Meanwhile sn 3 is committed and take B
 * of the same reader delivers it: its range [0, 3) includes t, which A
 * still pins, so B cannot mark t.  A then loses the cursor CAS: it must
 * mark t read itself and count it as skipped.  Afterwards a writer that
 * fails at once when no slot is free keeps going as long as the reader
 * keeps up.
 */
#include "zdtest.h"

#include "internal.h"

static int armed, b_rc = 1;
static zd_reader_t R;
static zd_view_t b_view;
static uint64_t pinned_t = UINT64_MAX;

static int put(zd_segment_t *seg, uint64_t payload, uint64_t *sn)
{
	uint32_t x;
	int rc = zd_writer_loan(seg, ZD_OVERFLOW_FAIL, 0, 0, &x);

	return rc != 0 ? rc : zd_slot_commit(seg, x, &payload, sizeof(payload), sn);
}

static void latest_pinned(zd_segment_t *seg, uint32_t r, uint64_t t)
{
	uint64_t sn;

	if (!armed || r != R.index)
		return;
	armed = 0;
	pinned_t = t;
	if (put(seg, 3, &sn) == 0 && sn == 3)
		b_rc = zd_reader_take(seg, &R, &b_view);
}

static void two_takes(zdt_ctx_t *c)
{
	zd_view_t v;
	zd_reader_stats_t st;
	uint64_t sn, commits = 0;
	int a_rc;

	REQUIRE_OK(zd_reader_open_flags(c->seg, 0, ZD_READER_LATEST, &R));
	for (uint64_t k = 0; k < 3; k++) {
		REQUIRE_OK(put(c->seg, k, &sn));
		commits++;
	}
	zdi_test_hooks.latest_pinned = latest_pinned;
	armed = 1;
	a_rc = zd_reader_take(c->seg, &R, &v);
	zdi_test_hooks.latest_pinned = NULL;
	commits++;                                      /* sn 3, in the hook */
	CHECK(!armed);
	CHECK_EQ(pinned_t, 2);
	REQUIRE_OK(b_rc);
	CHECK_EQ(b_view.sn, 3);                         /* B has the newest */
	CHECK_RC(a_rc, -EAGAIN);                        /* nothing newer for A */
	if (a_rc == 0)
		CHECK_OK(zd_slot_release(c->seg, &v));
	CHECK_OK(zd_slot_release(c->seg, &b_view));
	CHECK_OK(zd_reader_stats(c->seg, &R, &st));
	CHECK_EQ(st.taken, 1);
	CHECK_EQ(st.skipped, 3);                        /* 0, 1 and t */
	CHECK_EQ(st.dropped, 0);
	/* The reader keeps up: a FAIL writer never runs out of slots. */
	for (uint64_t k = 0; k < 12; k++) {
		CHECK_OK(put(c->seg, 10 + k, &sn));
		commits++;
		REQUIRE_OK(zd_reader_take(c->seg, &R, &v));
		CHECK_EQ(v.sn, sn);
		CHECK_OK(zd_slot_release(c->seg, &v));
	}
	CHECK_OK(zd_reader_stats(c->seg, &R, &st));
	CHECK_EQ(st.taken + st.skipped + st.dropped, commits);
	CHECK_OK(zd_reader_close(c->seg, &R));
}

int main(void)
{
	zd_config_t c4 = zdt_cfg(4, 64);

	zdt_run_both("two_takes", &c4, two_takes);
	return zdt_finish();
}
