/* cpus.h — the default of --ingest-threads: the CPUs the agent may use. A sidecar is often pinned (affinity) or
 * given a fraction of a core (the cgroup v2 cpu.max quota): one event loop per usable CPU, the quota rounded up,
 * at most CPUS_DEFAULT_MAX (docs/architecture.md, Threads). The parsing is split from the reading so that the unit
 * test feeds it fake inputs. */
#ifndef LOGAGENT_CPUS_H
#define LOGAGENT_CPUS_H

#include <stddef.h>

enum { CPUS_DEFAULT_MAX = 4 };

/* The CPUs a cgroup v2 cpu.max text ("QUOTA PERIOD", or "max PERIOD") allows, rounded up: "50000 100000" -> 1,
 * "150000 100000" -> 2. 0 when unlimited or unreadable. */
unsigned cpus_from_cpu_max(const char *text);

/* The cgroup v2 path of this process from the text of /proc/self/cgroup (the "0::PATH" line) into path; 0, or
 * -ENOENT when there is none (cgroup v1 only). */
int cpus_cgroup_path(const char *text, char *path, size_t cap);

/* The default thread count from the affinity mask's CPU count and the quota's (0: no quota): the smaller, at least
 * 1, at most CPUS_DEFAULT_MAX. */
unsigned cpus_default_threads(unsigned affinity, unsigned quota);

/* Reads sched_getaffinity and cpu.max of this process's cgroup and of its ancestors (the smallest quota wins) under
 * /sys/fs/cgroup, and returns cpus_default_threads of them. */
unsigned cpus_ingest_threads_default(void);

#endif
