/* flusher.c — ring -> batches -> upstream calls, with retry (see flusher.h).
 *
 * DESIGN
 * Two threads meet here. The flusher thread is the ring's only consumer: it moves records into `cur`
 * (the batch being built) and decides what to send next. The upstream reaper thread runs on_done for each
 * finished call and decides the batch's fate: acknowledged, retried (queued with a backoff time), or dropped
 * with a reason. They share `mu`, which guards the accounting, the retry queue and the in-flight count; it
 * is taken a few times per batch, never per record, and never on the ingest path.
 *
 * Order: a batch waiting to retry blocks new batches (they wait behind the backoff instead of hammering a
 * failing service, and with --max-inflight 1 records leave in the order they came). The retry queue is
 * kept sorted by batch id.
 *
 * Wake-ups: the flusher arms its doorbell at the top of every turn, so a ring from ingest (new records) or
 * from the reaper (a slot or a retry freed) between its decision and its wait is never lost. */
#include "flush/flusher.h"
#include "common/clock.h"

#include "flush/batch.h"
#include "doorbell.h"
#include "log.h"
#include "flush/otlp.h"
#include "flush/retry.h"
#include "flush/upstream.h"

#include <errno.h>
#include <logagent/v1/log_service.pb-c.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

enum { M_BATCH = 0, M_UNARY = 1 };
enum { STATUS_UNIMPLEMENTED = 12, STATUS_INTERNAL = 13 };

const double flusher_lat_bounds_ms[FLUSHER_LAT_N] = {1,    2,    5,    10,    20,    50,    100,  200,
                                                      500,  1000, 2000, 5000, 10000, 30000, 60000};
const double flusher_size_bounds[FLUSHER_SIZE_N] = {1, 10, 50, 100, 250, 500, 1000, 2000, 5000, 10000, 50000};
const double flusher_bytes_bounds[FLUSHER_BYTES_N] = {1024,   4096,    16384,   65536,   262144,
                                                      524288, 1048576, 2097152, 4194304, 8388608};

struct flusher {
    config cfg;
    ring *ring;
    upstream *up;
    doorbell bell;
    pthread_t thread;
    int started;
    flusher_space_fn on_space;
    void *space_arg;
    _Atomic int want_space;
    _Atomic int shed;  /* --on-full drop-oldest: ingest asked for room */
    _Atomic size_t shed_need; /* ... for a record of this many bytes (the largest asked since the last shed) */
    /* what SIGHUP may change (flusher_reload); read with relaxed loads, never through cfg */
    _Atomic uint64_t max_records, max_bytes, interval_ms;
    /* for /healthz's "ring stuck" (flusher thread writes, relaxed; read by flusher_snapshot_get): when its loop
     * last turned, and since when it has found records in the ring but could take none (0: it is keeping up) */
    _Atomic int64_t heartbeat_ms, stall_since_ms;
    size_t low_water;
    char agent_id[160];

    /* flusher thread only */
    batch *cur;
    int cur_full;
    uint64_t next_id;

    pthread_mutex_t mu; /* everything below */
    pthread_cond_t cv;  /* in-flight count went down */
    unsigned inflight;
    batch *retry_head;
    int unary;
    int stopping, abandon;
    int64_t deadline_ms;
    uint32_t statuses_logged; /* non-retryable statuses already logged (bit per code) */
    uint64_t rng;
    log_limit fail_log, shed_log, partial_log, dead_log;
    int unary_refused;              /* unary mode: the last non-retryable status, for the dead-letter file */
    char unary_refused_details[160];
    uint64_t batch_budget;
    /* --on-full drop-oldest dropped a batch that was backing off: no batch is sent before shed_hold_ms, and the
     * next one sent carries on from shed_attempt (an outage is not probed faster because records are shed) */
    int64_t shed_hold_ms;
    unsigned shed_attempt;
    otlp_exporter *otlp; /* --upstream-protocol otlp (read-only once made); NULL: logagent.v1 */
    spool *sp;          /* NULL without --spool-dir */
    int disk;           /* --buffer disk: every batch goes through the spool */
    log_limit spool_log;
    int64_t seal_retry_ms; /* disk mode: spool full or failing, try sealing again at this time */
    flusher_snapshot acct; /* the counters (latency and text filled at snapshot time) */

    /* Forward acks in disk mode (flusher.h, flusher_spooled): ring_seq is how many records the flusher thread has
     * consumed from the ring (only it writes it); `cur` holds the last cur->n of them, so everything up to
     * ring_seq - cur->n is spooled or dropped. Published with seq_cst stores: lost before settled, settled before
     * reading want_spooled (pairs with flusher_want_spooled then flusher_spooled on the ingest side). */
    uint64_t ring_seq;
    _Atomic uint64_t settled_seq, lost_seq;
    _Atomic int want_spooled;
    flusher_spooled_fn on_spooled;
    void *spooled_arg;
};

#define LIVE(f, field) atomic_load_explicit(&(f)->field, memory_order_relaxed)

/* ---- reaper side: call outcomes -------------------------------------------------------------------- */

/* Queues b for retry at its retry_at_ms, sorted by id. Caller holds mu. */
static void retry_enqueue_locked(flusher *f, batch *b)
{
    batch **pp = &f->retry_head;
    while (*pp && (*pp)->id <= b->id)
        pp = &(*pp)->next;
    b->next = *pp;
    *pp = b;
    *(b->spooled ? &f->acct.spooled : &f->acct.retry_wait) += b->n;
    if (!b->evicted)
        f->acct.held_bytes += b->len;
}

/* Puts b back in the queue until retry_at; a spooled batch leaves memory meanwhile. Caller holds mu. */
static void requeue_locked(flusher *f, batch *b, int64_t retry_at)
{
    if (b->spooled && !b->evicted)
        batch_evict(b);
    b->retry_at_ms = retry_at;
    retry_enqueue_locked(f, b);
}

/* b's fate is settled (delivered, dropped or dead-lettered): its spool frame is no longer needed. */
static void batch_settle(flusher *f, batch *b)
{
    if (b && b->spooled)
        spool_release(f->sp, b->ref.seg);
    batch_free(b);
}

