/* ctl_deadletter.c — `logagentctl deadletter` (see ctl_deadletter.h).
 *
 * The files are the agent's (spool.c's DESIGN, docs/reliability.md "The dead-letter file"): frames of a 24-byte
 * header {magic, payload length, CRC-32, records, batch id} and a payload; "LAD1" frames start their payload with
 * the refusal block {u32 block length, i64 refused-at unix ns, i32 gRPC status, reason}, "LAS1" frames (older
 * agents) have none. The rest is the batch's entries as BatchWriteLogsRequest field 1, each a WriteLogRequest,
 * decoded here with the generated protobuf-c code. One JSON object per record goes to stdout:
 *   {"record": {message, service_name, level, trace_id, span_id, log_id, timestamp, metadata},
 *    "metadata_types": "…" (OTLP mode only), "source": {…}, "refused": {status, code, reason, time} | null,
 *    "batch_id": N, "file": "deadletter.log"}
 * With --replay, each record is sent instead as a msgpack map on the ingest socket (docs/protocol.md): the
 * record's fields, then its metadata as top-level keys (typed again when the frame carries the OTLP type tags).
 *
 * Replay first moves the files aside (deadletter.log.1 -> deadletter.replaying.1, deadletter.log ->
 * deadletter.replaying) under the flock(2) the agent takes to append (spool.c open_dead_letter), so records the
 * service refuses again while the replay runs go to a new deadletter.log, not into a file being read. It ends with
 * a sync the agent acks once it has read and queued every record (an empty Forward message with a chunk:
 * docs/protocol.md), and only then removes the moved files. An interrupted replay leaves them: the next replay
 * sends them first. */
#include "ctl_deadletter.h"
#include "common/utf8.h"

#include <errno.h>
#include <fcntl.h>
#include <logagent/v1/log_service.pb-c.h>
#include <msgpack.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#define SPOOL_MAGIC 0x3153414cu /* "LAS1" */
#define DEAD_MAGIC 0x3144414cu  /* "LAD1" */
#define HDR 24u
#define REFUSAL_FIXED 16u
#define FRAME_MAX (1u << 30)
#define META_TYPES_FIELD 100u /* record.h's RECORD_F_META_TYPES */

/* What is read and where it goes. */
typedef struct reader {
    const ctl_opts *o;
    const char *file;       /* the file's name, for the output and messages */
    int fd;                 /* --replay: the ingest socket */
    msgpack_sbuffer sb;
    msgpack_packer pk;
    unsigned long long records, skipped_frames, skipped_keys, skipped_records;
} reader;

/* The refusal of one frame (status < -1: none recorded). */
typedef struct refusal {
    int status;
    int64_t at_ns;
    const char *reason;
    size_t reason_len;
} refusal;

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get64(const uint8_t *p) { return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32; }

/* Reads a protobuf varint from [*p, end). Returns 0, or -1 when it does not end in time. */
static int varint(const uint8_t **p, const uint8_t *end, uint64_t *out)
{
    uint64_t v = 0;
    for (int shift = 0; *p < end && shift < 64; shift += 7) {
        uint8_t b = *(*p)++;
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *out = v;
            return 0;
        }
    }
    return -1;
}

static const char *status_name(int code)
{
    static const char *const NAMES[] = {"ENTRY_REJECTED", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT",
                                        "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED",
                                        "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
                                        "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"};
    return code >= 0 && code < (int)(sizeof NAMES / sizeof NAMES[0]) ? NAMES[code] : "UNKNOWN";
}

/* The OTLP type tags (protobuf field 100) of an entry, or "" (every value a string). */
static void meta_types(const Logagent__V1__WriteLogRequest *m, char *buf, size_t n)
{
    buf[0] = '\0';
    for (unsigned i = 0; i < m->base.n_unknown_fields; i++) {
        const ProtobufCMessageUnknownField *u = &m->base.unknown_fields[i];
        const uint8_t *p = u->data, *end = u->data + u->len;
        uint64_t len;
        if (u->tag != META_TYPES_FIELD || u->wire_type != PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED ||
            varint(&p, end, &len) < 0 || len != (uint64_t)(end - p))
            continue;
        size_t k = len < n - 1 ? (size_t)len : n - 1;
        memcpy(buf, p, k);
        buf[k] = '\0';
    }
}

