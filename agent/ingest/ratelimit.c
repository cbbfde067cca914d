/* ratelimit.c — token buckets in an open-addressing table (see ratelimit.h). */
#include "ingest/ratelimit.h"

#include <stdint.h>
#include <stdlib.h>

typedef struct bucket {
    uint32_t key;
    int used;
    double tokens;
    int64_t last_ns; /* last refill (and use) */
} bucket;

struct ratelimit {
    double rate;
    double burst;
    unsigned cap;  /* slots: a power of two, twice the senders kept */
    unsigned n;    /* slots in use */
    bucket *slots;
};

ratelimit *ratelimit_new(double rate, uint64_t burst, unsigned cap)
{
    ratelimit *rl = calloc(1, sizeof *rl);
    if (!rl)
        return NULL;
    rl->rate = rate;
    rl->burst = (double)burst;
    rl->cap = 16;
    while (rl->cap < cap * 2)
        rl->cap *= 2;
    if (!(rl->slots = calloc(rl->cap, sizeof *rl->slots))) {
        free(rl);
        return NULL;
    }
    return rl;
}

void ratelimit_free(ratelimit *rl)
{
    if (!rl)
        return;
    free(rl->slots);
    free(rl);
}

static unsigned slot_of(const ratelimit *rl, uint32_t key)
{
    return (key * 2654435761u) & (rl->cap - 1);
}

static int refilled(const ratelimit *rl, const bucket *b, int64_t now_ns)
{
    return b->tokens + (double)(now_ns - b->last_ns) * 1e-9 * rl->rate >= rl->burst;
}

static bucket *insert(bucket *slots, unsigned cap, const bucket *b)
{
    unsigned i = (b->key * 2654435761u) & (cap - 1);
    while (slots[i].used)
        i = (i + 1) & (cap - 1);
    slots[i] = *b;
    return &slots[i];
}

/* Rebuilds the table without the buckets that have refilled (a full bucket is what a new sender gets: forgetting it
 * changes nothing) and, when that frees too little, without those older than the average too. O(cap), and only
 * when the table is half full. */
static void compact(ratelimit *rl, int64_t now_ns)
{
    bucket *fresh = calloc(rl->cap, sizeof *fresh);
    if (!fresh) { /* out of memory: forget everyone (they get full buckets), rather than grow */
        for (unsigned i = 0; i < rl->cap; i++)
            rl->slots[i].used = 0;
        rl->n = 0;
        return;
    }
    unsigned keep = 0;
    double sum = 0;
    for (unsigned i = 0; i < rl->cap; i++)
        if (rl->slots[i].used && !refilled(rl, &rl->slots[i], now_ns)) {
            keep++;
            sum += (double)rl->slots[i].last_ns;
        }
    int64_t cutoff = keep >= rl->cap / 4 ? (int64_t)(sum / keep) : INT64_MIN;
    rl->n = 0;
    for (unsigned i = 0; i < rl->cap; i++) {
        const bucket *b = &rl->slots[i];
        if (b->used && !refilled(rl, b, now_ns) && (b->last_ns > cutoff || cutoff == INT64_MIN)) {
            insert(fresh, rl->cap, b);
            rl->n++;
        }
    }
    free(rl->slots);
    rl->slots = fresh;
}

/* The bucket of key, or a new full one. */
static bucket *find(ratelimit *rl, uint32_t key, int64_t now_ns)
{
    unsigned i = slot_of(rl, key);
    for (; rl->slots[i].used; i = (i + 1) & (rl->cap - 1))
        if (rl->slots[i].key == key)
            return &rl->slots[i];
    if (rl->n + 1 > rl->cap / 2) /* keeps probe chains short and an empty slot always there */
        compact(rl, now_ns);
    rl->n++;
    return insert(rl->slots, rl->cap, &(bucket){key, 1, rl->burst, now_ns});
}

int ratelimit_allow(ratelimit *rl, uint32_t key, int64_t now_ns)
{
    bucket *b = find(rl, key, now_ns);
    if (now_ns > b->last_ns) {
        b->tokens += (double)(now_ns - b->last_ns) * 1e-9 * rl->rate;
        if (b->tokens > rl->burst)
            b->tokens = rl->burst;
    }
    b->last_ns = now_ns;
    if (b->tokens < 1.0)
        return 0;
    b->tokens -= 1.0;
    return 1;
}
