/* membudget.c — the shared bound on memory held for partial records and pending HTTP bodies (see membudget.h). */
#include "ingest/membudget.h"
#include "common/clock.h"

#include <errno.h>
#include <malloc.h>
#include <time.h>

enum { TRIM_LARGE = 64 << 10, TRIM_AFTER = 4 << 20, TRIM_QUIET_MS = 1000 };

static void put(_Atomic uint64_t *c, uint64_t v) { atomic_store_explicit(c, v, memory_order_relaxed); }
static uint64_t get(_Atomic uint64_t *c) { return atomic_load_explicit(c, memory_order_relaxed); }
static void lock(membudget *b) { pthread_mutex_lock(&b->mu); }
static void unlock(membudget *b) { pthread_mutex_unlock(&b->mu); }

void membudget_init(membudget *b, uint64_t limit)
{
    pthread_mutex_init(&b->mu, NULL);
    b->limit = limit;
}

int membudget_on_resume(membudget *b, membudget_resume_fn fn, void *arg)
{
    int rc = -ENOSPC;
    lock(b);
    for (unsigned i = 0; i < MEMBUDGET_USERS; i++)
        if (!b->resume[i]) {
            b->resume[i] = fn;
            b->resume_arg[i] = arg;
            rc = 0;
            break;
        }
    unlock(b);
    return rc;
}

void membudget_forget(membudget *b, void *arg)
{
    lock(b);
    for (unsigned i = 0; i < MEMBUDGET_USERS; i++)
        if (b->resume_arg[i] == arg) {
            b->resume[i] = NULL;
            b->resume_arg[i] = NULL;
        }
    unlock(b);
}

void membudget_freed(membudget *b, uint64_t bytes)
{
    if (bytes < TRIM_LARGE)
        return;
    lock(b);
    b->freed += bytes;
    b->freed_at_ms = clock_mono_ms();
    unlock(b);
}

void membudget_trim(membudget *b)
{
    lock(b);
    int trim = b->freed >= TRIM_AFTER && clock_mono_ms() - b->freed_at_ms >= TRIM_QUIET_MS;
    if (trim)
        b->freed = 0;
    unlock(b);
    if (trim)
        malloc_trim(0);
}

static int may_grow(membudget *b, const void *who, uint64_t have, uint64_t want)
{
    uint64_t used = get(&b->used);
    if (want <= have || b->owner == who || used - have + want <= b->limit)
        return 1;
    b->over = 1;
    if (!b->owner) {
        b->owner = who;
        return 1;
    }
    return 0;
}

int membudget_may_grow(membudget *b, const void *who, uint64_t have, uint64_t want)
{
    if (want <= have) /* shrinking or the same: no need to look at the others */
        return 1;
    lock(b);
    int ok = may_grow(b, who, have, want);
    unlock(b);
    return ok;
}

static void wake(membudget *b)
{
    if (!get(&b->paused_now))
        return;
    for (unsigned i = 0; i < MEMBUDGET_USERS; i++)
        if (b->resume[i])
            b->resume[i](b->resume_arg[i]);
}

void membudget_release(membudget *b, const void *who)
{
    lock(b);
    if (b->owner == who) {
        b->owner = NULL;
        wake(b);
    }
    unlock(b);
}

void membudget_update(membudget *b, const void *who, uint64_t *have, uint64_t now)
{
    lock(b);
    put(&b->used, get(&b->used) - *have + now);
    *have = now;
    int woken = 0;
    if (b->owner == who && now == 0) {
        b->owner = NULL;
        woken = 1;
    }
    if (b->over && get(&b->used) <= b->limit / 4 * 3) {
        b->over = 0;
        woken = 1;
    }
    if (woken)
        wake(b);
    unlock(b);
}

static void paused(membudget *b, int delta)
{
    uint64_t n = get(&b->paused_now);
    if (delta > 0) {
        put(&b->pauses, get(&b->pauses) + 1);
        if (n == 0)
            put(&b->paused_since_ns, (uint64_t)clock_mono_ns());
        put(&b->paused_now, n + 1);
        return;
    }
    if (n == 0)
        return;
    put(&b->paused_now, n - 1);
    if (n == 1) {
        uint64_t since = get(&b->paused_since_ns);
        put(&b->paused_ns, get(&b->paused_ns) + ((uint64_t)clock_mono_ns() - since));
        put(&b->paused_since_ns, 0);
    }
}

void membudget_paused(membudget *b, int delta)
{
    lock(b);
    paused(b, delta);
    unlock(b);
}
