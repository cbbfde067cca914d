/* test_ratelimit.c — token buckets: the burst passes, then the rate; senders are independent; and the limit still
 * holds after tens of thousands of other senders came and went (the bounded table forgets only refilled buckets,
 * or the oldest when every bucket is busy). */
#include "check.h"
#include "ingest/ratelimit.h"

#include <stdint.h>

static int pass(ratelimit *rl, uint32_t key, int n, int64_t now)
{
    int ok = 0;
    for (int i = 0; i < n; i++)
        ok += ratelimit_allow(rl, key, now);
    return ok;
}

int main(void)
{
    const int64_t S = 1000000000;
    ratelimit *rl = ratelimit_new(100, 10, 64);
    CHECK(rl != NULL);
    if (!rl)
        return 1;
    CHECK_INT(pass(rl, 7, 50, S), 10);          /* the burst */
    CHECK_INT(pass(rl, 7, 50, S + S / 10), 10); /* 0.1 s at 100/s */
    CHECK_INT(pass(rl, 8, 50, S + S / 10), 10); /* another sender has its own bucket */
    CHECK_INT(pass(rl, 7, 50, S + 10 * S), 10); /* refilled up to the burst, not beyond */

    /* 100,000 other senders come and go (one record each, 10 us apart) while sender 7 keeps flooding: over that
     * second it gets its burst plus one second's rate, however many buckets the table had to forget meanwhile */
    int64_t t = 20 * S;
    int got = 0;
    for (uint32_t k = 0; k < 100000; k++) {
        int64_t now = t + (int64_t)k * 10000;
        CHECK(ratelimit_allow(rl, 1000 + k, now)); /* a new sender's first record passes */
        got += ratelimit_allow(rl, 7, now);
    }
    CHECK(got >= 100 && got <= 111);
    /* and a flooder among many busy senders (every bucket non-full): still limited */
    for (uint32_t k = 200000; k < 200200; k++) {
        CHECK_INT(pass(rl, k, 20, t + 2 * S), 10);
        CHECK_INT(pass(rl, k, 20, t + 2 * S), 0);
    }
    ratelimit_free(rl);
    return check_failed_count != 0;
}
