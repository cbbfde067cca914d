"""test_otlp.py — `--upstream-protocol otlp` with the real agent and the real sink in `--protocol otlp`: every field
decoded as sent (severity table, trace/span ids as bytes or kept as attributes, resource attributes with
--resource-attr, one resource per producer, source fields, timestamps); exactly once under injected UNAVAILABLE
failures (retries); partial_success counted as upstream_rejected; the disk buffer and its replay after a restart;
a logagent.v1 service answering UNIMPLEMENTED is not switched to unary; --check-config and a bad --resource-attr;
metadata types (int, float, bool, map, array, nil, bin) reaching the OTLP sink typed, while a native upstream receives
the same WriteLogRequest as before (checked on the raw wire by a python3-grpcio service, and in the sink's lines);
and an independent peer (tests/interop/otlp_peer.js: Node.js, @grpc/grpc-js, the protobufjs schema generated from the
official opentelemetry-proto that @opentelemetry/otlp-transformer ships) decoding the agent's export. That last test
installs its packages from tests/interop/package-lock.json (harness.node_peers) and skips (says why, passes) when node,
npm or the registry is missing — except under CI=true, where that fails the test."""
import json
import os
import subprocess
import time

from harness import BIN, Agent, Sink, TempDir, UnixHTTPConnection, accounting_holds, dead_target, node_peers, run, \
    scaled, send_records, spawn, wait_for

HERE = os.path.dirname(os.path.abspath(__file__))
PEER = os.path.join(HERE, "..", "interop", "otlp_peer.js")
# tests/interop/package-lock.json pins @grpc/grpc-js and @opentelemetry/otlp-transformer 0.203.0 (a release that
# still ships build/src/generated/root.js: later ones dropped the generated decoder)

OTLP = ("--upstream-protocol", "otlp")
SEVERITY = {"TRACE": 1, "DEBUG": 5, "INFO": 9, "WARN": 13, "ERROR": 17, "FATAL": 21}
TRACE = "0123456789abcdef0123456789ABCDEF"
SPAN = "89abcdef01234567"


# One record with a metadata value of every msgpack type (bytes pack as msgpack bin), and how each arrives.
TYPED = {"message": "typed", "log_id": "feedface" * 4, "n": 7, "x": 0.85, "ok": True, "nested": {"a": [1, "b"]},
         "s": "text", "none": None, "bin": b"\x00\x01"}
TYPED_NATIVE_TEXT = {"n": "7", "x": "0.85", "ok": "true", "nested": '{"a":[1,"b"]}', "s": "text", "none": "",
                     "bin": "AAE="}
# the OTLP sink prints each attribute as its text (bytes_value in hex, kvlist/array as compact JSON)
TYPED_OTLP_TEXT = dict(TYPED_NATIVE_TEXT, bin="0001")
# the Node.js peer prints each AnyValue with its oneof case
TYPED_OTLP_PEER = {"n": {"int": "7"}, "x": {"double": 0.85}, "ok": {"bool": True},
                   "nested": {"kvlist": {"a": {"array": [{"int": "1"}, "b"]}}}, "s": "text", "none": {"empty": True},
                   "bin": {"bytes": "0001"}}


def settled(a, total):
    def done():
        st = a.stats()
        r = st["records"]
        return st if r["received"] == total and r["flushed"] + sum(r["dropped"].values()) == total else None
    return wait_for(done, 60, "all %d records flushed or dropped" % total)


