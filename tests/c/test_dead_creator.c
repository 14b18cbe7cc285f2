/* test_dead_creator.c — the creator's liveness lock.
 *
 * A creator process is killed (SIGKILL) after committing samples: a reader
 * first receives every one of them, then -EOWNERDEAD; a reader already
 * blocked in zd_reader_wait_take ends with -EOWNERDEAD within 1 s of the
 * kill.  A creator that closes keeps -EPIPE.  describe reports the creator's
 * liveness and counts live readers and attachments by asking their locks.
 * ZD_CREATE_REPLACE_STALE and zd_segment_unlink_stale_posix remove a stale
 * segment, never a live one (live creator, or dead creator and a live
 * attachment), never something that is no valid segment, and two replacers
 * racing for one stale name make exactly one new segment.
 */
#include "zdtest.h"

#define SLOTS 8u
#define CAPACITY 64u
#define NSAMPLES 5u

static char seg_name[64];
static int up_pipe[2];   /* child -> parent */
static int down_pipe[2]; /* parent -> child */

static void pipes_open(void)
{
	zdt_pipe(up_pipe);
	zdt_pipe(down_pipe);
}

static void pipes_close(void)
{
	close(up_pipe[0]);
	close(up_pipe[1]);
	close(down_pipe[0]);
	close(down_pipe[1]);
}

static zd_config_t cfg_replace(void)
{
	zd_config_t cfg = zdt_cfg(SLOTS, CAPACITY);

	cfg.flags = ZD_CREATE_REPLACE_STALE;
	return cfg;
}

/* Creates the segment, says "c", waits for "g", commits NSAMPLES samples
 * (fill = sn), says "d" and waits to be killed.  With arg != NULL it closes
 * the segment (goodbye) instead and exits. */
static int creator_child(void *arg)
{
	zd_config_t cfg = zdt_cfg(SLOTS, CAPACITY);
	zd_segment_t *seg = NULL;
	char cmd;

	if (zd_segment_create_posix(seg_name, &cfg, &seg) != 0)
		return 20;
	if (zdt_write_full(up_pipe[1], "c", 1) != 0)
		return 21;
	if (zdt_read_full(down_pipe[0], &cmd, 1, 30000) != 0)
		return 22;
	for (unsigned i = 0; i < NSAMPLES; i++) {
		unsigned char b = (unsigned char)i;
		uint32_t s;

		if (zd_writer_loan(seg, ZD_OVERFLOW_FAIL, 0, 0, &s) != 0 ||
		    zd_slot_commit(seg, s, &b, 1, NULL) != 0)
			return 23;
	}
	if (arg != NULL) {
		zd_segment_close(seg);
		return zdt_write_full(up_pipe[1], "d", 1) == 0 ? 0 : 24;
	}
	if (zdt_write_full(up_pipe[1], "d", 1) != 0)
		return 24;
	for (;;)
		pause();
}

/* Forks the creator and waits until it has created the segment. */
static pid_t start_creator(int clean)
{
	char ack;
	pid_t pid = zdt_fork(creator_child, clean ? (void *)1 : NULL);

	REQUIRE_OK(zdt_read_full(up_pipe[0], &ack, 1, 20000));
	REQUIRE(ack == 'c');
	return pid;
}

/* Lets the creator commit its samples and waits for it to say so. */
static void creator_commit(void)
{
	char ack;

	REQUIRE_OK(zdt_write_full(down_pipe[1], "g", 1));
	REQUIRE_OK(zdt_read_full(up_pipe[0], &ack, 1, 20000));
	REQUIRE(ack == 'd');
}

static void kill_creator(pid_t pid)
{
	kill(pid, SIGKILL);
	CHECK_EQ(zdt_wait(pid), 128 + SIGKILL);
}

