"""test_django_tools.py — the example's one-command start and the original project's two test tools, rebuilt
(client-shim/python/examples/django_service: run.sh, test_client.py, direct_test.py), run the way a user runs
them, with small counts:

  - direct_test.py on the logagent backend against a real agent and sink: exit 0, its summary says the agent
    delivered every record, and the sink holds each test record exactly once with the original's test fields;
    on the original backend against examples/original/original_server.py: each record answered exactly once;
  - test_client.py against the service on its original backend (served in this process by a threading wsgiref
    server): exit 0, its summary says the original service answered them, each record there exactly once;
  - run.sh brought up (real logagent-sink, logagentd, gunicorn with 3 workers that gunicorn replaces every 10
    requests, so that many worker processes write), test_client.py run against it end to end (every scenario,
    the large one by --yes): exit 0, its summary says the agent delivered them; then run.sh stopped with SIGTERM:
    all three processes gone, and the sink's file holds every test record exactly once, written by several
    gunicorn workers (none by the master).

Waits are on conditions with timeouts; ports are chosen by the programs (port 0); everything lives in temp
folders; whatever a test started is stopped by pid at its end."""
import collections
import json
import os
import re
import signal
import subprocess
import sys
import threading
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import django_project  # noqa: E402  (Django set up with the example's settings; the tools run as processes)
from harness import BIN, Agent, Sink, TempDir, run, scaled, spawn, wait_for  # noqa: E402

PY = "/usr/bin/python3"
EXAMPLE = django_project.EXAMPLE_DIR
ORIGINAL = os.path.join(django_project.CLIENT_DIR, "examples", "original")


class ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
TEST_LEVELS = {"INFO", "WARN", "ERROR", "DEBUG"}
TEST_META = {"adv_id", "aweme_id", "plan_id", "monitor_type", "co_id"}


def tool_env(**extra):
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", PYTHONPATH=django_project.CLIENT_DIR)
    for k in ("DJANGO_SETTINGS_MODULE", "LOGAGENT_SOCKET", "LOGAGENT_STATS_SOCKET", "LOG_SERVICE_GRPC_SERVER",
              "LOG_CLIENT_BACKEND"):
        env.pop(k, None)
    env.update(extra)
    return env


