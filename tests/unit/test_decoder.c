/* test_decoder.c — the ingest decoder: a stream of records cut at every byte boundary (and one byte at a time, and
 * at random) gives the same objects and the same verdict as the stream whole; a refusal (malformed, oversized)
 * hands out the good objects before it and never the bad one's bytes; a pinned decoder keeps handed-out bytes where
 * they are while it grows (ASan sees a read of freed bytes); shrinking; the growth decoder_grown_cap predicts. Every
 * split also runs with a taker (the one-walk path: the encoder's walk settles the scanner's checks) and with a taker
 * that keeps declining (backpressure): the same objects, in the same order, and the same verdict; the nesting limit
 * on that path. */
#include "check.h"
#include "ingest/decoder.h"
#include "record.h"

#include <msgpack.h>
#include <stdlib.h>

typedef struct stream {
    msgpack_sbuffer sb;
    msgpack_packer pk;
} stream;

static void stream_init(stream *s)
{
    msgpack_sbuffer_init(&s->sb);
    msgpack_packer_init(&s->pk, &s->sb, msgpack_sbuffer_write);
}

static void put_str(stream *s, const char *v) { msgpack_pack_str_with_body(&s->pk, v, strlen(v)); }

/* A native record with a message of `len` bytes. */
static void put_record(stream *s, int i, size_t len)
{
    char *msg = malloc(len + 1);
    memset(msg, 'a' + i % 26, len);
    msg[len] = 0;
    msgpack_pack_map(&s->pk, 3);
    put_str(s, "message");
    put_str(s, msg);
    put_str(s, "n");
    msgpack_pack_int(&s->pk, i);
    put_str(s, "nested");
    msgpack_pack_array(&s->pk, 2);
    msgpack_pack_map(&s->pk, 1);
    put_str(s, "k");
    msgpack_pack_double(&s->pk, 1.5);
    msgpack_pack_bin_with_body(&s->pk, "\x00\x01", 2);
    free(msg);
}

/* What one run saw: the objects' bytes, concatenated, with their count, and the verdict. */
typedef struct seen {
    uint8_t *bytes;
    size_t len, objects;
    int fail, mid;
    size_t taken, walked; /* objects the taker took; of those, settled by the encoder's walk alone */
} seen;

static void add(seen *out, const uint8_t *p, size_t n)
{
    out->bytes = realloc(out->bytes, out->len + n);
    memcpy(out->bytes + out->len, p, n);
    out->len += n;
    out->objects++;
}

static void take(decoder *d, seen *out)
{
    const uint8_t *p;
    size_t n;
    while (decoder_next(d, &p, &n))
        add(out, p, n);
}

/* How run() feeds the decoder: without a taker (the scanner's verdicts, what the others must equal), with a taker
 * (one walk, as ingest's take_native), with a taker that declines every third offer (backpressure: order holds). */
enum { MODE_SCAN, MODE_TAKER, MODE_TAKER_WAITS, MODE_N };
static int g_mode;

typedef struct taker_ctx {
    seen *out;
    record_enc enc;
    unsigned offers;
} taker_ctx;

static int test_taker(void *arg, mpscan *s, const uint8_t *p, size_t avail, size_t *used)
{
    taker_ctx *t = arg;
    if (g_mode == MODE_TAKER_WAITS && t->offers++ % 3 == 2)
        return 0;
    record_source src = {.pid = 1, .comm = "t"};
    record_info info;
    int rc = record_prepare_raw(&t->enc, p, avail, &src, 1, &info);
    if (s && (rc < 0 || mpscan_walked(s, p, info.wire_len, info.nesting) != MPSCAN_OK))
        return 0;
    *used = s ? info.wire_len : avail;
    add(t->out, p, *used);
    t->out->taken++;
    t->out->walked += s != NULL;
    return 1;
}

/* Feeds data in pieces: cuts[] are the piece ends (the last must be n). */
static seen run(const uint8_t *data, size_t n, const size_t *cuts, size_t ncuts, uint64_t max_record,
                uint64_t max_array)
{
    seen out = {0};
    decoder d;
    taker_ctx tc = {&out, {0}, 0};
    CHECK_INT(decoder_init(&d, 16, max_record, max_array), 0);
    CHECK_INT(record_enc_init(&tc.enc), 0);
    if (g_mode != MODE_SCAN)
        decoder_set_taker(&d, test_taker, &tc);
    size_t off = 0;
    for (size_t i = 0; i < ncuts && !d.fail; i++) {
        size_t piece = cuts[i] - off, room;
        uint8_t *w = decoder_space(&d, piece ? piece : 1, &room);
        CHECK(w != NULL && room >= piece);
        memcpy(w, data + off, piece);
        decoder_wrote(&d, piece);
        off = cuts[i];
        take(&d, &out);
    }
    out.fail = d.fail;
    out.mid = decoder_mid_object(&d);
    decoder_free(&d);
    record_enc_free(&tc.enc);
    return out;
}

