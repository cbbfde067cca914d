/* http_ingest_internal.h — what http_ingest.c (the HTTP/JSON routes, listening, lifecycle) and http_otlp.c (the
 * OTLP/HTTP route, POST /v1/logs) share: the stage's state, one request being answered, and the helpers both answer
 * with. Not for other stages: they use http_ingest.h. Main loop thread only, like the stage. */
#ifndef LOGAGENT_HTTP_INGEST_INTERNAL_H
#define LOGAGENT_HTTP_INGEST_INTERNAL_H

#include "ingest/http_ingest.h"

#include "acceptguard.h"
#include "ingest/admit.h"
#include "ingest/clients.h"
#include "ingest/http_conns.h"
#include "ingest/http_json.h"
#include "log.h"
#include "record.h"

#include <event2/buffer.h>
#include <event2/http.h>

/* What became of one entry; also the answer's status when nothing was accepted. */
enum outcome { OUT_OK, OUT_BAD, OUT_TOO_LARGE, OUT_FULL, OUT_NOMEM, OUT_LIMITED, OUT_DROPPED, OUT_N };

struct http_ingest {
    struct event_base *base;
    const config *cfg;
    ring *ring;
    ingest_stats *st;
    http_stats *hs;
    struct flusher *flusher;
    struct evhttp *http;
    struct evhttp_bound_socket *bound;
    acceptguard *guard; /* pauses the listener on accept errors instead of spinning */
    http_conns *conns;  /* counts and bounds the connections, their pending bodies and request time */
    int is_unix;
    char path[108]; /* the socket file we bound and remove ("" when none) */
    int stopping;
    uint64_t serial; /* requests seen, for the client table's connection count */
    record_enc enc;
    char hostname[64];
    log_limit lim_malformed, lim_invalid, lim_oversized, lim_refused;
    admit *adm; /* every entry's fate and counters (admit.h), with --rate-limit for HTTP senders (a budget of their
                 * own; TCP callers share sender 0) */
};

/* POST /v1/logs: OTLP/HTTP (otlp_in.h), beside http_json's two modes. */
enum { MODE_OTLP = 2 };

/* One request being answered (lives in on_request's frame). */
typedef struct request {
    http_ingest *h;
    struct evhttp_request *req;
    int mode; /* enum http_json_mode, or MODE_OTLP */
    int otlp_json; /* MODE_OTLP: the body (and the answer) is OTLP's JSON, else protobuf */
    record_source src;
    char peer[96]; /* who, for log lines */
    int64_t now_ns, mono_ns;
    client_entry *client;
    size_t entries, outcomes[OUT_N];
    int full, shed;
    struct evbuffer *ids;    /* the log_ids as JSON strings, comma-separated (one for write_log) */
    struct evbuffer *errors; /* write_logs: the errors' JSON objects, comma-separated */
    char first_error[HTTP_JSON_ERROR_MAX + 64];
} request;

/* Appends s[0..n) as a JSON string (quoted; invalid UTF-8 as U+FFFD). Returns 0 or -1. */
int http_put_string(struct evbuffer *out, const char *s, size_t n);
/* code's index in stats_http_codes (STATS_HTTP_CODE_N when it is not counted by code). */
size_t http_code_index(int code);
/* The reason phrase sent with code. */
const char *http_reason_of(int code);
/* The client entry of this request's records of one service_name (NULL when there is no table or no memory). */
client_entry *http_request_client(request *rq, const char *service, size_t len);
/* A refusal's warning line, rate-limited by l, naming the peer. */
void http_log_refusal(request *rq, log_limit *l, const char *what, const char *detail);
/* A whole body refused by its parser (err): counted malformed or invalid_record, against the request's client, and
 * logged as `what` (rate-limited). The caller answers. */
void http_body_refused(request *rq, const http_json_error *err, const char *what);
/* http_json_fn: one entry of a body (HTTP/JSON's or OTLP's), through the one admission path; noted in rq. */
int http_on_entry(void *arg, const http_json_entry *e);

/* POST /v1/logs (http_otlp.c): the body as OTLP/HTTP says, its records admitted, the answer sent. */
void http_otlp_serve(request *rq, const char *body, size_t len);

#endif
