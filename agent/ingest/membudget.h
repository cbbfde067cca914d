/* membudget.h — the memory client connections may hold outside the ring: partial records on the ingest socket and
 * HTTP request bodies not complete yet (--ingest-memory-bytes), shared by ingest and the HTTP ingest.
 *
 * Each connection is charged what it holds beyond a small free allowance (MEMBUDGET_FREE_BYTES: an idle or
 * well-behaved connection's read buffer is never charged). A connection may grow its charge only while the total
 * stays within the limit, or when it is the budget's owner: the first connection refused growth while there is no
 * owner becomes it and goes on, so the one connection that needs memory to finish its record always can (no
 * deadlock; the total may pass the limit by that one record). Others are paused — their reading stops, their
 * memory is kept, nothing is dropped — until the owner finishes its record (or closes) or the total falls under three
 * quarters of the limit; then every paused connection is resumed and tries again. One budget for every ingest thread
 * (--ingest-threads) and the HTTP ingest: each call takes `mu` (once per read, not per record); the resume functions
 * run under it and must only wake their loop (event_active). The counters are atomics for the stats documents. */
#ifndef LOGAGENT_MEMBUDGET_H
#define LOGAGENT_MEMBUDGET_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

/* Users: the HTTP ingest and every ingest thread (at most 16, config.c). */
enum { MEMBUDGET_FREE_BYTES = 16 << 10, MEMBUDGET_USERS = 17 };

typedef void (*membudget_resume_fn)(void *arg);

typedef struct membudget {
    pthread_mutex_t mu;              /* membudget_init; all zeros is glibc's PTHREAD_MUTEX_INITIALIZER too */
    uint64_t limit;                  /* --ingest-memory-bytes */
    _Atomic uint64_t used;           /* bytes charged now */
    _Atomic uint64_t pauses;         /* times a connection was paused for memory */
    _Atomic uint64_t paused_now;     /* connections paused for memory now */
    _Atomic uint64_t paused_ns;      /* time with at least one connection paused (past episodes) */
    _Atomic uint64_t paused_since_ns; /* CLOCK_MONOTONIC start of the current episode, 0 when none */
    const void *owner;               /* the connection allowed past the limit (NULL: none) */
    int over;                        /* a connection was refused since the total was last under 3/4 */
    uint64_t freed;                  /* bytes of large buffers freed since the last malloc_trim */
    int64_t freed_at_ms;             /* CLOCK_MONOTONIC ms of the last such free */
    membudget_resume_fn resume[MEMBUDGET_USERS]; /* ingest's and the HTTP ingest's "resume your paused ones" */
    void *resume_arg[MEMBUDGET_USERS];
} membudget;

/* What a connection holding `bytes` is charged: 0 up to MEMBUDGET_FREE_BYTES, all of it above. */
static inline uint64_t membudget_cost(uint64_t bytes) { return bytes > MEMBUDGET_FREE_BYTES ? bytes : 0; }

/* Sets up b with `limit` bytes (--ingest-memory-bytes), before any thread uses it. */
void membudget_init(membudget *b, uint64_t limit);

/* Registers fn(arg), called (from membudget_update) when paused connections may try again. 0 or -ENOSPC. */
int membudget_on_resume(membudget *b, membudget_resume_fn fn, void *arg);

/* Forgets fn's registration made with arg (before arg is freed). */
void membudget_forget(membudget *b, void *arg);

/* May `who`, charged `have` now, hold `want` bytes (its cost, membudget_cost)? 1 when it fits, or `who` is (or now
 * becomes) the owner; 0 when it must pause (then the caller pauses it and calls membudget_paused(b, +1)). */
int membudget_may_grow(membudget *b, const void *who, uint64_t have, uint64_t want);

/* Sets who's charge from *have to `now` (both costs) and stores it in *have. When who was the owner and now holds
 * nothing (its record is done), or the total fell under 3/4 of the limit after a refusal, the resume functions run. */
void membudget_update(membudget *b, const void *who, uint64_t *have, uint64_t now);

/* `who` finished the record it was allowed to finish: if it is the owner, it is no more (the others resume and
 * the next one refused becomes the owner), though it may still hold memory. */
void membudget_release(membudget *b, const void *who);

/* A buffer of `bytes` was freed: large ones are counted toward the next malloc_trim. */
void membudget_freed(membudget *b, uint64_t bytes);

/* Once a second (ingest's sweep): when large buffers were freed since the last time and none for a second (a burst
 * is over: trimming while they keep coming would only make the next ones fault their pages in again), returns the
 * free heap pages to
 * the system (main.c keeps buffers up to 32 MiB on the heap, which glibc would otherwise keep). */
void membudget_trim(membudget *b);

/* A connection paused (+1) or resumed/closed while paused (-1): keeps paused_now and the paused time. */
void membudget_paused(membudget *b, int delta);

#endif
