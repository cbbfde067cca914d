/* batch.c — BatchWriteLogsRequest assembly (see batch.h). */
#include "flush/batch.h"

#include "pbwire.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

batch *batch_new(uint64_t id)
{
    batch *b = calloc(1, sizeof *b);
    if (b)
        b->id = id;
    return b;
}

void batch_free(batch *b)
{
    if (!b)
        return;
    free(b->buf);
    free(b->off);
    free(b->elen);
    free(b->state);
    free(b->calls);
    free(b);
}

/* BATCH_TRAILER_MAX: agent_id (< 160 bytes) and batch_id fields, so the whole request stays under the limit. */
#define BATCH_TRAILER_MAX 180
size_t batch_size_with(const batch *b, size_t len) { return b->len + pbw_len_field_size(len) + BATCH_TRAILER_MAX; }

int batch_add(batch *b, const void *rec, size_t len)
{
    size_t need = b->len + pbw_len_field_size(len);
    if (need > b->cap) {
        size_t cap = b->cap ? b->cap : 64 * 1024;
        while (cap < need)
            cap *= 2;
        uint8_t *p = realloc(b->buf, cap);
        if (!p)
            return -ENOMEM;
        b->buf = p;
        b->cap = cap;
    }
    if (b->n == b->ncap) {
        size_t ncap = b->ncap ? b->ncap * 2 : 256;
        uint32_t *o = realloc(b->off, ncap * sizeof *o);
        if (!o)
            return -ENOMEM;
        b->off = o;
        uint32_t *l = realloc(b->elen, ncap * sizeof *l);
        if (!l)
            return -ENOMEM;
        b->elen = l;
        b->ncap = ncap;
    }
    uint8_t *p = pbw_put_tag(b->buf + b->len, 1, PBW_LEN);
    p = pbw_put_varint(p, len);
    b->off[b->n] = (uint32_t)(p - b->buf);
    b->elen[b->n] = (uint32_t)len;
    memcpy(p, rec, len);
    b->len = (size_t)(p - b->buf) + len;
    b->n++;
    return 0;
}

uint8_t *batch_payload(const batch *b, const char *agent_id, size_t *len)
{
    size_t alen = strlen(agent_id);
    size_t total = b->len + (alen ? pbw_len_field_size(alen) : 0) + (b->id ? pbw_varint_field_size(b->id) : 0);
    uint8_t *out = malloc(total ? total : 1);
    if (!out)
        return NULL;
    if (b->len)
        memcpy(out, b->buf, b->len);
    uint8_t *p = out + b->len;
    if (alen)
        p = pbw_put_bytes(p, 2, agent_id, alen);
    if (b->id)
        p = pbw_put_uint(p, 3, b->id);
    *len = (size_t)(p - out);
    return out;
}

void batch_evict(batch *b)
{
    free(b->buf);
    free(b->off);
    free(b->elen);
    b->buf = NULL;
    b->off = b->elen = NULL;
    b->cap = b->ncap = 0;
    b->evicted = 1;
}

int batch_load(batch *b, const uint8_t *framed, size_t len)
{
    size_t n = b->n;
    batch_evict(b);
    b->n = 0;
    b->len = 0;
    const uint8_t *p = framed, *end = framed + len, *data;
    size_t dlen;
    uint32_t field;
    int wire;
    uint64_t v;
    while (p < end) {
        if (pbw_get_field(&p, end, &field, &wire, &v, &data, &dlen) < 0 || field != 1 || wire != PBW_LEN)
            return -EINVAL;
        if (batch_add(b, data, dlen) < 0)
            return -ENOMEM;
    }
    b->evicted = 0;
    return b->n == n ? 0 : -EINVAL;
}
