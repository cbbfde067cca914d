"""test_otlp_grpc.py — OTLP/gRPC logs ingest (--otlp-listen: LogsService/Export) with the real agent and the real sink.

The client is Debian's python3-grpcio (gRPC's own Python stack, not our code) with the official OpenTelemetry protos
compiled by protoc (test_otlp_http.otlp_modules), on a Unix socket and on TCP. Checked as a user would: every field
at the sink (docs/interop.md's mapping, the same as OTLP/HTTP's), `source` from the kernel on unix: and "nothing
trusted" over TCP, the status codes and messages, RetryInfo in grpc-status-details-bin when the client must retry,
the counters in /stats and /metrics; bad calls refused with the others unaffected; a full buffer answered UNAVAILABLE
and the same requests sent again until taken, every record then at the sink once by log_id; --allow-uids."""
import os
import re
import subprocess

import grpc

import json

from harness import (BIN, INTEROP, Agent, Sink, TempDir, dead_target, http_get, node_peers, run, scaled, spawn,
                     wait_for)
from test_otlp_http import RECORDS, RESOURCE, SVC, expected, request, sdk_entries_ok

EXPORT = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"


def addresses(a):
    """The agent's --otlp-listen addresses as it logged them: [unix:PATH, HOST:PORT, ...]."""
    wait_for(lambda: "otlp grpc listening" in a.logtext(), 10, "otlp grpc listening line")
    return re.findall(r'msg="otlp grpc listening" address=(\S+)', a.logtext())


def export(target, req, timeout=30, compression=None, method=EXPORT, raw=None):
    """One Export call; returns (code, details, response or None, trailing metadata dict)."""
    with grpc.insecure_channel(target) as ch:
        call = ch.unary_unary(method, request_serializer=lambda b: b,
                              response_deserializer=SVC.ExportLogsServiceResponse.FromString)
        try:
            resp, c = call.with_call(raw if raw is not None else req.SerializeToString(), timeout=scaled(timeout),
                                     compression=compression)
            return grpc.StatusCode.OK, "", resp, dict(c.trailing_metadata() or ())
        except grpc.RpcError as e:
            return e.code(), e.details(), None, dict(e.trailing_metadata() or ())


def fields(data):
    """A protobuf message's fields as {number: [values]} (test_otlp.pb_fields: varints as ints, the rest as bytes):
    enough to read google.rpc.Status, Any, RetryInfo and Duration."""
    from test_otlp import pb_fields
    out = {}
    for num, v in pb_fields(data):
        out.setdefault(num, []).append(v)
    return out


def retry_delay_s(md):
    """RetryInfo's retry_delay from grpc-status-details-bin (google.rpc.Status.details[0]), in seconds."""
    st = fields(md["grpc-status-details-bin"])
    anyv = fields(st[3][0])
    assert anyv[1][0] == b"type.googleapis.com/google.rpc.RetryInfo", anyv
    dur = fields(fields(anyv[2][0])[1][0])
    return dur.get(1, [0])[0] + dur.get(2, [0])[0] / 1e9


