/* otlp_grpc.c — OTLP/gRPC logs ingest (--otlp-listen; see otlp_grpc.h).
 *
 * DESIGN
 * Two threads meet here. The main loop accepts connections itself (a guarded evconnlistener per address, like every
 * listener), reads a Unix peer's credentials and checks the allow-lists, then hands the fd to gRPC
 * (grpc_server_add_channel_from_fd). gRPC names the peer of such a connection "fd:N": `peers`, indexed by fd and
 * written at accept (main thread only), tells a call who sent it. A descriptor number is reused only after gRPC
 * closed the connection, and a call is looked up as soon as the main loop takes it.
 *
 * The server thread owns the completion queue: it keeps SERVER_PENDING calls requested, starts each call's receive,
 * and when the message is in, flattens it and queues the call for the main loop (mutex + event_active). The main
 * loop parses it (otlp_in_parse), admits each record (admit.h) and starts the answer's batch itself (gRPC takes
 * batches from any thread). A call is counted by references (atomic): the handler's, from request until the main
 * loop answered or dropped it, and one per batch started; whichever thread drops the last frees it.
 *
 * Stopping (otlp_grpc_stop, main thread): the listeners close; `stopping` is set under the queue's mutex, so the
 * server thread queues nothing after the main loop answered what was queued (UNAVAILABLE: the records were not
 * taken); then the server shuts down and its thread ends once gRPC says every call is over; the main thread then
 * destroys the server, and otlp_grpc_free drains the queue (the last references) on its own thread. */
#include "ingest/otlp_grpc.h"
#include "acceptguard.h"
#include "common/clock.h"
#include "flush/flusher.h"
#include "ingest/admit.h"
#include "ingest/clients.h"
#include "ingest/otlp_in.h"
#include "ingest/peer.h"
#include "log.h"
#include "pbwire.h"
#include "record.h"
#include "sockpath.h"
#include "tcplisten.h"

#include <google/rpc/error_details.pb-c.h>
#include <google/rpc/status.pb-c.h>
#include <errno.h>
#include <event2/listener.h>
#include <fcntl.h>
#include <poll.h>
#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_posix.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define EXPORT_METHOD "/opentelemetry.proto.collector.logs.v1.LogsService/Export"

enum { SERVER_PENDING = 16, LISTEN_BACKLOG = 1024, RETRY_DELAY_MS = 1000, CONN_IDLE_MS = 60000,
       CONN_AGE_MS = 600000, CONN_AGE_GRACE_MS = 30000, MAX_STREAMS = 64, STOP_GRACE_MS = 500 };

/* What became of one record; the call's answer comes from the worst. */
enum outcome { OUT_OK, OUT_BAD, OUT_FULL, OUT_NOMEM, OUT_LIMITED, OUT_N };

enum tag_kind { TAG_NEW, TAG_RECV, TAG_CLOSE, TAG_SEND, TAG_SHUTDOWN };

typedef struct ocall ocall;

typedef struct otag {
    enum tag_kind kind;
    ocall *call; /* NULL for TAG_SHUTDOWN */
} otag;

struct ocall {
    otlp_grpc *g;
    grpc_call *call;
    grpc_call_details details;
    grpc_metadata_array md;
    grpc_byte_buffer *request;
    grpc_byte_buffer *reply;
    grpc_slice status_bin; /* the answer's grpc-status-details-bin (empty when none) */
    char *body;            /* the request message in one piece (server thread makes it, main loop reads it) */
    size_t len;
    int flat_failed; /* out of memory while flattening */
    _Atomic int refs;
    _Atomic int closed; /* the client's side is over (RECV_CLOSE_ON_SERVER completed) */
    int cancelled;
    ocall *next; /* the queue to the main loop */
    otag t_new, t_recv, t_close, t_send;
};

/* Who is on a connection handed to gRPC (by its fd). */
typedef struct peer_slot {
    int used;
    record_source src;
    char peer[96]; /* for log lines */
} peer_slot;

/* The agent's watch on one connection it handed to gRPC: a duplicate of its descriptor, edge-triggered (one wake-up
 * per arrival of data, never a busy loop while gRPC has not read it yet) and checked with poll(2) for the end, so the
 * connection is counted until it ends, whoever ends it (the client's FIN or reset, or gRPC's shutdown(2) before it
 * closes its own descriptor). */
typedef struct owatch {
    otlp_grpc *g;
    struct event *ev;
    int fd;
    struct owatch *prev, *next;
} owatch;

typedef struct lsn {
    otlp_grpc *g;
    struct evconnlistener *l;
    acceptguard *guard;
    int is_unix;
    char path[108]; /* the socket file we bound and remove */
} lsn;

