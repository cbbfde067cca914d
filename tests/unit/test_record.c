/* test_record.c — msgpack record -> WriteLogRequest: every key class, every value type, UTF-8, empty strings,
 * a 1 MiB message, the timestamp forms, levels, reserved keys, invalid records. Each case packs a record with
 * msgpack-c, encodes it with record_encode and decodes the bytes with the protobuf-c generated code. */
#include "check.h"
#include "record.h"

#include <errno.h>
#include <logagent/v1/log_service.pb-c.h>
#include <msgpack.h>
#include <stdlib.h>

#define NOW 1700000000123456789LL

typedef struct tc {
    msgpack_sbuffer sb;
    msgpack_packer pk;
} tc;

static void tc_begin(tc *t, uint32_t nkeys)
{
    msgpack_sbuffer_init(&t->sb);
    msgpack_packer_init(&t->pk, &t->sb, msgpack_sbuffer_write);
    msgpack_pack_map(&t->pk, nkeys);
}

static void key(tc *t, const char *k) { msgpack_pack_str_with_body(&t->pk, k, strlen(k)); }
static void str(tc *t, const char *v) { msgpack_pack_str_with_body(&t->pk, v, strlen(v)); }
static void kv(tc *t, const char *k, const char *v) { key(t, k); str(t, v); }

static record_source SRC = {.pid = 4242, .uid = 1000, .gid = 100, .comm = "myapp", .hostname = "host-1"};

/* Encodes the packed record; returns the decoded request (caller frees) or NULL, with *rc set. */
static Logagent__V1__WriteLogRequest *run(tc *t, record_info *info, int *rc)
{
    record_enc e;
    CHECK_INT(record_enc_init(&e), 0);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    CHECK_INT(msgpack_unpack_next(&u, t->sb.data, t->sb.size, &off), MSGPACK_UNPACK_SUCCESS);
    *rc = record_encode(&e, &u.data, &SRC, NOW, info);
    Logagent__V1__WriteLogRequest *req = NULL;
    if (*rc == 0) {
        req = logagent__v1__write_log_request__unpack(NULL, e.out_len, e.out);
        CHECK(req != NULL);
    }
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&t->sb);
    record_enc_free(&e);
    return req;
}

static const char *meta(const Logagent__V1__WriteLogRequest *r, const char *k)
{
    for (size_t i = 0; i < r->n_metadata; i++)
        if (strcmp(r->metadata[i]->key, k) == 0)
            return r->metadata[i]->value;
    return NULL;
}

static void test_direct_fields_and_source(void)
{
    tc t;
    tc_begin(&t, 7);
    kv(&t, "message", "user logged in");
    kv(&t, "service_name", "auth");
    kv(&t, "level", "error");
    kv(&t, "trace_id", "trace-1");
    kv(&t, "span_id", "span-1");
    kv(&t, "log_id", "0123456789abcdef0123456789abcdef");
    kv(&t, "user", "alice");
    record_info info;
    int rc;
    Logagent__V1__WriteLogRequest *r = run(&t, &info, &rc);
    CHECK_INT(rc, 0);
    if (!r)
        return;
    CHECK_STR(r->message, "user logged in");
    CHECK_STR(r->service_name, "auth");
    CHECK_STR(r->level, "ERROR");
    CHECK_STR(r->trace_id, "trace-1");
    CHECK_STR(r->span_id, "span-1");
    CHECK_STR(r->log_id, "0123456789abcdef0123456789abcdef");
    CHECK_INT(r->timestamp_unix_nano, NOW);
    CHECK_INT(r->n_metadata, 1);
    CHECK_STR(meta(r, "user"), "alice");
    CHECK(r->source != NULL);
    if (r->source) {
        CHECK_INT(r->source->pid, 4242);
        CHECK_INT(r->source->uid, 1000);
        CHECK_INT(r->source->gid, 100);
        CHECK_STR(r->source->comm, "myapp");
        CHECK_STR(r->source->hostname, "host-1");
    }
    logagent__v1__write_log_request__free_unpacked(r, NULL);
}

