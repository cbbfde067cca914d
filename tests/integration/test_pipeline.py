"""test_pipeline.py — the spine end to end with real processes: many concurrent clients delivered exactly once
and in order per client, field mapping as the sink sees it, batch limits, the agent restarted under a live client
(library reconnect), `auto` falling back to unary against a sink without BatchWriteLogs, SIGTERM draining,
backpressure with a tiny ring, and the stats accounting identity sampled while records flow."""
import os
import signal
import subprocess
import threading
import time

from harness import (BIN, SAN, Agent, Sink, TempDir, accounting_holds, run, scaled, send_records, spawn,
                     wait_for)

SEND = os.path.join(BIN, "logagent-send")
CLIENTS = 8
PER_CLIENT = int(os.environ.get("LOGAGENT_TEST_PER_CLIENT", "50000" if not SAN else "20000"))


def sender(sock, *args, stdin=subprocess.PIPE):
    return spawn([SEND, "--socket", sock] + list(args), stdin=stdin, stdout=subprocess.PIPE,
                 stderr=subprocess.PIPE)


def feed_lines(proc, lines):
    out, err = proc.communicate(("\n".join(lines) + "\n").encode(), timeout=scaled(300))
    assert proc.returncode == 0, (proc.returncode, err.decode())


def test_many_clients_exactly_once_in_order():
    tmp = TempDir("many")
    sink = Sink(tmp).start()
    a = Agent(tmp, sink.target, "--max-inflight", "1").start()
    procs = [sender(a.socket, "--service", "client-%d" % c, "--level", "warning", "--meta", "client=%d" % c)
             for c in range(CLIENTS)]
    threads = [threading.Thread(target=feed_lines, args=(p, ["c%d seq %07d" % (c, i) for i in range(PER_CLIENT)]))
               for c, p in enumerate(procs)]
    for t in threads:
        t.start()
    samples = []
    while any(t.is_alive() for t in threads):
        samples.append(a.stats())
        time.sleep(0.05)
    for t in threads:
        t.join()
    total = CLIENTS * PER_CLIENT
    sink.wait_count(total, timeout=120)
    st = a.wait_flushed(total)
    summary = sink.stop()
    assert summary["entries"] == total and summary["unique_log_ids"] == total and summary["duplicates"] == 0, summary
    assert all(accounting_holds(s) for s in samples), [s["records"] for s in samples if not accounting_holds(s)][:1]
    assert st["records"]["received"] == total and st["records"]["flushed"] == total, st["records"]
    pids = {p.pid for p in procs}
    last = {}
    for e in sink.entries():
        c, _, seq = e["message"].split(" ")
        seq = int(seq)
        assert seq == last.get(c, -1) + 1, "client %s: seq %d after %d" % (c, seq, last.get(c, -1))
        last[c] = seq
        assert e["service_name"] == "client-%s" % c[1:] and e["level"] == "WARN", e
        assert e["metadata"] == {"client": c[1:]}, e
        assert e["source"]["pid"] in pids and e["source"]["comm"] == "logagent-send", e
        assert len(e["log_id"]) == 32 and e["timestamp_unix_nano"] > 1.7e18, e
    assert len(last) == CLIENTS and all(v == PER_CLIENT - 1 for v in last.values()), last
    assert a.stop() == 0


def test_fields_as_the_sink_sees_them():
    tmp = TempDir("fields")
    sink = Sink(tmp).start()
    a = Agent(tmp, sink.target, "--flush-interval-ms", "10").start()
    send_records(a.socket, [{
        "message": "Concurrent test log entry 1", "service_name": "django-concurrent-test", "level": "critical",
        "trace_id": "concurrent-trace-000001", "span_id": "concurrent-span-000001",
        "log_id": "00112233445566778899aabbccddeeff", "timestamp": "2024-08-30T10:30:45.123456+00:00",
        "adv_id": 1234567, "ratio": 0.85, "ok": True, "none": None, "custom_metrics": {"cpu_usage": 0.85},
        "tags": ["a", 1]}])
    sink.wait_count(1)
    e = sink.entries()[0]
    assert e["log_id"] == "00112233445566778899aabbccddeeff" and e["level"] == "FATAL", e
    assert e["service_name"] == "django-concurrent-test" and e["trace_id"] == "concurrent-trace-000001", e
    assert e["span_id"] == "concurrent-span-000001" and e["timestamp_unix_nano"] == 1725013845123456000, e
    assert e["metadata"] == {"adv_id": "1234567", "ratio": "0.85", "ok": "true", "none": "",
                             "custom_metrics": '{"cpu_usage":0.85}', "tags": '["a",1]'}, e
    assert e["source"]["pid"] == os.getpid() and e["source"]["hostname"] == os.uname().nodename, e
    assert a.stop() == 0


