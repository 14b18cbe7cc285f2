/* test_seed_posix.c — the `mod tests` block of zerodds-flatdata's
 * PosixSlotAllocator (seeds/zerodds-flatdata_posix.rs.txt), ported.
 *
 * The seed's "owner" is the creating handle and its "consumer" an attached
 * handle of the same name: two mappings of one object in one process, which
 * is the cross-process case as far as the memory is concerned.  Unlike the
 * seed, the consumer may write too (requirement 2.1), so the ports also
 * check the other direction.
 */
#include "zdtest.h"

static void create_attach_roundtrip(zdt_ctx_t *c)
{
	zd_segment_t *consumer = zdt_attach(c);
	uint8_t h[ZD_TYPE_HASH_SIZE];

	CHECK_EQ(zd_segment_slot_count(c->seg), 4);
	CHECK_EQ(zd_segment_slot_count(consumer), 4);
	CHECK_EQ(zd_segment_slot_capacity(consumer), 64);
	/* 128 + 64 = 192, already a multiple of 64 */
	CHECK_EQ(zd_segment_slot_total_size(c->seg), 192);
	CHECK_EQ(zd_segment_slot_total_size(consumer), 192);
	CHECK_EQ(zd_segment_total_size(consumer), zd_segment_total_size(c->seg));
	CHECK_EQ(zd_segment_backend(consumer), ZD_BACKEND_POSIX);
	CHECK(strcmp(zd_segment_name(consumer), c->name) == 0);
	CHECK(strcmp(zd_segment_name(c->seg), c->name) == 0);
	CHECK_EQ(zd_segment_is_creator(c->seg), 1);
	CHECK_EQ(zd_segment_is_creator(consumer), 0);
	CHECK_EQ(zd_segment_type_hash(consumer, h), 0);
	/* two different mappings */
	{
		uint32_t s;
		void *d1 = NULL;
		zd_view_t v;

		REQUIRE_OK(zd_slot_reserve(c->seg, 0, &s));
		REQUIRE_OK(zd_slot_data_ptr(c->seg, s, &d1, NULL, NULL));
		CHECK_OK(zd_slot_commit_in_place(c->seg, s, 0, NULL));
		REQUIRE_OK(zd_slot_acquire(consumer, s, &v));
		CHECK(v.data != d1);
		CHECK_OK(zd_slot_release(consumer, &v));
	}
}

struct commit_later {
	zd_segment_t *seg;
	int rc_reserve, rc_commit;
};

static void *commit_after_50ms(void *arg)
{
	struct commit_later *a = arg;
	uint32_t s;

	zdt_sleep_ms(50);
	a->rc_reserve = zd_slot_reserve(a->seg, 0x1, &s);
	if (a->rc_reserve == 0)
		a->rc_commit = zd_slot_commit(a->seg, s, "\1\2\3\4", 4, NULL);
	return NULL;
}

static void futex_notify_wakes_consumer_across_mappings(zdt_ctx_t *c)
{
	zd_segment_t *consumer = zdt_attach(c);
	struct commit_later a = { c->seg, -1, -1 };
	pthread_t th;
	uint64_t g0, t0, waited;
	int rc;

	g0 = zd_notify_generation(consumer);
	CHECK_EQ(zd_notify_generation(c->seg), g0);
	REQUIRE(pthread_create(&th, NULL, commit_after_50ms, &a) == 0);
	t0 = zdt_now_ns();
	do {
		/* wake-ups are hints: re-wait until the generation moved */
		rc = zd_notify_wait_for(consumer, g0, 5 * ZDT_S);
	} while (rc == 0 && zd_notify_generation(consumer) == g0 &&
		 zdt_now_ns() - t0 < 5 * ZDT_S);
	waited = zdt_now_ns() - t0;
	pthread_join(th, NULL);
	CHECK_OK(rc);
	CHECK_OK(a.rc_reserve);
	CHECK_OK(a.rc_commit);
	CHECK_LT(waited, 2 * ZDT_S);
	/* it did wait for the commit (the wait did not return at once) */
	CHECK_GE(waited, 40 * ZDT_MS);
	CHECK_NE(zd_notify_generation(consumer), g0);
	CHECK_EQ(zd_notify_generation(consumer), zd_notify_generation(c->seg));
}

