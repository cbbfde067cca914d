/* stats.h — the agent's counters, and the one snapshot every stats document is rendered from.
 *
 * Counters: plain atomics, each written by the one stage that owns it. Ingest owns the `in_*` counters (its thread
 * is the only writer, so increments are relaxed load+store with no lock prefix; the HTTP ingest adds its records'
 * outcomes to them from that same thread) and the per-client table
 * (clients.h, main loop only); the flusher owns its accounting under its own mutex (see flusher.h) because those
 * numbers must move together. Readers (the stats socket) load them with relaxed loads.
 *
 * Documents: /stats (JSON), /metrics (Prometheus) and /healthz are all rendered from a stats_view filled by
 * stats_collect on the main loop thread: one read of ingest's counters (stable there: ingest, and the HTTP ingest
 * that adds to the same counters, run on that thread)
 * and one flusher snapshot. So /stats and /metrics agree for the same traffic, and in every view
 *   received + replayed = flushed + in_ring + batching + in_flight + retry_wait + spooled + dead_letter + sum(dropped) */
#ifndef LOGAGENT_STATS_H
#define LOGAGENT_STATS_H

#include "acceptguard.h"
#include "config.h"
#include "flush/flusher.h"
#include "ingest/membudget.h"
#include "ring.h"

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

struct clients;

/* The HTTP/JSON ingest's own counters (http_ingest.h), main loop thread only, like ingest's. What its records do
 * to the record counters (received, rejected, dropped) is counted in ingest_stats, so every ingest path adds up in
 * one place. */
enum { STATS_HTTP_CODE_N = 9 };
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
    _Atomic uint64_t dropped_rate_limited; /* --rate-limit: records of a sender over its rate */
    _Atomic uint64_t conn_active;
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
} ingest_stats;

/* Single-writer increment: cheaper than atomic_fetch_add, safe because only the owner writes. */
static inline void stat_add(_Atomic uint64_t *c, uint64_t n)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n, memory_order_relaxed);
}

static inline uint64_t stat_get(_Atomic uint64_t *c) { return atomic_load_explicit(c, memory_order_relaxed); }

/* Where the stats documents read from (all borrowed; they outlive the stats socket). */
typedef struct stats_sources {
    const config *cfg;
    ingest_stats *ingest;
    ring *ring;
    flusher *flusher;
    double start_mono; /* seconds, CLOCK_MONOTONIC */
} stats_sources;

/* The reasons a record is refused at ingest, and dropped anywhere: the keys of /stats' records.rejected and
 * records.dropped, and the `reason` label values in /metrics, in this order. */
enum { STATS_REJECT_N = 5, STATS_DROP_N = 6 };
extern const char *const stats_reject_names[STATS_REJECT_N]; /* malformed invalid_record oversized truncated reserved_key */
extern const char *const stats_drop_names[STATS_DROP_N]; /* buffer_full upstream_rejected retry_expired spool_corrupt shutdown rate_limited */

/* One consistent reading of every counter. */
typedef struct stats_view {
    double uptime_s;
    double start_unix_s;     /* when the agent started, unix seconds */
    int64_t now_ms;          /* CLOCK_MONOTONIC when collected (the flusher's times are on the same clock) */
    uint64_t received;       /* accepted: into the ring, or dropped at ingest (drop-newest, shutdown) */
    uint64_t in_ring;
    uint64_t rejected[STATS_REJECT_N];
    uint64_t dropped[STATS_DROP_N];
    uint64_t level_unknown, bytes_received, conn_active, conn_total, pauses;
    uint64_t conn_max_reached, conn_refused_not_allowed, conn_timed_out;
    uint64_t conn_fd_limit_reached, accept_errors[ACCEPT_ERR_N];
    uint64_t mem_limit, mem_used, mem_pauses, mem_paused_now; /* --ingest-memory-bytes (membudget.h) */
    double mem_paused_s;     /* time with a connection paused for memory, the current episode included */
    double backpressure_s;   /* past pauses plus the current one */
    int paused;              /* reading is paused now (ring full) */
    size_t ring_used, ring_capacity;
    uint64_t clients_tracked, clients_evicted;
    int http_enabled;
    uint64_t http_requests, http_responses[STATS_HTTP_CODE_N], http_records, http_body_bytes, http_refused_full;
    uint64_t http_refused_rate_limited, http_conn_active, http_conn_max_reached, http_timed_out;
    uint64_t fwd_messages, fwd_events, fwd_acks, fwd_acks_failed; /* Fluent Forward on the ingest socket */
    flusher_snapshot f;
} stats_view;

/* Fills v. Main loop thread only (it reads ingest's counters and the client table there). */
void stats_collect(const stats_sources *src, stats_view *v);

/* Writes the /stats JSON document of v into buf (NUL-terminated). Returns its length, or -ENOSPC if it did not
 * fit. */
int stats_view_json(const stats_view *v, const config *cfg, char *buf, size_t cap);

/* stats_collect + stats_view_json: the /stats document now (main loop thread). */
int stats_json(const stats_sources *src, char *buf, size_t cap);

#endif
