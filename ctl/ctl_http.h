/* ctl_http.h — logagentctl's HTTP client: one blocking GET over a Unix or TCP socket, under one deadline.
 *
 * Just enough HTTP/1.1 for the agent's stats server: the request says `Connection: close`, the answer is
 * read to EOF, and its body is framed by Content-Length, chunked transfer coding, or the end of the stream. */
#ifndef LOGAGENT_CTL_HTTP_H
#define LOGAGENT_CTL_HTTP_H

#include <stddef.h>

/* Where the agent's stats server listens: a Unix socket path, or HOST:PORT (--metrics-listen). */
typedef struct ctl_endpoint {
    int tcp;        /* 0: Unix socket at path; 1: TCP to host:port */
    char path[108]; /* sizeof(sun_path) */
    char host[256];
    char port[6];
    char text[400]; /* as the user wrote it, for messages */
} ctl_endpoint;

/* Parses TEXT: a value without '/' that contains ':' is HOST:PORT (IPv6 hosts may be bracketed, [::1]:9100;
 * ":PORT" means localhost, as in logagentd --metrics-listen); anything else is a Unix socket path. Returns 0,
 * or -EINVAL with the reason in err. */
int ctl_endpoint_parse(const char *text, ctl_endpoint *ep, char *err, size_t errlen);

/* One response. body is NUL-terminated (a body containing NULs is still body_len bytes long). */
typedef struct ctl_response {
    int status;      /* e.g. 200, 503 */
    char reason[64]; /* the status line's reason phrase */
    char *body;      /* owned by the response: release with ctl_response_free */
    size_t body_len;
} ctl_response;

/* GETs TARGET (a path with an optional query, e.g. "/stats/clients?top=5") from EP; the whole exchange
 * (connect, write, read) must finish within timeout_s. Returns 0 with *res filled, whatever the HTTP status;
 * or a negative errno (ETIMEDOUT, ECONNREFUSED, ENOENT, EPROTO for a reply that is not HTTP, E2BIG for one
 * over 64 MiB, ...) with a message in err naming the endpoint, and *res left empty. */
int ctl_http_get(const ctl_endpoint *ep, const char *target, double timeout_s, ctl_response *res, char *err,
                 size_t errlen);

/* Frees the body; safe on an empty or already freed response. */
void ctl_response_free(ctl_response *res);

#endif
