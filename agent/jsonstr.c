/* jsonstr.c — json_str_escape: the bounded writer of JSON string text (see jsonstr.h for the rule). */
#include "jsonstr.h"

#include <string.h>

void json_str_escape(char *out, size_t cap, const char *s, size_t n)
{
    const uint8_t *p = (const uint8_t *)s;
    size_t o = 0;
    if (cap == 0)
        return;
    for (size_t i = 0; i < n;) {
        char esc[JSON_STR_ESC_MAX];
        const char *piece;
        size_t w, used = json_str_char(p + i, n - i, JSON_STR_ESCAPE_DEL, esc, &piece, &w);
        if (o + w >= cap)
            break;
        memcpy(out + o, piece, w);
        o += w;
        i += used;
    }
    out[o] = 0;
}
