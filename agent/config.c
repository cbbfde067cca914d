/* config.c — the option table and its parser (see config.h).
 *
 * Each row names a setting once: its flag, its type and bounds, its default and its help line. Environment
 * variables are derived from the flag name (--buffer-bytes -> LOGAGENT_BUFFER_BYTES). Sizes accept
 * KiB/MiB/GiB (and k/M/G) suffixes; durations are in milliseconds and accept ms/s suffixes. */
#include "config.h"

#include "log.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

typedef enum opt_type { T_STR, T_U64, T_SIZE, T_MS, T_ENUM, T_LEVEL, T_MODE } opt_type;

static const char *const RPC_NAMES[] = {"auto", "batch", "unary", NULL};
static const char *const FULL_NAMES[] = {"block", "drop-newest", "drop-oldest", NULL};
static const char *const BUFFER_NAMES[] = {"memory", "disk", NULL};
static const char *const FSYNC_NAMES[] = {"always", "interval", "never", NULL};

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

static const opt OPTS[] = {
    STR(socket_path, "/run/logagent/ingest.sock", "ingest socket (clients read LOGAGENT_SOCKET)"),
    STR(stats_socket, "/run/logagent/stats.sock", "stats socket (HTTP: GET /stats); empty to disable"),
    NUM(stats_socket_mode, T_MODE, "0600", 0, 0777, "file mode of the stats socket (octal)"),
    STR(stats_socket_group, "", "group owning the stats socket (name or number; empty: the agent's)"),
    STR(metrics_listen, "", "also serve /stats, /metrics, /healthz over TCP on HOST:PORT (empty: off)"),
    NUM(health_failing_ms, T_MS, "60s", 1000, 86400000, "/healthz says 503 once the upstream fails this long"),
    NUM(health_spool_pct, T_U64, "90", 1, 100, "/healthz says 503 once the spool is this % full"),
    STR(upstream, "localhost:50051", "log service HOST:PORT (or LOG_SERVICE_GRPC_SERVER)"),
    ENUM(upstream_rpc, "auto", RPC_NAMES, "auto|batch|unary: auto starts with batch, unary on UNIMPLEMENTED"),
    STR(batch_method, "/logagent.v1.LogService/BatchWriteLogs", "full gRPC method path of the batch RPC"),
    STR(unary_method, "/logagent.v1.LogService/WriteLog", "full gRPC method path of the unary RPC"),
    NUM(buffer_bytes, T_SIZE, "64MiB", 64 << 10, 1ULL << 30, "memory for records in the ring (bytes)"),
    NUM(batch_max_records, T_U64, "2000", 1, 1000000, "records per batch at most"),
    NUM(batch_max_bytes, T_SIZE, "4MiB", 1024, 1ULL << 30, "bytes per batch at most (servers refuse > 4 MiB)"),
    NUM(flush_interval_ms, T_MS, "100", 1, 3600000, "send a partial batch after this long"),
    NUM(max_inflight, T_U64, "4", 1, 1024, "concurrent upstream calls (batches) at most"),
    NUM(max_record_bytes, T_SIZE, "1MiB", 64, 64 << 20, "largest msgpack record accepted"),
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
    NUM(log_level, T_LEVEL, "info", 0, 0, "debug|info|warn|error"),
};
#define N_OPTS (sizeof OPTS / sizeof OPTS[0])

/* --socket_path is spelled --socket on the command line, as DESIGN.md fixes it. */
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

/* Sets one option from text. Returns 0, or -EINVAL with a reason in why. */
static int opt_set(config *cfg, const opt *o, const char *val, const char **why)
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
        *why = "not one of the accepted words (see --help)";
        return -EINVAL;
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
            *why = "out of range";
            return -EINVAL;
        }
        *(uint64_t *)field = v;
        return 0;
    }
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
    fprintf(out, "  --%-20s %s\n  --%-20s %s\n\nEvery option may also be set as LOGAGENT_<OPTION> in the "
                 "environment (e.g. LOGAGENT_BUFFER_BYTES=128MiB); flags win.\nExit status: 0 ok, 2 bad usage, "
                 "1 runtime failure.\n",
            "version", "print the version", "help", "this text");
}

