/* pack.c — a small msgpack encoder for liblogagent records: maps, str, int64, float64, bool, nil.
 *
 * Only what a record needs, with the smallest encoding msgpack allows for each value (as msgpack-c's
 * packer does), written big-endian into a bounded caller buffer without allocating. */
#include "pack.h"

#include <string.h>

typedef struct la_pk {
    unsigned char *buf;
    size_t cap;
    size_t len;      /* bytes needed so far; may exceed cap, then nothing past cap was written */
    int too_big;     /* a string longer than 2^32-1 bytes was seen */
} la_pk;

static void pk_put(la_pk *k, const void *src, size_t n)
{
    if (k->len <= k->cap && n <= k->cap - k->len)
        memcpy(k->buf + k->len, src, n);
    k->len += n;
}

static void pk_u8(la_pk *k, uint8_t v)
{
    pk_put(k, &v, 1);
}

/* tag byte followed by the low `bytes` bytes of v, big-endian */
static void pk_tagged(la_pk *k, uint8_t tag, uint64_t v, unsigned bytes)
{
    unsigned char b[9];
    b[0] = tag;
    for (unsigned i = 0; i < bytes; i++)
        b[1 + i] = (unsigned char)(v >> (8 * (bytes - 1 - i)));
    pk_put(k, b, 1 + bytes);
}

static void pk_map(la_pk *k, uint32_t n)
{
    if (n < 16)
        pk_u8(k, (uint8_t)(0x80 | n));
    else if (n < 65536)
        pk_tagged(k, 0xde, n, 2);
    else
        pk_tagged(k, 0xdf, n, 4);
}

static void pk_str(la_pk *k, const char *s, size_t n)
{
    if (n < 32)
        pk_u8(k, (uint8_t)(0xa0 | n));
    else if (n < 256)
        pk_tagged(k, 0xd9, n, 1);
    else if (n < 65536)
        pk_tagged(k, 0xda, n, 2);
    else if (n <= UINT32_MAX)
        pk_tagged(k, 0xdb, n, 4);
    else {
        k->too_big = 1;
        return;
    }
    pk_put(k, s, n);
}

static void pk_cstr(la_pk *k, const char *s)
{
    pk_str(k, s, strlen(s));
}

static void pk_int(la_pk *k, int64_t v)
{
    if (v >= 0) {
        uint64_t u = (uint64_t)v;
        if (u < 128)
            pk_u8(k, (uint8_t)u);
        else if (u < 256)
            pk_tagged(k, 0xcc, u, 1);
        else if (u < 65536)
            pk_tagged(k, 0xcd, u, 2);
        else if (u <= UINT32_MAX)
            pk_tagged(k, 0xce, u, 4);
        else
            pk_tagged(k, 0xcf, u, 8);
    } else if (v >= -32) {
        pk_u8(k, (uint8_t)(int8_t)v);               /* negative fixint 0xe0..0xff */
    } else if (v >= INT8_MIN) {
        pk_tagged(k, 0xd0, (uint64_t)v, 1);
    } else if (v >= INT16_MIN) {
        pk_tagged(k, 0xd1, (uint64_t)v, 2);
    } else if (v >= INT32_MIN) {
        pk_tagged(k, 0xd2, (uint64_t)v, 4);
    } else {
        pk_tagged(k, 0xd3, (uint64_t)v, 8);
    }
}

static void pk_double(la_pk *k, double d)
{
    uint64_t bits;
    memcpy(&bits, &d, sizeof bits);
    pk_tagged(k, 0xcb, bits, 8);
}

/* The keys the library itself writes, in wire order. */
enum { K_MESSAGE, K_LEVEL, K_SERVICE, K_TRACE, K_SPAN, K_LOG_ID, K_TIMESTAMP, K_COUNT };
static const char *const core_keys[K_COUNT] = {
    "message", "level", "service_name", "trace_id", "span_id", "log_id", "timestamp",
};

/* Index of key among core_keys, or -1. Most metadata keys are rejected on their first byte. */
static int core_index(const char *key)
{
    switch (key[0]) {
    case 'm':
    case 'l':
    case 's':
    case 't':
        for (int i = 0; i < K_COUNT; i++)
            if (key[0] == core_keys[i][0] && strcmp(key, core_keys[i]) == 0)
                return i;
        break;
    default:
        break;
    }
    return -1;
}

/* A field is written unless its key repeats a core key: one the library writes itself, or one an
 * earlier field already supplied (so "timestamp" standing in for the core one is kept once). Other
 * repeated keys are the caller's business and are sent as given. */
static int field_kept(const char *key, const int emit[K_COUNT], unsigned *seen)
{
    int ci = core_index(key);
    if (ci < 0)
        return 1;
    if (emit[ci] || (*seen & (1u << ci)))
        return 0;
    *seen |= 1u << ci;
    return 1;
}

size_t la_pack_record(unsigned char *buf, size_t cap, const logagent_record *r, const char *log_id,
                      int64_t ts)
{
    la_pk k = { buf, cap, 0, 0 };
    int emit[K_COUNT] = { 1, 1, r->service_name != NULL, r->trace_id != NULL, r->span_id != NULL, 1, 1 };
    uint32_t n = 0;
    unsigned seen = 0;

    if (r->timestamp_unix_nano == 0) {
        for (size_t i = 0; i < r->n_fields; i++)
            if (strcmp(r->fields[i].key, "timestamp") == 0) {
                emit[K_TIMESTAMP] = 0;   /* the caller's own timestamp field stands in for "now" */
                break;
            }
    }
    for (int i = 0; i < K_COUNT; i++)
        n += (uint32_t)emit[i];

    for (size_t i = 0; i < r->n_fields; i++)
        n += (uint32_t)field_kept(r->fields[i].key, emit, &seen);

    pk_map(&k, n);
    pk_cstr(&k, "message");
    pk_cstr(&k, r->message);
    pk_cstr(&k, "level");
    pk_cstr(&k, r->level ? r->level : "INFO");
    if (emit[K_SERVICE]) {
        pk_cstr(&k, "service_name");
        pk_cstr(&k, r->service_name);
    }
    if (emit[K_TRACE]) {
        pk_cstr(&k, "trace_id");
        pk_cstr(&k, r->trace_id);
    }
    if (emit[K_SPAN]) {
        pk_cstr(&k, "span_id");
        pk_cstr(&k, r->span_id);
    }
    pk_cstr(&k, "log_id");
    pk_str(&k, log_id, 32);
    if (emit[K_TIMESTAMP]) {
        pk_cstr(&k, "timestamp");
        pk_int(&k, ts);
    }

    seen = 0;
    for (size_t i = 0; i < r->n_fields; i++) {
        const logagent_field *f = &r->fields[i];
        if (!field_kept(f->key, emit, &seen))
            continue;
        pk_cstr(&k, f->key);
        switch (f->type) {
        case LOGAGENT_STR:
            if (f->v.s)
                pk_cstr(&k, f->v.s);
            else
                pk_u8(&k, 0xc0);                 /* nil: the agent stores an empty string */
            break;
        case LOGAGENT_INT:
            pk_int(&k, f->v.i);
            break;
        case LOGAGENT_DOUBLE:
            pk_double(&k, f->v.d);
            break;
        case LOGAGENT_BOOL:
            pk_u8(&k, f->v.b ? 0xc3 : 0xc2);
            break;
        default:                                 /* validated by the caller; keep the map well-formed */
            pk_u8(&k, 0xc0);
            break;
        }
    }
    return k.too_big ? LA_PACK_TOO_BIG : k.len;
}
