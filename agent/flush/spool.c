/* spool.c — segment files for the disk buffer (see spool.h).
 *
 * DESIGN
 * Frame = header {u32 magic "LAS1", u32 payload_len, u32 crc, u32 n_records, u64 batch_id} (little-endian) +
 * payload. The CRC (zlib crc32) covers n_records, batch_id and the payload, so a flipped bit anywhere but the
 * length is caught; a bad length shows as a frame running past the end of the file (torn tail).
 * Start-up scan, per segment in name order: frames are checked one by one; a bad CRC with a plausible length is
 * skipped (counted corrupt_frames); a header that is not a frame, or a frame running past the end, ends the
 * segment: the file is truncated there (counted torn_bytes). Each good frame becomes a replay ref.
 * Every live batch holds its segment: `live` counts them; a segment with live == 0 that is not the append
 * segment is unlinked. Appends go to the newest segment until it passes seg_max, then a new one is started;
 * an append segment whose frames are all settled is deleted once it holds RECYCLE_BYTES (when its last batch is
 * settled, or at the next append), so delivered batches never hold more than that of the disk (seg_max can be
 * 64 MiB).
 *
 * Failed appends: a frame is written whole or not at all — a short or failed write (or a failed fdatasync under
 * --spool-fsync always) is truncated back to where the frame began, and the append segment is sealed: closed,
 * never appended to again, unlinked as soon as its last batch is settled (at once when it has none). So a torn
 * frame can only ever be a segment's tail (cut at the next start), never sit between good frames, and the space
 * of a segment that cannot grow is given back when its batches are delivered. ENOSPC and EDQUOT start a disk-full
 * episode (logged once, counted): while it lasts, an append first asks statvfs whether the frame would fit and
 * fails fast without writing when it would not (EDQUOT, which statvfs cannot see, just tries). The first
 * append that succeeds clears st.disk_full; the episode ends (logged) after EPISODE_QUIET_MS without a failure.
 *
 * Dead letters: deadletter.log holds frames with magic "LAD1" (older versions wrote "LAS1" frames without the
 * refusal block, still read by logagentctl). Payload = refusal block {u32 block_len (>= 16, includes itself),
 * i64 refused_at unix ns, i32 gRPC status, reason bytes (block_len - 16, UTF-8, no NUL)} + the batch's framed
 * entries; the CRC covers n_records, batch_id and the whole payload. The file and deadletter.log.1 together
 * stay under --deadletter-max-bytes: when deadletter.log would pass half of it, it is renamed over
 * deadletter.log.1 (the records of the old .1 are counted evicted). docs/reliability.md documents the format. */
#include "flush/spool.h"
#include "common/clock.h"
#include "common/utf8.h"

#include "log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#define SPOOL_MAGIC 0x3153414cu /* "LAS1" little-endian */
#define DEAD_MAGIC 0x3144414cu  /* "LAD1" little-endian */
#define HDR 24u
#define REFUSAL_FIXED 16u       /* block_len + refused_at + status */
#define REASON_MAX 1024u
#define EPISODE_QUIET_MS 5000
#define RECYCLE_BYTES (1u << 20) /* an append segment holding only settled frames is replaced past this size */

typedef struct seg {
    uint64_t num;
    uint64_t size;
    uint64_t live; /* batches not yet settled */
} seg;

struct spool {
    pthread_mutex_t mu;
    char dir[256];
    uint64_t max_bytes, seg_max;
    int fsync_mode;
    seg *segs; /* ascending by num */
    size_t nsegs, segcap;
    int fd;             /* append segment (the last in segs), -1 when none */
    int dirty;
    int64_t last_sync_ms;
    spool_ref *replay; /* frames found at open */
    size_t nreplay, replay_next;
    int disk_err;          /* ENOSPC or EDQUOT while st.disk_full */
    int episode;           /* a disk-full episode is open: from the first ENOSPC/EDQUOT until EPISODE_QUIET_MS
                            * without one (a spool refilling while it drains stays one episode, one log line) */
    int64_t episode_since_ms, last_full_ms;
    uint64_t dead_max;     /* --deadletter-max-bytes */
    log_limit fsync_log;
    spool_stats st;
};

