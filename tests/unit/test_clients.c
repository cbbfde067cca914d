/* test_clients.c — the per-client table: one entry per (pid, comm, service_name), a connection moving between
 * entries, the least recently seen idle entry evicted when full (never an attached one), service names cut at a
 * UTF-8 boundary, and the JSON: sorted by records, top N, escaped names (the escaper itself: test_jsonstr.c). */
#include "check.h"
#include "ingest/clients.h"

#include <stdlib.h>
#include <string.h>

static record_source src(int32_t pid, const char *comm)
{
    record_source s = {.pid = pid, .uid = 1000, .gid = 100};
    snprintf(s.comm, sizeof s.comm, "%s", comm);
    return s;
}

static char *json_of(clients *t, size_t top)
{
    struct evbuffer *b = evbuffer_new();
    CHECK(clients_json(t, top, 5000000000LL, b) == 0);
    size_t n = evbuffer_get_length(b);
    char *s = calloc(1, n + 1);
    evbuffer_remove(b, s, n);
    evbuffer_free(b);
    return s;
}

static void test_keys_and_moves(void)
{
    clients *t = clients_new(8);
    record_source a = src(10, "app"), b = src(11, "app");
    client_entry *e1 = clients_attach(t, NULL, &a, 1, "web", 3, 1);
    CHECK(e1 && e1->attached == 1 && e1->connections == 1);
    CHECK(clients_attach(t, NULL, &a, 2, "web", 3, 2) == e1); /* a second connection of the same pid and service */
    CHECK_INT(e1->attached, 2);
    CHECK_INT(e1->connections, 2);
    client_entry *e2 = clients_attach(t, e1, &a, 2, "worker", 6, 3); /* connection 2 switches service */
    CHECK(e2 && e2 != e1 && e1->attached == 1 && e2->attached == 1);
    CHECK(clients_attach(t, e2, &a, 2, "web", 3, 4) == e1); /* and back: the same connection counts once in a row */
    CHECK_INT(e1->connections, 2);
    CHECK(clients_attach(t, NULL, &b, 3, "web", 3, 5) != e1); /* another pid is another client */
    CHECK_INT(clients_tracked(t), 3);
    CHECK(clients_same_service(e1, "web", 3) && !clients_same_service(e1, "we", 2));
    clients_free(t);
}

static void test_eviction_spares_attached(void)
{
    clients *t = clients_new(3);
    record_source s = src(1, "x");
    client_entry *keep = clients_attach(t, NULL, &s, 1, "keep", 4, 1);
    client_entry *old = clients_attach(t, NULL, &s, 2, "old", 3, 2);
    client_entry *newer = clients_attach(t, NULL, &s, 3, "newer", 5, 3);
    old->records = 7;
    clients_detach(t, old, 10);   /* idle first: least recently seen */
    clients_detach(t, newer, 20);
    clients_attach(t, NULL, &s, 4, "d", 1, 30); /* full: evicts "old" */
    CHECK_INT(clients_evicted(t), 1);
    CHECK_INT(clients_tracked(t), 3);
    char *j = json_of(t, 10);
    CHECK(!strstr(j, "\"old\"") && strstr(j, "\"newer\"") && strstr(j, "\"keep\""));
    free(j);
    clients_attach(t, NULL, &s, 5, "e", 1, 40); /* evicts "newer", the only idle one */
    clients_attach(t, NULL, &s, 6, "f", 1, 50); /* nothing idle: grows past the cap instead */
    CHECK_INT(clients_evicted(t), 2);
    CHECK_INT(clients_tracked(t), 4);
    CHECK(keep->attached == 1);
    clients_free(t);
}

static void test_service_cut_at_utf8_boundary(void)
{
    char name[200];
    memset(name, 'a', sizeof name);
    memcpy(name + CLIENTS_SERVICE_MAX - 1, "\xC3\xA9", 2); /* é straddles the limit */
    CHECK_INT(clients_key_len(name, sizeof name), CLIENTS_SERVICE_MAX - 1);
    CHECK_INT(clients_key_len("short", 5), 5);
    clients *t = clients_new(4);
    record_source s = src(1, "x");
    client_entry *e = clients_attach(t, NULL, &s, 1, name, sizeof name, 1);
    CHECK(e && e->service_len == CLIENTS_SERVICE_MAX - 1);
    name[150] = 'b'; /* differs only past the cut: the same client */
    CHECK(clients_attach(t, e, &s, 1, name, sizeof name, 2) == e);
    clients_free(t);
}

static void test_json_sorted_top_escaped(void)
{
    clients *t = clients_new(8);
    record_source s = src(42, "we\"ird\\");
    client_entry *small = clients_attach(t, NULL, &s, 1, "small", 5, 1);
    client_entry *big = clients_attach(t, NULL, &s, 2, "big\n", 4, 1);
    small->records = 3;
    big->records = 300;
    big->bytes = 12345;
    char *j = json_of(t, 1);
    CHECK(strstr(j, "{\"clients\":[{\"pid\":42,\"uid\":1000,\"gid\":100,\"comm\":\"we\\\"ird\\\\\","
                    "\"service_name\":\"big\\u000a\",\"connections\":1,\"active\":true,\"records\":300,"
                    "\"bytes\":12345,\"rejected\":0,\"dropped\":0,\"last_seen_seconds\":5.000}],\"tracked\":2,"
                    "\"evicted\":0}\n") == j);
    free(j);
    clients_free(t);
}

int main(void)
{
    test_keys_and_moves();
    test_eviction_spares_attached();
    test_service_cut_at_utf8_boundary();
    test_json_sorted_top_escaped();
    return check_done("clients");
}