def test_mapping_unix_and_tcp():
    tmp = TempDir("otlp-grpc-map")
    sink = Sink(tmp).start()
    path = tmp.file("otlp.sock")
    a = Agent(tmp, sink.target, "--otlp-listen", "unix:%s, 127.0.0.1:0" % path, "--flush-interval-ms", "20").start()
    addrs = addresses(a)
    assert addrs[0] == "unix:" + path and re.match(r"127\.0\.0\.1:\d+$", addrs[1]), addrs
    assert os.stat(path).st_mode & 0o777 == os.stat(a.socket).st_mode & 0o777 == 0o660  # the ingest socket's rights
    req = request(RESOURCE, RECORDS)
    for target, comp in ((addrs[0], None), (addrs[1], None), (addrs[1], grpc.Compression.Gzip)):
        code, details, resp, _ = export(target, req, compression=comp)
        assert code == grpc.StatusCode.OK and not resp.HasField("partial_success"), (target, code, details)
    n = 3 * 3
    sink.wait_count(n)
    st = a.wait_flushed(n)
    g = st["otlp_grpc"]
    assert g["enabled"] and g["calls"] == 3 and g["responses"]["OK"] == 3 and g["records"] == n, g
    assert g["connections"]["total"] == 3 and g["request_bytes"] == 3 * len(req.SerializeToString()), g
    assert st["records"]["received"] == n, st["records"]
    bare = SVC.ExportLogsServiceRequest()  # no resource at all, no severity, no time, no attributes
    bare.resource_logs.add().scope_logs.add().log_records.add().body.string_value = "bare"
    code, details, resp, _ = export(addrs[1], bare)
    assert code == grpc.StatusCode.OK, (code, details)
    sink.wait_count(n + 1)
    bare_entry = [e for e in sink.entries() if e["message"] == "bare"]
    assert len(bare_entry) == 1 and bare_entry[0]["service_name"] == "" and bare_entry[0]["level"] == "INFO" and \
        bare_entry[0]["metadata"] == {}, bare_entry
    st = a.wait_flushed(n + 1)
    g = st["otlp_grpc"]
    assert g["calls"] == 4 and g["records"] == n + 1, g
    status, metrics = http_get(a.stats_socket, "/metrics")
    assert 'logagent_otlp_grpc_calls_total{code="OK"} 4' in metrics and "logagent_otlp_grpc_records_total 10" in \
        metrics, metrics
    assert a.stop() == 0
    summary = sink.stop()
    # the same request's bytes give the same log_ids (a retry is kept once): three sends, three ids
    assert summary["entries"] == n + 1 and summary["unique_log_ids"] == 4, summary
    entries = [e for e in sink.entries() if e["message"] != "bare"]
    unix = {"pid": os.getpid(), "uid": os.getuid()}
    for k, source in enumerate((unix, {"comm": "otlp-grpc", "pid": 0}, {"comm": "otlp-grpc", "pid": 0})):
        got = sorted(entries[3 * k:3 * k + 3], key=lambda e: e["timestamp_unix_nano"])
        for i, e in enumerate(got):
            expected(e, i, source)
    assert not os.path.exists(path), "the socket file is removed at stop"


def test_bad_calls_and_rate_limit():
    tmp = TempDir("otlp-grpc-bad")
    sink = Sink(tmp).start()
    a = Agent(tmp, sink.target, "--otlp-listen", "127.0.0.1:0", "--flush-interval-ms", "20",
              "--otlp-max-request-bytes", "64KiB").start()
    target = addresses(a)[0]
    good = request(RESOURCE, [{"body": "kept %d" % i} for i in range(2)])
    bad_id = request(RESOURCE, [{"body": "before"}, {"body": "short id", "trace_id": b"\x01\x02\x03\x04"},
                                {"body": "after"}])
    code, details, resp, _ = export(target, bad_id)
    assert code == grpc.StatusCode.OK and resp.partial_success.rejected_log_records == 1, (code, details, resp)
    assert "trace_id is 4 bytes, not 16" in resp.partial_success.error_message, resp
    big = request(RESOURCE, [{"body": "x" * 70000}])
    rows = [("not protobuf", dict(raw=b"\xff\xff\xff\xff"), grpc.StatusCode.INVALID_ARGUMENT, "not an OTLP"),
            ("another method", dict(method="/opentelemetry.proto.collector.logs.v1.LogsService/Other"),
             grpc.StatusCode.UNIMPLEMENTED, "unknown method"),
            ("over --otlp-max-request-bytes", dict(req=big), grpc.StatusCode.RESOURCE_EXHAUSTED, "")]
    for what, kw, want, text in rows:
        code, details, resp, md = export(target, kw.pop("req", good), **kw)
        assert code == want and text in (details or ""), (what, code, details)
        assert "grpc-status-details-bin" not in md, (what, md)  # not to be retried
    code, _, resp, _ = export(target, good)  # the good ones around them all arrive
    assert code == grpc.StatusCode.OK
    sink.wait_count(4)
    st = a.wait_flushed(4)
    r, g = st["records"]["rejected"], st["otlp_grpc"]
    assert r["invalid_record"] == 1 and r["malformed"] == 1, r
    assert g["responses"]["OK"] == 2 and g["responses"]["INVALID_ARGUMENT"] == 1, g
    assert g["responses"]["UNIMPLEMENTED"] == 1 and g["records"] == 4, g
    assert "OTLP/gRPC request refused" in a.logtext(), a.logtext()[-2000:]
    assert a.stop() == 0
    assert sorted(e["message"] for e in sink.entries()) == ["after", "before", "kept 0", "kept 1"]

    # --rate-limit: over it, the call is refused with RESOURCE_EXHAUSTED and RetryInfo (the client retries later)
    a = Agent(tmp, sink.target, "--otlp-listen", "127.0.0.1:0", "--rate-limit", "5:5", name="limited").start()
    code, details, _, md = export(addresses(a)[0], request(RESOURCE, [{"body": "r%d" % i} for i in range(20)]))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "rate-limit" in details, (code, details)
    assert retry_delay_s(md) == 1, md
    g = a.stats()["otlp_grpc"]
    assert g["refused_rate_limited"] >= 1 and g["responses"]["RESOURCE_EXHAUSTED"] == 1, g
    assert a.stop() == 0


