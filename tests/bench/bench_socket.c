/* bench_socket.c — logagent-bench's socket mode: a worker thread writing records through liblogagent to the
 * agent's ingest socket (the shared client, or its own with --per-worker-client, flushed when it is done). */
#include <string.h>

#include "bench.h"

void *bench_socket_worker(void *arg)
{
    bench_worker *w = arg;
    bench *b = w->b;
    logagent_client *c = b->shared;
    uint32_t rs = brec_seed(w->id);

    if (!c) {
        int rc = logagent_client_new(&b->opts, &c);
        if (rc < 0) {
            bench_note(b, 0, "worker %d: cannot create a client: %s", w->id, strerror(-rc));
            return NULL;
        }
    }

    brec br;
    logagent_field f[6];
    logagent_record r = { .service_name = BREC_SERVICE, .trace_id = br.trace_id, .span_id = br.span_id,
                          .message = br.message, .fields = f, .n_fields = 6 };
    long i;
    while (bench_claim(b, 1, &i) == 1) {
        brec_make(&br, i, &rs);
        r.level = br.level;
        f[0] = (logagent_field){ .key = "adv_id", .type = LOGAGENT_INT, .v.i = br.adv_id };
        f[1] = (logagent_field){ .key = "aweme_id", .type = LOGAGENT_INT, .v.i = br.aweme_id };
        f[2] = (logagent_field){ .key = "plan_id", .type = LOGAGENT_INT, .v.i = br.plan_id };
        f[3] = (logagent_field){ .key = "monitor_type", .type = LOGAGENT_STR, .v.s = br.monitor_type };
        f[4] = (logagent_field){ .key = "co_id", .type = LOGAGENT_INT, .v.i = br.co_id };
        f[5] = (logagent_field){ .key = "timestamp", .type = LOGAGENT_STR, .v.s = br.timestamp };

        logagent_result res = logagent_write(c, &r);
        if (res.success)
            atomic_fetch_add_explicit(&b->ok, 1, memory_order_relaxed);
        else
            bench_note(b, 1, "%s", res.error_message);
    }

    if (!b->shared) {
        int rc = logagent_flush(c, b->flush_timeout_ms);
        if (rc < 0)
            bench_note(b, 0, "worker %d: flush: %s", w->id, strerror(-rc));
        logagent_client_free(c, 0);
    }
    return NULL;
}
