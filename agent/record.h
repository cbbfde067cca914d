/* record.h — maps one decoded msgpack record to the bytes of a logagent.v1.WriteLogRequest.
 *
 * This is the original client's classification (docs/protocol.md, "Keys"): message, service_name,
 * level, trace_id, span_id and log_id are fields; timestamp is parsed from its four accepted forms; every
 * other key goes to metadata in its text form; `_`-keys are dropped; `source` comes from the caller (the
 * kernel's peer credentials), never from the record. The result is encoded once, here, and travels
 * through the ring and into batches without being re-encoded. */
#ifndef LOGAGENT_RECORD_H
#define LOGAGENT_RECORD_H

#include <msgpack.h>
#include <stddef.h>
#include <stdint.h>

/* Who sent the record: filled by ingest from SO_PEERCRED and /proc at accept time. */
typedef struct record_source {
    int32_t pid;
    uint32_t uid;
    uint32_t gid;
    char comm[32];
    const char *hostname; /* borrowed, NUL-terminated */
    const char *cgroup;       /* --trusted-fields: borrowed, NUL-terminated, or NULL */
    const char *container_id; /* likewise */
    const uint8_t *wire;      /* the fields above as their entries' RecordSource field (record_source_wire), kept by
                               * the source's owner as long as the source; NULL: record_write encodes them per record */
    size_t wire_len;
} record_source;

/* src's RecordSource field as record_write puts it in an entry (tag, length, submessage) into buf (cap bytes):
 * its length, or 0 when there is none (nothing to send) or it does not fit. A source that sends many records (a
 * connection) points its `wire` at these bytes once its fields are final: each entry then copies them rather than
 * measures and encodes the fields (a change to the fields afterwards needs the wire made again, or NULL). */
size_t record_source_wire(const record_source *src, uint8_t *buf, size_t cap);

/* What the mapping noticed about one record, for the counters. */
typedef struct record_info {
    uint32_t reserved_keys; /* `_`-keys dropped */
    int level_unknown;      /* level kept as sent */
    int timestamp_unparsed; /* a timestamp that did not parse, kept in metadata */
    int utf8_repaired;      /* invalid UTF-8 replaced with U+FFFD */
    const char *service;    /* the record's service_name (its text form; valid UTF-8), NULL when absent; borrowed: */
    size_t service_len;     /* valid until the next record_encode on this encoder, or until the object is freed */
    const char *log_id;     /* the record's log_id as encoded (sent, or made here when absent); set on success only; */
    size_t log_id_len;      /* borrowed like `service` */
    size_t wire_len;        /* record_encode_raw: the record map's size in bytes, once read to its end (else 0) */
    int nesting;            /* record_encode_raw, on success: containers on its deepest path (the map counts 1) */
} record_info;

typedef struct record_span {
    const char *ptr; /* into the msgpack data, or NULL: then `off` is into the encoder's text buffer */
    size_t off;
    size_t len;
} record_span;

typedef struct record_kv {
    record_span key;
    record_span val;
    char type;     /* its msgpack type as a RECORD_T_* tag */
    uint32_t wire; /* the MetadataEntry's size in the entry (key and value fields), set when the entry is planned */
} record_kv;

/* Metadata types for `--upstream-protocol otlp` (record_enc.typed). The entry then carries, in field
 * RECORD_F_META_TYPES (a number WriteLogRequest does not use, so protobuf parsers skip it), one tag byte per
 * metadata entry in the order the entries are encoded, trailing RECORD_T_STRING tags left out; no field at all
 * when every value is a string. Without `typed` the field is never written: the native upstream receives
 * exactly proto/logagent/v1/log_service.proto's WriteLogRequest. otlp.c reads it to send typed OTLP attribute values (docs/protocol.md). */
enum { RECORD_F_META_TYPES = 100 };
enum record_type {
    RECORD_T_STRING = 's', /* str, ext (base64 of its data), and a uint beyond int64 (its decimal text) */
    RECORD_T_INT = 'i',    /* int that fits int64: decimal text */
    RECORD_T_DOUBLE = 'f', /* float32/64: shortest text, NaN / Infinity / -Infinity */
    RECORD_T_BOOL = 'b',   /* "true" / "false" */
    RECORD_T_NIL = 'n',    /* "" */
    RECORD_T_MAP = 'm',    /* compact JSON object */
    RECORD_T_ARRAY = 'a',  /* compact JSON array */
    RECORD_T_BIN = 'x',    /* base64 */
};

enum { RECORD_TAKEN_N = 7 };

/* The fields of one record as classified (record.c): spans into its bytes or the encoder's text. */
typedef struct record_fields {
    record_span service, level, message, trace, span, log_id;
    int has_message, has_level, has_log_id;
    int64_t ts;
    const uint8_t *taken[RECORD_TAKEN_N]; /* where the pair each field was taken from starts (a repeat: metadata) */
} record_fields;