/* Receives sn 0..NSAMPLES-1 in order, each with its fill. */
static void drain_all(zd_segment_t *seg, zd_reader_t *r)
{
	for (uint64_t want = 0; want < NSAMPLES; want++) {
		zd_view_t v;

		REQUIRE_OK(zd_reader_take(seg, r, &v));
		CHECK_EQ(v.sn, want);
		CHECK_EQ(v.size, 1);
		CHECK_EQ(*(const unsigned char *)v.data, (unsigned char)want);
		CHECK_OK(zd_slot_release(seg, &v));
	}
}

/* Attaches, opens a reader, says hello, drains NSAMPLES, then blocks in
 * wait_take; reports the code it ended with. */
static int blocked_reader(void *arg)
{
	zd_segment_t *seg = NULL;
	zd_reader_t r;
	zd_view_t v;
	int rc, n = 0;

	(void)arg;
	if (zd_segment_attach_posix(seg_name, &seg) != 0 ||
	    zd_reader_open(seg, 0, &r) != 0)
		return 30;
	if (zdt_write_full(up_pipe[1], "r", 1) != 0)
		return 31;
	for (;;) {
		rc = zd_reader_wait_take(seg, &r, &v, zd_now_ns() + 20 * ZDT_S, 0);
		if (rc != 0)
			break;
		if (v.sn != (uint64_t)n++)
			return 32;
		zd_slot_release(seg, &v);
	}
	if (n != (int)NSAMPLES)
		return 33;
	if (zdt_write_full(up_pipe[1], &rc, sizeof(rc)) != 0)
		return 34;
	zd_reader_close(seg, &r);
	zd_segment_close(seg);
	return 0;
}

/* ------------------------------------------------------------------ */

static void reader_drains_then_owner_dead(void)
{
	zd_segment_t *seg = NULL;
	zd_segment_info_t info;
	zd_reader_t r;
	zd_view_t v;
	pid_t creator;

	zdt_watchdog(60);
	pipes_open();
	zdt_unique_name(seg_name);
	creator = start_creator(0);
	REQUIRE_OK(zd_segment_attach_posix(seg_name, &seg));
	REQUIRE_OK(zd_reader_open(seg, 0, &r));
	CHECK_EQ(zd_segment_creator_alive(seg), 1);
	CHECK_RC(zd_reader_take(seg, &r, &v), -EAGAIN);
	creator_commit();
	CHECK_OK(zd_segment_describe_posix(seg_name, &info));
	CHECK_EQ(info.creator_alive, 1);
	CHECK_EQ(info.live_attachments, 2);
	CHECK_EQ(info.live_readers, 1);
	kill_creator(creator);

	CHECK_EQ(zd_segment_creator_alive(seg), 0);
	CHECK_OK(zd_segment_describe_posix(seg_name, &info));
	CHECK_EQ(info.creator_alive, 0);
	CHECK_EQ(info.goodbye, 0);
	CHECK_EQ(info.live_attachments, 1);
	CHECK_EQ(info.live_readers, 1);
	CHECK_OK(zd_segment_info(seg, &info));     /* our own handle and reader */
	CHECK_EQ(info.creator_alive, 0);
	CHECK_EQ(info.live_attachments, 1);
	CHECK_EQ(info.live_readers, 1);
	/* every sample committed before the kill first, then the end */
	drain_all(seg, &r);
	/* asked at most every ZD_CREATOR_CHECK_NS: a wait notices within it */
	CHECK_RC(zd_reader_wait_take(seg, &r, &v, zd_now_ns() + ZDT_S, 0), -EOWNERDEAD);
	CHECK_RC(zd_reader_take(seg, &r, &v), -EOWNERDEAD);   /* and it stays */
	CHECK_OK(zd_reader_close(seg, &r));
	zd_segment_close(seg);
	CHECK_OK(zd_segment_unlink_posix(seg_name));
	pipes_close();
}

