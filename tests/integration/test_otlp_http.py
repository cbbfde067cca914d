"""test_otlp_http.py — OTLP/HTTP logs ingest (`POST /v1/logs` on --http-listen) with the real agent and the real sink.

Requests are built with the official OpenTelemetry protos (proto/opentelemetry, compiled here by Debian's protoc into
python3-protobuf classes: not our code), sent as protobuf and as OTLP's JSON encoding (hex ids, 64-bit integers as
strings), gzip-compressed or not. Checked as a user would: every field at the sink (the mapping table in
docs/interop.md), the answer's status, content type and body (ExportLogsServiceResponse / google.rpc.Status, decoded
with the same protos), the counters; bad requests answered as the OTLP/HTTP spec says with the other records kept;
a full buffer answered 503 + Retry-After and the same requests sent again until taken — every record then at the
sink once by log_id (a retried request gives its records the same log_ids)."""
import gzip
import http.client
import json
import os
import re
import subprocess
import sys
import tempfile

from harness import INTEROP, Agent, Sink, TempDir, dead_target, node_peers, run, scaled, spawn, wait_for

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO = os.path.join(HERE, "..", "..", "proto")
T0 = 1_700_000_000_123_456_789


def otlp_modules():
    out = tempfile.mkdtemp(prefix="la-otlp-pb-")
    files = ["opentelemetry/proto/common/v1/common.proto", "opentelemetry/proto/resource/v1/resource.proto",
             "opentelemetry/proto/logs/v1/logs.proto", "opentelemetry/proto/collector/logs/v1/logs_service.proto"]
    subprocess.run(["protoc", "-I", PROTO, "--python_out", out] + files, check=True)
    sys.path.insert(0, out)
    from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
    from opentelemetry.proto.common.v1 import common_pb2
    from opentelemetry.proto.logs.v1 import logs_pb2
    return logs_service_pb2, logs_pb2, common_pb2


SVC, LOGS, COMMON = otlp_modules()


def any_value(v):
    a = COMMON.AnyValue()
    if isinstance(v, bool):
        a.bool_value = v
    elif isinstance(v, int):
        a.int_value = v
    elif isinstance(v, float):
        a.double_value = v
    elif isinstance(v, bytes):
        a.bytes_value = v
    elif isinstance(v, str):
        a.string_value = v
    elif isinstance(v, list):
        a.array_value.values.extend(any_value(x) for x in v)
    elif isinstance(v, dict):
        a.kvlist_value.values.extend(COMMON.KeyValue(key=k, value=any_value(x)) for k, x in v.items())
    return a


def kvs(d):
    return [COMMON.KeyValue(key=k, value=any_value(v)) for k, v in d.items()]


def request(resource, records):
    """An ExportLogsServiceRequest: one resource, one scope, the records (dicts of LogRecord fields; body and
    attributes as Python values)."""
    req = SVC.ExportLogsServiceRequest()
    rl = req.resource_logs.add()
    rl.resource.attributes.extend(kvs(resource))
    sl = rl.scope_logs.add()
    sl.scope.name = "test-scope"
    for r in records:
        lr = sl.log_records.add()
        for k, v in r.items():
            if k == "body":
                lr.body.CopyFrom(any_value(v))
            elif k == "attributes":
                lr.attributes.extend(kvs(v))
            else:
                setattr(lr, k, v)
    return req


def to_otlp_json(req):
    """OTLP's JSON encoding: proto3 JSON with lowerCamelCase names, except trace and span ids as hex."""
    from google.protobuf import json_format
    doc = json_format.MessageToDict(req)
    import base64
    for rl in doc.get("resourceLogs", []):
        for sl in rl.get("scopeLogs", []):
            for lr in sl.get("logRecords", []):
                for k in ("traceId", "spanId"):
                    if k in lr:
                        lr[k] = base64.b64decode(lr[k]).hex()
    return json.dumps(doc)


def post(port, body, ctype="application/x-protobuf", encoding=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=scaled(30))
    headers = {"Content-Type": ctype}
    if encoding:
        headers["Content-Encoding"] = encoding
    c.request("POST", "/v1/logs", body=body, headers=headers)
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, {k.lower(): v for k, v in r.getheaders()}, data


