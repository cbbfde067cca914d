/* logagentctl.c — the operator CLI: reads logagentd's stats socket and shows it to a human or a script.
 *
 *   logagentctl [--stats-socket PATH|HOST:PORT] [--timeout S] [--json] stats|watch|health|ready|metrics|clients
 *   logagentctl [--spool-dir DIR] [--replay [--socket PATH]] deadletter
 *
 * This file parses the command line and runs the one-shot commands. common/httpc.c speaks HTTP over the Unix
 * socket (or TCP, for an agent started with --metrics-listen), ctl_show.c draws the tables, ctl_watch.c runs
 * `watch`, ctl_deadletter.c reads the dead-letter files. Options may come before or after the command. Exit
 * status: 0 ok, 1 failure (agent unreachable, HTTP error, unhealthy), 2 bad usage (the message names the flag or
 * command: common/cli.h). */
#include "ctl_common.h"
#include "ctl_deadletter.h"
#include "ctl_show.h"
#include "ctl_watch.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_STATS_SOCKET "/run/logagent/stats.sock"
#define DEFAULT_SPOOL_DIR "/var/lib/logagent/spool"
#define DEFAULT_INGEST_SOCKET "/run/logagent/ingest.sock"

/* For the messages naming a missing or unknown command. */
#define COMMAND_LIST "stats, watch, health, ready, metrics, clients or deadletter"

/* Options that only some commands take. */
enum { USE_INTERVAL = 1, USE_COUNT = 2, USE_TOP = 4, USE_JSON = 8, USE_VERBOSE = 16, USE_SPOOL_DIR = 32,
       USE_REPLAY = 64, USE_SOCKET = 128 };

typedef struct command {
    const char *name;
    int (*run)(const ctl_opts *o);
    unsigned uses; /* USE_* */
} command;

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: " CTL_PROG " [OPTION]... COMMAND\n"
            "Show what logagentd is doing, from its stats socket.\n"
            "\n"
            "Commands:\n"
            "  stats                  counters and state as a table (--json: the /stats document)\n"
            "  watch                  refresh every interval with rates per second, like top\n"
            "  health                 exit 0 and print 'ok' when healthy; exit 1 and print why when not\n"
            "  ready                  exit 0 while the agent accepts records (a readiness probe: never\n"
            "                         fails for a log service outage); exit 1 when it does not answer\n"
            "  metrics                the Prometheus text of /metrics\n"
            "  clients                the top senders by records (--json: the /stats/clients document)\n"
            "  deadletter             the records the log service refused (deadletter.log.1, then\n"
            "                         deadletter.log in the spool folder) as JSON lines, oldest first;\n"
            "                         --replay sends them to the agent's ingest socket instead\n"
            "\n"
            "Options:\n"
            "  --stats-socket PATH    the agent's stats socket (default: $LOGAGENT_STATS_SOCKET, else\n"
            "                         " DEFAULT_STATS_SOCKET "); HOST:PORT (no '/') connects over TCP to an\n"
            "                         agent started with --metrics-listen\n"
            "  --timeout SECONDS      give up on the agent after this long (default 5)\n"
            "  --json                 print JSON instead of a table (stats, watch, health, clients)\n"
            "  --interval SECONDS     watch: time between refreshes (default 1)\n"
            "  --count N              watch: stop after N refreshes (default: until Ctrl-C)\n"
            "  --top N                clients: show the N biggest senders, 1-1000 (default: the agent's, 20)\n"
            "  --verbose              health: also print what each check saw (upstream, spool, ring)\n"
            "  --spool-dir DIR        deadletter: the agent's --spool-dir (default: $LOGAGENT_SPOOL_DIR, else\n"
            "                         " DEFAULT_SPOOL_DIR ")\n"
            "  --replay               deadletter: send the records to the ingest socket, print nothing\n"
            "  --socket PATH          deadletter --replay: the ingest socket (default: $LOGAGENT_SOCKET, else\n"
            "                         " DEFAULT_INGEST_SOCKET ")\n"
            "  --help                 show this help and exit\n"
            "  --version              show the version and exit\n"
            "\n"
            "Exit status: 0 ok; 1 the agent is unreachable, answered an HTTP error, or is unhealthy;\n"
            "2 bad usage. See logagentctl(8).\n");
}

