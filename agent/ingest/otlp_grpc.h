/* otlp_grpc.h — OTLP/gRPC logs ingest (--otlp-listen): `opentelemetry.proto.collector.logs.v1.LogsService/Export`,
 * served by the gRPC C core on its own completion queue and thread, on unix:PATH and/or HOST:PORT.
 *
 * Each LogRecord becomes a record exactly as OTLP/HTTP's do (otlp_in.h has the mapping) and goes through the one
 * admission path (admit.h, kind ADMIT_REQUEST: a record not taken stays the caller's). The answer (docs/interop.md,
 * "OTLP in"):
 *   OK                   every record taken, or some refused for good: ExportLogsServiceResponse.partial_success
 *                        names how many and the first reason (the client must not send them again);
 *   UNAVAILABLE          the buffer was full (or the agent is stopping, or out of memory): retry the whole request
 *                        after the RetryInfo delay (1 s). Records of it that were taken come again with the same
 *                        log_ids (made from the request's bytes), which the service keeps once;
 *   RESOURCE_EXHAUSTED   the sender is over --rate-limit, with RetryInfo (retry later); also gRPC's own answer to a
 *                        message over --otlp-max-request-bytes (no RetryInfo: not retried);
 *   INVALID_ARGUMENT     the message is not an ExportLogsServiceRequest;
 *   UNIMPLEMENTED        any other method.
 * Connections are accepted by the agent (not by gRPC) and handed to gRPC: on unix: the peer's kernel credentials
 * are read then (SO_PEERCRED: `source` and --allow-uids/--allow-gids, refused peers are closed at once, as on the
 * ingest socket); over TCP `source` says comm "otlp-grpc" and pid 0. The socket's rights are the ingest socket's
 * (--socket-mode, --socket-group). No TLS: a local endpoint (use unix: or 127.0.0.1).
 *
 * Threads: the listeners, the admission, the counters (otlp_grpc_stats) and every answer are the main loop's; the
 * server thread only receives calls and hands them over. */
#ifndef LOGAGENT_OTLP_GRPC_H
#define LOGAGENT_OTLP_GRPC_H

#include "config.h"
#include "counters.h"
#include "ring.h"

#include <event2/event.h>

typedef struct otlp_grpc otlp_grpc;
struct flusher;

/* The stage for cfg->otlp_listen on the main loop `base`, counting into st (st->otlp_grpc its own). NULL when out
 * of memory or gRPC cannot make a server (logged). */
otlp_grpc *otlp_grpc_new(struct event_base *base, const config *cfg, ring *r, ingest_stats *st);
/* The descriptors the OTLP/gRPC connections may take at once (two each: gRPC's and the agent's watch on it), kept
 * out of ingest's budget: --otlp-max-connections, at most a quarter of the open-file budget (acceptguard.h) each.
 * 0 without --otlp-listen. */
uint64_t otlp_grpc_fd_share(const config *cfg);
/* How many connections that is. */
uint64_t otlp_grpc_conn_cap(const config *cfg);
/* --on-full drop-oldest: the flusher to ask for room. */
void otlp_grpc_set_flusher(otlp_grpc *g, struct flusher *f);
/* Binds every address of --otlp-listen and starts the server thread. 0, or -errno (logged). */
int otlp_grpc_listen(otlp_grpc *g);
/* SIGHUP: the batch size may have changed the largest record. */
void otlp_grpc_reload(otlp_grpc *g);
/* Stops accepting; calls not answered yet are answered UNAVAILABLE (the client retries elsewhere or later); the
 * server shuts down and its thread ends. Main loop thread. NULL is fine. */
void otlp_grpc_stop(otlp_grpc *g);
/* After otlp_grpc_stop. NULL is fine. */
void otlp_grpc_free(otlp_grpc *g);

#endif
