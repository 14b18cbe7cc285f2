/* test_seed_allocator.c — the `mod tests` block of zerodds-flatdata's
 * InMemorySlotAllocator (seeds/zerodds-flatdata_allocator.rs.txt), ported
 * to the zd_slot_* API and run on both backends.
 *
 * Differences from the seed, by contract (zdshm/slot.h, zdshm/error.h):
 *   - sequence numbers are 64-bit and start at 0;
 *   - NoFreeSlot is -EAGAIN, SampleTooLarge is -EMSGSIZE, and a data
 *     pointer of a slot that is not a live loan is -ESTALE (the seed
 *     said OutOfBounds; ours keeps -ERANGE for a bad index);
 *   - the slot header is ZD_SLOT_HEADER_SIZE (128) bytes, not 16.
 */
#include "zdtest.h"

static void reserve_returns_first_free_slot(zdt_ctx_t *c)
{
	uint32_t s0 = 99, s1 = 99, s2 = 99;

	CHECK_OK(zd_slot_reserve(c->seg, 0, &s0));
	CHECK_EQ(s0, 0);
	CHECK_OK(zd_slot_reserve(c->seg, 0, &s1));
	CHECK_EQ(s1, 1);
	/* lowest free index: after discarding slot 0 it comes back first */
	CHECK_OK(zd_slot_discard(c->seg, s0));
	CHECK_OK(zd_slot_reserve(c->seg, 0, &s2));
	CHECK_EQ(s2, 0);
	CHECK_EQ(zd_slot_state(c->seg, 0), 1);
	CHECK_EQ(zd_slot_state(c->seg, 1), 1);
	CHECK_EQ(zd_slot_state(c->seg, 2), 0);
}

static void reserve_returns_no_free_slot_when_all_loaned(zdt_ctx_t *c)
{
	uint32_t a = 99, b = 99, x = 1234;
	zd_segment_info_t info;

	CHECK_OK(zd_slot_reserve(c->seg, 0, &a));
	CHECK_OK(zd_slot_reserve(c->seg, 0, &b));
	CHECK_NE(a, b);
	CHECK_RC(zd_slot_reserve(c->seg, 0, &x), -EAGAIN);
	CHECK_EQ(x, 1234); /* untouched on failure */
	CHECK_OK(zd_segment_info(c->seg, &info));
	CHECK_EQ(info.counters.loans, 2);
}

static void commit_writes_bytes_and_increments_sn(zdt_ctx_t *c)
{
	static const unsigned char three[3] = { 1, 2, 3 };
	static const unsigned char nine[1] = { 9 };
	uint32_t s = 99, s2 = 99;
	uint64_t sn = 77, sn2 = 77, copied = 0;
	zd_slot_header_t hdr;
	unsigned char buf[64];

	REQUIRE_OK(zd_slot_reserve(c->seg, 0, &s));
	CHECK_OK(zd_slot_commit(c->seg, s, three, sizeof(three), &sn));
	CHECK_EQ(sn, 0);
	CHECK_EQ(zd_slot_state(c->seg, s), 2);
	memset(&hdr, 0xee, sizeof(hdr));
	memset(buf, 0, sizeof(buf));
	CHECK_OK(zd_slot_read(c->seg, s, &hdr, buf, sizeof(buf), &copied));
	CHECK_EQ(hdr.sn, 0);
	CHECK_EQ(hdr.size, 3);
	CHECK_EQ(hdr.read_mask, 0);
	CHECK_EQ(copied, 3);
	CHECK(memcmp(buf, three, 3) == 0);
	/* a short buffer copies only what fits */
	memset(buf, 0, sizeof(buf));
	CHECK_OK(zd_slot_read(c->seg, s, &hdr, buf, 2, &copied));
	CHECK_EQ(copied, 2);
	CHECK_EQ(buf[0], 1);
	CHECK_EQ(buf[1], 2);
	CHECK_EQ(buf[2], 0);

	/* The seed reserves with mask 0, so the committed slot is free again
	 * and the second reserve may reuse it; the sn must still be 1. */
	REQUIRE_OK(zd_slot_reserve(c->seg, 0, &s2));
	CHECK_OK(zd_slot_commit(c->seg, s2, nine, 1, &sn2));
	CHECK_EQ(sn2, 1);
	CHECK_OK(zd_slot_read(c->seg, s2, &hdr, buf, sizeof(buf), &copied));
	CHECK_EQ(hdr.sn, 1);
	CHECK_EQ(hdr.size, 1);
	CHECK_EQ(buf[0], 9);
	/* sn may be NULL */
	REQUIRE_OK(zd_slot_reserve(c->seg, 0, &s2));
	CHECK_OK(zd_slot_commit(c->seg, s2, nine, 1, NULL));
	CHECK_OK(zd_slot_read(c->seg, s2, &hdr, NULL, 0, NULL));
	CHECK_EQ(hdr.sn, 2);
}

