/* logagent_send.c — logagent-send: hand log records to logagentd from a shell, like logger(1).
 *
 * MESSAGE words joined by spaces make one record; with no MESSAGE, every non-empty stdin line is one
 * record. The client runs in blocking mode (a full buffer waits for the agent, nothing is dropped) and
 * the program flushes before it exits. Exit status: 0 sent, 2 bad usage, 1 anything else (agent not
 * reachable, a record refused, flush timed out). */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "logagent.h"

#define PROG "logagent-send"
#define DEFAULT_FLUSH_TIMEOUT_MS 30000
#define MAX_REPORTED_ERRORS 5

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: " PROG " [OPTION]... [MESSAGE...]\n"
            "Send log records to logagentd, like logger(1). MESSAGE words joined by spaces make one record;\n"
            "with no MESSAGE, each non-empty line of standard input is one record.\n"
            "\n"
            "  --socket PATH          ingest socket (default: $LOGAGENT_SOCKET, else " LOGAGENT_DEFAULT_SOCKET ")\n"
            "  --level L              TRACE, DEBUG, INFO, WARN, ERROR or FATAL (default INFO)\n"
            "  --service S            service_name of the records\n"
            "  --meta KEY=VALUE       metadata field, repeatable; VALUE is sent as an integer, a float,\n"
            "                         true/false as a bool, or else as a string\n"
            "  --trace-id X           trace_id of the records\n"
            "  --span-id Y            span_id of the records\n"
            "  --flush-timeout-ms N   wait at most N ms at exit for the records to reach the agent\n"
            "                         (default %d; -1 forever)\n"
            "  --help                 show this help and exit\n"
            "  --version              show the version and exit\n"
            "\n"
            "Exit status: 0 all records handed to the agent, 1 the agent could not be reached or a record\n"
            "was not sent, 2 bad usage.\n",
            DEFAULT_FLUSH_TIMEOUT_MS);
}

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int usage_error(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, PROG ": ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry '" PROG " --help' for more information.\n");
    return 2;
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

typedef struct send_state {
    logagent_client *c;
    logagent_record rec;
    unsigned long failed;
} send_state;

static void send_one(send_state *s, const char *message, unsigned long lineno)
{
    s->rec.message = message;
    logagent_result r = logagent_write(s->c, &s->rec);
    if (r.success)
        return;
    if (s->failed++ < MAX_REPORTED_ERRORS) {
        if (lineno)
            fprintf(stderr, PROG ": line %lu: %s\n", lineno, r.error_message);
        else
            fprintf(stderr, PROG ": %s\n", r.error_message);
    }
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
    const char *socket_path = NULL;
    int flush_timeout_ms = DEFAULT_FLUSH_TIMEOUT_MS;
    send_state s;
    memset(&s, 0, sizeof s);

    opterr = 0;
    int o;
    while ((o = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        switch (o) {
        case O_SOCKET:
            if (!*optarg)
                return usage_error("--socket needs a non-empty PATH");
            socket_path = optarg;
            break;
        case O_LEVEL:
            if (!*optarg)
                return usage_error("--level needs a non-empty level");
            s.rec.level = optarg;
            break;
        case O_SERVICE:
            s.rec.service_name = optarg;
            break;
        case O_META:
            if (parse_meta(optarg, &fields[s.rec.n_fields]) < 0)
                return usage_error("--meta needs KEY=VALUE with a non-empty KEY, got '%s'", optarg);
            s.rec.n_fields++;
            break;
        case O_TRACE:
            s.rec.trace_id = optarg;
            break;
        case O_SPAN:
            s.rec.span_id = optarg;
            break;
        case O_FLUSH: {
            char *end;
            errno = 0;
            long v = strtol(optarg, &end, 10);
            if (*optarg == '\0' || *end != '\0' || errno || v < -1 || v > INT_MAX)
                return usage_error("--flush-timeout-ms needs a number of milliseconds (-1: forever), got '%s'",
                                   optarg);
            flush_timeout_ms = (int)v;
            break;
        }
        case O_HELP:
        case 'h':
            usage(stdout);
            return 0;
        case O_VERSION:
            printf(PROG " " LOGAGENT_VERSION "\n");
            return 0;
        case ':':
            return usage_error("option %s needs a value", argv[optind - 1]);
        default:
            return usage_error("unknown option %s", argv[optind - 1]);
        }
    }
    s.rec.fields = fields;

    if (!socket_path) {
        socket_path = getenv("LOGAGENT_SOCKET");
        if (!socket_path || !*socket_path)
            socket_path = LOGAGENT_DEFAULT_SOCKET;
    }
    logagent_options opts = { .socket_path = socket_path, .buffer_bytes = 0, .block_timeout_ms = -1 };
    int rc = logagent_client_new(&opts, &s.c);
    if (rc == -ENAMETOOLONG)
        return usage_error("--socket PATH is too long: '%s'", socket_path);
    if (rc < 0) {
        fprintf(stderr, PROG ": cannot create the client: %s\n", strerror(-rc));
        return 1;
    }
    rc = logagent_probe(socket_path);
    if (rc < 0) {
        fprintf(stderr, PROG ": cannot reach the agent at %s: %s\n", socket_path, strerror(-rc));
        logagent_client_free(s.c, 0);
        return 1;
    }

    if (optind < argc) {
        size_t len = 0;
        for (int i = optind; i < argc; i++)
            len += strlen(argv[i]) + 1;
        char *msg = malloc(len);
        if (!msg) {
            fprintf(stderr, PROG ": out of memory\n");
            logagent_client_free(s.c, 0);
            return 1;
        }
        char *p = msg;
        for (int i = optind; i < argc; i++) {
            size_t n = strlen(argv[i]);
            if (i > optind)
                *p++ = ' ';
            memcpy(p, argv[i], n);
            p += n;
        }
        *p = '\0';
        send_one(&s, msg, 0);
        free(msg);
    } else {
        char *line = NULL;
        size_t cap = 0;
        ssize_t n;
        unsigned long lineno = 0;
        while ((n = getline(&line, &cap, stdin)) >= 0) {
            lineno++;
            if (n > 0 && line[n - 1] == '\n')
                line[--n] = '\0';
            if (n == 0)
                continue;
            send_one(&s, line, lineno);
        }
        if (ferror(stdin)) {
            fprintf(stderr, PROG ": reading standard input: %s\n", strerror(errno));
            s.failed++;
        }
        free(line);
    }

    int status = s.failed ? 1 : 0;
    if (s.failed > MAX_REPORTED_ERRORS)
        fprintf(stderr, PROG ": %lu records not sent\n", s.failed);
    rc = logagent_flush(s.c, flush_timeout_ms);
    if (rc < 0) {
        logagent_stats st;
        logagent_get_stats(s.c, &st);
        fprintf(stderr, PROG ": %s: %zu bytes not written to %s\n",
                rc == -ENOTCONN ? "the agent went away" : "flush timed out", st.buffered_bytes, socket_path);
        status = 1;
    }
    logagent_stats st;
    logagent_get_stats(s.c, &st);
    if (st.dropped) {
        fprintf(stderr, PROG ": %llu records dropped\n", (unsigned long long)st.dropped);
        status = 1;
    }
    logagent_client_free(s.c, 0);
    return status;
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