static void same(const seen *a, const seen *b, const char *what, size_t at)
{
    int ok = a->fail == b->fail && a->mid == b->mid && a->objects == b->objects && a->len == b->len &&
             (a->len == 0 || memcmp(a->bytes, b->bytes, a->len) == 0);
    if (!ok)
        fprintf(stderr, "%s differs (cut at %zu): objects %zu/%zu fail %d/%d\n", what, at, a->objects, b->objects,
                a->fail, b->fail);
    CHECK(ok);
}

static void every_split_mode(const uint8_t *data, size_t n, uint64_t max_record, uint64_t max_array,
                             const seen *whole_p)
{
    seen whole = *whole_p;
    for (size_t k = 0; k <= n; k++) {
        size_t cuts[2] = {k, n};
        seen s = run(data, n, cuts, 2, max_record, max_array);
        same(&s, &whole, "split", k);
        free(s.bytes);
    }
    size_t *bytes = calloc(n + 1, sizeof *bytes);
    for (size_t i = 0; i < n; i++)
        bytes[i] = i + 1;
    seen s = run(data, n, bytes, n, max_record, max_array);
    same(&s, &whole, "byte at a time", 0);
    free(s.bytes);
    uint32_t r = 12345;
    size_t nc = 0;
    for (size_t off = 0; off < n; nc++) {
        r = r * 1103515245u + 12345u;
        off += 1 + (r >> 8) % 700;
        bytes[nc] = off < n ? off : n;
    }
    s = run(data, n, bytes, nc, max_record, max_array);
    same(&s, &whole, "random pieces", 0);
    free(s.bytes);
    free(bytes);
}

/* Every split point, one byte at a time, and random pieces, each without and with a taker: all as the whole stream
 * without one. */
static void every_split(const uint8_t *data, size_t n, uint64_t max_record, uint64_t max_array, seen *whole_out)
{
    size_t all[1] = {n};
    g_mode = MODE_SCAN;
    seen whole = run(data, n, all, 1, max_record, max_array);
    for (g_mode = MODE_SCAN; g_mode < MODE_N; g_mode++)
        every_split_mode(data, n, max_record, max_array, &whole);
    g_mode = MODE_TAKER;
    seen t = run(data, n, all, 1, max_record, max_array);
    whole.taken = t.taken;
    whole.walked = t.walked;
    free(t.bytes);
    *whole_out = whole;
}
static void test_splits(void)
{
    stream s;
    stream_init(&s);
    for (int i = 0; i < 6; i++)
        put_record(&s, i, i == 3 ? 3000 : 20 + (size_t)i); /* one record bigger than the first buffer */
    msgpack_pack_array(&s.pk, 2);                       /* a Forward-shaped array: handed out whole too */
    put_str(&s, "tag");
    msgpack_pack_int(&s.pk, 7);
    put_record(&s, 9, 5);
    seen whole;
    every_split((const uint8_t *)s.sb.data, s.sb.size, 1 << 20, 1 << 20, &whole);
    CHECK_INT(whole.objects, 8);
    CHECK_INT(whole.len, s.sb.size);
    CHECK(memcmp(whole.bytes, s.sb.data, s.sb.size) == 0);
    CHECK_INT(whole.fail, MPSCAN_OK);
    CHECK_INT(whole.taken, 6); /* with a taker, read whole: the 6 native records taken, settled by their walk */
    CHECK_INT(whole.walked, 6);
    free(whole.bytes);
    /* cut short: the last record is in progress */
    seen cut;
    every_split((const uint8_t *)s.sb.data, s.sb.size - 3, 1 << 20, 1 << 20, &cut);
    CHECK_INT(cut.objects, 7);
    CHECK(cut.mid);
    free(cut.bytes);
    msgpack_sbuffer_destroy(&s.sb);
}

static void test_refusals(void)
{
    stream s;
    stream_init(&s);
    put_record(&s, 0, 10);
    put_record(&s, 1, 10);
    size_t good = s.sb.size;
    msgpack_pack_map(&s.pk, 1);
    put_str(&s, "message");
    msgpack_sbuffer_write(&s.sb, "\xc1", 1); /* never used in msgpack */
    put_record(&s, 2, 10);
    seen m;
    every_split((const uint8_t *)s.sb.data, s.sb.size, 1 << 20, 1 << 20, &m);
    CHECK_INT(m.fail, MPSCAN_MALFORMED);
    CHECK_INT(m.objects, 2);
    CHECK_INT(m.len, good);
    CHECK_INT(m.walked, 2);
    free(m.bytes);
    msgpack_sbuffer_destroy(&s.sb);

    stream_init(&s);
    put_record(&s, 0, 10);
    good = s.sb.size;
    put_record(&s, 1, 500); /* over a 200-byte max_record */
    put_record(&s, 2, 10);
    seen o;
    every_split((const uint8_t *)s.sb.data, s.sb.size, 200, 200, &o);
    CHECK_INT(o.fail, MPSCAN_OVERSIZED);
    CHECK_INT(o.objects, 1);
    CHECK_INT(o.len, good);
    CHECK_INT(o.walked, 1);
    free(o.bytes);
    msgpack_sbuffer_destroy(&s.sb);
}

