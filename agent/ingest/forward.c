/* forward.c — Fluent Forward protocol messages -> events in parts or native record maps (see forward.h).
 *
 * DESIGN
 * The message's bytes are read where they lie (mpread.h: one header at a time, every length checked against the
 * end, containers passed over without recursion): no object tree. Nothing here trusts a length it has not
 * bounded: the outer array was already bounded by the ingest stage's stream guard (mpscan:
 * --forward-max-message-bytes and an item budget); packed entries are bytes inside it, so each goes through
 * mpscan first (bounded by max_record and its item budget, like a native record: the same verdicts as for a
 * native record); compressed entries inflate into a buffer of at most opts->max_inflated bytes (a decompression
 * bomb stops there and the message is refused as oversized).
 *
 * Ingest's iterators are lazy (forward.h): a plain-looking event (a valid time, a map record, no v2 metadata) is
 * handed out in parts before its record is walked (event_lazy: the tag, the time, the pairs' start and count, the
 * message keys, the keys to rename), record_prepare_parts finds the message and classifies the pairs in its one walk,
 * and forward_settle moves on past the record — or, for a record that was not plain (a container inside: a packed
 * entry then needs mpscan's verdict first; over max_record; not encoded), rewinds to the entry and sets `redo`, so
 * that the next call hands the same entry out the way below, whose verdicts and map are the reference.
 *
 * Otherwise an event is written as msgpack into the iterator's buffer `ev`: the map header, service_name (the tag's bytes),
 * timestamp, message (the chosen value's bytes), forward_metadata (the metadata map's bytes), then the record's
 * pairs as sent — runs of them copied at once, the chosen message pair left out, a pair whose key the mapping sets
 * written under record_<key>. One walk over the record finds the message and the keys to rename (and its end);
 * record_encode_raw then classifies the event like any native record. Values keep the sender's encoding: the text
 * forms record_encode_raw makes depend on values only, so the encoded record is what packing msgpack-c's objects
 * back gave before.
 *
 * One event larger than max_record (its [time, record] entry as msgpack) is refused alone (-EMSGSIZE) and the
 * iteration goes on: a packed one is skipped by finding its end with a scan bounded by the packed bytes (mpscan
 * never allocates); an inline one (Message, Forward mode) is measured as its minimal msgpack encoding (as before
 * the bytes were read in place: what msgpack-c's objects packed back to), computed only when its bytes as sent
 * pass the limit (the minimal encoding is never longer). A v2 entry's metadata map is part of its entry and counts
 * with it; so does Message mode's option `metadata`. */
#include "ingest/forward.h"

#include "common/gunzip.h"
#include "ingest/mpscan.h"
#include "mpread.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { FORWARD_KEEP_EV = 64 * 1024 }; /* event buffer bytes a connection's iterator keeps between messages */
enum { FORWARD_SKIP = 2 };              /* entry: not an event (a group marker), go on with the next entry */

static const char *const default_keys[] = {"message", "log", "msg"};

void forward_opts_default(forward_opts *o, size_t max_record)
{
    memset(o, 0, sizeof *o);
    for (unsigned i = 0; i < 3; i++) {
        o->message_keys[i] = default_keys[i];
        o->message_key_lens[i] = strlen(default_keys[i]);
    }
    o->n_message_keys = 3;
    o->max_inflated = max_record * 8;
    o->max_record = max_record;
}

int forward_opts_parse_keys(forward_opts *o, char *buf)
{
    unsigned n = 0;
    for (char *p = buf, *k; (k = strsep(&p, ",")) != NULL;) {
        while (*k == ' ')
            k++;
        size_t len = strlen(k);
        while (len && k[len - 1] == ' ')
            k[--len] = '\0';
        if (!len || n == FORWARD_MAX_MESSAGE_KEYS)
            return -EINVAL;
        o->message_key_lens[n] = len;
        o->message_keys[n++] = k;
    }
    if (!n)
        return -EINVAL;
    o->n_message_keys = n;
    return 0;
}

void forward_iter_init(forward_iter *it, const forward_opts *opts)
{
    memset(it, 0, sizeof *it);
    it->opts = opts;
    for (unsigned i = 0; i < opts->n_message_keys; i++)
        it->message_lens |= record_len_bit(opts->message_key_lens[i]);
    msgpack_unpacked_init(&it->opt);
}

void forward_iter_reset(forward_iter *it)
{
    free(it->inflated);
    it->inflated = NULL;
    /* an idle connection keeps nothing large: the option's zone, and a big event's buffer, are given back */
    msgpack_unpacked_destroy(&it->opt);
    msgpack_unpacked_init(&it->opt);
    if (it->ev_cap > FORWARD_KEEP_EV) {
        free(it->ev);
        it->ev = NULL;
        it->ev_cap = 0;
    }
    it->mode = 0;
    it->chunk = NULL;
    it->opt_meta = NULL;
    it->opt_meta_len = 0;
    it->packed = NULL;
    it->packed_len = it->packed_off = 0;
    it->cur = it->end = NULL;
    it->entries_left = 0;
    it->lazy_pending = it->redo = 0;
}

