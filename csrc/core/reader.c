/* reader.c — the registry (readers and attachments), take, close, reap.
 *
 * An entry (reader r or attachment a) is owned by whoever holds its
 * liveness lock; the state word only says whether it was left ACTIVE.  So:
 *   claim:   take the lock; if the entry is still ACTIVE its owner died
 *            without cleaning up: clean up now; then epoch+1, ACTIVE.
 *   release: clean up, FREE, drop the lock.
 *   reap:    for each ACTIVE entry that is not ours, try its lock; getting
 *            it proves the owner is gone: clean up, FREE, drop the lock.
 * Cleanup always runs under the lock, so it can never touch an entry that a
 * new owner has claimed (the epoch lets a handle see its entry was reused).
 *
 * End of stream: a take that finds nothing unread asks whether the stream
 * has ended (goodbye flag, or the creator's liveness lock free) and, if so,
 * scans once more before it says so: a sample committed before the end is
 * delivered even if the first scan ran before its commit.
 */
#include <unistd.h>

#include "internal.h"

/* ---- attachments ------------------------------------------------------ */

/* Frees every loan and handle pin of attachment a (lock a held). Returns the
 * number of loans freed. */
static uint32_t attach_cleanup(zd_segment_t *seg, uint32_t a)
{
	uint64_t bit = zdi_bit(a);
	uint32_t freed = 0;

	for (uint32_t i = 0; i < seg->slot_count; i++) {
		struct zdi_slot_header *h = zdi_slot(seg, i);
		uint64_t s = zdi_load_acquire_u64(&h->state);

		if (zdi_load_relaxed_u64(&h->handle_pins) & bit)
			zdi_fetch_and_acq_rel_u64(&h->handle_pins, ~bit);
		if (ZDI_ST_KIND(s) == ZDI_SLOT_LOANED && ZDI_ST_OWNER(s) == a &&
		    zdi_cas_acq_rel_u64(&h->state, &s,
					ZDI_ST_MAKE(ZDI_SLOT_FREE, 0, 0, ZDI_ST_VERSION(s))))
			freed++;
	}
	return freed;
}

int zdi_attach_claim(zd_segment_t *seg)
{
	for (uint32_t a = 0; a < ZD_ATTACH_MAX; a++) {
		struct zdi_attach_entry *e = &seg->attach[a];
		uint32_t epoch;

		if (seg->ops->lock_try(seg, ZDI_LOCK_ATTACH(a)) != 0)
			continue;
		if (zdi_load_acquire_u32(&e->state) == ZDI_ENTRY_ACTIVE) {
			uint32_t n = attach_cleanup(seg, a);

			zdi_fetch_add_relaxed_u64(&seg->hdr->counters.loans_reclaimed, n);
		}
		epoch = zdi_load_relaxed_u32(&e->epoch) + 1u;
		zdi_store_relaxed_u32(&e->epoch, epoch);
		zdi_store_relaxed_u32((uint32_t *)&e->pid, (uint32_t)getpid());
		/* Pairs with the acquire loads of reap. */
		zdi_store_release_u32(&e->state, ZDI_ENTRY_ACTIVE);
		seg->attach_index = a;
		seg->attach_epoch = epoch & 0xffffu;
		return 0;
	}
	return -EUSERS;
}

void zdi_attach_release(zd_segment_t *seg)
{
	uint32_t a = seg->attach_index;
	uint32_t n = attach_cleanup(seg, a);

	zdi_fetch_add_relaxed_u64(&seg->hdr->counters.discards, n);
	zdi_store_release_u32(&seg->attach[a].state, ZDI_ENTRY_FREE);
	seg->ops->lock_release(seg, ZDI_LOCK_ATTACH(a));
	seg->attach_index = UINT32_MAX;
	zd_notify_bump(seg);
}

/* ---- readers ------------------------------------------------------------ */

/* Disconnects reader r (lock r held): out of the active mask and every slot
 * marked read for it, so no writer waits on it any more.  Its pins are left
 * alone: the views they protect may still be alive. */