/* `levels` arrays nested under the record map: as a value, under a reserved key (skipped, not converted), and as a
 * key inside a map value (a JSON key named, not converted). */
static void put_nested(stream *s, int where, int levels)
{
    msgpack_pack_map(&s->pk, 2);
    put_str(s, "message");
    put_str(s, "m");
    if (where == 2) {
        put_str(s, "v");
        msgpack_pack_map(&s->pk, 1);
        levels--;
    } else {
        put_str(s, where == 1 ? "_r" : "v");
    }
    for (int i = 0; i < levels; i++)
        msgpack_pack_array(&s->pk, i + 1 < levels ? 1 : 0);
    if (where == 2)
        msgpack_pack_int(&s->pk, 1);
}

/* mpscan's nesting limit (32 containers, the record map included) holds on the one-walk path: 32 pass, 33 are
 * malformed, wherever the deepest container is. */
static void test_nesting(void)
{
    for (int where = 0; where < 3; where++) {
        for (int depth = 31; depth <= 32; depth++) { /* containers under the record map: 32 or 33 in all */
            stream s;
            stream_init(&s);
            put_record(&s, 0, 10);
            size_t good = s.sb.size;
            put_nested(&s, where, depth);
            put_record(&s, 1, 10);
            seen r;
            every_split((const uint8_t *)s.sb.data, s.sb.size, 1 << 20, 1 << 20, &r);
            CHECK_INT(r.fail, depth == 31 ? MPSCAN_OK : MPSCAN_MALFORMED);
            CHECK_INT(r.objects, depth == 31 ? 3 : 1);
            CHECK_INT(r.len, depth == 31 ? s.sb.size : good);
            CHECK_INT(r.walked, depth == 31 ? 3 : 1);
            free(r.bytes);
            msgpack_sbuffer_destroy(&s.sb);
        }
    }
}

static void test_pinned_growth_and_shrink(void)
{
    stream s;
    stream_init(&s);
    put_record(&s, 0, 40);
    put_record(&s, 1, 4000);
    decoder d;
    CHECK_INT(decoder_init(&d, 64, 1 << 20, 1 << 20), 0);
    size_t first = 0;
    { /* the first record, then pin while its bytes are "in use" */
        msgpack_unpacked u;
        msgpack_unpacked_init(&u);
        size_t off = 0;
        msgpack_unpack_next(&u, s.sb.data, s.sb.size, &off);
        first = off;
        msgpack_unpacked_destroy(&u);
    }
    size_t room;
    uint8_t *w = decoder_space(&d, first, &room);
    memcpy(w, s.sb.data, first);
    decoder_wrote(&d, first);
    const uint8_t *p;
    size_t n;
    CHECK_INT(decoder_next(&d, &p, &n), 1);
    CHECK_INT(n, first);
    decoder_pin(&d, 1);
    size_t rest = s.sb.size - first;
    size_t predicted = decoder_grown_cap(&d, rest);
    w = decoder_space(&d, rest, &room); /* must grow: the old buffer stays (p still points into it) */
    CHECK(w != NULL);
    CHECK_INT(decoder_cap(&d), predicted);
    memcpy(w, s.sb.data + first, rest);
    decoder_wrote(&d, rest);
    CHECK(memcmp(p, s.sb.data, first) == 0); /* ASan: no use after free */
    CHECK(decoder_cap(&d) > d.cap);          /* the replaced buffer is still counted */
    decoder_pin(&d, 0);
    CHECK_INT(decoder_cap(&d), d.cap);
    CHECK_INT(decoder_next(&d, &p, &n), 1);
    CHECK_INT(n, rest);
    CHECK(memcmp(p, s.sb.data + first, rest) == 0);
    CHECK_INT(decoder_next(&d, &p, &n), 0);
    CHECK_INT(decoder_shrink(&d, 128), 1); /* empty and larger than 128: back to its first size */
    CHECK_INT(decoder_cap(&d), 64);
    CHECK_INT(decoder_shrink(&d, 128), 0);
    decoder_free(&d);
    msgpack_sbuffer_destroy(&s.sb);
}

int main(void)
{
    test_splits();
    test_refusals();
    test_nesting();
    test_pinned_growth_and_shrink();
    return check_done("test_decoder");
}
