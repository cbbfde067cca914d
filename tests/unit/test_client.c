/* test_client.c — liblogagent: record encoding, drops on a full buffer, flush delivery, reconnect after an
 * agent restart, blocking writers, fork.
 *
 * The agent is played by a listener thread in this process (socket/bind/listen on a path in a fresh
 * temporary directory). It keeps every byte each connection sent; the checks decode those bytes with
 * msgpack-c's msgpack_unpack_next, so a partial record or a malformed stream shows up as a failure.
 * Every wait is bounded; alarm() ends a hung run. Exit status 0 when every check passed. */
#include <errno.h>
#include <msgpack.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "logagent.h"

/* TSan: the fork test starts a thread in the child of a multi-threaded process, which is fine here. */
const char *__tsan_default_options(void);
const char *__tsan_default_options(void)
{
    return "die_after_fork=0";
}

static int failures;

#define CHECK(cond, ...)                                                                \
    do {                                                                                \
        if (!(cond)) {                                                                  \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);             \
            fprintf(stderr, __VA_ARGS__);                                               \
            fputc('\n', stderr);                                                        \
            failures++;                                                                 \
        }                                                                               \
    } while (0)

/* ---- a listener standing in for the agent ---- */

#define MAX_CONNS 16

typedef struct stream {
    char *data;
    size_t len, cap;
} stream;

typedef struct conn {
    int fd;
    stream s;
    msgpack_unpacker u;       /* live count of complete records */
} conn;

typedef struct listener {
    char path[108];
    int lfd;
    int stop_pipe[2];
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* under mu */
    size_t records;           /* complete objects seen so far, all connections */
    stream closed[64];        /* bytes of each finished connection */
    size_t n_closed;
    size_t connections;
} listener;

static void stream_append(stream *s, const char *p, size_t n)
{
    if (s->len + n > s->cap) {
        size_t cap = s->cap ? s->cap : 65536;
        while (cap < s->len + n)
            cap *= 2;
        char *d = realloc(s->data, cap);
        if (!d) {
            perror("realloc");
            exit(2);
        }
        s->data = d;
        s->cap = cap;
    }
    memcpy(s->data + s->len, p, n);
    s->len += n;
}

static void conn_close(listener *l, conn *c)
{
    close(c->fd);
    msgpack_unpacker_destroy(&c->u);
    pthread_mutex_lock(&l->mu);
    if (l->n_closed < sizeof l->closed / sizeof l->closed[0])
        l->closed[l->n_closed++] = c->s;
    else
        free(c->s.data);
    pthread_cond_broadcast(&l->cv);
    pthread_mutex_unlock(&l->mu);
    memset(&c->s, 0, sizeof c->s);
    c->fd = -1;
}

static void *listener_main(void *arg)
{
    listener *l = arg;
    conn conns[MAX_CONNS];
    size_t n = 0;
    char buf[65536];
    msgpack_unpacked res;
    msgpack_unpacked_init(&res);

    for (;;) {
        struct pollfd pfd[MAX_CONNS + 2];
        pfd[0] = (struct pollfd){ .fd = l->stop_pipe[0], .events = POLLIN };
        pfd[1] = (struct pollfd){ .fd = l->lfd, .events = POLLIN };
        for (size_t i = 0; i < n; i++)
            pfd[2 + i] = (struct pollfd){ .fd = conns[i].fd, .events = POLLIN };
        if (poll(pfd, 2 + n, -1) < 0) {
            if (errno == EINTR)
                continue;
            perror("poll");
            break;
        }
        if (pfd[0].revents)
            break;
        if ((pfd[1].revents & POLLIN) && n < MAX_CONNS) {
            int fd = accept(l->lfd, NULL, NULL);
            if (fd >= 0) {
                conns[n].fd = fd;
                memset(&conns[n].s, 0, sizeof conns[n].s);
                msgpack_unpacker_init(&conns[n].u, MSGPACK_UNPACKER_INIT_BUFFER_SIZE);
                n++;
                pthread_mutex_lock(&l->mu);
                l->connections++;
                pthread_mutex_unlock(&l->mu);
            }
        }
        for (size_t i = 0; i < n; i++) {
            conn *c = &conns[i];
            if (!pfd[2 + i].revents)
                continue;
            ssize_t r = read(c->fd, buf, sizeof buf);
            if (r <= 0) {
                conn_close(l, c);
                continue;
            }
            stream_append(&c->s, buf, (size_t)r);
            msgpack_unpacker_reserve_buffer(&c->u, (size_t)r);
            memcpy(msgpack_unpacker_buffer(&c->u), buf, (size_t)r);
            msgpack_unpacker_buffer_consumed(&c->u, (size_t)r);
            size_t got = 0;
            while (msgpack_unpacker_next(&c->u, &res) == MSGPACK_UNPACK_SUCCESS)
                got++;
            if (got) {
                pthread_mutex_lock(&l->mu);
                l->records += got;
                pthread_cond_broadcast(&l->cv);
                pthread_mutex_unlock(&l->mu);
            }
        }
        /* drop closed connections (pfd indexes are not reused past this point) */
        size_t k = 0;
        for (size_t i = 0; i < n; i++)
            if (conns[i].fd >= 0)
                conns[k++] = conns[i];
        n = k;
    }
    /* stop: like an agent going away, close every connection whatever it was doing */
    for (size_t i = 0; i < n; i++)
        conn_close(l, &conns[i]);
    msgpack_unpacked_destroy(&res);
    return NULL;
}

