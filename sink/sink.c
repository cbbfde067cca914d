/* logagent-sink: the reference LogService server for tests, the demo and local development.
 * This file holds main: the option table and its parsing, the signal thread, the port file and the
 * linear start-up / reverse teardown. The gRPC side is in sink_server.c, what happens to a request's
 * entries (JSON lines, counters, log_id set) in sink_ledger.c. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grpc/grpc.h>
#include <malloc.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "common/cli.h"
#include "sink_ledger.h"
#include "sink_rng.h"
#include "sink_server.h"

#define PROG "logagent-sink"

struct sink_opts {
	const char *listen;
	const char *out;
	const char *port_file;
	int no_batch;
	int no_compression;
	int store_before_delay;
	int otlp;
	int quiet;
	double fail_rate;
	double reject_rate;
	grpc_status_code fail_code;
	uint64_t fail_first;
	long delay_ms;
	long retry_after_ms;
	uint64_t seed;
	const char *tls_cert, *tls_key, *tls_client_ca, *token_file;
};

enum opt_id {
	OPT_LISTEN = 1, OPT_OUT, OPT_NO_BATCH, OPT_QUIET, OPT_PORT_FILE, OPT_FAIL_RATE, OPT_FAIL_CODE,
	OPT_FAIL_FIRST, OPT_DELAY_MS, OPT_REJECT_RATE, OPT_SEED, OPT_RETRY_AFTER_MS, OPT_TLS_CERT, OPT_TLS_KEY,
	OPT_TLS_CLIENT_CA, OPT_TOKEN_FILE, OPT_PROTOCOL, OPT_NO_COMPRESSION, OPT_STORE_BEFORE_DELAY, OPT_HELP
};

/* The option table drives getopt_long and --help. */
static const struct opt_spec {
	const char *name;
	const char *arg; /* NULL: a switch */
	enum opt_id id;
	const char *help;
} opt_specs[] = {
	{"listen", "HOST:PORT", OPT_LISTEN, "address to serve on (default localhost:50051); port 0 picks a free port"},
	{"out", "FILE|-", OPT_OUT, "append one JSON line per accepted entry to FILE; - is stdout (default)"},
	{"no-batch", NULL, OPT_NO_BATCH, "answer BatchWriteLogs with UNIMPLEMENTED, like the original service"},
	{"quiet", NULL, OPT_QUIET, "no JSON lines, count only"},
	{"port-file", "FILE", OPT_PORT_FILE, "once serving, write the bound port and a newline to FILE (atomically)"},
	{"fail-rate", "P", OPT_FAIL_RATE, "fail this share (0..1) of calls with --fail-code"},
	{"fail-code", "NAME|N", OPT_FAIL_CODE, "status of failed calls, e.g. UNAVAILABLE (default), RESOURCE_EXHAUSTED, 8"},
	{"fail-first", "N", OPT_FAIL_FIRST, "fail the first N calls with --fail-code"},
	{"delay-ms", "N", OPT_DELAY_MS, "answer each call N ms after it arrived (other calls go on meanwhile)"},
	{"store-before-delay", NULL, OPT_STORE_BEFORE_DELAY, "with --delay-ms: store each call's entries when it arrives and answer it after the delay (a kill in between loses the answers of stored calls: the client's duplicates)"},
	{"reject-rate", "P", OPT_REJECT_RATE, "reject this share (0..1) of each batch's entries as retryable"},
	{"seed", "N", OPT_SEED, "seed of the random choices (default 1)"},
	{"retry-after-ms", "N", OPT_RETRY_AFTER_MS, "failed calls carry google.rpc.RetryInfo asking for N ms (grpc-status-details-bin)"},
	{"tls-cert", "FILE", OPT_TLS_CERT, "serve TLS with this PEM certificate (chain); needs --tls-key"},
	{"tls-key", "FILE", OPT_TLS_KEY, "the PEM private key of --tls-cert"},
	{"tls-client-ca", "FILE", OPT_TLS_CLIENT_CA, "require client certificates signed by this PEM CA (mTLS)"},
	{"token-file", "FILE", OPT_TOKEN_FILE, "require 'authorization: Bearer <token>' with the token in FILE (re-read per call); else UNAUTHENTICATED"},
	{"protocol", "logagent|otlp", OPT_PROTOCOL, "otlp: serve OTLP LogsService/Export (same JSON lines, plus an \"otlp\" object)"},
	{"no-compression", NULL, OPT_NO_COMPRESSION, "take only uncompressed messages (gRPC answers a gzip one UNIMPLEMENTED), like a service built without gzip"},
	{"help", NULL, OPT_HELP, "show this help"},
};

