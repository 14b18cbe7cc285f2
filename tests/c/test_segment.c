/* test_segment.c — names, configurations and the segment lifecycle:
 * validation before any system call (and nothing left in /dev/shm),
 * create/attach/describe/unlink, the info counters, the goodbye flag and
 * the type hash.
 */
#include "zdtest.h"

#include <grp.h>

/* The oversized-geometry case asks malloc for 2^60 bytes: under ASan and
 * TSan that must return NULL (as it does in a plain build) instead of
 * aborting the program. */
const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
	return "allocator_may_return_null=1";
}

const char *__tsan_default_options(void);
const char *__tsan_default_options(void)
{
	return "allocator_may_return_null=1";
}

static uint64_t realtime_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ------------------------------------------------------------------ */

/* Checks that every entry point taking a name rejects it with `want` and
 * that nothing with that name appears in /dev/shm. */
static void check_bad_name(const char *name, int want)
{
	zd_config_t cfg = zdt_cfg(2, 64);
	zd_segment_t *seg = NULL;
	zd_segment_info_t info;

	CHECK_RC(zd_name_validate(name), want);
	CHECK_RC(zd_segment_create_posix(name, &cfg, &seg), want);
	CHECK(seg == NULL);
	if (seg) {
		zd_segment_close(seg);
		seg = NULL;
	}
	CHECK_RC(zd_segment_attach_posix(name, &seg), want);
	CHECK(seg == NULL);
	CHECK_RC(zd_segment_describe_posix(name, &info), want);
	CHECK_RC(zd_segment_unlink_posix(name), want);
	if (name && strstr(name, "zdtest-")) {
		const char *p = name[0] == '/' ? name + 1 : name;
		int exists = zdt_shm_exists(p);

		zdt_count();
		if (exists)
			zdt_fail(__FILE__, __LINE__, "/dev/shm/%s exists after "
				 "the name was rejected", p);
		if (exists)
			zdt_unlink_raw(p);
	}
}

static void bad_names_are_rejected(void)
{
	char base[64], buf[512];
	int before = zdt_count_own_entries(0);

	zdt_unique_name(base);
	check_bad_name("", -EINVAL);
	CHECK_RC(zd_name_validate(NULL), -EINVAL);
	snprintf(buf, sizeof(buf), "/%s", base);
	check_bad_name(buf, -EINVAL);
	snprintf(buf, sizeof(buf), "%s/b", base);
	check_bad_name(buf, -EINVAL);
	snprintf(buf, sizeof(buf), ".%s", base);
	check_bad_name(buf, -EINVAL);
	check_bad_name(".", -EINVAL);
	check_bad_name("..", -EINVAL);
	snprintf(buf, sizeof(buf), "%s caf\xc3\xa9", base);
	check_bad_name(buf, -EINVAL);
	snprintf(buf, sizeof(buf), "%s-caf\xc3\xa9", base);
	check_bad_name(buf, -EINVAL);
	snprintf(buf, sizeof(buf), "%s\x7f", base);
	check_bad_name(buf, -EINVAL);
	snprintf(buf, sizeof(buf), "%s\ttab", base);
	check_bad_name(buf, -EINVAL);
	snprintf(buf, sizeof(buf), "%s:x", base);
	check_bad_name(buf, -EINVAL);
	snprintf(buf, sizeof(buf), "%s*", base);
	check_bad_name(buf, -EINVAL);
	/* 201 characters: one too many (and much longer ones) */
	memset(buf, 'n', sizeof(buf));
	memcpy(buf, base, strlen(base));
	buf[ZD_NAME_MAX + 1] = '\0';
	check_bad_name(buf, -ENAMETOOLONG);
	buf[ZD_NAME_MAX + 1] = 'n';
	buf[300] = '\0';
	check_bad_name(buf, -ENAMETOOLONG);
	CHECK_EQ(zdt_count_own_entries(0), before);
}

static void good_names_work(void)
{
	char base[64], buf[256];
	zd_config_t cfg = zdt_cfg(1, 8);
	static const char *suffixes[] = { "", "-A.z_9", "_", "-" };

	zdt_unique_name(base);
	for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
		zd_segment_t *seg = NULL, *att = NULL;

		snprintf(buf, sizeof(buf), "%s%s", base, suffixes[i]);
		CHECK_OK(zd_name_validate(buf));
		CHECK_OK(zd_segment_create_posix(buf, &cfg, &seg));
		CHECK(zdt_shm_exists(buf));
		CHECK_OK(zd_segment_attach_posix(buf, &att));
		if (att)
			CHECK(strcmp(zd_segment_name(att), buf) == 0);
		zd_segment_close(att);
		zd_segment_close(seg);
		CHECK_OK(zd_segment_unlink_posix(buf));
		CHECK(!zdt_shm_exists(buf));
	}
	/* exactly ZD_NAME_MAX characters, and a leading '-' */
	{
		char longname[ZD_NAME_MAX + 1];
		zd_segment_t *seg = NULL;

		memset(longname, 'L', ZD_NAME_MAX);
		memcpy(longname, base, strlen(base));
		longname[ZD_NAME_MAX] = '\0';
		CHECK_OK(zd_name_validate(longname));
		CHECK_OK(zd_segment_create_posix(longname, &cfg, &seg));
		if (seg)
			CHECK_EQ(strlen(zd_segment_name(seg)), ZD_NAME_MAX);
		zd_segment_close(seg);
		CHECK_OK(zd_segment_unlink_posix(longname));
		CHECK(!zdt_shm_exists(longname));
		CHECK_OK(zd_name_validate("-x"));
		CHECK_OK(zd_name_validate("a..b"));
	}
}

/* A valid name with a bad configuration: the code, and no object. */
static void check_bad_cfg(const zd_config_t *cfg, int want)
{
	char name[64];
	zd_segment_t *seg = NULL;

	CHECK_RC(zd_config_validate(cfg), want);
	CHECK_RC(zd_segment_create_memory(cfg, &seg), want);
	CHECK(seg == NULL);
	zd_segment_close(seg);
	seg = NULL;
	CHECK_RC(zd_segment_create_posix(zdt_unique_name(name), cfg, &seg),
		 want);
	CHECK(seg == NULL);
	zd_segment_close(seg);
	CHECK(!zdt_shm_exists(name));
}