static void in_place_loan_writes_without_staging_copy(zdt_ctx_t *c)
{
	uint32_t s = 99, s2 = 99;
	void *data = NULL, *meta = NULL;
	uint64_t cap = 0, sn = 77, copied = 0;
	zd_slot_header_t hdr;
	zd_view_t v;
	unsigned char buf[8] = { 0 };

	REQUIRE_OK(zd_slot_reserve(c->seg, 0, &s));
	REQUIRE_OK(zd_slot_data_ptr(c->seg, s, &data, &cap, &meta));
	REQUIRE(data != NULL);
	CHECK(meta != NULL);
	CHECK_EQ(cap, c->cfg.slot_capacity);
	REQUIRE(cap >= 3);
	((unsigned char *)data)[0] = 1;
	((unsigned char *)data)[1] = 2;
	((unsigned char *)data)[2] = 3;
	if (meta)
		memset(meta, 0x5a, ZD_SLOT_META_SIZE);
	CHECK_OK(zd_slot_commit_in_place(c->seg, s, 3, &sn));
	CHECK_EQ(sn, 0);
	CHECK_OK(zd_slot_read(c->seg, s, &hdr, buf, sizeof(buf), &copied));
	CHECK_EQ(hdr.sn, 0);
	CHECK_EQ(hdr.size, 3);
	CHECK_EQ(copied, 3);
	CHECK(memcmp(buf, "\1\2\3", 3) == 0);
	/* zero copy: the pinned view shows the very bytes written in place,
	 * through the read-only mapping of the same pages */
	REQUIRE_OK(zd_slot_acquire(c->seg, s, &v));
	CHECK(v.data != data);
	CHECK(memcmp(v.data, "\1\2\3", 3) == 0);
	((unsigned char *)data)[0] = 9;
	CHECK_EQ(((const unsigned char *)v.data)[0], 9);
	((unsigned char *)data)[0] = 1;
	CHECK(v.meta == meta);
	CHECK_EQ(v.size, 3);
	CHECK_EQ(v.sn, 0);
	if (v.meta)
		CHECK_EQ(((const unsigned char *)v.meta)[ZD_SLOT_META_SIZE - 1],
			 0x5a);
	CHECK_OK(zd_slot_release(c->seg, &v));
	/* the loan is over */
	CHECK_RC(zd_slot_data_ptr(c->seg, s, &data, &cap, NULL), -ESTALE);
	CHECK_RC(zd_slot_commit_in_place(c->seg, s, 3, NULL), -ESTALE);
	/* the slot is reservable again (mask 0) and the next sn is 1 */
	REQUIRE_OK(zd_slot_reserve(c->seg, 0, &s2));
	sn = 77;
	CHECK_OK(zd_slot_commit_in_place(c->seg, s2, 0, &sn));
	CHECK_EQ(sn, 1);
	CHECK_OK(zd_slot_read(c->seg, s2, &hdr, NULL, 0, NULL));
	CHECK_EQ(hdr.size, 0);
}