#define N_OPTS (sizeof opt_specs / sizeof opt_specs[0])

static const char *const status_names[] = {
	"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
	"ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED",
	"OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED",
};

/* ---- options ---- */

static void usage(FILE *f)
{
	fprintf(f, "usage: " PROG " [options]\n"
		   "A LogService (logagent.v1) gRPC server, or with --protocol otlp an OTLP LogsService one, that prints or\n"
		   "counts what it receives.\n"
		   "On SIGTERM/SIGINT it prints a JSON summary line to stderr and exits; SIGUSR1 prints it now.\n\n");
	for (size_t i = 0; i < N_OPTS; i++) {
		char left[40];
		snprintf(left, sizeof left, "--%s%s%s", opt_specs[i].name, opt_specs[i].arg ? " " : "",
			 opt_specs[i].arg ? opt_specs[i].arg : "");
		fprintf(f, "  %-24s %s\n", left, opt_specs[i].help);
	}
}

static double parse_rate(const char *flag, const char *v)
{
	char *end;
	errno = 0;
	double d = strtod(v, &end);
	if (errno || end == v || *end || !isfinite(d) || d < 0.0 || d > 1.0)
		exit(cli_usage_error(PROG, "%s: expected a share between 0 and 1, got '%s'", flag, v));
	return d;
}

static uint64_t parse_u64(const char *flag, const char *v, uint64_t max)
{
	char *end;
	errno = 0;
	unsigned long long n = strtoull(v, &end, 10);
	if (errno || end == v || *end || v[0] == '-' || v[0] == '+' || n > max)
		exit(cli_usage_error(PROG, "%s: expected a whole number from 0 to %llu, got '%s'", flag,
				     (unsigned long long)max, v));
	return (uint64_t)n;
}

static grpc_status_code parse_status(const char *flag, const char *v)
{
	for (size_t i = 1; i < sizeof status_names / sizeof status_names[0]; i++)
		if (strcasecmp(v, status_names[i]) == 0)
			return (grpc_status_code)i;
	char *end;
	long n = strtol(v, &end, 10);
	if (end != v && !*end && n >= 1 && n <= 16)
		return (grpc_status_code)n;
	exit(cli_usage_error(PROG, "%s: expected a gRPC status name (e.g. UNAVAILABLE) or a number from 1 to 16, got '%s'",
			     flag, v));
}

static void apply_opt(struct sink_opts *o, enum opt_id id, const char *flag, const char *v)
{
	switch (id) {
	case OPT_LISTEN:
		if (!*v)
			exit(cli_usage_error(PROG, "%s: expected HOST:PORT", flag));
		o->listen = v;
		break;
	case OPT_OUT:
		if (!*v)
			exit(cli_usage_error(PROG, "%s: expected a file name or -", flag));
		o->out = v;
		break;
	case OPT_NO_BATCH: o->no_batch = 1; break;
	case OPT_NO_COMPRESSION: o->no_compression = 1; break;
	case OPT_STORE_BEFORE_DELAY: o->store_before_delay = 1; break;
	case OPT_QUIET: o->quiet = 1; break;
	case OPT_PORT_FILE:
		if (!*v)
			exit(cli_usage_error(PROG, "%s: expected a file name", flag));
		o->port_file = v;
		break;
	case OPT_FAIL_RATE: o->fail_rate = parse_rate(flag, v); break;
	case OPT_FAIL_CODE: o->fail_code = parse_status(flag, v); break;
	case OPT_FAIL_FIRST: o->fail_first = parse_u64(flag, v, UINT64_MAX); break;
	case OPT_DELAY_MS: o->delay_ms = (long)parse_u64(flag, v, 3600000); break;
	case OPT_REJECT_RATE: o->reject_rate = parse_rate(flag, v); break;
	case OPT_SEED: o->seed = parse_u64(flag, v, UINT64_MAX); break;
	case OPT_RETRY_AFTER_MS: o->retry_after_ms = (long)parse_u64(flag, v, 3600000); break;
	case OPT_TLS_CERT: o->tls_cert = v; break;
	case OPT_TLS_KEY: o->tls_key = v; break;
	case OPT_TLS_CLIENT_CA: o->tls_client_ca = v; break;
	case OPT_TOKEN_FILE: o->token_file = v; break;
	case OPT_PROTOCOL:
		if (strcmp(v, "otlp") && strcmp(v, "logagent"))
			exit(cli_usage_error(PROG, "%s: expected logagent or otlp, got '%s'", flag, v));
		o->otlp = !strcmp(v, "otlp");
		break;
	case OPT_HELP:
		usage(stdout);
		exit(0);
	}
}

