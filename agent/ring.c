/* ring.c — bounded lock-free MPSC byte ring (see ring.h).
 *
 * DESIGN
 * The buffer is a power-of-two array of bytes indexed by free-running 64-bit positions (position & mask),
 * so `head - tail` is the used size with no wrap ambiguity. Each record occupies an 8-byte header plus its
 * body, padded to 8 bytes. The header's first word is atomic: 0 = not yet committed, COMMIT|len = ready,
 * COMMIT|PAD|n = skip n bytes (used when a record would straddle the end of the array; the record then
 * starts at offset 0; and by ring_abort, which turns a reservation given up into padding of its own size).
 *
 * Producers claim [head, head+total) with a CAS on `head` after checking `head + total - tail <= cap` (with
 * several producer threads a `head` loaded before `tail` may be older than it: reserve then reloads head rather
 * than report a false "full"), write the body, then publish the header word with a release store. The consumer
 * reads header words at its private `read` position with acquire loads: a committed header makes the body
 * written before it visible.
 * Because records are published by header rather than by `head`, a producer that reserved later may commit
 * earlier; the consumer simply stops at the first uncommitted header, so records come out in reservation
 * order.
 *
 * The invariant that makes "header word 0 == not committed" true: every byte of the array outside
 * [tail, head) is zero. It holds at start (calloc) and ring_release re-establishes it by zeroing
 * [tail, read) before it publishes the new tail with a release store. A producer acquires `tail` before
 * it computes free space, so the zeroing happens-before its writes into that space.
 *
 * Chunks (ring_reserve_in): a producer thread claims a span of the ring with one CAS and carves its records out of
 * it without touching `head` again, so several producers do not take turns on head's cache line per record (that
 * CAS and the records' shared lines were ~17% of the agent's CPU with two ingest loops, perf). Inside the span the
 * invariant holds as for any reservation: bytes not written yet are zero, so the consumer stops at the first record
 * not yet carved; ring_chunk_close publishes the unused rest as one padding header. Records come out in order per
 * producer; across producers in the order of their chunks, not of their records.
 *
 * `head` and `tail` sit on their own cache lines; the consumer's `read` and its last-peeked length live on
 * a third, touched only by the consumer. */
#include "ring.h"

#include <errno.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define RING_HDR 8u
#define RING_F_COMMIT 0x80000000u
#define RING_F_PAD 0x40000000u
#define RING_LEN_MASK 0x3fffffffu
#define RING_MIN_CAP ((size_t)4096)
#define RING_MAX_CAP ((size_t)1 << 30)

typedef struct ring_hdr {
    _Atomic uint32_t word; /* 0, COMMIT|len, or COMMIT|PAD|skip */
    uint32_t len;          /* body length, written at reserve, read at commit */
} ring_hdr;

struct ring {
    uint8_t *buf;
    size_t cap;
    size_t mask;
    alignas(64) _Atomic uint64_t head; /* producers: next position to reserve */
    alignas(64) _Atomic uint64_t tail; /* consumer: everything before it is free */
    alignas(64) uint64_t read;         /* consumer only: next position to peek */
    uint64_t peek_size;                /* consumer only: total size of the record last peeked */
};

/* Test seam: tests/unit/test_ring_race.c compiles this file with RING_AFTER_HEAD_LOAD defined, to run another
 * producer and the consumer exactly between ring_reserve's load of `head` and its load of `tail`. */
#ifndef RING_AFTER_HEAD_LOAD
#define RING_AFTER_HEAD_LOAD(r) ((void)0)
#endif

static size_t align8(size_t n) { return (n + 7u) & ~(size_t)7u; }

static ring_hdr *hdr_at(const ring *r, uint64_t pos) { return (ring_hdr *)(r->buf + (pos & r->mask)); }

ring *ring_new(size_t capacity_bytes)
{
    if (capacity_bytes == 0 || capacity_bytes > RING_MAX_CAP)
        return NULL;
    size_t cap = RING_MIN_CAP;
    while (cap < capacity_bytes)
        cap <<= 1;
    ring *r = aligned_alloc(64, sizeof *r);
    if (!r)
        return NULL;
    memset(r, 0, sizeof *r);
    r->buf = calloc(1, cap);
    if (!r->buf) {
        free(r);
        return NULL;
    }
    r->cap = cap;
    r->mask = cap - 1;
    atomic_init(&r->head, 0);
    atomic_init(&r->tail, 0);
    return r;
}

void ring_free(ring *r)
{
    if (!r)
        return;
    free(r->buf);
    free(r);
}

size_t ring_max_record(const ring *r) { return r->cap / 4 - RING_HDR; }
size_t ring_capacity(const ring *r) { return r->cap; }

size_t ring_used_bytes(const ring *r)
{
    uint64_t t = atomic_load_explicit(&r->tail, memory_order_relaxed);
    uint64_t h = atomic_load_explicit(&r->head, memory_order_relaxed);
    return h > t ? (size_t)(h - t) : 0;
}

/* Claims `need` contiguous bytes (a multiple of 8) at head: their position in *at, padding the end of the array first
 * when they would straddle it. Returns 0, or -1 when the ring has no room. */
