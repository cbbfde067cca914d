"""test_on_full.py — --on-full during a sustained outage, with writers sending all along (real agent, real sink, raw
socket writers paced at a steady rate): {memory, disk} x {drop-oldest, drop-newest, block}.

With the log service down (harness.dead_target) for several seconds:
- drop-oldest and drop-newest: the writers never stall, the agent keeps receiving, /stats answers every second,
  records.dropped.buffer_full grows with the inflow (drop-oldest: shed per second ~ received per second), the
  accounting identity holds in every document; when the service returns, what was held is delivered exactly once
  and is the newest data (drop-oldest: the delivered records are the tail of what was sent) or the oldest
  (drop-newest: the head).
- block: the writers stall, nothing is dropped, and everything arrives once the service is back.
With --buffer disk the spool is small (--spool-max-bytes 1MiB), so it fills first and drop-oldest drops its oldest
segment. And an overload (the service up but slower than the inflow): drop-oldest sheds the excess, the agent takes
what the writer offers. Prints the per-second rates (docs/reliability.md quotes them). Test names as arguments run
only those."""
import os
import select
import socket
import threading
import time

import msgpack

from harness import SAN, Agent, Sink, TempDir, accounting_holds, dead_target, run, scaled, wait_for

RATE = 10000        # records a second per writer
TICK = 0.01         # the writer sends RATE * TICK records every TICK
OUTAGE_S = float(os.environ.get("LOGAGENT_TEST_SHED_S", "8"))
SHORT_S = 4.0       # drop-newest and block: long enough to fill everything and stay there
FULL_SAMPLES = 2    # drop policies: the outage lasts until this many sampling intervals began with the buffer full


class Writer(threading.Thread):
    """One connection writing RATE records a second (log_id = its sequence number) until stopped; then it finishes
    what it has started. Tracks the longest time it had bytes to send and could send none (a stall)."""

    def __init__(self, path):
        super().__init__(daemon=True)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.sock.setblocking(False)
        self.stop_ev = threading.Event()
        self.sent = 0          # records written completely
        self.max_stall = 0.0   # the longest time without a byte taken
        self.stalled = 0.0     # all the time spent waiting for the agent to take bytes
        self.error = None

    def run(self):
        try:
            self._run()
        except Exception as e:  # reported by the test through .error
            self.error = e

    def _run(self):
        per_tick, nxt = int(RATE * TICK), time.monotonic()
        while not self.stop_ev.is_set():
            data = b"".join(msgpack.packb({"message": "w %d %s" % (i, "x" * 150), "log_id": "%032x" % (i + 1)})
                            for i in range(self.sent, self.sent + per_tick))
            self._write(data)
            self.sent += per_tick
            nxt += TICK
            delay = nxt - time.monotonic()
            if delay > 0:
                time.sleep(delay)  # pacing of the writer (a rate, not a synchronisation)
            else:
                nxt = time.monotonic()
        self.sock.close()

    def _write(self, data):
        view = memoryview(data)
        start = since = time.monotonic()
        while view:
            select.select([], [self.sock], [], 0.05)
            try:
                n = self.sock.send(view)
            except BlockingIOError:
                n = 0
            now = time.monotonic()
            if n:
                view = view[n:]
                since = now
            self.max_stall = max(self.max_stall, now - since)
        self.stalled += time.monotonic() - start

    def stop(self):
        self.stop_ev.set()
        self.join(scaled(120))
        assert not self.is_alive() and self.error is None, self.error
        return ["%032x" % (i + 1) for i in range(self.sent)]


def held(r):
    return r["in_ring"] + r["batching"] + r["in_flight"] + r["retry_wait"] + r["spooled"]


