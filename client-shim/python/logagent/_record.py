"""_record.py — one write_log call as one msgpack map, the wire format of docs/protocol.md.

It mirrors liblogagent's encoder (client-shim/pack.c) so both clients send the same record for the same call:
`message`, `level` (None: "INFO", anything else as given: the agent classifies it), `service_name`, `trace_id`
and `span_id` when given, `log_id`, `timestamp` (int unix ns, "now"), then the metadata in the caller's order.

Metadata rules (the same as pack.c's):
- a key the client writes itself (message, level, log_id, and service_name/trace_id/span_id when given) is left
  out, so a map never repeats a core key; `timestamp` is the one core key metadata may supply: it then stands in
  for "now" (an RFC 3339 string, int ns, float seconds, or a datetime, sent as int ns);
- keys starting with "_" are sent as given: the agent drops and counts them (`reserved_key`);
- values keep their msgpack type (the agent turns them into text: ints, floats, bools as text, None as "",
  dicts and lists as compact JSON, bytes as base64). What msgpack cannot carry is made text here: a datetime,
  date or time as ISO 8601, a set as a list, an int outside 64 bits and any other object as str(value).
- nesting is bounded by the agent's decoder (32 open containers, the record map included): a deeper value is
  refused here with an error, because the agent would close the connection on it (counted `malformed`).

With the extension (logagent._speedups, _speedups.c) built and importable, write_log runs in C (writer: the
arguments bound, the record packed, the client's _enqueue called) and Client.write packs with its pack(), for the
records they understand; everything else comes here, pack(build(...)). Both give the same bytes for the same
call (tests/python/test_speedups.py); encode() is that choice as one function. LOGAGENT_PURE_PYTHON=1 in the environment at import time forces this
module's path; `implementation` says which one runs: "c" or "python".
"""
import datetime
import os

try:
    import msgpack
except ModuleNotFoundError as e:  # the one dependency: say which package gives it, not only its module name
    raise ModuleNotFoundError(
        "logagent needs the msgpack module, which this interpreter (%s) does not have: on Debian or Ubuntu "
        "`apt install python3-msgpack` (for /usr/bin/python3), elsewhere `pip install msgpack`" % __import__("sys").executable,
        name="msgpack") from e

MAX_DEPTH = 32  # non-empty containers open at once, the record map included (agent/ingest/mpscan.h)

_INT_MIN = -(1 << 63)
_UINT_MAX = (1 << 64) - 1
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


class RecordError(ValueError):
    """A record that cannot be sent; str(e) is the write_log error_message."""


def _text(v):
    """What msgpack cannot pack natively, as text (msgpack's `default` hook)."""
    if isinstance(v, (datetime.datetime, datetime.date, datetime.time)):
        return v.isoformat()
    if isinstance(v, (set, frozenset)):
        return list(v)
    return str(v)


def _plain(v, open_count, key):
    """v made packable: out-of-range ints and unknown objects as text, sets as lists, containers copied.
    open_count is the number of containers already open around v. Raises RecordError when too deep."""
    t = type(v)
    if t is str or t is float or t is bool or v is None or t is bytes:
        return v
    if isinstance(v, bool):
        return bool(v)
    if isinstance(v, int):
        return int(v) if _INT_MIN <= v <= _UINT_MAX else str(v)
    if isinstance(v, (str, float, bytes, bytearray, memoryview)):
        return v
    if isinstance(v, dict):
        if not v:
            return v
        if open_count >= MAX_DEPTH:
            raise _too_deep(key)
        return {(k if not _needs_plain(k) else str(k)): _plain(x, open_count + 1, key) for k, x in v.items()}
    if isinstance(v, (list, tuple, set, frozenset)):
        if not v:
            return []
        if open_count >= MAX_DEPTH:
            raise _too_deep(key)
        return [_plain(x, open_count + 1, key) for x in v]
    return _text(v)


