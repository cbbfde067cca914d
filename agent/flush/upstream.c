/* upstream.c — gRPC C core client calls on one channel (see upstream.h).
 *
 * Every call is one batch of the six client ops; its context holds everything the completion needs, so the
 * reaper thread owns the context from grpc_call_start_batch on (stack.md pitfall 5: never touch it after
 * starting the batch). Live calls sit on a list under a mutex only so that shutdown can cancel them.
 *
 * Request bytes: grpc_slice_new_with_user_data points a slice at the caller's bytes with the caller's
 * reference as its user data; the byte buffer takes a reference to the slice, the call holds the byte buffer
 * until ucall_free, and chttp2 may hold the slice a little longer (until its write completes): the release
 * runs when the last of these goes, on that thread. No byte of a request is copied here. */
#include "flush/upstream.h"

#include "flush/retry.h"
#include "flush/token.h"
#include "log.h"

#include <errno.h>
#include <limits.h>
#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/log.h>
#include <grpc/support/time.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* TSan cannot see a tag's hand-off through the completion queue (stack.md section 5): say it explicitly. */
#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define UPSTREAM_TSAN 1
#endif
#endif
#if defined(__SANITIZE_THREAD__)
#define UPSTREAM_TSAN 1
#endif
#ifdef UPSTREAM_TSAN
void __tsan_acquire(void *addr);
void __tsan_release(void *addr);
#define TAG_RELEASE(p) __tsan_release(p)
#define TAG_ACQUIRE(p) __tsan_acquire(p)
#else
#define TAG_RELEASE(p) ((void)(p))
#define TAG_ACQUIRE(p) ((void)(p))
#endif

typedef struct ucall {
    grpc_call *call;
    grpc_byte_buffer *send;
    grpc_byte_buffer *recv;
    grpc_metadata_array initial_md, trailing_md;
    grpc_metadata md[2];    /* initial metadata: authorization (has_auth: md[0]), the encoding asked for */
    int has_auth;
    int gzip;               /* this call's message went gzip-compressed */
    grpc_status_code status;
    grpc_slice details;
    const char *error_string;
    void *arg;
    struct ucall *prev, *next;
} ucall;

struct upstream {
    pthread_mutex_t ch_mu; /* guards channel and method_handle: a reload (upstream_reload) swaps them */
    grpc_channel *channel;
    grpc_completion_queue *cq;
    void *method_handle[2];
    const char *methods[2];   /* the method paths (the flusher's config: they outlive us) */
    int64_t reconnect_max_ms; /* channel settings kept for a reload */
    int64_t keepalive_ms, keepalive_timeout_ms;
    int round_robin;
    upstream_done_fn done;
    void *ctx;
    pthread_t thread;
    pthread_mutex_t mu; /* guards the live list and `live` */
    pthread_cond_t idle;
    ucall *live_head;
    size_t live;
    int gzip;               /* --upstream-compression gzip (the channel's default algorithm) */
    atomic_int gzip_refused; /* the service answered a gzip call "not implemented": calls go uncompressed */
    pthread_mutex_t tok_mu; /* guards tok and auth */
    token_file *tok;        /* NULL: no token */
    grpc_slice auth;        /* "Bearer <token>" */
};

static const char *const STATUS_NAMES[] = {
    "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",
    "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
    "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"};

/* gRPC's log lines (gpr_log) through the agent's logger: one format, rate-limited, the journal's priorities.
 * gRPC's ERROR lines are the details of a failed connection attempt the agent retries: warnings here. */
static void grpc_log_line(gpr_log_func_args *a)
{
    int level = a->severity == GPR_LOG_SEVERITY_ERROR ? LOG_WARN
                : a->severity == GPR_LOG_SEVERITY_INFO ? LOG_INFO
                                                       : LOG_DEBUG;
    log_library(level, "grpc", a->file, a->line, a->message);
}

int upstream_gzip_refused(upstream *u)
{
    return atomic_load(&u->gzip_refused);
}

