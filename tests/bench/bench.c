/* bench.c — logagent-bench: the original service's concurrent write test, through each of logagent's ingest
 * paths, measured the same way. This file: the command line, the run (threads, flush, the end-to-end wait) and
 * the JSON report. The modes live in bench_socket.c, bench_http.c (over common/httpc.c) and, for Python,
 * client-shim/python/logagent/bench.py; the end-to-end wait in bench_stats.c; the record shape in bench_record.c.
 *
 * W threads together write N records shaped like the original's test data (service_name
 * django-concurrent-test, random level, concurrent-trace-%06d / concurrent-span-%06d, adv_id, aweme_id,
 * plan_id, monitor_type, co_id as ints and strings, an RFC 3339 timestamp; ~310 bytes of msgpack with the
 * library's log_id; bench_record.c), then print the original's JSON report on stdout. The records are built
 * before the clock starts (at most BENCH_RING_MAX of them, reused in turn past that), so what is timed is the
 * library (or HTTP) and the agent, not the bench formatting records. Besides the original's keys the report
 * says what the bench measured of itself: prepared_records and prepare_seconds (outside the clock),
 * bench_cpu_seconds (this process, all threads, while sending) and, in socket mode, write_cpu_seconds and
 * write_cpu_us_per_record (the writer threads' CPU over their write loops: liblogagent's cost per
 * logagent_write on the caller's side) and write_latency_us (p50/p99/max of a sample of single writes,
 * bench_lat.c).
 *
 *   --socket PATH (default mode)  through liblogagent; then flush. success_count counts records queued by the
 *                                 library, failed_count records it refused (dropped on a full buffer); the
 *                                 duration runs until the flush is done, so logs_per_second is records handed
 *                                 to the agent's socket per second.
 *   --http URL [--http-batch N]   POSTs to the agent's HTTP ingest (one keep-alive connection per thread);
 *                                 success_count counts records the agent answered as accepted.
 *   --python                      execs `/usr/bin/python3 -m logagent.bench` (the Python client, threads in one
 *                                 process) with the same settings; it prints the same report.
 *   --original HOST:PORT          the same, through the original design (one unary gRPC WriteLog per record,
 *                                 client-shim/python/examples/original/) against that service.
 *   --stats-socket PATH           end-to-end: after sending, poll the agent's GET /stats until records.flushed
 *                                 has grown by success_count, and add delivered, delivered_per_second and
 *                                 e2e_duration_seconds (from the start of sending) to the report.
 *
 * Exit 0 when every record was accepted (and, end-to-end, delivered), 1 otherwise, 2 on bad usage. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "common/cli.h"

#define MAX_WORKERS 1024
#define PYTHON "/usr/bin/python3"
#ifndef LOGAGENT_PYTHON_DIR
#define LOGAGENT_PYTHON_DIR ""
#endif

enum mode { MODE_SOCKET, MODE_HTTP, MODE_PYTHON, MODE_ORIGINAL };
static const char *const mode_names[] = { "socket", "http", "python", "original" };

/* The command line, parsed. */
typedef struct cli {
    enum mode mode;
    int mode_set;
    unsigned given;             /* bit per option (O_*) that was on the command line */
    int per_worker;
    const char *http_url;
    const char *original;
    const char *python_path;    /* NULL: LOGAGENT_PYTHON_DIR when it holds the module */
    const char *stats_socket;
    int stats_timeout_ms;
    httpc_target http;
} cli;

enum {
    O_SOCKET = 1, O_COUNT, O_WORKERS, O_BLOCK, O_PER_WORKER, O_BUFFER, O_FLUSH, O_HTTP, O_HTTP_BATCH, O_PYTHON,
    O_ORIGINAL, O_PYTHON_PATH, O_STATS, O_STATS_TIMEOUT, O_HELP, O_VERSION
};

