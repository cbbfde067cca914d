"""test_bench_modes.py — logagent-bench's modes against real processes: the end-to-end mode (--stats-socket)
through the C library, and its report when the service is down; --python (the Python client through a real
agent and sink); --original (the original design's unary gRPC client against original_server.py, and
original_client's result dict, metadata strings and error); --http and --http-batch against the agent's HTTP
ingest (skipped while logagentd has no --http-listen); usage errors (exit 2, naming the flag).

Run one test by name (ctest registers each: bench_socket_e2e, ...), or all with no argument. Debian's
/usr/bin/python3; the original's test needs python3-grpcio, python3-protobuf and protoc."""
import json
import os
import re
import signal
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
ORIGINAL = os.path.join(ROOT, "client-shim", "python", "examples", "original")
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))

from harness import BIN, Agent, Sink, TempDir, dead_target, run, scaled, spawn, wait_for  # noqa: E402

BENCH = os.path.join(BIN, "logagent-bench")
PY = "/usr/bin/python3"
MSG = re.compile(r"Concurrent test log entry (\d+)\Z")
META_KEYS = {"adv_id", "aweme_id", "plan_id", "monitor_type", "co_id"}


def bench(*args, timeout=120):
    """Runs logagent-bench; returns (exit status, report dict or None, stderr)."""
    p = subprocess.run([BENCH] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=scaled(timeout))
    out = p.stdout.decode().strip()
    return p.returncode, (json.loads(out.splitlines()[-1]) if out else None), p.stderr.decode()


def pair(name, *agent_args):
    tmp = TempDir(name)
    sink = Sink(tmp).start()
    return tmp, sink, Agent(tmp, sink.target, "--flush-interval-ms", "20", *agent_args).start()


def assert_measured(rep, n, socket=True):
    """The bench's measurements of itself are there and sane (not how fast they are: a benchmark is no test)."""
    assert rep["prepared_records"] == min(n, 8192) and rep["prepare_seconds"] >= 0, rep
    assert rep["bench_cpu_seconds"] > 0 and rep["bench_cpu_us_per_record"] > 0, rep
    if not socket:
        assert "write_cpu_seconds" not in rep and "write_latency_us" not in rep, rep
        return
    assert rep["write_cpu_seconds"] > 0 and rep["write_cpu_us_per_record"] > 0, rep
    assert rep["write_cpu_seconds"] <= rep["bench_cpu_seconds"] * 1.05 + 0.01, rep  # the write loops are part of it
    lat = rep["write_latency_us"]
    assert lat["samples"] > 0 and lat["every"] >= 64, rep
    assert 0 < lat["p50"] <= lat["p99"] <= lat["max"], rep


def assert_delivered(rep, n, workers):
    assert rep["success_count"] == n and rep["failed_count"] == 0 and rep["total_count"] == n, rep
    assert rep["max_workers"] == workers and rep["delivered"] == n, rep
    assert rep["e2e_duration_seconds"] > 0 and rep["delivered_per_second"] > 0, rep
    assert rep["error_summary"] == {"total_errors": 0, "sample_errors": []}, rep


def assert_sink_has(sink, n, with_log_ids=True):
    """Every record 1..n exactly once at the sink, in the concurrent test's shape."""
    sink.wait_count(n)
    es = sink.entries()
    nums = sorted(int(MSG.match(e["message"]).group(1)) for e in es)
    assert nums == list(range(1, n + 1)), nums[:20]
    for e in es:
        i = int(MSG.match(e["message"]).group(1))
        assert e["service_name"] == "django-concurrent-test" and e["level"] in ("INFO", "WARN", "ERROR", "DEBUG"), e
        assert e["trace_id"] == "concurrent-trace-%06d" % i and e["span_id"] == "concurrent-span-%06d" % i, e
        assert META_KEYS <= set(e["metadata"]) and e["metadata"]["adv_id"].isdigit(), e
    if with_log_ids:
        assert len({e["log_id"] for e in es}) == n


