/* record.c — msgpack record -> WriteLogRequest bytes (see record.h for the contract).
 *
 * Two passes over one record: `classify` walks the map once and collects spans (pointers into the msgpack
 * data, or offsets into e->text for values that needed converting); `emit` sizes and writes the protobuf
 * wire format by hand (pbwire.h). Text forms (docs/protocol.md, Keys): str as is (invalid UTF-8 repaired with U+FFFD so
 * that upstream proto3 parsers accept it), int/float/bool as text, nil as "", map/array as compact JSON,
 * bin as base64, ext as base64 of its data. With e->typed (OTLP upstream) each metadata value's msgpack type
 * also goes into field RECORD_F_META_TYPES, so that otlp.c can send typed attribute values (record.h). */
#include "record.h"

#include "common/utf8.h"
#include "jsonstr.h"
#include "pbwire.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

enum { F_SERVICE = 1, F_LEVEL = 2, F_MESSAGE = 3, F_TRACE = 4, F_SPAN = 5, F_META = 6, F_LOGID = 7,
       F_TS = 8, F_SOURCE = 9 };
enum { JSON_MAX_DEPTH = 64 };

enum { K_MESSAGE, K_SERVICE, K_LEVEL, K_TRACE, K_SPAN, K_LOGID, K_TS, K_COUNT };

typedef struct fields {
    record_span service, level, message, trace, span, log_id;
    int has_message, has_level, has_log_id;
    int64_t ts;
    const msgpack_object_kv *taken[K_COUNT]; /* the pair each field was taken from (a repeat moves it to metadata) */
} fields;

/* ---- growable buffers ---------------------------------------------------------------------------- */

static int grow(void **buf, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    size_t n = *cap ? *cap : 256;
    while (n < need)
        n *= 2;
    void *p = realloc(*buf, n * elem);
    if (!p)
        return -ENOMEM;
    *buf = p;
    *cap = n;
    return 0;
}

static int text_reserve(record_enc *e, size_t n)
{
    if (e->text_limit && e->text_len + n > e->text_limit)
        return -E2BIG; /* converted text past what one record may hold: refused as oversized */
    return grow((void **)&e->text, &e->text_cap, e->text_len + n, 1);
}

static int text_put(record_enc *e, const void *s, size_t n)
{
    int rc = text_reserve(e, n);
    if (rc < 0)
        return rc;
    memcpy(e->text + e->text_len, s, n);
    e->text_len += n;
    return 0;
}

static int text_putc(record_enc *e, char c) { return text_put(e, &c, 1); }

static const char *span_ptr(const record_enc *e, const record_span *s)
{
    return s->ptr ? s->ptr : e->text + s->off;
}

static record_span span_direct(const char *p, size_t n) { return (record_span){p, 0, n}; }

/* ---- UTF-8 (the rule: common/utf8.h) ---------------------------------------------------------------- */

/* Appends s to e->text with every invalid byte replaced by U+FFFD. */
static int text_put_utf8_repaired(record_enc *e, const char *s, size_t n)
{
    const uint8_t *p = (const uint8_t *)s;
    size_t i = 0;
    while (i < n) {
        size_t l = utf8_seq_len(p + i, n - i);
        int rc = l ? text_put(e, p + i, l) : text_put(e, UTF8_REPLACEMENT, UTF8_REPLACEMENT_LEN);
        if (rc < 0)
            return rc;
        i += l ? l : 1;
    }
    return 0;
}

/* A str value as a span: direct when valid, repaired copy otherwise. */
static int str_span(record_enc *e, const char *s, size_t n, record_span *out, record_info *info)
{
    if (utf8_valid((const uint8_t *)s, n)) {
        *out = span_direct(s, n);
        return 0;
    }
    info->utf8_repaired = 1;
    size_t off = e->text_len;
    if (text_put_utf8_repaired(e, s, n) < 0)
        return -ENOMEM;
    *out = (record_span){NULL, off, e->text_len - off};
    return 0;
}

/* ---- text forms ------------------------------------------------------------------------------------ */