struct otlp_grpc {
    struct event_base *base;
    const config *cfg;
    ring *ring;
    ingest_stats *st;
    otlp_grpc_stats *gs;
    struct flusher *flusher;
    grpc_server *server;
    grpc_server_credentials *creds;
    grpc_completion_queue *cq;
    pthread_t thread;
    int server_started; /* grpc_server_start was called */
    int started;        /* the server thread runs */
    otag t_shutdown;
    struct event *wake; /* main loop: calls are queued */
    pthread_mutex_t mu; /* the queue and `stopping` */
    ocall *head, *tail;
    int stopping;
    int main_stopping; /* otlp_grpc_stop ran (main loop thread's copy: no lock) */
    lsn lis[OTLP_LISTEN_MAX];
    unsigned n_lis;
    peer_slot *peers; /* indexed by fd; main loop thread only */
    size_t n_peers;
    owatch *watches;  /* the connections open now (conn_active of them) */
    uint64_t cap;     /* --otlp-max-connections within the open-file budget */
    int at_cap;       /* the listeners are stopped at the cap */
    log_limit lim_cap;
    uint64_t serial;
    record_enc enc;
    admit *adm;
    char hostname[64];
    log_limit lim_refused, lim_bad;
};

/* ---- calls: references and batches (both threads) -------------------------------------------------------- */

static void call_free(ocall *c)
{
    if (c->call)
        grpc_call_unref(c->call);
    grpc_call_details_destroy(&c->details);
    grpc_metadata_array_destroy(&c->md);
    if (c->request)
        grpc_byte_buffer_destroy(c->request);
    if (c->reply)
        grpc_byte_buffer_destroy(c->reply);
    grpc_slice_unref(c->status_bin);
    free(c->body);
    free(c);
}

static void call_release(ocall *c)
{
    if (atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) == 1)
        call_free(c);
}

/* Starts one batch on c, with a reference its completion drops. 0, or -1 (nothing started). */
static int call_start(ocall *c, const grpc_op *ops, size_t n, otag *tag)
{
    atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
    if (grpc_call_start_batch(c->call, ops, n, tag, NULL) == GRPC_CALL_OK)
        return 0;
    atomic_fetch_sub_explicit(&c->refs, 1, memory_order_relaxed);
    return -1;
}

/* Drops c without an answer (its client sees CANCELLED) and the handler's reference. */
static void call_drop(ocall *c)
{
    grpc_call_cancel(c->call, NULL);
    call_release(c);
}

/* ---- the server thread ----------------------------------------------------------------------------------- */

/* Asks gRPC for one more call. 0 or -1. */
static int request_one(otlp_grpc *g)
{
    ocall *c = calloc(1, sizeof *c);
    if (!c)
        return -1;
    c->g = g;
    c->refs = 1; /* the handler's */
    c->status_bin = grpc_empty_slice();
    c->t_new = (otag){TAG_NEW, c};
    c->t_recv = (otag){TAG_RECV, c};
    c->t_close = (otag){TAG_CLOSE, c};
    c->t_send = (otag){TAG_SEND, c};
    grpc_call_details_init(&c->details);
    grpc_metadata_array_init(&c->md);
    if (grpc_server_request_call(g->server, &c->call, &c->details, &c->md, g->cq, g->cq, &c->t_new) != GRPC_CALL_OK) {
        call_free(c);
        return -1;
    }
    return 0;
}

