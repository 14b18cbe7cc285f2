/* backend_posix.c — the segment in a POSIX shared-memory object.
 *
 * Create: shm_open(O_CREAT|O_EXCL|O_CLOEXEC), fchmod to the requested mode
 * (so the umask does not matter), posix_fallocate (a full /dev/shm fails
 * here with ENOSPC instead of SIGBUS on first touch), map, write the header,
 * store the init flag last.  Attach: fstat the descriptor, check its owner
 * and mode against the caller's policy (zd_attach_opts_t), read the init
 * flag and the immutable header with pread into private memory and
 * validate them against the real size; only then map it at that size.
 * Nothing in the header is trusted again.  Describe and the stale check
 * never map: they read the header and the tables with pread, so an object
 * truncated under them yields -EBADMSG, not SIGBUS.
 *
 * Liveness: lock byte idx of the object with an open-file-description lock
 * (F_OFD_SETLK).  It belongs to this handle's own open file description, so
 * two handles in one process are told apart, and the kernel drops it when
 * the process dies.  The creator takes byte ZDI_LOCK_CREATOR right after
 * shm_open, before anything else can see the object.  Whether someone holds
 * a byte is asked with F_OFD_GETLK, which takes nothing and works on a
 * read-only descriptor.  Futexes are shared (no FUTEX_PRIVATE_FLAG).
 *
 * Every writable handle maps the object a second time with PROT_READ (also
 * populated); samples point into that mapping, so writing through one
 * faults in the writer of it alone.
 *
 * Anonymous segments use the same operations on a memfd: sealed against
 * shrinking and growing after posix_fallocate, never named, handed over as
 * a descriptor.  A handle keeps two descriptors: share_fd, which it hands
 * on and never locks, and fd, its own open file description (opened again
 * through /proc/self/fd) that holds its locks.  A dup or an SCM_RIGHTS copy
 * shares the open file description, and with it every OFD lock on it: a
 * receiver locking through it would be taken for the sender, and a copy
 * kept open would keep a dead sender's locks alive.
 *
 * Replacing a stale segment (ZD_CREATE_REPLACE_STALE, and
 * zd_segment_unlink_stale_posix): open the object, validate it, take its
 * creator lock (proof that the creator is gone, and it shuts out a second
 * replacer and a late creator), check that no other liveness lock is held
 * (no live handle has it attached), check that the name still refers to the
 * same inode, shm_unlink, close.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef F_SEAL_FUTURE_WRITE
#define F_SEAL_FUTURE_WRITE 0x0010
#endif

#include "futex.h"
#include "internal.h"

/* Create attempts with ZD_CREATE_REPLACE_STALE: each finds the name taken
 * and removes a stale object under it. */
#define ZDI_REPLACE_TRIES 4u

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

static int posix_lock_held(const zd_segment_t *seg, uint32_t idx)
{
	struct flock fl;

	memset(&fl, 0, sizeof(fl));
	fl.l_type = F_WRLCK;            /* conflicts with any lock of another OFD */
	fl.l_whence = SEEK_SET;
	fl.l_start = (off_t)idx;
	fl.l_len = 1;
	if (fcntl(seg->fd, F_OFD_GETLK, &fl) < 0)
		return -errno;
	return fl.l_type != F_UNLCK;
}

static int posix_futex_wait(uint32_t *word, uint32_t expected, uint64_t deadline_ns)
{
	return zdi_futex_wait(word, expected, deadline_ns, 0);
}

static int posix_futex_wait2(uint32_t *a, uint32_t ea, uint32_t *b, uint32_t eb,
			      uint64_t deadline_ns)
{
	return zdi_futex_wait2(a, ea, b, eb, deadline_ns, 0);
}

static void posix_futex_wake(uint32_t *word)
{
	zdi_futex_wake(word, 0);
}

static void posix_unmap(zd_segment_t *seg)
{
	if (seg->base != NULL)
		munmap(seg->base, (size_t)seg->geo.total_size);
	if (seg->ro_base != NULL)
		munmap(seg->ro_base, (size_t)seg->geo.total_size);
	if (seg->fd >= 0)
		close(seg->fd);         /* drops every OFD lock of this handle */
	if (seg->share_fd >= 0)
		close(seg->share_fd);
	seg->base = NULL;
	seg->ro_base = NULL;
	seg->fd = -1;
	seg->share_fd = -1;
}

