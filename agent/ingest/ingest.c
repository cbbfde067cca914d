/* ingest.c — listener, connections, msgpack stream decoding, pause/resume (see ingest.h).
 *
 * DESIGN
 * A connection's bytes go: read(2) straight into its decoder's buffer (decoder.h) -> a native record wholly read is
 * walked once, by record_prepare_raw, which classifies and sizes it and whose walk also settles the structure checks
 * (take_native: mpscan_walked) -> admission (admit.h: size, --rate-limit, ring, --on-full, every record counter),
 * which writes the entry straight into the ring. A record cut by a read, or one that must wait (backpressure),
 * goes through mpscan first (bad structure refused, where objects end) and is encoded by process. A Fluent Forward
 * message (a top-level array) is read in place by forward.c, the decoder pinned meanwhile; each event it writes out
 * as a native record map goes through record_prepare_raw and admission too. Each readable event does one bounded
 * read, so a flooding client gets one turn like everyone else.
 *
 * Backpressure is a state of the stage, not of a connection: when a record does not fit, admission hands back a copy
 * kept in `held` on its connection, every connection's read event is removed, and the flusher is asked to call
 * ingest_space_available when the ring is half empty. Resuming first finishes each connection's held record
 * and already-buffered records, then re-adds read events. Connections are never closed for backpressure.
 *
 * A connection closes on EOF or error (a partial record counts `truncated`), on malformed or oversized input
 * (after the good records before it are queued), or at shutdown; never while it still holds records that
 * can be queued.
 *
 * Fluent Forward (forward.h): a top-level array is a Forward message. Its events go one by one through the same
 * admission as native records; when one does not fit it becomes `held` as usual and the rest stay in the
 * connection's forward_iter (reading the message's bytes, which the pinned decoder keeps in place until the message
 * is done), so a message is never split or lost by backpressure. `{"ack": chunk}` is written once its last event is in the ring;
 * with --buffer disk, once every event of the message has left memory for the spool: the ack waits in the
 * connection's FIFO `acks` with the record numbers its events may have (flusher_spooled: records are numbered by
 * `received` as they enter the ring) and goes out when the flusher reports them settled — unless one of them was
 * shed before reaching the spool (--on-full drop-oldest): then it is withheld and the client resends after its ack
 * timeout. A connection at EOF stays open while it has acks waiting (its client may wait for them).
 * --forward-listen adds a TCP listener feeding the same connections (peer: pid 0, comm "forward").
 *
 * Memory (--ingest-memory-bytes, membudget.h): a connection is charged its read buffer beyond 16 KiB; a read that
 * would grow it past the budget is refused (the connection is paused: its event is removed, `mem_paused`) unless it
 * fits in the buffer's free room or the connection is the budget's owner. The decoder hands out an object only once
 * the scanner has seen all of it, so a record in progress is bytes, not objects. Buffers
 * are given back when they empty (mem_shrink), and the heap trimmed after large frees (membudget_trim).
 *
 * Per-client accounting (clients.h): each connection caches its current client entry, the one of its pid, comm and
 * the service_name of its last record; a record with another service_name moves it to that entry (one hash lookup).
 * Refusals that belong to no record (malformed, oversized, truncated) count against the current entry.
 *
 * Threads (--ingest-threads N; docs/architecture.md, Threads): a `struct ingest` is one event loop. Loop 0 runs on
 * the main loop with the listeners (and the HTTP ingest and stats endpoints beside it); loops 1..N-1 run on threads
 * of their own, each with its own event_base, connections, encoder, admission (rate-limit buckets), log limits,
 * pause state and counters (an ingest_stats of its own, chained from loop 0's: stats.c sums them). Loop 0 accepts
 * every connection, counts it against --max-connections (conns_open, an atomic decremented by whichever loop
 * closes it) and hands it to a loop: round-robin, or by sender (pid or uid) with --rate-limit so that a sender's
 * bucket lives on one loop. The handover is a short mutex-guarded list and an event_active on that loop. Shared by
 * every loop: the ring (lock-free), the client table and the memory budget (each with its own mutex, taken per
 * connection change or per read, never per record), the flusher (atomics). --buffer disk keeps one loop: its
 * Forward acks number records by `received` in ring order, which needs a single producer. */
#include "ingest/ingest.h"
#include "common/clock.h"

#include "acceptguard.h"
#include "ingest/admit.h"
#include "ingest/cgroup.h"
#include "ingest/clients.h"
#include "ingest/cpus.h"
#include "ingest/decoder.h"
#include "flush/flusher.h"
#include "ingest/forward.h"
#include "ingest/http_ingest.h"
#include "log.h"
#include "ingest/membudget.h"
#include "ingest/otlp_grpc.h"
#include "ingest/mpscan.h"
#include "ingest/peer.h"
#include "record.h"
#include "sockpath.h"
#include "tcplisten.h"

#include <errno.h>
#include <malloc.h>
#include <event2/listener.h>
#include <fcntl.h>
#include <netdb.h>
#include <msgpack.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <systemd/sd-daemon.h>
#include <time.h>
#include <unistd.h>

/* A connection's reads start at READ_FIRST bytes and double while they come back full, up to READ_CHUNK: a quiet or
 * short-lived client costs a few KiB (thousands of them may be open), a flooder gets large reads. */
enum { READ_FIRST = 4096, READ_CHUNK = 256 * 1024, SHUTDOWN_READS = 64, LOGGED_UIDS = 64 };

/* --ingest-memory-bytes (membudget.h): a read refused growth still goes ahead into the buffer's free room when there
 * is at least MEM_MIN_READ of it; a buffer over MEM_SHRINK_ABOVE with nothing left in it is given back at once (one
 * READ_CHUNK flooder's is kept: it is charged), smaller ones once a second when idle. */
enum { MEM_MIN_READ = 1024, MEM_SHRINK_ABOVE = 2 * READ_CHUNK };

/* --buffer disk: a Forward ack waiting until records first..last (flusher_spooled numbers) have left memory. */
typedef struct pending_ack {
    struct pending_ack *next;
    uint64_t first, last; /* last < first: no event of the message entered the ring */
    size_t len;
    char buf[];           /* the packed {"ack": chunk} */
} pending_ack;

/* Acks one connection may have waiting; past this the ack is withheld (counted acks_failed, the client resends). */
enum { MAX_PENDING_ACKS = 4096 };
/* A read buffer this large, once freed, schedules malloc_trim (on_trim). */
enum { TRIM_AFTER_BYTES = 1 << 20 };

/* A connection accepted by loop 0 for another loop, waiting in that loop's handoff list. */
typedef struct handoff {
    struct handoff *next;
    int fd;
    uint64_t serial;
    record_source src;
} handoff;

typedef struct conn {
    struct ingest *in;
    int fd;
    struct event *ev;
    decoder dec;         /* the byte stream -> whole objects (owns the read buffer and the scanner) */
    record_source src;
    char cgroup[CGROUP_PATH_MAX];         /* --trusted-fields: src.cgroup / src.container_id point here */
    char container_id[CGROUP_ID_LEN + 1];
    uint8_t src_wire[768]; /* src as its records' RecordSource field, encoded once (src.wire points here) */
    client_entry *client; /* per-client counters of the current (pid, comm, service_name); NULL before any */
    client_tally tally;   /* client's counts since the last fold (clients.h): folded at the end of each process(), on
                           * a change of entry and before the connection detaches */
    uint64_t serial;      /* connection number, for the client table */
    size_t read_size;     /* bytes asked of the next read(2): READ_FIRST .. READ_CHUNK */
    uint8_t *held; /* an encoded record waiting for ring space */
    size_t held_len;
    int fail;      /* MPSCAN_MALFORMED / MPSCAN_OVERSIZED: close once the good records are queued */
    int eof;       /* peer closed (or errored): close once everything is queued */
    int64_t partial_since_ns; /* CLOCK_MONOTONIC when the record now half-read began; 0 between records */
    uint64_t mem;   /* what --ingest-memory-bytes charges it now (membudget_cost of its buffer) */
    uint64_t decoded; /* top-level objects the decoder handed out (a record in progress is bytes, not objects) */
    int64_t read_real_ns, read_mono_ns; /* the clocks at the last read: records taken as they are read (take_native) */
    int mem_paused; /* reading stopped until the memory budget frees (its event is not added) */
    forward_iter fwd; /* a Forward message being handed out, read in dec's bytes (dec pinned meanwhile) */
    uint64_t fwd_first;     /* --buffer disk: the number the message's first event gets when it enters the ring */
    struct pending_ack *acks, **acks_tail; /* --buffer disk: acks waiting for the spool, oldest first (owned) */
    unsigned n_acks;
    struct conn *prev, *next;
} conn;

