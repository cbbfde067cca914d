/* httpc.c — the HTTP/1.1 client of logagentctl and logagent-bench (see httpc.h).
 *
 * A request: connect when needed (non-blocking, so a TCP connect obeys the deadline too), send the head and the
 * body in one sendmsg() (TCP_NODELAY, so Nagle never holds a small body back), then read the answer into the
 * connection's buffer: the head until its blank line, then the body made contiguous after it (Content-Length;
 * chunked, decoded in place; or, without either, up to EOF). Every wait is a poll(2) bounded by the request's one
 * deadline. Offsets, never pointers, are kept across reads because the buffer moves when it grows. */
#include "common/httpc.h"

#include "common/clock.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define MAX_HEAD 65536u /* status line and headers */
#define NO_DEADLINE INT64_MAX

static int fail(char *err, size_t errlen, int rc, const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Writes the message into err and returns rc. */
static int fail(char *err, size_t errlen, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return rc;
}

/* ---- targets -------------------------------------------------------------------------------------------- */

static void set_unix(httpc_target *t, const char *path, const char *text)
{
    memset(t, 0, sizeof *t);
    t->is_unix = 1;
    memcpy(t->path, path, strlen(path) + 1); /* the caller checked the length */
    snprintf(t->host_header, sizeof t->host_header, "localhost");
    snprintf(t->text, sizeof t->text, "%s", text);
}

/* host (hostlen bytes, no brackets) and port (digits) checked by the caller. */
static void set_tcp(httpc_target *t, const char *host, size_t hostlen, const char *port, const char *text)
{
    memset(t, 0, sizeof *t);
    memcpy(t->host, host, hostlen);
    snprintf(t->port, sizeof t->port, "%s", port);
    snprintf(t->host_header, sizeof t->host_header, strchr(t->host, ':') ? "[%s]:%s" : "%s:%s", t->host, t->port);
    snprintf(t->text, sizeof t->text, "%s", text);
}

/* The length of the digits at port when they make a port (1 to 5 digits, 1..65535), else 0. */
static size_t port_digits(const char *port)
{
    size_t n = strspn(port, "0123456789");
    long v = n && n < 6 ? strtol(port, NULL, 10) : 0;
    return v >= 1 && v <= 65535 ? n : 0;
}

int httpc_target_unix(const char *path, httpc_target *t, char *err, size_t errlen)
{
    if (!*path)
        return fail(err, errlen, -EINVAL, "the socket path is empty");
    if (strlen(path) >= sizeof t->path)
        return fail(err, errlen, -ENAMETOOLONG, "socket path '%s' is longer than %zu bytes", path,
                    sizeof t->path - 1);
    set_unix(t, path, path);
    return 0;
}

int httpc_parse_url(const char *url, httpc_target *t, char *err, size_t errlen)
{
    if (strncmp(url, "unix:", 5) == 0) {
        if (!url[5] || strlen(url + 5) >= sizeof t->path)
            return fail(err, errlen, -EINVAL, "unix:PATH needs a socket path of at most %zu bytes, got '%s'",
                        sizeof t->path - 1, url);
        set_unix(t, url + 5, url);
        return 0;
    }
    if (strncmp(url, "http://", 7) != 0)
        return fail(err, errlen, -EINVAL, "URL must be http://HOST:PORT or unix:PATH, got '%s'", url);
    const char *h = url + 7, *hend, *colon;
    if (*h == '[') {
        hend = strchr(h, ']');
        if (!hend || hend[1] != ':')
            return fail(err, errlen, -EINVAL, "URL must be http://[IPv6]:PORT, got '%s'", url);
        colon = hend + 1;
        h++;
    } else {
        colon = strrchr(h, ':');
        hend = colon;
    }
    if (!colon || hend == h || (size_t)(hend - h) >= sizeof t->host)
        return fail(err, errlen, -EINVAL, "URL needs a host and a port (http://HOST:PORT), got '%s'", url);
    size_t plen = port_digits(colon + 1);
    if (!plen || (colon[1 + plen] && strcmp(colon + 1 + plen, "/") != 0))
        return fail(err, errlen, -EINVAL, "URL needs a port from 1 to 65535 and no path, got '%s'", url);
    char port[6];
    snprintf(port, sizeof port, "%.*s", (int)plen, colon + 1);
    set_tcp(t, h, (size_t)(hend - h), port, url);
    return 0;
}

int httpc_parse_endpoint(const char *text, httpc_target *t, char *err, size_t errlen)
{
    if (!text || !*text)
        return fail(err, errlen, -EINVAL, "the value is empty");
    if (strlen(text) >= sizeof t->text)
        return fail(err, errlen, -EINVAL, "'%.40s...' is too long", text);
    const char *colon = strrchr(text, ':');
    if (strchr(text, '/') || !colon) {
        int rc = httpc_target_unix(text, t, err, errlen);
        return rc == -ENAMETOOLONG ? -EINVAL : rc;
    }
    const char *host = text, *port = colon + 1;
    size_t hostlen = (size_t)(colon - text), plen = port_digits(port);
    if (text[0] == '[' && hostlen >= 2 && colon[-1] == ']') {
        host++;
        hostlen -= 2;
    }
    if (hostlen >= sizeof t->host || !plen || port[plen])
        return fail(err, errlen, -EINVAL,
                    "'%s' is neither HOST:PORT (port 1-65535) nor a socket path (paths contain '/')", text);
    if (!hostlen) /* ":9100" */
        host = "localhost", hostlen = strlen("localhost");
    set_tcp(t, host, hostlen, port, text);
    return 0;
}

/* ---- connecting ----------------------------------------------------------------------------------------- */

void httpc_init(httpc_conn *c, const httpc_target *t, const char *user_agent, int timeout_ms)
{
    memset(c, 0, sizeof *c);
    c->target = t;
    c->user_agent = user_agent;
    c->timeout_ms = timeout_ms;
    c->fd = -1;
}

static int64_t deadline_of(const httpc_conn *c)
{
    return c->timeout_ms > 0 ? clock_mono_ms() + c->timeout_ms : NO_DEADLINE;
}

/* Waits until fd is ready for events or the deadline passes. Returns 0, -ETIMEDOUT, or -errno. */
static int wait_fd(int fd, short events, int64_t deadline)
{
    for (;;) {
        int64_t left = deadline == NO_DEADLINE ? 60000 : deadline - clock_mono_ms();
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
static int connect_unix(const httpc_target *t, int64_t deadline, int *fdp)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    memcpy(sun.sun_path, t->path, strlen(t->path) + 1);
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
        if (e != EAGAIN || (deadline != NO_DEADLINE && clock_mono_ms() + 20 > deadline))
            return -e;
        struct timespec ts = {0, 20 * 1000000};
        nanosleep(&ts, NULL);
    }
}

/* Non-blocking connect to one address, finished within the deadline. Returns 0 or -errno. */
static int connect_addr(const struct addrinfo *ai, int64_t deadline, int *fdp)
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
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one); /* only a latency hint */
    *fdp = fd;
    return 0;
}

