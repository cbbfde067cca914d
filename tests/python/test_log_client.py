"""test_log_client.py — the drop-in `log_client` package (client-shim/python/log_client): a project written for the
original Django service keeps `from log_client.client import write_log`, 'log_client' in INSTALLED_APPS and its
settings, against a real agent and sink (and, for the original backend, examples/original/original_server.py):

  - a view that calls log_client.client.write_log, requested through Django's test client: the result dict, and
    the record at the sink with the original's field rules (service_name default django-service, level names in
    any case and anything else INFO, metadata as str(value), empty trace/span ids left out); the original's
    endpoints routed with include("log_client.urls"): a write_log and a batch_write_test at the sink;
  - DjangoLogServiceClient: one instance however it is made (also from 16 threads at once), get_log_client() is
    it, server_address from settings.LOG_SERVICE_GRPC_SERVER (default localhost:50051), results of the
    original's shape; disconnect() and a write after it; LOGAGENT_SOCKET from settings, else the environment;
  - a bad LOGAGENT_CLIENT_* setting: write_log says so (naming settings.X), a bad LOG_CLIENT_BACKEND raises
    ImproperlyConfigured;
  - LOG_CLIENT_BACKEND=original: one unary WriteLog per record to LOG_SERVICE_GRPC_SERVER, the record at the
    original service with the same fields.

Runs with Debian's /usr/bin/python3 and python3-django (3.2), python3-grpcio for the original backend."""
import json
import os
import re
import signal
import subprocess
import sys
import threading
import types

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import django_project  # noqa: E402,F401  (Django set up with the example's settings, 'log_client' installed)
from django.core.exceptions import ImproperlyConfigured  # noqa: E402
from django.http import JsonResponse  # noqa: E402
from django.test import Client, override_settings  # noqa: E402
from django.urls import include, path  # noqa: E402
from harness import Agent, Sink, TempDir, run, scaled, spawn, wait_for  # noqa: E402
from log_client import client as lc  # noqa: E402

PY = "/usr/bin/python3"
LOG_ID = re.compile("[0-9a-f]{32}")


# ---- a project's own view, written for the original: it imports write_log the original way ----

def order_view(request):
    from log_client.client import write_log
    return JsonResponse(write_log("order placed", service_name="shop", level="warn", trace_id="t-1", span_id="s-1",
                                  user="alice", amount=12.5, paid=True, items=["a", "b"]))


def default_view(request):
    from log_client.client import write_log
    return JsonResponse(write_log("defaults only"))


urls = types.ModuleType("compat_urls")
urls.urlpatterns = [path("order/", order_view), path("plain/", default_view),
                    path("api/", include("log_client.urls"))]  # the original project's routing
sys.modules["compat_urls"] = urls


def pair(name):
    tmp = TempDir(name)
    sink = Sink(tmp).start()
    a = Agent(tmp, sink.target, "--flush-interval-ms", "10").start()
    return tmp, sink, a


def test_write_log_inside_a_django_request():
    tmp, sink, a = pair("lc-request")
    with override_settings(ROOT_URLCONF="compat_urls", LOGAGENT_SOCKET=a.socket):
        lc._reset_for_tests()
        c = Client()
        r = c.get("/order/")
        res = r.json()
        assert r.status_code == 200 and set(res) == {"success", "log_id", "error_message"}, (r.status_code, res)
        assert res["success"] is True and LOG_ID.fullmatch(res["log_id"]) and res["error_message"] == "", res
        plain = c.get("/plain/").json()
        assert plain["success"], plain
        # the original's endpoints from log_client.urls, on log_client.client's write_log
        api = c.post("/api/write_log/", json.dumps({"message": "over the API", "level": "Warning",
                                                    "metadata": {"n": 1}}), content_type="application/json")
        assert api.status_code == 200 and api.json()["success"], api.content
        rep = c.post("/api/batch_write_test/", json.dumps({"count": 5}), content_type="application/json").json()
        assert (rep["backend"], rep["success_count"], rep["flushed"], len(rep["log_ids"])) == \
            ("logagent", 5, True, 5), rep
        assert lc.get_log_client().socket_path == a.socket
        assert lc.get_log_client().flush(scaled(10))
    sink.wait_count(2 + 1 + 5)
    by_id = {e["log_id"]: e for e in sink.entries()}
    e = by_id[api.json()["log_id"]]  # the original's rules: WARNING is no level of its, so INFO; metadata as text;
    assert (e["level"], e["message"], e["metadata"]) == ("INFO", "over the API", {"n": "1"}), e
    assert not e.get("service_name"), e  # the view passes service_name=None, which the original sent as ""
    assert all(by_id[i]["service_name"] == "django-batch-test" for i in rep["log_ids"])
    e = by_id[res["log_id"]]
    assert (e["service_name"], e["level"], e["message"], e["trace_id"], e["span_id"]) == \
        ("shop", "WARN", "order placed", "t-1", "s-1"), e
    # the original sent every other keyword as str(value): the log service sees the same strings as before
    assert e["metadata"] == {"user": "alice", "amount": "12.5", "paid": "True", "items": "['a', 'b']"}, e
    assert e["source"]["pid"] == os.getpid(), e
    p = by_id[plain["log_id"]]
    assert (p["service_name"], p["level"], p["message"]) == ("django-service", "INFO", "defaults only"), p
    assert not p.get("trace_id") and not p.get("span_id") and not p.get("metadata"), p
    assert sink.stop()["duplicates"] == 0
    lc._reset_for_tests()
    assert a.stop() == 0