def answer(status, headers, data):
    """The answer decoded as OTLP says: ExportLogsServiceResponse on 200, else google.rpc.Status (code, message)."""
    json_ = headers["content-type"] == "application/json"
    if status == 200:
        if json_:
            return json.loads(data)
        resp = SVC.ExportLogsServiceResponse()
        resp.ParseFromString(data)
        return resp
    if json_:
        return json.loads(data)
    # google.rpc.Status {int32 code = 1; string message = 2;} read by hand (its proto is not in the tree)
    code, msg, i = 0, b"", 0
    while i < len(data):
        tag = data[i]
        i += 1
        if tag == 0x08:
            code = data[i]
            i += 1
        elif tag == 0x12:
            n = data[i]
            i += 1
            if n & 0x80:
                n = (n & 0x7f) | (data[i] << 7)
                i += 1
            msg = data[i:i + n]
            i += n
    return {"code": code, "message": msg.decode()}


def http_port(a):
    m = wait_for(lambda: re.search(r'msg="http listening" address=127\.0\.0\.1:(\d+)', a.logtext()), 10,
                 "http listening line")
    return int(m.group(1))


RESOURCE = {"service.name": "checkout", "k8s.pod.name": "checkout-1", "host.cpu": 4, "shared": "from-resource"}
RECORDS = [
    {"time_unix_nano": T0, "severity_text": "warn", "body": "card declined", "trace_id": bytes(range(1, 17)),
     "span_id": bytes(range(1, 9)),
     "attributes": {"user": "u1", "ok": True, "n": 42, "ratio": 0.5, "raw": b"\x00\x01", "tags": ["a", 1],
                    "ctx": {"k": "v"}, "shared": "from-record", "message": "attr named message"}},
    {"observed_time_unix_nano": T0 + 1, "severity_number": 17, "body": {"event": "retry", "count": 3}},
    {"time_unix_nano": T0 + 2, "trace_id": bytes(16)},
]


def expected(e, i, source=None):
    """Entry e is RECORDS[i] as the mapping table says; source: what its `source` must hold (TCP: nothing
    trusted, comm "http")."""
    if i == 0:
        assert e["message"] == "card declined" and e["level"] == "WARN", e
        assert e["trace_id"] == bytes(range(1, 17)).hex() and e["span_id"] == bytes(range(1, 9)).hex(), e
        assert e["timestamp_unix_nano"] == T0, e
        assert e["metadata"] == {"user": "u1", "ok": "true", "n": "42", "ratio": "0.5", "raw": "AAE=",
                                 "tags": '["a",1]', "ctx": '{"k":"v"}', "shared": "from-record",
                                 "attributes.message": "attr named message", "k8s.pod.name": "checkout-1",
                                 "host.cpu": "4"}, e["metadata"]
    elif i == 1:
        assert json.loads(e["message"]) == {"event": "retry", "count": 3} and e["level"] == "ERROR", e
        assert e["timestamp_unix_nano"] == T0 + 1 and "trace_id" not in e, e
    else:
        assert e["message"] == "" and e["level"] == "INFO" and e["timestamp_unix_nano"] == T0 + 2, e
        assert "trace_id" not in e and "span_id" not in e, e  # all-zero ids are absent
    assert e["service_name"] == "checkout" and len(e["log_id"]) == 32, e
    for k, v in (source or {"comm": "http", "pid": 0}).items():
        assert e["source"][k] == v, (k, e["source"])


def test_mapping_protobuf_json_and_gzip():
    tmp = TempDir("otlp-http-map")
    sink = Sink(tmp).start()
    a = Agent(tmp, sink.target, "--http-listen", "127.0.0.1:0", "--flush-interval-ms", "20").start()
    port = http_port(a)
    req = request(RESOURCE, RECORDS)
    sends = [("pb", req.SerializeToString(), "application/x-protobuf", None),
             ("json", to_otlp_json(req).encode(), "application/json", None),
             ("pb+gzip", gzip.compress(req.SerializeToString()), "application/x-protobuf", "gzip"),
             ("json+gzip", gzip.compress(to_otlp_json(req).encode()), "application/json; charset=utf-8", "gzip")]
    for what, body, ctype, enc in sends:
        status, headers, data = post(port, body, ctype, enc)
        assert status == 200 and headers["content-type"] == ctype.split(";")[0], (what, status, headers, data)
        resp = answer(status, headers, data)
        assert (resp == {} if isinstance(resp, dict) else not resp.HasField("partial_success")), (what, resp)
    n = 3 * len(sends)
    sink.wait_count(n)
    st = a.wait_flushed(n)
    assert st["records"]["received"] == n and st["http"]["responses"]["200"] == len(sends), st
    assert a.stop() == 0
    summary = sink.stop()
    assert summary["entries"] == n, summary
    entries = sink.entries()
    for k in range(len(sends)):
        got = entries[3 * k:3 * k + 3]
        for i, e in enumerate(sorted(got, key=lambda e: e["timestamp_unix_nano"])):
            expected(e, i)
    # the same request, whatever its encoding, gives the same log_ids (pb and gzip'd pb are the same bytes inside)
    ids = [[e["log_id"] for e in entries[3 * k:3 * k + 3]] for k in range(len(sends))]
    assert ids[0] == ids[2] and ids[1] == ids[3] and ids[0] != ids[1], ids


