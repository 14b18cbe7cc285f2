/* test_deep.c — deep segments across processes: 1024 slots and
 * ZD_SLOT_COUNT_MAX (2^20) slots of 16 bytes, one writer process, two
 * reader processes, one posix segment.
 *
 * The parent creates the segment and forks the readers; each attaches its
 * own handle, opens its reader (join_last 0) and reports ready.  Then the
 * writer is forked: it attaches and commits messages whose 16 bytes are
 * (sn, ~sn), sn being the sequence number the commit must return (it is
 * the only committer).  When the writer has exited the parent says goodbye,
 * so each reader drains what is committed and ends with -EPIPE.
 *
 * Every reader checks each sample: 16 bytes, (sn, ~sn), sn strictly
 * increasing (so never a duplicate) and not before its start_sn; it adds up
 * the sequence numbers it skipped.  The parent then checks the accounting
 * against the final next_sn: taken + dropped covers every sn from the
 * reader's start, the skipped sns are exactly the dropped ones, and with
 * the BLOCK policy nothing is dropped.
 *
 * Cases:
 *   block_1024       300 000 messages (fewer under sanitizers): the ring
 *                    of slots is reused ~300 times (8 under TSan)
 *   block_2p20       ZD_SLOT_COUNT_MAX slots (~200 MB of /dev/shm): up to
 *                    1.5 * 2^20 messages, but the writer stops when its
 *                    time plus the readers' backlog (at their rate so far)
 *                    reaches a budget, so a core whose cost grows with
 *                    slot_count still finishes (it then covers fewer
 *                    messages; the count is printed)
 *   reclaim_1024     RECLAIM policy; reader 1 is slow: after its first
 *                    take it holds that view until the writer is two rings
 *                    ahead, then sleeps now and then holding a view, so
 *                    samples are reclaimed under it (dropped > 0) while the
 *                    pinned ones are not
 */
#include "zdtest.h"

#define NREADERS 2
#define PAYLOAD 16u

struct deep_case {
	const char *name;
	uint32_t slots;
	zd_overflow_t policy;
	uint64_t nmsg;          /* messages at most                          */
	uint64_t budget_ns;     /* for writing and draining (0: none)        */
	uint64_t min_msg;       /* messages the writer must get through (a
				   budgeted writer looks at the clock
				   every 8 messages)                         */
	unsigned slow_every;    /* reader 1 sleeps every this many takes (0) */
	unsigned slow_us;       /* ... for this long, holding a view         */
};

/* What a reader saw; one pipe write (< PIPE_BUF). */
struct deep_report {
	int32_t id;
	int32_t end_rc;          /* the code that ended its loop (-EPIPE)    */
	int32_t stats_rc;
	int32_t release_rc;      /* first failing release (0)                */
	uint64_t start_sn;
	uint64_t received;
	uint64_t first_sn;       /* UINT64_MAX: none                         */
	uint64_t last_sn;        /* UINT64_MAX: none                         */
	uint64_t not_increasing; /* sn <= the previous one (back or twice)   */
	uint64_t before_start;   /* sn < start_sn                            */
	uint64_t bad_payload;    /* size != 16 or payload != (sn, ~sn)       */
	uint64_t skipped;        /* sns jumped over between takes            */
	uint64_t stats_taken;
	uint64_t stats_dropped;
	uint64_t stats_lag;
	uint64_t stats_last_sn;
};

/* A shared anonymous page, mapped before the fork: each reader publishes
 * how many samples it has taken, so the writer of a budgeted case can
 * stop early enough for the readers to drain within the budget. */
struct progress {
	uint64_t received[NREADERS];
};

static const struct deep_case *cur;
static struct progress *board;
static char seg_name[64];
static int ready_pipe[2], report_pipe[2], count_pipe[2];

static void close_parent_ends(void)
{
	close(ready_pipe[0]);
	close(report_pipe[0]);
	close(count_pipe[0]);
}

/* Reader 1 of the reclaim case holds its first view until the writer is
 * two rings past its start (bounded: 20 s). */
static void hold_until_lapped(zd_segment_t *seg, uint64_t start)
{
	uint64_t until = zdt_now_ns() + 20 * ZDT_S;
	zd_segment_info_t i;

	while (zdt_now_ns() < until) {
		if (zd_segment_info(seg, &i) != 0 ||
		    i.next_sn >= start + 2u * (uint64_t)cur->slots)
			return;
		zdt_sleep_ms(1);
	}
}