static int connect_tcp(const httpc_target *t, int64_t deadline, int *fdp, char *err, size_t errlen)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *list = NULL;
    int gai = getaddrinfo(t->host, t->port, &hints, &list);
    if (gai != 0)
        return fail(err, errlen, gai == EAI_SYSTEM ? -errno : -EHOSTUNREACH, "cannot resolve '%s': %s", t->host,
                    gai_strerror(gai));
    int rc = -EHOSTUNREACH;
    for (const struct addrinfo *ai = list; ai && rc < 0; ai = ai->ai_next)
        rc = connect_addr(ai, deadline, fdp);
    freeaddrinfo(list);
    return rc < 0 ? fail(err, errlen, rc, "cannot connect to %s: %s", t->text, strerror(-rc)) : 0;
}

static int connect_by(httpc_conn *c, int64_t deadline, char *err, size_t errlen)
{
    if (c->fd >= 0)
        return 0;
    if (!c->target->is_unix)
        return connect_tcp(c->target, deadline, &c->fd, err, errlen);
    int rc = connect_unix(c->target, deadline, &c->fd);
    return rc < 0 ? fail(err, errlen, rc, "cannot connect to %s: %s", c->target->text, strerror(-rc)) : 0;
}

int httpc_connect(httpc_conn *c, char *err, size_t errlen)
{
    return connect_by(c, deadline_of(c), err, errlen);
}

static void drop_conn(httpc_conn *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
}

void httpc_close(httpc_conn *c)
{
    drop_conn(c);
    free(c->buf);
    c->buf = NULL;
    c->cap = c->len = 0;
}

/* ---- sending -------------------------------------------------------------------------------------------- */