static int listener_start(listener *l, const char *path)
{
    struct sockaddr_un a;
    memset(l, 0, sizeof *l);
    snprintf(l->path, sizeof l->path, "%s", path);
    memset(&a, 0, sizeof a);
    a.sun_family = AF_UNIX;
    CHECK(strlen(path) < sizeof a.sun_path, "path too long");
    memcpy(a.sun_path, path, strlen(path) + 1);
    unlink(path);
    l->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (l->lfd < 0 || bind(l->lfd, (struct sockaddr *)&a, sizeof a) < 0 || listen(l->lfd, 64) < 0 ||
        pipe(l->stop_pipe) < 0) {
        perror("listener");
        return -1;
    }
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->cv, NULL);
    if (pthread_create(&l->thread, NULL, listener_main, l) != 0)
        return -1;
    return 0;
}

/* Stops accepting, closes every connection (an agent restart, seen from the client), removes the socket. */
static void listener_stop(listener *l)
{
    if (write(l->stop_pipe[1], "x", 1) != 1)
        perror("write");
    pthread_join(l->thread, NULL);
    close(l->lfd);
    close(l->stop_pipe[0]);
    close(l->stop_pipe[1]);
    unlink(l->path);
}

static void listener_free(listener *l)
{
    for (size_t i = 0; i < l->n_closed; i++)
        free(l->closed[i].data);
    pthread_cond_destroy(&l->cv);
    pthread_mutex_destroy(&l->mu);
}

/* Waits until `want` complete records arrived and `want_closed` connections ended. 0 or -1 on timeout. */
static int listener_wait(listener *l, size_t want, size_t want_closed, int timeout_ms)
{
    struct timespec dl;
    int rc = 0;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += timeout_ms / 1000;
    dl.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (dl.tv_nsec >= 1000000000L) {
        dl.tv_sec++;
        dl.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&l->mu);
    while (l->records < want || l->n_closed < want_closed)
        if (pthread_cond_timedwait(&l->cv, &l->mu, &dl) == ETIMEDOUT) {
            rc = -1;
            break;
        }
    pthread_mutex_unlock(&l->mu);
    return rc;
}

/* ---- decoding what the listener got ---- */

typedef struct rec_set {
    size_t n;
    size_t partial;           /* connections that ended inside a record */
    size_t malformed;
    size_t non_map;
    char (*log_ids)[33];
    char **messages;
    size_t cap;
} rec_set;

static const msgpack_object *map_get(const msgpack_object *m, const char *key)
{
    size_t kl = strlen(key);
    for (uint32_t i = 0; i < m->via.map.size; i++) {
        const msgpack_object *k = &m->via.map.ptr[i].key;
        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == kl && memcmp(k->via.str.ptr, key, kl) == 0)
            return &m->via.map.ptr[i].val;
    }
    return NULL;
}

static int is_str(const msgpack_object *o, const char *s)
{
    return o && o->type == MSGPACK_OBJECT_STR && o->via.str.size == strlen(s) &&
           memcmp(o->via.str.ptr, s, o->via.str.size) == 0;
}

static int is_int(const msgpack_object *o, int64_t v)
{
    if (!o)
        return 0;
    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
        return v >= 0 && o->via.u64 == (uint64_t)v;
    if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
        return v < 0 && o->via.i64 == v;
    return 0;
}

static int is_log_id(const char *s, size_t n)
{
    if (n != 32)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return 1;
}

typedef void (*rec_check_fn)(const msgpack_object *rec, void *arg);

