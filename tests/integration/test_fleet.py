"""test_fleet.py — an upstream that is a fleet (issue #18): three real logagent-sink instances behind one gRPC target
(`ipv4:127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3`), the real agent in front.

--upstream-lb round_robin (the default) spreads the batches over all three, each within a fair share; pick_first
sends all of them to one; an instance killed mid-run (the issue's 300,000 records, both upstream protocols) has its
batches retried on the others and takes its share again once restarted, every record delivered (duplicates only as
the same log_id, where an answer was lost with the instance, and bounded by the failed calls); a SIGSTOPped
instance is dropped by the keepalive pings."""
import os
import re

from harness import SAN, Agent, Sink, TempDir, accounting_holds, http_get, run, send_records, wait_for

N = 6000
SCALE = int(os.environ.get("LOGAGENT_FLEET_RECORDS", 60000 if SAN else 300000))  # the kill test's records
BATCH = 200  # --batch-max-records of the kill test


def fleet(tmp, n=3, *args, second=()):
    """n sinks behind one ipv4: target; `second`: more arguments for the second one."""
    sinks = [Sink(tmp, *args, *(second if i == 1 else ()), name="sink%d" % i).start() for i in range(n)]
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


def log_ids(sink, torn=False):
    """A sink's log_ids in file order. torn: its file may hold a line torn by a kill, which is skipped (that call
    was never answered) by parsing every line; else a regex over the lines (the sink starts each with the log_id),
    several times faster than JSON at 100,000 lines."""
    if torn:
        return [e["log_id"] for e in sink.entries()]
    with open(sink.out, "rb") as f:
        return [m.decode() for m in re.findall(rb'^\{"log_id":"([0-9a-f]{32})"', f.read(), re.M)]


