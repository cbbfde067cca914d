/* fuzz_ingest.c — libFuzzer target: the bytes a client writes on the ingest socket, through what ingest.c does
 * with them: the decoder (agent/ingest/decoder.c: mpscan bounds every length, whole objects come out) ->
 * record_encode_raw (docs/protocol.md's mapping to WriteLogRequest bytes) — the agent's own code, not a copy of it.
 * No sockets, no libevent: one input is one connection's byte stream.
 *
 * Each input is decoded seven times — whole (as one read), one byte per read, and in reads of pseudo-random
 * lengths drawn from a hash of the input, all with max_record_bytes and the converted-text limit at 64 KiB (a
 * legal setting; the code paths are those of the 1 MiB default, while msgpack-c's allocations for announced
 * item counts stay small enough to keep the target fast); then whole and in random reads again with small limits
 * (max_record_bytes 256, converted text 1 KiB) so the oversized paths are reachable from small inputs. Like ingest,
 * the passes give the decoder a taker (a native record read whole is walked once, by the encoder, whose walk
 * settles mpscan's checks); one whole pass per limit runs without it (mpscan, then the encoder) and must agree.
 * Every byte boundary is a read boundary in the one-byte pass, so a decoder that loses its place at a split shows.
 * Besides ASan/UBSan, the target aborts on:
 *  - passes with the same limits that disagree (outcome, record count, refusals or encoded bytes differ);
 *  - the encoder's walk settling a record (mpscan_walked) that a scanner of its own does not pass, or ends elsewhere;
 *  - msgpack-c refusing an object the decoder handed out, or record_encode on msgpack-c's object (the Forward and
 *    HTTP path) disagreeing with record_encode_raw on its bytes (result, counts or encoded bytes);
 *  - an encoded record that protobuf-c cannot parse as a WriteLogRequest, a string field that is not valid UTF-8
 *    (proto3 parsers upstream would refuse the whole batch), a `source` other than the one ingest passed, a
 *    metadata key starting with `_`, an empty level or log_id, a level_unknown flag that does not match the level;
 *  - per-record wire sizes (the per-client byte counts) that do not add up to the stream's bytes;
 *  - heap in use during a pass beyond 64 x max_record_bytes + 4 x the text limit + 2 MiB: docs/security.md promises
 *    "never unbounded memory", and a few header bytes must not make anything allocate for millions of items.
 * The loop is ingest.c's conn_read() and process() without the socket: decoder_space, decoder_wrote, decoder_next. */
#include "fuzz_common.h"

#include "logagent/v1/log_service.pb-c.h"
#include "ingest/decoder.h"
#include "record.h"

#include <msgpack.h>
#include <sanitizer/allocator_interface.h>

/* ingest.c's decoder starts at 4 KiB and grows to what reads need. The whole-input passes do the same; the split
 * passes start from a tiny buffer so that the decoder's growth and moves happen all the time. */
enum { READ_CHUNK = 4096, SMALL_BUF = 64 };
enum { PASS_WHOLE, PASS_BYTES, PASS_RANDOM };

static const int64_t NOW_NS = 1725013845123456789LL; /* the receive time every pass uses */

/* Heap accounting through the sanitizer's malloc hooks. Process-wide by nature (a hook has no context);
 * the target is single-threaded. Frees of blocks allocated before the hooks (libFuzzer's) can only make a
 * pass's peak look smaller, never larger. */
static size_t g_heap_live, g_heap_peak;

static void on_malloc(const volatile void *p, size_t n)
{
    g_heap_live += n;
    if (g_heap_live > g_heap_peak)
        g_heap_peak = g_heap_live;
}

static void on_free(const volatile void *p)
{
    if (p)
        g_heap_live -= __sanitizer_get_allocated_size((const void *)p);
}

typedef struct limits {
    uint64_t max_record; /* mpscan's max_record_bytes */
    size_t text_limit;   /* record_enc.text_limit, and ingest's bound on one encoded record */
} limits;

typedef struct outcome {
    int fail;          /* MPSCAN_OK or the error that closes the connection */
    int mid_record;    /* the stream ended inside a record (truncated) */
    uint64_t records;  /* objects the decoder handed out */
    uint64_t ok, invalid, oversized, reserved;
    uint64_t wire;     /* sum of per-record wire sizes */
    uint64_t fed;      /* bytes written into the decoder */
    uint64_t digest;   /* over every record's result and encoded bytes */
    uint64_t taken;    /* of `records`, taken as read by the taker (one walk); not compared */
} outcome;