static void test_value_types(void)
{
    tc t;
    tc_begin(&t, 14);
    kv(&t, "message", "types");
    key(&t, "adv_id"); msgpack_pack_int64(&t.pk, 1234567);
    key(&t, "neg"); msgpack_pack_int64(&t.pk, -42);
    key(&t, "big"); msgpack_pack_uint64(&t.pk, UINT64_MAX);
    key(&t, "cpu"); msgpack_pack_double(&t.pk, 0.85);
    key(&t, "f32"); msgpack_pack_float(&t.pk, 1.5f);
    key(&t, "whole"); msgpack_pack_double(&t.pk, 2.0);
    key(&t, "yes"); msgpack_pack_true(&t.pk);
    key(&t, "no"); msgpack_pack_false(&t.pk);
    key(&t, "nothing"); msgpack_pack_nil(&t.pk);
    key(&t, "custom_metrics");
    msgpack_pack_map(&t.pk, 2);
    kv(&t, "cpu_usage", "hi\"q");
    key(&t, "list");
    msgpack_pack_array(&t.pk, 3);
    msgpack_pack_int(&t.pk, 1);
    msgpack_pack_nil(&t.pk);
    msgpack_pack_true(&t.pk);
    key(&t, "arr");
    msgpack_pack_array(&t.pk, 2);
    str(&t, "a");
    msgpack_pack_double(&t.pk, 0.5);
    key(&t, "blob"); msgpack_pack_bin_with_body(&t.pk, "\x00\x01\x02\xff", 4);
    key(&t, "ext"); msgpack_pack_ext_with_body(&t.pk, "abc", 3, 5);
    record_info info;
    int rc;
    Logagent__V1__WriteLogRequest *r = run(&t, &info, &rc);
    CHECK_INT(rc, 0);
    if (!r)
        return;
    CHECK_STR(meta(r, "adv_id"), "1234567");
    CHECK_STR(meta(r, "neg"), "-42");
    CHECK_STR(meta(r, "big"), "18446744073709551615");
    CHECK_STR(meta(r, "cpu"), "0.85");
    CHECK_STR(meta(r, "f32"), "1.5");
    CHECK_STR(meta(r, "whole"), "2.0");
    CHECK_STR(meta(r, "yes"), "true");
    CHECK_STR(meta(r, "no"), "false");
    CHECK_STR(meta(r, "nothing"), "");
    CHECK_STR(meta(r, "custom_metrics"), "{\"cpu_usage\":\"hi\\\"q\",\"list\":[1,null,true]}");
    CHECK_STR(meta(r, "arr"), "[\"a\",0.5]");
    CHECK_STR(meta(r, "blob"), "AAEC/w==");
    CHECK_STR(meta(r, "ext"), "YWJj");
    CHECK_STR(r->level, "INFO");
    CHECK_INT(strlen(r->log_id), 32);
    logagent__v1__write_log_request__free_unpacked(r, NULL);
}

static void test_utf8_and_empty(void)
{
    tc t;
    tc_begin(&t, 4);
    kv(&t, "message", "");
    kv(&t, "service_name", "caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80");
    kv(&t, "bad", "a\xff" "b\xc3");
    kv(&t, "empty", "");
    record_info info;
    int rc;
    Logagent__V1__WriteLogRequest *r = run(&t, &info, &rc);
    CHECK_INT(rc, 0);
    if (!r)
        return;
    CHECK_STR(r->message, "");
    CHECK_STR(r->service_name, "caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80");
    CHECK_STR(meta(r, "bad"), "a\xef\xbf\xbd" "b\xef\xbf\xbd");
    CHECK_STR(meta(r, "empty"), "");
    CHECK(info.utf8_repaired);
    logagent__v1__write_log_request__free_unpacked(r, NULL);
}

static void test_big_message(void)
{
    size_t n = 1 << 20;
    char *big = malloc(n + 1);
    memset(big, 'm', n);
    big[n] = 0;
    tc t;
    tc_begin(&t, 1);
    kv(&t, "message", big);
    record_info info;
    int rc;
    Logagent__V1__WriteLogRequest *r = run(&t, &info, &rc);
    CHECK_INT(rc, 0);
    if (r) {
        CHECK_INT(strlen(r->message), n);
        CHECK(memcmp(r->message, big, n) == 0);
        logagent__v1__write_log_request__free_unpacked(r, NULL);
    }
    free(big);
}

/* One record with timestamp packed by `pack`; returns its timestamp, and the metadata "timestamp" in *kept. */
static int64_t ts_case(void (*pack)(tc *), char *kept, size_t kept_cap)
{
    tc t;
    tc_begin(&t, 2);
    kv(&t, "message", "ts");
    key(&t, "timestamp");
    pack(&t);
    record_info info;
    int rc;
    Logagent__V1__WriteLogRequest *r = run(&t, &info, &rc);
    CHECK_INT(rc, 0);
    if (!r)
        return -1;
    int64_t v = r->timestamp_unix_nano;
    const char *m = meta(r, "timestamp");
    snprintf(kept, kept_cap, "%s", m ? m : "");
    logagent__v1__write_log_request__free_unpacked(r, NULL);
    return v;
}

