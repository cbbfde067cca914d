/* http_conns.h — the HTTP ingest's connections, which evhttp (libevent 2.1) neither counts nor bounds: their number
 * (--http-max-connections), the memory of the requests they are reading (--ingest-memory-bytes, shared with the
 * ingest socket: membudget.h) and how long one request may take (--partial-record-timeout-ms, the whole request,
 * not per read).
 *
 * DESIGN
 * evhttp asks us for each accepted connection's bufferevent (evhttp_set_bevcb): we create it and keep a reference,
 * so it is ours to watch until we let go. An input-buffer callback sees every byte read; the bytes read since the
 * connection's last answered request are what it holds for the request in progress (evhttp keeps them until the
 * answer), charged to the memory budget. A connection the budget refuses stops reading (bufferevent_disable; evhttp
 * re-enables reading only at a new request, after the answer) until memory frees. evhttp gives a connection up by
 * bufferevent_free, which clears its callbacks: a sweep (every 250 ms, and at each new connection) finds those,
 * drops our reference (closing the socket) and forgets them. At --http-max-connections the listener is disabled
 * (connections wait in the backlog), as ingest does at --max-connections. Main loop thread only. */
#ifndef LOGAGENT_HTTP_CONNS_H
#define LOGAGENT_HTTP_CONNS_H

#include "acceptguard.h"
#include "config.h"
#include "counters.h"

#include <event2/http.h>

typedef struct http_conns http_conns;

/* Watches every connection `http` accepts from now on. NULL when out of memory. */
http_conns *http_conns_new(struct event_base *base, struct evhttp *http, const config *cfg, ingest_stats *st);

/* The listener to stop at the cap (borrowed; NULL: none yet). */
void http_conns_set_guard(http_conns *t, acceptguard *g);

/* on_request, once the request is answered: its body is no longer the connection's to hold. */
void http_conns_request_done(http_conns *t, struct evhttp_request *req);

/* The connections the HTTP ingest takes at once: --http-max-connections, at most half the open-file budget
 * (acceptguard.h); 0 when --http-listen is off. */
uint64_t http_conns_cap(const config *cfg);

/* Lets go of every connection (after evhttp_free: nothing can call back). NULL is fine. */
void http_conns_free(http_conns *t);

#endif