static void bad_configs_are_rejected(void)
{
	zd_config_t c;

	c = zdt_cfg(0, 64);
	check_bad_cfg(&c, -EINVAL);
	c = zdt_cfg(4, 0);
	check_bad_cfg(&c, -EINVAL);
	c = zdt_cfg(0, 0);
	check_bad_cfg(&c, -EINVAL);
	c = zdt_cfg(4, ZD_SLOT_CAPACITY_MAX + 1);
	check_bad_cfg(&c, -EINVAL);
	c = zdt_cfg(4, UINT64_MAX);
	check_bad_cfg(&c, -EINVAL);
	c = zdt_cfg(ZD_SLOT_COUNT_MAX + 1, 64);
	check_bad_cfg(&c, -EINVAL);
	c = zdt_cfg(UINT32_MAX, 64);
	check_bad_cfg(&c, -EINVAL);
	c = zdt_cfg(4, 64);
	c.mode = 01000;
	check_bad_cfg(&c, -EINVAL);
	c.mode = 04600;
	check_bad_cfg(&c, -EINVAL);
	c.mode = UINT32_MAX;
	check_bad_cfg(&c, -EINVAL);
	CHECK_RC(zd_config_validate(NULL), -EINVAL);
	CHECK_RC(zd_segment_create_memory(NULL, NULL), -EINVAL);
	/* the limits themselves are valid configurations */
	c = zdt_cfg(ZD_SLOT_COUNT_MAX, 1);
	CHECK_OK(zd_config_validate(&c));
	c = zdt_cfg(1, ZD_SLOT_CAPACITY_MAX);
	CHECK_OK(zd_config_validate(&c));
	c = zdt_cfg(4, 64);
	c.mode = 0777;
	CHECK_OK(zd_config_validate(&c));
}

/* The largest geometry validates but cannot be backed by memory: create
 * fails cleanly (ENOMEM / ENOSPC / EOVERFLOW), leaving nothing behind. */
static void huge_geometry_fails_cleanly(void)
{
	zd_config_t c = zdt_cfg(ZD_SLOT_COUNT_MAX, ZD_SLOT_CAPACITY_MAX);
	zd_segment_t *seg = NULL;
	char name[64];
	int rc;

	rc = zd_config_validate(&c);
	CHECK(rc == 0 || rc == -EOVERFLOW);
	rc = zd_segment_create_memory(&c, &seg);
	CHECK(rc == -ENOMEM || rc == -EOVERFLOW);
	CHECK(seg == NULL);
	zd_segment_close(seg);
	seg = NULL;
	rc = zd_segment_create_posix(zdt_unique_name(name), &c, &seg);
	if (!(rc == -ENOSPC || rc == -ENOMEM || rc == -EOVERFLOW))
		zdt_fail(__FILE__, __LINE__,
			 "create_posix(2^20 x 2^40) returned %s, expected "
			 "-ENOSPC, -ENOMEM or -EOVERFLOW",
			 zdt_errname(rc));
	zdt_count();
	CHECK(seg == NULL);
	zd_segment_close(seg);
	CHECK(!zdt_shm_exists(name));
}

static void create_twice_is_eexist(zdt_ctx_t *c)
{
	zd_segment_t *again = NULL, *att;
	zd_config_t other = zdt_cfg(7, 8);
	uint32_t s;

	CHECK_RC(zd_segment_create_posix(c->name, &c->cfg, &again), -EEXIST);
	CHECK(again == NULL);
	CHECK_RC(zd_segment_create_posix(c->name, &other, &again), -EEXIST);
	CHECK(again == NULL);
	/* the failed create left the existing segment alone */
	CHECK(zdt_shm_exists(c->name));
	att = zdt_attach(c);
	CHECK_EQ(zd_segment_slot_count(att), c->cfg.slot_count);
	CHECK_OK(zd_slot_reserve(att, 0, &s));
	CHECK_OK(zd_slot_commit(att, s, "q", 1, NULL));
}

static void attach_missing_is_enoent(void)
{
	char name[64];
	zd_segment_t *seg = (zd_segment_t *)1;
	zd_segment_info_t info;

	zdt_unique_name(name);
	CHECK_RC(zd_segment_attach_posix(name, &seg), -ENOENT);
	CHECK_RC(zd_segment_describe_posix(name, &info), -ENOENT);
	CHECK_RC(zd_segment_unlink_posix(name), -ENOENT);
	CHECK(!zdt_shm_exists(name));
	CHECK_RC(zd_segment_attach_posix(name, NULL), -EINVAL);
	CHECK_RC(zd_segment_describe_posix(name, NULL), -EINVAL);
}

