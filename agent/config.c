/* config.c — the option table, and the parsers that fill a config from it (see config.h).
 *
 * Each row names a setting once: its flag, its type and bounds, its default and its help line. Environment
 * variables and config-file keys are derived from the flag name (--buffer-bytes -> LOGAGENT_BUFFER_BYTES,
 * `buffer-bytes = …`). Sizes accept KiB/MiB/GiB (and k/M/G) suffixes; durations are milliseconds and accept
 * ms/s/m/h suffixes. Each value remembers its origin (default, file:line, variable, flag) for --check-config
 * and for error messages. The file is parsed by libinih; its handler is not told line numbers, so our line
 * reader counts them. Once every value is read, config_check (config_check.c) judges them together.
 * Main thread: at start-up, and again on SIGHUP. */
#include "config.h"
#include "config_internal.h"

#include "common/cli.h"

#include "log.h"
#include "flush/otlp.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <ini.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef enum opt_type { T_STR, T_U64, T_SIZE, T_MS, T_ENUM, T_LEVEL, T_MODE, T_BOOL } opt_type;

static const char *const RPC_NAMES[] = {"auto", "batch", "unary", NULL};
static const char *const FULL_NAMES[] = {"block", "drop-newest", "drop-oldest", NULL};
static const char *const BUFFER_NAMES[] = {"memory", "disk", NULL};
static const char *const FSYNC_NAMES[] = {"always", "interval", "never", NULL};
static const char *const RATE_KEY_NAMES[] = {"pid", "uid", NULL};
static const char *const PROTOCOL_NAMES[] = {"logagent", "otlp", NULL};
static const char *const COMPRESSION_NAMES[] = {"none", "gzip", NULL};
static const char *const LOG_FORMAT_NAMES[] = {"logfmt", "json", NULL};
static const char *const LB_NAMES[] = {"round_robin", "pick_first", NULL};

typedef struct opt {
    const char *name;
    opt_type type;
    size_t offset;
    size_t size; /* for strings: buffer size */
    const char *def;
    uint64_t min, max;
    const char *help;
    const char *const *names; /* T_ENUM: accepted words, stored as their index */
} opt;

#define STR(f, d, h) {#f, T_STR, offsetof(config, f), sizeof(((config *)0)->f), d, 0, 0, h, NULL}
#define NUM(f, t, d, lo, hi, h) {#f, t, offsetof(config, f), 0, d, lo, hi, h, NULL}
#define ENUM(f, d, names, h) {#f, T_ENUM, offsetof(config, f), 0, d, 0, 0, h, names}
#define BOOL(f, d, h) {#f, T_BOOL, offsetof(config, f), 0, d, 0, 0, h, NULL}

