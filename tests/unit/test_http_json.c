/* test_http_json.c — HTTP ingest bodies -> records: one object, arrays, NDJSON (blank lines, CRLF), a pretty-printed
 * object as a batch, nested metadata and every JSON type in docs/protocol.md's text form, null fields, log_id kept or made,
 * timestamps, and every refusal with its text: syntax errors with line and column (whole body and per NDJSON line),
 * not an object, message missing or not a string, a direct field or metadata of the wrong type, a key given twice,
 * nesting past 32, empty bodies, invalid UTF-8, a callback that stops. Each good entry goes on through record_encode
 * and back through the protobuf-c decoder, so what is checked is what the log service would receive. Bodies are
 * copied into exact-size heap buffers (never NUL-terminated), so ASan sees any read past the end. */
#include "check.h"
#include "ingest/http_json.h"
#include "record.h"

#include <errno.h>
#include <logagent/v1/log_service.pb-c.h>
#include <stdlib.h>

#define NOW 1700000000123456789LL
#define MAX_SEEN 16

typedef struct seen {
    size_t index, line;
    int status;
    char error[HTTP_JSON_ERROR_MAX];
    Logagent__V1__WriteLogRequest *req; /* decoded record (status OK) */
    char log_id[80];                    /* record_info's log_id */
} seen;

typedef struct results {
    record_enc enc;
    size_t n;
    seen s[MAX_SEEN];
    int stop_at; /* >= 0: the callback returns -EINTR at this entry */
} results;

static record_source SRC = {.pid = 7, .comm = "http", .hostname = "h"};

static int collect(void *arg, const http_json_entry *e)
{
    results *r = arg;
    if (r->stop_at >= 0 && (int)r->n == r->stop_at)
        return -EINTR;
    if (r->n >= MAX_SEEN)
        return -ENOSPC;
    seen *s = &r->s[r->n++];
    memset(s, 0, sizeof *s);
    s->index = e->index;
    s->line = e->line;
    s->status = e->status;
    CHECK((e->status == HTTP_JSON_OK) == (e->record != NULL));
    CHECK((e->status == HTTP_JSON_OK) == (e->error == NULL));
    if (e->error)
        snprintf(s->error, sizeof s->error, "%s", e->error);
    if (e->record) {
        record_info info;
        CHECK_INT(record_encode(&r->enc, e->record, &SRC, NOW, &info), 0);
        snprintf(s->log_id, sizeof s->log_id, "%.*s", (int)info.log_id_len, info.log_id);
        s->req = logagent__v1__write_log_request__unpack(NULL, r->enc.out_len, r->enc.out);
        CHECK(s->req != NULL);
    }
    return 0;
}

/* Parses text (copied to an exact-size buffer) and returns http_json_parse's result; r holds the entries. */
static int parse(results *r, const char *text, enum http_json_mode mode, http_json_error *err)
{
    memset(r, 0, sizeof *r);
    r->stop_at = -1;
    CHECK_INT(record_enc_init(&r->enc), 0);
    size_t len = strlen(text);
    char *body = malloc(len ? len : 1);
    memcpy(body, text, len);
    memset(err, 0, sizeof *err);
    int rc = http_json_parse(body, len, mode, collect, r, err);
    free(body);
    return rc;
}

static void done(results *r)
{
    for (size_t i = 0; i < r->n; i++)
        if (r->s[i].req)
            logagent__v1__write_log_request__free_unpacked(r->s[i].req, NULL);
    record_enc_free(&r->enc);
}

static const char *meta(const Logagent__V1__WriteLogRequest *q, const char *k)
{
    for (size_t i = 0; q && i < q->n_metadata; i++)
        if (strcmp(q->metadata[i]->key, k) == 0)
            return q->metadata[i]->value;
    return NULL;
}

static int is_hex32(const char *s)
{
    return strlen(s) == 32 && strspn(s, "0123456789abcdef") == 32;
}

