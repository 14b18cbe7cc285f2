/* pool.c — which slot a loan gets.
 *
 * In order, the first that yields one:
 *   1. the free map: the FREE slot with the lowest index (never used,
 *      discarded, evicted, or the loan of a dead writer);
 *   2. the old map: held samples the ring no longer indexes (a view kept
 *      one alive for more than ring_size commits), oldest first;
 *   3. the ring window [tail, next_sn): held samples oldest first.
 * A held sample may be taken when no view pins it and no active reader of
 * the caller's mask still needs it (zdi_needed_by); so a segment keeps its
 * newest samples for readers that join with join_last.  The reclaim policy
 * takes the oldest unpinned held sample, needed or not.
 *
 * Cost: the free map has one summary bit per 64-slot word, so step 1 reads
 * at most slot_count / 4096 summary words and one word.  Step 3 starts at
 * the tail, which it moves past samples that are gone, and stops at the
 * first sample that a registered reader still needs: a registered reader
 * reads in sequence-number order, so it needs every later sample too
 * (unless zd_slot_mark_read marked one for it out of order, after which
 * marks_unordered makes the walk go on to the end of the window).  In a
 * stream whose readers keep up the walk looks at one entry.
 *
 * Maps are hints.  The state word decides: a loan takes a map bit with
 * fetch_and (the old value says whether it was ours), then moves the slot
 * FREE -> LOANED with a CAS; a bit whose slot is not FREE is dropped.  A
 * slot whose bit a dying process took or had not set yet is found again by
 * the reaper (zd_segment_reap sets the bit of every FREE slot).
 */
#include "internal.h"

/* Clears and returns the lowest set bit of the map among slots lo .. hi - 1,
 * or UINT32_MAX; each look costs one unit of *budget (the words are shared:
 * bounded).  A summary bit is cleared only when its whole word is zero: the
 * word's other bits may belong to another class's slots. */
static uint32_t map_take(const struct zdi_map *m, uint32_t lo, uint32_t hi,
			 unsigned *budget)
{
	uint32_t wlo = lo / 64u, whi = (hi + 63u) / 64u;   /* words [wlo, whi) */

	if (whi > m->nwords)
		whi = m->nwords;
	for (uint32_t sw = wlo / 64u; sw < m->nsummary && sw * 64u < whi; sw++) {
		uint64_t sum = zdi_load_acquire_u64(&m->summary[sw]);

		while (sum != 0) {
			uint32_t w = sw * 64u + (uint32_t)__builtin_ctzll(sum);
			uint64_t sbit = sum & -sum, word, mine, bit;

			sum &= ~sbit;
			if (w < wlo)
				continue;
			if (w >= whi)
				break;
			if (*budget == 0)
				return UINT32_MAX;
			(*budget)--;
			word = zdi_load_acquire_u64(&m->words[w]);
			mine = word;
			if (w == lo / 64u && lo % 64u != 0)
				mine &= ~(zdi_bit(lo % 64u) - 1u);
			if (w == (hi - 1u) / 64u && hi % 64u != 0)
				mine &= zdi_bit(hi % 64u) - 1u;
			if (word == 0) {
				zdi_fetch_and_seqcst_u64(&m->summary[sw], ~sbit);
				if (zdi_load_seqcst_u64(&m->words[w]) != 0) {
					zdi_fetch_or_seqcst_u64(&m->summary[sw], sbit);
					sum |= sbit;    /* set meanwhile: look again */
				}
				continue;
			}
			if (mine == 0)
				continue;
			bit = mine & -mine;
			if (zdi_fetch_and_seqcst_u64(&m->words[w], ~bit) & bit)
				return w * 64u + (uint32_t)__builtin_ctzll(bit);
			sum |= sbit;    /* lost the bit to another loaner: look again */
		}
	}
	return UINT32_MAX;
}

static void loan_taken(zd_segment_t *seg, uint32_t slot)
{
	/* Only the owner writes a LOANED slot.  No sequence number yet: a
	 * reader must not take this loan for an in-flight commit. */
	zdi_store_relaxed_u64(&zdi_slot(seg, slot)->sn, UINT64_MAX);
	ZDI_COUNT(seg, loans);
}

