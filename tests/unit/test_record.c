/* test_record.c — msgpack record -> WriteLogRequest: every key class, every value type, UTF-8, empty strings,
 * a 1 MiB message, the timestamp forms (and values that are not times: kept as metadata), repeated keys, levels,
 * reserved keys, invalid records, and the metadata types field
 * (--upstream-protocol otlp) read back by otlp_payload as typed OTLP values; numbers formatted by hand against
 * printf/strtod; every prefix of a record refused cleanly. Each case packs a record with msgpack-c, encodes it
 * with record_encode_raw (the bytes) and record_encode (the object) — both must agree — and decodes the result
 * with the protobuf-c generated code. */
#include "check.h"
#include "record.h"

#include "flush/batch.h"
#include "flush/otlp.h"

#include <errno.h>
#include <math.h>
#include <logagent/v1/log_service.pb-c.h>
#include <msgpack.h>
#include <opentelemetry/proto/collector/logs/v1/logs_service.pb-c.h>
#include <stdlib.h>

#define NOW 1700000000123456789LL

typedef Opentelemetry__Proto__Common__V1__AnyValue AnyValue;
typedef Opentelemetry__Proto__Common__V1__KeyValue KeyValue;
typedef Opentelemetry__Proto__Logs__V1__LogRecord LogRecord;
typedef Opentelemetry__Proto__Collector__Logs__V1__ExportLogsServiceRequest ExportRequest;

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

/* Encodes the packed record; returns the decoded request (caller frees) or NULL, with *rc set. Both entry points
 * run: record_encode_raw on the packed bytes (the ingest path) and record_encode on the unpacked object (Forward,
 * HTTP), and must give the same result, byte for byte (the two encoders share a log_id generator state). */
static Logagent__V1__WriteLogRequest *run(tc *t, record_info *info, int *rc)
{
    record_enc e, eo;
    CHECK_INT(record_enc_init(&e), 0);
    CHECK_INT(record_enc_init(&eo), 0);
    memcpy(eo.rng, e.rng, sizeof e.rng);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    CHECK_INT(msgpack_unpack_next(&u, t->sb.data, t->sb.size, &off), MSGPACK_UNPACK_SUCCESS);
    uint64_t rng0[2] = {e.rng[0], e.rng[1]};
    *rc = record_encode_raw(&e, t->sb.data, t->sb.size, &SRC, NOW, info);
    record_info io;
    int rco = record_encode(&eo, &u.data, &SRC, NOW, &io);
    CHECK_INT(rco, *rc);
    CHECK_INT(io.reserved_keys, info->reserved_keys);
    CHECK_INT(io.level_unknown, info->level_unknown);
    CHECK_INT(io.timestamp_unparsed, info->timestamp_unparsed);
    CHECK_INT(io.service_len, info->service_len);
    if (*rc == 0) {
        CHECK_INT(info->wire_len, t->sb.size);
        CHECK_INT(eo.out_len, e.out_len);
        CHECK(eo.out_len == e.out_len && memcmp(eo.out, e.out, e.out_len) == 0);
    }
    record_enc ep; /* record_prepare_raw + record_write (straight into the ring): the same result, the same bytes */
    CHECK_INT(record_enc_init(&ep), 0);
    memcpy(ep.rng, rng0, sizeof rng0); /* the state before this record: the same log_id if one is made */
    record_info ip;
    CHECK_INT(record_prepare_raw(&ep, t->sb.data, t->sb.size, &SRC, NOW, &ip), *rc);
    if (*rc == 0) {
        uint8_t *w = malloc(ep.out_len + 1);
        CHECK(ep.out_pending && ep.out_len == e.out_len && w != NULL);
        if (w) {
            w[ep.out_len] = 0xa5;
            CHECK_INT(record_write(&ep, w), e.out_len);
            CHECK(memcmp(w, e.out, e.out_len) == 0 && w[ep.out_len] == 0xa5); /* exactly out_len bytes */
        }
        free(w);
    }
    record_enc_free(&ep);
    Logagent__V1__WriteLogRequest *req = NULL;
    if (*rc == 0) {
        req = logagent__v1__write_log_request__unpack(NULL, e.out_len, e.out);
        CHECK(req != NULL);
    }
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&t->sb);
    record_enc_free(&e);
    record_enc_free(&eo);
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