def test_bad_requests():
    tmp = TempDir("otlp-http-bad")
    sink = Sink(tmp).start()
    a = Agent(tmp, sink.target, "--http-listen", "127.0.0.1:0", "--flush-interval-ms", "20",
              "--http-max-body-bytes", "64KiB").start()
    port = http_port(a)
    good = request(RESOURCE, [{"body": "kept %d" % i} for i in range(2)])
    bad_id = request(RESOURCE, [{"body": "before"}, {"body": "short id", "trace_id": b"\x01\x02\x03\x04"},
                                {"body": "after"}])
    # partial: the bad record refused for good (partial_success), the others taken
    status, headers, data = post(port, bad_id.SerializeToString())
    resp = answer(status, headers, data)
    assert status == 200 and resp.partial_success.rejected_log_records == 1, (status, resp)
    assert "trace_id is 4 bytes, not 16" in resp.partial_success.error_message, resp
    status, headers, data = post(port, to_otlp_json(bad_id).encode(), "application/json")
    doc = answer(status, headers, data)
    assert status == 200 and doc["partialSuccess"]["rejectedLogRecords"] == "1", (status, doc)
    rows = [("not protobuf", b"\xff\xff\xff\xff", "application/x-protobuf", None, 400, 3, "not an OTLP"),
            ("not JSON", b"{nope", "application/json", None, 400, 3, "not JSON"),
            ("JSON not a request", b"[1, 2]", "application/json", None, 400, 3, "resourceLogs"),
            ("wrong content type", good.SerializeToString(), "text/plain", None, 415, 3, "Content-Type"),
            ("unknown encoding", good.SerializeToString(), "application/x-protobuf", "br", 415, 3, "gzip"),
            ("not gzip", good.SerializeToString(), "application/x-protobuf", "gzip", 400, 3, "not gzip"),
            ("gzip bomb", gzip.compress(b"\x00" * (8 << 20)), "application/x-protobuf", "gzip", 413, 3,
             "--http-max-body-bytes"),
            ("bad intValue", json.dumps({"resourceLogs": [{"scopeLogs": [{"logRecords": [
                {"body": {"intValue": "twelve"}}]}]}]}).encode(), "application/json", None, 200, None,
             "intValue")]
    for what, body, ctype, enc, want, code, text in rows:
        status, headers, data = post(port, body, ctype, enc)
        doc = answer(status, headers, data)
        assert status == want, (what, status, doc)
        if code is not None:
            assert doc["code"] == code and text in doc["message"], (what, doc)
        else:
            assert doc["partialSuccess"]["rejectedLogRecords"] == "1" and text in doc["partialSuccess"][
                "errorMessage"], (what, doc)
    # and the good ones around them all arrive
    status, _, _ = post(port, good.SerializeToString())
    assert status == 200
    sink.wait_count(6)
    st = a.wait_flushed(6)
    r = st["records"]["rejected"]
    assert r["invalid_record"] == 2 + 1 + 1 and r["malformed"] == 2 + 1 and r["oversized"] == 1, r
    assert st["http"]["responses"]["415"] == 2, st["http"]
    assert a.stop() == 0
    assert sorted(e["message"] for e in sink.entries()) == sorted(
        ["before", "after", "before", "after", "kept 0", "kept 1"])


