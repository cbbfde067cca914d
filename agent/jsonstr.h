/* jsonstr.h — the agent's one JSON string escaper: every string the agent writes inside JSON goes through
 * json_str_char (the /stats document, /stats/clients, the HTTP ingest's answers, and a record's map and array
 * values turned into JSON text by record.c).
 *
 * The rule: '"' and '\' backslash-escaped; control characters (below 0x20) as \u00XX; every byte that is not part
 * of valid UTF-8 (common/utf8.h decides) as U+FFFD; everything else as is. One choice differs by caller, so it is
 * a flag: JSON_STR_ESCAPE_DEL also writes DEL (0x7f) as \u007f. The stats documents set it (their names are shown
 * in terminals by logagentctl); a record's JSON does not (JSON does not require it, and those bytes are what the
 * log service has always been sent).
 *
 * Two writers share the rule: json_str_escape fills a bounded buffer (the stats side), record.c appends each piece
 * to its growing text buffer (json_str_char is inline for that path). Both copy runs of plain ASCII at once
 * (json_str_run) and take the rest a character at a time. */
#ifndef LOGAGENT_JSONSTR_H
#define LOGAGENT_JSONSTR_H

#include "common/utf8.h"

#include <stddef.h>
#include <stdint.h>

enum { JSON_STR_ESCAPE_DEL = 1 };

/* The longest escape of one input byte (a control character: \u00XX). */
enum { JSON_STR_ESC_MAX = 6 };

/* The JSON form of the character at p[0..n) (n >= 1): sets *piece and *len to the bytes to write — p itself, an
 * escape written into esc, or U+FFFD — and returns how many bytes of p they stand for (1-4). */
static inline size_t json_str_char(const uint8_t *p, size_t n, unsigned flags, char esc[JSON_STR_ESC_MAX],
                                   const char **piece, size_t *len)
{
    static const char hex[] = "0123456789abcdef";
    uint8_t c = p[0];
    if (c == '"' || c == '\\') {
        esc[0] = '\\';
        esc[1] = (char)c;
        *piece = esc;
        *len = 2;
        return 1;
    }
    if (c < 0x20 || (c == 0x7f && (flags & JSON_STR_ESCAPE_DEL))) {
        esc[0] = '\\';
        esc[1] = 'u';
        esc[2] = '0';
        esc[3] = '0';
        esc[4] = hex[c >> 4];
        esc[5] = hex[c & 15];
        *piece = esc;
        *len = 6;
        return 1;
    }
    size_t l = c < 0x80 ? 1 : utf8_seq_len(p, n);
    if (l == 0) {
        *piece = UTF8_REPLACEMENT;
        *len = UTF8_REPLACEMENT_LEN;
        return 1;
    }
    *piece = (const char *)p;
    *len = l;
    return l;
}

/* How many bytes at the start of p[0..n) are printable ASCII other than '"' and '\\' (below DEL): bytes every
 * flag setting writes as they are, so a writer copies the run at once and calls json_str_char for what follows. */
static inline size_t json_str_run(const uint8_t *p, size_t n)
{
    size_t i = 0;
    while (i < n && p[i] >= 0x20 && p[i] < 0x7f && p[i] != '"' && p[i] != '\\')
        i++;
    return i;
}

/* Writes s[0..n) into out as the inside of a JSON string (the rule above, with JSON_STR_ESCAPE_DEL),
 * NUL-terminated, cut at a character boundary when out is too small; nothing when cap is 0. 6 * n + 1 bytes always
 * hold all of it. */
void json_str_escape(char *out, size_t cap, const char *s, size_t n);

#endif
