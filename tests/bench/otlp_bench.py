#!/usr/bin/python3
"""otlp_bench.py — what OTLP ingest costs the agent, as a report (not a test).

Starts `logagent-sink --quiet` and a `logagentd` with --otlp-listen (gRPC) and --http-listen (OTLP/HTTP), builds
REQUESTS distinct ExportLogsServiceRequests of RECORDS LogRecords each (the original service's record shape: a
message, service.name, a level, trace and span ids, the five metadata attributes and a timestamp; the official
protos compiled by protoc, as test_otlp_http does), then for each transport sends them from THREADS client threads
(python3-grpcio's unary call, or http.client keep-alive POSTs of the protobuf body) until COUNT records were taken,
and prints:

  accepted rec/s   records answered OK / wall time of the send
  delivered rec/s  until the agent's /stats says records.flushed grew by COUNT
  (a request answered UNAVAILABLE/503, the buffer full, is sent again after 50 ms, as an SDK would)
  agent CPU        utime+stime of logagentd over the window (/proc/PID/stat), per record; the clients' CPU is
                   Python's and is not the agent's (on 2 cores the Python client is the bottleneck, so the rates
                   are the client's; the agent's CPU per record is the figure to compare)

  /usr/bin/python3 tests/bench/otlp_bench.py [--build build] [--count 200000] [--records 500] [--threads 2]
"""
import argparse
import http.client
import os
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))


def cpu_s(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def build(n_requests, n_records):
    from test_otlp_http import COMMON, SVC
    out = []
    levels = ["DEBUG", "INFO", "WARN", "ERROR"]
    for k in range(n_requests):
        req = SVC.ExportLogsServiceRequest()
        rl = req.resource_logs.add()
        rl.resource.attributes.add(key="service.name").value.string_value = "django-concurrent-test"
        sl = rl.scope_logs.add()
        for i in range(n_records):
            lr = sl.log_records.add()
            lr.time_unix_nano = 1_725_013_845_123_456_000 + i
            lr.severity_text = levels[i % 4]
            lr.body.string_value = "Concurrent test log message %d-%d" % (k, i)
            lr.trace_id = bytes((k * n_records + i).to_bytes(16, "big"))
            lr.span_id = bytes((i + 1).to_bytes(8, "big"))
            for key, v in (("adv_id", 1234567 + i), ("aweme_id", 987654321), ("plan_id", 12345),
                           ("co_id", 5678)):
                a = lr.attributes.add(key=key)
                a.value.CopyFrom(COMMON.AnyValue(int_value=v))
            lr.attributes.add(key="monitor_type").value.string_value = "impression"
        out.append(req.SerializeToString())
    return out


def run_threads(threads, count, n_records, make_sender):
    """threads client threads send requests (make_sender(t) returns the thread's send(body) function) taken in
    turn from bodies until count records have been sent."""
    done = [0]
    lock = threading.Lock()

    def worker(t):
        send, i = make_sender(t), t
        while True:
            with lock:
                if done[0] >= count:
                    return
                done[0] += n_records
            send(i)
            i += threads
    ts = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()


def send_grpc(target, bodies, count, n_records, threads):
    import grpc

    def sender(t):
        ch = grpc.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)])
        call = ch.unary_unary("/opentelemetry.proto.collector.logs.v1.LogsService/Export")

        def send(i):
            while True:  # a full buffer answers UNAVAILABLE: the same request again, as an SDK would
                try:
                    call(bodies[i % len(bodies)], timeout=60)
                    return
                except grpc.RpcError as e:
                    if e.code() != grpc.StatusCode.UNAVAILABLE:
                        raise
                    time.sleep(0.05)
        return send
    run_threads(threads, count, n_records, sender)


def send_http(port, bodies, count, n_records, threads):
    def sender(t):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

        def send(i):
            while True:  # 503: the buffer is full, the same request again after a pause
                c.request("POST", "/v1/logs", body=bodies[i % len(bodies)],
                          headers={"Content-Type": "application/x-protobuf"})
                r = c.getresponse()
                r.read()
                if r.status == 200:
                    return
                assert r.status == 503, r.status
                time.sleep(0.05)
        return send
    run_threads(threads, count, n_records, sender)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--count", type=int, default=200000)
    ap.add_argument("--records", type=int, default=500)
    ap.add_argument("--requests", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    os.environ["LOGAGENT_BIN_DIR"] = os.path.abspath(args.build)
    import harness
    import re
    bodies = build(args.requests, args.records)
    print("%d requests of %d records, %.0f bytes a record" % (len(bodies), args.records,
                                                             sum(map(len, bodies)) / len(bodies) / args.records))
    for kind in ("grpc", "http"):
        tmp = harness.TempDir("otlp-bench")
        sink = harness.Sink(tmp, "--quiet").start()
        a = harness.Agent(tmp, sink.target, "--otlp-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0").start()
        log = harness.wait_for(lambda: "http listening" in a.logtext() and a.logtext(), 10, "listening")
        target = re.search(r'msg="otlp grpc listening" address=(\S+)', log).group(1)
        port = int(re.search(r'msg="http listening" address=127\.0\.0\.1:(\d+)', log).group(1))
        pid = a.proc.pid
        flushed0 = a.stats()["records"]["flushed"]
        c0, t0 = cpu_s(pid), time.monotonic()
        if kind == "grpc":
            send_grpc(target, bodies, args.count, args.records, args.threads)
        else:
            send_http(port, bodies, args.count, args.records, args.threads)
        t1 = time.monotonic()
        harness.wait_for(lambda: a.stats()["records"]["flushed"] - flushed0 >= args.count, 120, "delivered")
        t2, c1 = time.monotonic(), cpu_s(pid)
        n = a.stats()["records"]["flushed"] - flushed0
        print("%-5s %d records: accepted %.0f rec/s, delivered %.0f rec/s, agent CPU %.2f us/record" % (
            kind, n, n / (t1 - t0), n / (t2 - t0), (c1 - c0) / n * 1e6))
        a.stop()
        sink.stop()


if __name__ == "__main__":
    main()
