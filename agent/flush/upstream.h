/* upstream.h — the gRPC side: one channel, one completion queue, one thread that reaps completions.
 *
 * Callers hand over an encoded request and an opaque argument; when the call ends — OK, failed, deadline, or
 * cancelled — the done callback runs on the upstream thread with the status and the response bytes. The
 * callback is called exactly once per call that upstream_call accepted (returned 0), and never for one it
 * refused.
 *
 * The request is not copied: gRPC sends it from the caller's bytes, through a slice that owns one reference to
 * them (`owner`, released with `release`). upstream_call takes that reference over in every case; gRPC calls
 * release(owner) once, on whichever thread drops the slice last — which may be after the done callback —, and
 * upstream_call calls it itself when the call cannot start. Until then the bytes must not change. */
#ifndef LOGAGENT_UPSTREAM_H
#define LOGAGENT_UPSTREAM_H

#include <stddef.h>
#include <stdint.h>

typedef struct upstream upstream;

typedef struct upstream_reply {
    int status;           /* grpc_status_code; 0 = OK */
    const char *details;  /* status message, NUL-terminated, never NULL */
    const uint8_t *body;  /* response message, or NULL */
    size_t body_len;
    int64_t retry_after_ms; /* google.rpc.RetryInfo from grpc-status-details-bin, or -1 */
    const char *peer;     /* the instance that answered, as gRPC names it ("ipv4:10.0.0.2:4317"); "" when none did */
} upstream_reply;

typedef void (*upstream_done_fn)(void *ctx, void *call_arg, const upstream_reply *r);

/* TLS to the log service: PEM files, read once by upstream_new ("" or NULL: not given). */
typedef struct upstream_tls {
    const char *ca_file;     /* roots to verify the server with; none: gRPC's default roots */
    const char *cert_file;   /* client certificate chain for mTLS */
    const char *key_file;    /* its private key (with cert_file) */
    const char *server_name; /* name the server's certificate must carry, when not the target's host */
} upstream_tls;

typedef struct upstream_config {
    const char *target;     /* HOST:PORT or any gRPC target URI */
    const upstream_tls *tls; /* NULL: plaintext (h2c) */
    const char *token_file; /* "authorization: Bearer <its content>" on every call (re-read when it changes); NULL: none */
    const char *methods[2]; /* full method paths, registered once */
    int64_t reconnect_max_ms;
    int gzip;               /* 1: every call's message is gzip-compressed (grpc-encoding: gzip) */
    int64_t keepalive_ms;   /* HTTP/2 PING every this long while calls are in flight; an instance that does not
                             * answer within keepalive_timeout_ms is dropped (its calls fail, retried elsewhere) */
    int64_t keepalive_timeout_ms;
    int round_robin;        /* 1: calls spread over every address of the target (gRPC's round_robin policy);
                             * 0: pick_first, every call to the first address that answers */
    upstream_done_fn done;
    void *ctx;
} upstream_config;

/* Calls grpc_init, creates the channel and starts the completion thread. NULL on failure, with the reason
 * in err. */
upstream *upstream_new(const upstream_config *cfg, char *err, size_t errlen);

/* Releases one reference to a request's bytes (see the top of this file). */
typedef void (*upstream_release_fn)(void *owner);

/* Starts a unary call of method index `m` (0 or 1 in cfg->methods) sending req[0..len), whose reference `owner`
 * it takes over (released with `release` when gRPC is done with the bytes, or before returning on failure).
 * Returns 0, or -errno. */
int upstream_call(upstream *u, int m, const uint8_t *req, size_t len, upstream_release_fn release, void *owner,
                  int64_t timeout_ms, void *call_arg);

/* Cancels every call in flight (each still gets its done callback, with CANCELLED). Any thread. */
void upstream_cancel_all(upstream *u);

/* Waits for every accepted call's done callback, then tears everything down and calls grpc_shutdown. */
void upstream_free(upstream *u);

/* Short readable name of a status code ("UNAVAILABLE"). */
const char *upstream_status_name(int status);

/* A new channel to target (TLS: the certificate, key and CA files read again now) for every later call; calls in
 * flight finish on the old one. Returns 0, or -1 with the reason in err and the running channel kept (a file that
 * cannot be read or that gRPC refuses). Any thread (SIGHUP's: the main thread). */
int upstream_reload(upstream *u, const char *target, const upstream_tls *tls, char *err, size_t errlen);

/* 1 once the service refused a gzip-compressed call (see upstream.c's gzip_refused): calls go uncompressed. */
int upstream_gzip_refused(upstream *u);

#endif
