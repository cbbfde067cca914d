"""test_send.py — logagent-send against the real agent and against sockets that are not an ingest socket.

logagent-send opens one connection (no probe), writes the records, and ends with a sync the agent answers (an empty
Forward message with a chunk: {"ack": chunk}); exit 0 only when that answer came. Checked here: the record arrives
with its fields over exactly one connection; the stats socket, an HTTP server, a socket that closes and one that
never answers each give exit 1 and a message naming the socket; unknown levels are a usage error (exit 2); an agent
restarted mid-stream gets every record (re-sent after the reconnect); a record too large is named, the rest go.
"""
import os
import signal
import socket
import subprocess
import threading
import time

from harness import BIN, Agent, Sink, TempDir, run, scaled, spawn, wait_for

SEND = os.path.join(BIN, "logagent-send")


def send(sock, *args, stdin=None, timeout=60):
    p = subprocess.run([SEND, "--socket", sock] + list(args), input=stdin, capture_output=True, timeout=scaled(timeout))
    return p.returncode, p.stdout.decode(), p.stderr.decode()


def test_record_arrives_confirmed_over_one_connection():
    tmp = TempDir("send-ok")
    sink = Sink(tmp).start()
    a = Agent(tmp, sink.target).start()
    rc, out, err = send(a.socket, "--service", "cron", "--level", "warning", "--meta", "host=db1", "--meta",
                        "exit_code=3", "--trace-id", "t1", "backup", "failed")
    assert (rc, out, err) == (0, "", ""), (rc, out, err)
    e = sink.wait_count(1) and sink.entries()[0]
    assert e["message"] == "backup failed" and e["service_name"] == "cron" and e["level"] == "WARN", e
    assert e["metadata"] == {"host": "db1", "exit_code": "3"} and e["trace_id"] == "t1", e
    assert e["source"]["comm"] == "logagent-send" and len(e["log_id"]) == 32, e
    st = a.stats()
    # one connection (no start-up probe), one sync answered; the sync carries no record
    assert st["connections"]["total"] == 1 and st["records"]["received"] == 1, st
    assert st["forward"]["acks"] == 1 and st["forward"]["events"] == 0, st["forward"]
    assert sum(st["records"]["rejected"].values()) == 0, st["records"]
    assert a.stop() == 0


def test_levels_checked_before_sending():
    tmp = TempDir("send-level")
    sink = Sink(tmp).start()
    a = Agent(tmp, sink.target).start()
    rc, out, err = send(a.socket, "--level", "loud", "x")
    assert rc == 2 and "--level must be TRACE, DEBUG, INFO, WARN (WARNING), ERROR or FATAL (CRITICAL)" in err, err
    assert "'loud'" in err, err
    for given, stored in (("trace", "TRACE"), ("CRITICAL", "FATAL"), ("Error", "ERROR"), ("info", "INFO")):
        rc, _, err = send(a.socket, "--level", given, "level " + given)
        assert rc == 0, (given, err)
    sink.wait_count(4)
    got = {e["message"]: e["level"] for e in sink.entries()}
    assert got == {"level trace": "TRACE", "level CRITICAL": "FATAL", "level Error": "ERROR", "level info": "INFO"}, got
    assert a.stats()["records"]["received"] == 4
    assert a.stop() == 0


def serve(path, behaviour):
    """A Unix socket server: 'http' answers an HTTP 400 to the first bytes, 'close' closes every connection at
    once, 'mute' reads everything and never answers nor closes (for 10 s). Returns the listening socket (closed by
    the caller)."""
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(4)

    def one():
        while True:
            try:
                c, _ = srv.accept()
            except OSError:
                return
            answer(c)

    def answer(c):
        if behaviour == "http":
            c.recv(4096)
            c.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        elif behaviour == "mute":  # reads to the end, then holds the connection open without a word
            c.settimeout(scaled(10))
            try:
                while c.recv(65536):
                    pass
                threading.Event().wait(scaled(10))  # a daemon thread holding the peer open; nobody waits on it
            except OSError:
                pass
        c.close()
    threading.Thread(target=one, daemon=True).start()
    return srv


