/* peer.c — see peer.h. */
#include "peer.h"

#include <fcntl.h>
#include <stdio.h>
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

int peer_allowed(const config *cfg, int fd, const record_source *src)
{
    if (!cfg->n_allow_uid && !cfg->n_allow_gid)
        return 1;
    for (unsigned i = 0; i < cfg->n_allow_uid; i++)
        if (cfg->allow_uid[i] == src->uid)
            return 1;
    gid_t groups[PEER_GROUPS];
    socklen_t len = sizeof groups;
    size_t n = 0;
    if (cfg->n_allow_gid && getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) == 0)
        n = len / sizeof groups[0];
    for (unsigned i = 0; i < cfg->n_allow_gid; i++) {
        if (cfg->allow_gid[i] == src->gid)
            return 1;
        for (size_t j = 0; j < n; j++)
            if (cfg->allow_gid[i] == (uint32_t)groups[j])
                return 1;
    }
    return 0;
}
