/* test_two_writers.c — two writer processes commit concurrently into one
 * posix segment; two reader processes receive.
 *
 * Requirement 2.1: all shared state lives in the segment, so any attached
 * process can loan and commit.  Each writer tags its messages (writer id,
 * counter) and the readers check that every message of both writers
 * arrives exactly once, intact, and in each writer's order.  The writers
 * are released together through a pipe so their commits interleave.
 *
 * The global sequence-number order across the two writers is reported
 * (sn_back) but not required here: test_threads.c has the case for it.
 */
#include "zdtest.h"

#define NREADERS 2
#define NWRITERS 2
#define PER_WRITER 30000u
#define SLOTS 16u
#define CAPACITY 256u

static char seg_name[64];
static int ready_pipe[2], report_pipe[2], go_pipe[2];

static void close_parent_ends(void)
{
	close(ready_pipe[0]);
	close(report_pipe[0]);
}

static int reader_main(void *arg)
{
	int id = (int)(intptr_t)arg;
	zd_segment_t *seg = NULL;
	zd_reader_t r;
	zdt_rx_t rx;

	close_parent_ends();
	close(go_pipe[0]);
	close(go_pipe[1]);
	if (zd_segment_attach_posix(seg_name, &seg) != 0)
		return 20;
	if (zd_reader_open(seg, 0, &r) != 0)
		return 21;
	if (zdt_write_full(ready_pipe[1], &r.index, sizeof(r.index)) != 0)
		return 22;
	zdt_rx_init(&rx, id, NWRITERS, PER_WRITER);
	zdt_receive(seg, &r, &rx, 20 * ZDT_S, 0);
	if (zdt_write_full(report_pipe[1], &rx.rep, sizeof(rx.rep)) != 0)
		return 23;
	zd_reader_close(seg, &r);
	zd_segment_close(seg);
	return zdt_rx_ok(&rx.rep, 0) ? 0 : 1;
}

static int writer_main(void *arg)
{
	uint64_t id = (uint64_t)(intptr_t)arg;
	zd_segment_t *seg = NULL;
	uint64_t last_sn = 0;
	uint32_t one = 1;
	char go;
	int rc;

	close_parent_ends();
	close(go_pipe[1]);
	if (zd_segment_attach_posix(seg_name, &seg) != 0)
		return 30;
	if (zdt_write_full(ready_pipe[1], &one, sizeof(one)) != 0)
		return 31;
	if (zdt_read_full(go_pipe[0], &go, 1, 30000) != 0)
		return 32;
	for (uint64_t i = 0; i < PER_WRITER; i++) {
		uint64_t sn = UINT64_MAX;

		rc = zdt_send(seg, id, i, zd_now_ns() + 20 * ZDT_S, &sn);
		if (rc != 0) {
			fprintf(stderr, "writer %llu: message %llu: %s\n",
				(unsigned long long)id, (unsigned long long)i,
				zdt_errname(rc));
			return 33;
		}
		/* this writer's own sequence numbers increase */
		if (i > 0 && sn <= last_sn)
			return 34;
		last_sn = sn;
	}
	zd_segment_close(seg);
	return 0;
}

static void two_writers_two_readers(void)
{
	zd_config_t cfg = zdt_cfg(SLOTS, CAPACITY);
	zd_segment_t *seg = NULL;
	pid_t readers[NREADERS], writers[NWRITERS];
	zdt_rx_report_t rep[NREADERS];
	int got[NREADERS] = { 0 };
	zd_segment_info_t info;
	uint64_t t0;

	zdt_watchdog(100);
	REQUIRE_OK(zd_segment_create_posix(zdt_unique_name(seg_name), &cfg, &seg));
	zdt_pipe(ready_pipe);
	zdt_pipe(report_pipe);
	zdt_pipe(go_pipe);
	for (int i = 0; i < NREADERS; i++)
		readers[i] = zdt_fork(reader_main, (void *)(intptr_t)i);
	for (int i = 0; i < NWRITERS; i++)
		writers[i] = zdt_fork(writer_main, (void *)(intptr_t)i);
	close(ready_pipe[1]);
	close(report_pipe[1]);
	close(go_pipe[0]);
	for (int i = 0; i < NREADERS + NWRITERS; i++) {
		uint32_t x;

		REQUIRE_OK(zdt_read_full(ready_pipe[0], &x, sizeof(x), 20000));
	}
	CHECK_EQ(__builtin_popcountll(zd_segment_active_mask(seg)), NREADERS);
	t0 = zdt_now_ns();
	REQUIRE_OK(zdt_write_full(go_pipe[1], "gg", NWRITERS));
	close(go_pipe[1]);
	for (int i = 0; i < NWRITERS; i++)
		CHECK_EQ(zdt_wait(writers[i]), 0);
	zdt_rx_collect(report_pipe[0], rep, got, NREADERS);
	for (int i = 0; i < NREADERS; i++)
		CHECK_EQ(zdt_wait(readers[i]), 0);
	printf("# %d writers x %u messages to %d readers in %.2f s\n", NWRITERS,
	       PER_WRITER, NREADERS, (double)(zdt_now_ns() - t0) / 1e9);
	for (int i = 0; i < NREADERS; i++) {
		CHECK(got[i]);
		if (!got[i])
			continue;
		zdt_rx_print(&rep[i]);
		CHECK_RX(&rep[i], NWRITERS * PER_WRITER);
	}
	CHECK_OK(zd_segment_info(seg, &info));
	CHECK_EQ(info.counters.commits, NWRITERS * PER_WRITER);
	CHECK_EQ(info.next_sn, NWRITERS * PER_WRITER);
	CHECK_EQ(info.active_mask, 0);
	close(ready_pipe[0]);
	close(report_pipe[0]);
	zd_segment_close(seg);
	CHECK_OK(zd_segment_unlink_posix(seg_name));
}

int main(void)
{
	zdt_case("two_writers_two_readers", two_writers_two_readers);
	return zdt_finish();
}