def test_every_field_decoded_as_sent():
    tmp = TempDir("otlp-fields")
    sink = Sink(tmp, "--protocol", "otlp").start()
    a = Agent(tmp, sink.target, *OTLP, "--resource-attr", "deployment.environment=prod,team=core",
              "--flush-interval-ms", "200").start()
    recs = []
    for i, level in enumerate(["trace", "DEBUG", "Info", "warning", "ERROR", "critical", "NOTICE"]):
        recs.append({"message": "m%d" % i, "service_name": "svc-a" if i % 2 else "svc-b", "level": level,
                     "log_id": "%032x" % (i + 1), "timestamp": 1700000000123456789 + i,
                     "trace_id": TRACE if i % 2 else "not-a-trace", "span_id": SPAN if i % 2 else "abc",
                     "user": "bob", "n": 42})
    before = time.time_ns()
    send_records(a.socket, recs)
    sink.wait_count(len(recs))
    after = time.time_ns()
    got = {e["log_id"]: e for e in sink.entries()}
    assert len(got) == len(recs), got
    levels = ["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL", "NOTICE"]
    for i, r in enumerate(recs):
        e = got[r["log_id"]]
        o = e["otlp"]
        assert e["message"] == r["message"] and e["service_name"] == r["service_name"], e
        assert e["level"] == levels[i] and o["severity_number"] == SEVERITY.get(levels[i], 0), e
        assert e["timestamp_unix_nano"] == r["timestamp"], e
        assert before <= o["observed_time_unix_nano"] <= after, (before, o, after)
        if i % 2:  # valid hex: bytes (printed back as lowercase hex), not attributes
            assert (o["trace_id_bytes"], o["span_id_bytes"]) == (16, 8), o
            assert e["trace_id"] == TRACE.lower() and e["span_id"] == SPAN, e
        else:      # not hex of the right length: kept as attributes, as sent
            assert (o["trace_id_bytes"], o["span_id_bytes"]) == (0, 0), o
            assert e["trace_id"] == "not-a-trace" and e["span_id"] == "abc", e
        assert e["metadata"] == {"user": "bob", "n": "42"}, e
        src = e["source"]
        assert (src["pid"], src["uid"], src["gid"]) == (os.getpid(), os.getuid(), os.getgid()), src
        assert src["comm"] and src["hostname"] == os.uname().nodename, src
        assert o["resource"] == {"service.name": r["service_name"], "host.name": os.uname().nodename,
                                 "process.pid": os.getpid(), "deployment.environment": "prod", "team": "core"}, o
        assert o["scope_name"] == "logagent" and o["scope_version"], o
    st = a.stats()
    assert st["records"]["flushed"] == len(recs) and accounting_holds(st), st
    summary = sink.stop()
    assert summary["batches"] == 1 and summary["duplicates"] == 0, summary
    assert a.stop() == 0


def test_retries_deliver_exactly_once():
    n = 6000
    tmp = TempDir("otlp-retry")
    sink = Sink(tmp, "--protocol", "otlp", "--fail-rate", "0.2", "--fail-code", "UNAVAILABLE").start()
    a = Agent(tmp, sink.target, *OTLP, "--retry-initial-ms", "10", "--retry-max-ms", "100",
              "--batch-max-records", "200").start()
    ids = ["%032x" % (i + 1) for i in range(n)]
    send_records(a.socket, [{"message": "r", "log_id": x} for x in ids])
    st = a.wait_flushed(n)
    sink.wait_count(n)
    summary = sink.stop()
    assert sorted(e["log_id"] for e in sink.entries()) == ids, summary
    assert summary["entries"] == n and summary["duplicates"] == 0 and summary["injected_failures"] > 0, summary
    assert st["batches"]["retried"] > 0 and sum(st["records"]["dropped"].values()) == 0, st
    assert a.stop() == 0


def test_partial_success_counted_upstream_rejected():
    n = 4000
    tmp = TempDir("otlp-partial")
    sink = Sink(tmp, "--protocol", "otlp", "--reject-rate", "0.1").start()
    a = Agent(tmp, sink.target, *OTLP, "--batch-max-records", "500").start()
    send_records(a.socket, [{"message": "r%d" % i} for i in range(n)])
    st = settled(a, n)
    summary = sink.stop()
    r = st["records"]
    assert summary["rejected_entries"] > 0 and r["dropped"]["upstream_rejected"] == summary["rejected_entries"], \
        (summary, r)
    assert r["flushed"] == summary["entries"] == sink.count() == n - summary["rejected_entries"], (summary, r)
    assert accounting_holds(st) and "OTLP export partially rejected" in a.logtext()
    assert a.stop() == 0


