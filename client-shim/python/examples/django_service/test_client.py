#!/usr/bin/env python3
"""test_client.py — the original project's test_client.py, rebuilt: drives the running service over HTTP
(standard library only) and prints a summary.

  1. one record:        POST /api/write_log/
  2. a batch:           POST /api/batch_write_test/  {"count": --batch (50)}
  3. a concurrent test: POST /api/concurrent_test/   {"count": --count (1000), "max_workers": --workers (50)}
  4. hand-made load:    --requests (500) POST /api/write_log/ from --clients (50) threads of this process
  5. the large test:    POST /api/concurrent_test/   {"count": --large (10000), ...}, only with --yes, or when
                        asked on a terminal (as the original did)

Added: what the agent delivered — records.flushed on its stats socket (--stats-socket, $LOGAGENT_STATS_SOCKET)
before and after each test and the run — and records/s delivered. The service's own log lines (one per test
endpoint call) go through the same agent and count too. With the service on the original backend the agent
delivers none of the test records: each success is a record the original service answered.

    python3 test_client.py --url http://127.0.0.1:8000 --yes
    python3 test_client.py --count 20 --batch 5 --requests 20 --large 30 --yes      # a quick run
Exit status: 0 when every request succeeded and every record was written (and delivered, with a stats socket),
1 otherwise, 2 on bad usage.
"""
import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import agentstats  # noqa: E402


def parse_args(argv):
    p = argparse.ArgumentParser(description="the service's endpoints over HTTP, with a summary")
    p.add_argument("--url", default="http://127.0.0.1:8000", help="the service (default http://127.0.0.1:8000)")
    p.add_argument("--batch", type=int, default=50, help="batch_write_test count (default 50)")
    p.add_argument("--count", type=int, default=1000, help="concurrent_test count (default 1000)")
    p.add_argument("--workers", type=int, default=50, help="concurrent_test max_workers (default 50)")
    p.add_argument("--requests", type=int, default=500, help="hand-made write_log requests (default 500)")
    p.add_argument("--clients", type=int, default=50, help="threads sending them (default 50)")
    p.add_argument("--large", type=int, default=10000, help="the large concurrent_test's count (default 10000)")
    p.add_argument("--yes", action="store_true", help="run the large test without asking")
    p.add_argument("--stats-socket", default=agentstats.default_path(),
                   help="the agent's stats socket, for the delivered counts (default $LOGAGENT_STATS_SOCKET)")
    p.add_argument("--timeout", type=float, default=300, help="seconds per HTTP request (default 300)")
    p.add_argument("--wait", type=float, default=60, help="seconds to wait for delivery (default 60)")
    a = p.parse_args(argv)
    if min(a.batch, a.count, a.workers, a.requests, a.clients, a.large) < 1:
        p.error("every count must be at least 1")
    a.url = a.url.rstrip("/")
    return a