const char *upstream_status_name(int status)
{
    return status >= 0 && status <= 16 ? STATUS_NAMES[status] : "UNKNOWN";
}

static void live_remove(upstream *u, ucall *c)
{
    pthread_mutex_lock(&u->mu);
    if (c->prev)
        c->prev->next = c->next;
    else
        u->live_head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    if (--u->live == 0)
        pthread_cond_broadcast(&u->idle);
    pthread_mutex_unlock(&u->mu);
}

static void ucall_free(ucall *c)
{
    if (c->has_auth)
        grpc_slice_unref(c->md[0].value);
    grpc_metadata_array_destroy(&c->initial_md);
    grpc_metadata_array_destroy(&c->trailing_md);
    if (c->send)
        grpc_byte_buffer_destroy(c->send);
    if (c->recv)
        grpc_byte_buffer_destroy(c->recv);
    grpc_slice_unref(c->details);
    if (c->error_string)
        gpr_free((void *)c->error_string);
    if (c->call)
        grpc_call_unref(c->call);
    free(c);
}

/* A service without gzip answers a compressed message UNIMPLEMENTED, with details naming the (de)compressor
 * (gRPC core: "Compression algorithm 'gzip' is disabled."; grpc-go: "Decompressor is not installed ..."; Java:
 * "Can't find decompressor for gzip"). Not a missing method: the agent sends uncompressed from then on, logs it
 * once, and the call counts as a retryable failure (UNAVAILABLE), so the batch goes again, uncompressed. */
static int gzip_refused(upstream *u, const ucall *c, upstream_reply *r)
{
    if (!c->gzip || r->status != GRPC_STATUS_UNIMPLEMENTED || !strstr(r->details, "ompress"))
        return 0;
    r->status = GRPC_STATUS_UNAVAILABLE;
    if (atomic_exchange(&u->gzip_refused, 1) == 0)
        log_write(LOG_WARN, "\"the log service does not take gzip-compressed messages: sending uncompressed from now "
                            "on (set --upstream-compression none)\" details=\"%.160s\"", r->details);
    return 1;
}

/* gRPC's peer of a finished call as an instance's address, or "" when the call reached none: gRPC then names the
 * channel's target ("logs.example:4317", "ipv4:10.0.0.1:4317,10.0.0.2:4317"), not an address. */
static const char *peer_instance(const char *peer)
{
    if (!peer || strchr(peer, ','))
        return "";
    if (strncmp(peer, "ipv4:", 5) && strncmp(peer, "ipv6:", 5) && strncmp(peer, "unix:", 5))
        return "";
    return peer;
}

/* Runs the done callback for a finished call, with the response flattened into one slice. */
static void finish(upstream *u, ucall *c, int ok)
{
    upstream_reply r = {.status = ok ? (int)c->status : GRPC_STATUS_UNAVAILABLE, .retry_after_ms = -1};
    for (size_t i = 0; r.status != GRPC_STATUS_OK && i < c->trailing_md.count; i++)
        if (grpc_slice_str_cmp(c->trailing_md.metadata[i].key, "grpc-status-details-bin") == 0)
            r.retry_after_ms = retry_info_delay_ms(GRPC_SLICE_START_PTR(c->trailing_md.metadata[i].value),
                                                   GRPC_SLICE_LENGTH(c->trailing_md.metadata[i].value));
    char *details = grpc_slice_to_c_string(c->details), *peer = grpc_call_get_peer(c->call);
    r.details = details ? details : "";
    r.peer = peer_instance(peer);
    gzip_refused(u, c, &r);
    grpc_slice flat = grpc_empty_slice();
    if (r.status == GRPC_STATUS_OK && c->recv) {
        grpc_byte_buffer_reader rd;
        if (grpc_byte_buffer_reader_init(&rd, c->recv)) {
            flat = grpc_byte_buffer_reader_readall(&rd);
            grpc_byte_buffer_reader_destroy(&rd);
        }
        r.body = GRPC_SLICE_START_PTR(flat);
        r.body_len = GRPC_SLICE_LENGTH(flat);
    }
    live_remove(u, c);
    u->done(u->ctx, c->arg, &r);
    grpc_slice_unref(flat);
    gpr_free(details);
    gpr_free(peer);
    ucall_free(c);
}