struct ingest {
    struct event_base *base;
    const config *cfg;
    ring *ring;
    ring_chunk chunk; /* this loop's span of the ring (admit_set_chunk); closed after each connection's burst */
    ingest_stats *st;
    struct flusher *flusher;
    struct evconnlistener *listener;
    struct evconnlistener *fwd_listener; /* --forward-listen (TCP); NULL when off */
    acceptguard *guard, *fwd_guard;      /* pause each listener on accept(2) errors instead of spinning */
    uint64_t max_conns;   /* --max-connections, or less when the open-file budget is smaller (ingest_new) */
    struct event *resume_ev;
    struct event *acks_ev; /* the flusher reported records spooled (flusher_set_spooled_fn) */
    int stopping;          /* ingest_shutdown: connections close even with acks waiting */
    conn *conns, *tail;   /* every connection; resuming serves them from the head */
    int paused;
    int64_t paused_at_ns;
    int listening;
    int accept_paused;    /* max_conns reached: the listeners are disabled */
    record_enc enc;
    forward_opts fwd_opts;
    char fwd_keys[128]; /* --forward-message-keys, split in place: fwd_opts.message_keys point here */
    clients *clients;
    char hostname[64];
    log_limit lim_malformed, lim_oversized, lim_invalid, lim_truncated, lim_max_conn, lim_refused, lim_timeout,
        lim_fwd_ack;
    admit *adm;               /* every record's fate and counters (admit.h), with --rate-limit */
    struct event *sweep_ev;   /* once a second: connections holding a partial record too long */
    membudget *mem;           /* --ingest-memory-bytes, shared with the HTTP ingest (st->mem) */
    struct event *mem_resume_ev; /* the budget freed: resume connections paused for memory */
    struct event *trim_ev;    /* 200 ms after a large read buffer was freed: give the heap's free pages back */
    int trim_pending;
    uint32_t logged_uids[LOGGED_UIDS]; /* uids already logged as refused (each once) */
    unsigned n_logged_uids;
    /* --ingest-threads (see the top of this file): */
    struct ingest *loop0;        /* the loop with the listeners (this one, for loop 0) */
    struct ingest **loops;       /* loop 0: every loop, loops[0] == loop 0 */
    unsigned n_loops, next_loop; /* loop 0: how many; the next one round-robin */
    _Atomic uint64_t conns_open; /* loop 0: connections of every loop (the --max-connections count) */
    uint64_t serials;            /* loop 0: connections accepted (their serial numbers) */
    struct event *limit_ev;      /* loop 0: a connection closed on another loop */
    pthread_t thread;            /* loops 1..: their thread */
    int thread_started;
    pthread_mutex_t handoff_mu;  /* loops 1..: guards handoff and next_cfg */
    config *own_cfg;             /* loops 1..: their copy of the settings (in->cfg points here), their thread's */
    config *next_cfg;            /* loops 1..: SIGHUP's settings, copied by main, taken by on_reload */
    int reload_pending;
    handoff *handoff, **handoff_tail; /* loops 1..: connections handed over, oldest first */
    struct event *handoff_ev, *stop_ev, *reload_ev; /* loops 1..: woken by loop 0 / the main thread */
    _Atomic int64_t stop_deadline_ms; /* loops 1..: ingest_shutdown's deadline, for stop_ev */
};

/* Logs one bad-input event with the peer's identity, at most every 10 s per kind. */
static void log_peer(log_limit *l, const conn *c, const char *what)
{
    int64_t suppressed = log_limit_check(l, 10000);
    if (suppressed >= 0)
        log_write(LOG_WARN, "\"%s\" pid=%d uid=%u comm=\"%s\" suppressed=%lld", what, c->src.pid, c->src.uid,
                  c->src.comm, (long long)suppressed);
}

/* ---- per-client accounting ---------------------------------------------------------------------------- */

/* c's client entry for records of this service_name: the cached one while the name matches (the hot path), else
 * the table's. NULL only when the table is out of memory (the counts are then not attributed). */
static client_entry *conn_client(conn *c, const char *service, size_t len, int64_t mono)
{
    if (!service) {
        service = "";
        len = 0;
    }
    size_t key = clients_key_len(service, len);
    if (c->client && clients_same_service(c->client, service, key))
        return c->client;
    clients_tally_fold(c->client, &c->tally);
    return c->client = clients_attach(c->in->clients, c->client, &c->src, c->serial, service, len, mono);
}

/* The entry a refusal that belongs to no record counts against: the current one, or the connection's ""-service. */
static client_entry *conn_blame(conn *c)
{
    return c->client ? c->client : conn_client(c, "", 0, clock_mono_ns());
}

/* ---- pause / resume ---------------------------------------------------------------------------------- */

/* Stops reading every connection: the ring had no room for a record of `need` bytes (which its connection holds). */
static void pause_all(ingest *in, size_t need)
{
    ring_chunk_close(in->ring, &in->chunk); /* what the flusher is to drain must not wait behind it */
    if (in->paused)
        return;
    in->paused = 1;
    in->paused_at_ns = clock_mono_ns();
    atomic_store_explicit(&in->st->paused_since_ns, (uint64_t)in->paused_at_ns, memory_order_relaxed);
    stat_add(&in->st->pauses, 1);
    for (conn *c = in->conns; c; c = c->next)
        event_del(c->ev);
    if (in->flusher && in->cfg->on_full == FULL_DROP_OLDEST)
        flusher_shed_oldest(in->flusher, need);
    else if (in->flusher)
        flusher_want_space(in->flusher);
    atomic_thread_fence(memory_order_seq_cst); /* pairs with the flusher's fence in maybe_space */
    if (ring_used_bytes(in->ring) < ring_capacity(in->ring) / 2) /* drained meanwhile: don't wait for a call */
        event_active(in->resume_ev, EV_READ, 0);
}

void ingest_space_available(void *arg)
{
    ingest *in = arg; /* loop 0: every loop may be waiting */
    for (unsigned i = 0; i < in->n_loops; i++)
        event_active(in->loops[i]->resume_ev, EV_READ, 0);
}

/* ---- records -------------------------------------------------------------------------------------- */

/* A record of `wire` msgpack bytes, just encoded by record_encode* with result rc, through the one admission path
 * (admit.h): queued, refused or dropped there (counted and logged), or held by c — every read then pauses. */
static void offer_record(conn *c, int rc, const record_info *info, size_t wire, int64_t mono)
{
    ingest *in = c->in;
    admit_from from = {.src = &c->src, .client = conn_client(c, info->service, info->service_len, mono),
                       .tally = &c->tally, .wire = wire, .mono_ns = mono};
    if (admit_record(in->adm, &in->enc, rc, info, &from, &c->held, &c->held_len) == ADMIT_HELD)
        pause_all(in, c->held_len);
}

/* A native record: the complete top-level object (not an array) of `wire` bytes at p, as the client sent it —
 * classified and sized from these bytes, then written by admission straight into the ring; or a Forward event, the
 * map forward_next wrote (`wire`: the message's bytes with its first event, else 0). Read at `now` (CLOCK_REALTIME,
 * its default timestamp) / `mono`. */
static void handle_native(conn *c, const uint8_t *p, size_t len, size_t wire, int64_t now, int64_t mono)
{
    record_info info;
    int rc = record_prepare_raw(&c->in->enc, p, len, &c->src, now, &info);
    offer_record(c, rc, &info, wire, mono);
}

/* A Forward event handed out in parts (forward.h: the iterator's lazy mode): classified and sized where its pairs
 * are, in one walk, then written by admission into the ring as handle_native's. Returns 0, or -EAGAIN when
 * forward_settle sends it back to be taken as its map (nothing counted). */
static int handle_parts(conn *c, size_t wire, int64_t mono)
{
    ingest *in = c->in;
    record_info info;
    int rc = record_prepare_parts(&in->enc, &c->fwd.parts, &c->src, &info);
    if (forward_settle(&c->fwd, rc, &info) < 0)
        return -EAGAIN;
    stat_add(&in->st->fwd_events, 1);
    offer_record(c, rc, &info, wire, mono);
    return 0;
}

/* decoder_taker: a native record wholly in c's buffer, just read, with nothing of c before it still waiting —
 * encoded in the one walk that also checks it (mpscan_walked), and admitted as process would. Declined (0) when
 * records must wait (paused, a held record, a Forward message being handed out) or the walk did not settle it.
 * With s NULL the scanner has checked the record already (p, avail: exactly it): encoded and admitted as process
 * would. */
static int take_native(void *arg, mpscan *s, const uint8_t *p, size_t avail, size_t *used)
{
    conn *c = arg;
    ingest *in = c->in;
    if (in->paused || c->held || forward_active(&c->fwd))
        return 0;
    record_info info;
    int rc = record_prepare_raw(&in->enc, p, avail, &c->src, c->read_real_ns, &info);
    if (s && (rc < 0 || mpscan_walked(s, p, info.wire_len, info.nesting) != MPSCAN_OK))
        return 0; /* not settled by this walk (a refusal, a record cut by the read): the scanner's, then again */
    c->decoded++;
    offer_record(c, rc, &info, s ? info.wire_len : avail, c->read_mono_ns);
    *used = s ? info.wire_len : avail;
    return 1;
}

