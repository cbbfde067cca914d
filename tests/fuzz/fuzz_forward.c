/* fuzz_forward.c — libFuzzer target: Fluent Forward messages through forward.c's API, as ingest.c drives it: the
 * input is a connection's byte stream fed to the real decoder (agent/ingest/decoder.c: mpscan bounds max_record
 * for native records, the Forward message limit and its item budget for top-level arrays), each top-level array it
 * hands out goes to forward_begin / forward_next (the decoder pinned meanwhile), and each event's map to
 * record_encode_raw. No sockets, no libevent.
 *
 * Each message also goes through the oracle, ref/ref_forward.c: the object-tree implementation forward.c replaced
 * (msgpack-c decodes the message, the event is an object, record_encode packs it back). Both must agree on every
 * verdict, and every event must encode to the same bytes (the log_id generators seeded alike).
 *
 * The first input byte picks the limits (so small inputs reach every limit): max_record 256 B or 4 KiB; the
 * message limit 1, 4 or 16 x max_record (also max_inflated, as ingest sets it); the size of each read (7, 64,
 * 4096 or 65536 bytes); the rest is the stream.
 * Besides ASan/UBSan, the target aborts when forward.h's contract breaks:
 *  - forward_begin returns anything but 0, -EINVAL, -EBADMSG, -EMSGSIZE, -ENOMEM; after an error the iterator
 *    holds something (active, a chunk); -EBADMSG / -EMSGSIZE for a message that asks for no gzip;
 *  - forward_next returns anything but 1, 0, -EINVAL, -EMSGSIZE, -ENOMEM; it does not end within one call per
 *    entry (Forward mode: array items, Message: 1, packed: bytes) plus one; it is active after 0, or not 0 then;
 *  - an event is not one msgpack map starting with service_name = the tag (the same bytes), a timestamp (a
 *    non-negative integer, or a bad time handed on as sent: a negative integer, float, ext or the decimal str of
 *    a positive integer) and a string message, then forward_metadata (a non-empty map) or not, or another key
 *    repeats one of those;
 *  - an event is larger, as msgpack, than max_record plus what the mapping adds (the tag, four keys, renames, a
 *    time's decimal text);
 *  - record_encode_raw calls an event invalid_record (every event has a string message);
 *  - forward.c and the oracle disagree (a verdict, the chunk, an event's encoded bytes or what it noticed);
 *  - a message's events taken as ingest takes them (forward.h's lazy mode: in parts, record_prepare_parts and
 *    forward_settle, or the map of an entry sent back) differ from their maps' entries (a verdict, bytes, notes);
 *  - two iterations of the same message disagree (events, results), or the ack does not decode to {"ack": chunk};
 *  - heap in use passes 64 x max(max_record, the item budget) + 4 x the message limit + 2 MiB. */
#include "fuzz_common.h"

#include "ingest/decoder.h"
#include "ingest/forward.h"
#include "record.h"
#include "ref/ref_forward.h"

#include <msgpack.h>
#include <sanitizer/allocator_interface.h>

static const int64_t NOW_NS = 1725013845123456789LL;

static size_t g_heap_live, g_heap_peak; /* see fuzz_ingest.c: the target is single-threaded */

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

typedef struct ctx {
    forward_opts opts;
    forward_iter it;
    ref_forward_opts ref_opts;
    ref_forward_iter ref_it;
    msgpack_unpacked msg; /* the oracle's view of the message */
    msgpack_unpacked ev;  /* an event's map, decoded to check its shape */
    record_enc enc, ref_enc, parts_enc; /* parts_enc: the event from forward.c's parts (record_prepare_parts) */
    record_source src;
    msgpack_sbuffer sb; /* packed objects, to compare them */
} ctx;

static int str_eq(const msgpack_object *o, const char *s)
{
    return o->type == MSGPACK_OBJECT_STR && o->via.str.size == strlen(s) && !memcmp(o->via.str.ptr, s, strlen(s));
}

/* The option map of a message asks for gzip. */
static int wants_gzip(const msgpack_object *arr)
{
    if (arr->type != MSGPACK_OBJECT_ARRAY)
        return 0;
    for (uint32_t i = 2; i < arr->via.array.size; i++) {
        const msgpack_object *o = &arr->via.array.ptr[i];
        if (o->type != MSGPACK_OBJECT_MAP)
            continue;
        for (uint32_t k = 0; k < o->via.map.size; k++)
            if (str_eq(&o->via.map.ptr[k].key, "compressed") && str_eq(&o->via.map.ptr[k].val, "gzip"))
                return 1;
    }
    return 0;
}