static const opt OPTS[] = {
    STR(socket_path, "/run/logagent/ingest.sock", "ingest socket (clients read LOGAGENT_SOCKET)"),
    NUM(socket_mode, T_MODE, "0660", 0, 0777, "file mode of the ingest socket (octal)"),
    STR(socket_group, "", "group owning the ingest socket (name or number; empty: the agent's)"),
    STR(allow_uids, "", "only these users may send (names or numbers, comma-separated; empty: anyone)"),
    STR(allow_gids, "", "only members of these groups may send (with allow-uids: either suffices)"),
    NUM(max_connections, T_U64, "4096", 1, 1000000, "ingest connections at once; more wait in the listen backlog"),
    NUM(ingest_threads, T_U64, "0", 0, 16,
        "ingest event loops (0: the CPUs the agent may use, by affinity and cgroup cpu.max, at most 4)"),
    NUM(partial_record_timeout_ms, T_MS, "30s", 100, 86400000, "close a connection holding a partial record this long"),
    NUM(ingest_memory_bytes, T_SIZE, "32MiB", 1 << 20, 16ULL << 30,
        "memory for partial records and pending HTTP bodies, all connections; past it they wait (not read)"),
    NUM(http_max_connections, T_U64, "256", 1, 1000000, "HTTP ingest connections at once; more wait in the backlog"),
    STR(trusted_fields, "", "cgroup,container_id: add the peer's cgroup / container id (from /proc) to source"),
    STR(rate_limit, "", "RECORDS/s:BURST per sender, e.g. 10000:50000; over it records are dropped (empty: off)"),
    ENUM(rate_limit_key, "pid", RATE_KEY_NAMES, "pid|uid: what one sender of --rate-limit is"),
    STR(stats_socket, "/run/logagent/stats.sock", "stats socket (HTTP: GET /stats); empty to disable"),
    NUM(stats_socket_mode, T_MODE, "0600", 0, 0777, "file mode of the stats socket (octal)"),
    STR(stats_socket_group, "", "group owning the stats socket (name or number; empty: the agent's)"),
    STR(metrics_listen, "", "also serve /stats, /metrics, /healthz over TCP on HOST:PORT (empty: off)"),
    STR(http_listen, "", "also take records as JSON over HTTP on unix:PATH or HOST:PORT (empty: off)"),
    NUM(http_max_body_bytes, T_SIZE, "1MiB", 1024, 64 << 20, "largest HTTP request body; larger ones get 413"),
    STR(otlp_listen, "", "also take OTLP logs over gRPC (LogsService/Export) on unix:PATH and/or HOST:PORT, comma-separated (empty: off)"),
    NUM(otlp_max_request_bytes, T_SIZE, "4MiB", 1024, 64 << 20,
        "largest OTLP/gRPC request message; larger ones get RESOURCE_EXHAUSTED"),
    NUM(otlp_max_connections, T_U64, "256", 1, 1000000, "OTLP/gRPC connections at once; more wait in the backlog"),
    STR(forward_message_keys, "message,log,msg", "Fluent Forward: record keys tried in order as the message"),
    STR(forward_listen, "", "also take Fluent Forward over TCP on HOST:PORT, no authentication (empty: off)"),
    NUM(health_failing_ms, T_MS, "60s", 1000, 86400000, "/healthz says 503 once the upstream fails this long"),
    NUM(health_spool_pct, T_U64, "90", 1, 100, "/healthz says 503 once the spool is this % full"),
    STR(upstream, "localhost:50051", "log service HOST:PORT (or LOG_SERVICE_GRPC_SERVER)"),
    ENUM(upstream_rpc, "auto", RPC_NAMES, "auto|batch|unary: auto starts with batch, unary on UNIMPLEMENTED"),
    ENUM(upstream_protocol, "logagent", PROTOCOL_NAMES,
         "logagent|otlp: otlp sends OTLP LogsService/Export (upstream-rpc ignored)"),
    ENUM(upstream_compression, "none", COMPRESSION_NAMES,
         "none|gzip: compress every call's message to the log service (gRPC's grpc-encoding: gzip)"),
    STR(resource_attr, "", "KEY=VALUE,... attributes of where the agent runs, sent once per call (both protocols; a value may be ${env:NAME})"),
    NUM(upstream_keepalive_ms, T_MS, "30s", 0, 86400000,
        "HTTP/2 ping to the log service this often while calls are in flight (0: none)"),
    NUM(upstream_keepalive_timeout_ms, T_MS, "10s", 100, 3600000,
        "an instance that does not answer a ping this long is dropped and its calls retried elsewhere"),
    NUM(upstream_dns_refresh_ms, T_MS, "0", 0, 86400000,
        "look the upstream's DNS name up again this often; other addresses: a new channel (0: on failures only)"),
    ENUM(upstream_lb, "round_robin", LB_NAMES,
         "round_robin|pick_first: spread calls over every address the upstream names, or use the first that answers"),
    BOOL(upstream_tls, "false", "TLS to the log service (flag alone = true; or =true|false)"),
    STR(ca_file, "", "PEM CA certificates to verify the log service with (empty: gRPC's default roots)"),
    STR(cert_file, "", "PEM client certificate (chain) for mTLS; needs key-file"),
    STR(key_file, "", "PEM private key of cert-file"),
    STR(tls_server_name, "", "name the service's certificate must carry, when not the upstream's host"),
    STR(token_file, "", "file holding a bearer token sent as `authorization` metadata (re-read on change)"),
    STR(batch_method, "/logagent.v1.LogService/BatchWriteLogs", "full gRPC method path of the batch RPC"),
    STR(unary_method, "/logagent.v1.LogService/WriteLog", "full gRPC method path of the unary RPC"),
    NUM(buffer_bytes, T_SIZE, "64MiB", 64 << 10, 1ULL << 30, "memory for records in the ring (bytes)"),
    NUM(batch_max_records, T_U64, "2000", 1, 1000000, "records per batch at most"),
    NUM(batch_max_bytes, T_SIZE, "4MiB", 1024, 1ULL << 30, "bytes per batch at most (servers refuse > 4 MiB)"),
    NUM(flush_interval_ms, T_MS, "100", 1, 3600000, "send a partial batch after this long"),
    NUM(max_inflight, T_U64, "4", 1, 1024, "concurrent upstream calls (batches) at most"),
    NUM(max_record_bytes, T_SIZE, "1MiB", 64, 64 << 20, "largest msgpack record accepted; at most 1/16 of buffer-bytes"),
    NUM(forward_max_message_bytes, T_SIZE, "16MiB", 64, 256 << 20,
        "largest Fluent Forward message (a whole chunk); max-record-bytes..buffer-bytes/4; each event max-record-bytes"),
    NUM(drain_timeout_ms, T_MS, "10000", 0, 3600000, "on SIGTERM, time allowed to flush what is held"),
    NUM(rpc_timeout_ms, T_MS, "10000", 10, 3600000, "deadline of each upstream call"),
    NUM(retry_initial_ms, T_MS, "100", 1, 3600000, "first retry delay (exponential backoff, full jitter)"),
    NUM(retry_max_ms, T_MS, "30000", 1, 3600000, "largest retry delay"),
    NUM(retry_max_elapsed_s, T_U64, "0", 0, 31536000, "give up on a batch after retrying this long (0: never)"),
    ENUM(on_full, "block", FULL_NAMES, "block|drop-newest|drop-oldest: what a full buffer does"),
    ENUM(buffer, "memory", BUFFER_NAMES, "memory|disk: disk appends every batch to the spool before sending it"),
    STR(spool_dir, "", "spool folder (disk buffer, dead letters; in memory mode: shutdown spill)"),
    NUM(spool_max_bytes, T_SIZE, "1GiB", 1 << 20, 1ULL << 40, "largest spool on disk; past it --on-full applies"),
    ENUM(spool_fsync, "interval", FSYNC_NAMES, "always|interval|never: fdatasync per batch, every second, or never"),
    NUM(deadletter_max_bytes, T_SIZE, "64MiB", 0, 1ULL << 40,
        "bound of deadletter.log + deadletter.log.1 (oldest rotated out, counted); 0: refused records dropped"),
    NUM(log_level, T_LEVEL, "info", 0, 0, "debug|info|warn|error"),
    ENUM(log_format, "logfmt", LOG_FORMAT_NAMES, "logfmt|json: the agent's own log lines on stderr (json: one object a line)"),
};
#define N_OPTS (sizeof OPTS / sizeof OPTS[0])
_Static_assert(N_OPTS <= CONFIG_MAX_OPTS, "raise CONFIG_MAX_OPTS");

