"""test_client.py — the Python client `logagent` against a real agent and a real sink: write_log's fields arrive
exactly (every field, nested metadata, the returned log_id) with the original's result dict; each error row
(agent socket missing with a tiny buffer, a write that would wait, oversized, non-string message, nesting too
deep, closed client); 1,000 records from 8 threads arrive exactly once; os.fork() under a busy writer (each
child writes through its own connection: the sink sees the child's pid); a record cut by a hang-up is sent
again whole on the next connection, a fully written one never; the agent SIGKILLed and restarted
under a running writer (what was written while it was down arrives after it returns, nothing twice); a
process that exits without flushing still delivers (a multiprocessing child too, which skips atexit), and one
whose agent is down exits within the exit flush.

Runs with Debian's /usr/bin/python3 and python3-msgpack; the module comes from client-shim/python (PYTHONPATH,
or the path below when run by hand)."""
import datetime
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
sys.path.insert(0, os.path.join(HERE, "..", "..", "client-shim", "python"))

import logagent  # noqa: E402
from harness import SLOW, Agent, Sink, TempDir, run, scaled, spawn, wait_for  # noqa: E402

PY = "/usr/bin/python3"
PYPATH = os.path.join(HERE, "..", "..", "client-shim", "python")


def pair(name, *agent_args):
    tmp = TempDir(name)
    sink = Sink(tmp).start()
    a = Agent(tmp, sink.target, "--flush-interval-ms", "10", *agent_args).start()
    return tmp, sink, a


def by_message(sink):
    return {e["message"]: e for e in sink.entries()}


def test_write_log_fields_arrive_exactly():
    tmp, sink, a = pair("fields")
    c = logagent.Client(a.socket)
    t0 = time.time_ns()
    r = c.write_log("user logged in", service_name="auth", level="warning", trace_id="trace-1", span_id="span-1",
                    adv_id=1234567, ratio=0.85, ok=True, none=None, blob=b"\x00\x01\xff",
                    custom_metrics={"cpu_usage": 0.85, "nested": {"tags": ["a", 1, None], "deep": {"x": False}}},
                    when=datetime.datetime(2024, 8, 30, 10, 30, 45, tzinfo=datetime.timezone.utc),
                    big=1 << 70, log_id="ignored: the client makes the id", unicode="žluťoučký kůň")
    t1 = time.time_ns()
    assert set(r) == {"success", "log_id", "error_message"}, r
    assert r["success"] is True and r["error_message"] == "" and re.fullmatch("[0-9a-f]{32}", r["log_id"]), r
    r2 = c.write_log("with its own time", timestamp="2024-08-30T10:30:45.123456+00:00", level=None)
    r3 = c.write_log("datetime time", timestamp=datetime.datetime(2024, 8, 30, 10, 30, 45, 5,
                                                                  tzinfo=datetime.timezone.utc), level="Critical")
    levels = {"lv debug": "debug", "lv trace": "TRACE", "lv error": "Error", "lv empty": "", "lv bogus": "bogus"}
    for msg, lv in levels.items():
        assert c.write_log(msg, level=lv)["success"]
    assert c.write_log("reserved", _pid=1, kept="yes")["success"]
    assert c.flush(scaled(10)) is True
    sink.wait_count(9)
    got = by_message(sink)
    e = got["user logged in"]
    assert e["log_id"] == r["log_id"] and e["service_name"] == "auth" and e["level"] == "WARN", e
    assert e["trace_id"] == "trace-1" and e["span_id"] == "span-1", e
    assert t0 <= e["timestamp_unix_nano"] <= t1, (t0, e["timestamp_unix_nano"], t1)
    assert e["metadata"] == {
        "adv_id": "1234567", "ratio": "0.85", "ok": "true", "none": "", "blob": "AAH/",
        "custom_metrics": '{"cpu_usage":0.85,"nested":{"tags":["a",1,null],"deep":{"x":false}}}',
        "when": "2024-08-30T10:30:45+00:00", "big": "1180591620717411303424", "unicode": "žluťoučký kůň"}, e
    assert e["source"]["pid"] == os.getpid(), e["source"]
    e2 = got["with its own time"]
    assert e2["log_id"] == r2["log_id"] and e2["timestamp_unix_nano"] == 1725013845123456000, e2
    assert e2["level"] == "INFO" and not e2.get("metadata"), e2
    e3 = got["datetime time"]
    assert e3["timestamp_unix_nano"] == 1725013845000005000 and e3["level"] == "FATAL", e3
    assert e3["log_id"] == r3["log_id"]
    assert {m: got[m]["level"] for m in levels} == {"lv debug": "DEBUG", "lv trace": "TRACE", "lv error": "ERROR",
                                                    "lv empty": "INFO", "lv bogus": "bogus"}, got
    assert got["reserved"]["metadata"] == {"kept": "yes"}, got["reserved"]
    st = a.stats()["records"]
    assert st["level_unknown"] == 1 and st["rejected"]["reserved_key"] == 1, st
    cs = c.get_stats()
    assert (cs["written"], cs["sent"], cs["dropped"], cs["rejected"], cs["buffered_bytes"]) == (9, 9, 0, 0, 0), cs
    assert c.close() is True
    assert a.stop() == 0


