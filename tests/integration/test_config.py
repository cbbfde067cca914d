"""test_config.py — the config file and the signals that act on settings.

Precedence flags > LOGAGENT_* > file > defaults, shown by --check-config with each value's origin and by a running
agent; --config / LOGAGENT_CONFIG / --config ''; one test per config-error row (exit 2 naming file, line and key,
nothing started); SIGHUP applies the live settings (seen in behaviour, not only in the log), names those needing a
restart, and keeps running on a broken file; SIGUSR1 logs the /stats document."""
import json
import os
import re
import signal
import subprocess

import msgpack

from harness import BIN, Agent, Sink, TempDir, run, scaled, send_records, wait_for

D = os.path.join(BIN, "logagentd")


def agentd(*args, env_extra=None, env=None):
    e = dict(os.environ) if env is None else env
    e.pop("LOGAGENT_CONFIG", None)
    e.update(env_extra or {})
    p = subprocess.run([D] + list(args), capture_output=True, text=True, timeout=scaled(30), env=e)
    return p.returncode, p.stdout, p.stderr


def write(tmp, name, text):
    path = tmp.file(name)
    with open(path, "w") as f:
        f.write(text)
    return path


def effective(out):
    """--check-config output -> {key: (value, origin)}."""
    got = {}
    for line in out.splitlines():
        m = re.match(r"^([a-z0-9-]+) = (.*?)\s+# (\S+)", line)
        if m:
            got[m.group(1)] = (m.group(2), m.group(3))
    return got


def test_precedence_and_check_config():
    tmp = TempDir("cfg")
    conf = write(tmp, "a.conf", "# comment\n[logagentd]\nbuffer-bytes = 8MiB\nflush-interval-ms = 2s\n"
                                "batch_max_records = 7 ; inline comment\nupstream = from-file:1\nlog-level = warn\n")
    rc, out, err = agentd("--config", conf, "--check-config", "--batch-max-records", "5",
                          env_extra={"LOGAGENT_FLUSH_INTERVAL_MS": "300ms", "LOG_SERVICE_GRPC_SERVER": "alt:2"})
    assert rc == 0, err
    e = effective(out)
    assert e["buffer-bytes"] == ("8MiB", conf + ":3"), e["buffer-bytes"]
    assert e["flush-interval-ms"] == ("300ms", "LOGAGENT_FLUSH_INTERVAL_MS"), e["flush-interval-ms"]
    assert e["batch-max-records"] == ("5", "--batch-max-records"), e["batch-max-records"]
    assert e["upstream"] == ("alt:2", "LOG_SERVICE_GRPC_SERVER"), e["upstream"]  # env beats the file
    assert e["log-level"] == ("warn", conf + ":7"), e["log-level"]
    assert e["max-inflight"] == ("4", "default"), e["max-inflight"]
    assert "# config file: %s" % conf in out, out
    # the listing is itself a valid config file that gives the same values
    again = write(tmp, "again.conf", out)
    rc, out2, err = agentd("--config", again, "--check-config")
    assert rc == 0, err
    assert {k: v[0] for k, v in effective(out2).items()} == {k: v[0] for k, v in e.items()}
    # indented keys are keys (libinih would read them as continuation lines by default)
    ind = write(tmp, "indent.conf", "[logagentd]\n  upstream = x:1\n  batch-max-records = 500\n")
    rc, out, err = agentd("--config", ind, "--check-config")
    assert rc == 0 and effective(out)["batch-max-records"] == ("500", ind + ":3"), (out, err)
    # LOGAGENT_CONFIG names the file; --config '' means none
    rc, out, err = agentd("--check-config", env_extra={"LOGAGENT_CONFIG": conf})
    assert rc == 0 and effective(out)["buffer-bytes"][0] == "8MiB", (out, err)
    rc, out, err = agentd("--check-config", "--config", "", env_extra={"LOGAGENT_CONFIG": conf})
    assert rc == 0 and effective(out)["buffer-bytes"] == ("64MiB", "default") and "config file: none" in out, out


def test_running_agent_uses_the_file():
    tmp = TempDir("cfgrun")
    sink = Sink(tmp).start()
    conf = write(tmp, "a.conf", "buffer-bytes = 8MiB\non-full = drop-newest\n")
    a = Agent(tmp, sink.target, env={"LOGAGENT_CONFIG": conf}).start()
    st = a.stats()
    assert st["buffer"]["limit_bytes"] == 8 << 20 and st["buffer"]["on_full"] == "drop-newest", st["buffer"]
    assert "config=%s" % conf in a.logtext()
    send_records(a.socket, [{"message": "m%d" % i} for i in range(10)])
    sink.wait_count(10)
    assert a.stop() == 0