/* What SIGHUP applies while running (config_apply_live); everything else needs a restart. */
static const char *const LIVE_OPTS[] = {"log_level", "log_format", "batch_max_records", "batch_max_bytes", "flush_interval_ms",
                                        "on_full", "health_failing_ms", "health_spool_pct", "upstream", "ca_file",
                                        "cert_file", "key_file", "tls_server_name", NULL};

/* --socket_path is spelled --socket on the command line, as docs/operations.md documents it. */
static void flag_name(const opt *o, char *buf, size_t n)
{
    const char *src = strcmp(o->name, "socket_path") == 0 ? "socket" : o->name;
    size_t i = 0;
    for (; src[i] && i + 1 < n; i++)
        buf[i] = src[i] == '_' ? '-' : src[i];
    buf[i] = 0;
}

static int parse_u64_suffix(const char *s, opt_type t, uint64_t *out)
{
    errno = 0;
    char *end;
    if (!isdigit((unsigned char)*s))
        return -EINVAL;
    unsigned long long v = strtoull(s, &end, t == T_MODE ? 8 : 10);
    if (errno)
        return -EINVAL;
    uint64_t mul = 1;
    if (t == T_SIZE) {
        if (!strcmp(end, "k") || !strcmp(end, "K") || !strcmp(end, "KiB") || !strcmp(end, "KB")) mul = 1ULL << 10;
        else if (!strcmp(end, "M") || !strcmp(end, "MiB") || !strcmp(end, "MB")) mul = 1ULL << 20;
        else if (!strcmp(end, "G") || !strcmp(end, "GiB") || !strcmp(end, "GB")) mul = 1ULL << 30;
        else if (*end) return -EINVAL;
    } else if (t == T_MS) {
        if (!strcmp(end, "s")) mul = 1000;
        else if (!strcmp(end, "m") || !strcmp(end, "min")) mul = 60000;
        else if (!strcmp(end, "h")) mul = 3600000;
        else if (*end && strcmp(end, "ms")) return -EINVAL;
    } else if (*end) {
        return -EINVAL;
    }
    if (mul > 1 && v > UINT64_MAX / mul)
        return -EINVAL;
    *out = v * mul;
    return 0;
}

/* "expected one of: block, drop-newest, drop-oldest" into buf. */
static const char *words_expected(const opt *o, char *buf, size_t cap)
{
    size_t n = (size_t)snprintf(buf, cap, "expected one of:");
    for (int i = 0; o->names[i] && n < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, "%s %s", i ? "," : "", o->names[i]);
    return buf;
}

/* "out of range: 1..100" (sizes and durations in the units the flag takes) into buf. */
static const char *range_expected(const opt *o, char *buf, size_t cap)
{
    snprintf(buf, cap, "out of range: %llu..%llu%s", (unsigned long long)o->min, (unsigned long long)o->max,
             o->type == T_SIZE ? " bytes" : o->type == T_MS ? " ms" : "");
    return buf;
}

