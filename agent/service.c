/* service.c — socket activation, sd_notify and the watchdog (see service.h). libsystemd does the protocol work;
 * this file decides what the agent tells systemd and when. */
#include "service.h"
#include "common/clock.h"

#include "log.h"

#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>
#include <time.h>
#include <unistd.h>

int service_listen_fds(service_fds *out)
{
    out->ingest = out->stats = -1;
    char **names = NULL;
    int n = sd_listen_fds_with_names(1, &names); /* 1: children (none) must not see LISTEN_FDS */
    if (n < 0) {
        log_write(LOG_ERROR, "\"socket activation: cannot read LISTEN_FDS\" error=\"%s\"", strerror(-n));
        return n;
    }
    for (int i = 0; i < n; i++) {
        int fd = SD_LISTEN_FDS_START + i;
        const char *name = names && names[i] ? names[i] : "unknown";
        if (!strcmp(name, "ingest") || (n == 1 && !strcmp(name, "unknown")))
            out->ingest = fd;
        else if (!strcmp(name, "stats"))
            out->stats = fd;
        else {
            log_write(LOG_WARN, "\"socket activation: socket with an unknown name closed\" name=%s fd=%d", name, fd);
            close(fd);
        }
        free(names ? names[i] : NULL);
    }
    free(names);
    if (n > 0)
        log_write(LOG_INFO, "\"socket activation\" sockets=%d ingest_fd=%d stats_fd=%d", n, out->ingest, out->stats);
    return 0;
}

void service_notify(const char *state)
{
    if (getenv("NOTIFY_SOCKET"))
        sd_notify(0, state);
}

struct service_watchdog {
    struct event *tick;
    flusher *f;
    int64_t period_ms; /* WatchdogSec= */
    int stalled;       /* logged once per stall */
};

/* Runs on the main loop, so a blocked loop stops the pings too; the flusher is checked through its heartbeat. */
static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    service_watchdog *w = arg;
    int64_t age = clock_mono_ms() - flusher_heartbeat_ms(w->f);
    if (age > w->period_ms / 2 && age > 2000) { /* the flusher wakes at least once a second */
        if (!w->stalled++)
            log_write(LOG_ERROR, "\"flusher thread stalled: not feeding the watchdog\" stalled_ms=%lld",
                      (long long)age);
        return;
    }
    if (w->stalled)
        log_write(LOG_WARN, "\"flusher thread moving again: feeding the watchdog\"");
    w->stalled = 0;
    sd_notify(0, "WATCHDOG=1");
}

service_watchdog *service_watchdog_start(struct event_base *base, flusher *f)
{
    uint64_t usec = 0;
    if (sd_watchdog_enabled(0, &usec) <= 0 || usec == 0)
        return NULL;
    service_watchdog *w = calloc(1, sizeof *w);
    if (!w)
        return NULL;
    w->f = f;
    w->period_ms = (int64_t)(usec / 1000);
    struct timeval half = {(time_t)(usec / 2 / 1000000), (suseconds_t)(usec / 2 % 1000000)};
    if (!(w->tick = event_new(base, -1, EV_PERSIST, on_tick, w)) || event_add(w->tick, &half) < 0) {
        service_watchdog_free(w);
        log_write(LOG_ERROR, "\"cannot start the watchdog timer\"");
        return NULL;
    }
    sd_notify(0, "WATCHDOG=1");
    log_write(LOG_INFO, "\"systemd watchdog\" period_ms=%lld", (long long)w->period_ms);
    return w;
}

void service_watchdog_free(service_watchdog *w)
{
    if (!w)
        return;
    if (w->tick)
        event_free(w->tick);
    free(w);
}
