/* stats.h — the agent's counters: plain atomics, each written by the one stage that owns it.
 *
 * Ingest owns the `in_*` counters (its thread is the only writer, so increments are relaxed load+store
 * with no lock prefix); the flusher owns its accounting under its own mutex (see flusher.h) because
 * those numbers must move together. Readers (the stats socket) load them with relaxed loads. */
#ifndef LOGAGENT_STATS_H
#define LOGAGENT_STATS_H

#include <stdatomic.h>
#include <stdint.h>

typedef struct ingest_stats {
    _Atomic uint64_t received;       /* records accepted into the ring */
    _Atomic uint64_t bytes_received; /* raw bytes read from client sockets */
    _Atomic uint64_t malformed;      /* connections closed on bytes that are not msgpack */
    _Atomic uint64_t invalid_record; /* objects skipped: not a map, or no string message */
    _Atomic uint64_t oversized;      /* connections closed on a record over max_record_bytes */
    _Atomic uint64_t truncated;      /* partial records discarded at disconnect */
    _Atomic uint64_t reserved_key;   /* `_`-keys dropped */
    _Atomic uint64_t level_unknown;  /* levels kept as sent */
    _Atomic uint64_t dropped_shutdown; /* complete records read but not queued when the agent stopped */
    _Atomic uint64_t dropped_full;     /* --on-full drop-newest: records refused because the ring was full */
    _Atomic uint64_t conn_active;
    _Atomic uint64_t conn_total;
    _Atomic uint64_t backpressure_ns; /* time spent with reading paused because the ring was full (past pauses) */
    _Atomic uint64_t paused_since_ns; /* CLOCK_MONOTONIC start of the current pause, 0 when reading */
    _Atomic uint64_t pauses;
} ingest_stats;

/* Single-writer increment: cheaper than atomic_fetch_add, safe because only the owner writes. */
static inline void stat_add(_Atomic uint64_t *c, uint64_t n)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n, memory_order_relaxed);
}

static inline uint64_t stat_get(_Atomic uint64_t *c) { return atomic_load_explicit(c, memory_order_relaxed); }

#endif