/* Sets one option from text. Returns 0, or -EINVAL with a reason in why (a constant, or written into buf). */
static int opt_set(config *cfg, const opt *o, const char *val, const char **why, char *buf, size_t cap)
{
    char *field = (char *)cfg + o->offset;
    uint64_t v;
    switch (o->type) {
    case T_STR:
        if (strlen(val) >= o->size) {
            *why = "too long";
            return -EINVAL;
        }
        strcpy(field, val);
        return 0;
    case T_ENUM:
        for (int i = 0; o->names[i]; i++)
            if (!strcmp(val, o->names[i])) {
                *(int *)field = i;
                return 0;
            }
        *why = words_expected(o, buf, cap);
        return -EINVAL;
    case T_BOOL:
        if (!strcmp(val, "true") || !strcmp(val, "yes") || !strcmp(val, "on") || !strcmp(val, "1")) {
            *(int *)field = 1;
        } else if (!strcmp(val, "false") || !strcmp(val, "no") || !strcmp(val, "off") || !strcmp(val, "0")) {
            *(int *)field = 0;
        } else {
            *why = "expected true or false (also yes/no, on/off, 1/0)";
            return -EINVAL;
        }
        return 0;
    case T_LEVEL:
        if ((*(int *)field = log_level_parse(val)) < 0) {
            *why = "expected debug, info, warn or error";
            return -EINVAL;
        }
        return 0;
    default:
        if (parse_u64_suffix(val, o->type, &v) < 0) {
            *why = o->type == T_SIZE ? "expected a size such as 65536, 64KiB, 4MiB"
                   : o->type == T_MS ? "expected a duration such as 250, 250ms, 5s, 2m"
                   : o->type == T_MODE ? "expected an octal file mode such as 0600"
                                     : "expected a non-negative integer";
            return -EINVAL;
        }
        if (v < o->min || v > o->max) {
            *why = range_expected(o, buf, cap);
            return -EINVAL;
        }
        *(uint64_t *)field = v;
        return 0;
    }
}

int config_list_next(const char **cursor, char *item, size_t cap)
{
    const char *s = *cursor;
    if (!*s)
        return 0;
    const char *comma = strchr(s, ','), *end = comma ? comma : s + strlen(s);
    *cursor = comma ? comma + 1 : end;
    while (s < end && isspace((unsigned char)*s))
        s++;
    while (end > s && isspace((unsigned char)end[-1]))
        end--;
    if ((size_t)(end - s) >= cap)
        return -E2BIG;
    memcpy(item, s, (size_t)(end - s));
    item[end - s] = 0;
    return 1;
}

void config_usage(FILE *out)
{
    fprintf(out, "usage: logagentd [options]\n\nlogagent's daemon: takes msgpack log records on a Unix socket and "
                 "ships them in batches to a gRPC log service.\n\n");
    for (size_t i = 0; i < N_OPTS; i++) {
        char flag[64];
        flag_name(&OPTS[i], flag, sizeof flag);
        fprintf(out, "  --%-20s %s (default: %s)\n", flag, OPTS[i].help, OPTS[i].def);
    }
    fprintf(out, "  --%-20s %s\n  --%-20s %s\n  --%-20s %s\n  --%-20s %s\n\n",
            "config PATH", "config file (default " CONFIG_DEFAULT_FILE " if present; '' for none)",
            "check-config", "print the effective configuration and where each value came from, then exit",
            "version", "print the version", "help", "this text");
    fprintf(out, "Every option may also be set as LOGAGENT_<OPTION> in the environment (e.g. LOGAGENT_BUFFER_BYTES="
                 "128MiB)\nor as `option = value` in the config file (INI, optionally under [logagentd]).\n"
                 "Precedence: flags > environment > config file > defaults. SIGHUP re-reads the file (the\n"
                 "environment and flags of a running agent do not change).\n"
                 "Exit status: 0 ok, 2 bad usage or configuration, 1 runtime failure.\n");
}

static void env_name(const opt *o, char *env, size_t cap)
{
    char flag[64];
    flag_name(o, flag, sizeof flag);
    size_t n = (size_t)snprintf(env, cap, "LOGAGENT_");
    for (size_t j = 0; flag[j] && n + 1 < cap; j++)
        env[n++] = flag[j] == '-' ? '_' : (char)toupper((unsigned char)flag[j]);
    env[n] = 0;
}

/* "default", "/etc/logagent/logagentd.conf:12", "LOGAGENT_BUFFER_BYTES", "--buffer-bytes". */
static void describe_origin(const config *cfg, size_t i, char *buf, size_t cap)
{
    char name[80];
    switch (cfg->origin[i]) {
    case ORIGIN_FILE: snprintf(buf, cap, "%s:%u", cfg->config_file, cfg->origin_line[i]); return;
    case ORIGIN_ENV: env_name(&OPTS[i], name, sizeof name); snprintf(buf, cap, "%s", name); return;
    case ORIGIN_ENV_ALT: snprintf(buf, cap, "LOG_SERVICE_GRPC_SERVER"); return;
    case ORIGIN_FLAG: flag_name(&OPTS[i], name, sizeof name); snprintf(buf, cap, "--%s", name); return;
    default: snprintf(buf, cap, "default"); return;
    }
}