void forward_iter_free(forward_iter *it)
{
    forward_iter_reset(it);
    free(it->ev);
    it->ev = NULL;
    it->ev_cap = 0;
}

int forward_active(const forward_iter *it) { return it->mode != 0; }

/* ---- reading values ----------------------------------------------------------------------------------- */

static int str_is(const mpr_value *v, const char *s, size_t n)
{
    return v->type == MPR_STR && v->len == n && memcmp(v->ptr, s, n) == 0;
}

/* Moves *p past the items of v when it is a container (its header is read already). */
static int skip_items(const mpr_value *v, const uint8_t **p, const uint8_t *end)
{
    if (v->type == MPR_ARRAY)
        return mpr_skip(p, end, v->len);
    if (v->type == MPR_MAP)
        return mpr_skip(p, end, 2 * (uint64_t)v->len);
    return 0;
}

/* Reads one whole value at *p (a container with everything in it) into *v (its header). */
static int read_whole(const uint8_t **p, const uint8_t *end, mpr_value *v)
{
    if (mpr_read(p, end, v) < 0)
        return -EINVAL;
    return skip_items(v, p, end);
}

/* read_whole with the usual headers of a record's keys and values (fixstr, fixint, other integers) read here, for
 * walk_record, twice per pair: it needs their types and ends, not an integer's value (left unset). Takes and
 * returns the cursor (NULL: -EINVAL), so that the walk's stays in a register (only the slow path's copy has its
 * address taken). */
static inline const uint8_t *read_whole_fast(const uint8_t *q, const uint8_t *end, mpr_value *v)
{
    if (q < end && (uint8_t)(*q - 0xcc) < 8) { /* uint 8/16/32/64, int 8/16/32/64 */
        size_t w = (size_t)1 << (*q & 3);
        if ((size_t)(end - q - 1) < w)
            return NULL;
        v->type = *q <= 0xcf ? MPR_UINT : MPR_INT;
        return q + 1 + w;
    }
    if (q < end && *q >= 0xa0 && *q <= 0xbf) {
        size_t n = *q & 0x1f;
        if ((size_t)(end - q - 1) < n)
            return NULL;
        v->type = MPR_STR;
        v->len = (uint32_t)n;
        v->ptr = (const char *)q + 1;
        return q + 1 + n;
    }
    if (q < end && *q <= 0x7f) {
        v->type = MPR_UINT;
        v->v.u = *q;
        return q + 1;
    }
    const uint8_t *t = q;
    return read_whole(&t, end, v) < 0 ? NULL : t;
}

static int is_time(const mpr_value *v)
{
    return v->type == MPR_UINT || v->type == MPR_INT || v->type == MPR_F32 || v->type == MPR_F64 ||
           v->type == MPR_EXT;
}

static int time_ns(const mpr_value *t, int64_t *out_ns)
{
    const int64_t max_s = INT64_MAX / 1000000000 - 1;
    switch (t->type) {
    case MPR_UINT:
        if (t->v.u > (uint64_t)max_s)
            return -EINVAL;
        *out_ns = (int64_t)t->v.u * 1000000000;
        return 0;
    case MPR_F32:
    case MPR_F64: {
        double s = t->v.f;
        if (!isfinite(s) || s > (double)max_s || s < 0)
            return -EINVAL;
        *out_ns = (int64_t)llround(s * 1e9);
        return 0;
    }
    case MPR_EXT: {
        const uint8_t *p = (const uint8_t *)t->ptr;
        if (t->ext_type != 0 || t->len != 8)
            return -EINVAL;
        uint32_t ns = (uint32_t)mpr_be(p + 4, 4);
        if (ns >= 1000000000)
            return -EINVAL;
        *out_ns = (int64_t)mpr_be(p, 4) * 1000000000 + ns;
        return 0;
    }
    default:
        return -EINVAL;
    }
}

int forward_time_ns(const void *t, size_t len, int64_t *out_ns)
{
    const uint8_t *p = t;
    mpr_value v;
    if (mpr_read(&p, p + len, &v) < 0)
        return -EINVAL;
    return time_ns(&v, out_ns);
}

/* ---- the message ----------------------------------------------------------------------------------------- */

/* The option map at *p: its `chunk` (decoded by msgpack-c, for the ack), `compressed` and `metadata`. Returns 0,
 * -EINVAL for an option that is not a map (or nil) or a compression we cannot read, -ENOMEM. */
