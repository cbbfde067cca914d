"""test_admission.py — the one admission path (issue #14 item 1, agent/ingest/admit.h): a table of admission cases,
each run through every ingest path — a native msgpack record on the ingest socket, a Fluent Forward event in each mode
(Message, Forward, PackedForward) on the same socket, an HTTP/JSON entry to /api/write_log/ and in a batch to
/api/write_logs/ (a unix: --http-listen, so the sender is this process as on the socket) — expecting the same
counters (/stats records.received, rejected.*, dropped.*, level_unknown, the HTTP "still the caller's" counters, and
the sums of this process's /stats/clients entries) and the same fate (delivered to the sink exactly once, or not).

The cases: a good record; no message; a message that is not a string; not a map; reserved `_` keys; an unknown
level; a record too large once converted (a list that grows as JSON text: --batch-max-bytes 1KiB) and one too large
once encoded (a long message), both also carrying a reserved key and an unknown level (refused: neither is counted);
over --rate-limit; the ring full under --on-full drop-newest and under block (with a log service that is down, then
comes back).

Where docs/protocol.md promises different things to different senders, the table says so in one place (FATE):
- a Fluent Forward event without a string message is not refused: its mapping makes message "" and keeps every key
  (docs/protocol.md, "Mapping: what each event becomes");
- what a socket client wrote is the agent's once read, so over --rate-limit it is dropped (counted received and
  dropped.rate_limited) and a full ring holds it (block); an HTTP caller is answered instead and keeps its record
  (429, or 503 with Retry-After: http.refused_*), neither received nor dropped — and then nothing about its keys is
  counted either.
Every step is waited for without sleeping: a socket client half-closes and waits for the agent to close (it does once
everything it sent is admitted); an HTTP answer comes after admission."""
import http.client
import json
import os
import re
import socket

import msgpack

from harness import (Agent, Sink, TempDir, UnixHTTPConnection, accounting_holds, dead_target, http_get, run, scaled,
                     wait_for)

T0 = 1725013845
PID = os.getpid()
SERVICE = "adm"
PATHS = ["native", "fwd_message", "fwd_forward", "fwd_packed", "http_one", "http_many"]
ONE, MANY = "/api/write_log/", "/api/write_logs/"


def is_http(path):
    return path.startswith("http")


def is_forward(path):
    return path.startswith("fwd")


# ---- sending one step (one or more records) through one path -------------------------------------------------------

def with_service(rec):
    return dict(rec, service_name=SERVICE) if isinstance(rec, dict) else rec


def stream_bytes(path, recs):
    """The bytes a socket client of `path` writes for these records (Forward: the tag is the service)."""
    if path == "native":
        return b"".join(msgpack.packb(with_service(r)) for r in recs)
    if path == "fwd_message":
        return b"".join(msgpack.packb([SERVICE, T0, r]) for r in recs)
    if path == "fwd_forward":
        return msgpack.packb([SERVICE, [[T0, r] for r in recs]])
    packed = b"".join(msgpack.packb([T0, r]) for r in recs)
    return msgpack.packb([SERVICE, packed], use_bin_type=True)


