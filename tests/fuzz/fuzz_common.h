/* fuzz_common.h — what the libFuzzer targets share: a check that aborts (libFuzzer reports it as a crash and
 * saves the input), a hash and a small PRNG for deterministic choices derived from the input, and file helpers
 * for targets whose code under test reads files.
 *
 * Header-only on purpose: each target is one .c file plus the agent sources it exercises, nothing else. */
#ifndef LOGAGENT_FUZZ_COMMON_H
#define LOGAGENT_FUZZ_COMMON_H

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* A broken invariant: say which, then abort so libFuzzer keeps the input as a crash artifact. */
#define FUZZ_CHECK(cond, ...)                                                              \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            fprintf(stderr, "%s:%d: FUZZ_CHECK failed: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                                  \
            fputc('\n', stderr);                                                           \
            abort();                                                                       \
        }                                                                                  \
    } while (0)

static inline uint64_t fuzz_fnv(uint64_t h, const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 0x100000001b3ULL;
    return h;
}

#define FUZZ_FNV_INIT 0xcbf29ce484222325ULL

static inline uint64_t fuzz_rng(uint64_t *s) /* xorshift64*: never returns to 0 from a non-zero seed */
{
    uint64_t x = *s ? *s : 0x9e3779b97f4a7c15ULL;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545f4914f6cdd1dULL;
}

/* Writes n bytes to path (created or truncated, mode 0600). Aborts on failure: the harness's own I/O must work. */
static inline void fuzz_write_file(const char *path, const void *data, size_t n)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    FUZZ_CHECK(fd >= 0, "open %s: %s", path, strerror(errno));
    const uint8_t *p = data;
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        FUZZ_CHECK(w > 0, "write %s: %s", path, strerror(errno));
        p += w;
        n -= (size_t)w;
    }
    close(fd);
}

/* A private scratch folder under $TMPDIR (or /tmp), made once per process; the caller owns its contents. */
static inline void fuzz_scratch_dir(char *out, size_t cap, const char *name)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(out, cap, "%s/logagent-fuzz-%s-XXXXXX", tmp && tmp[0] ? tmp : "/tmp", name);
    FUZZ_CHECK(mkdtemp(out) != NULL, "mkdtemp %s: %s", out, strerror(errno));
}

#endif
