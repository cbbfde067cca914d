/* dnswatch.h — --upstream-dns-refresh-ms: looks the upstream's DNS name up again on a timer and says when the set
 * of addresses it names changed.
 *
 * gRPC's DNS resolver (c-ares, gRPC 1.51) resolves a target when the channel starts and again only when its
 * load-balancing policy asks: a connection failed or was closed (GOAWAY), at most every 30 s. A fleet that grows
 * behind a headless Service while every connection stays healthy is therefore never seen. The watch fills that gap
 * from outside gRPC: every period it resolves the name with getaddrinfo on its own thread (a lookup may block for
 * seconds), and when the sorted set of addresses differs from the last one it calls `changed`, which rebuilds the
 * channel (the new one resolves, and connects to every address, at once). A lookup that fails or finds nothing
 * changes nothing: a DNS outage never tears down working connections. Targets that name no DNS name (ipv4:,
 * ipv6:, unix:, a literal address) are not watched. */
#ifndef LOGAGENT_DNSWATCH_H
#define LOGAGENT_DNSWATCH_H

#include <stddef.h>
#include <stdint.h>

typedef struct dnswatch dnswatch;

/* Called on the watch's thread with the new addresses ("10.0.0.1,10.0.0.2", sorted). */
typedef void (*dnswatch_fn)(void *arg, const char *addresses);

/* The DNS name a gRPC target resolves through ("dns:///logs.svc:4317", "dns://8.8.8.8/logs.svc", "logs.svc:4317"
 * → "logs.svc") into host. Returns 1, or 0 when it names none (another scheme, a literal address, no host, or
 * longer than cap). */
int dnswatch_host(const char *target, char *host, size_t cap);

/* Starts watching target's name every period_ms. Returns NULL when there is nothing to watch (period 0, no DNS
 * name: logged at info) or the thread cannot start (logged). */
dnswatch *dnswatch_start(const char *target, int64_t period_ms, dnswatch_fn changed, void *arg);

/* A SIGHUP moved the upstream: watch this target from now on (its first lookup is the new baseline). Any thread. */
void dnswatch_retarget(dnswatch *w, const char *target);

/* Stops the thread (waits for a lookup in progress) and frees w. NULL is fine. */
void dnswatch_stop(dnswatch *w);

#endif