static void set_str(json_t *obj, const char *key, const char *v)
{
    if (v && *v)
        json_object_set_new(obj, key, json_string(v));
}

static json_t *source_json(const Logagent__V1__Source *s)
{
    if (!s)
        return json_null();
    json_t *j = json_pack("{s:i, s:I, s:I}", "pid", (int)s->pid, "uid", (json_int_t)s->uid, "gid", (json_int_t)s->gid);
    set_str(j, "comm", s->comm);
    set_str(j, "hostname", s->hostname);
    set_str(j, "cgroup", s->cgroup);
    set_str(j, "container_id", s->container_id);
    return j;
}

static json_t *refusal_json(const refusal *r)
{
    if (r->status < -1)
        return json_null();
    char when[64] = "";
    time_t sec = (time_t)(r->at_ns / 1000000000);
    struct tm tm;
    if (gmtime_r(&sec, &tm))
        snprintf(when + strftime(when, 32, "%Y-%m-%dT%H:%M:%S", &tm), 32, ".%09lldZ",
                 (long long)(r->at_ns % 1000000000));
    uint8_t *reason = malloc(r->reason_len + 1); /* any bytes, in a file from elsewhere: printed as UTF-8 */
    if (!reason)
        return NULL;
    memcpy(reason, r->reason, r->reason_len);
    utf8_scrub(reason, r->reason_len);
    json_t *j = json_pack("{s:s, s:i, s:s%, s:s}", "status", status_name(r->status), "code", r->status, "reason",
                          (const char *)reason, r->reason_len, "time", when);
    free(reason);
    return j;
}

/* One record as its JSON line. */
static int print_record(reader *rd, const Logagent__V1__WriteLogRequest *m, const refusal *why, uint64_t batch_id)
{
    json_t *rec = json_object(), *meta = json_object();
    json_object_set_new(rec, "message", json_string(m->message ? m->message : ""));
    set_str(rec, "service_name", m->service_name);
    set_str(rec, "level", m->level);
    set_str(rec, "trace_id", m->trace_id);
    set_str(rec, "span_id", m->span_id);
    set_str(rec, "log_id", m->log_id);
    if (m->timestamp_unix_nano)
        json_object_set_new(rec, "timestamp", json_integer((json_int_t)m->timestamp_unix_nano));
    for (size_t i = 0; i < m->n_metadata; i++)
        json_object_set_new(meta, m->metadata[i]->key, json_string(m->metadata[i]->value));
    json_object_set_new(rec, "metadata", meta);
    char types[512];
    meta_types(m, types, sizeof types);
    json_t *line = json_pack("{s:o, s:o, s:o, s:I, s:s}", "record", rec, "source", source_json(m->source), "refused",
                             refusal_json(why), "batch_id", (json_int_t)batch_id, "file", rd->file);
    if (line && types[0])
        json_object_set_new(line, "metadata_types", json_string(types));
    char *text = line ? json_dumps(line, JSON_COMPACT | JSON_ENSURE_ASCII) : NULL;
    json_decref(line);
    if (!text) { /* one bad record (not UTF-8, or no memory for it) is named and skipped: the others print */
        fprintf(stderr, CTL_PROG ": %s: batch %llu: a record cannot be printed (not UTF-8?): skipped\n", rd->file,
                (unsigned long long)batch_id);
        rd->skipped_records++;
        return 1;
    }
    puts(text);
    free(text);
    return 0;
}

/* ---- replay: msgpack on the ingest socket --------------------------------------------------------------- */

