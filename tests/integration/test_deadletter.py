"""test_deadletter.py — the dead-letter file end to end, with a real sink refusing batches (PERMISSION_DENIED):
refused records land in <spool-dir>/deadletter.log with the status, reason and time of the refusal; the files stay
under --deadletter-max-bytes (the oldest rotated out and counted in /stats and /metrics); `logagentctl deadletter`
prints each kept record as a JSON line with its fields; `logagentctl deadletter --replay` sends them back through
the ingest socket and, once the service accepts, each arrives exactly once with the same fields. Also: usage errors
and a missing spool folder."""
import glob
import json
import os
import shutil
import struct
import subprocess
import time
import zlib

from harness import BIN, Agent, Sink, TempDir, accounting_holds, http_get, run, send_records, wait_for

CTL = os.path.join(BIN, "logagentctl")


def ctl(*args, env=None):
    e = dict(os.environ)
    e.pop("LOGAGENT_SPOOL_DIR", None)
    e.update(env or {})
    return subprocess.run([CTL] + list(args), capture_output=True, text=True, timeout=60, env=e)


def records(n):
    return [{"message": "refused %d" % i, "log_id": "d%031x" % i, "level": "warning", "service_name": "billing",
             "user": "u%d" % (i % 7), "attempt": i, "ratio": 0.5, "ok": True} for i in range(n)]


def metric(a, name):
    status, body = http_get(a.stats_socket, "/metrics")
    for line in body.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError("no %s in /metrics" % name)


