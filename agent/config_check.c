/* config_check.c — the checks run once every value is read, looking at them together (see config_internal.h).
 *
 * config.c reads each value on its own (flag, environment, file line) against its row of the option table; what
 * can only be judged with the others, or against the system, is here: sizes that bound each other
 * (max-record-bytes, forward-max-message-bytes, buffer-bytes, with the defaults that follow a small buffer),
 * group and user names resolved to ids, --rate-limit and --trusted-fields parsed, the allow-lists refused beside a
 * TCP listener (no peer credentials there), --forward-message-keys and --resource-attr checked with their
 * parsers, the TLS and token files opened, buffer = disk without a spool. It is apart from config.c because it
 * is the other half of config_load: not the table, but the rules between its rows. Every refusal goes through
 * check_fail and names where each value came from (FROM), as the other configuration errors do.
 *
 * Runs on the main thread, from config_load: at start-up, and on SIGHUP while the other threads run. */
#include "config.h"
#include "config_internal.h"

#include "ingest/forward.h"

#include "flush/resattr.h"
#include "flush/token.h"
#include "tcplisten.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Where the value of a config field came from, for a message: "--buffer-bytes", "/etc/...conf:12", "LOGAGENT_…",
 * "default". Lives until the end of the full expression it appears in (a check_fail call). */
#define FROM(cfg, field) config_origin((cfg), offsetof(config, field)).s

/* Prints "logagentd: <message>" on stderr and returns -EINVAL. One write, as the fprintf it replaces: on SIGHUP
 * the other threads may be logging. */
__attribute__((format(printf, 1, 2))) static int check_fail(const char *fmt, ...)
{
    char msg[4096]; /* the longest: an allow-list (511), one of its names (255) and an origin (299) */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "logagentd: %s\n", msg);
    return -EINVAL;
}

/* A group name or number -> *gid (-1 for ""). Returns 0, or -ENOENT when there is no such group. */
static int resolve_group(const char *spec, long *gid)
{
    *gid = -1;
    if (!spec[0])
        return 0;
    char *end;
    errno = 0;
    unsigned long n = strtoul(spec, &end, 10);
    if (isdigit((unsigned char)spec[0]) && *end == 0 && !errno && n < (gid_t)-1) {
        *gid = (long)n;
        return 0;
    }
    struct group gr, *found = NULL;
    char buf[16384];
    if (getgrnam_r(spec, &gr, buf, sizeof buf, &found) != 0 || !found)
        return -ENOENT;
    *gid = (long)found->gr_gid;
    return 0;
}

/* A user name or number -> *uid. Returns 0 or -ENOENT. */
static int resolve_user(const char *spec, uint32_t *uid)
{
    char *end;
    errno = 0;
    unsigned long n = strtoul(spec, &end, 10);
    if (isdigit((unsigned char)spec[0]) && *end == 0 && !errno && n < (uid_t)-1) {
        *uid = (uint32_t)n;
        return 0;
    }
    struct passwd pw, *found = NULL;
    char buf[16384];
    if (getpwnam_r(spec, &pw, buf, sizeof buf, &found) != 0 || !found)
        return -ENOENT;
    *uid = (uint32_t)found->pw_uid;
    return 0;
}

/* "alice,1001, bob" -> ids (users or groups). Reports the first unknown name against the option. */
static int resolve_id_list(const config *cfg, size_t offset, int groups, uint32_t *ids, unsigned *n)
{
    const char *list = (const char *)cfg + offset;
    char item[256];
    *n = 0;
    for (const char *p = list; *p;) {
        size_t len = strcspn(p, ",");
        const char *next = p[len] ? p + len + 1 : p + len;
        while (len && (*p == ' ' || *p == '\t'))
            p++, len--;
        while (len && (p[len - 1] == ' ' || p[len - 1] == '\t'))
            len--;
        const char *why = NULL;
        long gid = -1;
        uint32_t id = 0;
        snprintf(item, sizeof item, "%.*s", (int)len, p);
        if (!len)
            why = "an empty name";
        else if (*n == CONFIG_MAX_IDS)
            why = "more than 64 entries";
        else if (groups ? resolve_group(item, &gid) < 0 : resolve_user(item, &id) < 0)
            why = groups ? "no such group" : "no such user";
        if (why)
            return check_fail("%s '%s' (from %s): %s%s%s", config_flag(offset).s, list, config_origin(cfg, offset).s,
                              why, len ? ": " : "", item);
        ids[(*n)++] = groups ? (uint32_t)gid : id;
        p = next;
    }
    return 0;
}

