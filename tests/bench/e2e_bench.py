#!/usr/bin/python3
"""e2e_bench.py — logagent's end-to-end benchmark, as a report (not a test): `make bench`.

For each worker count (1, 4, 16 by default) and each repeat (3 by default) it starts a fresh
`logagent-sink --quiet` on a free port and a fresh `logagentd` shipping to it (sockets in a temp folder,
default settings unless --agent-arg says otherwise), runs `logagent-bench --socket S --count N --workers W`,
and measures:

  delivered rec/s  N / (time from starting the bench until the agent's /stats says records.flushed grew by N;
                   /stats is polled every 20 ms, so the figure is exact to about 20 ms)
  accepted rec/s   the bench's own logs_per_second (records the client library handed to the agent's socket)
  agent CPU        utime+stime delta of logagentd (/proc/PID/stat) over the same window, also per thread
  agent peak RSS   VmHWM of logagentd (/proc/PID/status) when the run is delivered (fresh agent per run)
  sink CPU         the same for logagent-sink; bench CPU from the bench's rusage (whole process)
  other CPU        what the rest of the machine used meanwhile (/proc/stat): a noisy-neighbour indicator
  page faults      minflt deltas of the agent and the sink
  per record       CPU per record of the agent, the sink and the bench while it sends (its report's
                   bench_cpu_seconds: the records are built before its clock starts), liblogagent's CPU per
                   logagent_write on the writer threads (write_cpu_us_per_record) and the p50/p99 time of one
                   write (a sample; write_latency_us)

and checks the sink's summary line on exit: unique_log_ids must equal the records sent and duplicates must
be 0; the agent must have received N and flushed N with nothing dropped or rejected. Anything else is
printed as a loud ERROR and the exit status is 1. Medians of the repeats go into the table.

With --latency K (default 5) it also measures a lone record's latency: K times, `logagent-send` one record
and time until its line appears in the sink's --out file (the agent's default flush interval is 100 ms).
--repeat 0 measures only that. --warmup N sends N records through each fresh agent before the measured run
(steady state: ring pages already touched); --agent-env KEY=VALUE sets the agent's environment (e.g.
GLIBC_TUNABLES). --forward EVENTS sends Fluent Forward PackedForward messages of EVENTS events each
(tests/bench/forward_client.py) instead of running logagent-bench. --json / --json-out FILE give every run's
numbers. See docs/benchmarks.md.

Debian's /usr/bin/python3 only: nothing outside the standard library (plus tests/integration/harness.py).
"""
import argparse
import json
import os
import platform
import resource
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
import harness  # noqa: E402  (Unix-socket HTTP client for /stats, TempDir)

CLK_TCK = os.sysconf("SC_CLK_TCK")
POLL_S = 0.020


def die(msg, code=2):
    sys.stderr.write("e2e_bench: %s\n" % msg)
    sys.exit(code)


def loud(errors, msg):
    """Records a failed check and prints it at once, loudly, on stderr."""
    errors.append(msg)
    sys.stderr.write("\n" + "!" * 78 + "\n!!! ERROR: %s\n" % msg + "!" * 78 + "\n\n")
    sys.stderr.flush()


# ---- /proc ------------------------------------------------------------------------------------------------

def _stat_ticks(path):
    """utime+stime in clock ticks from a /proc/.../stat file, or None when it is gone."""
    try:
        with open(path) as f:
            s = f.read()
    except OSError:
        return None
    fields = s[s.rindex(")") + 2:].split()  # after "pid (comm) "
    return int(fields[11]) + int(fields[12])  # utime, stime are fields 14, 15 of stat(5)


