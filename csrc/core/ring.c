/* ring.c — looking sequence numbers up: the delivery ring and the old map.
 *
 * The entry format, the order of a commit and why the slot, not the entry,
 * is the authority are in the overview of delivery.c.  This file only reads
 * (and marks holes): writers (pool.c) and readers (delivery.c) both use it,
 * and it calls no other core file.
 */
#include "internal.h"

enum zdi_find zdi_ring_find(const zd_segment_t *seg, uint64_t sn,
			    uint32_t *slot, uint64_t *state)
{
	/* Pairs with the release store of the entry in publish. */
	uint64_t e = zdi_load_acquire_u64(&seg->ring[sn & seg->ring_mask]);
	uint64_t i = e & seg->ring_mask;
	int64_t lap = (int64_t)(zdi_lap_of(seg, e) - zdi_lap_of(seg, sn));
	struct zdi_slot_header *h;
	uint64_t s;

	if (lap > 0)
		return ZDI_LOST;
	if (lap < 0 || i == ZDI_RING_UNWRITTEN(seg->ring_mask))
		return ZDI_INFLIGHT;
	if (i == ZDI_RING_HOLE(seg->ring_mask))
		return ZDI_GONE;
	if (i >= seg->geo.slot_count)
		return ZDI_INFLIGHT;    /* garbage: zdi_ring_settle decides */
	h = zdi_slot(seg, (uint32_t)i);
	s = zdi_load_acquire_u64(&h->state);
	if (ZDI_ST_KIND(s) == ZDI_SLOT_COMMITTED) {
		if (zdi_load_relaxed_u64(&h->sn) != sn)
			return ZDI_GONE;
		*slot = (uint32_t)i;
		*state = s;
		return ZDI_FOUND;
	}
	if (ZDI_ST_KIND(s) == ZDI_SLOT_LOANED && zdi_load_relaxed_u64(&h->sn) == sn)
		return ZDI_INFLIGHT;
	return ZDI_GONE;
}

enum zdi_find zdi_ring_settle(zd_segment_t *seg, uint64_t sn, uint32_t *slot,
			      uint64_t *state)
{
	uint64_t *entry = &seg->ring[sn & seg->ring_mask];
	uint64_t e = zdi_load_acquire_u64(entry);
	enum zdi_find f;

	for (uint32_t i = 0; i < seg->geo.slot_count; i++) {
		struct zdi_slot_header *h = zdi_slot(seg, i);
		uint64_t s = zdi_load_acquire_u64(&h->state);

		if (ZDI_ST_KIND(s) == ZDI_SLOT_FREE || zdi_load_relaxed_u64(&h->sn) != sn)
			continue;
		if (ZDI_ST_KIND(s) == ZDI_SLOT_LOANED)
			return ZDI_INFLIGHT;    /* its writer is still at it */
		*slot = i;
		*state = s;
		return ZDI_FOUND;
	}
	/* No slot holds sn: its loan was freed before it was published.  A
	 * publish that wrote the entry meanwhile is seen by the lookup. */
	f = zdi_ring_find(seg, sn, slot, state);
	if (f != ZDI_INFLIGHT)
		return f;
	zdi_cas_acq_rel_u64(entry, &e, zdi_lap_of(seg, sn) | ZDI_RING_HOLE(seg->ring_mask));
	return ZDI_GONE;
}

void zdi_window(const zd_segment_t *seg, uint64_t *lo, uint64_t *hi)
{
	uint64_t next = zdi_load_acquire_u64(&seg->hdr->next_sn);
	uint64_t tail = zdi_load_acquire_u64(&seg->hdr->tail);
	uint64_t ring = seg->geo.ring_size;

	/* A tail beyond next_sn, or more than a ring behind it, is not one a
	 * walk left there: start one ring back. */
	if (tail > next || next - tail > ring)
		tail = next > ring ? next - ring : 0;
	*lo = tail;
	*hi = next;
}

int zdi_old_best(const zd_segment_t *seg, uint64_t from,
		 int (*accept)(const zd_segment_t *seg, struct zdi_slot_header *h,
			       uint64_t sn, void *arg),
		 void *arg, uint32_t *slot, uint64_t *sn_out, uint64_t *state)
{
	const struct zdi_map *m = &seg->old_map;
	uint64_t best_sn = UINT64_MAX;
	int found = 0;

	for (uint32_t sw = 0; sw < m->nsummary; sw++) {
		uint64_t sum = zdi_load_acquire_u64(&m->summary[sw]);

		for (; sum != 0; sum &= sum - 1) {
			uint32_t w = sw * 64u + (uint32_t)__builtin_ctzll(sum);
			uint64_t word = w < m->nwords ? zdi_load_acquire_u64(&m->words[w]) : 0;

			for (; word != 0; word &= word - 1) {
				uint32_t i = w * 64u + (uint32_t)__builtin_ctzll(word), at;
				struct zdi_slot_header *h;
				uint64_t s, sn, s2;

				if (i >= seg->geo.slot_count)
					continue;
				h = zdi_slot(seg, i);
				s = zdi_load_acquire_u64(&h->state);
				sn = zdi_load_relaxed_u64(&h->sn);
				if (ZDI_ST_KIND(s) != ZDI_SLOT_COMMITTED ||
				    (zdi_ring_find(seg, sn, &at, &s2) == ZDI_FOUND && at == i)) {
					/* Recycled, or back in the ring's reach. */
					zdi_fetch_and_seqcst_u64(&m->words[w], ~zdi_bit(i % 64u));
					continue;
				}
				if (sn < from || sn >= best_sn || !accept(seg, h, sn, arg))
					continue;
				best_sn = sn;
				*slot = i;
				*state = s;
				found = 1;
			}
		}
	}
	if (!found)
		return -ENOENT;
	*sn_out = best_sn;
	return 0;
}