def test_socket_e2e():
    tmp, sink, a = pair("bench-e2e")
    rc, rep, err = bench("--socket", a.socket, "--count", "500", "--workers", "4", "--stats-socket", a.stats_socket)
    assert rc == 0, (rc, rep, err)
    assert_delivered(rep, 500, 4)
    assert rep["client"] == "shared" and "mode" not in rep, rep  # the socket report keeps its shape
    assert_measured(rep, 500)
    assert_sink_has(sink, 500)
    assert a.stats()["records"]["flushed"] == 500
    # without --stats-socket: the report has no end-to-end keys
    rc, rep, err = bench("--socket", a.socket, "--count", "10", "--workers", "1")
    assert rc == 0 and "delivered" not in rep and rep["success_count"] == 10, (rc, rep, err)
    # more records than the bench builds before the clock: they repeat the first ones' content, each its own log_id
    n = 8192 + 3000
    a.wait_flushed(510)  # the end-to-end wait counts from the agent's flushed count when it starts
    rc, rep, err = bench("--socket", a.socket, "--count", str(n), "--workers", "3", "--per-worker-client",
                         "--stats-socket", a.stats_socket)
    assert rc == 0 and rep["client"] == "per-worker", (rc, rep, err)
    assert_delivered(rep, n, 3)
    assert_measured(rep, n)
    sink.wait_count(500 + 10 + n)
    es = sink.entries()[510:]
    nums = sorted(int(MSG.match(e["message"]).group(1)) for e in es)
    assert nums == sorted(list(range(1, 8193)) + list(range(1, 3001))), nums[:20]
    assert len({e["log_id"] for e in es}) == n
    assert a.stop() == 0


def test_socket_e2e_service_down_times_out():
    tmp = TempDir("bench-down")
    target, _ = dead_target(tmp)
    a = Agent(tmp, target, "--flush-interval-ms", "20").start()
    rc, rep, err = bench("--socket", a.socket, "--count", "50", "--workers", "2", "--stats-socket", a.stats_socket,
                         "--stats-timeout-ms", "300")
    assert rc == 1, (rc, rep, err)
    assert rep["success_count"] == 50 and rep["delivered"] == 0, rep
    assert rep["error_summary"]["total_errors"] == 1, rep
    assert rep["error_summary"]["sample_errors"] == ["end to end: 0 of 50 accepted records flushed after waiting "
                                                     "300 ms"], rep
    a.kill()


def test_python_mode():
    tmp, sink, a = pair("bench-py")
    rc, rep, err = bench("--python", "--socket", a.socket, "--count", "200", "--workers", "4", "--stats-socket",
                         a.stats_socket)
    assert rc == 0, (rc, rep, err)
    assert_delivered(rep, 200, 4)
    assert rep["mode"] == "python" and rep["client"] == "shared" and rep["block_ms"] == -1, rep
    assert_sink_has(sink, 200)
    # the agent is missing: exit 1 with a message, no report
    rc, rep, err = bench("--python", "--socket", tmp.file("nothing.sock"), "--count", "5", "--workers", "1")
    assert rc == 1 and rep is None and "cannot reach the agent at %s" % tmp.file("nothing.sock") in err, (rc, err)
    assert a.stop() == 0


def start_original_server(tmp):
    port_file = tmp.file("orig.port")
    err = open(tmp.file("orig.stderr"), "wb")
    p = spawn([PY, os.path.join(ORIGINAL, "original_server.py"), "--listen", "127.0.0.1:0", "--port-file", port_file,
               "--out", tmp.file("orig.jsonl")], stdout=subprocess.DEVNULL, stderr=err)

    def port():
        assert p.poll() is None, open(tmp.file("orig.stderr")).read()
        return os.path.exists(port_file) and int(open(port_file).read())
    return p, wait_for(port, 30, "original_server.py's port file"), err


def stop_original_server(tmp, p, err):
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=scaled(30)) == 0
    err.close()
    lines = [l for l in open(tmp.file("orig.stderr")).read().splitlines() if l.startswith("{")]
    assert lines, open(tmp.file("orig.stderr")).read()
    entries = [json.loads(l) for l in open(tmp.file("orig.jsonl"))]
    return json.loads(lines[-1]), entries