static int last_unparsed; /* ts_case: the record's info.timestamp_unparsed */

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
    last_unparsed = info.timestamp_unparsed;
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
static void p_ext8_ns(tc *t) /* 1 s + 10^9 ns: the 30-bit nanosecond field holds it, but it is not a nanosecond */
{
    uint64_t v = ((uint64_t)1000000000 << 34) | 1ULL;
    unsigned char b[8];
    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)(v >> (56 - 8 * i));
    msgpack_pack_ext_with_body(&t->pk, b, 8, -1);
}
static void p_ext12_ns(tc *t) /* 10^9 ns */
{
    msgpack_pack_ext_with_body(&t->pk, "\x3b\x9a\xca\x00\0\0\0\0\x66\xd1\x9f\x55", 12, -1);
}
static void p_ext12_neg(tc *t) /* -2 s */
{
    msgpack_pack_ext_with_body(&t->pk, "\0\0\0\0\xff\xff\xff\xff\xff\xff\xff\xfe", 12, -1);
}
static void p_neg(tc *t) { msgpack_pack_int64(&t->pk, -5); }
static void p_neg_float(tc *t) { msgpack_pack_double(&t->pk, -1.5); }
static void p_feb30(tc *t) { str(t, "2024-02-30T00:00:00Z"); }
static void p_feb29_2023(tc *t) { str(t, "2023-02-29T00:00:00Z"); }
static void p_apr31(tc *t) { str(t, "2024-04-31T00:00:00Z"); }
static void p_hour25(tc *t) { str(t, "2024-01-01T25:00:00Z"); }
static void p_1969(tc *t) { str(t, "1969-12-31T23:59:59Z"); }
static void p_feb29_2024(tc *t) { str(t, "2024-02-29T00:00:00Z"); }
static void p_leap_second(tc *t) { str(t, "2016-12-31T23:59:60Z"); }

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
    CHECK_INT(record_parse_rfc3339("2000-02-29T00:00:00Z", 20, &v), 0);   /* divisible by 400: leap */
    CHECK_INT(record_parse_rfc3339("1900-02-29T00:00:00Z", 20, &v), -EINVAL); /* by 100: not */
    /* the fraction: up to nanoseconds, digits past them read and ignored; lower-case and space separators */
    CHECK_INT(record_parse_rfc3339("1970-01-01t00:00:01.123456789123z", 33, &v), 0);
    CHECK_INT(v, 1123456789LL);
    CHECK_INT(record_parse_rfc3339("1970-01-01 00:00:00.5Z", 22, &v), 0);
    CHECK_INT(v, 500000000LL);
    CHECK_INT(record_parse_rfc3339("1970-01-01T00:00:00.Z", 21, &v), -EINVAL);
    /* offsets: east is earlier in UTC; truncated and out-of-range ones are refused */
    CHECK_INT(record_parse_rfc3339("1970-01-01T05:30:00+05:30", 25, &v), 0);
    CHECK_INT(v, 0);
    CHECK_INT(record_parse_rfc3339("1970-01-01T00:00:00-00:01", 25, &v), 0);
    CHECK_INT(v, 60000000000LL);
    CHECK_INT(record_parse_rfc3339("1970-01-01T00:00:00+05:3", 24, &v), -EINVAL);
    CHECK_INT(record_parse_rfc3339("1970-01-01T00:00:00+24:00", 25, &v), -EINVAL);
    CHECK_INT(record_parse_rfc3339("1970-01-01T00:00:00+05-30", 25, &v), -EINVAL);
    CHECK_INT(record_parse_rfc3339("1970-01-01T00:00:00Z ", 21, &v), -EINVAL);
    /* every place of the fixed part must be a digit or its separator; the length is checked before any read */
    static const char good[] = "2024-06-15T12:34:56Z";
    for (size_t i = 0; i + 1 < sizeof good; i++) {
        char bad[sizeof good];
        memcpy(bad, good, sizeof good);
        bad[i] = bad[i] == '5' ? 'x' : '/';
        CHECK_INT(record_parse_rfc3339(bad, sizeof good - 1, &v), -EINVAL);
        CHECK_INT(record_parse_rfc3339(good, i, &v), -EINVAL);
    }
    CHECK_INT(record_parse_rfc3339(good, sizeof good - 1, &v), 0);
}

/* Values that are not times are kept as metadata `timestamp` (their text form), counted, the receive time used:
 * msgpack timestamps with nanoseconds >= 10^9, dates that do not exist, and anything before 1970. */
static void test_bad_timestamps(void)
{
    static const struct { void (*pack)(tc *); const char *kept; } bad[] = {
        {p_ext8_ns, "7msoAAAAAAE="}, /* base64 of the ext's 8 bytes */
        {p_ext12_ns, "O5rKAAAAAABm0Z9V"},
        {p_ext12_neg, "AAAAAP/////////+"},
        {p_neg, "-5"},
        {p_neg_float, "-1.5"},
        {p_feb30, "2024-02-30T00:00:00Z"},
        {p_feb29_2023, "2023-02-29T00:00:00Z"},
        {p_apr31, "2024-04-31T00:00:00Z"},
        {p_hour25, "2024-01-01T25:00:00Z"},
        {p_1969, "1969-12-31T23:59:59Z"},
    };
    char kept[64];
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK_INT(ts_case(bad[i].pack, kept, sizeof kept), NOW);
        CHECK_STR(kept, bad[i].kept);
        CHECK_INT(last_unparsed, 1);
    }
    CHECK_INT(ts_case(p_feb29_2024, kept, sizeof kept), 1709164800000000000LL);
    CHECK_STR(kept, "");
    CHECK_INT(last_unparsed, 0);
    CHECK_INT(ts_case(p_leap_second, kept, sizeof kept), 1483228800000000000LL); /* = 2017-01-01T00:00:00Z */
}

