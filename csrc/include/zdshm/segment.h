/* zdshm/segment.h — creating, attaching, describing and removing segments. */
#ifndef ZDSHM_SEGMENT_H
#define ZDSHM_SEGMENT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "zdshm/counters.h"
#include "zdshm/error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define ZD_LAYOUT_VERSION 5u       /* 5: size classes (the class table) */
#define ZD_READER_MAX 64u          /* readers per segment (bits of a mask)   */
#define ZD_ATTACH_MAX 64u          /* open handles per segment               */
#define ZD_SLOT_COUNT_MAX (1u << 20)
#define ZD_SLOT_CAPACITY_MAX ((uint64_t)1 << 40)
#define ZD_CLASS_MAX 16u           /* size classes per segment              */
#define ZD_SLOT_META_SIZE 64u      /* opaque per-slot bytes for the caller   */
#define ZD_SLOT_HEADER_SIZE 128u   /* 64 B control + ZD_SLOT_META_SIZE       */
#define ZD_NAME_MAX 200u           /* without the leading '/'                */
#define ZD_TYPE_HASH_SIZE 16u

typedef struct zd_segment zd_segment_t;

typedef enum zd_backend_kind {
	ZD_BACKEND_MEMORY = 1,
	ZD_BACKEND_POSIX = 2,
	ZD_BACKEND_ANONYMOUS = 3,  /* a nameless object shared by descriptor */
} zd_backend_kind_t;

/* One size class asked for at creation: slot_count slots of slot_capacity
 * data bytes each. */
typedef struct zd_class_spec {
	uint32_t slot_count;               /* 1 .. ZD_SLOT_COUNT_MAX          */
	uint32_t reserved;
	uint64_t slot_capacity;            /* 1 .. ZD_SLOT_CAPACITY_MAX bytes */
} zd_class_spec_t;

/* Either one class (slot_count, slot_capacity; class_count 0), or
 * class_count (1 .. ZD_CLASS_MAX) classes in classes[], strictly increasing
 * in capacity, with slot_count and slot_capacity 0.  The total slot count
 * is at most ZD_SLOT_COUNT_MAX. */
typedef struct zd_config {
	uint32_t slot_count;               /* 1 .. ZD_SLOT_COUNT_MAX          */
	uint64_t slot_capacity;            /* 1 .. ZD_SLOT_CAPACITY_MAX bytes */
	uint32_t class_count;              /* 0: the one class above          */
	zd_class_spec_t classes[ZD_CLASS_MAX];
	uint8_t type_hash[ZD_TYPE_HASH_SIZE]; /* all zero: no hash          */
	uint32_t mode;                     /* posix: permission bits, 0 = 0600 */
	uint32_t flags;                    /* ZD_CREATE_*, 0 for none          */
} zd_config_t;

/* Posix create: if the name exists and holds a stale segment (its creator
 * is dead and no live handle has it attached), remove it and create anew.
 * A live segment, or a name that is no valid segment, is never touched. */
#define ZD_CREATE_REPLACE_STALE 1u

/* ZD_CLASS_FIELDS(X) calls X(type, name, doc) for each field of an entry
 * of the class table, in layout order: the struct, the header's table, its
 * validation and every report expand this list. */
#define ZD_CLASS_FIELDS(X)                                                   \
	X(uint32_t, slot_count,    "slots of the class")                     \
	X(uint32_t, first_slot,    "global index of its first slot")         \
	X(uint64_t, slot_capacity, "data bytes per slot")                    \
	X(uint64_t, slot_stride,   "slot header + data, padded to 64 B")     \
	X(uint64_t, slots_offset,  "offset of its first slot in the object")

#define ZD_CLASS_FIELD(type, name, doc) type name;

/* One size class: slot_count slots, global indices first_slot .. first_slot
 * + slot_count - 1, laid out from slots_offset every slot_stride bytes.
 * Classes are ordered by capacity and their slots follow each other. */
