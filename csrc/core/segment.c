/* segment.c — geometry, header validation, handle lifecycle, info, reap. */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

int zdi_geometry(uint32_t slot_count, uint64_t slot_capacity, uint64_t *stride,
		 uint64_t *total)
{
	uint64_t s, bytes;

	if (slot_count == 0 || slot_count > ZD_SLOT_COUNT_MAX)
		return -EINVAL;
	if (slot_capacity == 0 || slot_capacity > ZD_SLOT_CAPACITY_MAX)
		return -EINVAL;
	if (__builtin_add_overflow(slot_capacity, (uint64_t)ZD_SLOT_HEADER_SIZE + 63u, &s))
		return -EOVERFLOW;
	s &= ~(uint64_t)63u;
	if (__builtin_mul_overflow(s, (uint64_t)slot_count, &bytes) ||
	    __builtin_add_overflow(bytes, ZDI_SLOTS_OFFSET, &bytes) ||
	    bytes > (uint64_t)INT64_MAX)
		return -EOVERFLOW;
	*stride = s;
	*total = bytes;
	return 0;
}

int zd_config_validate(const zd_config_t *cfg)
{
	uint64_t stride, total;

	if (cfg == NULL || (cfg->mode & ~0777u) != 0 ||
	    (cfg->flags & ~ZD_CREATE_REPLACE_STALE) != 0)
		return -EINVAL;
	return zdi_geometry(cfg->slot_count, cfg->slot_capacity, &stride, &total);
}

int zdi_config_geometry(const zd_config_t *cfg, uint64_t *stride,
			uint64_t *total)
{
	int rc = zd_config_validate(cfg);

	if (rc < 0)
		return rc;
	rc = zdi_geometry(cfg->slot_count, cfg->slot_capacity, stride, total);
	if (rc < 0)
		return rc;
	return *total > SIZE_MAX ? -EOVERFLOW : 0;
}

static void derive_pointers(zd_segment_t *seg)
{
	seg->hdr = (struct zdi_segment_header *)seg->base;
	seg->readers = (struct zdi_reader_entry *)(seg->base + ZDI_READERS_OFFSET);
	seg->attach = (struct zdi_attach_entry *)(seg->base + ZDI_ATTACH_OFFSET);
	seg->slots = seg->base + ZDI_SLOTS_OFFSET;
	/* A handle without the read-only alias (describe) exports nothing. */
	seg->ro_slots = (seg->ro_base != NULL ? seg->ro_base : seg->base) +
			ZDI_SLOTS_OFFSET;
}

/* The creator fills the immutable header of a zeroed region (geometry from
 * zdi_geometry) and stores the init flag last. */
void zdi_segment_write_header(zd_segment_t *seg, const zd_config_t *cfg,
			      uint64_t stride, uint64_t total)
{
	struct zdi_segment_header *h;
	static const uint8_t zero[ZD_TYPE_HASH_SIZE];
	struct timespec ts;

	derive_pointers(seg);
	h = seg->hdr;
	clock_gettime(CLOCK_REALTIME, &ts);
	seg->slot_count = cfg->slot_count;
	seg->slot_capacity = cfg->slot_capacity;
	seg->slot_stride = stride;
	seg->total_size = total;
	seg->flags = memcmp(cfg->type_hash, zero, sizeof(zero)) != 0 ? ZDI_FLAG_TYPE_HASH : 0;
	memcpy(seg->type_hash, cfg->type_hash, sizeof(seg->type_hash));
	seg->owner_pid = (int32_t)getpid();
	seg->owner_uid = (uint32_t)getuid();
	seg->created_realtime_ns = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;

	h->magic = ZDI_MAGIC;
	h->version = ZD_LAYOUT_VERSION;
	h->header_size = ZDI_SEGMENT_HEADER_SIZE;
	h->total_size = total;
	h->slot_capacity = cfg->slot_capacity;
	h->slot_stride = stride;
	h->readers_offset = ZDI_READERS_OFFSET;
	h->attach_offset = ZDI_ATTACH_OFFSET;
	h->slots_offset = ZDI_SLOTS_OFFSET;
	h->slot_count = cfg->slot_count;
	h->reader_max = ZD_READER_MAX;
	h->attach_max = ZD_ATTACH_MAX;
	h->flags = seg->flags;
	memcpy(h->type_hash, seg->type_hash, sizeof(h->type_hash));
	h->owner_pid = seg->owner_pid;
	h->owner_uid = seg->owner_uid;
	h->created_realtime_ns = seg->created_realtime_ns;
	/* Pairs with the load of init_done in attach and describe (a pread
	 * and an acquire fence, posix_read_validated in backend_posix.c). */
	zdi_store_release_u32(&h->init_done, ZDI_INIT_DONE);
}

