/* config.h — logagentd's settings and the one option table that drives flags, environment, the config file,
 * --help and --check-config.
 *
 * Precedence: command-line flag > LOGAGENT_<NAME> environment variable > config file > default. The file is
 * INI (/etc/logagent/logagentd.conf unless --config or LOGAGENT_CONFIG says otherwise): keys are the flag names
 * without `--`, at the top or under `[logagentd]`. (`--upstream` also honours LOG_SERVICE_GRPC_SERVER, as the
 * original client did.) Bad values exit 2 naming the flag, variable, or file:line and key. */
#ifndef LOGAGENT_CONFIG_H
#define LOGAGENT_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum upstream_rpc { RPC_AUTO = 0, RPC_BATCH = 1, RPC_UNARY = 2 };
enum on_full { FULL_BLOCK = 0, FULL_DROP_NEWEST = 1, FULL_DROP_OLDEST = 2 };
enum rate_key { RATE_KEY_PID = 0, RATE_KEY_UID = 1 };
enum trusted_field { TRUSTED_CGROUP = 1, TRUSTED_CONTAINER_ID = 2 };
enum buffer_mode { BUFFER_MEMORY = 0, BUFFER_DISK = 1 };
enum upstream_protocol { PROTOCOL_LOGAGENT = 0, PROTOCOL_OTLP = 1 };
enum upstream_compression { COMPRESSION_NONE = 0, COMPRESSION_GZIP = 1 };
enum upstream_lb { LB_ROUND_ROBIN = 0, LB_PICK_FIRST = 1 };

#define CONFIG_DEFAULT_FILE "/etc/logagent/logagentd.conf"
#define CONFIG_MAX_OPTS 96

/* Where a setting's value came from (for --check-config and error messages). */
enum config_origin { ORIGIN_DEFAULT = 0, ORIGIN_FILE, ORIGIN_ENV, ORIGIN_ENV_ALT, ORIGIN_FLAG };

#define CONFIG_MAX_IDS 64

