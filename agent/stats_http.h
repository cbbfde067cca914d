/* stats_http.h — the stats socket: HTTP/1.1 on a Unix socket (mode 0600), served by evhttp on the main loop.
 *
 *   curl --unix-socket /run/logagent/stats.sock http://localhost/stats
 *
 * GET /stats answers DESIGN.md's JSON. Read-only: other methods get 405/501. */
#ifndef LOGAGENT_STATS_HTTP_H
#define LOGAGENT_STATS_HTTP_H

#include "config.h"
#include "flusher.h"
#include "ring.h"
#include "stats.h"

#include <event2/event.h>
#include <stddef.h>

typedef struct stats_http stats_http;

typedef struct stats_sources {
    const config *cfg;
    ingest_stats *ingest;
    ring *ring;
    flusher *flusher;
    double start_mono; /* seconds, CLOCK_MONOTONIC */
} stats_sources;

/* Binds and serves the stats socket at path, or serves fd when >= 0 (listening, from systemd; its file is left
 * alone). NULL on failure (logged). */
stats_http *stats_http_new(struct event_base *base, const char *path, int fd, const stats_sources *src);
void stats_http_free(stats_http *h);

/* Writes the /stats JSON document into buf (NUL-terminated). Returns its length, or -1 if it did not fit. */
int stats_json(const stats_sources *src, char *buf, size_t cap);

#endif