/* A new call: watch for its end, and receive its message. */
static void on_new(ocall *c)
{
    grpc_op recv[2], close;
    memset(recv, 0, sizeof recv);
    memset(&close, 0, sizeof close);
    close.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    close.data.recv_close_on_server.cancelled = &c->cancelled;
    recv[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    recv[1].op = GRPC_OP_RECV_MESSAGE;
    recv[1].data.recv_message.recv_message = &c->request;
    if (call_start(c, &close, 1, &c->t_close) < 0 || call_start(c, recv, 2, &c->t_recv) < 0)
        call_drop(c);
}

/* The request message in one piece (gRPC has decompressed it). */
static void flatten(ocall *c)
{
    grpc_byte_buffer_reader r;
    if (!c->request)
        return; /* no message at all (the client half-closed): an empty request */
    if (!grpc_byte_buffer_reader_init(&r, c->request)) {
        c->flat_failed = 1;
        return;
    }
    grpc_slice all = grpc_byte_buffer_reader_readall(&r);
    grpc_byte_buffer_reader_destroy(&r);
    grpc_byte_buffer_destroy(c->request); /* one copy of the message at a time */
    c->request = NULL;
    size_t n = GRPC_SLICE_LENGTH(all);
    if ((c->body = malloc(n ? n : 1))) {
        memcpy(c->body, GRPC_SLICE_START_PTR(all), n);
        c->len = n;
    } else {
        c->flat_failed = 1;
    }
    grpc_slice_unref(all);
}

/* The message is in (or the receive failed): hand the call to the main loop, unless the agent is stopping. */
static void on_received(otlp_grpc *g, ocall *c, int ok)
{
    if (!ok) {
        call_drop(c);
        return;
    }
    flatten(c);
    pthread_mutex_lock(&g->mu);
    int stopping = g->stopping;
    if (!stopping) {
        if (g->tail)
            g->tail->next = c;
        else
            g->head = c;
        g->tail = c;
    }
    pthread_mutex_unlock(&g->mu);
    if (stopping)
        call_drop(c);
    else
        event_active(g->wake, 0, 0);
}

/* One completion. Returns 0, or 1 for the server's shutdown tag. */
static int dispatch(otlp_grpc *g, otag *t, int ok)
{
    ocall *c = t->call;
    switch (t->kind) {
    case TAG_NEW:
        pthread_mutex_lock(&g->mu);
        int stopping = g->stopping;
        pthread_mutex_unlock(&g->mu);
        if (!stopping && request_one(g) < 0)
            log_write(LOG_WARN, "\"OTLP/gRPC: cannot wait for another call (out of memory)\"");
        if (ok && !stopping)
            on_new(c);
        else
            call_release(c);
        return 0;
    case TAG_RECV:
        on_received(g, c, ok);
        call_release(c); /* the batch's */
        return 0;
    case TAG_CLOSE:
        atomic_store(&c->closed, 1);
        call_release(c);
        return 0;
    case TAG_SEND:
        call_release(c);
        return 0;
    default: /* TAG_SHUTDOWN */
        return 1;
    }
}

/* Until gRPC says the server has shut down (every call over): otlp_grpc_stop then destroys it and drains the
 * queue. */
static void *server_main(void *arg)
{
    otlp_grpc *g = arg;
    int asked = 0; /* requested here, where they complete: no hand-off between threads that gRPC would hide */
    for (int i = 0; i < SERVER_PENDING; i++)
        asked += request_one(g) == 0;
    if (!asked)
        log_write(LOG_ERROR, "\"OTLP/gRPC: gRPC takes no call: every Export will wait\"");
    for (;;) {
        grpc_event ev = grpc_completion_queue_next(g->cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN || (ev.type == GRPC_OP_COMPLETE && dispatch(g, ev.tag, ev.success)))
            return NULL;
    }
}

/* ---- answers (main loop) --------------------------------------------------------------------------------- */

static void count_answer(otlp_grpc *g, grpc_status_code code)
{
    stat_add(&g->gs->calls, 1);
    for (size_t i = 0; i < STATS_GRPC_CODE_N; i++)
        if (stats_grpc_codes[i] == (int)code)
            stat_add(&g->gs->responses[i], 1);
}

/* google.rpc.Status {code, message, details: [Any {RetryInfo {retry_delay}}]}: what OTLP clients read to know
 * when to retry. msg is at most HTTP_JSON_ERROR_MAX + 200 bytes (answer cuts it). Returns the length written. */
static size_t retry_status(uint8_t *out, grpc_status_code code, const char *msg)
{
    Google__Protobuf__Duration d = GOOGLE__PROTOBUF__DURATION__INIT;
    d.seconds = RETRY_DELAY_MS / 1000;
    d.nanos = (RETRY_DELAY_MS % 1000) * 1000000;
    Google__Rpc__RetryInfo ri = GOOGLE__RPC__RETRY_INFO__INIT;
    ri.retry_delay = &d;
    uint8_t rib[32];
    Google__Protobuf__Any any = GOOGLE__PROTOBUF__ANY__INIT, *details[1] = {&any};
    any.type_url = (char *)"type.googleapis.com/google.rpc.RetryInfo";
    any.value.data = rib;
    any.value.len = google__rpc__retry_info__pack(&ri, rib);
    Google__Rpc__Status st = GOOGLE__RPC__STATUS__INIT;
    st.code = (int32_t)code;
    st.message = (char *)msg;
    st.n_details = 1;
    st.details = details;
    return google__rpc__status__pack(&st, out);
}

/* Answers c: code with msg; OK carries an ExportLogsServiceResponse (partial_success when `rejected`), UNAVAILABLE
 * and RESOURCE_EXHAUSTED with `retry` carry RetryInfo. Then drops the handler's reference. */
static void answer(otlp_grpc *g, ocall *c, grpc_status_code code, const char *msg, size_t rejected, int retry)
{
    uint8_t buf[HTTP_JSON_ERROR_MAX + 512], inner[HTTP_JSON_ERROR_MAX + 300], *p = buf;
    char cut[HTTP_JSON_ERROR_MAX + 201];
    size_t mlen = strlen(msg);
    if (mlen > HTTP_JSON_ERROR_MAX + 200) {
        mlen = HTTP_JSON_ERROR_MAX + 200;
        memcpy(cut, msg, mlen);
        cut[mlen] = 0;
        msg = cut;
    }
    grpc_op ops[2];
    grpc_metadata md;
    size_t n = 0;
    memset(ops, 0, sizeof ops);
    memset(&md, 0, sizeof md);
    if (code == GRPC_STATUS_OK) {
        if (rejected) { /* partial_success = 1 {rejected_log_records = 1, error_message = 2} */
            uint8_t *q = pbw_put_uint(inner, 1, rejected);
            q = pbw_put_bytes(q, 2, msg, mlen);
            p = pbw_put_bytes(p, 1, inner, (size_t)(q - inner));
        }
        grpc_slice s = grpc_slice_from_copied_buffer((const char *)buf, (size_t)(p - buf));
        c->reply = grpc_raw_byte_buffer_create(&s, 1);
        grpc_slice_unref(s);
        ops[n].op = GRPC_OP_SEND_MESSAGE;
        ops[n++].data.send_message.send_message = c->reply;
    } else if (retry) {
        c->status_bin = grpc_slice_from_copied_buffer((const char *)buf, retry_status(buf, code, msg));
        md.key = grpc_slice_from_static_string("grpc-status-details-bin");
        md.value = c->status_bin;
        ops[n].data.send_status_from_server.trailing_metadata_count = 1;
        ops[n].data.send_status_from_server.trailing_metadata = &md;
    }
    grpc_slice details = grpc_slice_from_copied_buffer(msg, mlen);
    ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    ops[n].data.send_status_from_server.status = code;
    ops[n++].data.send_status_from_server.status_details = code == GRPC_STATUS_OK ? NULL : &details;
    count_answer(g, code);
    if (atomic_load(&c->closed) || call_start(c, ops, n, &c->t_send) < 0)
        grpc_call_cancel(c->call, NULL);
    grpc_slice_unref(details);
    call_release(c);
}

/* ---- admission (main loop) ------------------------------------------------------------------------------- */

/* One call's records on their way through admission. */
typedef struct creq {
    otlp_grpc *g;
    record_source src;
    const char *peer;
    int64_t now_ns, mono_ns;
    client_entry *client;
    size_t entries, outcomes[OUT_N];
    int full, shed;
    char first_error[HTTP_JSON_ERROR_MAX + 64];
} creq;

/* The /stats/clients entry of this call's records of one service_name (NULL: no table, or no memory). */
static client_entry *attach(creq *rq, const char *service, size_t len)
{
    clients *t = rq->g->st->clients;
    if (!t)
        return NULL;
    if (!service) {
        service = "";
        len = 0;
    }
    if (rq->client && clients_same_service(rq->client, service, clients_key_len(service, len)))
        return rq->client;
    uint64_t serial = (1ULL << 62) | rq->g->serial; /* neither a socket connection's nor an HTTP request's */
    return rq->client = clients_attach(t, rq->client, &rq->src, serial, service, len, rq->mono_ns);
}

static int note(creq *rq, enum outcome out, const char *why)
{
    rq->outcomes[out]++;
    if (out != OUT_OK && !rq->first_error[0])
        snprintf(rq->first_error, sizeof rq->first_error, "%s", why);
    return 0;
}

/* What admission did with a record (admit.h counted and logged it). */
static int fate_outcome(creq *rq, admit_fate fate, const char *invalid)
{
    otlp_grpc *g = rq->g;
    char why[160];
    switch (fate) {
    case ADMIT_QUEUED: return note(rq, OUT_OK, NULL);
    case ADMIT_INVALID: return note(rq, OUT_BAD, invalid);
    case ADMIT_OVERSIZED:
        snprintf(why, sizeof why, "record too large once converted (more than %zu bytes: --batch-max-bytes minus "
                 "256, or a quarter of the ring)", g->enc.text_limit);
        return note(rq, OUT_BAD, why);
    case ADMIT_RATE_LIMITED: return note(rq, OUT_LIMITED, "over --rate-limit");
    case ADMIT_DROPPED_FULL: /* drop-newest: dropped and counted; the caller is told to retry */
    case ADMIT_FULL:
        rq->full = 1; /* none after it is tried: they would overtake it */
        if (fate == ADMIT_FULL && g->cfg->on_full == FULL_DROP_OLDEST && !rq->shed && g->flusher) {
            flusher_shed_oldest(g->flusher, g->enc.out_len);
            rq->shed = 1;
        }
        return note(rq, OUT_FULL, "buffer full");
    default: return note(rq, OUT_NOMEM, "out of memory");
    }
}

/* http_json_fn: one LogRecord, through the one admission path. */
static int on_entry(void *arg, const http_json_entry *e)
{
    creq *rq = arg;
    otlp_grpc *g = rq->g;
    rq->entries++;
    admit_from from = {.src = &rq->src, .peer = rq->peer, .mono_ns = rq->mono_ns, .full = rq->full};
    record_info info;
    memset(&info, 0, sizeof info);
    if (e->status != HTTP_JSON_OK) {
        from.client = attach(rq, "", 0);
        from.detail = e->error;
        return fate_outcome(rq, admit_record(g->adm, NULL, -EINVAL, &info, &from, NULL, NULL), e->error);
    }
    int rc = record_encode(&g->enc, e->record, &rq->src, rq->now_ns, &info);
    from.client = attach(rq, info.service, info.service_len);
    return fate_outcome(rq, admit_record(g->adm, &g->enc, rc, &info, &from, NULL, NULL), "not a record");
}

static void log_bad(otlp_grpc *g, log_limit *l, const char *what, const char *peer, const char *detail)
{
    int64_t suppressed = log_limit_check(l, 10000);
    if (suppressed >= 0)
        log_write(LOG_WARN, "\"%s\" %s error=\"%.200s\" suppressed=%lld", what, peer, detail, (long long)suppressed);
    (void)g;
}

/* After admission: retry the whole call when a record did not fit (UNAVAILABLE) or was over --rate-limit
 * (RESOURCE_EXHAUSTED), both with RetryInfo; else OK, naming the records refused for good. */
static void answer_result(otlp_grpc *g, ocall *c, creq *rq)
{
    const size_t *o = rq->outcomes;
    char msg[sizeof rq->first_error + 64] = "";
    if (o[OUT_FULL] || o[OUT_NOMEM])
        answer(g, c, GRPC_STATUS_UNAVAILABLE, o[OUT_NOMEM] ? "out of memory: retry later" : "buffer full: retry later",
               0, 1);
    else if (o[OUT_LIMITED])
        answer(g, c, GRPC_STATUS_RESOURCE_EXHAUSTED, "over --rate-limit: retry later", 0, 1);
    else {
        if (o[OUT_BAD])
            snprintf(msg, sizeof msg, "%zu of %zu log records refused; the first: %s", o[OUT_BAD], rq->entries,
                     rq->first_error);
        answer(g, c, GRPC_STATUS_OK, msg, o[OUT_BAD], 0);
    }
}

/* Who sent c: the connection's entry by the "fd:N" gRPC names it with. */
static const peer_slot *call_peer(otlp_grpc *g, ocall *c)
{
    static const peer_slot unknown = {1, {.pid = 0, .uid = (uint32_t)-1, .gid = (uint32_t)-1, .comm = "otlp-grpc"},
                                      "peer=unknown"};
    char *name = grpc_call_get_peer(c->call);
    long fd = -1;
    if (name && strncmp(name, "fd:", 3) == 0)
        fd = strtol(name + 3, NULL, 10);
    gpr_free(name);
    if (fd < 0 || (size_t)fd >= g->n_peers || !g->peers[fd].used)
        return &unknown;
    return &g->peers[fd];
}

/* One call, taken from the queue: decided, admitted and answered (answer drops the handler's reference: c is not
 * touched after it). */
static void serve(otlp_grpc *g, ocall *c)
{
    if (grpc_slice_str_cmp(c->details.method, EXPORT_METHOD) != 0) {
        answer(g, c, GRPC_STATUS_UNIMPLEMENTED, "unknown method: this endpoint serves " EXPORT_METHOD, 0, 0);
        return;
    }
    if (c->flat_failed || atomic_load(&c->closed)) { /* the client is gone, or no memory: nothing was taken */
        answer(g, c, GRPC_STATUS_UNAVAILABLE, "out of memory: retry later", 0, 1);
        return;
    }
    size_t len = c->len; /* c may be gone once answered (its last reference dropped on the server thread) */
    const peer_slot *ps = call_peer(g, c);
    creq rq = {.g = g, .src = ps->src, .peer = ps->peer, .now_ns = clock_real_ns(), .mono_ns = clock_mono_ns()};
    rq.src.hostname = g->hostname;
    g->serial++;
    stat_add(&g->gs->request_bytes, c->len);
    http_json_error err;
    int n = otlp_in_parse(c->body ? c->body : "", c->len, OTLP_IN_PROTOBUF, on_entry, &rq, &err);
    if (n == -EINVAL) {
        stat_add(err.status == HTTP_JSON_MALFORMED ? &g->st->malformed : &g->st->invalid_record, 1);
        client_entry *ce = attach(&rq, "", 0);
        if (ce)
            ce->rejected++;
        log_bad(g, &g->lim_bad, "OTLP/gRPC request refused", rq.peer, err.text);
        answer(g, c, GRPC_STATUS_INVALID_ARGUMENT, err.text, 0, 0);
    } else if (n < 0 && !rq.outcomes[OUT_OK]) {
        answer(g, c, GRPC_STATUS_UNAVAILABLE, "out of memory: retry later", 0, 1);
    } else {
        if (n < 0)
            rq.outcomes[OUT_NOMEM]++;
        answer_result(g, c, &rq);
    }
    if (rq.client) {
        rq.client->bytes += len;
        clients_detach(g->st->clients, rq.client, rq.mono_ns);
    }
}

/* Takes the queue (under mu). */
static ocall *take_queue(otlp_grpc *g)
{
    pthread_mutex_lock(&g->mu);
    ocall *c = g->head;
    g->head = g->tail = NULL;
    pthread_mutex_unlock(&g->mu);
    return c;
}

static void on_wake(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    otlp_grpc *g = arg;
    for (ocall *c = take_queue(g), *next; c; c = next) {
        next = c->next;
        serve(g, c);
    }
}

/* ---- connections (main loop) ----------------------------------------------------------------------------- */

/* Remembers who is on fd. 0 or -ENOMEM. */
static int peers_put(otlp_grpc *g, int fd, const peer_slot *s)
{
    if ((size_t)fd >= g->n_peers) {
        size_t n = g->n_peers ? g->n_peers : 64;
        while (n <= (size_t)fd)
            n *= 2;
        peer_slot *p = realloc(g->peers, n * sizeof *p);
        if (!p)
            return -ENOMEM;
        memset(p + g->n_peers, 0, (n - g->n_peers) * sizeof *p);
        g->peers = p;
        g->n_peers = n;
    }
    g->peers[fd] = *s;
    return 0;
}

uint64_t otlp_grpc_conn_cap(const config *cfg)
{
    if (!cfg->otlp_listen[0])
        return 0;
    uint64_t quarter = acceptguard_fd_budget() / 4;
    if (quarter < 1)
        quarter = 1;
    return cfg->otlp_max_connections < quarter ? cfg->otlp_max_connections : quarter;
}

uint64_t otlp_grpc_fd_share(const config *cfg) { return 2 * otlp_grpc_conn_cap(cfg); }

/* At the cap every listener stops (connections wait in the backlog); under it, they accept again. */
static void limit(otlp_grpc *g)
{
    uint64_t active = stat_get(&g->gs->conn_active);
    int at_cap = active >= g->cap;
    if (at_cap == g->at_cap)
        return;
    g->at_cap = at_cap;
    for (unsigned i = 0; i < g->n_lis; i++)
        acceptguard_want(g->lis[i].guard, !at_cap);
    if (!at_cap)
        return;
    stat_add(&g->gs->conn_max_reached, 1);
    int64_t sup = log_limit_check(&g->lim_cap, 10000);
    if (sup >= 0)
        log_write(LOG_WARN, "\"OTLP/gRPC connections at --otlp-max-connections: new ones wait in the listen backlog\" "
                            "connections=%llu suppressed=%lld", (unsigned long long)active, (long long)sup);
}

static void unwatch(owatch *w)
{
    otlp_grpc *g = w->g;
    if (w->prev)
        w->prev->next = w->next;
    else
        g->watches = w->next;
    if (w->next)
        w->next->prev = w->prev;
    event_free(w->ev);
    close(w->fd);
    free(w);
    stat_add(&g->gs->conn_active, (uint64_t)-1);
}

static void on_closed(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    owatch *w = arg;
    /* woken by an edge: data (gRPC reads it), or the end — a FIN (EV_CLOSED), a reset or hang-up (libevent reports
     * those as EV_READ only); poll says which */
    struct pollfd p = {.fd = fd, .events = POLLRDHUP};
    if (poll(&p, 1, 0) <= 0 || !(p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)))
        return;
    otlp_grpc *g = w->g;
    unwatch(w);
    if (!g->main_stopping)
        limit(g);
}

