"""test_spool.py — the disk buffer with real processes: SIGKILL after records reached the spool, then a restart
delivers every one of them (and deletes the segments); SIGKILL mid-stream loses at most what was not yet spooled
(the bound: records in the ring and the batch being built at the last stats sample, plus what arrived after it);
a torn tail and a flipped byte in spool segments are cut/skipped and counted while intact batches are delivered;
a graceful stop with the service down leaves records spooled, not dropped, in disk mode and in memory mode with a
spool folder; refused batches land in deadletter.log; a full spool turns into backpressure, not loss."""
import glob
import os
import signal
import socket
import time

import msgpack

from harness import Agent, Sink, TempDir, accounting_holds, dead_target, run, scaled, send_records, wait_for


T0 = 1725013845


def disk_agent(tmp, target, *args, name="agent"):
    return Agent(tmp, target, "--buffer", "disk", "--spool-dir", tmp.file("spool"), "--retry-initial-ms", "20",
                 "--retry-max-ms", "200", *args, name=name).start()


def stat_is(a, key, value):
    def check():
        st = a.stats()
        return st if st["records"][key] == value else None
    return wait_for(check, 30, "records.%s == %d" % (key, value))


def ids_of(sink):
    return set(e["log_id"] for e in sink.entries())


def records(n, tag="r"):
    return [{"message": "%s%d" % (tag, i), "log_id": "%s%031x" % (tag[0], i)} for i in range(n)]


def test_sigkill_after_spooling_delivers_everything_after_restart():
    tmp = TempDir("kill")
    target, port = dead_target(tmp)
    a = disk_agent(tmp, target, "--spool-max-bytes", "8MiB")
    sent = records(20000)
    send_records(a.socket, sent)
    st = stat_is(a, "spooled", 20000)
    assert st["spool"]["segments"] >= 1 and accounting_holds(st), st
    a.kill()
    assert glob.glob(tmp.file("spool") + "/seg-*.log")
    sink = Sink(tmp, port=port).start()
    b = disk_agent(tmp, target, name="b")
    st = b.wait_flushed(20000)
    assert st["records"]["replayed"] == 20000 and accounting_holds(st), st["records"]
    assert ids_of(sink) == set(r["log_id"] for r in sent)
    assert b.stop() == 0
    assert not glob.glob(tmp.file("spool") + "/seg-*.log"), os.listdir(tmp.file("spool"))


def test_sigkill_mid_stream_loses_only_unspooled():
    tmp = TempDir("midkill")
    target, port = dead_target(tmp)
    a = disk_agent(tmp, target, "--flush-interval-ms", "50")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(a.socket)
    sent = records(30000, "m")
    for i in range(0, 20000, 1000):
        s.sendall(b"".join(msgpack.packb(r) for r in sent[i:i + 1000]))
    sample = stat_is(a, "received", 20000)
    spooled_at_sample = sample["records"]["spooled"] + sample["records"]["in_flight"]
    for i in range(20000, 30000, 1000):  # more arrives after the sample, then the kill
        s.sendall(b"".join(msgpack.packb(r) for r in sent[i:i + 1000]))
    a.kill()
    s.close()
    sink = Sink(tmp, port=port).start()
    b = disk_agent(tmp, target, name="b")
    replayed = b.stats()["records"]["replayed"]
    b.wait_flushed(replayed)
    got = ids_of(sink)
    assert got <= set(r["log_id"] for r in sent)
    # the bound: everything that was on disk at the sample arrives; what is lost is at most what the ring and the
    # batch being built held then (in_ring + batching) plus the 10000 records sent after the sample
    assert len(got) >= spooled_at_sample, (len(got), spooled_at_sample)
    lost = 30000 - len(got)
    assert lost <= sample["records"]["in_ring"] + sample["records"]["batching"] + 10000, (lost, sample["records"])
    assert b.stop() == 0


