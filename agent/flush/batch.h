/* batch.h — a BatchWriteLogsRequest being assembled from already-encoded WriteLogRequest records.
 *
 * The body is `repeated WriteLogRequest entries = 1` framed by hand (tag, length, bytes), so adding a record
 * is one memcpy (the only copy of a record's bytes on the flush side: ring -> batch); the trailer (agent_id,
 * batch_id) is written once, by batch_request, into the room kept after the entries, so the whole request is
 * one contiguous run of the batch's own buffer and gRPC sends it from there. The batch also remembers where
 * each entry sits, so unary mode and partial rejects can address entries one by one.
 *
 * Ownership. A batch (the struct, its entry index, its unary state) is owned by exactly one stage at a time
 * (flusher while building or retrying, upstream while in flight); nothing in it is shared. Its bytes live in a
 * batch_buf, reference-counted: the batch holds one reference, and every gRPC slice made from them holds
 * another (batch_buf_hold, released by the slice's destroy callback through batch_buf_release, on whichever
 * thread gRPC drops it — possibly after the call's done callback, after the batch was freed, evicted or
 * re-sent). So a retried batch re-sends the same bytes while an earlier call's slice may still exist, and
 * freeing or evicting the batch never frees bytes gRPC still reads. The rule that makes sharing safe: bytes a
 * slice may cover are never written again. batch_add into a shared buffer first moves the batch to a private
 * copy (never happens on the paths of flusher.c: only `cur` is added to, and it is never sent before it leaves
 * `cur`); the trailer is written only into the room past the entries, which no slice covers before it exists. */
#ifndef LOGAGENT_BATCH_H
#define LOGAGENT_BATCH_H

#include "flush/spool.h"

#include <stddef.h>
#include <stdint.h>

struct batch;

/* The argument of one upstream call: the whole batch (index BATCH_WHOLE) or one entry of it (unary). */
typedef struct batch_call {
    struct batch *b;
    uint32_t index;
} batch_call;
#define BATCH_WHOLE UINT32_MAX

/* A batch's bytes (batch.c): refcounted so that gRPC slices can share them (see the top of this file). */
typedef struct batch_buf batch_buf;

typedef struct batch {
    uint8_t *buf;     /* framed entries (inside mem; NULL when there is none) */
    size_t len, cap;  /* entries' bytes; room in buf (entries and the trailer) */
    size_t tlen;      /* trailer bytes written at buf + len by batch_request (0: not yet) */
    size_t room;      /* bytes kept past the entries for the trailer (agent_id, batch_id, resource) */
    batch_buf *mem;   /* the batch's reference to its bytes */
    uint32_t *off;    /* per entry: offset of its WriteLogRequest bytes in buf */
    uint32_t *elen;   /* per entry: their length */
    size_t n, ncap;
    uint64_t id;
    unsigned attempt;     /* sends so far */
    int64_t first_ms;     /* monotonic ms when the first record was added */
    int64_t observed_ns;  /* wall-clock ns when the first record was taken from the ring (OTLP's observed time);
                           * 0 when unknown (a batch read back from the spool at start-up) */
    int64_t retry_at_ms;  /* when waiting to retry: not before this */
    int64_t first_sent_ms; /* monotonic ms of the first send, for --retry-max-elapsed-s */
    int64_t sent_ns;      /* monotonic ns of the last send, for the latency histogram */
    int unary;            /* in flight as one WriteLog call per entry */
    unsigned pending;     /* unary: calls not yet completed */
    uint8_t *state;       /* unary: per-entry outcome (batch_entry_state) */
    int spooled;          /* has a frame in the spool (ref), held there until its fate is settled */
    int evicted;          /* spooled and its bytes freed from memory: read back (batch_load_begin/end) before sending */
    int earlier_run;      /* found in the spool at start-up: written by an earlier run, maybe for the other protocol */
    spool_ref ref;
    int pinned;           /* not spooled itself, but its records are in segment pin_seg (a retry batch the spool had
                           * no room for keeps its parent's frame on disk: spool_hold), released when it settles */
    uint64_t pin_seg;
    batch_call whole;     /* call argument in batch mode */
    batch_call *calls;    /* call arguments in unary mode, one per entry */
    struct batch *next;   /* retry queue link */
} batch;

enum batch_entry_state { ENTRY_OK = 0, ENTRY_RETRY = 1, ENTRY_DROP = 2 };

/* A new empty batch whose requests will carry resource_len bytes of BatchWriteLogsRequest.resource (0: none;
 * flush/resattr.h) besides agent_id and batch_id: the room every buffer keeps past its entries. */
batch *batch_new(uint64_t id, size_t resource_len);
/* Frees the batch and drops its reference to its bytes (freed now, or when gRPC drops the last slice). */
void batch_free(batch *b);

/* Makes room for `bytes` of entries (plus the trailer) and `records` entries, so that batch_add does not grow
 * the buffer on the way (one allocation per batch instead of a doubling realloc chain). Returns 0 or -ENOMEM
 * (batch unchanged). */
int batch_reserve(batch *b, size_t bytes, size_t records);

/* Bytes the batch's request would have with one more entry of `len` bytes (the trailer's room counted). */
size_t batch_size_with(const batch *b, size_t len);

/* Appends one encoded WriteLogRequest (the trailer, if written, is dropped: batch_request writes it again).
 * Returns 0 or -ENOMEM (batch unchanged). */
int batch_add(batch *b, const void *rec, size_t len);

/* Drops the batch's entries from memory (a spooled batch: n, len and ref stay); gRPC keeps what it holds. */
void batch_evict(batch *b);

/* Reading an evicted batch back from the spool, without a copy: batch_load_begin gives a new private buffer
 * for the batch's `len` framed bytes (as batch->buf holds them; room for the trailer kept), the caller reads
 * them into it, and batch_load_end indexes the entries where they lie. begin returns NULL when memory ran out;
 * end returns 0, or -EINVAL when the bytes do not parse as b->n entries (or -ENOMEM). */
uint8_t *batch_load_begin(batch *b, size_t len);
int batch_load_end(batch *b);

/* Removes field `field` from every entry (in place: the batch only shrinks), then indexes the entries again.
 * For a batch read back from the spool: entries written for an OTLP upstream carry the agent's private metadata
 * types (record.h, RECORD_F_META_TYPES), which a native log service must not receive. Returns how many bytes it
 * removed, or -EINVAL when an entry does not parse (the batch is then unchanged). */
long batch_strip_field(batch *b, uint32_t field);

/* Entry i's WriteLogRequest bytes. */
static inline const uint8_t *batch_entry(const batch *b, size_t i, size_t *len)
{
    *len = b->elen[i];
    return b->buf + b->off[i];
}

/* The complete BatchWriteLogsRequest (entries + agent_id + batch_id): b's own bytes, the trailer written past
 * the entries the first time (the same bytes every later time: agent_id and id do not change). The pointer is
 * b->buf; it stays valid while a reference to b->mem is held. Returns NULL on allocation failure. */
const uint8_t *batch_request(batch *b, const char *agent_id, const uint8_t *resource, size_t resource_len,
                             size_t *len);

/* A new reference to b's bytes (b must have some: after batch_request, or for an entry of a loaded batch), for
 * a gRPC slice to own. Pass it to batch_buf_release when done; its type fits a slice's destroy callback. */
void *batch_buf_hold(batch *b);
/* Drops one reference (any thread); the last one frees the bytes. */
void batch_buf_release(void *mem);

#endif