/* Takes the head of the retry queue off it. Caller holds mu. */
static batch *retry_pop_locked(flusher *f)
{
    batch *b = f->retry_head;
    f->retry_head = b->next;
    b->next = NULL;
    *(b->spooled ? &f->acct.spooled : &f->acct.retry_wait) -= b->n;
    if (!b->evicted)
        f->acct.held_bytes -= b->len;
    return b;
}

/* Logs a non-retryable refusal once per distinct status (the counters keep counting). Caller holds mu. */
static void note_rejection_locked(flusher *f, int status, const char *details, size_t records)
{
    uint32_t bit = 1u << (status & 31);
    if (f->statuses_logged & bit)
        return;
    f->statuses_logged |= bit;
    log_write(LOG_ERROR, "\"log service refused a batch: not retried, records dropped (upstream_rejected); logged "
                         "once per status\" status=%s records=%zu details=\"%.160s\"",
              upstream_status_name(status), records, details);
}

/* When b may be tried again: the server's RetryInfo delay if it gave one, else our backoff. */
static int64_t retry_time_locked(flusher *f, const batch *b, const upstream_reply *r)
{
    /* the server's RetryInfo wins over our backoff, capped at max(--retry-max-ms, 5 min) so that a bogus delay
     * cannot stall the pipeline for days */
    int64_t cap = (int64_t)f->cfg.retry_max_ms > 300000 ? (int64_t)f->cfg.retry_max_ms : 300000;
    int64_t delay = r && r->retry_after_ms >= 0 ? (r->retry_after_ms < cap ? r->retry_after_ms : cap)
                                                 : retry_backoff_ms(b->attempt, (int64_t)f->cfg.retry_initial_ms,
                                                                    (int64_t)f->cfg.retry_max_ms, &f->rng);
    return clock_mono_ms() + delay;
}

/* --retry-max-elapsed-s: has b been retried for too long? */
static int retry_expired(const flusher *f, const batch *b)
{
    return f->cfg.retry_max_elapsed_s > 0 && b->first_sent_ms > 0 &&
           clock_mono_ms() - b->first_sent_ms >= (int64_t)f->cfg.retry_max_elapsed_s * 1000;
}

/* A call succeeded: the upstream is no longer failing. Caller holds mu. */
static void note_success_locked(flusher *f)
{
    f->acct.failing = 0;
    f->acct.failing_since_ms = 0;
}

static void note_failure_locked(flusher *f, int status, const char *details)
{
    if (!f->acct.failing)
        f->acct.failing_since_ms = clock_mono_ms();
    f->acct.failing = 1;
    snprintf(f->acct.last_error, sizeof f->acct.last_error, "%s: %s", upstream_status_name(status), details);
    int64_t suppressed = log_limit_check(&f->fail_log, 10000);
    if (suppressed >= 0)
        log_write(LOG_WARN, "\"upstream call failed\" status=%s details=\"%.400s\" suppressed=%lld",
                  upstream_status_name(status), details, (long long)suppressed);
}

/* The bucket of v among n upper bounds (n when above them all). */
static size_t bucket_of(const double *bounds, size_t n, double v)
{
    size_t i = 0;
    while (i < n && v > bounds[i])
        i++;
    return i;
}

/* One completed call of b: its latency, records and bytes go into the histograms. Caller holds mu. */
static void record_latency_locked(flusher *f, const batch *b)
{
    flusher_hist_set *h = &f->acct.hist;
    double ms = (double)(clock_mono_ns() - b->sent_ns) / 1e6;
    h->lat[bucket_of(flusher_lat_bounds_ms, FLUSHER_LAT_N, ms)]++;
    h->lat_sum_s += ms / 1000.0;
    h->size[bucket_of(flusher_size_bounds, FLUSHER_SIZE_N, (double)b->n)]++;
    h->size_sum += b->n;
    h->bytes[bucket_of(flusher_bytes_bounds, FLUSHER_BYTES_N, (double)b->len)]++;
    h->bytes_sum += b->len;
    h->count++;
}

/* A finished call leaves the in-flight set. Caller holds mu. */
static void leave_flight_locked(flusher *f, const batch *b)
{
    f->inflight--;
    f->acct.in_flight -= b->n;
    f->acct.held_bytes -= b->len;
    pthread_cond_broadcast(&f->cv);
}

/* Writes a refused batch to the dead-letter file: counted dead_letter, else (no room, disk error) dropped as
 * upstream_rejected with a rate-limited log line. Caller holds mu. */
static void dead_letter_locked(flusher *f, const batch *b, int status, const char *reason)
{
    spool_refusal why = {status, reason};
    int rc = spool_dead_letter(f->sp, b->id, (uint32_t)b->n, b->buf, b->len, &why);
    if (rc == 0) {
        f->acct.dead_letter += b->n;
        return;
    }
    f->acct.dropped_upstream += b->n;
    int64_t suppressed = log_limit_check(&f->dead_log, 10000);
    if (suppressed >= 0)
        log_write(LOG_ERROR, "\"cannot write the dead-letter file: refused records dropped (upstream_rejected)\" "
                             "records=%zu error=%s errmsg=\"%s\" suppressed=%lld", b->n,
                  rc == -EFBIG ? "EFBIG" : strerrorname_np(-rc) ? strerrorname_np(-rc) : "unknown",
                  rc != -EFBIG                       ? strerror(-rc)
                  : f->cfg.deadletter_max_bytes == 0 ? "no dead-letter file (--deadletter-max-bytes 0)"
                                                     : "batch over half of --deadletter-max-bytes",
                  (long long)suppressed);
}

/* Splits b's entries by state: ENTRY_OK flushed, ENTRY_DROP dropped (dead-lettered in disk mode, with status and
 * reason), ENTRY_RETRY into a retry batch. Caller holds mu (allocation under it is rare: only on partial failure). */
