/* service.h — the agent's dealings with its supervisor (systemd), all optional: without systemd every call here
 * is a cheap no-op and the agent binds its own sockets.
 *
 *   - socket activation: sockets passed in LISTEN_FDS, told apart by FileDescriptorName= (`ingest`, `stats`);
 *   - readiness and state: sd_notify READY=1 / RELOADING=1 / STOPPING=1 / STATUS=;
 *   - the watchdog: WATCHDOG=1 at half of WatchdogSec=, only while the flusher thread goes round its loop, so a
 *     wedged flusher gets the agent restarted. */
#ifndef LOGAGENT_SERVICE_H
#define LOGAGENT_SERVICE_H

#include "flush/flusher.h"

#include <event2/event.h>

typedef struct service_fds {
    int ingest; /* -1 when systemd passed none */
    int stats;
} service_fds;

/* Takes the sockets systemd passed for this process. A lone unnamed socket is the ingest socket; sockets with
 * other names are logged and closed. Returns 0, or -errno when LISTEN_FDS cannot be read (logged). */
int service_listen_fds(service_fds *out);

/* sd_notify(0, state) when NOTIFY_SOCKET is set. */
void service_notify(const char *state);

typedef struct service_watchdog service_watchdog;

/* Starts feeding the watchdog when systemd asked for one (WATCHDOG_USEC); NULL otherwise or on failure. */
service_watchdog *service_watchdog_start(struct event_base *base, flusher *f);
void service_watchdog_free(service_watchdog *w);

#endif
