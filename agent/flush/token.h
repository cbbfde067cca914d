/* token.h — the bearer token of --token-file, re-read when the file changes.
 *
 * The agent sends `authorization: Bearer <token>` with every upstream call. Tokens rotate (Kubernetes
 * projected service-account tokens, Vault agents, cron jobs writing a file): the file is looked at (stat) at
 * most once per second, and re-read when its inode, size or mtime moved — a symlink swap counts, since stat
 * follows links. A file that became unreadable or empty keeps the previous token (and logs why, rate-limited).
 * The token itself is never logged. Not thread-safe: the caller serialises (upstream does, under a mutex). */
#ifndef LOGAGENT_TOKEN_H
#define LOGAGENT_TOKEN_H

#include <stddef.h>
#include <stdint.h>

typedef struct token_file token_file;

/* Reads the token once (trailing white space is not part of it). Returns NULL with a message in err (which
 * never contains the token) when the file cannot be read, is empty, or is over 64 KiB. */
token_file *token_file_open(const char *path, char *err, size_t errlen);

/* Looks at the file when a second has passed since the last look (now_ms: a monotonic clock). Returns 1
 * when the token changed, 0 otherwise (unchanged, not due, or the new content was unusable). */
int token_file_refresh(token_file *t, int64_t now_ms);

/* The current token, NUL-terminated; valid until the next token_file_refresh that returns 1. */
const char *token_file_value(const token_file *t);

/* How many times the token changed since open (for tests and the log). */
uint64_t token_file_changes(const token_file *t);

void token_file_free(token_file *t);

#endif