static void test_one_object_every_field(void)
{
    results r;
    http_json_error err;
    int rc = parse(&r,
                   "{\"message\": \"user logged in\", \"service_name\": \"auth\", \"level\": \"warning\",\n"
                   " \"trace_id\": \"t-1\", \"span_id\": \"s-1\", \"user\": \"alice\",\n"
                   " \"metadata\": {\"adv_id\": 1234567, \"neg\": -5, \"ratio\": 0.85, \"whole\": 2.0, \"ok\": true,\n"
                   "   \"no\": false, \"nothing\": null, \"custom_metrics\": {\"cpu_usage\": 0.85, \"tags\": [\"a\", 1]},\n"
                   "   \"list\": [1, [2, {}]], \"nul\": \"a\\u0000b\", \"_secret\": \"x\"}}",
                   HTTP_JSON_ONE, &err);
    CHECK_INT(rc, 1);
    CHECK_INT(r.n, 1);
    const Logagent__V1__WriteLogRequest *q = r.s[0].req;
    CHECK_INT(r.s[0].status, HTTP_JSON_OK);
    CHECK_INT(r.s[0].index, 0);
    CHECK_INT(r.s[0].line, 0);
    if (q) {
        CHECK_STR(q->message, "user logged in");
        CHECK_STR(q->service_name, "auth");
        CHECK_STR(q->level, "WARN");
        CHECK_STR(q->trace_id, "t-1");
        CHECK_STR(q->span_id, "s-1");
        CHECK_INT(q->timestamp_unix_nano, NOW);
        CHECK(is_hex32(q->log_id));
        CHECK_STR(r.s[0].log_id, q->log_id); /* record_info says which log_id the record got */
        CHECK_STR(meta(q, "user"), "alice");
        CHECK_STR(meta(q, "adv_id"), "1234567");
        CHECK_STR(meta(q, "neg"), "-5");
        CHECK_STR(meta(q, "ratio"), "0.85");
        CHECK_STR(meta(q, "whole"), "2.0");
        CHECK_STR(meta(q, "ok"), "true");
        CHECK_STR(meta(q, "no"), "false");
        CHECK_STR(meta(q, "nothing"), "");
        CHECK_STR(meta(q, "custom_metrics"), "{\"cpu_usage\":0.85,\"tags\":[\"a\",1]}");
        CHECK_STR(meta(q, "list"), "[1,[2,{}]]");
        const char *nul = meta(q, "nul"); /* "a\0b": the C string stops at the NUL, the bytes go on */
        CHECK(nul && nul[0] == 'a' && nul[1] == 0 && nul[2] == 'b');
        CHECK(meta(q, "_secret") == NULL);   /* reserved: record_encode drops it, as on the socket */
        CHECK(meta(q, "metadata") == NULL);  /* flattened, not a key of its own */
        CHECK_INT(q->n_metadata, 11);
        CHECK_STR(q->metadata[0]->key, "user"); /* top-level keys first, then metadata's, each in body order */
        CHECK_STR(q->metadata[1]->key, "adv_id");
    }
    done(&r);
}

static void test_log_id_nulls_and_timestamps(void)
{
    results r;
    http_json_error err;
    CHECK_INT(parse(&r,
                    "[{\"message\": \"a\", \"log_id\": \"0123456789abcdef0123456789abcdef\", \"level\": null,\n"
                    "  \"service_name\": null, \"trace_id\": null, \"metadata\": null, \"timestamp\": 1700000000000000001},\n"
                    " {\"message\": \"\", \"timestamp\": 1700000000.5, \"log_id\": \"\"},\n"
                    " {\"message\": \"c\", \"metadata\": {\"timestamp\": \"2024-08-30T10:30:45.123456+00:00\"}},\n"
                    " {\"message\": \"d\", \"timestamp\": \"yesterday\"},\n"
                    " {\"metadata\": {\"message\": \"from metadata\", \"level\": \"error\"}}]",
                    HTTP_JSON_MANY, &err),
              5);
    CHECK_INT(r.n, 5);
    for (size_t i = 0; i < r.n; i++) {
        CHECK_INT(r.s[i].status, HTTP_JSON_OK);
        CHECK_INT(r.s[i].index, i);
        CHECK_INT(r.s[i].line, 0);
    }
    if (r.s[0].req && r.s[1].req && r.s[2].req && r.s[3].req && r.s[4].req) {
        CHECK_STR(r.s[0].req->log_id, "0123456789abcdef0123456789abcdef"); /* kept: the idempotency key */
        CHECK_STR(r.s[0].log_id, "0123456789abcdef0123456789abcdef");
        CHECK_STR(r.s[0].req->level, "INFO"); /* null: absent */
        CHECK_STR(r.s[0].req->service_name, "");
        CHECK_INT(r.s[0].req->n_metadata, 0);
        CHECK_INT(r.s[0].req->timestamp_unix_nano, 1700000000000000001LL);
        CHECK_STR(r.s[1].req->message, "");
        CHECK(is_hex32(r.s[1].req->log_id)); /* empty: made by the agent */
        CHECK_INT(r.s[1].req->timestamp_unix_nano, 1700000000500000000LL);
        CHECK_INT(r.s[2].req->timestamp_unix_nano, 1725013845123456000LL);
        CHECK_INT(r.s[3].req->timestamp_unix_nano, NOW);
        CHECK_STR(meta(r.s[3].req, "timestamp"), "yesterday");
        CHECK_STR(r.s[4].req->message, "from metadata"); /* write_log(**metadata) binds parameters by name */
        CHECK_STR(r.s[4].req->level, "ERROR");
        CHECK(strcmp(r.s[0].req->log_id, r.s[1].req->log_id) != 0);
    }
    done(&r);
}