static double mono_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
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

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: " PROG " [--socket PATH | --http URL | --python | --original HOST:PORT] --count N --workers W\n"
            "                      [--stats-socket PATH] [OPTION]...\n"
            "Write N records shaped like the original service's concurrent test from W threads, through one of\n"
            "logagent's ingest paths, and print the original's JSON report on stdout.\n"
            "\n"
            "Modes:\n"
            "  --socket PATH          through liblogagent to the agent's ingest socket (the default mode; PATH\n"
            "                         defaults to $LOGAGENT_SOCKET, else " LOGAGENT_DEFAULT_SOCKET ")\n"
            "  --http URL             POST to the agent's HTTP ingest (--http-listen), URL http://HOST:PORT or\n"
            "                         unix:PATH; one keep-alive connection per thread, one JSON record per request\n"
            "                         to /api/write_log/\n"
            "  --http-batch N         with --http: N records per request, as NDJSON to /api/write_logs/\n"
            "  --python               the same run through the Python client: execs\n"
            "                         " PYTHON " -m logagent.bench (threads in one process); takes --socket,\n"
            "                         --block-ms, --per-worker-client, --buffer-bytes, --flush-timeout-ms\n"
            "  --original HOST:PORT   the original design, for comparison: one unary gRPC WriteLog per record from\n"
            "                         Python (client-shim/python/examples/original) to the service at HOST:PORT\n"
            "  --python-path DIR      where the Python module logagent is (default: this build's source tree,\n"
            "                         else the installed module)\n"
            "\n"
            "End to end:\n"
            "  --stats-socket PATH    after sending, poll the agent's GET /stats until records.flushed has grown by\n"
            "                         the records accepted; report delivered, delivered_per_second and\n"
            "                         e2e_duration_seconds (from the start of sending). The bench must be the\n"
            "                         agent's only writer meanwhile.\n"
            "  --stats-timeout-ms N   give up waiting N ms after sending ended (default 60000; -1 forever)\n"
            "\n"
            "Options:\n"
            "  --count N              records in all (default 10000)\n"
            "  --workers W            writer threads (default 50, at most %d)\n"
            "  --block-ms MS          socket: when the client buffer is full: -1 wait (default), 0 drop, >0 wait\n"
            "                         up to MS\n"
            "  --per-worker-client    socket: one client per thread instead of one shared client\n"
            "  --buffer-bytes N       socket: client buffer bound (default: the library's, 4 MiB)\n"
            "  --flush-timeout-ms N   socket: wait at most N ms for the final flush (default 60000; -1 forever)\n"
            "  --help, --version\n"
            "\n"
            "The records are built before the clock starts (at most %d, reused in turn past that). Besides the\n"
            "original's report it gives the bench's own CPU time and, in socket mode, the writer threads' CPU per\n"
            "logagent_write (write_cpu_us_per_record) and the p50/p99/max time of a sample of single writes.\n"
            "\n"
            "Exit status: 0 every record accepted (and delivered, end to end), 1 otherwise, 2 bad usage.\n",
            MAX_WORKERS, BENCH_RING_MAX);
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

static int set_mode(cli *c, enum mode m, const char *flag)
{
    if (c->mode_set && c->mode != m)
        return cli_usage_error(PROG, "%s cannot be combined with --%s: choose one mode", flag, mode_names[c->mode]);
    c->mode = m;
    c->mode_set = 1;
    return 0;
}

/* The options each mode takes besides --count and --workers (a bit per O_*). */
static unsigned mode_options(enum mode m)
{
    const unsigned client = 1u << O_BLOCK | 1u << O_PER_WORKER | 1u << O_BUFFER | 1u << O_FLUSH;
    const unsigned e2e = 1u << O_STATS | 1u << O_STATS_TIMEOUT;
    switch (m) {
    case MODE_SOCKET: return 1u << O_SOCKET | client | e2e;
    case MODE_HTTP: return 1u << O_HTTP | 1u << O_HTTP_BATCH | e2e;
    case MODE_PYTHON: return 1u << O_PYTHON | 1u << O_SOCKET | 1u << O_PYTHON_PATH | client | e2e;
    case MODE_ORIGINAL: return 1u << O_ORIGINAL | 1u << O_PYTHON_PATH;
    }
    return 0;
}

