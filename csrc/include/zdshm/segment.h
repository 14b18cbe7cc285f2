/* zdshm/segment.h — creating, attaching, describing and removing segments. */
#ifndef ZDSHM_SEGMENT_H
#define ZDSHM_SEGMENT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ZD_LAYOUT_VERSION 1u
#define ZD_READER_MAX 64u          /* readers per segment (bits of a mask)   */
#define ZD_ATTACH_MAX 64u          /* open handles per segment               */
#define ZD_SLOT_COUNT_MAX (1u << 20)
#define ZD_SLOT_CAPACITY_MAX ((uint64_t)1 << 40)
#define ZD_SLOT_META_SIZE 64u      /* opaque per-slot bytes for the caller   */
#define ZD_SLOT_HEADER_SIZE 128u   /* 64 B control + ZD_SLOT_META_SIZE       */
#define ZD_NAME_MAX 200u           /* without the leading '/'                */
#define ZD_TYPE_HASH_SIZE 16u

typedef struct zd_segment zd_segment_t;

typedef enum zd_backend_kind {
	ZD_BACKEND_MEMORY = 1,
	ZD_BACKEND_POSIX = 2,
} zd_backend_kind_t;

typedef struct zd_config {
	uint32_t slot_count;               /* 1 .. ZD_SLOT_COUNT_MAX          */
	uint64_t slot_capacity;            /* 1 .. ZD_SLOT_CAPACITY_MAX bytes */
	uint8_t type_hash[ZD_TYPE_HASH_SIZE]; /* all zero: no hash          */
	uint32_t mode;                     /* posix: permission bits, 0 = 0600 */
} zd_config_t;

/* Segment-wide counters (monotonic, relaxed). */
typedef struct zd_segment_counters {
	uint64_t loans;           /* successful reserves                  */
	uint64_t commits;
	uint64_t discards;
	uint64_t evictions;       /* slots freed by evict_stale             */
	uint64_t reclaims;        /* unread slots taken by the reclaim policy */
	uint64_t loans_reclaimed; /* loans of dead attachments freed        */
	uint64_t readers_reaped;  /* dead readers disconnected              */
	uint64_t corrupt_dropped; /* committed slots with a bad header      */
} zd_segment_counters_t;

/* What can be learned about a segment without taking part in it. */
typedef struct zd_segment_info {
	zd_backend_kind_t backend;
	uint32_t layout_version;
	uint32_t slot_count;
	uint64_t slot_capacity;
	uint64_t slot_stride;      /* header + data, padded to 64 B           */
	uint64_t total_size;
	uint8_t type_hash[ZD_TYPE_HASH_SIZE];
	int32_t owner_pid;
	uint32_t owner_uid;
	uint64_t created_realtime_ns;
	uint32_t goodbye;          /* 1: the creator has closed it            */
	uint32_t readers_active;   /* number of bits in the active mask       */
	uint64_t active_mask;
	uint64_t next_sn;          /* sequence number the next commit gets    */
	zd_segment_counters_t counters;
} zd_segment_info_t;

/* Checks a posix segment name: 1..ZD_NAME_MAX characters of [A-Za-z0-9._-],
 * not starting with '.', given without the leading '/'.
 * Returns 0, -EINVAL, -ENAMETOOLONG. */
int zd_name_validate(const char *name);

/* Checks a configuration without creating anything.
 * Returns 0, -EINVAL (a count or capacity of 0, a mode outside 0..0777),
 * -EOVERFLOW (the segment size would not fit). */
int zd_config_validate(const zd_config_t *cfg);

/* Creates a heap-backed segment usable by the threads of this process.
 * Returns 0, -EINVAL, -EOVERFLOW, -ENOMEM. */
int zd_segment_create_memory(const zd_config_t *cfg, zd_segment_t **out);

/* Creates "/dev/shm/<name>" with O_CREAT|O_EXCL|O_CLOEXEC, sets the mode with
 * fchmod (the umask does not matter), reserves the space with
 * posix_fallocate, writes the header and stores the init flag last.  On any
 * failure nothing is left behind (the name is unlinked).
 * Returns 0, -EINVAL, -ENAMETOOLONG, -EOVERFLOW, -EEXIST, -EACCES, -ENOSPC,
 * -ENOMEM, -EMFILE, -EUSERS. */
int zd_segment_create_posix(const char *name, const zd_config_t *cfg,
			    zd_segment_t **out);

