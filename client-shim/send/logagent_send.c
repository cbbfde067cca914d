/* logagent_send.c — logagent-send: hand log records to logagentd from a shell, like logger(1).
 *
 * MESSAGE words joined by spaces make one record; with no MESSAGE, every non-empty stdin line is one
 * record. Exit status: 0 every record confirmed by the agent, 2 bad usage, 1 anything else (agent not
 * reachable, not an ingest socket, a record refused, no confirmation in time).
 *
 * DESIGN
 * One connection, opened once (no probe). Records are encoded with liblogagent's encoder (la_pack_record,
 * so they are the library's records byte for byte) and written as they come. The ingest protocol is
 * one-way, so to know that the agent — and not some other socket — took them, the program ends (and, on a
 * stdin stream, every SYNC_BYTES and after a quiet second) with a sync: an empty Fluent
 * Forward message with a `chunk` option, `["logagent-send", [], {"chunk": ID}]`, which logagentd answers
 * with `{"ack": ID}` once it has read and queued everything before it (docs/protocol.md, "Confirming what
 * the agent took"). The final sync half-closes the connection first, so a peer that waits for more bytes
 * (an HTTP server waiting for a line end: the stats socket) closes instead of hanging. Anything else coming
 * back — bytes that are not the ack (an HTTP answer), or a close before the ack — is reported and exits 1.
 * Records since the last ack are kept: when the peer drops the connection without a word (an agent
 * restarting), the program reconnects and re-sends them (at least once: the service can drop duplicates by
 * log_id), at most MAX_RESENDS times in a row without an ack in between, and only once for a peer that has
 * never answered a sync (it may not be an agent at all). */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "common/cli.h"
#include "logagent.h"
#include "pack.h"

#define PROG "logagent-send"
#define DEFAULT_FLUSH_TIMEOUT_MS 30000
#define MAX_REPORTED_ERRORS 5 /* records refused here (too large): the first ones are named, then a count */
#define MAX_RECORD_BYTES ((size_t)1 << 20) /* the agent's default --max-record-bytes, as the library */
#define SYNC_BYTES ((size_t)1 << 20)       /* confirm at least every MiB of records, */
#define SYNC_IDLE_NS 1000000000LL          /* and after a quiet second on stdin */
#define MAX_RESENDS 3
#define ANSWER_MAX 256
#define SYNC_TAG "logagent-send"

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: " PROG " [OPTION]... [MESSAGE...]\n"
            "Send log records to logagentd, like logger(1). MESSAGE words joined by spaces make one record;\n"
            "with no MESSAGE, each non-empty line of standard input is one record.\n"
            "\n"
            "  --socket PATH          ingest socket (default: $LOGAGENT_SOCKET, else " LOGAGENT_DEFAULT_SOCKET ")\n"
            "  --level L              TRACE, DEBUG, INFO, WARN, ERROR or FATAL, any case (WARNING and\n"
            "                         CRITICAL mean WARN and FATAL; default INFO)\n"
            "  --service S            service_name of the records\n"
            "  --meta KEY=VALUE       metadata field, repeatable; VALUE is sent as an integer, a float,\n"
            "                         true/false as a bool, or else as a string\n"
            "  --trace-id X           trace_id of the records\n"
            "  --span-id Y            span_id of the records\n"
            "  --flush-timeout-ms N   give up when the agent has taken nothing, or not confirmed the\n"
            "                         records, for N ms (default %d; -1 forever)\n"
            "  --help                 show this help and exit\n"
            "  --version              show the version and exit\n"
            "\n"
            "Exit status: 0 the agent confirmed every record, 1 the agent could not be reached, the socket\n"
            "is not an ingest socket, or a record was not confirmed, 2 bad usage.\n",
            DEFAULT_FLUSH_TIMEOUT_MS);
}

/* An integer whose text round-trips: optional '-', no leading zeros, fits int64. */
static int parse_int(const char *v, int64_t *out)
{
    const char *d = v[0] == '-' ? v + 1 : v;
    if (d[0] < '0' || d[0] > '9' || (d[0] == '0' && d[1] != '\0'))
        return 0;
    for (const char *q = d; *q; q++)
        if (*q < '0' || *q > '9')
            return 0;
    errno = 0;
    long long x = strtoll(v, NULL, 10);
    if (errno == ERANGE)
        return 0;
    *out = (int64_t)x;
    return 1;
}