/* Fills o from argv; exits 0 after --help and 2 on bad usage. */
static void parse_args(struct sink_opts *o, int argc, char **argv)
{
	struct option longopts[N_OPTS + 1];
	char flag[48];
	memset(longopts, 0, sizeof longopts);
	for (size_t i = 0; i < N_OPTS; i++) {
		longopts[i].name = opt_specs[i].name;
		longopts[i].has_arg = opt_specs[i].arg ? required_argument : no_argument;
		longopts[i].val = (int)opt_specs[i].id;
	}
	*o = (struct sink_opts){.listen = "localhost:50051", .out = "-", .fail_code = GRPC_STATUS_UNAVAILABLE,
				.seed = 1, .retry_after_ms = -1};
	opterr = 0;
	for (;;) {
		int idx = -1;
		int c = getopt_long(argc, argv, "", longopts, &idx);
		if (c == -1)
			break;
		if (c == '?' || c == ':') { /* optopt: the option whose value is missing (0: an unknown one) */
			int missing = optopt > 0 && optopt <= (int)N_OPTS;
			if (missing)
				snprintf(flag, sizeof flag, "--%s", opt_specs[optopt - 1].name);
			exit(cli_option_error(PROG, missing, missing ? flag : argv[optind - 1]));
		}
		snprintf(flag, sizeof flag, "--%s", opt_specs[idx].name);
		apply_opt(o, (enum opt_id)c, flag, optarg);
	}
	if (optind < argc)
		exit(cli_usage_error(PROG, "unexpected argument '%s' (all settings are --flags)", argv[optind]));
	if (!o->tls_cert != !o->tls_key)
		exit(cli_usage_error(PROG, "--tls-cert and --tls-key go together"));
	if (o->tls_client_ca && !o->tls_cert)
		exit(cli_usage_error(PROG, "--tls-client-ca: needs --tls-cert and --tls-key (mTLS is TLS first)"));
}

/* ---- signals ---- */

struct sink_signals {
	sigset_t set;
	struct server_flags *flags;
	atomic_int quit;
	pthread_t thread;
};

/* Waits for signals (blocked in every thread) and turns them into flags. A second SIGTERM/SIGINT
 * while stopping exits at once. SIGUSR2 with quit set ends the thread. */
static void *signal_thread(void *arg)
{
	struct sink_signals *sg = arg;
	for (;;) {
		int sig;
		if (sigwait(&sg->set, &sig) != 0)
			continue;
		if (atomic_load(&sg->quit))
			return NULL;
		if (sig == SIGUSR1) {
			atomic_store(&sg->flags->dump, 1);
		} else if (sig == SIGTERM || sig == SIGINT) {
			if (atomic_exchange(&sg->flags->stop, 1)) {
				static const char msg[] = PROG ": second signal, exiting now\n";
				if (write(STDERR_FILENO, msg, sizeof msg - 1) < 0) {
					/* nothing left to try */
				}
				_exit(1);
			}
		}
	}
}

/* Blocks the signals in this (and every later) thread and starts the signal thread. Returns 0 or -errno. */
static int signals_start(struct sink_signals *sg, struct server_flags *flags)
{
	sigemptyset(&sg->set);
	sigaddset(&sg->set, SIGTERM);
	sigaddset(&sg->set, SIGINT);
	sigaddset(&sg->set, SIGUSR1);
	sigaddset(&sg->set, SIGUSR2);
	sg->flags = flags;
	atomic_init(&sg->quit, 0);
	int r = pthread_sigmask(SIG_BLOCK, &sg->set, NULL);
	if (r == 0)
		r = pthread_create(&sg->thread, NULL, signal_thread, sg);
	return -r;
}

static void signals_stop(struct sink_signals *sg)
{
	atomic_store(&sg->quit, 1);
	pthread_kill(sg->thread, SIGUSR2);
	pthread_join(sg->thread, NULL);
}

/* ---- files ---- */

