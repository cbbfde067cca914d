/* gunzip.h — gzip data (one member or several concatenated) inflated into a new buffer of at most `max` bytes: a
 * decompression bomb stops at max + 1 bytes and is refused, never allocated in full. Used by the OTLP/HTTP ingest
 * (Content-Encoding: gzip); zlib does the work. */
#ifndef LOGAGENT_GUNZIP_H
#define LOGAGENT_GUNZIP_H

#include <stddef.h>

/* Inflates src[0..len) into *out (malloc'd, the caller frees it; NUL-terminated past *out_len). Returns 0,
 * -EBADMSG (not gzip, or cut short), -EMSGSIZE (more than max bytes once inflated) or -ENOMEM. */
int gunzip(const void *src, size_t len, size_t max, char **out, size_t *out_len);

#endif