typedef struct dec {
    decoder dc;
    msgpack_unpacked res;
    record_enc enc, enc_obj; /* record_encode_raw's; record_encode's (the cross-check) */
    record_source src;
    limits lim;
    outcome out;
} dec;

/* ---- what an encoded record must look like ----------------------------------------------------------- */

static int utf8_ok(const uint8_t *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = p[i], len, cp, min;
        if (c < 0x80) { i++; continue; }
        if (c >= 0xc2 && c <= 0xdf) { len = 2; min = 0x80; }
        else if (c >= 0xe0 && c <= 0xef) { len = 3; min = 0x800; }
        else if (c >= 0xf0 && c <= 0xf4) { len = 4; min = 0x10000; }
        else return 0;
        if (n - i < len)
            return 0;
        cp = c & (0x3fu >> (len - 1));
        for (unsigned k = 1; k < len; k++) {
            if ((p[i + k] & 0xc0) != 0x80)
                return 0;
            cp = cp << 6 | (p[i + k] & 0x3fu);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        i += len;
    }
    return 1;
}

static const uint8_t *get_varint(const uint8_t *p, const uint8_t *end, uint64_t *v)
{
    *v = 0;
    for (int shift = 0; p < end && shift < 64; shift += 7) {
        *v |= (uint64_t)(*p & 0x7f) << shift;
        if (!(*p++ & 0x80))
            return p;
    }
    FUZZ_CHECK(0, "bad varint in an encoded record");
    return end;
}

/* The exact bytes of every string of a WriteLogRequest (protobuf-c's char * stop at a NUL, which a string may
 * hold): each valid UTF-8, level and log_id not empty, no metadata key starting with `_`. entry: walking a
 * metadata entry (key = 1, value = 2) rather than the request. Sets *level / *level_len to the level's bytes. */
static void check_strings(const uint8_t *p, size_t n, int entry, const uint8_t **level, size_t *level_len)
{
    const uint8_t *end = p + n;
    int have_level = 0, have_log_id = 0;
    while (p < end) {
        uint64_t tag, len;
        p = get_varint(p, end, &tag);
        if ((tag & 7) == 0) { /* timestamp_unix_nano */
            p = get_varint(p, end, &len);
            continue;
        }
        FUZZ_CHECK((tag & 7) == 2, "unexpected wire type %d in an encoded record", (int)(tag & 7));
        p = get_varint(p, end, &len);
        FUZZ_CHECK(len <= (uint64_t)(end - p), "field %d runs past the record", (int)(tag >> 3));
        uint32_t field = (uint32_t)(tag >> 3);
        if (!entry && field == 6) {
            check_strings(p, len, 1, level, level_len);
        } else if (entry || field != 9) { /* source (9): compared whole in verify_source */
            FUZZ_CHECK(utf8_ok(p, len), "field %u%s is not valid UTF-8", field, entry ? " of a metadata entry" : "");
            FUZZ_CHECK(!(entry && field == 1 && len > 0 && p[0] == '_'), "a reserved _-key reached metadata");
            if (!entry && field == 2) {
                have_level = len > 0;
                *level = p;
                *level_len = len;
            }
            have_log_id |= !entry && field == 7 && len > 0;
        }
        p += len;
    }
    if (!entry)
        FUZZ_CHECK(have_level && have_log_id, "level or log_id missing or empty");
}

static int level_is_canonical(const uint8_t *l, size_t n)
{
    static const char *const CANON[] = {"TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"};
    for (size_t i = 0; i < sizeof CANON / sizeof CANON[0]; i++)
        if (n == strlen(CANON[i]) && !memcmp(l, CANON[i], n))
            return 1;
    return 0;
}

static void verify_source(const Logagent__V1__Source *s, const record_source *want)
{
    FUZZ_CHECK(s, "no source in an encoded record");
    FUZZ_CHECK(s->pid == want->pid && s->uid == want->uid && s->gid == want->gid, "source ids changed");
    FUZZ_CHECK(!strcmp(s->comm, want->comm) && !strcmp(s->hostname, want->hostname), "source names changed");
    FUZZ_CHECK(s->comm[0] && s->hostname[0], "source names lost"); /* the wire bytes are checked above */
}

