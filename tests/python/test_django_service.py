"""test_django_service.py — the original log service rebuilt on logagent (client-shim/python/examples/
django_service), through Django's test client, against a real agent and a real sink:

  - POST /api/write_log/: the result dict, and the record at the sink with every field as sent; each bad body
    (not JSON, not an object, no message, wrong types, a metadata key clashing with a field, too large, GET)
    gets its status and the result shape with the reason, writes nothing, and Django's request log line for
    it reaches the agent too (django.request → LogAgentHandler);
  - POST /api/batch_write_test/ with count 100: every returned log_id at the sink, records shaped as the
    original's test data; a bad count is refused;
  - POST /api/concurrent_test/ with count 10,000 and max_workers 50: the report's shape and counts, and the
    sink holds exactly 10,000 records of service django-concurrent-test, each log_id and trace_id once, the
    sample log_ids among them;
  - the backend switch: DJANGO_LOG_BACKEND=bogus and =original without the original client stop `manage.py
    check` with the reason; the original backend loads its module by path (a stand-in with the original
    client's interface records the calls); measure.py with both backends, the original being the real
    examples/original client against original_server.py;
  - the WSGI application served by a real HTTP server (wsgiref, port 0);
  - measure.py (the README's before/after command) with the logagent backend and an agent it starts.

Runs with Debian's /usr/bin/python3 and python3-django (3.2)."""
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
from wsgiref.simple_server import WSGIRequestHandler, make_server

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import django_project  # noqa: E402,F401  (Django set up with the example's settings)
import logagent  # noqa: E402
from django.test import Client, override_settings  # noqa: E402
from harness import BIN, Agent, Sink, TempDir, run, scaled, spawn, wait_for  # noqa: E402

PY = "/usr/bin/python3"
LOG_ID = re.compile("[0-9a-f]{32}")
TEST_LEVELS = {"INFO", "WARN", "ERROR", "DEBUG"}
TEST_META = {"adv_id", "aweme_id", "plan_id", "monitor_type", "co_id"}  # timestamp becomes the record's time


def pair(name):
    tmp = TempDir(name)
    sink = Sink(tmp).start()
    a = Agent(tmp, sink.target, "--flush-interval-ms", "10").start()
    logagent.configure(socket_path=a.socket)  # the service's write_log and its LOGGING handler
    return tmp, sink, a


def post(client, url, body, **kw):
    data = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return client.post(url, data, content_type="application/json", **kw)


