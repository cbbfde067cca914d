/* test_mpscan.c — the msgpack stream guard: records found at any split of the input (byte by byte), headers
 * announcing oversized payloads or item counts refused before their bytes arrive, 0xc1 and over-deep nesting
 * refused, the "good bytes" offset, and mid-record detection for truncation; the separate limit of top-level arrays
 * (Forward messages) with its item budget, and mpscan_feed_one stopping at the first record's end. */
#include "check.h"
#include "ingest/mpscan.h"

#include <msgpack.h>
#include <stdlib.h>

static void pack_records(msgpack_sbuffer *sb, int n)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    for (int i = 0; i < n; i++) {
        msgpack_pack_map(&pk, 4);
        msgpack_pack_str_with_body(&pk, "message", 7);
        msgpack_pack_str_with_body(&pk, "hello world", 11);
        msgpack_pack_str_with_body(&pk, "n", 1);
        msgpack_pack_int64(&pk, (int64_t)i * 1000003);
        msgpack_pack_str_with_body(&pk, "f", 1);
        msgpack_pack_double(&pk, i * 0.5);
        msgpack_pack_str_with_body(&pk, "nested", 6);
        msgpack_pack_array(&pk, 3);
        msgpack_pack_nil(&pk);
        msgpack_pack_ext_with_body(&pk, "abcd", 4, -1);
        msgpack_pack_map(&pk, 1);
        msgpack_pack_bin_with_body(&pk, "xy", 2);
        msgpack_pack_true(&pk);
    }
}

static void test_any_split(void)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    pack_records(&sb, 50);
    for (size_t step = 1; step <= 7; step += 3) {
        mpscan s;
        mpscan_init(&s, 1 << 20);
        for (size_t i = 0; i < sb.size; i += step) {
            size_t n = sb.size - i < step ? sb.size - i : step, good;
            CHECK_INT(mpscan_feed(&s, (const uint8_t *)sb.data + i, n, &good), MPSCAN_OK);
            CHECK_INT(good, n);
        }
        CHECK_INT(s.records, 50);
        CHECK(!mpscan_mid_record(&s));
    }
    mpscan s;
    mpscan_init(&s, 1 << 20);
    size_t good;
    CHECK_INT(mpscan_feed(&s, (const uint8_t *)sb.data, sb.size - 3, &good), MPSCAN_OK);
    CHECK(mpscan_mid_record(&s));
    CHECK_INT(s.records, 49);
    msgpack_sbuffer_destroy(&sb);
}

static int feed_all(const void *p, size_t n, uint64_t max, size_t *good)
{
    mpscan s;
    mpscan_init(&s, max);
    return mpscan_feed(&s, p, n, good);
}

static void test_refusals(void)
{
    size_t good;
    /* map32 announcing 4 billion entries, after one good record */
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    pack_records(&sb, 1);
    size_t first = sb.size;
    msgpack_sbuffer_write(&sb, "\xdf\xff\xff\xff\xff", 5);
    CHECK_INT(feed_all(sb.data, sb.size, 1 << 20, &good), MPSCAN_OVERSIZED);
    CHECK_INT(good, first);
    msgpack_sbuffer_destroy(&sb);
    /* str32 announcing 1 GiB inside a map */
    CHECK_INT(feed_all("\x81\xa7message\xdb\x40\x00\x00\x00", 14, 1 << 20, &good), MPSCAN_OVERSIZED);
    CHECK_INT(good, 0);
    /* array16 of 60000 items with a 1000-byte limit */
    CHECK_INT(feed_all("\xdc\xea\x60", 3, 1000, &good), MPSCAN_OVERSIZED);
    /* bin16 just over the limit vs. just under */
    CHECK_INT(feed_all("\xc5\x03\xe8", 3, 1000, &good), MPSCAN_OVERSIZED);
    CHECK_INT(feed_all("\xc5\x03\xe0", 3, 1000, &good), MPSCAN_OK);
    /* 0xc1 is never valid */
    CHECK_INT(feed_all("\x81\xa1m\xc1", 4, 1000, &good), MPSCAN_MALFORMED);
    /* nesting deeper than msgpack-c decodes */
    unsigned char deep[40];
    memset(deep, 0x91, sizeof deep);
    CHECK_INT(feed_all(deep, sizeof deep, 1000, &good), MPSCAN_MALFORMED);
    /* a record that grows past the limit only as its bytes arrive */
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 100);
    for (int i = 0; i < 100; i++)
        msgpack_pack_str_with_body(&pk, "0123456789", 10);
    CHECK_INT(feed_all(sb.data, sb.size, 500, &good), MPSCAN_OVERSIZED);
    CHECK_INT(feed_all(sb.data, sb.size, 2000, &good), MPSCAN_OK);
    msgpack_sbuffer_destroy(&sb);
}