def test_disk_buffer_and_replay_after_restart():
    tmp = TempDir("otlp-spool")
    target, port = dead_target(tmp)
    spool = tmp.file("spool")
    args = OTLP + ("--buffer", "disk", "--spool-dir", spool, "--drain-timeout-ms", "300", "--retry-max-ms", "200")
    a = Agent(tmp, target, *args).start()
    ids = ["%032x" % (i + 1) for i in range(1500)]
    send_records(a.socket, [{"message": "s", "log_id": x} for x in ids] + [TYPED])  # types survive the spool too
    ids = sorted(ids + [TYPED["log_id"]])
    wait_for(lambda: a.stats()["records"]["spooled"] == len(ids), 30, "all records spooled")
    assert a.stop() == 0
    sink = Sink(tmp, "--protocol", "otlp", "--fail-first", "2", port=port).start()
    a2 = Agent(tmp, sink.target, *args, name="agent2").start()
    st = a2.wait_flushed(len(ids))
    sink.wait_count(len(ids))
    entries = sink.entries()
    summary = sink.stop()
    assert sorted(e["log_id"] for e in entries) == ids and summary["duplicates"] == 0, summary
    assert st["records"]["replayed"] == len(ids) and accounting_holds(st), st
    assert all(e["otlp"]["observed_time_unix_nano"] > 0 for e in entries)
    assert [e["metadata"] for e in entries if e["log_id"] == TYPED["log_id"]] == [TYPED_OTLP_TEXT], entries[-1]
    assert a2.stop() == 0


def test_unimplemented_is_not_unary_in_otlp_mode():
    tmp = TempDir("otlp-unimpl")
    sink = Sink(tmp).start()  # a logagent.v1 service: no LogsService/Export
    a = Agent(tmp, sink.target, *OTLP, "--max-inflight", "1").start()
    send_records(a.socket, [{"message": "x%d" % i} for i in range(50)])
    st = settled(a, 50)
    assert st["records"]["dropped"]["upstream_rejected"] == 50 and st["upstream"]["mode"] == "export", st
    assert st["upstream"]["protocol"] == "otlp", st["upstream"]
    assert st["batches"]["unary_calls"] == 0, st["batches"]
    assert "UNIMPLEMENTED" in a.logtext() and "switching to unary" not in a.logtext()
    assert sink.stop()["entries"] == 0
    assert a.stop() == 0


def test_metadata_types_reach_otlp_typed():
    tmp = TempDir("otlp-types")
    sink = Sink(tmp, "--protocol", "otlp").start()
    a = Agent(tmp, sink.target, *OTLP).start()
    send_records(a.socket, [TYPED])
    sink.wait_count(1)
    e = sink.entries()[0]
    assert e["message"] == "typed" and e["metadata"] == TYPED_OTLP_TEXT, e
    assert list(e["metadata"]) == list(TYPED_OTLP_TEXT), e  # in record order
    st = a.wait_flushed(1)
    assert accounting_holds(st), st
    assert sink.stop()["entries"] == 1
    assert a.stop() == 0


def varint_at(buf, i):
    v = shift = 0
    while True:
        b = buf[i]
        i += 1
        v |= (b & 0x7f) << shift
        shift += 7
        if not b & 0x80:
            return v, i


def pb_fields(buf):
    """(field number, value) of each field of a protobuf message: varints as ints, length-delimited as bytes."""
    i, out = 0, []
    while i < len(buf):
        key, i = varint_at(buf, i)
        assert key & 7 in (0, 2), "wire type %d" % (key & 7)
        if key & 7 == 0:
            v, i = varint_at(buf, i)
        else:
            n, i = varint_at(buf, i)
            v, i = buf[i:i + n], i + n
        out.append((key >> 3, v))
    return out


def raw_native_upstream():
    """A logagent.v1 BatchWriteLogs service (Debian's python3-grpcio) that keeps each request's raw bytes and
    answers OK with an empty body (all accepted). Returns (server, port, requests)."""
    import grpc
    from concurrent import futures
    requests = []

    def batch(req, _ctx):
        requests.append(req)
        return b""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        "logagent.v1.LogService", {"BatchWriteLogs": grpc.unary_unary_rpc_method_handler(batch)}),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, port, requests


