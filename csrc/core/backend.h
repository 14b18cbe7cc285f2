/* backend.h — the contract every storage backend implements.
 *
 * The slot logic (slot.c, ring.c, pool.c, delivery.c, registry.c, reader.c,
 * writer.c, notify.c) is the same for all
 * backends: it works on a mapped region with the layout of layout.h.  A
 * backend only decides where that region lives, how liveness is proven and
 * which futex flavour wakes sleepers.  Each operation:
 *
 *   lock_try(seg, idx)  Take liveness lock idx (0..ZD_READER_MAX-1 readers,
 *                       then ZD_ATTACH_MAX attachments, then the creator's:
 *                       ZDI_LOCK_* below) for this handle, without
 *                       blocking.  Returns 0 when taken (then no live
 *                       process owns that entry), -EAGAIN when someone else
 *                       holds it, another -errno on failure.  Must not report
 *                       success for a lock held by a live process.  The
 *                       kernel (or the backend) releases it when the owner
 *                       dies.  Taking a lock this handle already holds is a
 *                       caller error.
 *   lock_release(seg, idx)  Releases a lock this handle holds.  No errors.
 *   lock_held(seg, idx) Asks whether another handle holds lock idx, without
 *                       taking it (posix: F_OFD_GETLK, which works on the
 *                       read-only descriptor of describe).  Returns 1 (held:
 *                       its owner is alive), 0 (free), -errno.  A lock this
 *                       handle holds itself reads as free; callers count
 *                       their own entries apart.  The memory backend has one
 *                       handle per segment: it reports its own flags.
 *   futex_wait(word, expected, deadline_ns)  Sleeps while *word == expected,
 *                       until woken or CLOCK_MONOTONIC reaches deadline_ns
 *                       (UINT64_MAX: none).  Returns 0 (woken or the value
 *                       differs), -ETIMEDOUT, -EINTR.  May wake spuriously.
 *   futex_wait2(a, ea, b, eb, deadline_ns)  Sleeps while both words hold
 *                       their expected values; otherwise as futex_wait.
 *   futex_wake(word)    Wakes every sleeper on word.  No errors.
 *   unmap(seg)          Releases the region and every lock of this handle.
 *
 * Backends may not keep any state other processes need outside the region.
 */
#ifndef ZDSHM_BACKEND_H
#define ZDSHM_BACKEND_H

#include <stdint.h>

#include "zdshm/segment.h"

struct zdi_backend_ops {
	zd_backend_kind_t kind;
	const char *name;
	int (*lock_try)(zd_segment_t *seg, uint32_t idx);
	void (*lock_release)(zd_segment_t *seg, uint32_t idx);
	int (*lock_held)(const zd_segment_t *seg, uint32_t idx);
	int (*futex_wait)(uint32_t *word, uint32_t expected, uint64_t deadline_ns);
	int (*futex_wait2)(uint32_t *a, uint32_t ea, uint32_t *b, uint32_t eb,
			   uint64_t deadline_ns);
	void (*futex_wake)(uint32_t *word);
	void (*unmap)(zd_segment_t *seg);
};

extern const struct zdi_backend_ops zdi_backend_memory;
extern const struct zdi_backend_ops zdi_backend_posix;
extern const struct zdi_backend_ops zdi_backend_anonymous;

#define ZDI_LOCK_READER(r) ((uint32_t)(r))
#define ZDI_LOCK_ATTACH(a) ((uint32_t)(ZD_READER_MAX + (a)))
/* The creator's handle holds this one from before the header is written
 * until it closes (or its process dies); a replacer of a stale segment takes
 * it too, so two replacers exclude each other. */
#define ZDI_LOCK_CREATOR ((uint32_t)(ZD_READER_MAX + ZD_ATTACH_MAX))
#define ZDI_LOCK_COUNT (ZD_READER_MAX + ZD_ATTACH_MAX + 1u)

#endif