static void seg_path(const spool *sp, uint64_t num, char *buf, size_t n)
{
    snprintf(buf, n, "%s/seg-%016llx.log", sp->dir, (unsigned long long)num);
}

static uint64_t file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (uint64_t)st.st_size : 0;
}

static void put32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static void put64(uint8_t *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static uint32_t get32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }
static uint64_t get64(const uint8_t *p) { return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32; }

static uint32_t frame_crc(const uint8_t *hdr, const uint8_t *payload, size_t len)
{
    uLong c = crc32(0L, hdr + 12, 12); /* n_records + batch_id */
    /* zlib's crc32 with a NULL buffer returns its initial value, not c: an empty payload read back into a
     * buffer never allocated (the scan's, for a 0-length frame) would fail its CRC (found by tests/fuzz) */
    return len ? (uint32_t)crc32(c, payload, (uInt)len) : (uint32_t)c;
}

static seg *seg_find(spool *sp, uint64_t num)
{
    for (size_t i = 0; i < sp->nsegs; i++)
        if (sp->segs[i].num == num)
            return &sp->segs[i];
    return NULL;
}

static int seg_add(spool *sp, uint64_t num, uint64_t size)
{
    if (sp->nsegs == sp->segcap) {
        size_t cap = sp->segcap ? sp->segcap * 2 : 16;
        seg *s = realloc(sp->segs, cap * sizeof *s);
        if (!s)
            return -ENOMEM;
        sp->segs = s;
        sp->segcap = cap;
    }
    sp->segs[sp->nsegs++] = (seg){num, size, 0};
    sp->st.bytes += size;
    sp->st.segments++;
    return 0;
}

static void seg_remove(spool *sp, seg *s)
{
    char path[300];
    seg_path(sp, s->num, path, sizeof path);
    unlink(path);
    sp->st.bytes -= s->size;
    sp->st.segments--;
    size_t i = (size_t)(s - sp->segs);
    memmove(s, s + 1, (sp->nsegs - i - 1) * sizeof *s);
    sp->nsegs--;
}

static int replay_add(spool *sp, spool_ref ref)
{
    if ((sp->nreplay & (sp->nreplay - 1)) == 0) { /* grow at powers of two */
        spool_ref *r = realloc(sp->replay, (sp->nreplay ? sp->nreplay * 2 : 64) * sizeof *r);
        if (!r)
            return -ENOMEM;
        sp->replay = r;
    }
    sp->replay[sp->nreplay++] = ref;
    return 0;
}