static void info_and_describe(zdt_ctx_t *c)
{
	zd_segment_info_t a, d;
	uint64_t t_after = realtime_ns();
	uint32_t s;
	zd_reader_t r;

	CHECK_OK(zd_segment_info(c->seg, &a));
	CHECK_EQ(a.backend, c->backend);
	CHECK_EQ(a.layout_version, ZD_LAYOUT_VERSION);
	CHECK_EQ(a.geo.slot_count, 3);
	CHECK_EQ(a.geo.slot_capacity, 1000);
	CHECK_EQ(a.geo.slot_stride, 1152); /* 128 + 1000 = 1128 -> 1152 */
	CHECK_EQ(a.geo.total_size, zd_segment_total_size(c->seg));
	CHECK_GE(a.geo.total_size, 3u * 1152u + 512u);
	CHECK_EQ(a.owner_pid, getpid());
	CHECK_EQ(a.owner_uid, getuid());
	CHECK_LE(a.created_realtime_ns, t_after);
	CHECK_GT(a.created_realtime_ns, t_after - 60 * ZDT_S);
	CHECK_EQ(a.goodbye, 0);
	CHECK_EQ(a.readers_active, 0);
	CHECK_EQ(a.active_mask, 0);
	CHECK_EQ(a.next_sn, 0);
	CHECK_EQ(a.counters.loans, 0);
	CHECK_EQ(a.counters.commits, 0);
	CHECK_EQ(zd_segment_is_creator(c->seg), 1);
	if (c->backend == ZD_BACKEND_MEMORY)
		CHECK(strcmp(zd_segment_name(c->seg), "") == 0);

	/* counters move with the operations */
	REQUIRE_OK(zd_reader_open(c->seg, 0, &r));
	REQUIRE_OK(zd_slot_reserve(c->seg, 0, &s));
	CHECK_OK(zd_slot_commit(c->seg, s, "abc", 3, NULL));
	REQUIRE_OK(zd_slot_reserve(c->seg, 0, &s));
	CHECK_OK(zd_slot_discard(c->seg, s));
	REQUIRE_OK(zd_slot_reserve(c->seg, 0, &s));
	CHECK_OK(zd_slot_commit(c->seg, s, "de", 2, NULL));
	CHECK_OK(zd_segment_info(c->seg, &a));
	CHECK_EQ(a.counters.loans, 3);
	CHECK_EQ(a.counters.commits, 2);
	CHECK_EQ(a.counters.discards, 1);
	CHECK_EQ(a.counters.evictions, 0);
	CHECK_EQ(a.counters.reclaims, 0);
	CHECK_EQ(a.counters.loans_reclaimed, 0);
	CHECK_EQ(a.counters.readers_reaped, 0);
	CHECK_EQ(a.counters.corrupt_dropped, 0);
	CHECK_EQ(a.next_sn, 2);
	CHECK_EQ(a.readers_active, 1);
	CHECK_EQ(a.active_mask, (uint64_t)1 << r.index);
	CHECK_EQ(a.active_mask, zd_segment_active_mask(c->seg));

	if (c->backend != ZD_BACKEND_POSIX)
		return;
	/* describe: same picture, read-only, without attaching */
	CHECK_OK(zd_segment_describe_posix(c->name, &d));
	CHECK_EQ(d.backend, ZD_BACKEND_POSIX);
	CHECK_EQ(d.geo.slot_count, a.geo.slot_count);
	CHECK_EQ(d.geo.slot_capacity, a.geo.slot_capacity);
	CHECK_EQ(d.geo.slot_stride, a.geo.slot_stride);
	CHECK_EQ(d.geo.total_size, a.geo.total_size);
	CHECK_EQ(d.owner_pid, a.owner_pid);
	CHECK_EQ(d.owner_uid, a.owner_uid);
	CHECK_EQ(d.created_realtime_ns, a.created_realtime_ns);
	CHECK_EQ(d.next_sn, 2);
	CHECK_EQ(d.active_mask, a.active_mask);
	CHECK_EQ(d.counters.commits, 2);
	CHECK_EQ(d.counters.discards, 1);
	CHECK_EQ(d.goodbye, 0);
	{
		/* an attached handle sees the same */
		zd_segment_t *att = zdt_attach(c);
		zd_segment_info_t b;

		CHECK_OK(zd_segment_info(att, &b));
		CHECK_EQ(b.created_realtime_ns, a.created_realtime_ns);
		CHECK_EQ(b.next_sn, 2);
		CHECK_EQ(b.counters.loans, 3);
		CHECK_EQ(zd_segment_is_creator(att), 0);
	}
}

/* describe takes no attachment entry: it still works when all are taken */
static void describe_does_not_attach(zdt_ctx_t *c)
{
	zd_segment_t *more = NULL;
	zd_segment_info_t d;
	int n = 1; /* the creator holds one entry */

	while (n < (int)ZD_ATTACH_MAX) {
		zdt_attach(c);
		n++;
	}
	CHECK_RC(zd_segment_attach_posix(c->name, &more), -EUSERS);
	CHECK(more == NULL);
	for (int i = 0; i < 3; i++)
		CHECK_OK(zd_segment_describe_posix(c->name, &d));
	CHECK_EQ(d.geo.slot_count, c->cfg.slot_count);
	/* closing one handle frees its entry */
	zd_segment_close(c->extra[c->n_extra - 1]);
	c->extra[--c->n_extra] = NULL;
	CHECK_OK(zd_segment_attach_posix(c->name, &more));
	if (more)
		c->extra[c->n_extra++] = more;
	more = NULL;
	CHECK_RC(zd_segment_attach_posix(c->name, &more), -EUSERS);
}

static void unlink_keeps_mappings(zdt_ctx_t *c)
{
	zd_segment_t *att = zdt_attach(c), *again = NULL;
	zd_segment_info_t d;
	zd_slot_header_t h;
	uint32_t s;
	unsigned char b = 0;

	CHECK_OK(zd_segment_unlink_posix(c->name));
	CHECK(!zdt_shm_exists(c->name));
	CHECK_RC(zd_segment_unlink_posix(c->name), -ENOENT);
	CHECK_RC(zd_segment_attach_posix(c->name, &again), -ENOENT);
	CHECK(again == NULL);
	CHECK_RC(zd_segment_describe_posix(c->name, &d), -ENOENT);
	/* both mappings keep working, and still share memory */
	REQUIRE_OK(zd_slot_reserve(c->seg, 0, &s));
	CHECK_OK(zd_slot_commit(c->seg, s, "\x42", 1, NULL));
	CHECK_OK(zd_slot_read(att, s, &h, &b, 1, NULL));
	CHECK_EQ(b, 0x42);
	/* the name can be used again for a new, independent segment */
	{
		zd_config_t other = zdt_cfg(2, 16);

		CHECK_OK(zd_segment_create_posix(c->name, &other, &again));
		if (again) {
			CHECK_EQ(zd_segment_slot_count(again), 2);
			CHECK_RC(zd_slot_read(again, s, &h, &b, 1, NULL),
				 -ENODATA);
			zd_segment_close(again);
		}
		CHECK_OK(zd_segment_unlink_posix(c->name));
	}
}

