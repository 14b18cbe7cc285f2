/*
 * Helpers shared by the benchmark floors (floor.c, core.c): CPU pinning and
 * the statistics line each measurement prints.
 *
 * Percentiles use numpy's default (linear) interpolation, so the figures of
 * the C floors and of the Python side of the benchmark are comparable.
 */
#ifndef ZDBENCH_STATS_H
#define ZDBENCH_STATS_H

#include <stddef.h>
#include <stdint.h>

/* Pins the calling process to one CPU; a negative cpu leaves it unpinned.
 * Best effort: a refused affinity leaves the process where it is. */
void bench_pin(int cpu);

/* Sorts d[0..n) in place and prints `"key": {"n": .., "mean": .., "min": ..,
 * "p50": .., "p90": .., "p99": .., "p999": .., "max": ..}` (no newline) to
 * stdout.  n must be at least 1. */
void bench_print_stats(const char *key, uint64_t *d, size_t n);

#endif