def test_not_an_ingest_socket_is_an_error():
    tmp = TempDir("send-wrong")
    sink = Sink(tmp).start()
    a = Agent(tmp, sink.target).start()
    # the agent's own stats socket (an HTTP server waiting for a line end): exit 1, no record anywhere
    for stdin in (None, b"one\ntwo\nthree\n"):
        rc, _, err = send(a.stats_socket, *(() if stdin else ("hello",)), stdin=stdin)
        assert rc == 1 and a.stats_socket in err and "not logagentd's ingest socket" in err, (rc, err)
    # an HTTP server that answers
    srv = serve(tmp.file("http.sock"), "http")
    rc, _, err = send(tmp.file("http.sock"), "hello")
    srv.close()
    assert rc == 1 and 'answered "HTTP/1.1 400 Bad Request" (an HTTP server: the stats socket?)' in err, err
    # a peer that closes at once
    srv = serve(tmp.file("close.sock"), "close")
    rc, _, err = send(tmp.file("close.sock"), "hello")
    srv.close()
    assert rc == 1 and "closed the connection before confirming the records" in err, err
    # a peer that reads and never answers: --flush-timeout-ms bounds the wait
    srv = serve(tmp.file("mute.sock"), "mute")
    rc, _, err = send(tmp.file("mute.sock"), "--flush-timeout-ms", "300", "hello")
    srv.close()
    assert rc == 1 and "did not take or confirm the records within 300 ms" in err, err
    # nothing listening
    rc, _, err = send(tmp.file("none.sock"), "hello")
    assert rc == 1 and "cannot reach the agent at %s: No such file or directory" % tmp.file("none.sock") in err, err
    st = a.stats()
    assert st["records"]["received"] == 0 and st["connections"]["total"] == 0, st
    assert sink.count() == 0
    assert a.stop() == 0


