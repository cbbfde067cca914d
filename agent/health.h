/* health.h — the /healthz verdict from a stats_view: healthy, or the reasons it is not.
 *
 * Reasons (each one line of text, and one bit):
 *   upstream failing  calls have failed with no success in between for longer than --health-failing-ms, while
 *                     records wait to be delivered;
 *   spool full        the spool holds at least --health-spool-pct % of --spool-max-bytes while records still wait
 *                     there (only with a spool);
 *   ring stuck        records sit in the ring and the flusher's turns took none of them for longer than
 *                     --health-failing-ms (it waits on the upstream, call slots or the spool), or its loop has not
 *                     turned at all for that long plus a second (the thread is wedged). */
#ifndef LOGAGENT_HEALTH_H
#define LOGAGENT_HEALTH_H

#include "config.h"
#include "stats.h"

#include <stddef.h>

enum health_reason { HEALTH_UPSTREAM_FAILING = 1, HEALTH_SPOOL_FULL = 2, HEALTH_RING_STUCK = 4 };
enum { HEALTH_REASON_N = 3 };
/* Names of the reasons, in bit order: the `reason` label of logagent_unhealthy. */
extern const char *const health_reason_names[HEALTH_REASON_N];

typedef struct health_report {
    unsigned reasons;  /* health_reason bits; 0 = healthy */
    char text[1024];   /* one line per reason ("upstream failing for 75s (last error: ...)"), each ending in \n */
    char detail[1024]; /* one line per check whatever its state (for ?verbose) */
} health_report;

/* Judges v against cfg's thresholds (health_failing_ms, health_spool_pct, spool_max_bytes). */
void health_check(const stats_view *v, const config *cfg, health_report *out);

#endif
