/* retry.c — retryable-status table and full-jitter backoff (see retry.h). */
#include "retry.h"

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