/* forward-message-keys: 1 to 8 non-empty keys, comma-separated. */
static int check_forward_keys(config *cfg)
{
    char copy[sizeof cfg->forward_message_keys];
    forward_opts o;
    memcpy(copy, cfg->forward_message_keys, sizeof copy);
    if (forward_opts_parse_keys(&o, copy) == 0)
        return 0;
    return check_fail("forward-message-keys '%s' (from %s): want 1 to %d non-empty keys, comma-separated",
                      cfg->forward_message_keys, FROM(cfg, forward_message_keys), FORWARD_MAX_MESSAGE_KEYS);
}

/* "cgroup,container_id" (either, both, or "") -> trusted_mask. */
static int parse_trusted_fields(config *cfg)
{
    cfg->trusted_mask = 0;
    for (const char *p = cfg->trusted_fields; *p;) {
        size_t n = strcspn(p, ",");
        const char *q = p;
        while (n && *q == ' ')
            q++, n--;
        while (n && q[n - 1] == ' ')
            n--;
        if (n == 6 && !strncmp(q, "cgroup", 6)) {
            cfg->trusted_mask |= TRUSTED_CGROUP;
        } else if (n == 12 && !strncmp(q, "container_id", 12)) {
            cfg->trusted_mask |= TRUSTED_CONTAINER_ID;
        } else {
            return check_fail("trusted-fields '%s' (from %s): '%.*s' is not one of cgroup, container_id",
                              cfg->trusted_fields, FROM(cfg, trusted_fields), (int)n, q);
        }
        p += strcspn(p, ",");
        if (*p)
            p++;
    }
    return 0;
}

/* "10000:50000" or "10000/s:50000" (burst optional: the rate) -> rps, burst. */
static int parse_rate_limit(config *cfg)
{
    cfg->rate_limit_rps = 0;
    cfg->rate_limit_burst = 0;
    if (!cfg->rate_limit[0])
        return 0;
    char *end;
    errno = 0;
    double rps = strtod(cfg->rate_limit, &end);
    if (!strncmp(end, "/s", 2))
        end += 2;
    /* a rate out of range (negative, NaN, huge) is refused below; only a valid one may become the default burst
     * (the cast of -1 or NaN would be undefined: found by fuzz_config) */
    unsigned long long burst = rps >= 1 && rps <= 1e9 ? (unsigned long long)rps : 0;
    if (*end == ':') {
        char *b = end + 1;
        burst = strtoull(b, &end, 10);
        if (end == b || b[0] == '-')
            end = b - 1; /* forces the error below */
    }
    if (errno || *end || !(rps >= 1 && rps <= 1e9) || burst < 1 || burst > 1000000000ULL)
        return check_fail("rate-limit '%s' (from %s): expected RECORDS/s:BURST, e.g. 10000/s:50000 (1 to 1e9 "
                          "records/s, burst 1 to 1e9)", cfg->rate_limit, FROM(cfg, rate_limit));
    cfg->rate_limit_rps = rps;
    cfg->rate_limit_burst = burst;
    return 0;
}

/* A file setting that names something this process cannot read. Returns 0 or -EINVAL (reported). */
static int check_readable(const config *cfg, size_t offset)
{
    const char *path = (const char *)cfg + offset;
    if (!path[0])
        return 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    int err = fd < 0 ? errno : fstat(fd, &st) < 0 ? errno : S_ISREG(st.st_mode) ? 0 : EISDIR;
    if (fd >= 0)
        close(fd);
    if (!err)
        return 0;
    return check_fail("%s '%s' (from %s): cannot read it: %s", config_flag(offset).s, path,
                      config_origin(cfg, offset).s, err == EISDIR ? "not a regular file" : strerror(err));
}

