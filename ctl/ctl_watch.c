/* ctl_watch.c — `logagentctl watch` (see ctl_watch.h).
 *
 * One baseline sample, then every interval: fetch /stats, compute each counter's rate over the interval,
 * and show it with the current levels. The interval is measured on the agent's own clock (uptime_seconds),
 * so a slow answer does not distort the rates. A refresh has no rates (shown "-", JSON null) when there is no
 * baseline: after a failed fetch, or when the agent restarted (its uptime or a counter went back).
 *
 * SIGINT and SIGTERM are blocked and read from a signalfd that the wait between refreshes polls, so Ctrl-C
 * ends the program cleanly (exit 0) without a global flag. A fetch in progress finishes first (it has its
 * own --timeout). */
#include "ctl_watch.h"
#include "common/clock.h"

#include <errno.h>
#include <stdlib.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

/* The counters that get a rate. `sum` counters add up every number of an object (all drop reasons). */
typedef struct counter {
    const char *name;  /* key in --json "rates" (per second) */
    const char *label; /* row in the table */
    const char *path;  /* in /stats */
    int sum, bytes;
} counter;

static const counter COUNTERS[] = {
    {"records_received", "received", "records.received", 0, 0},
    {"records_flushed", "flushed", "records.flushed", 0, 0},
    {"bytes_received", "bytes in", "bytes_received", 0, 1},
    {"records_dropped", "dropped", "records.dropped", 1, 0},
    {"records_rejected", "rejected", "records.rejected", 1, 0},
    {"batches_sent", "batches", "batches.sent", 0, 0},
};
#define N_COUNTERS (sizeof COUNTERS / sizeof COUNTERS[0])

typedef struct sample {
    json_t *doc;   /* owned; NULL when there is none */
    double uptime; /* the agent's uptime_seconds, NAN if absent */
    double mono;   /* our CLOCK_MONOTONIC, seconds */
    double value[N_COUNTERS];
} sample;

/* Fetches /stats into s. Returns 0, or -1 after saying why on stderr (s is then empty). */
static int take(const ctl_opts *o, sample *s)
{
    memset(s, 0, sizeof *s);
    if (ctl_fetch_json(o, "/stats", &s->doc) != 0)
        return -1;
    json_t *up = ctl_path(s->doc, "uptime_seconds");
    s->uptime = json_is_number(up) ? json_number_value(up) : NAN;
    s->mono = clock_mono_s();
    for (size_t i = 0; i < N_COUNTERS; i++)
        s->value[i] = COUNTERS[i].sum ? ctl_sum(s->doc, COUNTERS[i].path) : ctl_num(s->doc, COUNTERS[i].path);
    return 0;
}

static void sample_clear(sample *s)
{
    json_decref(s->doc);
    s->doc = NULL;
}

/* Fills rate[] from prev to cur. Returns the interval in seconds, or 0 when there is no usable baseline. */
static double compute_rates(const sample *prev, const sample *cur, double *rate)
{
    if (!prev->doc)
        return 0;
    double dt = isnan(prev->uptime) || isnan(cur->uptime) ? cur->mono - prev->mono : cur->uptime - prev->uptime;
    if (dt <= 0)
        return 0;
    for (size_t i = 0; i < N_COUNTERS; i++) {
        if (cur->value[i] < prev->value[i])
            return 0; /* restarted */
        rate[i] = (cur->value[i] - prev->value[i]) / dt;
    }
    return dt;
}

static void print_counters(FILE *out, const sample *cur, const double *rate, double dt)
{
    fprintf(out, "%-12s %14s %16s\n", "", "per second", "total");
    for (size_t i = 0; i < N_COUNTERS; i++) {
        char r[32], t[32], b[32];
        if (dt <= 0)
            snprintf(r, sizeof r, "-");
        else if (COUNTERS[i].bytes)
            snprintf(r, sizeof r, "%s/s", ctl_bytes(rate[i], b, sizeof b));
        else
            snprintf(r, sizeof r, "%.1f", rate[i]);
        if (COUNTERS[i].bytes)
            ctl_bytes(cur->value[i], t, sizeof t);
        else
            snprintf(t, sizeof t, "%.0f", cur->value[i]);
        fprintf(out, "%-12s %14s %16s\n", COUNTERS[i].label, r, t);
    }
}

static void print_levels(FILE *out, json_t *d)
{
    char a[32], b[32], c[32], e[32], f[32], g[512];
    double held = ctl_num(d, "records.in_ring") + ctl_num(d, "records.batching") + ctl_num(d, "records.in_flight") +
                  ctl_num(d, "records.retry_wait") + ctl_num(d, "records.spooled");
    fprintf(out, "\nheld         %.0f records: in ring %s, batching %s, in flight %s, retry wait %s, spooled %s\n", held,
            ctl_text(d, "records.in_ring", a, sizeof a), ctl_text(d, "records.batching", b, sizeof b),
            ctl_text(d, "records.in_flight", c, sizeof c), ctl_text(d, "records.retry_wait", e, sizeof e),
            ctl_text(d, "records.spooled", f, sizeof f));
    double used = ctl_num(d, "ring.used_bytes"), cap = ctl_num(d, "ring.capacity_bytes");
    fprintf(out, "ring         %.1f%% of %s used; connections %s active\n", cap > 0 ? 100.0 * used / cap : 0.0,
            ctl_bytes(cap, a, sizeof a), ctl_text(d, "connections.active", b, sizeof b));
    fprintf(out, "upstream     %s, %s, %s; flush latency p50 %s p90 %s p99 %s ms\n",
            ctl_text(d, "upstream.state", a, sizeof a), ctl_text(d, "upstream.mode", b, sizeof b),
            ctl_text(d, "upstream.target", g, sizeof g), ctl_text(d, "flush_latency_ms.p50", c, sizeof c),
            ctl_text(d, "flush_latency_ms.p90", e, sizeof e), ctl_text(d, "flush_latency_ms.p99", f, sizeof f));
    fprintf(out, "backpressure %s s in %s pauses\n", ctl_text(d, "backpressure_seconds", a, sizeof a),
            ctl_text(d, "backpressure_pauses", b, sizeof b));
    if (*ctl_text(d, "upstream.last_error", g, sizeof g))
        fprintf(out, "last error   %s\n", g);
}