static void *reaper_main(void *arg)
{
    upstream *u = arg;
    for (;;) {
        grpc_event ev = grpc_completion_queue_next(u->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN)
            break;
        if (ev.type == GRPC_OP_COMPLETE) {
            TAG_ACQUIRE(ev.tag);
            finish(u, ev.tag, ev.success);
        }
    }
    return NULL;
}

/* Undoes the start of upstream_new (no channel, queue or thread yet). */
static void upstream_free_early(upstream *u)
{
    grpc_slice_unref(u->auth);
    token_file_free(u->tok);
    pthread_mutex_destroy(&u->mu);
    pthread_mutex_destroy(&u->tok_mu);
    pthread_mutex_destroy(&u->ch_mu);
    pthread_cond_destroy(&u->idle);
    grpc_shutdown();
    free(u);
}

static grpc_slice bearer_slice(const char *token)
{
    size_t n = strlen(token);
    grpc_slice s = grpc_slice_malloc(7 + n);
    memcpy(GRPC_SLICE_START_PTR(s), "Bearer ", 7);
    memcpy(GRPC_SLICE_START_PTR(s) + 7, token, n);
    return s;
}

/* The authorization value for a new call (a reference the call owns), after a look at the token file. */
static grpc_slice auth_value(upstream *u)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    pthread_mutex_lock(&u->tok_mu);
    if (token_file_refresh(u->tok, (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000) == 1) {
        grpc_slice_unref(u->auth);
        u->auth = bearer_slice(token_file_value(u->tok));
    }
    grpc_slice s = grpc_slice_ref(u->auth);
    pthread_mutex_unlock(&u->tok_mu);
    return s;
}

/* Reads a PEM file into a new string. Returns it, or NULL with the reason in err. */
static char *read_pem(const char *what, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t len = 0;
    if (f) {
        char chunk[4096];
        size_t n;
        while ((n = fread(chunk, 1, sizeof chunk, f)) > 0 && len < (4u << 20)) {
            char *nb = realloc(buf, len + n + 1);
            if (!nb)
                break;
            buf = nb;
            memcpy(buf + len, chunk, n);
            len += n;
        }
        int bad = ferror(f) || !buf || n > 0;
        fclose(f);
        if (!bad) {
            buf[len] = '\0';
            return buf;
        }
        free(buf);
        snprintf(err, errlen, "cannot read %s %s: %s", what, path, len == 0 ? "empty" : "read error or over 4 MiB");
        return NULL;
    }
    snprintf(err, errlen, "cannot read %s %s: %s", what, path, strerror(errno));
    return NULL;
}

/* Insecure, or TLS from the files (grpc copies the PEM text). NULL with the reason in err. */
static grpc_channel_credentials *channel_creds(const upstream_tls *tls, char *err, size_t errlen)
{
    if (!tls)
        return grpc_insecure_credentials_create();
    const char *what[3] = {"ca-file", "cert-file", "key-file"};
    const char *path[3] = {tls->ca_file, tls->cert_file, tls->key_file};
    char *pem[3] = {NULL, NULL, NULL};
    grpc_channel_credentials *creds = NULL;
    static const char *const marker[3] = {"-----BEGIN CERTIFICATE-----", "-----BEGIN CERTIFICATE-----", "PRIVATE KEY-----"};
    for (int i = 0; i < 3; i++) {
        if (path[i] && path[i][0] && !(pem[i] = read_pem(what[i], path[i], err, errlen)))
            goto out;
        if (pem[i] && !strstr(pem[i], marker[i])) { /* gRPC would take it and fail every handshake later */
            snprintf(err, errlen, "%s %s holds no PEM %s", what[i], path[i], i == 2 ? "private key" : "certificate");
            goto out;
        }
    }
    grpc_ssl_pem_key_cert_pair pair = {pem[2], pem[1]};
    creds = grpc_ssl_credentials_create_ex(pem[0], pem[1] ? &pair : NULL, NULL, NULL);
    if (!creds)
        snprintf(err, errlen, "gRPC refused the TLS settings (ca-file, cert-file, key-file)");
out:
    for (int i = 0; i < 3; i++) {
        if (pem[i])
            explicit_bzero(pem[i], strlen(pem[i])); /* the key's copy: gRPC keeps its own */
        free(pem[i]);
    }
    return creds;
}