/* Counts fd's connection until it ends. 0, or -errno (the caller closes the connection: it cannot be counted). */
static int watch(otlp_grpc *g, int fd)
{
    owatch *w = calloc(1, sizeof *w);
    if (!w)
        return -ENOMEM;
    w->g = g;
    w->fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (w->fd < 0 || !(w->ev = event_new(g->base, w->fd, EV_READ | EV_CLOSED | EV_ET | EV_PERSIST, on_closed, w)) ||
        event_add(w->ev, NULL) < 0) {
        int rc = w->fd < 0 ? -errno : -ENOMEM;
        if (w->ev)
            event_free(w->ev);
        if (w->fd >= 0)
            close(w->fd);
        free(w);
        return rc;
    }
    w->next = g->watches;
    if (w->next)
        w->next->prev = w;
    g->watches = w;
    stat_add(&g->gs->conn_active, 1);
    return 0;
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen, void *arg)
{
    (void)l;
    lsn *ls = arg;
    otlp_grpc *g = ls->g;
    peer_slot s;
    memset(&s, 0, sizeof s);
    s.used = 1;
    if (ls->is_unix) {
        peer_identity(fd, g->hostname, &s.src);
        snprintf(s.peer, sizeof s.peer, "pid=%d uid=%u comm=\"%s\"", s.src.pid, s.src.uid, s.src.comm);
        if (!peer_allowed(g->cfg, fd, &s.src)) {
            stat_add(&g->gs->conn_refused_not_allowed, 1);
            stat_add(&g->st->conn_refused_not_allowed, 1);
            log_bad(g, &g->lim_refused, "OTLP/gRPC connection refused: peer not in --allow-uids/--allow-gids", s.peer,
                    "");
            close(fd);
            return;
        }
    } else {
        char host[NI_MAXHOST] = "?", port[NI_MAXSERV] = "?";
        getnameinfo(sa, (socklen_t)salen, host, sizeof host, port, sizeof port, NI_NUMERICHOST | NI_NUMERICSERV);
        snprintf(s.peer, sizeof s.peer, strchr(host, ':') ? "peer=[%s]:%s" : "peer=%s:%s", host, port);
        strcpy(s.src.comm, "otlp-grpc");
        int one = 1; /* what gRPC does to the sockets it accepts itself: without it, Nagle and the peer's delayed
                      * ACK hold every answer ~40 ms */
        if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0)
            log_write(LOG_DEBUG, "\"OTLP/gRPC: TCP_NODELAY refused\" %s error=\"%s\"", s.peer, strerror(errno));
    }
    int rc = peers_put(g, fd, &s);
    if (rc == 0)
        rc = watch(g, fd);
    if (rc < 0) { /* out of memory or descriptors: refused, as accept(2) itself would have been */
        log_bad(g, &g->lim_refused, "OTLP/gRPC connection closed: cannot count it", s.peer, strerror(-rc));
        close(fd);
        return;
    }
    stat_add(&g->gs->conn_total, 1);
    grpc_server_add_channel_from_fd(g->server, fd, g->creds); /* gRPC owns fd from here */
    limit(g);
}

