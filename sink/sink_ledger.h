/* sink_ledger: what the sink does with a request body once the server decided to accept the call:
 * decode it, pick rejected entries, print accepted entries as JSON lines, count them, build the reply.
 * Owns the counters and the log_id set. One owner (the completion-queue thread), not thread-safe. */
#ifndef LOGAGENT_SINK_LEDGER_H
#define LOGAGENT_SINK_LEDGER_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "sink_rng.h"

struct ledger;

struct ledger_config {
	int quiet;          /* count only, no JSON lines */
	int out_fd;         /* where JSON lines go (unused when quiet); not owned */
	double reject_rate; /* share of batch entries answered as rejected, retryable */
	struct sink_rng *rng;
};

/* A packed protobuf reply; data is malloc'ed (never NULL) and owned by the caller. */
struct ledger_reply {
	uint8_t *data;
	size_t len;
};

/* Returns a ledger or NULL when out of memory. */
struct ledger *ledger_new(const struct ledger_config *cfg);

/* Records one encoded WriteLogRequest / BatchWriteLogsRequest and fills *reply.
 * Returns 0; -EINVAL when the request does not decode (nothing counted or printed); -EIO when the JSON
 * lines could not be written (nothing counted; ledger_failed() is then true). */
int ledger_write_log(struct ledger *l, const uint8_t *req, size_t len, struct ledger_reply *reply);
int ledger_batch_write(struct ledger *l, const uint8_t *req, size_t len, struct ledger_reply *reply);

/* Records one encoded OTLP ExportLogsServiceRequest (--protocol otlp) and fills *reply with an
 * ExportLogsServiceResponse; returns as ledger_batch_write does. Counted as a batch. */
int ledger_otlp_export(struct ledger *l, const uint8_t *req, size_t len, struct ledger_reply *reply);

/* Counts a call failed on purpose (--fail-rate / --fail-first). */
void ledger_count_injected_failure(struct ledger *l);

/* Counts a call answered INVALID_ARGUMENT because it did not decode. */
void ledger_count_invalid(struct ledger *l);

/* Counts a call refused for its bearer token (--token-file). */
void ledger_count_unauthenticated(struct ledger *l);

/* True once writing the output failed. */
int ledger_failed(const struct ledger *l);

/* Prints the one-line JSON summary of the counters to f and flushes f (settling the log_id set first:
 * linear in the log_ids received). */
void ledger_print_summary(struct ledger *l, FILE *f);

/* Frees the ledger; NULL is allowed. */
void ledger_free(struct ledger *l);

#endif
