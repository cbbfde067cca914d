/* ref_forward.c — fuzz_forward's oracle: agent/ingest/forward.c as of commit f387904 (msgpack-c objects), names
 * prefixed ref_ (see ref_forward.h). Not built into the agent. */
#include "ref/ref_forward.h"

#include "ingest/mpscan.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

enum { REF_FORWARD_KEEP_KV = 64 }; /* pairs a connection's iterator keeps between messages */
enum { REF_FORWARD_SKIP = 2 };     /* build_entry: not an event (a group marker), go on with the next entry */

static const char *const default_keys[] = {"message", "log", "msg"};

void ref_forward_opts_default(ref_forward_opts *o, size_t max_record)
{
    memset(o, 0, sizeof *o);
    for (unsigned i = 0; i < 3; i++)
        o->message_keys[i] = default_keys[i];
    o->n_message_keys = 3;
    o->max_inflated = max_record * 8;
    o->max_record = max_record;
}

int ref_forward_opts_parse_keys(ref_forward_opts *o, char *buf)
{
    unsigned n = 0;
    for (char *p = buf, *k; (k = strsep(&p, ",")) != NULL;) {
        while (*k == ' ')
            k++;
        size_t len = strlen(k);
        while (len && k[len - 1] == ' ')
            k[--len] = '\0';
        if (!len || n == REF_FORWARD_MAX_MESSAGE_KEYS)
            return -EINVAL;
        o->message_keys[n++] = k;
    }
    if (!n)
        return -EINVAL;
    o->n_message_keys = n;
    return 0;
}

void ref_forward_iter_init(ref_forward_iter *it, const ref_forward_opts *opts)
{
    memset(it, 0, sizeof *it);
    it->opts = opts;
    msgpack_unpacked_init(&it->entry);
}

void ref_forward_iter_reset(ref_forward_iter *it)
{
    free(it->inflated);
    it->inflated = NULL;
    /* an idle connection keeps nothing large: a packed entry's zone, and a big record's pairs, are given back */
    msgpack_unpacked_destroy(&it->entry);
    msgpack_unpacked_init(&it->entry);
    if (it->kv_cap > REF_FORWARD_KEEP_KV) {
        free(it->kv);
        it->kv = NULL;
        it->kv_cap = 0;
    }
    it->mode = 0;
    it->chunk = NULL;
    it->opt_meta = NULL;
    it->packed = NULL;
    it->packed_len = it->packed_off = 0;
    it->entries = NULL;
    it->next_entry = 0;
}

void ref_forward_iter_free(ref_forward_iter *it)
{
    ref_forward_iter_reset(it);
    free(it->kv);
    it->kv = NULL;
    it->kv_cap = 0;
}

int ref_forward_active(const ref_forward_iter *it) { return it->mode != 0; }

static int str_is(const msgpack_object *o, const char *s)
{
    size_t n = strlen(s);
    return o->type == MSGPACK_OBJECT_STR && o->via.str.size == n && memcmp(o->via.str.ptr, s, n) == 0;
}

static int is_time(const msgpack_object *o)
{
    return o->type == MSGPACK_OBJECT_POSITIVE_INTEGER || o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER ||
           o->type == MSGPACK_OBJECT_FLOAT32 || o->type == MSGPACK_OBJECT_FLOAT64 || o->type == MSGPACK_OBJECT_EXT;
}

int ref_forward_time_ns(const msgpack_object *t, int64_t *out_ns)
{
    const int64_t max_s = INT64_MAX / 1000000000 - 1;
    switch (t->type) {
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        if (t->via.u64 > (uint64_t)max_s)
            return -EINVAL;
        *out_ns = (int64_t)t->via.u64 * 1000000000;
        return 0;
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64: {
        double s = t->via.f64;
        if (!isfinite(s) || s > (double)max_s || s < 0)
            return -EINVAL;
        *out_ns = (int64_t)llround(s * 1e9);
        return 0;
    }
    case MSGPACK_OBJECT_EXT: {
        const unsigned char *p = (const unsigned char *)t->via.ext.ptr;
        if (t->via.ext.type != 0 || t->via.ext.size != 8)
            return -EINVAL;
        uint32_t s = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
        uint32_t ns = (uint32_t)p[4] << 24 | (uint32_t)p[5] << 16 | (uint32_t)p[6] << 8 | p[7];
        if (ns >= 1000000000)
            return -EINVAL;
        *out_ns = (int64_t)s * 1000000000 + ns;
        return 0;
    }
    default:
        return -EINVAL;
    }
}

