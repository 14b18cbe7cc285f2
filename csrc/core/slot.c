/* slot.c — the slot state machine: loans, commits, pins, reads, eviction.
 *
 * Pins and recycling form a Dekker pair (all four accesses seq_cst):
 *   pinner:   fetch_or(pins, bit)            then load(state) == expected?
 *   recycler: CAS(state, COMMITTED -> LOANED) then load(pins) == 0?
 * At most one side can win: a pinner that sees the old state knows the
 * recycler will see its bit and give the slot back; a recycler that sees
 * no pin knows every later pinner will see the new state and back off.
 * The recycler writes nothing into the slot before that check.
 */
#include <string.h>

#include "internal.h"

static inline int slot_check(const zd_segment_t *seg, uint32_t slot)
{
	return slot < seg->slot_count ? 0 : -ERANGE;
}

static inline uint64_t my_loan(const zd_segment_t *seg, uint32_t version)
{
	return ZDI_ST_MAKE(ZDI_SLOT_LOANED, seg->attach_index, seg->attach_epoch,
			   version);
}

static inline uint64_t pins_of(struct zdi_slot_header *h)
{
	return zdi_load_seqcst_u64(&h->reader_pins) |
	       zdi_load_seqcst_u64(&h->handle_pins);
}

int zdi_pin(zd_segment_t *seg, uint32_t slot, uint64_t expected_state,
	    uint64_t *pins, uint64_t bit)
{
	struct zdi_slot_header *h = zdi_slot(seg, slot);
	uint64_t old = zdi_fetch_or_seqcst_u64(pins, bit);

	if (old & bit)
		return -EBUSY;          /* this pinner already holds it */
	if (zdi_load_seqcst_u64(&h->state) != expected_state) {
		zdi_fetch_and_seqcst_u64(pins, ~bit);
		return -ESTALE;
	}
	return 0;
}

void zdi_unpin(zd_segment_t *seg, uint32_t slot, uint64_t *pins, uint64_t bit)
{
	(void)slot;
	/* Release: our reads of the slot happen before a recycler that sees
	 * the bit clear (its seq_cst load) writes into it. */
	zdi_fetch_and_acq_rel_u64(pins, ~bit);
	zd_notify_bump(seg);
}

int zdi_recycle(zd_segment_t *seg, uint32_t slot, uint64_t expected_state)
{
	struct zdi_slot_header *h = zdi_slot(seg, slot);
	uint64_t original = expected_state;
	uint64_t loaned = my_loan(seg, ZDI_ST_VERSION(expected_state));

	if (!zdi_cas_seqcst_u64(&h->state, &expected_state, loaned))
		return -EAGAIN;
	if (pins_of(h) != 0) {
		/* A view pinned it meanwhile: give it back unchanged. */
		uint64_t cur = loaned;

		zdi_cas_seqcst_u64(&h->state, &cur, original);
		zd_notify_bump(seg);
		return -EAGAIN;
	}
	zdi_store_relaxed_u64(&h->sn, UINT64_MAX);  /* see zdi_loan_taken */
	return 0;
}

void zdi_count_drops(zd_segment_t *seg, uint64_t unread_mask)
{
	while (unread_mask != 0) {
		uint32_t r = (uint32_t)__builtin_ctzll(unread_mask);

		unread_mask &= unread_mask - 1;
		zdi_fetch_add_relaxed_u64(&seg->readers[r].dropped, 1);
	}
}

void zdi_loan_taken(zd_segment_t *seg, uint32_t slot)
{
	/* Only the owner writes a LOANED slot.  No sequence number yet: a
	 * reader must not take this loan for an in-flight commit (see
	 * publish and zdi_scan_oldest). */
	zdi_store_relaxed_u64(&zdi_slot(seg, slot)->sn, UINT64_MAX);
	ZDI_COUNT(seg, loans);
}

