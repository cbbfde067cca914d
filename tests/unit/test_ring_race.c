/* test_ring_race.c — ring_reserve under an interleaving a stress run rarely hits: between its load of `head` and its
 * load of `tail`, other producers reserve and commit and the consumer consumes and releases, so `tail` is past the
 * `head` it loaded. The ring is then nearly empty and reserve must not answer "full" (it once did: the free-space
 * check wrapped). ring.c is compiled into this program with its RING_AFTER_HEAD_LOAD seam pointing at race(). */
#include "check.h"

#include <stdint.h>

struct ring;
static void race(struct ring *r);
#define RING_AFTER_HEAD_LOAD(r) race(r)
#include "ring.c"

static int armed; /* race() runs its interleaving once, then reserve goes on as usual */

/* Another producer's records, then the consumer drains and releases them all: tail moves past the loaded head. */
static void race(ring *r)
{
    if (!armed)
        return;
    armed = 0;
    char rec[100] = {0};
    for (int i = 0; i < 3; i++)
        CHECK_INT(ring_push(r, rec, sizeof rec), 0);
    size_t len;
    int n = 0;
    while (ring_peek(r, &len)) {
        ring_consume(r);
        n++;
    }
    CHECK_INT(n, 3);
    ring_release(r);
}

/* The race at every offset of a small ring, across the wrap: reserve answers with room, and the record round-trips. */
int main(void)
{
    ring *r = ring_new(4096);
    for (int round = 0; round < 200; round++) {
        armed = 1;
        char *p = ring_reserve(r, 40 + (size_t)round % 50);
        CHECK(p != NULL);
        if (!p)
            break;
        memset(p, 'a' + round % 26, 40);
        ring_commit(r, p);
        size_t len;
        const char *q = ring_peek(r, &len);
        CHECK(q && len == 40 + (size_t)round % 50 && q[0] == 'a' + round % 26);
        ring_consume(r);
        ring_release(r);
        CHECK_INT(ring_used_bytes(r), 0);
    }
    ring_free(r);
    return check_done("test_ring_race");
}