def outage(mode, policy, seconds):
    """Runs the scenario; returns (agent's per-second samples, sent log_ids, delivered log_ids, final stats, writer)."""
    tmp = TempDir("%s-%s" % (mode, policy))
    target, port = dead_target(tmp)
    args = ["--buffer-bytes", "1MiB", "--on-full", policy, "--batch-max-records", "200", "--retry-initial-ms", "50",
            "--retry-max-ms", "500"]
    if mode == "disk":
        args += ["--buffer", "disk", "--spool-dir", tmp.file("spool"), "--spool-max-bytes", "1MiB"]
    a = Agent(tmp, target, *args).start()
    w = Writer(a.socket)
    w.start()
    # At least `seconds`; under a drop policy, until the buffer has been full for FULL_SAMPLES sampling intervals
    # (a loaded machine fills it later and samples less often), which has to happen within scaled(seconds + 30).
    t0 = time.monotonic()
    samples, t_end, give_up = [], t0 + seconds, t0 + scaled(seconds + 30)

    def going_on():
        now = time.monotonic()
        return now < t_end or (policy != "block" and len(rates(samples)) < FULL_SAMPLES and now < give_up)
    while going_on():
        st = a.stats()  # /stats answers throughout
        assert accounting_holds(st), st
        samples.append((time.monotonic(), st["records"]["received"], st["records"]["dropped"]["buffer_full"],
                        st["records"]["spooled"]))
        time.sleep(1.0)  # the sampling period of the measurement, not a synchronisation
    if policy == "block":
        assert w.max_stall > 1.0, w.max_stall  # the writer is blocked by the full buffer...
        sink = Sink(tmp, port=port).start()   # ...until the service is back
        sent = w.stop()
    else:
        # blocked, it would wait for the whole outage (the time it spends in sends in all is printed, not checked:
        # on a loaded machine it measures the scheduler as much as the agent)
        assert w.max_stall < min(seconds / 2, scaled(1.5)), "the writer stalled %.1fs on the agent" % w.max_stall
        sent = w.stop()
        wait_for(lambda: a.stats()["records"]["received"] == len(sent), 30, "agent received all %d" % len(sent))
        sink = Sink(tmp, port=port).start()

    def settled():
        st = a.stats()
        r = st["records"]
        return st if r["received"] == len(sent) and held(r) == 0 and accounting_holds(st) else None
    st = wait_for(settled, 60, "everything delivered or counted dropped")
    sink.wait_count(st["records"]["flushed"])
    summary = sink.stop()
    delivered = [e["log_id"] for e in sink.entries()]
    assert summary["duplicates"] == 0 and len(delivered) == len(set(delivered)) == st["records"]["flushed"], \
        (summary, st["records"])
    assert len(delivered) + st["records"]["dropped"]["buffer_full"] == len(sent), (len(delivered), st["records"])
    assert sum(st["records"]["dropped"].values()) == st["records"]["dropped"]["buffer_full"], st["records"]
    assert a.stop() == 0
    return samples, sent, delivered, st, w


def rates(samples):
    """Per-interval (received/s, shed/s) once the buffer is full (the first sample with a drop, and after)."""
    out = []
    for (t0, r0, d0, _), (t1, r1, d1, _) in zip(samples, samples[1:]):
        if d0 > 0:
            out.append(((r1 - r0) / (t1 - t0), (d1 - d0) / (t1 - t0)))
    return out


def check_dropping(mode, policy, seconds):
    samples, sent, delivered, st, w = outage(mode, policy, seconds)
    per_s = rates(samples)
    assert len(per_s) >= FULL_SAMPLES, samples  # the buffer filled, and stayed full, while the service was down
    for recv, shed in per_s:
        assert recv > 0, per_s  # the agent keeps receiving
        assert 0.5 * recv <= shed <= 1.5 * recv, per_s  # shedding follows the inflow, second by second
    total_r = sum(r for r, _ in per_s)
    total_d = sum(d for _, d in per_s)
    print("     %s %s: %d sent, %d delivered, %d dropped; writer stalls %.3fs (longest %.3fs); ingest paused %.3fs in "
          "%d pauses; per second once full (received/shed): %s; shed/received overall %.3f" % (
              mode, policy, len(sent), len(delivered), st["records"]["dropped"]["buffer_full"], w.stalled, w.max_stall,
              st["backpressure_seconds"], st["backpressure_pauses"], " ".join("%d/%d" % (r, d) for r, d in per_s),
              total_d / total_r))
    if mode == "memory":  # a pause lasts one shed (with --buffer disk it includes a segment's fdatasync: not timed)
        lasted = max(seconds, samples[-1][0] - samples[0][0])
        assert st["backpressure_seconds"] < 0.25 * lasted, st
    index = {lid: i for i, lid in enumerate(sent)}
    got = sorted(index[lid] for lid in delivered)
    return sent, got