def test_full_buffer_unavailable_then_every_record_once():
    tmp = TempDir("otlp-grpc-full")
    target, port = dead_target(tmp)
    a = Agent(tmp, target, "--otlp-listen", "127.0.0.1:0", "--buffer-bytes", "128KiB", "--flush-interval-ms", "20",
              "--retry-max-ms", "200").start()
    addr = addresses(a)[0]
    reqs = [request(RESOURCE, [{"body": "r%03d-%03d %s" % (k, i, "p" * 200)} for i in range(50)]) for k in range(40)]
    pending = list(range(len(reqs)))
    while True:  # until one is refused: the buffer is full and the service down
        assert pending, "the buffer never filled"
        code, details, _, md = export(addr, reqs[pending[0]])
        if code != grpc.StatusCode.OK:
            assert code == grpc.StatusCode.UNAVAILABLE and "buffer full" in details, (code, details)
            assert retry_delay_s(md) == 1, md
            break
        pending.pop(0)
    g = a.stats()["otlp_grpc"]
    assert g["refused_full"] >= 1 and g["responses"]["UNAVAILABLE"] == 1, g
    sink = Sink(tmp, port=port).start()

    def resend():  # a client's retry loop: the same requests until each is taken
        while pending:
            if export(addr, reqs[pending[0]])[0] != grpc.StatusCode.OK:
                return False
            pending.pop(0)
        return True
    wait_for(resend, scaled(60), "every request taken")
    n = 50 * len(reqs)
    wait_for(lambda: len({e["log_id"] for e in sink.entries()}) >= n, scaled(60), "%d distinct log_ids" % n)
    assert a.stop() == 0
    summary = sink.stop()
    by_id = {}
    for e in sink.entries():
        assert by_id.setdefault(e["log_id"], e["message"]) == e["message"], e  # a duplicate is the same record
    assert sorted(by_id.values()) == sorted("r%03d-%03d %s" % (k, i, "p" * 200) for k in range(40)
                                            for i in range(50))
    assert summary["unique_log_ids"] == n, summary


def listen_backlog(port):
    """Connections waiting in the accept queue of the IPv4 TCP listener on port (/proc/net/tcp's rx_queue of a
    socket in state LISTEN)."""
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            cols = line.split()
            if cols[3] == "0A" and int(cols[1].split(":")[1], 16) == port:
                return int(cols[4].split(":")[1], 16)
    return 0


