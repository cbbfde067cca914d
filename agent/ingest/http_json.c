/* http_json.c — JSON request bodies -> msgpack records (see http_json.h for the contract).
 *
 * jansson parses (JSON_DECODE_ANY | JSON_ALLOW_NUL: any top-level value, so a wrong one can be named; strings may hold
 * \u0000 as msgpack strings may). Each entry is then built as a msgpack_object in a msgpack_zone, reset per entry:
 * maps and arrays are allocated in the zone, strings point into jansson's values, which live until the callback
 * returns. No msgpack bytes are packed and unpacked again. */
#include "ingest/http_json.h"

#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

enum { ZONE_CHUNK = 8192, KEY_SHOWN = 64 };

static const size_t JSON_FLAGS = JSON_DECODE_ANY | JSON_ALLOW_NUL;

/* The direct fields of WriteLogRequest: a string or null (absent), nothing else. */
static const char *const DIRECT[] = {"message", "service_name", "level", "trace_id", "span_id", "log_id"};

typedef struct conv {
    msgpack_zone *zone;
    int status;                     /* of the entry being built */
    int nomem;                      /* an allocation failed: the parse stops with -ENOMEM (the agent's trouble,
                                     * not the entry's: it is not handed out as a bad entry) */
    char error[HTTP_JSON_ERROR_MAX];
} conv;

static const char *type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER:
    case JSON_REAL: return "a number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    default: return "null";
    }
}

static int fail(conv *c, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(conv *c, int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->error, sizeof c->error, fmt, ap);
    va_end(ap);
    c->status = status;
    return -1;
}

static int no_memory(conv *c)
{
    c->nomem = 1;
    return -1;
}

/* How many bytes of a key to show in an error: at most KEY_SHOWN, cut at a UTF-8 character boundary. */
static int key_shown(const char *key, size_t len)
{
    if (len <= KEY_SHOWN)
        return (int)len;
    len = KEY_SHOWN;
    while (len > 0 && ((unsigned char)key[len] & 0xC0) == 0x80)
        len--;
    return (int)len;
}

static msgpack_object str_object(const char *s, size_t n)
{
    msgpack_object o;
    o.type = MSGPACK_OBJECT_STR;
    o.via.str.ptr = s;
    o.via.str.size = (uint32_t)n; /* bodies are at most 64 MiB */
    return o;
}

/* ---- values ------------------------------------------------------------------------------------------- */

static int to_object(conv *c, json_t *v, msgpack_object *o, int depth);

/* A JSON array or object that is the depth-th container open (its items are inside depth containers). */
static int container_to_object(conv *c, json_t *v, msgpack_object *o, int depth)
{
    if (depth > HTTP_JSON_MAX_DEPTH)
        return fail(c, HTTP_JSON_MALFORMED, "nested deeper than %d levels", HTTP_JSON_MAX_DEPTH);
    size_t n = json_is_object(v) ? json_object_size(v) : json_array_size(v), i = 0;
    void *items = NULL;
    if (n && !(items = msgpack_zone_malloc(c->zone, n * (json_is_object(v) ? sizeof(msgpack_object_kv)
                                                                           : sizeof(msgpack_object)))))
        return no_memory(c);
    if (json_is_array(v)) {
        msgpack_object *arr = items;
        for (; i < n; i++)
            if (to_object(c, json_array_get(v, i), &arr[i], depth) < 0)
                return -1;
        o->type = MSGPACK_OBJECT_ARRAY;
        o->via.array.size = (uint32_t)n;
        o->via.array.ptr = arr;
        return 0;
    }
    msgpack_object_kv *kv = items;
    const char *key;
    size_t klen;
    json_t *val;
    json_object_keylen_foreach(v, key, klen, val) {
        kv[i].key = str_object(key, klen);
        if (to_object(c, val, &kv[i].val, depth) < 0)
            return -1;
        i++;
    }
    o->type = MSGPACK_OBJECT_MAP;
    o->via.map.size = (uint32_t)i;
    o->via.map.ptr = kv;
    return 0;
}

