#!/usr/bin/python3
"""compare.py — logagent against the original design, in one run on one machine: a report (not a test).

    /usr/bin/python3 tests/bench/compare.py --build build            # about 2 minutes on 2 vCPUs

Rows, each at 1 and 50 threads (--threads), all measured end to end (delivered records/s):

  original         the design logagent replaces: Python threads calling original_client.write_log, one unary
                   gRPC WriteLog per record, against original_server.py (Debian's python3-grpcio, a thread pool)
                   — `logagent-bench --original HOST:PORT`. A record is delivered when its call returns.
  python           logagent's Python client (module logagent), pure Python (LOGAGENT_PURE_PYTHON=1) → logagentd →
                   logagent-sink — `logagent-bench --python --stats-socket S`
  python-c         the same with its C part, logagent._speedups: write_log and the record encoder in C (built by
                   CMake into BUILD/python, which goes on PYTHONPATH); the report's `implementation` must say "c"
  C library        liblogagent → logagentd → logagent-sink — `logagent-bench --socket S --stats-socket S`
  HTTP, 1/request  POST /api/write_log/ per record → logagentd (--http-listen) → logagent-sink —
                   `logagent-bench --http unix:P --stats-socket S`
  HTTP, NDJSON     POST /api/write_logs/ with --http-batch records per request — `... --http-batch N`

For logagent's rows, delivered = the time from starting to send until the agent's /stats says records.flushed
grew by every record sent (logagent-bench's --stats-socket). Every run gets a fresh logagent-sink --quiet and a
fresh logagentd (tests/integration/harness.py), or a fresh original_server.py, and is checked: every record
accepted and delivered, the sink's unique_log_ids (or the original server's entries) equal to the records sent.
A failed check is printed loudly and makes the exit status 1. Runs are interleaved (row by row, --repeat times)
and the table shows the median, with the ratio to the original design at the same thread count, and the client
process's CPU per record (utime+stime of the logagent-bench process; for the Python client the report's own
cpu_seconds, from the start to the flush: the writers, the sender thread, and making each record's values — the
machine is shared, so CPU is the steadier figure).

A second table, "write_log on one thread", is the Python client's per-call cost, pure and with its C part:
`python3 -m logagent.bench --prebuilt 1000 --workers 1` (the threads cycle 1,000 argument sets made before the
start, so nothing but write_log and the sender are measured) through a fresh agent and sink, end to end: CPU µs
per call (the process's utime+stime / calls), wall µs per call (until the flush), delivered records/s.
--calls N sets its calls per run (default 300,000; 0 leaves the table out).

If logagentd has no --http-listen yet, the HTTP rows say "skipped: agent has no --http-listen".
Debian's /usr/bin/python3; the original's rows need python3-grpcio, python3-protobuf and protoc.
"""
import argparse
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
sys.path.insert(0, HERE)
import harness  # noqa: E402
from e2e_bench import loadavg, machine_info  # noqa: E402

ORIGINAL_SERVER = os.path.join(ROOT, "client-shim", "python", "examples", "original", "original_server.py")
PY = "/usr/bin/python3"
HTTP_SKIPPED = "skipped: agent has no --http-listen"

# (key, label, default records per run at 1 thread, at many threads)
PATHS = [
    ("original", "original design: unary gRPC WriteLog per record (Python)", 2000, 10000),
    ("python", "logagent Python client, pure Python", 100000, 100000),
    ("python-c", "logagent Python client, its C part (logagent._speedups)", 100000, 100000),
    ("c", "logagent C library (liblogagent)", 500000, 500000),
    ("http", "logagent HTTP ingest, 1 record/request", 50000, 100000),
    ("http-batch", "logagent HTTP ingest, NDJSON batches", 500000, 500000),
]


def loud(errors, msg):
    errors.append(msg)
    sys.stderr.write("\n" + "!" * 78 + "\n!!! ERROR: %s\n" % msg + "!" * 78 + "\n\n")
    sys.stderr.flush()


