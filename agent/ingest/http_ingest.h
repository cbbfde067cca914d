/* http_ingest.h — the HTTP/JSON ingest: records as JSON over HTTP/1.1, for callers that have neither the C nor the
 * Python library (curl, shell, other languages).
 *
 *   curl -s localhost:8080/api/write_log/ -d '{"message": "hello", "service_name": "shell", "level": "INFO"}'
 *   {"success":true,"log_id":"3f0c…","error_message":""}
 *
 *   POST /api/write_log/    one entry (the original Django service's body and answer)
 *   POST /api/write_logs/   a JSON array of entries, or NDJSON (one entry per line)
 *
 * Served by evhttp on --http-listen (unix:PATH, created 0660 like the ingest socket, or HOST:PORT) on the main loop
 * thread: the thread that runs ingest, so the ring keeps one producer thread and records from both paths are
 * counted in the same ingest counters. Bodies become records in http_json.h, are encoded by record_encode exactly
 * like socket records and admitted by the same admit_record (admit.h); a request is answered only after its
 * records are in the ring (or refused), so a 200 means the agent holds them. A full ring is never waited on: the
 * request gets 503 with Retry-After (docs/protocol.md has every status and body). */
#ifndef LOGAGENT_HTTP_INGEST_H
#define LOGAGENT_HTTP_INGEST_H

#include "config.h"
#include "counters.h"
#include "ring.h"

#include <event2/event.h>

typedef struct http_ingest http_ingest;
struct flusher;

/* Creates the stage (no socket yet). st: ingest's counters (received, rejected, dropped and the client table are
 * shared with the socket path; st->http is this stage's own). NULL on allocation failure. */
http_ingest *http_ingest_new(struct event_base *base, const config *cfg, ring *r, ingest_stats *st);
void http_ingest_set_flusher(http_ingest *h, struct flusher *f);

/* Listens on cfg->http_listen: `unix:PATH` (a stale socket file is replaced; a live agent's or a non-socket file is
 * refused) or `HOST:PORT` (`[V6]:PORT`, `:PORT` for every IPv4 address; port 0 picks a free one). Logs
 * `"http listening" address=…` (with the real port) or `socket=…`. Returns 0 or -errno, logged naming --http-listen. */
int http_ingest_listen(http_ingest *h);

/* The file descriptors the HTTP ingest may take for its connections (0 when --http-listen is off): ingest keeps
 * them out of its own share of the open-file budget (acceptguard.h). */
uint64_t http_ingest_fd_share(const config *cfg);

/* Main thread (SIGHUP): re-reads what bounds one record (batch_max_bytes), as ingest_reload does. */
void http_ingest_reload(http_ingest *h);

/* Stops accepting connections (removes the socket file). Requests on connections already open are still served;
 * their answers ask the client to close. */
void http_ingest_stop(http_ingest *h);

/* Runs the loop until no request has arrived for a short quiet time (100 ms), for at most 2 s and never past
 * deadline_ms (CLOCK_MONOTONIC): requests already on their way when the agent stopped are answered. The flusher must
 * still be running. */
void http_ingest_drain(http_ingest *h, int64_t deadline_ms);

/* Closes every connection and the listener; removes the socket file. NULL is fine. */
void http_ingest_free(http_ingest *h);

#endif