/* TLS settings: files readable now, a certificate with its key, and no TLS file without upstream-tls. */
static int check_tls(const config *cfg)
{
    static const size_t files[] = {offsetof(config, ca_file), offsetof(config, cert_file),
                                   offsetof(config, key_file), offsetof(config, tls_server_name)};
    for (size_t k = 0; k < sizeof files / sizeof files[0]; k++)
        if (!cfg->upstream_tls && ((const char *)cfg + files[k])[0])
            return check_fail("%s (from %s) needs upstream-tls = true", config_flag(files[k]).s,
                              config_origin(cfg, files[k]).s);
    if (!cfg->cert_file[0] != !cfg->key_file[0]) {
        size_t set = cfg->cert_file[0] ? offsetof(config, cert_file) : offsetof(config, key_file);
        return check_fail("%s (from %s) needs %s too (mTLS takes a certificate and its key)", config_flag(set).s,
                          config_origin(cfg, set).s, cfg->cert_file[0] ? "key-file" : "cert-file");
    }
    for (size_t k = 0; k < 3; k++)
        if (check_readable(cfg, files[k]) < 0)
            return -EINVAL;
    if (!cfg->token_file[0])
        return 0;
    char why[400];
    token_file *t = token_file_open(cfg->token_file, why, sizeof why); /* the message never holds the token */
    if (t) {
        token_file_free(t);
        return 0;
    }
    return check_fail("token-file (from %s): %s", FROM(cfg, token_file), why);
}

/* forward-max-message-bytes: from max-record-bytes to buffer-bytes/4. When not set it follows those two (a small
 * buffer shrinks it, a large max-record-bytes raises it). */
static int check_forward_max(config *cfg)
{
    if (config_defaulted(cfg, offsetof(config, forward_max_message_bytes))) {
        if (cfg->forward_max_message_bytes > cfg->buffer_bytes / 4)
            cfg->forward_max_message_bytes = cfg->buffer_bytes / 4;
        if (cfg->forward_max_message_bytes < cfg->max_record_bytes)
            cfg->forward_max_message_bytes = cfg->max_record_bytes;
    }
    if (cfg->forward_max_message_bytes < cfg->max_record_bytes)
        return check_fail("forward-max-message-bytes (%llu, from %s) must be at least max-record-bytes (%llu, from %s)",
                          (unsigned long long)cfg->forward_max_message_bytes, FROM(cfg, forward_max_message_bytes),
                          (unsigned long long)cfg->max_record_bytes, FROM(cfg, max_record_bytes));
    if (cfg->forward_max_message_bytes > cfg->buffer_bytes / 4)
        return check_fail("forward-max-message-bytes (%llu, from %s) must be at most 1/4 of buffer-bytes (%llu, from "
                          "%s)", (unsigned long long)cfg->forward_max_message_bytes,
                          FROM(cfg, forward_max_message_bytes), (unsigned long long)cfg->buffer_bytes,
                          FROM(cfg, buffer_bytes));
    return 0;
}

/* --upstream: a gRPC target gRPC can use. HOST:PORT (or [V6]:PORT) with a port 1-65535, or a target URI of a
 * resolver gRPC has (dns:, ipv4:, ipv6:, unix:, unix-abstract:, vsock:) with something after it. Refused here
 * rather than by gRPC at the first call ("no server name supplied in dns URI", every reconnect). */
static int check_upstream(const config *cfg)
{
    static const char *const SCHEMES[] = {"dns:", "ipv4:", "ipv6:", "unix:", "unix-abstract:", "vsock:", NULL};
    const char *u = cfg->upstream;
    const char *hint = "write HOST:PORT (e.g. collector.example:4317), or a gRPC target such as "
                       "dns:///host:port, ipv4:10.0.0.1:4317,10.0.0.2:4317 or unix:/run/logservice.sock";
    if (!u[0])
        return check_fail("upstream (from %s) is empty: %s", FROM(cfg, upstream), hint);
    for (int i = 0; SCHEMES[i]; i++) {
        size_t n = strlen(SCHEMES[i]);
        if (!strncmp(u, SCHEMES[i], n)) {
            const char *rest = u + n;
            rest += strspn(rest, "/");
            if (!rest[0] || rest[0] == ':')
                return check_fail("upstream '%s' (from %s) names no address after %s: %s", u, FROM(cfg, upstream),
                                  SCHEMES[i], hint);
            return 0;
        }
    }
    const char *colon = strrchr(u, ':'), *close = strrchr(u, ']');
    char *end;
    unsigned long port = colon ? strtoul(colon + 1, &end, 10) : 0;
    if (!colon || (close && close > colon) || colon == u || !colon[1] || *end || port < 1 || port > 65535)
        return check_fail("upstream '%s' (from %s) is not HOST:PORT with a port 1-65535: %s", u, FROM(cfg, upstream),
                          hint);
    return 0;
}

/* --otlp-listen: one to OTLP_LISTEN_MAX addresses, each unix:PATH (a path that fits a socket address) or HOST:PORT;
 * a TCP one is refused beside --allow-uids/--allow-gids, which it could not check. */
