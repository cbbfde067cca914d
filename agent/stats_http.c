/* stats_http.c — the stats endpoints over evhttp: the Unix stats socket (permissions applied before listen), a
 * socket handed over by systemd, and the optional TCP listener (see stats_http.h).
 *
 * Every request is answered on the main loop thread from one stats_collect (stats.h), which is also ingest's
 * thread: the per-client table and ingest's counters are read where they are written, and the flusher is read
 * through one snapshot under its accounting mutex, never a lock ingest takes. */
#include "stats_http.h"
#include "common/clock.h"

#include "acceptguard.h"
#include "ingest/clients.h"
#include "health.h"
#include "log.h"
#include "sockpath.h"
#include "tcplisten.h"
#include "metrics.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/util.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

enum { CLIENTS_TOP_DEFAULT = 20, CLIENTS_TOP_MAX = 1000, STATS_DOC_MAX = 8192 };

struct stats_http {
    struct event_base *base;
    struct evhttp *http;
    acceptguard *guards[2]; /* the stats socket's and --metrics-listen's: a pause on accept errors, no spinning */
    stats_sources src;
    char path[108]; /* the socket file we bound and remove at free ("" when none or systemd's) */
};

/* ---- replies ------------------------------------------------------------------------------------------ */

static void reply(struct evhttp_request *req, int code, const char *reason, const char *type, struct evbuffer *body)
{
    struct evkeyvalq *hd = evhttp_request_get_output_headers(req);
    evhttp_add_header(hd, "Content-Type", type);
    evhttp_add_header(hd, "Cache-Control", "no-store");
    evhttp_send_reply(req, code, reason, body);
}

/* A short text/plain answer. */
static void reply_text(struct evhttp_request *req, int code, const char *reason, const char *text)
{
    struct evbuffer *body = evbuffer_new();
    if (!body || evbuffer_add(body, text, strlen(text)) < 0) {
        evhttp_send_error(req, HTTP_INTERNAL, "out of memory");
    } else {
        reply(req, code, reason, "text/plain; charset=utf-8", body);
    }
    if (body)
        evbuffer_free(body);
}

/* Finds `key` in a query string (a=1&b&c=2). Returns 1 and copies its value (possibly empty) into val, or 0. */
static int query_get(const char *query, const char *key, char *val, size_t cap)
{
    size_t klen = strlen(key);
    for (const char *p = query; p && *p; p = strchr(p, '&') ? strchr(p, '&') + 1 : NULL) {
        if (strncmp(p, key, klen) != 0 || (p[klen] && p[klen] != '=' && p[klen] != '&'))
            continue;
        const char *v = p[klen] == '=' ? p + klen + 1 : p + klen;
        size_t n = strcspn(v, "&");
        snprintf(val, cap, "%.*s", (int)(n < cap ? n : cap - 1), v);
        return 1;
    }
    return 0;
}

/* ---- endpoints -------------------------------------------------------------------------------------- */

static void serve_stats(stats_http *h, struct evhttp_request *req, const char *query)
{
    (void)query;
    char buf[STATS_DOC_MAX];
    int n = stats_json(&h->src, buf, sizeof buf);
    struct evbuffer *body = n < 0 ? NULL : evbuffer_new();
    if (!body || evbuffer_add(body, buf, (size_t)n) < 0)
        evhttp_send_error(req, HTTP_INTERNAL, n < 0 ? "stats document too large" : "out of memory");
    else
        reply(req, HTTP_OK, "OK", "application/json", body);
    if (body)
        evbuffer_free(body);
}

static void serve_metrics(stats_http *h, struct evhttp_request *req, const char *query)
{
    (void)query;
    stats_view v;
    health_report hr;
    stats_collect(&h->src, &v);
    health_check(&v, h->src.cfg, &hr);
    struct evbuffer *body = evbuffer_new();
    if (!body || metrics_render(&v, h->src.cfg, &hr, body) < 0)
        evhttp_send_error(req, HTTP_INTERNAL, "out of memory");
    else
        reply(req, HTTP_OK, "OK", METRICS_CONTENT_TYPE, body);
    if (body)
        evbuffer_free(body);
}

