"""test_bad_input.py — docs/protocol.md's bad-input table, one test per row, each with a healthy client alongside whose
records must all arrive: not msgpack (malformed, connection closed), non-map objects and maps without a string
message (invalid_record, connection goes on), an oversized record and a header announcing one (oversized,
connection closed), a client stopping mid-record (truncated), client-sent _-keys (reserved_key), and the values
that are kept rather than refused: timestamps that are not times (kept as metadata) and repeated field keys (the
last wins, the earlier value kept as metadata)."""
import os
import socket
import struct
import threading
import time

import msgpack

from harness import Agent, Sink, TempDir, accounting_holds, run, send_records, wait_for

HEALTHY = 2000


def good(tag, i):
    return {"message": "%s %d" % (tag, i), "service_name": "healthy", "seq": i}


class Healthy(threading.Thread):
    """A well-behaved client writing HEALTHY records slowly enough to overlap the bad one."""

    def __init__(self, sock, tag):
        super().__init__()
        self.sock, self.tag = sock, tag

    def run(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(self.sock)
        for start in range(0, HEALTHY, 100):
            s.sendall(b"".join(msgpack.packb(good(self.tag, i)) for i in range(start, start + 100)))
        s.close()


def scenario(name, bad_action, counter, expect_closed, agent_args=(), expect_count=1):
    """Runs a healthy client next to bad_action(sock); checks the counter moved by exactly expect_count and nothing
    else was lost. bad_action returns the number of good records it sent itself and whether its connection was
    closed by the agent."""
    tmp = TempDir(name)
    sink = Sink(tmp).start()
    a = Agent(tmp, sink.target, "--flush-interval-ms", "20", *agent_args).start()
    h = Healthy(a.socket, name)
    h.start()
    own_good, closed = bad_action(a.socket)
    h.join()
    total = HEALTHY + own_good
    sink.wait_count(total)
    st = wait_for(lambda: (lambda s: s if s["records"]["flushed"] == total else None)(a.stats()), 20,
                  "flushed == %d" % total)
    rejected = st["records"]["rejected"]
    assert rejected[counter] == expect_count, rejected
    assert sum(rejected.values()) == expect_count, rejected
    assert st["records"]["received"] == total, st["records"]
    assert accounting_holds(st), st
    assert closed == expect_closed, "connection closed: %s, expected %s" % (closed, expect_closed)
    msgs = [e["message"] for e in sink.entries()]
    assert len(msgs) == total and len(set(msgs)) == total
    assert all("%s %d" % (name, i) in set(msgs) for i in range(HEALTHY))
    log = a.logtext()
    assert a.stop() == 0
    return log, sink.entries()


def connect(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    s.settimeout(10)
    return s


def peer_closed(s):
    """True when the agent closed the connection (EOF or reset on read)."""
    try:
        return s.recv(1) == b""
    except ConnectionResetError:
        return True


def test_not_msgpack_closes_connection():
    def bad(path):
        s = connect(path)
        s.sendall(msgpack.packb({"message": "before garbage"}) + b"\xc1\xc1\xc1garbage")
        closed = peer_closed(s)
        s.close()
        return 1, closed
    log, _ = scenario("malformed", bad, "malformed", True)
    assert "malformed msgpack, connection closed" in log and "pid=%d" % os.getpid() in log, log


def test_non_map_and_missing_message_skipped_connection_goes_on():
    def bad(path):
        s = connect(path)
        s.sendall(msgpack.packb([1, 2, 3]) + msgpack.packb({"level": "INFO", "no": "message"}) +
                  msgpack.packb({"message": 42}) + msgpack.packb({"message": "after the bad ones"}))
        s.shutdown(socket.SHUT_WR)
        closed = peer_closed(s)
        s.close()
        return 1, not closed
    log, entries = scenario("invalid", bad, "invalid_record", False, expect_count=3)
    assert "after the bad ones" in [e["message"] for e in entries]
    assert "invalid record skipped" in log


def test_oversized_record_closes_connection():
    def bad(path):
        s = connect(path)
        s.sendall(msgpack.packb({"message": "small first"}))
        try:
            s.sendall(msgpack.packb({"message": "x" * (200 * 1024)}))
        except (BrokenPipeError, ConnectionResetError):
            pass
        closed = peer_closed(s)
        s.close()
        return 1, closed
    scenario("oversized", bad, "oversized", True, ("--max-record-bytes", "64KiB"))


def test_header_announcing_huge_record_closes_connection():
    def bad(path):
        s = connect(path)
        s.sendall(msgpack.packb({"message": "small first"}) + b"\xdf\xff\xff\xff\xff")
        closed = peer_closed(s)
        s.close()
        return 1, closed
    scenario("announced", bad, "oversized", True)


def test_client_stopping_mid_record_counts_truncated():
    def bad(path):
        data = msgpack.packb({"message": "complete"}) + msgpack.packb({"message": "cut short here"})[:-5]
        send_records(path, [data])
        return 1, True
    log, _ = scenario("truncated", bad, "truncated", True)
    assert "disconnected mid-record" in log


def test_reserved_keys_dropped_record_kept():
    tmp = TempDir("reserved")
    sink = Sink(tmp).start()
    a = Agent(tmp, sink.target, "--flush-interval-ms", "20").start()
    send_records(a.socket, [{"message": "spoof", "_pid": 1, "_uid": 0, "_comm": "init", "ok": "yes"}])
    sink.wait_count(1)
    e = sink.entries()[0]
    assert e["metadata"] == {"ok": "yes"}, e
    assert e["source"]["pid"] == os.getpid(), e
    assert e["source"].get("comm") == open("/proc/self/comm").read().strip(), e
    st = a.stats()
    assert st["records"]["rejected"]["reserved_key"] == 3, st
    assert a.stop() == 0


def raw_map(pairs):
    """A msgpack map from (key, packed value bytes) pairs, keys repeated as given (a dict cannot repeat them)."""
    return bytes([0x80 | len(pairs)]) + b"".join(msgpack.packb(k) + v for k, v in pairs)


def ts_ext(data):
    """A msgpack timestamp (ext type -1) of 4, 8 or 12 bytes."""
    head = {4: b"\xd6", 8: b"\xd7"}.get(len(data), b"\xc7" + bytes([len(data)]))
    return head + b"\xff" + data


P = msgpack.packb
RECEIVE = "receive"  # the receive time is used
# (message, the record's other pairs, expected timestamp, expected fields, expected metadata)
KEPT_ROWS = [
    ("ext64 ns past a second", [("timestamp", ts_ext(struct.pack(">Q", (10**9 << 34) | 1)))], RECEIVE, {},
     {"timestamp": "7msoAAAAAAE="}),
    ("ext96 ns past a second", [("timestamp", ts_ext(struct.pack(">Iq", 10**9, 1)))], RECEIVE, {},
     {"timestamp": "O5rKAAAAAAAAAAAB"}),
    ("ext96 before 1970", [("timestamp", ts_ext(struct.pack(">Iq", 0, -86400)))], RECEIVE, {},
     {"timestamp": "AAAAAP///////q6A"}),
    ("ext64 valid", [("timestamp", ts_ext(struct.pack(">Q", (250 << 34) | 1725013845)))], 1725013845000000250, {},
     {}),
    ("feb 30", [("timestamp", P("2024-02-30T10:00:00Z"))], RECEIVE, {}, {"timestamp": "2024-02-30T10:00:00Z"}),
    ("feb 29 not leap", [("timestamp", P("2023-02-29T10:00:00Z"))], RECEIVE, {},
     {"timestamp": "2023-02-29T10:00:00Z"}),
    ("feb 29 leap", [("timestamp", P("2024-02-29T00:00:00Z"))], 1709164800000000000, {}, {}),
    ("month 13", [("timestamp", P("2024-13-01T00:00:00Z"))], RECEIVE, {}, {"timestamp": "2024-13-01T00:00:00Z"}),
    ("hour 25", [("timestamp", P("2024-01-01T25:00:00Z"))], RECEIVE, {}, {"timestamp": "2024-01-01T25:00:00Z"}),
    ("rfc before 1970", [("timestamp", P("1969-12-31T23:59:59Z"))], RECEIVE, {},
     {"timestamp": "1969-12-31T23:59:59Z"}),
    ("negative int", [("timestamp", P(-5))], RECEIVE, {}, {"timestamp": "-5"}),
    ("negative float", [("timestamp", P(-1.5))], RECEIVE, {}, {"timestamp": "-1.5"}),
    ("epoch", [("timestamp", P(0))], 0, {}, {}),
    ("repeated log_id", [("log_id", P("a" * 32)), ("log_id", P("b" * 32))], RECEIVE, {"log_id": "b" * 32},
     {"log_id": "a" * 32}),
    ("repeated level", [("level", P("debug")), ("level", P("error"))], RECEIVE, {"level": "ERROR"},
     {"level": "debug"}),
    ("repeated timestamp", [("timestamp", P(1000)), ("timestamp", P(2000))], 2000, {}, {"timestamp": "1000"}),
]


def test_bad_times_and_repeated_keys_kept():
    """The rows of docs/protocol.md's bad-input table that keep the record: each arrives once, with the receive
    time or the time it gave, and the value that was not a time (or was repeated) in its metadata; nothing is
    counted rejected. A repeated `message`: the last is the message, the earlier one metadata `message`."""
    tmp = TempDir("kept")
    sink = Sink(tmp).start()
    a = Agent(tmp, sink.target, "--flush-interval-ms", "20").start()
    records = [raw_map([("message", P(m))] + pairs) for m, pairs, _, _, _ in KEPT_ROWS]
    records.append(raw_map([("message", P("first message")), ("message", P("repeated message"))]))
    lo = time.time_ns()
    send_records(a.socket, records)
    sink.wait_count(len(records))
    hi = time.time_ns()
    by_msg = {e["message"]: e for e in sink.entries()}
    assert len(by_msg) == len(records) == len(sink.entries()), sorted(by_msg)
    for m, _, ts, fields, meta in KEPT_ROWS:
        e = by_msg[m]
        if ts == RECEIVE:
            assert lo <= e["timestamp_unix_nano"] <= hi, (m, e)
        else:
            assert e["timestamp_unix_nano"] == ts, (m, e)
        for k, v in fields.items():
            assert e[k] == v, (m, k, e)
        assert e["metadata"] == meta, (m, e["metadata"], meta)
    assert by_msg["repeated message"]["metadata"] == {"message": "first message"}, by_msg["repeated message"]
    st = a.stats()
    assert st["records"]["received"] == len(records), st["records"]
    assert sum(st["records"]["rejected"].values()) == 0, st["records"]["rejected"]
    assert a.stop() == 0


if __name__ == "__main__":
    run([test_not_msgpack_closes_connection, test_non_map_and_missing_message_skipped_connection_goes_on,
         test_oversized_record_closes_connection, test_header_announcing_huge_record_closes_connection,
         test_client_stopping_mid_record_counts_truncated, test_reserved_keys_dropped_record_kept,
         test_bad_times_and_repeated_keys_kept])