const struct zdi_backend_ops zdi_backend_posix = {
	.kind = ZD_BACKEND_POSIX,
	.name = "posix",
	.lock_try = posix_lock_try,
	.lock_release = posix_lock_release,
	.lock_held = posix_lock_held,
	.futex_wait = posix_futex_wait,
	.futex_wait2 = posix_futex_wait2,
	.futex_wake = posix_futex_wake,
	.unmap = posix_unmap,
};

const struct zdi_backend_ops zdi_backend_anonymous = {
	.kind = ZD_BACKEND_ANONYMOUS,
	.name = "anonymous",
	.lock_try = posix_lock_try,
	.lock_release = posix_lock_release,
	.lock_held = posix_lock_held,
	.futex_wait = posix_futex_wait,
	.futex_wait2 = posix_futex_wait2,
	.futex_wake = posix_futex_wake,
	.unmap = posix_unmap,
};

/* The read-only alias of the whole object (see the top of the file). */
static int posix_map_readonly(zd_segment_t *seg)
{
	void *ro = mmap(NULL, (size_t)seg->geo.total_size, PROT_READ,
			MAP_SHARED | MAP_POPULATE, seg->fd, 0);

	if (ro == MAP_FAILED)
		return -errno;
	seg->ro_base = ro;
	return 0;
}

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
	seg->share_fd = -1;
	seg->attach_index = UINT32_MAX;     /* none until zdi_attach_claim */
	snprintf(seg->name, sizeof(seg->name), "%s", name);
	return seg;
}

/* The owner policy of zd_attach_opts_t, on the fstat of the descriptor
 * about to be used.  opts NULL: the default policy.  Returns 0, -ZD_EOWNER
 * (found_uid and found_mode filled when opts is given). */
static int owner_check(const struct stat *st, zd_attach_opts_t *opts)
{
	uint32_t flags = opts != NULL ? opts->flags : 0;

	if (flags & ZD_ATTACH_ANY_OWNER)
		return 0;
	if ((flags & ZD_ATTACH_ALLOW_UID) && st->st_uid == (uid_t)opts->allow_uid)
		return 0;
	if (st->st_uid == geteuid() && (st->st_mode & 022) == 0)
		return 0;
	if (opts != NULL) {
		opts->found_uid = (uint32_t)st->st_uid;
		opts->found_mode = (uint32_t)(st->st_mode & 07777);
	}
	return -ZD_EOWNER;
}

/* pread of exactly len bytes at off; a short read (the object shrank, or
 * never was that long) is -EBADMSG. */
static int pread_full(int fd, void *buf, size_t len, off_t off)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = pread(fd, (uint8_t *)buf + done, len - done,
				  off + (off_t)done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EBADMSG;
		done += (size_t)n;
	}
	return 0;
}

/* Everything attach and describe check before they use an object, with
 * system calls on its descriptor alone (nothing is mapped, so an object
 * that changes meanwhile yields an error, never a signal): fstat (a regular
 * file; the owner policy unless opts is ZDI_NO_POLICY), then the header
 * read with pread into buf and validated against the size fstat gave, then
 * the rest of the first len bytes (len >= the header size).  The init flag is
 * read by a first pread and the header by a second one issued after it:
 * one pread copies in no particular order, so only a later copy is sure to
 * hold every header field the creator wrote before its release store of
 * init_done.  *size gets the real size.  Used by attach, attach_fd,
 * describe and the stale check, so all of them are exactly as strict. */
static zd_attach_opts_t no_policy;
#define ZDI_NO_POLICY (&no_policy)