def test_error_rows():
    tmp, sink, a = pair("errors")
    missing = tmp.file("missing.sock")
    c = logagent.Client(missing, buffer_bytes=1024)
    assert c.write_log("first")["success"]
    wait_for(lambda: c.get_stats()["last_error"], 10, "a failed connect")
    results = [c.write_log("filler %03d" % i) for i in range(40)]
    failed = [r for r in results if not r["success"]]
    assert failed and results[0]["success"], results
    assert failed[0] == {"success": False, "log_id": "", "error_message":
                         "logagent buffer full (agent down: cannot connect to %s: No such file or directory): "
                         "record dropped" % missing}, failed[0]
    st = c.get_stats()
    assert st["dropped"] == len(failed) and st["written"] == 1 + 40 - len(failed) and not st["connected"], st
    t0 = time.monotonic()
    assert not c.write_log("no wait")["success"]
    assert time.monotonic() - t0 < 0.5  # default block_timeout 0: a full buffer never makes the caller wait
    c.close(timeout=0)

    w = logagent.Client(missing, buffer_bytes=1024, block_timeout=0.3)
    while w.write_log("waiter " + "w" * 100)["success"]:
        pass
    t0 = time.monotonic()
    r = w.write_log("waits 0.3 s")
    waited = time.monotonic() - t0
    assert not r["success"] and 0.29 <= waited < scaled(3), (r, waited)
    w.close(timeout=0)

    g = logagent.Client(a.socket)
    big = g.write_log("x" * (1 << 20))
    assert not big["success"] and big["log_id"] == "", big
    assert re.fullmatch(r"record too large \(1048\d\d\d bytes, limit 1048576\): record dropped",
                        big["error_message"]), big
    assert g.write_log(b"bytes")["error_message"] == "invalid argument: message must be a str, not bytes"
    assert g.write_log(42)["error_message"] == "invalid argument: message must be a str, not int"
    assert g.write_log(None)["error_message"] == "invalid argument: message is None"
    deep = {}
    cur = deep
    for _ in range(40):
        cur["d"] = {}
        cur = cur["d"]
    cur["leaf"] = 1
    r = g.write_log("too deep", tree=deep)
    assert r["error_message"] == ("metadata 'tree' is nested deeper than 31 levels (the agent's limit): "
                                  "record dropped"), r
    ok = g.write_log("after the refusals", size=len("x" * 1000))
    assert ok["success"] and g.flush(scaled(10))
    sink.wait_count(1)
    assert [e["log_id"] for e in sink.entries()] == [ok["log_id"]]  # the connection went on
    assert g.get_stats()["rejected"] == 5, g.get_stats()
    assert g.close() is True
    assert g.write_log("after close")["error_message"] == "logagent client closed: record dropped"
    try:
        logagent.Client("/tmp/" + "x" * 200)
        raise AssertionError("a 205-byte socket path was accepted")
    except ValueError as e:
        assert "longer than 107 bytes" in str(e), e
    assert a.stop() == 0


def test_8_threads_1000_records_exactly_once():
    tmp, sink, a = pair("threads")
    logagent.configure(socket_path=a.socket)
    ids = [[] for _ in range(8)]

    def writer(k):
        for i in range(125):
            r = logagent.write_log("t%d-%03d" % (k, i), service_name="threads", level="INFO", worker=k, i=i)
            assert r["success"], r
            ids[k].append(r["log_id"])

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert logagent.flush(scaled(10)) is True
    sink.wait_count(1000)
    st = a.wait_flushed(1000)
    summary = sink.stop()
    sent = {i for part in ids for i in part}
    assert len(sent) == 1000 and all(len(part) == 125 for part in ids), len(sent)
    assert summary["entries"] == 1000 and summary["unique_log_ids"] == 1000 and summary["duplicates"] == 0, summary
    assert {e["log_id"] for e in sink.entries()} == sent
    assert st["connections"]["total"] == 1, st["connections"]  # one process, one connection
    stats = logagent.get_stats()
    assert stats["sent"] == 1000 and stats["dropped"] == 0 and stats["reconnects"] == 0, stats
    assert logagent.close() is True
    assert a.stop() == 0


def _child(k, n):
    """In a forked child: n records through the inherited process-wide client, then _exit (never return)."""
    code = 3
    try:
        ok = all(logagent.write_log("child-%d-%03d" % (k, i), service_name="forked", child=k)["success"]
                 for i in range(n))
        code = 0 if ok and logagent.flush(scaled(10)) else 2
    finally:
        os._exit(code)


