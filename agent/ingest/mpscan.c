/* mpscan.c — msgpack structure scanner (see mpscan.h).
 *
 * DESIGN
 * A token is a type header of H bytes (1..9, first byte decides H) followed by a payload of L bytes (str,
 * bin, ext bodies and fixed-width numbers). Containers push their item count (maps count keys and values);
 * a finished item decrements the innermost count, and a container whose count reaches zero is itself a
 * finished item of its parent. Depth 0 after a finished item = end of a record. The record's size is
 * charged when a header is decoded, so an announced payload or item count that cannot fit is refused
 * before its bytes arrive: rec_bytes = the record's bytes so far + 1 byte for every announced item that has
 * not begun yet (a map needs >= 2 bytes per entry, an array >= 1 per item); an item that begins replaces its
 * promised byte with its real size. The promises of every open container count together: msgpack-c
 * allocates an object (24 bytes) per announced item as soon as it reads a container header, so nested
 * headers that each announce almost max_record items must be refused, not only one such header (found by
 * tests/fuzz: 160 bytes of nested array32 headers made msgpack-c allocate 32 x 24 x max_record bytes).
 *
 * The record's first header decides its limits: a top-level array gets max_array / array_items, anything else
 * max_record / max_items. rec_items counts every item announced (a separate budget: for a native record it is
 * implied by rec_bytes, for a large Forward message of small events it is what bounds msgpack-c's zone). */
#include "ingest/mpscan.h"

#include "mpread.h"

#include <string.h>

void mpscan_init(mpscan *s, uint64_t max_record)
{
    memset(s, 0, sizeof *s);
    s->max_record = s->max_array = max_record;
    s->max_items = s->array_items = max_record;
}

void mpscan_set_array_limit(mpscan *s, uint64_t max_array)
{
    if (max_array < s->max_record)
        max_array = s->max_record;
    s->max_array = max_array;
    s->array_items = max_array / 16 > s->max_record ? max_array / 16 : s->max_record;
}

static int is_array_header(uint8_t b) { return (b >= 0x90 && b <= 0x9f) || b == 0xdc || b == 0xdd; }

int mpscan_mid_record(const mpscan *s) { return s->depth > 0 || s->hdr_have > 0 || s->skip > 0; }

/* Header length for a first byte, or 0 for the never-used 0xc1. A header ends where msgpack-c decides on it, so
 * msgpack-c never sees a header mpscan has not checked yet: for ext that is after the length (msgpack-c reads
 * the type byte with the data, and refuses an ext32 of length 0xffffffff as soon as it has the length), so the
 * type byte is counted as payload here. One table lookup per header. */
static const uint8_t header_lens[256] = {
    [0x00 ... 0xc0] = 1,                      /* fixint, fixmap, fixarray, fixstr, nil */
    [0xc1] = 0,                               /* never used */
    [0xc2 ... 0xc3] = 1, [0xca ... 0xd3] = 1, /* bool, float, int */
    [0xc4] = 2, [0xd9] = 2, [0xc7] = 2,       /* bin8, str8, ext8 */
    [0xc5] = 3, [0xda] = 3, [0xdc] = 3, [0xde] = 3, [0xc8] = 3, /* 16-bit length or count, ext16 */
    [0xc6] = 5, [0xdb] = 5, [0xdd] = 5, [0xdf] = 5, [0xc9] = 5, /* 32-bit length or count, ext32 */
    [0xd4 ... 0xd8] = 1,                      /* fixext */
    [0xe0 ... 0xff] = 1,                      /* negative fixint */
};

static uint8_t header_len(uint8_t b) { return header_lens[b]; }

/* Decodes a complete header into payload length and container item count (0 for non-containers). */
static void header_decode(const uint8_t *h, uint64_t *payload, uint64_t *items, int *container)
{
    uint8_t b = h[0];
    *payload = 0;
    *items = 0;
    *container = 0;
    if (b >= 0x80 && b <= 0x8f) { *container = 1; *items = 2u * (b & 0x0f); return; }
    if (b >= 0x90 && b <= 0x9f) { *container = 1; *items = b & 0x0f; return; }
    if (b >= 0xa0 && b <= 0xbf) { *payload = b & 0x1f; return; }
    switch (b) {
    case 0xca: *payload = 4; return;
    case 0xcb: *payload = 8; return;
    case 0xcc: case 0xd0: *payload = 1; return;
    case 0xcd: case 0xd1: *payload = 2; return;
    case 0xce: case 0xd2: *payload = 4; return;
    case 0xcf: case 0xd3: *payload = 8; return;
    case 0xc4: case 0xd9: *payload = h[1]; return;
    case 0xc5: case 0xda: *payload = mpr_be(h + 1, 2); return;
    case 0xc6: case 0xdb: *payload = mpr_be(h + 1, 4); return;
    case 0xc7: *payload = h[1] + 1ULL; return; /* ext: the type byte counts as payload, see header_len */
    case 0xc8: *payload = mpr_be(h + 1, 2) + 1; return;
    case 0xc9: *payload = mpr_be(h + 1, 4) + 1; return;
    case 0xd4: *payload = 2; return;
    case 0xd5: *payload = 3; return;
    case 0xd6: *payload = 5; return;
    case 0xd7: *payload = 9; return;
    case 0xd8: *payload = 17; return;
    case 0xdc: *container = 1; *items = mpr_be(h + 1, 2); return;
    case 0xdd: *container = 1; *items = mpr_be(h + 1, 4); return;
    case 0xde: *container = 1; *items = 2 * mpr_be(h + 1, 2); return;
    case 0xdf: *container = 1; *items = 2 * mpr_be(h + 1, 4); return;
    default: return;
    }
}

