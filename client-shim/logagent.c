/* logagent.c — liblogagent: queue records in-process, write them to logagentd's socket from a thread.
 *
 * DESIGN
 * A client owns two chunks of cap bytes each: `fill`, where writers append encoded records, and `io`,
 * which the I/O thread is writing to the socket. Writers encode a record outside any lock (on their own
 * stack, or a heap buffer for big records), then take the mutex only to memcpy it into `fill`. When the
 * I/O thread has written all of `io` it swaps the two chunks under the mutex and writes the new `io`
 * outside it, in sends of at most SEND_CHUNK bytes, so room comes back to writers as the socket drains.
 * Writers wake the I/O thread only when it is idle (a state flag, so a busy thread costs them no system
 * call); with little data pending it lingers up to 1 ms before a swap, so that a slow trickle of
 * records still goes out in large sends (a flush or a writer out of room cuts the linger short).
 *
 * Invariants (under mu):
 *   - fill.len + io_left <= cap: the bound on buffered bytes; a record that does not fit is dropped and
 *     counted (or its writer waits on room_cv when block_timeout_ms != 0).
 *   - Each chunk holds whole records; chunk.ends[i] is the end offset of its i-th record. Only the I/O
 *     thread swaps the chunks or reads io.data, so it may read io outside the lock.
 *   - enq_bytes counts bytes ever appended, done_bytes bytes written to the socket. When a connection
 *     breaks mid-record, the I/O thread rewinds to the start of that record (and done_bytes with it):
 *     the agent discards a partial record, so it is re-sent whole on the next connection. Records that
 *     the kernel accepted before the agent died may still be lost: delivery is at most once per
 *     connection, and log_id lets the service drop any duplicate.
 *   - A flush waits for done_bytes to reach enq_bytes as it was at the call; records are appended at
 *     the end only, so a rewind never goes below a boundary that was already reached.
 *   - fd is created and closed under mu, so client_free can shutdown() it to unblock a send, and a
 *     forked child always sees a consistent value to close.
 *
 * fork(): the prepare handler takes the registry lock and every client's mutex, so a child copies
 * consistent state; the child handler empties each client, closes its copy of the socket and marks the
 * I/O thread absent, so the child's next write starts its own thread and connection.
 *
 * Global state: the registry of live clients (for the fork handlers), a fork generation counter (so a
 * thread-local id generator reseeds in a child), and the default client. */
#include "logagent.h"
#include "env.h"
#include "pack.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_BUFFER_BYTES ((size_t)4 << 20)
#define MIN_BUFFER_BYTES ((size_t)1 << 10)
#define MAX_BUFFER_BYTES ((size_t)1 << 30)   /* record end offsets are uint32_t */
#define MAX_RECORD_BYTES ((size_t)1 << 20)   /* the agent's default max_record_bytes */
#define MIN_RECORD_BYTES 64                  /* every encoded record is longer (message, level, log_id, timestamp) */
#define SEND_CHUNK ((size_t)256 << 10)
#define LINGER_BYTES ((size_t)64 << 10)
#define LINGER_NS 1000000L                   /* 1 ms */
#define BACKOFF_MIN_MS 10
#define BACKOFF_MAX_MS 1000
#define STACK_ENCODE_BYTES 4096
#define MAX_VA_FIELDS 64
#define DEFAULT_EXIT_FLUSH_MS 1000

typedef struct la_chunk {
    char *data;
    size_t len;
    uint32_t *ends;           /* ends[i]: offset just past record i */
    size_t n_ends;
} la_chunk;

struct logagent_client {
    /* read-only after logagent_client_new */
    struct sockaddr_un addr;
    socklen_t addr_len;
    size_t cap;               /* bound on fill.len + io_left */
    size_t max_record;
    size_t max_records;       /* capacity of each chunk's ends[] */
    size_t linger_bytes;      /* below this, the I/O thread lingers before taking fill */
    int block_timeout_ms;

    pthread_mutex_t mu;
    pthread_cond_t work_cv;   /* I/O thread: records arrived, or stop */
    pthread_cond_t room_cv;   /* writers: room freed */
    pthread_cond_t done_cv;   /* flushers: bytes written */

