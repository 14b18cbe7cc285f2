/* zdshm.h — zero-copy shared-memory slots for processes on one host.
 *
 * DESIGN NOTE
 * ===========
 * A segment is one contiguous region (a process-private memfd for the memory
 * backend, a POSIX shared-memory object for the posix backend, a sealed
 * nameless memfd shared by descriptor for the anonymous backend) with this
 * layout:
 *
 *   offset 0            segment header (512 B): immutable geometry written
 *                       once by the creator, then lifecycle flags, the
 *                       sequence counter, the notify word, the active-reader
 *                       mask and the segment counters, each hot word on its
 *                       own 64-byte cache line
 *   readers_offset      reader table: ZD_READER_MAX entries of 64 B
 *   attach_offset       attachment table: ZD_ATTACH_MAX entries of 64 B
 *                       (one per open handle; it owns that handle's loans)
 *   slots_offset        slot_count slots of slot_stride bytes each:
 *                       a 128 B slot header (64 B control + 64 B user meta)
 *                       then slot_capacity data bytes, padded to 64 B
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
 *    │   evict_stale / reclaim free it, or reserve     (set/clear a bit in
 *    └──────────── takes it (CAS) once every active reader ◄─ a pin mask)
 *                  has read it and no view pins it
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
 * Order: a commit stores its sequence number into the slot while it is still
 * loaned, then takes it from the segment counter (CAS).  A reader delivers the
 * unread committed sample with the smallest sequence number and holds back
 * while a loan with a smaller one is being committed, so samples arrive in
 * sequence-number order, across writers too, and never twice (the read bit is
 * set while the slot is pinned, so it cannot land on a later sample).
 *
 * Memory orderings:
 *   - commit writes data, meta, sn, size, time and read mask, then stores the
 *     state word with release; readers load it with acquire before reading
 *     any of those (and re-check the version after pinning);
 *   - pins and recycling are a Dekker pair (seq_cst): a pinner sets its bit
 *     then re-loads the state; a recycler CASes the state then loads the pin
 *     masks and gives the slot back if it sees a pin (slot.c); the read mask
 *     is a fetch_or whose returned value decides whether the caller set it;
 *   - the notify word and the waiter count form a Dekker pair and use
 *     seq_cst: a notifier bumps the word then loads the waiter count, a
 *     waiter raises the count then re-loads the word, so a wake-up is never
 *     lost and a notifier with no sleeper makes no system call;
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

#endif
