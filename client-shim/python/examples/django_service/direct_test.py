#!/usr/bin/env python3
"""direct_test.py — the original project's direct_test.py, rebuilt: calls `log_client.client.write_log` itself
(no HTTP, no service), from a thread pool, in two concurrent tests (1,000 and 10,000 records), and prints each
test's counts, time, rate and errors, then a summary. Added: what the agent delivered (records.flushed on its
stats socket, before and after) and records/s delivered.

    LOGAGENT_SOCKET=/tmp/x/ingest.sock LOGAGENT_STATS_SOCKET=/tmp/x/stats.sock python3 direct_test.py
    python3 direct_test.py --count 1000 --large 10000 --workers 50
    python3 direct_test.py --backend original --server 127.0.0.1:50051      # the original design

--backend picks log_client's backend (LOG_CLIENT_BACKEND): logagent (the agent at $LOGAGENT_SOCKET) or original
(one unary gRPC WriteLog per record to --server, else $LOG_SERVICE_GRPC_SERVER, else localhost:50051). Django is
set up here with INSTALLED_APPS = ["log_client"] and nothing else. With logagent a test's time runs until its
records are written to the agent's socket (a flush), as the service's endpoints measure it.
Exit status: 0 when every record was written (and, with a stats socket, delivered), 1 otherwise, 2 bad usage.
"""
import argparse
import datetime
import os
import random
import sys
import time
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import agentstats  # noqa: E402

try:
    import log_client  # noqa: F401  installed with the logagent package (pip)
except ImportError:
    sys.path.append(os.path.normpath(os.path.join(HERE, "..", "..")))  # this checkout's client-shim/python

LEVELS = ("INFO", "WARN", "ERROR", "DEBUG")
MONITOR_TYPES = ("impression", "click", "conversion", "view")


def parse_args(argv):
    p = argparse.ArgumentParser(description="write_log called directly from a thread pool (no HTTP)")
    p.add_argument("--backend", choices=("logagent", "original"), default="logagent",
                   help="log_client's backend (default logagent)")
    p.add_argument("--count", type=int, default=1000, help="records of the first test (default 1000)")
    p.add_argument("--large", type=int, default=10000, help="records of the large test (default 10000; 0: skip)")
    p.add_argument("--workers", type=int, default=50, help="threads in the pool (default 50)")
    p.add_argument("--server", help="original backend: the original service's HOST:PORT "
                                    "(default $LOG_SERVICE_GRPC_SERVER, else localhost:50051)")
    p.add_argument("--stats-socket", default=agentstats.default_path(),
                   help="the agent's stats socket, for the delivered counts (default $LOGAGENT_STATS_SOCKET)")
    p.add_argument("--wait", type=float, default=60, help="seconds to wait for delivery (default 60)")
    a = p.parse_args(argv)
    if a.count < 1 or a.large < 0 or a.workers < 1:
        p.error("--count and --workers must be at least 1, --large at least 0")
    return a


def setup_django(a):
    """Django with log_client as its one app; the backend and the original's address as settings."""
    import django
    from django.conf import settings
    extra = {"LOG_SERVICE_GRPC_SERVER": a.server} if a.server else {}
    settings.configure(INSTALLED_APPS=["log_client"], LOG_CLIENT_BACKEND=a.backend, USE_TZ=True, **extra)
    django.setup()  # log_client's ready() makes the client: a bad setting stops here with the reason


def one(write_log, i):
    """Record i (from 1), shaped like the original's test data."""
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="microseconds")
    try:
        return write_log("Direct test log entry %d" % i, service_name="django-direct-test",
                         level=random.choice(LEVELS), trace_id="direct-trace-%06d" % i,
                         span_id="direct-span-%06d" % i, adv_id=random.randint(1000000, 9999999),
                         aweme_id=random.randint(100000000, 999999999), plan_id=random.randint(10000, 99999),
                         monitor_type=random.choice(MONITOR_TYPES), co_id=random.randint(1000, 9999),
                         timestamp=now)
    except Exception as e:  # write_log never raises; counted all the same if it ever did
        return {"success": False, "log_id": "", "error_message": "%s: %s" % (type(e).__name__, e)}


