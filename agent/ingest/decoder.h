/* decoder.h — one connection's byte stream in, whole top-level msgpack objects out: no libevent, no msgpack-c.
 *
 * The caller reads from its socket straight into the decoder's buffer (decoder_space, then decoder_wrote with what
 * read(2) returned). mpscan (mpscan.h) walks the new bytes once, bounding every length before anything is decoded
 * (--max-record-bytes, nesting, item budgets; a top-level array — a Fluent Forward message — has its own limit),
 * and the decoder notes where each object ends. decoder_next then hands out the complete objects in order as spans
 * of its buffer: a native record goes to record_encode_raw as it is, a Forward message to msgpack-c. With a taker
 * (decoder_set_taker), a native record wholly in the buffer is walked once, by the encoder, instead: the taker
 * encodes and admits it right there, and the scanner's verdict follows from that walk (mpscan_walked). Any split of
 * the stream gives the same objects and the same verdict. A refused object (malformed, oversized) stops the
 * scanning; the objects before it are still handed out.
 *
 * Spans stay valid until the next decoder_space, which may move the unhanded bytes to the front or to a larger
 * buffer — unless the decoder is pinned (decoder_pin): then nothing already handed out moves or is freed until it
 * is unpinned (a Forward message's msgpack-c objects point into its bytes while its events are handed out).
 *
 * Memory: the buffer starts at `first` bytes and doubles when a record needs more; decoder_grown_cap says what a
 * decoder_space would grow it to, so --ingest-memory-bytes can refuse the growth before it happens. */
#ifndef LOGAGENT_DECODER_H
#define LOGAGENT_DECODER_H

#include "ingest/mpscan.h"

#include <stddef.h>
#include <stdint.h>

typedef struct decoder_old decoder_old;

/* A taker (decoder_set_taker): offered a native record — a top-level map, at a record boundary, with nothing before
 * it still to hand out — that starts at p with `avail` bytes of the buffer after it. It walks the record once (the
 * encoder's walk: record_prepare_raw), and when that walk read it whole and well-formed, asks mpscan_walked for the
 * scanner's verdict; on MPSCAN_OK it takes the record (encodes and admits it) and returns 1 with *used = its size.
 * Otherwise it returns 0 having taken nothing, and the decoder scans the record as it would without a taker.
 * With s NULL, the record is exactly [p, p + avail) and the scanner has passed it already (a record cut by a read, or
 * one the taker's walk did not settle): the taker takes it as decoder_next's caller would (1), or declines (0) and it
 * is handed out by decoder_next. Either way the taker declines whenever records must wait (its caller's backpressure):
 * the decoder then hands out every later record in order. */
typedef int (*decoder_taker)(void *ctx, mpscan *s, const uint8_t *p, size_t avail, size_t *used);

typedef struct decoder {
    uint8_t *buf;          /* owned; NULL only after a failed decoder_shrink */
    size_t cap, first;     /* its size; the size it starts (and shrinks back) at */
    size_t start, end;     /* [start, end): bytes not handed out yet */
    size_t scanned;        /* bytes up to here went through mpscan */
    size_t obj_start;      /* where the object mpscan is inside of began */
    uint32_t *lens;        /* sizes of the complete objects not handed out yet, in order: lens[next..n) */
    size_t n, next, lens_cap;
    mpscan scan;
    int fail;              /* MPSCAN_MALFORMED / MPSCAN_OVERSIZED once refused: nothing more is scanned */
    int pinned;
    decoder_old *old;      /* buffers replaced while pinned: freed at decoder_pin(d, 0) */
    size_t old_bytes;
    decoder_taker take;    /* NULL, or who takes a whole native record as it is read (one walk) */
    void *take_ctx;
} decoder;

/* Sets up an empty decoder with a `first`-byte buffer and mpscan's limits (max_record for every object, max_array
 * >= max_record for a top-level array). Returns 0 or -ENOMEM. */
int decoder_init(decoder *d, size_t first, uint64_t max_record, uint64_t max_array);
void decoder_free(decoder *d);

/* Room for at least `want` more bytes at the end: moves or grows the buffer as needed (not over what is pinned).
 * Returns where to write and sets *room (>= want), or NULL when out of memory. */
uint8_t *decoder_space(decoder *d, size_t want, size_t *room);

/* From now on, native records found whole by decoder_wrote are first offered to `take` (see decoder_taker): a record
 * it takes is never handed out by decoder_next; everything else is scanned and handed out as before, in order. */
static inline void decoder_set_taker(decoder *d, decoder_taker take, void *ctx)
{
    d->take = take;
    d->take_ctx = ctx;
}

/* n bytes were written at decoder_space's pointer: scans them. Returns 0, or the MPSCAN_* refusal met in them (also
 * kept in d->fail; the complete objects before it are still handed out). */
int decoder_wrote(decoder *d, size_t n);

/* The next complete object: 1 with *p / *len set, 0 when none is complete. */
int decoder_next(decoder *d, const uint8_t **p, size_t *len);

/* Complete objects not handed out yet. */
static inline size_t decoder_pending(const decoder *d) { return d->n - d->next; }

/* While pinned, bytes already handed out are neither moved nor freed. Unpinning frees the buffers replaced
 * meanwhile. */
void decoder_pin(decoder *d, int on);

/* The stream stops inside an object that may still complete (a client that closes now truncated one); never after
 * a refusal. */
static inline int decoder_mid_object(const decoder *d) { return !d->fail && mpscan_mid_record(&d->scan); }

/* Bytes held: the buffer, and the ones replaced while pinned. */
static inline size_t decoder_cap(const decoder *d) { return d->cap + d->old_bytes; }

/* Bytes decoder_space can offer without growing the buffer (moving the unhanded bytes to the front if needed). */
static inline size_t decoder_room(const decoder *d)
{
    return !d->buf ? 0 : d->pinned ? d->cap - d->end : d->cap - (d->end - d->start);
}

/* What decoder_cap would be after decoder_space(d, want). */
size_t decoder_grown_cap(const decoder *d, size_t want);

/* Gives the buffer back for a `first`-byte one when it holds nothing (no object in progress, nothing unhanded,
 * not pinned) and is larger than `above`. Returns 1 when it did, 0 when not, -ENOMEM when no new buffer could be
 * had (the decoder then has none: decoder_space fails). */
int decoder_shrink(decoder *d, size_t above);

#endif