/* An encoded record as the upstream would parse it. */
static void verify_encoded(const record_enc *e, const record_info *info, const record_source *src)
{
    Logagent__V1__WriteLogRequest *m = logagent__v1__write_log_request__unpack(NULL, e->out_len, e->out);
    FUZZ_CHECK(m, "record_encode wrote %zu bytes protobuf-c cannot parse as a WriteLogRequest", e->out_len);
    const uint8_t *level = NULL;
    size_t level_len = 0;
    check_strings(e->out, e->out_len, 0, &level, &level_len);
    FUZZ_CHECK(info->level_unknown == !level_is_canonical(level, level_len), "level_unknown=%d for level '%.*s'",
               info->level_unknown, (int)level_len, (const char *)level);
    verify_source(m->source, src);
    logagent__v1__write_log_request__free_unpacked(m, NULL);
}

/* ---- the ingest path --------------------------------------------------------------------------------- */

/* record_encode on msgpack-c's object of the same bytes must agree with record_encode_raw (one classifier). */
static void cross_check(dec *d, const uint8_t *p, size_t n, int rc, const record_info *info)
{
    size_t off = 0;
    msgpack_unpack_return r = msgpack_unpack_next(&d->res, (const char *)p, n, &off);
    FUZZ_CHECK(r == MSGPACK_UNPACK_SUCCESS && off == n, "msgpack-c returned %d (%zu of %zu bytes) on an object the "
               "decoder handed out", (int)r, off, n);
    record_info io;
    int ro = record_encode(&d->enc_obj, &d->res.data, &d->src, NOW_NS, &io);
    FUZZ_CHECK(ro == rc, "record_encode says %d, record_encode_raw %d", ro, rc);
    FUZZ_CHECK(io.reserved_keys == info->reserved_keys && io.level_unknown == info->level_unknown &&
                   io.timestamp_unparsed == info->timestamp_unparsed && io.service_len == info->service_len,
               "record_encode and record_encode_raw noticed different things");
    if (rc == 0)
        FUZZ_CHECK(d->enc_obj.out_len == d->enc.out_len && !memcmp(d->enc_obj.out, d->enc.out, d->enc.out_len),
                   "record_encode and record_encode_raw encoded different bytes");
}

/* handle_native() in ingest.c, minus the ring and the counters: classify, check, and fold into the digest. */
static void handle_record(dec *d, const uint8_t *p, size_t wire)
{
    record_info info;
    int rc = record_encode_raw(&d->enc, p, wire, &d->src, NOW_NS, &info);
    cross_check(d, p, wire, rc, &info);
    d->out.wire += wire;
    FUZZ_CHECK(wire > 0, "a record of 0 wire bytes");
    if (rc == 0)
        FUZZ_CHECK(info.wire_len == wire, "record_encode_raw read %zu of a %zu-byte record", info.wire_len, wire);
    if (info.service)
        FUZZ_CHECK(info.service_len > 0, "service_name pointer without a length");
    if (rc == -EINVAL) {
        d->out.invalid++;
    } else if (rc < 0) { /* -E2BIG (record.c also says -ENOMEM for some text-limit hits; ingest treats both so) */
        FUZZ_CHECK(rc == -E2BIG || rc == -ENOMEM, "record_encode returned %d", rc);
        d->out.oversized++;
    } else {
        FUZZ_CHECK(d->enc.out_len <= d->enc.out_cap, "encoded length past the buffer");
        verify_encoded(&d->enc, &info, &d->src);
        d->out.reserved += info.reserved_keys;
        if (d->enc.out_len > d->lim.text_limit)
            d->out.oversized++;
        else
            d->out.ok++;
    }
    int32_t r32 = rc;
    d->out.digest = fuzz_fnv(d->out.digest, &r32, sizeof r32);
    d->out.digest = fuzz_fnv(d->out.digest, &info.reserved_keys, sizeof info.reserved_keys);
    int flags[3] = {info.level_unknown, info.timestamp_unparsed, info.utf8_repaired};
    d->out.digest = fuzz_fnv(d->out.digest, flags, sizeof flags);
    if (rc == 0)
        d->out.digest = fuzz_fnv(d->out.digest, d->enc.out, d->enc.out_len);
}

/* take_native() in ingest.c: a native record offered as it is read. With s, the encoder's walk must settle the
 * scanner's checks (mpscan_walked); whenever it says MPSCAN_OK, a scanner of its own must agree, record end
 * included (the fold is exact, never a guess). Then it is handled as process() would (encoded again for the checks,
 * from the same log_id generator state). */
