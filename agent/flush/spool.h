/* spool.h — the disk buffer: batches appended to segment files before they are sent, released when their fate
 * is settled, replayed in order after a restart.
 *
 * A segment is `seg-<16 hex>.log`, a sequence of frames: a 24-byte header (magic, payload length, CRC-32 of the
 * rest, record count, batch id) and the batch's framed entries. A segment is deleted once every batch in it is
 * settled (and it is no longer the one being appended to). Torn or corrupt frames found at start-up are cut off
 * or skipped and counted, never a crash. A full filesystem (ENOSPC, EDQUOT) is a state, not an error: the append
 * segment is sealed (deleted once its batches are settled), appends fail fast until space frees, and each
 * episode is logged once and counted.
 * Non-retryable batches go to `deadletter.log` (frames with the refusal's status, reason and time: spool.c),
 * bounded by rotation to `deadletter.log.1`.
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
    uint64_t disk_full;          /* 1 while appends fail for lack of space on the filesystem (ENOSPC/EDQUOT) */
    uint64_t disk_full_episodes; /* times the filesystem was found full (0 -> 1 transitions of disk_full) */
    uint64_t write_errors;       /* appends that failed for another reason (EIO, EROFS, ...) */
    uint64_t fsync_errors;       /* fdatasync failures (the batch is kept in memory under --spool-fsync always) */
    uint64_t dead_letter_bytes;  /* deadletter.log + deadletter.log.1 now */
    uint64_t dead_letter_evicted_records; /* records rotated out of the dead-letter files (--deadletter-max-bytes) */
} spool_stats;

/* Why a batch was dead-lettered: the gRPC status (0 for entries a BatchWriteLogsResponse refused one by one)
 * and the service's words. */
typedef struct spool_refusal {
    int status;
    const char *reason;
} spool_refusal;

/* Opens (creating it 0700 if needed) dir, scans the segments left by an earlier run, repairs torn tails.
 * The frames found are then handed out by spool_replay_next. Returns 0 or -errno (logged). */
int spool_open(const char *dir, uint64_t max_bytes, int fsync_mode, spool **out);

/* --deadletter-max-bytes (0: no dead-letter file, spool_dead_letter refuses). Call before the first dead letter. */
void spool_set_dead_letter_max(spool *sp, uint64_t max_bytes);
void spool_close(spool *sp);

/* The next batch found at open, oldest first. Returns 1 and fills ref, or 0 when there are no more. The batch is
 * held until spool_release(ref->seg). */
int spool_replay_next(spool *sp, spool_ref *ref);

/* Appends a batch. Returns 0 and fills ref; -ENOBUFS when the spool is at --spool-max-bytes; -ENOSPC or -EDQUOT
 * when the filesystem is full (stats.disk_full, logged by the spool once per episode); or another -errno (EIO,
 * and the fdatasync's error under --spool-fsync always). On failure nothing of the frame is left in the file. */
int spool_append(spool *sp, uint64_t id, uint32_t n, const uint8_t *payload, size_t len, spool_ref *ref);

/* Reads a batch's payload (ref->len bytes) into buf, checking its CRC. The flusher reads it straight into the
 * batch's new buffer (batch_load_begin), which gRPC then sends as it is. Returns 0, -EIO on a bad CRC, or -errno. */
int spool_read(spool *sp, const spool_ref *ref, uint8_t *buf);

/* One batch of segment `seg` is settled (delivered, dropped or dead-lettered): deletes the segment when it was
 * the last one and the segment is full. */
void spool_release(spool *sp, uint64_t seg);

/* One more holder of segment `seg` (released by spool_release like a batch): keeps its frames on disk, and replayed
 * at the next start, until then. No-op when the segment is gone. */
void spool_hold(spool *sp, uint64_t seg);

/* Writes a refused batch to deadletter.log, rotating it to deadletter.log.1 first when the two would pass
 * --deadletter-max-bytes (the records of the old .1 are counted dead_letter_evicted_records). Returns 0;
 * -EFBIG when the frame alone is over half the bound (or there is no dead-letter file); or -errno (nothing of
 * the frame left behind). */
int spool_dead_letter(spool *sp, uint64_t id, uint32_t n, const uint8_t *payload, size_t len, const spool_refusal *why);

/* Call about once a second or more: SPOOL_FSYNC_INTERVAL syncs the open segment when it has unsynced data and a
 * second has passed; a disk-full episode is closed (and logged) once appends have worked for 5 s. */
void spool_tick(spool *sp);

void spool_get_stats(spool *sp, spool_stats *out);

#endif
