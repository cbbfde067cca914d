/* stats_http.h — the stats socket: HTTP/1.1 on a Unix socket, served by evhttp on the main loop, and optionally
 * the same endpoints over TCP (--metrics-listen) for a Prometheus scrape inside a pod.
 *
 *   curl --unix-socket /run/logagent/stats.sock http://localhost/stats
 *
 * Read-only (GET and HEAD; other methods get 405):
 *   GET /stats           the JSON document (docs/operations.md, docs/metrics.md)
 *   GET /metrics         Prometheus text format 0.0.4 (metrics.h)
 *   GET /healthz         200 "ok", or 503 with one reason per line (health.h); ?verbose adds every check
 *   GET /stats/clients   per-client accounting, top senders first (clients.h); ?top=N (default 20, at most 1000)
 * Anything else is 404 naming these paths. docs/metrics.md describes every number. */
#ifndef LOGAGENT_STATS_HTTP_H
#define LOGAGENT_STATS_HTTP_H

#include "config.h"
#include "flush/flusher.h"
#include "ring.h"
#include "stats.h"

#include <event2/event.h>
#include <stddef.h>

typedef struct stats_http stats_http;

/* Starts serving the stats endpoints on base.
 *   fd >= 0: an already bound and listening socket (systemd socket activation): served as it is; its file is not
 *            chmod'ed, chown'ed or removed (systemd owns it). On failure fd is still closed.
 *   fd < 0:  binds `path` (if not empty) with sockpath_open: a stale socket replaced, stats_socket_mode and
 *            stats_socket_group applied before listen(2), so the socket is never reachable with looser rights
 *            than asked. The file is removed by stats_http_free.
 * Also listens on src->cfg->metrics_listen (HOST:PORT, port 0 = any free port) when set, and logs
 * `"metrics listening" address=HOST:PORT`.
 * Returns NULL on failure (an unknown group, a bind error, a bad HOST:PORT), logged with the flag to fix. */
stats_http *stats_http_new(struct event_base *base, const char *path, int fd, const stats_sources *src);
void stats_http_free(stats_http *h);

#endif
