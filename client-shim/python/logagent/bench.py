"""logagent.bench — logagent-bench's Python modes: the original service's concurrent write test from threads in
one Python process (like the original's ThreadPoolExecutor), through this package's write_log or through the
original design, printing the same JSON report as logagent-bench.

    python3 -m logagent.bench [--socket PATH] --count N --workers W [--stats-socket PATH] [--block-ms MS]
                              [--per-worker-client] [--buffer-bytes N] [--flush-timeout-ms MS] [--prebuilt N]
    python3 -m logagent.bench --original HOST:PORT --count N --workers W [--original-path DIR]

(`logagent-bench --python ...` and `logagent-bench --original HOST:PORT ...` run exactly this.)

Each thread claims record numbers from a shared counter and calls write_log(message, service_name=...,
level=..., trace_id=..., span_id=..., adv_id=..., aweme_id=..., plan_id=..., monitor_type=..., co_id=...,
timestamp=...) with the concurrent test's record shape (the same as logagent-bench's C modes).

- logagent (default): one shared logagent.Client on --socket (or one per thread with --per-worker-client), then
  flush(). success_count counts records queued; the duration runs until the flush is done. --block-ms: -1 (the
  default) waits for room in a full buffer, 0 drops, >0 waits up to that. With --stats-socket it then polls the
  agent's GET /stats until records.flushed has grown by success_count and reports delivered,
  delivered_per_second and e2e_duration_seconds (from the start of sending); the bench must be the agent's only
  writer meanwhile.
- The report adds the encoder that ran (`implementation`: "c" or "python", see logagent/_record.py) and the
  process's CPU (utime+stime, the writers and the sender thread) from the start to the flush: cpu_seconds and
  cpu_us_per_record. --prebuilt N: the threads cycle N argument sets made before the start, so that the CPU per
  record is write_log's own (tests/bench/compare.py's "write_log on one thread" table).
- --original HOST:PORT: original_client.write_log (one unary gRPC WriteLog per record, waiting for the answer;
  client-shim/python/examples/original, or --original-path). A record is delivered when its call returns
  success, so delivered = success_count and the end-to-end figures equal the sending ones.

Exit 0 when every record was accepted (and delivered), 1 otherwise, 2 on bad usage. Standard library only, plus
this package (and, for --original, python3-grpcio and python3-protobuf).
"""
import argparse
import datetime
import http.client
import itertools
import json
import os
import random
import socket
import sys
import threading
import time

PROG = "logagent-bench"
SERVICE = "django-concurrent-test"
LEVELS = ("INFO", "WARN", "ERROR", "DEBUG")
MONITOR_TYPES = ("impression", "click", "conversion", "view")
MAX_SAMPLES = 5
POLL_S = 0.020


class Tally:
    """Error samples (the first MAX_SAMPLES) and errors besides failed records; thread-safe."""

    def __init__(self):
        self.lock = threading.Lock()
        self.samples = []
        self.errors = 0

    def note(self, msg, is_record=True):
        with self.lock:
            if not is_record:
                self.errors += 1
            if len(self.samples) < MAX_SAMPLES:
                self.samples.append(msg)


def worker(write, counter, count, seed, tally, oks):
    """Writes records until the shared counter passes count; appends its number of successes to oks."""
    rnd = random.Random(seed)
    utc = datetime.timezone.utc
    ok = 0
    while True:
        i = next(counter)  # itertools.count: atomic under the GIL
        if i > count:
            break
        monitor = MONITOR_TYPES[rnd.randrange(4)]
        level = LEVELS[rnd.randrange(4)]
        r = write("Concurrent test log entry %d" % i, service_name=SERVICE, level=level,
                  trace_id="concurrent-trace-%06d" % i, span_id="concurrent-span-%06d" % i,
                  adv_id=rnd.randint(1000000, 9999999), aweme_id=rnd.randint(100000000, 999999999),
                  plan_id=rnd.randint(10000, 99999), monitor_type=monitor, co_id=rnd.randint(1000, 9999),
                  timestamp=datetime.datetime.now(utc).isoformat(timespec="microseconds"))
        if r["success"]:
            ok += 1
        else:
            tally.note(r["error_message"])
    oks.append(ok)


