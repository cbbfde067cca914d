/* test_sink_idset.c — logagent-sink's log_id set (sink/sink_idset.c) against a plain count: hex ids (random, with
 * repeats, sharing their high half, the all-zero id), other strings, counts read between additions (the set
 * settles its log at each count and goes on), and sizes on both sides of the radix sort's threshold. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "sink/sink_idset.h"

static uint64_t rng_state = 0x243f6a8885a308d3ull;

static uint64_t rnd(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Adds one key given as text. */
static void add(struct idset *s, const char *text)
{
    struct idset_key k = { text, strlen(text) };
    CHECK_INT(idset_add_many(s, &k, 1), 0);
}

static void hex_id(char out[33], uint64_t hi, uint64_t lo)
{
    snprintf(out, 33, "%016llx%016llx", (unsigned long long)hi, (unsigned long long)lo);
}

static void test_small_cases(void)
{
    struct idset *s = idset_new();
    CHECK(s != NULL);
    CHECK_INT(idset_count(s), 0);
    add(s, "00000000000000000000000000000000");
    add(s, "00000000000000000000000000000000");
    CHECK_INT(idset_count(s), 1);
    add(s, "0123456789abcdef0123456789abcdef");
    add(s, "0123456789ABCDEF0123456789ABCDEF"); /* upper case: not hex here, a string key of its own */
    add(s, "0123456789abcdef0123456789abcde");  /* 31 digits: a string key */
    add(s, "0123456789abcdef0123456789abcdeg"); /* not a digit at the end */
    add(s, "g123456789abcdef0123456789abcdef"); /* nor at the start */
    add(s, "0123456789ABCDEF0123456789ABCDEF");
    add(s, "my-own-id");
    add(s, "my-own-id");
    CHECK_INT(idset_count(s), 7);
    /* several keys in one call, repeats inside it */
    struct idset_key ks[3] = { { "ffffffffffffffffffffffffffffffff", 32 }, { "my-own-id", 9 },
                               { "ffffffffffffffffffffffffffffffff", 32 } };
    CHECK_INT(idset_add_many(s, ks, 3), 0);
    CHECK_INT(idset_count(s), 8);
    CHECK_INT(idset_count(s), 8); /* counting twice changes nothing */
    idset_free(s);
    idset_free(NULL);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* n hex ids drawn from a pool of `pool` values (so repeats come), the pool's high halves shared by
 * `hi_values` values; counted every `every` additions against a plain count of distinct pool indexes. */
static void test_against_plain_count(size_t n, size_t pool, uint64_t hi_values, size_t every)
{
    struct idset *s = idset_new();
    uint64_t *his = malloc(pool * sizeof *his), *los = malloc(pool * sizeof *los);
    uint64_t *seen = malloc(n * sizeof *seen);
    CHECK(s && his && los && seen);
    for (size_t i = 0; i < pool; i++) {
        his[i] = hi_values ? rnd() % hi_values : rnd();
        los[i] = rnd();
    }
    for (size_t i = 0; i < n; i++) {
        size_t j = (size_t)(rnd() % pool);
        char id[33];
        hex_id(id, his[j], los[j]);
        add(s, id);
        seen[i] = j;
        if ((i + 1) % every == 0 || i + 1 == n) {
            uint64_t *sorted = malloc((i + 1) * sizeof *sorted);
            memcpy(sorted, seen, (i + 1) * sizeof *sorted);
            qsort(sorted, i + 1, sizeof *sorted, cmp_u64);
            long long distinct = 0;
            for (size_t k = 0; k <= i; k++)
                distinct += k == 0 || sorted[k] != sorted[k - 1];
            CHECK_INT(idset_count(s), distinct);
            free(sorted);
        }
    }
    free(his);
    free(los);
    free(seen);
    idset_free(s);
}

int main(void)
{
    test_small_cases();
    test_against_plain_count(1000, 700, 0, 1000);      /* below the radix threshold */
    test_against_plain_count(3000, 100000, 0, 300);    /* counted often, while it grows past it */
    test_against_plain_count(200000, 150000, 0, 70000); /* radix, several log segments, repeats */
    test_against_plain_count(300000, 3000000, 0, 300000); /* nearly all distinct */
    test_against_plain_count(50000, 20000, 3, 25000);   /* few high halves: long runs sorted by the low half */
    test_against_plain_count(20000, 20000, 1, 20000);   /* one high half (like %032x of small numbers) */
    return check_done("sink_idset");
}
