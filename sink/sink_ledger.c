/* sink_ledger: decoding, rejection, JSON lines and counters for accepted calls.
 * Without --quiet a request is unpacked with protobuf-c and each accepted entry becomes one JSON line;
 * a call's lines are built in one buffer and written with write(2) in one go after the call, so a line
 * is never split and a reader sees whole batches. With --quiet only the log_ids are pulled out by
 * sink_wire (no full decode). Counters change only after the lines were written.
 * Out of memory is fatal here (message, then abort): a test sink that silently loses counts is worse. */
#include "sink_ledger.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "logagent/v1/log_service.pb-c.h"
#include "sink_idset.h"
#include "sink_otlp.h"
#include "sink_wire.h"

struct ledger_counters {
	uint64_t entries;           /* accepted entries; those whose log_id was seen before (duplicates) are
				     * entries - no_log_id - the set's count, worked out when the summary is printed */
	uint64_t no_log_id;         /* accepted entries with an empty log_id (not in the set) */
	uint64_t batches;           /* BatchWriteLogs answered OK */
	uint64_t unary_calls;       /* WriteLog answered OK */
	uint64_t injected_failures; /* calls failed on purpose */
	uint64_t rejected_entries;  /* entries answered as rejected */
	uint64_t invalid_requests;  /* calls answered INVALID_ARGUMENT */
	uint64_t unauthenticated;   /* calls refused for their bearer token (--token-file) */
};

struct ledger {
	struct ledger_config cfg;
	struct ledger_counters n;
	struct idset *ids;
	int failed;
	char *out;            /* JSON lines of the call being handled */
	size_t out_len, out_cap;
	struct wire_span *spans; /* --quiet: log_ids of the batch being handled, all entries */
	size_t n_spans, spans_cap;
	struct idset_key *keys;  /* log_ids of the accepted entries of the call being handled */
	size_t n_keys, keys_cap;
	uint32_t *rejected;   /* indexes of rejected entries of the batch being handled */
	size_t n_rejected, rejected_cap;
};

static void ledger_oom(void)
{
	fputs("logagent-sink: out of memory\n", stderr);
	abort();
}

/* Makes room for n more elements of size sz in *arr (capacity *cap, *len in use). */
static void ledger_reserve(void **arr, size_t *cap, size_t len, size_t n, size_t sz)
{
	if (*cap - len >= n)
		return;
	size_t want = *cap ? *cap : 256;
	while (want - len < n)
		want *= 2;
	void *p = realloc(*arr, want * sz);
	if (!p)
		ledger_oom();
	*arr = p;
	*cap = want;
}

struct ledger *ledger_new(const struct ledger_config *cfg)
{
	struct ledger *l = calloc(1, sizeof *l);
	if (!l)
		return NULL;
	l->cfg = *cfg;
	l->ids = idset_new();
	if (!l->ids) {
		free(l);
		return NULL;
	}
	return l;
}

void ledger_free(struct ledger *l)
{
	if (!l)
		return;
	idset_free(l->ids);
	free(l->out);
	free(l->spans);
	free(l->keys);
	free(l->rejected);
	free(l);
}

/* ---- JSON lines ---- */

static void out_reserve(struct ledger *l, size_t n)
{
	void *p = l->out;
	ledger_reserve(&p, &l->out_cap, l->out_len, n, 1);
	l->out = p;
}

static void out_raw(struct ledger *l, const char *s, size_t n)
{
	out_reserve(l, n);
	memcpy(l->out + l->out_len, s, n);
	l->out_len += n;
}

#define OUT_LIT(l, s) out_raw((l), (s), sizeof(s) - 1)

/* Appends s as a JSON string: quote, backslash and control characters escaped, other bytes as is. */
static void out_str(struct ledger *l, const char *s)
{
	static const char hex[] = "0123456789abcdef";
	size_t n = strlen(s);
	out_reserve(l, n * 6 + 2);
	char *d = l->out + l->out_len;
	*d++ = '"';
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		unsigned char c = *p;
		if (c == '"' || c == '\\') {
			*d++ = '\\';
			*d++ = (char)c;
		} else if (c < 0x20) {
			memcpy(d, "\\u00", 4);
			d[4] = hex[c >> 4];
			d[5] = hex[c & 15];
			d += 6;
		} else {
			*d++ = (char)c;
		}
	}
	*d++ = '"';
	l->out_len = (size_t)(d - l->out);
}

