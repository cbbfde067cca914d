/* counters.h — the counters the ingest stages write as they work, and the one way to bump and read them: the bottom
 * floor, so that a stage can count without seeing who reads (stats.h gathers every stage's counters into the stats
 * documents; the flusher keeps its own under its mutex, flusher.h).
 *
 * Plain atomics, each written by the one stage that owns it. Ingest owns the `in_*` counters (each ingest thread
 * has its own ingest_stats and is its only writer, so increments are relaxed load+store with no lock prefix; the
 * HTTP ingest adds its records' outcomes to loop 0's from that same thread; readers sum them, STAT_SUM) and the per-client table (clients.h, main loop only). Readers (the stats
 * socket) load them with relaxed loads.
 *
 * This header includes nothing of ours but leaf headers (ingest/membudget.h: ingest_stats holds the memory budget
 * by value); tests/layout/check_includes.py keeps it so. */
#ifndef LOGAGENT_COUNTERS_H
#define LOGAGENT_COUNTERS_H

#include "ingest/membudget.h"

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

struct clients;

/* Why accept(2) failed: the reasons of connections.accept_errors in /stats and logagent_accept_errors_total, the
 * index of ingest_stats.accept_errors (acceptguard.h counts them; acceptguard_reason_names names them). */
enum acceptguard_reason { ACCEPT_ERR_EMFILE = 0, ACCEPT_ERR_NOMEM = 1, ACCEPT_ERR_OTHER = 2, ACCEPT_ERR_N = 3 };

/* The HTTP/JSON ingest's own counters (http_ingest.h), main loop thread only, like ingest's. What its records do
 * to the record counters (received, rejected, dropped) is counted in ingest_stats, so every ingest path adds up in
 * one place. */
enum { STATS_HTTP_CODE_N = 10 };
extern const int stats_http_codes[STATS_HTTP_CODE_N]; /* 200 400 403 404 405 413 429 500 503 */

typedef struct http_stats {
    _Atomic uint64_t requests;                     /* requests answered by the HTTP ingest */
    _Atomic uint64_t responses[STATS_HTTP_CODE_N]; /* ... by status code, in stats_http_codes' order */
    _Atomic uint64_t records;                      /* records accepted into the ring over HTTP (also in received) */
    _Atomic uint64_t body_bytes;                   /* request body bytes read */
    _Atomic uint64_t refused_full;                 /* records answered "buffer full, retry" (503; still the caller's) */
    _Atomic uint64_t refused_rate_limited;         /* records answered "over --rate-limit, retry" (429; the caller's) */
    _Atomic uint64_t conn_active;                  /* HTTP connections open now */
    _Atomic uint64_t conn_max_reached;             /* times --http-max-connections stopped accepting */
    _Atomic uint64_t timed_out;                    /* connections closed: a request past --partial-record-timeout-ms */
    int enabled;                                   /* --http-listen is set */
} http_stats;

/* The OTLP/gRPC ingest's own counters (otlp_grpc.h), written on the main loop thread only (every call is answered
 * there). Its records' fates are counted in ingest_stats as every other path's. */
enum { STATS_GRPC_CODE_N = 6 };
extern const int stats_grpc_codes[STATS_GRPC_CODE_N];          /* 0 3 8 12 13 14 */
extern const char *const stats_grpc_code_names[STATS_GRPC_CODE_N]; /* OK INVALID_ARGUMENT ... UNAVAILABLE */

typedef struct otlp_grpc_stats {
    _Atomic uint64_t calls;                        /* Export calls answered */
    _Atomic uint64_t responses[STATS_GRPC_CODE_N]; /* ... by gRPC status, in stats_grpc_codes' order */
    _Atomic uint64_t records;                      /* records accepted into the ring over OTLP/gRPC */
    _Atomic uint64_t request_bytes;                /* request message bytes received (after gRPC's decompression) */
    _Atomic uint64_t refused_full;                 /* records answered UNAVAILABLE, buffer full (the caller's) */
    _Atomic uint64_t refused_rate_limited;         /* records answered RESOURCE_EXHAUSTED (the caller's) */
    _Atomic uint64_t conn_total;                   /* connections accepted and handed to gRPC */
    _Atomic uint64_t conn_active;                  /* ... open now (until gRPC or the client closes it) */
    _Atomic uint64_t conn_max_reached;             /* times --otlp-max-connections stopped accepting */
    _Atomic uint64_t conn_refused_not_allowed;     /* closed at accept: not in --allow-uids/--allow-gids */
    int enabled;                                   /* --otlp-listen is set */
} otlp_grpc_stats;