static int read_option(forward_iter *it, const uint8_t *p, const uint8_t *end, int *gzip)
{
    mpr_value o, k, v;
    const uint8_t *chunk = NULL, *chunk_end = NULL;
    *gzip = 0;
    if (mpr_read(&p, end, &o) < 0)
        return -EINVAL;
    if (o.type == MPR_NIL)
        return 0;
    if (o.type != MPR_MAP)
        return -EINVAL;
    for (uint32_t i = 0; i < o.len; i++) {
        if (read_whole(&p, end, &k) < 0)
            return -EINVAL;
        const uint8_t *vp = p;
        if (read_whole(&p, end, &v) < 0)
            return -EINVAL;
        if (str_is(&k, "chunk", 5)) {
            chunk = vp, chunk_end = p;
        } else if (str_is(&k, "metadata", 8) && v.type == MPR_MAP) { /* Fluent Bit's Message mode: the event's */
            it->opt_meta = vp;
            it->opt_meta_len = (size_t)(p - vp);
        } else if (str_is(&k, "compressed", 10)) {
            if (!str_is(&v, "gzip", 4) && !str_is(&v, "text", 4))
                return -EINVAL; /* a compression we cannot read */
            *gzip = str_is(&v, "gzip", 4);
        }
    }
    if (chunk) {
        size_t off = 0;
        msgpack_unpack_return r = msgpack_unpack_next(&it->opt, (const char *)chunk, (size_t)(chunk_end - chunk), &off);
        if (r == MSGPACK_UNPACK_NOMEM_ERROR)
            return -ENOMEM;
        if (r != MSGPACK_UNPACK_SUCCESS) /* not reached: mpscan vouched for the message */
            return -EINVAL;
        it->chunk = &it->opt.data;
    }
    return 0;
}

/* Inflates gzip data (one member or several concatenated) into it->inflated (common/gunzip.h: at most
 * opts->max_inflated bytes). Returns 0, -EBADMSG, -EMSGSIZE or -ENOMEM. */
static int inflate_entries(forward_iter *it, const char *src, size_t len)
{
    char *out;
    size_t have;
    int rc = gunzip(src, len, it->opts->max_inflated, &out, &have);
    if (rc < 0)
        return rc;
    it->inflated = out;
    it->packed = out;
    it->packed_len = have;
    return 0;
}

/* forward_begin's failure: the iterator holds nothing. */
static int begin_failed(forward_iter *it, int rc)
{
    forward_iter_reset(it);
    return rc;
}

int forward_begin(forward_iter *it, const void *msg, size_t len)
{
    forward_iter_reset(it);
    const uint8_t *p = msg, *end = p + len, *tag = NULL, *second;
    mpr_value a, t, v, r;
    if (mpr_read(&p, end, &a) < 0 || a.type != MPR_ARRAY || a.len < 2 || a.len > 4)
        return -EINVAL;
    tag = p;
    if (mpr_read(&p, end, &t) < 0 || t.type != MPR_STR)
        return -EINVAL;
    second = p;
    if (read_whole(&p, end, &v) < 0)
        return -EINVAL;
    int mode, gzip = 0;
    uint32_t body; /* elements before the option */
    if (is_time(&v)) {
        mode = FORWARD_MESSAGE, body = 3;
        it->single_time = second;
        it->single_time_len = (size_t)(p - second);
        it->single_record = p;
        if (a.len < 3 || read_whole(&p, end, &r) < 0 || r.type != MPR_MAP)
            return begin_failed(it, -EINVAL);
        it->single_record_len = (size_t)(p - it->single_record);
        it->entries_left = 1;
    } else if (v.type == MPR_ARRAY) {
        mode = FORWARD_FORWARD, body = 2;
        it->cur = second;
        it->end = p;
        it->entries_left = v.len;
        if (mpr_read(&it->cur, it->end, &v) < 0) /* to the first entry */
            return begin_failed(it, -EINVAL);
    } else if (v.type == MPR_BIN || v.type == MPR_STR) {
        mode = FORWARD_PACKED, body = 2;
        it->packed = v.ptr;
        it->packed_len = v.len;
    } else {
        return begin_failed(it, -EINVAL);
    }
    if (a.len > body + 1)
        return begin_failed(it, -EINVAL);
    if (a.len == body + 1) {
        int rc = read_option(it, p, end, &gzip);
        if (rc < 0)
            return begin_failed(it, rc);
    }
    if (gzip && mode != FORWARD_PACKED)
        return begin_failed(it, -EINVAL);
    if (mode != FORWARD_MESSAGE)
        it->opt_meta = NULL, it->opt_meta_len = 0; /* only Message mode carries an event's metadata in its option */
    it->tag = tag;
    it->tag_len = (size_t)(second - tag);
    it->tag_str = t.ptr;
    it->tag_str_len = t.len;
    if (gzip) {
        int rc = inflate_entries(it, it->packed, it->packed_len);
        if (rc < 0)
            return begin_failed(it, rc);
        mode = FORWARD_COMPRESSED;
    }
    it->mode = mode;
    return 0;
}

