/* http_ingest.c — the HTTP/JSON ingest over evhttp: listening, routing, one request's records into the ring, and the
 * JSON answers (see http_ingest.h; the body -> records part is http_json.c; POST /v1/logs, OTLP/HTTP, is
 * http_otlp.c, which shares this file's state and helpers through http_ingest_internal.h).
 *
 * DESIGN
 * evhttp hands us a request once its body is complete; everything then happens in that one callback, on the main
 * loop thread: the body is split into entries (http_json_parse), each entry is encoded (record_encode, the socket's
 * own mapping) and goes through the socket's admission path (admit.h: the same checks, ring and counters; what
 * differs is that a record not taken stays the caller's), and the answer is sent. Nothing is held between
 * callbacks, so there is no per-request state to free at shutdown and a 200 is sent only for records already in
 * the ring.
 *
 * Order and fullness: a request's entries enter the ring in body order. Once one does not fit, none after it is
 * tried (they would overtake it): with --on-full block (and drop-oldest, which also asks the flusher to shed the
 * oldest) they are answered "buffer full, retry" and stay the caller's — not received, not dropped; with drop-newest
 * they are dropped and counted as the socket path counts them (admission decides and counts, this file answers).
 * While socket ingest is paused for backpressure the ring counts as full here too: clients already waiting get the
 * room first.
 *
 * Bodies: evhttp itself refuses (413, its own HTML page, connection closed, not counted here) a body announcing
 * more than twice --http-max-body-bytes; between the two we answer 413 with our JSON and count it. libevent 2.1 has
 * no hook to do better.
 *
 * Connections: http_conns.h counts them (--http-max-connections), charges the request each is reading to the shared
 * --ingest-memory-bytes (pausing its reading past it) and closes one whose request takes longer than
 * --partial-record-timeout-ms as a whole. The listener is guarded against accept(2) errors (acceptguard.h). */
#include "ingest/http_ingest_internal.h"

#include "flush/flusher.h"
#include "ingest/peer.h"
#include "jsonstr.h"
#include "sockpath.h"
#include "tcplisten.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define DROPPED_REASON "Service Unavailable (record dropped)"

enum { LISTEN_BACKLOG = 1024, DRAIN_QUIET_MS = 100, DRAIN_MAX_MS = 2000, IDLE_TIMEOUT_S = 30, RETRY_AFTER_S = 1 };

static int64_t clock_ns(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---- answers -------------------------------------------------------------------------------------------- */

/* Appends s[0..n) as a JSON string (quoted; invalid UTF-8 as U+FFFD). Returns 0 or -1. */
int http_put_string(struct evbuffer *out, const char *s, size_t n)
{
    char small[512];
    size_t cap = n * 6 + 1;
    char *buf = cap <= sizeof small ? small : malloc(cap);
    if (!buf)
        return -1;
    json_str_escape(buf, cap, s, n);
    int rc = evbuffer_add_printf(out, "\"%s\"", buf) < 0 ? -1 : 0;
    if (buf != small)
        free(buf);
    return rc;
}

size_t http_code_index(int code)
{
    for (size_t i = 0; i < STATS_HTTP_CODE_N; i++)
        if (stats_http_codes[i] == code)
            return i;
    return STATS_HTTP_CODE_N;
}

/* Sends body (JSON) with code and counts the answer. */
static void send_json(http_ingest *h, struct evhttp_request *req, int code, const char *reason, struct evbuffer *body)
{
    struct evkeyvalq *hd = evhttp_request_get_output_headers(req);
    evhttp_add_header(hd, "Content-Type", "application/json");
    evhttp_add_header(hd, "Cache-Control", "no-store");
    if ((code == 503 || code == 429) && strcmp(reason, DROPPED_REASON) != 0) /* a dropped record: do not resend */
        evhttp_add_header(hd, "Retry-After", "1");
    if (h->stopping)
        evhttp_add_header(hd, "Connection", "close");
    stat_add(&h->hs->requests, 1);
    size_t i = http_code_index(code);
    if (i < STATS_HTTP_CODE_N)
        stat_add(&h->hs->responses[i], 1);
    evhttp_send_reply(req, code, reason, body);
}

const char *http_reason_of(int code)
{
    switch (code) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 403: return "Forbidden";
    case 405: return "Method Not Allowed";
    case 413: return "Payload Too Large";
    case 415: return "Unsupported Media Type";
    case 429: return "Too Many Requests";
    case 503: return "Service Unavailable";
    default: return "Internal Server Error";
    }
}

