"""original_client.py — the original design, rebuilt for benchmarks and before/after comparisons only.

    from original_client import write_log
    r = write_log("user logged in", service_name="auth", level="INFO", user="alice", attempt=2)
    # {"success": True, "log_id": "…", "error_message": ""}

This is what logagent replaces: every write_log() call makes ONE unary gRPC call,
logagent.v1.LogService/WriteLog, and waits for the service's answer (a network round trip inside the caller's
request). Same arguments and result dict as logagent.write_log, so the two can be swapped
(e.g. DJANGO_LOG_BACKEND=original in the Django example service).

- Target: $ORIGINAL_LOG_SERVICE (HOST:PORT, any gRPC target), else $LOG_SERVICE_GRPC_SERVER (what the original
  read), else localhost:50051. Read once, when the channel is made.
- One process-wide channel, made lazily on the first call and shared by every thread (the original's
  singleton); Channel(address) makes another (log_client's original backend: settings.LOG_SERVICE_GRPC_SERVER).
  Not fork-safe, like the original: a process that forks after the first call must call close()
  in the child before logging.
- The request: service_name, level, message, trace_id, span_id as given (None as ""), and metadata as
  map<string,string>: dicts and lists as json.dumps(value), anything else as str(value) (so True is "True" and
  None is "None", as the original sent them). No log_id and no timestamp: the service makes the log_id.
- Errors never raise: {"success": False, "log_id": "", "error_message": "gRPC error: UNAVAILABLE: …"}.
  Each call has a deadline of $ORIGINAL_LOG_TIMEOUT seconds (default 10).
- Needs Debian's python3-grpcio and python3-protobuf, and protoc (protobuf-compiler): the messages are compiled
  from the repository's proto/ at first use (original_proto.py).
"""
import json
import os
import threading

import grpc

import original_proto

DEFAULT_TARGET = "localhost:50051"
DEFAULT_TIMEOUT_S = 10.0

_lock = threading.Lock()
_default = None  # the process-wide Channel, made on the first write_log


def target():
    """Where the process-wide channel goes (see the module's docstring)."""
    return os.environ.get("ORIGINAL_LOG_SERVICE") or os.environ.get("LOG_SERVICE_GRPC_SERVER") or DEFAULT_TARGET


def _text(value):
    return json.dumps(value) if isinstance(value, (dict, list)) else str(value)


class Channel:
    """One gRPC channel to the original service at `address` (HOST:PORT), made on the first write_log and
    shared by every thread that calls it; timeout: each call's deadline in seconds (None: $ORIGINAL_LOG_TIMEOUT,
    else 10). The module-level write_log uses one of these for target(); log_client's original backend makes
    its own for settings.LOG_SERVICE_GRPC_SERVER."""

    def __init__(self, address, timeout=None):
        self.address = address
        self.timeout = timeout
        self._lock = threading.Lock()
        self._state = None  # (channel, WriteLog callable, messages module, timeout) once made

    def _get(self):
        s = self._state
        if s is not None:
            return s
        with self._lock:
            if self._state is None:
                pb = original_proto.messages()
                timeout = self.timeout
                if timeout is None:
                    timeout = float(os.environ.get("ORIGINAL_LOG_TIMEOUT") or DEFAULT_TIMEOUT_S)
                channel = grpc.insecure_channel(self.address)
                call = channel.unary_unary(original_proto.WRITE_LOG_METHOD,
                                           request_serializer=pb.WriteLogRequest.SerializeToString,
                                           response_deserializer=pb.WriteLogResponse.FromString)
                self._state = (channel, call, pb, timeout)
            return self._state

    def write_log(self, message, service_name=None, level="INFO", trace_id=None, span_id=None, **metadata):
        """One unary WriteLog call. Returns {"success": bool, "log_id": str, "error_message": str} as the
        service answered, or success False with the gRPC status (or the local error) in error_message. Never
        raises."""
        try:
            _, call, pb, timeout = self._get()
            req = pb.WriteLogRequest(service_name=service_name or "", level=level or "INFO", message=message,
                                     trace_id=trace_id or "", span_id=span_id or "",
                                     metadata={str(k): _text(v) for k, v in metadata.items()})
            resp = call(req, timeout=timeout)
            return {"success": resp.success, "log_id": resp.log_id, "error_message": resp.error_message}
        except grpc.RpcError as e:
            return {"success": False, "log_id": "",
                    "error_message": "gRPC error: %s: %s" % (e.code().name, e.details())}
        except Exception as e:  # a bad argument (message not a str), a value json cannot dump, protoc missing
            return {"success": False, "log_id": "", "error_message": "%s: %s" % (type(e).__name__, e)}

    def close(self):
        """Closes the channel; the next write_log makes a new one."""
        with self._lock:
            s, self._state = self._state, None
        if s is not None:
            s[0].close()


def write_log(message, service_name=None, level="INFO", trace_id=None, span_id=None, **metadata):
    """One unary WriteLog call on the process-wide channel (to target()). Returns {"success": bool, "log_id":
    str, "error_message": str}. Never raises."""
    global _default
    ch = _default
    if ch is None:
        with _lock:
            if _default is None:
                _default = Channel(target())
            ch = _default
    return ch.write_log(message, service_name, level, trace_id, span_id, **metadata)


def close():
    """Closes the process-wide channel; the next write_log makes a new one (re-reading the environment)."""
    global _default
    with _lock:
        ch, _default = _default, None
    if ch is not None:
        ch.close()
