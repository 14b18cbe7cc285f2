/* slot.c — the slot state machine: pins, recycling, handle views, the
 * cleanup sweep, eviction.  (Loans are found in pool.c, samples are
 * published and delivered in delivery.c.)
 *
 * A committed slot may be reused once no view pins it and no active reader
 * needs it (zdi_needed_by).  Whoever makes that true by dropping a pin wakes
 * the writers (zdi_unpin); readers leaving and evictions wake them too.
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

#ifdef ZD_TEST_HOOKS
struct zdi_test_hooks zdi_test_hooks;
#endif

static inline int slot_check(const zd_segment_t *seg, uint32_t slot)
{
	return slot < seg->geo.slot_count ? 0 : -ERANGE;
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

uint64_t zdi_needed_by(const zd_segment_t *seg, struct zdi_slot_header *h,
		       uint64_t sn, uint64_t read_by)
{
	uint64_t m = read_by & ~zdi_load_seqcst_u64(&h->read_mask);

	/* A reader that joined after sn never takes it (its cursor starts at
	 * start_sn), even when a commit in flight at its join left its bit
	 * clear.  start_sn is 0 while the join is under way: needed. */
	for (uint64_t rest = m; rest != 0; rest &= rest - 1) {
		uint32_t r = (uint32_t)__builtin_ctzll(rest);
		const struct zdi_reader_entry *e = &seg->readers[r];

		if (zdi_load_acquire_u32(&e->state) == ZDI_ENTRY_ACTIVE &&
		    zdi_load_acquire_u64(&e->start_sn) > sn)
			m &= ~zdi_bit(r);
	}
	return m;
}

void zdi_unpin(zd_segment_t *seg, uint32_t slot, uint64_t *pins, uint64_t bit)
{
	struct zdi_slot_header *h = zdi_slot(seg, slot);
	uint64_t s;

	/* Release: our reads of the slot happen before a recycler that sees
	 * the bit clear (its seq_cst load) writes into it.  Then, if this was
	 * the last pin and nobody needs the sample, a writer may take it: the
	 * seq_cst loads after our RMW see every other pin and read bit that
	 * came before it, so of two last pinners at least one sees the slot
	 * reusable. */
	if (zdi_fetch_and_seqcst_u64(pins, ~bit) & ~bit)
		return;
	if (zdi_pins_of(h) != 0)
		return;
	s = zdi_load_seqcst_u64(&h->state);
	if (ZDI_ST_KIND(s) != ZDI_SLOT_COMMITTED)
		return;
	if (zdi_needed_by(seg, h, zdi_load_relaxed_u64(&h->sn),
			  zdi_load_seqcst_u64(&seg->hdr->active_mask)) == 0)
		zdi_wake_space(seg);
}

int zdi_recycle(zd_segment_t *seg, uint32_t slot, uint64_t expected_state)
{
	struct zdi_slot_header *h = zdi_slot(seg, slot);
	uint64_t original = expected_state;
	uint64_t loaned = zdi_my_loan(seg, ZDI_ST_VERSION(expected_state));

	if (!zdi_cas_seqcst_u64(&h->state, &expected_state, loaned))
		return -EAGAIN;
	ZDI_TEST_HOOK(recycle_loaned, seg, slot);
	if (zdi_pins_of(h) != 0) {
		/* A view pinned it meanwhile: give it back unchanged. */
		uint64_t cur = loaned;

		zdi_cas_seqcst_u64(&h->state, &cur, original);
		return -EAGAIN;
	}
	zdi_store_relaxed_u64(&h->sn, UINT64_MAX);  /* no sample here now */
	return 0;
}

