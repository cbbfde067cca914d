/* pack.h — msgpack encoding of one liblogagent record (internal to the library).
 *
 * The encoder never allocates: it writes into a caller buffer and, like snprintf, returns the size the
 * whole record needs, so a caller can retry with a bigger buffer when the first one was too small. */
#ifndef LOGAGENT_PACK_H
#define LOGAGENT_PACK_H

#include <stddef.h>
#include <stdint.h>

#include "logagent.h"

/* Sentinel returned by la_pack_record when a string is longer than msgpack's str32 can carry. */
#define LA_PACK_TOO_BIG ((size_t)-1)

/* Encodes r as one msgpack map (docs/protocol.md): message, level (NULL: "INFO"), service_name, trace_id
 * and span_id when non-NULL, log_id, timestamp (ts, int unix ns), then each field with its natural type.
 * A field named like one of those keys is left out when the library writes that key itself, and only
 * the first such field is kept otherwise (so a map never repeats a core key). "timestamp" is the one
 * core key a field can supply: when r->timestamp_unix_nano == 0 and a field "timestamp" exists (an RFC
 * 3339 string, float seconds...), that field is the record's timestamp and ts is not written. Other
 * repeated field keys are sent as given, and so are keys starting with '_' (the agent drops and counts
 * them as reserved_key).
 * Arguments must have been validated (message and every key non-NULL, every type known).
 * Writes at most cap bytes to buf and returns the full encoded size (> cap means buf was too small and
 * its contents are unusable), or LA_PACK_TOO_BIG. */
size_t la_pack_record(unsigned char *buf, size_t cap, const logagent_record *r, const char *log_id,
                      int64_t ts);

#endif
