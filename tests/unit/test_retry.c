/* test_retry.c — the retryable-status table, full-jitter backoff bounds, and google.rpc.RetryInfo parsing from a
 * grpc-status-details-bin value (well-formed, other detail types, truncated and garbage input). */
#include "check.h"
#include "flush/retry.h"

int main(void)
{
    int retryable[] = {1, 4, 8, 10, 11, 14, 15, 16}, permanent[] = {0, 2, 3, 5, 6, 7, 9, 12, 13};
    for (size_t i = 0; i < sizeof retryable / sizeof retryable[0]; i++)
        CHECK(retry_status_retryable(retryable[i]));
    for (size_t i = 0; i < sizeof permanent / sizeof permanent[0]; i++)
        CHECK(!retry_status_retryable(permanent[i]));

    uint64_t rng = 12345;
    int64_t max_seen = 0;
    for (unsigned attempt = 0; attempt < 40; attempt++)
        for (int i = 0; i < 200; i++) {
            int64_t d = retry_backoff_ms(attempt, 100, 30000, &rng);
            int64_t cap = attempt < 9 ? 100LL << attempt : 30000;
            CHECK(d >= 1 && d <= (cap < 30000 ? cap : 30000));
            if (d > max_seen)
                max_seen = d;
        }
    CHECK(max_seen > 20000); /* the jitter reaches the cap's neighbourhood */

    /* Status{code=8, details=[Any{type_url=RetryInfo, value=RetryInfo{retry_delay={seconds=2, nanos=500000000}}}]} */
    static const char type[] = "type.googleapis.com/google.rpc.RetryInfo";
    uint8_t buf[128], *p = buf;
    uint8_t dur[] = {0x08, 0x02, 0x10, 0x80, 0xca, 0xb5, 0xee, 0x01};
    size_t any_len = 2 + (sizeof type - 1) + 2 + 2 + sizeof dur;
    *p++ = 0x08;
    *p++ = 0x08;
    *p++ = 0x1a;
    *p++ = (uint8_t)any_len;
    *p++ = 0x0a;
    *p++ = sizeof type - 1;
    memcpy(p, type, sizeof type - 1);
    p += sizeof type - 1;
    *p++ = 0x12;
    *p++ = (uint8_t)(2 + sizeof dur);
    *p++ = 0x0a;
    *p++ = sizeof dur;
    memcpy(p, dur, sizeof dur);
    p += sizeof dur;
    CHECK_INT(retry_info_delay_ms(buf, (size_t)(p - buf)), 2500);
    for (size_t cut = 0; cut < (size_t)(p - buf); cut++) /* every truncation: no crash, no bogus delay */
        CHECK(retry_info_delay_ms(buf, cut) == -1 || cut == (size_t)(p - buf));
    buf[6] = 'X'; /* another detail type */
    CHECK_INT(retry_info_delay_ms(buf, (size_t)(p - buf)), -1);
    uint8_t garbage[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    CHECK_INT(retry_info_delay_ms(garbage, sizeof garbage), -1);
    CHECK_INT(retry_info_delay_ms(buf, 0), -1);
    return check_done("test_retry");
}
