"""test_stats.py — the stats endpoints as an operator and a Prometheus server meet them: known good and bad traffic
gives exactly those numbers in /stats and /metrics (which parses, with HELP/TYPE for every family, counters ending
in _total, cumulative histogram buckets whose +Inf equals _count); /healthz turns 503 with the reason when the log
service is down and back to 200 when it returns, 503 when the spool is nearly full, and "ring stuck" when the ring
stands still behind a failing service; /stats/clients attributes records to three concurrent client processes and
a bad client's refusals to it; --metrics-listen serves over TCP (and a bind failure stops start-up); the stats
socket's mode and group (by number and by name) are applied and an unknown group stops start-up; the read-only
HTTP surface (404 naming the paths, 405, HEAD, bad ?top); and reading every endpoint in a tight loop during a
flood loses nothing."""
import grp
import http.client
import json
import os
import re
import socket
import stat
import subprocess
import threading
import time

import msgpack
from prometheus_client.parser import text_string_to_metric_families

from harness import (BIN, SAN, Agent, Sink, TempDir, UnixHTTPConnection, accounting_holds, dead_target, http_get, run, scaled,
                     send_records, spawn, wait_for)

SEND = os.path.join(BIN, "logagent-send")
D = os.path.join(BIN, "logagentd")
METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def get(path, url, method="GET"):
    """(status, headers dict with lower-case names, body) over the Unix socket."""
    c = UnixHTTPConnection(path)
    try:
        c.request(method, url)
        r = c.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read().decode()
    finally:
        c.close()


def check_exposition(text):
    """Checks the Prometheus text format rules we promise and returns {(sample name, sorted labels): value}."""
    helps = set(re.findall(r"^# HELP (\S+) \S", text, re.M))
    types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))
    assert helps == set(types), (helps ^ set(types))
    for line in text.splitlines():
        if line.startswith("#") or not line:
            continue
        name = re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line).group(0)
        assert name.startswith("logagent_") or name.startswith("process_"), line
        fam = name
        for suffix in ("_bucket", "_sum", "_count"):
            if name.endswith(suffix) and types.get(name[:-len(suffix)]) == "histogram":
                fam = name[:-len(suffix)]
        assert fam in types, "sample without HELP/TYPE: %s" % line
    for name, typ in types.items():
        assert typ != "counter" or name.endswith("_total"), "counter %s does not end in _total" % name
    values = {}
    for fam in text_string_to_metric_families(text):
        assert fam.documentation, fam.name
        if fam.type == "counter":
            assert all(s.name.endswith("_total") for s in fam.samples), fam
        if fam.type == "histogram":  # each series (its labels but le: one per address for the instances')
            series = {tuple(sorted((k, v) for k, v in s.labels.items() if k != "le")) for s in fam.samples}
            for key in series:
                mine = [s for s in fam.samples if tuple(sorted((k, v) for k, v in s.labels.items() if k != "le")) == key]
                buckets = [s for s in mine if s.name.endswith("_bucket")]
                les = [float(s.labels["le"]) for s in buckets]
                counts = [s.value for s in buckets]
                assert les == sorted(les) and les[-1] == float("inf"), (fam.name, key, les)
                assert counts == sorted(counts), "buckets not cumulative: %s %s %s" % (fam.name, key, counts)
                count = [s.value for s in mine if s.name == fam.name + "_count"]
                assert count == [counts[-1]], (fam.name, key, count, counts)
        for s in fam.samples:
            values[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return values


def metric(values, name, **labels):
    return values[(name, tuple(sorted(labels.items())))]


DOCS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "docs", "metrics.md")


def documented_metrics():
    """docs/metrics.md's tables: {family name: (type, the row's text)}."""
    rows = {}
    with open(DOCS, encoding="utf-8") as f:
        for line in f:
            m = re.match(r"^\| `((?:logagent|process)_[a-z0-9_]+)`(?:\{[^}]*\})? \| (counter|gauge|histogram) \|", line)
            if m:
                rows[m.group(1)] = (m.group(2), line)
    return rows


