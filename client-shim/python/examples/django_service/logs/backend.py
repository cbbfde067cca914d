"""backend.py — which write_log the views call: logagent's (the default) or the original service's gRPC client.

settings.LOG_BACKEND (env DJANGO_LOG_BACKEND):
  "logagent"  logagent.write_log: the record goes to the local agent through the process-wide client;
              flush() waits until the records are written to the agent's socket.
  "original"  write_log from settings.ORIGINAL_CLIENT_PATH (examples/original/original_client.py): one unary
              gRPC WriteLog per record to $ORIGINAL_LOG_SERVICE, what the service did before logagent.
              The file is loaded by path (log_client/_original.py, shared with log_client's original
              backend), and only when this backend is chosen (the logagent backend needs neither grpcio nor
              that file); its folder goes on sys.path so that modules beside it import.
Both have the same call, write_log(message, service_name=None, level="INFO", trace_id=None, span_id=None,
**metadata), and the same result, {"success": bool, "log_id": str, "error_message": str}.
"""
import threading

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from log_client import _original
from log_client.views import Backend


_lock = threading.Lock()
_loaded = {}  # (backend name, original client path) -> Backend


def get():
    """The Backend settings name. Raises ImproperlyConfigured when it cannot be loaded (the reason named)."""
    key = (settings.LOG_BACKEND, settings.ORIGINAL_CLIENT_PATH)
    b = _loaded.get(key)
    if b is None:
        with _lock:
            b = _loaded.get(key)
            if b is None:
                b = _loaded[key] = _load(*key)
    return b


def _load(name, original_path):
    if name == "logagent":
        import logagent
        return Backend("logagent", logagent.write_log, logagent.flush)
    if name == "original":
        mod = _original.load(original_path, "DJANGO_LOG_BACKEND=original", "DJANGO_ORIGINAL_CLIENT")
        return Backend("original", mod.write_log, getattr(mod, "flush", None))
    raise ImproperlyConfigured("LOG_BACKEND must be 'logagent' or 'original', not %r" % (name,))