def prebuilt_calls(n):
    """n write_log argument sets of the same shape as worker()'s, made before the clock starts (--prebuilt)."""
    rnd = random.Random(0)
    utc = datetime.timezone.utc
    return [("Concurrent test log entry %d" % i,
             dict(service_name=SERVICE, level=LEVELS[rnd.randrange(4)], trace_id="concurrent-trace-%06d" % i,
                  span_id="concurrent-span-%06d" % i, adv_id=rnd.randint(1000000, 9999999),
                  aweme_id=rnd.randint(100000000, 999999999), plan_id=rnd.randint(10000, 99999),
                  monitor_type=MONITOR_TYPES[rnd.randrange(4)], co_id=rnd.randint(1000, 9999),
                  timestamp=datetime.datetime.now(utc).isoformat(timespec="microseconds")))
            for i in range(n)]


def prebuilt_worker(calls):
    """A worker() writing calls[i % len(calls)] as record i: write_log's own cost, without making the values."""
    def run(write, counter, count, seed, tally, oks):
        ok = 0
        n = len(calls)
        while True:
            i = next(counter)
            if i > count:
                break
            message, kw = calls[i % n]
            r = write(message, **kw)
            if r["success"]:
                ok += 1
            else:
                tally.note(r["error_message"])
        oks.append(ok)
    return run


def run_threads(workers, make_write, count, tally, work=worker):
    """Starts the workers (make_write(i) gives thread i its write function); returns the records accepted."""
    counter = itertools.count(1)
    oks = []
    threads = []
    for i in range(workers):
        t = threading.Thread(target=work, args=(make_write(i), counter, count, i + 1, tally, oks),
                             name="bench-%d" % i, daemon=True)
        try:
            t.start()
        except RuntimeError as e:
            tally.note("cannot start worker %d: %s" % (i, e), is_record=False)
            break
        threads.append(t)
    for t in threads:
        t.join()
    return sum(oks)


# ---- the agent's stats socket -------------------------------------------------------------------------------

class _UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost", timeout=10)
        self.unix_path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.unix_path)


def read_stats(path):
    """(records.flushed, records that will never be flushed: Σ records.dropped + records.dead_letter).
    Raises OSError or ValueError."""
    c = _UnixHTTP(path)
    try:
        c.request("GET", "/stats")
        r = c.getresponse()
        body = r.read()
    finally:
        c.close()
    if r.status != 200:
        raise ValueError("GET /stats answered %d: %s" % (r.status, body[:100]))
    rec = json.loads(body)["records"]
    return rec["flushed"], sum(rec["dropped"].values()) + rec.get("dead_letter", 0)


def wait_delivered(path, base, want, timeout_ms):
    """Polls /stats until flushed grew by want. Returns (delivered, error or "")."""
    deadline = None if timeout_ms < 0 else time.monotonic() + timeout_ms / 1000.0
    while True:
        flushed, gone = read_stats(path)
        delivered = flushed - base[0]
        if delivered >= want:
            return delivered, ""
        if delivered + gone - base[1] >= want:
            return delivered, ("end to end: %d of %d accepted records flushed; the agent dropped the rest "
                               "(records.dropped in /stats)" % (delivered, want))
        if deadline is not None and time.monotonic() >= deadline:
            return delivered, ("end to end: %d of %d accepted records flushed after waiting %d ms"
                               % (delivered, want, timeout_ms))
        time.sleep(POLL_S)


# ---- the two clients ----------------------------------------------------------------------------------------

