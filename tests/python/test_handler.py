"""test_handler.py — logagent.LogAgentHandler, the standard logging module into a real agent and a real sink:
configured from a Django-style LOGGING dict ("class": "logagent.LogAgentHandler"); levelname → level (custom
level names included), logger name, exception text and stack, extra= fields and trace/span ids, the record's
own time; a broken log call never raises into the application (handleError's report on stderr, nothing sent);
and a process that logs and exits without flushing still delivers (logging's shutdown flushes the handler).

Runs with Debian's /usr/bin/python3 and python3-msgpack; the module comes from client-shim/python."""
import io
import logging
import logging.config
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
sys.path.insert(0, os.path.join(HERE, "..", "..", "client-shim", "python"))

import logagent  # noqa: E402
from harness import Agent, Sink, TempDir, run, scaled, spawn  # noqa: E402

PY = "/usr/bin/python3"
PYPATH = os.path.join(HERE, "..", "..", "client-shim", "python")


def pair(name):
    tmp = TempDir(name)
    sink = Sink(tmp).start()
    a = Agent(tmp, sink.target, "--flush-interval-ms", "10").start()
    return tmp, sink, a


def logging_dict(sock):
    """What a Django settings.LOGGING would say."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {
            "agent": {"class": "logagent.LogAgentHandler", "service_name": "shop", "socket_path": sock,
                      "level": "TRACE"},  # a custom level name (logging.addLevelName)
        },
        "loggers": {"shop": {"handlers": ["agent"], "level": "TRACE", "propagate": False}},
    }


def test_handler_levels_exception_extra():
    tmp, sink, a = pair("handler")
    logging.addLevelName(5, "TRACE")
    logging.config.dictConfig(logging_dict(a.socket))
    log = logging.getLogger("shop.views")
    handler = logging.getLogger("shop").handlers[0]
    assert isinstance(handler, logagent.LogAgentHandler) and handler.service_name == "shop"

    log.log(5, "trace %s", "line")
    log.debug("debug %d", 1)
    log.info("info")
    log.warning("careful: %s", "disk 91%")
    log.error("error", extra={"trace_id": "trace-9", "span_id": "span-9", "user": "alice", "items": 3,
                              "cart": {"total": 12.5, "skus": ["a", "b"]}, "service_name": "checkout"})
    log.critical("critical", stack_info=True)
    try:
        1 / 0
    except ZeroDivisionError:
        log.exception("payment failed for %s", "order-7", extra={"order": "order-7"})

    saved, sys.stderr = sys.stderr, io.StringIO()
    try:
        log.info("%d items", "not a number")  # a bug in the log call: reported, never raised
        report = sys.stderr.getvalue()
    finally:
        sys.stderr = saved
    assert "--- Logging error ---" in report and "TypeError" in report, report

    handler.flush()
    sink.wait_count(7)
    got = {e["message"]: e for e in sink.entries()}
    assert sorted(got) == sorted(["trace line", "debug 1", "info", "careful: disk 91%", "error", "critical",
                                  "payment failed for order-7"]), sorted(got)
    assert [got[m]["level"] for m in ("trace line", "debug 1", "info", "careful: disk 91%", "error", "critical",
                                      "payment failed for order-7")] == \
        ["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL", "ERROR"]
    assert all(e["metadata"]["logger"] == "shop.views" for e in got.values()), got
    assert got["info"]["service_name"] == "shop" and got["info"]["metadata"] == {"logger": "shop.views"}, got["info"]
    err = got["error"]
    assert err["trace_id"] == "trace-9" and err["span_id"] == "span-9" and err["service_name"] == "checkout", err
    assert err["metadata"] == {"logger": "shop.views", "user": "alice", "items": "3",
                               "cart": '{"total":12.5,"skus":["a","b"]}'}, err
    exc = got["payment failed for order-7"]["metadata"]
    assert exc["exception"].startswith("Traceback (most recent call last):"), exc
    assert exc["exception"].endswith("ZeroDivisionError: division by zero") and exc["order"] == "order-7", exc
    stack = got["critical"]["metadata"]["stack"]
    assert stack.startswith("Stack (most recent call last):") and "test_handler_levels_exception_extra" in stack
    for e in got.values():
        assert len(e["log_id"]) == 32 and e["source"]["pid"] == os.getpid(), e
    ts = sorted(e["timestamp_unix_nano"] for e in got.values())
    assert ts[-1] - ts[0] < 10 ** 9 * scaled(10), ts  # the calls' own times (record.created), in order
    assert handler.failed == 0 and handler.client.get_stats()["sent"] == 7
    handler.close()  # closes the handler's own client
    assert handler.client.write_log("after close")["error_message"] == "logagent client closed: record dropped"
    logging.getLogger("shop").removeHandler(handler)
    assert a.stop() == 0


def test_handler_on_the_process_wide_client_counts_drops_silently():
    tmp = TempDir("handler-down")
    logagent.configure(socket_path=tmp.file("nobody-home.sock"), buffer_bytes=1024)
    h = logagent.LogAgentHandler(service_name="quiet", flush_timeout=0.1)
    log = logging.getLogger("quiet")
    log.addHandler(h)
    log.propagate = False
    saved, sys.stderr = sys.stderr, io.StringIO()
    try:
        for i in range(100):
            log.warning("nobody listens %d", i)
        report = sys.stderr.getvalue()
    finally:
        sys.stderr = saved
    assert report == "", report  # a full buffer is counted, not reported per record
    st = logagent.get_stats()
    assert h.failed > 0 and st["dropped"] == h.failed and st["written"] + st["dropped"] == 100, (h.failed, st)
    log.removeHandler(h)
    h.close()
    assert logagent.close(timeout=0) is False  # nothing could be written


EXIT_SCRIPT = r"""
import logging, logging.config, os, sys
logging.config.dictConfig({"version": 1, "handlers": {"agent": {"class": "logagent.LogAgentHandler",
    "service_name": "exiting-app"}}, "root": {"handlers": ["agent"], "level": "INFO"}})
for i in range(int(sys.argv[1])):
    logging.getLogger("app").info("bye %d", i, extra={"i": i})
print(os.getpid())
"""


def test_process_exit_flushes_the_handler():
    tmp, sink, a = pair("handler-exit")
    n = 5000
    p = spawn([PY, "-c", EXIT_SCRIPT, str(n)], env=dict(os.environ, LOGAGENT_SOCKET=a.socket, PYTHONPATH=PYPATH),
              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = p.communicate(timeout=scaled(60))
    assert p.returncode == 0 and not err, (p.returncode, err.decode())
    sink.wait_count(n)
    summary = sink.stop()
    assert summary["entries"] == n and summary["unique_log_ids"] == n, summary
    pid = int(out)
    assert all(e["source"]["pid"] == pid and e["service_name"] == "exiting-app" and e["metadata"]["logger"] == "app"
               for e in sink.entries())
    assert a.stop() == 0


if __name__ == "__main__":
    run([test_handler_levels_exception_extra, test_handler_on_the_process_wide_client_counts_drops_silently,
         test_process_exit_flushes_the_handler])
