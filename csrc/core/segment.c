/* segment.c — geometry, header validation, handle lifecycle, info, reap. */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

static int align_up(uint64_t v, uint64_t a, uint64_t *out)
{
	if (__builtin_add_overflow(v, a - 1u, out))
		return -EOVERFLOW;
	*out &= ~(a - 1u);
	return 0;
}

/* Bytes of a map over n slots: its words, then its summary words, padded
 * to a cache line. */
static uint64_t map_bytes(uint32_t n)
{
	uint64_t words = ((uint64_t)n + 63u) / 64u;
	uint64_t summary = (words + 63u) / 64u;

	return ((words + summary) * 8u + 63u) & ~(uint64_t)63u;
}

/* The geometry of n classes: the tables, then the slots of class 0 from a
 * page boundary, each class's slots right after the previous class's.
 * Every sum and product is overflow-checked; capacities must increase
 * strictly, so the table is sorted and no two classes are alike. */
int zdi_geometry(const zd_class_spec_t *specs, uint32_t n, zd_geometry_t *g,
		 zd_class_t classes[ZD_CLASS_MAX])
{
	uint64_t ring = 4, total = 0, off;

	if (n == 0 || n > ZD_CLASS_MAX)
		return -EINVAL;
	memset(g, 0, sizeof(*g));
	memset(classes, 0, ZD_CLASS_MAX * sizeof(*classes));
	for (uint32_t c = 0; c < n; c++) {
		if (specs[c].slot_count == 0 || specs[c].slot_count > ZD_SLOT_COUNT_MAX ||
		    specs[c].slot_capacity == 0 ||
		    specs[c].slot_capacity > ZD_SLOT_CAPACITY_MAX)
			return -EINVAL;
		if (c > 0 && specs[c].slot_capacity <= specs[c - 1].slot_capacity)
			return -EINVAL;
		total += specs[c].slot_count;  /* <= 16 * 2^20: no overflow */
	}
	if (total > ZD_SLOT_COUNT_MAX)
		return -EINVAL;
	while (ring < 2u * total)
		ring *= 2u;
	g->slot_count = (uint32_t)total;
	g->ring_size = (uint32_t)ring;
	g->class_count = n;
	g->readers_offset = ZDI_READERS_OFFSET;
	g->attach_offset = ZDI_ATTACH_OFFSET;
	g->ring_offset = ZDI_RING_OFFSET;
	g->free_offset = g->ring_offset + ring * 8u;
	g->old_offset = g->free_offset + map_bytes(g->slot_count);
	(void)align_up(g->old_offset + map_bytes(g->slot_count), 4096u, &g->slots_offset);
	off = g->slots_offset;
	total = 0;
	for (uint32_t c = 0; c < n; c++) {
		uint64_t stride, bytes;

		if (align_up(specs[c].slot_capacity + ZD_SLOT_HEADER_SIZE, 64u, &stride) < 0)
			return -EOVERFLOW;
		classes[c].slot_count = specs[c].slot_count;
		classes[c].first_slot = (uint32_t)total;
		classes[c].slot_capacity = specs[c].slot_capacity;
		classes[c].slot_stride = stride;
		classes[c].slots_offset = off;
		total += specs[c].slot_count;
		if (__builtin_mul_overflow(stride, (uint64_t)specs[c].slot_count, &bytes) ||
		    __builtin_add_overflow(bytes, off, &off) || off > (uint64_t)INT64_MAX)
			return -EOVERFLOW;
	}
	g->slot_capacity = classes[n - 1].slot_capacity;
	g->slot_stride = classes[n - 1].slot_stride;
	g->total_size = off;
	return 0;
}

/* The class specs of a configuration: its table, or its one class. */
static int config_specs(const zd_config_t *cfg, const zd_class_spec_t **specs,
			uint32_t *n, zd_class_spec_t *one)
{
	if (cfg->class_count == 0) {
		one->slot_count = cfg->slot_count;
		one->reserved = 0;
		one->slot_capacity = cfg->slot_capacity;
		*specs = one;
		*n = 1;
		return 0;
	}
	if (cfg->slot_count != 0 || cfg->slot_capacity != 0 ||
	    cfg->class_count > ZD_CLASS_MAX)
		return -EINVAL;
	*specs = cfg->classes;
	*n = cfg->class_count;
	return 0;
}

int zd_config_validate(const zd_config_t *cfg)
{
	zd_geometry_t geo;
	zd_class_t classes[ZD_CLASS_MAX];

	if (cfg == NULL || (cfg->mode & ~0777u) != 0 ||
	    (cfg->flags & ~ZD_CREATE_REPLACE_STALE) != 0)
		return -EINVAL;
	return zdi_config_geometry(cfg, &geo, classes);
}

