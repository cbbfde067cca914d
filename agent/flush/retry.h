/* retry.h — which upstream statuses are worth retrying, and how long to wait before the next try.
 *
 * The table follows the OTLP specification's: CANCELLED, DEADLINE_EXCEEDED, ABORTED, OUT_OF_RANGE,
 * UNAVAILABLE, DATA_LOSS are transient; RESOURCE_EXHAUSTED is throttling (retried after the backoff);
 * everything else (INVALID_ARGUMENT, PERMISSION_DENIED, UNAUTHENTICATED, ...) is permanent. */
#ifndef LOGAGENT_RETRY_H
#define LOGAGENT_RETRY_H

#include <stddef.h>
#include <stdint.h>

int retry_status_retryable(int grpc_status);

/* Full-jitter exponential backoff: uniform in [0, min(max_ms, initial_ms * 2^attempt)], at least 1 ms.
 * `rng` is the caller's xorshift state (not shared between threads). */
int64_t retry_backoff_ms(unsigned attempt, int64_t initial_ms, int64_t max_ms, uint64_t *rng);

/* The delay a google.rpc.Status (the binary value of the `grpc-status-details-bin` trailer) asks for in a
 * google.rpc.RetryInfo detail, in ms; -1 when there is none or the bytes don't parse. */
int64_t retry_info_delay_ms(const uint8_t *status, size_t len);

#endif
