/* test_ready.c — readiness descriptors (zdshm/ready.h).
 *
 * A reader arms its descriptor, a writer in another process (fork) commits,
 * and poll() on the descriptor becomes readable; a commit with nobody armed
 * sends nothing (ready_sends unchanged) and leaves the descriptor silent;
 * the goodbye makes an armed reader readable; arming after a missed commit
 * says so (1) instead of letting the caller sleep; a writer's descriptor
 * becomes readable when a reader frees a slot; a reader process that dies
 * armed costs the writer one counted failed send and nothing else.
 */
#include <sys/socket.h>

#include "zdtest.h"

#define SLOTS 4u
#define CAPACITY 64u

static char seg_name[64];

static uint64_t handle_counter(zd_segment_t *h, int errors)
{
	zd_segment_info_t i;

	REQUIRE_OK(zd_segment_info(h, &i));
	return errors ? i.handle.ready_send_errors : i.handle.ready_sends;
}

static int readable(int fd, int timeout_ms)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	int n;

	do {
		n = poll(&p, 1, timeout_ms);
	} while (n < 0 && errno == EINTR);
	return n == 1 && (p.revents & POLLIN);
}

/* Attaches, commits one sample, closes. */
static int commit_child(void *arg)
{
	zd_segment_t *seg = NULL;
	uint32_t s;
	uint64_t sn;
	zd_segment_info_t i;

	(void)arg;
	if (zd_segment_attach_posix(seg_name, &seg) != 0)
		return 20;
	if (zd_writer_loan(seg, ZD_OVERFLOW_FAIL, 0, 0, &s) != 0)
		return 21;
	if (zd_slot_commit(seg, s, "hello", 5, &sn) != 0)
		return 22;
	if (zd_segment_info(seg, &i) != 0 || i.handle.ready_sends != 1)
		return 23;
	zd_segment_close(seg);
	return 0;
}

static void armed_reader_woken_across_processes(zdt_ctx_t *c)
{
	zd_reader_t r;
	zd_view_t v;
	uint64_t last;
	int fd;

	snprintf(seg_name, sizeof(seg_name), "%s", c->name);
	REQUIRE_OK(zd_reader_open(c->seg, 0, &r));
	fd = zd_reader_ready_fd(c->seg, &r);
	REQUIRE(fd >= 0);
	CHECK_EQ(zd_reader_ready_fd(c->seg, &r), fd);   /* one per reader */
	last = zd_notify_generation(c->seg);
	CHECK_RC(zd_reader_take(c->seg, &r, &v), -EAGAIN);
	CHECK_RC(zd_reader_ready_arm(c->seg, &r, last), 0);
	CHECK(!readable(fd, 0));
	CHECK_EQ(zdt_wait(zdt_fork(commit_child, NULL)), 0);
	CHECK(readable(fd, 5000));
	REQUIRE_OK(zd_reader_take(c->seg, &r, &v));
	CHECK_EQ(v.size, 5);
	REQUIRE_OK(zd_slot_release(c->seg, &v));
	/* Drained by the next arm; one-shot: the datagram disarmed it. */
	last = zd_notify_generation(c->seg);
	CHECK_RC(zd_reader_ready_arm(c->seg, &r, last), 0);
	CHECK(!readable(fd, 0));
	zd_reader_ready_disarm(c->seg, &r);
	REQUIRE_OK(zd_reader_close(c->seg, &r));
	/* The descriptor went with the reader. */
	CHECK_RC(zd_reader_ready_fd(c->seg, &r), -ENOTCONN);
}

static void unarmed_commit_sends_nothing(zdt_ctx_t *c)
{
	zd_reader_t r;
	zd_view_t v;
	uint64_t sends;
	int fd;

	REQUIRE_OK(zd_reader_open(c->seg, 0, &r));
	fd = zd_reader_ready_fd(c->seg, &r);
	REQUIRE(fd >= 0);
	sends = handle_counter(c->seg, 0);
	zdt_put(c->seg, 1, 8, NULL);
	zdt_put(c->seg, 2, 8, NULL);
	CHECK_EQ(handle_counter(c->seg, 0), sends);
	CHECK_EQ(handle_counter(c->seg, 1), 0);
	CHECK(!readable(fd, 0));
	/* Armed and disarmed again: still nothing. */
	CHECK_RC(zd_reader_ready_arm(c->seg, &r, zd_notify_generation(c->seg)), 0);
	zd_reader_ready_disarm(c->seg, &r);
	zdt_put(c->seg, 3, 8, NULL);
	CHECK_EQ(handle_counter(c->seg, 0), sends);
	CHECK(!readable(fd, 0));
	for (int i = 0; i < 3; i++) {
		REQUIRE_OK(zd_reader_take(c->seg, &r, &v));
		REQUIRE_OK(zd_slot_release(c->seg, &v));
	}
	REQUIRE_OK(zd_reader_close(c->seg, &r));
}

