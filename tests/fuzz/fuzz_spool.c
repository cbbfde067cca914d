/* fuzz_spool.c — libFuzzer target: the bytes of a spool segment file, as logagentd finds it at start-up after a
 * crash, a full disk or a bad sector, through spool_open's scan and repair, spool_read, and a second start-up.
 *
 * Each input is written as seg-0000000000000001.log into a scratch spool folder, twice per run: as it is, and
 * with the CRC of every complete frame recomputed (so mutated lengths, counts and ids reach the "good frame"
 * paths instead of stopping at the CRC). For each, the spool must agree with a reference walk of the framing in
 * DESIGN terms (spool.c's header comment): frames are read in order while a whole 24-byte header with the magic
 * is there and its payload fits in the file; a bad CRC skips the frame (corrupt_frames); anything else ends the
 * segment, which is cut there (torn_bytes). Then:
 *  - every replayed batch reads back (spool_read) with its CRC good;
 *  - a batch appended after the repair, and every replayed one, are found again by a second spool_open, which
 *    finds no torn tail (the repair is final) and the same corrupt frames;
 *  - files in the folder that are not the spool's (stray names) are ignored and left alone.
 * Besides ASan/UBSan, any difference aborts. The agent's log lines are silenced (log level above error). */
#include "fuzz_common.h"

#include "log.h"
#include "flush/spool.h"

#include <dirent.h>
#include <sys/stat.h>
#include <zlib.h>

enum { HDR = 24 };
#define MAGIC 0x3153414cu /* "LAS1" little-endian */
#define SEG1 "seg-0000000000000001.log"

/* Names that look like segments but are not the spool's own: they must be neither read nor removed. */
static const char *const STRAYS[] = {"seg-1.log", "seg-000000000000000A.log", "seg-0x2.log", "seg- 3.log",
                                     "seg-0000000000000004.log.bak", "notes.txt"};

/* The scratch spool folder: made once per process (see fuzz_scratch_dir), emptied of spool files per input. */
static char g_dir[512];

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get64(const uint8_t *p) { return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32; }

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t frame_crc(const uint8_t *frame, uint32_t len)
{
    uLong c = crc32(0L, frame + 12, 12);
    return (uint32_t)crc32(c, frame + HDR, len);
}

/* What a correct scan of the segment finds. refs has room for every frame the input can hold, plus one. */
typedef struct model {
    const uint8_t *data; /* the segment's bytes, as written */
    spool_ref *refs;
    size_t n;
    uint64_t corrupt, end; /* frames skipped; where the segment is cut */
} model;

/* Walks the framing; with fix_crc, rewrites each complete frame's CRC in buf first. */
static void model_walk(uint8_t *buf, size_t size, int fix_crc, model *m)
{
    m->data = buf;
    m->n = 0;
    m->corrupt = 0;
    uint64_t off = 0;
    while (off + HDR <= size && get32(buf + off) == MAGIC) {
        uint32_t len = get32(buf + off + 4);
        if (off + HDR + len > size)
            break;
        if (fix_crc)
            put32(buf + off + 8, frame_crc(buf + off, len));
        if (frame_crc(buf + off, len) != get32(buf + off + 8))
            m->corrupt++;
        else
            m->refs[m->n++] = (spool_ref){1, off, len, get32(buf + off + 12), get64(buf + off + 16)};
        off += HDR + len;
    }
    m->end = off;
}

static void clean_spool_files(void)
{
    DIR *d = opendir(g_dir);
    FUZZ_CHECK(d, "opendir %s", g_dir);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, "seg-", 4) && strcmp(e->d_name, "deadletter.log"))
            continue;
        int stray = 0;
        for (size_t i = 0; i < sizeof STRAYS / sizeof STRAYS[0]; i++)
            stray |= !strcmp(e->d_name, STRAYS[i]);
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", g_dir, e->d_name);
        if (!stray)
            unlink(path);
    }
    closedir(d);
}

static void check_strays(void)
{
    for (size_t i = 0; i < sizeof STRAYS / sizeof STRAYS[0]; i++) {
        char path[1024];
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", g_dir, STRAYS[i]);
        FUZZ_CHECK(stat(path, &st) == 0 && st.st_size == 5, "stray file %s was removed or changed", STRAYS[i]);
    }
}

static spool *open_spool(spool_stats *st)
{
    spool *sp = NULL;
    int rc = spool_open(g_dir, 1ULL << 30, SPOOL_FSYNC_NEVER, &sp);
    FUZZ_CHECK(rc == 0 && sp, "spool_open failed: %s", strerror(-rc));
    spool_get_stats(sp, st);
    return sp;
}

/* Replays everything; each ref must be the model's next one, from segment `seg`, and read back (CRC good) as
 * exactly the payload written. Returns the number replayed. */
