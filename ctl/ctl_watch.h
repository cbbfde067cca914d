/* ctl_watch.h — `logagentctl watch`: /stats every interval, with rates per second from the deltas, like top. */
#ifndef LOGAGENT_CTL_WATCH_H
#define LOGAGENT_CTL_WATCH_H

#include "ctl_common.h"

/* Runs until o->count refreshes were shown (0: forever) or SIGINT/SIGTERM arrives. Returns CTL_OK, or CTL_FAIL
 * when the agent cannot be read at the start, when the last refresh failed, or when stdout fails. */
int ctl_watch_run(const ctl_opts *o);

#endif
