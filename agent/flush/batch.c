/* batch.c — BatchWriteLogsRequest assembly, and the reference-counted bytes gRPC sends without a copy (see
 * batch.h: who owns what, and why bytes a slice may cover are never written again). */
#include "flush/batch.h"

#include "pbwire.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* A batch's bytes: one allocation, freed by whoever drops the last reference (the batch, or a gRPC slice's
 * destroy callback on one of gRPC's threads). */
struct batch_buf {
    _Atomic size_t refs;
    uint8_t data[];
};

/* BATCH_TRAILER_MAX: agent_id (< 160 bytes) and batch_id fields, so the whole request stays under the limit;
 * every buffer keeps this much room past its entries, so the trailer never makes batch_request reallocate. */
#define BATCH_TRAILER_MAX 180
#define BATCH_MIN_CAP (64 * 1024)

batch *batch_new(uint64_t id, size_t resource_len)
{
    batch *b = calloc(1, sizeof *b);
    if (b) {
        b->id = id;
        b->room = BATCH_TRAILER_MAX + resource_len;
    }
    return b;
}

void batch_buf_release(void *mem)
{
    batch_buf *m = mem;
    /* acq_rel: every holder's reads and writes happen before the free, whichever thread frees */
    if (m && atomic_fetch_sub_explicit(&m->refs, 1, memory_order_acq_rel) == 1)
        free(m);
}

void *batch_buf_hold(batch *b)
{
    atomic_fetch_add_explicit(&b->mem->refs, 1, memory_order_relaxed); /* b's own reference keeps it alive */
    return b->mem;
}

void batch_free(batch *b)
{
    if (!b)
        return;
    batch_buf_release(b->mem);
    free(b->off);
    free(b->elen);
    free(b->state);
    free(b->calls);
    free(b);
}

/* Does a gRPC slice still hold b's bytes? (acquire: a slice's last reads happen before our next write) */
static int buf_shared(const batch *b)
{
    return b->mem && atomic_load_explicit(&b->mem->refs, memory_order_acquire) > 1;
}

/* Makes b's bytes private (copying them away from the slices that hold them, which keep the old ones) with room
 * for `need` bytes. Returns 0 or -ENOMEM (batch unchanged). */
static int buf_make_room(batch *b, size_t need)
{
    int shared = buf_shared(b);
    if (need <= b->cap && !shared)
        return 0;
    size_t cap = b->cap ? b->cap : need > BATCH_MIN_CAP ? need : BATCH_MIN_CAP; /* first: exact (batch_reserve) */
    while (cap < need)
        cap *= 2;
    batch_buf *m;
    if (!shared) {
        if (!(m = realloc(b->mem, sizeof *m + cap)))
            return -ENOMEM;
        if (!b->mem)
            atomic_init(&m->refs, 1);
    } else {
        if (!(m = malloc(sizeof *m + cap)))
            return -ENOMEM;
        atomic_init(&m->refs, 1);
        memcpy(m->data, b->buf, b->len + b->tlen);
        batch_buf_release(b->mem);
    }
    b->mem = m;
    b->buf = m->data;
    b->cap = cap;
    return 0;
}

/* Room in the entry index for `n` entries. Returns 0 or -ENOMEM. */
static int index_make_room(batch *b, size_t n)
{
    if (n <= b->ncap)
        return 0;
    size_t ncap = b->ncap ? b->ncap : 256;
    while (ncap < n)
        ncap *= 2;
    uint32_t *o = realloc(b->off, ncap * sizeof *o);
    if (!o)
        return -ENOMEM;
    b->off = o;
    uint32_t *l = realloc(b->elen, ncap * sizeof *l);
    if (!l)
        return -ENOMEM;
    b->elen = l;
    b->ncap = ncap;
    return 0;
}

size_t batch_size_with(const batch *b, size_t len) { return b->len + pbw_len_field_size(len) + b->room; }

int batch_reserve(batch *b, size_t bytes, size_t records)
{
    if (bytes + b->room > b->cap && buf_make_room(b, bytes + b->room) < 0)
        return -ENOMEM;
    return index_make_room(b, records);
}

int batch_add(batch *b, const void *rec, size_t len)
{
    if (buf_make_room(b, batch_size_with(b, len)) < 0 || index_make_room(b, b->n + 1) < 0)
        return -ENOMEM;
    uint8_t *p = pbw_put_tag(b->buf + b->len, 1, PBW_LEN);
    p = pbw_put_varint(p, len);
    b->off[b->n] = (uint32_t)(p - b->buf);
    b->elen[b->n] = (uint32_t)len;
    memcpy(p, rec, len);
    b->len = (size_t)(p - b->buf) + len;
    b->tlen = 0; /* written over: batch_request writes it again */
    b->n++;
    return 0;
}

