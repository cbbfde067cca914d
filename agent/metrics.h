/* metrics.h — GET /metrics: a stats_view in the Prometheus text exposition format 0.0.4.
 *
 * Every family has HELP and TYPE lines and the `logagent_` prefix; counters end in `_total`; histograms (flush
 * latency, batch records, batch bytes, latency per upstream instance) have cumulative `le` buckets ending at +Inf,
 * `_sum` and `_count`. The numbers are /stats' numbers (same stats_view), so the two agree for the same traffic.
 * docs/metrics.md lists them all. */
#ifndef LOGAGENT_METRICS_H
#define LOGAGENT_METRICS_H

#include "config.h"
#include "health.h"
#include "stats.h"

#include <event2/buffer.h>

#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* Appends the exposition of v (and the health verdict h) to out. Returns 0, or -ENOMEM. */
int metrics_render(const stats_view *v, const config *cfg, const health_report *h, struct evbuffer *out);

#endif
