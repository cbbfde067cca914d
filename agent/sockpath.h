/* sockpath.h — listening on a Unix socket path: the ingest socket, the stats socket and --http-listen's unix:PATH
 * all open theirs here (one copy of the checks, the stale-socket handling and the rights), each with its own log
 * lines (their texts are pinned by tests and docs/operations.md, so the callers write them).
 *
 * A path may hold nothing (fine), a stale socket left by a crashed agent (removed), a socket a live process
 * answers on (refused: never steal another agent's socket), or something that is not a socket (refused: never
 * delete an operator's file). A folder anyone may write to without the sticky bit is refused too. */
#ifndef LOGAGENT_SOCKPATH_H
#define LOGAGENT_SOCKPATH_H

/* Opens a listening Unix stream socket at path:
 *   1. refuses a path whose folder anyone may write to without the sticky bit (/tmp has the bit; a folder made
 *      0777 by mistake does not): there any user could unlink the agent's socket and put their own in its place;
 *   2. makes the path free for bind(2): a stale socket is removed (*removed set to 1, also when a later step
 *      fails), a live one or a file that is not a socket is refused;
 *   3. binds with its mode already final (the umask is set for it: no chmod ever), gives it gid (-1: keep the
 *      agent's) without following symlinks, and only then listen(2)s: never reachable with looser rights than
 *      asked, and nobody can connect before its group is final (a socket that does not listen refuses every
 *      connect). A file already bound is removed again when chown or listen fails.
 * Returns the non-blocking, close-on-exec fd, or -errno with *step naming what failed:
 *   "folder"  -EPERM (world-writable without the sticky bit), or -errno from stat(2) of the folder;
 *   "path"    -EADDRINUSE (a live process answers on it), -EEXIST (not a socket), or another -errno;
 *   "bind", "chown", "listen"  -errno of that call (-ENAMETOOLONG at "bind" for a path too long for sun_path). */
int sockpath_open(const char *path, unsigned mode, long gid, int backlog, int *removed, const char **step);

/* Words for a refusal, for a log line's error="...": at step "folder" or "path", "its folder is world-writable
 * without the sticky bit: anyone could replace it", "a live process listens on it (another agent?)", "exists and
 * is not a socket", or strerror's text; NULL at a later step (the path was fine: bind, chown or listen failed). */
const char *sockpath_refusal(int err, const char *step);

/* Logs (error) why sockpath_open refused `path` (`"cannot use <path_name>" error="<sockpath_refusal's words>"`) or
 * failed at a later step (`"cannot listen on <listen_name>" step=... error="<strerror>"`). The ingest socket has
 * texts of its own (ingest.c). */
void sockpath_log_failure(const char *path, int err, const char *step, const char *path_name,
                          const char *listen_name);

#endif
