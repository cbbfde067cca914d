/* metrics.c — the Prometheus text exposition (format 0.0.4) of a stats_view (see metrics.h).
 *
 * Written family by family: HELP and TYPE, then its samples. Label values are escaped (\\, \", \n); histogram
 * buckets come from the flusher's per-range counts, summed here into cumulative `le` buckets. */
#include "metrics.h"

#include "acceptguard.h"

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

typedef struct writer {
    struct evbuffer *out;
    int err;
} writer;

static void put(writer *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(writer *w, const char *fmt, ...)
{
    if (w->err)
        return;
    va_list ap;
    va_start(ap, fmt);
    if (evbuffer_add_vprintf(w->out, fmt, ap) < 0)
        w->err = -ENOMEM;
    va_end(ap);
}

static void family(writer *w, const char *name, const char *type, const char *help)
{
    put(w, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void sample(writer *w, const char *name, const char *labels, uint64_t v)
{
    put(w, "%s%s%s%s %llu\n", name, labels ? "{" : "", labels ? labels : "", labels ? "}" : "", (unsigned long long)v);
}

/* v as the shortest text that reads back (strtod) as v itself: 15, 16 or 17 significant digits. */
static const char *exact(char *buf, size_t cap, double v)
{
    for (int digits = 15; digits <= 17; digits++) {
        snprintf(buf, cap, "%.*g", digits, v);
        if (strtod(buf, NULL) == v)
            break;
    }
    return buf;
}

static void sample_f(writer *w, const char *name, const char *labels, double v)
{
    char num[32];
    put(w, "%s%s%s%s %s\n", name, labels ? "{" : "", labels ? labels : "", labels ? "}" : "", exact(num, sizeof num, v));
}

/* A family with one unlabelled sample. */
static void one(writer *w, const char *name, const char *type, const char *help, uint64_t v)
{
    family(w, name, type, help);
    sample(w, name, NULL, v);
}

static void one_f(writer *w, const char *name, const char *type, const char *help, double v)
{
    family(w, name, type, help);
    sample_f(w, name, NULL, v);
}

/* A family with one sample per reason: name{reason="..."}. */
static void by_reason(writer *w, const char *name, const char *type, const char *help, const char *const *names,
                      const uint64_t *vals, size_t n)
{
    family(w, name, type, help);
    for (size_t i = 0; i < n; i++) {
        char labels[96];
        snprintf(labels, sizeof labels, "reason=\"%s\"", names[i]);
        sample(w, name, labels, vals[i]);
    }
}

/* Escapes a label value: backslash, double quote and newline. */
static void label_escape(char *out, size_t cap, const char *s)
{
    size_t o = 0;
    for (; *s && o + 3 < cap; s++) {
        if (*s == '\\' || *s == '"' || *s == '\n') {
            out[o++] = '\\';
            out[o++] = *s == '\n' ? 'n' : *s;
        } else {
            out[o++] = *s;
        }
    }
    out[o] = 0;
}

/* One series of a histogram: per-range counts (n bounds, counts[n] above the last) into cumulative buckets, with
 * `labels` (NULL: none) before `le` and on _sum and _count. */
static void histogram_series(writer *w, const char *name, const char *labels, const double *bounds, double scale,
                             const uint64_t *counts, size_t n, double sum, uint64_t count)
{
    char bucket[96], le[320], tail[96];
    snprintf(bucket, sizeof bucket, "%s_bucket", name);
    const char *sep = labels ? "," : "";
    labels = labels ? labels : "";
    uint64_t cum = 0;
    for (size_t i = 0; i < n; i++) {
        cum += counts[i];
        snprintf(le, sizeof le, "%s%sle=\"%.9g\"", labels, sep, bounds[i] * scale);
        sample(w, bucket, le, cum);
    }
    snprintf(le, sizeof le, "%s%sle=\"+Inf\"", labels, sep);
    sample(w, bucket, le, cum + counts[n]);
    snprintf(tail, sizeof tail, "%s_sum", name);
    sample_f(w, tail, labels[0] ? labels : NULL, sum);
    snprintf(tail, sizeof tail, "%s_count", name);
    sample(w, tail, labels[0] ? labels : NULL, count);
}

/* A histogram family with one unlabelled series. */
static void histogram(writer *w, const char *name, const char *help, const double *bounds, double scale,
                      const uint64_t *counts, size_t n, double sum, uint64_t count)
{
    family(w, name, "histogram", help);
    histogram_series(w, name, NULL, bounds, scale, counts, n, sum, count);
}

static void records(writer *w, const stats_view *v)
{
    const flusher_snapshot *f = &v->f;
    one(w, "logagent_records_received_total", "counter",
        "Records accepted from clients: queued in the ring, or dropped at ingest (drop-newest, shutdown).",
        v->received);
    one(w, "logagent_records_flushed_total", "counter", "Records acknowledged by the log service.", f->flushed);
    by_reason(w, "logagent_records_rejected_total", "counter", "Records refused at ingest as bad client input, by reason.",
              stats_reject_names, v->rejected, STATS_REJECT_N - 1); /* the last, reserved_key, counts keys: below */
    one(w, "logagent_reserved_keys_removed_total", "counter",
        "Keys starting with _ removed from records the agent took (a key, not a record, each).",
        v->rejected[STATS_REJECT_N - 1]);
    by_reason(w, "logagent_records_dropped_total", "counter", "Records lost, by reason.", stats_drop_names,
              v->dropped, STATS_DROP_N);
    one(w, "logagent_records_dead_letter_total", "counter",
        "Records refused by the log service and written to the spool's deadletter.log.", f->dead_letter);
    one(w, "logagent_records_replayed_total", "counter",
        "Records found in the spool at start-up (received by an earlier run).", f->replayed);
    one(w, "logagent_records_level_unknown_total", "counter", "Records whose level was kept as sent (not a known level).",
        v->level_unknown);
    one(w, "logagent_records_timestamp_unparsed_total", "counter",
        "Records whose timestamp did not parse (kept in metadata; the agent's receive time used).", v->timestamp_unparsed);
    family(w, "logagent_records_held", "gauge", "Records in the agent now, by where they are.");
    const char *where[] = {"ring", "batching", "in_flight", "retry_wait", "spooled"};
    uint64_t held[] = {v->in_ring, f->batching, f->in_flight, f->retry_wait, f->spooled};
    for (size_t i = 0; i < 5; i++) {
        char labels[48];
        snprintf(labels, sizeof labels, "stage=\"%s\"", where[i]);
        sample(w, "logagent_records_held", labels, held[i]);
    }
}

static void ingest_side(writer *w, const stats_view *v, const config *cfg)
{
    one(w, "logagent_received_bytes_total", "counter", "Raw bytes read from client connections.", v->bytes_received);
    one(w, "logagent_connections_total", "counter", "Client connections accepted.", v->conn_total);
    one(w, "logagent_connections_active", "gauge", "Client connections open now.", v->conn_active);
    static const char *const refused_names[] = {"not_allowed"};
    uint64_t refused[] = {v->conn_refused_not_allowed};
    by_reason(w, "logagent_connections_refused_total", "counter",
              "Connections closed at accept, by reason (not_allowed: --allow-uids/--allow-gids).", refused_names,
              refused, 1);
    one(w, "logagent_connections_max_reached_total", "counter",
        "Times --max-connections stopped accepting (new connections waited in the listen backlog).",
        v->conn_max_reached);
    one(w, "logagent_connections_fd_limit_reached_total", "counter",
        "Times the open-file limit (below --max-connections) stopped accepting; new connections waited in the backlog.",
        v->conn_fd_limit_reached);
    by_reason(w, "logagent_accept_errors_total", "counter",
              "accept(2) failures on any listener, by reason (emfile: out of file descriptors; nomem: out of kernel "
              "memory); each paused that listener briefly.",
              acceptguard_reason_names, v->accept_errors, ACCEPT_ERR_N);
    one(w, "logagent_connections_timed_out_total", "counter",
        "Connections closed holding a partial record past --partial-record-timeout-ms.", v->conn_timed_out);
    one(w, "logagent_ring_used_bytes", "gauge", "Bytes of records in the ring now.", v->ring_used);
    one(w, "logagent_ring_capacity_bytes", "gauge", "Size of the ring.", v->ring_capacity);
    one(w, "logagent_buffer_limit_bytes", "gauge", "--buffer-bytes: memory for records (ring plus batches).",
        cfg->buffer_bytes);
    one(w, "logagent_buffer_batch_bytes", "gauge", "Bytes of batches in flight and waiting to retry now.",
        v->f.held_bytes);
    one(w, "logagent_buffer_batch_budget_bytes", "gauge", "What batches may hold: --buffer-bytes minus the ring.",
        v->f.batch_budget);
    one_f(w, "logagent_backpressure_seconds_total", "counter",
          "Time reading from clients was paused because the ring was full.", v->backpressure_s);
    one(w, "logagent_backpressure_pauses_total", "counter", "Times reading from clients was paused (ring full).",
        v->pauses);
    one(w, "logagent_backpressure_active", "gauge", "1 while reading from clients is paused (ring full).",
        (uint64_t)v->paused);
    one(w, "logagent_ingest_memory_limit_bytes", "gauge",
        "--ingest-memory-bytes: memory for partial records and pending HTTP bodies, all connections.", v->mem_limit);
    one(w, "logagent_ingest_memory_used_bytes", "gauge",
        "Memory held now for partial records and pending HTTP bodies (beyond 16 KiB per connection).", v->mem_used);
    one(w, "logagent_ingest_memory_pauses_total", "counter",
        "Times a connection stopped being read because --ingest-memory-bytes was reached.", v->mem_pauses);
    one(w, "logagent_ingest_memory_paused_connections", "gauge", "Connections not read now, waiting for memory.",
        v->mem_paused_now);
    one_f(w, "logagent_ingest_memory_paused_seconds_total", "counter",
          "Time some connection waited for memory (--ingest-memory-bytes).", v->mem_paused_s);
    one(w, "logagent_clients_tracked", "gauge", "Clients (pid, comm, service_name) in the /stats/clients table.",
        v->clients_tracked);
    one(w, "logagent_clients_evicted_total", "counter",
        "Idle clients removed from the /stats/clients table to make room.", v->clients_evicted);
}

static void forward_side(writer *w, const stats_view *v)
{
    one(w, "logagent_forward_messages_total", "counter",
        "Fluent Forward messages (top-level msgpack arrays) understood on the ingest socket.", v->fwd_messages);
    one(w, "logagent_forward_events_total", "counter",
        "Events of Forward messages handed to the record path (then counted like any record).", v->fwd_events);
    one(w, "logagent_forward_acks_total", "counter", "Forward chunk acks sent (all of a message's events in the ring).",
        v->fwd_acks);
    one(w, "logagent_forward_acks_failed_total", "counter",
        "Forward chunk acks that could not be sent (client not reading its acks, or gone).", v->fwd_acks_failed);
}

static void http_side(writer *w, const stats_view *v)
{
    one(w, "logagent_http_enabled", "gauge", "1 when records are taken as JSON over HTTP (--http-listen).",
        (uint64_t)v->http_enabled);
    family(w, "logagent_http_requests_total", "counter", "HTTP ingest requests answered, by status code.");
    for (size_t i = 0; i < STATS_HTTP_CODE_N; i++) {
        char labels[32];
        snprintf(labels, sizeof labels, "code=\"%d\"", stats_http_codes[i]);
        sample(w, "logagent_http_requests_total", labels, v->http_responses[i]);
    }
    one(w, "logagent_http_records_total", "counter",
        "Records accepted into the ring over HTTP (included in logagent_records_received_total).", v->http_records);
    one(w, "logagent_http_received_bytes_total", "counter", "HTTP ingest request body bytes read.",
        v->http_body_bytes);
    one(w, "logagent_http_records_refused_rate_limited_total", "counter",
        "HTTP records answered 429 for a sender over --rate-limit (the caller keeps them: not dropped).",
        v->http_refused_rate_limited);
    one(w, "logagent_http_connections_active", "gauge", "HTTP ingest connections open now.", v->http_conn_active);
    one(w, "logagent_http_connections_max_reached_total", "counter",
        "Times --http-max-connections stopped accepting (new HTTP connections waited in the listen backlog).",
        v->http_conn_max_reached);
    one(w, "logagent_http_connections_timed_out_total", "counter",
        "HTTP connections closed because a request took longer than --partial-record-timeout-ms as a whole.",
        v->http_timed_out);
    one(w, "logagent_http_records_refused_full_total", "counter",
        "HTTP records answered 503 because the buffer was full: not taken, still with the caller, not dropped.",
        v->http_refused_full);
}

static void grpc_side(writer *w, const stats_view *v)
{
    one(w, "logagent_otlp_grpc_enabled", "gauge", "1 when records are taken as OTLP over gRPC (--otlp-listen).",
        (uint64_t)v->grpc_enabled);
    family(w, "logagent_otlp_grpc_calls_total", "counter", "OTLP/gRPC Export calls answered, by gRPC status.");
    for (size_t i = 0; i < STATS_GRPC_CODE_N; i++) {
        char labels[48];
        snprintf(labels, sizeof labels, "code=\"%s\"", stats_grpc_code_names[i]);
        sample(w, "logagent_otlp_grpc_calls_total", labels, v->grpc_responses[i]);
    }
    one(w, "logagent_otlp_grpc_records_total", "counter",
        "Records accepted into the ring over OTLP/gRPC (included in logagent_records_received_total).",
        v->grpc_records);
    one(w, "logagent_otlp_grpc_received_bytes_total", "counter", "OTLP/gRPC request message bytes received.",
        v->grpc_request_bytes);
    one(w, "logagent_otlp_grpc_records_refused_full_total", "counter",
        "OTLP/gRPC records answered UNAVAILABLE because the buffer was full: still with the caller, not dropped.",
        v->grpc_refused_full);
    one(w, "logagent_otlp_grpc_records_refused_rate_limited_total", "counter",
        "OTLP/gRPC records answered RESOURCE_EXHAUSTED for a sender over --rate-limit: still with the caller.",
        v->grpc_refused_rate_limited);
    one(w, "logagent_otlp_grpc_connections_total", "counter", "OTLP/gRPC connections accepted.", v->grpc_conn_total);
    one(w, "logagent_otlp_grpc_connections_active", "gauge", "OTLP/gRPC connections open now.", v->grpc_conn_active);
    one(w, "logagent_otlp_grpc_connections_max_reached_total", "counter",
        "Times --otlp-max-connections stopped accepting (new OTLP/gRPC connections waited in the listen backlog).",
        v->grpc_conn_max_reached);
    one(w, "logagent_otlp_grpc_connections_refused_total", "counter",
        "OTLP/gRPC connections closed at accept: the peer is not in --allow-uids/--allow-gids.", v->grpc_conn_refused);
}

/* Per instance of the fleet (flusher_instance): calls and failures by gRPC's peer address, and the calls' latency
 * as one histogram series per address (its _count equals the calls). */
static void instance_side(writer *w, const stats_view *v)
{
    const flusher_snapshot *f = &v->f;
    static const char *const names[3] = {"logagent_upstream_instance_calls_total",
                                         "logagent_upstream_instance_failures_total",
                                         "logagent_upstream_instance_call_seconds"};
    static const char *const helps[3] = {
        "Upstream calls completed, by the instance that answered (--upstream-lb spreads them over a fleet).",
        "Upstream calls that failed, by instance (\"none\": the call reached no instance).",
        "Upstream call latency, send to answer, by instance (the buckets of logagent_flush_duration_seconds)."};
    for (int k = 0; k < 3; k++) {
        family(w, names[k], k < 2 ? "counter" : "histogram", helps[k]);
        for (unsigned i = 0; i < f->n_inst; i++) {
            const flusher_instance *in = &f->inst[i];
            char addr[200], labels[240];
            label_escape(addr, sizeof addr, in->address);
            snprintf(labels, sizeof labels, "address=\"%s\"", addr);
            if (k < 2)
                sample(w, names[k], labels, k == 0 ? in->calls : in->failures);
            else
                histogram_series(w, names[k], labels, flusher_lat_bounds_ms, 0.001, in->lat, FLUSHER_LAT_N,
                                 in->seconds, in->calls);
        }
    }
}

static void upstream_side(writer *w, const stats_view *v, const config *cfg)
{
    const flusher_snapshot *f = &v->f;
    one(w, "logagent_batches_sent_total", "counter", "Upstream calls (batches) answered with success.",
        f->batches_sent);
    one(w, "logagent_batches_failed_total", "counter", "Upstream calls (batches) that failed.", f->batches_failed);
    one(w, "logagent_batches_retried_total", "counter", "Batches sent again after a failure.", f->batches_retried);
    one(w, "logagent_unary_calls_total", "counter", "WriteLog calls completed (unary mode).", f->unary_calls);
    char target[300], labels[400];
    label_escape(target, sizeof target, cfg->upstream);
    snprintf(labels, sizeof labels, "mode=\"%s\",target=\"%s\"",
             cfg->upstream_protocol == PROTOCOL_OTLP ? "export" : f->unary ? "unary" : "batch", target);
    family(w, "logagent_upstream_up", "gauge", "1 when the last upstream call succeeded, 0 while calls fail.");
    sample(w, "logagent_upstream_up", labels, (uint64_t)!f->failing);
    double failing_s = f->failing && f->failing_since_ms ? (double)(v->now_ms - f->failing_since_ms) / 1000.0 : 0;
    one_f(w, "logagent_upstream_failing_seconds", "gauge",
          "How long upstream calls have been failing with no success in between (0 when up).",
          failing_s < 0 ? 0 : failing_s);
    histogram(w, "logagent_flush_duration_seconds", "Upstream call latency: a batch sent until its last answer.",
              flusher_lat_bounds_ms, 0.001, f->hist.lat, FLUSHER_LAT_N, f->hist.lat_sum_s, f->hist.count);
    histogram(w, "logagent_batch_records", "Records per batch sent upstream (one observation per completed call).",
              flusher_size_bounds, 1, f->hist.size, FLUSHER_SIZE_N, (double)f->hist.size_sum, f->hist.count);
    histogram(w, "logagent_batch_bytes", "Bytes per batch sent upstream (one observation per completed call).",
              flusher_bytes_bounds, 1, f->hist.bytes, FLUSHER_BYTES_N, (double)f->hist.bytes_sum, f->hist.count);
}

static void spool_side(writer *w, const stats_view *v, const config *cfg)
{
    const flusher_snapshot *f = &v->f;
    one(w, "logagent_spool_enabled", "gauge", "1 when a spool folder is in use (--spool-dir).", (uint64_t)f->has_spool);
    one(w, "logagent_spool_bytes", "gauge", "Bytes in the spool's segment files now.", f->spool.bytes);
    one(w, "logagent_spool_max_bytes", "gauge", "--spool-max-bytes (0 without a spool).",
        f->has_spool ? cfg->spool_max_bytes : 0);
    one(w, "logagent_spool_segments", "gauge", "Spool segment files now.", f->spool.segments);
    one(w, "logagent_spool_corrupt_frames_total", "counter", "Spool frames skipped at start-up (bad CRC).",
        f->spool.corrupt_frames);
    one(w, "logagent_spool_torn_bytes_total", "counter", "Bytes cut off torn spool segment tails at start-up.",
        f->spool.torn_bytes);
    one(w, "logagent_spool_dead_letter_batches_total", "counter", "Batches written to deadletter.log.",
        f->spool.dead_letter_batches);
    one(w, "logagent_spool_read_errors_total", "counter", "Spooled batches that failed their CRC when read back.",
        f->spool.read_errors);
    one(w, "logagent_spool_disk_full", "gauge",
        "1 while the spool's filesystem is full (ENOSPC/EDQUOT): batches wait in memory, --on-full applies.",
        f->spool.disk_full);
    one(w, "logagent_spool_disk_full_episodes_total", "counter", "Times the spool's filesystem was found full.",
        f->spool.disk_full_episodes);
    one(w, "logagent_spool_write_errors_total", "counter",
        "Spool appends that failed for another reason than a full filesystem (EIO, EROFS, ...).",
        f->spool.write_errors);
    one(w, "logagent_spool_fsync_errors_total", "counter", "fdatasync failures on spool and dead-letter files.",
        f->spool.fsync_errors);
    one(w, "logagent_spool_dead_letter_bytes", "gauge", "Bytes in deadletter.log and deadletter.log.1 now.",
        f->spool.dead_letter_bytes);
    one(w, "logagent_spool_dead_letter_max_bytes", "gauge", "--deadletter-max-bytes (0 without a spool).",
        f->has_spool ? cfg->deadletter_max_bytes : 0);
    one(w, "logagent_spool_dead_letter_evicted_records_total", "counter",
        "Records dropped from the dead-letter files to stay under --deadletter-max-bytes (oldest first).",
        f->spool.dead_letter_evicted_records);
}

static void agent_side(writer *w, const stats_view *v, const health_report *h)
{
    one(w, "logagent_healthy", "gauge", "1 when /healthz answers 200, 0 when it answers 503.", (uint64_t)!h->reasons);
    family(w, "logagent_unhealthy", "gauge", "1 for each reason /healthz currently answers 503.");
    for (size_t i = 0; i < HEALTH_REASON_N; i++) {
        char labels[64];
        snprintf(labels, sizeof labels, "reason=\"%s\"", health_reason_names[i]);
        sample(w, "logagent_unhealthy", labels, (uint64_t)!!(h->reasons & (1u << i)));
    }
    one_f(w, "logagent_uptime_seconds", "gauge", "Seconds since the agent started.", v->uptime_s);
    one_f(w, "logagent_start_time_seconds", "gauge", "When the agent started, in unix seconds.", v->start_unix_s);
    family(w, "logagent_build_info", "gauge", "Always 1; the version is in the label.");
    sample(w, "logagent_build_info", "version=\"" LOGAGENT_VERSION_STRING "\"", 1);
}

/* The standard process_* families (Prometheus client libraries' names), from /proc/self: a scraper's usual
 * CPU, memory and fd panels work on the agent as on any process. */
static void process_side(writer *w, const stats_view *v)
{
    unsigned long utime = 0, stime = 0, vsize = 0;
    long rss = 0;
    FILE *f = fopen("/proc/self/stat", "r");
    if (f) {
        char buf[1024];
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        buf[n] = 0;
        const char *p = strrchr(buf, ')'); /* comm may hold spaces: fields after it, from the 3rd (state) */
        if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu %*d %*d %*d %*d %*d %*d %*u %lu %ld",
                         &utime, &stime, &vsize, &rss) != 4)
            utime = stime = vsize = 0, rss = 0;
        fclose(f);
    }
    double tick = (double)sysconf(_SC_CLK_TCK);
    long page = sysconf(_SC_PAGESIZE);
    one_f(w, "process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.",
          tick > 0 ? (double)(utime + stime) / tick : 0);
    one(w, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.", (uint64_t)rss * (uint64_t)page);
    one(w, "process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.", vsize);
    uint64_t fds = 0;
    DIR *d = opendir("/proc/self/fd");
    for (struct dirent *e; d && (e = readdir(d)) != NULL;)
        fds += e->d_name[0] != '.';
    if (d)
        closedir(d);
    one(w, "process_open_fds", "gauge", "Number of open file descriptors.", fds ? fds - 1 : 0); /* not opendir's */
    struct rlimit rl;
    one(w, "process_max_fds", "gauge", "Maximum number of open file descriptors.",
        getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY ? (uint64_t)rl.rlim_cur : 0);
    one_f(w, "process_start_time_seconds", "gauge", "Start time of the process since unix epoch in seconds.",
          v->start_unix_s);
}

int metrics_render(const stats_view *v, const config *cfg, const health_report *h, struct evbuffer *out)
{
    writer w = {out, 0};
    records(&w, v);
    ingest_side(&w, v, cfg);
    http_side(&w, v);
    grpc_side(&w, v);
    instance_side(&w, v);
    forward_side(&w, v);
    upstream_side(&w, v, cfg);
    spool_side(&w, v, cfg);
    agent_side(&w, v, h);
    process_side(&w, v);
    return w.err;
}
