/* otlp.c — WriteLogRequest entries → OTLP ExportLogsServiceRequest, and the response's partial_success
 * (see otlp.h; the mapping table is in docs/interop.md (OpenTelemetry)).
 *
 * One ResourceLogs per distinct (service_name, source.hostname, source.pid) in the batch, in order of first
 * appearance, because those three are resource attributes (service.name, host.name, process.pid) and a
 * resource describes one producer. Each holds one ScopeLogs (scope "logagent", the agent's version).
 *
 * Metadata values go out typed when the entry carries record.c's RECORD_F_META_TYPES tags (written when the
 * agent runs with --upstream-protocol otlp): the text form is read back into int_value, double_value,
 * bool_value, bytes_value (base64), kvlist_value / array_value (the compact JSON, parsed with jansson) or an
 * empty AnyValue (nil). A text that does not read back as its tag says stays a string (nothing is lost).
 *
 * Memory: entries are unpacked with protobuf-c; the OTLP message points into them (strings are not copied)
 * and into arrays sized up front for the whole batch (struct build), so nothing is allocated per top-level
 * attribute. Typed values that need memory (bytes, nested maps and arrays) take it from the build's arena.
 * Everything is freed once the message is packed. */
#include "flush/otlp.h"

#include "pbwire.h"
#include "record.h"

#include <errno.h>
#include <jansson.h>
#include <logagent/v1/log_service.pb-c.h>
#include <opentelemetry/proto/collector/logs/v1/logs_service.pb-c.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef Opentelemetry__Proto__Common__V1__AnyValue AnyValue;
typedef Opentelemetry__Proto__Common__V1__KeyValue KeyValue;
typedef Opentelemetry__Proto__Common__V1__KeyValueList KeyValueList;
typedef Opentelemetry__Proto__Common__V1__ArrayValue ArrayValue;
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

struct otlp_exporter {
    const resattr *extra; /* --resource-attr (not owned; NULL: none) */
};

otlp_exporter *otlp_exporter_new(const resattr *extra)
{
    otlp_exporter *x = calloc(1, sizeof *x);
    if (x)
        x->extra = extra;
    return x;
}

