"""test_hardening.py — the ingest socket against buggy or hostile local clients (issue #6).

Socket rights applied before listening (--socket-mode/--socket-group) and a world-writable folder refused; who may
send (--allow-uids/--allow-gids, with clients really running as another user and group); --max-connections;
--partial-record-timeout-ms against a client trickling a record byte by byte (an idle client is left alone);
--rate-limit per sender; the open-file limit raised; a flooder does not starve 100 quiet clients; bad settings exit 2.
Clients run as `nobody` (and with the `daemon` group) when the test runs as root; otherwise those rows are skipped
and say so."""
import grp
import json
import os
import pwd
import re
import socket
import stat
import subprocess
import sys
import threading
import time

import msgpack

from harness import (BIN, Agent, Sink, TempDir, accounting_holds, http_get, run, scaled, send_records, spawn,
                     wait_for)

D = os.path.join(BIN, "logagentd")
ROOT = os.geteuid() == 0
NOBODY = pwd.getpwnam("nobody").pw_uid
NOGROUP = grp.getgrnam("nogroup").gr_gid
DAEMON_GID = grp.getgrnam("daemon").gr_gid

# A client in another process: sends N records (message PREFIX i) on one connection, prints how many it wrote.
CLIENT = r"""
import socket, sys, msgpack
path, prefix, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(path)
data = b"".join(msgpack.packb({"message": "%s %d" % (prefix, i), "service_name": "hardening"}) for i in range(n))
try:
    s.sendall(data)
    s.shutdown(socket.SHUT_WR)
    s.recv(1)  # the agent closes when it is done with us (or refused us)
except OSError as e:
    print("error", e)
print("sent", n)
"""


def client_proc(path, prefix, n, user=None, group=None, extra_groups=None):
    kw = {}
    if user is not None:
        kw = {"user": user, "group": group, "extra_groups": extra_groups or []}
    p = subprocess.run(["/usr/bin/python3", "-c", CLIENT, path, prefix, str(n)], capture_output=True, text=True,
                       timeout=scaled(60), **kw)
    assert p.returncode == 0, p.stderr
    return p


def messages(sink, prefix):
    return [e for e in sink.entries() if e["message"].startswith(prefix + " ")]


def open_tmp(name):
    tmp = TempDir(name)
    os.chmod(tmp.path, 0o755)  # clients running as nobody must reach the socket
    return tmp


def test_socket_mode_and_group():
    tmp = TempDir("hard-mode")
    sink = Sink(tmp).start()
    a = Agent(tmp, sink.target).start()
    assert stat.S_IMODE(os.stat(a.socket).st_mode) == 0o660
    a.stop()
    b = Agent(tmp, sink.target, "--socket-mode", "0640", "--socket-group", "daemon", name="b").start()
    st = os.stat(b.socket)
    assert stat.S_IMODE(st.st_mode) == 0o640 and st.st_gid == DAEMON_GID, (oct(st.st_mode), st.st_gid)
    send_records(b.socket, [{"message": "mode ok"}])
    sink.wait_count(1)
    b.stop()
    sink.stop()


def test_world_writable_folder_is_refused():
    tmp = TempDir("hard-folder")
    sink = Sink(tmp).start()
    open_dir = tmp.file("open")
    os.mkdir(open_dir)
    os.chmod(open_dir, 0o777)
    env = dict(os.environ, LOGAGENT_CONFIG="")
    p = subprocess.run([D, "--socket", os.path.join(open_dir, "in.sock"), "--stats-socket", "",
                        "--upstream", sink.target], capture_output=True, text=True, env=env, timeout=scaled(30))
    assert p.returncode == 1, (p.returncode, p.stderr)
    assert "world-writable without the sticky bit" in p.stderr, p.stderr
    assert not os.path.exists(os.path.join(open_dir, "in.sock"))
    # the stats socket too
    p = subprocess.run([D, "--socket", tmp.file("in.sock"), "--stats-socket", os.path.join(open_dir, "st.sock"),
                        "--upstream", sink.target], capture_output=True, text=True, env=env, timeout=scaled(30))
    assert p.returncode == 1 and "world-writable without the sticky bit" in p.stderr, p.stderr
    os.chmod(open_dir, 0o1777)  # like /tmp: the sticky bit keeps others from removing our socket
    a = Agent(tmp, sink.target, name="sticky")
    a.socket = os.path.join(open_dir, "in.sock")
    a.start()
    send_records(a.socket, [{"message": "sticky ok"}])
    sink.wait_count(1)
    a.stop()
    sink.stop()


