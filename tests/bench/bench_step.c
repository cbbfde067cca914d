/* bench_step.c — logagent-bench-step: the agent's record step alone, on one thread, over records already in memory.
 *
 * What ingest does with a connection's bytes, minus the socket and the event loop: copy a read's worth into the
 * decoder (decoder_space/decoder_wrote), classify and size each whole record in one walk (record_prepare_raw, which
 * also settles mpscan's checks), and write it straight into the ring (reserve, record_write, commit); the records
 * cut by a read go through mpscan and decoder_next first. The ring is drained after each read, as
 * the flusher would, so it never fills. The records are the original service's shape, packed by liblogagent's own
 * packer (the exact bytes the C client sends), distinct by message, trace and span ids.
 *
 *   logagent-bench-step [--count N] [--distinct K] [--read BYTES] [--repeat R] [--one-walk 1|0]
 *
 * --one-walk 1 (the default, what ingest does): a record wholly read is taken as it is scanned — one walk by the
 * encoder settles the structure checks too (decoder_set_taker). 0: every record through mpscan first, then the
 * encoder (what a record cut by a read, or held back by backpressure, still goes through).
 *
 * Prints one line per repeat and the best: records/s and ns of thread CPU per record (docs/benchmarks.md). A
 * benchmark, not a test: nothing is asserted about speed; every record must encode (exit 1 otherwise). */
#include "ingest/decoder.h"
#include "pack.h"
#include "record.h"
#include "ring.h"

#include <errno.h>
#include <logagent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double wall_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* K records of the original shape, packed back to back. Returns the buffer (caller frees), *len its size. */
static unsigned char *make_records(long k, size_t *len)
{
    static const char *const levels[] = {"INFO", "WARN", "ERROR", "DEBUG"};
    static const char *const types[] = {"impression", "click", "conversion", "view"};
    size_t cap = (size_t)k * 512, off = 0;
    unsigned char *buf = malloc(cap);
    if (!buf)
        return NULL;
    uint32_t rs = 2463534242u;
    for (long i = 0; i < k; i++) {
        char msg[64], trace[48], span[48], log_id[33], ts[40];
        rs ^= rs << 13, rs ^= rs >> 17, rs ^= rs << 5;
        snprintf(msg, sizeof msg, "Concurrent test log entry %ld", i);
        snprintf(trace, sizeof trace, "concurrent-trace-%06ld", i);
        snprintf(span, sizeof span, "concurrent-span-%06ld", i);
        snprintf(log_id, sizeof log_id, "%016lx%016lx", (unsigned long)rs * 2654435761u, (unsigned long)i);
        snprintf(ts, sizeof ts, "2026-12-07T10:30:45.%06u+00:00", (unsigned)(rs % 1000000u));
        logagent_field f[6] = {
            {.key = "adv_id", .type = LOGAGENT_INT, .v.i = 1000000 + rs % 9000000},
            {.key = "aweme_id", .type = LOGAGENT_INT, .v.i = 100000000 + rs % 900000000},
            {.key = "plan_id", .type = LOGAGENT_INT, .v.i = 10000 + rs % 90000},
            {.key = "monitor_type", .type = LOGAGENT_STR, .v.s = types[rs % 4]},
            {.key = "co_id", .type = LOGAGENT_INT, .v.i = 1000 + rs % 9000},
            {.key = "timestamp", .type = LOGAGENT_STR, .v.s = ts},
        };
        logagent_record r = {.message = msg, .service_name = "concurrent_test_service", .level = levels[rs % 4],
                             .trace_id = trace, .span_id = span, .fields = f, .n_fields = 6};
        size_t n = la_pack_record(buf + off, cap - off, &r, log_id, 0);
        if (n > cap - off) {
            free(buf);
            return NULL;
        }
        off += n;
    }
    *len = off;
    return buf;
}

typedef struct run_result {
    long records;
    double cpu, wall;
} run_result;

/* What ingest's take_native does with a record wholly read: one walk (record_prepare_raw) that also settles the
 * scanner's checks (mpscan_walked), then reserve -> record_write -> commit. */
typedef struct taker {
    record_enc *e;
    ring *r;
    ring_chunk chunk; /* as an ingest loop in memory mode: records carved from its chunk, closed after each read */
    const record_source *src;
    int64_t now;
    long done;
    int err;
} taker;

static int take(void *arg, mpscan *s, const uint8_t *p, size_t avail, size_t *used)
{
    taker *t = arg;
    record_info info;
    int rc = record_prepare_raw(t->e, p, avail, t->src, t->now, &info);
    if (s && (rc < 0 || mpscan_walked(s, p, info.wire_len, info.nesting) != MPSCAN_OK))
        return 0;
    if (rc < 0) { /* s NULL: checked by the scanner (cut by a read), and every record must encode */
        t->err = -EINVAL;
        *used = avail;
        return 1;
    }
    uint8_t *slot = ring_reserve_in(t->r, &t->chunk, t->e->out_len);
    if (slot) {
        record_write(t->e, slot);
        ring_commit(t->r, slot);
        t->done++;
    } else {
        t->err = -ENOBUFS;
    }
    *used = s ? info.wire_len : avail;
    return 1;
}

