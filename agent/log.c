/* log.c — logfmt lines on stderr (see log.h). */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static _Atomic int g_level = LOG_INFO; /* process-wide setting, written at start and on reload */

static const char *const NAMES[] = {"debug", "info", "warn", "error"};

void log_set_level(int level) { atomic_store(&g_level, level); }

int log_level_parse(const char *s)
{
    for (int i = 0; i < 4; i++)
        if (strcmp(s, NAMES[i]) == 0)
            return i;
    if (strcmp(s, "warning") == 0)
        return LOG_WARN;
    return -1;
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
    int n = snprintf(line, sizeof line, "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ level=%s msg=", tm.tm_year + 1900,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000,
                     NAMES[level < 0 ? 0 : level > 3 ? 3 : level]);
    va_list ap;
    va_start(ap, fmt);
    n += vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    va_end(ap);
    if (n > (int)sizeof line - 2)
        n = (int)sizeof line - 2;
    line[n++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, (size_t)n);
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
