/* cgroup.c — see cgroup.h. */
#include "ingest/cgroup.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* The last run of exactly 64 hex digits in s[0..n), copied into id; id unchanged when there is none. */
static void find_id(const char *s, size_t n, char *id)
{
    size_t run = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && isxdigit((unsigned char)s[i])) {
            run++;
            continue;
        }
        if (run == CGROUP_ID_LEN) {
            memcpy(id, s + i - run, CGROUP_ID_LEN);
            id[CGROUP_ID_LEN] = '\0';
        }
        run = 0;
    }
}

static void set_path(char *path, size_t cap, const char *p, size_t n)
{
    if (n >= cap)
        n = cap - 1;
    memcpy(path, p, n);
    path[n] = '\0';
}

void cgroup_parse(const char *text, size_t len, char *path, size_t cap, char *id)
{
    const char *best = NULL;
    size_t best_n = 0;
    int best_rank = 0; /* 3: unified, 2: name=systemd, 1: another hierarchy's */
    id[0] = '\0';
    for (const char *line = text, *end = text + len; line < end;) {
        const char *nl = memchr(line, '\n', (size_t)(end - line));
        const char *le = nl ? nl : end;
        const char *c1 = memchr(line, ':', (size_t)(le - line));
        const char *c2 = c1 ? memchr(c1 + 1, ':', (size_t)(le - c1 - 1)) : NULL;
        if (c2) {
            const char *p = c2 + 1;
            size_t n = (size_t)(le - p);
            find_id(p, n, id);
            int root = n == 1 && p[0] == '/';
            int rank = !strncmp(line, "0::", 3) ? 3 : (size_t)(c2 - c1 - 1) == 12 && !strncmp(c1 + 1, "name=systemd", 12)
                                                          ? 2
                                                          : 1;
            if (!root && rank > best_rank) {
                best = p;
                best_n = n;
                best_rank = rank;
            }
        }
        line = nl ? nl + 1 : end;
    }
    if (best)
        set_path(path, cap, best, best_n);
    else
        set_path(path, cap, "/", 1);
}

int cgroup_read(pid_t pid, char *path, size_t cap, char *id)
{
    char file[64], buf[4096];
    path[0] = id[0] = '\0';
    snprintf(file, sizeof file, "/proc/%d/cgroup", (int)pid);
    int fd = open(file, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    ssize_t n = read(fd, buf, sizeof buf);
    int err = errno;
    close(fd);
    if (n < 0)
        return -err;
    cgroup_parse(buf, (size_t)n, path, cap, id);
    return 0;
}