def test_agent_restart_mid_stream_delivers_every_line():
    tmp = TempDir("send-restart")
    sink = Sink(tmp).start()
    a = Agent(tmp, sink.target).start()
    p = spawn([SEND, "--socket", a.socket, "--service", "restart"], stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    for i in range(500):
        p.stdin.write(b"first %d\n" % i)
    p.stdin.flush()
    wait_for(lambda: a.stats()["records"]["received"] == 500, 30, "the first agent read the first half")
    assert a.stop() == 0  # drains to the sink and closes the connection under logagent-send
    b = Agent(tmp, sink.target, name="agent").start()  # same socket path, a new process
    for i in range(500):
        p.stdin.write(b"second %d\n" % i)
    p.stdin.close()
    rc = p.wait(timeout=scaled(60))
    err = p.stderr.read().decode()
    assert rc == 0 and err == "", (rc, err)
    want = {"first %d" % i for i in range(500)} | {"second %d" % i for i in range(500)}
    wait_for(lambda: {e["message"] for e in sink.entries()} >= want, 30, "every line at the sink")
    got = [e["message"] for e in sink.entries()]
    assert set(got) == want, set(got) ^ want
    # at least once: the lines not yet confirmed when the first agent went away may arrive twice, never more
    dup = [m for m in set(got) if got.count(m) > 1]
    assert all(got.count(m) == 2 for m in dup), dup[:5]
    assert b.stats()["connections"]["total"] == 1
    assert b.stop() == 0


def test_record_too_large_is_named_and_the_rest_sent():
    tmp = TempDir("send-big")
    sink = Sink(tmp).start()
    a = Agent(tmp, sink.target).start()
    lines = b"small 1\n" + b"x" * (1100 * 1024) + b"\nsmall 2\n"
    rc, _, err = send(a.socket, stdin=lines)
    assert rc == 1 and "line 2: record too large (limit 1048576 bytes): not sent" in err, err
    sink.wait_count(2)
    assert sorted(e["message"] for e in sink.entries()) == ["small 1", "small 2"]
    assert sum(a.stats()["records"]["rejected"].values()) == 0
    assert a.stop() == 0


def test_sigpipe_free_when_the_agent_dies_first():
    """The agent killed (SIGKILL) under a sender that already got an answer: logagent-send reconnects for its
    re-sends, finds nobody within --flush-timeout-ms, says so and exits 1 (no SIGPIPE death)."""
    tmp = TempDir("send-kill")
    sink = Sink(tmp).start()
    a = Agent(tmp, sink.target).start()
    p = spawn([SEND, "--socket", a.socket, "--flush-timeout-ms", "500"], stdin=subprocess.PIPE,
              stderr=subprocess.PIPE)
    for i in range(600):  # over 1 MiB in one stream: a sync is answered on the way
        p.stdin.write(b"line %d %s\n" % (i, b"y" * 2000))
    p.stdin.flush()
    wait_for(lambda: a.stats()["forward"]["acks"] >= 1, 30, "a sync answered mid-stream")
    a.kill()
    p.stdin.write(b"after the agent died\n")
    p.stdin.close()
    rc = p.wait(timeout=scaled(30))
    err = p.stderr.read().decode()
    assert rc == 1 and rc != -signal.SIGPIPE and a.socket in err, (rc, err)


def socket_fds(pid):
    """How many sockets the process holds open (from /proc)."""
    n = 0
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            n += os.readlink("/proc/%d/fd/%s" % (pid, fd)).startswith("socket:")
        except OSError:
            pass
    return n


def test_agent_gone_at_a_quiet_second_sync_is_reconnected():
    """The agent stops while a slow stream is quiet: the quiet-second sync finds the connection closed, and
    logagent-send reconnects (waiting for the new agent) and re-sends what was not confirmed."""
    tmp = TempDir("send-quiet")
    sink = Sink(tmp).start()
    a = Agent(tmp, sink.target).start()
    p = spawn([SEND, "--socket", a.socket], stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdin.write(b"one\n")
    p.stdin.flush()
    wait_for(lambda: a.stats()["forward"]["acks"] == 1, 30, "the quiet-second sync answered")
    p.stdin.write(b"two\n")
    p.stdin.flush()
    wait_for(lambda: a.stats()["records"]["received"] == 2, 30, "the second line read")
    assert a.stop() == 0
    # the next quiet-second sync meets the closed connection: logagent-send drops it and waits for an agent
    wait_for(lambda: socket_fds(p.pid) == 0, 30, "logagent-send noticed the agent was gone")
    b = Agent(tmp, sink.target, name="agent").start()
    p.stdin.write(b"three\n")
    p.stdin.close()
    rc = p.wait(timeout=scaled(60))
    err = p.stderr.read().decode()
    assert rc == 0 and err == "", (rc, err)
    wait_for(lambda: {e["message"] for e in sink.entries()} == {"one", "two", "three"}, 30, "all three lines")
    assert b.stop() == 0


def test_full_backlog_waits_for_the_agent():
    """A listener whose backlog is full (an agent that paused accepting) makes connect() fail with EAGAIN on a
    non-blocking socket: logagent-send waits for room instead of failing. The listener here is a stand-in that
    answers the sync as logagentd does ({"ack": chunk}); what is tested is the client's connect."""
    tmp = TempDir("send-backlog")
    path = tmp.file("busy.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(0)
    fillers = []
    while True:  # fill the backlog until a non-blocking connect is refused with EAGAIN
        c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        c.setblocking(False)
        try:
            c.connect(path)
        except BlockingIOError:
            c.close()
            break
        fillers.append(c)
    p = spawn([SEND, "--socket", path, "--flush-timeout-ms", str(int(scaled(20000))), "waited"],
              stderr=subprocess.PIPE)
    t0 = time.monotonic()  # a client that gives up on EAGAIN exits within milliseconds: watch it for half a second
    wait_for(lambda: p.poll() is not None or time.monotonic() - t0 > 0.5, 10, "half a second of logagent-send")
    assert p.poll() is None, "logagent-send gave up on a full backlog: %s" % p.stderr.read().decode()
    for _ in fillers:  # room comes back: accept and drop the fillers, then serve logagent-send
        srv.accept()[0].close()
    conn, _ = srv.accept()
    conn.settimeout(scaled(20))
    got = b""
    while b"chunk" not in got or len(got) < got.index(b"chunk") + 6 + (got[got.index(b"chunk") + 5] & 0x1f):
        data = conn.recv(65536)
        assert data, "logagent-send closed before its sync: %r" % got
        got += data
    k = got.index(b"chunk") + 5
    chunk = got[k + 1:k + 1 + (got[k] & 0x1f)]
    assert b"waited" in got, got
    conn.sendall(b"\x81\xa3ack" + bytes([0xa0 | len(chunk)]) + chunk)
    rc = p.wait(timeout=scaled(30))
    err = p.stderr.read().decode()
    conn.close()
    srv.close()
    assert rc == 0 and err == "", (rc, err)


if __name__ == "__main__":
    run([test_record_arrives_confirmed_over_one_connection, test_levels_checked_before_sending,
         test_not_an_ingest_socket_is_an_error, test_agent_restart_mid_stream_delivers_every_line,
         test_record_too_large_is_named_and_the_rest_sent, test_sigpipe_free_when_the_agent_dies_first,
         test_agent_gone_at_a_quiet_second_sync_is_reconnected, test_full_backlog_waits_for_the_agent])