def test_write_log_endpoint_fields_and_errors():
    tmp, sink, a = pair("dj-write")
    c = Client()
    body = {"message": "user logged in", "service_name": "auth", "level": "warning", "trace_id": "trace-1",
            "span_id": "span-1", "metadata": {"user": "alice", "attempt": 2, "custom_metrics": {"cpu_usage": 0.85},
                                              "timestamp": "2024-08-30T10:30:45.123456+00:00"}}
    r = post(c, "/api/write_log/", body)
    assert r.status_code == 200 and r["Content-Type"] == "application/json", (r.status_code, r.content)
    res = r.json()
    assert set(res) == {"success", "log_id", "error_message"} and res["success"] is True, res
    assert LOG_ID.fullmatch(res["log_id"]) and res["error_message"] == "", res
    minimal = post(c, "/api/write_log/", {"message": "only a message"}).json()
    assert minimal["success"], minimal

    bad = [  # (body, status, error_message)
        ("{not json", 400, "invalid JSON: Expecting property name enclosed in double quotes: line 1 column 2 "
                           "(char 1)"),
        (b"\xff\xfe\x00", 400, None),
        ("[1, 2]", 400, "the body must be a JSON object, not an array"),
        ("", 400, "message is required"),
        ({"level": "INFO"}, 400, "message is required"),
        ({"message": ""}, 400, "message is required"),
        ({"message": 42}, 400, "message must be a string, not a number"),
        ({"message": "m", "level": 3}, 400, "level must be a string, not a number"),
        ({"message": "m", "trace_id": ["t"]}, 400, "trace_id must be a string, not an array"),
        ({"message": "m", "metadata": "x=1"}, 400, "metadata must be a JSON object, not a string"),
        ({"message": "m", "metadata": {"level": "DEBUG"}}, 400,
         "metadata key 'level' repeats a top-level field: send it at the top level"),
        ({"message": "x" * (3 << 20)}, 413, "body larger than 2621440 bytes"),
    ]
    for b, status, msg in bad:
        r = post(c, "/api/write_log/", b)
        got = r.json()
        assert r.status_code == status and got["success"] is False and got["log_id"] == "", (b, r.status_code, got)
        if msg is None:
            assert got["error_message"].startswith("invalid JSON: "), got
        else:
            assert got["error_message"] == msg, (got["error_message"], msg)
    r = c.get("/api/write_log/")
    assert r.status_code == 405 and r["Allow"] == "POST", r.status_code
    assert r.json()["error_message"] == "method GET not allowed: use POST with a JSON body", r.json()
    r = c.get("/api/nowhere/")
    assert r.status_code == 404 and r.json()["error_message"] == "no such endpoint: GET /api/nowhere/", r.content

    assert logagent.flush(scaled(10))
    n_refused = len(bad) + 2  # + the 405 and the 404
    sink.wait_count(2 + n_refused)
    a.wait_flushed(2 + n_refused)
    entries = sink.entries()
    summary = sink.stop()
    assert summary["entries"] == 2 + n_refused and summary["duplicates"] == 0, summary
    by_id = {e["log_id"]: e for e in entries}
    e = by_id[res["log_id"]]
    assert (e["service_name"], e["level"], e["message"], e["trace_id"], e["span_id"]) == \
        ("auth", "WARN", "user logged in", "trace-1", "span-1"), e
    assert e["metadata"] == {"user": "alice", "attempt": "2", "custom_metrics": '{"cpu_usage":0.85}'}, e
    assert e["timestamp_unix_nano"] == 1725013845123456000 and e["source"]["pid"] == os.getpid(), e
    m = by_id[minimal["log_id"]]
    assert m["message"] == "only a message" and m["level"] == "INFO" and not m.get("service_name"), m
    assert not m.get("trace_id") and not m.get("metadata"), m
    # every refused request: Django's own WARNING line, through the example's LOGGING, and nothing else
    refused = [x for x in entries if x["log_id"] not in (res["log_id"], minimal["log_id"])]
    assert all(x["service_name"] == "django-service" and x["level"] == "WARN" and
               x["metadata"]["logger"] == "django.request" for x in refused), refused
    assert sorted(x["message"] for x in refused) == sorted(
        ["Bad Request: /api/write_log/"] * (len(bad) - 1) + ["Request Entity Too Large: /api/write_log/",
                                                             "Method Not Allowed: /api/write_log/",
                                                             "Not Found: /api/nowhere/"]), refused
    assert sorted(x["metadata"]["status_code"] for x in refused) == sorted(
        ["400"] * (len(bad) - 1) + ["413", "405", "404"])
    assert a.stop() == 0


def test_batch_write_test_100_log_ids_at_the_sink():
    tmp, sink, a = pair("dj-batch")
    c = Client()
    r = post(c, "/api/batch_write_test/", {"count": 100})
    assert r.status_code == 200, r.content
    rep = r.json()
    assert set(rep) == {"success", "test_type", "backend", "total_count", "success_count", "failed_count",
                        "duration_seconds", "logs_per_second", "flushed", "sample_results", "error_summary",
                        "log_ids", "log_ids_truncated"}, sorted(rep)
    assert (rep["success"], rep["test_type"], rep["backend"], rep["total_count"], rep["success_count"],
            rep["failed_count"], rep["flushed"], rep["log_ids_truncated"]) == \
        (True, "batch", "logagent", 100, 100, 0, True, False), rep
    assert rep["error_summary"] == {"total_errors": 0, "sample_errors": []}, rep["error_summary"]
    assert rep["duration_seconds"] > 0 and rep["logs_per_second"] > 0, rep
    ids = rep["log_ids"]
    assert len(ids) == 100 and len(set(ids)) == 100 and all(LOG_ID.fullmatch(i) for i in ids), ids[:3]
    assert [s["log_id"] for s in rep["sample_results"]] == ids[:5], rep["sample_results"]
    default = post(c, "/api/batch_write_test/", "").json()
    assert default["total_count"] == default["success_count"] == 10 and len(default["log_ids"]) == 10, default
    for count in (0, -1, "10", 1.5, True, 1000001):
        r = post(c, "/api/batch_write_test/", {"count": count})
        assert r.status_code == 400 and r.json()["error_message"] == \
            "count must be an integer from 1 to 1000000, not %s" % json.dumps(count), (count, r.content)

    assert logagent.flush(scaled(10))
    sink.wait_count(110 + 2 + 6)  # the records, the two reports' summary lines, six "Bad Request" lines
    batch = {e["log_id"]: e for e in sink.entries() if e.get("service_name") == "django-batch-test"}
    assert set(ids) | set(default["log_ids"]) == set(batch), len(batch)
    for k, i in enumerate(ids, 1):
        e = batch[i]
        assert (e["message"], e["trace_id"], e["span_id"]) == \
            ("Batch test log entry %d" % k, "batch-trace-%06d" % k, "batch-span-%06d" % k), e
        assert e["level"] in TEST_LEVELS and set(e["metadata"]) == TEST_META, e
    own = [e for e in sink.entries() if e.get("service_name") == "django-service"]
    assert len(own) == 2 + 6, own  # the two reports' summary lines and six "Bad Request" lines
    line = next(e for e in own if e["message"].startswith("batch test: 100/100 records"))
    assert line["metadata"]["total_count"] == "100" and line["metadata"]["backend"] == "logagent", line
    summary = sink.stop()
    assert summary["duplicates"] == 0, summary
    assert a.stop() == 0