    /* everything below is under mu */
    la_chunk fill;
    la_chunk io;
    size_t io_left;           /* bytes of io not yet written */
    uint64_t enq_bytes;
    uint64_t done_bytes;
    int fd;
    int connected;
    int thread_running;
    int stopping;
    int io_state;             /* IO_BUSY, IO_IDLE or IO_LINGER: when writers must wake the I/O thread */
    unsigned room_waiters;
    unsigned done_waiters;
    uint64_t connects;
    int last_err;             /* errno of the last failed connect or broken connection; 0 once connected */
    int last_err_lost;        /* 1: last_err broke a connection; 0: connect() failed */
    logagent_stats st;
    pthread_t thread;

    /* under reg_mu */
    struct logagent_client *reg_prev, *reg_next;
};

enum { IO_BUSY, IO_IDLE, IO_LINGER };

/* ---- registry and fork handlers ---- */

/* Why logagent_default() made no client (a bad LOGAGENT_CLIENT_* value); written once under its pthread_once. */
static char default_error[200];

static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static logagent_client *reg_head;
static pthread_once_t reg_once = PTHREAD_ONCE_INIT;
static atomic_uint fork_gen;

static void sync_init(logagent_client *c)
{
    pthread_condattr_t ca;
    pthread_mutex_init(&c->mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&c->work_cv, &ca);
    pthread_cond_init(&c->room_cv, &ca);
    pthread_cond_init(&c->done_cv, &ca);
    pthread_condattr_destroy(&ca);
}

static void fork_prepare(void)
{
    pthread_mutex_lock(&reg_mu);
    for (logagent_client *c = reg_head; c; c = c->reg_next)
        pthread_mutex_lock(&c->mu);
}

static void fork_parent(void)
{
    for (logagent_client *c = reg_head; c; c = c->reg_next)
        pthread_mutex_unlock(&c->mu);
    pthread_mutex_unlock(&reg_mu);
}

/* The child is single-threaded: the mutexes are held by this very thread (fork_prepare), condition
 * variables may record waiters that do not exist here, so they are made anew. */
static void fork_child(void)
{
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    for (logagent_client *c = reg_head; c; c = c->reg_next) {
        pthread_cond_init(&c->work_cv, &ca);
        pthread_cond_init(&c->room_cv, &ca);
        pthread_cond_init(&c->done_cv, &ca);
        if (c->fd >= 0)
            close(c->fd);
        c->fd = -1;
        c->connected = 0;
        c->fill.len = c->fill.n_ends = 0;
        c->io.len = c->io.n_ends = 0;
        c->io_left = 0;
        c->enq_bytes = c->done_bytes = 0;
        c->thread_running = 0;
        c->stopping = 0;
        c->io_state = IO_BUSY;
        c->room_waiters = c->done_waiters = 0;
        c->connects = 0;
        c->last_err = 0;
        memset(&c->st, 0, sizeof c->st);
        pthread_mutex_unlock(&c->mu);
    }
    pthread_condattr_destroy(&ca);
    atomic_fetch_add(&fork_gen, 1);
    pthread_mutex_unlock(&reg_mu);
}

static void reg_init(void)
{
    pthread_atfork(fork_prepare, fork_parent, fork_child);
}

static void reg_add(logagent_client *c)
{
    pthread_once(&reg_once, reg_init);
    pthread_mutex_lock(&reg_mu);
    c->reg_prev = NULL;
    c->reg_next = reg_head;
    if (reg_head)
        reg_head->reg_prev = c;
    reg_head = c;
    pthread_mutex_unlock(&reg_mu);
}

static void reg_remove(logagent_client *c)
{
    pthread_mutex_lock(&reg_mu);
    if (c->reg_prev)
        c->reg_prev->reg_next = c->reg_next;
    else
        reg_head = c->reg_next;
    if (c->reg_next)
        c->reg_next->reg_prev = c->reg_prev;
    pthread_mutex_unlock(&reg_mu);
}

/* ---- log ids: xoshiro256** per thread, seeded from getrandom() ---- */

typedef struct la_rng {
    uint64_t s[4];
    unsigned gen;             /* fork_gen when seeded: a child reseeds instead of repeating its parent */
    int seeded;
} la_rng;

static _Thread_local la_rng tls_rng;