static const struct option longopts[] = {
    { "socket", required_argument, NULL, O_SOCKET },
    { "count", required_argument, NULL, O_COUNT },
    { "workers", required_argument, NULL, O_WORKERS },
    { "block-ms", required_argument, NULL, O_BLOCK },
    { "per-worker-client", no_argument, NULL, O_PER_WORKER },
    { "buffer-bytes", required_argument, NULL, O_BUFFER },
    { "flush-timeout-ms", required_argument, NULL, O_FLUSH },
    { "http", required_argument, NULL, O_HTTP },
    { "http-batch", required_argument, NULL, O_HTTP_BATCH },
    { "python", no_argument, NULL, O_PYTHON },
    { "original", required_argument, NULL, O_ORIGINAL },
    { "python-path", required_argument, NULL, O_PYTHON_PATH },
    { "stats-socket", required_argument, NULL, O_STATS },
    { "stats-timeout-ms", required_argument, NULL, O_STATS_TIMEOUT },
    { "help", no_argument, NULL, O_HELP },
    { "version", no_argument, NULL, O_VERSION },
    { NULL, 0, NULL, 0 },
};

static const char *flag_name(int o)
{
    for (const struct option *p = longopts; p->name; p++)
        if (p->val == o)
            return p->name;
    return "?";
}

/* One option's value into b / c. Returns 0, or CLI_EXIT_USAGE after a usage message. */
static int take_option(int o, const char *arg, bench *b, cli *c)
{
    long v;
    switch (o) {
    case O_SOCKET: b->opts.socket_path = arg; return 0;
    case O_COUNT:
        if (parse_long(arg, 1, LONG_MAX / 2, &v) < 0)
            return cli_usage_error(PROG, "--count needs a positive number, got '%s'", arg);
        b->count = v;
        return 0;
    case O_WORKERS:
        if (parse_long(arg, 1, MAX_WORKERS, &v) < 0)
            return cli_usage_error(PROG, "--workers needs a number from 1 to %d, got '%s'", MAX_WORKERS, arg);
        b->workers = (int)v;
        return 0;
    case O_BLOCK:
        if (parse_long(arg, -1, INT_MAX, &v) < 0)
            return cli_usage_error(PROG, "--block-ms needs -1, 0 or a number of milliseconds, got '%s'", arg);
        b->opts.block_timeout_ms = (int)v;
        return 0;
    case O_PER_WORKER: c->per_worker = 1; return 0;
    case O_BUFFER:
        if (parse_long(arg, 1, LONG_MAX, &v) < 0)
            return cli_usage_error(PROG, "--buffer-bytes needs a positive number, got '%s'", arg);
        b->opts.buffer_bytes = (size_t)v;
        return 0;
    case O_FLUSH:
        if (parse_long(arg, -1, INT_MAX, &v) < 0)
            return cli_usage_error(PROG, "--flush-timeout-ms needs -1 or a number of milliseconds, got '%s'", arg);
        b->flush_timeout_ms = (int)v;
        return 0;
    case O_HTTP: c->http_url = arg; return set_mode(c, MODE_HTTP, "--http");
    case O_HTTP_BATCH:
        if (parse_long(arg, 1, 100000, &v) < 0)
            return cli_usage_error(PROG, "--http-batch needs a number of records from 1 to 100000, got '%s'", arg);
        b->http_batch = (int)v;
        return 0;
    case O_PYTHON: return set_mode(c, MODE_PYTHON, "--python");
    case O_ORIGINAL: c->original = arg; return set_mode(c, MODE_ORIGINAL, "--original");
    case O_PYTHON_PATH: c->python_path = arg; return 0;
    case O_STATS: c->stats_socket = arg; return 0;
    case O_STATS_TIMEOUT:
        if (parse_long(arg, -1, INT_MAX, &v) < 0)
            return cli_usage_error(PROG, "--stats-timeout-ms needs -1 or a number of milliseconds, got '%s'", arg);
        c->stats_timeout_ms = (int)v;
        return 0;
    }
    return CLI_EXIT_USAGE;
}

