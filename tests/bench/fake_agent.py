#!/usr/bin/python3
"""fake_agent.py — a stand-in for logagentd's ingest socket, for testing clients without the agent.

Listens on a Unix socket, decodes the msgpack stream of every connection (python3-msgpack), checks each
record against the wire format (docs/protocol.md: a map with a str message, a 32-hex log_id, ...), and
prints one JSON summary line on stdout when it stops: on SIGTERM/SIGINT, after --expect records, or
after --timeout seconds. A connection that ends in the middle of a record counts as `truncated`.

--restart-after N simulates an agent restart: after every N records it closes all connections and the
listening socket, removes the socket file, stays away --down-ms, and listens again.
"""
import argparse
import collections
import json
import os
import re
import selectors
import signal
import socket
import sys
import time

import msgpack

LOG_ID = re.compile(r"[0-9a-f]{32}\Z")
CORE_STR = ("message", "level", "service_name", "trace_id", "span_id", "log_id")


class Conn:
    def __init__(self, sock):
        self.sock = sock
        self.unpacker = msgpack.Unpacker(raw=False, strict_map_key=False, max_buffer_size=8 << 20)
        self.fed = 0


class FakeAgent:
    def __init__(self, args):
        self.args = args
        self.sel = selectors.DefaultSelector()
        self.listener = None
        self.conns = []
        self.stats = collections.Counter()
        self.levels = collections.Counter()
        self.log_ids = set()
        self.services = collections.Counter()
        self.problems = []
        self.sample = None
        self.stop = False
        self.first_at = None
        self.last_at = None
        self.out = open(args.out, "a") if args.out else None

    def listen(self):
        try:
            os.unlink(self.args.socket)
        except FileNotFoundError:
            pass
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(self.args.socket)
        s.listen(128)
        s.setblocking(False)
        self.sel.register(s, selectors.EVENT_READ, None)
        self.listener = s

    def restart(self):
        self.stats["restarts"] += 1
        for c in list(self.conns):
            self.close(c, at_restart=True)
        self.sel.unregister(self.listener)
        self.listener.close()
        os.unlink(self.args.socket)
        time.sleep(self.args.down_ms / 1000.0)
        self.listen()

    def close(self, c, at_restart=False):
        left = c.fed - c.unpacker.tell()
        if left:
            # At a restart, a record cut by us is expected (the client wrote it, we did not read it all);
            # at a client's own close it means the client stopped mid-record.
            self.stats["cut_by_restart" if at_restart else "truncated"] += 1
        self.sel.unregister(c.sock)
        c.sock.close()
        self.conns.remove(c)

    def problem(self, what):
        self.stats["invalid"] += 1
        if len(self.problems) < 10:
            self.problems.append(what)

    def check(self, rec):
        if not isinstance(rec, dict):
            self.stats["non_map"] += 1
            self.problem("non-map object: %r" % (rec,))
            return
        msg = rec.get("message")
        if not isinstance(msg, str):
            self.problem("no str message: %r" % (rec,))
            return
        for k in CORE_STR:
            if k in rec and not isinstance(rec[k], str):
                self.problem("%s is not a str: %r" % (k, rec))
        lid = rec.get("log_id")
        if not isinstance(lid, str) or not LOG_ID.match(lid):
            self.problem("bad log_id: %r" % (rec,))
        elif lid in self.log_ids:
            self.stats["duplicates"] += 1
        else:
            self.log_ids.add(lid)
        ts = rec.get("timestamp")
        if not isinstance(ts, (int, float, str)):
            self.problem("bad timestamp: %r" % (rec,))
        self.levels[rec.get("level")] += 1
        self.services[rec.get("service_name")] += 1
        if self.sample is None:
            self.sample = rec

    def on_record(self, rec):
        self.stats["records"] += 1
        if self.args.check:
            self.check(rec)
        if self.out:
            self.out.write(json.dumps(rec, default=repr) + "\n")

    def on_readable(self, c):
        try:
            data = c.sock.recv(1 << 20)
        except ConnectionResetError:
            data = b""
        if not data:
            self.close(c)
            return
        now = time.monotonic()
        if self.first_at is None:
            self.first_at = now
        self.last_at = now
        self.stats["bytes"] += len(data)
        if self.args.no_decode:
            return
        c.fed += len(data)
        c.unpacker.feed(data)
        try:
            for rec in c.unpacker:
                self.on_record(rec)
                n = self.stats["records"]
                if self.args.restart_after and n % self.args.restart_after == 0:
                    self.restart()
                    return
        except (msgpack.ExtraData, msgpack.FormatError, msgpack.StackError, ValueError) as e:
            self.stats["malformed"] += 1
            self.problem("malformed stream: %s" % e)
            self.close(c)

    def run(self):
        self.listen()
        if self.args.ready_file:
            with open(self.args.ready_file, "w") as f:
                f.write("ready\n")
        deadline = time.monotonic() + self.args.timeout if self.args.timeout else None
        while not self.stop:
            got = len(self.log_ids) if self.args.check else self.stats["records"]
            if self.args.expect and got >= self.args.expect and not self.conns_pending():
                break
            if deadline and time.monotonic() > deadline:
                self.stats["timed_out"] = 1
                break
            for key, _ in self.sel.select(timeout=0.1):
                if key.data is None:
                    try:
                        s, _ = key.fileobj.accept()
                    except BlockingIOError:
                        continue
                    s.setblocking(False)
                    c = Conn(s)
                    self.conns.append(c)
                    self.sel.register(s, selectors.EVENT_READ, c)
                    self.stats["connections"] += 1
                else:
                    self.on_readable(key.data)
        self.report()

    def conns_pending(self):
        return any(c.fed != c.unpacker.tell() for c in self.conns)

    def report(self):
        dur = (self.last_at - self.first_at) if self.first_at and self.last_at else 0.0
        out = dict(self.stats)
        out["unique_log_ids"] = len(self.log_ids)
        out["levels"] = {str(k): v for k, v in self.levels.items()}
        out["services"] = {str(k): v for k, v in self.services.items()}
        out["receive_seconds"] = round(dur, 3)
        out["avg_record_bytes"] = round(self.stats["bytes"] / self.stats["records"], 1) if self.stats["records"] else 0
        out["problems"] = self.problems
        out["sample"] = self.sample
        print(json.dumps(out, default=repr), flush=True)
        if self.out:
            self.out.close()
        try:
            os.unlink(self.args.socket)
        except FileNotFoundError:
            pass


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--socket", required=True)
    p.add_argument("--expect", type=int, default=0, help="stop after this many records (unique log_ids with --check)")
    p.add_argument("--timeout", type=float, default=0, help="stop after this many seconds")
    p.add_argument("--check", action="store_true", help="validate every record and track log_ids")
    p.add_argument("--no-decode", action="store_true", help="count bytes only (measures the client, not us)")
    p.add_argument("--out", help="append every record as a JSON line to this file")
    p.add_argument("--restart-after", type=int, default=0, help="simulate an agent restart every N records")
    p.add_argument("--down-ms", type=int, default=200, help="how long a simulated restart stays down")
    p.add_argument("--ready-file", help="write this file once listening")
    args = p.parse_args()
    agent = FakeAgent(args)

    def on_signal(signum, frame):
        agent.stop = True
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    agent.run()


if __name__ == "__main__":
    main()