int zdi_take_loanable(zd_segment_t *seg, uint64_t read_by, uint32_t *slot,
		      uint64_t *unread_by)
{
	/* The lowest FREE slot; failing that the oldest committed one that
	 * every reader in read_by has read and no view pins, so a segment
	 * keeps its newest samples (for readers joining with join_last).  A
	 * lost recycle means a pin or another writer got there first; after
	 * ZDI_LOANABLE_TRIES of them the caller waits for a change. */
	for (unsigned tries = 0; tries < ZDI_LOANABLE_TRIES; tries++) {
		uint32_t best = UINT32_MAX;
		uint64_t best_sn = UINT64_MAX, best_s = 0;

		for (uint32_t i = 0; i < seg->slot_count; i++) {
			struct zdi_slot_header *h = zdi_slot(seg, i);
			uint64_t s = zdi_load_acquire_u64(&h->state);
			uint64_t sn;

			if (ZDI_ST_KIND(s) == ZDI_SLOT_FREE) {
				if (!zdi_cas_acq_rel_u64(&h->state, &s,
							 my_loan(seg, ZDI_ST_VERSION(s))))
					continue;
				zdi_loan_taken(seg, i);
				*slot = i;
				*unread_by = 0;
				return 0;
			}
			if (ZDI_ST_KIND(s) != ZDI_SLOT_COMMITTED || pins_of(h) != 0 ||
			    (zdi_load_acquire_u64(&h->read_mask) & read_by) != read_by)
				continue;
			sn = zdi_load_relaxed_u64(&h->sn);
			if (best == UINT32_MAX || sn < best_sn) {
				best = i;
				best_sn = sn;
				best_s = s;
			}
		}
		if (best == UINT32_MAX)
			return -EAGAIN;
		if (zdi_recycle(seg, best, best_s) == 0) {
			/* Ours now: no reader can change the mask any more. */
			*unread_by = ~zdi_load_acquire_u64(&zdi_slot(seg, best)->read_mask);
			zdi_loan_taken(seg, best);
			*slot = best;
			return 0;
		}
	}
	return -EAGAIN;
}

int zd_slot_reserve(zd_segment_t *seg, uint64_t active_mask, uint32_t *slot)
{
	uint64_t unread;

	return zdi_take_loanable(seg, active_mask, slot, &unread);
}

/* Returns the state word of a live loan of this handle, or 0. */
static uint64_t live_loan(const zd_segment_t *seg, uint32_t slot)
{
	uint64_t s = zdi_load_acquire_u64(&zdi_slot(seg, slot)->state);

	return s == my_loan(seg, ZDI_ST_VERSION(s)) ? s : 0;
}

int zd_slot_data_ptr(zd_segment_t *seg, uint32_t slot, void **data,
		     uint64_t *capacity, void **meta)
{
	int rc = slot_check(seg, slot);

	if (rc < 0)
		return rc;
	if (live_loan(seg, slot) == 0)
		return -ESTALE;
	if (data != NULL)
		*data = zdi_slot_data(seg, slot);
	if (capacity != NULL)
		*capacity = seg->slot_capacity;
	if (meta != NULL)
		*meta = zdi_slot(seg, slot)->meta;
	return 0;
}

static int publish(zd_segment_t *seg, uint32_t slot, uint64_t loaned,
		   uint64_t len, uint64_t *sn_out)
{
	struct zdi_slot_header *h = zdi_slot(seg, slot);
	uint64_t sn = zdi_load_relaxed_u64(&seg->hdr->next_sn);
	uint64_t committed = ZDI_ST_MAKE(ZDI_SLOT_COMMITTED, 0, 0,
					 ZDI_ST_VERSION(loaned) + 1u);

	/* The sequence number is stored in the (still loaned) slot before
	 * next_sn moves past it, and the CAS releases that store: whoever sees
	 * a later commit also sees this slot either committed or loaned with
	 * its sn, i.e. in flight.  That is what lets readers deliver strictly
	 * in sn order across writers. */
	do {
		zdi_store_relaxed_u64(&h->sn, sn);
	} while (!zdi_cas_acq_rel_u64(&seg->hdr->next_sn, &sn, sn + 1u));
	zdi_store_relaxed_u64(&h->size, len);
	zdi_store_relaxed_u64(&h->commit_ns, zd_now_ns());
	zdi_store_relaxed_u64(&h->read_mask, 0);
	/* Release: data, meta and the fields above are visible to whoever
	 * loads this state with acquire (readers' scans and pins). A CAS, not
	 * a store: if the loan was reclaimed from us, we must not publish. */
	if (!zdi_cas_acq_rel_u64(&h->state, &loaned, committed))
		return -ESTALE;
	ZDI_COUNT(seg, commits);
	zd_notify_bump(seg);
	if (sn_out != NULL)
		*sn_out = sn;
	return 0;
}

