/* otlp.h — `--upstream-protocol otlp`: a batch of encoded WriteLogRequest entries becomes one OTLP
 * ExportLogsServiceRequest (opentelemetry.proto.collector.logs.v1), and an ExportLogsServiceResponse is read
 * for its partial_success count.
 *
 * The conversion is done at send time from the batch's bytes (the ring, the batch and the spool keep holding
 * WriteLogRequest entries, so retries, spooling and accounting are the same code in both modes). docs/interop.md (OpenTelemetry)
 * has the mapping table. An otlp_exporter is read-only once made: the flusher thread and the reaper may use it
 * at once.
 *
 * The request is a new buffer (the conversion is the one copy of OTLP mode): the flusher hands it to
 * upstream_call with `free` as its release, so the gRPC slice owns it and frees it when gRPC is done. */
#ifndef LOGAGENT_OTLP_H
#define LOGAGENT_OTLP_H

#include "flush/batch.h"
#include "flush/resattr.h"

#include <stddef.h>
#include <stdint.h>

#define OTLP_EXPORT_METHOD "/opentelemetry.proto.collector.logs.v1.LogsService/Export"

typedef struct otlp_exporter otlp_exporter;

/* Makes an exporter adding the --resource-attr pairs of extra (NULL: none; not owned, must outlive the exporter)
 * to every resource. NULL when memory ran out. */
otlp_exporter *otlp_exporter_new(const resattr *extra);
void otlp_exporter_free(otlp_exporter *x);

/* Builds the ExportLogsServiceRequest for b's entries into a new malloc'd buffer the caller owns.
 * observed_ns: the wall-clock time to give observed_time_unix_nano (the batch's first record taken from the
 * ring). Returns NULL on allocation failure or when an entry does not decode (-EINVAL or -ENOMEM in *err). */
uint8_t *otlp_payload(const otlp_exporter *x, const batch *b, int64_t observed_ns, size_t *len, int *err);

/* partial_success.rejected_log_records of an ExportLogsServiceResponse (0 when absent, empty or unreadable;
 * clamped to [0, n]). msg (may be NULL) gets its error_message, "" when none. */
uint64_t otlp_rejected(const uint8_t *body, size_t body_len, uint64_t n, char *msg, size_t msglen);

/* OTLP SeverityNumber for one of the canonical levels (docs/protocol.md, Keys) (TRACE 1 … FATAL 21); 0 (UNSPECIFIED) otherwise. */
int otlp_severity_number(const char *level);

#endif