def test_max_connections():
    """--otlp-max-connections 2: two clients connected, a third waits in the listen backlog (its call is answered
    once one of the two closes); connections are counted until they end, whoever ends them, and the count falls to
    0 when every client is gone."""
    tmp = TempDir("otlp-grpc-conns")
    sink = Sink(tmp).start()
    a = Agent(tmp, sink.target, "--otlp-listen", "127.0.0.1:0", "--otlp-max-connections", "2",
              "--flush-interval-ms", "20").start()
    target = addresses(a)[0]
    own = [("grpc.use_local_subchannel_pool", 1)]  # one connection per channel, not one shared by all
    chans = [grpc.insecure_channel(target, options=own) for _ in range(3)]
    calls = [ch.unary_unary(EXPORT, request_serializer=lambda b: b,
                            response_deserializer=SVC.ExportLogsServiceResponse.FromString) for ch in chans]
    for i in range(2):
        calls[i](request(RESOURCE, [{"body": "c%d" % i}]).SerializeToString(), timeout=scaled(30))
    g = a.stats()["otlp_grpc"]["connections"]
    assert g["active"] == 2 and g["max_reached"] == 1 and g["total"] == 2, g
    third = calls[2].future(request(RESOURCE, [{"body": "c2"}]).SerializeToString(), timeout=scaled(60))
    wait_for(lambda: listen_backlog(int(target.rsplit(":", 1)[1])) >= 1, 20, "the third connection in the backlog")
    assert not third.done() and a.stats()["otlp_grpc"]["connections"]["total"] == 2
    assert "at --otlp-max-connections" in a.logtext()
    chans[0].close()
    third.result()  # answered once the first connection ended and the agent accepted the third
    g = wait_for(lambda: (lambda c: c if c["total"] == 3 and c["active"] == 2 else None)(
        a.stats()["otlp_grpc"]["connections"]), 20, "the third connection counted")
    for ch in chans[1:]:
        ch.close()
    wait_for(lambda: a.stats()["otlp_grpc"]["connections"]["active"] == 0, 20, "every connection counted closed")
    sink.wait_count(3)
    assert sorted(e["message"] for e in sink.entries()) == ["c0", "c1", "c2"]
    assert a.stop() == 0
    sink.stop()


def test_allow_uids():
    """A peer not in --allow-uids is closed at accept (counted, logged; nothing of it taken); TCP beside the
    allow-lists is refused by --check-config, which could not check it."""
    tmp = TempDir("otlp-grpc-allow")
    sink = Sink(tmp).start()
    path = tmp.file("otlp.sock")
    other = str(os.getuid() + 4242)
    a = Agent(tmp, sink.target, "--otlp-listen", "unix:" + path, "--allow-uids", other).start()
    code, details, _, _ = export("unix:" + path, request(RESOURCE, [{"body": "not taken"}]), timeout=3)
    assert code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED), (code, details)
    st = a.stats()
    assert st["otlp_grpc"]["connections"]["refused_not_allowed"] >= 1 and st["otlp_grpc"]["calls"] == 0, st
    assert st["records"]["received"] == 0
    assert "OTLP/gRPC connection refused: peer not in --allow-uids/--allow-gids" in a.logtext()
    assert a.stop() == 0
    sink.stop()
    p = subprocess.run([os.path.join(BIN, "logagentd"), "--check-config", "--otlp-listen", "127.0.0.1:4317",
                        "--allow-uids", other], capture_output=True, text=True, env=dict(os.environ, LOGAGENT_CONFIG=""))
    assert p.returncode != 0 and "where allow-uids/allow-gids cannot be checked" in p.stderr, (p.returncode, p.stderr)
    p = subprocess.run([os.path.join(BIN, "logagentd"), "--check-config", "--otlp-listen", "unix:"],
                       capture_output=True, text=True, env=dict(os.environ, LOGAGENT_CONFIG=""))
    assert p.returncode != 0 and "each unix:PATH or HOST:PORT" in p.stderr, (p.returncode, p.stderr)


