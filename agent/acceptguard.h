/* acceptguard.h — keeps a listener from spinning when accept(2) fails, and the open-file budget of client connections.
 *
 * libevent's evconnlistener, on an accept error other than EAGAIN/EINTR, logs "Error from accept() call" and stays
 * enabled: at the open-file limit (EMFILE/ENFILE) the pending connection stays in the backlog, the socket stays
 * readable, and the loop spins at 100% of a core writing that line. A guard takes the listener's error callback: it
 * disables the listener and re-enables it after a short pause (50 ms, doubling to 1 s while it keeps failing), so the
 * connections wait in the listen backlog as they do at --max-connections. Each failure is counted by reason; a
 * warning is logged once per episode (failures less than 10 s apart are one episode).
 *
 * Every listener has one: the ingest socket, --forward-listen, --http-listen, the stats socket and --metrics-listen.
 *
 * The budget (acceptguard_fd_budget) is how many client connections (ingest, Forward, HTTP) may be open at once so
 * that ACCEPTGUARD_FD_RESERVE descriptors stay free for everything else: the stats endpoints, the gRPC channel's
 * reconnects, spool segments, the agent's own log. Ingest and the HTTP ingest stop accepting at their share of it,
 * so the guard above only acts when something else ran the process (or the system) out of descriptors. */
#ifndef LOGAGENT_ACCEPTGUARD_H
#define LOGAGENT_ACCEPTGUARD_H

#include "counters.h"

#include <event2/event.h>
#include <event2/listener.h>
#include <stdatomic.h>
#include <stdint.h>

/* Why accept(2) failed: enum acceptguard_reason (counters.h, the index of the counters it bumps), named here. */
extern const char *const acceptguard_reason_names[ACCEPT_ERR_N]; /* emfile nomem other */

/* Descriptors kept free for the stats endpoints, the upstream and the spool (the agent itself uses about 20). */
enum { ACCEPTGUARD_FD_RESERVE = 32 };

typedef struct acceptguard acceptguard;

/* Guards l (borrowed; it must outlive the guard). name is for log lines ("ingest", "stats", ...; a literal);
 * errors[ACCEPT_ERR_N] are the counters to bump (main loop thread only writes them). NULL when out of memory. */
acceptguard *acceptguard_new(struct event_base *base, struct evconnlistener *l, const char *name,
                             _Atomic uint64_t *errors);

/* The owner's wish (e.g. off at --max-connections): the listener is enabled only when wanted and not pausing after
 * an error. Use this instead of evconnlistener_enable/disable on a guarded listener. */
void acceptguard_want(acceptguard *g, int on);

/* Disables the listener and frees the guard (the listener itself stays the caller's). NULL is fine. */
void acceptguard_free(acceptguard *g);

/* How many client connections may be open at once: RLIMIT_NOFILE minus ACCEPTGUARD_FD_RESERVE (at least 1), or
 * UINT64_MAX when unlimited. */
uint64_t acceptguard_fd_budget(void);

#endif