int zdi_config_geometry(const zd_config_t *cfg, zd_geometry_t *geo,
			zd_class_t classes[ZD_CLASS_MAX])
{
	const zd_class_spec_t *specs;
	zd_class_spec_t one;
	uint32_t n;
	int rc;

	if (cfg == NULL || (cfg->mode & ~0777u) != 0 ||
	    (cfg->flags & ~ZD_CREATE_REPLACE_STALE) != 0)
		return -EINVAL;
	rc = config_specs(cfg, &specs, &n, &one);
	if (rc < 0)
		return rc;
	rc = zdi_geometry(specs, n, geo, classes);
	if (rc < 0)
		return rc;
	return geo->total_size > SIZE_MAX ? -EOVERFLOW : 0;
}

static void map_init(struct zdi_map *m, uint8_t *base, uint64_t offset,
		     uint32_t n)
{
	m->nwords = (uint32_t)(((uint64_t)n + 63u) / 64u);
	m->nsummary = (m->nwords + 63u) / 64u;
	m->words = (uint64_t *)(base + offset);
	m->summary = m->words + m->nwords;
}

void zdi_derive_pointers(zd_segment_t *seg)
{
	const zd_geometry_t *g = &seg->geo;

	seg->hdr = (struct zdi_segment_header *)seg->base;
	seg->readers = (struct zdi_reader_entry *)(seg->base + g->readers_offset);
	seg->attach = (struct zdi_attach_entry *)(seg->base + g->attach_offset);
	seg->ring = (uint64_t *)(seg->base + g->ring_offset);
	seg->ring_mask = (uint64_t)g->ring_size - 1u;
	map_init(&seg->free_map, seg->base, g->free_offset, g->slot_count);
	map_init(&seg->old_map, seg->base, g->old_offset, g->slot_count);
	seg->slots = seg->base + g->slots_offset;
	/* A handle without the read-only alias (describe) exports nothing. */
	seg->ro_slots = (seg->ro_base != NULL ? seg->ro_base : seg->base) +
			g->slots_offset;
	for (uint32_t c = 0; c < g->class_count; c++) {
		seg->class_slots[c] = seg->base + seg->classes[c].slots_offset;
		seg->class_ro_slots[c] = (seg->ro_base != NULL ? seg->ro_base : seg->base) +
					 seg->classes[c].slots_offset;
	}
}

/* The creator fills the immutable header of a zeroed region (geometry from
 * zdi_geometry) and stores the init flag last. */
void zdi_segment_write_header(zd_segment_t *seg, const zd_config_t *cfg,
			      const zd_geometry_t *geo,
			      const zd_class_t classes[ZD_CLASS_MAX])
{
	struct zdi_segment_header *h;
	static const uint8_t zero[ZD_TYPE_HASH_SIZE];
	struct timespec ts;

	seg->geo = *geo;
	memcpy(seg->classes, classes, sizeof(seg->classes));
	zdi_derive_pointers(seg);
	h = seg->hdr;
	clock_gettime(CLOCK_REALTIME, &ts);
	/* Every ring entry unwritten, every slot in the free map. */
	memset(seg->ring, 0xff, (size_t)geo->ring_size * 8u);
	for (uint32_t i = 0; i < geo->slot_count; i++)
		zdi_map_set(&seg->free_map, i);
	seg->flags = memcmp(cfg->type_hash, zero, sizeof(zero)) != 0 ? ZDI_FLAG_TYPE_HASH : 0;
	memcpy(seg->type_hash, cfg->type_hash, sizeof(seg->type_hash));
	seg->owner_pid = (int32_t)getpid();
	seg->owner_uid = (uint32_t)getuid();
	seg->created_realtime_ns = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;

	h->magic = ZDI_MAGIC;
	h->version = ZD_LAYOUT_VERSION;
	h->header_size = ZDI_SEGMENT_HEADER_SIZE;
	h->geo = *geo;
	memcpy(h->classes, classes, sizeof(h->classes));
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
	zd_geometry_t g;
	zd_class_t classes[ZD_CLASS_MAX];
	zd_class_spec_t specs[ZD_CLASS_MAX];
	uint32_t n = h->geo.class_count;

	if (h->magic != ZDI_MAGIC)
		return -EBADMSG;
	if (h->version != ZD_LAYOUT_VERSION)
		return -EPROTO;
	if (h->header_size != ZDI_SEGMENT_HEADER_SIZE ||
	    h->reader_max != ZD_READER_MAX || h->attach_max != ZD_ATTACH_MAX ||
	    (h->flags & ~ZDI_FLAGS_KNOWN) != 0)
		return -EBADMSG;
	/* Every field is recomputed from the (count, capacity) pairs of the
	 * class table that define the rest, and compared: offsets, strides,
	 * first slots, totals, the zeroes past the last class.  So the
	 * classes are sorted, none overlaps another or the tables, and the
	 * last ends where the object does. */
	if (n == 0 || n > ZD_CLASS_MAX)
		return -EBADMSG;
	for (uint32_t c = 0; c < n; c++) {
		specs[c].slot_count = h->classes[c].slot_count;
		specs[c].reserved = 0;
		specs[c].slot_capacity = h->classes[c].slot_capacity;
	}
	if (zdi_geometry(specs, n, &g, classes) < 0)
		return -EBADMSG;
	if (memcmp(&g, &h->geo, sizeof(g)) != 0 || g.total_size != real_size ||
	    memcmp(classes, h->classes, sizeof(classes)) != 0)
		return -EBADMSG;
	return 0;
}

