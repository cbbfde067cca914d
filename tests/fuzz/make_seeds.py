#!/usr/bin/python3
"""make_seeds.py — writes the fuzz targets' seed corpora (tests/fuzz/corpus/<target>/) from readable definitions.

The seeds are committed; run this again (with Debian's /usr/bin/python3, which has python3-msgpack) after changing
a definition here. It never touches regressions/ (crash inputs kept as they were found) nor the one seed that is
not generated: corpus/spool/real-agent-3-batches, a segment written by logagentd itself (how: docs/development.md,
Fuzzing).

  ingest/  one connection's bytes: a valid record of each docs/protocol.md form, each bad-input row of its table
  spool/   segment files: the real one, and the ways a disk or a crash breaks it
  config/  logagentd.conf: the packaged sample, a full valid file, and the ways an operator breaks it
  forward/ a limits byte (fuzz_forward.c) + a stream of Fluent Forward messages: each mode, each time form, gzip,
           acks, and the bad cases (protocol.md's Forward table, oversized events and messages, the item budget)
"""
import os
import struct
import sys
import zlib

import msgpack

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")
ROOT = os.path.dirname(os.path.dirname(HERE))


def pack(obj):
    return msgpack.packb(obj, use_bin_type=True)


def ext(code, data):
    return msgpack.ExtType(code, data)


def with_timestamp(raw):
    """{"message": "t", "timestamp": <raw msgpack bytes>}: for ext type -1, which python3-msgpack only packs
    from its Timestamp class (always in the shortest form)."""
    return b"\x82\xa7message\xa1t\xa9timestamp" + raw


def ext_minus1(data):
    fixed = {1: b"\xd4", 2: b"\xd5", 4: b"\xd6", 8: b"\xd7", 16: b"\xd8"}
    head = fixed.get(len(data), b"\xc7" + bytes([len(data)]))
    return head + b"\xff" + data


# ---- ingest -------------------------------------------------------------------------------------------------

