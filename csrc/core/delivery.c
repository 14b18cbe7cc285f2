/* delivery.c — sequence numbers, the delivery ring, take and join.
 *
 * OVERVIEW
 * A commit claims the next sequence number (sn) from the header's next_sn
 * and records where its sample is in a ring of ring_size 8-byte entries
 * (a power of two >= 2 * slot_count), at index sn & (ring_size - 1).  A
 * reader keeps the next sn it expects in its entry (cursor) and finds that
 * sample with one ring load and one slot-header load: take costs the same
 * whatever the number of slots.
 *
 * API (internal.h): zdi_ring_find looks an sn up; zdi_ring_settle decides an
 * sn whose entry was never written; zdi_reader_deliver is the take of a
 * registered reader, zdi_reader_deliver_latest that of a latest-value
 * reader; zdi_join computes a new reader's first sn; the low-level
 * zd_slot_commit* and zd_slot_next_unread live here too.
 *
 * IMPLEMENTATION NOTES
 * Entries.  An entry holds the sn's "lap" (sn with its low log2(ring_size)
 * bits cleared) and, in those low bits, the slot.  A lookup of sn compares
 * laps: equal - the entry was written for sn; older - not yet written (the
 * commit is in flight, or its writer died before it); newer - a later sn
 * (sn + k * ring_size) took the entry over.  Slot values at or beyond
 * slot_count name no slot: UNWRITTEN (the initial value), HOLE (set by
 * zdi_ring_settle), anything else is garbage and reads as "not written".
 * The slot is the authority: the entry only says where to look, and the
 * sample is sn's only if that slot is COMMITTED with sn in its header (a
 * slot recycled since holds another sn, or none): a hostile entry can
 * send a reader to a wrong slot, never outside the slots, and never make
 * it deliver a sample under the wrong sn.
 *
 * Order of a commit: the loaned slot's header gets sn before next_sn moves
 * past it (a CAS: release), then size, time and read mask; then the ring
 * entry (a release CAS that never replaces an entry of a later lap); then
 * the slot's state becomes COMMITTED (release).  So
 * for every sn < next_sn some slot shows it (loaned or committed) until it
 * is recycled, and an entry that names a loaned slot with its sn means "in
 * flight": the reader holds back.  Samples are delivered in sn order across
 * writers, each once: a reader moves its cursor past sn with a CAS only
 * while it pins the sample (or when sn is gone), and sets its read bit
 * while it pins it.
 *
 * Who observes each release store:
 *   - next_sn (CAS): readers' acquire load before a lookup (an sn below it
 *     has its slot's sn visible: zdi_ring_settle relies on it);
 *   - ring entry (CAS): zdi_ring_find's acquire load, and that of the
 *     commit or HOLE mark that takes the entry over, before
 *     zdi_keep_track (the slot's sn is visible);
 *   - slot state: zdi_ring_find's acquire load and the pin's seq_cst
 *     re-load (data, meta, size and time are visible).
 *
 * Lost entries.  A sample may outlive ring_size later commits (a view of it
 * kept long).  The commit that takes its entry over first sets its bit in
 * the old map (zdi_keep_track; so does a HOLE mark), so writers can still
 * recycle it and readers still find it (zdi_old_best).  A slot that a
 * recycler moved to LOANED and may give back still counts as holding its
 * sample: the bit is set for it and not cleared (ring.c).  A commit
 * delayed between its sn claim and its entry until ring_size later
 * commits wrote that entry finds a later lap there: it leaves the entry
 * alone and sets its own slot's bit before it publishes the state, so its
 * sample is in the old map from the start.
 *
 * A reader more than 2 * ring_size behind next_sn jumps to the oldest
 * sample of the old map it has not read, or to next_sn - ring_size if
 * that is older: a sample still held stays ahead of its
 * cursor, however many laps took its entry over, and what it skips was
 * recycled already (counted as its drop by the recycler) or never
 * published.  The jump costs one old-map scan (the summary words, plus a
 * lookup per sample in the map); the walk after it at most ring_size
 * entries, and the lost ones among them share that scan.  Not covered,
 * four races around a sample whose entry is taken over: between the sn
 * claim of the commit that takes it over and zdi_keep_track the sample is
 * in neither place, and a jump passes it; a walk whose scan ran just
 * before zdi_keep_track takes it for gone when it then finds its entry
 * lost; a walk or jump that looks while its slot is in a recycle that is
 * then given back passes it (the map keeps the bit but offers no LOANED
 * slot); and a reader that looks for the sn of a commit delayed past
 * ring_size later commits, before that commit set its bit, passes it.
 * Each time it stays unread by that reader until a reclaim counts it as
 * the reader's drop, or the reader leaves.  (Only a sample pinned across
 * ring_size commits, or a commit delayed across them, can be taken over
 * unread: a reader that has not read a sample keeps it and every later
 * sample from the recycling of every policy but reclaim.)
 *
 * Holes.  A commit whose loan was freed under it (its writer was found
 * dead) claimed an sn that will never be published.  A reader that finds
 * an sn unpublished for a while scans the slots once (zdi_ring_settle): no
 * slot holding it means a hole, which it marks in the entry so that nobody
 * scans for it again.
 *
 * Latest-value readers.  A take of such a reader walks [cursor, next_sn)
 * (at most ring_size entries; older ones are in the old map) with loads
 * only, and picks the newest sn whose sample it has not read, stopping at
 * the first sn in flight, which the cursor must not pass.  It pins that
 * sample (the pin's state check proves the slot still holds it, and no
 * recycler can take it from then on), moves the cursor past it with a
 * CAS, and only then marks the older unread samples of the range read,
 * each under a pin, counting those whose read bit its own fetch_or set:
 * the CAS gives every range to one take, the fetch_or every sample to one
 * marker, and a sample a writer recycled first is that writer's drop.  A
 * take that pinned its newest t and then loses the cursor CAS to a take
 * that moved past t marks t itself, still under its pin (the winner could
 * not pin t meanwhile and may have given up on it), through the same
 * fetch_or: t is counted once, by whichever of the two set the bit.  A
 * reader that dies between the CAS and the marks leaves its bits clear;
 * its reap disconnects it, which marks every slot read for it.
 *
 * Join.  A new reader becomes active first and then reads next_sn, so every
 * sample it is not given a start for is committed after it counts as
 * active.  It marks the older held samples read and the join_last newest
 * ones unread; a sample committed late below its start (in flight at the
 * join) is not needed by it either (zdi_needed_by compares start_sn).
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* ---- commit -------------------------------------------------------------- */

