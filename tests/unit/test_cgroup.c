/* test_cgroup.c — --trusted-fields: which cgroup path is reported (unified first, then systemd's, then any) and the
 * container id found in the paths of docker, containerd, CRI-O, podman and the kubepods cgroupfs layout. */
#include "ingest/cgroup.h"
#include "check.h"

static void parse(const char *text, char *path, char *id)
{
    cgroup_parse(text, strlen(text), path, CGROUP_PATH_MAX, id);
}

int main(void)
{
    char path[CGROUP_PATH_MAX], id[CGROUP_ID_LEN + 1];
    const char *hex = "3f1c2b0a9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b";

    parse("0::/system.slice/docker-3f1c2b0a9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b.scope\n", path, id);
    CHECK_STR(path, "/system.slice/docker-3f1c2b0a9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b.scope");
    CHECK_STR(id, hex);
    parse("0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1a2b.slice/"
          "cri-containerd-3f1c2b0a9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b.scope\n", path, id);
    CHECK_STR(id, hex);
    parse("0::/machine.slice/libpod-3f1c2b0a9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b.scope/container\n",
          path, id);
    CHECK_STR(id, hex);
    /* cgroup v1 with cgroupfs: kubepods/<qos>/pod<uid>/<id>; systemd's hierarchy wins over the others */
    parse("12:memory:/kubepods/besteffort/pod0c9c/3f1c2b0a9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b\n"
          "1:name=systemd:/kubepods/besteffort/pod0c9c/3f1c2b0a9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b\n"
          "0::/\n", path, id);
    CHECK_STR(path, "/kubepods/besteffort/pod0c9c/3f1c2b0a9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b");
    CHECK_STR(id, hex);
    /* a host process: no container; hybrid systems report the unified path, else systemd's */
    parse("0::/user.slice/user-1000.slice/session-2.scope\n", path, id);
    CHECK_STR(path, "/user.slice/user-1000.slice/session-2.scope");
    CHECK_STR(id, "");
    parse("4:memory:/process_api/b2dd4d3d8bfd5cc8c70f9e30d01437cd\n1:name=systemd:/\n0::/\n", path, id);
    CHECK_STR(path, "/process_api/b2dd4d3d8bfd5cc8c70f9e30d01437cd"); /* the only one that is not "/" */
    CHECK_STR(id, "");                                                /* 32 hex digits are not a container id */
    parse("0::/\n", path, id);
    CHECK_STR(path, "/");
    /* 65 hex digits are not an id either; garbage lines are skipped; a path longer than the buffer is cut */
    parse("0::/docker/03f1c2b0a9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b\nno colons here\n::\n", path,
          id);
    CHECK_STR(id, "");
    char text[600] = "0::/";
    memset(text + 4, 'a', 500);
    text[504] = '\0';
    parse(text, path, id);
    CHECK(strlen(path) == CGROUP_PATH_MAX - 1);
    CHECK(cgroup_read(-1, path, sizeof path, id) < 0 && path[0] == '\0');
    return check_failed_count != 0;
}
