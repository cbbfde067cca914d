"""handler.py — LogAgentHandler: the standard `logging` module into logagentd.

One LogRecord becomes one write_log record:
  message       record.getMessage() (the "%s" arguments applied; formatters are not used for the message)
  level         record.levelname (WARNING and CRITICAL are stored by the agent as WARN and FATAL)
  service_name  the handler's service_name (an `extra={"service_name": ...}` overrides it)
  trace_id, span_id   from `extra=` when present
  timestamp     record.created (when the call was made, not when the record reached the agent)
  metadata      `logger` (record.name), `exception` (the formatted traceback when exc_info is set),
                `stack` (with stack_info=True), and every `extra=` field (names starting with "_" are skipped:
                the agent would drop them as reserved).
Usable from a Django/dictConfig LOGGING dict: {"class": "logagent.LogAgentHandler", "service_name": "shop"}.
Like every logging handler it never raises into the application: an error while building a record goes to
handleError() (a "--- Logging error ---" report on stderr). A record the client refuses (buffer full while the
agent is away, too large) is counted in `failed` and in the client's stats, silently.
"""
import logging

from . import _client

# Attributes every LogRecord has (plus those formatters add): anything else on a record came from extra=.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime", "taskName"}
_DIRECT = ("trace_id", "span_id", "service_name")


class LogAgentHandler(logging.Handler):
    """logging.Handler sending each record to the local agent.

    service_name: the records' service_name (default None: not set).
    client: a logagent.Client to write through (default: the process-wide client, which follows
        LOGAGENT_SOCKET and logagent.configure()).
    socket_path, and any other keyword (buffer_bytes, block_timeout, ...): give this handler a client of its
        own with these options instead (closed with the handler).
    flush_timeout: seconds flush() and close() wait for buffered records (default 1)."""

    def __init__(self, service_name=None, level=logging.NOTSET, client=None, flush_timeout=1.0, **client_options):
        super().__init__(level)
        self.service_name = service_name
        self.flush_timeout = flush_timeout
        self.failed = 0
        self._own_client = None
        if client is None and client_options:
            client = self._own_client = _client.Client(**client_options)
        self._client = client

    @property
    def client(self):
        return self._client if self._client is not None else _client.default_client()

    def handle(self, record):
        """filter() then emit(), without the handler lock: the client is thread-safe, so threads logging at
        once do not queue behind each other here."""
        rv = self.filter(record)
        if isinstance(rv, logging.LogRecord):
            record = rv
        if rv:
            self.emit(record)
        return rv

    def emit(self, record):
        try:
            res = self.client.write(record.getMessage(), *self._fields(record))
            if not res["success"]:
                self.failed += 1
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)

    def _fields(self, record):
        """(service_name, level, trace_id, span_id, metadata, timestamp_ns) of a record."""
        direct = {"service_name": self.service_name, "trace_id": None, "span_id": None}
        meta = {"logger": record.name}
        if record.exc_info:
            if not record.exc_text:
                record.exc_text = self._formatter().formatException(record.exc_info)
        if record.exc_text:
            meta["exception"] = record.exc_text
        if record.stack_info:
            meta["stack"] = self._formatter().formatStack(record.stack_info)
        for k, v in record.__dict__.items():
            if k in _STANDARD or k.startswith("_"):
                continue
            if k in _DIRECT:
                if v is not None:
                    direct[k] = v
            else:
                meta[k] = v
        ts = None if "timestamp" in meta else int(record.created * 1e9)
        return direct["service_name"], record.levelname, direct["trace_id"], direct["span_id"], meta, ts

    def _formatter(self):
        return self.formatter or logging.Formatter()

    def flush(self):
        """Waits up to flush_timeout for this handler's client to write what it holds."""
        try:
            if self._client is not None or _client._default is not None:
                self.client.flush(self.flush_timeout)
        except Exception:
            pass

    def close(self):
        """Flushes; closes the handler's own client if it has one (never the process-wide client)."""
        try:
            if self._own_client is not None:
                self._own_client.close(self.flush_timeout)
            else:
                self.flush()
        finally:
            super().close()
