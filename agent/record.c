/* record.c — msgpack record -> WriteLogRequest bytes (see record.h for the contract).
 *
 * Two passes over one record: `classify` walks the record's msgpack bytes once (mpread.h: a header at a time, no
 * object tree, no allocation) and collects spans (pointers into those bytes, or offsets into e->text for values
 * that needed converting), noting the nesting of its containers (ingest settles mpscan's checks on this walk);
 * `plan` sizes the entry (record_prepare_raw stops there) and `record_write` writes the protobuf wire format by hand
 * (pbwire.h) where the caller says: a ring reservation of that size, or e->out (record_encode_raw). Numbers are
 * formatted by hand (no printf) except the rare doubles fast_double does not cover. Text forms (docs/protocol.md, Keys): str as is (invalid UTF-8 repaired with U+FFFD so
 * that upstream proto3 parsers accept it), int/float/bool as text, nil as "", map/array as compact JSON,
 * bin as base64, ext as base64 of its data. With e->typed (OTLP upstream) each metadata value's msgpack type
 * also goes into field RECORD_F_META_TYPES, so that otlp.c can send typed attribute values (record.h). */
#include "record.h"

#include "common/utf8.h"
#include "jsonstr.h"
#include "mpread.h"
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

typedef record_fields fields; /* record.h: kept in the encoder between record_prepare_raw and record_write */
_Static_assert((int)K_COUNT == (int)RECORD_TAKEN_N, "record.h's RECORD_TAKEN_N is K_COUNT");

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

/* The repaired copy of a str value that is not valid UTF-8, as a span (out of line: the rare case). */
static __attribute__((noinline)) int str_span_repaired(record_enc *e, const char *s, size_t n, record_span *out,
                                                       record_info *info)
{
    info->utf8_repaired = 1;
    size_t off = e->text_len;
    if (text_put_utf8_repaired(e, s, n) < 0)
        return -ENOMEM;
    *out = (record_span){NULL, off, e->text_len - off};
    return 0;
}

/* A str value as a span: direct when valid, repaired copy otherwise. Inlined into its callers: it runs for every
 * key and str value (a call each was ~8% of the record step). */
static inline __attribute__((always_inline)) int str_span(record_enc *e, const char *s, size_t n, record_span *out,
                                                          record_info *info)
{
    if (utf8_all_ascii((const uint8_t *)s, n) || utf8_valid((const uint8_t *)s, n)) { /* the first inlined */
        *out = span_direct(s, n);
        return 0;
    }
    return str_span_repaired(e, s, n, out, info);
}

/* ---- text forms ------------------------------------------------------------------------------------ */

/* "00" .. "99": integers are written two digits a table entry (u64_digits). */
static const char digit_pairs[201] = "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
                                     "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
                                     "8081828384858687888990919293949596979899";

/* Decimal digits of v at the end of buf[20]; returns where they start. */
static char *u64_digits(char *end, uint64_t v)
{
    while (v >= 10000) { /* four digits a step: one 64-bit division, then two of a 32-bit remainder */
        uint32_t r = (uint32_t)(v % 10000);
        v /= 10000;
        end -= 4;
        memcpy(end, digit_pairs + 2 * (r / 100), 2);
        memcpy(end + 2, digit_pairs + 2 * (r % 100), 2);
    }
    if (v >= 100) {
        unsigned r = (unsigned)(v % 100);
        v /= 100;
        end -= 2;
        memcpy(end, digit_pairs + 2 * r, 2);
    }
    if (v >= 10) {
        end -= 2;
        memcpy(end, digit_pairs + 2 * v, 2);
    } else {
        *--end = (char)('0' + v);
    }
    return end;
}

/* The number of decimal digits of v (1 for 0): the binary length's estimate, corrected by one comparison. v | 1
 * has as many digits as v (no power of ten above 1 is odd) and gives 0 one digit. */
static unsigned u64_len(uint64_t v)
{
    static const uint64_t p10[20] = {1u, 10u, 100u, 1000u, 10000u, 100000u, 1000000u, 10000000u, 100000000u,
                                     1000000000u, 10000000000u, 100000000000u, 1000000000000u, 10000000000000u,
                                     100000000000000u, 1000000000000000u, 10000000000000000u,
                                     100000000000000000u, 1000000000000000000u, 10000000000000000000u};
    uint64_t w = v | 1;
    unsigned t = (unsigned)(64 - __builtin_clzll(w)) * 1233u >> 12; /* 1233 / 4096 ~ log10(2) */
    return t + (w >= p10[t]);
}

/* The text of v (with '-' when neg) appended to e->text, its digits written in place from the right: its length is
 * known first. (Digits formatted into a local buffer and copied out by one wide load cost a failed store
 * forwarding, ~70% of this function's time in perf.) */
static inline __attribute__((always_inline)) int text_put_u64(record_enc *e, uint64_t v, int neg)
{
    size_t n = u64_len(v) + (neg != 0);
    if (e->text_limit && e->text_len + n > e->text_limit)
        return -E2BIG;
    if (grow((void **)&e->text, &e->text_cap, e->text_len + n, 1) < 0)
        return -ENOMEM;
    char *start = e->text + e->text_len;
    u64_digits(start + n, v);
    if (neg)
        *start = '-';
    e->text_len += n;
    return 0;
}

static const double POW10[] = {1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
                               1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18};

