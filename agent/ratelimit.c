/* ratelimit.c — token buckets in an open-addressing table (see ratelimit.h). */
#include "ratelimit.h"

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

/* The bucket of key, or a new full one. When half the slots are used, the stalest bucket on the probe path (or,
 * with none, the stalest anywhere) makes room: buckets idle longest have refilled and carry no state. */
static bucket *find(ratelimit *rl, uint32_t key, int64_t now_ns)
{
    unsigned i = slot_of(rl, key);
    for (unsigned probes = 0; probes < rl->cap && rl->slots[i].used; probes++, i = (i + 1) & (rl->cap - 1))
        if (rl->slots[i].key == key)
            return &rl->slots[i];
    if (rl->n >= rl->cap / 2) {
        unsigned oldest = 0;
        for (unsigned j = 1; j < rl->cap; j++)
            if (rl->slots[j].last_ns < rl->slots[oldest].last_ns)
                oldest = j;
        /* reuse in place: linear probing stays valid because the slot stays occupied */
        rl->slots[oldest] = (bucket){key, 1, rl->burst, now_ns};
        return &rl->slots[oldest];
    }
    rl->n++;
    rl->slots[i] = (bucket){key, 1, rl->burst, now_ns};
    return &rl->slots[i];
}

int ratelimit_take(ratelimit *rl, uint32_t key, int64_t now_ns)
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
