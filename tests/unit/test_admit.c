/* test_admit.c — the one admission path (ingest/admit.h) on its own: every fate for both kinds of sender, with the
 * counters and the client entry each one moves — including what an integration test cannot cause: the encoder
 * running out of memory. The same cases through the real ingest paths: tests/integration/test_admission.py. */
#include "check.h"
#include "ingest/admit.h"

#include <errno.h>
#include <msgpack.h>
#include <stdlib.h>
#include <string.h>

/* Everything admission may move, read at once (one record's delta is after - before). */
typedef struct counts {
    uint64_t received, invalid, oversized, reserved, level_unknown, dropped_full, dropped_rate, dropped_nomem;
    uint64_t http_records, http_full, http_rate;
    uint64_t c_records, c_rejected, c_dropped, c_bytes;
} counts;

static counts read_counts(ingest_stats *st, const client_entry *ce)
{
    counts c = {stat_get(&st->received), stat_get(&st->invalid_record), stat_get(&st->oversized),
                stat_get(&st->reserved_key), stat_get(&st->level_unknown), stat_get(&st->dropped_full),
                stat_get(&st->dropped_rate_limited), stat_get(&st->dropped_nomem), stat_get(&st->http.records),
                stat_get(&st->http.refused_full), stat_get(&st->http.refused_rate_limited), ce->records, ce->rejected,
                ce->dropped, ce->bytes};
    return c;
}

static counts minus(counts a, counts b)
{
    uint64_t *x = (uint64_t *)&a;
    const uint64_t *y = (const uint64_t *)&b;
    for (size_t i = 0; i < sizeof a / sizeof(uint64_t); i++)
        x[i] -= y[i];
    return a;
}

#define CHECK_COUNTS(got, ...)                                                                                      \
    do {                                                                                                            \
        counts want_ = {__VA_ARGS__};                                                                               \
        counts got_ = (got);                                                                                        \
        CHECK(memcmp(&got_, &want_, sizeof got_) == 0);                                                             \
        if (memcmp(&got_, &want_, sizeof got_) != 0)                                                                \
            fprintf(stderr, "  got received=%llu invalid=%llu oversized=%llu reserved=%llu level=%llu full=%llu "   \
                            "rate=%llu nomem=%llu http=%llu/%llu/%llu client=%llu/%llu/%llu bytes=%llu\n",          \
                    (unsigned long long)got_.received, (unsigned long long)got_.invalid,                            \
                    (unsigned long long)got_.oversized, (unsigned long long)got_.reserved,                          \
                    (unsigned long long)got_.level_unknown, (unsigned long long)got_.dropped_full,                  \
                    (unsigned long long)got_.dropped_rate, (unsigned long long)got_.dropped_nomem,                  \
                    (unsigned long long)got_.http_records, (unsigned long long)got_.http_full,                      \
                    (unsigned long long)got_.http_rate, (unsigned long long)got_.c_records,                         \
                    (unsigned long long)got_.c_rejected, (unsigned long long)got_.c_dropped,                        \
                    (unsigned long long)got_.c_bytes);                                                              \
    } while (0)

/* One admission under test: a config, a small ring, counters, an encoder, a client entry. */
typedef struct bench {
    config cfg;
    ring *r;
    ingest_stats st;
    record_enc enc;
    record_source src;
    client_entry ce;
    admit *a;
} bench;

static void bench_init(bench *b, admit_kind kind, int on_full, double rate)
{
    memset(b, 0, sizeof *b);
    b->cfg.on_full = on_full;
    b->cfg.rate_limit_rps = rate;
    b->cfg.rate_limit_burst = 1;
    b->r = ring_new(4096);
    CHECK(b->r != NULL);
    CHECK(record_enc_init(&b->enc) == 0);
    b->enc.text_limit = 400;
    b->src = (record_source){.pid = 42, .uid = 1000, .comm = "app", .hostname = "host"};
    b->a = admit_new(kind, &b->cfg, b->r, &b->st);
    CHECK(b->a != NULL);
}

static void bench_free(bench *b)
{
    admit_free(b->a);
    record_enc_free(&b->enc);
    ring_free(b->r);
}