static void serve_healthz(stats_http *h, struct evhttp_request *req, const char *query)
{
    char val[8];
    int verbose = query_get(query, "verbose", val, sizeof val);
    stats_view v;
    health_report hr;
    stats_collect(&h->src, &v);
    health_check(&v, h->src.cfg, &hr);
    struct evbuffer *body = evbuffer_new();
    int rc = body ? 0 : -1;
    if (rc == 0 && !hr.reasons)
        rc = evbuffer_add_printf(body, "ok\n");
    for (const char *line = hr.text; rc >= 0 && *line;) { /* "unhealthy: <reason>" per line */
        size_t n = strcspn(line, "\n");
        rc = evbuffer_add_printf(body, "unhealthy: %.*s\n", (int)n, line);
        line += n + (line[n] == '\n');
    }
    if (rc >= 0 && verbose)
        rc = evbuffer_add_printf(body, "\n%s", hr.detail);
    if (rc < 0)
        evhttp_send_error(req, HTTP_INTERNAL, "out of memory");
    else if (hr.reasons)
        reply(req, HTTP_SERVUNAVAIL, "Service Unavailable", "text/plain; charset=utf-8", body);
    else
        reply(req, HTTP_OK, "OK", "text/plain; charset=utf-8", body);
    if (body)
        evbuffer_free(body);
}

/* Readiness for a Kubernetes probe: "the agent accepts records". It answers only while the main loop runs, which is
 * after every listener is open and before SIGTERM's drain (the loop does not run then, so the probe fails and the
 * pod leaves the Service while the agent drains). It never depends on the log service: an outage is /healthz's and
 * the metrics' business, and must not take the application's pod out of service (docs/deployment.md). */
static void serve_readyz(stats_http *h, struct evhttp_request *req, const char *query)
{
    (void)query;
    stats_view v;
    stats_collect(&h->src, &v);
    struct evbuffer *body = evbuffer_new();
    if (!body || evbuffer_add_printf(body, "ready: accepting records on %s (%llu connections%s)\n",
                                     h->src.cfg->socket_path, (unsigned long long)v.conn_active,
                                     v.paused ? ", buffer full: reading paused" : "") < 0)
        evhttp_send_error(req, HTTP_INTERNAL, "out of memory");
    else
        reply(req, HTTP_OK, "OK", "text/plain; charset=utf-8", body);
    if (body)
        evbuffer_free(body);
}

static void serve_clients(stats_http *h, struct evhttp_request *req, const char *query)
{
    /* pids, uids, process and service names stay on the (0600) Unix socket, not on --metrics-listen */
    const struct sockaddr *peer = evhttp_connection_get_addr(evhttp_request_get_connection(req));
    if (peer && peer->sa_family != AF_UNIX) {
        reply_text(req, 403, "Forbidden", "/stats/clients is served on the stats socket only (it names processes)\n");
        return;
    }
    char val[24];
    long top = CLIENTS_TOP_DEFAULT;
    if (query_get(query, "top", val, sizeof val)) {
        char *end;
        top = strtol(val, &end, 10);
        if (!val[0] || *end || top < 1 || top > CLIENTS_TOP_MAX) {
            reply_text(req, HTTP_BADREQUEST, "Bad Request", "top must be a number from 1 to 1000\n");
            return;
        }
    }
    struct evbuffer *body = evbuffer_new();
    const clients *t = h->src.ingest->clients;
    int rc = !body ? -ENOMEM
             : t   ? clients_json(t, (size_t)top, clock_mono_ns(), body)
                   : (evbuffer_add_printf(body, "{\"clients\":[],\"tracked\":0,\"evicted\":0}\n") < 0 ? -ENOMEM : 0);
    if (rc < 0)
        evhttp_send_error(req, HTTP_INTERNAL, "out of memory");
    else
        reply(req, HTTP_OK, "OK", "application/json", body);
    if (body)
        evbuffer_free(body);
}

typedef void (*endpoint_fn)(stats_http *h, struct evhttp_request *req, const char *query);

static const struct {
    const char *path;
    endpoint_fn fn;
} ROUTES[] = {
    {"/stats", serve_stats},
    {"/stats/clients", serve_clients},
    {"/metrics", serve_metrics},
    {"/healthz", serve_healthz},
    {"/readyz", serve_readyz},
};

static void on_request(struct evhttp_request *req, void *arg)
{
    stats_http *h = arg;
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
    if (cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_HEAD) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "GET, HEAD");
        reply_text(req, 405, "Method Not Allowed", "read-only: only GET and HEAD are allowed\n");
        return;
    }
    for (size_t i = 0; path && i < sizeof ROUTES / sizeof ROUTES[0]; i++)
        if (strcmp(path, ROUTES[i].path) == 0) {
            ROUTES[i].fn(h, req, evhttp_uri_get_query(uri));
            return;
        }
    reply_text(req, HTTP_NOTFOUND, "Not Found", "unknown path: try /stats, /stats/clients, /metrics, /healthz or /readyz\n");
}