static int feed_array_lim(const void *p, size_t n, uint64_t max, uint64_t max_array, size_t *good, mpscan *s)
{
    mpscan_init(s, max);
    mpscan_set_array_limit(s, max_array);
    return mpscan_feed(s, p, n, good);
}

/* An array of `n` fixstr items of 10 bytes (11 bytes each on the wire) after an array32 header. */
static void pack_str_array(msgpack_sbuffer *sb, uint32_t n)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    msgpack_sbuffer_write(sb, "\xdd", 1);
    uint8_t be[4] = {(uint8_t)(n >> 24), (uint8_t)(n >> 16), (uint8_t)(n >> 8), (uint8_t)n};
    msgpack_sbuffer_write(sb, (const char *)be, 4);
    for (uint32_t i = 0; i < n; i++)
        msgpack_pack_str_with_body(&pk, "0123456789", 10);
}

static void test_array_limit(void)
{
    mpscan s;
    size_t good;
    /* a 5.5 KiB array with max_record 1000: refused alone, passes with an array limit of 8000 */
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    pack_str_array(&sb, 500);
    CHECK_INT(feed_all(sb.data, sb.size, 1000, &good), MPSCAN_OVERSIZED);
    CHECK_INT(feed_array_lim(sb.data, sb.size, 1000, 8000, &good, &s), MPSCAN_OK);
    CHECK_INT(s.records, 1);
    CHECK(s.in_array);
    CHECK_INT(feed_array_lim(sb.data, sb.size, 1000, 5000, &good, &s), MPSCAN_OVERSIZED);
    CHECK(s.in_array);
    /* a map of the same size is still held to max_record; so is a bin */
    msgpack_sbuffer_destroy(&sb);
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 250);
    for (int i = 0; i < 500; i++)
        msgpack_pack_str_with_body(&pk, "0123456789", 10);
    CHECK_INT(feed_array_lim(sb.data, sb.size, 1000, 8000, &good, &s), MPSCAN_OVERSIZED);
    CHECK(!s.in_array);
    CHECK_INT(feed_array_lim("\xc5\x03\xe8", 3, 1000, 8000, &good, &s), MPSCAN_OVERSIZED);
    /* inside an array: a bin of 4000 bytes (PackedForward) passes the array limit, one announcing more does not */
    CHECK_INT(feed_array_lim("\x92\xa1t\xc5\x0f\xa0", 6, 1000, 8000, &good, &s), MPSCAN_OK);
    CHECK_INT(feed_array_lim("\x92\xa1t\xc6\x00\x01\x00\x00", 8, 1000, 8000, &good, &s), MPSCAN_OVERSIZED);
    /* a native record after an array gets max_record again */
    msgpack_sbuffer_destroy(&sb);
    msgpack_sbuffer_init(&sb);
    pack_str_array(&sb, 200);
    size_t first = sb.size;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 0);
    msgpack_pack_map(&pk, 100);
    for (int i = 0; i < 200; i++)
        msgpack_pack_str_with_body(&pk, "0123456789", 10);
    CHECK_INT(feed_array_lim(sb.data, sb.size, 1000, 8000, &good, &s), MPSCAN_OVERSIZED);
    CHECK_INT(good, first + 1);
    CHECK_INT(s.records, 2);
    CHECK(!s.in_array);
    /* an array limit below max_record is raised to it */
    mpscan_init(&s, 1000);
    mpscan_set_array_limit(&s, 10);
    CHECK_INT(s.max_array, 1000);
    msgpack_sbuffer_destroy(&sb);
}

