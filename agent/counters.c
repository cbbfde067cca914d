/* counters.c — the table counters.h names: the HTTP status codes http_stats.responses counts, in its order. Here
 * and not in stats.c so that the HTTP ingest, which counts by it, does not link against the stats reader. */
#include "counters.h"

const int stats_http_codes[STATS_HTTP_CODE_N] = {200, 400, 403, 404, 405, 413, 415, 429, 500, 503};