static int publish(zd_segment_t *seg, uint32_t slot, uint64_t loaned,
		   uint64_t len, uint64_t *sn_out)
{
	struct zdi_slot_header *h = zdi_slot(seg, slot);
	uint64_t sn = zdi_load_relaxed_u64(&seg->hdr->next_sn);
	uint64_t committed = ZDI_ST_MAKE(ZDI_SLOT_COMMITTED, 0, 0,
					 ZDI_ST_VERSION(loaned) + 1u);
	uint64_t *entry, old;

	/* The sn goes into the (still loaned) slot before next_sn moves past
	 * it; the CAS releases that store (see the overview). */
	do {
		if (sn == UINT64_MAX)
			return -EOVERFLOW;      /* UINT64_MAX means "none" */
		zdi_store_relaxed_u64(&h->sn, sn);
	} while (!zdi_cas_acq_rel_u64(&seg->hdr->next_sn, &sn, sn + 1u));
	zdi_store_relaxed_u64(&h->size, len);
	zdi_store_relaxed_u64(&h->commit_ns, zd_now_ns());
	zdi_store_relaxed_u64(&h->read_mask, 0);
	ZDI_TEST_HOOK(commit_claimed, seg, sn);
	entry = &seg->ring[sn & seg->ring_mask];
	/* The entry, unless a later lap wrote it already (we were delayed
	 * for ring_size commits since the claim): then sn is out of the
	 * ring's reach from the start, and the sample goes into the old map
	 * before the state CAS publishes it, as zdi_keep_track would have
	 * put it there.  The CAS never replaces a later lap's entry. */
	old = zdi_load_acquire_u64(entry);
	for (;;) {
		if ((old & seg->ring_mask) != ZDI_RING_UNWRITTEN(seg->ring_mask) &&
		    (int64_t)(zdi_lap_of(seg, old) - zdi_lap_of(seg, sn)) > 0) {
			zdi_map_set(&seg->old_map, slot);
			break;
		}
		/* A held sample of an older lap goes into the old map before
		 * the entry is written: a reader that sees the new entry sees
		 * the bit. */
		zdi_keep_track(seg, sn, old);
		/* Release: pairs with the acquire load in zdi_ring_find. */
		if (zdi_cas_acq_rel_u64(entry, &old, zdi_lap_of(seg, sn) | slot))
			break;
	}
	/* Release: data, meta and the fields above are visible to whoever
	 * loads this state with acquire.  A CAS, not a store: if the loan was
	 * freed under us we must not publish (the entry then names a slot
	 * that does not hold sn: readers skip it). */
	if (!zdi_cas_acq_rel_u64(&h->state, &loaned, committed))
		return -ESTALE;
	ZDI_COUNT(seg, commits);
	zdi_wake_data(seg);
	/* With no reader the sample is reusable at once. */
	if (zdi_load_seqcst_u64(&seg->hdr->active_mask) == 0)
		zdi_wake_space(seg);
	if (sn_out != NULL)
		*sn_out = sn;
	return 0;
}

