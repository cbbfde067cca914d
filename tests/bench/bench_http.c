/* bench_http.c — logagent-bench's HTTP mode: each worker keeps one HTTP/1.1 keep-alive connection to the
 * agent's HTTP ingest (--http-listen) and POSTs the concurrent test's records, either one JSON record per
 * request to /api/write_log/ (the original service's endpoint and body; the answer must be 200 with
 * {"success": true, "log_id": "..."}) or N records per request as NDJSON to /api/write_logs/ (the answer must be
 * 200 with {"accepted": N, ...}). Anything else counts the request's records as failed, with the status and
 * body as an error sample (503 means the agent's buffer is full). Records are never re-sent. A request's body is
 * copied together from the JSON bodies built before the clock started (b->ring). */
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

int bench_http_probe(const httpc_target *t, char *err, size_t errlen)
{
    httpc_conn c;
    httpc_init(&c, t, PROG, BENCH_HTTP_TIMEOUT_MS);
    int rc = httpc_connect(&c, err, errlen);
    httpc_close(&c);
    return rc;
}

/* The answer to a request that carried n records: how many the agent accepted (noting why not all). */
static long judge(bench *b, const httpc_response *r, long n)
{
    if (r->status != 200) {
        bench_note(b, 1, "HTTP %d (%ld records failed): %.200s", r->status, n, r->body);
        return 0;
    }
    json_error_t jerr;
    json_t *doc = json_loadb(r->body, r->body_len, 0, &jerr);
    long ok = 0;
    if (!json_is_object(doc)) {
        bench_note(b, 1, "HTTP 200 but the body is not a JSON object (%s): %.200s", doc ? "wrong type" : jerr.text,
                   r->body);
    } else if (b->http_batch) {
        json_t *acc = json_object_get(doc, "accepted");
        ok = json_is_integer(acc) ? (long)json_integer_value(acc) : 0;
        ok = ok < 0 ? 0 : ok > n ? n : ok;
        if (ok < n)
            bench_note(b, 1, "HTTP 200, accepted %ld of %ld: %.200s", ok, n, r->body);
    } else {
        json_t *id = json_object_get(doc, "log_id");
        if (json_is_true(json_object_get(doc, "success")) && json_is_string(id) && json_string_length(id) > 0)
            ok = 1;
        else
            bench_note(b, 1, "HTTP 200 without success and a log_id: %.200s", r->body);
    }
    json_decref(doc);
    return ok;
}

/* Copies the body of records first..first+n-1 into buf (cap >= n * (BENCH_JSON_MAX + 1)). Returns its length. */
static size_t build_body(const bench *b, char *buf, long first, long n)
{
    const bring *ring = &b->ring;
    size_t len = 0, k = (size_t)(first - 1) % ring->n;
    for (long i = 0; i < n; i++) {
        size_t from = ring->json_off[k], to = ring->json_off[k + 1];
        memcpy(buf + len, ring->json + from, to - from);
        len += to - from;
        if (b->http_batch)
            buf[len++] = '\n';
        k = k + 1 == ring->n ? 0 : k + 1;
    }
    return len;
}

void *bench_http_worker(void *arg)
{
    bench_worker *w = arg;
    bench *b = w->b;
    long per = b->http_batch ? b->http_batch : 1;
    const char *path = b->http_batch ? "/api/write_logs/" : "/api/write_log/";
    const char *ctype = b->http_batch ? "application/x-ndjson" : "application/json";
    char *body = malloc((size_t)per * (BENCH_JSON_MAX + 1));
    if (!body) {
        bench_note(b, 0, "worker %d: out of memory", w->id);
        return NULL;
    }
    httpc_conn c;
    httpc_init(&c, b->http, PROG, BENCH_HTTP_TIMEOUT_MS);
    long first, n;
    char err[200];
    while ((n = bench_claim(b, per, &first)) > 0) {
        size_t len = build_body(b, body, first, n);
        httpc_response r;
        int rc = httpc_request(&c, "POST", path, ctype, body, len, &r, err, sizeof err);
        if (rc < 0) {
            bench_note(b, 1, "%s (%ld records failed)", err, n); /* err: "POST PATH on URL: why" */
            continue;
        }
        atomic_fetch_add_explicit(&b->requests, 1, memory_order_relaxed);
        long ok = judge(b, &r, n);
        if (ok)
            atomic_fetch_add_explicit(&b->ok, ok, memory_order_relaxed);
    }
    httpc_close(&c);
    free(body);
    return NULL;
}