typedef struct zd_class {
	ZD_CLASS_FIELDS(ZD_CLASS_FIELD)
} zd_class_t;

/* ZD_CLASS_STATS(X): X(name, doc) for the per-class slot counts reported
 * by info (a scan of the slot state words: a snapshot). */
#define ZD_CLASS_STATS(X)                                                    \
	X(free,      "slots FREE")                                           \
	X(loaned,    "slots loaned by a writer")                             \
	X(committed, "slots holding a published sample")

typedef struct zd_class_stats {
	ZD_CLASS_STATS(ZD_COUNTER_FIELD)
} zd_class_stats_t;

/* Where everything is in a segment, and how big: computed by the creator
 * from the class specs, written into the header, recomputed and compared
 * at attach, then kept in the handle and reported by info.  Offsets are
 * from the start of the object.  With several classes, slot_count is their
 * total, slot_capacity and slot_stride those of the largest class and
 * slots_offset that of class 0; the class table has the rest. */
typedef struct zd_geometry {
	uint32_t slot_count;
	uint32_t ring_size;        /* delivery ring entries: a power of two
				      >= 2 * slot_count, at least 4        */
	uint64_t slot_capacity;
	uint64_t slot_stride;      /* slot header + data, padded to 64 B    */
	uint64_t total_size;
	uint64_t readers_offset;   /* ZD_READER_MAX reader entries          */
	uint64_t attach_offset;    /* ZD_ATTACH_MAX attachment entries      */
	uint64_t ring_offset;      /* ring_size 8-byte entries              */
	uint64_t free_offset;      /* free-slot map: bit words, summary     */
	uint64_t old_offset;       /* map of samples the ring lost track of */
	uint64_t slots_offset;     /* page aligned                          */
	uint32_t class_count;      /* 1 .. ZD_CLASS_MAX                     */
	uint32_t reserved;
} zd_geometry_t;

/* Segment-wide counters (monotonic, relaxed), one uint64_t per entry of
 * ZD_COUNTERS in its order. */
typedef struct zd_segment_counters {
	ZD_COUNTERS(ZD_COUNTER_FIELD)
} zd_segment_counters_t;

/* Counters of one handle (private, relaxed), one uint64_t per entry of
 * ZD_HANDLE_COUNTERS in its order. */
typedef struct zd_handle_counters {
	ZD_HANDLE_COUNTERS(ZD_COUNTER_FIELD)
} zd_handle_counters_t;

/* What can be learned about a segment without taking part in it. */
typedef struct zd_segment_info {
	zd_backend_kind_t backend;
	uint32_t layout_version;
	zd_geometry_t geo;
	zd_class_t classes[ZD_CLASS_MAX];  /* geo.class_count of them        */
	zd_class_stats_t class_stats[ZD_CLASS_MAX]; /* a scan of the slot
				      state words (describe: one pread each) */
	uint8_t type_hash[ZD_TYPE_HASH_SIZE];
	int32_t owner_pid;
	uint32_t owner_uid;
	uint64_t created_realtime_ns;
	uint32_t goodbye;          /* 1: the creator has closed it            */
	uint32_t readers_active;   /* number of bits in the active mask       */
	uint32_t creator_alive;    /* 1: the creator's handle is open (lock
				      held), 0: closed, or its process died */
	uint32_t live_readers;     /* ACTIVE reader entries whose lock is held */
	uint32_t live_attachments; /* ACTIVE attachments whose lock is held  */
	uint64_t active_mask;
	uint64_t next_sn;          /* sequence number the next commit gets    */
	zd_segment_counters_t counters;
	zd_handle_counters_t handle; /* this handle's system calls, see
					ZD_HANDLE_COUNTERS */
} zd_segment_info_t;

/* Checks a posix segment name: 1..ZD_NAME_MAX characters of [A-Za-z0-9._-],
 * not starting with '.', given without the leading '/'.
 * Returns 0, -EINVAL, -ENAMETOOLONG. */
int zd_name_validate(const char *name);