/* Is the value starting with byte b an array (a Fluent Forward message)? */
static int is_array(uint8_t b) { return (b >= 0x90 && b <= 0x9f) || b == 0xdc || b == 0xdd; }

/* ---- Fluent Forward ------------------------------------------------------------------------------------ */

/* Writes a packed {"ack": chunk} of len bytes (0: the chunk was too long to ack). A client that does not read its
 * acks (the socket buffer full) loses this one: it resends the chunk (at-least-once), nothing else is blocked. */
static void send_ack(conn *c, const char *buf, size_t len)
{
    if (len && send(c->fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT) == (ssize_t)len) {
        stat_add(&c->in->st->fwd_acks, 1);
        return;
    }
    stat_add(&c->in->st->fwd_acks_failed, 1);
    log_peer(&c->in->lim_fwd_ack, c, len ? "cannot send a Forward ack (peer not reading, or gone)"
                                         : "Forward chunk id too long to ack (over 500 bytes)");
}

static void conn_maybe_close(conn *c, int drained);

static int disk_acks(const ingest *in) { return in->cfg->buffer == BUFFER_DISK && in->flusher; }

/* Writes the acks at the head of c's FIFO whose events have all left memory (or withholds them when some were
 * shed before reaching the spool). Main thread. */
static void acks_check(conn *c)
{
    ingest *in = c->in;
    uint64_t settled, lost;
    if (!c->acks)
        return;
    flusher_spooled(in->flusher, &settled, &lost);
    while (c->acks && c->acks->last <= settled) {
        pending_ack *a = c->acks;
        if (!(c->acks = a->next))
            c->acks_tail = &c->acks;
        c->n_acks--;
        if (a->last >= a->first && lost >= a->first) {
            stat_add(&in->st->fwd_acks_failed, 1);
            log_peer(&in->lim_fwd_ack, c, "Forward events shed before reaching the spool (--on-full drop-oldest): "
                                          "ack withheld, the client resends the chunk");
        } else {
            send_ack(c, a->buf, a->len);
        }
        free(a);
    }
}

/* --buffer disk: queues the ack of c's finished message (events fwd_first.. the last record received) and writes
 * what is already settled. */
static void acks_defer(conn *c, const msgpack_object *chunk)
{
    ingest *in = c->in;
    char buf[512];
    size_t len = forward_pack_ack(chunk, buf, sizeof buf);
    if (!len) {
        send_ack(c, buf, 0); /* counts and logs the too-long chunk */
        return;
    }
    pending_ack *a = c->n_acks < MAX_PENDING_ACKS ? malloc(sizeof *a + len) : NULL;
    if (!a) {
        stat_add(&in->st->fwd_acks_failed, 1);
        log_peer(&in->lim_fwd_ack, c, "too many Forward acks waiting for the spool on one connection (or out of "
                                      "memory): ack withheld, the client resends the chunk");
        return;
    }
    a->next = NULL;
    a->first = c->fwd_first;
    a->last = stat_get(&in->st->received);
    a->len = len;
    memcpy(a->buf, buf, len);
    if (!c->acks)
        c->acks_tail = &c->acks;
    *c->acks_tail = a;
    c->acks_tail = &a->next;
    c->n_acks++;
    flusher_want_spooled(in->flusher); /* before reading flusher_spooled: a move in between still rings */
    acks_check(c);
}

/* The flusher reported records settled (its thread rang acks_ev): writes what became due on every connection, and
 * closes those at EOF that were only waiting for their acks. */
static void on_acks(evutil_socket_t fd, short what, void *arg)
{
    ingest *in = arg;
    flusher_want_spooled(in->flusher); /* spurious when none are left waiting: one extra wake-up */
    for (conn *c = in->conns, *next; c; c = next) {
        next = c->next;
        acks_check(c);
        if (!c->acks && (c->eof || c->fail))
            conn_maybe_close(c, !in->paused); /* not paused: every connection's buffered records are queued */
    }
}

/* flusher_spooled_fn: runs on the flusher thread; libevent is thread-enabled (main.c), as for resume_ev. */
static void spooled_ring(void *arg)
{
    ingest *in = arg;
    event_active(in->acks_ev, EV_READ, 0);
}

/* Answers {"ack": chunk} for a finished Forward message: now (memory mode: its events are in the ring), or once its
 * events are in the spool (--buffer disk). */
static void forward_ack(conn *c, const msgpack_object *chunk)
{
    if (disk_acks(c->in)) {
        acks_defer(c, chunk);
        return;
    }
    char buf[512];
    send_ack(c, buf, forward_pack_ack(chunk, buf, sizeof buf));
}

/* The message's events are all handed out: its bytes (in dec's buffer) are no longer read. */
static void forward_done(conn *c)
{
    forward_iter_reset(&c->fwd);
    decoder_pin(&c->dec, 0);
}

/* An entry forward_next refused: -EMSGSIZE (over --max-record-bytes: oversized) or -EINVAL (not an event:
 * invalid_record), the client's bad input. */
static void forward_bad_event(conn *c, int rc)
{
    ingest *in = c->in;
    stat_add(rc == -EMSGSIZE ? &in->st->oversized : &in->st->invalid_record, 1);
    client_entry *ce = conn_blame(c);
    if (ce)
        ce->rejected++;
    if (rc == -EMSGSIZE)
        log_peer(&in->lim_oversized, c, "Forward event over max_record_bytes skipped");
    else
        log_peer(&in->lim_invalid, c, "invalid Forward entry skipped (not [time, record] or [[time, metadata], record])");
}

/* Hands the rest of c's Forward message to admission, until done or paused. Returns 1 when done (acked when asked),
 * 0 when paused (the held event and the rest wait in c->held and c->fwd). */
static int forward_drain(conn *c, size_t wire, int64_t now, int64_t mono)
{
    ingest *in = c->in;
    const uint8_t *ev;
    size_t len;
    while (!in->paused) {
        int rc = forward_next(&c->fwd, &ev, &len);
        if (rc == 1 && !ev) { /* in parts */
            if (handle_parts(c, wire, mono) == 0)
                wire = 0;
            continue; /* (-EAGAIN: not plain, the next forward_next hands the same entry out as its map) */
        }
        if (rc == 1) {
            stat_add(&in->st->fwd_events, 1);
            handle_native(c, ev, len, wire, now, mono);
            wire = 0; /* the message's bytes count once, with its first event */
            continue;
        }
        if (rc == -ENOMEM) { /* the event could not be built: the agent's trouble (admit.h), the message ends */
            record_info none = {0};
            offer_record(c, rc, &none, wire, mono);
            forward_done(c);
            continue;
        }
        if (rc < 0) {
            forward_bad_event(c, rc);
            continue;
        }
        if (c->fwd.chunk)
            forward_ack(c, c->fwd.chunk);
        forward_done(c);
        return 1;
    }
    return 0;
}

static void forward_refused(conn *c, int rc, size_t wire, int64_t mono);

/* A top-level array of `wire` bytes at p: a Forward message, read in place by forward.c (the decoder is pinned
 * until the message is done). Returns 1 when handled, 0 when paused holding some of its events. */
static int forward_start(conn *c, const uint8_t *p, size_t wire, int64_t now, int64_t mono)
{
    ingest *in = c->in;
    int rc = forward_begin(&c->fwd, p, wire);
    if (rc == 0) {
        decoder_pin(&c->dec, 1);
        stat_add(&in->st->fwd_messages, 1);
        c->fwd_first = stat_get(&in->st->received) + 1;
        return forward_drain(c, wire, now, mono);
    }
    forward_refused(c, rc, wire, mono);
    return 1;
}

/* A Forward message of `wire` bytes that forward_begin refused with rc: counted and logged. */
static void forward_refused(conn *c, int rc, size_t wire, int64_t mono)
{
    ingest *in = c->in;
    if (rc == -ENOMEM) { /* the agent's trouble, not the client's: one record's worth dropped.out_of_memory */
        record_info none = {0};
        offer_record(c, rc, &none, wire, mono);
        return;
    }
    client_entry *ce = conn_blame(c);
    if (ce) {
        ce->rejected++;
        ce->bytes += wire;
    }
    if (rc == -EMSGSIZE) {
        stat_add(&in->st->oversized, 1);
        log_peer(&in->lim_oversized, c, "Forward compressed entries inflate past forward_max_message_bytes, skipped");
    } else {
        stat_add(&in->st->invalid_record, 1);
        log_peer(&in->lim_invalid, c, rc == -EBADMSG ? "Forward compressed entries are not valid gzip, skipped"
                                                     : "invalid record skipped (an array that is not a Forward message)");
    }
}

static int take_buffered(conn *c);

