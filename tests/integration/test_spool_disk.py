"""test_spool_disk.py — the disk buffer on a filesystem that fills up: a real 4 MiB tmpfs (mounted here, as root;
every test skips with a printed reason when that is not possible).

With the service down, the spool fills the filesystem long before --spool-max-bytes: the agent must treat it as a
full spool (--on-full applies: block = backpressure, drop-newest = counted drops), say ENOSPC in its log once,
show spool.disk_full in /stats and /metrics, keep answering /stats, and — when the service returns, or space frees
— resume by itself and deliver every record it kept exactly once, with nothing counted dropped.shutdown at SIGTERM.
Also: an agent started with its spool on an already full filesystem."""
import contextlib
import glob
import os
import subprocess
import threading

from harness import (Agent, Sink, TempDir, accounting_holds, dead_target, http_get, run, send_records, wait_for)

MSG = "x" * 80  # ~170 bytes per record in the spool: 4 MiB hold ~24,000 records


@contextlib.contextmanager
def tmpfs(tmp, size="4m"):
    """Mounts a tmpfs of `size` at tmp/mnt; yields its path, or None (reason printed) when it cannot."""
    mnt = tmp.file("mnt")
    os.mkdir(mnt)
    if os.geteuid() != 0:
        print("skip: not root (mounting a tmpfs needs root; CI runs as root)")
        yield None
        return
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%s,mode=0700" % size, "tmpfs", mnt],
                       capture_output=True, text=True)
    if r.returncode != 0:
        print("skip: cannot mount a tmpfs: %s" % r.stderr.strip())
        yield None
        return
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", mnt])


def records(n, tag, base=0):
    return [{"message": "%s %s%d" % (MSG, tag, i), "log_id": "%s%031x" % (tag[0], i)} for i in range(base, base + n)]


def disk_agent(tmp, target, spool, *args):
    return Agent(tmp, target, "--buffer", "disk", "--spool-dir", spool, "--retry-initial-ms", "20",
                 "--retry-max-ms", "200", "--drain-timeout-ms", "2000", *args).start()


def sender(sock, recs):
    """send_records in a thread (under --on-full block the agent stops reading and the write blocks)."""
    t = threading.Thread(target=send_records, args=(sock, recs), daemon=True)
    t.start()
    return t


class Filler(threading.Thread):
    """Sends records in chunks of 5,000 until told to stop (or 40 chunks): with a drop policy, how much reaches the
    spool depends on how fast the flusher keeps up, so the test sends until the disk is full, not a fixed count."""

    def __init__(self, sock, tag):
        super().__init__(daemon=True)
        self.sock, self.tag, self.sent, self.stop = sock, tag, [], threading.Event()
        self.start()

    def run(self):
        for c in range(40):
            if self.stop.is_set():
                break
            chunk = records(5000, self.tag, base=c * 5000)
            send_records(self.sock, chunk)
            self.sent += chunk

    def finish(self):
        self.stop.set()
        self.join(120)
        assert not self.is_alive()
        return self.sent


def disk_full(a):
    st = a.stats()
    return st if st["spool"]["disk_full"] else None


def exactly_once(sink, sent_ids):
    got = [e["log_id"] for e in sink.entries()]
    assert len(got) == len(set(got)), "duplicates at the sink: %d entries, %d ids" % (len(got), len(set(got)))
    assert set(got) <= sent_ids
    return set(got)


def metric(a, name):
    status, body = http_get(a.stats_socket, "/metrics")
    assert status == 200
    for line in body.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError("no %s in /metrics" % name)


def finish(a, sink, n):
    """The service is back: everything is delivered, the episode ends, the spool empties, a clean stop."""
    st = a.wait_flushed(n, timeout=120)
    assert accounting_holds(st) and sum(st["records"]["dropped"].values()) == 0, st["records"]
    wait_for(lambda: not a.stats()["spool"]["disk_full"], 30, "spool.disk_full back to false")
    sp = a.stats()["spool"]
    assert sp["bytes"] < 1 << 20, sp  # delivered batches give their space back (at most 1 MiB is kept)
    assert a.stop() == 0
    last = [l for l in a.logtext().splitlines() if "stopped" in l][-1]
    assert "dropped_shutdown=0" in last and "unsent=0" in last, last
    log = a.logtext()
    assert log.count("spool filesystem full") >= 1 and "error=ENOSPC" in log, log[-3000:]
    assert "Input/output error" not in log