def send_stream(agent, data):
    """Writes data on a new connection, half-closes it and waits until the agent closes it: everything was admitted."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(scaled(30))
    s.connect(agent.socket)
    s.sendall(data)
    s.shutdown(socket.SHUT_WR)
    while s.recv(4096):
        pass
    s.close()


def post(agent, url, body):
    c = UnixHTTPConnection(agent.http_path, timeout=scaled(30))
    try:
        c.request("POST", url, body=json.dumps(body).encode())
        r = c.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, json.loads(r.read())
    finally:
        c.close()


def send(agent, path, recs):
    """Sends one step; returns the HTTP answers as [(status, headers, doc)] (none for a socket)."""
    if not is_http(path):
        send_stream(agent, stream_bytes(path, recs))
        return []
    if path == "http_one":
        return [post(agent, ONE, with_service(r)) for r in recs]
    return [post(agent, MANY, [with_service(r) for r in recs])]


# ---- what moved ----------------------------------------------------------------------------------------------------

def snapshot(agent):
    st = agent.stats()
    r = st["records"]
    out = {"received": r["received"], "level_unknown": r["level_unknown"], "timestamp_unparsed": r["timestamp_unparsed"],
           "http.refused_full": st["http"]["refused_full"],
           "http.refused_rate_limited": st["http"]["refused_rate_limited"]}
    for k, v in r["rejected"].items():
        out["rejected." + k] = v
    for k in ("buffer_full", "rate_limited", "shutdown", "out_of_memory"):
        out["dropped." + k] = r["dropped"].get(k, 0)
    _, body = http_get(agent.stats_socket, "/stats/clients?top=1000")
    mine = [c for c in json.loads(body)["clients"] if c["pid"] == PID and c["service_name"] != "filler"]
    for f in ("records", "rejected", "dropped"):
        out["client." + f] = sum(c[f] for c in mine)
    return out


def delta(before, after, ignore=()):
    return {k: after[k] - before[k] for k in after if after[k] != before[k] and k not in ignore}


def delivered(sink, case_id):
    return [e for e in sink.entries() if e.get("metadata", {}).get("case") == case_id]


# ---- the table -----------------------------------------------------------------------------------------------------

TAKEN = {"received": 1, "client.records": 1}
INVALID = {"rejected.invalid_record": 1, "client.rejected": 1}
OVERSIZED = {"rejected.oversized": 1, "client.rejected": 1}
MARKED = {"_pid": 1, "_comm": "init", "level": "LOUD"}  # two reserved keys and an unknown level
MARKS = {"rejected.reserved_key": 2, "client.rejected": 2, "level_unknown": 1}  # ... counted when it is taken


def plus(*ds):
    out = {}
    for d in ds:
        for k, v in d.items():
            out[k] = out.get(k, 0) + v
    return out


# name, records of the step (the last one is the case), expected counters, delivered (0/1) — for every path, except
# where FATE says otherwise
CASES = [
    ("good", [{"message": "good"}], TAKEN, 1),
    ("no_message", [{"level": "INFO"}], INVALID, 0),
    ("message_not_string", [{"message": 42}], INVALID, 0),
    ("not_a_map", ["just text"], INVALID, 0),
    ("reserved_key", [{"message": "reserved", "_pid": 1, "_comm": "init"}],
     plus(TAKEN, {"rejected.reserved_key": 2, "client.rejected": 2}), 1),
    ("level_unknown", [{"message": "loud", "level": "LOUD"}], plus(TAKEN, {"level_unknown": 1}), 1),
    ("timestamp_unparsed", [{"message": "when", "timestamp": "yesterday at noon"}],
     plus(TAKEN, {"timestamp_unparsed": 1}), 1),
    # 600 one-byte ints (~0.6 KiB of msgpack) become "[1,1,…]" (1.2 KiB of text): past --batch-max-bytes 1KiB - 256
    ("too_large_converted", [dict(MARKED, message="converted", n=[1] * 600)], OVERSIZED, 0),
    # a plain string is not converted: the encoded entry alone is past the limit
    ("too_large_encoded", [dict(MARKED, message="e" * 900)], OVERSIZED, 0),
]

# Forward's mapping keeps an event without a string message (message "", every key in metadata)
FATE = {("fwd", "no_message"): (TAKEN, 1), ("fwd", "message_not_string"): (TAKEN, 1),
        ("fwd", "timestamp_unparsed"): (TAKEN, 1)}  # (and a record's timestamp key is kept as record_timestamp)

HTTP_STATUS = {"good": 200, "no_message": 400, "message_not_string": 400, "not_a_map": 400, "reserved_key": 200,
               "level_unknown": 200, "timestamp_unparsed": 200, "too_large_converted": 413, "too_large_encoded": 413}


def tag(rec, case_id):
    return dict(rec, case=case_id) if isinstance(rec, dict) else rec


def agent(tmp, name, target, *args):
    """An agent of this test: HTTP on a unix: socket in tmp (the sender is this process, as on the ingest socket)."""
    http_path = tmp.file(name + "-http.sock")
    a = Agent(tmp, target, "--http-listen", "unix:" + http_path, *args, name=name)
    a.http_path = http_path
    return a


def agents_per_path(tmp, target, *args):
    """One agent per path (for cases that use up the sender's rate or need a service that comes back), started at
    once: {path: started agent}."""
    import threading
    got = {p: agent(tmp, p, target, *args) for p in PATHS}
    errors = []

    def start(a):
        try:
            a.start()
        except Exception as e:  # noqa: BLE001 — reported below
            errors.append(e)
    threads = [threading.Thread(target=start, args=(a,)) for a in got.values()]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return got


def check(problems, what, got, want):
    if got != want:
        problems.append("%s: got %s, expected %s" % (what, got, want))


def test_cases_on_every_path():
    """Every case of CASES through every path on one agent (--batch-max-bytes 1KiB for the size cases)."""
    tmp = TempDir("adm-cases")
    sink = Sink(tmp).start()
    a = agent(tmp, "agent", sink.target, "--batch-max-bytes", "1KiB", "--flush-interval-ms", "20").start()
    problems, want_delivered = [], {}
    for path in PATHS:
        for name, recs, want, fate in CASES:
            case_id = "%s:%s" % (path, name)
            want, fate = FATE.get(("fwd" if is_forward(path) else path, name), (want, fate))
            before = snapshot(a)
            answers = send(a, path, [tag(r, case_id) for r in recs])
            check(problems, case_id, delta(before, snapshot(a)), want)
            if answers:
                check(problems, case_id + " status", answers[0][0], HTTP_STATUS[name])
            want_delivered[case_id] = fate
    total = snapshot(a)["received"]
    sink.wait_count(total)
    a.wait_flushed(total)
    for case_id, n in want_delivered.items():
        got = delivered(sink, case_id)
        check(problems, case_id + " delivered", len(got), n)
        if got and "reserved" in case_id:
            check(problems, case_id + " reserved keys removed", {"_pid", "_comm"} & set(got[0]["metadata"]), set())
    assert not problems, "\n".join(problems)
    assert accounting_holds(a.stats())
    assert a.stop() == 0


def test_over_rate_limit():
    """--rate-limit 1:1: the first record takes the sender's only token, the second (with reserved keys and an unknown
    level) is over the rate: a socket client's is dropped, an HTTP caller's answered 429 and left with it."""
    problems = []
    tmp = TempDir("adm-rate")
    sink = Sink(tmp).start()
    agents = agents_per_path(tmp, sink.target, "--rate-limit", "1:1", "--flush-interval-ms", "20")
    for path, a in agents.items():
        first, over = "%s:rate_first" % path, "%s:over_rate" % path
        before = snapshot(a)
        answers = send(a, path, [{"message": "first", "case": first}, dict(MARKED, message="over", case=over)])
        if is_http(path):
            want = plus(TAKEN, {"http.refused_rate_limited": 1})
            statuses = [x[0] for x in answers]
            check(problems, path + " statuses", statuses, [200, 429] if path == "http_one" else [200])
            if path == "http_one":
                check(problems, path + " Retry-After", answers[1][1].get("retry-after"), "1")
        else:
            want = plus(TAKEN, MARKS, {"received": 1, "dropped.rate_limited": 1, "client.dropped": 1})
        check(problems, path, delta(before, snapshot(a)), want)
        a.wait_flushed(1)
        assert a.stop() == 0
    for path in PATHS:
        first, over = "%s:rate_first" % path, "%s:over_rate" % path
        check(problems, path + " delivered", (len(delivered(sink, first)), len(delivered(sink, over))), (1, 0))
    assert not problems, "\n".join(problems)


# ---- a full ring ---------------------------------------------------------------------------------------------------

FILLER = 100  # records per filler chunk: a few KiB, written whole even while the agent does not read


def fillers(n):
    return [{"message": "f", "service_name": "filler"}] * n


def flusher_at_budget(st):
    """With the log service down the flusher holds at most batch_budget_bytes outside the ring; once it is within
    2 KiB of that, the ring can gain at most that much room again (nothing expires or is shed under these policies)."""
    b = st["buffer"]
    return b["batch_budget_bytes"] - b["batch_bytes"] < 2048


def fill(a, http, until):
    """Writes filler chunks (on the socket, or in HTTP batches) until until(stats) holds after one. A socket chunk
    is read when the agent has taken its connection (connections.total) and none is open, or reading paused."""
    total = a.stats()["connections"]["total"]
    for i in range(2000):
        if http:
            post(a, MANY, fillers(FILLER))
        else:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(a.socket)
            s.sendall(b"".join(msgpack.packb(r) for r in fillers(FILLER)))
            s.close()  # not waited for: under block the agent stops reading

        def read(st, want=total + i + 1):
            c = st["connections"]
            return st if http or st["backpressure_active"] or (c["total"] >= want and c["active"] == 0) else None
        st = wait_for(lambda: read(a.stats()), 30, "filler chunk read")
        if until(st):
            return st
    raise AssertionError("the buffer never filled")


# The case for a full ring: larger (6 KiB) than the room the flusher may still make, so it cannot fit
BIG = dict(MARKED, message="full " + "x" * 6000)
FULL_ARGS = ("--buffer-bytes", "128KiB", "--flush-interval-ms", "60000", "--retry-max-ms", "200")


def test_full_drop_newest():
    """The ring full (log service down) under --on-full drop-newest: the record is received and dropped on every path
    — the policy said to shed it, so HTTP answers 503 without Retry-After — and its marks are counted as it was
    taken; it is never delivered."""
    tmp = TempDir("adm-dropnew")
    target, port = dead_target(tmp)
    a = agent(tmp, "agent", target, "--on-full", "drop-newest", *FULL_ARGS).start()
    fill(a, False, flusher_at_budget)
    dropped = snapshot(a)["dropped.buffer_full"]
    fill(a, False, lambda st: st["records"]["dropped"]["buffer_full"] > dropped)
    problems = []
    want = plus(MARKS, {"received": 1, "dropped.buffer_full": 1, "client.dropped": 1})
    for path in PATHS:
        case_id = "%s:full_drop_newest" % path
        before = snapshot(a)
        answers = send(a, path, [dict(BIG, case=case_id)])
        check(problems, case_id, delta(before, snapshot(a)), want)
        if answers:
            check(problems, case_id + " status", answers[0][0], 503)
            check(problems, case_id + " Retry-After", answers[0][1].get("retry-after"), None)
    st = a.stats()
    assert accounting_holds(st), st
    sink = Sink(tmp, port=port).start()  # the service is back: what was taken arrives, the dropped ones never
    assert a.stop() == 0
    for path in PATHS:
        check(problems, path + " delivered", len(delivered(sink, "%s:full_drop_newest" % path)), 0)
    r = st["records"]
    check(problems, "the others delivered", sink.count(), r["received"] - r["dropped"]["buffer_full"])
    assert not problems, "\n".join(problems)


def test_full_block():
    """The ring full (log service down) under --on-full block: a socket client's record waits (reading pauses; nothing
    counted against it), an HTTP caller gets 503 with Retry-After and keeps it; once the service is back the socket's
    arrives and the caller's is sent again: either way it is delivered exactly once and counted once."""
    problems, before = [], {}
    tmp = TempDir("adm-block")
    target, port = dead_target(tmp)
    agents = agents_per_path(tmp, target, *FULL_ARGS)
    rec = {path: dict(BIG, case="%s:full_block" % path) for path in PATHS}
    for path, a in agents.items():  # the service down: each agent's ring full, then the case
        if is_http(path):
            fill(a, True, flusher_at_budget)
            refused = snapshot(a)["http.refused_full"]
            fill(a, True, lambda st: st["http"]["refused_full"] > refused)
            before[path] = snapshot(a)
            answers = send(a, path, [rec[path]])
            check(problems, path + " while full", delta(before[path], snapshot(a)), {"http.refused_full": 1})
            check(problems, path + " status", answers[0][0], 503)
            check(problems, path + " Retry-After", answers[0][1].get("retry-after"), "1")
        else:
            fill(a, False, lambda st: st["backpressure_active"])
            before[path] = snapshot(a)
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(a.socket)
            s.sendall(stream_bytes(path, [rec[path]]))
            s.close()
    sink = Sink(tmp, port=port).start()  # the service is back
    final = plus(MARKS, {"client.records": 1})
    for path, a in agents.items():
        if is_http(path):  # the caller sends it again until it is taken
            wait_for(lambda: send(a, path, [rec[path]])[0][0] == 200, 60, path + ": taken once the service is back")
        else:
            # both the first and the last counter admission moves (the loop serving the connection may be another
            # thread than the one answering /stats: a record's counters are not read at one instant)
            wait_for(lambda: (lambda now: now["rejected.reserved_key"] - before[path]["rejected.reserved_key"] == 2
                              and now["client.records"] - before[path]["client.records"] == 1)(snapshot(a)), 60,
                     path + ": admitted once the service is back")
        check(problems, path, delta(before[path], snapshot(a), ignore=("received", "http.refused_full")), final)
        st = a.stats()
        assert a.stop() == 0  # drains what it holds
        check(problems, path + " nothing dropped", sum(st["records"]["dropped"].values()), 0)
    for path in PATHS:
        check(problems, path + " delivered", len(delivered(sink, rec[path]["case"])), 1)
    assert not problems, "\n".join(problems)


