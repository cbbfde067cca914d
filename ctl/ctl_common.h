/* ctl_common.h — what logagentctl's commands share: the parsed options, fetching a document from the agent
 * (with the error message an operator needs), reading numbers out of it, and formatting for a terminal. */
#ifndef LOGAGENT_CTL_COMMON_H
#define LOGAGENT_CTL_COMMON_H

#include "common/cli.h"
#include "common/httpc.h"

#include <jansson.h>
#include <stdio.h>

#define CTL_PROG "logagentctl"

/* Exit statuses (docs/logagentctl.md, "Exit status"). */
enum { CTL_OK = 0, CTL_FAIL = 1, CTL_USAGE = CLI_EXIT_USAGE };

typedef struct ctl_opts {
    httpc_target endpoint; /* --stats-socket, LOGAGENT_STATS_SOCKET, or the default (httpc_parse_endpoint) */
    double timeout_s;      /* --timeout: connect + request + answer */
    int json;              /* --json */
    double interval_s;     /* watch --interval */
    long count;            /* watch --count; 0 = until interrupted */
    long top;              /* clients --top; 0 = the agent's default */
    int verbose;           /* health --verbose */
    const char *spool_dir;     /* deadletter --spool-dir, LOGAGENT_SPOOL_DIR, or the default */
    const char *ingest_socket; /* deadletter --socket, LOGAGENT_SOCKET, or the default */
    int replay;                /* deadletter --replay */
} ctl_opts;

/* One answer of the agent, with its body (the caller's: ctl_response_free). */
typedef struct ctl_response {
    int status;      /* e.g. 200, 503 */
    char reason[64]; /* the status line's reason phrase */
    char *body;      /* NUL-terminated (a body containing NULs is still body_len bytes long) */
    size_t body_len;
} ctl_response;

/* Frees the body; safe on an empty or already freed response. */
void ctl_response_free(ctl_response *res);

/* GETs target (a path with an optional query, e.g. "/stats/clients?top=5") on one connection, the whole exchange
 * within --timeout. Returns 0 with *res filled (any HTTP status; the caller frees it), or CTL_FAIL after printing
 * why to stderr, naming the socket and the system's error text. */
int ctl_fetch(const ctl_opts *o, const char *target, ctl_response *res);

/* Says on stderr that GET target answered res->status, with the reason and the first line of a text body. */
void ctl_report_status(const ctl_opts *o, const char *target, const ctl_response *res);

/* GETs target and insists on HTTP 200. Returns 0 with *res filled (the caller frees it), or CTL_FAIL after
 * printing why (unreachable, or the status and reason the agent gave). */
int ctl_fetch_ok(const ctl_opts *o, const char *target, ctl_response *res);

/* GETs target and parses it as a JSON object. Returns 0 with *doc (the caller json_decref's it), or CTL_FAIL
 * after printing why: unreachable, an HTTP status other than 200, or a body that is not a JSON object. */
int ctl_fetch_json(const ctl_opts *o, const char *target, json_t **doc);

/* The value at a dotted path ("records.dropped.buffer_full"), or NULL. Borrowed from doc. */
json_t *ctl_path(json_t *doc, const char *path);

/* The number at path as a double, or 0 when it is missing or not a number. */
double ctl_num(json_t *doc, const char *path);

/* The sum of every number directly inside the object at path (e.g. all drop reasons); 0 if none. */
double ctl_sum(json_t *doc, const char *path);

/* Text for the value at path: integers as integers, reals with up to 3 decimals, strings made safe for a
 * terminal, booleans as yes/no, "-" when missing. Returns buf. */
const char *ctl_text(json_t *doc, const char *path, char *buf, size_t n);

/* Copies s into buf with control characters (C0, DEL, UTF-8-encoded C1) replaced by '?', so a client-chosen
 * service name or an upstream error cannot drive the operator's terminal. Returns buf. */
const char *ctl_safe(const char *s, char *buf, size_t n);

/* 1536 -> "1.5 KiB". Returns buf. */
const char *ctl_bytes(double bytes, char *buf, size_t n);

/* 3723 -> "1h02m03s", 12.5 -> "12.5s". Returns buf. */
const char *ctl_duration(double seconds, char *buf, size_t n);

#endif