static void check_mode(const char *name, unsigned want)
{
	char path[512];
	struct stat st;

	REQUIRE(zdt_shm_path(path, sizeof(path), name));
	REQUIRE(stat(path, &st) == 0);
	CHECK_EQ(st.st_mode & 07777, want);
	CHECK_EQ(st.st_uid, getuid());
}

static void segment_is_owner_only_0600(zdt_ctx_t *c)
{
	zd_config_t cfg = c->cfg;
	char n1[64], n2[64], n3[64];
	zd_segment_t *s1 = NULL, *s2 = NULL, *s3 = NULL;
	mode_t old;

	check_mode(c->name, 0600);

	/* the umask does not matter: 0 would give 0666 to a plain open */
	old = umask(0);
	CHECK_OK(zd_segment_create_posix(zdt_unique_name(n1), &cfg, &s1));
	umask(old);
	if (s1)
		check_mode(n1, 0600);

	/* an explicit mode is applied exactly, whatever the umask */
	cfg.mode = 0640;
	old = umask(0077);
	CHECK_OK(zd_segment_create_posix(zdt_unique_name(n2), &cfg, &s2));
	umask(old);
	if (s2)
		check_mode(n2, 0640);
	old = umask(0);
	CHECK_OK(zd_segment_create_posix(zdt_unique_name(n3), &cfg, &s3));
	umask(old);
	if (s3)
		check_mode(n3, 0640);

	if (s1)
		zd_segment_close(s1);
	if (s2)
		zd_segment_close(s2);
	if (s3)
		zd_segment_close(s3);
	CHECK_OK(zd_segment_unlink_posix(n1));
	CHECK_OK(zd_segment_unlink_posix(n2));
	CHECK_OK(zd_segment_unlink_posix(n3));
}

static void write_read_through_shm(zdt_ctx_t *c)
{
	zd_segment_t *consumer = zdt_attach(c);
	zd_slot_header_t hdr;
	unsigned char buf[64] = { 0 };
	uint64_t copied = 0, sn = 77;
	uint32_t s;

	REQUIRE_OK(zd_slot_reserve(c->seg, 0x1, &s));
	CHECK_OK(zd_slot_commit(c->seg, s, "\1\2\3\4", 4, &sn));
	CHECK_OK(zd_slot_read(consumer, s, &hdr, buf, sizeof(buf), &copied));
	CHECK_EQ(hdr.size, 4);
	CHECK_EQ(hdr.sn, sn);
	CHECK_EQ(copied, 4);
	CHECK(memcmp(buf, "\1\2\3\4", 4) == 0);

	/* the other direction: the consumer writes, the owner reads */
	REQUIRE_OK(zd_slot_reserve(consumer, 0x1, &s));
	CHECK_OK(zd_slot_commit(consumer, s, "\5\6", 2, &sn));
	CHECK_EQ(sn, 1);
	memset(buf, 0, sizeof(buf));
	CHECK_OK(zd_slot_read(c->seg, s, &hdr, buf, sizeof(buf), &copied));
	CHECK_EQ(hdr.size, 2);
	CHECK_EQ(hdr.sn, 1);
	CHECK(memcmp(buf, "\5\6", 2) == 0);
}

static void mark_read_visible_to_owner(zdt_ctx_t *c)
{
	zd_segment_t *consumer = zdt_attach(c);
	zd_slot_header_t hdr;
	uint32_t s, x;

	REQUIRE_OK(zd_slot_reserve(c->seg, 0x3, &s));
	CHECK_OK(zd_slot_commit(c->seg, s, "\xff", 1, NULL));
	CHECK_RC(zd_slot_reserve(c->seg, 0x3, &x), -EAGAIN);
	CHECK_OK(zd_slot_mark_read(consumer, s, 0));
	CHECK_OK(zd_slot_mark_read(consumer, s, 1));
	CHECK_OK(zd_slot_read(c->seg, s, &hdr, NULL, 0, NULL));
	CHECK_EQ(hdr.read_mask, 0x3);
	CHECK_OK(zd_slot_reserve(c->seg, 0x3, &x));
	CHECK_EQ(x, s);
	/* and the consumer sees the owner's loan: it cannot reserve it */
	CHECK_RC(zd_slot_reserve(consumer, 0x3, &x), -EAGAIN);
	CHECK_EQ(zd_slot_state(consumer, s), 1);
	/* but a loan belongs to its handle: the consumer cannot commit it */
	CHECK_RC(zd_slot_commit(consumer, s, "x", 1, NULL), -ESTALE);
	CHECK_RC(zd_slot_discard(consumer, s), -ESTALE);
}