/* Writes the body as it came, ending in a newline. */
static void print_body(const ctl_response *res)
{
    fwrite(res->body, 1, res->body_len, stdout);
    if (res->body_len && res->body[res->body_len - 1] != '\n')
        putchar('\n');
}

/* GET target; print the body as sent (--json, metrics). */
static int print_raw(const ctl_opts *o, const char *target)
{
    ctl_response res;
    if (ctl_fetch_ok(o, target, &res) != 0)
        return CTL_FAIL;
    print_body(&res);
    ctl_response_free(&res);
    return CTL_OK;
}

static int cmd_stats(const ctl_opts *o)
{
    json_t *doc;
    if (o->json)
        return print_raw(o, "/stats");
    if (ctl_fetch_json(o, "/stats", &doc) != 0)
        return CTL_FAIL;
    ctl_show_stats(stdout, doc, o->endpoint.text);
    json_decref(doc);
    return CTL_OK;
}

static int cmd_watch(const ctl_opts *o)
{
    return ctl_watch_run(o);
}

static int cmd_metrics(const ctl_opts *o)
{
    return print_raw(o, "/metrics");
}

static int cmd_clients(const ctl_opts *o)
{
    char target[64] = "/stats/clients";
    json_t *doc;
    if (o->top > 0)
        snprintf(target, sizeof target, "/stats/clients?top=%ld", o->top);
    if (o->json)
        return print_raw(o, target);
    if (ctl_fetch_json(o, target, &doc) != 0)
        return CTL_FAIL;
    int rc = ctl_show_clients(stdout, doc);
    json_decref(doc);
    return rc == 0 ? CTL_OK : CTL_FAIL;
}

/* --json for health: {"healthy":bool,"status":N,"reasons":[…]} (+ "detail":[…] with --verbose). Reasons are
 * the body's "unhealthy: <reason>" lines; detail lines follow the first empty line (?verbose=1). */
static int health_json(const ctl_response *res, int verbose)
{
    json_t *reasons = json_array(), *detail = json_array();
    int in_detail = 0;
    for (const char *p = res->body; *p;) {
        size_t len = strcspn(p, "\n");
        if (len == 0)
            in_detail = 1;
        else if (in_detail)
            json_array_append_new(detail, json_stringn(p, len));
        else if (strncmp(p, "unhealthy: ", 11) == 0)
            json_array_append_new(reasons, json_stringn(p + 11, len - 11));
        p += len + (p[len] == '\n');
    }
    json_t *obj = json_pack("{s:b, s:i, s:o}", "healthy", res->status == 200, "status", res->status, "reasons",
                            reasons);
    if (obj && verbose)
        json_object_set(obj, "detail", detail);
    json_decref(detail);
    char *text = obj ? json_dumps(obj, JSON_COMPACT) : NULL;
    json_decref(obj);
    if (!text) {
        fprintf(stderr, CTL_PROG ": out of memory\n");
        return CTL_FAIL;
    }
    puts(text);
    free(text);
    return CTL_OK;
}

/* 200 means healthy, 503 unhealthy with the reasons in the body; anything else is an error. */
static int cmd_health(const ctl_opts *o)
{
    const char *target = o->verbose ? "/healthz?verbose=1" : "/healthz";
    ctl_response res;
    if (ctl_fetch(o, target, &res) != 0)
        return CTL_FAIL;
    int rc = res.status == 200 ? CTL_OK : CTL_FAIL;
    if (res.status != 200 && res.status != 503)
        ctl_report_status(o, target, &res);
    else if (o->json)
        rc = health_json(&res, o->verbose) == CTL_OK ? rc : CTL_FAIL;
    else if (res.body_len)
        print_body(&res);
    else
        puts(res.status == 200 ? "ok" : "unhealthy");
    ctl_response_free(&res);
    return rc;
}