/* Packs {"message": msg, "_x": 1 (reserved), "level": "LOUD"} when marked, {"message": msg} else, and encodes it. */
static int encode(bench *b, const char *msg, int marked, record_info *info)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, marked ? 3 : 1);
    msgpack_pack_str_with_body(&pk, "message", 7);
    msgpack_pack_str_with_body(&pk, msg, strlen(msg));
    if (marked) {
        msgpack_pack_str_with_body(&pk, "_x", 2);
        msgpack_pack_int(&pk, 1);
        msgpack_pack_str_with_body(&pk, "level", 5);
        msgpack_pack_str_with_body(&pk, "LOUD", 4);
    }
    int rc = record_encode_raw(&b->enc, sb.data, sb.size, &b->src, 1, info);
    msgpack_sbuffer_destroy(&sb);
    return rc;
}

static admit_fate offer(bench *b, int rc, const record_info *info, uint8_t **held, size_t *held_len, int full)
{
    admit_from from = {.src = &b->src, .client = &b->ce, .wire = 10, .mono_ns = 1000000000, .full = full};
    return admit_record(b->a, &b->enc, rc, info, &from, held, held_len);
}

/* Fills the ring with marked records until one does not fit; returns how many went in. */
static int fill(bench *b)
{
    record_info info;
    int n = 0;
    for (;;) {
        CHECK(encode(b, "filler", 0, &info) == 0);
        uint8_t *held = NULL;
        size_t len = 0;
        admit_fate f = offer(b, 0, &info, &held, &len, 0);
        free(held);
        if (f != ADMIT_QUEUED)
            return n;
        n++;
    }
}

/* The encoder's verdicts, the size limit and a good record: the same for both kinds. */
static void test_refusals_both_kinds(void)
{
    for (int kind = ADMIT_STREAM; kind <= ADMIT_REQUEST; kind++) {
        bench b;
        bench_init(&b, (admit_kind)kind, FULL_BLOCK, 0);
        record_info info;
        counts before = read_counts(&b.st, &b.ce);
        CHECK(encode(&b, "good", 1, &info) == 0);
        CHECK_INT(offer(&b, 0, &info, NULL, NULL, 0), ADMIT_QUEUED);
        CHECK_COUNTS(minus(read_counts(&b.st, &b.ce), before), .received = 1, .reserved = 1, .level_unknown = 1,
                     .http_records = kind == ADMIT_REQUEST, .c_records = 1, .c_rejected = 1, .c_bytes = 10);

        before = read_counts(&b.st, &b.ce); /* not a record: nothing of its keys is counted */
        memset(&info, 0, sizeof info);
        info.reserved_keys = 3;
        info.level_unknown = 1;
        CHECK_INT(offer(&b, -EINVAL, &info, NULL, NULL, 0), ADMIT_INVALID);
        CHECK_COUNTS(minus(read_counts(&b.st, &b.ce), before), .invalid = 1, .c_rejected = 1, .c_bytes = 10);
        before = read_counts(&b.st, &b.ce); /* a caller's parser refusing it: no encoder at all */
        admit_from from = {.src = &b.src, .client = &b.ce, .detail = "'message' is missing"};
        CHECK_INT(admit_record(b.a, NULL, -EINVAL, &info, &from, NULL, NULL), ADMIT_INVALID);
        CHECK_COUNTS(minus(read_counts(&b.st, &b.ce), before), .invalid = 1, .c_rejected = 1);

        before = read_counts(&b.st, &b.ce); /* converted text too large (-E2BIG), encoded too large */
        CHECK_INT(offer(&b, -E2BIG, &info, NULL, NULL, 0), ADMIT_OVERSIZED);
        char big[600];
        memset(big, 'x', sizeof big - 1);
        big[sizeof big - 1] = 0;
        CHECK(encode(&b, big, 1, &info) == 0 && b.enc.out_len > b.enc.text_limit);
        CHECK_INT(offer(&b, 0, &info, NULL, NULL, 0), ADMIT_OVERSIZED);
        CHECK_COUNTS(minus(read_counts(&b.st, &b.ce), before), .oversized = 2, .c_rejected = 2, .c_bytes = 20);

        /* out of memory: the agent's trouble, never the client's bad input. A stream's record was read: dropped
         * (received + dropped.out_of_memory); a request's stays the caller's (500): nothing counted */
        before = read_counts(&b.st, &b.ce);
        CHECK_INT(offer(&b, -ENOMEM, &info, NULL, NULL, 0), ADMIT_NOMEM);
        if (kind == ADMIT_STREAM)
            CHECK_COUNTS(minus(read_counts(&b.st, &b.ce), before), .dropped_nomem = 1, .c_dropped = 1, .c_bytes = 10);
        else
            CHECK_COUNTS(minus(read_counts(&b.st, &b.ce), before), .c_bytes = 10);
        bench_free(&b);
    }
}

