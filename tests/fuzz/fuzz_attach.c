/* fuzz_attach.c — libFuzzer target: attach and use a segment made of
 * arbitrary bytes.
 *
 * The input is the control part of a small segment (layout version 5),
 * packed in the order of a real segment of 8 slots:
 *   [0, 2048)       the segment header (geometry at offset 16, the class
 *                   table at offset 1024)
 *   [2048, 6144)    the reader table (64 entries of 64 bytes)
 *   [6144, 10240)   the attachment table (64 entries of 64 bytes)
 *   [10240, 10368)  ring entries 0..15 (8 bytes each)
 *   [10368, 10432)  the first 64 bytes of the free map (words, summary)
 *   [10432, 10496)  the first 64 bytes of the old map
 *   [10496, 11520)  the headers of slots 0..7 (128 bytes each)
 * shorter inputs are padded with zeros, longer ones cut.
 *
 * The object is as long as the header's total_size says when that is
 * between 1 KiB and 4 MiB (so the geometry checks see a consistent size and
 * go on to the rest), else as long as the input.  Each part is written
 * where the header's geometry puts it when that field is sane (an 8-byte
 * aligned offset past the header, a power-of-two ring, a stride of whole
 * cache lines; a slot header where its class of the header's class table
 * puts it), else where zdi_geometry puts it for the (count, capacity) pairs
 * of the header's class table, else where it is in a segment of 8 slots of
 * 256 bytes.  Ring entries beyond the 16 packed ones read "unwritten" (all
 * ones), as in a new segment; map words beyond the packed ones are zero.
 *
 * Each input becomes the posix object ZDFUZZ_NAME (default zdfuzz-<pid>,
 * removed at exit), which is then used through both public entry points,
 * by name (zd_segment_attach_posix) and by descriptor (zd_segment_attach_fd
 * on the same object, which the first handle has used in the meantime):
 * describe, attach, a reader with join_last, takes and releases until
 * -EAGAIN (bounded), the low-level next_unread / read / mark_read of
 * reader 0, acquire of every slot, loan + commit, reserve + discard,
 * loans of several sizes (each class), eviction, reap, close.  A crash, a sanitizer report, a view larger than
 * the capacity or a hang (libFuzzer's -timeout) is a finding.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zdshm/zdshm.h>

#include "internal.h"

#define PACKED_SLOTS 8u
#define PACKED_RING 16u
#define PACKED_MAP 64u
#define PACKED_HEADER 0u
#define PACKED_READERS ZDI_SEGMENT_HEADER_SIZE
#define PACKED_ATTACH (PACKED_READERS + ZD_READER_MAX * ZDI_ENTRY_SIZE)
#define PACKED_RING_AT (PACKED_ATTACH + ZD_ATTACH_MAX * ZDI_ENTRY_SIZE)
#define PACKED_FREE (PACKED_RING_AT + PACKED_RING * 8u)
#define PACKED_OLD (PACKED_FREE + PACKED_MAP)
#define PACKED_SLOT_HEADERS (PACKED_OLD + PACKED_MAP)
#define PACKED_SIZE (PACKED_SLOT_HEADERS + PACKED_SLOTS * ZD_SLOT_HEADER_SIZE)
#define OBJECT_MAX ((uint64_t)4 << 20)
#define TAKES_MAX 64

_Static_assert(PACKED_RING_AT == ZDI_RING_OFFSET, "packed like a real segment");
_Static_assert(PACKED_SIZE == 11520, "tests/fuzz/run.sh -max_len");

static char name[64];
static char path[96];
static int fd = -1;

static void remove_object(void)
{
	if (fd >= 0)
		close(fd);
	unlink(path);
}

static void setup(void)
{
	const char *env = getenv("ZDFUZZ_NAME");

	if (env != NULL && zd_name_validate(env) == 0 && strlen(env) < sizeof(name))
		snprintf(name, sizeof(name), "%s", env);
	else
		snprintf(name, sizeof(name), "zdfuzz-%d", (int)getpid());
	snprintf(path, sizeof(path), "/dev/shm/%s", name);
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		perror(path);
		abort();
	}
	atexit(remove_object);
}

static void put(const void *p, size_t n, uint64_t off, uint64_t len)
{
	if (off >= len)
		return;
	if (n > len - off)
		n = (size_t)(len - off);
	if (pwrite(fd, p, n, (off_t)off) != (ssize_t)n)
		abort();
}

/* An offset the packed parts may be written at: past the header, inside
 * the largest object, 8-byte aligned. */
static int offset_sane(uint64_t off)
{
	return off >= ZDI_SEGMENT_HEADER_SIZE && off < OBJECT_MAX && off % 8u == 0;
}

static uint64_t pick_offset(uint64_t mine, uint64_t ref)
{
	return offset_sane(mine) ? mine : ref;
}

/* Where the parts go: the header's geometry field by field where sane,
 * else the reference (zdi_geometry of the (count, capacity) pairs of the
 * header's class table, or of 8 x 256); the classes likewise. */