static int commit_check(zd_segment_t *seg, uint32_t slot, uint64_t len,
			uint64_t *state)
{
	if (slot >= seg->geo.slot_count)
		return -ERANGE;
	*state = zdi_live_loan(seg, slot);
	if (*state == 0)
		return -ESTALE;
	return len > zdi_capacity_of(seg, slot) ? -EMSGSIZE : 0;
}

int zd_slot_commit(zd_segment_t *seg, uint32_t slot, const void *bytes,
		   uint64_t len, uint64_t *sn)
{
	uint64_t s;
	int rc = commit_check(seg, slot, len, &s);

	if (rc < 0)
		return rc;
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
	int rc = commit_check(seg, slot, len, &s);

	return rc < 0 ? rc : publish(seg, slot, s, len, sn);
}

/* ---- take ---------------------------------------------------------------- */

#define ZDI_HOSTILE_LOOKS 3

/* zdi_pin refused reader r's pin on `slot` (seen COMMITTED as `state`)
 * because r's pin bit is already set.  On a sample r has not read, that bit
 * is legitimately set only between the pin and the read bit of another
 * take or mark of r: only this handle does those (it owns r), and each one
 * is counted in seg->takers[r] for its whole call, pins included.  A bit
 * that stays set with the read bit clear and the state unchanged over
 * ZDI_HOSTILE_LOOKS looks, while no other call of ours works on r, was
 * written by someone else (a corrupt or hostile segment): waiting for it
 * would spin forever.  (A racer of ours that pinned and left between two
 * looks set the read bit first, which a later look or the fetch_or below
 * sees; one that only flickered a stale pin stays counted until its call
 * returns.)  The sample is then marked read for r and counted in
 * corrupt_dropped.  Its slot stays pinned by the bit (a view of ours may
 * hold it: we cannot tell) until r's entry is cleaned up.
 * Returns -EBADMSG (dropped), -EBUSY (look again: it moved on, or another
 * call of ours works on r). */
static int pin_refused(zd_segment_t *seg, uint32_t r, uint32_t slot,
		       uint64_t state)
{
	struct zdi_slot_header *h = zdi_slot(seg, slot);
	uint64_t bit = zdi_bit(r);

	for (int look = 0; look < ZDI_HOSTILE_LOOKS; look++) {
		if (look > 0)
			zdi_cpu_relax();
		if (!(zdi_load_seqcst_u64(&h->reader_pins) & bit) ||
		    (zdi_load_acquire_u64(&h->read_mask) & bit) ||
		    zdi_load_seqcst_u64(&h->state) != state ||
		    zdi_load_seqcst_u32(&seg->takers[r].n) != 1)
			return -EBUSY;
	}
	if (zdi_fetch_or_acq_rel_u64(&h->read_mask, bit) & bit)
		return -EBUSY;          /* marked read meanwhile: not ours to drop */
	ZDI_COUNT(seg, corrupt_dropped);
	zd_notify_bump(seg);            /* a writer may wait for it to be read */
	return -EBADMSG;
}

/* zdi_old_best's filter: reader *arg (a uint32_t) has not read it. */
static int unread_by(const zd_segment_t *seg, struct zdi_slot_header *h,
		     uint64_t sn, void *arg)
{
	(void)seg;
	(void)sn;
	return !(zdi_load_acquire_u64(&h->read_mask) & zdi_bit(*(uint32_t *)arg));
}

static int old_oldest(const zd_segment_t *seg, uint32_t r, uint64_t from,
		      uint32_t *slot, uint64_t *sn, uint64_t *state)
{
	return zdi_old_best(seg, from, unread_by, &r, slot, sn, state);
}

