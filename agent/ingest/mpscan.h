/* mpscan.h — a resumable msgpack stream guard that runs over raw bytes before msgpack-c sees them.
 *
 * msgpack-c's unpacker trusts lengths: a 5-byte map32 header makes it allocate for four billion entries,
 * and a str32 header makes it buffer up to 4 GiB. The scanner walks only the structure of the stream (type
 * headers, lengths, container counts), never allocates, resumes across any split of the input, and says
 * where records end — so the ingest stage can refuse a record that is, or announces itself as, larger than
 * max_record_bytes, or nested deeper than msgpack-c can decode, before a single byte of it is buffered.
 *
 * A top-level ARRAY (a Fluent Forward message, forward.h) has its own, larger byte limit (max_array,
 * --forward-max-message-bytes): Fluent Bit and fluentd send a whole buffer chunk (2-8 MiB) as one message. Its
 * events are held to max_record_bytes one by one by forward.c. Every record also has an item budget: the items its
 * containers announce, together (msgpack-c allocates ~24 bytes per announced item before any arrives). A native
 * record can announce at most max_record items (each takes >= 1 byte, so that is implied by its size); an array
 * at most max(max_record, max_array / 16) items, so msgpack-c's memory for it stays within ~1.5 x max_array. */
#ifndef LOGAGENT_MPSCAN_H
#define LOGAGENT_MPSCAN_H

#include <stddef.h>
#include <stdint.h>

#define MPSCAN_MAX_DEPTH 32 /* msgpack-c's own nesting limit (MSGPACK_EMBED_STACK_SIZE) */

enum mpscan_result {
    MPSCAN_OK = 0,
    MPSCAN_MALFORMED = -1, /* 0xc1, or a container (even an empty one) inside MPSCAN_MAX_DEPTH open ones */
    MPSCAN_OVERSIZED = -2, /* a record larger than max_record, or a header announcing one */
    MPSCAN_MORE = 1        /* mpscan_whole: the record does not end in the bytes given */
};

typedef struct mpscan {
    uint64_t stack[MPSCAN_MAX_DEPTH]; /* items still expected in each open container */
    int depth;
    uint8_t hdr[9]; /* the type header being collected */
    uint8_t hdr_have, hdr_need;
    uint64_t skip;      /* payload bytes still to pass over */
    uint64_t rec_bytes; /* the current record so far: bytes seen, announced payloads, 1 per announced item to come */
    uint64_t rec_items; /* items announced by the current record's containers so far */
    uint64_t max_record, max_array;  /* byte limits of a record, of a top-level array */
    uint64_t max_items, array_items; /* item budgets of a record, of a top-level array */
    uint64_t cur_max, cur_items;     /* the limits of the current record (set by its first header) */
    int in_array;       /* the current (or refused) record is a top-level array */
    uint64_t records;   /* complete top-level objects seen */
} mpscan;

/* Every top-level object, arrays included, within max_record bytes and max_record items. */
void mpscan_init(mpscan *s, uint64_t max_record);

/* Top-level arrays may then be max_array bytes (>= max_record) and announce max(max_record, max_array / 16)
 * items. Call before the first feed. */
void mpscan_set_array_limit(mpscan *s, uint64_t max_array);

/* Scans n more bytes of the stream. Returns MPSCAN_OK, or an error; on error *good is set to the number of
 * leading bytes of p that belong to records before the bad one (those are safe to decode), and the scanner
 * must not be fed again. On success *good = n. */
int mpscan_feed(mpscan *s, const uint8_t *p, size_t n, size_t *good);

/* Like mpscan_feed, but stops right after the first record that ends in p: *used = the bytes up to its end (or n
 * when none ends there; then s->records did not move). On error *used = 0. */
int mpscan_feed_one(mpscan *s, const uint8_t *p, size_t n, size_t *used);

/* mpscan_feed_one's fast path, for a scanner between records (!mpscan_mid_record): when a whole record is in p, it
 * is walked with the scanner's state in registers — the same checks in the same order, so the same verdict — and
 * MPSCAN_OK returned with *used = its size (s->records counts it). An error is returned as mpscan_feed_one would
 * (the scanner must not be fed again). MPSCAN_MORE when p ends inside the record: s is unchanged, feed the same
 * bytes to mpscan_feed_one. */
int mpscan_whole(mpscan *s, const uint8_t *p, size_t n, size_t *used);

/* True when the stream stops inside a record (a client that disconnects now truncated one). */
int mpscan_mid_record(const mpscan *s);

/* The verdict mpscan_whole would give a record, between records, that another walk has already read whole and found
 * well-formed (no 0xc1, every length within the bytes, ending after len bytes), given the deepest nesting of its
 * containers (the top-level one counting 1): MPSCAN_OK (and it counts the record) when it passes the limits; else
 * nothing is decided (MPSCAN_MORE: scan it). It is the same verdict because the record's running size — bytes read
 * plus announced payloads plus one per announced item to come — never decreases and ends at len, and its items,
 * each at least a byte, number fewer than len: only the size, the nesting, 0xc1 and the end can refuse such a
 * record. For a top-level map: a top-level array (a Forward message) has its own limits and is always scanned. */
static inline int mpscan_walked(mpscan *s, const uint8_t *p, uint64_t len, int nesting)
{
    int map = (p[0] >= 0x80 && p[0] <= 0x8f) || p[0] == 0xde || p[0] == 0xdf;
    if (!map || len > s->max_record || len > s->max_items || nesting > MPSCAN_MAX_DEPTH || mpscan_mid_record(s))
        return MPSCAN_MORE;
    s->in_array = 0;
    s->records++;
    return MPSCAN_OK;
}

#endif