/* Binds one address of --otlp-listen. 0 or -errno (logged). */
static int listen_one(otlp_grpc *g, const char *spec)
{
    lsn *ls = &g->lis[g->n_lis];
    char addr[300];
    int fd;
    ls->g = g;
    ls->is_unix = strncmp(spec, "unix:", 5) == 0;
    if (ls->is_unix) {
        int removed;
        const char *step;
        fd = sockpath_open(spec + 5, (unsigned)g->cfg->socket_mode, g->cfg->socket_gid, LISTEN_BACKLOG, &removed,
                           &step);
        if (removed)
            log_write(LOG_INFO, "\"removed stale OTLP/gRPC socket\" socket=%s", spec + 5);
        if (fd < 0) {
            const char *why = sockpath_refusal(fd, step);
            log_write(LOG_ERROR, "\"cannot listen on --otlp-listen\" socket=%s step=%s error=\"%s\"", spec + 5, step,
                      why ? why : strerror(-fd));
            return fd;
        }
        snprintf(ls->path, sizeof ls->path, "%.107s", spec + 5); /* config_check: it fits */
        snprintf(addr, sizeof addr, "unix:%s", spec + 5);
    } else if ((fd = tcplisten_open(spec, "--otlp-listen", "unix:PATH or HOST:PORT (e.g. 127.0.0.1:4317)",
                                    LISTEN_BACKLOG, addr, sizeof addr)) < 0) {
        return fd;
    }
    ls->l = evconnlistener_new(g->base, on_accept, ls, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 0, fd);
    if (!ls->l) {
        close(fd);
        log_write(LOG_ERROR, "\"cannot serve --otlp-listen\" value=\"%s\"", spec);
        return -ENOMEM;
    }
    g->n_lis++;
    if (!(ls->guard = acceptguard_new(g->base, ls->l, "otlp-grpc", g->st->accept_errors)))
        return -ENOMEM;
    log_write(LOG_INFO, "\"otlp grpc listening\" address=%s", addr);
    return 0;
}