/* The calls forward_next may take for this message before it says 0 (`arr`: the message as an object). */
static uint64_t max_calls(const forward_iter *it, const msgpack_object *arr)
{
    switch (it->mode) {
    case FORWARD_MESSAGE: return 2;
    case FORWARD_FORWARD: return (uint64_t)arr->via.array.ptr[1].via.array.size + 1;
    default: return (uint64_t)it->packed_len + 1;
    }
}

/* Two objects pack to the same bytes (NaN-safe, unlike msgpack_object_equal). */
static int same_object(ctx *c, const msgpack_object *a, const msgpack_object *b)
{
    msgpack_packer pk;
    msgpack_sbuffer_clear(&c->sb);
    msgpack_packer_init(&pk, &c->sb, msgpack_sbuffer_write);
    FUZZ_CHECK(msgpack_pack_object(&pk, *a) == 0, "cannot pack");
    size_t n = c->sb.size;
    FUZZ_CHECK(msgpack_pack_object(&pk, *b) == 0, "cannot pack");
    return c->sb.size == 2 * n && !memcmp(c->sb.data, c->sb.data + n, n);
}

/* One event's map (map[0..len)): its shape and size; record_encode_raw's view of it against the oracle's event
 * `ref` through record_encode. Returns a digest of it. */
static uint64_t check_event(ctx *c, const uint8_t *map, size_t len, const msgpack_object *ref, uint64_t h)
{
    size_t off = 0;
    FUZZ_CHECK(msgpack_unpack_next(&c->ev, (const char *)map, len, &off) == MSGPACK_UNPACK_SUCCESS && off == len,
               "an event is not one msgpack value");
    const msgpack_object *ev = &c->ev.data;
    FUZZ_CHECK(ev->type == MSGPACK_OBJECT_MAP && ev->via.map.size >= 3, "an event is not a map of >= 3 keys");
    const msgpack_object_kv *kv = ev->via.map.ptr;
    FUZZ_CHECK(str_eq(&kv[0].key, "service_name") && str_eq(&kv[1].key, "timestamp") &&
                   str_eq(&kv[2].key, "message"), "an event does not start with service_name, timestamp, message");
    FUZZ_CHECK(kv[0].val.type == MSGPACK_OBJECT_STR && kv[0].val.via.str.size == c->it.tag_str_len &&
                   (c->it.tag_str_len == 0 || !memcmp(kv[0].val.via.str.ptr, c->it.tag_str, c->it.tag_str_len)),
               "service_name is not the tag");
    msgpack_object_type tt = kv[1].val.type;
    FUZZ_CHECK(tt == MSGPACK_OBJECT_POSITIVE_INTEGER || tt == MSGPACK_OBJECT_NEGATIVE_INTEGER ||
                   tt == MSGPACK_OBJECT_FLOAT32 || tt == MSGPACK_OBJECT_FLOAT64 || tt == MSGPACK_OBJECT_EXT ||
                   tt == MSGPACK_OBJECT_STR, "timestamp is not a time as sent");
    FUZZ_CHECK(kv[2].val.type == MSGPACK_OBJECT_STR, "message is not a string");
    uint32_t first = 3;
    if (ev->via.map.size > 3 && str_eq(&kv[3].key, "forward_metadata") && kv[3].val.type == MSGPACK_OBJECT_MAP &&
        kv[3].val.via.map.size > 0)
        first = 4; /* set by the mapping (else the record's own key, kept as it is) */
    for (uint32_t i = 3; i < ev->via.map.size; i++) {
        FUZZ_CHECK(!str_eq(&kv[i].key, "service_name") && !str_eq(&kv[i].key, "timestamp") &&
                       !str_eq(&kv[i].key, "message"), "key %u repeats one the mapping sets", i);
        FUZZ_CHECK(first == 3 || i < first || !str_eq(&kv[i].key, "forward_metadata"),
                   "key %u repeats forward_metadata", i);
    }
    /* added by the mapping: the tag and its key (<= 5 + 13), timestamp (10 + 9, or a time's decimal text, <= 21),
     * "message" (8), "forward_metadata" (17), a map header that grows (4), and up to 4 renamed keys, each <= 13
     * bytes longer */
    size_t bound = c->opts.max_record + c->it.tag_str_len + 150;
    FUZZ_CHECK(len <= bound, "an event of %zu bytes passed max_record %zu", len, c->opts.max_record);
    if (!same_object(c, ev, ref)) {
        msgpack_object_print(stderr, *ev);
        fprintf(stderr, "\n");
        msgpack_object_print(stderr, *ref);
        fprintf(stderr, "\n");
    }
    FUZZ_CHECK(same_object(c, ev, ref), "the event is not the oracle's");
    record_info info, ref_info;
    c->enc.rng[0] = c->ref_enc.rng[0] = 0x9e3779b97f4a7c15ULL;
    c->enc.rng[1] = c->ref_enc.rng[1] = 0xbf58476d1ce4e5b9ULL;
    int rc = record_encode_raw(&c->enc, map, len, &c->src, NOW_NS, &info);
    int ref_rc = record_encode(&c->ref_enc, ref, &c->src, NOW_NS, &ref_info);
    FUZZ_CHECK(rc == 0 || rc == -E2BIG || rc == -ENOMEM, "record_encode_raw said %d for an event", rc);
    FUZZ_CHECK(rc == ref_rc, "record_encode_raw said %d, the oracle's record_encode %d", rc, ref_rc);
    FUZZ_CHECK(rc != 0 || (c->enc.out_len == c->ref_enc.out_len && !memcmp(c->enc.out, c->ref_enc.out, c->enc.out_len)),
               "the event encodes to other bytes than the oracle's");
    FUZZ_CHECK(rc != 0 || (info.reserved_keys == ref_info.reserved_keys && info.level_unknown == ref_info.level_unknown &&
                           info.timestamp_unparsed == ref_info.timestamp_unparsed &&
                           info.utf8_repaired == ref_info.utf8_repaired), "the event's record_info differs");
    h = fuzz_fnv(h, map, len);
    int32_t r32 = rc;
    return fuzz_fnv(h, &r32, sizeof r32);
}