static void slot_data_ptr_rejects_unreserved_slot(zdt_ctx_t *c)
{
	void *data = (void *)1;
	uint64_t cap = 5;
	uint32_t s;

	/* slot 0 was never reserved: no live loan */
	CHECK_RC(zd_slot_data_ptr(c->seg, 0, &data, &cap, NULL), -ESTALE);
	CHECK_RC(zd_slot_commit(c->seg, 0, "x", 1, NULL), -ESTALE);
	CHECK_RC(zd_slot_commit_in_place(c->seg, 0, 1, NULL), -ESTALE);
	CHECK_RC(zd_slot_discard(c->seg, 0), -ESTALE);
	/* an index outside the segment is -ERANGE */
	CHECK_RC(zd_slot_data_ptr(c->seg, c->cfg.slot_count, &data, &cap, NULL),
		 -ERANGE);
	CHECK_RC(zd_slot_data_ptr(c->seg, UINT32_MAX, &data, &cap, NULL),
		 -ERANGE);
	CHECK_RC(zd_slot_discard(c->seg, c->cfg.slot_count), -ERANGE);
	CHECK_RC(zd_slot_commit(c->seg, c->cfg.slot_count, "x", 1, NULL),
		 -ERANGE);
	/* committed and discarded slots are not live loans either */
	REQUIRE_OK(zd_slot_reserve(c->seg, 1, &s));
	CHECK_OK(zd_slot_commit(c->seg, s, "x", 1, NULL));
	CHECK_RC(zd_slot_data_ptr(c->seg, s, &data, &cap, NULL), -ESTALE);
	CHECK_RC(zd_slot_discard(c->seg, s), -ESTALE);
	REQUIRE_OK(zd_slot_reserve(c->seg, 1, &s));
	CHECK_OK(zd_slot_discard(c->seg, s));
	CHECK_RC(zd_slot_data_ptr(c->seg, s, &data, &cap, NULL), -ESTALE);
	CHECK_RC(zd_slot_discard(c->seg, s), -ESTALE);
}

static void commit_in_place_too_large(zdt_ctx_t *c)
{
	uint32_t s;
	uint64_t sn = 77;

	REQUIRE_OK(zd_slot_reserve(c->seg, 0, &s));
	CHECK_RC(zd_slot_commit_in_place(c->seg, s, 9, &sn), -EMSGSIZE);
	CHECK_RC(zd_slot_commit_in_place(c->seg, s, UINT64_MAX, &sn), -EMSGSIZE);
	CHECK_EQ(sn, 77);
	/* the loan stays live */
	CHECK_EQ(zd_slot_state(c->seg, s), 1);
	CHECK_OK(zd_slot_commit_in_place(c->seg, s, 8, &sn));
	CHECK_EQ(sn, 0); /* the failed commits consumed no sequence number */
}

static void commit_too_large(zdt_ctx_t *c)
{
	unsigned char big[16] = { 0 };
	uint32_t s;
	uint64_t sn = 77;
	zd_segment_info_t info;

	REQUIRE_OK(zd_slot_reserve(c->seg, 0, &s));
	CHECK_RC(zd_slot_commit(c->seg, s, big, sizeof(big), &sn), -EMSGSIZE);
	CHECK_RC(zd_slot_commit(c->seg, s, big, 9, &sn), -EMSGSIZE);
	CHECK_EQ(sn, 77);
	CHECK_EQ(zd_slot_state(c->seg, s), 1);
	CHECK_OK(zd_segment_info(c->seg, &info));
	CHECK_EQ(info.counters.commits, 0);
	CHECK_EQ(info.next_sn, 0);
	CHECK_OK(zd_slot_commit(c->seg, s, big, 8, &sn));
	CHECK_EQ(sn, 0);
}

static void discard_frees_slot_for_reuse(zdt_ctx_t *c)
{
	uint32_t s = 99, s2 = 99, x;
	zd_segment_info_t info;
	uint64_t sn = 77;

	REQUIRE_OK(zd_slot_reserve(c->seg, 0, &s));
	CHECK_RC(zd_slot_reserve(c->seg, 0, &x), -EAGAIN);
	CHECK_OK(zd_slot_discard(c->seg, s));
	CHECK_EQ(zd_slot_state(c->seg, s), 0);
	CHECK_OK(zd_slot_reserve(c->seg, 0, &s2));
	CHECK_EQ(s2, s);
	/* a discarded loan publishes nothing and consumes no sn */
	CHECK_RC(zd_slot_next_unread(c->seg, 0, &x), -EAGAIN);
	CHECK_OK(zd_slot_commit(c->seg, s2, "a", 1, &sn));
	CHECK_EQ(sn, 0);
	CHECK_OK(zd_segment_info(c->seg, &info));
	CHECK_EQ(info.counters.discards, 1);
	CHECK_EQ(info.counters.loans, 2);
	CHECK_EQ(info.counters.commits, 1);
}