/* ---- lifecycle (main loop) ------------------------------------------------------------------------------- */

otlp_grpc *otlp_grpc_new(struct event_base *base, const config *cfg, ring *r, ingest_stats *st)
{
    otlp_grpc *g = calloc(1, sizeof *g);
    if (!g)
        return NULL;
    g->base = base;
    g->cfg = cfg;
    g->ring = r;
    g->st = st;
    g->gs = &st->otlp_grpc;
    g->t_shutdown = (otag){TAG_SHUTDOWN, NULL};
    pthread_mutex_init(&g->mu, NULL);
    if (gethostname(g->hostname, sizeof g->hostname - 1) < 0)
        strcpy(g->hostname, "unknown");
    grpc_init();
    /* A connection holds one of --otlp-max-connections until it ends: an idle one is closed after a minute (an
     * SDK reconnects on its next export), and every one after ten (so one that never sends anything, or a
     * client that keeps a channel for ever, cannot keep the slot); streams per connection are bounded, as the
     * messages received and not yet taken are held in memory. */
    grpc_arg args[] = {
        {GRPC_ARG_INTEGER, (char *)GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, {.integer = (int)cfg->otlp_max_request_bytes}},
        {GRPC_ARG_INTEGER, (char *)GRPC_ARG_ALLOW_REUSEPORT, {.integer = 0}},
        {GRPC_ARG_INTEGER, (char *)GRPC_ARG_MAX_CONNECTION_IDLE_MS, {.integer = CONN_IDLE_MS}},
        {GRPC_ARG_INTEGER, (char *)GRPC_ARG_MAX_CONNECTION_AGE_MS, {.integer = CONN_AGE_MS}},
        {GRPC_ARG_INTEGER, (char *)GRPC_ARG_MAX_CONNECTION_AGE_GRACE_MS, {.integer = CONN_AGE_GRACE_MS}},
        {GRPC_ARG_INTEGER, (char *)GRPC_ARG_MAX_CONCURRENT_STREAMS, {.integer = MAX_STREAMS}},
    };
    grpc_channel_args cargs = {sizeof args / sizeof args[0], args};
    if (record_enc_init(&g->enc) < 0 || !(g->adm = admit_new(ADMIT_REQUEST, cfg, r, st)) ||
        !(g->wake = event_new(base, -1, 0, on_wake, g)) || !(g->cq = grpc_completion_queue_create_for_next(NULL)) ||
        !(g->server = grpc_server_create(&cargs, NULL)) || !(g->creds = grpc_insecure_server_credentials_create())) {
        log_write(LOG_ERROR, "\"cannot start the OTLP/gRPC ingest (out of memory, or gRPC refused)\"");
        otlp_grpc_free(g);
        return NULL;
    }
    g->cap = otlp_grpc_conn_cap(cfg);
    admit_set_requests(g->adm, "OTLP/gRPC", &g->gs->records, &g->gs->refused_full, &g->gs->refused_rate_limited);
    grpc_server_register_completion_queue(g->server, g->cq, NULL);
    g->enc.typed = cfg->upstream_protocol == PROTOCOL_OTLP; /* metadata types for otlp.c (record.h) */
    otlp_grpc_reload(g);
    return g;
}