/* Sets option i from text and records where it came from; prints the error (naming that origin) on failure. */
static int set_from(config *cfg, size_t i, const char *val, int origin, unsigned line)
{
    const char *why = "";
    char buf[200];
    unsigned char old_origin = cfg->origin[i];
    unsigned old_line = cfg->origin_line[i];
    cfg->origin[i] = (unsigned char)origin;
    cfg->origin_line[i] = line;
    if (opt_set(cfg, &OPTS[i], val, &why, buf, sizeof buf) == 0)
        return 0;
    char where[300], flag[64];
    describe_origin(cfg, i, where, sizeof where);
    flag_name(&OPTS[i], flag, sizeof flag);
    if (origin == ORIGIN_FILE)
        fprintf(stderr, "logagentd: %s: invalid value '%s' for key '%s': %s\n", where, val, flag, why);
    else
        fprintf(stderr, "logagentd: invalid value '%s' for --%s (from %s): %s\n", val, flag, where, why);
    cfg->origin[i] = old_origin;
    cfg->origin_line[i] = old_line;
    return -EINVAL;
}

static int find_opt(const char *key)
{
    char want[64], flag[64];
    size_t n = 0;
    for (; key[n] && n + 1 < sizeof want; n++)
        want[n] = key[n] == '_' ? '-' : key[n];
    want[n] = 0;
    for (size_t i = 0; i < N_OPTS; i++) {
        flag_name(&OPTS[i], flag, sizeof flag);
        if (!strcmp(flag, want))
            return (int)i;
    }
    return -1;
}

/* Edit distance of a and b (at most 63 characters each: longer is "far"). */
static size_t distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b), row[64];
    if (la > 63 || lb > 63)
        return 64;
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j], best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            diag = up;
            row[j] = best;
        }
    }
    return row[lb];
}

/* The setting name nearest to key (`_` read as `-`, case ignored) when it is a likely typo — at most 2 edits, or
 * a quarter of its length — written into out ("" when none); config/help/version/check-config count too. */
static const char *nearest_opt(const char *key, char *out, size_t cap)
{
    static const char *const META[] = {"config", "check-config", "help", "version"};
    char want[64], flag[64];
    size_t n = 0, best = 64;
    for (; key[n] && n + 1 < sizeof want; n++)
        want[n] = key[n] == '_' ? '-' : (char)tolower((unsigned char)key[n]);
    want[n] = 0;
    out[0] = 0;
    for (size_t i = 0; i < N_OPTS + 4; i++) {
        if (i < N_OPTS)
            flag_name(&OPTS[i], flag, sizeof flag);
        else
            snprintf(flag, sizeof flag, "%s", META[i - N_OPTS]);
        size_t d = distance(want, flag), limit = strlen(flag) / 4 > 2 ? strlen(flag) / 4 : 2;
        if (d < best && d <= limit) {
            best = d;
            snprintf(out, cap, "%s", flag);
        }
    }
    return out;
}

/* ---- the config file (libinih) -------------------------------------------------------------------------- */

typedef struct file_ctx {
    config *cfg;
    FILE *f;
    unsigned line; /* line being parsed: counted by the reader, since inih's handler is not told */
    int errors;
} file_ctx;

/* inih's line reader; counts lines and refuses (rather than splits) lines longer than inih's buffer. */
static char *file_reader(char *str, int num, void *stream)
{
    file_ctx *fc = stream;
    if (!fgets(str, num, fc->f))
        return NULL;
    fc->line++;
    size_t n = strlen(str);
    if (n == (size_t)num - 1 && str[n - 1] != '\n' && !feof(fc->f)) {
        int ch;
        while ((ch = fgetc(fc->f)) != EOF && ch != '\n')
            ;
        fprintf(stderr, "logagentd: %s:%u: line longer than %d characters\n", fc->cfg->config_file, fc->line,
                num - 2);
        fc->errors++;
        str[0] = 0;
    }
    return str;
}

static int file_handler(void *user, const char *section, const char *name, const char *value)
{
    file_ctx *fc = user;
    config *cfg = fc->cfg;
    if (section[0] && strcmp(section, "logagentd")) {
        fprintf(stderr, "logagentd: %s:%u: key '%s' in unknown section [%s] (keys go at the top or under "
                        "[logagentd])\n", cfg->config_file, fc->line, name, section);
        fc->errors++;
        return 1;
    }
    int i = find_opt(name);
    if (i < 0) {
        char near[64];
        if (nearest_opt(name, near, sizeof near)[0])
            fprintf(stderr, "logagentd: %s:%u: unknown key '%s': did you mean '%s'? (see logagentd --help)\n",
                    cfg->config_file, fc->line, name, near);
        else
            fprintf(stderr, "logagentd: %s:%u: unknown key '%s' (see logagentd --help)\n", cfg->config_file,
                    fc->line, name);
        fc->errors++;
        return 1;
    }
    if (cfg->origin[i] == ORIGIN_FILE) {
        fprintf(stderr, "logagentd: %s:%u: key '%s' set twice (first at line %u)\n", cfg->config_file, fc->line,
                name, cfg->origin_line[i]);
        fc->errors++;
        return 1;
    }
    char v[256]; /* inih knows `;` inline comments only; a `#` after whitespace starts one here too */
    snprintf(v, sizeof v, "%s", value);
    for (char *p = v; *p; p++)
        if (*p == '#' && (p == v || p[-1] == ' ' || p[-1] == '\t')) {
            *p = 0;
            break;
        }
    for (size_t n = strlen(v); n && (v[n - 1] == ' ' || v[n - 1] == '\t'); n--)
        v[n - 1] = 0;
    if (set_from(cfg, (size_t)i, v, ORIGIN_FILE, fc->line) < 0)
        fc->errors++;
    return 1; /* go on: report every error in one run */
}

