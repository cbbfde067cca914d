/* test_membudget.c — the shared bound on memory for records in progress: growth within the limit passes; past it
 * the first refused connection becomes the owner and may always go on (no deadlock), the others are refused until
 * the owner finishes or memory falls under three quarters of the limit (then the resume functions run); small
 * holdings cost nothing; closing while paused keeps the counts right. */
#include "check.h"
#include "ingest/membudget.h"

#include <string.h>

static int resumed;
static void on_resume(void *arg) { (*(int *)arg)++; }

int main(void)
{
    membudget b;
    memset(&b, 0, sizeof b);
    b.limit = 10 << 20;
    CHECK_INT(membudget_on_resume(&b, on_resume, &resumed), 0);
    int other = 0;
    for (int i = 1; i < MEMBUDGET_USERS; i++)
        CHECK_INT(membudget_on_resume(&b, on_resume, &other), 0);
    CHECK_INT(membudget_on_resume(&b, on_resume, &other), -28); /* -ENOSPC: the HTTP ingest and 16 threads */
    membudget_forget(&b, &other);

    CHECK_INT(membudget_cost(MEMBUDGET_FREE_BYTES), 0); /* an idle connection's buffer is free */
    CHECK_INT(membudget_cost(MEMBUDGET_FREE_BYTES + 1), MEMBUDGET_FREE_BYTES + 1);

    int a, c, d;         /* three connections (their addresses are their identities) */
    uint64_t ha = 0, hc = 0, hd = 0;
    CHECK(membudget_may_grow(&b, &a, ha, 6 << 20));
    membudget_update(&b, &a, &ha, 6 << 20);
    CHECK(membudget_may_grow(&b, &c, hc, 4 << 20)); /* exactly the limit */
    membudget_update(&b, &c, &hc, 4 << 20);
    CHECK_INT(b.used, 10 << 20);
    CHECK(b.owner == NULL);

    /* over it: c asks for more first and becomes the owner, d is refused and pauses */
    CHECK(membudget_may_grow(&b, &c, hc, 5 << 20));
    CHECK(b.owner == &c);
    membudget_update(&b, &c, &hc, 5 << 20);
    CHECK(!membudget_may_grow(&b, &d, hd, 1 << 20));
    membudget_paused(&b, 1);
    CHECK(membudget_may_grow(&b, &c, hc, 6 << 20)); /* the owner always may */
    membudget_update(&b, &c, &hc, 6 << 20);
    CHECK(membudget_may_grow(&b, &d, hd, membudget_cost(MEMBUDGET_FREE_BYTES))); /* costs nothing: fine */
    CHECK_INT(b.paused_now, 1);
    CHECK_INT(b.pauses, 1);

    /* the owner finishes its record: the paused ones are told to try again */
    membudget_release(&b, &a); /* not the owner: nothing */
    CHECK_INT(resumed, 0);
    membudget_release(&b, &c);
    CHECK(b.owner == NULL);
    CHECK_INT(resumed, 1);
    membudget_paused(&b, -1);
    CHECK(membudget_may_grow(&b, &d, hd, 1 << 20) && b.owner == &d); /* still over: d is the owner now */

    /* memory falls under 3/4 of the limit after a refusal: resumed again */
    membudget_paused(&b, 1);
    membudget_update(&b, &c, &hc, 0);
    CHECK_INT(resumed, 2); /* 6 MiB left (a's): under 3/4 of 10 MiB */
    membudget_update(&b, &a, &ha, 0);
    CHECK_INT(b.used, 0);
    CHECK(b.owner == &d); /* d never grew: ownership ends when it finishes or closes */
    membudget_update(&b, &d, &hd, 0);
    CHECK(b.owner == NULL);
    membudget_paused(&b, -1);
    membudget_paused(&b, -1); /* a stray resume does not underflow */
    CHECK_INT(b.paused_now, 0);
    CHECK(b.paused_since_ns == 0);
    return check_failed_count != 0;
}