def test_torn_tail_and_flipped_bytes_are_counted_not_fatal():
    tmp = TempDir("torn")
    target, port = dead_target(tmp)
    a = disk_agent(tmp, target, "--spool-max-bytes", "2MiB", "--batch-max-records", "100")
    send_records(a.socket, records(6000, "t"))
    stat_is(a, "spooled", 6000)
    a.kill()
    segs = sorted(glob.glob(tmp.file("spool") + "/seg-*.log"))
    assert len(segs) >= 2, segs
    with open(segs[0], "r+b") as f:  # flip a byte inside the first frame's payload
        f.seek(200)
        b0 = f.read(1)
        f.seek(200)
        f.write(bytes([b0[0] ^ 0xff]))
    size = os.path.getsize(segs[-1])
    with open(segs[-1], "r+b") as f:  # tear the last frame of the last segment
        f.truncate(size - 37)
    sink = Sink(tmp, port=port).start()
    b = disk_agent(tmp, target, name="b")
    st = b.stats()
    assert st["spool"]["corrupt_frames"] == 1 and st["spool"]["torn_bytes"] > 0, st["spool"]
    replayed = st["records"]["replayed"]
    assert 6000 - 200 <= replayed <= 6000 - 100, replayed  # two 100-record batches lost, nothing else
    b.wait_flushed(replayed)
    assert len(ids_of(sink)) == replayed
    assert "torn" in b.logtext()
    assert b.stop() == 0


def test_graceful_stop_with_service_down_keeps_records_spooled():
    tmp = TempDir("graceful")
    target, port = dead_target(tmp)
    a = disk_agent(tmp, target, "--drain-timeout-ms", "300")
    send_records(a.socket, records(3000, "g"))
    stat_is(a, "received", 3000)
    assert a.stop() == 0
    last = [l for l in a.logtext().splitlines() if "stopped" in l][-1]
    assert "spooled=3000" in last and "unsent=0" in last, last
    sink = Sink(tmp, port=port).start()
    b = disk_agent(tmp, target, name="b")
    b.wait_flushed(3000)
    assert len(ids_of(sink)) == 3000
    assert b.stop() == 0


def test_memory_mode_with_spool_dir_spills_at_shutdown():
    tmp = TempDir("spill")
    target, port = dead_target(tmp)
    a = Agent(tmp, target, "--spool-dir", tmp.file("spool"), "--drain-timeout-ms", "300").start()
    send_records(a.socket, records(2500, "p"))
    stat_is(a, "received", 2500)
    assert a.stop() == 0
    last = [l for l in a.logtext().splitlines() if "stopped" in l][-1]
    assert "spooled=2500" in last and "dropped_shutdown=0" in last, last
    sink = Sink(tmp, port=port).start()
    b = Agent(tmp, target, "--spool-dir", tmp.file("spool"), name="b").start()
    b.wait_flushed(2500)
    assert len(ids_of(sink)) == 2500 and b.stats()["records"]["replayed"] == 2500
    assert b.stop() == 0


def test_refused_batches_go_to_dead_letter():
    tmp = TempDir("dlq")
    sink = Sink(tmp, "--fail-first", "2", "--fail-code", "PERMISSION_DENIED").start()
    a = disk_agent(tmp, sink.target, "--batch-max-records", "100", "--max-inflight", "1")
    send_records(a.socket, records(1000, "d"))
    def settled():
        st = a.stats()
        r = st["records"]
        return st if r["flushed"] + r["dead_letter"] == 1000 else None
    st = wait_for(settled, 30, "flushed + dead_letter == 1000")
    assert st["records"]["dead_letter"] == 200 and st["spool"]["dead_letter_batches"] == 2, st
    assert sum(st["records"]["dropped"].values()) == 0 and accounting_holds(st)
    assert os.path.getsize(tmp.file("spool/deadletter.log")) > 200 * 10
    assert a.logtext().count("refused a batch") == 1
    assert a.stop() == 0


def test_full_spool_is_backpressure_not_loss():
    tmp = TempDir("fullspool")
    target, port = dead_target(tmp)
    a = disk_agent(tmp, target, "--spool-max-bytes", "1MiB", "--buffer-bytes", "1MiB", "--max-record-bytes", "16KiB")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(a.socket)
    s.setblocking(False)
    sent, data = 0, b"".join(msgpack.packb(r) for r in records(40000, "b"))
    off = 0
    deadline = time.monotonic() + scaled(30)
    while off < len(data):  # write until the agent stops reading (a slow sanitizer build takes longer to fill)
        try:
            off += s.send(data[off:off + 65536])
        except BlockingIOError:
            if a.stats()["backpressure_active"] and "spool full" in a.logtext():
                break  # the spool is full and the agent stopped reading: the state under test
            assert time.monotonic() < deadline, "the agent never stopped reading: %s" % a.stats()
            time.sleep(0.01)
    wait_for(lambda: a.stats()["backpressure_pauses"] > 0, 20, "backpressure")
    st = a.stats()
    assert off < len(data), "the agent should have stopped reading"
    assert st["spool"]["bytes"] <= 1 << 20 and sum(st["records"]["dropped"].values()) == 0, st
    assert "spool full" in a.logtext()
    sink = Sink(tmp, port=port).start()  # the service comes back: everything drains
    s.settimeout(60)  # a hang here would mean the agent never resumed reading
    s.sendall(data[off:])
    s.close()
    a.wait_flushed(40000, timeout=120)
    assert len(ids_of(sink)) == 40000
    assert a.stop() == 0