/* Decodes every closed stream of l into set (log ids, messages), calling check on each record map. */
static void decode_all(listener *l, rec_set *set, rec_check_fn check, void *arg)
{
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    memset(set, 0, sizeof *set);
    for (size_t s = 0; s < l->n_closed; s++) {
        const char *data = l->closed[s].data;
        size_t len = l->closed[s].len, off = 0;
        while (off < len) {
            msgpack_unpack_return r = msgpack_unpack_next(&up, data, len, &off);
            if (r == MSGPACK_UNPACK_CONTINUE) {
                set->partial++;
                break;
            }
            if (r != MSGPACK_UNPACK_SUCCESS && r != MSGPACK_UNPACK_EXTRA_BYTES) {
                set->malformed++;
                break;
            }
            const msgpack_object *o = &up.data;
            if (o->type != MSGPACK_OBJECT_MAP) {
                set->non_map++;
                continue;
            }
            if (set->n == set->cap) {
                set->cap = set->cap ? set->cap * 2 : 1024;
                set->log_ids = realloc(set->log_ids, set->cap * sizeof *set->log_ids);
                set->messages = realloc(set->messages, set->cap * sizeof *set->messages);
                if (!set->log_ids || !set->messages) {
                    perror("realloc");
                    exit(2);
                }
            }
            const msgpack_object *id = map_get(o, "log_id");
            const msgpack_object *msg = map_get(o, "message");
            set->log_ids[set->n][0] = '\0';
            if (id && id->type == MSGPACK_OBJECT_STR && is_log_id(id->via.str.ptr, id->via.str.size)) {
                memcpy(set->log_ids[set->n], id->via.str.ptr, 32);
                set->log_ids[set->n][32] = '\0';
            }
            set->messages[set->n] = msg && msg->type == MSGPACK_OBJECT_STR
                                        ? strndup(msg->via.str.ptr, msg->via.str.size)
                                        : strdup("<no message>");
            set->n++;
            if (check)
                check(o, arg);
        }
    }
    msgpack_unpacked_destroy(&up);
}

static void rec_set_free(rec_set *set)
{
    for (size_t i = 0; i < set->n; i++)
        free(set->messages[i]);
    free(set->messages);
    free(set->log_ids);
}

static int cmp_id(const void *a, const void *b)
{
    return strcmp(a, b);
}

/* Number of log ids that appear more than once (or are malformed: empty). */
static size_t bad_or_duplicate_ids(rec_set *set)
{
    size_t bad = 0;
    qsort(set->log_ids, set->n, sizeof *set->log_ids, cmp_id);
    for (size_t i = 0; i < set->n; i++)
        if (set->log_ids[i][0] == '\0' || (i > 0 && strcmp(set->log_ids[i], set->log_ids[i - 1]) == 0))
            bad++;
    return bad;
}

static size_t count_message(const rec_set *set, const char *prefix)
{
    size_t n = 0, pl = strlen(prefix);
    for (size_t i = 0; i < set->n; i++)
        if (strncmp(set->messages[i], prefix, pl) == 0)
            n++;
    return n;
}

/* ---- the records whose encoding is checked field by field ---- */

static const int64_t int_values[] = {
    0, 1, 127, 128, 255, 256, 65535, 65536, 4294967295LL, 4294967296LL, INT64_MAX,
    -1, -32, -33, -128, -129, -32768, -32769, INT32_MIN, (int64_t)INT32_MIN - 1, INT64_MIN,
};
#define N_INTS (sizeof int_values / sizeof int_values[0])
#define LONG_STR_LEN 70000    /* str32 */
#define MID_STR_LEN 300       /* str16 */

typedef struct typed_check {
    int seen_typed, seen_variadic, seen_ts_field;
    int64_t t_before, t_after;
    char typed_log_id[33];
} typed_check;