const uint8_t *batch_request(batch *b, const char *agent_id, const uint8_t *resource, size_t resource_len,
                             size_t *len)
{
    if (b->tlen == 0) {
        /* the room past the entries: no slice covers it before the trailer is in it (batch.h) */
        size_t alen = strlen(agent_id);
        size_t t = (alen ? pbw_len_field_size(alen) : 0) + (b->id ? pbw_varint_field_size(b->id) : 0) + resource_len;
        if ((!b->mem || b->len + t > b->cap) && buf_make_room(b, b->len + t) < 0)
            return NULL;
        uint8_t *p = b->buf + b->len;
        if (alen)
            p = pbw_put_bytes(p, 2, agent_id, alen);
        if (b->id)
            p = pbw_put_uint(p, 3, b->id);
        if (resource_len) { /* field 4's map entries, encoded once (resattr.c) */
            memcpy(p, resource, resource_len);
            p += resource_len;
        }
        b->tlen = (size_t)(p - (b->buf + b->len));
    }
    *len = b->len + b->tlen;
    return b->buf;
}

/* Copies entry [src, src + len) to dst without its `field` fields; returns the bytes written (never more than len).
 * dst may overlap src from below (dst <= src). */
static size_t strip_entry(uint8_t *dst, const uint8_t *src, size_t len, uint32_t field)
{
    const uint8_t *p = src, *end = src + len, *data;
    size_t n = 0, dlen;
    uint32_t f;
    int wire;
    uint64_t v;
    while (p < end) {
        const uint8_t *start = p;
        if (pbw_get_field(&p, end, &f, &wire, &v, &data, &dlen) < 0)
            break; /* batch_strip_field checked every entry first */
        if (f == field)
            continue;
        memmove(dst + n, start, (size_t)(p - start));
        n += (size_t)(p - start);
    }
    return n;
}

static int entry_parses(const uint8_t *p, size_t len)
{
    const uint8_t *end = p + len, *data;
    size_t dlen;
    uint32_t f;
    int wire;
    uint64_t v;
    while (p < end)
        if (pbw_get_field(&p, end, &f, &wire, &v, &data, &dlen) < 0)
            return 0;
    return 1;
}

long batch_strip_field(batch *b, uint32_t field)
{
    for (size_t i = 0; i < b->n; i++) /* every entry parses: then nothing can fail half-way */
        if (!entry_parses(b->buf + b->off[i], b->elen[i]))
            return -EINVAL;
    size_t out = 0, before = b->len;
    for (size_t i = 0; i < b->n; i++) {
        /* entry i moves down to `out`; its frame header (tag, varint length) can only get shorter */
        size_t len = b->elen[i], old_hdr = 1 + pbw_varint_size(len);
        size_t kept = strip_entry(b->buf + out + old_hdr, b->buf + b->off[i], len, field);
        uint8_t hdr[16];
        size_t hlen = (size_t)(pbw_put_varint(pbw_put_tag(hdr, 1, PBW_LEN), kept) - hdr);
        memmove(b->buf + out + hlen, b->buf + out + old_hdr, kept);
        memcpy(b->buf + out, hdr, hlen);
        b->off[i] = (uint32_t)(out + hlen);
        b->elen[i] = (uint32_t)kept;
        out += hlen + kept;
    }
    b->len = out;
    b->tlen = 0;
    return (long)(before - out);
}

void batch_evict(batch *b)
{
    batch_buf_release(b->mem);
    free(b->off);
    free(b->elen);
    b->mem = NULL;
    b->buf = NULL;
    b->off = b->elen = NULL;
    b->cap = b->ncap = b->tlen = 0;
    b->evicted = 1;
}

uint8_t *batch_load_begin(batch *b, size_t len)
{
    batch_evict(b);
    if (buf_make_room(b, len + b->room) < 0)
        return NULL;
    b->len = len;
    return b->buf;
}

int batch_load_end(batch *b)
{
    size_t want = b->n;
    if (index_make_room(b, want) < 0)
        return -ENOMEM;
    const uint8_t *p = b->buf, *end = b->buf + b->len, *data;
    size_t dlen, n = 0;
    uint32_t field;
    int wire;
    uint64_t v;
    while (p < end) {
        if (pbw_get_field(&p, end, &field, &wire, &v, &data, &dlen) < 0 || field != 1 || wire != PBW_LEN || n == want)
            return -EINVAL;
        b->off[n] = (uint32_t)(data - b->buf);
        b->elen[n] = (uint32_t)dlen;
        n++;
    }
    if (n != want)
        return -EINVAL;
    b->evicted = 0;
    return 0;
}