def run_logagent(args, tally):
    """Returns (accepted, duration s, extra report keys, t0, the clients to close)."""
    from . import Client
    block = None if args.block_ms < 0 else args.block_ms / 1000.0
    flush_timeout = None if args.flush_timeout_ms < 0 else args.flush_timeout_ms / 1000.0
    opts = {"socket_path": args.socket, "buffer_bytes": args.buffer_bytes, "block_timeout": block}
    clients = []
    lock = threading.Lock()

    def make_write(i):
        if not args.per_worker_client and clients:
            return clients[0].write_log
        c = Client(**opts)
        with lock:
            clients.append(c)
        return c.write_log

    if not args.per_worker_client:
        make_write(0)
    work = prebuilt_worker(prebuilt_calls(args.prebuilt)) if args.prebuilt else worker
    t0 = time.monotonic()
    cpu0 = os.times()
    ok = run_threads(args.workers, make_write, args.count, tally, work)
    for c in clients:
        if not c.flush(flush_timeout):
            tally.note("flush: not every record reached the agent's socket within %s ms" % args.flush_timeout_ms,
                       is_record=False)
    duration = time.monotonic() - t0
    cpu1 = os.times()
    cpu = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)  # the writers and the sender thread
    from . import implementation
    extra = {"mode": "python", "client": "per-worker" if args.per_worker_client else "shared",
             "block_ms": args.block_ms, "implementation": implementation, "prebuilt": args.prebuilt,
             "cpu_seconds": round(cpu, 3), "cpu_us_per_record": round(cpu / max(ok, 1) * 1e6, 3)}
    return ok, duration, extra, t0, clients


def run_original(args, tally):
    path = args.original_path or os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                              "examples", "original")
    sys.path.insert(0, path)
    os.environ["ORIGINAL_LOG_SERVICE"] = args.original
    try:
        import original_client
    except ImportError as e:
        sys.stderr.write("%s: cannot import original_client from %s (--original-path): %s\n" % (PROG, path, e))
        sys.exit(1)
    t0 = time.monotonic()
    ok = run_threads(args.workers, lambda i: original_client.write_log, args.count, tally)
    duration = time.monotonic() - t0
    original_client.close()
    return ok, duration, {"mode": "original", "target": args.original}, t0


# ---- command line and report --------------------------------------------------------------------------------

def probe(args):
    """Exits 1 with a message when the agent's socket (or the original's service) does not answer."""
    try:
        if args.original:
            host, _, port = args.original.rpartition(":")
            socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
        else:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.settimeout(5)
                s.connect(args.socket)
            finally:
                s.close()
    except (OSError, ValueError) as e:
        where = args.original or args.socket
        sys.stderr.write("%s: cannot reach %s at %s: %s\n" % (PROG, "the service" if args.original else "the agent",
                                                              where, e))
        sys.exit(1)


