/* backend_posix.c — the segment in a POSIX shared-memory object.
 *
 * Create: shm_open(O_CREAT|O_EXCL|O_CLOEXEC), fchmod to the requested mode
 * (so the umask does not matter), posix_fallocate (a full /dev/shm fails
 * here with ENOSPC instead of SIGBUS on first touch), map, write the header,
 * store the init flag last.  Attach: map the object at its real size
 * (fstat), check the init flag, copy the immutable header to private memory
 * and validate it; nothing in it is trusted again.
 *
 * Liveness: lock byte idx of the object with an open-file-description lock
 * (F_OFD_SETLK).  It belongs to this handle's own open file description, so
 * two handles in one process are told apart, and the kernel drops it when
 * the process dies.  Futexes are shared (no FUTEX_PRIVATE_FLAG).
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "futex.h"
#include "internal.h"

static int posix_lock_op(zd_segment_t *seg, uint32_t idx, short type)
{
	struct flock fl;

	memset(&fl, 0, sizeof(fl));
	fl.l_type = type;
	fl.l_whence = SEEK_SET;
	fl.l_start = (off_t)idx;
	fl.l_len = 1;
	if (fcntl(seg->fd, F_OFD_SETLK, &fl) == 0)
		return 0;
	if (errno == EAGAIN || errno == EACCES)
		return -EAGAIN;
	return -errno;
}

static int posix_lock_try(zd_segment_t *seg, uint32_t idx)
{
	return posix_lock_op(seg, idx, F_WRLCK);
}

static void posix_lock_release(zd_segment_t *seg, uint32_t idx)
{
	(void)posix_lock_op(seg, idx, F_UNLCK);
}

static int posix_futex_wait(uint32_t *word, uint32_t expected, uint64_t deadline_ns)
{
	return zdi_futex_wait(word, expected, deadline_ns, 0);
}

static void posix_futex_wake(uint32_t *word)
{
	zdi_futex_wake(word, 0);
}

static void posix_unmap(zd_segment_t *seg)
{
	if (seg->base != NULL)
		munmap(seg->base, (size_t)seg->total_size);
	if (seg->fd >= 0)
		close(seg->fd);         /* drops every OFD lock of this handle */
	seg->base = NULL;
	seg->fd = -1;
}

const struct zdi_backend_ops zdi_backend_posix = {
	.kind = ZD_BACKEND_POSIX,
	.name = "posix",
	.lock_try = posix_lock_try,
	.lock_release = posix_lock_release,
	.futex_wait = posix_futex_wait,
	.futex_wake = posix_futex_wake,
	.unmap = posix_unmap,
};

int zd_name_validate(const char *name)
{
	size_t n;

	if (name == NULL || name[0] == '\0' || name[0] == '.')
		return -EINVAL;
	for (n = 0; name[n] != '\0'; n++) {
		char c = name[n];

		if (n >= ZD_NAME_MAX)
			return -ENAMETOOLONG;
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
			return -EINVAL;
	}
	return 0;
}

static void shm_path(char out[ZD_NAME_MAX + 2], const char *name)
{
	snprintf(out, ZD_NAME_MAX + 2, "/%s", name);
}

static zd_segment_t *posix_handle_new(const char *name)
{
	zd_segment_t *seg = calloc(1, sizeof(*seg));

	if (seg == NULL)
		return NULL;
	seg->ops = &zdi_backend_posix;
	seg->fd = -1;
	snprintf(seg->name, sizeof(seg->name), "%s", name);
	return seg;
}