/* The common case of text_put_double without printf: a finite double in [1e-4, 1e15) whose shortest decimal has at
 * most 15 significant digits, r / 10^k with the smallest k. Such a decimal is exactly what "%.15g" prints (fixed
 * notation there, and it is the 15-digit rounding of v since v is within half an ulp of it, less than half a step
 * of that grid) and it reads back as v (v is the correctly rounded r / 10^k, r and 10^k being exact doubles).
 * Returns the length written to buf[40], or 0 when v is not such a double. */
static int fast_double(char *buf, double v)
{
    double a = fabs(v);
    if (!(a >= 1e-4 && a < 1e15))
        return 0;
    int x = 14; /* the decimal exponent of a: largest x with 10^x <= a */
    while (x > -4 && a < (x >= 0 ? POW10[x] : 1.0 / POW10[-x]))
        x--;
    for (int k = 0; k <= 14 - x; k++) {
        double r = nearbyint(a * POW10[k]);
        if (r / POW10[k] != a)
            continue;
        uint64_t m = (uint64_t)r, scale = 1;
        for (int i = 0; i < k; i++)
            scale *= 10;
        char *end = buf + 40, *p = end;
        if (k > 0) {
            uint64_t frac = m % scale;
            for (int i = 0; i < k; i++, frac /= 10)
                *--p = (char)('0' + frac % 10);
            *--p = '.';
        } else {
            *--p = '0';
            *--p = '.';
        }
        p = u64_digits(p, m / scale);
        if (signbit(v))
            *--p = '-';
        int n = (int)(end - p);
        memmove(buf, p, (size_t)n);
        return n;
    }
    return 0;
}

/* A double's text: the shortest of "%.15g".."%.17g" (float: from "%.6g") that reads back the same, with ".0"
 * added when it would read as an integer; NaN, Infinity, -Infinity. fast_double gives the same bytes for the
 * usual values without printf. */
static int text_put_double(record_enc *e, double v, int is_f32)
{
    char buf[40];
    if (isnan(v))
        return text_put(e, "NaN", 3);
    if (isinf(v))
        return v > 0 ? text_put(e, "Infinity", 8) : text_put(e, "-Infinity", 9);
    if (v == 0)
        return signbit(v) ? text_put(e, "-0.0", 4) : text_put(e, "0.0", 3);
    int n = is_f32 ? 0 : fast_double(buf, v);
    if (n > 0)
        return text_put(e, buf, (size_t)n);
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
        size_t run = json_str_run(p + i, n - i); /* plain printable ASCII: the whole run at once */
        int rc;
        if (run) {
            rc = text_put(e, p + i, run);
            i += run;
        } else {
            char esc[JSON_STR_ESC_MAX];
            const char *piece;
            size_t len;
            i += json_str_char(p + i, n - i, 0, esc, &piece, &len);
            rc = text_put(e, piece, len);
        }
        if (rc < 0)
            return rc;
    }
    return text_putc(e, '"');
}

/* Notes a container header read `depth` containers deep (the record map is at 0): e->nesting is the deepest
 * nesting seen (containers on the path, the record map counting 1), what mpscan's depth limit is checked on. */
static inline void note_container(record_enc *e, int depth)
{
    if (depth + 1 > e->nesting)
        e->nesting = depth + 1;
}

enum { SKIP_STACK = 40 }; /* deeper than mpscan lets through (32): past it, only "deeper" is noted */

/* Moves *p past the items of v when it is a container (its header, read `depth` deep, is read already), noting the
 * nesting of the containers inside it (note_container). Without recursion: a stack of the items still to pass. */
static int skip_items(record_enc *e, const mpr_value *v, const uint8_t **p, const uint8_t *end, int depth)
{
    uint64_t left[SKIP_STACK];
    int sp = 0;
    if (v->type != MPR_ARRAY && v->type != MPR_MAP)
        return 0;
    left[sp++] = v->type == MPR_MAP ? 2 * (uint64_t)v->len : v->len;
    while (sp > 0) {
        if (left[sp - 1] == 0) {
            sp--;
            continue;
        }
        left[sp - 1]--;
        mpr_value it;
        if (mpr_read(p, end, &it) < 0)
            return -EINVAL;
        if (it.type != MPR_ARRAY && it.type != MPR_MAP)
            continue;
        note_container(e, depth + sp);
        uint64_t n = it.type == MPR_MAP ? 2 * (uint64_t)it.len : it.len;
        if (sp == SKIP_STACK) { /* deeper than any record mpscan passes: the rest without the nesting */
            note_container(e, depth + sp + 1);
            for (int i = 0; i < sp; i++)
                n += left[i];
            return mpr_skip(p, end, n);
        }
        left[sp++] = n;
    }
    return 0;
}

static int text_put_scalar(record_enc *e, const mpr_value *v, const uint8_t **p, const uint8_t *end, int json);

/* A map key inside JSON (read `depth` deep): a str as a JSON string; a container as a fixed name (re-escaping its
 * JSON would double at every level); any other scalar as its quoted text form (digits, signs, letters and base64
 * need no escape). */
static int json_put_key(record_enc *e, const mpr_value *k, const uint8_t **p, const uint8_t *end, int depth)
{
    if (k->type == MPR_STR)
        return json_put_string(e, k->ptr, k->len);
    if (k->type == MPR_MAP || k->type == MPR_ARRAY) {
        note_container(e, depth);
        int rc = skip_items(e, k, p, end, depth);
        if (rc < 0)
            return rc;
        return k->type == MPR_MAP ? text_put(e, "\"(map)\"", 7) : text_put(e, "\"(array)\"", 9);
    }
    int rc = text_putc(e, '"');
    if (rc == 0)
        rc = text_put_scalar(e, k, p, end, 0);
    return rc < 0 ? rc : text_putc(e, '"');
}

