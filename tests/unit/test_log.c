/* test_log.c — the agent's own log: level parsing and the rate limiter that keeps a flood of identical errors to
 * one line per interval, carrying the count of the lines it suppressed. */
#include "check.h"
#include "log.h"

#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

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

/* --log-format json: log_write's line read back from stderr (a pipe): numbers stay numbers only when JSON would
 * read them as the same text, quoted values are unescaped then escaped for JSON, control bytes become \u00XX; and
 * back to logfmt. */
static void test_json_lines(void)
{
    int fds[2], saved = dup(STDERR_FILENO);
    CHECK(pipe(fds) == 0 && saved >= 0);
    dup2(fds[1], STDERR_FILENO);
    log_set_format(LOG_FORMAT_JSON);
    log_write(LOG_WARN, "\"a \\\"quoted\\\" word\" n=42 neg=-1.5 mode=0600 v=0.1.0 e=1e5 path=/x err=\"tab\there\" z=0");
    log_set_format(LOG_FORMAT_LOGFMT);
    log_write(LOG_WARN, "\"plain\" k=v");
    dup2(saved, STDERR_FILENO);
    close(saved);
    close(fds[1]);
    char buf[2048];
    ssize_t n = read(fds[0], buf, sizeof buf - 1);
    close(fds[0]);
    buf[n > 0 ? n : 0] = 0;
    char *nl = strchr(buf, '\n');
    CHECK(nl != NULL);
    if (!nl)
        return;
    *nl = 0;
    const char *tail = strstr(buf, "\"level\":");
    CHECK(strncmp(buf, "{\"ts\":\"", 7) == 0 && tail != NULL);
    CHECK_STR(tail ? tail : "", "\"level\":\"warn\",\"msg\":\"a \\\"quoted\\\" word\",\"n\":42,\"neg\":-1.5,"
                                "\"mode\":\"0600\",\"v\":\"0.1.0\",\"e\":\"1e5\",\"path\":\"/x\","
                                "\"err\":\"tab\\u0009here\",\"z\":0}");
    CHECK(strncmp(nl + 1, "ts=", 3) == 0 && strstr(nl + 1, "msg=\"plain\" k=v\n") != NULL);
}

int main(void)
{
    test_levels();
    test_limit_counts_suppressed();
    test_json_lines();
    return check_done("test_log");
}