/* Queues the held record and every complete record buffered on c, until done or the ring is full; then ends the
 * burst: closes the loop's chunk of the ring (the flusher sees past it) and folds c's tally into its client entry.
 * Returns 1 when everything buffered is queued, 0 when paused. */
static int process(conn *c)
{
    int drained = take_buffered(c);
    ring_chunk_close(c->in->ring, &c->in->chunk);
    clients_tally_fold(c->client, &c->tally);
    return drained;
}

static int take_buffered(conn *c)
{
    ingest *in = c->in;
    if (c->held) {
        /* c->client: the held record's entry (nothing of c was handled since) */
        int rc = admit_queue_held(in->adm, c->held, c->held_len, c->client, &c->src);
        if (rc == -ENOBUFS) {
            pause_all(in, c->held_len);
            return 0;
        }
        free(c->held); /* queued, or dropped (drop-newest: the spool stopped taking batches while it waited) */
        c->held = NULL;
    }
    int64_t now = clock_real_ns(), mono = clock_mono_ns();
    if (forward_active(&c->fwd) && !forward_drain(c, 0, now, mono))
        return 0;
    const uint8_t *p;
    size_t len;
    while (!in->paused && decoder_next(&c->dec, &p, &len)) {
        c->decoded++;
        if (is_array(*p)) {
            if (!forward_start(c, p, len, now, mono))
                return 0;
            continue;
        }
        handle_native(c, p, len, len, now, mono);
    }
    return !in->paused;
}

/* ---- memory held by connections (--ingest-memory-bytes) ----------------------------------------------- */

/* The bytes c's read buffer holds allocated. */
/* The size of c's next read: *size, or less (the buffer's free room) when the budget refuses its growth. Returns 0
 * when c must wait for memory instead (nothing is read). At shutdown everything may be read. */
static int mem_allow(conn *c, size_t *size)
{
    ingest *in = c->in;
    if (in->stopping || membudget_may_grow(in->mem, c, c->mem, membudget_cost(decoder_grown_cap(&c->dec, *size))))
        return 1;
    size_t room = decoder_room(&c->dec);
    if (room < MEM_MIN_READ)
        return 0;
    if (*size > room)
        *size = room;
    return 1;
}

static void mem_charge(conn *c) { membudget_update(c->in->mem, c, &c->mem, membudget_cost(decoder_cap(&c->dec))); }

static void mem_pause(conn *c)
{
    c->mem_paused = 1;
    event_del(c->ev);
    membudget_paused(c->in->mem, 1);
}

/* membudget_resume_fn: runs inside a charge update, so the resuming happens in mem_resume_ev's turn. */
static void mem_resume_soon(void *arg)
{
    ingest *in = arg;
    event_active(in->mem_resume_ev, EV_READ, 0);
}

static void on_mem_resume(evutil_socket_t fd, short what, void *arg)
{
    ingest *in = arg;
    int64_t now = clock_mono_ns();
    for (conn *c = in->conns; c; c = c->next) {
        if (!c->mem_paused)
            continue;
        c->mem_paused = 0;
        membudget_paused(in->mem, -1);
        if (c->partial_since_ns) /* not read meanwhile: its partial-record clock restarts */
            c->partial_since_ns = now;
        if (!in->paused && !c->eof && !c->fail)
            event_add(c->ev, NULL);
    }
}

/* A burst of large records is over: the heap's free pages go back to the system. main.c keeps glibc from trimming
 * by itself (batches stay on the heap), and a loop's buffers live in its own thread's arena, which would otherwise
 * keep them: malloc_trim(0) releases the free pages of every arena. */
static void on_trim(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    ingest *in = arg;
    in->trim_pending = 0;
    malloc_trim(0);
}

/* Called when a read buffer of `cap` bytes is freed: a large one schedules a trim (one per 200 ms at most). */
static void note_freed(ingest *in, size_t cap)
{
    if (cap < TRIM_AFTER_BYTES || in->trim_pending || !in->trim_ev)
        return;
    struct timeval later = {0, 200 * 1000};
    in->trim_pending = 1;
    evtimer_add(in->trim_ev, &later);
}

/* Gives c's buffer back when it holds nothing (no partial record, no Forward message being handed out) and is
 * larger than `above`: a new small one replaces it. Returns 0, or -ENOMEM (c then closes as at EOF). */
static int mem_shrink(conn *c, size_t above)
{
    size_t cap = decoder_cap(&c->dec);
    if (forward_active(&c->fwd) || c->held)
        return 0;
    int rc = decoder_shrink(&c->dec, above);
    if (rc == 0)
        return 0;
    membudget_freed(c->in->mem, cap);
    note_freed(c->in, cap);
    c->read_size = READ_FIRST;
    mem_charge(c);
    if (rc > 0)
        return 0;
    c->eof = 1;
    return -ENOMEM;
}

/* ---- connections ------------------------------------------------------------------------------------ */

static void limit_connections(ingest *in);

/* A connection of `in` closed (or was never taken): one less against --max-connections, counted by loop 0. */
static void conn_gone(ingest *in)
{
    ingest *l0 = in->loop0;
    atomic_fetch_sub_explicit(&l0->conns_open, 1, memory_order_relaxed);
    if (l0 == in)
        limit_connections(in);
    else
        event_active(l0->limit_ev, EV_READ, 0);
}

static void conn_free(conn *c)
{
    ingest *in = c->in;
    if (c->prev)
        c->prev->next = c->next;
    else
        in->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    if (in->tail == c)
        in->tail = c->prev;
    clients_tally_fold(c->client, &c->tally);
    clients_detach(in->clients, c->client, clock_mono_ns());
    event_free(c->ev);
    close(c->fd);
    forward_iter_free(&c->fwd);
    for (pending_ack *a = c->acks, *next; a; a = next) { /* not settled yet: the client resends them */
        next = a->next;
        free(a);
    }
    membudget_freed(in->mem, decoder_cap(&c->dec));
    note_freed(in, decoder_cap(&c->dec));
    decoder_free(&c->dec);
    free(c->held);
    if (c->mem_paused)
        membudget_paused(in->mem, -1);
    membudget_update(in->mem, c, &c->mem, 0);
    free(c);
    stat_add(&in->st->conn_active, (uint64_t)-1);
    conn_gone(in);
}

/* Closes c when it is finished: failed or at EOF, with nothing left that could still be queued. */
static void conn_maybe_close(conn *c, int drained)
{
    ingest *in = c->in;
    if (!drained || c->held || forward_active(&c->fwd) || !(c->fail || c->eof) || (c->acks && !in->stopping))
        return;
    int refused = 1;
    if (c->fail == MPSCAN_MALFORMED) {
        stat_add(&in->st->malformed, 1);
        log_peer(&in->lim_malformed, c, "malformed msgpack, connection closed");
    } else if (c->fail == MPSCAN_OVERSIZED) {
        stat_add(&in->st->oversized, 1);
        log_peer(&in->lim_oversized, c, c->dec.scan.in_array ? "Forward message over forward_max_message_bytes (or "
                                                           "its item budget), connection closed"
                                                         : "record over max_record_bytes, connection closed");
    } else if (decoder_mid_object(&c->dec)) {
        stat_add(&in->st->truncated, 1);
        log_peer(&in->lim_truncated, c, "client disconnected mid-record, partial record discarded");
    } else {
        refused = 0;
    }
    client_entry *ce = refused ? conn_blame(c) : NULL;
    if (ce) {
        ce->rejected++;
        ce->last_seen_ns = clock_mono_ns();
    }
    conn_free(c);
}

/* Reads once from c. Returns bytes read, 0 at EOF or error (c->eof set), -1 when nothing to read. */
static ssize_t conn_read(conn *c)
{
    ingest *in = c->in;
    size_t want = c->read_size;
    if (!c->dec.buf) { /* a failed mem_shrink: closing */
        c->eof = 1;
        return 0;
    }
    if (!mem_allow(c, &want)) {
        mem_pause(c);
        return -1;
    }
    size_t room;
    uint8_t *buf = decoder_space(&c->dec, want, &room);
    if (!buf) {
        c->eof = 1;
        return 0;
    }
    mem_charge(c);
    if (room > want)
        room = want;
    ssize_t n = read(c->fd, buf, room);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return -1;
    if (n <= 0) {
        c->eof = 1;
        return 0;
    }
    stat_add(&in->st->bytes_received, (uint64_t)n);
    if ((size_t)n == room && c->read_size < READ_CHUNK)
        c->read_size *= 2;
    uint64_t records_before = c->dec.scan.records;
    c->read_real_ns = clock_real_ns(); /* for the records take_native takes as they are scanned */
    c->read_mono_ns = clock_mono_ns();
    int rc = decoder_wrote(&c->dec, (size_t)n);
    if (rc != MPSCAN_OK)
        c->fail = rc;
    /* the partial-record clock starts with each record left half-read, and stops between records */
    if (!decoder_mid_object(&c->dec))
        c->partial_since_ns = 0;
    else if (!c->partial_since_ns || c->dec.scan.records != records_before)
        c->partial_since_ns = clock_mono_ns();
    return n;
}