/* The smallest sn >= from of the old map that reader r has not read. */
static uint64_t old_next(const zd_segment_t *seg, uint32_t r, uint64_t from)
{
	uint32_t i;
	uint64_t sn, s;

	return old_oldest(seg, r, from, &i, &sn, &s) == 0 ? sn : UINT64_MAX;
}

/* The end of a take: reader r pins slot i (as state s), its cursor is past
 * the sample and its read bit set.  Fills *view and counts the take. */
static int hand_over(zd_segment_t *seg, uint32_t r, uint32_t i, uint64_t s,
		     zd_view_t *view)
{
	struct zdi_reader_entry *e = &seg->readers[r];
	struct zdi_slot_header *h = zdi_slot(seg, i);
	int rc = zdi_view_fill(seg, i, s, (int32_t)r, view);

	if (rc < 0) {
		zdi_unpin(seg, i, &h->reader_pins, zdi_bit(r));
		ZDI_COUNT(seg, corrupt_dropped);
		return rc;
	}
	zdi_fetch_add_relaxed_u64(&e->taken, 1);
	zdi_store_relaxed_u64(&e->last_sn, view->sn);
	return 0;
}

int zdi_reader_deliver(zd_segment_t *seg, uint32_t r, zd_view_t *view)
{
	struct zdi_reader_entry *e = &seg->readers[r];
	uint64_t bit = zdi_bit(r);
	uint64_t ring = seg->geo.ring_size, old = 0, old_from = UINT64_MAX;
	unsigned fails = 0, spins = 0, settles = 0;

	for (;;) {
		uint64_t c = zdi_load_acquire_u64(&e->cursor);
		uint64_t next = zdi_load_acquire_u64(&seg->hdr->next_sn);
		struct zdi_slot_header *h;
		enum zdi_find f;
		uint32_t i = 0;
		uint64_t s = 0;
		int rc;

		if (c >= next)
			return -EAGAIN;
		if (next - c > 2u * ring) {
			/* Far behind: jump to the oldest sample we have not
			 * read that the old map still holds, or to one ring
			 * back (see "Lost entries" in the overview). */
			uint64_t to = next - ring;

			old = old_next(seg, r, c);
			old_from = c;
			if (old < to)
				to = old;
			if (to > c) {
				zdi_cas_acq_rel_u64(&e->cursor, &c, to);
				continue;
			}
		}
		f = zdi_ring_find(seg, c, &i, &s);
		if (f == ZDI_INFLIGHT) {
			if (++spins < ZDI_INFLIGHT_SPINS) {
				zdi_cpu_relax();
				continue;
			}
			if (++settles > ZDI_SETTLES)
				return -EINPROGRESS;
			f = zdi_ring_settle(seg, c, &i, &s);
			if (f == ZDI_INFLIGHT)
				return -EINPROGRESS;
		}
		spins = 0;
		if (f == ZDI_LOST) {
			/* Is c itself in the old map?  One scan serves every
			 * lost entry up to the next old sample. */
			if (old_from == UINT64_MAX || old < c) {
				old = old_next(seg, r, c);
				old_from = c;
			}
			f = ZDI_GONE;
			if (old == c) {
				uint64_t sn;

				if (old_oldest(seg, r, c, &i, &sn, &s) == 0 && sn == c)
					f = ZDI_FOUND;
				old_from = UINT64_MAX;
			}
		}
		if (f == ZDI_GONE) {
			/* Recycled or never published; whoever recycled it
			 * counted it as our drop. */
			zdi_cas_acq_rel_u64(&e->cursor, &c, c + 1u);
			continue;
		}
		h = zdi_slot(seg, i);
		rc = zdi_pin(seg, i, s, &h->reader_pins, bit);
		if (rc == -EBUSY)
			rc = pin_refused(seg, r, i, s);
		if (rc == -EBADMSG) {
			zdi_cas_acq_rel_u64(&e->cursor, &c, c + 1u);
			return rc;
		}
		if (rc != 0 || !zdi_cas_acq_rel_u64(&e->cursor, &c, c + 1u)) {
			/* Recycled meanwhile, or another thread has it. */
			if (rc == 0)
				zdi_unpin(seg, i, &h->reader_pins, bit);
			if (++fails == ZDI_TAKE_TRIES)
				return -EAGAIN;
			continue;
		}
		if (zdi_fetch_or_seqcst_u64(&h->read_mask, bit) & bit) {
			/* Marked read for us already (zd_slot_mark_read). */
			zdi_unpin(seg, i, &h->reader_pins, bit);
			continue;
		}
		return hand_over(seg, r, i, s, view);
	}
}

