/* test_dead_writer.c — a writer process is killed (SIGKILL) between
 * zd_writer_loan and commit.
 *
 * Its loan is reclaimed (zd_segment_reap, counted in loans_reclaimed; or
 * inside a blocked zd_writer_loan; or when its attachment entry is claimed
 * again), and no reader ever sees the half-written sample.
 */
#include "zdtest.h"

#define CAPACITY 128u

static char seg_name[64];
static int up_pipe[2];

/* Attaches, commits `good` messages (writer 1), loans one more slot,
 * scribbles "DEAD" over it, reports the slot and waits to be killed. */
static int doomed_writer(void *arg)
{
	uint64_t good = (uint64_t)(intptr_t)arg;
	zd_segment_t *seg = NULL;
	uint32_t slot;
	void *data = NULL, *meta = NULL;

	close(up_pipe[0]);
	if (zd_segment_attach_posix(seg_name, &seg) != 0)
		return 20;
	for (uint64_t i = 0; i < good; i++)
		if (zdt_send(seg, 1, i, zd_now_ns() + 10 * ZDT_S, NULL) != 0)
			return 21;
	if (zd_writer_loan(seg, ZD_OVERFLOW_BLOCK, zd_now_ns() + 10 * ZDT_S, 0,
			   &slot) != 0)
		return 22;
	if (zd_slot_data_ptr(seg, slot, &data, NULL, &meta) != 0)
		return 23;
	memset(data, 'D', CAPACITY);
	memcpy(data, "DEAD", 4);
	memset(meta, 'D', ZD_SLOT_META_SIZE);
	if (zdt_write_full(up_pipe[1], &slot, sizeof(slot)) != 0)
		return 24;
	for (;;)
		pause();
}

static zd_segment_t *setup(uint32_t slots)
{
	zd_config_t cfg = zdt_cfg(slots, CAPACITY);
	zd_segment_t *seg = NULL;

	zdt_watchdog(100);
	REQUIRE_OK(zd_segment_create_posix(zdt_unique_name(seg_name), &cfg, &seg));
	zdt_pipe(up_pipe);
	return seg;
}

static void teardown(zd_segment_t *seg)
{
	close(up_pipe[0]);
	close(up_pipe[1]);
	zd_segment_close(seg);
	CHECK_OK(zd_segment_unlink_posix(seg_name));
}

/* Forks the doomed writer, waits for its loan, kills it; returns the slot. */
static uint32_t kill_a_writer(zd_segment_t *seg, uint64_t good)
{
	uint32_t slot = UINT32_MAX;
	pid_t w = zdt_fork(doomed_writer, (void *)(intptr_t)good);

	REQUIRE_OK(zdt_read_full(up_pipe[0], &slot, sizeof(slot), 20000));
	REQUIRE(slot < zd_segment_slot_count(seg));
	CHECK_EQ(zd_slot_state(seg, slot), 1);
	kill(w, SIGKILL);
	CHECK_EQ(zdt_wait(w), 128 + SIGKILL);
	/* death alone changes nothing in the segment */
	CHECK_EQ(zd_slot_state(seg, slot), 1);
	return slot;
}

/* Takes everything there is; checks it is writer 1's counters 0..good-1
 * in order and never the dead loan. */
static void drain_good(zd_segment_t *seg, zd_reader_t *r, uint64_t good)
{
	zd_view_t v;
	zdt_msg_head_t h;
	uint64_t n = 0;
	int rc;

	while ((rc = zd_reader_take(seg, r, &v)) == 0) {
		CHECK(v.size < 4 || memcmp(v.data, "DEAD", 4) != 0);
		CHECK(zdt_msg_verify(v.data, v.size, &h));
		CHECK_EQ(h.writer, 1);
		CHECK_EQ(h.counter, n);
		CHECK_EQ(v.sn, n);
		n++;
		CHECK_OK(zd_slot_release(seg, &v));
	}
	CHECK_RC(rc, -EAGAIN);
	CHECK_EQ(n, good);
}

