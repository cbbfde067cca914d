"""test_limits.py — the agent at the edge of its process limits (issue #12): the open-file limit, and the memory it
holds outside --buffer-bytes.

Open files: the agent runs with RLIMIT_NOFILE 128 (soft and hard, so it cannot raise it) and 500 clients connect at
once, each writing a record. It takes as many as its open-file budget allows (the limit minus descriptors kept for
/stats and the upstream), the rest wait in the listen backlog; it does not spin (CPU from /proc/PID/stat), /stats
answers throughout, and every record arrives exactly once as the earlier clients close. Then the last descriptors are
taken by idle stats connections: accept(2) fails with EMFILE, which pauses that listener (counted, one warning for
the episode, never libevent's "Error from accept() call" loop) until they close."""
import os
import re
import resource
import socket
import time

import msgpack

from harness import SAN, Agent, Sink, TempDir, accounting_holds, run, scaled, wait_for

NOFILE = 128
N_CLIENTS = 500


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def cpu_share(pid, seconds, during=None):
    """The share of one core the process used over `seconds` (scaled); calls during() meanwhile, if given."""
    t0, c0 = time.monotonic(), cpu_seconds(pid)
    end = t0 + scaled(seconds)
    while time.monotonic() < end:
        if during:
            during()
        time.sleep(0.2)
    return (cpu_seconds(pid) - c0) / (time.monotonic() - t0)


def raise_own_nofile(n):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, n), hard))


def agent_nofile():
    resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, NOFILE))


def test_open_file_limit():
    raise_own_nofile(N_CLIENTS + 300)
    tmp = TempDir("limits-nofile")
    sink = Sink(tmp).start()
    a = Agent(tmp, sink.target)
    a.preexec = agent_nofile
    a.start()
    m = re.search(r'open-file limit below max-connections.* connections=(\d+)', a.logtext())
    assert m, a.logtext()
    budget = int(m.group(1))
    assert 32 <= budget < NOFILE, budget
    conns = []
    for i in range(N_CLIENTS):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(a.socket)  # past the budget: the listen backlog takes it
        s.sendall(msgpack.packb({"message": "client %d" % i, "service_name": "limits"}))
        conns.append(s)
    wait_for(lambda: a.stats()["connections"]["active"] == budget, 30, "%d connections accepted" % budget)
    sink.wait_count(budget)
    # saturated: the others wait in the backlog; the agent idles and /stats answers
    answers = []
    share = cpu_share(a.proc.pid, 3, lambda: answers.append(a.stats()))
    st = a.stats()
    print("   budget %d connections; CPU %.1f%% of a core while saturated; %d /stats answers" % (
        budget, share * 100, len(answers)))
    assert share < 0.3, share
    assert st["connections"]["active"] == budget and st["connections"]["fd_limit_reached"] >= 1, st["connections"]
    assert st["connections"]["max_reached"] == 0, st["connections"]

    # now something else takes the last descriptors: idle connections to the stats socket
    idle = []
    for _ in range(60):  # more than the descriptors left; those not accepted wait in the stats socket's backlog
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(a.stats_socket)
        idle.append(s)
    wait_for(lambda: "out of file descriptors" in a.logtext(), 20, "the EMFILE warning")
    share = cpu_share(a.proc.pid, 2)
    print("   CPU %.1f%% of a core while accept(2) fails with EMFILE" % (share * 100))
    assert share < 0.3, share
    for s in idle:
        s.close()
    st = wait_for(lambda: a.stats()["connections"]["accept_errors"]["emfile"] >= 1 and a.stats(), 20,
                  "/stats answering again, with the EMFILE failures counted")

    # the earlier clients leave: those waiting in the backlog are accepted and read, nothing lost or repeated
    for s in conns:
        s.close()
    sink.wait_count(N_CLIENTS)
    wait_for(lambda: a.stats()["connections"]["active"] == 0, 30, "every connection closed")
    got = [e["message"] for e in sink.entries()]
    assert sorted(got) == sorted("client %d" % i for i in range(N_CLIENTS)), (len(got), len(set(got)))
    st = a.stats()
    assert st["connections"]["total"] == N_CLIENTS and accounting_holds(st), st["connections"]
    log = a.logtext()
    assert "Error from accept" not in log, log[-2000:]
    assert log.count("out of file descriptors") == 1, log.count("out of file descriptors")
    assert log.count("open-file limit reached") <= 5, log.count("open-file limit reached")
    assert a.stop() == 0
    assert sink.stop()["duplicates"] == 0


if __name__ == "__main__":
    run([test_open_file_limit])