static void pack_str(msgpack_packer *pk, const char *s)
{
    size_t n = strlen(s);
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

static void pack_json(msgpack_packer *pk, json_t *v);

static void pack_json(msgpack_packer *pk, json_t *v)
{
    const char *key;
    json_t *e;
    size_t i;
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        msgpack_pack_map(pk, json_object_size(v));
        json_object_foreach(v, key, e) {
            pack_str(pk, key);
            pack_json(pk, e);
        }
        break;
    case JSON_ARRAY:
        msgpack_pack_array(pk, json_array_size(v));
        json_array_foreach(v, i, e)
            pack_json(pk, e);
        break;
    case JSON_STRING:
        msgpack_pack_str(pk, json_string_length(v));
        msgpack_pack_str_body(pk, json_string_value(v), json_string_length(v));
        break;
    case JSON_INTEGER:
        msgpack_pack_int64(pk, json_integer_value(v));
        break;
    case JSON_REAL:
        msgpack_pack_double(pk, json_real_value(v));
        break;
    case JSON_TRUE:
        msgpack_pack_true(pk);
        break;
    case JSON_FALSE:
        msgpack_pack_false(pk);
        break;
    default:
        msgpack_pack_nil(pk);
    }
}

/* A metadata value, typed again by its OTLP tag (record.h) so the agent maps it to the same text and type; a
 * value that does not read back as its tag says is sent as the string it is. */
static void pack_value(msgpack_packer *pk, char type, const char *v)
{
    char *end;
    errno = 0;
    if (type == 'i') {
        long long n = strtoll(v, &end, 10);
        if (*v && !*end && !errno) {
            msgpack_pack_int64(pk, n);
            return;
        }
    } else if (type == 'f') {
        double d = strtod(v, &end);
        if (*v && !*end) {
            msgpack_pack_double(pk, d);
            return;
        }
    } else if (type == 'b' && (!strcmp(v, "true") || !strcmp(v, "false"))) {
        (*v == 't' ? msgpack_pack_true : msgpack_pack_false)(pk);
        return;
    } else if (type == 'n' && !*v) {
        msgpack_pack_nil(pk);
        return;
    } else if (type == 'm' || type == 'a') {
        json_t *j = json_loads(v, JSON_DECODE_ANY, NULL);
        if (j) {
            pack_json(pk, j);
            json_decref(j);
            return;
        }
    }
    pack_str(pk, v); /* 's', and 'x' (its base64 text: the value's text form either way) */
}

/* Keys the socket protocol reads as fields (or reserves): a metadata key spelled so cannot come back as
 * metadata through the socket. */
static int field_key(const char *k)
{
    static const char *const KEYS[] = {"message", "service_name", "level", "trace_id", "span_id", "log_id",
                                       "timestamp"};
    for (size_t i = 0; i < sizeof KEYS / sizeof KEYS[0]; i++)
        if (!strcmp(k, KEYS[i]))
            return 1;
    return k[0] == '_';
}

static int send_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -errno;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* One record as a msgpack map, buffered; the buffer is sent when it passes 256 KiB and at the end. */
static int replay_record(reader *rd, const Logagent__V1__WriteLogRequest *m)
{
    const char *fields[][2] = {{"message", m->message},   {"service_name", m->service_name},
                               {"level", m->level},       {"trace_id", m->trace_id},
                               {"span_id", m->span_id},   {"log_id", m->log_id}};
    char types[512];
    meta_types(m, types, sizeof types);
    size_t n = 1 + (m->timestamp_unix_nano != 0), ntypes = strlen(types);
    for (size_t i = 1; i < 6; i++)
        n += fields[i][1] && *fields[i][1];
    for (size_t i = 0; i < m->n_metadata; i++)
        n += !field_key(m->metadata[i]->key);
    msgpack_pack_map(&rd->pk, n);
    for (size_t i = 0; i < 6; i++) {
        if (i > 0 && !(fields[i][1] && *fields[i][1]))
            continue;
        pack_str(&rd->pk, fields[i][0]);
        pack_str(&rd->pk, fields[i][1] ? fields[i][1] : "");
    }
    if (m->timestamp_unix_nano) {
        pack_str(&rd->pk, "timestamp");
        msgpack_pack_int64(&rd->pk, m->timestamp_unix_nano);
    }
    for (size_t i = 0; i < m->n_metadata; i++) {
        const char *k = m->metadata[i]->key;
        if (field_key(k)) {
            char safe[80];
            fprintf(stderr, CTL_PROG ": %s: record %s: metadata key '%s' is named like a field: not replayed\n",
                    rd->file, m->log_id, ctl_safe(k, safe, sizeof safe));
            rd->skipped_keys++;
            continue;
        }
        pack_str(&rd->pk, k);
        pack_value(&rd->pk, i < ntypes ? types[i] : 's', m->metadata[i]->value);
    }
    if (rd->sb.size < (256u << 10))
        return 0;
    int rc = send_all(rd->fd, rd->sb.data, rd->sb.size);
    msgpack_sbuffer_clear(&rd->sb);
    return rc;
}