static void p_int(tc *t) { msgpack_pack_int64(&t->pk, 1725013845123456789LL); }
static void p_float(tc *t) { msgpack_pack_double(&t->pk, 1725013845.5); }
static void p_ext4(tc *t) { msgpack_pack_ext_with_body(&t->pk, "\x66\xd1\x9f\x55", 4, -1); }
static void p_ext8(tc *t) /* 1725013845 s + 250 ns */
{
    uint64_t v = ((uint64_t)250 << 34) | 1725013845ULL;
    unsigned char b[8];
    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)(v >> (56 - 8 * i));
    msgpack_pack_ext_with_body(&t->pk, b, 8, -1);
}
static void p_ext12(tc *t) { msgpack_pack_ext_with_body(&t->pk, "\x00\x00\x00\x07\x00\x00\x00\x00\x66\xd1\x9f\x55", 12, -1); }
static void p_rfc(tc *t) { str(t, "2024-08-30T10:30:45.123456+00:00"); }
static void p_rfc_z(tc *t) { str(t, "2024-08-30T10:30:45Z"); }
static void p_rfc_off(tc *t) { str(t, "2024-08-30T12:30:45.5+02:00"); }
static void p_bad(tc *t) { str(t, "yesterday at noon"); }
static void p_bool(tc *t) { msgpack_pack_true(&t->pk); }

static void test_timestamps(void)
{
    char kept[64];
    CHECK_INT(ts_case(p_int, kept, sizeof kept), 1725013845123456789LL);
    CHECK_INT(ts_case(p_float, kept, sizeof kept), 1725013845500000000LL);
    CHECK_INT(ts_case(p_ext4, kept, sizeof kept), 1725013845000000000LL);
    CHECK_INT(ts_case(p_ext8, kept, sizeof kept), 1725013845000000250LL);
    CHECK_INT(ts_case(p_ext12, kept, sizeof kept), 1725013845000000007LL);
    CHECK_INT(ts_case(p_rfc, kept, sizeof kept), 1725013845123456000LL);
    CHECK_STR(kept, "");
    CHECK_INT(ts_case(p_rfc_z, kept, sizeof kept), 1725013845000000000LL);
    CHECK_INT(ts_case(p_rfc_off, kept, sizeof kept), 1725013845500000000LL);
    CHECK_INT(ts_case(p_bad, kept, sizeof kept), NOW);
    CHECK_STR(kept, "yesterday at noon");
    CHECK_INT(ts_case(p_bool, kept, sizeof kept), NOW);
    CHECK_STR(kept, "true");
    int64_t v;
    CHECK_INT(record_parse_rfc3339("1970-01-01T00:00:00Z", 20, &v), 0);
    CHECK_INT(v, 0);
    CHECK_INT(record_parse_rfc3339("2024-13-01T00:00:00Z", 20, &v), -EINVAL);
    CHECK_INT(record_parse_rfc3339("2024-01-01T00:00:00", 19, &v), -EINVAL);
}

static const char *level_of(const char *sent, int *unknown)
{
    static char out[32];
    tc t;
    tc_begin(&t, 2);
    kv(&t, "message", "m");
    kv(&t, "level", sent);
    record_info info;
    int rc;
    Logagent__V1__WriteLogRequest *r = run(&t, &info, &rc);
    out[0] = 0;
    if (r) {
        snprintf(out, sizeof out, "%s", r->level);
        logagent__v1__write_log_request__free_unpacked(r, NULL);
    }
    *unknown = info.level_unknown;
    return out;
}

static void test_levels(void)
{
    int u;
    CHECK_STR(level_of("info", &u), "INFO");
    CHECK_INT(u, 0);
    CHECK_STR(level_of("Warning", &u), "WARN");
    CHECK_STR(level_of("CRITICAL", &u), "FATAL");
    CHECK_STR(level_of("trace", &u), "TRACE");
    CHECK_STR(level_of("debug", &u), "DEBUG");
    CHECK_STR(level_of("fatal", &u), "FATAL");
    CHECK_STR(level_of("Verbose", &u), "Verbose");
    CHECK_INT(u, 1);
}

static void test_reserved_and_nonstring_keys(void)
{
    tc t;
    tc_begin(&t, 4);
    kv(&t, "message", "m");
    kv(&t, "_pid", "1");
    kv(&t, "_uid", "0");
    msgpack_pack_int(&t.pk, 7);
    str(&t, "seven");
    record_info info;
    int rc;
    Logagent__V1__WriteLogRequest *r = run(&t, &info, &rc);
    CHECK_INT(rc, 0);
    CHECK_INT(info.reserved_keys, 2);
    if (r) {
        CHECK_INT(r->n_metadata, 1);
        CHECK_STR(meta(r, "7"), "seven");
        CHECK(r->source && r->source->pid == 4242);
        logagent__v1__write_log_request__free_unpacked(r, NULL);
    }
}