/* Pushes `count` records (cycling through the packed ones) through decoder -> encoder -> ring. */
static int run(const unsigned char *recs, size_t len, long count, size_t read_size, int one_walk, run_result *out)
{
    decoder d;
    record_enc e;
    ring *r = ring_new(16u << 20);
    record_source src = {.pid = 4242, .uid = 1000, .gid = 1000, .comm = "bench", .hostname = "bench-host"};
    uint8_t wire[128]; /* encoded once, as a connection's source is (ingest.c's conn_new) */
    src.wire_len = record_source_wire(&src, wire, sizeof wire);
    src.wire = src.wire_len ? wire : NULL;
    if (!r || decoder_init(&d, 4096, 1 << 20, 16 << 20) < 0 || record_enc_init(&e) < 0)
        return -ENOMEM;
    e.text_limit = 1 << 20;
    taker tk = {.e = &e, .r = r, .src = &src, .now = 1765000000000000000LL};
    if (one_walk)
        decoder_set_taker(&d, take, &tk);
    long done = 0;
    size_t off = 0;
    double c0 = cpu_s(), w0 = wall_s();
    while (done < count) {
        size_t room, n = len - off < read_size ? len - off : read_size;
        uint8_t *w = decoder_space(&d, n, &room);
        if (!w)
            return -ENOMEM;
        memcpy(w, recs + off, n); /* what read(2) does */
        off = off + n == len ? 0 : off + n;
        tk.done = 0;
        if (decoder_wrote(&d, n) != MPSCAN_OK)
            return -EBADMSG;
        if (tk.err)
            return tk.err;
        done += tk.done; /* taken as they were read */
        const uint8_t *p;
        size_t plen;
        int64_t now = 1765000000000000000LL;
        while (decoder_next(&d, &p, &plen)) {
            record_info info;
            if (record_prepare_raw(&e, p, plen, &src, now, &info) < 0)
                return -EINVAL;
            uint8_t *slot = ring_reserve_in(r, &tk.chunk, e.out_len); /* as admission: sized, written in place */
            if (!slot)
                return -ENOBUFS;
            record_write(&e, slot);
            ring_commit(r, slot);
            done++;
        }
        ring_chunk_close(r, &tk.chunk); /* the end of a read's records, as ingest's process() */
        size_t got;
        while (ring_peek(r, &got)) /* the flusher's side, so the ring never fills */
            ring_consume(r);
        ring_release(r);
    }
    out->cpu = cpu_s() - c0;
    out->wall = wall_s() - w0;
    out->records = done;
    decoder_free(&d);
    record_enc_free(&e);
    ring_free(r);
    return 0;
}

int main(int argc, char **argv)
{
    long count = 2000000, distinct = 10000, repeat = 3, one_walk = 1;
    size_t read_size = 256 * 1024;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--count"))
            count = atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--distinct"))
            distinct = atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--read"))
            read_size = (size_t)atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--repeat"))
            repeat = atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--one-walk"))
            one_walk = atol(argv[i + 1]);
        else {
            fprintf(stderr, "logagent-bench-step: unknown option '%s'\n", argv[i]);
            return 2;
        }
    }
    if (count <= 0 || distinct <= 0 || repeat <= 0 || read_size < 64) {
        fprintf(stderr, "logagent-bench-step: --count, --distinct, --repeat must be positive, --read >= 64\n");
        return 2;
    }
    size_t len;
    unsigned char *recs = make_records(distinct, &len);
    if (!recs) {
        fprintf(stderr, "logagent-bench-step: cannot build the records\n");
        return 1;
    }
    printf("records of %.0f bytes on average (msgpack, as liblogagent packs them)\n", (double)len / distinct);
    double best = 0, best_ns = 0;
    for (long i = 0; i < repeat; i++) {
        run_result res;
        int rc = run(recs, len, count, read_size, one_walk, &res);
        if (rc < 0) {
            fprintf(stderr, "logagent-bench-step: %s\n", strerror(-rc));
            return 1;
        }
        double rate = (double)res.records / res.wall, ns = res.cpu * 1e9 / (double)res.records;
        printf("run %ld: %ld records, %.0f records/s, %.0f ns of thread CPU per record\n", i + 1, res.records, rate,
               ns);
        if (rate > best) {
            best = rate;
            best_ns = ns;
        }
    }
    printf("best: %.0f records/s, %.0f ns per record\n", best, best_ns);
    free(recs);
    return 0;
}