static int posix_read_validated(int fd, zd_attach_opts_t *opts, void *buf,
				size_t len, uint64_t *size)
{
	struct zdi_segment_header *h = buf;
	struct stat st;
	uint32_t init;
	int rc;

	if (fstat(fd, &st) < 0)
		return -errno;
	if (!S_ISREG(st.st_mode))
		return -EBADMSG;        /* a FIFO, device or directory planted there */
	if (opts != ZDI_NO_POLICY) {
		rc = owner_check(&st, opts);
		if (rc < 0)
			return rc;
	}
	if (st.st_size == 0)
		return -EINPROGRESS;    /* between the creator's shm_open and fallocate */
	if (st.st_size < (off_t)sizeof(*h))
		return -EBADMSG;
	if ((uint64_t)st.st_size > SIZE_MAX)
		return -EBADMSG;
	rc = pread_full(fd, &init, sizeof(init),
			(off_t)offsetof(struct zdi_segment_header, init_done));
	if (rc < 0)
		return rc;
	/* With the first copy, the acquire load of init_done that pairs with
	 * the creator's release store: the second copy comes after it. */
	zdi_fence_acquire();
	rc = pread_full(fd, h, sizeof(*h), 0);
	if (rc < 0)
		return rc;
	/* init_done from the first copy; the header fields from the second. */
	if (init != ZDI_INIT_DONE || h->init_done != ZDI_INIT_DONE)
		return h->magic == ZDI_MAGIC || h->magic == 0 ? -EINPROGRESS
							      : -EBADMSG;
	rc = zdi_header_validate(h, (uint64_t)st.st_size);
	if (rc == -EPROTO && opts != NULL && opts != ZDI_NO_POLICY)
		opts->found_version = h->version;
	if (rc < 0)
		return rc;
	/* A valid size is beyond the tables: len bytes fit in it. */
	if (len > sizeof(*h)) {
		rc = pread_full(fd, (uint8_t *)buf + sizeof(*h), len - sizeof(*h),
				(off_t)sizeof(*h));
		if (rc < 0)
			return rc;
	}
	*size = (uint64_t)st.st_size;
	return 0;
}

/* The handle's private geometry from a validated copy of the header. */
static void posix_take_geometry(zd_segment_t *seg,
				const struct zdi_segment_header *copy,
				uint64_t size)
{
	seg->geo = copy->geo;
	seg->geo.total_size = size;
	memcpy(seg->classes, copy->classes, sizeof(seg->classes));
	seg->flags = copy->flags;
	memcpy(seg->type_hash, copy->type_hash, sizeof(seg->type_hash));
	seg->owner_pid = copy->owner_pid;
	seg->owner_uid = copy->owner_uid;
	seg->created_realtime_ns = copy->created_realtime_ns;
}

/* Validates the object (posix_read_validated), then maps it at the size
 * validated; on success the handle's private geometry is set.  Used by
 * attach and attach_fd.  A mapping is made only of an object whose owner
 * passed the policy: after this, a truncation by whoever may write the
 * object kills the process with SIGBUS. */
static int posix_map_validated(zd_segment_t *seg, zd_attach_opts_t *opts)
{
	struct zdi_segment_header copy;
	uint64_t size;
	void *base;
	int rc;

	rc = posix_read_validated(seg->fd, opts, &copy, sizeof(copy), &size);
	if (rc < 0)
		return rc;
	base = mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE, MAP_SHARED,
		    seg->fd, 0);
	if (base == MAP_FAILED)
		return -errno;
	seg->base = base;
	posix_take_geometry(seg, &copy, size);
	rc = posix_map_readonly(seg);
	zdi_derive_pointers(seg);
	return rc;
}

/* The header and the two tables: what describe and the stale check read. */
#define ZDI_CONTROL_SIZE ((size_t)ZDI_RING_OFFSET)

/* Opens the object under name (O_RDWR if writable, else O_RDONLY) as a
 * handle that maps nothing: its header and tables are a private copy read
 * with pread (posix_read_validated), its locks are those of its descriptor.
 * Fit for zd_segment_info and the liveness locks, never for the slots.
 * Free with control_close. */
