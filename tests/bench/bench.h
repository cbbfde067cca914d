/* bench.h — what logagent-bench's parts share: the run (settings, the work counter, the tally of results and
 * sample errors), the record shape of the original's concurrent test, the two kinds of worker threads
 * (liblogagent socket, HTTP ingest) and the end-to-end wait on the agent's stats socket.
 *
 * Workers claim record indices 1..count from b->next (bench_claim) until none is left, and count what the
 * agent accepted in b->ok; failed is derived at the end (count - ok). Everything else in a bench is read-only
 * while workers run, except the error samples (under err_mu). */
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

typedef struct bench {
    /* read-only while workers run */
    logagent_options opts;
    logagent_client *shared;          /* socket mode: NULL with --per-worker-client */
    const httpc_target *http;         /* --http: where to POST; NULL in socket mode */
    int http_batch;                   /* --http-batch N: NDJSON, N records per request; 0: one JSON record */
    long count;
    int workers;
    int flush_timeout_ms;

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
} bench_worker;

/* Records an error sample (the first BENCH_MAX_SAMPLES are kept); is_record 0 also counts it in n_errors
 * (failed records are counted by count - ok instead). Thread-safe. */
void bench_note(bench *b, int is_record, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Claims up to `want` record indices; returns how many (0: all records are claimed) and the first in *first.
 * Thread-safe, wait-free. */
long bench_claim(bench *b, long want, long *first);

/* One record of the original's concurrent test: service django-concurrent-test, a random level,
 * concurrent-trace-%06d / concurrent-span-%06d, and metadata adv_id, aweme_id, plan_id, monitor_type, co_id,
 * timestamp (RFC 3339, now). */
typedef struct brec {
    const char *level;
    const char *monitor_type;
    char message[64], trace_id[40], span_id[40], timestamp[48];
    long long adv_id, aweme_id, plan_id, co_id;
} brec;

#define BREC_SERVICE "django-concurrent-test"

/* A per-worker random state (never 0). */
uint32_t brec_seed(int worker_id);

/* Fills *r for record index i, drawing the random fields from *rs. */
void brec_make(brec *r, long i, uint32_t *rs);

/* r as the original's JSON body {"message","service_name","level","trace_id","span_id","metadata":{...}},
 * without a newline, into buf. Returns its length, or -1 when cap is too small. */
int brec_json(const brec *r, char *buf, size_t cap);

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