static void test_item_budget(void)
{
    mpscan s;
    size_t good;
    /* max_record 1000, arrays 32000: items at most max(1000, 32000 / 16) = 2000 */
    mpscan_init(&s, 1000);
    mpscan_set_array_limit(&s, 32000);
    CHECK_INT(s.array_items, 2000);
    /* 2500 one-byte items (fixints): 2.5 KiB fits the bytes, not the items */
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 2500);
    for (int i = 0; i < 2500; i++)
        msgpack_pack_int(&pk, 1);
    CHECK_INT(feed_array_lim(sb.data, sb.size, 1000, 32000, &good, &s), MPSCAN_OVERSIZED);
    CHECK_INT(good, 0);
    CHECK_INT(feed_array_lim(sb.data, sb.size, 1000, 64000, &good, &s), MPSCAN_OK); /* 4000 items allowed */
    msgpack_sbuffer_destroy(&sb);
    /* Forward mode: the items of nested arrays count together: 700 entries [1, {"a": 1}] = 700 + 700 * 4 items */
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 2);
    msgpack_pack_str_with_body(&pk, "t", 1);
    msgpack_pack_array(&pk, 700);
    for (int i = 0; i < 700; i++) {
        msgpack_pack_array(&pk, 2);
        msgpack_pack_int(&pk, 1);
        msgpack_pack_map(&pk, 1);
        msgpack_pack_str_with_body(&pk, "a", 1);
        msgpack_pack_int(&pk, 1);
    }
    CHECK(sb.size < 32000 / 4);
    CHECK_INT(feed_array_lim(sb.data, sb.size, 1000, 32000, &good, &s), MPSCAN_OVERSIZED); /* 3502 > 2000 */
    CHECK_INT(feed_array_lim(sb.data, sb.size, 1000, 64000, &good, &s), MPSCAN_OK);        /* 3502 <= 4000 */
    msgpack_sbuffer_destroy(&sb);
    /* nested headers each announcing many items are refused together (no zone of 32 x the budget) */
    unsigned char nest[5 * 8];
    for (int i = 0; i < 8; i++)
        memcpy(nest + 5 * i, "\xdd\x00\x00\x01\x00", 5); /* array32 of 256 */
    CHECK_INT(feed_array_lim(nest, sizeof nest, 1000, 32000, &good, &s), MPSCAN_OVERSIZED);
    /* the budget restarts with each record: two arrays of 1500 items each pass */
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    for (int r = 0; r < 2; r++) {
        msgpack_pack_array(&pk, 1500);
        for (int i = 0; i < 1500; i++)
            msgpack_pack_int(&pk, 1);
    }
    CHECK_INT(feed_array_lim(sb.data, sb.size, 1000, 32000, &good, &s), MPSCAN_OK);
    CHECK_INT(s.records, 2);
    msgpack_sbuffer_destroy(&sb);
}

static void test_feed_one(void)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    pack_records(&sb, 1);
    size_t first = sb.size;
    pack_records(&sb, 2);
    mpscan s;
    size_t used;
    mpscan_init(&s, 1 << 20);
    CHECK_INT(mpscan_feed_one(&s, (const uint8_t *)sb.data, sb.size, &used), MPSCAN_OK);
    CHECK_INT(used, first);
    CHECK_INT(s.records, 1);
    /* a record that does not end: all bytes used, no record */
    mpscan_init(&s, 1 << 20);
    CHECK_INT(mpscan_feed_one(&s, (const uint8_t *)sb.data, first - 1, &used), MPSCAN_OK);
    CHECK_INT(used, first - 1);
    CHECK_INT(s.records, 0);
    /* an oversized first record: error, nothing used */
    mpscan_init(&s, 10);
    CHECK_INT(mpscan_feed_one(&s, (const uint8_t *)sb.data, sb.size, &used), MPSCAN_OVERSIZED);
    CHECK_INT(used, 0);
    msgpack_sbuffer_destroy(&sb);
}

int main(void)
{
    test_any_split();
    test_refusals();
    test_array_limit();
    test_item_budget();
    test_feed_one();
    return check_done("test_mpscan");
}
