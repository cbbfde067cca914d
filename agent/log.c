/* log.c — logfmt lines on stderr (see log.h). */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static _Atomic int g_level = LOG_INFO; /* process-wide setting, written at start and on reload */
static _Atomic int g_journal;          /* stderr is the journal's stream: lines start with <priority> */
/* The libraries' lines (log_library): their callback (gpr_set_log_function) takes no argument, so their rate
 * limits live here, one per level, like the process-wide level above. */
static log_limit g_lib_limit[4];
static const int PRIORITY[] = {7, 6, 4, 3}; /* syslog's debug, info, warning, err */

static const char *const NAMES[] = {"debug", "info", "warn", "error"};

void log_set_level(int level) { atomic_store(&g_level, level); }

static _Atomic int g_format; /* enum log_format: process-wide, like the level */

void log_set_format(int format) { atomic_store(&g_format, format); }

void log_detect_journal(void)
{
    const char *js = getenv("JOURNAL_STREAM");
    unsigned long long dev, ino;
    struct stat st;
    if (js && sscanf(js, "%llu:%llu", &dev, &ino) == 2 && fstat(STDERR_FILENO, &st) == 0 &&
        (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino)
        atomic_store(&g_journal, 1);
}

int log_level_parse(const char *s)
{
    for (int i = 0; i < 4; i++)
        if (strcmp(s, NAMES[i]) == 0)
            return i;
    if (strcmp(s, "warning") == 0)
        return LOG_WARN;
    return -1;
}

/* Appends s[0..len) to out as the inside of a JSON string. Returns the new length (never past cap). */
static size_t json_str(char *out, size_t o, size_t cap, const char *s, size_t len)
{
    for (size_t i = 0; i < len && o + 7 < cap; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            out[o++] = '\\';
            out[o++] = (char)c;
        } else if (c < 0x20) {
            o += (size_t)snprintf(out + o, cap - o, "\\u%04x", c);
        } else {
            out[o++] = (char)c;
        }
    }
    return o;
}

/* A logfmt value written as a JSON number may stay one: -?(0|[1-9][0-9]*)(.[0-9]+)?, at most 18 characters. */
static int json_number(const char *v, size_t len)
{
    size_t i = v[0] == '-';
    if (len > 18 || i >= len || (v[i] == '0' && i + 1 < len && v[i + 1] != '.'))
        return 0;
    size_t digits = 0, dot = 0;
    for (; i < len; i++) {
        if (v[i] == '.' && !dot && digits) {
            dot = 1;
            digits = 0;
        } else if (v[i] >= '0' && v[i] <= '9') {
            digits++;
        } else {
            return 0;
        }
    }
    return digits > 0;
}

/* One logfmt line (key=value or key="quoted \\" value", space-separated) as one JSON object. Returns its length
 * (at most cap - 1). */
static size_t logfmt_to_json(const char *in, char *out, size_t cap)
{
    size_t o = 0;
    out[o++] = '{';
    const char *p = in;
    while (*p && o + 16 < cap) {
        while (*p == ' ')
            p++;
        const char *key = p;
        while (*p && *p != '=' && *p != ' ')
            p++;
        size_t klen = (size_t)(p - key);
        if (!klen)
            break;
        if (o > 1)
            out[o++] = ',';
        out[o++] = '"';
        o = json_str(out, o, cap - 4, key, klen);
        out[o++] = '"';
        out[o++] = ':';
        if (*p == '=' && p[1] == '"') { /* quoted: its \\" and \\\\ unescaped, then escaped for JSON */
            out[o++] = '"';
            for (p += 2; *p && *p != '"'; p++) {
                if (*p == '\\' && p[1])
                    p++;
                o = json_str(out, o, cap - 3, p, 1);
            }
            if (*p == '"')
                p++;
            out[o++] = '"';
            continue;
        }
        const char *v = *p == '=' ? ++p : p;
        while (*p && *p != ' ')
            p++;
        size_t vlen = (size_t)(p - v);
        if (json_number(v, vlen) && o + vlen + 3 < cap) {
            memcpy(out + o, v, vlen);
            o += vlen;
        } else {
            out[o++] = '"';
            o = json_str(out, o, cap - 3, v, vlen);
            out[o++] = '"';
        }
    }
    out[o++] = '}';
    return o;
}

void log_write(int level, const char *fmt, ...)
{
    if (level < atomic_load_explicit(&g_level, memory_order_relaxed))
        return;
    char line[8192]; /* SIGUSR1's stats document fits */
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    level = level < 0 ? 0 : level > 3 ? 3 : level;
    int n = atomic_load_explicit(&g_journal, memory_order_relaxed) ? snprintf(line, 8, "<%d>", PRIORITY[level]) : 0;
    n += snprintf(line + n, sizeof line - (size_t)n, "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ level=%s msg=",
                  tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                  ts.tv_nsec / 1000000, NAMES[level]);
    va_list ap;
    va_start(ap, fmt);
    n += vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    va_end(ap);
    if (n > (int)sizeof line - 2)
        n = (int)sizeof line - 2;
    char json[2 * sizeof line + 64];
    const char *out = line;
    if (atomic_load_explicit(&g_format, memory_order_relaxed) == LOG_FORMAT_JSON) {
        line[n] = 0;
        int skip = line[0] == '<' ? 3 : 0; /* the journal's <p> prefix stays in front */
        memcpy(json, line, (size_t)skip);
        n = skip + (int)logfmt_to_json(line + skip, json + skip, sizeof json - (size_t)skip - 1);
        out = json;
    }
    ((char *)out)[n++] = '\n';
    ssize_t w = write(STDERR_FILENO, out, (size_t)n);
    (void)w; /* nowhere to report a failure to write the log */
}

int64_t log_limit_check(log_limit *l, int64_t interval_ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    int64_t now = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
    int64_t next = atomic_load(&l->next_ns);
    if (now < next || !atomic_compare_exchange_strong(&l->next_ns, &next, now + interval_ms * 1000000)) {
        atomic_fetch_add(&l->suppressed, 1);
        return -1;
    }
    return (int64_t)atomic_exchange(&l->suppressed, 0);
}

void log_library(int level, const char *lib, const char *file, int line, const char *msg)
{
    level = level < 0 ? 0 : level > 3 ? 3 : level;
    if (level < atomic_load_explicit(&g_level, memory_order_relaxed))
        return;
    int64_t suppressed = log_limit_check(&g_lib_limit[level], 10000);
    if (suppressed < 0)
        return;
    char text[400];
    size_t n = 0;
    for (; msg && msg[n] && n < sizeof text - 1; n++) /* one logfmt value: no quotes, no line breaks */
        text[n] = msg[n] == '"' ? '\'' : (unsigned char)msg[n] < 0x20 ? ' ' : msg[n];
    text[n] = 0;
    const char *base = file ? strrchr(file, '/') : NULL;
    log_write(level, "\"%s: %s\" source=%s:%d suppressed=%lld", lib, text, base ? base + 1 : file ? file : "?", line,
              (long long)suppressed);
}