static int take_free(zd_segment_t *seg, uint32_t lo, uint32_t hi,
		     uint32_t *slot)
{
	unsigned budget = 4u * ZDI_LOANABLE_TRIES;

	for (;;) {
		uint32_t i = map_take(&seg->free_map, lo, hi, &budget);
		struct zdi_slot_header *h;
		uint64_t s;

		if (i == UINT32_MAX)
			return -EAGAIN;
		if (i < lo || i >= hi)
			continue;       /* cannot happen: the range was masked */
		h = zdi_slot(seg, i);
		s = zdi_load_acquire_u64(&h->state);
		if (ZDI_ST_KIND(s) == ZDI_SLOT_FREE &&
		    zdi_cas_acq_rel_u64(&h->state, &s, zdi_my_loan(seg, ZDI_ST_VERSION(s)))) {
			loan_taken(seg, i);
			*slot = i;
			return 0;
		}
		/* Not FREE: the bit was stale (set again by a reaper's repair
		 * while the slot was being loaned); dropping it is right. */
	}
}

/* Whether the held sample sn in slot h may go: unpinned and, unless
 * reclaiming, needed by nobody in read_by.  *stop: a registered reader
 * needs it and reads in order, so it needs every later one as well. */
static int reusable(const zd_segment_t *seg, struct zdi_slot_header *h,
		    uint64_t sn, uint64_t read_by, int reclaim, int *stop)
{
	uint64_t need;

	*stop = 0;
	if (zdi_pins_of(h) != 0)
		return 0;
	if (reclaim)
		return 1;
	need = zdi_needed_by(seg, h, sn, read_by);
	if (need == 0)
		return 1;
	if (zdi_load_relaxed_u32(&seg->hdr->marks_unordered) == 0)
		for (; need != 0; need &= need - 1)
			if (zdi_load_acquire_u32(&seg->readers[__builtin_ctzll(need)].state) ==
			    ZDI_ENTRY_ACTIVE)
				*stop = 1;
	return 0;
}

/* Recycles the held sample sn (seen COMMITTED as s in slot i) for this
 * handle; *unread_by gets the active readers that still needed it. */
static int take_sample(zd_segment_t *seg, uint32_t i, uint64_t s, uint64_t sn,
		       uint32_t *slot, uint64_t *unread_by)
{
	if (zdi_recycle(seg, i, s) != 0)
		return -EAGAIN;
	/* Ours now: no reader can change the mask any more. */
	*unread_by = zdi_needed_by(seg, zdi_slot(seg, i), sn,
				   zdi_load_seqcst_u64(&seg->hdr->active_mask));
	loan_taken(seg, i);
	*slot = i;
	return 0;
}

/* An old-map sample a loan may take (zdi_old_best's filter): in the slot
 * range, and reusable. */
struct loan_want {
	uint64_t read_by;
	int reclaim;
	uintptr_t lo, hi;       /* slot headers of slots lo .. hi - 1 */
};

static int old_reusable(const zd_segment_t *seg, struct zdi_slot_header *h,
			uint64_t sn, void *arg)
{
	const struct loan_want *w = arg;
	int stop;

	if ((uintptr_t)h < w->lo || (uintptr_t)h >= w->hi)
		return 0;
	return reusable(seg, h, sn, w->read_by, w->reclaim, &stop);
}

static int take_old(zd_segment_t *seg, uint64_t read_by, int reclaim,
		    uint32_t lo, uint32_t hi, uint32_t *slot,
		    uint64_t *unread_by)
{
	/* Slots are laid out in index order, so the range is an address
	 * range: from slot lo's header to just past slot hi - 1. */
	struct loan_want want = {
		.read_by = read_by, .reclaim = reclaim,
		.lo = (uintptr_t)zdi_slot(seg, lo),
		.hi = (uintptr_t)zdi_slot(seg, hi - 1u) +
		      seg->classes[zdi_class_of(seg, hi - 1u)].slot_stride,
	};

	for (unsigned tries = 0; tries < ZDI_LOANABLE_TRIES; tries++) {
		uint32_t i;
		uint64_t sn, s;

		if (zdi_old_best(seg, 0, old_reusable, &want, &i, &sn, &s) < 0)
			return -EAGAIN;
		if (take_sample(seg, i, s, sn, slot, unread_by) == 0) {
			zdi_fetch_and_seqcst_u64(&seg->old_map.words[i / 64u],
						 ~zdi_bit(i % 64u));
			return 0;
		}
	}
	return -EAGAIN;
}

