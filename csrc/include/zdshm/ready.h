/* zdshm/ready.h — readiness as a file descriptor, for event loops.
 *
 * A reader (or a writer's handle) can get a descriptor that becomes
 * readable when it has something to do: a sample to take or the creator's
 * goodbye (readers), a slot that came free (writers).  It works with
 * select, poll, epoll, asyncio's loop.add_reader, trio and anyio, and the
 * process that makes it readable may be any process attached to the
 * segment.
 *
 * Mechanism: one socket per entry.  The descriptor is an AF_UNIX SOCK_DGRAM
 * socket (non-blocking, close-on-exec) bound by its owner in the abstract
 * namespace, under a name made of the segment's identity (creation time,
 * creator pid), the entry (reader index, or attachment index) and a random
 * 64-bit token that the owner stores in its entry of the segment.  A
 * notifier reads the token from the entry and sends one 1-byte datagram to
 * that name.  Why this mechanism:
 *   - cross-process with nothing to hand over: the name is derived from
 *     the segment, so no descriptor passing (an eventfd would have to be
 *     sent over a unix socket to every possible writer, and each writer
 *     would have to keep one descriptor per reader);
 *   - nothing in the file system to leak: an abstract name disappears with
 *     its last descriptor, so the kernel cleans up when the reader closes
 *     and also when its process dies (a FIFO or a named socket would leave
 *     a file behind after a crash);
 *   - a plain descriptor that every event loop understands;
 *   - a datagram that finds nobody (the reader died) fails at once with
 *     ECONNREFUSED: it never blocks the writer and is only counted.
 * A third party that learns a name can at most make the descriptor
 * readable, which costs a spurious wake-up: readiness is a hint, the
 * caller re-checks.
 *
 * One-shot arming, so that a commit makes no system call when nobody waits
 * on a descriptor: a waiter arms its entry (a flag in the entry and a count
 * of armed entries per channel, seq_cst) and then re-checks the channel's
 * event count; a notifier bumps the event count (seq_cst) and then reads
 * the armed count, and only when it is not zero does it look at the entries,
 * disarm each armed one (an exchange: exactly one notifier wins it) and
 * send.  The same Dekker pair as the futex waiter count (notify.c): either
 * the notifier sees the armed entry and sends, or the waiter sees the new
 * count and does not wait.  After a datagram the entry is disarmed: the
 * waiter drains its socket and arms again before its next wait.
 *
 * The descriptors belong to the handle: a reader's is closed by
 * zd_reader_close, the writer's by zd_segment_close.  The caller must not
 * close them itself.  Calls for one reader must not run concurrently.
 */
#ifndef ZDSHM_READY_H
#define ZDSHM_READY_H

#include <stdint.h>

#include "zdshm/reader.h"
#include "zdshm/segment.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The readiness descriptor of reader r, bound on first call.  It becomes
 * readable after zd_reader_ready_arm, at the next commit or goodbye.
 * Returns the descriptor (>= 0), -ENOTCONN (not this handle's live
 * reader), -EINVAL, -EMFILE, -ENFILE, -ENOMEM, -EADDRINUSE (no free name
 * after several random tokens). */
int zd_reader_ready_fd(zd_segment_t *seg, const zd_reader_t *r);

/* Drains reader r's descriptor (binding it first if needed) and arms r for
 * one datagram, then compares the data event count with the low half of
 * `last` (a zd_notify_generation taken before the caller's last take).
 * Returns 0 (armed, nothing happened since `last`: wait for the descriptor),
 * 1 (armed, but the count moved: take again before waiting), or the codes
 * of zd_reader_ready_fd. */
int zd_reader_ready_arm(zd_segment_t *seg, const zd_reader_t *r,
			uint64_t last);

/* Disarms reader r (a waiter that stops waiting).  Harmless when not armed. */
void zd_reader_ready_disarm(zd_segment_t *seg, const zd_reader_t *r);

/* Makes reader r's descriptor readable now (one datagram to itself, counted
 * in ready_sends) and disarms it: for a caller that knows a sample is
 * waiting and wants the event loop to come back to it.
 * Returns 0 or the codes of zd_reader_ready_fd. */
int zd_reader_ready_poke(zd_segment_t *seg, const zd_reader_t *r);

/* The same for this handle's writers: the descriptor of the handle's
 * attachment entry, readable after an arm when a slot may have come free
 * (a release, a discard, an eviction, a reap, a reader that left).  arm
 * compares the space event count with the high half of `last`.  One
 * descriptor per handle: several waiting writers of one handle share it.
 * Returns as the reader functions, with -ENOTCONN for a handle that has no
 * attachment entry. */
int zd_writer_ready_fd(zd_segment_t *seg);
int zd_writer_ready_arm(zd_segment_t *seg, uint64_t last);
void zd_writer_ready_disarm(zd_segment_t *seg);

#ifdef __cplusplus
}
#endif
#endif