static int send_all(int fd, struct iovec *iov, int n, int64_t deadline)
{
    while (n > 0) {
        struct msghdr m = {.msg_iov = iov, .msg_iovlen = (size_t)n};
        ssize_t w = sendmsg(fd, &m, MSG_NOSIGNAL);
        if (w < 0) {
            int rc = errno == EINTR ? 0 : errno == EAGAIN ? wait_fd(fd, POLLOUT, deadline) : -errno;
            if (rc < 0)
                return rc;
            continue;
        }
        while (n > 0 && (size_t)w >= iov->iov_len) {
            w -= (ssize_t)iov->iov_len;
            iov++;
            n--;
        }
        if (n > 0) {
            iov->iov_base = (char *)iov->iov_base + w;
            iov->iov_len -= (size_t)w;
        }
    }
    return 0;
}

static int send_request(httpc_conn *c, const char *method, const char *path, const char *content_type,
                        const char *body, size_t len, int64_t deadline)
{
    char hdr[2048], clen[48] = "";
    if (body)
        snprintf(clen, sizeof clen, "Content-Length: %zu\r\n", len);
    int n = snprintf(hdr, sizeof hdr, "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: %s\r\n%s%s%s%s%s\r\n", method, path,
                     c->target->host_header, c->user_agent, content_type ? "Content-Type: " : "",
                     content_type ? content_type : "", content_type ? "\r\n" : "",
                     c->close_after ? "Connection: close\r\n" : "", clen);
    if (n < 0 || (size_t)n >= sizeof hdr)
        return -ENAMETOOLONG;
    struct iovec iov[2] = {{hdr, (size_t)n}, {(void *)body, len}};
    return send_all(c->fd, iov, body && len ? 2 : 1, deadline);
}

/* ---- reading -------------------------------------------------------------------------------------------- */

/* Reads what is there into the buffer (growing it, always keeping one spare byte for a NUL, and NUL-terminating
 * what it holds). Returns 1 when bytes came, 0 at EOF, or -errno (-ETIMEDOUT past the deadline, -EMSGSIZE past
 * HTTPC_MAX_BYTES). */
static int read_more(httpc_conn *c, int64_t deadline)
{
    if (c->len + 1 >= c->cap) {
        if (c->cap >= HTTPC_MAX_BYTES + 1)
            return -EMSGSIZE;
        size_t ncap = c->cap ? c->cap * 2 : 16384;
        ncap = ncap > HTTPC_MAX_BYTES + 1 ? HTTPC_MAX_BYTES + 1 : ncap;
        char *nb = realloc(c->buf, ncap);
        if (!nb)
            return -ENOMEM;
        c->buf = nb;
        c->cap = ncap;
    }
    for (;;) {
        ssize_t n = recv(c->fd, c->buf + c->len, c->cap - c->len - 1, 0);
        if (n >= 0) {
            c->len += (size_t)n;
            c->buf[c->len] = '\0';
            return n > 0;
        }
        int rc = errno == EINTR ? 0 : errno == EAGAIN ? wait_fd(c->fd, POLLIN, deadline) : -errno;
        if (rc < 0)
            return rc;
    }
}

/* Reads until at least `want` bytes are buffered. Returns 0, -EPIPE at an early EOF, or read_more's error. */
static int need(httpc_conn *c, size_t want, int64_t deadline)
{
    while (c->len < want) {
        int rc = read_more(c, deadline);
        if (rc <= 0)
            return rc == 0 ? -EPIPE : rc;
    }
    return 0;
}

/* Offset of the first "\r\n" at or after `from`, reading more as needed; -EPROTO when none comes within limit
 * bytes, -EPIPE at EOF, or read_more's error. */
static long find_crlf(httpc_conn *c, size_t from, size_t limit, int64_t deadline)
{
    for (;;) {
        if (c->len > from) {
            const char *p = memmem(c->buf + from, c->len - from, "\r\n", 2);
            if (p)
                return p - c->buf;
        }
        if (c->len - from > limit)
            return -EPROTO;
        int rc = read_more(c, deadline);
        if (rc <= 0)
            return rc == 0 ? -EPIPE : rc;
    }
}

typedef struct head {
    size_t len; /* bytes of status line + headers + blank line */
    int status;
    char reason[64];
    long long content_length; /* -1: none */
    int chunked, close;
} head;

/* Is the header line [p, p+n) "name: ..."? Then *value points after the colon and spaces. */
static int header_is(const char *p, size_t n, const char *name, const char **value, size_t *vlen)
{
    size_t k = strlen(name);
    if (n <= k || p[k] != ':' || strncasecmp(p, name, k) != 0)
        return 0;
    size_t i = k + 1;
    while (i < n && (p[i] == ' ' || p[i] == '\t'))
        i++;
    *value = p + i;
    *vlen = n - i;
    return 1;
}

static int has_token(const char *v, size_t n, const char *tok)
{
    size_t k = strlen(tok);
    for (size_t i = 0; i + k <= n; i++)
        if (strncasecmp(v + i, tok, k) == 0)
            return 1;
    return 0;
}