static void slot_recyclable_after_all_readers_marked(zdt_ctx_t *c)
{
	const uint64_t active = 0x3;
	uint32_t s, x, n;
	zd_slot_header_t hdr;

	REQUIRE_OK(zd_slot_reserve(c->seg, active, &s));
	CHECK_OK(zd_slot_commit(c->seg, s, "\xaa", 1, NULL));
	CHECK_RC(zd_slot_reserve(c->seg, active, &x), -EAGAIN);
	CHECK_OK(zd_slot_next_unread(c->seg, 0, &n));
	CHECK_EQ(n, s);
	CHECK_OK(zd_slot_mark_read(c->seg, s, 0));
	CHECK_RC(zd_slot_next_unread(c->seg, 0, &n), -EAGAIN);
	CHECK_OK(zd_slot_next_unread(c->seg, 1, &n));
	CHECK_RC(zd_slot_reserve(c->seg, active, &x), -EAGAIN);
	CHECK_OK(zd_slot_read(c->seg, s, &hdr, NULL, 0, NULL));
	CHECK_EQ(hdr.read_mask, 0x1);
	/* a reader outside the active mask does not hold it */
	CHECK_OK(zd_slot_mark_read(c->seg, s, 1));
	CHECK_OK(zd_slot_read(c->seg, s, &hdr, NULL, 0, NULL));
	CHECK_EQ(hdr.read_mask, 0x3);
	CHECK_OK(zd_slot_reserve(c->seg, active, &x));
	CHECK_EQ(x, s);
	/* mark_read on a slot that is not committed, or a bad index */
	CHECK_RC(zd_slot_mark_read(c->seg, s, 0), -ENODATA);
	CHECK_RC(zd_slot_mark_read(c->seg, c->cfg.slot_count, 0), -ERANGE);
	CHECK_RC(zd_slot_mark_read(c->seg, s, ZD_READER_MAX), -ERANGE);
	CHECK_RC(zd_slot_next_unread(c->seg, ZD_READER_MAX, &n), -ERANGE);
}

static void slot_total_size_is_cache_line_padded(zdt_ctx_t *c)
{
	/* 128 + 100 = 228 -> 256 */
	CHECK_EQ(zd_segment_slot_total_size(c->seg), 256);
	CHECK_EQ(zd_segment_slot_capacity(c->seg), 100);
	CHECK_EQ(zd_segment_slot_count(c->seg), 4);
	CHECK_GE(zd_segment_total_size(c->seg), 4u * 256u);
}

static void slot_total_size_other_capacities(void)
{
	static const struct {
		uint64_t cap, stride;
	} t[] = {
		{ 1, 192 }, { 63, 192 }, { 64, 192 }, { 65, 256 },
		{ 128, 256 }, { 129, 320 }, { 4096, 4224 },
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		zd_config_t cfg = zdt_cfg(2, t[i].cap);
		zd_segment_t *seg = NULL;

		REQUIRE_OK(zd_segment_create_memory(&cfg, &seg));
		CHECK_EQ(zd_segment_slot_total_size(seg), t[i].stride);
		CHECK_EQ(zd_segment_slot_total_size(seg) % 64, 0);
		zd_segment_close(seg);
	}
}

