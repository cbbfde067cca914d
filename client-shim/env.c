/* env.c — see env.h. */
#include "env.h"

#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern char **environ;

typedef struct unit {
    const char *word;
    uint64_t mul;
} unit;

static const unit SIZE_UNITS[] = {{"", 1}, {"k", 1 << 10}, {"K", 1 << 10}, {"KiB", 1 << 10}, {"KB", 1 << 10},
                                  {"M", 1 << 20}, {"MiB", 1 << 20}, {"MB", 1 << 20}, {"G", 1 << 30},
                                  {"GiB", 1 << 30}, {"GB", 1 << 30}, {NULL, 0}};
static const unit MS_UNITS[] = {{"", 1}, {"ms", 1}, {"s", 1000}, {"m", 60000}, {"min", 60000}, {"h", 3600000},
                                {NULL, 0}};

static const char *const KNOWN[] = {"LOGAGENT_CLIENT_BUFFER_BYTES", "LOGAGENT_CLIENT_BLOCK_TIMEOUT_MS",
                                    "LOGAGENT_CLIENT_MAX_RECORD_BYTES", "LOGAGENT_CLIENT_EXIT_FLUSH_TIMEOUT_MS",
                                    NULL};

/* The variable's value without surrounding blanks, into buf; NULL when unset or blank. */
static const char *value(const char *name, char *buf, size_t cap)
{
    const char *v = getenv(name);
    if (!v)
        return NULL;
    while (isspace((unsigned char)*v))
        v++;
    size_t n = strlen(v);
    while (n && isspace((unsigned char)v[n - 1]))
        n--;
    if (!n || n >= cap)
        return n ? v : NULL; /* an over-long value fails to parse below */
    memcpy(buf, v, n);
    buf[n] = '\0';
    return buf;
}

/* digits + a known unit -> *out. Returns 0 or -1. */
static int split_number(const char *t, const unit *units, uint64_t *out)
{
    size_t i = 0;
    uint64_t v = 0;
    while (isdigit((unsigned char)t[i])) {
        if (v > (UINT64_MAX - 9) / 10)
            return -1;
        v = v * 10 + (uint64_t)(t[i++] - '0');
    }
    if (i == 0)
        return -1;
    for (const unit *u = units; u->word; u++)
        if (!strcmp(t + i, u->word)) {
            if (v > UINT64_MAX / u->mul)
                return -1;
            *out = v * u->mul;
            return 0;
        }
    return -1;
}

static int env_size(const char *name, uint64_t lo, uint64_t hi, uint64_t *out, char *err, size_t errlen)
{
    char buf[64];
    const char *t = value(name, buf, sizeof buf);
    if (!t)
        return 0;
    if (split_number(t, SIZE_UNITS, out) < 0) {
        snprintf(err, errlen, "invalid value '%.40s' in %s: expected a size such as 65536, 64KiB, 4MiB", t, name);
        return -1;
    }
    if (*out < lo || *out > hi) {
        snprintf(err, errlen, "invalid value '%.40s' in %s: out of range (%llu to %llu bytes)", t, name,
                 (unsigned long long)lo, (unsigned long long)hi);
        return -1;
    }
    return 1;
}

/* Milliseconds into *out (-1: forever, when forever_ok). Returns 1 set, 0 unset, -1 bad. */
static int env_ms(const char *name, uint64_t hi, int forever_ok, long long *out, char *err, size_t errlen)
{
    char buf[64];
    uint64_t ms;
    const char *t = value(name, buf, sizeof buf);
    if (!t)
        return 0;
    if (forever_ok && (!strcmp(t, "-1") || !strcmp(t, "forever"))) {
        *out = -1;
        return 1;
    }
    if (split_number(t, MS_UNITS, &ms) < 0) {
        snprintf(err, errlen, "invalid value '%.40s' in %s: expected a duration such as 0, 250, 250ms, 5s%s", t, name,
                 forever_ok ? ", or -1 (wait as long as it takes)" : "");
        return -1;
    }
    if (ms > hi) {
        snprintf(err, errlen, "invalid value '%.40s' in %s: out of range (at most %llu ms)", t, name,
                 (unsigned long long)hi);
        return -1;
    }
    *out = (long long)ms;
    return 1;
}

static void warn_unknown(void)
{
    for (char **e = environ; e && *e; e++) {
        if (strncmp(*e, "LOGAGENT_CLIENT_", 16) != 0)
            continue;
        size_t n = strcspn(*e, "=");
        int known = 0;
        for (int i = 0; KNOWN[i] && !known; i++)
            known = strlen(KNOWN[i]) == n && !strncmp(*e, KNOWN[i], n);
        if (!known)
            fprintf(stderr, "logagent: unknown environment variable %.*s ignored (known: LOGAGENT_CLIENT_BLOCK_TIMEOUT_MS, "
                            "LOGAGENT_CLIENT_BUFFER_BYTES, LOGAGENT_CLIENT_EXIT_FLUSH_TIMEOUT_MS, "
                            "LOGAGENT_CLIENT_MAX_RECORD_BYTES)\n", (int)(n > 80 ? 80 : n), *e);
    }
}

int la_env_read(la_env *e, char *err, size_t errlen)
{
    memset(e, 0, sizeof *e);
    e->exit_flush_ms = -1;
    warn_unknown();
    uint64_t v;
    long long ms;
    int r;
    if ((r = env_size(KNOWN[0], 1 << 10, 1 << 30, &v, err, errlen)) < 0)
        return -1;
    if (r)
        e->opts.buffer_bytes = (size_t)v;
    if ((r = env_ms(KNOWN[1], 3600000, 1, &ms, err, errlen)) < 0)
        return -1;
    if (r)
        e->opts.block_timeout_ms = (int)ms;
    if ((r = env_size(KNOWN[2], 64, 64 << 20, &v, err, errlen)) < 0)
        return -1;
    if (r)
        e->max_record = (size_t)v;
    if ((r = env_ms(KNOWN[3], 3600000, 0, &ms, err, errlen)) < 0)
        return -1;
    if (r)
        e->exit_flush_ms = (int)ms;
    return 0;
}
