/* bench.c — logagent-bench: the original service's concurrent write test, on top of liblogagent.
 *
 * W threads together write N records shaped like the original's test data (service_name
 * django-concurrent-test, random level, concurrent-trace-%06d / concurrent-span-%06d, adv_id, aweme_id,
 * plan_id, monitor_type, co_id as ints and strings, an RFC 3339 timestamp; ~310 bytes of msgpack with the
 * library's log_id), then flush, and print
 * the original's JSON report on stdout. success_count counts records queued by the library and
 * failed_count records it refused (dropped on a full buffer); the duration runs until the flush is done,
 * so logs_per_second is records handed to the agent's socket per second. Exit 0 when every record was
 * queued and flushed, 1 otherwise, 2 on bad usage. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "logagent.h"

#define PROG "logagent-bench"
#define MAX_WORKERS 1024
#define MAX_SAMPLE_ERRORS 5

typedef struct bench {
    /* read-only while workers run */
    logagent_options opts;
    logagent_client *shared;          /* NULL with --per-worker-client */
    long count;
    int workers;
    int flush_timeout_ms;

    atomic_long next;                 /* next record index - 1 */
    atomic_long ok;
    atomic_long failed;

    pthread_mutex_t err_mu;           /* protects the error fields below */
    long n_errors;                    /* errors besides failed records (client creation, flush) */
    int n_samples;
    char samples[MAX_SAMPLE_ERRORS][160];
} bench;

typedef struct worker {
    bench *b;
    int id;
    pthread_t thread;
} worker;

static void note_error(bench *b, int is_record, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void note_error(bench *b, int is_record, const char *fmt, ...)
{
    va_list ap;
    pthread_mutex_lock(&b->err_mu);
    if (!is_record)
        b->n_errors++;
    if (b->n_samples < MAX_SAMPLE_ERRORS) {
        va_start(ap, fmt);
        vsnprintf(b->samples[b->n_samples++], sizeof b->samples[0], fmt, ap);
        va_end(ap);
    }
    pthread_mutex_unlock(&b->err_mu);
}

static uint32_t xorshift32(uint32_t *s)
{
    uint32_t x = *s;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return *s = x;
}

/* uniform enough in [lo, hi] for test data */
static int64_t rand_between(uint32_t *s, int64_t lo, int64_t hi)
{
    return lo + (int64_t)(xorshift32(s) % (uint32_t)(hi - lo + 1));
}

/* "2024-08-30T10:30:45.123456+00:00" */
static void rfc3339_now(char *buf, size_t n)
{
    struct timespec ts;
    struct tm tm;
    char head[32];
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(head, sizeof head, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf, n, "%.20s.%06u+00:00", head, (unsigned)(ts.tv_nsec / 1000) % 1000000u);
}

static void *worker_main(void *arg)
{
    static const char *const levels[] = { "INFO", "WARN", "ERROR", "DEBUG" };
    static const char *const monitor_types[] = { "impression", "click", "conversion", "view" };
    worker *w = arg;
    bench *b = w->b;
    logagent_client *c = b->shared;
    uint32_t rs = 2463534242u ^ (uint32_t)(w->id * 0x9e3779b9u);
    if (rs == 0)
        rs = 1;

    if (!c) {
        int rc = logagent_client_new(&b->opts, &c);
        if (rc < 0) {
            note_error(b, 0, "worker %d: cannot create a client: %s", w->id, strerror(-rc));
            return NULL;
        }
    }

    char message[64], trace[40], span[40], ts[48];
    logagent_field f[6];
    logagent_record r = { .service_name = "django-concurrent-test", .trace_id = trace, .span_id = span,
                          .message = message, .fields = f, .n_fields = 6 };
    long i;
    while ((i = atomic_fetch_add_explicit(&b->next, 1, memory_order_relaxed) + 1) <= b->count) {
        const char *monitor = monitor_types[xorshift32(&rs) % 4];
        r.level = levels[xorshift32(&rs) % 4];
        snprintf(message, sizeof message, "Concurrent test log entry %ld", i);
        snprintf(trace, sizeof trace, "concurrent-trace-%06ld", i);
        snprintf(span, sizeof span, "concurrent-span-%06ld", i);
        rfc3339_now(ts, sizeof ts);
        f[0] = (logagent_field){ .key = "adv_id", .type = LOGAGENT_INT, .v.i = rand_between(&rs, 1000000, 9999999) };
        f[1] = (logagent_field){ .key = "aweme_id", .type = LOGAGENT_INT,
                                 .v.i = rand_between(&rs, 100000000, 999999999) };
        f[2] = (logagent_field){ .key = "plan_id", .type = LOGAGENT_INT, .v.i = rand_between(&rs, 10000, 99999) };
        f[3] = (logagent_field){ .key = "monitor_type", .type = LOGAGENT_STR, .v.s = monitor };
        f[4] = (logagent_field){ .key = "co_id", .type = LOGAGENT_INT, .v.i = rand_between(&rs, 1000, 9999) };
        f[5] = (logagent_field){ .key = "timestamp", .type = LOGAGENT_STR, .v.s = ts };

        logagent_result res = logagent_write(c, &r);
        if (res.success) {
            atomic_fetch_add_explicit(&b->ok, 1, memory_order_relaxed);
        } else {
            atomic_fetch_add_explicit(&b->failed, 1, memory_order_relaxed);
            note_error(b, 1, "%s", res.error_message);
        }
    }

    if (!b->shared) {
        int rc = logagent_flush(c, b->flush_timeout_ms);
        if (rc < 0)
            note_error(b, 0, "worker %d: flush: %s", w->id, strerror(-rc));
        logagent_client_free(c, 0);
    }
    return NULL;
}

static void json_string(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            printf("\\%c", ch);
        else if (ch < 0x20)
            printf("\\u%04x", ch);
        else
            putchar(ch);
    }
    putchar('"');
}

