/* test_dnswatch.c — which gRPC targets --upstream-dns-refresh-ms looks up, and under which name: dns: URIs with and
 * without an authority, plain host:port (gRPC's default scheme is dns), and none for static schemes and literals. */
#include "check.h"
#include "flush/dnswatch.h"

static void name_of(const char *target, const char *want)
{
    char host[256] = "";
    int got = dnswatch_host(target, host, sizeof host);
    if (!want) {
        CHECK(!got);
        if (got)
            fprintf(stderr, "  %s: looked up as %s\n", target, host);
        return;
    }
    CHECK(got);
    CHECK_STR(host, want);
}

int main(void)
{
    name_of("dns:///logs.ns.svc.cluster.local:4317", "logs.ns.svc.cluster.local");
    name_of("dns://10.0.0.10:53/collector:4317", "collector");
    name_of("dns:collector:4317", "collector");
    name_of("collector-headless:4317", "collector-headless");
    name_of("localhost:50051", "localhost");
    name_of("logs.example", "logs.example");
    name_of("ipv4:10.0.0.1:4317,10.0.0.2:4317", NULL);
    name_of("ipv6:[::1]:4317", NULL);
    name_of("unix:/run/logs.sock", NULL);
    name_of("unix-abstract:logs", NULL);
    name_of("127.0.0.1:4317", NULL);
    name_of("[::1]:4317", NULL);
    name_of("dns:///10.0.0.1:4317", NULL);
    name_of("dns://authority-only", NULL);
    name_of(":4317", NULL);
    name_of("", NULL);
    char tiny[4];
    CHECK(!dnswatch_host("collector:4317", tiny, sizeof tiny)); /* does not fit: not watched, not cut */
    return check_done("dnswatch");
}