/* Scans one segment file; keeps good frames, skips corrupt ones, truncates a torn tail. */
static int scan_segment(spool *sp, uint64_t num)
{
    char path[300];
    seg_path(sp, num, path, sizeof path);
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct stat stt;
    fstat(fd, &stt);
    uint64_t size = (uint64_t)stt.st_size, off = 0, live = 0;
    uint8_t hdr[HDR], *buf = NULL;
    size_t cap = 0;
    while (off + HDR <= size && pread(fd, hdr, HDR, (off_t)off) == HDR && get32(hdr) == SPOOL_MAGIC) {
        uint32_t len = get32(hdr + 4);
        if (off + HDR + len > size)
            break; /* torn */
        if (len > cap) {
            uint8_t *nb = realloc(buf, len);
            if (!nb)
                break;
            buf = nb;
            cap = len;
        }
        if (pread(fd, buf, len, (off_t)(off + HDR)) != (ssize_t)len)
            break;
        if (frame_crc(hdr, buf, len) != get32(hdr + 8)) {
            sp->st.corrupt_frames++;
        } else if (replay_add(sp, (spool_ref){num, off, len, get32(hdr + 12), get64(hdr + 16)}) == 0) {
            live++;
        }
        off += HDR + len;
    }
    free(buf);
    if (off < size) {
        sp->st.torn_bytes += size - off;
        log_write(LOG_WARN, "\"spool segment has a torn or unreadable tail: cut off\" segment=%s bytes=%llu", path,
                  (unsigned long long)(size - off));
        if (ftruncate(fd, (off_t)off) < 0)
            log_write(LOG_ERROR, "\"cannot truncate spool segment\" segment=%s", path);
    }
    close(fd);
    if (live == 0) {
        unlink(path);
        return 0;
    }
    int rc = seg_add(sp, num, off);
    if (rc == 0)
        sp->segs[sp->nsegs - 1].live = live;
    return rc;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* 1 and *num when name is exactly what seg_path makes (seg-<16 lowercase hex>.log), else 0. sscanf alone also
 * takes "seg-1.log", "seg-0x1.log" or upper-case hex, which seg_path then spells differently (or as another
 * segment's name): such a file would stop the start-up or be replayed twice. */
static int segment_name(const char *name, uint64_t *num)
{
    unsigned long long n;
    char canon[32];
    if (sscanf(name, "seg-%16llx.log", &n) != 1)
        return 0;
    snprintf(canon, sizeof canon, "seg-%016llx.log", n);
    if (strcmp(canon, name) != 0)
        return 0;
    *num = n;
    return 1;
}

static int scan_dir(spool *sp)
{
    DIR *d = opendir(sp->dir);
    if (!d)
        return -errno;
    uint64_t *nums = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        uint64_t num;
        if (!segment_name(e->d_name, &num)) {
            if (strncmp(e->d_name, "seg-", 4) == 0)
                log_write(LOG_WARN, "\"ignoring a file in the spool folder that is not a segment\" path=%s/%s",
                          sp->dir, e->d_name);
            continue;
        }
        if (n == cap) {
            uint64_t *p = realloc(nums, (cap = cap ? cap * 2 : 16) * sizeof *p);
            if (!p)
                break;
            nums = p;
        }
        nums[n++] = num;
    }
    closedir(d);
    if (n > 1)
        qsort(nums, n, sizeof *nums, cmp_u64);
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = scan_segment(sp, nums[i]);
    free(nums);
    return rc;
}

int spool_open(const char *dir, uint64_t max_bytes, int fsync_mode, spool **out)
{
    spool *sp = calloc(1, sizeof *sp);
    if (!sp)
        return -ENOMEM;
    pthread_mutex_init(&sp->mu, NULL);
    snprintf(sp->dir, sizeof sp->dir, "%s", dir);
    sp->max_bytes = max_bytes;
    sp->seg_max = max_bytes / 16 > (64u << 10) ? max_bytes / 16 : (64u << 10); /* ~16 segments */
    if (sp->seg_max > max_bytes)
        sp->seg_max = max_bytes;
    sp->fsync_mode = fsync_mode;
    sp->fd = -1;
    sp->dead_max = 64u << 20;
    if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
        int err = errno;
        log_write(LOG_ERROR, "\"cannot create the spool folder\" path=%s error=\"%s\"", dir, strerror(err));
        spool_close(sp);
        return -err;
    }
    int rc = scan_dir(sp);
    if (rc < 0) {
        log_write(LOG_ERROR, "\"cannot read the spool folder\" path=%s error=\"%s\"", dir, strerror(-rc));
        spool_close(sp);
        return rc;
    }
    char dl[300];
    snprintf(dl, sizeof dl, "%s/deadletter.log", dir);
    sp->st.dead_letter_bytes = file_size(dl);
    snprintf(dl, sizeof dl, "%s/deadletter.log.1", dir);
    sp->st.dead_letter_bytes += file_size(dl);
    log_write(LOG_INFO, "\"spool opened\" path=%s batches_to_replay=%zu segments=%llu bytes=%llu corrupt_frames=%llu "
                        "torn_bytes=%llu", dir, sp->nreplay, (unsigned long long)sp->st.segments,
              (unsigned long long)sp->st.bytes, (unsigned long long)sp->st.corrupt_frames,
              (unsigned long long)sp->st.torn_bytes);
    *out = sp;
    return 0;
}

void spool_close(spool *sp)
{
    if (!sp)
        return;
    if (sp->fd >= 0) {
        if (sp->fsync_mode != SPOOL_FSYNC_NEVER)
            fdatasync(sp->fd);
        close(sp->fd);
    }
    for (size_t i = 0; i < sp->nsegs; i++) /* settled-but-open segments: nothing in them is needed any more */
        if (sp->segs[i].live == 0) {
            seg_remove(sp, &sp->segs[i]);
            i--;
        }
    free(sp->segs);
    free(sp->replay);
    pthread_mutex_destroy(&sp->mu);
    free(sp);
}