def test_drop_newest_drops_only_once_the_spool_is_full():
    """--on-full drop-newest with --buffer disk: the buffer is the spool. A burst many times the ring, the service
    down, the spool with room: nothing is dropped (the ring's moment of fullness waits for the flusher to move it to
    disk). Then more than the spool holds: the newest are dropped and counted, the writer is not held up, and when
    the service returns the oldest — the whole first burst — are delivered."""
    tmp = TempDir("dropnewest-disk")
    target, port = dead_target(tmp)
    a = disk_agent(tmp, target, "--on-full", "drop-newest", "--buffer-bytes", "256KiB", "--spool-max-bytes", "2MiB",
                   "--batch-max-records", "500")
    first = records(10000, "f")
    send_records(a.socket, first)  # ~6x the ring (128 KiB) in one write
    st = wait_for(lambda: (lambda s: s if s["records"]["spooled"] + sum(s["records"]["dropped"].values()) ==
                           len(first) else None)(a.stats()), 30, "the first burst spooled or dropped")
    assert st["records"]["spooled"] == len(first) and sum(st["records"]["dropped"].values()) == 0, st["records"]
    more = records(60000, "m")  # ~3x what the spool has left
    t0 = time.monotonic()
    send_records(a.socket, more)
    wait_for(lambda: a.stats()["records"]["received"] == len(first) + len(more), scaled(60), "all received")
    taken_s = time.monotonic() - t0
    st = a.stats()
    r = st["records"]
    assert r["dropped"]["buffer_full"] > 0 and sum(r["dropped"].values()) == r["dropped"]["buffer_full"], r
    assert st["spool"]["bytes"] <= 2 << 20 and accounting_holds(st), st
    assert "buffer full: record dropped (--on-full drop-newest)" in a.logtext()
    sink = Sink(tmp, port=port).start()
    settled = wait_for(lambda: (lambda s: s if s["records"]["flushed"] + s["records"]["dropped"]["buffer_full"] ==
                                len(first) + len(more) and accounting_holds(s) else None)(a.stats()), 120,
                       "everything delivered or dropped")
    got = ids_of(sink)
    assert set(x["log_id"] for x in first) <= got, "records of the first burst were lost"
    assert len(got) == settled["records"]["flushed"], (len(got), settled["records"])
    print("     drop-newest, disk: %d dropped of %d; the writer's second burst took %.2fs" %
          (r["dropped"]["buffer_full"], len(first) + len(more), taken_s))
    assert a.stop() == 0


def test_retry_batch_without_room_keeps_its_records_on_disk():
    """--buffer disk, the spool full, and the service refusing every entry of a batch as retryable: the retry batch
    has no room in the spool, so its records stay in the frame they came from (held for it) — acknowledged to a
    Forward client as spooled, they are still on disk when the agent is killed, and the next run delivers them.
    (Before: the parent's frame was released and its segment deleted, the records lived only in memory.) The service
    is down until the spool is full, so the first answer always finds it full."""
    import threading
    tmp = TempDir("pinned")
    target, port = dead_target(tmp)
    # batches of 800 records (~100 KiB) each fill a segment of their own (1 MiB / 16); 10 fill the spool
    args = ("--spool-max-bytes", "1MiB", "--batch-max-records", "800", "--max-inflight", "1", "--flush-interval-ms",
            "20", "--retry-initial-ms", "100", "--retry-max-ms", "300")
    a = disk_agent(tmp, target, *args)
    m, n = 80, 200  # Forward messages of 200 events with a chunk each: 16,000 records, more than the spool holds
    data = b"".join(msgpack.packb(["t", [[T0, {"message": "pinned %02d %03d" % (k, i), "log_id": "%016d%016d" % (k, i)}]
                                         for i in range(n)], {"chunk": "c%02d" % k}]) for k in range(m))
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(a.socket)
    acked, up = [], msgpack.Unpacker(raw=False)

    def read_acks():
        try:
            while True:
                got = s.recv(1 << 16)
                if not got:
                    return
                up.feed(got)
                acked.extend(x["ack"] for x in up)
        except OSError:
            return
    threading.Thread(target=read_acks, daemon=True).start()
    threading.Thread(target=lambda: _send_quietly(s, data), daemon=True).start()
    wait_for(lambda: "spool full" in a.logtext(), 60, "the spool full")
    sink1 = Sink(tmp, "--reject-rate", "1", port=port, name="sink1").start()  # every entry refused, retryable
    st = wait_for(lambda: (lambda st: st if st["records"]["retry_wait"] > 0 else None)(a.stats()), 60,
                  "a retry batch the spool had no room for")
    promised = list(acked)  # acknowledged before the kill: spooled, so they must survive it
    assert len(promised) >= 4, (promised, st["records"])  # at least the first batch's four chunks
    a.kill()
    s.close()
    sink1.stop()
    sink2 = Sink(tmp, port=port, name="sink2").start()  # the service, healthy, where the agent looks for it
    b = disk_agent(tmp, sink2.target, *args, name="b")
    want = set("%016d%016d" % (int(c[1:]), i) for c in promised for i in range(n))
    st = wait_for(lambda: (lambda st: st if st["records"]["replayed"] > 0 and st["records"]["flushed"] ==
                           st["records"]["replayed"] else None)(b.stats()), 60, "the spool replayed and delivered")
    missing = want - ids_of(sink2)
    assert not missing, "%d acknowledged records lost (of %d): %s" % (len(missing), len(want), st["records"])
    assert b.stop() == 0


