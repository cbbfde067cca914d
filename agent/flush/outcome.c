/* outcome.c — what a finished upstream call means for its batch (see flusher.c's DESIGN and flusher_internal.h).
 *
 * A call succeeded (flushed), was partly refused (the refused entries dropped or dead-lettered, the retryable ones
 * retried alone), refused whole (dropped, dead-lettered in disk mode, or — UNIMPLEMENTED under --upstream-rpc
 * auto — the switch to unary WriteLog calls), or failed retryably (queued again at its backoff or RetryInfo time,
 * or dropped once --retry-max-elapsed-s ran out); unary calls are gathered per batch until its last one is done.
 * Each outcome lands in the accounting and the latency histograms under the flusher's `mu`.
 *
 * Runs on the upstream reaper thread (upstream_config.done = flusher_call_done), and on the flusher thread only
 * when a call could not start (or its payload could not be made) and for send_batch's unary guard. It is apart
 * from flusher.c because it is the other thread's half: it never touches the batch being built or the ring, only
 * the batch it was handed, the retry queue, the spool (dead letters, frames of entries to retry) and the
 * counters.
 *
 * A finished call's slice may still hold the batch's bytes (gRPC drops it when it is done: batch.h), so this file
 * only reads them: entries to retry or dead-letter are copied into new batches (rare paths), and the batch itself
 * is requeued (re-sent as it is), evicted or freed — never written to. */
#include "flush/flusher_internal.h"
#include "common/clock.h"

#include "flush/retry.h"

#include <errno.h>
#include <logagent/v1/log_service.pb-c.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
            if (!rb && (rb = flusher_batch_new(f, b->id)) != NULL) {
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
        } else if (f->disk && (db || (db = flusher_batch_new(f, b->id)) != NULL) && batch_add(db, e, len) == 0) {
            continue; /* dead-lettered below */
        } else {
            f->acct.dropped_upstream++;
        }
    }
    if (db)
        dead_letter_locked(f, db, status, reason);
    batch_free(db);
    if (rb && f->disk && spool_append(f->sp, rb->id, (uint32_t)rb->n, rb->buf, rb->len, &rb->ref) == 0) {
        rb->spooled = 1;
    } else if (rb && f->sp && (b->spooled || b->pinned)) {
        /* no room in the spool for it (full, or the disk): its records stay on disk in the frame they came from,
         * held for it — a restart replays that frame whole (the entries already delivered again, as for any
         * frame of a segment not yet settled) rather than lose what was acknowledged as spooled */
        rb->pinned = 1;
        rb->pin_seg = b->spooled ? b->ref.seg : b->pin_seg;
        spool_hold(f->sp, rb->pin_seg);
    }
    if (rb && retry_expired(f, rb)) {
        f->acct.dropped_retry_expired += rb->n;
        flusher_settle(f, rb);
    } else if (rb) {
        flusher_requeue_locked(f, rb, retry_time_locked(f, rb, NULL));
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
    flusher_settle(f, b);
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
        flusher_settle(f, b);
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
        flusher_requeue_locked(f, b, 0);
        b = NULL;
    } else if (retryable && !f->abandon && retry_expired(f, b)) {
        f->acct.batches_failed++;
        note_failure_locked(f, r->status, r->details);
        f->acct.dropped_retry_expired += b->n;
    } else if (retryable && (!f->abandon || b->spooled || f->sp)) { /* abandoning: kept or spilled to disk */
        f->acct.batches_failed++;
        note_failure_locked(f, r->status, r->details);
        flusher_requeue_locked(f, b, retry_time_locked(f, b, r));
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
    flusher_settle(f, b);
}

/* One of b's unary calls (or send_batch's guard) is done. When it was the last, settles b's entries and returns 1:
 * the caller frees b with flusher_settle after unlocking. Caller holds mu. */
int flusher_unary_release_locked(flusher *f, batch *b)
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
    int last = flusher_unary_release_locked(f, b);
    pthread_mutex_unlock(&f->mu);
    if (last)
        flusher_settle(f, b);
}

/* One call's answer in its instance's row (flusher.h, flusher_instance). Caller holds mu. */
static void note_instance_locked(flusher *f, const char *peer, int status, double seconds)
{
    flusher_snapshot *a = &f->acct;
    const char *name = peer && peer[0] ? peer : "none";
    unsigned i = 0;
    while (i < a->n_inst && strncmp(a->inst[i].address, name, sizeof a->inst[i].address - 1) != 0)
        i++;
    if (i == a->n_inst) {
        if (i == FLUSHER_INSTANCES - 1) /* the last row: every address past the first 15 */
            name = "other";
        i = i < FLUSHER_INSTANCES ? i : FLUSHER_INSTANCES - 1;
        if (i == a->n_inst) {
            snprintf(a->inst[i].address, sizeof a->inst[i].address, "%s", name);
            a->n_inst++;
        }
    }
    a->inst[i].calls++;
    a->inst[i].failures += status != 0;
    a->inst[i].seconds += seconds;
    a->inst[i].lat[bucket_of(flusher_lat_bounds_ms, FLUSHER_LAT_N, seconds * 1000.0)]++;
}

void flusher_call_done(void *ctx, void *arg, const upstream_reply *r)
{
    flusher *f = ctx;
    batch_call *c = arg;
    double secs = (double)(clock_mono_ns() - c->b->sent_ns) / 1e9; /* before batch_done: it may free the batch */
    pthread_mutex_lock(&f->mu);
    note_instance_locked(f, r->peer, r->status, secs);
    pthread_mutex_unlock(&f->mu);
    if (c->index == BATCH_WHOLE)
        batch_done(f, c->b, r);
    else
        unary_done(f, c, r);
    doorbell_ring(&f->bell);
}