/* One JSON value as a msgpack object; `depth` counts the containers v is in. */
static int to_object(conv *c, json_t *v, msgpack_object *o, int depth)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
    case JSON_ARRAY:
        return container_to_object(c, v, o, depth + 1);
    case JSON_STRING:
        *o = str_object(json_string_value(v), json_string_length(v));
        return 0;
    case JSON_INTEGER: {
        json_int_t n = json_integer_value(v);
        o->type = n >= 0 ? MSGPACK_OBJECT_POSITIVE_INTEGER : MSGPACK_OBJECT_NEGATIVE_INTEGER;
        if (n >= 0)
            o->via.u64 = (uint64_t)n;
        else
            o->via.i64 = (int64_t)n;
        return 0;
    }
    case JSON_REAL:
        o->type = MSGPACK_OBJECT_FLOAT64;
        o->via.f64 = json_real_value(v);
        return 0;
    case JSON_TRUE:
    case JSON_FALSE:
        o->type = MSGPACK_OBJECT_BOOLEAN;
        o->via.boolean = json_is_true(v);
        return 0;
    default:
        o->type = MSGPACK_OBJECT_NIL;
        return 0;
    }
}

/* ---- entries ------------------------------------------------------------------------------------------ */

/* Index of key in DIRECT, or -1. */
static int direct_field(const char *key, size_t len)
{
    for (size_t i = 0; i < sizeof DIRECT / sizeof DIRECT[0]; i++)
        if (strlen(DIRECT[i]) == len && memcmp(DIRECT[i], key, len) == 0)
            return (int)i;
    return -1;
}

static int is_metadata_key(const char *key, size_t len) { return len == 8 && memcmp(key, "metadata", 8) == 0; }

/* Adds one key of the entry to the record map kv[*n]. `top` is the entry when key comes from its metadata (to refuse a
 * key given twice), NULL for a top-level key. Sets *has_message. */
static int add_pair(conv *c, json_t *top, const char *key, size_t klen, json_t *val, msgpack_object_kv *kv, size_t *n,
                    int *has_message)
{
    int direct = direct_field(key, klen);
    if (top && !is_metadata_key(key, klen) && json_object_getn(top, key, klen))
        return fail(c, HTTP_JSON_INVALID, "'%.*s' is given both at the top level and in 'metadata'",
                    key_shown(key, klen), key);
    if (direct == 0 && !json_is_string(val))
        return fail(c, HTTP_JSON_INVALID, "'message' must be a string, got %s", type_name(val));
    if (direct > 0 && !json_is_string(val) && !json_is_null(val))
        return fail(c, HTTP_JSON_INVALID, "'%s' must be a string, got %s", DIRECT[direct], type_name(val));
    if (direct > 0 && json_is_null(val))
        return 0; /* write_log(service_name=None): absent */
    *has_message |= direct == 0;
    kv[*n].key = str_object(key, klen);
    if (to_object(c, val, &kv[*n].val, 1) < 0)
        return -1;
    (*n)++;
    return 0;
}

/* Builds the record map of one entry into *out (allocated in c->zone). 0, or -1 with c->status/c->error set. */
static int entry_to_record(conv *c, json_t *entry, int one, msgpack_object *out)
{
    if (!json_is_object(entry))
        return fail(c, HTTP_JSON_INVALID, "expected a JSON object, got %s%s", type_name(entry),
                    one && json_is_array(entry) ? " (POST arrays to /api/write_logs/)" : "");
    json_t *meta = json_object_get(entry, "metadata");
    if (meta && !json_is_object(meta) && !json_is_null(meta))
        return fail(c, HTTP_JSON_INVALID, "'metadata' must be an object, got %s", type_name(meta));
    size_t cap = json_object_size(entry) + (json_is_object(meta) ? json_object_size(meta) : 0), n = 0;
    msgpack_object_kv *kv = msgpack_zone_malloc(c->zone, (cap ? cap : 1) * sizeof *kv);
    if (!kv)
        return no_memory(c);
    int has_message = 0;
    const char *key;
    size_t klen;
    json_t *val;
    json_object_keylen_foreach(entry, key, klen, val) {
        if (is_metadata_key(key, klen))
            continue;
        if (add_pair(c, NULL, key, klen, val, kv, &n, &has_message) < 0)
            return -1;
    }
    if (json_is_object(meta)) {
        json_object_keylen_foreach(meta, key, klen, val) {
            if (add_pair(c, entry, key, klen, val, kv, &n, &has_message) < 0)
                return -1;
        }
    }
    if (!has_message)
        return fail(c, HTTP_JSON_INVALID, "'message' is missing (a string is required)");
    out->type = MSGPACK_OBJECT_MAP;
    out->via.map.size = (uint32_t)n;
    out->via.map.ptr = kv;
    return 0;
}