static void out_fmt_int(struct ledger *l, const char *fmt_key, int64_t v)
{
	char buf[64];
	int n = snprintf(buf, sizeof buf, "%s%" PRId64, fmt_key, v);
	out_raw(l, buf, (size_t)n);
}

/* Appends ,"key":"value" (or nothing when value is empty and optional). */
static void out_field(struct ledger *l, const char *key, const char *value, int optional)
{
	if (optional && !*value)
		return;
	OUT_LIT(l, ",\"");
	out_raw(l, key, strlen(key));
	OUT_LIT(l, "\":");
	out_str(l, value);
}

static void out_source(struct ledger *l, const Logagent__V1__Source *src)
{
	out_fmt_int(l, ",\"source\":{\"pid\":", src->pid);
	out_fmt_int(l, ",\"uid\":", src->uid);
	out_fmt_int(l, ",\"gid\":", src->gid);
	out_field(l, "comm", src->comm, 0);
	out_field(l, "hostname", src->hostname, 0);
	if (src->cgroup && src->cgroup[0])
		out_field(l, "cgroup", src->cgroup, 0);
	if (src->container_id && src->container_id[0])
		out_field(l, "container_id", src->container_id, 0);
	OUT_LIT(l, "}");
}

/* --protocol otlp: ,"otlp":{severity_number, observed_time_unix_nano, trace_id_bytes, span_id_bytes, scope,
 * resource:{key: value}} (resource values that were strings as JSON strings, numbers as numbers). */
static void out_otlp(struct ledger *l, const struct sink_otlp_extra *x)
{
	char buf[160];
	int n = snprintf(buf, sizeof buf, ",\"otlp\":{\"severity_number\":%d,\"observed_time_unix_nano\":%" PRIu64
			 ",\"trace_id_bytes\":%zu,\"span_id_bytes\":%zu", x->severity_number, x->observed_time_unix_nano,
			 x->trace_bytes, x->span_bytes);
	out_raw(l, buf, (size_t)n);
	out_field(l, "scope_name", x->scope_name ? x->scope_name : "", 0);
	out_field(l, "scope_version", x->scope_version ? x->scope_version : "", 0);
	OUT_LIT(l, ",\"resource\":{");
	for (size_t i = 0; i < x->n_resource; i++) {
		if (i)
			OUT_LIT(l, ",");
		out_str(l, x->resource[i].key);
		OUT_LIT(l, ":");
		if (x->resource[i].is_string)
			out_str(l, x->resource[i].value);
		else
			out_raw(l, x->resource[i].value, strlen(x->resource[i].value));
	}
	OUT_LIT(l, "}}");
}

/* Appends one entry as a JSON line, in the key order of README's tour and docs/protocol.md (Upstream) (then the otlp object when x is not NULL). */
/* One JSON line for entry e; x: the OTLP fields (NULL for logagent.v1); res: BatchWriteLogsRequest.resource
 * (printed as "resource" when not empty). */