def test_memory_drop_oldest_keeps_writers_going():
    sent, got = check_dropping("memory", "drop-oldest", OUTAGE_S)
    # the newest records are kept: the last one sent, and nearly all of the tail from the oldest one kept
    assert got[-1] == len(sent) - 1, (got[-1], len(sent))
    tail = len(sent) - got[0]
    assert len(got) >= 0.9 * tail, (len(got), tail)


def test_disk_drop_oldest_drops_the_oldest_segment():
    sent, got = check_dropping("disk", "drop-oldest", OUTAGE_S)
    assert got[-1] == len(sent) - 1, (got[-1], len(sent))
    tail = len(sent) - got[0]
    assert len(got) >= 0.9 * tail, (len(got), tail)


def oldest_kept(sent, got):
    """drop-newest keeps what came first: every record taken before the buffer first filled is delivered — an
    unbroken run from the first record sent — and that run is the larger part of what is delivered. Records still
    slip in later, each time the flusher moves a batch out of the full ring (a batch in flight lets the next one go:
    how often depends on the machine's speed; accepted, not wrong), but at most as many as the batches' share of
    the buffer takes, after at least the ring's worth (half of --buffer-bytes; with --buffer disk the spool too) of
    first records: the run is about half of what is delivered or more (0.4: a batch frames records a little more
    densely than the ring). Measured: 81-100% in memory (the old bound, 90% from the first half, failed at 81% on a
    loaded machine), 100% on disk."""
    run = next((k for k, i in enumerate(got) if i != k), len(got))
    assert got[0] == 0 and run >= 0.4 * len(got), (run, len(got), got[-1], len(sent))


def test_memory_drop_newest_keeps_writers_going():
    sent, got = check_dropping("memory", "drop-newest", SHORT_S)
    oldest_kept(sent, got)


def test_disk_drop_newest_keeps_writers_going():
    sent, got = check_dropping("disk", "drop-newest", SHORT_S)
    oldest_kept(sent, got)


def check_block(mode):
    samples, sent, delivered, st, w = outage(mode, "block", SHORT_S)
    assert st["records"]["dropped"]["buffer_full"] == 0 and set(delivered) == set(sent), st["records"]
    assert st["backpressure_seconds"] > 1.0, st
    print("     %s block: writer stalled %.1fs, %d sent, all delivered" % (mode, w.max_stall, len(sent)))


def test_memory_block_blocks_writers_drops_nothing():
    check_block("memory")


def test_disk_block_blocks_writers_drops_nothing():
    check_block("disk")


