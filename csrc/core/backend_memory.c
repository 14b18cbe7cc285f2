/* backend_memory.c — the segment on the heap, for the threads of one
 * process.  The reference implementation: same layout and slot logic as the
 * posix backend; liveness locks are flags in the handle (a process cannot
 * outlive its own heap), futexes are process-private. */
#include <stdlib.h>
#include <string.h>

#include "futex.h"
#include "internal.h"

static int memory_lock_try(zd_segment_t *seg, uint32_t idx)
{
	uint8_t expected = 0;

	if (__atomic_compare_exchange_n(&seg->mem_locks[idx], &expected, 1, false,
					__ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
		return 0;
	return -EAGAIN;
}

static void memory_lock_release(zd_segment_t *seg, uint32_t idx)
{
	__atomic_store_n(&seg->mem_locks[idx], 0, __ATOMIC_RELEASE);
}

static int memory_lock_held(const zd_segment_t *seg, uint32_t idx)
{
	return __atomic_load_n(&seg->mem_locks[idx], __ATOMIC_ACQUIRE) != 0;
}

static int memory_futex_wait(uint32_t *word, uint32_t expected, uint64_t deadline_ns)
{
	return zdi_futex_wait(word, expected, deadline_ns, 1);
}

static void memory_futex_wake(uint32_t *word)
{
	zdi_futex_wake(word, 1);
}

static void memory_unmap(zd_segment_t *seg)
{
	free(seg->base);
	free(seg->mem_locks);
	seg->base = NULL;
	seg->mem_locks = NULL;
}

const struct zdi_backend_ops zdi_backend_memory = {
	.kind = ZD_BACKEND_MEMORY,
	.name = "memory",
	.lock_try = memory_lock_try,
	.lock_release = memory_lock_release,
	.lock_held = memory_lock_held,
	.futex_wait = memory_futex_wait,
	.futex_wake = memory_futex_wake,
	.unmap = memory_unmap,
};

int zd_segment_create_memory(const zd_config_t *cfg, zd_segment_t **out)
{
	uint64_t stride, total;
	zd_segment_t *seg;
	int rc;

	if (out == NULL)
		return -EINVAL;
	rc = zd_config_validate(cfg);
	if (rc < 0)
		return rc;
	rc = zdi_geometry(cfg->slot_count, cfg->slot_capacity, &stride, &total);
	if (rc < 0)
		return rc;
	seg = calloc(1, sizeof(*seg));
	if (seg == NULL)
		return -ENOMEM;
	seg->ops = &zdi_backend_memory;
	seg->fd = -1;
	seg->creator = 1;
	seg->mem_locks = calloc(ZDI_LOCK_COUNT, 1);
	if (total > SIZE_MAX - 4095u) {
		rc = -EOVERFLOW;
		goto fail;
	}
	seg->base = aligned_alloc(4096, (size_t)((total + 4095u) & ~(uint64_t)4095u));
	if (seg->mem_locks == NULL || seg->base == NULL) {
		rc = -ENOMEM;
		goto fail;
	}
	memset(seg->base, 0, (size_t)total);
	seg->mem_locks[ZDI_LOCK_CREATOR] = 1;  /* the creator lives as long as the heap */
	seg->total_size = total;
	seg->hdr = (struct zdi_segment_header *)seg->base;
	zdi_segment_write_header(seg, cfg, stride, total);
	rc = zdi_segment_init_handle(seg);
	if (rc < 0)
		goto fail;
	*out = seg;
	return 0;
fail:
	zdi_segment_free(seg);
	return rc;
}
