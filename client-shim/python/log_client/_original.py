"""_original.py — loads the original design's client (client-shim/python/examples/original/original_client.py)
by path, for log_client's "original" backend and the example service's DJANGO_LOG_BACKEND=original.

The file is executed as the module `original_client`, once per process, and only when that backend is chosen
(logagent's backend needs neither grpcio nor the file); its folder goes on sys.path so that original_proto.py
beside it imports. Errors are django's ImproperlyConfigured naming the setting to fix."""
import importlib.util
import os
import sys
import threading

from django.core.exceptions import ImproperlyConfigured

DEFAULT_PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples", "original",
                            "original_client.py")  # in a checkout of the repository

_lock = threading.Lock()


def load(path, chosen_by, path_setting):
    """The original client module from path. chosen_by names the switch ("LOG_CLIENT_BACKEND=original"),
    path_setting the setting that gives the path: both appear in the error when the file is missing."""
    with _lock:
        return _load_locked(path, chosen_by, path_setting)


def _load_locked(path, chosen_by, path_setting):
    if not os.path.isfile(path):
        raise ImproperlyConfigured(
            "%s needs the original service's client, %s, which does not exist (set %s to its path)"
            % (chosen_by, path, path_setting))
    mod = sys.modules.get("original_client")
    if mod is not None and os.path.abspath(getattr(mod, "__file__", "") or "") == os.path.abspath(path):
        return mod
    folder = os.path.dirname(os.path.abspath(path))
    if folder not in sys.path:
        sys.path.insert(0, folder)
    spec = importlib.util.spec_from_file_location("original_client", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["original_client"] = mod
    try:
        spec.loader.exec_module(mod)
    except Exception as e:
        del sys.modules["original_client"]
        raise ImproperlyConfigured("cannot load the original client %s: %s: %s" % (path, type(e).__name__, e)) \
            from e
    if not callable(getattr(mod, "write_log", None)):
        del sys.modules["original_client"]
        raise ImproperlyConfigured("%s has no write_log function" % path)
    return mod