/* ---- take of a latest-value reader --------------------------------------- */

/* Marks the sample reader r skips (seen committed in slot i as state s)
 * read, under r's pin, so that the bit cannot land on a later sample of
 * the slot (a commit clears the mask before it publishes).  Returns 1 when
 * this call set the bit (the fetch_or's old value says so: counted once),
 * 0 when it was set already or the sample is gone (a recycler counted it
 * as r's drop).  r's pin bit already set there can only be another take of
 * r that pinned the sample as its own newest and is about to lose the
 * cursor CAS to us: we wait for it to unpin, boundedly, and if it does
 * not, leave the sample to it (a take that loses the CAS to a cursor past
 * its sample marks that sample read itself, and counts it if its fetch_or
 * set the bit).  A bit written by someone else is left alone: the sample
 * then stays unread by r until r leaves (its disconnect marks it). */
static int skip_one(zd_segment_t *seg, uint32_t r, uint32_t i, uint64_t s)
{
	struct zdi_slot_header *h = zdi_slot(seg, i);
	uint64_t bit = zdi_bit(r);
	int rc, set;

	for (unsigned tries = 0;; tries++) {
		rc = zdi_pin(seg, i, s, &h->reader_pins, bit);
		if (rc != -EBUSY || tries == ZDI_PIN_TRIES)
			break;
		zdi_cpu_relax();
	}
	if (rc != 0)
		return 0;
	set = !(zdi_fetch_or_seqcst_u64(&h->read_mask, bit) & bit);
	zdi_unpin(seg, i, &h->reader_pins, bit);        /* wakes writers */
	return set;
}

/* Marks read every sample reader r has not read with from <= sn < to: those
 * in the ring's reach, then those of the old map.  Called once the cursor
 * moved from `from` to beyond `to` (the ranges of two takes of r never
 * overlap).  Returns how many this call marked. */
static uint64_t skip_range(zd_segment_t *seg, uint32_t r, uint64_t from,
			   uint64_t to)
{
	uint64_t next = zdi_load_acquire_u64(&seg->hdr->next_sn);
	uint64_t ring = seg->geo.ring_size, n = 0, x, sn, s;
	uint32_t i;

	/* Older entries were taken over: their samples are in the old map. */
	x = next > ring && next - ring > from ? next - ring : from;
	for (; x < to; x++)
		if (zdi_ring_find(seg, x, &i, &s) == ZDI_FOUND &&
		    !(zdi_load_acquire_u64(&zdi_slot(seg, i)->read_mask) & zdi_bit(r)))
			n += (uint64_t)skip_one(seg, r, i, s);
	for (x = from; old_oldest(seg, r, x, &i, &sn, &s) == 0 && sn < to; x = sn + 1u)
		n += (uint64_t)skip_one(seg, r, i, s);
	return n;
}

/* The walk of a latest take over [lo, next): the newest sn whose sample r
 * has not read, stopping at the first sn still in flight (the cursor may
 * not pass it: its sample would be published after we moved on and stay
 * unread).  An sn in flight with nothing found before it is waited for a
 * little and settled, as the plain take does.  Only loads, apart from the
 * HOLE mark of zdi_ring_settle.  *end: where the walk stopped.  Returns 0
 * (found: *slot, *sn, *state), -ENOENT (nothing unread before *end == next),
 * -EINPROGRESS (nothing unread before the sn in flight at *end). */
static int newest_unread(zd_segment_t *seg, uint32_t r, uint64_t lo,
			 uint64_t next, uint64_t *end, uint32_t *slot,
			 uint64_t *sn, uint64_t *state)
{
	uint64_t bit = zdi_bit(r);
	unsigned settles = 0;
	int found = 0;

	for (uint64_t x = lo; x < next; x++) {
		uint32_t i = 0;
		uint64_t s = 0;
		enum zdi_find f = zdi_ring_find(seg, x, &i, &s);

		for (unsigned spins = 0; f == ZDI_INFLIGHT && !found &&
					 spins < ZDI_INFLIGHT_SPINS; spins++) {
			zdi_cpu_relax();
			f = zdi_ring_find(seg, x, &i, &s);
		}
		if (f == ZDI_INFLIGHT && !found && settles++ < ZDI_SETTLES)
			f = zdi_ring_settle(seg, x, &i, &s);
		if (f == ZDI_INFLIGHT) {
			*end = x;
			return found ? 0 : -EINPROGRESS;
		}
		if (f == ZDI_FOUND &&
		    !(zdi_load_acquire_u64(&zdi_slot(seg, i)->read_mask) & bit)) {
			found = 1;
			*slot = i;
			*sn = x;
			*state = s;
		}
	}
	*end = next;
	return found ? 0 : -ENOENT;
}