typedef struct ingest_stats {
    _Atomic uint64_t received;       /* records accepted into the ring */
    _Atomic uint64_t bytes_received; /* raw bytes read from client sockets */
    _Atomic uint64_t malformed;      /* connections closed on bytes that are not msgpack */
    _Atomic uint64_t invalid_record; /* objects skipped: not a map, or no string message */
    _Atomic uint64_t oversized;      /* connections closed on a record over max_record_bytes */
    _Atomic uint64_t truncated;      /* partial records discarded at disconnect */
    _Atomic uint64_t reserved_key;   /* `_`-keys dropped */
    _Atomic uint64_t level_unknown;  /* levels kept as sent */
    _Atomic uint64_t timestamp_unparsed; /* timestamps that did not parse, kept in metadata */
    _Atomic uint64_t dropped_shutdown; /* complete records read but not queued when the agent stopped */
    _Atomic uint64_t dropped_full;     /* --on-full drop-newest: records refused because the ring was full */
    _Atomic uint64_t dropped_rate_limited; /* --rate-limit: records of a sender over its rate */
    _Atomic uint64_t dropped_nomem;    /* read from a socket, then lost: the agent could not allocate (admit.h) */
    _Atomic uint64_t conn_active; /* summed over the loops: +1 at accept (loop 0), -1 at close (the serving loop) */
    _Atomic uint64_t conn_total;
    _Atomic uint64_t conn_max_reached;         /* times --max-connections stopped accepting */
    _Atomic uint64_t conn_fd_limit_reached;    /* times the open-file budget (below --max-connections) did */
    _Atomic uint64_t accept_errors[ACCEPT_ERR_N]; /* accept(2) failures by reason, every listener (each paused it) */
    _Atomic uint64_t conn_refused_not_allowed; /* closed at accept: not in --allow-uids/--allow-gids */
    _Atomic uint64_t conn_timed_out;           /* closed holding a partial record too long */
    _Atomic uint64_t backpressure_ns; /* time spent with reading paused because the ring was full (past pauses) */
    _Atomic uint64_t paused_since_ns; /* CLOCK_MONOTONIC start of the current pause, 0 when reading */
    _Atomic uint64_t pauses;
    _Atomic uint64_t fwd_messages;    /* Fluent Forward messages (top-level arrays) understood */
    _Atomic uint64_t fwd_events;      /* their events handed to the record path (each then counted as any record) */
    _Atomic uint64_t fwd_acks;        /* {"ack": chunk} answers sent */
    _Atomic uint64_t fwd_acks_failed; /* acks that could not be sent (peer not reading or gone) */
    membudget mem;                    /* --ingest-memory-bytes: partial records and HTTP bodies (both ingests) */
    struct clients *clients;          /* per-client counters: set by ingest_new, main loop thread only */
    http_stats http;                  /* the HTTP ingest's own (written by http_ingest, same thread) */
    otlp_grpc_stats otlp_grpc;        /* the OTLP/gRPC ingest's own (written on the same thread) */
    struct ingest_stats *next_thread; /* --ingest-threads: the next loop's counters (NULL: the last); loop 0's are
                                         the head, with the HTTP ingest's, the memory budget and the client table */
} ingest_stats;

/* Single-writer increment: cheaper than atomic_fetch_add, safe because only the owner writes. */
static inline void stat_add(_Atomic uint64_t *c, uint64_t n)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n, memory_order_relaxed);
}

static inline uint64_t stat_get(_Atomic uint64_t *c) { return atomic_load_explicit(c, memory_order_relaxed); }

/* A counter summed over every ingest thread (the chain from loop 0's ingest_stats): STAT_SUM(st, received). */
static inline uint64_t stat_sum_at(ingest_stats *s, size_t offset)
{
    uint64_t n = 0;
    for (; s; s = s->next_thread)
        n += stat_get((_Atomic uint64_t *)((char *)s + offset));
    return n;
}
#define STAT_SUM(s, field) stat_sum_at((s), offsetof(ingest_stats, field))

#endif
