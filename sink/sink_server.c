/* sink_server: LogService over the gRPC C core, one completion queue, one polling thread.
 * DESIGN: every call is a struct sink_call with four tags (new call, message received, closed, answer
 * sent) and a reference count: one reference for the handler (held from request_call until the call is
 * answered or dropped) plus one per batch in flight; the call is freed when it drops to zero.
 * A call is answered once its message is in: at once, or with --delay-ms from a FIFO of calls that are
 * due (the delay is the same for all, so the FIFO is in due order). A call whose client went away
 * before the answer (closed early: deadline, cancel) is dropped without counting anything.
 * Only the thread in server_run/server_free touches these structs, so nothing here is locked. */
#include "sink_server.h"

#include <errno.h>
#include <limits.h>
#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SERVER_PENDING_REQUESTS 32
#define SERVER_MAX_RECV_BYTES (64 * 1024 * 1024)
#define SERVER_POLL_MS 100

enum tag_kind { TAG_NEW, TAG_RECV, TAG_CLOSE, TAG_SEND, TAG_SHUTDOWN };
enum call_method { METHOD_UNKNOWN, METHOD_WRITE_LOG, METHOD_BATCH_WRITE_LOGS, METHOD_OTLP_EXPORT };

struct sink_call;

struct call_tag {
	enum tag_kind kind;
	struct sink_call *call; /* NULL for TAG_SHUTDOWN */
};

struct sink_call {
	struct server *srv;
	grpc_call *call;
	grpc_call_details details;
	grpc_metadata_array request_md;
	grpc_byte_buffer *request;
	grpc_byte_buffer *reply;
	int refs;
	int closed;     /* RECV_CLOSE_ON_SERVER completed: the call is over for the client */
	int cancelled;  /* ... and it ended without our answer */
	int64_t due_ns; /* --delay-ms: when to answer (GPR_CLOCK_MONOTONIC) */
	int decided;    /* --store-before-delay: stored (or refused) at arrival; the answer below waits for due_ns */
	grpc_status_code d_status;
	const char *d_details;
	int d_injected;
	struct sink_call *next_due;
	struct call_tag t_new, t_recv, t_close, t_send;
};

struct server {
	struct server_config cfg;
	grpc_server *server;
	grpc_completion_queue *cq;
	int port;
	int stopping;         /* no new batches or request_calls */
	uint64_t calls_judged; /* calls that reached the injection decision (for --fail-first) */
	struct sink_call *due_head, *due_tail;
	struct call_tag t_shutdown;
	uint8_t *flat; /* the request being handled, in one piece (reused: fresh pages are slow) */
	size_t flat_cap;
};

/* ---- time ---- */

