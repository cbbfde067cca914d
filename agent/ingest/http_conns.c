/* http_conns.c — counting, bounding and timing the HTTP ingest's connections (see http_conns.h). */
#include "ingest/http_conns.h"
#include "common/clock.h"

#include "log.h"
#include "ingest/membudget.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <stdlib.h>
#include <time.h>

enum { SWEEP_MS = 250 };

typedef struct hconn {
    struct hconn *prev, *next;
    http_conns *t;
    struct bufferevent *bev; /* one reference is ours: released by the sweep once evhttp has freed it */
    struct evbuffer_cb_entry *cb;
    uint64_t bytes;          /* read since the last answered request: what the request in progress holds */
    uint64_t mem;            /* its charge (membudget_cost of bytes) */
    int64_t started_ns;      /* CLOCK_MONOTONIC of the first byte of the request in progress (0: none) */
    int paused;              /* reading stopped for memory */
} hconn;

struct http_conns {
    struct event_base *base;
    const config *cfg;
    ingest_stats *st;
    http_stats *hs;
    membudget *mem;
    acceptguard *guard;
    struct event *sweep_ev, *resume_ev;
    hconn *conns;
    uint64_t n, cap;
    int at_cap;
    log_limit lim_cap, lim_timeout;
};

uint64_t http_conns_cap(const config *cfg)
{
    if (!cfg->http_listen[0])
        return 0;
    uint64_t half = acceptguard_fd_budget() / 2;
    if (half < 1)
        half = 1;
    return cfg->http_max_connections < half ? cfg->http_max_connections : half;
}

/* At the cap the listener stops (connections wait in the backlog); under it, it accepts again. */
static void limit(http_conns *t)
{
    if (!t->guard)
        return;
    if (!t->at_cap && t->n >= t->cap) {
        t->at_cap = 1;
        acceptguard_want(t->guard, 0);
        stat_add(&t->hs->conn_max_reached, 1);
        int64_t sup = log_limit_check(&t->lim_cap, 10000);
        if (sup >= 0)
            log_write(LOG_WARN, "\"--http-max-connections reached: new HTTP connections wait in the listen backlog "
                                "until one closes\" http_max_connections=%llu suppressed=%lld",
                      (unsigned long long)t->cap, (long long)sup);
    } else if (t->at_cap && t->n < t->cap) {
        t->at_cap = 0;
        acceptguard_want(t->guard, 1);
    }
}

static void charge(hconn *c) { membudget_update(c->t->mem, c, &c->mem, membudget_cost(c->bytes)); }

static void forget(hconn *c)
{
    http_conns *t = c->t;
    if (c->prev)
        c->prev->next = c->next;
    else
        t->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    if (c->paused)
        membudget_paused(t->mem, -1);
    membudget_freed(t->mem, c->bytes);
    c->bytes = 0;
    charge(c);
    evbuffer_remove_cb_entry(bufferevent_get_input(c->bev), c->cb);
    bufferevent_free(c->bev); /* our reference: the socket closes now (evhttp is done with it) */
    free(c);
    t->n--;
    stat_add(&t->hs->conn_active, (uint64_t)-1);
    limit(t);
}

static int gone(const hconn *c)
{
    bufferevent_event_cb ev = NULL;
    bufferevent_getcb(c->bev, NULL, NULL, &ev, NULL);
    return ev == NULL; /* evhttp freed (or reset) it: bufferevent_free clears the callbacks */
}

/* evbuffer callback on a connection's input: bytes read from its socket. */
static void on_input(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
    hconn *c = arg;
    if (!info->n_added)
        return; /* evhttp moving bytes into its request keeps them held: only reads count */
    if (!c->bytes)
        c->started_ns = clock_mono_ns();
    c->bytes += info->n_added;
    membudget *m = c->t->mem;
    if (!c->paused && !gone(c) && !membudget_may_grow(m, c, c->mem, membudget_cost(c->bytes))) {
        c->paused = 1;
        bufferevent_disable(c->bev, EV_READ);
        membudget_paused(m, 1);
    }
    charge(c);
}

/* membudget_resume_fn: resumes in resume_ev's turn (not inside a charge update). */
static void resume_soon(void *arg)
{
    http_conns *t = arg;
    event_active(t->resume_ev, EV_READ, 0);
}

