#!/usr/bin/python3
"""compare.py — logagent against the original design, in one run on one machine: a report (not a test).

    /usr/bin/python3 tests/bench/compare.py --build build            # about 2 minutes on 2 vCPUs

Rows, each at 1 and 50 threads (--threads), all measured end to end (delivered records/s):

  original         the design logagent replaces: Python threads calling original_client.write_log, one unary
                   gRPC WriteLog per record, against original_server.py (Debian's python3-grpcio, a thread pool)
                   — `logagent-bench --original HOST:PORT`. A record is delivered when its call returns.
  python           logagent's Python client (module logagent) → logagentd → logagent-sink —
                   `logagent-bench --python --stats-socket S`
  C library        liblogagent → logagentd → logagent-sink — `logagent-bench --socket S --stats-socket S`
  HTTP, 1/request  POST /api/write_log/ per record → logagentd (--http-listen) → logagent-sink —
                   `logagent-bench --http unix:P --stats-socket S`
  HTTP, NDJSON     POST /api/write_logs/ with --http-batch records per request — `... --http-batch N`

For logagent's rows, delivered = the time from starting to send until the agent's /stats says records.flushed
grew by every record sent (logagent-bench's --stats-socket). Every run gets a fresh logagent-sink --quiet and a
fresh logagentd (tests/integration/harness.py), or a fresh original_server.py, and is checked: every record
accepted and delivered, the sink's unique_log_ids (or the original server's entries) equal to the records sent.
A failed check is printed loudly and makes the exit status 1. Runs are interleaved (row by row, --repeat times)
and the table shows the median, with the ratio to the original design at the same thread count.

If logagentd has no --http-listen yet, the HTTP rows say "skipped: agent has no --http-listen".
Debian's /usr/bin/python3; the original's rows need python3-grpcio, python3-protobuf and protoc.
"""
import argparse
import json
import os
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
    ("python", "logagent Python client", 100000, 100000),
    ("c", "logagent C library (liblogagent)", 500000, 500000),
    ("http", "logagent HTTP ingest, 1 record/request", 50000, 100000),
    ("http-batch", "logagent HTTP ingest, NDJSON batches", 500000, 500000),
]


def loud(errors, msg):
    errors.append(msg)
    sys.stderr.write("\n" + "!" * 78 + "\n!!! ERROR: %s\n" % msg + "!" * 78 + "\n\n")
    sys.stderr.flush()


def run_bench(cmd, timeout):
    """Runs logagent-bench; returns (report dict or None, exit status, stderr text)."""
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
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


def run_original(args, workers, n, errors):
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
                                      "--workers", str(workers)], args.timeout)
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


def run_logagent(args, key, workers, n, errors):
    """One fresh sink + agent, one logagent-bench run through path `key`; returns delivered rec/s or None."""
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
        if key == "python":
            cmd += ["--python", "--socket", agent.socket]
        elif key == "c":
            cmd += ["--socket", agent.socket]
        else:
            cmd += ["--http", "unix:" + tmp.file("http.sock")]
            if key == "http-batch":
                cmd += ["--http-batch", str(args.http_batch)]
        rep, rc, err = run_bench(cmd, args.timeout)
        n_err = len(errors)
        rate = check_report(rep, rc, err, n, what, errors)
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
    print("| ingest path | threads | records/run | delivered rec/s (min..max) | vs original |")
    print("| --- | --- | --- | --- | --- |")
    for w in args.threads:
        base = next((r["median"] for r in rows if r["key"] == "original" and r["workers"] == w), None)
        for r in (r for r in rows if r["workers"] == w):
            if r["skipped"]:
                print("| %s | %d | %s | %s | |" % (r["label"], w, "{:,}".format(r["count"]), r["skipped"]))
                continue
            rates = r["rates"]
            rng = "(%s..%s)" % (fmt_rate(min(rates)), fmt_rate(max(rates))) if len(rates) > 1 else ""
            ratio = "-" if not base or r["median"] is None else (
                "1×" if r["key"] == "original" else "{:,.0f}×".format(r["median"] / base))
            print("| %s | %d | %s | **%s** %s | %s |" % (r["label"], w, "{:,}".format(r["count"]),
                                                          fmt_rate(r["median"]), rng, ratio))


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
            rows.append({"key": key, "label": label, "workers": w, "count": n, "rates": [], "skipped": skipped})
    errors = []
    load0 = loadavg()
    for rep in range(1, args.repeat + 1):
        for r in rows:
            if r["skipped"]:
                continue
            if r["key"] == "original":
                rate = run_original(args, r["workers"], r["count"], errors)
            else:
                rate = run_logagent(args, r["key"], r["workers"], r["count"], errors)
            sys.stderr.write("compare: run %d/%d %-10s w=%-3d %9d records: %s delivered rec/s\n" % (
                rep, args.repeat, r["key"], r["workers"], r["count"], fmt_rate(rate)))
            sys.stderr.flush()
            if rate is not None:
                r["rates"].append(rate)
    for r in rows:
        r["median"] = statistics.median(r["rates"]) if r["rates"] else None
    machine = machine_info()
    commit = git_describe()
    print_table(args, machine, rows, commit, (load0, loadavg()))
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump({"machine": machine, "commit": commit, "argv": sys.argv, "rows": rows, "errors": errors}, f,
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
