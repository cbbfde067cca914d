/* doorbell.c — eventfd wake-ups (see doorbell.h). Sequentially consistent arm/ring so a ring between the
 * sleeper's re-check and its poll() is never lost: either the ringer sees `armed` and writes, or the sleeper's
 * re-check sees the ringer's work. */
#include "doorbell.h"

#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <unistd.h>

int doorbell_init(doorbell *d)
{
    d->fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    atomic_init(&d->armed, 0);
    return d->fd < 0 ? -errno : 0;
}

void doorbell_close(doorbell *d)
{
    if (d->fd >= 0)
        close(d->fd);
    d->fd = -1;
}

void doorbell_ring(doorbell *d)
{
    atomic_thread_fence(memory_order_seq_cst); /* the ringer's work (e.g. a ring commit) before reading `armed` */
    if (atomic_load(&d->armed) && atomic_exchange(&d->armed, 0)) {
        uint64_t one = 1;
        ssize_t w = write(d->fd, &one, sizeof one);
        (void)w; /* EAGAIN only when the counter is already non-zero: the sleeper will wake anyway */
    }
}

void doorbell_arm(doorbell *d)
{
    atomic_store(&d->armed, 1);
    atomic_thread_fence(memory_order_seq_cst); /* armed before the sleeper re-checks its condition */
}

void doorbell_wait(doorbell *d, int timeout_ms)
{
    struct pollfd p = {.fd = d->fd, .events = POLLIN};
    if (poll(&p, 1, timeout_ms) > 0) {
        uint64_t v;
        ssize_t r = read(d->fd, &v, sizeof v);
        (void)r; /* drained or already empty: both fine */
    }
    atomic_store(&d->armed, 0);
}