def test_original_mode():
    tmp = TempDir("bench-orig")
    p, port, err = start_original_server(tmp)
    target = "127.0.0.1:%d" % port
    rc, rep, err_text = bench("--original", target, "--count", "200", "--workers", "4")
    assert rc == 0, (rc, rep, err_text)
    assert rep["mode"] == "original" and rep["target"] == target and rep["success_count"] == 200, rep
    assert rep["delivered"] == 200 and rep["error_summary"]["total_errors"] == 0, rep

    # original_client itself, in this process: the result dict is the service's answer; metadata as strings
    sys.path.insert(0, ORIGINAL)
    os.environ["ORIGINAL_LOG_SERVICE"] = target
    import original_client
    r = original_client.write_log("direct", service_name="svc", level="WARN", trace_id="t1", span_id="s1",
                                  custom_metrics={"cpu_usage": 0.85}, tags=["a", 1], flag=True, none=None, n=7)
    assert set(r) == {"success", "log_id", "error_message"} and r["success"] is True, r
    assert re.fullmatch("[0-9a-f]{32}", r["log_id"]) and r["error_message"] == "", r
    bad = original_client.write_log(123)
    assert bad["success"] is False and bad["log_id"] == "" and bad["error_message"].startswith("TypeError"), bad
    original_client.close()

    summary, entries = stop_original_server(tmp, p, err)
    assert summary["entries"] == 201 and summary["unique_log_ids"] == 201 and summary["duplicates"] == 0, summary
    assert summary["batches"] == 0 and summary["unary_calls"] == 201, summary
    d = [e for e in entries if e["message"] == "direct"]
    assert len(d) == 1 and d[0]["log_id"] == r["log_id"], d
    assert d[0]["service_name"] == "svc" and d[0]["level"] == "WARN" and d[0]["trace_id"] == "t1", d
    assert d[0]["metadata"] == {"custom_metrics": '{"cpu_usage": 0.85}', "tags": '["a", 1]', "flag": "True",
                                "none": "None", "n": "7"}, d
    nums = sorted(int(MSG.match(e["message"]).group(1)) for e in entries if e["message"] != "direct")
    assert nums == list(range(1, 201)), nums[:20]

    # the service is gone: a gRPC error in the result, never an exception
    down = original_client.write_log("nobody listens")
    assert down["success"] is False and down["error_message"].startswith("gRPC error: UNAVAILABLE"), down
    original_client.close()
    rc, rep, err_text = bench("--original", target, "--count", "5", "--workers", "1")
    assert rc == 1 and rep is None and "cannot reach the service at %s" % target in err_text, (rc, err_text)


def agent_has_http():
    p = subprocess.run([os.path.join(BIN, "logagentd"), "--help"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    return b"--http-listen" in p.stdout


def test_http_mode():
    if not agent_has_http():
        print("skipped: agent has no --http-listen")
        return
    tmp = TempDir("bench-http")
    sink = Sink(tmp).start()
    http = tmp.file("http.sock")
    a = Agent(tmp, sink.target, "--flush-interval-ms", "20", "--http-listen", "unix:" + http).start()
    rc, rep, err = bench("--http", "unix:" + http, "--count", "300", "--workers", "3", "--stats-socket",
                         a.stats_socket)
    assert rc == 0, (rc, rep, err)
    assert_delivered(rep, 300, 3)
    assert_measured(rep, 300, socket=False)
    assert rep["mode"] == "http" and rep["requests"] == 300 and rep["http_batch"] == 0, rep
    rc, rep, err = bench("--http", "unix:" + http, "--http-batch", "40", "--count", "300", "--workers", "3",
                         "--stats-socket", a.stats_socket)
    assert rc == 0, (rc, rep, err)
    assert_delivered(rep, 300, 3)
    assert rep["mode"] == "http-batch" and rep["requests"] == 8 and rep["http_batch"] == 40, rep  # 7 of 40, 1 of 20
    assert a.stop() == 0
    sink.wait_count(600)
    nums = sorted(int(MSG.match(e["message"]).group(1)) for e in sink.entries())
    assert nums == sorted(list(range(1, 301)) * 2), nums[:20]


def test_usage():
    cases = [
        (["--http", "ftp://x"], "--http: URL must be http://HOST:PORT or unix:PATH, got 'ftp://x'"),
        (["--python", "--http", "unix:/x"], "--http cannot be combined with --python"),
        (["--http", "unix:/x", "--block-ms", "0"], "--block-ms has no meaning in http mode"),
        (["--http-batch", "10"], "--http-batch has no meaning in socket mode"),
        (["--original", "127.0.0.1:1", "--stats-socket", "/x"], "--stats-socket has no meaning in original mode"),
        (["--http", "unix:/x", "--http-batch", "0"], "--http-batch needs a number of records from 1 to 100000"),
        (["--stats-timeout-ms", "soon"], "--stats-timeout-ms needs -1 or a number of milliseconds, got 'soon'"),
    ]
    for args, msg in cases:
        rc, rep, err = bench(*args)
        assert rc == 2 and rep is None and msg in err, (args, rc, err)
    p = subprocess.run([BENCH, "--help"], stdout=subprocess.PIPE, text=True)
    for flag in ("--http URL", "--http-batch N", "--python", "--original HOST:PORT", "--stats-socket PATH",
                 "--python-path DIR"):
        assert flag in p.stdout, (flag, p.stdout)


TESTS = {"socket_e2e": [test_socket_e2e, test_socket_e2e_service_down_times_out], "python_mode": [test_python_mode],
         "original_mode": [test_original_mode], "http_mode": [test_http_mode], "usage": [test_usage]}

if __name__ == "__main__":
    names = sys.argv[1:] or list(TESTS)
    run([t for n in names for t in TESTS[n]])