def test_allow_uids_and_gids():
    if not ROOT:
        print("   (skipped: switching the client's user needs root)")
        return
    tmp = open_tmp("hard-allow")
    sink = Sink(tmp).start()
    a = Agent(tmp, sink.target, "--socket-mode", "0666", "--allow-uids", "nobody").start()
    # root is not in the list: refused at accept, twice, logged once
    for k in range(2):
        client_proc(a.socket, "root%d" % k, 5)
    wait_for(lambda: a.stats()["connections"]["refused"]["not_allowed"] == 2, 20, "2 refused connections")
    client_proc(a.socket, "nobody", 5, user=NOBODY, group=NOGROUP)
    sink.wait_count(5)
    got = messages(sink, "nobody")
    assert len(got) == 5 and all(e["source"]["uid"] == NOBODY for e in got), got[:1]
    assert not messages(sink, "root0") and not messages(sink, "root1")
    lines = [l for l in a.logtext().splitlines() if "not in --allow-uids" in l]
    assert len(lines) == 1 and "uid=0 " in lines[0], lines
    st = a.stats()
    assert st["records"]["received"] == 5 and st["connections"]["max_reached"] == 0, st
    a.stop()
    # groups: a supplementary group admits (SO_PEERGROUPS), the primary one too; without either, refused
    b = Agent(tmp, sink.target, "--socket-mode", "0666", "--allow-gids", "daemon", name="b").start()
    client_proc(b.socket, "suppl", 3, user=NOBODY, group=NOGROUP, extra_groups=[DAEMON_GID])
    client_proc(b.socket, "primary", 3, user=NOBODY, group=DAEMON_GID)
    client_proc(b.socket, "outsider", 3, user=NOBODY, group=NOGROUP)
    wait_for(lambda: b.stats()["connections"]["refused"]["not_allowed"] == 1, 20, "the outsider refused")
    sink.wait_count(11)
    assert len(messages(sink, "suppl")) == 3 and len(messages(sink, "primary")) == 3
    assert not messages(sink, "outsider")
    m = re.search(r"^.*not in --allow-uids.*$", b.logtext(), re.M)
    assert m and "uid=%d " % NOBODY in m.group(0) and "gid=%d " % NOGROUP in m.group(0), m and m.group(0)
    b.stop()
    sink.stop()


def test_max_connections():
    """At the limit the agent stops accepting: a 4th connection waits in the kernel's backlog with what it wrote
    (nothing lost, nothing closed), and is served as soon as one of the 3 closes."""
    tmp = TempDir("hard-maxconn")
    sink = Sink(tmp).start()
    a = Agent(tmp, sink.target, "--max-connections", "3").start()
    held = []
    for _ in range(3):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(a.socket)
        held.append(s)
    wait_for(lambda: a.stats()["connections"]["active"] == 3, 20, "3 connections open")
    st = a.stats()
    assert st["connections"]["max_reached"] == 1, st["connections"]
    waiting = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    waiting.connect(a.socket)  # the kernel's backlog takes it
    waiting.sendall(msgpack.packb({"message": "waited in the backlog"}))
    waiting.close()
    for s in held:  # the 3 are still served meanwhile
        s.sendall(msgpack.packb({"message": "held conn"}))
    sink.wait_count(3)
    st = a.stats()
    assert st["connections"]["total"] == 3 and st["records"]["received"] == 3, st["connections"]
    assert "--max-connections reached" in a.logtext()
    held.pop().close()
    sink.wait_count(4)  # one closed: the waiting one is accepted and read
    assert [e["message"] for e in sink.entries()].count("waited in the backlog") == 1
    for s in held:
        s.close()
    wait_for(lambda: a.stats()["connections"]["active"] == 0, 20, "all closed")
    send_records(a.socket, [{"message": "room again"}])
    sink.wait_count(5)
    assert a.stats()["connections"]["total"] == 5
    a.stop()
    sink.stop()


