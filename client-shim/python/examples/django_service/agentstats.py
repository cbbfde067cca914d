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