int zd_segment_create_posix(const char *name, const zd_config_t *cfg,
			    zd_segment_t **out)
{
	char path[ZD_NAME_MAX + 2];
	uint64_t stride, total;
	zd_segment_t *seg;
	void *base;
	int rc;

	if (out == NULL)
		return -EINVAL;
	rc = zd_name_validate(name);
	if (rc < 0)
		return rc;
	rc = zd_config_validate(cfg);
	if (rc < 0)
		return rc;
	rc = zdi_geometry(cfg->slot_count, cfg->slot_capacity, &stride, &total);
	if (rc < 0)
		return rc;
	if (total > (uint64_t)INT64_MAX || total > SIZE_MAX)
		return -EOVERFLOW;
	seg = posix_handle_new(name);
	if (seg == NULL)
		return -ENOMEM;
	shm_path(path, name);
	seg->fd = shm_open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (seg->fd < 0) {
		rc = -errno;
		free(seg);
		return rc;
	}
	seg->creator = 1;
	if (fchmod(seg->fd, cfg->mode != 0 ? (mode_t)cfg->mode : 0600) < 0) {
		rc = -errno;
		goto fail;
	}
	rc = posix_fallocate(seg->fd, 0, (off_t)total); /* returns an errno */
	if (rc != 0) {
		rc = -rc;
		goto fail;
	}
	base = mmap(NULL, (size_t)total, PROT_READ | PROT_WRITE,
		    MAP_SHARED | MAP_POPULATE, seg->fd, 0);
	if (base == MAP_FAILED) {
		rc = -errno;
		goto fail;
	}
	seg->base = base;
	seg->total_size = total;
	seg->hdr = (struct zdi_segment_header *)seg->base;
	zdi_segment_write_header(seg, cfg, stride, total);
	rc = zdi_segment_init_handle(seg);
	if (rc < 0)
		goto fail;
	*out = seg;
	return 0;
fail:
	shm_unlink(path);
	zdi_segment_free(seg);
	return rc;
}

/* Maps the object at its real size and validates the header; on success
 * the handle's private geometry is set.  Used by attach and describe. */
static int posix_map_validated(zd_segment_t *seg, int writable)
{
	struct zdi_segment_header copy;
	struct stat st;
	void *base;
	int rc;

	if (fstat(seg->fd, &st) < 0)
		return -errno;
	if (!S_ISREG(st.st_mode))
		return -EBADMSG;        /* a FIFO, device or directory planted there */
	if (st.st_size == 0)
		return -EINPROGRESS;    /* between the creator's shm_open and fallocate */
	if (st.st_size < (off_t)sizeof(struct zdi_segment_header))
		return -EBADMSG;
	if ((uint64_t)st.st_size > SIZE_MAX)
		return -EBADMSG;
	base = mmap(NULL, (size_t)st.st_size,
		    writable ? PROT_READ | PROT_WRITE : PROT_READ, MAP_SHARED,
		    seg->fd, 0);
	if (base == MAP_FAILED)
		return -errno;
	seg->base = base;
	seg->total_size = (uint64_t)st.st_size;
	seg->hdr = (struct zdi_segment_header *)base;
	/* Pairs with the creator's release store of init_done. */
	if (zdi_load_acquire_u32(&seg->hdr->init_done) != ZDI_INIT_DONE)
		return zdi_load_relaxed_u64(&seg->hdr->magic) == ZDI_MAGIC ||
		       zdi_load_relaxed_u64(&seg->hdr->magic) == 0
			       ? -EINPROGRESS
			       : -EBADMSG;
	memcpy(&copy, seg->hdr, sizeof(copy));
	rc = zdi_header_validate(&copy, (uint64_t)st.st_size);
	if (rc < 0)
		return rc;
	seg->slot_count = copy.slot_count;
	seg->slot_capacity = copy.slot_capacity;
	seg->slot_stride = copy.slot_stride;
	seg->flags = copy.flags;
	memcpy(seg->type_hash, copy.type_hash, sizeof(seg->type_hash));
	seg->owner_pid = copy.owner_pid;
	seg->owner_uid = copy.owner_uid;
	seg->created_realtime_ns = copy.created_realtime_ns;
	seg->readers = (struct zdi_reader_entry *)(seg->base + ZDI_READERS_OFFSET);
	seg->attach = (struct zdi_attach_entry *)(seg->base + ZDI_ATTACH_OFFSET);
	seg->slots = seg->base + ZDI_SLOTS_OFFSET;
	return 0;
}

