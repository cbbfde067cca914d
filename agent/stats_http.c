/* stats_http.c — /stats over evhttp on a Unix socket (see stats_http.h).
 *
 * The JSON is built from one ingest read (this thread is ingest's thread, so those counters are stable here)
 * and one flusher snapshot (taken under the flusher's accounting mutex), so the accounting identity
 *   received = flushed + in_ring + batching + in_flight + retry_wait + spooled + sum(dropped)
 * holds exactly in every document. */
#include "stats_http.h"

#include "log.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/http.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

struct stats_http {
    struct evhttp *http;
    stats_sources src;
    char path[108]; /* "" when systemd owns the socket file */
};

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void json_escape(char *out, size_t cap, const char *s)
{
    size_t o = 0;
    for (; *s && o + 7 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            out[o++] = '\\';
            out[o++] = (char)c;
        } else if (c < 0x20) {
            o += (size_t)snprintf(out + o, cap - o, "\\u%04x", c);
        } else {
            out[o++] = (char)c;
        }
    }
    out[o] = 0;
}

/* Past pauses plus the one going on now, if any. */
static double backpressure_s(ingest_stats *in)
{
    uint64_t since = stat_get(&in->paused_since_ns), now = (uint64_t)(mono_s() * 1e9);
    return (double)(stat_get(&in->backpressure_ns) + (since && now > since ? now - since : 0)) / 1e9;
}

int stats_json(const stats_sources *src, char *buf, size_t cap)
{
    ingest_stats *in = src->ingest;
    uint64_t received = stat_get(&in->received);
    uint64_t in_drop_shutdown = stat_get(&in->dropped_shutdown);
    uint64_t in_drop_full = stat_get(&in->dropped_full);
    flusher_snapshot f;
    flusher_snapshot_get(src->flusher, &f);
    char err[420];
    json_escape(err, sizeof err, f.last_error);
    const char *state = f.failing ? "failing" : "ok";
    int n = snprintf(buf, cap,
        "{\"uptime_seconds\":%.3f,"
        "\"records\":{\"received\":%llu,\"flushed\":%llu,\"in_ring\":%llu,\"batching\":%llu,\"in_flight\":%llu,"
        "\"retry_wait\":%llu,\"spooled\":%llu,\"replayed\":%llu,\"dead_letter\":%llu,"
        "\"rejected\":{\"malformed\":%llu,\"invalid_record\":%llu,\"oversized\":%llu,\"truncated\":%llu,"
        "\"reserved_key\":%llu},"
        "\"dropped\":{\"buffer_full\":%llu,\"upstream_rejected\":%llu,\"retry_expired\":%llu,"
        "\"spool_corrupt\":%llu,\"shutdown\":%llu},"
        "\"level_unknown\":%llu},"
        "\"bytes_received\":%llu,"
        "\"connections\":{\"active\":%llu,\"total\":%llu},"
        "\"ring\":{\"used_bytes\":%zu,\"capacity_bytes\":%zu},"
        "\"buffer\":{\"limit_bytes\":%llu,\"batch_bytes\":%llu,\"batch_budget_bytes\":%llu,\"on_full\":\"%s\"},"
        "\"batches\":{\"sent\":%llu,\"failed\":%llu,\"retried\":%llu,\"unary_calls\":%llu},"
        "\"upstream\":{\"state\":\"%s\",\"mode\":\"%s\",\"target\":\"%s\",\"last_error\":\"%s\"},"
        "\"backpressure_seconds\":%.3f,\"backpressure_pauses\":%llu,"
        "\"spool\":{\"enabled\":%s,\"bytes\":%llu,\"segments\":%llu,\"corrupt_frames\":%llu,\"torn_bytes\":%llu,"
        "\"dead_letter_batches\":%llu,\"read_errors\":%llu},"
        "\"flush_latency_ms\":{\"p50\":%g,\"p90\":%g,\"p99\":%g}}\n",
        mono_s() - src->start_mono,
        (unsigned long long)(received + in_drop_shutdown + in_drop_full), (unsigned long long)f.flushed,
        (unsigned long long)(received - f.taken), (unsigned long long)f.batching, (unsigned long long)f.in_flight,
        (unsigned long long)f.retry_wait, (unsigned long long)f.spooled, (unsigned long long)f.replayed,
        (unsigned long long)f.dead_letter,
        (unsigned long long)stat_get(&in->malformed), (unsigned long long)stat_get(&in->invalid_record),
        (unsigned long long)stat_get(&in->oversized), (unsigned long long)stat_get(&in->truncated),
        (unsigned long long)stat_get(&in->reserved_key),
        (unsigned long long)(f.dropped_buffer_full + in_drop_full), (unsigned long long)f.dropped_upstream,
        (unsigned long long)f.dropped_retry_expired, (unsigned long long)f.dropped_spool_corrupt,
        (unsigned long long)(f.dropped_shutdown + in_drop_shutdown),
        (unsigned long long)stat_get(&in->level_unknown),
        (unsigned long long)stat_get(&in->bytes_received),
        (unsigned long long)stat_get(&in->conn_active), (unsigned long long)stat_get(&in->conn_total),
        ring_used_bytes(src->ring), ring_capacity(src->ring),
        (unsigned long long)src->cfg->buffer_bytes, (unsigned long long)f.held_bytes,
        (unsigned long long)f.batch_budget,
        src->cfg->on_full == FULL_BLOCK ? "block" : src->cfg->on_full == FULL_DROP_NEWEST ? "drop-newest" : "drop-oldest",
        (unsigned long long)f.batches_sent, (unsigned long long)f.batches_failed,
        (unsigned long long)f.batches_retried, (unsigned long long)f.unary_calls,
        state, f.unary ? "unary" : "batch", src->cfg->upstream, err,
        backpressure_s(in), (unsigned long long)stat_get(&in->pauses),
        f.has_spool ? "true" : "false", (unsigned long long)f.spool.bytes, (unsigned long long)f.spool.segments,
        (unsigned long long)f.spool.corrupt_frames, (unsigned long long)f.spool.torn_bytes,
        (unsigned long long)f.spool.dead_letter_batches, (unsigned long long)f.spool.read_errors,
        f.latency_ms[0], f.latency_ms[1], f.latency_ms[2]);
    return n > 0 && (size_t)n < cap ? n : -1;
}