int spool_replay_next(spool *sp, spool_ref *ref)
{
    pthread_mutex_lock(&sp->mu);
    int more = sp->replay_next < sp->nreplay;
    if (more)
        *ref = sp->replay[sp->replay_next++];
    if (!more && sp->replay) {
        free(sp->replay);
        sp->replay = NULL;
        sp->nreplay = sp->replay_next = 0;
    }
    pthread_mutex_unlock(&sp->mu);
    return more;
}

/* "ENOSPC" for ENOSPC: the name an operator greps for (strerror's text alone hid it behind "Input/output error"
 * before short writes were retried). */
static const char *err_name(int err)
{
    const char *name = strerrorname_np(err);
    return name ? name : "unknown";
}

static int is_disk_full(int rc) { return rc == -ENOSPC || rc == -EDQUOT; }

/* Writes all of buf, retrying short writes (the second write of a short one returns the real errno). */
static int write_all(int fd, const uint8_t *buf, size_t len)
{
    while (len > 0) {
        ssize_t w = write(fd, buf, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -errno;
        if (w == 0)
            return -EIO;
        buf += w;
        len -= (size_t)w;
    }
    return 0;
}

/* Writes one frame: header, then `pre` (the dead-letter refusal block, or nothing), then the payload; the CRC
 * covers pre + payload as one. Returns 0 or -errno; the caller cuts back what a failure left. */
static int write_frame(int fd, uint32_t magic, uint64_t id, uint32_t n, const uint8_t *pre, size_t prelen,
                       const uint8_t *payload, size_t len)
{
    uint8_t hdr[HDR];
    put32(hdr, magic);
    put32(hdr + 4, (uint32_t)(prelen + len));
    put32(hdr + 12, n);
    put64(hdr + 16, id);
    uint32_t crc = frame_crc(hdr, pre, prelen);
    put32(hdr + 8, len ? (uint32_t)crc32(crc, payload, (uInt)len) : crc);
    int rc = write_all(fd, hdr, HDR);
    if (rc == 0)
        rc = write_all(fd, pre, prelen);
    if (rc == 0)
        rc = write_all(fd, payload, len);
    return rc;
}

/* Closes the append segment for good: the next append starts a new one. Unlinked now when none of its batches
 * is live, else by spool_release when the last one is settled. Caller holds mu. */
static void seal_locked(spool *sp)
{
    if (sp->fd < 0)
        return;
    if (sp->dirty && sp->fsync_mode != SPOOL_FSYNC_NEVER && fdatasync(sp->fd) < 0)
        sp->st.fsync_errors++;
    sp->dirty = 0;
    close(sp->fd);
    sp->fd = -1;
    seg *last = &sp->segs[sp->nsegs - 1];
    if (last->live == 0)
        seg_remove(sp, last);
}

/* Starts a new append segment after the newest one. Caller holds mu. */
static int new_segment_locked(spool *sp)
{
    seal_locked(sp);
    uint64_t num = sp->nsegs ? sp->segs[sp->nsegs - 1].num + 1 : 1;
    char path[300];
    seg_path(sp, num, path, sizeof path);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    int rc = seg_add(sp, num, 0);
    if (rc < 0) {
        close(fd);
        unlink(path);
        return rc;
    }
    sp->fd = fd;
    return 0;
}

/* While the filesystem is full (ENOSPC): 1 when statvfs says `need` bytes (and a page of slack) fit again, so
 * that waiting appends do not write a whole batch only to cut it back. EDQUOT: always 1 (quotas are not in
 * statvfs). Caller holds mu. */
static int room_locked(spool *sp, uint64_t need)
{
    struct statvfs vfs;
    if (sp->disk_err != ENOSPC || statvfs(sp->dir, &vfs) < 0)
        return 1;
    uint64_t blocks = geteuid() == 0 ? vfs.f_bfree : vfs.f_bavail; /* root may use the reserved blocks */
    return blocks * vfs.f_frsize >= need + 8192;
}

/* Sets the disk-full state after an append returned rc; opens an episode (logged, counted) when none is.
 * Caller holds mu. */
static void note_append_locked(spool *sp, int rc)
{
    if (is_disk_full(rc)) {
        sp->st.disk_full = 1;
        sp->disk_err = -rc;
        sp->last_full_ms = clock_mono_ms();
        if (sp->episode)
            return;
        sp->episode = 1;
        sp->episode_since_ms = sp->last_full_ms;
        sp->st.disk_full_episodes++;
        log_write(LOG_WARN, "\"spool filesystem full: batches wait in memory, then --on-full applies; appending "
                            "resumes by itself when space frees (logged once per episode)\" path=%s error=%s "
                            "errmsg=\"%s\" spool_bytes=%llu", sp->dir, err_name(-rc), strerror(-rc),
                  (unsigned long long)sp->st.bytes);
    } else if (rc == 0) {
        sp->st.disk_full = 0;
    } else {
        sp->st.write_errors++;
    }
}

/* Closes the disk-full episode once appends have worked for EPISODE_QUIET_MS. Caller holds mu. */
static void end_episode_locked(spool *sp, int64_t now)
{
    if (!sp->episode || sp->st.disk_full || now - sp->last_full_ms < EPISODE_QUIET_MS)
        return;
    sp->episode = 0;
    log_write(LOG_INFO, "\"spool filesystem has room again: appending resumed\" path=%s full_for_ms=%lld", sp->dir,
              (long long)(sp->last_full_ms - sp->episode_since_ms));
}

/* One attempt at appending to the append segment (a new one if needed). On failure the frame is cut back and the
 * segment sealed. Caller holds mu. */
static int append_once_locked(spool *sp, uint64_t id, uint32_t n, const uint8_t *payload, size_t len,
                              spool_ref *ref)
{
    int rc = 0;
    if (sp->fd < 0 || sp->segs[sp->nsegs - 1].size >= sp->seg_max)
        if ((rc = new_segment_locked(sp)) < 0)
            return rc;
    seg *s = &sp->segs[sp->nsegs - 1];
    uint64_t off = s->size;
    rc = write_frame(sp->fd, SPOOL_MAGIC, id, n, NULL, 0, payload, len);
    if (rc == 0 && sp->fsync_mode == SPOOL_FSYNC_ALWAYS && fdatasync(sp->fd) < 0) {
        rc = -errno; /* never acknowledged as on disk: the batch stays in memory and is appended again */
        sp->st.fsync_errors++;
    }
    if (rc < 0) {
        /* never leave part of a frame behind; if the cut fails, the tail is cut at the next start (sealed: no
         * good frame will ever follow it) */
        if (ftruncate(sp->fd, (off_t)off) < 0)
            log_write(LOG_ERROR, "\"cannot cut a failed frame off a spool segment: sealed, cut at the next "
                                 "start\" segment=%016llx error=%s", (unsigned long long)s->num, err_name(errno));
        seal_locked(sp);
        return rc;
    }
    s->size += HDR + len;
    s->live++;
    sp->st.bytes += HDR + len;
    sp->dirty = sp->fsync_mode != SPOOL_FSYNC_ALWAYS;
    *ref = (spool_ref){s->num, off, (uint32_t)len, n, id};
    return 0;
}

int spool_append(spool *sp, uint64_t id, uint32_t n, const uint8_t *payload, size_t len, spool_ref *ref)
{
    pthread_mutex_lock(&sp->mu);
    int rc = 0;
    seg *last = sp->fd >= 0 ? &sp->segs[sp->nsegs - 1] : NULL;
    if (last && last->live == 0 && (last->size >= RECYCLE_BYTES || sp->st.bytes + HDR + len > sp->max_bytes))
        seal_locked(sp); /* everything in the append segment is settled: give its space back to the disk */
    if (sp->st.bytes + HDR + len > sp->max_bytes) {
        rc = -ENOBUFS;
        goto out;
    }
    if (sp->st.disk_full && !room_locked(sp, HDR + len)) {
        rc = -sp->disk_err;
        goto out;
    }
    int settled = sp->fd >= 0 && sp->segs[sp->nsegs - 1].live == 0 && sp->segs[sp->nsegs - 1].size > 0;
    rc = append_once_locked(sp, id, n, payload, len, ref);
    if (is_disk_full(rc) && settled) /* the failed segment held only settled frames: sealing freed them */
        rc = append_once_locked(sp, id, n, payload, len, ref);
    note_append_locked(sp, rc);
out:
    pthread_mutex_unlock(&sp->mu);
    return rc;
}

int spool_read(spool *sp, const spool_ref *ref, uint8_t *buf)
{
    char path[300];
    seg_path(sp, ref->seg, path, sizeof path);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    uint8_t hdr[HDR];
    int rc = 0;
    if (pread(fd, hdr, HDR, (off_t)ref->off) != HDR ||
        pread(fd, buf, ref->len, (off_t)(ref->off + HDR)) != (ssize_t)ref->len)
        rc = -EIO;
    else if (get32(hdr) != SPOOL_MAGIC || get32(hdr + 4) != ref->len || frame_crc(hdr, buf, ref->len) != get32(hdr + 8))
        rc = -EIO;
    close(fd);
    if (rc < 0) {
        pthread_mutex_lock(&sp->mu);
        sp->st.read_errors++;
        pthread_mutex_unlock(&sp->mu);
    }
    return rc;
}

void spool_hold(spool *sp, uint64_t num)
{
    pthread_mutex_lock(&sp->mu);
    seg *s = seg_find(sp, num);
    if (s)
        s->live++;
    pthread_mutex_unlock(&sp->mu);
}

void spool_release(spool *sp, uint64_t num)
{
    pthread_mutex_lock(&sp->mu);
    seg *s = seg_find(sp, num);
    int append = s && sp->fd >= 0 && s == &sp->segs[sp->nsegs - 1];
    if (s && s->live > 0 && --s->live == 0) {
        if (!append)
            seg_remove(sp, s);
        else if (sp->st.disk_full || s->size >= RECYCLE_BYTES) /* give the settled frames' space back now */
            seal_locked(sp);
    }
    pthread_mutex_unlock(&sp->mu);
}

/* ---- dead letters ---------------------------------------------------------------------------------------- */

/* Records in a dead-letter file: the n_records of each whole frame (CRC not checked: only counting). */
static uint64_t count_records(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    uint8_t hdr[HDR];
    uint64_t off = 0, n = 0;
    while (pread(fd, hdr, HDR, (off_t)off) == HDR && (get32(hdr) == SPOOL_MAGIC || get32(hdr) == DEAD_MAGIC)) {
        n += get32(hdr + 12);
        off += HDR + get32(hdr + 4);
    }
    close(fd);
    return n;
}

void spool_set_dead_letter_max(spool *sp, uint64_t max_bytes)
{
    pthread_mutex_lock(&sp->mu);
    sp->dead_max = max_bytes;
    pthread_mutex_unlock(&sp->mu);
}

/* Renames deadletter.log over deadletter.log.1 when adding `frame` bytes would pass half the bound; the old .1's
 * records are counted evicted. Caller holds mu. */
static void rotate_dead_letter_locked(spool *sp, const char *path, uint64_t frame)
{
    char old[310];
    snprintf(old, sizeof old, "%s.1", path);
    if (file_size(path) + frame <= sp->dead_max / 2)
        return;
    uint64_t evicted = count_records(old);
    if (rename(path, old) < 0) {
        log_write(LOG_ERROR, "\"cannot rotate the dead-letter file\" path=%s error=%s", path, err_name(errno));
        return;
    }
    sp->st.dead_letter_evicted_records += evicted;
    if (evicted)
        log_write(LOG_WARN, "\"dead-letter files full (--deadletter-max-bytes): oldest records dropped\" path=%s "
                            "records=%llu", old, (unsigned long long)evicted);
}

/* Opens the dead-letter file for appending under an exclusive flock(2): `logagentctl deadletter --replay` takes the
 * same lock to rename the file away before reading it, so a frame is written either before the rename (it is in
 * what the replay reads) or to the new file — never into a file the replay has already read. Returns the fd or
 * -errno. */
static int open_dead_letter(const char *path)
{
    for (int tries = 0; tries < 5; tries++) {
        int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        if (fd < 0)
            return -errno;
        struct stat held, now;
        if (flock(fd, LOCK_EX) == 0 && fstat(fd, &held) == 0 && stat(path, &now) == 0 && held.st_ino == now.st_ino &&
            held.st_dev == now.st_dev)
            return fd;
        close(fd); /* renamed away while we waited for the lock: open the new file */
    }
    return -EAGAIN;
}

int spool_dead_letter(spool *sp, uint64_t id, uint32_t n, const uint8_t *payload, size_t len, const spool_refusal *why)
{
    char path[300], old[310];
    snprintf(path, sizeof path, "%s/deadletter.log", sp->dir);
    snprintf(old, sizeof old, "%s.1", path);
    size_t rlen = why && why->reason ? strnlen(why->reason, REASON_MAX) : 0;
    uint8_t block[REFUSAL_FIXED + REASON_MAX];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    put32(block, (uint32_t)(REFUSAL_FIXED + rlen));
    put64(block + 4, (uint64_t)((int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec));
    put32(block + 12, (uint32_t)(why ? why->status : -1));
    if (rlen == REASON_MAX) /* cut at a character boundary */
        while (rlen > 0 && ((uint8_t)why->reason[rlen] & 0xc0) == 0x80)
            rlen--;
    if (rlen) {
        memcpy(block + REFUSAL_FIXED, why->reason, rlen);
        utf8_scrub(block + REFUSAL_FIXED, rlen); /* the service's details may be any bytes; the file says UTF-8 */
    }
    uint64_t frame = HDR + REFUSAL_FIXED + rlen + len;
    pthread_mutex_lock(&sp->mu);
    int rc = 0, fd = -1;
    if (frame > sp->dead_max / 2) {
        rc = -EFBIG;
        goto out;
    }
    rotate_dead_letter_locked(sp, path, frame);
    if ((fd = open_dead_letter(path)) < 0) {
        rc = fd;
        goto out;
    }
    struct stat st;
    off_t off = fstat(fd, &st) == 0 ? st.st_size : 0;
    rc = write_frame(fd, DEAD_MAGIC, id, n, block, REFUSAL_FIXED + rlen, payload, len);
    if (rc == 0 && fdatasync(fd) < 0) {
        rc = -errno;
        sp->st.fsync_errors++;
    }
    if (rc < 0 && ftruncate(fd, off) < 0)
        log_write(LOG_ERROR, "\"cannot cut a failed frame off the dead-letter file\" path=%s error=%s", path,
                  err_name(errno));
    if (rc == 0)
        sp->st.dead_letter_batches++;
out:
    if (fd >= 0)
        close(fd);
    sp->st.dead_letter_bytes = file_size(path) + file_size(old);
    pthread_mutex_unlock(&sp->mu);
    return rc;
}

void spool_tick(spool *sp)
{
    int64_t now = clock_mono_ms();
    pthread_mutex_lock(&sp->mu);
    end_episode_locked(sp, now);
    if (sp->fsync_mode == SPOOL_FSYNC_INTERVAL && sp->dirty && sp->fd >= 0 && now - sp->last_sync_ms >= 1000) {
        if (fdatasync(sp->fd) < 0) {
            int err = errno;
            sp->st.fsync_errors++;
            int64_t suppressed = log_limit_check(&sp->fsync_log, 10000);
            if (suppressed >= 0)
                log_write(LOG_ERROR, "\"fdatasync of the spool segment failed: its batches are still sent, but "
                                     "may not survive a machine crash; the segment is sealed\" path=%s error=%s "
                                     "errmsg=\"%s\" suppressed=%lld", sp->dir, err_name(err), strerror(err),
                          (long long)suppressed);
            sp->dirty = 0;
            seal_locked(sp); /* new frames go to a fresh file (a failed fdatasync may be forgotten by the kernel) */
        }
        sp->dirty = 0;
        sp->last_sync_ms = now;
    }
    pthread_mutex_unlock(&sp->mu);
}

void spool_get_stats(spool *sp, spool_stats *out)
{
    pthread_mutex_lock(&sp->mu);
    *out = sp->st;
    pthread_mutex_unlock(&sp->mu);
}
