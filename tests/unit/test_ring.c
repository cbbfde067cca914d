/* test_ring.c — the lock-free ring: one producer, many producers, wrap-around, full and empty, ring_abort, chunks
 * (ring_reserve_in), a multi-thread stress run checking every record exactly once and in order per producer
 * (ring_push, written in place with aborts among them, and from each producer's chunk; run under TSan too), and a run where the ring can never be full, so that any
 * "full" answer from ring_reserve is a bug. */
#include "check.h"
#include "ring.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>

static void test_empty_and_basic(void)
{
    ring *r = ring_new(4096);
    size_t len;
    CHECK(r != NULL);
    CHECK(ring_peek(r, &len) == NULL);
    CHECK_INT(ring_push(r, "hello", 5), 0);
    CHECK_INT(ring_push(r, "", 0), 0);
    const char *p = ring_peek(r, &len);
    CHECK(p && len == 5 && memcmp(p, "hello", 5) == 0);
    ring_consume(r);
    p = ring_peek(r, &len);
    CHECK(p && len == 0);
    ring_consume(r);
    CHECK(ring_peek(r, &len) == NULL);
    ring_release(r);
    CHECK_INT(ring_used_bytes(r), 0);
    ring_free(r);
}

static void test_full_and_too_large(void)
{
    ring *r = ring_new(4096);
    char buf[1024];
    memset(buf, 'x', sizeof buf);
    CHECK_INT(ring_push(r, buf, ring_max_record(r) + 1), -EMSGSIZE);
    int pushed = 0;
    while (ring_push(r, buf, 100) == 0)
        pushed++;
    CHECK_INT(pushed, 4096 / 112); /* 8-byte header + 100 bytes padded to 112 */
    CHECK_INT(ring_push(r, buf, 100), -ENOBUFS);
    size_t len;
    CHECK(ring_peek(r, &len) != NULL);
    ring_consume(r);
    CHECK_INT(ring_push(r, buf, 100), -ENOBUFS); /* not released yet: space not handed back */
    ring_release(r);
    CHECK_INT(ring_push(r, buf, 100), 0);
    ring_free(r);
}

/* Records of many sizes through a small ring for many laps: contents and order survive the wrap. */
/* Filled exactly, then consumed without a release: the consumer must not see the first record again. */
static void test_exactly_full(void)
{
    ring *r = ring_new(4096);
    char rec[56];
    int pushed = 0;
    for (int i = 0; ring_push(r, rec, sizeof rec) == 0; i++)
        pushed++;
    CHECK_INT(pushed, 64); /* 64 x (8 + 56) = 4096: exactly full */
    size_t len;
    int seen = 0;
    while (ring_peek(r, &len) && seen < 100) {
        ring_consume(r);
        seen++;
    }
    CHECK_INT(seen, 64);
    ring_release(r);
    CHECK_INT(ring_used_bytes(r), 0);
    CHECK(ring_peek(r, &len) == NULL);
    ring_free(r);
}

static void test_wrap_around(void)
{
    ring *r = ring_new(4096);
    uint8_t rec[1000];
    uint32_t next_in = 0, next_out = 0;
    for (int round = 0; round < 20000; round++) {
        size_t n = 4 + (size_t)(round * 37 % 900);
        memcpy(rec, &next_in, 4);
        for (size_t i = 4; i < n; i++)
            rec[i] = (uint8_t)(next_in + i);
        if (ring_push(r, rec, n) == 0)
            next_in++;
        size_t len;
        const uint8_t *p;
        while (round % 3 == 0 && (p = ring_peek(r, &len)) != NULL) {
            uint32_t id;
            memcpy(&id, p, 4);
            CHECK_INT(id, next_out);
            int ok = 1;
            for (size_t i = 4; i < len; i++)
                ok &= p[i] == (uint8_t)(id + i);
            CHECK(ok);
            next_out++;
            ring_consume(r);
        }
        ring_release(r);
    }
    CHECK(next_in > 10000);
    ring_free(r);
}

/* A reservation not yet committed holds back later records: the consumer sees records in reservation order. */
static void test_commit_order(void)
{
    ring *r = ring_new(4096);
    char *a = ring_reserve(r, 1), *b = ring_reserve(r, 1);
    size_t len;
    *a = 'a';
    *b = 'b';
    ring_commit(r, b);
    CHECK(ring_peek(r, &len) == NULL);
    ring_commit(r, a);
    const char *p = ring_peek(r, &len);
    CHECK(p && *p == 'a');
    ring_consume(r);
    p = ring_peek(r, &len);
    CHECK(p && *p == 'b');
    ring_free(r);
}

