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

static inline uint8_t *pbw_put_bytes(uint8_t *p, uint32_t field, const void *data, size_t n)
{
    p = pbw_put_tag(p, field, PBW_LEN);
    p = pbw_put_varint(p, n);
    if (n)
        memcpy(p, data, n);
    return p + n;
}

static inline uint8_t *pbw_put_uint(uint8_t *p, uint32_t field, uint64_t v)
{
    p = pbw_put_tag(p, field, PBW_VARINT);
    return pbw_put_varint(p, v);
}

#endif
