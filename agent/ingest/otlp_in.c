/* otlp_in.c — an OTLP ExportLogsServiceRequest (protobuf or JSON) into records, one msgpack map per LogRecord
 * (otlp_in.h has the mapping).
 *
 * DESIGN
 * One mapper, over protobuf-c's structs: a protobuf body is unpacked by protobuf-c (the official protos, built by
 * proto/CMakeLists.txt); a JSON body is read by jansson into the same structs, allocated in a msgpack_zone (so the
 * JSON form cannot mean anything the protobuf form does not). Each LogRecord's map is built in a zone cleared per
 * record; strings point into the request (protobuf-c's or jansson's) or into the zone, and live until fn returns. */
#include "ingest/otlp_in.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <opentelemetry/proto/collector/logs/v1/logs_service.pb-c.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef Opentelemetry__Proto__Collector__Logs__V1__ExportLogsServiceRequest ExportRequest;
typedef Opentelemetry__Proto__Logs__V1__ResourceLogs ResourceLogs;
typedef Opentelemetry__Proto__Logs__V1__ScopeLogs ScopeLogs;
typedef Opentelemetry__Proto__Logs__V1__LogRecord LogRecord;
typedef Opentelemetry__Proto__Resource__V1__Resource Resource;
typedef Opentelemetry__Proto__Common__V1__AnyValue AnyValue;
typedef Opentelemetry__Proto__Common__V1__KeyValue KeyValue;
typedef Opentelemetry__Proto__Common__V1__ArrayValue ArrayValue;
typedef Opentelemetry__Proto__Common__V1__KeyValueList KeyValueList;

#define ZONE_CHUNK 8192
#define MAX_DEPTH HTTP_JSON_MAX_DEPTH

typedef struct conv {
    uint64_t id[2];     /* the request's hash: each record's log_id is made from it and the record's index */
    msgpack_zone *zone; /* the record being built (cleared per record) */
    msgpack_zone *doc;  /* JSON only: the request's structs */
    int status, nomem;
    char error[HTTP_JSON_ERROR_MAX];
} conv;

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

static void *zalloc(conv *c, msgpack_zone *z, size_t n)
{
    void *p = msgpack_zone_malloc(z, n ? n : 1);
    if (!p)
        c->nomem = 1;
    else
        memset(p, 0, n ? n : 1);
    return p;
}

static msgpack_object str_obj(const char *s, size_t n)
{
    msgpack_object o = {.type = MSGPACK_OBJECT_STR};
    o.via.str.ptr = s;
    o.via.str.size = (uint32_t)n;
    return o;
}

/* ---- AnyValue -> msgpack object, and -> JSON text (a body that is not a string) ---------------------------- */

static int any_to_obj(conv *c, const AnyValue *v, msgpack_object *o, int depth)
{
    if (depth > MAX_DEPTH)
        return fail(c, HTTP_JSON_INVALID, "value nested deeper than %d levels", MAX_DEPTH);
    memset(o, 0, sizeof *o);
    switch (v ? v->value_case : OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE__NOT_SET) {
    case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE:
        *o = str_obj(v->string_value, strlen(v->string_value));
        return 0;
    case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_BOOL_VALUE:
        o->type = MSGPACK_OBJECT_BOOLEAN;
        o->via.boolean = v->bool_value;
        return 0;
    case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_INT_VALUE:
        o->type = v->int_value < 0 ? MSGPACK_OBJECT_NEGATIVE_INTEGER : MSGPACK_OBJECT_POSITIVE_INTEGER;
        o->via.i64 = v->int_value;
        return 0;
    case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_DOUBLE_VALUE:
        o->type = MSGPACK_OBJECT_FLOAT64;
        o->via.f64 = v->double_value;
        return 0;
    case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_BYTES_VALUE:
        o->type = MSGPACK_OBJECT_BIN;
        o->via.bin.ptr = (const char *)v->bytes_value.data;
        o->via.bin.size = (uint32_t)v->bytes_value.len;
        return 0;
    case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_ARRAY_VALUE: {
        size_t n = v->array_value ? v->array_value->n_values : 0;
        msgpack_object *items = zalloc(c, c->zone, n * sizeof *items);
        if (!items)
            return -1;
        for (size_t i = 0; i < n; i++)
            if (any_to_obj(c, v->array_value->values[i], &items[i], depth + 1) < 0)
                return -1;
        o->type = MSGPACK_OBJECT_ARRAY;
        o->via.array.size = (uint32_t)n;
        o->via.array.ptr = items;
        return 0;
    }
    case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_KVLIST_VALUE: {
        size_t n = v->kvlist_value ? v->kvlist_value->n_values : 0;
        msgpack_object_kv *kv = zalloc(c, c->zone, n * sizeof *kv);
        if (!kv)
            return -1;
        for (size_t i = 0; i < n; i++) {
            const KeyValue *p = v->kvlist_value->values[i];
            kv[i].key = str_obj(p->key, strlen(p->key));
            if (any_to_obj(c, p->value, &kv[i].val, depth + 1) < 0)
                return -1;
        }
        o->type = MSGPACK_OBJECT_MAP;
        o->via.map.size = (uint32_t)n;
        o->via.map.ptr = kv;
        return 0;
    }
    default:
        o->type = MSGPACK_OBJECT_NIL;
        return 0;
    }
}