static void on_resume(evutil_socket_t fd, short what, void *arg)
{
    http_conns *t = arg;
    int64_t now = clock_mono_ns();
    for (hconn *c = t->conns; c; c = c->next) {
        if (!c->paused)
            continue;
        c->paused = 0;
        membudget_paused(t->mem, -1);
        if (c->started_ns) /* not read meanwhile: the request's clock restarts */
            c->started_ns = now;
        if (!gone(c))
            bufferevent_enable(c->bev, EV_READ);
    }
}

/* Forgets the connections evhttp is done with; with `deadlines`, times out requests that take longer than
 * --partial-record-timeout-ms as a whole (evhttp's own timeout restarts with every read). */
static void sweep(http_conns *t, int deadlines)
{
    int64_t now = clock_mono_ns(), limit_ns = (int64_t)t->cfg->partial_record_timeout_ms * 1000000;
    for (hconn *c = t->conns, *next; c; c = next) {
        next = c->next;
        if (gone(c)) {
            forget(c);
            continue;
        }
        if (!deadlines || !c->started_ns || c->paused || now - c->started_ns < limit_ns)
            continue;
        c->started_ns = 0;
        stat_add(&t->hs->timed_out, 1);
        int64_t sup = log_limit_check(&t->lim_timeout, 10000);
        if (sup >= 0)
            log_write(LOG_WARN, "\"HTTP request not complete after --partial-record-timeout-ms, connection closed\" "
                                "bytes=%llu suppressed=%lld", (unsigned long long)c->bytes, (long long)sup);
        bufferevent_trigger_event(c->bev, BEV_EVENT_READING | BEV_EVENT_TIMEOUT, 0); /* evhttp closes it */
    }
}

static void on_sweep(evutil_socket_t fd, short what, void *arg) { sweep(arg, 1); }

/* evhttp_set_bevcb: a new connection's bufferevent (evhttp sets its socket). NULL lets evhttp make its own (out
 * of memory: that connection is not counted). */
static struct bufferevent *on_new(struct event_base *base, void *arg)
{
    http_conns *t = arg;
    sweep(t, 0); /* no timeouts here: evhttp is in the middle of taking a connection */
    hconn *c = calloc(1, sizeof *c);
    if (!c || !(c->bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE)) ||
        !(c->cb = evbuffer_add_cb(bufferevent_get_input(c->bev), on_input, c))) {
        if (c && c->bev)
            bufferevent_free(c->bev);
        free(c);
        return NULL;
    }
    bufferevent_incref(c->bev);
    c->t = t;
    c->next = t->conns;
    if (t->conns)
        t->conns->prev = c;
    t->conns = c;
    t->n++;
    stat_add(&t->hs->conn_active, 1);
    limit(t);
    return c->bev;
}

void http_conns_request_done(http_conns *t, struct evhttp_request *req)
{
    struct bufferevent *bev = evhttp_connection_get_bufferevent(evhttp_request_get_connection(req));
    for (hconn *c = t->conns; c; c = c->next)
        if (c->bev == bev) {
            membudget_freed(t->mem, c->bytes);
            c->bytes = evbuffer_get_length(bufferevent_get_input(bev)); /* the next request's, already read */
            c->started_ns = c->bytes ? clock_mono_ns() : 0;
            charge(c);
            membudget_release(t->mem, c);
            return;
        }
}

http_conns *http_conns_new(struct event_base *base, struct evhttp *http, const config *cfg, ingest_stats *st)
{
    http_conns *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->base = base;
    t->cfg = cfg;
    t->st = st;
    t->hs = &st->http;
    t->mem = &st->mem;
    t->cap = http_conns_cap(cfg);
    struct timeval tv = {0, SWEEP_MS * 1000};
    if (!(t->sweep_ev = event_new(base, -1, EV_PERSIST, on_sweep, t)) ||
        !(t->resume_ev = event_new(base, -1, 0, on_resume, t)) || event_add(t->sweep_ev, &tv) < 0 ||
        membudget_on_resume(t->mem, resume_soon, t) < 0) {
        http_conns_free(t);
        return NULL;
    }
    evhttp_set_bevcb(http, on_new, t);
    return t;
}

void http_conns_set_guard(http_conns *t, acceptguard *g)
{
    t->guard = g;
    t->at_cap = 0;
    if (g)
        limit(t);
}

void http_conns_free(http_conns *t)
{
    if (!t)
        return;
    membudget_forget(t->mem, t);
    t->guard = NULL;
    while (t->conns)
        forget(t->conns);
    if (t->sweep_ev)
        event_free(t->sweep_ev);
    if (t->resume_ev)
        event_free(t->resume_ev);
    free(t);
}