static int64_t now_ns(void)
{
	gpr_timespec t = gpr_now(GPR_CLOCK_MONOTONIC);
	return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

/* ---- credentials ---- */

/* Reads a whole small file into a NUL-terminated malloc'd string; NULL with errno set on failure. */
static char *slurp(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	char *buf = NULL;
	size_t len = 0, cap = 0;
	for (;;) {
		if (cap - len < 4096) {
			char *nb = realloc(buf, cap + 65536);
			if (!nb)
				break;
			buf = nb;
			cap += 65536;
		}
		size_t n = fread(buf + len, 1, cap - len - 1, f);
		len += n;
		if (n == 0)
			break;
	}
	int bad = ferror(f) || !buf;
	fclose(f);
	if (bad) {
		free(buf);
		errno = errno ? errno : EIO;
		return NULL;
	}
	buf[len] = '\0';
	return buf;
}

/* Insecure, or TLS from --tls-cert/--tls-key (+ --tls-client-ca: client certificates required and verified). */
static grpc_server_credentials *server_creds(const struct server_config *cfg, char *err, size_t errlen)
{
	if (!cfg->tls_cert)
		return grpc_insecure_server_credentials_create();
	const char *names[3] = {cfg->tls_cert, cfg->tls_key, cfg->tls_client_ca};
	char *pem[3] = {NULL, NULL, NULL};
	grpc_server_credentials *creds = NULL;
	for (int i = 0; i < 3; i++) {
		if (names[i] && !(pem[i] = slurp(names[i]))) {
			snprintf(err, errlen, "cannot read %s: %s", names[i], strerror(errno));
			goto out;
		}
	}
	grpc_ssl_pem_key_cert_pair pair = {pem[1], pem[0]};
	creds = grpc_ssl_server_credentials_create_ex(
		pem[2], &pair, 1,
		pem[2] ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY : GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE,
		NULL);
	if (!creds)
		snprintf(err, errlen, "cannot make TLS credentials from %s and %s", cfg->tls_cert, cfg->tls_key);
out:
	for (int i = 0; i < 3; i++)
		free(pem[i]);
	return creds;
}

/* Whether the call carries "authorization: Bearer <token>" with the token now in --token-file (re-read on
 * every call, so a test can rotate it; trailing white space of the file is not part of the token). */
static int call_token_ok(const struct sink_call *c)
{
	char *tok = slurp(c->srv->cfg.token_file);
	if (!tok)
		return 0;
	size_t n = strlen(tok);
	while (n && (tok[n - 1] == '\n' || tok[n - 1] == '\r' || tok[n - 1] == ' ' || tok[n - 1] == '\t'))
		tok[--n] = '\0';
	int ok = 0;
	for (size_t i = 0; i < c->request_md.count && !ok; i++) {
		const grpc_metadata *m = &c->request_md.metadata[i];
		if (grpc_slice_str_cmp(m->key, "authorization") != 0)
			continue;
		size_t vl = GRPC_SLICE_LENGTH(m->value);
		const char *v = (const char *)GRPC_SLICE_START_PTR(m->value);
		ok = n > 0 && vl == 7 + n && memcmp(v, "Bearer ", 7) == 0 && memcmp(v + 7, tok, n) == 0;
	}
	free(tok);
	return ok;
}

/* ---- call lifecycle ---- */

static void call_free(struct sink_call *c)
{
	if (c->call)
		grpc_call_unref(c->call);
	grpc_call_details_destroy(&c->details);
	grpc_metadata_array_destroy(&c->request_md);
	if (c->request)
		grpc_byte_buffer_destroy(c->request);
	if (c->reply)
		grpc_byte_buffer_destroy(c->reply);
	free(c);
}

static void call_release(struct sink_call *c)
{
	if (--c->refs == 0)
		call_free(c);
}

/* Posts one request_call; returns 0 or -1. */
static int server_request(struct server *s)
{
	struct sink_call *c = calloc(1, sizeof *c);
	if (!c)
		return -1;
	c->srv = s;
	c->refs = 1; /* the handler's */
	c->t_new = (struct call_tag){TAG_NEW, c};
	c->t_recv = (struct call_tag){TAG_RECV, c};
	c->t_close = (struct call_tag){TAG_CLOSE, c};
	c->t_send = (struct call_tag){TAG_SEND, c};
	grpc_call_details_init(&c->details);
	grpc_metadata_array_init(&c->request_md);
	grpc_call_error e = grpc_server_request_call(s->server, &c->call, &c->details, &c->request_md,
						     s->cq, s->cq, &c->t_new);
	if (e != GRPC_CALL_OK) {
		fprintf(stderr, "logagent-sink: grpc_server_request_call failed (%d)\n", (int)e);
		call_free(c);
		return -1;
	}
	return 0;
}

/* Starts one batch on c; takes a reference that the batch's completion drops. Returns 0 or -1. */
static int call_start(struct sink_call *c, const grpc_op *ops, size_t n, struct call_tag *tag)
{
	c->refs++;
	grpc_call_error e = grpc_call_start_batch(c->call, ops, n, tag, NULL);
	if (e != GRPC_CALL_OK) {
		fprintf(stderr, "logagent-sink: grpc_call_start_batch failed (%d)\n", (int)e);
		c->refs--;
		return -1;
	}
	return 0;
}

/* A new call: start watching for its end and receiving its message. Returns 0, or -1 after
 * cancelling the call (a close batch already started then completes). */
static int on_new_call(struct sink_call *c)
{
	grpc_op recv[2], close;
	memset(recv, 0, sizeof recv);
	memset(&close, 0, sizeof close);
	close.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
	close.data.recv_close_on_server.cancelled = &c->cancelled;
	recv[0].op = GRPC_OP_SEND_INITIAL_METADATA;
	recv[1].op = GRPC_OP_RECV_MESSAGE;
	recv[1].data.recv_message.recv_message = &c->request;
	if (call_start(c, &close, 1, &c->t_close) == 0 && call_start(c, recv, 2, &c->t_recv) == 0)
		return 0;
	grpc_call_cancel(c->call, NULL);
	return -1;
}

/* Drops a call without answering it: cancels it (so its close batch completes) and releases the
 * handler reference. */
static void call_drop(struct sink_call *c)
{
	if (!c->closed)
		grpc_call_cancel(c->call, NULL);
	call_release(c);
}

/* ---- answers ---- */

static enum call_method call_method(const struct sink_call *c)
{
	if (c->srv->cfg.otlp) /* --protocol otlp serves LogsService/Export only */
		return grpc_slice_str_cmp(c->details.method, "/opentelemetry.proto.collector.logs.v1.LogsService/Export")
			       ? METHOD_UNKNOWN : METHOD_OTLP_EXPORT;
	if (grpc_slice_str_cmp(c->details.method, "/logagent.v1.LogService/WriteLog") == 0)
		return METHOD_WRITE_LOG;
	if (grpc_slice_str_cmp(c->details.method, "/logagent.v1.LogService/BatchWriteLogs") == 0)
		return METHOD_BATCH_WRITE_LOGS;
	return METHOD_UNKNOWN;
}

/* Decides whether this call fails on purpose (--fail-first, then --fail-rate). */
static int server_inject_failure(struct server *s)
{
	if (s->calls_judged++ < s->cfg.fail_first)
		return 1;
	return sink_rng_chance(s->cfg.rng, s->cfg.fail_rate);
}

struct answer {
	grpc_status_code status;
	const char *details; /* static text, or NULL */
	int injected;        /* a failure on purpose: may carry RetryInfo */
};

static uint8_t *put_varint(uint8_t *p, uint64_t v)
{
	while (v >= 0x80) {
		*p++ = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	*p++ = (uint8_t)v;
	return p;
}

/* google.rpc.Status{code, message, details: [Any{RetryInfo{retry_delay: Duration}}]}, hand-encoded
 * (every length here is < 128, so each fits one byte). Returns the length written into out (>= 96 bytes). */
static size_t retry_info_status(grpc_status_code code, long delay_ms, uint8_t *out)
{
	static const char type[] = "type.googleapis.com/google.rpc.RetryInfo";
	uint8_t dur[24], ri[32], any[96], *p;
	p = put_varint(dur, 0x08);
	p = put_varint(p, (uint64_t)(delay_ms / 1000));
	p = put_varint(p, 0x10);
	p = put_varint(p, (uint64_t)(delay_ms % 1000) * 1000000);
	size_t dlen = (size_t)(p - dur);
	ri[0] = 0x0a;
	ri[1] = (uint8_t)dlen;
	memcpy(ri + 2, dur, dlen);
	size_t rlen = 2 + dlen;
	any[0] = 0x0a;
	any[1] = sizeof type - 1;
	memcpy(any + 2, type, sizeof type - 1);
	p = any + 2 + sizeof type - 1;
	*p++ = 0x12;
	*p++ = (uint8_t)rlen;
	memcpy(p, ri, rlen);
	size_t alen = (size_t)(p + rlen - any);
	p = out;
	*p++ = 0x08;
	p = put_varint(p, (uint64_t)code);
	*p++ = 0x1a;
	*p++ = (uint8_t)alen;
	memcpy(p, any, alen);
	return (size_t)(p + alen - out);
}

/* Copies the request into s->flat; returns its length, or -1 (no message, or out of memory). */
static long call_flatten(struct sink_call *c)
{
	struct server *s = c->srv;
	grpc_byte_buffer_reader reader;
	grpc_slice piece;
	size_t len = 0;
	int ok = 1;
	if (!c->request || !grpc_byte_buffer_reader_init(&reader, c->request))
		return -1;
	while (grpc_byte_buffer_reader_next(&reader, &piece)) {
		size_t n = GRPC_SLICE_LENGTH(piece);
		if (ok && len + n > s->flat_cap) {
			size_t cap = s->flat_cap ? s->flat_cap : 65536;
			while (cap < len + n)
				cap *= 2;
			uint8_t *p = realloc(s->flat, cap);
			ok = p != NULL;
			if (ok) {
				s->flat = p;
				s->flat_cap = cap;
			}
		}
		if (ok)
			memcpy(s->flat + len, GRPC_SLICE_START_PTR(piece), n);
		len += n;
		grpc_slice_unref(piece);
	}
	grpc_byte_buffer_reader_destroy(&reader);
	return ok && len <= LONG_MAX ? (long)len : -1;
}

/* Hands the message to the ledger; on success c->reply holds the packed reply. */
static struct answer call_record(struct sink_call *c, enum call_method m)
{
	struct ledger *l = c->srv->cfg.ledger;
	long n = call_flatten(c);
	if (n < 0) {
		ledger_count_invalid(l);
		return (struct answer){GRPC_STATUS_INVALID_ARGUMENT, "no request message", 0};
	}
	struct ledger_reply reply;
	const uint8_t *p = c->srv->flat ? c->srv->flat : (const uint8_t *)"";
	int r = m == METHOD_WRITE_LOG	 ? ledger_write_log(l, p, (size_t)n, &reply)
		: m == METHOD_OTLP_EXPORT ? ledger_otlp_export(l, p, (size_t)n, &reply)
					  : ledger_batch_write(l, p, (size_t)n, &reply);
	if (r == -EINVAL)
		return (struct answer){GRPC_STATUS_INVALID_ARGUMENT, "cannot decode the request message", 0};
	if (r < 0)
		return (struct answer){GRPC_STATUS_INTERNAL, "logagent-sink cannot write its output", 0};
	grpc_slice s = grpc_slice_new(reply.data, reply.len, free);
	c->reply = grpc_raw_byte_buffer_create(&s, 1);
	grpc_slice_unref(s);
	return (struct answer){GRPC_STATUS_OK, NULL, 0};
}

static struct answer call_decide(struct sink_call *c)
{
	struct server *s = c->srv;
	enum call_method m = call_method(c);
	if (m == METHOD_UNKNOWN)
		return (struct answer){GRPC_STATUS_UNIMPLEMENTED, "unknown method", 0};
	if (s->cfg.token_file && !call_token_ok(c)) {
		ledger_count_unauthenticated(s->cfg.ledger);
		return (struct answer){GRPC_STATUS_UNAUTHENTICATED, "missing or wrong bearer token", 0};
	}
	if (m == METHOD_BATCH_WRITE_LOGS && s->cfg.no_batch)
		return (struct answer){GRPC_STATUS_UNIMPLEMENTED, "BatchWriteLogs is off (--no-batch)", 0};
	if (server_inject_failure(s)) {
		ledger_count_injected_failure(s->cfg.ledger);
		return (struct answer){s->cfg.fail_code, "failure injected by logagent-sink", 1};
	}
	return call_record(c, m);
}

/* Answers c (unless its client is gone), then drops the handler reference. */
static void call_answer(struct sink_call *c)
{
	if (!c->closed && !c->srv->stopping) {
		struct answer a = c->decided ? (struct answer){c->d_status, c->d_details, c->d_injected} : call_decide(c);
		grpc_slice details = grpc_slice_from_static_string(a.details ? a.details : "");
		grpc_op ops[2];
		size_t n = 0;
		memset(ops, 0, sizeof ops);
		if (c->reply) {
			ops[n].op = GRPC_OP_SEND_MESSAGE;
			ops[n++].data.send_message.send_message = c->reply;
		}
		uint8_t status_bin[128];
		grpc_metadata md;
		memset(&md, 0, sizeof md);
		ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
		if (a.injected && c->srv->cfg.retry_after_ms >= 0) {
			size_t blen = retry_info_status(a.status, c->srv->cfg.retry_after_ms, status_bin);
			md.key = grpc_slice_from_static_string("grpc-status-details-bin");
			md.value = grpc_slice_from_copied_buffer((const char *)status_bin, blen);
			ops[n].data.send_status_from_server.trailing_metadata_count = 1;
			ops[n].data.send_status_from_server.trailing_metadata = &md;
		}
		ops[n].data.send_status_from_server.status = a.status;
		ops[n++].data.send_status_from_server.status_details = a.details ? &details : NULL;
		if (call_start(c, ops, n, &c->t_send) < 0)
			grpc_call_cancel(c->call, NULL);
		grpc_slice_unref(md.value);
	}
	call_release(c);
}

/* The message is in (or the receive failed). */
static void on_received(struct sink_call *c, int ok)
{
	struct server *s = c->srv;
	if (!ok || s->stopping || c->closed) {
		call_drop(c);
		return;
	}
	if (s->cfg.delay_ms <= 0) {
		call_answer(c);
		return;
	}
	c->due_ns = now_ns() + (int64_t)s->cfg.delay_ms * 1000000;
	if (s->cfg.store_before_delay) { /* stored now, answered later: a kill in between loses stored calls' answers */
		struct answer a = call_decide(c);
		c->decided = 1;
		c->d_status = a.status;
		c->d_details = a.details;
		c->d_injected = a.injected;
	}
	if (s->due_tail)
		s->due_tail->next_due = c;
	else
		s->due_head = c;
	s->due_tail = c;
}

/* Answers every delayed call that is due. */
static void server_answer_due(struct server *s)
{
	if (!s->due_head)
		return;
	int64_t now = now_ns();
	while (s->due_head && s->due_head->due_ns <= now) {
		struct sink_call *c = s->due_head;
		s->due_head = c->next_due;
		if (!s->due_head)
			s->due_tail = NULL;
		call_answer(c);
	}
}

/* ---- completion-queue dispatch ---- */

static void server_dispatch(struct server *s, struct call_tag *tag, int ok)
{
	struct sink_call *c = tag->call;
	switch (tag->kind) {
	case TAG_NEW:
		if (!s->stopping && server_request(s) < 0)
			fprintf(stderr, "logagent-sink: one request_call fewer from now on\n");
		if (ok && !s->stopping && on_new_call(c) == 0)
			break; /* the handler reference stays until the call is answered or dropped */
		call_release(c);
		break;
	case TAG_RECV:
		call_release(c); /* the batch's reference; the handler's keeps c alive */
		on_received(c, ok);
		break;
	case TAG_CLOSE:
		c->closed = 1;
		call_release(c);
		break;
	case TAG_SEND:
		call_release(c);
		break;
	case TAG_SHUTDOWN:
		break;
	}
}

/* ---- server lifecycle ---- */

static grpc_server *server_create(int no_compression)
{
	grpc_arg args[5];
	memset(args, 0, sizeof args);
	args[0].type = GRPC_ARG_INTEGER;
	args[0].key = (char *)GRPC_ARG_ALLOW_REUSEPORT; /* a port in use must fail, not be shared */
	args[0].value.integer = 0;
	args[1].type = GRPC_ARG_INTEGER;
	args[1].key = (char *)GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
	args[1].value.integer = SERVER_MAX_RECV_BYTES;
	args[2].type = GRPC_ARG_INTEGER; /* bit 0: identity; the others are gRPC's compression algorithms */
	args[2].key = (char *)GRPC_COMPRESSION_CHANNEL_ENABLED_ALGORITHMS_BITSET;
	args[2].value.integer = no_compression ? 1 : (1 << GRPC_COMPRESS_ALGORITHMS_COUNT) - 1;
	/* agents' keepalive pings (--upstream-keepalive, as often as a test sets it) are welcome, never a GOAWAY */
	args[3].type = GRPC_ARG_INTEGER;
	args[3].key = (char *)GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS;
	args[3].value.integer = 100;
	args[4].type = GRPC_ARG_INTEGER;
	args[4].key = (char *)GRPC_ARG_HTTP2_MAX_PING_STRIKES;
	args[4].value.integer = 0;
	grpc_channel_args cargs = {5, args};
	return grpc_server_create(&cargs, NULL);
}

struct server *server_new(const struct server_config *cfg, char *err, size_t errlen)
{
	struct server *s = calloc(1, sizeof *s);
	if (!s) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	s->cfg = *cfg;
	s->t_shutdown = (struct call_tag){TAG_SHUTDOWN, NULL};
	s->cq = grpc_completion_queue_create_for_next(NULL);
	s->server = server_create(cfg->no_compression);
	if (!s->cq || !s->server) {
		snprintf(err, errlen, "cannot create the gRPC server");
		server_free(s);
		return NULL;
	}
	grpc_server_register_completion_queue(s->server, s->cq, NULL);
	grpc_server_credentials *creds = server_creds(cfg, err, errlen);
	if (!creds) {
		server_free(s);
		return NULL;
	}
	s->port = grpc_server_add_http2_port(s->server, cfg->listen, creds);
	grpc_server_credentials_release(creds);
	if (s->port <= 0) {
		snprintf(err, errlen, "cannot listen on %s (address in use, or not a valid HOST:PORT)",
			 cfg->listen);
		server_free(s);
		return NULL;
	}
	return s;
}

int server_port(const struct server *s)
{
	return s->port;
}

int server_start(struct server *s, char *err, size_t errlen)
{
	grpc_server_start(s->server);
	int posted = 0;
	for (int i = 0; i < SERVER_PENDING_REQUESTS; i++)
		posted += server_request(s) == 0;
	if (posted == 0) {
		snprintf(err, errlen, "cannot wait for calls (grpc_server_request_call failed)");
		return -1;
	}
	return 0;
}

/* How long the next cq_next may wait: until the first delayed answer is due, at most SERVER_POLL_MS. */
static gpr_timespec server_deadline(const struct server *s)
{
	int64_t wake = now_ns() + (int64_t)SERVER_POLL_MS * 1000000;
	if (s->due_head && s->due_head->due_ns < wake)
		wake = s->due_head->due_ns;
	return gpr_time_from_nanos(wake, GPR_CLOCK_MONOTONIC);
}

void server_run(struct server *s, struct server_flags *flags)
{
	/* The stop flag is checked on every turn: under load cq_next never times out. */
	while (!atomic_load(&flags->stop) && !ledger_failed(s->cfg.ledger)) {
		if (atomic_exchange(&flags->dump, 0))
			ledger_print_summary(s->cfg.ledger, stderr);
		grpc_event ev = grpc_completion_queue_next(s->cq, server_deadline(s), NULL);
		if (ev.type == GRPC_OP_COMPLETE)
			server_dispatch(s, ev.tag, ev.success);
		server_answer_due(s);
	}
}

/* Drops every delayed call (its client sees CANCELLED; nothing of it was counted). */
static void server_drop_due(struct server *s)
{
	while (s->due_head) {
		struct sink_call *c = s->due_head;
		s->due_head = c->next_due;
		call_drop(c);
	}
	s->due_tail = NULL;
}

/* Shutdown order from notes/stack.md: shutdown_and_notify + cancel_all_calls, wait for the tag
 * (outstanding request_calls come back failed meanwhile), destroy, then shut down and drain the CQ. */
static void server_shutdown(struct server *s)
{
	s->stopping = 1;
	grpc_server_shutdown_and_notify(s->server, s->cq, &s->t_shutdown);
	grpc_server_cancel_all_calls(s->server);
	server_drop_due(s);
	for (;;) {
		grpc_event ev = grpc_completion_queue_next(s->cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
		if (ev.type != GRPC_OP_COMPLETE)
			continue;
		if (ev.tag == &s->t_shutdown)
			break;
		server_dispatch(s, ev.tag, ev.success);
	}
	grpc_server_destroy(s->server);
	s->server = NULL;
}

void server_free(struct server *s)
{
	if (!s)
		return;
	if (s->server && s->cq)
		server_shutdown(s);
	else if (s->server)
		grpc_server_destroy(s->server);
	if (s->cq) {
		grpc_completion_queue_shutdown(s->cq);
		for (;;) {
			grpc_event ev = grpc_completion_queue_next(s->cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
			if (ev.type == GRPC_QUEUE_SHUTDOWN)
				break;
			if (ev.type == GRPC_OP_COMPLETE)
				server_dispatch(s, ev.tag, ev.success);
		}
		grpc_completion_queue_destroy(s->cq);
	}
	free(s->flat);
	free(s);
}