/* Reads cfg->config_file. A missing file is an error only when it was named (required). */
static int load_file(config *cfg, int required)
{
    file_ctx fc = {.cfg = cfg, .f = fopen(cfg->config_file, "r")};
    if (!fc.f) {
        if (errno == ENOENT && !required)
            return 0;
        fprintf(stderr, "logagentd: cannot read config file %s: %s\n", cfg->config_file, strerror(errno));
        return -EINVAL;
    }
    struct stat st;
    if (fstat(fileno(fc.f), &st) < 0 || !S_ISREG(st.st_mode)) {
        fprintf(stderr, "logagentd: config file %s is not a regular file\n", cfg->config_file);
        fclose(fc.f);
        return -EINVAL;
    }
    cfg->config_file_found = 1;
    ini_allow_multiline = false; /* an indented key is a key, not the continuation of the line before */
    int rc = ini_parse_stream(file_reader, &fc, file_handler, &fc);
    fclose(fc.f);
    if (rc > 0) {
        fprintf(stderr, "logagentd: %s:%d: syntax error (expected `key = value`, `[logagentd]` or a # comment)\n",
                cfg->config_file, rc);
        fc.errors++;
    } else if (rc < 0) {
        fprintf(stderr, "logagentd: cannot parse config file %s\n", cfg->config_file);
        fc.errors++;
    }
    return fc.errors ? -EINVAL : 0;
}

/* A LOGAGENT_* variable that names no setting but is a likely typo of one (LOGAGENT_BUFER_BYTES) is said so: it
 * would otherwise be ignored in silence. Others (the client library's LOGAGENT_CLIENT_*, a test's) are not. */
static void warn_env_typos(void)
{
    extern char **environ;
    for (char **e = environ; e && *e; e++) {
        const char *eq = strchr(*e, '=');
        char key[64], near[64];
        size_t n = eq ? (size_t)(eq - *e) : 0;
        if (n <= 9 || n - 9 >= sizeof key || strncmp(*e, "LOGAGENT_", 9))
            continue;
        for (size_t i = 0; i < n - 9; i++)
            key[i] = (*e)[9 + i] == '_' ? '-' : (char)tolower((unsigned char)(*e)[9 + i]);
        key[n - 9] = 0;
        if (find_opt(key) >= 0 || !strcmp(key, "config") || !nearest_opt(key, near, sizeof near)[0])
            continue;
        for (char *p = near; *p; p++)
            *p = *p == '-' ? '_' : (char)toupper((unsigned char)*p);
        fprintf(stderr, "logagentd: warning: %.*s is not a setting, ignored: did you mean LOGAGENT_%s?\n", (int)n, *e,
                near);
    }
}

static int load_env(config *cfg)
{
    warn_env_typos();
    for (size_t i = 0; i < N_OPTS; i++) {
        char env[80];
        env_name(&OPTS[i], env, sizeof env);
        const char *v = getenv(env);
        int origin = ORIGIN_ENV;
        if (!v && OPTS[i].offset == offsetof(config, upstream)) {
            v = getenv("LOG_SERVICE_GRPC_SERVER");
            origin = ORIGIN_ENV_ALT;
        }
        if (v && set_from(cfg, i, v, origin, 0) < 0)
            return -EINVAL;
    }
    return 0;
}

/* ---- putting it together ------------------------------------------------------------------------------- */

enum { META_HELP = 'h', META_VERSION = 'V', META_CONFIG = 1000, META_CHECK = 1001 };

typedef struct argv_scan {
    int n;
    int idx[256];
    const char *val[256];
    const char *config_path; /* --config, NULL when not given */
} argv_scan;

