/* sink_otlp: `logagent-sink --protocol otlp` decoding. An ExportLogsServiceRequest (our proto/opentelemetry
 * subset, wire-compatible with OTLP) becomes logagent.v1 WriteLogRequest structs, mapped back the way the agent's
 * otlp.c maps them out (docs/interop.md (OpenTelemetry)), plus the OTLP-only facts for the "otlp" object of each JSON line.
 * The structs point into the unpacked request: valid until sink_otlp_free. */
#ifndef LOGAGENT_SINK_OTLP_H
#define LOGAGENT_SINK_OTLP_H

#include <stddef.h>
#include <stdint.h>

#include "logagent/v1/log_service.pb-c.h"

/* A resource attribute, its value as text (ints in decimal) and whether it was a string. */
struct sink_otlp_attr {
	const char *key;
	char *value; /* owned */
	int is_string;
};

/* What a LogRecord carries that a WriteLogRequest cannot say. */
struct sink_otlp_extra {
	int severity_number;
	uint64_t observed_time_unix_nano;
	size_t trace_bytes, span_bytes; /* lengths of the bytes fields (0: absent; the id may be an attribute) */
	const struct sink_otlp_attr *resource; /* the record's resource attributes */
	size_t n_resource;
	const char *scope_name, *scope_version;
};

struct sink_otlp_batch {
	size_t n;
	Logagent__V1__WriteLogRequest *entries;   /* n of them */
	struct sink_otlp_extra *extra;            /* n of them */
	/* storage */
	void *req;
	Logagent__V1__Source *sources;
	Logagent__V1__WriteLogRequest__MetadataEntry *meta;
	Logagent__V1__WriteLogRequest__MetadataEntry **meta_ptrs;
	char **texts;             /* owned strings (hex ids, numbers as text) */
	size_t n_texts, texts_cap;
	struct sink_otlp_attr *res_attrs;
	size_t n_res_attrs;
};

/* Decodes req into b. Returns 0, or -EINVAL when it does not decode (b is then empty). */
int sink_otlp_decode(const uint8_t *req, size_t len, struct sink_otlp_batch *b);

/* Frees what sink_otlp_decode made; b may be zeroed. */
void sink_otlp_free(struct sink_otlp_batch *b);

/* A packed ExportLogsServiceResponse: partial_success with `rejected` records and message when rejected > 0.
 * *out is malloc'ed, owned by the caller; NULL on out of memory. */
uint8_t *sink_otlp_reply(int64_t rejected, const char *message, size_t *len);

#endif