static double mono_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: " PROG " --socket PATH --count N --workers W [OPTION]...\n"
            "Write N records shaped like the original service's concurrent test from W threads through\n"
            "liblogagent, flush, and print a JSON report on stdout.\n"
            "\n"
            "  --socket PATH          ingest socket (default: $LOGAGENT_SOCKET, else " LOGAGENT_DEFAULT_SOCKET ")\n"
            "  --count N              records in all (default 10000)\n"
            "  --workers W            writer threads (default 50, at most %d)\n"
            "  --block-ms MS          when the client buffer is full: -1 wait (default), 0 drop, >0 wait up to MS\n"
            "  --per-worker-client    one client per thread instead of one shared client\n"
            "  --buffer-bytes N       client buffer bound (default: the library's, 4 MiB)\n"
            "  --flush-timeout-ms N   wait at most N ms for the final flush (default 60000; -1 forever)\n"
            "  --help, --version\n",
            MAX_WORKERS);
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

/* A whole-string integer in [lo, hi]. */
static int parse_long(const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || errno || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

int main(int argc, char **argv)
{
    enum { O_SOCKET = 1, O_COUNT, O_WORKERS, O_BLOCK, O_PER_WORKER, O_BUFFER, O_FLUSH, O_HELP, O_VERSION };
    static const struct option longopts[] = {
        { "socket", required_argument, NULL, O_SOCKET },
        { "count", required_argument, NULL, O_COUNT },
        { "workers", required_argument, NULL, O_WORKERS },
        { "block-ms", required_argument, NULL, O_BLOCK },
        { "per-worker-client", no_argument, NULL, O_PER_WORKER },
        { "buffer-bytes", required_argument, NULL, O_BUFFER },
        { "flush-timeout-ms", required_argument, NULL, O_FLUSH },
        { "help", no_argument, NULL, O_HELP },
        { "version", no_argument, NULL, O_VERSION },
        { NULL, 0, NULL, 0 },
    };
    static bench b;
    int per_worker = 0;
    long v;

    b.count = 10000;
    b.workers = 50;
    b.flush_timeout_ms = 60000;
    b.opts.block_timeout_ms = -1;
    opterr = 0;
    int o;
    while ((o = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        switch (o) {
        case O_SOCKET:
            b.opts.socket_path = optarg;
            break;
        case O_COUNT:
            if (parse_long(optarg, 1, LONG_MAX / 2, &v) < 0)
                return usage_error("--count needs a positive number, got '%s'", optarg);
            b.count = v;
            break;
        case O_WORKERS:
            if (parse_long(optarg, 1, MAX_WORKERS, &v) < 0)
                return usage_error("--workers needs a number from 1 to %d, got '%s'", MAX_WORKERS, optarg);
            b.workers = (int)v;
            break;
        case O_BLOCK:
            if (parse_long(optarg, -1, INT_MAX, &v) < 0)
                return usage_error("--block-ms needs -1, 0 or a number of milliseconds, got '%s'", optarg);
            b.opts.block_timeout_ms = (int)v;
            break;
        case O_PER_WORKER:
            per_worker = 1;
            break;
        case O_BUFFER:
            if (parse_long(optarg, 1, LONG_MAX, &v) < 0)
                return usage_error("--buffer-bytes needs a positive number, got '%s'", optarg);
            b.opts.buffer_bytes = (size_t)v;
            break;
        case O_FLUSH:
            if (parse_long(optarg, -1, INT_MAX, &v) < 0)
                return usage_error("--flush-timeout-ms needs -1 or a number of milliseconds, got '%s'", optarg);
            b.flush_timeout_ms = (int)v;
            break;
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
    if (optind < argc)
        return usage_error("unexpected argument '%s'", argv[optind]);
    if (!b.opts.socket_path) {
        b.opts.socket_path = getenv("LOGAGENT_SOCKET");
        if (!b.opts.socket_path || !*b.opts.socket_path)
            b.opts.socket_path = LOGAGENT_DEFAULT_SOCKET;
    }
    int prc = logagent_probe(b.opts.socket_path);
    if (prc == -ENAMETOOLONG)
        return usage_error("--socket PATH is too long: '%s'", b.opts.socket_path);
    if (prc < 0) {
        fprintf(stderr, PROG ": cannot reach the agent at %s: %s\n", b.opts.socket_path, strerror(-prc));
        return 1;
    }
    pthread_mutex_init(&b.err_mu, NULL);

    if (!per_worker) {
        int rc = logagent_client_new(&b.opts, &b.shared);
        if (rc < 0) {
            fprintf(stderr, PROG ": cannot create the client: %s\n", strerror(-rc));
            return 1;
        }
    }

    worker *ws = calloc((size_t)b.workers, sizeof *ws);
    if (!ws) {
        fprintf(stderr, PROG ": out of memory\n");
        return 1;
    }
    double t0 = mono_seconds();
    int started = 0;
    for (int i = 0; i < b.workers; i++) {
        ws[i].b = &b;
        ws[i].id = i;
        int rc = pthread_create(&ws[i].thread, NULL, worker_main, &ws[i]);
        if (rc != 0) {
            note_error(&b, 0, "cannot start worker %d: %s", i, strerror(rc));
            break;
        }
        started++;
    }
    for (int i = 0; i < started; i++)
        pthread_join(ws[i].thread, NULL);
    if (b.shared) {
        int rc = logagent_flush(b.shared, b.flush_timeout_ms);
        if (rc < 0)
            note_error(&b, 0, "flush: %s", strerror(-rc));
    }
    double duration = mono_seconds() - t0;
    free(ws);

    long ok = atomic_load(&b.ok);
    long failed = b.count - ok;   /* dropped, plus any never written (a worker that could not start) */
    printf("{\"success\":true,\"test_type\":\"concurrent\",\"total_count\":%ld,\"success_count\":%ld,"
           "\"failed_count\":%ld,\"max_workers\":%d,\"duration_seconds\":%.3f,\"logs_per_second\":%.2f,",
           b.count, ok, failed, b.workers, duration, duration > 0 ? (double)ok / duration : 0.0);
    printf("\"client\":\"%s\",\"block_ms\":%d,", per_worker ? "per-worker" : "shared", b.opts.block_timeout_ms);
    printf("\"error_summary\":{\"total_errors\":%ld,\"sample_errors\":[", failed + b.n_errors);
    for (int i = 0; i < b.n_samples; i++) {
        if (i)
            putchar(',');
        json_string(b.samples[i]);
    }
    printf("]}}\n");
    fflush(stdout);

    if (b.shared)
        logagent_client_free(b.shared, 0);
    pthread_mutex_destroy(&b.err_mu);
    return failed == 0 && b.n_errors == 0 ? 0 : 1;
}