/* Reusable encoder state: owns its buffers, grows them as needed, never shrinks below what was used. */
typedef struct record_enc {
    uint8_t *out; /* the encoded WriteLogRequest after record_encode */
    size_t out_len, out_cap;
    char *text; /* converted values (numbers, JSON, base64, repaired UTF-8) */
    size_t text_len, text_cap;
    record_kv *kv;
    size_t n_kv, kv_cap;
    uint64_t rng[2]; /* log_id generator state */
    uint8_t *packed; /* record_encode: the object packed back to msgpack bytes for record_encode_raw */
    size_t packed_len, packed_cap;
    size_t text_limit; /* 0: none; else converted text beyond it makes record_encode return -E2BIG */
    int typed;         /* set by ingest when the upstream is OTLP: also write RECORD_F_META_TYPES */
    int out_pending;   /* record_prepare_raw: the entry (out_len bytes) is planned, not written: record_write */
    record_fields f;   /* the record last classified, and what record_write needs to write it: */
    const record_source *src;
    size_t n_types, comm_len, host_len, src_len; /* src_len: the source's submessage; 0 when it has a wire */
    int nesting; /* the walk so far: deepest nesting of containers seen */
} record_enc;

/* Initialises an encoder (seeds its log_id generator from getrandom). Returns 0 or -errno. */
int record_enc_init(record_enc *e);
void record_enc_free(record_enc *e);

/* Encodes the msgpack record in data[0..len) as a WriteLogRequest into e->out / e->out_len: the ingest path, one
 * walk over the bytes the client sent. Returns as record_encode; a value cut short or malformed (0xc1) is -EINVAL.
 * The strings info borrows point into data (or into e's buffers). Bytes after the record map are not read. */
int record_encode_raw(record_enc *e, const void *data, size_t len, const record_source *src, int64_t now_ns,
                      record_info *info);

/* record_encode_raw without the writing, for an encoder writing straight into the ring: classifies the record and
 * sizes its entry (e->out_len), sets e->out_pending, and writes nothing; record_write then writes the entry where
 * the caller wants it (a ring reservation of e->out_len bytes). Returns as record_encode_raw (never -ENOMEM for the
 * entry's own bytes: there are none). e, data and src must stay as they are until record_write. */
int record_prepare_raw(record_enc *e, const void *data, size_t len, const record_source *src, int64_t now_ns,
                       record_info *info);

/* A key a record in parts keeps under another name (record_parts). */
typedef struct record_rename {
    const char *from, *to;
    size_t from_len, to_len;
} record_rename;

/* A record given in parts: fields its caller has read already, then the pairs of a map — a Fluent Forward event
 * (forward.c), whose tag and time are not among its record's pairs. record_prepare_parts plans exactly the entry
 * record_prepare_raw plans for the map {"service_name": service, "timestamp": ts_ns, "message": the message (or ""),
 * [extra_key: extra,] then every pair but the message's, a pair whose str key is a rename's `from` under its `to`},
 * where the message is the first pair with a str value under the first of message_keys that has one
 * (test_forward and fuzz_forward compare the two byte for byte), in one walk over the pairs where they are. */
typedef struct record_parts {
    const char *service;     /* the service_name's text (UTF-8 checked as a str value's) */
    size_t service_len;
    int64_t ts_ns;           /* the timestamp, >= 0 */
    const uint8_t *extra, *extra_end; /* a value's msgpack bytes kept as metadata under extra_key, or NULL */
    const char *extra_key;
    const uint8_t *pairs, *end; /* the map's n pairs start at pairs, somewhere before end (every length checked) */
    uint32_t n;
    const char *const *message_keys; /* in order of preference; n_message_keys of them */
    const size_t *message_key_lens;
    unsigned n_message_keys;
    const record_rename *renames;
    unsigned n_renames;
    uint64_t message_lens, rename_lens; /* bit min(n, 63) set when a message key / a rename's `from` has n bytes: a key
                                         * of another length is not compared (record_parts_lens sets them) */
} record_parts;

/* The bit of a key length in record_parts' message_lens and rename_lens. */
static inline uint64_t record_len_bit(size_t n) { return (uint64_t)1 << (n < 63 ? n : 63); }

/* record_prepare_raw for a record in parts (above); record_write writes it. r and the bytes it points to must stay
 * as they are until record_write. Returns as record_prepare_raw, or -EAGAIN for a message key that names a field or
 * a reserved key (encode the map instead). On success info->wire_len is the pairs' size in bytes (where they end)
 * and info->nesting the containers on the deepest path (the map counts 1). */
int record_prepare_parts(record_enc *e, const record_parts *r, const record_source *src, record_info *info);

/* Writes the entry record_prepare_raw planned (or record_encode_raw wrote into e->out) into dst: e->out_len bytes,
 * no allocation, no system call, cannot fail. Returns the bytes written (e->out_len). */
size_t record_write(const record_enc *e, uint8_t *dst);

/* Encodes `obj` as a WriteLogRequest into e->out / e->out_len (packs it to bytes, then record_encode_raw: for the
 * paths that build objects — Fluent Forward events, HTTP/JSON entries, tests).
 * Returns 0; -EINVAL when the object is not a map or has no string `message` (invalid_record); -E2BIG when its
 * converted text passes e->text_limit (oversized);
 * -ENOMEM when a buffer could not grow. `now_ns` is the receive time used when the record has none.
 * The record's strings are copied: obj may be freed right after. */
int record_encode(record_enc *e, const msgpack_object *obj, const record_source *src, int64_t now_ns,
                  record_info *info);

/* Exposed for the tests: RFC 3339 text -> unix ns. Returns 0 or -EINVAL. */
int record_parse_rfc3339(const char *s, size_t n, int64_t *out_ns);

#endif
