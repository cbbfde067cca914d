/* ring.h — the bounded, lock-free, multi-producer single-consumer byte ring between ingest and flusher.
 *
 * Records are variable-length byte strings (already-encoded WriteLogRequest messages). Producers reserve
 * space, write the record in place and commit it; the single consumer peeks committed records in order
 * and releases them. No mutex anywhere; see the DESIGN block in ring.c for the memory-ordering argument. */
#ifndef LOGAGENT_RING_H
#define LOGAGENT_RING_H

#include <stddef.h>
#include <stdint.h>

typedef struct ring ring;

/* Largest record a ring of capacity `cap` accepts (a quarter of it, so one huge record can't wedge it). */
size_t ring_max_record(const ring *r);

/* Creates a ring holding at least `capacity_bytes` (rounded up to a power of two, minimum 4 KiB,
 * maximum 1 GiB). Returns NULL on allocation failure or a bad size. */
ring *ring_new(size_t capacity_bytes);
void ring_free(ring *r);

/* Producer side (any number of threads). ring_reserve returns a pointer to `len` writable bytes, or NULL
 * when the ring is full (or len > ring_max_record). The caller writes the record and then must call
 * ring_commit (or ring_abort) on that pointer; until then the consumer waits at this record. Lock-free. Writing
 * a record in place (an encoder straight into the ring): docs/architecture.md, "One walk, into the ring". */
void *ring_reserve(ring *r, size_t len);
void ring_commit(ring *r, void *rec);
/* Gives a reservation up instead of committing it (an encode that fails after ring_reserve): its span is published
 * as padding, which the consumer skips, so the consumer is never held at it. Like ring_commit: the exact pointer
 * ring_reserve returned, once, and no write to the span after it. */
void ring_abort(ring *r, void *rec);
/* A producer's own span of the ring (zeroed: none open), for ring_reserve_in: records carved from it cost no CAS on
 * the ring's shared head. Owned by one thread. The consumer stops at the first record of an open chunk not yet
 * carved and committed, so the producer closes it (ring_chunk_close) before it stops producing for a while: at the
 * end of each burst (ingest: after each connection's records are taken), and before it waits for room. Records
 * of one chunk come out in the order they were carved; chunks in the order they were claimed — so a producer that
 * needs ring order to equal the order of its admissions across threads (Forward acks with --buffer disk) uses
 * ring_reserve. */
typedef struct ring_chunk {
    uint64_t pos, end;
} ring_chunk;
/* As ring_reserve, from c (claiming a new chunk when c has no room; a record over half a chunk is reserved alone).
 * The record is committed with ring_commit / ring_abort as any other. NULL when the ring is full (c is then
 * closed). */
void *ring_reserve_in(ring *r, ring_chunk *c, size_t len);
/* Publishes the rest of c as padding and empties it. Call before the consumer must see past c. */
void ring_chunk_close(ring *r, ring_chunk *c);
/* Convenience: reserve + memcpy + commit. Returns 0, or -ENOBUFS when full, -EMSGSIZE when too large. */
int ring_push(ring *r, const void *data, size_t len);

/* Consumer side (exactly one thread at a time). ring_peek returns the oldest committed record not yet
 * consumed and sets *len, or NULL when there is none. ring_consume(r) marks that record consumed; space is
 * handed back to producers in ring_release, which the consumer calls after a run of consumes (it zeroes
 * the freed bytes and publishes the new tail). Wait-free. */
const void *ring_peek(ring *r, size_t *len);
void ring_consume(ring *r);
void ring_release(ring *r);

/* Racy-but-safe snapshots for stats and watermarks (any thread). */
size_t ring_used_bytes(const ring *r);
size_t ring_capacity(const ring *r);

#endif