static void settle_entries_locked(flusher *f, batch *b, const uint8_t *state, int status, const char *reason)
{
    batch *rb = NULL, *db = NULL;
    for (size_t i = 0; i < b->n; i++) {
        size_t len;
        const uint8_t *e = batch_entry(b, i, &len);
        if (state[i] == ENTRY_OK) {
            f->acct.flushed++;
        } else if (state[i] == ENTRY_RETRY && (!f->abandon || f->sp)) {
            if (!rb && (rb = batch_new(b->id)) != NULL) {
                rb->attempt = b->attempt;
                rb->first_sent_ms = b->first_sent_ms;
            }
            if (rb)
                rb->observed_ns = b->observed_ns;
            if (rb && batch_add(rb, e, len) == 0)
                continue;
            f->acct.dropped_upstream++; /* out of memory: counted, never silent */
        } else if (state[i] == ENTRY_RETRY) {
            f->acct.dropped_shutdown++;
        } else if (f->disk && (db || (db = batch_new(b->id)) != NULL) && batch_add(db, e, len) == 0) {
            continue; /* dead-lettered below */
        } else {
            f->acct.dropped_upstream++;
        }
    }
    if (db)
        dead_letter_locked(f, db, status, reason);
    batch_free(db);
    if (rb && f->disk && spool_append(f->sp, rb->id, (uint32_t)rb->n, rb->buf, rb->len, &rb->ref) == 0)
        rb->spooled = 1;
    if (rb && retry_expired(f, rb)) {
        f->acct.dropped_retry_expired += rb->n;
        batch_settle(f, rb);
    } else if (rb) {
        requeue_locked(f, rb, retry_time_locked(f, rb, NULL));
    }
}

/* Reads BatchWriteLogsResponse.rejected into per-entry states, and the first non-retryable error_message into
 * why. Returns the number rejected. */
static size_t parse_rejects(const upstream_reply *r, uint8_t *state, size_t n, char *why, size_t why_len)
{
    Logagent__V1__BatchWriteLogsResponse *resp =
        r->body ? logagent__v1__batch_write_logs_response__unpack(NULL, r->body_len, r->body) : NULL;
    size_t rejected = 0;
    if (!resp)
        return 0; /* empty or unreadable body: the status said OK, so all were accepted */
    for (size_t i = 0; i < resp->n_rejected; i++) {
        uint32_t idx = resp->rejected[i]->index;
        if (idx < n && state[idx] == ENTRY_OK) {
            state[idx] = resp->rejected[i]->retryable ? ENTRY_RETRY : ENTRY_DROP;
            rejected++;
            if (state[idx] == ENTRY_DROP && !why[0])
                snprintf(why, why_len, "entry refused (BatchWriteLogsResponse.rejected): %s",
                         resp->rejected[i]->error_message ? resp->rejected[i]->error_message : "");
        }
    }
    logagent__v1__batch_write_logs_response__free_unpacked(resp, NULL);
    return rejected;
}

/* OTLP answered OK: partial_success.rejected_log_records are dropped (counted upstream_rejected; OTLP does not
 * say which ones, and its spec says not to retry them), the rest flushed. */
static void otlp_done(flusher *f, batch *b, const upstream_reply *r)
{
    char msg[160];
    uint64_t rejected = otlp_rejected(r->body, r->body_len, b->n, msg, sizeof msg);
    pthread_mutex_lock(&f->mu);
    record_latency_locked(f, b);
    leave_flight_locked(f, b);
    f->acct.batches_sent++;
    note_success_locked(f);
    f->acct.flushed += b->n - rejected;
    f->acct.dropped_upstream += rejected;
    if (rejected) {
        int64_t suppressed = log_limit_check(&f->partial_log, 10000);
        if (suppressed >= 0)
            log_write(LOG_WARN, "\"OTLP export partially rejected: records dropped (upstream_rejected)\" records=%llu "
                                "error_message=\"%.120s\" suppressed=%lld",
                      (unsigned long long)rejected, msg, (long long)suppressed);
    }
    pthread_mutex_unlock(&f->mu);
    batch_settle(f, b);
}

static void batch_done(flusher *f, batch *b, const upstream_reply *r)
{
    int retryable = retry_status_retryable(r->status);
    uint8_t *state = NULL;
    char why[200] = "";
    if (r->status == 0 && f->otlp) {
        otlp_done(f, b, r);
        return;
    }
    if (r->status == 0 && (state = calloc(b->n ? b->n : 1, 1)) != NULL && parse_rejects(r, state, b->n, why, sizeof why) > 0) {
        pthread_mutex_lock(&f->mu);
        record_latency_locked(f, b);
        leave_flight_locked(f, b);
        f->acct.batches_sent++;
        note_success_locked(f); /* the service answered; some entries are retried alone */
        settle_entries_locked(f, b, state, 0, why);
        pthread_mutex_unlock(&f->mu);
        free(state);
        batch_settle(f, b);
        return;
    }
    free(state);
    pthread_mutex_lock(&f->mu);
    record_latency_locked(f, b);
    leave_flight_locked(f, b);
    if (r->status == 0) {
        f->acct.batches_sent++;
        f->acct.flushed += b->n;
        note_success_locked(f);
    } else if (r->status == STATUS_UNIMPLEMENTED && f->cfg.upstream_rpc == RPC_AUTO && !f->otlp) {
        if (!f->unary)
            log_write(LOG_WARN, "\"log service has no BatchWriteLogs (UNIMPLEMENTED): switching to unary WriteLog "
                                "for good\" method=%s",
                      f->cfg.batch_method);
        f->unary = 1;
        b->attempt = 0;
        requeue_locked(f, b, 0);
        b = NULL;
    } else if (retryable && !f->abandon && retry_expired(f, b)) {
        f->acct.batches_failed++;
        note_failure_locked(f, r->status, r->details);
        f->acct.dropped_retry_expired += b->n;
    } else if (retryable && (!f->abandon || b->spooled || f->sp)) { /* abandoning: kept or spilled to disk */
        f->acct.batches_failed++;
        note_failure_locked(f, r->status, r->details);
        requeue_locked(f, b, retry_time_locked(f, b, r));
        b = NULL;
    } else if (f->disk && !f->abandon) {
        f->acct.batches_failed++;
        note_failure_locked(f, r->status, r->details);
        dead_letter_locked(f, b, r->status, r->details);
        note_rejection_locked(f, r->status, r->details, b->n);
    } else {
        f->acct.batches_failed++;
        note_failure_locked(f, r->status, r->details);
        if (f->abandon) {
            f->acct.dropped_shutdown += b->n;
        } else {
            f->acct.dropped_upstream += b->n;
            note_rejection_locked(f, r->status, r->details, b->n);
        }
    }
    pthread_mutex_unlock(&f->mu);
    batch_settle(f, b);
}

/* One of b's unary calls (or send_batch's guard) is done. When it was the last, settles b's entries and returns 1:
 * the caller frees b with batch_settle after unlocking. Caller holds mu. */
