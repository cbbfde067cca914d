/* flusher_internal.h — what flusher.c and outcome.c share, and nothing else includes: the flusher's state
 * (struct flusher, with which thread owns which field) and the few functions each file calls in the other.
 *
 * flusher.c runs the flusher thread (building, sending, sealing, shedding) and the lifecycle; outcome.c runs on the
 * upstream reaper thread and decides what a finished call means for its batch. Both reach the retry queue and the
 * accounting under `mu`. The public interface stays flusher.h. A batch's bytes may outlive the batch in a gRPC
 * slice (batch.h: refcounted, never written once shared). */
#ifndef LOGAGENT_FLUSHER_INTERNAL_H
#define LOGAGENT_FLUSHER_INTERNAL_H

#include "flush/flusher.h"

#include "flush/batch.h"
#include "flush/dnswatch.h"
#include "doorbell.h"
#include "log.h"
#include "flush/otlp.h"
#include "flush/resattr.h"
#include "flush/upstream.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

enum { STATUS_UNIMPLEMENTED = 12, STATUS_INTERNAL = 13 };

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
    _Atomic int on_full; /* --on-full (live: SIGHUP): drop-newest is woken when the spool stops taking batches */
    /* for /healthz's "ring stuck" (flusher thread writes, relaxed; read by flusher_snapshot_get): when its loop
     * last turned, and since when it has found records in the ring but could take none (0: it is keeping up) */
    _Atomic int64_t heartbeat_ms, stall_since_ms;
    /* batch memory settled since the flusher last trimmed the heap, and when the last was (any thread writes;
     * the flusher thread trims once it is idle: maybe_trim) */
    _Atomic uint64_t freed_bytes;
    _Atomic int64_t freed_at_ms;
    size_t low_water;
    char agent_id[160];
    /* the channel's settings now, for a rebuild: SIGHUP's (reload_channel, main thread) and --upstream-dns-refresh-ms'
     * (dns_changed, the dnswatch thread); chan_mu serializes the two and guards these */
    pthread_mutex_t chan_mu;
    char target[sizeof ((config *)0)->upstream];
    int chan_tls;
    char chan_ca[sizeof ((config *)0)->ca_file], chan_cert[sizeof ((config *)0)->cert_file];
    char chan_key[sizeof ((config *)0)->key_file], chan_server_name[sizeof ((config *)0)->tls_server_name];
    dnswatch *dns; /* --upstream-dns-refresh-ms; NULL: off (started by flusher_start, stopped by flusher_stop) */

    /* flusher thread only */
    batch *cur;
    int cur_full;
    uint64_t next_id;
    size_t hint_bytes, hint_records; /* the size to allocate the next `cur` at (note_batch_size) */

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
    resattr *res;       /* --resource-attr, expanded (read-only once made; both protocols); NULL: none */
    spool *sp;          /* NULL without --spool-dir */
    int disk;           /* --buffer disk: every batch goes through the spool */
    _Atomic int spool_stuck; /* disk mode: the last append failed (spool full, disk full, I/O error); 0 once one works */
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

/* A new batch with room for the request's trailer: BatchWriteLogsRequest.resource only in logagent.v1 mode (OTLP
 * converts the batch and puts --resource-attr in each Resource instead). */
static inline batch *flusher_batch_new(const flusher *f, uint64_t id)
{
    return batch_new(id, f->res && !f->otlp ? f->res->pb_len : 0);
}

/* ---- the retry queue (flusher.c): both threads, under mu ---------------------------------------------- */

/* Puts b back in the queue until retry_at; a spooled batch leaves memory meanwhile. Caller holds mu. */
void flusher_requeue_locked(flusher *f, batch *b, int64_t retry_at);
/* b's fate is settled (delivered, dropped or dead-lettered): its spool frame is no longer needed. Frees b. */
void flusher_settle(flusher *f, batch *b);

/* ---- call outcomes (outcome.c) ------------------------------------------------------------------------- */

/* upstream_config.done: a call of a batch finished (reaper thread; the flusher thread too when a call could not
 * start). Settles, retries or drops the batch, then rings the flusher's doorbell. ctx is the flusher, arg the
 * batch_call. */
void flusher_call_done(void *ctx, void *arg, const upstream_reply *r);
/* One of b's unary calls (or send_batch's guard) is done. When it was the last, settles b's entries and returns 1:
 * the caller frees b with flusher_settle after unlocking. Caller holds mu. */
int flusher_unary_release_locked(flusher *f, batch *b);

#endif