static int set_or_complain(config *cfg, const opt *o, const char *val, const char *origin)
{
    const char *why = "";
    if (opt_set(cfg, o, val, &why) == 0)
        return 0;
    char flag[64];
    flag_name(o, flag, sizeof flag);
    fprintf(stderr, "logagentd: invalid value '%s' for --%s (from %s): %s\n", val, flag, origin, why);
    return -EINVAL;
}

static int load_defaults_and_env(config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    for (size_t i = 0; i < N_OPTS; i++) {
        const opt *o = &OPTS[i];
        char flag[64], env[80] = "LOGAGENT_";
        if (set_or_complain(cfg, o, o->def, "default") < 0)
            return -EINVAL;
        flag_name(o, flag, sizeof flag);
        size_t n = strlen(env);
        for (size_t j = 0; flag[j] && n + 1 < sizeof env; j++)
            env[n++] = flag[j] == '-' ? '_' : (char)toupper((unsigned char)flag[j]);
        env[n] = 0;
        const char *v = getenv(env);
        if (!v && o->offset == offsetof(config, upstream))
            v = getenv("LOG_SERVICE_GRPC_SERVER");
        if (v && set_or_complain(cfg, o, v, env) < 0)
            return -EINVAL;
    }
    return 0;
}

config_result config_load(config *cfg, int argc, char **argv)
{
    if (load_defaults_and_env(cfg) < 0)
        return CONFIG_EXIT_USAGE;
    struct option lopts[N_OPTS + 3];
    char names[N_OPTS][64];
    for (size_t i = 0; i < N_OPTS; i++) {
        flag_name(&OPTS[i], names[i], sizeof names[i]);
        lopts[i] = (struct option){names[i], required_argument, NULL, (int)(256 + i)};
    }
    lopts[N_OPTS] = (struct option){"help", no_argument, NULL, 'h'};
    lopts[N_OPTS + 1] = (struct option){"version", no_argument, NULL, 'V'};
    lopts[N_OPTS + 2] = (struct option){NULL, 0, NULL, 0};
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":hV", lopts, NULL)) != -1) {
        if (c == 'h') {
            config_usage(stdout);
            return CONFIG_EXIT_OK;
        }
        if (c == 'V') {
            printf("logagentd %s\n", LOGAGENT_VERSION_STRING);
            return CONFIG_EXIT_OK;
        }
        if (c == '?' || c == ':') {
            fprintf(stderr, "logagentd: %s option '%s' (try --help)\n", c == ':' ? "missing value for" : "unknown",
                    argv[optind - 1]);
            return CONFIG_EXIT_USAGE;
        }
        if (set_or_complain(cfg, &OPTS[c - 256], optarg, "command line") < 0)
            return CONFIG_EXIT_USAGE;
    }
    if (optind < argc) {
        fprintf(stderr, "logagentd: unexpected argument '%s' (try --help)\n", argv[optind]);
        return CONFIG_EXIT_USAGE;
    }
    if (cfg->max_record_bytes > cfg->buffer_bytes / 16) {
        fprintf(stderr, "logagentd: --max-record-bytes (%llu) must be at most 1/16 of --buffer-bytes (%llu)\n",
                (unsigned long long)cfg->max_record_bytes, (unsigned long long)cfg->buffer_bytes);
        return CONFIG_EXIT_USAGE;
    }
    if (cfg->buffer == BUFFER_DISK && !cfg->spool_dir[0]) {
        fprintf(stderr, "logagentd: --buffer disk needs --spool-dir\n");
        return CONFIG_EXIT_USAGE;
    }
    return CONFIG_RUN;
}