static int unary_release_locked(flusher *f, batch *b)
{
    if (--b->pending > 0)
        return 0;
    record_latency_locked(f, b);
    leave_flight_locked(f, b);
    f->acct.batches_sent++;
    settle_entries_locked(f, b, b->state, f->unary_refused, f->unary_refused_details);
    return 1;
}

static void unary_done(flusher *f, batch_call *c, const upstream_reply *r)
{
    batch *b = c->b;
    b->state[c->index] = r->status == 0 ? ENTRY_OK : retry_status_retryable(r->status) ? ENTRY_RETRY : ENTRY_DROP;
    pthread_mutex_lock(&f->mu);
    f->acct.unary_calls++;
    if (r->status == 0)
        note_success_locked(f);
    else
        note_failure_locked(f, r->status, r->details);
    if (b->state[c->index] == ENTRY_DROP) { /* what the dead-letter file says of this batch's refused entries */
        f->unary_refused = r->status;
        snprintf(f->unary_refused_details, sizeof f->unary_refused_details, "%s", r->details);
    }
    int last = unary_release_locked(f, b);
    pthread_mutex_unlock(&f->mu);
    if (last)
        batch_settle(f, b);
}

static void on_done(void *ctx, void *arg, const upstream_reply *r)
{
    flusher *f = ctx;
    batch_call *c = arg;
    if (c->index == BATCH_WHOLE)
        batch_done(f, c->b, r);
    else
        unary_done(f, c, r);
    doorbell_ring(&f->bell);
}

/* ---- flusher thread: building and sending ------------------------------------------------------------ */

static void call_failed_to_start(flusher *f, batch_call *c)
{
    upstream_reply r = {.status = 14, .details = "could not start the call", .retry_after_ms = -1}; /* backoff */
    on_done(f, c, &r);
}

/* Reads an evicted batch back from the spool. On failure (a frame that no longer passes its CRC) the batch is
 * dropped, counted dropped_spool_corrupt, and -EIO returned. */
static int reload(flusher *f, batch *b)
{
    size_t plen = b->len, n = b->n;
    uint8_t *buf = malloc(b->len ? b->len : 1);
    int rc = buf ? spool_read(f->sp, &b->ref, buf) : -ENOMEM;
    if (rc == 0)
        rc = batch_load(b, buf, b->len);
    free(buf);
    if (rc == 0)
        return 0;
    log_write(LOG_ERROR, "\"spooled batch unreadable: dropped\" batch_id=%llu records=%u error=%d",
              (unsigned long long)b->id, (unsigned)n, rc);
    pthread_mutex_lock(&f->mu);
    f->inflight--;
    f->acct.in_flight -= n;
    f->acct.held_bytes -= plen;
    f->acct.dropped_spool_corrupt += n;
    pthread_cond_broadcast(&f->cv);
    pthread_mutex_unlock(&f->mu);
    batch_settle(f, b);
    return -EIO;
}

/* Sends b (already counted in flight) as one BatchWriteLogs call, or as one WriteLog per entry. */
static void send_batch(flusher *f, batch *b, int unary)
{
    if (b->evicted && reload(f, b) < 0)
        return;
    if (b->attempt++ == 0)
        b->first_sent_ms = clock_mono_ms();
    b->sent_ns = clock_mono_ns();
    b->unary = unary;
    if (!unary) {
        size_t len;
        int err = 0;
        uint8_t *payload = f->otlp ? otlp_payload(f->otlp, b, b->observed_ns ? b->observed_ns : clock_real_ns(), &len, &err)
                                   : batch_payload(b, f->agent_id, &len);
        b->whole = (batch_call){b, BATCH_WHOLE};
        if (err == -EINVAL) { /* cannot happen with entries record.c made; if it does, never retried in a loop */
            upstream_reply r = {.status = STATUS_INTERNAL, .details = "batch entries do not decode (OTLP conversion)",
                                .retry_after_ms = -1};
            on_done(f, &b->whole, &r);
            return;
        }
        if (!payload || upstream_call(f->up, M_BATCH, payload, len, (int64_t)f->cfg.rpc_timeout_ms, &b->whole) < 0)
            call_failed_to_start(f, &b->whole);
        free(payload);
        return;
    }
    free(b->state);
    free(b->calls);
    b->state = calloc(b->n, 1);
    b->calls = calloc(b->n, sizeof *b->calls);
    if (!b->state || !b->calls) { /* try again later as a whole */
        b->whole = (batch_call){b, BATCH_WHOLE};
        call_failed_to_start(f, &b->whole);
        return;
    }
    pthread_mutex_lock(&f->mu);
    b->pending = (unsigned)b->n + 1; /* +1: the guard released below, so completions can't finish b early */
    pthread_mutex_unlock(&f->mu);
    for (size_t i = 0; i < b->n; i++) {
        size_t len;
        const uint8_t *e = batch_entry(b, i, &len);
        b->calls[i] = (batch_call){b, (uint32_t)i};
        if (upstream_call(f->up, M_UNARY, e, len, (int64_t)f->cfg.rpc_timeout_ms, &b->calls[i]) < 0)
            call_failed_to_start(f, &b->calls[i]);
    }
    pthread_mutex_lock(&f->mu);
    int last = unary_release_locked(f, b);
    pthread_mutex_unlock(&f->mu);
    if (last)
        batch_settle(f, b);
}

/* Calls on_space when ingest waits for room and the ring has drained below half. */
static void maybe_space(flusher *f)
{
    atomic_thread_fence(memory_order_seq_cst); /* our tail release before their flag; pairs with pause_all */
    if (atomic_load(&f->want_space) && ring_used_bytes(f->ring) < f->low_water && atomic_exchange(&f->want_space, 0))
        f->on_space(f->space_arg);
}

/* Moves committed records from the ring into cur until it is full, the batch budget is used up (batches in
 * flight and waiting to retry count against it), or the ring is empty. */
