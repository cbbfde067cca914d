/* test_batch.c — BatchWriteLogsRequest assembly: entries framed by hand decode with the generated code,
 * with agent_id and batch_id; sizes are predicted exactly; entries stay addressable one by one.
 *
 * And the ownership of a batch's bytes once gRPC shares them (batch.h), with real gRPC slices
 * (grpc_slice_new_with_user_data, as upstream.c makes them): a slice outlives the batch it came from; a retried
 * batch re-sends the same bytes after (or while) its first call's slice is released; evicting (spooling) and
 * reading the batch back leaves a slice's bytes alone; adding to a shared batch copies it away first; unary
 * slices of every entry released from another thread after the batch is gone. The destroy callback runs exactly
 * once per slice. Run under ASan (use after free, leaks) and TSan (label threads). */
#include "flush/batch.h"
#include "pbwire.h"
#include "check.h"

#include <errno.h>
#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <logagent/v1/log_service.pb-c.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

static size_t encode_entry(int i, uint8_t *buf, size_t cap)
{
    Logagent__V1__WriteLogRequest r = LOGAGENT__V1__WRITE_LOG_REQUEST__INIT;
    char msg[64], id[40];
    snprintf(msg, sizeof msg, "message %d", i);
    snprintf(id, sizeof id, "%032x", i);
    r.message = msg;
    r.log_id = id;
    r.timestamp_unix_nano = 1000 + i;
    size_t n = logagent__v1__write_log_request__get_packed_size(&r);
    CHECK(n <= cap);
    return logagent__v1__write_log_request__pack(&r, buf);
}

static batch *make_batch(uint64_t id, int n)
{
    batch *b = batch_new(id, 0);
    uint8_t buf[256];
    for (int i = 0; i < n; i++)
        CHECK_INT(batch_add(b, buf, encode_entry(i, buf, sizeof buf)), 0);
    return b;
}

/* Checks that req[0..len) is batch `id` with `n` entries "message 0".. */
static void check_request(const uint8_t *req, size_t len, uint64_t id, size_t n)
{
    Logagent__V1__BatchWriteLogsRequest *r = logagent__v1__batch_write_logs_request__unpack(NULL, len, req);
    CHECK(r != NULL);
    if (!r)
        return;
    CHECK_INT(r->n_entries, n);
    CHECK_STR(r->agent_id, "agent-x");
    CHECK_INT(r->batch_id, id);
    for (size_t i = 0; i < r->n_entries; i++) {
        char want[64];
        snprintf(want, sizeof want, "message %zu", i);
        CHECK_STR(r->entries[i]->message, want);
    }
    logagent__v1__batch_write_logs_request__free_unpacked(r, NULL);
}

/* ---- slices the way upstream.c makes them, with the destroy calls counted ---------------------------- */

static atomic_int released;

static void counted_release(void *mem)
{
    atomic_fetch_add(&released, 1);
    batch_buf_release(mem);
}

/* A byte buffer (what a call's SEND_MESSAGE holds) over p[0..len), owning a new reference to b's bytes. */
static grpc_byte_buffer *share(batch *b, const uint8_t *p, size_t len)
{
    grpc_slice s = grpc_slice_new_with_user_data((void *)p, len, counted_release, batch_buf_hold(b));
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
    grpc_slice_unref(s);
    return bb;
}

/* The bytes a byte buffer would send, in a new malloc'd copy. */
static uint8_t *read_all(grpc_byte_buffer *bb, size_t *len)
{
    grpc_byte_buffer_reader rd;
    CHECK(grpc_byte_buffer_reader_init(&rd, bb));
    grpc_slice all = grpc_byte_buffer_reader_readall(&rd);
    grpc_byte_buffer_reader_destroy(&rd);
    *len = GRPC_SLICE_LENGTH(all);
    uint8_t *out = malloc(*len ? *len : 1);
    memcpy(out, GRPC_SLICE_START_PTR(all), *len);
    grpc_slice_unref(all);
    return out;
}

static void test_assembly(void)
{
    batch *b = batch_new(77, 0);
    uint8_t buf[256];
    for (int i = 0; i < 300; i++) {
        size_t n = encode_entry(i, buf, sizeof buf);
        size_t predicted = batch_size_with(b, n);
        CHECK_INT(batch_add(b, buf, n), 0);
        CHECK(predicted >= b->len && predicted - b->len <= 200); /* entries + room for the trailer */
    }
    CHECK_INT(b->n, 300);
    size_t len;
    const uint8_t *req = batch_request(b, "agent-x", NULL, 0, &len);
    CHECK(req == b->buf);                 /* the batch's own bytes: nothing copied */
    CHECK(len <= batch_size_with(b, 0)); /* the whole request stays within what the size check promised */
    check_request(req, len, 77, 300);
    Logagent__V1__BatchWriteLogsRequest *r = logagent__v1__batch_write_logs_request__unpack(NULL, len, req);
    if (r) {
        CHECK_INT(r->entries[5]->timestamp_unix_nano, 1005);
        logagent__v1__batch_write_logs_request__free_unpacked(r, NULL);
    }
    size_t elen;
    const uint8_t *e = batch_entry(b, 42, &elen);
    Logagent__V1__WriteLogRequest *one = logagent__v1__write_log_request__unpack(NULL, elen, e);
    CHECK(one && strcmp(one->message, "message 42") == 0);
    if (one)
        logagent__v1__write_log_request__free_unpacked(one, NULL);
    batch_free(b);
}

