/* decoder.c — a connection's byte stream -> whole top-level msgpack objects (see decoder.h).
 *
 * The buffer holds [start, end) not yet handed out; [start, scanned) went through mpscan, which reports each object
 * that ends (mpscan_feed_one), so the sizes of the complete ones wait in `lens`. Moving bytes (to the front, or to a
 * larger buffer) shifts every offset by the same amount; a native record wholly in the buffer is offered to the taker
 * (walked once, by the encoder, and gone), any other record wholly in the buffer is checked by mpscan_whole in one go,
 * only one cut by a read goes through the byte-wise scanner; `lens` holds sizes, not offsets, so it never changes. */
#include "ingest/decoder.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

struct decoder_old {
    struct decoder_old *next;
    size_t cap;
    uint8_t *buf;
};

/* Buffers of DECODER_MAP_BYTES or more (a connection sending large records) are mappings of their own, so that
 * freeing one gives its pages back at once. From malloc they would stay resident: an ingest loop other than the main
 * thread allocates from its own arena, whose top glibc trims neither by itself (main.c raises the trim threshold
 * for the batches) nor in malloc_trim (which trims only the main arena's top). */
enum { DECODER_MAP_BYTES = 256 << 10 };

static uint8_t *buf_alloc(size_t cap)
{
    if (cap < DECODER_MAP_BYTES)
        return malloc(cap);
    void *p = mmap(NULL, cap, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

static void buf_free(uint8_t *buf, size_t cap)
{
    if (!buf)
        return;
    if (cap < DECODER_MAP_BYTES)
        free(buf);
    else
        munmap(buf, cap);
}

int decoder_init(decoder *d, size_t first, uint64_t max_record, uint64_t max_array)
{
    memset(d, 0, sizeof *d);
    d->buf = buf_alloc(first);
    if (!d->buf)
        return -ENOMEM;
    d->cap = d->first = first;
    mpscan_init(&d->scan, max_record);
    mpscan_set_array_limit(&d->scan, max_array);
    return 0;
}

static void free_old(decoder *d)
{
    for (decoder_old *o = d->old, *next; o; o = next) {
        next = o->next;
        buf_free(o->buf, o->cap);
        free(o);
    }
    d->old = NULL;
    d->old_bytes = 0;
}

void decoder_free(decoder *d)
{
    free_old(d);
    buf_free(d->buf, d->cap);
    free(d->lens);
    memset(d, 0, sizeof *d);
}

/* Moves the unhanded bytes to offset 0 of `to` (d->buf itself, or a new buffer of `cap` bytes). */
static void shift_to(decoder *d, uint8_t *to, size_t cap)
{
    size_t live = d->end - d->start;
    memmove(to, d->buf + d->start, live);
    d->scanned -= d->start;
    d->obj_start -= d->start;
    d->end = live;
    d->start = 0;
    d->buf = to;
    d->cap = cap;
}

size_t decoder_grown_cap(const decoder *d, size_t want)
{
    size_t live = d->end - d->start;
    if (!d->buf || d->cap - d->end >= want || (!d->pinned && d->cap - live >= want))
        return decoder_cap(d);
    size_t cap = d->cap ? d->cap : d->first;
    while (cap < live + want)
        cap *= 2;
    return decoder_cap(d) + (d->pinned ? cap : cap - d->cap);
}

uint8_t *decoder_space(decoder *d, size_t want, size_t *room)
{
    if (!d->buf)
        return NULL;
    size_t live = d->end - d->start;
    if (d->cap - d->end < want && !d->pinned && d->cap - live >= want) {
        shift_to(d, d->buf, d->cap); /* enough room once the handed-out bytes are dropped */
    } else if (d->cap - d->end < want) {
        size_t cap = d->cap;
        while (cap < live + want)
            cap *= 2;
        uint8_t *nb = buf_alloc(cap);
        decoder_old *o = d->pinned ? malloc(sizeof *o) : NULL;
        if (!nb || (d->pinned && !o)) {
            buf_free(nb, cap);
            free(o);
            return NULL;
        }
        uint8_t *ob = d->buf;
        size_t ocap = d->cap;
        shift_to(d, nb, cap);
        if (o) { /* handed-out bytes may still be read: keep the old buffer until unpinned */
            *o = (decoder_old){d->old, ocap, ob};
            d->old = o;
            d->old_bytes += ocap;
        } else {
            buf_free(ob, ocap);
        }
    }
    *room = d->cap - d->end;
    return d->buf + d->end;
}

static int is_map(uint8_t b) { return (b >= 0x80 && b <= 0x8f) || b == 0xde || b == 0xdf; }

static int push_len(decoder *d, size_t len)
{
    if (d->next == d->n) /* all handed out: start the queue over */
        d->next = d->n = 0;
    if (d->n == d->lens_cap) {
        size_t cap = d->lens_cap ? d->lens_cap * 2 : 64;
        uint32_t *l = realloc(d->lens, cap * sizeof *l);
        if (!l)
            return -ENOMEM;
        d->lens = l;
        d->lens_cap = cap;
    }
    d->lens[d->n++] = (uint32_t)len;
    return 0;
}

int decoder_wrote(decoder *d, size_t n)
{
    d->end += n;
    while (!d->fail && d->scanned < d->end) {
        size_t used;
        uint64_t before = d->scan.records;
        int rc = MPSCAN_MORE;
        if (!mpscan_mid_record(&d->scan) && d->take && d->next == d->n && is_map(d->buf[d->scanned]) &&
            d->take(d->take_ctx, &d->scan, d->buf + d->scanned, d->end - d->scanned, &used)) {
            d->scanned += used; /* taken: walked once, by the encoder; nothing before it was left to hand out */
            d->start = d->obj_start = d->scanned;
            continue;
        }
        if (!mpscan_mid_record(&d->scan)) /* between records: a whole one is walked in one go */
            rc = mpscan_whole(&d->scan, d->buf + d->scanned, d->end - d->scanned, &used);
        if (rc == MPSCAN_MORE) /* one cut by the read: byte-wise, resumable */
            rc = mpscan_feed_one(&d->scan, d->buf + d->scanned, d->end - d->scanned, &used);
        if (rc != MPSCAN_OK) {
            d->fail = rc;
            d->end = d->scanned = d->obj_start; /* the refused object's bytes are never handed out */
            break;
        }
        d->scanned += used;
        if (d->scan.records != before && d->take && d->next == d->n && is_map(d->buf[d->obj_start]) &&
            d->take(d->take_ctx, NULL, d->buf + d->obj_start, d->scanned - d->obj_start, &used)) {
            d->start = d->obj_start = d->scanned; /* checked by the scanner (cut by a read), taken now: in order */
        } else if (d->scan.records != before) {
            if (push_len(d, d->scanned - d->obj_start) < 0) {
                d->fail = MPSCAN_MALFORMED; /* out of memory: treated as unreadable (closed after the good ones) */
                d->end = d->scanned = d->obj_start;
                break;
            }
            d->obj_start = d->scanned;
        }
    }
    return d->fail;
}

int decoder_next(decoder *d, const uint8_t **p, size_t *len)
{
    if (d->next == d->n)
        return 0;
    *p = d->buf + d->start;
    *len = d->lens[d->next++];
    d->start += *len;
    return 1;
}

void decoder_pin(decoder *d, int on)
{
    d->pinned = on;
    if (!on)
        free_old(d);
}

int decoder_shrink(decoder *d, size_t above)
{
    if (!d->buf || d->cap <= above || d->start != d->end || d->pinned || mpscan_mid_record(&d->scan))
        return 0;
    buf_free(d->buf, d->cap);
    d->start = d->end = d->scanned = d->obj_start = 0;
    d->buf = buf_alloc(d->first);
    d->cap = d->buf ? d->first : 0;
    return d->buf ? 1 : -ENOMEM;
}
