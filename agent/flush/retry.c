/* retry.c — retryable-status table and full-jitter backoff (see retry.h). */
#include "flush/retry.h"

#include <google/rpc/error_details.pb-c.h>
#include <google/rpc/status.pb-c.h>

#include <string.h>

int retry_status_retryable(int s)
{
    switch (s) {
    case 1:  /* CANCELLED */
    case 4:  /* DEADLINE_EXCEEDED */
    case 8:  /* RESOURCE_EXHAUSTED: throttled */
    case 10: /* ABORTED */
    case 11: /* OUT_OF_RANGE */
    case 14: /* UNAVAILABLE (also: connection lost, server not there) */
    case 15: /* DATA_LOSS */
    case 16: /* UNAUTHENTICATED: an expired or rotating bearer token; the token file is re-read on retry */
        return 1;
    default:
        return 0;
    }
}

int64_t retry_backoff_ms(unsigned attempt, int64_t initial_ms, int64_t max_ms, uint64_t *rng)
{
    int64_t cap = initial_ms;
    for (unsigned i = 0; i < attempt && cap < max_ms; i++)
        cap *= 2;
    if (cap > max_ms)
        cap = max_ms;
    uint64_t x = *rng; /* xorshift64 */
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *rng = x;
    int64_t d = (int64_t)(x % (uint64_t)(cap + 1));
    return d < 1 ? 1 : d;
}

#define RETRY_INFO_TYPE "type.googleapis.com/google.rpc.RetryInfo"

/* A RetryInfo's delay in ms, or -1 when it has none or one out of range (negative, over a year, nanos >= 1 s). */
static int64_t retry_info_ms(const ProtobufCBinaryData *value)
{
    Google__Rpc__RetryInfo *ri = google__rpc__retry_info__unpack(NULL, value->len, value->data);
    int64_t ms = -1;
    const Google__Protobuf__Duration *d = ri ? ri->retry_delay : NULL;
    if (d && d->seconds >= 0 && d->seconds <= 86400 * 365 && d->nanos >= 0 && d->nanos < 1000000000)
        ms = d->seconds * 1000 + d->nanos / 1000000;
    if (ri)
        google__rpc__retry_info__free_unpacked(ri, NULL);
    return ms;
}

int64_t retry_info_delay_ms(const uint8_t *p, size_t n)
{
    Google__Rpc__Status *st = n ? google__rpc__status__unpack(NULL, n, p) : NULL;
    int64_t ms = -1;
    for (size_t i = 0; st && i < st->n_details && ms < 0; i++)
        if (st->details[i]->type_url && strcmp(st->details[i]->type_url, RETRY_INFO_TYPE) == 0)
            ms = retry_info_ms(&st->details[i]->value);
    if (st)
        google__rpc__status__free_unpacked(st, NULL);
    return ms;
}