static void test_ndjson(void)
{
    results r;
    http_json_error err;
    const char *body = "\n{\"message\": \"one\"}\r\n   \n\t{\"message\": \"two\", \"n\": 2}\n{\"message\": \"three\"}";
    CHECK_INT(parse(&r, body, HTTP_JSON_MANY, &err), 3);
    CHECK_INT(r.n, 3);
    static const size_t lines[] = {2, 4, 5};
    static const char *const msgs[] = {"one", "two", "three"};
    for (size_t i = 0; i < 3 && i < r.n; i++) {
        CHECK_INT(r.s[i].status, HTTP_JSON_OK);
        CHECK_INT(r.s[i].index, i);
        CHECK_INT(r.s[i].line, lines[i]);
        if (r.s[i].req)
            CHECK_STR(r.s[i].req->message, msgs[i]);
    }
    if (r.n > 1 && r.s[1].req)
        CHECK_STR(meta(r.s[1].req, "n"), "2");
    done(&r);

    /* a bad line is that entry's error, with the body's line number; the lines around it go on */
    CHECK_INT(parse(&r, "{\"message\": \"a\"}\n{\"message\": \"b\"\n[1]\n{\"message\": 5}\nnull\n{\"message\": \"f\"}\n",
                    HTTP_JSON_MANY, &err),
              6);
    CHECK_INT(r.n, 6);
    if (r.n == 6) {
        CHECK_INT(r.s[0].status, HTTP_JSON_OK);
        CHECK_INT(r.s[1].status, HTTP_JSON_MALFORMED);
        CHECK_INT(r.s[1].line, 2);
        CHECK_STR(r.s[1].error, "invalid JSON at line 2, column 15: '}' expected near end of file");
        CHECK_INT(r.s[2].status, HTTP_JSON_INVALID);
        CHECK_STR(r.s[2].error, "expected a JSON object, got an array");
        CHECK_INT(r.s[3].status, HTTP_JSON_INVALID);
        CHECK_STR(r.s[3].error, "'message' must be a string, got a number");
        CHECK_STR(r.s[4].error, "expected a JSON object, got null");
        CHECK_INT(r.s[5].status, HTTP_JSON_OK);
        CHECK_INT(r.s[5].index, 5);
        CHECK_INT(r.s[5].line, 6);
    }
    done(&r);

    /* one pretty-printed object is a batch of one, not four bad lines */
    CHECK_INT(parse(&r, "{\n  \"message\": \"pretty\",\n  \"level\": \"debug\"\n}\n", HTTP_JSON_MANY, &err), 1);
    CHECK(r.n == 1 && r.s[0].status == HTTP_JSON_OK && r.s[0].req && !strcmp(r.s[0].req->level, "DEBUG"));
    done(&r);
}

/* One entry's refusal: the body as ONE, expecting this status and text. */
static void refused_entry(const char *body, int status, const char *text)
{
    results r;
    http_json_error err;
    CHECK_INT(parse(&r, body, HTTP_JSON_ONE, &err), 1);
    CHECK_INT(r.n, 1);
    CHECK_INT(r.s[0].status, status);
    if (strcmp(r.s[0].error, text) != 0)
        fprintf(stderr, "body: %s\n", body);
    CHECK_STR(r.s[0].error, text);
    done(&r);
}