static void reader_disconnect(zd_segment_t *seg, uint32_t r)
{
	uint64_t bit = zdi_bit(r);

	zdi_fetch_and_seqcst_u64(&seg->hdr->active_mask, ~bit);
	for (uint32_t i = 0; i < seg->slot_count; i++)
		zdi_fetch_or_acq_rel_u64(&zdi_slot(seg, i)->read_mask, bit);
	zd_notify_bump(seg);
}

/* Disconnects reader r and drops its pins (lock r held, its owner gone or
 * done), then frees the entry. */
void zdi_reader_cleanup(zd_segment_t *seg, uint32_t r)
{
	uint64_t bit = zdi_bit(r);

	reader_disconnect(seg, r);
	for (uint32_t i = 0; i < seg->slot_count; i++) {
		struct zdi_slot_header *h = zdi_slot(seg, i);

		if (zdi_load_relaxed_u64(&h->reader_pins) & bit)
			zdi_fetch_and_acq_rel_u64(&h->reader_pins, ~bit);
	}
	zdi_store_release_u32(&seg->readers[r].state, ZDI_ENTRY_FREE);
	zd_notify_bump(seg);
}

static uint64_t held_start(const zd_segment_t *seg, uint64_t next, uint64_t k)
{
	uint64_t start = next, below = next;

	/* k passes over the slots, each finding the newest sn below the last
	 * one found: O(k * slots) at join, with no allocation. */
	for (uint64_t n = 0; n < k; n++) {
		uint64_t found = UINT64_MAX;

		for (uint32_t i = 0; i < seg->slot_count; i++) {
			struct zdi_slot_header *h = zdi_slot(seg, i);
			uint64_t sn;

			if (ZDI_ST_KIND(zdi_load_acquire_u64(&h->state)) != ZDI_SLOT_COMMITTED)
				continue;
			sn = zdi_load_relaxed_u64(&h->sn);
			if (sn < below && (found == UINT64_MAX || sn > found))
				found = sn;
		}
		if (found == UINT64_MAX)
			break;
		start = below = found;
	}
	return start;
}

static void reader_claim(zd_segment_t *seg, uint32_t r, uint64_t join_last,
			 zd_reader_t *out)
{
	struct zdi_reader_entry *e = &seg->readers[r];
	uint64_t bit = zdi_bit(r);
	uint32_t epoch = zdi_load_relaxed_u32(&e->epoch) + 1u;
	uint64_t next, start;

	zdi_store_relaxed_u32(&e->epoch, epoch);
	zdi_store_relaxed_u32((uint32_t *)&e->pid, (uint32_t)getpid());
	zdi_store_relaxed_u64(&e->taken, 0);
	zdi_store_relaxed_u64(&e->dropped, 0);
	zdi_store_relaxed_u64(&e->last_sn, UINT64_MAX);
	/* Active first, then read next_sn: a sample that gets a sequence number
	 * >= start is committed after we count as active, or fixed up below. */
	zdi_fetch_or_seqcst_u64(&seg->hdr->active_mask, bit);
	next = zdi_load_seqcst_u64(&seg->hdr->next_sn);
	start = join_last == 0 ? next : held_start(seg, next, join_last);
	zdi_store_relaxed_u64(&e->start_sn, start);
	zdi_store_release_u32(&e->state, ZDI_ENTRY_ACTIVE);
	/* Older samples are marked read so we never hold them hostage; the
	 * last join_last ones are marked unread so we receive them. */
	for (uint32_t i = 0; i < seg->slot_count; i++) {
		struct zdi_slot_header *h = zdi_slot(seg, i);
		uint64_t s = zdi_load_acquire_u64(&h->state);

		if (ZDI_ST_KIND(s) != ZDI_SLOT_COMMITTED)
			continue;
		if (zdi_pin(seg, i, s, &h->reader_pins, bit) != 0)
			continue;       /* recycled: its new sample is ours */
		if (zdi_load_relaxed_u64(&h->sn) < start)
			zdi_fetch_or_acq_rel_u64(&h->read_mask, bit);
		else
			zdi_fetch_and_acq_rel_u64(&h->read_mask, ~bit);
		zdi_fetch_and_acq_rel_u64(&h->reader_pins, ~bit);
	}
	zd_notify_bump(seg);
	out->index = r;
	out->epoch = epoch;
	out->start_sn = start;
}

