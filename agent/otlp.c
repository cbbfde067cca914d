/* otlp.c — WriteLogRequest entries → OTLP ExportLogsServiceRequest, and the response's partial_success
 * (see otlp.h; the mapping table is in docs/interop.md (OpenTelemetry)).
 *
 * One ResourceLogs per distinct (service_name, source.hostname, source.pid) in the batch, in order of first
 * appearance, because those three are resource attributes (service.name, host.name, process.pid) and a
 * resource describes one producer. Each holds one ScopeLogs (scope "logagent", the agent's version).
 *
 * Memory: entries are unpacked with protobuf-c; the OTLP message points into them (strings are not copied)
 * and into arrays sized up front for the whole batch (struct build), so nothing is allocated per attribute.
 * Everything is freed once the message is packed. */
#include "otlp.h"

#include <errno.h>
#include <logagent/v1/log_service.pb-c.h>
#include <opentelemetry/proto/collector/logs/v1/logs_service.pb-c.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef Opentelemetry__Proto__Common__V1__AnyValue AnyValue;
typedef Opentelemetry__Proto__Common__V1__KeyValue KeyValue;
typedef Opentelemetry__Proto__Logs__V1__LogRecord LogRecord;
typedef Opentelemetry__Proto__Logs__V1__ResourceLogs ResourceLogs;
typedef Opentelemetry__Proto__Logs__V1__ScopeLogs ScopeLogs;
typedef Opentelemetry__Proto__Resource__V1__Resource Resource;
typedef Opentelemetry__Proto__Common__V1__InstrumentationScope Scope;
typedef Opentelemetry__Proto__Collector__Logs__V1__ExportLogsServiceRequest ExportRequest;
typedef Opentelemetry__Proto__Collector__Logs__V1__ExportLogsServiceResponse ExportResponse;
typedef Logagent__V1__WriteLogRequest Entry;

/* Attributes a record can carry besides its metadata: log_id, trace_id, span_id, uid, gid, comm, cgroup,
 * container id. */
enum { RECORD_FIXED_ATTRS = 8, RESOURCE_FIXED_ATTRS = 3 };

typedef struct kv_pair {
    char *key, *value; /* point into otlp_exporter.store */
} kv_pair;

struct otlp_exporter {
    kv_pair *attrs;
    size_t n;
    char *store;
};

/* ---- --resource-attr ------------------------------------------------------------------------------- */

/* Walks "k=v,k2=v2" in place (commas and '=' become NULs) into out (NULL: only checks). Returns the count or
 * -EINVAL with why filled. */
static long split_attrs(char *s, kv_pair *out, char *why, size_t whylen)
{
    long n = 0;
    while (s && *s) {
        char *comma = strchr(s, ',');
        if (comma)
            *comma = 0;
        char *eq = strchr(s, '=');
        if (!eq || eq == s) {
            snprintf(why, whylen, "'%.60s': expected KEY=VALUE (comma-separated pairs, KEY not empty)", s);
            return -EINVAL;
        }
        *eq = 0;
        if (out)
            out[n] = (kv_pair){s, eq + 1};
        n++;
        s = comma ? comma + 1 : NULL;
    }
    return n;
}

int otlp_resource_attrs_check(const char *spec, char *why, size_t whylen)
{
    char *copy = strdup(spec);
    if (!copy) {
        snprintf(why, whylen, "out of memory");
        return -ENOMEM;
    }
    long n = split_attrs(copy, NULL, why, whylen);
    free(copy);
    return n < 0 ? (int)n : 0;
}

otlp_exporter *otlp_exporter_new(const char *spec, char *why, size_t whylen)
{
    otlp_exporter *x = calloc(1, sizeof *x);
    if (!x || !(x->store = strdup(spec ? spec : ""))) {
        snprintf(why, whylen, "out of memory");
        free(x);
        return NULL;
    }
    long n = split_attrs(x->store, NULL, why, whylen);
    if (n >= 0) { /* the first pass cut the string: split a fresh copy */
        strcpy(x->store, spec ? spec : "");
        x->attrs = calloc(n ? (size_t)n : 1, sizeof *x->attrs);
        n = x->attrs ? split_attrs(x->store, x->attrs, why, whylen) : -ENOMEM;
    }
    if (n < 0) {
        otlp_exporter_free(x);
        return NULL;
    }
    x->n = (size_t)n;
    return x;
}

void otlp_exporter_free(otlp_exporter *x)
{
    if (!x)
        return;
    free(x->attrs);
    free(x->store);
    free(x);
}