/* A key given twice: the last is the field, the earlier value is kept in metadata under the same key. */
static void test_repeated_keys(void)
{
    static const char *const keys[] = {"message", "log_id", "service_name", "level", "trace_id", "span_id"};
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
        tc t;
        int first_is_message = k == 0;
        tc_begin(&t, first_is_message ? 3 : 4);
        kv(&t, keys[k], "first");
        if (!first_is_message)
            kv(&t, "message", "m");
        kv(&t, "other", "o");
        kv(&t, keys[k], k == 3 ? "warn" : "second");
        record_info info;
        int rc;
        Logagent__V1__WriteLogRequest *r = run(&t, &info, &rc);
        CHECK_INT(rc, 0);
        if (!r)
            continue;
        const char *field = k == 0 ? r->message : k == 1 ? r->log_id : k == 2 ? r->service_name
                          : k == 3 ? r->level : k == 4 ? r->trace_id : r->span_id;
        CHECK_STR(field, k == 3 ? "WARN" : "second");
        const char *m = meta(r, keys[k]);
        CHECK(m && strcmp(m, "first") == 0);
        CHECK_INT(r->n_metadata, 2); /* other, and the first value */
        logagent__v1__write_log_request__free_unpacked(r, NULL);
    }
    /* three timestamps: the last that parses is the time; the others are kept (the bad one as always) */
    tc t;
    tc_begin(&t, 4);
    kv(&t, "message", "m");
    key(&t, "timestamp"), msgpack_pack_int64(&t.pk, 1000);
    key(&t, "timestamp"), msgpack_pack_int64(&t.pk, 2000);
    kv(&t, "timestamp", "not a time");
    record_info info;
    int rc;
    Logagent__V1__WriteLogRequest *r = run(&t, &info, &rc);
    CHECK_INT(rc, 0);
    if (r) {
        CHECK_INT(r->timestamp_unix_nano, 2000);
        CHECK_INT(r->n_metadata, 2);
        CHECK_STR(r->metadata[0]->value, "1000");
        CHECK_STR(r->metadata[1]->value, "not a time");
        logagent__v1__write_log_request__free_unpacked(r, NULL);
    }
    /* a repeated message that is not a string still makes the record invalid */
    tc_begin(&t, 2);
    kv(&t, "message", "m");
    key(&t, "message"), msgpack_pack_int(&t.pk, 1);
    r = run(&t, &info, &rc);
    CHECK_INT(rc, -EINVAL);
    CHECK(r == NULL);
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

/* A made log_id is the generator's next two 64-bit values (xorshift128+) in hex, each value's lowest nibble first:
 * the digits record.c writes 8 at a time checked against a digit at a time, over states that give every nibble. */