static void blocked_reader_ends_within_a_second(void)
{
	pid_t creator, reader;
	uint64_t t_kill;
	char ack;
	int rc = 0;

	zdt_watchdog(60);
	pipes_open();
	zdt_unique_name(seg_name);
	creator = start_creator(0);
	reader = zdt_fork(blocked_reader, NULL);
	REQUIRE_OK(zdt_read_full(up_pipe[0], &ack, 1, 20000));
	REQUIRE(ack == 'r');
	creator_commit();
	zdt_sleep_ms(300);       /* the reader drains and parks */
	t_kill = zdt_now_ns();
	kill_creator(creator);
	REQUIRE_OK(zdt_read_full(up_pipe[0], &rc, sizeof(rc), 10000));
	CHECK_LT(zdt_now_ns() - t_kill, ZDT_S);
	CHECK_RC(rc, -EOWNERDEAD);
	CHECK_EQ(zdt_wait(reader), 0);
	CHECK_OK(zd_segment_unlink_posix(seg_name));
	pipes_close();
}

static void goodbye_stays_epipe(void)
{
	zd_segment_t *seg = NULL;
	zd_segment_info_t info;
	zd_reader_t r;
	zd_view_t v;
	pid_t creator;

	zdt_watchdog(60);
	pipes_open();
	zdt_unique_name(seg_name);
	creator = start_creator(1);
	REQUIRE_OK(zd_segment_attach_posix(seg_name, &seg));
	REQUIRE_OK(zd_reader_open(seg, 0, &r));
	creator_commit();
	CHECK_EQ(zdt_wait(creator), 0);
	CHECK_OK(zd_segment_info(seg, &info));
	CHECK_EQ(info.goodbye, 1);
	CHECK_EQ(info.creator_alive, 0);
	drain_all(seg, &r);
	CHECK_RC(zd_reader_take(seg, &r, &v), -EPIPE);
	CHECK_RC(zd_reader_wait_take(seg, &r, &v, zd_now_ns() + ZDT_S, 0), -EPIPE);
	CHECK_OK(zd_reader_close(seg, &r));
	zd_segment_close(seg);
	CHECK_OK(zd_segment_unlink_posix(seg_name));
	pipes_close();
}

static void memory_creator_always_alive(void)
{
	zd_config_t cfg = zdt_cfg(SLOTS, CAPACITY);
	zd_segment_t *seg = NULL;
	zd_segment_info_t info;
	zd_reader_t r;
	zd_view_t v;
	uint64_t t0;

	REQUIRE_OK(zd_segment_create_memory(&cfg, &seg));
	REQUIRE_OK(zd_reader_open(seg, 0, &r));
	CHECK_EQ(zd_segment_creator_alive(seg), 1);
	CHECK_OK(zd_segment_info(seg, &info));
	CHECK_EQ(info.creator_alive, 1);
	CHECK_EQ(info.live_readers, 1);
	CHECK_EQ(info.live_attachments, 1);
	t0 = zd_now_ns();
	CHECK_RC(zd_reader_wait_take(seg, &r, &v, t0 + 300 * ZDT_MS, 0), -ETIMEDOUT);
	CHECK_GE(zd_now_ns() - t0, 300 * ZDT_MS);
	CHECK_OK(zd_reader_close(seg, &r));
	zd_segment_close(seg);
}

/* Leaves a stale segment under seg_name: created, committed into, creator
 * killed. */
static void make_stale(void)
{
	pid_t creator = start_creator(0);

	creator_commit();
	kill_creator(creator);
}

