/* doorbell.h — a coalesced wake-up from any thread to one sleeping thread (an eventfd).
 *
 * The sleeper arms the bell, re-checks its condition, then waits; a ringer writes the eventfd only when the
 * bell is armed (the 0->1 transition), so a busy pipeline costs one atomic exchange per ring, no syscall. */
#ifndef LOGAGENT_DOORBELL_H
#define LOGAGENT_DOORBELL_H

#include <stdatomic.h>

typedef struct doorbell {
    int fd;
    _Atomic int armed;
} doorbell;

int doorbell_init(doorbell *d); /* 0 or -errno */
void doorbell_close(doorbell *d);
void doorbell_ring(doorbell *d);
/* Sleeper side: arm, then re-check the condition; if there is still nothing to do, wait. */
void doorbell_arm(doorbell *d);
/* Waits until rung or timeout_ms passes (-1: forever); disarms. */
void doorbell_wait(doorbell *d, int timeout_ms);

#endif
