/* bench_record.c — what every logagent-bench mode shares: the work counter, the error tally and the record
 * shape of the original service's concurrent test (its test data: service_name django-concurrent-test, a random
 * level, concurrent-trace-%06d / concurrent-span-%06d, adv_id, aweme_id, plan_id, monitor_type, co_id and an
 * RFC 3339 timestamp), so the socket and HTTP modes send the same records. */
#include <stdarg.h>
#include <stdio.h>
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

uint32_t brec_seed(int worker_id)
{
    uint32_t rs = 2463534242u ^ (uint32_t)((uint32_t)worker_id * 0x9e3779b9u);
    return rs ? rs : 1;
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