def test_left_at_shutdown():
    """Events the agent read but could not queue before it stopped — the log service down, --on-full block, the ring
    full part-way through PackedForward messages read in one go — are dropped.shutdown and counted as taken, their
    reserved keys and unknown level too (ingest.c's count_unqueued): in the last log line every event received is
    counted once, with its two keys and its level, and unsent; more were received at the stop than before it (the held event and the read ones)."""
    tmp = TempDir("adm-shutdown")
    target, _ = dead_target(tmp)
    a = agent(tmp, "agent", target, *FULL_ARGS, "--drain-timeout-ms", "300").start()
    per, msgs = 400, 10  # 10 messages of ~26 KiB (--forward-max-message-bytes: a quarter of the 128 KiB buffer)
    data = b"".join(stream_bytes("fwd_packed", [dict(MARKED, message="left %d %d" % (m, i)) for i in range(per)])
                    for m in range(msgs))
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(a.socket)
    s.setblocking(False)
    try:
        s.send(data)  # as much as the socket takes: the agent stops reading once its buffer is full
    except BlockingIOError:
        pass
    st = wait_for(lambda: (lambda st: st if st["backpressure_active"] else None)(a.stats()), 30, "the ring full")
    before = st["records"]
    assert before["received"] < per * msgs and before["rejected"]["reserved_key"] == 2 * (before["received"] + 1), \
        before  # the held event's keys are counted when it is held
    assert a.stop() == 0
    s.close()
    last = [l for l in a.logtext().splitlines() if 'msg="stopped"' in l][-1]
    got = {k: int(v) for k, v in re.findall(r" (\w+)=(\d+)", last)}
    assert got["received"] >= before["received"] + 2, (before, last)
    assert got["unsent"] == got["dropped_shutdown"] == got["received"] and got["flushed"] == 0, last
    assert got["rejected_reserved_key"] == 2 * got["received"], last
    assert got["level_unknown"] == got["received"], last  # each event's unknown level too, counted once

if __name__ == "__main__":
    import sys
    tests = [test_cases_on_every_path, test_over_rate_limit, test_full_drop_newest, test_full_block,
             test_left_at_shutdown]
    if len(sys.argv) > 1:
        tests = [t for t in tests if t.__name__ in sys.argv[1:]]
    run(tests)