static void next_sn_increments_atomically(zdt_ctx_t *c)
{
	uint32_t s0, s1;
	uint64_t sn0 = 77, sn1 = 77;
	zd_segment_info_t info;

	REQUIRE_OK(zd_slot_reserve(c->seg, 0x1, &s0));
	CHECK_OK(zd_slot_commit(c->seg, s0, "\0", 1, &sn0));
	REQUIRE_OK(zd_slot_reserve(c->seg, 0x1, &s1));
	CHECK_OK(zd_slot_commit(c->seg, s1, "\1", 1, &sn1));
	CHECK_GT(sn1, sn0);
	CHECK_EQ(sn1, sn0 + 1);
	CHECK_OK(zd_segment_info(c->seg, &info));
	CHECK_EQ(info.next_sn, sn1 + 1);
}

/* Stronger than the seed: threads committing through two handles never
 * get the same sequence number, and the numbers used are exactly 0..N-1. */
struct sn_thread {
	zd_segment_t *seg;
	uint64_t sns[2000];
	int n, errors;
};

static void *commit_many(void *arg)
{
	struct sn_thread *t = arg;

	for (int i = 0; i < 2000; i++) {
		uint32_t s;
		int rc;

		while ((rc = zd_slot_reserve(t->seg, 0, &s)) == -EAGAIN)
			sched_yield();
		if (rc != 0 || zd_slot_commit(t->seg, s, "z", 1, &t->sns[t->n]) != 0) {
			t->errors++;
			continue;
		}
		t->n++;
	}
	return NULL;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static void next_sn_unique_across_handles(zdt_ctx_t *c)
{
	zd_segment_t *other = zdt_attach(c);
	static struct sn_thread t[2];
	static uint64_t all[4000];
	pthread_t th[2];
	int n = 0, dups = 0, gaps = 0;

	memset(t, 0, sizeof(t));
	t[0].seg = c->seg;
	t[1].seg = other;
	for (int i = 0; i < 2; i++)
		REQUIRE(pthread_create(&th[i], NULL, commit_many, &t[i]) == 0);
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	CHECK_EQ(t[0].errors, 0);
	CHECK_EQ(t[1].errors, 0);
	for (int i = 0; i < 2; i++)
		for (int j = 0; j < t[i].n; j++)
			all[n++] = t[i].sns[j];
	CHECK_EQ(n, 4000);
	qsort(all, (size_t)n, sizeof(all[0]), cmp_u64);
	for (int i = 0; i < n; i++) {
		if (i > 0 && all[i] == all[i - 1])
			dups++;
		else if (all[i] != (uint64_t)i - (uint64_t)dups)
			gaps++;
	}
	CHECK_EQ(dups, 0);
	CHECK_EQ(gaps, 0);
}

int main(void)
{
	zd_config_t c4 = zdt_cfg(4, 64);
	zd_config_t c1 = zdt_cfg(1, 64);

	zdt_run_posix("create_attach_roundtrip", &c4, create_attach_roundtrip);
	zdt_run_posix("futex_notify_wakes_consumer_across_mappings", &c4,
		      futex_notify_wakes_consumer_across_mappings);
	zdt_run_posix("segment_is_owner_only_0600", &c4,
		      segment_is_owner_only_0600);
	zdt_run_posix("write_read_through_shm", &c4, write_read_through_shm);
	zdt_run_posix("mark_read_visible_to_owner", &c1,
		      mark_read_visible_to_owner);
	zdt_run_posix("next_sn_increments_atomically", &c4,
		      next_sn_increments_atomically);
	zdt_run_posix("next_sn_unique_across_handles", &c4,
		      next_sn_unique_across_handles);
	return zdt_finish();
}
