#!/usr/bin/python3
"""fleet_sim.py — docs/scaling.md's model checked on this machine, scaled down (a report, not a test).

Starts SINKS `logagent-sink --quiet` instances (the log-service fleet) and AGENTS `logagentd`s, each with all the
sinks as one round_robin target (`ipv4:127.0.0.1:P1,...`), then feeds every agent RATE records/s (one Python thread
per agent writing a tick's worth every 20 ms over the ingest socket) for SECONDS, and compares what each instance
received with the model:

  records per call  = min(--batch-max-records, --batch-max-bytes / record bytes, RATE × --flush-interval-ms)
  calls/s per agent = RATE / records per call
  calls/s per instance = AGENTS × calls/s per agent / SINKS;  bytes/s per instance likewise

  /usr/bin/python3 tests/bench/fleet_sim.py [--build build] [--agents 6] [--sinks 3] [--rate 1000] [--seconds 5]
                                            [--agent-arg=--flush-interval-ms=100ms ...]
Prints the model's numbers beside the measured ones per instance (calls from the sinks' own summaries, records and
calls from the agents' per-instance stats).
"""
import argparse
import os
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))

RECORD = {"message": "Concurrent test log message", "service_name": "django-concurrent-test", "level": "INFO",
          "trace_id": "concurrent-trace-001234", "span_id": "concurrent-span-001234", "adv_id": 1234567,
          "aweme_id": 987654321, "plan_id": 12345, "monitor_type": "impression", "co_id": 5678,
          "timestamp": "2024-08-30T10:30:45.123456+00:00"}


def feed(harness, agent, rate, seconds, sent):
    """rate records/s for seconds, a fiftieth of a second's worth at a time (a steady stream next to the 100 ms
    flush interval), on one connection."""
    import socket
    import msgpack
    per_tick = max(1, rate // 50)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(agent.socket)
    start = time.monotonic()
    for tick in range(int(seconds * 50)):
        data = b"".join(msgpack.packb(dict(RECORD, message="m %d-%d" % (tick, i))) for i in range(per_tick))
        s.sendall(data)
        sent[0] += per_tick
        pause = start + (tick + 1) / 50 - time.monotonic()
        if pause > 0:
            time.sleep(pause)
    s.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--agents", type=int, default=6)
    ap.add_argument("--sinks", type=int, default=3)
    ap.add_argument("--rate", type=int, default=1000, help="records/s per agent")
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--agent-arg", action="append", default=[], help="an extra logagentd flag (--agent-arg=--x=y)")
    args = ap.parse_args()
    os.environ["LOGAGENT_BIN_DIR"] = os.path.abspath(args.build)
    import harness
    tmp = harness.TempDir("fleet-sim")
    sinks = [harness.Sink(tmp, "--quiet", name="sink%d" % i).start() for i in range(args.sinks)]
    target = "ipv4:" + ",".join("127.0.0.1:%d" % s.port for s in sinks)
    agents = [harness.Agent(tmp, target, *args.agent_arg, name="agent%d" % i).start() for i in range(args.agents)]
    sent = [[0] for _ in agents]
    threads = [threading.Thread(target=feed, args=(harness, a, args.rate, args.seconds, sent[i]))
               for i, a in enumerate(agents)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    total = sum(x[0] for x in sent)
    harness.wait_for(lambda: sum(a.stats()["records"]["flushed"] for a in agents) >= total, 60, "all delivered")
    elapsed = time.monotonic() - t0
    per_inst = {}
    for a in agents:
        for row in a.stats()["upstream"]["instances"]:
            c = per_inst.setdefault(row["address"], [0, 0.0])
            c[0] += row["calls"]
            c[1] += row["seconds"]
    batches_max = 2000
    interval_s = 0.1
    for arg in args.agent_arg:  # the two settings the model reads, when given
        k, _, v = arg.lstrip("-").partition("=")
        if k == "batch-max-records":
            batches_max = int(v)
        elif k == "flush-interval-ms":
            interval_s = float(v.rstrip("ms")) / (1000 if not v.endswith("s") or v.endswith("ms") else 1)
    per_call = min(batches_max, args.rate * interval_s)
    model_calls = args.agents * (args.rate / per_call) / args.sinks
    print("model: %.0f records a call, %.1f calls/s per agent, %.1f calls/s and %.0f records/s per instance" % (
        per_call, args.rate / per_call, model_calls, args.agents * args.rate / args.sinks))
    summaries = []
    for a in agents:
        a.stop()
    for s in sinks:
        summaries.append(s.stop())
    for s, summ in zip(sinks, summaries):
        calls = per_inst.get("ipv4:127.0.0.1:%d" % s.port, [0, 0])[0]
        print("instance 127.0.0.1:%d: %d calls (%.1f/s; the sink counted %d batches), %d records (%.0f/s)" % (
            s.port, calls, calls / elapsed, summ["batches"], summ["entries"], summ["entries"] / elapsed))
    print("sent %d records from %d agents in %.1f s (the wall time includes the last flush)" % (
        total, args.agents, elapsed))


if __name__ == "__main__":
    main()