/* An answer with no entries: write_log's shape, or write_logs' with empty lists. */
static void send_error(http_ingest *h, struct evhttp_request *req, int code, int many, const char *msg)
{
    struct evbuffer *body = evbuffer_new();
    int rc = body ? 0 : -1;
    if (rc == 0)
        rc = evbuffer_add_printf(body, many ? "{\"success\":false,\"accepted\":0,\"log_ids\":[],\"errors\":[],"
                                            : "{\"success\":false,\"log_id\":\"\",") < 0;
    if (rc == 0)
        rc = evbuffer_add_printf(body, "\"error_message\":") < 0 || http_put_string(body, msg, strlen(msg)) < 0 ||
             evbuffer_add_printf(body, "}\n") < 0;
    if (rc == 0)
        send_json(h, req, code, http_reason_of(code), body);
    else
        send_json(h, req, 500, "Internal Server Error", NULL);
    if (body)
        evbuffer_free(body);
}

/* The status of an answer: 200 when anything was accepted (or there was nothing to accept), else the outcome that
 * says best what to do: retry later (503), the agent's trouble (500), too large (413, all of them), or fix it (400). */
static int request_status(const request *rq)
{
    const size_t *o = rq->outcomes;
    if (o[OUT_OK] > 0 || rq->entries == 0)
        return 200;
    if (o[OUT_FULL] || o[OUT_DROPPED])
        return 503;
    if (o[OUT_LIMITED])
        return 429;
    if (o[OUT_NOMEM])
        return 500;
    return o[OUT_TOO_LARGE] == rq->entries ? 413 : 400;
}

static void send_result(request *rq)
{
    http_ingest *h = rq->h;
    int code = request_status(rq), many = rq->mode == HTTP_JSON_MANY;
    size_t refused = rq->entries - rq->outcomes[OUT_OK];
    char msg[sizeof rq->first_error + 128] = "";
    if (refused && many)
        snprintf(msg, sizeof msg, "%zu of %zu entries not accepted (see errors); the first: %s", refused, rq->entries,
                 rq->first_error);
    else if (refused)
        snprintf(msg, sizeof msg, "%s", rq->first_error);
    struct evbuffer *body = evbuffer_new();
    int rc = body ? 0 : -1;
    if (rc == 0 && many)
        rc = evbuffer_add_printf(body, "{\"success\":%s,\"accepted\":%zu,\"log_ids\":[", refused ? "false" : "true",
                                 rq->outcomes[OUT_OK]) < 0 || evbuffer_add_buffer(body, rq->ids) < 0 ||
             evbuffer_add_printf(body, "],\"errors\":[") < 0 || evbuffer_add_buffer(body, rq->errors) < 0 ||
             evbuffer_add_printf(body, "],") < 0;
    else if (rc == 0)
        rc = evbuffer_add_printf(body, "{\"success\":%s,\"log_id\":", refused ? "false" : "true") < 0 ||
             (evbuffer_get_length(rq->ids) ? evbuffer_add_buffer(body, rq->ids) : evbuffer_add(body, "\"\"", 2)) < 0 ||
             evbuffer_add(body, ",", 1) < 0;
    if (rc == 0)
        rc = evbuffer_add_printf(body, "\"error_message\":") < 0 || http_put_string(body, msg, strlen(msg)) < 0 ||
             evbuffer_add_printf(body, "}\n") < 0;
    int dropped_only = code == 503 && !rq->outcomes[OUT_FULL];
    if (rc == 0)
        send_json(h, rq->req, code, dropped_only ? DROPPED_REASON : http_reason_of(code), body);
    else
        send_error(h, rq->req, 500, many, "out of memory");
    if (body)
        evbuffer_free(body);
}

/* ---- entries -------------------------------------------------------------------------------------------- */

/* The client entry of this request's records of one service_name (NULL when there is no table or no memory). */
client_entry *http_request_client(request *rq, const char *service, size_t len)
{
    clients *t = rq->h->st->clients;
    if (!t)
        return NULL;
    if (!service) {
        service = "";
        len = 0;
    }
    size_t key = clients_key_len(service, len);
    if (rq->client && clients_same_service(rq->client, service, key))
        return rq->client;
    uint64_t serial = (1ULL << 63) | rq->h->serial; /* never a socket connection's serial */
    return rq->client = clients_attach(t, rq->client, &rq->src, serial, service, len, rq->mono_ns);
}

