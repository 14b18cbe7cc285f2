/* fuzz_attach.c — libFuzzer target: attach and use a segment made of
 * arbitrary bytes.
 *
 * The input is the control part of a small segment, packed:
 *   [0, 512)       the segment header
 *   [512, 1536)    the headers of slots 0..7 (128 bytes each)
 *   [1536, 5632)   the reader table (64 entries of 64 bytes)
 *   [5632, 9728)   the attachment table
 * shorter inputs are padded with zeros, longer ones cut.  The object is
 * as long as the header's total_size says when that is between 512 bytes
 * and 4 MiB (so the geometry checks see a consistent size and go on to
 * the rest), else as long as the input; each part is written at its real
 * offset, the slot headers at the header's stride when that is sane.
 *
 * Each input becomes the posix object ZDFUZZ_NAME (default zdfuzz-<pid>,
 * removed at exit), which is then used through both public entry points,
 * by name (zd_segment_attach_posix) and by descriptor (zd_segment_attach_fd
 * on the same object, which the first handle has used in the meantime):
 * describe, attach, a reader with join_last, takes and releases until
 * -EAGAIN (bounded), acquire of every slot, loan + commit, reserve +
 * discard, eviction, reap, close.  A crash, a sanitizer report, a view
 * larger than the capacity or a hang (libFuzzer's -timeout) is a finding.
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

#include "layout.h"

#define PACKED_SLOTS 8u
#define PACKED_HEADER 0u
#define PACKED_SLOT_HEADERS ZDI_SEGMENT_HEADER_SIZE
#define PACKED_READERS (PACKED_SLOT_HEADERS + PACKED_SLOTS * ZD_SLOT_HEADER_SIZE)
#define PACKED_ATTACH (PACKED_READERS + ZD_READER_MAX * ZDI_ENTRY_SIZE)
#define PACKED_SIZE (PACKED_ATTACH + ZD_ATTACH_MAX * ZDI_ENTRY_SIZE)
#define OBJECT_MAX ((uint64_t)4 << 20)
#define TAKES_MAX 64

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

/* Lays the packed input out as a segment object. */
static void write_object(const uint8_t *data, size_t size)
{
	static uint8_t packed[PACKED_SIZE];
	struct zdi_segment_header h;
	uint64_t len, stride;

	memset(packed, 0, sizeof(packed));
	memcpy(packed, data, size < sizeof(packed) ? size : sizeof(packed));
	memcpy(&h, packed + PACKED_HEADER, sizeof(h));
	len = h.geo.total_size >= ZDI_SEGMENT_HEADER_SIZE && h.geo.total_size <= OBJECT_MAX
		      ? h.geo.total_size : (uint64_t)size;
	stride = h.geo.slot_stride >= ZD_SLOT_HEADER_SIZE && h.geo.slot_stride <= OBJECT_MAX &&
			 h.geo.slot_stride % 64u == 0
		 ? h.geo.slot_stride : ZD_SLOT_HEADER_SIZE + 256u;
	if (ftruncate(fd, 0) != 0 || ftruncate(fd, (off_t)len) != 0)
		abort();
	put(packed + PACKED_HEADER, ZDI_SEGMENT_HEADER_SIZE, 0, len);
	put(packed + PACKED_READERS, ZD_READER_MAX * ZDI_ENTRY_SIZE,
	    ZDI_READERS_OFFSET, len);
	put(packed + PACKED_ATTACH, ZD_ATTACH_MAX * ZDI_ENTRY_SIZE,
	    ZDI_ATTACH_OFFSET, len);
	for (uint32_t i = 0; i < PACKED_SLOTS; i++)
		put(packed + PACKED_SLOT_HEADERS + i * ZD_SLOT_HEADER_SIZE,
		    ZD_SLOT_HEADER_SIZE, ZDI_SLOTS_OFFSET + i * stride, len);
}

static volatile uint8_t sink;

/* Reads every byte a view claims, so a view beyond the mapping faults. */
static void touch(zd_segment_t *seg, const zd_view_t *v)
{
	const volatile uint8_t *d = v->data;
	const volatile uint8_t *m = v->meta;
	uint8_t x = 0;

	if (v->size > zd_segment_slot_capacity(seg) || v->slot >= zd_segment_slot_count(seg))
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

static void exercise(zd_segment_t *seg)
{
	uint32_t n = zd_segment_slot_count(seg), s;
	zd_reader_t r;
	zd_view_t v;
	void *data;
	uint64_t cap = zd_segment_slot_capacity(seg);
	int have_reader = zd_reader_open(seg, 2, &r) == 0;

	if (have_reader)
		drain(seg, &r);
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
