/* env.h — the process-wide client's LOGAGENT_CLIENT_* environment variables (internal to the library).
 *
 * The same four variables, syntax and messages as the Python module (docs/python.md): an operator tunes every
 * app of a pre-fork server or a container from its environment, whatever language it is written in. */
#ifndef LOGAGENT_ENV_H
#define LOGAGENT_ENV_H

#include <stddef.h>

#include "logagent.h"

typedef struct la_env {
    logagent_options opts; /* buffer_bytes, block_timeout_ms (0 when unset: the defaults) */
    size_t max_record;     /* 0: the default */
    int exit_flush_ms;     /* -1: the default */
} la_env;

/* Reads LOGAGENT_CLIENT_BUFFER_BYTES (1KiB..1GiB), _BLOCK_TIMEOUT_MS (0..1h, -1 or "forever": wait as long as it
 * takes), _MAX_RECORD_BYTES (64..64MiB) and _EXIT_FLUSH_TIMEOUT_MS (0..1h): sizes as 65536, 64KiB, 4MiB; durations
 * as 250, 250ms, 5s, 2m; blank means unset. An unknown LOGAGENT_CLIENT_* variable is reported once on stderr and
 * ignored. Returns 0, or -1 with "invalid value 'TEXT' in NAME: …" in err. */
int la_env_read(la_env *e, char *err, size_t errlen);

#endif