static void on_readable(evutil_socket_t fd, short what, void *arg)
{
    conn *c = arg;
    ingest *in = c->in;
    uint64_t decoded = c->decoded; /* before reading: records are taken as they are read (take_native) */
    if (conn_read(c) < 0)
        return;
    for (int reads = 1; (what & EV_CLOSED) && !c->eof && !c->fail && reads < SHUTDOWN_READS; reads++)
        if (conn_read(c) < 0) /* the peer has closed: read what is left now (bounded) */
            break;
    if (c->eof || c->fail)
        event_del(c->ev);
    int drained = process(c);
    if (c->decoded != decoded) /* a record done: if it was the one allowed past the budget, others get a turn */
        membudget_release(in->mem, c);
    if (drained)
        mem_shrink(c, MEM_SHRINK_ABOVE);
    if (in->flusher)
        flusher_notify(in->flusher);
    conn_maybe_close(c, drained);
}

/* Logs a refused peer once per uid (the first LOGGED_UIDS uids; after that, rate-limited). */
static void log_refused(ingest *in, const record_source *src)
{
    for (unsigned i = 0; i < in->n_logged_uids; i++)
        if (in->logged_uids[i] == src->uid)
            return;
    if (in->n_logged_uids < LOGGED_UIDS)
        in->logged_uids[in->n_logged_uids++] = src->uid;
    else if (log_limit_check(&in->lim_refused, 10000) < 0)
        return;
    log_write(LOG_WARN, "\"connection refused: peer not in --allow-uids/--allow-gids (logged once per uid)\" "
                        "pid=%d uid=%u gid=%u comm=\"%s\"", src->pid, src->uid, src->gid, src->comm);
}

/* Connection admission: allowed by --allow-uids/--allow-gids. Returns 1, or 0 after closing fd (counted, logged). */
static int peer_admitted(ingest *in, int fd, const record_source *src)
{
    if (peer_allowed(in->cfg, fd, src))
        return 1;
    stat_add(&in->st->conn_refused_not_allowed, 1);
    log_refused(in, src);
    close(fd);
    return 0;
}

static void want_accepting(ingest *in, int on)
{
    if (in->guard)
        acceptguard_want(in->guard, on);
    if (in->fwd_guard)
        acceptguard_want(in->fwd_guard, on);
}

/* At max_conns the agent stops accepting: new connections wait in the kernel's listen backlog (their records with
 * them) until one closes — closing them instead would lose what short-lived clients already wrote. max_conns is
 * --max-connections, or the open-file budget when that is smaller (counted fd_limit_reached, not max_reached). */
static void limit_connections(ingest *in)
{
    uint64_t active = atomic_load_explicit(&in->conns_open, memory_order_relaxed);
    if (!in->accept_paused && active >= in->max_conns && in->listener) {
        want_accepting(in, 0);
        in->accept_paused = 1;
        int by_fds = in->max_conns < in->cfg->max_connections;
        stat_add(by_fds ? &in->st->conn_fd_limit_reached : &in->st->conn_max_reached, 1);
        int64_t sup = log_limit_check(&in->lim_max_conn, 10000);
        if (sup >= 0 && by_fds)
            log_write(LOG_WARN, "\"open-file limit reached: new connections wait in the listen backlog until one "
                                "closes (raise LimitNOFILE)\" connections=%llu max_connections=%llu suppressed=%lld",
                      (unsigned long long)in->max_conns, (unsigned long long)in->cfg->max_connections, (long long)sup);
        else if (sup >= 0)
            log_write(LOG_WARN, "\"--max-connections reached: new connections wait in the listen backlog until one "
                                "closes\" max_connections=%llu suppressed=%lld",
                      (unsigned long long)in->cfg->max_connections, (long long)sup);
    } else if (in->accept_paused && active < in->max_conns && in->listener) {
        want_accepting(in, 1);
        in->accept_paused = 0;
    }
}

static void on_limit(evutil_socket_t fd, short what, void *arg) { limit_connections(arg); }

static void conn_new(ingest *in, int fd, const record_source *src, uint64_t serial);

/* The loop a new connection goes to: round-robin; with --rate-limit, by sender, so that each sender's bucket (in
 * its loop's admission) sees all its records. */
static ingest *pick_loop(ingest *in, const record_source *src)
{
    if (in->n_loops <= 1)
        return in;
    if (in->cfg->rate_limit_rps > 0) {
        uint32_t key = in->cfg->rate_limit_key == RATE_KEY_UID ? src->uid : (uint32_t)src->pid;
        return in->loops[(key * 2654435761u) % in->n_loops];
    }
    ingest *to = in->loops[in->next_loop];
    in->next_loop = (in->next_loop + 1) % in->n_loops;
    return to;
}

/* Queues fd for loop `to` and wakes it (on_handoff). Closes fd when out of memory. */
static void handoff_push(ingest *to, int fd, const record_source *src, uint64_t serial)
{
    handoff *h = malloc(sizeof *h);
    if (!h) {
        log_write(LOG_ERROR, "\"out of memory accepting a connection\"");
        close(fd);
        stat_add(&to->loop0->st->conn_active, (uint64_t)-1); /* counted by dispatch, on loop 0's thread */
        conn_gone(to->loop0);
        return;
    }
    *h = (handoff){.fd = fd, .serial = serial, .src = *src};
    pthread_mutex_lock(&to->handoff_mu);
    *to->handoff_tail = h;
    to->handoff_tail = &h->next;
    pthread_mutex_unlock(&to->handoff_mu);
    event_active(to->handoff_ev, EV_READ, 0);
}

/* Loops 1..: takes the connections loop 0 handed over. */
static void on_handoff(evutil_socket_t fd, short what, void *arg)
{
    ingest *in = arg;
    pthread_mutex_lock(&in->handoff_mu);
    handoff *h = in->handoff;
    in->handoff = NULL;
    in->handoff_tail = &in->handoff;
    pthread_mutex_unlock(&in->handoff_mu);
    for (handoff *next; h; h = next) {
        next = h->next;
        conn_new(in, h->fd, &h->src, h->serial);
        free(h);
    }
}

/* Loop 0: a new connection counts against --max-connections here (so the limit is exact whichever loop serves
 * it), then goes to its loop. */
static void dispatch(ingest *in, int fd, const record_source *src)
{
    atomic_fetch_add_explicit(&in->conns_open, 1, memory_order_relaxed);
    /* connections.active from the accept on: one waiting in a loop's handoff list is open too (a reader waiting
     * for 0 must not see it between loops). Counted in loop 0's counters, uncounted in the serving loop's: only
     * /stats' sum over the loops means something. */
    stat_add(&in->st->conn_active, 1);
    uint64_t serial = ++in->serials;
    ingest *to = pick_loop(in, src);
    if (to == in)
        conn_new(in, fd, src, serial);
    else
        handoff_push(to, fd, src, serial);
    limit_connections(in);
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen, void *arg)
{
    ingest *in = arg;
    record_source src;
    peer_identity(fd, in->hostname, &src);
    if (peer_admitted(in, fd, &src))
        dispatch(in, fd, &src);
}

/* --forward-listen: a TCP peer has no kernel credentials; it is pid 0, uid 0, comm "forward" (config_load refuses
 * --forward-listen with --allow-uids/--allow-gids, which could not be checked). */
static void on_accept_tcp(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen, void *arg)
{
    ingest *in = arg;
    record_source src;
    memset(&src, 0, sizeof src);
    snprintf(src.comm, sizeof src.comm, "forward");
    src.hostname = in->hostname;
    dispatch(in, fd, &src);
}