static int reserve_span(ring *r, size_t need, uint64_t *at)
{
    uint64_t h = atomic_load_explicit(&r->head, memory_order_relaxed);
    RING_AFTER_HEAD_LOAD(r);
    uint64_t pad, total;
    for (;;) {
        uint64_t t = atomic_load_explicit(&r->tail, memory_order_acquire);
        size_t to_end = r->cap - (size_t)(h & r->mask);
        pad = need > to_end ? to_end : 0;
        total = pad + need;
        if (h + total - t > r->cap) {
            /* Full, unless `h` is older than `t`: other producers reserved and the consumer released past it
             * between the two loads (tail > h, and the subtraction wrapped). A head loaded after the acquire of
             * tail is never older than it (the consumer saw those records committed), so reload and retry. */
            if (h - t <= r->cap)
                return -1;
            h = atomic_load_explicit(&r->head, memory_order_relaxed);
            continue;
        }
        if (atomic_compare_exchange_weak_explicit(&r->head, &h, h + total, memory_order_relaxed,
                                                  memory_order_relaxed))
            break;
    }
    if (pad)
        atomic_store_explicit(&hdr_at(r, h)->word, RING_F_COMMIT | RING_F_PAD | (uint32_t)pad,
                              memory_order_release);
    *at = h + pad;
    return 0;
}

void *ring_reserve(ring *r, size_t len)
{
    uint64_t at;
    if (len > ring_max_record(r) || reserve_span(r, align8(RING_HDR + len), &at) < 0)
        return NULL;
    ring_hdr *hd = hdr_at(r, at);
    hd->len = (uint32_t)len;
    return (uint8_t *)hd + RING_HDR;
}

/* A chunk's size: 1/64 of the ring (so that a producer's open chunk never holds much of it), 1..16 KiB. */
static size_t chunk_bytes(const ring *r)
{
    size_t n = r->cap / 64;
    return n < 1024 ? 1024 : n > (16u << 10) ? (16u << 10) : n;
}

void *ring_reserve_in(ring *r, ring_chunk *c, size_t len)
{
    size_t need = align8(RING_HDR + len);
    if (c->end - c->pos < need) {
        ring_chunk_close(r, c);
        size_t want = chunk_bytes(r);
        if (need * 2 > want) /* a large record: a reservation of its own */
            return ring_reserve(r, len);
        uint64_t at;
        if (reserve_span(r, want, &at) < 0)
            return NULL;
        c->pos = at;
        c->end = at + want;
    }
    ring_hdr *hd = hdr_at(r, c->pos); /* zero (outside [tail, head) at reservation, unwritten since) */
    hd->len = (uint32_t)len;
    c->pos += need;
    return (uint8_t *)hd + RING_HDR;
}

void ring_chunk_close(ring *r, ring_chunk *c)
{
    if (c->end > c->pos) /* the unused rest, published as padding: the consumer skips it */
        atomic_store_explicit(&hdr_at(r, c->pos)->word, RING_F_COMMIT | RING_F_PAD | (uint32_t)(c->end - c->pos),
                              memory_order_release);
    c->pos = c->end = 0;
}

void ring_commit(ring *r, void *rec)
{
    (void)r;
    ring_hdr *hd = (ring_hdr *)((uint8_t *)rec - RING_HDR);
    atomic_store_explicit(&hd->word, RING_F_COMMIT | hd->len, memory_order_release);
}

void ring_abort(ring *r, void *rec)
{
    (void)r;
    ring_hdr *hd = (ring_hdr *)((uint8_t *)rec - RING_HDR);
    size_t span = align8(RING_HDR + hd->len); /* what ring_reserve claimed for it, header included */
    atomic_store_explicit(&hd->word, RING_F_COMMIT | RING_F_PAD | (uint32_t)span, memory_order_release);
}

int ring_push(ring *r, const void *data, size_t len)
{
    if (len > ring_max_record(r))
        return -EMSGSIZE;
    void *p = ring_reserve(r, len);
    if (!p)
        return -ENOBUFS;
    memcpy(p, data, len);
    ring_commit(r, p);
    return 0;
}

const void *ring_peek(ring *r, size_t *len)
{
    for (;;) {
        /* Everything consumed but not released yet: a ring that was exactly full would otherwise show its first
         * (consumed, still committed) header again. `tail` is only written by this thread. */
        if (r->read - atomic_load_explicit(&r->tail, memory_order_relaxed) >= r->cap)
            return NULL;
        ring_hdr *hd = hdr_at(r, r->read);
        uint32_t w = atomic_load_explicit(&hd->word, memory_order_acquire);
        if (!(w & RING_F_COMMIT))
            return NULL;
        if (w & RING_F_PAD) {
            r->read += w & RING_LEN_MASK;
            continue;
        }
        size_t n = w & RING_LEN_MASK;
        r->peek_size = align8(RING_HDR + n);
        *len = n;
        return (uint8_t *)hd + RING_HDR;
    }
}

void ring_consume(ring *r)
{
    r->read += r->peek_size;
    r->peek_size = 0;
}

void ring_release(ring *r)
{
    uint64_t t = atomic_load_explicit(&r->tail, memory_order_relaxed);
    uint64_t n = r->read - t;
    if (n == 0)
        return;
    size_t off = (size_t)(t & r->mask);
    size_t first = r->cap - off < n ? r->cap - off : (size_t)n;
    memset(r->buf + off, 0, first);
    if (n > first)
        memset(r->buf, 0, (size_t)n - first);
    atomic_store_explicit(&r->tail, r->read, memory_order_release);
}