static void placement(const struct zdi_segment_header *h, zd_geometry_t *g,
		      zd_class_t cls[ZD_CLASS_MAX])
{
	zd_class_spec_t specs[ZD_CLASS_MAX], one = {.slot_count = PACKED_SLOTS,
						    .slot_capacity = 256u};
	uint32_t n = h->geo.class_count <= ZD_CLASS_MAX ? h->geo.class_count : 0;
	zd_geometry_t ref;

	for (uint32_t c = 0; c < n; c++) {
		specs[c].slot_count = h->classes[c].slot_count;
		specs[c].reserved = 0;
		specs[c].slot_capacity = h->classes[c].slot_capacity;
	}
	if (zdi_geometry(specs, n, &ref, cls) < 0 &&
	    zdi_geometry(&one, 1, &ref, cls) < 0)
		abort();
	*g = ref;
	g->readers_offset = pick_offset(h->geo.readers_offset, ref.readers_offset);
	g->attach_offset = pick_offset(h->geo.attach_offset, ref.attach_offset);
	g->ring_offset = pick_offset(h->geo.ring_offset, ref.ring_offset);
	g->free_offset = pick_offset(h->geo.free_offset, ref.free_offset);
	g->old_offset = pick_offset(h->geo.old_offset, ref.old_offset);
	g->slots_offset = pick_offset(h->geo.slots_offset, ref.slots_offset);
	if (h->geo.ring_size >= 4u && (h->geo.ring_size & (h->geo.ring_size - 1u)) == 0 &&
	    (uint64_t)h->geo.ring_size * 8u < OBJECT_MAX)
		g->ring_size = h->geo.ring_size;
	for (uint32_t c = 0; c < ref.class_count; c++) {
		const zd_class_t *k = &h->classes[c];

		cls[c].slots_offset = pick_offset(k->slots_offset, cls[c].slots_offset);
		if (k->slot_stride >= ZD_SLOT_HEADER_SIZE && k->slot_stride <= OBJECT_MAX &&
		    k->slot_stride % ZDI_CACHE_LINE == 0)
			cls[c].slot_stride = k->slot_stride;
	}
}

/* Where slot i's header goes: by the class table of placement(). */
static uint64_t slot_at(const zd_geometry_t *g, const zd_class_t *cls, uint32_t i)
{
	uint32_t c = g->class_count - 1u;

	while (c > 0 && i < cls[c].first_slot)
		c--;
	return cls[c].slots_offset + (uint64_t)(i - cls[c].first_slot) * cls[c].slot_stride;
}

/* Lays the packed input out as a segment object. */
static void write_object(const uint8_t *data, size_t size)
{
	static uint8_t packed[PACKED_SIZE];
	static uint8_t unwritten[4096];
	struct zdi_segment_header h;
	zd_geometry_t g;
	zd_class_t cls[ZD_CLASS_MAX];
	uint64_t len, ring_bytes;

	memset(packed, 0, sizeof(packed));
	memcpy(packed, data, size < sizeof(packed) ? size : sizeof(packed));
	memcpy(&h, packed + PACKED_HEADER, sizeof(h));
	placement(&h, &g, cls);
	len = h.geo.total_size >= ZDI_SEGMENT_HEADER_SIZE && h.geo.total_size <= OBJECT_MAX
		      ? h.geo.total_size : (uint64_t)size;
	if (ftruncate(fd, 0) != 0 || ftruncate(fd, (off_t)len) != 0)
		abort();
	put(packed + PACKED_HEADER, ZDI_SEGMENT_HEADER_SIZE, 0, len);
	put(packed + PACKED_READERS, ZD_READER_MAX * ZDI_ENTRY_SIZE,
	    g.readers_offset, len);
	put(packed + PACKED_ATTACH, ZD_ATTACH_MAX * ZDI_ENTRY_SIZE,
	    g.attach_offset, len);
	/* The ring first: the maps and slots written after it win where a
	 * hostile geometry makes them overlap. */
	ring_bytes = (uint64_t)g.ring_size * 8u;
	if (ring_bytes > PACKED_RING * 8u) {
		memset(unwritten, 0xff, sizeof(unwritten));
		for (uint64_t o = PACKED_RING * 8u; o < ring_bytes && g.ring_offset + o < len;
		     o += sizeof(unwritten))
			put(unwritten, (size_t)(ring_bytes - o < sizeof(unwritten)
						? ring_bytes - o : sizeof(unwritten)),
			    g.ring_offset + o, len);
		ring_bytes = PACKED_RING * 8u;
	}
	put(packed + PACKED_RING_AT, (size_t)ring_bytes, g.ring_offset, len);
	put(packed + PACKED_FREE, PACKED_MAP, g.free_offset, len);
	put(packed + PACKED_OLD, PACKED_MAP, g.old_offset, len);
	for (uint32_t i = 0; i < PACKED_SLOTS; i++)
		put(packed + PACKED_SLOT_HEADERS + i * ZD_SLOT_HEADER_SIZE,
		    ZD_SLOT_HEADER_SIZE, slot_at(&g, cls, i), len);
}

static volatile uint8_t sink;