/* "HTTP/1.x NNN reason" ([p, p+n), without its CRLF) into h. Returns 0 or -1. */
static int status_line(const char *p, size_t n, head *h)
{
    if (n < 12 || memcmp(p, "HTTP/1.", 7) != 0 || (p[7] != '0' && p[7] != '1') || p[8] != ' ' ||
        strspn(p + 9, "0123456789") < 3 || (n > 12 && p[12] != ' '))
        return -1;
    h->status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
    h->close = p[7] == '0'; /* HTTP/1.0: closes unless it says keep-alive */
    snprintf(h->reason, sizeof h->reason, "%.*s", n > 13 ? (int)(n - 13) : 0, p + 13);
    return h->status >= 100 && h->status <= 599 ? 0 : -1;
}

/* One header line into h. Returns 0, or -EPROTO with why set (a bad Content-Length). */
static int header_line(const char *line, size_t n, head *h, char *why, size_t wlen)
{
    const char *v;
    size_t vlen;
    if (header_is(line, n, "content-length", &v, &vlen)) {
        char *end;
        errno = 0;
        unsigned long long cl = strtoull(v, &end, 10);
        if (vlen == 0 || v[0] < '0' || v[0] > '9' || end != v + vlen)
            return fail(why, wlen, -EPROTO, "bad Content-Length '%.*s'", (int)(vlen > 60 ? 60 : vlen), v);
        h->content_length = errno || cl > HTTPC_MAX_BYTES ? (long long)HTTPC_MAX_BYTES + 1 : (long long)cl;
    } else if (header_is(line, n, "transfer-encoding", &v, &vlen)) {
        h->chunked = has_token(v, vlen, "chunked");
    } else if (header_is(line, n, "connection", &v, &vlen)) {
        h->close = has_token(v, vlen, "close") ? 1 : has_token(v, vlen, "keep-alive") ? 0 : h->close;
    }
    return 0;
}

/* Reads the status line and the headers into h. Returns 0, or -errno with why set for a reply that is not HTTP. */
static int read_head(httpc_conn *c, head *h, int64_t deadline, char *why, size_t wlen)
{
    memset(h, 0, sizeof *h);
    h->content_length = -1;
    long eol = find_crlf(c, 0, MAX_HEAD, deadline); /* the status line, judged before the rest comes */
    int rc = eol < 0 ? (int)eol : status_line(c->buf, (size_t)eol, h) < 0 ? -EPROTO : 0;
    const char *end = NULL;
    while (rc == 0 && !(end = memmem(c->buf, c->len, "\r\n\r\n", 4))) {
        int got = c->len > MAX_HEAD ? -EPROTO : read_more(c, deadline);
        rc = got < 0 ? got : got == 0 ? -EPIPE : 0;
    }
    if (rc == -EPROTO || rc == -EPIPE)
        return fail(why, wlen, -EPROTO, "the answer is not HTTP (%zu bytes%s)", c->len,
                    c->len ? "" : ": the server closed at once");
    if (rc < 0)
        return rc;
    h->len = (size_t)(end - c->buf) + 4;
    for (const char *line = c->buf + eol + 2; line < end + 2;) {
        const char *next = memmem(line, (size_t)(end + 2 - line), "\r\n", 2);
        if ((rc = header_line(line, (size_t)(next - line), h, why, wlen)) < 0)
            return rc;
        line = next + 2;
    }
    return 0;
}

/* Decodes a chunked body in place, from h->len. Returns its length, or -errno (with why set for -EPROTO). */
static long read_chunked(httpc_conn *c, const head *h, int64_t deadline, char *why, size_t wlen)
{
    size_t p = h->len, w = h->len; /* p: the next raw byte; w: the end of the decoded body */
    for (;;) {
        long eol = find_crlf(c, p, 1024, deadline);
        size_t digits = eol < 0 ? 0 : strspn(c->buf + p, "0123456789abcdefABCDEF");
        if (eol == -EPIPE)
            return fail(why, wlen, -EPROTO, "body cut short: the chunked body ends before its last chunk");
        if (eol < 0 && eol != -EPROTO)
            return eol;
        if (eol < 0 || digits == 0 || digits > 8)
            return fail(why, wlen, -EPROTO, "malformed chunked body");
        size_t size = strtoul(c->buf + p, NULL, 16);
        p = (size_t)eol + 2;
        if (size == 0)
            break;
        int rc = size > HTTPC_MAX_BYTES ? -EMSGSIZE : need(c, p + size + 2, deadline);
        if (rc == -EPIPE)
            return fail(why, wlen, -EPROTO, "body cut short: the chunked body ends before its last chunk");
        if (rc < 0)
            return rc;
        if (memcmp(c->buf + p + size, "\r\n", 2) != 0)
            return fail(why, wlen, -EPROTO, "malformed chunked body");
        memmove(c->buf + w, c->buf + p, size);
        w += size;
        p += size + 2;
    }
    for (;;) { /* trailers, up to the blank line; a server that closes instead has still sent the whole body */
        long eol = find_crlf(c, p, MAX_HEAD, deadline);
        if (eol == -EPIPE)
            break;
        if (eol == -EPROTO)
            return fail(why, wlen, -EPROTO, "malformed chunked body");
        if (eol < 0)
            return eol;
        int blank = (size_t)eol == p;
        p = (size_t)eol + 2;
        if (blank)
            break;
    }
    return (long)(w - h->len);
}