static int control_open(const char *name, int writable, zd_attach_opts_t *opts,
			zd_segment_t **out)
{
	char path[ZD_NAME_MAX + 2];
	zd_segment_t *seg;
	uint8_t *ctl;
	uint64_t size;
	int rc;

	*out = NULL;
	rc = zd_name_validate(name);
	if (rc < 0)
		return rc;
	seg = posix_handle_new(name);
	ctl = malloc(ZDI_CONTROL_SIZE);
	if (seg == NULL || ctl == NULL) {
		free(seg);
		free(ctl);
		return -ENOMEM;
	}
	shm_path(path, name);
	/* O_NONBLOCK: opening a FIFO planted under the name must not block. */
	seg->fd = shm_open(path, (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC | O_NONBLOCK, 0);
	if (seg->fd < 0) {
		rc = -errno;
		goto fail;
	}
	rc = posix_read_validated(seg->fd, opts, ctl, ZDI_CONTROL_SIZE, &size);
	if (rc < 0)
		goto fail;
	posix_take_geometry(seg, (const struct zdi_segment_header *)ctl, size);
	seg->hdr = (struct zdi_segment_header *)ctl;
	seg->readers = (struct zdi_reader_entry *)(ctl + ZDI_READERS_OFFSET);
	seg->attach = (struct zdi_attach_entry *)(ctl + ZDI_ATTACH_OFFSET);
	*out = seg;
	return 0;
fail:
	if (seg->fd >= 0)
		close(seg->fd);
	free(seg);
	free(ctl);
	return rc;
}

static void control_close(zd_segment_t *seg)
{
	if (seg == NULL)
		return;
	free(seg->hdr);                 /* the private copy; base is NULL */
	seg->hdr = NULL;
	zdi_segment_free(seg);          /* closes the fd: drops its locks */
}

/* Removes the name of a stale segment (see the top of this file).
 * Returns 0, -EBUSY (its creator or another handle is alive, another
 * replacer is at work, or the name moved on to another object), and the
 * codes of attach (a name that is no valid segment is never removed). */
static int stale_remove(const char *name)
{
	char path[ZD_NAME_MAX + 2];
	struct stat checked, now;
	zd_segment_t *seg = NULL;
	int rc, fd;

	/* Whoever owns it: removing reads the header and asks locks, and
	 * maps nothing (a hostile object can refuse, not kill). */
	rc = control_open(name, 1, ZDI_NO_POLICY, &seg);
	if (rc < 0)
		return rc;
	rc = seg->ops->lock_try(seg, ZDI_LOCK_CREATOR);
	if (rc == -EAGAIN)
		rc = -EBUSY;
	for (uint32_t idx = 0; rc == 0 && idx < ZDI_LOCK_CREATOR; idx++) {
		int held = seg->ops->lock_held(seg, idx);

		if (held != 0)
			rc = held < 0 ? held : -EBUSY;
	}
	shm_path(path, name);
	if (rc == 0 && fstat(seg->fd, &checked) < 0)
		rc = -errno;
	if (rc == 0) {
		fd = shm_open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK, 0);
		if (fd < 0) {
			rc = -errno;
		} else {
			if (fstat(fd, &now) < 0)
				rc = -errno;
			else if (now.st_dev != checked.st_dev || now.st_ino != checked.st_ino)
				rc = -EBUSY;    /* not the object we checked */
			close(fd);
		}
	}
	if (rc == 0 && shm_unlink(path) < 0)
		rc = -errno;
	control_close(seg);             /* closes the fd: drops the creator lock */
	return rc;
}

/* The creator's last steps, once seg->fd is sized and locked: both
 * mappings, the header (init flag last), the attachment entry. */
static int creator_map_init(zd_segment_t *seg, const zd_config_t *cfg,
			    const zd_geometry_t *geo,
			    const zd_class_t classes[ZD_CLASS_MAX])
{
	uint64_t total = geo->total_size;
	void *base = mmap(NULL, (size_t)total, PROT_READ | PROT_WRITE,
			  MAP_SHARED | MAP_POPULATE, seg->fd, 0);
	int rc;

	if (base == MAP_FAILED)
		return -errno;
	seg->base = base;
	seg->geo.total_size = total;
	rc = posix_map_readonly(seg);
	if (rc < 0)
		return rc;
	seg->hdr = (struct zdi_segment_header *)seg->base;
	zdi_segment_write_header(seg, cfg, geo, classes);
	return zdi_segment_init_handle(seg);
}

