/* peer.h — who is on the other end of a Unix socket, in the kernel's words, and whether they may send.
 *
 * Shared by the ingest socket and the HTTP ingest's unix: listener: SO_PEERCRED (pid, uid, gid, taken by the kernel
 * at connect), /proc/PID/comm, and the --allow-uids / --allow-gids rule (SO_PEERGROUPS for supplementary groups). */
#ifndef LOGAGENT_PEER_H
#define LOGAGENT_PEER_H

#include "config.h"
#include "record.h"

/* Fills src from fd's peer credentials (zeroed first; hostname borrowed). Fields stay 0/"" when unknown. */
void peer_identity(int fd, const char *hostname, record_source *src);

/* 1 when --allow-uids/--allow-gids admit this peer (or neither is set): its uid is listed, or its primary or a
 * supplementary group is (any number of groups). A peer whose credentials cannot be read is refused. */
int peer_allowed(const config *cfg, int fd, const record_source *src);

#endif
