/* log.h — the agent's own log: one logfmt line per event on stderr (or, --log-format json, one JSON object).
 *
 *   ts=2026-11-29T01:02:03.456Z level=warn msg="malformed input, connection closed" pid=1234
 *   {"ts":"2026-11-29T01:02:03.456Z","level":"warn","msg":"malformed input, connection closed","pid":1234}
 *
 * Thread-safe (each line is one write(2)). A log_limit lets a call site log the first occurrence and then at
 * most one line per interval, carrying the count of lines it suppressed meanwhile. */
#ifndef LOGAGENT_LOG_H
#define LOGAGENT_LOG_H

#include <stdatomic.h>
#include <stdint.h>

enum log_level { LOG_DEBUG = 0, LOG_INFO = 1, LOG_WARN = 2, LOG_ERROR = 3 };

enum log_format { LOG_FORMAT_LOGFMT = 0, LOG_FORMAT_JSON = 1 };

void log_set_level(int level);
/* --log-format json: each line becomes one JSON object with the same keys, {"ts":…,"level":…,"msg":…,"key":…}; a
 * value is a JSON number when it is written as one (42, -1.5; not 0600), else a string. */
void log_set_format(int format);

/* When stderr is the journal's stream (systemd's JOURNAL_STREAM names its device and inode), every line starts
 * with its syslog priority, <7> debug, <6> info, <4> warn, <3> error, which journald reads and removes
 * (SyslogLevelPrefix=, on by default). Called once at start. */
void log_detect_journal(void);
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

/* A line a library wants to log (gRPC's, through gpr_set_log_function), in the agent's format:
 *   msg="grpc: Handshake failed with fatal error SSL_ERROR_SSL: ..." source=ssl_transport_security.cc:1501
 * at most one line per level per 10 s (suppressed= counts the others), quotes and line breaks taken out. */
void log_library(int level, const char *lib, const char *file, int line, const char *msg);

#endif