/* --rate-limit 1:1 — the second record is over: a stream's is dropped (its marks counted: it was taken), a
 * request's is the caller's (http.refused_rate_limited only). */
static void test_rate_limit(void)
{
    for (int kind = ADMIT_STREAM; kind <= ADMIT_REQUEST; kind++) {
        bench b;
        bench_init(&b, (admit_kind)kind, FULL_BLOCK, 1);
        record_info info;
        CHECK(encode(&b, "first", 0, &info) == 0);
        CHECK_INT(offer(&b, 0, &info, NULL, NULL, 0), ADMIT_QUEUED);
        counts before = read_counts(&b.st, &b.ce);
        CHECK(encode(&b, "second", 1, &info) == 0);
        CHECK_INT(offer(&b, 0, &info, NULL, NULL, 0), ADMIT_RATE_LIMITED);
        if (kind == ADMIT_STREAM)
            CHECK_COUNTS(minus(read_counts(&b.st, &b.ce), before), .reserved = 1, .level_unknown = 1,
                         .dropped_rate = 1, .c_rejected = 1, .c_dropped = 1, .c_bytes = 10);
        else
            CHECK_COUNTS(minus(read_counts(&b.st, &b.ce), before), .http_rate = 1, .c_bytes = 10);
        bench_free(&b);
    }
}

/* The ring full under drop-newest: received and dropped on both kinds, marks counted. */
static void test_full_drop_newest(void)
{
    for (int kind = ADMIT_STREAM; kind <= ADMIT_REQUEST; kind++) {
        bench b;
        bench_init(&b, (admit_kind)kind, FULL_DROP_NEWEST, 0);
        CHECK(fill(&b) > 0);
        record_info info;
        counts before = read_counts(&b.st, &b.ce);
        CHECK(encode(&b, "newest", 1, &info) == 0);
        CHECK_INT(offer(&b, 0, &info, NULL, NULL, 0), ADMIT_DROPPED_FULL);
        CHECK_COUNTS(minus(read_counts(&b.st, &b.ce), before), .reserved = 1, .level_unknown = 1, .dropped_full = 1,
                     .c_rejected = 1, .c_dropped = 1, .c_bytes = 10);
        bench_free(&b);
    }
}

/* The ring full under block: a stream gets a copy to hold (its marks counted now, received once it is queued); a
 * request gets ADMIT_FULL (http.refused_full only), also when told an earlier entry did not fit or while socket
 * ingest is paused — which a stream ignores (at shutdown the drain queues with the pause still on the clock). */
