/* fuzz_http_json.c — libFuzzer target: an HTTP ingest request body, through what http_ingest.c does with it:
 * http_json_parse (jansson -> msgpack maps, one entry or many: array, one object, NDJSON) -> record_encode.
 *
 * The first input byte picks the route (even: /api/write_log/, odd: /api/write_logs/); the rest is the body, not
 * NUL-terminated, as evhttp hands it over. Besides ASan/UBSan, the target aborts on:
 *  - a return value outside the contract (entries handed to the callback, or -EINVAL with a status and a text);
 *  - entry indexes that are not 0, 1, 2, ... in order, or a write_log body handing over more than one entry;
 *  - an OK entry whose record is not a map with a string `message`, or that record_encode refuses as invalid
 *    (the parser promised a record), or a bad entry without an error text;
 *  - an encoded record whose log_id is not 32 characters when the body gave none. */
#include "fuzz_common.h"

#include "ingest/http_json.h"
#include "record.h"

typedef struct run {
    record_enc enc;
    size_t next_index;
    int mode;
} run;

static int has_string_message(const msgpack_object *o)
{
    if (o->type != MSGPACK_OBJECT_MAP)
        return 0;
    for (uint32_t i = 0; i < o->via.map.size; i++) {
        const msgpack_object_kv *kv = &o->via.map.ptr[i];
        if (kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == 7 &&
            !memcmp(kv->key.via.str.ptr, "message", 7))
            return kv->val.type == MSGPACK_OBJECT_STR;
    }
    return 0;
}

static int on_entry(void *arg, const http_json_entry *e)
{
    run *r = arg;
    FUZZ_CHECK(e->index == r->next_index, "index %zu, expected %zu", e->index, r->next_index);
    FUZZ_CHECK(r->mode == HTTP_JSON_MANY || e->index == 0, "write_log body with entry %zu", e->index);
    r->next_index++;
    if (e->status != HTTP_JSON_OK) {
        FUZZ_CHECK(e->error && e->error[0], "bad entry %zu without an error text", e->index);
        return 0;
    }
    FUZZ_CHECK(e->record && has_string_message(e->record), "entry %zu: OK but no map with a string message",
               e->index);
    record_source src = {.pid = 42, .uid = 1000, .gid = 1000, .comm = "fuzz", .hostname = "host"};
    record_info info;
    int rc = record_encode(&r->enc, e->record, &src, 1725013845123456789LL, &info);
    FUZZ_CHECK(rc != -EINVAL, "entry %zu: the parser's record refused by record_encode", e->index);
    if (rc == 0)
        FUZZ_CHECK(info.log_id && info.log_id_len > 0, "entry %zu: encoded without a log_id", e->index);
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
    run r = {.mode = data[0] & 1 ? HTTP_JSON_MANY : HTTP_JSON_ONE};
    FUZZ_CHECK(record_enc_init(&r.enc) == 0, "record_enc_init");
    r.enc.text_limit = 64 << 10;
    /* the body in a buffer of its own size exactly: ASan sees any read past its end */
    char *body = malloc(size - 1 ? size - 1 : 1);
    memcpy(body, data + 1, size - 1);
    http_json_error err = {0};
    int n = http_json_parse(body, size - 1, (enum http_json_mode)r.mode, on_entry, &r, &err);
    if (n == -EINVAL)
        FUZZ_CHECK((err.status == HTTP_JSON_MALFORMED || err.status == HTTP_JSON_INVALID) && err.text[0],
                   "whole-body refusal without a status and text");
    else
        FUZZ_CHECK(n >= 0 && (size_t)n == r.next_index, "returned %d, handed over %zu", n, r.next_index);
    free(body);
    record_enc_free(&r.enc);
    return 0;
}