/* The ack of a finished message decodes to {"ack": chunk}. */
static void check_ack(ctx *c, const msgpack_object *chunk)
{
    char buf[512];
    size_t n = forward_pack_ack(chunk, buf, sizeof buf);
    if (n == 0)
        return; /* too long to ack: the caller counts acks_failed */
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    FUZZ_CHECK(msgpack_unpack_next(&u, buf, n, &off) == MSGPACK_UNPACK_SUCCESS && off == n, "ack does not decode");
    FUZZ_CHECK(u.data.type == MSGPACK_OBJECT_MAP && u.data.via.map.size == 1 && str_eq(&u.data.via.map.ptr[0].key, "ack")
                   && same_object(c, &u.data.via.map.ptr[0].val, chunk), "ack is not {\"ack\": chunk}");
    msgpack_unpacked_destroy(&u);
}

/* The entries of the message p[0..len) as one iterator gives them (lazy: as ingest takes them, an event in parts
 * through record_prepare_parts and forward_settle, or its map when sent back; else every event's map through
 * record_encode_raw), as a digest of every verdict, entry's bytes and notes, the log_id generator seeded alike for
 * each event. limit: the calls forward_next may take (each sent-back entry adds one). */
static uint64_t entries_digest(ctx *c, const uint8_t *p, size_t len, int lazy, uint64_t limit)
{
    forward_iter it;
    forward_iter_init(&it, &c->opts);
    it.lazy = lazy;
    uint64_t h = FUZZ_FNV_INIT, calls = 0, sent_back = 0;
    int32_t rc = forward_begin(&it, p, len);
    h = fuzz_fnv(h, &rc, sizeof rc);
    while (rc == 0) {
        FUZZ_CHECK(++calls <= limit + sent_back, "forward_next (lazy %d) did not end within its calls", lazy);
        const uint8_t *map;
        size_t mlen;
        record_info info;
        int32_t next = forward_next(&it, &map, &mlen), erc = 0;
        c->parts_enc.rng[0] = 0x9e3779b97f4a7c15ULL;
        c->parts_enc.rng[1] = 0xbf58476d1ce4e5b9ULL;
        if (next == 1 && !map) {
            FUZZ_CHECK(lazy, "an event in parts from an iterator that is not lazy");
            erc = record_prepare_parts(&c->parts_enc, &it.parts, &c->src, &info);
            if (forward_settle(&it, erc, &info) < 0) {
                FUZZ_CHECK(++sent_back <= limit, "forward_settle sent back more entries than there are");
                continue;
            }
            if (erc == 0) {
                uint8_t *out = malloc(c->parts_enc.out_len ? c->parts_enc.out_len : 1);
                FUZZ_CHECK(out != NULL, "malloc");
                FUZZ_CHECK(record_write(&c->parts_enc, out) == c->parts_enc.out_len, "record_write's length");
                h = fuzz_fnv(h, out, c->parts_enc.out_len);
                free(out);
            }
        } else if (next == 1) {
            erc = record_encode_raw(&c->parts_enc, map, mlen, &c->src, NOW_NS, &info);
            if (erc == 0)
                h = fuzz_fnv(h, c->parts_enc.out, c->parts_enc.out_len);
        }
        h = fuzz_fnv(h, &next, sizeof next);
        if (next == 1) {
            h = fuzz_fnv(h, &erc, sizeof erc);
            if (erc == 0) {
                uint32_t notes[4] = {info.reserved_keys, (uint32_t)info.level_unknown, (uint32_t)info.timestamp_unparsed,
                                     (uint32_t)info.utf8_repaired};
                h = fuzz_fnv(h, notes, sizeof notes);
            }
        }
        if (next == 0)
            break;
    }
    forward_iter_free(&it);
    return h;
}