void http_log_refusal(request *rq, log_limit *l, const char *what, const char *detail)
{
    int64_t suppressed = log_limit_check(l, 10000);
    if (suppressed >= 0)
        log_write(LOG_WARN, "\"%s\" %s error=\"%.200s\" suppressed=%lld", what, rq->peer, detail,
                  (long long)suppressed);
}

/* Records what became of entry e in the answer. id: its log_id when accepted. Returns 0 or -ENOMEM. */
static int note(request *rq, const http_json_entry *e, enum outcome out, const char *error, const char *id,
                size_t id_len)
{
    rq->outcomes[out]++;
    if (out != OUT_OK && !rq->first_error[0])
        snprintf(rq->first_error, sizeof rq->first_error, "%s", error);
    int many = rq->mode == HTTP_JSON_MANY, rc = 0;
    if (many && e->index > 0)
        rc = evbuffer_add(rq->ids, ",", 1);
    if (rc == 0 && (many || out == OUT_OK))
        rc = http_put_string(rq->ids, out == OUT_OK ? id : "", out == OUT_OK ? id_len : 0);
    if (rc < 0 || out == OUT_OK || !many)
        return rc < 0 ? -ENOMEM : 0;
    struct evbuffer *b = rq->errors;
    rc = evbuffer_add_printf(b, "%s{\"index\":%zu,", evbuffer_get_length(b) ? "," : "", e->index) < 0;
    if (rc == 0 && e->line)
        rc = evbuffer_add_printf(b, "\"line\":%zu,", e->line) < 0;
    if (rc == 0)
        rc = evbuffer_add_printf(b, "\"error\":") < 0 || http_put_string(b, error, strlen(error)) < 0 ||
             evbuffer_add_printf(b, ",\"retryable\":%s}",
                                 out == OUT_FULL || out == OUT_NOMEM || out == OUT_LIMITED ? "true" : "false") < 0;
    return rc ? -ENOMEM : 0;
}

/* What admission did with an entry (admit.h counted and logged it), as the answer says it. */
static int answer_fate(request *rq, const http_json_entry *e, admit_fate fate, const record_info *info,
                       const char *invalid)
{
    http_ingest *h = rq->h;
    char why[160];
    switch (fate) {
    case ADMIT_QUEUED:
        return note(rq, e, OUT_OK, NULL, info->log_id, info->log_id_len);
    case ADMIT_INVALID:
        return note(rq, e, OUT_BAD, invalid, NULL, 0);
    case ADMIT_OVERSIZED:
        snprintf(why, sizeof why, "record too large once converted (more than %zu bytes: --batch-max-bytes minus "
                 "256, or a quarter of the ring)", h->enc.text_limit);
        return note(rq, e, OUT_TOO_LARGE, why, NULL, 0);
    case ADMIT_RATE_LIMITED:
        return note(rq, e, OUT_LIMITED, "over --rate-limit: not taken, retry later", NULL, 0);
    case ADMIT_DROPPED_FULL:
        rq->full = 1; /* none after it is tried: they would overtake it */
        return note(rq, e, OUT_DROPPED, "buffer full: record dropped (--on-full drop-newest)", NULL, 0);
    case ADMIT_FULL:
        rq->full = 1;
        if (h->cfg->on_full == FULL_DROP_OLDEST && !rq->shed && h->flusher) {
            flusher_shed_oldest(h->flusher, h->enc.out_len);
            rq->shed = 1;
        }
        return note(rq, e, OUT_FULL, "buffer full: not taken, retry later", NULL, 0);
    default: /* ADMIT_NOMEM (ADMIT_HELD is a stream's) */
        return note(rq, e, OUT_NOMEM, "out of memory", NULL, 0);
    }
}

/* http_json_fn: one entry of the body, through the one admission path — encoded like a socket record when
 * http_json made a record of it, refused as not a record (invalid_record) when it did not. */
