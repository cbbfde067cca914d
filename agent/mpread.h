/* mpread.h — reads msgpack values straight from their bytes: one header at a time, no object tree, no allocation.
 *
 * The record encoder (record.c) walks a record's bytes once with this: each call reads one value's header (and,
 * for str/bin/ext, points at its payload), so a map's pairs and a container's items come in order as the walk goes
 * on. Every length is checked against the end of the input: a truncated or malformed value (0xc1, a payload past
 * the end) is refused with -EINVAL, never read past. Containers are not descended by mpr_read; mpr_skip passes over
 * whole values without recursion (a count of the items still to pass), so no input nests the stack. */
#ifndef LOGAGENT_MPREAD_H
#define LOGAGENT_MPREAD_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

enum mpr_type { MPR_NIL, MPR_BOOL, MPR_UINT, MPR_INT, MPR_F32, MPR_F64, MPR_STR, MPR_BIN, MPR_EXT, MPR_ARRAY, MPR_MAP };

/* One value's header. For STR/BIN/EXT `ptr`/`len` are its payload (in the input); for ARRAY/MAP `len` is the item
 * count (pairs for a map) and the items follow in the input. UINT is a non-negative integer (u), INT a negative
 * one (i). */
typedef struct mpr_value {
    enum mpr_type type;
    int8_t ext_type;
    uint32_t len;
    const char *ptr;
    union {
        uint64_t u;
        int64_t i;
        double f;
        int b;
    } v;
} mpr_value;

/* A big-endian number of n bytes (1, 2, 4 or 8: the only widths msgpack has) at p: one load each. */
static inline uint64_t mpr_be(const uint8_t *p, int n)
{
    uint16_t h;
    uint32_t w;
    uint64_t d;
    switch (n) {
    case 1:
        return p[0];
    case 2:
        memcpy(&h, p, 2);
        return __builtin_bswap16(h);
    case 4:
        memcpy(&w, p, 4);
        return __builtin_bswap32(w);
    default:
        memcpy(&d, p, 8);
        return __builtin_bswap64(d);
    }
}

/* Reads the payload of a str/bin/ext whose length field is n bytes wide at *p. */
static inline int mpr_payload(const uint8_t **p, const uint8_t *end, int lenw, enum mpr_type t, mpr_value *out)
{
    if (end - *p < lenw)
        return -EINVAL;
    uint64_t len = mpr_be(*p, lenw);
    *p += lenw;
    if (t == MPR_EXT) {
        if (end - *p < 1)
            return -EINVAL;
        out->ext_type = (int8_t)**p;
        (*p)++;
    }
    if ((uint64_t)(end - *p) < len)
        return -EINVAL;
    out->type = t;
    out->len = (uint32_t)len;
    out->ptr = (const char *)*p;
    *p += len;
    return 0;
}

/* Reads a header of n bytes at *p as an unsigned big-endian number. */
static inline int mpr_fixed(const uint8_t **p, const uint8_t *end, int n, uint64_t *v)
{
    if (end - *p < n)
        return -EINVAL;
    *v = mpr_be(*p, n);
    *p += n;
    return 0;
}

static inline int mpr_count(const uint8_t **p, const uint8_t *end, int n, enum mpr_type t, mpr_value *out)
{
    uint64_t v;
    if (mpr_fixed(p, end, n, &v) < 0)
        return -EINVAL;
    out->type = t;
    out->len = (uint32_t)v;
    return 0;
}

static inline int mpr_read_ext(const uint8_t **p, const uint8_t *end, uint8_t c, mpr_value *out)
{
    static const uint8_t fixlen[5] = {1, 2, 4, 8, 16};
    if (c >= 0xd4 && c <= 0xd8) { /* fixext 1/2/4/8/16 */
        if (end - *p < 1 + fixlen[c - 0xd4])
            return -EINVAL;
        out->type = MPR_EXT;
        out->ext_type = (int8_t)**p;
        out->len = fixlen[c - 0xd4];
        out->ptr = (const char *)*p + 1;
        *p += 1 + out->len;
        return 0;
    }
    return mpr_payload(p, end, c == 0xc7 ? 1 : c == 0xc8 ? 2 : 4, MPR_EXT, out); /* ext 8/16/32 */
}

/* An integer of header byte c (0xcc..0xcf uint 8..64, 0xd0..0xd3 int 8..64). Where eight bytes are left one load
 * reads any width (its top bytes are the number: shifted down, arithmetically for the signed ones), so the width,
 * which varies from value to value (a uint16 here, a uint32 there), costs no branch. */
static inline __attribute__((always_inline)) int mpr_read_num(const uint8_t **p, const uint8_t *end, uint8_t c,
                                                              mpr_value *out)
{
    int w = 1 << (c & 3);
    uint64_t v;
    int64_t s;
    if (end - *p >= 8) {
        uint64_t x;
        memcpy(&x, *p, 8);
        x = __builtin_bswap64(x);
        int shift = 64 - 8 * w;
        v = x >> shift;
        s = (int64_t)x >> shift;
        *p += w;
    } else {
        if (mpr_fixed(p, end, w, &v) < 0)
            return -EINVAL;
        s = w == 1 ? (int8_t)v : w == 2 ? (int16_t)v : w == 4 ? (int32_t)v : (int64_t)v;
    }
    if (c <= 0xcf) {
        out->type = MPR_UINT;
        out->v.u = v;
        return 0;
    }
    out->type = s < 0 ? MPR_INT : MPR_UINT; /* msgpack-c's rule: a signed type holding >= 0 is positive */
    out->v.i = s;
    return 0;
}

/* What a header's first byte announces: mpr_read's dispatch, one table lookup per value instead of a chain of range
 * tests. 0xc1 (never used) is MPR_C_BAD. */