static int text_printf_double(record_enc *e, double v, int is_f32)
{
    char buf[40];
    if (isnan(v))
        return text_put(e, "NaN", 3);
    if (isinf(v))
        return v > 0 ? text_put(e, "Infinity", 8) : text_put(e, "-Infinity", 9);
    int n = 0;
    for (int prec = is_f32 ? 6 : 15; prec <= 17; prec++) { /* shortest text that reads back the same */
        n = snprintf(buf, sizeof buf, "%.*g", prec, v);
        if (is_f32 ? strtof(buf, NULL) == (float)v : strtod(buf, NULL) == v)
            break;
    }
    if (!strpbrk(buf, ".eEn") && n + 2 < (int)sizeof buf) { /* keep it recognisably a float: 1 -> 1.0 */
        buf[n++] = '.';
        buf[n++] = '0';
    }
    return text_put(e, buf, (size_t)n);
}

static int text_put_base64(record_enc *e, const void *data, size_t n)
{
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const unsigned char *p = data;
    if (n == 0) /* an empty bin: nothing to add (and no buffer yet on a fresh encoder: found by fuzz_ingest) */
        return 0;
    int rc = text_reserve(e, (n + 2) / 3 * 4);
    if (rc < 0)
        return rc;
    char *o = e->text + e->text_len;
    size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        *o++ = tbl[v >> 18];
        *o++ = tbl[(v >> 12) & 63];
        *o++ = tbl[(v >> 6) & 63];
        *o++ = tbl[v & 63];
    }
    if (i < n) {
        uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0);
        *o++ = tbl[v >> 18];
        *o++ = tbl[(v >> 12) & 63];
        *o++ = i + 1 < n ? tbl[(v >> 6) & 63] : '=';
        *o++ = '=';
    }
    e->text_len = (size_t)(o - e->text);
    return 0;
}

/* s as a JSON string, quoted (jsonstr.h's rule; DEL stays as is in a record). */
static int json_put_string(record_enc *e, const char *s, size_t n)
{
    if (text_putc(e, '"') < 0)
        return -ENOMEM;
    const uint8_t *p = (const uint8_t *)s;
    for (size_t i = 0; i < n;) {
        char esc[JSON_STR_ESC_MAX];
        const char *piece;
        size_t len;
        i += json_str_char(p + i, n - i, 0, esc, &piece, &len);
        int rc = text_put(e, piece, len);
        if (rc < 0)
            return rc;
    }
    return text_putc(e, '"');
}

static int text_put_scalar(record_enc *e, const msgpack_object *o, int json);

static int json_put(record_enc *e, const msgpack_object *o, int depth)
{
    if (depth > JSON_MAX_DEPTH)
        return text_put(e, "null", 4);
    int rc = 0;
    if (o->type == MSGPACK_OBJECT_ARRAY) {
        rc = text_putc(e, '[');
        for (uint32_t i = 0; rc == 0 && i < o->via.array.size; i++) {
            if (i)
                rc = text_putc(e, ',');
            if (rc == 0)
                rc = json_put(e, &o->via.array.ptr[i], depth + 1);
        }
        return rc < 0 ? rc : text_putc(e, ']');
    }
    if (o->type == MSGPACK_OBJECT_MAP) {
        rc = text_putc(e, '{');
        for (uint32_t i = 0; rc == 0 && i < o->via.map.size; i++) {
            const msgpack_object_kv *kv = &o->via.map.ptr[i];
            if (i)
                rc = text_putc(e, ',');
            if (rc == 0 && kv->key.type == MSGPACK_OBJECT_STR) {
                rc = json_put_string(e, kv->key.via.str.ptr, kv->key.via.str.size);
            } else if (rc == 0 && (kv->key.type == MSGPACK_OBJECT_MAP || kv->key.type == MSGPACK_OBJECT_ARRAY)) {
                /* a container as a key: a fixed name (re-escaping its JSON would double at every level) */
                rc = text_put(e, kv->key.type == MSGPACK_OBJECT_MAP ? "\"(map)\"" : "\"(array)\"",
                              kv->key.type == MSGPACK_OBJECT_MAP ? 7 : 9);
            } else if (rc == 0) { /* JSON keys are strings: quote the key's text form */
                size_t off = e->text_len;
                rc = text_put_scalar(e, &kv->key, 0);
                if (rc == 0) {
                    size_t n = e->text_len - off;
                    char *tmp = malloc(n ? n : 1);
                    if (!tmp)
                        return -ENOMEM;
                    memcpy(tmp, e->text + off, n);
                    e->text_len = off;
                    rc = json_put_string(e, tmp, n);
                    free(tmp);
                }
            }
            if (rc == 0)
                rc = text_putc(e, ':');
            if (rc == 0)
                rc = json_put(e, &kv->val, depth + 1);
        }
        return rc < 0 ? rc : text_putc(e, '}');
    }
    return text_put_scalar(e, o, 1);
}