def ingest_seeds():
    m = {"message": "hello"}
    full = {"message": "user logged in", "service_name": "auth", "level": "INFO", "trace_id": "trace-000001",
            "span_id": "span-000001", "log_id": "0123456789abcdef0123456789abcdef",
            "timestamp": 1725013845123456789, "user_id": "42"}
    django = {"message": "concurrent test log 000017", "service_name": "django-concurrent-test", "level": "WARNING",
              "trace_id": "concurrent-trace-000017", "span_id": "concurrent-span-000017", "adv_id": "1234567",
              "aweme_id": "7000000000000000017", "plan_id": 17, "monitor_type": "ctr", "co_id": 0.85,
              "timestamp": "2024-08-30T10:30:45.123456+00:00"}
    s = {
        "valid-minimal": pack(m),
        "valid-all-fields": pack(full),
        "valid-django-original-test-record": pack(django),
        "valid-stream-of-three": pack(m) + pack(full) + pack(django),
        "valid-level-warning-is-warn": pack({"message": "w", "level": "warning"}),
        "valid-level-critical-is-fatal": pack({"message": "c", "level": "CRITICAL"}),
        "valid-level-lowercase": pack({"message": "d", "level": "debug"}),
        "valid-level-unknown-kept": pack({"message": "n", "level": "NOTICE"}),
        "valid-level-empty-is-info": pack({"message": "e", "level": ""}),
        "valid-level-not-a-string": pack({"message": "e", "level": 3}),
        "valid-ts-int-ns": pack({"message": "t", "timestamp": 1725013845123456789}),
        "valid-ts-negative-int": pack({"message": "t", "timestamp": -1}),
        "valid-ts-float-seconds": pack({"message": "t", "timestamp": 1725013845.25}),
        "valid-ts-float32": b"\x82\xa7message\xa1t\xa9timestamp\xca\x4e\xcd\xa3\x54",
        "valid-ts-ext-32bit": with_timestamp(ext_minus1(struct.pack(">I", 1725013845))),
        "valid-ts-ext-64bit": with_timestamp(ext_minus1(struct.pack(">Q", (123456789 << 34) | 1725013845))),
        "valid-ts-ext-96bit": with_timestamp(ext_minus1(struct.pack(">Iq", 123456789, 1725013845))),
        "valid-ts-ext-96bit-negative": with_timestamp(ext_minus1(struct.pack(">Iq", 999999999, -86400))),
        "valid-ts-ext-wrong-size-kept": with_timestamp(ext_minus1(b"\x01\x02\x03")),
        "bad-ts-ext-64bit-ns-past-second-kept": with_timestamp(ext_minus1(struct.pack(">Q", (10 ** 9 << 34) | 1))),
        "bad-ts-ext-96bit-ns-past-second-kept": with_timestamp(ext_minus1(struct.pack(">Iq", 10 ** 9, 1))),
        "bad-ts-dates-kept": pack({"message": "t", "timestamp": "2024-02-30T00:00:00Z"}) +
                             pack({"message": "t", "timestamp": "2023-02-29T00:00:00Z"}) +
                             pack({"message": "t", "timestamp": "1969-12-31T23:59:59Z"}) +
                             pack({"message": "t", "timestamp": -5}),
        "repeated-field-keys": b"\x83\xa7message\xa1a\xa6log_id\xa1x\xa7message\xa1b",
        "valid-ts-rfc3339": pack({"message": "t", "timestamp": "2024-08-30T10:30:45.123456+00:00"}),
        "valid-ts-rfc3339-z": pack({"message": "t", "timestamp": "2024-08-30t10:30:45Z"}),
        "valid-ts-rfc3339-offset": pack({"message": "t", "timestamp": "1999-12-31 23:59:60.999999999-12:30"}),
        "valid-ts-unparsable-kept-as-metadata": pack({"message": "t", "timestamp": "yesterday"}),
        "valid-ts-bool-kept-as-metadata": pack({"message": "t", "timestamp": True}),
        "valid-log-id-empty-generated": pack({"message": "l", "log_id": ""}),
        "valid-meta-every-type": pack({"message": "m", "s": "str", "i": 1234567, "n": -42, "f": 0.85,
                                       "b": True, "z": None, "map": {"a": [1, 2, {"b": None}]}, "arr": [1, "x"],
                                       "bin": b"\x00\xff\x10", "ext": ext(5, b"abcd"), "big": 2 ** 64 - 1,
                                       "small": -2 ** 63}),
        "valid-meta-float32": b"\x82\xa7message\xa1m\xa1f\xca\x3f\x80\x00\x00",
        "valid-meta-nan-inf": pack({"message": "m", "nan": float("nan"), "inf": float("inf"),
                                    "in_json": [float("nan"), float("-inf")]}),
        "valid-meta-json-escapes": pack({"message": "m", "j": {"q\"uote": "back\\slash\n\t\x01", "k": "\u00e9"}}),
        "valid-meta-non-string-keys": msgpack.Packer(use_bin_type=True).pack_map_pairs(
            [("message", "m"), (1, "int key"), (True, "bool key"), (None, "nil key"), (b"bin", "bin key"),
             (2.5, "float key"), (-7, "negative key")]),
        "valid-meta-container-keys": b"\x83\xa7message\xa1m\x91\x01\xa1a\x81\xa1k\x01\xa1b",
        "valid-meta-json-container-keys": b"\x82\xa7message\xa1m\xa1j\x82\x91\x01\x81\xa1k\x02\x81\xa1k\x02\xc0",
        "valid-reserved-keys-dropped": pack({"message": "r", "_pid": 1, "_uid": 0, "_comm": "evil",
                                             "_": "x", "source": {"pid": 1}}),
        "valid-invalid-utf8-repaired": b"\x83\xa7message\xa4ab\xff\xfe\xa3k\xc0\x80\xa5\xed\xa0\x80xy"
                                       b"\xacservice_name\xa3\xf5\x80\x80",
        "valid-message-empty": pack({"message": ""}),
        "valid-message-twice": b"\x82\xa7message\xa5first\xa7message\xa6second",
        "valid-depth-32": b"\x82\xa7message\xa1d\xa1n" + b"\x91" * 31 + b"\xc0",
        "valid-str8-str16-str32": b"\x83\xa7message\xd9\x03abc\xa1a\xda\x00\x02xy\xa1b\xdb\x00\x00\x00\x01z",
        "valid-map16-map32": b"\xde\x00\x01\xa7message\xa1m" + b"\xdf\x00\x00\x00\x01\xa7message\xa1n",
        "valid-fixext-all": pack({"message": "x", "a": ext(1, b"1"), "b": ext(2, b"12"), "c": ext(3, b"1234"),
                                  "d": ext(4, b"12345678"), "e": ext(5, b"1234567890123456"),
                                  "f": ext(6, b"123"), "g": ext(7, b"x" * 300)}),
        "bad-not-msgpack-after-a-record": pack({"message": "before garbage"}) + b"\xc1\xc1\xc1garbage",
        "bad-only-0xc1": b"\xc1",
        "bad-non-map-then-good": pack([1, 2, 3]) + pack({"message": "after the array"}),
        "bad-fluent-forward-array": pack(["tag", 1725013845, {"message": "forward"}]),
        "bad-scalars-are-not-records": pack(1) + pack("str") + pack(None) + pack(2.5) + pack(b"bin"),
        "bad-missing-message": pack({"level": "INFO", "no": "message"}),
        "bad-message-not-string": pack({"message": 42}) + pack({"message": "after the bad one"}),
        "bad-message-is-bin": pack({"message": b"bytes"}),
        "bad-empty-map": pack({}),
        "bad-header-announcing-huge-map": pack({"message": "small first"}) + b"\xdf\xff\xff\xff\xff",
        "bad-header-announcing-huge-array": b"\xdd\xff\xff\xff\xff",
        "bad-header-announcing-huge-str": b"\x81\xa7message\xdb\xff\xff\xff\xff",
        "bad-header-announcing-huge-bin": b"\x81\xa7message\xa1x\xc6\x7f\xff\xff\xff",
        "bad-header-announcing-huge-ext": b"\x82\xa7message\xa1x\xa1e\xc9\x7f\xff\xff\xff\x01",
        "bad-record-over-256-bytes": pack({"message": "x" * 300}),
        "bad-truncated-mid-record": pack({"message": "complete"}) + pack({"message": "cut short here"})[:-5],
        "bad-truncated-mid-header": pack({"message": "complete"}) + b"\xdf\x00\x00",
        "bad-depth-33": b"\x81\xa7message" + b"\x91" * 32 + b"\xc0",
        "valid-deep-json-metadata": b"\x82\xa7message\xa1m\xa1j" + b"\x91" * 30 + b"\x80",
    }
    return s


