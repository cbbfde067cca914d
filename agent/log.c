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