def test_fork_child_writes_through_its_own_connection():
    tmp, sink, a = pair("fork")
    logagent.configure(socket_path=a.socket)
    stop = threading.Event()
    parent_ids = []

    def busy_writer():  # keeps the client's lock and sender busy while the main thread forks
        i = 0
        while not stop.is_set():
            r = logagent.write_log("parent-%06d" % i, service_name="parent")
            if r["success"]:
                parent_ids.append(r["log_id"])
            i += 1

    t = threading.Thread(target=busy_writer)
    t.start()
    wait_for(lambda: logagent.get_stats()["sent"] >= 100, 10, "the parent's first records sent")
    kids = {}
    for k in range(4):
        pid = os.fork()
        if pid == 0:
            _child(k, 100)
        kids[pid] = k
    status = {}

    def reaped():
        for pid in kids:
            if pid not in status:
                got, st = os.waitpid(pid, os.WNOHANG)
                if got:
                    status[pid] = st
        return len(status) == len(kids)

    try:
        wait_for(reaped, 20, "the forked children to exit (a child deadlocked on an inherited lock?)")
    finally:
        for pid in kids:
            if pid not in status:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
    stop.set()
    t.join()
    assert all(os.waitstatus_to_exitcode(st) == 0 for st in status.values()), status
    assert logagent.flush(scaled(10)) is True
    total = len(parent_ids) + 400
    sink.wait_count(total)
    a.wait_flushed(total)
    summary = sink.stop()
    assert summary["entries"] == total and summary["duplicates"] == 0, (summary, total)
    entries = sink.entries()
    for e in entries:
        if e["message"].startswith("child-"):
            k = int(e["message"].split("-")[1])
            assert kids[e["source"]["pid"]] == k and e["metadata"] == {"child": str(k)}, e
        else:
            assert e["source"]["pid"] == os.getpid(), e
    assert sum(e["message"].startswith("child-") for e in entries) == 400
    assert {e["log_id"] for e in entries if e["message"].startswith("parent-")} == set(parent_ids)
    assert a.stats()["connections"]["total"] == 5  # the parent's connection and one per child
    assert logagent.close() is True
    assert a.stop() == 0


def test_fork_with_records_waiting_in_the_buffer():
    """Records waiting in the client's buffer (the agent not there yet) when the process forks: the child starts
    with an empty buffer and zero counters, and its records are its own; the parent's stay the parent's, untouched,
    and arrive when the agent comes. The buffer is the C one (logagent._speedups.Buffer) in the python_client run,
    _client._PyBuffer in the pure one."""
    tmp = TempDir("forkbuf")
    sink = Sink(tmp).start()
    a = Agent(tmp, sink.target, "--flush-interval-ms", "10")  # not started yet: its socket is not there
    c = logagent.Client(a.socket)
    want = "Buffer" if logagent.implementation == "c" else "_PyBuffer"
    assert type(c._buf).__name__ == want, type(c._buf)
    ids = [c.write_log("pre-%03d" % i, service_name="forkbuf")["log_id"] for i in range(50)]
    assert all(ids), ids
    before = c.get_stats()
    assert before["written"] == 50 and before["sent"] == 0 and before["buffered_bytes"] > 0, before
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 3
        try:
            os.close(r)
            st0 = c.get_stats()
            ok = [c.write_log("child-%d" % i)["success"] for i in range(5)]
            os.write(w, json.dumps([st0, ok, c.get_stats()]).encode())
            code = 0
        finally:
            os._exit(code)  # no exit flush: the child's records never reach the agent
    os.close(w)
    with os.fdopen(r, "rb") as f:
        child = json.loads(f.read().decode())
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
    st0, ok, st1 = child
    assert st0 == {"written": 0, "sent": 0, "dropped": 0, "rejected": 0, "reconnects": 0, "buffered_bytes": 0,
                   "connected": False, "last_error": "", "socket_path": a.socket}, st0
    assert all(ok) and st1["written"] == 5 and 0 < st1["buffered_bytes"] < before["buffered_bytes"], (ok, st1)
    after = c.get_stats()
    assert (after["written"], after["sent"], after["buffered_bytes"]) == (50, 0, before["buffered_bytes"]), after
    a.start()
    assert c.flush(scaled(10)) is True
    sink.wait_count(50)
    a.wait_flushed(50)
    summary = sink.stop()
    entries = sink.entries()
    assert summary["entries"] == 50 and summary["duplicates"] == 0, summary
    assert sorted(e["message"] for e in entries) == ["pre-%03d" % i for i in range(50)], entries[:3]
    assert {e["log_id"] for e in entries} == set(ids)
    st = c.get_stats()
    assert (st["written"], st["sent"], st["dropped"], st["buffered_bytes"]) == (50, 50, 0, 0), st
    assert c.close() is True
    assert a.stop() == 0


COUNTERS_SCRIPT = r"""
import json, sys, time
import logagent
c = logagent.Client(sys.argv[1], buffer_bytes=4096, max_record_bytes=2048)
out = [logagent.implementation, type(c._buf).__name__, c.write_log("first", timestamp=1)["success"]]
deadline = time.monotonic() + 20
while not c.get_stats()["last_error"] and time.monotonic() < deadline:  # the same words in both: "agent down: ..."
    time.sleep(0.01)
for i in range(60):
    r = c.write_log("record %03d" % i, timestamp=1, level="WARN", n=i, pad="p" * (i * 7 % 300))
    out.append([r["success"], r["error_message"], len(r["log_id"])])
out.append(c.write_log("x" * 3000, timestamp=1)["error_message"])
out.append(c.write_log(5)["error_message"])
out.append(c.get_stats())
out.append(c.flush(0.2))
out.append(c.close(0))
out.append(c.write_log("after", timestamp=1)["error_message"])
out.append(c.get_stats())
print(json.dumps(out))
"""


