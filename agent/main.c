/* main.c — logagentd: reads top to bottom. Settings, logging, the ring, the flusher (gRPC), the ingest socket,
 * the HTTP ingest (--http-listen), the stats socket, signals, systemd; run the loop; then tear down in reverse: stop
 * ingest (both listeners, then the socket's connections, then HTTP requests already sent), drain the flusher, report.
 *
 * Threads: this one (libevent loop: ingest, HTTP ingest, stats, signals), the flusher, and the gRPC completion
 * reaper.
 * Signals: SIGTERM/SIGINT stop (drain), SIGHUP reloads the settings that can change live, SIGUSR1 logs /stats.
 * See docs/architecture.md and docs/operations.md. */
#include "config.h"
#include "common/clock.h"
#include "flush/flusher.h"
#include "ingest/http_ingest.h"
#include "ingest/otlp_grpc.h"
#include "ingest/ingest.h"
#include "log.h"
#include "ring.h"
#include "service.h"
#include "stats.h"
#include "stats_http.h"

#include <event2/event.h>
#include <event2/thread.h>
#include <malloc.h>
#include <signal.h>
#include <sys/resource.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* What the signal handlers need; lives in main's frame. */
typedef struct agent {
    config *cfg;
    int argc;
    char **argv;
    ingest *in;
    http_ingest *hi;
    otlp_grpc *og;
    flusher *fl;
    stats_sources *src;
    struct event_base *base;
} agent;

static void on_stop_signal(evutil_socket_t sig, short what, void *arg)
{
    agent *a = arg;
    log_write(LOG_INFO, "\"%s received: stopping\"", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    service_notify("STOPPING=1\nSTATUS=draining");
    event_base_loopbreak(a->base);
}

/* SIGHUP: re-read flags, environment and the config file; apply what can change live, name what cannot. */
static void on_reload_signal(evutil_socket_t sig, short what, void *arg)
{
    agent *a = arg;
    static config next; /* static: large, and only this (main) thread reloads */
    service_notify("RELOADING=1");
    if (config_load(&next, a->argc, a->argv) != CONFIG_RUN) {
        log_write(LOG_ERROR, "\"reload failed: configuration invalid (see the line above); running settings kept\" "
                             "file=%s", a->cfg->config_file);
        service_notify("READY=1");
        return;
    }
    char live[512], restart[512];
    config_apply_live(a->cfg, &next, live, sizeof live, restart, sizeof restart);
    log_set_level(a->cfg->log_level);
    log_set_format(a->cfg->log_format);
    flusher_reload(a->fl, a->cfg);
    ingest_reload(a->in);
    if (a->hi)
        http_ingest_reload(a->hi);
    otlp_grpc_reload(a->og);
    log_write(LOG_INFO, "\"configuration reloaded\" file=%s applied=%s", a->cfg->config_file, live[0] ? live : "none");
    if (restart[0])
        log_write(LOG_WARN, "\"changed settings need a restart to apply (kept as running)\" settings=%s", restart);
    service_notify("READY=1");
}

/* SIGUSR1: the /stats document, as one log line (logfmt-quoted). */
static void on_dump_signal(evutil_socket_t sig, short what, void *arg)
{
    agent *a = arg;
    char doc[8192], quoted[12288];
    if (stats_json(a->src, doc, sizeof doc) < 0) {
        log_write(LOG_ERROR, "\"stats document too large to log\"");
        return;
    }
    size_t o = 0;
    for (const char *p = doc; *p && *p != '\n' && o + 3 < sizeof quoted; p++) {
        if (*p == '"' || *p == '\\')
            quoted[o++] = '\\';
        quoted[o++] = *p;
    }
    quoted[o] = 0;
    log_write(LOG_INFO, "\"stats\" stats=\"%s\"", quoted);
}

static void exit_now(int sig)
{
    static const char msg[] = "ts=- level=error msg=\"second signal: exiting at once, records still held are lost\"\n";
    ssize_t w = write(STDERR_FILENO, msg, sizeof msg - 1);
    (void)w;
    _exit(1);
}

/* Creates the folder of a socket path when it is missing (one level, mode 0755), like RuntimeDirectory=. */
static void ensure_parent_dir(const char *path)
{
    char dir[sizeof ((config *)0)->socket_path];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash && slash != dir) {
        *slash = 0;
        if (mkdir(dir, 0755) == 0)
            log_write(LOG_INFO, "\"created socket folder\" path=%s", dir);
    }
}

/* The last line: the totals, every drop and reject reason, by the names /stats and /metrics use
 * (dropped_<reason>, rejected_<reason>), the levels kept as sent and the timestamps that did not parse
 * (level_unknown, timestamp_unparsed), read through the same stats_collect. */