static int posix_open(const char *name, int writable, zd_segment_t **out)
{
	char path[ZD_NAME_MAX + 2];
	zd_segment_t *seg;
	int rc;

	*out = NULL;
	rc = zd_name_validate(name);
	if (rc < 0)
		return rc;
	seg = posix_handle_new(name);
	if (seg == NULL)
		return -ENOMEM;
	shm_path(path, name);
	/* O_NONBLOCK: opening a FIFO planted under the name must not block. */
	seg->fd = shm_open(path, (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC | O_NONBLOCK, 0);
	if (seg->fd < 0) {
		rc = -errno;
		free(seg);
		return rc;
	}
	rc = posix_map_validated(seg, writable);
	if (rc < 0) {
		zdi_segment_free(seg);
		return rc;
	}
	*out = seg;
	return 0;
}

int zd_segment_attach_posix(const char *name, zd_segment_t **out)
{
	zd_segment_t *seg = NULL;
	int rc;

	if (out == NULL)
		return -EINVAL;
	rc = posix_open(name, 1, &seg);
	if (rc < 0)
		return rc;
	rc = zdi_segment_init_handle(seg);
	if (rc < 0) {
		zdi_segment_free(seg);
		return rc;
	}
	*out = seg;
	return 0;
}

int zd_segment_describe_posix(const char *name, zd_segment_info_t *out)
{
	zd_segment_t *seg = NULL;
	int rc;

	if (out == NULL)
		return -EINVAL;
	rc = posix_open(name, 0, &seg);
	if (rc < 0)
		return rc;
	rc = zd_segment_info(seg, out);
	zdi_segment_free(seg);
	return rc;
}

int zd_segment_unlink_posix(const char *name)
{
	char path[ZD_NAME_MAX + 2];
	int rc = zd_name_validate(name);

	if (rc < 0)
		return rc;
	shm_path(path, name);
	return shm_unlink(path) == 0 ? 0 : -errno;
}

/* Async-signal-safe (a fork child handler): open, fstat, mmap, close only.
 * The inherited descriptor and the inherited mapping both hold the owner's
 * open file description, whose OFD locks prove the owner alive: both are
 * replaced.  The mapping is replaced in place (MAP_FIXED) by one of the
 * same object opened again by name, so inherited views keep reading the
 * segment; if the name is gone or names another object now, by anonymous
 * zero pages (inherited views read zeros; nothing faults). */
int zd_segment_disown(zd_segment_t *seg)
{
	char path[ZD_NAME_MAX + 2];
	struct stat old_st, new_st;
	size_t n, len;
	int fd = -1, same = 0, prot = PROT_READ | PROT_WRITE;

	if (seg == NULL || seg->ops != &zdi_backend_posix || seg->fd < 0)
		return 0;
	if (fstat(seg->fd, &old_st) < 0)
		old_st.st_ino = 0;
	close(seg->fd);
	seg->fd = -1;
	if (seg->base == NULL)
		return 0;
	len = (size_t)seg->total_size;
	n = strlen(seg->name);
	if (n > 0 && old_st.st_ino != 0) {
		path[0] = '/';
		memcpy(path + 1, seg->name, n + 1);
		fd = shm_open(path, O_RDWR | O_CLOEXEC | O_NONBLOCK, 0);
		if (fd < 0) {
			prot = PROT_READ;
			fd = shm_open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK, 0);
		}
		same = fd >= 0 && fstat(fd, &new_st) == 0 &&
		       new_st.st_ino == old_st.st_ino &&
		       new_st.st_dev == old_st.st_dev &&
		       (uint64_t)new_st.st_size >= seg->total_size;
	}
	if (!same ||
	    mmap(seg->base, len, prot, MAP_SHARED | MAP_FIXED, fd, 0) == MAP_FAILED)
		(void)mmap(seg->base, len, PROT_READ | PROT_WRITE,
			   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
	if (fd >= 0)
		close(fd);
	return 0;
}