static void check_typed(const msgpack_object *o, void *arg)
{
    typed_check *tc = arg;
    const msgpack_object *msg = map_get(o, "message");
    char key[16];

    if (is_str(msg, "typed record")) {
        tc->seen_typed++;
        /* core keys (7) + strings s, mid, long, nil, _reserved + N_INTS ints + 2 doubles + 2 bools */
        CHECK(o->via.map.size == 7 + 5 + N_INTS + 2 + 2, "map has %u keys", o->via.map.size);
        CHECK(is_str(&o->via.map.ptr[0].key, "message"), "message is not the first key");
        CHECK(is_str(map_get(o, "level"), "WARN"), "level");
        CHECK(is_str(map_get(o, "service_name"), "unit"), "service_name");
        CHECK(is_str(map_get(o, "trace_id"), "trace-1"), "trace_id");
        CHECK(is_str(map_get(o, "span_id"), "span-1"), "span_id");
        CHECK(is_int(map_get(o, "timestamp"), 1234567890123456789LL), "timestamp");
        const msgpack_object *id = map_get(o, "log_id");
        CHECK(id && id->type == MSGPACK_OBJECT_STR && id->via.str.size == 32 &&
                  memcmp(id->via.str.ptr, tc->typed_log_id, 32) == 0,
              "log_id differs from the result's");
        CHECK(is_str(map_get(o, "s"), "text"), "s");
        CHECK(is_str(map_get(o, "_reserved"), "sent as given"), "_reserved");
        const msgpack_object *mid = map_get(o, "mid"), *lng = map_get(o, "long");
        CHECK(mid && mid->type == MSGPACK_OBJECT_STR && mid->via.str.size == MID_STR_LEN, "mid");
        CHECK(lng && lng->type == MSGPACK_OBJECT_STR && lng->via.str.size == LONG_STR_LEN &&
                  lng->via.str.ptr[LONG_STR_LEN - 1] == 'z',
              "long");
        const msgpack_object *nil = map_get(o, "nil");
        CHECK(nil && nil->type == MSGPACK_OBJECT_NIL, "NULL str is not nil");
        for (size_t i = 0; i < N_INTS; i++) {
            snprintf(key, sizeof key, "i%zu", i);
            CHECK(is_int(map_get(o, key), int_values[i]), "%s != %lld", key, (long long)int_values[i]);
        }
        const msgpack_object *d1 = map_get(o, "d1"), *d2 = map_get(o, "d2");
        CHECK(d1 && d1->type == MSGPACK_OBJECT_FLOAT64 && d1->via.f64 == 0.85, "d1");
        CHECK(d2 && d2->type == MSGPACK_OBJECT_FLOAT64 && d2->via.f64 == -1e300, "d2");
        const msgpack_object *bt = map_get(o, "bt"), *bf = map_get(o, "bf");
        CHECK(bt && bt->type == MSGPACK_OBJECT_BOOLEAN && bt->via.boolean, "bt");
        CHECK(bf && bf->type == MSGPACK_OBJECT_BOOLEAN && !bf->via.boolean, "bf");
    } else if (is_str(msg, "variadic record")) {
        tc->seen_variadic++;
        CHECK(o->via.map.size == 4 + 4, "variadic map has %u keys", o->via.map.size);
        CHECK(is_str(map_get(o, "level"), "INFO"), "level NULL is not INFO");
        CHECK(!map_get(o, "service_name") && !map_get(o, "trace_id") && !map_get(o, "span_id"),
              "NULL core strings were sent");
        const msgpack_object *ts = map_get(o, "timestamp");
        CHECK(ts && ts->type == MSGPACK_OBJECT_POSITIVE_INTEGER && (int64_t)ts->via.u64 >= tc->t_before &&
                  (int64_t)ts->via.u64 <= tc->t_after,
              "timestamp is not now");
        CHECK(is_str(map_get(o, "user"), "alice"), "user");
        CHECK(is_int(map_get(o, "attempt"), 2), "attempt");
        const msgpack_object *score = map_get(o, "score");
        CHECK(score && score->type == MSGPACK_OBJECT_FLOAT64 && score->via.f64 == 0.5, "score");
        const msgpack_object *ok = map_get(o, "ok");
        CHECK(ok && ok->type == MSGPACK_OBJECT_BOOLEAN && ok->via.boolean, "ok");
    } else if (is_str(msg, "timestamp field")) {
        tc->seen_ts_field++;
        /* message, level, log_id, timestamp (the field), extra; the field "message" is left out */
        CHECK(o->via.map.size == 5, "ts-field map has %u keys", o->via.map.size);
        CHECK(is_str(map_get(o, "timestamp"), "2024-08-30T10:30:45.123456+00:00"), "timestamp field");
        CHECK(is_int(map_get(o, "extra"), -5), "extra");
    }
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static double mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Writes a record whose message is prefix followed by i. */
static logagent_result write_msg(logagent_client *c, const char *prefix, int i)
{
    char msg[64];
    snprintf(msg, sizeof msg, "%s%d", prefix, i);
    logagent_record r = { .message = msg, .service_name = "unit" };
    return logagent_write(c, &r);
}

/* ---- tests ---- */

static void test_log_id(void)
{
    char a[33], b[33];
    logagent_new_log_id(a);
    logagent_new_log_id(b);
    CHECK(strlen(a) == 32 && is_log_id(a, 32), "log id '%s'", a);
    CHECK(strcmp(a, b) != 0, "two ids are equal: %s", a);
}

/* No agent: writes are buffered until the buffer is full, then dropped and counted. Then an agent comes
 * up and a flush delivers every buffered record, each encoded as written. */
static void test_buffer_then_flush(const char *path)
{
    logagent_options o = { .socket_path = path, .buffer_bytes = 256 << 10, .block_timeout_ms = 0 };
    logagent_client *c;
    CHECK(logagent_client_new(&o, &c) == 0, "client_new");
    typed_check tc;
    memset(&tc, 0, sizeof tc);

    /* a record with every field type and int width */
    char *lng = malloc(LONG_STR_LEN + 1);
    char mid[MID_STR_LEN + 1];
    memset(lng, 'z', LONG_STR_LEN);
    lng[LONG_STR_LEN] = '\0';
    memset(mid, 'm', MID_STR_LEN);
    mid[MID_STR_LEN] = '\0';
    logagent_field f[5 + N_INTS + 4];
    char keys[N_INTS][16];
    size_t nf = 0;
    f[nf++] = (logagent_field){ .key = "s", .type = LOGAGENT_STR, .v.s = "text" };
    f[nf++] = (logagent_field){ .key = "mid", .type = LOGAGENT_STR, .v.s = mid };
    f[nf++] = (logagent_field){ .key = "long", .type = LOGAGENT_STR, .v.s = lng };
    f[nf++] = (logagent_field){ .key = "nil", .type = LOGAGENT_STR, .v.s = NULL };
    f[nf++] = (logagent_field){ .key = "_reserved", .type = LOGAGENT_STR, .v.s = "sent as given" };
    for (size_t i = 0; i < N_INTS; i++) {
        snprintf(keys[i], sizeof keys[i], "i%zu", i);
        f[nf++] = (logagent_field){ .key = keys[i], .type = LOGAGENT_INT, .v.i = int_values[i] };
    }
    f[nf++] = (logagent_field){ .key = "d1", .type = LOGAGENT_DOUBLE, .v.d = 0.85 };
    f[nf++] = (logagent_field){ .key = "d2", .type = LOGAGENT_DOUBLE, .v.d = -1e300 };
    f[nf++] = (logagent_field){ .key = "bt", .type = LOGAGENT_BOOL, .v.b = 1 };
    f[nf++] = (logagent_field){ .key = "bf", .type = LOGAGENT_BOOL, .v.b = 0 };
    logagent_record typed = { .message = "typed record", .service_name = "unit", .level = "WARN",
                              .trace_id = "trace-1", .span_id = "span-1",
                              .timestamp_unix_nano = 1234567890123456789LL, .fields = f, .n_fields = nf };
    logagent_result r = logagent_write(c, &typed);
    CHECK(r.success, "typed write: %s", r.error_message);
    CHECK(is_log_id(r.log_id, strlen(r.log_id)), "result log_id '%s'", r.log_id);
    CHECK(r.error_message[0] == '\0', "error_message on success: %s", r.error_message);
    memcpy(tc.typed_log_id, r.log_id, 33);
    free(lng);

    tc.t_before = now_ns();
    r = logagent_write_log(c, "variadic record", NULL, NULL, NULL, NULL, LOGAGENT_STR, "user", "alice",
                           LOGAGENT_INT, "attempt", (int64_t)2, LOGAGENT_DOUBLE, "score", 0.5, LOGAGENT_BOOL,
                           "ok", 1, LOGAGENT_END);
    tc.t_after = now_ns();
    CHECK(r.success, "variadic write: %s", r.error_message);

    logagent_field tf[3] = {
        { .key = "timestamp", .type = LOGAGENT_STR, .v.s = "2024-08-30T10:30:45.123456+00:00" },
        { .key = "message", .type = LOGAGENT_STR, .v.s = "must not replace the message" },
        { .key = "extra", .type = LOGAGENT_INT, .v.i = -5 },
    };
    logagent_record tsr = { .message = "timestamp field", .fields = tf, .n_fields = 3 };
    r = logagent_write(c, &tsr);
    CHECK(r.success, "timestamp-field write: %s", r.error_message);

    /* argument errors: refused, not counted as drops */
    logagent_record bad = { .message = NULL };
    r = logagent_write(c, &bad);
    CHECK(!r.success && strstr(r.error_message, "message"), "NULL message: '%s'", r.error_message);
    r = logagent_write_log(c, "x", NULL, NULL, NULL, NULL, 99, "k", LOGAGENT_END);
    CHECK(!r.success && strstr(r.error_message, "type"), "bad type: '%s'", r.error_message);
    char *huge = malloc((2 << 20) + 1);
    memset(huge, 'h', 2 << 20);
    huge[2 << 20] = '\0';
    logagent_record big = { .message = huge };
    r = logagent_write(c, &big);
    CHECK(!r.success && strstr(r.error_message, "too large"), "2 MiB record: '%s'", r.error_message);
    free(huge);

    /* fill the buffer */
    size_t ok = 3;
    int i;
    for (i = 0; i < 100000; i++) {
        r = write_msg(c, "filler ", i);
        if (!r.success)
            break;
        ok++;
    }
    CHECK(!r.success, "buffer never filled up");
    /* no agent at path: the message says why, as the Python client's does (whether the I/O thread has
     * tried to connect yet is a race; both wordings are exact) */
    char down[512], yet[512];
    snprintf(down, sizeof down, "logagent buffer full (agent down: cannot connect to %s: %s): record dropped",
             path, strerror(ENOENT));
    snprintf(yet, sizeof yet, "logagent buffer full (not connected to the agent at %s yet): record dropped", path);
    CHECK(strcmp(r.error_message, down) == 0 || strcmp(r.error_message, yet) == 0, "error_message '%s'",
          r.error_message);
    CHECK(r.log_id[0] == '\0', "log_id on failure '%s'", r.log_id);
    logagent_stats st;
    logagent_get_stats(c, &st);
    CHECK(st.dropped == 1, "dropped %llu", (unsigned long long)st.dropped);
    CHECK(st.written == ok, "written %llu != %zu", (unsigned long long)st.written, ok);
    CHECK(st.sent == 0, "sent %llu with no agent", (unsigned long long)st.sent);
    CHECK(st.buffered_bytes > 0 && st.buffered_bytes <= (256 << 10), "buffered %zu", st.buffered_bytes);
    r = write_msg(c, "filler ", i);
    logagent_get_stats(c, &st);
    CHECK(!r.success && st.dropped == 2, "second drop: %d %llu", r.success, (unsigned long long)st.dropped);
    CHECK(logagent_flush(c, 100) == -ENOTCONN, "flush with no agent is not -ENOTCONN");

    /* the agent comes up */
    listener l;
    CHECK(listener_start(&l, path) == 0, "listener");
    int rc = logagent_flush(c, 10000);
    CHECK(rc == 0, "flush: %d", rc);
    logagent_get_stats(c, &st);
    CHECK(st.sent == ok && st.buffered_bytes == 0, "after flush: sent %llu of %zu, %zu bytes left",
          (unsigned long long)st.sent, ok, st.buffered_bytes);
    CHECK(st.reconnects == 0, "reconnects %llu", (unsigned long long)st.reconnects);
    logagent_client_free(c, 1000);
    CHECK(listener_wait(&l, ok, 1, 10000) == 0, "listener got %zu of %zu records", l.records, ok);
    listener_stop(&l);

    rec_set set;
    decode_all(&l, &set, check_typed, &tc);
    CHECK(set.n == ok, "decoded %zu records, wrote %zu", set.n, ok);
    CHECK(set.partial == 0 && set.malformed == 0 && set.non_map == 0, "partial %zu malformed %zu non-map %zu",
          set.partial, set.malformed, set.non_map);
    CHECK(tc.seen_typed == 1 && tc.seen_variadic == 1 && tc.seen_ts_field == 1, "typed %d variadic %d ts %d",
          tc.seen_typed, tc.seen_variadic, tc.seen_ts_field);
    CHECK(count_message(&set, "filler ") == ok - 3, "fillers %zu", count_message(&set, "filler "));
    CHECK(bad_or_duplicate_ids(&set) == 0, "bad or duplicate log ids");
    rec_set_free(&set);
    listener_free(&l);
}

/* The agent restarts: records written while it is away stay buffered and arrive whole on the new
 * connection; then fork: the child's records go over its own connection, the parent's stay the parent's. */
static void test_reconnect_and_fork(const char *path)
{
    logagent_options o = { .socket_path = path };
    logagent_client *c;
    listener l1, l2;
    logagent_stats st;

    CHECK(listener_start(&l1, path) == 0, "listener 1");
    CHECK(logagent_client_new(&o, &c) == 0, "client_new");
    for (int i = 0; i < 100; i++)
        CHECK(write_msg(c, "first ", i).success, "write first %d", i);
    CHECK(logagent_flush(c, 10000) == 0, "flush 1");
    CHECK(listener_wait(&l1, 100, 0, 10000) == 0, "listener 1 got %zu", l1.records);
    listener_stop(&l1);                            /* the agent goes away, closing our connection */

    for (int i = 0; i < 100; i++)
        CHECK(write_msg(c, "second ", i).success, "write second %d", i);
    CHECK(logagent_flush(c, 50) == -ENOTCONN, "flush while the agent is away");
    CHECK(listener_start(&l2, path) == 0, "listener 2");
    CHECK(logagent_flush(c, 10000) == 0, "flush 2");
    logagent_get_stats(c, &st);
    CHECK(st.reconnects == 1, "reconnects %llu", (unsigned long long)st.reconnects);
    CHECK(st.sent == 200 && st.dropped == 0, "sent %llu dropped %llu", (unsigned long long)st.sent,
          (unsigned long long)st.dropped);

    for (int i = 0; i < 5; i++)
        CHECK(write_msg(c, "parent ", i).success, "write parent %d", i);
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        logagent_stats cs;
        logagent_get_stats(c, &cs);
        int bad = cs.buffered_bytes != 0 || cs.written != 0;
        bad |= !write_msg(c, "child ", 0).success;
        bad |= logagent_flush(c, 10000) != 0;
        logagent_get_stats(c, &cs);
        bad |= cs.sent != 1;
        logagent_client_free(c, 0);
        _exit(bad ? 3 : 0);
    }
    CHECK(pid > 0, "fork: %s", strerror(errno));
    int status = -1;
    if (pid > 0)
        waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %d", status);
    CHECK(logagent_flush(c, 10000) == 0, "flush 3");
    logagent_client_free(c, 0);
    /* 100 second + 5 parent + 1 child; connections: ours and the child's */
    CHECK(listener_wait(&l2, 106, 2, 10000) == 0, "listener 2 got %zu records, %zu closed", l2.records,
          l2.n_closed);
    listener_stop(&l2);

    rec_set s1, s2;
    decode_all(&l1, &s1, NULL, NULL);
    decode_all(&l2, &s2, NULL, NULL);
    CHECK(s1.n == 100 && count_message(&s1, "first ") == 100, "first: %zu", s1.n);
    CHECK(s2.n == 106, "second listener decoded %zu", s2.n);
    CHECK(count_message(&s2, "second ") == 100 && count_message(&s2, "parent ") == 5 &&
              count_message(&s2, "child ") == 1,
          "second %zu parent %zu child %zu", count_message(&s2, "second "), count_message(&s2, "parent "),
          count_message(&s2, "child "));
    CHECK(s1.partial + s2.partial + s1.malformed + s2.malformed == 0, "partial or malformed streams");
    CHECK(bad_or_duplicate_ids(&s2) == 0, "bad or duplicate log ids after fork");
    rec_set_free(&s1);
    rec_set_free(&s2);
    listener_free(&l1);
    listener_free(&l2);
}

