/* acceptguard.c — pause a listener after an accept(2) error instead of spinning; the client-connection fd budget
 * (see acceptguard.h). Main loop thread only. */
#include "acceptguard.h"
#include "common/clock.h"

#include "log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

enum { PAUSE_FIRST_MS = 50, PAUSE_MAX_MS = 1000, EPISODE_GAP_MS = 10000, MAX_GUARDS = 16 };

const char *const acceptguard_reason_names[ACCEPT_ERR_N] = {"emfile", "nomem", "other"};

struct acceptguard {
    struct evconnlistener *l;
    struct event *timer;
    const char *name;
    _Atomic uint64_t *errors;
    int wanted;        /* the owner wants it enabled */
    int pausing;       /* disabled after an error until the timer fires */
    int64_t last_error_ms;  /* CLOCK_MONOTONIC of the last failure (0: none yet) */
    int64_t resumed_ms;     /* when the timer last re-enabled it */
    unsigned pause_ms;      /* the next pause: doubles while failures follow each resume at once */
    uint64_t episode_errors; /* failures since the episode's warning */
};

/* libevent hands the error callback the listener's accept-callback argument, which for evhttp's listeners is the
 * evhttp: a guard is found by its listener here. The agent has at most five listeners; main loop thread only. */
static acceptguard *guards[MAX_GUARDS];

static acceptguard *guard_of(const struct evconnlistener *l)
{
    for (unsigned i = 0; i < MAX_GUARDS; i++)
        if (guards[i] && guards[i]->l == l)
            return guards[i];
    return NULL;
}

static void apply(acceptguard *g)
{
    if (g->wanted && !g->pausing)
        evconnlistener_enable(g->l);
    else
        evconnlistener_disable(g->l);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    acceptguard *g = arg;
    g->pausing = 0;
    g->resumed_ms = clock_mono_ms();
    apply(g);
}

static enum acceptguard_reason reason_of(int err)
{
    if (err == EMFILE || err == ENFILE)
        return ACCEPT_ERR_EMFILE;
    if (err == ENOBUFS || err == ENOMEM)
        return ACCEPT_ERR_NOMEM;
    return ACCEPT_ERR_OTHER;
}

/* evconnlistener_errorcb: accept(2) failed with something other than EAGAIN/EINTR (errno still says what). */
static void on_error(struct evconnlistener *l, void *arg)
{
    int err = EVUTIL_SOCKET_ERROR();
    acceptguard *g = guard_of(l);
    if (!g) { /* not reached: a guard removes its callback when freed */
        evconnlistener_disable(l);
        return;
    }
    enum acceptguard_reason why = reason_of(err);
    int64_t now = clock_mono_ms();
    _Atomic uint64_t *c = &g->errors[why];
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + 1, memory_order_relaxed);
    /* failing again right after a resume: the condition lasts, wait longer; otherwise start short again */
    if (g->resumed_ms && now - g->resumed_ms <= (int64_t)g->pause_ms + PAUSE_FIRST_MS)
        g->pause_ms = g->pause_ms * 2 > PAUSE_MAX_MS ? PAUSE_MAX_MS : g->pause_ms * 2;
    else
        g->pause_ms = PAUSE_FIRST_MS;
    if (!g->last_error_ms || now - g->last_error_ms >= EPISODE_GAP_MS) {
        struct rlimit rl = {0, 0};
        getrlimit(RLIMIT_NOFILE, &rl);
        log_write(LOG_WARN, "\"%s\" listener=%s error=\"%s\" nofile=%llu earlier_failures=%llu",
                  why == ACCEPT_ERR_EMFILE ? "cannot accept: out of file descriptors; accepting paused (connections "
                                             "wait in the listen backlog), retried until descriptors free up"
                  : why == ACCEPT_ERR_NOMEM ? "cannot accept: out of kernel memory; accepting paused (connections "
                                              "wait in the listen backlog)"
                                            : "cannot accept; accepting paused briefly",
                  g->name, strerror(err), (unsigned long long)rl.rlim_cur, (unsigned long long)g->episode_errors);
        g->episode_errors = 0;
    }
    g->episode_errors++;
    g->last_error_ms = now;
    g->pausing = 1;
    apply(g);
    struct timeval tv = {(time_t)(g->pause_ms / 1000), (suseconds_t)(g->pause_ms % 1000) * 1000};
    if (evtimer_add(g->timer, &tv) < 0) { /* cannot time the pause: resume now rather than never */
        g->pausing = 0;
        apply(g);
    }
}

acceptguard *acceptguard_new(struct event_base *base, struct evconnlistener *l, const char *name,
                             _Atomic uint64_t *errors)
{
    acceptguard *g = calloc(1, sizeof *g);
    if (!g)
        return NULL;
    g->l = l;
    g->name = name;
    g->errors = errors;
    g->wanted = 1;
    g->pause_ms = PAUSE_FIRST_MS;
    unsigned slot = 0;
    while (slot < MAX_GUARDS && guards[slot])
        slot++;
    if (slot == MAX_GUARDS || !(g->timer = evtimer_new(base, on_timer, g))) {
        free(g);
        return NULL;
    }
    guards[slot] = g;
    evconnlistener_set_error_cb(l, on_error);
    return g;
}

void acceptguard_want(acceptguard *g, int on)
{
    g->wanted = on;
    apply(g);
}

void acceptguard_free(acceptguard *g)
{
    if (!g)
        return;
    evconnlistener_set_error_cb(g->l, NULL);
    for (unsigned i = 0; i < MAX_GUARDS; i++)
        if (guards[i] == g)
            guards[i] = NULL;
    event_free(g->timer);
    free(g);
}

uint64_t acceptguard_fd_budget(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur == RLIM_INFINITY)
        return UINT64_MAX;
    return rl.rlim_cur > ACCEPTGUARD_FD_RESERVE + 1 ? (uint64_t)rl.rlim_cur - ACCEPTGUARD_FD_RESERVE : 1;
}
