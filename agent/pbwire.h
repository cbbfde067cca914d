/* pbwire.h — the few protobuf wire-format primitives the agent writes by hand.
 *
 * Records are encoded once, at ingest, straight from msgpack into WriteLogRequest bytes, and batches are
 * assembled by framing those bytes as `repeated WriteLogRequest entries = 1` — so neither stage builds
 * protobuf-c structs on the hot path. Callers size first (pbw_*_size), then write into a buffer they own. */
#ifndef LOGAGENT_PBWIRE_H
#define LOGAGENT_PBWIRE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

enum { PBW_VARINT = 0, PBW_LEN = 2 };

static inline size_t pbw_varint_size(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

static inline uint8_t *pbw_put_varint(uint8_t *p, uint64_t v)
{
    while (v >= 0x80) {
        *p++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *p++ = (uint8_t)v;
    return p;
}

static inline uint8_t *pbw_put_tag(uint8_t *p, uint32_t field, int wire)
{
    return pbw_put_varint(p, ((uint64_t)field << 3) | (uint64_t)wire);
}

/* Size of a length-delimited field (tag < 16) holding n bytes. */
static inline size_t pbw_len_field_size(size_t n) { return 1 + pbw_varint_size(n) + n; }

/* Size of a varint field (tag < 16); proto3 omits zero values, so callers skip v == 0. */
static inline size_t pbw_varint_field_size(uint64_t v) { return 1 + pbw_varint_size(v); }

/* memcpy for the short strings a record is made of (keys, ids, levels: mostly under 32 bytes) without a call:
 * two overlapping fixed-size moves. Longer ones go to memcpy. */
static inline void pbw_copy(uint8_t *dst, const void *src, size_t n)
{
    const uint8_t *s = src;
    if (n >= 16 && n <= 32) {
        uint8_t a[16], b[16];
        memcpy(a, s, 16);
        memcpy(b, s + n - 16, 16);
        memcpy(dst, a, 16);
        memcpy(dst + n - 16, b, 16);
    } else if (n >= 8 && n < 16) {
        uint64_t a, b;
        memcpy(&a, s, 8);
        memcpy(&b, s + n - 8, 8);
        memcpy(dst, &a, 8);
        memcpy(dst + n - 8, &b, 8);
    } else if (n >= 4 && n < 8) {
        uint32_t a, b;
        memcpy(&a, s, 4);
        memcpy(&b, s + n - 4, 4);
        memcpy(dst, &a, 4);
        memcpy(dst + n - 4, &b, 4);
    } else if (n < 4) {
        for (size_t i = 0; i < n; i++)
            dst[i] = s[i];
    } else {
        memcpy(dst, s, n);
    }
}

static inline uint8_t *pbw_put_bytes(uint8_t *p, uint32_t field, const void *data, size_t n)
{
    p = pbw_put_tag(p, field, PBW_LEN);
    p = pbw_put_varint(p, n);
    pbw_copy(p, data, n);
    return p + n;
}

static inline uint8_t *pbw_put_uint(uint8_t *p, uint32_t field, uint64_t v)
{
    p = pbw_put_tag(p, field, PBW_VARINT);
    return pbw_put_varint(p, v);
}

/* ---- reading (small messages from the log service: statuses, RetryInfo) ---- */

/* Reads a varint at *p (< end). Returns 0 and advances *p, or -1 on truncation/overlong input. */
static inline int pbw_get_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
    uint64_t r = 0;
    for (int shift = 0; shift < 64 && *p < end; shift += 7) {
        uint8_t b = *(*p)++;
        r |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *v = r;
            return 0;
        }
    }
    return -1;
}

/* Reads one field: its number, and either its varint value (wire 0) or its bytes (wire 2); skips fixed32/64.
 * Returns 0, or -1 on malformed input. */
static inline int pbw_get_field(const uint8_t **p, const uint8_t *end, uint32_t *field, int *wire, uint64_t *v,
                                const uint8_t **data, size_t *len)
{
    uint64_t key;
    if (pbw_get_varint(p, end, &key) < 0)
        return -1;
    *field = (uint32_t)(key >> 3);
    *wire = (int)(key & 7);
    *data = NULL;
    *len = 0;
    switch (*wire) {
    case 0:
        return pbw_get_varint(p, end, v);
    case 1:
    case 5: {
        size_t n = *wire == 1 ? 8 : 4;
        if ((size_t)(end - *p) < n)
            return -1;
        *p += n;
        return 0;
    }
    case 2:
        if (pbw_get_varint(p, end, v) < 0 || *v > (uint64_t)(end - *p))
            return -1;
        *data = *p;
        *len = (size_t)*v;
        *p += *len;
        return 0;
    default:
        return -1;
    }
}

#endif