/* The option map's `chunk`, `compressed` and `metadata`. Returns 0, or -EINVAL for an option that is not a map (or
 * nil). */
static int read_option(ref_forward_iter *it, const msgpack_object *opt, int *gzip)
{
    *gzip = 0;
    if (opt->type == MSGPACK_OBJECT_NIL)
        return 0;
    if (opt->type != MSGPACK_OBJECT_MAP)
        return -EINVAL;
    for (uint32_t i = 0; i < opt->via.map.size; i++) {
        const msgpack_object_kv *kv = &opt->via.map.ptr[i];
        if (str_is(&kv->key, "chunk"))
            it->chunk = &kv->val;
        else if (str_is(&kv->key, "metadata") && kv->val.type == MSGPACK_OBJECT_MAP)
            it->opt_meta = &kv->val; /* Fluent Bit's Message mode: the event's metadata */
        else if (str_is(&kv->key, "compressed")) {
            if (!str_is(&kv->val, "gzip") && !str_is(&kv->val, "text"))
                return -EINVAL; /* a compression we cannot read */
            *gzip = str_is(&kv->val, "gzip");
        }
    }
    return 0;
}

/* Inflates gzip data (one member or several concatenated) into it->inflated. Returns 0, -EBADMSG, -EMSGSIZE or
 * -ENOMEM. */
static int inflate_entries(ref_forward_iter *it, const char *src, size_t len)
{
    size_t cap = len * 4 + 4096, max = it->opts->max_inflated;
    if (cap > max)
        cap = max;
    char *out = malloc(cap + 1);
    if (!out)
        return -ENOMEM;
    z_stream z;
    memset(&z, 0, sizeof z);
    if (inflateInit2(&z, 16 + MAX_WBITS) != Z_OK) {
        free(out);
        return -ENOMEM;
    }
    z.next_in = (Bytef *)src;
    z.avail_in = (uInt)len;
    size_t have = 0;
    int rc = 0;
    for (;;) {
        if (have == cap) { /* one byte past max tells a bomb from data of exactly max bytes */
            if (cap > max) {
                rc = -EMSGSIZE;
                break;
            }
            size_t ncap = cap * 2 > max ? max + 1 : cap * 2;
            char *n = realloc(out, ncap + 1);
            if (!n) {
                rc = -ENOMEM;
                break;
            }
            out = n;
            cap = ncap;
        }
        z.next_out = (Bytef *)out + have;
        z.avail_out = (uInt)(cap - have);
        int zr = inflate(&z, Z_NO_FLUSH);
        have = cap - z.avail_out;
        if (zr == Z_STREAM_END) {
            if (z.avail_in == 0)
                break;
            if (inflateReset(&z) != Z_OK) { /* another gzip member follows */
                rc = -EBADMSG;
                break;
            }
            continue;
        }
        if (zr == Z_BUF_ERROR && z.avail_out != 0) { /* input ended inside a member */
            rc = -EBADMSG;
            break;
        }
        if (zr != Z_OK && zr != Z_BUF_ERROR) {
            rc = zr == Z_MEM_ERROR ? -ENOMEM : -EBADMSG;
            break;
        }
    }
    inflateEnd(&z);
    if (rc == 0 && have > max)
        rc = -EMSGSIZE;
    if (rc < 0) {
        free(out);
        return rc;
    }
    it->inflated = out;
    it->packed = out;
    it->packed_len = have;
    return 0;
}

