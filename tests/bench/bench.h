/* bench.h — what logagent-bench's parts share: the run (settings, the work counter, the tally of results and
 * sample errors), the record shape of the original's concurrent test and the records built from it before the
 * clock starts, the two kinds of worker threads (liblogagent socket, HTTP ingest) with what each measures of
 * itself, and the end-to-end wait on the agent's stats socket.
 *
 * Workers claim record indices 1..count from b->next (bench_claim) until none is left, and count what the
 * agent accepted in b->ok; failed is derived at the end (count - ok). Everything else in a bench is read-only
 * while workers run, except the error samples (under err_mu) and each worker's own bench_worker. */
#ifndef LOGAGENT_BENCH_H
#define LOGAGENT_BENCH_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "common/httpc.h"
#include "logagent.h"

#define PROG "logagent-bench"
#define BENCH_MAX_SAMPLES 5
#define BENCH_SAMPLE_LEN 320
#define BENCH_HTTP_TIMEOUT_MS 60000      /* one HTTP request may take this long before it counts as failed */
#define BENCH_RING_MAX 8192              /* records built before the clock starts (bench_ring_build) */
#define BENCH_JSON_MAX 512               /* one record's JSON body is about 330 bytes */
#define BENCH_CLAIM 64                   /* socket mode: record indices a worker claims at a time */
#define BENCH_LAT_STRIDE_MIN 64          /* socket mode: at most every 64th write is timed... */
#define BENCH_LAT_MAX 8192               /* ...and a worker keeps at most this many times (then every other) */

#define BREC_SERVICE "django-concurrent-test"

/* One record of the original's concurrent test: service django-concurrent-test, a random level,
 * concurrent-trace-%06d / concurrent-span-%06d, and metadata adv_id, aweme_id, plan_id, monitor_type, co_id,
 * timestamp (RFC 3339, now). The arrays hold any long index. */
typedef struct brec {
    const char *level;
    const char *monitor_type;
    char message[48], trace_id[40], span_id[40], timestamp[40];
    long long adv_id, aweme_id, plan_id, co_id;
} brec;

/* A record ready for logagent_write: r points into rec and f (socket mode). */
typedef struct bprep {
    brec rec;
    logagent_field f[6];
    logagent_record r;
} bprep;

/* The run's records, built before the clock starts so that the bench measures the library and the agent, not
 * its own snprintf/strftime: record index i is entry (i - 1) % n. n = min(count, BENCH_RING_MAX), so records
 * 1..n are the original test's records for those indices and later ones repeat their content (with a log_id
 * of their own: the library makes it). At most about 3.4 MiB (socket) or 2.7 MiB (HTTP). */
typedef struct bring {
    size_t n;
    bprep *socket;      /* socket mode: n prepared records */
    char *json;         /* HTTP mode: the n records' JSON bodies back to back... */
    uint32_t *json_off; /* ...entry k is json[json_off[k] .. json_off[k + 1]) */
} bring;

/* Times of sampled writes: every stride-th write is timed, and when cap times are kept every other one is
 * dropped and the stride doubles, so the memory stays bounded and the sample even. */
typedef struct bench_lat {
    uint32_t *ns;       /* the times, in ns (saturated) */
    size_t n, cap;
    long stride, left;  /* left: writes until the next timed one */
} bench_lat;

typedef struct bench {
    /* read-only while workers run */
    logagent_options opts;
    logagent_client *shared;          /* socket mode: NULL with --per-worker-client */
    const httpc_target *http;         /* --http: where to POST; NULL in socket mode */
    int http_batch;                   /* --http-batch N: NDJSON, N records per request; 0: one JSON record */
    long count;
    int workers;
    int flush_timeout_ms;
    bring ring;                       /* the records, built before the clock starts */

    atomic_long next;                 /* records claimed so far */
    atomic_long ok;                   /* records the agent (or the client library) accepted */
    atomic_long requests;             /* HTTP requests sent */

    pthread_mutex_t err_mu;           /* protects the error fields below */
    long n_errors;                    /* errors besides failed records (client creation, flush, connects) */
    int n_samples;
    char samples[BENCH_MAX_SAMPLES][BENCH_SAMPLE_LEN];
} bench;

