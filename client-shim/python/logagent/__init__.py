"""logagent — the Python client of logagentd, the local logging agent.

    import logagent
    r = logagent.write_log("user logged in", service_name="auth", level="INFO", user="alice", attempt=2)
    # r == {"success": True, "log_id": "3f2a…(32 hex)", "error_message": ""}

write_log keeps the original service's call and result, but hands the record to the agent on this host over a
Unix socket ($LOGAGENT_SOCKET, default /run/logagent/ingest.sock) through a bounded in-process buffer and a
background thread: it never waits on the network, and never blocks the caller (by default a full buffer drops
the record, counts it and says so in error_message). The process-wide client is made on first use, is
thread-safe, survives os.fork() (the child gets its own connection) and flushes at interpreter exit (up to 1 s).
Its options can also come from the environment (LOGAGENT_CLIENT_BUFFER_BYTES, LOGAGENT_CLIENT_BLOCK_TIMEOUT_MS,
LOGAGENT_CLIENT_MAX_RECORD_BYTES, LOGAGENT_CLIENT_EXIT_FLUSH_TIMEOUT_MS; see README.md).

Module-level functions use the process-wide client; logagent.Client makes others. LogAgentHandler plugs the
standard logging module (and Django's LOGGING) into the same client. See README.md beside this package.
"""
# A build tree's logagent/ folder on sys.path (the tests' PYTHONPATH: CMake builds _speedups there, never in the
# source tree) joins this package's path, so `from . import _speedups` finds the extension beside the sources.
__path__ = __import__("pkgutil").extend_path(__path__, __name__)
from . import _client  # noqa: E402
from ._client import DEFAULT_SOCKET, Client, close_default, configure, default_client  # noqa: E402
from ._record import implementation  # noqa: E402  "c": the C encoder (logagent._speedups) runs; "python": not
from .handler import LogAgentHandler  # noqa: E402

__all__ = ["Client", "LogAgentHandler", "write_log", "flush", "close", "get_stats", "get_client", "configure",
           "DEFAULT_SOCKET", "implementation"]
__version__ = "0.1.0"


def get_client():
    """The process-wide Client (made on first use from $LOGAGENT_SOCKET)."""
    return default_client()


def write_log(message, service_name=None, level="INFO", trace_id=None, span_id=None, **metadata):
    """Queues one record for the agent. Returns {"success": bool, "log_id": str, "error_message": str}.

    success: the record is queued (in the agent's socket, or in this process's buffer while the agent is away);
    log_id: 32 lowercase hex chars made here and sent with the record ("" on failure);
    error_message: why not, otherwise ("logagent buffer full (agent down: …): record dropped", "record too
    large (…)", "invalid argument: message must be a str, not …").
    Metadata values may be of any type (nested dicts and lists too); `timestamp=` (RFC 3339 str, int ns, float
    seconds or datetime) replaces "now". Never raises."""
    try:
        c = default_client()
    except ValueError as e:
        return {"success": False, "log_id": "", "error_message": _cannot_create(e)}
    return c.write(message, service_name, level, trace_id, span_id, metadata)


# The same function in C when logagent._speedups is loaded (implementation == "c"): it binds the arguments, packs
# the record and calls the client's _enqueue itself, and calls this one for every call it does not take.
_write_log_py = write_log
write_log = _client.make_writer(None, _write_log_py, globals())


def flush(timeout=5.0):
    """Waits until the records queued so far are written to the agent's socket (up to timeout seconds; None:
    forever). Returns False when time ran out (agent down or slow)."""
    c = _client._default
    return True if c is None else c.flush(timeout)


def close(timeout=1.0):
    """Flushes (up to timeout seconds) and closes the process-wide client; a later write_log makes a new one."""
    return close_default(timeout)


def get_stats():
    """The process-wide client's counters (see Client.get_stats)."""
    try:
        return default_client().get_stats()
    except ValueError as e:
        return {"written": 0, "sent": 0, "dropped": 0, "rejected": 0, "reconnects": 0, "buffered_bytes": 0,
                "connected": False, "last_error": _cannot_create(e), "socket_path": ""}


def _cannot_create(e):
    """The error_message for a process-wide client that cannot be made (a bad $LOGAGENT_SOCKET or
    LOGAGENT_CLIENT_* variable): "cannot create the logagent client: invalid value 'x' in …"."""
    why = str(e)
    if why.startswith("logagent: "):
        why = why[len("logagent: "):]
    return "cannot create the logagent client: %s" % why
