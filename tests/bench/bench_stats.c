/* bench_stats.c — logagent-bench's end-to-end mode: reads records.flushed (and the records that will never be
 * flushed: records.dropped.*, records.dead_letter) from the agent's stats socket (GET /stats, docs/metrics.md)
 * and waits until flushed has grown by the number of records the bench got accepted. It assumes the bench is
 * the agent's only writer meanwhile: anyone else's records would count as ours. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "bench.h"

#define POLL_MS 20

static int get_ll(json_t *obj, const char *key, long long *out)
{
    json_t *v = json_object_get(obj, key);
    if (!json_is_integer(v))
        return -1;
    *out = json_integer_value(v);
    return 0;
}

/* Fills *out from a /stats document. Returns 0 or -EPROTO. */
static int from_doc(json_t *doc, bstats *out)
{
    json_t *rec = json_object_get(doc, "records");
    json_t *dropped = json_object_get(rec, "dropped");
    long long dead = 0, v;
    if (get_ll(rec, "flushed", &out->flushed) < 0 || !json_is_object(dropped))
        return -EPROTO;
    (void)get_ll(rec, "dead_letter", &dead); /* only with the disk buffer's dead-letter file */
    out->gone = dead;
    const char *k;
    json_t *x;
    json_object_foreach(dropped, k, x) {
        if (get_ll(dropped, k, &v) == 0)
            out->gone += v;
    }
    return 0;
}

int bstats_read(const char *path, bstats *out, char *err, size_t errlen)
{
    httpc_target t;
    int rc = httpc_target_unix(path, &t, err, errlen);
    if (rc < 0)
        return rc;
    httpc_conn c;
    httpc_init(&c, &t, PROG, 10000);
    httpc_response r;
    rc = httpc_request(&c, "GET", "/stats", NULL, NULL, 0, &r, err, errlen);
    if (rc == 0 && r.status != 200) {
        snprintf(err, errlen, "GET /stats on %s answered %d: %.100s", path, r.status, r.body);
        rc = -EPROTO;
    } else if (rc == 0) {
        json_error_t jerr;
        json_t *doc = json_loadb(r.body, r.body_len, 0, &jerr);
        rc = doc ? from_doc(doc, out) : -EPROTO;
        if (rc < 0)
            snprintf(err, errlen, "GET /stats on %s: no records.flushed/records.dropped in the answer (%s)", path,
                     doc ? "missing keys" : jerr.text);
        json_decref(doc);
    }
    httpc_close(&c);
    return rc;
}

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int bstats_wait(const char *path, const bstats *base, long want, int timeout_ms, long *delivered, char *err,
                size_t errlen)
{
    long long deadline = timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
    *delivered = 0;
    for (;;) {
        bstats s;
        int rc = bstats_read(path, &s, err, errlen);
        if (rc < 0)
            return rc;
        *delivered = (long)(s.flushed - base->flushed);
        if (*delivered >= want)
            return 0;
        if (*delivered + (s.gone - base->gone) >= want)
            return -ENODATA;  /* the missing ones were dropped: waiting longer will not bring them */
        if (deadline >= 0 && now_ms() >= deadline)
            return -ETIMEDOUT;
        struct timespec ts = { 0, POLL_MS * 1000000L };
        nanosleep(&ts, NULL);
    }
}