/* First pass over argv: remembers option values (applied after the file and the environment). */
static config_result scan_argv(config *cfg, argv_scan *sc, int argc, char **argv)
{
    struct option lopts[N_OPTS + 5];
    char names[N_OPTS][64];
    for (size_t i = 0; i < N_OPTS; i++) {
        flag_name(&OPTS[i], names[i], sizeof names[i]);
        lopts[i] = (struct option){names[i], OPTS[i].type == T_BOOL ? optional_argument : required_argument, NULL,
                                   (int)(256 + i)};
    }
    lopts[N_OPTS] = (struct option){"help", no_argument, NULL, META_HELP};
    lopts[N_OPTS + 1] = (struct option){"version", no_argument, NULL, META_VERSION};
    lopts[N_OPTS + 2] = (struct option){"config", required_argument, NULL, META_CONFIG};
    lopts[N_OPTS + 3] = (struct option){"check-config", no_argument, NULL, META_CHECK};
    lopts[N_OPTS + 4] = (struct option){NULL, 0, NULL, 0};
    optind = 0; /* full re-initialisation: SIGHUP scans the same argv again */
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":hV", lopts, NULL)) != -1) {
        if (c == META_HELP) {
            config_usage(stdout);
            return CONFIG_EXIT_OK;
        } else if (c == META_VERSION) {
            printf("logagentd %s\n", LOGAGENT_VERSION_STRING);
            return CONFIG_EXIT_OK;
        } else if (c == META_CONFIG) {
            sc->config_path = optarg;
        } else if (c == META_CHECK) {
            cfg->check_only = 1;
        } else if (c == '?' || c == ':') {
            const char *arg = argv[optind - 1];
            char near[64] = "", key[64];
            if (c == '?' && !strncmp(arg, "--", 2)) { /* the name alone: --buffer-byte=8MiB -> buffer-byte */
                snprintf(key, sizeof key, "%s", arg + 2);
                key[strcspn(key, "=")] = 0;
                nearest_opt(key, near, sizeof near);
            }
            if (near[0])
                cli_usage_error("logagentd", "unknown option '%s': did you mean --%s?", arg, near);
            else
                cli_option_error("logagentd", c == ':', arg);
            return CONFIG_EXIT_USAGE;
        } else if (sc->n < (int)(sizeof sc->idx / sizeof sc->idx[0])) {
            sc->idx[sc->n] = c - 256;
            sc->val[sc->n++] = optarg ? optarg : "true"; /* a switch given alone */
        } else {
            cli_usage_error("logagentd", "too many options");
            return CONFIG_EXIT_USAGE;
        }
    }
    if (optind < argc) {
        cli_usage_error("logagentd", "unexpected argument '%s'", argv[optind]);
        return CONFIG_EXIT_USAGE;
    }
    return CONFIG_RUN;
}

static size_t opt_index(size_t offset)
{
    for (size_t i = 0; i < N_OPTS; i++)
        if (OPTS[i].offset == offset)
            return i;
    return 0;
}

config_text config_flag(size_t offset)
{
    config_text t;
    flag_name(&OPTS[opt_index(offset)], t.s, sizeof t.s);
    return t;
}

config_text config_origin(const config *cfg, size_t offset)
{
    config_text t;
    describe_origin(cfg, opt_index(offset), t.s, sizeof t.s);
    return t;
}

int config_defaulted(const config *cfg, size_t offset) { return cfg->origin[opt_index(offset)] == ORIGIN_DEFAULT; }

config_result config_load(config *cfg, int argc, char **argv)
{
    memset(cfg, 0, sizeof *cfg);
    for (size_t i = 0; i < N_OPTS; i++)
        if (set_from(cfg, i, OPTS[i].def, ORIGIN_DEFAULT, 0) < 0)
            return CONFIG_EXIT_USAGE;
    argv_scan sc = {0};
    config_result r = scan_argv(cfg, &sc, argc, argv);
    if (r != CONFIG_RUN)
        return r;
    const char *path = sc.config_path ? sc.config_path : getenv("LOGAGENT_CONFIG");
    int required = path != NULL;
    if (!path)
        path = CONFIG_DEFAULT_FILE;
    if (strlen(path) >= sizeof cfg->config_file) {
        fprintf(stderr, "logagentd: config file path too long\n");
        return CONFIG_EXIT_USAGE;
    }
    strcpy(cfg->config_file, path);
    if ((cfg->config_file[0] && load_file(cfg, required) < 0) || load_env(cfg) < 0)
        return CONFIG_EXIT_USAGE;
    for (int k = 0; k < sc.n; k++)
        if (set_from(cfg, (size_t)sc.idx[k], sc.val[k], ORIGIN_FLAG, 0) < 0)
            return CONFIG_EXIT_USAGE;
    return config_check(cfg) < 0 ? CONFIG_EXIT_USAGE : CONFIG_RUN;
}

/* ---- printing and reloading --------------------------------------------------------------------------- */