def test_concurrent_test_10000_records_50_workers_each_once():
    tmp, sink, a = pair("dj-concurrent")
    n = 10000
    r = post(Client(), "/api/concurrent_test/", {"count": n, "max_workers": 50})
    assert r.status_code == 200, r.content
    rep = r.json()
    assert list(rep) == ["success", "test_type", "backend", "total_count", "success_count", "failed_count",
                         "duration_seconds", "logs_per_second", "max_workers", "flushed", "sample_results",
                         "error_summary"], list(rep)
    assert (rep["success"], rep["test_type"], rep["total_count"], rep["success_count"], rep["failed_count"],
            rep["max_workers"], rep["flushed"]) == (True, "concurrent", n, n, 0, 50, True), rep
    assert rep["error_summary"] == {"total_errors": 0, "sample_errors": []}, rep
    assert abs(rep["logs_per_second"] - n / rep["duration_seconds"]) < 0.01 * rep["logs_per_second"] + 5, rep
    samples = rep["sample_results"]
    assert len(samples) == 5 and all(s["success"] and LOG_ID.fullmatch(s["log_id"]) and s["error_message"] == ""
                                     for s in samples), samples
    print("     concurrent_test: %d records, 50 workers, %.0f records/s" % (n, rep["logs_per_second"]))
    for body in ({"count": 10, "max_workers": 0}, {"count": 10, "max_workers": 201}):
        r = post(Client(), "/api/concurrent_test/", body)
        assert r.status_code == 400 and r.json()["error_message"] == \
            "max_workers must be an integer from 1 to 200, not %d" % body["max_workers"], r.content

    def concurrent():
        return [e for e in sink.entries() if e.get("service_name") == "django-concurrent-test"]
    wait_for(lambda: len(concurrent()) >= n, 60, "%d concurrent_test records at the sink" % n)
    assert logagent.flush(scaled(10))
    st = a.wait_flushed(n + 3)  # + the service's own summary line and two "Bad Request" lines
    got = concurrent()
    summary = sink.stop()
    assert summary["duplicates"] == 0 and summary["entries"] == n + 3, summary
    assert len(got) == n and len({e["log_id"] for e in got}) == n, len(got)
    assert {s["log_id"] for s in samples} <= {e["log_id"] for e in got}
    assert sorted(e["trace_id"] for e in got) == ["concurrent-trace-%06d" % i for i in range(1, n + 1)]
    for e in got:
        k = int(e["trace_id"].rsplit("-", 1)[1])
        assert e["span_id"] == "concurrent-span-%06d" % k and e["message"] == "Concurrent test log entry %d" % k, e
        assert e["level"] in TEST_LEVELS and set(e["metadata"]) == TEST_META, e
        md = e["metadata"]
        assert 1000000 <= int(md["adv_id"]) <= 9999999 and 1000 <= int(md["co_id"]) <= 9999, md
        assert md["monitor_type"] in ("impression", "click", "conversion", "view"), md
    assert {e["level"] for e in got} == TEST_LEVELS  # random levels: all four among 10,000
    r = st["records"]
    assert r["received"] == n + 3 and sum(r["dropped"].values()) == 0, r
    cs = logagent.get_stats()
    assert cs["dropped"] == 0 and cs["rejected"] == 0, cs
    assert a.stop() == 0