static void goodbye_when_creator_closes(zdt_ctx_t *c)
{
	zd_segment_t *att = zdt_attach(c);
	zd_segment_info_t i;
	zd_reader_t r;
	zd_view_t v;
	uint32_t s;
	uint64_t g;

	REQUIRE_OK(zd_reader_open(att, 0, &r));
	REQUIRE_OK(zd_slot_reserve(c->seg, zd_segment_active_mask(c->seg), &s));
	CHECK_OK(zd_slot_commit(c->seg, s, "last", 4, NULL));
	CHECK_OK(zd_segment_info(att, &i));
	CHECK_EQ(i.goodbye, 0);
	g = zd_notify_generation(att);
	zd_segment_close(c->seg);
	c->seg = NULL;
	/* closing bumps the generation so sleepers notice */
	CHECK_NE(zd_notify_generation(att), g);
	CHECK_OK(zd_segment_info(att, &i));
	CHECK_EQ(i.goodbye, 1);
	CHECK_OK(zd_segment_describe_posix(c->name, &i));
	CHECK_EQ(i.goodbye, 1);
	/* what was committed is still delivered, then -EPIPE */
	CHECK_OK(zd_reader_take(att, &r, &v));
	CHECK_EQ(v.size, 4);
	CHECK_OK(zd_slot_release(att, &v));
	CHECK_RC(zd_reader_take(att, &r, &v), -EPIPE);
	CHECK_RC(zd_reader_wait_take(att, &r, &v, zd_now_ns() + 5 * ZDT_S, 0),
		 -EPIPE);
	/* an attached handle's close does not say goodbye for the creator */
	{
		zd_config_t cfg = zdt_cfg(2, 8);
		char name[64];
		zd_segment_t *cr = NULL, *a2 = NULL;

		REQUIRE_OK(zd_segment_create_posix(zdt_unique_name(name), &cfg,
						   &cr));
		CHECK_OK(zd_segment_attach_posix(name, &a2));
		zd_segment_close(a2);
		CHECK_OK(zd_segment_info(cr, &i));
		CHECK_EQ(i.goodbye, 0);
		zd_segment_close(cr);
		CHECK_OK(zd_segment_describe_posix(name, &i));
		CHECK_EQ(i.goodbye, 1);
		CHECK_OK(zd_segment_unlink_posix(name));
	}
}

/* Closing a handle discards its live loans and drops its views. */
static void close_discards_loans_and_views(zdt_ctx_t *c)
{
	zd_segment_t *a = NULL;
	zd_segment_info_t i0, i1;
	zd_view_t v;
	uint32_t loaned, pinned, x;

	REQUIRE_OK(zd_slot_reserve(c->seg, 0, &pinned));
	REQUIRE_OK(zd_slot_commit(c->seg, pinned, "p", 1, NULL));
	REQUIRE_OK(zd_segment_attach_posix(c->name, &a));
	REQUIRE_OK(zd_slot_acquire(a, pinned, &v));
	REQUIRE_OK(zd_slot_reserve(a, 0, &loaned));
	CHECK_NE(loaned, pinned);
	/* the pinned slot cannot be recycled, the loaned one is taken */
	CHECK_RC(zd_slot_reserve(c->seg, 0, &x), -EAGAIN);
	CHECK_OK(zd_segment_info(c->seg, &i0));
	zd_segment_close(a);
	CHECK_OK(zd_segment_info(c->seg, &i1));
	CHECK_EQ(zd_slot_state(c->seg, loaned), 0);
	CHECK_EQ(i1.counters.discards, i0.counters.discards + 1);
	CHECK_EQ(i1.next_sn, i0.next_sn);
	/* both slots can be loaned now */
	CHECK_OK(zd_slot_reserve(c->seg, 0, &x));
	CHECK_OK(zd_slot_reserve(c->seg, 0, &x));
}

struct goodbye_waiter {
	zd_segment_t *seg;
	zd_reader_t *r;
	int rc;
	uint64_t back;
};

static void *wait_for_goodbye(void *arg)
{
	struct goodbye_waiter *w = arg;
	zd_view_t v;

	w->rc = zd_reader_wait_take(w->seg, w->r, &v, zd_now_ns() + 10 * ZDT_S, 0);
	w->back = zdt_now_ns();
	if (w->rc == 0)
		zd_slot_release(w->seg, &v);
	return NULL;
}

/* A reader blocked in wait_take is woken by the creator's goodbye. */
static void goodbye_wakes_waiting_reader(zdt_ctx_t *c)
{
	zd_segment_t *att = zdt_attach(c);
	zd_reader_t r;
	struct goodbye_waiter w = { att, &r, 1, 0 };
	pthread_t th;
	uint64_t closed;

	REQUIRE_OK(zd_reader_open(att, 0, &r));
	REQUIRE(pthread_create(&th, NULL, wait_for_goodbye, &w) == 0);
	zdt_sleep_ms(100);
	closed = zdt_now_ns();
	zd_segment_close(c->seg);
	c->seg = NULL;
	pthread_join(th, NULL);
	CHECK_RC(w.rc, -EPIPE);
	CHECK_GE(w.back, closed);
	CHECK_LT(w.back - closed, 2 * ZDT_S);
}

