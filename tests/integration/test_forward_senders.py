"""test_forward_senders.py — the Forward table (issue #12): the exact shapes real senders put on the wire, each row
built byte for byte from its sender's source, sent to one real agent on a real socket, asserting the records that
reach the real sink (fields, each exactly once), the ack, and the counters (docs/interop.md, "What each sender
sends").

- Fluent Bit 2.1+ out_forward (plugins/out_forward/forward.c flush_forward_mode, forward_format.c append_options):
  its chunks hold v2 events `[[EventTime, metadata], body]`, sent as they are (`Retain_Metadata_In_Forward_Mode`,
  on by default): Forward mode `[tag, array(n) + the chunk's raw entries(, options)]`, CompressedPackedForward
  `[tag, bin(gzip(chunk)), options]`; the options map has a map32 header (flb_mp_map_header_init) and holds
  `chunk` (base64 of 16 bytes of the chunk's SHA-512) with Require_ack_response, `size`, `compressed: "gzip"`,
  `fluent_signal: 0`. OpenTelemetry events carry metadata (`otlp`) and sit between group markers
  (EventTime 0xffffffff.0 / 0xfffffffe.0). Compat mode (`time_as_integer`) is Forward mode with v1 entries and
  integer times; Message mode (a dynamic tag) is `[tag, EventTime, body, options]` with the metadata in the
  options (`metadata`) when not empty.
- fluentd out_forward (lib/fluent/plugin/out_forward.rb send_data_actual): `0x93`, tag, the chunk as str32
  (PackedForward of `[EventTime, record]`), `{size, compressed: "text"|"gzip", chunk: Base64.encode64(unique_id)}`
  (encode64 ends the chunk id with a newline).
- fluent-logger-python (Debian's python3-fluent-logger): the library's own `_make_packet`, `[tag, time, record]`.
- fluent-logger-golang, the library of Docker's fluentd log driver (fluent/proto.go, fluent.go EncodeData): Message
  mode `[tag, time, record, option]` as tinylib/msgp writes it: time an int64 in the smallest *signed* form, or
  EventTime with SubSecondPrecision; option a map, `{"chunk": base64(16 bytes)}` with RequestAck, else `{}`; the
  driver's records are container_id, container_name, source, log.

A real Fluent Bit or Go sender is not run here: see docs/interop.md (Fluent Bit is not packaged in Debian 12; the
Go library would add golang-go, ~500 MB with its sources, to install-deps for what these bytes already pin down)."""
import base64
import gzip
import hashlib
import socket
import struct

import msgpack

from harness import Agent, Sink, TempDir, recv_ack, run, wait_for

T0 = 1725013845  # 2024-08-30T10:30:45Z


def et(sec, nsec):
    """EventTime as every sender here writes it: fixext8 (0xd7), type 0, big-endian seconds and nanoseconds."""
    return b"\xd7\x00" + struct.pack(">II", sec, nsec)


def p(obj):
    return msgpack.packb(obj, use_bin_type=True)


def v2(sec, nsec, meta, body):
    """One Fluent Bit v2 event as its chunks hold it: [[EventTime, metadata], body]."""
    return b"\x92\x92" + et(sec, nsec) + p(meta) + p(body)


def map32(pairs):
    """Fluent Bit's options map: a map32 header (0xdf) then the pairs (flb_mp_map_header_init/_end)."""
    return b"\xdf" + struct.pack(">I", len(pairs)) + b"".join(p(k) + p(v) for k, v in pairs)


def flb_chunk_token(data):
    """Require_ack_response: base64 of the first 16 bytes of the SHA-512 of the entries (append_options)."""
    return base64.b64encode(hashlib.sha512(data).digest()[:16]).decode()


def array_header(n):
    return p([None] * n)[:-n] if n else b"\x90"


OTLP_META = {"otlp": {"severity_number": 9, "severity_text": "INFO", "attributes": {"http.method": "GET"},
                      "trace_id": "5b8efff798038103d269b633813fc60c"}}
GROUP_START = b"\x92\x92" + et(0xffffffff, 0) + p({"schema": "otlp", "resource_id": 0, "scope_id": 0}) + \
    p({"resource": {"attributes": {"service.name": "checkout"}}, "scope": {"name": "s"}})
GROUP_END = b"\x92\x92" + et(0xfffffffe, 0) + p({}) + p({})


def fluentbit_forward(tag, entries, options=None):
    """flush_forward_mode without compression: array(2|3), tag, array(n) header, the raw entries, options."""
    return array_header(3 if options is not None else 2) + p(tag) + array_header(len(entries)) + b"".join(entries) + \
        (options or b"")


def row_fluentbit_v2_forward():
    tag = "fb.v2.forward"
    entries = [v2(T0 + i, 100 + i, {}, {"log": "fb line %d" % i, "stream": "stdout"}) for i in range(3)]
    return dict(name=tag, data=fluentbit_forward(tag, entries), ack=None, events=3, records=[
        dict(message="fb line %d" % i, service_name=tag, ts=(T0 + i) * 10**9 + 100 + i,
             metadata={"stream": "stdout"}) for i in range(3)])