int zdi_free_loan(zd_segment_t *seg, uint32_t slot, uint64_t loaned)
{
	struct zdi_slot_header *h = zdi_slot(seg, slot);

	/* Release: pairs with the acquire load of a loaner that finds the
	 * slot in the free map. */
	if (!zdi_cas_acq_rel_u64(&h->state, &loaned,
				 ZDI_ST_MAKE(ZDI_SLOT_FREE, 0, 0, ZDI_ST_VERSION(loaned))))
		return -ESTALE;
	zdi_map_set(&seg->free_map, slot);
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

int zd_slot_data_ptr(zd_segment_t *seg, uint32_t slot, void **data,
		     uint64_t *capacity, void **meta)
{
	int rc = slot_check(seg, slot);

	if (rc < 0)
		return rc;
	if (zdi_live_loan(seg, slot) == 0)
		return -ESTALE;
	if (data != NULL)
		*data = zdi_slot_data(seg, slot);
	if (capacity != NULL)
		*capacity = zdi_capacity_of(seg, slot);
	if (meta != NULL)
		*meta = zdi_slot(seg, slot)->meta;
	return 0;
}

int zd_slot_discard(zd_segment_t *seg, uint32_t slot)
{
	uint64_t s;
	int rc = slot_check(seg, slot);

	if (rc < 0)
		return rc;
	s = zdi_live_loan(seg, slot);
	if (s == 0)
		return -ESTALE;
	if (zdi_free_loan(seg, slot, s) < 0)
		return -ESTALE;
	ZDI_COUNT(seg, discards);
	zdi_wake_space(seg);
	return 0;
}

int zdi_view_fill(zd_segment_t *seg, uint32_t slot, uint64_t state,
		  int32_t reader, zd_view_t *view)
{
	struct zdi_slot_header *h = zdi_slot(seg, slot);
	uint64_t size = zdi_load_relaxed_u64(&h->size);

	if (size > zdi_capacity_of(seg, slot))
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
		/* The last view of a closed reader frees its entry. */
		zdi_reader_close_unpinned(seg, (uint32_t)view->reader);
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
	if (rc == 0) {
		/* A registered reader may now have read a sample without its
		 * predecessors: writers walk the whole window from now on. */
		if (zdi_load_acquire_u64(&seg->hdr->active_mask) & zdi_bit(reader))
			zdi_store_relaxed_u32(&seg->hdr->marks_unordered, 1);
		zdi_wake_space(seg);
	}
	return rc;
}

int zd_slot_mark_reader_disconnected(zd_segment_t *seg, uint32_t reader)
{
	if (reader >= ZD_READER_MAX)
		return -ERANGE;
	/* No pin needed: a commit resets the mask, so a bit that lands on a
	 * later sample only marks it read for a reader that is gone. */
	for (uint32_t i = 0; i < seg->geo.slot_count; i++)
		zdi_fetch_or_seqcst_u64(&zdi_slot(seg, i)->read_mask, zdi_bit(reader));
	zdi_wake_space(seg);
	return 0;
}

uint32_t zdi_forget(zd_segment_t *seg, uint32_t r, uint32_t a)
{
	uint64_t rbit = r < ZD_READER_MAX ? zdi_bit(r) : 0;
	uint64_t abit = a < ZD_ATTACH_MAX ? zdi_bit(a) : 0;
	uint32_t freed = 0;

	for (uint32_t i = 0; i < seg->geo.slot_count; i++) {
		struct zdi_slot_header *h = zdi_slot(seg, i);
		uint64_t s = zdi_load_acquire_u64(&h->state);

		if (rbit && (zdi_load_relaxed_u64(&h->reader_pins) & rbit))
			zdi_fetch_and_seqcst_u64(&h->reader_pins, ~rbit);
		if (!abit)
			continue;
		if (zdi_load_relaxed_u64(&h->handle_pins) & abit)
			zdi_fetch_and_seqcst_u64(&h->handle_pins, ~abit);
		if (ZDI_ST_KIND(s) == ZDI_SLOT_LOANED && ZDI_ST_OWNER(s) == a &&
		    zdi_free_loan(seg, i, s) == 0)
			freed++;
	}
	/* A freed loan may also have held back delivery (its sn claimed). */
	zd_notify_bump(seg);
	return freed;
}

int zd_slot_evict_stale_at(zd_segment_t *seg, uint64_t now_ns,
			   uint64_t max_age_ns, uint64_t active_mask,
			   uint32_t *evicted)
{
	uint32_t n = 0;

	/* A scan, not a loan path: eviction is the caller's maintenance. */
	for (uint32_t i = 0; i < seg->geo.slot_count; i++) {
		struct zdi_slot_header *h = zdi_slot(seg, i);
		uint64_t s = zdi_load_acquire_u64(&h->state);
		uint64_t sn, t, unread;

		if (ZDI_ST_KIND(s) != ZDI_SLOT_COMMITTED || zdi_pins_of(h) != 0)
			continue;
		sn = zdi_load_relaxed_u64(&h->sn);
		if (zdi_needed_by(seg, h, sn, active_mask) == 0)
			continue;       /* already reusable */
		t = zdi_load_relaxed_u64(&h->commit_ns);
		if ((now_ns > t ? now_ns - t : 0) < max_age_ns)
			continue;
		if (zdi_recycle(seg, i, s) < 0)
			continue;
		/* The slot is ours now; no reader can change its mask. */
		unread = zdi_needed_by(seg, h, sn, active_mask);
		zdi_count_drops(seg, unread);
		zdi_free_loan(seg, i, zdi_my_loan(seg, ZDI_ST_VERSION(s)));
		ZDI_COUNT(seg, evictions);
		n++;
	}
	if (n > 0)
		zdi_wake_space(seg);
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

	if (slot >= seg->geo.slot_count)
		return -ERANGE;
	kind = ZDI_ST_KIND(zdi_load_acquire_u64(&zdi_slot(seg, slot)->state));
	return kind <= ZDI_SLOT_COMMITTED ? (int)kind : -EBADMSG;
}

int zd_slot_describe(const zd_segment_t *seg, uint32_t slot,
		     zd_slot_info_t *out)
{
	struct zdi_slot_header *h;
	uint64_t s;

	if (slot >= seg->geo.slot_count)
		return -ERANGE;
	h = zdi_slot(seg, slot);
	s = zdi_load_acquire_u64(&h->state);
	if (ZDI_ST_KIND(s) > ZDI_SLOT_COMMITTED)
		return -EBADMSG;
	memset(out, 0, sizeof(*out));
	out->slot = slot;
	out->class_index = zdi_class_of(seg, slot);
	out->state = (int32_t)ZDI_ST_KIND(s);
	out->loaned_by = ZDI_ST_KIND(s) == ZDI_SLOT_LOANED ? (int32_t)ZDI_ST_OWNER(s) : -1;
	out->capacity = zdi_capacity_of(seg, slot);
	out->sn = UINT64_MAX;
	if (ZDI_ST_KIND(s) == ZDI_SLOT_COMMITTED) {
		out->sn = zdi_load_relaxed_u64(&h->sn);
		out->size = zdi_load_relaxed_u64(&h->size);
		out->read_mask = zdi_load_acquire_u64(&h->read_mask);
	}
	out->reader_pins = zdi_load_acquire_u64(&h->reader_pins);
	out->handle_pins = zdi_load_acquire_u64(&h->handle_pins);
	return 0;
}
