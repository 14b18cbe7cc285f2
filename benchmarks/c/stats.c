/* CPU pinning and percentile printing for the benchmark floors (stats.h). */
#include "stats.h"

#include <sched.h>
#include <stdio.h>
#include <stdlib.h>

void bench_pin(int cpu)
{
	cpu_set_t s;

	if (cpu < 0)
		return;
	CPU_ZERO(&s);
	CPU_SET(cpu, &s);
	(void)sched_setaffinity(0, sizeof s, &s);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* numpy's default (linear) percentile of a sorted array */
static double pct(const uint64_t *s, size_t n, double p)
{
	double r = p / 100.0 * (double)(n - 1);
	size_t lo = (size_t)r;
	double f = r - (double)lo;

	if (lo + 1 >= n)
		return (double)s[n - 1];
	return (double)s[lo] + f * ((double)s[lo + 1] - (double)s[lo]);
}

void bench_print_stats(const char *key, uint64_t *d, size_t n)
{
	double sum = 0;

	qsort(d, n, sizeof *d, cmp_u64);
	for (size_t i = 0; i < n; i++)
		sum += (double)d[i];
	printf("\"%s\": {\"n\": %zu, \"mean\": %.1f, \"min\": %.1f, \"p50\": %.1f, "
	       "\"p90\": %.1f, \"p99\": %.1f, \"p999\": %.1f, \"max\": %.1f}",
	       key, n, sum / (double)n, (double)d[0], pct(d, n, 50), pct(d, n, 90),
	       pct(d, n, 99), pct(d, n, 99.9), (double)d[n - 1]);
}
