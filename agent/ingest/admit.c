/* admit.c — the one admission path (see admit.h): one encoded record's fate, every counter it moves, its log line.
 *
 * DESIGN
 * The steps run in a fixed order and the first that refuses decides: the encoder's verdict (not a record, too large
 * once converted, out of memory), the encoded size against one request and the ring (enc->text_limit), the sender's
 * --rate-limit bucket, then the ring. A full ring is the --on-full policy's: drop-newest drops the record (received
 * and dropped), block and drop-oldest leave it to the caller — a stream holds a copy and pauses, a request answers 503
 * (the callers also ask the flusher to shed under drop-oldest: when and how often differs, so that stays theirs).
 *
 * What a record noticed (reserved `_`-keys, a level kept as sent) is counted by `taken` when the agent takes it and
 * by nothing else, so a record moves exactly one fate counter plus, when taken, these two. */
#include "ingest/admit.h"

#include "flush/flusher.h"
#include "ingest/ratelimit.h"
#include "log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

enum { RATE_SENDERS = 4096 };

enum limit { LIM_INVALID, LIM_OVERSIZED, LIM_NOMEM, LIM_RATE, LIM_FULL, LIM_RESERVED, LIM_N };

struct admit {
    admit_kind kind;
    const config *cfg;
    ring *ring;
    ingest_stats *st;
    ratelimit *rl; /* --rate-limit; NULL when off */
    log_limit lim[LIM_N];
    /* ADMIT_REQUEST: the stage's own counters and its name in log lines (admit_set_requests; HTTP by default) */
    const char *req_name;
    _Atomic uint64_t *req_records, *req_full, *req_limited;
    struct flusher *flusher; /* admit_set_flusher: asked whether a full ring is only a moment's (--buffer disk) */
    ring_chunk *chunk;       /* admit_set_chunk: the caller's own span of the ring (NULL: each record reserved alone) */
};

admit *admit_new(admit_kind kind, const config *cfg, ring *r, ingest_stats *st)
{
    admit *a = calloc(1, sizeof *a);
    if (!a)
        return NULL;
    a->kind = kind;
    a->cfg = cfg;
    a->ring = r;
    a->st = st;
    admit_set_requests(a, "HTTP", &st->http.records, &st->http.refused_full, &st->http.refused_rate_limited);
    if (cfg->rate_limit_rps > 0 && !(a->rl = ratelimit_new(cfg->rate_limit_rps, cfg->rate_limit_burst, RATE_SENDERS))) {
        free(a);
        return NULL;
    }
    return a;
}

void admit_set_flusher(admit *a, struct flusher *f) { a->flusher = f; }

void admit_set_chunk(admit *a, ring_chunk *c) { a->chunk = c; }

/* --on-full drop-newest drops when the buffer is full: the ring, or with --buffer disk the spool — while the spool
 * takes batches, a full ring is only the moment before the flusher moves it there, and the record waits as under
 * block (held, or "full, retry" for a request). */
static int drops_newest(const admit *a)
{
    return a->cfg->on_full == FULL_DROP_NEWEST && !(a->flusher && flusher_disk_has_room(a->flusher));
}

void admit_set_requests(admit *a, const char *name, _Atomic uint64_t *records, _Atomic uint64_t *refused_full,
                        _Atomic uint64_t *refused_rate_limited)
{
    a->req_name = name;
    a->req_records = records;
    a->req_full = refused_full;
    a->req_limited = refused_rate_limited;
}

void admit_free(admit *a)
{
    if (!a)
        return;
    ratelimit_free(a->rl);
    free(a);
}

/* Logs one event about from's record, at most every 10 s per kind of event. */
static void note_log(admit *a, enum limit which, const admit_from *from, const char *what, size_t limit)
{
    int64_t suppressed = log_limit_check(&a->lim[which], 10000);
    if (suppressed < 0)
        return;
    char who[128];
    if (from->peer)
        snprintf(who, sizeof who, "%s", from->peer);
    else
        snprintf(who, sizeof who, "pid=%d uid=%u comm=\"%s\"", from->src->pid, from->src->uid, from->src->comm);
    char extra[280] = "";
    if (from->detail)
        snprintf(extra, sizeof extra, " error=\"%.200s\"", from->detail);
    else if (limit)
        snprintf(extra, sizeof extra, " limit=%zu", limit);
    log_write(LOG_WARN, "\"%s\" %s%s suppressed=%lld", what, who, extra, (long long)suppressed);
}

/* The log text of each event, for each kind (a request stage's name its own, e.g. "HTTP": operators search for
 * them), written into buf when it names the stage. */