static void test_log_id_digits(void)
{
    static const uint64_t states[][2] = {{1, 2}, {0x0123456789abcdefULL, 0xfedcba9876543210ULL},
                                         {UINT64_MAX, UINT64_MAX}, {0x9e3779b97f4a7c15ULL, 0xbf58476d1ce4e5b9ULL}};
    for (size_t n = 0; n < sizeof states / sizeof states[0]; n++) {
        record_enc e;
        CHECK_INT(record_enc_init(&e), 0);
        uint64_t st[2] = {states[n][0], states[n][1]};
        memcpy(e.rng, st, sizeof st);
        char want[33];
        for (int w = 0; w < 2; w++) { /* xorshift128+, as record.c's rng_next */
            uint64_t a = st[0], b = st[1];
            st[0] = b;
            a ^= a << 23;
            st[1] = a ^ b ^ (a >> 17) ^ (b >> 26);
            uint64_t v = st[1] + b;
            for (int i = 0; i < 16; i++, v >>= 4)
                want[16 * w + i] = "0123456789abcdef"[v & 15];
        }
        want[32] = 0;
        tc t;
        tc_begin(&t, 1);
        kv(&t, "message", "m");
        record_info info;
        CHECK_INT(record_encode_raw(&e, t.sb.data, t.sb.size, &SRC, NOW, &info), 0);
        CHECK(info.log_id_len == 32 && !memcmp(info.log_id, want, 32));
        if (info.log_id_len == 32 && memcmp(info.log_id, want, 32))
            fprintf(stderr, "log_id %.32s, want %s\n", info.log_id, want);
        msgpack_sbuffer_destroy(&t.sb);
        record_enc_free(&e);
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

/* ---- metadata types (record.h RECORD_F_META_TYPES; --upstream-protocol otlp) ----------------------- */

/* One record with a value of every msgpack type, "tail" (a string) last. */
static void pack_typed(tc *t)
{
    tc_begin(t, 13);
    kv(t, "message", "typed");
    kv(t, "log_id", "0123456789abcdef0123456789abcdef");
    key(t, "n"); msgpack_pack_int64(&t->pk, 7);
    key(t, "x"); msgpack_pack_double(&t->pk, 0.85);
    key(t, "ok"); msgpack_pack_true(&t->pk);
    key(t, "nested");
    msgpack_pack_map(&t->pk, 1);
    key(t, "a");
    msgpack_pack_array(&t->pk, 2);
    msgpack_pack_int(&t->pk, 1);
    str(t, "b");
    kv(t, "s", "text");
    key(t, "none"); msgpack_pack_nil(&t->pk);
    key(t, "bin"); msgpack_pack_bin_with_body(&t->pk, "\x00\x01", 2);
    key(t, "big"); msgpack_pack_uint64(&t->pk, UINT64_MAX);
    key(t, "ext"); msgpack_pack_ext_with_body(&t->pk, "abc", 3, 5);
    key(t, "arr"); msgpack_pack_array(&t->pk, 0);
    kv(t, "tail", "t");
}

/* Encodes t's record with e (typed or not) into a malloc'd copy of the bytes. */
static uint8_t *encode_copy(record_enc *e, tc *t, size_t *len)
{
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    CHECK_INT(msgpack_unpack_next(&u, t->sb.data, t->sb.size, &off), MSGPACK_UNPACK_SUCCESS);
    record_info info;
    CHECK_INT(record_encode(e, &u.data, &SRC, NOW, &info), 0);
    uint8_t *copy = malloc(e->out_len);
    CHECK(copy != NULL);
    if (copy)
        memcpy(copy, e->out, e->out_len);
    *len = e->out_len;
    msgpack_unpacked_destroy(&u);
    return copy;
}

static void test_meta_types_field(void)
{
    static const char expect[] = "ifbmsnxssa"; /* n x ok nested s none bin big ext arr; "tail" trimmed */
    record_enc e;
    CHECK_INT(record_enc_init(&e), 0);
    tc t;
    pack_typed(&t);
    size_t plain_len, typed_len;
    uint8_t *plain = encode_copy(&e, &t, &plain_len);
    e.typed = 1;
    uint8_t *typed = encode_copy(&e, &t, &typed_len);
    msgpack_sbuffer_destroy(&t.sb);
    /* untyped: the .proto's WriteLogRequest and nothing else */
    Logagent__V1__WriteLogRequest *r = logagent__v1__write_log_request__unpack(NULL, plain_len, plain);
    CHECK(r != NULL);
    if (r) {
        CHECK_INT(r->base.n_unknown_fields, 0);
        CHECK_INT(r->n_metadata, 11);
        logagent__v1__write_log_request__free_unpacked(r, NULL);
    }
    /* typed: the same bytes, then field 100 (2-byte tag, length, one tag per entry up to the last non-string) */
    CHECK_INT(typed_len, plain_len + 2 + 1 + strlen(expect));
    CHECK(plain && typed && memcmp(plain, typed, plain_len) == 0);
    r = logagent__v1__write_log_request__unpack(NULL, typed_len, typed);
    CHECK(r != NULL);
    if (r) {
        CHECK_INT(r->base.n_unknown_fields, 1);
        const ProtobufCMessageUnknownField *u = r->base.unknown_fields;
        CHECK_INT(u->tag, RECORD_F_META_TYPES);
        CHECK_INT(u->wire_type, PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED);
        /* protobuf-c keeps the field as on the wire: its length (one byte here), then the tags */
        CHECK(u->len == 1 + strlen(expect) && u->data[0] == strlen(expect) && !memcmp(u->data + 1, expect, u->len - 1));
        CHECK_STR(meta(r, "nested"), "{\"a\":[1,\"b\"]}"); /* the text forms are unchanged */
        CHECK_STR(meta(r, "bin"), "AAE=");
        logagent__v1__write_log_request__free_unpacked(r, NULL);
    }
    free(plain);
    free(typed);
    /* only strings: no field even when typed */
    tc_begin(&t, 2);
    kv(&t, "message", "m");
    kv(&t, "user", "bob");
    uint8_t *s = encode_copy(&e, &t, &typed_len);
    msgpack_sbuffer_destroy(&t.sb);
    r = s ? logagent__v1__write_log_request__unpack(NULL, typed_len, s) : NULL;
    CHECK(r != NULL && r->base.n_unknown_fields == 0);
    if (r)
        logagent__v1__write_log_request__free_unpacked(r, NULL);
    free(s);
    record_enc_free(&e);
}

static const AnyValue *attr_of(const LogRecord *r, const char *k)
{
    for (size_t i = 0; i < r->n_attributes; i++)
        if (!strcmp(r->attributes[i]->key, k))
            return r->attributes[i]->value;
    return NULL;
}

/* Encodes the typed record (typed or not), exports it with otlp_payload and returns the LogRecord's request. */
static ExportRequest *export_typed(int typed_flag)
{
    record_enc e;
    CHECK_INT(record_enc_init(&e), 0);
    e.typed = typed_flag;
    tc t;
    pack_typed(&t);
    size_t len;
    uint8_t *bytes = encode_copy(&e, &t, &len);
    msgpack_sbuffer_destroy(&t.sb);
    record_enc_free(&e);
    otlp_exporter *x = otlp_exporter_new(NULL);
    batch *b = batch_new(1, 0);
    CHECK(x && b && bytes && batch_add(b, bytes, len) == 0);
    int err = 0;
    uint8_t *out = x && b ? otlp_payload(x, b, NOW, &len, &err) : NULL;
    CHECK_INT(err, 0);
    ExportRequest *req = out ? opentelemetry__proto__collector__logs__v1__export_logs_service_request__unpack(
                                   NULL, len, out)
                             : NULL;
    CHECK(req && req->n_resource_logs == 1 && req->resource_logs[0]->scope_logs[0]->n_log_records == 1);
    free(out);
    free(bytes);
    batch_free(b);
    otlp_exporter_free(x);
    return req;
}

#define V(c) OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_##c

/* Values whose text reads back only partly: a non-finite float, a map holding a uint beyond int64 (its JSON does
 * not parse as int64: the whole map goes as its JSON text), an empty bin. */
static void test_meta_types_edges(void)
{
    record_enc e;
    CHECK_INT(record_enc_init(&e), 0);
    e.typed = 1;
    tc t;
    tc_begin(&t, 4);
    kv(&t, "message", "edges");
    key(&t, "inf"); msgpack_pack_double(&t.pk, -INFINITY);
    key(&t, "huge"); msgpack_pack_map(&t.pk, 1); key(&t, "u"); msgpack_pack_uint64(&t.pk, UINT64_MAX);
    key(&t, "empty"); msgpack_pack_bin_with_body(&t.pk, "", 0);
    size_t len;
    uint8_t *bytes = encode_copy(&e, &t, &len);
    msgpack_sbuffer_destroy(&t.sb);
    record_enc_free(&e);
    otlp_exporter *x = otlp_exporter_new(NULL);
    batch *b = batch_new(1, 0);
    CHECK(x && b && bytes && batch_add(b, bytes, len) == 0);
    int err = 0;
    uint8_t *out = x && b ? otlp_payload(x, b, NOW, &len, &err) : NULL;
    ExportRequest *req = out ? opentelemetry__proto__collector__logs__v1__export_logs_service_request__unpack(
                                   NULL, len, out)
                             : NULL;
    CHECK(req != NULL);
    if (req) {
        const LogRecord *r = req->resource_logs[0]->scope_logs[0]->log_records[0];
        const AnyValue *v;
        CHECK((v = attr_of(r, "inf")) && v->value_case == V(DOUBLE_VALUE) && v->double_value < -1e308); /* -Infinity */
        CHECK((v = attr_of(r, "huge")) && v->value_case == V(STRING_VALUE) &&
              !strcmp(v->string_value, "{\"u\":18446744073709551615}"));
        CHECK((v = attr_of(r, "empty")) && v->value_case == V(BYTES_VALUE) && v->bytes_value.len == 0);
        opentelemetry__proto__collector__logs__v1__export_logs_service_request__free_unpacked(req, NULL);
    }
    free(out);
    free(bytes);
    batch_free(b);
    otlp_exporter_free(x);
}

static void test_meta_types_exported(void)
{
    ExportRequest *req = export_typed(1);
    if (!req)
        return;
    const LogRecord *r = req->resource_logs[0]->scope_logs[0]->log_records[0];
    const AnyValue *v;
    CHECK((v = attr_of(r, "n")) && v->value_case == V(INT_VALUE) && v->int_value == 7);
    CHECK((v = attr_of(r, "x")) && v->value_case == V(DOUBLE_VALUE) && v->double_value == 0.85);
    CHECK((v = attr_of(r, "ok")) && v->value_case == V(BOOL_VALUE) && v->bool_value);
    CHECK((v = attr_of(r, "s")) && v->value_case == V(STRING_VALUE) && !strcmp(v->string_value, "text"));
    CHECK((v = attr_of(r, "none")) && v->value_case == V(_NOT_SET));
    CHECK((v = attr_of(r, "bin")) && v->value_case == V(BYTES_VALUE) && v->bytes_value.len == 2 &&
          !memcmp(v->bytes_value.data, "\x00\x01", 2));
    CHECK((v = attr_of(r, "big")) && v->value_case == V(STRING_VALUE) &&
          !strcmp(v->string_value, "18446744073709551615"));
    CHECK((v = attr_of(r, "ext")) && v->value_case == V(STRING_VALUE) && !strcmp(v->string_value, "YWJj"));
    CHECK((v = attr_of(r, "arr")) && v->value_case == V(ARRAY_VALUE) && v->array_value->n_values == 0);
    CHECK((v = attr_of(r, "tail")) && v->value_case == V(STRING_VALUE) && !strcmp(v->string_value, "t"));
    v = attr_of(r, "nested"); /* {"a": [1, "b"]} */
    CHECK(v && v->value_case == V(KVLIST_VALUE) && v->kvlist_value->n_values == 1);
    if (v && v->value_case == V(KVLIST_VALUE) && v->kvlist_value->n_values == 1) {
        const KeyValue *a = v->kvlist_value->values[0];
        CHECK_STR(a->key, "a");
        CHECK(a->value->value_case == V(ARRAY_VALUE) && a->value->array_value->n_values == 2);
        if (a->value->value_case == V(ARRAY_VALUE) && a->value->array_value->n_values == 2) {
            const AnyValue *const *e = (const AnyValue *const *)a->value->array_value->values;
            CHECK(e[0]->value_case == V(INT_VALUE) && e[0]->int_value == 1);
            CHECK(e[1]->value_case == V(STRING_VALUE) && !strcmp(e[1]->string_value, "b"));
        }
    }
    opentelemetry__proto__collector__logs__v1__export_logs_service_request__free_unpacked(req, NULL);
    test_meta_types_edges();
    /* an entry without the field (native mode, or spooled by an older agent): every metadata value a string */
    req = export_typed(0);
    if (!req)
        return;
    r = req->resource_logs[0]->scope_logs[0]->log_records[0];
    CHECK((v = attr_of(r, "n")) && v->value_case == V(STRING_VALUE) && !strcmp(v->string_value, "7"));
    CHECK((v = attr_of(r, "nested")) && v->value_case == V(STRING_VALUE) &&
          !strcmp(v->string_value, "{\"a\":[1,\"b\"]}"));
    CHECK((v = attr_of(r, "none")) && v->value_case == V(STRING_VALUE) && !v->string_value[0]);
    opentelemetry__proto__collector__logs__v1__export_logs_service_request__free_unpacked(req, NULL);
}

/* ---- numbers formatted by hand ------------------------------------------------------------------------ */

/* The metadata text of {"message": "m", "v": <packed by pack(t, arg)>}, with "v" last (the reader's path near the
 * end of the input) and with "v" followed by a pair (its path with eight bytes ahead): both must agree. */
static void number_text_at(void (*pack)(tc *, const void *), const void *arg, int last, char *out, size_t cap)
{
    tc t;
    tc_begin(&t, last ? 2 : 3);
    kv(&t, "message", "m");
    key(&t, "v");
    pack(&t, arg);
    if (!last)
        kv(&t, "z", "padding past eight bytes");
    record_info info;
    int rc;
    Logagent__V1__WriteLogRequest *r = run(&t, &info, &rc);
    CHECK_INT(rc, 0);
    snprintf(out, cap, "%s", r && meta(r, "v") ? meta(r, "v") : "(none)");
    if (r)
        logagent__v1__write_log_request__free_unpacked(r, NULL);
}

static void number_text(void (*pack)(tc *, const void *), const void *arg, char *out, size_t cap)
{
    char mid[64];
    number_text_at(pack, arg, 1, out, cap);
    number_text_at(pack, arg, 0, mid, sizeof mid);
    CHECK_STR(mid, out);
}

static void pk_u64(tc *t, const void *a) { msgpack_pack_uint64(&t->pk, *(const uint64_t *)a); }
static void pk_i64(tc *t, const void *a) { msgpack_pack_int64(&t->pk, *(const int64_t *)a); }
static void pk_f64(tc *t, const void *a) { msgpack_pack_double(&t->pk, *(const double *)a); }
#define I64(a) (*(const int64_t *)(a))
static void pk_fix_u8(tc *t, const void *a) { msgpack_pack_fix_uint8(&t->pk, (uint8_t)I64(a)); }
static void pk_fix_u16(tc *t, const void *a) { msgpack_pack_fix_uint16(&t->pk, (uint16_t)I64(a)); }
static void pk_fix_u32(tc *t, const void *a) { msgpack_pack_fix_uint32(&t->pk, (uint32_t)I64(a)); }
static void pk_fix_u64(tc *t, const void *a) { msgpack_pack_fix_uint64(&t->pk, (uint64_t)I64(a)); }
static void pk_fix_i8(tc *t, const void *a) { msgpack_pack_fix_int8(&t->pk, (int8_t)I64(a)); }
static void pk_fix_i16(tc *t, const void *a) { msgpack_pack_fix_int16(&t->pk, (int16_t)I64(a)); }
static void pk_fix_i32(tc *t, const void *a) { msgpack_pack_fix_int32(&t->pk, (int32_t)I64(a)); }
static void pk_fix_i64(tc *t, const void *a) { msgpack_pack_fix_int64(&t->pk, I64(a)); }

/* What the text of a double must be: the shortest "%.15g".."%.17g" that strtod reads back as v, ".0" added when
 * it reads as an integer (docs/protocol.md) — the printf definition the hand-written formatter replaces. */
static void double_reference(double v, char *buf, size_t cap)
{
    if (isnan(v)) {
        snprintf(buf, cap, "NaN");
        return;
    }
    if (isinf(v)) {
        snprintf(buf, cap, v > 0 ? "Infinity" : "-Infinity");
        return;
    }
    int n = 0;
    for (int prec = 15; prec <= 17; prec++) {
        n = snprintf(buf, cap, "%.*g", prec, v);
        if (strtod(buf, NULL) == v)
            break;
    }
    if (!strpbrk(buf, ".eEn"))
        snprintf(buf + n, cap - (size_t)n, ".0");
}

static void check_double(double v)
{
    char got[64], want[64];
    number_text(pk_f64, &v, got, sizeof got);
    double_reference(v, want, sizeof want);
    if (strcmp(got, want) != 0)
        fprintf(stderr, "double %a: got %s, want %s\n", v, got, want);
    CHECK_STR(got, want);
    if (isfinite(v))
        CHECK(strtod(got, NULL) == v || (v == 0 && strtod(got, NULL) == 0));
}

static void test_numbers(void)
{
    /* integers of every msgpack width, at their edges */
    static const uint64_t us[] = {0, 1, 127, 128, 255, 256, 65535, 65536, 4294967295ULL, 4294967296ULL,
                                  9223372036854775807ULL, 9223372036854775808ULL, 18446744073709551615ULL};
    static const int64_t is[] = {-1, -32, -33, -128, -129, -32768, -32769, -2147483648LL, -2147483649LL,
                                 -9223372036854775807LL - 1, 1234567890123LL};
    char got[64], want[64];
    for (size_t i = 0; i < sizeof us / sizeof us[0]; i++) {
        number_text(pk_u64, &us[i], got, sizeof got);
        snprintf(want, sizeof want, "%llu", (unsigned long long)us[i]);
        CHECK_STR(got, want);
        CHECK(strtoull(got, NULL, 10) == us[i]);
    }
    for (size_t i = 0; i < sizeof is / sizeof is[0]; i++) {
        number_text(pk_i64, &is[i], got, sizeof got);
        snprintf(want, sizeof want, "%lld", (long long)is[i]);
        CHECK_STR(got, want);
        CHECK(strtoll(got, NULL, 10) == is[i]);
    }
    /* every integer header at a width of its own (msgpack-c packs the smallest; other packers need not): a signed
     * header holding a non-negative number is a positive integer, sign extension from each width */
    static const struct {
        void (*pack)(tc *, const void *);
        int64_t v;
        const char *want;
    } widths[] = {
        {pk_fix_u8, 200, "200"},        {pk_fix_u16, 7, "7"},         {pk_fix_u16, 65535, "65535"},
        {pk_fix_u32, 9, "9"},           {pk_fix_u32, 4294967295LL, "4294967295"},
        {pk_fix_u64, 5, "5"},           {pk_fix_i8, -1, "-1"},        {pk_fix_i8, 5, "5"},
        {pk_fix_i8, -128, "-128"},      {pk_fix_i16, -2, "-2"},       {pk_fix_i16, 300, "300"},
        {pk_fix_i16, -32768, "-32768"}, {pk_fix_i32, -3, "-3"},       {pk_fix_i32, 70000, "70000"},
        {pk_fix_i32, -2147483648LL, "-2147483648"},                   {pk_fix_i64, -4, "-4"},
        {pk_fix_i64, 6, "6"},           {pk_fix_i64, INT64_MIN, "-9223372036854775808"},
    };
    for (size_t i = 0; i < sizeof widths / sizeof widths[0]; i++) {
        number_text(widths[i].pack, &widths[i].v, got, sizeof got);
        CHECK_STR(got, widths[i].want);
    }
    /* every digit count (the formatter writes four digits a step, then two, then one): 10^k - 1, 10^k, 10^k + 1 and
     * their negatives */
    for (uint64_t pow = 1, k = 0; k < 20; k++, pow *= 10) {
        uint64_t around[3] = {pow - 1, pow, pow + 1};
        for (int j = 0; j < 3; j++) {
            number_text(pk_u64, &around[j], got, sizeof got);
            snprintf(want, sizeof want, "%llu", (unsigned long long)around[j]);
            CHECK_STR(got, want);
            if (around[j] == 0 || around[j] > (uint64_t)INT64_MAX)
                continue;
            int64_t neg = -(int64_t)around[j];
            number_text(pk_i64, &neg, got, sizeof got);
            snprintf(want, sizeof want, "%lld", (long long)neg);
            CHECK_STR(got, want);
        }
    }
    /* doubles: zeros, subnormals, the integer limits of a double, the edges of the printf-free range, decimals */
    static const double ds[] = {0.0, -0.0, 5e-324, -5e-324, 2.2250738585072014e-308, 1.7976931348623157e308,
                                9007199254740991.0, 9007199254740992.0, 9007199254740993.0, -9007199254740991.0,
                                1e-4, 0.0001, 9.999999999999999e-5, 1e-5, 1e15, 999999999999999.0,
                                999999999999999.9, 1e16, 1e22, 1e23, 0.1, 0.2, 0.3, 1.0 / 3, 2.0 / 3, 0.5, 1.5,
                                -1.5, 123.456, 3.14159, 1725013845.5, 1725013845.123456, 100.0, 1e2, 12345678.9,
                                0.000123456789012345, 1.0000000000000002, 0.9999999999999999, 4.35, 2.675,
                                1e-3, 0.001, 0.01, 99.99, 1e14, 123456789012345.6, 12345678901234.56};
    for (size_t i = 0; i < sizeof ds / sizeof ds[0]; i++)
        check_double(ds[i]);
    check_double(NAN);
    check_double(INFINITY);
    check_double(-INFINITY);
    /* random bit patterns, and random short decimals (the values the fast path takes) */
    uint64_t s = 0x9e3779b97f4a7c15ULL;
    for (int i = 0; i < 20000; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        double d;
        uint64_t bits = s;
        memcpy(&d, &bits, sizeof d);
        check_double(d);
        check_double((double)(int64_t)(s % 2000000001) / (double)(1ULL << (s % 20)));
        char dec[32];
        snprintf(dec, sizeof dec, "%llu.%llu", (unsigned long long)(s % 100000), (unsigned long long)(s >> 44));
        check_double(strtod(dec, NULL));
    }
}

/* record_encode_raw on every prefix of a record refuses it cleanly (-EINVAL), and on the whole reads it all. */
static void test_raw_truncated(void)
{
    tc t;
    tc_begin(&t, 5);
    kv(&t, "message", "hello");
    kv(&t, "service_name", "svc");
    key(&t, "nested");
    msgpack_pack_map(&t.pk, 2);
    kv(&t, "a", "b");
    key(&t, "list");
    msgpack_pack_array(&t.pk, 3);
    msgpack_pack_int(&t.pk, 1);
    msgpack_pack_double(&t.pk, 2.5);
    msgpack_pack_bin_with_body(&t.pk, "\x01\x02", 2);
    key(&t, "ts");
    msgpack_pack_ext_with_body(&t.pk, "\x66\xd1\x9f\x55", 4, -1);
    key(&t, "big");
    msgpack_pack_uint64(&t.pk, 18446744073709551615ULL);
    record_enc e;
    CHECK_INT(record_enc_init(&e), 0);
    record_info info;
    for (size_t n = 0; n < t.sb.size; n++) {
        uint8_t *copy = malloc(n ? n : 1); /* exactly n bytes: ASan sees any read past them */
        memcpy(copy, t.sb.data, n);
        CHECK_INT(record_encode_raw(&e, copy, n, &SRC, NOW, &info), -EINVAL);
        CHECK_INT(info.wire_len, 0);
        free(copy);
    }
    CHECK_INT(record_encode_raw(&e, t.sb.data, t.sb.size, &SRC, NOW, &info), 0);
    CHECK_INT(info.wire_len, t.sb.size);
    static const uint8_t c1[] = {0x82, 0xa7, 'm', 'e', 's', 's', 'a', 'g', 'e', 0xa1, 'x', 0xa1, 'k', 0xc1};
    CHECK_INT(record_encode_raw(&e, c1, sizeof c1, &SRC, NOW, &info), -EINVAL); /* 0xc1: never used */
    msgpack_sbuffer_destroy(&t.sb);
    record_enc_free(&e);
}

/* A small record's entry, planned and written with src as its sender (malloc'd; *len its bytes). */
static uint8_t *prepared_entry(const record_source *src, size_t *len)
{
    tc t;
    tc_begin(&t, 3);
    kv(&t, "message", "m");
    kv(&t, "user", "alice");
    key(&t, "n");
    msgpack_pack_uint64(&t.pk, 12345);
    record_enc e;
    CHECK_INT(record_enc_init(&e), 0);
    e.rng[0] = 1, e.rng[1] = 2; /* the same log_id both ways */
    record_info info;
    CHECK_INT(record_prepare_raw(&e, t.sb.data, t.sb.size, src, NOW, &info), 0);
    uint8_t *w = malloc(e.out_len);
    CHECK(w != NULL);
    *len = w ? record_write(&e, w) : 0;
    CHECK_INT(*len, e.out_len);
    record_enc_free(&e);
    msgpack_sbuffer_destroy(&t.sb);
    return w;
}

/* An entry written with its source's wire (record_source_wire, as a connection keeps it) is byte for byte the entry
 * written from the source's fields, for every shape of source; a wire that does not fit is refused (0). */
static void test_source_wire(void)
{
    static char cg[200];
    memset(cg, 'c', sizeof cg - 1);
    const record_source cases[] = {
        SRC,
        {.pid = 7, .uid = 1, .gid = 2, .comm = "abcdefghijklmno", .hostname = "h", .cgroup = "/kubepods/pod1/x",
         .container_id = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"},
        {.comm = "forward", .hostname = "host"},           /* a TCP peer: no credentials */
        {.pid = -1, .uid = 4294967295u, .gid = 65534},        /* extremes, no comm, no hostname */
        {.comm = "", .hostname = NULL},                        /* nothing: no source field */
        {.pid = 1, .hostname = "h", .cgroup = cg},            /* a long cgroup path */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        record_source plain = cases[i], wired = cases[i];
        uint8_t wire[768];
        size_t n = record_source_wire(&wired, wire, sizeof wire);
        CHECK(i == 4 ? n == 0 : n > 2);
        if (n) {
            CHECK_INT(record_source_wire(&wired, wire, n - 1), 0); /* one byte short: refused */
            CHECK_INT(record_source_wire(&wired, wire, n), n);
        }
        wired.wire = n ? wire : NULL;
        wired.wire_len = n;
        size_t la, lb;
        uint8_t *a = prepared_entry(&plain, &la), *b = prepared_entry(&wired, &lb);
        CHECK(a && b && la == lb && memcmp(a, b, la) == 0);
        Logagent__V1__WriteLogRequest *r = b ? logagent__v1__write_log_request__unpack(NULL, lb, b) : NULL;
        CHECK(r != NULL);
        if (r) {
            CHECK_STR(r->message, "m");
            CHECK_STR(meta(r, "n"), "12345");
            CHECK(i == 4 ? r->source == NULL : r->source != NULL);
            if (r->source) {
                CHECK_INT(r->source->pid, cases[i].pid);
                CHECK_INT(r->source->uid, cases[i].uid);
                CHECK_STR(r->source->comm, cases[i].comm);
                CHECK_STR(r->source->hostname, cases[i].hostname ? cases[i].hostname : "");
                CHECK_STR(r->source->cgroup, cases[i].cgroup ? cases[i].cgroup : "");
            }
            logagent__v1__write_log_request__free_unpacked(r, NULL);
        }
        free(a);
        free(b);
    }
}

int main(void)
{
    test_numbers();
    test_raw_truncated();
    test_hostile_shapes();
    test_text_limit();
    test_direct_fields_and_source();
    test_source_wire();
    test_value_types();
    test_utf8_and_empty();
    test_big_message();
    test_timestamps();
    test_bad_timestamps();
    test_repeated_keys();
    test_levels();
    test_reserved_and_nonstring_keys();
    test_invalid();
    test_log_ids_unique();
    test_log_id_digits();
    test_meta_types_field();
    test_meta_types_exported();
    return check_done("test_record");
}
