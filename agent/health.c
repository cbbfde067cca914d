/* health.c — the /healthz verdict (see health.h): three checks on one stats_view, each a line of text an operator
 * can act on at 3 a.m. */
#include "health.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *const health_reason_names[HEALTH_REASON_N] = {"upstream_failing", "spool_full", "ring_stuck"};

/* Appends a formatted line to buf (cap bytes, NUL-terminated); drops what does not fit. */
static void add_line(char *buf, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void add_line(char *buf, size_t cap, const char *fmt, ...)
{
    size_t len = strlen(buf);
    if (len + 2 >= cap)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf + len, cap - len - 1, fmt, ap);
    va_end(ap);
    len = n < 0 ? len : len + (size_t)n >= cap - 1 ? cap - 2 : len + (size_t)n;
    buf[len++] = '\n';
    buf[len] = 0;
}

/* "930 MiB", "1 GiB", "1.5 KiB", "512 B" */
static void human_bytes(char *out, size_t cap, uint64_t n)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)n;
    size_t u = 0;
    while (v >= 1024 && u < 4) {
        v /= 1024;
        u++;
    }
    if (v < 10 && v != (double)(uint64_t)v)
        snprintf(out, cap, "%.1f %s", v, units[u]);
    else
        snprintf(out, cap, "%.0f %s", v, units[u]);
}

static void check_upstream(const stats_view *v, const config *cfg, health_report *out)
{
    const flusher_snapshot *f = &v->f;
    uint64_t waiting = v->in_ring + f->batching + f->in_flight + f->retry_wait + f->spooled;
    int64_t for_ms = f->failing && f->failing_since_ms ? v->now_ms - f->failing_since_ms : 0;
    if (!f->failing) {
        add_line(out->detail, sizeof out->detail, "upstream: ok (%s)", f->unary ? "unary" : "batch");
        return;
    }
    add_line(out->detail, sizeof out->detail, "upstream: failing for %llds, %llu records waiting (last error: %s)",
             (long long)(for_ms / 1000), (unsigned long long)waiting, f->last_error);
    if (for_ms > (int64_t)cfg->health_failing_ms && waiting > 0) {
        out->reasons |= HEALTH_UPSTREAM_FAILING;
        add_line(out->text, sizeof out->text, "upstream failing for %llds (last error: %s)",
                 (long long)(for_ms / 1000), f->last_error);
    }
}

static void check_spool(const stats_view *v, const config *cfg, health_report *out)
{
    const flusher_snapshot *f = &v->f;
    if (!f->has_spool || cfg->spool_max_bytes == 0) {
        add_line(out->detail, sizeof out->detail, "spool: none");
        return;
    }
    char used[32], max[32];
    human_bytes(used, sizeof used, f->spool.bytes);
    human_bytes(max, sizeof max, cfg->spool_max_bytes);
    unsigned long long pct = (unsigned long long)(f->spool.bytes * 100 / cfg->spool_max_bytes);
    add_line(out->detail, sizeof out->detail, "spool: %llu%% full (%s of %s), unhealthy from %llu%%", pct, used, max,
             (unsigned long long)cfg->health_spool_pct);
    /* only while batches still live there: settled ones leave their segment's space reusable (the append segment
     * is kept until the next append needs the room) */
    int live = f->spooled + f->in_flight > 0;
    if (f->spool.disk_full) { /* appends fail for lack of space on the filesystem, whatever --spool-max-bytes says */
        out->reasons |= HEALTH_SPOOL_FULL;
        add_line(out->text, sizeof out->text, "spool filesystem full (ENOSPC/EDQUOT) at %s of %s: batches wait in "
                 "memory, then --on-full applies", used, max);
    } else if (live && f->spool.bytes * 100 >= cfg->health_spool_pct * cfg->spool_max_bytes) {
        out->reasons |= HEALTH_SPOOL_FULL;
        add_line(out->text, sizeof out->text, "spool %llu%% full (%s of %s)", pct, used, max);
    }
}

/* The flusher's loop turns at least once a second even when idle; a loop silent for this much longer than the
 * threshold is not turning at all. */
enum { HEALTH_LOOP_SLACK_MS = 1000 };

static void check_ring(const stats_view *v, const config *cfg, health_report *out)
{
    const flusher_snapshot *f = &v->f;
    int64_t silent_ms = v->now_ms - f->heartbeat_ms;
    int64_t stalled_ms = f->stall_since_ms ? v->now_ms - f->stall_since_ms : 0;
    if (v->in_ring == 0) {
        add_line(out->detail, sizeof out->detail, "ring: empty");
        return;
    }
    add_line(out->detail, sizeof out->detail, "ring: %llu records, none taken for %llds, flusher loop last turned %llds ago",
             (unsigned long long)v->in_ring, (long long)(stalled_ms / 1000), (long long)(silent_ms / 1000));
    const char *why = NULL;
    int64_t for_ms = 0;
    if (silent_ms > (int64_t)cfg->health_failing_ms + HEALTH_LOOP_SLACK_MS) {
        why = "the flusher thread is not running its loop";
        for_ms = silent_ms;
    } else if (stalled_ms > (int64_t)cfg->health_failing_ms) {
        why = f->failing ? "batches wait on the failing upstream" : "batches wait for a free call slot or spool space";
        for_ms = stalled_ms;
    }
    if (why) {
        out->reasons |= HEALTH_RING_STUCK;
        add_line(out->text, sizeof out->text, "ring stuck: %llu records, none taken for %llds (%s)",
                 (unsigned long long)v->in_ring, (long long)(for_ms / 1000), why);
    }
}

void health_check(const stats_view *v, const config *cfg, health_report *out)
{
    memset(out, 0, sizeof *out);
    check_upstream(v, cfg, out);
    check_spool(v, cfg, out);
    check_ring(v, cfg, out);
}