static void type_hash_round_trip(void)
{
	zd_config_t cfg = zdt_cfg(2, 32);
	uint8_t out[ZD_TYPE_HASH_SIZE];
	zd_segment_t *m = NULL, *p = NULL, *a = NULL;
	zd_segment_info_t d;
	char name[64];

	for (unsigned i = 0; i < ZD_TYPE_HASH_SIZE; i++)
		cfg.type_hash[i] = (uint8_t)(0xA0 + i);
	REQUIRE_OK(zd_segment_create_memory(&cfg, &m));
	memset(out, 0, sizeof(out));
	CHECK_EQ(zd_segment_type_hash(m, out), 1);
	CHECK(memcmp(out, cfg.type_hash, sizeof(out)) == 0);
	zd_segment_close(m);

	REQUIRE_OK(zd_segment_create_posix(zdt_unique_name(name), &cfg, &p));
	CHECK_OK(zd_segment_attach_posix(name, &a));
	memset(out, 0, sizeof(out));
	CHECK_EQ(zd_segment_type_hash(p, out), 1);
	CHECK(memcmp(out, cfg.type_hash, sizeof(out)) == 0);
	if (a) {
		memset(out, 0, sizeof(out));
		CHECK_EQ(zd_segment_type_hash(a, out), 1);
		CHECK(memcmp(out, cfg.type_hash, sizeof(out)) == 0);
	}
	CHECK_OK(zd_segment_describe_posix(name, &d));
	CHECK(memcmp(d.type_hash, cfg.type_hash, sizeof(out)) == 0);
	zd_segment_close(a);
	zd_segment_close(p);
	CHECK_OK(zd_segment_unlink_posix(name));

	/* only the last byte set still counts as a hash */
	memset(cfg.type_hash, 0, sizeof(cfg.type_hash));
	cfg.type_hash[ZD_TYPE_HASH_SIZE - 1] = 1;
	REQUIRE_OK(zd_segment_create_memory(&cfg, &m));
	CHECK_EQ(zd_segment_type_hash(m, out), 1);
	CHECK_EQ(out[ZD_TYPE_HASH_SIZE - 1], 1);
	zd_segment_close(m);

	/* all zero: no hash, and out is left alone */
	memset(cfg.type_hash, 0, sizeof(cfg.type_hash));
	REQUIRE_OK(zd_segment_create_memory(&cfg, &m));
	memset(out, 0x77, sizeof(out));
	CHECK_EQ(zd_segment_type_hash(m, out), 0);
	CHECK_EQ(out[0], 0x77);
	zd_segment_close(m);
}

static void strerror_covers_codes(void)
{
	static const int codes[] = {
		EINVAL, ENAMETOOLONG, EOVERFLOW, EAGAIN, ETIMEDOUT, EMSGSIZE,
		ERANGE, ESTALE, ENODATA, EBUSY, EUSERS, ENOTCONN, EBADMSG,
		EPROTO, EINPROGRESS, EPIPE, EEXIST, ENOENT, EACCES, ENOSPC,
		ENOMEM, EMFILE, EINTR, ZD_EOWNER,
	};
	const char *unknown = zd_strerror(-123456);

	CHECK(unknown != NULL);
	CHECK(zd_strerror(0) != NULL);
	for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
		const char *m = zd_strerror(-codes[i]);

		CHECK(m != NULL && m[0] != '\0');
		CHECK(m == zd_strerror(codes[i]) ||
		      strcmp(m, zd_strerror(codes[i])) == 0);
		/* every documented code has its own message */
		if (m && unknown && strcmp(m, unknown) == 0)
			zdt_fail(__FILE__, __LINE__, "no message for %s",
				 zdt_errname(-codes[i]));
		for (size_t j = 0; j < i; j++)
			if (m && strcmp(m, zd_strerror(-codes[j])) == 0)
				zdt_fail(__FILE__, __LINE__,
					 "%s and %s share a message",
					 zdt_errname(-codes[i]),
					 zdt_errname(-codes[j]));
	}
}

/* A segment owned by someone else, mode 0600: attach and describe say
 * -EACCES.  As root (who ignores mode bits) the attempt runs in a child
 * that has dropped to uid/gid 65534. */
struct perm_result {
	int attach_rc, describe_rc;
};

static int try_open_as_other(void *arg)
{
	const char *name = arg;
	struct perm_result pr;
	zd_segment_t *a = NULL;
	zd_segment_info_t d;

	if (geteuid() == 0 &&
	    (setgroups(0, NULL) != 0 || setresgid(65534, 65534, 65534) != 0 ||
	     setresuid(65534, 65534, 65534) != 0))
		return 10;
	pr.attach_rc = zd_segment_attach_posix(name, &a);
	pr.describe_rc = zd_segment_describe_posix(name, &d);
	if (a)
		zd_segment_close(a);
	return (pr.attach_rc == -EACCES ? 0 : 1) |
	       (pr.describe_rc == -EACCES ? 0 : 2);
}

static void attach_without_permission(void)
{
	char name[64], path[512];
	zd_config_t cfg = zdt_cfg(1, 8);
	zd_segment_t *seg = NULL;
	int st;

	REQUIRE_OK(zd_segment_create_posix(zdt_unique_name(name), &cfg, &seg));
	REQUIRE(zdt_shm_path(path, sizeof(path), name));
	if (geteuid() != 0)
		REQUIRE(chmod(path, 0) == 0); /* we own it: take our rights */
	st = zdt_wait(zdt_fork(try_open_as_other, name));
	if (st != 0)
		zdt_fail(__FILE__, __LINE__,
			 "attach/describe without permission: child status %d "
			 "(1: attach was not -EACCES, 2: describe was not "
			 "-EACCES, 10: could not drop privileges)", st);
	zdt_count();
	/* the owner is unaffected */
	{
		zd_segment_info_t d;

		if (geteuid() != 0)
			REQUIRE(chmod(path, 0600) == 0);
		CHECK_OK(zd_segment_describe_posix(name, &d));
	}
	zd_segment_close(seg);
	CHECK_OK(zd_segment_unlink_posix(name));
}

/* ------------------------------------------------------------------ */
/* Owner policy and describe without a mapping                        */

static int attach_rc(const char *name, zd_attach_opts_t *opts)
{
	zd_segment_t *h = NULL;
	int rc = zd_segment_attach_posix_opts(name, opts, &h);

	if (h != NULL)
		zd_segment_close(h);
	return rc;
}