/* An item (scalar or whole container) just finished: pop finished containers. Returns 1 at record end. */
static int item_done(mpscan *s)
{
    while (s->depth > 0) {
        if (--s->stack[s->depth - 1] > 0)
            return 0;
        s->depth--;
    }
    return 1;
}

/* The header in s->hdr is complete: charge its size, open containers, arm the payload skip. */
static int header_done(mpscan *s, int *record_end)
{
    uint64_t payload, items;
    int container;
    header_decode(s->hdr, &payload, &items, &container);
    if (s->depth > 0) {
        s->rec_bytes -= 1; /* this item's promised byte (charged by its container), now charged exactly: */
    } else {              /* the record's first header: its limits */
        s->in_array = is_array_header(s->hdr[0]);
        s->cur_max = s->in_array ? s->max_array : s->max_record;
        s->cur_items = s->in_array ? s->array_items : s->max_items;
    }
    s->rec_bytes += s->hdr_need + payload + items; /* items: 0 unless a container; >= 1 byte each to come */
    s->rec_items += items;
    s->hdr_have = s->hdr_need = 0;
    if (s->rec_bytes > s->cur_max || payload > s->cur_max || s->rec_items > s->cur_items)
        return MPSCAN_OVERSIZED;
    if (container && s->depth == MPSCAN_MAX_DEPTH)
        return MPSCAN_MALFORMED; /* msgpack-c refuses a container there even when it is empty */
    if (container && items > 0) {
        s->stack[s->depth++] = items;
        return MPSCAN_OK;
    }
    s->skip = payload;
    if (payload == 0)
        *record_end = item_done(s);
    return MPSCAN_OK;
}

/* mpscan_feed's loop; with `one`, stops after the first record end (*good then = its end). */
static int scan(mpscan *s, const uint8_t *p, size_t n, size_t *good, int one)
{
    size_t i = 0, rec_start = 0; /* a record begun in an earlier chunk: nothing here is good */
    int rc = MPSCAN_OK;
    while (i < n) {
        int end = 0;
        if (s->skip) {
            uint64_t take = n - i < s->skip ? n - i : s->skip;
            s->skip -= take;
            i += (size_t)take;
            if (s->skip == 0)
                end = item_done(s);
        } else {
            if (s->hdr_need == 0) {
                s->hdr_need = header_len(p[i]);
                if (s->hdr_need == 0) {
                    rc = MPSCAN_MALFORMED;
                    break;
                }
            }
            s->hdr[s->hdr_have++] = p[i++];
            if (s->hdr_have == s->hdr_need && (rc = header_done(s, &end)) != MPSCAN_OK)
                break;
        }
        if (end) {
            s->records++;
            s->rec_bytes = s->rec_items = 0;
            rec_start = i;
            if (one) {
                *good = i;
                return MPSCAN_OK;
            }
        }
    }
    *good = rc == MPSCAN_OK ? n : rec_start;
    return rc;
}

int mpscan_feed(mpscan *s, const uint8_t *p, size_t n, size_t *good) { return scan(s, p, n, good, 0); }

int mpscan_feed_one(mpscan *s, const uint8_t *p, size_t n, size_t *used)
{
    int rc = scan(s, p, n, used, 1);
    if (rc != MPSCAN_OK)
        *used = 0;
    return rc;
}

int mpscan_whole(mpscan *s, const uint8_t *p, size_t n, size_t *used)
{
    uint64_t stack[MPSCAN_MAX_DEPTH], rec_bytes = 0, rec_items = 0;
    int depth = 0;
    size_t i = 0;
    if (n == 0)
        return MPSCAN_MORE;
    int in_array = is_array_header(p[0]);
    uint64_t cur_max = in_array ? s->max_array : s->max_record, cur_items = in_array ? s->array_items : s->max_items;
    for (;;) { /* header_done and item_done of scan(), with the state in locals */
        if (i >= n)
            return MPSCAN_MORE;
        uint8_t b = p[i], hl = 1;
        uint64_t payload = 0, items = 0;
        int container = 0;
        if (b <= 0x7f || b >= 0xe0) { /* the usual one-byte headers first: fixint, fixstr, fixmap, fixarray */
        } else if (b >= 0xa0 && b <= 0xbf) {
            payload = b & 0x1f;
        } else if (b <= 0x9f) {
            container = 1;
            items = b <= 0x8f ? 2u * (b & 0x0f) : (uint64_t)(b & 0x0f);
        } else if ((hl = header_len(b)) == 0) {
            s->in_array = in_array;
            return MPSCAN_MALFORMED;
        } else if (n - i < hl) {
            return MPSCAN_MORE;
        } else {
            header_decode(p + i, &payload, &items, &container);
        }
        if (depth > 0)
            rec_bytes -= 1;
        rec_bytes += hl + payload + items;
        rec_items += items;
        if (rec_bytes > cur_max || payload > cur_max || rec_items > cur_items || (container && depth == MPSCAN_MAX_DEPTH)) {
            s->in_array = in_array;
            return rec_bytes > cur_max || payload > cur_max || rec_items > cur_items ? MPSCAN_OVERSIZED
                                                                                     : MPSCAN_MALFORMED;
        }
        i += hl;
        if (container && items > 0) {
            stack[depth++] = items;
            continue;
        }
        if (n - i < payload)
            return MPSCAN_MORE;
        i += (size_t)payload;
        while (depth > 0 && --stack[depth - 1] == 0)
            depth--;
        if (depth == 0) {
            s->in_array = in_array;
            s->records++;
            *used = i;
            return MPSCAN_OK;
        }
    }
}