static int fuzz_take(void *arg, mpscan *s, const uint8_t *p, size_t avail, size_t *used)
{
    dec *d = arg;
    record_info info;
    uint64_t rng[2] = {d->enc.rng[0], d->enc.rng[1]};
    int rc = record_prepare_raw(&d->enc, p, avail, &d->src, NOW_NS, &info);
    size_t wire = avail;
    if (s) {
        if (rc < 0 || mpscan_walked(s, p, info.wire_len, info.nesting) != MPSCAN_OK) {
            d->enc.rng[0] = rng[0], d->enc.rng[1] = rng[1]; /* as if not tried: the scanner's, then process's */
            return 0;
        }
        mpscan m;
        size_t u = 0;
        mpscan_init(&m, d->lim.max_record);
        mpscan_set_array_limit(&m, d->lim.max_record);
        int v = mpscan_feed_one(&m, p, avail, &u);
        FUZZ_CHECK(v == MPSCAN_OK && u == info.wire_len && m.records == 1,
                   "the encoder's walk settled a %zu-byte record that mpscan says %d about (%zu bytes)",
                   info.wire_len, v, u);
        wire = info.wire_len;
    }
    FUZZ_CHECK(rc < 0 || d->enc.out_pending, "record_prepare_raw planned nothing");
    d->enc.rng[0] = rng[0], d->enc.rng[1] = rng[1];
    d->out.records++;
    d->out.taken++;
    handle_record(d, p, wire);
    *used = wire;
    return 1;
}

/* process() in ingest.c: every complete object the decoder has. */
static void drain(dec *d)
{
    const uint8_t *p;
    size_t len;
    while (decoder_next(&d->dc, &p, &len)) {
        d->out.records++;
        handle_record(d, p, len);
    }
}

/* conn_read() in ingest.c for one read of n bytes. Returns MPSCAN_OK or the error that ends the connection. */
static int feed(dec *d, const uint8_t *p, size_t n, size_t reserve)
{
    size_t room;
    uint8_t *buf = decoder_space(&d->dc, reserve, &room);
    FUZZ_CHECK(buf && room >= reserve && reserve >= n, "decoder_space gave %zu bytes for %zu", buf ? room : 0,
               reserve);
    memcpy(buf, p, n);
    int rc = decoder_wrote(&d->dc, n);
    d->out.fed += n;
    drain(d);
    FUZZ_CHECK(d->out.records == d->dc.scan.records, "the decoder handed out %llu objects, mpscan counted %llu",
               (unsigned long long)d->out.records, (unsigned long long)d->dc.scan.records);
    return rc;
}

static void dec_init(dec *d, const limits *lim, size_t init_buf, int taker)
{
    memset(d, 0, sizeof *d);
    FUZZ_CHECK(decoder_init(&d->dc, init_buf, lim->max_record, lim->max_record) == 0, "decoder_init");
    if (taker)
        decoder_set_taker(&d->dc, fuzz_take, d);
    msgpack_unpacked_init(&d->res);
    FUZZ_CHECK(record_enc_init(&d->enc) == 0 && record_enc_init(&d->enc_obj) == 0, "record_enc_init");
    d->enc.rng[0] = d->enc_obj.rng[0] = 0x0123456789abcdefULL; /* the same generated log_ids in every pass */
    d->enc.rng[1] = d->enc_obj.rng[1] = 0xfedcba9876543210ULL;
    d->enc.text_limit = d->enc_obj.text_limit = lim->text_limit;
    d->src = (record_source){.pid = 4242, .uid = 1000, .gid = 1001, .comm = "fuzz-client", .hostname = "fuzzhost"};
    d->lim = *lim;
    d->out.digest = FUZZ_FNV_INIT;
}

static void dec_free(dec *d)
{
    msgpack_unpacked_destroy(&d->res);
    decoder_free(&d->dc);
    record_enc_free(&d->enc);
    record_enc_free(&d->enc_obj);
}

