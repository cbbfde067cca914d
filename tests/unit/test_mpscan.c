/* test_mpscan.c — the msgpack stream guard: records found at any split of the input (byte by byte), headers
 * announcing oversized payloads or item counts refused before their bytes arrive, 0xc1 and over-deep nesting
 * refused, the "good bytes" offset, and mid-record detection for truncation. */
#include "check.h"
#include "mpscan.h"

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

int main(void)
{
    test_any_split();
    test_refusals();
    return check_done("test_mpscan");
}