/* The default policy takes our own objects without group/other write
 * bits; ZD_ATTACH_ALLOW_UID and ZD_ATTACH_ANY_OWNER widen it; the refusal
 * reports the owner and the mode; attach_fd applies no policy. */
static void owner_policy(void)
{
	char name[64], path[512];
	zd_config_t cfg = zdt_cfg(2, 64);
	zd_segment_t *seg = NULL, *h = NULL;
	zd_segment_info_t info;
	zd_attach_opts_t o;
	uint32_t me = (uint32_t)geteuid();
	int fd;

	cfg.mode = 0666;
	REQUIRE_OK(zd_segment_create_posix(zdt_unique_name(name), &cfg, &seg));
	REQUIRE(zdt_shm_path(path, sizeof(path), name));
	memset(&o, 0, sizeof(o));
	CHECK_RC(attach_rc(name, NULL), -ZD_EOWNER);
	CHECK_RC(attach_rc(name, &o), -ZD_EOWNER);
	CHECK_EQ(o.found_uid, me);
	CHECK_EQ(o.found_mode, 0666u);
	CHECK_RC(zd_segment_describe_posix(name, &info), -ZD_EOWNER);
	o = (zd_attach_opts_t){.flags = ZD_ATTACH_ALLOW_UID, .allow_uid = me};
	CHECK_OK(attach_rc(name, &o));
	CHECK_OK(zd_segment_describe_posix_opts(name, &o, &info));
	o = (zd_attach_opts_t){.flags = ZD_ATTACH_ANY_OWNER};
	CHECK_OK(attach_rc(name, &o));
	o = (zd_attach_opts_t){.flags = 4};
	CHECK_RC(attach_rc(name, &o), -EINVAL);
	CHECK_RC(zd_segment_describe_posix_opts(name, &o, &info), -EINVAL);
	REQUIRE(chmod(path, 0644) == 0);
	CHECK_OK(attach_rc(name, NULL));
	CHECK_OK(zd_segment_describe_posix(name, &info));
	REQUIRE(chmod(path, 0620) == 0);        /* group write alone */
	CHECK_RC(attach_rc(name, NULL), -ZD_EOWNER);
	if (me == 0) {
		/* Root can give it away: another owner, a mode without
		 * write bits, is refused by default all the same. */
		REQUIRE(chown(path, 65534, 65534) == 0);
		REQUIRE(chmod(path, 0600) == 0);
		memset(&o, 0, sizeof(o));
		CHECK_RC(attach_rc(name, &o), -ZD_EOWNER);
		CHECK_EQ(o.found_uid, 65534u);
		CHECK_EQ(o.found_mode, 0600u);
		o = (zd_attach_opts_t){.flags = ZD_ATTACH_ALLOW_UID, .allow_uid = 12345};
		CHECK_RC(attach_rc(name, &o), -ZD_EOWNER);
		o = (zd_attach_opts_t){.flags = ZD_ATTACH_ALLOW_UID, .allow_uid = 65534};
		CHECK_OK(attach_rc(name, &o));
		CHECK_OK(zd_segment_describe_posix_opts(name, &o, &info));
		CHECK_EQ(info.geo.slot_count, 2u);
	}
	fd = open(path, O_RDWR | O_CLOEXEC);
	REQUIRE(fd >= 0);
	CHECK_OK(zd_segment_attach_fd(fd, &h));
	if (h != NULL)
		zd_segment_close(h);
	close(fd);
	zd_segment_close(seg);
	CHECK_OK(zd_segment_unlink_posix(name));
}

/* Describe reads with pread and maps nothing: an object cut short, emptied
 * or grown under a live segment's name is an error code, never SIGBUS. */
static void describe_truncated_is_an_error(void)
{
	char name[64], path[512];
	zd_config_t cfg = zdt_cfg(2, 64);
	zd_segment_t *seg = NULL;
	zd_segment_info_t info;
	uint64_t total;
	uint8_t *saved;
	int fd;

	REQUIRE_OK(zd_segment_create_posix(zdt_unique_name(name), &cfg, &seg));
	REQUIRE(zdt_shm_path(path, sizeof(path), name));
	total = zd_segment_total_size(seg);
	saved = malloc(total);
	REQUIRE(saved != NULL);
	fd = open(path, O_RDWR | O_CLOEXEC);
	REQUIRE(fd >= 0);
	REQUIRE(pread(fd, saved, total, 0) == (ssize_t)total);

	REQUIRE(ftruncate(fd, 1000) == 0);      /* the header, part of a table */
	CHECK_RC(zd_segment_describe_posix(name, &info), -EBADMSG);
	CHECK_RC(attach_rc(name, NULL), -EBADMSG);
	CHECK_RC(zd_segment_unlink_stale_posix(name), -EBADMSG);
	REQUIRE(ftruncate(fd, 100) == 0);       /* less than a header */
	CHECK_RC(zd_segment_describe_posix(name, &info), -EBADMSG);
	REQUIRE(ftruncate(fd, 0) == 0);
	CHECK_RC(zd_segment_describe_posix(name, &info), -EINPROGRESS);
	REQUIRE(ftruncate(fd, (off_t)1 << 40) == 0);    /* sparse, huge */
	CHECK_RC(zd_segment_describe_posix(name, &info), -EINPROGRESS);
	REQUIRE(pwrite(fd, saved, total, 0) == (ssize_t)total);
	CHECK_RC(zd_segment_describe_posix(name, &info), -EBADMSG);
	CHECK_RC(attach_rc(name, NULL), -EBADMSG);
	REQUIRE(ftruncate(fd, (off_t)total) == 0);      /* as it was */
	CHECK_OK(zd_segment_describe_posix(name, &info));
	CHECK_EQ(info.creator_alive, 1u);
	CHECK_EQ(info.geo.slot_count, 2u);
	close(fd);
	free(saved);
	zd_segment_close(seg);                  /* its mapping is whole again */
	CHECK_OK(zd_segment_unlink_posix(name));
}

struct flipper {
	const char *path;
	const uint8_t *image;
	size_t size;
};

