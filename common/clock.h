/* clock.h — the agent's clocks, one copy: CLOCK_MONOTONIC for durations, deadlines and every time the stages compare
 * with each other (the flusher's times and /stats' now_ms are on it), CLOCK_REALTIME for record timestamps.
 *
 * Header-only (static inline: a vDSO call each, no object file) so that logagentd and logagentctl, which share no
 * object files, read the same clocks. The client library (client-shim/) keeps its own: it depends on nothing here. */
#ifndef LOGAGENT_CLOCK_H
#define LOGAGENT_CLOCK_H

#include <stdint.h>
#include <time.h>

/* CLOCK_MONOTONIC in nanoseconds. */
static inline int64_t clock_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* CLOCK_MONOTONIC in milliseconds (rounded down). */
static inline int64_t clock_mono_ms(void) { return clock_mono_ns() / 1000000; }

/* CLOCK_MONOTONIC in seconds. */
static inline double clock_mono_s(void) { return (double)clock_mono_ns() / 1e9; }

/* CLOCK_REALTIME (the wall clock: record timestamps) in nanoseconds since the epoch. */
static inline int64_t clock_real_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

#endif
