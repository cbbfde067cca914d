/* sink_otlp: ExportLogsServiceRequest -> WriteLogRequest structs + OTLP extras (see sink_otlp.h).
 * The reverse of the agent's agent/flush/otlp.c mapping: resource service.name/host.name/process.pid give
 * service_name, source.hostname, source.pid; record attributes log_id, trace_id, span_id, process.user.id,
 * logagent.source.gid, process.executable.name, logagent.source.cgroup and container.id go back to their
 * fields; every other attribute is metadata (its value as text: maps and arrays as compact JSON, doubles as the
 * agent writes them, so that a typed attribute reads as the native text form; bytes in hex, so that bytes_value
 * shows). trace_id/span_id bytes are printed as hex.
 * Out of memory is fatal (message, then abort), as in sink_ledger.c. */
#include "sink_otlp.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "opentelemetry/proto/collector/logs/v1/logs_service.pb-c.h"

typedef Opentelemetry__Proto__Collector__Logs__V1__ExportLogsServiceRequest ExportRequest;
typedef Opentelemetry__Proto__Common__V1__AnyValue AnyValue;
typedef Opentelemetry__Proto__Common__V1__KeyValue KeyValue;
typedef Opentelemetry__Proto__Logs__V1__LogRecord LogRecord;
typedef Opentelemetry__Proto__Logs__V1__ResourceLogs ResourceLogs;

static void otlp_oom(void)
{
	fputs("logagent-sink: out of memory\n", stderr);
	abort();
}

static void *xcalloc(size_t n, size_t sz)
{
	void *p = calloc(n ? n : 1, sz);
	if (!p)
		otlp_oom();
	return p;
}

/* Keeps s (malloc'ed) to be freed with b; returns it. */
static char *keep(struct sink_otlp_batch *b, char *s)
{
	if (!s)
		otlp_oom();
	if (b->n_texts == b->texts_cap) {
		size_t cap = b->texts_cap ? b->texts_cap * 2 : 256;
		char **p = realloc(b->texts, cap * sizeof *p);
		if (!p)
			otlp_oom();
		b->texts = p;
		b->texts_cap = cap;
	}
	b->texts[b->n_texts++] = s;
	return s;
}

static char *hex(struct sink_otlp_batch *b, const uint8_t *p, size_t n)
{
	static const char digits[] = "0123456789abcdef";
	char *s = keep(b, malloc(2 * n + 1));
	for (size_t i = 0; i < n; i++) {
		s[2 * i] = digits[p[i] >> 4];
		s[2 * i + 1] = digits[p[i] & 15];
	}
	s[2 * n] = 0;
	return s;
}

/* A growable string for the JSON text of kvlist and array values. */
struct sbuf {
	char *p;
	size_t len, cap;
};

static void sb_put(struct sbuf *s, const char *t, size_t n)
{
	if (s->len + n + 1 > s->cap) {
		size_t cap = s->cap ? s->cap : 64;
		while (cap < s->len + n + 1)
			cap *= 2;
		char *p = realloc(s->p, cap);
		if (!p)
			otlp_oom();
		s->p = p;
		s->cap = cap;
	}
	memcpy(s->p + s->len, t, n);
	s->len += n;
	s->p[s->len] = 0;
}

static void sb_str(struct sbuf *s, const char *t) { sb_put(s, t, strlen(t)); }

/* A double the way the agent's record.c writes one: the shortest text that reads back the same, with a '.' or an
 * exponent (2.0, 0.85, 1e+300); non-finite ones as NaN / Infinity / -Infinity (JSON null inside JSON). */
static void double_text(char *buf, size_t cap, double d, int json)
{
	if (d != d || d - d != 0) {
		snprintf(buf, cap, "%s", json ? "null" : d != d ? "NaN" : d > 0 ? "Infinity" : "-Infinity");
		return;
	}
	int n = 0;
	for (int prec = 15; prec <= 17; prec++) {
		n = snprintf(buf, cap, "%.*g", prec, d);
		if (strtod(buf, NULL) == d)
			break;
	}
	if (!strpbrk(buf, ".eEn") && (size_t)n + 3 <= cap)
		memcpy(buf + n, ".0", 3);
}