int http_on_entry(void *arg, const http_json_entry *e)
{
    request *rq = arg;
    http_ingest *h = rq->h;
    rq->entries++;
    admit_from from = {.src = &rq->src, .peer = rq->peer, .mono_ns = rq->mono_ns, .full = rq->full};
    record_info info;
    if (e->status == HTTP_JSON_MALFORMED) { /* not JSON: no record at all, refused as the stream's bytes are */
        client_entry *ce = rq->client ? rq->client : http_request_client(rq, "", 0);
        if (ce) {
            ce->rejected++;
            ce->last_seen_ns = rq->mono_ns;
        }
        stat_add(&h->st->malformed, 1);
        http_log_refusal(rq, &h->lim_malformed, "HTTP entry is not JSON, skipped", e->error);
        return note(rq, e, OUT_BAD, e->error, NULL, 0);
    }
    if (e->status != HTTP_JSON_OK) { /* JSON that is not a record: refused as the encoder refuses one */
        memset(&info, 0, sizeof info);
        from.client = rq->client ? rq->client : http_request_client(rq, "", 0);
        from.detail = e->error;
        return answer_fate(rq, e, admit_record(h->adm, NULL, -EINVAL, &info, &from, NULL, NULL), &info, e->error);
    }
    int rc = record_encode(&h->enc, e->record, &rq->src, rq->now_ns, &info);
    from.client = http_request_client(rq, info.service, info.service_len);
    return answer_fate(rq, e, admit_record(h->adm, &h->enc, rc, &info, &from, NULL, NULL), &info, "not a record");
}

/* ---- requests ------------------------------------------------------------------------------------------- */

/* source: the peer's kernel credentials on a Unix socket; on TCP nothing is trusted: pid 0, comm "http". */
static void request_source(request *rq)
{
    struct evhttp_connection *evcon = evhttp_request_get_connection(rq->req);
    memset(&rq->src, 0, sizeof rq->src);
    rq->src.hostname = rq->h->hostname;
    if (rq->h->is_unix) {
        peer_identity(bufferevent_getfd(evhttp_connection_get_bufferevent(evcon)), rq->h->hostname, &rq->src);
        snprintf(rq->peer, sizeof rq->peer, "pid=%d uid=%u comm=\"%s\"", rq->src.pid, rq->src.uid, rq->src.comm);
        return;
    }
    strcpy(rq->src.comm, "http");
    char *addr = NULL;
    ev_uint16_t port = 0;
    evhttp_connection_get_peer(evcon, &addr, &port);
    snprintf(rq->peer, sizeof rq->peer, strchr(addr ? addr : "", ':') ? "peer=[%s]:%u" : "peer=%s:%u",
             addr ? addr : "?", port);
}

/* /api/write_log/ or /api/write_logs/ (the trailing slash may be left out); -1 for anything else. */
static int route(const char *path)
{
    if (!path)
        return -1;
    if (!strcmp(path, "/api/write_log/") || !strcmp(path, "/api/write_log"))
        return HTTP_JSON_ONE;
    if (!strcmp(path, "/api/write_logs/") || !strcmp(path, "/api/write_logs"))
        return HTTP_JSON_MANY;
    if (!strcmp(path, "/v1/logs"))
        return MODE_OTLP;
    return -1;
}

void http_body_refused(request *rq, const http_json_error *err, const char *what)
{
    http_ingest *h = rq->h;
    int malformed = err->status == HTTP_JSON_MALFORMED;
    stat_add(malformed ? &h->st->malformed : &h->st->invalid_record, 1);
    client_entry *ce = http_request_client(rq, "", 0);
    if (ce)
        ce->rejected++;
    http_log_refusal(rq, malformed ? &h->lim_malformed : &h->lim_invalid, what, err->text);
}

static void serve(request *rq, const char *body, size_t len)
{
    http_ingest *h = rq->h;
    int many = rq->mode == HTTP_JSON_MANY;
    http_json_error err;
    int n = http_json_parse(body, len, rq->mode, http_on_entry, rq, &err);
    if (n == -EINVAL) {
        http_body_refused(rq, &err, err.status == HTTP_JSON_MALFORMED ? "HTTP body is not JSON, refused"
                                                                        : "HTTP body is not a record, refused");
        send_error(h, rq->req, 400, many, err.text);
    } else if (n < 0 && !rq->outcomes[OUT_OK]) {
        send_error(h, rq->req, 500, many, "out of memory");
    } else if (n < 0) { /* some were taken: say which, or the caller would send them again */
        if (!rq->first_error[0])
            snprintf(rq->first_error, sizeof rq->first_error, "out of memory: the rest of the body was not read");
        send_result(rq);
    } else {
        send_result(rq);
    }
}