static void out_entry(struct ledger *l, const Logagent__V1__WriteLogRequest *e, const struct sink_otlp_extra *x,
		      Logagent__V1__BatchWriteLogsRequest__ResourceEntry *const *res, size_t n_res)
{
	OUT_LIT(l, "{\"log_id\":");
	out_str(l, e->log_id);
	out_field(l, "service_name", e->service_name, 0);
	out_field(l, "level", e->level, 0);
	out_field(l, "message", e->message, 0);
	out_field(l, "trace_id", e->trace_id, 1);
	out_field(l, "span_id", e->span_id, 1);
	out_fmt_int(l, ",\"timestamp_unix_nano\":", e->timestamp_unix_nano);
	OUT_LIT(l, ",\"metadata\":{");
	for (size_t i = 0; i < e->n_metadata; i++) {
		if (i)
			OUT_LIT(l, ",");
		out_str(l, e->metadata[i]->key);
		OUT_LIT(l, ":");
		out_str(l, e->metadata[i]->value);
	}
	OUT_LIT(l, "}");
	if (e->source)
		out_source(l, e->source);
	if (n_res) {
		OUT_LIT(l, ",\"resource\":{");
		for (size_t i = 0; i < n_res; i++) {
			if (i)
				OUT_LIT(l, ",");
			out_str(l, res[i]->key);
			OUT_LIT(l, ":");
			out_str(l, res[i]->value);
		}
		OUT_LIT(l, "}");
	}
	if (e->base.n_unknown_fields) { /* fields proto/logagent/v1 does not define: a service would not expect them */
		OUT_LIT(l, ",\"unknown_fields\":[");
		for (size_t i = 0; i < e->base.n_unknown_fields; i++) {
			if (i)
				OUT_LIT(l, ",");
			out_fmt_int(l, "", (int64_t)e->base.unknown_fields[i].tag);
		}
		OUT_LIT(l, "]");
	}
	if (x)
		out_otlp(l, x);
	OUT_LIT(l, "}\n");
}

/* Writes the buffered lines; returns 0 or -EIO (reported once, ledger_failed() turns true). */
static int out_flush(struct ledger *l)
{
	size_t off = 0;
	while (off < l->out_len) {
		ssize_t w = write(l->cfg.out_fd, l->out + off, l->out_len - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			if (!l->failed)
				fprintf(stderr, "logagent-sink: cannot write output: %s\n",
					w < 0 ? strerror(errno) : "short write");
			l->failed = 1;
			l->out_len = 0;
			return -EIO;
		}
		off += (size_t)w;
	}
	l->out_len = 0;
	return 0;
}

/* ---- counting ---- */

/* Notes the log_id of an accepted entry, to be counted by count_keys. */
static void keys_push(struct ledger *l, const void *log_id, size_t len)
{
	void *p = l->keys;
	ledger_reserve(&p, &l->keys_cap, l->n_keys, 1, sizeof *l->keys);
	l->keys = p;
	l->keys[l->n_keys++] = (struct idset_key){log_id, len};
}

/* Counts the entries noted by keys_push (an empty log_id is counted apart, not deduplicated). */
static void count_keys(struct ledger *l)
{
	size_t n = 0;
	for (size_t i = 0; i < l->n_keys; i++) {
		if (l->keys[i].len)
			l->keys[n++] = l->keys[i];
	}
	if (idset_add_many(l->ids, l->keys, n) < 0)
		ledger_oom();
	l->n.entries += l->n_keys;
	l->n.no_log_id += l->n_keys - n;
	l->n_keys = 0;
}

/* True if entry i is rejected; *cursor walks l->rejected (ascending) along with i. */
static int is_rejected(const struct ledger *l, size_t *cursor, size_t i)
{
	if (*cursor < l->n_rejected && l->rejected[*cursor] == i) {
		(*cursor)++;
		return 1;
	}
	return 0;
}

/* Draws which of n entries are rejected into l->rejected. */
static void pick_rejected(struct ledger *l, size_t n)
{
	l->n_rejected = 0;
	if (l->cfg.reject_rate <= 0.0)
		return;
	for (size_t i = 0; i < n; i++) {
		if (!sink_rng_chance(l->cfg.rng, l->cfg.reject_rate))
			continue;
		void *p = l->rejected;
		ledger_reserve(&p, &l->rejected_cap, l->n_rejected, 1, sizeof *l->rejected);
		l->rejected = p;
		l->rejected[l->n_rejected++] = (uint32_t)i;
	}
}

/* ---- replies ---- */

static void reply_pack(const ProtobufCMessage *m, struct ledger_reply *reply)
{
	size_t n = protobuf_c_message_get_packed_size(m);
	reply->data = malloc(n ? n : 1);
	if (!reply->data)
		ledger_oom();
	reply->len = protobuf_c_message_pack(m, reply->data);
}