def test_opentelemetry_js_sdk_grpc_exporter():
    """A client nobody on the team wrote: the OpenTelemetry JS SDK's official gRPC log exporter
    (@opentelemetry/exporter-logs-otlp-grpc on @grpc/grpc-js, pinned by tests/interop/package-lock.json) sending
    through the agent, on TCP and on a Unix socket; every field checked at the sink."""
    node_path, why = node_peers()
    if why:
        print("   skip: OpenTelemetry JS SDK not run: %s" % why)
        return
    tmp = TempDir("otlp-grpc-sdk")
    sink = Sink(tmp).start()
    path = tmp.file("otlp.sock")
    a = Agent(tmp, sink.target, "--otlp-listen", "127.0.0.1:0,unix:" + path, "--flush-interval-ms", "20").start()
    tcp = addresses(a)[0]
    n = 300
    # unix:// is neither http:// nor https://: the SDK wants TLS there unless told otherwise, as docs/interop.md says
    env = dict(os.environ, NODE_PATH=node_path, OTEL_EXPORTER_OTLP_LOGS_INSECURE="true")
    for url in ("http://" + tcp, "unix://" + path):
        p = spawn(["node", os.path.join(INTEROP, "otel_sdk_sender.js"), "grpc", url, str(n)],
                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        out, err = p.communicate(timeout=scaled(120))
        assert p.returncode == 0 and json.loads(out) == {"exported": n, "failed": 0}, (url, out, err[-2000:])
    sink.wait_count(2 * n)
    st = a.wait_flushed(2 * n)
    assert a.stop() == 0
    summary = sink.stop()
    assert summary["entries"] == 2 * n, summary
    g = st["otlp_grpc"]
    assert g["records"] == 2 * n and g["responses"]["OK"] == g["calls"] >= 2, g
    entries = sink.entries()
    by_source = {}
    for e in entries:
        by_source.setdefault(e["source"]["comm"], []).append(e)
    assert len(by_source.get("otlp-grpc", [])) == n and len(by_source.get("node", [])) == n, \
        {k: len(v) for k, v in by_source.items()}
    for group in by_source.values():
        sdk_entries_ok(group, ("grpc",), n)


def test_round_trip_otlp_in_otlp_out_keeps_types():
    """OTLP in -> OTLP out: a LogRecord sent over OTLP/gRPC with attributes of every AnyValue type, exported by the
    agent (--upstream-protocol otlp) to an independent OTLP peer (tests/interop/otlp_peer.js: @grpc/grpc-js and the
    official schema), arrives with each attribute's type as sent; body, severity, time and ids as sent."""
    node_path, why = node_peers()
    if why:
        print("   skip: independent OTLP peer not run: %s" % why)
        return
    from test_otlp import PEER
    tmp = TempDir("otlp-grpc-roundtrip")
    port_file, out = tmp.file("peer.port"), tmp.file("peer.jsonl")
    with open(out, "wb") as f, open(tmp.file("peer.stderr"), "wb") as err:
        peer = spawn(["node", PEER, port_file], stdout=f, stderr=err, env=dict(os.environ, NODE_PATH=node_path))
    port = wait_for(lambda: peer.poll() is None and os.path.exists(port_file) and open(port_file).read().strip(),
                    scaled(30), "node peer listening")
    a = Agent(tmp, "127.0.0.1:%s" % port, "--upstream-protocol", "otlp", "--otlp-listen", "127.0.0.1:0",
              "--flush-interval-ms", "20").start()
    code, details, _, _ = export(addresses(a)[0], request(RESOURCE, RECORDS[:1]))
    assert code == grpc.StatusCode.OK, (code, details)
    a.wait_flushed(1)
    got = wait_for(lambda: open(out).read().splitlines(), scaled(20), "the peer printed the record")
    e = json.loads(got[0])
    assert e["body"] == "card declined" and e["severity_text"] == "WARN" and e["severity_number"] == 13, e
    assert e["time_unix_nano"] == str(RECORDS[0]["time_unix_nano"]), e
    assert e["trace_id"] == bytes(range(1, 17)).hex() and e["span_id"] == bytes(range(1, 9)).hex(), e
    assert e["resource"]["service.name"] == "checkout", e["resource"]
    attrs = e["attributes"]
    want = {"user": "u1", "ok": {"bool": True}, "n": {"int": "42"}, "ratio": {"double": 0.5},
            "raw": {"bytes": "0001"}, "tags": {"array": ["a", {"int": "1"}]}, "ctx": {"kvlist": {"k": "v"}},
            "shared": "from-record", "attributes.message": "attr named message",
            "k8s.pod.name": "checkout-1", "host.cpu": {"int": "4"}}
    assert {k: attrs.get(k) for k in want} == want, attrs
    assert a.stop() == 0
    peer.terminate()
    assert peer.wait(timeout=scaled(10)) == 0


if __name__ == "__main__":
    run([test_mapping_unix_and_tcp, test_bad_calls_and_rate_limit, test_full_buffer_unavailable_then_every_record_once,
         test_max_connections, test_allow_uids, test_opentelemetry_js_sdk_grpc_exporter, test_round_trip_otlp_in_otlp_out_keeps_types])