/* Parses argv into b and c. Returns -1 to go on, or an exit status (0 after --help/--version, 2 bad usage). */
static int parse_args(int argc, char **argv, bench *b, cli *c)
{
    opterr = 0;
    int o;
    while ((o = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        if (o == O_HELP || o == 'h') {
            usage(stdout);
            return 0;
        }
        if (o == O_VERSION) {
            printf(PROG " " LOGAGENT_VERSION "\n");
            return 0;
        }
        if (o == ':' || o == '?')
            return cli_option_error(PROG, o == ':', argv[optind - 1]);
        c->given |= 1u << o;
        if (take_option(o, optarg, b, c) != 0)
            return CLI_EXIT_USAGE;
    }
    if (optind < argc)
        return cli_usage_error(PROG, "unexpected argument '%s'", argv[optind]);
    unsigned stray = c->given & ~(mode_options(c->mode) | 1u << O_COUNT | 1u << O_WORKERS);
    for (int i = O_SOCKET; i < O_HELP; i++)
        if (stray & 1u << i)
            return cli_usage_error(PROG, "--%s has no meaning in %s mode", flag_name(i), mode_names[c->mode]);
    if (c->mode == MODE_HTTP) {
        char err[200];
        if (httpc_parse_url(c->http_url, &c->http, err, sizeof err) < 0)
            return cli_usage_error(PROG, "--http: %s", err);
    }
    if (!b->opts.socket_path) {
        b->opts.socket_path = getenv("LOGAGENT_SOCKET");
        if (!b->opts.socket_path || !*b->opts.socket_path)
            b->opts.socket_path = LOGAGENT_DEFAULT_SOCKET;
    }
    return -1;
}

/* PYTHONPATH for the Python modes: --python-path, else this build's source tree when it has the module, else
 * unchanged (the installed module). Returns 0 or -errno. */
static int set_python_path(const cli *c)
{
    const char *dir = c->python_path;
    if (!dir && access(LOGAGENT_PYTHON_DIR "/logagent/bench.py", R_OK) == 0)
        dir = LOGAGENT_PYTHON_DIR;
    if (!dir)
        return 0;
    const char *old = getenv("PYTHONPATH");
    size_t n = strlen(dir) + (old ? strlen(old) : 0) + 2;
    char *v = malloc(n);
    if (!v)
        return -ENOMEM;
    snprintf(v, n, "%s%s%s", dir, old && *old ? ":" : "", old && *old ? old : "");
    int rc = setenv("PYTHONPATH", v, 1) < 0 ? -errno : 0;
    free(v);
    return rc;
}

/* --python / --original: replaces this process with `python3 -m logagent.bench` and the same settings. Returns
 * (1) only when that fails. */
static int exec_python(const bench *b, const cli *c)
{
    char count[24], workers[24], block[24], buffer[24], flush[24], stimeout[24];
    const char *av[32];
    int n = 0;
    snprintf(count, sizeof count, "%ld", b->count);
    snprintf(workers, sizeof workers, "%d", b->workers);
    snprintf(block, sizeof block, "%d", b->opts.block_timeout_ms);
    snprintf(buffer, sizeof buffer, "%zu", b->opts.buffer_bytes);
    snprintf(flush, sizeof flush, "%d", b->flush_timeout_ms);
    snprintf(stimeout, sizeof stimeout, "%d", c->stats_timeout_ms);
    av[n++] = PYTHON;
    av[n++] = "-m";
    av[n++] = "logagent.bench";
    av[n++] = c->mode == MODE_ORIGINAL ? "--original" : "--socket";
    av[n++] = c->mode == MODE_ORIGINAL ? c->original : b->opts.socket_path;
    av[n++] = "--count";
    av[n++] = count;
    av[n++] = "--workers";
    av[n++] = workers;
    if (c->given & 1u << O_BLOCK) {
        av[n++] = "--block-ms";
        av[n++] = block;
    }
    if (c->given & 1u << O_BUFFER) {
        av[n++] = "--buffer-bytes";
        av[n++] = buffer;
    }
    if (c->given & 1u << O_FLUSH) {
        av[n++] = "--flush-timeout-ms";
        av[n++] = flush;
    }
    if (c->per_worker)
        av[n++] = "--per-worker-client";
    if (c->stats_socket) {
        av[n++] = "--stats-socket";
        av[n++] = c->stats_socket;
        av[n++] = "--stats-timeout-ms";
        av[n++] = stimeout;
    }
    av[n] = NULL;
    int rc = set_python_path(c);
    if (rc < 0) {
        fprintf(stderr, PROG ": cannot set PYTHONPATH: %s\n", strerror(-rc));
        return 1;
    }
    fflush(stdout);
    execv(PYTHON, (char *const *)av);
    fprintf(stderr, PROG ": cannot run " PYTHON ": %s\n", strerror(errno));
    return 1;
}

/* What a run measured of itself besides the counts in bench. */
typedef struct measured {
    double duration;          /* from the first worker's start to the end of sending (and the shared flush) */
    double prepare_s;         /* building the records, before the clock started */
    double cpu_s;             /* this process's CPU time (all threads) over duration */
    long writes;              /* socket mode: logagent_write calls... */
    double write_cpu_s;       /* ...and the workers' CPU time over their write loops */
    int lat_rc;               /* 0: lat holds the sampled single-write times; -errno: none */
    bench_lat_summary lat;
} measured;

/* The socket mode's own measurements: "write_cpu_*" (the library's cost per logagent_write on the calling
 * threads) and "write_latency_us" (one write, sampled). */
static void print_write_measures(const measured *m)
{
    printf("\"write_cpu_seconds\":%.4f,\"write_cpu_us_per_record\":%.4f,", m->write_cpu_s,
           m->writes > 0 ? m->write_cpu_s * 1e6 / (double)m->writes : 0.0);
    if (m->lat_rc == 0)
        printf("\"write_latency_us\":{\"p50\":%.3f,\"p99\":%.3f,\"max\":%.3f,\"samples\":%zu,\"every\":%ld},",
               m->lat.p50_ns / 1e3, m->lat.p99_ns / 1e3, m->lat.max_ns / 1e3, m->lat.samples, m->lat.stride);
    else
        printf("\"write_latency_us\":null,");
}

static void print_report(const bench *b, const cli *c, const measured *m, long delivered, double e2e_s)
{
    long ok = atomic_load(&b->ok);
    long failed = b->count - ok; /* refused, plus any never written (a worker that could not start) */
    double duration = m->duration;
    printf("{\"success\":true,\"test_type\":\"concurrent\",\"total_count\":%ld,\"success_count\":%ld,"
           "\"failed_count\":%ld,\"max_workers\":%d,\"duration_seconds\":%.3f,\"logs_per_second\":%.2f,",
           b->count, ok, failed, b->workers, duration, duration > 0 ? (double)ok / duration : 0.0);
    if (c->mode == MODE_SOCKET) {
        printf("\"client\":\"%s\",\"block_ms\":%d,", c->per_worker ? "per-worker" : "shared",
               b->opts.block_timeout_ms);
    } else {
        printf("\"mode\":\"%s\",\"url\":", b->http_batch ? "http-batch" : "http");
        json_string(c->http_url);
        printf(",\"http_batch\":%d,\"requests\":%ld,", b->http_batch, atomic_load(&b->requests));
    }
    printf("\"prepared_records\":%zu,\"prepare_seconds\":%.4f,\"bench_cpu_seconds\":%.4f,"
           "\"bench_cpu_us_per_record\":%.4f,", b->ring.n, m->prepare_s, m->cpu_s, m->cpu_s * 1e6 / (double)b->count);
    if (c->mode == MODE_SOCKET)
        print_write_measures(m);
    if (c->stats_socket)
        printf("\"delivered\":%ld,\"delivered_per_second\":%.2f,\"e2e_duration_seconds\":%.3f,", delivered,
               e2e_s > 0 ? (double)delivered / e2e_s : 0.0, e2e_s);
    printf("\"error_summary\":{\"total_errors\":%ld,\"sample_errors\":[", failed + b->n_errors);
    for (int i = 0; i < b->n_samples; i++) {
        if (i)
            putchar(',');
        json_string(b->samples[i]);
    }
    printf("]}}\n");
    fflush(stdout);
}

/* Checks the agent answers before the clock starts. Returns 0, or 1 after a message. */
static int probe(const bench *b, const cli *c)
{
    if (c->mode == MODE_HTTP) {
        char err[200];
        if (bench_http_probe(&c->http, err, sizeof err) < 0) {
            fprintf(stderr, PROG ": cannot reach the agent's HTTP ingest: %s\n", err); /* err names it */
            return 1;
        }
        return 0;
    }
    int rc = logagent_probe(b->opts.socket_path);
    if (rc < 0) {
        fprintf(stderr, PROG ": cannot reach the agent at %s: %s\n", b->opts.socket_path, strerror(-rc));
        return rc == -ENAMETOOLONG ? 2 : 1;
    }
    return 0;
}

/* This process's CPU time so far, all threads (the library's I/O thread too), in seconds. */
static double process_cpu_seconds(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) < 0)
        return 0;
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