/* ---- frames -------------------------------------------------------------------------------------------- */

/* The entries of one payload (BatchWriteLogsRequest field 1), each printed or replayed. Returns 0 or -1. */
static int each_entry(reader *rd, const uint8_t *p, const uint8_t *end, const refusal *why, uint64_t batch_id)
{
    while (p < end) {
        uint64_t tag, len;
        if (varint(&p, end, &tag) < 0 || tag != ((1u << 3) | 2) || varint(&p, end, &len) < 0 ||
            len > (uint64_t)(end - p)) {
            fprintf(stderr, CTL_PROG ": %s: batch %llu: entries do not parse: rest of the batch skipped\n", rd->file,
                    (unsigned long long)batch_id);
            return 0;
        }
        Logagent__V1__WriteLogRequest *m = logagent__v1__write_log_request__unpack(NULL, (size_t)len, p);
        p += len;
        if (!m) {
            fprintf(stderr, CTL_PROG ": %s: batch %llu: an entry does not decode: skipped\n", rd->file,
                    (unsigned long long)batch_id);
            continue;
        }
        int rc = rd->o->replay ? replay_record(rd, m) : print_record(rd, m, why, batch_id);
        logagent__v1__write_log_request__free_unpacked(m, NULL);
        if (rc > 0) /* skipped (said) */
            continue;
        if (rc < 0) {
            if (rd->o->replay)
                fprintf(stderr, CTL_PROG ": cannot send to the ingest socket %s: %s\n", rd->o->ingest_socket,
                        strerror(-rc));
            return -1;
        }
        rd->records++;
    }
    return 0;
}

/* One frame's payload: its refusal block (LAD1), then its entries. */
static int each_frame(reader *rd, const uint8_t *hdr, const uint8_t *payload, uint32_t len)
{
    refusal why = {.status = -2};
    const uint8_t *p = payload, *end = payload + len;
    if (get32(hdr) == DEAD_MAGIC) {
        uint32_t blen = len >= 4 ? get32(p) : 0;
        if (blen < REFUSAL_FIXED || blen > len) {
            fprintf(stderr, CTL_PROG ": %s: batch %llu: bad refusal block: skipped\n", rd->file,
                    (unsigned long long)get64(hdr + 16));
            rd->skipped_frames++;
            return 0;
        }
        why = (refusal){(int32_t)get32(p + 12), (int64_t)get64(p + 4), (const char *)p + REFUSAL_FIXED,
                        blen - REFUSAL_FIXED};
        p += blen;
    }
    return each_entry(rd, p, end, &why, get64(hdr + 16));
}

/* Every frame of one file, oldest first. A missing file is fine (0); a bad CRC skips the frame, a torn tail
 * ends the file (both said on stderr). Returns 0 or -1. */
