"""test_compression.py — `--upstream-compression gzip` with the real agent, the real sink and a TCP proxy between them
that counts the bytes the agent puts on the wire.

The same records of the original service's shape go once uncompressed and once with gzip, on both upstream protocols:
with gzip the wire carries well under half the bytes, and every record arrives exactly once with its fields (the sink
is a gRPC C core server: it decompresses what grpc-encoding names). A service that does not take gzip (the sink with
--no-compression answers such a call UNIMPLEMENTED, as gRPC servers built without it do) gets one refused call, then
the same records uncompressed: nothing dropped, no switch to unary, a warning that says what to set, and /stats says
`gzip_refused`. A word that is not none|gzip is refused at start with the accepted words."""
import os
import subprocess

from harness import BIN, Agent, Sink, TcpProxy, TempDir, run, scaled, send_records

N = 5000


def records(n, tag):
    """The original write_log shape: message, service, level, trace/span ids, metadata (adv_id etc.)."""
    return [{"message": "Concurrent test log entry %d (%s)" % (i, tag), "service_name": "django-concurrent-test",
             "level": "INFO", "trace_id": "concurrent-trace-%06d" % i, "span_id": "concurrent-span-%06d" % i,
             "adv_id": 1000 + i % 50, "request_path": "/api/concurrent_test/", "thread": "worker-%d" % (i % 10)}
            for i in range(n)]


def ship(tmp, name, protocol, compression):
    """Sends N records through an agent with the given compression; returns (bytes to the sink, entries, stats)."""
    sink_args = ("--protocol", "otlp") if protocol == "otlp" else ()
    sink = Sink(tmp, *sink_args, name=name + "-sink").start()
    proxy = TcpProxy(sink.target)
    a = Agent(tmp, proxy.target, "--upstream-protocol", protocol, "--upstream-compression", compression,
              "--flush-interval-ms", "20", name=name).start()
    tag = "%s/%s" % (protocol, compression)
    send_records(a.socket, records(N, tag))
    sink.wait_count(N, timeout=scaled(60))
    st = a.wait_flushed(N)
    assert a.stop() == 0
    summary = sink.stop()
    proxy.close()
    assert summary["entries"] == N and summary["unique_log_ids"] == N and summary["duplicates"] == 0, summary
    entries = sink.entries()
    got = sorted(entries, key=lambda e: int(e["message"].split()[4]))
    for i, e in enumerate(got):
        assert e["message"] == "Concurrent test log entry %d (%s)" % (i, tag), e
        assert e["service_name"] == "django-concurrent-test" and e["level"] == "INFO", e
        assert e["trace_id"] == "concurrent-trace-%06d" % i and e["span_id"] == "concurrent-span-%06d" % i, e
        assert e["metadata"]["adv_id"] in (str(1000 + i % 50), 1000 + i % 50), e["metadata"]
        assert e["metadata"]["request_path"] == "/api/concurrent_test/", e["metadata"]
    assert st["upstream"]["compression"] == compression, st["upstream"]
    assert "compression=%s" % compression in a.logtext(), a.logtext()[-2000:]
    return proxy.to_target, st


def test_gzip_shrinks_the_wire_both_protocols():
    for protocol in ("logagent", "otlp"):
        tmp = TempDir("gzip-" + protocol)
        plain, _ = ship(tmp, "plain", protocol, "none")
        gz, st = ship(tmp, "gzip", protocol, "gzip")
        print("  %s: %d records, %d bytes uncompressed, %d with gzip (%.1f%%)"
              % (protocol, N, plain, gz, 100.0 * gz / plain))
        assert plain > N * 100, plain  # the records themselves went over the proxy
        assert gz < plain / 2, (gz, plain)
        assert st["records"]["dropped"] == {k: 0 for k in st["records"]["dropped"]}, st["records"]


def test_service_without_gzip_gets_it_uncompressed():
    tmp = TempDir("gzip-refused")
    sink = Sink(tmp, "--no-compression").start()
    a = Agent(tmp, sink.target, "--upstream-compression", "gzip", "--flush-interval-ms", "20").start()
    send_records(a.socket, records(300, "refused"))
    sink.wait_count(300, timeout=scaled(60))
    st = a.wait_flushed(300)
    assert st["upstream"]["compression"] == "gzip_refused" and st["upstream"]["mode"] == "batch", st["upstream"]
    assert st["batches"]["failed"] >= 1 and st["batches"]["unary_calls"] == 0, st["batches"]
    assert st["records"]["dropped"] == {k: 0 for k in st["records"]["dropped"]}, st["records"]
    log = a.logtext()
    assert log.count("does not take gzip-compressed messages") == 1, log[-3000:]
    assert "set --upstream-compression none" in log and "switching to unary" not in log, log[-3000:]
    # later records go uncompressed at once: no second refusal
    send_records(a.socket, records(300, "after"))
    sink.wait_count(600, timeout=scaled(60))
    st2 = a.wait_flushed(600)
    assert st2["batches"]["failed"] == st["batches"]["failed"], st2["batches"]
    assert a.stop() == 0
    summary = sink.stop()
    assert summary["entries"] == 600 and summary["unique_log_ids"] == 600 and summary["duplicates"] == 0, summary


def test_bad_word_refused():
    p = subprocess.run([os.path.join(BIN, "logagentd"), "--upstream-compression", "zstd", "--check-config"],
                       capture_output=True, text=True, timeout=scaled(30), env=dict(os.environ, LOGAGENT_CONFIG=""))
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert "--upstream-compression" in p.stderr and "expected one of: none, gzip" in p.stderr, p.stderr
    p = subprocess.run([os.path.join(BIN, "logagentd"), "--upstream-compression", "gzip", "--check-config"],
                       capture_output=True, text=True, timeout=scaled(30), env=dict(os.environ, LOGAGENT_CONFIG=""))
    assert p.returncode == 0 and "upstream-compression = gzip" in p.stdout, (p.returncode, p.stdout, p.stderr)


if __name__ == "__main__":
    run([test_gzip_shrinks_the_wire_both_protocols, test_service_without_gzip_gets_it_uncompressed,
         test_bad_word_refused])
