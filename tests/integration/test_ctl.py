"""test_ctl.py — logagentctl against a real agent and sink: `stats` (--json equals /stats, the table shows the same
numbers), `watch` (rates from deltas, text and JSON, --count, an agent restart, Ctrl-C), `health` (exit 0, exit 1 with the reason once the sink
is gone, 0 again when it returns, exit 1 naming the socket when there is no agent), `metrics`, `clients`, the TCP
endpoint of --metrics-listen, LOGAGENT_STATS_SOCKET, --timeout, answers that are not what the agent sends (the
client's HTTP framing), and exit 2 naming the bad flag or command."""
import json
import os
import re
import signal
import socket
import subprocess
import threading

from harness import BIN, Agent, Sink, TempDir, http_get, run, scaled, send_records, spawn, wait_for

CTL = os.path.join(BIN, "logagentctl")
SEND = os.path.join(BIN, "logagent-send")


def ctl(*args, env=None, timeout=30):
    """Runs logagentctl to completion; returns (exit status, stdout, stderr)."""
    p = subprocess.run([CTL] + list(args), capture_output=True, text=True, timeout=scaled(timeout), env=env)
    return p.returncode, p.stdout, p.stderr


def ctl_at(agent, *args, **kw):
    return ctl("--stats-socket", agent.stats_socket, *args, **kw)


def send_lines(agent, n, service):
    p = subprocess.run([SEND, "--socket", agent.socket, "--service", service],
                       input="".join("line %d\n" % i for i in range(n)), capture_output=True, text=True,
                       timeout=scaled(60))
    assert p.returncode == 0, p.stderr


def without_clock(st):
    """/stats minus the values that move with time alone."""
    st = dict(st)
    st.pop("uptime_seconds")
    st.pop("backpressure_seconds")
    return st


def test_stats_json_and_table_match_the_socket():
    tmp = TempDir("ctl-stats")
    sink = Sink(tmp).start()
    a = Agent(tmp, sink.target, "--flush-interval-ms", "10").start()
    send_records(a.socket, [{"message": "good %d" % i} for i in range(250)] + [[1, 2], {"no": "message"}, 7])
    st = a.wait_flushed(250)
    wait_for(lambda: a.stats()["records"]["rejected"]["invalid_record"] == 3, 10, "3 invalid records counted")
    st = a.stats()
    rc, out, err = ctl_at(a, "stats", "--json")
    assert rc == 0, err
    doc = json.loads(out)
    assert without_clock(doc) == without_clock(st), (doc, st)
    assert doc["records"]["received"] == 250 and doc["records"]["rejected"]["invalid_record"] == 3, doc

    rc, out, err = ctl_at(a, "stats")
    assert rc == 0, err
    def value(label):
        m = re.search(r"^  %s +(\S+)" % label, out, re.M)
        assert m, "no '%s' row in:\n%s" % (label, out)
        return m.group(1)
    assert value("received") == "250" and value("flushed") == "250" and value("held") == "0", out
    assert value("rejected") == "3" and "invalid_record 3" in out and value("dropped") == "0", out
    assert value("bytes received") == str(st["bytes_received"]), out
    assert value("total") == str(st["connections"]["total"]) and value("batches sent") == str(st["batches"]["sent"])
    assert value("state") == "ok" and value("target") == sink.target and value("mode") == "batch", out
    assert out.startswith("logagentd at %s, up " % a.stats_socket), out
    assert a.stop() == 0