static uint64_t rotl64(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void rng_seed(la_rng *g)
{
    unsigned char *p = (unsigned char *)g->s;
    size_t got = 0;
    while (got < sizeof g->s) {
        ssize_t n = getrandom(p + got, sizeof g->s - got, GRND_NONBLOCK);
        if (n > 0)
            got += (size_t)n;
        else if (n < 0 && errno == EINTR)
            continue;
        else
            break;
    }
    if (got < sizeof g->s) {
        /* no kernel entropy yet (early boot) or no getrandom: time, pid and addresses, well mixed */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t x = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
        x ^= (uint64_t)getpid() << 32 ^ (uint64_t)(uintptr_t)g;
        for (int i = 0; i < 4; i++)
            g->s[i] ^= splitmix64(&x);
    }
    if ((g->s[0] | g->s[1] | g->s[2] | g->s[3]) == 0)
        g->s[0] = 1;
    g->gen = atomic_load_explicit(&fork_gen, memory_order_relaxed);
    g->seeded = 1;
}

static uint64_t rng_next(la_rng *g)
{
    uint64_t r = rotl64(g->s[1] * 5, 7) * 9;
    uint64_t t = g->s[1] << 17;
    g->s[2] ^= g->s[0];
    g->s[3] ^= g->s[1];
    g->s[1] ^= g->s[2];
    g->s[0] ^= g->s[3];
    g->s[2] ^= t;
    g->s[3] = rotl64(g->s[3], 45);
    return r;
}

void logagent_new_log_id(char buf[33])
{
    static const char hex[] = "0123456789abcdef";
    la_rng *g = &tls_rng;
    if (!g->seeded || g->gen != atomic_load_explicit(&fork_gen, memory_order_relaxed))
        rng_seed(g);
    uint64_t w[2] = { rng_next(g), rng_next(g) };
    for (int i = 0; i < 32; i++)
        buf[i] = hex[(w[i / 16] >> (60 - 4 * (i % 16))) & 0xf];
    buf[32] = '\0';
}

/* ---- time ---- */

static int64_t now_unix_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void deadline_after(struct timespec *dl, int ms)
{
    clock_gettime(CLOCK_MONOTONIC, dl);
    dl->tv_sec += ms / 1000;
    dl->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (dl->tv_nsec >= 1000000000L) {
        dl->tv_sec++;
        dl->tv_nsec -= 1000000000L;
    }
}

/* ---- the I/O thread ---- */

static void close_fd_locked(logagent_client *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    c->connected = 0;
}

/* Called and returns with mu held; drops it around connect(). Returns 0 or -errno. */
static int io_connect(logagent_client *c)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    c->fd = fd;
    pthread_mutex_unlock(&c->mu);
    int rc = connect(fd, (const struct sockaddr *)&c->addr, c->addr_len);
    int err = errno;
    pthread_mutex_lock(&c->mu);
    if (rc < 0) {
        close_fd_locked(c);
        c->last_err = err;
        c->last_err_lost = 0;
        return -err;
    }
    c->connected = 1;
    c->last_err = 0;
    if (c->connects++ > 0)
        c->st.reconnects++;
    return 0;
}

/* Sleeps up to ms on work_cv (mu held) unless the client is stopping. */
static void io_backoff(logagent_client *c, unsigned ms)
{
    struct timespec dl;
    deadline_after(&dl, (int)ms);
    while (!c->stopping)
        if (pthread_cond_timedwait(&c->work_cv, &c->mu, &dl) == ETIMEDOUT)
            break;
}

/* Wakes the I/O thread from an idle wait or a linger (mu held). Writers call it only on a state change,
 * so a busy I/O thread costs them no system call. */
static void io_kick_locked(logagent_client *c)
{
    c->io_state = IO_BUSY;
    pthread_cond_signal(&c->work_cv);
}

