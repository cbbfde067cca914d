"""settings.py — the example service's settings. Everything an operator may change comes from the environment:

  LOGAGENT_SOCKET          the agent's ingest socket (logagent backend; default /run/logagent/ingest.sock)
  LOGAGENT_CLIENT_*        the logagent client's buffer and wait knobs (client-shim/python/README.md)
  DJANGO_LOG_BACKEND       logagent (default): write_log is logagent.write_log, records go to the local agent;
                           original: write_log is the original service's client (one unary gRPC WriteLog per
                           record to $ORIGINAL_LOG_SERVICE), loaded from DJANGO_ORIGINAL_CLIENT
  DJANGO_ORIGINAL_CLIENT   path of original_client.py (default ../original/original_client.py beside this example)
  DJANGO_SERVICE_NAME      service_name of the service's own log lines (default django-service)
  DJANGO_LOG_CONSOLE       1 (default): the service's own log lines also go to stderr; 0: only to the agent
  DJANGO_FLUSH_TIMEOUT_S   how long a test endpoint waits for logagent to hand its records to the agent (30)
  DJANGO_DEBUG             1: Django's debug mode (never in production)
  DJANGO_ALLOWED_HOSTS     comma-separated Host names served (default localhost,127.0.0.1,[::1],testserver)
  DJANGO_SECRET_KEY        Django's secret key (the service has no sessions or forms; set one anyway outside a lab)

No database, no templates, no middleware: the service is three JSON endpoints.
"""
import os
import sys
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent      # examples/django_service
CLIENT_DIR = BASE_DIR.parent.parent                     # client-shim/python: this checkout's logagent module

try:
    import log_client  # noqa: F401  an installed logagent package (pip) wins; log_client comes with it
    import logagent  # noqa: F401
except ImportError:
    sys.path.append(str(CLIENT_DIR))  # run from a checkout without installing anything

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY") or "example-service-not-a-secret"
DEBUG = os.environ.get("DJANGO_DEBUG", "") == "1"
ALLOWED_HOSTS = [h.strip() for h in
                 os.environ.get("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1],testserver").split(",")
                 if h.strip()]

INSTALLED_APPS = ["logs.apps.LogsConfig", "log_client"]  # log_client: the original's app, on logagent
MIDDLEWARE = []
ROOT_URLCONF = "django_service.urls"
WSGI_APPLICATION = "django_service.wsgi.application"
DATABASES = {}
TEMPLATES = []
USE_TZ = True
TIME_ZONE = "UTC"

# ---- which write_log the endpoints call ----
LOG_BACKENDS = ("logagent", "original")
LOG_BACKEND = os.environ.get("DJANGO_LOG_BACKEND", "logagent") or "logagent"
if LOG_BACKEND not in LOG_BACKENDS:
    raise ImproperlyConfigured("DJANGO_LOG_BACKEND must be one of %s, not %r" % (", ".join(LOG_BACKENDS),
                                                                                 LOG_BACKEND))
ORIGINAL_CLIENT_PATH = os.environ.get("DJANGO_ORIGINAL_CLIENT") or str(
    BASE_DIR.parent / "original" / "original_client.py")

# ---- the test endpoints ----
TEST_MAX_COUNT = 1000000         # records one batch_write_test / concurrent_test may write
TEST_MAX_WORKERS = 200           # threads one concurrent_test may start
TEST_MAX_LOG_IDS = 10000         # log_ids batch_write_test returns (the first ones)
try:
    FLUSH_TIMEOUT_S = float(os.environ.get("DJANGO_FLUSH_TIMEOUT_S") or 30)
except ValueError:
    raise ImproperlyConfigured("DJANGO_FLUSH_TIMEOUT_S must be a number of seconds, not %r"
                               % os.environ["DJANGO_FLUSH_TIMEOUT_S"]) from None

# ---- the service's own log lines (and Django's request errors) go to the agent too ----
SERVICE_NAME = os.environ.get("DJANGO_SERVICE_NAME") or "django-service"
_HANDLERS = ["agent"] + (["console"] if os.environ.get("DJANGO_LOG_CONSOLE", "1") != "0" else [])
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain"},
        # the process-wide logagent client: LOGAGENT_SOCKET and the LOGAGENT_CLIENT_* variables apply
        "agent": {"class": "logagent.LogAgentHandler", "service_name": SERVICE_NAME},
    },
    "loggers": {
        # django.request: "Bad Request: /api/write_log/" (WARNING) and "Internal Server Error: …" (ERROR, with
        # the traceback), each with status_code and the request
        "django": {"handlers": _HANDLERS, "level": "INFO", "propagate": False},
        "logs": {"handlers": _HANDLERS, "level": "INFO", "propagate": False},
    },
    "root": {"handlers": _HANDLERS, "level": "WARNING"},
}