def test_counters_equal_in_both_implementations():
    """The same calls through a Client with the C buffer and one with the Python buffer, in two processes (agent
    down, a 4 KiB buffer filling up, a record too large, a bad message, flush, close, a write after close): the
    same results and the same get_stats() at each step."""
    if logagent.implementation != "c":
        print("   skip: the python_client run compares both")
        return
    tmp = TempDir("counters")
    missing = tmp.file("missing.sock")
    outs = {}
    for pure in ("0", "1"):
        env = dict(os.environ, LOGAGENT_PURE_PYTHON=pure)
        p = subprocess.run([PY, "-c", COUNTERS_SCRIPT, missing], env=env, capture_output=True, text=True,
                           timeout=scaled(60))
        assert p.returncode == 0, (pure, p.stderr)
        outs[pure] = json.loads(p.stdout)
    assert outs["0"][:2] == ["c", "Buffer"] and outs["1"][:2] == ["python", "_PyBuffer"], (outs["0"][:2],
                                                                                        outs["1"][:2])
    c_out, py_out = outs["0"][2:], outs["1"][2:]
    assert any(not r[0] for r in c_out[1:61]) and any(r[0] for r in c_out[1:61]), c_out  # some fit, some not
    for i, (x, y) in enumerate(zip(c_out, py_out)):
        assert x == y, "step %d:\nC:      %r\nPython: %r" % (i, x, y)
    assert len(c_out) == len(py_out)
    print("   %d steps alike; stats at the end: %r" % (len(c_out), c_out[-1]))


def test_log_ids_unique_without_a_system_call_each():
    """Log ids come from a generator of the client's own, seeded from the OS once per process (and again in a forked
    child: test_fork_child_writes_through_its_own_connection would see duplicates otherwise): 200,000 ids of one
    process are distinct 32-hex strings, and two processes whose application seeds Python's `random` with the same
    value still write different ids."""
    code = ("import logagent, random, sys; random.seed(42);"
            "ids = [logagent.write_log('x', service_name='ids')['log_id'] for _ in range(%d)];"
            "sys.stdout.write('\\n'.join(ids))")
    env = dict(os.environ, LOGAGENT_SOCKET="/nonexistent/agent.sock", LOGAGENT_CLIENT_EXIT_FLUSH_TIMEOUT_MS="0",
               LOGAGENT_CLIENT_BUFFER_BYTES="128MiB")  # no agent: every record waits in the buffer, none refused
    runs = [subprocess.run([sys.executable, "-c", code % n], capture_output=True, text=True, env=env, timeout=120)
            for n in (200000, 1000)]
    ids = [r.stdout.split() for r in runs]
    assert all(r.returncode == 0 for r in runs), [r.stderr[-500:] for r in runs]
    assert len(ids[0]) == 200000 and len(set(ids[0])) == 200000, len(set(ids[0]))
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids[0][:1000] + ids[1])
    assert not set(ids[0]) & set(ids[1])


class PacedWriter(threading.Thread):
    """Writes "w-%06d" about every millisecond (the pace is the scenario, not a synchronisation)."""

    def __init__(self, client):
        super().__init__()
        self.client, self.seq, self.stop, self.failed = client, 0, threading.Event(), []

    def run(self):
        while not self.stop.is_set():
            r = self.client.write_log("w-%06d" % self.seq, service_name="restart")
            if not r["success"]:
                self.failed.append(r)
            self.seq += 1
            time.sleep(0.001)


def test_agent_killed_and_restarted_under_a_running_writer():
    tmp, sink, a = pair("restart")
    c = logagent.Client(a.socket)
    w = PacedWriter(c)
    w.start()
    try:
        sink.wait_count(200)
        a.kill()  # SIGKILL: records in its socket buffer and ring are lost, nothing is drained
        down_from = w.seq  # from here on, every record is written while the agent is dead
        wait_for(lambda: w.seq >= down_from + 300 and not c.get_stats()["connected"], 20,
                 "300 records written while the agent is down")
        down_to = w.seq
        assert c.get_stats()["buffered_bytes"] > 0, c.get_stats()
        a2 = Agent(tmp, sink.target, "--flush-interval-ms", "10")
        a2.socket, a2.stats_socket = a.socket, a.stats_socket
        a2.start()
        wait_for(lambda: any(m >= "w-%06d" % (down_to + 200) for m in by_message(sink)), 20,
                 "records written after the restart")
    finally:
        w.stop.set()
        w.join()
    assert c.flush(scaled(10)) is True
    st = c.get_stats()
    seqs = sorted(int(e["message"][2:]) for e in sink.entries())
    wait_for(lambda: a2.stats()["records"]["flushed"] == a2.stats()["records"]["received"], 20, "agent idle")
    seqs = sorted(int(e["message"][2:]) for e in sink.entries())
    summary = sink.stop()
    missing = sorted(set(range(w.seq)) - set(seqs))
    assert not w.failed and st["dropped"] == 0 and st["reconnects"] >= 1, (w.failed[:1], st)
    assert summary["duplicates"] == 0 and len(seqs) == len(set(seqs)), summary
    assert all(m < down_from for m in missing), (missing[:10], down_from)  # lost only with the dead agent
    assert set(range(down_from, w.seq)) <= set(seqs)  # written while it was down, or after: all delivered
    print("     %d records, %d written while the agent was down, %d lost with the killed agent, %d reconnects"
          % (w.seq, down_to - down_from, len(missing), st["reconnects"]))
    assert c.close() is True
    assert a2.stop() == 0


