/* ctl_common.c — logagentctl's shared helpers (see ctl_common.h): fetching with operator-grade error
 * messages, dotted-path lookups into the agent's JSON, and number/byte/duration formatting. */
#include "ctl_common.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* A hint after the system's error text, for the errors an operator meets most. */
static const char *hint(int err, const httpc_target *ep)
{
    if (err == -ETIMEDOUT)
        return " (--timeout)";
    if (!ep->is_unix)
        return err == -ECONNREFUSED ? " (is logagentd running with --metrics-listen on this address?)" : "";
    switch (-err) {
    case ENOENT:
    case ECONNREFUSED:
        return " (is logagentd running? choose its socket with --stats-socket or LOGAGENT_STATS_SOCKET)";
    case EACCES:
        return " (the stats socket is mode 0600 by default: run as the agent's user or root, or see logagentd "
               "--stats-socket-mode and --stats-socket-group)";
    default:
        return "";
    }
}

int ctl_fetch(const ctl_opts *o, const char *target, ctl_response *res)
{
    char err[600];
    httpc_conn c;
    httpc_response r;
    memset(res, 0, sizeof *res);
    httpc_init(&c, &o->endpoint, CTL_PROG, (int)(o->timeout_s * 1000.0 + 0.5));
    c.close_after = 1;
    int rc = httpc_request(&c, "GET", target, NULL, NULL, 0, &r, err, sizeof err);
    if (rc == 0) {
        res->status = r.status;
        memcpy(res->reason, r.reason, sizeof res->reason);
        res->body = httpc_take_body(&c, &r);
        res->body_len = r.body_len;
    }
    httpc_close(&c);
    if (rc < 0) {
        fprintf(stderr, CTL_PROG ": %s%s\n", err, hint(rc, &o->endpoint));
        return CTL_FAIL;
    }
    return 0;
}

void ctl_response_free(ctl_response *res)
{
    free(res->body);
    res->body = NULL;
    res->body_len = 0;
}

void ctl_report_status(const ctl_opts *o, const char *target, const ctl_response *res)
{
    char reason[80], first[160], body[160];
    /* the first line of a plain-text body says why (/healthz); evhttp's HTML pages repeat the reason */
    size_t line = res->body[0] == '<' ? 0 : strcspn(res->body, "\r\n");
    snprintf(first, sizeof first, "%.*s", (int)(line < sizeof first ? line : sizeof first - 1), res->body);
    fprintf(stderr, CTL_PROG ": GET %s on %s: HTTP %d %s%s%s\n", target, o->endpoint.text, res->status,
            ctl_safe(res->reason, reason, sizeof reason), line ? ": " : "", ctl_safe(first, body, sizeof body));
}

int ctl_fetch_ok(const ctl_opts *o, const char *target, ctl_response *res)
{
    if (ctl_fetch(o, target, res) != 0)
        return CTL_FAIL;
    if (res->status == 200)
        return 0;
    ctl_report_status(o, target, res);
    ctl_response_free(res);
    return CTL_FAIL;
}

int ctl_fetch_json(const ctl_opts *o, const char *target, json_t **doc)
{
    ctl_response res;
    *doc = NULL;
    if (ctl_fetch_ok(o, target, &res) != 0)
        return CTL_FAIL;
    json_error_t jerr;
    json_t *j = json_loadb(res.body, res.body_len, 0, &jerr);
    ctl_response_free(&res);
    if (!j || !json_is_object(j)) {
        char safe[200];
        fprintf(stderr, CTL_PROG ": GET %s on %s: the answer is not a JSON object%s%s\n", target,
                o->endpoint.text, j ? "" : ": ", j ? "" : ctl_safe(jerr.text, safe, sizeof safe));
        json_decref(j);
        return CTL_FAIL;
    }
    *doc = j;
    return 0;
}

json_t *ctl_path(json_t *doc, const char *path)
{
    char key[128];
    while (doc && *path) {
        size_t len = strcspn(path, ".");
        if (len >= sizeof key)
            return NULL;
        memcpy(key, path, len);
        key[len] = '\0';
        doc = json_object_get(doc, key);
        path += len + (path[len] == '.');
    }
    return doc;
}

double ctl_num(json_t *doc, const char *path)
{
    json_t *v = ctl_path(doc, path);
    return json_is_number(v) ? json_number_value(v) : 0.0;
}

double ctl_sum(json_t *doc, const char *path)
{
    json_t *obj = ctl_path(doc, path), *v;
    const char *key;
    double sum = 0;
    json_object_foreach(obj, key, v)
        sum += json_is_number(v) ? json_number_value(v) : 0.0;
    return sum;
}

const char *ctl_text(json_t *doc, const char *path, char *buf, size_t n)
{
    json_t *v = ctl_path(doc, path);
    if (json_is_integer(v))
        snprintf(buf, n, "%lld", (long long)json_integer_value(v));
    else if (json_is_real(v))
        snprintf(buf, n, "%.3f", json_real_value(v));
    else if (json_is_string(v))
        ctl_safe(json_string_value(v), buf, n);
    else if (json_is_boolean(v))
        snprintf(buf, n, "%s", json_is_true(v) ? "yes" : "no");
    else
        snprintf(buf, n, "-");
    return buf;
}

const char *ctl_safe(const char *s, char *buf, size_t n)
{
    size_t o = 0;
    if (n == 0)
        return buf;
    for (const unsigned char *p = (const unsigned char *)s; *p && o + 1 < n; p++) {
        int c1 = p[0] == 0xC2 && p[1] >= 0x80 && p[1] <= 0x9F;
        buf[o++] = (p[0] < 0x20 || p[0] == 0x7F || c1) ? '?' : (char)p[0];
        p += c1;
    }
    buf[o] = '\0';
    return buf;
}

const char *ctl_bytes(double bytes, char *buf, size_t n)
{
    static const char *const UNITS[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    size_t u = 0;
    while (bytes >= 1024 && u + 1 < sizeof UNITS / sizeof UNITS[0]) {
        bytes /= 1024;
        u++;
    }
    snprintf(buf, n, u == 0 ? "%.0f %s" : "%.1f %s", bytes, UNITS[u]);
    return buf;
}

const char *ctl_duration(double seconds, char *buf, size_t n)
{
    if (!isfinite(seconds) || seconds < 0)
        seconds = 0;
    unsigned long long s = (unsigned long long)seconds;
    if (seconds < 60)
        snprintf(buf, n, "%.1fs", seconds);
    else if (s < 3600)
        snprintf(buf, n, "%llum%02llus", s / 60, s % 60);
    else if (s < 86400)
        snprintf(buf, n, "%lluh%02llum%02llus", s / 3600, s / 60 % 60, s % 60);
    else
        snprintf(buf, n, "%llud%02lluh%02llum", s / 86400, s / 3600 % 24, s / 60 % 60);
    return buf;
}
