/* test_fork_fanout.c — one writer process, three reader processes, one
 * posix segment, 100 000 messages.
 *
 * The parent creates the segment and forks the readers; each attaches its
 * own handle and opens its reader, then reports ready through a pipe.
 * Only then is the writer forked: it attaches, and for each message loans
 * a slot (BLOCK), writes (counter, length, body, FNV-1a) in place and
 * commits.  Every reader takes with zd_reader_wait_take, checks the
 * checksum, that the counter is exactly the next one (0 lost, 0
 * duplicated, 0 reordered) and that the sequence number equals the
 * counter, releases, and reports through a pipe and its exit status.
 * Every process has an alarm() watchdog.
 */
#include "zdtest.h"

#define NREADERS 3
#define NMSG 100000u
#define SLOTS 64u
#define CAPACITY 512u

static char seg_name[64];
static int ready_pipe[2], report_pipe[2];

static int reader_main(void *arg)
{
	int id = (int)(intptr_t)arg;
	zd_segment_t *seg = NULL;
	zd_reader_t r;
	zdt_rx_t rx;
	int rc;

	close(ready_pipe[0]);
	close(report_pipe[0]);
	rc = zd_segment_attach_posix(seg_name, &seg);
	if (rc != 0)
		return 20;
	rc = zd_reader_open(seg, 0, &r);
	if (rc != 0)
		return 21;
	if (zdt_write_full(ready_pipe[1], &r.index, sizeof(r.index)) != 0)
		return 22;
	zdt_rx_init(&rx, id, 1, NMSG);
	rx.check_sn_equals_counter = 1;
	zdt_receive(seg, &r, &rx, 20 * ZDT_S, 0);
	if (zdt_write_full(report_pipe[1], &rx.rep, sizeof(rx.rep)) != 0)
		return 23;
	zd_reader_close(seg, &r);
	zd_segment_close(seg);
	return zdt_rx_ok(&rx.rep, 1) ? 0 : 1;
}

static int writer_main(void *arg)
{
	zd_segment_t *seg = NULL;
	int rc;

	(void)arg;
	close(ready_pipe[0]);
	close(report_pipe[0]);
	rc = zd_segment_attach_posix(seg_name, &seg);
	if (rc != 0)
		return 30;
	for (uint64_t i = 0; i < NMSG; i++) {
		uint64_t sn = UINT64_MAX;

		rc = zdt_send(seg, 0, i, zd_now_ns() + 20 * ZDT_S, &sn);
		if (rc != 0) {
			fprintf(stderr, "writer: message %llu: %s\n",
				(unsigned long long)i, zdt_errname(rc));
			return 31;
		}
		if (sn != i) {
			fprintf(stderr, "writer: message %llu got sn %llu\n",
				(unsigned long long)i, (unsigned long long)sn);
			return 32;
		}
	}
	zd_segment_close(seg);
	return 0;
}

static void fanout(void)
{
	zd_config_t cfg = zdt_cfg(SLOTS, CAPACITY);
	zd_segment_t *seg = NULL;
	pid_t readers[NREADERS], writer;
	uint64_t seen_mask = 0, t0;
	zdt_rx_report_t rep[NREADERS];
	int got[NREADERS] = { 0 };
	zd_segment_info_t info;

	zdt_watchdog(100);
	REQUIRE_OK(zd_segment_create_posix(zdt_unique_name(seg_name), &cfg, &seg));
	zdt_pipe(ready_pipe);
	zdt_pipe(report_pipe);
	for (int i = 0; i < NREADERS; i++)
		readers[i] = zdt_fork(reader_main, (void *)(intptr_t)i);
	close(ready_pipe[1]);
	close(report_pipe[1]);
	/* barrier: every reader is registered before the writer exists */
	for (int i = 0; i < NREADERS; i++) {
		uint32_t idx = UINT32_MAX;

		REQUIRE_OK(zdt_read_full(ready_pipe[0], &idx, sizeof(idx), 20000));
		REQUIRE(idx < ZD_READER_MAX);
		CHECK(!(seen_mask & ((uint64_t)1 << idx)));
		seen_mask |= (uint64_t)1 << idx;
	}
	CHECK_EQ(zd_segment_active_mask(seg), seen_mask);
	t0 = zdt_now_ns();
	writer = zdt_fork(writer_main, NULL);

	CHECK_EQ(zdt_wait(writer), 0);
	zdt_rx_collect(report_pipe[0], rep, got, NREADERS);
	for (int i = 0; i < NREADERS; i++)
		CHECK_EQ(zdt_wait(readers[i]), 0);
	printf("# %u messages to %d readers in %.2f s\n", NMSG, NREADERS,
	       (double)(zdt_now_ns() - t0) / 1e9);
	for (int i = 0; i < NREADERS; i++) {
		CHECK(got[i]);
		if (!got[i])
			continue;
		zdt_rx_print(&rep[i]);
		CHECK_RX(&rep[i], NMSG);
		CHECK_EQ(rep[i].sn_back, 0);
	}
	CHECK_OK(zd_segment_info(seg, &info));
	CHECK_EQ(info.counters.commits, NMSG);
	CHECK_EQ(info.next_sn, NMSG);
	CHECK_EQ(info.counters.corrupt_dropped, 0);
	CHECK_EQ(info.counters.reclaims, 0);
	CHECK_EQ(info.counters.readers_reaped, 0);
	CHECK_EQ(info.active_mask, 0); /* every reader closed itself */
	close(ready_pipe[0]);
	close(report_pipe[0]);
	zd_segment_close(seg);
	CHECK_OK(zd_segment_unlink_posix(seg_name));
	alarm(0);
}

int main(void)
{
	zdt_case("fanout_1_writer_3_readers_100k", fanout);
	return zdt_finish();
}