typedef struct writer_arg {
    logagent_client *c;
    int id;
    int n;
    int failed;
} writer_arg;

static void *writer_main(void *p)
{
    writer_arg *w = p;
    char prefix[32];
    snprintf(prefix, sizeof prefix, "w%d ", w->id);
    for (int i = 0; i < w->n; i++)
        if (!write_msg(w->c, prefix, i).success)
            w->failed++;
    return NULL;
}

/* Blocking mode: 4 threads through a tiny buffer lose nothing; a bounded wait gives up after its time. */
static void test_blocking(const char *path)
{
    enum { THREADS = 4, PER_THREAD = 2000 };
    logagent_options o = { .socket_path = path, .buffer_bytes = 4096, .block_timeout_ms = -1 };
    logagent_client *c;
    listener l;
    writer_arg w[THREADS];
    pthread_t th[THREADS];

    CHECK(listener_start(&l, path) == 0, "listener");
    CHECK(logagent_client_new(&o, &c) == 0, "client_new");
    for (int i = 0; i < THREADS; i++) {
        w[i] = (writer_arg){ .c = c, .id = i, .n = PER_THREAD };
        pthread_create(&th[i], NULL, writer_main, &w[i]);
    }
    for (int i = 0; i < THREADS; i++) {
        pthread_join(th[i], NULL);
        CHECK(w[i].failed == 0, "writer %d failed %d", i, w[i].failed);
    }
    CHECK(logagent_flush(c, 10000) == 0, "flush");
    logagent_stats st;
    logagent_get_stats(c, &st);
    CHECK(st.dropped == 0 && st.sent == THREADS * PER_THREAD, "dropped %llu sent %llu",
          (unsigned long long)st.dropped, (unsigned long long)st.sent);
    logagent_client_free(c, 0);
    CHECK(listener_wait(&l, THREADS * PER_THREAD, 1, 10000) == 0, "listener got %zu", l.records);
    listener_stop(&l);
    rec_set s;
    decode_all(&l, &s, NULL, NULL);
    CHECK(s.n == THREADS * PER_THREAD && s.partial == 0 && s.malformed == 0, "decoded %zu", s.n);
    CHECK(bad_or_duplicate_ids(&s) == 0, "bad or duplicate log ids");
    rec_set_free(&s);
    listener_free(&l);

    /* no agent, bounded wait */
    o.block_timeout_ms = 50;
    CHECK(logagent_client_new(&o, &c) == 0, "client_new");
    logagent_result r;
    int i = 0;
    double t0 = 0;
    do {
        t0 = mono_ms();
        r = write_msg(c, "bounded ", i++);
    } while (r.success && i < 1000);
    double waited = mono_ms() - t0;
    CHECK(!r.success && strstr(r.error_message, "buffer full"), "bounded wait: '%s'", r.error_message);
    CHECK(waited >= 45, "gave up after %.1f ms, not 50", waited);
    logagent_client_free(c, 0);
}