def check_against_docs(text):
    """Every family served is documented with its type, every documented family is served, and every label value
    served (but the free-form target/version/le/address) is named in its family's row."""
    docs = documented_metrics()
    types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))
    assert set(types) == set(docs), ("served, not documented", sorted(set(types) - set(docs)),
                                     "documented, not served", sorted(set(docs) - set(types)))
    wrong = {n: (t, docs[n][0]) for n, t in types.items() if docs[n][0] != t}
    assert not wrong, wrong
    missing = set()
    for line in text.splitlines():
        m = re.match(r"^([a-z0-9_]+)\{(.*)\} ", line)
        if not m:
            continue
        fam = re.sub(r"_(bucket|sum|count)$", "", m.group(1)) if m.group(1) not in types else m.group(1)
        for k, v in re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2)):
            if k not in ("target", "version", "le", "address") and "`%s`" % v not in docs[fam][1]:
                missing.add((fam, k, v))
    assert not missing, sorted(missing)


def metrics_agree(st, m):
    """Every /stats number that /metrics exposes is the same."""
    r = st["records"]
    pairs = [("logagent_records_received_total", {}, r["received"]), ("logagent_records_flushed_total", {}, r["flushed"]),
             ("logagent_records_dead_letter_total", {}, r["dead_letter"]),
             ("logagent_records_replayed_total", {}, r["replayed"]),
             ("logagent_records_level_unknown_total", {}, r["level_unknown"]),
             ("logagent_records_timestamp_unparsed_total", {}, r["timestamp_unparsed"]),
             ("logagent_received_bytes_total", {}, st["bytes_received"]),
             ("logagent_connections_total", {}, st["connections"]["total"]),
             ("logagent_connections_active", {}, st["connections"]["active"]),
             ("logagent_batches_sent_total", {}, st["batches"]["sent"]),
             ("logagent_batches_failed_total", {}, st["batches"]["failed"]),
             ("logagent_batches_retried_total", {}, st["batches"]["retried"]),
             ("logagent_unary_calls_total", {}, st["batches"]["unary_calls"]),
             ("logagent_backpressure_pauses_total", {}, st["backpressure_pauses"]),
             ("logagent_ring_capacity_bytes", {}, st["ring"]["capacity_bytes"]),
             ("logagent_spool_bytes", {}, st["spool"]["bytes"]),
             ("logagent_clients_tracked", {}, st["clients"]["tracked"])]
    pairs += [("logagent_records_rejected_total", {"reason": k}, v) for k, v in r["rejected"].items()
              if k != "reserved_key"]
    pairs += [("logagent_reserved_keys_removed_total", {}, r["rejected"]["reserved_key"])]
    pairs += [("logagent_records_dropped_total", {"reason": k}, v) for k, v in r["dropped"].items()]
    pairs += [("logagent_records_held", {"stage": k}, r[k if k != "ring" else "in_ring"])
              for k in ("ring", "batching", "in_flight", "retry_wait", "spooled")]
    wrong = [(n, l, metric(m, n, **l), v) for n, l, v in pairs if metric(m, n, **l) != v]
    assert not wrong, wrong
    up = metric(m, "logagent_upstream_up", mode=st["upstream"]["mode"], target=st["upstream"]["target"])
    assert up == (1 if st["upstream"]["state"] == "ok" else 0), (up, st["upstream"])


def settled(a, pred, what, timeout=30):
    return wait_for(lambda: (lambda s: s if pred(s) else None)(a.stats()), timeout, what)


