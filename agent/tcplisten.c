/* tcplisten.c — see tcplisten.h. */
#include "tcplisten.h"

#include "log.h"

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int tcplisten_split(const char *spec, char *host, size_t hcap, char *port, size_t pcap)
{
    const char *colon = strrchr(spec, ':'), *h = spec;
    size_t hlen = colon ? (size_t)(colon - spec) : 0;
    if (!colon)
        return -EINVAL;
    if (spec[0] == '[') {
        if (hlen < 2 || colon[-1] != ']')
            return -EINVAL;
        h = spec + 1;
        hlen -= 2;
    }
    const char *p = colon + 1;
    if (hlen >= hcap || !*p || strlen(p) >= pcap || strspn(p, "0123456789") != strlen(p) || atol(p) > 65535)
        return -EINVAL;
    snprintf(host, hcap, "%.*s", (int)hlen, h);
    snprintf(port, pcap, "%s", p);
    return 0;
}

static void bound_address(int fd, char *out, size_t cap)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    char host[NI_MAXHOST] = "?", port[NI_MAXSERV] = "?";
    ss.ss_family = AF_INET;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) == 0)
        getnameinfo((struct sockaddr *)&ss, len, host, sizeof host, port, sizeof port,
                    NI_NUMERICHOST | NI_NUMERICSERV);
    snprintf(out, cap, ss.ss_family == AF_INET6 ? "[%s]:%s" : "%s:%s", host, port);
}

int tcplisten_open(const char *spec, const char *flag, const char *example, int backlog, char *bound, size_t bcap)
{
    char host[256], port[8];
    if (tcplisten_split(spec, host, sizeof host, port, sizeof port) < 0) {
        log_write(LOG_ERROR, "\"bad %s: expected %s\" value=\"%s\"", flag, example, spec);
        return -EINVAL;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV}, *res = NULL;
    int gai = getaddrinfo(host[0] ? host : NULL, port, &hints, &res);
    if (gai != 0) {
        log_write(LOG_ERROR, "\"cannot resolve %s\" value=\"%s\" error=\"%s\"", flag, spec, gai_strerror(gai));
        return -EINVAL;
    }
    int fd = -1, err = EINVAL, one = 1;
    for (struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd >= 0 && (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
                        bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, backlog) < 0)) {
            err = errno;
            close(fd);
            fd = -1;
        } else if (fd < 0) {
            err = errno;
        }
    }
    freeaddrinfo(res);
    if (fd < 0) {
        log_write(LOG_ERROR, "\"cannot listen on %s\" value=\"%s\" error=\"%s\"", flag, spec, strerror(err));
        return -err;
    }
    bound_address(fd, bound, bcap);
    return fd;
}