def _too_deep(key):
    return RecordError("metadata %r is nested deeper than %d levels (the agent's limit): record dropped"
                       % (key, MAX_DEPTH - 1))


def _needs_plain(v):
    t = type(v)
    if t is str or t is float or t is bool or v is None or t is bytes:
        return False
    return not (t is int and _INT_MIN <= v <= _UINT_MAX)


def timestamp_value(v):
    """A metadata `timestamp` standing in for "now": a datetime becomes int unix ns (a naive one is local time);
    anything else goes as given (the agent parses int ns, float seconds and RFC 3339 strings)."""
    if isinstance(v, datetime.datetime):
        if v.tzinfo is None:
            v = v.astimezone()
        return (v - _EPOCH) // datetime.timedelta(microseconds=1) * 1000
    return v


def build(message, service_name, level, trace_id, span_id, metadata, log_id, now_ns):
    """The record dict for one call, core keys first (the order pack.c writes them). message must be a str.
    Raises RecordError for a metadata value nested too deeply."""
    rec = {"message": message, "level": "INFO" if level is None else level}
    if service_name is not None:
        rec["service_name"] = service_name
    if trace_id is not None:
        rec["trace_id"] = trace_id
    if span_id is not None:
        rec["span_id"] = span_id
    rec["log_id"] = log_id
    if "timestamp" in metadata:
        rec["timestamp"] = timestamp_value(metadata["timestamp"])
    else:
        rec["timestamp"] = now_ns
    for k, v in metadata.items():
        if k in rec:
            continue  # a key this client writes itself (or the timestamp already placed)
        rec[k] = _plain(v, 1, k) if _needs_plain(v) else v
    for k in ("level", "service_name", "trace_id", "span_id", "timestamp"):
        v = rec.get(k)
        if v is not None and _needs_plain(v):
            rec[k] = _plain(v, 1, k)
    return rec


def pack(rec):
    """msgpack bytes of a record dict. Strings that are not valid UTF-8 (lone surrogates, e.g. from
    surrogateescape) are sent as their raw bytes: the agent repairs them (each bad byte becomes U+FFFD)."""
    try:
        return msgpack.packb(rec, use_bin_type=True, default=_text)
    except UnicodeEncodeError:
        pass
    try:
        return msgpack.packb(rec, use_bin_type=True, default=_text, unicode_errors="surrogateescape")
    except UnicodeEncodeError:
        return msgpack.packb(rec, use_bin_type=True, default=_text, unicode_errors="replace")


def _load_speedups():
    """logagent._speedups, or None: not built, not importable, or LOGAGENT_PURE_PYTHON set (not "0")."""
    if os.environ.get("LOGAGENT_PURE_PYTHON", "") not in ("", "0"):
        return None
    try:
        from . import _speedups
    except ImportError:
        return None
    if getattr(_speedups, "FORMAT", None) != 4:  # a build of another version of _speedups.c: not ours
        return None
    return _speedups


_speedups = _load_speedups()
fast_pack = None if _speedups is None else _speedups.pack  # pack() in C: bytes, or None for the Python path
writer = None if _speedups is None else _speedups.writer  # write_log in C (see _client.make_writer)
Buffer = None if _speedups is None else _speedups.Buffer  # a Client's queued records in C (_client._PyBuffer's twin)
implementation = "python" if _speedups is None else "c"


def encode(message, service_name, level, trace_id, span_id, metadata, log_id, now_ns):
    """The msgpack bytes of one call: pack(build(...)), through the C encoder when it is loaded and understands
    the record. Raises RecordError (and whatever a str() of the caller's object raises) as build/pack do."""
    if fast_pack is not None:
        data = fast_pack(message, service_name, level, trace_id, span_id, metadata, log_id, now_ns)
        if data is not None:
            return data
    return pack(build(message, service_name, level, trace_id, span_id, metadata, log_id, now_ns))
