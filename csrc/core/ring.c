/* ring.c — looking sequence numbers up: the delivery ring and the old map.
 *
 * The entry format, the order of a commit and why the slot, not the entry,
 * is the authority are in the overview of delivery.c.  This file reads,
 * marks holes and keeps the old map (a sample whose entry is taken over
 * goes in, a bit whose sample is gone comes out): writers (pool.c) and
 * readers (delivery.c) both use it, and it calls no other core file.
 *
 * A held sample's slot is COMMITTED, or LOANED for a moment by a recycler
 * that may still give it back: zdi_recycle moves it COMMITTED -> LOANED,
 * then checks the pins and, if a view pinned it meanwhile, CASes it back
 * to the same COMMITTED word.  Nothing writes the slot's sn in between: a
 * recycle that keeps the slot stores UINT64_MAX there after its pin check,
 * a commit stores its new sn.  So "LOANED with the sample's sn still in
 * the header" may be the sample coming back, and the old map keeps a bit
 * in that state (zdi_keep_track sets it, zdi_old_best does not clear it).
 */
#include "internal.h"

enum zdi_find zdi_ring_find(const zd_segment_t *seg, uint64_t sn,
			    uint32_t *slot, uint64_t *state)
{
	/* Pairs with the release CAS of the entry in publish. */
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

/* Whether slot h may still hold the sample sn (see the top). */
static int still_held(struct zdi_slot_header *h, uint64_t sn)
{
	/* Acquire: pairs with the release CAS that made the slot COMMITTED
	 * with sn (a recycler's LOANED word is an RMW of its release
	 * sequence); for a commit still in flight, the caller's acquire load
	 * of the entry that commit wrote makes sn visible.  Either way the sn
	 * load sees sn or a later value, and a later value is written only
	 * once the sample is gone (a recycle that keeps the slot, a commit). */
	uint64_t s = zdi_load_acquire_u64(&h->state);

	return (ZDI_ST_KIND(s) == ZDI_SLOT_COMMITTED || ZDI_ST_KIND(s) == ZDI_SLOT_LOANED) &&
	       zdi_load_relaxed_u64(&h->sn) == sn;
}

void zdi_keep_track(zd_segment_t *seg, uint64_t sn, uint64_t old)
{
	uint64_t i = old & seg->ring_mask;
	uint64_t old_sn = zdi_lap_of(seg, old) | (sn & seg->ring_mask);

	if (i >= seg->geo.slot_count || old_sn >= sn)
		return;
	/* A sample in a recycle that may be given back counts as held: its
	 * bit costs a look if the recycle keeps the slot, its absence would
	 * lose the sample if the recycle gives it back.  So does one whose
	 * commit wrote this entry and has not flipped its state yet. */
	if (still_held(zdi_slot(seg, (uint32_t)i), old_sn))
		zdi_map_set(&seg->old_map, (uint32_t)i);
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
	/* The HOLE takes the entry over from an older lap, as a commit would:
	 * a sample of that lap still held goes to the old map first. */
	zdi_keep_track(seg, sn, e);
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
				if (ZDI_ST_KIND(s) == ZDI_SLOT_LOANED && sn != UINT64_MAX)
					continue;       /* may be given back: see the top */
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