/* batch_reserve: the entries are written in place, the buffer never moves. */
static void test_reserve(void)
{
    batch *b = batch_new(1, 0);
    CHECK_INT(batch_reserve(b, 300 * 64, 300), 0);
    const uint8_t *at = b->buf;
    uint8_t buf[256];
    for (int i = 0; i < 300; i++)
        CHECK_INT(batch_add(b, buf, encode_entry(i, buf, sizeof buf)), 0);
    size_t len;
    CHECK(batch_request(b, "agent-x", NULL, 0, &len) == at && b->buf == at);
    check_request(b->buf, len, 1, 300);
    batch_free(b);
}

/* A call's slice outlives the batch (settled while gRPC still held it): the bytes stay until the slice goes. */
static void test_slice_outlives_batch(void)
{
    atomic_store(&released, 0);
    batch *b = make_batch(5, 100);
    size_t len;
    const uint8_t *req = batch_request(b, "agent-x", NULL, 0, &len);
    grpc_byte_buffer *bb = share(b, req, len);
    batch_free(b);
    CHECK_INT(atomic_load(&released), 0);
    size_t got;
    uint8_t *bytes = read_all(bb, &got);
    CHECK_INT(got, len);
    check_request(bytes, got, 5, 100);
    free(bytes);
    grpc_byte_buffer_destroy(bb); /* the last reference: frees the bytes (LSan: no leak) */
    CHECK_INT(atomic_load(&released), 1);
}

/* Retried: the first call's slice released, then the batch is sent again — the same bytes, written once. And
 * while the second call's slice still exists, a third send shares them too. */
static void test_retry_after_release(void)
{
    atomic_store(&released, 0);
    batch *b = make_batch(6, 50);
    size_t len1, len2, len3;
    const uint8_t *req = batch_request(b, "agent-x", NULL, 0, &len1);
    uint8_t *first = malloc(len1);
    memcpy(first, req, len1);
    grpc_byte_buffer_destroy(share(b, req, len1));
    CHECK_INT(atomic_load(&released), 1);
    req = batch_request(b, "agent-x", NULL, 0, &len2);
    CHECK(len2 == len1 && memcmp(req, first, len1) == 0);
    grpc_byte_buffer *second = share(b, req, len2);
    req = batch_request(b, "agent-x", NULL, 0, &len3);
    CHECK(len3 == len1 && memcmp(req, first, len1) == 0);
    grpc_byte_buffer *third = share(b, req, len3);
    batch_free(b);
    size_t got;
    uint8_t *bytes = read_all(second, &got);
    CHECK(got == len1 && memcmp(bytes, first, len1) == 0);
    free(bytes);
    grpc_byte_buffer_destroy(second);
    grpc_byte_buffer_destroy(third);
    CHECK_INT(atomic_load(&released), 3);
    free(first);
}

/* Spooled while a slice holds the bytes (requeued for retry, evicted), then read back for the next send: the old
 * slice keeps the old bytes, the batch gets new ones, the request is the same. */
static void test_evict_and_load_while_shared(void)
{
    atomic_store(&released, 0);
    batch *b = make_batch(7, 80);
    size_t len, framed = b->len, n = b->n;
    const uint8_t *req = batch_request(b, "agent-x", NULL, 0, &len);
    uint8_t *disk = malloc(framed); /* what spool_append wrote */
    memcpy(disk, b->buf, framed);
    grpc_byte_buffer *old = share(b, req, len);
    batch_evict(b);
    CHECK(b->evicted && b->buf == NULL && b->n == n && b->len == framed);
    uint8_t *dst = batch_load_begin(b, framed);
    CHECK(dst != NULL);
    memcpy(dst, disk, framed); /* what spool_read reads */
    CHECK_INT(batch_load_end(b), 0);
    CHECK(!b->evicted && b->n == n);
    size_t len2;
    const uint8_t *req2 = batch_request(b, "agent-x", NULL, 0, &len2);
    CHECK_INT(len2, len);
    check_request(req2, len2, 7, 80);
    size_t got;
    uint8_t *bytes = read_all(old, &got);
    CHECK(got == len && memcmp(bytes, req2, len) == 0);
    free(bytes);
    grpc_byte_buffer_destroy(old);
    CHECK_INT(atomic_load(&released), 1);
    /* a frame that does not hold b->n entries is refused */
    dst = batch_load_begin(b, framed);
    memcpy(dst, disk, framed);
    b->n = n + 1;
    CHECK_INT(batch_load_end(b), -EINVAL);
    dst = batch_load_begin(b, framed);
    memset(dst, 0xff, framed);
    b->n = n;
    CHECK_INT(batch_load_end(b), -EINVAL);
    free(disk);
    batch_free(b);
}

