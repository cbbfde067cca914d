"""test_run_local.py — the README's main job (`make run`: packaging/run-local.sh) as a new user runs it, with real
processes: the script starts logagent-sink and logagentd in a folder of its own (./run, never /run/logagent where an
installed agent lives), prints the `export LOGAGENT_SOCKET=… LOGAGENT_STATS_SOCKET=…` line for a second terminal;
a record sent with those variables and nothing else reaches the sink's output; logagentctl finds the agent by
them; Ctrl-C stops both and leaves no port file."""
import json
import os
import re
import signal
import subprocess

from harness import BIN, TempDir, run, scaled, spawn, wait_for

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "packaging", "run-local.sh")


def test_make_run_in_a_folder_of_its_own():
    tmp = TempDir("runlocal")
    out, err = open(tmp.file("out"), "wb"), open(tmp.file("err"), "wb")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGAGENT_") or k == "LOGAGENT_BIN_DIR"}
    p = spawn(["sh", SCRIPT, BIN], cwd=tmp.path, stdout=out, stderr=err, env=env, start_new_session=True)
    text = lambda: open(tmp.file("err")).read()  # noqa: E731
    wait_for(lambda: "logagentd started" in text(), scaled(30), "the agent started by the script")
    m = re.search(r"export LOGAGENT_SOCKET=(\S+) LOGAGENT_STATS_SOCKET=(\S+)", text())
    assert m, text()
    sock, stats = m.groups()
    run_dir = os.path.realpath(tmp.file("run"))
    assert os.path.dirname(sock) == run_dir and os.path.dirname(stats) == run_dir, (sock, stats)
    assert os.path.exists(os.path.join(run_dir, "sink.port"))
    env2 = dict(env, LOGAGENT_SOCKET=sock, LOGAGENT_STATS_SOCKET=stats)
    r = subprocess.run([os.path.join(BIN, "logagent-send"), "--service", "demo", "--meta", "user=alice",
                        "hello from the README"], env=env2, capture_output=True, timeout=scaled(30))
    assert r.returncode == 0, r.stderr

    def arrived():
        for line in open(tmp.file("out")):
            if line.startswith("{") and "hello from the README" in line:
                return json.loads(line)
    e = wait_for(arrived, scaled(30), "the record in the sink's output")
    assert e["service_name"] == "demo" and e["metadata"] == {"user": "alice"}, e
    r = subprocess.run([os.path.join(BIN, "logagentctl"), "stats"], env=env2, capture_output=True, text=True,
                       timeout=scaled(30))
    assert r.returncode == 0 and "received" in r.stdout, (r.stdout, r.stderr)
    os.killpg(p.pid, signal.SIGINT)  # the terminal's Ctrl-C: the foreground group (the sink has its own session)
    assert p.wait(timeout=scaled(60)) in (0, 130), text()[-2000:]
    assert 'msg="stopped" received=1 flushed=1' in text(), text()[-2000:]
    assert not os.path.exists(os.path.join(run_dir, "sink.port")), os.listdir(run_dir)
    assert not os.path.exists("/run/logagent/sink.port")


if __name__ == "__main__":
    run([test_make_run_in_a_folder_of_its_own])
