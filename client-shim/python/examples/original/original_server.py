#!/usr/bin/python3
"""original_server.py — the original design's log service, rebuilt for benchmarks only: a Python grpcio server
(Debian's python3-grpcio, a thread pool) that answers logagent.v1.LogService/WriteLog, one record per call, with
success and a log_id it makes (a uuid4; the request's own log_id when it has one), and counts the records.
BatchWriteLogs is not offered (UNIMPLEMENTED, like the original service).

    /usr/bin/python3 original_server.py --listen 127.0.0.1:0 --port-file /tmp/port [--max-workers 10] [--out FILE|-]

--listen HOST:PORT (port 0: any free port, written to --port-file once the server listens). --out writes one
JSON line per record (log_id, service_name, level, message, trace_id, span_id, metadata). On SIGTERM or SIGINT it
stops and prints one JSON summary line on stderr:
{"entries": N, "unique_log_ids": N, "duplicates": 0, "unary_calls": N, "batches": 0, "max_workers": 10, ...}.
Exit 0, or 2 on bad usage or when it cannot listen.
"""
import argparse
import json
import os
import signal
import sys
import threading
import time
import uuid
from concurrent import futures

import grpc

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import original_proto  # noqa: E402


class Service:
    """The WriteLog handler and its counters (guarded by a lock: the pool runs handlers in parallel)."""

    def __init__(self, pb, out):
        self.pb = pb
        self.out = out
        self.lock = threading.Lock()
        self.entries = 0
        self.ids = set()
        self.duplicates = 0

    def write_log(self, req, context):
        log_id = req.log_id or uuid.uuid4().hex
        line = None
        if self.out is not None:
            line = json.dumps({"log_id": log_id, "service_name": req.service_name, "level": req.level,
                               "message": req.message, "trace_id": req.trace_id, "span_id": req.span_id,
                               "metadata": dict(req.metadata)}, separators=(",", ":")) + "\n"
        with self.lock:
            self.entries += 1
            if log_id in self.ids:
                self.duplicates += 1
            else:
                self.ids.add(log_id)
            if line is not None:
                self.out.write(line)
        return self.pb.WriteLogResponse(success=True, log_id=log_id)

    def handler(self):
        return grpc.method_handlers_generic_handler(original_proto.SERVICE, {
            "WriteLog": grpc.unary_unary_rpc_method_handler(
                self.write_log, request_deserializer=self.pb.WriteLogRequest.FromString,
                response_serializer=self.pb.WriteLogResponse.SerializeToString),
        })

    def summary(self, max_workers, seconds):
        with self.lock:
            return {"entries": self.entries, "unique_log_ids": len(self.ids), "duplicates": self.duplicates,
                    "unary_calls": self.entries, "batches": 0, "injected_failures": 0, "max_workers": max_workers,
                    "seconds": round(seconds, 3)}


def write_port_file(path, port):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d\n" % port)
    os.rename(tmp, path)  # readers never see a half-written file


def main():
    ap = argparse.ArgumentParser(description="The original design's log service (one unary WriteLog per record), "
                                             "for benchmarks only.")
    ap.add_argument("--listen", default="127.0.0.1:50051", metavar="HOST:PORT",
                    help="address to listen on; port 0 picks a free one (default 127.0.0.1:50051)")
    ap.add_argument("--port-file", metavar="F", help="write the port here once listening")
    ap.add_argument("--max-workers", type=int, default=10, metavar="N",
                    help="handler threads in the pool (default 10, grpcio's examples' value)")
    ap.add_argument("--out", metavar="FILE|-", help="append one JSON line per record to FILE (or stdout)")
    args = ap.parse_args()
    if args.max_workers < 1:
        ap.error("--max-workers must be at least 1")

    try:
        pb = original_proto.messages()
    except RuntimeError as e:
        sys.stderr.write("original_server: %s\n" % e)
        return 2
    out = None
    if args.out == "-":
        out = sys.stdout
    elif args.out:
        out = open(args.out, "a", buffering=1)
    svc = Service(pb, out)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=args.max_workers))
    server.add_generic_rpc_handlers((svc.handler(),))
    try:
        port = server.add_insecure_port(args.listen)
    except RuntimeError as e:
        port, err = 0, e
    else:
        err = "port 0 returned"
    if not port:
        sys.stderr.write("original_server: cannot listen on %s: %s\n" % (args.listen, err))
        return 2
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    server.start()
    t0 = time.monotonic()
    if args.port_file:
        write_port_file(args.port_file, port)
    sys.stderr.write("original_server: listening on %s (port %d), %d handler threads\n"
                     % (args.listen, port, args.max_workers))
    sys.stderr.flush()
    while not stop.wait(0.5):
        pass
    server.stop(grace=2).wait()
    if out is not None and out is not sys.stdout:
        out.close()
    sys.stderr.write(json.dumps(svc.summary(args.max_workers, time.monotonic() - t0)) + "\n")
    sys.stderr.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