static void on_stats(struct evhttp_request *req, void *arg)
{
    stats_http *h = arg;
    char buf[4096];
    int n = stats_json(&h->src, buf, sizeof buf);
    if (n < 0) {
        evhttp_send_error(req, HTTP_INTERNAL, "stats document too large");
        return;
    }
    struct evbuffer *out = evbuffer_new();
    if (!out) {
        evhttp_send_error(req, HTTP_INTERNAL, "out of memory");
        return;
    }
    evbuffer_add(out, buf, (size_t)n);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
    evhttp_send_reply(req, HTTP_OK, "OK", out);
    evbuffer_free(out);
}

static void on_other(struct evhttp_request *req, void *arg)
{
    evhttp_send_error(req, HTTP_NOTFOUND, "unknown path: try /stats");
}

stats_http *stats_http_new(struct event_base *base, const char *path, int given_fd, const stats_sources *src)
{
    stats_http *h = calloc(1, sizeof *h);
    if (!h)
        return NULL;
    h->src = *src;
    if (given_fd >= 0) {
        if (!(h->http = evhttp_new(base)) || (evutil_make_socket_nonblocking(given_fd), 0) ||
            !evhttp_accept_socket_with_handle(h->http, given_fd)) {
            log_write(LOG_ERROR, "\"socket activation: cannot serve the stats fd\" fd=%d", given_fd);
            if (h->http)
                evhttp_free(h->http);
            free(h);
            return NULL;
        }
        evhttp_set_allowed_methods(h->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
        evhttp_set_cb(h->http, "/stats", on_stats, h);
        evhttp_set_gencb(h->http, on_other, h);
        return h;
    }
    snprintf(h->path, sizeof h->path, "%s", path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    snprintf(sun.sun_path, sizeof sun.sun_path, "%s", path);
    unlink(path); /* the ingest socket's liveness check already ran: a leftover here is ours */
    mode_t old = umask(0177); /* 0600 from birth */
    int rc = fd < 0 ? -1 : bind(fd, (struct sockaddr *)&sun, sizeof sun);
    int err = errno;
    umask(old);
    if (rc < 0 || listen(fd, 64) < 0 || !(h->http = evhttp_new(base))) {
        log_write(LOG_ERROR, "\"cannot listen on the stats socket\" socket=%s error=\"%s\"", path,
                  strerror(rc < 0 ? err : errno));
        if (fd >= 0)
            close(fd);
        free(h);
        return NULL;
    }
    evhttp_set_allowed_methods(h->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
    evhttp_set_cb(h->http, "/stats", on_stats, h);
    evhttp_set_gencb(h->http, on_other, h);
    if (!evhttp_accept_socket_with_handle(h->http, fd)) {
        log_write(LOG_ERROR, "\"cannot serve the stats socket\" socket=%s", path);
        evhttp_free(h->http);
        close(fd);
        free(h);
        return NULL;
    }
    return h;
}

void stats_http_free(stats_http *h)
{
    if (!h)
        return;
    evhttp_free(h->http);
    if (h->path[0])
        unlink(h->path);
    free(h);
}