/* Cycles the planted object through empty, valid, huge, cut short. */
static int flip_sizes(void *arg)
{
	const struct flipper *f = arg;
	int fd = open(f->path, O_RDWR | O_CLOEXEC);

	if (fd < 0)
		return 20;
	for (;;) {
		if (ftruncate(fd, 0) != 0 || ftruncate(fd, (off_t)f->size) != 0 ||
		    pwrite(fd, f->image, f->size, 0) != (ssize_t)f->size ||
		    ftruncate(fd, (off_t)1 << 40) != 0 ||
		    ftruncate(fd, (off_t)f->size) != 0 ||
		    pwrite(fd, f->image, f->size, 0) != (ssize_t)f->size ||
		    ftruncate(fd, 4096) != 0)
			return 21;
	}
}

/* A child keeps changing a planted object's size while describe and the
 * stale check read it: each call returns a code, the process survives. */
static void describe_races_truncation(void)
{
	char ref[64], name[64], path[512];
	zd_config_t cfg = zdt_cfg(2, 64);
	zd_segment_t *seg = NULL;
	zd_segment_info_t info;
	struct flipper f;
	unsigned ok = 0, bad = 0, other = 0;
	uint8_t *image;
	pid_t pid;
	int fd;

	/* The image of a valid segment whose creator is gone. */
	REQUIRE_OK(zd_segment_create_posix(zdt_unique_name(ref), &cfg, &seg));
	f.size = (size_t)zd_segment_total_size(seg);
	image = malloc(f.size);
	REQUIRE(image != NULL);
	REQUIRE(zdt_shm_path(path, sizeof(path), ref));
	fd = open(path, O_RDONLY | O_CLOEXEC);
	REQUIRE(fd >= 0);
	REQUIRE(pread(fd, image, f.size, 0) == (ssize_t)f.size);
	close(fd);
	zd_segment_close(seg);
	CHECK_OK(zd_segment_unlink_posix(ref));

	REQUIRE(zdt_shm_path(path, sizeof(path), zdt_unique_name(name)));
	fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	REQUIRE(fd >= 0);
	close(fd);
	f.path = path;
	f.image = image;
	pid = zdt_fork(flip_sizes, &f);
	for (int i = 0; i < 2000; i++) {
		int rc = zd_segment_describe_posix(name, &info);

		if (rc == 0)
			ok++;
		else if (rc == -EBADMSG || rc == -EINPROGRESS)
			bad++;
		else
			other++;
		rc = zd_segment_unlink_stale_posix(name);
		if (rc != -EBADMSG && rc != -EINPROGRESS && rc != -EBUSY &&
		    rc != 0)
			other++;
		if (rc == 0)
			break;          /* a valid stale image: removed */
	}
	kill(pid, SIGKILL);
	CHECK_EQ(zdt_wait(pid), 128 + SIGKILL);
	CHECK_EQ(other, 0u);
	CHECK_GT(ok + bad, 0u);
	zdt_unlink_raw(name);
	free(image);
}

/* zd_segment_goodbye: readers of other handles drain and end while the
 * creator's handle stays mapped and usable for its close. */
static void goodbye_before_close(zdt_ctx_t *c)
{
	zd_segment_t *att = zdt_attach(c);
	zd_segment_info_t i;
	zd_reader_t r;
	zd_view_t v;
	uint32_t s;

	REQUIRE_OK(zd_reader_open(att, 0, &r));
	REQUIRE_OK(zd_slot_reserve(c->seg, zd_segment_active_mask(c->seg), &s));
	CHECK_OK(zd_slot_commit(c->seg, s, "end", 3, NULL));
	CHECK_OK(zd_segment_goodbye(att));          /* not the creator: nothing */
	CHECK_OK(zd_segment_info(att, &i));
	CHECK_EQ(i.goodbye, 0);
	CHECK_OK(zd_segment_goodbye(c->seg));
	CHECK_OK(zd_segment_info(att, &i));
	CHECK_EQ(i.goodbye, 1);
	CHECK_OK(zd_reader_take(att, &r, &v));
	CHECK_EQ(v.size, 3);
	CHECK_OK(zd_slot_release(att, &v));
	CHECK_RC(zd_reader_take(att, &r, &v), -EPIPE);
	/* the creator's handle is still mapped: its info works */
	CHECK_OK(zd_segment_info(c->seg, &i));
	CHECK_EQ(i.readers_active, 1);
}

/* zd_segment_detach: everything of close but the unmap. */
static void detach_keeps_mapping(zdt_ctx_t *c)
{
	zd_segment_t *att = zdt_attach(c);
	zd_segment_info_t i;
	zd_reader_t mine, theirs;
	uint32_t loan, committed;
	void *data = NULL;
	uint64_t cap = 0;

	REQUIRE_OK(zd_reader_open(c->seg, 0, &mine));
	REQUIRE_OK(zd_reader_open(att, 0, &theirs));
	REQUIRE_OK(zd_slot_reserve(c->seg, 0, &committed));
	REQUIRE_OK(zd_slot_data_ptr(c->seg, committed, &data, &cap, NULL));
	memcpy(data, "kept", 4);
	CHECK_OK(zd_slot_commit_in_place(c->seg, committed, 4, NULL));
	REQUIRE_OK(zd_slot_reserve(c->seg, 0, &loan));
	CHECK_OK(zd_segment_detach(c->seg));
	CHECK_OK(zd_segment_info(att, &i));
	CHECK_EQ(i.goodbye, 1);
	CHECK_EQ(i.active_mask, (uint64_t)1 << theirs.index);   /* mine is gone */
	CHECK_EQ(zd_slot_state(att, loan), 0);                   /* discarded */
	CHECK_EQ(zd_slot_state(att, committed), 2);
	/* still mapped: the producer's pointer into its committed slot reads */
	CHECK(memcmp(data, "kept", 4) == 0);
	CHECK_OK(zd_segment_detach(c->seg));                     /* idempotent */
	CHECK_OK(zd_reader_close(att, &theirs));
}