/* ---- one event ------------------------------------------------------------------------------------------- */

/* The keys the mapping sets itself (the last only when the event has metadata), and where a record's own key of
 * that name goes instead. */
static const record_rename renames[4] = {
    {"service_name", "record_service_name", 12, 19},
    {"timestamp", "record_timestamp", 9, 16},
    {"message", "record_message", 7, 14},
    {"forward_metadata", "record_forward_metadata", 16, 23},
};

/* Which of the first `set` mapped keys a str key is, or -1: told apart by length first. */
static inline int mapped_key(const mpr_value *k, int set)
{
    switch (k->len) {
    case 12: return memcmp(k->ptr, renames[0].from, 12) ? -1 : 0;
    case 9: return memcmp(k->ptr, renames[1].from, 9) ? -1 : 1;
    case 7: return memcmp(k->ptr, renames[2].from, 7) ? -1 : 2;
    case 16: return set == 4 && !memcmp(k->ptr, renames[3].from, 16) ? 3 : -1;
    default: return -1;
    }
}

/* What one walk over a record's pairs found. */
typedef struct rec_walk {
    const uint8_t *pairs, *end; /* the pairs' bytes */
    uint32_t n;                 /* how many */
    const uint8_t *msg, *msg_val, *msg_end; /* the message pair (its key, its value, its end); NULL when none */
    unsigned msg_rank;          /* its key's place in opts->message_keys */
    int msg_mapped;             /* its key is one the mapping sets */
    uint32_t n_mapped;          /* pairs whose key the mapping sets (the message pair included) */
} rec_walk;

/* Walks the n pairs of a record map at *p (its header read): the message (the first key of the first rank whose
 * value is a str), the keys to rename, the end. set: how many mapped keys apply (3, or 4 with metadata). */
static int walk_record(forward_iter *it, const uint8_t **p, const uint8_t *end, uint32_t n, int set,
                       rec_walk *w)
{
    const forward_opts *o = it->opts;
    const uint8_t *q = *p, *msg = NULL, *msg_val = NULL, *msg_end = NULL;
    unsigned rank = o->n_message_keys;
    uint32_t n_mapped = 0;
    int deep = 0, msg_mapped = 0;
    for (uint32_t i = 0; i < n; i++) {
        const uint8_t *kp = q, *vp;
        mpr_value k, v;
        if (!(vp = read_whole_fast(q, end, &k)) || !(q = read_whole_fast(vp, end, &v)))
            return -EINVAL;
        deep |= v.type >= MPR_ARRAY;
        if (k.type != MPR_STR) {
            deep |= k.type >= MPR_ARRAY;
            continue;
        }
        int m = mapped_key(&k, set);
        n_mapped += m >= 0;
        if (v.type != MPR_STR)
            continue;
        for (unsigned r = 0; r < rank; r++) {
            if (k.len == o->message_key_lens[r] && !memcmp(k.ptr, o->message_keys[r], k.len)) {
                msg = kp, msg_val = vp, msg_end = q;
                rank = r;
                msg_mapped = m >= 0;
                break;
            }
        }
    }
    it->deep |= deep;
    *w = (rec_walk){.pairs = *p, .end = q, .n = n, .msg = msg, .msg_val = msg_val, .msg_end = msg_end,
                    .msg_rank = rank, .msg_mapped = msg_mapped, .n_mapped = n_mapped};
    *p = q;
    return 0;
}

/* The bytes of the values in [p, end) in their smallest msgpack encoding (what msgpack-c's objects packed back to),
 * or more than limit as soon as the sum passes it. No recursion: every value's header is read in turn. */
static size_t min_size(const uint8_t *p, const uint8_t *end, size_t limit)
{
    size_t sum = 0;
    mpr_value v;
    while (p < end && sum <= limit) {
        if (mpr_read(&p, end, &v) < 0)
            return SIZE_MAX; /* not reached: the bytes were walked already */
        uint64_t n = v.len;
        switch (v.type) {
        case MPR_UINT:
            sum += v.v.u < 128 ? 1 : v.v.u <= 0xff ? 2 : v.v.u <= 0xffff ? 3 : v.v.u <= 0xffffffff ? 5 : 9;
            break;
        case MPR_INT:
            sum += v.v.i >= -32 ? 1 : v.v.i >= -128 ? 2 : v.v.i >= -32768 ? 3 : v.v.i >= INT32_MIN ? 5 : 9;
            break;
        case MPR_F32: sum += 5; break;
        case MPR_F64: sum += 9; break;
        case MPR_STR: sum += (n <= 31 ? 1 : n <= 0xff ? 2 : n <= 0xffff ? 3 : 5) + n; break;
        case MPR_BIN: sum += (n <= 0xff ? 2 : n <= 0xffff ? 3 : 5) + n; break;
        case MPR_EXT:
            sum += (n == 1 || n == 2 || n == 4 || n == 8 || n == 16 ? 2 : (n <= 0xff ? 2 : n <= 0xffff ? 3 : 5) + 1) + n;
            break;
        case MPR_ARRAY:
        case MPR_MAP: sum += n <= 15 ? 1 : n <= 0xffff ? 3 : 5; break;
        default: sum += 1; /* nil, bool */
        }
    }
    return sum;
}