/* The newest sample of the old map that r has not read with from <= sn < to. */
static int old_newest(zd_segment_t *seg, uint32_t r, uint64_t from, uint64_t to,
		      uint32_t *slot, uint64_t *sn, uint64_t *state)
{
	uint64_t x = from, n, s;
	uint32_t i;
	int found = 0;

	while (x < to && old_oldest(seg, r, x, &i, &n, &s) == 0 && n < to) {
		found = 1;
		*slot = i;
		*sn = n;
		*state = s;
		x = n + 1u;
	}
	return found ? 0 : -ENOENT;
}

int zdi_reader_deliver_latest(zd_segment_t *seg, uint32_t r, zd_view_t *view,
			      uint64_t *skipped)
{
	struct zdi_reader_entry *e = &seg->readers[r];
	uint64_t bit = zdi_bit(r);
	uint64_t ring = seg->geo.ring_size;
	unsigned fails = 0;

	for (;;) {
		uint64_t c = zdi_load_acquire_u64(&e->cursor);
		uint64_t next = zdi_load_acquire_u64(&seg->hdr->next_sn);
		uint64_t lo, end = c, t = 0, s = 0;
		struct zdi_slot_header *h;
		uint32_t i = 0;
		int rc;

		if (c >= next)
			return -EAGAIN;
		lo = next - c > ring ? next - ring : c;
		rc = newest_unread(seg, r, lo, next, &end, &i, &t, &s);
		/* When the walk found nothing: samples whose entries were
		 * taken over (below lo, or during the walk) are in the old
		 * map; the newest of them before end, if any. */
		if (rc < 0 && old_newest(seg, r, c, end, &i, &t, &s) == 0)
			rc = 0;
		if (rc < 0) {
			/* Nothing unread before end, in the ring or the old
			 * map: what the cursor passes is read or gone. */
			if (end > c)
				zdi_cas_acq_rel_u64(&e->cursor, &c, end);
			return rc == -ENOENT ? -EAGAIN : rc;
		}
		/* Pin first: from here no writer can recycle the sample, and
		 * the state check inside proves it is still sn t's. */
		h = zdi_slot(seg, i);
		rc = zdi_pin(seg, i, s, &h->reader_pins, bit);
		if (rc == 0)
			ZDI_TEST_HOOK(latest_pinned, seg, r, t);
		if (rc == -EBUSY)
			rc = pin_refused(seg, r, i, s);
		if (rc == -EBADMSG) {
			if (zdi_cas_acq_rel_u64(&e->cursor, &c, t + 1u))
				zdi_fetch_add_relaxed_u64(skipped, skip_range(seg, r, c, t));
			return rc;
		}
		if (rc != 0 || !zdi_cas_acq_rel_u64(&e->cursor, &c, t + 1u)) {
			/* Recycled meanwhile, or another take of r moved on.  If
			 * that take moved the cursor past t, t is in its range,
			 * and its skip_one may have given up on t while we pin
			 * it: we mark t read here, under our pin.  The fetch_or
			 * decides which of the two counts it (the CAS failure
			 * loaded the cursor with acquire; either bit it sees is
			 * on sample t, both being set under a pin). */
			if (rc == 0 && c > t &&
			    !(zdi_fetch_or_seqcst_u64(&h->read_mask, bit) & bit))
				zdi_fetch_add_relaxed_u64(skipped, 1);
			if (rc == 0)
				zdi_unpin(seg, i, &h->reader_pins, bit);
			if (++fails == ZDI_TAKE_TRIES)
				return -EAGAIN;
			continue;
		}
		/* The cursor is past [c, t]: only this call marks that range. */
		zdi_fetch_add_relaxed_u64(skipped, skip_range(seg, r, c, t));
		if (zdi_fetch_or_seqcst_u64(&h->read_mask, bit) & bit) {
			/* Marked read for us already (zd_slot_mark_read). */
			zdi_unpin(seg, i, &h->reader_pins, bit);
			continue;
		}
		return hand_over(seg, r, i, s, view);
	}
}