def row_fluentbit_v2_forward_otlp_ack():
    tag = "fb.v2.otlp"
    entries = [GROUP_START, v2(T0, 1, OTLP_META, {"message": "otlp one"}), v2(T0, 2, {}, {"message": "otlp two"}),
               GROUP_END]
    raw = b"".join(entries)
    chunk = flb_chunk_token(raw)
    opts = map32([("chunk", chunk), ("size", 4), ("fluent_signal", 0)])
    meta_json = ('{"otlp":{"severity_number":9,"severity_text":"INFO","attributes":{"http.method":"GET"},'
                 '"trace_id":"5b8efff798038103d269b633813fc60c"}}')
    return dict(name=tag, data=fluentbit_forward(tag, entries, opts), ack=chunk, events=2, records=[
        dict(message="otlp one", service_name=tag, ts=T0 * 10**9 + 1, metadata={"forward_metadata": meta_json}),
        dict(message="otlp two", service_name=tag, ts=T0 * 10**9 + 2, metadata={})])


def row_fluentbit_v2_compressed():
    tag = "fb.v2.gzip"
    raw = b"".join(v2(T0, i, {"k": "m%d" % i} if i % 2 else {}, {"log": "gz %d" % i}) for i in range(4))
    chunk = flb_chunk_token(raw)
    opts = map32([("chunk", chunk), ("size", 4), ("compressed", "gzip"), ("fluent_signal", 0)])
    data = b"\x93" + p(tag) + p(gzip.compress(raw, mtime=0)) + opts
    return dict(name=tag, data=data, ack=chunk, events=4, records=[
        dict(message="gz %d" % i, service_name=tag, ts=T0 * 10**9 + i,
             metadata={"forward_metadata": '{"k":"m%d"}' % i} if i % 2 else {}) for i in range(4)])


def row_v2_packed_bin():
    """Not what Fluent Bit sends (it sends Forward mode when uncompressed), but the same v2 chunk as
    PackedForward: a sender that relays a Fluent Bit chunk as it is."""
    tag = "fb.v2.packed"
    raw = b"".join(v2(T0, i, {}, {"msg": "packed %d" % i}) for i in range(2))
    return dict(name=tag, data=b"\x92" + p(tag) + p(raw), ack=None, events=2, records=[
        dict(message="packed %d" % i, service_name=tag, ts=T0 * 10**9 + i, metadata={}) for i in range(2)])


def row_fluentbit_compat_time_as_integer():
    """flb_forward_format_forward_compat_mode: [tag, [[uint time, body], ...], options] (v1, no metadata)."""
    tag = "fb.compat"
    entries = [b"\x92" + b"\xce" + struct.pack(">I", T0 + i) + p({"log": "compat %d" % i}) for i in range(3)]
    raw = b"".join(v2(T0 + i, 0, {}, {"log": "compat %d" % i}) for i in range(3))  # the chunk it hashes
    chunk = flb_chunk_token(raw)
    data = b"\x93" + p(tag) + array_header(3) + b"".join(entries) + \
        map32([("chunk", chunk), ("size", 3), ("fluent_signal", 0)])
    return dict(name=tag, data=data, ack=chunk, events=3, records=[
        dict(message="compat %d" % i, service_name=tag, ts=(T0 + i) * 10**9, metadata={}) for i in range(3)])


def row_fluentbit_message_mode():
    """flb_forward_format_message_mode (a dynamic tag): [tag, EventTime, body, options], metadata in the options."""
    tag = "fb.message"
    one = b"\x94" + p(tag) + et(T0, 5) + p({"log": "dyn one"}) + \
        map32([("fluent_signal", 0), ("metadata", {"k": "v"})])
    two = b"\x94" + p(tag) + et(T0, 6) + p({"log": "dyn two"}) + map32([("fluent_signal", 0)])
    return dict(name=tag, data=one + two, ack=None, events=2, messages=2, records=[
        dict(message="dyn one", service_name=tag, ts=T0 * 10**9 + 5, metadata={"forward_metadata": '{"k":"v"}'}),
        dict(message="dyn two", service_name=tag, ts=T0 * 10**9 + 6, metadata={})])


def fluentd_out_forward(tag, entries, compress):
    """send_data_actual: 0x93, tag, the chunk as str32 (0xdb + u32 length), then the option hash."""
    unique_id = bytes(range(16))
    chunk = base64.encodebytes(unique_id).decode()  # Ruby's Base64.encode64: ends with "\n"
    body = gzip.compress(entries, mtime=0) if compress == "gzip" else entries
    opts = {"size": 3, "compressed": compress, "chunk": chunk}
    return b"\x93" + p(tag) + b"\xdb" + struct.pack(">I", len(body)) + body + p(opts), chunk