static void evict_stale_frees_slot_held_by_hung_reader(zdt_ctx_t *c)
{
	const uint64_t active = 0x1;
	uint32_t s, x, ev = 99;
	zd_view_t v;
	zd_segment_info_t info;

	REQUIRE_OK(zd_slot_reserve(c->seg, active, &s));
	CHECK_OK(zd_slot_commit(c->seg, s, "\xaa", 1, NULL));
	CHECK_RC(zd_slot_reserve(c->seg, active, &x), -EAGAIN);
	/* a far deadline evicts nothing */
	CHECK_OK(zd_slot_evict_stale(c->seg, 3600ull * ZDT_S, active, &ev));
	CHECK_EQ(ev, 0);
	CHECK_RC(zd_slot_reserve(c->seg, active, &x), -EAGAIN);
	/* with the clock: one ns short of max_age keeps it, max_age frees it */
	REQUIRE_OK(zd_slot_acquire(c->seg, s, &v));
	CHECK_OK(zd_slot_release(c->seg, &v));
	ev = 99;
	CHECK_OK(zd_slot_evict_stale_at(c->seg, v.commit_ns + 999, 1000, active,
					&ev));
	CHECK_EQ(ev, 0);
	CHECK_EQ(zd_slot_state(c->seg, s), 2);
	/* a pinned slot is never evicted */
	REQUIRE_OK(zd_slot_acquire(c->seg, s, &v));
	ev = 99;
	CHECK_OK(zd_slot_evict_stale(c->seg, 0, active, &ev));
	CHECK_EQ(ev, 0);
	CHECK_EQ(zd_slot_state(c->seg, s), 2);
	CHECK_OK(zd_slot_release(c->seg, &v));
	/* zero max age: everything is old enough */
	ev = 99;
	CHECK_OK(zd_slot_evict_stale(c->seg, 0, active, &ev));
	CHECK_EQ(ev, 1);
	CHECK_RC(zd_slot_acquire(c->seg, s, &v), -ENODATA);
	CHECK_OK(zd_segment_info(c->seg, &info));
	CHECK_EQ(info.counters.evictions, 1);
	CHECK_OK(zd_slot_reserve(c->seg, active, &x));
	CHECK_EQ(x, s);
	/* evicted may be NULL */
	CHECK_OK(zd_slot_commit(c->seg, x, "b", 1, NULL));
	CHECK_OK(zd_slot_evict_stale(c->seg, 0, active, NULL));
	CHECK_EQ(zd_slot_state(c->seg, x), 0);
}

static void evict_stale_leaves_read_slots_untouched(zdt_ctx_t *c)
{
	const uint64_t active = 0x1;
	uint32_t s, ev = 99;
	zd_slot_header_t hdr;
	unsigned char b = 0;

	REQUIRE_OK(zd_slot_reserve(c->seg, active, &s));
	CHECK_OK(zd_slot_commit(c->seg, s, "\xaa", 1, NULL));
	CHECK_OK(zd_slot_mark_read(c->seg, s, 0));
	CHECK_OK(zd_slot_evict_stale(c->seg, 0, active, &ev));
	CHECK_EQ(ev, 0);
	/* still committed and readable */
	CHECK_EQ(zd_slot_state(c->seg, s), 2);
	CHECK_OK(zd_slot_read(c->seg, s, &hdr, &b, 1, NULL));
	CHECK_EQ(b, 0xaa);
}

static void reader_disconnect_frees_blocked_slots(zdt_ctx_t *c)
{
	const uint64_t active = 0x3;
	uint32_t s, x;
	zd_slot_header_t hdr;

	REQUIRE_OK(zd_slot_reserve(c->seg, active, &s));
	CHECK_OK(zd_slot_commit(c->seg, s, "\xaa", 1, NULL));
	CHECK_OK(zd_slot_mark_read(c->seg, s, 0));
	CHECK_RC(zd_slot_reserve(c->seg, active, &x), -EAGAIN);
	CHECK_OK(zd_slot_mark_reader_disconnected(c->seg, 1));
	CHECK_OK(zd_slot_read(c->seg, s, &hdr, NULL, 0, NULL));
	CHECK_EQ(hdr.read_mask, 0x3);
	CHECK_OK(zd_slot_reserve(c->seg, active, &x));
	CHECK_EQ(x, s);
	CHECK_RC(zd_slot_mark_reader_disconnected(c->seg, ZD_READER_MAX),
		 -ERANGE);
}

/* Views of one handle nest: each acquire needs its own release, and one
 * release too many is -ESTALE. */