/* A finite decimal float with a '.' or an exponent: digits, sign, '.', exponent only (no hex, inf, nan,
 * blanks), and no leading zero before another digit (so "007.5" stays a string, like "007"). An integer
 * too big for int64 stays a string too, rather than losing digits as a float. */
static int parse_double(const char *v, double *out)
{
    int digits = 0, point_or_exp = 0;
    for (const char *q = v; *q; q++) {
        if (*q >= '0' && *q <= '9')
            digits = 1;
        else if (*q == '.' || *q == 'e' || *q == 'E')
            point_or_exp = 1;
        else if (*q != '+' && *q != '-')
            return 0;
    }
    const char *ip = (v[0] == '-' || v[0] == '+') ? v + 1 : v;
    if (!digits || !point_or_exp || (ip[0] == '0' && ip[1] >= '0' && ip[1] <= '9'))
        return 0;
    char *end;
    errno = 0;
    double d = strtod(v, &end);
    if (*end != '\0' || errno == ERANGE || !isfinite(d))
        return 0;
    *out = d;
    return 1;
}

/* KEY=VALUE into f (pointing into arg, which the caller keeps alive). Returns 0, or -1 if malformed. */
static int parse_meta(char *arg, logagent_field *f)
{
    char *eq = strchr(arg, '=');
    if (!eq || eq == arg)
        return -1;
    *eq = '\0';
    const char *v = eq + 1;
    f->key = arg;
    if (strcmp(v, "true") == 0 || strcmp(v, "false") == 0) {
        f->type = LOGAGENT_BOOL;
        f->v.b = v[0] == 't';
    } else if (parse_int(v, &f->v.i)) {
        f->type = LOGAGENT_INT;
    } else if (parse_double(v, &f->v.d)) {
        f->type = LOGAGENT_DOUBLE;
    } else {
        f->type = LOGAGENT_STR;
        f->v.s = v;
    }
    return 0;
}

/* Levels the agent knows (docs/protocol.md); anything else is a usage error here, not a surprise there. */
static int level_known(const char *l)
{
    static const char *const LEVELS[] = {"TRACE", "DEBUG", "INFO", "WARN", "WARNING", "ERROR", "FATAL", "CRITICAL"};
    for (size_t i = 0; i < sizeof LEVELS / sizeof LEVELS[0]; i++)
        if (strcasecmp(l, LEVELS[i]) == 0)
            return 1;
    return 0;
}

typedef struct sender {
    const char *path;
    int fd;                 /* -1 when not connected */
    int timeout_ms;         /* --flush-timeout-ms: longest wait for progress or a confirmation (-1: none) */
    int acked_once;         /* this peer has answered a sync: it is an agent */
    unsigned resends;       /* reconnects since the last ack */
    unsigned long sync_seq;
    unsigned char *pending; /* records written since the last ack, kept to re-send after a reconnect */
    size_t len, cap;
    char answer[ANSWER_MAX]; /* what a peer said that was not an ack */
    size_t answer_len;
    unsigned long too_large; /* records not sent: over MAX_RECORD_BYTES */
} sender;

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int64_t now_unix_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Connects s->fd to s->path. A full listen backlog (the agent pausing its accepts: --max-connections, the
 * open-file limit) answers EAGAIN to a non-blocking connect: that waits, as a blocking connect would, up to the
 * timeout. Returns 0 or -errno. */
static int snd_connect(sender *s)
{
    struct sockaddr_un a;
    memset(&a, 0, sizeof a);
    a.sun_family = AF_UNIX;
    memcpy(a.sun_path, s->path, strlen(s->path) + 1); /* length checked by the caller */
    int64_t give_up = s->timeout_ms < 0 ? INT64_MAX : mono_ns() + (int64_t)s->timeout_ms * 1000000;
    for (;;) {
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
            return -errno;
        if (connect(fd, (struct sockaddr *)&a, sizeof a) == 0 || errno == EINPROGRESS) {
            s->fd = fd;
            return 0;
        }
        int e = errno;
        close(fd);
        if (e != EAGAIN || mono_ns() >= give_up)
            return -e;
        struct timespec pause = {0, 20 * 1000000L};
        nanosleep(&pause, NULL);
    }
}