/* Writes until error_message is `want` (the I/O thread's connect attempt races the first failures), for up to
 * 5 s. Returns 1 when it was. */
static int full_message_becomes(logagent_client *c, const char *want, char *last, size_t last_len)
{
    double deadline = mono_ms() + 5000;
    int i = 0;
    do {
        logagent_result r = write_msg(c, "full ", i++);
        snprintf(last, last_len, "%s", r.error_message);
        if (!r.success && strcmp(r.error_message, want) == 0)
            return 1;
        if (!r.success) {
            struct timespec ts = { 0, 2 * 1000 * 1000 };
            nanosleep(&ts, NULL); /* a polling interval, not a wait for an outcome */
        }
    } while (mono_ms() < deadline);
    return 0;
}

/* The buffer-full message says why, word for word as the Python client's: the connect error with no agent,
 * "agent slow or down" while connected to an agent that does not read. */
static void test_full_messages(const char *path)
{
    logagent_options o = { .socket_path = path, .buffer_bytes = 4096, .block_timeout_ms = 0 };
    logagent_client *c;
    char want[512], last[512];

    unlink(path);
    CHECK(logagent_client_new(&o, &c) == 0, "client_new");
    snprintf(want, sizeof want, "logagent buffer full (agent down: cannot connect to %s: %s): record dropped",
             path, strerror(ENOENT));
    CHECK(full_message_becomes(c, want, last, sizeof last), "no agent: '%s', want '%s'", last, want);
    logagent_client_free(c, 0);

    /* a listening socket nobody accepts from: connect succeeds (backlog), the kernel buffer fills, then ours */
    int lfd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    CHECK(strlen(path) < sizeof a.sun_path, "path too long");
    memcpy(a.sun_path, path, strlen(path) + 1);
    CHECK(lfd >= 0 && bind(lfd, (struct sockaddr *)&a, sizeof a) == 0 && listen(lfd, 4) == 0, "listen: %s",
          strerror(errno));
    CHECK(logagent_client_new(&o, &c) == 0, "client_new");
    snprintf(want, sizeof want, "logagent buffer full (agent slow or down): record dropped");
    CHECK(full_message_becomes(c, want, last, sizeof last), "stuck agent: '%s', want '%s'", last, want);
    logagent_client_free(c, 0);
    close(lfd);
    unlink(path);
}