/* Step 3: the window, oldest first; the tail moves past what is gone.
 * A walk for one class of a classed segment starts at that class's tail
 * (when it lies in the window) and moves it past what is gone and past
 * other classes' samples (a sample never changes class), so a class whose
 * loans are rare among another's does not walk the other's held samples
 * every time.  The segment's tail moves only on a walk that started at it.
 * Reclaim walks every class that fits from the segment's tail. */
static int take_window(zd_segment_t *seg, uint64_t read_by, int reclaim,
		       uint32_t lo_slot, uint32_t hi_slot, uint32_t *slot,
		       uint64_t *unread_by)
{
	uint64_t *ctail_word = seg->geo.class_count > 1 && !reclaim
		? &seg->hdr->class_tail[zdi_class_of(seg, lo_slot)] : NULL;
	uint64_t raw = zdi_load_acquire_u64(&seg->hdr->tail);
	uint64_t craw = ctail_word != NULL ? zdi_load_acquire_u64(ctail_word) : 0;
	uint64_t lo, hi, tail, start, ctail;
	int prefix, cprefix = 1, rc = -EAGAIN;

	zdi_window(seg, &lo, &hi);
	/* A class tail outside the window is not one a walk left there. */
	start = ctail_word != NULL && craw > lo && craw <= hi ? craw : lo;
	prefix = start == lo;
	tail = lo;
	ctail = start;
	for (uint64_t sn = start; sn < hi; sn++) {
		uint32_t i;
		uint64_t s;
		int stop;

		switch (zdi_ring_find(seg, sn, &i, &s)) {
		case ZDI_GONE:
		case ZDI_LOST:          /* if still alive, it is in the old map */
			if (prefix)
				tail = sn + 1u;
			if (cprefix)
				ctail = sn + 1u;
			continue;
		case ZDI_INFLIGHT:      /* of any class, for all we know */
			prefix = cprefix = 0;
			continue;
		case ZDI_FOUND:
			break;
		}
		if (i < lo_slot || i >= hi_slot) {
			/* Another class's sample: not ours to take, but a
			 * reader that needs it stops the walk all the same. */
			if (!reusable(seg, zdi_slot(seg, i), sn, read_by, reclaim, &stop) &&
			    stop)
				break;
			prefix = 0;
			if (cprefix)
				ctail = sn + 1u;
			continue;
		}
		if (!reusable(seg, zdi_slot(seg, i), sn, read_by, reclaim, &stop)) {
			if (stop)
				break;
			prefix = cprefix = 0;
			continue;
		}
		if (take_sample(seg, i, s, sn, slot, unread_by) == 0) {
			if (prefix)
				tail = sn + 1u;
			if (cprefix)
				ctail = sn + 1u;
			rc = 0;
			break;
		}
		prefix = cprefix = 0;
	}
	if (tail != raw)
		zdi_cas_acq_rel_u64(&seg->hdr->tail, &raw, tail);
	if (ctail_word != NULL && ctail != craw)
		zdi_cas_acq_rel_u64(ctail_word, &craw, ctail);
	return rc;
}

int zdi_take_loanable(zd_segment_t *seg, uint64_t read_by, int reclaim,
		      uint32_t lo, uint32_t hi, uint32_t *slot,
		      uint64_t *unread_by)
{
	*unread_by = 0;
	if (lo >= hi || hi > seg->geo.slot_count)
		return -EAGAIN;
	if (!reclaim && take_free(seg, lo, hi, slot) == 0)
		return 0;
	if (take_old(seg, read_by, reclaim, lo, hi, slot, unread_by) == 0)
		return 0;
	return take_window(seg, read_by, reclaim, lo, hi, slot, unread_by);
}

int zd_slot_reserve_size(zd_segment_t *seg, uint64_t nbytes,
			 uint64_t active_mask, uint32_t *slot)
{
	uint64_t unread;
	int c = zdi_class_for(seg, nbytes);

	if (c < 0)
		return c;
	/* The smallest class that fits and has a loanable slot. */
	for (uint32_t k = (uint32_t)c; k < seg->geo.class_count; k++) {
		const zd_class_t *cl = &seg->classes[k];

		if (zdi_take_loanable(seg, active_mask, 0, cl->first_slot,
				      cl->first_slot + cl->slot_count, slot,
				      &unread) == 0)
			return 0;
	}
	return -EAGAIN;
}

int zd_slot_reserve(zd_segment_t *seg, uint64_t active_mask, uint32_t *slot)
{
	return zd_slot_reserve_size(seg, seg->geo.slot_capacity, active_mask, slot);
}
