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
 * segment is unlinked. Appends go to the newest segment until it passes seg_max, then a new one is started. */
#include "spool.h"

#include "log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#define SPOOL_MAGIC 0x3153414cu /* "LAS1" little-endian */
#define HDR 24u

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
    spool_stats st;
};

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void seg_path(const spool *sp, uint64_t num, char *buf, size_t n)
{
    snprintf(buf, n, "%s/seg-%016llx.log", sp->dir, (unsigned long long)num);
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

/* Starts a new append segment after the newest one. Caller holds mu. */
static int new_segment_locked(spool *sp)
{
    if (sp->fd >= 0) {
        if (sp->fsync_mode != SPOOL_FSYNC_NEVER)
            fdatasync(sp->fd);
        close(sp->fd);
        sp->fd = -1;
        seg *last = &sp->segs[sp->nsegs - 1];
        if (last->live == 0)
            seg_remove(sp, last);
    }
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

static int write_frame(int fd, uint64_t id, uint32_t n, const uint8_t *payload, size_t len)
{
    uint8_t hdr[HDR];
    put32(hdr, SPOOL_MAGIC);
    put32(hdr + 4, (uint32_t)len);
    put32(hdr + 12, n);
    put64(hdr + 16, id);
    put32(hdr + 8, frame_crc(hdr, payload, len));
    errno = 0;
    int ok = write(fd, hdr, HDR) == (ssize_t)HDR && (len == 0 || write(fd, payload, len) == (ssize_t)len);
    return ok ? 0 : -(errno ? errno : EIO);
}

int spool_append(spool *sp, uint64_t id, uint32_t n, const uint8_t *payload, size_t len, spool_ref *ref)
{
    pthread_mutex_lock(&sp->mu);
    int rc = 0;
    if (sp->st.bytes + HDR + len > sp->max_bytes && sp->fd >= 0 && sp->segs[sp->nsegs - 1].live == 0) {
        close(sp->fd); /* everything in the append segment is settled: its space is free */
        sp->fd = -1;
        seg_remove(sp, &sp->segs[sp->nsegs - 1]);
    }
    if (sp->st.bytes + HDR + len > sp->max_bytes) {
        rc = -ENOSPC;
        goto out;
    }
    if (sp->fd < 0 || sp->segs[sp->nsegs - 1].size >= sp->seg_max)
        if ((rc = new_segment_locked(sp)) < 0)
            goto out;
    seg *s = &sp->segs[sp->nsegs - 1];
    uint64_t off = s->size;
    if ((rc = write_frame(sp->fd, id, n, payload, len)) < 0) {
        if (ftruncate(sp->fd, (off_t)off) < 0) /* never leave half a frame behind a good one */
            rc = -EIO;
        goto out;
    }
    s->size += HDR + len;
    s->live++;
    sp->st.bytes += HDR + len;
    sp->dirty = 1;
    if (sp->fsync_mode == SPOOL_FSYNC_ALWAYS) {
        fdatasync(sp->fd);
        sp->dirty = 0;
    }
    *ref = (spool_ref){s->num, off, (uint32_t)len, n, id};
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

void spool_release(spool *sp, uint64_t num)
{
    pthread_mutex_lock(&sp->mu);
    seg *s = seg_find(sp, num);
    if (s && s->live > 0 && --s->live == 0 && !(sp->fd >= 0 && s == &sp->segs[sp->nsegs - 1]))
        seg_remove(sp, s);
    pthread_mutex_unlock(&sp->mu);
}

int spool_dead_letter(spool *sp, uint64_t id, uint32_t n, const uint8_t *payload, size_t len)
{
    char path[300];
    snprintf(path, sizeof path, "%s/deadletter.log", sp->dir);
    pthread_mutex_lock(&sp->mu);
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    int rc = fd < 0 ? -errno : write_frame(fd, id, n, payload, len);
    if (fd >= 0) {
        fdatasync(fd);
        close(fd);
    }
    if (rc == 0)
        sp->st.dead_letter_batches++;
    pthread_mutex_unlock(&sp->mu);
    return rc;
}

void spool_tick(spool *sp)
{
    if (sp->fsync_mode != SPOOL_FSYNC_INTERVAL)
        return;
    int64_t now = mono_ms();
    pthread_mutex_lock(&sp->mu);
    if (sp->dirty && sp->fd >= 0 && now - sp->last_sync_ms >= 1000) {
        fdatasync(sp->fd);
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
