/* flusher.h — the thread that drains the ring into batches and keeps up to max_inflight upstream calls going.
 *
 * It owns the upstream (gRPC) and everything after the ring: the batch being built, batches in flight, and
 * batches waiting to be retried. Its accounting moves under one mutex so that a snapshot always satisfies
 *   taken_from_ring = flushed + batching + in_flight + retry_wait + dropped_upstream + dropped_retry_expired
 *                     + dropped_buffer_full + dropped_shutdown. */
#ifndef LOGAGENT_FLUSHER_H
#define LOGAGENT_FLUSHER_H

#include "config.h"
#include "ring.h"
#include "flush/spool.h"

#include <stdint.h>

typedef struct flusher flusher;

/* Histogram bucket bounds (upper, inclusive), one observation per completed upstream call (batch): its latency
 * (send to last answer), its records and its bytes. Buckets are kept per range, not cumulative; index N counts
 * what lies above the last bound. */
enum { FLUSHER_LAT_N = 15, FLUSHER_SIZE_N = 11, FLUSHER_BYTES_N = 10 };
extern const double flusher_lat_bounds_ms[FLUSHER_LAT_N];
extern const double flusher_size_bounds[FLUSHER_SIZE_N];
extern const double flusher_bytes_bounds[FLUSHER_BYTES_N];

/* The q-quantile (0..1) of a latency histogram (flusher_hist_set.lat, flusher_instance.lat) in ms: the upper bound
 * of the bucket it falls in (the last bound when it lies above them all); 0 when empty. */
double flusher_lat_quantile_ms(const uint64_t lat[FLUSHER_LAT_N + 1], double q);

typedef struct flusher_hist_set {
    uint64_t lat[FLUSHER_LAT_N + 1];
    double lat_sum_s;
    uint64_t size[FLUSHER_SIZE_N + 1];
    uint64_t size_sum;   /* records */
    uint64_t bytes[FLUSHER_BYTES_N + 1];
    uint64_t bytes_sum;
    uint64_t count;      /* observations: completed calls */
} flusher_hist_set;

/* Calls per instance of the log service (--upstream-lb spreads them over a fleet): the first FLUSHER_INSTANCES - 1
 * addresses that answer keep their own row, later ones share the last ("other"). */
enum { FLUSHER_INSTANCES = 16 };
typedef struct flusher_instance {
    char address[64];  /* gRPC's name of the peer ("ipv4:10.0.0.2:4317"), "none" when the call reached none */
    uint64_t calls, failures;
    double seconds;    /* their time, send to answer */
    uint64_t lat[FLUSHER_LAT_N + 1]; /* the same times in flusher_lat_bounds_ms' ranges (one per call) */
} flusher_instance;

typedef struct flusher_snapshot {
    uint64_t taken;            /* records taken out of the ring */
    uint64_t batching;         /* in the batch being built */
    uint64_t in_flight;        /* in calls that have not completed */
    uint64_t retry_wait;       /* in batches waiting for their retry time (memory) */
    uint64_t spooled;          /* in batches on disk waiting to be sent (disk buffer) */
    uint64_t flushed;          /* acknowledged by the log service */
    uint64_t dropped_upstream; /* refused by the log service with a non-retryable status */
    uint64_t dropped_shutdown; /* still held when the drain timeout ran out */
    uint64_t dropped_retry_expired; /* retried for longer than --retry-max-elapsed-s */
    uint64_t dropped_buffer_full;   /* shed by --on-full drop-oldest */
    uint64_t dropped_spool_corrupt; /* a spooled batch that failed its CRC when read back */
    uint64_t dead_letter;      /* refused by the log service, written to the spool's deadletter.log */
    uint64_t replayed;         /* records found in the spool at start-up (received by an earlier run) */
    uint64_t held_bytes;       /* bytes of batches in flight and waiting to retry */
    uint64_t batch_budget;     /* what batches may hold: --buffer-bytes minus the ring */
    uint64_t batches_sent, batches_failed, batches_retried, unary_calls;
    int unary;                 /* 1 once the upstream mode is unary */
    int gzip_refused;          /* 1 once the service refused gzip: calls go uncompressed */
    int failing;               /* 1 from a failed call until the next success */
    int64_t failing_since_ms;  /* CLOCK_MONOTONIC ms of the first failed call since the last success (0: none) */
    int64_t heartbeat_ms;      /* CLOCK_MONOTONIC ms of the flusher loop's last turn (it turns at least every second) */
    int64_t stall_since_ms;    /* since when its turns find records in the ring but take none (0: keeping up) */
    char last_error[200];
    double latency_ms[3];      /* p50, p90, p99 of call latency */
    flusher_hist_set hist;
    flusher_instance inst[FLUSHER_INSTANCES];
    unsigned n_inst;
    int has_spool;
    spool_stats spool;
} flusher_snapshot;