static void format_value(const config *cfg, const opt *o, char *buf, size_t cap)
{
    const char *field = (const char *)cfg + o->offset;
    uint64_t v = o->type == T_STR || o->type == T_ENUM || o->type == T_LEVEL || o->type == T_BOOL
                     ? 0 : *(const uint64_t *)field;
    static const char *const LEVELS[] = {"debug", "info", "warn", "error"};
    switch (o->type) {
    case T_STR: snprintf(buf, cap, "%s", field); break;
    case T_ENUM: snprintf(buf, cap, "%s", o->names[*(const int *)field]); break;
    case T_BOOL: snprintf(buf, cap, "%s", *(const int *)field ? "true" : "false"); break;
    case T_LEVEL: snprintf(buf, cap, "%s", LEVELS[*(const int *)field & 3]); break;
    case T_MODE: snprintf(buf, cap, "%04llo", (unsigned long long)v); break;
    case T_MS:
        if (v && v % 1000 == 0)
            snprintf(buf, cap, "%llus", (unsigned long long)(v / 1000));
        else
            snprintf(buf, cap, "%llums", (unsigned long long)v);
        break;
    case T_SIZE:
        if (v && v % (1ULL << 30) == 0) snprintf(buf, cap, "%lluGiB", (unsigned long long)(v >> 30));
        else if (v && v % (1ULL << 20) == 0) snprintf(buf, cap, "%lluMiB", (unsigned long long)(v >> 20));
        else if (v && v % (1ULL << 10) == 0) snprintf(buf, cap, "%lluKiB", (unsigned long long)(v >> 10));
        else snprintf(buf, cap, "%llu", (unsigned long long)v);
        break;
    default: snprintf(buf, cap, "%llu", (unsigned long long)v); break;
    }
}

static int is_live(const opt *o)
{
    for (int i = 0; LIVE_OPTS[i]; i++)
        if (!strcmp(o->name, LIVE_OPTS[i]))
            return 1;
    return 0;
}

/* The longest line file_reader accepts: libinih's 200-byte line buffer less the newline and the NUL. What
 * config_print writes must stay within it, or `--check-config > new.conf` makes a file the agent refuses. */
enum { CONFIG_LINE_MAX = 198 };

/* A whole comment line, cut to CONFIG_LINE_MAX. */
static void print_comment(FILE *out, const char *text)
{
    fprintf(out, "# %.*s\n", CONFIG_LINE_MAX - 2, text);
}

void config_print(const config *cfg, FILE *out)
{
    char text[400];
    print_comment(out, "logagentd " LOGAGENT_VERSION_STRING ": effective configuration");
    snprintf(text, sizeof text, "config file: %s%s", cfg->config_file[0] ? cfg->config_file : "none",
             cfg->config_file[0] && !cfg->config_file_found ? " (not found: skipped)" : "");
    print_comment(out, text);
    print_comment(out, "precedence: flags > environment > config file > defaults; * = applied live on SIGHUP");
    fprintf(out, "[logagentd]\n");
    for (size_t i = 0; i < N_OPTS; i++) {
        char flag[64], val[300], where[300], line[400];
        flag_name(&OPTS[i], flag, sizeof flag);
        format_value(cfg, &OPTS[i], val, sizeof val);
        describe_origin(cfg, i, where, sizeof where);
        snprintf(text, sizeof text, "%s%s", where, is_live(&OPTS[i]) ? " *" : "");
        /* `key=value` when `key = value` would not read back: too long, or a value starting with `;` (libinih
         * takes a `;` after a space for a comment) */
        int n = snprintf(line, sizeof line, val[0] == ';' ? "%s=%s" : "%s = %s", flag, val);
        if (n > CONFIG_LINE_MAX) /* still too long for a config file: a value only a flag or variable can set */
            n = snprintf(line, sizeof line, "%s=%s", flag, val);
        if ((n > 52 ? n : 52) + 3 + (int)strlen(text) <= CONFIG_LINE_MAX) {
            fprintf(out, "%-52s # %s\n", line, text);
        } else { /* the origin on its own line above */
            print_comment(out, text);
            fprintf(out, "%s\n", line);
        }
    }
    if (cfg->upstream_protocol == PROTOCOL_OTLP)
        print_comment(out, "upstream-protocol = otlp: upstream-rpc, batch-method and unary-method are ignored; every "
                           "batch is one call to " OTLP_EXPORT_METHOD);
}

static void append_name(char *buf, size_t cap, const opt *o)
{
    char flag[64];
    flag_name(o, flag, sizeof flag);
    size_t n = strlen(buf);
    snprintf(buf + n, cap - n, "%s%s", n ? "," : "", flag);
}

void config_apply_live(config *cur, const config *next, char *live, size_t live_cap, char *restart,
                       size_t restart_cap)
{
    live[0] = restart[0] = 0;
    for (size_t i = 0; i < N_OPTS; i++) {
        const opt *o = &OPTS[i];
        size_t size = o->type == T_STR                                                  ? o->size
                      : o->type == T_ENUM || o->type == T_LEVEL || o->type == T_BOOL ? sizeof(int)
                                                                                     : sizeof(uint64_t);
        char *a = (char *)cur + o->offset;
        const char *b = (const char *)next + o->offset;
        if (o->type == T_STR ? !strcmp(a, b) : !memcmp(a, b, size))
            continue;
        if (is_live(o)) {
            memcpy(a, b, size); /* strings are never live: no NUL handling needed */
            cur->origin[i] = next->origin[i];
            cur->origin_line[i] = next->origin_line[i];
            append_name(live, live_cap, o);
        } else {
            append_name(restart, restart_cap, o);
        }
    }
}