static void reply_write_log(const char *log_id, size_t len, struct ledger_reply *reply)
{
	Logagent__V1__WriteLogResponse r = LOGAGENT__V1__WRITE_LOG_RESPONSE__INIT;
	char *id = malloc(len + 1);
	if (!id)
		ledger_oom();
	memcpy(id, log_id, len);
	id[len] = '\0';
	r.success = 1;
	r.log_id = id;
	reply_pack(&r.base, reply);
	free(id);
}

/* BatchWriteLogsResponse for n entries of which l->rejected were rejected (retryable). */
static void reply_batch(struct ledger *l, size_t n, struct ledger_reply *reply)
{
	static char reason[] = "rejected by logagent-sink --reject-rate";
	Logagent__V1__BatchWriteLogsResponse r = LOGAGENT__V1__BATCH_WRITE_LOGS_RESPONSE__INIT;
	Logagent__V1__EntryError *errs = calloc(l->n_rejected ? l->n_rejected : 1, sizeof *errs);
	Logagent__V1__EntryError **ptrs = calloc(l->n_rejected ? l->n_rejected : 1, sizeof *ptrs);
	if (!errs || !ptrs)
		ledger_oom();
	for (size_t i = 0; i < l->n_rejected; i++) {
		Logagent__V1__EntryError init = LOGAGENT__V1__ENTRY_ERROR__INIT;
		errs[i] = init;
		errs[i].index = l->rejected[i];
		errs[i].error_message = reason;
		errs[i].retryable = 1;
		ptrs[i] = &errs[i];
	}
	r.accepted = (uint32_t)(n - l->n_rejected);
	r.n_rejected = l->n_rejected;
	r.rejected = ptrs;
	reply_pack(&r.base, reply);
	free(ptrs);
	free(errs);
}

/* ---- WriteLog ---- */

static int write_log_quiet(struct ledger *l, const uint8_t *req, size_t len, struct ledger_reply *reply)
{
	struct wire_span id;
	if (wire_entry_log_id(req, len, &id) < 0)
		return -EINVAL;
	keys_push(l, id.p, id.len);
	count_keys(l);
	reply_write_log((const char *)id.p, id.len, reply);
	return 0;
}

static int write_log_lines(struct ledger *l, const uint8_t *req, size_t len, struct ledger_reply *reply)
{
	Logagent__V1__WriteLogRequest *e = logagent__v1__write_log_request__unpack(NULL, len, req);
	if (!e)
		return -EINVAL;
	out_entry(l, e, NULL, NULL, 0);
	int r = out_flush(l);
	if (r == 0) {
		keys_push(l, e->log_id, strlen(e->log_id));
		count_keys(l);
		reply_write_log(e->log_id, strlen(e->log_id), reply);
	}
	logagent__v1__write_log_request__free_unpacked(e, NULL);
	return r;
}

int ledger_write_log(struct ledger *l, const uint8_t *req, size_t len, struct ledger_reply *reply)
{
	int r = l->cfg.quiet ? write_log_quiet(l, req, len, reply) : write_log_lines(l, req, len, reply);
	if (r == -EINVAL)
		l->n.invalid_requests++;
	if (r == 0)
		l->n.unary_calls++;
	return r;
}

/* ---- BatchWriteLogs ---- */

static int collect_span(void *arg, size_t index, struct wire_span id)
{
	struct ledger *l = arg;
	void *p = l->spans;
	ledger_reserve(&p, &l->spans_cap, l->n_spans, 1, sizeof *l->spans);
	l->spans = p;
	l->spans[l->n_spans++] = id;
	return 0;
}

static int batch_quiet(struct ledger *l, const uint8_t *req, size_t len, struct ledger_reply *reply)
{
	l->n_spans = 0;
	if (wire_batch_log_ids(req, len, collect_span, l) < 0)
		return -EINVAL;
	pick_rejected(l, l->n_spans);
	size_t cursor = 0;
	for (size_t i = 0; i < l->n_spans; i++) {
		if (!is_rejected(l, &cursor, i))
			keys_push(l, l->spans[i].p, l->spans[i].len);
	}
	count_keys(l);
	reply_batch(l, l->n_spans, reply);
	return 0;
}

