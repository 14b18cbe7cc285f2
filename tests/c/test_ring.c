/* test_ring.c — hostile words of the delivery ring (layout.h, delivery.c):
 * whatever a ring entry, the ring tail or next_sn holds, a reader gets only
 * samples under their own sequence number, in increasing order, never a
 * slot outside the segment, and every call returns promptly; writers,
 * eviction, reap and next_unread stay in bounds too.
 *
 * An entry is the sn's lap (sn with its low log2(ring_size) bits cleared)
 * with a slot index in those bits.  Each case pokes the entry of sn 1 (of
 * three committed samples) with one lap (0 = right, previous, next,
 * 2^63, max) x one slot field (0, the right slot, slot_count, HOLE,
 * UNWRITTEN, max) and then drives the segment; the other entries stay
 * right, so sn 0 and sn 2 must arrive.
 */
#include "zdtest.h"

#include "layout.h"

#define COUNT 4u

static zd_geometry_t geometry(zd_segment_t *seg)
{
	zd_segment_info_t i;

	REQUIRE_OK(zd_segment_info(seg, &i));
	return i.geo;
}

static void poke64(const char *name, uint64_t off, uint64_t v)
{
	char path[512];
	int fd;

	REQUIRE(zdt_shm_path(path, sizeof(path), name));
	fd = open(path, O_RDWR | O_CLOEXEC);
	REQUIRE(fd >= 0);
	REQUIRE(pwrite(fd, &v, 8, (off_t)off) == 8);
	close(fd);
}

/* A sample whose payload is the sn it expects; with RECLAIM in a hostile
 * segment the loan may fail (returns UINT64_MAX), never leave bounds. */
static uint64_t try_commit(zd_segment_t *seg, zd_overflow_t policy)
{
	uint32_t s;
	uint64_t sn = 0;
	zd_segment_info_t i;
	void *data = NULL;

	if (zd_writer_loan(seg, policy, 0, 0, &s) != 0)
		return UINT64_MAX;
	CHECK_LT(s, COUNT);
	REQUIRE_OK(zd_slot_data_ptr(seg, s, &data, NULL, NULL));
	REQUIRE_OK(zd_segment_info(seg, &i));
	memcpy(data, &i.next_sn, 8);
	if (zd_slot_commit_in_place(seg, s, 8, &sn) != 0) {
		CHECK_OK(zd_slot_discard(seg, s));
		return UINT64_MAX;
	}
	return sn;
}

static uint64_t commit_sn_tag(zd_segment_t *seg)
{
	uint64_t sn = try_commit(seg, ZD_OVERFLOW_FAIL);

	REQUIRE(sn != UINT64_MAX);
	return sn;
}

/* Takes until nothing is left (bounded); checks what arrives.  Returns a
 * bit per sn 0..63 received. */
static uint64_t drain(zd_segment_t *seg, zd_reader_t *r, const char *what)
{
	uint64_t got = 0, last = UINT64_MAX;

	for (int k = 0; k < 16; k++) {
		zd_view_t v;
		uint64_t tag = 0, t0 = zdt_now_ns();
		int rc = zd_reader_take(seg, r, &v);

		CHECK_LT(zdt_now_ns() - t0, 1 * ZDT_S);
		if (rc == -EAGAIN)
			break;
		if (rc == -EBADMSG)
			continue;
		CHECK_OK(rc);
		if (rc != 0)
			break;
		CHECK_LT(v.slot, COUNT);
		CHECK_LE(v.size, zd_segment_slot_capacity(seg));
		memcpy(&tag, v.data, 8);
		if (tag != v.sn || (last != UINT64_MAX && v.sn <= last))
			zdt_fail(__FILE__, __LINE__, "%s: got sn %" PRIu64 " (tag %" PRIu64
				 ") after %" PRIu64, what, v.sn, tag, last);
		last = v.sn;
		if (v.sn < 64)
			got |= (uint64_t)1 << v.sn;
		CHECK_OK(zd_slot_release(seg, &v));
	}
	return got;
}

