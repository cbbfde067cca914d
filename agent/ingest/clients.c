/* clients.c — the per-client table behind GET /stats/clients (see clients.h).
 *
 * DESIGN
 * A chained hash table of malloc'd entries keyed by (pid, comm, service_name). An entry is either attached (some
 * connection's current entry: never evicted, so a connection's cached pointer stays valid) or idle, and then it
 * sits on the idle list in the order it went idle, which is the order it was last seen: the head is the least
 * recently seen and is the one evicted. The table grows past its cap only by attached entries, which are bounded
 * by open connections. Every function that walks or changes the structure holds `mu` (clients.h, Threads). */
#include "ingest/clients.h"

#include "jsonstr.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct clients {
    pthread_mutex_t mu;
    client_entry **buckets;
    size_t nbuckets; /* power of two */
    size_t n, cap;
    uint64_t evicted;
    client_entry *idle_head, *idle_tail;
};

clients *clients_new(size_t cap)
{
    clients *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    pthread_mutex_init(&t->mu, NULL);
    t->cap = cap ? cap : 1;
    t->nbuckets = 64;
    while (t->nbuckets < t->cap * 2)
        t->nbuckets *= 2;
    if (!(t->buckets = calloc(t->nbuckets, sizeof *t->buckets))) {
        free(t);
        return NULL;
    }
    return t;
}

void clients_free(clients *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->nbuckets; i++)
        for (client_entry *e = t->buckets[i], *next; e; e = next) {
            next = e->hnext;
            free(e);
        }
    free(t->buckets);
    pthread_mutex_destroy(&t->mu);
    free(t);
}

size_t clients_key_len(const char *service, size_t len)
{
    if (len <= CLIENTS_SERVICE_MAX)
        return len;
    len = CLIENTS_SERVICE_MAX;
    while (len > 0 && ((unsigned char)service[len] & 0xC0) == 0x80) /* service[len] continues a character */
        len--;
    return len;
}

/* FNV-1a over the key. */
static uint32_t key_hash(int32_t pid, const char *comm, const char *service, size_t len)
{
    uint32_t h = 2166136261u;
    const unsigned char *p = (const unsigned char *)&pid;
    for (size_t i = 0; i < sizeof pid; i++)
        h = (h ^ p[i]) * 16777619u;
    for (p = (const unsigned char *)comm; *p; p++)
        h = (h ^ *p) * 16777619u;
    h = (h ^ 0xff) * 16777619u; /* separator: ("ab","c") and ("a","bc") differ */
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)service[i]) * 16777619u;
    return h;
}

static void idle_unlink(clients *t, client_entry *e)
{
    *(e->idle_prev ? &e->idle_prev->idle_next : &t->idle_head) = e->idle_next;
    *(e->idle_next ? &e->idle_next->idle_prev : &t->idle_tail) = e->idle_prev;
    e->idle_prev = e->idle_next = NULL;
}

static void idle_append(clients *t, client_entry *e)
{
    e->idle_prev = t->idle_tail;
    e->idle_next = NULL;
    *(t->idle_tail ? &t->idle_tail->idle_next : &t->idle_head) = e;
    t->idle_tail = e;
}

/* Removes the least recently seen idle entry, if any. */
static void evict_one(clients *t)
{
    client_entry *e = t->idle_head;
    if (!e)
        return;
    idle_unlink(t, e);
    client_entry **pp = &t->buckets[e->hash & (t->nbuckets - 1)];
    while (*pp != e)
        pp = &(*pp)->hnext;
    *pp = e->hnext;
    free(e);
    t->n--;
    t->evicted++;
}

static client_entry *find(const clients *t, uint32_t h, const record_source *src, const char *service, size_t len)
{
    for (client_entry *e = t->buckets[h & (t->nbuckets - 1)]; e; e = e->hnext)
        if (e->hash == h && e->pid == src->pid && clients_same_service(e, service, len) &&
            strncmp(e->comm, src->comm, sizeof e->comm) == 0)
            return e;
    return NULL;
}

static client_entry *create(clients *t, uint32_t h, const record_source *src, const char *service, size_t len)
{
    if (t->n >= t->cap)
        evict_one(t);
    client_entry *e = calloc(1, sizeof *e);
    if (!e)
        return NULL;
    e->pid = src->pid;
    e->uid = src->uid;
    e->gid = src->gid;
    snprintf(e->comm, sizeof e->comm, "%.*s", (int)sizeof src->comm, src->comm);
    if (len)
        memcpy(e->service, service, len);
    e->service_len = len;
    e->hash = h;
    e->hnext = t->buckets[h & (t->nbuckets - 1)];
    t->buckets[h & (t->nbuckets - 1)] = e;
    t->n++;
    return e;
}

static void detach_locked(clients *t, client_entry *e, int64_t now_ns)
{
    if (!e || e->attached == 0)
        return;
    if (--e->attached == 0) {
        if (now_ns > e->last_seen_ns)
            e->last_seen_ns = now_ns;
        idle_append(t, e);
    }
}