/* Reads the body after h. Returns its length (it starts at h->len), or -errno (with why set for -EPROTO). */
static long read_body(httpc_conn *c, const head *h, int64_t deadline, char *why, size_t wlen)
{
    if ((h->status >= 100 && h->status < 200) || h->status == 204 || h->status == 304)
        return 0;
    if (h->chunked)
        return read_chunked(c, h, deadline, why, wlen);
    if (h->content_length >= 0) {
        if ((unsigned long long)h->content_length > HTTPC_MAX_BYTES - h->len)
            return -EMSGSIZE;
        int rc = need(c, h->len + (size_t)h->content_length, deadline);
        if (rc == -EPIPE)
            return fail(why, wlen, -EPROTO, "body cut short: Content-Length %lld, %zu bytes received",
                        h->content_length, c->len - h->len);
        return rc < 0 ? rc : (long)h->content_length;
    }
    for (;;) { /* no length: the body ends with the connection */
        int rc = read_more(c, deadline);
        if (rc == 0)
            return (long)(c->len - h->len);
        if (rc < 0)
            return rc;
    }
}

/* ---- one request ---------------------------------------------------------------------------------------- */

/* Closes the connection and says what went wrong with METHOD PATH (why, when the answer was judged; else the
 * error's words). Returns rc. */
static int exchange_failed(httpc_conn *c, const char *method, const char *path, int rc, const char *why, char *err,
                           size_t errlen)
{
    char words[160];
    if (!why[0]) {
        if (rc == -ETIMEDOUT)
            snprintf(words, sizeof words, "no complete answer within %gs", c->timeout_ms / 1000.0);
        else if (rc == -EMSGSIZE)
            snprintf(words, sizeof words, "answer larger than %zu MiB", HTTPC_MAX_BYTES >> 20);
        else if (rc == -EPIPE)
            snprintf(words, sizeof words, "the server closed the connection before a whole answer");
        else
            snprintf(words, sizeof words, "%s", strerror(-rc));
        why = words;
    }
    drop_conn(c);
    return fail(err, errlen, rc, "%s %s on %s: %s", method, path, c->target->text, why);
}

int httpc_request(httpc_conn *c, const char *method, const char *path, const char *content_type, const char *body,
                  size_t len, httpc_response *r, char *err, size_t errlen)
{
    memset(r, 0, sizeof *r);
    int64_t deadline = deadline_of(c);
    int rc = connect_by(c, deadline, err, errlen);
    if (rc < 0)
        return rc;
    c->len = 0;
    char why[200] = "";
    rc = send_request(c, method, path, content_type, body, len, deadline);
    if (rc < 0 && rc != -ETIMEDOUT)
        snprintf(why, sizeof why, "cannot send the request: %s", strerror(-rc));
    head h;
    long blen = rc;
    if (rc == 0 && (blen = read_head(c, &h, deadline, why, sizeof why)) == 0)
        blen = read_body(c, &h, deadline, why, sizeof why);
    if (blen < 0)
        return exchange_failed(c, method, path, (int)blen, why, err, errlen);
    c->buf[h.len + (size_t)blen] = '\0';
    r->status = h.status;
    memcpy(r->reason, h.reason, sizeof r->reason);
    r->body = c->buf + h.len;
    r->body_len = (size_t)blen;
    if (h.close || c->close_after)
        drop_conn(c);
    return 0;
}

char *httpc_take_body(httpc_conn *c, httpc_response *r)
{
    char *buf = c->buf;
    memmove(buf, r->body, r->body_len + 1);
    c->buf = NULL;
    c->cap = c->len = 0;
    r->body = buf;
    return buf;
}