static void hostile_entry(zdt_ctx_t *c)
{
	zd_geometry_t g = geometry(c->seg);
	uint64_t mask = g.ring_size - 1u;
	uint64_t laps[] = {0, (uint64_t)0 - g.ring_size, g.ring_size,
			   (uint64_t)1 << 63, ~mask};
	uint64_t slots[] = {0, 1, COUNT, ZDI_RING_HOLE(mask),
			    ZDI_RING_UNWRITTEN(mask), mask};

	for (size_t li = 0; li < sizeof(laps) / sizeof(laps[0]); li++) {
		for (size_t si = 0; si < sizeof(slots) / sizeof(slots[0]); si++) {
			zd_config_t cfg = zdt_cfg(COUNT, 64);
			zd_segment_t *seg;
			zd_reader_t r;
			char name[64], what[96];
			uint64_t got;
			uint32_t s, n;

			zdt_unique_name(name);
			REQUIRE_OK(zd_segment_create_posix(name, &cfg, &seg));
			REQUIRE_OK(zd_reader_open(seg, 0, &r));
			for (int k = 0; k < 3; k++)
				CHECK_EQ(commit_sn_tag(seg), (uint64_t)k);
			snprintf(what, sizeof(what), "entry of sn 1 = lap 0x%" PRIx64
				 " | slot %" PRIu64, laps[li], slots[si]);
			/* sn 1 is at ring index 1 */
			poke64(name, g.ring_offset + 8u, (laps[li] & ~mask) | (slots[si] & mask));
			got = drain(seg, &r, what);
			if ((got & 5u) != 5u)
				zdt_fail(__FILE__, __LINE__, "%s: sn 0 and 2 must arrive, got %#" PRIx64,
					 what, got);
			/* writers, eviction, reap and the raw reader stay in bounds */
			for (int k = 0; k < 6; k++)
				(void)try_commit(seg, ZD_OVERFLOW_RECLAIM);
			(void)drain(seg, &r, what);
			if (zd_slot_next_unread(seg, r.index, &s) == 0)
				CHECK_LT(s, COUNT);
			CHECK_OK(zd_slot_evict_stale(seg, 0, zd_segment_active_mask(seg), &n));
			CHECK_OK(zd_segment_reap(seg, NULL, NULL));
			CHECK_OK(zd_reader_close(seg, &r));
			zd_segment_close(seg);
			CHECK_OK(zd_segment_unlink_posix(name));
		}
	}
}

/* The tail and next_sn at 0, max and past each other: loans and takes stay
 * in bounds and return. */
static void hostile_counters(zdt_ctx_t *c)
{
	uint64_t vals[] = {0, 1, 2, 1000, (uint64_t)1 << 63, UINT64_MAX - 1, UINT64_MAX};
	size_t tail_off = offsetof(struct zdi_segment_header, tail);
	size_t next_off = offsetof(struct zdi_segment_header, next_sn);

	for (int which = 0; which < 2; which++) {
		for (size_t k = 0; k < sizeof(vals) / sizeof(vals[0]); k++) {
			zd_reader_t r;
			uint64_t t0;

			REQUIRE_OK(zd_reader_open(c->seg, 0, &r));
			(void)try_commit(c->seg, ZD_OVERFLOW_RECLAIM);
			poke64(c->name, which ? next_off : tail_off, vals[k]);
			t0 = zdt_now_ns();
			(void)drain(c->seg, &r, which ? "next_sn" : "tail");
			for (int i = 0; i < 6; i++)
				(void)try_commit(c->seg, ZD_OVERFLOW_RECLAIM);
			(void)drain(c->seg, &r, which ? "next_sn" : "tail");
			CHECK_LT(zdt_now_ns() - t0, 5 * ZDT_S);
			CHECK_OK(zd_reader_close(c->seg, &r));
		}
		poke64(c->name, next_off, 100);
		poke64(c->name, tail_off, 100);
	}
}

int main(void)
{
	zd_config_t c4 = zdt_cfg(COUNT, 64);

	zdt_run_posix("hostile_entry", &c4, hostile_entry);
	zdt_run_posix("hostile_counters", &c4, hostile_counters);
	return zdt_finish();
}