void clients_detach(clients *t, client_entry *e, int64_t now_ns)
{
    if (!e)
        return;
    pthread_mutex_lock(&t->mu);
    detach_locked(t, e, now_ns);
    pthread_mutex_unlock(&t->mu);
}

client_entry *clients_attach(clients *t, client_entry *cur, const record_source *src, uint64_t conn,
                             const char *service, size_t len, int64_t now_ns)
{
    len = clients_key_len(service, len);
    uint32_t h = key_hash(src->pid, src->comm, service, len);
    pthread_mutex_lock(&t->mu);
    detach_locked(t, cur, now_ns);
    client_entry *e = find(t, h, src, service, len);
    if (!e && !(e = create(t, h, src, service, len))) {
        pthread_mutex_unlock(&t->mu);
        return NULL;
    }
    if (e->attached++ == 0 && (e->idle_prev || t->idle_head == e))
        idle_unlink(t, e);
    if (e->last_conn != conn) {
        e->last_conn = conn;
        e->connections++;
    }
    e->last_seen_ns = now_ns;
    pthread_mutex_unlock(&t->mu);
    return e;
}

size_t clients_tracked(const clients *t)
{
    clients *m = (clients *)t; /* the lock is not part of the value */
    pthread_mutex_lock(&m->mu);
    size_t n = t->n;
    pthread_mutex_unlock(&m->mu);
    return n;
}

uint64_t clients_evicted(const clients *t)
{
    clients *m = (clients *)t;
    pthread_mutex_lock(&m->mu);
    uint64_t n = t->evicted;
    pthread_mutex_unlock(&m->mu);
    return n;
}

/* An entry and its counters read once: the ingest threads go on adding to them while the table is sorted. */
typedef struct snap {
    const client_entry *e;
    uint64_t records, bytes;
} snap;

/* Most records first; then most bytes; then pid, for a stable order. */
static int by_records_desc(const void *a, const void *b)
{
    const snap *x = a, *y = b;
    if (x->records != y->records)
        return x->records < y->records ? 1 : -1;
    if (x->bytes != y->bytes)
        return x->bytes < y->bytes ? 1 : -1;
    return x->e->pid < y->e->pid ? -1 : x->e->pid > y->e->pid;
}

static int entry_json(const client_entry *e, int64_t now_ns, int first, struct evbuffer *out)
{
    char comm[6 * sizeof e->comm + 1], service[6 * CLIENTS_SERVICE_MAX + 1];
    json_str_escape(comm, sizeof comm, e->comm, strnlen(e->comm, sizeof e->comm));
    json_str_escape(service, sizeof service, e->service, e->service_len);
    double seen = now_ns > e->last_seen_ns ? (double)(now_ns - e->last_seen_ns) / 1e9 : 0.0;
    return evbuffer_add_printf(out,
        "%s{\"pid\":%d,\"uid\":%u,\"gid\":%u,\"comm\":\"%s\",\"service_name\":\"%s\",\"connections\":%llu,"
        "\"active\":%s,\"records\":%llu,\"bytes\":%llu,\"rejected\":%llu,\"dropped\":%llu,"
        "\"last_seen_seconds\":%.3f}",
        first ? "" : ",", (int)e->pid, (unsigned)e->uid, (unsigned)e->gid, comm, service,
        (unsigned long long)e->connections, e->attached ? "true" : "false", (unsigned long long)e->records,
        (unsigned long long)e->bytes, (unsigned long long)e->rejected, (unsigned long long)e->dropped, seen) < 0
        ? -ENOMEM : 0;
}

int clients_json(const clients *t, size_t top, int64_t now_ns, struct evbuffer *out)
{
    clients *m = (clients *)t;
    pthread_mutex_lock(&m->mu);
    snap *all = malloc((t->n ? t->n : 1) * sizeof *all);
    if (!all) {
        pthread_mutex_unlock(&m->mu);
        return -ENOMEM;
    }
    size_t n = 0;
    for (size_t i = 0; i < t->nbuckets; i++)
        for (client_entry *e = t->buckets[i]; e; e = e->hnext)
            all[n++] = (snap){e, e->records, e->bytes};
    qsort(all, n, sizeof *all, by_records_desc);
    int rc = evbuffer_add_printf(out, "{\"clients\":[") < 0 ? -ENOMEM : 0;
    for (size_t i = 0; rc == 0 && i < n && i < top; i++)
        rc = entry_json(all[i].e, now_ns, i == 0, out);
    if (rc == 0 && evbuffer_add_printf(out, "],\"tracked\":%zu,\"evicted\":%llu}\n", t->n,
                                       (unsigned long long)t->evicted) < 0)
        rc = -ENOMEM;
    pthread_mutex_unlock(&m->mu);
    free(all);
    return rc;
}