def concurrent_test(a, client, name, first, count):
    """Records first..first+count-1 from a.workers threads; returns the test's result dict (and prints it)."""
    print("\n=== %s: %d records from %d threads (backend %s) ===" % (name, count, a.workers, client.backend))
    before = agentstats.flushed(a.stats_socket) if a.stats_socket and client.backend == "logagent" else None
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=a.workers, thread_name_prefix="direct-test") as pool:
        results = list(pool.map(lambda i: one(client.write_log, i), range(first, first + count)))
    flushed = client.flush(a.wait)
    seconds = time.perf_counter() - t0
    ok = sum(1 for r in results if r.get("success"))
    errors = [r.get("error_message", "") for r in results if not r.get("success")]
    if not flushed:
        errors.insert(0, "flush: records still buffered after %g s (agent down or slow)" % a.wait)
    res = {"name": name, "count": count, "ok": ok, "failed": count - ok, "seconds": seconds,
           "rate": ok / seconds if seconds > 0 else 0.0, "errors": errors, "delivered": None, "delivered_rate": None}
    print("written: %d ok, %d failed in %.3f s: %.0f records/s" % (ok, count - ok, seconds, res["rate"]))
    if before is not None:
        res["delivered"], res["delivered_rate"] = agentstats.report_delivered(a.stats_socket, before, ok, t0, a.wait)
    for e in errors[:5]:
        print("  error: %s" % e)
    return res


def summary(a, client, results, start_flushed, end_flushed):
    print("\n=== summary (backend %s, %d threads) ===" % (client.backend, a.workers))
    print("%-12s %8s %8s %8s %9s %10s %10s %12s" % ("test", "records", "ok", "failed", "seconds", "records/s",
                                                    "delivered", "delivered/s"))
    for r in results:
        print("%-12s %8d %8d %8d %9.3f %10.0f %10s %12s" % (
            r["name"], r["count"], r["ok"], r["failed"], r["seconds"], r["rate"],
            "-" if r["delivered"] is None else r["delivered"],
            "-" if r["delivered_rate"] is None else "%.0f" % r["delivered_rate"]))
    total = sum(r["count"] for r in results)
    ok = sum(r["ok"] for r in results)
    print("total: %d records, %d written, %d failed" % (total, ok, total - ok))
    if client.backend == "original":
        print("delivered: each written record was answered by the original service at %s" % client.server_address)
    elif start_flushed is None:
        print("delivered: unknown (give the agent's stats socket: --stats-socket or LOGAGENT_STATS_SOCKET)")
    else:
        print("delivered by the agent: %d of %d records (records.flushed %d -> %d)" % (
            end_flushed - start_flushed, ok, start_flushed, end_flushed))


def main(argv):
    a = parse_args(argv)
    setup_django(a)
    from log_client.client import get_log_client
    client = get_log_client()
    where = client.socket_path if client.backend == "logagent" else client.server_address
    print("direct_test: log_client.client.write_log, backend %s (%s)" % (client.backend, where))
    use_stats = a.stats_socket and client.backend == "logagent"
    start = agentstats.flushed(a.stats_socket) if use_stats else None
    tests = [("concurrent", a.count)] + ([("large", a.large)] if a.large else [])
    results, first = [], 1
    for name, count in tests:
        results.append(concurrent_test(a, client, name, first, count))
        first += count
    end = agentstats.flushed(a.stats_socket) if use_stats else None
    summary(a, client, results, start, end)
    ok = all(r["failed"] == 0 and not r["errors"] for r in results)
    if use_stats:
        ok = ok and end - start >= sum(r["ok"] for r in results)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