/* Waits on work_cv up to ns nanoseconds (mu held). */
static void io_wait_ns(logagent_client *c, long ns)
{
    struct timespec dl;
    clock_gettime(CLOCK_MONOTONIC, &dl);
    dl.tv_nsec += ns;
    if (dl.tv_nsec >= 1000000000L) {
        dl.tv_sec++;
        dl.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(&c->work_cv, &c->mu, &dl);
}

static void wake_waiters_locked(logagent_client *c)
{
    if (c->room_waiters)
        pthread_cond_broadcast(&c->room_cv);
    if (c->done_waiters)
        pthread_cond_broadcast(&c->done_cv);
}

static void *io_main(void *arg)
{
    logagent_client *c = arg;
    size_t off = 0;           /* bytes of io written (rewound to a record start on a broken connection) */
    size_t rec = 0;           /* records of io fully written */
    unsigned backoff_ms = 0;
    int progressed = 0;       /* a record was completed on the current connection */
    int lingered = 0;

    pthread_mutex_lock(&c->mu);
    while (!c->stopping) {
        if (off == c->io.len) {
            if (c->fill.len == 0) {
                c->io_state = IO_IDLE;
                pthread_cond_wait(&c->work_cv, &c->mu);
                c->io_state = IO_BUSY;
                continue;
            }
            /* A little data and nobody waiting on it: linger up to 1 ms so that one send carries many
             * records, instead of a wake-up and a send per record when writers are slower than the
             * socket. A writer passing linger_bytes, a flush, or a writer out of room ends it early. */
            if (!lingered && c->fill.len < c->linger_bytes && !c->done_waiters && !c->room_waiters) {
                c->io_state = IO_LINGER;
                io_wait_ns(c, LINGER_NS);
                c->io_state = IO_BUSY;
                lingered = 1;
                continue;
            }
            lingered = 0;
            la_chunk t = c->io;
            c->io = c->fill;
            c->fill = t;
            c->fill.len = 0;
            c->fill.n_ends = 0;
            c->io_left = c->io.len;
            off = 0;
            rec = 0;
        }
        if (c->fd < 0) {
            if (backoff_ms) {
                io_backoff(c, backoff_ms);
                if (c->stopping)
                    break;
            }
            if (io_connect(c) < 0) {
                backoff_ms = backoff_ms ? backoff_ms * 2 : BACKOFF_MIN_MS;
                if (backoff_ms > BACKOFF_MAX_MS)
                    backoff_ms = BACKOFF_MAX_MS;
                continue;
            }
            progressed = 0;
        }

        int fd = c->fd;
        const char *p = c->io.data + off;
        size_t n = c->io.len - off;
        if (n > SEND_CHUNK)
            n = SEND_CHUNK;
        pthread_mutex_unlock(&c->mu);
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        int err = errno;
        pthread_mutex_lock(&c->mu);

        if (w > 0) {
            off += (size_t)w;
            c->io_left -= (size_t)w;
            c->done_bytes += (uint64_t)w;
            while (rec < c->io.n_ends && c->io.ends[rec] <= off) {
                rec++;
                c->st.sent++;
                progressed = 1;
            }
            if (progressed)
                backoff_ms = 0;
            wake_waiters_locked(c);
        } else if (w < 0 && (err == EINTR || err == EAGAIN)) {
            continue;
        } else {
            /* EPIPE, ECONNRESET, ...: re-send the cut record whole on a new connection. A connection that
             * broke before completing any record backs off, so an agent that keeps closing on us (or a
             * record it refuses) cannot make this a busy loop. */
            size_t start = rec ? c->io.ends[rec - 1] : 0;
            c->io_left += off - start;
            c->done_bytes -= off - start;
            off = start;
            close_fd_locked(c);
            c->last_err = err;
            c->last_err_lost = 1;
            if (!progressed) {
                backoff_ms = backoff_ms ? backoff_ms * 2 : BACKOFF_MIN_MS;
                if (backoff_ms > BACKOFF_MAX_MS)
                    backoff_ms = BACKOFF_MAX_MS;
            }
        }
    }
    close_fd_locked(c);
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

/* Starts the I/O thread with every signal blocked (signals belong to the application's threads).
 * mu held. Returns 0 or -errno. */
static int io_start_locked(logagent_client *c)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&c->thread, NULL, io_main, c);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0)
        return -rc;
    c->thread_running = 1;
    return 0;
}

/* ---- public API ---- */