def test_an_instance_dies_mid_run_nothing_lost(otlp=False):
    """SCALE records in three phases of a third each over three instances. A: all up, each instance takes at least
    a sixth of the phase (half its fair share: round_robin deals calls in turn, so only a stall of one instance for
    most of the phase could go below). B: the second instance is SIGKILLed once it has taken some of B's first half
    (calls in flight to it fail, their batches go to the other two), the second half is sent while it is dead; it is
    restarted on its port and file, and probe records are sent until it takes some again. C: all up again, each at
    least a sixth. Then every record is at some instance, none missing, none unknown; a record stored twice is one
    whose call's answer was lost, so the copies are at most the failed calls' records (counted: batches.failed);
    the instances never killed answered exactly the calls /stats shows them succeed. The second instance first
    runs with --delay-ms 50 --store-before-delay: it stores each call at once and answers 50 ms later, so the kill
    certainly lands while calls it stored are unanswered — those records are then also stored by another instance
    (at least once where the answer was not seen), and there are such copies.

    SCALE is the issue's 300,000 in a release build (about 10 s a protocol); under ASan and TSan (the sanitizer
    runs set LOGAGENT_SANITIZER, which makes harness.SAN non-empty) it is 60,000, the calls still ~1,200 a run:
    the same sequence, in the suite's time. LOGAGENT_FLEET_RECORDS overrides both."""
    tmp = TempDir("fleet-kill")
    sink_args = ("--protocol", "otlp") if otlp else ()
    sinks, target = fleet(tmp, 3, *sink_args, second=("--delay-ms", "50", "--store-before-delay"))
    a = Agent(tmp, target, "--batch-max-records", str(BATCH), "--flush-interval-ms", "10", "--retry-max-ms", "200",
              "--rpc-timeout-ms", "60s", *(("--upstream-protocol", "otlp") if otlp else ())).start()
    third = SCALE // 3
    send_records(a.socket, records("aaaaa", third))
    a.wait_flushed(third, 120)
    took_a = [s.count() for s in sinks]
    assert sum(took_a) == third and min(took_a) >= third // 6, took_a  # all up: each at least half its share
    sent = third

    half = third // 2
    send_records(a.socket, records("bbbbb", half))
    wait_for(lambda: sinks[1].count() >= took_a[1] + half // 10, 60, "the second instance taking phase B")
    sinks[1].kill()  # SIGKILL: calls in flight to it fail, their batches go to the other two
    send_records(a.socket, records("bbbbc", third - half))
    sent += third
    a.wait_flushed(sent, 120)
    port = sinks[1].port
    sinks[1] = Sink(tmp, *sink_args, port=port, name="sink1").start()  # same port, same file (appended)
    restarted_at = sinks[1].count()
    probes = []

    def probe():  # a few records at a time until the restarted instance takes some (gRPC reconnects in backoff)
        batch = [{"message": "probe", "log_id": "ddddd%027x" % (len(probes) + i)} for i in range(10)]
        probes.extend(batch)
        send_records(a.socket, batch)
        return sinks[1].count() > restarted_at
    wait_for(probe, 60, "the restarted instance taking calls again")
    sent += len(probes)
    a.wait_flushed(sent, 60)

    before_c = [s.count() for s in sinks]
    send_records(a.socket, records("ccccc", third))
    sent += third
    st = a.wait_flushed(sent, 120)
    took_c = [s.count() - b for s, b in zip(sinks, before_c)]
    assert sum(took_c) == third and min(took_c) >= third // 6, took_c  # all up again: each at least half its share
    assert accounting_holds(st) and sum(st["records"]["dropped"].values()) == 0, st["records"]
    assert st["records"]["flushed"] == sent, (st["records"], sent)

    got = [log_ids(s, torn=i == 1) for i, s in enumerate(sinks)]
    copies = {}
    for ids in got:
        for i in ids:
            copies[i] = copies.get(i, 0) + 1
    want = {r["log_id"] for tag in ("aaaaa", "ccccc") for r in records(tag, third)}
    want |= {r["log_id"] for r in records("bbbbb", half) + records("bbbbc", third - half) + probes}
    assert set(copies) == want, ("lost", len(want - set(copies)), "unknown", len(set(copies) - want))
    extra = sum(copies.values()) - len(want)  # records stored twice: their call's answer was lost
    assert 0 < extra <= BATCH * st["batches"]["failed"], (extra, st["batches"])
    inst = {i["address"]: i for i in st["upstream"]["instances"]}
    assert sum(i["calls"] - i["failures"] for i in inst.values()) >= sent // BATCH, inst
    assert a.stop() == 0
    summaries = [s.stop() for s in sinks]
    for i in (0, 2):  # never killed: the calls /stats counts as answered are the ones each answered
        row = inst["ipv4:127.0.0.1:%d" % sinks[i].port]
        assert row["calls"] - row["failures"] == summaries[i]["batches"], (row, summaries[i])
    # what each sink saw twice itself (the restarted one: since its restart) is among the copies counted above
    assert sum(x["duplicates"] for x in summaries) <= extra, (summaries, extra)


def test_otlp_upstream_fleet():
    """The same with --upstream-protocol otlp: three OTLP services (the sink in --protocol otlp), one killed mid-run
    and restarted, every record delivered."""
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


def private_hosts(path):
    """A preexec_fn: the child gets its own mount namespace in which `path` is bind-mounted on /etc/hosts (root
    only; nothing outside the child sees it, and it goes with the child). Editing `path` in place (same inode) is
    what the child's lookups see next."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)

    def apply():
        CLONE_NEWNS, MS_REC, MS_PRIVATE, MS_BIND = 0x20000, 0x4000, 0x40000, 0x1000
        if (libc.unshare(CLONE_NEWNS) != 0 or libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None) != 0
                or libc.mount(path.encode(), b"/etc/hosts", None, MS_BIND, None) != 0):
            os._exit(97)
    return apply


def write_hosts(path, address):
    with open(path, "w") as f:  # in place: the bind mount follows the inode
        f.write("127.0.0.1 localhost\n%s logagent-fleet-test\n" % address)


def test_dns_refresh_follows_the_name():
    """--upstream-dns-refresh-ms: the upstream is a DNS name (dns:///logagent-fleet-test:P, from an /etc/hosts of
    the agent's own, bind-mounted in a private mount namespace) naming the instance on 127.0.0.1; the name is
    moved to another instance, on 127.0.0.2, while the first stays up and healthy. gRPC alone never looks again
    (no connection failed); the agent's lookup sees the change and rebuilds the channel: every record sent after
    the new instance took one goes to it. Root only (CI runs as root)."""
    if os.geteuid() != 0:
        print("skip: not root (a private /etc/hosts needs a mount namespace; CI runs as root)")
        return
    tmp = TempDir("fleet-dns")
    hosts = tmp.file("hosts")
    write_hosts(hosts, "127.0.0.1")
    import subprocess
    if subprocess.run(["true"], preexec_fn=private_hosts(hosts)).returncode != 0:
        print("skip: no private mount namespace here (unshare/mount refused: a container without CAP_SYS_ADMIN)")
        return
    first = Sink(tmp, name="first").start()
    second = Sink(tmp, "--listen", "127.0.0.2:%d" % first.port, name="second").start()
    assert second.port == first.port, (first.port, second.port)
    a = Agent(tmp, "dns:///logagent-fleet-test:%d" % first.port, "--upstream-dns-refresh-ms", "100ms",
              "--flush-interval-ms", "10")
    a.preexec = private_hosts(hosts)
    a.start()
    send_records(a.socket, records("aaaaa", 1000))
    a.wait_flushed(1000)
    assert first.count() == 1000 and second.count() == 0, (first.count(), second.count())
    write_hosts(hosts, "127.0.0.2")
    probes = []

    def probe():  # a few records at a time until the second instance takes some
        batch = [{"message": "probe", "log_id": "ddddd%027x" % (len(probes) + i)} for i in range(10)]
        probes.extend(batch)
        send_records(a.socket, batch)
        return second.count() > 0
    wait_for(probe, 30, "the renamed instance taking calls")
    a.wait_flushed(1000 + len(probes))
    at_first = first.count()
    send_records(a.socket, records("bbbbb", 1000))
    st = a.wait_flushed(2000 + len(probes))
    assert accounting_holds(st) and sum(st["records"]["dropped"].values()) == 0, st["records"]
    assert first.count() == at_first, (at_first, first.count())  # nothing more to the old address
    assert "upstream addresses changed" in a.logtext(), a.logtext()[-2000:]
    assert a.stop() == 0
    assert first.stop()["duplicates"] == 0 and second.stop()["duplicates"] == 0


if __name__ == "__main__":
    run([test_round_robin_spreads_and_pick_first_does_not, test_an_instance_dies_mid_run_nothing_lost,
         test_otlp_upstream_fleet, test_keepalive_drops_a_stopped_instance, test_dns_refresh_follows_the_name])