def test_backlog_is_drained_at_shutdown():
    """Connections parked in the listen backlog by --max-connections hold records their clients already wrote and
    closed: a stop accepts and drains them too (nothing lost silently)."""
    tmp = TempDir("hard-backlog")
    sink = Sink(tmp).start()
    a = Agent(tmp, sink.target, "--max-connections", "1").start()
    idle = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    idle.connect(a.socket)
    wait_for(lambda: a.stats()["connections"]["active"] == 1, 20, "the one connection open")
    for i in range(3):
        send_records(a.socket, [{"message": "parked %d" % i}])  # connect, write, close: all in the backlog
    assert a.stats()["records"]["received"] == 0
    assert a.stop() == 0
    idle.close()
    got = sorted(e["message"] for e in sink.entries())
    assert got == ["parked 0", "parked 1", "parked 2"], got
    sink.stop()


def test_partial_record_timeout():
    """A client trickling one record a byte at a time is closed after the timeout (its progress does not reset the
    clock); a client idle between records is not."""
    tmp = TempDir("hard-slow")
    sink = Sink(tmp).start()
    a = Agent(tmp, sink.target, "--partial-record-timeout-ms", "600").start()
    idle = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    idle.connect(a.socket)
    idle.sendall(msgpack.packb({"message": "idle first"}))
    sink.wait_count(1)
    record = msgpack.packb({"message": "x" * 200, "service_name": "slowloris"})
    slow = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    slow.connect(a.socket)
    closed = threading.Event()
    sent = [0]

    def trickle():
        try:
            for b in record[:-1]:
                slow.send(bytes([b]))
                sent[0] += 1
                if closed.wait(0.05):
                    return
        except OSError:
            pass
        closed.set()

    t = threading.Thread(target=trickle)
    t0 = time.monotonic()
    t.start()
    wait_for(lambda: a.stats()["connections"]["timed_out"] == 1, 30, "the trickling connection closed")
    closed.set()
    t.join()
    elapsed = time.monotonic() - t0
    st = a.stats()
    assert st["records"]["rejected"]["truncated"] == 1, st["records"]["rejected"]
    assert sent[0] < len(record) - 1 or elapsed >= 0.6, (sent[0], elapsed)
    assert "partial record held past --partial-record-timeout-ms" in a.logtext()
    # the idle connection has been idle longer than the timeout, and is still served
    idle.sendall(msgpack.packb({"message": "idle second"}))
    sink.wait_count(2)
    idle.close()
    assert a.stats()["connections"]["timed_out"] == 1
    assert accounting_holds(a.stats())
    a.stop()
    sink.stop()


def test_rate_limit_per_sender():
    tmp = TempDir("hard-rate")
    sink = Sink(tmp).start()
    a = Agent(tmp, sink.target, "--rate-limit", "100/s:50").start()
    # sender 1 (a process of its own): 1,000 records at once; only about the burst passes
    client_proc(a.socket, "flood", 1000)
    # sender 2, another process: 20 records, under its own burst: all pass
    client_proc(a.socket, "calm", 20)
    wait_for(lambda: a.stats()["records"]["received"] == 1020, 30, "1,020 records received")
    st = a.wait_flushed(1020 - a.stats()["records"]["dropped"]["rate_limited"])
    dropped = st["records"]["dropped"]["rate_limited"]
    flood = len(messages(sink, "flood"))
    assert flood + dropped == 1000, (flood, dropped)
    assert 50 <= flood < 1000 and dropped > 0, (flood, dropped)
    assert len(messages(sink, "calm")) == 20
    assert accounting_holds(st), st["records"]
    status, body = http_get(a.stats_socket, "/stats/clients")
    entries = [c for c in json.loads(body)["clients"] if c["dropped"]]
    assert len(entries) == 1 and entries[0]["dropped"] == dropped and entries[0]["records"] == flood, entries
    assert "sender over --rate-limit" in a.logtext()
    a.stop()
    sink.stop()


