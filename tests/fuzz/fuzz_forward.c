/* fuzz_forward.c — libFuzzer target: Fluent Forward messages through forward.c's API, as ingest.c drives it:
 * the input's msgpack stream is bounded by mpscan (max_record for native records, the Forward message limit and
 * its item budget for top-level arrays), msgpack-c decodes what mpscan vouched for, each top-level array goes to
 * forward_begin / forward_next, and each event to record_encode. No sockets, no libevent.
 *
 * The first input byte picks the limits (so small inputs reach every limit): max_record 256 B or 4 KiB; the
 * message limit 1, 4 or 16 x max_record (also max_inflated, as ingest sets it); the rest is the stream.
 * Besides ASan/UBSan, the target aborts when forward.h's contract breaks:
 *  - forward_begin returns anything but 0, -EINVAL, -EBADMSG, -EMSGSIZE, -ENOMEM; after an error the iterator
 *    holds something (active, a chunk); -EBADMSG / -EMSGSIZE for a message that asks for no gzip;
 *  - forward_next returns anything but 1, 0, -EINVAL, -EMSGSIZE, -ENOMEM; it does not end within one call per
 *    entry (Forward mode: array items, Message: 1, packed: bytes) plus one; it is active after 0, or not 0 then;
 *  - an event is not a map starting with service_name = the tag (the same bytes), a timestamp (a non-negative
 *    integer, or a bad time handed on as sent: a negative integer, float, ext or the decimal str of a positive
 *    integer) and a string message, then forward_metadata (a non-empty map) or not, or another key repeats one
 *    of those;
 *  - an event is larger, as msgpack, than max_record plus what the mapping adds (the tag, four keys, renames, a
 *    time's decimal text);
 *  - record_encode calls an event invalid_record (every event has a string message);
 *  - two iterations of the same message disagree (events, results), or the ack does not decode to {"ack": chunk};
 *  - heap in use passes 64 x max(max_record, the item budget) + 4 x the message limit + 2 MiB: a Forward-mode
 *    message of tiny events must not make msgpack-c allocate for millions of items. */
#include "fuzz_common.h"

#include "ingest/forward.h"
#include "ingest/mpscan.h"
#include "record.h"

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
    record_enc enc;
    record_source src;
    msgpack_sbuffer sb; /* an event packed, to measure it */
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

/* The calls forward_next may take for this message before it says 0. */
static uint64_t max_calls(const forward_iter *it)
{
    switch (it->mode) {
    case FORWARD_MESSAGE: return 2;
    case FORWARD_FORWARD: return (uint64_t)it->entries->via.array.size + 1;
    default: return (uint64_t)it->packed_len + 1;
    }
}

/* One event: its shape, its size, and record_encode's view of it. Returns a digest of it. */
static uint64_t check_event(ctx *c, const msgpack_object *ev, uint64_t h)
{
    FUZZ_CHECK(ev->type == MSGPACK_OBJECT_MAP && ev->via.map.size >= 3, "an event is not a map of >= 3 keys");
    const msgpack_object_kv *kv = ev->via.map.ptr;
    FUZZ_CHECK(str_eq(&kv[0].key, "service_name") && str_eq(&kv[1].key, "timestamp") &&
                   str_eq(&kv[2].key, "message"), "an event does not start with service_name, timestamp, message");
    FUZZ_CHECK(kv[0].val.type == MSGPACK_OBJECT_STR && kv[0].val.via.str.size == c->it.tag.via.str.size &&
                   (kv[0].val.via.str.size == 0 || /* an empty tag: both pointers may be NULL */
                    !memcmp(kv[0].val.via.str.ptr, c->it.tag.via.str.ptr, kv[0].val.via.str.size)),
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
    msgpack_sbuffer_clear(&c->sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &c->sb, msgpack_sbuffer_write);
    FUZZ_CHECK(msgpack_pack_object(&pk, *ev) == 0, "cannot pack an event");
    /* added by the mapping: the tag and its key (<= 5 + 13), timestamp (10 + 9, or a time's decimal text, <= 21),
     * "message" (8), "forward_metadata" (17), a map header that grows (4), and up to 4 renamed keys, each <= 13
     * bytes longer */
    size_t bound = c->opts.max_record + c->it.tag.via.str.size + 150;
    FUZZ_CHECK(c->sb.size <= bound, "an event of %zu bytes passed max_record %zu", c->sb.size, c->opts.max_record);
    record_info info;
    int rc = record_encode(&c->enc, ev, &c->src, NOW_NS, &info);
    FUZZ_CHECK(rc == 0 || rc == -E2BIG || rc == -ENOMEM, "record_encode said %d for an event", rc);
    h = fuzz_fnv(h, c->sb.data, c->sb.size);
    int32_t r32 = rc;
    return fuzz_fnv(h, &r32, sizeof r32);
}

/* The ack of a finished message decodes to {"ack": chunk}. */
static void check_ack(const msgpack_object *chunk)
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
                   && msgpack_object_equal(u.data.via.map.ptr[0].val, *chunk), "ack is not {\"ack\": chunk}");
    msgpack_unpacked_destroy(&u);
}