def test_known_traffic_stats_and_metrics_say_exactly_that():
    tmp = TempDir("known")
    sink = Sink(tmp).start()
    a = Agent(tmp, sink.target, "--flush-interval-ms", "20").start()
    n = 1000
    good = [msgpack.packb({"message": "good %d" % i, "service_name": "good"}) for i in range(n)]
    good.append(msgpack.packb({"message": "spoofer", "service_name": "good", "_pid": 1, "_comm": "init"}))
    one = lambda tag: msgpack.packb({"message": tag, "service_name": "good"})  # noqa: E731
    invalid = [msgpack.packb([1, 2, 3]), msgpack.packb({"level": "INFO"}), msgpack.packb({"message": 42})]
    conns = [good, invalid + [one("after invalid")], [one("before garbage"), b"\xc1garbage"],
             [one("before huge"), b"\xdf\xff\xff\xff\xff"], [one("before cut"), one("cut short")[:-4]]]
    for c in conns:
        send_records(a.socket, c)
    total = n + 5
    want = {"malformed": 1, "invalid_record": 3, "oversized": 1, "truncated": 1, "reserved_key": 2}
    st = settled(a, lambda s: s["records"]["flushed"] == total and s["records"]["rejected"] == want and
                 s["connections"]["active"] == 0, "all %d flushed and every refusal counted" % total)
    sink.wait_count(total)
    r = st["records"]
    assert r["received"] == total and sum(r["dropped"].values()) == 0 and accounting_holds(st), r
    assert st["bytes_received"] == sum(len(b) for c in conns for b in c), st["bytes_received"]
    status, headers, text = get(a.stats_socket, "/metrics")
    assert status == 200 and headers["content-type"] == METRICS_TYPE, (status, headers)
    m = check_exposition(text)
    check_against_docs(text)
    metrics_agree(a.stats(), m)
    assert metric(m, "logagent_reserved_keys_removed_total") == 2  # keys, not records: one record, two _-keys
    assert metric(m, "process_start_time_seconds") == metric(m, "logagent_start_time_seconds")
    assert 0 < metric(m, "process_cpu_seconds_total") < 60 and metric(m, "process_open_fds") > 3
    assert metric(m, "process_resident_memory_bytes") > 1 << 20 and metric(m, "process_max_fds") >= 1024
    start = float(re.search(r"^logagent_start_time_seconds (\S+)$", text, re.M).group(1))
    assert abs(start - (time.time() - metric(m, "logagent_uptime_seconds"))) < 5 and start % 10 != 0, start
    assert metric(m, "logagent_records_rejected_total", reason="invalid_record") == 3
    calls = metric(m, "logagent_flush_duration_seconds_count")  # one observation per completed call
    assert calls == st["batches"]["sent"] + st["batches"]["failed"] and calls >= 1, (calls, st["batches"])
    assert metric(m, "logagent_batch_records_count") == calls == metric(m, "logagent_batch_bytes_count")
    if st["batches"]["failed"] == 0:  # (a first connection can fail under a sanitizer; the batch is then retried)
        assert metric(m, "logagent_batch_records_sum") == total
    assert metric(m, "logagent_build_info", version=re.search(r"version=(\S+)", a.logtext()).group(1)) == 1
    assert metric(m, "logagent_healthy") == 1 and metric(m, "logagent_upstream_up", mode="batch",
                                                         target=sink.target) == 1
    doc = a.stats()
    clients = json.loads(http_get(a.stats_socket, "/stats/clients")[1])["clients"]
    me = [c for c in clients if c["pid"] == os.getpid()]
    assert sum(c["records"] for c in me) == total and sum(c["rejected"] for c in me) == 8, me
    complete = sum(len(b) for c in conns for b in c if b[:1] not in (b"\xc1", b"\xdf") and b != one("cut short")[:-4])
    assert sum(c["bytes"] for c in me) == complete, (me, complete)
    assert doc["clients"]["tracked"] == len(clients), doc["clients"]
    assert a.stop() == 0
    # the last line names every drop and reject reason with /stats' and /metrics' words, and the same numbers
    last = [l for l in a.logtext().splitlines() if 'msg="stopped"' in l][-1]
    got = dict(re.findall(r" (\w+)=(\d+)", last))
    want_keys = {"received", "flushed", "unsent", "spooled", "replayed", "dead_letter", "level_unknown",
                 "timestamp_unparsed"}
    want_keys |= {"dropped_" + k for k in doc["records"]["dropped"]} | {"rejected_" + k for k in want}
    assert set(got) == want_keys, (sorted(got), sorted(want_keys))
    assert all(int(got["rejected_" + k]) == v for k, v in want.items()), last
    assert all(int(got[k]) == doc["records"][k] for k in ("level_unknown", "timestamp_unparsed")), (last, doc["records"])
    assert int(got["received"]) == int(got["flushed"]) == total and int(got["unsent"]) == 0, last