static uint64_t pull(flusher *f)
{
    pthread_mutex_lock(&f->mu);
    uint64_t held = f->acct.held_bytes;
    pthread_mutex_unlock(&f->mu);
    if (!f->cur) {
        f->cur = batch_new(++f->next_id);
        f->cur_full = 0;
        if (!f->cur)
            return 0;
    }
    batch *b = f->cur;
    if (b->n == 0)
        f->cur_full = 0; /* "full" only ever describes records waiting to leave; an empty batch is never full */
    uint64_t k = 0;
    const void *p;
    size_t len;
    while (!f->cur_full && (p = ring_peek(f->ring, &len)) != NULL) {
        if (b->n > 0 && batch_size_with(b, len) > LIVE(f, max_bytes)) {
            f->cur_full = 1;
            break;
        }
        if ((b->n > 0 || held > 0) && held + batch_size_with(b, len) > f->batch_budget) {
            f->cur_full = 1; /* --buffer-bytes: send what we have; the ring holds the rest */
            break;
        }
        if (batch_add(b, p, len) < 0) { /* out of memory: send what we have, the record stays in the ring */
            f->cur_full = 1;
            break;
        }
        if (b->n == 1) {
            b->first_ms = clock_mono_ms();
            b->observed_ns = clock_real_ns();
        }
        ring_consume(f->ring);
        f->ring_seq++;
        k++;
        if (b->n >= LIVE(f, max_records))
            f->cur_full = 1;
    }
    if (k == 0) {
        maybe_space(f); /* a request may have raced with the last release */
        return 0;
    }
    ring_release(f->ring);
    pthread_mutex_lock(&f->mu);
    f->acct.taken += k;
    f->acct.batching += k;
    pthread_mutex_unlock(&f->mu);
    maybe_space(f);
    return k;
}

/* One turn of the loop took `took` records: records left in the ring with none taken start (or continue) a stall. */
static void note_progress(flusher *f, uint64_t took, int64_t now)
{
    size_t len;
    int64_t stall = took || !ring_peek(f->ring, &len) ? 0 : LIVE(f, stall_since_ms) ? LIVE(f, stall_since_ms) : now;
    atomic_store_explicit(&f->heartbeat_ms, now, memory_order_relaxed);
    atomic_store_explicit(&f->stall_since_ms, stall, memory_order_relaxed);
}

/* --on-full drop-oldest: how much room each request for it makes: an eighth of the ring. Ingest asks again each
 * time the ring is full, so the records shed per second follow the records arriving per second in slices of this
 * size (never "half the buffer, then nothing"). */
enum { SHED_SLICE = 8 };

static size_t ring_room(const flusher *f) { return ring_capacity(f->ring) - ring_used_bytes(f->ring); }

/* Drops the oldest queued batches: in memory every batch waiting to retry; with --buffer disk every batch at the
 * head of the queue from the oldest spool segment (so that the segment is deleted and the spool has room again).
 * A dropped batch that was backing off hands its backoff on (shed_hold_ms, shed_attempt: see next_to_send_locked).
 * Returns the records dropped. Flusher thread. */
static uint64_t shed_queue(flusher *f)
{
    batch *gone = NULL;
    uint64_t k = 0;
    pthread_mutex_lock(&f->mu);
    int spooled = f->retry_head && f->retry_head->spooled;
    uint64_t seg = spooled ? f->retry_head->ref.seg : 0;
    while (f->retry_head && f->retry_head->spooled == spooled && (!spooled || f->retry_head->ref.seg == seg)) {
        batch *b = retry_pop_locked(f);
        if (b->attempt > 0 && b->retry_at_ms > f->shed_hold_ms)
            f->shed_hold_ms = b->retry_at_ms;
        if (b->attempt > f->shed_attempt)
            f->shed_attempt = b->attempt;
        f->acct.dropped_buffer_full += b->n;
        k += b->n;
        b->next = gone;
        gone = b;
    }
    pthread_mutex_unlock(&f->mu);
    while (gone) { /* spool_release does file I/O: not under mu */
        batch *b = gone;
        gone = b->next;
        batch_settle(f, b);
    }
    return k;
}

/* Drops the batch being built (it holds the newest records taken from the ring). Returns the records dropped. */
static uint64_t shed_cur(flusher *f)
{
    if (!f->cur || f->cur->n == 0)
        return 0;
    uint64_t k = f->cur->n;
    pthread_mutex_lock(&f->mu);
    f->acct.batching -= k;
    f->acct.dropped_buffer_full += k;
    pthread_mutex_unlock(&f->mu);
    batch_free(f->cur);
    f->cur = NULL;
    atomic_store(&f->lost_seq, f->ring_seq);
    return k;
}

/* Drops the oldest records of the ring until `want` bytes of it are free. Returns the records dropped. */
static uint64_t shed_ring(flusher *f, size_t want)
{
    size_t room = ring_room(f), len, freed = 0;
    uint64_t k = 0;
    while (room + freed < want && ring_peek(f->ring, &len)) {
        ring_consume(f->ring);
        freed += ((len + 7u) & ~(size_t)7u) + 8; /* the record and its header, as the ring lays them out */
        k++;
    }
    if (!k)
        return 0;
    ring_release(f->ring);
    f->ring_seq += k;
    atomic_store(&f->lost_seq, f->ring_seq);
    pthread_mutex_lock(&f->mu);
    f->acct.taken += k;
    f->acct.dropped_buffer_full += k;
    pthread_mutex_unlock(&f->mu);
    return k;
}

static void seal(flusher *f, int64_t now);

/* --on-full drop-oldest: ingest found the ring full and asked for room. Drops the oldest records that are not in
 * flight until a slice of the ring (SHED_SLICE), and room for the record ingest holds, is free, oldest first: the queued batches (shed_queue), then — in
 * memory, or when the spool still refuses — the batch being built, then the oldest records of the ring. With
 * --buffer disk the oldest records are the oldest spool segment: once it is gone the batch being built is sealed
 * into the room it left, and the ring drains into the spool as usual. Counted dropped_buffer_full; ingest is told
 * there is room (on_space) whatever the ring's low-water mark. Returns the records it took out of the ring (shed or
 * batched: progress for /healthz's "ring stuck"). Flusher thread only. */
