/* flusher.c — ring -> batches -> upstream calls, with retry (see flusher.h).
 *
 * DESIGN
 * Two threads meet here. The flusher thread is the ring's only consumer: it moves records into `cur`
 * (the batch being built) and decides what to send next; that thread, the retry queue and the lifecycle live in
 * this file. The upstream reaper thread runs flusher_call_done (outcome.c) for each finished call and decides
 * the batch's fate: acknowledged, retried (queued with a backoff time), or dropped with a reason. They share
 * `mu`, which guards the accounting, the retry queue and the in-flight count; it is taken a few times per batch,
 * never per record, and never on the ingest path. The state both files reach is struct flusher, in
 * flusher_internal.h, with which thread owns which field.
 *
 * Order: a batch waiting to retry blocks new batches (they wait behind the backoff instead of hammering a
 * failing service, and with --max-inflight 1 records leave in the order they came). The retry queue is
 * kept sorted by batch id.
 *
 * Wake-ups: the flusher arms its doorbell at the top of every turn, so a ring from ingest (new records) or
 * from the reaper (a slot or a retry freed) between its decision and its wait is never lost.
 *
 * Bytes: a record is copied once here, from the ring into `cur` (allocated at the size of the recent batches:
 * note_batch_size), and never again: send_batch hands gRPC the batch's own bytes (batch_request) with a
 * reference to them that the slice owns (batch_buf_hold; upstream.h), one per unary call too; in OTLP mode the
 * converted request is a buffer of its own that the slice frees. A batch may be retried, evicted, spilled or
 * freed while gRPC still holds an earlier call's slice: its bytes live until both are done (batch.h has the
 * rules, docs/architecture.md "The flush side" the table). An evicted batch is read back from the spool
 * straight into its new buffer (reload). */
#include "flush/flusher_internal.h"
#include "common/clock.h"
#include "record.h"

#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

enum { M_BATCH = 0, M_UNARY = 1 };

const double flusher_lat_bounds_ms[FLUSHER_LAT_N] = {1,    2,    5,    10,    20,    50,    100,  200,
                                                      500,  1000, 2000, 5000, 10000, 30000, 60000};
const double flusher_size_bounds[FLUSHER_SIZE_N] = {1, 10, 50, 100, 250, 500, 1000, 2000, 5000, 10000, 50000};
const double flusher_bytes_bounds[FLUSHER_BYTES_N] = {1024,   4096,    16384,   65536,   262144,
                                                      524288, 1048576, 2097152, 4194304, 8388608};

#define LIVE(f, field) atomic_load_explicit(&(f)->field, memory_order_relaxed)

/* ---- the retry queue: both threads, under mu (flusher_internal.h) ----------------------------------- */

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

void flusher_requeue_locked(flusher *f, batch *b, int64_t retry_at)
{
    if (b->spooled && !b->evicted)
        batch_evict(b);
    b->retry_at_ms = retry_at;
    retry_enqueue_locked(f, b);
}

