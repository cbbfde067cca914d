"""test_speedups.py — logagent._speedups, the Python client's C encoder (client-shim/python/logagent/_speedups.c),
against the Python encoder it accelerates (_record.py, the reference):

- the implementation this run must have (LOGAGENT_TEST_IMPLEMENTATION, set by tests/python/CMakeLists.txt) is the
  one `logagent.implementation` reports, and LOGAGENT_PURE_PYTHON=1 alone forces the pure one;
- differential: thousands of random write_log argument sets (every msgpack size boundary, nested containers,
  core keys in the metadata, and the values only the Python path handles: datetimes, sets, big ints, subclasses,
  objects, lone surrogates, over-deep nesting) packed by both, with the log id and time fixed: the same bytes, or
  the same error; the C encoder itself must take every plain record;
- write_log in C (Client.write_log and logagent.write_log) against the Python one, call by call with the log id
  generator in the same state: the same result or exception (odd signatures too), the same bytes to _enqueue
  (the "now" timestamps aside), the same counters;
- a million calls of pack() and of the C write_log: the reference counts of the arguments unchanged,
  tracemalloc's and the process's memory flat;
- the same checks in a child under PYTHONMALLOC=debug (200,000 calls), and in ASan builds (LOGAGENT_ASAN_RUNTIME)
  in a child with the ASan runtime preloaded into /usr/bin/python3 (30,000 calls: memory errors, not leaks, are
  what ASan adds; detect_leaks=0: the interpreter's own allocations).

Delivery through the real agent with the C encoder is every other tests/python test's python_NAME run."""
import datetime
import enum
import os
import random
import subprocess
import sys
import time
import tracemalloc

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
sys.path.insert(0, os.path.join(HERE, "..", "..", "client-shim", "python"))

import logagent  # noqa: E402
from logagent import _record  # noqa: E402
from harness import run, scaled  # noqa: E402

PY = "/usr/bin/python3"
CORE = ("message", "level", "service_name", "trace_id", "span_id", "log_id", "timestamp")


class Level(enum.IntEnum):
    HIGH = 7


class Text(str):
    pass


class Thing:
    def __str__(self):
        return "a thing"


class Broken:
    def __str__(self):
        raise RuntimeError("no text")


def boundary_ints():
    out = [0, 1, -1]
    for b in (5, 7, 8, 15, 16, 31, 32, 63, 64):
        for v in (1 << b, -(1 << b)):
            out += [v - 1, v, v + 1]
    return out


INTS = boundary_ints()  # some beyond 64 bits: sent as text by the Python path
PLAIN_INTS = [v for v in INTS if -(1 << 63) <= v < (1 << 64)]
LENGTHS = (0, 1, 31, 32, 255, 256, 65535, 65536)