def test_full_buffer_503_then_every_record_once():
    tmp = TempDir("otlp-http-full")
    target, port = dead_target(tmp)
    a = Agent(tmp, target, "--http-listen", "127.0.0.1:0", "--buffer-bytes", "128KiB", "--flush-interval-ms", "20",
              "--retry-max-ms", "200").start()
    hp = http_port(a)
    reqs = [request(RESOURCE, [{"body": "r%03d-%03d %s" % (k, i, "p" * 200)} for i in range(50)]) for k in range(40)]
    pending = list(range(len(reqs)))
    refused = 0
    while pending:  # until one is refused: the buffer is full and the service down
        status, headers, data = post(hp, reqs[pending[0]].SerializeToString())
        if status != 200:
            assert status == 503 and headers.get("retry-after") == "1", (status, headers)
            doc = answer(status, headers, data)
            assert doc["code"] == 14 and "buffer full" in doc["message"], doc
            refused += 1
            break
        pending.pop(0)
    assert refused, "the buffer never filled"
    sink = Sink(tmp, port=port).start()

    def resend():  # a client's retry loop: the same requests until each is taken
        while pending:
            status, _, _ = post(hp, reqs[pending[0]].SerializeToString())
            if status != 200:
                return False
            pending.pop(0)
        return True
    wait_for(resend, scaled(60), "every request taken")
    n = 50 * len(reqs)
    wait_for(lambda: len({e["log_id"] for e in sink.entries()}) >= n, scaled(60),
             "%d distinct log_ids at the sink" % n)
    assert a.stop() == 0
    summary = sink.stop()
    entries = sink.entries()
    by_id = {}
    for e in entries:
        assert by_id.setdefault(e["log_id"], e["message"]) == e["message"], e  # a duplicate is the same record
    assert sorted(by_id.values()) == sorted("r%03d-%03d %s" % (k, i, "p" * 200) for k in range(40)
                                            for i in range(50))
    assert summary["unique_log_ids"] == n, summary


def test_rate_limit_and_allow_uids():
    """--rate-limit: an OTLP/HTTP request over it is answered 429 + Retry-After with a google.rpc.Status (code 8), the
    records still the caller's; on unix: the peer's uid comes from the kernel (source) and --allow-uids refuses
    another user's request with 403."""
    from harness import UnixHTTPConnection
    tmp = TempDir("otlp-http-limits")
    sink = Sink(tmp).start()
    a = Agent(tmp, sink.target, "--http-listen", "127.0.0.1:0", "--rate-limit", "5:5").start()
    status, headers, data = post(http_port(a), request(RESOURCE, [{"body": "r%d" % i} for i in range(20)])
                                 .SerializeToString())
    doc = answer(status, headers, data)
    assert status == 429 and headers.get("retry-after") == "1" and doc["code"] == 8, (status, headers, doc)
    assert a.stats()["http"]["refused_rate_limited"] >= 1
    assert a.stop() == 0

    def post_unix(path, body):
        c = UnixHTTPConnection(path, timeout=scaled(30))
        c.request("POST", "/v1/logs", body=body, headers={"Content-Type": "application/x-protobuf"})
        r = c.getresponse()
        out = (r.status, r.read())
        c.close()
        return out
    path = tmp.file("http.sock")
    body = request(RESOURCE, [{"body": "from unix"}]).SerializeToString()
    a = Agent(tmp, sink.target, "--http-listen", "unix:" + path, "--flush-interval-ms", "20", name="mine").start()
    assert post_unix(path, body)[0] == 200
    e = wait_for(lambda: ([e for e in sink.entries() if e["message"] == "from unix"] or [None])[0], 20,
                 "the unix: record at the sink")
    assert e["message"] == "from unix" and e["source"]["pid"] == os.getpid() and e["source"]["uid"] == os.getuid(), e
    assert a.stop() == 0
    a = Agent(tmp, sink.target, "--http-listen", "unix:" + path, "--allow-uids", str(os.getuid() + 4242),
              name="others").start()
    status, data = post_unix(path, body)
    assert status == 403 and b"allow-uids" in data, (status, data)
    assert a.stats()["records"]["received"] == 0
    assert a.stop() == 0
    sink.stop()


def sdk_entries_ok(entries, kinds, n):
    """The records otel_sdk_sender.js sent with each exporter in kinds (n each), every field as the SDK set it."""
    seen = set()
    for e in entries:
        kind, i = e["message"].split()[1], int(e["message"].split()[2])
        seen.add((kind, i))
        odd = i % 2 == 1
        assert e["service_name"] == "otel-js-app" and e["level"] == ("ERROR" if odd else "WARN"), e
        assert e["timestamp_unix_nano"] == (1700000000000 + i) * 1000000, e
        if odd:
            assert "trace_id" not in e and "span_id" not in e, e
        else:
            assert e["trace_id"] == "0102030405060708090a0b0c0d0e0f10" and e["span_id"] == "1112131415161718", e
        ratio = i / 4
        assert e["metadata"] == {"i": str(i), "odd": "true" if odd else "false",
                                 "ratio": str(int(ratio)) if ratio == int(ratio) else repr(ratio),
                                 "tags": '["a","b"]', "ctx": '{"k":"v%d"}' % i,
                                 "deployment.environment": "test"}, e["metadata"]
    assert seen == {(k, i) for k in kinds for i in range(n)}