# ---- spool ----------------------------------------------------------------------------------------------------

def frame(batch_id, n, payload, crc=None):
    body = struct.pack("<IQ", n, batch_id)
    if crc is None:
        crc = zlib.crc32(payload, zlib.crc32(body)) & 0xffffffff
    return struct.pack("<III", 0x3153414c, len(payload), crc) + body + payload


def frames_of(seg):
    out, off = [], 0
    while off + 24 <= len(seg):
        length = struct.unpack_from("<I", seg, off + 4)[0]
        out.append((off, 24 + length))
        off += 24 + length
    return out


def spool_seeds():
    real_path = os.path.join(CORPUS, "spool", "real-agent-3-batches")
    with open(real_path, "rb") as f:
        real = f.read()
    fr = frames_of(real)
    assert len(fr) == 3 and fr[-1][0] + fr[-1][1] == len(real), "real-agent-3-batches is not 3 whole frames"
    second = fr[1][0]
    payload = b"\x0a\x05\x1a\x03abc"
    s = {
        "empty": b"",
        "one-small-frame": frame(1, 1, payload),
        "zero-length-frame": frame(7, 0, b""),
        "frames-then-garbage": frame(1, 1, payload) + frame(2, 1, payload) + b"garbage after",
        "header-only-torn": frame(1, 1, payload)[:24],
        "half-header": frame(1, 1, payload)[:10],
        "torn-inside-last-frame": real[:len(real) - 17],
        "torn-inside-second-header": real[:second + 12],
        "bad-crc-in-second-frame": real[:second + 40] + bytes([real[second + 40] ^ 0x01]) + real[second + 41:],
        "bad-crc-field": frame(1, 1, payload, crc=0xdeadbeef) + frame(2, 1, payload),
        "bad-magic-in-second-frame": real[:second] + b"LAS2" + real[second + 4:],
        "length-past-end-of-file": real[:second + 4] + struct.pack("<I", 0x7fffffff) + real[second + 8:],
        "length-max-u32": frame(1, 1, payload) + struct.pack("<III", 0x3153414c, 0xffffffff, 0) + b"\0" * 12,
        "count-and-id-extremes": frame(2 ** 64 - 1, 2 ** 32 - 1, payload) + frame(0, 0, payload),
        "duplicate-batch-ids": frame(5, 1, payload) + frame(5, 1, payload),
        "all-frames-corrupt": frame(1, 1, payload, crc=1) + frame(2, 1, payload, crc=2),
        "not-a-segment": b"this is not a spool segment\n",
    }
    return s