def rand_str(rnd):
    n = rnd.choice(LENGTHS) if rnd.random() < 0.1 else rnd.randrange(40)
    alphabet = rnd.choice(("abc xyz", "é€😀ü", "a\x00\n\"\\"))
    piece = "".join(rnd.choices(alphabet, k=min(n, 64)))
    return (piece * (n // 64 + 1))[:n]  # long ones repeat a random piece: the generator stays cheap


def rand_scalar(rnd, plain):
    kind = rnd.randrange(8 if plain else 17)
    if kind == 0:
        return rand_str(rnd)
    if kind == 1:
        return rnd.choice(PLAIN_INTS if plain else INTS) if rnd.random() < 0.5 else rnd.randrange(-10 ** 6, 10 ** 6)
    if kind == 2:
        return rnd.choice((0.0, -0.0, 1.5, -2.25e300, float("inf"), float("-inf"), float("nan"), rnd.random()))
    if kind == 3:
        return rnd.choice((True, False))
    if kind == 4:
        return None
    if kind == 5:
        n = rnd.choice(LENGTHS) if rnd.random() < 0.1 else 5
        return (rnd.randbytes(min(n, 64)) * (n // 64 + 1))[:n]
    if kind == 6:
        return "log-%d" % rnd.randrange(1000)
    if kind == 7:
        return rnd.randrange(1 << 64)
    # only the Python path: it converts these (or raises)
    return rnd.choice((
        lambda: datetime.datetime(2026, 12, 7, 18, 0, rnd.randrange(60), tzinfo=datetime.timezone.utc),
        lambda: datetime.datetime(2026, 12, 7, 18, 0, rnd.randrange(60)),
        lambda: datetime.date(2026, 12, 7), lambda: datetime.time(18, 1, 2),
        lambda: 1 << 64, lambda: -(1 << 63) - 1, lambda: 10 ** 30,
        lambda: Level.HIGH, lambda: Text("sub"), lambda: Thing(), lambda: bytearray(b"ba"),
        lambda: memoryview(b"mv"), lambda: "lone \udc80 surrogate", lambda: {1, 2}, lambda: frozenset(),
        lambda: Broken(), lambda: complex(1, 2),
    ))()


def rand_value(rnd, plain, depth=0):
    r = rnd.random()
    if depth < 40 and r < 0.12:
        n = rnd.choice((0, 1, 2, 3, 16, 17)) if rnd.random() < 0.2 else rnd.randrange(4)
        keys = [rand_scalar(rnd, True) if rnd.random() < 0.3 else "k%d" % i for i in range(n)]
        if not plain and rnd.random() < 0.2:
            keys.append(rnd.choice(((1, 2), 1 << 70, "k0", Thing())))
        d = {}
        for k in keys:
            try:
                d[k] = rand_value(rnd, plain, depth + 1)
            except TypeError:  # an unhashable key
                pass
        return d
    if depth < 40 and r < 0.22:
        items = [rand_value(rnd, plain, depth + 1) for _ in range(rnd.choice((0, 1, 15, 16)) if rnd.random() < 0.2
                                                                   else rnd.randrange(4))]
        return items if rnd.random() < 0.7 else tuple(items)
    return rand_scalar(rnd, plain)


def deep(n):
    v = "bottom"
    for i in range(n):
        v = [v] if i % 2 else {"d": v}
    return v


def rand_call(rnd, plain):
    """(message, service_name, level, trace_id, span_id, metadata) of one random write_log."""
    def core():
        return None if rnd.random() < 0.3 else (rand_str(rnd) if rnd.random() < 0.7 else rand_value(rnd, plain))
    meta = {}
    for _ in range(rnd.choice((0, 1, 5, 14, 15, 16, 20))):
        k = rnd.choice(CORE + ("_reserved",)) if rnd.random() < 0.2 else rand_str(rnd) or "k"
        if rnd.random() < 0.05:
            meta[k] = deep(rnd.choice((29, 30, 31, 32)))
        elif k == "timestamp" and rnd.random() < 0.5:
            meta[k] = rnd.choice(("2026-12-07T18:00:00Z", 1765130400123456789, 1765130400.5))
        else:
            meta[k] = rand_value(rnd, plain)
    if not plain and rnd.random() < 0.05:
        meta[rnd.choice((7, b"bytes key", ("t",)))] = "non-str key"  # Client.write(metadata=...) takes any dict
    level = rnd.choice((None, "INFO", "warn", "TRACE", 5)) if rnd.random() < 0.7 else core()
    return (rand_str(rnd) if rnd.random() < 0.9 else "Concurrent test log entry 1", core(), level, core(), core(),
            meta)


def outcome(f, args):
    try:
        return f(*args)
    except Exception as e:  # RecordError, or what a str() of the caller's object raised
        return (type(e), str(e))


def reference(*a):
    return _record.pack(_record.build(*a))


def differential(count, seed):
    """count random calls of each kind (plain only, then anything): encode() == the Python path."""
    fast = _record.fast_pack
    rnd = random.Random(seed)
    taken = 0
    for plain in (True, False):
        for i in range(count):
            call = rand_call(rnd, plain) + ("%032x" % rnd.getrandbits(128), rnd.randrange(1 << 63))
            want = outcome(reference, call)
            got = outcome(_record.encode, call)
            assert got == want, "call %d (plain=%s): %r\nC/encode: %r\nPython:   %r" % (i, plain, call, got, want)
            if fast is not None:
                direct = fast(*call)
                assert direct is None or direct == want, (call, direct, want)
                if plain and isinstance(want, bytes):
                    assert direct is not None, "a plain record left to the Python path: %r" % (call,)
                taken += direct is not None
    return taken


def capture_client(max_record_bytes=None):
    """A Client whose _enqueue keeps the bytes instead of buffering them (the C write_log calls it by name too)."""
    c = logagent.Client("/nonexistent/logagent-test.sock", max_record_bytes=max_record_bytes)
    got = []

    def enqueue(data):
        got.append(data)
        return "" if len(got) % 97 else "logagent buffer full (test): record dropped"  # some refusals too
    c._enqueue = enqueue
    return c, got


def same_but_now(a, b):
    """Two records' bytes equal once the "now" timestamps (uint64 after the key) are zeroed."""
    key = b"\xa9timestamp\xcf"
    def zero(x):
        i = x.find(key)
        return x if i < 0 else x[:i + len(key)] + bytes(8) + x[i + len(key) + 8:]
    return zero(a) == zero(b)


def odd_calls(rnd):
    """(args, kwargs) of write_log calls the C writer must bind, hand back or refuse as the Python one does."""
    calls = [(("m",), {}), (("m", "svc", "WARN", "t", "s"), {"a": 1}), (("m", None, None), {"x": [1, {"y": b"z"}]}),
             ((), {"message": "kw", "level": "ERROR", "log_id": "mine", "timestamp": 1765130400.5}),
             ((), {}), (("m", "a", "b", "c", "d", "e"), {}), (("m",), {"message": "twice"}),
             (("m", "svc"), {"service_name": "twice"}), ((None,), {}), ((5,), {"a": 1}), ((Text("sub"),), {}),
             (("m",), {"when": datetime.datetime(2026, 12, 7, 18, 0)}), (("m",), {"deep": deep(31)}),
             (("m",), {"deep": deep(32)}), (("m",), {"broken": Broken()}), (("m",), {"big": "x" * 5000}),
             (("lone \udc80",), {}), (("m",), {"timestamp": datetime.datetime(2026, 12, 7, 18, 0)}),
             (("m",), {"k%d" % i: i for i in range(40)}), (("m",), {Text("subkey"): 1}),
             (("m",), {"service_name": None, "trace_id": "tr", "_x": 1})]
    for _ in range(3000):
        message, service, level, trace, span, meta = rand_call(rnd, rnd.random() < 0.7)
        meta = {k: v for k, v in meta.items() if isinstance(k, str)}  # keywords are str
        kw = {k: v for k, v in (("service_name", service), ("level", level), ("trace_id", trace),
                                ("span_id", span)) if rnd.random() < 0.8}
        clash = [k for k in kw if k in meta]
        if clash:
            continue
        kw.update(meta)
        calls.append(((message,), kw) if rnd.random() < 0.8 else ((), dict(kw, message=message)))
    return calls


def writer_differential(seed):
    """Client.write_log in C against the Python one, call by call with the same log id generator state: the same
    result (or exception), the same bytes handed to _enqueue, the same counters."""
    from logagent import _client
    cc, got_c = capture_client(4096)
    pc, got_p = capture_client(4096)
    py_write = logagent.Client.write_log.__get__(pc)
    assert type(cc.write_log) is not type(py_write)
    rnd = random.Random(seed)
    for i, (args, kw) in enumerate(odd_calls(rnd)):
        state = _client._ids.getstate()
        r_c = outcome(lambda: cc.write_log(*args, **kw), ())
        _client._ids.setstate(state)
        r_p = outcome(lambda: py_write(*args, **kw), ())
        assert r_c == r_p, "call %d %r %r:\nC:      %r\nPython: %r" % (i, args, kw, r_c, r_p)
        assert len(got_c) == len(got_p) and (not got_c or same_but_now(got_c[-1], got_p[-1])), (i, args, kw)
    keys = ("written", "dropped", "rejected")
    assert [cc.get_stats()[k] for k in keys] == [pc.get_stats()[k] for k in keys]
    # the module's write_log on the process-wide client, the same way
    _client.close_default(0)
    dc = logagent.configure(socket_path="/nonexistent/logagent-test.sock")
    got = []
    dc._enqueue = lambda data: got.append(data) or ""
    for args, kw in odd_calls(random.Random(seed))[:300]:
        state = _client._ids.getstate()
        r_c = outcome(lambda: logagent.write_log(*args, **kw), ())
        n = len(got)
        _client._ids.setstate(state)
        r_p = outcome(lambda: logagent._write_log_py(*args, **kw), ())
        assert r_c == r_p, (args, kw, r_c, r_p)
        assert len(got) in (n, n + 1) and (len(got) == n or same_but_now(got[-1], got[-2])), (args, kw)
    _client.close_default(0)
    cc.close(0)
    pc.close(0)
    return len(got_c)


class Owner:
    """A stand-in Client for a bare Buffer: counts the wakes its enqueue asks for."""
    def __init__(self):
        self.wakes = 0

    def _wake(self):
        self.wakes += 1


def slow_path(owner, data):
    """A stand-in Client._enqueue for a bare Buffer (its slow path): keeps nothing, says so."""
    return "" if len(data) % 2 else "logagent buffer full (test): record dropped"


def buffer_ops(rnd, n):
    """n random operations on a Buffer, as (name, argument or None) pairs: every method, records of every size."""
    ops = []
    for _ in range(n):
        k = rnd.random()
        if k < 0.45:
            ops.append(("append" if rnd.random() < 0.5 else "enqueue", bytes(rnd.choice([0, 1, 7, 100, 1000, 5000]))))
        elif k < 0.55:
            ops.append(("take", rnd.choice([-1, 0, 1, 64, 4096, 1 << 20])))  # (<= 0: one record, as 1)
        elif k < 0.75:
            ops.append(("advance", rnd.random()))
        elif k < 0.8:
            ops.append(("rewind", None))
        elif k < 0.87:
            ops.append(("idle" if rnd.random() < 0.5 else "linger", None))
        elif k < 0.93:
            ops.append(("state", rnd.choice([0, 1, 2, 3])))
        elif k < 0.97:
            ops.append(("open", rnd.random() < 0.7))
        else:
            ops.append(("clear" if rnd.random() < 0.7 else "reset", None))
    return ops


BUFFER_ATTRS = ("pending_bytes", "io_left", "buffered", "io_off", "enq_bytes", "done_bytes", "written", "sent",
                "state", "open", "cap", "linger_bytes")


def apply_op(buf, owner, op, arg, io):
    """One operation on buf (io: [the batch in flight]); its answer."""
    if op in ("append", "enqueue", "take"):
        r = getattr(buf, op)(arg)
        if op == "take":
            io[0] = r
        return r
    if op == "advance":
        left = len(io[0]) - buf.io_off
        n = int(left * arg) if left else 0
        return buf.advance(n) if n else 0
    if op in ("state", "open"):
        setattr(buf, op, arg)
        return None
    r = getattr(buf, op)()
    if op in ("clear", "reset"):
        io[0] = b""
    return r


def buffer_differential(seed, runs=40, n=400):
    """_speedups.Buffer against _client._PyBuffer (its Python twin, the reference): the same random operations, the
    same answers and the same attributes after each one (the counters get_stats() reads among them); enqueue's wakes
    and slow path (owner._wake, slow(owner, data)) the same. Returns the operations run."""
    from logagent import _client, _speedups
    rnd = random.Random(seed)
    done = 0
    for run_no in range(runs):
        cap, linger = rnd.choice([(1024, 256), (8192, 2048), (1 << 20, 64 << 10)])
        owners = [Owner(), Owner()]
        bufs = [_speedups.Buffer(owners[0], slow_path, cap, linger), _client._PyBuffer(owners[1], slow_path, cap, linger)]
        ios = [[b""], [b""]]
        for op, arg in buffer_ops(rnd, n):
            answers = []
            for buf, owner, io in zip(bufs, owners, ios):
                if op == "enqueue" and isinstance(buf, _client._PyBuffer):
                    answers.append(py_enqueue(buf, owner, arg))  # the Python client's _enqueue, less the lock
                else:
                    answers.append(apply_op(buf, owner, op, arg, io))
            assert answers[0] == answers[1], (run_no, op, arg, answers)
            assert ios[0][0] == ios[1][0], (run_no, op)
            got = [[getattr(b, a) for a in BUFFER_ATTRS] for b in bufs]
            assert got[0] == got[1], (run_no, op, arg, list(zip(BUFFER_ATTRS, *got)))
            assert owners[0].wakes == owners[1].wakes, (run_no, op, owners[0].wakes, owners[1].wakes)
            done += 1
    return done


def py_enqueue(buf, owner, data):
    """What the C Buffer's enqueue does, in the terms of the Python one (_speedups.c): append while open, wake when
    append says so, else the slow path."""
    if buf.open:
        got = buf.append(data)
        if got == 1:
            owner._wake()
        if got != 2:
            return ""
    return slow_path(owner, data)


def refcounts(objs):
    return [sys.getrefcount(o) for o in objs]


def leak_check(calls):
    """calls of the C encoder (plain records, and records it hands back to the Python path): the arguments'
    reference counts unchanged, tracemalloc's traced memory and the process's RSS flat."""
    fast = _record.fast_pack
    nested = {"list": [1, -200, 3.5, None, True, b"\x00\xff", "é"], "t": (1 << 63, -(1 << 63)), "d": {"a": {}}}
    meta = {"adv_id": 1234567, "monitor_type": "click", "nested": nested, "timestamp": "2026-12-07T18:00:00Z",
            "big": "x" * 5000}
    plain = ("Concurrent test log entry 1", "svc", "INFO", "trace", "span", meta, "0" * 32, 1765130400000000000)
    other = ("m", None, None, None, None, {"when": datetime.date(2026, 12, 7), "n": nested}, "0" * 32, 1)
    watched = [o for o in list(plain) + list(other) + list(meta.values()) + list(nested.values()) + nested["list"]
               if o is not None and type(o) is not bool]  # singletons: their counts move with the interpreter
    client, _ = capture_client()
    client._enqueue = lambda data: ""
    write = client.write_log  # the C writer: binding, id, pack, _enqueue, result dict
    # the C buffer behind a C writer: appends, wakes, its slow path (full), takes, partial sends, rewinds
    from logagent import _speedups
    bclient, _ = capture_client()
    owner = Owner()
    buf = _speedups.Buffer(owner, slow_path, 256 << 10, 16 << 10)
    buf.open = True
    bclient._enqueue = buf.enqueue
    bwrite = bclient.write_log
    w_args, w_kw = plain[:5], dict(meta)
    watched.append(w_kw)
    before = refcounts(watched)

    def loop(n):
        for _ in range(n):
            assert fast(*plain) is not None
        for _ in range(n // 10):
            assert fast(*other) is None
        for _ in range(n):
            assert write(*w_args, **w_kw)["success"]
        for _ in range(n // 10):
            assert write(*other[:5], **other[5])["success"]  # the fallback
        for i in range(n):
            r = bwrite(*w_args, **w_kw)
            assert r["success"] or r["error_message"] == "logagent buffer full (test): record dropped", r
            if i % 64 == 0:
                buf.state = 1 if i % 128 else 2  # idle, lingering: the next appends wake the owner
            if i % 100 == 99:
                io = buf.take(1 << 30 if i % 200 else 4096)
                buf.advance(len(io) // 3)
                buf.rewind()
                buf.advance(len(io) - buf.io_off)
                assert buf.buffered == buf.pending_bytes

    loop(calls // 10)  # warm-up: caches, the allocator's arenas
    rss0 = rss()
    loop(calls)
    rss_grown = rss() - rss0
    tracemalloc.start()  # slows every allocation down: a tenth of the calls
    start = tracemalloc.get_traced_memory()[0]
    loop(calls // 10)
    grown = tracemalloc.get_traced_memory()[0] - start
    tracemalloc.stop()
    assert refcounts(watched) == before, (refcounts(watched), before)
    assert owner.wakes > 0 and buf.written > 0 and buf.sent > 0, (owner.wakes, buf.written, buf.sent)
    client.close(0)
    bclient.close(0)
    assert grown < 64 << 10, "tracemalloc: %d bytes more after %d calls" % (grown, calls // 10)
    if "asan" not in os.environ.get("LD_PRELOAD", ""):  # ASan keeps freed memory in quarantine: RSS grows
        assert rss_grown < 8 << 20, "RSS grew %d bytes over %d calls" % (rss_grown, calls)
    return grown, rss_grown


def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def checks(count, calls):
    t0 = time.monotonic()
    taken = differential(count, seed=19)
    writes = writer_differential(seed=19)
    ops = buffer_differential(seed=19)
    grown, rss_grown = leak_check(calls)
    print("   %s: %d random calls of each kind, %d taken by C; write_log C vs Python: %d records; Buffer C vs Python: "
          "%d operations; %d calls: RSS +%d B, then tracemalloc +%d B (%.1fs)" % (
              logagent.implementation, count, taken, writes, ops, calls, rss_grown, grown, time.monotonic() - t0))


# ---- the tests ----

def test_the_implementation_this_run_must_have():
    want = os.environ.get("LOGAGENT_TEST_IMPLEMENTATION")
    if want:
        assert logagent.implementation == want, (logagent.implementation, want, logagent.__path__)
    assert (_record.fast_pack is None) == (logagent.implementation == "python")
    if (os.environ.get("LOGAGENT_PURE_PYTHON") == "1" and os.environ.get("LOGAGENT_SPEEDUPS_DIR")
            and not os.environ.get("LOGAGENT_ASAN_RUNTIME")):  # (an instrumented module loads only under ASan)
        from logagent import _speedups  # the module is there: the variable alone chose the Python encoder
        assert _speedups.FORMAT == 4


def test_both_encoders_give_the_same_bytes():
    if logagent.implementation != "c":
        print("   the Python encoder only: nothing to compare")
        return
    checks(count=3000, calls=1000000)


# ---- the review of the C writer (both implementations: each must behave as the pure-Python client does) ----

SOCK = "/nonexistent/logagent-test.sock"


def test_mock_patch_of_the_class_is_honoured():
    """mock.patch of Client.write_log, Client.write or Client._enqueue, and a subclass's _enqueue: a Client made inside
    the patch calls the mock (neither the C writer nor the C buffer's enqueue takes over), and making one never reads
    attributes a mock does not have (Client.write_log.__get__)."""
    from unittest import mock
    with mock.patch.object(logagent.Client, "write_log") as m:
        c = logagent.Client(SOCK)
        c.write_log("m", level="WARN")
        m.assert_called_once_with("m", level="WARN")
        c.close(0)
    with mock.patch.object(logagent.Client, "write_log", autospec=True) as m:
        c = logagent.Client(SOCK)
        c.write_log("m")
        m.assert_called_once_with(c, "m")
        c.close(0)
    with mock.patch.object(logagent.Client, "write", return_value={"success": True, "log_id": "x",
                                                                   "error_message": ""}) as m:
        c = logagent.Client(SOCK)
        assert c.write_log("m", a=1)["log_id"] == "x"
        m.assert_called_once_with("m", None, "INFO", None, None, {"a": 1})
        c.close(0)
    with mock.patch.object(logagent.Client, "_enqueue", return_value="") as m:  # the buffer's enqueue stands aside
        c = logagent.Client(SOCK)
        assert "_enqueue" not in vars(c) and c.write_log("m", a=1)["success"]
        assert m.call_count == 1 and b"\xa1m" in m.call_args[0][0], m.call_args
        c.close(0)

    class Sub(logagent.Client):
        def _enqueue(self, data):
            return "sub: " + str(len(data))
    c = Sub(SOCK)
    assert c.write_log("m")["error_message"].startswith("sub: "), c.write_log("m")
    c.close(0)
    c = logagent.Client(SOCK)  # after the patches: the C writer and the C buffer's enqueue again where there are
    assert ("write_log" in vars(c)) == (logagent.implementation == "c"), vars(c).get("write_log")
    assert ("_enqueue" in vars(c)) == (logagent.implementation == "c"), vars(c).get("_enqueue")
    c.close(0)


def test_an_unused_client_dies_without_the_collector():
    """Pure mode: no Client <-> bound write_log cycle, so an unused Client is freed by reference counting alone
    (with the C writer the cycle is there, and the collector breaks it)."""
    import gc
    import weakref
    gc.collect()
    gc.disable()
    try:
        c = logagent.Client(SOCK)
        ref = weakref.ref(c)
        del c
        if logagent.implementation == "python":
            assert ref() is None, gc.get_referrers(ref())
    finally:
        gc.enable()
    gc.collect()
    assert ref() is None


def test_write_log_pickles():
    """logagent.write_log pickles (ProcessPoolExecutor.submit(logagent.write_log, ...)) and unpickles as itself;
    a Client's write_log does not (its Client, locks and a socket, does not pickle)."""
    import pickle
    for proto in range(pickle.HIGHEST_PROTOCOL + 1):
        assert pickle.loads(pickle.dumps(logagent.write_log, proto)) is logagent.write_log, proto
    assert logagent.write_log.__module__ == "logagent"
    c = logagent.Client(SOCK)
    try:
        pickle.dumps(c.write_log)
        raise AssertionError("a Client's write_log pickled")
    except TypeError:
        pass
    c.close(0)


def test_default_client_and_ids_are_looked_up_per_call():
    """logagent.write_log finds default_client, and every write_log _client._ids, at each call (as the Python
    path's globals do): mock.patch.object(logagent, "default_client", ...) and a replaced _client._ids count."""
    import random as random_module
    from unittest import mock
    from logagent import _client
    c, got = capture_client()
    with mock.patch.object(logagent, "default_client", return_value=c) as m:
        assert logagent.write_log("to the mock's client", a=1)["success"]
    assert m.call_count == 1 and len(got) == 1 and b"to the mock's client" in got[0], (m.call_count, got)
    want = "%032x" % random_module.Random(5).getrandbits(128)
    with mock.patch.object(_client, "_ids", random_module.Random(5)):
        assert c.write_log("m")["log_id"] == want
    with mock.patch.object(_client, "_ids", random_module.Random(5)), \
            mock.patch.object(logagent, "default_client", return_value=c):
        assert logagent.write_log("m")["log_id"] == want

    class NotBits:
        def getrandbits(self, k):
            return "not an int"
    with mock.patch.object(_client, "_ids", NotBits()):  # the Python path's TypeError ("%032x" % str), in both
        try:
            c.write_log("m")
            raise AssertionError("a str made a log id")
        except TypeError:
            pass
    c.close(0)


def test_only_a_value_error_from_default_client_is_an_answer():
    """write_log answers a ValueError from default_client() (no process-wide client) with a result; any other
    exception (KeyboardInterrupt, RuntimeError) reaches the caller, in both implementations."""
    from unittest import mock
    with mock.patch.object(logagent, "default_client", side_effect=ValueError("logagent: bad value")):
        r = logagent.write_log("m")
    assert r == {"success": False, "log_id": "", "error_message": "cannot create the logagent client: bad value"}, r
    c, got = capture_client()
    for exc in (RuntimeError("boom"), KeyboardInterrupt()):
        with mock.patch.object(logagent, "default_client", side_effect=[exc, c]) as m:  # (a second call: a client)
            try:
                logagent.write_log("m", a=1)
                raise AssertionError("%r was swallowed" % (exc,))
            except type(exc) as e:
                assert e is exc
        assert m.call_count == 1 and not got, (m.call_count, got)
    c.close(0)


def test_max_record_of_any_number_type():
    """client.max_record set to a float or an int beyond 64 bits works as in the Python path (compared, and "%d"
    in the words); one that does not compare with an int raises the Python path's TypeError."""
    c, got = capture_client()
    c.max_record = 1e6
    assert c.write_log("m")["success"] and len(got) == 1
    c.max_record = 10.0
    r = c.write_log("m", a="x" * 20)
    assert not r["success"] and r["error_message"].startswith("record too large (") and \
        r["error_message"].endswith(" bytes, limit 10): record dropped"), r
    c.max_record = 1 << 70
    assert c.write_log("m")["success"] and len(got) == 2
    c.max_record = 10
    r = c.write_log("m", a="x" * 20)
    assert r["error_message"].endswith(" bytes, limit 10): record dropped"), r
    c.max_record = "ten"
    try:
        c.write_log("m")
        raise AssertionError("a str max_record compared")
    except TypeError:
        pass
    assert c.get_stats()["rejected"] == 2, c.get_stats()
    c.close(0)


def test_a_drained_buffer_gives_its_memory_back():
    """A Client's buffer (the C one in the python_speedups run, _PyBuffer in the pure one) after a backlog: the agent
    away, 8 MiB of records queued, then all of them sent. Its memory goes back once it is empty and the sender goes
    idle (the C Buffer kept its arrays at their largest, ~16 MiB here, for as long as the Client lived; it keeps them
    while writers stream, not freeing and regrowing them at every take that empties it); each record is 1 KiB."""
    from logagent import _client
    tracemalloc.start()
    try:
        buf = _client._Buffer(Owner(), slow_path, 8 << 20, 64 << 10)
        base = tracemalloc.get_traced_memory()[0]
        for _ in range(3):
            while buf.append(bytes(bytearray(1024))) != 2:  # (a new object each: _PyBuffer keeps them)
                pass
            peak = tracemalloc.get_traced_memory()[0] - base
            while buf.pending_bytes:
                io = buf.take(256 << 10)
                buf.advance(len(io))
            del io
            assert buf.idle() is True  # the sender finds it empty and sleeps: the arrays go back then
            left = tracemalloc.get_traced_memory()[0] - base
            assert peak > 8 << 20 and left < 1 << 20, (type(buf).__name__, peak, left)
        buf.append(bytes(1024))  # and it still works
        assert len(buf.take(1 << 20)) == 1024 and buf.written == 3 * (8 << 10) + 1, buf.written
    finally:
        tracemalloc.stop()


def test_writer_state_cannot_be_made_from_python():
    """The C writer's state is made by _speedups.writer() only (an empty one from Python would have no fallback)."""
    if logagent.implementation != "c":
        print("   skip: no C writer in this run")
        return
    try:
        type(logagent.write_log.__self__)()
        raise AssertionError("WriterState() made one")
    except TypeError:
        pass


def child_env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in ("LOGAGENT_PURE_PYTHON", "LOGAGENT_TEST_IMPLEMENTATION")}
    env["PYTHONPATH"] = os.pathsep.join([os.path.join(HERE, "..", "..", "client-shim", "python"),
                                         os.environ["LOGAGENT_SPEEDUPS_DIR"]])
    env.update(extra)
    return env


def run_child(env, what):
    p = subprocess.run([PY, os.path.abspath(__file__), "--child"], env=env, capture_output=True, text=True,
                       timeout=scaled(240))
    sys.stdout.write(p.stdout)
    assert p.returncode == 0, "%s: exit %d\n%s" % (what, p.returncode, p.stderr[-4000:])
    assert "c: " in p.stdout, "%s: the child did not run the C encoder:\n%s" % (what, p.stdout)


def test_under_pythonmalloc_debug():
    """The allocator's debug hooks: a write past a PyMem block, a double free, a call without the GIL abort."""
    if logagent.implementation != "c":
        print("   skip: this run has the Python encoder (the python_speedups run does this)")
        return
    run_child(child_env(PYTHONMALLOC="debug"), "PYTHONMALLOC=debug")


def test_under_asan():
    """ASan builds: the instrumented module in /usr/bin/python3 with the ASan runtime preloaded; PYTHONMALLOC=malloc
    so that ASan sees every Python allocation too."""
    runtime = os.environ.get("LOGAGENT_ASAN_RUNTIME")
    if not runtime:
        print("   skip: not an ASan build")
        return
    assert os.path.exists(runtime), runtime
    run_child(child_env(LD_PRELOAD=runtime, PYTHONMALLOC="malloc", LOGAGENT_CHECK_CALLS="30000",
                        ASAN_OPTIONS="detect_leaks=0:abort_on_error=0:halt_on_error=1",
                        UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"), "ASan")


if __name__ == "__main__":
    if sys.argv[1:] == ["--child"]:
        assert logagent.implementation == "c", logagent.__path__
        checks(count=1000, calls=int(os.environ.get("LOGAGENT_CHECK_CALLS", "200000")))
        sys.exit(0)
    tests = [test_the_implementation_this_run_must_have, test_mock_patch_of_the_class_is_honoured,
             test_an_unused_client_dies_without_the_collector, test_write_log_pickles,
             test_default_client_and_ids_are_looked_up_per_call,
             test_only_a_value_error_from_default_client_is_an_answer, test_max_record_of_any_number_type,
             test_writer_state_cannot_be_made_from_python, test_a_drained_buffer_gives_its_memory_back,
             test_both_encoders_give_the_same_bytes,
             test_under_pythonmalloc_debug, test_under_asan]
    only = os.environ.get("LOGAGENT_TEST_ONLY")  # a comma-separated list of test names (while working on one)
    run([t for t in tests if not only or t.__name__ in only.split(",")])
