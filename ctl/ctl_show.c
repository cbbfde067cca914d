/* ctl_show.c — the `stats` and `clients` tables (see ctl_show.h).
 *
 * `stats` is one section per stage a record passes through (records, connections, memory, upstream,
 * backpressure, spool), one "label  value  detail" line each; counters are printed as exact integers so
 * an operator (or a script) can compare them with /stats. Reason lists (dropped, rejected) are read from the
 * document, so a reason a newer agent adds shows up without a change here. */
#include "ctl_show.h"

#include "ctl_common.h"

#include <stdlib.h>
#include <string.h>

static void row(FILE *out, const char *label, const char *value, const char *detail)
{
    if (detail && *detail)
        fprintf(out, "  %-16s %14s  %s\n", label, value, detail);
    else
        fprintf(out, "  %-16s %14s\n", label, value);
}

/* A line whose value is text: left-aligned after the label. */
static void text_row(FILE *out, const char *label, const char *text)
{
    fprintf(out, "  %-16s %s\n", label, *text ? text : "-");
}

/* "name 1, other 0" for each number in the object at path. Returns buf. */
static const char *reasons(json_t *doc, const char *path, char *buf, size_t n)
{
    json_t *obj = ctl_path(doc, path), *v;
    const char *key;
    size_t o = 0;
    buf[0] = '\0';
    json_object_foreach(obj, key, v) {
        char num[32], safe[64];
        int w = snprintf(buf + o, n - o, "%s%s %s", o ? ", " : "", ctl_safe(key, safe, sizeof safe),
                         ctl_text(obj, key, num, sizeof num));
        if (w < 0 || (size_t)w >= n - o)
            break;
        o += (size_t)w;
    }
    return buf;
}

static void show_records(FILE *out, json_t *d)
{
    char v[64], det[512], a[32], b[32], c[32], e[32], f[32];
    fprintf(out, "records\n");
    row(out, "received", ctl_text(d, "records.received", v, sizeof v), "accepted into the agent");
    row(out, "flushed", ctl_text(d, "records.flushed", v, sizeof v), "acknowledged by the log service");
    double held = ctl_num(d, "records.in_ring") + ctl_num(d, "records.batching") + ctl_num(d, "records.in_flight") +
                  ctl_num(d, "records.retry_wait") + ctl_num(d, "records.spooled");
    snprintf(v, sizeof v, "%.0f", held);
    snprintf(det, sizeof det, "in ring %s, batching %s, in flight %s, retry wait %s, spooled %s",
             ctl_text(d, "records.in_ring", a, sizeof a), ctl_text(d, "records.batching", b, sizeof b),
             ctl_text(d, "records.in_flight", c, sizeof c), ctl_text(d, "records.retry_wait", e, sizeof e),
             ctl_text(d, "records.spooled", f, sizeof f));
    row(out, "held", v, det);
    snprintf(v, sizeof v, "%.0f", ctl_sum(d, "records.dropped"));
    row(out, "dropped", v, reasons(d, "records.dropped", det, sizeof det));
    snprintf(v, sizeof v, "%.0f", ctl_sum(d, "records.rejected"));
    row(out, "rejected", v, reasons(d, "records.rejected", det, sizeof det));
    row(out, "replayed", ctl_text(d, "records.replayed", v, sizeof v), "found in the spool at start-up");
    row(out, "dead letter", ctl_text(d, "records.dead_letter", v, sizeof v), "refused, kept in deadletter.log");
    row(out, "level unknown", ctl_text(d, "records.level_unknown", v, sizeof v), "levels kept as sent");
    row(out, "time unparsed", ctl_text(d, "records.timestamp_unparsed", v, sizeof v), "timestamps kept in metadata");
    row(out, "bytes received", ctl_text(d, "bytes_received", v, sizeof v),
        ctl_path(d, "bytes_received") ? ctl_bytes(ctl_num(d, "bytes_received"), a, sizeof a) : NULL);
}

