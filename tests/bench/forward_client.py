#!/usr/bin/python3
"""forward_client.py — the Fluent Forward sender of e2e_bench.py --forward EVENTS (a benchmark client, not a test).

    forward_client.py --prepare FILE COUNT WORKERS EVENTS   packs the messages into FILE (before the clock)
    forward_client.py SOCKET FILE                            sends them

Sends COUNT records as PackedForward messages (`[tag, bin(entries)]`, EVENTS entries `[EventTime, record]` each,
no option: no acks) over WORKERS connections to the agent's Unix socket, and prints one JSON line shaped like
logagent-bench's report (success_count, failed_count, logs_per_second, duration_seconds, bench_cpu_seconds). The
records are the original service's shape as a Forward sender has them (service_name is the tag, the time is the
event time; message, level, trace_id, span_id, adv_id, aweme_id, plan_id, monitor_type, co_id: ~200 bytes of
msgpack), distinct by message, trace and span ids. Every message is packed before the clock starts (--prepare:
packing in Python is not what is measured). Standard library only: the few msgpack forms needed are packed by hand."""
import json
import pickle
import random
import socket
import struct
import sys
import threading
import time

TAG = "django-concurrent-test"


def p_str(s):
    b = s.encode()
    n = len(b)
    if n < 32:
        return bytes([0xa0 | n]) + b
    if n < 256:
        return b"\xd9" + bytes([n]) + b
    return b"\xda" + struct.pack(">H", n) + b


def p_uint(v):
    if v < 128:
        return bytes([v])
    if v < 256:
        return b"\xcc" + bytes([v])
    if v < 65536:
        return b"\xcd" + struct.pack(">H", v)
    if v < 1 << 32:
        return b"\xce" + struct.pack(">I", v)
    return b"\xcf" + struct.pack(">Q", v)


def p_bin(b):
    n = len(b)
    if n < 256:
        return b"\xc4" + bytes([n]) + b
    if n < 65536:
        return b"\xc5" + struct.pack(">H", n) + b
    return b"\xc6" + struct.pack(">I", n) + b


def entry(i, rnd, now):
    rec = [("message", p_str("Concurrent test log entry %d" % i)),
           ("level", p_str(rnd.choice(("INFO", "WARN", "ERROR", "DEBUG")))),
           ("trace_id", p_str("concurrent-trace-%06d" % i)),
           ("span_id", p_str("concurrent-span-%06d" % i)),
           ("adv_id", p_uint(rnd.randint(1000000, 9999999))),
           ("aweme_id", p_uint(rnd.randint(100000000, 999999999))),
           ("plan_id", p_uint(rnd.randint(10000, 99999))),
           ("monitor_type", p_str(rnd.choice(("impression", "click", "conversion", "view")))),
           ("co_id", p_uint(rnd.randint(1000, 9999)))]
    body = bytes([0x80 | len(rec)]) + b"".join(p_str(k) + v for k, v in rec)
    t = b"\xd7\x00" + struct.pack(">II", int(now), (i * 7919) % 1000000000)
    return b"\x92" + t + body


def messages(first, n, events, rnd, now):
    out = []
    for start in range(first, first + n, events):
        k = min(events, first + n - start)
        entries = b"".join(entry(i, rnd, now) for i in range(start, start + k))
        out.append(b"\x92" + p_str(TAG) + p_bin(entries))
    return out


def main():
    if sys.argv[1] == "--prepare":
        path, count, workers, events = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
        rnd = random.Random(1)
        now = time.time()
        per = [count // workers + (1 if w < count % workers else 0) for w in range(workers)]
        work, first = [], 1
        for n in per:
            work.append(messages(first, n, events, rnd, now))
            first += n
        with open(path, "wb") as f:
            pickle.dump({"count": count, "work": work}, f, protocol=pickle.HIGHEST_PROTOCOL)
        return 0
    path = sys.argv[1]
    with open(sys.argv[2], "rb") as f:
        d = pickle.load(f)
    count, work, workers = d["count"], d["work"], len(d["work"])
    socks = []
    for _ in range(workers):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(path)
        socks.append(s)
    failed = []

    def send(s, msgs):
        try:
            for m in msgs:
                s.sendall(m)
        except OSError as e:
            failed.append(str(e))

    cpu0 = time.process_time()
    t0 = time.monotonic()
    threads = [threading.Thread(target=send, args=(s, m)) for s, m in zip(socks, work)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    dur = time.monotonic() - t0
    cpu = time.process_time() - cpu0
    for s in socks:
        s.close()
    print(json.dumps({"success_count": 0 if failed else count, "failed_count": count if failed else 0,
                      "logs_per_second": round(count / dur, 1) if dur > 0 else None,
                      "duration_seconds": round(dur, 4), "bench_cpu_seconds": round(cpu, 4),
                      "error_summary": failed[:3]}))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