def test_open_file_limit_raised():
    tmp = TempDir("hard-nofile")
    sink = Sink(tmp).start()
    a = Agent(tmp, sink.target).start()
    with open("/proc/%d/limits" % a.proc.pid) as f:
        line = [l for l in f if l.startswith("Max open files")][0]
    soft, hard = line.split()[3:5]
    assert soft == hard, line
    a.stop()
    sink.stop()


# A flooder: packs one 256 KiB block of small records and writes it until N records are sent.
FLOODER = r"""
import socket, sys, msgpack
path, n = sys.argv[1], int(sys.argv[2])
one = msgpack.packb({"message": "flood", "service_name": "flooder"})
per = (256 << 10) // len(one)
block = one * per
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(path)
sent = 0
while sent < n:
    k = min(per, n - sent)
    s.sendall(block if k == per else one * k)
    sent += k
s.close()
"""


def test_flooder_does_not_starve_quiet_clients():
    """One process floods the socket as fast as it can while 100 quiet connections each send a few records: every
    quiet record arrives, is read while the flood is still going (the agent's read time is before the flood's
    last record's), and is read soon after it was sent."""
    tmp = TempDir("hard-fair")
    sink = Sink(tmp).start()
    # a ring larger than the flood: no backpressure pause (which stops reading for everyone alike), so what is
    # measured is the ingest loop's fairness alone
    a = Agent(tmp, sink.target, "--buffer-bytes", "256MiB").start()
    n_flood = 400000
    quiet = []
    for _ in range(100):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(a.socket)
        quiet.append(s)
    wait_for(lambda: a.stats()["connections"]["active"] == 100, 20, "100 quiet connections")
    flooder = spawn(["/usr/bin/python3", "-c", FLOODER, a.socket, str(n_flood)])
    wait_for(lambda: a.stats()["records"]["received"] >= 20000, 30, "the flood under way")
    rounds = 0
    while flooder.poll() is None and rounds < 5:
        for i, s in enumerate(quiet):
            s.sendall(msgpack.packb({"message": "quiet %d %d" % (i, rounds), "sent_ns": time.time_ns()}))
        rounds += 1
    flooder.wait(timeout=scaled(120))
    assert rounds >= 1, "the flood ended before any quiet record was sent: make it longer"
    for s in quiet:
        s.close()
    total = n_flood + 100 * rounds
    a.wait_flushed(total, timeout=120)
    sink.wait_count(total, timeout=120)
    entries = sink.entries()
    q = [e for e in entries if e["message"].startswith("quiet ")]
    assert len(q) == 100 * rounds and len({e["message"] for e in q}) == 100 * rounds, len(q)
    last_flood = max(e["timestamp_unix_nano"] for e in entries if e["message"] == "flood")
    lat = sorted((e["timestamp_unix_nano"] - int(e["metadata"]["sent_ns"])) / 1e6 for e in q)
    during = sum(1 for e in q if e["timestamp_unix_nano"] < last_flood)
    print("   quiet records: %d in %d rounds, read during the flood: %d; read latency ms p50 %.1f p99 %.1f max %.1f;"
          " backpressure pauses %d" % (len(q), rounds, during, lat[len(lat) // 2], lat[int(len(lat) * 0.99) - 1],
                                       lat[-1], a.stats()["backpressure_pauses"]))
    assert during == len(q), "quiet records waited for the flood to end: %d of %d" % (len(q) - during, len(q))
    assert lat[-1] < scaled(2000), "a quiet record waited %.0f ms" % lat[-1]
    a.stop()
    sink.stop()


HTTP_CLIENT = r"""
import http.client, json, socket, sys
class C(http.client.HTTPConnection):
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(sys.argv[1])
c = C("localhost", timeout=30)
c.request("POST", "/api/write_log/", body=json.dumps({"message": sys.argv[2]}))
r = c.getresponse()
print(r.status, r.read().decode())
"""


def http_post(path, url, body):
    from harness import UnixHTTPConnection
    c = UnixHTTPConnection(path, timeout=scaled(30))
    try:
        c.request("POST", url, body=body)
        r = c.getresponse()
        return r.status, dict(r.getheaders()), json.loads(r.read().decode())
    finally:
        c.close()


def test_http_ingest_obeys_the_same_rules():
    """--http-listen unix:PATH gets the ingest socket's rights, its allow-lists (403) and rate limit (429: the caller
    keeps what was refused); a TCP --http-listen cannot be combined with allow-lists."""
    tmp = open_tmp("hard-http")
    sink = Sink(tmp).start()
    hsock = tmp.file("http.sock")
    a = Agent(tmp, sink.target, "--http-listen", "unix:" + hsock, "--socket-mode", "0666", "--rate-limit", "100/s:10",
              *(["--allow-uids", "nobody"] if ROOT else [])).start()
    assert stat.S_IMODE(os.stat(hsock).st_mode) == 0o666
    if ROOT:
        status, _, body = http_post(hsock, "/api/write_log/", json.dumps({"message": "from root"}))
        assert status == 403 and "not in --allow-uids" in body["error_message"], (status, body)
        p = subprocess.run(["/usr/bin/python3", "-c", HTTP_CLIENT, hsock, "from nobody"], user=NOBODY, group=NOGROUP,
                           capture_output=True, text=True, timeout=scaled(60))
        assert p.stdout.startswith("200 "), p.stdout + p.stderr
        sink.wait_count(1)
        assert sink.entries()[0]["source"]["uid"] == NOBODY
        st = a.stats()
        assert st["connections"]["refused"]["not_allowed"] == 1 and st["http"]["responses"]["403"] == 1, st["http"]
        a.stop()
        a = Agent(tmp, sink.target, "--http-listen", "unix:" + hsock, "--rate-limit", "100/s:10", name="b").start()
    # 50 entries at once from one sender with a burst of 10: about 10 taken, the rest answered retryable
    body = "\n".join(json.dumps({"message": "burst %d" % i}) for i in range(50))
    status, _, res = http_post(hsock, "/api/write_logs/", body)
    assert status == 200 and 10 <= res["accepted"] < 50, (status, res)
    limited = [e for e in res["errors"] if "over --rate-limit" in e["error"]]
    assert len(limited) == 50 - res["accepted"] and all(e["retryable"] for e in limited), res["errors"][:2]
    # nothing left in the bucket: the whole request is refused with 429 and Retry-After
    status, headers, res2 = http_post(hsock, "/api/write_logs/", body)
    if res2.get("accepted", 0) == 0:
        assert status == 429 and headers.get("Retry-After") == "1", (status, headers)
    st = a.wait_flushed(res["accepted"] + res2["accepted"])
    assert st["http"]["refused_rate_limited"] == 100 - res["accepted"] - res2["accepted"], st["http"]
    assert st["records"]["dropped"]["rate_limited"] == 0, "HTTP refusals are not drops: the caller keeps them"
    a.stop()
    sink.stop()
    rc, err = agentd("--allow-uids", "root", "--http-listen", "127.0.0.1:0", "--check-config")
    assert rc == 2 and "is TCP, where allow-uids/allow-gids cannot be checked" in err, err


def expected_cgroup(text):
    """The rule of --trusted-fields, written again here: the unified path unless "/", else systemd's hierarchy, else
    any path but "/"; the container id is the last run of exactly 64 hex digits in any path."""
    best, best_rank, cid = None, 0, ""
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) < 3:
            continue
        path = parts[2]
        for m in re.finditer(r"(?<![0-9a-fA-F])[0-9a-fA-F]{64}(?![0-9a-fA-F])", path):
            cid = m.group(0)
        rank = 3 if line.startswith("0::") else 2 if parts[1] == "name=systemd" else 1
        if path != "/" and rank > best_rank:
            best, best_rank = path, rank
    return best or "/", cid


