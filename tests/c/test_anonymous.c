/* test_anonymous.c — sealed anonymous segments and read-only samples:
 * a memfd segment with no name, sealed against shrinking and growing,
 * attached through a descriptor (validated like a named one, with its own
 * locks), and samples that fault when written through.
 */
#include "zdtest.h"

#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>

/* The scribbling children must die of SIGSEGV, not of a sanitizer's
 * report of it. */
const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
	return "handle_segv=0";
}

const char *__tsan_default_options(void);
const char *__tsan_default_options(void)
{
	return "handle_segv=0";
}

static zd_segment_t *create_anon(uint32_t count, uint64_t cap)
{
	zd_config_t cfg = zdt_cfg(count, cap);
	zd_segment_t *seg = NULL;

	REQUIRE_OK(zd_segment_create_anonymous(&cfg, &seg));
	REQUIRE(seg != NULL);
	return seg;
}

static void create_is_sealed_and_nameless(void)
{
	int before = zdt_count_own_entries(0);
	zd_segment_t *seg = create_anon(4, 256);
	zd_segment_info_t info;
	int fd = zd_segment_fd(seg), seals;

	CHECK_EQ(zd_segment_backend(seg), ZD_BACKEND_ANONYMOUS);
	CHECK(strcmp(zd_segment_name(seg), "") == 0);
	CHECK_EQ(zd_segment_sealed(seg), 1);
	CHECK_EQ(zd_segment_is_creator(seg), 1);
	REQUIRE(fd >= 0);
	seals = fcntl(fd, F_GET_SEALS);
	CHECK_EQ(seals, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
	CHECK(fcntl(fd, F_GETFD) & FD_CLOEXEC);
	/* Truncation and growth are refused; the seals cannot be lifted. */
	CHECK_EQ(ftruncate(fd, 4096), -1);
	CHECK_EQ(errno, EPERM);
	CHECK_EQ(ftruncate(fd, (off_t)zd_segment_total_size(seg) + 4096), -1);
	CHECK_EQ(errno, EPERM);
	CHECK_EQ(fcntl(fd, F_ADD_SEALS, F_SEAL_WRITE), -1);
	CHECK_OK(zd_segment_info(seg, &info));
	CHECK_EQ(info.backend, ZD_BACKEND_ANONYMOUS);
	CHECK_EQ(zdt_count_own_entries(0), before);
	CHECK_OK(zd_segment_close(seg));
}

static void fd_of_other_backends_is_einval(void)
{
	zd_config_t cfg = zdt_cfg(2, 64);
	zd_segment_t *m = NULL;

	REQUIRE_OK(zd_segment_create_memory(&cfg, &m));
	CHECK_RC(zd_segment_fd(m), -EINVAL);
	CHECK_EQ(zd_segment_sealed(m), 0);
	zd_segment_close(m);
}

/* A second handle made from the first one's descriptor sees its samples,
 * and its locks are its own: reaping from it does not take the live
 * creator's reader for dead (a dup would share the OFD and its locks). */
static void attach_fd_shares_data_not_locks(void)
{
	zd_segment_t *a = create_anon(4, 64), *b = NULL;
	zd_reader_t ra, rb;
	zd_view_t v;
	uint32_t reaped = 99, reclaimed = 99;
	int fd = zd_segment_fd(a);

	REQUIRE_OK(zd_reader_open(a, 0, &ra));
	REQUIRE_OK(zd_segment_attach_fd(fd, &b));
	CHECK(zd_segment_fd(b) >= 0 && zd_segment_fd(b) != fd);
	CHECK_EQ(zd_segment_is_creator(b), 0);
	CHECK_EQ(zd_segment_sealed(b), 1);
	CHECK_EQ(zd_segment_backend(b), ZD_BACKEND_ANONYMOUS);
	REQUIRE_OK(zd_reader_open(b, 0, &rb));
	CHECK_OK(zd_segment_reap(b, &reaped, &reclaimed));
	CHECK_EQ(reaped, 0);
	CHECK_EQ(reclaimed, 0);
	zdt_put(b, 0x5a, 16, NULL);
	REQUIRE_OK(zd_reader_take(a, &ra, &v));
	CHECK_EQ(v.size, 16);
	CHECK_EQ(((const unsigned char *)v.data)[15], 0x5a);
	CHECK_OK(zd_slot_release(a, &v));
	REQUIRE_OK(zd_reader_take(b, &rb, &v));
	CHECK_EQ(((const unsigned char *)v.data)[0], 0x5a);
	CHECK_OK(zd_slot_release(b, &v));
	/* The caller's descriptor stays open and usable after both close. */
	CHECK_OK(zd_segment_close(b));
	CHECK(fcntl(fd, F_GETFD) >= 0);
	CHECK_OK(zd_segment_close(a));
}

static void attach_fd_keeps_callers_fd(void)
{
	zd_segment_t *a = create_anon(2, 64), *b = NULL;
	int mine = dup(zd_segment_fd(a));

	REQUIRE(mine >= 0);
	CHECK_OK(zd_segment_close(a));      /* the creator is gone ...        */
	REQUIRE_OK(zd_segment_attach_fd(mine, &b));  /* ... the object is not */
	CHECK_OK(zd_segment_close(b));
	CHECK_EQ(close(mine), 0);
}

static void check_attach_fails(int fd, int want)
{
	zd_segment_t *seg = (zd_segment_t *)&seg;   /* must be reset to NULL */

	CHECK_RC(zd_segment_attach_fd(fd, &seg), want);
	CHECK(seg == NULL);
}

static void attach_fd_rejects_non_segments(void)
{
	zd_segment_t *a = create_anon(2, 64);
	char path[] = "/tmp/zdtest-anon-XXXXXX";
	int p[2], tmp, mfd, ro, sock[2];
	char junk[4096];

	CHECK_RC(zd_segment_attach_fd(0, NULL), -EINVAL);
	check_attach_fails(-1, -EBADF);
	check_attach_fails(1 << 20, -EBADF);
	REQUIRE(pipe(p) == 0);
	check_attach_fails(p[0], -EBADMSG);
	check_attach_fails(p[1], -EBADMSG);
	close(p[0]);
	close(p[1]);
	REQUIRE(socketpair(AF_UNIX, SOCK_STREAM, 0, sock) == 0);
	check_attach_fails(sock[0], -EBADMSG);
	close(sock[0]);
	close(sock[1]);
	tmp = mkstemp(path);
	REQUIRE(tmp >= 0);
	unlink(path);
	memset(junk, 0xa5, sizeof(junk));
	REQUIRE(write(tmp, junk, sizeof(junk)) == (ssize_t)sizeof(junk));
	check_attach_fails(tmp, -EBADMSG);
	close(tmp);
	mfd = memfd_create("short", MFD_CLOEXEC);
	REQUIRE(mfd >= 0);
	check_attach_fails(mfd, -EINPROGRESS);      /* empty */
	REQUIRE(ftruncate(mfd, 100) == 0);
	check_attach_fails(mfd, -EBADMSG);          /* shorter than a header */
	/* The first page of a real segment, alone: the init flag is there but
	 * the size does not match the header. */
	REQUIRE(ftruncate(mfd, 4096) == 0);
	REQUIRE(pread(zd_segment_fd(a), junk, sizeof(junk), 0) == (ssize_t)sizeof(junk));
	REQUIRE(pwrite(mfd, junk, sizeof(junk), 0) == (ssize_t)sizeof(junk));
	check_attach_fails(mfd, -EBADMSG);
	close(mfd);
	/* Read-only descriptor: reopening must not widen it. */
	snprintf(path, sizeof(path), "/proc/self/fd/%d", zd_segment_fd(a));
	ro = open(path, O_RDONLY | O_CLOEXEC);
	REQUIRE(ro >= 0);
	check_attach_fails(ro, -EACCES);
	close(ro);
	/* Sealed against writes: refused. */
	mfd = memfd_create("wsealed", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	REQUIRE(mfd >= 0);
	REQUIRE(ftruncate(mfd, (off_t)zd_segment_total_size(a)) == 0);
	REQUIRE(fcntl(mfd, F_ADD_SEALS, F_SEAL_WRITE) == 0);
	check_attach_fails(mfd, -EPERM);
	close(mfd);
	zd_segment_close(a);
}

/* A named posix object attached by descriptor is fine, but not sealed. */
static void named_object_by_fd(zdt_ctx_t *c)
{
	char path[ZD_NAME_MAX + 16];
	zd_segment_t *b = NULL;
	zd_view_t v;
	int fd;

	snprintf(path, sizeof(path), "/%s", c->name);
	fd = shm_open(path, O_RDWR | O_CLOEXEC, 0);
	REQUIRE(fd >= 0);
	REQUIRE_OK(zd_segment_attach_fd(fd, &b));
	close(fd);
	CHECK_EQ(zd_segment_sealed(b), 0);
	CHECK_EQ(zd_segment_backend(b), ZD_BACKEND_ANONYMOUS);
	zdt_put(c->seg, 0x11, 8, NULL);
	REQUIRE_OK(zd_slot_acquire(b, 0, &v));
	CHECK_EQ(((const unsigned char *)v.data)[7], 0x11);
	CHECK_OK(zd_slot_release(b, &v));
	CHECK_OK(zd_segment_close(b));
}

/* Writing through a sample kills the writer of it (SIGSEGV) and changes
 * nothing; on every backend. */
static int scribble_child(void *arg)
{
	zd_view_t *v = arg;

	((volatile unsigned char *)v->data)[0] = 0xee;
	return 0;
}

static void scribble(zd_segment_t *seg)
{
	zd_reader_t r;
	zd_view_t v;
	pid_t pid;

	REQUIRE_OK(zd_reader_open(seg, 0, &r));
	zdt_put(seg, 0x42, 32, NULL);
	REQUIRE_OK(zd_reader_take(seg, &r, &v));
	pid = zdt_fork(scribble_child, &v);
	CHECK_EQ(zdt_wait(pid), 128 + SIGSEGV);
	CHECK_EQ(((const unsigned char *)v.data)[0], 0x42);
	CHECK_OK(zd_slot_release(seg, &v));
	CHECK_OK(zd_reader_close(seg, &r));
}

static void samples_are_read_only(zdt_ctx_t *c)
{
	scribble(c->seg);
}

static void anonymous_samples_are_read_only(void)
{
	zd_segment_t *a = create_anon(2, 64);

	scribble(a);
	zd_segment_close(a);
}

int main(void)
{
	zd_config_t cfg = zdt_cfg(4, 64);

	zdt_watchdog(60);
	zdt_case("create_is_sealed_and_nameless", create_is_sealed_and_nameless);
	zdt_case("fd_of_other_backends_is_einval", fd_of_other_backends_is_einval);
	zdt_case("attach_fd_shares_data_not_locks", attach_fd_shares_data_not_locks);
	zdt_case("attach_fd_keeps_callers_fd", attach_fd_keeps_callers_fd);
	zdt_case("attach_fd_rejects_non_segments", attach_fd_rejects_non_segments);
	zdt_run_posix("named_object_by_fd", &cfg, named_object_by_fd);
	zdt_run_both("samples_are_read_only", &cfg, samples_are_read_only);
	zdt_case("anonymous_samples_are_read_only", anonymous_samples_are_read_only);
	return zdt_finish();
}
