/* otlp_in.h — OTLP/HTTP logs ingest's bodies (`POST /v1/logs`): an ExportLogsServiceRequest, as protobuf
 * (application/x-protobuf) or as OTLP's JSON encoding (application/json), turned into records (msgpack maps), one per
 * LogRecord, handed to the same callback as the HTTP/JSON ingest's entries (http_json.h) so that every record takes
 * the one admission path. No libevent: http_ingest.c routes the request here, the unit test and the fuzz target call
 * it directly.
 *
 * The mapping (docs/interop.md, "OTLP in"):
 *   message       body: a string as it is; absent → ""; any other AnyValue → its JSON form (as OTLP's JSON writes it)
 *   service_name  the resource's service.name (a string)
 *   level         severity_text when not empty, else severity_number's name (1–4 TRACE, 5–8 DEBUG, 9–12 INFO,
 *                 13–16 WARN, 17–20 ERROR, 21–24 FATAL), else absent (INFO)
 *   trace_id      trace_id's 16 bytes as 32 lowercase hex digits; span_id: 8 bytes, 16 digits; empty or all zero →
 *                 absent; another length → the record is refused (invalid_record)
 *   timestamp     time_unix_nano, else observed_time_unix_nano, else absent (the receive time)
 *   log_id        made from a hash of the request's bytes and the record's index in it: the same request sent
 *                 again (a retry) gives the same log_ids, so the service keeps one of each
 *   metadata      the record's attributes with their types (string, bool, int, double, bytes, array, kvlist), then
 *                 the resource's other attributes (a record attribute of the same key wins); an attribute whose key is
 *                 a field name above is kept as `attributes.<key>`
 * JSON: field names in lowerCamelCase or snake_case; 64-bit integers as numbers or decimal strings; ids as hex;
 * bytes as base64; severityNumber as a number or its enum name. */
#ifndef LOGAGENT_OTLP_IN_H
#define LOGAGENT_OTLP_IN_H

#include "ingest/http_json.h"

#include <stddef.h>

enum otlp_in_format { OTLP_IN_PROTOBUF = 0, OTLP_IN_JSON = 1 };

/* Splits body[0..len) into LogRecords and calls fn for each, in order (index counts every LogRecord of the
 * request). A record that cannot be one (a trace_id of the wrong length, a body nested deeper than 32) is handed
 * to fn with status HTTP_JSON_INVALID and its reason. Returns the number of records handed to fn; -EINVAL when the
 * body is refused as a whole (not the format's syntax: fn not called; *err says why); -ENOMEM; or fn's negative
 * return. */
int otlp_in_parse(const char *body, size_t len, enum otlp_in_format fmt, http_json_fn fn, void *arg,
                  http_json_error *err);

#endif