static int reader_main(void *arg)
{
	int id = (int)(intptr_t)arg;
	int slow = id == 1 && (cur->slow_every != 0);
	struct deep_report rep;
	zd_reader_stats_t st;
	zd_segment_t *seg = NULL;
	zd_reader_t r;
	uint64_t expect;

	close(ready_pipe[0]);
	close(report_pipe[0]);
	close(count_pipe[0]);
	close(count_pipe[1]);
	memset(&rep, 0, sizeof(rep));
	rep.id = id;
	rep.first_sn = rep.last_sn = UINT64_MAX;
	if (zd_segment_attach_posix(seg_name, &seg) != 0)
		return 20;
	if (zd_reader_open(seg, 0, &r) != 0)
		return 21;
	if (zdt_write_full(ready_pipe[1], &r.index, sizeof(r.index)) != 0)
		return 22;
	rep.start_sn = r.start_sn;
	expect = r.start_sn;
	for (;;) {
		uint64_t d[2] = { 0, 0 };
		zd_view_t v;
		int rc = zd_reader_wait_take(seg, &r, &v,
					     zd_now_ns() + 30 * ZDT_S, 0);

		if (rc != 0) {
			rep.end_rc = rc;
			break;
		}
		if (v.size == PAYLOAD)
			memcpy(d, v.data, sizeof(d));
		if (v.size != PAYLOAD || d[0] != v.sn || d[1] != ~v.sn)
			rep.bad_payload++;
		if (v.sn < r.start_sn)
			rep.before_start++;
		if (rep.received > 0 && v.sn <= rep.last_sn)
			rep.not_increasing++;
		else if (v.sn >= expect)
			rep.skipped += v.sn - expect;
		if (rep.received == 0)
			rep.first_sn = v.sn;
		rep.last_sn = v.sn;
		expect = v.sn + 1u;
		rep.received++;
		__atomic_store_n(&board->received[id], rep.received,
				 __ATOMIC_RELAXED);
		if (slow && rep.received == 1)
			hold_until_lapped(seg, r.start_sn);
		else if (slow && rep.received % cur->slow_every == 0)
			usleep(cur->slow_us);
		rc = zd_slot_release(seg, &v);
		if (rc != 0) {
			rep.release_rc = rc;
			rep.end_rc = rc;
			break;
		}
	}
	rep.stats_rc = zd_reader_stats(seg, &r, &st);
	if (rep.stats_rc == 0) {
		rep.stats_taken = st.taken;
		rep.stats_dropped = st.dropped;
		rep.stats_lag = st.lag;
		rep.stats_last_sn = st.last_sn;
	}
	if (zdt_write_full(report_pipe[1], &rep, sizeof(rep)) != 0)
		return 23;
	zd_reader_close(seg, &r);
	zd_segment_close(seg);
	return 0;
}

/* Budgeted cases: 1 when the time spent plus the time the slowest reader
 * needs for the backlog reaches the budget.  Its rate is measured from the
 * moment both readers have taken RATE_FROM samples (their first takes pay
 * for faulting the mapping in); until then the writer stays at most AHEAD
 * samples ahead of the slowest and waits, up to half the budget. */
#define RATE_FROM 4u
#define AHEAD 8u

static int out_of_time(uint64_t t0, uint64_t sent)
{
	static uint64_t t_mark, n_mark;

	for (;;) {
		uint64_t now = zdt_now_ns(), slowest = UINT64_MAX;
		double drain;

		for (int i = 0; i < NREADERS; i++) {
			uint64_t n = __atomic_load_n(&board->received[i],
						     __ATOMIC_RELAXED);

			if (n < slowest)
				slowest = n;
		}
		if (now - t0 >= cur->budget_ns)
			return 1;
		if (t_mark == 0 && slowest >= RATE_FROM) {
			t_mark = now;
			n_mark = slowest;
		}
		if (t_mark == 0 || slowest == n_mark || now == t_mark) {
			if (sent < slowest + AHEAD)
				return 0;
			if (now - t0 >= cur->budget_ns / 2)
				return 1;
			zdt_sleep_ms(1);
			continue;
		}
		/* twice the estimate: a take on a scanning core gets slower as
		 * more slots are committed */
		drain = 2.0 * (double)(sent - slowest) * (double)(now - t_mark) /
			(double)(slowest - n_mark);
		return (double)(now - t0) + drain >= (double)cur->budget_ns;
	}
}