static int batch_lines(struct ledger *l, const uint8_t *req, size_t len, struct ledger_reply *reply)
{
	Logagent__V1__BatchWriteLogsRequest *b = logagent__v1__batch_write_logs_request__unpack(NULL, len, req);
	if (!b)
		return -EINVAL;
	pick_rejected(l, b->n_entries);
	size_t cursor = 0;
	for (size_t i = 0; i < b->n_entries; i++) {
		if (is_rejected(l, &cursor, i))
			continue;
		out_entry(l, b->entries[i], NULL, b->resource, b->n_resource);
		keys_push(l, b->entries[i]->log_id, strlen(b->entries[i]->log_id));
	}
	int r = out_flush(l);
	if (r == 0) {
		count_keys(l);
		reply_batch(l, b->n_entries, reply);
	}
	l->n_keys = 0;
	logagent__v1__batch_write_logs_request__free_unpacked(b, NULL);
	return r;
}

int ledger_batch_write(struct ledger *l, const uint8_t *req, size_t len, struct ledger_reply *reply)
{
	int r = l->cfg.quiet ? batch_quiet(l, req, len, reply) : batch_lines(l, req, len, reply);
	if (r == -EINVAL)
		l->n.invalid_requests++;
	if (r == 0) {
		l->n.batches++;
		l->n.rejected_entries += l->n_rejected;
	}
	return r;
}

/* ---- OTLP Export (--protocol otlp) ---- */

/* Accepted records become JSON lines like BatchWriteLogs entries (plus "otlp"); --reject-rate records are
 * answered in partial_success.rejected_log_records (OTLP cannot say which ones; the sender drops that many). */
int ledger_otlp_export(struct ledger *l, const uint8_t *req, size_t len, struct ledger_reply *reply)
{
	struct sink_otlp_batch b;
	if (sink_otlp_decode(req, len, &b) < 0) {
		l->n.invalid_requests++;
		return -EINVAL;
	}
	pick_rejected(l, b.n);
	size_t cursor = 0;
	for (size_t i = 0; i < b.n; i++) {
		if (is_rejected(l, &cursor, i))
			continue;
		if (!l->cfg.quiet)
			out_entry(l, &b.entries[i], &b.extra[i], NULL, 0);
		keys_push(l, b.entries[i].log_id, strlen(b.entries[i].log_id));
	}
	int r = l->cfg.quiet ? 0 : out_flush(l);
	if (r == 0) {
		count_keys(l);
		reply->data = sink_otlp_reply((int64_t)l->n_rejected, "rejected by logagent-sink --reject-rate", &reply->len);
		if (!reply->data)
			ledger_oom();
		l->n.batches++;
		l->n.rejected_entries += l->n_rejected;
	}
	l->n_keys = 0;
	sink_otlp_free(&b);
	return r;
}

/* ---- misc ---- */

void ledger_count_injected_failure(struct ledger *l)
{
	l->n.injected_failures++;
}

void ledger_count_invalid(struct ledger *l)
{
	l->n.invalid_requests++;
}

void ledger_count_unauthenticated(struct ledger *l)
{
	l->n.unauthenticated++;
}

int ledger_failed(const struct ledger *l)
{
	return l->failed;
}

void ledger_print_summary(struct ledger *l, FILE *f)
{
	const struct ledger_counters *n = &l->n;
	long long unique = idset_count(l->ids);
	if (unique < 0)
		ledger_oom();
	uint64_t duplicates = n->entries - n->no_log_id - (uint64_t)unique;
	fprintf(f,
		"{\"entries\":%" PRIu64 ",\"unique_log_ids\":%" PRIu64 ",\"duplicates\":%" PRIu64
		",\"batches\":%" PRIu64 ",\"unary_calls\":%" PRIu64 ",\"injected_failures\":%" PRIu64
		",\"rejected_entries\":%" PRIu64 ",\"no_log_id\":%" PRIu64 ",\"invalid_requests\":%" PRIu64
		",\"unauthenticated\":%" PRIu64 "}\n",
		n->entries, (uint64_t)unique, duplicates, n->batches, n->unary_calls,
		n->injected_failures, n->rejected_entries, n->no_log_id, n->invalid_requests,
		n->unauthenticated);
	fflush(f);
}