/* A reservation given up (ring_abort) is skipped by the consumer, holds nothing back once aborted, and its space
 * comes back at release: in the middle, at the end, and around the wrap. */
static void test_abort(void)
{
    ring *r = ring_new(4096);
    size_t len;
    char *a = ring_reserve(r, 5), *b = ring_reserve(r, 100), *c = ring_reserve(r, 3);
    CHECK(a && b && c);
    memcpy(a, "first", 5);
    memset(b, 'x', 100); /* half-written, then given up */
    memcpy(c, "end", 3);
    ring_commit(r, a);
    ring_commit(r, c);
    const char *p = ring_peek(r, &len);
    CHECK(p && len == 5 && memcmp(p, "first", 5) == 0);
    ring_consume(r);
    CHECK(ring_peek(r, &len) == NULL); /* b is neither committed nor aborted: the consumer waits there */
    ring_abort(r, b);
    p = ring_peek(r, &len);
    CHECK(p && len == 3 && memcmp(p, "end", 3) == 0);
    ring_consume(r);
    CHECK(ring_peek(r, &len) == NULL);
    ring_release(r);
    CHECK_INT(ring_used_bytes(r), 0);
    char *d = ring_reserve(r, 0); /* the last reservation aborted: the consumer stops after it */
    CHECK(d != NULL);
    ring_abort(r, d);
    CHECK(ring_peek(r, &len) == NULL);
    ring_release(r);
    CHECK_INT(ring_used_bytes(r), 0);
    for (int lap = 0; lap < 200; lap++) { /* around the wrap: every other reservation aborted */
        char *x = ring_reserve(r, 40 + lap % 50), *y = ring_reserve(r, 7);
        CHECK(x && y);
        memset(x, 'z', 40 + lap % 50);
        memcpy(y, &lap, sizeof lap < 7 ? sizeof lap : 7);
        ring_abort(r, x);
        ring_commit(r, y);
        p = ring_peek(r, &len);
        int got = -1;
        CHECK(p && len == 7);
        if (p)
            memcpy(&got, p, sizeof got);
        CHECK_INT(got, lap);
        ring_consume(r);
        CHECK(ring_peek(r, &len) == NULL);
        ring_release(r);
    }
    CHECK_INT(ring_used_bytes(r), 0);
    ring_free(r);
}

/* ring_reserve_in: records carved from a producer's chunk come out in order as they are committed; the consumer
 * stops at the first not yet carved, and skips the rest once the chunk is closed; a record over half a chunk is
 * reserved alone; a full ring answers NULL with the chunk closed, so everything produced can be drained. */
static void test_chunks(void)
{
    ring *r = ring_new(64 * 1024); /* chunks of 1 KiB */
    ring_chunk c = {0, 0};
    size_t len;
    char *a = ring_reserve_in(r, &c, 100), *b = ring_reserve_in(r, &c, 100), *d = ring_reserve_in(r, &c, 100);
    CHECK(a && b && d && b > a && d > b);
    CHECK_INT(ring_used_bytes(r), 1024); /* one CAS for the chunk */
    memset(a, 'a', 100), memset(b, 'b', 100), memset(d, 'd', 100);
    ring_commit(r, a);
    ring_commit(r, b);
    const char *p = ring_peek(r, &len);
    CHECK(p && len == 100 && p[0] == 'a');
    ring_consume(r);
    p = ring_peek(r, &len);
    CHECK(p && len == 100 && p[0] == 'b');
    ring_consume(r);
    CHECK(ring_peek(r, &len) == NULL); /* d carved, not committed */
    ring_commit(r, d);
    CHECK((p = ring_peek(r, &len)) && p[0] == 'd');
    ring_consume(r);
    CHECK(ring_peek(r, &len) == NULL); /* the chunk's rest: not carved yet, the consumer waits */
    char *big = ring_reserve_in(r, &c, 700); /* over half a chunk: alone, after the closed chunk */
    CHECK(big != NULL && c.pos == 0 && c.end == 0);
    memset(big, 'B', 700);
    ring_commit(r, big);
    CHECK((p = ring_peek(r, &len)) && len == 700 && p[0] == 'B');
    ring_consume(r);
    ring_release(r);
    CHECK_INT(ring_used_bytes(r), 0);
    /* laps around the array, chunks closed at random places: every record once, in order */
    uint32_t next = 0, seen = 0;
    for (uint32_t i = 0; i < 20000; i++) {
        size_t n = 8 + (i * 37) % 300;
        char *s = ring_reserve_in(r, &c, n);
        CHECK(s != NULL);
        if (!s)
            break;
        memset(s, 0, n);
        memcpy(s, &i, 4);
        ring_commit(r, s);
        if (i % 11 == 10)
            ring_chunk_close(r, &c);
        if (i % 50 == 49) {
            ring_chunk_close(r, &c);
            while ((p = ring_peek(r, &len)) != NULL) {
                uint32_t got;
                memcpy(&got, p, 4);
                CHECK_INT(got, next);
                next = got + 1, seen++;
                ring_consume(r);
            }
            ring_release(r);
        }
    }
    CHECK_INT(seen, 20000);
    CHECK_INT(ring_used_bytes(r), 0);
    /* full: NULL with the chunk closed; the consumer then drains all that was committed */
    uint32_t made = 0;
    for (char *s; (s = ring_reserve_in(r, &c, 200)) != NULL; made++) {
        memcpy(s, &made, 4);
        ring_commit(r, s);
    }
    CHECK(made > 200 && c.pos == 0 && c.end == 0);
    uint32_t drained = 0;
    while ((p = ring_peek(r, &len)) != NULL) {
        uint32_t got;
        memcpy(&got, p, 4);
        CHECK_INT(got, drained);
        drained++;
        ring_consume(r);
    }
    CHECK_INT(drained, made);
    ring_release(r);
    CHECK_INT(ring_used_bytes(r), 0);
    ring_free(r);
}