/* Sums what the socket workers measured of their write loops into m. */
static void gather_write_measures(const bench_worker *ws, int started, measured *m)
{
    int64_t cpu_ns = 0;
    for (int i = 0; i < started; i++) {
        m->writes += ws[i].writes;
        cpu_ns += ws[i].cpu_ns;
    }
    m->write_cpu_s = (double)cpu_ns / 1e9;
    m->lat_rc = bench_lat_summarize(ws, started, &m->lat);
}

/* Starts the workers, waits for them (and the shared client's flush); fills m. */
static void run_workers(bench *b, const cli *c, measured *m)
{
    bench_worker *ws = calloc((size_t)b->workers, sizeof *ws);
    if (!ws) {
        bench_note(b, 0, "out of memory");
        return;
    }
    int socket = c->mode == MODE_SOCKET, started = 0;
    for (int i = 0; i < b->workers; i++) {
        ws[i].b = b;
        ws[i].id = i;
        if (socket && bench_lat_init(&ws[i].lat, b->count / b->workers + 1) < 0) {
            bench_note(b, 0, "out of memory");
            goto out;
        }
    }
    void *(*fn)(void *) = c->mode == MODE_HTTP ? bench_http_worker : bench_socket_worker;
    double t0 = mono_seconds(), cpu0 = process_cpu_seconds();
    for (int i = 0; i < b->workers; i++) {
        int rc = pthread_create(&ws[i].thread, NULL, fn, &ws[i]);
        if (rc != 0) {
            bench_note(b, 0, "cannot start worker %d: %s", i, strerror(rc));
            break;
        }
        started++;
    }
    for (int i = 0; i < started; i++)
        pthread_join(ws[i].thread, NULL);
    if (b->shared) {
        int rc = logagent_flush(b->shared, b->flush_timeout_ms);
        if (rc < 0)
            bench_note(b, 0, "flush: %s", strerror(-rc));
    }
    m->duration = mono_seconds() - t0;
    m->cpu_s = process_cpu_seconds() - cpu0;
    if (socket)
        gather_write_measures(ws, started, m);
out:
    for (int i = 0; i < b->workers; i++)
        bench_lat_free(&ws[i].lat);
    free(ws);
}

