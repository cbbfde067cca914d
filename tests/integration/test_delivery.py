"""test_delivery.py — delivery guarantees with real processes: the sink killed for 5 s mid-run and restarted on the
same port (every log_id arrives, retries counted); a buffer far too small with --on-full drop-newest and drop-oldest
(delivered + counted drops = sent, exactly); injected UNAVAILABLE failures and retryable partial rejects (every
log_id arrives, no duplicates: accepted entries are never re-sent); INVALID_ARGUMENT (dropped, counted, logged
once); RESOURCE_EXHAUSTED honouring the server's RetryInfo delay; --retry-max-elapsed-s giving up, counted."""
import os
import signal
import socket
import subprocess
import time

import msgpack

from harness import (BIN, SAN, Agent, Sink, TempDir, accounting_holds, dead_target, run, scaled, send_records, spawn,
                     wait_for)


def log_ids(sink):
    return [e["log_id"] for e in sink.entries()]


def settled(a, total):
    """Waits until every one of `total` records is flushed or dropped; returns the stats."""
    def done():
        st = a.stats()
        r = st["records"]
        return st if r["received"] == total and r["flushed"] + sum(r["dropped"].values()) == total else None
    return wait_for(done, 60, "all %d records flushed or dropped" % total)


def test_sink_outage_5s_all_arrive():
    n = 200000 if not SAN else 60000
    tmp = TempDir("outage")
    sink = Sink(tmp).start()
    port = sink.port
    a = Agent(tmp, sink.target, "--retry-initial-ms", "50", "--retry-max-ms", "500").start()
    bench = spawn([os.path.join(BIN, "logagent-bench"), "--socket", a.socket, "--count", str(n), "--workers", "4"],
                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    sink.wait_count(n // 4, timeout=60)
    sink.kill()
    time.sleep(5)  # the outage itself (its length is the scenario, not a synchronisation)
    st = a.stats()
    assert st["upstream"]["state"] == "failing" and accounting_holds(st), st
    sink2 = Sink(tmp, port=port).start()  # same port, same --out file (appends)
    out, err = bench.communicate(timeout=scaled(300))
    assert bench.returncode == 0, err
    st = a.wait_flushed(n, timeout=120)
    ids = log_ids(sink2)
    assert len(set(ids)) == n, (len(set(ids)), n)
    assert st["batches"]["failed"] > 0 and st["batches"]["retried"] > 0, st["batches"]
    assert sum(st["records"]["dropped"].values()) == 0, st["records"]
    summary = sink2.stop()
    # duplicates are only the batches the first sink wrote but could not acknowledge before it died
    assert len(ids) - n <= st["batches"]["retried"] * 2000, (len(ids), n, st["batches"])
    assert a.stop() == 0


def flood(path, n, size=200):
    """One raw client writing n records as fast as the socket takes them; returns the log_ids sent."""
    ids = ["%032x" % (i + 1) for i in range(n)]
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    for start in range(0, n, 500):
        s.sendall(b"".join(msgpack.packb({"message": "f%d %s" % (i, "z" * size), "log_id": ids[i]})
                           for i in range(start, min(n, start + 500))))
    s.close()
    return ids


def drop_policy(policy):
    n = 20000
    tmp = TempDir(policy)
    sink = Sink(tmp, "--delay-ms", "30").start()
    a = Agent(tmp, sink.target, "--buffer-bytes", "64KiB", "--max-record-bytes", "4KiB", "--on-full", policy,
              "--batch-max-records", "50", "--max-inflight", "1").start()
    sent = flood(a.socket, n)
    st = settled(a, n)
    r = st["records"]
    sink.wait_count(r["flushed"])
    delivered = set(log_ids(sink))
    assert r["dropped"]["buffer_full"] > 0, r
    assert len(delivered) == r["flushed"] and delivered <= set(sent), (len(delivered), r)
    assert len(delivered) + r["dropped"]["buffer_full"] == n, (len(delivered), r)
    assert accounting_holds(st), st
    assert a.stop() == 0
    return sent, delivered


def test_drop_newest_counts_every_drop():
    sent, delivered = drop_policy("drop-newest")
    assert sent[0] in delivered  # the oldest records survive, the newest are refused


def test_drop_oldest_counts_every_drop():
    sent, delivered = drop_policy("drop-oldest")
    assert sent[-1] in delivered  # the newest record survives


def test_failures_and_partial_rejects_deliver_everything_once():
    n = 20000
    tmp = TempDir("flaky")
    sink = Sink(tmp, "--fail-rate", "0.1", "--fail-code", "UNAVAILABLE", "--reject-rate", "0.05").start()
    a = Agent(tmp, sink.target, "--retry-initial-ms", "10", "--retry-max-ms", "100",
              "--batch-max-records", "500").start()
    sent = flood(a.socket, n, size=50)
    st = a.wait_flushed(n)
    sink.wait_count(n)
    summary = sink.stop()
    assert set(log_ids(sink)) == set(sent), summary
    assert summary["duplicates"] == 0 and summary["entries"] == n, summary
    assert summary["injected_failures"] > 0 and summary["rejected_entries"] > 0, summary
    assert st["batches"]["retried"] > 0 and sum(st["records"]["dropped"].values()) == 0, st
    assert a.stop() == 0


def test_invalid_argument_dropped_counted_logged_once():
    tmp = TempDir("invalid-arg")
    sink = Sink(tmp, "--fail-first", "3", "--fail-code", "INVALID_ARGUMENT").start()
    a = Agent(tmp, sink.target, "--batch-max-records", "100", "--max-inflight", "1").start()
    send_records(a.socket, [{"message": "r%d" % i} for i in range(1000)])
    st = settled(a, 1000)
    assert st["records"]["dropped"]["upstream_rejected"] == 300, st["records"]
    assert st["records"]["flushed"] == 700 and sink.wait_count(700) and sink.count() == 700
    assert a.logtext().count("refused a batch") == 1, a.logtext()
    assert "INVALID_ARGUMENT" in a.logtext()
    assert a.stop() == 0


def test_resource_exhausted_waits_for_retry_info():
    tmp = TempDir("throttle")
    sink = Sink(tmp, "--fail-first", "1", "--fail-code", "RESOURCE_EXHAUSTED", "--retry-after-ms", "800").start()
    a = Agent(tmp, sink.target, "--retry-initial-ms", "1", "--retry-max-ms", "2", "--flush-interval-ms", "1").start()
    t0 = time.monotonic()
    send_records(a.socket, [{"message": "throttled"}])
    sink.wait_count(1)
    elapsed = time.monotonic() - t0
    assert elapsed >= 0.75, elapsed  # our own backoff would have retried after <= 2 ms
    st = a.stats()
    assert st["batches"]["failed"] >= 1 and st["batches"]["retried"] >= 1, st["batches"]
    assert sink.stop()["injected_failures"] == 1  # (a slow start may add connection failures before it)
    assert a.stop() == 0


def test_retry_max_elapsed_gives_up_counted():
    tmp = TempDir("elapsed")
    sink = Sink(tmp).start()
    target = sink.target
    sink.stop()
    a = Agent(tmp, target, "--retry-max-elapsed-s", "1", "--retry-initial-ms", "20", "--retry-max-ms", "100").start()
    send_records(a.socket, [{"message": "e%d" % i} for i in range(100)])
    st = settled(a, 100)
    assert st["records"]["dropped"]["retry_expired"] == 100, st["records"]
    assert accounting_holds(st)
    last_line = None
    assert a.stop() == 0
    last_line = [l for l in a.logtext().splitlines() if "stopped" in l][-1]
    assert "dropped_retry_expired=100" in last_line, last_line


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


OUTAGE_S = int(os.environ.get("LOGAGENT_TEST_OUTAGE_S", "60"))
OVERHEAD_MIB = 40  # code, shared libraries (gRPC, abseil, ...), gRPC's own buffers, connection buffers


def test_long_outage_rss_stays_under_buffer_bytes_plus_overhead():
    """A 60 s outage at full load: RSS <= --buffer-bytes + OVERHEAD_MIB (release builds only: sanitizer
    shadow memory would measure the sanitizer, not the agent)."""
    if SAN:
        print("     (skipped under %s: RSS includes shadow memory)" % SAN)
        return
    buffer_mib = 32
    tmp = TempDir("rss")
    target, _ = dead_target(tmp)
    a = Agent(tmp, target, "--buffer-bytes", "%dMiB" % buffer_mib, "--retry-max-ms", "1000").start()
    base = rss_kib(a.proc.pid)
    bench = spawn([os.path.join(BIN, "logagent-bench"), "--socket", a.socket, "--count", "100000000",
                   "--workers", "4"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peak, t_end = 0, time.monotonic() + OUTAGE_S
    while time.monotonic() < t_end:
        peak = max(peak, rss_kib(a.proc.pid))
        time.sleep(0.25)  # sampling period of the measurement, not a synchronisation
    st = a.stats()
    bench.kill()
    limit = (buffer_mib + OVERHEAD_MIB) * 1024
    print("     rss: start %d KiB, peak %d KiB, limit %d KiB, backpressure %.1fs, held %d records" % (
        base, peak, limit, st["backpressure_seconds"], st["records"]["received"]))
    assert st["backpressure_seconds"] > OUTAGE_S / 2 and st["upstream"]["state"] == "failing", st
    assert peak <= limit, (peak, limit)
    assert accounting_holds(st)
    a.kill()


if __name__ == "__main__":
    run([test_invalid_argument_dropped_counted_logged_once, test_resource_exhausted_waits_for_retry_info,
         test_retry_max_elapsed_gives_up_counted, test_drop_newest_counts_every_drop,
         test_drop_oldest_counts_every_drop, test_failures_and_partial_rejects_deliver_everything_once,
         test_sink_outage_5s_all_arrive, test_long_outage_rss_stays_under_buffer_bytes_plus_overhead])