static int check_otlp_listen(const config *cfg)
{
    const char *cur = cfg->otlp_listen;
    char item[sizeof cfg->otlp_listen], host[256], port[32];
    int n = 0, rc;
    while ((rc = config_list_next(&cur, item, sizeof item)) != 0) {
        int is_unix = rc > 0 && strncmp(item, "unix:", 5) == 0;
        if (rc < 0 || !item[0] || ++n > OTLP_LISTEN_MAX ||
            (is_unix ? !item[5] || strlen(item + 5) >= 108
                     : tcplisten_split(item, host, sizeof host, port, sizeof port) < 0 || !port[0]))
            return check_fail("otlp-listen '%s' (from %s): expected up to %d addresses, comma-separated, each "
                              "unix:PATH or HOST:PORT (e.g. unix:/run/logagent/otlp.sock,127.0.0.1:4317)",
                              cfg->otlp_listen, FROM(cfg, otlp_listen), OTLP_LISTEN_MAX);
        if (!is_unix && (cfg->n_allow_uid || cfg->n_allow_gid))
            return check_fail("otlp-listen %s (from %s) is TCP, where allow-uids/allow-gids cannot be checked (no "
                              "peer credentials): use otlp-listen = unix:PATH", item, FROM(cfg, otlp_listen));
    }
    return 0;
}

/* Settings that are each valid but impossible together. A default max-record-bytes follows a small buffer. */
int config_check(config *cfg)
{
    if (cfg->max_record_bytes > cfg->buffer_bytes / 16 && config_defaulted(cfg, offsetof(config, max_record_bytes)))
        cfg->max_record_bytes = cfg->buffer_bytes / 16;
    if (cfg->max_record_bytes > cfg->buffer_bytes / 16)
        return check_fail("max-record-bytes (%llu, from %s) must be at most 1/16 of buffer-bytes (%llu, from %s)",
                          (unsigned long long)cfg->max_record_bytes, FROM(cfg, max_record_bytes),
                          (unsigned long long)cfg->buffer_bytes, FROM(cfg, buffer_bytes));
    if (check_forward_max(cfg) < 0)
        return -EINVAL;
    if (resolve_group(cfg->stats_socket_group, &cfg->stats_socket_gid) < 0)
        return check_fail("stats-socket-group '%s' (from %s): no such group", cfg->stats_socket_group,
                          FROM(cfg, stats_socket_group));
    if (resolve_group(cfg->socket_group, &cfg->socket_gid) < 0)
        return check_fail("socket-group '%s' (from %s): no such group", cfg->socket_group, FROM(cfg, socket_group));
    if (resolve_id_list(cfg, offsetof(config, allow_uids), 0, cfg->allow_uid, &cfg->n_allow_uid) < 0 ||
        resolve_id_list(cfg, offsetof(config, allow_gids), 1, cfg->allow_gid, &cfg->n_allow_gid) < 0 ||
        parse_rate_limit(cfg) < 0 || parse_trusted_fields(cfg) < 0 || check_forward_keys(cfg) < 0)
        return -EINVAL;
    if ((cfg->n_allow_uid || cfg->n_allow_gid) && cfg->http_listen[0] && strncmp(cfg->http_listen, "unix:", 5))
        return check_fail("http-listen %s (from %s) is TCP, where allow-uids/allow-gids cannot be checked (no peer "
                          "credentials): use http-listen = unix:PATH", cfg->http_listen, FROM(cfg, http_listen));
    if ((cfg->n_allow_uid || cfg->n_allow_gid) && cfg->forward_listen[0])
        return check_fail("forward-listen %s (from %s) is TCP, where allow-uids/allow-gids cannot be checked (no peer "
                          "credentials): send Forward on the ingest socket instead", cfg->forward_listen,
                          FROM(cfg, forward_listen));
    if (check_tls(cfg) < 0 || check_upstream(cfg) < 0 || check_otlp_listen(cfg) < 0)
        return -EINVAL;
    char why[160];
    if (resattr_check(cfg->resource_attr, why, sizeof why) < 0)
        return check_fail("resource-attr (from %s): %s", FROM(cfg, resource_attr), why);
    if (cfg->buffer == BUFFER_DISK && !cfg->spool_dir[0])
        return check_fail("buffer = disk (from %s) needs spool-dir", FROM(cfg, buffer));
    return 0;
}
