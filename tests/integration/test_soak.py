"""test_soak.py — many connections at once, and many in a row (issue #6's soak): nothing lost, no fd leak, no
memory growth.

2,000 client connections held open at the same time, each sending a record before and after all are connected;
then 10,000 short-lived connections in a row (connect, one record, close: the original service's "10,000 writes"
from processes that do not keep a connection). Checked: every record arrives exactly once; the agent's open fds
(/proc/PID/fd) are the same before and after; a second round of 10,000 short-lived connections grows its RSS by
less than 8 MiB over the first (no per-connection leak)."""
import os
import resource
import socket

import msgpack

from harness import SAN, Agent, Sink, TempDir, accounting_holds, run, wait_for

N_HELD = 2000
N_SHORT = 10000


def fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def fds_settle(pid, at_most, what):
    """Waits until the agent holds at most `at_most` fds (a stats request's connection may close a moment after its
    answer: a count taken meanwhile is one higher) and returns the count."""
    return wait_for(lambda: fds(pid) if fds(pid) <= at_most else None, 20, "%s (agent has %d fds, want <= %d)" % (
        what, fds(pid), at_most))


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def short_lived(path, prefix, n):
    for i in range(n):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(path)
        s.sendall(msgpack.packb({"message": "%s %d" % (prefix, i), "service_name": "soak"}))
        s.close()


def check_exactly_once(sink, prefix, n):
    got = [e["message"] for e in sink.entries() if e["message"].startswith(prefix + " ")]
    assert len(got) == n and len(set(got)) == n, "%s: %d entries, %d distinct, want %d" % (
        prefix, len(got), len(set(got)), n)


def test_2000_connections_at_once():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < N_HELD + 100:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, N_HELD + 1000), hard))
    tmp = TempDir("soak-held")
    sink = Sink(tmp).start()
    a = Agent(tmp, sink.target).start()
    short_lived(a.socket, "warm", 10)
    a.wait_flushed(10)
    fds_before = fds(a.proc.pid)
    conns = []
    for i in range(N_HELD):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(a.socket)
        s.sendall(msgpack.packb({"message": "first %d" % i}))
        conns.append(s)
    wait_for(lambda: a.stats()["connections"]["active"] == N_HELD, 60, "%d connections open" % N_HELD)
    assert fds(a.proc.pid) >= fds_before - 1 + N_HELD, (fds(a.proc.pid), fds_before)
    for i, s in enumerate(conns):
        s.sendall(msgpack.packb({"message": "second %d" % i}))
        s.close()
    wait_for(lambda: a.stats()["connections"]["active"] == 0, 60, "all connections closed")
    st = a.wait_flushed(10 + 2 * N_HELD)
    sink.wait_count(10 + 2 * N_HELD)
    check_exactly_once(sink, "first", N_HELD)
    check_exactly_once(sink, "second", N_HELD)
    fds_settle(a.proc.pid, fds_before, "no fd leak")
    assert st["connections"]["max_reached"] == 0 and accounting_holds(st), st
    assert a.stop() == 0
    assert sink.stop()["duplicates"] == 0


def test_10000_short_lived_connections():
    """Two rounds of 10,000: the first grows the heap to what this burst needs (how many connections are open at
    once depends on timing), the second must fit in it — a leak per connection would show as growth."""
    tmp = TempDir("soak-short")
    sink = Sink(tmp).start()
    a = Agent(tmp, sink.target).start()
    short_lived(a.socket, "warm", 10)  # the gRPC channel connects on the first call: one fd more, for good
    a.wait_flushed(10)
    fds_before = fds(a.proc.pid)
    rss = []
    for r in range(2):
        short_lived(a.socket, "short%d" % r, N_SHORT)
        st = a.wait_flushed(10 + (r + 1) * N_SHORT)
        wait_for(lambda: a.stats()["connections"]["active"] == 0, 30, "all connections closed")
        rss.append(rss_kib(a.proc.pid))
    sink.wait_count(10 + 2 * N_SHORT)
    check_exactly_once(sink, "short0", N_SHORT)
    check_exactly_once(sink, "short1", N_SHORT)
    fds_after = fds_settle(a.proc.pid, fds_before, "no fd leak")
    print("   agent fds %d -> %d; RSS after round 1 %d KiB, after round 2 %d KiB" % (fds_before, fds_after, rss[0],
                                                                                  rss[1]))
    if not SAN:  # a sanitizer's allocator keeps freed memory in quarantine: RSS says nothing about leaks there
        assert rss[1] - rss[0] < 8 * 1024, "RSS grew %d KiB over 10,000 more connections" % (rss[1] - rss[0])
    assert st["connections"]["total"] == 10 + 2 * N_SHORT and accounting_holds(st), st["connections"]
    assert a.stop() == 0
    assert sink.stop()["duplicates"] == 0


if __name__ == "__main__":
    run([test_2000_connections_at_once, test_10000_short_lived_connections])