def run_tool(args, env, timeout=120):
    p = spawn([PY] + args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = p.communicate(timeout=scaled(timeout))
    return p.returncode, out.decode(), err.decode()


def check_test_records(entries, service, kind, n):
    """The test records of one tool run: n, each trace id kind-trace-000001.. once, the original's fields."""
    got = [e for e in entries if e.get("service_name") == service]
    assert len(got) == n and len({e["log_id"] for e in got}) == n, (service, len(got))
    assert sorted(e["trace_id"] for e in got) == ["%s-trace-%06d" % (kind, i) for i in range(1, n + 1)], service
    for e in got:
        k = int(e["trace_id"].rsplit("-", 1)[1])
        assert e["span_id"] == "%s-span-%06d" % (kind, k), e
        assert e["level"] in TEST_LEVELS and TEST_META <= set(e["metadata"]), e
    return got


def test_direct_test_logagent_backend():
    tmp = TempDir("tools-direct")
    sink = Sink(tmp).start()
    a = Agent(tmp, sink.target, "--flush-interval-ms", "10").start()
    rc, out, err = run_tool([os.path.join(EXAMPLE, "direct_test.py"), "--count", "20", "--large", "30",
                             "--workers", "4"],
                            tool_env(LOGAGENT_SOCKET=a.socket, LOGAGENT_STATS_SOCKET=a.stats_socket))
    assert rc == 0, (rc, out, err)
    assert "direct_test: log_client.client.write_log, backend logagent (%s)" % a.socket in out, out
    assert re.search(r"^concurrent +20 +20 +0 +[\d.]+ +\d+ +20 +\d+$", out, re.M), out
    assert re.search(r"^large +30 +30 +0 +[\d.]+ +\d+ +30 +\d+$", out, re.M), out
    assert "delivered by the agent: 50 of 50 records (records.flushed 0 -> 50)" in out, out
    sink.wait_count(50)
    entries = sink.entries()
    got = check_test_records(entries, "django-direct-test", "direct", 50)
    assert all(e["message"] == "Direct test log entry %d" % int(e["trace_id"][-6:]) for e in got)
    summary = sink.stop()
    assert summary["entries"] == 50 and summary["duplicates"] == 0, summary
    assert a.stop() == 0


def start_original(tmp):
    """The original service (examples/original's server) on a free port: (process, port, its output file, its
    stderr file, which the caller closes)."""
    port_file, out_file = tmp.file("orig.port"), tmp.file("orig.jsonl")
    err_f = open(tmp.file("orig.stderr"), "wb")
    srv = spawn([PY, os.path.join(ORIGINAL, "original_server.py"), "--listen", "127.0.0.1:0", "--port-file",
                 port_file, "--out", out_file], stdout=subprocess.DEVNULL, stderr=err_f)
    port = wait_for(lambda: os.path.exists(port_file) and open(port_file).read().strip(), 30, "original's port")
    return srv, port, out_file, err_f


def test_direct_test_original_backend():
    tmp = TempDir("tools-direct-orig")
    srv, port, out_file, err_f = start_original(tmp)
    rc, out, err = run_tool([os.path.join(EXAMPLE, "direct_test.py"), "--backend", "original", "--server",
                             "127.0.0.1:%s" % port, "--count", "20", "--large", "30", "--workers", "4"], tool_env())
    assert rc == 0, (rc, out, err)
    assert "backend original (127.0.0.1:%s)" % port in out, out
    assert re.search(r"^large +30 +30 +0 +[\d.]+ +\d+ +- +-$", out, re.M), out
    assert "delivered: each written record was answered by the original service at 127.0.0.1:%s" % port in out
    srv.send_signal(signal.SIGTERM)
    assert srv.wait(timeout=scaled(30)) == 0
    err_f.close()
    entries = [json.loads(x) for x in open(out_file)]
    check_test_records(entries, "django-direct-test", "direct", 50)
    assert len(entries) == 50, len(entries)


class QuietHandler(WSGIRequestHandler):
    def log_message(self, *args):
        pass


def test_test_client_original_backend():
    """test_client.py against the service on its original backend (DJANGO_LOG_BACKEND=original: the real
    examples/original client, one unary WriteLog per record to original_server.py), served by wsgiref."""
    tmp = TempDir("tools-client-orig")
    srv, port, out_file, err_f = start_original(tmp)
    os.environ["ORIGINAL_LOG_SERVICE"] = "127.0.0.1:%s" % port
    from django.test import override_settings
    from django_service.wsgi import application
    server = make_server("127.0.0.1", 0, application, server_class=ThreadingWSGIServer, handler_class=QuietHandler)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    try:
        with override_settings(LOG_BACKEND="original",
                               ORIGINAL_CLIENT_PATH=os.path.join(ORIGINAL, "original_client.py")):
            t.start()
            rc, out, err = run_tool([os.path.join(EXAMPLE, "test_client.py"), "--url",
                                     "http://127.0.0.1:%d" % server.server_port, "--count", "20", "--batch", "5",
                                     "--requests", "20", "--clients", "4", "--large", "30", "--workers", "4",
                                     "--yes"], tool_env())
    finally:
        server.shutdown()
        server.server_close()
        t.join()
        sys.modules["original_client"].close()
        del os.environ["ORIGINAL_LOG_SERVICE"]
    assert rc == 0, (rc, out, err)
    assert "=== summary (http://127.0.0.1:%d, backend original) ===" % server.server_port in out, out
    assert re.search(r"^concurrent_test \(large\) +30 +30 +0 +[\d.]+ +\d+ +- +-$", out, re.M), out
    assert "total: 76 records, 76 written, 0 failed" in out and \
        "delivered: each written record was answered by the original service (backend original)" in out, out
    srv.send_signal(signal.SIGTERM)
    assert srv.wait(timeout=scaled(30)) == 0
    err_f.close()
    entries = [json.loads(x) for x in open(out_file)]
    assert len(entries) == 76 and len({e["log_id"] for e in entries}) == 76, len(entries)
    by_service = collections.Counter(e["service_name"] for e in entries)
    assert by_service == {"django-test-client": 1, "django-batch-test": 5, "django-concurrent-test": 50,
                          "django-manual-test": 20}, by_service


def alive(pid):
    """True while pid exists and is not a zombie."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_run_sh_gunicorn_and_test_client():
    tmp = TempDir("tools-run")
    run_dir, out_path = tmp.file("run"), tmp.file("run.out")
    out_f = open(out_path, "wb")
    env = tool_env(LOGAGENT_BUILD_DIR=BIN, RUN_DIR=run_dir, PORT="0", WORKERS="3",
                   GUNICORN_CMD_ARGS="--max-requests 10", DJANGO_LOG_CONSOLE="0")
    sh = spawn([os.path.join(EXAMPLE, "run.sh")], env=env, stdout=out_f, stderr=subprocess.STDOUT)
    text = lambda: open(out_path).read()  # noqa: E731
    pids = []
    try:
        def ready():
            if sh.poll() is not None:
                raise AssertionError("run.sh exited with %s:\n%s" % (sh.returncode, text()))
            return re.search(r"^ready; Ctrl-C stops all three$", text(), re.M)
        wait_for(ready, 90, "run.sh to say ready")
        shown = text()
        url = re.search(r"service: +(http://127\.0\.0\.1:\d+)/api/write_log/", shown).group(1)
        stats = re.search(r"LOGAGENT_STATS_SOCKET=(\S+)", shown).group(1)
        assert re.search(r"LOGAGENT_SOCKET=%s/ingest\.sock$" % re.escape(run_dir), shown, re.M), shown
        assert stats == os.path.join(run_dir, "stats.sock") and "gunicorn, 3 workers" in shown, shown
        pids = [int(x) for x in re.findall(r"pid (\d+)", shown)]
        assert len(pids) == 3 and all(alive(p) for p in pids), (pids, shown)

        rc, out, err = run_tool([os.path.join(EXAMPLE, "test_client.py"), "--url", url, "--count", "20",
                                 "--batch", "5", "--requests", "20", "--clients", "4", "--large", "30",
                                 "--workers", "4", "--yes"], tool_env(LOGAGENT_STATS_SOCKET=stats))
        assert rc == 0, (rc, out, err)
        for row in (r"write_log \(1 record\) +1 +1 +0", r"batch_write_test +5 +5 +0", r"concurrent_test +20 +20 +0",
                    r"20 requests +20 +20 +0", r"concurrent_test \(large\) +30 +30 +0"):
            assert re.search("^" + row, out, re.M), (row, out)
        assert "total: 76 records, 76 written, 0 failed" in out, out
        m = re.search(r"^delivered by the agent: (\d+) of 76 records \(records\.flushed (\d+) -> (\d+)", out, re.M)
        assert m and int(m.group(1)) >= 76 and int(m.group(3)) - int(m.group(2)) == int(m.group(1)), out

        sh.send_signal(signal.SIGTERM)
        assert sh.wait(timeout=scaled(90)) == 143, text()
        for p in pids:
            wait_for(lambda: not alive(p), 30, "pid %d gone" % p)
    finally:
        if sh.poll() is None:
            sh.send_signal(signal.SIGTERM)
            try:
                sh.wait(timeout=scaled(60))
            except subprocess.TimeoutExpired:
                pass
        for p in pids:  # what run.sh started, by pid, if it could not stop them
            if alive(p):
                os.kill(p, signal.SIGKILL)
        out_f.close()
    log = text()
    assert "run.sh: stopping gunicorn, logagentd, logagent-sink" in log and "run.sh: kept %s" % run_dir in log, log
    summary = json.loads(re.search(r"^run\.sh: sink summary: (\{.*\})$", log, re.M).group(1))
    with open(os.path.join(run_dir, "sink.jsonl")) as f:
        entries = [json.loads(x) for x in f]
    assert summary["duplicates"] == 0 and summary["entries"] == len(entries), (summary, len(entries))
    assert len({e["log_id"] for e in entries}) == len(entries)
    one = [e for e in entries if e.get("service_name") == "django-test-client"]
    assert len(one) == 1 and one[0]["message"] == "test_client: one record", one
    assert len([e for e in entries if e.get("service_name") == "django-batch-test"]) == 5
    conc = [e for e in entries if e.get("service_name") == "django-concurrent-test"]
    assert collections.Counter(e["trace_id"] for e in conc) == collections.Counter(
        ["concurrent-trace-%06d" % i for i in range(1, 21)] + ["concurrent-trace-%06d" % i for i in range(1, 31)])
    manual = [e for e in entries if e.get("service_name") == "django-manual-test"]
    assert sorted(e["trace_id"] for e in manual) == ["manual-trace-%06d" % i for i in range(1, 21)], len(manual)
    test_records = one + conc + manual + [e for e in entries if e.get("service_name") == "django-batch-test"]
    writers = {e["source"]["pid"] for e in test_records}
    # gunicorn replaced each worker after 10 requests: the 27 requests were served by several worker processes
    assert len(writers) >= 2 and pids[0] not in writers, (writers, pids)
    print("     %d records from %d gunicorn worker processes" % (len(test_records), len(writers)))


if __name__ == "__main__":
    run([test_direct_test_logagent_backend, test_direct_test_original_backend, test_test_client_original_backend,
         test_run_sh_gunicorn_and_test_client])