void flusher_settle(flusher *f, batch *b)
{
    if (!b)
        return;
    if (b->spooled)
        spool_release(f->sp, b->ref.seg);
    if (b->pinned)
        spool_release(f->sp, b->pin_seg);
    atomic_fetch_add_explicit(&f->freed_bytes, b->cap, memory_order_relaxed);
    atomic_store_explicit(&f->freed_at_ms, clock_mono_ms(), memory_order_relaxed);
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

/* ---- flusher thread: building and sending ------------------------------------------------------------ */

static void call_failed_to_start(flusher *f, batch_call *c)
{
    upstream_reply r = {.status = 14, .details = "could not start the call", .retry_after_ms = -1}; /* backoff */
    flusher_call_done(f, c, &r);
}

/* Reads an evicted batch back from the spool, straight into the batch's new buffer (its frame's size: b->len may
 * be less, see below). For the native upstream, entries written for an OTLP upstream (a spool kept across a switch
 * of --upstream-protocol) lose their private metadata types (RECORD_F_META_TYPES), which the log service must not
 * receive; the bytes held in flight are corrected. On failure (a frame that no longer passes its CRC) the batch is
 * dropped, counted dropped_spool_corrupt, and -EIO returned. */
static int reload(flusher *f, batch *b)
{
    size_t plen = b->len, n = b->n;
    uint8_t *dst = batch_load_begin(b, b->ref.len);
    int rc = dst ? spool_read(f->sp, &b->ref, dst) : -ENOMEM;
    if (rc == 0)
        rc = batch_load_end(b);
    if (rc == 0 && !f->otlp && b->earlier_run) /* only an earlier run can have written for the other protocol */
        batch_strip_field(b, RECORD_F_META_TYPES); /* an entry that does not parse: sent as it is, never dropped */
    if (rc == 0 && b->len != plen) {
        pthread_mutex_lock(&f->mu);
        f->acct.held_bytes = f->acct.held_bytes + b->len - plen;
        pthread_mutex_unlock(&f->mu);
    }
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
    flusher_settle(f, b);
    return -EIO;
}

/* OTLP's request is a buffer of its own: the slice owns it and frees it. */
static void free_payload(void *p) { free(p); }

/* Starts b's whole-batch call: the batch's own bytes (a reference handed to gRPC), or, in OTLP mode, the request
 * converted from them. */
static void send_whole(flusher *f, batch *b)
{
    size_t len = 0;
    int err = 0;
    b->whole = (batch_call){b, BATCH_WHOLE};
    if (f->otlp) {
        uint8_t *req = otlp_payload(f->otlp, b, b->observed_ns ? b->observed_ns : clock_real_ns(), &len, &err);
        if (err == -EINVAL) { /* cannot happen with entries record.c made; if it does, never retried in a loop */
            upstream_reply r = {.status = STATUS_INTERNAL, .details = "batch entries do not decode (OTLP conversion)",
                                .retry_after_ms = -1};
            flusher_call_done(f, &b->whole, &r);
        } else if (!req || upstream_call(f->up, M_BATCH, req, len, free_payload, req, (int64_t)f->cfg.rpc_timeout_ms,
                                         &b->whole) < 0) {
            call_failed_to_start(f, &b->whole);
        }
        return;
    }
    const uint8_t *req = batch_request(b, f->agent_id, f->res ? f->res->pb : NULL, f->res ? f->res->pb_len : 0, &len);
    if (!req || upstream_call(f->up, M_BATCH, req, len, batch_buf_release, batch_buf_hold(b),
                              (int64_t)f->cfg.rpc_timeout_ms, &b->whole) < 0)
        call_failed_to_start(f, &b->whole);
}

/* Sends b (already counted in flight) as one BatchWriteLogs call, or as one WriteLog per entry. Either way gRPC
 * sends b's bytes where they are, each slice holding a reference to them (batch.h). */
static void send_batch(flusher *f, batch *b, int unary)
{
    if (b->evicted && reload(f, b) < 0)
        return;
    if (b->attempt++ == 0)
        b->first_sent_ms = clock_mono_ms();
    b->sent_ns = clock_mono_ns();
    b->unary = unary;
    if (!unary) {
        send_whole(f, b);
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
        if (upstream_call(f->up, M_UNARY, e, len, batch_buf_release, batch_buf_hold(b), (int64_t)f->cfg.rpc_timeout_ms,
                          &b->calls[i]) < 0)
            call_failed_to_start(f, &b->calls[i]);
    }
    pthread_mutex_lock(&f->mu);
    int last = flusher_unary_release_locked(f, b);
    pthread_mutex_unlock(&f->mu);
    if (last)
        flusher_settle(f, b);
}

/* Calls on_space when ingest waits for room and the ring has drained below half. */
static void maybe_space(flusher *f)
{
    atomic_thread_fence(memory_order_seq_cst); /* our tail release before their flag; pairs with pause_all */
    if (atomic_load(&f->want_space) && ring_used_bytes(f->ring) < f->low_water && atomic_exchange(&f->want_space, 0))
        f->on_space(f->space_arg);
}

/* The next batch is allocated at the size of the recent ones, so that it is one allocation filled in place
 * rather than a chain of doubling reallocs (each a copy): the hint follows the largest recent batch, decaying by
 * an eighth per batch. Called as `cur` leaves (sent or sealed). Flusher thread. */
static void note_batch_size(flusher *f, const batch *b)
{
    size_t bytes = f->hint_bytes - f->hint_bytes / 8, records = f->hint_records - f->hint_records / 8;
    f->hint_bytes = b->len > bytes ? b->len : bytes;
    f->hint_records = b->n > records ? b->n : records;
}

/* A new `cur`, sized by the hint and an eighth more (records vary), at most --batch-max-bytes. NULL when memory
 * ran out. */
static batch *new_cur(flusher *f)
{
    batch *b = flusher_batch_new(f, ++f->next_id);
    uint64_t max = LIVE(f, max_bytes), want = f->hint_bytes + f->hint_bytes / 8;
    if (b && batch_reserve(b, want < max ? (size_t)want : (size_t)max, f->hint_records) < 0)
        f->hint_bytes = f->hint_records = 0; /* memory is short: let batch_add grow it as records come */
    return b;
}

/* Moves committed records from the ring into cur until it is full, the batch budget is used up (batches in
 * flight and waiting to retry count against it), or the ring is empty. */
static uint64_t pull(flusher *f)
{
    pthread_mutex_lock(&f->mu);
    uint64_t held = f->acct.held_bytes;
    pthread_mutex_unlock(&f->mu);
    if (!f->cur) {
        f->cur = new_cur(f);
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
        flusher_settle(f, b);
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

/* --buffer disk: moves the ring into the spool — the batch being built sealed whether due or not, then the records
 * after it — until `want` bytes of the ring are free or the spool refuses (full, or failing; or it refused less
 * than 50 ms ago, unless `now_too`: room was just made). Returns the records taken out of the ring. Flusher thread
 * only. */
static uint64_t spool_ring(flusher *f, size_t want, int now_too)
{
    int64_t now = clock_mono_ms();
    uint64_t taken = 0;
    if (now_too)
        f->seal_retry_ms = 0;
    for (;;) {
        taken += pull(f);
        if (ring_room(f) >= want || !f->cur || f->cur->n == 0)
            return taken;
        f->cur_full = 1; /* due now: the ring needs its room */
        seal(f, now);
        if (f->cur)
            return taken; /* the spool refused it */
    }
}

/* --on-full drop-oldest: ingest found the ring full and asked for room. Drops the oldest records that are not in
 * flight until a slice of the ring (SHED_SLICE), and room for the record ingest holds, is free, oldest first: the
 * queued batches (shed_queue), then — in memory, or when the spool still refuses — the batch being built, then the
 * oldest records of the ring. With --buffer disk the buffer is the spool: a full ring only means the flusher fell
 * behind (a busy machine) until the spool refuses a batch, so the ring first drains into the spool, and nothing is
 * dropped while the spool takes it; then the oldest records are the oldest spool segment, and once it is gone the
 * ring drains into the room it left. Counted dropped_buffer_full; ingest is told there is room (on_space) whatever
 * the ring's low-water mark. Returns the records it took out of the ring (shed or batched: progress for /healthz's
 * "ring stuck"). Flusher thread only. */
static uint64_t shed_oldest(flusher *f)
{
    size_t cap = ring_capacity(f->ring), need = atomic_exchange(&f->shed_need, 0);
    size_t want = cap / SHED_SLICE, fit = 2 * (((need + 7u) & ~(size_t)7u) + 8); /* the record's ring footprint */
    if (want < fit) /* free space in two pieces (before and after the wrap): one of them then holds the record */
        want = fit < cap ? fit : cap;
    uint64_t k = 0, taken = f->disk ? spool_ring(f, want, 0) : 0;
    if (!f->disk || ring_room(f) < want) {
        k = shed_queue(f);
        if (k && f->disk)
            taken += spool_ring(f, want, 1); /* into the room the oldest segment left */
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
    atomic_store(&f->spool_stuck, rc < 0);
    if (rc < 0) {
        f->seal_retry_ms = now + 50;
        f->cur_full = 1;
        if (LIVE(f, on_full) == FULL_DROP_NEWEST && atomic_load(&f->want_space) && atomic_exchange(&f->want_space, 0))
            f->on_space(f->space_arg); /* a record held on the full ring: it is dropped now (flusher_disk_has_room) */
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
    note_batch_size(f, b);
    pthread_mutex_lock(&f->mu);
    f->acct.batching -= b->n;
    f->cur = NULL;
    flusher_requeue_locked(f, b, 0);
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
        note_batch_size(f, b);
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
    if (b->n > 0 && f->sp && spool_append(f->sp, b->id, (uint32_t)b->n, b->buf, b->len, &ref) == 0) {
        f->acct.spooled += b->n;
        if (b->pinned) /* its own frame now: the parent's need not be replayed for it */
            spool_release(f->sp, b->pin_seg);
    } else if (b->pinned) {
        f->acct.spooled += b->n; /* on disk in its parent's frame (held), replayed by the next run */
    } else {
        f->acct.dropped_shutdown += b->n;
    }
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
        flusher_requeue_locked(f, b, 0);
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
        if (!b && !(b = flusher_batch_new(f, ++f->next_id)))
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

/* Once the flusher is idle (nothing in the ring, in `cur`, in flight or waiting to retry) and the batches settled
 * since the last time held TRIM_AFTER_BYTES or more, the heap's free pages go back to the system: main.c keeps
 * glibc from trimming by itself, so a burst of large records would otherwise stay resident. TRIM_QUIET_MS after
 * the last settle, so that gRPC has dropped its references to the last call's bytes (batch.h). Never while
 * records flow: malloc_trim walks every arena, and the next batches would fault their pages in again. */
enum { TRIM_AFTER_BYTES = 4 << 20, TRIM_QUIET_MS = 250 };

static void maybe_trim(flusher *f, int idle, int64_t now)
{
    if (!idle || LIVE(f, freed_bytes) < TRIM_AFTER_BYTES || now - LIVE(f, freed_at_ms) < TRIM_QUIET_MS)
        return;
    atomic_exchange_explicit(&f->freed_bytes, 0, memory_order_relaxed);
    malloc_trim(0);
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
        int idle = !b && f->inflight == 0 && !f->retry_head && (!f->cur || f->cur->n == 0);
        int done = idle && f->stopping;
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
        maybe_trim(f, idle && !ring_peek(f->ring, &len), now);
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
        batch *b = flusher_batch_new(f, ref.id);
        if (!b)
            return -ENOMEM;
        b->n = ref.n;
        b->len = ref.len;
        b->spooled = b->evicted = b->earlier_run = 1;
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
    atomic_store_explicit(&f->on_full, (int)cfg->on_full, memory_order_relaxed);
}

int64_t flusher_heartbeat_ms(flusher *f) { return atomic_load_explicit(&f->heartbeat_ms, memory_order_relaxed); }

/* The channel settings of cfg, kept for a later rebuild. Caller holds chan_mu. */
static void keep_channel_settings(flusher *f, const config *cfg)
{
    snprintf(f->target, sizeof f->target, "%s", cfg->upstream);
    f->chan_tls = cfg->upstream_tls;
    snprintf(f->chan_ca, sizeof f->chan_ca, "%s", cfg->ca_file);
    snprintf(f->chan_cert, sizeof f->chan_cert, "%s", cfg->cert_file);
    snprintf(f->chan_key, sizeof f->chan_key, "%s", cfg->key_file);
    snprintf(f->chan_server_name, sizeof f->chan_server_name, "%s", cfg->tls_server_name);
}

/* SIGHUP: a new channel when the upstream moved, or with TLS on (cert-manager rotates the files in place: they are
 * read again). Calls in flight finish on the old channel; batches held are sent on the new one. */
static void reload_channel(flusher *f, const config *cfg)
{
    pthread_mutex_lock(&f->chan_mu);
    int moved = strcmp(cfg->upstream, f->target) != 0;
    if (!f->up || (!moved && !cfg->upstream_tls)) {
        pthread_mutex_unlock(&f->chan_mu);
        return;
    }
    upstream_tls tls = {.ca_file = cfg->ca_file, .cert_file = cfg->cert_file, .key_file = cfg->key_file,
                        .server_name = cfg->tls_server_name};
    char err[256];
    if (upstream_reload(f->up, cfg->upstream, cfg->upstream_tls ? &tls : NULL, err, sizeof err) < 0) {
        log_write(LOG_ERROR, "\"reload: the new upstream settings cannot be used, the running channel is kept\" "
                             "upstream=%s error=\"%s\"", cfg->upstream, err);
        pthread_mutex_unlock(&f->chan_mu);
        return;
    }
    log_write(LOG_INFO, "\"upstream channel rebuilt\" upstream=%s previous=%s tls=%s", cfg->upstream, f->target,
              cfg->upstream_tls ? "files-read-again" : "off");
    keep_channel_settings(f, cfg);
    pthread_mutex_unlock(&f->chan_mu);
    if (moved)
        dnswatch_retarget(f->dns, cfg->upstream);
}

/* --upstream-dns-refresh-ms (the dnswatch thread): the upstream's name gives other addresses now. A new channel
 * with the running settings resolves it again and connects to every address; calls in flight finish on the old. */
static void dns_changed(void *arg, const char *addresses)
{
    flusher *f = arg;
    pthread_mutex_lock(&f->chan_mu);
    upstream_tls tls = {.ca_file = f->chan_ca, .cert_file = f->chan_cert, .key_file = f->chan_key,
                        .server_name = f->chan_server_name};
    char err[256];
    if (upstream_reload(f->up, f->target, f->chan_tls ? &tls : NULL, err, sizeof err) < 0)
        log_write(LOG_ERROR, "\"upstream addresses changed but the channel cannot be rebuilt: the running one is "
                             "kept\" upstream=%s addresses=%s error=\"%s\"", f->target, addresses, err);
    pthread_mutex_unlock(&f->chan_mu);
}

void flusher_reload(flusher *f, const config *cfg)
{
    set_live(f, cfg);
    reload_channel(f, cfg);
    doorbell_ring(&f->bell); /* a shorter interval may make the building batch due now */
}

/* --resource-attr, its ${env:NAME} values read now: f->res (NULL when empty). A variable that is not set leaves
 * its pair out, with a warning; a set unary WriteLog cannot carry is said so. Returns 0, or -1 (logged). */
static int setup_resource(flusher *f, const config *cfg)
{
    char err[256];
    if (!cfg->resource_attr[0])
        return 0;
    if (!(f->res = resattr_new(cfg->resource_attr, err, sizeof err))) {
        log_write(LOG_ERROR, "\"cannot use --resource-attr\" error=\"%s\"", err);
        return -1;
    }
    if (f->res->unset[0])
        log_write(LOG_WARN, "\"resource-attr: environment variables not set, their attributes left out\" "
                            "variables=%s", f->res->unset);
    if (f->res->n && cfg->upstream_protocol != PROTOCOL_OTLP && cfg->upstream_rpc == RPC_UNARY)
        log_write(LOG_WARN, "\"resource-attr is not sent with upstream-rpc unary: WriteLog has no place for it "
                            "(BatchWriteLogs carries it)\"");
    log_write(LOG_INFO, "\"resource attributes\" count=%zu", f->res->n);
    return 0;
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
    pthread_mutex_init(&f->chan_mu, NULL);
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
    keep_channel_settings(f, cfg); /* no other thread yet: chan_mu not needed */
    upstream_config uc = {.target = cfg->upstream,
                          .tls = cfg->upstream_tls ? &tls : NULL,
                          .token_file = cfg->token_file[0] ? cfg->token_file : NULL,
                          .methods = {cfg->batch_method, cfg->unary_method},
                          .reconnect_max_ms = cfg->retry_max_ms < 5000 ? (int64_t)cfg->retry_max_ms : 5000,
                          .gzip = cfg->upstream_compression == COMPRESSION_GZIP,
                          .round_robin = cfg->upstream_lb == LB_ROUND_ROBIN,
                          .keepalive_ms = (int64_t)cfg->upstream_keepalive_ms,
                          .keepalive_timeout_ms = (int64_t)cfg->upstream_keepalive_timeout_ms,
                          .done = flusher_call_done,
                          .ctx = f};
    char err[256];
    if (setup_resource(f, cfg) < 0) { /* before the spool: replayed batches get the trailer's room */
        flusher_free(f);
        return NULL;
    }
    if (cfg->upstream_protocol == PROTOCOL_OTLP) {
        if (!(f->otlp = otlp_exporter_new(f->res))) {
            log_write(LOG_ERROR, "\"cannot set up the OTLP exporter\" error=\"out of memory\"");
            flusher_free(f);
            return NULL;
        }
        uc.methods[0] = OTLP_EXPORT_METHOD;
        log_write(LOG_INFO, "\"upstream protocol otlp: one LogsService/Export per batch (upstream-rpc ignored)\" "
                            "upstream=%s method=%s", cfg->upstream, OTLP_EXPORT_METHOD);
    }
    if (cfg->spool_dir[0] && open_spool(f) < 0) {
        flusher_free(f);
        return NULL;
    }
    if (uc.token_file && !uc.tls)
        log_write(LOG_WARN, "\"token-file without upstream-tls: the bearer token crosses the network in clear "
                            "text\" upstream=%s", cfg->upstream);
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
    f->dns = dnswatch_start(f->target, (int64_t)f->cfg.upstream_dns_refresh_ms, dns_changed, f);
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

int flusher_disk_has_room(flusher *f) { return f->disk && !atomic_load(&f->spool_stuck); }

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
    dnswatch_stop(f->dns); /* no rebuild while the last calls drain */
    f->dns = NULL;
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
    dnswatch_stop(f->dns); /* when flusher_stop was not called */
    upstream_free(f->up); /* waits for calls still completing */
    batch_free(f->cur);
    for (batch *b = f->retry_head, *next; b; b = next) {
        next = b->next;
        batch_free(b);
    }
    spool_close(f->sp);
    otlp_exporter_free(f->otlp);
    resattr_free(f->res);
    doorbell_close(&f->bell);
    pthread_mutex_destroy(&f->mu);
    pthread_mutex_destroy(&f->chan_mu);
    pthread_cond_destroy(&f->cv);
    free(f);
}

double flusher_lat_quantile_ms(const uint64_t lat[FLUSHER_LAT_N + 1], double q)
{
    uint64_t total = 0, seen = 0;
    for (size_t i = 0; i <= FLUSHER_LAT_N; i++)
        total += lat[i];
    if (total == 0)
        return 0;
    for (size_t i = 0; i < FLUSHER_LAT_N; i++) {
        seen += lat[i];
        if ((double)seen >= q * (double)total)
            return flusher_lat_bounds_ms[i];
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
    s->gzip_refused = f->up ? upstream_gzip_refused(f->up) : 0;
    s->heartbeat_ms = LIVE(f, heartbeat_ms);
    s->stall_since_ms = LIVE(f, stall_since_ms);
    s->latency_ms[0] = flusher_lat_quantile_ms(f->acct.hist.lat, 0.50);
    s->latency_ms[1] = flusher_lat_quantile_ms(f->acct.hist.lat, 0.90);
    s->latency_ms[2] = flusher_lat_quantile_ms(f->acct.hist.lat, 0.99);
    pthread_mutex_unlock(&f->mu);
}