/* /readyz answers 200 while the agent's loop runs with its listeners open; anything else is a failure. */
static int cmd_ready(const ctl_opts *o)
{
    ctl_response res;
    if (ctl_fetch(o, "/readyz", &res) != 0)
        return CTL_FAIL;
    int rc = res.status == 200 ? CTL_OK : CTL_FAIL;
    if (res.status != 200)
        ctl_report_status(o, "/readyz", &res);
    else
        print_body(&res);
    ctl_response_free(&res);
    return rc;
}

static const command COMMANDS[] = {
    {"stats", cmd_stats, USE_JSON},
    {"watch", cmd_watch, USE_JSON | USE_INTERVAL | USE_COUNT},
    {"health", cmd_health, USE_JSON | USE_VERBOSE},
    {"ready", cmd_ready, 0},
    {"metrics", cmd_metrics, 0},
    {"clients", cmd_clients, USE_JSON | USE_TOP},
    {"deadletter", ctl_deadletter_run, USE_SPOOL_DIR | USE_REPLAY | USE_SOCKET},
};

static const command *find_command(const char *name)
{
    for (size_t i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0]; i++)
        if (strcmp(COMMANDS[i].name, name) == 0)
            return &COMMANDS[i];
    return NULL;
}

/* A number of seconds in [lo, hi]. Returns 0, or CTL_USAGE after naming the flag. */
static int parse_seconds(const char *flag, const char *v, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double d = strtod(v, &end);
    if (end == v || *end || errno || !isfinite(d) || d < lo || d > hi)
        return cli_usage_error(CTL_PROG, "%s needs a number of seconds from %g to %g, got '%s'", flag, lo, hi,
                               v);
    *out = d;
    return 0;
}

/* A whole number in [1, hi]. Returns 0, or CTL_USAGE after naming the flag. */
static int parse_count(const char *flag, const char *v, long hi, long *out)
{
    char *end;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (end == v || *end || errno || n < 1 || n > hi)
        return cli_usage_error(CTL_PROG, "%s needs a whole number from 1 to %ld, got '%s'", flag, hi, v);
    *out = n;
    return 0;
}

enum { O_SOCKET = 1, O_JSON, O_TIMEOUT, O_INTERVAL, O_COUNT, O_TOP, O_VERBOSE, O_HELP, O_VERSION, O_SPOOL_DIR,
       O_REPLAY, O_INGEST };

/* Applies one option to o; `used` collects the USE_* bits of command-specific ones. Returns 0, CTL_USAGE, or
 * -1 when the program should exit 0 now (--help, --version). */
static int apply_option(int c, const char *arg, ctl_opts *o, const char **where, unsigned *used)
{
    switch (c) {
    case O_SOCKET:
        *where = arg;
        return 0;
    case O_JSON:
        o->json = 1;
        *used |= USE_JSON;
        return 0;
    case O_TIMEOUT:
        return parse_seconds("--timeout", arg, 0.001, 3600, &o->timeout_s);
    case O_INTERVAL:
        *used |= USE_INTERVAL;
        return parse_seconds("--interval", arg, 0.01, 86400, &o->interval_s);
    case O_COUNT:
        *used |= USE_COUNT;
        return parse_count("--count", arg, LONG_MAX, &o->count);
    case O_TOP:
        *used |= USE_TOP;
        return parse_count("--top", arg, 1000, &o->top);
    case O_VERBOSE:
        o->verbose = 1;
        *used |= USE_VERBOSE;
        return 0;
    case O_SPOOL_DIR:
        o->spool_dir = arg;
        *used |= USE_SPOOL_DIR;
        return 0;
    case O_REPLAY:
        o->replay = 1;
        *used |= USE_REPLAY;
        return 0;
    case O_INGEST:
        o->ingest_socket = arg;
        *used |= USE_SOCKET;
        return 0;
    case O_HELP:
        usage(stdout);
        return -1;
    case O_VERSION:
        printf(CTL_PROG " %s\n", LOGAGENT_VERSION_STRING);
        return -1;
    default:
        return CTL_USAGE;
    }
}