def minor_faults(pid):
    """minflt of a process (page faults served without I/O), or None."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            s = f.read()
    except OSError:
        return None
    return int(s[s.rindex(")") + 2:].split()[7])


def cpu_seconds(pid):
    t = _stat_ticks("/proc/%d/stat" % pid)
    return None if t is None else t / CLK_TCK


def thread_cpu(pid):
    """{tid: (comm, cpu seconds)} of every live thread of pid."""
    out = {}
    base = "/proc/%d/task" % pid
    try:
        tids = os.listdir(base)
    except OSError:
        return out
    for tid in tids:
        try:
            with open(os.path.join(base, tid, "comm")) as f:
                comm = f.read().strip()
        except OSError:
            continue
        t = _stat_ticks(os.path.join(base, tid, "stat"))
        if t is not None:
            out[int(tid)] = (comm, t / CLK_TCK)
    return out


def agent_thread_names(pid, threads):
    """Names the agent's own threads. logagentd's threads all say `logagentd`: the main one (tid == pid) runs
    the libevent loop (ingest + stats socket); upstream_new() starts the gRPC completion reaper before
    flusher_start() starts the flusher, so by tid order: main, reaper, flusher. gRPC's threads keep their
    own names (event_engine, default-executo, timer_manager, ...), and so do the ingest loops past the first
    (--ingest-threads: ingest-1, ingest-2, ...)."""
    own = sorted(t for t, (comm, _) in threads.items() if comm == "logagentd" and t != pid)
    names = {pid: "ingest (main loop)"}
    if len(own) == 2:
        names[own[0]] = "grpc reaper"
        names[own[1]] = "flusher"
    return names


def vm_kib(pid, key):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def machine_info():
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        with open("/proc/meminfo") as f:
            mem_kib = int(f.readline().split()[1])
    except (OSError, ValueError, IndexError):
        mem_kib = 0
    return {"nproc": os.cpu_count(), "cpu_model": model, "kernel": platform.release(),
            "mem_gib": round(mem_kib / 1048576, 1), "python": platform.python_version()}


def system_cpu():
    """(busy seconds, steal seconds) of the whole machine so far, from /proc/stat's cpu line."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    # user nice system idle iowait irq softirq steal guest guest_nice; guest time is already in user
    busy = v[0] + v[1] + v[2] + v[5] + v[6]
    return busy / CLK_TCK, (v[7] if len(v) > 7 else 0) / CLK_TCK


def loadavg():
    try:
        with open("/proc/loadavg") as f:
            return float(f.read().split()[0])
    except (OSError, ValueError):
        return None


# ---- processes --------------------------------------------------------------------------------------------

