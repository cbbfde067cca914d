"""stats_load.py — what reading the stats socket costs while logs flood in, and what it does to the flood.

Runs a sink and an agent (e2e_bench's Procs), then logagent-bench with W workers and N records, twice: once alone,
once while a reader hammers the stats socket (GET /stats, /metrics, /healthz, /stats/clients in turn, as fast as it
can, one connection each, like a scraper gone wild). Prints each endpoint's answer time (p50/p99/max, ms) under load
and the delivered rate with and without the reader.

    /usr/bin/python3 tests/bench/stats_load.py --build build --count 1000000 --workers 4
"""
import argparse
import os
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "integration"))
sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from e2e_bench import Procs  # noqa: E402

PATHS = ["/stats", "/metrics", "/healthz", "/stats/clients"]


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))] if xs else float("nan")


def one(build, count, workers, read):
    ps = Procs(build, [], ["--quiet"], "statsload").start()
    times = {p: [] for p in PATHS}
    stop = threading.Event()

    def reader():
        i = 0
        while not stop.is_set():
            path = PATHS[i % len(PATHS)]
            t = time.monotonic()
            status, _ = harness.http_get(ps.stats_socket, path)
            times[path].append((time.monotonic() - t) * 1000)
            assert status == 200, (path, status)
            i += 1

    th = threading.Thread(target=reader) if read else None
    start = time.monotonic()
    if th:
        th.start()
    subprocess.run([ps.bin("logagent-bench"), "--socket", ps.socket, "--count", str(count), "--workers",
                    str(workers)], check=True, stdout=subprocess.DEVNULL)
    while ps.stats()["records"]["flushed"] < count:
        time.sleep(0.01)
    wall = time.monotonic() - start
    stop.set()
    if th:
        th.join()
    errors = []
    ps.stop(errors)
    ps.cleanup(False)
    return count / wall, times


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--count", type=int, default=1000000)
    ap.add_argument("--workers", type=int, default=4)
    a = ap.parse_args()
    alone, _ = one(a.build, a.count, a.workers, False)
    loaded, times = one(a.build, a.count, a.workers, True)
    print("delivered records/s: alone %.0f, with the stats reader %.0f (%.1f%%)" %
          (alone, loaded, (loaded / alone - 1) * 100))
    for p in PATHS:
        t = times[p]
        print("%-15s n=%-6d p50 %.2f ms  p99 %.2f ms  max %.2f ms" % (p, len(t), pct(t, .5), pct(t, .99), max(t)))


if __name__ == "__main__":
    main()
