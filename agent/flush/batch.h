/* batch.h — a BatchWriteLogsRequest being assembled from already-encoded WriteLogRequest records.
 *
 * The body is `repeated WriteLogRequest entries = 1` framed by hand (tag, length, bytes), so adding a record
 * is one memcpy; the trailer (agent_id, batch_id) is written by batch_payload at send time. The batch also
 * remembers where each entry sits, so unary mode and partial rejects can address entries one by one.
 * A batch is owned by exactly one stage at a time (flusher while building or retrying, upstream while in
 * flight); nothing in it is shared. */
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

typedef struct batch {
    uint8_t *buf;     /* framed entries */
    size_t len, cap;
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
    int evicted;          /* spooled and its bytes freed from memory: batch_load before sending */
    spool_ref ref;
    batch_call whole;     /* call argument in batch mode */
    batch_call *calls;    /* call arguments in unary mode, one per entry */
    struct batch *next;   /* retry queue link */
} batch;

enum batch_entry_state { ENTRY_OK = 0, ENTRY_RETRY = 1, ENTRY_DROP = 2 };

batch *batch_new(uint64_t id);
void batch_free(batch *b);

/* Bytes the batch's request would have with one more entry of `len` bytes (trailer not counted). */
size_t batch_size_with(const batch *b, size_t len);

/* Appends one encoded WriteLogRequest. Returns 0 or -ENOMEM (batch unchanged). */
int batch_add(batch *b, const void *rec, size_t len);

/* Frees the entries' memory of a spooled batch (n, len and ref stay). */
void batch_evict(batch *b);

/* Restores entries from their framed bytes (as batch->buf holds them). Returns 0, -EINVAL if they don't parse, or
 * -ENOMEM. */
int batch_load(batch *b, const uint8_t *framed, size_t len);

/* Entry i's WriteLogRequest bytes. */
static inline const uint8_t *batch_entry(const batch *b, size_t i, size_t *len)
{
    *len = b->elen[i];
    return b->buf + b->off[i];
}

/* Writes the complete BatchWriteLogsRequest (entries + agent_id + batch_id) into a new malloc'd buffer that
 * the caller owns. Returns NULL on allocation failure. */
uint8_t *batch_payload(const batch *b, const char *agent_id, size_t *len);

#endif