/* A body that is not a string: its JSON form (a map for a kvlist, bytes as base64 text), into the zone. */
static json_t *any_to_json(const AnyValue *v, int depth);

static json_t *kvs_to_json(KeyValue *const *kvs, size_t n, int depth)
{
    json_t *o = json_object();
    for (size_t i = 0; o && i < n; i++)
        json_object_set_new(o, kvs[i]->key, any_to_json(kvs[i]->value, depth + 1));
    return o;
}

static json_t *any_to_json(const AnyValue *v, int depth)
{
    if (!v || depth > MAX_DEPTH)
        return json_null();
    switch (v->value_case) {
    case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE: return json_string(v->string_value);
    case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_BOOL_VALUE: return json_boolean(v->bool_value);
    case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_INT_VALUE: return json_integer(v->int_value);
    case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_DOUBLE_VALUE: return json_real(v->double_value);
    case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_BYTES_VALUE: {
        static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        size_t n = v->bytes_value.len, o = 0;
        char *s = malloc(4 * ((n + 2) / 3) + 1);
        if (!s)
            return NULL;
        for (size_t i = 0; i < n; i += 3) {
            uint32_t w = (uint32_t)v->bytes_value.data[i] << 16;
            if (i + 1 < n)
                w |= (uint32_t)v->bytes_value.data[i + 1] << 8;
            if (i + 2 < n)
                w |= v->bytes_value.data[i + 2];
            s[o++] = b64[w >> 18 & 63];
            s[o++] = b64[w >> 12 & 63];
            s[o++] = i + 1 < n ? b64[w >> 6 & 63] : '=';
            s[o++] = i + 2 < n ? b64[w & 63] : '=';
        }
        s[o] = 0;
        json_t *j = json_stringn(s, o);
        free(s);
        return j;
    }
    case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_ARRAY_VALUE: {
        json_t *a = json_array();
        for (size_t i = 0; a && v->array_value && i < v->array_value->n_values; i++)
            json_array_append_new(a, any_to_json(v->array_value->values[i], depth + 1));
        return a;
    }
    case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_KVLIST_VALUE:
        return v->kvlist_value ? kvs_to_json(v->kvlist_value->values, v->kvlist_value->n_values, depth)
                               : json_object();
    default: return json_null();
    }
}

static int body_to_message(conv *c, const AnyValue *body, msgpack_object *o)
{
    if (!body || body->value_case == OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE__NOT_SET) {
        *o = str_obj("", 0);
        return 0;
    }
    if (body->value_case == OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE) {
        *o = str_obj(body->string_value, strlen(body->string_value));
        return 0;
    }
    json_t *j = any_to_json(body, 0);
    char *text = j ? json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    json_decref(j);
    if (!text) {
        c->nomem = 1;
        return -1;
    }
    size_t n = strlen(text);
    char *z = zalloc(c, c->zone, n);
    if (z)
        memcpy(z, text, n);
    free(text);
    if (!z)
        return -1;
    *o = str_obj(z, n);
    return 0;
}

/* ---- one LogRecord -------------------------------------------------------------------------------------- */

static const char *severity_name(int n)
{
    static const char *const names[] = {"TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"};
    return n >= 1 && n <= 24 ? names[(n - 1) / 4] : NULL;
}