ERROR_ROWS = [
    # (file text, what stderr must contain besides "FILE:LINE")
    ("bufer-bytes = 1MiB\n", 1, ["unknown key 'bufer-bytes': did you mean 'buffer-bytes'?"]),
    ("colour = blue\n", 1, ["unknown key 'colour' (see logagentd --help)"]),
    ("\n\nbuffer-bytes = lots\n", 3, ["invalid value 'lots'", "'buffer-bytes'", "size"]),
    ("max-inflight = 0\n", 1, ["'max-inflight'", "out of range"]),
    ("upstream-rpc = sometimes\n", 1, ["'upstream-rpc'"]),
    ("[upstream]\nupstream = x:1\n", 2, ["unknown section [upstream]", "'upstream'"]),
    ("log-level = info\nlog-level = debug\n", 2, ["'log-level' set twice", "line 1"]),
    ("just some words\n", 1, ["syntax error"]),
    ("spool-dir = " + "x" * 300 + "\n", 1, ["longer than"]),
    ("buffer = disk\n", 1, ["needs spool-dir"]),
    ("buffer-bytes = 1MiB\nmax-record-bytes = 1MiB\n", 2, ["max-record-bytes", "1/16 of buffer-bytes"]),
    ("on-full = sometimes\n", 1, ["'on-full'", "expected one of: block, drop-newest, drop-oldest"]),
    ("health-spool-pct = 200\n", 1, ["out of range: 1..100"]),
    ("upstream =\n", 1, ["upstream", "is empty: write HOST:PORT"]),
    ("upstream = localhost\n", 1, ["upstream 'localhost'", "not HOST:PORT with a port 1-65535"]),
    ("upstream = dns:///\n", 1, ["upstream 'dns:///'", "names no address after dns:"]),
]


def test_config_errors_exit_2_naming_file_line_and_key():
    tmp = TempDir("cfgerr")
    for i, (text, line, needles) in enumerate(ERROR_ROWS):
        conf = write(tmp, "bad%d.conf" % i, text)
        sock = tmp.file("never%d.sock" % i)
        rc, out, err = agentd("--config", conf, "--socket", sock, "--stats-socket", tmp.file("s%d.sock" % i))
        assert rc == 2, (text, rc, err)
        assert "%s:%d" % (conf, line) in err, (text, err)
        for n in needles:
            assert n in err, (text, n, err)
        assert not os.path.exists(sock), "an agent with a bad config must not start"
    # files that cannot be read
    rc, _, err = agentd("--config", tmp.file("missing.conf"), "--check-config")
    assert rc == 2 and "missing.conf" in err and "No such file" in err, err
    rc, _, err = agentd("--config", tmp.path, "--check-config")
    assert rc == 2 and "not a regular file" in err, err
    # an environment value still names its variable
    rc, _, err = agentd("--check-config", "--config", "", env_extra={"LOGAGENT_BUFFER_BYTES": "huge"})
    assert rc == 2 and "LOGAGENT_BUFFER_BYTES" in err, err
    # a LOGAGENT_* variable that is a typo of a setting is said so (and ignored); the client library's are not
    rc, out, err = agentd("--check-config", "--config", "", env_extra={"LOGAGENT_BUFER_BYTES": "8MiB",
                                                                     "LOGAGENT_CLIENT_BUFFER_BYTES": "1MiB"})
    assert rc == 0 and "buffer-bytes = 64MiB" in out, (rc, out, err)
    assert err == "logagentd: warning: LOGAGENT_BUFER_BYTES is not a setting, ignored: did you mean " \
                  "LOGAGENT_BUFFER_BYTES?\n", err



def test_sighup_reload():
    tmp = TempDir("hup")
    sink = Sink(tmp).start()
    conf = write(tmp, "a.conf", "flush-interval-ms = 1h\nbatch-max-records = 1000\n")
    a = Agent(tmp, sink.target, env={"LOGAGENT_CONFIG": conf}).start()
    send_records(a.socket, [{"message": "before-%d" % i} for i in range(5)])
    wait_for(lambda: a.stats()["records"]["batching"] == 5, 20, "5 records waiting in the building batch")
    # live: interval and batch size, drop policy, log level; needs a restart: buffer-bytes
    write(tmp, "a.conf", "flush-interval-ms = 50ms\nbatch-max-records = 3\non-full = drop-oldest\n"
                         "log-level = debug\nbuffer-bytes = 32MiB\n")
    a.proc.send_signal(signal.SIGHUP)
    sink.wait_count(5, 20)  # the new interval made the waiting batch due
    log = wait_for(lambda: "configuration reloaded" in a.logtext() and a.logtext(), 20, "reload logged")
    m = re.search(r'msg="configuration reloaded".* applied=(\S+)', log)
    assert m and set(m.group(1).split(",")) == {"flush-interval-ms", "batch-max-records", "on-full", "log-level"}, log
    assert re.search(r"need a restart.*settings=buffer-bytes", log), log
    st = a.stats()
    assert st["buffer"]["on_full"] == "drop-oldest" and st["buffer"]["limit_bytes"] == 64 << 20, st["buffer"]
    sent_before = st["batches"]["sent"]
    send_records(a.socket, [{"message": "after-%d" % i} for i in range(9)])
    st = a.wait_flushed(14)
    assert st["batches"]["sent"] - sent_before >= 3, st["batches"]  # at most 3 records per batch now
    # a broken file: logged, the agent keeps running with what it had
    write(tmp, "a.conf", "flush-interval-ms = never\n")
    a.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "reload failed" in a.logtext(), 20, "reload failure logged")
    assert "invalid value 'never'" in a.logtext()
    send_records(a.socket, [{"message": "still-%d" % i} for i in range(4)])
    a.wait_flushed(18)
    assert a.stop() == 0
    msgs = sorted(e["message"] for e in sink.entries())
    assert len(msgs) == 18 and len(set(msgs)) == 18, msgs