int zd_slot_commit(zd_segment_t *seg, uint32_t slot, const void *bytes,
		   uint64_t len, uint64_t *sn)
{
	uint64_t s;
	int rc = slot_check(seg, slot);

	if (rc < 0)
		return rc;
	s = live_loan(seg, slot);
	if (s == 0)
		return -ESTALE;
	if (len > seg->slot_capacity)
		return -EMSGSIZE;
	if (len > 0 && bytes == NULL)
		return -EINVAL;
	if (len > 0)
		memcpy(zdi_slot_data(seg, slot), bytes, (size_t)len);
	return publish(seg, slot, s, len, sn);
}

int zd_slot_commit_in_place(zd_segment_t *seg, uint32_t slot, uint64_t len,
			    uint64_t *sn)
{
	uint64_t s;
	int rc = slot_check(seg, slot);

	if (rc < 0)
		return rc;
	s = live_loan(seg, slot);
	if (s == 0)
		return -ESTALE;
	if (len > seg->slot_capacity)
		return -EMSGSIZE;
	return publish(seg, slot, s, len, sn);
}

int zd_slot_discard(zd_segment_t *seg, uint32_t slot)
{
	uint64_t s;
	int rc = slot_check(seg, slot);

	if (rc < 0)
		return rc;
	s = live_loan(seg, slot);
	if (s == 0)
		return -ESTALE;
	if (!zdi_cas_acq_rel_u64(&zdi_slot(seg, slot)->state, &s,
				 ZDI_ST_MAKE(ZDI_SLOT_FREE, 0, 0, ZDI_ST_VERSION(s))))
		return -ESTALE;
	ZDI_COUNT(seg, discards);
	zd_notify_bump(seg);
	return 0;
}

int zdi_view_fill(zd_segment_t *seg, uint32_t slot, uint64_t state,
		  int32_t reader, zd_view_t *view)
{
	struct zdi_slot_header *h = zdi_slot(seg, slot);
	uint64_t size = zdi_load_relaxed_u64(&h->size);

	if (size > seg->slot_capacity)
		return -EBADMSG;
	view->slot = slot;
	view->version = ZDI_ST_VERSION(state);
	view->reader = reader;
	view->reserved = 0;
	view->sn = zdi_load_relaxed_u64(&h->sn);
	view->size = size;
	view->commit_ns = zdi_load_relaxed_u64(&h->commit_ns);
	view->data = zdi_slot_data_ro(seg, slot);   /* readers cannot scribble */
	view->meta = h->meta;
	return 0;
}

/* zdi_pin found this handle's bit already set in handle_pins while the
 * handle holds no view of the slot (pin_count is 0 under pin_mu, and only
 * this handle sets its bit, under pin_mu): the bit was written by someone
 * else.  Adopt it as our pin, which is sound because it was set before the
 * state check below, exactly as zdi_pin's own fetch_or; the release clears
 * it.  Returns 0, -ESTALE (the state moved on: the bit is cleared). */
static int adopt_handle_pin(struct zdi_slot_header *h, uint64_t state,
			    uint64_t bit)
{
	if (zdi_load_seqcst_u64(&h->state) == state)
		return 0;
	zdi_fetch_and_seqcst_u64(&h->handle_pins, ~bit);
	return -ESTALE;
}

