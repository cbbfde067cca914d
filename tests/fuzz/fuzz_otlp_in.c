/* fuzz_otlp_in.c — libFuzzer target: an OTLP/HTTP logs request body (POST /v1/logs), through what http_ingest.c
 * does with it: otlp_in_parse (protobuf-c, or jansson into the same structs -> one msgpack map per LogRecord) ->
 * record_encode.
 *
 * The first input byte picks the encoding (even: protobuf, odd: OTLP JSON); the rest is the body, as evhttp hands
 * it over (gzip is inflated before, by common/gunzip.c). Besides ASan/UBSan, the target aborts on:
 *  - a return value outside the contract (records handed to the callback, or -EINVAL with a status and a text);
 *  - record indexes that are not 0, 1, 2, ... in order;
 *  - an OK record that is not a map with a string `message` and a 32-character `log_id`, or that record_encode
 *    refuses as invalid (the parser promised a record), or a refused record without an error text. */
#include "fuzz_common.h"

#include "ingest/otlp_in.h"
#include "record.h"

typedef struct run {
    record_enc enc;
    size_t next_index;
} run;

static const msgpack_object *get(const msgpack_object *o, const char *key)
{
    size_t n = strlen(key);
    for (uint32_t i = 0; o->type == MSGPACK_OBJECT_MAP && i < o->via.map.size; i++) {
        const msgpack_object_kv *kv = &o->via.map.ptr[i];
        if (kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == n && !memcmp(kv->key.via.str.ptr, key, n))
            return &kv->val;
    }
    return NULL;
}

static int on_record(void *arg, const http_json_entry *e)
{
    run *r = arg;
    FUZZ_CHECK(e->index == r->next_index, "index %zu, expected %zu", e->index, r->next_index);
    r->next_index++;
    if (e->status != HTTP_JSON_OK) {
        FUZZ_CHECK(e->error && e->error[0], "refused record %zu without an error text", e->index);
        return 0;
    }
    const msgpack_object *msg = get(e->record, "message"), *id = get(e->record, "log_id");
    FUZZ_CHECK(msg && msg->type == MSGPACK_OBJECT_STR, "record %zu: no string message", e->index);
    FUZZ_CHECK(id && id->type == MSGPACK_OBJECT_STR && id->via.str.size == 32, "record %zu: no log_id", e->index);
    record_source src = {.pid = 0, .comm = "http", .hostname = "host"};
    record_info info;
    int rc = record_encode(&r->enc, e->record, &src, 1725013845123456789LL, &info);
    FUZZ_CHECK(rc != -EINVAL, "record %zu: the parser's record refused by record_encode", e->index);
    return 0;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    run r = {0};
    FUZZ_CHECK(record_enc_init(&r.enc) == 0, "record_enc_init");
    r.enc.text_limit = 64 << 10;
    char *body = malloc(size - 1 ? size - 1 : 1); /* its own size exactly: ASan sees any read past its end */
    memcpy(body, data + 1, size - 1);
    http_json_error err = {0};
    int n = otlp_in_parse(body, size - 1, data[0] & 1 ? OTLP_IN_JSON : OTLP_IN_PROTOBUF, on_record, &r, &err);
    if (n == -EINVAL)
        FUZZ_CHECK((err.status == HTTP_JSON_MALFORMED || err.status == HTTP_JSON_INVALID) && err.text[0],
                   "whole-body refusal without a status and text");
    else
        FUZZ_CHECK(n >= 0 && (size_t)n == r.next_index, "returned %d, handed over %zu", n, r.next_index);
    free(body);
    record_enc_free(&r.enc);
    return 0;
}