/* Hands one parsed entry (or the syntax error that stood for it: entry NULL) to fn. */
static int deliver(conv *c, json_t *entry, int one, size_t index, size_t line, http_json_fn fn, void *arg)
{
    msgpack_object rec;
    http_json_entry e = {.index = index, .line = line};
    msgpack_zone_clear(c->zone);
    int built = entry && entry_to_record(c, entry, one, &rec) == 0;
    if (c->nomem)
        return -ENOMEM;
    if (built) {
        e.status = HTTP_JSON_OK;
        e.record = &rec;
    } else {
        e.status = c->status;
        e.error = c->error;
    }
    return fn(arg, &e);
}

/* ---- bodies ------------------------------------------------------------------------------------------- */

static int is_blank(char ch) { return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n'; }

static int refuse(http_json_error *err, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int refuse(http_json_error *err, int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->text, sizeof err->text, fmt, ap);
    va_end(ap);
    err->status = status;
    return -EINVAL;
}

static void syntax_text(char *out, size_t cap, const json_error_t *je, size_t line)
{
    snprintf(out, cap, "invalid JSON at line %zu, column %d: %s", line ? line : (size_t)(je->line > 0 ? je->line : 1),
             je->column > 0 ? je->column : 1, je->text);
}

/* NDJSON: every non-blank line is an entry. */
static int parse_lines(conv *c, const char *body, size_t len, http_json_fn fn, void *arg)
{
    size_t index = 0, line = 0;
    for (const char *p = body, *end = body + len; p < end;) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *eol = nl ? nl : end;
        line++;
        const char *q = p;
        while (q < eol && is_blank(*q))
            q++;
        if (q < eol) {
            json_error_t je;
            json_t *entry = json_loadb(p, (size_t)(eol - p), JSON_FLAGS, &je);
            if (!entry && json_error_code(&je) == json_error_out_of_memory)
                return -ENOMEM;
            if (!entry) {
                syntax_text(c->error, sizeof c->error, &je, line);
                c->status = HTTP_JSON_MALFORMED;
            }
            int rc = deliver(c, entry, 0, index++, line, fn, arg);
            json_decref(entry);
            if (rc < 0)
                return rc;
        }
        p = eol + 1;
    }
    return (int)index;
}

/* A body parsed as one JSON value: an array of entries, or one entry. */
static int parse_value(conv *c, json_t *doc, enum http_json_mode mode, http_json_fn fn, void *arg,
                       http_json_error *err)
{
    if (mode == HTTP_JSON_ONE || json_is_object(doc)) {
        int rc = deliver(c, doc, mode == HTTP_JSON_ONE, 0, 0, fn, arg);
        return rc < 0 ? rc : 1;
    }
    if (!json_is_array(doc))
        return refuse(err, HTTP_JSON_INVALID, "expected a JSON array of objects, NDJSON or one object, got %s",
                      type_name(doc));
    size_t n = json_array_size(doc);
    for (size_t i = 0; i < n; i++) {
        int rc = deliver(c, json_array_get(doc, i), 0, i, 0, fn, arg);
        if (rc < 0)
            return rc;
    }
    return (int)n;
}

int http_json_parse(const char *body, size_t len, enum http_json_mode mode, http_json_fn fn, void *arg,
                    http_json_error *err)
{
    size_t skip = 0;
    while (skip < len && is_blank(body[skip]))
        skip++;
    if (skip == len)
        return refuse(err, HTTP_JSON_MALFORMED, "empty body: expected %s",
                      mode == HTTP_JSON_ONE ? "a JSON object" : "a JSON array of objects, or NDJSON");
    conv c = {.zone = msgpack_zone_new(ZONE_CHUNK)};
    if (!c.zone)
        return -ENOMEM;
    json_error_t je;
    json_t *doc = json_loadb(body, len, JSON_FLAGS, &je);
    int rc;
    if (doc) {
        rc = parse_value(&c, doc, mode, fn, arg, err);
    } else if (json_error_code(&je) == json_error_out_of_memory) {
        rc = -ENOMEM;
    } else if (mode == HTTP_JSON_MANY && body[skip] != '[') {
        rc = parse_lines(&c, body, len, fn, arg);
    } else {
        char text[HTTP_JSON_ERROR_MAX];
        syntax_text(text, sizeof text, &je, 0);
        rc = refuse(err, HTTP_JSON_MALFORMED, "%s", text);
    }
    json_decref(doc);
    msgpack_zone_free(c.zone);
    return rc;
}