static void report_final(const stats_sources *src)
{
    stats_view v;
    stats_collect(src, &v);
    char reasons[1024];
    size_t n = 0;
    for (size_t i = 0; i < STATS_DROP_N && n < sizeof reasons; i++)
        n += (size_t)snprintf(reasons + n, sizeof reasons - n, " dropped_%s=%llu", stats_drop_names[i],
                              (unsigned long long)v.dropped[i]);
    for (size_t i = 0; i < STATS_REJECT_N && n < sizeof reasons; i++)
        n += (size_t)snprintf(reasons + n, sizeof reasons - n, " rejected_%s=%llu", stats_reject_names[i],
                              (unsigned long long)v.rejected[i]);
    uint64_t unsent = v.dropped[STATS_DROP_SHUTDOWN];
    log_write(LOG_INFO, "\"stopped\" received=%llu flushed=%llu unsent=%llu spooled=%llu replayed=%llu "
                        "dead_letter=%llu%s level_unknown=%llu timestamp_unparsed=%llu",
              (unsigned long long)v.received, (unsigned long long)v.f.flushed, (unsigned long long)unsent,
              (unsigned long long)v.f.spooled, (unsigned long long)v.f.replayed, (unsigned long long)v.f.dead_letter,
              reasons, (unsigned long long)v.level_unknown, (unsigned long long)v.timestamp_unparsed);
}

/* Binds (or takes from systemd) the ingest socket. */
static int listen_ingest(ingest *in, const config *cfg, int fd)
{
    if (fd >= 0)
        return ingest_listen_fd(in, fd);
    ensure_parent_dir(cfg->socket_path);
    return ingest_listen(in);
}

/* Raises the open-file limit to the hard limit (each client is one fd). When --max-connections still does not fit,
 * ingest accepts fewer at once and says so (ingest_new). */
static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return;
    if (rl.rlim_cur < rl.rlim_max) {
        rlim_t old = rl.rlim_cur;
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
            rl.rlim_cur = old;
    }
}