static uint64_t shed_oldest(flusher *f)
{
    size_t cap = ring_capacity(f->ring), need = atomic_exchange(&f->shed_need, 0);
    size_t want = cap / SHED_SLICE, fit = 2 * (((need + 7u) & ~(size_t)7u) + 8); /* the record's ring footprint */
    if (want < fit) /* free space in two pieces (before and after the wrap): one of them then holds the record */
        want = fit < cap ? fit : cap;
    uint64_t k = shed_queue(f), taken = 0;
    if (k && f->disk) { /* seal what is due into the freed spool while the ring lacks room */
        int64_t now = clock_mono_ms();
        f->seal_retry_ms = 0;
        while (ring_room(f) < want && f->cur && f->cur->n > 0) {
            seal(f, now);
            if (f->cur)
                break; /* not due, or the spool refused it */
            taken += pull(f);
        }
    }
    if (ring_room(f) < want) {
        uint64_t from_cur = shed_cur(f), from_ring = shed_ring(f, want);
        k += from_cur + from_ring;
        taken += from_ring;
    }
    if (k) {
        int64_t suppressed = log_limit_check(&f->shed_log, 10000);
        if (suppressed >= 0)
            log_write(LOG_WARN, "\"buffer full: oldest records dropped (--on-full drop-oldest)\" records=%llu "
                                "suppressed=%lld", (unsigned long long)k, (long long)suppressed);
    }
    taken += pull(f);
    atomic_thread_fence(memory_order_seq_cst); /* our tail release before their flag, as in maybe_space */
    if (atomic_load(&f->want_space) && atomic_exchange(&f->want_space, 0))
        f->on_space(f->space_arg);
    return taken;
}

/* --buffer disk: a due batch is appended to the spool and joins the queue, leaving memory; the queue sends it.
 * When the spool is full (or failing) the batch waits, the ring fills, and --on-full applies. */
static void seal(flusher *f, int64_t now)
{
    batch *b = f->cur;
    if (!f->disk || !b || b->n == 0 || now < f->seal_retry_ms)
        return;
    pthread_mutex_lock(&f->mu);
    int stopping = f->stopping;
    pthread_mutex_unlock(&f->mu);
    if (!f->cur_full && !stopping && now - b->first_ms < (int64_t)LIVE(f, interval_ms))
        return;
    spool_ref ref;
    int rc = spool_append(f->sp, b->id, (uint32_t)b->n, b->buf, b->len, &ref);
    if (rc < 0) {
        f->seal_retry_ms = now + 50;
        f->cur_full = 1;
        if (rc == -ENOSPC || rc == -EDQUOT)
            return; /* the filesystem is full: the spool logs each episode once */
        int64_t suppressed = log_limit_check(&f->spool_log, 10000);
        if (suppressed >= 0 && rc == -ENOBUFS)
            log_write(LOG_WARN, "\"spool full (--spool-max-bytes): batches wait in memory, then --on-full applies\" "
                                "suppressed=%lld", (long long)suppressed);
        else if (suppressed >= 0)
            log_write(LOG_ERROR, "\"cannot write the spool: batches wait in memory, then --on-full applies\" "
                                 "error=%s errmsg=\"%s\" suppressed=%lld",
                      strerrorname_np(-rc) ? strerrorname_np(-rc) : "unknown", strerror(-rc), (long long)suppressed);
        return;
    }
    b->spooled = 1;
    b->ref = ref;
    pthread_mutex_lock(&f->mu);
    f->acct.batching -= b->n;
    f->cur = NULL;
    requeue_locked(f, b, 0);
    pthread_mutex_unlock(&f->mu);
}

/* Picks the next batch to send, if any, and moves it into flight. Caller holds mu. */
static batch *next_to_send_locked(flusher *f, int64_t now)
{
    if (f->inflight >= f->cfg.max_inflight || (!f->stopping && now < f->shed_hold_ms))
        return NULL;
    batch *b = NULL;
    if (f->retry_head) {
        if (f->retry_head->retry_at_ms > now)
            return NULL;
        b = retry_pop_locked(f);
        f->acct.batches_retried += b->attempt > 0;
    } else if (!f->disk && f->cur && f->cur->n > 0 &&
               (f->cur_full || f->stopping || now - f->cur->first_ms >= (int64_t)LIVE(f, interval_ms))) {
        b = f->cur;
        f->cur = NULL;
        f->acct.batching -= b->n;
    }
    if (b && b->attempt == 0 && f->shed_attempt > 0) { /* takes over the backoff of a shed batch */
        b->attempt = f->shed_attempt;
        b->first_sent_ms = now;
        f->shed_attempt = 0;
    }
    if (b) {
        f->inflight++;
        f->acct.in_flight += b->n;
        f->acct.held_bytes += b->len;
    }
    return b;
}

/* How long the flusher may sleep before something becomes due. Caller holds mu. */
static int wait_ms_locked(flusher *f, int64_t now)
{
    int64_t t = 1000;
    if (f->inflight < f->cfg.max_inflight) {
        if (!f->stopping && now < f->shed_hold_ms)
            t = f->shed_hold_ms - now;
        else if (f->retry_head)
            t = f->retry_head->retry_at_ms - now;
        else if (!f->disk && f->cur && f->cur->n > 0)
            t = f->cur->first_ms + (int64_t)LIVE(f, interval_ms) - now;
    }
    if (f->disk && f->cur && f->cur->n > 0) { /* sealing into the spool does not wait for a call slot */
        int64_t due = f->cur_full ? now : f->cur->first_ms + (int64_t)LIVE(f, interval_ms);
        if (due < f->seal_retry_ms)
            due = f->seal_retry_ms;
        if (due - now < t)
            t = due - now;
    }
    if (f->stopping && f->deadline_ms - now < t)
        t = f->deadline_ms - now;
    return t < 0 ? 0 : t > 1000 ? 1000 : (int)t;
}

/* Gives up on everything still held (drain timeout): cancels calls, counts the rest dropped_shutdown. */
/* At shutdown: writes b to the spool for the next run (counted spooled), or counts it dropped_shutdown.
 * Frees b. Caller holds mu. */
static void spill_locked(flusher *f, batch *b)
{
    spool_ref ref;
    if (b->n > 0 && f->sp && spool_append(f->sp, b->id, (uint32_t)b->n, b->buf, b->len, &ref) == 0)
        f->acct.spooled += b->n;
    else
        f->acct.dropped_shutdown += b->n;
    batch_free(b);
}

/* Gives up on delivering what is still held (drain timeout): cancels calls; what has a spool frame stays on disk,
 * the rest is spilled to the spool when there is one, else counted dropped_shutdown. */