static size_t replay_and_read(spool *sp, const model *m, uint64_t seg)
{
    spool_ref r;
    size_t i = 0;
    while (spool_replay_next(sp, &r)) {
        FUZZ_CHECK(i < m->n, "more batches replayed than the segment holds (%zu)", m->n);
        const spool_ref *w = &m->refs[i++];
        FUZZ_CHECK(r.off == w->off && r.len == w->len && r.n == w->n && r.id == w->id,
                   "replayed frame #%zu: off %llu len %u n %u, expected off %llu len %u n %u", i - 1,
                   (unsigned long long)r.off, r.len, r.n, (unsigned long long)w->off, w->len, w->n);
        FUZZ_CHECK(r.seg == seg, "frame from segment %llu", (unsigned long long)r.seg);
        uint8_t *buf = malloc(r.len ? r.len : 1);
        FUZZ_CHECK(buf, "malloc");
        int rc = spool_read(sp, &r, buf);
        FUZZ_CHECK(rc == 0, "spool_read of a replayed frame: %d", rc);
        FUZZ_CHECK(!memcmp(buf, m->data + r.off + HDR, r.len), "spool_read returned other bytes");
        free(buf);
    }
    return i;
}

static void one_segment(uint8_t *buf, size_t size, int fix_crc)
{
    model m = {.refs = malloc((size / HDR + 2) * sizeof(spool_ref))};
    FUZZ_CHECK(m.refs, "malloc");
    model_walk(buf, size, fix_crc, &m);
    clean_spool_files();
    char path[1024];
    snprintf(path, sizeof path, "%s/" SEG1, g_dir);
    fuzz_write_file(path, buf, size);

    spool_stats st;
    spool *sp = open_spool(&st);
    FUZZ_CHECK(st.corrupt_frames == m.corrupt, "corrupt_frames %llu, expected %llu",
               (unsigned long long)st.corrupt_frames, (unsigned long long)m.corrupt);
    FUZZ_CHECK(st.torn_bytes == size - m.end, "torn_bytes %llu, expected %llu", (unsigned long long)st.torn_bytes,
               (unsigned long long)(size - m.end));
    FUZZ_CHECK(replay_and_read(sp, &m, 1) == m.n, "fewer batches replayed than the segment holds");
    struct stat fst;
    int exists = stat(path, &fst) == 0;
    FUZZ_CHECK(m.n ? exists && (uint64_t)fst.st_size == m.end : !exists, "segment after repair: %s, %lld bytes",
               exists ? "kept" : "removed", exists ? (long long)fst.st_size : -1LL);

    static const uint8_t payload[] = "\x0a\x05hello"; /* appended after the repair, found by the next start */
    spool_ref added;
    FUZZ_CHECK(spool_append(sp, 77, 1, payload, sizeof payload - 1, &added) == 0, "append after repair");
    spool_close(sp);

    sp = open_spool(&st);
    FUZZ_CHECK(st.torn_bytes == 0, "a repaired spool still has a torn tail at the next start");
    /* a segment without a good frame was removed at the first start, its corrupt frames with it */
    FUZZ_CHECK(st.corrupt_frames == (m.n ? m.corrupt : 0), "corrupt frames changed between starts");
    spool_ref r;
    for (size_t i = 0; i < m.n; i++) { /* the old frames, in order, from segment 1 */
        FUZZ_CHECK(spool_replay_next(sp, &r), "old frame #%zu not replayed at the next start", i);
        FUZZ_CHECK(r.seg == 1 && r.off == m.refs[i].off && r.id == m.refs[i].id, "old frame #%zu moved", i);
    }
    FUZZ_CHECK(spool_replay_next(sp, &r) && r.seg == added.seg && r.off == added.off && r.id == 77,
               "the batch appended after the repair was not replayed");
    FUZZ_CHECK(!spool_replay_next(sp, &r), "extra batches replayed");
    spool_close(sp);
    check_strays();
    free(m.refs);
}

static void remove_scratch(void)
{
    clean_spool_files();
    for (size_t i = 0; i < sizeof STRAYS / sizeof STRAYS[0]; i++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", g_dir, STRAYS[i]);
        unlink(path);
    }
    rmdir(g_dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    log_set_level(LOG_ERROR + 1);
    fuzz_scratch_dir(g_dir, sizeof g_dir, "spool");
    for (size_t i = 0; i < sizeof STRAYS / sizeof STRAYS[0]; i++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", g_dir, STRAYS[i]);
        fuzz_write_file(path, "stray", 5);
    }
    atexit(remove_scratch);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *buf = malloc(size ? size : 1);
    FUZZ_CHECK(buf, "malloc");
    memcpy(buf, data, size);
    one_segment(buf, size, 0);
    one_segment(buf, size, 1);
    free(buf);
    return 0;
}