def test_disk_full_blocks_then_delivers_everything_once():
    """--on-full block: the writer waits while the disk is full; all 50,000 records arrive once it is over."""
    tmp = TempDir("diskfull")
    with tmpfs(tmp) as mnt:
        if not mnt:
            return
        target, port = dead_target(tmp)
        a = disk_agent(tmp, target, mnt + "/spool", "--buffer-bytes", "4MiB")
        sent = records(50000, "b")
        t = sender(a.socket, sent)
        st = wait_for(lambda: disk_full(a), 60, "spool.disk_full")
        assert st["spool"]["disk_full_episodes"] == 1 and st["spool"]["bytes"] < 4 << 20, st["spool"]
        wait_for(lambda: a.stats()["backpressure_active"], 30, "backpressure (writer blocked)")
        assert t.is_alive(), "the writer should be blocked by the full disk"
        assert metric(a, "logagent_spool_disk_full") == 1
        assert metric(a, "logagent_spool_disk_full_episodes_total") == 1
        status, body = http_get(a.stats_socket, "/healthz")  # the 4 MiB spool is far below --spool-max-bytes
        assert status == 503 and "spool filesystem full" in body, (status, body)
        sink = Sink(tmp, port=port).start()
        t.join(120)
        assert not t.is_alive()
        finish(a, sink, 50000)
        assert exactly_once(sink, set(r["log_id"] for r in sent)) == set(r["log_id"] for r in sent)
        assert not glob.glob(mnt + "/spool/seg-*.log"), os.listdir(mnt + "/spool")


def test_disk_full_drop_newest_counts_and_delivers_the_rest_once():
    """--on-full drop-newest: the writer never waits; what does not fit is counted buffer_full; the rest arrives."""
    tmp = TempDir("diskfull-dn")
    with tmpfs(tmp) as mnt:
        if not mnt:
            return
        target, port = dead_target(tmp)
        a = disk_agent(tmp, target, mnt + "/spool", "--on-full", "drop-newest", "--buffer-bytes", "4MiB")
        w = Filler(a.socket, "n")
        wait_for(lambda: disk_full(a), 60, "spool.disk_full")
        wait_for(lambda: a.stats()["records"]["dropped"]["buffer_full"] > 0 or not w.is_alive(), 60, "drops")
        sent = w.finish()  # never blocked: drop-newest
        st = wait_for(lambda: (lambda s: s if s["records"]["received"] == len(sent) else None)(a.stats()), 30,
                      "everything sent received")
        dropped = st["records"]["dropped"]["buffer_full"]
        assert dropped > 0 and st["spool"]["disk_full"], st
        sink = Sink(tmp, port=port).start()
        st = a.wait_flushed(len(sent) - dropped, timeout=120)
        assert st["records"]["flushed"] + dropped == len(sent) and accounting_holds(st), st["records"]
        assert len(exactly_once(sink, set(r["log_id"] for r in sent))) == len(sent) - dropped
        assert a.stop() == 0
        assert "error=ENOSPC" in a.logtext()


def test_disk_full_drop_oldest_accounts_for_everything():
    """--on-full drop-oldest: shedding the oldest (spooled) batches frees disk; every record is delivered once or
    counted buffer_full."""
    tmp = TempDir("diskfull-do")
    with tmpfs(tmp) as mnt:
        if not mnt:
            return
        target, port = dead_target(tmp)
        a = disk_agent(tmp, target, mnt + "/spool", "--on-full", "drop-oldest", "--buffer-bytes", "4MiB")
        w = Filler(a.socket, "o")
        wait_for(lambda: a.stats()["spool"]["disk_full_episodes"] > 0, 60, "a disk-full episode")
        w.stop.set()
        sink = Sink(tmp, port=port).start()
        sent = w.finish()
        n = len(sent)
        def settled():
            st = a.stats()
            r = st["records"]
            return st if r["received"] == n and r["flushed"] + r["dropped"]["buffer_full"] == n else None
        st = wait_for(settled, 120, "flushed + dropped.buffer_full == all sent")
        assert accounting_holds(st), st["records"]
        assert len(exactly_once(sink, set(r["log_id"] for r in sent))) == st["records"]["flushed"]
        assert a.stop() == 0


def test_start_on_a_full_disk_resumes_when_space_frees():
    """The spool folder is on a filesystem already full at start-up: the agent starts, /stats says disk_full, and
    once a file is removed the waiting batches reach the spool by themselves (service still down), then arrive."""
    tmp = TempDir("fullstart")
    with tmpfs(tmp) as mnt:
        if not mnt:
            return
        os.mkdir(mnt + "/spool", 0o700)
        filler = mnt + "/filler"
        with open(filler, "wb") as f:  # fill the filesystem (a write past its size fails with ENOSPC)
            try:
                while True:
                    f.write(b"\0" * 65536)
                    f.flush()
            except OSError:
                pass
        target, port = dead_target(tmp)
        a = disk_agent(tmp, target, mnt + "/spool")
        sent = records(5000, "s")
        t = sender(a.socket, sent)
        wait_for(lambda: disk_full(a), 30, "spool.disk_full")
        t.join(30)
        assert a.stats()["records"]["spooled"] == 0
        os.unlink(filler)  # space frees: no restart, no service needed to move on
        wait_for(lambda: a.stats()["records"]["spooled"] == 5000, 30, "all 5000 records spooled")
        sink = Sink(tmp, port=port).start()
        finish(a, sink, 5000)
        assert len(exactly_once(sink, set(r["log_id"] for r in sent))) == 5000


if __name__ == "__main__":
    run([test_disk_full_blocks_then_delivers_everything_once, test_disk_full_drop_newest_counts_and_delivers_the_rest_once,
         test_disk_full_drop_oldest_accounts_for_everything, test_start_on_a_full_disk_resumes_when_space_frees])