def run_bench(cmd, timeout, env=None, cpu=None):
    """Runs logagent-bench; returns (report dict or None, exit status, stderr text). cpu (a list): gets the
    process's CPU seconds (utime+stime) appended."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout, env=env)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if cpu is not None:
        cpu.append((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime))
    out = p.stdout.decode(errors="replace").strip().splitlines()
    try:
        rep = json.loads(out[-1])
    except (ValueError, IndexError):
        rep = None
    return rep, p.returncode, p.stderr.decode(errors="replace")


def check_report(rep, rc, err, n, what, errors):
    if rep is None:
        loud(errors, "%s: no JSON report from logagent-bench (exit %s): %s" % (what, rc, err[-800:]))
        return None
    if rc != 0 or rep.get("success_count") != n or rep.get("delivered") != n:
        loud(errors, "%s: exit %s, success_count %s, delivered %s of %d: %s %s" % (
            what, rc, rep.get("success_count"), rep.get("delivered"), n,
            json.dumps(rep.get("error_summary")), err[-400:]))
    return rep.get("delivered_per_second")


def run_original(args, workers, n, errors, cpu=None):
    tmp = harness.TempDir("cmp-orig")
    port_file = tmp.file("port")
    err_path = tmp.file("server.stderr")
    what = "original w=%d" % workers
    rate = None
    with open(err_path, "wb") as err_f:
        srv = subprocess.Popen([PY, ORIGINAL_SERVER, "--listen", "127.0.0.1:0", "--port-file", port_file],
                               stdout=subprocess.DEVNULL, stderr=err_f)
        try:
            deadline = time.monotonic() + 30
            while not os.path.exists(port_file):
                if srv.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("original_server.py did not start: %s" % open(err_path).read()[-800:])
                time.sleep(0.02)
            with open(port_file) as f:
                port = int(f.read())
            rep, rc, err = run_bench([bench_bin(args), "--original", "127.0.0.1:%d" % port, "--count", str(n),
                                      "--workers", str(workers)], args.timeout, cpu=cpu)
            rate = check_report(rep, rc, err, n, what, errors)
            srv.send_signal(signal.SIGTERM)
            srv.wait(timeout=30)
        except (RuntimeError, subprocess.TimeoutExpired, OSError, ValueError) as e:
            loud(errors, "%s: %s: %s" % (what, type(e).__name__, e))
        finally:
            if srv.poll() is None:
                srv.kill()
                srv.wait()
    lines = [l for l in open(err_path).read().splitlines() if l.startswith("{")]
    summary = json.loads(lines[-1]) if lines else None
    if summary is None or summary.get("entries") != n:
        loud(errors, "%s: the original server counted %s records, %d sent" % (
            what, summary and summary.get("entries"), n))
    shutil.rmtree(tmp.path, ignore_errors=True)
    return rate


def bench_bin(args):
    return os.path.join(args.build, "logagent-bench")


def python_env(args, key):
    """The environment of a Python client run: the C encoder from BUILD/python for python-c, none for python."""
    env = {k: v for k, v in os.environ.items() if k not in ("LOGAGENT_PURE_PYTHON", "PYTHONPATH")}
    if key.endswith("python-c"):
        env["PYTHONPATH"] = os.path.join(args.build, "python")  # logagent-bench puts the sources before it
    else:
        env["LOGAGENT_PURE_PYTHON"] = "1"
    return env


def run_logagent(args, key, workers, n, errors, cpu=None, report=None):
    """One fresh sink + agent, one logagent-bench run through path `key` (calls-python, calls-python-c:
    `python3 -m logagent.bench --prebuilt 1000`); returns delivered rec/s or None. cpu: as run_bench's;
    report: a list that gets the run's report."""
    what = "%s w=%d" % (key, workers)
    tmp = harness.TempDir("cmp-" + key)
    sink = agent = None
    rate = None
    keep = False
    try:
        sink = harness.Sink(tmp, "--quiet").start()
        extra = ["--http-listen", "unix:" + tmp.file("http.sock")] if key.startswith("http") else []
        agent = harness.Agent(tmp, sink.target, *extra).start()
        cmd = [bench_bin(args), "--count", str(n), "--workers", str(workers), "--stats-socket", agent.stats_socket]
        env = None
        if key.startswith("calls-"):
            env = python_env(args, key)
            env["PYTHONPATH"] = os.pathsep.join([os.path.join(ROOT, "client-shim", "python")] + (
                [env["PYTHONPATH"]] if "PYTHONPATH" in env else []))
            cmd = [PY, "-m", "logagent.bench", "--prebuilt", "1000"] + cmd[1:] + ["--socket", agent.socket]
        elif key.startswith("python"):
            env = python_env(args, key)
            cmd += ["--python", "--socket", agent.socket]
        elif key == "c":
            cmd += ["--socket", agent.socket]
        else:
            cmd += ["--http", "unix:" + tmp.file("http.sock")]
            if key == "http-batch":
                cmd += ["--http-batch", str(args.http_batch)]
        rep, rc, err = run_bench(cmd, args.timeout, env, cpu)
        n_err = len(errors)
        rate = check_report(rep, rc, err, n, what, errors)
        if report is not None and rep is not None:
            report.append(rep)
        if cpu and rep is not None and "cpu_seconds" in rep:
            cpu[-1] = rep["cpu_seconds"]  # the Python client's own count: from the start to the flush, no start-up
        want = {"python": "python", "python-c": "c"}.get(key.replace("calls-", ""))
        if want and rep is not None and rep.get("implementation") != want:
            loud(errors, "%s: the Python client ran the %r encoder, not %r (is BUILD/python/logagent/_speedups "
                         "built?)" % (what, rep.get("implementation"), want))
        rc = agent.stop()
        if rc != 0:
            loud(errors, "%s: logagentd exited %s: %s" % (what, rc, agent.logtext()[-800:]))
        summary = sink.stop()
        if summary.get("unique_log_ids") != n or summary.get("duplicates"):
            loud(errors, "%s: the sink has %s unique log_ids (%s duplicates), %d sent" % (
                what, summary.get("unique_log_ids"), summary.get("duplicates"), n))
        keep = len(errors) > n_err
    except (AssertionError, RuntimeError, OSError, ValueError, subprocess.TimeoutExpired) as e:
        loud(errors, "%s: %s: %s" % (what, type(e).__name__, e))
        keep = True
    finally:
        for p in (agent, sink):
            if p is not None:
                p.kill()
    if keep:
        sys.stderr.write("compare: logs of %s kept in %s\n" % (what, tmp.path))
    else:
        shutil.rmtree(tmp.path, ignore_errors=True)
    return rate


