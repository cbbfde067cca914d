/* config_internal.h — what config.c and config_check.c share, and nothing else includes: config.c holds the
 * option table and reads the values; config_check.c judges them together once all are read (config_check), and
 * names an option, and where its value came from, through the table (config_flag, config_origin). Options are
 * named by their field's offsetof(config, field). The public interface stays config.h. */
#ifndef LOGAGENT_CONFIG_INTERNAL_H
#define LOGAGENT_CONFIG_INTERNAL_H

#include "config.h"

#include <stddef.h>

/* A short text returned by value: `config_flag(o).s` may be passed as an argument (it lives until the end of the
 * full expression). */
typedef struct config_text {
    char s[300];
} config_text;

/* The option's flag name without "--": "buffer-bytes". */
config_text config_flag(size_t offset);
/* Where its value came from: "--buffer-bytes", "/etc/logagent/logagentd.conf:12", "LOGAGENT_BUFFER_BYTES",
 * "LOG_SERVICE_GRPC_SERVER" or "default". */
config_text config_origin(const config *cfg, size_t offset);
/* 1 when no flag, variable or file line set it. */
int config_defaulted(const config *cfg, size_t offset);

/* The checks across values (config_check.c), run by config_load once every value is read; they also fill the
 * fields derived from the text (socket_gid, allow_uid, rate_limit_rps, trusted_mask, ...) and let a default
 * max-record-bytes and forward-max-message-bytes follow a small buffer. 0, or -EINVAL with the reason printed. */
int config_check(config *cfg);

#endif