static void replace_stale_segment(void)
{
	zd_config_t plain = zdt_cfg(SLOTS, CAPACITY), repl = cfg_replace();
	zd_segment_t *seg = NULL;
	zd_segment_info_t info;

	zdt_watchdog(60);
	pipes_open();
	zdt_unique_name(seg_name);
	make_stale();
	CHECK_OK(zd_segment_describe_posix(seg_name, &info));
	CHECK_EQ(info.next_sn, NSAMPLES);
	CHECK_EQ(info.creator_alive, 0);
	CHECK_EQ(info.live_attachments, 0);
	/* without the flag the name stays taken */
	CHECK_RC(zd_segment_create_posix(seg_name, &plain, &seg), -EEXIST);
	REQUIRE_OK(zd_segment_create_posix(seg_name, &repl, &seg));
	CHECK_OK(zd_segment_describe_posix(seg_name, &info));
	CHECK_EQ(info.next_sn, 0);                /* a new object */
	CHECK_EQ(info.creator_alive, 1);
	CHECK_EQ(info.owner_pid, (int32_t)getpid());
	/* and it is live now: neither a replacer nor rm --stale touches it */
	{
		zd_segment_t *other = NULL;

		CHECK_RC(zd_segment_create_posix(seg_name, &repl, &other), -EEXIST);
		CHECK_RC(zd_segment_unlink_stale_posix(seg_name), -EBUSY);
	}
	zd_segment_close(seg);
	/* closed by its creator (goodbye) and not attached: stale too */
	CHECK_OK(zd_segment_unlink_stale_posix(seg_name));
	CHECK(!zdt_shm_exists(seg_name));
	CHECK_RC(zd_segment_unlink_stale_posix(seg_name), -ENOENT);
	pipes_close();
}

static void refuse_live_creator(void)
{
	zd_config_t repl = cfg_replace();
	zd_segment_t *seg = NULL, *mine = NULL;
	zd_segment_info_t info;
	zd_reader_t r;
	zd_view_t v;
	pid_t creator;

	zdt_watchdog(60);
	pipes_open();
	zdt_unique_name(seg_name);
	creator = start_creator(0);
	creator_commit();
	CHECK_RC(zd_segment_create_posix(seg_name, &repl, &seg), -EEXIST);
	CHECK_RC(zd_segment_unlink_stale_posix(seg_name), -EBUSY);
	/* untouched: the same object with its samples */
	REQUIRE_OK(zd_segment_attach_posix(seg_name, &seg));
	REQUIRE_OK(zd_reader_open(seg, NSAMPLES, &r));
	drain_all(seg, &r);
	CHECK_RC(zd_reader_take(seg, &r, &v), -EAGAIN);
	CHECK_OK(zd_reader_close(seg, &r));
	zd_segment_close(seg);
	kill_creator(creator);
	/* a live creator in this very process (another handle) too */
	CHECK_OK(zd_segment_unlink_stale_posix(seg_name));
	REQUIRE_OK(zd_segment_create_posix(seg_name, &repl, &mine));
	CHECK_RC(zd_segment_create_posix(seg_name, &repl, &seg), -EEXIST);
	CHECK_RC(zd_segment_unlink_stale_posix(seg_name), -EBUSY);
	CHECK_OK(zd_segment_describe_posix(seg_name, &info));
	CHECK_EQ(info.creator_alive, 1);
	zd_segment_close(mine);
	CHECK_OK(zd_segment_unlink_posix(seg_name));
	pipes_close();
}

static void refuse_live_attachment(void)
{
	zd_config_t repl = cfg_replace();
	zd_segment_t *att = NULL, *seg = NULL;
	zd_segment_info_t info;
	pid_t creator;

	zdt_watchdog(60);
	pipes_open();
	zdt_unique_name(seg_name);
	creator = start_creator(0);
	creator_commit();
	REQUIRE_OK(zd_segment_attach_posix(seg_name, &att));
	kill_creator(creator);
	CHECK_OK(zd_segment_describe_posix(seg_name, &info));
	CHECK_EQ(info.creator_alive, 0);
	CHECK_EQ(info.live_attachments, 1);
	CHECK_RC(zd_segment_create_posix(seg_name, &repl, &seg), -EEXIST);
	CHECK_RC(zd_segment_unlink_stale_posix(seg_name), -EBUSY);
	CHECK(zdt_shm_exists(seg_name));
	zd_segment_close(att);
	REQUIRE_OK(zd_segment_create_posix(seg_name, &repl, &seg));
	zd_segment_close(seg);
	CHECK_OK(zd_segment_unlink_posix(seg_name));
	pipes_close();
}