static int each_file(reader *rd, const char *dir, const char *name)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    if (!f && errno == ENOENT)
        return 0;
    if (!f) {
        fprintf(stderr, CTL_PROG ": cannot open %s: %s\n", path, strerror(errno));
        return -1;
    }
    rd->file = name;
    struct stat st;
    uint64_t size = fstat(fileno(f), &st) == 0 ? (uint64_t)st.st_size : 0, off = 0;
    uint8_t hdr[HDR], *buf = NULL;
    int rc = 0;
    size_t got;
    while ((got = fread(hdr, 1, HDR, f)) == HDR) {
        uint32_t magic = get32(hdr), len = get32(hdr + 4);
        off += HDR + (uint64_t)len;
        int frame = (magic == SPOOL_MAGIC || magic == DEAD_MAGIC) && len <= FRAME_MAX && off <= size;
        uint8_t *nb = frame ? realloc(buf, len + 1) : NULL; /* a length is trusted only once the file holds it */
        if (!nb || fread(nb, 1, len, f) != len) {
            buf = nb ? nb : buf;
            got = 1; /* torn (or not a frame): the rest is unreadable */
            break;
        }
        buf = nb;
        uint32_t crc = (uint32_t)crc32(crc32(0L, hdr + 12, 12), buf, len);
        if (crc != get32(hdr + 8)) {
            fprintf(stderr, CTL_PROG ": %s: a frame fails its CRC: skipped\n", path);
            rd->skipped_frames++;
            continue;
        }
        if ((rc = each_frame(rd, hdr, buf, len)) < 0)
            break;
    }
    if (rc == 0 && got > 0)
        fprintf(stderr, CTL_PROG ": %s: torn or unreadable tail: the rest of the file skipped\n", path);
    free(buf);
    fclose(f);
    return rc;
}

static int connect_ingest(const char *path)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof sun.sun_path) {
        fprintf(stderr, CTL_PROG ": ingest socket path too long: %s\n", path);
        return -1;
    }
    memcpy(sun.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&sun, sizeof sun) == 0)
        return fd;
    fprintf(stderr, CTL_PROG ": cannot connect to the ingest socket %s: %s (is logagentd running? choose it with "
                    "--socket or LOGAGENT_SOCKET)\n", path, strerror(errno));
    if (fd >= 0)
        close(fd);
    return -1;
}

/* Moves `from` aside to `to` under the agent's append lock (see the top of the file). A `to` left by an interrupted
 * replay is kept and replayed (`from` then waits for the next replay). Returns 1 when `to` exists to be replayed, 0
 * when there is nothing, -1 on error (said). */
static int move_aside(const char *dir, const char *from, const char *to)
{
    char src[4096], dst[4096];
    snprintf(src, sizeof src, "%s/%s", dir, from);
    snprintf(dst, sizeof dst, "%s/%s", dir, to);
    if (access(dst, F_OK) == 0) {
        fprintf(stderr, CTL_PROG ": %s is left from an interrupted replay: replaying it (%s waits for the next "
                        "replay)\n", dst, from);
        return 1;
    }
    int fd = open(src, O_RDONLY | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT)
        return 0;
    int rc = fd < 0 || flock(fd, LOCK_EX) < 0 || rename(src, dst) < 0 ? -1 : 1;
    if (rc < 0)
        fprintf(stderr, CTL_PROG ": cannot move %s aside to %s: %s\n", src, dst, strerror(errno));
    if (fd >= 0)
        close(fd); /* releases the lock: the agent's next append opens a new deadletter.log */
    return rc;
}

/* Sends what is buffered, then the sync (an empty Forward message with a chunk) and waits up to --timeout for
 * the agent's {"ack": chunk}: it has then read and queued every record. Returns 0 or -1 (said). */
