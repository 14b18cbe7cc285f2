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
#define ZDI_SEGMENT_HEADER_SIZE 512u
#define ZDI_ENTRY_SIZE 64u
#define ZDI_FLAG_TYPE_HASH 1u
#define ZDI_FLAGS_KNOWN ZDI_FLAG_TYPE_HASH

struct zdi_counters {
	ZD_COUNTERS(ZD_COUNTER_FIELD)
};
_Static_assert(sizeof(struct zdi_counters) == 64, "the counters fill line 6");

struct zdi_segment_header {
	/* Lines 0-1: immutable.  Written by the creator before init_done;
	 * read once by attach into private memory. */
	uint64_t magic;                 /* ZDI_MAGIC */
	uint32_t version;               /* ZD_LAYOUT_VERSION */
	uint32_t header_size;           /* ZDI_SEGMENT_HEADER_SIZE */
	uint64_t total_size;            /* bytes of the whole object */
	uint64_t slot_capacity;
	uint64_t slot_stride;           /* align64(ZD_SLOT_HEADER_SIZE + capacity) */
	uint64_t readers_offset;
	uint64_t attach_offset;
	uint64_t slots_offset;
	uint32_t slot_count;
	uint32_t reader_max;            /* ZD_READER_MAX */
	uint32_t attach_max;            /* ZD_ATTACH_MAX */
	uint32_t flags;                 /* ZDI_FLAG_* */
	uint8_t type_hash[ZD_TYPE_HASH_SIZE];
	int32_t owner_pid;
	uint32_t owner_uid;
	uint64_t created_realtime_ns;
	uint8_t reserved0[16];
	/* Line 2: lifecycle.  init_done: creator, once, release (pairs with the
	 * acquire load in attach).  goodbye: creator's close, release. */
	uint32_t init_done;
	uint32_t goodbye;
	uint8_t pad2[56];
	/* Line 3: next sequence number.  Every committer, fetch_add. */
	uint64_t next_sn;
	uint8_t pad3[56];
	/* Line 4: notify generation (futex word) and waiter count: everyone,
	 * seq_cst (see notify.c). */
	uint32_t notify_gen;
	uint32_t notify_waiters;
	uint8_t pad4[56];
	/* Line 5: active reader mask.  Reader open/close/reap, seq_cst RMW. */
	uint64_t active_mask;
	uint8_t pad5[56];
	/* Lines 6-7: counters, relaxed fetch_add by whoever does the thing. */
	struct zdi_counters counters;
	uint8_t pad6[64];
};

_Static_assert(sizeof(struct zdi_segment_header) == ZDI_SEGMENT_HEADER_SIZE,
	       "segment header size is part of the ABI");
_Static_assert(offsetof(struct zdi_segment_header, init_done) == 128, "line 2");
_Static_assert(offsetof(struct zdi_segment_header, next_sn) == 192, "line 3");
_Static_assert(offsetof(struct zdi_segment_header, notify_gen) == 256, "line 4");
_Static_assert(offsetof(struct zdi_segment_header, active_mask) == 320, "line 5");
_Static_assert(offsetof(struct zdi_segment_header, counters) == 384, "line 6");
_Static_assert(offsetof(struct zdi_segment_header, type_hash) == 80, "immutable");
_Static_assert(offsetof(struct zdi_segment_header, created_realtime_ns) == 104,
	       "immutable");

enum { ZDI_ENTRY_FREE = 0, ZDI_ENTRY_ACTIVE = 1 };

/* One reader.  Written by its owner (or by whoever holds its liveness lock
 * to clean up after it); dropped is also added to by writers that reclaim
 * or evict a sample it had not read. */
struct zdi_reader_entry {
	uint32_t state;         /* ZDI_ENTRY_*; release store by the owner */
	uint32_t epoch;         /* +1 at every claim */
	int32_t pid;
	uint32_t pad0;
	uint64_t start_sn;
	uint64_t last_sn;       /* UINT64_MAX: none taken yet */
	uint64_t taken;
	uint64_t dropped;
	uint64_t pad1[2];
};
_Static_assert(sizeof(struct zdi_reader_entry) == ZDI_ENTRY_SIZE, "entry ABI");

/* One open handle (attachment); owns the loans it makes. */
struct zdi_attach_entry {
	uint32_t state;         /* ZDI_ENTRY_*; release store by the owner */
	uint32_t epoch;         /* +1 at every claim; low 16 bits go in loans */
	int32_t pid;
	uint32_t pad0;
	uint64_t pad1[6];
};
_Static_assert(sizeof(struct zdi_attach_entry) == ZDI_ENTRY_SIZE, "entry ABI");

/* Slot header: the first cache line is control, the second the caller's
 * meta bytes.  sn, size, commit_ns, read_mask and meta are written by the
 * loan owner before the release store of `state` that publishes them (paired
 * with the acquire/seq_cst loads of `state` by readers). */
struct zdi_slot_header {
	uint64_t state;         /* see the state-word layout in zdshm.h */
	uint64_t read_mask;     /* reader r has read (or no longer needs) it */
	uint64_t reader_pins;   /* reader r holds a view (take) */
	uint64_t handle_pins;   /* attachment a holds a view (acquire) */
	uint64_t sn;
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

/* Fixed offsets of the tables; slots start on a page boundary. */
#define ZDI_READERS_OFFSET ((uint64_t)ZDI_SEGMENT_HEADER_SIZE)
#define ZDI_ATTACH_OFFSET (ZDI_READERS_OFFSET + (uint64_t)ZD_READER_MAX * ZDI_ENTRY_SIZE)
#define ZDI_SLOTS_OFFSET                                                      \
	((ZDI_ATTACH_OFFSET + (uint64_t)ZD_ATTACH_MAX * ZDI_ENTRY_SIZE + 4095u) & \
	 ~(uint64_t)4095u)

#endif