/* EventTime 0xffffffff.0 / 0xfffffffe.0 in a v2 head: Fluent Bit's group start / end marker, not an event. */
static int is_group_marker(const mpr_value *t)
{
    static const unsigned char start[8] = {0xff, 0xff, 0xff, 0xff}, end[8] = {0xff, 0xff, 0xff, 0xfe};
    return t->type == MPR_EXT && t->ext_type == 0 && t->len == 8 &&
           (!memcmp(t->ptr, start, 8) || !memcmp(t->ptr, end, 8));
}

static uint8_t *put_str(uint8_t *o, const char *s, size_t n) /* n < 32 */
{
    *o++ = (uint8_t)(0xa0 | n);
    memcpy(o, s, n);
    return o + n;
}

static uint8_t *put_bytes(uint8_t *o, const uint8_t *s, size_t n)
{
    memcpy(o, s, n);
    return o + n;
}

static uint8_t *put_uint(uint8_t *o, uint64_t v)
{
    int w = v < 128 ? 0 : v <= 0xff ? 1 : v <= 0xffff ? 2 : v <= 0xffffffff ? 4 : 8;
    if (w)
        *o++ = w == 1 ? 0xcc : w == 2 ? 0xcd : w == 4 ? 0xce : 0xcf;
    else
        return *o = (uint8_t)v, o + 1;
    for (int i = w - 1; i >= 0; i--)
        *o++ = (uint8_t)(v >> (8 * i));
    return o;
}

static uint8_t *put_map_header(uint8_t *o, uint32_t n)
{
    if (n <= 15) {
        *o++ = (uint8_t)(0x80 | n);
    } else if (n <= 0xffff) {
        *o++ = 0xde, *o++ = (uint8_t)(n >> 8), *o++ = (uint8_t)n;
    } else {
        *o++ = 0xdf;
        for (int i = 3; i >= 0; i--)
            *o++ = (uint8_t)(n >> (8 * i));
    }
    return o;
}

/* The `timestamp` value: the event time in ns; for a time time_ns refuses, the time as sent, which record_encode_raw
 * reads as a native record's timestamp (a negative, out-of-range or NaN number, an EventTime with nanoseconds
 * >= 10^9 or an ext of another type is refused there too: kept as metadata `timestamp`, the receive time used; a
 * msgpack timestamp ext, type -1, is read) — except a positive integer beyond int64 ns, which becomes its decimal
 * text: as a native timestamp it would read as nanoseconds. Written at o (at most 22 bytes) unless it is the time's
 * own bytes: then *own is set and o returned. */
static uint8_t *put_time(uint8_t *o, const mpr_value *t, int *own)
{
    int64_t ns;
    *own = 0;
    if (time_ns(t, &ns) == 0)
        return put_uint(o, (uint64_t)ns);
    if (t->type != MPR_UINT) {
        *own = 1;
        return o;
    }
    char digits[20], *d = digits + sizeof digits;
    uint64_t v = t->v.u;
    do
        *--d = (char)('0' + v % 10);
    while (v /= 10);
    return put_str(o, d, (size_t)(digits + sizeof digits - d));
}

/* The record's pairs, renamed where the mapping sets the key, the message pair left out. */
static uint8_t *put_pairs(uint8_t *o, const rec_walk *w, int set)
{
    if (w->n_mapped == (uint32_t)(w->msg && w->msg_mapped)) { /* nothing renamed: at most two runs */
        if (!w->msg)
            return put_bytes(o, w->pairs, (size_t)(w->end - w->pairs));
        o = put_bytes(o, w->pairs, (size_t)(w->msg - w->pairs));
        return put_bytes(o, w->msg_end, (size_t)(w->end - w->msg_end));
    }
    const uint8_t *p = w->pairs;
    for (uint32_t i = 0; i < w->n; i++) {
        const uint8_t *kp = p, *vp;
        mpr_value k, v;
        read_whole(&p, w->end, &k); /* walked once already: cannot fail */
        vp = p;
        read_whole(&p, w->end, &v);
        if (kp == w->msg)
            continue;
        int m = k.type == MPR_STR ? mapped_key(&k, set) : -1;
        if (m >= 0) /* a key the mapping sets itself: kept under record_<key> */
            o = put_bytes(put_str(o, renames[m].to, renames[m].to_len), vp, (size_t)(p - vp));
        else
            o = put_bytes(o, kp, (size_t)(p - kp));
    }
    return o;
}