/* A channel to target with the TLS files read now (and every other setting as at start), its two methods
 * registered. Returns 0, or -1 with the reason in err (nothing made). */
static int make_channel(upstream *u, const char *target, const upstream_tls *tls, grpc_channel **out, void *handles[2],
                        char *err, size_t errlen)
{
    grpc_arg args[] = {
        {GRPC_ARG_INTEGER, (char *)GRPC_ARG_MAX_SEND_MESSAGE_LENGTH, {.integer = -1}},
        {GRPC_ARG_INTEGER, (char *)GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, {.integer = 64 << 20}},
        {GRPC_ARG_INTEGER, (char *)GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, {.integer = 100}},
        /* despite its name, gRPC's least time for one connection attempt (TCP connect + TLS handshake), whatever the
         * backoff: 20 s, gRPC's default (at 100 ms a handshake on a busy machine or with a distant service was cut
         * short, failing as "Handshake read/write failed") */
        {GRPC_ARG_INTEGER, (char *)GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, {.integer = 20000}},
        {GRPC_ARG_INTEGER, (char *)GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, {.integer = (int)u->reconnect_max_ms}},
        /* --upstream-keepalive: pings while calls are in flight (never on an idle channel: servers refuse those by
         * default), so an instance that died without a FIN (evicted pod, SIGSTOP, a dropped route) is noticed in
         * keepalive + timeout, not at the call's deadline or TCP's minutes; gRPC's default is no pings (INT_MAX) */
        {GRPC_ARG_INTEGER, (char *)GRPC_ARG_KEEPALIVE_TIME_MS,
         {.integer = u->keepalive_ms > 0 ? (int)u->keepalive_ms : INT_MAX}},
        {GRPC_ARG_INTEGER, (char *)GRPC_ARG_KEEPALIVE_TIMEOUT_MS, {.integer = (int)u->keepalive_timeout_ms}},
        {GRPC_ARG_INTEGER, (char *)GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, {.integer = 0}},
        {GRPC_ARG_INTEGER, (char *)GRPC_ARG_ENABLE_RETRIES, {.integer = 0}}, /* retries are ours */
        /* --upstream-compression: gRPC compresses each message and says so in grpc-encoding (see gzip_refused) */
        {GRPC_ARG_INTEGER, (char *)GRPC_COMPRESSION_CHANNEL_DEFAULT_ALGORITHM,
         {.integer = u->gzip ? GRPC_COMPRESS_GZIP : GRPC_COMPRESS_NONE}},
        {GRPC_ARG_STRING, (char *)GRPC_ARG_PRIMARY_USER_AGENT_STRING, {.string = (char *)"logagent/" LOGAGENT_VERSION_STRING}},
        /* --upstream-lb: gRPC's own policies, named in the channel's service config (the resolver's is not read) */
        {GRPC_ARG_STRING, (char *)GRPC_ARG_SERVICE_CONFIG,
         {.string = (char *)(u->round_robin ? "{\"loadBalancingConfig\":[{\"round_robin\":{}}]}"
                                            : "{\"loadBalancingConfig\":[{\"pick_first\":{}}]}")}},
        {GRPC_ARG_INTEGER, (char *)GRPC_ARG_SERVICE_CONFIG_DISABLE_RESOLUTION, {.integer = 1}},
        {GRPC_ARG_STRING, (char *)GRPC_SSL_TARGET_NAME_OVERRIDE_ARG, {.string = NULL}}, /* last: optional */
    };
    size_t nargs = sizeof args / sizeof args[0];
    if (tls && tls->server_name && tls->server_name[0])
        args[nargs - 1].value.string = (char *)tls->server_name;
    else
        nargs--;
    grpc_channel_args ca = {nargs, args};
    grpc_channel_credentials *creds = channel_creds(tls, err, errlen);
    if (!creds)
        return -1;
    *out = grpc_channel_create(target, creds, &ca);
    grpc_channel_credentials_release(creds);
    for (int i = 0; i < 2; i++)
        handles[i] = grpc_channel_register_call(*out, u->methods[i], NULL, NULL);
    return 0;
}