def test_log_format_json_and_back():
    """--log-format json (here from the config file): every line the agent writes is one JSON object with ts, level,
    msg and each field (numbers as numbers, the rest as strings: a mode 0600 stays "0600"), a warning with quotes and
    SIGUSR1's stats document (a string holding JSON) included; SIGHUP back to logfmt changes the next lines."""
    tmp = TempDir("logjson")
    sink = Sink(tmp).start()
    conf = write(tmp, "a.conf", "log-format = json\n")
    a = Agent(tmp, sink.target, env={"LOGAGENT_CONFIG": conf}).start()
    send_records(a.socket, [{"message": "x", "_bad": 1}])  # a reserved key: a warning line with fields
    wait_for(lambda: "reserved _-key" in a.logtext(), 20, "the warning")
    a.proc.send_signal(signal.SIGUSR1)
    wait_for(lambda: '"msg":"stats"' in a.logtext(), 20, "the stats line")
    lines = [json.loads(l) for l in a.logtext().splitlines()]
    assert all(list(l)[:3] == ["ts", "level", "msg"] for l in lines), lines
    started = [l for l in lines if l["msg"] == "logagentd started"][0]
    assert started["ring_bytes"] > 0 and isinstance(started["ring_bytes"], int) and started["version"], started
    stats_sock = [l for l in lines if l["msg"] == "stats socket listening"][0]
    assert stats_sock["mode"] == "0600", stats_sock
    warn = [l for l in lines if "reserved" in l["msg"]][0]
    assert warn["level"] == "warn" and warn["comm"] and isinstance(warn["pid"], int), warn
    doc = json.loads([l for l in lines if l["msg"] == "stats"][0]["stats"])
    assert doc["records"]["received"] == 1, doc
    write(tmp, "a.conf", "log-format = logfmt\n")
    a.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "configuration reloaded" in a.logtext(), 20, "reload logged")
    last = a.logtext().splitlines()[-1]
    assert last.startswith("ts=") and 'msg="configuration reloaded"' in last and "applied=log-format" in last, last
    assert a.stop() == 0
    sink.stop()


def test_sigusr1_logs_stats():
    tmp = TempDir("usr1")
    sink = Sink(tmp).start()
    a = Agent(tmp, sink.target).start()
    send_records(a.socket, [{"message": "m%d" % i} for i in range(25)] + [msgpack.packb([1, 2])])
    a.wait_flushed(25)
    a.proc.send_signal(signal.SIGUSR1)
    line = wait_for(lambda: next((l for l in a.logtext().splitlines() if 'msg="stats"' in l), None), 20,
                    "stats line in the log")
    m = re.search(r'stats="(.*)"$', line)
    assert m, line
    doc = json.loads(m.group(1).replace('\\"', '"').replace("\\\\", "\\"))
    assert doc["records"]["received"] == 25 and doc["records"]["flushed"] == 25, doc["records"]
    assert doc["records"]["rejected"]["invalid_record"] == 1, doc["records"]
    assert a.stop() == 0


def test_repeated_errors_are_rate_limited():
    tmp = TempDir("ratelimit")
    sink = Sink(tmp).start()
    a = Agent(tmp, sink.target).start()
    send_records(a.socket, [msgpack.packb({"no_message": i}) for i in range(300)] + [{"message": "good"}])
    wait_for(lambda: a.stats()["records"]["rejected"]["invalid_record"] == 300, 20, "300 invalid records counted")
    sink.wait_count(1)
    lines = [l for l in a.logtext().splitlines() if "invalid record skipped" in l]
    assert len(lines) == 1 and "suppressed=0" in lines[0] and "level=warn" in lines[0], lines
    assert a.stop() == 0


if __name__ == "__main__":
    run([test_precedence_and_check_config, test_running_agent_uses_the_file,
         test_config_errors_exit_2_naming_file_line_and_key, test_sighup_reload, test_log_format_json_and_back, test_sigusr1_logs_stats,
         test_repeated_errors_are_rate_limited])