def test_opentelemetry_js_sdk_through_the_agent():
    """A client nobody on the team wrote: the OpenTelemetry JS SDK (LoggerProvider + BatchLogRecordProcessor) with
    its official OTLP/HTTP log exporters, JSON and protobuf (tests/interop/otel_sdk_sender.js), sending to the
    agent; every field checked at the sink."""
    node_path, why = node_peers()
    if why:
        print("   skip: OpenTelemetry JS SDK not run: %s" % why)
        return
    tmp = TempDir("otlp-http-sdk")
    sink = Sink(tmp).start()
    a = Agent(tmp, sink.target, "--http-listen", "127.0.0.1:0", "--flush-interval-ms", "20").start()
    url = "http://127.0.0.1:%d/v1/logs" % http_port(a)
    n = 300
    for kind in ("http-json", "http-proto"):
        p = spawn(["node", os.path.join(INTEROP, "otel_sdk_sender.js"), kind, url, str(n)],
                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(os.environ, NODE_PATH=node_path))
        out, err = p.communicate(timeout=scaled(120))
        assert p.returncode == 0 and json.loads(out) == {"exported": n, "failed": 0}, (kind, out, err[-2000:])
    sink.wait_count(2 * n)
    st = a.wait_flushed(2 * n)
    assert a.stop() == 0
    summary = sink.stop()
    assert summary["entries"] == 2 * n and summary["unique_log_ids"] == 2 * n, summary
    assert st["http"]["responses"]["200"] >= 2 and st["records"]["rejected"]["invalid_record"] == 0, st
    sdk_entries_ok(sink.entries(), ("http-json", "http-proto"), n)


def test_sdk_retries_through_a_full_buffer():
    """Backpressure as an application meets it: the JS SDK's OTLP/HTTP (protobuf) exporter sends 1,500 records to an
    agent whose small buffer is full (the log service is down); the agent answers 503 + Retry-After, the SDK retries
    (its own policy: up to 5 attempts within its 10 s timeout, honouring Retry-After), the service comes back, and
    every record arrives — none lost, duplicates only as the same log_id (a retried request's records get the same
    ids). (The JS SDK's gRPC exporter does not retry at all, whatever the status: docs/interop.md.)"""
    node_path, why = node_peers()
    if why:
        print("   skip: OpenTelemetry JS SDK not run: %s" % why)
        return
    tmp = TempDir("otlp-http-sdk-full")
    target, port = dead_target(tmp)
    a = Agent(tmp, target, "--http-listen", "127.0.0.1:0", "--buffer-bytes", "128KiB", "--flush-interval-ms", "20",
              "--retry-max-ms", "200").start()
    n = 1500
    url = "http://127.0.0.1:%d/v1/logs" % http_port(a)
    p = spawn(["node", os.path.join(INTEROP, "otel_sdk_sender.js"), "http-proto", url, str(n)],
              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(os.environ, NODE_PATH=node_path))
    wait_for(lambda: a.stats()["http"]["refused_full"] > 0, 60, "the agent refusing: buffer full")
    sink = Sink(tmp, port=port).start()
    out, err = p.communicate(timeout=scaled(120))
    assert p.returncode == 0 and json.loads(out) == {"exported": n, "failed": 0}, (out, err[-2000:])
    wait_for(lambda: len({e["log_id"] for e in sink.entries()}) >= n, scaled(60), "%d distinct log_ids" % n)
    st = a.stats()
    assert a.stop() == 0
    summary = sink.stop()
    assert summary["unique_log_ids"] == n, summary
    messages = {e["message"] for e in sink.entries()}
    assert messages == {"sdk http-proto %d" % i for i in range(n)}, len(messages)
    h = st["http"]
    assert h["responses"]["503"] >= 1 and h["refused_full"] >= 1 and h["records"] >= n, h


if __name__ == "__main__":
    run([test_mapping_protobuf_json_and_gzip, test_bad_requests, test_full_buffer_503_then_every_record_once,
         test_rate_limit_and_allow_uids, test_opentelemetry_js_sdk_through_the_agent,
         test_sdk_retries_through_a_full_buffer])