/* Checks a configuration without creating anything.
 * Returns 0, -EINVAL (a count or capacity of 0, a mode outside 0..0777,
 * an unknown flag; classes: more than ZD_CLASS_MAX, capacities not strictly
 * increasing, more than ZD_SLOT_COUNT_MAX slots in all, or slot_count /
 * slot_capacity given as well),
 * -EOVERFLOW (the segment size would not fit). */
int zd_config_validate(const zd_config_t *cfg);

/* Creates a segment usable by the threads of this process: a memfd mapped
 * twice (read-write for loans, read-only for samples) and closed at once,
 * so it holds no descriptor.  A size beyond RAM + swap is refused at once.
 * Returns 0, -EINVAL, -EOVERFLOW, -ENOMEM, -EMFILE. */
int zd_segment_create_memory(const zd_config_t *cfg, zd_segment_t **out);

/* Creates "/dev/shm/<name>" with O_CREAT|O_EXCL|O_CLOEXEC, takes the
 * creator's liveness lock, sets the mode with fchmod (the umask does not
 * matter), reserves the space with posix_fallocate, writes the header and
 * stores the init flag last.  On any failure nothing is left behind (the
 * name is unlinked).  With ZD_CREATE_REPLACE_STALE in cfg->flags a stale
 * segment under the name is removed first (see zd_segment_unlink_stale_posix);
 * -EEXIST then means the name holds a live segment or something that is no
 * valid segment.
 * Returns 0, -EINVAL, -ENAMETOOLONG, -EOVERFLOW, -EEXIST, -EACCES, -ENOSPC,
 * -ENOMEM, -EMFILE, -EUSERS. */
int zd_segment_create_posix(const char *name, const zd_config_t *cfg,
			    zd_segment_t **out);

/* Whose named objects attach and describe accept.  A process that maps a
 * shared object dies of SIGBUS when the object is truncated under it, and
 * anyone allowed to write the object may truncate it; so, by default
 * (flags 0, or a NULL opts), only an object that no other user but root
 * can truncate is accepted: owned by the caller's effective uid and
 * without a group or other write bit (mode & 022 == 0).
 *   ZD_ATTACH_ALLOW_UID   also accept an object owned by allow_uid, whatever
 *                         its mode: the caller trusts that user (and whoever
 *                         its mode lets write) not to truncate it.  With
 *                         allow_uid the caller's own euid, this accepts the
 *                         caller's own group/other-writable objects.
 *   ZD_ATTACH_ANY_OWNER   accept every owner and mode.
 * The check is one fstat of the descriptor attach or describe then uses,
 * before anything of the object is read.  On -ZD_EOWNER the function fills
 * found_uid and found_mode (st_mode & 07777) for the caller's message.
 * zd_segment_attach_fd applies no policy: whoever handed over the
 * descriptor chose to share the object (an anonymous segment is sealed
 * against truncation anyway). */
#define ZD_ATTACH_ALLOW_UID 1u
#define ZD_ATTACH_ANY_OWNER 2u

typedef struct zd_attach_opts {
	uint32_t flags;            /* ZD_ATTACH_*, 0 for the default policy   */
	uint32_t allow_uid;        /* with ZD_ATTACH_ALLOW_UID                */
	uint32_t found_uid;        /* out, on -ZD_EOWNER: the object's owner  */
	uint32_t found_mode;       /* out, on -ZD_EOWNER: its permission bits */
	uint32_t found_version;    /* out, on -EPROTO: the object's layout
				      version (ZD_LAYOUT_VERSION is ours)  */
	uint32_t reserved;
} zd_attach_opts_t;

/* Attaches to an existing posix segment for reading and writing, with the
 * default owner policy (zd_segment_attach_posix_opts with opts NULL). */
int zd_segment_attach_posix(const char *name, zd_segment_t **out);