static void json_string(struct sbuf *s, const char *t)
{
	sb_put(s, "\"", 1);
	for (const unsigned char *p = (const unsigned char *)t; *p; p++) {
		char esc[8];
		if (*p == '"' || *p == '\\') {
			esc[0] = '\\';
			esc[1] = (char)*p;
			sb_put(s, esc, 2);
		} else if (*p < 0x20) {
			snprintf(esc, sizeof esc, "\\u%04x", *p);
			sb_put(s, esc, 6);
		} else {
			sb_put(s, (const char *)p, 1);
		}
	}
	sb_put(s, "\"", 1);
}

/* An AnyValue as compact JSON, as the agent's record.c writes maps and arrays (bytes as a hex string). */
static void json_value(struct sbuf *s, const AnyValue *v)
{
	char buf[64];
	switch (v ? v->value_case : OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE__NOT_SET) {
	case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE:
		json_string(s, v->string_value);
		return;
	case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_INT_VALUE:
		snprintf(buf, sizeof buf, "%" PRId64, v->int_value);
		break;
	case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_BOOL_VALUE:
		snprintf(buf, sizeof buf, "%s", v->bool_value ? "true" : "false");
		break;
	case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_DOUBLE_VALUE:
		double_text(buf, sizeof buf, v->double_value, 1);
		break;
	case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_BYTES_VALUE:
		sb_str(s, "\"");
		for (size_t i = 0; i < v->bytes_value.len; i++) {
			snprintf(buf, sizeof buf, "%02x", v->bytes_value.data[i]);
			sb_str(s, buf);
		}
		sb_str(s, "\"");
		return;
	case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_ARRAY_VALUE:
		sb_str(s, "[");
		for (size_t i = 0; v->array_value && i < v->array_value->n_values; i++) {
			if (i)
				sb_str(s, ",");
			json_value(s, v->array_value->values[i]);
		}
		sb_str(s, "]");
		return;
	case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_KVLIST_VALUE:
		sb_str(s, "{");
		for (size_t i = 0; v->kvlist_value && i < v->kvlist_value->n_values; i++) {
			if (i)
				sb_str(s, ",");
			json_string(s, v->kvlist_value->values[i]->key);
			sb_str(s, ":");
			json_value(s, v->kvlist_value->values[i]->value);
		}
		sb_str(s, "}");
		return;
	default:
		snprintf(buf, sizeof buf, "null");
		break;
	}
	sb_str(s, buf);
}

/* An AnyValue as text: strings as they are, numbers and bools as JSON would write them (doubles as the agent
 * does), bytes in hex, kvlist and array values as compact JSON, an empty AnyValue (null) as "". */
static char *value_text(struct sink_otlp_batch *b, const AnyValue *v, int *is_string)
{
	char buf[64];
	*is_string = 0;
	switch (v ? v->value_case : OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE__NOT_SET) {
	case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE:
		*is_string = 1;
		return keep(b, strdup(v->string_value));
	case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_INT_VALUE:
		snprintf(buf, sizeof buf, "%" PRId64, v->int_value);
		return keep(b, strdup(buf));
	case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_BOOL_VALUE:
		return keep(b, strdup(v->bool_value ? "true" : "false"));
	case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_DOUBLE_VALUE:
		double_text(buf, sizeof buf, v->double_value, 0);
		return keep(b, strdup(buf));
	case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_BYTES_VALUE:
		return hex(b, v->bytes_value.data, v->bytes_value.len);
	case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_ARRAY_VALUE:
	case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_KVLIST_VALUE: {
		struct sbuf s = {0};
		json_value(&s, v);
		return keep(b, s.p);
	}
	default:
		*is_string = 1;
		return keep(b, strdup("")); /* an empty AnyValue: a nil metadata value */
	}
}