static void abandon_rest(flusher *f)
{
    upstream_cancel_all(f->up);
    pthread_mutex_lock(&f->mu);
    while (f->inflight > 0)
        pthread_cond_wait(&f->cv, &f->mu);
    batch *keep = NULL;
    while (f->retry_head) {
        batch *b = retry_pop_locked(f);
        if (b->spooled) {
            b->next = keep;
            keep = b;
        } else {
            spill_locked(f, b);
        }
    }
    while (keep) { /* back in the queue, still counted spooled: freed at exit, kept on disk */
        batch *b = keep;
        keep = b->next;
        requeue_locked(f, b, 0);
    }
    if (f->cur) {
        f->acct.batching -= f->cur->n;
        spill_locked(f, f->cur);
        f->cur = NULL;
    }
    size_t len;
    const void *p;
    batch *b = NULL;
    while ((p = ring_peek(f->ring, &len)) != NULL) {
        if (!b && !(b = batch_new(++f->next_id)))
            break;
        if (batch_add(b, p, len) < 0)
            break;
        ring_consume(f->ring);
        f->ring_seq++; /* not published: ingest has closed its connections by now */
        f->acct.taken++;
        if (b->n >= LIVE(f, max_records) || b->len >= LIVE(f, max_bytes)) {
            spill_locked(f, b);
            b = NULL;
        }
    }
    if (b)
        spill_locked(f, b);
    while (ring_peek(f->ring, &len)) { /* only when memory ran out above */
        ring_consume(f->ring);
        f->ring_seq++;
        f->acct.taken++;
        f->acct.dropped_shutdown++;
    }
    ring_release(f->ring);
    pthread_mutex_unlock(&f->mu);
}

/* Disk mode: publishes how far records have left memory (flusher_spooled) and rings ingest when it asked. */
static void publish_spooled(flusher *f)
{
    uint64_t settled = f->ring_seq - (f->cur ? f->cur->n : 0);
    if (!f->disk || settled == atomic_load_explicit(&f->settled_seq, memory_order_relaxed))
        return;
    atomic_store(&f->settled_seq, settled);
    if (f->on_spooled && atomic_load(&f->want_spooled) && atomic_exchange(&f->want_spooled, 0))
        f->on_spooled(f->spooled_arg);
}

static void *flusher_main(void *arg)
{
    flusher *f = arg;
    for (;;) {
        doorbell_arm(&f->bell);
        uint64_t took = atomic_load(&f->shed) && atomic_exchange(&f->shed, 0) ? shed_oldest(f) : 0;
        took += pull(f);
        int64_t now = clock_mono_ms();
        note_progress(f, took, now);
        seal(f, now);
        publish_spooled(f);
        if (f->sp)
            spool_tick(f->sp);
        pthread_mutex_lock(&f->mu);
        batch *b = next_to_send_locked(f, now);
        int unary = !f->otlp && (f->unary || f->cfg.upstream_rpc == RPC_UNARY);
        int done = !b && f->stopping && f->inflight == 0 && !f->retry_head && (!f->cur || f->cur->n == 0);
        int expired = f->stopping && now >= f->deadline_ms;
        if (expired && !done)
            f->abandon = 1;
        int wait = wait_ms_locked(f, now);
        pthread_mutex_unlock(&f->mu);
        size_t len;
        if (b) {
            send_batch(f, b, unary);
            continue;
        }
        if (done && !ring_peek(f->ring, &len))
            break;
        if (expired)
            break;
        if (!ring_peek(f->ring, &len) || f->cur_full)
            doorbell_wait(&f->bell, wait);
    }
    if (f->abandon)
        abandon_rest(f);
    return NULL;
}

/* ---- lifecycle ---------------------------------------------------------------------------------------- */

/* Opens the spool and queues what an earlier run left in it (oldest first, evicted: read back when sent). */
static int open_spool(flusher *f)
{
    int rc = spool_open(f->cfg.spool_dir, f->cfg.spool_max_bytes, f->cfg.spool_fsync, &f->sp);
    if (rc < 0)
        return rc;
    spool_set_dead_letter_max(f->sp, f->cfg.deadletter_max_bytes);
    f->disk = f->cfg.buffer == BUFFER_DISK;
    spool_ref ref;
    batch *tail = NULL;
    while (spool_replay_next(f->sp, &ref)) {
        batch *b = batch_new(ref.id);
        if (!b)
            return -ENOMEM;
        b->n = ref.n;
        b->len = ref.len;
        b->spooled = b->evicted = 1;
        b->ref = ref;
        /* the spool hands frames out oldest first: append (ids of a partial-reject retry repeat their parent's) */
        if (tail)
            tail->next = b;
        else
            f->retry_head = b;
        tail = b;
        f->acct.spooled += b->n;
        f->acct.replayed += b->n;
        if (b->id > f->next_id)
            f->next_id = b->id;
    }
    if (f->acct.replayed)
        log_write(LOG_INFO, "\"replaying the spool\" records=%llu", (unsigned long long)f->acct.replayed);
    return 0;
}

static void set_live(flusher *f, const config *cfg)
{
    atomic_store_explicit(&f->max_records, cfg->batch_max_records, memory_order_relaxed);
    atomic_store_explicit(&f->max_bytes, cfg->batch_max_bytes, memory_order_relaxed);
    atomic_store_explicit(&f->interval_ms, cfg->flush_interval_ms, memory_order_relaxed);
}

int64_t flusher_heartbeat_ms(flusher *f) { return atomic_load_explicit(&f->heartbeat_ms, memory_order_relaxed); }

void flusher_reload(flusher *f, const config *cfg)
{
    set_live(f, cfg);
    doorbell_ring(&f->bell); /* a shorter interval may make the building batch due now */
}

