"""views.py — the original log service's three endpoints, same request and response JSON (the example's README,
client-shim/python/examples/django_service/README.md, has them), as log_client's app served them:

  POST /api/write_log/         one record            -> {"success", "log_id", "error_message"}
  POST /api/batch_write_test/  N test records, in the request's thread, one after the other
  POST /api/concurrent_test/   N test records from a ThreadPoolExecutor of max_workers threads

Endpoints(backend, logger, limits) makes the views on a write_log backend: this module's own (write_log,
batch_write_test, concurrent_test, for urls.py) call log_client.client's; the example service's `logs` app makes
a set on its DJANGO_LOG_BACKEND switch (logs/views.py). A body
that is not a JSON object, or a field of the wrong type, gets 400 with the write_log result shape and the
reason in error_message; a body over Django's DATA_UPLOAD_MAX_MEMORY_SIZE gets 413; another method, 405.
The test endpoints' records look like the original's test data (and logagent-bench's, tests/bench/bench.c):
service_name django-concurrent-test (django-batch-test), a random level, trace_id concurrent-trace-%06d,
span_id concurrent-span-%06d, adv_id, aweme_id, plan_id, monitor_type, co_id and an RFC 3339 timestamp.
With the logagent backend the measured time ends when the records are written to the agent's socket
(a flush), so logs_per_second is records handed over per second, as logagent-bench reports it.
"""
import datetime
import functools
import json
import logging
import random
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Optional

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt

CORE_FIELDS = ("service_name", "level", "trace_id", "span_id")
LEVELS = ("INFO", "WARN", "ERROR", "DEBUG")
MONITOR_TYPES = ("impression", "click", "conversion", "view")
SAMPLES = 5  # sample_results and sample_errors hold at most this many


@dataclass(frozen=True)
class Backend:
    """What the views call: write_log(message, **fields) -> result dict; flush(timeout) -> bool, or None when
    every write_log call completes its record by itself (the original design)."""
    name: str
    write_log: Callable[..., dict]
    flush: Optional[Callable[[float], bool]]


@dataclass(frozen=True)
class Limits:
    flush_timeout_s: float = 30.0   # how long a test endpoint waits for its records to reach the agent's socket
    max_count: int = 1000000        # records one batch_write_test / concurrent_test may write
    max_workers: int = 200          # threads one concurrent_test may start
    max_log_ids: int = 10000        # log_ids batch_write_test returns (the first ones)


class BadRequest(Exception):
    """A request the endpoint refuses: answered with status and the message in error_message."""

    def __init__(self, message, status=400):
        super().__init__(message)
        self.status = status


def _result(success, log_id="", error_message=""):
    return {"success": success, "log_id": log_id, "error_message": error_message}


def _error(message, status):
    return JsonResponse(_result(False, "", message), status=status)


def json_post(view):
    """Decorator: POST only (else 405), the body parsed as a JSON object and passed as `body` (an empty body is
    {}), BadRequest turned into its status with the write_log result shape. No CSRF token: a JSON API."""
    @csrf_exempt
    @functools.wraps(view)
    def wrapper(request):
        if request.method != "POST":
            resp = _error("method %s not allowed: use POST with a JSON body" % request.method, 405)
            resp["Allow"] = "POST"
            return resp
        try:
            return view(request, _json_body(request))
        except BadRequest as e:
            return _error(str(e), e.status)
    return wrapper


def _json_body(request):
    try:
        raw = request.body
    except RequestDataTooBig:
        raise BadRequest("body larger than %d bytes" % settings.DATA_UPLOAD_MAX_MEMORY_SIZE, 413) from None
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError as e:  # JSONDecodeError, or UnicodeDecodeError for bytes that are not UTF-8
        raise BadRequest("invalid JSON: %s" % e) from None
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object, not %s" % _json_type(body))
    return body


def _json_type(v):
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, (int, float)):
        return "a number"
    return {str: "a string", list: "an array", dict: "an object"}.get(type(v), type(v).__name__)


def _call(write_log, message, **fields):
    """write_log's result as exactly {"success": bool, "log_id": str, "error_message": str}, whatever the
    backend did (an exception from the original client becomes a failed result)."""
    try:
        r = write_log(message, **fields)
    except Exception as e:
        return _result(False, "", "%s: %s" % (type(e).__name__, e))
    if not isinstance(r, dict):
        return _result(False, "", "write_log returned %s, not a dict" % type(r).__name__)
    return _result(bool(r.get("success")), str(r.get("log_id") or ""), str(r.get("error_message") or ""))


# ---- POST /api/write_log/ ----

def _write_log_args(body):
    """(message, fields) of a write_log body, or BadRequest naming what is wrong."""
    message = body.get("message")
    if message is None or message == "":
        raise BadRequest("message is required")
    if not isinstance(message, str):
        raise BadRequest("message must be a string, not %s" % _json_type(message))
    fields = {}
    for k in CORE_FIELDS:
        v = body.get(k)
        if v is not None and not isinstance(v, str):
            raise BadRequest("%s must be a string, not %s" % (k, _json_type(v)))
        fields[k] = v
    if fields["level"] is None:
        fields["level"] = "INFO"
    metadata = body.get("metadata")
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict):
        raise BadRequest("metadata must be a JSON object, not %s" % _json_type(metadata))
    clash = sorted(set(metadata) & {"message", *CORE_FIELDS})
    if clash:
        raise BadRequest("metadata key %r repeats a top-level field: send it at the top level" % clash[0])
    fields.update(metadata)
    return message, fields


# ---- the helpers ----

def _int_field(body, name, default, hi):
    v = body.get(name)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= hi:
        raise BadRequest("%s must be an integer from 1 to %d, not %s" % (name, hi, json.dumps(v)))
    return v


