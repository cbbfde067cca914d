/* forward.h — the Fluent Forward protocol (v1) on the ingest socket: one top-level msgpack array (its bytes) in, the
 * native record maps it stands for out, one event at a time.
 *
 * Modes (told apart by the second element): Message `[tag, time, record(, option)]`, Forward
 * `[tag, [entry, ...](, option)]`, PackedForward `[tag, bin|str of concatenated entries(, option)]` and
 * CompressedPackedForward (option `compressed: "gzip"`, the packed entries gzip-compressed). An entry is
 * `[time, record]`, or Fluent Bit's v2 event `[[time, metadata], record]` (metadata a map, usually empty); a v2
 * entry whose time is EventTime 0xffffffff.0 or 0xfffffffe.0 is Fluent Bit's group start/end marker, not an event:
 * skipped. Time is integer seconds, EventTime (ext type 0: big-endian u32 seconds, u32 nanoseconds) or float
 * seconds, never before 1970.
 *
 * Each event becomes the map a native client would send: service_name = tag, timestamp = the event time in unix
 * ns, message = the first of the configured message keys whose value is a string ("" when none is), then
 * forward_metadata = the event's metadata map when it is not empty (a v2 entry's, or in Message mode the
 * option's `metadata`, where Fluent Bit puts it), and every other record key as it is, except that the record's
 * own keys the mapping sets (`service_name`, `timestamp`, `message` when another key is the message, and
 * `forward_metadata` when set) are kept as `record_<key>`. A time that is a number or ext but not a valid time
 * (negative, out of range, NaN, nanoseconds >= 10^9, another ext) does not drop the event: it is handed on as
 * `timestamp` as sent (a positive integer beyond range as its decimal text), which record_encode reads as a
 * native timestamp: kept as metadata, the receive time used.
 *
 * forward.c reads the message's own bytes (mpread.h: every length bounded, no object tree) and hands each event out
 * as the msgpack bytes of that map, written into the iterator's buffer: a small header and the mapped keys, then
 * the record's pairs copied as sent — so the caller encodes it with record_encode_raw, the native records'
 * classifier. With `lazy` set (ingest's hot path), an event whose time is a valid time is handed out in parts
 * instead, before its record is walked (it->parts: the tag, the time in ns, the record's pairs where they are, the
 * message keys, the keys to rename): record_prepare_parts finds the message and classifies the pairs in one walk,
 * the same entry without the map being written or read again, and forward_settle moves on (or hands the entry out
 * again as its map when it was not plain). Only the option map's `chunk` is decoded by msgpack-c (for the ack).
 *
 * No libevent here: unit tests and fuzz targets drive it directly. A forward_iter borrows the message's bytes: the
 * caller keeps them in place (the decoder pinned) until forward_iter_reset or the iteration ends. */
#ifndef LOGAGENT_FORWARD_H
#define LOGAGENT_FORWARD_H

#include "record.h"

#include <msgpack.h>
#include <stddef.h>
#include <stdint.h>

#define FORWARD_MAX_MESSAGE_KEYS 8

typedef struct forward_opts {
    const char *message_keys[FORWARD_MAX_MESSAGE_KEYS]; /* tried in order; borrowed */
    unsigned n_message_keys;
    size_t message_key_lens[FORWARD_MAX_MESSAGE_KEYS]; /* their lengths (set with them) */
    size_t max_inflated; /* CompressedPackedForward: the decompressed entries may be at most this many bytes */
    size_t max_record;   /* one event's [time, record] may be at most this many bytes of msgpack (as a native
                          * record); a larger one is refused alone (-EMSGSIZE) */
} forward_opts;

enum forward_mode { FORWARD_MESSAGE = 1, FORWARD_FORWARD, FORWARD_PACKED, FORWARD_COMPRESSED };