int zd_reader_open(zd_segment_t *seg, uint64_t join_last, zd_reader_t *out)
{
	if (out == NULL)
		return -EINVAL;
	/* Pass 0 looks at FREE entries; pass 1 tries ACTIVE ones whose owner
	 * may have died (their lock is free). */
	for (int pass = 0; pass < 2; pass++) {
		for (uint32_t r = 0; r < ZD_READER_MAX; r++) {
			struct zdi_reader_entry *e = &seg->readers[r];
			int active = zdi_load_acquire_u32(&e->state) == ZDI_ENTRY_ACTIVE;

			if (active != pass)
				continue;
			/* Claim r inside this handle first: the OFD lock alone
			 * cannot tell two threads of one handle apart. */
			if (zdi_fetch_or_acq_rel_u64(&seg->own_readers, zdi_bit(r)) &
			    zdi_bit(r))
				continue;
			if (seg->ops->lock_try(seg, ZDI_LOCK_READER(r)) != 0) {
				zdi_fetch_and_acq_rel_u64(&seg->own_readers, ~zdi_bit(r));
				continue;
			}
			if (zdi_load_acquire_u32(&e->state) == ZDI_ENTRY_ACTIVE) {
				zdi_reader_cleanup(seg, r);
				ZDI_COUNT(seg, readers_reaped);
			}
			reader_claim(seg, r, join_last, out);
			return 0;
		}
	}
	return -EUSERS;
}

/* 1 when the creator is known to be dead.  Asks the backend at most once
 * per ZD_CREATOR_CHECK_NS per handle; "dead" is kept (a creator never comes
 * back, and a replacer holds its lock only for a moment). */
static int creator_gone(zd_segment_t *seg)
{
	uint64_t now, last;

	if (zdi_load_relaxed_u32(&seg->creator_dead))
		return 1;
	now = zd_now_ns();
	last = zdi_load_relaxed_u64(&seg->last_creator_check_ns);
	if (last != 0 && now - last < ZD_CREATOR_CHECK_NS)
		return 0;
	zdi_store_relaxed_u64(&seg->last_creator_check_ns, now);
	if (zd_segment_creator_alive(seg) != 0)
		return 0;               /* alive, or unknown: keep waiting */
	zdi_store_relaxed_u32(&seg->creator_dead, 1);
	return 1;
}

/* -EPIPE (goodbye), -EOWNERDEAD (the creator died without one) or 0. */
static int stream_end(zd_segment_t *seg)
{
	/* The lock is asked first: a creator that closes stores goodbye
	 * before its descriptor (and lock) goes, so a free lock with no
	 * goodbye seen after it means the creator died. */
	int dead = creator_gone(seg);

	/* Pairs with the creator's release store in close. */
	if (zdi_load_acquire_u32(&seg->hdr->goodbye))
		return -EPIPE;
	return dead ? -EOWNERDEAD : 0;
}

static int reader_live(const zd_segment_t *seg, const zd_reader_t *r)
{
	const struct zdi_reader_entry *e;

	if (r == NULL || r->index >= ZD_READER_MAX)
		return -EINVAL;
	e = &seg->readers[r->index];
	if (!(zdi_load_acquire_u64(&seg->own_readers) & zdi_bit(r->index)) ||
	    zdi_load_acquire_u32(&e->state) != ZDI_ENTRY_ACTIVE ||
	    zdi_load_relaxed_u32(&e->epoch) != r->epoch)
		return -ENOTCONN;
	return 0;
}

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

