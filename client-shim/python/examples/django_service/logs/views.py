"""views.py — the example service's endpoints: log_client's views (log_client/views.py: the original's three
endpoints, their validation and reports, JSON 404/500) on this service's DJANGO_LOG_BACKEND switch (backend.py)
and limits (settings.py), with their summary lines on the logger "logs.views".

  POST /api/write_log/         one record            -> {"success", "log_id", "error_message"}
  POST /api/batch_write_test/  N test records, in the request's thread, one after the other
  POST /api/concurrent_test/   N test records from a ThreadPoolExecutor of max_workers threads
"""
import logging

from django.conf import settings
from log_client import views as _views

from . import backend


def _limits():
    return _views.Limits(flush_timeout_s=settings.FLUSH_TIMEOUT_S, max_count=settings.TEST_MAX_COUNT,
                         max_workers=settings.TEST_MAX_WORKERS, max_log_ids=settings.TEST_MAX_LOG_IDS)


_endpoints = _views.Endpoints(backend.get, logging.getLogger("logs.views"), _limits)
write_log = _endpoints.write_log
batch_write_test = _endpoints.batch_write_test
concurrent_test = _endpoints.concurrent_test
not_found = _views.not_found
server_error = _views.server_error