static void test_full_block(void)
{
    bench b;
    bench_init(&b, ADMIT_STREAM, FULL_BLOCK, 0);
    int n = fill(&b);
    record_info info;
    counts before = read_counts(&b.st, &b.ce);
    CHECK(encode(&b, "held", 1, &info) == 0);
    uint8_t *held = NULL;
    size_t len = 0;
    CHECK_INT(offer(&b, 0, &info, &held, &len, 0), ADMIT_HELD);
    CHECK(held && len == b.enc.out_len && memcmp(held, b.enc.out, len) == 0);
    CHECK_COUNTS(minus(read_counts(&b.st, &b.ce), before), .reserved = 1, .level_unknown = 1, .c_rejected = 1,
                 .c_bytes = 10);
    before = read_counts(&b.st, &b.ce);
    CHECK_INT(admit_queue_held(b.a, held, len, &b.ce, &b.src), -ENOBUFS); /* still full: nothing counted */
    CHECK_COUNTS(minus(read_counts(&b.st, &b.ce), before), .received = 0);
    size_t l;
    for (int i = 0; i < n && ring_peek(b.r, &l); i++) /* the flusher takes everything */
        ring_consume(b.r);
    ring_release(b.r);
    atomic_store(&b.st.paused_since_ns, 5); /* a stream queues even with a pause on the clock */
    CHECK_INT(admit_queue_held(b.a, held, len, &b.ce, &b.src), 0);
    CHECK_COUNTS(minus(read_counts(&b.st, &b.ce), before), .received = 1, .c_records = 1);
    free(held);
    bench_free(&b);

    bench_init(&b, ADMIT_REQUEST, FULL_BLOCK, 0);
    fill(&b);
    before = read_counts(&b.st, &b.ce);
    CHECK(encode(&b, "refused", 1, &info) == 0);
    CHECK_INT(offer(&b, 0, &info, NULL, NULL, 0), ADMIT_FULL);
    CHECK_COUNTS(minus(read_counts(&b.st, &b.ce), before), .http_full = 1, .c_bytes = 10);
    bench_free(&b);

    bench_init(&b, ADMIT_REQUEST, FULL_BLOCK, 0); /* an empty ring, but the caller says full, or socket ingest waits */
    CHECK(encode(&b, "after a full one", 0, &info) == 0);
    CHECK_INT(offer(&b, 0, &info, NULL, NULL, 1), ADMIT_FULL);
    atomic_store(&b.st.paused_since_ns, 5);
    CHECK_INT(offer(&b, 0, &info, NULL, NULL, 0), ADMIT_FULL);
    atomic_store(&b.st.paused_since_ns, 0);
    CHECK_INT(offer(&b, 0, &info, NULL, NULL, 0), ADMIT_QUEUED);
    CHECK_INT(stat_get(&b.st.http.refused_full), 2);
    bench_free(&b);
}

/* An entry only planned (record_prepare_raw, as ingest's native path does): admission writes it straight into the
 * ring reservation, and into the held copy when the ring is full: the bytes record_encode_raw would have made. */
static void test_prepared(void)
{
    bench b;
    bench_init(&b, ADMIT_STREAM, FULL_BLOCK, 0);
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 3);
    msgpack_pack_str_with_body(&pk, "message", 7);
    msgpack_pack_str_with_body(&pk, "in place", 8);
    msgpack_pack_str_with_body(&pk, "log_id", 6); /* sent: the same entry every time */
    msgpack_pack_str_with_body(&pk, "abc", 3);
    msgpack_pack_str_with_body(&pk, "n", 1);
    msgpack_pack_int(&pk, -7);
    record_info info;
    CHECK_INT(record_encode_raw(&b.enc, sb.data, sb.size, &b.src, 1, &info), 0);
    size_t want_len = b.enc.out_len;
    uint8_t *want = malloc(want_len);
    memcpy(want, b.enc.out, want_len);
    CHECK_INT(record_prepare_raw(&b.enc, sb.data, sb.size, &b.src, 1, &info), 0);
    CHECK(b.enc.out_pending && b.enc.out_len == want_len);
    CHECK_INT(offer(&b, 0, &info, NULL, NULL, 0), ADMIT_QUEUED);
    size_t l;
    const uint8_t *p = ring_peek(b.r, &l);
    CHECK(p && l == want_len && memcmp(p, want, l) == 0);
    ring_consume(b.r);
    ring_release(b.r);
    uint8_t *held = NULL;
    size_t len = 0;
    admit_fate f = ADMIT_QUEUED;
    for (int i = 0; i < 1000 && f == ADMIT_QUEUED; i++) { /* into the ring in place until it is full */
        CHECK_INT(record_prepare_raw(&b.enc, sb.data, sb.size, &b.src, 1, &info), 0);
        f = offer(&b, 0, &info, &held, &len, 0);
    }
    CHECK_INT(f, ADMIT_HELD);
    int in_ring = 0;
    while ((p = ring_peek(b.r, &l)) != NULL) { /* every entry written in place is the whole entry */
        CHECK(l == want_len && memcmp(p, want, l) == 0);
        ring_consume(b.r);
        in_ring++;
    }
    CHECK(in_ring > 1);
    CHECK(held && len == want_len && memcmp(held, want, len) == 0);
    free(held);
    free(want);
    msgpack_sbuffer_destroy(&sb);
    bench_free(&b);
}

int main(void)
{
    test_refusals_both_kinds();
    test_rate_limit();
    test_full_drop_newest();
    test_full_block();
    test_prepared();
    return check_done("test_admit");
}