enum mpr_class {
    MPR_C_BAD, MPR_C_POSFIX, MPR_C_NEGFIX, MPR_C_FIXSTR, MPR_C_FIXMAP, MPR_C_FIXARRAY, MPR_C_NIL, MPR_C_BOOL,
    MPR_C_BIN, MPR_C_STR, MPR_C_EXT, MPR_C_FIXEXT, MPR_C_F32, MPR_C_F64, MPR_C_NUM, MPR_C_ARRAY, MPR_C_MAP
};

static const uint8_t mpr_class_of[256] = {
    [0x00 ... 0x7f] = MPR_C_POSFIX, [0x80 ... 0x8f] = MPR_C_FIXMAP, [0x90 ... 0x9f] = MPR_C_FIXARRAY,
    [0xa0 ... 0xbf] = MPR_C_FIXSTR, [0xc0] = MPR_C_NIL, [0xc1] = MPR_C_BAD, [0xc2 ... 0xc3] = MPR_C_BOOL,
    [0xc4 ... 0xc6] = MPR_C_BIN, [0xc7 ... 0xc9] = MPR_C_EXT, [0xca] = MPR_C_F32, [0xcb] = MPR_C_F64,
    [0xcc ... 0xd3] = MPR_C_NUM, [0xd4 ... 0xd8] = MPR_C_FIXEXT, [0xd9 ... 0xdb] = MPR_C_STR,
    [0xdc ... 0xdd] = MPR_C_ARRAY, [0xde ... 0xdf] = MPR_C_MAP, [0xe0 ... 0xff] = MPR_C_NEGFIX,
};

/* A fixstr (header byte c, already read) of c & 0x1f bytes at *p. */
static inline __attribute__((always_inline)) int mpr_fixstr(const uint8_t **p, const uint8_t *end, uint8_t c,
                                                            mpr_value *out)
{
    out->type = MPR_STR;
    out->len = c & 0x1f;
    if ((size_t)(end - *p) < out->len)
        return -EINVAL;
    out->ptr = (const char *)*p;
    *p += out->len;
    return 0;
}

/* Reads one value's header at *p (< end) and moves *p past it (past the payload for str/bin/ext; to the first item
 * for array/map). Returns 0, or -EINVAL when the input ends inside it or holds 0xc1. Always inlined: it is the
 * record encoder's inner step (a call per value cost ~15% of the record step). */
static inline __attribute__((always_inline)) int mpr_read(const uint8_t **p, const uint8_t *end, mpr_value *out)
{
    if (*p >= end)
        return -EINVAL;
    uint8_t c = *(*p)++;
    uint64_t v;
    if ((c & 0xe0) == 0xa0) /* fixstr, most keys and values: before the table's indirect jump */
        return mpr_fixstr(p, end, c, out);
    if ((uint8_t)(c - 0xcc) < 8) /* integers, most of the other values: the same */
        return mpr_read_num(p, end, c, out);
    switch ((enum mpr_class)mpr_class_of[c]) {
    case MPR_C_POSFIX:
        out->type = MPR_UINT;
        out->v.u = c;
        return 0;
    case MPR_C_NEGFIX:
        out->type = MPR_INT;
        out->v.i = (int8_t)c;
        return 0;
    case MPR_C_FIXSTR: /* taken above */
        return mpr_fixstr(p, end, c, out);
    case MPR_C_FIXMAP:
        out->type = MPR_MAP;
        out->len = c & 0x0f;
        return 0;
    case MPR_C_FIXARRAY:
        out->type = MPR_ARRAY;
        out->len = c & 0x0f;
        return 0;
    case MPR_C_NIL:
        out->type = MPR_NIL;
        return 0;
    case MPR_C_BOOL:
        out->type = MPR_BOOL;
        out->v.b = c == 0xc3;
        return 0;
    case MPR_C_BIN: return mpr_payload(p, end, 1 << (c - 0xc4), MPR_BIN, out);
    case MPR_C_STR: return mpr_payload(p, end, 1 << (c - 0xd9), MPR_STR, out);
    case MPR_C_ARRAY: return mpr_count(p, end, c == 0xdc ? 2 : 4, MPR_ARRAY, out);
    case MPR_C_MAP: return mpr_count(p, end, c == 0xde ? 2 : 4, MPR_MAP, out);
    case MPR_C_F32: {
        if (mpr_fixed(p, end, 4, &v) < 0)
            return -EINVAL;
        uint32_t b = (uint32_t)v;
        float f;
        memcpy(&f, &b, 4);
        out->type = MPR_F32;
        out->v.f = f;
        return 0;
    }
    case MPR_C_F64:
        if (mpr_fixed(p, end, 8, &v) < 0)
            return -EINVAL;
        memcpy(&out->v.f, &v, 8);
        out->type = MPR_F64;
        return 0;
    case MPR_C_EXT:
    case MPR_C_FIXEXT:
        return mpr_read_ext(p, end, c, out);
    case MPR_C_NUM:
        return mpr_read_num(p, end, c, out);
    case MPR_C_BAD:
        break;
    }
    return -EINVAL;
}

/* Moves *p past n whole values (containers with everything in them). Returns 0 or -EINVAL. */
static inline int mpr_skip(const uint8_t **p, const uint8_t *end, uint64_t n)
{
    mpr_value v;
    while (n > 0) {
        if (mpr_read(p, end, &v) < 0)
            return -EINVAL;
        n--;
        if (v.type == MPR_ARRAY)
            n += v.len;
        else if (v.type == MPR_MAP)
            n += 2 * (uint64_t)v.len;
    }
    return 0;
}

#endif