int ref_forward_begin(ref_forward_iter *it, const msgpack_object *arr)
{
    ref_forward_iter_reset(it);
    if (arr->type != MSGPACK_OBJECT_ARRAY || arr->via.array.size < 2 || arr->via.array.size > 4)
        return -EINVAL;
    const msgpack_object *a = arr->via.array.ptr;
    uint32_t n = arr->via.array.size;
    if (a[0].type != MSGPACK_OBJECT_STR)
        return -EINVAL;
    int mode, gzip = 0;
    uint32_t body; /* elements before the option */
    if (is_time(&a[1])) {
        mode = REF_FORWARD_MESSAGE, body = 3;
        if (n < 3 || a[2].type != MSGPACK_OBJECT_MAP)
            return -EINVAL;
    } else if (a[1].type == MSGPACK_OBJECT_ARRAY) {
        mode = REF_FORWARD_FORWARD, body = 2;
    } else if (a[1].type == MSGPACK_OBJECT_BIN || a[1].type == MSGPACK_OBJECT_STR) {
        mode = REF_FORWARD_PACKED, body = 2;
    } else {
        return -EINVAL;
    }
    if (n > body + 1 || (n == body + 1 && read_option(it, &a[body], &gzip) < 0)) {
        it->chunk = it->opt_meta = NULL;
        return -EINVAL;
    }
    if (gzip && mode != REF_FORWARD_PACKED) {
        it->chunk = it->opt_meta = NULL;
        return -EINVAL;
    }
    if (mode != REF_FORWARD_MESSAGE)
        it->opt_meta = NULL; /* only Message mode carries an event's metadata in its option */
    it->tag = a[0];
    if (mode == REF_FORWARD_MESSAGE) {
        it->single_time = &a[1];
        it->single_record = &a[2];
    } else if (mode == REF_FORWARD_FORWARD) {
        it->entries = &a[1];
    } else {
        const char *p = a[1].type == MSGPACK_OBJECT_BIN ? a[1].via.bin.ptr : a[1].via.str.ptr;
        size_t len = a[1].type == MSGPACK_OBJECT_BIN ? a[1].via.bin.size : a[1].via.str.size;
        if (gzip) {
            int rc = inflate_entries(it, p, len);
            if (rc < 0) {
                it->chunk = it->opt_meta = NULL;
                return rc;
            }
            mode = REF_FORWARD_COMPRESSED;
        } else {
            it->packed = p;
            it->packed_len = len;
        }
    }
    it->mode = mode;
    return 0;
}

static msgpack_object str_obj(const char *s, size_t len)
{
    msgpack_object o;
    o.type = MSGPACK_OBJECT_STR;
    o.via.str.ptr = s;
    o.via.str.size = (uint32_t)len;
    return o;
}

/* The keys the mapping sets itself (the last only when the event has metadata), and where a record's own key of
 * that name goes instead. */
static const char *const mapped[4] = {"service_name", "timestamp", "message", "forward_metadata"};
static const char *const renamed[4] = {"record_service_name", "record_timestamp", "record_message",
                                       "record_forward_metadata"};

/* The `timestamp` value of an event whose time ref_forward_time_ns refuses: the time as sent, which record_encode
 * reads as a native record's timestamp. A negative, out-of-range or NaN number, an EventTime with nanoseconds
 * >= 10^9 or an ext of another type is refused there too: kept as metadata `timestamp`, the receive time used (a
 * msgpack timestamp ext, type -1, is read). Only a positive integer beyond int64 ns is changed, to its decimal
 * text: as a native timestamp it would read as nanoseconds. */