/* Opens the output for appending (- is stdout). Returns the fd or -errno. */
static int open_output(const char *path)
{
	if (strcmp(path, "-") == 0)
		return STDOUT_FILENO;
	int fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	/* A sink killed mid-write leaves a torn last line: end it, so our first line starts on its own. */
	char last;
	off_t size = lseek(fd, 0, SEEK_END);
	if (size > 0 && pread(fd, &last, 1, size - 1) == 1 && last != '\n' && write(fd, "\n", 1) != 1) {
		int e = errno;
		close(fd);
		return -e;
	}
	return fd;
}

/* Writes "<port>\n" to path via a temporary file and rename(2). Returns 0 or -errno. */
static int write_port_file(const char *path, int port)
{
	char tmp[4096];
	if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp)
		return -ENAMETOOLONG;
	FILE *f = fopen(tmp, "we");
	if (!f)
		return -errno;
	int bad = fprintf(f, "%d\n", port) < 0;
	bad |= fclose(f) != 0;
	if (bad || rename(tmp, path) != 0) {
		int e = errno ? errno : EIO;
		unlink(tmp);
		return -e;
	}
	return 0;
}

/* Keeps freed heap memory for reuse instead of handing it back to the kernel. Each request is a few
 * hundred KB of gRPC buffers; with glibc's defaults those are mmap'ed or trimmed and faulted in again
 * for every call, and on a VM a page fault costs ~15 us: that was 3/4 of the sink's CPU time. */
static void malloc_keep_memory(void)
{
#ifdef M_MMAP_THRESHOLD
	if (!mallopt(M_MMAP_THRESHOLD, 32 << 20) || !mallopt(M_TRIM_THRESHOLD, 512 << 20))
		fprintf(stderr, PROG ": mallopt failed; carrying on with malloc defaults\n");
#endif
}

/* ---- main ---- */

int main(int argc, char **argv)
{
	struct sink_opts o;
	struct server_flags flags;
	struct sink_signals sg;
	struct server *srv = NULL;
	struct ledger *ledger = NULL;
	char err[512];
	int status = 1, served = 0, out_fd = -1, r;

	parse_args(&o, argc, argv);
	malloc_keep_memory();
	atomic_init(&flags.stop, 0);
	atomic_init(&flags.dump, 0);
	signal(SIGPIPE, SIG_IGN); /* a closed stdout is a write error, not a death */
	if ((r = signals_start(&sg, &flags)) < 0) {
		fprintf(stderr, PROG ": cannot set up signal handling: %s\n", strerror(-r));
		return 1;
	}
	if (!o.quiet && (out_fd = open_output(o.out)) < 0) {
		fprintf(stderr, PROG ": cannot open --out %s: %s\n", o.out, strerror(-out_fd));
		goto out_signals;
	}
	struct sink_rng rng = {o.seed};
	struct ledger_config lc = {.quiet = o.quiet, .out_fd = out_fd, .reject_rate = o.reject_rate, .rng = &rng};
	if (!(ledger = ledger_new(&lc))) {
		fprintf(stderr, PROG ": out of memory\n");
		goto out_file;
	}

	grpc_init();
	struct server_config sc = {.listen = o.listen, .no_batch = o.no_batch, .no_compression = o.no_compression, .otlp = o.otlp, .delay_ms = o.delay_ms,
				   .store_before_delay = o.store_before_delay,
				   .fail_rate = o.fail_rate, .fail_first = o.fail_first, .fail_code = o.fail_code,
				   .retry_after_ms = o.retry_after_ms, .ledger = ledger, .rng = &rng,
				   .tls_cert = o.tls_cert, .tls_key = o.tls_key, .tls_client_ca = o.tls_client_ca,
				   .token_file = o.token_file};
	if (!(srv = server_new(&sc, err, sizeof err)) || server_start(srv, err, sizeof err) < 0) {
		fprintf(stderr, PROG ": %s\n", err);
		goto out_grpc;
	}
	if (o.port_file && (r = write_port_file(o.port_file, server_port(srv))) < 0) {
		fprintf(stderr, PROG ": cannot write --port-file %s: %s\n", o.port_file, strerror(-r));
		goto out_grpc;
	}
	fprintf(stderr, PROG ": listening on port %d (--listen %s)\n", server_port(srv), o.listen);
	served = 1;
	server_run(srv, &flags);
	status = ledger_failed(ledger) ? 1 : 0;

out_grpc:
	server_free(srv);
	grpc_shutdown();
	if (served)
		ledger_print_summary(ledger, stderr);
	ledger_free(ledger);
out_file:
	if (out_fd > STDOUT_FILENO)
		close(out_fd);
out_signals:
	signals_stop(&sg);
	return status;
}