/* Takes a new connection into the list (and reads it unless paused). Closes fd when out of memory. */
static void conn_new(ingest *in, int fd, const record_source *srcp, uint64_t serial)
{
    record_source src = *srcp;
    conn *c = calloc(1, sizeof *c);
    if (!c || decoder_init(&c->dec, READ_FIRST, in->cfg->max_record_bytes, in->cfg->forward_max_message_bytes) < 0) {
        log_write(LOG_ERROR, "\"out of memory accepting a connection\"");
        free(c);
        close(fd);
        stat_add(&in->st->conn_active, (uint64_t)-1);
        conn_gone(in);
        return;
    }
    c->in = in;
    decoder_set_taker(&c->dec, take_native, c);
    c->fd = fd;
    c->src = src;
    if (in->cfg->trusted_mask && src.pid > 0 && cgroup_read(src.pid, c->cgroup, sizeof c->cgroup, c->container_id) == 0) {
        c->src.cgroup = in->cfg->trusted_mask & TRUSTED_CGROUP ? c->cgroup : NULL;
        c->src.container_id = in->cfg->trusted_mask & TRUSTED_CONTAINER_ID ? c->container_id : NULL;
    }
    c->src.wire_len = record_source_wire(&c->src, c->src_wire, sizeof c->src_wire); /* 0: encoded per record */
    c->src.wire = c->src.wire_len ? c->src_wire : NULL;
    c->read_size = READ_FIRST;
    c->serial = serial;
    forward_iter_init(&c->fwd, &in->fwd_opts);
    c->fwd.lazy = 1; /* events in parts: record_prepare_parts reads their pairs where they are */
    /* EV_CLOSED: a short-lived client's data and its close are handled in one turn */
    c->ev = event_new(in->base, fd, EV_READ | EV_CLOSED | EV_PERSIST, on_readable, c);
    c->next = in->conns;
    if (in->conns)
        in->conns->prev = c;
    else
        in->tail = c;
    in->conns = c;
    stat_add(&in->st->conn_total, 1);
    if (!in->paused)
        event_add(c->ev, NULL);
    log_write(LOG_DEBUG, "\"client connected\" pid=%d uid=%u comm=\"%s\"", c->src.pid, c->src.uid, c->src.comm);
}

/* Once a second: closes connections that have held a partial record longer than --partial-record-timeout-ms
 * (a client stuck, or trickling bytes to hold the agent's memory). Not while paused: then nobody is read, and
 * resuming restarts every clock. */
static void on_sweep(evutil_socket_t fd, short what, void *arg)
{
    ingest *in = arg;
    for (conn *c = in->conns; c; c = c->next) /* idle connections give back what a large record made them take */
        if (!in->paused && !c->eof && !c->fail)
            mem_shrink(c, MEMBUDGET_FREE_BYTES);
    membudget_trim(in->mem);
    if (in->paused)
        return;
    int64_t now = clock_mono_ns(), limit = (int64_t)in->cfg->partial_record_timeout_ms * 1000000;
    for (conn *c = in->conns, *next; c; c = next) {
        next = c->next;
        if (!c->partial_since_ns || now - c->partial_since_ns < limit || c->held || forward_active(&c->fwd) ||
            c->fail || c->eof || c->mem_paused)
            continue;
        stat_add(&in->st->conn_timed_out, 1);
        c->eof = 1; /* closes as a truncation: counted `truncated`, blamed on its client */
        log_peer(&in->lim_timeout, c, "partial record held past --partial-record-timeout-ms, connection closed");
        conn_maybe_close(c, 1);
    }
}

/* Makes `first` the head of the connection list, moving the connections before it to the tail in their order, so
 * that under sustained backpressure every connection's held record gets its turn (none starves at the tail). */
static void rotate_to(ingest *in, conn *first)
{
    if (first == in->conns)
        return;
    conn *new_tail = first->prev;
    new_tail->next = NULL;
    first->prev = NULL;
    in->tail->next = in->conns;
    in->conns->prev = in->tail;
    in->conns = first;
    in->tail = new_tail;
}

static void on_resume(evutil_socket_t fd, short what, void *arg)
{
    ingest *in = arg;
    if (!in->paused)
        return;
    in->paused = 0;
    int64_t now = clock_mono_ns();
    stat_add(&in->st->backpressure_ns, (uint64_t)(now - in->paused_at_ns));
    for (conn *c = in->conns; c; c = c->next) /* nobody was read while paused: partial-record clocks restart */
        if (c->partial_since_ns)
            c->partial_since_ns = now;
    atomic_store_explicit(&in->st->paused_since_ns, 0, memory_order_relaxed);
    for (conn *c = in->conns, *next; c; c = next) {
        next = c->next;
        conn_maybe_close(c, process(c));
        if (in->paused) { /* c holds a record again: it goes first next time, those served go last */
            rotate_to(in, c);
            break;
        }
    }
    if (in->flusher)
        flusher_notify(in->flusher);
    if (in->paused)
        return;
    for (conn *c = in->conns; c; c = c->next)
        if (!c->eof && !c->fail && !c->mem_paused)
            event_add(c->ev, NULL);
}

/* ---- listening ---------------------------------------------------------------------------------------- */

static int listen_forward_tcp(ingest *in);
static int start_loops(ingest *in);

/* Logs why sockpath_open refused the path or failed (the ingest socket's own texts: docs/operations.md). */
static void log_open_error(const char *path, int err, const char *step)
{
    const char *why = sockpath_refusal(err, step);
    if (!why)
        log_write(LOG_ERROR, "\"cannot listen on the ingest socket\" socket=%s step=%s error=\"%s\"", path, step,
                  strerror(-err));
    else if (err == -EPERM && strcmp(step, "folder") == 0)
        log_write(LOG_ERROR, "\"the ingest socket's folder is world-writable without the sticky bit: anyone could "
                             "replace the socket; use a private folder (e.g. /run/logagent) or chmod +t\" socket=%s",
                  path);
    else if (err == -EADDRINUSE && strcmp(step, "path") == 0)
        log_write(LOG_ERROR, "\"another agent is already listening on the ingest socket\" socket=%s", path);
    else if (err == -EEXIST && strcmp(step, "path") == 0)
        log_write(LOG_ERROR, "\"ingest socket path exists and is not a socket\" socket=%s", path);
    else
        log_write(LOG_ERROR, "\"cannot use the ingest socket path\" socket=%s error=\"%s\"", path, why);
}

int ingest_listen(ingest *in)
{
    const char *path = in->cfg->socket_path, *step;
    int removed, rc = start_loops(in);
    if (rc < 0)
        return rc;
    int fd = sockpath_open(path, (unsigned)in->cfg->socket_mode, in->cfg->socket_gid, SOMAXCONN, &removed, &step);
    if (removed)
        log_write(LOG_INFO, "\"removed stale ingest socket\" socket=%s", path);
    if (fd < 0) {
        log_open_error(path, fd, step);
        return fd;
    }
    /* backlog 0: already listening (a negative one would make libevent listen(2) again with 128) */
    in->listener = evconnlistener_new(in->base, on_accept, in, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 0, fd);
    if (!in->listener) {
        log_write(LOG_ERROR, "\"cannot serve the ingest socket\" socket=%s", path);
        close(fd);
        unlink(path);
        return -ENOMEM;
    }
    in->listening = 1;
    if (!(in->guard = acceptguard_new(in->base, in->listener, "ingest", in->st->accept_errors)))
        return -ENOMEM;
    return listen_forward_tcp(in);
}

int ingest_listen_fd(ingest *in, int fd)
{
    int rc = start_loops(in);
    if (rc < 0)
        return rc;
    if (sd_is_socket_unix(fd, SOCK_STREAM, 1, NULL, 0) <= 0) {
        log_write(LOG_ERROR, "\"socket activation: the ingest fd is not a listening Unix stream socket\" fd=%d", fd);
        return -EINVAL;
    }
    evutil_make_socket_nonblocking(fd);
    evutil_make_socket_closeonexec(fd);
    in->listener = evconnlistener_new(in->base, on_accept, in, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 0,
                                      fd); /* 0: already listening; keep systemd's Backlog= */
    if (!in->listener) {
        log_write(LOG_ERROR, "\"socket activation: cannot serve the ingest fd\" fd=%d", fd);
        return -EINVAL;
    }
    in->listening = 0; /* the socket file belongs to systemd: never unlinked by us */
    if (!(in->guard = acceptguard_new(in->base, in->listener, "ingest", in->st->accept_errors)))
        return -ENOMEM;
    return listen_forward_tcp(in);
}

/* --forward-listen HOST:PORT: binds it (port 0: a free one, logged). Returns 0 (also when off) or -errno. */
static int listen_forward_tcp(ingest *in)
{
    const char *spec = in->cfg->forward_listen;
    if (!spec[0])
        return 0;
    char addr[300];
    int fd = tcplisten_open(spec, "--forward-listen", "HOST:PORT (e.g. 127.0.0.1:24224, [::1]:24224, :24224)",
                            SOMAXCONN, addr, sizeof addr);
    if (fd < 0)
        return fd;
    /* backlog 0: already listening */
    in->fwd_listener = evconnlistener_new(in->base, on_accept_tcp, in, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC,
                                          0, fd);
    if (!in->fwd_listener) {
        close(fd);
        log_write(LOG_ERROR, "\"cannot serve --forward-listen\" value=\"%s\"", spec);
        return -ENOMEM;
    }
    if (!(in->fwd_guard = acceptguard_new(in->base, in->fwd_listener, "forward", in->st->accept_errors)))
        return -ENOMEM;
    if (in->accept_paused)
        acceptguard_want(in->fwd_guard, 0);
    log_write(LOG_INFO, "\"forward listening\" address=%s", addr);
    return 0;
}

/* ---- lifecycle ---------------------------------------------------------------------------------------- */

/* The connections ingest may hold at once: --max-connections, or less when the open-file limit leaves fewer (the
 * budget of acceptguard.h, minus the HTTP ingest's share). Logged at start when the limit lowers it. */
