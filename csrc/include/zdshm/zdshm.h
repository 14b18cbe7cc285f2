/* zdshm.h — zero-copy shared-memory slots for processes on one host.
 *
 * DESIGN NOTE
 * ===========
 * A segment is one contiguous region (a process-private memfd for the memory
 * backend, a POSIX shared-memory object for the posix backend, a sealed
 * nameless memfd shared by descriptor for the anonymous backend) with this
 * layout:
 *
 *   offset 0            segment header (2 KiB): immutable geometry written
 *                       once by the creator (zd_geometry_t), then lifecycle
 *                       flags, the sequence counter, the two wake-up
 *                       channels, the active-reader mask, the ring tail and
 *                       the segment counters, each hot word on its own
 *                       64-byte cache line; at 1 KiB the immutable class
 *                       table (zd_class_t: count, first slot, capacity,
 *                       stride, offset of each size class)
 *   readers_offset      reader table: ZD_READER_MAX entries of 64 B
 *   attach_offset       attachment table: ZD_ATTACH_MAX entries of 64 B
 *                       (one per open handle; it owns that handle's loans)
 *   ring_offset         delivery ring: ring_size 8-byte entries, a power of
 *                       two >= 2 * slot_count; entry sn % ring_size says
 *                       which slot holds sequence number sn
 *   free_offset         free map: one bit per FREE slot, one summary bit
 *                       per 64-bit word of it
 *   old_offset          old map: samples still held whose ring entry a
 *                       later commit took over
 *   slots_offset        slot_count slots of slot_stride bytes each:
 *                       a 128 B slot header (64 B control + 64 B user meta)
 *                       then slot_capacity data bytes, padded to 64 B; with
 *                       size classes, each class's slots (its own capacity
 *                       and stride) right after the previous class's, in
 *                       order of capacity, numbered by one global index
 *
 * Size classes share everything but the slot area: one ring, one sequence
 * counter, one free map and one old map over the global slot index.  A loan
 * of n bytes searches (pool.c) the smallest class whose capacity holds n,
 * then each larger class, restricted to that class's index range; the
 * overflow policies then apply to all classes that fit.
 *
 * Every word that more than one process changes is in the segment, so any
 * attached process may loan, commit, take and release.
 *
 * Slot state machine (one 64-bit state word per slot, changed only by CAS):
 *
 *        reserve (CAS)            commit (CAS, release)
 *   FREE ───────────────► LOANED ─────────────────────────► COMMITTED
 *    ▲   ◄──────────────── │  discard / owner dead             │  ▲ │
 *    │                                                      pin│ │unpin
 *    │   evict_stale / reclaim free it, or a loan      (set/clear a bit in
 *    └──────────── takes it (CAS) once no active reader ◄─── a pin mask)
 *                  needs it and no view pins it
 *
 *   bits 0..1   kind: FREE, LOANED, COMMITTED
 *   bits 2..15  LOANED: owner attachment index
 *   bits 16..31 LOANED: low 16 bits of the owner attachment's epoch
 *   bits 32..63 version, incremented by every commit (defeats ABA on pins)
 *
 * A committed slot also has a read mask (bit r set: reader r has read it or
 * no longer needs it), two pin masks (bit r: reader r holds a view; bit a:
 * attachment a holds views through zd_slot_acquire), its 64-bit sequence
 * number, size and CLOCK_MONOTONIC commit time.  Pins are masks, not counts,
 * so the pins of a process that died can be found and dropped.  A slot is
 * recycled only when both pin masks are 0: no view outlives its sample.
 *
 * Delivery (delivery.c): a commit stores its sequence number into the slot
 * while it is still loaned, takes it from the segment counter (CAS), writes
 * the ring entry (the sn's lap and the slot), then publishes the state word.
 * A reader keeps the next sn it expects (its cursor) and finds that sample
 * with one ring load and one slot-header load, whatever the slot count; the
 * slot is the authority (COMMITTED with that sn), the entry only a pointer.
 * An entry not yet written means "in flight": the reader holds back, so
 * samples arrive in sequence-number order, across writers too, and never
 * twice (the cursor moves past an sn only while its sample is pinned or
 * once it is gone).  A sample recycled before a reader reached it is
 * skipped; whoever recycled it counted it as that reader's drop.
 *
 * Loans (pool.c): the FREE slot with the lowest index from the free map;
 * else the oldest held sample that nobody needs, found from the ring's tail
 * (a reader needs every sample from its cursor on, so the walk stops at the
 * first one a reader still needs).  A segment keeps its newest samples for
 * readers that join with join_last.
 *
 * Wake-ups (notify.c): readers sleep on the data channel (commits, the
 * goodbye), writers on the space channel (a release that leaves a slot
 * reusable, a discard, an eviction, a reap, a reader leaving).  A commit
 * never wakes a writer and a release never wakes a reader; a notifier with
 * nobody asleep on its channel makes no system call.
 *
 * Memory orderings:
 *   - commit writes data, meta, sn, size, time and read mask, then stores the
 *     state word with release; readers load it with acquire before reading
 *     any of those (and re-check the version after pinning);
 *   - pins and recycling are a Dekker pair (seq_cst): a pinner sets its bit
 *     then re-loads the state; a recycler CASes the state then loads the pin
 *     masks and gives the slot back if it sees a pin (slot.c); the read mask
 *     is a fetch_or whose returned value decides whether the caller set it;
 *   - each channel's word and its waiter count form a Dekker pair and use
 *     seq_cst: a notifier bumps the word then loads the waiter count, a
 *     waiter raises the count then re-loads the word, so a wake-up is never
 *     lost and a notifier with no sleeper makes no system call;
 *   - the ring entry is stored with release after the slot's sn, and loaded
 *     with acquire before it; the last unpinner of a slot re-loads the
 *     other pins, the read mask and the active mask (seq_cst) after its
 *     fetch_and, so of two last unpinners at least one wakes the writers;
 *   - the init flag is stored last with release at creation; attach loads it
 *     with acquire before copying the immutable header to private memory.
 *
 * Liveness: a reader or attachment entry is owned while its owner holds an
 * open-file-description lock on one byte of the shared-memory object
 * (F_OFD_SETLK); the kernel drops it when the process dies.  Whoever takes
 * the lock of an entry still marked ACTIVE knows its owner is gone and cleans
 * up; the entry's epoch lets a handle notice that its entry was reused.
 *
 * Two mappings: every handle maps the object twice, read-write (the control
 * words, and the data of its loans) and read-only (what zd_view_t.data
 * points into), so a consumer that writes through a sample faults instead
 * of changing what every other reader sees.
 *
 * The creator's handle holds one more byte, after the attachment locks, from
 * creation until it closes.  Anyone can ask whether it is held without
 * taking it (F_OFD_GETLK, also on a read-only descriptor): a reader with
 * nothing left to take asks now and then and ends with -EOWNERDEAD when the
 * creator died without its goodbye; describe reports it and counts the
 * entries whose lock is held.  A stale segment (creator lock free, no other
 * lock held) may be replaced: the replacer takes the creator lock of the old
 * object first, so two replacers (or a replacer and a late creator) exclude
 * each other, and it unlinks only the inode it checked.
 */
#ifndef ZDSHM_ZDSHM_H
#define ZDSHM_ZDSHM_H

#include "zdshm/error.h"
#include "zdshm/counters.h"
#include "zdshm/segment.h"
#include "zdshm/slot.h"
#include "zdshm/reader.h"
#include "zdshm/writer.h"
#include "zdshm/notify.h"
#include "zdshm/ready.h"

#endif