static const char *text(const admit *a, enum limit which, int converted, char *buf, size_t cap)
{
    if (which == LIM_RESERVED)
        return "reserved _-key dropped from a record";
    if (a->kind == ADMIT_REQUEST) {
        const char *n = a->req_name;
        switch (which) {
        case LIM_INVALID: snprintf(buf, cap, "%s entry is not a record, skipped", n); break;
        case LIM_OVERSIZED: snprintf(buf, cap, "%s record too large, refused", n); break;
        case LIM_NOMEM: snprintf(buf, cap, "out of memory: %s record refused (the caller keeps it)", n); break;
        case LIM_RATE: snprintf(buf, cap, "%s sender over --rate-limit: records refused (retry later)", n); break;
        default: snprintf(buf, cap, "buffer full: %s record dropped (--on-full drop-newest)", n); break;
        }
        return buf;
    }
    switch (which) {
    case LIM_INVALID: return "invalid record skipped (not a map, or no string message)";
    case LIM_OVERSIZED:
        return converted ? "record too large once converted, skipped" : "record too large once encoded, skipped";
    case LIM_NOMEM: return "out of memory: record dropped";
    case LIM_RATE: return "sender over --rate-limit: records dropped";
    default: return "buffer full: record dropped (--on-full drop-newest)";
    }
}

/* The agent takes an encoded record (queued, held, or dropped at ingest): what it noticed is counted now, once. */
static void taken(admit *a, const record_info *info, const admit_from *from)
{
    char tb[160];
    if (info->reserved_keys) {
        stat_add(&a->st->reserved_key, info->reserved_keys);
        if (from->client)
            from->client->rejected += info->reserved_keys;
        note_log(a, LIM_RESERVED, from, text(a, LIM_RESERVED, 0, tb, sizeof tb), 0);
    }
    if (info->level_unknown)
        stat_add(&a->st->level_unknown, 1);
    if (info->timestamp_unparsed)
        stat_add(&a->st->timestamp_unparsed, 1);
}

/* Dropped at ingest (received, then dropped with `reason`): the record is the agent's, so it was taken. */
static admit_fate drop(admit *a, _Atomic uint64_t *reason, int encoded, const record_info *info,
                       const admit_from *from, admit_fate fate)
{
    stat_add(reason, 1);
    if (from->client)
        from->client->dropped++;
    if (encoded)
        taken(a, info, from);
    return fate;
}

/* Refused as the client's bad input. */
static admit_fate reject(admit *a, _Atomic uint64_t *reason, const admit_from *from, admit_fate fate)
{
    stat_add(reason, 1);
    if (from->client)
        from->client->rejected++;
    return fate;
}

/* Writes enc's entry (enc->out_len bytes) at dst: straight from the record when the encoder only planned it
 * (record_prepare_raw), else from enc->out. No allocation, no system call: it runs inside a ring reservation. */
static void put_entry(const record_enc *enc, uint8_t *dst)
{
    if (enc->out_pending)
        record_write(enc, dst);
    else
        memcpy(dst, enc->out, enc->out_len);
}

/* Into the ring: enc's entry, or (enc NULL) the len bytes at data. 0, or -ENOBUFS when it has no room (or, for a
 * request, socket ingest is waiting for room: clients already waiting get it first). Reserve, write in place,
 * commit: the reservation has the entry's exact size, and nothing between reserve and commit can block or fail
 * (docs/architecture.md, "One walk, into the ring"). */
static int queue(admit *a, const record_enc *enc, const uint8_t *data, size_t len)
{
    if (a->kind == ADMIT_REQUEST && stat_get(&a->st->paused_since_ns))
        return -ENOBUFS;
    uint8_t *p = a->chunk ? ring_reserve_in(a->ring, a->chunk, len) : ring_reserve(a->ring, len);
    if (!p)
        return -ENOBUFS;
    if (enc)
        put_entry(enc, p);
    else
        memcpy(p, data, len);
    stat_add(&a->st->received, 1); /* before commit: the flusher can never count it first */
    ring_commit(a->ring, p);
    return 0;
}

/* The ring had no room for an encoded record: the --on-full policy. */
static admit_fate full(admit *a, const record_enc *enc, const record_info *info, const admit_from *from,
                       uint8_t **held, size_t *held_len)
{
    char tb[160];
    if (drops_newest(a)) {
        note_log(a, LIM_FULL, from, text(a, LIM_FULL, 0, tb, sizeof tb), 0);
        return drop(a, &a->st->dropped_full, 1, info, from, ADMIT_DROPPED_FULL);
    }
    if (a->kind == ADMIT_REQUEST) {
        stat_add(a->req_full, 1);
        snprintf(tb, sizeof tb, "buffer full: %s record refused, retry later (the caller keeps it)", a->req_name);
        note_log(a, LIM_FULL, from, tb, 0);
        return ADMIT_FULL;
    }
    uint8_t *copy = malloc(enc->out_len);
    if (!copy) {
        note_log(a, LIM_NOMEM, from, text(a, LIM_NOMEM, 0, tb, sizeof tb), 0);
        return drop(a, &a->st->dropped_nomem, 1, info, from, ADMIT_NOMEM);
    }
    put_entry(enc, copy); /* the held record has its own copy: the client's bytes move on */
    *held = copy;
    *held_len = enc->out_len;
    taken(a, info, from);
    return ADMIT_HELD;
}