/* ids: 16 (trace) or 8 (span) bytes as hex; empty or all zero: absent (*o untouched, returns 0); else -1. */
static int hex_id(conv *c, const ProtobufCBinaryData *id, size_t want, const char *name, msgpack_object *o, int *set)
{
    *set = 0;
    if (id->len == 0)
        return 0;
    if (id->len != want)
        return fail(c, HTTP_JSON_INVALID, "%s is %zu bytes, not %zu", name, id->len, want);
    int zero = 1;
    for (size_t i = 0; i < want; i++)
        zero &= id->data[i] == 0;
    if (zero)
        return 0;
    char *h = zalloc(c, c->zone, 2 * want);
    if (!h)
        return -1;
    for (size_t i = 0; i < want; i++) {
        h[2 * i] = "0123456789abcdef"[id->data[i] >> 4];
        h[2 * i + 1] = "0123456789abcdef"[id->data[i] & 15];
    }
    *o = str_obj(h, 2 * want);
    *set = 1;
    return 0;
}

static int is_field_key(const char *k)
{
    static const char *const fields[] = {"message", "service_name", "level", "trace_id", "span_id", "log_id",
                                         "timestamp", NULL};
    for (int i = 0; fields[i]; i++)
        if (!strcmp(k, fields[i]))
            return 1;
    return 0;
}

static int has_key(const msgpack_object_kv *kv, size_t n, const char *k, size_t klen)
{
    for (size_t i = 0; i < n; i++)
        if (kv[i].key.via.str.size == klen && !memcmp(kv[i].key.via.str.ptr, k, klen))
            return 1;
    return 0;
}

/* An attribute as a metadata pair (a field name becomes attributes.<key>). Skipped when the key is already there. */
static int add_attr(conv *c, const KeyValue *a, msgpack_object_kv *kv, size_t *n)
{
    const char *k = a->key;
    size_t klen = strlen(k);
    if (is_field_key(k)) {
        char *p = zalloc(c, c->zone, klen + 11);
        if (!p)
            return -1;
        memcpy(p, "attributes.", 11);
        memcpy(p + 11, k, klen);
        k = p;
        klen += 11;
    }
    if (has_key(kv, *n, k, klen))
        return 0;
    kv[*n].key = str_obj(k, klen);
    if (any_to_obj(c, a->value, &kv[*n].val, 1) < 0)
        return -1;
    (*n)++;
    return 0;
}

