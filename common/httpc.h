/* httpc.h — the HTTP/1.1 client of logagentctl (the stats socket) and logagent-bench (the HTTP ingest and the
 * stats socket), one copy: blocking, one request at a time on a keep-alive connection over a Unix socket or TCP.
 *
 * Every request — connecting when needed, sending, reading the whole answer — finishes within the connection's
 * timeout or fails with -ETIMEDOUT. The answer is read whole into the connection's buffer, its body framed by
 * Content-Length, chunked transfer coding, or the end of the stream, every announced length checked against what
 * arrived, and the whole capped at HTTPC_MAX_BYTES.
 *
 * Compiled into each program that uses it (logagentctl must not link the agent library): libc only. Not
 * thread-safe per connection: one connection per thread. */
#ifndef LOGAGENT_HTTPC_H
#define LOGAGENT_HTTPC_H

#include <stddef.h>

#define HTTPC_MAX_BYTES ((size_t)64 << 20) /* a longer answer is an error (-EMSGSIZE) */

/* Where to connect. */
typedef struct httpc_target {
    int is_unix;           /* 1: the Unix socket at path; 0: TCP to host:port */
    char path[108];        /* sizeof(sun_path) */
    char host[256];        /* TCP: without brackets */
    char port[6];
    char host_header[300]; /* the Host: header: "localhost" on a Unix socket */
    char text[400];        /* as the user wrote it, for messages */
} httpc_target;

/* logagent-bench's --http: "http://HOST:PORT" (an optional trailing '/'; IPv6 hosts bracketed) or "unix:PATH".
 * Returns 0, or -EINVAL with the reason in err (an https URL, a path after the port, a missing port, a socket
 * path too long for sun_path). */
int httpc_parse_url(const char *url, httpc_target *t, char *err, size_t errlen);

/* logagentctl's --stats-socket: a value without '/' that contains ':' is HOST:PORT (IPv6 hosts may be bracketed,
 * [::1]:9100; ":PORT" means localhost, as in logagentd --metrics-listen); anything else is a Unix socket path.
 * Returns 0, or -EINVAL with the reason in err. */
int httpc_parse_endpoint(const char *text, httpc_target *t, char *err, size_t errlen);

/* A Unix socket path as it is. Returns 0, or -EINVAL (empty) or -ENAMETOOLONG with the reason in err. */
int httpc_target_unix(const char *path, httpc_target *t, char *err, size_t errlen);

/* One connection; fields are private except close_after, which a caller may set after httpc_init. */
typedef struct httpc_conn {
    const httpc_target *target;
    const char *user_agent;
    int timeout_ms;  /* each request (connect, send, the whole answer) within this; <= 0: no bound */
    int close_after; /* one request per connection: sends `Connection: close` and closes after the answer */
    int fd;          /* -1 when not connected */
    char *buf;       /* the answer: status line and headers, then the body (owned) */
    size_t cap, len;
} httpc_conn;

typedef struct httpc_response {
    int status;       /* e.g. 200, 503 */
    char reason[64];  /* the status line's reason phrase, as sent (may hold control characters) */
    const char *body; /* NUL-terminated (a body containing NULs is still body_len bytes long); in the connection's
                       * buffer: valid until its next request or httpc_close, or the caller's after httpc_take_body */
    size_t body_len;
} httpc_response;

/* A connection to t (not connected yet: the first request connects). t must outlive it. */
void httpc_init(httpc_conn *c, const httpc_target *t, const char *user_agent, int timeout_ms);

/* Connects now if not connected, within the timeout (a Unix socket whose backlog is full is retried: a busy agent
 * is not a dead one). Returns 0, or -errno with "cannot connect to TEXT: why" (or "cannot resolve 'HOST': why")
 * in err. */
int httpc_connect(httpc_conn *c, char *err, size_t errlen);

/* Sends one request (body may be NULL with len 0; content_type NULL: none) and reads the whole answer into *r.
 * Connects first when needed. Returns 0 whatever the HTTP status (the caller judges it), or -errno with a message
 * in err: connecting (as httpc_connect), or "METHOD PATH on TEXT: why" — -ETIMEDOUT (no complete answer within
 * the timeout), -EPROTO (not HTTP, a bad length or chunk, a body cut short), -EMSGSIZE (over HTTPC_MAX_BYTES),
 * or the socket's -errno. After an error the connection is closed (the next request opens a new one); so it is
 * after an answer saying `Connection: close`, or an HTTP/1.0 one. */
int httpc_request(httpc_conn *c, const char *method, const char *path, const char *content_type, const char *body,
                  size_t len, httpc_response *r, char *err, size_t errlen);

/* Hands r's body (from the last request on c) to the caller: returns it, to be free()d by the caller, and points
 * r->body at it. c keeps working (with a new buffer). */
char *httpc_take_body(httpc_conn *c, httpc_response *r);

/* Closes the connection and frees the buffer; c may be used again (it reconnects). */
void httpc_close(httpc_conn *c);

#endif