static zd_segment_t *inherited;

/* In a fork child: end the inherited creator handle the way a finaliser
 * of an inherited object must. */
static int abandon_in_child(void *arg)
{
	(void)arg;
	return zd_segment_abandon(inherited) == 0 ? 0 : 1;
}

/* zd_segment_abandon in a fork child changes nothing the parent owns: no
 * goodbye, its reader and attachment stay registered and locked (a reap by
 * another handle finds nothing), its loan stays loaned. */
static void abandon_in_fork_child(zdt_ctx_t *c)
{
	/* memory: the child's copy is private; the parent's handle reaps */
	zd_segment_t *att = c->backend == ZD_BACKEND_POSIX ? zdt_attach(c) : c->seg;
	zd_segment_info_t before, after;
	zd_reader_t r;
	uint32_t loan, reaped_r = 9, reaped_l = 9;

	REQUIRE_OK(zd_reader_open(c->seg, 0, &r));
	REQUIRE_OK(zd_slot_reserve(c->seg, 0, &loan));
	CHECK_OK(zd_segment_info(c->seg, &before));
	inherited = c->seg;
	CHECK_EQ(zdt_wait(zdt_fork(abandon_in_child, NULL)), 0);
	CHECK_OK(zd_segment_reap(att, &reaped_r, &reaped_l));
	CHECK_EQ(reaped_r, 0);
	CHECK_EQ(reaped_l, 0);
	CHECK_OK(zd_segment_info(att, &after));
	CHECK_EQ(after.goodbye, 0);
	CHECK_EQ(after.active_mask, before.active_mask);
	CHECK_EQ(zd_slot_state(c->seg, loan), 1);   /* still loaned */
	CHECK_OK(zd_slot_discard(c->seg, loan));
	CHECK_OK(zd_reader_close(c->seg, &r));
}

static char disown_name[64];
static int disown_pipe[2];

/* The grandchild: disowns the inherited handle, then outlives its parent. */
static int disown_and_linger(void *arg)
{
	zd_segment_t *seg = arg;
	pid_t me = getpid();

	zd_segment_disown(seg);
	if (write(disown_pipe[1], &me, sizeof(me)) != (ssize_t)sizeof(me))
		return 1;
	sleep(30);
	return 0;
}

/* The child: registers a reader, forks the grandchild, and dies. */
static int register_fork_and_die(void *arg)
{
	zd_segment_t *seg = NULL;
	zd_reader_t r;

	(void)arg;
	if (zd_segment_attach_posix(disown_name, &seg) != 0 ||
	    zd_reader_open(seg, 0, &r) != 0)
		return 1;
	zdt_fork(disown_and_linger, seg);
	return 0;                  /* _exit with the reader registered */
}

/* A fork child that disowned its inherited handle does not keep the dead
 * owner's reader alive: the next reap finds it.  The inherited mapping
 * still reads the segment. */
static void disown_lets_owner_die(zdt_ctx_t *c)
{
	uint32_t reaped = 0;
	pid_t grandchild = 0;

	snprintf(disown_name, sizeof(disown_name), "%s", c->name);
	REQUIRE(pipe(disown_pipe) == 0);
	CHECK_EQ(zdt_wait(zdt_fork(register_fork_and_die, NULL)), 0);
	CHECK_EQ(read(disown_pipe[0], &grandchild, sizeof(grandchild)),
		 (ssize_t)sizeof(grandchild));          /* disowned, still alive */
	CHECK_EQ(kill(grandchild, 0), 0);
	CHECK_NE(zd_segment_active_mask(c->seg), 0);
	CHECK_OK(zd_segment_reap(c->seg, &reaped, NULL));
	CHECK_EQ(reaped, 1);
	CHECK_EQ(zd_segment_active_mask(c->seg), 0);
	if (grandchild > 0)
		kill(grandchild, SIGKILL);   /* not our child: init reaps it */
	close(disown_pipe[0]);
	close(disown_pipe[1]);
}

int main(void)
{
	zd_config_t c3 = zdt_cfg(3, 1000);
	zd_config_t c2 = zdt_cfg(2, 64);

	zdt_case("bad_names_are_rejected", bad_names_are_rejected);
	zdt_case("good_names_work", good_names_work);
	zdt_case("bad_configs_are_rejected", bad_configs_are_rejected);
	zdt_case("huge_geometry_fails_cleanly", huge_geometry_fails_cleanly);
	zdt_run_posix("create_twice_is_eexist", &c2, create_twice_is_eexist);
	zdt_case("attach_missing_is_enoent", attach_missing_is_enoent);
	zdt_run_both("info_and_describe", &c3, info_and_describe);
	zdt_run_posix("describe_does_not_attach", &c2, describe_does_not_attach);
	zdt_run_posix("unlink_keeps_mappings", &c2, unlink_keeps_mappings);
	zdt_run_posix("goodbye_when_creator_closes", &c2,
		      goodbye_when_creator_closes);
	zdt_run_posix("close_discards_loans_and_views", &c2,
		      close_discards_loans_and_views);
	zdt_run_posix("goodbye_wakes_waiting_reader", &c2,
		      goodbye_wakes_waiting_reader);
	zdt_run_posix("goodbye_before_close", &c2, goodbye_before_close);
	zdt_run_both("abandon_in_fork_child", &c2, abandon_in_fork_child);
	zdt_run_posix("detach_keeps_mapping", &c2, detach_keeps_mapping);
	zdt_run_posix("disown_lets_owner_die", &c2, disown_lets_owner_die);
	zdt_case("type_hash_round_trip", type_hash_round_trip);
	zdt_case("strerror_covers_codes", strerror_covers_codes);
	zdt_case("attach_without_permission", attach_without_permission);
	zdt_case("owner_policy", owner_policy);
	zdt_case("describe_truncated_is_an_error", describe_truncated_is_an_error);
	zdt_case("describe_races_truncation", describe_races_truncation);
	return zdt_finish();
}
