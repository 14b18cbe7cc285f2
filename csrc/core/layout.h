/* layout.h — the shared-memory layout.  This is an ABI: fixed-width fields,
 * sizes and offsets pinned by _Static_assert, hot words on their own cache
 * lines.  Each field says who writes it.  Any value read from here is
 * untrusted: geometry is copied to private memory at attach and validated;
 * indices and sizes read at run time are bounds-checked before use.
 */
#ifndef ZDSHM_LAYOUT_H
#define ZDSHM_LAYOUT_H

#include <stddef.h>
#include <stdint.h>

#include "zdshm/segment.h"

#define ZDI_MAGIC UINT64_C(0x314745534d48445a) /* "ZDHMSEG1" little-endian */
#define ZDI_INIT_DONE UINT32_C(0x444f4e45)      /* "ENOD" */
#define ZDI_CACHE_LINE 64u
#define ZDI_SEGMENT_HEADER_SIZE 2048u
#define ZDI_ENTRY_SIZE 64u
#define ZDI_FLAG_TYPE_HASH 1u
#define ZDI_FLAGS_KNOWN ZDI_FLAG_TYPE_HASH

struct zdi_counters {
	ZD_COUNTERS(ZD_COUNTER_FIELD)
};
_Static_assert(sizeof(struct zdi_counters) == 64, "the counters fill line 9");

/* A wake-up channel: an event count (the futex word) and the number of
 * sleepers on it, a Dekker pair (see notify.c); and the number of entries
 * armed for a readiness datagram on it, a second Dekker pair with the same
 * event count (see ready.c).  Everyone, seq_cst. */
struct zdi_channel {
	uint32_t gen;
	uint32_t waiters;
	uint32_t armed;
	uint8_t pad[52];
};
_Static_assert(sizeof(struct zdi_channel) == ZDI_CACHE_LINE, "a channel per line");

struct zdi_segment_header {
	/* Lines 0-2: immutable.  Written by the creator before init_done;
	 * read once by attach into private memory.  magic and version keep
	 * the offsets of every earlier layout, so an old segment is told
	 * apart from a corrupt one. */
	uint64_t magic;                 /* ZDI_MAGIC */
	uint32_t version;               /* ZD_LAYOUT_VERSION */
	uint32_t header_size;           /* ZDI_SEGMENT_HEADER_SIZE */
	zd_geometry_t geo;
	uint32_t reader_max;            /* ZD_READER_MAX */
	uint32_t attach_max;            /* ZD_ATTACH_MAX */
	uint32_t flags;                 /* ZDI_FLAG_* */
	int32_t owner_pid;
	uint32_t owner_uid;
	uint32_t pad0;
	uint64_t created_realtime_ns;
	uint8_t type_hash[ZD_TYPE_HASH_SIZE];
	uint8_t reserved0[40];
	/* Line 3: lifecycle.  init_done: creator, once, release (pairs with the
	 * acquire load in attach).  goodbye: creator's close, release. */
	uint32_t init_done;
	uint32_t goodbye;
	uint8_t pad3[56];
	/* Line 4: next sequence number.  Every committer, CAS (delivery.c). */
	uint64_t next_sn;
	uint8_t pad4[56];
	/* Line 5: "a sample arrived" (commits, goodbye): readers sleep here. */
	struct zdi_channel data;
	/* Line 6: "a slot came free" (releases, discards, evictions, reaps,
	 * readers leaving): writers sleep here. */
	struct zdi_channel space;
	/* Line 7: active reader mask.  Reader open/close/reap, seq_cst RMW.
	 * marks_unordered: set (relaxed, never cleared) once zd_slot_mark_read
	 * marks a sample for a registered reader, which may then have read a
	 * sample without its predecessors (see the window walk in pool.c). */
	uint64_t active_mask;
	uint32_t marks_unordered;
	uint8_t pad7[52];
	/* Line 8: the oldest sequence number that may still be held in a
	 * slot indexed by the ring.  Writers' window walks, CAS forward. */
	uint64_t tail;
	uint8_t pad8[56];
	/* Line 9: counters, relaxed fetch_add by whoever does the thing. */
	struct zdi_counters counters;
	/* Lines 10-11: per size class, the oldest sequence number that may
	 * still be a sample of that class held in a slot the ring indexes.
	 * Writers' window walks of that class, CAS forward (pool.c); hints,
	 * clamped to the window. */
	uint64_t class_tail[ZD_CLASS_MAX];
	uint8_t reserved1[256];
	/* Lines 16-23: the class table, immutable like lines 0-2 (written by
	 * the creator before init_done, copied and validated at attach).
	 * Entries past geo.class_count are zero. */
	zd_class_t classes[ZD_CLASS_MAX];
	uint8_t reserved2[512];
};

_Static_assert(sizeof(struct zdi_segment_header) == ZDI_SEGMENT_HEADER_SIZE,
	       "segment header size is part of the ABI");
_Static_assert(offsetof(struct zdi_segment_header, version) == 8, "version");
_Static_assert(offsetof(struct zdi_segment_header, geo) == 16, "geometry");
_Static_assert(sizeof(zd_geometry_t) == 88, "geometry ABI");
_Static_assert(sizeof(zd_class_t) == 32, "class table ABI");
_Static_assert(offsetof(struct zdi_segment_header, type_hash) == 136, "immutable");
_Static_assert(offsetof(struct zdi_segment_header, init_done) == 192, "line 3");
_Static_assert(offsetof(struct zdi_segment_header, next_sn) == 256, "line 4");
_Static_assert(offsetof(struct zdi_segment_header, data) == 320, "line 5");
_Static_assert(offsetof(struct zdi_segment_header, space) == 384, "line 6");
_Static_assert(offsetof(struct zdi_segment_header, active_mask) == 448, "line 7");
_Static_assert(offsetof(struct zdi_segment_header, tail) == 512, "line 8");
_Static_assert(offsetof(struct zdi_segment_header, counters) == 576, "line 9");
_Static_assert(offsetof(struct zdi_segment_header, class_tail) == 640, "line 10");
_Static_assert(offsetof(struct zdi_segment_header, classes) == 1024, "line 16");

