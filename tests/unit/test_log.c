/* test_log.c — the agent's own log: level parsing and the rate limiter that keeps a flood of identical errors to
 * one line per interval, carrying the count of the lines it suppressed. */
#include "check.h"
#include "log.h"

#include <time.h>

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void test_levels(void)
{
    CHECK_INT(log_level_parse("debug"), LOG_DEBUG);
    CHECK_INT(log_level_parse("info"), LOG_INFO);
    CHECK_INT(log_level_parse("warn"), LOG_WARN);
    CHECK_INT(log_level_parse("warning"), LOG_WARN);
    CHECK_INT(log_level_parse("error"), LOG_ERROR);
    CHECK_INT(log_level_parse("loud"), -1);
    CHECK_INT(log_level_parse(""), -1);
}

static void test_limit_counts_suppressed(void)
{
    log_limit l = {0};
    CHECK_INT(log_limit_check(&l, 100), 0); /* the first occurrence is logged, nothing suppressed before it */
    int suppressed = 0;
    for (int i = 0; i < 500; i++)
        suppressed += log_limit_check(&l, 100) < 0;
    CHECK_INT(suppressed, 500); /* all within the interval (500 calls take far less than 100 ms) */
    int64_t deadline = mono_ms() + 5000, got = -1;
    while (got < 0 && mono_ms() < deadline) { /* wait for the interval to pass: the next line carries the count */
        got = log_limit_check(&l, 100);
        if (got < 0)
            suppressed++;
    }
    CHECK_INT(got, suppressed);
    CHECK_INT(log_limit_check(&l, 100), -1); /* a new interval began */
}

int main(void)
{
    test_levels();
    test_limit_counts_suppressed();
    return check_done("test_log");
}