/* Validates a private copy of the immutable header against the real size
 * of the object.  Every geometry value is recomputed and compared. */
int zdi_header_validate(const struct zdi_segment_header *h, uint64_t real_size)
{
	uint64_t stride, total;

	if (h->magic != ZDI_MAGIC)
		return -EBADMSG;
	if (h->version != ZD_LAYOUT_VERSION)
		return -EPROTO;
	if (h->header_size != ZDI_SEGMENT_HEADER_SIZE ||
	    h->reader_max != ZD_READER_MAX || h->attach_max != ZD_ATTACH_MAX ||
	    (h->flags & ~ZDI_FLAGS_KNOWN) != 0)
		return -EBADMSG;
	if (zdi_geometry(h->slot_count, h->slot_capacity, &stride, &total) < 0)
		return -EBADMSG;
	if (h->slot_stride != stride || h->total_size != total ||
	    h->readers_offset != ZDI_READERS_OFFSET ||
	    h->attach_offset != ZDI_ATTACH_OFFSET ||
	    h->slots_offset != ZDI_SLOTS_OFFSET || total != real_size)
		return -EBADMSG;
	return 0;
}

/* Per-handle state once the region is mapped and validated: the handle-pin
 * tables and this handle's attachment entry. */
int zdi_segment_init_handle(zd_segment_t *seg)
{
	derive_pointers(seg);
	seg->attach_index = UINT32_MAX;
	seg->pin_count = calloc(seg->slot_count, sizeof(uint32_t));
	seg->pin_version = calloc(seg->slot_count, sizeof(uint32_t));
	if (seg->pin_count == NULL || seg->pin_version == NULL)
		return -ENOMEM;
	if (pthread_mutex_init(&seg->pin_mu, NULL) != 0)
		return -ENOMEM;
	return zdi_attach_claim(seg);
}

void zdi_segment_free(zd_segment_t *seg)
{
	if (seg == NULL)
		return;
	if (seg->attach_index != UINT32_MAX && seg->pin_count != NULL)
		zdi_attach_release(seg);
	if (seg->pin_count != NULL && seg->pin_version != NULL)
		pthread_mutex_destroy(&seg->pin_mu);
	seg->ops->unmap(seg);
	free(seg->pin_count);
	free(seg->pin_version);
	free(seg);
}

int zd_segment_close(zd_segment_t *seg)
{
	if (seg == NULL)
		return 0;
	zd_segment_detach(seg);
	zdi_segment_free(seg);
	return 0;
}

int zd_segment_detach(zd_segment_t *seg)
{
	uint64_t own;

	if (seg == NULL)
		return 0;
	own = zdi_fetch_and_acq_rel_u64(&seg->own_readers, 0);
	for (uint32_t r = 0; r < ZD_READER_MAX; r++) {
		if (own & zdi_bit(r)) {
			zdi_reader_cleanup(seg, r);
			seg->ops->lock_release(seg, ZDI_LOCK_READER(r));
		}
	}
	zd_segment_goodbye(seg);
	if (seg->attach_index != UINT32_MAX && seg->pin_count != NULL)
		zdi_attach_release(seg);
	return 0;
}

int zd_segment_goodbye(zd_segment_t *seg)
{
	if (seg == NULL || !seg->creator)
		return 0;
	/* Pairs with the acquire load of goodbye in zd_reader_take. */
	zdi_store_release_u32(&seg->hdr->goodbye, 1);
	zd_notify_bump(seg);
	return 0;
}

int zd_segment_abandon(zd_segment_t *seg)
{
	if (seg == NULL)
		return 0;
	/* No registry cleanup, no goodbye, no unlock and no mutex teardown:
	 * every shared word and every lock still belongs to the process the
	 * handle came from.  The backend's unmap only closes this process's
	 * descriptor, and an OFD lock lives until the last descriptor of its
	 * open file description is closed, so the owner keeps its locks. */
	seg->ops->unmap(seg);
	free(seg->pin_count);
	free(seg->pin_version);
	free(seg);
	return 0;
}

