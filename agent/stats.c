/* stats.c — one consistent reading of the agent's counters (stats_collect) and the /stats JSON document.
 *
 * Every stats document starts here, so /stats, /metrics and /healthz never disagree about a number. */
#include "stats.h"

#include "ingest/clients.h"
#include "jsonstr.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

const char *const stats_reject_names[STATS_REJECT_N] = {"malformed", "invalid_record", "oversized", "truncated",
                                                        "reserved_key"};
const char *const stats_drop_names[STATS_DROP_N] = {"buffer_full", "upstream_rejected", "retry_expired",
                                                    "spool_corrupt", "shutdown", "rate_limited",
                                                    "out_of_memory"};

static double clock_s(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Past pauses plus the one going on now, if any: the longest of the ingest threads' (they pause on the same full
 * ring, about together; a sum would count one wait once per thread). */
static double backpressure_s(ingest_stats *in, int64_t now_ns)
{
    double most = 0;
    for (; in; in = in->next_thread) {
        uint64_t since = stat_get(&in->paused_since_ns);
        uint64_t now = (uint64_t)now_ns;
        double s = (double)(stat_get(&in->backpressure_ns) + (since && now > since ? now - since : 0)) / 1e9;
        if (s > most)
            most = s;
    }
    return most;
}

/* Is some ingest thread paused (the ring full) now? */
static int any_paused(ingest_stats *in)
{
    for (; in; in = in->next_thread)
        if (stat_get(&in->paused_since_ns))
            return 1;
    return 0;
}

static void http_collect(http_stats *h, stats_view *v)
{
    v->http_enabled = h->enabled;
    v->http_requests = stat_get(&h->requests);
    for (size_t i = 0; i < STATS_HTTP_CODE_N; i++)
        v->http_responses[i] = stat_get(&h->responses[i]);
    v->http_records = stat_get(&h->records);
    v->http_body_bytes = stat_get(&h->body_bytes);
    v->http_refused_full = stat_get(&h->refused_full);
    v->http_refused_rate_limited = stat_get(&h->refused_rate_limited);
    v->http_conn_active = stat_get(&h->conn_active);
    v->http_conn_max_reached = stat_get(&h->conn_max_reached);
    v->http_timed_out = stat_get(&h->timed_out);
}

static void grpc_collect(otlp_grpc_stats *g, stats_view *v)
{
    v->grpc_enabled = g->enabled;
    v->grpc_calls = stat_get(&g->calls);
    for (size_t i = 0; i < STATS_GRPC_CODE_N; i++)
        v->grpc_responses[i] = stat_get(&g->responses[i]);
    v->grpc_records = stat_get(&g->records);
    v->grpc_request_bytes = stat_get(&g->request_bytes);
    v->grpc_refused_full = stat_get(&g->refused_full);
    v->grpc_refused_rate_limited = stat_get(&g->refused_rate_limited);
    v->grpc_conn_total = stat_get(&g->conn_total);
    v->grpc_conn_refused = stat_get(&g->conn_refused_not_allowed);
    v->grpc_conn_active = stat_get(&g->conn_active);
    v->grpc_conn_max_reached = stat_get(&g->conn_max_reached);
}