typedef struct forward_iter {
    const forward_opts *opts;
    int mode;
    const uint8_t *tag;          /* the tag's msgpack bytes (a str, header included) */
    size_t tag_len;
    const char *tag_str;         /* its text and length */
    uint32_t tag_str_len;
    const msgpack_object *chunk; /* the option map's `chunk`, NULL when none: answer {"ack": chunk} when done */
    msgpack_unpacked opt;        /* `chunk` decoded by msgpack-c (its zone) */
    const uint8_t *opt_meta;     /* Message mode: the option map's `metadata` (a map's bytes), NULL when none */
    size_t opt_meta_len;
    const uint8_t *single_time, *single_record; /* Message mode: the time's and the record's bytes */
    size_t single_time_len, single_record_len;
    const uint8_t *cur, *end;      /* Forward mode: the next entry, the end of the message's bytes */
    uint32_t entries_left;         /* Forward mode: entries not handed out; Message mode: 1, then 0 */
    const char *packed;            /* Packed modes: the concatenated entries (borrowed or `inflated`) */
    size_t packed_len, packed_off;
    char *inflated;                /* owned: CompressedPackedForward's decompressed entries */
    uint8_t *ev;                   /* owned: the event handed out, as a msgpack map */
    size_t ev_cap;
    int deep;                      /* the entry just read had a container inside a value (forward.c) */
    int lazy;                      /* set by the caller (kept by forward_iter_reset): events in parts when they can be */
    record_parts parts;            /* the event handed out in parts (into the message's bytes): record_prepare_parts */
    int lazy_pending;              /* it was, and forward_settle has not been called yet */
    int redo;                      /* forward_settle sent it back: the next event is that entry, as its map */
    const uint8_t *lazy_at, *lazy_rp; /* the pending entry's first byte, its record map's first byte */
    size_t lazy_sent;              /* its entry's bytes but the record's (event's max_record measure) */
    uint64_t message_lens;         /* the message keys' lengths (record_parts.message_lens), from opts at init */
} forward_iter;

/* Fills o with the default message keys (message, log, msg) and max_inflated = 8 * max_record, max_record. */
void forward_opts_default(forward_opts *o, size_t max_record);

/* Parses a comma-separated key list ("message,log,msg") into o->message_keys, pointing into `buf` (which it
 * modifies and the caller keeps alive). Returns 0, or -EINVAL for an empty list, an empty key or too many keys. */
int forward_opts_parse_keys(forward_opts *o, char *buf);

void forward_iter_init(forward_iter *it, const forward_opts *opts);
/* Frees what the iterator owns (it stays usable for forward_begin). */
void forward_iter_reset(forward_iter *it);
void forward_iter_free(forward_iter *it);

/* Starts on one top-level array: the msgpack bytes msg[0..len) (one value; the caller keeps them in place while the
 * iteration lasts). Returns 0 (events follow), -EINVAL when it is not a Forward message (skip it,
 * invalid_record), -EBADMSG for compressed entries that do not inflate (invalid_record), -EMSGSIZE when they
 * inflate past opts->max_inflated (oversized), -ENOMEM. On error the iterator holds nothing. */
int forward_begin(forward_iter *it, const void *msg, size_t len);

/* The next event as the msgpack bytes of a native record map, *map / *len (valid until the next call or reset):
 * the caller encodes them with record_encode_raw. With it->lazy set, *map may be NULL (*len 0): the event is in
 * it->parts, its record not walked yet; the caller classifies it (record_prepare_parts) and calls forward_settle
 * before anything else. Returns 1 for an event, 0 when there are no more, -EINVAL for an
 * entry that is not [time, record] or [[time, map], record] with a map record and a number or ext time (skip it,
 * invalid_record; calling again goes on with the next one, except in packed modes where bytes that are not
 * msgpack, or a truncated entry, end the message), -EMSGSIZE for an event over opts->max_record bytes (skip it,
 * oversized; calling again goes on with the next one), -ENOMEM (the event could not be built; calling again goes
 * on with the next one). Every call makes progress: at most one call per entry (a packed entry: per entry that
 * starts) plus the final 0. */
int forward_next(forward_iter *it, const uint8_t **map, size_t *len);

/* After an event handed out in parts: rc and info are record_prepare_parts' answer for it->parts. Returns 0 when
 * that answer stands (the event is the map's, byte for byte: the iterator moves past it), or -EAGAIN when the event
 * must be taken as its map (the next forward_next hands the same entry out again, as its map or as its verdict):
 * a record with a container inside (a packed entry then needs mpscan's verdict first), one over max_record, one
 * record_prepare_parts did not encode (its map gives the authoritative verdict). 0 when nothing is pending. */
int forward_settle(forward_iter *it, int rc, const record_info *info);

/* True while forward_begin succeeded and forward_next has not returned 0 yet. */
int forward_active(const forward_iter *it);

/* Converts an event time, the msgpack value t[0..len) (int seconds, EventTime ext 0, float seconds), to unix ns.
 * Returns 0, or -EINVAL for anything else, a time before 1970, past int64 ns (2262), or EventTime nanoseconds
 * >= 10^9. */
int forward_time_ns(const void *t, size_t len, int64_t *out_ns);

/* Packs {"ack": chunk} into buf. Returns its length, or 0 when it does not fit in cap. */
size_t forward_pack_ack(const msgpack_object *chunk, char *buf, size_t cap);

#endif