int zd_slot_acquire(zd_segment_t *seg, uint32_t slot, zd_view_t *view)
{
	struct zdi_slot_header *h;
	uint64_t bit = zdi_bit(seg->attach_index);
	uint64_t s;
	int rc = slot_check(seg, slot);

	if (rc < 0)
		return rc;
	h = zdi_slot(seg, slot);
	pthread_mutex_lock(&seg->pin_mu);
	if (seg->pin_count[slot] > 0) {
		/* Already pinned by this handle: the version cannot change. */
		s = zdi_load_acquire_u64(&h->state);
		if (seg->pin_count[slot] == UINT32_MAX) {
			rc = -EBUSY;
			goto out;
		}
	} else {
		for (unsigned tries = 0;; tries++) {
			s = zdi_load_acquire_u64(&h->state);
			if (ZDI_ST_KIND(s) != ZDI_SLOT_COMMITTED) {
				rc = -ENODATA;
				goto out;
			}
			rc = zdi_pin(seg, slot, s, &h->handle_pins, bit);
			if (rc == -EBUSY)
				rc = adopt_handle_pin(h, s, bit);
			if (rc != -ESTALE)
				break;
			if (tries == ZDI_PIN_TRIES) {
				rc = -EBUSY;    /* the state word keeps changing */
				goto out;
			}
		}
		if (rc < 0)
			goto out;
	}
	rc = zdi_view_fill(seg, slot, s, -1, view);
	if (rc < 0) {
		if (seg->pin_count[slot] == 0)
			zdi_unpin(seg, slot, &h->handle_pins, bit);
		goto out;
	}
	seg->pin_count[slot]++;
	seg->pin_version[slot] = view->version;
out:
	pthread_mutex_unlock(&seg->pin_mu);
	return rc;
}

int zd_slot_release(zd_segment_t *seg, const zd_view_t *view)
{
	struct zdi_slot_header *h;
	int rc = slot_check(seg, view->slot);

	if (rc < 0)
		return rc;
	h = zdi_slot(seg, view->slot);
	if (view->reader >= 0) {
		uint64_t bit;

		if ((uint32_t)view->reader >= ZD_READER_MAX)
			return -ERANGE;
		bit = zdi_bit((uint32_t)view->reader);
		/* While our pin holds, the version cannot change. */
		if (ZDI_ST_VERSION(zdi_load_acquire_u64(&h->state)) != view->version ||
		    !(zdi_load_relaxed_u64(&h->reader_pins) & bit))
			return -ESTALE;
		zdi_unpin(seg, view->slot, &h->reader_pins, bit);
		return 0;
	}
	pthread_mutex_lock(&seg->pin_mu);
	if (seg->pin_count[view->slot] == 0 ||
	    seg->pin_version[view->slot] != view->version) {
		rc = -ESTALE;
	} else if (--seg->pin_count[view->slot] == 0) {
		zdi_unpin(seg, view->slot, &h->handle_pins, zdi_bit(seg->attach_index));
	}
	pthread_mutex_unlock(&seg->pin_mu);
	return rc;
}

int zd_slot_read(zd_segment_t *seg, uint32_t slot, zd_slot_header_t *hdr,
		 void *buf, uint64_t buflen, uint64_t *copied)
{
	zd_view_t v;
	uint64_t n;
	int rc = zd_slot_acquire(seg, slot, &v);

	if (rc < 0)
		return rc;
	n = v.size < buflen ? v.size : buflen;
	if (n > 0 && buf != NULL)
		memcpy(buf, v.data, (size_t)n);
	if (hdr != NULL) {
		hdr->sn = v.sn;
		hdr->size = v.size;
		hdr->commit_ns = v.commit_ns;
		hdr->read_mask = zdi_load_acquire_u64(&zdi_slot(seg, slot)->read_mask);
	}
	if (copied != NULL)
		*copied = buf != NULL ? n : 0;
	return zd_slot_release(seg, &v);
}

struct scan {
	uint32_t best;          /* UINT32_MAX: none */
	uint64_t best_sn;
	uint64_t best_s;
	uint64_t inflight;      /* smallest sn >= start of a loan being committed */
};

static void scan_pass(zd_segment_t *seg, uint32_t r, uint64_t start,
		      struct scan *out)
{
	uint64_t bit = zdi_bit(r);

