/* utf8scrub.h — make bytes valid UTF-8 in place, for text that came from elsewhere (a log service's error details)
 * and must be written or printed as UTF-8 (the dead-letter file's refusal reason, its JSON lines).
 *
 * Header-only (static inline) so that the daemon (spool.c writes the reason) and logagentctl (ctl_deadletter.c
 * reads it), which share no object files, use the same rule. */
#ifndef LOGAGENT_UTF8SCRUB_H
#define LOGAGENT_UTF8SCRUB_H

#include <stddef.h>
#include <stdint.h>

/* Length of the valid UTF-8 sequence at p[0..n) (1-4), or 0 when p does not start one (RFC 3629: no overlongs, no
 * surrogates, nothing past U+10FFFF). */
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