def test_trusted_fields():
    tmp = TempDir("hard-trusted")
    sink = Sink(tmp).start()
    a = Agent(tmp, sink.target, "--trusted-fields", "cgroup,container_id").start()
    # the client claims a cgroup of its own: a record's keys never become source fields
    send_records(a.socket, [{"message": "who am i", "cgroup": "/forged", "container_id": "f" * 64}])
    sink.wait_count(1)
    e = sink.entries()[0]
    with open("/proc/self/cgroup") as f:
        want_path, want_id = expected_cgroup(f.read())
    assert e["source"]["pid"] == os.getpid() and e["source"]["cgroup"] == want_path, (e["source"], want_path)
    assert e["source"].get("container_id", "") == want_id, (e["source"], want_id)
    assert e["metadata"] == {"cgroup": "/forged", "container_id": "f" * 64}, e["metadata"]
    a.stop()
    b = Agent(tmp, sink.target, name="plain").start()  # off by default: source as before
    send_records(b.socket, [{"message": "plain"}])
    sink.wait_count(2)
    plain = [x for x in sink.entries() if x["message"] == "plain"][0]
    assert "cgroup" not in plain["source"] and "container_id" not in plain["source"], plain["source"]
    b.stop()
    sink.stop()


def agentd(*args):
    env = dict(os.environ)
    env.pop("LOGAGENT_CONFIG", None)
    p = subprocess.run([D, "--config", ""] + list(args), capture_output=True, text=True, timeout=scaled(30),
                       env=env)
    return p.returncode, p.stderr