/* Attaches to an existing posix segment for reading and writing.  Checks
 * the owner and mode against opts (see zd_attach_opts_t; NULL: the default
 * policy), then reads the immutable header with pread into private memory
 * and validates it against fstat with overflow-checked arithmetic before
 * mapping anything; nothing in it is trusted afterwards.  Not a regular
 * file (a FIFO planted under the name): -EBADMSG, without blocking; a
 * symlink: -ELOOP; an empty object (creation under way): -EINPROGRESS; a
 * header cut short by a concurrent truncation: -EBADMSG.
 * Returns 0, -EINVAL (also an unknown opts flag), -ENAMETOOLONG, -ENOENT,
 * -EACCES, -ZD_EOWNER, -ELOOP, -EBADMSG, -EPROTO, -EINPROGRESS, -ENOMEM,
 * -EMFILE, -EUSERS. */
int zd_segment_attach_posix_opts(const char *name, zd_attach_opts_t *opts,
				 zd_segment_t **out);

/* Creates a nameless segment: memfd_create(MFD_CLOEXEC|MFD_ALLOW_SEALING),
 * posix_fallocate (a size beyond RAM + swap is refused before it), then
 * sealed with F_SEAL_SHRINK|F_SEAL_GROW and F_SEAL_SEAL last, so no holder of
 * the descriptor can truncate it (writes are not sealed).  Nothing appears
 * in /dev/shm; the object lives while a handle, a mapping or a descriptor
 * of it does.  cfg->mode is ignored: the descriptor is the capability.
 * Hand it to other processes with zd_segment_fd (inheritance, SCM_RIGHTS).
 * Returns 0, -EINVAL, -EOVERFLOW, -ENOSPC, -ENOMEM, -EMFILE, -ENOSYS (no
 * /proc to give the handle its own open file description), -EUSERS. */
int zd_segment_create_anonymous(const zd_config_t *cfg, zd_segment_t **out);

/* Attaches to the segment behind a descriptor (an anonymous segment's, or
 * a named posix object's).  fd stays the caller's: the handle keeps a
 * duplicate to hand on and opens the object again through /proc/self/fd for
 * its liveness locks, because OFD locks belong to an open file description
 * that a dup or SCM_RIGHTS would share with the sender.  fd must be open
 * O_RDWR.  Validates exactly like zd_segment_attach_posix (fstat, a regular
 * file, the real size, the init flag, a private copy of the header read
 * with pread before mapping), but applies no owner policy: the descriptor
 * was handed over on purpose.
 * Seals: an object sealed against writes is refused (-EPERM); an object
 * without F_SEAL_SHRINK|F_SEAL_GROW (a named object, an unsealed memfd) is
 * accepted, and zd_segment_sealed tells the caller it could be truncated
 * under it.  The handle's backend is ZD_BACKEND_ANONYMOUS (it has no name).
 * Returns 0, -EINVAL, -EBADF (not an open descriptor), -EACCES (not open for
 * writing), -EPERM, -EBADMSG (not a regular file, or not a segment),
 * -EPROTO, -EINPROGRESS (empty), -ENOMEM, -EMFILE, -ENOSYS, -EUSERS. */
int zd_segment_attach_fd(int fd, zd_segment_t **out);

/* The descriptor of an anonymous handle, to hand to another process (pass
 * it to a child, or send it with SCM_RIGHTS); the handle owns it and closes
 * it in zd_segment_close.  It carries none of this handle's locks.
 * Returns the descriptor (>= 0), or -EINVAL for a memory or named posix
 * segment (those are shared by name or not at all). */
int zd_segment_fd(const zd_segment_t *seg);

/* 1 if the object can neither shrink nor grow (F_SEAL_SHRINK and
 * F_SEAL_GROW were set when the handle was made), else 0. */
int zd_segment_sealed(const zd_segment_t *seg);

/* Describes a posix segment with the default owner policy
 * (zd_segment_describe_posix_opts with opts NULL). */
int zd_segment_describe_posix(const char *name, zd_segment_info_t *out);