static int take(zd_segment_t *seg, zd_reader_t *r, zd_view_t *view)
{
	struct zdi_reader_entry *e;
	uint64_t bit;
	int ended = 0;
	int rc = reader_live(seg, r);

	if (rc < 0)
		return rc;
	e = &seg->readers[r->index];
	bit = zdi_bit(r->index);
	for (unsigned tries = 0;; tries++) {
		uint32_t best;
		uint64_t best_sn, best_s;
		struct zdi_slot_header *h;

		/* Each retry below means the slot moved on under us (another
		 * thread or process made progress); a bounded number of them,
		 * then the caller waits for the next change. */
		if (tries == ZDI_TAKE_TRIES)
			return -EAGAIN;
		rc = zdi_scan_oldest(seg, r->index, r->start_sn, &best, &best_sn,
				     &best_s);
		if (rc == -EINPROGRESS) {
			/* An older commit is in flight; if its writer died, the
			 * reaper frees the loan and we go on. */
			zdi_maybe_reap(seg, 0);
			return -EAGAIN;
		}
		if (rc < 0) {
			if (ended != 0)
				return ended;   /* the second scan found nothing */
			ended = stream_end(seg);
			if (ended == 0)
				return -EAGAIN;
			continue;
		}
		h = zdi_slot(seg, best);
		rc = zdi_pin(seg, best, best_s, &h->reader_pins, bit);
		if (rc == -EBUSY)
			rc = pin_refused(seg, r->index, best, best_s);
		if (rc == -EBADMSG)
			return rc;
		if (rc != 0)
			continue;       /* recycled meanwhile, or another thread has it */
		if (zdi_fetch_or_acq_rel_u64(&h->read_mask, bit) & bit) {
			zdi_unpin(seg, best, &h->reader_pins, bit);
			continue;
		}
		rc = zdi_view_fill(seg, best, best_s, (int32_t)r->index, view);
		if (rc < 0) {
			zdi_unpin(seg, best, &h->reader_pins, bit);
			ZDI_COUNT(seg, corrupt_dropped);
			return rc;
		}
		zdi_fetch_add_relaxed_u64(&e->taken, 1);
		zdi_store_relaxed_u64(&e->last_sn, view->sn);
		return 0;
	}
}

int zd_reader_take(zd_segment_t *seg, zd_reader_t *r, zd_view_t *view)
{
	uint32_t idx;
	int rc;

	if (r == NULL || r->index >= ZD_READER_MAX)
		return take(seg, r, view);      /* -EINVAL */
	idx = r->index;
	zdi_takers_enter(seg, idx);
	rc = take(seg, r, view);
	zdi_takers_leave(seg, idx);
	return rc;
}

int zd_reader_wait_take(zd_segment_t *seg, zd_reader_t *r, zd_view_t *view,
			uint64_t deadline_ns, uint64_t spin_ns)
{
	for (;;) {
		uint64_t gen = zd_notify_generation(seg);
		int rc = zd_reader_take(seg, r, view);
		uint64_t now, until;

		if (rc != -EAGAIN)
			return rc;
		/* Park in slices: a creator that dies wakes nobody. */
		now = zd_now_ns();
		until = deadline_ns > now && deadline_ns - now > ZD_CREATOR_CHECK_NS
				? now + ZD_CREATOR_CHECK_NS
				: deadline_ns;
		rc = zd_notify_wait(seg, gen, until, spin_ns);
		if (rc == -EINTR)
			return rc;
		if (rc == -ETIMEDOUT && until == deadline_ns) {
			rc = zd_reader_take(seg, r, view);
			return rc == -EAGAIN ? -ETIMEDOUT : rc;
		}
	}
}

int zd_reader_stats(const zd_segment_t *seg, const zd_reader_t *r,
		    zd_reader_stats_t *out)
{
	const struct zdi_reader_entry *e;
	uint64_t next, done;
	int rc = reader_live(seg, r);

	if (rc < 0)
		return rc;
	e = &seg->readers[r->index];
	out->taken = zdi_load_relaxed_u64(&e->taken);
	out->dropped = zdi_load_relaxed_u64(&e->dropped);
	out->last_sn = zdi_load_relaxed_u64(&e->last_sn);
	next = zdi_load_relaxed_u64(&seg->hdr->next_sn);
	done = out->last_sn == UINT64_MAX ? r->start_sn : out->last_sn + 1u;
	out->lag = next > done ? next - done : 0;
	return 0;
}