int zd_segment_create_posix(const char *name, const zd_config_t *cfg,
			    zd_segment_t **out)
{
	char path[ZD_NAME_MAX + 2];
	zd_geometry_t geo;
	zd_class_t classes[ZD_CLASS_MAX];
	uint64_t total;
	zd_segment_t *seg;
	int rc;

	if (out == NULL)
		return -EINVAL;
	rc = zd_name_validate(name);
	if (rc < 0)
		return rc;
	rc = zdi_config_geometry(cfg, &geo, classes);
	total = geo.total_size;
	if (rc < 0)
		return rc;
	seg = posix_handle_new(name);
	if (seg == NULL)
		return -ENOMEM;
	shm_path(path, name);
	for (unsigned tries = 0;; tries++) {
		seg->fd = shm_open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (seg->fd >= 0)
			break;
		rc = -errno;
		if (rc == -EEXIST && (cfg->flags & ZD_CREATE_REPLACE_STALE) &&
		    tries < ZDI_REPLACE_TRIES) {
			int gone = stale_remove(name);

			if (gone == 0 || gone == -ENOENT)
				continue;       /* the name is free again: create */
		}
		free(seg);
		return rc;
	}
	seg->creator = 1;
	/* Held until close; nobody can have taken it yet but a hostile peer. */
	rc = seg->ops->lock_try(seg, ZDI_LOCK_CREATOR);
	if (rc < 0) {
		rc = rc == -EAGAIN ? -EEXIST : rc;
		goto fail;
	}
	if (fchmod(seg->fd, cfg->mode != 0 ? (mode_t)cfg->mode : 0600) < 0) {
		rc = -errno;
		goto fail;
	}
	rc = posix_fallocate(seg->fd, 0, (off_t)total); /* returns an errno */
	if (rc != 0) {
		rc = -rc;
		goto fail;
	}
	rc = creator_map_init(seg, cfg, &geo, classes);
	if (rc < 0)
		goto fail;
	*out = seg;
	return 0;
fail:
	shm_unlink(path);
	zdi_segment_free(seg);
	return rc;
}

static int check_opts(const zd_attach_opts_t *opts)
{
	if (opts != NULL &&
	    (opts->flags & ~(ZD_ATTACH_ALLOW_UID | ZD_ATTACH_ANY_OWNER)) != 0)
		return -EINVAL;
	return 0;
}

int zd_segment_attach_posix_opts(const char *name, zd_attach_opts_t *opts,
				 zd_segment_t **out)
{
	char path[ZD_NAME_MAX + 2];
	zd_segment_t *seg = NULL;
	int rc;

	if (out == NULL)
		return -EINVAL;
	*out = NULL;
	rc = check_opts(opts);
	if (rc == 0)
		rc = zd_name_validate(name);
	if (rc < 0)
		return rc;
	seg = posix_handle_new(name);
	if (seg == NULL)
		return -ENOMEM;
	shm_path(path, name);
	/* O_NONBLOCK: opening a FIFO planted under the name must not block. */
	seg->fd = shm_open(path, O_RDWR | O_CLOEXEC | O_NONBLOCK, 0);
	if (seg->fd < 0) {
		rc = -errno;
		free(seg);
		return rc;
	}
	rc = posix_map_validated(seg, opts);
	if (rc == 0)
		rc = zdi_segment_init_handle(seg);
	if (rc < 0) {
		zdi_segment_free(seg);
		return rc;
	}
	*out = seg;
	return 0;
}

int zd_segment_attach_posix(const char *name, zd_segment_t **out)
{
	return zd_segment_attach_posix_opts(name, NULL, out);
}

/* The per-class slot counts of a handle that maps nothing: one pread of
 * each slot's state word (the geometry is the validated private copy; an
 * object cut short meanwhile is -EBADMSG, never a signal). */
static int describe_class_stats(const zd_segment_t *seg, zd_segment_info_t *out)
{
	for (uint32_t c = 0; c < seg->geo.class_count; c++) {
		const zd_class_t *k = &seg->classes[c];
		zd_class_stats_t *cs = &out->class_stats[c];

		for (uint32_t i = 0; i < k->slot_count; i++) {
			uint64_t state;
			int rc = pread_full(seg->fd, &state, sizeof(state),
					    (off_t)(k->slots_offset + (uint64_t)i * k->slot_stride +
						    offsetof(struct zdi_slot_header, state)));

			if (rc < 0)
				return rc;
			if (ZDI_ST_KIND(state) == ZDI_SLOT_FREE)
				cs->free++;
			else if (ZDI_ST_KIND(state) == ZDI_SLOT_LOANED)
				cs->loaned++;
			else if (ZDI_ST_KIND(state) == ZDI_SLOT_COMMITTED)
				cs->committed++;
		}
	}
	return 0;
}