/* One message (its bytes p[0..len), as the decoder handed them out) through forward_begin / forward_next and the
 * oracle. Returns a digest of what it gave. */
static uint64_t iterate(ctx *c, const uint8_t *p, size_t len)
{
    uint64_t h = FUZZ_FNV_INIT;
    size_t off = 0;
    FUZZ_CHECK(msgpack_unpack_next(&c->msg, (const char *)p, len, &off) == MSGPACK_UNPACK_SUCCESS && off == len,
               "msgpack-c cannot decode a message the decoder handed out");
    const msgpack_object *arr = &c->msg.data;
    int rc = forward_begin(&c->it, p, len), ref_rc = ref_forward_begin(&c->ref_it, arr);
    FUZZ_CHECK(rc == 0 || rc == -EINVAL || rc == -EBADMSG || rc == -EMSGSIZE || rc == -ENOMEM,
               "forward_begin returned %d", rc);
    FUZZ_CHECK(rc == ref_rc, "forward_begin returned %d, the oracle %d", rc, ref_rc);
    h = fuzz_fnv(h, &rc, sizeof rc);
    if (rc < 0) {
        FUZZ_CHECK(!forward_active(&c->it) && !c->it.chunk, "forward_begin failed (%d) but holds something", rc);
        FUZZ_CHECK(rc == -EINVAL || rc == -ENOMEM || wants_gzip(arr), "forward_begin %d without gzip", rc);
        return h;
    }
    FUZZ_CHECK(forward_active(&c->it), "forward_begin succeeded but is not active");
    FUZZ_CHECK(c->it.mode == c->ref_it.mode, "mode %d, the oracle's %d", c->it.mode, c->ref_it.mode);
    FUZZ_CHECK(!c->it.chunk == !c->ref_it.chunk && (!c->it.chunk || same_object(c, c->it.chunk, c->ref_it.chunk)),
               "the chunk is not the oracle's");
    uint64_t limit = max_calls(&c->it, arr), calls = 0;
    const uint8_t *map;
    size_t mlen;
    msgpack_object ref;
    for (;;) {
        FUZZ_CHECK(++calls <= limit, "forward_next did not end within %llu calls", (unsigned long long)limit);
        rc = forward_next(&c->it, &map, &mlen);
        ref_rc = ref_forward_next(&c->ref_it, &ref);
        FUZZ_CHECK(rc == 1 || rc == 0 || rc == -EINVAL || rc == -EMSGSIZE || rc == -ENOMEM,
                   "forward_next returned %d", rc);
        FUZZ_CHECK(rc == ref_rc, "forward_next returned %d, the oracle %d (call %llu)", rc, ref_rc,
                   (unsigned long long)calls);
        h = fuzz_fnv(h, &rc, sizeof rc);
        if (rc == 0)
            break;
        FUZZ_CHECK(forward_active(&c->it), "forward_next gave %d while not active", rc);
        if (rc == 1)
            h = check_event(c, map, mlen, &ref, h);
    }
    FUZZ_CHECK(!forward_active(&c->it) && forward_next(&c->it, &map, &mlen) == 0, "active (or more events) after 0");
    FUZZ_CHECK(entries_digest(c, p, len, 1, limit) == entries_digest(c, p, len, 0, limit),
               "the message's events taken as ingest takes them (in parts) differ from their maps'");
    if (c->it.chunk)
        check_ack(c, c->it.chunk);
    forward_iter_reset(&c->it);
    ref_forward_iter_reset(&c->ref_it);
    return h;
}