/* Appends the text form of a value: `json` selects JSON literals (strings quoted, nil as null). */
static int text_put_scalar(record_enc *e, const msgpack_object *o, int json)
{
    char buf[32];
    int n;
    switch (o->type) {
    case MSGPACK_OBJECT_NIL:
        return json ? text_put(e, "null", 4) : 0;
    case MSGPACK_OBJECT_BOOLEAN:
        return o->via.boolean ? text_put(e, "true", 4) : text_put(e, "false", 5);
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        n = snprintf(buf, sizeof buf, "%llu", (unsigned long long)o->via.u64);
        return text_put(e, buf, (size_t)n);
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        n = snprintf(buf, sizeof buf, "%lld", (long long)o->via.i64);
        return text_put(e, buf, (size_t)n);
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        if (json && !isfinite(o->via.f64))
            return text_put(e, "null", 4);
        return text_printf_double(e, o->via.f64, o->type == MSGPACK_OBJECT_FLOAT32);
    case MSGPACK_OBJECT_STR:
        if (json)
            return json_put_string(e, o->via.str.ptr, o->via.str.size);
        return text_put_utf8_repaired(e, o->via.str.ptr, o->via.str.size);
    case MSGPACK_OBJECT_BIN:
    case MSGPACK_OBJECT_EXT: {
        const char *p = o->type == MSGPACK_OBJECT_BIN ? o->via.bin.ptr : o->via.ext.ptr;
        size_t len = o->type == MSGPACK_OBJECT_BIN ? o->via.bin.size : o->via.ext.size;
        if (json && text_putc(e, '"') < 0)
            return -ENOMEM;
        if (text_put_base64(e, p, len) < 0)
            return -ENOMEM;
        return json ? text_putc(e, '"') : 0;
    }
    case MSGPACK_OBJECT_ARRAY:
    case MSGPACK_OBJECT_MAP:
        return json_put(e, o, 0);
    }
    return 0;
}

/* Text form of any value as a span (str values stay in place when valid UTF-8). */
static int value_span(record_enc *e, const msgpack_object *o, record_span *out, record_info *info)
{
    if (o->type == MSGPACK_OBJECT_STR)
        return str_span(e, o->via.str.ptr, o->via.str.size, out, info);
    size_t off = e->text_len;
    int rc = o->type == MSGPACK_OBJECT_ARRAY || o->type == MSGPACK_OBJECT_MAP ? json_put(e, o, 0)
                                                                                 : text_put_scalar(e, o, 0);
    if (rc < 0)
        return rc;
    *out = (record_span){NULL, off, e->text_len - off};
    return 0;
}

/* ---- timestamps ------------------------------------------------------------------------------------ */

/* Days since 1970-01-01 of a proleptic Gregorian date (the civil-from-days inverse). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static int digits(const char *s, size_t n, size_t at, size_t count, unsigned *out)
{
    unsigned v = 0;
    if (at + count > n)
        return -1;
    for (size_t i = at; i < at + count; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    *out = v;
    return 0;
}

int record_parse_rfc3339(const char *s, size_t n, int64_t *out_ns)
{
    unsigned y, mo, d, h, mi, se, oh = 0, om = 0;
    if (digits(s, n, 0, 4, &y) || n < 19 || s[4] != '-' || digits(s, n, 5, 2, &mo) || s[7] != '-' ||
        digits(s, n, 8, 2, &d) || (s[10] != 'T' && s[10] != 't' && s[10] != ' ') || digits(s, n, 11, 2, &h) ||
        s[13] != ':' || digits(s, n, 14, 2, &mi) || s[16] != ':' || digits(s, n, 17, 2, &se))
        return -EINVAL;
    static const unsigned mdays[12] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || h > 23 || mi > 59 || se > 60)
        return -EINVAL; /* 60: a leap second, read as the next minute's first */
    if (mo == 2 && d == 29 && (y % 4 != 0 || (y % 100 == 0 && y % 400 != 0)))
        return -EINVAL;
    size_t i = 19;
    int64_t frac = 0;
    if (i < n && s[i] == '.') {
        size_t start = ++i;
        int64_t scale = 100000000;
        while (i < n && s[i] >= '0' && s[i] <= '9') {
            frac += (s[i] - '0') * scale;
            scale /= 10;
            i++;
        }
        if (i == start)
            return -EINVAL;
    }
    int sign = 0;
    if (i < n && (s[i] == 'Z' || s[i] == 'z')) {
        i++;
    } else if (i < n && (s[i] == '+' || s[i] == '-')) {
        sign = s[i] == '+' ? 1 : -1;
        if (digits(s, n, i + 1, 2, &oh) || i + 3 >= n || s[i + 3] != ':' || digits(s, n, i + 4, 2, &om) ||
            oh > 23 || om > 59)
            return -EINVAL;
        i += 6;
    } else {
        return -EINVAL;
    }
    if (i != n)
        return -EINVAL;
    int64_t secs = days_from_civil(y, mo, d) * 86400 + (int64_t)h * 3600 + mi * 60 + se;
    secs -= sign * ((int64_t)oh * 3600 + om * 60);
    if (__builtin_mul_overflow(secs, (int64_t)1000000000, out_ns) || __builtin_add_overflow(*out_ns, frac, out_ns))
        return -EINVAL; /* beyond 2262: not representable in int64 ns */
    return 0;
}

