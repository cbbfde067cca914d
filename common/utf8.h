/* utf8.h — the one UTF-8 rule (RFC 3629) of every program here, and what each does with bytes that break it.
 *
 * utf8_seq_len is the rule; everything else that decides what is valid UTF-8 is built on it: record.c (str values
 * repaired with U+FFFD), jsonstr.h (every JSON string the agent writes: /stats, /stats/clients, the HTTP ingest's
 * answers, record metadata) and utf8_scrub below (the dead-letter file).
 *
 * Two repairs, because two callers need different things:
 *   U+FFFD (UTF8_REPLACEMENT): what a reader of the text should see — a record's values, JSON strings. It takes
 *     3 bytes for each bad one, so it is written into a new buffer (record.c, jsonstr.h).
 *   '?' in place (utf8_scrub): the dead-letter frame's refusal reason is laid out before it is checked (spool.c
 *     scrubs it inside the frame, whose length is already written) and logagentctl scrubs its read buffer; both
 *     need the length to stay.
 *
 * Header-only (static inline) so that the daemon and logagentctl, which share no object files, use the same rule,
 * and so that the record path's checks compile inline. */
#ifndef LOGAGENT_UTF8_H
#define LOGAGENT_UTF8_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* U+FFFD REPLACEMENT CHARACTER, for each byte that is not part of a valid sequence. */
#define UTF8_REPLACEMENT "\xef\xbf\xbd"
enum { UTF8_REPLACEMENT_LEN = 3 };

/* Length of the valid UTF-8 sequence at p[0..n) (1-4), or 0 when p does not start one (RFC 3629: no overlongs, no
 * surrogates, nothing past U+10FFFF). n must be at least 1. */
static inline size_t utf8_seq_len(const uint8_t *p, size_t n)
{
    uint8_t c = p[0];
    size_t len = c < 0x80 ? 1 : c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3 : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
    if (len == 0 || len > n)
        return 0;
    for (size_t i = 1; i < len; i++)
        if ((p[i] & 0xc0) != 0x80)
            return 0;
    if ((c == 0xe0 && p[1] < 0xa0) || (c == 0xed && p[1] > 0x9f) || (c == 0xf0 && p[1] < 0x90) ||
        (c == 0xf4 && p[1] > 0x8f))
        return 0;
    return len;
}

/* 1 when all of p[0..n) is valid UTF-8. ASCII is passed over eight bytes at a time without the full check (the
 * common case on the record path, where every str value is checked). */
/* Are all of p[0..n) ASCII? A few word loads (overlapping at the ends), no byte loop: keys and values are short. */
static inline __attribute__((always_inline)) int utf8_all_ascii(const uint8_t *p, size_t n)
{
    if (n >= 8) {
        uint64_t acc = 0, w;
        size_t i = 0;
        for (; i + 8 <= n; i += 8) {
            memcpy(&w, p + i, 8);
            acc |= w;
        }
        memcpy(&w, p + n - 8, 8);
        return !((acc | w) & 0x8080808080808080u);
    }
    if (n >= 4) {
        uint32_t a, b;
        memcpy(&a, p, 4);
        memcpy(&b, p + n - 4, 4);
        return !((a | b) & 0x80808080u);
    }
    unsigned acc = 0;
    for (size_t i = 0; i < n; i++)
        acc |= p[i];
    return !(acc & 0x80);
}

static inline int utf8_valid(const uint8_t *p, size_t n)
{
    if (utf8_all_ascii(p, n))
        return 1;
    for (size_t i = 0; i < n;) {
        if (p[i] < 0x80) {
            uint64_t w;
            if (n - i >= 8 && (memcpy(&w, p + i, 8), (w & 0x8080808080808080u) == 0))
                i += 8;
            else
                i++;
            continue;
        }
        size_t l = utf8_seq_len(p + i, n - i);
        if (l == 0)
            return 0;
        i += l;
    }
    return 1;
}

/* Replaces every byte of p[0..n) that is not part of a valid UTF-8 sequence with '?' (the length stays). Returns
 * how many bytes it replaced. */
static inline size_t utf8_scrub(uint8_t *p, size_t n)
{
    size_t fixed = 0;
    for (size_t i = 0; i < n;) {
        size_t k = utf8_seq_len(p + i, n - i);
        if (k == 0) {
            p[i++] = '?';
            fixed++;
        } else {
            i += k;
        }
    }
    return fixed;
}

#endif
