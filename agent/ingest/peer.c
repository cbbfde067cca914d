/* peer.c — see peer.h. */
#include "ingest/peer.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

enum { PEER_GROUPS = 256 };

void peer_identity(int fd, const char *hostname, record_source *src)
{
    struct ucred uc;
    socklen_t len = sizeof uc;
    memset(src, 0, sizeof *src);
    src->hostname = hostname;
    if (fd < 0 || getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &uc, &len) < 0)
        return;
    src->pid = uc.pid;
    src->uid = uc.uid;
    src->gid = uc.gid;
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/comm", (int)uc.pid);
    int cfd = open(path, O_RDONLY | O_CLOEXEC);
    if (cfd < 0)
        return;
    ssize_t n = read(cfd, src->comm, sizeof src->comm - 1);
    close(cfd);
    if (n > 0 && src->comm[n - 1] == '\n')
        n--;
    src->comm[n > 0 ? n : 0] = 0;
}

/* fd's peer's supplementary groups into a malloc'd array (*n of them); NULL when none or unknown. */
static gid_t *peer_groups(int fd, size_t *n)
{
    socklen_t len = PEER_GROUPS * sizeof(gid_t);
    gid_t *g = malloc(len);
    *n = 0;
    if (g && getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, g, &len) < 0) {
        free(g);
        g = NULL;
        if (errno == ERANGE && (g = malloc(len)) && getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, g, &len) < 0) {
            free(g); /* more than PEER_GROUPS groups: the kernel said how many; a second failure refuses */
            g = NULL;
        }
    }
    if (g)
        *n = len / sizeof(gid_t);
    return g;
}

int peer_allowed(const config *cfg, int fd, const record_source *src)
{
    (void)src; /* the kernel is asked again: a failed SO_PEERCRED left src zeroed, which would read as root */
    if (!cfg->n_allow_uid && !cfg->n_allow_gid)
        return 1;
    struct ucred uc;
    socklen_t len = sizeof uc;
    if (fd < 0 || getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &uc, &len) < 0)
        return 0; /* unknown peer: refused */
    for (unsigned i = 0; i < cfg->n_allow_uid; i++)
        if (cfg->allow_uid[i] == uc.uid)
            return 1;
    size_t n = 0;
    gid_t *groups = cfg->n_allow_gid ? peer_groups(fd, &n) : NULL;
    int ok = 0;
    for (unsigned i = 0; i < cfg->n_allow_gid && !ok; i++) {
        ok = cfg->allow_gid[i] == uc.gid;
        for (size_t j = 0; j < n && !ok; j++)
            ok = cfg->allow_gid[i] == (uint32_t)groups[j];
    }
    free(groups);
    return ok;
}
