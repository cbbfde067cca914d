#!/usr/bin/env python3
"""measure.py — before/after numbers for README.md: the service's POST /api/concurrent_test/ with each write_log
backend, through Django's test client (no HTTP server: the endpoint does all its writes inside one request).

    # logagent: an agent of yours (LOGAGENT_SOCKET), or one started here from a build folder
    python3 measure.py --backends logagent --build ../../../../build
    # the original: one unary gRPC WriteLog per record to the original service (examples/original)
    ORIGINAL_LOG_SERVICE=127.0.0.1:50051 python3 measure.py --backends original
    # both, one table (the defaults: count 10000, max_workers 1 and 50)
    ORIGINAL_LOG_SERVICE=127.0.0.1:50051 python3 measure.py --build ../../../../build

Each backend runs in a process of its own (settings are per process): a warm-up request (--warmup records,
not reported), then one concurrent_test per --workers value. Printed: a Markdown table of records/s per backend
and max_workers, then the logagent/original ratio per max_workers when both ran; --json prints the endpoint's
reports instead. "records/s" is the endpoint's logs_per_second: for logagent, records written to the agent's
socket per second (the request ends with a flush); for the original, records the service answered per second.
With an agent's stats socket (--build starts one; or --stats-socket PATH) a "delivered/s" column also says how
fast the agent had them at the log service (time until the agent's stats count them as flushed).
Exit status: 0 when every record of every run was written, 1 otherwise, 2 on bad usage.
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import agentstats  # noqa: E402


def parse_args(argv):
    p = argparse.ArgumentParser(description="concurrent_test records/s for each write_log backend")
    p.add_argument("--backends", default="logagent,original", help="comma-separated: logagent, original")
    p.add_argument("--count", type=int, default=10000, help="records per run (default 10000)")
    p.add_argument("--workers", default="1,50", help="comma-separated max_workers values (default 1,50)")
    p.add_argument("--warmup", type=int, default=100, help="records of the unreported first run (default 100)")
    p.add_argument("--build", help="start logagent-sink and logagentd from this build folder for the logagent "
                                   "backend (default: use the agent at $LOGAGENT_SOCKET)")
    p.add_argument("--stats-socket", help="the agent's stats socket, for the delivered/s column")
    p.add_argument("--json", action="store_true", help="print the endpoint's JSON reports, one per line")
    p.add_argument("--child", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    a.backends = [b for b in a.backends.split(",") if b]
    try:
        a.workers = [int(w) for w in a.workers.split(",") if w]
    except ValueError:
        p.error("--workers: expected numbers such as 1,50")
    bad = [b for b in a.backends if b not in ("logagent", "original")]
    if bad or not a.backends:
        p.error("--backends: expected logagent and/or original, got %r" % a.backends)
    if a.count < 1 or a.warmup < 0 or not a.workers or min(a.workers) < 1:
        p.error("--count and --workers must be at least 1, --warmup at least 0")
    if "original" in a.backends and not os.environ.get("ORIGINAL_LOG_SERVICE") and not a.child:
        p.error("the original backend needs ORIGINAL_LOG_SERVICE=HOST:PORT (the original service; see "
                "../original/)")
    return a


# ---- the child: one backend, Django's test client ----

def stats_flushed(path):
    """records.flushed from the agent's /stats on its Unix socket."""
    return agentstats.flushed(path)


def wait_delivered(stats_socket, target, timeout=120):
    deadline = time.monotonic() + timeout
    while stats_flushed(stats_socket) < target:
        if time.monotonic() > deadline:
            return None
        time.sleep(0.005)
    return time.perf_counter()


def child(a):
    sys.path.insert(0, HERE)
    os.environ["DJANGO_SETTINGS_MODULE"] = "django_service.settings"
    os.environ["DJANGO_LOG_BACKEND"] = a.child
    os.environ.setdefault("DJANGO_LOG_CONSOLE", "0")
    import django
    django.setup()
    from django.test import Client
    client = Client()

    def concurrent_test(count, workers):
        r = client.post("/api/concurrent_test/", {"count": count, "max_workers": workers},
                        content_type="application/json")
        if r.status_code != 200:
            raise SystemExit("concurrent_test answered %d: %s" % (r.status_code, r.content[:500]))
        return r.json()

    if a.warmup:
        concurrent_test(a.warmup, max(a.workers))
    stats = a.stats_socket if a.child == "logagent" else None
    for w in a.workers:
        before = stats_flushed(stats) if stats else 0
        t0 = time.perf_counter()
        report = concurrent_test(a.count, w)
        if stats:
            # (the service's own summary lines go to the agent too: the count is right within a record or two)
            t2 = wait_delivered(stats, before + report["success_count"])
            report["delivered_per_second"] = round(report["success_count"] / (t2 - t0), 2) if t2 else None
        print(json.dumps(report), flush=True)