static void render_text(FILE *out, const ctl_opts *o, const sample *cur, const double *rate, double dt, int tty)
{
    char clock[16], up[32];
    time_t now = time(NULL);
    struct tm tm;
    strftime(clock, sizeof clock, "%H:%M:%S", localtime_r(&now, &tm));
    if (tty)
        fputs("\033[H\033[2J", out);
    fprintf(out, "%s  logagentd at %s, up %s, every %gs%s\n", clock, o->endpoint.text,
            ctl_duration(cur->uptime, up, sizeof up), o->interval_s, tty ? " (Ctrl-C quits)" : "");
    print_counters(out, cur, rate, dt);
    print_levels(out, cur->doc);
    if (!tty)
        fputc('\n', out);
}

/* One line of JSON: {"time":…, "interval_seconds":…, "rates":{…}|null, "stats":{…}}. Returns 0 or -1. */
static int render_json(FILE *out, const sample *cur, const double *rate, double dt)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    json_t *rates = dt > 0 ? json_object() : json_null();
    for (size_t i = 0; dt > 0 && i < N_COUNTERS; i++)
        json_object_set_new(rates, COUNTERS[i].name, json_real(rate[i]));
    json_t *obj = json_pack("{s:f, s:o, s:o, s:O}", "time", (double)ts.tv_sec + (double)ts.tv_nsec / 1e9,
                            "interval_seconds", dt > 0 ? json_real(dt) : json_null(), "rates", rates, "stats",
                            cur->doc);
    char *text = obj ? json_dumps(obj, JSON_COMPACT | JSON_REAL_PRECISION(12)) : NULL;
    json_decref(obj);
    if (!text) {
        fprintf(stderr, CTL_PROG ": out of memory\n");
        return -1;
    }
    fprintf(out, "%s\n", text);
    free(text);
    return 0;
}

/* Blocks SIGINT and SIGTERM and returns a signalfd that reports them, or -1 (errno set). */
static int open_signalfd(sigset_t *old)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    if (sigprocmask(SIG_BLOCK, &set, old) < 0)
        return -1;
    return signalfd(-1, &set, SFD_CLOEXEC);
}

/* Waits until monotonic time `when`. Returns 0 then; 1 if SIGINT/SIGTERM came first and was taken off the
 * pending set (so unblocking it later does not deliver it again); -1 if it came but could not be taken off. */
static int wait_until(int sfd, double when)
{
    for (;;) {
        double left = when - clock_mono_s();
        if (left <= 0)
            return 0;
        struct pollfd p = {.fd = sfd, .events = POLLIN};
        int n = poll(&p, 1, (int)ceil(left * 1000));
        if (n > 0) {
            struct signalfd_siginfo si;
            return read(sfd, &si, sizeof si) == (ssize_t)sizeof si ? 1 : -1;
        }
        if (n < 0 && errno != EINTR)
            return 0; /* cannot wait on signals: keep the cadence, Ctrl-C still kills us */
    }
}

/* Takes a sample and shows it against prev, which it then replaces. Returns CTL_OK; CTL_FAIL when the agent
 * could not be read (said on stderr; watching goes on); -1 when stdout fails (watching stops). */
static int refresh(const ctl_opts *o, sample *prev, int tty)
{
    sample cur;
    if (take(o, &cur) != 0) {
        sample_clear(prev); /* the next good sample becomes the baseline */
        return CTL_FAIL;
    }
    double rate[N_COUNTERS] = {0};
    double dt = compute_rates(prev, &cur, rate);
    int rc = 0;
    if (o->json)
        rc = render_json(stdout, &cur, rate, dt);
    else
        render_text(stdout, o, &cur, rate, dt, tty);
    sample_clear(prev);
    *prev = cur;
    if (rc < 0 || fflush(stdout) != 0) {
        fprintf(stderr, CTL_PROG ": cannot write to stdout: %s\n", rc < 0 ? "out of memory" : strerror(errno));
        return -1;
    }
    return CTL_OK;
}

int ctl_watch_run(const ctl_opts *o)
{
    sigset_t old;
    int sfd = open_signalfd(&old);
    if (sfd < 0) {
        fprintf(stderr, CTL_PROG ": cannot set up signal handling: %s\n", strerror(errno));
        return CTL_FAIL;
    }
    sample prev;
    int status = take(o, &prev) == 0 ? CTL_OK : -1; /* cannot read the agent at all: say so at once */
    int tty = !o->json && isatty(STDOUT_FILENO), sig = 0;
    double next = clock_mono_s();
    for (long n = 0; status != -1 && (o->count == 0 || n < o->count); n++) {
        next += o->interval_s;
        if (next < clock_mono_s())
            next = clock_mono_s(); /* fell behind (slow answers): do not burst to catch up */
        if ((sig = wait_until(sfd, next)) != 0) {
            status = CTL_OK; /* Ctrl-C is how one leaves watch: not a failure */
            break;
        }
        status = refresh(o, &prev, tty);
    }
    sample_clear(&prev);
    close(sfd);
    if (sig >= 0) /* a signal still pending would be delivered now: then leave it blocked, we are exiting */
        sigprocmask(SIG_SETMASK, &old, NULL);
    return status == CTL_OK ? CTL_OK : CTL_FAIL;
}