void otlp_exporter_free(otlp_exporter *x)
{
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

/* Memory for typed metadata values: bump-allocated chunks, all freed with the build. */
typedef struct chunk {
    struct chunk *next;
    size_t used, cap;
    max_align_t data[]; /* cap bytes */
} chunk;

enum { CHUNK_BYTES = 16384 };

/* Everything one request points to, sized for the whole batch up front. */
typedef struct build {
    chunk *arena;
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

/* n zeroed bytes from bd's arena, or NULL when memory ran out. */
static void *arena_alloc(build *bd, size_t n)
{
    n = (n + sizeof(max_align_t) - 1) / sizeof(max_align_t) * sizeof(max_align_t);
    chunk *c = bd->arena;
    if (!c || c->cap - c->used < n) {
        size_t cap = n > CHUNK_BYTES ? n : CHUNK_BYTES;
        if (!(c = malloc(sizeof *c + cap)))
            return NULL;
        *c = (chunk){.next = bd->arena, .cap = cap};
        bd->arena = c;
    }
    void *p = (unsigned char *)c->data + c->used;
    c->used += n;
    return memset(p, 0, n);
}

static void arena_free(build *bd)
{
    while (bd->arena) {
        chunk *next = bd->arena->next;
        free(bd->arena);
        bd->arena = next;
    }
}

static void attr_int(build *bd, const char *key, int64_t v)
{
    AnyValue *a = attr(bd, key);
    a->value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_INT_VALUE;
    a->int_value = v;
}

/* ---- typed metadata values ------------------------------------------------------------------------ */

/* Reads record.c's integer text. Returns 1 with *a set, 0 when it is not one. */
static int typed_int(const char *s, AnyValue *a)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (!*s || *end || errno)
        return 0;
    a->value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_INT_VALUE;
    a->int_value = v;
    return 1;
}

/* record.c's float text ("0.85", "2.0", "1e+300", "NaN", "Infinity", "-Infinity"). */
static int typed_double(const char *s, AnyValue *a)
{
    char *end;
    double v = strtod(s, &end);
    if (!*s || *end)
        return 0;
    a->value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_DOUBLE_VALUE;
    a->double_value = v;
    return 1;
}

static int typed_bool(const char *s, AnyValue *a)
{
    if (strcmp(s, "true") && strcmp(s, "false"))
        return 0;
    a->value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_BOOL_VALUE;
    a->bool_value = s[0] == 't';
    return 1;
}

static int b64_digit(char c)
{
    return c >= 'A' && c <= 'Z' ? c - 'A' : c >= 'a' && c <= 'z' ? c - 'a' + 26 : c >= '0' && c <= '9' ? c - '0' + 52
           : c == '+' ? 62 : c == '/' ? 63 : -1;
}

/* record.c's base64 (padded) back to bytes. Returns 1, 0 when it is not base64, -ENOMEM. */
static int typed_bytes(build *bd, const char *s, AnyValue *a)
{
    size_t n = strlen(s);
    if (n % 4)
        return 0;
    size_t pad = n && s[n - 1] == '=' ? (s[n - 2] == '=' ? 2 : 1) : 0;
    uint8_t *out = arena_alloc(bd, n / 4 * 3 + 1);
    if (!out)
        return -ENOMEM;
    size_t len = 0;
    for (size_t i = 0; i < n; i += 4) {
        uint32_t v = 0;
        for (size_t k = 0; k < 4; k++) {
            int d = i + k >= n - pad ? 0 : b64_digit(s[i + k]);
            if (d < 0)
                return 0;
            v = v << 6 | (uint32_t)d;
        }
        out[len++] = (uint8_t)(v >> 16);
        out[len++] = (uint8_t)(v >> 8);
        out[len++] = (uint8_t)v;
    }
    a->value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_BYTES_VALUE;
    a->bytes_value = (ProtobufCBinaryData){len - pad, out};
    return 1;
}

static char *arena_strdup(build *bd, const char *s, size_t n)
{
    char *p = arena_alloc(bd, n + 1);
    if (p)
        memcpy(p, s, n);
    return p;
}

static int json_to_any(build *bd, json_t *j, AnyValue *a);

/* A JSON object → kvlist_value, in its key order. */
static int json_to_kvlist(build *bd, json_t *j, AnyValue *a)
{
    static const KeyValueList list_init = OPENTELEMETRY__PROTO__COMMON__V1__KEY_VALUE_LIST__INIT;
    static const KeyValue kv_init = OPENTELEMETRY__PROTO__COMMON__V1__KEY_VALUE__INIT;
    size_t n = json_object_size(j), i = 0;
    KeyValueList *l = arena_alloc(bd, sizeof *l);
    KeyValue *kv = arena_alloc(bd, (n ? n : 1) * sizeof *kv);
    KeyValue **kvp = arena_alloc(bd, (n ? n : 1) * sizeof *kvp);
    AnyValue *av = arena_alloc(bd, (n ? n : 1) * sizeof *av);
    if (!l || !kv || !kvp || !av)
        return -ENOMEM;
    *l = list_init;
    const char *key;
    json_t *v;
    json_object_foreach(j, key, v) {
        kv[i] = kv_init;
        kv[i].value = &av[i];
        kvp[i] = &kv[i];
        int rc = (kv[i].key = arena_strdup(bd, key, strlen(key))) ? json_to_any(bd, v, &av[i]) : -ENOMEM;
        if (rc < 0)
            return rc;
        i++;
    }
    l->values = kvp;
    l->n_values = i;
    a->value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_KVLIST_VALUE;
    a->kvlist_value = l;
    return 0;
}

static int json_to_array(build *bd, json_t *j, AnyValue *a)
{
    static const ArrayValue arr_init = OPENTELEMETRY__PROTO__COMMON__V1__ARRAY_VALUE__INIT;
    size_t n = json_array_size(j);
    ArrayValue *arr = arena_alloc(bd, sizeof *arr);
    AnyValue *av = arena_alloc(bd, (n ? n : 1) * sizeof *av);
    AnyValue **avp = arena_alloc(bd, (n ? n : 1) * sizeof *avp);
    if (!arr || !av || !avp)
        return -ENOMEM;
    *arr = arr_init;
    for (size_t i = 0; i < n; i++) {
        avp[i] = &av[i];
        int rc = json_to_any(bd, json_array_get(j, i), &av[i]);
        if (rc < 0)
            return rc;
    }
    arr->values = avp;
    arr->n_values = n;
    a->value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_ARRAY_VALUE;
    a->array_value = arr;
    return 0;
}

/* One JSON value → *a (zeroed by the arena or the caller; initialised here). null stays an empty AnyValue. */
static int json_to_any(build *bd, json_t *j, AnyValue *a)
{
    static const AnyValue av_init = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__INIT;
    *a = av_init;
    switch (json_typeof(j)) {
    case JSON_OBJECT:
        return json_to_kvlist(bd, j, a);
    case JSON_ARRAY:
        return json_to_array(bd, j, a);
    case JSON_STRING:
        a->value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE;
        a->string_value = arena_strdup(bd, json_string_value(j), json_string_length(j));
        return a->string_value ? 0 : -ENOMEM;
    case JSON_INTEGER:
        a->value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_INT_VALUE;
        a->int_value = json_integer_value(j);
        return 0;
    case JSON_REAL:
        a->value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_DOUBLE_VALUE;
        a->double_value = json_real_value(j);
        return 0;
    case JSON_TRUE:
    case JSON_FALSE:
        a->value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_BOOL_VALUE;
        a->bool_value = json_is_true(j);
        return 0;
    default:
        return 0;
    }
}

/* record.c's compact JSON of a map or array → kvlist_value / array_value. Returns 1, 0 when it does not parse
 * (a uint beyond int64 inside, say), -ENOMEM. */
static int typed_json(build *bd, const char *s, AnyValue *a)
{
    json_t *j = json_loads(s, 0, NULL);
    if (!j)
        return 0;
    AnyValue v;
    int rc = json_to_any(bd, j, &v);
    json_decref(j);
    if (rc == 0)
        *a = v;
    return rc < 0 ? rc : 1;
}

/* A metadata attribute: text as record.c wrote it, made the type its tag says (a string when it does not read
 * back as that type, or for an unknown tag). Returns 0 or -ENOMEM. */
static int attr_meta(build *bd, const char *key, const char *text, char type)
{
    static const char empty[1] = ""; /* not protobuf-c's shared "" for an absent field, which it would not pack */
    AnyValue *a = attr(bd, key);
    a->value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE;
    a->string_value = (char *)(text[0] ? text : empty);
    int rc = 0;
    switch (type) {
    case RECORD_T_INT:
        typed_int(text, a);
        break;
    case RECORD_T_DOUBLE:
        typed_double(text, a);
        break;
    case RECORD_T_BOOL:
        typed_bool(text, a);
        break;
    case RECORD_T_NIL:
        if (!text[0]) /* an empty AnyValue: OTLP's null */
            a->value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE__NOT_SET;
        break;
    case RECORD_T_BIN:
        rc = typed_bytes(bd, text, a);
        break;
    case RECORD_T_MAP:
    case RECORD_T_ARRAY:
        rc = typed_json(bd, text, a);
        break;
    default:
        break;
    }
    return rc < 0 ? rc : 0;
}

/* The entry's RECORD_F_META_TYPES tags (record.h): *n of them, NULL when none. */
static const uint8_t *meta_types(const Entry *e, size_t *n)
{
    for (unsigned i = 0; i < e->base.n_unknown_fields; i++) {
        const ProtobufCMessageUnknownField *u = &e->base.unknown_fields[i];
        /* protobuf-c keeps a length-delimited unknown field as it was on the wire: length, then the bytes */
        const uint8_t *p = u->data, *end = u->data + u->len;
        uint64_t len;
        if (u->tag == RECORD_F_META_TYPES && u->wire_type == PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED &&
            pbw_get_varint(&p, end, &len) == 0 && len == (uint64_t)(end - p)) {
            *n = (size_t)len;
            return p;
        }
    }
    *n = 0;
    return NULL;
}

/* Entry i → its LogRecord. Returns 0 or -ENOMEM. */
static int fill_record(build *bd, size_t i, uint64_t observed_ns)
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
    size_t n_types;
    const uint8_t *types = meta_types(e, &n_types);
    for (size_t k = 0; k < e->n_metadata; k++) {
        char t = k < n_types ? (char)types[k] : RECORD_T_STRING;
        if (attr_meta(bd, e->metadata[k]->key, e->metadata[k]->value, t) < 0)
            return -ENOMEM;
    }
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
    return 0;
}

