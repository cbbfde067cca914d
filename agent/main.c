/* main.c — logagentd: reads top to bottom. Settings, logging, the ring, the flusher (gRPC), the ingest socket,
 * the stats socket, signals; run the loop; then tear down in reverse: stop ingest, drain the flusher, report.
 *
 * Threads: this one (libevent loop: ingest and stats), the flusher, and the gRPC completion reaper.
 * See docs/architecture.md. */
#include "config.h"
#include "flusher.h"
#include "ingest.h"
#include "log.h"
#include "ring.h"
#include "stats.h"
#include "stats_http.h"

#include <event2/event.h>
#include <event2/thread.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static void on_stop_signal(evutil_socket_t sig, short what, void *arg)
{
    log_write(LOG_INFO, "\"%s received: stopping\"", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    event_base_loopbreak(arg);
}

static void exit_now(int sig)
{
    static const char msg[] = "ts=- level=error msg=\"second signal: exiting at once, records still held are lost\"\n";
    ssize_t w = write(STDERR_FILENO, msg, sizeof msg - 1);
    (void)w;
    _exit(1);
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
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

static void report_final(const stats_sources *src)
{
    flusher_snapshot f;
    flusher_snapshot_get(src->flusher, &f);
    uint64_t in_drop = stat_get(&src->ingest->dropped_shutdown);
    uint64_t in_full = stat_get(&src->ingest->dropped_full);
    uint64_t received = stat_get(&src->ingest->received) + in_drop + in_full;
    uint64_t unsent = f.dropped_shutdown + in_drop;
    log_write(LOG_INFO,
              "\"stopped\" received=%llu flushed=%llu unsent=%llu dropped_upstream_rejected=%llu "
              "dropped_retry_expired=%llu dropped_buffer_full=%llu dropped_shutdown=%llu spooled=%llu replayed=%llu "
              "dead_letter=%llu rejected_malformed=%llu rejected_invalid=%llu rejected_oversized=%llu "
              "rejected_truncated=%llu",
              (unsigned long long)received, (unsigned long long)f.flushed, (unsigned long long)unsent,
              (unsigned long long)f.dropped_upstream, (unsigned long long)f.dropped_retry_expired,
              (unsigned long long)(f.dropped_buffer_full + in_full), (unsigned long long)unsent,
              (unsigned long long)f.spooled, (unsigned long long)f.replayed, (unsigned long long)f.dead_letter,
              (unsigned long long)stat_get(&src->ingest->malformed),
              (unsigned long long)stat_get(&src->ingest->invalid_record),
              (unsigned long long)stat_get(&src->ingest->oversized),
              (unsigned long long)stat_get(&src->ingest->truncated));
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
    log_set_level(cfg.log_level);
    signal(SIGPIPE, SIG_IGN);
    /* Batches are 100 KiB-4 MiB buffers made and freed many times a second: keep them on the heap instead of
     * fresh mmaps, whose first-touch page faults were ~40% of the flusher's CPU (docs/benchmarks.md). What is
     * kept stays inside --buffer-bytes' budget. */
    if (!mallopt(M_MMAP_THRESHOLD, 32 << 20) || !mallopt(M_TRIM_THRESHOLD, 512 << 20))
        log_write(LOG_WARN, "\"mallopt failed: using malloc defaults\"");
    int rc = 1;
    ring *r = NULL;
    ingest *in = NULL;
    flusher *fl = NULL;
    stats_http *sh = NULL;
    struct event_base *base = NULL;
    struct event *sigterm = NULL, *sigint = NULL;

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
    ensure_parent_dir(cfg.socket_path);
    if (ingest_listen(in) < 0)
        goto out;
    stats_sources src = {&cfg, &istats, r, fl, (double)mono_ms() / 1000.0};
    if (cfg.stats_socket[0] || cfg.metrics_listen[0]) {
        ensure_parent_dir(cfg.stats_socket);
        if (!(sh = stats_http_new(base, cfg.stats_socket, -1, &src)))
            goto out_unlisten;
    }
    if (flusher_start(fl) < 0) {
        log_write(LOG_ERROR, "\"cannot start the flusher thread\"");
        goto out_unlisten;
    }
    sigterm = evsignal_new(base, SIGTERM, on_stop_signal, base);
    sigint = evsignal_new(base, SIGINT, on_stop_signal, base);
    evsignal_add(sigterm, NULL);
    evsignal_add(sigint, NULL);
    log_write(LOG_INFO, "\"logagentd started\" version=%s socket=%s stats_socket=%s upstream=%s rpc=%s "
                        "ring_bytes=%zu batch_max_records=%llu flush_interval_ms=%llu max_inflight=%llu",
              LOGAGENT_VERSION_STRING, cfg.socket_path, cfg.stats_socket, cfg.upstream,
              cfg.upstream_rpc == RPC_AUTO ? "auto" : cfg.upstream_rpc == RPC_BATCH ? "batch" : "unary",
              ring_capacity(r), (unsigned long long)cfg.batch_max_records,
              (unsigned long long)cfg.flush_interval_ms, (unsigned long long)cfg.max_inflight);

    event_base_dispatch(base);

    signal(SIGINT, exit_now); /* a second Ctrl-C while draining exits at once */
    int64_t deadline = mono_ms() + (int64_t)cfg.drain_timeout_ms;
    ingest_shutdown(in, deadline);
    int64_t left = deadline - mono_ms();
    flusher_stop(fl, left > 0 ? left : 0);
    report_final(&src);
    rc = 0;
    goto out;
out_unlisten:
    ingest_shutdown(in, mono_ms());
out:
    if (sigterm)
        event_free(sigterm);
    if (sigint)
        event_free(sigint);
    stats_http_free(sh);
    flusher_free(fl);
    ingest_free(in);
    ring_free(r);
    if (base)
        event_base_free(base);
    return rc;
}