def test_watch_rates_while_a_sender_runs():
    tmp = TempDir("ctl-watch")
    sink = Sink(tmp, "--quiet").start()
    a = Agent(tmp, sink.target).start()
    sender = spawn([SEND, "--socket", a.socket, "--service", "watched"], stdin=subprocess.PIPE,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    stop = threading.Event()

    def feed():  # keeps records flowing until the watch is done
        chunk = b"".join(b"watch line %d\n" % i for i in range(200))
        while not stop.is_set():
            sender.stdin.write(chunk)
            sender.stdin.flush()
    t = threading.Thread(target=feed)
    t.start()
    try:
        wait_for(lambda: a.stats()["records"]["received"] > 0, 30, "records flowing")
        rc, out, err = ctl_at(a, "watch", "--count", "2", "--interval", "0.2", "--json")
        rc_text, text, err_text = ctl_at(a, "watch", "--count", "2", "--interval", "0.2")
    finally:
        stop.set()
        t.join()
        sender.stdin.close()
    assert sender.wait(timeout=scaled(60)) == 0, sender.stderr.read()
    assert rc == 0, err
    lines = out.splitlines()
    assert len(lines) == 2, out
    objs = [json.loads(l) for l in lines]
    names = {"records_received", "records_flushed", "bytes_received", "records_dropped", "records_rejected",
             "batches_sent"}
    for o in objs:
        assert set(o["rates"]) == names and all(v >= 0 for v in o["rates"].values()), o["rates"]
        assert o["rates"]["records_received"] > 0 and o["rates"]["bytes_received"] > 0, o["rates"]
        assert o["interval_seconds"] > 0 and "records" in o["stats"], o
    # the second rate is exactly the delta between the two documents over the agent's own clock
    a0, a1 = objs[0]["stats"], objs[1]["stats"]
    delta = a1["records"]["received"] - a0["records"]["received"]
    dt = a1["uptime_seconds"] - a0["uptime_seconds"]
    assert abs(objs[1]["rates"]["records_received"] - delta / dt) < 1e-6 * max(1, delta / dt), (objs[1], delta, dt)
    assert abs(objs[1]["interval_seconds"] - dt) < 1e-9, (objs[1]["interval_seconds"], dt)
    assert rc_text == 0, err_text
    assert "\033[" not in text, "screen control codes when stdout is not a terminal"
    blocks = [b for b in text.split("\n\n") if b.strip()]
    assert text.count("per second") == 2 and re.search(r"^received +\d+\.\d +\d+$", text, re.M), text
    assert len(re.findall(r"logagentd at %s, up " % re.escape(a.stats_socket), text)) == 2, blocks
    assert a.stop() == 0


def test_watch_outlives_an_agent_restart_and_stops_on_ctrl_c():
    tmp = TempDir("ctl-restart")
    sink = Sink(tmp).start()
    a = Agent(tmp, sink.target).start()
    out_path, err_path = tmp.file("watch.out"), tmp.file("watch.err")
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        w = spawn([CTL, "--stats-socket", a.stats_socket, "watch", "--interval", "0.1", "--json"], stdout=out,
                  stderr=err)

    def refreshes():
        with open(out_path) as f:
            return [json.loads(l) for l in f if l.endswith("\n")]

    def stderr():
        with open(err_path) as f:
            return f.read()
    wait_for(lambda: refreshes(), 10, "a first refresh")
    assert a.stop() == 0
    wait_for(lambda: "cannot connect to %s" % a.stats_socket in stderr(), 10, "watch saying the agent is gone")
    assert w.poll() is None, "watch gave up: %s" % stderr()
    n = len(refreshes())
    b = Agent(tmp, sink.target, name="b")
    b.socket, b.stats_socket = a.socket, a.stats_socket
    b.start()
    wait_for(lambda: len(refreshes()) >= n + 2, 20, "two refreshes from the new agent")
    first, second = refreshes()[n:n + 2]
    assert first["rates"] is None and first["interval_seconds"] is None, first  # no baseline after a failure
    assert second["rates"] and all(v >= 0 for v in second["rates"].values()), second
    w.send_signal(signal.SIGINT)
    rc = w.wait(timeout=scaled(10))
    assert rc == 0, (rc, stderr())
    assert b.stop() == 0


def test_health_follows_the_sink():
    tmp = TempDir("ctl-health")
    sink = Sink(tmp).start()
    a = Agent(tmp, sink.target, "--health-failing-ms", "1000", "--retry-initial-ms", "50", "--retry-max-ms",
              "200").start()
    rc, out, err = ctl_at(a, "health")
    assert (rc, out) == (0, "ok\n"), (rc, out, err)
    port = sink.port
    sink.stop()
    send_records(a.socket, [{"message": "waits for the sink"}])
    wait_for(lambda: ctl_at(a, "health")[1].startswith("unhealthy: "), 30, "health says unhealthy, sink gone")
    rc, out, err = ctl_at(a, "health")
    assert rc == 1 and out.startswith("unhealthy: upstream failing for ") and err == "", (rc, out, err)
    rc, out, _ = ctl_at(a, "health", "--json")
    doc = json.loads(out)
    assert rc == 1 and doc["healthy"] is False and doc["status"] == 503, doc
    assert doc["reasons"] and doc["reasons"][0].startswith("upstream failing for "), doc
    # readiness is "the agent accepts records": an outage of the log service never takes the pod out of service
    rc, out, err = ctl_at(a, "ready")
    assert rc == 0 and out.startswith("ready: accepting records on %s (" % a.socket) and err == "", (rc, out, err)
    status, body = http_get(a.stats_socket, "/readyz")
    assert status == 200 and body.startswith("ready: "), (status, body)
    send_records(a.socket, [{"message": "accepted while unhealthy"}])
    wait_for(lambda: a.stats()["records"]["received"] == 2, 10, "a record accepted while unhealthy")
    Sink(tmp, port=port, name="sink2").start()
    wait_for(lambda: ctl_at(a, "health")[0] == 0, 30, "health exits 0 with the sink back")
    rc, out, _ = ctl_at(a, "health", "--json")
    assert rc == 0 and json.loads(out) == {"healthy": True, "status": 200, "reasons": []}, out
    assert a.stop() == 0
    rc, out, err = ctl_at(a, "ready")  # a stopped agent is not ready
    assert rc == 1 and out == "" and a.stats_socket in err, (rc, out, err)


def test_unreachable_agent_is_named():
    tmp = TempDir("ctl-gone")
    missing = tmp.file("no-agent.sock")
    for cmd in ("health", "ready", "stats", "metrics", "clients", "watch"):
        rc, out, err = ctl("--stats-socket", missing, cmd)
        assert rc == 1 and out == "", (cmd, rc, out)
        assert missing in err and "No such file or directory" in err, (cmd, err)
    # a socket that accepts but never answers: --timeout bounds the wait
    mute = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    mute.bind(tmp.file("mute.sock"))
    mute.listen(8)
    rc, _, err = ctl("--stats-socket", tmp.file("mute.sock"), "--timeout", "0.3", "stats", timeout=10)
    mute.close()
    assert rc == 1 and "no complete answer within 0.3s" in err, (rc, err)


def answer_once(path, reply):
    """Serves one connection on a Unix socket: reads the request head, sends `reply` bytes, closes. Returns the
    thread (joined by the caller) and a list that receives the request."""
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(1)
    got = []

    def serve():
        conn, _ = srv.accept()
        conn.settimeout(scaled(10))
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(4096)
            if not chunk:
                break
            data += chunk
        got.append(data)
        conn.sendall(reply)
        conn.close()
        srv.close()
    t = threading.Thread(target=serve)
    t.start()
    return t, got


def test_answers_that_are_not_what_the_agent_sends():
    """The client's HTTP framing: chunked bodies, a body cut short, a peer that is not HTTP, an HTTP error."""
    tmp = TempDir("ctl-http")
    doc = json.dumps({"uptime_seconds": 1.0, "records": {"received": 7, "flushed": 5}})
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in (doc[:10].encode(), doc[10:].encode())) + b"0\r\n\r\n"
    cases = [
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked, 0, r"^  received +7 "),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n" + doc.encode(), 1, "body cut short"),
        (b"SSH-2.0-OpenSSH_9.2\r\n", 1, "not HTTP"),
        (b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nno such\r\n", 1, "HTTP 404 Not Found: no such"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n[1]\n", 1, "not a JSON object"),
    ]
    for i, (reply, want_rc, needle) in enumerate(cases):
        path = tmp.file("fake%d.sock" % i)
        t, got = answer_once(path, reply)
        rc, out, err = ctl("--stats-socket", path, "stats")
        t.join(timeout=scaled(10))
        assert got and got[0].startswith(b"GET /stats HTTP/1.1\r\n") and b"Connection: close" in got[0], got
        assert rc == want_rc and re.search(needle, out if rc == 0 else err, re.M), (reply, rc, out, err)
        assert rc == 0 or path in err, err