# ---- config ---------------------------------------------------------------------------------------------------

FULL = """# every key, valid, with the suffix forms
[logagentd]
socket = /run/logagent/ingest.sock
stats-socket = /run/logagent/stats.sock
stats-socket-mode = 0660
stats-socket-group = 0
metrics-listen = 127.0.0.1:9464
health-failing-ms = 2m
health-spool-pct = 80
upstream = dns:///logs.example.com:50051
upstream-rpc = batch
batch-method = /logagent.v1.LogService/BatchWriteLogs
unary-method = /logagent.v1.LogService/WriteLog
rpc-timeout-ms = 5s
buffer-bytes = 128MiB
batch-max-records = 500
batch-max-bytes = 1M
flush-interval-ms = 250ms
max-inflight = 8
max-record-bytes = 64KiB
drain-timeout-ms = 1h
retry-initial-ms = 50
retry-max-ms = 1min
retry-max-elapsed-s = 600
on-full = drop-oldest
buffer = disk
spool-dir = /var/spool/logagent
spool-max-bytes = 2G
spool-fsync = always
log-level = warning
"""


def config_seeds():
    with open(os.path.join(ROOT, "packaging", "logagentd.conf"), "rb") as f:
        sample = f.read()
    s = {
        "packaged-sample-logagentd.conf": sample,
        "every-key-valid": FULL.encode(),
        "empty": b"",
        "top-level-keys-no-section": b"max-inflight = 2\nlog_level = debug\n",
        "comments-inline": b"[logagentd]\nbuffer-bytes = 64MiB  # sixty-four\nmax-inflight = 4 ; four\n; c\n# c\n",
        "crlf-and-bom": b"\xef\xbb\xbf[logagentd]\r\nmax-inflight = 2\r\n",
        "underscore-keys": b"batch_max_records = 10\nflush_interval_ms = 1s\n",
        "bad-unknown-key": b"[logagentd]\nno-such-key = 1\n",
        "bad-unknown-section": b"[other]\nmax-inflight = 2\n",
        "bad-duplicate-key": b"max-inflight = 2\nmax-inflight = 3\n",
        "bad-no-equals": b"[logagentd]\nmax-inflight\n",
        "bad-unclosed-section": b"[logagentd\nmax-inflight = 2\n",
        "bad-size-suffix": b"buffer-bytes = 64XB\n",
        "bad-size-overflow": b"buffer-bytes = 99999999999999999999GiB\nspool-max-bytes = 18446744073709551615G\n",
        "bad-below-minimum": b"buffer-bytes = 1\nbatch-max-records = 0\n",
        "bad-negative": b"max-inflight = -1\n",
        "bad-enum": b"upstream-rpc = grpc\non-full = drop\nbuffer = ssd\nspool-fsync = sometimes\n",
        "bad-log-level": b"log-level = verbose\n",
        "bad-mode": b"stats-socket-mode = 0999\n",
        "bad-mode-too-wide": b"stats-socket-mode = 7777\n",
        "bad-duration-suffix": b"flush-interval-ms = 5 weeks\n",
        "bad-empty-number": b"max-inflight =\n",
        "bad-string-too-long": b"socket = /" + b"x" * 150 + b"\n",
        "bad-line-too-long": b"upstream = " + b"h" * 300 + b":50051\n",
        "bad-disk-without-spool-dir": b"buffer = disk\n",
        "bad-record-bigger-than-buffer-16th": b"buffer-bytes = 1MiB\nmax-record-bytes = 1MiB\n",
        "bad-no-such-group": b"stats-socket-group = no-such-group-here\n",
        "bad-indented-key": b"[logagentd]\nmax-inflight = 2\n  log-level = debug\n",
        "bad-nul-byte": b"max-inflight = 2\x00\nlog-level = debug\n",
        "bad-binary": bytes(range(256)),
    }
    return s