upstream *upstream_new(const upstream_config *cfg, char *err, size_t errlen)
{
    upstream *u = calloc(1, sizeof *u);
    if (!u) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (cfg->token_file && !(u->tok = token_file_open(cfg->token_file, err, errlen))) {
        free(u);
        return NULL;
    }
    gpr_set_log_function(grpc_log_line); /* before grpc_init: its own first lines too */
    grpc_init();
    u->done = cfg->done;
    u->ctx = cfg->ctx;
    u->gzip = cfg->gzip;
    u->methods[0] = cfg->methods[0];
    u->methods[1] = cfg->methods[1];
    u->reconnect_max_ms = cfg->reconnect_max_ms;
    u->round_robin = cfg->round_robin;
    u->keepalive_ms = cfg->keepalive_ms;
    u->keepalive_timeout_ms = cfg->keepalive_timeout_ms;
    pthread_mutex_init(&u->ch_mu, NULL);
    pthread_mutex_init(&u->mu, NULL);
    pthread_mutex_init(&u->tok_mu, NULL);
    pthread_cond_init(&u->idle, NULL);
    u->auth = u->tok ? bearer_slice(token_file_value(u->tok)) : grpc_empty_slice();
    if (make_channel(u, cfg->target, cfg->tls, &u->channel, u->method_handle, err, errlen) < 0) {
        upstream_free_early(u);
        return NULL;
    }
    u->cq = grpc_completion_queue_create_for_next(NULL);
    if (pthread_create(&u->thread, NULL, reaper_main, u) != 0) {
        snprintf(err, errlen, "cannot start the gRPC completion thread");
        grpc_completion_queue_shutdown(u->cq);
        grpc_completion_queue_destroy(u->cq);
        grpc_channel_destroy(u->channel);
        u->channel = NULL;
        upstream_free_early(u);
        return NULL;
    }
    return u;
}

/* The slice gRPC sends: req's bytes themselves, owning the caller's reference (released when gRPC unrefs it). */
static grpc_slice request_slice(const uint8_t *req, size_t len, upstream_release_fn release, void *owner)
{
    if (len == 0) { /* nothing to point at: no reference to keep */
        release(owner);
        return grpc_empty_slice();
    }
    return grpc_slice_new_with_user_data((void *)req, len, release, owner);
}