zd_backend_kind_t zd_segment_backend(const zd_segment_t *seg) { return seg->ops->kind; }
uint32_t zd_segment_slot_count(const zd_segment_t *seg) { return seg->slot_count; }
uint64_t zd_segment_slot_capacity(const zd_segment_t *seg) { return seg->slot_capacity; }
uint64_t zd_segment_slot_total_size(const zd_segment_t *seg) { return seg->slot_stride; }
uint64_t zd_segment_total_size(const zd_segment_t *seg) { return seg->total_size; }
const char *zd_segment_name(const zd_segment_t *seg) { return seg->name; }
int zd_segment_is_creator(const zd_segment_t *seg) { return seg->creator; }
int zd_segment_sealed(const zd_segment_t *seg) { return seg->sealed; }

int zd_segment_fd(const zd_segment_t *seg)
{
	if (seg->ops->kind != ZD_BACKEND_ANONYMOUS || seg->share_fd < 0)
		return -EINVAL;
	return seg->share_fd;
}

int zd_segment_creator_alive(const zd_segment_t *seg)
{
	if (seg->creator)
		return 1;
	return seg->ops->lock_held(seg, ZDI_LOCK_CREATOR);
}

/* Entries marked ACTIVE whose owner holds the lock (this handle's own ones
 * count without asking: a lock query does not see our own locks).  A failed
 * query counts as live. */
static void count_live(const zd_segment_t *seg, zd_segment_info_t *out)
{
	uint64_t own = zdi_load_acquire_u64(&seg->own_readers);

	for (uint32_t r = 0; r < ZD_READER_MAX; r++)
		if (zdi_load_acquire_u32(&seg->readers[r].state) == ZDI_ENTRY_ACTIVE &&
		    ((own & zdi_bit(r)) ||
		     seg->ops->lock_held(seg, ZDI_LOCK_READER(r)) != 0))
			out->live_readers++;
	for (uint32_t a = 0; a < ZD_ATTACH_MAX; a++)
		if (zdi_load_acquire_u32(&seg->attach[a].state) == ZDI_ENTRY_ACTIVE &&
		    (a == seg->attach_index ||
		     seg->ops->lock_held(seg, ZDI_LOCK_ATTACH(a)) != 0))
			out->live_attachments++;
}

int zd_segment_type_hash(const zd_segment_t *seg, uint8_t out[ZD_TYPE_HASH_SIZE])
{
	if (!(seg->flags & ZDI_FLAG_TYPE_HASH))
		return 0;
	memcpy(out, seg->type_hash, ZD_TYPE_HASH_SIZE);
	return 1;
}

uint64_t zd_segment_active_mask(const zd_segment_t *seg)
{
	return zdi_load_acquire_u64(&seg->hdr->active_mask);
}

int zd_segment_info(const zd_segment_t *seg, zd_segment_info_t *out)
{
	const struct zdi_counters *c = &seg->hdr->counters;

	memset(out, 0, sizeof(*out));
	out->backend = seg->ops->kind;
	out->layout_version = ZD_LAYOUT_VERSION;
	out->slot_count = seg->slot_count;
	out->slot_capacity = seg->slot_capacity;
	out->slot_stride = seg->slot_stride;
	out->total_size = seg->total_size;
	memcpy(out->type_hash, seg->type_hash, sizeof(out->type_hash));
	out->owner_pid = seg->owner_pid;
	out->owner_uid = seg->owner_uid;
	out->created_realtime_ns = seg->created_realtime_ns;
	out->goodbye = zdi_load_acquire_u32(&seg->hdr->goodbye) != 0;
	out->active_mask = zdi_load_acquire_u64(&seg->hdr->active_mask);
	out->readers_active = (uint32_t)__builtin_popcountll(out->active_mask);
	out->creator_alive = zd_segment_creator_alive(seg) != 0;
	count_live(seg, out);
	out->next_sn = zdi_load_relaxed_u64(&seg->hdr->next_sn);
#define COPY_COUNTER(name, doc) \
	out->counters.name = zdi_load_relaxed_u64(&c->name);
	ZD_COUNTERS(COPY_COUNTER)
#undef COPY_COUNTER
	out->futex_waits = zdi_load_relaxed_u64(&seg->futex_waits);
	out->futex_wakes = zdi_load_relaxed_u64(&seg->futex_wakes);
	return 0;
}