def interrupt_the_wake(c):
    """A write_log whose wake of the idle sender is interrupted (a KeyboardInterrupt in the Condition's notify: in the
    C buffer's Client._wake, or in the pure client's Client._enqueue) after its record is queued: the sender sleeps
    on a record. Returns the stats after it."""
    from logagent import _client
    wait_for(lambda: c._buf.state == _client._IDLE, 10, "the sender idle")
    calls = []

    def interrupted():
        calls.append(1)
        del c._work.notify  # once
        raise KeyboardInterrupt

    c._work.notify = interrupted
    try:
        c.write_log("interrupted", service_name="wakeint")
        raise AssertionError("the interrupt did not reach the caller")
    except KeyboardInterrupt:
        pass
    assert calls == [1], calls
    return c.get_stats()


def test_an_interrupted_wake_strands_no_record():
    """A KeyboardInterrupt while a writer wakes the idle sender leaves its record queued (written counts it), and the
    sender asleep: flush() (and so close() and the exit flush) wakes it and delivers it; and, as docs/python.md says,
    the next write wakes it too (the pure client's state was left WAKING: no later writer woke it)."""
    tmp, sink, a = pair("wakeint")
    c = logagent.Client(a.socket)
    assert c.write_log("first", service_name="wakeint")["success"]
    assert c.flush(scaled(10)) is True
    st = interrupt_the_wake(c)
    assert (st["written"], st["sent"]) == (2, 1), st
    assert c.flush(scaled(5)) is True, c.get_stats()  # False before: nothing woke the sender
    st = interrupt_the_wake(c)
    assert (st["written"], st["sent"]) == (3, 2), st
    assert c.write_log("next", service_name="wakeint")["success"]
    wait_for(lambda: c.get_stats()["sent"] == 4, 10, "the next write to wake the sender")
    assert c.close() is True
    sink.wait_count(4)
    assert sorted(e["message"] for e in sink.entries()) == ["first", "interrupted", "interrupted", "next"]
    assert a.stop() == 0


def test_record_cut_by_a_disconnect_is_resent_whole_written_ones_never():
    """A listener that takes one whole record, then a part of a large one, and hangs up: the cut record reaches
    the real agent that replaces it, whole and once; the fully written one is not sent again."""
    import msgpack
    tmp = TempDir("cut")
    sink = Sink(tmp).start()
    path = tmp.file("ingest.sock")
    fake = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    fake.bind(path)
    fake.listen(1)
    fake.settimeout(scaled(10))
    c = logagent.Client(path)
    first = c.write_log("first, fully written")
    conn, _ = fake.accept()
    conn.settimeout(scaled(10))
    unpacker = msgpack.Unpacker(raw=False)
    while True:  # exactly the first record: it is complete on this connection
        unpacker.feed(conn.recv(1))
        got = list(unpacker)
        if got:
            break
    assert got[0]["log_id"] == first["log_id"], got
    wait_for(lambda: c.get_stats()["sent"] == 1, 10, "the first record counted as sent")
    big = c.write_log("second, cut", payload="p" * 900000)
    taken = 0
    while taken < 100000:  # part of the second record, then hang up
        taken += len(conn.recv(100000 - taken))
    fake.close()  # the listener first: the client must not reconnect to it in between
    conn.close()
    os.unlink(path)
    a = Agent(tmp, sink.target, "--flush-interval-ms", "10")
    a.socket = path
    a.start()
    third = c.write_log("third")
    assert c.flush(scaled(10)) is True
    sink.wait_count(2)
    st = a.wait_flushed(2)
    summary = sink.stop()
    got = {e["message"]: e for e in sink.entries()}
    assert sorted(got) == ["second, cut", "third"], sorted(got)  # the first was not sent again
    assert got["second, cut"]["log_id"] == big["log_id"] and got["second, cut"]["metadata"]["payload"] == "p" * 900000
    assert got["third"]["log_id"] == third["log_id"] and summary["duplicates"] == 0, summary
    assert st["records"]["rejected"]["truncated"] == 0 and st["connections"]["total"] == 1, st
    cs = c.get_stats()
    assert cs["sent"] == 3 and cs["reconnects"] == 1 and cs["dropped"] == 0, cs
    assert c.close() is True
    assert a.stop() == 0


