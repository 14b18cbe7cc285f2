/* reader.c — take, wait, report, close.
 *
 * End of stream: a take that finds nothing unread asks whether the stream
 * has ended (goodbye flag, or the creator's liveness lock free) and, if so,
 * looks once more before it says so: a sample committed before the end is
 * delivered even if the first look ran before its commit.
 */
#include "internal.h"

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

static int take(zd_segment_t *seg, zd_reader_t *r, zd_view_t *view)
{
	int ended = 0;
	int rc = zdi_reader_live(seg, r);

	if (rc < 0)
		return rc;
	for (;;) {
		if (r->flags & ZD_READER_LATEST)
			rc = zdi_reader_deliver_latest(seg, r->index, view,
						       &r->skipped);
		else
			rc = zdi_reader_deliver(seg, r->index, view);
		if (rc == -EINPROGRESS) {
			/* An older commit is in flight; if its writer died, the
			 * reaper frees the loan and we go on. */
			zdi_maybe_reap(seg, 0);
			return -EAGAIN;
		}
		if (rc != -EAGAIN)
			return rc;
		if (ended != 0)
			return ended;   /* the second look found nothing */
		ended = stream_end(seg);
		if (ended == 0)
			return -EAGAIN;
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
		/* Readers sleep on the data channel only (notify.c). */
		uint32_t gen = zdi_load_acquire_u32(&seg->hdr->data.gen);
		int rc = zd_reader_take(seg, r, view);
		uint64_t now, until;

		if (rc != -EAGAIN)
			return rc;
		/* Park in slices: a creator that dies wakes nobody. */
		now = zd_now_ns();
		until = deadline_ns > now && deadline_ns - now > ZD_CREATOR_CHECK_NS
				? now + ZD_CREATOR_CHECK_NS
				: deadline_ns;
		rc = zdi_wait(seg, &seg->hdr->data, gen, until, spin_ns);
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
	int rc = zdi_reader_live(seg, r);

	if (rc < 0)
		return rc;
	e = &seg->readers[r->index];
	out->taken = zdi_load_relaxed_u64(&e->taken);
	out->dropped = zdi_load_relaxed_u64(&e->dropped);
	out->last_sn = zdi_load_relaxed_u64(&e->last_sn);
	out->skipped = zdi_load_relaxed_u64(&r->skipped);
	next = zdi_load_relaxed_u64(&seg->hdr->next_sn);
	done = out->last_sn == UINT64_MAX ? r->start_sn : out->last_sn + 1u;
	out->lag = next > done ? next - done : 0;
	return 0;
}

/* 1 if a slot still holds a pin of reader r (bit). */
static int reader_pinned(zd_segment_t *seg, uint64_t bit)
{
	for (uint32_t i = 0; i < seg->geo.slot_count; i++)
		if (zdi_load_seqcst_u64(&zdi_slot(seg, i)->reader_pins) & bit)
			return 1;
	return 0;
}

/* Frees the entry of closed reader r if no view pins it any more and this
 * thread is the one that takes r out of closing_readers (fetch_and returns
 * the old mask: of two racing last releases exactly one frees).  Returns 1
 * if this call freed it. */
static int reader_free_if_unpinned(zd_segment_t *seg, uint32_t r)
{
	uint64_t bit = zdi_bit(r);

	if (reader_pinned(seg, bit))
		return 0;
	if (!(zdi_fetch_and_acq_rel_u64(&seg->closing_readers, ~bit) & bit))
		return 0;
	zdi_reader_cleanup(seg, r);
	zdi_ready_close_reader(seg, r);
	zdi_fetch_and_acq_rel_u64(&seg->own_readers, ~bit);
	seg->ops->lock_release(seg, ZDI_LOCK_READER(r));
	return 1;
}

void zdi_reader_close_unpinned(zd_segment_t *seg, uint32_t r)
{
	/* seq_cst like the unpin before it and like zd_reader_close's
	 * fetch_or and pin scan (store, then load, on both sides): either
	 * this load sees the closing bit, or the close's scan sees our pin
	 * gone; so the last release and the close never both miss. */
	if (zdi_load_seqcst_u64(&seg->closing_readers) & zdi_bit(r))
		(void)reader_free_if_unpinned(seg, r);
}

int zd_reader_close(zd_segment_t *seg, zd_reader_t *r)
{
	uint64_t bit;
	int rc = zdi_reader_live(seg, r);

	if (rc < 0)
		return rc;
	bit = zdi_bit(r->index);
	if (zdi_load_acquire_u64(&seg->closing_readers) & bit)
		return -EBUSY;          /* closed already, views still pinned */
	zdi_reader_disconnect(seg, r->index);
	/* Closing first, then the pin scan (in reader_free_if_unpinned): a
	 * view released meanwhile either sees the bit and frees the entry
	 * itself, or dropped its pin before our scan. */
	zdi_fetch_or_seqcst_u64(&seg->closing_readers, bit);
	/* Decided by what this call did, never by a second look at the
	 * mask: once freed, the index may belong to a new reader already. */
	if (reader_free_if_unpinned(seg, r->index))
		return 0;
	return -EBUSY;  /* freed by the release of its last view */
}

int zd_segment_close_readers(zd_segment_t *seg)
{
	uint64_t own = zdi_load_acquire_u64(&seg->own_readers);

	for (uint32_t i = 0; i < ZD_READER_MAX; i++) {
		zd_reader_t r = {0};

		if (!(own & zdi_bit(i)))
			continue;
		r.index = i;
		r.epoch = zdi_load_relaxed_u32(&seg->readers[i].epoch);
		(void)zd_reader_close(seg, &r);
	}
	return 0;
}
