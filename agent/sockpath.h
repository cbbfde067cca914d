/* sockpath.h — making a Unix socket path ready for bind(2), for the ingest and the stats sockets alike.
 *
 * A path may hold nothing (fine), a stale socket left by a crashed agent (removed), a socket a live process
 * answers on (refused: never steal another agent's socket), or something that is not a socket (refused: never
 * delete an operator's file). */
#ifndef LOGAGENT_SOCKPATH_H
#define LOGAGENT_SOCKPATH_H

/* Returns 0 when path is free for bind (a stale socket was removed: *removed set to 1), -EADDRINUSE when a live
 * process answers on it, -EEXIST when it is not a socket, or another -errno. */
int sockpath_prepare(const char *path, int *removed);

#endif
