/* test_flusher.c — --on-full drop-oldest with --buffer disk: the flusher sheds only what the spool cannot take.
 *
 * Ingest asks for shedding whenever the ring is full, and the ring also fills when the flusher merely fell behind
 * (a loaded machine, a descheduled thread) while the spool has room. Then the ring must drain into the spool and
 * nothing be dropped (a found bug: the agent dropped the oldest spool segment, the batch being built and ring
 * records with a nearly empty disk, and integration_faults' disk_full/disk/drop-oldest row failed on a loaded CI
 * machine). The ring is filled before the flusher thread starts, so the shed request is always its first turn.
 * And with the spool at --spool-max-bytes, shedding still makes room (dropped_buffer_full, accounting intact).
 * The upstream is a port where nothing listens: calls fail and are retried, nothing is ever delivered. */
#include "check.h"
#include "config.h"
#include "flush/flusher.h"
#include "ring.h"

#include <dirent.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum { REC = 1000 };

static _Atomic int spaces; /* on_space calls: ingest would resume */

static void on_space(void *arg)
{
    (void)arg;
    atomic_fetch_add(&spaces, 1);
}

/* Removes dir and the files in it (a spool folder has no subfolders). */
static void remove_dir(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char path[400];
    while (d && (e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            CHECK(unlink(path) == 0);
        }
    if (d)
        closedir(d);
    CHECK(rmdir(dir) == 0);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Every record taken out of the ring is in exactly one place (flusher.h's identity). */
static int accounted(const flusher_snapshot *s)
{
    return s->taken == s->flushed + s->batching + s->in_flight + s->retry_wait + s->spooled + s->dropped_upstream +
                           s->dropped_retry_expired + s->dropped_buffer_full + s->dropped_shutdown +
                           s->dropped_spool_corrupt + s->dead_letter;
}

/* Polls the flusher until it has taken `n` records out of the ring (60 s at most); returns that snapshot. */
static flusher_snapshot wait_taken(flusher *f, uint64_t n)
{
    flusher_snapshot s;
    double deadline = now_s() + 60;
    do {
        flusher_snapshot_get(f, &s);
        if (s.taken >= n)
            return s;
        usleep(2000); /* polling a condition, with a deadline */
    } while (now_s() < deadline);
    fprintf(stderr, "the flusher took %llu of %llu records in 60 s\n", (unsigned long long)s.taken,
            (unsigned long long)n);
    CHECK(0);
    return s;
}

static flusher *new_flusher(ring *r, const char *spool_dir, const char *spool_max)
{
    static config cfg;
    char *argv[] = {"logagentd", "--upstream", "127.0.0.1:1", "--buffer", "disk", "--spool-dir", (char *)spool_dir,
                    "--spool-max-bytes", (char *)spool_max, "--on-full", "drop-oldest", "--buffer-bytes", "1MiB",
                    "--batch-max-records", "10", "--flush-interval-ms", "3600000", "--retry-initial-ms", "1000",
                    "--retry-max-ms", "1000", NULL};
    CHECK(config_load(&cfg, (int)(sizeof argv / sizeof argv[0]) - 1, argv) == CONFIG_RUN);
    return flusher_new(&cfg, r, on_space, NULL);
}

static void fill(char *rec, uint64_t i)
{
    memset(rec, 'x', REC);
    snprintf(rec, REC, "record %llu", (unsigned long long)i);
}

/* The ring full, the spool nearly empty: the shed request moves the ring into the spool and drops nothing. */
static void ring_full_spool_has_room(const char *dir)
{
    ring *r = ring_new(1 << 16);
    flusher *f = new_flusher(r, dir, "1GiB");
    CHECK(r && f);
    if (!r || !f)
        return;
    static char rec[REC];
    uint64_t pushed = 0;
    for (fill(rec, pushed); ring_push(r, rec, REC) == 0; fill(rec, ++pushed))
        ;
    CHECK(pushed > 50);
    atomic_store(&spaces, 0);
    flusher_shed_oldest(f, 20000); /* room for a 20 kB record: more than the 10-record batch being built holds */
    CHECK(flusher_start(f) == 0);
    flusher_snapshot s = wait_taken(f, pushed);
    CHECK_INT(s.dropped_buffer_full, 0);
    CHECK(s.spool.bytes >= 20 * REC); /* the batches sealed to make the room (nothing leaves: no service) */
    CHECK(accounted(&s));
    CHECK(atomic_load(&spaces) >= 1);
    flusher_stop(f, 0);
    flusher_free(f);
    ring_free(r);
}

/* The spool at --spool-max-bytes: shedding makes room (the oldest segment first), writers go on. */
static void spool_full_sheds(const char *dir)
{
    ring *r = ring_new(1 << 16);
    flusher *f = new_flusher(r, dir, "1MiB");
    CHECK(r && f);
    if (!r || !f)
        return;
    CHECK(flusher_start(f) == 0);
    static char rec[REC];
    uint64_t pushed = 0, total = 3 * 1024; /* 3 MB through a 64 KiB ring into a 1 MiB spool */
    while (pushed < total) {
        fill(rec, pushed);
        if (ring_push(r, rec, REC) == 0) {
            pushed++;
            flusher_notify(f);
            continue;
        }
        int had = atomic_load(&spaces);
        flusher_shed_oldest(f, REC); /* as ingest does when the ring is full */
        double deadline = now_s() + 60;
        while (atomic_load(&spaces) == had && now_s() < deadline)
            usleep(1000); /* polling a condition, with a deadline */
        CHECK(atomic_load(&spaces) > had);
        if (atomic_load(&spaces) == had)
            break;
    }
    CHECK_INT(pushed, total);
    flusher_stop(f, 0); /* then nothing moves: the ring may still hold records (they wait there for a shed) */
    flusher_snapshot s;
    flusher_snapshot_get(f, &s);
    CHECK(s.dropped_buffer_full > 0);
    CHECK_INT(s.taken + ring_used_bytes(r) / (REC + 8), total); /* a record takes REC + its 8-byte header */
    CHECK(s.spool.bytes <= 1 << 20);
    CHECK(accounted(&s));
    flusher_free(f);
    ring_free(r);
}

int main(void)
{
    char dir[] = "/tmp/la-unit-flusher-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char a[300], b[300];
    snprintf(a, sizeof a, "%s/a", dir);
    snprintf(b, sizeof b, "%s/b", dir);
    ring_full_spool_has_room(a);
    spool_full_sheds(b);
    remove_dir(a);
    remove_dir(b);
    CHECK(rmdir(dir) == 0);
    return check_done("flusher");
}