int main(int argc, char **argv)
{
    static config cfg;
    static ingest_stats istats;
    switch (config_load(&cfg, argc, argv)) {
    case CONFIG_EXIT_OK: return 0;
    case CONFIG_EXIT_USAGE: return 2;
    case CONFIG_RUN: break;
    }
    if (cfg.check_only) {
        config_print(&cfg, stdout);
        return 0;
    }
    log_set_level(cfg.log_level);
    log_set_format(cfg.log_format);
    log_detect_journal();
    signal(SIGPIPE, SIG_IGN);
    raise_nofile();
    /* Batches are 100 KiB-4 MiB buffers made and freed many times a second: keep them on the heap instead of
     * fresh mmaps, whose first-touch page faults were ~40% of the flusher's CPU (docs/benchmarks.md). What is
     * kept stays inside --buffer-bytes' budget. */
    if (!mallopt(M_MMAP_THRESHOLD, 32 << 20) || !mallopt(M_TRIM_THRESHOLD, 512 << 20))
        log_write(LOG_WARN, "\"mallopt failed: using malloc defaults\"");
    int rc = 1;
    ring *r = NULL;
    ingest *in = NULL;
    http_ingest *hi = NULL;
    otlp_grpc *og = NULL;
    flusher *fl = NULL;
    stats_http *sh = NULL;
    service_watchdog *wd = NULL;
    struct event_base *base = NULL;
    struct event *sigs[4] = {NULL};
    static const int SIGNALS[4] = {SIGTERM, SIGINT, SIGHUP, SIGUSR1};
    service_fds fds;

    if (service_listen_fds(&fds) < 0)
        return 1;
    if (evthread_use_pthreads() < 0 || !(base = event_base_new())) {
        log_write(LOG_ERROR, "\"cannot start libevent\"");
        goto out;
    }
    size_t ring_bytes = 4096; /* half of --buffer-bytes (a power of two at most that); batches get the rest */
    while (ring_bytes * 2 <= cfg.buffer_bytes / 2)
        ring_bytes *= 2;
    if (!(r = ring_new(ring_bytes))) {
        log_write(LOG_ERROR, "\"cannot allocate the ring\" buffer_bytes=%llu", (unsigned long long)cfg.buffer_bytes);
        goto out;
    }
    if (!(in = ingest_new(base, &cfg, r, &istats)) ||
        !(fl = flusher_new(&cfg, r, ingest_space_available, in)))
        goto out;
    ingest_set_flusher(in, fl);
    if (listen_ingest(in, &cfg, fds.ingest) < 0)
        goto out;
    if (cfg.http_listen[0]) {
        if (!(hi = http_ingest_new(base, &cfg, r, &istats))) {
            log_write(LOG_ERROR, "\"cannot start the HTTP ingest: out of memory\"");
            goto out_unlisten;
        }
        http_ingest_set_flusher(hi, fl);
        if (strncmp(cfg.http_listen, "unix:", 5) == 0)
            ensure_parent_dir(cfg.http_listen + 5);
        if (http_ingest_listen(hi) < 0)
            goto out_unlisten;
    }
    if (cfg.otlp_listen[0]) {
        if (!(og = otlp_grpc_new(base, &cfg, r, &istats)))
            goto out_unlisten;
        otlp_grpc_set_flusher(og, fl);
        const char *cur = cfg.otlp_listen;
        char item[sizeof cfg.otlp_listen];
        while (config_list_next(&cur, item, sizeof item) > 0)
            if (strncmp(item, "unix:", 5) == 0)
                ensure_parent_dir(item + 5);
        if (otlp_grpc_listen(og) < 0)
            goto out_unlisten;
    }
    stats_sources src = {&cfg, &istats, r, fl, (double)clock_mono_ms() / 1000.0};
    if (cfg.stats_socket[0] || cfg.metrics_listen[0] || fds.stats >= 0) {
        if (fds.stats < 0 && cfg.stats_socket[0])
            ensure_parent_dir(cfg.stats_socket);
        if (!(sh = stats_http_new(base, cfg.stats_socket, fds.stats, &src)))
            goto out_unlisten;
    }
    if (flusher_start(fl) < 0) {
        log_write(LOG_ERROR, "\"cannot start the flusher thread\"");
        goto out_unlisten;
    }
    agent a = {&cfg, argc, argv, in, hi, og, fl, &src, base};
    event_callback_fn handlers[4] = {on_stop_signal, on_stop_signal, on_reload_signal, on_dump_signal};
    for (int i = 0; i < 4; i++)
        if (!(sigs[i] = evsignal_new(base, SIGNALS[i], handlers[i], &a)) || evsignal_add(sigs[i], NULL) < 0) {
            log_write(LOG_ERROR, "\"cannot install signal handlers\"");
            goto out_stop;
        }
    wd = service_watchdog_start(base, fl);
    log_write(LOG_INFO, "\"logagentd started\" version=%s socket=%s stats_socket=%s upstream=%s rpc=%s compression=%s "
                        "ring_bytes=%zu batch_max_records=%llu flush_interval_ms=%llu max_inflight=%llu config=%s",
              LOGAGENT_VERSION_STRING, cfg.socket_path, cfg.stats_socket, cfg.upstream,
              cfg.upstream_protocol == PROTOCOL_OTLP ? "otlp-export"
              : cfg.upstream_rpc == RPC_AUTO         ? "auto"
              : cfg.upstream_rpc == RPC_BATCH        ? "batch"
                                                     : "unary",
              cfg.upstream_compression == COMPRESSION_GZIP ? "gzip" : "none",
              ring_capacity(r), (unsigned long long)cfg.batch_max_records,
              (unsigned long long)cfg.flush_interval_ms, (unsigned long long)cfg.max_inflight,
              cfg.config_file_found ? cfg.config_file : "none");
    service_notify("READY=1\nSTATUS=accepting records");

    event_base_dispatch(base);
out_stop:
    signal(SIGINT, exit_now); /* a second Ctrl-C while draining exits at once */
    int64_t deadline = clock_mono_ms() + (int64_t)cfg.drain_timeout_ms;
    http_ingest_stop(hi);
    otlp_grpc_stop(og); /* calls not answered yet are told to retry: nothing of them was taken */
    ingest_shutdown(in, deadline);
    http_ingest_drain(hi, deadline); /* requests already on their way; the flusher still runs */
    int64_t left = deadline - clock_mono_ms();
    flusher_stop(fl, left > 0 ? left : 0);
    report_final(&src);
    rc = 0;
    goto out;
out_unlisten:
    http_ingest_stop(hi);
    otlp_grpc_stop(og);
    ingest_shutdown(in, clock_mono_ms());
out:
    service_watchdog_free(wd);
    for (int i = 0; i < 4; i++)
        if (sigs[i])
            event_free(sigs[i]);
    stats_http_free(sh);
    http_ingest_free(hi);
    otlp_grpc_free(og);
    flusher_free(fl);
    ingest_free(in);
    ring_free(r);
    if (base)
        event_base_free(base);
    return rc;
}