/* The JSON form of v (its header read; its items, if any, follow at *p). `depth`: JSON levels above v; v's header
 * was read depth + 1 deep in the record (a metadata value of the record map is at JSON depth 0). */
static int json_put(record_enc *e, const mpr_value *v, const uint8_t **p, const uint8_t *end, int depth)
{
    if (v->type != MPR_ARRAY && v->type != MPR_MAP)
        return text_put_scalar(e, v, p, end, 1);
    note_container(e, depth + 1);
    if (depth > JSON_MAX_DEPTH) {
        int rc = skip_items(e, v, p, end, depth + 1);
        return rc < 0 ? rc : text_put(e, "null", 4);
    }
    int map = v->type == MPR_MAP;
    int rc = text_putc(e, map ? '{' : '[');
    for (uint32_t i = 0; rc == 0 && i < v->len; i++) {
        mpr_value item;
        if (i)
            rc = text_putc(e, ',');
        if (rc == 0 && map) {
            if (mpr_read(p, end, &item) < 0)
                return -EINVAL;
            rc = json_put_key(e, &item, p, end, depth + 2);
            if (rc == 0)
                rc = text_putc(e, ':');
        }
        if (rc == 0 && mpr_read(p, end, &item) < 0)
            return -EINVAL;
        if (rc == 0)
            rc = json_put(e, &item, p, end, depth + 1);
    }
    return rc < 0 ? rc : text_putc(e, map ? '}' : ']');
}

/* Appends the text form of a value: `json` selects JSON literals (strings quoted, nil as null). */
static int text_put_scalar(record_enc *e, const mpr_value *v, const uint8_t **p, const uint8_t *end, int json)
{
    switch (v->type) {
    case MPR_NIL:
        return json ? text_put(e, "null", 4) : 0;
    case MPR_BOOL:
        return v->v.b ? text_put(e, "true", 4) : text_put(e, "false", 5);
    case MPR_UINT:
        return text_put_u64(e, v->v.u, 0);
    case MPR_INT:
        return text_put_u64(e, 0 - (uint64_t)v->v.i, 1);
    case MPR_F32:
    case MPR_F64:
        if (json && !isfinite(v->v.f))
            return text_put(e, "null", 4);
        return text_put_double(e, v->v.f, v->type == MPR_F32);
    case MPR_STR:
        if (json)
            return json_put_string(e, v->ptr, v->len);
        return text_put_utf8_repaired(e, v->ptr, v->len);
    case MPR_BIN:
    case MPR_EXT:
        if (json && text_putc(e, '"') < 0)
            return -ENOMEM;
        if (text_put_base64(e, v->ptr, v->len) < 0)
            return -ENOMEM;
        return json ? text_putc(e, '"') : 0;
    case MPR_ARRAY:
    case MPR_MAP:
        return json_put(e, v, p, end, 0);
    }
    return 0;
}