static void show_memory(FILE *out, json_t *d)
{
    char v[64], det[256], a[32], b[32], c[32];
    fprintf(out, "connections\n");
    row(out, "active", ctl_text(d, "connections.active", v, sizeof v), NULL);
    row(out, "total", ctl_text(d, "connections.total", v, sizeof v), "since start");
    fprintf(out, "memory\n");
    double used = ctl_num(d, "ring.used_bytes"), cap = ctl_num(d, "ring.capacity_bytes");
    snprintf(det, sizeof det, "%s of %s (%.1f%%)", ctl_bytes(used, a, sizeof a), ctl_bytes(cap, b, sizeof b),
             cap > 0 ? 100.0 * used / cap : 0.0);
    row(out, "ring used", ctl_text(d, "ring.used_bytes", v, sizeof v), det);
    snprintf(det, sizeof det, "%s held of a %s budget; limit %s, when full: %s",
             ctl_bytes(ctl_num(d, "buffer.batch_bytes"), a, sizeof a),
             ctl_bytes(ctl_num(d, "buffer.batch_budget_bytes"), b, sizeof b),
             ctl_bytes(ctl_num(d, "buffer.limit_bytes"), c, sizeof c), ctl_text(d, "buffer.on_full", v, sizeof v));
    row(out, "batches held", ctl_text(d, "buffer.batch_bytes", v, sizeof v), det);
    fprintf(out, "backpressure\n");
    snprintf(det, sizeof det, "s, in %s pauses (reading stopped: the buffer was full)",
             ctl_text(d, "backpressure_pauses", a, sizeof a));
    row(out, "time paused", ctl_text(d, "backpressure_seconds", v, sizeof v), det);
}

static void show_upstream(FILE *out, json_t *d)
{
    char v[512], det[256], a[32], b[32], c[32];
    fprintf(out, "upstream\n");
    text_row(out, "target", ctl_text(d, "upstream.target", v, sizeof v));
    text_row(out, "state", ctl_text(d, "upstream.state", v, sizeof v));
    text_row(out, "mode", ctl_text(d, "upstream.mode", v, sizeof v));
    text_row(out, "last error", ctl_text(d, "upstream.last_error", v, sizeof v));
    snprintf(det, sizeof det, "failed %s, retried %s, unary calls %s", ctl_text(d, "batches.failed", a, sizeof a),
             ctl_text(d, "batches.retried", b, sizeof b), ctl_text(d, "batches.unary_calls", c, sizeof c));
    row(out, "batches sent", ctl_text(d, "batches.sent", v, sizeof v), det);
    snprintf(det, sizeof det, "p50 %s ms, p90 %s ms, p99 %s ms", ctl_text(d, "flush_latency_ms.p50", a, sizeof a),
             ctl_text(d, "flush_latency_ms.p90", b, sizeof b), ctl_text(d, "flush_latency_ms.p99", c, sizeof c));
    text_row(out, "flush latency", det);
}

static void show_spool(FILE *out, json_t *d)
{
    char v[64], det[256], a[32], b[32], c[32], e[32], f[32];
    fprintf(out, "spool\n");
    if (!json_is_true(ctl_path(d, "spool.enabled"))) {
        text_row(out, "enabled", "no (--buffer memory)");
        return;
    }
    snprintf(det, sizeof det, "%s in %s segments", ctl_bytes(ctl_num(d, "spool.bytes"), a, sizeof a),
             ctl_text(d, "spool.segments", b, sizeof b));
    row(out, "bytes", ctl_text(d, "spool.bytes", v, sizeof v), det);
    snprintf(det, sizeof det, "corrupt frames %s, torn bytes %s, dead-letter batches %s, read errors %s",
             ctl_text(d, "spool.corrupt_frames", a, sizeof a), ctl_text(d, "spool.torn_bytes", c, sizeof c),
             ctl_text(d, "spool.dead_letter_batches", e, sizeof e), ctl_text(d, "spool.read_errors", f, sizeof f));
    text_row(out, "problems", det);
    if (!ctl_path(d, "spool.disk_full")) /* an older agent */
        return;
    snprintf(det, sizeof det, "%s (%s episodes), write errors %s, fsync errors %s",
             json_is_true(ctl_path(d, "spool.disk_full")) ? "FULL now: batches wait in memory" : "no",
             ctl_text(d, "spool.disk_full_episodes", a, sizeof a), ctl_text(d, "spool.write_errors", c, sizeof c),
             ctl_text(d, "spool.fsync_errors", e, sizeof e));
    text_row(out, "disk full", det);
    snprintf(det, sizeof det, "%s of %s, %s records rotated out (logagentctl deadletter)",
             ctl_bytes(ctl_num(d, "spool.dead_letter_bytes"), a, sizeof a),
             ctl_bytes(ctl_num(d, "spool.dead_letter_max_bytes"), c, sizeof c),
             ctl_text(d, "spool.dead_letter_evicted_records", e, sizeof e));
    text_row(out, "dead letters", det);
}

