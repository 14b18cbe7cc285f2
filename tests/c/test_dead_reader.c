/* test_dead_reader.c — a reader process is killed (SIGKILL) while it holds
 * pinned views and unread slots.
 *
 * The writer, blocked in zd_writer_loan(BLOCK) on a full segment, finds
 * the dead reader through zd_segment_reap (run inside the loan), the
 * reader's pins and read bits are cleared and the writer goes on.  A new
 * reader that reuses the index receives every sample committed after it
 * joined, while the writer keeps reaping: cleanup of the old reader never
 * touches the new one (epoch).  A second case opens the new reader before
 * anyone has reaped, so the dead entry is still ACTIVE.
 */
#include "zdtest.h"

#define SLOTS 8u
#define CAPACITY 128u
#define NMSG 3000u

static char seg_name[64];
static int up_pipe[2];   /* child -> parent */
static int down_pipe[2]; /* parent -> child */

struct hello {
	uint32_t index, epoch;
	uint64_t start_sn;
};

/* Attaches, opens a reader, says hello, waits for "take", takes two
 * samples without releasing them, reports their sns, then sleeps until it
 * is killed. */
static int doomed_reader(void *arg)
{
	zd_segment_t *seg = NULL;
	zd_reader_t r;
	struct hello h;
	zd_view_t v[2];
	uint64_t sns[2];
	char cmd;

	(void)arg;
	close(up_pipe[0]);
	close(down_pipe[1]);
	if (zd_segment_attach_posix(seg_name, &seg) != 0)
		return 20;
	if (zd_reader_open(seg, 0, &r) != 0)
		return 21;
	h.index = r.index;
	h.epoch = r.epoch;
	h.start_sn = r.start_sn;
	if (zdt_write_full(up_pipe[1], &h, sizeof(h)) != 0)
		return 22;
	if (zdt_read_full(down_pipe[0], &cmd, 1, 30000) != 0)
		return 23;
	for (int i = 0; i < 2; i++) {
		if (zd_reader_take(seg, &r, &v[i]) != 0)
			return 24;
		sns[i] = v[i].sn;
	}
	if (zdt_write_full(up_pipe[1], sns, sizeof(sns)) != 0)
		return 25;
	for (;;)
		pause();
}

/* Attaches, opens a reader, says hello, receives NMSG messages of writer
 * 0 (counters 0..NMSG-1) and reports. */
static int new_reader(void *arg)
{
	zd_segment_t *seg = NULL;
	zd_reader_t r;
	struct hello h;
	zdt_rx_t rx;

	(void)arg;
	close(up_pipe[0]);
	close(down_pipe[1]);
	if (zd_segment_attach_posix(seg_name, &seg) != 0)
		return 30;
	if (zd_reader_open(seg, 0, &r) != 0)
		return 31;
	h.index = r.index;
	h.epoch = r.epoch;
	h.start_sn = r.start_sn;
	if (zdt_write_full(up_pipe[1], &h, sizeof(h)) != 0)
		return 32;
	zdt_rx_init(&rx, 0, 1, NMSG);
	zdt_receive(seg, &r, &rx, 20 * ZDT_S, 0);
	if (zdt_write_full(up_pipe[1], &rx.rep, sizeof(rx.rep)) != 0)
		return 33;
	zd_reader_close(seg, &r);
	zd_segment_close(seg);
	return zdt_rx_ok(&rx.rep, 1) ? 0 : 1;
}

static void fill_segment(zd_segment_t *seg)
{
	for (unsigned i = 0; i < SLOTS; i++) {
		uint32_t s;

		REQUIRE_OK(zd_writer_loan(seg, ZD_OVERFLOW_FAIL, 0, 0, &s));
		REQUIRE_OK(zd_slot_commit(seg, s, "old", 3, NULL));
	}
}

/* Sends NMSG messages (writer 0), reaping now and then; returns 0 or the
 * failing code. */
static int send_stream(zd_segment_t *seg)
{
	for (uint64_t i = 0; i < NMSG; i++) {
		int rc = zdt_send(seg, 0, i, zd_now_ns() + 20 * ZDT_S, NULL);

		if (rc != 0)
			return rc;
		if (i % 250 == 0) {
			uint32_t rr = 99;

			zd_segment_reap(seg, &rr, NULL);
			if (rr != 0)
				return -EOWNERDEAD; /* reaped a live reader */
		}
	}
	return 0;
}

static void check_new_reader_stream(zd_segment_t *seg, pid_t child)
{
	zdt_rx_report_t rep;

	CHECK_OK(send_stream(seg));
	CHECK_OK(zdt_read_full(up_pipe[0], &rep, sizeof(rep), 30000));
	CHECK_EQ(zdt_wait(child), 0);
	zdt_rx_print(&rep);
	CHECK_RX(&rep, NMSG);
	CHECK_EQ(rep.sn_back, 0);
}

static void setup(zd_segment_t **seg)
{
	zd_config_t cfg = zdt_cfg(SLOTS, CAPACITY);

	zdt_watchdog(100);
	REQUIRE_OK(zd_segment_create_posix(zdt_unique_name(seg_name), &cfg, seg));
	zdt_pipe(up_pipe);
	zdt_pipe(down_pipe);
}

