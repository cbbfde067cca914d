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

/* Refuses a socket path whose folder anyone may write to without the sticky bit (/tmp has the bit; a folder made
 * 0777 by mistake does not): there any user could unlink the agent's socket and put their own in its place.
 * Returns 0, -EPERM in that case, or -errno from stat(2) of the folder. */
int sockpath_check_dir(const char *path);

/* Creates a listening Unix stream socket at path (call sockpath_prepare first). It is bound with its mode already
 * final (the umask is set for it: no chmod ever), given gid (-1: keep the agent's) without following symlinks, and
 * only then listen(2)s: never reachable with looser rights than asked, and nobody can connect before its group is
 * final (a socket that does not listen refuses every connect). Returns the non-blocking, close-on-exec fd, or
 * -errno with *step naming the call that failed ("bind", "chown", "listen"); a file already bound is removed
 * again on failure. */
int sockpath_listen(const char *path, unsigned mode, long gid, int backlog, const char **step);

#endif
