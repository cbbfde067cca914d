/* stats.h — the reader on top: one snapshot of every stage's counters, and the stats documents rendered from it.
 *
 * The counters themselves live below, each written by the stage that owns it: ingest's in counters.h (plain
 * atomics, single writer), the flusher's under its own mutex (flusher.h, because those numbers must move together).
 * This header is for the readers (stats_http, metrics, health, main); a stage includes counters.h, never this.
 *
 * Documents: /stats (JSON), /metrics (Prometheus) and /healthz are all rendered from a stats_view filled by
 * stats_collect on the main loop thread: one read of ingest's counters (stable there: ingest, and the HTTP ingest
 * that adds to the same counters, run on that thread)
 * and one flusher snapshot. So /stats and /metrics agree for the same traffic, and in every view
 *   received + replayed = flushed + in_ring + batching + in_flight + retry_wait + spooled + dead_letter + sum(dropped) */
#ifndef LOGAGENT_STATS_H
#define LOGAGENT_STATS_H

#include "config.h"
#include "counters.h"
#include "flush/flusher.h"
#include "ring.h"

#include <stddef.h>
#include <stdint.h>

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
enum { STATS_REJECT_N = 5, STATS_DROP_N = 7 };
extern const char *const stats_reject_names[STATS_REJECT_N]; /* malformed invalid_record oversized truncated reserved_key */
/* buffer_full upstream_rejected retry_expired spool_corrupt shutdown rate_limited out_of_memory */
enum { STATS_DROP_SHUTDOWN = 4 }; /* its index: what the drain could not deliver */
extern const char *const stats_drop_names[STATS_DROP_N];

/* One consistent reading of every counter. */
typedef struct stats_view {
    double uptime_s;
    double start_unix_s;     /* when the agent started, unix seconds */
    int64_t now_ms;          /* CLOCK_MONOTONIC when collected (the flusher's times are on the same clock) */
    uint64_t received;       /* accepted: into the ring, or dropped at ingest (drop-newest, shutdown) */
    uint64_t in_ring;
    uint64_t rejected[STATS_REJECT_N];
    uint64_t dropped[STATS_DROP_N];
    uint64_t level_unknown, timestamp_unparsed, bytes_received, conn_active, conn_total, pauses;
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
    int grpc_enabled; /* --otlp-listen: otlp_grpc_stats, copied */
    uint64_t grpc_calls, grpc_responses[STATS_GRPC_CODE_N], grpc_records, grpc_request_bytes, grpc_refused_full;
    uint64_t grpc_refused_rate_limited, grpc_conn_total, grpc_conn_refused, grpc_conn_active, grpc_conn_max_reached;
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