void stats_collect(const stats_sources *src, stats_view *v)
{
    ingest_stats *in = src->ingest;
    memset(v, 0, sizeof *v);
    double mono = clock_s(CLOCK_MONOTONIC);
    v->uptime_s = mono - src->start_mono;
    v->start_unix_s = clock_s(CLOCK_REALTIME) - v->uptime_s;
    v->now_ms = (int64_t)(mono * 1000.0);
    /* the flusher's first, then ingest's (summed over the ingest threads, which go on counting meanwhile): a record
     * is counted received before it is committed to the ring, so everything the flusher took is in the sum and
     * taken <= received below */
    flusher_snapshot_get(src->flusher, &v->f);
    uint64_t ring_received = STAT_SUM(in, received);
    uint64_t in_drop_shutdown = STAT_SUM(in, dropped_shutdown), in_drop_full = STAT_SUM(in, dropped_full);
    uint64_t in_drop_rate = STAT_SUM(in, dropped_rate_limited), in_drop_nomem = STAT_SUM(in, dropped_nomem);
    v->rejected[0] = STAT_SUM(in, malformed);
    v->rejected[1] = STAT_SUM(in, invalid_record);
    v->rejected[2] = STAT_SUM(in, oversized);
    v->rejected[3] = STAT_SUM(in, truncated);
    v->rejected[4] = STAT_SUM(in, reserved_key);
    v->level_unknown = STAT_SUM(in, level_unknown);
    v->timestamp_unparsed = STAT_SUM(in, timestamp_unparsed);
    v->bytes_received = STAT_SUM(in, bytes_received);
    v->conn_active = STAT_SUM(in, conn_active);
    v->conn_total = STAT_SUM(in, conn_total);
    v->conn_max_reached = STAT_SUM(in, conn_max_reached);
    v->conn_refused_not_allowed = STAT_SUM(in, conn_refused_not_allowed);
    v->conn_timed_out = STAT_SUM(in, conn_timed_out);
    v->conn_fd_limit_reached = STAT_SUM(in, conn_fd_limit_reached);
    v->mem_limit = in->mem.limit;
    v->mem_used = stat_get(&in->mem.used);
    v->mem_pauses = stat_get(&in->mem.pauses);
    v->mem_paused_now = stat_get(&in->mem.paused_now);
    uint64_t mem_since = stat_get(&in->mem.paused_since_ns), now_ns = (uint64_t)(mono * 1e9);
    v->mem_paused_s = (double)(stat_get(&in->mem.paused_ns) + (mem_since && now_ns > mem_since ? now_ns - mem_since : 0)) / 1e9;
    for (size_t i = 0; i < ACCEPT_ERR_N; i++)
        v->accept_errors[i] = stat_get(&in->accept_errors[i]);
    v->pauses = STAT_SUM(in, pauses);
    v->paused = any_paused(in);
    v->backpressure_s = backpressure_s(in, (int64_t)(mono * 1e9));
    if (in->clients) {
        v->clients_tracked = clients_tracked(in->clients);
        v->clients_evicted = clients_evicted(in->clients);
    }
    http_collect(&in->http, v);
    grpc_collect(&in->otlp_grpc, v);
    v->fwd_messages = STAT_SUM(in, fwd_messages);
    v->fwd_events = STAT_SUM(in, fwd_events);
    v->fwd_acks = STAT_SUM(in, fwd_acks);
    v->fwd_acks_failed = STAT_SUM(in, fwd_acks_failed);
    v->received = ring_received + in_drop_shutdown + in_drop_full + in_drop_rate + in_drop_nomem;
    v->in_ring = ring_received - v->f.taken;
    v->dropped[0] = v->f.dropped_buffer_full + in_drop_full;
    v->dropped[1] = v->f.dropped_upstream;
    v->dropped[2] = v->f.dropped_retry_expired;
    v->dropped[3] = v->f.dropped_spool_corrupt;
    v->dropped[4] = v->f.dropped_shutdown + in_drop_shutdown;
    v->dropped[5] = in_drop_rate;
    v->dropped[6] = in_drop_nomem;
    v->ring_used = ring_used_bytes(src->ring);
    v->ring_capacity = ring_capacity(src->ring);
}

/* An append-only text buffer that remembers whether anything did not fit. */
typedef struct textbuf {
    char *buf;
    size_t cap, len;
    int overflow;
} textbuf;