int zd_reader_close(zd_segment_t *seg, zd_reader_t *r)
{
	uint64_t bit;
	int rc = reader_live(seg, r);

	if (rc < 0)
		return rc;
	bit = zdi_bit(r->index);
	reader_disconnect(seg, r->index);
	for (uint32_t i = 0; i < seg->slot_count; i++)
		if (zdi_load_acquire_u64(&zdi_slot(seg, i)->reader_pins) & bit)
			return -EBUSY;  /* index kept until the views are released */
	zdi_reader_cleanup(seg, r->index);
	zdi_fetch_and_acq_rel_u64(&seg->own_readers, ~bit);
	seg->ops->lock_release(seg, ZDI_LOCK_READER(r->index));
	return 0;
}

/* ---- reap --------------------------------------------------------------- */

int zd_segment_reap(zd_segment_t *seg, uint32_t *readers_reaped,
		    uint32_t *loans_reclaimed)
{
	uint64_t own = zdi_load_acquire_u64(&seg->own_readers);
	uint32_t nr = 0, nl = 0;

	for (uint32_t r = 0; r < ZD_READER_MAX; r++) {
		if ((own & zdi_bit(r)) ||
		    zdi_load_acquire_u32(&seg->readers[r].state) != ZDI_ENTRY_ACTIVE)
			continue;
		if (seg->ops->lock_try(seg, ZDI_LOCK_READER(r)) != 0)
			continue;       /* alive */
		if (zdi_load_acquire_u32(&seg->readers[r].state) == ZDI_ENTRY_ACTIVE) {
			zdi_reader_cleanup(seg, r);
			ZDI_COUNT(seg, readers_reaped);
			nr++;
		}
		seg->ops->lock_release(seg, ZDI_LOCK_READER(r));
	}
	for (uint32_t a = 0; a < ZD_ATTACH_MAX; a++) {
		if (a == seg->attach_index ||
		    zdi_load_acquire_u32(&seg->attach[a].state) != ZDI_ENTRY_ACTIVE)
			continue;
		if (seg->ops->lock_try(seg, ZDI_LOCK_ATTACH(a)) != 0)
			continue;
		if (zdi_load_acquire_u32(&seg->attach[a].state) == ZDI_ENTRY_ACTIVE) {
			nl += attach_cleanup(seg, a);
			zdi_store_release_u32(&seg->attach[a].state, ZDI_ENTRY_FREE);
		}
		seg->ops->lock_release(seg, ZDI_LOCK_ATTACH(a));
	}
	/* Loans whose owner entry is gone or reused (or a corrupt owner). */
	for (uint32_t i = 0; i < seg->slot_count; i++) {
		struct zdi_slot_header *h = zdi_slot(seg, i);
		uint64_t s = zdi_load_acquire_u64(&h->state);
		uint32_t a = ZDI_ST_OWNER(s);

		if (ZDI_ST_KIND(s) != ZDI_SLOT_LOANED)
			continue;
		if (a < ZD_ATTACH_MAX &&
		    zdi_load_acquire_u32(&seg->attach[a].state) == ZDI_ENTRY_ACTIVE &&
		    (zdi_load_relaxed_u32(&seg->attach[a].epoch) & 0xffffu) == ZDI_ST_EPOCH(s))
			continue;
		if (zdi_cas_acq_rel_u64(&h->state, &s,
					ZDI_ST_MAKE(ZDI_SLOT_FREE, 0, 0, ZDI_ST_VERSION(s))))
			nl++;
	}
	if (nl > 0) {
		zdi_fetch_add_relaxed_u64(&seg->hdr->counters.loans_reclaimed, nl);
		zd_notify_bump(seg);
	}
	if (readers_reaped != NULL)
		*readers_reaped = nr;
	if (loans_reclaimed != NULL)
		*loans_reclaimed = nl;
	return 0;
}