typedef struct config {
    char socket_path[108];
    uint64_t socket_mode;        /* file mode bits of the ingest socket (default 0660) */
    char socket_group[64];       /* group name or number to own the ingest socket ("" = the agent's) */
    long socket_gid;             /* that group resolved by config_load; -1 when "" */
    char allow_uids[512];        /* users (names or numbers) allowed to connect; "" = anyone the mode lets in */
    char allow_gids[512];        /* groups allowed (primary or supplementary); "" = no group rule */
    uint32_t allow_uid[CONFIG_MAX_IDS], allow_gid[CONFIG_MAX_IDS]; /* those lists resolved by config_load */
    unsigned n_allow_uid, n_allow_gid;
    uint64_t max_connections;    /* ingest connections at once; at the limit accepting stops (backlog) */
    uint64_t ingest_threads;     /* ingest event loops; 0: cpus_ingest_threads_default() (ingest/cpus.h) */
    uint64_t partial_record_timeout_ms; /* a connection holding a partial record this long is closed (slowloris) */
    uint64_t ingest_memory_bytes; /* memory for partial records and pending HTTP bodies across connections */
    uint64_t http_max_connections; /* HTTP ingest connections at once; at the limit accepting stops (backlog) */
    char trusted_fields[64];     /* "cgroup,container_id": more of the peer's identity from /proc */
    unsigned trusted_mask;       /* TRUSTED_CGROUP | TRUSTED_CONTAINER_ID, parsed by config_load */
    char rate_limit[64];         /* "RECORDS/s:BURST" per sender ("" = off) */
    int rate_limit_key;          /* RATE_KEY_PID or RATE_KEY_UID: what a sender is */
    double rate_limit_rps;       /* rate_limit parsed by config_load (0 = off) */
    uint64_t rate_limit_burst;
    char stats_socket[108];
    uint64_t stats_socket_mode;  /* file mode bits of the stats socket (default 0600) */
    char stats_socket_group[64]; /* group name or number to own the stats socket ("" = the agent's) */
    long stats_socket_gid;       /* that group resolved by config_load; -1 when "" */
    char metrics_listen[128];    /* "HOST:PORT": also serve the stats endpoints over TCP ("" = off) */
#define OTLP_LISTEN_MAX 4
    char otlp_listen[272];       /* "unix:PATH" and/or "HOST:PORT", comma-separated: OTLP/gRPC ingest ("" = off) */
    uint64_t otlp_max_request_bytes; /* largest OTLP/gRPC request message */
    uint64_t otlp_max_connections;   /* OTLP/gRPC connections open at once */
    char http_listen[128];       /* "unix:PATH" or "HOST:PORT": take records as JSON over HTTP ("" = off) */
    uint64_t http_max_body_bytes; /* largest HTTP request body; past it 413 */
    char forward_message_keys[128]; /* Fluent Forward: record keys tried in order as the message */
    uint64_t forward_max_message_bytes; /* largest Forward message (top-level array); max_record..buffer/4 */
    char forward_listen[128];    /* "HOST:PORT": also take Forward (and native) msgpack over TCP ("" = off) */
    uint64_t health_failing_ms;  /* /healthz 503 once the upstream failed (or the ring stood still) this long */
    uint64_t health_spool_pct;   /* /healthz 503 once the spool holds this percentage of --spool-max-bytes */
    char upstream[256];
    int upstream_rpc;
    int upstream_protocol;       /* PROTOCOL_LOGAGENT (logagent.v1) or PROTOCOL_OTLP (LogsService/Export) */
    int upstream_compression;    /* COMPRESSION_NONE or COMPRESSION_GZIP: gRPC's message compression of every call */
    int upstream_lb;             /* LB_ROUND_ROBIN or LB_PICK_FIRST: gRPC's load-balancing policy over the target */
    uint64_t upstream_keepalive_ms;         /* HTTP/2 PING interval while calls are in flight (0: none) */
    uint64_t upstream_keepalive_timeout_ms; /* ... and how long one may go unanswered */
    uint64_t upstream_dns_refresh_ms;       /* look the upstream's DNS name up again this often (0: gRPC's own only) */
    char resource_attr[1024];    /* otlp: "k=v,k2=v2" added to every resource */
    int upstream_tls;            /* 1: TLS to the upstream (the files below); 0: plaintext h2c */
    char ca_file[256];           /* PEM roots to verify the service ("" = gRPC's default roots) */
    char cert_file[256];         /* PEM client certificate chain (mTLS) */
    char key_file[256];          /* its PEM private key */
    char tls_server_name[256];   /* name the service's certificate must carry, when not the upstream's host */
    char token_file[256];        /* bearer token sent as `authorization` metadata, re-read when it changes */
    char batch_method[128];
    char unary_method[128];
    uint64_t buffer_bytes;
    uint64_t batch_max_records;
    uint64_t batch_max_bytes;
    uint64_t flush_interval_ms;
    uint64_t max_inflight;
    uint64_t max_record_bytes;
    uint64_t drain_timeout_ms;
    uint64_t rpc_timeout_ms;
    uint64_t retry_initial_ms;
    uint64_t retry_max_ms;
    uint64_t retry_max_elapsed_s;
    int on_full;
    int buffer;
    char spool_dir[200];
    uint64_t spool_max_bytes;
    int spool_fsync;
    uint64_t deadletter_max_bytes; /* deadletter.log + .1 at most (rotation); 0: no dead-letter file */
    int log_level;
    int log_format; /* LOG_FORMAT_LOGFMT or LOG_FORMAT_JSON (log.h) */

    /* bookkeeping, filled by config_load */
    char config_file[256];              /* the file read; "" when none */
    int config_file_found;              /* 0: the default file was absent (defaults used) */
    int check_only;                     /* --check-config */
    unsigned char origin[CONFIG_MAX_OPTS]; /* per option, enum config_origin */
    unsigned origin_line[CONFIG_MAX_OPTS]; /* file line when origin is ORIGIN_FILE */
} config;

typedef enum config_result { CONFIG_RUN = 0, CONFIG_EXIT_OK = 1, CONFIG_EXIT_USAGE = 2 } config_result;

/* Fills cfg from defaults, the config file, environment and argv. Prints --help/--version, or the usage error,
 * itself. Returns CONFIG_RUN to go on, CONFIG_EXIT_OK (exit 0) or CONFIG_EXIT_USAGE (exit 2). With
 * --check-config, cfg->check_only is set and CONFIG_RUN returned: the caller prints it (config_print). */
config_result config_load(config *cfg, int argc, char **argv);

/* The next item of a comma-separated list setting (--otlp-listen), white space around it trimmed, into item.
 * Returns 1 (an item, possibly empty), 0 at the end, -E2BIG when it does not fit (skipped). *cursor moves on. */
int config_list_next(const char **cursor, char *item, size_t cap);

/* Writes the --help text (generated from the option table). */
void config_usage(FILE *out);

/* Writes the effective configuration as a config file, each line with the value's origin as a comment. */
void config_print(const config *cfg, FILE *out);

/* SIGHUP: copies into cur the settings that can change while running (log level, batch sizes, flush interval,
 * --on-full, health thresholds) from next, and lists in `live` and `restart` (comma-separated flag names) what
 * changed and was applied, and what changed but needs a restart (not applied). */
void config_apply_live(config *cur, const config *next, char *live, size_t live_cap, char *restart,
                       size_t restart_cap);

#endif