/* Fills o and *cmd from argv. Returns 0, CTL_USAGE (said on stderr), or -1 to exit 0 (--help, --version). */
static int parse_args(int argc, char **argv, ctl_opts *o, const command **cmd)
{
    static const struct option longopts[] = {
        {"stats-socket", required_argument, NULL, O_SOCKET}, {"json", no_argument, NULL, O_JSON},
        {"timeout", required_argument, NULL, O_TIMEOUT},     {"interval", required_argument, NULL, O_INTERVAL},
        {"count", required_argument, NULL, O_COUNT},         {"top", required_argument, NULL, O_TOP},
        {"verbose", no_argument, NULL, O_VERBOSE},           {"help", no_argument, NULL, O_HELP},
        {"version", no_argument, NULL, O_VERSION},           {"spool-dir", required_argument, NULL, O_SPOOL_DIR},
        {"replay", no_argument, NULL, O_REPLAY},             {"socket", required_argument, NULL, O_INGEST},
        {NULL, 0, NULL, 0},
    };
    const char *env = getenv("LOGAGENT_STATS_SOCKET");
    const char *where = env && *env ? env : DEFAULT_STATS_SOCKET;
    const char *origin = env && *env ? "LOGAGENT_STATS_SOCKET" : "the default";
    unsigned used = 0;
    const char *spool = getenv("LOGAGENT_SPOOL_DIR"), *ingest = getenv("LOGAGENT_SOCKET");
    *o = (ctl_opts){.timeout_s = 5, .interval_s = 1, .spool_dir = spool && *spool ? spool : DEFAULT_SPOOL_DIR,
                    .ingest_socket = ingest && *ingest ? ingest : DEFAULT_INGEST_SOCKET};
    opterr = 0;
    int c, rc;
    while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        if (c == '?' || c == ':')
            return cli_option_error(CTL_PROG, c == ':', argv[optind - 1]);
        if ((rc = apply_option(c == 'h' ? O_HELP : c, optarg, o, &where, &used)) != 0)
            return rc;
        if (c == O_SOCKET)
            origin = "--stats-socket";
    }
    if (optind >= argc)
        return cli_usage_error(CTL_PROG, "missing COMMAND (" COMMAND_LIST ")");
    if (!(*cmd = find_command(argv[optind])))
        return cli_usage_error(CTL_PROG, "unknown command '%s' (" COMMAND_LIST ")", argv[optind]);
    if (optind + 1 < argc)
        return cli_usage_error(CTL_PROG, "unexpected argument '%s' after %s", argv[optind + 1], argv[optind]);
    static const char *const NAMES[] = {"--interval", "--count", "--top", "--json", "--verbose", "--spool-dir",
                                        "--replay", "--socket"};
    for (unsigned bit = 0; bit < sizeof NAMES / sizeof NAMES[0]; bit++)
        if ((used & (1u << bit)) && !((*cmd)->uses & (1u << bit)))
            return cli_usage_error(CTL_PROG, "%s does not apply to %s", NAMES[bit], (*cmd)->name);
    if ((used & USE_SOCKET) && !o->replay)
        return cli_usage_error(CTL_PROG, "--socket needs --replay");
    if ((used & USE_SPOOL_DIR) && !*o->spool_dir)
        return cli_usage_error(CTL_PROG, "--spool-dir needs a non-empty DIR");
    char err[300];
    if (httpc_parse_endpoint(where, &o->endpoint, err, sizeof err) < 0)
        return cli_usage_error(CTL_PROG, "bad stats socket from %s: %s", origin, err);
    return 0;
}

int main(int argc, char **argv)
{
    ctl_opts o;
    const command *cmd = NULL;
    int rc = parse_args(argc, argv, &o, &cmd);
    if (rc == 0)
        rc = cmd->run(&o);
    else if (rc < 0)
        rc = CTL_OK;
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, CTL_PROG ": cannot write to stdout: %s\n", strerror(errno));
        return CTL_FAIL;
    }
    return rc;
}