enum { PRODUCERS = 4 };

typedef struct prod_arg {
    ring *r;
    uint32_t id;
    uint32_t count;
    int inplace; /* reserve/write/commit, every fifth record first reserved, written and aborted; 2: the same from
                  * the producer's own chunk (ring_reserve_in), closed every seventh record and at the end */
    ring_chunk chunk;
    int aborted;
} prod_arg;

static void *producer(void *arg)
{
    prod_arg *a = arg;
    uint8_t rec[256];
    for (uint32_t seq = 0; seq < a->count;) {
        size_t n = 8 + (seq * 7 + a->id * 13) % 200;
        memcpy(rec, &a->id, 4);
        memcpy(rec + 4, &seq, 4);
        for (size_t i = 8; i < n; i++)
            rec[i] = (uint8_t)(seq ^ i);
        if (a->inplace && seq % 5 == 3 && !a->aborted) { /* written in place, then given up: never seen */
            uint8_t *slot = a->inplace == 2 ? ring_reserve_in(a->r, &a->chunk, n) : ring_reserve(a->r, n);
            if (!slot) {
                sched_yield();
                continue;
            }
            memset(slot, 0xee, n);
            ring_abort(a->r, slot);
            a->aborted = 1;
            continue;
        }
        a->aborted = 0;
        uint8_t *slot = a->inplace == 2 ? ring_reserve_in(a->r, &a->chunk, n) : a->inplace ? ring_reserve(a->r, n) : NULL;
        if (slot) { /* reserve -> write in place -> commit, as the record step does */
            memcpy(slot, rec, n);
            ring_commit(a->r, slot);
            seq++;
            if (a->inplace == 2 && (seq % 7 == 0 || seq == a->count))
                ring_chunk_close(a->r, &a->chunk); /* the end of a burst */
        } else if (!a->inplace && ring_push(a->r, rec, n) == 0) {
            seq++;
        } else {
            sched_yield();
        }
    }
    return NULL;
}

static void test_stress_mpsc(uint32_t per_producer, int inplace)
{
    ring *r = ring_new(64 * 1024);
    pthread_t t[PRODUCERS];
    prod_arg args[PRODUCERS];
    for (uint32_t i = 0; i < PRODUCERS; i++) {
        args[i] = (prod_arg){.r = r, .id = i, .count = per_producer, .inplace = inplace};
        pthread_create(&t[i], NULL, producer, &args[i]);
    }
    uint32_t next[PRODUCERS] = {0};
    uint64_t total = 0, bad = 0;
    while (total < (uint64_t)per_producer * PRODUCERS) {
        size_t len;
        const uint8_t *p;
        int k = 0;
        while ((p = ring_peek(r, &len)) != NULL && k++ < 64) {
            uint32_t id, seq;
            memcpy(&id, p, 4);
            memcpy(&seq, p + 4, 4);
            if (id >= PRODUCERS || seq != next[id] || len != 8 + (seq * 7 + id * 13) % 200) {
                bad++;
            } else {
                for (size_t i = 8; i < len; i++)
                    bad += p[i] != (uint8_t)(seq ^ i);
                next[id]++;
            }
            total++;
            ring_consume(r);
        }
        ring_release(r);
        if (k == 0)
            sched_yield();
    }
    for (int i = 0; i < PRODUCERS; i++)
        pthread_join(t[i], NULL);
    CHECK_INT(bad, 0);
    for (int i = 0; i < PRODUCERS; i++)
        CHECK_INT(next[i], per_producer);
    size_t len;
    CHECK(ring_peek(r, &len) == NULL);
    ring_free(r);
}

