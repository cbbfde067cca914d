/* bench_lat.c — logagent-bench's sample of single-write times (socket mode): each worker times every
 * stride-th logagent_write with CLOCK_MONOTONIC (two clock reads, ~65 ns on our VMs, are in each time) and keeps
 * the times in an array of bounded size; when it is full every other time is dropped and the stride doubles, so
 * the sample stays even over the run whatever --count is. At the end the workers' samples are pooled for the
 * report's percentiles. */
#include <errno.h>
#include <stdlib.h>

#include "bench.h"

int bench_lat_init(bench_lat *l, long writes)
{
    l->n = 0;
    l->cap = BENCH_LAT_MAX;
    l->stride = BENCH_LAT_STRIDE_MIN;
    while (writes / l->stride > (long)l->cap)
        l->stride *= 2;
    l->left = l->stride / 2 + 1; /* the first timed write is not the very first one */
    l->ns = malloc(l->cap * sizeof *l->ns);
    return l->ns ? 0 : -ENOMEM;
}

void bench_lat_add(bench_lat *l, uint64_t ns)
{
    l->left = l->stride;
    if (l->n == l->cap) {
        for (size_t i = 0; i < l->n / 2; i++)
            l->ns[i] = l->ns[2 * i + 1];
        l->n /= 2;
        l->stride *= 2;
        l->left = l->stride;
    }
    l->ns[l->n++] = ns > UINT32_MAX ? UINT32_MAX : (uint32_t)ns;
}

void bench_lat_free(bench_lat *l)
{
    free(l->ns);
    l->ns = NULL;
    l->n = 0;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* The nearest-rank percentile p (1..100) of sorted v[0..n), n > 0: the smallest value with at least p% of the
 * sample at or below it. */
static double percentile(const uint32_t *v, size_t n, unsigned p)
{
    size_t rank = (p * n + 99) / 100; /* ceil(p% of n), >= 1 */
    return v[rank - 1];
}

int bench_lat_summarize(const bench_worker *ws, int n, bench_lat_summary *out)
{
    size_t total = 0;
    out->stride = 0;
    for (int i = 0; i < n; i++) {
        total += ws[i].lat.n;
        if (ws[i].lat.stride > out->stride)
            out->stride = ws[i].lat.stride;
    }
    out->samples = total;
    if (total == 0)
        return -ENODATA;
    uint32_t *all = malloc(total * sizeof *all);
    if (!all)
        return -ENOMEM;
    size_t k = 0;
    for (int i = 0; i < n; i++)
        for (size_t j = 0; j < ws[i].lat.n; j++)
            all[k++] = ws[i].lat.ns[j];
    qsort(all, total, sizeof *all, cmp_u32);
    out->p50_ns = percentile(all, total, 50);
    out->p99_ns = percentile(all, total, 99);
    out->max_ns = all[total - 1];
    free(all);
    return 0;
}