/* Per-handle state once the region is mapped and validated: the handle-pin
 * tables and this handle's attachment entry. */
int zdi_segment_init_handle(zd_segment_t *seg)
{
	zdi_derive_pointers(seg);
	seg->attach_index = UINT32_MAX;
	seg->pin_count = calloc(seg->geo.slot_count, sizeof(uint32_t));
	seg->pin_version = calloc(seg->geo.slot_count, sizeof(uint32_t));
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
	zdi_ready_close_all(seg);
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
	/* Closed readers still pinned are among own: freed here. */
	zdi_fetch_and_acq_rel_u64(&seg->closing_readers, 0);
	for (uint32_t r = 0; r < ZD_READER_MAX; r++) {
		if (own & zdi_bit(r)) {
			zdi_reader_cleanup(seg, r);
			zdi_ready_close_reader(seg, r);
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
	zdi_wake_data(seg);
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
	zdi_ready_close_all(seg);      /* this process's sockets only */
	free(seg->pin_count);
	free(seg->pin_version);
	free(seg);
	return 0;
}

zd_backend_kind_t zd_segment_backend(const zd_segment_t *seg) { return seg->ops->kind; }
uint32_t zd_segment_slot_count(const zd_segment_t *seg) { return seg->geo.slot_count; }
uint64_t zd_segment_slot_capacity(const zd_segment_t *seg) { return seg->geo.slot_capacity; }
uint64_t zd_segment_slot_total_size(const zd_segment_t *seg) { return seg->geo.slot_stride; }
uint32_t zd_segment_class_count(const zd_segment_t *seg) { return seg->geo.class_count; }

int zd_segment_class(const zd_segment_t *seg, uint32_t c, zd_class_t *out)
{
	if (c >= seg->geo.class_count)
		return -ERANGE;
	*out = seg->classes[c];
	return 0;
}

int zd_segment_class_of(const zd_segment_t *seg, uint32_t slot)
{
	if (slot >= seg->geo.slot_count)
		return -ERANGE;
	return (int)zdi_class_of(seg, slot);
}

uint64_t zd_segment_slot_capacity_of(const zd_segment_t *seg, uint32_t slot)
{
	return slot < seg->geo.slot_count ? zdi_capacity_of(seg, slot) : 0;
}

int zdi_class_for(const zd_segment_t *seg, uint64_t nbytes)
{
	for (uint32_t c = 0; c < seg->geo.class_count; c++)
		if (nbytes <= seg->classes[c].slot_capacity)
			return (int)c;
	return -EMSGSIZE;
}
uint64_t zd_segment_total_size(const zd_segment_t *seg) { return seg->geo.total_size; }
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
	out->geo = seg->geo;
	memcpy(out->classes, seg->classes, sizeof(out->classes));
	/* A describe handle maps no slot: its class counts stay 0. */
	for (uint32_t i = 0; seg->slots != NULL && i < seg->geo.slot_count; i++) {
		uint32_t kind = ZDI_ST_KIND(zdi_load_acquire_u64(&zdi_slot(seg, i)->state));
		zd_class_stats_t *cs = &out->class_stats[zdi_class_of(seg, i)];

		if (kind == ZDI_SLOT_FREE)
			cs->free++;
		else if (kind == ZDI_SLOT_LOANED)
			cs->loaned++;
		else if (kind == ZDI_SLOT_COMMITTED)
			cs->committed++;
	}
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
#define COPY_HANDLE_COUNTER(name, doc) \
	out->handle.name = zdi_load_relaxed_u64(&seg->hc.name);
	ZD_HANDLE_COUNTERS(COPY_HANDLE_COUNTER)
#undef COPY_HANDLE_COUNTER
	return 0;
}
