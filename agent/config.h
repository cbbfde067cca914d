/* config.h — logagentd's settings and the one option table that drives flags, environment and --help.
 *
 * Precedence: command-line flag > LOGAGENT_<NAME> environment variable > default. (`--upstream` also honours
 * LOG_SERVICE_GRPC_SERVER, as the original client did.) Bad values exit 2 naming the flag. */
#ifndef LOGAGENT_CONFIG_H
#define LOGAGENT_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum upstream_rpc { RPC_AUTO = 0, RPC_BATCH = 1, RPC_UNARY = 2 };
enum on_full { FULL_BLOCK = 0, FULL_DROP_NEWEST = 1, FULL_DROP_OLDEST = 2 };
enum buffer_mode { BUFFER_MEMORY = 0, BUFFER_DISK = 1 };

typedef struct config {
    char socket_path[108];
    char stats_socket[108];
    uint64_t stats_socket_mode;  /* file mode bits of the stats socket (default 0600) */
    char stats_socket_group[64]; /* group name or number to own the stats socket ("" = the agent's) */
    char metrics_listen[128];    /* "HOST:PORT": also serve the stats endpoints over TCP ("" = off) */
    uint64_t health_failing_ms;  /* /healthz 503 once the upstream failed (or the ring stood still) this long */
    uint64_t health_spool_pct;   /* /healthz 503 once the spool holds this percentage of --spool-max-bytes */
    char upstream[256];
    int upstream_rpc;
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
    int log_level;
} config;

typedef enum config_result { CONFIG_RUN = 0, CONFIG_EXIT_OK = 1, CONFIG_EXIT_USAGE = 2 } config_result;

/* Fills cfg from defaults, environment and argv. Prints --help/--version or the usage error itself.
 * Returns CONFIG_RUN to go on, CONFIG_EXIT_OK (exit 0) or CONFIG_EXIT_USAGE (exit 2). */
config_result config_load(config *cfg, int argc, char **argv);

/* Writes the --help text (generated from the option table). */
void config_usage(FILE *out);

#endif