def agent_has_http(build):
    p = subprocess.run([os.path.join(build, "logagentd"), "--help"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    return b"--http-listen" in p.stdout


def git_describe():
    try:
        rev = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL).stdout.decode().strip()
        dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL).stdout.strip()
        return rev + ("+changes" if dirty else "") if rev else "?"
    except OSError:
        return "?"


def fmt_rate(v):
    return "-" if v is None else "{:,.0f}".format(v)


def print_table(args, machine, rows, commit, loads):
    print("## logagent vs the original design")
    print()
    print("machine: %d x %s, %s GiB, kernel %s, Python %s; commit %s" % (
        machine["nproc"], machine["cpu_model"], machine["mem_gib"], machine["kernel"], machine["python"], commit))
    print("load average (1 min) at start / end: %s / %s (other work on the machine makes the numbers noisy)" % loads)
    print("command: %s" % " ".join([PY, os.path.relpath(os.path.abspath(__file__), ROOT)] + sys.argv[1:]))
    print("delivered records/s end to end, median of %d run(s) (min..max); ratio to the original design at the "
          "same thread count" % args.repeat)
    print()
    print("| ingest path | threads | records/run | delivered rec/s (min..max) | vs original | client CPU µs/record |")
    print("| --- | --- | --- | --- | --- | --- |")
    for w in args.threads:
        base = next((r["median"] for r in rows if r["key"] == "original" and r["workers"] == w), None)
        for r in (r for r in rows if r["workers"] == w):
            if r["skipped"]:
                print("| %s | %d | %s | %s | | |" % (r["label"], w, "{:,}".format(r["count"]), r["skipped"]))
                continue
            rates = r["rates"]
            rng = "(%s..%s)" % (fmt_rate(min(rates)), fmt_rate(max(rates))) if len(rates) > 1 else ""
            ratio = "-" if not base or r["median"] is None else (
                "1×" if r["key"] == "original" else "{:,.0f}×".format(r["median"] / base))
            cpu = "%.2f" % (statistics.median(r["cpu"]) / r["count"] * 1e6) if r["cpu"] else "-"
            print("| %s | %d | %s | **%s** %s | %s | %s |" % (r["label"], w, "{:,}".format(r["count"]),
                                                               fmt_rate(r["median"]), rng, ratio, cpu))


def print_calls(args, calls):
    if not calls:
        return
    print()
    print("## write_log on one thread (Python client, pre-built arguments, end to end)")
    print()
    print("`python3 -m logagent.bench --prebuilt 1000 --workers 1 --count %d`, fresh agent and sink each run; "
          "median of %d run(s)" % (args.calls, args.repeat))
    print()
    print("| implementation | CPU µs per call (utime+stime) | wall µs per call | delivered rec/s |")
    print("| --- | --- | --- | --- |")
    for c in calls:
        reps = c["reports"]
        if not reps:
            print("| %s | - | - | - |" % c["label"])
            continue
        cpu = statistics.median(r["cpu_us_per_record"] for r in reps)
        wall = statistics.median(r["duration_seconds"] / r["total_count"] * 1e6 for r in reps)
        rate = statistics.median(r.get("delivered_per_second", 0) for r in reps)
        print("| %s | **%.2f** | %.2f | %s |" % (c["label"], cpu, wall, fmt_rate(rate)))