def test_native_upstream_gets_no_types_field():
    tmp = TempDir("otlp-types-native")
    server, port, requests = raw_native_upstream()
    try:
        a = Agent(tmp, "127.0.0.1:%d" % port).start()
        send_records(a.socket, [TYPED])
        a.wait_flushed(1)
        wait_for(lambda: requests, scaled(10), "the raw service got the batch")
        assert a.stop() == 0
    finally:
        server.stop(None)
    entries = [v for f, v in pb_fields(requests[0]) if f == 1]
    assert len(entries) == 1, requests
    fields = pb_fields(entries[0])
    # WriteLogRequest's own fields only (level 2, message 3, metadata 6, log_id 7, timestamp 8, source 9)
    assert sorted(set(f for f, _ in fields)) == [2, 3, 6, 7, 8, 9], fields
    meta = [dict(pb_fields(v)) for f, v in fields if f == 6]
    assert [(m[1].decode(), m.get(2, b"").decode()) for m in meta] == list(TYPED_NATIVE_TEXT.items()), meta
    # and the native sink prints the line it always printed: metadata as text, nothing else added
    sink = Sink(tmp).start()
    a = Agent(tmp, sink.target, name="agent2").start()
    send_records(a.socket, [TYPED])
    sink.wait_count(1)
    e = sink.entries()[0]
    assert list(e) == ["log_id", "service_name", "level", "message", "timestamp_unix_nano", "metadata", "source"], e
    assert e["metadata"] == TYPED_NATIVE_TEXT and list(e["metadata"]) == list(TYPED_NATIVE_TEXT), e
    assert sink.stop()["entries"] == 1
    assert a.stop() == 0


def test_spooled_under_otlp_replayed_native_without_types():
    """A spool written with --upstream-protocol otlp (entries carry the agent's private metadata types) and replayed
    after a restart with the native protocol: the log service gets WriteLogRequests without that field (the sink
    prints any field proto/logagent/v1 does not define as unknown_fields), metadata as text, each record once."""
    tmp = TempDir("otlp-spool-native")
    target, port = dead_target(tmp)
    spool = tmp.file("spool")
    disk = ("--buffer", "disk", "--spool-dir", spool, "--drain-timeout-ms", "300", "--retry-max-ms", "200")
    a = Agent(tmp, target, *(OTLP + disk)).start()
    ids = ["%032x" % (i + 1) for i in range(300)]
    records = [dict(TYPED, log_id=x) for x in ids]
    send_records(a.socket, records)
    wait_for(lambda: a.stats()["records"]["spooled"] == len(ids), 30, "all records spooled")
    assert a.stop() == 0
    sink = Sink(tmp, "--fail-first", "1", port=port).start()  # one retry: the batch is read back twice
    a2 = Agent(tmp, sink.target, *disk, name="agent2").start()
    st = a2.wait_flushed(len(ids))
    sink.wait_count(len(ids))
    assert a2.stop() == 0
    summary = sink.stop()
    entries = sink.entries()
    assert sorted(e["log_id"] for e in entries) == ids and summary["duplicates"] == 0, summary
    assert all("unknown_fields" not in e and e["metadata"] == TYPED_NATIVE_TEXT for e in entries), entries[0]
    assert st["records"]["replayed"] == len(ids) and accounting_holds(st), st


def agentd(*args):
    p = subprocess.run([os.path.join(BIN, "logagentd")] + list(args), capture_output=True, text=True, timeout=30,
                       env=dict(os.environ, LOGAGENT_CONFIG=""))
    return p.returncode, p.stdout, p.stderr


def test_check_config_and_bad_resource_attr():
    rc, out, err = agentd(*OTLP, "--resource-attr", "a=1,b=x=y", "--check-config")
    assert rc == 0, err
    assert "upstream-protocol = otlp" in out and "resource-attr = a=1,b=x=y" in out, out
    assert "upstream-rpc, batch-method and unary-method are ignored" in out, out
    rc, out, _ = agentd("--check-config")
    assert "upstream-protocol = logagent" in out and "are ignored" not in out, out
    for bad in ("novalue", "=v", "a=1,,b=2"):
        rc, out, err = agentd("--resource-attr", bad, "--check-config")
        assert rc == 2 and "resource-attr" in err and "KEY=VALUE" in err, (bad, rc, err)
    rc, out, err = agentd("--upstream-protocol", "grpc", "--check-config")
    assert rc == 2 and "upstream-protocol" in err, err