# ---- forward ------------------------------------------------------------------------------------------------

# fuzz_forward.c's first byte: bit 0 = max_record 4 KiB (else 256 B); (byte >> 1) % 3 = message limit 1, 4, 16 x.
L256_X1, L4K_X1, L4K_X4, L4K_X16, L256_X16 = b"\x00", b"\x01", b"\x03", b"\x05", b"\x04"


def forward_seeds():
    import gzip as gz

    def gzip_member(data):
        return gz.compress(data, compresslevel=6, mtime=0)  # mtime 0: the same bytes on every run

    et = lambda s, ns: ext(0, struct.pack(">II", s, ns))
    T = 1725013845
    rec = lambda i: {"message": "event %d" % i, "i": i}
    packed = b"".join(pack([T + i, rec(i)]) for i in range(4))
    big = "x" * 400  # past max_record 256 by more than the mapping adds (fuzz_forward.c allows 100 bytes)
    s = {
        "message-int": L4K_X4 + pack(["app.web", T, {"message": "hi", "level": "warn", "user": "u1"}]),
        "message-eventtime-chunk": L4K_X4 + pack(["app", et(T, 123456789), {"log": "from docker"}, {"chunk": "c1"}]),
        "message-float-negative": L4K_X4 + pack(["app", -1.5, {"msg": "m"}]) + pack(["app", -3, {"msg": "n"}]),
        "message-renamed-keys": L4K_X4 + pack(["t", T, {"message": {"not": "str"}, "log": "l", "service_name": "x",
                                                          "timestamp": 5}]),
        "forward-mode": L4K_X4 + pack(["t", [[et(T, 1), rec(0)], [T, rec(1)], [T + 0.5, rec(2)]], {"chunk": "abc"}]),
        "packed-bin": L4K_X4 + pack(["t", packed, {"chunk": "p", "size": 4}]),
        "packed-str": L4K_X4 + msgpack.packb(["t", packed], use_bin_type=False),
        "compressed-gzip-two-members": L4K_X16 + pack(["t", gzip_member(packed[:20]) + gzip_member(packed[20:]),
                                                      {"compressed": "gzip", "chunk": "z"}]),
        "compressed-text": L4K_X4 + pack(["t", packed, {"compressed": "text"}]),
        "native-then-forward": L4K_X4 + pack({"message": "native"}) + pack(["t", T, {"message": "fw"}]),
        "bad-tag-not-string": L4K_X4 + pack([42, T, {"message": "x"}]),
        "bad-too-short-too-long": L4K_X4 + pack(["t"]) + pack(["t", T, {}, {}, "extra"]),
        "bad-second-element": L4K_X4 + pack(["t", {"message": "x"}]),
        "bad-option-not-map": L4K_X4 + pack(["t", T, {"message": "x"}, "opt"]),
        "bad-eventtime-ext": L4K_X4 + pack(["t", ext(0, b"\x00\x01"), {"message": "x"}]) +
                             pack(["t", ext(0, b"\x00\x00\x00\x01\xff\xff\xff\xff"), {"message": "ns"}]),
        "bad-forward-entries": L4K_X4 + pack(["t", [[T, rec(0)], "no", [T, "no map"], [T], [T, rec(4)]]]),
        "bad-packed-not-msgpack": L4K_X4 + pack(["t", pack([T, rec(0)]) + b"\xc1\xc1garbage"]),
        "bad-packed-truncated": L4K_X4 + pack(["t", packed[:-3]]),
        "bad-gzip-corrupt": L4K_X4 + pack(["t", b"\x1f\x8b\x08\x00garbage", {"compressed": "gzip"}]),
        "bad-gzip-cut": L4K_X4 + pack(["t", gzip_member(packed)[:-6], {"compressed": "gzip"}]),
        "bad-gzip-bomb": L4K_X1 + pack(["t", gzip_member(b"\x00" * (256 << 10)), {"compressed": "gzip"}]),
        "bad-compression-unknown": L4K_X4 + pack(["t", b"", {"compressed": "zstd"}]),
        "bad-compressed-not-packed": L4K_X4 + pack(["t", [[T, rec(0)]], {"compressed": "gzip"}]),
        "oversized-event-forward-mode": L256_X16 + pack(["t", [[T, rec(0)], [T, {"message": big}], [T, rec(2)]]]),
        "oversized-event-message-mode": L256_X16 + pack(["t", T, {"message": big}]),
        "oversized-event-packed": L256_X16 + pack(["t", pack([T, rec(0)]) + pack([T, {"message": big}]) +
                                                  pack([T, rec(2)])]),
        "oversized-event-gzip": L256_X16 + pack(["t", gzip_member(pack([T, {"message": big}]) + pack([T, rec(1)])),
                                                {"compressed": "gzip"}]),
        "oversized-message": L256_X1 + pack(["t", T, {"message": "before"}]) + pack(["t", [[T, rec(i)]
                                                                                    for i in range(30)]]),
        "oversized-item-budget": L4K_X16 + pack(["t", [[1, {"a": 1}] for _ in range(1000)]]),
        # Fluent Bit 2.1+'s v2 entries [[time, metadata], record] (forward.h), its group markers, Message mode's
        # option metadata, and bad v2 heads
        "v2-forward-mode": L4K_X4 + pack(["fb", [[[et(T, 1), {}], rec(0)], [[et(T, 2), {"otlp": {"a": 1}}], rec(1)],
                                                [[et(0xffffffff, 0), {"g": 1}], {"res": 1}], [[T, {}], rec(3)],
                                                [[et(0xfffffffe, 0), {}], {}]],
                                         {"size": 5, "chunk": "k", "fluent_signal": 0}]),
        "v2-packed": L4K_X4 + pack(["fb", b"".join(pack([[et(T, i), {"m": i} if i % 2 else {}], rec(i)])
                                                  for i in range(4))]),
        "v2-compressed": L4K_X16 + pack(["fb", gzip_member(b"".join(pack([[et(T, i), {}], rec(i)]) for i in range(4))),
                                         {"size": 4, "compressed": "gzip", "chunk": "z2", "fluent_signal": 0}]),
        "v2-message-option-metadata": L4K_X4 + pack(["dyn", et(T, 5), {"log": "l"},
                                                     {"chunk": "c", "fluent_signal": 0, "metadata": {"k": "v"}}]),
        "v2-bad-heads": L4K_X4 + pack(["t", [[[T], rec(0)], [[T, "meta"], rec(1)], [[T, {}, 1], rec(2)],
                                             [["str", {}], rec(3)], [[T, {"forward_metadata": 1}],
                                                                     {"message": "m", "forward_metadata": 2}]]]),
        "bad-times-kept": L4K_X4 + pack(["t", [[-5, rec(0)], [2 ** 64 - 1, rec(1)], [-0.5, rec(2)],
                                               [et(T, 10 ** 9), rec(3)], [msgpack.Timestamp(T), rec(4)]]]),
        "ack-chunk-kinds": L4K_X4 + pack(["t", T, {"message": "a"}, {"chunk": 7}]) +
                           pack(["t", T, {"message": "b"}, {"chunk": "c" * 600}]) +
                           pack(["t", T, {"message": "c"}, None]),
    }
    return s


def write(target, seeds):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    for name, data in seeds.items():
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)
    print("%s: %d seeds" % (target, len(seeds)))


def main():
    write("ingest", ingest_seeds())
    write("spool", spool_seeds())
    write("config", config_seeds())
    write("forward", forward_seeds())
    return 0


if __name__ == "__main__":
    sys.exit(main())