/* The steps before the rate limit: the sender's bytes, then the encoder's verdict and the encoded size. Returns the
 * fate of a record refused there (counted and logged), or ADMIT_QUEUED when it passes them. */
static admit_fate refusal(admit *a, const record_enc *enc, int rc, const record_info *info, const admit_from *from)
{
    char tb[160];
    int http = a->kind == ADMIT_REQUEST;
    client_entry *ce = from->client;
    if (ce && from->tally) {
        from->tally->bytes += from->wire;
        from->tally->last_seen_ns = from->mono_ns;
    } else if (ce) {
        ce->bytes += from->wire;
        ce->last_seen_ns = from->mono_ns;
    }
    if (rc == -ENOMEM) {
        note_log(a, LIM_NOMEM, from, text(a, LIM_NOMEM, 0, tb, sizeof tb), 0);
        return http ? ADMIT_NOMEM : drop(a, &a->st->dropped_nomem, 0, info, from, ADMIT_NOMEM);
    }
    if (rc == -EINVAL) {
        note_log(a, LIM_INVALID, from, text(a, LIM_INVALID, 0, tb, sizeof tb), 0);
        return reject(a, &a->st->invalid_record, from, ADMIT_INVALID);
    }
    if (rc < 0 || enc->out_len > enc->text_limit) { /* -E2BIG: its converted text alone is past the limit */
        note_log(a, LIM_OVERSIZED, from, text(a, LIM_OVERSIZED, rc < 0, tb, sizeof tb), enc ? enc->text_limit : 0);
        return reject(a, &a->st->oversized, from, ADMIT_OVERSIZED);
    }
    return ADMIT_QUEUED;
}

admit_fate admit_record(admit *a, const record_enc *enc, int rc, const record_info *info, const admit_from *from,
                        uint8_t **held, size_t *held_len)
{
    char tb[160];
    admit_fate fate = refusal(a, enc, rc, info, from);
    if (fate != ADMIT_QUEUED)
        return fate;
    int http = a->kind == ADMIT_REQUEST;
    client_entry *ce = from->client;
    uint32_t sender = a->cfg->rate_limit_key == RATE_KEY_UID ? from->src->uid : (uint32_t)from->src->pid;
    if (a->rl && !ratelimit_allow(a->rl, sender, from->mono_ns)) {
        note_log(a, LIM_RATE, from, text(a, LIM_RATE, 0, tb, sizeof tb), 0);
        if (!http)
            return drop(a, &a->st->dropped_rate_limited, 1, info, from, ADMIT_RATE_LIMITED);
        stat_add(a->req_limited, 1);
        return ADMIT_RATE_LIMITED;
    }
    if ((http && from->full) || queue(a, enc, NULL, enc->out_len) < 0)
        return full(a, enc, info, from, held, held_len);
    if (http)
        stat_add(a->req_records, 1);
    if (ce && from->tally)
        from->tally->records++;
    else if (ce)
        ce->records++;
    taken(a, info, from);
    return ADMIT_QUEUED;
}

int admit_queue_held(admit *a, const uint8_t *data, size_t len, client_entry *client, const record_source *src)
{
    if (queue(a, NULL, data, len) >= 0) {
        if (client)
            client->records++;
        return 0;
    }
    if (!drops_newest(a))
        return -ENOBUFS;
    char tb[160]; /* drop-newest, and the spool stopped taking batches while the record waited: dropped now */
    admit_from from = {.src = src, .client = client};
    note_log(a, LIM_FULL, &from, text(a, LIM_FULL, 0, tb, sizeof tb), 0);
    drop(a, &a->st->dropped_full, 0, NULL, &from, ADMIT_DROPPED_FULL);
    return -EAGAIN;
}

admit_fate admit_unqueued(admit *a, const record_enc *enc, int rc, const record_info *info, const admit_from *from)
{
    admit_fate fate = refusal(a, enc, rc, info, from);
    if (fate != ADMIT_QUEUED)
        return fate;
    return drop(a, &a->st->dropped_shutdown, 1, info, from, ADMIT_DROPPED_SHUTDOWN);
}