def _write_test_record(write_log, kind, i):
    """Record i (from 1) of a test run, shaped like the original's test data."""
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="microseconds")
    return _call(write_log, "%s test log entry %d" % (kind.capitalize(), i),
                 service_name="django-%s-test" % kind, level=random.choice(LEVELS),
                 trace_id="%s-trace-%06d" % (kind, i), span_id="%s-span-%06d" % (kind, i),
                 adv_id=random.randint(1000000, 9999999), aweme_id=random.randint(100000000, 999999999),
                 plan_id=random.randint(10000, 99999), monitor_type=random.choice(MONITOR_TYPES),
                 co_id=random.randint(1000, 9999), timestamp=now)


def _run(b, kind, count, workers, flush_timeout):
    """Writes records 1..count in this thread (workers None) or from a pool of workers threads, then lets the
    backend flush. Returns (results in record order, seconds, flushed: True/False/None, flush error or "")."""
    one = functools.partial(_write_test_record, b.write_log, kind)
    start = time.perf_counter()
    if workers is None:
        results = [one(i) for i in range(1, count + 1)]
    else:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="%s-test" % kind) as pool:
            results = list(pool.map(one, range(1, count + 1)))
    flushed, flush_error = None, ""
    if b.flush is not None:
        flushed = bool(b.flush(flush_timeout))
        if not flushed:
            flush_error = ("flush: records still buffered after %g s (agent down or slow; see "
                           "logagent.get_stats())" % flush_timeout)
    return results, time.perf_counter() - start, flushed, flush_error


def _report(kind, b, results, seconds, flushed, flush_error, extra=()):
    """The original's test report: counts, time, rate, (extra,) the first results and errors."""
    ok = sum(1 for r in results if r["success"])
    errors = [r["error_message"] for r in results if not r["success"]]
    if flush_error:
        errors.insert(0, flush_error)
    return {
        "success": True,
        "test_type": kind,
        "backend": b.name,
        "total_count": len(results),
        "success_count": ok,
        "failed_count": len(results) - ok,
        "duration_seconds": round(seconds, 3),
        "logs_per_second": round(ok / seconds, 2) if seconds > 0 else 0.0,
        **dict(extra),
        "flushed": flushed,
        "sample_results": results[:SAMPLES],
        "error_summary": {"total_errors": len(errors), "sample_errors": errors[:SAMPLES]},
    }


def _log_report(log, report):
    log.info("%s test: %d/%d records written in %.3f s (%.0f/s, backend %s)", report["test_type"],
             report["success_count"], report["total_count"], report["duration_seconds"],
             report["logs_per_second"], report["backend"],
             extra={k: report[k] for k in ("test_type", "backend", "total_count", "success_count", "failed_count",
                                           "duration_seconds", "logs_per_second")})


# ---- the views ----

class Endpoints:
    """The three endpoints on a backend: backend() returns the Backend to call now (read per request, so a
    settings switch applies), log is the logger of the one summary line per test run, limits() the Limits."""

    def __init__(self, backend, log, limits=Limits):
        self.backend = backend
        self.log = log
        self.limits = limits
        self.write_log = json_post(self._write_log)
        self.batch_write_test = json_post(self._batch_write_test)
        self.concurrent_test = json_post(self._concurrent_test)

    def _write_log(self, request, body):
        """One record. 200 with the result when write_log succeeded, 500 with it when not (agent away and the
        buffer full, record too large, the original service down)."""
        message, fields = _write_log_args(body)
        result = _call(self.backend().write_log, message, **fields)
        return JsonResponse(result, status=200 if result["success"] else 500)

    def _batch_write_test(self, request, body):
        """{"count": N (default 10)}: N records one after the other. The report adds log_ids, the ids of the
        records written (the first max_log_ids), and log_ids_truncated."""
        lim = self.limits()
        count = _int_field(body, "count", 10, lim.max_count)
        b = self.backend()
        results, seconds, flushed, flush_error = _run(b, "batch", count, None, lim.flush_timeout_s)
        report = _report("batch", b, results, seconds, flushed, flush_error)
        ids = [r["log_id"] for r in results if r["success"]]
        report["log_ids"] = ids[:lim.max_log_ids]
        report["log_ids_truncated"] = len(ids) > lim.max_log_ids
        _log_report(self.log, report)
        return JsonResponse(report)

    def _concurrent_test(self, request, body):
        """{"count": N (default 100), "max_workers": W (default 10)}: N records from W threads at once."""
        lim = self.limits()
        count = _int_field(body, "count", 100, lim.max_count)
        workers = _int_field(body, "max_workers", 10, lim.max_workers)
        b = self.backend()
        results, seconds, flushed, flush_error = _run(b, "concurrent", count, workers, lim.flush_timeout_s)
        report = _report("concurrent", b, results, seconds, flushed, flush_error, {"max_workers": workers})
        _log_report(self.log, report)
        return JsonResponse(report)


def _client_backend():
    """log_client.client's process-wide client as a Backend (LOG_CLIENT_BACKEND: logagent or original)."""
    from . import client
    c = client.get_log_client()
    return Backend(c.backend, c.write_log, c.flush if c.backend == "logagent" else None)


_endpoints = Endpoints(_client_backend, logging.getLogger("log_client.views"))
write_log = _endpoints.write_log
batch_write_test = _endpoints.batch_write_test
concurrent_test = _endpoints.concurrent_test


# ---- errors as JSON (django_service/urls.py: handler404, handler500) ----

def not_found(request, exception=None):
    return _error("no such endpoint: %s %s" % (request.method, request.path), 404)


def server_error(request):
    return _error("internal server error (the traceback is in the service's log)", 500)