/* ---- the low-level reader ------------------------------------------------ */

int zd_slot_next_unread(zd_segment_t *seg, uint32_t reader, uint32_t *slot)
{
	uint64_t lo, hi, s, old_sn, bit;
	uint32_t old_slot;
	int have_old;

	if (reader >= ZD_READER_MAX)
		return -ERANGE;
	bit = zdi_bit(reader);
	/* Samples out of the ring's reach are older than the window's. */
	have_old = old_oldest(seg, reader, 0, &old_slot, &old_sn, &s) == 0;
	zdi_window(seg, &lo, &hi);
	for (uint64_t sn = lo; sn < hi && (!have_old || sn < old_sn); sn++) {
		uint32_t i;
		enum zdi_find f = zdi_ring_find(seg, sn, &i, &s);

		if (f == ZDI_INFLIGHT)
			f = zdi_ring_settle(seg, sn, &i, &s);
		if (f == ZDI_INFLIGHT)
			return -EAGAIN;         /* an older commit is in flight */
		if (f == ZDI_FOUND &&
		    !(zdi_load_acquire_u64(&zdi_slot(seg, i)->read_mask) & bit)) {
			*slot = i;
			return 0;
		}
	}
	if (!have_old)
		return -EAGAIN;
	*slot = old_slot;
	return 0;
}

/* ---- join ---------------------------------------------------------------- */

static int desc_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? 1 : x > y ? -1 : 0;
}

/* The sn of the join_last-th newest held sample (next when none). */
static uint64_t held_start(zd_segment_t *seg, uint64_t next, uint64_t k)
{
	uint64_t lo, hi, start = next, found = 0, *all;
	uint32_t n = 0;

	zdi_window(seg, &lo, &hi);
	if (hi > next)
		hi = next;
	for (uint64_t sn = hi; sn > lo && found < k; sn--) {
		uint32_t i;
		uint64_t s;

		if (zdi_ring_find(seg, sn - 1u, &i, &s) == ZDI_FOUND) {
			start = sn - 1u;
			found++;
		}
	}
	if (found == k)
		return start;
	/* Fewer held in the window than asked for: every held sample counts,
	 * those out of the ring's reach included (rare: sort them all). */
	all = malloc((size_t)seg->geo.slot_count * sizeof(*all));
	if (all == NULL)
		return start;
	for (uint32_t i = 0; i < seg->geo.slot_count; i++) {
		struct zdi_slot_header *h = zdi_slot(seg, i);
		uint64_t sn = zdi_load_relaxed_u64(&h->sn);

		if (ZDI_ST_KIND(zdi_load_acquire_u64(&h->state)) == ZDI_SLOT_COMMITTED &&
		    sn < next)
			all[n++] = sn;
	}
	qsort(all, n, sizeof(*all), desc_u64);
	if (n > 0)
		start = all[(k < n ? k : n) - 1u];
	free(all);
	return start;
}

uint64_t zdi_join(zd_segment_t *seg, uint32_t r, uint64_t next, uint64_t join_last)
{
	uint64_t bit = zdi_bit(r);
	uint64_t start = join_last == 0 ? next : held_start(seg, next, join_last);

	/* Older samples are marked read so we never hold them hostage; the
	 * join_last newest ones unread so we receive them.  Bits already right
	 * are left alone (no pin). */
	for (uint32_t i = 0; i < seg->geo.slot_count; i++) {
		struct zdi_slot_header *h = zdi_slot(seg, i);
		uint64_t s = zdi_load_acquire_u64(&h->state);
		int want;

		if (ZDI_ST_KIND(s) != ZDI_SLOT_COMMITTED)
			continue;
		want = zdi_load_relaxed_u64(&h->sn) < start;
		if (((zdi_load_acquire_u64(&h->read_mask) & bit) != 0) == want)
			continue;
		if (zdi_pin(seg, i, s, &h->reader_pins, bit) != 0)
			continue;       /* recycled: its new sample is ours */
		if (want)
			zdi_fetch_or_seqcst_u64(&h->read_mask, bit);
		else
			zdi_fetch_and_seqcst_u64(&h->read_mask, ~bit);
		zdi_unpin(seg, i, &h->reader_pins, bit);
	}
	return start;
}