def row_fluentd(compress):
    tag = "fluentd." + compress
    entries = b"".join(b"\x92" + et(T0 + i, 7) + p({"message": "fluentd %s %d" % (compress, i), "host": "h1"})
                       for i in range(3))
    data, chunk = fluentd_out_forward(tag, entries, compress)
    return dict(name=tag, data=data, ack=chunk, events=3, records=[
        dict(message="fluentd %s %d" % (compress, i), service_name=tag, ts=(T0 + i) * 10**9 + 7,
             metadata={"host": "h1"}) for i in range(3)])


def row_fluent_logger_python():
    from fluent import sender
    s = sender.FluentSender("py")
    ns = sender.FluentSender("py", nanosecond_precision=True)
    data = s._make_packet("app", T0, {"message": "python int"}) + \
        ns._make_packet("app", sender.EventTime(T0 + 0.5), {"message": "python nano"})
    return dict(name="py.app", data=data, ack=None, events=2, messages=2, records=[
        dict(message="python int", service_name="py.app", ts=T0 * 10**9, metadata={}),
        dict(message="python nano", service_name="py.app", ts=T0 * 10**9 + 500000000, metadata={})])


DOCKER_REC = {"container_id": "0123456789abcdef" * 4, "container_name": "/web", "source": "stdout",
              "log": "GET / 200"}


def row_docker_fluentd_driver_ack():
    """fluent-logger-golang with SubSecondPrecision and RequestAck, as Docker's fluentd driver sets it."""
    tag = "docker.web"
    chunk = base64.b64encode(struct.pack("<qQ", T0, 0x1234567890abcdef)).decode()  # getUniqueID
    data = b"\x94" + p(tag) + et(T0, 123456789) + p(DOCKER_REC) + p({"chunk": chunk})
    return dict(name=tag, data=data, ack=chunk, events=1, records=[
        dict(message="GET / 200", service_name=tag, ts=T0 * 10**9 + 123456789,
             metadata={"container_id": DOCKER_REC["container_id"], "container_name": "/web", "source": "stdout"})])


def row_fluent_logger_golang_plain():
    """fluent-logger-golang's defaults: an int64 time (msgp: 0xd2 int32 for today), an empty option map."""
    tag = "docker.plain"
    rec = dict(DOCKER_REC, log="plain line", source="stderr")
    data = b"\x94" + p(tag) + b"\xd2" + struct.pack(">i", T0) + p(rec) + b"\x80"
    return dict(name=tag, data=data, ack=None, events=1, records=[
        dict(message="plain line", service_name=tag, ts=T0 * 10**9,
             metadata={"container_id": rec["container_id"], "container_name": "/web", "source": "stderr"})])


ROWS = [row_fluentbit_v2_forward, row_fluentbit_v2_forward_otlp_ack, row_fluentbit_v2_compressed, row_v2_packed_bin,
        row_fluentbit_compat_time_as_integer, row_fluentbit_message_mode, lambda: row_fluentd("text"),
        lambda: row_fluentd("gzip"), row_fluent_logger_python, row_docker_fluentd_driver_ack,
        row_fluent_logger_golang_plain]


def counters(st):
    r, f = st["records"], st["forward"]
    return dict(received=r["received"], rejected=sum(r["rejected"].values()), messages=f["messages"],
                events=f["events"], acks=f["acks"], acks_failed=f["acks_failed"])




def test_forward_senders_table():
    tmp = TempDir("forward_senders")
    sink = Sink(tmp).start()
    a = Agent(tmp, sink.target, "--flush-interval-ms", "20").start()
    total = 0
    for make in ROWS:
        row = make()
        name, want = row["name"], row["records"]
        before = counters(a.stats())
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(a.socket)
        s.settimeout(30)
        s.sendall(row["data"])
        if row["ack"] is not None:
            assert recv_ack(s) == {"ack": row["ack"]}, name
        s.close()
        total += len(want)
        sink.wait_count(total)
        got = [e for e in sink.entries() if e["service_name"] == name]
        assert len(got) == len(want), (name, got)
        got.sort(key=lambda e: e["message"])
        for g, w in zip(got, sorted(want, key=lambda r: r["message"])):
            assert g["message"] == w["message"] and g["timestamp_unix_nano"] == w["ts"], (name, g, w)
            assert g["metadata"] == w["metadata"], (name, g["metadata"], w["metadata"])
            assert g["level"] == "INFO" and g["log_id"], (name, g)
        after = wait_for(lambda: (lambda c: c if c["received"] - before["received"] == len(want) else None)(
            counters(a.stats())), 30, "%s received" % name)
        delta = {k: after[k] - before[k] for k in after}
        assert delta == dict(received=len(want), rejected=0, messages=row.get("messages", 1), events=row["events"],
                             acks=1 if row["ack"] is not None else 0, acks_failed=0), (name, delta)
        print("     %-16s %d records, ack %s" % (name, len(want), "yes" if row["ack"] else "no"))
    entries = sink.entries()
    assert len(entries) == total and len({e["log_id"] for e in entries}) == total, "duplicates"
    assert a.stop() == 0, a.logtext()


if __name__ == "__main__":
    run([test_forward_senders_table])
