/* internal.h — the private handle and the helpers shared by the core files. */
#ifndef ZDSHM_INTERNAL_H
#define ZDSHM_INTERNAL_H

#include <errno.h>
#include <pthread.h>
#include <stdint.h>

#include "atomics.h"
#include "backend.h"
#include "layout.h"
#include "zdshm/zdshm.h"

/* A handle.  Geometry is the private, validated copy; pointers are derived
 * from it, never from shared memory. */
struct zd_segment {
	const struct zdi_backend_ops *ops;
	uint8_t *base;
	struct zdi_segment_header *hdr;
	struct zdi_reader_entry *readers;
	struct zdi_attach_entry *attach;
	uint8_t *slots;
	uint8_t *ro_base;              /* read-only alias of the same object */
	const uint8_t *ro_slots;       /* slots in the alias: sample data    */

	uint64_t total_size;
	uint64_t slot_capacity;
	uint64_t slot_stride;
	uint32_t slot_count;
	uint32_t flags;
	uint8_t type_hash[ZD_TYPE_HASH_SIZE];
	int32_t owner_pid;
	uint32_t owner_uid;
	uint64_t created_realtime_ns;

	int creator;
	int fd;                        /* posix: the shm fd (holds the locks) */
	int share_fd;                  /* anonymous: the fd to hand on, no locks */
	int sealed;                    /* cannot shrink or grow */
	char name[ZD_NAME_MAX + 1];

	uint32_t attach_index;         /* this handle's attachment entry */
	uint32_t attach_epoch;
	uint64_t own_readers;          /* readers opened here (atomic) */
	uint64_t last_reap_ns;         /* rate limit of the writer's reap */
	uint64_t last_creator_check_ns; /* rate limit of the creator check */
	uint32_t creator_dead;         /* 1 once the creator was found dead */
	uint64_t futex_waits;          /* futex(2) waits this handle made    */
	uint64_t futex_wakes;          /* futex(2) wakes this handle made    */

	/* Handle pins: how many views this handle holds per slot (under
	 * pin_mu); the shared handle_pins bit is set while the count is > 0. */
	pthread_mutex_t pin_mu;
	uint32_t *pin_count;
	uint32_t *pin_version;

	uint8_t *mem_locks;            /* memory backend: liveness flags */

	/* Calls of this handle working on reader r now (take, mark read),
	 * one cache line each: a set pin bit of r on a sample r has not read
	 * is legitimate only while one of them runs (see zd_reader_take). */
	struct { uint32_t n; uint8_t pad[60]; } takers[ZD_READER_MAX];
};

/* Creation and geometry (segment.c). */
int zdi_geometry(uint32_t slot_count, uint64_t slot_capacity,
		 uint64_t *stride, uint64_t *total);
/* zd_config_validate, then the geometry, which must fit in size_t too.
 * Returns 0, -EINVAL, -EOVERFLOW. */
int zdi_config_geometry(const zd_config_t *cfg, uint64_t *stride,
			uint64_t *total);
int zdi_segment_init_handle(zd_segment_t *seg);      /* after mapping */
void zdi_segment_write_header(zd_segment_t *seg, const zd_config_t *cfg,
			      uint64_t stride, uint64_t total);
int zdi_header_validate(const struct zdi_segment_header *h, uint64_t real_size);
void zdi_segment_free(zd_segment_t *seg);

/* A memfd of total bytes with its space reserved (backend_memory.c).  A
 * size beyond RAM + swap is refused before posix_fallocate, which would
 * otherwise fill memory page by page (a memfd has no size limit).
 * Returns 0 and the descriptor in *fd, or -ENOSPC, -ENOMEM, -EMFILE. */
int zdi_memfd_sized(unsigned int flags, uint64_t total, int *fd);

static inline struct zdi_slot_header *zdi_slot(const zd_segment_t *seg,
					       uint32_t i)
{
	return (struct zdi_slot_header *)(seg->slots + (uint64_t)i * seg->slot_stride);
}