def test_independent_node_peer_decodes_the_export():
    tmp = TempDir("otlp-node")
    node_path, why = node_peers()
    if why:
        print("   skip: independent OTLP peer not run: %s" % why)
        return
    port_file, out = tmp.file("peer.port"), tmp.file("peer.jsonl")
    with open(out, "wb") as f, open(tmp.file("peer.stderr"), "wb") as err:
        peer = spawn(["node", PEER, port_file], stdout=f, stderr=err,
                     env=dict(os.environ, NODE_PATH=node_path))
    port = wait_for(lambda: peer.poll() is None and os.path.exists(port_file) and open(port_file).read().strip(),
                    scaled(30), "node peer listening")
    hsock = tmp.file("http.sock")
    a = Agent(tmp, "127.0.0.1:%s" % port, *OTLP, "--resource-attr", "team=core",
              "--http-listen", "unix:" + hsock).start()
    recs = [{"message": "m%d" % i, "service_name": "svc", "level": lv, "log_id": "%032x" % (i + 1),
             "timestamp": 1700000000000000000 + i, "trace_id": TRACE if i % 2 else "t%d" % i,
             "span_id": SPAN if i % 2 else "", "k": "v%d" % i}
            for i, lv in enumerate(["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"])]
    send_records(a.socket, recs + [TYPED])
    # over HTTP the JSON types arrive the same way (no bin in JSON)
    http_meta = {k: v for k, v in TYPED.items() if k not in ("message", "log_id", "bin")}
    c = UnixHTTPConnection(hsock, timeout=scaled(30))
    c.request("POST", "/api/write_log/", body=json.dumps({"message": "http", "log_id": "beef" * 8,
                                                          "metadata": http_meta}))
    assert c.getresponse().status == 200
    c.close()
    a.wait_flushed(len(recs) + 2)
    got = wait_for(lambda: (lambda l: l if len(l) == len(recs) + 2 else None)(open(out).read().splitlines()),
                   scaled(20), "peer printed every record")
    by_id = {}
    for line in got:
        e = json.loads(line)
        by_id[e["attributes"]["log_id"]] = e
    for i, r in enumerate(recs):
        e = by_id[r["log_id"]]
        assert e["body"] == r["message"] and e["severity_text"] == r["level"], e
        assert e["severity_number"] == SEVERITY[r["level"]] and e["time_unix_nano"] == str(r["timestamp"]), e
        assert int(e["observed_time_unix_nano"]) > r["timestamp"], e
        assert e["resource"] == {"service.name": "svc", "host.name": os.uname().nodename,
                                 "process.pid": {"int": str(os.getpid())}, "team": "core"}, e
        assert e["scope"]["name"] == "logagent", e
        assert e["attributes"]["k"] == r["k"] and e["attributes"]["process.user.id"] == {"int": str(os.getuid())}, e
        if i % 2:
            assert e["trace_id"] == TRACE.lower() and e["span_id"] == SPAN and "trace_id" not in e["attributes"], e
        else:
            assert e["trace_id"] == "" and e["attributes"]["trace_id"] == r["trace_id"], e
    typed = by_id[TYPED["log_id"]]["attributes"]
    assert {k: typed[k] for k in TYPED_OTLP_PEER} == TYPED_OTLP_PEER, typed
    typed = by_id["beef" * 8]["attributes"]
    assert {k: typed[k] for k in http_meta} == {k: TYPED_OTLP_PEER[k] for k in http_meta}, typed
    assert a.stop() == 0
    peer.terminate()
    assert peer.wait(timeout=scaled(10)) == 0


if __name__ == "__main__":
    run([test_every_field_decoded_as_sent, test_retries_deliver_exactly_once,
         test_partial_success_counted_upstream_rejected, test_disk_buffer_and_replay_after_restart,
         test_unimplemented_is_not_unary_in_otlp_mode, test_metadata_types_reach_otlp_typed,
         test_native_upstream_gets_no_types_field, test_spooled_under_otlp_replayed_native_without_types,
         test_check_config_and_bad_resource_attr,
         test_independent_node_peer_decodes_the_export])