/* Attaches to an existing posix segment for reading and writing.  Copies the
 * immutable header to private memory and validates it against fstat with
 * overflow-checked arithmetic; nothing in it is trusted afterwards.  Not a
 * regular file (a FIFO planted under the name): -EBADMSG, without blocking;
 * a symlink: -ELOOP; an empty object (creation under way): -EINPROGRESS.
 * Returns 0, -EINVAL, -ENAMETOOLONG, -ENOENT, -EACCES, -ELOOP, -EBADMSG,
 * -EPROTO, -EINPROGRESS, -ENOMEM, -EMFILE, -EUSERS. */
int zd_segment_attach_posix(const char *name, zd_segment_t **out);

/* Describes a posix segment read-only (O_RDONLY, PROT_READ), without taking
 * an attachment entry.  Same validation and codes as attach. */
int zd_segment_describe_posix(const char *name, zd_segment_info_t *out);

/* Removes the name of a posix segment; mappings stay valid until closed.
 * Returns 0, -EINVAL, -ENAMETOOLONG, -ENOENT, -EACCES. */
int zd_segment_unlink_posix(const char *name);

/* Releases the handle: closes this handle's readers, discards its live
 * loans, frees its attachment entry, unmaps.  The creator's handle also sets
 * the goodbye flag.  The handle is freed even on error.  The caller must make
 * sure no pointer into the segment is used afterwards. Returns 0. */
int zd_segment_close(zd_segment_t *seg);

/* Ends this handle's part in the segment but keeps it mapped: closes its
 * readers, frees its attachment entry (discarding its live loans and
 * dropping its handle pins) and, for the creator's handle, says goodbye —
 * everything zd_segment_close does but the unmap.  For a handle whose only
 * pointers still in use are into committed slots (a producer's published
 * frame); no view pinned through the handle may be in use.  Afterwards only
 * zd_segment_close (which then only unmaps) or zd_segment_abandon may be
 * called on it.  Returns 0. */
int zd_segment_detach(zd_segment_t *seg);

/* The creator's goodbye before its handle is closed: sets the goodbye flag
 * and wakes every waiter, so readers drain what is committed and then end,
 * while the handle stays mapped and usable for zd_segment_close (which says
 * it again, harmlessly).  A handle that did not create the segment changes
 * nothing.  Returns 0. */
int zd_segment_goodbye(zd_segment_t *seg);

/* In a process that inherited the handle across fork(): lets go of the
 * owner's open file description at once, changing nothing shared.  An
 * inherited descriptor or mapping keeps that description, and with it the
 * owner's liveness locks, alive after the owner dies; so the descriptor is
 * closed and the mapping replaced in place by one of the same object opened
 * again by name (or, if the name is gone or now names another object, by
 * anonymous zero pages).  Views into the mapping stay valid.  The handle
 * may then only be passed to zd_segment_abandon.  Async-signal-safe, for a
 * fork child handler.  The memory backend has nothing to do.  Returns 0. */
int zd_segment_disown(zd_segment_t *seg);

/* Ends a handle in a process that inherited it across fork(): unmaps it in
 * this process, closes this process's descriptor and frees the handle,
 * touching no shared word.  No goodbye, no reader, attachment, loan or pin
 * of the process that opened the handle changes, and no lock is released:
 * closing an inherited descriptor drops no OFD lock while the other process
 * still has the open file description.  The memory backend frees this
 * process's private copy.  Returns 0. */
int zd_segment_abandon(zd_segment_t *seg);

/* Geometry from the private copy (never from shared memory). */
zd_backend_kind_t zd_segment_backend(const zd_segment_t *seg);
uint32_t zd_segment_slot_count(const zd_segment_t *seg);
uint64_t zd_segment_slot_capacity(const zd_segment_t *seg);
uint64_t zd_segment_slot_total_size(const zd_segment_t *seg);
uint64_t zd_segment_total_size(const zd_segment_t *seg);
/* Returns 1 and copies the hash when the segment has one, else 0. */
int zd_segment_type_hash(const zd_segment_t *seg,
			 uint8_t out[ZD_TYPE_HASH_SIZE]);
/* The posix name (without '/'), or "" for a memory segment. */
const char *zd_segment_name(const zd_segment_t *seg);
/* 1 if this handle created the segment. */
int zd_segment_is_creator(const zd_segment_t *seg);

/* Fills *out from the handle. Returns 0. */
int zd_segment_info(const zd_segment_t *seg, zd_segment_info_t *out);

/* Finds readers and attachments whose process has died (their liveness lock
 * is free although the entry is ACTIVE): disconnects such readers and frees
 * the loans of such attachments.  Counts are optional out-parameters.
 * Costs one fcntl per active entry on the posix backend. Returns 0. */
int zd_segment_reap(zd_segment_t *seg, uint32_t *readers_reaped,
		    uint32_t *loans_reclaimed);

#ifdef __cplusplus
}
#endif
#endif