int logagent_client_new(const logagent_options *opts, logagent_client **out)
{
    if (!out)
        return -EINVAL;
    *out = NULL;

    const char *path = opts ? opts->socket_path : NULL;
    if (!path) {
        path = getenv("LOGAGENT_SOCKET");
        if (!path || !*path)
            path = LOGAGENT_DEFAULT_SOCKET;
    }
    size_t plen = strlen(path);
    logagent_client *c = calloc(1, sizeof *c);
    if (!c)
        return -ENOMEM;
    if (plen == 0 || plen >= sizeof c->addr.sun_path) {
        free(c);
        return plen ? -ENAMETOOLONG : -EINVAL;
    }
    c->addr.sun_family = AF_UNIX;
    memcpy(c->addr.sun_path, path, plen + 1);
    c->addr_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + plen + 1);

    size_t cap = opts && opts->buffer_bytes ? opts->buffer_bytes : DEFAULT_BUFFER_BYTES;
    if (cap < MIN_BUFFER_BYTES)
        cap = MIN_BUFFER_BYTES;
    if (cap > MAX_BUFFER_BYTES)
        cap = MAX_BUFFER_BYTES;
    c->cap = cap;
    c->max_record = cap < MAX_RECORD_BYTES ? cap : MAX_RECORD_BYTES;
    c->max_records = cap / MIN_RECORD_BYTES + 1;
    c->linger_bytes = cap / 4 < LINGER_BYTES ? cap / 4 : LINGER_BYTES;
    c->block_timeout_ms = opts ? opts->block_timeout_ms : 0;
    c->fd = -1;

    c->fill.data = malloc(cap);
    c->io.data = malloc(cap);
    c->fill.ends = malloc(c->max_records * sizeof *c->fill.ends);
    c->io.ends = malloc(c->max_records * sizeof *c->io.ends);
    if (!c->fill.data || !c->io.data || !c->fill.ends || !c->io.ends) {
        free(c->fill.data);
        free(c->io.data);
        free(c->fill.ends);
        free(c->io.ends);
        free(c);
        return -ENOMEM;
    }
    sync_init(c);
    reg_add(c);
    *out = c;
    return 0;
}

void logagent_client_free(logagent_client *c, int flush_timeout_ms)
{
    if (!c)
        return;
    if (flush_timeout_ms != 0)
        logagent_flush(c, flush_timeout_ms);

    pthread_mutex_lock(&c->mu);
    c->stopping = 1;
    int running = c->thread_running;
    pthread_cond_broadcast(&c->work_cv);
    pthread_cond_broadcast(&c->room_cv);
    pthread_cond_broadcast(&c->done_cv);
    if (c->fd >= 0)
        shutdown(c->fd, SHUT_RDWR);     /* unblocks a send() to an agent that stopped reading */
    pthread_mutex_unlock(&c->mu);
    if (running)
        pthread_join(c->thread, NULL);

    reg_remove(c);
    pthread_cond_destroy(&c->work_cv);
    pthread_cond_destroy(&c->room_cv);
    pthread_cond_destroy(&c->done_cv);
    pthread_mutex_destroy(&c->mu);
    free(c->fill.data);
    free(c->io.data);
    free(c->fill.ends);
    free(c->io.ends);
    free(c);
}

static logagent_result result_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static logagent_result result_error(const char *fmt, ...)
{
    logagent_result res;
    va_list ap;
    res.success = 0;
    res.log_id[0] = '\0';
    va_start(ap, fmt);
    vsnprintf(res.error_message, sizeof res.error_message, fmt, ap);
    va_end(ap);
    return res;
}

/* Why the buffer is full, as the Python client says it: "agent slow or down" while connected; the connect or
 * send error while not; "not connected … yet" before the first attempt. mu held. */
static void full_reason_locked(const logagent_client *c, char *why, size_t len)
{
    if (c->connected)
        snprintf(why, len, "agent slow or down");
    else if (c->last_err && c->last_err_lost)
        snprintf(why, len, "agent down: connection to %s lost: %s", c->addr.sun_path, strerror(c->last_err));
    else if (c->last_err)
        snprintf(why, len, "agent down: cannot connect to %s: %s", c->addr.sun_path, strerror(c->last_err));
    else
        snprintf(why, len, "not connected to the agent at %s yet", c->addr.sun_path);
}

/* Appends one encoded record to fill, waiting for room as block_timeout_ms says.
 * Returns 0, -ENOBUFS (buffer full: dropped and counted; why says why), or -errno from starting the I/O
 * thread. */