/* ---- the mapping ----------------------------------------------------------------------------------- */

int otlp_severity_number(const char *level)
{
    static const struct {
        const char *name;
        int number;
    } map[] = {{"TRACE", 1}, {"DEBUG", 5}, {"INFO", 9}, {"WARN", 13}, {"ERROR", 17}, {"FATAL", 21}};
    for (size_t i = 0; level && i < sizeof map / sizeof map[0]; i++)
        if (!strcmp(level, map[i].name))
            return map[i].number;
    return 0;
}

static int hex_digit(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* Decodes exactly 2*n hex digits of s into out. Returns 1, or 0 when s is not that. */
static int hex_id(const char *s, size_t n, uint8_t *out)
{
    if (!s || strlen(s) != 2 * n)
        return 0;
    for (size_t i = 0; i < 2 * n; i++) {
        int v = hex_digit(s[i]);
        if (v < 0)
            return 0;
        out[i / 2] = (uint8_t)(i % 2 ? (out[i / 2] << 4) | v : v);
    }
    return 1;
}

/* One resource: the entries sharing service name, host name and pid. */
typedef struct group {
    const char *service, *host;
    int32_t pid;
    size_t count, filled;
    LogRecord **recs; /* a slice of build.grouped */
    ResourceLogs rl;
    ScopeLogs sl;
    ScopeLogs *slp;
    Resource res;
} group;

/* Everything one request points to, sized for the whole batch up front. */
typedef struct build {
    Entry **e;
    size_t n;
    size_t *gi;        /* per entry: its group */
    group *g;
    size_t ng;
    LogRecord *rec;
    LogRecord **grouped;
    AnyValue *body;
    uint8_t *ids;      /* per entry: 16 bytes of trace id, 8 of span id */
    KeyValue *kv;
    KeyValue **kvp;
    AnyValue *av;
    size_t nkv, kvcap;
    ResourceLogs **rlp;
    Scope scope;       /* "logagent" and the agent's version, shared by every ScopeLogs */
} build;

static const char *source_host(const Entry *e) { return e->source && e->source->hostname ? e->source->hostname : ""; }
static int32_t source_pid(const Entry *e) { return e->source ? e->source->pid : 0; }

/* Assigns each entry its group (linear search: a batch has few distinct producers). */
static int group_entries(build *bd)
{
    if (!(bd->gi = calloc(bd->n, sizeof *bd->gi)) || !(bd->g = calloc(bd->n, sizeof *bd->g)))
        return -ENOMEM;
    for (size_t i = 0; i < bd->n; i++) {
        const Entry *e = bd->e[i];
        size_t k = 0;
        while (k < bd->ng && (bd->g[k].pid != source_pid(e) || strcmp(bd->g[k].service, e->service_name) ||
                              strcmp(bd->g[k].host, source_host(e))))
            k++;
        if (k == bd->ng)
            bd->g[bd->ng++] = (group){.service = e->service_name, .host = source_host(e), .pid = source_pid(e)};
        bd->g[k].count++;
        bd->gi[i] = k;
    }
    return 0;
}

/* The next attribute slot, named key; its value is to be set by the caller. */
static AnyValue *attr(build *bd, const char *key)
{
    static const KeyValue kv_init = OPENTELEMETRY__PROTO__COMMON__V1__KEY_VALUE__INIT;
    static const AnyValue av_init = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__INIT;
    size_t i = bd->nkv++;
    bd->kv[i] = kv_init;
    bd->av[i] = av_init;
    bd->kv[i].key = (char *)key;
    bd->kv[i].value = &bd->av[i];
    bd->kvp[i] = &bd->kv[i];
    return &bd->av[i];
}

static void attr_str(build *bd, const char *key, const char *v)
{
    AnyValue *a = attr(bd, key);
    a->value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE;
    a->string_value = (char *)v;
}

static void attr_int(build *bd, const char *key, int64_t v)
{
    AnyValue *a = attr(bd, key);
    a->value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_INT_VALUE;
    a->int_value = v;
}

/* Entry i → its LogRecord. */
static void fill_record(build *bd, size_t i, uint64_t observed_ns)
{
    static const LogRecord rec_init = OPENTELEMETRY__PROTO__LOGS__V1__LOG_RECORD__INIT;
    static const AnyValue av_init = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__INIT;
    const Entry *e = bd->e[i];
    LogRecord *r = &bd->rec[i];
    *r = rec_init;
    r->time_unix_nano = e->timestamp_unix_nano > 0 ? (uint64_t)e->timestamp_unix_nano : 0;
    r->observed_time_unix_nano = observed_ns;
    r->severity_number = (Opentelemetry__Proto__Logs__V1__SeverityNumber)otlp_severity_number(e->level);
    r->severity_text = e->level;
    bd->body[i] = av_init;
    bd->body[i].value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE;
    bd->body[i].string_value = e->message;
    r->body = &bd->body[i];
    size_t first = bd->nkv;
    if (e->log_id[0])
        attr_str(bd, "log_id", e->log_id);
    uint8_t *ids = bd->ids + 24 * i;
    if (hex_id(e->trace_id, 16, ids))
        r->trace_id = (ProtobufCBinaryData){16, ids};
    else if (e->trace_id[0])
        attr_str(bd, "trace_id", e->trace_id);
    if (hex_id(e->span_id, 8, ids + 16))
        r->span_id = (ProtobufCBinaryData){8, ids + 16};
    else if (e->span_id[0])
        attr_str(bd, "span_id", e->span_id);
    for (size_t k = 0; k < e->n_metadata; k++)
        attr_str(bd, e->metadata[k]->key, e->metadata[k]->value);
    if (e->source) {
        attr_int(bd, "process.user.id", e->source->uid);
        attr_int(bd, "logagent.source.gid", e->source->gid);
        if (e->source->comm[0])
            attr_str(bd, "process.executable.name", e->source->comm);
        if (e->source->cgroup[0])
            attr_str(bd, "logagent.source.cgroup", e->source->cgroup);
        if (e->source->container_id[0])
            attr_str(bd, "container.id", e->source->container_id);
    }
    r->attributes = bd->kvp + first;
    r->n_attributes = bd->nkv - first;
}

static int has_extra(const otlp_exporter *x, const char *key)
{
    for (size_t i = 0; i < x->n; i++)
        if (!strcmp(x->attrs[i].key, key))
            return 1;
    return 0;
}

/* Group k's ResourceLogs: resource attributes (a --resource-attr of the same key wins) and its one scope. */
static void fill_group(build *bd, const otlp_exporter *x, group *g)
{
    static const ResourceLogs rl_init = OPENTELEMETRY__PROTO__LOGS__V1__RESOURCE_LOGS__INIT;
    static const ScopeLogs sl_init = OPENTELEMETRY__PROTO__LOGS__V1__SCOPE_LOGS__INIT;
    static const Resource res_init = OPENTELEMETRY__PROTO__RESOURCE__V1__RESOURCE__INIT;
    size_t first = bd->nkv;
    if (!has_extra(x, "service.name"))
        attr_str(bd, "service.name", g->service);
    if (!has_extra(x, "host.name") && g->host[0])
        attr_str(bd, "host.name", g->host);
    if (!has_extra(x, "process.pid") && g->pid > 0)
        attr_int(bd, "process.pid", g->pid);
    for (size_t i = 0; i < x->n; i++)
        attr_str(bd, x->attrs[i].key, x->attrs[i].value);
    g->res = res_init;
    g->res.attributes = bd->kvp + first;
    g->res.n_attributes = bd->nkv - first;
    g->sl = sl_init;
    g->sl.scope = &bd->scope;
    g->sl.log_records = g->recs;
    g->sl.n_log_records = g->count;
    g->slp = &g->sl;
    g->rl = rl_init;
    g->rl.resource = &g->res;
    g->rl.scope_logs = &g->slp;
    g->rl.n_scope_logs = 1;
}

/* Sizes and allocates the arrays of bd for its entries and groups. */
static int build_alloc(build *bd, size_t nextra)
{
    size_t kv = bd->ng * (RESOURCE_FIXED_ATTRS + nextra);
    for (size_t i = 0; i < bd->n; i++)
        kv += bd->e[i]->n_metadata + RECORD_FIXED_ATTRS;
    bd->kvcap = kv;
    static const Scope scope_init = OPENTELEMETRY__PROTO__COMMON__V1__INSTRUMENTATION_SCOPE__INIT;
    bd->scope = scope_init;
    bd->scope.name = (char *)"logagent";
    bd->scope.version = (char *)LOGAGENT_VERSION_STRING;
    bd->rec = calloc(bd->n, sizeof *bd->rec);
    bd->grouped = calloc(bd->n, sizeof *bd->grouped);
    bd->body = calloc(bd->n, sizeof *bd->body);
    bd->ids = calloc(bd->n, 24);
    bd->kv = calloc(kv ? kv : 1, sizeof *bd->kv);
    bd->kvp = calloc(kv ? kv : 1, sizeof *bd->kvp);
    bd->av = calloc(kv ? kv : 1, sizeof *bd->av);
    bd->rlp = calloc(bd->ng ? bd->ng : 1, sizeof *bd->rlp);
    return bd->rec && bd->grouped && bd->body && bd->ids && bd->kv && bd->kvp && bd->av && bd->rlp ? 0 : -ENOMEM;
}

static void build_free(build *bd)
{
    for (size_t i = 0; bd->e && i < bd->n; i++)
        if (bd->e[i])
            logagent__v1__write_log_request__free_unpacked(bd->e[i], NULL);
    free(bd->e);
    free(bd->gi);
    free(bd->g);
    free(bd->rec);
    free(bd->grouped);
    free(bd->body);
    free(bd->ids);
    free(bd->kv);
    free(bd->kvp);
    free(bd->av);
    free(bd->rlp);
}

/* Unpacks b's entries into bd->e. */
static int unpack_entries(build *bd, const batch *b)
{
    bd->n = b->n;
    if (!(bd->e = calloc(b->n ? b->n : 1, sizeof *bd->e)))
        return -ENOMEM;
    for (size_t i = 0; i < b->n; i++) {
        size_t len;
        const uint8_t *p = batch_entry(b, i, &len);
        if (!(bd->e[i] = logagent__v1__write_log_request__unpack(NULL, len, p)))
            return -EINVAL; /* protobuf-c does not tell a malformed entry from no memory */
    }
    return 0;
}

/* Lays the records out by group (order kept within a group) and fills every message. */
static void fill_all(build *bd, const otlp_exporter *x, uint64_t observed_ns)
{
    size_t off = 0;
    for (size_t k = 0; k < bd->ng; k++) {
        bd->g[k].recs = bd->grouped + off;
        off += bd->g[k].count;
    }
    for (size_t i = 0; i < bd->n; i++) {
        fill_record(bd, i, observed_ns);
        group *g = &bd->g[bd->gi[i]];
        g->recs[g->filled++] = &bd->rec[i];
    }
    for (size_t k = 0; k < bd->ng; k++) {
        fill_group(bd, x, &bd->g[k]);
        bd->rlp[k] = &bd->g[k].rl;
    }
}

uint8_t *otlp_payload(const otlp_exporter *x, const batch *b, int64_t observed_ns, size_t *len, int *err)
{
    build bd = {0};
    uint8_t *out = NULL;
    int rc = unpack_entries(&bd, b);
    if (rc == 0)
        rc = group_entries(&bd);
    if (rc == 0)
        rc = build_alloc(&bd, x->n);
    if (rc == 0) {
        fill_all(&bd, x, observed_ns > 0 ? (uint64_t)observed_ns : 0);
        ExportRequest req = OPENTELEMETRY__PROTO__COLLECTOR__LOGS__V1__EXPORT_LOGS_SERVICE_REQUEST__INIT;
        req.resource_logs = bd.rlp;
        req.n_resource_logs = bd.ng;
        *len = opentelemetry__proto__collector__logs__v1__export_logs_service_request__get_packed_size(&req);
        if ((out = malloc(*len ? *len : 1)) != NULL)
            opentelemetry__proto__collector__logs__v1__export_logs_service_request__pack(&req, out);
        else
            rc = -ENOMEM;
    }
    build_free(&bd);
    if (err)
        *err = rc;
    return out;
}

uint64_t otlp_rejected(const uint8_t *body, size_t body_len, uint64_t n, char *msg, size_t msglen)
{
    if (msg && msglen)
        msg[0] = 0;
    ExportResponse *r = body ? opentelemetry__proto__collector__logs__v1__export_logs_service_response__unpack(
                                   NULL, body_len, body)
                             : NULL;
    if (!r)
        return 0; /* empty or unreadable body: the status said OK, so all were accepted */
    uint64_t k = 0;
    if (r->partial_success) {
        int64_t v = r->partial_success->rejected_log_records;
        k = v <= 0 ? 0 : (uint64_t)v > n ? n : (uint64_t)v;
        if (msg && msglen && r->partial_success->error_message)
            snprintf(msg, msglen, "%s", r->partial_success->error_message);
    }
    opentelemetry__proto__collector__logs__v1__export_logs_service_response__free_unpacked(r, NULL);
    return k;
}