static uint64_t conn_cap(const config *cfg)
{
    uint64_t budget = acceptguard_fd_budget(), http = http_ingest_fd_share(cfg) + otlp_grpc_fd_share(cfg);
    uint64_t cap = budget > http + 1 ? budget - http : 1;
    if (cap >= cfg->max_connections)
        return cfg->max_connections;
    log_write(LOG_WARN, "\"open-file limit below max-connections: at most this many ingest connections at once, "
                        "more wait in the listen backlog (raise LimitNOFILE)\" connections=%llu max_connections=%llu "
                        "nofile_reserved=%d http_connections=%llu",
              (unsigned long long)cap, (unsigned long long)cfg->max_connections, ACCEPTGUARD_FD_RESERVE,
              (unsigned long long)http);
    return cap;
}

static void ingest_free_loop(ingest *in);
static void reload_loop(ingest *in);
static void on_stop(evutil_socket_t fd, short what, void *arg);
/* Loops 1..: takes the settings SIGHUP applied (a copy main made: the live ones change under main, never under
 * a loop's feet). */
static void on_reload(evutil_socket_t fd, short what, void *arg)
{
    ingest *in = arg;
    pthread_mutex_lock(&in->handoff_mu);
    if (in->reload_pending)
        *in->own_cfg = *in->next_cfg;
    in->reload_pending = 0;
    pthread_mutex_unlock(&in->handoff_mu);
    reload_loop(in);
}

/* One event loop on `base` with counters `st`; loop0 NULL makes loop 0 (the listeners' loop, which owns the client
 * table and the memory budget the others share). NULL on allocation failure. */
static ingest *loop_new(struct event_base *base, const config *cfg, ring *r, ingest_stats *st, ingest *loop0)
{
    ingest *in = calloc(1, sizeof *in);
    if (!in)
        return NULL;
    if (loop0 && (!(in->own_cfg = malloc(sizeof *cfg)) || !(in->next_cfg = malloc(sizeof *cfg)))) {
        free(in->own_cfg);
        free(in);
        return NULL;
    }
    if (loop0) {
        *in->own_cfg = *cfg;
        cfg = in->own_cfg;
    }
    in->base = base;
    in->cfg = cfg;
    in->ring = r;
    in->st = st;
    in->loop0 = loop0 ? loop0 : in;
    in->handoff_tail = &in->handoff;
    pthread_mutex_init(&in->handoff_mu, NULL);
    if (gethostname(in->hostname, sizeof in->hostname - 1) < 0)
        strcpy(in->hostname, "unknown");
    in->resume_ev = event_new(base, -1, 0, on_resume, in);
    in->acks_ev = event_new(base, -1, 0, on_acks, in);
    in->sweep_ev = event_new(base, -1, EV_PERSIST, on_sweep, in);
    in->mem_resume_ev = event_new(base, -1, 0, on_mem_resume, in);
    in->trim_ev = evtimer_new(base, on_trim, in);
    int ok = in->resume_ev && in->acks_ev && in->sweep_ev && in->mem_resume_ev && in->trim_ev;
    if (loop0) {
        in->mem = loop0->mem;
        in->clients = loop0->clients;
        in->handoff_ev = event_new(base, -1, 0, on_handoff, in);
        in->stop_ev = event_new(base, -1, 0, on_stop, in);
        in->reload_ev = event_new(base, -1, 0, on_reload, in);
        ok = ok && in->handoff_ev && in->stop_ev && in->reload_ev;
    } else {
        in->max_conns = conn_cap(cfg);
        in->mem = &st->mem;
        membudget_init(in->mem, cfg->ingest_memory_bytes);
        in->clients = clients_new(CLIENTS_DEFAULT_CAP);
        in->limit_ev = event_new(base, -1, 0, on_limit, in);
        ok = ok && in->limit_ev;
    }
    in->adm = admit_new(ADMIT_STREAM, cfg, r, st);
    if (in->adm && cfg->buffer != BUFFER_DISK) /* disk: Forward acks need ring order = admission order */
        admit_set_chunk(in->adm, &in->chunk);
    struct timeval second = {1, 0};
    if (!ok || membudget_on_resume(in->mem, mem_resume_soon, in) < 0 || !in->clients || !in->adm ||
        record_enc_init(&in->enc) < 0 || event_add(in->sweep_ev, &second) < 0) {
        ingest_free_loop(in);
        return NULL;
    }
    if (!loop0)
        st->clients = in->clients;
    forward_opts_default(&in->fwd_opts, (size_t)cfg->max_record_bytes);
    in->enc.typed = cfg->upstream_protocol == PROTOCOL_OTLP; /* metadata types for otlp.c (record.h) */
    reload_loop(in);
    return in;
}

/* --ingest-threads, resolved: 0 is the CPUs the agent may use (cpus.h); --buffer disk keeps one (see the top). */
static unsigned loop_count(const config *cfg)
{
    unsigned n = cfg->ingest_threads ? (unsigned)cfg->ingest_threads : cpus_ingest_threads_default();
    if (n > 1 && cfg->buffer == BUFFER_DISK) {
        log_write(LOG_INFO, "\"--buffer disk: one ingest thread (Forward acks wait for the spool by record number, "
                            "which needs one producer)\" ingest_threads=%u", n);
        n = 1;
    }
    return n;
}

ingest *ingest_new(struct event_base *base, const config *cfg, ring *r, ingest_stats *st)
{
    ingest *in = loop_new(base, cfg, r, st, NULL);
    if (!in)
        return NULL;
    unsigned n = loop_count(cfg);
    if (!(in->loops = calloc(n, sizeof *in->loops))) {
        ingest_free(in);
        return NULL;
    }
    in->loops[0] = in;
    in->n_loops = 1;
    ingest_stats *prev = st;
    while (in->n_loops < n) {
        struct event_base *b = event_base_new();
        ingest_stats *ls = calloc(1, sizeof *ls);
        ingest *l = b && ls ? loop_new(b, cfg, r, ls, in) : NULL;
        if (!l) {
            if (b)
                event_base_free(b);
            free(ls);
            ingest_free(in);
            return NULL;
        }
        in->loops[in->n_loops++] = l;
        prev->next_thread = ls; /* stats.c sums the chain */
        prev = ls;
    }
    return in;
}

static void *loop_thread(void *arg)
{
    ingest *in = arg;
    event_base_loop(in->base, EVLOOP_NO_EXIT_ON_EMPTY); /* until on_stop */
    return NULL;
}

/* Starts loops 1.. on their threads, which block every signal (the main loop handles them). 0 or -errno. */
static int start_loops(ingest *in)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int rc = 0;
    for (unsigned i = 1; i < in->n_loops && rc == 0; i++) {
        ingest *l = in->loops[i];
        if (l->thread_started)
            continue;
        rc = -pthread_create(&l->thread, NULL, loop_thread, l);
        l->thread_started = rc == 0;
        char name[16];
        snprintf(name, sizeof name, "ingest-%u", i % 1000u); /* at most 16 loops */
        if (rc == 0)
            pthread_setname_np(l->thread, name); /* top -H, e2e_bench's per-thread CPU */
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc < 0)
        log_write(LOG_ERROR, "\"cannot start the ingest threads\" error=\"%s\"", strerror(-rc));
    else if (in->n_loops > 1)
        log_write(LOG_INFO, "\"ingest threads started\" ingest_threads=%u", in->n_loops);
    return rc;
}

static void reload_loop(ingest *in)
{
    snprintf(in->fwd_keys, sizeof in->fwd_keys, "%s", in->cfg->forward_message_keys);
    if (forward_opts_parse_keys(&in->fwd_opts, in->fwd_keys) < 0) /* config_load checked it: not reached */
        forward_opts_default(&in->fwd_opts, (size_t)in->cfg->max_record_bytes);
    in->fwd_opts.max_record = (size_t)in->cfg->max_record_bytes;
    in->fwd_opts.max_inflated = (size_t)in->cfg->forward_max_message_bytes;
    /* one encoded record must fit in the ring and, with a batch's framing and trailer, in one request */
    in->enc.text_limit = (size_t)in->cfg->batch_max_bytes - 256;
    if (in->enc.text_limit > ring_max_record(in->ring))
        in->enc.text_limit = ring_max_record(in->ring);
}

void ingest_reload(ingest *in)
{
    reload_loop(in);
    for (unsigned i = 1; i < in->n_loops; i++) { /* each loop's own copy, taken on its own thread */
        ingest *l = in->loops[i];
        pthread_mutex_lock(&l->handoff_mu);
        *l->next_cfg = *in->cfg;
        l->reload_pending = 1;
        pthread_mutex_unlock(&l->handoff_mu);
        event_active(l->reload_ev, EV_READ, 0);
    }
}