/* Adding to a batch whose bytes a slice holds moves the batch to a copy; the slice's bytes do not change. */
static void test_add_to_shared_copies(void)
{
    atomic_store(&released, 0);
    batch *b = make_batch(8, 10);
    size_t len;
    const uint8_t *req = batch_request(b, "agent-x", NULL, 0, &len);
    uint8_t *before = malloc(len);
    memcpy(before, req, len);
    grpc_byte_buffer *held = share(b, req, len);
    uint8_t buf[256];
    CHECK_INT(batch_add(b, buf, encode_entry(10, buf, sizeof buf)), 0);
    size_t len2;
    const uint8_t *req2 = batch_request(b, "agent-x", NULL, 0, &len2);
    CHECK(req2 != req); /* moved to a copy */
    check_request(req2, len2, 8, 11);
    size_t got;
    uint8_t *bytes = read_all(held, &got);
    CHECK(got == len && memcmp(bytes, before, len) == 0);
    free(bytes);
    free(before);
    grpc_byte_buffer_destroy(held);
    batch_free(b);
    CHECK_INT(atomic_load(&released), 1);
}

/* Unary: one slice per entry, the batch settled first, the slices dropped by another thread (as gRPC's do). */
typedef struct held_set {
    grpc_byte_buffer **bb;
    size_t n;
} held_set;

static void *drop_all(void *arg)
{
    held_set *h = arg;
    for (size_t i = 0; i < h->n; i++) {
        size_t got;
        uint8_t *bytes = read_all(h->bb[i], &got);
        Logagent__V1__WriteLogRequest *one = logagent__v1__write_log_request__unpack(NULL, got, bytes);
        char want[64];
        snprintf(want, sizeof want, "message %zu", i);
        CHECK(one && strcmp(one->message, want) == 0);
        if (one)
            logagent__v1__write_log_request__free_unpacked(one, NULL);
        free(bytes);
        grpc_byte_buffer_destroy(h->bb[i]);
    }
    return NULL;
}

static void test_unary_entries_released_elsewhere(void)
{
    atomic_store(&released, 0);
    batch *b = make_batch(9, 200);
    held_set h = {calloc(b->n, sizeof *h.bb), b->n};
    for (size_t i = 0; i < b->n; i++) {
        size_t elen;
        const uint8_t *e = batch_entry(b, i, &elen);
        h.bb[i] = share(b, e, elen);
    }
    batch_free(b);
    pthread_t t;
    CHECK_INT(pthread_create(&t, NULL, drop_all, &h), 0);
    pthread_join(t, NULL);
    CHECK_INT(atomic_load(&released), 200);
    free(h.bb);
}

/* batch_strip_field: field 100 (the agent's metadata types) removed from every entry wherever it sits, frame
 * headers shrinking where an entry falls under 128 bytes; the other fields and entries intact; an entry that does
 * not parse refuses the whole batch unchanged. */
static void test_strip_field(void)
{
    batch *b = batch_new(9, 0);
    uint8_t e[400], *p;
    for (int i = 0; i < 4; i++) {
        size_t n = encode_entry(i, e, sizeof e);
        p = e + n;
        size_t pad = i == 1 ? 70 : 3; /* entry 1: 130+ bytes with the field, under 128 without */
        *p++ = 0xa2; /* field 100, wire 2: tag varint 0xa2 0x06 */
        *p++ = 0x06;
        *p++ = (uint8_t)pad;
        memset(p, 'x', pad);
        p += pad;
        if (i == 2) { /* field 100 in the middle too: before a message field written again */
            p = pbw_put_bytes(p, 3, "message 2", 9);
        }
        CHECK_INT(batch_add(b, e, (size_t)(p - e)), 0);
    }
    size_t before = b->len;
    long removed = batch_strip_field(b, 100);
    CHECK(removed > 0 && (size_t)removed == before - b->len);
    size_t len;
    const uint8_t *req = batch_request(b, "agent-x", NULL, 0, &len);
    check_request(req, len, 9, 4);
    for (size_t i = 0; i < b->n; i++) { /* no field 100 left in any entry */
        Logagent__V1__WriteLogRequest *w = logagent__v1__write_log_request__unpack(NULL, b->elen[i], b->buf + b->off[i]);
        CHECK(w != NULL && w->base.n_unknown_fields == 0);
        if (w)
            logagent__v1__write_log_request__free_unpacked(w, NULL);
    }
    CHECK_INT(batch_strip_field(b, 100), 0); /* nothing left to remove */
    b->buf[b->off[3]] = 0x0f; /* entry 3: a wire type that does not exist (7) */
    size_t len3 = b->len;
    CHECK_INT(batch_strip_field(b, 100), -EINVAL);
    CHECK_INT(b->len, len3);
    batch_free(b);
}

int main(void)
{
    grpc_init();
    test_assembly();
    test_reserve();
    test_slice_outlives_batch();
    test_retry_after_release();
    test_evict_and_load_while_shared();
    test_add_to_shared_copies();
    test_unary_entries_released_elsewhere();
    test_strip_field();
    grpc_shutdown();
    return check_done("test_batch");
}