/* Builds the run's records (before the clock starts). Returns 0, or 1 after a message. */
static int prepare(bench *b, const cli *c, measured *m)
{
    double t0 = mono_seconds();
    int rc = bench_ring_build(&b->ring, b->count, c->mode == MODE_HTTP);
    m->prepare_s = mono_seconds() - t0;
    if (rc < 0) {
        fprintf(stderr, PROG ": cannot build the records: %s\n", strerror(-rc));
        return 1;
    }
    return 0;
}

/* The end-to-end wait: *delivered and *e2e_s (from t0). Returns 0 when every accepted record was flushed. */
static int wait_delivered(bench *b, const cli *c, const bstats *base, double t0, long *delivered, double *e2e_s)
{
    char err[300];
    long want = atomic_load(&b->ok);
    int rc = bstats_wait(c->stats_socket, base, want, c->stats_timeout_ms, delivered, err, sizeof err);
    *e2e_s = mono_seconds() - t0;
    if (rc == -ETIMEDOUT)
        bench_note(b, 0, "end to end: %ld of %ld accepted records flushed after waiting %d ms", *delivered, want,
                   c->stats_timeout_ms);
    else if (rc == -ENODATA)
        bench_note(b, 0, "end to end: %ld of %ld accepted records flushed; the agent dropped the rest "
                   "(records.dropped in /stats)", *delivered, want);
    else if (rc < 0)
        bench_note(b, 0, "end to end: %s", err);
    return rc;
}