def test_metrics_clients_and_tcp():
    tmp = TempDir("ctl-metrics")
    sink = Sink(tmp).start()
    a = Agent(tmp, sink.target, "--flush-interval-ms", "10", "--metrics-listen", "127.0.0.1:0").start()
    send_lines(a, 40, "ctl-test-service")
    a.wait_flushed(40)
    rc, out, err = ctl_at(a, "metrics")
    assert rc == 0, err
    assert re.search(r"^logagent_records_received_total 40$", out, re.M), out
    assert "# TYPE logagent_records_received_total counter" in out, out

    rc, out, err = ctl_at(a, "clients")
    assert rc == 0, err
    row = [l for l in out.splitlines() if "ctl-test-service" in l]
    assert len(row) == 1 and re.search(r"\s40\s", row[0]), out  # (comm may be empty: the sender is gone)
    assert out.splitlines()[0].split()[:5] == ["PID", "UID", "GID", "COMM", "SERVICE"], out
    rc, out, err = ctl_at(a, "clients", "--json", "--top", "1")
    doc = json.loads(out)
    assert rc == 0 and len(doc["clients"]) == 1, out
    c = doc["clients"][0]
    assert c["service_name"] == "ctl-test-service" and c["records"] == 40 and c["connections"] >= 1, c

    addr = wait_for(lambda: re.search(r'msg="metrics listening" address=(\S+)', a.logtext()), 10, "TCP address")
    tcp = addr.group(1)
    rc, out, err = ctl("--stats-socket", tcp, "stats", "--json")
    assert rc == 0 and json.loads(out)["records"]["received"] == 40, (rc, out, err)
    rc, out, err = ctl("--stats-socket", tcp, "health")
    assert (rc, out) == (0, "ok\n"), (rc, out, err)
    assert a.stop() == 0