def parse_threads(v):
    try:
        out = [int(x) for x in v.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError("--threads takes comma-separated numbers, got %r" % v)
    if not out or any(not 1 <= w <= 1024 for w in out):
        raise argparse.ArgumentTypeError("--threads takes numbers from 1 to 1024, got %r" % v)
    return out


def main():
    ap = argparse.ArgumentParser(description="logagent vs the original design (one unary gRPC per record), "
                                             "end to end, in one run.")
    ap.add_argument("--build", default="build", help="build folder with the binaries (default: build)")
    ap.add_argument("--threads", type=parse_threads, default=[1, 50], help="thread counts (default 1,50)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per row, interleaved; medians (default 3)")
    ap.add_argument("--scale", type=float, default=1.0,
                    help="multiply every row's record count (e.g. 0.1 for a quick look; default 1)")
    ap.add_argument("--http-batch", type=int, default=100, help="records per NDJSON request (default 100)")
    ap.add_argument("--calls", type=int, default=300000,
                    help="write_log calls per run of the one-thread table (default 300000; 0: no such table)")
    ap.add_argument("--only", action="append", choices=[p[0] for p in PATHS], help="run only these paths")
    ap.add_argument("--timeout", type=float, default=900, help="seconds one bench run may take (default 900)")
    ap.add_argument("--json-out", metavar="FILE", help="also write every run's numbers to FILE")
    args = ap.parse_args()
    if not os.path.isabs(args.build) and not os.path.isdir(args.build):
        args.build = os.path.join(ROOT, args.build)
    args.build = os.path.abspath(args.build)
    for b in ("logagentd", "logagent-sink", "logagent-bench"):
        if not os.access(os.path.join(args.build, b), os.X_OK):
            ap.error("%s not found in %s: build first (make build) or pass --build DIR" % (b, args.build))
    if args.repeat < 1 or args.scale <= 0 or args.http_batch < 1:
        ap.error("--repeat, --scale and --http-batch must be positive")
    harness.BIN = args.build
    has_http = agent_has_http(args.build)

    rows = []
    for w in args.threads:
        for key, label, n1, nmany in PATHS:
            if args.only and key not in args.only:
                continue
            n = max(1, int((n1 if w == 1 else nmany) * args.scale))
            if key == "http-batch":
                label = "%s of %d" % (label, args.http_batch)
            skipped = HTTP_SKIPPED if key.startswith("http") and not has_http else ""
            rows.append({"key": key, "label": label, "workers": w, "count": n, "rates": [], "skipped": skipped,
                         "cpu": []})
    calls = []
    if args.calls > 0 and (not args.only or any(k.startswith("python") for k in args.only)):
        calls = [{"key": "calls-python", "label": "pure Python", "reports": []},
                 {"key": "calls-python-c", "label": "C (logagent._speedups)", "reports": []}]
    errors = []
    load0 = loadavg()
    for rep in range(1, args.repeat + 1):
        for r in rows:
            if r["skipped"]:
                continue
            if r["key"] == "original":
                rate = run_original(args, r["workers"], r["count"], errors, r["cpu"])
            else:
                rate = run_logagent(args, r["key"], r["workers"], r["count"], errors, r["cpu"])
            sys.stderr.write("compare: run %d/%d %-10s w=%-3d %9d records: %s delivered rec/s\n" % (
                rep, args.repeat, r["key"], r["workers"], r["count"], fmt_rate(rate)))
            sys.stderr.flush()
            if rate is not None:
                r["rates"].append(rate)
        for c in calls:
            rate = run_logagent(args, c["key"], 1, args.calls, errors, report=c["reports"])
            sys.stderr.write("compare: run %d/%d %-14s %9d calls: %s delivered rec/s\n" % (
                rep, args.repeat, c["key"], args.calls, fmt_rate(rate)))
    for r in rows:
        r["median"] = statistics.median(r["rates"]) if r["rates"] else None
    machine = machine_info()
    commit = git_describe()
    print_table(args, machine, rows, commit, (load0, loadavg()))
    print_calls(args, calls)
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump({"machine": machine, "commit": commit, "argv": sys.argv, "rows": rows, "calls": calls,
                       "errors": errors}, f,
                      indent=1)
            f.write("\n")
    if errors:
        print()
        print("!!! %d ERROR(S) — these numbers are not a clean result:" % len(errors))
        for e in errors:
            print("!!!   " + e[:400])
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
