/* log.h — the agent's own log: one logfmt line per event on stderr.
 *
 *   ts=2026-11-29T01:02:03.456Z level=warn msg="malformed input, connection closed" pid=1234
 *
 * Thread-safe (each line is one write(2)). A log_limit lets a call site log the first occurrence and then at
 * most one line per interval, carrying the count of lines it suppressed meanwhile. */
#ifndef LOGAGENT_LOG_H
#define LOGAGENT_LOG_H

#include <stdatomic.h>
#include <stdint.h>

enum log_level { LOG_DEBUG = 0, LOG_INFO = 1, LOG_WARN = 2, LOG_ERROR = 3 };

void log_set_level(int level);
/* Parses debug|info|warn|error; returns the level or -1. */
int log_level_parse(const char *s);

/* fmt is the logfmt tail after `msg=`: e.g. log_write(LOG_INFO, "\"listening\" socket=%s", path). */
void log_write(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

typedef struct log_limit {
    _Atomic int64_t next_ns;      /* monotonic time before which lines are suppressed */
    _Atomic uint64_t suppressed;
} log_limit;

/* Returns the number of suppressed lines to report (>= 0) when this occurrence may be logged, or -1. */
int64_t log_limit_check(log_limit *l, int64_t interval_ms);

#endif