static void put(textbuf *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(textbuf *t, const char *fmt, ...)
{
    if (t->overflow)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(t->buf + t->len, t->cap - t->len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= t->cap - t->len)
        t->overflow = 1;
    else
        t->len += (size_t)n;
}

/* "name":{"a":1,"b":2} from parallel arrays of names and values. */
static void put_map(textbuf *t, const char *name, const char *const *names, const uint64_t *vals, size_t n)
{
    put(t, "\"%s\":{", name);
    for (size_t i = 0; i < n; i++)
        put(t, "%s\"%s\":%llu", i ? "," : "", names[i], (unsigned long long)vals[i]);
    put(t, "}");
}

static const char *on_full_name(int on_full)
{
    return on_full == FULL_BLOCK ? "block" : on_full == FULL_DROP_NEWEST ? "drop-newest" : "drop-oldest";
}

static void put_records(textbuf *t, const stats_view *v)
{
    const flusher_snapshot *f = &v->f;
    put(t, "\"records\":{\"received\":%llu,\"flushed\":%llu,\"in_ring\":%llu,\"batching\":%llu,\"in_flight\":%llu,"
           "\"retry_wait\":%llu,\"spooled\":%llu,\"replayed\":%llu,\"dead_letter\":%llu,",
        (unsigned long long)v->received, (unsigned long long)f->flushed, (unsigned long long)v->in_ring,
        (unsigned long long)f->batching, (unsigned long long)f->in_flight, (unsigned long long)f->retry_wait,
        (unsigned long long)f->spooled, (unsigned long long)f->replayed, (unsigned long long)f->dead_letter);
    put_map(t, "rejected", stats_reject_names, v->rejected, STATS_REJECT_N);
    put(t, ",");
    put_map(t, "dropped", stats_drop_names, v->dropped, STATS_DROP_N);
    put(t, ",\"level_unknown\":%llu,\"timestamp_unparsed\":%llu},", (unsigned long long)v->level_unknown,
        (unsigned long long)v->timestamp_unparsed);
}

static void put_upstream(textbuf *t, const stats_view *v, const config *cfg)
{
    const flusher_snapshot *f = &v->f;
    char err[420], target[520];
    json_str_escape(err, sizeof err, f->last_error, strlen(f->last_error));
    json_str_escape(target, sizeof target, cfg->upstream, strlen(cfg->upstream));
    double failing_s = f->failing && f->failing_since_ms ? (double)(v->now_ms - f->failing_since_ms) / 1000.0 : 0;
    put(t, "\"batches\":{\"sent\":%llu,\"failed\":%llu,\"retried\":%llu,\"unary_calls\":%llu},"
           "\"upstream\":{\"state\":\"%s\",\"protocol\":\"%s\",\"mode\":\"%s\",\"compression\":\"%s\",\"target\":\"%s\","
           "\"last_error\":\"%s\",\"failing_seconds\":%.3f,\"instances\":[",
        (unsigned long long)f->batches_sent, (unsigned long long)f->batches_failed,
        (unsigned long long)f->batches_retried, (unsigned long long)f->unary_calls, f->failing ? "failing" : "ok",
        cfg->upstream_protocol == PROTOCOL_OTLP ? "otlp" : "logagent",
        cfg->upstream_protocol == PROTOCOL_OTLP ? "export" : f->unary ? "unary" : "batch",
        cfg->upstream_compression != COMPRESSION_GZIP ? "none" : f->gzip_refused ? "gzip_refused" : "gzip", target, err,
        failing_s < 0 ? 0 : failing_s);
    for (unsigned i = 0; i < f->n_inst; i++) { /* each instance of the fleet that calls reached */
        const flusher_instance *in = &f->inst[i];
        char addr[400];
        json_str_escape(addr, sizeof addr, in->address, strlen(in->address));
        put(t, "%s{\"address\":\"%s\",\"calls\":%llu,\"failures\":%llu,\"seconds\":%.6f,"
               "\"latency_ms\":{\"p50\":%g,\"p90\":%g,\"p99\":%g}}", i ? "," : "", addr,
            (unsigned long long)in->calls, (unsigned long long)in->failures, in->seconds,
            flusher_lat_quantile_ms(in->lat, 0.50), flusher_lat_quantile_ms(in->lat, 0.90),
            flusher_lat_quantile_ms(in->lat, 0.99));
    }
    put(t, "]},");
}

static void put_spool(textbuf *t, const stats_view *v, const config *cfg)
{
    const spool_stats *s = &v->f.spool;
    put(t, "\"spool\":{\"enabled\":%s,\"bytes\":%llu,\"max_bytes\":%llu,\"segments\":%llu,\"corrupt_frames\":%llu,"
           "\"torn_bytes\":%llu,\"dead_letter_batches\":%llu,\"read_errors\":%llu,\"disk_full\":%s,"
           "\"disk_full_episodes\":%llu,\"write_errors\":%llu,\"fsync_errors\":%llu,\"dead_letter_bytes\":%llu,"
           "\"dead_letter_max_bytes\":%llu,\"dead_letter_evicted_records\":%llu},",
        v->f.has_spool ? "true" : "false", (unsigned long long)s->bytes,
        (unsigned long long)(v->f.has_spool ? cfg->spool_max_bytes : 0), (unsigned long long)s->segments,
        (unsigned long long)s->corrupt_frames, (unsigned long long)s->torn_bytes,
        (unsigned long long)s->dead_letter_batches, (unsigned long long)s->read_errors,
        s->disk_full ? "true" : "false", (unsigned long long)s->disk_full_episodes,
        (unsigned long long)s->write_errors, (unsigned long long)s->fsync_errors,
        (unsigned long long)s->dead_letter_bytes,
        (unsigned long long)(v->f.has_spool ? cfg->deadletter_max_bytes : 0),
        (unsigned long long)s->dead_letter_evicted_records);
}

static void put_http(textbuf *t, const stats_view *v)
{
    put(t, "\"http\":{\"enabled\":%s,\"requests\":%llu,\"records\":%llu,\"body_bytes\":%llu,"
           "\"refused_full\":%llu,\"refused_rate_limited\":%llu,\"connections\":{\"active\":%llu,"
           "\"max_reached\":%llu,\"timed_out\":%llu},\"responses\":{", v->http_enabled ? "true" : "false",
        (unsigned long long)v->http_requests, (unsigned long long)v->http_records,
        (unsigned long long)v->http_body_bytes, (unsigned long long)v->http_refused_full,
        (unsigned long long)v->http_refused_rate_limited, (unsigned long long)v->http_conn_active,
        (unsigned long long)v->http_conn_max_reached, (unsigned long long)v->http_timed_out);
    for (size_t i = 0; i < STATS_HTTP_CODE_N; i++)
        put(t, "%s\"%d\":%llu", i ? "," : "", stats_http_codes[i], (unsigned long long)v->http_responses[i]);
    put(t, "}},");
}

static void put_grpc(textbuf *t, const stats_view *v)
{
    put(t, "\"otlp_grpc\":{\"enabled\":%s,\"calls\":%llu,\"records\":%llu,\"request_bytes\":%llu,"
           "\"refused_full\":%llu,\"refused_rate_limited\":%llu,\"connections\":{\"total\":%llu,"
           "\"active\":%llu,\"max_reached\":%llu,\"refused_not_allowed\":%llu},\"responses\":{",
        v->grpc_enabled ? "true" : "false", (unsigned long long)v->grpc_calls, (unsigned long long)v->grpc_records,
        (unsigned long long)v->grpc_request_bytes, (unsigned long long)v->grpc_refused_full,
        (unsigned long long)v->grpc_refused_rate_limited, (unsigned long long)v->grpc_conn_total,
        (unsigned long long)v->grpc_conn_active, (unsigned long long)v->grpc_conn_max_reached,
        (unsigned long long)v->grpc_conn_refused);
    for (size_t i = 0; i < STATS_GRPC_CODE_N; i++)
        put(t, "%s\"%s\":%llu", i ? "," : "", stats_grpc_code_names[i], (unsigned long long)v->grpc_responses[i]);
    put(t, "}},");
}

int stats_view_json(const stats_view *v, const config *cfg, char *buf, size_t cap)
{
    const flusher_snapshot *f = &v->f;
    textbuf t = {buf, cap, 0, cap == 0};
    put(&t, "{\"uptime_seconds\":%.3f,", v->uptime_s);
    put_records(&t, v);
    put(&t, "\"bytes_received\":%llu,\"connections\":{\"active\":%llu,\"total\":%llu,"
            "\"max_reached\":%llu,\"refused\":{\"not_allowed\":%llu},\"timed_out\":%llu,\"fd_limit_reached\":%llu,"
            "\"accept_errors\":{\"emfile\":%llu,\"nomem\":%llu,\"other\":%llu}},"
            "\"ring\":{\"used_bytes\":%zu,\"capacity_bytes\":%zu},"
            "\"buffer\":{\"limit_bytes\":%llu,\"batch_bytes\":%llu,\"batch_budget_bytes\":%llu,\"on_full\":\"%s\"},",
        (unsigned long long)v->bytes_received, (unsigned long long)v->conn_active, (unsigned long long)v->conn_total,
        (unsigned long long)v->conn_max_reached, (unsigned long long)v->conn_refused_not_allowed,
        (unsigned long long)v->conn_timed_out, (unsigned long long)v->conn_fd_limit_reached,
        (unsigned long long)v->accept_errors[ACCEPT_ERR_EMFILE], (unsigned long long)v->accept_errors[ACCEPT_ERR_NOMEM],
        (unsigned long long)v->accept_errors[ACCEPT_ERR_OTHER], v->ring_used, v->ring_capacity, (unsigned long long)cfg->buffer_bytes, (unsigned long long)f->held_bytes,
        (unsigned long long)f->batch_budget, on_full_name(cfg->on_full));
    put_upstream(&t, v, cfg);
    put(&t, "\"backpressure_seconds\":%.3f,\"backpressure_pauses\":%llu,\"backpressure_active\":%s,",
        v->backpressure_s, (unsigned long long)v->pauses, v->paused ? "true" : "false");
    put(&t, "\"memory\":{\"limit_bytes\":%llu,\"used_bytes\":%llu,\"pauses\":%llu,\"paused_connections\":%llu,"
            "\"paused_seconds\":%.3f},",
        (unsigned long long)v->mem_limit, (unsigned long long)v->mem_used, (unsigned long long)v->mem_pauses,
        (unsigned long long)v->mem_paused_now, v->mem_paused_s);
    put_spool(&t, v, cfg);
    put_http(&t, v);
    put_grpc(&t, v);
    put(&t, "\"forward\":{\"messages\":%llu,\"events\":%llu,\"acks\":%llu,\"acks_failed\":%llu},",
        (unsigned long long)v->fwd_messages, (unsigned long long)v->fwd_events, (unsigned long long)v->fwd_acks,
        (unsigned long long)v->fwd_acks_failed);
    put(&t, "\"clients\":{\"tracked\":%llu,\"evicted\":%llu},", (unsigned long long)v->clients_tracked,
        (unsigned long long)v->clients_evicted);
    put(&t, "\"flush_latency_ms\":{\"p50\":%g,\"p90\":%g,\"p99\":%g}}\n", f->latency_ms[0], f->latency_ms[1],
        f->latency_ms[2]);
    return t.overflow ? -ENOSPC : (int)t.len;
}

int stats_json(const stats_sources *src, char *buf, size_t cap)
{
    stats_view v;
    stats_collect(src, &v);
    return stats_view_json(&v, src->cfg, buf, cap);
}