STAND_IN = r'''
"""A stand-in with the original client's interface (the real one is examples/original/original_client.py):
it writes through its own logagent.Client and records how it was called."""
import os
import logagent
import helper_beside_it  # a module in the same folder, as generated gRPC stubs would be
calls = []
_client = logagent.Client(os.environ["STAND_IN_SOCKET"])


def write_log(message, service_name=None, level="INFO", trace_id=None, span_id=None, **metadata):
    calls.append((message, service_name, level, trace_id, span_id, metadata))
    return _client.write_log(message, service_name=service_name, level=level, trace_id=trace_id,
                             span_id=span_id, via=helper_beside_it.NAME, **metadata)
'''


def manage_check(env_extra):
    env = dict(os.environ, PYTHONPATH=django_project.CLIENT_DIR, PYTHONDONTWRITEBYTECODE="1", **env_extra)
    p = spawn([PY, os.path.join(django_project.EXAMPLE_DIR, "manage.py"), "check"], env=env,
              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = p.communicate(timeout=scaled(60))
    return p.returncode, out.decode(), err.decode()


def test_backend_switch():
    tmp, sink, a = pair("dj-backend")
    rc, out, err = manage_check({"DJANGO_LOG_BACKEND": "logagent"})
    assert rc == 0 and "System check identified no issues" in out, (rc, out, err)
    rc, out, err = manage_check({"DJANGO_LOG_BACKEND": "bogus"})
    assert rc == 1 and err.rstrip().endswith(
        "ImproperlyConfigured: DJANGO_LOG_BACKEND must be one of logagent, original, not 'bogus'"), (rc, err)
    missing = tmp.file("no-such-client.py")
    rc, out, err = manage_check({"DJANGO_LOG_BACKEND": "original", "DJANGO_ORIGINAL_CLIENT": missing})
    assert rc == 1 and err.rstrip().endswith(
        "ImproperlyConfigured: DJANGO_LOG_BACKEND=original needs the original service's client, %s, which does "
        "not exist (set DJANGO_ORIGINAL_CLIENT to its path)" % missing), (rc, err)

    folder = tmp.file("original")
    os.mkdir(folder)
    path = os.path.join(folder, "original_client.py")
    with open(path, "w") as f:
        f.write(STAND_IN)
    with open(os.path.join(folder, "helper_beside_it.py"), "w") as f:
        f.write('NAME = "stand-in"\n')
    os.environ["STAND_IN_SOCKET"] = a.socket
    try:
        with override_settings(LOG_BACKEND="original", ORIGINAL_CLIENT_PATH=path):
            res = post(Client(), "/api/write_log/", {"message": "via the original", "level": "ERROR",
                                                     "metadata": {"k": 1}}).json()
            rep = post(Client(), "/api/concurrent_test/", {"count": 20, "max_workers": 4}).json()
    finally:
        del os.environ["STAND_IN_SOCKET"]
    mod = sys.modules["original_client"]
    assert res["success"] and mod.calls[0] == ("via the original", None, "ERROR", None, None, {"k": 1}), mod.calls[0]
    assert (rep["backend"], rep["success_count"], rep["flushed"]) == ("original", 20, None), rep
    assert len(mod.calls) == 21 and sorted(c[3] for c in mod.calls[1:]) == \
        ["concurrent-trace-%06d" % i for i in range(1, 21)]
    assert post(Client(), "/api/write_log/", {"message": "logagent again"}).json()["success"]
    assert mod._client.close(scaled(10)) and logagent.flush(scaled(10))
    sink.wait_count(23)  # 21 through the stand-in, "logagent again", the concurrent_test's summary line
    a.wait_flushed(23)
    via = [e for e in sink.entries() if e.get("metadata", {}).get("via") == "stand-in"]
    first = [e for e in via if e["message"] == "via the original"]  # batches may land out of order (max-inflight)
    assert len(via) == 21 and len(first) == 1, (len(via), first)
    assert first[0]["level"] == "ERROR" and first[0]["metadata"] == {"via": "stand-in", "k": "1"}, first
    assert sink.stop()["entries"] == 23
    assert a.stop() == 0


class QuietHandler(WSGIRequestHandler):
    def log_message(self, *args):
        pass


def test_served_by_a_wsgi_server():
    tmp, sink, a = pair("dj-wsgi")
    from django_service.wsgi import application
    server = make_server("127.0.0.1", 0, application, handler_class=QuietHandler)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=scaled(30))
        conn.request("POST", "/api/write_log/", json.dumps({"message": "over HTTP", "service_name": "web"}),
                     {"Content-Type": "application/json"})
        r = conn.getresponse()
        res = json.loads(r.read())
        assert r.status == 200 and res["success"], (r.status, res)
        conn.request("POST", "/api/concurrent_test/", json.dumps({"count": 500, "max_workers": 8}))
        r = conn.getresponse()
        rep = json.loads(r.read())
        assert r.status == 200 and rep["success_count"] == 500, (r.status, rep)
        conn.close()
    finally:
        server.shutdown()
        server.server_close()
        t.join()
    sink.wait_count(1 + 500 + 1)
    e = next(e for e in sink.entries() if e["log_id"] == res["log_id"])
    assert e["message"] == "over HTTP" and e["service_name"] == "web", e
    assert a.stop() == 0