/* Describes a posix segment without mapping it and without taking an
 * attachment entry: opens it O_RDONLY, checks the owner like attach
 * (opts), reads the header and the reader and attachment tables with pread
 * into private memory and validates them exactly like attach; the liveness
 * counts ask the locks of that descriptor (F_OFD_GETLK); the per-class slot
 * counts cost one pread of each slot's state word.  An object that
 * shrinks meanwhile yields -EBADMSG, never a signal: nothing is mapped.
 * The counters are a snapshot of words other processes write.
 * Same codes as zd_segment_attach_posix_opts, without -EUSERS. */
int zd_segment_describe_posix_opts(const char *name, zd_attach_opts_t *opts,
				   zd_segment_info_t *out);

/* Removes the name of a posix segment; mappings stay valid until closed.
 * Returns 0, -EINVAL, -ENAMETOOLONG, -ENOENT, -EACCES. */
int zd_segment_unlink_posix(const char *name);

/* Removes the name only if it holds a stale segment: its creator is dead
 * (or closed it) and no live handle has it attached (no liveness lock held).
 * Whoever owns it (no owner policy: nothing of it is mapped; the header is
 * read with pread and validated like attach's).
 * Takes the segment's creator lock while it checks, so a second remover, a
 * replacing create and the creator itself are shut out, and unlinks only if
 * the name still refers to the object it checked.
 * Returns 0 (removed), -EBUSY (alive: the creator or an attachment holds a
 * lock, or the name moved on meanwhile), -EINVAL, -ENAMETOOLONG, -ENOENT,
 * -EACCES, -ELOOP, -EBADMSG, -EPROTO, -EINPROGRESS (not a valid segment:
 * never removed), -ENOMEM, -EMFILE. */
int zd_segment_unlink_stale_posix(const char *name);

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
 * closed and both mappings are replaced in place by mappings of a new open
 * file description of the same object (opened again through /proc/self/fd;
 * if that fails, by anonymous zero pages).  Views into the mappings stay
 * valid.  An anonymous segment keeps the descriptor it hands over (it holds
 * no lock).  The handle may then only be passed to zd_segment_abandon.
 * Async-signal-safe, for a fork child handler.  The memory backend has
 * nothing to do.  Returns 0. */
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
uint64_t zd_segment_slot_capacity(const zd_segment_t *seg); /* the largest */
/* Number of size classes (1 .. ZD_CLASS_MAX). */
uint32_t zd_segment_class_count(const zd_segment_t *seg);
/* Copies class c of the table.  Returns 0, -ERANGE. */
int zd_segment_class(const zd_segment_t *seg, uint32_t c, zd_class_t *out);
/* The class of a slot (global index).  Returns the class, -ERANGE. */
int zd_segment_class_of(const zd_segment_t *seg, uint32_t slot);
/* The data capacity of a slot, or 0 for an index out of range. */
uint64_t zd_segment_slot_capacity_of(const zd_segment_t *seg, uint32_t slot);
uint64_t zd_segment_slot_total_size(const zd_segment_t *seg);
uint64_t zd_segment_total_size(const zd_segment_t *seg);
/* Returns 1 and copies the hash when the segment has one, else 0. */
int zd_segment_type_hash(const zd_segment_t *seg,
			 uint8_t out[ZD_TYPE_HASH_SIZE]);
/* The posix name (without '/'), or "" for a memory or anonymous segment. */
const char *zd_segment_name(const zd_segment_t *seg);
/* 1 if this handle created the segment. */
int zd_segment_is_creator(const zd_segment_t *seg);

/* Whether the creator's handle is open: 1 (alive; always for the creator's
 * own handle and for a memory segment), 0 (it closed the segment or its
 * process died), -errno.  One fcntl(F_OFD_GETLK) on the posix backend: a
 * query that takes no lock. */
int zd_segment_creator_alive(const zd_segment_t *seg);

/* Fills *out from the handle.  The live counts cost one fcntl per ACTIVE
 * entry that is not this handle's; the per-class slot counts one load of
 * each slot's state word.  Returns 0. */
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