/* Sizes the arrays: records, record attributes, resource attributes. */
static void count_all(const ExportRequest *r, size_t *recs, size_t *attrs, size_t *res)
{
	*recs = *attrs = *res = 0;
	for (size_t i = 0; i < r->n_resource_logs; i++) {
		const ResourceLogs *rl = r->resource_logs[i];
		*res += rl->resource ? rl->resource->n_attributes : 0;
		for (size_t j = 0; j < rl->n_scope_logs; j++) {
			*recs += rl->scope_logs[j]->n_log_records;
			for (size_t k = 0; k < rl->scope_logs[j]->n_log_records; k++)
				*attrs += rl->scope_logs[j]->log_records[k]->n_attributes;
		}
	}
}

/* One record attribute: back to its WriteLogRequest field, or a metadata entry. */
static void map_attr(struct sink_otlp_batch *b, Logagent__V1__WriteLogRequest *e, const KeyValue *kv)
{
	int is_string;
	char *v = value_text(b, kv->value, &is_string);
	const char *k = kv->key;
	if (!strcmp(k, "log_id"))
		e->log_id = v;
	else if (!strcmp(k, "trace_id"))
		e->trace_id = v;
	else if (!strcmp(k, "span_id"))
		e->span_id = v;
	else if (!strcmp(k, "process.user.id"))
		e->source->uid = (uint32_t)strtoul(v, NULL, 10);
	else if (!strcmp(k, "logagent.source.gid"))
		e->source->gid = (uint32_t)strtoul(v, NULL, 10);
	else if (!strcmp(k, "process.executable.name"))
		e->source->comm = v;
	else if (!strcmp(k, "logagent.source.cgroup"))
		e->source->cgroup = v;
	else if (!strcmp(k, "container.id"))
		e->source->container_id = v;
	else {
		static const Logagent__V1__WriteLogRequest__MetadataEntry init =
			LOGAGENT__V1__WRITE_LOG_REQUEST__METADATA_ENTRY__INIT;
		Logagent__V1__WriteLogRequest__MetadataEntry *m = e->metadata[e->n_metadata];
		*m = init;
		m->key = kv->key;
		m->value = v;
		e->n_metadata++;
	}
}

/* The resource's attributes as sink_otlp_attrs, and the three that are WriteLogRequest fields. */
static struct sink_otlp_attr *map_resource(struct sink_otlp_batch *b, const ResourceLogs *rl, size_t *n,
					   Logagent__V1__Source *src, const char **service)
{
	struct sink_otlp_attr *a = b->res_attrs + b->n_res_attrs;
	*n = rl->resource ? rl->resource->n_attributes : 0;
	for (size_t i = 0; i < *n; i++) {
		const KeyValue *kv = rl->resource->attributes[i];
		a[i].key = kv->key;
		a[i].value = value_text(b, kv->value, &a[i].is_string);
		if (!strcmp(kv->key, "service.name"))
			*service = a[i].value;
		else if (!strcmp(kv->key, "host.name"))
			src->hostname = a[i].value;
		else if (!strcmp(kv->key, "process.pid"))
			src->pid = (int32_t)strtol(a[i].value, NULL, 10);
	}
	b->n_res_attrs += *n;
	return a;
}

static void map_record(struct sink_otlp_batch *b, size_t idx, const LogRecord *r, const Logagent__V1__Source *res_src,
		       const char *service, size_t *meta_used)
{
	static const Logagent__V1__WriteLogRequest init = LOGAGENT__V1__WRITE_LOG_REQUEST__INIT;
	Logagent__V1__WriteLogRequest *e = &b->entries[idx];
	*e = init;
	b->sources[idx] = *res_src;
	e->source = &b->sources[idx];
	e->service_name = (char *)service;
	e->level = r->severity_text;
	int is_string;
	e->message = r->body ? value_text(b, r->body, &is_string) : (char *)"";
	e->timestamp_unix_nano = (int64_t)r->time_unix_nano;
	e->metadata = b->meta_ptrs + *meta_used;
	for (size_t k = 0; k < r->n_attributes; k++)
		map_attr(b, e, r->attributes[k]);
	*meta_used += e->n_metadata;
	if (r->trace_id.len)
		e->trace_id = hex(b, r->trace_id.data, r->trace_id.len);
	if (r->span_id.len)
		e->span_id = hex(b, r->span_id.data, r->span_id.len);
	b->extra[idx].severity_number = (int)r->severity_number;
	b->extra[idx].observed_time_unix_nano = r->observed_time_unix_nano;
	b->extra[idx].trace_bytes = r->trace_id.len;
	b->extra[idx].span_bytes = r->span_id.len;
}