static void arm_after_a_missed_commit_says_so(zdt_ctx_t *c)
{
	zd_reader_t r;
	zd_view_t v;
	uint64_t last;

	REQUIRE_OK(zd_reader_open(c->seg, 0, &r));
	last = zd_notify_generation(c->seg);
	CHECK_RC(zd_reader_take(c->seg, &r, &v), -EAGAIN);
	zdt_put(c->seg, 1, 8, NULL);            /* before the arm */
	CHECK_RC(zd_reader_ready_arm(c->seg, &r, last), 1);
	zd_reader_ready_disarm(c->seg, &r);
	REQUIRE_OK(zd_reader_take(c->seg, &r, &v));
	REQUIRE_OK(zd_slot_release(c->seg, &v));
	REQUIRE_OK(zd_reader_close(c->seg, &r));
}

static void goodbye_wakes_an_armed_reader(zdt_ctx_t *c)
{
	zd_segment_t *h = zdt_attach(c);
	zd_reader_t r;
	zd_view_t v;
	int fd;

	REQUIRE_OK(zd_reader_open(h, 0, &r));
	fd = zd_reader_ready_fd(h, &r);
	REQUIRE(fd >= 0);
	CHECK_RC(zd_reader_ready_arm(h, &r, zd_notify_generation(h)), 0);
	REQUIRE_OK(zd_segment_goodbye(c->seg));
	CHECK(readable(fd, 5000));
	CHECK_EQ(handle_counter(c->seg, 0), 1);
	CHECK_RC(zd_reader_take(h, &r, &v), -EPIPE);
}

static void writer_woken_when_a_slot_comes_free(zdt_ctx_t *c)
{
	zd_segment_t *h = zdt_attach(c);
	zd_reader_t r;
	zd_view_t v;
	uint32_t s;
	uint64_t last;
	int fd;

	REQUIRE_OK(zd_reader_open(h, 0, &r));
	for (unsigned i = 0; i < SLOTS; i++)
		zdt_put(c->seg, (unsigned char)i, 8, NULL);
	fd = zd_writer_ready_fd(c->seg);
	REQUIRE(fd >= 0);
	last = zd_notify_generation(c->seg);
	CHECK_RC(zd_writer_loan(c->seg, ZD_OVERFLOW_FAIL, 0, 0, &s), -EAGAIN);
	CHECK_RC(zd_writer_ready_arm(c->seg, last), 0);
	CHECK(!readable(fd, 0));
	REQUIRE_OK(zd_reader_take(h, &r, &v));
	REQUIRE_OK(zd_slot_release(h, &v));
	CHECK(readable(fd, 5000));
	CHECK_OK(zd_writer_loan(c->seg, ZD_OVERFLOW_FAIL, 0, 0, &s));
	CHECK_OK(zd_slot_discard(c->seg, s));
}

static int pipe_up[2];

/* Opens a reader, arms it, reports, sleeps until killed. */
static int armed_then_killed(void *arg)
{
	zd_segment_t *seg = NULL;
	zd_reader_t r;
	char ok = 1;

	(void)arg;
	if (zd_segment_attach_posix(seg_name, &seg) != 0)
		return 30;
	if (zd_reader_open(seg, 0, &r) != 0)
		return 31;
	if (zd_reader_ready_arm(seg, &r, zd_notify_generation(seg)) != 0)
		return 32;
	if (zdt_write_full(pipe_up[1], &ok, 1) != 0)
		return 33;
	for (;;)
		pause();
}

static void dead_armed_reader_costs_one_counted_send(zdt_ctx_t *c)
{
	pid_t pid;
	char ok = 0;
	uint64_t errors;

	snprintf(seg_name, sizeof(seg_name), "%s", c->name);
	zdt_pipe(pipe_up);
	pid = zdt_fork(armed_then_killed, NULL);
	REQUIRE_OK(zdt_read_full(pipe_up[0], &ok, 1, 10000));
	kill(pid, SIGKILL);
	CHECK_EQ(zdt_wait(pid), 128 + SIGKILL);
	errors = handle_counter(c->seg, 1);
	zdt_put(c->seg, 1, 8, NULL);            /* one failed send, disarmed */
	zdt_put(c->seg, 2, 8, NULL);
	zdt_put(c->seg, 3, 8, NULL);
	CHECK_EQ(handle_counter(c->seg, 1) - errors, 1);
	CHECK_EQ(handle_counter(c->seg, 0), 0);
	close(pipe_up[0]);
	close(pipe_up[1]);
}

int main(void)
{
	zd_config_t cfg = zdt_cfg(SLOTS, CAPACITY);

	zdt_watchdog(60);
	zdt_run_posix("armed_reader_woken_across_processes", &cfg,
		      armed_reader_woken_across_processes);
	zdt_run_both("unarmed_commit_sends_nothing", &cfg,
		     unarmed_commit_sends_nothing);
	zdt_run_both("arm_after_a_missed_commit_says_so", &cfg,
		     arm_after_a_missed_commit_says_so);
	zdt_run_posix("goodbye_wakes_an_armed_reader", &cfg,
		      goodbye_wakes_an_armed_reader);
	zdt_run_posix("writer_woken_when_a_slot_comes_free", &cfg,
		      writer_woken_when_a_slot_comes_free);
	zdt_run_posix("dead_armed_reader_costs_one_counted_send", &cfg,
		      dead_armed_reader_costs_one_counted_send);
	return zdt_finish();
}
