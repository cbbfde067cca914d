/* gunzip.c — see gunzip.h. The output buffer starts at 4x the input and doubles up to max + 1 bytes: one byte past
 * max tells a bomb from data of exactly max bytes. */
#include "common/gunzip.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

/* Doubles *buf up to max + 1 bytes. Returns 0, -EMSGSIZE when it already holds that much, or -ENOMEM. */
static int grow(char **buf, size_t *cap, size_t max)
{
    if (*cap > max)
        return -EMSGSIZE;
    size_t ncap = *cap * 2 > max ? max + 1 : *cap * 2;
    char *n = realloc(*buf, ncap + 1);
    if (!n)
        return -ENOMEM;
    *buf = n;
    *cap = ncap;
    return 0;
}

int gunzip(const void *src, size_t len, size_t max, char **out, size_t *out_len)
{
    size_t cap = len * 4 + 4096 > max ? max + 1 : len * 4 + 4096, have = 0;
    char *buf = malloc(cap + 1);
    z_stream z;
    memset(&z, 0, sizeof z);
    if (!buf || inflateInit2(&z, 16 + MAX_WBITS) != Z_OK) {
        free(buf);
        return -ENOMEM;
    }
    z.next_in = (Bytef *)src;
    z.avail_in = (uInt)len;
    int rc = 0;
    while (rc == 0) {
        if (have == cap && (rc = grow(&buf, &cap, max)) < 0)
            break;
        z.next_out = (Bytef *)buf + have;
        z.avail_out = (uInt)(cap - have);
        int zr = inflate(&z, Z_NO_FLUSH);
        have = cap - z.avail_out;
        if (zr == Z_STREAM_END && z.avail_in == 0)
            break;
        if (zr == Z_STREAM_END) /* another member follows */
            rc = inflateReset(&z) == Z_OK ? 0 : -EBADMSG;
        else if (zr == Z_MEM_ERROR)
            rc = -ENOMEM;
        else if (zr != Z_OK && !(zr == Z_BUF_ERROR && z.avail_out == 0))
            rc = -EBADMSG; /* not gzip, or the input ended inside a member */
    }
    inflateEnd(&z);
    if (rc == 0 && have > max)
        rc = -EMSGSIZE;
    if (rc < 0) {
        free(buf);
        return rc;
    }
    buf[have] = 0;
    *out = buf;
    *out_len = have;
    return 0;
}
