"""client.py — `log_client.client`, the original Django service's client module, with logagent behind it.

The original's public API, same names and results:

    DjangoLogServiceClient()   thread-safe singleton; .write_log(message, **kwargs) -> dict, .disconnect(),
                               .server_address (settings.LOG_SERVICE_GRPC_SERVER, default localhost:50051)
    get_log_client()           the singleton
    write_log(message, **kwargs) -> {"success": bool, "log_id": str, "error_message": str}; never raises

The call keeps the original's meaning: service_name (default "django-service"), level (DEBUG, INFO, WARN,
ERROR, FATAL in any case; anything else is INFO), trace_id and span_id (default "": left out) are popped from
kwargs, and every other keyword is metadata sent as str(value), so the log service sees the strings it saw
before. One difference: a `timestamp=` keyword becomes the record's time (logagent's rule) instead of metadata.

Backends (setting LOG_CLIENT_BACKEND, default "logagent"):
  logagent  a logagent.Client of this process (its own buffer and connection; fork-safe, flushed at exit) to
            the agent's socket LOGAGENT_SOCKET, tuned by the LOGAGENT_CLIENT_* names of logagent's README.
            success means queued for the agent; the agent's --upstream is what LOG_SERVICE_GRPC_SERVER was.
  original  the original design: one unary gRPC WriteLog per record to LOG_SERVICE_GRPC_SERVER, through
            examples/original/original_client.py (LOG_CLIENT_ORIGINAL_CLIENT gives another path).
Every setting is read from django.conf.settings when Django is configured and the setting is there (not None or
""), else from the environment variable of the same name; once, when the singleton is made.
"""
import os
import threading

import logagent
from logagent import _client as _la

from . import _original

DEFAULT_SERVER = "localhost:50051"
DEFAULT_SERVICE_NAME = "django-service"
LEVELS = ("DEBUG", "INFO", "WARN", "ERROR", "FATAL")
BACKENDS = ("logagent", "original")


def setting(name):
    """(value, where) of a setting: django.conf.settings.NAME when Django is configured and has it (not None
    or ""), else $NAME when set and not empty, else (None, None). where names it for error messages."""
    try:
        from django.conf import settings
        from django.core.exceptions import ImproperlyConfigured
    except ImportError:
        settings = None
    if settings is not None:
        try:
            if settings.configured or os.environ.get("DJANGO_SETTINGS_MODULE"):
                v = getattr(settings, name, None)
                if v is not None and v != "":
                    return v, "settings." + name
        except (ImportError, ImproperlyConfigured):
            pass  # DJANGO_SETTINGS_MODULE names nothing importable: the environment still counts
    v = os.environ.get(name)
    if v:
        return v, name
    return None, None


def level_name(level):
    """The original's level rule: DEBUG, INFO, WARN, ERROR, FATAL in any case; anything else INFO."""
    if isinstance(level, str):
        up = level.upper()
        if up in LEVELS:
            return up
    return "INFO"


def logagent_options():
    """logagent.Client options from the settings: socket_path (LOGAGENT_SOCKET) and each LOGAGENT_CLIENT_* knob
    (sizes like 16MiB or an int, durations in ms like 50, 250ms, 5s). Raises ValueError naming the setting."""
    path, _ = setting("LOGAGENT_SOCKET")
    opts = {"socket_path": str(path) if path is not None else logagent.DEFAULT_SOCKET}
    for name, (option, parse) in _la.ENV_KNOBS.items():
        v, where = setting(name)
        if v is not None:
            opts[option] = parse(where, str(v).strip())
    return opts