def test_environment_chooses_the_socket():
    tmp = TempDir("ctl-env")
    sink = Sink(tmp).start()
    a = Agent(tmp, sink.target).start()
    env = dict(os.environ, LOGAGENT_STATS_SOCKET=a.stats_socket)
    rc, out, err = ctl("stats", "--json", env=env)
    assert rc == 0 and json.loads(out)["records"]["received"] == 0, (rc, out, err)
    elsewhere = dict(os.environ, LOGAGENT_STATS_SOCKET=tmp.file("elsewhere.sock"))
    rc, out, err = ctl("health", env=elsewhere)
    assert rc == 1 and tmp.file("elsewhere.sock") in err, (rc, err)
    rc, out, err = ctl("--stats-socket", a.stats_socket, "health", env=elsewhere)  # the flag wins
    assert (rc, out) == (0, "ok\n"), (rc, out, err)
    rc, _, err = ctl("stats", env=dict(os.environ, LOGAGENT_STATS_SOCKET="host:port"))
    assert rc == 2 and "LOGAGENT_STATS_SOCKET" in err and "host:port" in err, (rc, err)
    assert a.stop() == 0


def test_usage():
    rc, out, _ = ctl("--help")
    assert rc == 0 and all(w in out for w in ("stats", "watch", "health", "ready", "metrics", "clients", "--stats-socket",
                                               "LOGAGENT_STATS_SOCKET", "--timeout", "--json")), out
    rc, out, _ = ctl("--version")
    assert rc == 0 and re.fullmatch(r"logagentctl \d+\.\d+\.\d+\n", out), out
    cases = [
        ((), "missing COMMAND"),
        (("frobnicate",), "frobnicate"),
        (("stats", "extra"), "extra"),
        (("--no-such-flag", "stats"), "--no-such-flag"),
        (("watch", "--interval", "0"), "--interval"),
        (("watch", "--count", "-1"), "--count"),
        (("clients", "--top", "many"), "--top"),
        (("stats", "--top", "3"), "--top does not apply to stats"),
        (("metrics", "--json"), "--json does not apply to metrics"),
        (("--timeout", "soon", "health"), "--timeout"),
        (("--stats-socket", "host:notaport", "stats"), "host:notaport"),
        (("stats", "--timeout"), "--timeout"),
    ]
    for args, needle in cases:
        rc, out, err = ctl(*args)
        assert rc == 2 and needle in err and out == "", (args, rc, err)


if __name__ == "__main__":
    run([test_usage, test_unreachable_agent_is_named, test_answers_that_are_not_what_the_agent_sends,
         test_stats_json_and_table_match_the_socket,
         test_environment_chooses_the_socket, test_metrics_clients_and_tcp, test_watch_rates_while_a_sender_runs,
         test_watch_outlives_an_agent_restart_and_stops_on_ctrl_c, test_health_follows_the_sink])