void otlp_grpc_set_flusher(otlp_grpc *g, struct flusher *f)
{
    g->flusher = f;
    admit_set_flusher(g->adm, f);
}

void otlp_grpc_reload(otlp_grpc *g)
{
    if (!g)
        return;
    g->enc.text_limit = (size_t)g->cfg->batch_max_bytes - 256; /* as ingest's: fits a request and the ring */
    if (g->enc.text_limit > ring_max_record(g->ring))
        g->enc.text_limit = ring_max_record(g->ring);
}

int otlp_grpc_listen(otlp_grpc *g)
{
    grpc_server_start(g->server);
    g->server_started = 1;
    if (pthread_create(&g->thread, NULL, server_main, g) != 0) {
        log_write(LOG_ERROR, "\"cannot start the OTLP/gRPC ingest's thread\"");
        return -EAGAIN;
    }
    g->started = 1; /* from here otlp_grpc_stop shuts the server down through the thread */
    const char *cur = g->cfg->otlp_listen;
    char item[sizeof g->cfg->otlp_listen];
    int rc;
    while ((rc = config_list_next(&cur, item, sizeof item)) != 0)
        if (rc < 0 || !item[0] || g->n_lis >= OTLP_LISTEN_MAX || (rc = listen_one(g, item)) < 0)
            return rc < 0 ? rc : -EINVAL;
    g->gs->enabled = 1;
    return 0;
}

