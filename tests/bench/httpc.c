/* httpc.c — a blocking HTTP/1.1 client for logagent-bench: keep-alive connection, one request at a time.
 *
 * A response is read whole into the connection's buffer: headers, then the body made contiguous
 * (Content-Length; chunked, decoded in place; or, without either, up to EOF). Offsets, never pointers, are
 * kept across reads because the buffer may move when it grows. The request goes out in one sendmsg() (headers
 * and body as two iovecs) with TCP_NODELAY, so Nagle never holds a small body back. */
#include "httpc.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#define MAX_HEADER 65536u

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

int httpc_parse_target(const char *url, httpc_target *t, char *err, size_t errlen)
{
    memset(t, 0, sizeof *t);
    if (strncmp(url, "unix:", 5) == 0) {
        const char *p = url + 5;
        if (!*p || strlen(p) >= sizeof t->path)
            return fail(err, errlen, -EINVAL, "unix:PATH needs a socket path of at most 107 bytes, got '%s'", url);
        t->is_unix = 1;
        strcpy(t->path, p);
        strcpy(t->host_header, "localhost");
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
    const char *port = colon + 1;
    size_t plen = strspn(port, "0123456789");
    if (plen == 0 || plen >= sizeof t->port || (port[plen] && strcmp(port + plen, "/") != 0) || atoi(port) < 1 ||
        atoi(port) > 65535)
        return fail(err, errlen, -EINVAL, "URL needs a port from 1 to 65535 and no path, got '%s'", url);
    memcpy(t->host, h, (size_t)(hend - h));
    memcpy(t->port, port, plen);
    snprintf(t->host_header, sizeof t->host_header, url[7] == '[' ? "[%s]:%s" : "%s:%s", t->host, t->port);
    return 0;
}

void httpc_init(httpc_conn *c, const httpc_target *t, int io_timeout_ms)
{
    memset(c, 0, sizeof *c);
    c->target = t;
    c->fd = -1;
    c->io_timeout_ms = io_timeout_ms;
}

static void set_timeouts(int fd, int ms)
{
    if (ms <= 0)
        return;
    struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };
    /* best effort: without them a hung server hangs this worker, which the caller's own timeout notices */
    (void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    (void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

static int connect_unix(httpc_conn *c)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    memcpy(sa.sun_path, c->target->path, strlen(c->target->path));
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    set_timeouts(fd, c->io_timeout_ms);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    c->fd = fd;
    return 0;
}

static int connect_tcp(httpc_conn *c, char *err, size_t errlen)
{
    struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res, *ai;
    int g = getaddrinfo(c->target->host, c->target->port, &hints, &res);
    if (g != 0)
        return fail(err, errlen, -EHOSTUNREACH, "cannot resolve: %s", gai_strerror(g));
    int rc = -ECONNREFUSED;
    for (ai = res; ai; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            rc = -errno;
            continue;
        }
        set_timeouts(fd, c->io_timeout_ms);
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
            int one = 1;
            (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one); /* only a latency hint */
            c->fd = fd;
            rc = 0;
            break;
        }
        rc = -errno;
        close(fd);
    }
    freeaddrinfo(res);
    return rc;
}

