/* admit.h — the one admission path: every record offered to the agent (a native record and a Fluent Forward event on
 * a socket connection, an HTTP/JSON entry) is decided and counted here, once it is encoded.
 *
 *   encoder's result -> not a record? -> too large once encoded? -> --rate-limit -> ring -> --on-full -> counters
 *
 * The callers keep only what truly differs between them, the `kind` of sender:
 *   ADMIT_STREAM  a socket connection (native, Forward). Its bytes are read: a record that was read is the agent's.
 *                 Over --rate-limit it is dropped; when the ring is full (block, drop-oldest) the caller holds the
 *                 copy made here (ADMIT_HELD) and pauses reading, and later queues it with admit_queue_held.
 *   ADMIT_REQUEST an HTTP request. A record not taken is answered and stays the caller's: over --rate-limit (429),
 *                 ring full (503, also while socket ingest waits for room), out of memory (500).
 *
 * The counting rule (docs/protocol.md, "Counters of one record"), one place for both kinds:
 *   - every record moves exactly one of: records.received (queued, held then queued, or dropped at ingest: drop-newest
 *     `dropped.buffer_full`, `dropped.rate_limited`, `dropped.out_of_memory`), one `records.rejected.*` reason
 *     (`invalid_record`, `oversized`: the client's bad input), or one "still the caller's" counter (HTTP only:
 *     `http.refused_full`, `http.refused_rate_limited`; a 500 counts only its response);
 *   - `reserved_key` (per `_`-key), `level_unknown` and `timestamp_unparsed` are counted for an encoded record the
 *     agent takes (received, or held to be), never for one refused or left with its caller;
 *   - an allocation failure is the agent's trouble, never the client's bad input: dropped.out_of_memory (stream) or
 *     a 500 (request);
 *   - the sender's client entry (clients.h) moves with the totals: `records` with received-and-queued, `dropped` with
 *     the dropped.* above, `rejected` with rejected.* and reserved keys; `bytes` += from->wire and `last_seen` always.
 *
 * One admit per stage (ingest's and the HTTP ingest's: each has its own --rate-limit table and log limits, as before),
 * used on the main loop thread only. */
#ifndef LOGAGENT_ADMIT_H
#define LOGAGENT_ADMIT_H

#include "config.h"
#include "counters.h"
#include "ingest/clients.h"
#include "record.h"
#include "ring.h"

#include <stddef.h>
#include <stdint.h>

typedef enum admit_kind { ADMIT_STREAM, ADMIT_REQUEST } admit_kind;

/* What became of a record. */
typedef enum admit_fate {
    ADMIT_QUEUED,       /* in the ring: received */
    ADMIT_INVALID,      /* not a record (not a map, no string message): rejected.invalid_record */
    ADMIT_OVERSIZED,    /* too large once converted/encoded for one request or the ring: rejected.oversized */
    ADMIT_NOMEM,        /* the agent could not allocate: stream dropped.out_of_memory; request the caller's (500) */
    ADMIT_RATE_LIMITED, /* sender over --rate-limit: stream dropped.rate_limited; request the caller's (429) */
    ADMIT_DROPPED_FULL, /* ring full, --on-full drop-newest: received and dropped.buffer_full (both kinds) */
    ADMIT_HELD,         /* stream, ring full, block/drop-oldest: *held is the caller's to queue later; pause reading */
    ADMIT_FULL,         /* request, ring full, block/drop-oldest: the caller's (503); nothing after it may be tried */
    ADMIT_DROPPED_SHUTDOWN, /* admit_unqueued: a good record left at shutdown, dropped.shutdown */
} admit_fate;

/* Who offers the record, and what the caller knows. */
typedef struct admit_from {
    const record_source *src; /* its pid or uid is the --rate-limit key; pid/uid/comm name it in log lines */
    const char *peer;         /* log text naming it instead of src (HTTP: `pid=… uid=… comm=…`, `peer=ADDR:PORT`) */
    client_entry *client;     /* its /stats/clients entry, NULL when not attributed */
    client_tally *tally;      /* or NULL: where client's records, bytes and last_seen go (its connection folds it) */
    size_t wire;              /* bytes it took on the wire, added to client->bytes (HTTP counts whole bodies: 0) */
    int64_t mono_ns;          /* CLOCK_MONOTONIC now: rate limit, last_seen */
    int full;                 /* request: an earlier entry of the same request did not fit (order is kept) */
    const char *detail;       /* why, for the log line (HTTP: the parser's error text), or NULL */
} admit_from;

typedef struct admit admit;

/* An admission of this kind into ring r, counting into st (st->http for ADMIT_REQUEST's own). NULL when out of
 * memory. */
admit *admit_new(admit_kind kind, const config *cfg, ring *r, ingest_stats *st);
void admit_free(admit *a);
/* ADMIT_REQUEST: the counters of the stage's records taken, refused "full, retry" and refused over --rate-limit, and
 * its name in log lines ("HTTP" and st->http's by default; the OTLP/gRPC ingest has its own). Borrowed. */
void admit_set_requests(admit *a, const char *name, _Atomic uint64_t *records, _Atomic uint64_t *refused_full,
                        _Atomic uint64_t *refused_rate_limited);

/* Decides, counts and logs the record record_encode/record_encode_raw just wrote into enc (or record_prepare_raw
 * planned: its entry is then written straight into the ring reservation, or into the held copy): rc is the
 * encoder's result (0, -EINVAL, -E2BIG, -ENOMEM; a caller's own parser refusing an entry as not a record passes
 * -EINVAL and enc NULL), info what it noticed. ADMIT_QUEUED: the record is in the ring. ADMIT_HELD (stream only):
 * *held / *held_len are a copy the caller owns (free) and passes to admit_queue_held; held may be NULL for requests. */
admit_fate admit_record(admit *a, const record_enc *enc, int rc, const record_info *info, const admit_from *from,
                        uint8_t **held, size_t *held_len);

/* Shutdown (stream): a record the connection still had when the ring could take no more, classified as admit_record
 * would (the same refusals, counters and logs) but never queued: a good one is dropped (dropped.shutdown, the
 * client's `dropped`, its reserved keys and unknown level counted as taken). */
admit_fate admit_unqueued(admit *a, const record_enc *enc, int rc, const record_info *info, const admit_from *from);

/* A record held earlier (ADMIT_HELD) into the ring. Returns 0 (received; client->records), -ENOBUFS when there is
 * still no room (nothing counted: the caller keeps holding it), or -EAGAIN when it can wait no longer: --on-full
 * drop-newest with a spool that stopped taking batches meanwhile — dropped (dropped.buffer_full, client->dropped,
 * logged for src); the caller frees it and reads on. */
int admit_queue_held(admit *a, const uint8_t *data, size_t len, client_entry *client, const record_source *src);

/* The flusher (NULL: none), asked by --on-full drop-newest whether a full ring is only a moment's: with --buffer
 * disk, records wait (held, or "full, retry") while the spool takes batches, and are dropped once it does not. */
struct flusher;
void admit_set_flusher(admit *a, struct flusher *f);

/* Records go into the ring through c, the caller's chunk (ring.h: no CAS on the ring's head per record), which the
 * caller closes at the end of each burst; NULL (the default): each record reserved alone. */
void admit_set_chunk(admit *a, ring_chunk *c);

#endif