void ctl_show_stats(FILE *out, json_t *stats, const char *where)
{
    char up[32], ver[64];
    fprintf(out, "logagentd%s%s at %s, up %s\n", ctl_path(stats, "version") ? " " : "",
            ctl_path(stats, "version") ? ctl_text(stats, "version", ver, sizeof ver) : "", where,
            ctl_duration(ctl_num(stats, "uptime_seconds"), up, sizeof up));
    show_records(out, stats);
    show_memory(out, stats);
    show_upstream(out, stats);
    show_spool(out, stats);
}

/* ---- clients ---- */

enum cell_kind { CELL_TEXT, CELL_BYTES, CELL_AGO };

typedef struct column {
    const char *title;
    const char *key;
    int left; /* left-aligned (text) rather than right-aligned (numbers) */
    enum cell_kind kind;
} column;

static const column COLUMNS[] = {
    {"PID", "pid", 0, CELL_TEXT},          {"UID", "uid", 0, CELL_TEXT},
    {"GID", "gid", 0, CELL_TEXT},          {"COMM", "comm", 1, CELL_TEXT},
    {"SERVICE", "service_name", 1, CELL_TEXT}, {"CONNS", "connections", 0, CELL_TEXT},
    {"ACTIVE", "active", 1, CELL_TEXT},    {"RECORDS", "records", 0, CELL_TEXT},
    {"BYTES", "bytes", 0, CELL_BYTES},     {"REJECTED", "rejected", 0, CELL_TEXT},
    {"DROPPED", "dropped", 0, CELL_TEXT},  {"LAST SEEN", "last_seen_seconds", 0, CELL_AGO},
};
#define N_COLUMNS (sizeof COLUMNS / sizeof COLUMNS[0])
#define CELL_CHARS 41 /* longer strings (service names) are cut to 40 bytes */

static void cell(json_t *client, const column *c, char *buf, size_t n)
{
    json_t *v = json_object_get(client, c->key);
    char tmp[32];
    if (c->kind == CELL_BYTES && json_is_number(v))
        ctl_bytes(json_number_value(v), buf, n);
    else if (c->kind == CELL_AGO && json_is_number(v))
        snprintf(buf, n, "%s ago", ctl_duration(json_number_value(v), tmp, sizeof tmp));
    else
        ctl_text(client, c->key, buf, n);
}

static void print_row(FILE *out, char (*cells)[CELL_CHARS], const int *width)
{
    for (size_t k = 0; k < N_COLUMNS; k++) {
        int last = k + 1 == N_COLUMNS;
        if (COLUMNS[k].left && !last)
            fprintf(out, "%-*s  ", width[k], cells[k]);
        else
            fprintf(out, "%*s%s", width[k], cells[k], last ? "\n" : "  ");
    }
}

int ctl_show_clients(FILE *out, json_t *doc)
{
    json_t *list = json_object_get(doc, "clients");
    size_t rows = json_array_size(list) + 1; /* + the titles */
    char(*cells)[CELL_CHARS] = calloc(rows * N_COLUMNS, CELL_CHARS);
    if (!cells) {
        fprintf(stderr, CTL_PROG ": out of memory for %zu clients\n", rows - 1);
        return -1;
    }
    int width[N_COLUMNS] = {0};
    for (size_t r = 0; r < rows; r++) {
        for (size_t k = 0; k < N_COLUMNS; k++) {
            char *c = cells[r * N_COLUMNS + k];
            if (r == 0)
                snprintf(c, CELL_CHARS, "%s", COLUMNS[k].title);
            else
                cell(json_array_get(list, r - 1), &COLUMNS[k], c, CELL_CHARS);
            int len = (int)strlen(c);
            width[k] = len > width[k] ? len : width[k];
        }
    }
    for (size_t r = 0; r < rows; r++)
        print_row(out, &cells[r * N_COLUMNS], width);
    free(cells);
    char t[32], e[32];
    fprintf(out, "%sclients tracked: %s, evicted: %s\n",
            rows == 1 ? "no clients seen yet; " : "", ctl_text(doc, "tracked", t, sizeof t),
            ctl_text(doc, "evicted", e, sizeof e));
    return 0;
}
