/* test_cpus.c — --ingest-threads' default from fake inputs: cpu.max texts, /proc/self/cgroup texts, and the
 * affinity/quota/cap combination. */
#include "check.h"
#include "ingest/cpus.h"

#include <errno.h>

int main(void)
{
    CHECK_INT(cpus_from_cpu_max("max 100000\n"), 0);
    CHECK_INT(cpus_from_cpu_max("50000 100000\n"), 1); /* half a core: rounded up */
    CHECK_INT(cpus_from_cpu_max("100000 100000\n"), 1);
    CHECK_INT(cpus_from_cpu_max("100001 100000\n"), 2);
    CHECK_INT(cpus_from_cpu_max("150000 100000"), 2);
    CHECK_INT(cpus_from_cpu_max("800000 100000\n"), 8);
    CHECK_INT(cpus_from_cpu_max(""), 0);
    CHECK_INT(cpus_from_cpu_max("garbage"), 0);
    CHECK_INT(cpus_from_cpu_max("5000 0"), 0);
    CHECK_INT(cpus_from_cpu_max(NULL), 0);

    char path[64];
    CHECK_INT(cpus_cgroup_path("0::/kubepods/pod1/abc\n", path, sizeof path), 0);
    CHECK_STR(path, "/kubepods/pod1/abc");
    CHECK_INT(cpus_cgroup_path("12:cpu,cpuacct:/x\n0::/\n", path, sizeof path), 0);
    CHECK_STR(path, "/");
    CHECK_INT(cpus_cgroup_path("12:cpu,cpuacct:/x\n", path, sizeof path), -ENOENT);
    CHECK_INT(cpus_cgroup_path("0::/a/very/long/path/that/does/not/fit/in/the/buffer/given/here/at/all\n", path, 16),
              -ENAMETOOLONG);

    CHECK_INT(cpus_default_threads(2, 0), 2);    /* no quota: the affinity mask */
    CHECK_INT(cpus_default_threads(16, 0), 4);   /* capped */
    CHECK_INT(cpus_default_threads(8, 1), 1);    /* half a core on a big node: one loop */
    CHECK_INT(cpus_default_threads(8, 3), 3);
    CHECK_INT(cpus_default_threads(2, 8), 2);    /* a quota above the mask: the mask */
    CHECK_INT(cpus_default_threads(1, 0), 1);
    CHECK_INT(cpus_default_threads(0, 0), 1);    /* unreadable: one */

    unsigned real = cpus_ingest_threads_default(); /* this machine: whatever it is, within the bounds */
    CHECK(real >= 1 && real <= CPUS_DEFAULT_MAX);
    return check_done("test_cpus");
}
