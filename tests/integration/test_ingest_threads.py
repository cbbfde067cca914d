"""test_ingest_threads.py — --ingest-threads: several event loops producing into one ring (real agent, real sink,
logagent-send and raw socket clients).

- 16 clients x 50,000 records with --ingest-threads 1, 2 and 4: every record arrives exactly once and in order per
  connection (--max-inflight 1 keeps the order at the service), the counters summed over the threads add up.
- block policy with the log service down and 2 threads: reading pauses, nothing is dropped or closed, everything
  arrives once the service is back.
- --max-connections with 4 threads: exact (counted where connections are accepted), the next one waits in the
  backlog and is served when one closes.
- Forward acks on connections spread over 2 threads: each answered on its own connection after its events.
- SIGTERM with 2 threads and records still in the clients' sockets behind a full ring: everything drained.
Counts are smaller under sanitizers (LOGAGENT_TEST_THREADS_PER_CLIENT overrides)."""
import json
import os
import re
import signal
import socket
import subprocess
import threading

import msgpack

from harness import (BIN, SAN, Agent, Sink, TempDir, accounting_holds, dead_target, http_get, recv_ack, run,
                     scaled, send_records, spawn, wait_for)

SEND = os.path.join(BIN, "logagent-send")
CLIENTS = 16
PER_CLIENT = int(os.environ.get("LOGAGENT_TEST_THREADS_PER_CLIENT",
                                {"": "50000", "address": "10000"}.get(SAN, "2000")))
MSG = re.compile(rb'"message":"c(\d+) seq (\d+)"')


def sender(sock, *args):
    return spawn([SEND, "--socket", sock] + list(args), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                 stderr=subprocess.PIPE)


def feed_lines(proc, lines):
    out, err = proc.communicate(("\n".join(lines) + "\n").encode(), timeout=scaled(300))
    assert proc.returncode == 0, (proc.returncode, err.decode())


def threads_started(a, n):
    if n > 1:
        assert "ingest threads started" in a.logtext() and "ingest_threads=%d" % n in a.logtext(), a.logtext()


def exactly_once_in_order(threads):
    tmp = TempDir("ingthreads-%d" % threads)
    sink = Sink(tmp).start()
    a = Agent(tmp, sink.target, "--max-inflight", "1", "--ingest-threads", str(threads)).start()
    threads_started(a, threads)
    procs = [sender(a.socket, "--service", "client-%d" % c) for c in range(CLIENTS)]
    feeders = [threading.Thread(target=feed_lines, args=(p, ["c%d seq %07d" % (c, i) for i in range(PER_CLIENT)]))
               for c, p in enumerate(procs)]
    for t in feeders:
        t.start()
    for t in feeders:
        t.join()
    total = CLIENTS * PER_CLIENT
    sink.wait_count(total, timeout=300)
    st = a.wait_flushed(total)
    assert accounting_holds(st), st["records"]
    assert st["records"]["received"] == total and st["connections"]["total"] == CLIENTS, (st["records"],
                                                                                          st["connections"])
    # logagent-send's syncs (empty Forward messages with a chunk), answered on each client's own loop
    assert st["forward"]["acks"] >= CLIENTS and st["forward"]["acks_failed"] == 0, st["forward"]
    # /stats/clients: each client's records in its own row, every one counted (a connection's counts are folded
    # into the shared row once per read: none may be left behind when it closes)
    rows = json.loads(http_get(a.stats_socket, "/stats/clients?top=100")[1])["clients"]
    got = {r["service_name"]: r["records"] for r in rows if r["service_name"].startswith("client-")}
    assert got == {"client-%d" % c: PER_CLIENT for c in range(CLIENTS)}, got
    summary = sink.stop()
    assert summary["entries"] == total and summary["unique_log_ids"] == total and summary["duplicates"] == 0, summary
    last = [-1] * CLIENTS
    with open(sink.out, "rb") as f:
        for line in f:
            m = MSG.search(line)
            assert m, line
            c, seq = int(m.group(1)), int(m.group(2))
            assert seq == last[c] + 1, "threads=%d client %d: seq %d after %d" % (threads, c, seq, last[c])
            last[c] = seq
    assert last == [PER_CLIENT - 1] * CLIENTS, last
    assert a.stop() == 0


def test_1_thread_exactly_once_in_order():
    exactly_once_in_order(1)


def test_2_threads_exactly_once_in_order():
    exactly_once_in_order(2)


def test_4_threads_exactly_once_in_order():
    exactly_once_in_order(4)