static int enqueue(logagent_client *c, const void *p, size_t n, char *why, size_t why_len)
{
    struct timespec dl;
    int have_dl = 0;

    pthread_mutex_lock(&c->mu);
    if (!c->thread_running && !c->stopping) {
        int rc = io_start_locked(c);
        if (rc < 0) {
            pthread_mutex_unlock(&c->mu);
            return rc;
        }
    }
    while (c->fill.len + c->io_left + n > c->cap || c->fill.n_ends >= c->max_records) {
        if (c->stopping || c->block_timeout_ms == 0)
            goto full;
        if (c->io_state == IO_LINGER)
            io_kick_locked(c);
        c->room_waiters++;
        if (c->block_timeout_ms < 0) {
            pthread_cond_wait(&c->room_cv, &c->mu);
            c->room_waiters--;
        } else {
            if (!have_dl) {
                deadline_after(&dl, c->block_timeout_ms);
                have_dl = 1;
            }
            int rc = pthread_cond_timedwait(&c->room_cv, &c->mu, &dl);
            c->room_waiters--;
            if (rc == ETIMEDOUT && c->fill.len + c->io_left + n > c->cap)
                goto full;
        }
    }
    memcpy(c->fill.data + c->fill.len, p, n);
    c->fill.len += n;
    c->fill.ends[c->fill.n_ends++] = (uint32_t)c->fill.len;
    c->enq_bytes += n;
    c->st.written++;
    if (c->io_state == IO_IDLE || (c->io_state == IO_LINGER && c->fill.len >= c->linger_bytes))
        io_kick_locked(c);
    pthread_mutex_unlock(&c->mu);
    return 0;

full:
    c->st.dropped++;
    full_reason_locked(c, why, why_len);
    pthread_mutex_unlock(&c->mu);
    return -ENOBUFS;
}

logagent_result logagent_write(logagent_client *c, const logagent_record *r)
{
    if (!c && default_error[0]) /* logagent_default() refused its environment */
        return result_error("cannot create the logagent client: %s", default_error);
    if (!c || !r || !r->message)
        return result_error("invalid argument: %s is NULL", !c ? "client" : !r ? "record" : "message");
    if (r->n_fields && !r->fields)
        return result_error("invalid argument: n_fields is %zu but fields is NULL", r->n_fields);
    for (size_t i = 0; i < r->n_fields; i++) {
        const logagent_field *f = &r->fields[i];
        if (!f->key)
            return result_error("invalid argument: field %zu has no key", i);
        if (f->type < LOGAGENT_STR || f->type > LOGAGENT_BOOL)
            return result_error("invalid argument: field '%.60s' has unknown type %d", f->key, (int)f->type);
    }

    logagent_result res;
    res.success = 0;
    res.error_message[0] = '\0';
    logagent_new_log_id(res.log_id);
    int64_t ts = r->timestamp_unix_nano ? r->timestamp_unix_nano : now_unix_ns();

    unsigned char stack_buf[STACK_ENCODE_BYTES];
    unsigned char *p = stack_buf;
    size_t n = la_pack_record(stack_buf, sizeof stack_buf, r, res.log_id, ts);
    if (n == LA_PACK_TOO_BIG)
        return result_error("record too large (a string over 4 GiB): record dropped");
    if (n > c->max_record)
        return result_error("record too large (%zu bytes, limit %zu): record dropped", n, c->max_record);
    if (n > sizeof stack_buf) {
        p = malloc(n);
        if (!p)
            return result_error("out of memory encoding a %zu-byte record: record dropped", n);
        la_pack_record(p, n, r, res.log_id, ts);
    }
    char why[sizeof res.error_message];
    int rc = enqueue(c, p, n, why, sizeof why);
    if (p != stack_buf)
        free(p);

    if (rc == -ENOBUFS)
        return result_error("logagent buffer full (%s): record dropped", why);
    if (rc < 0)
        return result_error("cannot start the logagent I/O thread: %s", strerror(-rc));
    res.success = 1;
    return res;
}

