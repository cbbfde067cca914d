/* bench_socket.c — logagent-bench's socket mode: a worker thread writing records through liblogagent to the
 * agent's ingest socket (the shared client, or its own with --per-worker-client, flushed when it is done).
 * The records are the ones built before the clock started (b->ring), so the write loop is the library's work:
 * the worker measures its own CPU time over the loop (CLOCK_THREAD_CPUTIME_ID: the library's cost per
 * logagent_write on the caller's thread; the client's I/O thread is not in it) and times a sample of single
 * writes (bench_lat.c). */
#include <string.h>
#include <time.h>

#include "bench.h"

static int64_t clock_ns(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Writes records first..first+n-1; returns how many the library accepted. */
static long write_range(bench_worker *w, logagent_client *c, long first, long n)
{
    const bring *ring = &w->b->ring;
    size_t k = (size_t)(first - 1) % ring->n;
    long ok = 0;
    for (long i = 0; i < n; i++) {
        const logagent_record *r = &ring->socket[k].r;
        logagent_result res;
        if (bench_lat_due(&w->lat)) {
            int64_t t0 = clock_ns(CLOCK_MONOTONIC);
            res = logagent_write(c, r);
            bench_lat_add(&w->lat, (uint64_t)(clock_ns(CLOCK_MONOTONIC) - t0));
        } else {
            res = logagent_write(c, r);
        }
        if (res.success)
            ok++;
        else
            bench_note(w->b, 1, "%s", res.error_message);
        k = k + 1 == ring->n ? 0 : k + 1;
    }
    return ok;
}

void *bench_socket_worker(void *arg)
{
    bench_worker *w = arg;
    bench *b = w->b;
    logagent_client *c = b->shared;

    if (!c) {
        int rc = logagent_client_new(&b->opts, &c);
        if (rc < 0) {
            bench_note(b, 0, "worker %d: cannot create a client: %s", w->id, strerror(-rc));
            return NULL;
        }
    }

    long first, n, ok = 0;
    int64_t cpu0 = clock_ns(CLOCK_THREAD_CPUTIME_ID);
    while ((n = bench_claim(b, BENCH_CLAIM, &first)) > 0) {
        ok += write_range(w, c, first, n);
        w->writes += n;
    }
    w->cpu_ns = clock_ns(CLOCK_THREAD_CPUTIME_ID) - cpu0;
    atomic_fetch_add_explicit(&b->ok, ok, memory_order_relaxed);

    if (!b->shared) {
        int rc = logagent_flush(c, b->flush_timeout_ms);
        if (rc < 0)
            bench_note(b, 0, "worker %d: flush: %s", w->id, strerror(-rc));
        logagent_client_free(c, 0);
    }
    return NULL;
}