/* Called from the flusher thread when the ring has drained below half after flusher_want_space. */
typedef void (*flusher_space_fn)(void *arg);

/* Creates the flusher and its upstream; does not start the thread. NULL on failure (logged). */
flusher *flusher_new(const config *cfg, ring *r, flusher_space_fn on_space, void *space_arg);
int flusher_start(flusher *f);

/* Any thread: new records are in the ring (cheap when the flusher is busy). */
void flusher_notify(flusher *f);
/* Any thread: call on_space once the ring has room again. */
void flusher_want_space(flusher *f);
/* Any thread (--on-full drop-oldest), each time the ring is full: drop the oldest records not in flight (the
 * queued batches — with --buffer disk the oldest spool segment —, the batch being built, the oldest records of the
 * ring) until an eighth of the ring is free, and at least twice a `need`-byte record with its header (so a record
 * of that size fits wherever the ring wraps), then on_space. */
void flusher_shed_oldest(flusher *f, size_t need);
/* Any thread: 1 when a full ring is only a moment's (--buffer disk, and the spool took the last batch it was offered:
 * the ring drains into it), 0 when the disk buffer itself is full or failing, or without --buffer disk. --on-full
 * drop-newest drops only when this is 0; when the spool stops taking batches the flusher calls on_space (once per
 * flusher_want_space) so that a connection held on a full ring is looked at again and its record dropped. */
int flusher_disk_has_room(flusher *f);

/* --buffer disk, Forward acks (ingest.c). Records are numbered 1, 2, ... in the order they enter the ring (every
 * producer runs on the main loop thread and counts ingest_stats.received as it reserves, so record k is the one
 * that made `received` k). The flusher takes them in that order; `settled` = every record numbered up to it has
 * left memory: appended to the spool (fdatasync'd first under --spool-fsync always) or dropped before reaching it
 * (--on-full drop-oldest shedding the batch being built or the ring); `lost` = the highest number so dropped
 * (0: none). Any thread; `lost` is read after `settled`, so a drop that settled a record is always seen. */
void flusher_spooled(flusher *f, uint64_t *settled, uint64_t *lost);
/* Called from the flusher thread after `settled` moved, once per flusher_want_spooled (coalesced). */
typedef void (*flusher_spooled_fn)(void *arg);
/* Main thread, before flusher_start. */
void flusher_set_spooled_fn(flusher *f, flusher_spooled_fn fn, void *arg);
/* Any thread: call the spooled fn the next time `settled` moves. Call it BEFORE reading flusher_spooled (then a
 * move between the two is never missed). */
void flusher_want_spooled(flusher *f);

/* Flushes what is held for up to drain_ms, then gives up on the rest (counted dropped_shutdown), joins the
 * thread and shuts the upstream down. Records must no longer be pushed into the ring. */
void flusher_stop(flusher *f, int64_t drain_ms);
void flusher_free(flusher *f);

/* Any thread (SIGHUP): takes batch_max_records, batch_max_bytes and flush_interval_ms from cfg. */
void flusher_reload(flusher *f, const config *cfg);

/* Any thread: CLOCK_MONOTONIC ms at which the flusher thread last went round its loop (it wakes at least once a
 * second); 0 before it started. The systemd watchdog is fed only while this moves. */
int64_t flusher_heartbeat_ms(flusher *f);

void flusher_snapshot_get(flusher *f, flusher_snapshot *s);

#endif