/* Runs fn in a child process (logagent_default() is made once per process: each case needs its own) with the
 * environment variables env (NAME=VALUE strings, NULL-terminated) set. Returns the child's failed checks. */
static int in_child(void (*fn)(const char *path), const char *path, const char *const *env)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        for (const char *const *e = env; *e; e++)
            putenv((char *)*e);
        fn(path);
        _exit(failures > 255 ? 255 : failures);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 1;
}

static void child_bad_value(const char *path)
{
    CHECK(logagent_default() == NULL, "a bad value must leave no client");
    logagent_result r = logagent_write_log(logagent_default(), "x", NULL, NULL, NULL, NULL, LOGAGENT_END);
    CHECK(!r.success && !strcmp(r.error_message, "cannot create the logagent client: invalid value '4 MB' in "
                                                 "LOGAGENT_CLIENT_BUFFER_BYTES: expected a size such as 65536, 64KiB, 4MiB"),
          "'%s'", r.error_message);
}

static void child_knobs(const char *path)
{
    logagent_client *c = logagent_default();
    CHECK(c != NULL, "default client");
    if (!c)
        return;
    char big[200];
    memset(big, 'b', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    logagent_record rec = { .message = big };
    logagent_result r = logagent_write(c, &rec);
    CHECK(!r.success && strstr(r.error_message, "limit 150)"), "max record 150: '%s'", r.error_message);
    int ok = 0;
    do
        r = write_msg(c, "fill ", ok);
    while (r.success && ++ok < 100000);
    CHECK(ok > 20 && ok < 200, "a 4 KiB buffer took %d small records", ok); /* not the 4 MiB default */
    double t0 = mono_ms();
    r = write_msg(c, "waits ", 0);
    double waited = mono_ms() - t0;
    CHECK(!r.success && waited >= 280, "block timeout 300ms: waited %.0f ms ('%s')", waited, r.error_message);
}

/* The process-wide client reads the Python module's LOGAGENT_CLIENT_* variables, with its words. */
static void test_env_knobs(const char *path)
{
    const char *bad[] = {"LOGAGENT_CLIENT_BUFFER_BYTES= 4 MB ", NULL};
    failures += in_child(child_bad_value, path, bad);
    char sock[160];
    snprintf(sock, sizeof sock, "LOGAGENT_SOCKET=%s.none", path);
    const char *knobs[] = {sock, "LOGAGENT_CLIENT_BUFFER_BYTES=4KiB", "LOGAGENT_CLIENT_MAX_RECORD_BYTES=150",
                           "LOGAGENT_CLIENT_BLOCK_TIMEOUT_MS=300ms", "LOGAGENT_CLIENT_EXIT_FLUSH_TIMEOUT_MS=0", NULL};
    failures += in_child(child_knobs, path, knobs);
}

int main(void)
{
    char dir[] = "/tmp/logagent-test-XXXXXX";
    char path[128];

    alarm(120);
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 2;
    }
    snprintf(path, sizeof path, "%s/ingest.sock", dir);

    test_log_id();
    test_buffer_then_flush(path);
    test_reconnect_and_fork(path);
    test_blocking(path);
    test_full_messages(path);
    test_env_knobs(path);

    unlink(path);
    rmdir(dir);
    if (failures) {
        fprintf(stderr, "test_client: %d check(s) failed\n", failures);
        return 1;
    }
    printf("test_client: all checks passed\n");
    return 0;
}
