/* httpc.h — the smallest HTTP/1.1 client logagent-bench needs: one blocking keep-alive connection over TCP
 * or a Unix socket, one request at a time, a response read whole (Content-Length, chunked, or up to EOF).
 * Used for the agent's HTTP ingest (--http) and for polling its stats socket (--stats-socket).
 * Not thread-safe per connection: one connection per thread. */
#ifndef LOGAGENT_BENCH_HTTPC_H
#define LOGAGENT_BENCH_HTTPC_H

#include <stddef.h>

#define HTTPC_MAX_BODY (4u << 20)   /* a longer response is an error (-EMSGSIZE) */

/* Where to connect: "http://HOST:PORT" (TCP, IPv4/IPv6/name) or "unix:PATH". */
typedef struct httpc_target {
    int is_unix;
    char path[108];          /* unix: the socket path */
    char host[256];          /* tcp: host without brackets */
    char port[8];            /* tcp: port as text */
    char host_header[300];   /* the Host: header value */
} httpc_target;

/* One connection. Fields are private; zero it with httpc_init. */
typedef struct httpc_conn {
    const httpc_target *target;
    int fd;                  /* -1 when not connected */
    int io_timeout_ms;       /* send/receive timeout on the socket (0: none) */
    char *buf;               /* response bytes: headers, then the body (owned) */
    size_t cap, len;
} httpc_conn;

typedef struct httpc_response {
    int status;              /* e.g. 200 */
    const char *body;        /* NUL-terminated; valid until the next request or httpc_close */
    size_t body_len;
} httpc_response;

/* Parses URL into *t. Returns 0, or -EINVAL (message in err) for anything else than http://HOST:PORT[/] or
 * unix:PATH (an https URL, a path after the port, a missing port, a path too long for sun_path). */
int httpc_parse_target(const char *url, httpc_target *t, char *err, size_t errlen);

/* A connection to t (not yet connected: the first request connects). io_timeout_ms bounds each send and each
 * receive (0: no bound). */
void httpc_init(httpc_conn *c, const httpc_target *t, int io_timeout_ms);

/* Connects now if not connected. Returns 0 or -errno (name resolution failures are -EHOSTUNREACH, with the
 * resolver's message in err). */
int httpc_connect(httpc_conn *c, char *err, size_t errlen);

/* Sends one request (Content-Length body; body may be NULL with len 0) and reads the whole response into *r.
 * Connects first when needed. Returns 0 (any status: the caller judges it), or -errno on a connection or
 * protocol error (-EPROTO: not HTTP; -EMSGSIZE: response too long), with a message in err; the connection is
 * then closed, and the next request opens a new one. A response with "Connection: close" is read to the end
 * and the connection closed too. */
int httpc_request(httpc_conn *c, const char *method, const char *path, const char *content_type,
                  const char *body, size_t len, httpc_response *r, char *err, size_t errlen);

/* Closes the connection and frees the buffer; c may be used again (it reconnects). */
void httpc_close(httpc_conn *c);

#endif
