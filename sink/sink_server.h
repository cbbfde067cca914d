/* sink_server: the sink's gRPC server on the C core API: one completion queue polled by one thread,
 * the LogService method dispatch, failure injection and delayed answers. */
#ifndef LOGAGENT_SINK_SERVER_H
#define LOGAGENT_SINK_SERVER_H

#include <grpc/status.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "sink_ledger.h"
#include "sink_rng.h"

struct server_config {
	const char *listen;         /* HOST:PORT (port 0: the OS picks), or unix:PATH */
	int no_batch;               /* BatchWriteLogs answers UNIMPLEMENTED */
	int no_compression;         /* only identity-encoded messages (gRPC refuses the others) */
	int otlp;                   /* serve OTLP LogsService/Export instead of logagent.v1.LogService */
	long delay_ms;              /* each answer waits this long (other calls go on meanwhile) */
	int store_before_delay;     /* with delay_ms: store at arrival, answer after the delay */
	double fail_rate;           /* share of calls failed on purpose */
	uint64_t fail_first;        /* the first N calls fail on purpose */
	grpc_status_code fail_code; /* status of failed calls */
	long retry_after_ms;        /* >= 0: failed calls carry a google.rpc.RetryInfo with this delay */
	const char *tls_cert;       /* PEM files: TLS when set (with tls_key); tls_client_ca: mTLS */
	const char *tls_key;
	const char *tls_client_ca;
	const char *token_file;     /* calls must carry "authorization: Bearer <its content>" */
	struct ledger *ledger;      /* not owned */
	struct sink_rng *rng;       /* not owned */
};

/* Flags set by the signal thread and read by the completion-queue loop. */
struct server_flags {
	atomic_int stop; /* leave server_run */
	atomic_int dump; /* print the summary once, then clear */
};

struct server;

/* Creates the server and binds it (grpc_init must have been called). Returns NULL on failure after
 * writing a message naming the address into err. */
struct server *server_new(const struct server_config *cfg, char *err, size_t errlen);

/* The bound port (for unix: addresses, 1). */
int server_port(const struct server *s);

/* Starts serving; returns 0 or -1 (err filled) when the first request_call cannot be posted. */
int server_start(struct server *s, char *err, size_t errlen);

/* Serves until flags->stop is set or writing the output fails. */
void server_run(struct server *s, struct server_flags *flags);

/* Shuts down: cancels calls in flight (they are not counted), waits for every tag, frees all.
 * Must be called for every server_new'd server, started or not. NULL is allowed. */
void server_free(struct server *s);

#endif