typedef struct bench_worker {
    bench *b;
    int id;
    pthread_t thread;
    /* socket mode, the worker's own until it is joined */
    long writes;        /* logagent_write calls */
    int64_t cpu_ns;     /* this thread's CPU time over its write loop (CLOCK_THREAD_CPUTIME_ID) */
    bench_lat lat;      /* sampled logagent_write times */
} bench_worker;

/* Records an error sample (the first BENCH_MAX_SAMPLES are kept); is_record 0 also counts it in n_errors
 * (failed records are counted by count - ok instead). Thread-safe. */
void bench_note(bench *b, int is_record, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Claims up to `want` record indices; returns how many (0: all records are claimed) and the first in *first.
 * Thread-safe, wait-free. */
long bench_claim(bench *b, long want, long *first);

/* Fills *r for record index i, drawing the random fields from *rs (never 0). */
void brec_make(brec *r, long i, uint32_t *rs);

/* r as the original's JSON body {"message","service_name","level","trace_id","span_id","metadata":{...}},
 * without a newline, into buf. Returns its length, or -1 when cap is too small. */
int brec_json(const brec *r, char *buf, size_t cap);

/* Builds the records of a run of count records: prepared for logagent_write (json 0) or as JSON bodies
 * (json 1). Returns 0 or -ENOMEM. bench_ring_free frees them (a zeroed ring too). */
int bench_ring_build(bring *ring, long count, int json);
void bench_ring_free(bring *ring);

/* Sampled write times (bench_lat.c). init sizes the sample for about `writes` writes (0 or -ENOMEM);
 * bench_lat_due says whether this write is to be timed (and counts it); add keeps its time. */
int bench_lat_init(bench_lat *l, long writes);
static inline int bench_lat_due(bench_lat *l)
{
    return --l->left == 0;
}
void bench_lat_add(bench_lat *l, uint64_t ns);
void bench_lat_free(bench_lat *l);

/* The workers' samples together: p50, p99 and max in ns, and how many. Returns 0, -ENODATA (no sample) or
 * -ENOMEM. */
typedef struct bench_lat_summary {
    double p50_ns, p99_ns, max_ns;
    size_t samples;
    long stride;        /* the largest stride among the workers */
} bench_lat_summary;
int bench_lat_summarize(const bench_worker *ws, int n, bench_lat_summary *out);

/* Thread mains (arg: a bench_worker). Socket: records through liblogagent (bench_socket.c). HTTP: one
 * keep-alive connection per worker, POSTing to the agent's HTTP ingest (bench_http.c). */
void *bench_socket_worker(void *arg);
void *bench_http_worker(void *arg);

/* Checks that the HTTP listener answers a connection. Returns 0 or -errno with a message in err. */
int bench_http_probe(const httpc_target *t, char *err, size_t errlen);

/* The agent's record counters, as /stats shows them (bench_stats.c). */
typedef struct bstats {
    long long flushed;   /* records.flushed */
    long long gone;      /* records that will never be flushed: Σ records.dropped + records.dead_letter */
} bstats;

/* GET /stats on the stats socket at path. Returns 0, or -errno with a message in err (-EPROTO: not the
 * expected JSON). */
int bstats_read(const char *path, bstats *out, char *err, size_t errlen);

/* Polls /stats every 20 ms until flushed - base->flushed >= want (returns 0), until records that will never
 * be flushed make that impossible (-ENODATA), or until timeout_ms passes (-ETIMEDOUT; -1: no limit). Sets
 * *delivered to flushed - base->flushed as last seen either way. Other errors: -errno, message in err. */
int bstats_wait(const char *path, const bstats *base, long want, int timeout_ms, long *delivered, char *err,
                size_t errlen);

#endif