/* Writes the event's map into it->ev: time t (its bytes tp[0..tlen)), metadata meta[0..meta_len) of meta_pairs
 * pairs (NULL: none), the record walked into w. Returns 1 or -ENOMEM. */
static int write_event(forward_iter *it, const mpr_value *t, const uint8_t *tp, size_t tlen, const uint8_t *meta,
                       size_t meta_len, uint32_t meta_pairs, const rec_walk *w, const uint8_t **map, size_t *len)
{
    int has_meta = meta && meta_pairs > 0;
    size_t msg_len = w->msg ? (size_t)(w->msg_end - w->msg_val) : 1;
    size_t need = 5 + 13 + it->tag_len + 10 + (tlen > 22 ? tlen : 22) + 8 + msg_len + (has_meta ? 17 + meta_len : 0) +
                  (size_t)(w->end - w->pairs) + 8 * (size_t)w->n_mapped;
    if (need > it->ev_cap) {
        size_t cap = it->ev_cap ? it->ev_cap : 1024;
        while (cap < need)
            cap *= 2;
        uint8_t *nb = realloc(it->ev, cap);
        if (!nb)
            return -ENOMEM;
        it->ev = nb;
        it->ev_cap = cap;
    }
    uint8_t *o = put_map_header(it->ev, 3 + (uint32_t)has_meta + w->n - (w->msg != NULL));
    o = put_bytes(put_str(o, "service_name", 12), it->tag, it->tag_len);
    int own;
    o = put_time(put_str(o, "timestamp", 9), t, &own);
    if (own)
        o = put_bytes(o, tp, tlen);
    o = put_str(o, "message", 7);
    o = w->msg ? put_bytes(o, w->msg_val, msg_len) : put_str(o, "", 0);
    if (has_meta) /* Fluent Bit's v2 metadata: kept whole, under one key */
        o = put_bytes(put_str(o, "forward_metadata", 16), meta, meta_len);
    o = put_pairs(o, w, has_meta ? 4 : 3);
    *map = it->ev;
    *len = (size_t)(o - it->ev);
    return 1;
}

/* The event at rp (its record map's bytes; time t, tlen bytes; metadata meta[0..meta_len), meta_pairs pairs) in
 * it->parts, its record not walked yet, when the iterator is lazy and the event plainly qualifies: a valid time, a
 * map record, nothing deep in the entry so far (v2 metadata is), not an entry being handed out again
 * (forward_settle). Returns 1 then (it->lazy_pending set), else 0: the event as its map. */
static int event_lazy(forward_iter *it, const mpr_value *t, size_t tlen, const uint8_t *meta, size_t meta_len,
                      uint32_t meta_pairs, const uint8_t *rp, const uint8_t *end)
{
    if (!it->lazy || it->deep || it->redo) /* (redo: cleared when forward_next returns) */
        return 0;
    int64_t ns;
    const uint8_t *q = rp;
    mpr_value r;
    if (!is_time(t) || time_ns(t, &ns) < 0 || mpr_read(&q, end, &r) < 0 || r.type != MPR_MAP)
        return 0;
    int has_meta = meta && meta_pairs > 0;
    const forward_opts *o = it->opts;
    it->parts = (record_parts){.service = it->tag_str, .service_len = it->tag_str_len, .ts_ns = ns,
                               .extra = has_meta ? meta : NULL, .extra_end = has_meta ? meta + meta_len : NULL,
                               .extra_key = "forward_metadata", .pairs = q, .end = end, .n = r.len,
                               .message_keys = o->message_keys, .message_key_lens = o->message_key_lens,
                               .n_message_keys = o->n_message_keys, .renames = renames,
                               .n_renames = has_meta ? 4 : 3, .message_lens = it->message_lens,
                               .rename_lens = record_len_bit(renames[0].from_len) |
                                              record_len_bit(renames[1].from_len) |
                                              record_len_bit(renames[2].from_len) |
                                              (has_meta ? record_len_bit(renames[3].from_len) : 0)};
    it->lazy_rp = rp;
    it->lazy_sent = 1 + tlen + (meta ? 1 + meta_len : 0); /* + the record's bytes: event's measure */
    it->lazy_pending = 1;
    return 1;
}

/* One event: time t (its bytes tp[0..tlen)), metadata (a map's bytes, or NULL), the record at *p (moved past it).
 * Returns 1 with the event in *map / *len, -EMSGSIZE when the event passes max_record as msgpack (its entry: 1 +
 * time + (1 + metadata) + record; meta_pairs: the metadata's pairs), -EINVAL for a record that is not a map or a time that is not a number or ext,
 * -ENOMEM. */