static int writer_main(void *arg)
{
	zd_segment_t *seg = NULL;
	zd_segment_info_t info;
	uint64_t sent = 0, t0, next;

	(void)arg;
	close_parent_ends();
	close(ready_pipe[1]);
	close(report_pipe[1]);
	if (zd_segment_attach_posix(seg_name, &seg) != 0)
		return 30;
	if (zd_segment_info(seg, &info) != 0)
		return 31;
	next = info.next_sn;
	t0 = zdt_now_ns();
	for (; sent < cur->nmsg; sent++) {
		uint64_t sn = UINT64_MAX, *d;
		void *data = NULL;
		uint32_t slot;
		int rc;

		if (cur->budget_ns && (sent & 7) == 0 && out_of_time(t0, sent))
			break;
		rc = zd_writer_loan(seg, cur->policy, zd_now_ns() + 30 * ZDT_S,
				    0, &slot);
		if (rc == 0)
			rc = zd_slot_data_ptr(seg, slot, &data, NULL, NULL);
		if (rc != 0) {
			fprintf(stderr, "writer: message %llu: %s\n",
				(unsigned long long)sent, zdt_errname(rc));
			return 32;
		}
		d = data;
		d[0] = next;
		d[1] = ~next;
		rc = zd_slot_commit_in_place(seg, slot, PAYLOAD, &sn);
		if (rc != 0 || sn != next) {
			fprintf(stderr, "writer: message %llu: %s, sn %llu\n",
				(unsigned long long)sent, zdt_errname(rc),
				(unsigned long long)sn);
			return 33;
		}
		next++;
	}
	if (zdt_write_full(count_pipe[1], &sent, sizeof(sent)) != 0)
		return 34;
	zd_segment_close(seg);
	return 0;
}

static void check_report(const struct deep_report *r, uint64_t end_sn)
{
	uint64_t owed = end_sn - r->start_sn;
	uint64_t tail = r->last_sn == UINT64_MAX ? owed : end_sn - 1u - r->last_sn;

	printf("# reader %d: start %llu received %llu dropped %llu skipped "
	       "%llu first %llu last %llu end %s\n", r->id,
	       (unsigned long long)r->start_sn,
	       (unsigned long long)r->received,
	       (unsigned long long)r->stats_dropped,
	       (unsigned long long)r->skipped,
	       (unsigned long long)r->first_sn,
	       (unsigned long long)r->last_sn, zdt_errname(r->end_rc));
	CHECK_RC(r->end_rc, -EPIPE);
	CHECK_OK(r->release_rc);
	CHECK_OK(r->stats_rc);
	CHECK_EQ(r->bad_payload, 0);
	CHECK_EQ(r->not_increasing, 0);
	CHECK_EQ(r->before_start, 0);
	CHECK_EQ(r->stats_taken, r->received);
	/* every sn from its start is either taken or counted dropped */
	CHECK_EQ(r->received + r->stats_dropped, owed);
	/* the dropped ones are exactly those it skipped, and the newest
	 * sample is never dropped (nothing came after it to reclaim it) */
	CHECK_EQ(r->skipped, r->stats_dropped);
	CHECK_EQ(tail, 0);
	CHECK_EQ(r->stats_last_sn, end_sn - 1u);
	CHECK_EQ(r->stats_lag, 0);
	if (cur->policy == ZD_OVERFLOW_BLOCK) {
		CHECK_EQ(r->stats_dropped, 0);
		CHECK_EQ(r->first_sn, r->start_sn);
	}
}