def test_memory_drop_oldest_overload_sheds_the_excess():
    """The service up but slower than the inflow (a sink taking 100 ms a call, one call at a time, 200 records a
    batch: ~1,900 records/s against 10,000 arriving): the excess is shed, second by second, the agent takes what the
    writer offers (not the service's pace), and what is delivered arrives once."""
    tmp = TempDir("overload")
    sink = Sink(tmp, "--delay-ms", "100").start()
    a = Agent(tmp, sink.target, "--buffer-bytes", "1MiB", "--on-full", "drop-oldest", "--batch-max-records", "200",
              "--max-inflight", "1").start()
    w = Writer(a.socket)
    w.start()
    samples, t_end = [], time.monotonic() + SHORT_S + 1
    while time.monotonic() < t_end:
        st = a.stats()
        assert accounting_holds(st), st
        r = st["records"]
        samples.append((time.monotonic(), r["received"], r["dropped"]["buffer_full"], r["flushed"]))
        time.sleep(1.0)  # the sampling period of the measurement, not a synchronisation
    assert w.max_stall < scaled(1.5), "the writer stalled %.1fs on the agent" % w.max_stall
    sent = w.stop()

    def settled():
        st = a.stats()
        r = st["records"]
        return st if r["received"] == len(sent) and held(r) == 0 else None
    st = wait_for(settled, 60, "everything delivered or counted dropped")
    sink.wait_count(st["records"]["flushed"])
    summary = sink.stop()
    assert summary["duplicates"] == 0 and summary["entries"] == st["records"]["flushed"], (summary, st["records"])
    assert st["records"]["flushed"] + st["records"]["dropped"]["buffer_full"] == len(sent), st["records"]
    per_s = []
    for (t0, r0, d0, f0), (t1, r1, d1, f1) in zip(samples, samples[1:]):
        if d0 > 0:
            per_s.append(tuple(int(x / (t1 - t0)) for x in (r1 - r0, d1 - d0, f1 - f0)))
    print("     overload drop-oldest: writer stalls %.3fs (longest %.3fs); per second once full "
          "(received/shed/flushed): %s" % (w.stalled, w.max_stall, " ".join("%d/%d/%d" % x for x in per_s)))
    assert len(per_s) >= SHORT_S - 2, samples
    # held to the service's pace, the agent would receive about what it flushes (plus a little shed)
    assert sum(r for r, _, _ in per_s) > 2 * sum(f for _, _, f in per_s), per_s
    for recv, shed, flushed in per_s:
        assert shed > 0 and abs(recv - shed - flushed) < 0.25 * recv, per_s  # shed = what the service cannot take
    assert a.stop() == 0


def test_drop_oldest_big_records_keep_going():
    """Big records of mixed sizes in a ring of few of them (12 MiB buffer: a 4 MiB ring; 250 KB and 600 KB records):
    shedding must make room for the record waiting — contiguous, wherever the ring wraps —, not only an eighth of
    the ring, or ingest and the flusher ask and answer in a loop (a found bug: 157,000 pauses for 317 records, the
    agent at a full core, the writer waiting). With the service down the writer goes on, every record is
    received, the oldest are shed, and there are few pauses per record."""
    tmp = TempDir("bigshed")
    target, _ = dead_target(tmp)
    a = Agent(tmp, target, "--buffer-bytes", "12MiB", "--max-record-bytes", "768KiB", "--on-full", "drop-oldest",
              "--retry-initial-ms", "50", "--retry-max-ms", "500", "--drain-timeout-ms", "500").start()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(a.socket)
    sock.settimeout(scaled(5))  # a send blocked this long fails the test (drop-oldest never makes writers wait)
    n = 400
    for i in range(n):
        sock.sendall(msgpack.packb({"message": "%d %s" % (i, "y" * (600000 if i % 2 else 250000)),
                                    "log_id": "%032x" % (i + 1)}))
    sock.close()
    st = wait_for(lambda: (lambda s: s if s["records"]["received"] == n else None)(a.stats()), 30,
                  "all %d records received" % n)
    r = st["records"]
    print("     big records, drop-oldest: %d shed of %d, %d pauses" % (r["dropped"]["buffer_full"], n,
                                                                    st["backpressure_pauses"]))
    assert accounting_holds(st) and r["dropped"]["buffer_full"] > n // 2, r
    assert st["backpressure_pauses"] < 5 * n, "%d pauses for %d records: shedding spins" % (
        st["backpressure_pauses"], n)
    assert a.stop() == 0

if __name__ == "__main__":
    import sys
    tests = [test_memory_drop_oldest_keeps_writers_going, test_disk_drop_oldest_drops_the_oldest_segment,
             test_memory_drop_newest_keeps_writers_going, test_disk_drop_newest_keeps_writers_going,
             test_memory_block_blocks_writers_drops_nothing, test_disk_block_blocks_writers_drops_nothing,
             test_memory_drop_oldest_overload_sheds_the_excess, test_drop_oldest_big_records_keep_going]
    run([t for t in tests if len(sys.argv) < 2 or t.__name__ in sys.argv[1:]])
