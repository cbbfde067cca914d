/* ref_forward.h — the Fluent Forward mapping as it was before forward.c read messages in place (commit f387904,
 * agent/ingest/forward.h, names prefixed ref_): msgpack-c objects in, event objects out, each event then packed
 * back by record_encode. Kept only as fuzz_forward's oracle: the raw-bytes forward.c must hand out events that
 * encode to the same bytes, with the same verdicts. Not built into the agent. */
#ifndef LOGAGENT_REF_FORWARD_H
#define LOGAGENT_REF_FORWARD_H

#include <msgpack.h>
#include <stddef.h>
#include <stdint.h>

#define REF_FORWARD_MAX_MESSAGE_KEYS 8

typedef struct ref_forward_opts {
    const char *message_keys[REF_FORWARD_MAX_MESSAGE_KEYS]; /* tried in order; borrowed */
    unsigned n_message_keys;
    size_t max_inflated; /* CompressedPackedForward: the decompressed entries may be at most this many bytes */
    size_t max_record;   /* one event's [time, record] may be at most this many bytes of msgpack (as a native
                          * record); a larger one is refused alone (-EMSGSIZE) */
} ref_forward_opts;

enum ref_forward_mode { REF_FORWARD_MESSAGE = 1, REF_FORWARD_FORWARD, REF_FORWARD_PACKED, REF_FORWARD_COMPRESSED };

typedef struct ref_forward_iter {
    const ref_forward_opts *opts;
    int mode;
    msgpack_object tag;          /* a str */
    const msgpack_object *chunk; /* the option map's `chunk`, NULL when none: answer {"ack": chunk} when done */
    const msgpack_object *opt_meta; /* Message mode: the option map's `metadata` (a map), NULL when none */
    const msgpack_object *single_time, *single_record; /* Message mode */
    const msgpack_object *entries; /* Forward mode: the entries array */
    uint32_t next_entry;           /* Forward mode: index; Message mode: 0 or 1 */
    const char *packed;            /* Packed modes: the concatenated entries (borrowed or `inflated`) */
    size_t packed_len, packed_off;
    char *inflated;                /* owned: CompressedPackedForward's decompressed entries */
    msgpack_unpacked entry;        /* Packed modes: the entry being handed out */
    msgpack_object_kv *kv;         /* owned: the built map's pairs */
    size_t kv_cap;
    int64_t ts_ns;                 /* the built map's timestamp value */
    char time_text[24];            /* the built map's timestamp as text, for a time out of range (forward.c) */
} ref_forward_iter;

/* Fills o with the default message keys (message, log, msg) and max_inflated = 8 * max_record, max_record. */
void ref_forward_opts_default(ref_forward_opts *o, size_t max_record);

/* Parses a comma-separated key list ("message,log,msg") into o->message_keys, pointing into `buf` (which it
 * modifies and the caller keeps alive). Returns 0, or -EINVAL for an empty list, an empty key or too many keys. */
int ref_forward_opts_parse_keys(ref_forward_opts *o, char *buf);

void ref_forward_iter_init(ref_forward_iter *it, const ref_forward_opts *opts);
/* Frees what the iterator owns (it stays usable for ref_forward_begin). */
void ref_forward_iter_reset(ref_forward_iter *it);
void ref_forward_iter_free(ref_forward_iter *it);

/* Starts on one top-level array. Returns 0 (events follow), -EINVAL when it is not a Forward message (skip it,
 * invalid_record), -EBADMSG for compressed entries that do not inflate (invalid_record), -EMSGSIZE when they
 * inflate past opts->max_inflated (oversized), -ENOMEM. On error the iterator holds nothing. */
int ref_forward_begin(ref_forward_iter *it, const msgpack_object *arr);

/* The next event as a native record map in *out (valid until the next call or reset). Returns 1 for an event,
 * 0 when there are no more, -EINVAL for an entry that is not [time, record] or [[time, map], record] with a
 * map record and a number or ext time (skip it, invalid_record;
 * calling again goes on with the next one, except in packed modes where bytes that are not msgpack, or a
 * truncated entry, end the message), -EMSGSIZE for an event over opts->max_record bytes (skip it, oversized;
 * calling again goes on with the next one), -ENOMEM. Every call makes progress: at most one call per entry (a
 * packed entry: per entry that starts) plus the final 0. */
int ref_forward_next(ref_forward_iter *it, msgpack_object *out);

/* True while ref_forward_begin succeeded and ref_forward_next has not returned 0 yet. */
int ref_forward_active(const ref_forward_iter *it);

/* Converts an event time (int seconds, EventTime ext 0, float seconds) to unix ns. Returns 0, or -EINVAL for
 * anything else, a time before 1970, past int64 ns (2262), or EventTime nanoseconds >= 10^9. */
int ref_forward_time_ns(const msgpack_object *t, int64_t *out_ns);

/* Packs {"ack": chunk} into buf. Returns its length, or 0 when it does not fit in cap. */
size_t ref_forward_pack_ack(const msgpack_object *chunk, char *buf, size_t cap);

#endif