static void on_request(struct evhttp_request *req, void *arg)
{
    http_ingest *h = arg;
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
    int mode = route(path);
    char msg[256];
    if (mode < 0) {
        snprintf(msg, sizeof msg, "unknown path %.100s: POST one record to /api/write_log/, many to /api/write_logs/, "
                                  "OTLP to /v1/logs",
                 path ? path : "?");
        send_error(h, req, 404, 0, msg);
        return;
    }
    if (evhttp_request_get_command(req) != EVHTTP_REQ_POST) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "POST");
        send_error(h, req, 405, mode == HTTP_JSON_MANY, "method not allowed: POST a JSON body");
        return;
    }
    request rq = {.h = h, .req = req, .mode = mode, .now_ns = clock_ns(CLOCK_REALTIME),
                  .mono_ns = clock_ns(CLOCK_MONOTONIC)};
    h->serial++;
    request_source(&rq);
    if (h->is_unix && !peer_allowed(h->cfg, bufferevent_getfd(evhttp_connection_get_bufferevent(
                                                 evhttp_request_get_connection(req))), &rq.src)) {
        stat_add(&h->st->conn_refused_not_allowed, 1);
        http_log_refusal(&rq, &h->lim_refused, "HTTP request refused: peer not in --allow-uids/--allow-gids", "");
        send_error(h, req, 403, mode == HTTP_JSON_MANY, "forbidden: this user is not in --allow-uids/--allow-gids");
        return;
    }
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);
    stat_add(&h->hs->body_bytes, len);
    if (len > h->cfg->http_max_body_bytes) {
        snprintf(msg, sizeof msg, "body of %zu bytes is over --http-max-body-bytes (%llu)", len,
                 (unsigned long long)h->cfg->http_max_body_bytes);
        stat_add(&h->st->oversized, 1);
        client_entry *ce = http_request_client(&rq, "", 0);
        if (ce)
            ce->rejected++;
        http_log_refusal(&rq, &h->lim_oversized, "HTTP body too large, refused", msg);
        send_error(h, req, 413, mode == HTTP_JSON_MANY, msg);
    } else {
        const char *body = len ? (const char *)evbuffer_pullup(in, -1) : ""; /* contiguous: jansson wants that */
        if (!body || !(rq.ids = evbuffer_new()) || !(rq.errors = evbuffer_new()))
            send_error(h, req, 500, mode == HTTP_JSON_MANY, "out of memory");
        else if (mode == MODE_OTLP)
            http_otlp_serve(&rq, body, len);
        else
            serve(&rq, body, len);
    }
    if (rq.client) {
        rq.client->bytes += len;
        clients_detach(h->st->clients, rq.client, rq.mono_ns);
    }
    if (rq.ids)
        evbuffer_free(rq.ids);
    if (rq.errors)
        evbuffer_free(rq.errors);
    if (h->flusher && rq.outcomes[OUT_OK])
        flusher_notify(h->flusher);
    http_conns_request_done(h->conns, req);
}

/* ---- listening ------------------------------------------------------------------------------------------ */

/* Binds a Unix socket with the ingest socket's rights (--socket-mode, --socket-group), applied before it listens.
 * Returns the listening fd or -errno (logged). */
static int unix_listen(const char *path, const config *cfg)
{
    if (!path[0]) {
        log_write(LOG_ERROR, "\"bad --http-listen: the unix: path is empty\" socket=\"%s\"", path);
        return -EINVAL;
    }
    int removed;
    const char *step;
    int fd = sockpath_open(path, (unsigned)cfg->socket_mode, cfg->socket_gid, LISTEN_BACKLOG, &removed, &step);
    if (removed)
        log_write(LOG_INFO, "\"removed stale http socket\" socket=%s", path);
    if (fd < 0) {
        sockpath_log_failure(path, fd, step, "the --http-listen socket path", "--http-listen");
        return fd;
    }
    log_write(LOG_INFO, "\"http listening\" socket=%s", path);
    return fd;
}

/* Binds HOST:PORT. Returns the listening fd or -errno (logged with the address actually bound). */
static int tcp_listen(const char *spec)
{
    char addr[300];
    int fd = tcplisten_open(spec, "--http-listen", "unix:PATH or HOST:PORT (e.g. 127.0.0.1:8080, [::1]:8080, :8080)",
                            LISTEN_BACKLOG, addr, sizeof addr);
    if (fd >= 0)
        log_write(LOG_INFO, "\"http listening\" address=%s", addr);
    return fd;
}

int http_ingest_listen(http_ingest *h)
{
    const char *spec = h->cfg->http_listen;
    h->is_unix = strncmp(spec, "unix:", 5) == 0;
    int fd = h->is_unix ? unix_listen(spec + 5, h->cfg) : tcp_listen(spec);
    if (fd < 0)
        return fd;
    if (h->is_unix)
        snprintf(h->path, sizeof h->path, "%s", spec + 5);
    if (!(h->bound = evhttp_accept_socket_with_handle(h->http, fd)) || /* out of memory; fd may be closed */
        !(h->guard = acceptguard_new(h->base, evhttp_bound_socket_get_listener(h->bound), "http",
                                     h->st->accept_errors))) {
        log_write(LOG_ERROR, "\"cannot serve --http-listen\" value=\"%s\"", spec);
        return -ENOMEM;
    }
    http_conns_set_guard(h->conns, h->guard);
    h->hs->enabled = 1;
    return 0;
}

