"""test_service.py — logagentd under a supervisor, with the test playing systemd's part itself.

sd_notify: READY=1 only once the sockets answer, WATCHDOG=1 at half of WATCHDOG_USEC, RELOADING=1/READY=1 around
SIGHUP, STOPPING=1 on SIGTERM. Socket activation: the test binds the sockets, passes them as fds 3 and 4 with
LISTEN_FDS/LISTEN_FDNAMES/LISTEN_PID; records flow through them, the socket files survive the agent, and records
written while no agent runs wait in the kernel for the next one. A lone unnamed fd is the ingest socket; an fd that
is not a listening socket is refused with exit 1."""
import os
import re
import signal
import socket
import subprocess

import msgpack

from harness import BIN, Agent, Sink, TempDir, http_get, run, scaled, send_records, spawn, wait_for

D = os.path.join(BIN, "logagentd")


class NotifySocket:
    """The datagram socket systemd listens on for sd_notify messages."""

    def __init__(self, tmp):
        self.path = tmp.file("notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.setblocking(False)
        self.messages = []

    def poll(self):
        while True:
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except BlockingIOError:
                return self.messages

    def wait(self, needle, timeout=20):
        return wait_for(lambda: any(needle in m for m in self.poll()), timeout, "sd_notify %r" % needle)


def test_notify_ready_watchdog_reload_stopping():
    tmp = TempDir("notify")
    sink = Sink(tmp).start()
    ns = NotifySocket(tmp)
    a = Agent(tmp, sink.target, env={"NOTIFY_SOCKET": ns.path, "WATCHDOG_USEC": "300000"})
    a.log = open(a.log_path, "ab")
    a.proc = spawn(a.cmd(), stdout=a.log, stderr=a.log, env=a.env)
    ns.wait("READY=1")
    # READY means ready: the sockets answer at once
    assert a.stats()["records"]["received"] == 0
    send_records(a.socket, [{"message": "after-ready"}])
    sink.wait_count(1)
    wait_for(lambda: sum("WATCHDOG=1" in m for m in ns.poll()) >= 4, 20, "4 watchdog pings")
    n_ready = sum("READY=1" in m for m in ns.poll())
    a.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: any("RELOADING=1" in m for m in ns.poll()) and sum("READY=1" in m for m in ns.messages) > n_ready,
             20, "RELOADING=1, then READY=1 again")
    a.proc.send_signal(signal.SIGTERM)
    assert a.proc.wait(timeout=scaled(30)) == 0
    ns.wait("STOPPING=1")
    assert "systemd watchdog" in a.logtext()


def activated(tmp, sink, fds, names, extra_env=None, name="act"):
    """Starts logagentd with fds placed at 3, 4, … the way systemd does (LISTEN_PID is the agent's own pid)."""
    log = open(tmp.file(name + ".log"), "ab")
    moves = " ".join("%d<&%d" % (3 + i, fd) for i, fd in enumerate(fds))
    closes = " ".join("%d<&-" % fd for fd in fds if fd >= 3 + len(fds))
    env = dict(os.environ, LOGAGENT_CONFIG="", LISTEN_FDS=str(len(fds)))
    if names is not None:
        env["LISTEN_FDNAMES"] = ":".join(names)
    env.update(extra_env or {})
    script = 'export LISTEN_PID=$$; exec "$@" %s %s' % (moves, closes)
    cmd = ["/bin/sh", "-c", script, "sh", D, "--socket", tmp.file("unused.sock"), "--stats-socket",
           tmp.file("unused-stats.sock"), "--upstream", sink.target]
    return spawn(cmd, stdout=log, stderr=log, env=env, pass_fds=fds), tmp.file(name + ".log")


