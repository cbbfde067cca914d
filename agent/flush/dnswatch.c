/* dnswatch.c — the upstream's DNS name looked up again on a timer (see dnswatch.h).
 *
 * One thread per agent, asleep on a condition variable between lookups; the target and the stop flag are under
 * `mu`, the lookup runs without it (getaddrinfo may block for the resolver's timeouts). A lookup's answer is
 * compared only with the previous answer for the same target: a retarget (SIGHUP) makes the next answer the new
 * baseline, so the channel SIGHUP already rebuilt is not rebuilt again. */
#include "flush/dnswatch.h"

#include "log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

enum { DNSWATCH_TARGET_MAX = 256, DNSWATCH_ADDRS_MAX = 2048 };

struct dnswatch {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stopping;                         /* under mu */
    unsigned generation;                  /* under mu: bumped by every retarget */
    char target[DNSWATCH_TARGET_MAX];     /* under mu */
    int64_t period_ms;
    dnswatch_fn changed;
    void *arg;
    /* the watch thread only */
    char last[DNSWATCH_ADDRS_MAX];        /* the last answer for the target of last_generation */
    unsigned last_generation;
    int have_last;
};

int dnswatch_host(const char *target, char *host, size_t cap)
{
    static const char *const static_schemes[] = {"ipv4:", "ipv6:", "unix:", "unix-abstract:", "vsock:"};
    for (size_t i = 0; i < sizeof static_schemes / sizeof static_schemes[0]; i++)
        if (strncmp(target, static_schemes[i], strlen(static_schemes[i])) == 0)
            return 0;
    const char *p = target;
    if (strncmp(p, "dns:", 4) == 0) {
        p += 4;
        if (strncmp(p, "//", 2) == 0) { /* dns://[authority]/host:port */
            p = strchr(p + 2, '/');
            if (!p)
                return 0;
            p++;
        }
    }
    if (*p == '[') /* [v6]:port — a literal */
        return 0;
    const char *colon = strrchr(p, ':');
    size_t n = colon ? (size_t)(colon - p) : strlen(p);
    if (n == 0 || n >= cap || memchr(p, '/', n))
        return 0;
    memcpy(host, p, n);
    host[n] = 0;
    unsigned char bin[sizeof(struct in6_addr)];
    if (inet_pton(AF_INET, host, bin) == 1 || inet_pton(AF_INET6, host, bin) == 1)
        return 0; /* a literal address: nothing to look up again */
    return 1;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* host's addresses, sorted and comma-separated, into out. Returns their count (0: the lookup failed or found
 * none; out is then ""). */
static int resolve(const char *host, char *out, size_t cap)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    out[0] = 0;
    if (getaddrinfo(host, NULL, &hints, &res) != 0)
        return 0;
    enum { MAX = 64 };
    char text[MAX][INET6_ADDRSTRLEN];
    char *sorted[MAX];
    int n = 0;
    for (struct addrinfo *ai = res; ai && n < MAX; ai = ai->ai_next) {
        const void *a = ai->ai_family == AF_INET ? (const void *)&((struct sockaddr_in *)ai->ai_addr)->sin_addr
                      : ai->ai_family == AF_INET6 ? (const void *)&((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr
                                                  : NULL;
        if (a && inet_ntop(ai->ai_family, a, text[n], sizeof text[n])) {
            sorted[n] = text[n];
            n++;
        }
    }
    freeaddrinfo(res);
    qsort(sorted, (size_t)n, sizeof sorted[0], cmp_str);
    size_t len = 0;
    int kept = 0;
    for (int i = 0; i < n; i++) {
        if (i > 0 && strcmp(sorted[i], sorted[i - 1]) == 0)
            continue; /* the same address for another protocol */
        int w = snprintf(out + len, cap - len, "%s%s", kept ? "," : "", sorted[i]);
        if (w < 0 || (size_t)w >= cap - len)
            break;
        len += (size_t)w;
        kept++;
    }
    return kept;
}

/* Sleeps until the next lookup is due (at once when first) or stop. Returns 0 with the target and its generation
 * copied, or -1 to stop. */
static int wait_turn(dnswatch *w, int first, char *target, unsigned *generation)
{
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += w->period_ms / 1000;
    until.tv_nsec += (w->period_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&w->mu);
    while (!first && !w->stopping && pthread_cond_timedwait(&w->cv, &w->mu, &until) != ETIMEDOUT)
        ;
    int stop = w->stopping;
    memcpy(target, w->target, DNSWATCH_TARGET_MAX);
    *generation = w->generation;
    pthread_mutex_unlock(&w->mu);
    return stop ? -1 : 0;
}

/* One lookup of target: calls `changed` when its answer differs from the previous one for the same target. */
static void look(dnswatch *w, const char *target, unsigned generation)
{
    char host[DNSWATCH_TARGET_MAX], now[DNSWATCH_ADDRS_MAX];
    if (!dnswatch_host(target, host, sizeof host) || resolve(host, now, sizeof now) == 0)
        return; /* nothing to watch, or no answer: keep what runs */
    if (!w->have_last || generation != w->last_generation) { /* first answer for this target: the baseline */
        w->have_last = 1;
        w->last_generation = generation;
        snprintf(w->last, sizeof w->last, "%s", now);
        return;
    }
    if (strcmp(now, w->last) == 0)
        return;
    log_write(LOG_INFO, "\"upstream addresses changed: rebuilding the channel\" host=%s addresses=%s previous=%s",
              host, now, w->last);
    snprintf(w->last, sizeof w->last, "%s", now);
    w->changed(w->arg, now);
}

static void *watch_main(void *arg)
{
    dnswatch *w = arg;
    char target[DNSWATCH_TARGET_MAX];
    unsigned generation = 0;
    /* the first lookup, at once, is the baseline: what the channel found at start, near enough */
    for (int first = 1; wait_turn(w, first, target, &generation) == 0; first = 0)
        look(w, target, generation);
    return NULL;
}

dnswatch *dnswatch_start(const char *target, int64_t period_ms, dnswatch_fn changed, void *arg)
{
    char host[DNSWATCH_TARGET_MAX];
    if (period_ms <= 0)
        return NULL;
    if (!dnswatch_host(target, host, sizeof host))
        log_write(LOG_INFO, "\"upstream-dns-refresh-ms: the upstream names no DNS name, nothing to look up until "
                            "a reload names one\" upstream=%s", target);
    dnswatch *w = calloc(1, sizeof *w);
    if (!w) {
        log_write(LOG_ERROR, "\"cannot start the upstream DNS refresh\" error=\"out of memory\"");
        return NULL;
    }
    snprintf(w->target, sizeof w->target, "%s", target);
    w->period_ms = period_ms;
    w->changed = changed;
    w->arg = arg;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&w->cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&w->mu, NULL);
    int rc = pthread_create(&w->thread, NULL, watch_main, w);
    if (rc != 0) {
        log_write(LOG_ERROR, "\"cannot start the upstream DNS refresh\" error=\"%s\"", strerror(rc));
        pthread_cond_destroy(&w->cv);
        pthread_mutex_destroy(&w->mu);
        free(w);
        return NULL;
    }
    return w;
}

void dnswatch_retarget(dnswatch *w, const char *target)
{
    if (!w)
        return;
    pthread_mutex_lock(&w->mu);
    snprintf(w->target, sizeof w->target, "%s", target);
    w->generation++;
    pthread_mutex_unlock(&w->mu);
}

void dnswatch_stop(dnswatch *w)
{
    if (!w)
        return;
    pthread_mutex_lock(&w->mu);
    w->stopping = 1;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->thread, NULL);
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
    free(w);
}