def test_healthz_follows_the_log_service():
    tmp = TempDir("health")
    sink = Sink(tmp).start()
    port = sink.port
    a = Agent(tmp, sink.target, "--health-failing-ms", "1000", "--retry-initial-ms", "20", "--retry-max-ms", "200",
              "--flush-interval-ms", "20").start()
    assert get(a.stats_socket, "/healthz")[0::2] == (200, "ok\n")
    send_records(a.socket, [{"message": "before %d" % i} for i in range(100)])
    a.wait_flushed(100)
    sink.stop()
    send_records(a.socket, [{"message": "during %d" % i} for i in range(100)])
    status, _, body = wait_for(lambda: (lambda r: r if r[0] == 503 else None)(get(a.stats_socket, "/healthz")), 30,
                               "/healthz 503")
    lines = body.splitlines()
    assert len(lines) == 1 and re.match(r"unhealthy: upstream failing for \d+s \(last error: UNAVAILABLE", lines[0]), body
    m = check_exposition(get(a.stats_socket, "/metrics")[2])
    assert metric(m, "logagent_healthy") == 0 and metric(m, "logagent_unhealthy", reason="upstream_failing") == 1
    assert metric(m, "logagent_unhealthy", reason="spool_full") == 0
    assert metric(m, "logagent_upstream_failing_seconds") > 1
    status, _, body = get(a.stats_socket, "/healthz?verbose")
    assert status == 503 and "upstream: failing for" in body and "spool: none" in body, body
    assert get(a.stats_socket, "/healthz", method="HEAD")[0::2] == (503, "")
    Sink(tmp, port=port).start()
    wait_for(lambda: get(a.stats_socket, "/healthz")[0::2] == (200, "ok\n"), 30, "/healthz back to 200")
    st = a.wait_flushed(200)
    assert st["upstream"]["state"] == "ok" and st["upstream"]["failing_seconds"] == 0, st["upstream"]
    assert a.stop() == 0


def test_healthz_spool_nearly_full():
    tmp = TempDir("spoolfull")
    target, port = dead_target(tmp)
    a = Agent(tmp, target, "--buffer", "disk", "--spool-dir", tmp.file("spool"), "--spool-max-bytes", "1MiB",
              "--health-spool-pct", "10", "--retry-initial-ms", "20", "--retry-max-ms", "200",
              "--flush-interval-ms", "20").start()
    n = 2000
    send_records(a.socket, [{"message": "s%d %s" % (i, "x" * 150)} for i in range(n)])
    st = settled(a, lambda s: s["records"]["spooled"] == n, "all %d spooled" % n)
    status, _, body = get(a.stats_socket, "/healthz")
    pct = st["spool"]["bytes"] * 100 // (1 << 20)
    assert st["spool"]["max_bytes"] == 1 << 20 and pct >= 10, st["spool"]
    assert status == 503 and re.fullmatch(r"unhealthy: spool %d%% full \(\d+ KiB of 1 MiB\)\n" % pct, body), body
    m = check_exposition(get(a.stats_socket, "/metrics")[2])
    assert metric(m, "logagent_unhealthy", reason="spool_full") == 1 and metric(m, "logagent_spool_enabled") == 1
    assert metric(m, "logagent_spool_max_bytes") == 1 << 20
    sink = Sink(tmp, port=port).start()
    wait_for(lambda: get(a.stats_socket, "/healthz")[0::2] == (200, "ok\n"), 60, "spool drained: /healthz 200")
    a.wait_flushed(n)
    sink.wait_count(n)
    assert a.stop() == 0


def test_healthz_ring_stuck_behind_a_failing_upstream():
    tmp = TempDir("stuck")
    target, port = dead_target(tmp)
    a = Agent(tmp, target, "--buffer-bytes", "64KiB", "--max-record-bytes", "4KiB", "--health-failing-ms", "1000",
              "--retry-initial-ms", "20", "--retry-max-ms", "200", "--flush-interval-ms", "20").start()
    n = 2000  # ~400 KB: far more than the 32 KiB ring plus the 32 KiB batch budget
    writer = threading.Thread(target=send_records, args=(a.socket, [{"message": "k%d %s" % (i, "y" * 180)}
                                                                    for i in range(n)]))
    writer.start()  # blocks in sendall once the agent stops reading: that is the backpressure
    both = lambda r: r if r[0] == 503 and "ring stuck" in r[2] and "upstream failing" in r[2] else None  # noqa: E731
    _, _, body = wait_for(lambda: both(get(a.stats_socket, "/healthz")), 30, "/healthz 503: upstream and ring")
    lines = body.splitlines()
    assert len(lines) == 2 and lines[0].startswith("unhealthy: upstream failing for "), body
    assert re.fullmatch(r"unhealthy: ring stuck: \d+ records, none taken for \d+s \(batches wait on the failing "
                        r"upstream\)", lines[1]), body
    st = a.stats()
    assert st["records"]["in_ring"] > 0 and st["backpressure_active"] is True, st
    m = check_exposition(get(a.stats_socket, "/metrics")[2])
    assert metric(m, "logagent_unhealthy", reason="ring_stuck") == 1 and metric(m, "logagent_backpressure_active") == 1
    sink = Sink(tmp, port=port).start()
    writer.join(timeout=scaled(60))
    assert not writer.is_alive(), "the agent never resumed reading"
    a.wait_flushed(n, timeout=60)
    wait_for(lambda: get(a.stats_socket, "/healthz")[0::2] == (200, "ok\n"), 30, "/healthz back to 200")
    sink.wait_count(n)
    assert a.stop() == 0


