/* ctl_http.c — logagentctl's HTTP/1.1 client (see ctl_http.h).
 *
 * One request per connection: connect (non-blocking, so a TCP connect obeys the deadline), write the
 * request, read until the server closes, then parse the status line, the headers and the body. Every wait is
 * a poll(2) bounded by the one deadline. The response is capped at CTL_HTTP_MAX_BYTES, and every length the
 * server announces (Content-Length, chunk sizes) is checked against what was actually read. */
#include "ctl_http.h"

#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define CTL_HTTP_MAX_BYTES ((size_t)64 << 20)

int ctl_endpoint_parse(const char *text, ctl_endpoint *ep, char *err, size_t errlen)
{
    memset(ep, 0, sizeof *ep);
    if (!text || !*text) {
        snprintf(err, errlen, "the stats socket is empty");
        return -EINVAL;
    }
    if (strlen(text) >= sizeof ep->text) {
        snprintf(err, errlen, "'%.40s...' is too long", text);
        return -EINVAL;
    }
    snprintf(ep->text, sizeof ep->text, "%s", text);
    const char *colon = strrchr(text, ':');
    if (strchr(text, '/') || !colon) {
        if (strlen(text) >= sizeof ep->path) {
            snprintf(err, errlen, "socket path '%s' is longer than %zu bytes", text, sizeof ep->path - 1);
            return -EINVAL;
        }
        snprintf(ep->path, sizeof ep->path, "%s", text);
        return 0;
    }
    const char *host = text, *port = colon + 1;
    size_t hostlen = (size_t)(colon - text);
    if (text[0] == '[' && hostlen >= 2 && colon[-1] == ']') {
        host++;
        hostlen -= 2;
    }
    size_t portlen = strspn(port, "0123456789");
    long portnum = portlen && portlen <= 5 && !port[portlen] ? strtol(port, NULL, 10) : 0;
    if (hostlen >= sizeof ep->host || portnum < 1 || portnum > 65535) {
        snprintf(err, errlen, "'%s' is neither HOST:PORT (port 1-65535) nor a socket path (paths contain '/')",
                 text);
        return -EINVAL;
    }
    ep->tcp = 1;
    memcpy(ep->host, hostlen ? host : "localhost", hostlen ? hostlen : strlen("localhost")); /* ":9100" */
    snprintf(ep->port, sizeof ep->port, "%ld", portnum);
    return 0;
}

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits until fd is ready for events or the deadline passes. Returns 0, -ETIMEDOUT, or -errno. */
static int wait_fd(int fd, short events, long long deadline)
{
    for (;;) {
        long long left = deadline - now_ms();
        if (left <= 0)
            return -ETIMEDOUT;
        struct pollfd p = {.fd = fd, .events = events};
        int n = poll(&p, 1, left > 60000 ? 60000 : (int)left);
        if (n > 0)
            return 0;
        if (n < 0 && errno != EINTR)
            return -errno;
    }
}

/* A Unix connect never says EINPROGRESS: with the listener's backlog full it fails with EAGAIN at once. A busy
 * agent is not a dead one, so that is retried (every 20 ms) until the deadline. */
static int connect_unix(const ctl_endpoint *ep, long long deadline, int *fdp)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    memcpy(sun.sun_path, ep->path, strlen(ep->path) + 1);
    for (;;) {
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
            return -errno;
        if (connect(fd, (struct sockaddr *)&sun, sizeof sun) == 0) {
            *fdp = fd;
            return 0;
        }
        int e = errno;
        close(fd);
        if (e != EAGAIN || now_ms() + 20 > deadline)
            return -e;
        struct timespec ts = {0, 20 * 1000000};
        nanosleep(&ts, NULL);
    }
}

/* Non-blocking connect to one address, finished within the deadline. Returns 0 or -errno. */
static int connect_addr(const struct addrinfo *ai, long long deadline, int *fdp)
{
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
    if (fd < 0)
        return -errno;
    int rc = connect(fd, ai->ai_addr, ai->ai_addrlen) < 0 ? -errno : 0;
    if (rc == -EINPROGRESS && (rc = wait_fd(fd, POLLOUT, deadline)) == 0) {
        int soerr = 0;
        socklen_t len = sizeof soerr;
        rc = getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0 ? -errno : -soerr;
    }
    if (rc < 0) {
        close(fd);
        return rc;
    }
    *fdp = fd;
    return 0;
}