enum { ZDI_ENTRY_FREE = 0, ZDI_ENTRY_ACTIVE = 1 };

/* One reader.  Written by its owner (or by whoever holds its liveness lock
 * to clean up after it); dropped is also added to by writers that reclaim
 * or evict a sample it had not read, and start_sn is read by everyone that
 * decides whether a slot may be reused (a reader does not need samples
 * older than its start). */
struct zdi_reader_entry {
	uint32_t state;         /* ZDI_ENTRY_*; release store by the owner */
	uint32_t epoch;         /* +1 at every claim */
	int32_t pid;
	uint32_t ready_armed;   /* 1: send a readiness datagram at the next
				   commit or goodbye (ready.c); the owner sets
				   it, whoever exchanges it back to 0 sends */
	uint64_t start_sn;      /* 0 while the join is under way */
	uint64_t cursor;        /* next sequence number to deliver; CAS */
	uint64_t last_sn;       /* UINT64_MAX: none taken yet */
	uint64_t taken;
	uint64_t dropped;
	uint64_t ready_token;   /* 0, or the random part of the name of the
				   owner's readiness socket (ready.c) */
};
_Static_assert(sizeof(struct zdi_reader_entry) == ZDI_ENTRY_SIZE, "entry ABI");
_Static_assert(offsetof(struct zdi_reader_entry, ready_armed) == 12, "entry ABI");
_Static_assert(offsetof(struct zdi_reader_entry, ready_token) == 56, "entry ABI");

/* One open handle (attachment); owns the loans it makes. */
struct zdi_attach_entry {
	uint32_t state;         /* ZDI_ENTRY_*; release store by the owner */
	uint32_t epoch;         /* +1 at every claim; low 16 bits go in loans */
	int32_t pid;
	uint32_t ready_armed;   /* as in the reader entry, for "a slot came free" */
	uint64_t ready_token;   /* as in the reader entry */
	uint64_t pad1[5];
};
_Static_assert(sizeof(struct zdi_attach_entry) == ZDI_ENTRY_SIZE, "entry ABI");
_Static_assert(offsetof(struct zdi_attach_entry, ready_token) == 16, "entry ABI");

/* Slot header: the first cache line is control, the second the caller's
 * meta bytes.  sn, size, commit_ns, read_mask and meta are written by the
 * loan owner before the release store of `state` that publishes them (paired
 * with the acquire/seq_cst loads of `state` by readers). */
struct zdi_slot_header {
	uint64_t state;         /* see the state-word layout in zdshm.h */
	uint64_t read_mask;     /* reader r has read (or no longer needs) it */
	uint64_t reader_pins;   /* reader r holds a view (take) */
	uint64_t handle_pins;   /* attachment a holds a view (acquire) */
	uint64_t sn;            /* stored before the sn is claimed (delivery.c) */
	uint64_t size;
	uint64_t commit_ns;
	uint64_t reserved;
	uint8_t meta[ZD_SLOT_META_SIZE];
};
_Static_assert(sizeof(struct zdi_slot_header) == ZD_SLOT_HEADER_SIZE, "slot ABI");
_Static_assert(offsetof(struct zdi_slot_header, meta) == 64, "meta on line 1");

/* Slot state word. */
enum { ZDI_SLOT_FREE = 0, ZDI_SLOT_LOANED = 1, ZDI_SLOT_COMMITTED = 2 };
#define ZDI_ST_KIND(s) ((uint32_t)((s) & 3u))
#define ZDI_ST_OWNER(s) ((uint32_t)(((s) >> 2) & 0x3fffu))
#define ZDI_ST_EPOCH(s) ((uint32_t)(((s) >> 16) & 0xffffu))
#define ZDI_ST_VERSION(s) ((uint32_t)((s) >> 32))
#define ZDI_ST_MAKE(kind, owner, epoch, version)                               \
	(((uint64_t)(version) << 32) | ((uint64_t)((epoch) & 0xffffu) << 16) | \
	 ((uint64_t)((owner) & 0x3fffu) << 2) | (uint64_t)(kind))

/* Ring entry of sequence number sn, at index sn & (ring_size - 1): the sn
 * with its low bits replaced by a slot index (ring_size > slot_count, so
 * the slot fits), i.e. the "lap" of sn and where its sample is.  Two slot
 * values no real slot has mark an entry that names no slot: UNWRITTEN (the
 * initial value, all ones) and HOLE (the sn was claimed but its loan was
 * lost: nothing will ever be published under it). */
#define ZDI_RING_UNWRITTEN(mask) (mask)
#define ZDI_RING_HOLE(mask) ((mask) - 1u)

/* Fixed offsets of the tables. */
#define ZDI_READERS_OFFSET ((uint64_t)ZDI_SEGMENT_HEADER_SIZE)
#define ZDI_ATTACH_OFFSET (ZDI_READERS_OFFSET + (uint64_t)ZD_READER_MAX * ZDI_ENTRY_SIZE)
#define ZDI_RING_OFFSET (ZDI_ATTACH_OFFSET + (uint64_t)ZD_ATTACH_MAX * ZDI_ENTRY_SIZE)

#endif