	out->best = UINT32_MAX;
	out->best_sn = UINT64_MAX;
	out->best_s = 0;
	out->inflight = UINT64_MAX;
	for (uint32_t i = 0; i < seg->slot_count; i++) {
		struct zdi_slot_header *h = zdi_slot(seg, i);
		uint64_t s = zdi_load_acquire_u64(&h->state);
		uint64_t sn;

		if (ZDI_ST_KIND(s) == ZDI_SLOT_LOANED) {
			sn = zdi_load_relaxed_u64(&h->sn);
			if (sn >= start && sn < out->inflight)
				out->inflight = sn;
			continue;
		}
		if (ZDI_ST_KIND(s) != ZDI_SLOT_COMMITTED ||
		    (zdi_load_relaxed_u64(&h->read_mask) & bit))
			continue;
		sn = zdi_load_relaxed_u64(&h->sn);
		if (sn < start) {
			(void)zdi_mark_bit(seg, i, r, 1);
			continue;
		}
		if (out->best == UINT32_MAX || sn < out->best_sn) {
			out->best = i;
			out->best_sn = sn;
			out->best_s = s;
		}
	}
}

#define ZDI_INFLIGHT_SPINS 128

/* The committed sample with the smallest sn >= start that reader r has not
 * read: slot, sn and the state word it was seen with.  Samples below start
 * are marked read for r on the way (they predate its join).
 *
 * Delivery is in sequence-number order, across writers too:
 *  - a pass by slot index can pass a slot just before a sample is published
 *    there and then find a newer one further on.  Every commit bumps the
 *    generation after publishing, so when the generation did not move the
 *    pass saw a consistent picture; when it did, a second pass settles it;
 *  - a commit stores its sn into the slot before taking it (see publish),
 *    so an older commit still in flight shows as a loan with a smaller sn:
 *    we hold back, spinning briefly, then report -EINPROGRESS (its publish
 *    will bump the generation).  A loan that has only just been taken
 *    still shows its old sn for a moment; the spin covers that too.
 * Returns 0, -EAGAIN (nothing unread), -EINPROGRESS (an older commit is in
 * flight). */
int zdi_scan_oldest(zd_segment_t *seg, uint32_t r, uint64_t start,
		    uint32_t *slot, uint64_t *sn_out, uint64_t *state_out)
{
	for (unsigned tries = 0;; tries++) {
		/* Pairs with the seq_cst bump after every publish. */
		uint32_t gen = zdi_load_acquire_u32(&seg->hdr->notify_gen);
		struct scan a, b;

		scan_pass(seg, r, start, &a);
		if (a.best == UINT32_MAX)
			return -EAGAIN;
		if (zdi_load_acquire_u32(&seg->hdr->notify_gen) != gen) {
			scan_pass(seg, r, start, &b);
			if (b.best_sn < a.best_sn) {
				/* An older one appeared: go again.  Only a new
				 * commit does that, so a segment whose sn words
				 * keep moving backwards is treated like a
				 * commit that stays in flight. */
				if (tries >= ZDI_INFLIGHT_SPINS)
					return -EINPROGRESS;
				continue;
			}
			if (b.inflight < a.inflight)
				a.inflight = b.inflight;
		}
		if (a.inflight < a.best_sn) {
			if (tries >= ZDI_INFLIGHT_SPINS)
				return -EINPROGRESS;
			zdi_cpu_relax();
			continue;
		}
		*slot = a.best;
		*sn_out = a.best_sn;
		*state_out = a.best_s;
		return 0;
	}
}

int zd_slot_next_unread(zd_segment_t *seg, uint32_t reader, uint32_t *slot)
{
	uint64_t sn, s;

	int rc;

	if (reader >= ZD_READER_MAX)
		return -ERANGE;
	rc = zdi_scan_oldest(seg, reader, 0, slot, &sn, &s);
	return rc == -EINPROGRESS ? -EAGAIN : rc;
}