static int has_extra(const otlp_exporter *x, const char *key)
{
    return resattr_get(x->extra, key) != NULL;
}

static size_t n_extra(const otlp_exporter *x)
{
    return x->extra ? x->extra->n : 0;
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
    for (size_t i = 0; i < n_extra(x); i++)
        attr_str(bd, x->extra->pairs[i].key, x->extra->pairs[i].value);
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
    arena_free(bd);
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

/* Lays the records out by group (order kept within a group) and fills every message. Returns 0 or -ENOMEM. */
static int fill_all(build *bd, const otlp_exporter *x, uint64_t observed_ns)
{
    size_t off = 0;
    for (size_t k = 0; k < bd->ng; k++) {
        bd->g[k].recs = bd->grouped + off;
        off += bd->g[k].count;
    }
    for (size_t i = 0; i < bd->n; i++) {
        if (fill_record(bd, i, observed_ns) < 0)
            return -ENOMEM;
        group *g = &bd->g[bd->gi[i]];
        g->recs[g->filled++] = &bd->rec[i];
    }
    for (size_t k = 0; k < bd->ng; k++) {
        fill_group(bd, x, &bd->g[k]);
        bd->rlp[k] = &bd->g[k].rl;
    }
    return 0;
}

uint8_t *otlp_payload(const otlp_exporter *x, const batch *b, int64_t observed_ns, size_t *len, int *err)
{
    build bd = {0};
    uint8_t *out = NULL;
    int rc = unpack_entries(&bd, b);
    if (rc == 0)
        rc = group_entries(&bd);
    if (rc == 0)
        rc = build_alloc(&bd, n_extra(x));
    if (rc == 0)
        rc = fill_all(&bd, x, observed_ns > 0 ? (uint64_t)observed_ns : 0);
    if (rc == 0) {
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