/* One connection: the input in reads cut as `mode` says. */
static outcome run_pass(const uint8_t *data, size_t size, const limits *lim, int mode, int taker)
{
    size_t live0 = g_heap_live;
    g_heap_peak = g_heap_live;
    dec d;
    dec_init(&d, lim, mode == PASS_WHOLE ? READ_CHUNK : SMALL_BUF, taker);
    uint64_t rng = fuzz_fnv(FUZZ_FNV_INIT, data, size);
    int rc = MPSCAN_OK;
    for (size_t off = 0; off < size && rc == MPSCAN_OK;) {
        size_t n = size - off;
        if (mode == PASS_BYTES)
            n = 1;
        else if (mode == PASS_RANDOM && n > 1)
            n = 1 + fuzz_rng(&rng) % (fuzz_rng(&rng) % 4 == 0 ? n : (n < 97 ? n : 97));
        rc = feed(&d, data + off, n, mode == PASS_WHOLE && n < READ_CHUNK ? READ_CHUNK : n);
        off += n;
    }
    d.out.fail = rc;
    d.out.mid_record = rc == MPSCAN_OK && decoder_mid_object(&d.dc);
    FUZZ_CHECK(d.out.wire <= d.out.fed, "record wire sizes add up to %llu of %llu bytes fed",
               (unsigned long long)d.out.wire, (unsigned long long)d.out.fed);
    if (rc == MPSCAN_OK && !d.out.mid_record)
        FUZZ_CHECK(d.out.wire == size, "record wire sizes add up to %llu of a %zu-byte stream",
                   (unsigned long long)d.out.wire, size);
    dec_free(&d);
    size_t bound = 64 * (size_t)lim->max_record + 4 * lim->text_limit + (2u << 20);
    FUZZ_CHECK(g_heap_peak - live0 <= bound, "decoding %zu bytes took %zu bytes of heap (bound %zu)", size,
               g_heap_peak - live0, bound);
    return d.out;
}

static void same_outcome(const outcome *a, const outcome *b, const char *what)
{
    FUZZ_CHECK(a->fail == b->fail && a->mid_record == b->mid_record, "%s: fail %d/%d, mid_record %d/%d", what,
               a->fail, b->fail, a->mid_record, b->mid_record);
    FUZZ_CHECK(a->records == b->records && a->ok == b->ok && a->invalid == b->invalid &&
                   a->oversized == b->oversized && a->reserved == b->reserved,
               "%s: record counts differ", what);
    FUZZ_CHECK(a->digest == b->digest, "%s: encoded records differ", what);
}

/* LOGAGENT_FUZZ_VERBOSE=1: one line per input with what ingest would count (for checking what a seed does). */
static void describe(const outcome *o, const char *limits_name)
{
    static const char *const FAIL[] = {"-", "malformed", "oversized"};
    fprintf(stderr, "  %s: records=%llu ok=%llu invalid_record=%llu oversized=%llu reserved_key=%llu close=%s%s\n",
            limits_name, (unsigned long long)o->records, (unsigned long long)o->ok,
            (unsigned long long)o->invalid, (unsigned long long)o->oversized, (unsigned long long)o->reserved,
            FAIL[-o->fail], o->mid_record ? " truncated" : "");
}

static int g_verbose; /* set once, at initialisation */

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    FUZZ_CHECK(__sanitizer_install_malloc_and_free_hooks(on_malloc, on_free), "cannot install malloc hooks");
    const char *v = getenv("LOGAGENT_FUZZ_VERBOSE");
    g_verbose = v && !strcmp(v, "1");
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const limits dflt = {64u << 10, 64u << 10}, small = {256, 1024};
    outcome whole = run_pass(data, size, &dflt, PASS_WHOLE, 1);
    outcome scanned = run_pass(data, size, &dflt, PASS_WHOLE, 0);
    same_outcome(&whole, &scanned, "whole: one walk vs scanned then encoded");
    outcome bytes = run_pass(data, size, &dflt, PASS_BYTES, 1);
    same_outcome(&whole, &bytes, "whole vs one byte per read");
    outcome rnd = run_pass(data, size, &dflt, PASS_RANDOM, 1);
    same_outcome(&whole, &rnd, "whole vs random reads");
    outcome s_whole = run_pass(data, size, &small, PASS_WHOLE, 1);
    outcome s_scanned = run_pass(data, size, &small, PASS_WHOLE, 0);
    same_outcome(&s_whole, &s_scanned, "small limits, whole: one walk vs scanned then encoded");
    outcome s_rnd = run_pass(data, size, &small, PASS_RANDOM, 1);
    same_outcome(&s_whole, &s_rnd, "small limits: whole vs random reads");
    if (g_verbose) {
        describe(&whole, "max_record 64KiB");
        describe(&s_whole, "max_record 256B ");
    }
    return 0;
}