static void run_deep(void)
{
	zd_config_t cfg = zdt_cfg(cur->slots, PAYLOAD);
	struct deep_report rep[NREADERS];
	int got[NREADERS] = { 0 };
	pid_t readers[NREADERS], writer;
	zd_segment_t *seg = NULL;
	zd_segment_info_t info;
	uint64_t sent = UINT64_MAX, t0, t1;

	zdt_watchdog(110);
	board = mmap(NULL, sizeof(*board), PROT_READ | PROT_WRITE,
		     MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	REQUIRE(board != MAP_FAILED);
	REQUIRE_OK(zd_segment_create_posix(zdt_unique_name(seg_name), &cfg, &seg));
	zdt_pipe(ready_pipe);
	zdt_pipe(report_pipe);
	zdt_pipe(count_pipe);
	for (int i = 0; i < NREADERS; i++)
		readers[i] = zdt_fork(reader_main, (void *)(intptr_t)i);
	for (int i = 0; i < NREADERS; i++) {
		uint32_t idx = UINT32_MAX;

		REQUIRE_OK(zdt_read_full(ready_pipe[0], &idx, sizeof(idx), 20000));
		REQUIRE(idx < ZD_READER_MAX);
	}
	CHECK_EQ(__builtin_popcountll(zd_segment_active_mask(seg)), NREADERS);
	t0 = zdt_now_ns();
	writer = zdt_fork(writer_main, NULL);
	close(ready_pipe[1]);
	close(report_pipe[1]);
	close(count_pipe[1]);

	CHECK_EQ(zdt_wait(writer), 0);
	t1 = zdt_now_ns();
	CHECK_OK(zdt_read_full(count_pipe[0], &sent, sizeof(sent), 1000));
	/* the readers drain what is committed, then see -EPIPE */
	CHECK_OK(zd_segment_goodbye(seg));
	for (int i = 0; i < NREADERS; i++) {
		struct deep_report r;

		if (zdt_read_full(report_pipe[0], &r, sizeof(r), 60000) != 0)
			break;
		if (r.id >= 0 && r.id < NREADERS) {
			rep[r.id] = r;
			got[r.id] = 1;
		}
	}
	for (int i = 0; i < NREADERS; i++)
		CHECK_EQ(zdt_wait(readers[i]), 0);
	CHECK_OK(zd_segment_info(seg, &info));
	printf("# %s: %u slots, %llu messages (%.1f rings) written in %.2f s, "
	       "drained in %.2f s; reclaims %llu\n", cur->name, cur->slots,
	       (unsigned long long)sent, (double)sent / cur->slots,
	       (double)(t1 - t0) / 1e9, (double)(zdt_now_ns() - t1) / 1e9,
	       (unsigned long long)info.counters.reclaims);
	CHECK_EQ(info.next_sn, sent);
	CHECK_EQ(info.counters.commits, sent);
	CHECK_GE(sent, cur->min_msg);
	if (!cur->budget_ns)
		CHECK_EQ(sent, cur->nmsg);
	CHECK_EQ(info.counters.corrupt_dropped, 0);
	CHECK_EQ(info.counters.readers_reaped, 0);
	for (int i = 0; i < NREADERS; i++) {
		CHECK(got[i]);
		if (got[i])
			check_report(&rep[i], info.next_sn);
	}
	if (cur->policy == ZD_OVERFLOW_BLOCK) {
		CHECK_EQ(info.counters.reclaims, 0);
	} else {
		CHECK_GT(info.counters.reclaims, 0);
		if (got[1])
			CHECK_GT(rep[1].stats_dropped, 0);
	}
	CHECK_EQ(info.active_mask, 0);
	close(ready_pipe[0]);
	close(report_pipe[0]);
	close(count_pipe[0]);
	zd_segment_close(seg);
	CHECK_OK(zd_segment_unlink_posix(seg_name));
	munmap(board, sizeof(*board));
	alarm(0);
}

static const struct deep_case cases[] = {
	{ "block_1024", 1024, ZD_OVERFLOW_BLOCK,
	  ZDT_TSAN ? 8000 : ZDT_SANITIZED ? 40000 : 300000, 0, 0, 0, 0 },
	{ "block_2p20", ZD_SLOT_COUNT_MAX, ZD_OVERFLOW_BLOCK,
	  (ZD_SLOT_COUNT_MAX * 3ull) / 2, (ZDT_SANITIZED ? 4 : 3) * ZDT_S,
	  8, 0, 0 },
	{ "reclaim_1024", 1024, ZD_OVERFLOW_RECLAIM,
	  ZDT_TSAN ? 8000 : ZDT_SANITIZED ? 30000 : 200000, 0, 0, 512, 1000 },
};

int main(void)
{
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		cur = &cases[i];
		zdt_case(cur->name, run_deep);
	}
	return zdt_finish();
}