/* ---- listening ---------------------------------------------------------------------------------------- */

/* Binds path with the configured mode and group applied before listen(2). Returns the listening fd or -errno
 * (logged). */
static int unix_listen(const char *path, const config *cfg)
{
    int removed;
    const char *step;
    /* the group was resolved (and refused when unknown) by config_load */
    int fd = sockpath_open(path, (unsigned)cfg->stats_socket_mode, cfg->stats_socket_gid, 64, &removed, &step);
    if (fd < 0) {
        sockpath_log_failure(path, fd, step, "the stats socket path", "the stats socket");
        return fd;
    }
    log_write(LOG_INFO, "\"stats socket listening\" socket=%s mode=%04llo group=%s", path,
              (unsigned long long)cfg->stats_socket_mode, cfg->stats_socket_group[0] ? cfg->stats_socket_group : "-");
    return fd;
}

/* Binds and listens on --metrics-listen. Returns the fd or -errno (logged). */
static int tcp_listen(const char *spec)
{
    char addr[300];
    int fd = tcplisten_open(spec, "--metrics-listen", "HOST:PORT (e.g. 127.0.0.1:9100, [::1]:9100, :9100)", 64, addr,
                            sizeof addr);
    if (fd >= 0)
        log_write(LOG_INFO, "\"metrics listening\" address=%s", addr);
    return fd;
}

/* Hands a listening fd to evhttp (which closes it at evhttp_free) and guards it. Returns 0, or -1 (fd closed). */
static int serve_fd(stats_http *h, int fd, const char *name)
{
    struct evhttp_bound_socket *b = NULL;
    if (evutil_make_socket_nonblocking(fd) < 0 || !(b = evhttp_accept_socket_with_handle(h->http, fd))) {
        log_write(LOG_ERROR, "\"cannot serve the stats endpoints\" fd=%d", fd);
        close(fd);
        return -1;
    }
    acceptguard **g = h->guards[0] ? &h->guards[1] : &h->guards[0];
    if (!(*g = acceptguard_new(h->base, evhttp_bound_socket_get_listener(b),
                               name, h->src.ingest->accept_errors))) {
        log_write(LOG_ERROR, "\"cannot serve the stats endpoints: out of memory\" fd=%d", fd);
        return -1;
    }
    return 0;
}

stats_http *stats_http_new(struct event_base *base, const char *path, int fd, const stats_sources *src)
{
    stats_http *h = calloc(1, sizeof *h);
    if (!h || !(h->http = evhttp_new(base))) {
        log_write(LOG_ERROR, "\"cannot start the stats server: out of memory\"");
        if (fd >= 0)
            close(fd);
        free(h);
        return NULL;
    }
    h->src = *src;
    h->base = base;
    evhttp_set_allowed_methods(h->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST | EVHTTP_REQ_PUT |
                                            EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS | EVHTTP_REQ_PATCH);
    evhttp_set_max_headers_size(h->http, 16384);
    evhttp_set_max_body_size(h->http, 4096);
    evhttp_set_timeout(h->http, 30);
    evhttp_set_gencb(h->http, on_request, h);
    int ok = 1;
    if (fd >= 0) {
        ok = serve_fd(h, fd, "stats") == 0;
        if (ok)
            log_write(LOG_INFO, "\"stats socket from systemd\" fd=%d", fd);
    } else if (path && path[0]) {
        int ufd = unix_listen(path, src->cfg);
        if (ufd >= 0)
            snprintf(h->path, sizeof h->path, "%s", path);
        ok = ufd >= 0 && serve_fd(h, ufd, "stats") == 0;
    }
    if (ok && src->cfg->metrics_listen[0]) {
        int tfd = tcp_listen(src->cfg->metrics_listen);
        ok = tfd >= 0 && serve_fd(h, tfd, "metrics") == 0;
    }
    if (!ok) {
        stats_http_free(h);
        return NULL;
    }
    return h;
}

void stats_http_free(stats_http *h)
{
    if (!h)
        return;
    acceptguard_free(h->guards[0]);
    acceptguard_free(h->guards[1]);
    evhttp_free(h->http);
    if (h->path[0])
        unlink(h->path);
    free(h);
}