static void reap_reclaims_dead_loan(void)
{
	zd_segment_t *seg = setup(4);
	zd_segment_info_t info;
	zd_reader_t r;
	zd_view_t v;
	uint32_t slot, rr = 99, lr = 99;
	uint64_t sn;

	REQUIRE_OK(zd_reader_open(seg, 0, &r));
	slot = kill_a_writer(seg, 2);
	drain_good(seg, &r, 2);
	CHECK_OK(zd_segment_info(seg, &info));
	CHECK_EQ(info.counters.loans_reclaimed, 0);
	CHECK_EQ(info.next_sn, 2);

	CHECK_OK(zd_segment_reap(seg, &rr, &lr));
	CHECK_EQ(rr, 0);
	CHECK_EQ(lr, 1);
	CHECK_EQ(zd_slot_state(seg, slot), 0);
	CHECK_OK(zd_segment_info(seg, &info));
	CHECK_EQ(info.counters.loans_reclaimed, 1);
	CHECK_EQ(info.counters.readers_reaped, 0);
	/* the dead loan consumed no sequence number and published nothing */
	CHECK_EQ(info.next_sn, 2);
	CHECK_RC(zd_reader_take(seg, &r, &v), -EAGAIN);
	CHECK_RC(zd_slot_acquire(seg, slot, &v), -ENODATA);
	/* a second reap finds nothing more */
	CHECK_OK(zd_segment_reap(seg, &rr, &lr));
	CHECK_EQ(lr, 0);
	/* and the segment goes on */
	REQUIRE_OK(zd_writer_loan(seg, ZD_OVERFLOW_FAIL, 0, 0, &slot));
	CHECK_OK(zd_slot_commit(seg, slot, "alive", 5, &sn));
	CHECK_EQ(sn, 2);
	REQUIRE_OK(zd_reader_take(seg, &r, &v));
	CHECK_EQ(v.sn, 2);
	CHECK(memcmp(v.data, "alive", 5) == 0);
	CHECK_OK(zd_slot_release(seg, &v));
	CHECK_OK(zd_reader_close(seg, &r));
	teardown(seg);
}

/* One slot, loaned by the dead writer: a BLOCK loan reaps it by itself. */
static void blocked_loan_reaps_dead_writer(void)
{
	zd_segment_t *seg = setup(1);
	zd_segment_info_t info;
	zd_reader_t r;
	zd_view_t v;
	uint32_t slot, got;
	uint64_t t0, sn;
	int rc;

	REQUIRE_OK(zd_reader_open(seg, 0, &r));
	slot = kill_a_writer(seg, 0);
	CHECK_EQ(slot, 0);
	t0 = zdt_now_ns();
	rc = zd_writer_loan(seg, ZD_OVERFLOW_BLOCK, t0 + 10 * ZDT_S, 0, &got);
	CHECK_OK(rc);
	CHECK_LT(zdt_now_ns() - t0, 2 * ZDT_S);
	CHECK_EQ(got, 0);
	CHECK_OK(zd_segment_info(seg, &info));
	CHECK_EQ(info.counters.loans_reclaimed, 1);
	if (rc == 0) {
		void *data = NULL;

		/* the reclaimed slot is an ordinary loan of ours now */
		CHECK_OK(zd_slot_data_ptr(seg, got, &data, NULL, NULL));
		CHECK_OK(zd_slot_commit(seg, got, "mine", 4, &sn));
		CHECK_EQ(sn, 0);
		REQUIRE_OK(zd_reader_take(seg, &r, &v));
		CHECK(memcmp(v.data, "mine", 4) == 0);
		CHECK_EQ(v.size, 4);
		CHECK_OK(zd_slot_release(seg, &v));
	}
	teardown(seg);
}

/* The dead writer's attachment entry is claimed again by new handles (all
 * ZD_ATTACH_MAX fit), and the claim frees its loan. */
static void attach_entry_reclaimed_with_its_loan(void)
{
	zd_segment_t *seg = setup(2);
	static zd_segment_t *more[ZD_ATTACH_MAX];
	zd_segment_info_t info;
	uint32_t slot;
	int n = 0, rc = 0;

	slot = kill_a_writer(seg, 0);
	/* the creator holds one entry; the other 63 can all be had */
	while (n < (int)ZD_ATTACH_MAX - 1) {
		rc = zd_segment_attach_posix(seg_name, &more[n]);
		if (rc != 0)
			break;
		n++;
	}
	CHECK_OK(rc);
	CHECK_EQ(n, ZD_ATTACH_MAX - 1);
	CHECK_EQ(zd_slot_state(seg, slot), 0);
	CHECK_OK(zd_segment_info(seg, &info));
	CHECK_EQ(info.counters.loans_reclaimed, 1);
	for (int i = 0; i < n; i++)
		zd_segment_close(more[i]);
	teardown(seg);
}

int main(void)
{
	zdt_case("reap_reclaims_dead_loan", reap_reclaims_dead_loan);
	zdt_case("blocked_loan_reaps_dead_writer", blocked_loan_reaps_dead_writer);
	zdt_case("attach_entry_reclaimed_with_its_loan",
		 attach_entry_reclaimed_with_its_loan);
	return zdt_finish();
}