int zdi_mark_bit(zd_segment_t *seg, uint32_t slot, uint32_t r, int set)
{
	struct zdi_slot_header *h = zdi_slot(seg, slot);
	uint64_t bit = zdi_bit(r);

	for (unsigned tries = 0;; tries++) {
		uint64_t s = zdi_load_acquire_u64(&h->state);
		int rc;

		if (ZDI_ST_KIND(s) != ZDI_SLOT_COMMITTED)
			return -ENODATA;
		rc = zdi_pin(seg, slot, s, &h->reader_pins, bit);
		if (rc == -ESTALE) {
			if (tries == ZDI_PIN_TRIES)
				return -EBUSY;  /* the state word keeps changing */
			continue;
		}
		if (set)
			zdi_fetch_or_acq_rel_u64(&h->read_mask, bit);
		else
			zdi_fetch_and_acq_rel_u64(&h->read_mask, ~bit);
		if (rc == 0)
			zdi_unpin(seg, slot, &h->reader_pins, bit);
		/* rc == -EBUSY: reader r already pins this very sample. */
		return 0;
	}
}

int zd_slot_mark_read(zd_segment_t *seg, uint32_t slot, uint32_t reader)
{
	int rc = slot_check(seg, slot);

	if (rc < 0)
		return rc;
	if (reader >= ZD_READER_MAX)
		return -ERANGE;
	zdi_takers_enter(seg, reader);
	rc = zdi_mark_bit(seg, slot, reader, 1);
	zdi_takers_leave(seg, reader);
	if (rc == 0)
		zd_notify_bump(seg);
	return rc;
}

int zd_slot_mark_reader_disconnected(zd_segment_t *seg, uint32_t reader)
{
	if (reader >= ZD_READER_MAX)
		return -ERANGE;
	/* No pin needed: a commit resets the mask, so a bit that lands on a
	 * later sample only marks it read for a reader that is gone. */
	for (uint32_t i = 0; i < seg->slot_count; i++)
		zdi_fetch_or_acq_rel_u64(&zdi_slot(seg, i)->read_mask, zdi_bit(reader));
	zd_notify_bump(seg);
	return 0;
}

int zd_slot_evict_stale_at(zd_segment_t *seg, uint64_t now_ns,
			   uint64_t max_age_ns, uint64_t active_mask,
			   uint32_t *evicted)
{
	uint32_t n = 0;

	for (uint32_t i = 0; i < seg->slot_count; i++) {
		struct zdi_slot_header *h = zdi_slot(seg, i);
		uint64_t s = zdi_load_acquire_u64(&h->state);
		uint64_t rm, t;

		if (ZDI_ST_KIND(s) != ZDI_SLOT_COMMITTED || pins_of(h) != 0)
			continue;
		rm = zdi_load_acquire_u64(&h->read_mask);
		if ((rm & active_mask) == active_mask)
			continue;       /* already free */
		t = zdi_load_relaxed_u64(&h->commit_ns);
		if ((now_ns > t ? now_ns - t : 0) < max_age_ns)
			continue;
		if (zdi_recycle(seg, i, s) < 0)
			continue;
		/* The slot is ours now; no reader can change its mask. */
		rm = zdi_load_acquire_u64(&h->read_mask);
		zdi_count_drops(seg, active_mask & ~rm);
		zdi_store_release_u64(&h->state, ZDI_ST_MAKE(ZDI_SLOT_FREE, 0, 0,
							     ZDI_ST_VERSION(s)));
		ZDI_COUNT(seg, evictions);
		n++;
	}
	if (n > 0)
		zd_notify_bump(seg);
	if (evicted != NULL)
		*evicted = n;
	return 0;
}

int zd_slot_evict_stale(zd_segment_t *seg, uint64_t max_age_ns,
			uint64_t active_mask, uint32_t *evicted)
{
	return zd_slot_evict_stale_at(seg, zd_now_ns(), max_age_ns, active_mask,
				      evicted);
}

int zd_slot_state(const zd_segment_t *seg, uint32_t slot)
{
	uint32_t kind;

	if (slot >= seg->slot_count)
		return -ERANGE;
	kind = ZDI_ST_KIND(zdi_load_acquire_u64(&zdi_slot(seg, slot)->state));
	return kind <= ZDI_SLOT_COMMITTED ? (int)kind : -EBADMSG;
}