/* One message through forward_begin / forward_next. Returns a digest of what it gave. */
static uint64_t iterate(ctx *c, const msgpack_object *arr)
{
    uint64_t h = FUZZ_FNV_INIT;
    int rc = forward_begin(&c->it, arr);
    FUZZ_CHECK(rc == 0 || rc == -EINVAL || rc == -EBADMSG || rc == -EMSGSIZE || rc == -ENOMEM,
               "forward_begin returned %d", rc);
    h = fuzz_fnv(h, &rc, sizeof rc);
    if (rc < 0) {
        FUZZ_CHECK(!forward_active(&c->it) && !c->it.chunk, "forward_begin failed (%d) but holds something", rc);
        FUZZ_CHECK(rc == -EINVAL || rc == -ENOMEM || wants_gzip(arr), "forward_begin %d without gzip", rc);
        return h;
    }
    FUZZ_CHECK(forward_active(&c->it), "forward_begin succeeded but is not active");
    uint64_t limit = max_calls(&c->it), calls = 0;
    msgpack_object ev;
    for (;;) {
        FUZZ_CHECK(++calls <= limit, "forward_next did not end within %llu calls", (unsigned long long)limit);
        rc = forward_next(&c->it, &ev);
        FUZZ_CHECK(rc == 1 || rc == 0 || rc == -EINVAL || rc == -EMSGSIZE || rc == -ENOMEM,
                   "forward_next returned %d", rc);
        h = fuzz_fnv(h, &rc, sizeof rc);
        if (rc == 0)
            break;
        FUZZ_CHECK(forward_active(&c->it), "forward_next gave %d while not active", rc);
        if (rc == 1)
            h = check_event(c, &ev, h);
    }
    FUZZ_CHECK(!forward_active(&c->it) && forward_next(&c->it, &ev) == 0, "active (or more events) after 0");
    if (c->it.chunk)
        check_ack(c->it.chunk);
    forward_iter_reset(&c->it);
    return h;
}

/* ingest.c's path for one input: mpscan bounds the stream, msgpack-c decodes it, arrays go to forward.c. */
static void run(ctx *c, const uint8_t *p, size_t n, uint64_t max_message)
{
    mpscan s;
    mpscan_init(&s, c->opts.max_record);
    mpscan_set_array_limit(&s, max_message);
    size_t good;
    mpscan_feed(&s, p, n, &good);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    while (off < good) {
        msgpack_unpack_return r = msgpack_unpack_next(&u, (const char *)p, good, &off);
        if (r != MSGPACK_UNPACK_SUCCESS && r != MSGPACK_UNPACK_EXTRA_BYTES)
            break; /* a trailing partial record */
        if (u.data.type != MSGPACK_OBJECT_ARRAY)
            continue;
        uint64_t a = iterate(c, &u.data), b = iterate(c, &u.data);
        FUZZ_CHECK(a == b, "two iterations of one message disagree");
    }
    msgpack_unpacked_destroy(&u);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    FUZZ_CHECK(__sanitizer_install_malloc_and_free_hooks(on_malloc, on_free), "cannot install malloc hooks");
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
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
    forward_iter_init(&c.it, &c.opts);
    FUZZ_CHECK(record_enc_init(&c.enc) == 0, "record_enc_init");
    c.enc.text_limit = 64u << 10;
    c.src = (record_source){.pid = 4242, .uid = 1000, .gid = 1001, .comm = "fuzz-client", .hostname = "fuzzhost"};
    msgpack_sbuffer_init(&c.sb);
    run(&c, data + 1, size - 1, max_message);
    forward_iter_free(&c.it);
    record_enc_free(&c.enc);
    msgpack_sbuffer_destroy(&c.sb);
    uint64_t items = max_message / 16 > max_record ? max_message / 16 : max_record;
    size_t bound = 64 * (size_t)items + 4 * (size_t)max_message + (2u << 20);
    FUZZ_CHECK(g_heap_peak - live0 <= bound, "%zu input bytes took %zu bytes of heap (bound %zu)", size,
               g_heap_peak - live0, bound);
    return 0;
}