def parse_args(argv):
    ap = argparse.ArgumentParser(prog="python3 -m logagent.bench",
                                 description="The concurrent write test through the Python client (or the "
                                             "original design), with logagent-bench's JSON report.")
    ap.add_argument("--socket", default=None, help="agent ingest socket (default: $LOGAGENT_SOCKET, else "
                                                   "/run/logagent/ingest.sock)")
    ap.add_argument("--original", metavar="HOST:PORT",
                    help="the original design instead: one unary gRPC WriteLog per record to HOST:PORT")
    ap.add_argument("--original-path", metavar="DIR", help="folder holding original_client.py (default: "
                                                           "../examples/original beside this package)")
    ap.add_argument("--count", type=int, default=10000, help="records in all (default 10000)")
    ap.add_argument("--workers", type=int, default=50, help="threads (default 50, at most 1024)")
    ap.add_argument("--block-ms", type=int, default=-1, help="full buffer: -1 wait (default), 0 drop, >0 wait ms")
    ap.add_argument("--per-worker-client", action="store_true", help="one Client per thread")
    ap.add_argument("--buffer-bytes", type=int, default=None, help="client buffer bound (default 4 MiB)")
    ap.add_argument("--flush-timeout-ms", type=int, default=60000, help="final flush bound (default 60000; -1 "
                                                                        "forever)")
    ap.add_argument("--prebuilt", type=int, default=0, metavar="N",
                    help="cycle N argument sets made before the start, instead of making each record's values in "
                         "the loop: write_log's own cost (default 0: make them)")
    ap.add_argument("--stats-socket", metavar="PATH", help="end to end: poll this agent stats socket after sending")
    ap.add_argument("--stats-timeout-ms", type=int, default=60000, help="give up waiting (default 60000; -1 "
                                                                        "forever)")
    args = ap.parse_args(argv)
    if args.count < 1:
        ap.error("--count needs a positive number")
    if not 1 <= args.workers <= 1024:
        ap.error("--workers needs a number from 1 to 1024")
    if args.block_ms < -1 or args.flush_timeout_ms < -1 or args.stats_timeout_ms < -1:
        ap.error("--block-ms, --flush-timeout-ms and --stats-timeout-ms take -1, 0 or a number of ms")
    if args.prebuilt < 0 or (args.prebuilt and args.original):
        ap.error("--prebuilt needs a positive number, and the Python client (not --original)")
    if args.buffer_bytes is not None and args.buffer_bytes < 1:
        ap.error("--buffer-bytes needs a positive number")
    if args.original:
        clash = [f for f, v in (("--socket", args.socket), ("--stats-socket", args.stats_socket),
                                ("--per-worker-client", args.per_worker_client)) if v]
        if clash:
            ap.error("%s has no meaning with --original" % clash[0])
        if ":" not in args.original:
            ap.error("--original needs HOST:PORT, got %r" % args.original)
    else:
        args.socket = args.socket or os.environ.get("LOGAGENT_SOCKET") or "/run/logagent/ingest.sock"
    return args


def report(args, ok, duration, extra, tally, e2e):
    failed = args.count - ok
    doc = {"success": True, "test_type": "concurrent", "total_count": args.count, "success_count": ok,
           "failed_count": failed, "max_workers": args.workers, "duration_seconds": round(duration, 3),
           "logs_per_second": round(ok / duration, 2) if duration > 0 else 0.0}
    doc.update(extra)
    if e2e is not None:
        delivered, e2e_s = e2e
        doc.update({"delivered": delivered,
                    "delivered_per_second": round(delivered / e2e_s, 2) if e2e_s > 0 else 0.0,
                    "e2e_duration_seconds": round(e2e_s, 3)})
    doc["error_summary"] = {"total_errors": failed + tally.errors, "sample_errors": list(tally.samples)}
    sys.stdout.write(json.dumps(doc, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def main(argv=None):
    args = parse_args(argv)
    probe(args)
    tally = Tally()
    e2e = None
    e2e_err = ""
    if args.original:
        ok, duration, extra, _ = run_original(args, tally)
        e2e = (ok, duration)  # synchronous: answered = delivered
    else:
        base = None
        if args.stats_socket:
            try:
                base = read_stats(args.stats_socket)
            except (OSError, ValueError, KeyError) as e:
                sys.stderr.write("%s: cannot read the agent's stats at %s: %s\n" % (PROG, args.stats_socket, e))
                return 1
        ok, duration, extra, t0, clients = run_logagent(args, tally)
        if base is not None:
            try:
                delivered, e2e_err = wait_delivered(args.stats_socket, base, ok, args.stats_timeout_ms)
            except (OSError, ValueError, KeyError) as e:
                delivered, e2e_err = 0, "end to end: %s" % e
            e2e = (delivered, time.monotonic() - t0)
            if e2e_err:
                tally.note(e2e_err, is_record=False)
        for c in clients:
            c.close(0)
    report(args, ok, duration, extra, tally, e2e)
    return 0 if ok == args.count and tally.errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
