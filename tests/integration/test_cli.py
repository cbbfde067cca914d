"""test_cli.py — logagentd's command line and socket set-up: --help/--version, exit 2 naming the bad flag or value,
refusing a second agent on a live socket (exit 1), replacing a stale socket file, refusing a non-socket path,
socket modes 0660 (ingest) and 0600 (stats), and the stats socket's read-only HTTP surface."""
import os
import signal
import socket
import stat
import subprocess

from harness import BIN, Agent, Sink, TempDir, http_get, run, scaled

D = os.path.join(BIN, "logagentd")


def agent_run(*args, env=None):
    p = subprocess.run([D] + list(args), capture_output=True, text=True, timeout=scaled(30), env=env)
    return p.returncode, p.stdout, p.stderr


def test_help_and_version():
    rc, out, _ = agent_run("--help")
    assert rc == 0 and "--buffer-bytes" in out and "--upstream-rpc" in out and "--drain-timeout-ms" in out, out
    rc, out, _ = agent_run("--version")
    assert rc == 0 and out.startswith("logagentd "), out


def test_bad_usage_exits_2_naming_the_flag():
    rc, _, err = agent_run("--no-such-flag")
    assert rc == 2 and "--no-such-flag" in err and "did you mean" not in err, err
    rc, _, err = agent_run("--upstrem", "x:1")  # a typo: the nearest flag is named
    assert rc == 2 and "unknown option '--upstrem': did you mean --upstream?" in err, err
    rc, _, err = agent_run("--check-confg")
    assert rc == 2 and "did you mean --check-config?" in err, err
    rc, _, err = agent_run("--buffer-bytes", "lots")
    assert rc == 2 and "--buffer-bytes" in err and "lots" in err, err
    rc, _, err = agent_run("--upstream-rpc", "sometimes")
    assert rc == 2 and "--upstream-rpc" in err and "expected one of: auto, batch, unary" in err, err
    rc, _, err = agent_run("--max-inflight", "0")
    assert rc == 2 and "--max-inflight" in err and "out of range: 1.." in err, err
    rc, _, err = agent_run("--batch-max-records")
    assert rc == 2 and "--batch-max-records" in err, err
    env = dict(os.environ, LOGAGENT_FLUSH_INTERVAL_MS="soon", LOGAGENT_CONFIG="")
    rc, _, err = agent_run("--check-config", env=env)
    assert rc == 2 and "LOGAGENT_FLUSH_INTERVAL_MS" in err, err


def test_sizes_and_durations_accept_units():
    tmp = TempDir("units")
    sink = Sink(tmp).start()
    a = Agent(tmp, sink.target, "--buffer-bytes", "8MiB", "--flush-interval-ms", "1s", "--max-record-bytes", "64KiB").start()
    st = a.stats()
    assert st["ring"]["capacity_bytes"] == 4 << 20 and st["buffer"]["limit_bytes"] == 8 << 20, st  # half ring, half batches
    assert a.stop() == 0


def test_socket_modes_and_second_agent_refused():
    tmp = TempDir("cli")
    sink = Sink(tmp).start()
    a = Agent(tmp, sink.target).start()
    assert stat.S_IMODE(os.stat(a.socket).st_mode) == 0o660
    assert stat.S_IMODE(os.stat(a.stats_socket).st_mode) == 0o600
    rc, _, err = agent_run("--socket", a.socket, "--stats-socket", tmp.file("other-stats.sock"),
                           "--upstream", sink.target)
    assert rc == 1 and "already listening" in err, (rc, err)
    assert a.proc.poll() is None and os.path.exists(a.socket)  # the first agent is untouched
    status, _ = http_get(a.stats_socket, "/stats", method="POST")
    assert status in (405, 501), status
    status, _ = http_get(a.stats_socket, "/nothing-here")
    assert status == 404
    assert a.stop() == 0
    assert not os.path.exists(a.socket) and not os.path.exists(a.stats_socket)


def test_stale_socket_replaced_and_non_socket_refused():
    tmp = TempDir("stale")
    sink = Sink(tmp).start()
    a = Agent(tmp, sink.target)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(a.socket)  # bound, never listening, then closed: a stale file like a crashed agent leaves
    s.close()
    a.start()
    assert "removed stale ingest socket" in a.logtext()
    assert a.stop() == 0
    path = tmp.file("regular-file")
    open(path, "w").close()
    rc, _, err = agent_run("--socket", path, "--stats-socket", tmp.file("s2.sock"), "--upstream", sink.target)
    assert rc == 1 and "not a socket" in err and os.path.exists(path), err
    # the stats socket gets the same care: an operator's file is not deleted, a live agent's socket not stolen
    rc, _, err = agent_run("--socket", tmp.file("s3.sock"), "--stats-socket", path, "--upstream", sink.target)
    assert rc == 1 and "stats socket path" in err and "not a socket" in err and os.path.exists(path), err
    b = Agent(tmp, sink.target, name="b").start()
    rc, _, err = agent_run("--socket", tmp.file("s4.sock"), "--stats-socket", b.stats_socket, "--upstream", sink.target)
    assert rc == 1 and "a live process listens on it" in err, err
    assert b.stats()["uptime_seconds"] > 0 and not os.path.exists(tmp.file("s4.sock"))
    assert b.stop() == 0


if __name__ == "__main__":
    run([test_help_and_version, test_bad_usage_exits_2_naming_the_flag, test_sizes_and_durations_accept_units,
         test_socket_modes_and_second_agent_refused, test_stale_socket_replaced_and_non_socket_refused])