class DjangoLogServiceClient:
    """The original's client class: one per process (a thread-safe singleton), made from the settings."""

    _instance = None
    _lock = threading.Lock()

    def __new__(cls):
        if cls._instance is None:
            with cls._lock:
                if cls._instance is None:
                    inst = super().__new__(cls)
                    inst._initialized = False
                    cls._instance = inst
        return cls._instance

    def __init__(self):
        if self._initialized:
            return
        with self._lock:
            if self._initialized:
                return
            backend, where = setting("LOG_CLIENT_BACKEND")
            self.backend = backend or "logagent"
            if self.backend not in BACKENDS:
                from django.core.exceptions import ImproperlyConfigured
                raise ImproperlyConfigured("%s must be one of %s, not %r" % (where, ", ".join(BACKENDS), backend))
            server, _ = setting("LOG_SERVICE_GRPC_SERVER")
            self.server_address = str(server or DEFAULT_SERVER)
            self.socket_path = None
            self._client = None
            self._connect()
            self._initialized = True

    def _connect(self):
        """Makes the backend's client (connecting to nothing yet: both connect on the first write)."""
        if self.backend == "logagent":
            try:
                opts = logagent_options()
            except ValueError as e:
                from django.core.exceptions import ImproperlyConfigured
                raise ImproperlyConfigured(str(e)) from None
            self.socket_path = opts["socket_path"]
            self._client = logagent.Client(**opts)
        else:
            path, _ = setting("LOG_CLIENT_ORIGINAL_CLIENT")
            mod = _original.load(str(path or _original.DEFAULT_PATH), "LOG_CLIENT_BACKEND=original",
                                 "LOG_CLIENT_ORIGINAL_CLIENT")
            self._client = mod.Channel(self.server_address)

    def write_log(self, message, **kwargs):
        """One record: {"success", "log_id", "error_message"}. Never raises."""
        service_name = kwargs.pop("service_name", DEFAULT_SERVICE_NAME)
        level = level_name(kwargs.pop("level", "INFO"))
        trace_id = kwargs.pop("trace_id", "")
        span_id = kwargs.pop("span_id", "")
        metadata = {str(k): (v if k == "timestamp" else str(v)) for k, v in kwargs.items()}
        c = self._client
        if c is None:
            with self._lock:
                if self._client is None:
                    self._connect()
                c = self._client
        try:
            return c.write_log(message, service_name=service_name or None, level=level,
                               trace_id=trace_id or None, span_id=span_id or None, **metadata)
        except Exception as e:  # the original never raised from a failed call either
            return {"success": False, "log_id": "", "error_message": "Error: %s" % e}

    def flush(self, timeout=5.0):
        """(an addition) Waits until the records written so far are in the agent's socket; False when the time
        ran out. The original backend completes each record in its call: always True."""
        c = self._client
        if self.backend != "logagent" or c is None:
            return True
        return c.flush(timeout)

    def disconnect(self):
        """Closes the connection (logagent: after up to 1 s flushing what is buffered). A later write_log
        connects again."""
        with self._lock:
            c, self._client = self._client, None
        if c is not None:
            c.close()

    def get_stats(self):
        """(an addition) The logagent client's counters (logagent.Client.get_stats); {} for the original."""
        c = self._client
        return c.get_stats() if self.backend == "logagent" and c is not None else {}


_log_client = None
_client_lock = threading.Lock()


def get_log_client():
    """The process's DjangoLogServiceClient (made on first use). Raises ImproperlyConfigured for a bad setting."""
    global _log_client
    if _log_client is None:
        with _client_lock:
            if _log_client is None:
                _log_client = DjangoLogServiceClient()
    return _log_client


def write_log(message, **kwargs):
    """The original's write_log: one record through the process's client. Returns {"success": bool, "log_id":
    str, "error_message": str}; never raises (a bad setting comes back as the error_message)."""
    try:
        c = get_log_client()
    except Exception as e:
        return {"success": False, "log_id": "", "error_message": "cannot create the log client: %s" % e}
    return c.write_log(message, **kwargs)


def _reset_for_tests():
    """Forgets the singleton (disconnecting it), so that the next call reads the settings again."""
    global _log_client
    with _client_lock:
        c, _log_client = _log_client, None
    with DjangoLogServiceClient._lock:
        DjangoLogServiceClient._instance = None
    if c is not None:
        c.disconnect()
