"""test_fleet.py — an upstream that is a fleet (issue #18): three real logagent-sink instances behind one gRPC target
(`ipv4:127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3`), the real agent in front.

--upstream-lb round_robin (the default) spreads the batches over all three, each within a fair share; pick_first
sends all of them to one; an instance killed mid-run has its batches retried on the others, every record delivered
(duplicates only as the same log_id, where an answer was lost with the instance)."""
from harness import Agent, Sink, TempDir, accounting_holds, http_get, run, send_records, wait_for

N = 6000


def fleet(tmp, n=3, *args):
    sinks = [Sink(tmp, *args, name="sink%d" % i).start() for i in range(n)]
    return sinks, "ipv4:" + ",".join("127.0.0.1:%d" % s.port for s in sinks)


def records(tag, n=N):
    return [{"message": "%s %05d" % (tag, i), "log_id": "%s%027x" % (tag, i)} for i in range(n)]


def test_round_robin_spreads_and_pick_first_does_not():
    tmp = TempDir("fleet-lb")
    sinks, target = fleet(tmp)
    a = Agent(tmp, target, "--batch-max-records", "50", "--flush-interval-ms", "10").start()
    send_records(a.socket, records("aaaaa"))
    st = a.wait_flushed(N)
    counts = [s.count() for s in sinks]
    assert sum(counts) == N and min(counts) >= N // 3 // 2, counts  # each at least half its fair share
    assert accounting_holds(st) and st["records"]["flushed"] == N, st["records"]
    # per instance: every sink's calls as the sink counted them, no failures
    inst = {i["address"]: i for i in st["upstream"]["instances"]}
    for s in sinks:
        row = inst["ipv4:127.0.0.1:%d" % s.port]
        assert row["failures"] == 0 and row["calls"] == s.count() // 50 and row["seconds"] > 0, (row, s.count())
    status, text = http_get(a.stats_socket, "/metrics")
    for s in sinks:  # the latency histogram per address: as many observations as calls, percentiles from its buckets
        addr = "ipv4:127.0.0.1:%d" % s.port
        row = inst[addr]
        assert 'logagent_upstream_instance_calls_total{address="%s"} %d' % (addr, row["calls"]) in text
        assert 'logagent_upstream_instance_call_seconds_count{address="%s"} %d' % (addr, row["calls"]) in text
        assert 'logagent_upstream_instance_call_seconds_bucket{address="%s",le="+Inf"} %d' % (addr, row["calls"]) in text
        lat = row["latency_ms"]
        assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"] <= 60000, row
    assert a.stop() == 0
    b = Agent(tmp, target, "--upstream-lb", "pick_first", "--batch-max-records", "50", "--flush-interval-ms", "10",
              name="first").start()
    send_records(b.socket, records("bbbbb"))
    b.wait_flushed(N)
    assert b.stop() == 0
    got = [len([e for e in s.entries() if e["message"].startswith("bbbbb")]) for s in sinks]
    assert sorted(got) == [0, 0, N], got  # every call to the one that answered first
    for s in sinks:
        assert s.stop()["duplicates"] == 0


def test_an_instance_dies_mid_run_nothing_lost(otlp=False):
    tmp = TempDir("fleet-kill")
    sinks, target = fleet(tmp, 3, *(("--protocol", "otlp") if otlp else ()))
    a = Agent(tmp, target, "--batch-max-records", "50", "--flush-interval-ms", "10", "--retry-max-ms", "200",
              *(("--upstream-protocol", "otlp") if otlp else ())).start()
    send_records(a.socket, records("ccccc"))
    wait_for(lambda: sinks[1].count() >= 200, 30, "the second instance taking batches")
    sinks[1].kill()  # SIGKILL: calls in flight to it fail, their batches go to the other two
    send_records(a.socket, records("ddddd"))
    st = a.wait_flushed(2 * N, 120)
    assert accounting_holds(st) and sum(st["records"]["dropped"].values()) == 0, st["records"]
    ids = set()
    for s in sinks:
        ids |= {e["log_id"] for e in s.entries()}
    want = {r["log_id"] for r in records("ccccc") + records("ddddd")}
    assert ids == want, (len(ids), len(want - ids))
    # (whether a call to the killed instance failed depends on whether one was in flight when it died: gRPC may
    # simply stop picking it, so nothing is asserted about its failures)
    inst = {i["address"]: i for i in a.stats()["upstream"]["instances"]}
    assert sum(i["calls"] - i["failures"] for i in inst.values()) >= 2 * N // 50, inst
    assert a.stop() == 0
    for s in (sinks[0], sinks[2]):
        s.stop()


def test_otlp_upstream_fleet():
    """The same with --upstream-protocol otlp: three OTLP services (the sink in --protocol otlp), one killed mid-run,
    every record delivered."""
    test_an_instance_dies_mid_run_nothing_lost(otlp=True)


def test_keepalive_drops_a_stopped_instance():
    """An instance that stops answering without closing its connections (SIGSTOP: the kernel still ACKs, the
    process answers nothing — an evicted pod, a dead route) is noticed by the HTTP/2 pings: with
    --upstream-keepalive-ms 500ms and its timeout 1s, and calls allowed two minutes, every record is delivered by the
    other two while it is still stopped (the batches stuck on it fail at the ping timeout and are retried)."""
    import signal
    tmp = TempDir("fleet-stop")
    sinks, target = fleet(tmp)
    a = Agent(tmp, target, "--batch-max-records", "50", "--flush-interval-ms", "10", "--retry-max-ms", "200",
              "--rpc-timeout-ms", "120s", "--upstream-keepalive-ms", "500ms", "--upstream-keepalive-timeout-ms", "1s").start()
    send_records(a.socket, records("eeeee"))
    wait_for(lambda: sinks[1].count() >= 200, 30, "the second instance taking batches")
    sinks[1].proc.send_signal(signal.SIGSTOP)
    try:
        send_records(a.socket, records("fffff"))
        st = a.wait_flushed(2 * N, 60)  # well under the 120 s call deadline: the pings found it
        assert accounting_holds(st), st["records"]
        ids = set()
        for s in sinks:
            ids |= {e["log_id"] for e in s.entries()}
        want = {r["log_id"] for r in records("eeeee") + records("fffff")}
        assert want <= ids, len(want - ids)
    finally:
        sinks[1].proc.send_signal(signal.SIGCONT)
    assert a.stop() == 0
    for s in sinks:
        s.stop()


if __name__ == "__main__":
    run([test_round_robin_spreads_and_pick_first_does_not, test_an_instance_dies_mid_run_nothing_lost,
         test_otlp_upstream_fleet, test_keepalive_drops_a_stopped_instance])