/* Text form of any value as a span (str values stay in place when valid UTF-8). */
static inline __attribute__((always_inline)) int value_span(record_enc *e, const mpr_value *v, const uint8_t **p,
                                                            const uint8_t *end, record_span *out, record_info *info)
{
    if (v->type == MPR_STR)
        return str_span(e, v->ptr, v->len, out, info);
    size_t off = e->text_len;
    int rc;
    if (v->type == MPR_UINT) { /* ids and counts, most metadata that is not a str: text_put_scalar's case inline */
        rc = text_put_u64(e, v->v.u, 0);
    } else {
        const uint8_t *q = *p; /* a copy to the call: the caller's cursor can stay in a register (see classify_pair) */
        rc = text_put_scalar(e, v, &q, end, 0);
        *p = q;
    }
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

/* Two decimal digits at s as 0..99, or -1 when either is not a digit. */
static inline int digit2(const char *s)
{
    unsigned a = (unsigned)(unsigned char)s[0] - '0', b = (unsigned)(unsigned char)s[1] - '0';
    return a > 9 || b > 9 ? -1 : (int)(a * 10 + b);
}

/* The fixed part is read at fixed places (the shortest valid form, "YYYY-MM-DDTHH:MM:SSZ", is 20 bytes). */
int record_parse_rfc3339(const char *s, size_t n, int64_t *out_ns)
{
    if (n < 20)
        return -EINVAL;
    int cy = digit2(s), yy = digit2(s + 2), mo_ = digit2(s + 5), d_ = digit2(s + 8), h_ = digit2(s + 11),
        mi_ = digit2(s + 14), se_ = digit2(s + 17);
    if ((cy | yy | mo_ | d_ | h_ | mi_ | se_) < 0 || s[4] != '-' || s[7] != '-' ||
        (s[10] != 'T' && s[10] != 't' && s[10] != ' ') || s[13] != ':' || s[16] != ':')
        return -EINVAL;
    unsigned y = (unsigned)(cy * 100 + yy), mo = (unsigned)mo_, d = (unsigned)d_, h = (unsigned)h_,
             mi = (unsigned)mi_, se = (unsigned)se_, oh = 0, om = 0;
    static const unsigned mdays[12] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || h > 23 || mi > 59 || se > 60)
        return -EINVAL; /* 60: a leap second, read as the next minute's first */
    if (mo == 2 && d == 29 && (y % 4 != 0 || (y % 100 == 0 && y % 400 != 0)))
        return -EINVAL;
    size_t i = 19;
    int64_t frac = 0;
    if (s[i] == '.') {
        static const int32_t scale[9] = {100000000, 10000000, 1000000, 100000, 10000, 1000, 100, 10, 1};
        size_t start = ++i;
        while (i < n && s[i] >= '0' && s[i] <= '9') {
            if (i - start < 9) /* digits past the nanosecond are read and ignored */
                frac += (s[i] - '0') * scale[i - start];
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
        int oh_, om_;
        if (n - i < 6 || (oh_ = digit2(s + i + 1)) < 0 || s[i + 3] != ':' || (om_ = digit2(s + i + 4)) < 0 ||
            oh_ > 23 || om_ > 59)
            return -EINVAL;
        oh = (unsigned)oh_;
        om = (unsigned)om_;
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

/* Interprets a timestamp value as unix ns (any of its forms, record.h). Returns 0 and sets *ns, or -EINVAL for
 * a value that is not a time: the caller keeps it as metadata. A time before 1970 is not one (docs/protocol.md). */
static int parse_timestamp_any(const mpr_value *v, int64_t *ns)
{
    const unsigned char *p = (const unsigned char *)v->ptr;
    switch (v->type) {
    case MPR_UINT:
        if (v->v.u > INT64_MAX)
            return -EINVAL;
        *ns = (int64_t)v->v.u;
        return 0;
    case MPR_F32:
    case MPR_F64: {
        double d = v->v.f * 1e9;
        if (!isfinite(d) || d >= 9.2e18 || d <= -9.2e18)
            return -EINVAL;
        *ns = llround(d);
        return 0;
    }
    case MPR_EXT:
        if (v->ext_type != -1)
            return -EINVAL;
        if (v->len == 4) {
            *ns = (int64_t)mpr_be(p, 4) * 1000000000;
        } else if (v->len == 8) {
            uint64_t x = mpr_be(p, 8);
            if (x >> 34 >= 1000000000) /* nanoseconds past a second: not a msgpack timestamp */
                return -EINVAL;
            if (__builtin_mul_overflow((int64_t)(x & 0x3ffffffffULL), (int64_t)1000000000, ns))
                return -EINVAL;
            if (__builtin_add_overflow(*ns, (int64_t)(x >> 34), ns)) /* found by fuzz_ingest */
                return -EINVAL;
        } else if (v->len == 12) {
            int64_t sec = (int64_t)mpr_be(p + 4, 8);
            uint64_t nsec = mpr_be(p, 4);
            if (sec > 9200000000LL || sec < -9200000000LL || nsec >= 1000000000)
                return -EINVAL;
            *ns = sec * 1000000000 + (int64_t)nsec;
        } else {
            return -EINVAL;
        }
        return 0;
    case MPR_STR:
        return record_parse_rfc3339(v->ptr, v->len, ns);
    default: /* a negative integer, nil, bool, bin, containers */
        return -EINVAL;
    }
}

static int parse_timestamp(const mpr_value *v, int64_t *ns)
{
    int64_t t;
    if (parse_timestamp_any(v, &t) < 0 || t < 0)
        return -EINVAL;
    *ns = t;
    return 0;
}

/* ---- level ---------------------------------------------------------------------------------------- */

/* Canonical upper-case name of a level, or NULL when it is not one we know (TRACE DEBUG INFO WARN/WARNING ERROR
 * FATAL/CRITICAL, any case). */
static inline __attribute__((always_inline)) const char *level_canonical(const char *s, size_t n)
{
    char up[8];
    if (n < 4 || n > 8)
        return NULL;
    for (size_t i = 0; i < n; i++)
        up[i] = (s[i] >= 'a' && s[i] <= 'z') ? (char)(s[i] - 32) : s[i];
    switch (n) {
    case 4:
        return !memcmp(up, "INFO", 4) ? "INFO" : !memcmp(up, "WARN", 4) ? "WARN" : NULL;
    case 5:
        return !memcmp(up, "TRACE", 5) ? "TRACE" : !memcmp(up, "DEBUG", 5) ? "DEBUG"
             : !memcmp(up, "ERROR", 5) ? "ERROR" : !memcmp(up, "FATAL", 5) ? "FATAL" : NULL;
    case 7:
        return !memcmp(up, "WARNING", 7) ? "WARN" : NULL;
    case 8:
        return !memcmp(up, "CRITICAL", 8) ? "FATAL" : NULL;
    default:
        return NULL;
    }
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

/* The 8 low nibbles of v as lower-case hex at o, the lowest first. On a little-endian machine, 8 at once: each nibble
 * spread to a byte of its own (byte i = nibble i), then '0' added to all and 'a' - '0' - 10 more to those >= 10
 * (a nibble + 6 carries into bit 4 exactly then): a loop of a table lookup per digit was 5% of a Forward event. */
static inline void hex8(char *o, uint32_t v)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    uint64_t y = v;
    y = (y | y << 16) & 0x0000ffff0000ffffULL;
    y = (y | y << 8) & 0x00ff00ff00ff00ffULL;
    y = (y | y << 4) & 0x0f0f0f0f0f0f0f0fULL;
    uint64_t ge10 = ((y + 0x0606060606060606ULL) >> 4) & 0x0101010101010101ULL;
    y += 0x3030303030303030ULL + ge10 * ('a' - '0' - 10);
    memcpy(o, &y, 8);
#else
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < 8; i++, v >>= 4)
        o[i] = hex[v & 15];
#endif
}

static int new_log_id(record_enc *e, record_span *out)
{
    if (text_reserve(e, 32) < 0)
        return -ENOMEM;
    char *o = e->text + e->text_len;
    for (int w = 0; w < 2; w++, o += 16) {
        uint64_t v = rng_next(e->rng);
        hex8(o, (uint32_t)v);
        hex8(o + 8, (uint32_t)(v >> 32));
    }
    *out = (record_span){NULL, e->text_len, 32};
    e->text_len += 32;
    return 0;
}

/* ---- classify and emit ----------------------------------------------------------------------------- */

/* The field a str key names (K_*), or -1 for metadata: told apart by length first. */
static inline __attribute__((always_inline)) int field_of(const mpr_value *k)
{
    const char *s = k->ptr;
    switch (k->len) {
    case 5: return memcmp(s, "level", 5) ? -1 : K_LEVEL;
    case 6: return memcmp(s, "log_id", 6) ? -1 : K_LOGID;
    case 7: return !memcmp(s, "message", 7) ? K_MESSAGE : !memcmp(s, "span_id", 7) ? K_SPAN : -1;
    case 8: return memcmp(s, "trace_id", 8) ? -1 : K_TRACE;
    case 9: return memcmp(s, "timestamp", 9) ? -1 : K_TS;
    case 12: return memcmp(s, "service_name", 12) ? -1 : K_SERVICE;
    default: return -1;
    }
}

/* The RECORD_T_* tag of a metadata value (record.h). */
static inline char value_type(const mpr_value *v)
{
    switch (v->type) {
    case MPR_UINT:
        return v->v.u <= INT64_MAX ? RECORD_T_INT : RECORD_T_STRING;
    case MPR_INT:
        return RECORD_T_INT;
    case MPR_F32:
    case MPR_F64:
        return RECORD_T_DOUBLE;
    case MPR_BOOL:
        return RECORD_T_BOOL;
    case MPR_NIL:
        return RECORD_T_NIL;
    case MPR_MAP:
        return RECORD_T_MAP;
    case MPR_ARRAY:
        return RECORD_T_ARRAY;
    case MPR_BIN:
        return RECORD_T_BIN;
    default:
        return RECORD_T_STRING;
    }
}

static __attribute__((noinline)) int grow_kv(record_enc *e)
{
    return grow((void **)&e->kv, &e->kv_cap, e->n_kv + 1, sizeof *e->kv);
}

static inline __attribute__((always_inline)) int add_meta(record_enc *e, record_span key, record_span val, char type)
{
    if (e->n_kv >= e->kv_cap && grow_kv(e) < 0) /* the table grows rarely: once per encoder, to its largest record */
        return -ENOMEM;
    e->kv[e->n_kv++] = (record_kv){key, val, type, 0};
    return 0;
}

/* A pair as metadata: its key's text form (a str key as is), its value's text form. k is read; the value is
 * next at *p. */
/* The metadata entry of key text ks and value v (its header read; a container's items next at *p). */
static inline __attribute__((always_inline)) int meta_value(record_enc *e, record_span ks, const mpr_value *v,
                                                            const uint8_t **p, const uint8_t *end, record_info *info)
{
    record_span vs;
    int rc = value_span(e, v, p, end, &vs, info);
    return rc < 0 ? rc : add_meta(e, ks, vs, value_type(v));
}

static int meta_pair(record_enc *e, const mpr_value *k, const uint8_t **p, const uint8_t *end, record_info *info)
{
    record_span ks;
    mpr_value v;
    int rc = value_span(e, k, p, end, &ks, info);
    if (rc < 0)
        return rc;
    if (mpr_read(p, end, &v) < 0)
        return -EINVAL;
    return meta_value(e, ks, &v, p, end, info);
}

/* A pair with a str key as metadata, both headers read (k, v): a container value's items are next at *p. */
static inline __attribute__((always_inline)) int meta_kv(record_enc *e, const mpr_value *k, const mpr_value *v,
                                                         const uint8_t **p, const uint8_t *end, record_info *info)
{
    record_span ks;
    int rc = str_span(e, k->ptr, k->len, &ks, info);
    return rc < 0 ? rc : meta_value(e, ks, v, p, end, info);
}

/* Field `which` is taken from the pair at `pair` (its key's first byte): the last of a repeated key wins, and the
 * pair it replaces is kept as metadata under the same key (nothing a client sent is discarded silently;
 * docs/protocol.md). */
static __attribute__((noinline)) int take_repeat(record_enc *e, const uint8_t *prev, const uint8_t *end,
                                                  record_info *info);

static inline __attribute__((always_inline)) int take(record_enc *e, fields *f, int which, const uint8_t *pair,
                                                      const uint8_t *end, record_info *info)
{
    const uint8_t *prev = f->taken[which];
    f->taken[which] = pair;
    return prev ? take_repeat(e, prev, end, info) : 0; /* the first of its key: no call (every field pair) */
}

/* A repeated field's earlier pair (at prev) as metadata. */
static int take_repeat(record_enc *e, const uint8_t *prev, const uint8_t *end, record_info *info)
{
    mpr_value k;
    if (mpr_read(&prev, end, &k) < 0)
        return -EINVAL;
    return meta_pair(e, &k, &prev, end, info);
}

/* One key/value of the record map: a direct field, the timestamp, a reserved key, or metadata. The pair starts at
 * *p; *p moves past it. Inlined into the walk with its cursor q, which no call that stays a call ever gets the
 * address of (they get a copy): so q lives in a register, not in memory (reloaded after every store the walk makes
 * through a byte pointer, which may alias it) — the headers' chain of loads was the step's longest. */
static inline __attribute__((always_inline)) int classify_kv(record_enc *e, const uint8_t *pair, const mpr_value *k,
                                                             const mpr_value *v, const uint8_t **p,
                                                             const uint8_t *end, fields *f, record_info *info);

static inline __attribute__((always_inline)) int classify_pair(record_enc *e, const uint8_t **p, const uint8_t *end,
                                                               fields *f, record_info *info)
{
    const uint8_t *pair = *p, *q = pair, *t;
    mpr_value k, v;
    int rc;
    if (mpr_read(&q, end, &k) < 0)
        return -EINVAL;
    if (k.type != MPR_STR) { /* a non-string key: its text form */
        rc = meta_pair(e, &k, (t = q, &t), end, info);
        *p = t;
        return rc;
    }
    if (mpr_read(&q, end, &v) < 0)
        return -EINVAL;
    rc = classify_kv(e, pair, &k, &v, &q, end, f, info);
    *p = q;
    return rc;
}

/* classify_pair's str-keyed pair at `pair`, both headers read (k, v): the value's items (if any) next at *p, which
 * moves past the pair. */
static inline __attribute__((always_inline)) int classify_kv(record_enc *e, const uint8_t *pair, const mpr_value *k,
                                                             const mpr_value *v, const uint8_t **p,
                                                             const uint8_t *end, fields *f, record_info *info)
{
    const uint8_t *q = *p, *t;
    int rc;
    if (k->len > 0 && k->ptr[0] == '_') {
        info->reserved_keys++;
        if (v->type == MPR_ARRAY || v->type == MPR_MAP)
            note_container(e, 1);
        rc = skip_items(e, v, (t = q, &t), end, 1);
        *p = t;
        return rc;
    }
    int which = field_of(k);
    if (which == K_MESSAGE) {
        if (v->type != MPR_STR)
            return -EINVAL;
        f->has_message = 1;
        *p = q;
        if ((rc = take(e, f, K_MESSAGE, pair, end, info)) < 0)
            return rc;
        return str_span(e, v->ptr, v->len, &f->message, info);
    }
    record_span *span[K_COUNT] = {[K_SERVICE] = &f->service, [K_LEVEL] = &f->level, [K_TRACE] = &f->trace,
                                  [K_SPAN] = &f->span, [K_LOGID] = &f->log_id};
    if (which >= 0 && which != K_TS) {
        f->has_level |= which == K_LEVEL;
        f->has_log_id |= which == K_LOGID;
        if ((rc = take(e, f, which, pair, end, info)) < 0)
            return rc;
        rc = value_span(e, v, &q, end, span[which], info);
        *p = q;
        return rc;
    }
    int64_t ts;
    if (which == K_TS && parse_timestamp(v, &ts) == 0) {
        f->ts = ts; /* only on success: a failed parse may have written a partial value */
        *p = q;
        return take(e, f, K_TS, pair, end, info);
    }
    if (which == K_TS)
        info->timestamp_unparsed = 1;
    rc = meta_kv(e, k, v, &q, end, info); /* metadata */
    *p = q;
    return rc;
}

/* After the pairs: the message required, the level made canonical (INFO when absent), a log_id made when absent. */
static inline __attribute__((always_inline)) int classify_end(record_enc *e, fields *f, record_info *info)
{
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

static int classify(record_enc *e, const uint8_t **p, const uint8_t *end, uint32_t pairs, fields *f,
                    record_info *info)
{
    for (uint32_t i = 0; i < pairs; i++) {
        int rc = classify_pair(e, p, end, f, info);
        if (rc < 0)
            return rc;
    }
    return classify_end(e, f, info);
}

/* Str key k is s (n bytes): the length, then the first byte before memcmp's call (most keys differ there). */
static inline int key_is(const mpr_value *k, const char *s, size_t n)
{
    return k->len == n && n > 0 && k->ptr[0] == s[0] && !memcmp(k->ptr, s, n);
}

/* The index of the rename whose `from` str key k is, or -1. */
static inline int rename_of(const record_parts *r, const mpr_value *k)
{
    for (unsigned i = 0; i < r->n_renames; i++)
        if (key_is(k, r->renames[i].from, r->renames[i].from_len))
            return (int)i;
    return -1;
}

/* The rank (< best) of the message key str key k is, or best when it is none of the first best. */
static inline unsigned message_rank(const record_parts *r, const mpr_value *k, unsigned best)
{
    for (unsigned i = 0; i < best; i++)
        if (key_is(k, r->message_keys[i], r->message_key_lens[i]))
            return i;
    return best;
}

/* The fields a record in parts gives first (as record_parts' map has them: service_name, timestamp, the extra pair),
 * then its pairs in one walk, the message among them: a pair that may be the message (a str value under a message
 * key of a better rank than any so far) is taken as metadata (under its rename, if any) and its table entry noted;
 * at the end the best one's entry leaves the table and its value is the message. So the table, and the entry, are
 * what the map would give, where that pair was left out of the pairs. A message key that names a field or a
 * reserved key (a `--forward-message-keys` of level, say) would be classified otherwise when not chosen: -EAGAIN,
 * for the caller to take the event as its map (forward_settle). On success info->wire_len is the pairs' bytes. */
static int classify_parts(record_enc *e, const record_parts *r, fields *f, record_info *info)
{
    int rc = str_span(e, r->service, r->service_len, &f->service, info);
    if (rc < 0)
        return rc;
    f->ts = r->ts_ns;
    f->has_message = 1;
    if (r->extra) {
        const uint8_t *q = r->extra;
        mpr_value v;
        if (mpr_read(&q, r->extra_end, &v) < 0)
            return -EINVAL;
        rc = meta_value(e, span_direct(r->extra_key, strlen(r->extra_key)), &v, &q, r->extra_end, info);
        if (rc < 0)
            return rc;
    }
    const uint8_t *p = r->pairs, *end = r->end;
    unsigned best = r->n_message_keys;
    size_t msg_kv = SIZE_MAX;
    for (uint32_t i = 0; i < r->n; i++) {
        const uint8_t *q = p;
        mpr_value k, v;
        if (mpr_read(&q, end, &k) < 0)
            return -EINVAL;
        if (k.type != MPR_STR) { /* a non-string key: its text form */
            if ((rc = classify_pair(e, &p, end, f, info)) < 0)
                return rc;
            continue;
        }
        if (mpr_read(&q, end, &v) < 0)
            return -EINVAL;
        uint64_t bit = record_len_bit(k.len);
        unsigned rank = v.type == MPR_STR && (r->message_lens & bit) ? message_rank(r, &k, best) : best;
        if (rank == 0 && best > 0) { /* the first key's first str: the message, whatever follows (none ranks before) */
            if ((rc = str_span(e, v.ptr, v.len, &f->message, info)) < 0)
                return rc;
            best = 0;
            p = q;
            continue;
        }
        int m = r->rename_lens & bit ? rename_of(r, &k) : -1;
        if (rank < best && m < 0 && (field_of(&k) >= 0 || (k.len > 0 && k.ptr[0] == '_')))
            return -EAGAIN;
        if (rank < best || m >= 0) { /* the message so far (metadata until a better one comes), or a renamed key */
            record_span ks;
            if (m >= 0) /* a key the mapping sets itself: kept under its rename */
                ks = span_direct(r->renames[m].to, r->renames[m].to_len);
            else if ((rc = str_span(e, k.ptr, k.len, &ks, info)) < 0)
                return rc;
            if ((rc = meta_value(e, ks, &v, &q, end, info)) < 0)
                return rc;
            if (rank < best) {
                best = rank;
                msg_kv = e->n_kv - 1;
            }
        } else if ((rc = classify_kv(e, p, &k, &v, &q, end, f, info)) < 0) {
            return rc;
        }
        p = q;
    }
    if (best == 0)
        msg_kv = SIZE_MAX; /* an earlier candidate stays metadata */
    if (msg_kv != SIZE_MAX) {
        f->message = e->kv[msg_kv].val;
        memmove(&e->kv[msg_kv], &e->kv[msg_kv + 1], (e->n_kv - msg_kv - 1) * sizeof *e->kv);
        e->n_kv--;
    }
    info->wire_len = (size_t)(p - r->pairs);
    info->nesting = e->nesting;
    return classify_end(e, f, info);
}

static size_t opt_len(const char *s) { return s ? strlen(s) : 0; }

static inline __attribute__((always_inline)) size_t source_size(const record_source *s, size_t comm_len,
                                                                size_t host_len)
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

/* The RecordSource field (tag, length src_len, submessage) of src, whose comm and hostname are comm_len and host_len
 * bytes long, at p: returns the end. */
static inline __attribute__((always_inline)) uint8_t *put_source(uint8_t *p, const record_source *src, size_t comm_len,
                                                                size_t host_len, size_t src_len)
{
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
    return p;
}

size_t record_source_wire(const record_source *src, uint8_t *buf, size_t cap)
{
    size_t comm_len = strnlen(src->comm, sizeof src->comm);
    size_t host_len = src->hostname ? strlen(src->hostname) : 0;
    size_t src_len = source_size(src, comm_len, host_len);
    if (src_len == 0 || pbw_len_field_size(src_len) > cap)
        return 0;
    return (size_t)(put_source(buf, src, comm_len, host_len, src_len) - buf);
}

static inline __attribute__((always_inline)) uint8_t *put_str(uint8_t *p, uint32_t field, const record_enc *e,
                                                             const record_span *s)
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

/* Sizes the entry of the record classified into e->f (sent by src): e->out_len, and what record_write needs. */
static inline __attribute__((always_inline)) void plan(record_enc *e, const record_source *src)
{
    const fields *f = &e->f;
    e->src = src;
    e->n_types = types_len(e);
    size_t total = 0;
    if (src && src->wire) { /* a connection's: encoded once (record_source_wire) */
        e->src_len = 0;
        total += src->wire_len;
    } else {
        e->comm_len = src ? strnlen(src->comm, sizeof src->comm) : 0;
        e->host_len = src && src->hostname ? strlen(src->hostname) : 0;
        e->src_len = src ? source_size(src, e->comm_len, e->host_len) : 0;
        if (e->src_len)
            total += pbw_len_field_size(e->src_len);
    }
    total += str_size(&f->service) + str_size(&f->level) + str_size(&f->message) + str_size(&f->trace) +
             str_size(&f->span) + str_size(&f->log_id);
    for (size_t i = 0; i < e->n_kv; i++) { /* (< 4 GiB: every input is at most 64 MiB, its text forms 6x that) */
        e->kv[i].wire = (uint32_t)(str_size(&e->kv[i].key) + str_size(&e->kv[i].val));
        total += pbw_len_field_size(e->kv[i].wire);
    }
    if (f->ts)
        total += pbw_varint_field_size((uint64_t)f->ts);
    e->out_len = total + types_size(e->n_types);
}

size_t record_write(const record_enc *e, uint8_t *dst)
{
    const fields *f = &e->f;
    const record_source *src = e->src;
    uint8_t *p = dst;
    p = put_str(p, F_SERVICE, e, &f->service);
    p = put_str(p, F_LEVEL, e, &f->level);
    p = put_str(p, F_MESSAGE, e, &f->message);
    p = put_str(p, F_TRACE, e, &f->trace);
    p = put_str(p, F_SPAN, e, &f->span);
    for (size_t i = 0; i < e->n_kv; i++) {
        const record_kv *kv = &e->kv[i];
        p = pbw_put_tag(p, F_META, PBW_LEN);
        p = pbw_put_varint(p, kv->wire);
        p = put_str(p, 1, e, &kv->key);
        p = put_str(p, 2, e, &kv->val);
    }
    p = put_str(p, F_LOGID, e, &f->log_id);
    if (f->ts)
        p = pbw_put_uint(p, F_TS, (uint64_t)f->ts);
    if (src && src->wire) {
        memcpy(p, src->wire, src->wire_len);
        p += src->wire_len;
    } else if (e->src_len) {
        p = put_source(p, src, e->comm_len, e->host_len, e->src_len);
    }
    p = put_types(p, e, e->n_types);
    return (size_t)(p - dst);
}

/* memset(f, 0, sizeof *f) as gcc compiles it at -O2 is `rep stos`, whose start-up cost was 4% of a record (perf
 * of logagent-bench-step); a plain loop of zero stores is turned back into that memset. Stores of a value the
 * compiler cannot see is zero (the empty asm) stay plain stores. */
static inline __attribute__((always_inline)) void zero_fields(fields *f)
{
    typedef uint64_t word __attribute__((may_alias));
    _Static_assert(sizeof(fields) % sizeof(word) == 0, "fields is a whole number of words");
    word *w = (word *)(void *)f, z = 0;
    __asm__("" : "+r"(z));
    for (size_t i = 0; i < sizeof(fields) / sizeof(word); i++)
        w[i] = z;
}

/* A record's classification starts: nothing noticed, nothing converted or planned, no field (zero_fields). */
static inline __attribute__((always_inline)) void start(record_enc *e, record_info *info)
{
    memset(info, 0, sizeof *info);
    e->text_len = 0;
    e->n_kv = 0;
    e->out_len = 0;
    e->out_pending = 0;
    zero_fields(&e->f);
    e->nesting = 1; /* the record map */
}

/* After classify's answer rc: the record's service noted (also on failure: the stats attribute a refused record to
 * its service), then on success its log_id, and its entry planned. Returns rc. */
static inline __attribute__((always_inline)) int prepared(record_enc *e, int rc, const record_source *src,
                                                         record_info *info)
{
    fields *f = &e->f;
    if (f->service.len > 0) {
        info->service = span_ptr(e, &f->service);
        info->service_len = f->service.len;
    }
    if (rc < 0)
        return rc;
    info->log_id = span_ptr(e, &f->log_id);
    info->log_id_len = f->log_id.len;
    plan(e, src);
    e->out_pending = 1;
    return 0;
}

int record_prepare_raw(record_enc *e, const void *data, size_t len, const record_source *src, int64_t now_ns,
                       record_info *info)
{
    const uint8_t *p = data, *end = p + len;
    mpr_value m;
    start(e, info);
    if (mpr_read(&p, end, &m) < 0 || m.type != MPR_MAP)
        return -EINVAL;
    fields *f = &e->f;
    f->ts = now_ns;
    int rc = classify(e, &p, end, m.len, f, info);
    if (rc == 0) {
        info->wire_len = (size_t)(p - (const uint8_t *)data);
        info->nesting = e->nesting;
    }
    return prepared(e, rc, src, info);
}

int record_prepare_parts(record_enc *e, const record_parts *r, const record_source *src, record_info *info)
{
    start(e, info);
    return prepared(e, classify_parts(e, r, &e->f, info), src, info);
}

int record_encode_raw(record_enc *e, const void *data, size_t len, const record_source *src, int64_t now_ns,
                      record_info *info)
{
    int rc = record_prepare_raw(e, data, len, src, now_ns, info);
    if (rc < 0)
        return rc;
    if (grow((void **)&e->out, &e->out_cap, e->out_len, 1) < 0) {
        e->out_len = 0;
        e->out_pending = 0;
        return -ENOMEM;
    }
    record_write(e, e->out);
    e->out_pending = 0;
    return 0;
}

/* msgpack_packer's write callback: appends to the encoder's `packed` buffer. */
static int packed_write(void *data, const char *buf, size_t len)
{
    record_enc *e = data;
    if (len == 0) /* an empty str or bin: msgpack-c may pass buf NULL (found by fuzz_forward's regressions) */
        return 0;
    if (grow((void **)&e->packed, &e->packed_cap, e->packed_len + len, 1) < 0)
        return -1;
    memcpy(e->packed + e->packed_len, buf, len);
    e->packed_len += len;
    return 0;
}

int record_encode(record_enc *e, const msgpack_object *obj, const record_source *src, int64_t now_ns,
                  record_info *info)
{
    msgpack_packer pk;
    e->packed_len = 0;
    msgpack_packer_init(&pk, e, packed_write);
    if (msgpack_pack_object(&pk, *obj) != 0) {
        memset(info, 0, sizeof *info);
        return -ENOMEM;
    }
    return record_encode_raw(e, e->packed, e->packed_len, src, now_ns, info);
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
    free(e->packed);
    memset(e, 0, sizeof *e);
}
