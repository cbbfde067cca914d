/* tcplisten.h — a listening TCP socket from "HOST:PORT", for the optional TCP listeners (--metrics-listen,
 * --http-listen): one parser and one bind loop, and the same log lines for both, named after the setting. */
#ifndef LOGAGENT_TCPLISTEN_H
#define LOGAGENT_TCPLISTEN_H

#include <stddef.h>

/* Splits "HOST:PORT", "[V6]:PORT" or ":PORT" into host ("" = every address) and port. 0 or -EINVAL. */
int tcplisten_split(const char *spec, char *host, size_t hcap, char *port, size_t pcap);

/* Binds and listens on spec (port 0: the kernel picks one). Logs an error naming `flag` (e.g. "--metrics-listen";
 * `example` says what a good value looks like) and returns -errno, or returns the non-blocking, close-on-exec fd
 * with the address actually bound ("127.0.0.1:9100", "[::1]:9100") in bound. */
int tcplisten_open(const char *spec, const char *flag, const char *example, int backlog, char *bound, size_t bcap);

#endif
