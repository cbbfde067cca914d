/* test_stats_http.c — the stats server on a socket handed over already listening (systemd socket activation):
 * it answers on that socket, leaves the file's mode alone, and does not remove the file when freed; and the
 * endpoints' status codes (200 /healthz, 404 naming the paths, 405 for POST) through a raw HTTP/1.0 exchange. */
#include "check.h"
#include "config.h"
#include "flush/flusher.h"
#include "ring.h"
#include "stats.h"
#include "stats_http.h"

#include <errno.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Sends one HTTP/1.0 request to path and runs the loop until the server closes; the answer goes into out. */
static void exchange(struct event_base *base, const char *path, const char *request, char *out, size_t cap)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    snprintf(sun.sun_path, sizeof sun.sun_path, "%s", path);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    CHECK(fd >= 0 && connect(fd, (struct sockaddr *)&sun, sizeof sun) == 0);
    CHECK(write(fd, request, strlen(request)) == (ssize_t)strlen(request));
    size_t len = 0;
    double deadline = now_s() + 10;
    while (now_s() < deadline) {
        event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        ssize_t n = recv(fd, out + len, cap - 1 - len, MSG_DONTWAIT);
        if (n == 0)
            break;
        if (n > 0)
            len += (size_t)n;
        else if (errno != EAGAIN)
            break;
        else
            usleep(1000);
    }
    out[len] = 0;
    close(fd);
}

int main(void)
{
    static config cfg;
    char *argv[] = {"logagentd", "--upstream", "127.0.0.1:1", NULL};
    CHECK(config_load(&cfg, 3, argv) == CONFIG_RUN);
    char dir[] = "/tmp/la-unit-statshttp-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char path[108];
    snprintf(path, sizeof path, "%s/activated.sock", dir);

    /* what systemd would hand over: bound, mode 0666, listening */
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    snprintf(sun.sun_path, sizeof sun.sun_path, "%s", path);
    CHECK(fd >= 0 && bind(fd, (struct sockaddr *)&sun, sizeof sun) == 0);
    CHECK(chmod(path, 0666) == 0 && listen(fd, 16) == 0);

    struct event_base *base = event_base_new();
    ring *r = ring_new(1 << 16);
    flusher *f = flusher_new(&cfg, r, NULL, NULL);
    static ingest_stats st;
    CHECK(base && r && f);
    stats_sources src = {&cfg, &st, r, f, now_s()};
    stats_http *h = stats_http_new(base, "/nonexistent/ignored.sock", fd, &src);
    CHECK(h != NULL);

    static char out[65536];
    exchange(base, path, "GET /healthz HTTP/1.0\r\n\r\n", out, sizeof out);
    CHECK(strncmp(out, "HTTP/1.0 200", 12) == 0 || strncmp(out, "HTTP/1.1 200", 12) == 0);
    CHECK(strstr(out, "\r\n\r\nok\n") != NULL);
    exchange(base, path, "GET /stats HTTP/1.0\r\n\r\n", out, sizeof out);
    CHECK(strstr(out, "\"received\":0") != NULL);
    exchange(base, path, "GET /metrics HTTP/1.0\r\n\r\n", out, sizeof out);
    CHECK(strstr(out, "Content-Type: text/plain; version=0.0.4; charset=utf-8") != NULL);
    CHECK(strstr(out, "\nlogagent_records_received_total 0\n") != NULL);
    exchange(base, path, "GET /nope HTTP/1.0\r\n\r\n", out, sizeof out);
    CHECK(strstr(out, " 404 ") != NULL && strstr(out, "/stats/clients") != NULL);
    exchange(base, path, "POST /stats HTTP/1.0\r\nContent-Length: 0\r\n\r\n", out, sizeof out);
    CHECK(strstr(out, " 405 ") != NULL && strstr(out, "Allow: GET, HEAD") != NULL);

    struct stat sb;
    CHECK(stat(path, &sb) == 0 && (sb.st_mode & 0777) == 0666); /* systemd's mode, untouched */
    stats_http_free(h);
    CHECK(stat(path, &sb) == 0); /* and its file is left in place */
    unlink(path);
    rmdir(dir);
    flusher_free(f);
    ring_free(r);
    event_base_free(base);
    return check_done("stats_http");
}