static uint64_t be(const unsigned char *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

/* Interprets a timestamp value as unix ns (any of its forms, record.h). Returns 0 and sets *ns, or -EINVAL for
 * a value that is not a time: the caller keeps it as metadata. A time before 1970 is not one (docs/protocol.md). */
static int parse_timestamp_any(const msgpack_object *o, int64_t *ns)
{
    switch (o->type) {
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        if (o->via.u64 > INT64_MAX)
            return -EINVAL;
        *ns = (int64_t)o->via.u64;
        return 0;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        return -EINVAL;
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64: {
        double v = o->via.f64 * 1e9;
        if (!isfinite(v) || v >= 9.2e18 || v <= -9.2e18)
            return -EINVAL;
        *ns = llround(v);
        return 0;
    }
    case MSGPACK_OBJECT_EXT: {
        const unsigned char *p = (const unsigned char *)o->via.ext.ptr;
        if (o->via.ext.type != -1)
            return -EINVAL;
        if (o->via.ext.size == 4) {
            *ns = (int64_t)be(p, 4) * 1000000000;
        } else if (o->via.ext.size == 8) {
            uint64_t v = be(p, 8);
            if (v >> 34 >= 1000000000) /* nanoseconds past a second: not a msgpack timestamp */
                return -EINVAL;
            if (__builtin_mul_overflow((int64_t)(v & 0x3ffffffffULL), (int64_t)1000000000, ns))
                return -EINVAL;
            if (__builtin_add_overflow(*ns, (int64_t)(v >> 34), ns)) /* found by fuzz_ingest */
                return -EINVAL;
        } else if (o->via.ext.size == 12) {
            int64_t sec = (int64_t)be(p + 4, 8);
            uint64_t nsec = be(p, 4);
            if (sec > 9200000000LL || sec < -9200000000LL || nsec >= 1000000000)
                return -EINVAL;
            *ns = sec * 1000000000 + (int64_t)nsec;
        } else {
            return -EINVAL;
        }
        return 0;
    }
    case MSGPACK_OBJECT_STR:
        return record_parse_rfc3339(o->via.str.ptr, o->via.str.size, ns);
    default:
        return -EINVAL;
    }
}

static int parse_timestamp(const msgpack_object *o, int64_t *ns)
{
    int64_t v;
    if (parse_timestamp_any(o, &v) < 0 || v < 0)
        return -EINVAL;
    *ns = v;
    return 0;
}

/* ---- level ---------------------------------------------------------------------------------------- */

static const char *const LEVELS[][2] = {
    {"TRACE", "TRACE"}, {"DEBUG", "DEBUG"}, {"INFO", "INFO"},   {"WARN", "WARN"},
    {"WARNING", "WARN"}, {"ERROR", "ERROR"}, {"FATAL", "FATAL"}, {"CRITICAL", "FATAL"},
};

/* Canonical upper-case name of a level, or NULL when it is not one we know. */
static const char *level_canonical(const char *s, size_t n)
{
    char up[9];
    if (n == 0 || n > 8)
        return NULL;
    for (size_t i = 0; i < n; i++)
        up[i] = (s[i] >= 'a' && s[i] <= 'z') ? (char)(s[i] - 32) : s[i];
    up[n] = 0;
    for (size_t i = 0; i < sizeof LEVELS / sizeof LEVELS[0]; i++)
        if (strcmp(up, LEVELS[i][0]) == 0)
            return LEVELS[i][1];
    return NULL;
}

/* ---- log ids --------------------------------------------------------------------------------------- */

static uint64_t rng_next(uint64_t s[2]) /* xorshift128+ */
{
    uint64_t a = s[0], b = s[1];
    s[0] = b;
    a ^= a << 23;
    s[1] = a ^ b ^ (a >> 17) ^ (b >> 26);
    return s[1] + b;
}

static int new_log_id(record_enc *e, record_span *out)
{
    static const char hex[] = "0123456789abcdef";
    if (text_reserve(e, 32) < 0)
        return -ENOMEM;
    char *o = e->text + e->text_len;
    for (int w = 0; w < 2; w++) {
        uint64_t v = rng_next(e->rng);
        for (int i = 0; i < 16; i++, v >>= 4)
            *o++ = hex[v & 15];
    }
    *out = (record_span){NULL, e->text_len, 32};
    e->text_len += 32;
    return 0;
}

/* ---- classify and emit ----------------------------------------------------------------------------- */

static int key_is(const msgpack_object *k, const char *name, size_t n)
{
    return k->via.str.size == n && memcmp(k->via.str.ptr, name, n) == 0;
}

/* The RECORD_T_* tag of a metadata value (record.h). */
static char value_type(const msgpack_object *v)
{
    switch (v->type) {
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        return v->via.u64 <= INT64_MAX ? RECORD_T_INT : RECORD_T_STRING;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        return RECORD_T_INT;
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        return RECORD_T_DOUBLE;
    case MSGPACK_OBJECT_BOOLEAN:
        return RECORD_T_BOOL;
    case MSGPACK_OBJECT_NIL:
        return RECORD_T_NIL;
    case MSGPACK_OBJECT_MAP:
        return RECORD_T_MAP;
    case MSGPACK_OBJECT_ARRAY:
        return RECORD_T_ARRAY;
    case MSGPACK_OBJECT_BIN:
        return RECORD_T_BIN;
    default:
        return RECORD_T_STRING;
    }
}

static int add_meta(record_enc *e, record_span key, record_span val, char type)
{
    if (grow((void **)&e->kv, &e->kv_cap, e->n_kv + 1, sizeof *e->kv) < 0)
        return -ENOMEM;
    e->kv[e->n_kv++] = (record_kv){key, val, type};
    return 0;
}

/* A pair as metadata: its key's text form (a str key as is), its value's text form. */
static int meta_pair(record_enc *e, const msgpack_object_kv *kv, record_info *info)
{
    record_span ks, vs;
    int rc = kv->key.type == MSGPACK_OBJECT_STR ? str_span(e, kv->key.via.str.ptr, kv->key.via.str.size, &ks, info)
                                                : value_span(e, &kv->key, &ks, info);
    if (rc < 0 || (rc = value_span(e, &kv->val, &vs, info)) < 0)
        return rc;
    return add_meta(e, ks, vs, value_type(&kv->val));
}

/* Field `which` is taken from kv: the last of a repeated key wins, and the pair it replaces is kept as metadata
 * under the same key (nothing a client sent is discarded silently; docs/protocol.md). */
static int take(record_enc *e, fields *f, int which, const msgpack_object_kv *kv, record_info *info)
{
    const msgpack_object_kv *prev = f->taken[which];
    f->taken[which] = kv;
    return prev ? meta_pair(e, prev, info) : 0;
}

/* One key/value of the record map: a direct field, the timestamp, a reserved key, or metadata. */
static int classify_pair(record_enc *e, const msgpack_object_kv *kv, fields *f, record_info *info)
{
    const msgpack_object *k = &kv->key, *v = &kv->val;
    int rc;
    if (k->type != MSGPACK_OBJECT_STR)
        return meta_pair(e, kv, info); /* a non-string key: its text form */
    if (k->via.str.size > 0 && k->via.str.ptr[0] == '_') {
        info->reserved_keys++;
        return 0;
    }
    if (key_is(k, "message", 7)) {
        if (v->type != MSGPACK_OBJECT_STR)
            return -EINVAL;
        f->has_message = 1;
        if ((rc = take(e, f, K_MESSAGE, kv, info)) < 0)
            return rc;
        return str_span(e, v->via.str.ptr, v->via.str.size, &f->message, info);
    }
    static const struct { const char *name; size_t len; int which; } direct[] = {
        {"service_name", 12, K_SERVICE}, {"level", 5, K_LEVEL}, {"trace_id", 8, K_TRACE},
        {"span_id", 7, K_SPAN},          {"log_id", 6, K_LOGID},
    };
    record_span *span[K_COUNT] = {[K_SERVICE] = &f->service, [K_LEVEL] = &f->level, [K_TRACE] = &f->trace,
                                  [K_SPAN] = &f->span, [K_LOGID] = &f->log_id};
    for (size_t i = 0; i < sizeof direct / sizeof direct[0]; i++) {
        if (!key_is(k, direct[i].name, direct[i].len))
            continue;
        f->has_level |= direct[i].which == K_LEVEL;
        f->has_log_id |= direct[i].which == K_LOGID;
        if ((rc = take(e, f, direct[i].which, kv, info)) < 0)
            return rc;
        return value_span(e, v, span[direct[i].which], info);
    }
    int64_t ts;
    if (key_is(k, "timestamp", 9) && parse_timestamp(v, &ts) == 0) {
        f->ts = ts; /* only on success: a failed parse may have written a partial value */
        return take(e, f, K_TS, kv, info);
    }
    if (key_is(k, "timestamp", 9))
        info->timestamp_unparsed = 1;
    return meta_pair(e, kv, info);
}

static int classify(record_enc *e, const msgpack_object *obj, fields *f, record_info *info)
{
    for (uint32_t i = 0; i < obj->via.map.size; i++) {
        int rc = classify_pair(e, &obj->via.map.ptr[i], f, info);
        if (rc < 0)
            return rc;
    }
    if (!f->has_message)
        return -EINVAL;
    if (!f->has_level || f->level.len == 0) {
        f->level = span_direct("INFO", 4);
    } else {
        const char *canon = level_canonical(span_ptr(e, &f->level), f->level.len);
        if (canon)
            f->level = span_direct(canon, strlen(canon));
        else
            info->level_unknown = 1;
    }
    if (!f->has_log_id || f->log_id.len == 0)
        return new_log_id(e, &f->log_id);
    return 0;
}

static size_t opt_len(const char *s) { return s ? strlen(s) : 0; }

static size_t source_size(const record_source *s, size_t comm_len, size_t host_len)
{
    size_t n = 0;
    if (opt_len(s->cgroup))
        n += pbw_len_field_size(opt_len(s->cgroup));
    if (opt_len(s->container_id))
        n += pbw_len_field_size(opt_len(s->container_id));
    if (s->pid)
        n += pbw_varint_field_size((uint64_t)(int64_t)s->pid);
    if (s->uid)
        n += pbw_varint_field_size(s->uid);
    if (s->gid)
        n += pbw_varint_field_size(s->gid);
    if (comm_len)
        n += pbw_len_field_size(comm_len);
    if (host_len)
        n += pbw_len_field_size(host_len);
    return n;
}

static uint8_t *put_str(uint8_t *p, uint32_t field, const record_enc *e, const record_span *s)
{
    return s->len ? pbw_put_bytes(p, field, span_ptr(e, s), s->len) : p;
}

static size_t str_size(const record_span *s) { return s->len ? pbw_len_field_size(s->len) : 0; }

/* How many tag bytes RECORD_F_META_TYPES needs: up to the last non-string value (0: no field). */
static size_t types_len(const record_enc *e)
{
    size_t n = e->typed ? e->n_kv : 0;
    while (n > 0 && e->kv[n - 1].type == RECORD_T_STRING)
        n--;
    return n;
}

static size_t types_size(size_t n)
{
    return n ? pbw_varint_size((uint64_t)RECORD_F_META_TYPES << 3 | PBW_LEN) + pbw_varint_size(n) + n : 0;
}

static uint8_t *put_types(uint8_t *p, const record_enc *e, size_t n)
{
    if (!n)
        return p;
    p = pbw_put_tag(p, RECORD_F_META_TYPES, PBW_LEN);
    p = pbw_put_varint(p, n);
    for (size_t i = 0; i < n; i++)
        *p++ = (uint8_t)e->kv[i].type;
    return p;
}

static int emit(record_enc *e, const fields *f, const record_source *src)
{
    size_t n_types = types_len(e);
    size_t comm_len = src ? strnlen(src->comm, sizeof src->comm) : 0;
    size_t host_len = src && src->hostname ? strlen(src->hostname) : 0;
    size_t src_len = src ? source_size(src, comm_len, host_len) : 0;
    size_t total = str_size(&f->service) + str_size(&f->level) + str_size(&f->message) + str_size(&f->trace) +
                   str_size(&f->span) + str_size(&f->log_id);
    for (size_t i = 0; i < e->n_kv; i++)
        total += pbw_len_field_size(str_size(&e->kv[i].key) + str_size(&e->kv[i].val));
    if (f->ts)
        total += pbw_varint_field_size((uint64_t)f->ts);
    if (src_len)
        total += pbw_len_field_size(src_len);
    total += types_size(n_types);
    if (grow((void **)&e->out, &e->out_cap, total, 1) < 0)
        return -ENOMEM;
    uint8_t *p = e->out;
    p = put_str(p, F_SERVICE, e, &f->service);
    p = put_str(p, F_LEVEL, e, &f->level);
    p = put_str(p, F_MESSAGE, e, &f->message);
    p = put_str(p, F_TRACE, e, &f->trace);
    p = put_str(p, F_SPAN, e, &f->span);
    for (size_t i = 0; i < e->n_kv; i++) {
        const record_kv *kv = &e->kv[i];
        p = pbw_put_tag(p, F_META, PBW_LEN);
        p = pbw_put_varint(p, str_size(&kv->key) + str_size(&kv->val));
        p = put_str(p, 1, e, &kv->key);
        p = put_str(p, 2, e, &kv->val);
    }
    p = put_str(p, F_LOGID, e, &f->log_id);
    if (f->ts)
        p = pbw_put_uint(p, F_TS, (uint64_t)f->ts);
    if (src_len) {
        p = pbw_put_tag(p, F_SOURCE, PBW_LEN);
        p = pbw_put_varint(p, src_len);
        if (src->pid)
            p = pbw_put_uint(p, 1, (uint64_t)(int64_t)src->pid);
        if (src->uid)
            p = pbw_put_uint(p, 2, src->uid);
        if (src->gid)
            p = pbw_put_uint(p, 3, src->gid);
        if (comm_len)
            p = pbw_put_bytes(p, 4, src->comm, comm_len);
        if (host_len)
            p = pbw_put_bytes(p, 5, src->hostname, host_len);
        if (opt_len(src->cgroup))
            p = pbw_put_bytes(p, 6, src->cgroup, opt_len(src->cgroup));
        if (opt_len(src->container_id))
            p = pbw_put_bytes(p, 7, src->container_id, opt_len(src->container_id));
    }
    p = put_types(p, e, n_types);
    e->out_len = (size_t)(p - e->out);
    return 0;
}

int record_encode(record_enc *e, const msgpack_object *obj, const record_source *src, int64_t now_ns,
                  record_info *info)
{
    memset(info, 0, sizeof *info);
    e->text_len = 0;
    e->n_kv = 0;
    e->out_len = 0;
    if (obj->type != MSGPACK_OBJECT_MAP)
        return -EINVAL;
    fields f;
    memset(&f, 0, sizeof f);
    f.ts = now_ns;
    int rc = classify(e, obj, &f, info);
    if (f.service.len > 0) { /* also on failure: the stats attribute a refused record to its service */
        info->service = span_ptr(e, &f.service);
        info->service_len = f.service.len;
    }
    if (rc < 0)
        return rc;
    info->log_id = span_ptr(e, &f.log_id);
    info->log_id_len = f.log_id.len;
    return emit(e, &f, src);
}

int record_enc_init(record_enc *e)
{
    memset(e, 0, sizeof *e);
    if (getrandom(e->rng, sizeof e->rng, 0) != (ssize_t)sizeof e->rng)
        return -errno;
    if (!e->rng[0] && !e->rng[1])
        e->rng[0] = 1;
    return 0;
}

void record_enc_free(record_enc *e)
{
    free(e->out);
    free(e->text);
    free(e->kv);
    memset(e, 0, sizeof *e);
}