/* ---- lifecycle ------------------------------------------------------------------------------------------ */

http_ingest *http_ingest_new(struct event_base *base, const config *cfg, ring *r, ingest_stats *st)
{
    http_ingest *h = calloc(1, sizeof *h);
    if (!h)
        return NULL;
    h->base = base;
    h->cfg = cfg;
    h->ring = r;
    h->st = st;
    h->hs = &st->http;
    if (gethostname(h->hostname, sizeof h->hostname - 1) < 0)
        strcpy(h->hostname, "unknown");
    if (record_enc_init(&h->enc) < 0 || !(h->http = evhttp_new(base)) ||
        !(h->adm = admit_new(ADMIT_REQUEST, cfg, r, st)) ||
        !(h->conns = http_conns_new(base, h->http, cfg, st))) {
        http_ingest_free(h);
        return NULL;
    }
    /* every method reaches on_request, which answers 405 in JSON (libevent's own 405 would be HTML) */
    evhttp_set_allowed_methods(h->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD | EVHTTP_REQ_PUT |
                                            EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS | EVHTTP_REQ_TRACE |
                                            EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH);
    evhttp_set_max_headers_size(h->http, 16384);
    evhttp_set_max_body_size(h->http, (ev_ssize_t)(cfg->http_max_body_bytes * 2));
    evhttp_set_timeout(h->http, IDLE_TIMEOUT_S);
    evhttp_set_flags(h->http, EVHTTP_SERVER_LINGERING_CLOSE); /* a refused body is read to its end, so the client
                                                                 reads the 413 instead of a reset */
    evhttp_set_gencb(h->http, on_request, h);
    h->enc.typed = cfg->upstream_protocol == PROTOCOL_OTLP; /* metadata types for otlp.c (record.h) */
    http_ingest_reload(h);
    return h;
}

uint64_t http_ingest_fd_share(const config *cfg) { return http_conns_cap(cfg); }

void http_ingest_set_flusher(http_ingest *h, struct flusher *f)
{
    h->flusher = f;
    admit_set_flusher(h->adm, f);
}

void http_ingest_reload(http_ingest *h)
{
    h->enc.text_limit = (size_t)h->cfg->batch_max_bytes - 256; /* as ingest_reload: fits a request and the ring */
    if (h->enc.text_limit > ring_max_record(h->ring))
        h->enc.text_limit = ring_max_record(h->ring);
}

void http_ingest_stop(http_ingest *h)
{
    if (!h)
        return;
    h->stopping = 1;
    http_conns_set_guard(h->conns, NULL);
    acceptguard_free(h->guard);
    h->guard = NULL;
    if (h->bound)
        evhttp_del_accept_socket(h->http, h->bound);
    h->bound = NULL;
    if (h->path[0])
        unlink(h->path);
    h->path[0] = 0;
}

void http_ingest_drain(http_ingest *h, int64_t deadline_ms)
{
    if (!h)
        return;
    int64_t now = clock_ns(CLOCK_MONOTONIC) / 1000000, end = now + DRAIN_MAX_MS;
    if (end > deadline_ms)
        end = deadline_ms;
    for (int64_t left; (left = end - clock_ns(CLOCK_MONOTONIC) / 1000000) > 0;) {
        uint64_t before = stat_get(&h->hs->requests);
        int64_t ms = left < DRAIN_QUIET_MS ? left : DRAIN_QUIET_MS;
        struct timeval tv = {0, (suseconds_t)(ms * 1000)};
        event_base_loopexit(h->base, &tv);
        event_base_dispatch(h->base);
        if (stat_get(&h->hs->requests) == before)
            break;
    }
}

void http_ingest_free(http_ingest *h)
{
    if (!h)
        return;
    if (h->conns)
        http_conns_set_guard(h->conns, NULL);
    acceptguard_free(h->guard);
    if (h->http)
        evhttp_free(h->http);
    http_conns_free(h->conns); /* after evhttp_free: no connection can call back */
    if (h->path[0])
        unlink(h->path);
    record_enc_free(&h->enc);
    admit_free(h->adm);
    free(h);
}
