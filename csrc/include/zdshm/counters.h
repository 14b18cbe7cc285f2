/* zdshm/counters.h — the segment counters, declared once.
 *
 * ZD_COUNTERS(X) calls X(name, doc) for each segment-wide counter, in the
 * order they are laid out in the segment header and reported by
 * zd_segment_info.  Every struct, copy and report of the counters expands
 * this list, so a counter is added here and nowhere else.  All counters are
 * uint64_t, monotonic, and updated with relaxed fetch_add by whoever does
 * the thing; the list is part of the layout ABI (append only, and a new
 * counter needs room in the header).
 */
#ifndef ZDSHM_COUNTERS_H
#define ZDSHM_COUNTERS_H

#define ZD_COUNTERS(X)                                                       \
	X(loans,           "successful reserves")                            \
	X(commits,         "samples published")                              \
	X(discards,        "loans given back unpublished")                   \
	X(evictions,       "slots freed by evict_stale")                     \
	X(reclaims,        "unread slots taken by the reclaim policy")       \
	X(loans_reclaimed, "loans of dead attachments freed")                \
	X(readers_reaped,  "dead readers disconnected")                      \
	X(corrupt_dropped, "committed slots with a bad header")

/* ZD_HANDLE_COUNTERS(X): the same for the counters of one handle: private
 * to the process, counting the system calls made through that handle. */
#define ZD_HANDLE_COUNTERS(X)                                                \
	X(futex_waits,       "futex(2) waits")                               \
	X(futex_wakes,       "futex(2) wakes")                               \
	X(ready_sends,       "readiness datagrams sent")                     \
	X(ready_send_errors, "readiness datagrams that found no socket")

/* X for a struct with one uint64_t field per counter. */
#define ZD_COUNTER_FIELD(name, doc) uint64_t name;

#endif
