/* backend_memory.c — the segment in process memory, for the threads of one
 * process.  The reference implementation: same layout and slot logic as the
 * posix backend; liveness locks are flags in the handle (a process cannot
 * outlive its own memory), futexes are process-private.
 *
 * The region is a memfd mapped twice, read-write and read-only, like every
 * other backend (samples point into the read-only mapping); the descriptor
 * is closed as soon as both mappings exist.  The mappings are shared, so a
 * forked child sees the same pages as its parent (as with a posix segment),
 * not a copy of them.
 */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/sysinfo.h>
#include <unistd.h>

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

static int memory_futex_wait2(uint32_t *a, uint32_t ea, uint32_t *b, uint32_t eb,
			      uint64_t deadline_ns)
{
	return zdi_futex_wait2(a, ea, b, eb, deadline_ns, 1);
}

static void memory_futex_wake(uint32_t *word)
{
	zdi_futex_wake(word, 1);
}

static void memory_unmap(zd_segment_t *seg)
{
	if (seg->base != NULL)
		munmap(seg->base, (size_t)seg->geo.total_size);
	if (seg->ro_base != NULL)
		munmap(seg->ro_base, (size_t)seg->geo.total_size);
	free(seg->mem_locks);
	seg->base = NULL;
	seg->ro_base = NULL;
	seg->mem_locks = NULL;
}

const struct zdi_backend_ops zdi_backend_memory = {
	.kind = ZD_BACKEND_MEMORY,
	.name = "memory",
	.lock_try = memory_lock_try,
	.lock_release = memory_lock_release,
	.lock_held = memory_lock_held,
	.futex_wait = memory_futex_wait,
	.futex_wait2 = memory_futex_wait2,
	.futex_wake = memory_futex_wake,
	.unmap = memory_unmap,
};

int zdi_memfd_sized(unsigned int flags, uint64_t total, int *fd)
{
	struct sysinfo si;
	int rc;

	/* The kernel's heuristic overcommit refuses obvious overcommits of
	 * address space the same way; a memfd's posix_fallocate would instead
	 * take page after page until memory ran out. */
	if (sysinfo(&si) == 0 &&
	    total / si.mem_unit > (uint64_t)si.totalram + (uint64_t)si.totalswap)
		return -ENOSPC;
	*fd = memfd_create("zdshm", flags | MFD_CLOEXEC);
	if (*fd < 0)
		return -errno;
	rc = posix_fallocate(*fd, 0, (off_t)total); /* returns an errno */
	if (rc != 0) {
		close(*fd);
		*fd = -1;
		return rc == EFBIG ? -ENOSPC : -rc;
	}
	return 0;
}

/* Both mappings of a fresh memfd, populated (no page fault on the hot
 * path); the descriptor is not needed afterwards. */
static int memory_map(zd_segment_t *seg, uint64_t total)
{
	void *rw, *ro;
	int fd, rc;

	rc = zdi_memfd_sized(0, total, &fd);
	if (rc < 0)
		return rc == -ENOSPC ? -ENOMEM : rc;
	seg->geo.total_size = total;
	rw = mmap(NULL, (size_t)total, PROT_READ | PROT_WRITE,
		  MAP_SHARED | MAP_POPULATE, fd, 0);
	if (rw == MAP_FAILED) {
		rc = -errno;
		goto out;
	}
	seg->base = rw;
	ro = mmap(NULL, (size_t)total, PROT_READ, MAP_SHARED | MAP_POPULATE, fd, 0);
	if (ro == MAP_FAILED) {
		rc = -errno;
		goto out;
	}
	seg->ro_base = ro;
out:
	close(fd);                      /* the mappings keep the memfd alive */
	return rc;
}

int zd_segment_create_memory(const zd_config_t *cfg, zd_segment_t **out)
{
	zd_geometry_t geo;
	zd_class_t classes[ZD_CLASS_MAX];
	uint64_t total;
	zd_segment_t *seg;
	int rc;

	if (out == NULL)
		return -EINVAL;
	rc = zdi_config_geometry(cfg, &geo, classes);
	total = geo.total_size;
	if (rc < 0)
		return rc;
	seg = calloc(1, sizeof(*seg));
	if (seg == NULL)
		return -ENOMEM;
	seg->ops = &zdi_backend_memory;
	seg->fd = -1;
	seg->share_fd = -1;
	seg->creator = 1;
	seg->mem_locks = calloc(ZDI_LOCK_COUNT, 1);
	if (total > SIZE_MAX || total > (uint64_t)INT64_MAX) {
		rc = -EOVERFLOW;
		goto fail;
	}
	if (seg->mem_locks == NULL) {
		rc = -ENOMEM;
		goto fail;
	}
	rc = memory_map(seg, total);
	if (rc < 0)
		goto fail;
	seg->mem_locks[ZDI_LOCK_CREATOR] = 1;  /* the creator lives as long as the heap */
	seg->hdr = (struct zdi_segment_header *)seg->base;
	zdi_segment_write_header(seg, cfg, &geo, classes);
	rc = zdi_segment_init_handle(seg);
	if (rc < 0)
		goto fail;
	*out = seg;
	return 0;
fail:
	zdi_segment_free(seg);
	return rc;
}