static void map_all(struct sink_otlp_batch *b, const ExportRequest *r)
{
	size_t idx = 0, meta_used = 0;
	for (size_t i = 0; i < r->n_resource_logs; i++) {
		const ResourceLogs *rl = r->resource_logs[i];
		Logagent__V1__Source src = LOGAGENT__V1__SOURCE__INIT;
		const char *service = "";
		size_t n_res;
		const struct sink_otlp_attr *res = map_resource(b, rl, &n_res, &src, &service);
		for (size_t j = 0; j < rl->n_scope_logs; j++) {
			const Opentelemetry__Proto__Logs__V1__ScopeLogs *sl = rl->scope_logs[j];
			for (size_t k = 0; k < sl->n_log_records; k++, idx++) {
				map_record(b, idx, sl->log_records[k], &src, service, &meta_used);
				b->extra[idx].resource = res;
				b->extra[idx].n_resource = n_res;
				b->extra[idx].scope_name = sl->scope ? sl->scope->name : "";
				b->extra[idx].scope_version = sl->scope ? sl->scope->version : "";
			}
		}
	}
}

int sink_otlp_decode(const uint8_t *req, size_t len, struct sink_otlp_batch *b)
{
	memset(b, 0, sizeof *b);
	ExportRequest *r = opentelemetry__proto__collector__logs__v1__export_logs_service_request__unpack(NULL, len, req);
	if (!r)
		return -EINVAL;
	size_t recs, attrs, res;
	count_all(r, &recs, &attrs, &res);
	b->req = r;
	b->n = recs;
	b->entries = xcalloc(recs, sizeof *b->entries);
	b->extra = xcalloc(recs, sizeof *b->extra);
	b->sources = xcalloc(recs, sizeof *b->sources);
	b->meta = xcalloc(attrs, sizeof *b->meta);
	b->meta_ptrs = xcalloc(attrs, sizeof *b->meta_ptrs);
	for (size_t i = 0; i < attrs; i++)
		b->meta_ptrs[i] = &b->meta[i];
	b->res_attrs = xcalloc(res, sizeof *b->res_attrs);
	map_all(b, r);
	return 0;
}

void sink_otlp_free(struct sink_otlp_batch *b)
{
	if (b->req)
		opentelemetry__proto__collector__logs__v1__export_logs_service_request__free_unpacked(b->req, NULL);
	for (size_t i = 0; i < b->n_texts; i++)
		free(b->texts[i]);
	free(b->texts);
	free(b->entries);
	free(b->extra);
	free(b->sources);
	free(b->meta);
	free(b->meta_ptrs);
	free(b->res_attrs);
	memset(b, 0, sizeof *b);
}

uint8_t *sink_otlp_reply(int64_t rejected, const char *message, size_t *len)
{
	Opentelemetry__Proto__Collector__Logs__V1__ExportLogsServiceResponse r =
		OPENTELEMETRY__PROTO__COLLECTOR__LOGS__V1__EXPORT_LOGS_SERVICE_RESPONSE__INIT;
	Opentelemetry__Proto__Collector__Logs__V1__ExportLogsPartialSuccess ps =
		OPENTELEMETRY__PROTO__COLLECTOR__LOGS__V1__EXPORT_LOGS_PARTIAL_SUCCESS__INIT;
	if (rejected > 0) {
		ps.rejected_log_records = rejected;
		ps.error_message = (char *)message;
		r.partial_success = &ps;
	}
	*len = opentelemetry__proto__collector__logs__v1__export_logs_service_response__get_packed_size(&r);
	uint8_t *out = malloc(*len ? *len : 1);
	if (out)
		opentelemetry__proto__collector__logs__v1__export_logs_service_response__pack(&r, out);
	return out;
}
