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
        size_t run = json_str_run(p + i, n - i);
        if (run) { /* plain ASCII: as much of the run as fits */
            if (run > cap - 1 - o)
                run = cap - 1 - o;
            memcpy(out + o, p + i, run);
            o += run;
            i += run;
            if (o + 1 >= cap)
                break;
            continue;
        }
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