static int connect_tcp(const ctl_endpoint *ep, long long deadline, int *fdp, char *err, size_t errlen)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *list = NULL;
    int gai = getaddrinfo(ep->host, ep->port, &hints, &list);
    if (gai != 0) {
        snprintf(err, errlen, "cannot resolve '%s': %s", ep->host, gai_strerror(gai));
        return gai == EAI_SYSTEM ? -errno : -EHOSTUNREACH;
    }
    int rc = -EHOSTUNREACH;
    for (const struct addrinfo *ai = list; ai && rc < 0; ai = ai->ai_next)
        rc = connect_addr(ai, deadline, fdp);
    freeaddrinfo(list);
    if (rc < 0)
        snprintf(err, errlen, "cannot connect to %s: %s", ep->text, strerror(-rc));
    return rc;
}

static int send_all(int fd, const char *buf, size_t len, long long deadline)
{
    while (len > 0) {
        ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
        if (n > 0) {
            buf += n;
            len -= (size_t)n;
            continue;
        }
        if (n < 0 && errno != EAGAIN && errno != EINTR)
            return -errno;
        int rc = wait_fd(fd, POLLOUT, deadline);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* Reads until EOF into a malloc'd buffer (one spare byte for a NUL). Returns 0 or -errno; on error *out is
 * NULL. */
static int recv_all(int fd, long long deadline, char **out, size_t *outlen)
{
    size_t cap = 16384, len = 0;
    char *buf = malloc(cap);
    int rc = buf ? 0 : -ENOMEM;
    while (rc == 0) {
        if (len + 1 == cap) {
            char *bigger = cap * 2 > CTL_HTTP_MAX_BYTES + 1 ? NULL : realloc(buf, cap * 2);
            if (!bigger) {
                rc = cap * 2 > CTL_HTTP_MAX_BYTES + 1 ? -E2BIG : -ENOMEM;
                break;
            }
            buf = bigger;
            cap *= 2;
        }
        ssize_t n = recv(fd, buf + len, cap - 1 - len, 0);
        if (n == 0)
            break;
        if (n > 0)
            len += (size_t)n;
        else if (errno == EAGAIN || errno == EINTR)
            rc = wait_fd(fd, POLLIN, deadline);
        else
            rc = -errno;
    }
    if (rc < 0) {
        free(buf);
        buf = NULL;
    }
    *out = buf;
    *outlen = len;
    return rc;
}

/* Decodes a chunked body in place (the output is never longer than the input). Returns the decoded length, or
 * -1 when a chunk is malformed or cut short. */
static long dechunk(char *body, size_t len)
{
    size_t in = 0, out = 0;
    for (;;) {
        char *eol = memmem(body + in, len - in, "\r\n", 2);
        size_t digits = strspn(body + in, "0123456789abcdefABCDEF");
        if (!eol || digits == 0 || digits > 8)
            return -1;
        size_t size = strtoul(body + in, NULL, 16);
        in = (size_t)(eol - body) + 2;
        if (size == 0)
            return (long)out;
        if (size > len - in || len - in - size < 2 || memcmp(body + in + size, "\r\n", 2) != 0)
            return -1;
        memmove(body + out, body + in, size);
        out += size;
        in += size + 2;
    }
}

/* Finds header NAME in the header block [h, end); copies its value into val. Returns 1 if found. */
static int header(const char *h, const char *end, const char *name, char *val, size_t vallen)
{
    size_t nlen = strlen(name);
    while (h < end) {
        const char *eol = memmem(h, (size_t)(end - h), "\r\n", 2);
        if (!eol)
            eol = end;
        if ((size_t)(eol - h) > nlen && h[nlen] == ':' && strncasecmp(h, name, nlen) == 0) {
            const char *v = h + nlen + 1;
            while (v < eol && (*v == ' ' || *v == '\t'))
                v++;
            snprintf(val, vallen, "%.*s", (int)(eol - v), v);
            return 1;
        }
        h = eol + 2;
    }
    return 0;
}

/* Frames the body that follows the headers; moves it to the start of raw. Returns its length or -1. */
static long frame_body(char *raw, size_t len, const char *hdr, const char *hdr_end, char *err, size_t errlen)
{
    size_t start = (size_t)(hdr_end - raw) + 4, avail = len - start;
    char val[64];
    long blen = (long)avail;
    if (header(hdr, hdr_end, "Transfer-Encoding", val, sizeof val) && strcasecmp(val, "chunked") == 0) {
        if ((blen = dechunk(raw + start, avail)) < 0)
            snprintf(err, errlen, "malformed chunked body");
    } else if (header(hdr, hdr_end, "Content-Length", val, sizeof val)) {
        char *end;
        unsigned long long cl = strtoull(val, &end, 10);
        if (val[0] < '0' || val[0] > '9' || *end) {
            snprintf(err, errlen, "bad Content-Length '%s'", val);
            blen = -1;
        } else if (cl > avail) {
            snprintf(err, errlen, "body cut short: Content-Length %s, %zu bytes received", val, avail);
            blen = -1;
        } else {
            blen = (long)cl;
        }
    }
    if (blen >= 0) {
        memmove(raw, raw + start, (size_t)blen);
        raw[blen] = '\0';
    }
    return blen;
}

/* Parses raw (len bytes, with room for a NUL) into res, which takes ownership of raw on success. */
static int parse_response(char *raw, size_t len, ctl_response *res, char *err, size_t errlen)
{
    raw[len] = '\0';
    const char *hdr_end = memmem(raw, len, "\r\n\r\n", 4);
    int status = 0, reason_at = 0;
    if (!hdr_end || sscanf(raw, "HTTP/1.%*1[01] %3d %n", &status, &reason_at) < 1 || status < 100 ||
        status > 599) {
        snprintf(err, errlen, "the answer is not HTTP (%zu bytes%s)", len, len ? "" : ": the server closed at once");
        return -EPROTO;
    }
    const char *eol = strstr(raw, "\r\n");
    snprintf(res->reason, sizeof res->reason, "%.*s",
             reason_at > 0 && raw + reason_at < eol ? (int)(eol - raw - reason_at) : 0, raw + reason_at);
    long blen = frame_body(raw, len, eol + 2, hdr_end, err, errlen);
    if (blen < 0)
        return -EPROTO;
    res->status = status;
    res->body = raw;
    res->body_len = (size_t)blen;
    return 0;
}

/* Connects, sends the request, reads the whole answer. Returns 0 or -errno with err set. */
static int exchange(const ctl_endpoint *ep, const char *target, double timeout_s, char **raw, size_t *len,
                    char *err, size_t errlen)
{
    long long deadline = now_ms() + (long long)(timeout_s * 1000.0 + 0.5);
    int fd = -1;
    int rc = ep->tcp ? connect_tcp(ep, deadline, &fd, err, errlen) : connect_unix(ep, deadline, &fd);
    if (rc < 0) {
        if (!ep->tcp)
            snprintf(err, errlen, "cannot connect to %s: %s", ep->text, strerror(-rc));
        return rc;
    }
    char req[1200];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: localhost\r\nUser-Agent: logagentctl\r\n"
                                      "Connection: close\r\n\r\n", target);
    if (n < 0 || (size_t)n >= sizeof req)
        rc = -ENAMETOOLONG;
    if (rc == 0)
        rc = send_all(fd, req, (size_t)n, deadline);
    if (rc == 0)
        rc = recv_all(fd, deadline, raw, len);
    close(fd);
    if (rc == -ETIMEDOUT)
        snprintf(err, errlen, "GET %s on %s: no complete answer within %gs (--timeout)", target, ep->text, timeout_s);
    else if (rc < 0)
        snprintf(err, errlen, "GET %s on %s: %s", target, ep->text,
                 rc == -E2BIG ? "answer larger than 64 MiB" : strerror(-rc));
    return rc;
}

int ctl_http_get(const ctl_endpoint *ep, const char *target, double timeout_s, ctl_response *res, char *err,
                 size_t errlen)
{
    memset(res, 0, sizeof *res);
    char *raw = NULL;
    size_t len = 0;
    int rc = exchange(ep, target, timeout_s, &raw, &len, err, errlen);
    if (rc < 0)
        return rc;
    char why[200];
    rc = parse_response(raw, len, res, why, sizeof why);
    if (rc < 0) {
        snprintf(err, errlen, "GET %s on %s: %s", target, ep->text, why);
        free(raw);
    }
    return rc;
}

void ctl_response_free(ctl_response *res)
{
    free(res->body);
    res->body = NULL;
    res->body_len = 0;
}