def test_bad_settings_exit_2():
    rows = [
        (["--rate-limit", "lots"], "rate-limit 'lots' (from --rate-limit): expected RECORDS/s:BURST"),
        (["--rate-limit", "0:5"], "expected RECORDS/s:BURST"),
        (["--rate-limit", "-1"], "expected RECORDS/s:BURST"),  # fuzz_config: was an undefined cast
        (["--rate-limit", "nan:5"], "expected RECORDS/s:BURST"),
        (["--rate-limit", "100:0"], "expected RECORDS/s:BURST"),
        (["--rate-limit", "100/s:-1"], "expected RECORDS/s:BURST"),
        (["--rate-limit-key", "comm"], "invalid value 'comm' for --rate-limit-key"),
        (["--allow-uids", "root,no-such-user-x"], "allow-uids 'root,no-such-user-x' (from --allow-uids): no such "
                                                  "user: no-such-user-x"),
        (["--allow-gids", "no-such-group-x"], "no such group: no-such-group-x"),
        (["--allow-uids", "root,,daemon"], "an empty name"),
        (["--socket-group", "no-such-group-x"], "socket-group 'no-such-group-x' (from --socket-group): no such group"),
        (["--socket-mode", "999"], "invalid value '999' for --socket-mode"),
        (["--max-connections", "0"], "invalid value '0' for --max-connections"),
        (["--partial-record-timeout-ms", "10"], "invalid value '10' for --partial-record-timeout-ms"),
        (["--trusted-fields", "cgroup,pod"], "trusted-fields 'cgroup,pod' (from --trusted-fields): 'pod' is not one "
                                             "of cgroup, container_id"),
    ]
    for args, want in rows:
        rc, err = agentd(*(args + ["--check-config"]))
        assert rc == 2 and want in err, (args, rc, err)
    rc, err = agentd("--rate-limit", "500", "--allow-uids", "root, 65534", "--allow-gids", "daemon",
                     "--check-config")
    assert rc == 0, err


if __name__ == "__main__":
    tests = [test_socket_mode_and_group, test_world_writable_folder_is_refused, test_allow_uids_and_gids,
             test_max_connections, test_backlog_is_drained_at_shutdown, test_partial_record_timeout, test_rate_limit_per_sender,
             test_open_file_limit_raised, test_flooder_does_not_starve_quiet_clients, test_trusted_fields,
             test_http_ingest_obeys_the_same_rules,
             test_bad_settings_exit_2]
    if len(sys.argv) > 1:
        tests = [t for t in tests if t.__name__ in sys.argv[1:]]
    run(tests)
