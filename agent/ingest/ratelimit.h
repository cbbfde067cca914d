/* ratelimit.h — per-sender token buckets for --rate-limit RECORDS/s:BURST (like journald's RateLimitBurst).
 *
 * A sender is a pid or a uid (--rate-limit-key). Each has a bucket of `burst` tokens refilled at `rate` per
 * second; a record takes one, and a record finding the bucket empty is dropped by the caller (counted). The
 * table is bounded: when it is half full it is rebuilt without the buckets that have refilled (a full bucket is
 * what a new sender gets, so forgetting it changes nothing) and, if that is not enough, without the older half of
 * the rest. Main loop thread only. */
#ifndef LOGAGENT_RATELIMIT_H
#define LOGAGENT_RATELIMIT_H

#include <stdint.h>

typedef struct ratelimit ratelimit;

/* A table of at most `cap` senders. NULL on allocation failure. */
ratelimit *ratelimit_new(double rate, uint64_t burst, unsigned cap);
void ratelimit_free(ratelimit *rl);

/* Does `key`'s bucket allow one more record at now_ns (CLOCK_MONOTONIC)? A predicate: 1 yes (a token is taken),
 * 0 the sender is over its rate. */
int ratelimit_allow(ratelimit *rl, uint32_t key, int64_t now_ns);

#endif