def post(a, path, body):
    """(HTTP status, JSON answer) of a POST; status 0 and an error_message when the service did not answer."""
    req = urllib.request.Request(a.url + path, data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=a.timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        try:
            return e.code, json.loads(e.read())
        except ValueError:
            return e.code, {"success": False, "error_message": "HTTP %d" % e.code}
    except (OSError, ValueError) as e:
        return 0, {"success": False, "error_message": "%s: %s" % (type(e).__name__, e)}


class Run:
    """The tests' results and the agent's records.flushed around them."""

    def __init__(self, a):
        self.a = a
        self.rows = []
        self.backend = None

    def flushed(self):
        return agentstats.flushed(self.a.stats_socket) if self.a.stats_socket else None

    def measure(self, name, fn):
        """Runs fn() -> (records, ok, errors, backend); waits for the agent to deliver them; prints a line."""
        print("\n=== %s ===" % name, flush=True)
        before = self.flushed()
        t0 = time.perf_counter()
        records, ok, errors, backend = fn()
        seconds = time.perf_counter() - t0
        self.backend = backend or self.backend
        row = {"name": name, "records": records, "ok": ok, "failed": records - ok, "seconds": seconds,
               "rate": ok / seconds if seconds > 0 else 0.0, "errors": errors, "delivered": None,
               "delivered_rate": None}
        print("written: %d of %d in %.3f s: %.0f records/s" % (ok, records, seconds, row["rate"]))
        if before is not None and self.backend == "logagent":  # unknown until a test endpoint says
            row["delivered"], row["delivered_rate"] = agentstats.report_delivered(self.a.stats_socket, before, ok, t0,
                                                                                   self.a.wait)
        for e in errors[:5]:
            print("  error: %s" % e)
        self.rows.append(row)


def single(a):
    status, r = post(a, "/api/write_log/", {
        "message": "test_client: one record", "service_name": "django-test-client", "level": "INFO",
        "trace_id": "test-client-trace", "span_id": "test-client-span",
        "metadata": {"user_id": "12345", "action": "login", "ip_address": "192.168.1.100"}})
    print("HTTP %d: %s" % (status, json.dumps(r)))
    ok = 1 if status == 200 and r.get("success") else 0
    return 1, ok, [] if ok else [r.get("error_message", "")], None


def endpoint_test(a, path, body):
    status, r = post(a, path, body)
    if status != 200:
        return body["count"], 0, ["HTTP %d: %s" % (status, r.get("error_message", ""))], None
    print("backend %s: %d ok, %d failed, %.3f s, %.0f records/s (as the service measured it)" % (
        r["backend"], r["success_count"], r["failed_count"], r["duration_seconds"], r["logs_per_second"]))
    return r["total_count"], r["success_count"], r["error_summary"]["sample_errors"], r["backend"]


def hand_made(a):
    def one(i):
        status, r = post(a, "/api/write_log/", {
            "message": "Manual concurrent request %d" % i, "service_name": "django-manual-test", "level": "INFO",
            "trace_id": "manual-trace-%06d" % i, "span_id": "manual-span-%06d" % i, "metadata": {"request": i}})
        return status == 200 and r.get("success"), r.get("error_message", "")
    with ThreadPoolExecutor(max_workers=a.clients, thread_name_prefix="test-client") as pool:
        results = list(pool.map(one, range(1, a.requests + 1)))
    errors = [e for ok, e in results if not ok]
    return a.requests, a.requests - len(errors), errors, None


def want_large(a):
    if a.yes:
        return True
    if not sys.stdin.isatty():
        print("\n(the %d-record test skipped: --yes runs it)" % a.large)
        return False
    answer = input("\nRun the %d-record concurrent test? [y/N] " % a.large)
    return answer.strip().lower() in ("y", "yes")


def summary(run, start, end):
    a = run.a
    print("\n=== summary (%s, backend %s) ===" % (a.url, run.backend or "?"))
    print("%-22s %8s %8s %8s %9s %10s %10s %12s" % ("test", "records", "ok", "failed", "seconds", "records/s",
                                                    "delivered", "delivered/s"))
    for r in run.rows:
        print("%-22s %8d %8d %8d %9.3f %10.0f %10s %12s" % (
            r["name"], r["records"], r["ok"], r["failed"], r["seconds"], r["rate"],
            "-" if r["delivered"] is None else r["delivered"],
            "-" if r["delivered_rate"] is None else "%.0f" % r["delivered_rate"]))
    total = sum(r["records"] for r in run.rows)
    ok = sum(r["ok"] for r in run.rows)
    print("total: %d records, %d written, %d failed" % (total, ok, total - ok))
    if run.backend == "original":
        print("delivered: each written record was answered by the original service (backend original)")
    elif start is None:
        print("delivered: unknown (give the agent's stats socket: --stats-socket or LOGAGENT_STATS_SOCKET)")
    else:
        print("delivered by the agent: %d of %d records (records.flushed %d -> %d; the service's own log lines "
              "count too)" % (end - start, ok, start, end))
    return ok, total


def main(argv):
    a = parse_args(argv)
    run = Run(a)
    print("test_client: %s" % a.url)
    try:
        start = run.flushed()
    except OSError as e:
        print("test_client: cannot read the agent's stats at %s: %s" % (a.stats_socket, e), file=sys.stderr)
        return 2
    run.measure("write_log (1 record)", lambda: single(a))
    run.measure("batch_write_test", lambda: endpoint_test(a, "/api/batch_write_test/", {"count": a.batch}))
    run.measure("concurrent_test", lambda: endpoint_test(a, "/api/concurrent_test/",
                                                         {"count": a.count, "max_workers": a.workers}))
    run.measure("%d requests" % a.requests, lambda: hand_made(a))
    if want_large(a):
        run.measure("concurrent_test (large)", lambda: endpoint_test(a, "/api/concurrent_test/",
                                                                     {"count": a.large, "max_workers": a.workers}))
    end = None
    if start is not None:
        end = run.flushed()
        if run.backend != "original":
            end, _ = agentstats.wait_flushed(a.stats_socket, start + sum(r["ok"] for r in run.rows), a.wait)
    ok, total = summary(run, start, end)
    good = ok == total
    if start is not None and run.backend != "original":
        good = good and end - start >= ok
    return 0 if good else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
