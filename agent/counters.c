/* counters.c — the table counters.h names: the HTTP status codes http_stats.responses counts, in its order. Here
 * and not in stats.c so that the HTTP ingest, which counts by it, does not link against the stats reader. */
#include "counters.h"

const int stats_http_codes[STATS_HTTP_CODE_N] = {200, 400, 403, 404, 405, 413, 415, 429, 500, 503};
const int stats_grpc_codes[STATS_GRPC_CODE_N] = {0, 3, 8, 12, 13, 14};
const char *const stats_grpc_code_names[STATS_GRPC_CODE_N] = {"OK",            "INVALID_ARGUMENT", "RESOURCE_EXHAUSTED",
                                                              "UNIMPLEMENTED", "INTERNAL",         "UNAVAILABLE"};