flusher *flusher_new(const config *cfg, ring *r, flusher_space_fn on_space, void *space_arg)
{
    flusher *f = calloc(1, sizeof *f);
    if (!f)
        return NULL;
    f->cfg = *cfg;
    f->heartbeat_ms = clock_mono_ms();
    set_live(f, cfg);
    f->ring = r;
    f->on_space = on_space;
    f->space_arg = space_arg;
    f->low_water = ring_capacity(r) / 2;
    f->batch_budget = cfg->buffer_bytes > ring_capacity(r) * 2 ? cfg->buffer_bytes - ring_capacity(r)
                                                                : ring_capacity(r);
    pthread_mutex_init(&f->mu, NULL);
    pthread_cond_init(&f->cv, NULL);
    if (getrandom(&f->rng, sizeof f->rng, 0) != sizeof f->rng || f->rng == 0)
        f->rng = 0x9e3779b97f4a7c15ULL ^ (uint64_t)getpid();
    char host[64] = "unknown";
    gethostname(host, sizeof host - 1);
    snprintf(f->agent_id, sizeof f->agent_id, "%s/%d/%llx", host, (int)getpid(), (unsigned long long)(f->rng >> 16));
    if (doorbell_init(&f->bell) < 0) {
        log_write(LOG_ERROR, "\"cannot create eventfd\" errno=%d", errno);
        flusher_free(f);
        return NULL;
    }
    upstream_tls tls = {.ca_file = cfg->ca_file, .cert_file = cfg->cert_file, .key_file = cfg->key_file,
                        .server_name = cfg->tls_server_name};
    upstream_config uc = {.target = cfg->upstream,
                          .tls = cfg->upstream_tls ? &tls : NULL,
                          .token_file = cfg->token_file[0] ? cfg->token_file : NULL,
                          .methods = {cfg->batch_method, cfg->unary_method},
                          .reconnect_max_ms = cfg->retry_max_ms < 5000 ? (int64_t)cfg->retry_max_ms : 5000,
                          .done = on_done,
                          .ctx = f};
    if (cfg->spool_dir[0] && open_spool(f) < 0) {
        flusher_free(f);
        return NULL;
    }
    if (uc.token_file && !uc.tls)
        log_write(LOG_WARN, "\"token-file without upstream-tls: the bearer token crosses the network in clear "
                            "text\" upstream=%s", cfg->upstream);
    char err[256];
    if (cfg->upstream_protocol == PROTOCOL_OTLP) {
        if (!(f->otlp = otlp_exporter_new(cfg->resource_attr, err, sizeof err))) {
            log_write(LOG_ERROR, "\"cannot set up the OTLP exporter\" error=\"%s\"", err);
            flusher_free(f);
            return NULL;
        }
        uc.methods[0] = OTLP_EXPORT_METHOD;
        log_write(LOG_INFO, "\"upstream protocol otlp: one LogsService/Export per batch (upstream-rpc ignored)\" "
                            "upstream=%s method=%s", cfg->upstream, OTLP_EXPORT_METHOD);
    }
    if (!(f->up = upstream_new(&uc, err, sizeof err))) {
        log_write(LOG_ERROR, "\"cannot create the gRPC channel\" upstream=%s error=\"%s\"", cfg->upstream, err);
        flusher_free(f);
        return NULL;
    }
    return f;
}

int flusher_start(flusher *f)
{
    int rc = pthread_create(&f->thread, NULL, flusher_main, f);
    if (rc != 0)
        return -rc;
    f->started = 1;
    return 0;
}

void flusher_notify(flusher *f) { doorbell_ring(&f->bell); }

void flusher_want_space(flusher *f)
{
    atomic_store(&f->want_space, 1);
    doorbell_ring(&f->bell);
}

void flusher_shed_oldest(flusher *f, size_t need)
{
    size_t had = atomic_load(&f->shed_need);
    while (had < need && !atomic_compare_exchange_weak(&f->shed_need, &had, need))
        ;
    atomic_store(&f->want_space, 1);
    atomic_store(&f->shed, 1);
    doorbell_ring(&f->bell);
}

void flusher_spooled(flusher *f, uint64_t *settled, uint64_t *lost)
{
    *settled = atomic_load(&f->settled_seq);
    *lost = atomic_load(&f->lost_seq);
}

void flusher_set_spooled_fn(flusher *f, flusher_spooled_fn fn, void *arg)
{
    f->on_spooled = fn;
    f->spooled_arg = arg;
}

void flusher_want_spooled(flusher *f) { atomic_store(&f->want_spooled, 1); }

void flusher_stop(flusher *f, int64_t drain_ms)
{
    if (!f->started)
        return;
    pthread_mutex_lock(&f->mu);
    f->stopping = 1;
    f->deadline_ms = clock_mono_ms() + drain_ms;
    pthread_mutex_unlock(&f->mu);
    uint64_t one = 1; /* wake it whether or not its bell is armed */
    ssize_t w = write(f->bell.fd, &one, sizeof one);
    (void)w;
    pthread_join(f->thread, NULL);
    f->started = 0;
}

void flusher_free(flusher *f)
{
    if (!f)
        return;
    upstream_free(f->up); /* waits for calls still completing */
    batch_free(f->cur);
    for (batch *b = f->retry_head, *next; b; b = next) {
        next = b->next;
        batch_free(b);
    }
    spool_close(f->sp);
    otlp_exporter_free(f->otlp);
    doorbell_close(&f->bell);
    pthread_mutex_destroy(&f->mu);
    pthread_cond_destroy(&f->cv);
    free(f);
}

static double percentile_locked(const flusher *f, double q)
{
    const uint64_t *hist = f->acct.hist.lat;
    uint64_t total = 0, seen = 0;
    for (size_t i = 0; i <= FLUSHER_LAT_N; i++)
        total += hist[i];
    if (total == 0)
        return 0;
    for (size_t i = 0; i <= FLUSHER_LAT_N; i++) {
        seen += hist[i];
        if ((double)seen >= q * (double)total)
            return i < FLUSHER_LAT_N ? flusher_lat_bounds_ms[i] : flusher_lat_bounds_ms[FLUSHER_LAT_N - 1];
    }
    return flusher_lat_bounds_ms[FLUSHER_LAT_N - 1];
}

void flusher_snapshot_get(flusher *f, flusher_snapshot *s)
{
    pthread_mutex_lock(&f->mu);
    *s = f->acct;
    s->batch_budget = f->batch_budget;
    s->has_spool = f->sp != NULL;
    if (f->sp)
        spool_get_stats(f->sp, &s->spool);
    s->unary = !f->otlp && (f->unary || f->cfg.upstream_rpc == RPC_UNARY);
    s->heartbeat_ms = LIVE(f, heartbeat_ms);
    s->stall_since_ms = LIVE(f, stall_since_ms);
    s->latency_ms[0] = percentile_locked(f, 0.50);
    s->latency_ms[1] = percentile_locked(f, 0.90);
    s->latency_ms[2] = percentile_locked(f, 0.99);
    pthread_mutex_unlock(&f->mu);
}
