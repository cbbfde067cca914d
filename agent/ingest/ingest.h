/* ingest.h — the ingest stage: the Unix listening socket, client connections, msgpack decoding, and
 * backpressure. Runs on the main libevent loop (loop 0: the listeners and its share of the connections) and on
 * --ingest-threads - 1 more loops of its own (ingest.c, Threads); the functions below are the main thread's.
 *
 * Each connection reads into its own msgpack-c streaming unpacker, guarded by an mpscan that refuses
 * oversized or malformed input before msgpack-c buffers it. Complete records are mapped (record.h) and
 * pushed into the ring. When the ring is full, reading stops on every connection of that loop (clients feel it
 * as a full socket; connections stay open) until the flusher reports the ring half empty again. */
#ifndef LOGAGENT_INGEST_H
#define LOGAGENT_INGEST_H

#include "config.h"
#include "counters.h"
#include "ring.h"

#include <event2/event.h>

typedef struct ingest ingest;
struct flusher;

/* Creates the stage (no socket yet): loop 0 on `base` with counters `st`, and the other loops (their event bases and
 * counters, chained from st->next_thread; their threads start with ingest_listen*). NULL on allocation failure. */
ingest *ingest_new(struct event_base *base, const config *cfg, ring *r, ingest_stats *st);
void ingest_set_flusher(ingest *in, struct flusher *f);

/* Binds the ingest socket with mode 0660. Refuses (-EADDRINUSE) when a live agent answers on the path,
 * removes a stale socket file, refuses (-EEXIST) a path that is not a socket. Errors are logged. */
int ingest_listen(ingest *in);

/* Main thread (SIGHUP): re-reads what may change live from the config it was given (batch_max_bytes bounds
 * one record; on_full is read where it is used). */
void ingest_reload(ingest *in);

/* Serves an already listening socket handed over by systemd (socket activation). The socket file is left in
 * place at shutdown; connections that arrive meanwhile wait in the kernel for the next agent. */
int ingest_listen_fd(ingest *in, int fd);

/* flusher_space_fn: the ring has room again; safe from any thread. */
void ingest_space_available(void *arg);

/* Stops accepting (the socket file is removed), reads what clients already wrote (waiting for ring space up
 * to deadline_ms of CLOCK_MONOTONIC), then closes every connection; every loop drains its own on its thread, and
 * the threads are joined before this returns. Records it could not queue are counted
 * dropped_shutdown. */
void ingest_shutdown(ingest *in, int64_t deadline_ms);
void ingest_free(ingest *in);

#endif