/* Several producers on a small ring, each with at most NF_OUTSTANDING records not yet released by the consumer:
 * NF_PRODUCERS x NF_OUTSTANDING x 64 bytes (+ one PAD each) is half the ring, so the ring is never full and every
 * NULL from ring_reserve is a wrong "full". (ring_reserve once loaded `head` before `tail`: when other producers and
 * the consumer moved past in between, tail > head and the free-space check underflowed.) A producer that merely
 * retries on NULL cannot see that; this one counts them. */
enum { NF_PRODUCERS = 4, NF_OUTSTANDING = 4, NF_REC = 56 };

typedef struct nf_shared {
    ring *r;
    uint32_t per_producer;
    _Atomic uint32_t released[NF_PRODUCERS]; /* consumer: records of producer i released so far */
    _Atomic uint64_t spurious_full;
} nf_shared;

typedef struct nf_arg {
    nf_shared *s;
    uint32_t id;
} nf_arg;

static void *nf_producer(void *arg)
{
    nf_arg *a = arg;
    nf_shared *s = a->s;
    for (uint32_t seq = 0; seq < s->per_producer;) {
        if (seq - atomic_load_explicit(&s->released[a->id], memory_order_acquire) >= NF_OUTSTANDING) {
            sched_yield();
            continue;
        }
        uint8_t *p = ring_reserve(s->r, NF_REC);
        if (!p) {
            atomic_fetch_add_explicit(&s->spurious_full, 1, memory_order_relaxed);
            continue;
        }
        memcpy(p, &a->id, 4);
        memcpy(p + 4, &seq, 4);
        ring_commit(s->r, p);
        seq++;
    }
    return NULL;
}

static void test_never_full(uint32_t per_producer)
{
    nf_shared s = {.r = ring_new(4096), .per_producer = per_producer};
    CHECK((size_t)NF_PRODUCERS * NF_OUTSTANDING * 2 * (8 + NF_REC) <= ring_capacity(s.r));
    pthread_t t[NF_PRODUCERS];
    nf_arg args[NF_PRODUCERS];
    for (uint32_t i = 0; i < NF_PRODUCERS; i++) {
        atomic_init(&s.released[i], 0);
        args[i] = (nf_arg){&s, i};
        pthread_create(&t[i], NULL, nf_producer, &args[i]);
    }
    uint32_t seen[NF_PRODUCERS] = {0};
    uint64_t total = 0, bad = 0;
    while (total < (uint64_t)per_producer * NF_PRODUCERS) {
        size_t len;
        const uint8_t *p;
        uint32_t got[NF_PRODUCERS] = {0};
        int k = 0;
        while ((p = ring_peek(s.r, &len)) != NULL) {
            uint32_t id, seq;
            memcpy(&id, p, 4);
            memcpy(&seq, p + 4, 4);
            if (id >= NF_PRODUCERS || seq != seen[id] || len != NF_REC)
                bad++;
            else
                seen[id]++, got[id]++;
            total++, k++;
            ring_consume(s.r);
        }
        ring_release(s.r);
        for (int i = 0; i < NF_PRODUCERS; i++)
            if (got[i])
                atomic_fetch_add_explicit(&s.released[i], got[i], memory_order_release);
        if (k == 0)
            sched_yield();
    }
    for (int i = 0; i < NF_PRODUCERS; i++)
        pthread_join(t[i], NULL);
    CHECK_INT(bad, 0);
    CHECK_INT(atomic_load(&s.spurious_full), 0);
    ring_free(s.r);
}

int main(void)
{
    const char *n = getenv("RING_STRESS_RECORDS");
    test_empty_and_basic();
    test_full_and_too_large();
    test_exactly_full();
    test_wrap_around();
    test_commit_order();
    test_abort();
    test_chunks();
    test_stress_mpsc(n ? (uint32_t)atoi(n) : 200000, 0);
    test_stress_mpsc(n ? (uint32_t)atoi(n) / 2 : 100000, 1);
    test_stress_mpsc(n ? (uint32_t)atoi(n) / 2 : 100000, 2);
    test_never_full(n ? (uint32_t)atoi(n) : 200000);
    return check_done("test_ring");
}
