/* cpus.c — the CPUs this process may use, for --ingest-threads' default (see cpus.h). */
#include "ingest/cpus.h"

#include <errno.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

unsigned cpus_from_cpu_max(const char *text)
{
    char *end;
    if (!text || strncmp(text, "max", 3) == 0)
        return 0;
    unsigned long long quota = strtoull(text, &end, 10);
    if (end == text || *end != ' ')
        return 0;
    const char *p = end + 1;
    unsigned long long period = strtoull(p, &end, 10);
    if (end == p || period == 0 || quota == 0)
        return 0;
    unsigned long long n = (quota + period - 1) / period;
    return n > 1024 ? 1024 : (unsigned)n;
}

int cpus_cgroup_path(const char *text, char *path, size_t cap)
{
    for (const char *line = text; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
        if (strncmp(line, "0::", 3) != 0)
            continue;
        const char *p = line + 3;
        size_t n = strcspn(p, "\n");
        if (n >= cap)
            return -ENAMETOOLONG;
        memcpy(path, p, n);
        path[n] = 0;
        return 0;
    }
    return -ENOENT;
}

unsigned cpus_default_threads(unsigned affinity, unsigned quota)
{
    unsigned n = affinity ? affinity : 1;
    if (quota && quota < n)
        n = quota;
    return n > CPUS_DEFAULT_MAX ? CPUS_DEFAULT_MAX : n;
}

/* The text of a small file into buf (NUL-terminated); 0 or -errno. */
static int read_small(const char *path, char *buf, size_t cap)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return -errno;
    size_t n = fread(buf, 1, cap - 1, f);
    buf[n] = 0;
    fclose(f);
    return 0;
}

/* The smallest cpu.max quota of the cgroup at `path` (under /sys/fs/cgroup) and its ancestors; 0: none. */
static unsigned cgroup_quota(char *path)
{
    unsigned best = 0;
    for (;;) {
        char file[512], text[128];
        snprintf(file, sizeof file, "/sys/fs/cgroup%s/cpu.max", strcmp(path, "/") == 0 ? "" : path);
        unsigned q = read_small(file, text, sizeof text) == 0 ? cpus_from_cpu_max(text) : 0;
        if (q && (!best || q < best))
            best = q;
        char *slash = strrchr(path, '/');
        if (!slash || slash == path)
            return best;
        *slash = 0;
    }
}

unsigned cpus_ingest_threads_default(void)
{
    cpu_set_t set;
    unsigned affinity = sched_getaffinity(0, sizeof set, &set) == 0 ? (unsigned)CPU_COUNT(&set) : 1;
    char text[4096], path[256];
    unsigned quota = 0;
    if (read_small("/proc/self/cgroup", text, sizeof text) == 0 && cpus_cgroup_path(text, path, sizeof path) == 0)
        quota = cgroup_quota(path);
    return cpus_default_threads(affinity, quota);
}