static void acquire_release_nest(zdt_ctx_t *c)
{
	zd_view_t a, b, bogus;
	uint32_t s, x;

	REQUIRE_OK(zd_slot_reserve(c->seg, 0, &s));
	CHECK_OK(zd_slot_commit(c->seg, s, "n", 1, NULL));
	REQUIRE_OK(zd_slot_acquire(c->seg, s, &a));
	REQUIRE_OK(zd_slot_acquire(c->seg, s, &b));
	CHECK_EQ(a.reader, -1);
	CHECK_EQ(a.version, b.version);
	CHECK_OK(zd_slot_release(c->seg, &a));
	/* still pinned by b: not reservable (slot count 1) */
	CHECK_RC(zd_slot_reserve(c->seg, 0, &x), -EAGAIN);
	CHECK_OK(zd_slot_release(c->seg, &b));
	CHECK_RC(zd_slot_release(c->seg, &b), -ESTALE);
	/* a view from an older version of the slot is stale */
	REQUIRE_OK(zd_slot_reserve(c->seg, 0, &x));
	CHECK_OK(zd_slot_commit(c->seg, x, "m", 1, NULL));
	REQUIRE_OK(zd_slot_acquire(c->seg, x, &bogus));
	CHECK_NE(bogus.version, a.version);
	CHECK_RC(zd_slot_release(c->seg, &a), -ESTALE);
	CHECK_OK(zd_slot_release(c->seg, &bogus));
	/* bad indices */
	bogus.slot = c->cfg.slot_count;
	CHECK_RC(zd_slot_release(c->seg, &bogus), -ERANGE);
	CHECK_RC(zd_slot_acquire(c->seg, c->cfg.slot_count, &bogus), -ERANGE);
	CHECK_RC(zd_slot_read(c->seg, c->cfg.slot_count, NULL, NULL, 0, NULL),
		 -ERANGE);
	CHECK_EQ(zd_slot_state(c->seg, c->cfg.slot_count), -ERANGE);
}

int main(void)
{
	zd_config_t c4x64 = zdt_cfg(4, 64);
	zd_config_t c2x64 = zdt_cfg(2, 64);
	zd_config_t c2x8 = zdt_cfg(2, 8);
	zd_config_t c1x64 = zdt_cfg(1, 64);
	zd_config_t c4x100 = zdt_cfg(4, 100);

	zdt_run_both("reserve_returns_first_free_slot", &c4x64,
		     reserve_returns_first_free_slot);
	zdt_run_both("reserve_returns_no_free_slot_when_all_loaned", &c2x64,
		     reserve_returns_no_free_slot_when_all_loaned);
	zdt_run_both("commit_writes_bytes_and_increments_sn", &c2x64,
		     commit_writes_bytes_and_increments_sn);
	zdt_run_both("in_place_loan_writes_without_staging_copy", &c2x64,
		     in_place_loan_writes_without_staging_copy);
	zdt_run_both("slot_data_ptr_rejects_unreserved_slot", &c2x64,
		     slot_data_ptr_rejects_unreserved_slot);
	zdt_run_both("commit_in_place_too_large", &c2x8,
		     commit_in_place_too_large);
	zdt_run_both("commit_too_large", &c2x8, commit_too_large);
	zdt_run_both("discard_frees_slot_for_reuse", &c1x64,
		     discard_frees_slot_for_reuse);
	zdt_run_both("slot_recyclable_after_all_readers_marked", &c1x64,
		     slot_recyclable_after_all_readers_marked);
	zdt_run_both("slot_total_size_is_cache_line_padded", &c4x100,
		     slot_total_size_is_cache_line_padded);
	zdt_case("slot_total_size_other_capacities",
		 slot_total_size_other_capacities);
	zdt_run_both("evict_stale_frees_slot_held_by_hung_reader", &c1x64,
		     evict_stale_frees_slot_held_by_hung_reader);
	zdt_run_both("evict_stale_leaves_read_slots_untouched", &c1x64,
		     evict_stale_leaves_read_slots_untouched);
	zdt_run_both("reader_disconnect_frees_blocked_slots", &c1x64,
		     reader_disconnect_frees_blocked_slots);
	zdt_run_both("acquire_release_nest", &c1x64, acquire_release_nest);
	return zdt_finish();
}