/* Closes the listeners and removes the socket files. */
static void unlisten(otlp_grpc *g)
{
    for (unsigned i = 0; i < g->n_lis; i++) {
        acceptguard_free(g->lis[i].guard);
        if (g->lis[i].l)
            evconnlistener_free(g->lis[i].l);
        if (g->lis[i].path[0])
            unlink(g->lis[i].path);
    }
    g->n_lis = 0;
}

void otlp_grpc_stop(otlp_grpc *g)
{
    if (!g)
        return;
    g->main_stopping = 1;
    unlisten(g);
    pthread_mutex_lock(&g->mu);
    g->stopping = 1;
    pthread_mutex_unlock(&g->mu);
    for (ocall *c = take_queue(g), *next; c; c = next) {
        next = c->next;
        answer(g, c, GRPC_STATUS_UNAVAILABLE, "the agent is stopping: retry later", 0, 1);
    }
    if (!g->started)
        return;
    grpc_server_shutdown_and_notify(g->server, g->cq, &g->t_shutdown);
    /* the answers just started (and calls about to finish) get STOP_GRACE_MS to reach their clients, which then
     * retry knowing why; what is still running after that is cancelled */
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_nsec += STOP_GRACE_MS * 1000000L;
    until.tv_sec += until.tv_nsec / 1000000000L;
    until.tv_nsec %= 1000000000L;
    if (pthread_timedjoin_np(g->thread, NULL, &until) != 0) {
        grpc_server_cancel_all_calls(g->server);
        pthread_join(g->thread, NULL);
    }
    g->started = 0;
    grpc_server_destroy(g->server);
    g->server = NULL;
}

void otlp_grpc_free(otlp_grpc *g)
{
    if (!g)
        return;
    otlp_grpc_stop(g);
    if (g->server && g->server_started) { /* started, but its thread never ran: shut it down here */
        grpc_server_shutdown_and_notify(g->server, g->cq, &g->t_shutdown);
        grpc_server_cancel_all_calls(g->server);
        for (grpc_event ev;;) {
            ev = grpc_completion_queue_next(g->cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
            if (ev.type == GRPC_OP_COMPLETE && dispatch(g, ev.tag, ev.success))
                break;
        }
    }
    if (g->server)
        grpc_server_destroy(g->server);
    if (g->cq) { /* what completes after the server's end: the last answers' and closes' references */
        grpc_completion_queue_shutdown(g->cq);
        for (grpc_event ev; (ev = grpc_completion_queue_next(g->cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL)).type !=
                            GRPC_QUEUE_SHUTDOWN;)
            if (ev.type == GRPC_OP_COMPLETE)
                dispatch(g, ev.tag, ev.success);
        grpc_completion_queue_destroy(g->cq);
    }
    if (g->creds)
        grpc_server_credentials_release(g->creds);
    while (g->watches) /* gRPC has closed its descriptors: these are the last of the connections */
        unwatch(g->watches);
    if (g->wake)
        event_free(g->wake);
    record_enc_free(&g->enc);
    admit_free(g->adm);
    free(g->peers);
    pthread_mutex_destroy(&g->mu);
    free(g);
    grpc_shutdown();
}