static inline uint8_t *zdi_slot_data(const zd_segment_t *seg, uint32_t i)
{
	return (uint8_t *)zdi_slot(seg, i) + ZD_SLOT_HEADER_SIZE;
}

/* Sample data: the same bytes seen through the read-only mapping. */
static inline const uint8_t *zdi_slot_data_ro(const zd_segment_t *seg,
					      uint32_t i)
{
	return seg->ro_slots + (uint64_t)i * seg->slot_stride + ZD_SLOT_HEADER_SIZE;
}

static inline uint64_t zdi_bit(uint32_t i)
{
	return (uint64_t)1 << i;
}

/* Slot transitions (slot.c). */
int zdi_pin(zd_segment_t *seg, uint32_t slot, uint64_t expected_state,
	    uint64_t *pins, uint64_t bit);
void zdi_unpin(zd_segment_t *seg, uint32_t slot, uint64_t *pins, uint64_t bit);
int zdi_recycle(zd_segment_t *seg, uint32_t slot, uint64_t expected_state);
/* Sets (set != 0) or clears reader r's read bit on the sample now in the
 * slot, holding a reader pin so the bit cannot land on a later sample.
 * Returns 0, -ENODATA (not committed). */
int zdi_mark_bit(zd_segment_t *seg, uint32_t slot, uint32_t r, int set);
void zdi_loan_taken(zd_segment_t *seg, uint32_t slot);
/* Loans a FREE slot, or the oldest unpinned committed slot that every
 * reader in read_by has read; *unread_by gets the readers that had not read
 * the displaced sample (0 for a FREE slot).  Returns 0, -EAGAIN. */
int zdi_take_loanable(zd_segment_t *seg, uint64_t read_by, uint32_t *slot,
		      uint64_t *unread_by);
int zdi_scan_oldest(zd_segment_t *seg, uint32_t r, uint64_t start,
		    uint32_t *slot, uint64_t *sn_out, uint64_t *state_out);
void zdi_count_drops(zd_segment_t *seg, uint64_t unread_mask);
int zdi_view_fill(zd_segment_t *seg, uint32_t slot, uint64_t state,
		  int32_t reader, zd_view_t *view);

/* Reaps at most once per ZDI_REAP_INTERVAL_NS per handle (writer.c). */
void zdi_maybe_reap(zd_segment_t *seg, int force);

/* Registry (reader.c). */
void zdi_reader_cleanup(zd_segment_t *seg, uint32_t r);
int zdi_attach_claim(zd_segment_t *seg);
void zdi_attach_release(zd_segment_t *seg);

/* Bounds of the retry loops over words other processes can write.  Every
 * retry in a correct segment means another thread or process made progress
 * (a commit, a recycle, a pin of its own) between two of our loads, so a
 * loop that needs more than this many is looking at words that keep
 * changing for no good reason: it gives up with an error code instead. */
#define ZDI_PIN_TRIES 64u               /* a pin refused as stale */
#define ZDI_LOANABLE_TRIES 64u          /* a recycle lost to a pin or a CAS */
#define ZDI_TAKE_TRIES 256u             /* a take that lost its slot */

/* Brackets a call that may pin reader r (take, mark read).  seq_cst like
 * the pins themselves: a pin_refused (reader.c) that sees one of our pins
 * and then loads takers[r] (seq_cst) sees this call counted, unless the
 * call already set its read bit or dropped its pin and left. */
static inline void zdi_takers_enter(zd_segment_t *seg, uint32_t r)
{
	zdi_fetch_add_seqcst_u32(&seg->takers[r].n, 1);
}

static inline void zdi_takers_leave(zd_segment_t *seg, uint32_t r)
{
	zdi_fetch_sub_seqcst_u32(&seg->takers[r].n, 1);
}

#define ZDI_COUNT(seg, field) \
	zdi_fetch_add_relaxed_u64(&(seg)->hdr->counters.field, 1)

#endif