static int event(forward_iter *it, const mpr_value *t, const uint8_t *tp, size_t tlen, const uint8_t *meta,
                 size_t meta_len, uint32_t meta_pairs, const uint8_t **p, const uint8_t *end, const uint8_t **map,
                 size_t *len)
{
    size_t max = it->opts->max_record;
    int set = meta && meta_pairs > 0 ? 4 : 3;
    const uint8_t *rp = *p;
    mpr_value r;
    rec_walk w = {0}; /* (set by walk_record on success only) */
    if (event_lazy(it, t, tlen, meta, meta_len, meta_pairs, rp, end)) {
        *map = NULL; /* in parts; *p stays: forward_settle moves on past the record, or hands it out again */
        *len = 0;
        return 1;
    }
    if (mpr_read(p, end, &r) < 0)
        return -EINVAL;
    int ok = r.type == MPR_MAP && is_time(t);
    it->deep |= !ok;
    if (ok ? walk_record(it, p, end, r.len, set, &w) < 0 : skip_items(&r, p, end) < 0)
        return -EINVAL;
    size_t rlen = (size_t)(*p - rp), sent = 1 + tlen + rlen + (meta ? 1 + meta_len : 0);
    if (sent > max) { /* as sent it passes: measure it as msgpack-c packed it */
        size_t n = 1 + min_size(tp, tp + tlen, max);
        if (n <= max && meta)
            n += 1 + min_size(meta, meta + meta_len, max);
        if (n <= max)
            n += min_size(rp, *p, max);
        if (n > max)
            return -EMSGSIZE;
    }
    if (!ok)
        return -EINVAL;
    return write_event(it, t, tp, tlen, meta, meta_len, meta_pairs, &w, map, len);
}

/* One entry at *p: `[time, record]`, or Fluent Bit's v2 `[[time, metadata], record]`. Returns event's answer, or
 * FORWARD_SKIP for a group marker, -EINVAL for another shape (*p then anywhere inside the entry). */
static int entry(forward_iter *it, const uint8_t **p, const uint8_t *end, const uint8_t **map, size_t *len)
{
    mpr_value e, h, t, m;
    if (mpr_read(p, end, &e) < 0 || e.type != MPR_ARRAY || e.len != 2)
        return -EINVAL;
    const uint8_t *hp = *p;
    if (mpr_read(p, end, &h) < 0)
        return -EINVAL;
    if (h.type != MPR_ARRAY) {
        it->deep |= h.type == MPR_MAP;
        if (skip_items(&h, p, end) < 0)
            return -EINVAL;
        return event(it, &h, hp, (size_t)(*p - hp), NULL, 0, 0, p, end, map, len);
    }
    const uint8_t *tp = *p, *mp;
    if (h.len != 2 || read_whole(p, end, &t) < 0)
        return -EINVAL;
    mp = *p;
    if (read_whole(p, end, &m) < 0 || m.type != MPR_MAP)
        return -EINVAL;
    it->deep |= t.type >= MPR_ARRAY || m.len > 0; /* metadata's values are not looked at: may be containers */
    if (is_group_marker(&t)) {
        it->deep = 1; /* its record is passed over unread */
        return mpr_skip(p, end, 1) < 0 ? -EINVAL : FORWARD_SKIP;
    }
    return event(it, &t, tp, (size_t)(mp - tp), mp, (size_t)(*p - mp), m.len, p, end, map, len);
}

/* The next entry of a Forward-mode message. */
static int next_inline(forward_iter *it, const uint8_t **map, size_t *len)
{
    const uint8_t *start = it->cur;
    it->entries_left--;
    it->deep = 0;
    int rc = entry(it, &it->cur, it->end, map, len);
    if (it->lazy_pending) { /* forward_settle moves it->cur past the entry, or back to its start */
        it->lazy_at = start;
        return rc;
    }
    if (rc == -EINVAL) { /* the entry's end: passed over whole (mpscan vouched for the message) */
        it->cur = start;
        if (mpr_skip(&it->cur, it->end, 1) < 0)
            it->entries_left = 0; /* not reached */
    }
    return rc;
}

/* The next packed entry: read in place when it is plainly fine, else vouched for by mpscan (max_record bytes and
 * items, nesting) before it is read. An entry over max_record is skipped (its end found by a scan bounded by the
 * packed bytes): -EMSGSIZE. Bytes that are not msgpack, or a truncated entry, end the message: -EINVAL.
 *
 * Plainly fine: the walk read it whole (every header and length checked, no 0xc1), it is at most max_record bytes
 * and no value in it is a container (so it nests 3 deep at most, and announces fewer items than it has bytes).
 * mpscan would pass such an entry, with the same end: its verdict is only asked for the others. */