def clients_of(a, query=""):
    status, body = http_get(a.stats_socket, "/stats/clients" + query)
    assert status == 200, (status, body)
    return json.loads(body)


BAD_CLIENT = r"""
import msgpack, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sys.argv[1])
ok = [msgpack.packb({"message": "bad client's good %d" % i, "service_name": "svc-bad"}) for i in range(2)]
bad = [msgpack.packb({"service_name": "svc-bad", "no": "message"}) for i in range(3)]
s.sendall(b"".join(ok + bad) + b"\xc1 not msgpack")
s.recv(1)  # the agent closes the connection
print(sum(len(b) for b in ok + bad))
"""


def test_clients_attributes_three_processes_and_a_bad_one():
    tmp = TempDir("clients")
    sink = Sink(tmp).start()
    a = Agent(tmp, sink.target, "--flush-interval-ms", "20").start()
    counts = {"svc-a": 3000, "svc-b": 2000, "svc-c": 1000}
    procs = {svc: spawn([SEND, "--socket", a.socket, "--service", svc], stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE) for svc in counts}
    bad = spawn(["/usr/bin/python3", "-c", BAD_CLIENT, a.socket], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    for svc, p in procs.items():  # the three write at once; they stay alive (the agent reads comm at accept)
        p.stdin.write(("\n".join("%s %d" % (svc, i) for i in range(counts[svc])) + "\n").encode())
        p.stdin.flush()
    bad_out, bad_err = bad.communicate(timeout=scaled(60))
    assert bad.returncode == 0, bad_err
    wait_for(lambda: {c["service_name"]: c["records"] for c in clients_of(a)["clients"]} == dict(counts, **{"svc-bad": 2}),
             30, "every client's records received")
    for p in procs.values():
        p.stdin.close()
        assert p.wait(timeout=scaled(60)) == 0, p.stderr.read()
    total = sum(counts.values()) + 2
    settled(a, lambda s: s["records"]["flushed"] == total and s["connections"]["active"] == 0, "all flushed")
    doc = clients_of(a)
    by_svc = {c["service_name"]: c for c in doc["clients"]}
    assert [c["service_name"] for c in doc["clients"]] == ["svc-a", "svc-b", "svc-c", "svc-bad"], doc
    for svc, n in counts.items():
        c = by_svc[svc]
        assert (c["pid"], c["comm"], c["records"], c["rejected"], c["dropped"]) == \
            (procs[svc].pid, "logagent-send", n, 0, 0), c
        assert c["connections"] == 1 and c["active"] is False and c["bytes"] > n * 10 and c["uid"] == os.getuid(), c
        assert 0 <= c["last_seen_seconds"] < scaled(60), c
    b = by_svc["svc-bad"]
    assert (b["pid"], b["comm"], b["records"], b["rejected"]) == (bad.pid, "python3", 2, 3 + 1), b
    assert b["bytes"] == int(bad_out), (b, bad_out)
    assert doc["tracked"] == 4 and doc["evicted"] == 0, doc
    st = a.stats()
    assert sum(c["records"] for c in doc["clients"]) == st["records"]["received"] == total
    assert sum(c["rejected"] for c in doc["clients"]) == sum(st["records"]["rejected"].values()) == 4
    top = clients_of(a, "?top=2")
    assert [c["service_name"] for c in top["clients"]] == ["svc-a", "svc-b"] and top["tracked"] == 4, top
    assert a.stop() == 0


def test_clients_rejected_sums_match_stats():
    tmp = TempDir("clientsum")
    sink = Sink(tmp).start()
    a = Agent(tmp, sink.target).start()
    # reserved keys on a record refused as invalid are not counted (as /stats), on a kept record they are
    send_records(a.socket, [{"_a": 1, "_b": 2, "service_name": "svc-r"}, {"message": "kept", "_c": 3,
                                                                          "service_name": "svc-r"}])
    sink.wait_count(1)
    st = a.stats()
    rejected = sum(st["records"]["rejected"].values())
    assert rejected == 2 and st["records"]["rejected"]["reserved_key"] == 1, st["records"]["rejected"]
    cl = clients_of(a)["clients"]
    assert sum(c["rejected"] for c in cl) == rejected, cl
    assert sum(c["records"] for c in cl) == st["records"]["received"] == 1, cl
    assert a.stop() == 0


def agent_fails(tmp, *args):
    """Runs an agent that must fail at start-up: returns (exit code, log text); no socket is left behind."""
    sock, stats_sock = tmp.file("fail.sock"), tmp.file("fail-stats.sock")
    p = subprocess.run([D, "--socket", sock, "--stats-socket", stats_sock, "--upstream", "127.0.0.1:1"] + list(args),
                       capture_output=True, text=True, timeout=scaled(30))
    assert not os.path.exists(sock) and not os.path.exists(stats_sock), os.listdir(tmp.path)
    return p.returncode, p.stderr


def test_metrics_listen_serves_tcp():
    tmp = TempDir("tcp")
    sink = Sink(tmp).start()
    a = Agent(tmp, sink.target, "--metrics-listen", "127.0.0.1:0", "--flush-interval-ms", "20").start()
    addr = re.search(r'msg="metrics listening" address=(127\.0\.0\.1:(\d+))', a.logtext())
    assert addr, a.logtext()
    send_records(a.socket, [{"message": "tcp %d" % i} for i in range(50)])
    a.wait_flushed(50)
    c = http.client.HTTPConnection("127.0.0.1", int(addr.group(2)), timeout=10)
    c.request("GET", "/metrics")
    r = c.getresponse()
    text = r.read().decode()
    assert r.status == 200 and r.getheader("Content-Type") == METRICS_TYPE, r.status
    m = check_exposition(text)
    assert metric(m, "logagent_records_flushed_total") == 50
    c.request("GET", "/healthz")
    r = c.getresponse()
    assert (r.status, r.read()) == (200, b"ok\n")
    c.request("GET", "/stats")
    r = c.getresponse()
    assert r.status == 200 and b'"flushed":50' in r.read()
    c.request("GET", "/stats/clients")
    r = c.getresponse()
    assert r.status == 403 and b"stats socket only" in r.read(), r.status
    c.close()
    rc, err = agent_fails(tmp, "--metrics-listen", addr.group(1))
    assert rc == 1 and "cannot listen on --metrics-listen" in err and "Address already in use" in err, (rc, err)
    rc, err = agent_fails(tmp, "--metrics-listen", "localhost")
    assert rc == 1 and "bad --metrics-listen" in err, (rc, err)
    assert a.stop() == 0


def test_stats_socket_mode_and_group():
    tmp = TempDir("perm")
    sink = Sink(tmp).start()
    a = Agent(tmp, sink.target).start()
    s = os.stat(a.stats_socket)
    assert stat.S_ISSOCK(s.st_mode) and stat.S_IMODE(s.st_mode) == 0o600 and s.st_gid == os.getegid(), oct(s.st_mode)
    assert a.stop() == 0
    b = Agent(tmp, sink.target, "--stats-socket-mode", "0640", "--stats-socket-group", str(os.getgid()), name="b").start()
    s = os.stat(b.stats_socket)
    assert stat.S_IMODE(s.st_mode) == 0o640 and s.st_gid == os.getgid(), (oct(s.st_mode), s.st_gid)
    assert b.stop() == 0
    name = next(g for g in ("adm", "daemon", "nogroup") if g in {x.gr_name for x in grp.getgrall()})
    c = Agent(tmp, sink.target, "--stats-socket-mode", "660", "--stats-socket-group", name, name="c").start()
    s = os.stat(c.stats_socket)
    assert stat.S_IMODE(s.st_mode) == 0o660 and s.st_gid == grp.getgrnam(name).gr_gid, (oct(s.st_mode), s.st_gid)
    assert "mode=0660 group=%s" % name in c.logtext()
    assert c.stop() == 0
    rc, err = agent_fails(tmp, "--stats-socket-group", "no-such-group-here")
    assert rc == 2 and "stats-socket-group 'no-such-group-here' (from --stats-socket-group): no such group" in err, \
        (rc, err)


def test_read_only_http_surface():
    tmp = TempDir("surface")
    sink = Sink(tmp).start()
    a = Agent(tmp, sink.target).start()
    status, _, body = get(a.stats_socket, "/nothing-here")
    assert status == 404 and all(p in body for p in ("/stats", "/stats/clients", "/metrics", "/healthz")), body
    status, headers, _ = get(a.stats_socket, "/metrics", method="POST")
    assert status == 405 and headers["allow"] == "GET, HEAD", (status, headers)
    status, headers, body = get(a.stats_socket, "/metrics", method="HEAD")
    assert status == 200 and body == "" and headers["content-type"] == METRICS_TYPE, (status, headers)
    for q in ("?top=0", "?top=1001", "?top=many", "?top="):
        status, _, body = get(a.stats_socket, "/stats/clients" + q)
        assert status == 400 and "top must be a number from 1 to 1000" in body, (q, status, body)
    assert clients_of(a) == {"clients": [], "tracked": 0, "evicted": 0}
    assert a.stop() == 0


def test_reading_stats_in_a_tight_loop_loses_nothing():
    n = 100000 if not SAN else 20000
    tmp = TempDir("tight")
    sink = Sink(tmp, "--quiet").start()
    a = Agent(tmp, sink.target).start()
    done = threading.Event()
    seen = {"stats": 0, "metrics": 0, "bad": []}

    def sample(url):
        status, _, body = get(a.stats_socket, url)
        if status != 200:
            seen["bad"].append((url, status, body))
        elif url == "/stats":
            st = json.loads(body)
            seen["stats"] += 1
            if not accounting_holds(st):
                seen["bad"].append(st["records"])
        elif url == "/metrics":
            m = check_exposition(body)
            seen["metrics"] += 1
            total = lambda name: sum(v for (k, _), v in m.items() if k == name)  # noqa: E731
            if total("logagent_records_received_total") + total("logagent_records_replayed_total") != \
                    total("logagent_records_flushed_total") + total("logagent_records_held") + \
                    total("logagent_records_dead_letter_total") + total("logagent_records_dropped_total"):
                seen["bad"].append(("metrics identity", body))

    def reader():
        urls = ["/stats", "/metrics", "/stats/clients", "/healthz"]
        i = 0
        try:
            while not done.is_set():
                sample(urls[i % len(urls)])
                i += 1
        except Exception as e:  # reported by the main thread
            seen["bad"].append(repr(e))

    t = threading.Thread(target=reader)
    t.start()
    bench = spawn([os.path.join(BIN, "logagent-bench"), "--socket", a.socket, "--count", str(n), "--workers", "4"],
                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = bench.communicate(timeout=scaled(300))
    assert bench.returncode == 0, err
    st = a.wait_flushed(n, timeout=120)
    done.set()
    t.join()
    assert not seen["bad"], seen["bad"][:2]
    assert seen["stats"] >= 3 and seen["metrics"] >= 3, seen
    r = st["records"]
    assert r["received"] == n and r["flushed"] == n and sum(r["dropped"].values()) == 0, r
    summary = sink.stop()
    assert summary["entries"] == n and summary["unique_log_ids"] == n and summary["duplicates"] == 0, summary
    clients = clients_of(a)["clients"]
    assert sum(c["records"] for c in clients) == n and {c["service_name"] for c in clients} == \
        {"django-concurrent-test"}, clients
    assert a.stop() == 0


if __name__ == "__main__":
    run([test_known_traffic_stats_and_metrics_say_exactly_that, test_healthz_follows_the_log_service,
         test_healthz_spool_nearly_full, test_healthz_ring_stuck_behind_a_failing_upstream, test_clients_attributes_three_processes_and_a_bad_one,
         test_metrics_listen_serves_tcp, test_stats_socket_mode_and_group, test_read_only_http_surface,
         test_reading_stats_in_a_tight_loop_loses_nothing, test_clients_rejected_sums_match_stats])
