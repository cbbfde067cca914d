/* ctl_deadletter.h — `logagentctl deadletter`: the records the log service refused, read from a spool folder's
 * deadletter.log.1 and deadletter.log (oldest first), printed as JSON lines or replayed to the ingest socket.
 * Works on the files alone: the agent need not run (it must, to take a replay). */
#ifndef LOGAGENT_CTL_DEADLETTER_H
#define LOGAGENT_CTL_DEADLETTER_H

#include "ctl_common.h"

/* Prints (or with o->replay, sends) every record of the dead-letter files. Returns CTL_OK, or CTL_FAIL after
 * saying why on stderr (no such folder, unreadable file, the ingest socket refused). Frames that fail their CRC
 * and torn tails are reported on stderr and skipped, never fatal. */
int ctl_deadletter_run(const ctl_opts *o);

#endif