def test_singleton_levels_settings_and_errors():
    tmp, sink, a = pair("lc-singleton")
    with override_settings(LOGAGENT_SOCKET=a.socket):
        lc._reset_for_tests()
        made = []
        threads = [threading.Thread(target=lambda: made.append(lc.DjangoLogServiceClient())) for _ in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        one = made[0]
        assert all(m is one for m in made) and lc.get_log_client() is one and lc.DjangoLogServiceClient() is one
        assert one.server_address == "localhost:50051" and one.backend == "logagent", vars(one)
        levels = [("DEBUG", "DEBUG"), ("info", "INFO"), ("Warn", "WARN"), ("error", "ERROR"), ("FATAL", "FATAL"),
                  ("WARNING", "INFO"), ("bogus", "INFO"), (None, "INFO"), (3, "INFO")]
        ids = {}
        for given, want in levels:
            r = one.write_log("level %r" % (given,), level=given)
            assert set(r) == {"success", "log_id", "error_message"} and r["success"], r
            ids[r["log_id"]] = want
        one.disconnect()
        again = lc.write_log("after disconnect", level="ERROR")  # connects again, as a new channel would
        assert again["success"], again
        ids[again["log_id"]] = "ERROR"
        assert one.flush(scaled(10))
    sink.wait_count(len(ids))
    got = {e["log_id"]: e["level"] for e in sink.entries()}
    assert got == ids, (got, ids)

    # LOGAGENT_SOCKET and the server address: settings first, else the environment
    os.environ["LOGAGENT_SOCKET"] = "/tmp/from-the-environment.sock"
    try:
        lc._reset_for_tests()
        assert lc.get_log_client().socket_path == "/tmp/from-the-environment.sock"
        with override_settings(LOGAGENT_SOCKET=a.socket, LOG_SERVICE_GRPC_SERVER="logs.internal:50051"):
            lc._reset_for_tests()
            assert (lc.get_log_client().socket_path, lc.get_log_client().server_address) == \
                (a.socket, "logs.internal:50051")
    finally:
        del os.environ["LOGAGENT_SOCKET"]

    # the client's tuning from settings; a bad value is said, not guessed
    with override_settings(LOGAGENT_SOCKET=a.socket, LOGAGENT_CLIENT_BUFFER_BYTES="16MiB",
                           LOGAGENT_CLIENT_BLOCK_TIMEOUT_MS=50):
        lc._reset_for_tests()
        c = lc.get_log_client()._client
        assert (c.cap, c.block_timeout) == (16 << 20, 0.05), (c.cap, c.block_timeout)
    with override_settings(LOGAGENT_CLIENT_BUFFER_BYTES="16 MB"):
        lc._reset_for_tests()
        r = lc.write_log("never sent")
        assert r == {"success": False, "log_id": "", "error_message":
                     "cannot create the log client: logagent: invalid value '16 MB' in "
                     "settings.LOGAGENT_CLIENT_BUFFER_BYTES: expected a size such as 65536, 64KiB, 4MiB"}, r
    with override_settings(LOG_CLIENT_BACKEND="grpc"):
        lc._reset_for_tests()
        try:
            lc.DjangoLogServiceClient()
            raise AssertionError("a bad LOG_CLIENT_BACKEND was accepted")
        except ImproperlyConfigured as e:
            assert str(e) == "settings.LOG_CLIENT_BACKEND must be one of logagent, original, not 'grpc'", e
    lc._reset_for_tests()
    assert sink.stop()["entries"] == len(ids)
    assert a.stop() == 0


def test_original_backend_unary_grpc_to_log_service_grpc_server():
    tmp = TempDir("lc-original")
    original = os.path.join(django_project.CLIENT_DIR, "examples", "original")
    port_file, out_file = tmp.file("orig.port"), tmp.file("orig.jsonl")
    err_f = open(tmp.file("orig.stderr"), "wb")
    srv = spawn([PY, os.path.join(original, "original_server.py"), "--listen", "127.0.0.1:0", "--port-file",
                 port_file, "--out", out_file], stdout=subprocess.DEVNULL, stderr=err_f)
    port = wait_for(lambda: os.path.exists(port_file) and open(port_file).read().strip(), 30, "original's port")
    with override_settings(LOG_CLIENT_BACKEND="original", LOG_SERVICE_GRPC_SERVER="127.0.0.1:%s" % port):
        lc._reset_for_tests()
        c = lc.get_log_client()
        assert (c.backend, c.server_address) == ("original", "127.0.0.1:%s" % port), vars(c)
        r = lc.write_log("via the original", service_name="auth", level="error", trace_id="t9", user="bob", n=3)
        assert r["success"] is True and r["error_message"] == "" and LOG_ID.fullmatch(r["log_id"]), r
        d = lc.write_log("defaults", level="WARNING")
        assert d["success"], d
    lc._reset_for_tests()
    srv.send_signal(signal.SIGTERM)
    assert srv.wait(timeout=scaled(30)) == 0
    err_f.close()
    got = {e["log_id"]: e for e in map(json.loads, open(out_file))}
    e = got[r["log_id"]]
    assert (e["service_name"], e["level"], e["message"], e["trace_id"], e["span_id"], e["metadata"]) == \
        ("auth", "ERROR", "via the original", "t9", "", {"user": "bob", "n": "3"}), e
    e = got[d["log_id"]]
    assert (e["service_name"], e["level"]) == ("django-service", "INFO"), e


if __name__ == "__main__":
    run([test_write_log_inside_a_django_request, test_singleton_levels_settings_and_errors,
         test_original_backend_unary_grpc_to_log_service_grpc_server])