# ---- the parent: an agent if asked, one child per backend, the table ----

def wait_until(cond, timeout, what):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise SystemExit("measure.py: timed out after %d s waiting for %s" % (timeout, what))
        time.sleep(0.01)


def start_agent(build, tmp):
    """logagent-sink (counting only) and logagentd in tmp; returns (processes, ingest socket, stats socket)."""
    port_file = os.path.join(tmp, "sink.port")
    sink = subprocess.Popen([os.path.join(build, "logagent-sink"), "--listen", "127.0.0.1:0", "--port-file",
                             port_file, "--quiet"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_until(lambda: os.path.exists(port_file) or sink.poll() is not None, 20, "logagent-sink's port")
    if sink.poll() is not None:
        raise SystemExit("measure.py: logagent-sink exited with %s" % sink.returncode)
    with open(port_file) as f:
        port = int(f.read())
    ingest, stats = os.path.join(tmp, "ingest.sock"), os.path.join(tmp, "stats.sock")
    with open(os.path.join(tmp, "agent.log"), "wb") as log:
        agent = subprocess.Popen([os.path.join(build, "logagentd"), "--socket", ingest, "--stats-socket", stats,
                                  "--upstream", "127.0.0.1:%d" % port],
                                 env=dict(os.environ, LOGAGENT_CONFIG=""), stdout=subprocess.DEVNULL, stderr=log)

    def ready():
        if agent.poll() is not None:
            raise SystemExit("measure.py: logagentd exited with %s (see %s/agent.log)" % (agent.returncode, tmp))
        try:
            stats_flushed(stats)
            return True
        except OSError:
            return False
    wait_until(ready, 20, "logagentd")
    return [agent, sink], ingest, stats


def run_child(a, backend, env):
    cmd = [sys.executable, os.path.abspath(__file__), "--child", backend, "--count", str(a.count),
           "--workers", ",".join(map(str, a.workers)), "--warmup", str(a.warmup)]
    if backend == "logagent" and a.stats_socket:
        cmd += ["--stats-socket", a.stats_socket]
    p = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, check=False)
    if p.returncode != 0:
        raise SystemExit("measure.py: the %s run failed (exit %d)" % (backend, p.returncode))
    return [json.loads(line) for line in p.stdout.decode().splitlines() if line.startswith("{")]


def table(reports):
    cols = ["backend", "max_workers", "records", "failed", "seconds", "records/s", "delivered/s"]
    out = ["| " + " | ".join(cols) + " |", "|" + " --- |" * len(cols)]
    for r in reports:
        d = r.get("delivered_per_second")
        out.append("| %s | %d | %d | %d | %.3f | %.0f | %s |" % (
            r["backend"], r["max_workers"], r["total_count"], r["failed_count"], r["duration_seconds"],
            r["logs_per_second"], "—" if d is None else "%.0f" % d))
    rate = {(r["backend"], r["max_workers"]): r["logs_per_second"] for r in reports}
    for w in sorted({r["max_workers"] for r in reports}):
        if rate.get(("original", w)) and ("logagent", w) in rate:
            out.append("max_workers %d: logagent %.1fx the original" % (w, rate[("logagent", w)] /
                                                                          rate[("original", w)]))
    return "\n".join(out)


def main(argv):
    a = parse_args(argv)
    if a.child:
        child(a)
        return 0
    procs, reports = [], []
    try:
        env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
        for backend in a.backends:
            if backend == "logagent" and a.build:
                tmp = tempfile.mkdtemp(prefix="measure-")
                procs, env["LOGAGENT_SOCKET"], a.stats_socket = start_agent(a.build, tmp)
            reports += run_child(a, backend, env)
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    if a.json:
        for r in reports:
            print(json.dumps(r))
    else:
        print(table(reports))
    return 0 if all(r["failed_count"] == 0 for r in reports) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