/* ingest.c's path for one input: the decoder takes the stream in reads of `chunk` bytes and hands out whole
 * objects; top-level arrays go to forward.c (twice: the same answers), the decoder pinned meanwhile. */
static void run(ctx *c, const uint8_t *p, size_t n, uint64_t max_message, size_t chunk)
{
    decoder d;
    FUZZ_CHECK(decoder_init(&d, 4096, c->opts.max_record, max_message) == 0, "decoder_init");
    for (size_t off = 0; off < n;) {
        size_t want = n - off < chunk ? n - off : chunk, room;
        uint8_t *w = decoder_space(&d, want, &room);
        FUZZ_CHECK(w != NULL && room >= want, "decoder_space");
        memcpy(w, p + off, want);
        off += want;
        int refused = decoder_wrote(&d, want);
        const uint8_t *obj;
        size_t len;
        while (decoder_next(&d, &obj, &len)) {
            if (!((obj[0] >= 0x90 && obj[0] <= 0x9f) || obj[0] == 0xdc || obj[0] == 0xdd))
                continue; /* a native record: fuzz_ingest's */
            decoder_pin(&d, 1);
            uint64_t a = iterate(c, obj, len), b = iterate(c, obj, len);
            FUZZ_CHECK(a == b, "two iterations of one message disagree");
            decoder_pin(&d, 0);
        }
        if (refused)
            break;
    }
    decoder_free(&d);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    FUZZ_CHECK(__sanitizer_install_malloc_and_free_hooks(on_malloc, on_free), "cannot install malloc hooks");
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const size_t reads[4] = {7, 64, 4096, 65536};
    if (size < 1)
        return 0;
    size_t live0 = g_heap_live;
    g_heap_peak = g_heap_live;
    uint64_t max_record = data[0] & 1 ? 4096 : 256;
    uint64_t max_message = max_record * ((data[0] >> 1) % 3 == 0 ? 1 : (data[0] >> 1) % 3 == 1 ? 4 : 16);
    ctx c;
    memset(&c, 0, sizeof c);
    forward_opts_default(&c.opts, (size_t)max_record);
    c.opts.max_inflated = (size_t)max_message;
    ref_forward_opts_default(&c.ref_opts, (size_t)max_record);
    c.ref_opts.max_inflated = (size_t)max_message;
    forward_iter_init(&c.it, &c.opts);
    ref_forward_iter_init(&c.ref_it, &c.ref_opts);
    msgpack_unpacked_init(&c.msg);
    msgpack_unpacked_init(&c.ev);
    FUZZ_CHECK(record_enc_init(&c.enc) == 0 && record_enc_init(&c.ref_enc) == 0 && record_enc_init(&c.parts_enc) == 0,
               "record_enc_init");
    c.enc.text_limit = c.ref_enc.text_limit = c.parts_enc.text_limit = 64u << 10;
    c.src = (record_source){.pid = 4242, .uid = 1000, .gid = 1001, .comm = "fuzz-client", .hostname = "fuzzhost"};
    msgpack_sbuffer_init(&c.sb);
    run(&c, data + 1, size - 1, max_message, reads[(data[0] >> 4) & 3]);
    forward_iter_free(&c.it);
    ref_forward_iter_free(&c.ref_it);
    msgpack_unpacked_destroy(&c.msg);
    msgpack_unpacked_destroy(&c.ev);
    record_enc_free(&c.enc);
    record_enc_free(&c.ref_enc);
    record_enc_free(&c.parts_enc);
    msgpack_sbuffer_destroy(&c.sb);
    uint64_t items = max_message / 16 > max_record ? max_message / 16 : max_record;
    size_t bound = 64 * (size_t)items + 4 * (size_t)max_message + (2u << 20);
    FUZZ_CHECK(g_heap_peak - live0 <= bound, "%zu input bytes took %zu bytes of heap (bound %zu)", size,
               g_heap_peak - live0, bound);
    return 0;
}
