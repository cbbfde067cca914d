/* cgroup.h — --trusted-fields: a peer's cgroup and container id, read from /proc/PID/cgroup at accept.
 *
 * The kernel's word, like SO_PEERCRED: a client cannot choose what these say. In a pod, a sidecar agent sees its
 * peers' /proc only with shareProcessNamespace (without it SO_PEERCRED's pid is 0 and these stay empty). */
#ifndef LOGAGENT_CGROUP_H
#define LOGAGENT_CGROUP_H

#include <stddef.h>
#include <sys/types.h>

enum { CGROUP_PATH_MAX = 256, CGROUP_ID_LEN = 64 };

/* The cgroup path worth reporting from the text of a /proc/PID/cgroup file: the unified (v2, "0::") path unless
 * it is "/", else systemd's v1 hierarchy, else the first path that is not "/", else "/". Writes it NUL-terminated
 * into path (cut to cap - 1) and the container id — the last run of exactly 64 hex digits in any of the file's
 * paths (docker-<id>.scope, cri-containerd-<id>.scope, crio-<id>.scope, libpod-<id>.scope, /docker/<id>,
 * /kubepods/.../<id>) — into id (CGROUP_ID_LEN + 1 bytes; "" when none). */
void cgroup_parse(const char *text, size_t len, char *path, size_t cap, char *id);

/* Reads /proc/pid/cgroup and parses it. Returns 0, or -errno (path and id are then ""). */
int cgroup_read(pid_t pid, char *path, size_t cap, char *id);

#endif
