/* http_json.h — the HTTP ingest's request bodies (JSON) turned into records (msgpack maps), with no libevent: the
 * pure half of the HTTP ingest, called by http_ingest.c, by the unit test and by the fuzz target.
 *
 * An entry is the original Django service's write_log body, one JSON object:
 *   {"message": str (required), "service_name": str, "level": str, "trace_id": str, "span_id": str, "log_id": str,
 *    "timestamp": number|str, "metadata": {...any JSON...}, any other key: any JSON}
 * It becomes one msgpack map that means the same on the native socket (docs/protocol.md), so record_encode classifies
 * it exactly like a socket record: the direct fields as they are (null means absent), then every other top-level key,
 * then `metadata`'s keys, all as keys of the one map — as write_log(message, ..., **metadata) did. A key given both at
 * the top level and in `metadata` is refused (Python refuses it too). Strings, integers, reals, booleans and null map
 * to their msgpack types; arrays and objects to msgpack arrays and maps (record_encode writes them as JSON text).
 *
 * A body is either one entry (HTTP_JSON_ONE, /api/write_log/) or many (HTTP_JSON_MANY, /api/write_logs/): a JSON array
 * of entries when its first non-blank byte is `[`, else one JSON object, else NDJSON (one entry per line; blank lines
 * skipped). The Content-Type is not consulted.
 *
 * Errors come in two sizes. A body that cannot be split into entries is refused as a whole: empty, not JSON (for
 * many: an array with a syntax error), or for many a JSON value that is neither an object nor an array. An entry that
 * is bad is handed to the callback with its error, and the other entries go on: an NDJSON line that is not JSON, not
 * an object (for one: the body's single JSON value), a missing or non-string message, a wrong type, nesting deeper
 * than 32. Every error text names the problem; syntax errors carry jansson's text with the line and column. */
#ifndef LOGAGENT_HTTP_JSON_H
#define LOGAGENT_HTTP_JSON_H

#include <msgpack.h>
#include <stddef.h>

#define HTTP_JSON_MAX_DEPTH 32 /* containers open at once in one record, as on the socket (mpscan) */
#define HTTP_JSON_ERROR_MAX 320

enum http_json_mode { HTTP_JSON_ONE = 0, HTTP_JSON_MANY = 1 };

/* Why something was refused: the same reasons the socket counts. */
enum http_json_status {
    HTTP_JSON_OK = 0,
    HTTP_JSON_MALFORMED = 1, /* not JSON (or nested too deep): counted `malformed` */
    HTTP_JSON_INVALID = 2,   /* JSON, but not a record (not an object, no string message, a wrong type): `invalid_record` */
};

typedef struct http_json_entry {
    size_t index;                 /* 0-based: array element, or NDJSON entry (blank lines not counted) */
    size_t line;                  /* NDJSON: 1-based line of the body the entry is on; 0 for an array or one object */
    int status;                   /* enum http_json_status */
    const msgpack_object *record; /* status OK: the record, a msgpack map; borrowed for the callback's duration */
    const char *error;            /* status not OK: what is wrong, NUL-terminated; borrowed likewise */
} http_json_entry;

/* Called once per entry, in body order. Returns 0 to go on, or a negative value that stops the parse and is returned
 * by http_json_parse. */
typedef int (*http_json_fn)(void *arg, const http_json_entry *e);

/* Why a whole body was refused. */
typedef struct http_json_error {
    int status; /* HTTP_JSON_MALFORMED or HTTP_JSON_INVALID */
    char text[HTTP_JSON_ERROR_MAX];
} http_json_error;

/* Splits body[0..len) (not necessarily NUL-terminated; any bytes) into entries and calls fn for each.
 * Returns the number of entries handed to fn (0 for an empty array); -EINVAL when the body is refused as a whole (fn
 * not called; *err says why); -ENOMEM (also when building an entry fails to allocate: that is never handed to fn as
 * a bad entry, so the caller answers "out of memory" rather than blaming the entry); or fn's negative return.
 * Allocates only while it runs; keeps no state. */
int http_json_parse(const char *body, size_t len, enum http_json_mode mode, http_json_fn fn, void *arg,
                    http_json_error *err);

#endif