def test_refused_records_are_bounded_printed_and_replayed():
    tmp = TempDir("dlq")
    spool = tmp.file("spool")
    refusing = Sink(tmp, "--fail-first", "1000000", "--fail-code", "PERMISSION_DENIED", name="refusing").start()
    a = Agent(tmp, refusing.target, "--buffer", "disk", "--spool-dir", spool, "--batch-max-records", "100",
              "--max-inflight", "1", "--deadletter-max-bytes", "256KiB").start()
    sent = records(3000)
    t0 = time.time()
    send_records(a.socket, sent)
    def settled():
        st = a.stats()
        return st if st["records"]["dead_letter"] == 3000 else None
    st = wait_for(settled, 60, "3000 records dead-lettered")
    sp = st["spool"]
    assert accounting_holds(st) and sum(st["records"]["dropped"].values()) == 0, st["records"]
    evicted = sp["dead_letter_evicted_records"]
    assert 0 < evicted < 3000 and sp["dead_letter_max_bytes"] == 256 << 10, sp
    on_disk = sum(os.path.getsize(p) for p in glob.glob(spool + "/deadletter.log*"))
    assert on_disk == sp["dead_letter_bytes"] <= 256 << 10, (on_disk, sp)
    assert metric(a, "logagent_spool_dead_letter_evicted_records_total") == evicted
    assert metric(a, "logagent_spool_dead_letter_bytes") == on_disk
    assert "oldest records dropped" in a.logtext()
    table = ctl("--stats-socket", a.stats_socket, "stats").stdout
    assert "%d records rotated out" % evicted in table and "disk full" in table, table

    # printed: the newest 3000 - evicted records, oldest first, with their fields and the refusal
    r = ctl("deadletter", "--spool-dir", spool)
    assert r.returncode == 0, r.stderr
    lines = [json.loads(l) for l in r.stdout.splitlines()]
    kept = sent[evicted:]
    assert [l["record"]["log_id"] for l in lines] == [k["log_id"] for k in kept]
    first = lines[0]
    assert first["record"]["message"] == kept[0]["message"] and first["record"]["level"] == "WARN"
    assert first["record"]["service_name"] == "billing"
    assert first["record"]["metadata"] == {"user": kept[0]["user"], "attempt": str(kept[0]["attempt"]),
                                           "ratio": "0.5", "ok": "true"}, first
    assert first["refused"]["status"] == "PERMISSION_DENIED" and first["refused"]["code"] == 7, first
    assert first["refused"]["reason"], first
    refused_at = time.mktime(time.strptime(first["refused"]["time"][:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
    assert abs(refused_at - t0) < 120, first["refused"]["time"]
    assert first["source"]["pid"] == os.getpid() and first["file"] in ("deadletter.log", "deadletter.log.1")
    # the same through the environment variable, as an operator would run it
    assert ctl("deadletter", env={"LOGAGENT_SPOOL_DIR": spool}).stdout == r.stdout

    # a copy for the damage tests below (a replay removes the files it confirmed)
    copy = tmp.file("copy")
    os.mkdir(copy)
    for path in glob.glob(spool + "/deadletter.log*"):
        shutil.copy(path, copy)

    # the service is fixed: replay through the ingest socket; each kept record arrives once, fields intact
    refusing.stop()
    sink = Sink(tmp, port=refusing.port).start()
    # as if an earlier replay had moved deadletter.log.1 aside and died before the agent confirmed it
    os.rename(spool + "/deadletter.log.1", spool + "/deadletter.replaying.1")
    rr = ctl("deadletter", "--spool-dir", spool, "--replay", "--socket", a.socket)
    assert "deadletter.replaying.1 is left from an interrupted replay: replaying it" in rr.stderr, rr.stderr
    assert rr.returncode == 0 and rr.stdout == "", (rr.returncode, rr.stdout, rr.stderr)
    assert "replayed %d records to %s, confirmed by the agent" % (len(kept), a.socket) in rr.stderr, rr.stderr
    # confirmed by the agent: the files are gone (a record refused again would start a new deadletter.log)
    assert not glob.glob(spool + "/deadletter.*"), os.listdir(spool)
    assert ctl("deadletter", "--spool-dir", spool).stdout == ""
    st = a.wait_flushed(len(kept))
    got = sink.entries()
    assert sorted(e["log_id"] for e in got) == sorted(k["log_id"] for k in kept)
    by_id = {e["log_id"]: e for e in got}
    e = by_id[kept[0]["log_id"]]
    assert e["message"] == kept[0]["message"] and e["level"] == "WARN" and e["service_name"] == "billing", e
    assert e["metadata"] == first["record"]["metadata"], e
    assert st["records"]["dead_letter"] == 3000 and accounting_holds(st)
    assert a.stop() == 0
    # a refusal reason that is not UTF-8 (a service's details are any bytes): printed with '?', every record kept
    with open(copy + "/deadletter.log", "r+b") as f:
        hdr = bytearray(f.read(24))
        plen = struct.unpack_from("<I", hdr, 4)[0]
        payload = bytearray(f.read(plen))
        assert hdr[:4] == b"LAD1" and struct.unpack_from("<I", payload, 0)[0] > 16, hdr
        payload[16] = 0xff  # the reason's first byte
        struct.pack_into("<I", hdr, 8, zlib.crc32(bytes(payload), zlib.crc32(bytes(hdr[12:24]))))
        f.seek(0)
        f.write(hdr + payload)
    r1 = ctl("deadletter", "--spool-dir", copy)
    got = [json.loads(l) for l in r1.stdout.splitlines()]
    assert r1.returncode == 0 and len(got) == len(lines), (r1.stderr, len(got))
    assert any(l["refused"]["reason"].startswith("?") for l in got), got[-1]["refused"]
    with open(copy + "/deadletter.log", "r+b") as f:  # a flipped byte: that batch is skipped and said, not fatal
        f.seek(300)
        b = f.read(1)
        f.seek(300)
        f.write(bytes([b[0] ^ 0xff]))
    r2 = ctl("deadletter", "--spool-dir", copy)
    assert r2.returncode == 0 and "fails its CRC" in r2.stderr, r2.stderr
    assert 0 < len(lines) - len(r2.stdout.splitlines()) <= 100


def test_no_dead_letter_file_with_max_bytes_0():
    """--deadletter-max-bytes 0 (here from LOGAGENT_DEADLETTER_MAX_BYTES): refused records are dropped and counted
    upstream_rejected, no file is written, the log says why."""
    tmp = TempDir("dlq0")
    spool = tmp.file("spool")
    refusing = Sink(tmp, "--fail-first", "1000000", "--fail-code", "INVALID_ARGUMENT").start()
    a = Agent(tmp, refusing.target, "--buffer", "disk", "--spool-dir", spool,
              env={"LOGAGENT_DEADLETTER_MAX_BYTES": "0"}).start()
    send_records(a.socket, records(500))
    st = wait_for(lambda: (lambda s: s if s["records"]["dropped"]["upstream_rejected"] == 500 else None)(a.stats()),
                  30, "500 records dropped upstream_rejected")
    assert st["records"]["dead_letter"] == 0 and st["spool"]["dead_letter_max_bytes"] == 0 and accounting_holds(st)
    assert not glob.glob(spool + "/deadletter.log*")
    assert "no dead-letter file (--deadletter-max-bytes 0)" in a.logtext()
    assert a.stop() == 0


def test_deadletter_command_errors():
    tmp = TempDir("dlq-err")
    r = ctl("deadletter", "--spool-dir", tmp.file("nope"))
    assert r.returncode == 1 and "cannot read the spool folder" in r.stderr and tmp.file("nope") in r.stderr, r
    r = ctl("deadletter", "--socket", "/x")
    assert r.returncode == 2 and "--socket needs --replay" in r.stderr, r
    r = ctl("stats", "--replay")
    assert r.returncode == 2 and "--replay does not apply to stats" in r.stderr, r
    os.mkdir(tmp.file("empty"))
    r = ctl("deadletter", "--spool-dir", tmp.file("empty"))
    assert r.returncode == 0 and r.stdout == "", r
    r = ctl("deadletter", "--spool-dir", tmp.file("empty"), "--replay", "--socket", tmp.file("no.sock"))
    assert r.returncode == 1 and "cannot connect to the ingest socket" in r.stderr, r
    with open(tmp.file("empty/deadletter.log"), "wb") as f:  # a torn frame: said, skipped, not fatal
        f.write(b"LAD1" + b"\xff" * 10)
    r = ctl("deadletter", "--spool-dir", tmp.file("empty"))
    assert r.returncode == 0 and r.stdout == "" and "torn" in r.stderr, r


if __name__ == "__main__":
    run([test_refused_records_are_bounded_printed_and_replayed, test_no_dead_letter_file_with_max_bytes_0,
         test_deadletter_command_errors])
