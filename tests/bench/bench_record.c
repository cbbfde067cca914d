/* bench_record.c — what every logagent-bench mode shares: the work counter, the error tally, the record
 * shape of the original service's concurrent test (its test data: service_name django-concurrent-test, a random
 * level, concurrent-trace-%06d / concurrent-span-%06d, adv_id, aweme_id, plan_id, monitor_type, co_id and an
 * RFC 3339 timestamp), so the socket and HTTP modes send the same records, and the ring of those records built
 * before the clock starts (the original's test data is fixed too: formatting it is not what is measured). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "bench.h"

void bench_note(bench *b, int is_record, const char *fmt, ...)
{
    va_list ap;
    pthread_mutex_lock(&b->err_mu);
    if (!is_record)
        b->n_errors++;
    if (b->n_samples < BENCH_MAX_SAMPLES) {
        va_start(ap, fmt);
        vsnprintf(b->samples[b->n_samples++], sizeof b->samples[0], fmt, ap);
        va_end(ap);
    }
    pthread_mutex_unlock(&b->err_mu);
}

long bench_claim(bench *b, long want, long *first)
{
    long start = atomic_fetch_add_explicit(&b->next, want, memory_order_relaxed) + 1;
    if (start > b->count)
        return 0;
    *first = start;
    return b->count - start + 1 < want ? b->count - start + 1 : want;
}

static uint32_t xorshift32(uint32_t *s)
{
    uint32_t x = *s;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return *s = x;
}

/* uniform enough in [lo, hi] for test data */
static long long rand_between(uint32_t *s, long long lo, long long hi)
{
    return lo + (long long)(xorshift32(s) % (uint32_t)(hi - lo + 1));
}

/* "2024-08-30T10:30:45.123456+00:00" */
static void rfc3339_now(char *buf, size_t n)
{
    struct timespec ts;
    struct tm tm;
    char head[32];
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(head, sizeof head, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf, n, "%.20s.%06u+00:00", head, (unsigned)(ts.tv_nsec / 1000) % 1000000u);
}

void brec_make(brec *r, long i, uint32_t *rs)
{
    static const char *const levels[] = { "INFO", "WARN", "ERROR", "DEBUG" };
    static const char *const monitor_types[] = { "impression", "click", "conversion", "view" };
    r->monitor_type = monitor_types[xorshift32(rs) % 4];
    r->level = levels[xorshift32(rs) % 4];
    snprintf(r->message, sizeof r->message, "Concurrent test log entry %ld", i);
    snprintf(r->trace_id, sizeof r->trace_id, "concurrent-trace-%06ld", i);
    snprintf(r->span_id, sizeof r->span_id, "concurrent-span-%06ld", i);
    rfc3339_now(r->timestamp, sizeof r->timestamp);
    r->adv_id = rand_between(rs, 1000000, 9999999);
    r->aweme_id = rand_between(rs, 100000000, 999999999);
    r->plan_id = rand_between(rs, 10000, 99999);
    r->co_id = rand_between(rs, 1000, 9999);
}

int brec_json(const brec *r, char *buf, size_t cap)
{
    /* every string here is made by brec_make: ASCII without quotes or backslashes, nothing to escape */
    int n = snprintf(buf, cap,
                     "{\"message\":\"%s\",\"service_name\":\"" BREC_SERVICE "\",\"level\":\"%s\",\"trace_id\":\"%s\","
                     "\"span_id\":\"%s\",\"metadata\":{\"adv_id\":%lld,\"aweme_id\":%lld,\"plan_id\":%lld,"
                     "\"monitor_type\":\"%s\",\"co_id\":%lld,\"timestamp\":\"%s\"}}",
                     r->message, r->level, r->trace_id, r->span_id, r->adv_id, r->aweme_id, r->plan_id,
                     r->monitor_type, r->co_id, r->timestamp);
    return n < 0 || (size_t)n >= cap ? -1 : n;
}

/* An entry as a record for logagent_write: its fields point into the entry itself (the ring never moves). */
static void prep_socket(bprep *e)
{
    const brec *br = &e->rec;
    e->f[0] = (logagent_field){ .key = "adv_id", .type = LOGAGENT_INT, .v.i = br->adv_id };
    e->f[1] = (logagent_field){ .key = "aweme_id", .type = LOGAGENT_INT, .v.i = br->aweme_id };
    e->f[2] = (logagent_field){ .key = "plan_id", .type = LOGAGENT_INT, .v.i = br->plan_id };
    e->f[3] = (logagent_field){ .key = "monitor_type", .type = LOGAGENT_STR, .v.s = br->monitor_type };
    e->f[4] = (logagent_field){ .key = "co_id", .type = LOGAGENT_INT, .v.i = br->co_id };
    e->f[5] = (logagent_field){ .key = "timestamp", .type = LOGAGENT_STR, .v.s = br->timestamp };
    e->r = (logagent_record){ .message = br->message, .service_name = BREC_SERVICE, .level = br->level,
                              .trace_id = br->trace_id, .span_id = br->span_id, .fields = e->f, .n_fields = 6 };
}

/* The JSON bodies of n records into ring->json / json_off. Returns 0 or -ENOMEM. */
static int build_json(bring *ring, size_t n, uint32_t *rs)
{
    ring->json = malloc(n * BENCH_JSON_MAX);
    ring->json_off = malloc((n + 1) * sizeof *ring->json_off);
    if (!ring->json || !ring->json_off)
        return -ENOMEM;
    uint32_t off = 0;
    brec br;
    for (size_t k = 0; k < n; k++) {
        brec_make(&br, (long)k + 1, rs);
        int len = brec_json(&br, ring->json + off, BENCH_JSON_MAX);
        if (len < 0)
            abort(); /* cannot happen: brec_make's fields are bounded */
        ring->json_off[k] = off;
        off += (uint32_t)len;
    }
    ring->json_off[n] = off;
    return 0;
}

int bench_ring_build(bring *ring, long count, int json)
{
    *ring = (bring){ .n = count < BENCH_RING_MAX ? (size_t)count : BENCH_RING_MAX };
    uint32_t rs = 2463534242u;
    if (json)
        return build_json(ring, ring->n, &rs);
    ring->socket = malloc(ring->n * sizeof *ring->socket);
    if (!ring->socket)
        return -ENOMEM;
    for (size_t k = 0; k < ring->n; k++) {
        brec_make(&ring->socket[k].rec, (long)k + 1, &rs);
        prep_socket(&ring->socket[k]);
    }
    return 0;
}

void bench_ring_free(bring *ring)
{
    free(ring->socket);
    free(ring->json);
    free(ring->json_off);
    *ring = (bring){ 0 };
}
