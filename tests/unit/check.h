/* check.h — the unit tests' only "framework": CHECK records a failure with its location and goes on;
 * each test program returns check_failures() != 0 from main. */
#ifndef LOGAGENT_CHECK_H
#define LOGAGENT_CHECK_H

#include <stdio.h>
#include <string.h>

static int check_failed_count;

#define CHECK(cond)                                                                  \
    do {                                                                             \
        if (!(cond)) {                                                               \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
            check_failed_count++;                                                    \
        }                                                                            \
    } while (0)

#define CHECK_STR(a, b)                                                                             \
    do {                                                                                            \
        const char *a_ = (a), *b_ = (b);                                                            \
        if (!a_ || !b_ || strcmp(a_, b_) != 0) {                                                    \
            fprintf(stderr, "%s:%d: CHECK_STR failed: %s == \"%s\", expected \"%s\"\n", __FILE__, \
                    __LINE__, #a, a_ ? a_ : "(null)", b_ ? b_ : "(null)");                         \
            check_failed_count++;                                                                   \
        }                                                                                           \
    } while (0)

#define CHECK_INT(a, b)                                                                                  \
    do {                                                                                                 \
        long long a_ = (long long)(a), b_ = (long long)(b);                                              \
        if (a_ != b_) {                                                                                  \
            fprintf(stderr, "%s:%d: CHECK_INT failed: %s == %lld, expected %lld\n", __FILE__, __LINE__, \
                    #a, a_, b_);                                                                         \
            check_failed_count++;                                                                        \
        }                                                                                                \
    } while (0)

static inline int check_done(const char *name)
{
    if (check_failed_count)
        fprintf(stderr, "%s: %d check(s) failed\n", name, check_failed_count);
    else
        printf("%s: all checks passed\n", name);
    return check_failed_count != 0;
}

#endif
