/* test_jsonstr.c — the one UTF-8 rule (common/utf8.h) against a decoder written from RFC 3629, its two repairs
 * (U+FFFD, '?' in place), and the JSON string escaper built on it (jsonstr.h): escapes, the DEL flag, cutting at a
 * character boundary. */
#include "check.h"
#include "common/utf8.h"
#include "jsonstr.h"

#include <string.h>

/* The reference: decode the code point and judge it (length from the lead byte, continuation bytes, then no
 * overlong form, no surrogate, nothing past U+10FFFF). */
static size_t ref_seq_len(const uint8_t *p, size_t n)
{
    unsigned c = p[0], min, cp;
    size_t len;
    if (c < 0x80)
        return 1;
    if ((c & 0xe0) == 0xc0) { len = 2; min = 0x80; cp = c & 0x1f; }
    else if ((c & 0xf0) == 0xe0) { len = 3; min = 0x800; cp = c & 0x0f; }
    else if ((c & 0xf8) == 0xf0) { len = 4; min = 0x10000; cp = c & 0x07; }
    else return 0;
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (p[i] & 0x3fu);
    }
    return cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff) ? 0 : len;
}

/* Every pair of first two bytes, followed by each pair of a few telling values (the edges of the continuation
 * range, ASCII, bytes never valid); each input also cut short. */
static void test_seq_len_matches_rfc(void)
{
    static const uint8_t tail[] = {0x00, 0x41, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xff};
    uint8_t p[4];
    long bad = 0;
    for (unsigned a = 0; a < 256; a++)
        for (unsigned b = 0; b < 256; b++)
            for (size_t c = 0; c < sizeof tail; c++)
                for (size_t d = 0; d < sizeof tail; d++) {
                    p[0] = (uint8_t)a, p[1] = (uint8_t)b, p[2] = tail[c], p[3] = tail[d];
                    for (size_t n = 1; n <= 4; n++)
                        bad += utf8_seq_len(p, n) != ref_seq_len(p, n);
                }
    CHECK_INT(bad, 0);
}

/* utf8_valid by the reference, one sequence at a time. */
static int ref_valid(const uint8_t *p, size_t n)
{
    for (size_t i = 0, l; i < n; i += l)
        if ((l = ref_seq_len(p + i, n - i)) == 0)
            return 0;
    return 1;
}

/* Strings of ASCII runs (the eight-at-a-time path) with a multi-byte or bad byte somewhere. */
static void test_valid_matches_rfc(void)
{
    static const char *const pieces[] = {"abcdefgh", "x", "0123456789abcdef", "\xc3\xa9", "\xe4\xb8\xad",
                                         "\xf0\x9f\x98\x80", "\xff", "\xc3", "\xed\xa0\x80", "\x7f", "\x80"};
    uint32_t r = 2463534242u;
    long bad = 0;
    for (int t = 0; t < 20000; t++) {
        uint8_t s[64];
        size_t n = 0;
        for (int k = (int)(r % 6); k >= 0; k--) {
            r ^= r << 13, r ^= r >> 17, r ^= r << 5;
            const char *pc = pieces[r % (sizeof pieces / sizeof *pieces)];
            size_t l = strlen(pc);
            if (n + l > sizeof s)
                break;
            memcpy(s + n, pc, l);
            n += l;
        }
        bad += utf8_valid(s, n) != ref_valid(s, n);
    }
    CHECK_INT(bad, 0);
    CHECK(utf8_valid((const uint8_t *)"abcdefghijklmnopq", 17));
    CHECK(!utf8_valid((const uint8_t *)"abcdefgh\xff", 9));
    CHECK(!utf8_valid((const uint8_t *)"abcdefg\xffhijklmnop", 17)); /* bad byte inside an eight-byte word */
    CHECK(!utf8_valid((const uint8_t *)"abcdefghijklmno\xc3", 16));  /* cut short after two words */
}

static void test_valid_and_scrub(void)
{
    CHECK(utf8_valid((const uint8_t *)"", 0));
    CHECK(utf8_valid((const uint8_t *)"caf\xc3\xa9 \xf0\x9f\x98\x80", 10));
    CHECK(!utf8_valid((const uint8_t *)"caf\xc3", 4));           /* cut short */
    CHECK(!utf8_valid((const uint8_t *)"\xed\xa0\x80", 3));      /* a surrogate */
    CHECK(!utf8_valid((const uint8_t *)"\xe0\x80\xaf", 3));      /* overlong '/' */
    CHECK(!utf8_valid((const uint8_t *)"\xf4\x90\x80\x80", 4));  /* past U+10FFFF */
    uint8_t s[] = "ok\xff\xc3\xa9\xc3 \xe2\x82";
    CHECK_INT(utf8_scrub(s, sizeof s - 1), 4);
    CHECK_STR((const char *)s, "ok?\xc3\xa9? ??");
}

static void test_escape(void)
{
    char out[64];
    json_str_escape(out, sizeof out, "a\"b\\c\x01", 6);
    CHECK_STR(out, "a\\\"b\\\\c\\u0001");
    json_str_escape(out, sizeof out, "caf\xC3\xA9 \xFF!", 8);
    CHECK_STR(out, "caf\xC3\xA9 \xEF\xBF\xBD!");
    json_str_escape(out, 6, "ab\xC3\xA9xyz", 7); /* cut before a character that does not fit */
    CHECK_STR(out, "ab\xC3\xA9x");
    json_str_escape(out, 4, "ab\xC3\xA9", 4);
    CHECK_STR(out, "ab");
    json_str_escape(out, sizeof out, "\x7f\x1f\n", 3); /* the stats side escapes DEL */
    CHECK_STR(out, "\\u007f\\u001f\\u000a");
    json_str_escape(out, 7, "\x01\x02", 2); /* an escape is not cut either */
    CHECK_STR(out, "\\u0001");
    memset(out, 'x', sizeof out);
    json_str_escape(out, 0, "abc", 3); /* nothing written */
    CHECK(out[0] == 'x');
    char big[6 * 4 + 1];
    json_str_escape(big, sizeof big, "\x01\x02\x03\x04", 4); /* 6n + 1 holds the worst case */
    CHECK_STR(big, "\\u0001\\u0002\\u0003\\u0004");
}

static void test_char_del_flag(void)
{
    char esc[JSON_STR_ESC_MAX];
    const char *piece;
    size_t len;
    const uint8_t del = 0x7f;
    CHECK_INT(json_str_char(&del, 1, 0, esc, &piece, &len), 1); /* a record's JSON keeps DEL */
    CHECK(len == 1 && piece == (const char *)&del);
    CHECK_INT(json_str_char(&del, 1, JSON_STR_ESCAPE_DEL, esc, &piece, &len), 1);
    CHECK(len == 6 && memcmp(piece, "\\u007f", 6) == 0);
    const uint8_t emoji[] = {0xf0, 0x9f, 0x98, 0x80};
    CHECK_INT(json_str_char(emoji, 4, 0, esc, &piece, &len), 4);
    CHECK(len == 4 && piece == (const char *)emoji);
    CHECK_INT(json_str_char(emoji, 3, 0, esc, &piece, &len), 1); /* cut short: one U+FFFD per byte */
    CHECK(len == 3 && memcmp(piece, UTF8_REPLACEMENT, 3) == 0);
}

int main(void)
{
    test_seq_len_matches_rfc();
    test_valid_matches_rfc();
    test_valid_and_scrub();
    test_escape();
    test_char_del_flag();
    return check_done("jsonstr");
}