def listening(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.listen(128)
    return s


def test_socket_activation_hands_over_records_between_agents():
    tmp = TempDir("activate")
    sink = Sink(tmp).start()
    ingest_path, stats_path = tmp.file("ingest.sock"), tmp.file("stats.sock")
    ing, st = listening(ingest_path), listening(stats_path)
    fds = [ing.fileno(), st.fileno()]
    p, log = activated(tmp, sink, fds, ["ingest", "stats"])
    wait_for(lambda: os.path.exists(log) and "logagentd started" in open(log).read(), 20, "agent started")
    send_records(ingest_path, [{"message": "first-%d" % i} for i in range(100)])
    sink.wait_count(100)
    status, body = http_get(stats_path, "/stats")
    assert status == 200 and '"received":100' in body, body
    assert not os.path.exists(tmp.file("unused.sock")), "an activated agent must not bind its own socket"
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=scaled(30)) == 0
    assert os.path.exists(ingest_path) and os.path.exists(stats_path), "the socket files belong to systemd"
    # no agent running: a client still connects (the kernel queues it) and its records wait for the next agent
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    c.connect(ingest_path)
    c.sendall(b"".join(msgpack.packb({"message": "between-%d" % i}) for i in range(50)))
    c.close()
    p2, log2 = activated(tmp, sink, fds, ["ingest", "stats"], name="act2")
    sink.wait_count(150)
    p2.send_signal(signal.SIGTERM)
    assert p2.wait(timeout=scaled(30)) == 0
    msgs = sorted(e["message"] for e in sink.entries())
    assert len(msgs) == 150 and len(set(msgs)) == 150, len(msgs)
    assert "socket activation" in open(log2).read()


def test_single_unnamed_fd_is_ingest_and_bad_fd_refused():
    tmp = TempDir("activate1")
    sink = Sink(tmp).start()
    ingest_path = tmp.file("ingest.sock")
    ing = listening(ingest_path)
    p, log = activated(tmp, sink, [ing.fileno()], None)
    wait_for(lambda: os.path.exists(log) and "logagentd started" in open(log).read(), 20, "agent started")
    send_records(ingest_path, [{"message": "only"}])
    sink.wait_count(1)
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=scaled(30)) == 0
    # a pipe is not a listening socket: exit 1 with the reason
    r, w = os.pipe()
    p, log = activated(tmp, sink, [r], ["ingest"], name="bad")
    assert p.wait(timeout=scaled(30)) == 1
    assert "not a listening Unix stream socket" in open(log).read(), open(log).read()


def test_journal_gets_each_lines_priority():
    """Under systemd, stderr is the journal's stream and JOURNAL_STREAM names its device:inode: every line then
    starts with its syslog priority (<6> info, <4> warn, <3> error), which journald reads (SyslogLevelPrefix=).
    The test plays journald: the agent's stderr is a file whose device:inode it puts in JOURNAL_STREAM. Without the
    variable (or when it names another file, e.g. stderr redirected by hand) lines have no prefix."""
    tmp = TempDir("journal")
    sink = Sink(tmp).start()
    path = tmp.file("journal.log")
    open(path, "ab").close()
    st = os.stat(path)
    a = Agent(tmp, sink.target, "--resource-attr", "pod=${env:LOGAGENT_TEST_UNSET}", name="journal",
              env={"JOURNAL_STREAM": "%d:%d" % (st.st_dev, st.st_ino)})
    a.log_path = path
    a.start()
    send_records(a.socket, [{"message": "hello journal"}])
    sink.wait_count(1)
    assert a.stop() == 0
    lines = a.logtext().splitlines()
    assert lines and all(re.match(r"^<[3467]>ts=", l) for l in lines), lines[:5]
    levels = {re.match(r"^<(\d)>ts=\S+ level=(\w+)", l).groups() for l in lines}
    assert ("6", "info") in levels and ("4", "warn") in levels, levels  # the unset variable's warning
    assert all({"debug": "7", "info": "6", "warn": "4", "error": "3"}[lv] == p for p, lv in levels), levels
    # another file than the one JOURNAL_STREAM names: no prefix
    b = Agent(tmp, sink.target, name="plain", env={"JOURNAL_STREAM": "%d:%d" % (st.st_dev, st.st_ino)}).start()
    assert b.stop() == 0
    assert all(l.startswith("ts=") for l in b.logtext().splitlines()), b.logtext()[:500]


if __name__ == "__main__":
    run([test_notify_ready_watchdog_reload_stopping, test_socket_activation_hands_over_records_between_agents,
         test_single_unnamed_fd_is_ingest_and_bad_fd_refused, test_journal_gets_each_lines_priority])
