"""test_django_handler.py — logagent.LogAgentHandler inside real Django requests (Django's test client, the
example service's settings and LOGGING dict), against a real agent and a real sink:

  - a view logging with logger.info(..., extra={...}) and logger.warning: level, logger name, service_name
    from the LOGGING dict, trace/span ids and every extra field in metadata;
  - a view that raises: a 500 with the service's JSON error body, and Django's "Internal Server Error" record
    at the sink as ERROR from django.request with the traceback (exception text included), status_code and
    the request; a view that logs logger.exception inside a handled error carries its traceback too;
  - records from 20 concurrent requests each arrive once, on one connection.

The views live here (this module is the URLconf for the test, beside the example's /api/ URLs).
Runs with Debian's /usr/bin/python3 and python3-django (3.2)."""
import logging
import os
import sys
import threading

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import django_project  # noqa: E402,F401  (Django set up with the example's settings)
import logagent  # noqa: E402
from django.http import JsonResponse  # noqa: E402
from django.test import Client, override_settings  # noqa: E402
from django.urls import include, path  # noqa: E402
from harness import Agent, Sink, TempDir, run, scaled  # noqa: E402

log = logging.getLogger("logs.checkout")  # under the example's "logs" logger: console off, agent on


def place_order(request):
    log.info("order %s placed", "o-42", extra={
        "trace_id": request.headers.get("X-Trace-Id"), "span_id": request.headers.get("X-Span-Id"),
        "order_id": 42, "items": ["sku-1", "sku-2"], "total": 12.5, "paid": True, "_private": "never sent"})
    log.warning("stock low for %s", "sku-2", extra={"left": 3})
    return JsonResponse({"ok": True})


def refund(request):
    try:
        {}["missing-order"]
    except KeyError:
        log.exception("refund failed for %s", "o-7", extra={"order_id": "o-7"})
    return JsonResponse({"ok": False}, status=409)


def boom(request):
    raise RuntimeError("payment backend unreachable")


urlpatterns = [
    path("order/", place_order),
    path("refund/", refund),
    path("boom/", boom),
    path("api/", include("logs.urls")),
]
handler404 = "logs.views.not_found"
handler500 = "logs.views.server_error"


def pair(name):
    tmp = TempDir(name)
    sink = Sink(tmp).start()
    a = Agent(tmp, sink.target, "--flush-interval-ms", "10").start()
    logagent.configure(socket_path=a.socket)
    return tmp, sink, a


@override_settings(ROOT_URLCONF=__name__)
def test_views_logging_through_the_handler():
    tmp, sink, a = pair("dj-handler")
    c = Client(raise_request_exception=False)
    r = c.get("/order/", HTTP_X_TRACE_ID="trace-77", HTTP_X_SPAN_ID="span-77")
    assert r.status_code == 200, r.content
    r = c.post("/refund/")
    assert r.status_code == 409, r.content
    r = c.get("/boom/?x=1")
    assert r.status_code == 500 and r.json() == {
        "success": False, "log_id": "", "error_message": "internal server error (the traceback is in the service's "
                                                         "log)"}, r.content
    assert logagent.flush(scaled(10))
    sink.wait_count(5)  # info, warning, exception, refund's 409 "Conflict" warning, the 500 error
    a.wait_flushed(5)
    got = {e["message"]: e for e in sink.entries()}
    assert sorted(got) == ["Conflict: /refund/", "Internal Server Error: /boom/", "order o-42 placed",
                           "refund failed for o-7", "stock low for sku-2"], sorted(got)
    assert all(e["service_name"] == "django-service" and e["source"]["pid"] == os.getpid()
               for e in got.values()), got

    info = got["order o-42 placed"]
    assert (info["level"], info["trace_id"], info["span_id"]) == ("INFO", "trace-77", "span-77"), info
    assert info["metadata"] == {"logger": "logs.checkout", "order_id": "42", "items": '["sku-1","sku-2"]',
                                "total": "12.5", "paid": "true"}, info
    warn = got["stock low for sku-2"]
    assert warn["level"] == "WARN" and warn["metadata"] == {"logger": "logs.checkout", "left": "3"}, warn
    assert not warn.get("trace_id"), warn

    exc = got["refund failed for o-7"]
    assert exc["level"] == "ERROR" and exc["metadata"]["order_id"] == "o-7", exc
    tb = exc["metadata"]["exception"]
    assert tb.startswith("Traceback (most recent call last):") and tb.endswith("KeyError: 'missing-order'"), tb
    assert "in refund" in tb, tb

    err = got["Internal Server Error: /boom/"]
    assert err["level"] == "ERROR" and err["metadata"]["logger"] == "django.request", err
    assert err["metadata"]["status_code"] == "500", err
    assert err["metadata"]["request"] == "<WSGIRequest: GET '/boom/?x=1'>", err
    tb = err["metadata"]["exception"]
    assert tb.startswith("Traceback (most recent call last):"), tb
    assert tb.endswith("RuntimeError: payment backend unreachable") and 'in boom' in tb, tb
    conflict = got["Conflict: /refund/"]
    assert conflict["level"] == "WARN" and conflict["metadata"]["status_code"] == "409", conflict
    assert "exception" not in conflict["metadata"], conflict
    assert a.stop() == 0


@override_settings(ROOT_URLCONF=__name__)
def test_concurrent_requests_each_record_once():
    tmp, sink, a = pair("dj-handler-threads")
    n = 20
    statuses = []

    def request(k):
        r = Client().get("/order/", HTTP_X_TRACE_ID="trace-%02d" % k)
        statuses.append(r.status_code)

    threads = [threading.Thread(target=request, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [200] * n, statuses
    assert logagent.flush(scaled(10))
    sink.wait_count(2 * n)
    st = a.wait_flushed(2 * n)
    summary = sink.stop()
    assert summary["entries"] == 2 * n and summary["duplicates"] == 0, summary
    traces = sorted(e["trace_id"] for e in sink.entries() if e["message"] == "order o-42 placed")
    assert traces == ["trace-%02d" % k for k in range(n)], traces
    assert st["connections"]["total"] == 1, st["connections"]  # one process, one connection
    assert logagent.get_stats()["dropped"] == 0
    assert a.stop() == 0


if __name__ == "__main__":
    run([test_views_logging_through_the_handler, test_concurrent_requests_each_record_once])