static void teardown(zd_segment_t *seg)
{
	close(up_pipe[0]);
	close(up_pipe[1]);
	close(down_pipe[0]);
	close(down_pipe[1]);
	zd_segment_close(seg);
	CHECK_OK(zd_segment_unlink_posix(seg_name));
}

/* Forks the doomed reader, fills the segment, lets it pin two samples,
 * kills it.  Returns its hello. */
static struct hello kill_a_reader(zd_segment_t *seg)
{
	struct hello h;
	uint64_t sns[2];
	uint32_t x, rr = 99;
	pid_t doomed;

	doomed = zdt_fork(doomed_reader, NULL);
	REQUIRE_OK(zdt_read_full(up_pipe[0], &h, sizeof(h), 20000));
	CHECK_EQ(zd_segment_active_mask(seg), (uint64_t)1 << h.index);
	fill_segment(seg);
	REQUIRE_OK(zdt_write_full(down_pipe[1], "t", 1));
	REQUIRE_OK(zdt_read_full(up_pipe[0], sns, sizeof(sns), 20000));
	CHECK_EQ(sns[0], h.start_sn);
	CHECK_EQ(sns[1], h.start_sn + 1);
	/* alive: it holds every slot, and reaping finds nothing */
	CHECK_RC(zd_writer_loan(seg, ZD_OVERFLOW_FAIL, 0, 0, &x), -EAGAIN);
	CHECK_OK(zd_segment_reap(seg, &rr, NULL));
	CHECK_EQ(rr, 0);
	CHECK_EQ(zd_segment_active_mask(seg), (uint64_t)1 << h.index);

	kill(doomed, SIGKILL);
	CHECK_EQ(zdt_wait(doomed), 128 + SIGKILL);
	return h;
}

static void writer_reaps_then_index_reused(void)
{
	zd_segment_t *seg = NULL;
	struct hello dead, fresh;
	zd_segment_info_t info;
	uint32_t slots[SLOTS];
	uint64_t t0, took;
	pid_t child;
	int rc;

	setup(&seg);
	dead = kill_a_reader(seg);

	/* BLOCK: the segment is full, the loan must reap and go on */
	t0 = zdt_now_ns();
	rc = zd_writer_loan(seg, ZD_OVERFLOW_BLOCK, t0 + 10 * ZDT_S, 0, &slots[0]);
	took = zdt_now_ns() - t0;
	CHECK_OK(rc);
	CHECK_LT(took, 2 * ZDT_S);
	CHECK_OK(zd_segment_info(seg, &info));
	CHECK_EQ(info.counters.readers_reaped, 1);
	CHECK_EQ(info.active_mask, 0);
	CHECK_EQ(info.readers_active, 0);
	/* all slots are free again, the two it had pinned included */
	for (unsigned i = 1; i < SLOTS; i++)
		CHECK_OK(zd_writer_loan(seg, ZD_OVERFLOW_FAIL, 0, 0, &slots[i]));
	for (unsigned i = 0; i < SLOTS; i++)
		CHECK_OK(zd_slot_discard(seg, slots[i]));

	/* a new reader in a new process gets the same index, a new epoch */
	child = zdt_fork(new_reader, NULL);
	REQUIRE_OK(zdt_read_full(up_pipe[0], &fresh, sizeof(fresh), 20000));
	CHECK_EQ(fresh.index, dead.index);
	CHECK_NE(fresh.epoch, dead.epoch);
	CHECK_EQ(zd_segment_active_mask(seg), (uint64_t)1 << fresh.index);
	check_new_reader_stream(seg, child);
	CHECK_OK(zd_segment_info(seg, &info));
	CHECK_EQ(info.counters.readers_reaped, 1);
	teardown(seg);
}

static void new_reader_before_reap(void)
{
	zd_segment_t *seg = NULL;
	struct hello dead, fresh;
	zd_segment_info_t info;
	uint32_t x;
	pid_t child;

	setup(&seg);
	dead = kill_a_reader(seg);
	/* nobody has reaped yet: the dead entry is still ACTIVE */
	CHECK_EQ(zd_segment_active_mask(seg), (uint64_t)1 << dead.index);
	child = zdt_fork(new_reader, NULL);
	REQUIRE_OK(zdt_read_full(up_pipe[0], &fresh, sizeof(fresh), 20000));
	if (fresh.index == dead.index)
		CHECK_NE(fresh.epoch, dead.epoch);
	/* the stream reaps (inside loan, and explicitly) while the new
	 * reader runs; it must lose nothing */
	check_new_reader_stream(seg, child);
	CHECK_OK(zd_segment_info(seg, &info));
	CHECK_EQ(info.counters.readers_reaped, 1);
	CHECK_EQ(info.active_mask, 0);
	/* and every slot is free at the end */
	for (unsigned i = 0; i < SLOTS; i++)
		CHECK_OK(zd_writer_loan(seg, ZD_OVERFLOW_FAIL, 0, 0, &x));
	teardown(seg);
}

int main(void)
{
	zdt_case("writer_reaps_then_index_reused", writer_reaps_then_index_reused);
	zdt_case("new_reader_before_reap", new_reader_before_reap);
	return zdt_finish();
}
