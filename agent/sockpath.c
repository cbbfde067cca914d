/* sockpath.c — see sockpath.h. */
#include "sockpath.h"

#include <errno.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

int sockpath_prepare(const char *path, int *removed)
{
    *removed = 0;
    struct stat st;
    if (lstat(path, &st) < 0)
        return errno == ENOENT ? 0 : -errno;
    if (!S_ISSOCK(st.st_mode))
        return -EEXIST;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    snprintf(sun.sun_path, sizeof sun.sun_path, "%s", path);
    int rc = connect(fd, (struct sockaddr *)&sun, sizeof sun);
    int err = errno;
    close(fd);
    if (rc == 0 || err == EAGAIN) /* EAGAIN: a live listener with a full backlog */
        return -EADDRINUSE;
    if (unlink(path) < 0 && errno != ENOENT)
        return -errno;
    *removed = 1;
    return 0;
}