def test_sighup_to_drop_newest_with_the_spool_full():
    """--on-full is a live setting: with --buffer disk, the spool full and ingest paused under block, a SIGHUP that
    makes it drop-newest resumes reading (the flusher wakes the held connection by the live setting, not the one it
    started with): the writer finishes, the newest are dropped and counted, nothing the spool holds is lost."""
    import threading
    tmp = TempDir("hup-dropnewest")
    target, port = dead_target(tmp)
    conf = tmp.file("a.conf")
    with open(conf, "w") as f:
        f.write("on-full = block\n")
    a = Agent(tmp, target, "--buffer", "disk", "--spool-dir", tmp.file("spool"), "--spool-max-bytes", "1MiB",
              "--buffer-bytes", "1MiB", "--retry-initial-ms", "20", "--retry-max-ms", "200",
              env={"LOGAGENT_CONFIG": conf}).start()
    sent = records(40000, "h")
    writer = threading.Thread(target=send_records, args=(a.socket, sent), daemon=True)
    writer.start()
    wait_for(lambda: a.stats()["backpressure_active"] and "spool full" in a.logtext(), 60, "the spool full, paused")
    assert writer.is_alive() and a.stats()["records"]["dropped"]["buffer_full"] == 0  # block: the writer waits
    with open(conf, "w") as f:
        f.write("on-full = drop-newest\n")
    a.proc.send_signal(signal.SIGHUP)
    writer.join(scaled(60))
    assert not writer.is_alive(), "the writer is still held after the switch to drop-newest: %s" % a.stats()
    st = wait_for(lambda: (lambda s: s if s["records"]["received"] == len(sent) else None)(a.stats()), 30,
                  "every record received")
    assert st["records"]["dropped"]["buffer_full"] > 0 and accounting_holds(st), st["records"]
    sink = Sink(tmp, port=port).start()
    st = wait_for(lambda: (lambda s: s if s["records"]["flushed"] + s["records"]["dropped"]["buffer_full"] ==
                           len(sent) and accounting_holds(s) else None)(a.stats()), 120, "delivered or dropped")
    assert len(ids_of(sink)) == st["records"]["flushed"], (len(ids_of(sink)), st["records"])
    assert a.stop() == 0


def _send_quietly(s, data):
    try:
        s.sendall(data)
    except OSError:
        pass  # the agent was killed


if __name__ == "__main__":
    run([test_sigkill_after_spooling_delivers_everything_after_restart, test_sigkill_mid_stream_loses_only_unspooled,
         test_torn_tail_and_flipped_bytes_are_counted_not_fatal, test_graceful_stop_with_service_down_keeps_records_spooled,
         test_memory_mode_with_spool_dir_spills_at_shutdown, test_refused_batches_go_to_dead_letter,
         test_full_spool_is_backpressure_not_loss, test_drop_newest_drops_only_once_the_spool_is_full,
         test_retry_batch_without_room_keeps_its_records_on_disk, test_sighup_to_drop_newest_with_the_spool_full])