static void snd_close(sender *s)
{
    if (s->fd >= 0)
        close(s->fd);
    s->fd = -1;
}

/* Reads what the peer sent into s->answer. Returns -EPROTO when it sent bytes, -ECONNRESET when it closed. */
static int peer_spoke(sender *s)
{
    ssize_t n = recv(s->fd, s->answer + s->answer_len, sizeof s->answer - 1 - s->answer_len, 0);
    if (n > 0) {
        s->answer_len += (size_t)n;
        return -EPROTO;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return 0;
    return -ECONNRESET;
}

/* Waits for events on s->fd up to the timeout. Returns the revents, 0 on timeout, or -errno. */
static int wait_fd(const sender *s, short events)
{
    struct pollfd p = {.fd = s->fd, .events = events};
    for (;;) {
        int rc = poll(&p, 1, s->timeout_ms);
        if (rc > 0)
            return p.revents;
        if (rc == 0)
            return 0;
        if (errno != EINTR)
            return -errno;
    }
}

/* Writes buf whole. The ingest socket never answers a native record, so bytes or a close from the peer while
 * writing end it. Returns 0, -ETIMEDOUT (no progress for the timeout), -EPROTO, -ECONNRESET or -errno. */
static int write_all(sender *s, const unsigned char *buf, size_t n)
{
    while (n) {
        int ev = wait_fd(s, POLLOUT | POLLIN);
        if (ev <= 0)
            return ev == 0 ? -ETIMEDOUT : ev;
        if (ev & (POLLIN | POLLHUP | POLLERR)) {
            int rc = peer_spoke(s);
            if (rc < 0)
                return rc;
        }
        if (!(ev & POLLOUT))
            continue;
        ssize_t w = send(s->fd, buf, n, MSG_NOSIGNAL);
        if (w < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        if (w < 0)
            return errno == EPIPE ? -ECONNRESET : -errno;
        buf += w;
        n -= (size_t)w;
    }
    return 0;
}

/* The sync message ["logagent-send", [], {"chunk": ID}] and the answer the agent gives, {"ack": ID}. */
static size_t sync_message(unsigned char *out, const char *id, size_t id_len)
{
    size_t n = 0;
    out[n++] = 0x93;
    out[n++] = (unsigned char)(0xa0 | (sizeof SYNC_TAG - 1));
    memcpy(out + n, SYNC_TAG, sizeof SYNC_TAG - 1);
    n += sizeof SYNC_TAG - 1;
    out[n++] = 0x90;
    out[n++] = 0x81;
    out[n++] = 0xa5;
    memcpy(out + n, "chunk", 5);
    n += 5;
    out[n++] = (unsigned char)(0xa0 | id_len);
    memcpy(out + n, id, id_len);
    return n + id_len;
}

static size_t ack_message(unsigned char *out, const char *id, size_t id_len)
{
    memcpy(out, "\x81\xa3" "ack", 5);
    out[5] = (unsigned char)(0xa0 | id_len);
    memcpy(out + 6, id, id_len);
    return 6 + id_len;
}

/* Reads the peer's answer until it equals want (0), differs from it (-EPROTO), the peer closes (-ECONNRESET) or
 * the timeout passes (-ETIMEDOUT). */
static int read_ack(sender *s, const unsigned char *want, size_t want_len)
{
    s->answer_len = 0;
    while (s->answer_len < want_len) {
        int ev = wait_fd(s, POLLIN);
        if (ev <= 0)
            return ev == 0 ? -ETIMEDOUT : ev;
        int rc = peer_spoke(s);
        if (rc == -ECONNRESET)
            return s->answer_len ? -EPROTO : rc;
        if (memcmp(s->answer, want, s->answer_len < want_len ? s->answer_len : want_len) != 0)
            return -EPROTO;
    }
    return s->answer_len == want_len ? 0 : -EPROTO;
}

/* Asks the agent to confirm everything written so far; final half-closes first. Returns 0 or -errno. */
static int sync_now(sender *s, int final)
{
    char id[32];
    int id_len = snprintf(id, sizeof id, "%ld-%lu", (long)getpid(), ++s->sync_seq);
    unsigned char msg[64], want[48];
    size_t n = sync_message(msg, id, (size_t)id_len);
    size_t want_len = ack_message(want, id, (size_t)id_len);
    int rc = write_all(s, msg, n);
    if (rc == 0 && final && shutdown(s->fd, SHUT_WR) < 0)
        rc = -errno;
    if (rc == 0)
        rc = read_ack(s, want, want_len);
    if (rc == 0) {
        s->acked_once = 1;
        s->resends = 0;
        s->len = 0;
    }
    return rc;
}

/* May the records since the last ack be sent again on a new connection? */
static int may_resend(const sender *s) { return s->resends < (s->acked_once ? MAX_RESENDS : 1); }

/* After a lost connection (rc == -ECONNRESET): reconnects and re-sends what the agent has not confirmed, while
 * may_resend, each reconnect within the timeout. Returns 0 when the records are written again, else the error
 * that ended it. */
static int recover(sender *s, int rc)
{
    while (rc == -ECONNRESET && may_resend(s)) {
        int64_t give_up = s->timeout_ms < 0 ? INT64_MAX : mono_ns() + (int64_t)s->timeout_ms * 1000000;
        snd_close(s);
        s->resends++;
        while ((rc = snd_connect(s)) < 0 && mono_ns() < give_up) {
            struct timespec pause = {0, 100 * 1000000L}; /* the agent is restarting: its socket comes back */
            nanosleep(&pause, NULL);
        }
        if (rc == 0)
            rc = write_all(s, s->pending, s->len);
    }
    return rc;
}

/* Says why the records were not confirmed. */
static void report(const sender *s, int rc)
{
    if (rc == -EPROTO) {
        size_t n = 0;
        while (n < s->answer_len && s->answer[n] != '\r' && s->answer[n] != '\n')
            n++;
        char said[96];
        size_t k = 0;
        for (size_t i = 0; i < n && k + 1 < sizeof said; i++)
            said[k++] = s->answer[i] >= 0x20 && s->answer[i] < 0x7f ? s->answer[i] : '?';
        said[k] = '\0';
        fprintf(stderr, PROG ": %s is not logagentd's ingest socket: it answered \"%s\"%s\n", s->path, said,
                s->answer_len >= 5 && memcmp(s->answer, "HTTP/", 5) == 0 ? " (an HTTP server: the stats socket?)" : "");
    } else if (rc == -ECONNRESET) {
        fprintf(stderr, PROG ": %s closed the connection before confirming the records (%s)\n", s->path,
                s->acked_once ? "the agent went away and did not come back in time"
                              : "not logagentd's ingest socket, or a record it refused: see the agent's log");
    } else if (rc == -EIO) {
        fprintf(stderr, PROG ": cannot read standard input\n");
    } else if (rc == -ETIMEDOUT) {
        fprintf(stderr, PROG ": %s did not take or confirm the records within %d ms (agent stuck in "
                "backpressure? --flush-timeout-ms)\n", s->path, s->timeout_ms);
    } else {
        fprintf(stderr, PROG ": sending to %s: %s\n", s->path, strerror(-rc));
    }
}

/* A sync (final: the last one), with re-sends if the agent restarted meanwhile. */
static int sync_recovering(sender *s, int final)
{
    int rc = sync_now(s, final);
    while (rc == -ECONNRESET && may_resend(s))
        if ((rc = recover(s, rc)) == 0)
            rc = sync_now(s, final);
    return rc;
}

/* Encodes one record, keeps it until confirmed, writes it. Returns 0, or -errno (reported by the caller). A record
 * too large for the agent is counted and named here, and is not an error that stops the others. */
static int send_one(sender *s, const logagent_record *r, unsigned long lineno)
{
    char log_id[33];
    logagent_new_log_id(log_id);
    int64_t ts = now_unix_ns();
    size_t n = la_pack_record(s->pending + s->len, s->cap - s->len, r, log_id, ts); /* usually fits: one pass */
    if (n == LA_PACK_TOO_BIG || n > MAX_RECORD_BYTES) {
        if (s->too_large++ < MAX_REPORTED_ERRORS)
            fprintf(stderr, PROG ": %s%.0lu%srecord too large (limit %zu bytes): not sent\n", lineno ? "line " : "",
                    lineno, lineno ? ": " : "", MAX_RECORD_BYTES);
        return 0;
    }
    if (n > s->cap - s->len) {
        size_t cap = s->cap;
        while (cap < s->len + n)
            cap *= 2;
        unsigned char *p = realloc(s->pending, cap);
        if (!p)
            return -ENOMEM;
        s->pending = p;
        s->cap = cap;
        la_pack_record(s->pending + s->len, n, r, log_id, ts);
    }
    s->len += n;
    int rc = recover(s, write_all(s, s->pending + s->len - n, n));
    if (rc == 0 && s->len >= SYNC_BYTES)
        rc = sync_recovering(s, 0);
    return rc;
}

/* Standard input read with read(2), so the program knows when it is quiet (stdio would hide buffered lines). */
typedef struct line_reader {
    char *buf;
    size_t start, len, cap; /* unread bytes are buf[start..len) */
    int eof;
} line_reader;

/* Waits for stdin; while records wait for their confirmation, a quiet second sends a sync first (a slow stream
 * is confirmed as it goes, and a restarted agent has little to be re-sent). Returns 0 or -errno. */
static int wait_input(sender *s)
{
    struct pollfd p = {.fd = 0, .events = POLLIN};
    while (s->len) {
        int rc = poll(&p, 1, (int)(SYNC_IDLE_NS / 1000000));
        if (rc > 0)
            return 0;
        if (rc == 0)
            return sync_recovering(s, 0);
        if (errno != EINTR)
            return -errno;
    }
    return 0;
}

/* The next line of stdin without its '\n' in *line (NUL-terminated, valid until the next call). Returns 1, 0 at
 * the end of input, or -errno. */
static int read_line(sender *s, line_reader *lr, char **line, size_t *n)
{
    for (;;) {
        char *nl = lr->len > lr->start ? memchr(lr->buf + lr->start, '\n', lr->len - lr->start) : NULL;
        if (nl || (lr->eof && lr->len > lr->start)) {
            *line = lr->buf + lr->start;
            *n = (nl ? (size_t)(nl - *line) : lr->len - lr->start);
            (*line)[*n] = '\0'; /* over the '\n', or the spare byte kept below */
            lr->start += *n + (nl != NULL);
            return 1;
        }
        if (lr->eof)
            return 0;
        if (lr->start) {
            memmove(lr->buf, lr->buf + lr->start, lr->len - lr->start);
            lr->len -= lr->start;
        }
        lr->start = 0;
        if (lr->cap - lr->len < 4096 + 1) { /* room to read, and a spare byte for the last line's NUL */
            char *b = realloc(lr->buf, lr->cap ? lr->cap * 2 : 65536);
            if (!b)
                return -ENOMEM;
            lr->buf = b;
            lr->cap = lr->cap ? lr->cap * 2 : 65536;
        }
        int rc = wait_input(s);
        if (rc < 0)
            return rc;
        ssize_t got = read(0, lr->buf + lr->len, lr->cap - lr->len - 1);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            return -EIO;
        lr->eof = got == 0;
        lr->len += (size_t)got;
    }
}

/* Joins argv[from..] with spaces into one record, or reads stdin line by line. Returns 0 or -errno (reported). */
static int send_input(sender *s, logagent_record *rec, int argc, char **argv, int from)
{
    int rc = 0;
    if (from < argc) {
        size_t len = 0;
        for (int i = from; i < argc; i++)
            len += strlen(argv[i]) + 1;
        char *msg = malloc(len), *p = msg;
        if (!msg)
            return -ENOMEM;
        for (int i = from; i < argc; i++) {
            size_t n = strlen(argv[i]);
            if (i > from)
                *p++ = ' ';
            memcpy(p, argv[i], n);
            p += n;
        }
        *p = '\0';
        rec->message = msg;
        rc = send_one(s, rec, 0);
        free(msg);
        return rc;
    }
    line_reader lr = {0};
    char *line;
    size_t n;
    unsigned long lineno = 0;
    while (rc == 0 && (rc = read_line(s, &lr, &line, &n)) > 0) {
        rc = 0;
        if (++lineno && n == 0)
            continue;
        rec->message = line;
        rc = send_one(s, rec, lineno);
    }
    free(lr.buf);
    return rc;
}

static int run(int argc, char **argv, logagent_field *fields)
{
    enum { O_SOCKET = 1, O_LEVEL, O_SERVICE, O_META, O_TRACE, O_SPAN, O_FLUSH, O_HELP, O_VERSION };
    static const struct option longopts[] = {
        { "socket", required_argument, NULL, O_SOCKET },
        { "level", required_argument, NULL, O_LEVEL },
        { "service", required_argument, NULL, O_SERVICE },
        { "meta", required_argument, NULL, O_META },
        { "trace-id", required_argument, NULL, O_TRACE },
        { "span-id", required_argument, NULL, O_SPAN },
        { "flush-timeout-ms", required_argument, NULL, O_FLUSH },
        { "help", no_argument, NULL, O_HELP },
        { "version", no_argument, NULL, O_VERSION },
        { NULL, 0, NULL, 0 },
    };
    logagent_record rec;
    memset(&rec, 0, sizeof rec);
    sender s = {.fd = -1, .timeout_ms = DEFAULT_FLUSH_TIMEOUT_MS};

    opterr = 0;
    int o;
    while ((o = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        switch (o) {
        case O_SOCKET:
            if (!*optarg)
                return cli_usage_error(PROG, "--socket needs a non-empty PATH");
            s.path = optarg;
            break;
        case O_LEVEL:
            if (!level_known(optarg))
                return cli_usage_error(PROG, "--level must be TRACE, DEBUG, INFO, WARN (WARNING), ERROR or FATAL "
                                             "(CRITICAL), got '%s'", optarg);
            rec.level = optarg;
            break;
        case O_SERVICE:
            rec.service_name = optarg;
            break;
        case O_META:
            if (parse_meta(optarg, &fields[rec.n_fields]) < 0)
                return cli_usage_error(PROG, "--meta needs KEY=VALUE with a non-empty KEY, got '%s'", optarg);
            rec.n_fields++;
            break;
        case O_TRACE:
            rec.trace_id = optarg;
            break;
        case O_SPAN:
            rec.span_id = optarg;
            break;
        case O_FLUSH: {
            char *end;
            errno = 0;
            long v = strtol(optarg, &end, 10);
            if (*optarg == '\0' || *end != '\0' || errno || v < -1 || v > INT_MAX)
                return cli_usage_error(PROG, "--flush-timeout-ms needs a number of milliseconds (-1: forever), "
                                             "got '%s'", optarg);
            s.timeout_ms = (int)v;
            break;
        }
        case O_HELP:
        case 'h':
            usage(stdout);
            return 0;
        case O_VERSION:
            printf(PROG " " LOGAGENT_VERSION "\n");
            return 0;
        default: /* ':' a value missing, '?' an unknown option */
            return cli_option_error(PROG, o == ':', argv[optind - 1]);
        }
    }
    rec.fields = fields;
    if (!s.path) {
        s.path = getenv("LOGAGENT_SOCKET");
        if (!s.path || !*s.path)
            s.path = LOGAGENT_DEFAULT_SOCKET;
    }
    if (strlen(s.path) >= sizeof((struct sockaddr_un *)0)->sun_path)
        return cli_usage_error(PROG, "--socket PATH is too long: '%s'", s.path);

    int rc = snd_connect(&s);
    if (rc < 0) {
        fprintf(stderr, PROG ": cannot reach the agent at %s: %s\n", s.path, strerror(-rc));
        return 1;
    }
    s.cap = 64 * 1024;
    rc = (s.pending = malloc(s.cap)) ? send_input(&s, &rec, argc, argv, optind) : -ENOMEM;
    if (rc == 0)
        rc = sync_recovering(&s, 1);
    if (rc < 0)
        report(&s, rc);
    else if (s.too_large > MAX_REPORTED_ERRORS)
        fprintf(stderr, PROG ": %lu records too large, not sent\n", s.too_large);
    snd_close(&s);
    free(s.pending);
    return rc == 0 && !s.too_large ? 0 : 1;
}

int main(int argc, char **argv)
{
    /* every --meta points into argv; at most argc of them */
    logagent_field *fields = calloc((size_t)argc, sizeof *fields);
    if (!fields) {
        fprintf(stderr, PROG ": out of memory\n");
        return 1;
    }
    int status = run(argc, argv, fields);
    free(fields);
    return status;
}