class Procs:
    """One sink + one agent in a fresh temp folder; stop() checks their exits and the sink's summary."""

    def __init__(self, build, agent_args, sink_args, name, agent_env=None, agent_prefix=None):
        self.build = build
        self.agent_prefix = agent_prefix or []
        self.agent_env = agent_env or {}
        self.tmp = harness.TempDir(name)
        self.sink = self.agent = None
        self.agent_args = agent_args
        self.sink_args = sink_args

    def bin(self, name):
        return os.path.join(self.build, name)

    def start(self):
        self.port_file = self.tmp.file("sink.port")
        self.sink_err = open(self.tmp.file("sink.stderr"), "wb")
        self.sink = subprocess.Popen([self.bin("logagent-sink"), "--listen", "127.0.0.1:0",
                                      "--port-file", self.port_file] + self.sink_args,
                                     stdout=subprocess.DEVNULL, stderr=self.sink_err)
        port = self._wait(self._port, 20, "the sink's port file")
        self.socket = self.tmp.file("ingest.sock")
        self.stats_socket = self.tmp.file("stats.sock")
        self.agent_log = open(self.tmp.file("agent.log"), "wb")
        self.agent = subprocess.Popen(self.agent_prefix + [self.bin("logagentd"), "--socket", self.socket, "--stats-socket",
                                       self.stats_socket, "--upstream", "127.0.0.1:%d" % port] + self.agent_args,
                                      stdout=self.agent_log, stderr=self.agent_log,
                                      env=dict(os.environ, **self.agent_env))
        self._wait(self._agent_ready, 120 if self.agent_prefix else 20, "the agent's stats socket")
        return self

    def _wait(self, cond, timeout, what):
        deadline = time.monotonic() + timeout
        while True:
            v = cond()
            if v:
                return v
            if time.monotonic() > deadline:
                raise RuntimeError("timed out after %ds waiting for %s" % (timeout, what))
            time.sleep(0.01)

    def _port(self):
        if self.sink.poll() is not None:
            raise RuntimeError("the sink exited early (%s): %s" % (self.sink.returncode, self.text("sink.stderr")))
        try:
            with open(self.port_file) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return None

    def _agent_ready(self):
        if self.agent.poll() is not None:
            raise RuntimeError("the agent exited early (%s): %s" % (self.agent.returncode, self.text("agent.log")))
        try:
            return self.stats() is not None
        except OSError:
            return False

    def text(self, name):
        try:
            with open(self.tmp.file(name), "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def stats(self):
        status, body = harness.http_get(self.stats_socket, "/stats")
        if status != 200:
            raise OSError("/stats answered %s: %s" % (status, body[:200]))
        return json.loads(body)

    def stop(self, errors):
        """SIGTERM to the agent then the sink; returns the sink's summary dict (or None, with an error noted)."""
        summary = None
        if self.agent and self.agent.poll() is None:
            self.agent.send_signal(signal.SIGTERM)
            try:
                rc = self.agent.wait(timeout=60)
            except subprocess.TimeoutExpired:
                loud(errors, "logagentd did not exit within 60 s of SIGTERM (killed); log: %s"
                     % self.text("agent.log")[-2000:])
                self.agent.kill()
                rc = self.agent.wait()
            if rc != 0:
                loud(errors, "logagentd exited with %s: %s" % (rc, self.text("agent.log")[-2000:]))
        if self.sink and self.sink.poll() is None:
            self.sink.send_signal(signal.SIGTERM)
            try:
                rc = self.sink.wait(timeout=60)
            except subprocess.TimeoutExpired:
                loud(errors, "logagent-sink did not exit within 60 s of SIGTERM (killed)")
                self.sink.kill()
                rc = self.sink.wait()
            if rc != 0:
                loud(errors, "logagent-sink exited with %s: %s" % (rc, self.text("sink.stderr")[-2000:]))
            lines = [l for l in self.text("sink.stderr").splitlines() if l.startswith("{")]
            if lines:
                summary = json.loads(lines[-1])
            else:
                loud(errors, "no summary line from logagent-sink: %s" % self.text("sink.stderr")[-2000:])
        for f in (getattr(self, "sink_err", None), getattr(self, "agent_log", None)):
            if f:
                f.close()
        for line in self.text("agent.log").splitlines():
            if "level=error" in line:
                loud(errors, "logagentd logged an error: %s" % line[:300])
            elif "level=warn" in line:
                sys.stderr.write("e2e_bench: note: logagentd warned: %s\n" % line[:300])
        return summary

    def kill(self):
        for p in (self.agent, self.sink):
            if p and p.poll() is None:
                p.kill()
                p.wait()

    def cleanup(self, keep):
        """Removes the temp folder, or keeps it (and says where) when something went wrong."""
        if keep:
            sys.stderr.write("e2e_bench: logs kept in %s\n" % self.tmp.path)
        else:
            shutil.rmtree(self.tmp.path, ignore_errors=True)


# ---- one throughput run -----------------------------------------------------------------------------------

def client_cmd(args, ps, n, workers):
    """The sender of n records: logagent-bench, or with --forward EVENTS forward_client.py (PackedForward messages
    of EVENTS events each, built before its clock starts)."""
    if args.forward:
        client = os.path.join(HERE, "forward_client.py")
        packed = ps.tmp.file("forward-%d.pickle" % n)
        subprocess.run([sys.executable, client, "--prepare", packed, str(n), str(workers), str(args.forward)],
                       check=True)
        return [sys.executable, client, ps.socket, packed]
    return [ps.bin("logagent-bench"), "--socket", ps.socket, "--count", str(n), "--workers", str(workers)] \
        + args.bench_arg


def one_run(args, workers, rep, errors):
    n = args.count
    ps = Procs(args.build, args.agent_arg, ["--quiet"] + args.sink_arg, "bench-w%d" % workers, args.agent_env,
               shlex.split(args.agent_prefix))
    res = {"workers": workers, "repeat": rep, "count": n, "loadavg_before": loadavg()}
    run_errors = []
    try:
        ps.start()
        apid, spid = ps.agent.pid, ps.sink.pid
        if args.warmup:
            warm = subprocess.run(client_cmd(args, ps, args.warmup, workers),
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            if warm.returncode != 0:
                loud(run_errors, "w=%d rep=%d: warm-up bench exited %s: %s" %
                     (workers, rep, warm.returncode, warm.stderr.decode(errors="replace")[-500:]))
            ps._wait(lambda: ps.stats()["records"]["flushed"] >= args.warmup, args.timeout, "the warm-up records")
        cmd = client_cmd(args, ps, n, workers)  # before any counter is read: --forward packs its messages here
        st0 = ps.stats()
        base = st0["records"]["flushed"]
        a_threads0 = thread_cpu(apid)
        a0, s0 = cpu_seconds(apid), cpu_seconds(spid)
        af0, sf0 = minor_faults(apid), minor_faults(spid)
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        sys0 = system_cpu()
        t0 = time.monotonic()
        bench = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        t_bench = t_done = None
        st = st0
        polls = 0
        deadline = t0 + args.timeout
        while True:
            if t_bench is None and bench.poll() is not None:
                t_bench = time.monotonic()
            st = ps.stats()
            polls += 1
            if st["records"]["flushed"] - base >= n:
                t_done = time.monotonic()
                break
            if ps.agent.poll() is not None or ps.sink.poll() is not None:
                loud(run_errors, "w=%d rep=%d: %s died during the run" %
                     (workers, rep, "logagentd" if ps.agent.poll() is not None else "logagent-sink"))
                break
            if time.monotonic() > deadline:
                loud(run_errors, "w=%d rep=%d: HANG: flushed %d of %d after %ds; stats: %s" %
                     (workers, rep, st["records"]["flushed"] - base, n, args.timeout, json.dumps(st)))
                break
            time.sleep(POLL_S)
        a1, s1 = cpu_seconds(apid), cpu_seconds(spid)
        sys1 = system_cpu()
        af1, sf1 = minor_faults(apid), minor_faults(spid)
        a_threads1 = thread_cpu(apid)
        hwm = vm_kib(apid, "VmHWM")
        try:
            out, err = bench.communicate(timeout=max(5.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            bench.kill()
            out, err = bench.communicate()
            loud(run_errors, "w=%d rep=%d: logagent-bench did not finish (killed)" % (workers, rep))
        if t_bench is None:
            t_bench = time.monotonic()
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        report = None
        try:
            report = json.loads(out.decode().strip().splitlines()[-1])
        except (ValueError, IndexError):
            loud(run_errors, "w=%d rep=%d: no JSON report from logagent-bench (exit %s): %s" %
                 (workers, rep, bench.returncode, err.decode(errors="replace")[-1000:]))
        if bench.returncode != 0:
            loud(run_errors, "w=%d rep=%d: logagent-bench exited %s: %s %s" %
                 (workers, rep, bench.returncode, out.decode(errors="replace")[-1000:],
                  err.decode(errors="replace")[-1000:]))
        if report and (report.get("failed_count") or report.get("success_count") != n):
            loud(run_errors, "w=%d rep=%d: bench reports %s ok, %s failed: %s" %
                 (workers, rep, report.get("success_count"), report.get("failed_count"),
                  json.dumps(report.get("error_summary"))))
        names = agent_thread_names(apid, a_threads1)
        threads = []
        for tid, (comm, c1) in sorted(a_threads1.items()):
            c0 = a_threads0.get(tid, (comm, 0.0))[1]
            threads.append({"tid": tid, "name": names.get(tid, comm), "cpu_s": round(c1 - c0, 3)})
        wall = (t_done or time.monotonic()) - t0
        res.update({
            "delivered": t_done is not None,
            "wall_s": round(wall, 4),
            "delivered_rps": round(n / wall, 1) if t_done else None,
            "accepted_rps": report.get("logs_per_second") if report else None,
            "bench_duration_s": report.get("duration_seconds") if report else None,
            "bench_exit_after_s": round(t_bench - t0, 4),
            "agent_cpu_s": round(a1 - a0, 3) if a1 is not None else None,
            "agent_threads": threads,
            "agent_peak_rss_mib": round(hwm / 1024, 1) if hwm else None,
            "sink_cpu_s": round(s1 - s0, 3) if s1 is not None else None,
            "agent_minor_faults": af1 - af0 if af1 is not None else None,
            "sink_minor_faults": sf1 - sf0 if sf1 is not None else None,
            "bench_cpu_s": round((ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime), 3),
            "bench_send_cpu_s": report.get("bench_cpu_seconds") if report else None,
            "write_us_per_record": report.get("write_cpu_us_per_record") if report else None,
            "write_p50_us": ((report or {}).get("write_latency_us") or {}).get("p50"),
            "write_p99_us": ((report or {}).get("write_latency_us") or {}).get("p99"),
            "stats_polls": polls,
            "agent_stats": {k: st.get(k) for k in ("records", "batches", "backpressure_seconds",
                                                    "backpressure_pauses", "flush_latency_ms", "bytes_received")},
        })
        if sys0 and sys1 and a1 is not None and s1 is not None:
            # CPU used on the machine by anything but the agent, the sink and the bench during the run (other
            # users' jobs, this script's polling, the kernel's own threads): a noise indicator.
            # (The bench's CPU is counted up to its exit, which comes before `delivered`.)
            res["other_cpu_s"] = round(max(0.0, (sys1[0] - sys0[0]) - (a1 - a0) - (s1 - s0) - res["bench_cpu_s"]), 2)
            res["steal_s"] = round(sys1[1] - sys0[1], 2)
            if res["other_cpu_s"] > 0.25 * wall:
                sys.stderr.write("e2e_bench: note: w=%d rep=%d: other processes used %.2f s of CPU during this %.2f s "
                                 "run: the machine was busy, this run's numbers are noisy\n" %
                                 (workers, rep, res["other_cpu_s"], wall))
        if res["agent_cpu_s"] is not None and wall > 0:
            res["agent_core_pct"] = round(100.0 * res["agent_cpu_s"] / wall, 1)
            res["agent_us_per_record"] = round(1e6 * res["agent_cpu_s"] / n, 2)
        if res["sink_cpu_s"] is not None:
            res["sink_us_per_record"] = round(1e6 * res["sink_cpu_s"] / n, 3)
        if res["bench_send_cpu_s"] is not None:
            res["bench_us_per_record"] = round(1e6 * res["bench_send_cpu_s"] / n, 3)
        r = st["records"]
        if r["received"] - st0["records"]["received"] != n:
            loud(run_errors, "w=%d rep=%d: agent received %d records, sent %d" %
                 (workers, rep, r["received"] - st0["records"]["received"], n))
        dropped = sum(r["dropped"].values())
        rejected = sum(r["rejected"].values())
        if dropped or rejected:
            loud(run_errors, "w=%d rep=%d: agent dropped %s rejected %s" %
                 (workers, rep, json.dumps(r["dropped"]), json.dumps(r["rejected"])))
        if st["batches"].get("failed") or st["batches"].get("retried"):
            # not an error by itself (retries are the agent's job) but worth seeing
            sys.stderr.write("e2e_bench: note: w=%d rep=%d: batches failed=%s retried=%s (last_error %r)\n" %
                             (workers, rep, st["batches"].get("failed"), st["batches"].get("retried"),
                              st.get("upstream", {}).get("last_error")))
    except Exception as e:  # a broken run is reported, the others still run
        loud(run_errors, "w=%d rep=%d: %s: %s" % (workers, rep, type(e).__name__, e))
    finally:
        summary = ps.stop(run_errors)
        ps.kill()
    res["sink_summary"] = summary
    if summary is not None:
        want = n + args.warmup
        if summary.get("unique_log_ids") != want or summary.get("duplicates", 0) != 0:
            loud(run_errors, "w=%d rep=%d: SINK SUMMARY WRONG: unique_log_ids=%s (want %d) duplicates=%s "
                 "(want 0): %s" % (workers, rep, summary.get("unique_log_ids"), want, summary.get("duplicates"),
                                   json.dumps(summary)))
    res["errors"] = run_errors
    errors.extend(run_errors)
    ps.cleanup(keep=bool(run_errors))
    return res


# ---- lone-record latency ----------------------------------------------------------------------------------

def latency(args, errors):
    """K single records through logagent-send; time from starting logagent-send until the record's line is in
    the sink's --out file (polled every 1 ms). Also the time logagent-send itself took."""
    ps = Procs(args.build, args.agent_arg, [], "bench-lat", args.agent_env)
    out_path = ps.tmp.file("sink.jsonl")
    ps.sink_args = ["--out", out_path] + args.sink_arg
    samples = []
    n_err = len(errors)
    try:
        ps.start()
        for i in range(args.latency):
            time.sleep(0.05 + 0.037 * i)  # lone records, not aligned with anything
            marker = "lat-%s" % uuid.uuid4().hex
            t0 = time.monotonic()
            send = subprocess.run([ps.bin("logagent-send"), "--socket", ps.socket, "--service", "e2e-bench",
                                   marker], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            t_send = time.monotonic()
            if send.returncode != 0:
                loud(errors, "logagent-send exited %s: %s" % (send.returncode, send.stderr.decode()[-500:]))
                continue
            deadline = t0 + 10
            t_seen = None
            while time.monotonic() < deadline:
                try:
                    with open(out_path, "rb") as f:
                        if marker.encode() in f.read():
                            t_seen = time.monotonic()
                            break
                except OSError:
                    pass
                time.sleep(0.001)
            if t_seen is None:
                loud(errors, "lone record %s never reached the sink's output (10 s)" % marker)
                continue
            samples.append({"total_ms": round((t_seen - t0) * 1000, 1), "send_ms": round((t_send - t0) * 1000, 1)})
    except Exception as e:
        loud(errors, "latency: %s: %s" % (type(e).__name__, e))
    finally:
        summary = ps.stop(errors)
        ps.kill()
    if summary is not None and samples and (summary.get("unique_log_ids") != len(samples) or
                                            summary.get("duplicates")):
        loud(errors, "latency sink summary: %s (want %d unique, 0 duplicates)" % (json.dumps(summary), len(samples)))
    ps.cleanup(keep=len(errors) > n_err)
    tot = [s["total_ms"] for s in samples]
    return {"samples": samples,
            "median_ms": statistics.median(tot) if tot else None,
            "min_ms": min(tot) if tot else None, "max_ms": max(tot) if tot else None,
            "agent_args": args.agent_arg}


# ---- report -----------------------------------------------------------------------------------------------

def med(rows, key):
    v = [r[key] for r in rows if r.get(key) is not None]
    return statistics.median(v) if v else None


def summarize(runs, workers_list):
    out = []
    for w in workers_list:
        rows = [r for r in runs if r["workers"] == w]
        d = [r["delivered_rps"] for r in rows if r.get("delivered_rps")]
        s = {"workers": w, "runs": len(rows),
             "delivered_rps": med(rows, "delivered_rps"),
             "delivered_min": min(d) if d else None, "delivered_max": max(d) if d else None,
             "accepted_rps": med(rows, "accepted_rps"),
             "wall_s": med(rows, "wall_s"),
             "agent_cpu_s": med(rows, "agent_cpu_s"),
             "agent_core_pct": med(rows, "agent_core_pct"),
             "agent_us_per_record": med(rows, "agent_us_per_record"),
             "agent_peak_rss_mib": med(rows, "agent_peak_rss_mib"),
             "sink_cpu_s": med(rows, "sink_cpu_s"),
             "agent_minor_faults": med(rows, "agent_minor_faults"),
             "sink_minor_faults": med(rows, "sink_minor_faults"),
             "bench_cpu_s": med(rows, "bench_cpu_s"),
             "sink_us_per_record": med(rows, "sink_us_per_record"),
             "bench_us_per_record": med(rows, "bench_us_per_record"),
             "write_us_per_record": med(rows, "write_us_per_record"),
             "write_p50_us": med(rows, "write_p50_us"),
             "write_p99_us": med(rows, "write_p99_us"),
             "other_cpu_s": med(rows, "other_cpu_s"),
             "steal_s": med(rows, "steal_s"),
             "errors": sum(len(r["errors"]) for r in rows)}
        # per-thread CPU of the agent, median over the runs, by thread name
        names = {}
        for r in rows:
            for t in r.get("agent_threads", []):
                names.setdefault(t["name"], []).append(t["cpu_s"])
        s["agent_threads_cpu_s"] = {k: round(statistics.median(v), 3) for k, v in sorted(names.items())
                                    if statistics.median(v) > 0}
        out.append(s)
    return out


def fmt(v, spec):
    return "-" if v is None else format(v, spec)


def print_table(machine, args, summary, lat):
    print()
    if summary:
        print("logagent end-to-end benchmark: %d records per run, median of %d run(s) per row" % (args.count,
                                                                                              args.repeat))
    else:
        print("logagent end-to-end benchmark: latency only")
    print("machine: %s x %s, kernel %s; build %s" % (machine["nproc"], machine["cpu_model"], machine["kernel"],
                                                    args.build))
    if args.forward:
        print("sender: tests/bench/forward_client.py, PackedForward messages of %d events" % args.forward)
    print("agent args: %s%s%s" % (" ".join(args.agent_arg) or "(defaults)",
                                  "".join("; env %s=%s" % kv for kv in sorted(args.agent_env.items())),
                                  "; %d warm-up records first" % args.warmup if args.warmup else "; cold agent"))
    if summary:
        print()
        _print_rows(summary)
    if lat:
        print()
        print("lone-record latency (logagent-send -> line in the sink's output), %d samples: median %s ms, "
              "min %s, max %s; logagent-send itself: %s ms median" % (
                  len(lat["samples"]), fmt(lat["median_ms"], ".1f"), fmt(lat["min_ms"], ".1f"),
                  fmt(lat["max_ms"], ".1f"),
                  fmt(statistics.median([x["send_ms"] for x in lat["samples"]]) if lat["samples"] else None, ".1f")))


def _print_rows(summary):
    hdr = ("workers", "delivered/s", "(min..max)", "accepted/s", "wall s", "agent CPU s", "% core", "us/rec",
           "peak RSS MiB", "sink CPU s", "bench CPU s", "other CPU s", "errors")
    print("%7s %12s %19s %11s %7s %11s %7s %6s %12s %10s %11s %11s %6s" % hdr)
    for s in summary:
        rng = "-" if s["delivered_min"] is None else "%.0f..%.0f" % (s["delivered_min"], s["delivered_max"])
        print("%7d %12s %19s %11s %7s %11s %7s %6s %12s %10s %11s %11s %6d" % (
            s["workers"], fmt(s["delivered_rps"], ".0f"), rng, fmt(s["accepted_rps"], ".0f"), fmt(s["wall_s"], ".2f"),
            fmt(s["agent_cpu_s"], ".2f"), fmt(s["agent_core_pct"], ".0f"), fmt(s["agent_us_per_record"], ".2f"),
            fmt(s["agent_peak_rss_mib"], ".1f"), fmt(s["sink_cpu_s"], ".2f"), fmt(s["bench_cpu_s"], ".2f"),
            fmt(s["other_cpu_s"], ".2f"), s["errors"]))
    print("(other CPU: what everything else on the machine used during the run; large values mean a noisy run)")
    print()
    print("CPU per record (us, median): the agent, the sink, the bench while sending (records built before its clock),")
    print("liblogagent on the writer threads per logagent_write; and one write's p50 / p99 time (a sample, us):")
    print("%7s %10s %10s %10s %10s %10s %10s" % ("workers", "agent", "sink", "bench", "write", "write p50",
                                                 "write p99"))
    for s in summary:
        print("%7d %10s %10s %10s %10s %10s %10s" % (
            s["workers"], fmt(s["agent_us_per_record"], ".3f"), fmt(s["sink_us_per_record"], ".3f"),
            fmt(s["bench_us_per_record"], ".3f"), fmt(s["write_us_per_record"], ".3f"),
            fmt(s["write_p50_us"], ".3f"), fmt(s["write_p99_us"], ".3f")))
    print()
    print("agent CPU by thread (s, median), and minor page faults (median) of the agent / the sink:")
    for s in summary:
        print("  w=%-3d %s; faults %s / %s" % (
            s["workers"], ", ".join("%s %.2f" % kv for kv in s["agent_threads_cpu_s"].items()),
            fmt(s["agent_minor_faults"], ".0f"), fmt(s["sink_minor_faults"], ".0f")))


def parse_workers(values):
    out = []
    for v in values:
        for part in v.split(","):
            part = part.strip()
            if not part:
                continue
            try:
                w = int(part)
            except ValueError:
                die("--workers: not a number: %r" % part)
            if not 1 <= w <= 1024:
                die("--workers: %d is out of 1..1024" % w)
            out.append(w)
    return out


def main():
    ap = argparse.ArgumentParser(description="logagent end-to-end benchmark (sink + agent + logagent-bench).")
    ap.add_argument("--build", default="build", help="build folder with the binaries (default: build)")
    ap.add_argument("--count", type=int, default=1000000, help="records per run (default 1000000)")
    ap.add_argument("--workers", action="append", default=None,
                    help="worker counts, comma-separated or repeated (default 1,4,16)")
    ap.add_argument("--repeat", type=int, default=3,
                    help="runs per worker count; the table shows medians (default 3; 0: latency only)")
    ap.add_argument("--agent-arg", action="append", default=[], metavar="ARG",
                    help="argument passed to logagentd, repeatable; write it with '=' since it starts with "
                         "a dash: --agent-arg=--max-inflight=8")
    ap.add_argument("--agent-env", action="append", default=[], metavar="KEY=VALUE",
                    help="environment variable for logagentd, repeatable (e.g. GLIBC_TUNABLES=...)")
    ap.add_argument("--warmup", type=int, default=0, metavar="N",
                    help="records sent (and delivered) before each measured run, not counted (default 0: a cold "
                         "agent, whose ring pages are touched for the first time during the run)")
    ap.add_argument("--sink-arg", action="append", default=[], metavar="ARG", help="argument passed to logagent-sink")
    ap.add_argument("--bench-arg", action="append", default=[], metavar="ARG",
                    help="argument passed to logagent-bench (e.g. --per-worker-client)")
    ap.add_argument("--forward", type=int, default=0, metavar="EVENTS",
                    help="send Fluent Forward PackedForward messages of EVENTS events each (tests/bench/"
                         "forward_client.py, over --workers connections) instead of running logagent-bench")
    ap.add_argument("--agent-prefix", default="", metavar="CMD",
                    help="command the agent runs under, e.g. 'valgrind --tool=callgrind --callgrind-out-file=F' "
                         "(instruction counts: docs/benchmarks.md)")
    ap.add_argument("--latency", type=int, default=5, metavar="K", help="lone-record latency samples (0: skip)")
    ap.add_argument("--timeout", type=float, default=300, help="seconds a run may take to deliver (default 300)")
    ap.add_argument("--json", action="store_true", help="print one JSON document instead of the table")
    ap.add_argument("--json-out", metavar="FILE", help="also write the JSON document to FILE")
    args = ap.parse_args()

    if not os.path.isabs(args.build) and not os.path.isdir(args.build):
        args.build = os.path.join(ROOT, args.build)  # `--build build` works from any folder
    args.build = os.path.abspath(args.build)
    for b in ("logagentd", "logagent-sink", "logagent-bench", "logagent-send"):
        if not os.access(os.path.join(args.build, b), os.X_OK):
            die("%s not found in %s: build first (make build) or pass --build DIR" % (b, args.build))
    if args.count < 1:
        die("--count must be at least 1")
    if args.repeat < 0:
        die("--repeat must be 0 or more")
    args.workers = parse_workers(args.workers or ["1,4,16"])
    if args.forward < 0:
        die("--forward must be 0 or more")
    if args.warmup < 0:
        die("--warmup must be 0 or more")
    env = {}
    for kv in args.agent_env:
        if "=" not in kv:
            die("--agent-env needs KEY=VALUE, got %r" % kv)
        k, v = kv.split("=", 1)
        env[k] = v
    args.agent_env = env

    machine = machine_info()
    errors, runs = [], []
    for w in args.workers:
        for rep in range(1, args.repeat + 1):
            r = one_run(args, w, rep, errors)
            runs.append(r)
            if not args.json:
                sys.stderr.write("e2e_bench: w=%-3d rep %d: delivered %s rec/s, accepted %s rec/s, agent CPU %s s, "
                                 "peak RSS %s MiB, sink CPU %s s, bench CPU %s s sending (write %s us/rec, p99 %s "
                                 "us), other CPU %s s, load %.2f%s\n" % (
                                     w, rep, fmt(r.get("delivered_rps"), ".0f"), fmt(r.get("accepted_rps"), ".0f"),
                                     fmt(r.get("agent_cpu_s"), ".2f"), fmt(r.get("agent_peak_rss_mib"), ".1f"),
                                     fmt(r.get("sink_cpu_s"), ".2f"), fmt(r.get("bench_send_cpu_s"), ".2f"),
                                     fmt(r.get("write_us_per_record"), ".3f"), fmt(r.get("write_p99_us"), ".2f"),
                                     fmt(r.get("other_cpu_s"), ".2f"),
                                     r["loadavg_before"] or 0,
                                     "" if not r["errors"] else "  ** %d ERROR(S) **" % len(r["errors"])))
                sys.stderr.flush()
    lat = latency(args, errors) if args.latency > 0 else None
    summary = summarize(runs, args.workers) if runs else []

    doc = {"machine": machine, "build": args.build, "count": args.count, "repeat": args.repeat,
           "agent_args": args.agent_arg, "agent_env": args.agent_env, "warmup": args.warmup, "forward": args.forward, "sink_args": args.sink_arg, "bench_args": args.bench_arg,
           "summary": summary, "latency": lat, "runs": runs, "errors": errors}
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(doc, f, indent=1)
            f.write("\n")
    if args.json:
        json.dump(doc, sys.stdout, indent=1)
        print()
    else:
        print_table(machine, args, summary, lat)
        if errors:
            print()
            print("!!! %d ERROR(S) — these numbers are not a clean result:" % len(errors))
            for e in errors:
                print("!!!   " + e[:400])
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