/* A whole body's refusal: -EINVAL, this status and text, the callback never called. */
static void refused_body(const char *body, enum http_json_mode mode, int status, const char *text)
{
    results r;
    http_json_error err;
    CHECK_INT(parse(&r, body, mode, &err), -EINVAL);
    CHECK_INT(r.n, 0);
    CHECK_INT(err.status, status);
    if (strcmp(err.text, text) != 0)
        fprintf(stderr, "body: %s\n", body);
    CHECK_STR(err.text, text);
    done(&r);
}

static void test_entry_errors(void)
{
    refused_entry("{\"level\": \"INFO\"}", HTTP_JSON_INVALID, "'message' is missing (a string is required)");
    refused_entry("{\"message\": 42}", HTTP_JSON_INVALID, "'message' must be a string, got a number");
    refused_entry("{\"message\": null}", HTTP_JSON_INVALID, "'message' must be a string, got null");
    refused_entry("{\"message\": {\"a\": 1}}", HTTP_JSON_INVALID, "'message' must be a string, got an object");
    refused_entry("{\"message\": \"m\", \"level\": 3}", HTTP_JSON_INVALID, "'level' must be a string, got a number");
    refused_entry("{\"message\": \"m\", \"service_name\": true}", HTTP_JSON_INVALID,
                  "'service_name' must be a string, got a boolean");
    refused_entry("{\"message\": \"m\", \"trace_id\": [1]}", HTTP_JSON_INVALID,
                  "'trace_id' must be a string, got an array");
    refused_entry("{\"message\": \"m\", \"log_id\": 12}", HTTP_JSON_INVALID, "'log_id' must be a string, got a number");
    refused_entry("{\"message\": \"m\", \"metadata\": {\"span_id\": 1}}", HTTP_JSON_INVALID,
                  "'span_id' must be a string, got a number");
    refused_entry("{\"message\": \"m\", \"metadata\": \"a=b\"}", HTTP_JSON_INVALID,
                  "'metadata' must be an object, got a string");
    refused_entry("{\"message\": \"m\", \"metadata\": [1, 2]}", HTTP_JSON_INVALID,
                  "'metadata' must be an object, got an array");
    refused_entry("{\"message\": \"m\", \"user\": \"a\", \"metadata\": {\"user\": \"b\"}}", HTTP_JSON_INVALID,
                  "'user' is given both at the top level and in 'metadata'");
    refused_entry("{\"metadata\": {\"message\": \"m\"}, \"message\": \"n\"}", HTTP_JSON_INVALID,
                  "'message' is given both at the top level and in 'metadata'");
    refused_entry("[{\"message\": \"m\"}]", HTTP_JSON_INVALID,
                  "expected a JSON object, got an array (POST arrays to /api/write_logs/)");
    refused_entry("\"just text\"", HTTP_JSON_INVALID, "expected a JSON object, got a string");
    refused_entry("17", HTTP_JSON_INVALID, "expected a JSON object, got a number");

    /* nesting: the record map is level 1, so 31 more containers are allowed and a 32nd is not */
    char deep[200], *p = deep;
    p += sprintf(p, "{\"message\": \"m\", \"d\": ");
    for (int i = 0; i < 31; i++)
        *p++ = '[';
    for (int i = 0; i < 31; i++)
        *p++ = ']';
    strcpy(p, "}");
    results r;
    http_json_error err;
    CHECK_INT(parse(&r, deep, HTTP_JSON_ONE, &err), 1);
    CHECK(r.n == 1 && r.s[0].status == HTTP_JSON_OK);
    if (r.n == 1 && r.s[0].status != HTTP_JSON_OK)
        fprintf(stderr, "31 levels: %s\n", r.s[0].error);
    done(&r);
    p = deep + strlen("{\"message\": \"m\", \"d\": ");
    for (int i = 0; i < 32; i++)
        *p++ = '[';
    for (int i = 0; i < 32; i++)
        *p++ = ']';
    strcpy(p, "}");
    refused_entry(deep, HTTP_JSON_MALFORMED, "nested deeper than 32 levels");
}