def test_the_sender_takes_half_the_buffer_at_once():
    """Records queued while the agent is away go out in takes of half the buffer's bound (2 MiB of the default
    4 MiB), not 256 KiB: every take is one trip of the sender through the GIL, which 50 busy writer threads make
    long (issue #19). A listener that accepts and does not read holds a take in flight: its size is the client's
    bytes in flight. Then it reads them all: every record once, in order."""
    import msgpack
    from logagent import _client
    assert [_client.send_batch(n) for n in (1 << 10, 4 << 20, 64 << 20)] == [256 << 10, 2 << 20, 4 << 20]
    tmp = TempDir("take")
    path = tmp.file("ingest.sock")
    c = logagent.Client(path)  # the default bound, 4 MiB
    ids = [c.write_log("queued 0", payload="q" * 1000)["log_id"]]
    # The sender takes this one before it finds no agent (it then keeps it in flight through its backoff)
    wait_for(lambda: c._buf.io_left > 0, 10, "the first record taken")
    ids += [c.write_log("queued %d" % i, payload="q" * 1000)["log_id"] for i in range(1, 3000)]  # ~3.2 MiB
    assert all(ids), "a record was not queued"
    total = c._buf.buffered
    assert 3 << 20 < total < 4 << 20, total
    fake = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    fake.bind(path)
    fake.listen(1)
    fake.settimeout(scaled(10))
    conn, _ = fake.accept()  # the sender's reconnect (its backoff is at most 1 s)
    conn.settimeout(scaled(10))
    # The first record goes into the socket's buffer; the next take is half the bound, blocked in send() since
    # nobody reads.
    in_flight = lambda: c._buf.io_left + c._buf.io_off  # noqa: E731
    try:
        flight = wait_for(lambda: in_flight() >= 2 << 20 and in_flight(), 10, "a take of 2 MiB in flight")
    except AssertionError as e:
        raise AssertionError("%s (%d bytes in flight)" % (e, in_flight()))
    one = total // 3000 + 1
    assert flight < (2 << 20) + one, flight
    assert total - flight - one <= c._buf.pending_bytes <= total - flight, (total, flight, c._buf.pending_bytes)
    unpacker = msgpack.Unpacker(raw=False, max_buffer_size=8 << 20)
    got = []
    while len(got) < 3000:
        data = conn.recv(1 << 20)
        assert data, "the client closed with %d of 3000 records read" % len(got)
        unpacker.feed(data)
        got.extend(unpacker)
    assert [r["message"] for r in got] == ["queued %d" % i for i in range(3000)]
    assert [r["log_id"] for r in got] == ids
    assert c.flush(scaled(10)) is True
    cs = c.get_stats()
    assert cs["sent"] == 3000 and cs["dropped"] == 0 and cs["buffered_bytes"] == 0, cs
    assert c.close(timeout=0) is True
    conn.close()
    fake.close()


def _mp_child(n):
    for i in range(n):
        logagent.write_log("mp-%05d" % i, service_name="pool-worker")
    # returns without flush(): multiprocessing ends its children with os._exit(), which skips atexit


def test_multiprocessing_child_delivers_without_flush():
    import multiprocessing
    tmp, sink, a = pair("mp")
    logagent.configure(socket_path=a.socket)
    n = 3000
    p = multiprocessing.get_context("fork").Process(target=_mp_child, args=(n,))
    p.start()
    p.join(scaled(30))
    assert p.exitcode == 0, p.exitcode
    sink.wait_count(n)
    summary = sink.stop()
    assert summary["entries"] == n and summary["unique_log_ids"] == n, summary
    assert all(e["source"]["pid"] == p.pid for e in sink.entries())
    assert logagent.close() is True
    assert a.stop() == 0


EXIT_SCRIPT = r"""
import logagent, os, sys
n = int(sys.argv[1])
if len(sys.argv) > 2:  # a slow (sanitizer) agent needs longer than the default 1 s to take 20,000 records
    logagent.configure(exit_flush_timeout=float(sys.argv[2]))
bad = [r for r in (logagent.write_log("exit-%05d" % i, service_name="exiter", i=i) for i in range(n))
       if not r["success"]]
print(len(bad), os.getpid())
# no flush(), no close(): the interpreter's exit must deliver what is buffered
"""


def python_child(sock, *args):
    env = dict(os.environ, LOGAGENT_SOCKET=sock, PYTHONPATH=PYPATH)
    return spawn([PY, "-c", EXIT_SCRIPT] + [str(x) for x in args], env=env, stdout=subprocess.PIPE,
                 stderr=subprocess.PIPE)


def test_exit_without_flush_still_delivers():
    tmp, sink, a = pair("exit")
    n = 20000
    p = python_child(a.socket, n, 10.0 * SLOW if SLOW > 1 else 1.0)
    out, err = p.communicate(timeout=scaled(60))
    assert p.returncode == 0 and not err, (p.returncode, err.decode())
    bad, pid = map(int, out.split())
    assert bad == 0, out
    sink.wait_count(n)
    summary = sink.stop()
    assert summary["entries"] == n and summary["unique_log_ids"] == n, summary
    assert all(e["source"]["pid"] == pid and e["service_name"] == "exiter" for e in sink.entries())

    down = python_child(tmp.file("nobody-home.sock"), 100)  # agent down: exit waits the exit flush, no longer
    t0 = time.monotonic()
    out, err = down.communicate(timeout=scaled(30))
    elapsed = time.monotonic() - t0
    assert down.returncode == 0 and not err and out.split()[0] == b"0", (down.returncode, out, err)
    assert elapsed < scaled(5), elapsed
    assert a.stop() == 0


