/* backend.h — the contract every storage backend implements.
 *
 * The slot logic (slot.c, reader.c, writer.c, notify.c) is the same for all
 * backends: it works on a mapped region with the layout of layout.h.  A
 * backend only decides where that region lives, how liveness is proven and
 * which futex flavour wakes sleepers.  Each operation:
 *
 *   lock_try(seg, idx)  Take liveness lock idx (0..ZD_READER_MAX-1 readers,
 *                       then ZD_ATTACH_MAX attachments) for this handle,
 *                       without blocking.  Returns 0 when taken (then no live
 *                       process owns that entry), -EAGAIN when someone else
 *                       holds it, another -errno on failure.  Must not report
 *                       success for a lock held by a live process.  The
 *                       kernel (or the backend) releases it when the owner
 *                       dies.  Taking a lock this handle already holds is a
 *                       caller error.
 *   lock_release(seg, idx)  Releases a lock this handle holds.  No errors.
 *   futex_wait(word, expected, deadline_ns)  Sleeps while *word == expected,
 *                       until woken or CLOCK_MONOTONIC reaches deadline_ns
 *                       (UINT64_MAX: none).  Returns 0 (woken or the value
 *                       differs), -ETIMEDOUT, -EINTR.  May wake spuriously.
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
	int (*futex_wait)(uint32_t *word, uint32_t expected, uint64_t deadline_ns);
	void (*futex_wake)(uint32_t *word);
	void (*unmap)(zd_segment_t *seg);
};

extern const struct zdi_backend_ops zdi_backend_memory;
extern const struct zdi_backend_ops zdi_backend_posix;
extern const struct zdi_backend_ops zdi_backend_anonymous;

#define ZDI_LOCK_READER(r) ((uint32_t)(r))
#define ZDI_LOCK_ATTACH(a) ((uint32_t)(ZD_READER_MAX + (a)))
#define ZDI_LOCK_COUNT (ZD_READER_MAX + ZD_ATTACH_MAX)

#endif
