/* sockpath.c — see sockpath.h. */
#include "sockpath.h"

#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

/* Step "folder". Returns 0, -EPERM (world-writable without the sticky bit), or -errno from stat(2). */
static int check_dir(const char *path)
{
    char copy[PATH_MAX];
    snprintf(copy, sizeof copy, "%s", path);
    struct stat st;
    if (stat(dirname(copy), &st) < 0)
        return -errno;
    if ((st.st_mode & S_IWOTH) && !(st.st_mode & S_ISVTX))
        return -EPERM;
    return 0;
}

/* Step "path". Returns 0 when path is free for bind (a stale socket was removed: *removed set to 1),
 * -EADDRINUSE when a live process answers on it, -EEXIST when it is not a socket, or another -errno. */
static int prepare(const char *path, int *removed)
{
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

/* Steps "bind", "chown", "listen". Returns the fd or -errno with *step set. */
static int bind_listen(const char *path, unsigned mode, long gid, int backlog, const char **step)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    *step = "bind";
    if (strlen(path) >= sizeof sun.sun_path)
        return -ENAMETOOLONG;
    memcpy(sun.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    /* the mode is the socket's from birth (no chmod), the group is set without following a symlink that might
     * have replaced the file meanwhile, and nobody can connect before listen(2) */
    mode_t old = umask(~(mode_t)mode & 0777);
    int rc = bind(fd, (struct sockaddr *)&sun, sizeof sun) < 0 ? -errno : 0;
    umask(old);
    if (rc == 0 && gid >= 0 && fchownat(AT_FDCWD, path, (uid_t)-1, (gid_t)gid, AT_SYMLINK_NOFOLLOW) < 0)
        rc = -errno, *step = "chown";
    if (rc == 0 && listen(fd, backlog) < 0)
        rc = -errno, *step = "listen";
    if (rc < 0) {
        if (strcmp(*step, "bind") != 0)
            unlink(path);
        close(fd);
        return rc;
    }
    return fd;
}

int sockpath_open(const char *path, unsigned mode, long gid, int backlog, int *removed, const char **step)
{
    *removed = 0;
    *step = "folder";
    int rc = check_dir(path);
    if (rc == 0) {
        *step = "path";
        rc = prepare(path, removed);
    }
    return rc < 0 ? rc : bind_listen(path, mode, gid, backlog, step);
}

const char *sockpath_refusal(int err, const char *step)
{
    int folder = strcmp(step, "folder") == 0, at_path = strcmp(step, "path") == 0;
    if (!folder && !at_path)
        return NULL;
    if (folder && err == -EPERM)
        return "its folder is world-writable without the sticky bit: anyone could replace it";
    if (at_path && err == -EADDRINUSE)
        return "a live process listens on it (another agent?)";
    if (at_path && err == -EEXIST)
        return "exists and is not a socket";
    return strerror(-err);
}

void sockpath_log_failure(const char *path, int err, const char *step, const char *path_name,
                          const char *listen_name)
{
    const char *why = sockpath_refusal(err, step);
    if (why)
        log_write(LOG_ERROR, "\"cannot use %s\" socket=%s error=\"%s\"", path_name, path, why);
    else
        log_write(LOG_ERROR, "\"cannot listen on %s\" socket=%s step=%s error=\"%s\"", listen_name, path, step,
                  strerror(-err));
}