static void test_invalid(void)
{
    record_info info;
    int rc;
    tc t;
    tc_begin(&t, 1); /* no message */
    kv(&t, "level", "INFO");
    CHECK(run(&t, &info, &rc) == NULL);
    CHECK_INT(rc, -EINVAL);
    tc_begin(&t, 1); /* message not a string */
    key(&t, "message");
    msgpack_pack_int(&t.pk, 5);
    CHECK(run(&t, &info, &rc) == NULL);
    CHECK_INT(rc, -EINVAL);
    msgpack_sbuffer_init(&t.sb); /* not a map */
    msgpack_packer_init(&t.pk, &t.sb, msgpack_sbuffer_write);
    msgpack_pack_array(&t.pk, 1);
    str(&t, "message");
    CHECK(run(&t, &info, &rc) == NULL);
    CHECK_INT(rc, -EINVAL);
}

static void test_log_ids_unique(void)
{
    char first[40] = "";
    for (int i = 0; i < 2; i++) {
        tc t;
        tc_begin(&t, 1);
        kv(&t, "message", "m");
        record_info info;
        int rc;
        Logagent__V1__WriteLogRequest *r = run(&t, &info, &rc);
        if (!r)
            continue;
        CHECK_INT(strlen(r->log_id), 32);
        CHECK(strspn(r->log_id, "0123456789abcdef") == 32);
        if (i == 0)
            snprintf(first, sizeof first, "%s", r->log_id);
        else
            CHECK(strcmp(first, r->log_id) != 0);
        logagent__v1__write_log_request__free_unpacked(r, NULL);
    }
}

/* Hostile shapes found by fuzzing: container keys nested as keys (their escaped JSON used to double per level),
 * and timestamps beyond int64 nanoseconds (2262). */
static void test_hostile_shapes(void)
{
    tc t;
    tc_begin(&t, 2);
    kv(&t, "message", "x");
    key(&t, "k");
    for (int i = 0; i < 26; i++)
        msgpack_pack_map(&t.pk, 1); /* {{{...{"\"":nil}...}:nil}:nil} */
    str(&t, "\"");
    msgpack_pack_nil(&t.pk);
    for (int i = 0; i < 25; i++)
        msgpack_pack_nil(&t.pk);
    record_info info;
    int rc;
    Logagent__V1__WriteLogRequest *r = run(&t, &info, &rc);
    CHECK_INT(rc, 0);
    if (r) {
        CHECK(strlen(meta(r, "k")) < 300);
        CHECK(strncmp(meta(r, "k"), "{\"(map)\":", 9) == 0);
        logagent__v1__write_log_request__free_unpacked(r, NULL);
    }
    tc_begin(&t, 2);
    kv(&t, "message", "far future");
    kv(&t, "timestamp", "9999-12-31T23:59:59Z");
    r = run(&t, &info, &rc);
    CHECK(r && r->timestamp_unix_nano == NOW && strcmp(meta(r, "timestamp"), "9999-12-31T23:59:59Z") == 0);
    if (r)
        logagent__v1__write_log_request__free_unpacked(r, NULL);
    tc_begin(&t, 2);
    kv(&t, "message", "ext8 overflow");
    key(&t, "timestamp");
    msgpack_pack_ext_with_body(&t.pk, "\xff\xff\xff\xff\xff\xff\xff\xff", 8, -1);
    r = run(&t, &info, &rc);
    CHECK(r && r->timestamp_unix_nano == NOW && meta(r, "timestamp") != NULL);
    if (r)
        logagent__v1__write_log_request__free_unpacked(r, NULL);
}

/* A record whose converted text passes the encoder's limit is refused (-E2BIG), not built. */
static void test_text_limit(void)
{
    record_enc e;
    CHECK_INT(record_enc_init(&e), 0);
    e.text_limit = 1000;
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 2);
    msgpack_pack_str_with_body(&pk, "message", 7);
    msgpack_pack_str_with_body(&pk, "m", 1);
    msgpack_pack_str_with_body(&pk, "nils", 4);
    msgpack_pack_array(&pk, 600);
    for (int i = 0; i < 600; i++)
        msgpack_pack_nil(&pk); /* 600 bytes of msgpack, 3000 of JSON */
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    msgpack_unpack_next(&u, sb.data, sb.size, &off);
    record_info info;
    CHECK(record_encode(&e, &u.data, &SRC, NOW, &info) < 0);
    CHECK(record_encode(&e, &u.data, &SRC, NOW, &info) != -EINVAL);
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&sb);
    record_enc_free(&e);
}

int main(void)
{
    test_hostile_shapes();
    test_text_limit();
    test_direct_fields_and_source();
    test_value_types();
    test_utf8_and_empty();
    test_big_message();
    test_timestamps();
    test_levels();
    test_reserved_and_nonstring_keys();
    test_invalid();
    test_log_ids_unique();
    return check_done("test_record");
}
