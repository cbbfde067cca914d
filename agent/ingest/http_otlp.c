/* http_otlp.c — OTLP/HTTP logs ingest: `POST /v1/logs` on the --http-listen listener (see otlp_in.h for the
 * mapping, docs/protocol.md for the answers). http_ingest.c routes the request here; the body is read as its
 * Content-Type and Content-Encoding say, every LogRecord goes through the same admission as an HTTP/JSON entry
 * (http_on_entry), and the answer is OTLP's: an ExportLogsServiceResponse, or a google.rpc.Status with the HTTP status
 * the spec gives (503/429 with Retry-After to retry, 400/413/415 not to). */
#include "ingest/http_ingest_internal.h"

#include "common/gunzip.h"
#include "ingest/otlp_in.h"
#include "pbwire.h"

#include <errno.h>
#include <event2/keyvalq_struct.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* OTLP/HTTP's answers, in the request's own encoding: 200 with an ExportLogsServiceResponse (its partial_success
 * when records were refused), or a google.rpc.Status (code = the gRPC status that means the same) for the rest. */
static void send_otlp(request *rq, int http_code, int grpc_code, const char *msg, size_t rejected)
{
    struct evbuffer *body = evbuffer_new();
    size_t mlen = strlen(msg);
    int rc = body ? 0 : -1;
    if (rc == 0 && rq->otlp_json) {
        if (http_code == 200 && !rejected)
            rc = evbuffer_add_printf(body, "{}") < 0;
        else if (http_code == 200)
            rc = evbuffer_add_printf(body, "{\"partialSuccess\":{\"rejectedLogRecords\":\"%zu\",\"errorMessage\":",
                                     rejected) < 0 || http_put_string(body, msg, mlen) < 0 || evbuffer_add(body, "}}", 2) < 0;
        else
            rc = evbuffer_add_printf(body, "{\"code\":%d,\"message\":", grpc_code) < 0 ||
                 http_put_string(body, msg, mlen) < 0 || evbuffer_add(body, "}", 1) < 0;
    } else if (rc == 0) { /* protobuf: at most two small messages, written by hand (pbwire.h) */
        uint8_t buf[64 + HTTP_JSON_ERROR_MAX + 256], *p = buf, inner[32 + sizeof buf], *q = inner;
        if (mlen > HTTP_JSON_ERROR_MAX + 200)
            mlen = HTTP_JSON_ERROR_MAX + 200;
        if (http_code == 200 && rejected) { /* partial_success = 1 {rejected_log_records = 1, error_message = 2} */
            q = pbw_put_uint(q, 1, rejected);
            q = pbw_put_bytes(q, 2, msg, mlen);
            p = pbw_put_bytes(p, 1, inner, (size_t)(q - inner));
        } else if (http_code != 200) { /* Status {code = 1, message = 2} */
            p = pbw_put_uint(p, 1, (uint64_t)grpc_code);
            p = pbw_put_bytes(p, 2, msg, mlen);
        }
        rc = evbuffer_add(body, buf, (size_t)(p - buf));
    }
    struct evkeyvalq *hd = evhttp_request_get_output_headers(rq->req);
    evhttp_add_header(hd, "Content-Type", rq->otlp_json ? "application/json" : "application/x-protobuf");
    if (http_code == 503 || http_code == 429)
        evhttp_add_header(hd, "Retry-After", "1");
    if (rq->h->stopping)
        evhttp_add_header(hd, "Connection", "close");
    stat_add(&rq->h->hs->requests, 1);
    size_t i = http_code_index(rc == 0 ? http_code : 500);
    if (i < STATS_HTTP_CODE_N)
        stat_add(&rq->h->hs->responses[i], 1);
    evhttp_send_reply(rq->req, rc == 0 ? http_code : 500, http_reason_of(rc == 0 ? http_code : 500), rc == 0 ? body : NULL);
    if (body)
        evbuffer_free(body);
}

/* After the records went through admission: retry the whole request when any did not fit (503; the records taken
 * before it come again with the same log_ids, which the service keeps once) or was over --rate-limit (429); else
 * 200, naming the records refused for good (partial_success: not retried by the client). */
static void send_otlp_result(request *rq)
{
    const size_t *o = rq->outcomes;
    size_t rejected = o[OUT_BAD] + o[OUT_TOO_LARGE];
    char msg[sizeof rq->first_error + 64];
    if (o[OUT_FULL] || o[OUT_DROPPED] || o[OUT_NOMEM])
        send_otlp(rq, 503, 14, o[OUT_NOMEM] ? "out of memory: retry later" : "buffer full: retry later", 0);
    else if (o[OUT_LIMITED])
        send_otlp(rq, 429, 8, "over --rate-limit: retry later", 0);
    else {
        snprintf(msg, sizeof msg, "%zu of %zu log records refused; the first: %s", rejected, rq->entries,
                 rq->first_error);
        send_otlp(rq, 200, 0, rejected ? msg : "", rejected);
    }
}

/* The body as OTLP says to read it: Content-Type picks the encoding (415 otherwise), Content-Encoding gzip is
 * inflated up to --http-max-body-bytes (a bomb gets 413). Returns the body to read (*owned: free it), or NULL after
 * answering. */
static const char *otlp_body(request *rq, const char *body, size_t *len, char **owned)
{
    struct evkeyvalq *in = evhttp_request_get_input_headers(rq->req);
    const char *ct = evhttp_find_header(in, "Content-Type"), *ce = evhttp_find_header(in, "Content-Encoding");
    *owned = NULL;
    if (ct && !strncasecmp(ct, "application/json", 16))
        rq->otlp_json = 1;
    else if (!ct || strncasecmp(ct, "application/x-protobuf", 22)) {
        send_otlp(rq, 415, 3, "Content-Type must be application/x-protobuf or application/json", 0);
        return NULL;
    }
    if (!ce || !strcasecmp(ce, "identity"))
        return body;
    if (strcasecmp(ce, "gzip")) {
        send_otlp(rq, 415, 3, "Content-Encoding must be gzip or none", 0);
        return NULL;
    }
    size_t max = rq->h->cfg->http_max_body_bytes;
    int rc = gunzip(body, *len, max, owned, len);
    if (rc == 0)
        return *owned;
    stat_add(rc == -EMSGSIZE ? &rq->h->st->oversized : &rq->h->st->malformed, 1);
    char msg[160];
    snprintf(msg, sizeof msg, "gzip body inflates past --http-max-body-bytes (%zu)", max);
    if (rc == -EMSGSIZE)
        send_otlp(rq, 413, 3, msg, 0);
    else if (rc == -EBADMSG)
        send_otlp(rq, 400, 3, "Content-Encoding gzip, but the body is not gzip data", 0);
    else
        send_otlp(rq, 503, 14, "out of memory: retry later", 0);
    return NULL;
}

void http_otlp_serve(request *rq, const char *body, size_t len)
{
    char *owned;
    if (!(body = otlp_body(rq, body, &len, &owned)))
        return;
    http_json_error err;
    int n = otlp_in_parse(body, len, rq->otlp_json ? OTLP_IN_JSON : OTLP_IN_PROTOBUF, http_on_entry, rq, &err);
    if (n == -EINVAL) {
        http_body_refused(rq, &err, "OTLP/HTTP body refused");
        send_otlp(rq, 400, 3, err.text, 0);
    } else if (n < 0 && !rq->outcomes[OUT_OK]) {
        send_otlp(rq, 503, 14, "out of memory: retry later", 0);
    } else {
        if (n < 0)
            rq->outcomes[OUT_NOMEM]++;
        send_otlp_result(rq);
    }
    free(owned);
}
