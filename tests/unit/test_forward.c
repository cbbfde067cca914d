/* test_forward.c — Fluent Forward messages to native record maps: the three time forms (and bad ones), each mode,
 * the message-key choice and the keys dropped, bad entries skipped while the rest go on, packed bytes cut short or
 * not msgpack, gzip (several members, corrupt, a bomb past max_inflated), the option map (chunk, compressed) and
 * the ack's bytes, the message-key list parser; one event over max_record refused alone (-EMSGSIZE) in every mode
 * while the others go on; Fluent Bit's v2 entries `[[time, metadata], record]` in every mode (metadata kept under
 * forward_metadata, group markers skipped) and Message mode's option `metadata`; bad times kept, not dropped. */
#include "check.h"
#include "ingest/forward.h"

#include <errno.h>
#include <msgpack.h>
#include <stdlib.h>
#include <zlib.h>

static msgpack_packer pk;
static msgpack_sbuffer sb;

static void start_pack(void)
{
    msgpack_sbuffer_clear(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
}

static void str(const char *s) { msgpack_pack_str_with_body(&pk, s, strlen(s)); }

static void event_time(uint32_t s, uint32_t ns)
{
    unsigned char b[8] = {s >> 24, s >> 16, s >> 8, s, ns >> 24, ns >> 16, ns >> 8, ns};
    msgpack_pack_ext_with_body(&pk, b, 8, 0);
}

/* A [time, {"message": msg, "i": i}] entry with integer time 1000 + i. */
static void entry(int i, const char *msg)
{
    msgpack_pack_array(&pk, 2);
    msgpack_pack_int64(&pk, 1000 + i);
    msgpack_pack_map(&pk, 2);
    str("message");
    str(msg);
    str("i");
    msgpack_pack_int(&pk, i);
}

/* The value of key k in a map object, or NULL. */
static const msgpack_object *get(const msgpack_object *m, const char *k)
{
    for (uint32_t i = 0; i < m->via.map.size; i++) {
        const msgpack_object *key = &m->via.map.ptr[i].key;
        if (key->type == MSGPACK_OBJECT_STR && key->via.str.size == strlen(k) && !memcmp(key->via.str.ptr, k, strlen(k)))
            return &m->via.map.ptr[i].val;
    }
    return NULL;
}

static int is_str(const msgpack_object *o, const char *s)
{
    return o && o->type == MSGPACK_OBJECT_STR && o->via.str.size == strlen(s) && !memcmp(o->via.str.ptr, s, strlen(s));
}

static forward_opts opts;
static msgpack_unpacked up;
static char *msg_copy; /* the message begun on: its own copy (sb is reused while its events are read) */

static record_enc enc_map, enc_parts; /* the same event encoded from its map and as ingest takes it */
static const record_source src = {.pid = 7, .uid = 1000, .gid = 1000, .comm = "fluent-bit", .hostname = "h"};
static unsigned parts_compared, parts_redone;

/* An event's entry, encoded with the log_id generator in a fixed state (so that both ways make the same id). */
static void seed(record_enc *e)
{
    e->rng[0] = 0x9e3779b97f4a7c15ULL;
    e->rng[1] = 0xbf58476d1ce4e5b9ULL;
}

/* The message msg[0..size), taken as ingest takes it (a lazy iterator: an event in parts, record_prepare_parts,
 * forward_settle; or its map when it is not plain) and as its map (record_encode_raw): the same verdicts in the same
 * order, every entry the same bytes with the same notes. Every message a test begins goes through it (begin). */
static void both_ways(const forward_opts *o, const char *msg, size_t size)
{
    forward_iter a, b;
    forward_iter_init(&a, o);
    forward_iter_init(&b, o);
    b.lazy = 1;
    int ba = forward_begin(&a, msg, size), bb = forward_begin(&b, msg, size);
    CHECK_INT(bb, ba);
    for (int calls = 0; ba == 0 && calls < 100000; calls++) {
        const uint8_t *ma, *mb;
        size_t la, lb;
        record_info ia, ib;
        int ea = 0, eb = 0, ra = forward_next(&a, &ma, &la), rb;
        if (ra == 1) {
            seed(&enc_map);
            ea = record_encode_raw(&enc_map, ma, la, &src, 0, &ia);
        }
        for (;;) {
            rb = forward_next(&b, &mb, &lb);
            seed(&enc_parts);
            if (rb == 1 && !mb) {
                eb = record_prepare_parts(&enc_parts, &b.parts, &src, &ib);
                if (forward_settle(&b, eb, &ib) < 0) {
                    parts_redone++;
                    continue; /* the same entry again, as its map */
                }
                parts_compared++;
                if (eb == 0) {
                    uint8_t *out = malloc(enc_parts.out_len + 1);
                    CHECK_INT(record_write(&enc_parts, out), enc_parts.out_len);
                    CHECK(ea == 0 && enc_parts.out_len == enc_map.out_len &&
                          !memcmp(out, enc_map.out, enc_map.out_len));
                    free(out);
                }
            } else if (rb == 1) {
                eb = record_encode_raw(&enc_parts, mb, lb, &src, 0, &ib);
                CHECK(eb != 0 || (ea == 0 && enc_parts.out_len == enc_map.out_len &&
                                  !memcmp(enc_parts.out, enc_map.out, enc_map.out_len)));
            }
            break;
        }
        CHECK_INT(rb, ra);
        if (ra == 0)
            break;
        if (ra != 1)
            continue;
        CHECK_INT(eb, ea);
        if (ea == 0 && eb == 0) {
            CHECK_INT(ib.reserved_keys, ia.reserved_keys);
            CHECK_INT(ib.level_unknown, ia.level_unknown);
            CHECK_INT(ib.timestamp_unparsed, ia.timestamp_unparsed);
            CHECK_INT(ib.utf8_repaired, ia.utf8_repaired);
            CHECK(ib.service_len == ia.service_len && !memcmp(ib.service, ia.service, ia.service_len));
        }
    }
    CHECK(!forward_active(&b));
    forward_iter_free(&a);
    forward_iter_free(&b);
}

/* Begins on what was packed (after taking it both ways: both_ways). */
static int begin(forward_iter *it)
{
    free(msg_copy);
    msg_copy = malloc(sb.size ? sb.size : 1);
    memcpy(msg_copy, sb.data, sb.size);
    both_ways(it->opts, msg_copy, sb.size);
    return forward_begin(it, msg_copy, sb.size);
}

/* forward_next, with the event's map bytes unpacked into *ev (valid until the next call). */
static int next(forward_iter *it, msgpack_object *ev)
{
    const uint8_t *map;
    size_t len, off = 0;
    int rc = forward_next(it, &map, &len);
    if (rc == 1) {
        CHECK(map != NULL); /* not lazy: the map always */
        CHECK(msgpack_unpack_next(&up, (const char *)map, len, &off) == MSGPACK_UNPACK_SUCCESS && off == len);
        *ev = up.data;
    }
    return rc;
}

/* forward_time_ns of a time given as an object (packed first). */
static int time_of(const msgpack_object *t, int64_t *ns)
{
    msgpack_sbuffer b;
    msgpack_packer tp;
    msgpack_sbuffer_init(&b);
    msgpack_packer_init(&tp, &b, msgpack_sbuffer_write);
    msgpack_pack_object(&tp, *t);
    int rc = forward_time_ns(b.data, b.size, ns);
    msgpack_sbuffer_destroy(&b);
    return rc;
}

static void test_times(void)
{
    int64_t ns;
    msgpack_object t;
    t.type = MSGPACK_OBJECT_POSITIVE_INTEGER, t.via.u64 = 1725013845;
    CHECK_INT(time_of(&t, &ns), 0);
    CHECK_INT(ns, 1725013845000000000LL);
    t.type = MSGPACK_OBJECT_NEGATIVE_INTEGER, t.via.i64 = -2; /* before 1970: not a time */
    CHECK_INT(time_of(&t, &ns), -EINVAL);
    t.type = MSGPACK_OBJECT_FLOAT64, t.via.f64 = 1.5;
    CHECK_INT(time_of(&t, &ns), 0);
    CHECK_INT(ns, 1500000000LL);
    t.via.f64 = -0.5;
    CHECK_INT(time_of(&t, &ns), -EINVAL);
    t.via.f64 = 1e300;
    CHECK_INT(time_of(&t, &ns), -EINVAL);
    t.type = MSGPACK_OBJECT_POSITIVE_INTEGER, t.via.u64 = UINT64_MAX;
    CHECK_INT(time_of(&t, &ns), -EINVAL);
    unsigned char b[8] = {0x66, 0xd1, 0x9f, 0x55, 0x07, 0x5b, 0xcd, 0x15}; /* 1725013845 s, 123456789 ns */
    t.type = MSGPACK_OBJECT_EXT, t.via.ext.type = 0, t.via.ext.size = 8, t.via.ext.ptr = (const char *)b;
    CHECK_INT(time_of(&t, &ns), 0);
    CHECK_INT(ns, 1725013845123456789LL);
    t.via.ext.type = 1;
    CHECK_INT(time_of(&t, &ns), -EINVAL);
    t.via.ext.type = 0, t.via.ext.size = 4;
    CHECK_INT(time_of(&t, &ns), -EINVAL);
    unsigned char big_ns[8] = {0, 0, 0, 1, 0x3b, 0x9a, 0xca, 0x00}; /* 1e9 ns: not a valid nanosecond field */
    t.via.ext.size = 8, t.via.ext.ptr = (const char *)big_ns;
    CHECK_INT(time_of(&t, &ns), -EINVAL);
    t.type = MSGPACK_OBJECT_STR, t.via.str.ptr = "1", t.via.str.size = 1;
    CHECK_INT(time_of(&t, &ns), -EINVAL);
}

static void test_message_mode_mapping(void)
{
    forward_iter it;
    forward_iter_init(&it, &opts);
    start_pack();
    msgpack_pack_array(&pk, 4);
    str("app.web");
    event_time(100, 5);
    msgpack_pack_map(&pk, 6);
    str("message"), msgpack_pack_int(&pk, 1); /* not a string: record_message, `log` is the message */
    str("log"), str("the line");
    str("msg"), str("stays metadata");
    str("service_name"), str("own");
    str("timestamp"), msgpack_pack_int(&pk, 7);
    str("user"), str("u1");
    msgpack_pack_map(&pk, 2);
    str("chunk"), str("abc");
    str("size"), msgpack_pack_int(&pk, 1);
    CHECK_INT(begin(&it), 0);
    CHECK(forward_active(&it));
    msgpack_object ev;
    CHECK_INT(next(&it, &ev), 1);
    CHECK(ev.type == MSGPACK_OBJECT_MAP);
    CHECK_INT(ev.via.map.size, 8);
    CHECK(is_str(get(&ev, "service_name"), "app.web"));
    CHECK(is_str(get(&ev, "message"), "the line"));
    CHECK(is_str(get(&ev, "msg"), "stays metadata"));
    CHECK(is_str(get(&ev, "user"), "u1"));
    CHECK(get(&ev, "log") == NULL);
    CHECK(get(&ev, "record_message") && get(&ev, "record_message")->via.u64 == 1);
    CHECK(is_str(get(&ev, "record_service_name"), "own"));
    CHECK(get(&ev, "record_timestamp") && get(&ev, "record_timestamp")->via.u64 == 7);
    const msgpack_object *ts = get(&ev, "timestamp");
    CHECK(ts && ts->type == MSGPACK_OBJECT_POSITIVE_INTEGER && ts->via.u64 == 100000000005ULL);
    CHECK_INT(next(&it, &ev), 0);
    CHECK(!forward_active(&it));
    CHECK(is_str(it.chunk, "abc"));
    char ack[64];
    size_t n = forward_pack_ack(it.chunk, ack, sizeof ack);
    CHECK_INT(n, 9);
    CHECK(n == 9 && memcmp(ack, "\x81\xa3" "ack" "\xa3" "abc", 9) == 0);
    CHECK_INT(forward_pack_ack(it.chunk, ack, 4), 0);
    /* no message key that is a string: "" and every key kept */
    start_pack();
    msgpack_pack_array(&pk, 3);
    str("t");
    msgpack_pack_int(&pk, 1);
    msgpack_pack_map(&pk, 1);
    str("cpu"), msgpack_pack_double(&pk, 0.5);
    CHECK_INT(begin(&it), 0);
    CHECK_INT(next(&it, &ev), 1);
    CHECK(is_str(get(&ev, "message"), ""));
    CHECK(get(&ev, "cpu") != NULL);
    CHECK(it.chunk == NULL);
    forward_iter_free(&it);
}

static void test_forward_mode_bad_entries(void)
{
    forward_iter it;
    forward_iter_init(&it, &opts);
    start_pack();
    msgpack_pack_array(&pk, 2);
    str("t");
    msgpack_pack_array(&pk, 4);
    entry(0, "e0");
    str("not an entry");
    msgpack_pack_array(&pk, 2), msgpack_pack_int(&pk, 1), str("record not a map");
    entry(3, "e3");
    CHECK_INT(begin(&it), 0);
    msgpack_object ev;
    CHECK_INT(next(&it, &ev), 1);
    CHECK(is_str(get(&ev, "message"), "e0"));
    CHECK_INT(next(&it, &ev), -EINVAL);
    CHECK_INT(next(&it, &ev), -EINVAL);
    CHECK_INT(next(&it, &ev), 1);
    CHECK(is_str(get(&ev, "message"), "e3"));
    CHECK(get(&ev, "timestamp")->via.u64 == 1003000000000ULL);
    CHECK_INT(next(&it, &ev), 0);
    forward_iter_free(&it);
}

/* Packs [tag, bin(data), {compressed: gzip}?]. */
static void pack_packed(const char *data, size_t len, int gzip)
{
    start_pack();
    msgpack_pack_array(&pk, gzip ? 3 : 2);
    str("t");
    msgpack_pack_bin_with_body(&pk, data, len);
    if (gzip) {
        msgpack_pack_map(&pk, 1);
        str("compressed"), str("gzip");
    }
}

static size_t gzip_into(const char *in, size_t len, char *out, size_t cap)
{
    z_stream z;
    memset(&z, 0, sizeof z);
    deflateInit2(&z, 9, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY);
    z.next_in = (Bytef *)in, z.avail_in = (uInt)len;
    z.next_out = (Bytef *)out, z.avail_out = (uInt)cap;
    CHECK_INT(deflate(&z, Z_FINISH), Z_STREAM_END);
    size_t n = cap - z.avail_out;
    deflateEnd(&z);
    return n;
}

static int count_events(forward_iter *it, int *bad)
{
    msgpack_object ev;
    int n = 0, rc;
    *bad = 0;
    while ((rc = next(it, &ev)) != 0) {
        if (rc == 1)
            n++;
        else
            (*bad)++;
    }
    return n;
}

static void test_packed_and_gzip(void)
{
    forward_iter it;
    forward_iter_init(&it, &opts);
    msgpack_sbuffer entries;
    msgpack_sbuffer_init(&entries);
    msgpack_packer_init(&pk, &entries, msgpack_sbuffer_write);
    for (int i = 0; i < 10; i++)
        entry(i, "packed");
    char *e = malloc(entries.size + 16);
    size_t elen = entries.size;
    memcpy(e, entries.data, elen);
    int bad;
    pack_packed(e, elen, 0);
    CHECK_INT(begin(&it), 0);
    CHECK_INT(count_events(&it, &bad), 10);
    CHECK_INT(bad, 0);
    pack_packed(e, elen - 3, 0); /* the last entry cut short */
    CHECK_INT(begin(&it), 0);
    CHECK_INT(count_events(&it, &bad), 9);
    CHECK_INT(bad, 1);
    memcpy(e + elen, "\xc1\xc1\xc1", 3); /* then bytes that are not msgpack */
    pack_packed(e, elen + 3, 0);
    CHECK_INT(begin(&it), 0);
    CHECK_INT(count_events(&it, &bad), 10);
    CHECK_INT(bad, 1);
    /* two gzip members concatenated */
    size_t cap = 2 * elen + 1024;
    char *gz = malloc(cap);
    size_t g1 = gzip_into(e, elen, gz, cap);
    size_t g2 = gzip_into(e, elen, gz + g1, cap - g1);
    pack_packed(gz, g1 + g2, 1);
    CHECK_INT(begin(&it), 0);
    CHECK_INT(it.mode, FORWARD_COMPRESSED);
    CHECK_INT(count_events(&it, &bad), 20);
    CHECK_INT(bad, 0);
    pack_packed(gz, g1 - 5, 1); /* cut short */
    CHECK_INT(begin(&it), -EBADMSG);
    CHECK(!forward_active(&it));
    gz[12] ^= 0xff; /* corrupt deflate data */
    pack_packed(gz, g1, 1);
    CHECK_INT(begin(&it), -EBADMSG);
    /* a bomb: 64 KiB of zeros under max_inflated = 8 KiB */
    forward_opts small = opts;
    small.max_inflated = 8192;
    forward_iter it2;
    forward_iter_init(&it2, &small);
    char *zeros = calloc(1, 65536);
    size_t gb = gzip_into(zeros, 65536, gz, cap);
    pack_packed(gz, gb, 1);
    CHECK_INT(begin(&it2), -EMSGSIZE);
    gb = gzip_into(zeros, 8192, gz, cap); /* exactly the limit inflates (zeros are fixints: 8192 bad entries) */
    pack_packed(gz, gb, 1);
    CHECK_INT(begin(&it2), 0);
    CHECK_INT(count_events(&it2, &bad), 0);
    CHECK_INT(bad, 8192);
    forward_iter_free(&it2);
    free(zeros);
    free(gz);
    free(e);
    msgpack_sbuffer_destroy(&entries);
    forward_iter_free(&it);
}

static void test_not_forward(void)
{
    forward_iter it;
    forward_iter_init(&it, &opts);
    start_pack(); /* tag not a string */
    msgpack_pack_array(&pk, 3), msgpack_pack_int(&pk, 1), msgpack_pack_int(&pk, 1), msgpack_pack_map(&pk, 0);
    CHECK_INT(begin(&it), -EINVAL);
    start_pack(); /* too short */
    msgpack_pack_array(&pk, 1), str("t");
    CHECK_INT(begin(&it), -EINVAL);
    start_pack(); /* Message mode without a record */
    msgpack_pack_array(&pk, 2), str("t"), msgpack_pack_int(&pk, 1);
    CHECK_INT(begin(&it), -EINVAL);
    start_pack(); /* option not a map */
    msgpack_pack_array(&pk, 3), str("t"), msgpack_pack_array(&pk, 0), str("opt");
    CHECK_INT(begin(&it), -EINVAL);
    start_pack(); /* a compression we cannot read */
    msgpack_pack_array(&pk, 3), str("t"), msgpack_pack_bin_with_body(&pk, "", 0), msgpack_pack_map(&pk, 1);
    str("compressed"), str("zstd");
    CHECK_INT(begin(&it), -EINVAL);
    start_pack(); /* gzip on Forward mode */
    msgpack_pack_array(&pk, 3), str("t"), msgpack_pack_array(&pk, 0), msgpack_pack_map(&pk, 1);
    str("compressed"), str("gzip");
    CHECK_INT(begin(&it), -EINVAL);
    CHECK(it.chunk == NULL && !forward_active(&it));
    start_pack(); /* a map is not an array */
    msgpack_pack_map(&pk, 0);
    CHECK_INT(begin(&it), -EINVAL);
    forward_iter_free(&it);
}

static void test_parse_keys(void)
{
    forward_opts o;
    forward_opts_default(&o, 1024);
    CHECK_INT(o.n_message_keys, 3);
    CHECK_STR(o.message_keys[1], "log");
    CHECK_INT(o.max_inflated, 8192);
    char a[] = "log, message ,MESSAGE";
    CHECK_INT(forward_opts_parse_keys(&o, a), 0);
    CHECK_INT(o.n_message_keys, 3);
    CHECK_STR(o.message_keys[0], "log");
    CHECK_STR(o.message_keys[1], "message");
    CHECK_STR(o.message_keys[2], "MESSAGE");
    char b[] = "";
    CHECK_INT(forward_opts_parse_keys(&o, b), -EINVAL);
    char c[] = "a,,b";
    CHECK_INT(forward_opts_parse_keys(&o, c), -EINVAL);
    char c2[] = "a, ,b";
    CHECK_INT(forward_opts_parse_keys(&o, c2), -EINVAL);
    char c3[] = "a,";
    CHECK_INT(forward_opts_parse_keys(&o, c3), -EINVAL);
    char d[] = "a,b,c,d,e,f,g,h,i";
    CHECK_INT(forward_opts_parse_keys(&o, d), -EINVAL);
}

/* Events over max_record: refused alone (-EMSGSIZE), the next ones still come, in every mode. */
static void test_oversized_event(void)
{
    forward_opts small;
    forward_opts_default(&small, 300);
    forward_iter it;
    forward_iter_init(&it, &small);
    char big[400], fits[200];
    memset(big, 'x', sizeof big - 1), big[sizeof big - 1] = 0;
    memset(fits, 'y', sizeof fits - 1), fits[sizeof fits - 1] = 0;
    msgpack_object ev;
    /* Forward mode: small, big (418 bytes), 217 bytes (passes), small */
    start_pack();
    msgpack_pack_array(&pk, 2);
    str("t");
    msgpack_pack_array(&pk, 4);
    entry(0, "a"), entry(1, big), entry(2, fits), entry(3, "b");
    CHECK_INT(begin(&it), 0);
    CHECK_INT(next(&it, &ev), 1);
    CHECK_INT(next(&it, &ev), -EMSGSIZE);
    CHECK_INT(next(&it, &ev), 1);
    CHECK(is_str(get(&ev, "message"), fits));
    CHECK_INT(next(&it, &ev), 1);
    CHECK(is_str(get(&ev, "message"), "b"));
    CHECK_INT(next(&it, &ev), 0);
    /* Message mode */
    start_pack();
    msgpack_pack_array(&pk, 3);
    str("t");
    msgpack_pack_int(&pk, 1);
    msgpack_pack_map(&pk, 1);
    str("message"), str(big);
    CHECK_INT(begin(&it), 0);
    CHECK_INT(next(&it, &ev), -EMSGSIZE);
    CHECK_INT(next(&it, &ev), 0);
    /* PackedForward and CompressedPackedForward: the big entry is skipped, the ones after it come */
    msgpack_sbuffer entries;
    msgpack_sbuffer_init(&entries);
    msgpack_packer_init(&pk, &entries, msgpack_sbuffer_write);
    entry(0, "a"), entry(1, big), entry(2, fits), entry(3, big), entry(4, "b");
    msgpack_sbuffer copy = entries;
    for (int gz = 0; gz < 2; gz++) {
        char zbuf[4096];
        size_t zlen = gz ? gzip_into(copy.data, copy.size, zbuf, sizeof zbuf) : 0;
        pack_packed(gz ? zbuf : copy.data, gz ? zlen : copy.size, gz);
        CHECK_INT(begin(&it), 0);
        CHECK_INT(it.mode, gz ? FORWARD_COMPRESSED : FORWARD_PACKED);
        CHECK_INT(next(&it, &ev), 1);
        CHECK_INT(next(&it, &ev), -EMSGSIZE);
        CHECK_INT(next(&it, &ev), 1);
        CHECK(is_str(get(&ev, "message"), fits));
        CHECK_INT(next(&it, &ev), -EMSGSIZE);
        CHECK_INT(next(&it, &ev), 1);
        CHECK(is_str(get(&ev, "message"), "b"));
        CHECK_INT(next(&it, &ev), 0);
    }
    /* a big packed entry cut short: the message ends there (-EINVAL), once */
    pack_packed(copy.data, copy.size - 430, 0); /* into the second big entry */
    CHECK_INT(begin(&it), 0);
    CHECK_INT(next(&it, &ev), 1);
    CHECK_INT(next(&it, &ev), -EMSGSIZE);
    CHECK_INT(next(&it, &ev), 1);
    CHECK_INT(next(&it, &ev), -EINVAL);
    CHECK_INT(next(&it, &ev), 0);
    msgpack_sbuffer_destroy(&entries);
    forward_iter_free(&it);
}


/* A v2 entry [[EventTime(1000 + i, 7), meta], {"message": msg}]; meta: NULL for {}, else {"k": meta}. */
static void entry_v2(int i, const char *msg, const char *meta)
{
    msgpack_pack_array(&pk, 2);
    msgpack_pack_array(&pk, 2);
    event_time(1000 + (uint32_t)i, 7);
    if (meta) {
        msgpack_pack_map(&pk, 1);
        str("k"), str(meta);
    } else {
        msgpack_pack_map(&pk, 0);
    }
    msgpack_pack_map(&pk, 1);
    str("message"), str(msg);
}

/* Fluent Bit's group start / end markers: [[EventTime(0xffffffff or 0xfffffffe, 0), {...}], {...}]. */
static void group_marker(uint32_t s)
{
    msgpack_pack_array(&pk, 2);
    msgpack_pack_array(&pk, 2);
    event_time(s, 0);
    msgpack_pack_map(&pk, 1);
    str("schema"), str("otlp");
    msgpack_pack_map(&pk, 1);
    str("resource"), str("r");
}

/* Checks the next event is v2 entry i with message msg, and metadata {"k": meta} (or none). */
static void check_v2(forward_iter *it, int i, const char *msg, const char *meta)
{
    msgpack_object ev;
    CHECK_INT(next(it, &ev), 1);
    CHECK(is_str(get(&ev, "message"), msg));
    const msgpack_object *ts = get(&ev, "timestamp");
    CHECK(ts && ts->type == MSGPACK_OBJECT_POSITIVE_INTEGER && ts->via.u64 == (1000ULL + (uint64_t)i) * 1000000000 + 7);
    const msgpack_object *m = get(&ev, "forward_metadata");
    if (!meta) {
        CHECK(m == NULL);
        CHECK_INT(ev.via.map.size, 3);
        return;
    }
    CHECK(m && m->type == MSGPACK_OBJECT_MAP && m->via.map.size == 1);
    CHECK(m && is_str(get(m, "k"), meta));
}

static void test_v2_entries(void)
{
    forward_iter it;
    forward_iter_init(&it, &opts);
    /* Forward mode, as Fluent Bit sends it: v1 and v2 entries, a group around them, a bad v2 head */
    start_pack();
    msgpack_pack_array(&pk, 3);
    str("fb");
    msgpack_pack_array(&pk, 7);
    group_marker(0xffffffff);
    entry_v2(0, "e0", NULL);
    entry_v2(1, "e1", "v1");
    msgpack_pack_array(&pk, 2), msgpack_pack_array(&pk, 2), msgpack_pack_int(&pk, 5), str("meta not a map"),
        msgpack_pack_map(&pk, 0);
    msgpack_pack_array(&pk, 2), msgpack_pack_array(&pk, 3), msgpack_pack_int(&pk, 5), msgpack_pack_map(&pk, 0),
        msgpack_pack_nil(&pk), msgpack_pack_map(&pk, 0);
    entry(3, "e3");
    group_marker(0xfffffffe);
    msgpack_pack_map(&pk, 2);
    str("size"), msgpack_pack_int(&pk, 7);
    str("fluent_signal"), msgpack_pack_int(&pk, 0);
    CHECK_INT(begin(&it), 0);
    check_v2(&it, 0, "e0", NULL);
    check_v2(&it, 1, "e1", "v1");
    msgpack_object ev;
    CHECK_INT(next(&it, &ev), -EINVAL);
    CHECK_INT(next(&it, &ev), -EINVAL);
    CHECK_INT(next(&it, &ev), 1);
    CHECK(is_str(get(&ev, "message"), "e3"));
    CHECK_INT(next(&it, &ev), 0);

    /* PackedForward and CompressedPackedForward */
    msgpack_sbuffer entries;
    msgpack_sbuffer_init(&entries);
    start_pack();
    group_marker(0xffffffff);
    entry_v2(0, "p0", "m0");
    entry_v2(1, "p1", NULL);
    group_marker(0xfffffffe);
    msgpack_sbuffer_write(&entries, sb.data, sb.size);
    for (int gz = 0; gz < 2; gz++) {
        char z[4096];
        size_t zn = gz ? gzip_into(entries.data, entries.size, z, sizeof z) : 0;
        pack_packed(gz ? z : entries.data, gz ? zn : entries.size, gz);
        CHECK_INT(begin(&it), 0);
        CHECK_INT(it.mode, gz ? FORWARD_COMPRESSED : FORWARD_PACKED);
        check_v2(&it, 0, "p0", "m0");
        check_v2(&it, 1, "p1", NULL);
        CHECK_INT(next(&it, &ev), 0);
    }
    msgpack_sbuffer_destroy(&entries);

    /* a record's own forward_metadata: kept as record_forward_metadata when the event has metadata, else as is */
    start_pack();
    msgpack_pack_array(&pk, 2);
    str("t");
    msgpack_pack_array(&pk, 2);
    for (int i = 0; i < 2; i++) {
        msgpack_pack_array(&pk, 2);
        msgpack_pack_array(&pk, 2);
        msgpack_pack_int(&pk, 1);
        msgpack_pack_map(&pk, i);
        if (i)
            str("k"), str("sent");
        msgpack_pack_map(&pk, 2);
        str("message"), str("m");
        str("forward_metadata"), str("own");
    }
    CHECK_INT(begin(&it), 0);
    CHECK_INT(next(&it, &ev), 1);
    CHECK(is_str(get(&ev, "forward_metadata"), "own"));
    CHECK(get(&ev, "record_forward_metadata") == NULL);
    CHECK_INT(next(&it, &ev), 1);
    CHECK(is_str(get(&ev, "record_forward_metadata"), "own"));
    CHECK(is_str(get(get(&ev, "forward_metadata"), "k"), "sent"));
    CHECK_INT(next(&it, &ev), 0);
    forward_iter_free(&it);
}

/* Fluent Bit's Message mode (a dynamic tag): [tag, EventTime, record, {chunk, fluent_signal, metadata}]. */
static void test_message_mode_option_metadata(void)
{
    forward_iter it;
    forward_iter_init(&it, &opts);
    start_pack();
    msgpack_pack_array(&pk, 4);
    str("dyn.tag");
    event_time(1001, 7);
    msgpack_pack_map(&pk, 1);
    str("message"), str("m1");
    msgpack_pack_map(&pk, 3);
    str("chunk"), str("c1");
    str("fluent_signal"), msgpack_pack_int(&pk, 0);
    str("metadata"), msgpack_pack_map(&pk, 1), str("k"), str("mv");
    CHECK_INT(begin(&it), 0);
    check_v2(&it, 1, "m1", "mv");
    msgpack_object ev;
    CHECK_INT(next(&it, &ev), 0);
    CHECK(is_str(it.chunk, "c1"));
    forward_iter_free(&it);
}

/* A time that is a number but not a valid time keeps its event: `timestamp` is the time as sent (record_encode
 * keeps it as metadata), an integer past int64 ns as its decimal text; a time that is not a number is no event. */
static void test_bad_times_kept(void)
{
    forward_iter it;
    forward_iter_init(&it, &opts);
    start_pack();
    msgpack_pack_array(&pk, 2);
    str("t");
    msgpack_pack_array(&pk, 5);
    msgpack_pack_array(&pk, 2), msgpack_pack_int(&pk, -5), msgpack_pack_map(&pk, 1), str("message"), str("neg");
    msgpack_pack_array(&pk, 2), msgpack_pack_uint64(&pk, UINT64_MAX), msgpack_pack_map(&pk, 1), str("message"),
        str("big");
    msgpack_pack_array(&pk, 2), event_time(5, 1000000000), msgpack_pack_map(&pk, 1), str("message"), str("ns");
    msgpack_pack_array(&pk, 2), msgpack_pack_double(&pk, -1.5), msgpack_pack_map(&pk, 1), str("message"), str("f");
    msgpack_pack_array(&pk, 2), str("2024-01-01T00:00:00Z"), msgpack_pack_map(&pk, 1), str("message"), str("s");
    CHECK_INT(begin(&it), 0);
    msgpack_object ev;
    CHECK_INT(next(&it, &ev), 1);
    CHECK(get(&ev, "timestamp")->type == MSGPACK_OBJECT_NEGATIVE_INTEGER && get(&ev, "timestamp")->via.i64 == -5);
    CHECK_INT(next(&it, &ev), 1);
    CHECK(is_str(get(&ev, "timestamp"), "18446744073709551615"));
    CHECK_INT(next(&it, &ev), 1);
    CHECK(get(&ev, "timestamp")->type == MSGPACK_OBJECT_EXT);
    CHECK_INT(next(&it, &ev), 1);
    CHECK(get(&ev, "timestamp")->type == MSGPACK_OBJECT_FLOAT64);
    CHECK_INT(next(&it, &ev), -EINVAL);
    CHECK_INT(next(&it, &ev), 0);
    forward_iter_free(&it);
}

/* Records that take every turn of the classification, as Forward events: in parts they give the same entries as
 * their maps (same_entry, through next), and a lazy iterator hands them out in parts only. */
static void test_parts_same_entry(void)
{
    forward_iter it, lazy;
    forward_iter_init(&it, &opts);
    forward_iter_init(&lazy, &opts);
    lazy.lazy = 1;
    unsigned before = parts_compared, redone = parts_redone;
    start_pack();
    msgpack_pack_array(&pk, 2);
    str("t\xff\xfeg"); /* invalid UTF-8 in the tag: repaired in service_name */
    msgpack_pack_array(&pk, 9);
    /* 1: the usual Fluent Bit record: `log` the message, no key renamed */
    msgpack_pack_array(&pk, 2), event_time(1725013845, 1);
    msgpack_pack_map(&pk, 3);
    str("log"), str("line one");
    str("level"), str("warning");
    str("trace_id"), str("abc");
    /* 2: renamed keys, a message that is not a str (record_message) while `msg` is the message, a repeated level,
     * a reserved key, a non-str key, containers, a log_id, invalid UTF-8 in the message */
    msgpack_pack_array(&pk, 2), msgpack_pack_int64(&pk, 1700000000);
    msgpack_pack_map(&pk, 12);
    str("message"), msgpack_pack_int(&pk, 5);
    str("service_name"), str("own");
    str("level"), str("debug");
    str("msg"), str("bad \xc3 utf8");
    str("timestamp"), str("2024-01-01T00:00:00Z");
    str("_secret"), str("x");
    msgpack_pack_int(&pk, 42), str("int key");
    str("nested"), msgpack_pack_map(&pk, 1), str("a"), msgpack_pack_array(&pk, 2), msgpack_pack_nil(&pk),
        msgpack_pack_true(&pk);
    str("level"), str("LOUD");
    str("log_id"), str("0123456789abcdef0123456789abcdef");
    str("f"), msgpack_pack_double(&pk, 0.1);
    str("big"), msgpack_pack_uint64(&pk, UINT64_MAX);
    /* 3: no message at all; span_id, bin, ext */
    msgpack_pack_array(&pk, 2), msgpack_pack_double(&pk, 1.25);
    msgpack_pack_map(&pk, 3);
    str("span_id"), str("s1");
    str("b"), msgpack_pack_bin_with_body(&pk, "\x00\x01", 2);
    str("e"), msgpack_pack_ext_with_body(&pk, "xyz", 3, 7);
    /* 4: v2 with metadata (forward_metadata) and a record key of that name (record_forward_metadata) */
    msgpack_pack_array(&pk, 2);
    msgpack_pack_array(&pk, 2), event_time(1725013845, 2), msgpack_pack_map(&pk, 1), str("k"), str("v");
    msgpack_pack_map(&pk, 2);
    str("forward_metadata"), str("mine");
    str("message"), str("v2 line");
    /* 5: v2 with empty metadata; `message` a str (the message, skipped in place), `log` then metadata */
    msgpack_pack_array(&pk, 2);
    msgpack_pack_array(&pk, 2), event_time(1725013845, 3), msgpack_pack_map(&pk, 0);
    msgpack_pack_map(&pk, 2);
    str("log"), str("not the message");
    str("message"), str("the message");
    /* 6: an empty record */
    msgpack_pack_array(&pk, 2), msgpack_pack_int64(&pk, 1);
    msgpack_pack_map(&pk, 0);
    /* 7: a bad time (kept as sent in the map): not in parts */
    msgpack_pack_array(&pk, 2), msgpack_pack_int64(&pk, -5);
    msgpack_pack_map(&pk, 1), str("message"), str("old");
    /* 8: a message key twice: the first wins; an unknown level */
    msgpack_pack_array(&pk, 2), msgpack_pack_int64(&pk, 2);
    msgpack_pack_map(&pk, 3);
    str("msg"), str("first");
    str("msg"), str("second");
    str("level"), str("chatty");
    /* 9: a group marker (skipped), not an event */
    msgpack_pack_array(&pk, 2);
    msgpack_pack_array(&pk, 2), event_time(0xffffffffu, 0), msgpack_pack_map(&pk, 0);
    msgpack_pack_map(&pk, 0);
    CHECK_INT(begin(&it), 0); /* both_ways: every event the same both ways */
    msgpack_object ev;
    int events = 0;
    for (int rc; (rc = next(&it, &ev)) != 0; events++)
        CHECK_INT(rc, 1);
    CHECK_INT(events, 8);
    CHECK_INT(parts_compared - before, 5); /* 1, 3, 5, 6, 8 plain; 2 sent back (a container) then as its map */
    CHECK_INT(parts_redone - redone, 1);
    /* lazy, as ingest: in parts (map NULL) but the v2 event with metadata (4) and the bad time (7), which come as
     * their maps, and the event with a container (2), sent back by forward_settle and then handed out as its map */
    CHECK_INT(forward_begin(&lazy, msg_copy, sb.size), 0);
    const uint8_t *map;
    size_t len;
    int n = 0, maps = 0, sent_back = 0;
    for (int rc; (rc = forward_next(&lazy, &map, &len)) != 0;) {
        CHECK_INT(rc, 1);
        if (map) {
            maps++, n++;
            continue;
        }
        record_info info;
        int prc = record_prepare_parts(&enc_parts, &lazy.parts, &src, &info);
        if (forward_settle(&lazy, prc, &info) < 0)
            sent_back++;
        else
            n++;
    }
    CHECK_INT(n, 8);
    CHECK_INT(maps, 3);
    CHECK_INT(sent_back, 1);
    forward_iter_free(&it);
    forward_iter_free(&lazy);
    /* a message key after the first that names a field (level): a record whose message it may be is taken through
     * its map (-EAGAIN: were a better key to follow, level would be the level); the first key's str is the message
     * at once, level then a field */
    forward_opts lv;
    char keys[] = "msg,level";
    forward_opts_default(&lv, 1 << 20);
    CHECK_INT(forward_opts_parse_keys(&lv, keys), 0);
    start_pack();
    msgpack_pack_array(&pk, 2);
    str("t");
    msgpack_pack_array(&pk, 2);
    msgpack_pack_array(&pk, 2), msgpack_pack_int64(&pk, 3);
    msgpack_pack_map(&pk, 2), str("level"), str("error"), str("x"), str("y");
    msgpack_pack_array(&pk, 2), msgpack_pack_int64(&pk, 4);
    msgpack_pack_map(&pk, 2), str("msg"), str("b line"), str("level"), str("warn");
    unsigned redone2 = parts_redone, compared2 = parts_compared;
    free(msg_copy);
    msg_copy = malloc(sb.size);
    memcpy(msg_copy, sb.data, sb.size);
    both_ways(&lv, msg_copy, sb.size);
    CHECK_INT(parts_redone - redone2, 1);     /* the first: level may be its message (-EAGAIN), as its map */
    CHECK_INT(parts_compared - compared2, 1); /* the second: msg is, level a field */
}

/* A realloc that fails once when asked (fail_realloc), so that forward_next's -ENOMEM can be reached: glibc lets the
 * program define realloc, and forward.c's event buffer is its only allocation on that path. Not under a sanitizer,
 * whose allocator owns the heap (the test then says it skipped). */
#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define NO_ALLOC_FAILURES 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define NO_ALLOC_FAILURES 1
#endif
#ifndef NO_ALLOC_FAILURES
extern void *__libc_realloc(void *p, size_t n);
static int fail_realloc;
void *realloc(void *p, size_t n)
{
    if (fail_realloc) {
        fail_realloc = 0;
        return NULL;
    }
    return __libc_realloc(p, n);
}
#endif

/* An event that cannot be built (its buffer not allocated): -ENOMEM for it, and the next call goes on with the next
 * event (forward.h), the iterator intact; the lazy iterator (no buffer: the event in parts) is not affected. */
static void test_event_out_of_memory(void)
{
#ifdef NO_ALLOC_FAILURES
    printf("test_forward: out-of-memory case skipped under a sanitizer\n");
#else
    forward_iter it;
    forward_iter_init(&it, &opts);
    msgpack_sbuffer entries;
    msgpack_sbuffer_init(&entries);
    msgpack_packer_init(&pk, &entries, msgpack_sbuffer_write);
    for (int i = 0; i < 3; i++)
        entry(i, "nomem");
    pack_packed(entries.data, entries.size, 0);
    CHECK_INT(begin(&it), 0);
    msgpack_object ev;
    fail_realloc = 1;
    CHECK_INT(next(&it, &ev), -ENOMEM);
    CHECK_INT(fail_realloc, 0); /* it was forward.c's allocation that failed */
    CHECK_INT(next(&it, &ev), 1);
    const msgpack_object *i = get(&ev, "i");
    CHECK(i != NULL && i->type == MSGPACK_OBJECT_POSITIVE_INTEGER && i->via.u64 == 1); /* the second event */
    CHECK_INT(next(&it, &ev), 1);
    CHECK_INT(next(&it, &ev), 0);
    CHECK(!forward_active(&it));
    forward_iter_free(&it);
    msgpack_sbuffer_destroy(&entries);
#endif
}

int main(void)
{
    msgpack_sbuffer_init(&sb);
    msgpack_unpacked_init(&up);
    forward_opts_default(&opts, 1 << 20);
    CHECK_INT(record_enc_init(&enc_map), 0);
    CHECK_INT(record_enc_init(&enc_parts), 0);
    test_times();
    test_message_mode_mapping();
    test_forward_mode_bad_entries();
    test_packed_and_gzip();
    test_not_forward();
    test_parse_keys();
    test_oversized_event();
    test_v2_entries();
    test_message_mode_option_metadata();
    test_bad_times_kept();
    test_parts_same_entry();
    test_event_out_of_memory();
    CHECK(parts_compared >= 30); /* every test's plain events went both ways */
    record_enc_free(&enc_map);
    record_enc_free(&enc_parts);
    msgpack_unpacked_destroy(&up);
    msgpack_sbuffer_destroy(&sb);
    free(msg_copy);
    return check_done("test_forward");
}