def test_block_with_the_service_down():
    tmp = TempDir("ingthreads-block")
    target, port = dead_target(tmp)
    a = Agent(tmp, target, "--ingest-threads", "2", "--on-full", "block", "--buffer-bytes", "64KiB",
              "--retry-initial-ms", "50", "--retry-max-ms", "200").start()
    n, clients = 3000, 4
    procs = [sender(a.socket, "--service", "bp-%d" % c) for c in range(clients)]
    feeders = [threading.Thread(target=feed_lines, args=(p, ["c%d seq %07d %s" % (c, i, "y" * 100)
                                                             for i in range(n)]))
               for c, p in enumerate(procs)]
    for t in feeders:
        t.start()
    st = wait_for(lambda: (lambda s: s if s["backpressure_pauses"] > 0 and s["connections"]["active"] == clients
                           else None)(a.stats()), 60, "reading paused with every client connected")
    assert sum(st["records"]["dropped"].values()) == 0 and accounting_holds(st), st["records"]
    assert st["records"]["received"] < n * clients, st["records"]  # the writers wait; nothing was refused
    sink = Sink(tmp, port=port).start()
    for t in feeders:
        t.join()
    sink.wait_count(n * clients, timeout=120)
    st = a.wait_flushed(n * clients)
    assert sum(st["records"]["dropped"].values()) == 0 and st["connections"]["total"] == clients, st
    summary = sink.stop()
    assert summary["unique_log_ids"] == n * clients and summary["duplicates"] == 0, summary
    assert a.stop() == 0


def test_max_connections_exact_across_threads():
    tmp = TempDir("ingthreads-maxconn")
    sink = Sink(tmp).start()
    a = Agent(tmp, sink.target, "--ingest-threads", "4", "--max-connections", "3").start()
    threads_started(a, 4)
    held = []
    for _ in range(3):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(a.socket)
        held.append(s)
    wait_for(lambda: a.stats()["connections"]["active"] == 3, 20, "3 connections open")
    assert a.stats()["connections"]["max_reached"] == 1
    waiting = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    waiting.connect(a.socket)  # the kernel's backlog takes it
    waiting.sendall(msgpack.packb({"message": "waited in the backlog"}))
    waiting.close()
    for i, s in enumerate(held):  # the 3, on three loops, are served meanwhile
        s.sendall(msgpack.packb({"message": "held %d" % i}))
    sink.wait_count(3)
    st = a.stats()
    assert st["connections"]["total"] == 3 and st["connections"]["active"] == 3, st["connections"]
    held.pop().close()
    sink.wait_count(4)  # one closed (on another loop than the listener's, maybe): the waiting one is accepted
    assert [e["message"] for e in sink.entries()].count("waited in the backlog") == 1
    for s in held:
        s.close()
    wait_for(lambda: a.stats()["connections"]["active"] == 0, 20, "all closed")
    assert a.stats()["connections"]["total"] == 4
    assert a.stop() == 0
    sink.stop()


def test_forward_acks_on_every_thread():
    tmp = TempDir("ingthreads-ack")
    sink = Sink(tmp).start()
    a = Agent(tmp, sink.target, "--ingest-threads", "2").start()
    conns = []
    for k in range(4):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(a.socket)
        conns.append(s)
    for k, s in enumerate(conns):
        s.sendall(msgpack.packb(["t", [[1700000000, {"message": "fw %d %d" % (k, i)}] for i in range(100)],
                                 {"chunk": "chunk-%d" % k}]))
    for k, s in enumerate(conns):
        assert recv_ack(s) == {"ack": "chunk-%d" % k}
        s.close()
    sink.wait_count(400)
    st = a.wait_flushed(400)
    assert st["forward"]["acks"] == 4 and st["forward"]["events"] == 400 and st["forward"]["messages"] == 4, \
        st["forward"]
    assert a.stop() == 0
    msgs = sorted(e["message"] for e in sink.entries())
    assert msgs == sorted("fw %d %d" % (k, i) for k in range(4) for i in range(100)), msgs[:3]
    sink.stop()


def test_sigterm_drains_every_thread():
    tmp = TempDir("ingthreads-drain")
    sink = Sink(tmp, "--delay-ms", "20").start()
    a = Agent(tmp, sink.target, "--ingest-threads", "2", "--buffer-bytes", "64KiB", "--batch-max-records", "100",
              "--max-inflight", "1").start()
    n, clients = 1500, 4
    writers = [threading.Thread(target=send_records,
                                args=(a.socket, [{"message": "d%d %d %s" % (c, i, "z" * 60)} for i in range(n)]))
               for c in range(clients)]
    for t in writers:
        t.start()
    for t in writers:
        t.join()  # written into the sockets (and closed); the ring is full behind the slow service
    a.proc.send_signal(signal.SIGTERM)
    assert a.proc.wait(timeout=scaled(60)) == 0
    assert sink.count() == n * clients, sink.count()
    last = [l for l in a.logtext().splitlines() if "stopped" in l][-1]
    assert "received=%d" % (n * clients) in last and "unsent=0" in last, last
    summary = sink.stop()
    assert summary["unique_log_ids"] == n * clients and summary["duplicates"] == 0, summary


if __name__ == "__main__":
    run([test_max_connections_exact_across_threads, test_forward_acks_on_every_thread, test_sigterm_drains_every_thread,
         test_block_with_the_service_down, test_1_thread_exactly_once_in_order, test_2_threads_exactly_once_in_order,
         test_4_threads_exactly_once_in_order])