static int run(bench *b, const cli *c)
{
    int rc = probe(b, c);
    if (rc != 0)
        return rc;
    b->http = c->mode == MODE_HTTP ? &c->http : NULL;
    bstats base = { 0, 0 };
    if (c->stats_socket) {
        char err[300];
        if (bstats_read(c->stats_socket, &base, err, sizeof err) < 0) {
            fprintf(stderr, PROG ": cannot read the agent's stats: %s\n", err); /* err names the socket */
            return 1;
        }
    }
    if (c->mode == MODE_SOCKET && !c->per_worker) {
        rc = logagent_client_new(&b->opts, &b->shared);
        if (rc < 0) {
            fprintf(stderr, PROG ": cannot create the client: %s\n", strerror(-rc));
            return 1;
        }
    }
    measured m = { .lat_rc = -ENODATA };
    if (prepare(b, c, &m) != 0)
        return 1;
    double t0 = mono_seconds();
    run_workers(b, c, &m);
    long delivered = 0;
    double e2e_s = 0;
    int e2e_rc = c->stats_socket ? wait_delivered(b, c, &base, t0, &delivered, &e2e_s) : 0;
    print_report(b, c, &m, delivered, e2e_s);
    if (b->shared)
        logagent_client_free(b->shared, 0);
    bench_ring_free(&b->ring);
    return atomic_load(&b->ok) == b->count && b->n_errors == 0 && e2e_rc == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
    static bench b;
    cli c = { .mode = MODE_SOCKET, .stats_timeout_ms = 60000 };
    b.count = 10000;
    b.workers = 50;
    b.flush_timeout_ms = 60000;
    b.opts.block_timeout_ms = -1;
    int rc = parse_args(argc, argv, &b, &c);
    if (rc >= 0)
        return rc;
    if (c.mode == MODE_PYTHON || c.mode == MODE_ORIGINAL)
        return exec_python(&b, &c);
    pthread_mutex_init(&b.err_mu, NULL);
    rc = run(&b, &c);
    pthread_mutex_destroy(&b.err_mu);
    return rc;
}
