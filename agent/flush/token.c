/* token.c — reading and re-reading the bearer token file (see token.h). */
#include "flush/token.h"

#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum { TOKEN_MAX = 64 << 10, TOKEN_CHECK_MS = 1000 };

struct token_file {
    char *path;
    char *value;        /* the current token */
    struct stat seen;   /* identity of the file the value came from */
    int64_t next_check_ms;
    uint64_t changes;
    log_limit warn;
};

static int same_file(const struct stat *a, const struct stat *b)
{
    return a->st_ino == b->st_ino && a->st_dev == b->st_dev && a->st_size == b->st_size &&
           a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

/* Reads path into a new string without trailing white space; fills *st. Returns it, or NULL with *why set
 * (a static text) and errno. */
static char *read_token(const char *path, struct stat *st, const char **why)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        *why = strerror(errno);
        return NULL;
    }
    char *buf = NULL;
    if (fstat(fd, st) < 0) {
        *why = strerror(errno);
    } else if (!S_ISREG(st->st_mode)) {
        *why = "not a regular file";
    } else if (st->st_size > TOKEN_MAX) {
        *why = "over 64 KiB";
    } else if (!(buf = malloc((size_t)st->st_size + 1))) {
        *why = "out of memory";
    } else {
        ssize_t n = read(fd, buf, (size_t)st->st_size);
        if (n < 0) {
            *why = strerror(errno);
            free(buf);
            buf = NULL;
        } else {
            ssize_t start = 0;
            while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' ' || buf[n - 1] == '\t'))
                n--;
            while (start < n && (buf[start] == ' ' || buf[start] == '\t'))
                start++;
            memmove(buf, buf + start, (size_t)(n - start));
            n -= start;
            buf[n] = '\0';
            *why = n == 0 ? "empty" : memchr(buf, '\n', (size_t)n) ? "more than one line" : NULL;
            for (ssize_t i = 0; i < n && !*why; i++)
                if ((unsigned char)buf[i] < 0x21 || (unsigned char)buf[i] > 0x7e)
                    *why = "a byte that is not printable ASCII (a header value cannot carry it)"; /* never quoted */
            if (*why) {
                free(buf);
                buf = NULL;
            }
        }
    }
    close(fd);
    return buf;
}

token_file *token_file_open(const char *path, char *err, size_t errlen)
{
    token_file *t = calloc(1, sizeof *t);
    const char *why = "out of memory";
    if (t && (t->path = strdup(path)) && (t->value = read_token(path, &t->seen, &why)))
        return t;
    snprintf(err, errlen, "cannot use token file %s: %s", path, why);
    token_file_free(t);
    return NULL;
}

int token_file_refresh(token_file *t, int64_t now_ms)
{
    if (now_ms < t->next_check_ms)
        return 0;
    t->next_check_ms = now_ms + TOKEN_CHECK_MS;
    struct stat st;
    if (stat(t->path, &st) == 0 && same_file(&st, &t->seen))
        return 0;
    const char *why = NULL;
    char *v = read_token(t->path, &st, &why);
    if (!v) {
        int64_t sup = log_limit_check(&t->warn, 60000);
        if (sup >= 0)
            log_write(LOG_WARN, "\"token file unusable, keeping the previous token\" path=%s error=\"%s\" "
                                "suppressed=%lld", t->path, why, (long long)sup);
        return 0;
    }
    t->seen = st;
    if (!strcmp(v, t->value)) {
        free(v);
        return 0;
    }
    free(t->value);
    t->value = v;
    t->changes++;
    log_write(LOG_INFO, "\"token file re-read: new token in use\" path=%s changes=%llu", t->path,
              (unsigned long long)t->changes);
    return 1;
}

const char *token_file_value(const token_file *t) { return t->value; }

uint64_t token_file_changes(const token_file *t) { return t->changes; }

void token_file_free(token_file *t)
{
    if (!t)
        return;
    free(t->path);
    free(t->value);
    free(t);
}