/* Reads every byte a view claims, so a view beyond the mapping faults. */
static void touch(zd_segment_t *seg, const zd_view_t *v)
{
	const volatile uint8_t *d = v->data;
	const volatile uint8_t *m = v->meta;
	uint8_t x = 0;

	if (v->slot >= zd_segment_slot_count(seg) ||
	    v->size > zd_segment_slot_capacity_of(seg, v->slot))
		__builtin_trap();
	for (uint64_t i = 0; i < v->size; i++)
		x ^= d[i];
	for (uint32_t i = 0; i < ZD_SLOT_META_SIZE; i++)
		x ^= m[i];
	sink = x;
}

static void drain(zd_segment_t *seg, zd_reader_t *r)
{
	for (int i = 0; i < TAKES_MAX; i++) {
		zd_view_t v;
		int rc = zd_reader_take(seg, r, &v);

		if (rc == -EBADMSG)
			continue;       /* dropped and counted: the next one goes on */
		if (rc != 0)
			return;
		touch(seg, &v);
		zd_slot_release(seg, &v);
	}
}

/* The low-level API on raw reader index 0 (registered in the input or
 * not): next unread, copy it out, mark it read, a bounded number of times. */
static void low_level(zd_segment_t *seg)
{
	static uint8_t buf[256];

	for (int i = 0; i < TAKES_MAX; i++) {
		zd_slot_header_t sh;
		uint64_t copied = 0;
		uint32_t s;

		if (zd_slot_next_unread(seg, 0, &s) != 0)
			return;
		if (s >= zd_segment_slot_count(seg))
			__builtin_trap();
		if (zd_slot_read(seg, s, &sh, buf, sizeof(buf), &copied) == 0 &&
		    copied > sizeof(buf))
			__builtin_trap();
		if (zd_slot_mark_read(seg, s, 0) != 0)
			return;
	}
}

static void exercise(zd_segment_t *seg)
{
	uint32_t n = zd_segment_slot_count(seg), s;
	zd_reader_t r;
	zd_reader_stats_t st;
	zd_view_t v;
	void *data;
	uint64_t cap = zd_segment_slot_capacity(seg);
	int have_reader = zd_reader_open(seg, 2, &r) == 0;

	if (have_reader) {
		drain(seg, &r);
		zd_reader_stats(seg, &r, &st);
	}
	low_level(seg);
	for (uint32_t i = 0; i < n && i < 2 * PACKED_SLOTS; i++) {
		if (zd_slot_acquire(seg, i, &v) == 0) {
			touch(seg, &v);
			zd_slot_release(seg, &v);
		}
	}
	if (zd_writer_loan(seg, ZD_OVERFLOW_FAIL, 0, 0, &s) == 0 &&
	    zd_slot_data_ptr(seg, s, &data, &cap, NULL) == 0) {
		memset(data, 0x5a, cap < 64 ? (size_t)cap : 64);
		zd_slot_commit_in_place(seg, s, cap < 64 ? cap : 64, NULL);
	}
	if (zd_writer_loan(seg, ZD_OVERFLOW_RECLAIM, 0, 0, &s) == 0)
		zd_slot_commit(seg, s, "fuzz", cap >= 4 ? 4 : 0, NULL);
	if (zd_slot_reserve(seg, zd_segment_active_mask(seg), &s) == 0)
		zd_slot_discard(seg, s);
	/* a loan of each class's capacity, and one past the largest */
	for (uint32_t c = 0; c < zd_segment_class_count(seg); c++) {
		zd_class_t k;

		if (zd_segment_class(seg, c, &k) == 0 &&
		    zd_writer_loan_size(seg, k.slot_capacity, ZD_OVERFLOW_RECLAIM, 0, 0,
					&s) == 0) {
			if (zd_segment_slot_capacity_of(seg, s) < k.slot_capacity ||
			    zd_segment_class_of(seg, s) < (int)c)
				__builtin_trap();
			zd_slot_commit(seg, s, "class", k.slot_capacity >= 5 ? 5 : 0, NULL);
		}
	}
	if (zd_writer_loan_size(seg, zd_segment_slot_capacity(seg) + 1, ZD_OVERFLOW_FAIL,
				0, 0, &s) != -EMSGSIZE)
		__builtin_trap();
	if (have_reader) {
		drain(seg, &r);
		if (zd_reader_wait_take(seg, &r, &v, zd_now_ns(), 0) == 0) {
			touch(seg, &v);
			zd_slot_release(seg, &v);
		}
	}
	zd_slot_evict_stale(seg, 0, zd_segment_active_mask(seg), NULL);
	zd_segment_reap(seg, NULL, NULL);
	if (have_reader)
		zd_reader_close(seg, &r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	zd_segment_info_t info;
	zd_segment_t *seg = NULL;

	if (fd < 0)
		setup();
	write_object(data, size);
	zd_segment_describe_posix(name, &info);
	if (zd_segment_attach_posix(name, &seg) == 0) {
		exercise(seg);
		zd_segment_close(seg);
	}
	seg = NULL;
	if (zd_segment_attach_fd(fd, &seg) == 0) {
		exercise(seg);
		zd_segment_close(seg);
	}
	return 0;
}