static msgpack_object bad_time(ref_forward_iter *it, const msgpack_object *t)
{
    if (t->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return *t;
    int n = snprintf(it->time_text, sizeof it->time_text, "%llu", (unsigned long long)t->via.u64);
    return str_obj(it->time_text, (size_t)n);
}

/* Builds the native map of one event into *out: time `t`, record `rec`, metadata `meta` (a map, or NULL). Returns
 * 1, -EINVAL (a record that is not a map, a time that is not a number or ext) or -ENOMEM. */
static int build(ref_forward_iter *it, const msgpack_object *t, const msgpack_object *meta, const msgpack_object *rec,
                 msgpack_object *out)
{
    if (rec->type != MSGPACK_OBJECT_MAP || !is_time(t))
        return -EINVAL;
    uint32_t n = rec->via.map.size;
    if (it->kv_cap < (size_t)n + 4) {
        msgpack_object_kv *kv = realloc(it->kv, ((size_t)n + 4) * sizeof *kv);
        if (!kv)
            return -ENOMEM;
        it->kv = kv;
        it->kv_cap = (size_t)n + 4;
    }
    const msgpack_object_kv *r = rec->via.map.ptr;
    long msg = -1;
    for (unsigned k = 0; k < it->opts->n_message_keys && msg < 0; k++)
        for (uint32_t i = 0; i < n && msg < 0; i++)
            if (r[i].val.type == MSGPACK_OBJECT_STR && str_is(&r[i].key, it->opts->message_keys[k]))
                msg = i;
    msgpack_object_kv *kv = it->kv;
    kv[0].key = str_obj("service_name", 12);
    kv[0].val = it->tag;
    kv[1].key = str_obj("timestamp", 9);
    if (ref_forward_time_ns(t, &it->ts_ns) == 0) {
        kv[1].val.type = MSGPACK_OBJECT_POSITIVE_INTEGER;
        kv[1].val.via.u64 = (uint64_t)it->ts_ns;
    } else {
        kv[1].val = bad_time(it, t);
    }
    kv[2].key = str_obj("message", 7);
    kv[2].val = msg >= 0 ? r[msg].val : str_obj("", 0);
    uint32_t m = 3, set = 3;
    if (meta && meta->via.map.size > 0) { /* Fluent Bit's v2 metadata: kept whole, under one key */
        kv[3].key = str_obj("forward_metadata", 16);
        kv[3].val = *meta;
        m = set = 4;
    }
    for (uint32_t i = 0; i < n; i++) {
        if ((long)i == msg)
            continue;
        kv[m] = r[i];
        for (unsigned k = 0; k < set; k++) /* a key the mapping sets itself: kept under record_<key> */
            if (str_is(&r[i].key, mapped[k]))
                kv[m].key = str_obj(renamed[k], strlen(renamed[k]));
        m++;
    }
    out->type = MSGPACK_OBJECT_MAP;
    out->via.map.ptr = kv;
    out->via.map.size = m;
    return 1;
}

/* Bytes of a header announcing n (a length or a count) in a family with a 1-byte fix form up to fix_max. */
static size_t hdr_size(uint64_t n, uint64_t fix_max, int has8)
{
    return n <= fix_max ? 1 : has8 && n <= 0xff ? 2 : n <= 0xffff ? 3 : 5;
}

/* o's size in its smallest msgpack encoding, or a number > limit as soon as it passes limit. Recursion depth is
 * the object's nesting, which msgpack-c (and mpscan) bound to 32. */
static size_t wire_size(const msgpack_object *o, size_t limit)
{
    switch (o->type) {
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        return o->via.u64 < 128 ? 1 : o->via.u64 <= 0xff ? 2 : o->via.u64 <= 0xffff ? 3
                                    : o->via.u64 <= 0xffffffff ? 5 : 9;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        return o->via.i64 >= -32 ? 1 : o->via.i64 >= -128 ? 2 : o->via.i64 >= -32768 ? 3
                                     : o->via.i64 >= INT32_MIN ? 5 : 9;
    case MSGPACK_OBJECT_FLOAT32: return 5;
    case MSGPACK_OBJECT_FLOAT64: return 9;
    case MSGPACK_OBJECT_STR: return hdr_size(o->via.str.size, 31, 1) + o->via.str.size;
    /* bin and non-fix ext have no 1-byte form: bin8 / ext8 even for 0 bytes (hdr_size's fix form would count an
     * empty one a byte short: found by fuzz_forward, an empty bin in an event at max_record) */
    case MSGPACK_OBJECT_BIN: return (o->via.bin.size <= 0xff ? 2 : hdr_size(o->via.bin.size, 0, 1)) + o->via.bin.size;
    case MSGPACK_OBJECT_EXT: {
        uint32_t n = o->via.ext.size;
        int fix = n == 1 || n == 2 || n == 4 || n == 8 || n == 16;
        return (fix ? 2 : (n <= 0xff ? 2 : hdr_size(n, 0, 1)) + 1) + n;
    }
    case MSGPACK_OBJECT_ARRAY: {
        size_t sum = hdr_size(o->via.array.size, 15, 0);
        for (uint32_t i = 0; i < o->via.array.size && sum <= limit; i++)
            sum += wire_size(&o->via.array.ptr[i], limit);
        return sum;
    }
    case MSGPACK_OBJECT_MAP: {
        size_t sum = hdr_size(o->via.map.size, 15, 0);
        for (uint32_t i = 0; i < o->via.map.size && sum <= limit; i++)
            sum += wire_size(&o->via.map.ptr[i].key, limit) + wire_size(&o->via.map.ptr[i].val, limit);
        return sum;
    }
    default:
        return 1; /* nil, bool */
    }
}

/* One decoded event (time, metadata or NULL, record): -EMSGSIZE when it is over max_record as msgpack (its entry,
 * and in Message mode the option's metadata with it), else build's answer. */
static int build_sized(ref_forward_iter *it, const msgpack_object *t, const msgpack_object *meta,
                       const msgpack_object *rec, msgpack_object *out)
{
    size_t max = it->opts->max_record;
    size_t n = 1 + wire_size(t, max);
    if (n <= max && meta)
        n += 1 + wire_size(meta, max);
    if (n <= max)
        n += wire_size(rec, max);
    if (n > max)
        return -EMSGSIZE;
    return build(it, t, meta, rec, out);
}

/* EventTime 0xffffffff.0 / 0xfffffffe.0 in a v2 head: Fluent Bit's group start / end marker, not an event. */
static int is_group_marker(const msgpack_object *t)
{
    static const unsigned char start[8] = {0xff, 0xff, 0xff, 0xff}, end[8] = {0xff, 0xff, 0xff, 0xfe};
    return t->type == MSGPACK_OBJECT_EXT && t->via.ext.type == 0 && t->via.ext.size == 8 &&
           (!memcmp(t->via.ext.ptr, start, 8) || !memcmp(t->via.ext.ptr, end, 8));
}

/* One entry: `[time, record]`, or Fluent Bit's v2 `[[time, metadata], record]`. Returns build_sized's answer, or
 * REF_FORWARD_SKIP for a group marker. */
static int build_entry(ref_forward_iter *it, const msgpack_object *e, msgpack_object *out)
{
    if (e->type != MSGPACK_OBJECT_ARRAY || e->via.array.size != 2)
        return -EINVAL;
    const msgpack_object *head = &e->via.array.ptr[0], *rec = &e->via.array.ptr[1];
    if (head->type != MSGPACK_OBJECT_ARRAY)
        return build_sized(it, head, NULL, rec, out);
    if (head->via.array.size != 2 || head->via.array.ptr[1].type != MSGPACK_OBJECT_MAP)
        return -EINVAL;
    if (is_group_marker(&head->via.array.ptr[0]))
        return REF_FORWARD_SKIP;
    return build_sized(it, &head->via.array.ptr[0], &head->via.array.ptr[1], rec, out);
}

/* The next packed entry, vouched for by mpscan (max_record bytes and items) before msgpack-c decodes it. An
 * entry over max_record is skipped (its end found by a scan bounded by the packed bytes): -EMSGSIZE. Bytes that
 * are not msgpack, or a truncated entry, end the message: -EINVAL. */
static int next_packed(ref_forward_iter *it, msgpack_object *out)
{
    size_t left = it->packed_len - it->packed_off, used = 0;
    if (left == 0)
        return 0;
    const uint8_t *p = (const uint8_t *)it->packed + it->packed_off;
    mpscan s;
    mpscan_init(&s, it->opts->max_record);
    int rc = mpscan_feed_one(&s, p, left, &used);
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
    size_t off = 0;
    msgpack_unpack_return r = msgpack_unpack_next(&it->entry, (const char *)p, used, &off);
    it->packed_off += used;
    if (r == MSGPACK_UNPACK_NOMEM_ERROR)
        return -ENOMEM;
    if (r != MSGPACK_UNPACK_SUCCESS && r != MSGPACK_UNPACK_EXTRA_BYTES) { /* not reached: mpscan vouched for it */
        it->packed_off = it->packed_len;
        return -EINVAL;
    }
    return build_entry(it, &it->entry.data, out);
}

int ref_forward_next(ref_forward_iter *it, msgpack_object *out)
{
    int rc = REF_FORWARD_SKIP;
    switch (it->mode) {
    case REF_FORWARD_MESSAGE:
        if (it->next_entry++ == 0)
            return build_sized(it, it->single_time, it->opt_meta, it->single_record, out);
        break;
    case REF_FORWARD_FORWARD:
        while (rc == REF_FORWARD_SKIP && it->next_entry < it->entries->via.array.size)
            rc = build_entry(it, &it->entries->via.array.ptr[it->next_entry++], out);
        if (rc != REF_FORWARD_SKIP)
            return rc;
        break;
    case REF_FORWARD_PACKED:
    case REF_FORWARD_COMPRESSED:
        while (rc == REF_FORWARD_SKIP)
            rc = next_packed(it, out);
        if (rc != 0)
            return rc;
        break;
    default:
        return 0;
    }
    it->mode = 0; /* done; `chunk` stays for the caller until ref_forward_iter_reset */
    return 0;
}

size_t ref_forward_pack_ack(const msgpack_object *chunk, char *buf, size_t cap)
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