void ingest_set_flusher(ingest *in, struct flusher *f)
{
    for (unsigned i = 0; i < in->n_loops; i++) {
        in->loops[i]->flusher = f;
        admit_set_flusher(in->loops[i]->adm, f);
    }
    if (f)
        flusher_set_spooled_fn(f, spooled_ring, in); /* --buffer disk: one loop */
}

/* A record left at shutdown (a native record's bytes, or a Forward event's map; NULL: an event forward_next could
 * not build, -ENOMEM) of `wire` bytes: classified by admission as it would have been had there been room (bad
 * ones rejected, reserved keys and unknown levels counted for the others) and dropped as dropped_shutdown. */
static void count_one(conn *c, const uint8_t *p, size_t len, size_t wire)
{
    ingest *in = c->in;
    record_info info = {0};
    int rc = p ? record_prepare_raw(&in->enc, p, len, &c->src, 0, &info) : -ENOMEM; /* sized, never written */
    int64_t mono = clock_mono_ns();
    admit_from from = {.src = &c->src, .client = conn_client(c, info.service, info.service_len, mono),
                       .wire = wire, .mono_ns = mono};
    admit_unqueued(in->adm, &in->enc, rc, &info, &from);
}

/* The events of c's Forward message not handed out yet, at shutdown (`wire`: the message's bytes when none was):
 * each through count_one, bad entries counted as forward_drain counts them. Not acked. */
static void count_forward(conn *c, size_t wire)
{
    const uint8_t *ev;
    size_t len;
    c->fwd.lazy = 0; /* each event as its map: count_one sizes native maps */
    for (int rc; forward_active(&c->fwd) && (rc = forward_next(&c->fwd, &ev, &len)) != 0; wire = 0) {
        if (rc == 1 || rc == -ENOMEM)
            count_one(c, rc == 1 ? ev : NULL, len, wire);
        else
            forward_bad_event(c, rc);
    }
    forward_done(c);
}

/* Counts what a connection still holds at shutdown: the held record (already admitted: dropped_shutdown) and the
 * complete buffered records and Forward events, each through count_one. */
static void count_unqueued(conn *c)
{
    ingest *in = c->in;
    uint64_t n = c->held ? 1 : 0;
    if (n && c->client)
        c->client->dropped++;
    count_forward(c, 0);
    const uint8_t *p;
    size_t len;
    while (c->dec.buf && decoder_next(&c->dec, &p, &len)) {
        if (!is_array(*p)) {
            count_one(c, p, len, len);
            continue;
        }
        int rc = forward_begin(&c->fwd, p, len);
        if (rc < 0) {
            forward_refused(c, rc, len, clock_mono_ns());
            continue;
        }
        decoder_pin(&c->dec, 1);
        count_forward(c, len);
    }
    stat_add(&in->st->dropped_shutdown, n);
    free(c->held);
    c->held = NULL;
}

/* Connections waiting in the listen backlog (--max-connections stopped accepting) hold what their clients already
 * wrote: at shutdown they are accepted too, past the limit, and drained like the others. Only for a socket we own:
 * systemd's keeps its backlog for the next agent. */
static void accept_backlog(ingest *in)
{
    int lfd = evconnlistener_get_fd(in->listener);
    for (int fd; (fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0;)
        on_accept(in->listener, fd, NULL, 0, in);
}

static void loop_drain(ingest *in, int64_t deadline_ms);

/* Loops 1..: ingest_shutdown's part on this loop's thread, then the loop ends (its thread returns). */
static void on_stop(evutil_socket_t fd, short what, void *arg)
{
    ingest *in = arg;
    in->stopping = 1;
    on_handoff(-1, 0, in); /* connections loop 0 accepted last (its backlog) are drained too */
    loop_drain(in, atomic_load(&in->stop_deadline_ms));
    event_base_loopbreak(in->base);
}

/* Ends loop i's thread: its on_stop drains it by deadline_ms. */
static void stop_loop(ingest *in, int64_t deadline_ms)
{
    atomic_store(&in->stop_deadline_ms, deadline_ms);
    event_active(in->stop_ev, EV_READ, 0);
}

void ingest_shutdown(ingest *in, int64_t deadline_ms)
{
    in->stopping = 1;
    acceptguard_free(in->fwd_guard);
    in->fwd_guard = NULL;
    if (in->fwd_listener) {
        evconnlistener_free(in->fwd_listener);
        in->fwd_listener = NULL;
    }
    if (in->listening)
        unlink(in->cfg->socket_path); /* first: nobody new can connect */
    if (in->listener && in->listening)
        accept_backlog(in);
    acceptguard_free(in->guard);
    in->guard = NULL;
    if (in->listener) {
        evconnlistener_free(in->listener);
        in->listener = NULL;
    }
    in->listening = 0;
    for (unsigned i = 1; i < in->n_loops; i++) /* the other loops drain theirs meanwhile, on their threads */
        if (in->loops[i]->thread_started)
            stop_loop(in->loops[i], deadline_ms);
    loop_drain(in, deadline_ms);
    for (unsigned i = 1; i < in->n_loops; i++) {
        ingest *l = in->loops[i];
        if (l->thread_started)
            pthread_join(l->thread, NULL);
        l->thread_started = 0;
    }
}

/* Reads what this loop's clients already wrote and queues it (waiting for ring space up to deadline_ms), then
 * closes every connection. Its own thread. */
static void loop_drain(ingest *in, int64_t deadline_ms)
{
    for (conn *c = in->conns; c; c = c->next) /* reading now happens here, not in events */
        event_del(c->ev);
    if (in->sweep_ev)
        event_del(in->sweep_ev);
    while (in->conns) {
        conn *c = in->conns;
        in->paused = 0;
        int drained = process(c);
        for (int reads = 0; drained && !c->eof && !c->fail && reads < SHUTDOWN_READS && conn_read(c) > 0; reads++)
            drained = process(c); /* what the client already wrote, bounded: a client may write forever */
        if (in->flusher)
            flusher_notify(in->flusher);
        if (!drained && clock_mono_ns() / 1000000 < deadline_ms) { /* ring full: the flusher is still draining it */
            struct timespec ts = {0, 1000000};
            nanosleep(&ts, NULL);
            continue;
        }
        if (!drained)
            count_unqueued(c);
        if (c->acks) /* acks already settled go out; the rest are resent by the client to the next run */
            acks_check(c);
        c->eof = 1;
        conn_maybe_close(c, 1);
    }
    in->paused = 0;
    uint64_t since = stat_get(&in->st->paused_since_ns); /* no on_resume will close the last pause now */
    if (since) {
        stat_add(&in->st->backpressure_ns, (uint64_t)clock_mono_ns() - since);
        atomic_store_explicit(&in->st->paused_since_ns, 0, memory_order_relaxed);
    }
}

void ingest_free(ingest *in)
{
    if (!in)
        return;
    for (unsigned i = 1; i < in->n_loops; i++) { /* not shut down (a start that failed): stop them now */
        ingest *l = in->loops[i];
        if (l->thread_started) {
            stop_loop(l, clock_mono_ns() / 1000000);
            pthread_join(l->thread, NULL);
        }
        struct event_base *b = l->base;
        ingest_stats *ls = l->st;
        ingest_free_loop(l);
        event_base_free(b);
        free(ls);
    }
    in->st->next_thread = NULL;
    free(in->loops);
    ingest_free_loop(in);
}

static void ingest_free_loop(ingest *in)
{
    if (!in)
        return;
    for (handoff *h = in->handoff, *next; h; h = next) { /* never taken: close them */
        next = h->next;
        close(h->fd);
        free(h);
    }
    if (in->mem)
        membudget_forget(in->mem, in);
    acceptguard_free(in->guard);
    acceptguard_free(in->fwd_guard);
    if (in->listener)
        evconnlistener_free(in->listener);
    in->listener = NULL;
    if (in->fwd_listener)
        evconnlistener_free(in->fwd_listener);
    in->fwd_listener = NULL;
    while (in->conns)
        conn_free(in->conns);
    if (in->resume_ev)
        event_free(in->resume_ev);
    if (in->acks_ev)
        event_free(in->acks_ev);
    if (in->sweep_ev)
        event_free(in->sweep_ev);
    if (in->mem_resume_ev)
        event_free(in->mem_resume_ev);
    if (in->trim_ev)
        event_free(in->trim_ev);
    struct event *evs[4] = {in->limit_ev, in->handoff_ev, in->stop_ev, in->reload_ev};
    for (int i = 0; i < 4; i++)
        if (evs[i])
            event_free(evs[i]);
    admit_free(in->adm);
    if (in->loop0 == in) { /* the client table is loop 0's */
        if (in->st->clients == in->clients)
            in->st->clients = NULL;
        clients_free(in->clients);
    }
    record_enc_free(&in->enc);
    pthread_mutex_destroy(&in->handoff_mu);
    free(in->own_cfg);
    free(in->next_cfg);
    free(in);
}
