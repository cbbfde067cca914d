/* clients.h — per-client accounting for GET /stats/clients: who sends how much, and who is refused or dropped.
 *
 * A client is the key (pid, comm, service_name of its records). Ingest keeps a pointer to the current entry on each
 * connection and looks the table up again only when a record's service_name differs from that entry's, so the
 * per-record cost is a length compare, a short memcmp and a few additions.
 *
 * Threads: one table for every ingest thread (--ingest-threads), so that a client's connections spread over several
 * loops add up in one row. The table's structure (attach, detach, eviction, the JSON) is under its mutex, taken
 * only when a connection opens, closes or changes service_name; the counters are atomics that the loops add to
 * without the lock (an entry attached to a connection is never evicted, so its pointer stays valid).
 *
 * Bounds: at most `cap` entries, plus entries still attached to open connections (at most one per connection).
 * When a new key arrives and the table is full, the least recently seen entry with no connection attached is
 * evicted (counted in `evicted`). service_name keys are cut to CLIENTS_SERVICE_MAX bytes (at a UTF-8 boundary).
 *
 * Only what ingest sees is attributed: records dropped after the ring (upstream refusals, retry expiry, drop-oldest,
 * shutdown in the flusher) belong to batches, not to clients, and are not counted here. */
#ifndef LOGAGENT_CLIENTS_H
#define LOGAGENT_CLIENTS_H

#include "record.h"

#include <event2/buffer.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define CLIENTS_SERVICE_MAX 128
#define CLIENTS_DEFAULT_CAP 4096

typedef struct clients clients;

/* One client. Ingest adds to the counters directly; the fields below the line are the table's. */
typedef struct client_entry {
    _Atomic uint64_t records;  /* records accepted into the ring */
    _Atomic uint64_t bytes;    /* msgpack bytes of every complete object read (accepted, refused or dropped) */
    _Atomic uint64_t rejected; /* bad input: malformed/oversized/truncated connections, invalid records, reserved keys */
    _Atomic uint64_t dropped;  /* dropped at ingest: --on-full drop-newest, or unread at shutdown */
    _Atomic int64_t last_seen_ns; /* CLOCK_MONOTONIC of the last record or refusal */
    /* ---- the table's own ---- */
    int32_t pid;
    uint32_t uid, gid;
    char comm[32];
    char service[CLIENTS_SERVICE_MAX + 1];
    size_t service_len;
    uint64_t connections;  /* connections that attributed records here */
    uint64_t last_conn;    /* serial of the last connection attached (so one connection counts once in a row) */
    unsigned attached;     /* connections whose current entry this is */
    uint32_t hash;
    struct client_entry *hnext;              /* bucket chain */
    struct client_entry *idle_prev, *idle_next; /* idle list (attached == 0), least recently seen first */
} client_entry;

/* Creates an empty table holding at least `cap` entries. NULL when out of memory. */
clients *clients_new(size_t cap);
void clients_free(clients *t);

/* Length of the key made from a service_name of `len` bytes: at most CLIENTS_SERVICE_MAX, cut at a UTF-8 boundary. */
size_t clients_key_len(const char *service, size_t len);

/* Does e stand for this service_name (already cut with clients_key_len)? The hot path's check. */
static inline int clients_same_service(const client_entry *e, const char *service, size_t key_len)
{
    return e->service_len == key_len && (key_len == 0 || memcmp(e->service, service, key_len) == 0);
}

/* The per-record counts a connection keeps for its current entry between reads (plain fields, its loop's own),
 * folded into the entry once per read: the entry's atomics may be shared with another loop (a client's connections
 * spread over --ingest-threads), where an atomic add per record cost ~14% of the agent's CPU (perf, e2e_bench.py
 * with 4 connections on 2 loops). /stats/clients lags a connection's current read by that much. */
typedef struct client_tally {
    uint64_t records, bytes;
    int64_t last_seen_ns; /* 0: nothing noted */
} client_tally;

/* Adds t into e (may be NULL: the counts are then not attributed, as without a tally) and clears t. */
static inline void clients_tally_fold(client_entry *e, client_tally *t)
{
    if (e && t->last_seen_ns) {
        if (t->records)
            atomic_fetch_add_explicit(&e->records, t->records, memory_order_relaxed);
        if (t->bytes)
            atomic_fetch_add_explicit(&e->bytes, t->bytes, memory_order_relaxed);
        atomic_store_explicit(&e->last_seen_ns, t->last_seen_ns, memory_order_relaxed);
    }
    *t = (client_tally){0};
}

/* Moves a connection (serial `conn`) from entry `cur` (or NULL) to the entry of (src->pid, src->comm, service),
 * creating it, evicting an idle one when the table is full. Returns the entry; NULL when out of memory (the
 * connection is then detached and its counts are not attributed). `service` is cut with clients_key_len. */
client_entry *clients_attach(clients *t, client_entry *cur, const record_source *src, uint64_t conn,
                             const char *service, size_t len, int64_t now_ns);

/* The connection attached to e (may be NULL) closed. */
void clients_detach(clients *t, client_entry *e, int64_t now_ns);

size_t clients_tracked(const clients *t);
uint64_t clients_evicted(const clients *t);

/* Appends {"clients":[...top entries by records, descending...],"tracked":N,"evicted":N} and a newline to out.
 * Returns 0, or -ENOMEM. */
int clients_json(const clients *t, size_t top, int64_t now_ns, struct evbuffer *out);

#endif