int zd_segment_describe_posix_opts(const char *name, zd_attach_opts_t *opts,
				   zd_segment_info_t *out)
{
	zd_segment_t *seg = NULL;
	int rc;

	if (out == NULL)
		return -EINVAL;
	rc = check_opts(opts);
	if (rc < 0)
		return rc;
	rc = control_open(name, 0, opts, &seg);
	if (rc < 0)
		return rc;
	rc = zd_segment_info(seg, out);
	if (rc == 0)
		rc = describe_class_stats(seg, out);
	control_close(seg);
	return rc;
}

int zd_segment_describe_posix(const char *name, zd_segment_info_t *out)
{
	return zd_segment_describe_posix_opts(name, NULL, out);
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

int zd_segment_unlink_stale_posix(const char *name)
{
	int rc = zd_name_validate(name);

	if (rc < 0)
		return rc;
	return stale_remove(name);
}

/* --------------------------------------------------------------------------
 * Anonymous segments: a sealed memfd shared by descriptor
 * ------------------------------------------------------------------------ */

/* Opens the object behind fd again, as a new open file description of
 * this handle alone (see the top of the file). */
static int reopen_own(int fd, const struct stat *st, int *out)
{
	char path[32];
	struct stat again;
	int nfd;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	nfd = open(path, O_RDWR | O_CLOEXEC | O_NONBLOCK);
	if (nfd < 0)
		return errno == ENOENT ? -ENOSYS : -errno;
	if (fstat(nfd, &again) < 0 || again.st_dev != st->st_dev ||
	    again.st_ino != st->st_ino) {
		close(nfd);
		return -EBADMSG;        /* fd was replaced under us */
	}
	*out = nfd;
	return 0;
}

static zd_segment_t *anonymous_handle_new(void)
{
	zd_segment_t *seg = posix_handle_new("");

	if (seg != NULL)
		seg->ops = &zdi_backend_anonymous;
	return seg;
}

int zd_segment_create_anonymous(const zd_config_t *cfg, zd_segment_t **out)
{
	zd_geometry_t geo;
	zd_class_t classes[ZD_CLASS_MAX];
	uint64_t total;
	zd_segment_t *seg;
	struct stat st;
	int rc;

	if (out == NULL)
		return -EINVAL;
	rc = zdi_config_geometry(cfg, &geo, classes);
	total = geo.total_size;
	if (rc < 0)
		return rc;
	seg = anonymous_handle_new();
	if (seg == NULL)
		return -ENOMEM;
	seg->creator = 1;
	rc = zdi_memfd_sized(MFD_ALLOW_SEALING, total, &seg->share_fd);
	if (rc < 0)
		goto fail;
	/* Sized: now nobody may change the size, and nobody may lift that. */
	if (fcntl(seg->share_fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) < 0 ||
	    fcntl(seg->share_fd, F_ADD_SEALS, F_SEAL_SEAL) < 0) {
		rc = -errno;
		goto fail;
	}
	seg->sealed = 1;
	if (fstat(seg->share_fd, &st) < 0) {
		rc = -errno;
		goto fail;
	}
	rc = reopen_own(seg->share_fd, &st, &seg->fd);
	if (rc < 0)
		goto fail;
	/* Held until close, like a named creator's (nobody else has the fd). */
	rc = seg->ops->lock_try(seg, ZDI_LOCK_CREATOR);
	if (rc < 0)
		goto fail;
	rc = creator_map_init(seg, cfg, &geo, classes);
	if (rc < 0)
		goto fail;
	*out = seg;
	return 0;
fail:
	zdi_segment_free(seg);          /* the last descriptor: the memfd goes */
	return rc;
}

int zd_segment_attach_fd(int fd, zd_segment_t **out)
{
	zd_segment_t *seg;
	struct stat st;
	int fl, seals, rc;

	if (out == NULL)
		return -EINVAL;
	*out = NULL;
	if (fd < 0)
		return -EBADF;
	/* Everything about fd is checked before it is opened again: reopening
	 * a FIFO or a device through /proc could block or have effects. */
	if (fstat(fd, &st) < 0)
		return -errno;
	if (!S_ISREG(st.st_mode))
		return -EBADMSG;
	fl = fcntl(fd, F_GETFL);
	if (fl < 0)
		return -errno;
	if ((fl & O_ACCMODE) != O_RDWR)
		return -EACCES;         /* reopening must not widen the access */
	seals = fcntl(fd, F_GET_SEALS);
	if (seals < 0) {
		if (errno != EINVAL)
			return -errno;
		seals = 0;              /* a file that cannot be sealed */
	}
	if (seals & (F_SEAL_WRITE | F_SEAL_FUTURE_WRITE))
		return -EPERM;          /* a shared writable mapping would fail */
	seg = anonymous_handle_new();
	if (seg == NULL)
		return -ENOMEM;
	seg->sealed = (seals & (F_SEAL_SHRINK | F_SEAL_GROW)) ==
		      (F_SEAL_SHRINK | F_SEAL_GROW);
	seg->share_fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	if (seg->share_fd < 0) {
		rc = -errno;
		goto fail;
	}
	rc = reopen_own(seg->share_fd, &st, &seg->fd);
	if (rc < 0)
		goto fail;
	rc = posix_map_validated(seg, ZDI_NO_POLICY);
	if (rc < 0)
		goto fail;
	rc = zdi_segment_init_handle(seg);
	if (rc < 0)
		goto fail;
	*out = seg;
	return 0;
fail:
	zdi_segment_free(seg);
	return rc;
}

/* --------------------------------------------------------------------------
 * Letting go after fork
 * ------------------------------------------------------------------------ */

/* "/proc/self/fd/<fd>" without snprintf (not async-signal-safe). */
static void proc_fd_path(char out[32], int fd)
{
	static const char prefix[] = "/proc/self/fd/";
	char digits[12];
	size_t n = 0, k = sizeof(prefix) - 1;

	memcpy(out, prefix, k);
	do {
		digits[n++] = (char)('0' + fd % 10);
		fd /= 10;
	} while (fd > 0 && n < sizeof(digits));
	while (n > 0)
		out[k++] = digits[--n];
	out[k] = '\0';
}

/* Async-signal-safe (a fork child handler): fstat, open, mmap, close only.
 * The inherited descriptor and both inherited mappings hold the owner's
 * open file description, whose OFD locks prove the owner alive: all three
 * are replaced.  The mappings are replaced in place (MAP_FIXED) by mappings
 * of a new open file description of the same object (opened again through
 * /proc/self/fd, so no name is needed and a name that now refers to another
 * object cannot be picked up), so inherited views keep reading the segment;
 * if that fails, by anonymous zero pages (inherited views read zeros;
 * nothing faults). */
int zd_segment_disown(zd_segment_t *seg)
{
	char path[32];
	struct stat old_st, new_st;
	size_t len;
	int fd = -1, same = 0, prot = PROT_READ | PROT_WRITE;

	if (seg == NULL || seg->fd < 0 ||
	    (seg->ops != &zdi_backend_posix && seg->ops != &zdi_backend_anonymous))
		return 0;
	if (seg->base != NULL && fstat(seg->fd, &old_st) == 0) {
		proc_fd_path(path, seg->fd);
		fd = open(path, O_RDWR | O_CLOEXEC | O_NONBLOCK);
		if (fd < 0) {
			prot = PROT_READ;
			fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
		}
		same = fd >= 0 && fstat(fd, &new_st) == 0 &&
		       new_st.st_ino == old_st.st_ino &&
		       new_st.st_dev == old_st.st_dev &&
		       (uint64_t)new_st.st_size >= seg->geo.total_size;
	}
	close(seg->fd);
	seg->fd = -1;
	len = (size_t)seg->geo.total_size;
	if (seg->base != NULL &&
	    (!same || mmap(seg->base, len, prot, MAP_SHARED | MAP_FIXED, fd, 0) == MAP_FAILED))
		(void)mmap(seg->base, len, PROT_READ | PROT_WRITE,
			   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
	if (seg->ro_base != NULL &&
	    (!same || mmap(seg->ro_base, len, PROT_READ, MAP_SHARED | MAP_FIXED, fd, 0) == MAP_FAILED))
		(void)mmap(seg->ro_base, len, PROT_READ,
			   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
	if (fd >= 0)
		close(fd);
	return 0;
}