logagent_result logagent_write_log(logagent_client *c, const char *message, const char *service_name,
                                   const char *level, const char *trace_id, const char *span_id, ...)
{
    logagent_field fields[MAX_VA_FIELDS];
    size_t n = 0;
    va_list ap;

    va_start(ap, span_id);
    for (;;) {
        int t = va_arg(ap, int);
        if (t == LOGAGENT_END)
            break;
        if (n == MAX_VA_FIELDS) {
            va_end(ap);
            return result_error("too many fields (at most %d): record dropped", MAX_VA_FIELDS);
        }
        logagent_field *f = &fields[n++];
        f->key = va_arg(ap, const char *);
        f->type = (logagent_type)t;
        switch (t) {
        case LOGAGENT_STR:
            f->v.s = va_arg(ap, const char *);
            break;
        case LOGAGENT_INT:
            f->v.i = va_arg(ap, int64_t);
            break;
        case LOGAGENT_DOUBLE:
            f->v.d = va_arg(ap, double);
            break;
        case LOGAGENT_BOOL:
            f->v.b = va_arg(ap, int);
            break;
        default:
            va_end(ap);
            return result_error("invalid argument: field %zu has unknown type %d (missing LOGAGENT_END?)",
                                n - 1, t);
        }
    }
    va_end(ap);

    logagent_record r = {
        .message = message,
        .service_name = service_name,
        .level = level,
        .trace_id = trace_id,
        .span_id = span_id,
        .timestamp_unix_nano = 0,
        .fields = fields,
        .n_fields = n,
    };
    return logagent_write(c, &r);
}

int logagent_flush(logagent_client *c, int timeout_ms)
{
    struct timespec dl;
    int rc = 0;

    if (!c)
        return -EINVAL;
    if (timeout_ms >= 0)
        deadline_after(&dl, timeout_ms);
    pthread_mutex_lock(&c->mu);
    uint64_t target = c->enq_bytes;
    while (c->done_bytes < target) {
        if (c->stopping || !c->thread_running) {
            rc = -ENOTCONN;
            break;
        }
        c->done_waiters++;
        if (c->io_state == IO_LINGER)
            io_kick_locked(c);
        int w = timeout_ms < 0 ? pthread_cond_wait(&c->done_cv, &c->mu)
                               : pthread_cond_timedwait(&c->done_cv, &c->mu, &dl);
        c->done_waiters--;
        if (w == ETIMEDOUT && c->done_bytes < target) {
            rc = c->connected ? -ETIMEDOUT : -ENOTCONN;
            break;
        }
    }
    pthread_mutex_unlock(&c->mu);
    return rc;
}

void logagent_get_stats(logagent_client *c, logagent_stats *out)
{
    if (!out)
        return;
    if (!c) {
        memset(out, 0, sizeof *out);
        return;
    }
    pthread_mutex_lock(&c->mu);
    *out = c->st;
    out->buffered_bytes = c->fill.len + c->io_left;
    pthread_mutex_unlock(&c->mu);
}

/* ---- the default client ---- */

static pthread_once_t default_once = PTHREAD_ONCE_INIT;
static logagent_client *default_client;
static int default_exit_flush_ms = DEFAULT_EXIT_FLUSH_MS;

/* At exit, give the default client's buffered records a bounded chance to reach the agent. */
static void default_at_exit(void)
{
    logagent_flush(default_client, default_exit_flush_ms);
}

static void default_init(void)
{
    la_env env;
    if (la_env_read(&env, default_error, sizeof default_error) < 0)
        return; /* no client: every write through it says why (logagent_write with a NULL client) */
    if (logagent_client_new(&env.opts, &default_client) < 0)
        return;
    if (env.max_record)
        default_client->max_record = env.max_record < default_client->cap ? env.max_record : default_client->cap;
    if (env.exit_flush_ms >= 0)
        default_exit_flush_ms = env.exit_flush_ms;
    atexit(default_at_exit);
}

logagent_client *logagent_default(void)
{
    pthread_once(&default_once, default_init);
    return default_client;
}

int logagent_probe(const char *socket_path)
{
    const char *path = socket_path ? socket_path : getenv("LOGAGENT_SOCKET");
    if (!path || !*path)
        path = LOGAGENT_DEFAULT_SOCKET;
    struct sockaddr_un a;
    if (strlen(path) >= sizeof a.sun_path)
        return -ENAMETOOLONG;
    memset(&a, 0, sizeof a);
    a.sun_family = AF_UNIX;
    memcpy(a.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int rc = connect(fd, (struct sockaddr *)&a, sizeof a) < 0 ? -errno : 0;
    close(fd);
    return rc;
}