int httpc_connect(httpc_conn *c, char *err, size_t errlen)
{
    if (c->fd >= 0)
        return 0;
    int rc = c->target->is_unix ? connect_unix(c) : connect_tcp(c, err, errlen);
    if (rc < 0 && rc != -EHOSTUNREACH)
        snprintf(err, errlen, "cannot connect: %s", strerror(-rc));
    return rc;
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

static int send_all(int fd, struct iovec *iov, int n)
{
    while (n > 0) {
        struct msghdr m = { .msg_iov = iov, .msg_iovlen = (size_t)n };
        ssize_t w = sendmsg(fd, &m, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return errno == EAGAIN ? -ETIMEDOUT : -errno;
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

/* Reads what is there into the buffer (growing it, always keeping one spare byte for a NUL). Returns 1 when
 * bytes came, 0 at EOF, or -errno (-ETIMEDOUT on the receive timeout, -EMSGSIZE when too long). */
static int read_more(httpc_conn *c)
{
    if (c->len + 1 >= c->cap) {
        size_t ncap = c->cap ? c->cap * 2 : 16384;
        if (ncap > HTTPC_MAX_BODY + MAX_HEADER)
            return -EMSGSIZE;
        char *nb = realloc(c->buf, ncap);
        if (!nb)
            return -ENOMEM;
        c->buf = nb;
        c->cap = ncap;
    }
    ssize_t n;
    do
        n = recv(c->fd, c->buf + c->len, c->cap - c->len - 1, 0);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return errno == EAGAIN ? -ETIMEDOUT : -errno;
    c->len += (size_t)n;
    return (int)(n > 0);
}

/* Reads until at least `want` bytes are buffered. Returns 0, or -EPIPE at an early EOF, or read_more's error. */
static int need(httpc_conn *c, size_t want)
{
    while (c->len < want) {
        int rc = read_more(c);
        if (rc == 0)
            return -EPIPE;
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* Offset of the first "\r\n" at or after `from`, reading more as needed; or a negative errno. */
static long find_crlf(httpc_conn *c, size_t from, size_t limit)
{
    for (;;) {
        if (c->len > from) {
            const char *p = memmem(c->buf + from, c->len - from, "\r\n", 2);
            if (p)
                return p - c->buf;
        }
        if (c->len - from > limit)
            return -EPROTO;
        int rc = read_more(c);
        if (rc <= 0)
            return rc == 0 ? -EPIPE : rc;
    }
}

typedef struct head {
    size_t len;          /* bytes of status line + headers + blank line */
    int status;
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

static int parse_head(httpc_conn *c, head *h)
{
    const char *end;
    for (;;) {
        end = c->len ? memmem(c->buf, c->len, "\r\n\r\n", 4) : NULL;
        if (end)
            break;
        if (c->len > MAX_HEADER)
            return -EPROTO;
        int rc = read_more(c);
        if (rc <= 0)
            return rc == 0 ? -EPIPE : rc;
    }
    memset(h, 0, sizeof *h);
    h->len = (size_t)(end - c->buf) + 4;
    h->content_length = -1;
    const char *p = c->buf;
    if (h->len < 16 || strncmp(p, "HTTP/1.", 7) != 0 || p[8] != ' ' || p[9] < '1' || p[9] > '5')
        return -EPROTO;
    h->status = atoi(p + 9);
    h->close = p[7] == '0';
    const char *line = memchr(p, '\n', h->len) + 1;
    while (line < end) {
        const char *eol = memchr(line, '\r', (size_t)(end + 2 - line));
        size_t n = (size_t)(eol - line), vlen;
        const char *v;
        if (header_is(line, n, "content-length", &v, &vlen))
            h->content_length = strtoll(v, NULL, 10);
        else if (header_is(line, n, "transfer-encoding", &v, &vlen))
            h->chunked = has_token(v, vlen, "chunked");
        else if (header_is(line, n, "connection", &v, &vlen))
            h->close = has_token(v, vlen, "close") ? 1 : has_token(v, vlen, "keep-alive") ? 0 : h->close;
        line = eol + 2;
    }
    return 0;
}

/* Decodes a chunked body in place, starting at h->len. Returns the body length or a negative errno. */
static long read_chunked(httpc_conn *c, const head *h)
{
    size_t p = h->len, w = h->len;
    for (;;) {
        long eol = find_crlf(c, p, 64);
        if (eol < 0)
            return eol;
        char *endp;
        unsigned long size = strtoul(c->buf + p, &endp, 16);
        if (endp == c->buf + p)
            return -EPROTO;
        p = (size_t)eol + 2;
        if (size == 0)
            break;
        if (size > HTTPC_MAX_BODY - (w - h->len))
            return -EMSGSIZE;
        int rc = need(c, p + size + 2);
        if (rc < 0)
            return rc;
        memmove(c->buf + w, c->buf + p, size);
        w += size;
        p += size + 2;
    }
    for (;;) { /* trailers, up to the blank line */
        long eol = find_crlf(c, p, MAX_HEADER);
        if (eol < 0)
            return eol;
        int blank = (size_t)eol == p;
        p = (size_t)eol + 2;
        if (blank)
            break;
    }
    return (long)(w - h->len);
}

static long read_body(httpc_conn *c, const head *h)
{
    if ((h->status >= 100 && h->status < 200) || h->status == 204 || h->status == 304)
        return 0;
    if (h->chunked)
        return read_chunked(c, h);
    if (h->content_length >= 0) {
        if (h->content_length > (long long)HTTPC_MAX_BODY)
            return -EMSGSIZE;
        int rc = need(c, h->len + (size_t)h->content_length);
        return rc < 0 ? rc : (long)h->content_length;
    }
    for (;;) { /* no length: the body ends with the connection */
        int rc = read_more(c);
        if (rc == 0)
            return (long)(c->len - h->len);
        if (rc < 0)
            return rc;
    }
}

static int send_request(httpc_conn *c, const char *method, const char *path, const char *content_type,
                        const char *body, size_t len)
{
    char hdr[1024];
    int n = snprintf(hdr, sizeof hdr,
                     "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: logagent-bench\r\n%s%s%sContent-Length: %zu\r\n\r\n",
                     method, path, c->target->host_header, content_type ? "Content-Type: " : "",
                     content_type ? content_type : "", content_type ? "\r\n" : "", len);
    if (n < 0 || (size_t)n >= sizeof hdr)
        return -ENAMETOOLONG;
    struct iovec iov[2] = { { hdr, (size_t)n }, { (void *)body, len } };
    return send_all(c->fd, iov, len ? 2 : 1);
}

int httpc_request(httpc_conn *c, const char *method, const char *path, const char *content_type,
                  const char *body, size_t len, httpc_response *r, char *err, size_t errlen)
{
    int rc = httpc_connect(c, err, errlen);
    if (rc < 0)
        return rc;
    c->len = 0;
    rc = send_request(c, method, path, content_type, body, len);
    if (rc < 0) {
        drop_conn(c);
        return fail(err, errlen, rc, "cannot send the request: %s", strerror(-rc));
    }
    head h;
    rc = parse_head(c, &h);
    long blen = rc < 0 ? rc : read_body(c, &h);
    if (blen < 0) {
        drop_conn(c);
        if (blen == -EPIPE)
            return fail(err, errlen, -EPIPE, "%s", "the server closed the connection before a whole response");
        if (blen == -EPROTO)
            return fail(err, errlen, -EPROTO, "%s", "the answer is not an HTTP/1.x response");
        if (blen == -EMSGSIZE)
            return fail(err, errlen, -EMSGSIZE, "the response is longer than %u bytes", HTTPC_MAX_BODY);
        return fail(err, errlen, (int)blen, "cannot read the response: %s", strerror((int)-blen));
    }
    c->buf[h.len + (size_t)blen] = '\0';
    r->status = h.status;
    r->body = c->buf + h.len;
    r->body_len = (size_t)blen;
    if (h.close)
        drop_conn(c);
    return 0;
}