int upstream_call(upstream *u, int m, const uint8_t *req, size_t len, upstream_release_fn release, void *owner,
                  int64_t timeout_ms, void *call_arg)
{
    ucall *c = calloc(1, sizeof *c);
    if (!c) {
        release(owner);
        return -ENOMEM;
    }
    gpr_timespec deadline = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(timeout_ms, GPR_TIMESPAN));
    pthread_mutex_lock(&u->ch_mu);
    c->call = grpc_channel_create_registered_call(u->channel, NULL, GRPC_PROPAGATE_DEFAULTS, u->cq,
                                                  u->method_handle[m], deadline, NULL);
    pthread_mutex_unlock(&u->ch_mu);
    c->arg = call_arg;
    c->details = grpc_empty_slice();
    grpc_metadata_array_init(&c->initial_md);
    grpc_metadata_array_init(&c->trailing_md);
    grpc_slice s = request_slice(req, len, release, owner);
    c->send = grpc_raw_byte_buffer_create(&s, 1); /* takes its own reference to s: ours goes */
    grpc_slice_unref(s);

    grpc_op ops[6];
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    size_t nmd = 0;
    if (u->tok) {
        c->md[nmd].key = grpc_slice_from_static_string("authorization");
        c->md[nmd++].value = auth_value(u);
        c->has_auth = 1;
    }
    c->gzip = u->gzip && !atomic_load(&u->gzip_refused);
    if (u->gzip && !c->gzip) { /* this call overrides the channel's default: identity */
        c->md[nmd].key = grpc_slice_from_static_string(GRPC_COMPRESSION_REQUEST_ALGORITHM_MD_KEY);
        c->md[nmd++].value = grpc_slice_from_static_string("identity");
    }
    ops[0].data.send_initial_metadata.count = nmd;
    ops[0].data.send_initial_metadata.metadata = nmd ? c->md : NULL;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = c->send;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &c->initial_md;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &c->recv;
    ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[5].data.recv_status_on_client.trailing_metadata = &c->trailing_md;
    ops[5].data.recv_status_on_client.status = &c->status;
    ops[5].data.recv_status_on_client.status_details = &c->details;
    ops[5].data.recv_status_on_client.error_string = &c->error_string;

    pthread_mutex_lock(&u->mu);
    c->next = u->live_head;
    if (u->live_head)
        u->live_head->prev = c;
    u->live_head = c;
    u->live++;
    pthread_mutex_unlock(&u->mu);
    /* The mutex is not held across start_batch: the completion may run (and free c) before it returns. Read
     * c->call before the release, so that everything this thread did to c happens before the reaper's free. */
    grpc_call *call = c->call;
    TAG_RELEASE(c);
    if (grpc_call_start_batch(call, ops, 6, c, NULL) != GRPC_CALL_OK) {
        live_remove(u, c);
        ucall_free(c);
        return -EIO;
    }
    return 0;
}

void upstream_cancel_all(upstream *u)
{
    pthread_mutex_lock(&u->mu);
    for (ucall *c = u->live_head; c; c = c->next)
        grpc_call_cancel(c->call, NULL);
    pthread_mutex_unlock(&u->mu);
}

void upstream_free(upstream *u)
{
    if (!u)
        return;
    pthread_mutex_lock(&u->mu);
    while (u->live > 0)
        pthread_cond_wait(&u->idle, &u->mu);
    pthread_mutex_unlock(&u->mu);
    grpc_channel_destroy(u->channel);
    grpc_completion_queue_shutdown(u->cq);
    pthread_join(u->thread, NULL);
    grpc_completion_queue_destroy(u->cq);
    grpc_slice_unref(u->auth);
    token_file_free(u->tok);
    grpc_shutdown();
    pthread_mutex_destroy(&u->mu);
    pthread_mutex_destroy(&u->tok_mu);
    pthread_mutex_destroy(&u->ch_mu);
    pthread_cond_destroy(&u->idle);
    free(u);
}

int upstream_reload(upstream *u, const char *target, const upstream_tls *tls, char *err, size_t errlen)
{
    grpc_channel *fresh, *old;
    void *handles[2];
    if (make_channel(u, target, tls, &fresh, handles, err, errlen) < 0)
        return -1;
    pthread_mutex_lock(&u->ch_mu);
    old = u->channel;
    u->channel = fresh;
    u->method_handle[0] = handles[0];
    u->method_handle[1] = handles[1];
    pthread_mutex_unlock(&u->ch_mu);
    grpc_channel_destroy(old); /* the application's reference: calls still on it hold their own and finish */
    return 0;
}