def test_batch_limits():
    tmp = TempDir("limits")
    sink = Sink(tmp).start()
    a = Agent(tmp, sink.target, "--batch-max-records", "10", "--flush-interval-ms", "1000").start()
    send_records(a.socket, [{"message": "r%d" % i} for i in range(1000)])
    sink.wait_count(1000)
    summary = sink.stop()
    assert summary["batches"] >= 100 and summary["entries"] == 1000, summary
    sink2 = Sink(tmp, name="sink2").start()
    b = Agent(tmp, sink2.target, "--batch-max-bytes", "2KiB", "--flush-interval-ms", "1000", name="b").start()
    send_records(b.socket, [{"message": "%04d" % i + "x" * 180} for i in range(200)])
    sink2.wait_count(200)
    summary = sink2.stop()
    assert summary["batches"] >= 200 * 200 // 2048, summary  # ~10 records of ~200 B fit in 2 KiB
    assert a.stop() == 0 and b.stop() == 0


def test_agent_restart_library_reconnects():
    tmp = TempDir("restart")
    sink = Sink(tmp).start()
    a = Agent(tmp, sink.target, "--flush-interval-ms", "10").start()
    p = sender(a.socket, "--service", "restarter")
    for i in range(1000):
        p.stdin.write(b"before %d\n" % i)
    p.stdin.flush()
    sink.wait_count(1000)
    assert a.stop() == 0
    a2 = Agent(tmp, sink.target, "--flush-interval-ms", "10")
    a2.socket, a2.stats_socket = a.socket, a.stats_socket
    a2.start()
    for i in range(1000):
        p.stdin.write(b"after %d\n" % i)
    p.stdin.close()
    assert p.wait(timeout=scaled(60)) == 0, p.stderr.read()
    msgs = set(e["message"] for e in sink.wait_count(2000) and sink.entries())
    assert all("after %d" % i in msgs for i in range(1000)), len(msgs)
    assert all("before %d" % i in msgs for i in range(1000))
    assert a2.stop() == 0


def test_auto_switches_to_unary_against_no_batch_sink():
    tmp = TempDir("unary")
    sink = Sink(tmp, "--no-batch").start()
    a = Agent(tmp, sink.target, "--flush-interval-ms", "10").start()
    send_records(a.socket, [{"message": "u%d" % i} for i in range(3000)])
    sink.wait_count(3000)
    st = a.wait_flushed(3000)
    assert st["upstream"]["mode"] == "unary", st["upstream"]
    summary = sink.stop()
    assert summary["unary_calls"] == 3000 and summary["batches"] == 0 and summary["unique_log_ids"] == 3000, summary
    assert a.logtext().count("switching to unary") == 1, a.logtext()
    assert a.stop() == 0


def test_sigterm_drains_everything():
    tmp = TempDir("drain")
    sink = Sink(tmp, "--delay-ms", "50").start()
    a = Agent(tmp, sink.target, "--flush-interval-ms", "1000", "--max-inflight", "1").start()
    n = 20000
    send_records(a.socket, [{"message": "d%d" % i} for i in range(n)])
    wait_for(lambda: a.stats()["records"]["received"] == n, 30, "all received")
    assert a.stop() == 0
    assert sink.count() == n
    last = [l for l in a.logtext().splitlines() if "stopped" in l][-1]
    assert "flushed=%d" % n in last and "unsent=0" in last, last


def test_sigterm_with_upstream_down_reports_unsent_within_deadline():
    tmp = TempDir("down")
    sink = Sink(tmp).start()
    port = sink.target
    sink.stop()
    a = Agent(tmp, port, "--drain-timeout-ms", "500", "--retry-initial-ms", "50").start()
    send_records(a.socket, [{"message": "lost %d" % i} for i in range(500)])
    wait_for(lambda: a.stats()["batches"]["failed"] > 0, 30, "a failed call")
    st = a.stats()
    assert accounting_holds(st) and st["upstream"]["state"] == "failing", st
    t0 = time.monotonic()
    assert a.stop() == 0
    assert time.monotonic() - t0 < scaled(5)
    last = [l for l in a.logtext().splitlines() if "stopped" in l][-1]
    assert "received=500" in last and "flushed=0" in last and "unsent=500" in last, last


def test_backpressure_tiny_ring_loses_nothing():
    tmp = TempDir("bp")
    sink = Sink(tmp, "--delay-ms", "20").start()
    a = Agent(tmp, sink.target, "--buffer-bytes", "64KiB", "--max-record-bytes", "4KiB",
              "--batch-max-records", "100", "--max-inflight", "1").start()
    n = 20000
    p = sender(a.socket, "--service", "bp")
    feed_lines(p, ["bp %d %s" % (i, "y" * 100) for i in range(n)])
    sink.wait_count(n, timeout=120)
    st = a.wait_flushed(n)
    assert st["backpressure_seconds"] > 0 and st["backpressure_pauses"] > 0, st
    # paused, never closed: logagent-send's one connection (no probe), nothing reconnected
    assert st["connections"]["total"] == 1 and sum(st["records"]["rejected"].values()) == 0, st
    summary = sink.stop()
    assert summary["unique_log_ids"] == n and summary["duplicates"] == 0, summary
    assert a.stop() == 0


if __name__ == "__main__":
    run([test_fields_as_the_sink_sees_them, test_batch_limits, test_auto_switches_to_unary_against_no_batch_sink,
         test_sigterm_drains_everything, test_sigterm_with_upstream_down_reports_unsent_within_deadline,
         test_backpressure_tiny_ring_loses_nothing, test_agent_restart_library_reconnects,
         test_many_clients_exactly_once_in_order])
