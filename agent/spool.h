/* spool.h — the disk buffer: batches appended to segment files before they are sent, released when their fate
 * is settled, replayed in order after a restart.
 *
 * A segment is `seg-<16 hex>.log`, a sequence of frames: a 24-byte header (magic, payload length, CRC-32 of the
 * rest, record count, batch id) and the batch's framed entries. A segment is deleted once every batch in it is
 * settled (and it is no longer the one being appended to). Torn or corrupt frames found at start-up are cut off
 * or skipped and counted, never a crash. Non-retryable batches go to `deadletter.log` in the same framing.
 * Thread-safe: its own mutex; calls do file I/O, so callers should not hold their own locks around them. */
#ifndef LOGAGENT_SPOOL_H
#define LOGAGENT_SPOOL_H

#include <stddef.h>
#include <stdint.h>

enum spool_fsync { SPOOL_FSYNC_ALWAYS = 0, SPOOL_FSYNC_INTERVAL = 1, SPOOL_FSYNC_NEVER = 2 };

typedef struct spool spool;

/* Where one batch lives on disk. */
typedef struct spool_ref {
    uint64_t seg;     /* segment number */
    uint64_t off;     /* frame offset in the segment */
    uint32_t len;     /* payload bytes */
    uint32_t n;       /* records */
    uint64_t id;      /* batch id */
} spool_ref;

typedef struct spool_stats {
    uint64_t bytes, segments;
    uint64_t corrupt_frames; /* frames skipped at start-up: bad CRC */
    uint64_t torn_bytes;     /* bytes cut off segment tails at start-up */
    uint64_t dead_letter_batches;
    uint64_t read_errors;    /* frames that failed their CRC when read back for sending */
} spool_stats;

/* Opens (creating it 0700 if needed) dir, scans the segments left by an earlier run, repairs torn tails.
 * The frames found are then handed out by spool_replay_next. Returns 0 or -errno (logged). */
int spool_open(const char *dir, uint64_t max_bytes, int fsync_mode, spool **out);
void spool_close(spool *sp);

/* The next batch found at open, oldest first. Returns 1 and fills ref, or 0 when there are no more. The batch is
 * held until spool_release(ref->seg). */
int spool_replay_next(spool *sp, spool_ref *ref);

/* Appends a batch. Returns 0 and fills ref, -ENOSPC when the spool is at --spool-max-bytes, or -errno. */
int spool_append(spool *sp, uint64_t id, uint32_t n, const uint8_t *payload, size_t len, spool_ref *ref);

/* Reads a batch's payload (ref->len bytes) into buf, checking its CRC. Returns 0, -EIO on a bad CRC, or -errno. */
int spool_read(spool *sp, const spool_ref *ref, uint8_t *buf);

/* One batch of segment `seg` is settled (delivered, dropped or dead-lettered): deletes the segment when it was
 * the last one and the segment is full. */
void spool_release(spool *sp, uint64_t seg);

/* Writes a refused batch to deadletter.log. Returns 0 or -errno. */
int spool_dead_letter(spool *sp, uint64_t id, uint32_t n, const uint8_t *payload, size_t len);

/* SPOOL_FSYNC_INTERVAL: syncs the open segment when it has unsynced data and a second has passed. */
void spool_tick(spool *sp);

void spool_get_stats(spool *sp, spool_stats *out);

#endif