/* splitmix64's finalizer: every input bit moves every output bit. */
static uint64_t mix(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

/* The request's bytes hashed twice (FNV-1a from two bases): 128 bits that the same request always gives. */
static void request_hash(const char *body, size_t len, uint64_t id[2])
{
    uint64_t a = 0xcbf29ce484222325ULL, b = 0x84222325cbf29ce4ULL;
    for (size_t i = 0; i < len; i++) {
        a = (a ^ (uint8_t)body[i]) * 0x100000001b3ULL;
        b = (b ^ (uint8_t)body[i]) * 0x100000001b3ULL;
    }
    id[0] = mix(a ^ len);
    id[1] = mix(b + len);
}

/* log_id: 32 hex digits from the request's hash and the record's index — a client that sends the same request
 * again (its retry after a 503, which may follow some of its records being taken) gives them the same log_ids,
 * so the log service keeps one of each (docs/protocol.md: log_id is the idempotency key). */
static int make_log_id(conv *c, size_t index, msgpack_object *o)
{
    char *h = zalloc(c, c->zone, 32);
    if (!h)
        return -1;
    uint64_t w[2] = {mix(c->id[0] ^ mix(index + 1)), mix(c->id[1] + index * 0x9e3779b97f4a7c15ULL)};
    for (int i = 0; i < 32; i++)
        h[i] = "0123456789abcdef"[(w[i / 16] >> (60 - 4 * (i % 16))) & 15];
    *o = str_obj(h, 32);
    return 0;
}

static int record_map(conv *c, size_t index, const Resource *res, const LogRecord *lr, msgpack_object *out)
{
    size_t nres = res ? res->n_attributes : 0, cap = 8 + lr->n_attributes + nres, n = 0;
    msgpack_object_kv *kv = zalloc(c, c->zone, cap * sizeof *kv);
    if (!kv)
        return -1;
    kv[n].key = str_obj("log_id", 6);
    if (make_log_id(c, index, &kv[n++].val) < 0)
        return -1;
    kv[n].key = str_obj("message", 7);
    if (body_to_message(c, lr->body, &kv[n++].val) < 0)
        return -1;
    for (size_t i = 0; i < nres; i++) {
        const KeyValue *a = res->attributes[i];
        if (!strcmp(a->key, "service.name") && a->value &&
            a->value->value_case == OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE) {
            kv[n].key = str_obj("service_name", 12);
            kv[n++].val = str_obj(a->value->string_value, strlen(a->value->string_value));
        }
    }
    const char *level = lr->severity_text && lr->severity_text[0] ? lr->severity_text
                                                                   : severity_name((int)lr->severity_number);
    if (level) {
        kv[n].key = str_obj("level", 5);
        kv[n++].val = str_obj(level, strlen(level));
    }
    int set;
    kv[n].key = str_obj("trace_id", 8);
    if (hex_id(c, &lr->trace_id, 16, "trace_id", &kv[n].val, &set) < 0)
        return -1;
    n += (size_t)set;
    kv[n].key = str_obj("span_id", 7);
    if (hex_id(c, &lr->span_id, 8, "span_id", &kv[n].val, &set) < 0)
        return -1;
    n += (size_t)set;
    uint64_t t = lr->time_unix_nano ? lr->time_unix_nano : lr->observed_time_unix_nano;
    if (t) {
        kv[n].key = str_obj("timestamp", 9);
        kv[n].val.type = MSGPACK_OBJECT_POSITIVE_INTEGER;
        kv[n++].val.via.u64 = t;
    }
    for (size_t i = 0; i < lr->n_attributes; i++)
        if (add_attr(c, lr->attributes[i], kv, &n) < 0)
            return -1;
    for (size_t i = 0; i < nres; i++)
        if (strcmp(res->attributes[i]->key, "service.name") && add_attr(c, res->attributes[i], kv, &n) < 0)
            return -1;
    out->type = MSGPACK_OBJECT_MAP;
    out->via.map.size = (uint32_t)n;
    out->via.map.ptr = kv;
    return 0;
}

/* Every LogRecord of req, in order, to fn; errs (JSON only, may be NULL): the reason a record could not be read. */
static int deliver_all(conv *c, const ExportRequest *req, char *const *errs, http_json_fn fn, void *arg)
{
    size_t index = 0;
    for (size_t r = 0; r < req->n_resource_logs; r++) {
        const ResourceLogs *rl = req->resource_logs[r];
        for (size_t s = 0; s < rl->n_scope_logs; s++) {
            const ScopeLogs *sl = rl->scope_logs[s];
            for (size_t k = 0; k < sl->n_log_records; k++) {
                msgpack_object rec;
                http_json_entry e = {.index = index++};
                msgpack_zone_clear(c->zone);
                c->error[0] = 0;
                const char *bad = errs ? errs[index - 1] : NULL;
                int built = !bad && record_map(c, index - 1, rl->resource, sl->log_records[k], &rec) == 0;
                if (c->nomem)
                    return -ENOMEM;
                if (built) {
                    e.status = HTTP_JSON_OK;
                    e.record = &rec;
                } else {
                    e.status = bad ? HTTP_JSON_INVALID : c->status;
                    e.error = bad ? bad : c->error;
                }
                int rc = fn(arg, &e);
                if (rc < 0)
                    return rc;
            }
        }
    }
    return (int)index;
}

/* ---- OTLP JSON -> the protobuf-c structs ---------------------------------------------------------------- */

/* A member by its lowerCamelCase or snake_case name. */
static json_t *member(json_t *o, const char *camel, const char *snake)
{
    json_t *v = json_object_get(o, camel);
    return v ? v : snake ? json_object_get(o, snake) : NULL;
}

static int json_u64(conv *c, json_t *v, const char *name, uint64_t *out)
{
    *out = 0;
    if (!v || json_is_null(v))
        return 0;
    if (json_is_integer(v) && json_integer_value(v) >= 0) {
        *out = (uint64_t)json_integer_value(v);
        return 0;
    }
    const char *s = json_string_value(v);
    char *end;
    if (s && *s >= '0' && *s <= '9') {
        errno = 0;
        *out = strtoull(s, &end, 10);
        if (!*end && !errno)
            return 0;
    }
    return fail(c, HTTP_JSON_INVALID, "%s: expected an unsigned integer (a number or a decimal string)", name);
}

static int json_hex(conv *c, json_t *v, const char *name, ProtobufCBinaryData *out)
{
    out->len = 0;
    if (!v || json_is_null(v))
        return 0;
    const char *s = json_string_value(v);
    size_t n = s ? strlen(s) : 1;
    if (!s || n % 2)
        return fail(c, HTTP_JSON_INVALID, "%s: expected hex digits", name);
    if (!(out->data = zalloc(c, c->doc, n / 2)))
        return -1;
    for (size_t i = 0; i < n; i += 2) {
        int hi = s[i] >= '0' && s[i] <= '9' ? s[i] - '0' : (s[i] | 32) >= 'a' && (s[i] | 32) <= 'f' ? (s[i] | 32) - 'a' + 10 : -1;
        int lo = s[i + 1] >= '0' && s[i + 1] <= '9' ? s[i + 1] - '0'
                 : (s[i + 1] | 32) >= 'a' && (s[i + 1] | 32) <= 'f' ? (s[i + 1] | 32) - 'a' + 10
                                                                 : -1;
        if (hi < 0 || lo < 0)
            return fail(c, HTTP_JSON_INVALID, "%s: expected hex digits", name);
        out->data[i / 2] = (uint8_t)(hi << 4 | lo);
    }
    out->len = n / 2;
    return 0;
}

static int json_b64(conv *c, const char *s, ProtobufCBinaryData *out)
{
    size_t n = strlen(s), o = 0;
    uint32_t acc = 0;
    int bits = 0;
    if (!(out->data = zalloc(c, c->doc, n)))
        return -1;
    for (size_t i = 0; i < n && s[i] != '='; i++) {
        char ch = s[i];
        int v = ch >= 'A' && ch <= 'Z' ? ch - 'A' : ch >= 'a' && ch <= 'z' ? ch - 'a' + 26
                : ch >= '0' && ch <= '9' ? ch - '0' + 52 : ch == '+' || ch == '-' ? 62 : ch == '/' || ch == '_' ? 63 : -1;
        if (v < 0)
            return fail(c, HTTP_JSON_INVALID, "bytesValue: not base64");
        acc = acc << 6 | (uint32_t)v;
        if ((bits += 6) >= 8) {
            bits -= 8;
            out->data[o++] = (uint8_t)(acc >> bits);
        }
    }
    out->len = o;
    return 0;
}

static int json_to_any(conv *c, json_t *j, AnyValue *v, int depth);

static int json_to_kvs(conv *c, json_t *arr, KeyValue ***out, size_t *n, int depth)
{
    *n = 0;
    if (!arr || json_is_null(arr))
        return 0;
    if (!json_is_array(arr))
        return fail(c, HTTP_JSON_INVALID, "attributes: expected an array of {key, value}");
    size_t k = json_array_size(arr);
    KeyValue **kvs = zalloc(c, c->doc, k * sizeof *kvs);
    if (!kvs)
        return -1;
    for (size_t i = 0; i < k; i++) {
        json_t *e = json_array_get(arr, i);
        const char *key = json_string_value(json_object_get(e, "key"));
        if (!key)
            return fail(c, HTTP_JSON_INVALID, "attributes: an entry without a string key");
        KeyValue *kv = zalloc(c, c->doc, sizeof *kv);
        AnyValue *val = zalloc(c, c->doc, sizeof *val);
        if (!kv || !val)
            return -1;
        opentelemetry__proto__common__v1__key_value__init(kv);
        kv->key = (char *)key;
        kv->value = val;
        if (json_to_any(c, json_object_get(e, "value"), val, depth + 1) < 0)
            return -1;
        kvs[i] = kv;
    }
    *out = kvs;
    *n = k;
    return 0;
}

static int json_to_any(conv *c, json_t *j, AnyValue *v, int depth)
{
    opentelemetry__proto__common__v1__any_value__init(v);
    if (depth > MAX_DEPTH)
        return fail(c, HTTP_JSON_INVALID, "value nested deeper than %d levels", MAX_DEPTH);
    if (!j || json_is_null(j) || (json_is_object(j) && json_object_size(j) == 0))
        return 0;
    json_t *x;
    if (!json_is_object(j))
        return fail(c, HTTP_JSON_INVALID, "an AnyValue must be an object such as {\"stringValue\": ...}");
    if ((x = member(j, "stringValue", "string_value")) && json_is_string(x)) {
        v->value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE;
        v->string_value = (char *)json_string_value(x);
    } else if ((x = member(j, "boolValue", "bool_value")) && json_is_boolean(x)) {
        v->value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_BOOL_VALUE;
        v->bool_value = json_is_true(x);
    } else if ((x = member(j, "intValue", "int_value"))) {
        const char *s = json_string_value(x);
        char *end;
        v->value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_INT_VALUE;
        if (json_is_integer(x))
            v->int_value = json_integer_value(x);
        else if (s && (errno = 0, v->int_value = strtoll(s, &end, 10), *s && !*end && !errno))
            ;
        else
            return fail(c, HTTP_JSON_INVALID, "intValue: expected an integer (a number or a decimal string)");
    } else if ((x = member(j, "doubleValue", "double_value")) && json_is_number(x)) {
        v->value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_DOUBLE_VALUE;
        v->double_value = json_number_value(x);
    } else if ((x = member(j, "bytesValue", "bytes_value")) && json_is_string(x)) {
        v->value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_BYTES_VALUE;
        return json_b64(c, json_string_value(x), &v->bytes_value);
    } else if ((x = member(j, "arrayValue", "array_value")) && json_is_object(x)) {
        json_t *vals = json_object_get(x, "values");
        size_t n = json_is_array(vals) ? json_array_size(vals) : 0;
        ArrayValue *a = zalloc(c, c->doc, sizeof *a);
        AnyValue **items = zalloc(c, c->doc, n * sizeof *items);
        if (!a || !items)
            return -1;
        opentelemetry__proto__common__v1__array_value__init(a);
        for (size_t i = 0; i < n; i++) {
            if (!(items[i] = zalloc(c, c->doc, sizeof *items[i])) ||
                json_to_any(c, json_array_get(vals, i), items[i], depth + 1) < 0)
                return -1;
        }
        a->values = items;
        a->n_values = n;
        v->value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_ARRAY_VALUE;
        v->array_value = a;
    } else if ((x = member(j, "kvlistValue", "kvlist_value")) && json_is_object(x)) {
        KeyValueList *l = zalloc(c, c->doc, sizeof *l);
        if (!l)
            return -1;
        opentelemetry__proto__common__v1__key_value_list__init(l);
        if (json_to_kvs(c, json_object_get(x, "values"), &l->values, &l->n_values, depth) < 0)
            return -1;
        v->value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_KVLIST_VALUE;
        v->kvlist_value = l;
    } else {
        return fail(c, HTTP_JSON_INVALID, "an AnyValue with no known member (stringValue, intValue, ...)");
    }
    return 0;
}

static const char *const SEVERITY_ENUM[] = {
    "SEVERITY_NUMBER_UNSPECIFIED", "SEVERITY_NUMBER_TRACE", "SEVERITY_NUMBER_TRACE2", "SEVERITY_NUMBER_TRACE3",
    "SEVERITY_NUMBER_TRACE4", "SEVERITY_NUMBER_DEBUG", "SEVERITY_NUMBER_DEBUG2", "SEVERITY_NUMBER_DEBUG3",
    "SEVERITY_NUMBER_DEBUG4", "SEVERITY_NUMBER_INFO", "SEVERITY_NUMBER_INFO2", "SEVERITY_NUMBER_INFO3",
    "SEVERITY_NUMBER_INFO4", "SEVERITY_NUMBER_WARN", "SEVERITY_NUMBER_WARN2", "SEVERITY_NUMBER_WARN3",
    "SEVERITY_NUMBER_WARN4", "SEVERITY_NUMBER_ERROR", "SEVERITY_NUMBER_ERROR2", "SEVERITY_NUMBER_ERROR3",
    "SEVERITY_NUMBER_ERROR4", "SEVERITY_NUMBER_FATAL", "SEVERITY_NUMBER_FATAL2", "SEVERITY_NUMBER_FATAL3",
    "SEVERITY_NUMBER_FATAL4"};

static int json_severity(conv *c, json_t *v, LogRecord *lr)
{
    if (!v || json_is_null(v))
        return 0;
    if (json_is_integer(v)) {
        lr->severity_number = (Opentelemetry__Proto__Logs__V1__SeverityNumber)json_integer_value(v);
        return 0;
    }
    for (int i = 0; json_is_string(v) && i < 25; i++)
        if (!strcmp(json_string_value(v), SEVERITY_ENUM[i])) {
            lr->severity_number = (Opentelemetry__Proto__Logs__V1__SeverityNumber)i;
            return 0;
        }
    return fail(c, HTTP_JSON_INVALID, "severityNumber: expected a number or a SEVERITY_NUMBER_* name");
}

static int json_to_record(conv *c, json_t *j, LogRecord *lr)
{
    opentelemetry__proto__logs__v1__log_record__init(lr);
    if (!json_is_object(j))
        return fail(c, HTTP_JSON_INVALID, "a logRecord must be an object");
    json_t *st = member(j, "severityText", "severity_text");
    lr->severity_text = json_is_string(st) ? (char *)json_string_value(st) : (char *)"";
    if (json_u64(c, member(j, "timeUnixNano", "time_unix_nano"), "timeUnixNano", &lr->time_unix_nano) < 0 ||
        json_u64(c, member(j, "observedTimeUnixNano", "observed_time_unix_nano"), "observedTimeUnixNano",
                 &lr->observed_time_unix_nano) < 0 ||
        json_severity(c, member(j, "severityNumber", "severity_number"), lr) < 0 ||
        json_hex(c, member(j, "traceId", "trace_id"), "traceId", &lr->trace_id) < 0 ||
        json_hex(c, member(j, "spanId", "span_id"), "spanId", &lr->span_id) < 0 ||
        json_to_kvs(c, member(j, "attributes", NULL), &lr->attributes, &lr->n_attributes, 0) < 0)
        return -1;
    json_t *body = member(j, "body", NULL);
    if (body && !json_is_null(body)) {
        if (!(lr->body = zalloc(c, c->doc, sizeof *lr->body)))
            return -1;
        return json_to_any(c, body, lr->body, 0);
    }
    return 0;
}

/* A copy of c->error in the request's zone (a LogRecord's reason, given to fn in its turn). */
static char *keep_error(conv *c)
{
    size_t n = strlen(c->error);
    char *e = zalloc(c, c->doc, n + 1);
    if (e)
        memcpy(e, c->error, n + 1);
    return e;
}

/* The whole request. A LogRecord that cannot be read keeps its reason in errs[index] (the others go on). */
static int json_to_request(conv *c, json_t *doc, ExportRequest *req, char ***errs)
{
    opentelemetry__proto__collector__logs__v1__export_logs_service_request__init(req);
    json_t *rls = json_is_object(doc) ? member(doc, "resourceLogs", "resource_logs") : NULL;
    if (!json_is_object(doc) || (rls && !json_is_array(rls)))
        return fail(c, HTTP_JSON_INVALID, "expected an ExportLogsServiceRequest: {\"resourceLogs\": [...]}");
    size_t nrl = rls ? json_array_size(rls) : 0, total = 0, index = 0;
    for (size_t r = 0; r < nrl; r++) {
        json_t *sls = member(json_array_get(rls, r), "scopeLogs", "scope_logs");
        for (size_t s = 0; json_is_array(sls) && s < json_array_size(sls); s++)
            total += json_array_size(member(json_array_get(sls, s), "logRecords", "log_records"));
    }
    if (!(*errs = zalloc(c, c->doc, total * sizeof **errs)) ||
        !(req->resource_logs = zalloc(c, c->doc, nrl * sizeof *req->resource_logs)))
        return -1;
    req->n_resource_logs = nrl;
    for (size_t r = 0; r < nrl; r++) {
        json_t *jr = json_array_get(rls, r), *sls = member(jr, "scopeLogs", "scope_logs");
        ResourceLogs *rl = zalloc(c, c->doc, sizeof *rl);
        Resource *res = zalloc(c, c->doc, sizeof *res);
        size_t nsl = json_is_array(sls) ? json_array_size(sls) : 0;
        if (!rl || !res)
            return -1;
        opentelemetry__proto__logs__v1__resource_logs__init(rl);
        opentelemetry__proto__resource__v1__resource__init(res);
        req->resource_logs[r] = rl;
        rl->resource = res;
        if (json_to_kvs(c, json_object_get(json_object_get(jr, "resource"), "attributes"), &res->attributes,
                        &res->n_attributes, 0) < 0)
            return -1; /* the resource is every record's: the request is refused */
        if (!(rl->scope_logs = zalloc(c, c->doc, nsl * sizeof *rl->scope_logs)))
            return -1;
        rl->n_scope_logs = nsl;
        for (size_t s = 0; s < nsl; s++) {
            json_t *lrs = member(json_array_get(sls, s), "logRecords", "log_records");
            size_t nlr = json_is_array(lrs) ? json_array_size(lrs) : 0;
            ScopeLogs *sl = zalloc(c, c->doc, sizeof *sl);
            if (!sl)
                return -1;
            opentelemetry__proto__logs__v1__scope_logs__init(sl);
            if (!(sl->log_records = zalloc(c, c->doc, nlr * sizeof *sl->log_records)))
                return -1;
            rl->scope_logs[s] = sl;
            for (size_t k = 0; k < nlr; k++, index++) {
                LogRecord *lr = zalloc(c, c->doc, sizeof *lr);
                if (!lr)
                    return -1;
                sl->log_records[sl->n_log_records++] = lr;
                if (json_to_record(c, json_array_get(lrs, k), lr) < 0 && !((*errs)[index] = keep_error(c)))
                    return -1;
                if (c->nomem)
                    return -1;
            }
        }
    }
    return 0;
}

/* ---- the entry point ------------------------------------------------------------------------------------ */

static int parse_json(conv *c, const char *body, size_t len, http_json_fn fn, void *arg, http_json_error *err)
{
    json_error_t je;
    json_t *doc = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
    if (!doc) {
        err->status = HTTP_JSON_MALFORMED;
        snprintf(err->text, sizeof err->text, "not JSON: %s (line %d, column %d)", je.text, je.line, je.column);
        return -EINVAL;
    }
    ExportRequest req;
    char **errs = NULL;
    int rc = json_to_request(c, doc, &req, &errs);
    if (rc < 0 && !c->nomem) {
        err->status = c->status;
        snprintf(err->text, sizeof err->text, "%s", c->error);
        rc = -EINVAL;
    } else if (rc < 0) {
        rc = -ENOMEM;
    } else {
        rc = deliver_all(c, &req, errs, fn, arg);
    }
    json_decref(doc);
    return rc;
}

/* protobuf-c's allocations for one request come from the request's zone (`doc`) and go with it: no malloc and
 * free per field of every LogRecord (they were a fifth of the agent's CPU on OTLP ingest). */
static void *zone_alloc(void *zone, size_t n) { return msgpack_zone_malloc(zone, n ? n : 1); }
static void zone_free(void *zone, void *p)
{
    (void)zone;
    (void)p;
}

int otlp_in_parse(const char *body, size_t len, enum otlp_in_format fmt, http_json_fn fn, void *arg,
                  http_json_error *err)
{
    conv c = {.zone = msgpack_zone_new(ZONE_CHUNK), .doc = msgpack_zone_new(ZONE_CHUNK)};
    int rc;
    request_hash(body, len, c.id);
    if (!c.zone || !c.doc) {
        rc = -ENOMEM;
    } else if (fmt == OTLP_IN_JSON) {
        rc = parse_json(&c, body, len, fn, arg, err);
    } else {
        ProtobufCAllocator za = {zone_alloc, zone_free, c.doc};
        ExportRequest *req = opentelemetry__proto__collector__logs__v1__export_logs_service_request__unpack(
            &za, len, (const uint8_t *)body);
        if (!req) { /* (out of memory reads the same: protobuf-c does not tell them apart) */
            err->status = HTTP_JSON_MALFORMED;
            snprintf(err->text, sizeof err->text, "not an OTLP ExportLogsServiceRequest (protobuf)");
            rc = -EINVAL;
        } else {
            rc = deliver_all(&c, req, NULL, fn, arg); /* req lives in c.doc: freed with it below */
        }
    }
    if (c.zone)
        msgpack_zone_free(c.zone);
    if (c.doc)
        msgpack_zone_free(c.doc);
    return rc;
}
