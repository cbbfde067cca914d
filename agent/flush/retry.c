/* retry.c — retryable-status table and full-jitter backoff (see retry.h). */
#include "flush/retry.h"

#include "pbwire.h"

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

/* RetryInfo { Duration retry_delay = 1; }  Duration { int64 seconds = 1; int32 nanos = 2; } */
static int64_t retry_info_parse(const uint8_t *p, size_t n)
{
    const uint8_t *end = p + n, *d, *dur = NULL;
    size_t dlen, durlen = 0;
    uint32_t field;
    int wire;
    uint64_t v, secs = 0, nanos = 0;
    while (p < end) {
        if (pbw_get_field(&p, end, &field, &wire, &v, &d, &dlen) < 0)
            return -1;
        if (field == 1 && wire == 2) {
            dur = d;
            durlen = dlen;
        }
    }
    if (!dur)
        return -1;
    end = dur + durlen;
    while (dur < end) {
        if (pbw_get_field(&dur, end, &field, &wire, &v, &d, &dlen) < 0)
            return -1;
        if (field == 1 && wire == 0)
            secs = v;
        else if (field == 2 && wire == 0)
            nanos = v;
    }
    if ((int64_t)secs < 0 || secs > 86400 * 365 || nanos >= 1000000000)
        return -1;
    return (int64_t)secs * 1000 + (int64_t)(nanos / 1000000);
}

int64_t retry_info_delay_ms(const uint8_t *p, size_t n)
{
    const uint8_t *end = p + n, *d;
    size_t dlen;
    uint32_t field;
    int wire;
    uint64_t v;
    while (p < end) { /* google.rpc.Status { int32 code = 1; string message = 2; repeated Any details = 3; } */
        if (pbw_get_field(&p, end, &field, &wire, &v, &d, &dlen) < 0)
            return -1;
        if (field != 3 || wire != 2)
            continue;
        const uint8_t *a = d, *aend = d + dlen, *val = NULL, *ad;
        size_t vlen = 0, alen;
        int is_retry_info = 0;
        while (a < aend) { /* Any { string type_url = 1; bytes value = 2; } */
            if (pbw_get_field(&a, aend, &field, &wire, &v, &ad, &alen) < 0)
                return -1;
            if (field == 1 && wire == 2)
                is_retry_info = alen == sizeof RETRY_INFO_TYPE - 1 && memcmp(ad, RETRY_INFO_TYPE, alen) == 0;
            else if (field == 2 && wire == 2) {
                val = ad;
                vlen = alen;
            }
        }
        if (is_retry_info && val)
            return retry_info_parse(val, vlen);
    }
    return -1;
}