static void never_remove_a_foreign_object(void)
{
	zd_config_t repl = cfg_replace();
	zd_segment_t *seg = NULL;
	char path[80];
	int fd;

	zdt_unique_name(seg_name);
	snprintf(path, sizeof(path), "/%s", seg_name);
	fd = shm_open(path, O_RDWR | O_CREAT | O_EXCL, 0600);
	REQUIRE(fd >= 0);
	REQUIRE(ftruncate(fd, 8192) == 0);       /* zeros: no valid segment */
	close(fd);
	CHECK_RC(zd_segment_create_posix(seg_name, &repl, &seg), -EEXIST);
	CHECK_RC(zd_segment_unlink_stale_posix(seg_name), -EINPROGRESS);
	CHECK(zdt_shm_exists(seg_name));
	CHECK_RC(zd_segment_unlink_stale_posix("bad/name"), -EINVAL);
	zdt_unlink_raw(seg_name);
}

/* Waits for "g", then creates with ZD_CREATE_REPLACE_STALE; reports the
 * code and, on success, keeps the segment open until "x". */
static int racing_replacer(void *arg)
{
	zd_config_t repl = cfg_replace();
	zd_segment_t *seg = NULL;
	int fd_in = *(int *)arg;
	char cmd;
	int rc;

	if (zdt_read_full(fd_in, &cmd, 1, 30000) != 0)
		return 40;
	rc = zd_segment_create_posix(seg_name, &repl, &seg);
	if (zdt_write_full(up_pipe[1], &rc, sizeof(rc)) != 0)
		return 41;
	if (zdt_read_full(fd_in, &cmd, 1, 30000) != 0)
		return 42;
	if (rc == 0)
		zd_segment_close(seg);
	return 0;
}

static void two_replacers_one_wins(void)
{
	zdt_watchdog(100);
	pipes_open();
	zdt_unique_name(seg_name);
	for (int round = 0; round < 20; round++) {
		int go[2][2], rc[2], wins = 0;
		pid_t p[2];

		make_stale();
		for (int i = 0; i < 2; i++) {
			zdt_pipe(go[i]);
			p[i] = zdt_fork(racing_replacer, &go[i][0]);
		}
		for (int i = 0; i < 2; i++)
			REQUIRE_OK(zdt_write_full(go[i][1], "g", 1));
		for (int i = 0; i < 2; i++)
			REQUIRE_OK(zdt_read_full(up_pipe[0], &rc[i], sizeof(rc[i]), 20000));
		for (int i = 0; i < 2; i++) {
			if (rc[i] == 0)
				wins++;
			else
				CHECK_RC(rc[i], -EEXIST);
		}
		CHECK_EQ(wins, 1);
		for (int i = 0; i < 2; i++) {
			REQUIRE_OK(zdt_write_full(go[i][1], "x", 1));
			CHECK_EQ(zdt_wait(p[i]), 0);
			close(go[i][0]);
			close(go[i][1]);
		}
		CHECK_OK(zd_segment_unlink_stale_posix(seg_name));
	}
	CHECK(!zdt_shm_exists(seg_name));
	pipes_close();
}

int main(void)
{
	zdt_case("reader_drains_then_owner_dead", reader_drains_then_owner_dead);
	zdt_case("blocked_reader_ends_within_a_second",
		 blocked_reader_ends_within_a_second);
	zdt_case("goodbye_stays_epipe", goodbye_stays_epipe);
	zdt_case("memory_creator_always_alive", memory_creator_always_alive);
	zdt_case("replace_stale_segment", replace_stale_segment);
	zdt_case("refuse_live_creator", refuse_live_creator);
	zdt_case("refuse_live_attachment", refuse_live_attachment);
	zdt_case("never_remove_a_foreign_object", never_remove_a_foreign_object);
	zdt_case("two_replacers_one_wins", two_replacers_one_wins);
	return zdt_finish();
}