static int next_packed(forward_iter *it, const uint8_t **map, size_t *len)
{
    size_t left = it->packed_len - it->packed_off, used = 0;
    if (left == 0)
        return 0;
    const uint8_t *p = (const uint8_t *)it->packed + it->packed_off, *q = p;
    it->deep = 0;
    int rc = entry(it, &q, p + left, map, len);
    if (it->lazy_pending) { /* forward_settle moves packed_off past the entry, or leaves it for the entry again */
        it->lazy_at = p;
        return rc;
    }
    if (rc != -EINVAL && !it->deep && (size_t)(q - p) <= it->opts->max_record) {
        it->packed_off += (size_t)(q - p);
        return rc;
    }
    mpscan s;
    mpscan_init(&s, it->opts->max_record);
    rc = mpscan_whole(&s, p, left, &used);
    if (rc == MPSCAN_MORE) /* cut short: the byte-wise scanner gives the verdict */
        rc = mpscan_feed_one(&s, p, left, &used);
    if (rc == MPSCAN_OVERSIZED) {
        mpscan_init(&s, left);
        if (mpscan_feed_one(&s, p, left, &used) == MPSCAN_OK && s.records == 1) {
            it->packed_off += used;
            return -EMSGSIZE;
        }
    }
    if (rc != MPSCAN_OK || s.records != 1) {
        it->packed_off = it->packed_len;
        return -EINVAL;
    }
    it->packed_off += used;
    q = p;
    return entry(it, &q, p + used, map, len);
}

static int next_event(forward_iter *it, const uint8_t **map, size_t *len);

int forward_next(forward_iter *it, const uint8_t **map, size_t *len)
{
    int rc = next_event(it, map, len);
    it->redo = 0; /* the entry forward_settle sent back is handed out (both of next_packed's reads of it included) */
    return rc;
}

static int next_event(forward_iter *it, const uint8_t **map, size_t *len)
{
    int rc = FORWARD_SKIP;
    switch (it->mode) {
    case FORWARD_MESSAGE:
        if (it->entries_left) {
            it->entries_left = 0;
            const uint8_t *p = it->single_time, *rp = it->single_record, *mp = it->opt_meta;
            mpr_value t, m = {.len = 0};
            mpr_read(&p, p + it->single_time_len, &t); /* both read at forward_begin: cannot fail */
            if (mp)
                mpr_read(&mp, mp + it->opt_meta_len, &m);
            it->lazy_at = it->single_record;
            it->deep = 0;
            return event(it, &t, it->single_time, it->single_time_len, it->opt_meta, it->opt_meta_len, m.len, &rp,
                         rp + it->single_record_len, map, len);
        }
        break;
    case FORWARD_FORWARD:
        while (rc == FORWARD_SKIP && it->entries_left > 0)
            rc = next_inline(it, map, len);
        if (rc != FORWARD_SKIP)
            return rc;
        break;
    case FORWARD_PACKED:
    case FORWARD_COMPRESSED:
        while (rc == FORWARD_SKIP)
            rc = next_packed(it, map, len);
        if (rc != 0)
            return rc;
        break;
    default:
        return 0;
    }
    it->mode = 0; /* done; `chunk` stays for the caller until forward_iter_reset */
    return 0;
}

int forward_settle(forward_iter *it, int rc, const record_info *info)
{
    if (!it->lazy_pending)
        return 0;
    it->lazy_pending = 0;
    const uint8_t *past = it->parts.pairs + (rc == 0 ? info->wire_len : 0); /* the record's end, on success */
    size_t max = it->opts->max_record;
    /* as the map would have been taken: nothing deep (packed entries: no mpscan verdict needed), within max_record
     * as sent (else event measures it as msgpack-c would pack it), a whole packed entry within max_record */
    if (rc == 0 && info->nesting <= 1 && it->lazy_sent + (size_t)(past - it->lazy_rp) <= max &&
        (it->mode < FORWARD_PACKED || (size_t)(past - it->lazy_at) <= max)) {
        if (it->mode == FORWARD_FORWARD)
            it->cur = past;
        else if (it->mode >= FORWARD_PACKED)
            it->packed_off = (size_t)(past - (const uint8_t *)it->packed);
        return 0;
    }
    if (it->mode == FORWARD_FORWARD) /* the entry again, the old way: its map, or its verdict */
        it->cur = it->lazy_at, it->entries_left++;
    else if (it->mode == FORWARD_MESSAGE)
        it->entries_left = 1;
    it->redo = 1;
    return -EAGAIN;
}

size_t forward_pack_ack(const msgpack_object *chunk, char *buf, size_t cap)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    size_t len = 0;
    if (msgpack_pack_map(&pk, 1) == 0 && msgpack_pack_str_with_body(&pk, "ack", 3) == 0 &&
        msgpack_pack_object(&pk, *chunk) == 0 && sb.size <= cap) {
        memcpy(buf, sb.data, sb.size);
        len = sb.size;
    }
    msgpack_sbuffer_destroy(&sb);
    return len;
}