class environ:
    """Sets environment variables for a with-block (None: unset), then puts back what was there."""

    def __init__(self, **values):
        self.values, self.saved = values, {}

    def __enter__(self):
        for k, v in self.values.items():
            self.saved[k] = os.environ.get(k)
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        return self

    def __exit__(self, *exc):
        for k, v in self.saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


KNOBS_SCRIPT = r"""
import logagent, os, sys
c = logagent.get_client()
print(c.cap, c.block_timeout, c.max_record, c.exit_flush_timeout)
bad = [r for r in (logagent.write_log("knob-%05d " % i + "k" * 150, service_name="tuned") for i in range(5000))
       if not r["success"]]
print(len(bad), os.getpid())
# no flush: the exit flush (LOGAGENT_CLIENT_EXIT_FLUSH_TIMEOUT_MS) delivers the rest
"""


def test_environment_knobs_tune_the_process_wide_client():
    tmp, sink, a = pair("knobs")
    missing = tmp.file("missing.sock")
    logagent.close(timeout=0)
    with environ(LOGAGENT_SOCKET=missing, LOGAGENT_CLIENT_BUFFER_BYTES="2KiB",
                 LOGAGENT_CLIENT_BLOCK_TIMEOUT_MS="300ms", LOGAGENT_CLIENT_MAX_RECORD_BYTES="1K",
                 LOGAGENT_CLIENT_EXIT_FLUSH_TIMEOUT_MS="2s"):
        c = logagent.get_client()
        assert (c.socket_path, c.cap, c.block_timeout, c.max_record, c.exit_flush_timeout) == \
            (missing, 2048, 0.3, 1024, 2.0), vars(c)
        big = logagent.write_log("x" * 1100)
        assert re.fullmatch(r"record too large \(11\d\d bytes, limit 1024\): record dropped",
                            big["error_message"]), big
        while True:  # the agent is away: the 2 KiB buffer fills, and the write that finds it full waits 0.3 s
            t0 = time.monotonic()
            r = logagent.write_log("filler " + "f" * 100)
            if not r["success"]:
                break
        waited = time.monotonic() - t0
        assert 0.29 <= waited < scaled(3) and r["error_message"].startswith("logagent buffer full ("), (waited, r)
        assert logagent.get_stats()["written"] < 2048 // 100, logagent.get_stats()
        c2 = logagent.configure(buffer_bytes=8192)  # an argument wins; the other options still come from the env
        assert (c2.cap, c2.block_timeout, c2.max_record, c2.socket_path) == (8192, 0.3, 1024, missing), vars(c2)
        for text, want in (("-1", None), ("forever", None), (" 0 ", 0.0), ("", 0.0), ("2s", 2.0), ("250", 0.25),
                           ("1m", 60.0)):
            os.environ["LOGAGENT_CLIENT_BLOCK_TIMEOUT_MS"] = text
            assert logagent.configure().block_timeout == want, (text, want)
        logagent.close(timeout=0)

    # a process tuned by its environment alone, as a pre-fork server's workers would be: 5,000 records of
    # ~200 bytes through a 64 KiB buffer with writers waiting for room, all delivered, none dropped
    env = dict(os.environ, LOGAGENT_SOCKET=a.socket, PYTHONPATH=PYPATH, LOGAGENT_CLIENT_BUFFER_BYTES="64KiB",
               LOGAGENT_CLIENT_BLOCK_TIMEOUT_MS="-1", LOGAGENT_CLIENT_EXIT_FLUSH_TIMEOUT_MS="%ds" % scaled(10))
    p = spawn([PY, "-c", KNOBS_SCRIPT], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = p.communicate(timeout=scaled(60))
    assert p.returncode == 0 and not err, (p.returncode, err.decode())
    opts, result = out.decode().splitlines()
    assert opts == "65536 None 65536 %.1f" % scaled(10), opts
    bad, pid = map(int, result.split())
    assert bad == 0, result
    sink.wait_count(5000)
    summary = sink.stop()
    assert summary["entries"] == 5000 and summary["unique_log_ids"] == 5000, summary
    assert all(e["source"]["pid"] == pid and e["service_name"] == "tuned" for e in sink.entries())
    assert a.stop() == 0


BAD_KNOBS = [  # (variable, value, why)
    ("LOGAGENT_CLIENT_BUFFER_BYTES", "huge",
     "invalid value 'huge' in LOGAGENT_CLIENT_BUFFER_BYTES: expected a size such as 65536, 64KiB, 4MiB"),
    ("LOGAGENT_CLIENT_BUFFER_BYTES", "4 MiB",
     "invalid value '4 MiB' in LOGAGENT_CLIENT_BUFFER_BYTES: expected a size such as 65536, 64KiB, 4MiB"),
    ("LOGAGENT_CLIENT_BUFFER_BYTES", "512",
     "invalid value '512' in LOGAGENT_CLIENT_BUFFER_BYTES: out of range (1024 to 1073741824 bytes)"),
    ("LOGAGENT_CLIENT_BLOCK_TIMEOUT_MS", "1.5s",
     "invalid value '1.5s' in LOGAGENT_CLIENT_BLOCK_TIMEOUT_MS: expected a duration such as 0, 250, 250ms, 5s, or -1 "
     "(wait as long as it takes)"),
    ("LOGAGENT_CLIENT_BLOCK_TIMEOUT_MS", "2h",
     "invalid value '2h' in LOGAGENT_CLIENT_BLOCK_TIMEOUT_MS: out of range (at most 3600000 ms)"),
    ("LOGAGENT_CLIENT_MAX_RECORD_BYTES", "2GiB",
     "invalid value '2GiB' in LOGAGENT_CLIENT_MAX_RECORD_BYTES: out of range (64 to 67108864 bytes)"),
    ("LOGAGENT_CLIENT_EXIT_FLUSH_TIMEOUT_MS", "-1",
     "invalid value '-1' in LOGAGENT_CLIENT_EXIT_FLUSH_TIMEOUT_MS: expected a duration such as 0, 250, 250ms, 5s"),
]


def test_bad_environment_values_are_reported_in_every_result():
    import io
    import logging
    import warnings
    logagent.close(timeout=0)
    for var, value, why in BAD_KNOBS:
        with environ(**{var: value}):
            for _ in range(2):  # no client is made: every call says why, not only the first
                r = logagent.write_log("x")
                assert r == {"success": False, "log_id": "", "error_message":
                             "cannot create the logagent client: " + why}, (r, why)
            assert logagent.get_stats()["last_error"] == "cannot create the logagent client: " + why
            try:
                logagent.configure()
                raise AssertionError("configure() accepted %s=%r" % (var, value))
            except ValueError as e:
                assert str(e) == "logagent: " + why, e
            option = logagent._client.ENV_KNOBS[var][0]
            c = logagent.configure(**{option: 4096})  # an argument wins over the bad variable
            attr = {"buffer_bytes": "cap", "max_record_bytes": "max_record"}.get(option, option)
            assert getattr(c, attr) == 4096, (option, vars(c))
            logagent.close(timeout=0)

    # the logging handler on the process-wide client: reported on stderr per record, never silent
    h = logagent.LogAgentHandler(service_name="misconfigured")
    log = logging.getLogger("misconfigured")
    log.addHandler(h)
    log.propagate = False
    saved, sys.stderr = sys.stderr, io.StringIO()
    try:
        with environ(LOGAGENT_CLIENT_BUFFER_BYTES="huge"):
            log.warning("lost")
        report = sys.stderr.getvalue()
    finally:
        sys.stderr = saved
        log.removeHandler(h)
    assert "--- Logging error ---" in report and BAD_KNOBS[0][2] in report, report

    # a typo: warned about, ignored, the client made with its defaults
    with environ(LOGAGENT_CLIENT_BUFER_BYTES="1MiB"), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        c = logagent.get_client()
    assert c.cap == 4 << 20 and c.block_timeout == 0, vars(c)
    assert [str(w.message) for w in caught] == [
        "logagent: unknown environment variable LOGAGENT_CLIENT_BUFER_BYTES ignored (known: "
        "LOGAGENT_CLIENT_BLOCK_TIMEOUT_MS, LOGAGENT_CLIENT_BUFFER_BYTES, LOGAGENT_CLIENT_EXIT_FLUSH_TIMEOUT_MS, "
        "LOGAGENT_CLIENT_MAX_RECORD_BYTES)"], [str(w.message) for w in caught]
    logagent.close(timeout=0)


def test_import_without_msgpack_names_the_package():
    """A first contact: an interpreter without msgpack (here: Debian's python3 with -S, so no dist-packages) gets
    an error that names the package to install, not a bare "No module named 'msgpack'"."""
    r = subprocess.run([PY, "-S", "-c", "import sys; sys.path.insert(0, %r); import logagent" % PYPATH],
                       capture_output=True, text=True, timeout=scaled(30))
    assert r.returncode == 1, (r.returncode, r.stderr)
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("ModuleNotFoundError: logagent needs the msgpack module") and \
        "apt install python3-msgpack" in last and "pip install msgpack" in last, r.stderr


if __name__ == "__main__":
    run([test_import_without_msgpack_names_the_package, test_write_log_fields_arrive_exactly, test_error_rows, test_8_threads_1000_records_exactly_once,
         test_fork_child_writes_through_its_own_connection, test_fork_with_records_waiting_in_the_buffer,
         test_counters_equal_in_both_implementations, test_log_ids_unique_without_a_system_call_each,
         test_an_interrupted_wake_strands_no_record, test_record_cut_by_a_disconnect_is_resent_whole_written_ones_never,
         test_the_sender_takes_half_the_buffer_at_once,
         test_agent_killed_and_restarted_under_a_running_writer, test_exit_without_flush_still_delivers,
         test_multiprocessing_child_delivers_without_flush, test_environment_knobs_tune_the_process_wide_client,
         test_bad_environment_values_are_reported_in_every_result])