def test_measure_script():
    """The README's before/after command, logagent side (the original side needs examples/original)."""
    script = os.path.join(django_project.EXAMPLE_DIR, "measure.py")
    env = dict(os.environ, PYTHONPATH=django_project.CLIENT_DIR, PYTHONDONTWRITEBYTECODE="1")
    p = spawn([PY, script, "--backends", "logagent", "--build", BIN, "--count", "300", "--workers", "1,4",
               "--warmup", "10"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = p.communicate(timeout=scaled(120))
    lines = out.decode().splitlines()
    assert p.returncode == 0 and not err, (p.returncode, out, err)
    assert lines[0] == "| backend | max_workers | records | failed | seconds | records/s | delivered/s |", lines
    rows = [re.fullmatch(r"\| logagent \| (\d+) \| 300 \| 0 \| [\d.]+ \| \d+ \| \d+ \|", x) for x in lines[2:]]
    assert len(rows) == 2 and all(rows) and [int(m.group(1)) for m in rows] == [1, 4], lines
    p = spawn([PY, script, "--backends", "original"], env=dict(env, ORIGINAL_LOG_SERVICE=""),
              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = p.communicate(timeout=scaled(60))
    assert p.returncode == 2 and "the original backend needs ORIGINAL_LOG_SERVICE=HOST:PORT" in err.decode(), err


def test_measure_both_backends_with_the_real_original():
    """The README's before/after table, both sides: the original backend is the real examples/original client, one
    unary WriteLog per record to original_server.py (which counts every record it answered)."""
    tmp = TempDir("django-orig")
    original = os.path.join(django_project.CLIENT_DIR, "examples", "original")
    port_file, out_file = tmp.file("orig.port"), tmp.file("orig.jsonl")
    err_f = open(tmp.file("orig.stderr"), "wb")
    srv = spawn([PY, os.path.join(original, "original_server.py"), "--listen", "127.0.0.1:0", "--port-file",
                 port_file, "--out", out_file], stdout=subprocess.DEVNULL, stderr=err_f)
    port = wait_for(lambda: os.path.exists(port_file) and open(port_file).read().strip(), 30, "original's port")
    script = os.path.join(django_project.EXAMPLE_DIR, "measure.py")
    env = dict(os.environ, PYTHONPATH=django_project.CLIENT_DIR, PYTHONDONTWRITEBYTECODE="1",
               ORIGINAL_LOG_SERVICE="127.0.0.1:%s" % port)
    p = spawn([PY, script, "--build", BIN, "--count", "200", "--workers", "1,4", "--warmup", "10"], env=env,
              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = p.communicate(timeout=scaled(180))
    lines = out.decode().splitlines()
    assert p.returncode == 0, (p.returncode, out, err)
    rows = {(m.group(1), int(m.group(2))) for m in (re.fullmatch(r"\| (logagent|original) \| (\d+) \| 200 \| 0 \| .*",
                                                                 x) for x in lines) if m}
    assert rows == {("logagent", 1), ("logagent", 4), ("original", 1), ("original", 4)}, lines
    assert any(re.fullmatch(r"max_workers 4: logagent [\d.]+x the original", x) for x in lines), lines
    srv.send_signal(signal.SIGTERM)
    assert srv.wait(timeout=scaled(30)) == 0
    err_f.close()
    entries = [json.loads(x) for x in open(out_file)]
    traces = [e["trace_id"] for e in entries if e["service_name"] == "django-concurrent-test"]
    # warm-up 10 + 200 for max_workers 1 + 200 for 4, each answered once by the original service
    assert len(entries) == len({e["log_id"] for e in entries}) and len(traces) == 410, (len(entries), len(traces))


if __name__ == "__main__":
    run([test_write_log_endpoint_fields_and_errors, test_batch_write_test_100_log_ids_at_the_sink,
         test_concurrent_test_10000_records_50_workers_each_once, test_backend_switch, test_served_by_a_wsgi_server,
         test_measure_script, test_measure_both_backends_with_the_real_original])
