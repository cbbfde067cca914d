"""test_forward.py — the Fluent Forward protocol on the ingest socket (issue #7): Debian's python3-fluent-logger
(sync and async senders, a client nobody on the team wrote), a raw client sending every mode (Message, Forward,
PackedForward as bin and str, CompressedPackedForward) with EventTime, integer and float times, `chunk` acks sent
only once the records are in the agent, a Forward message larger than the ring (backpressure loses nothing and the
ack waits for all of it), malformed Forward messages per docs/protocol.md's Forward bad-input table (skipped, counted, the
connection goes on), and the sizes: 3 MiB chunks (as Fluent Bit and fluentd send) pass with the defaults, a message
over --forward-max-message-bytes (or its item budget) closes only its connection, one event over --max-record-bytes
inside a message is skipped alone."""
import gzip
import re
import socket
import struct
import subprocess
import threading
import time

import msgpack

from harness import Agent, Sink, TempDir, accounting_holds, dead_target, recv_ack, run, wait_for

T0 = 1725013845  # 2024-08-30T10:30:45Z


def event_time(sec, nsec):
    return msgpack.ExtType(0, struct.pack(">II", sec, nsec))


def connect(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    s.settimeout(30)
    return s




def start(name, *args):
    tmp = TempDir(name)
    sink = Sink(tmp).start()
    a = Agent(tmp, sink.target, "--flush-interval-ms", "20", *args).start()
    return sink, a


def finish(sink, a, total):
    """Waits for `total` records flushed; checks the counters add up; stops the agent. Returns (stats, entries)."""
    sink.wait_count(total)
    st = wait_for(lambda: (lambda s: s if s["records"]["flushed"] == total else None)(a.stats()), 30,
                  "flushed == %d" % total)
    assert st["records"]["received"] == total, st["records"]
    assert accounting_holds(st), st
    log = a.logtext()
    assert a.stop() == 0, log
    entries = sink.entries()
    assert len(entries) == total, (len(entries), total)
    return st, entries


def test_fluent_logger_sync_and_async():
    from fluent import asyncsender, sender
    sink, a = start("fluent_logger")
    s = sender.FluentSender("app", host="unix://" + a.socket)
    for i in range(50):
        assert s.emit("web", {"message": "sync %d" % i, "user": "u%d" % i, "n": i}), s.last_error
    s.close()
    ns = sender.FluentSender("app", host="unix://" + a.socket, nanosecond_precision=True)
    for i in range(50):
        assert ns.emit_with_time("ns", T0 + i + 0.25, {"log": "nano %d" % i}), ns.last_error
    ns.close()
    asy = asyncsender.FluentSender("app", host="unix://" + a.socket)
    for i in range(100):
        assert asy.emit("worker", {"msg": "async %d" % i, "job": i})
    asy.close()  # flushes its queue and joins its thread
    st, entries = finish(sink, a, 200)
    by_msg = {e["message"]: e for e in entries}
    assert len(by_msg) == 200, "duplicates or losses: %d distinct" % len(by_msg)
    for i in range(50):
        e = by_msg["sync %d" % i]
        assert e["service_name"] == "app.web" and e["metadata"] == {"user": "u%d" % i, "n": str(i)}, e
        assert e["level"] == "INFO" and e["timestamp_unix_nano"] > 1.7e18, e
        e = by_msg["nano %d" % i]
        assert e["service_name"] == "app.ns" and e["metadata"] == {}, e
        assert e["timestamp_unix_nano"] == (T0 + i) * 10**9 + 250000000, e
    for i in range(100):
        e = by_msg["async %d" % i]
        assert e["service_name"] == "app.worker" and e["metadata"] == {"job": str(i)}, e
    fw = st["forward"]
    assert fw["messages"] == 200 and fw["events"] == 200 and fw["acks"] == 0, fw


def test_every_mode_and_time_form():
    sink, a = start("modes")
    s = connect(a.socket)
    rec = lambda m, i: {"message": "%s %d" % (m, i), "i": i}
    packed = lambda m, n: b"".join(msgpack.packb([T0 + i, rec(m, i)]) for i in range(n))
    msgs = [
        ["t.message.int", T0, rec("message-int", 0)],
        ["t.message.et", event_time(T0, 123456789), rec("message-et", 0), {}],
        ["t.message.float", T0 + 0.5, rec("message-float", 0)],
        ["t.forward", [[event_time(T0 + i, i), rec("forward", i)] for i in range(5)]],
        ["t.packed.bin", packed("packed-bin", 5)],
        ["t.gzip", gzip.compress(packed("gzip", 5)), {"compressed": "gzip"}],
        # fluentd may append a gzip member per flush: several members concatenated
        ["t.gzip2", gzip.compress(packed("gz-a", 3)) + gzip.compress(packed("gz-b", 2)), {"compressed": "gzip"}],
    ]
    data = b"".join(msgpack.packb(m, use_bin_type=True) for m in msgs)
    # PackedForward as str: the entries in a msgpack str (old fluentd; use_bin_type=False packs bytes as str)
    data += msgpack.packb(["t.packed.str", packed("packed-str", 5)], use_bin_type=False)
    s.sendall(data)
    s.close()
    st, entries = finish(sink, a, 3 + 5 + 5 + 5 + 5 + 5)
    by_msg = {e["message"]: e for e in entries}
    assert by_msg["message-int 0"]["timestamp_unix_nano"] == T0 * 10**9
    assert by_msg["message-int 0"]["service_name"] == "t.message.int"
    assert by_msg["message-et 0"]["timestamp_unix_nano"] == T0 * 10**9 + 123456789
    assert by_msg["message-float 0"]["timestamp_unix_nano"] == T0 * 10**9 + 500000000
    for m, svc in (("forward", "t.forward"), ("packed-bin", "t.packed.bin"), ("gzip", "t.gzip"),
                   ("packed-str", "t.packed.str")):
        for i in range(5):
            e = by_msg["%s %d" % (m, i)]
            assert e["service_name"] == svc and e["metadata"] == {"i": str(i)}, e
            want = (T0 + i) * 10**9 + (i if m == "forward" else 0)
            assert e["timestamp_unix_nano"] == want, (e, want)
    assert all("gz-a %d" % i in by_msg for i in range(3)) and all("gz-b %d" % i in by_msg for i in range(2))
    assert st["forward"]["messages"] == 8 and st["forward"]["events"] == 28, st["forward"]


def test_message_keys_mapping():
    """log (docker's fluentd driver), msg; message wins over log; no string message: "" and every key kept."""
    sink, a = start("mapping")
    s = connect(a.socket)
    s.sendall(b"".join(msgpack.packb(m) for m in [
        ["docker.web", T0, {"log": "from docker", "container_id": "abc", "container_name": "/web",
                            "source": "stdout"}],
        ["t", T0, {"msg": "from msg", "level": "error"}],
        ["t", T0, {"message": "wins", "log": "kept as metadata"}],
        ["t", T0, {"message": {"not": "a string"}, "log": "log used"}],
        ["t", T0, {"cpu": 0.5, "host": "h1"}],
        ["t", T0, {"message": "own service and time kept aside", "service_name": "x", "timestamp": 5}],
    ]))
    s.close()
    _, entries = finish(sink, a, 6)
    by_msg = {e["message"]: e for e in entries}
    e = by_msg["from docker"]
    assert e["service_name"] == "docker.web", e
    assert e["metadata"] == {"container_id": "abc", "container_name": "/web", "source": "stdout"}, e
    assert by_msg["from msg"]["level"] == "ERROR"
    assert by_msg["wins"]["metadata"] == {"log": "kept as metadata"}
    assert by_msg["log used"]["metadata"] == {"record_message": '{"not":"a string"}'}, by_msg["log used"]
    assert by_msg[""]["metadata"] == {"cpu": "0.5", "host": "h1"}, by_msg[""]
    e = by_msg["own service and time kept aside"]
    assert e["service_name"] == "t" and e["timestamp_unix_nano"] == T0 * 10**9, e
    assert e["metadata"] == {"record_service_name": "x", "record_timestamp": "5"}, e


def test_forward_message_keys_option():
    """--forward-message-keys log,message: log wins over message; a bad list is refused at start (exit 2)."""
    sink, a = start("keys", "--forward-message-keys", "log,message")
    s = connect(a.socket)
    s.sendall(msgpack.packb(["t", T0, {"message": "now metadata", "log": "the line"}]))
    s.close()
    _, entries = finish(sink, a, 1)
    assert entries[0]["message"] == "the line" and entries[0]["metadata"] == {"record_message": "now metadata"}, entries
    tmp = TempDir("keys_bad")
    bad = Agent(tmp, sink.target, "--forward-message-keys", "log,,msg")
    p = subprocess.run(bad.cmd(), env=bad.env, capture_output=True, text=True, timeout=30)
    assert p.returncode == 2 and "forward-message-keys 'log,,msg'" in p.stderr, (p.returncode, p.stderr)


def test_chunk_ack_after_records_are_in():
    sink, a = start("ack")
    s = connect(a.socket)
    for mode, msg in [
            ("message", ["t", T0, {"message": "acked message"}, {"chunk": "c-message"}]),
            ("forward", ["t", [[T0, {"message": "fw %d" % i}] for i in range(100)], {"chunk": "c-forward"}]),
            ("gzip", ["t", gzip.compress(b"".join(msgpack.packb([T0, {"message": "gz %d" % i}]) for i in range(50))),
                      {"chunk": "c-gzip", "compressed": "gzip", "size": 50}])]:
        before = a.stats()["records"]["received"]
        s.sendall(msgpack.packb(msg, use_bin_type=True))
        ack = recv_ack(s)
        assert ack == {"ack": "c-" + mode}, ack
        got = a.stats()["records"]["received"] - before
        want = {"message": 1, "forward": 100, "gzip": 50}[mode]
        assert got == want, (mode, got, want)
    s.close()
    st, _ = finish(sink, a, 151)
    assert st["forward"]["acks"] == 3 and st["forward"]["acks_failed"] == 0, st["forward"]


def test_forward_messages_under_backpressure():
    """200 Forward messages of 100 events, each with a chunk, into a 256 KiB buffer while the log service is down:
    the ring fills in the middle of a message. An ack that arrives then comes only after every event of its message
    (and of those before) is in the agent; once the service is up every ack arrives, in order, and every event
    arrives exactly once."""
    tmp = TempDir("fwd_backpressure")
    target, port = dead_target(tmp)
    sink = Sink(tmp, port=port)
    a = Agent(tmp, target, "--flush-interval-ms", "20", "--buffer-bytes", "256KiB", "--max-record-bytes", "16KiB",
              "--batch-max-bytes", "64KiB").start()
    m, n = 200, 100
    s = connect(a.socket)
    data = b"".join(msgpack.packb(["bulk", [[T0, {"message": "bulk %03d %03d" % (k, i), "pad": "x" * 40}]
                                            for i in range(n)], {"chunk": "c%03d" % k}]) for k in range(m))
    sender = threading.Thread(target=s.sendall, args=(data,))
    sender.start()
    wait_for(lambda: a.stats()["backpressure_active"], 30, "the ring full")
    up = msgpack.Unpacker(raw=False)
    s.setblocking(False)
    try:
        up.feed(s.recv(1 << 16))
    except BlockingIOError:
        pass
    early = [x["ack"] for x in up]
    # Read after the acks: the agent may take more records between the two reads (the flusher keeps moving the
    # ring into batches until the batch budget is full), and `received` only grows, so acked => counted here.
    received = a.stats()["records"]["received"]
    assert received < m * n, received
    assert early == ["c%03d" % k for k in range(len(early))], early
    assert len(early) * n <= received, (len(early), received)  # acked => in the agent
    sink.start()
    s.settimeout(60)
    acks = list(early)
    while len(acks) < m:
        chunk = s.recv(1 << 16)
        assert chunk, "connection closed after %d acks" % len(acks)
        up.feed(chunk)
        acks += [x["ack"] for x in up]
    assert acks == ["c%03d" % k for k in range(m)], acks[:5]
    sender.join()
    s.close()
    st, entries = finish(sink, a, m * n)
    assert sorted(e["message"] for e in entries) == ["bulk %03d %03d" % (k, i) for k in range(m) for i in range(n)]
    assert st["backpressure_pauses"] >= 1 and st["forward"]["acks"] == m, st["forward"]


def test_forward_listen_tcp():
    """--forward-listen 127.0.0.1:0: fluent-logger over TCP, acks there too, source pid 0 / comm "forward"; a bad
    address and the combination with --allow-uids are refused at start."""
    from fluent import sender
    sink, a = start("tcp", "--forward-listen", "127.0.0.1:0")
    m = wait_for(lambda: re.search(r'"forward listening" address=127\.0\.0\.1:(\d+)', a.logtext()), 20,
                 "forward listening logged")
    port = int(m.group(1))
    s = sender.FluentSender("app", host="127.0.0.1", port=port)
    for i in range(20):
        assert s.emit("tcp", {"message": "tcp %d" % i}), s.last_error
    s.close()
    c = socket.create_connection(("127.0.0.1", port), timeout=30)
    c.sendall(msgpack.packb(["t", [[T0, {"message": "acked over tcp"}]], {"chunk": "tcp-1"}]))
    assert recv_ack(c) == {"ack": "tcp-1"}
    c.close()
    _, entries = finish(sink, a, 21)
    msgs = sorted(e["message"] for e in entries)
    assert msgs == sorted(["tcp %d" % i for i in range(20)] + ["acked over tcp"]), msgs
    e = [e for e in entries if e["message"] == "tcp 0"][0]
    assert e["service_name"] == "app.tcp" and e["source"]["pid"] == 0 and e["source"]["comm"] == "forward", e
    for args, want in ((("--forward-listen", "not-an-address"), "bad --forward-listen"),
                       (("--forward-listen", "127.0.0.1:0", "--allow-uids", "root"), "allow-uids/allow-gids cannot")):
        tmp = TempDir("tcp_bad")
        bad = Agent(tmp, sink.target, *args)
        p = subprocess.run(bad.cmd(), env=bad.env, capture_output=True, text=True, timeout=30)
        assert p.returncode != 0 and want in p.stderr + p.stdout, (args, p.returncode, p.stderr)


def test_shutdown_mid_forward_message_counts_every_event():
    """SIGTERM while the ring is full in the middle of a Forward message, the log service down: every event of every
    message the agent read is counted (received = unsent, a whole number of 100-event messages), none twice."""
    tmp = TempDir("fwd_shutdown")
    target, _ = dead_target(tmp)
    a = Agent(tmp, target, "--flush-interval-ms", "20", "--buffer-bytes", "256KiB", "--max-record-bytes", "16KiB",
              "--batch-max-bytes", "64KiB", "--drain-timeout-ms", "500").start()
    s = connect(a.socket)
    data = b"".join(msgpack.packb(["bulk", [[T0, {"message": "m %03d %03d" % (k, i), "pad": "x" * 40}]
                                            for i in range(100)]]) for k in range(60))

    def send():
        try:
            s.sendall(data)
        except OSError:  # the agent stopped reading and closed the connection
            pass
    sender = threading.Thread(target=send)
    sender.start()
    wait_for(lambda: a.stats()["backpressure_active"], 30, "the ring full")
    paused_at = a.stats()["records"]["received"]
    assert a.stop() == 0
    sender.join()
    s.close()
    line = [l for l in a.logtext().splitlines() if '"stopped"' in l][-1]
    got = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", line)}
    assert got["flushed"] == 0 and got["received"] == got["unsent"], line
    assert got["received"] >= paused_at and got["received"] % 100 == 0, (paused_at, line)
    assert got["rejected_invalid_record"] == 0, line


def test_shutdown_classifies_unread_events_as_admission_does():
    """SIGTERM while the ring is full and a Forward message sits unread on a second connection: at shutdown its events
    are classified by admission (admit_unqueued), so one too large once converted is rejected as oversized — not
    counted unsent as a good one is. (Before, the shutdown count called every event of a message a good one.)"""
    tmp = TempDir("fwd_shutdown_classify")
    target, _ = dead_target(tmp)
    a = Agent(tmp, target, "--flush-interval-ms", "20", "--buffer-bytes", "256KiB", "--batch-max-bytes", "1KiB",
              "--drain-timeout-ms", "300").start()
    filler = connect(a.socket)
    data = b"".join(msgpack.packb(["bulk", [[T0, {"message": "m %03d %03d" % (k, i), "pad": "x" * 40}]
                                            for i in range(100)]]) for k in range(60))

    def send():
        try:
            filler.sendall(data)
        except OSError:  # the agent stopped reading and closed the connection
            pass
    sender = threading.Thread(target=send)
    sender.start()
    wait_for(lambda: a.stats()["backpressure_active"], 30, "the ring full")
    # 600 one-byte ints (~0.6 KiB of msgpack) become "[1,1,…]" (1.2 KiB of text): past --batch-max-bytes 1KiB - 256
    events = []
    for i in range(10):
        events.append([T0, {"message": "good %d" % i}])
        events.append([T0, {"message": "big %d" % i, "list": [1] * 600}])
    late = connect(a.socket)
    late.sendall(msgpack.packb(["late", b"".join(msgpack.packb(e) for e in events)], use_bin_type=True))
    assert a.stop() == 0
    sender.join()
    filler.close()
    late.close()
    line = [l for l in a.logtext().splitlines() if '"stopped"' in l][-1]
    got = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", line)}
    assert got["flushed"] == 0 and got["received"] == got["unsent"], line
    assert got["rejected_oversized"] == 10 and got["rejected_invalid_record"] == 0, line


def bad_case(name, payload, counter):
    """Sends a good Forward message, the bad payload, another good one on ONE connection; the bad one is counted
    once under `counter` and both good ones arrive (the connection went on)."""
    sink, a = start("bad_" + name)
    s = connect(a.socket)
    s.sendall(msgpack.packb(["t", T0, {"message": "before"}]) + payload +
              msgpack.packb(["t", T0, {"message": "after"}, {"chunk": "after"}]))
    assert recv_ack(s) == {"ack": "after"}  # the connection is still open and served
    s.close()
    st, entries = finish(sink, a, 2)
    assert sorted(e["message"] for e in entries) == ["after", "before"]
    rejected = st["records"]["rejected"]
    assert rejected[counter] == 1 and sum(rejected.values()) == 1, (name, rejected)
    return st


def test_bad_tag_not_a_string():
    bad_case("tag", msgpack.packb([42, T0, {"message": "x"}]), "invalid_record")


def test_bad_array_too_short_or_long():
    bad_case("short", msgpack.packb(["t"]), "invalid_record")
    bad_case("long", msgpack.packb(["t", T0, {"message": "x"}, {}, "extra"]), "invalid_record")


def test_bad_second_element():
    bad_case("second", msgpack.packb(["t", {"message": "x"}]), "invalid_record")


def test_bad_option_not_a_map():
    bad_case("option", msgpack.packb(["t", T0, {"message": "x"}, "opt"]), "invalid_record")


def test_bad_message_mode_record_not_a_map():
    bad_case("record", msgpack.packb(["t", T0, "just text"]), "invalid_record")


def test_bad_event_times_keep_their_events():
    """A time that is a number or ext but not a valid time (a short EventTime, nanoseconds >= 10^9, before 1970,
    NaN, past 2262) does not lose the event: it arrives with the receive time and the time as sent in metadata
    `timestamp`, like a native record's bad timestamp (docs/protocol.md); nothing is counted rejected, each is counted
    records.timestamp_unparsed."""
    sink, a = start("bad_times")
    rows = [(msgpack.ExtType(0, b"\x00\x01"), "AAE="), (event_time(T0, 10**9), "ZtGfVTuaygA="), (-5, "-5"),
            (-1.5, "-1.5"), (float("nan"), "NaN"), (2**64 - 1, "18446744073709551615")]
    lo = time.time_ns()
    s = connect(a.socket)
    s.sendall(msgpack.packb(["t", [[t, {"message": "bad %d" % i}] for i, (t, _) in enumerate(rows)],
                             {"chunk": "c"}]))
    assert recv_ack(s) == {"ack": "c"}
    s.close()
    st, entries = finish(sink, a, len(rows))
    hi = time.time_ns()
    by_msg = {e["message"]: e for e in entries}
    for i, (_, kept) in enumerate(rows):
        e = by_msg["bad %d" % i]
        assert e["metadata"] == {"timestamp": kept}, e
        assert lo <= e["timestamp_unix_nano"] <= hi, e
    assert sum(st["records"]["rejected"].values()) == 0, st["records"]
    assert st["records"]["timestamp_unparsed"] == len(rows), st["records"]
    assert st["forward"]["events"] == len(rows), st["forward"]


def test_bad_forward_entry_skipped_rest_kept():
    sink, a = start("bad_entry")
    s = connect(a.socket)
    s.sendall(msgpack.packb(["t", [[T0, {"message": "e0"}], "not an entry", [T0, "no map"], [T0, {"message": "e3"}]],
                             {"chunk": "x"}]))
    assert recv_ack(s) == {"ack": "x"}
    s.close()
    st, entries = finish(sink, a, 2)
    assert sorted(e["message"] for e in entries) == ["e0", "e3"]
    assert st["records"]["rejected"]["invalid_record"] == 2


def test_bad_packed_bytes_not_msgpack():
    """Good entries, then bytes that are not msgpack: the good ones are kept, the rest counted once."""
    sink, a = start("bad_packed")
    s = connect(a.socket)
    s.sendall(msgpack.packb(["t", msgpack.packb([T0, {"message": "p0"}]) + b"\xc1\xc1garbage"]) +
              msgpack.packb(["t", T0, {"message": "after"}, {"chunk": "a"}]))
    assert recv_ack(s) == {"ack": "a"}
    s.close()
    st, entries = finish(sink, a, 2)
    assert sorted(e["message"] for e in entries) == ["after", "p0"]
    assert st["records"]["rejected"]["invalid_record"] == 1


def test_bad_gzip_member():
    bad_case("gzip", msgpack.packb(["t", b"\x1f\x8b\x08\x00garbage-not-deflate", {"compressed": "gzip"}]),
             "invalid_record")
    good = gzip.compress(msgpack.packb([T0, {"message": "x"}]))
    bad_case("gzip_cut", msgpack.packb(["t", good[:-6], {"compressed": "gzip"}]), "invalid_record")


def test_bad_unknown_compression():
    bad_case("compressed", msgpack.packb(["t", b"", {"compressed": "zstd"}]), "invalid_record")


def test_gzip_bomb_refused_as_oversized():
    """64 MiB of zeros compress to ~64 KiB: past --forward-max-message-bytes (16 MiB) the message is refused,
    oversized."""
    bomb = gzip.compress(b"\x00" * (64 << 20), compresslevel=9)
    bad_case("bomb", msgpack.packb(["t", bomb, {"compressed": "gzip"}]), "oversized")


def big_events(name, n, pad):
    return [[event_time(T0 + i // 1000, i), {"message": "%s %05d" % (name, i), "pad": pad}] for i in range(n)]


def test_3mib_chunks_with_defaults():
    """A 3 MiB PackedForward message (Fluent Bit's forward output, ~2 MiB chunks) and a 3 MiB Forward-mode message
    (fluent-logger), each acked, with the defaults: every event arrives once (no `oversized`)."""
    sink, a = start("chunks_3mib")
    pad = "p" * 480
    n = (3 << 20) // 512 + 100  # ~512 bytes per event: just over 3 MiB each
    packed = b"".join(msgpack.packb(e) for e in big_events("packed", n, pad))
    assert len(packed) > 3 << 20, len(packed)
    forward = msgpack.packb(["fw", big_events("forward", n, pad), {"chunk": "fw-3mib"}])
    assert len(forward) > 3 << 20, len(forward)
    s = connect(a.socket)
    s.sendall(msgpack.packb(["pk", packed, {"chunk": "pk-3mib", "size": n}], use_bin_type=True))
    assert recv_ack(s) == {"ack": "pk-3mib"}
    s.sendall(forward)
    assert recv_ack(s) == {"ack": "fw-3mib"}
    s.close()
    st, entries = finish(sink, a, 2 * n)
    msgs = sorted(e["message"] for e in entries)
    assert msgs == sorted(["packed %05d" % i for i in range(n)] + ["forward %05d" % i for i in range(n)]), len(msgs)
    assert sum(st["records"]["rejected"].values()) == 0, st["records"]["rejected"]
    assert st["forward"]["messages"] == 2 and st["forward"]["events"] == 2 * n, st["forward"]


def send_ignoring_close(s, data):
    try:
        s.sendall(data)
    except OSError:  # the agent closed the connection while we were sending
        pass


def wait_closed(s):
    """Reads until the agent closes s (EOF or reset); returns what it sent before."""
    got = b""
    while True:
        try:
            data = s.recv(4096)
        except ConnectionResetError:
            return got
        if not data:
            return got
        got += data


def test_message_over_limit_closes_only_its_connection():
    """--forward-max-message-bytes 2MiB: a 3 MiB PackedForward message is refused from its header (oversized,
    connection closed, the message before it kept), while another connection is served; a Forward-mode message of
    2 MiB of tiny events passes the bytes but not the item budget (max(1 MiB, 2 MiB / 16) = 1 Mi items)."""
    sink, a = start("over_limit", "--forward-max-message-bytes", "2MiB")
    other = connect(a.socket)
    other.sendall(msgpack.packb(["t", T0, {"message": "other before"}, {"chunk": "o1"}]))
    assert recv_ack(other) == {"ack": "o1"}
    s = connect(a.socket)
    too_big = b"".join(msgpack.packb(e) for e in big_events("big", (3 << 20) // 512, "p" * 480))
    sender = threading.Thread(target=send_ignoring_close, args=(s, msgpack.packb(["t", T0, {"message": "kept"}]) +
                                                                    msgpack.packb(["t", too_big])))
    sender.start()
    wait_closed(s)
    sender.join()
    s.close()
    other.sendall(msgpack.packb(["t", T0, {"message": "other after"}, {"chunk": "o2"}]))
    assert recv_ack(other) == {"ack": "o2"}
    # Forward mode, ~1.3 MiB but 1.25 Mi items ([1, {"a": 1}]: 5 items in 6 bytes each): refused by its item budget
    s = connect(a.socket)
    tiny = msgpack.packb(["t", [[1, {"a": 1}] for _ in range(250000)]])
    assert len(tiny) < 2 << 20, len(tiny)
    sender = threading.Thread(target=send_ignoring_close, args=(s, tiny))
    sender.start()
    wait_closed(s)
    sender.join()
    s.close()
    other.close()
    st, entries = finish(sink, a, 3)
    assert sorted(e["message"] for e in entries) == ["kept", "other after", "other before"], entries
    assert st["records"]["rejected"]["oversized"] == 2 and sum(st["records"]["rejected"].values()) == 2, st["records"]
    assert "Forward message over forward_max_message_bytes (or its item budget), connection closed" in a.logtext()


def test_forward_max_message_bytes_bounds():
    """The option's bounds at start: at most buffer-bytes/4 and at least max-record-bytes (exit 2, naming both);
    when not set it follows a small buffer (8 MiB -> 2 MiB) and a large max-record-bytes."""
    tmp = TempDir("fwd_max_bounds")
    for args, want in ((("--forward-max-message-bytes", "32MiB"), "must be at most 1/4 of buffer-bytes"),
                       (("--forward-max-message-bytes", "512KiB"), "must be at least max-record-bytes")):
        bad = Agent(tmp, "127.0.0.1:1", *args)
        p = subprocess.run(bad.cmd(), env=bad.env, capture_output=True, text=True, timeout=30)
        assert p.returncode == 2 and "forward-max-message-bytes" in p.stderr and want in p.stderr, (args, p.stderr)
    for args, want in ((("--buffer-bytes", "8MiB"), "2MiB"), (("--max-record-bytes", "4MiB"), "16MiB"),
                       (("--buffer-bytes", "1GiB", "--max-record-bytes", "32MiB"), "32MiB"),
                       (("--forward-max-message-bytes", "64MiB", "--buffer-bytes", "256MiB"), "64MiB")):
        a = Agent(tmp, "127.0.0.1:1", "--check-config", *args)
        p = subprocess.run(a.cmd(), env=a.env, capture_output=True, text=True, timeout=30)
        m = re.search(r"^forward-max-message-bytes = (\S+)", p.stdout, re.M)
        assert p.returncode == 0 and m and m.group(1) == want, (args, p.returncode, p.stdout[-2000:], p.stderr)


def test_one_event_over_max_record_bytes_skipped_alone():
    """With the defaults, one 2 MiB event inside a Forward-mode message and one inside a PackedForward message: each
    is counted oversized and skipped, the events around it arrive, the chunk is still acked."""
    sink, a = start("big_event")
    huge = "h" * (2 << 20)
    events = lambda m: [[T0, {"message": "%s %d" % (m, i)}] for i in range(3)]
    fw = events("fw")
    fw.insert(1, [T0, {"message": "huge fw", "pad": huge}])
    pk = events("pk")
    pk.insert(2, [T0, {"message": "huge pk", "pad": huge}])
    s = connect(a.socket)
    s.sendall(msgpack.packb(["t", fw, {"chunk": "fw"}]))
    assert recv_ack(s) == {"ack": "fw"}
    s.sendall(msgpack.packb(["t", b"".join(msgpack.packb(e) for e in pk), {"chunk": "pk"}], use_bin_type=True))
    assert recv_ack(s) == {"ack": "pk"}
    s.close()
    st, entries = finish(sink, a, 6)
    assert sorted(e["message"] for e in entries) == ["fw 0", "fw 1", "fw 2", "pk 0", "pk 1", "pk 2"], entries
    rejected = st["records"]["rejected"]
    assert rejected["oversized"] == 2 and sum(rejected.values()) == 2, rejected
    assert st["forward"]["events"] == 6, st["forward"]
    assert "Forward event over max_record_bytes skipped" in a.logtext()


def held(st):
    """Records of this run the agent holds on disk (waiting in the spool, or in a call being tried from it)."""
    return st["records"]["spooled"] + st["records"]["in_flight"]


def test_disk_mode_ack_waits_for_the_spool():
    """--buffer disk with the log service down: the ack of a message comes only once its events are in the spool
    (never while /stats still shows them in memory), also for a client that has closed its writing side and waits;
    then SIGKILL, restart on the same spool with the service up: every acked event is delivered."""
    tmp = TempDir("ack_disk")
    target, port = dead_target(tmp)
    spool = tmp.file("spool")
    args = ("--buffer", "disk", "--spool-dir", spool, "--retry-initial-ms", "20", "--retry-max-ms", "200")
    a = Agent(tmp, target, "--flush-interval-ms", "1500", *args).start()
    s = connect(a.socket)
    s.sendall(msgpack.packb(["t", [[T0, {"message": "disk %d" % i}] for i in range(100)], {"chunk": "c-disk"}]))
    wait_for(lambda: a.stats()["records"]["received"] == 100, 30, "100 records received")
    s.setblocking(False)
    try:
        early = s.recv(4096)
    except BlockingIOError:
        early = None
    st = a.stats()
    # an ack seen before a sample that still shows the records in memory would be an ack before the spool
    assert not (early and held(st) < 100), (early, st["records"])
    s.settimeout(30)
    t = connect(a.socket)  # a client that stops writing and waits for its ack: the agent keeps it open for it
    t.sendall(msgpack.packb(["t", T0, {"message": "eof client"}, {"chunk": "c-eof"}]))
    t.shutdown(socket.SHUT_WR)
    ack = early and msgpack.unpackb(early, raw=False) or recv_ack(s)
    assert ack == {"ack": "c-disk"}, ack
    st = a.stats()
    assert held(st) >= 100 and st["records"]["in_ring"] + st["records"]["batching"] <= 1, st["records"]
    assert st["spool"]["segments"] >= 1, st["spool"]
    assert recv_ack(t) == {"ack": "c-eof"}
    st = a.stats()
    assert held(st) == 101 and st["records"]["flushed"] == 0, st["records"]
    assert st["forward"]["acks"] == 2 and st["forward"]["acks_failed"] == 0, st["forward"]
    assert t.recv(4096) == b""  # acked: the agent closes the half-closed connection
    a.kill()
    s.close()
    t.close()
    sink = Sink(tmp, port=port).start()
    b = Agent(tmp, target, *args, name="b").start()
    st = b.wait_flushed(101)
    assert st["records"]["replayed"] == 101 and accounting_holds(st), st["records"]
    sink.wait_count(101)
    got = sorted(e["message"] for e in sink.entries())
    assert got == sorted(["disk %d" % i for i in range(100)] + ["eof client"]), got[:5]
    assert b.stop() == 0


def test_memory_mode_ack_does_not_wait_for_the_upstream():
    """--buffer memory (the default), log service down: the ack comes once the events are in the ring, as before."""
    tmp = TempDir("ack_memory")
    target, _ = dead_target(tmp)
    a = Agent(tmp, target, "--flush-interval-ms", "1500", "--drain-timeout-ms", "200").start()
    s = connect(a.socket)
    s.sendall(msgpack.packb(["t", [[T0, {"message": "mem %d" % i}] for i in range(10)], {"chunk": "c-mem"}]))
    assert recv_ack(s) == {"ack": "c-mem"}
    st = a.stats()
    assert st["records"]["received"] == 10 and st["records"]["flushed"] == 0, st["records"]
    assert st["forward"]["acks"] == 1, st["forward"]
    s.close()
    assert a.stop() == 0


if __name__ == "__main__":
    run([test_fluent_logger_sync_and_async, test_every_mode_and_time_form, test_message_keys_mapping,
         test_forward_message_keys_option,
         test_chunk_ack_after_records_are_in, test_forward_listen_tcp, test_forward_messages_under_backpressure,
         test_shutdown_mid_forward_message_counts_every_event, test_shutdown_classifies_unread_events_as_admission_does,
         test_bad_tag_not_a_string,
         test_bad_array_too_short_or_long, test_bad_second_element, test_bad_option_not_a_map,
         test_bad_message_mode_record_not_a_map, test_bad_event_times_keep_their_events,
         test_bad_forward_entry_skipped_rest_kept,
         test_bad_packed_bytes_not_msgpack, test_bad_gzip_member, test_bad_unknown_compression,
         test_gzip_bomb_refused_as_oversized, test_3mib_chunks_with_defaults,
         test_message_over_limit_closes_only_its_connection, test_one_event_over_max_record_bytes_skipped_alone,
         test_forward_max_message_bytes_bounds, test_disk_mode_ack_waits_for_the_spool,
         test_memory_mode_ack_does_not_wait_for_the_upstream])
