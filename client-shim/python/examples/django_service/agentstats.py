"""agentstats.py — what the agent delivered, for the test tools and measure.py: records.flushed from logagentd's
stats endpoint (HTTP GET /stats on its Unix socket, --stats-socket; $LOGAGENT_STATS_SOCKET by convention here).

records.flushed counts records the log service acknowledged. It is the agent's count for all its clients: the
service's own log lines (one per test endpoint call) go through the same agent and count too."""
import json
import os
import socket
import time


def default_path():
    return os.environ.get("LOGAGENT_STATS_SOCKET") or None


def flushed(path, timeout=10.0):
    """records.flushed from the agent's /stats at path. Raises OSError when nothing answers there."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(path)
        s.sendall(b"GET /stats HTTP/1.0\r\nHost: localhost\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0]
    if status.split()[1:2] != [b"200"]:
        raise OSError("the stats socket %s answered %r" % (path, status.decode(errors="replace")))
    return json.loads(body)["records"]["flushed"]


def wait_flushed(path, target, timeout):
    """Polls until records.flushed >= target; returns (flushed, time.perf_counter() then), or (last flushed,
    None) when timeout seconds passed first."""
    deadline = time.monotonic() + timeout
    delay = 0.002
    while True:
        n = flushed(path)
        if n >= target:
            return n, time.perf_counter()
        if time.monotonic() > deadline:
            return n, None
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def report_delivered(path, before, ok, t0, timeout):
    """After ok records written from t0 (time.perf_counter()) with records.flushed at `before`: waits until they
    are delivered, prints the count (and the delivered rate when all came in time); returns (delivered, rate or
    None)."""
    n, t2 = wait_flushed(path, before + ok, timeout)
    rate = ok / (t2 - t0) if t2 is not None else None
    print("delivered by the agent: %d%s" % (n - before, "" if rate is None else ", %.0f records/s delivered" % rate))
    return n - before, rate
