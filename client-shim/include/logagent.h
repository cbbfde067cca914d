/* logagent.h — liblogagent, the C client of logagentd.
 *
 * Hands log records to the local agent over its Unix socket as msgpack (docs/protocol.md) without ever
 * blocking the caller by default: a record is encoded into a bounded in-process buffer and a background
 * thread writes the buffer to the socket, reconnecting with backoff when the agent restarts. When the
 * buffer is full the record is dropped and counted (or, with block_timeout_ms > 0, the caller waits up
 * to that long for room).
 *
 * Thread safety: every function may be called from any thread on the same client.
 * fork(): the child starts with an empty buffer and opens its own connection on its first write;
 * records still buffered in the parent at fork time stay the parent's.
 *
 * Errors are negative errno values; results carry a human-readable error_message like the original
 * service's write_log did. */
#ifndef LOGAGENT_H
#define LOGAGENT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define LOGAGENT_VERSION "0.1.0"
#define LOGAGENT_DEFAULT_SOCKET "/run/logagent/ingest.sock"

typedef struct logagent_client logagent_client;

typedef struct logagent_options {
    const char *socket_path;   /* NULL: $LOGAGENT_SOCKET, else LOGAGENT_DEFAULT_SOCKET */
    size_t buffer_bytes;       /* in-process buffer bound; 0: 4 MiB (kept within 1 KiB..1 GiB) */
    int block_timeout_ms;      /* when the buffer is full: 0 drop at once (default), >0 wait up to this, <0 wait forever */
} logagent_options;

/* The original write_log's result: success means the record is queued for the agent. */
typedef struct logagent_result {
    int success;
    char log_id[33];           /* 32 lowercase hex chars of a 128-bit random id, NUL-terminated */
    char error_message[256];   /* empty on success; room for a socket path and its errno text */
} logagent_result;

typedef enum logagent_type {
    LOGAGENT_END = 0,          /* terminates a variadic field list */
    LOGAGENT_STR = 1,
    LOGAGENT_INT = 2,          /* int64_t */
    LOGAGENT_DOUBLE = 3,
    LOGAGENT_BOOL = 4
} logagent_type;

/* A metadata field. Keys starting with '_' are reserved for the agent's trusted fields: they are sent as
 * given, and the agent drops and counts them (reserved_key). A key the library writes itself (message,
 * level, service_name, trace_id, span_id, log_id, timestamp) is not sent twice: such a field is left
 * out, except that a "timestamp" field (e.g. an RFC 3339 string) stands in for the library's "now" when
 * the record's timestamp_unix_nano is 0. LOGAGENT_STR with a NULL value is sent as nil. */
typedef struct logagent_field {
    const char *key;
    logagent_type type;
    union {
        const char *s;
        int64_t i;
        double d;
        int b;
    } v;
} logagent_field;

/* One record. Every pointer may be NULL except message; level NULL means "INFO".
 * timestamp_unix_nano 0 means "now" (taken by the library when the record is written). */
typedef struct logagent_record {
    const char *message;
    const char *service_name;
    const char *level;
    const char *trace_id;
    const char *span_id;
    int64_t timestamp_unix_nano;
    const logagent_field *fields;
    size_t n_fields;
} logagent_record;

typedef struct logagent_stats {
    uint64_t written;          /* records accepted into the buffer */
    uint64_t sent;             /* records fully written to the socket */
    uint64_t dropped;          /* records dropped because the buffer was full */
    uint64_t reconnects;       /* successful connects after the first */
    size_t buffered_bytes;     /* bytes waiting in the buffer now */
} logagent_stats;

/* Creates a client; it connects lazily (the agent need not be up yet).
 * opts may be NULL for defaults. Returns 0 and sets *out, or -errno (nothing allocated). */
int logagent_client_new(const logagent_options *opts, logagent_client **out);

/* Flushes up to flush_timeout_ms (0: not at all) then frees the client. NULL is a no-op. */
void logagent_client_free(logagent_client *c, int flush_timeout_ms);

/* Queues one record. Never blocks unless block_timeout_ms says so. A record whose encoding exceeds
 * min(buffer_bytes, 1 MiB) (the agent's default max_record_bytes) is refused. Records queued while the
 * agent is away are kept (up to buffer_bytes) and sent when it is back; a record cut by a broken
 * connection is re-sent whole. Records already in the socket when the agent dies may be lost. */
logagent_result logagent_write(logagent_client *c, const logagent_record *r);

/* The original write_log: message, service_name, level, trace_id, span_id (each may be NULL except message),
 * then metadata as (type, key, value) triples ended by LOGAGENT_END:
 *   logagent_write_log(c, "user logged in", "auth", "INFO", NULL, NULL,
 *                      LOGAGENT_STR, "user", "alice", LOGAGENT_INT, "attempt", (int64_t)2, LOGAGENT_END);
 * INT takes an int64_t, DOUBLE a double, BOOL an int. At most 64 fields. */
logagent_result logagent_write_log(logagent_client *c, const char *message, const char *service_name,
                                   const char *level, const char *trace_id, const char *span_id, ...);

/* Waits until everything buffered before the call is written to the socket, up to timeout_ms
 * (<0: forever). Returns 0, -ETIMEDOUT, or -ENOTCONN when the agent cannot be reached (the wait ran
 * out while disconnected). */
int logagent_flush(logagent_client *c, int timeout_ms);

void logagent_get_stats(logagent_client *c, logagent_stats *out);

/* Process-wide default client, created on first use from $LOGAGENT_SOCKET (thread-safe). NULL on failure.
 * Never free it; at exit() it waits up to 1 s for its buffered records to be written. */
logagent_client *logagent_default(void);

/* Is an agent listening on socket_path (NULL: $LOGAGENT_SOCKET, else the default)? Connects once and closes.
 * Returns 0, or -errno (-ENOENT / -ECONNREFUSED: no agent there). For tools that must fail fast. */
int logagent_probe(const char *socket_path);

/* Fills buf (33 bytes) with a new 128-bit random id as 32 lowercase hex chars. */
void logagent_new_log_id(char buf[33]);

#ifdef __cplusplus
}
#endif
#endif