static void test_body_errors(void)
{
    refused_body("", HTTP_JSON_ONE, HTTP_JSON_MALFORMED, "empty body: expected a JSON object");
    refused_body(" \r\n\t", HTTP_JSON_MANY, HTTP_JSON_MALFORMED,
                 "empty body: expected a JSON array of objects, or NDJSON");
    refused_body("not json", HTTP_JSON_ONE, HTTP_JSON_MALFORMED,
                 "invalid JSON at line 1, column 3: invalid token near 'not'");
    refused_body("{\"message\": \"trunc", HTTP_JSON_ONE, HTTP_JSON_MALFORMED,
                 "invalid JSON at line 1, column 18: premature end of input near '\"trunc'");
    refused_body("{\"message\": \"a\",\n \"level\" \"x\"}", HTTP_JSON_ONE, HTTP_JSON_MALFORMED,
                 "invalid JSON at line 2, column 12: ':' expected near '\"x\"'");
    refused_body("{\"message\": \"a\"} {\"message\": \"b\"}", HTTP_JSON_ONE, HTTP_JSON_MALFORMED,
                 "invalid JSON at line 1, column 18: end of file expected near '{'");
    refused_body("[{\"message\": \"a\"},\n {\"message\": }]", HTTP_JSON_MANY, HTTP_JSON_MALFORMED,
                 "invalid JSON at line 2, column 14: unexpected token near '}'");
    refused_body("{\"message\": \"\xff\"}", HTTP_JSON_ONE, HTTP_JSON_MALFORMED,
                 "invalid JSON at line 1, column 13: unable to decode byte 0xff near '\"'");
    refused_body("\"text\"", HTTP_JSON_MANY, HTTP_JSON_INVALID,
                 "expected a JSON array of objects, NDJSON or one object, got a string");
    refused_body("12", HTTP_JSON_MANY, HTTP_JSON_INVALID,
                 "expected a JSON array of objects, NDJSON or one object, got a number");
}

static void test_empty_array_and_stop(void)
{
    results r;
    http_json_error err;
    CHECK_INT(parse(&r, " [ ] ", HTTP_JSON_MANY, &err), 0);
    CHECK_INT(r.n, 0);
    done(&r);

    /* the callback's negative return stops the parse and is returned: array, NDJSON and one object alike */
    static const char *const bodies[] = {"[{\"message\": \"a\"}, {\"message\": \"b\"}, {\"message\": \"c\"}]",
                                         "{\"message\": \"a\"}\n{\"message\": \"b\"}\n{\"message\": \"c\"}\n"};
    for (size_t b = 0; b < 2; b++) {
        memset(&r, 0, sizeof r);
        CHECK_INT(record_enc_init(&r.enc), 0);
        r.stop_at = 1;
        CHECK_INT(http_json_parse(bodies[b], strlen(bodies[b]), HTTP_JSON_MANY, collect, &r, &err), -EINTR);
        CHECK_INT(r.n, 1);
        done(&r);
    }
    memset(&r, 0, sizeof r);
    CHECK_INT(record_enc_init(&r.enc), 0);
    r.stop_at = 0;
    CHECK_INT(http_json_parse("{\"message\": \"a\"}", 16, HTTP_JSON_ONE, collect, &r, &err), -EINTR);
    done(&r);
}

/* Many entries in both forms: every one arrives once, in order. */
static int count_ok(void *arg, const http_json_entry *e)
{
    size_t *n = arg;
    if (e->status != HTTP_JSON_OK || e->index != *n || e->record->type != MSGPACK_OBJECT_MAP)
        return -EPROTO;
    (*n)++;
    return 0;
}

static void test_many_entries(void)
{
    enum { N = 2000 };
    size_t cap = N * 64 + 16, len = 0;
    char *arr = malloc(cap), *nd = malloc(cap);
    size_t alen = 0;
    arr[alen++] = '[';
    for (int i = 0; i < N; i++) {
        alen += (size_t)sprintf(arr + alen, "%s{\"message\": \"m%d\", \"i\": %d}", i ? "," : "", i, i);
        len += (size_t)sprintf(nd + len, "{\"message\": \"m%d\", \"i\": %d}\n", i, i);
    }
    arr[alen++] = ']';
    http_json_error err;
    size_t n = 0;
    CHECK_INT(http_json_parse(arr, alen, HTTP_JSON_MANY, count_ok, &n, &err), N);
    CHECK_INT(n, N);
    n = 0;
    CHECK_INT(http_json_parse(nd, len, HTTP_JSON_MANY, count_ok, &n, &err), N);
    CHECK_INT(n, N);
    free(arr);
    free(nd);
}

int main(void)
{
    test_one_object_every_field();
    test_log_id_nulls_and_timestamps();
    test_ndjson();
    test_entry_errors();
    test_body_errors();
    test_empty_array_and_stop();
    test_many_entries();
    return check_done("test_http_json");
}