static int replay_finish(reader *rd)
{
    char chunk[32];
    int n = snprintf(chunk, sizeof chunk, "logagentctl-replay-%ld", (long)getpid());
    msgpack_pack_array(&rd->pk, 3);
    pack_str(&rd->pk, "logagentctl");
    msgpack_pack_array(&rd->pk, 0);
    msgpack_pack_map(&rd->pk, 1);
    pack_str(&rd->pk, "chunk");
    pack_str(&rd->pk, chunk);
    int err = send_all(rd->fd, rd->sb.data, rd->sb.size);
    if (err == 0 && shutdown(rd->fd, SHUT_WR) < 0)
        err = -errno;
    char want[64], got[64];
    size_t want_len = (size_t)snprintf(want, sizeof want, "\x81\xa3" "ack%c%s", (char)(0xa0 | n), chunk), have = 0;
    struct pollfd p = {.fd = rd->fd, .events = POLLIN};
    while (err == 0 && have < want_len) {
        int r = poll(&p, 1, (int)(rd->o->timeout_s * 1000));
        ssize_t k = r > 0 ? recv(rd->fd, got + have, sizeof got - have, 0) : -1;
        if (r == 0 || k <= 0 || memcmp(got, want, have + (size_t)k < want_len ? have + (size_t)k : want_len) != 0)
            err = r == 0 ? -ETIMEDOUT : k == 0 ? -ECONNRESET : k < 0 && r < 0 ? -errno : -EPROTO;
        else
            have += (size_t)k;
    }
    if (err < 0)
        fprintf(stderr, CTL_PROG ": the agent at %s did not confirm the replay (%s): the files are kept, run the "
                        "replay again (the service drops duplicates by log_id)\n", rd->o->ingest_socket,
                err == -EPROTO ? "not logagentd's ingest socket?" : strerror(-err));
    return err < 0 ? -1 : 0;
}

static int replay(reader *rd, const ctl_opts *o)
{
    static const char *const FROM[2] = {"deadletter.log.1", "deadletter.log"};
    static const char *const TO[2] = {"deadletter.replaying.1", "deadletter.replaying"};
    int have[2], rc = 0;
    for (int i = 0; i < 2; i++)
        if ((have[i] = move_aside(o->spool_dir, FROM[i], TO[i])) < 0)
            return -1;
    for (int i = 0; rc == 0 && i < 2; i++)
        if (have[i])
            rc = each_file(rd, o->spool_dir, TO[i]);
    if (rc == 0)
        rc = replay_finish(rd);
    if (rc < 0)
        return -1;
    for (int i = 0; i < 2; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", o->spool_dir, TO[i]);
        if (have[i] && unlink(path) < 0)
            fprintf(stderr, CTL_PROG ": cannot remove %s: %s (its records are replayed: remove it)\n", path,
                    strerror(errno));
    }
    fprintf(stderr, CTL_PROG ": replayed %llu records to %s, confirmed by the agent (%llu frames and %llu records "
                    "skipped, %llu metadata keys not replayed); records the service refuses again go to a new "
                    "deadletter.log\n", rd->records, o->ingest_socket, rd->skipped_frames, rd->skipped_records,
            rd->skipped_keys);
    return 0;
}

int ctl_deadletter_run(const ctl_opts *o)
{
    reader rd = {.o = o, .fd = -1};
    if (access(o->spool_dir, R_OK | X_OK) < 0) {
        fprintf(stderr, CTL_PROG ": cannot read the spool folder %s: %s (choose it with --spool-dir or "
                        "LOGAGENT_SPOOL_DIR)\n", o->spool_dir, strerror(errno));
        return CTL_FAIL;
    }
    if (o->replay && (rd.fd = connect_ingest(o->ingest_socket)) < 0)
        return CTL_FAIL;
    msgpack_sbuffer_init(&rd.sb);
    msgpack_packer_init(&rd.pk, &rd.sb, msgpack_sbuffer_write);
    int rc;
    if (o->replay) {
        rc = replay(&rd, o);
    } else {
        static const char *const OLDEST_FIRST[] = {"deadletter.replaying.1", "deadletter.replaying",
                                                   "deadletter.log.1", "deadletter.log"};
        rc = 0;
        for (size_t i = 0; rc == 0 && i < sizeof OLDEST_FIRST / sizeof OLDEST_FIRST[0]; i++)
            rc = each_file(&rd, o->spool_dir, OLDEST_FIRST[i]); /* .replaying*: an interrupted replay's */
    }
    msgpack_sbuffer_destroy(&rd.sb);
    if (rd.fd >= 0)
        close(rd.fd);
    return rc == 0 ? CTL_OK : CTL_FAIL;
}
