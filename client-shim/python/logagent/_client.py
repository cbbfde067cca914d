"""_client.py — the Python client's engine: a bounded in-process buffer and a sender thread writing it to
logagentd's Unix socket, plus the process-wide state (live clients, fork handlers, atexit, default client and
the LOGAGENT_CLIENT_* environment variables it is made from).

DESIGN (the same as liblogagent's, client-shim/logagent.c)
A writer encodes its record outside any lock (_record.py; with logagent._speedups loaded, Client.write_log and
logagent.write_log are C functions that bind, pack and call _enqueue themselves: make_writer), then, under the client's lock, appends the bytes to
`_pending` (a deque of whole records). The sender thread takes records off `_pending` (up to SEND_BATCH bytes),
joins them into one buffer and writes it to the socket outside the lock, so writers never wait on I/O.
Writers wake the sender only when it is idle; with little data pending it lingers up to 1 ms so that a slow
trickle of records still goes out in few large sends (a flush or a writer out of room cuts that short).

Invariants (under _lock):
  - _pending_bytes + _io_left <= cap: the bound on buffered bytes. A record that does not fit is dropped and
    counted, or its writer waits up to block_timeout seconds for room (default 0: drop at once).
  - _enq_bytes counts bytes ever appended, _done_bytes bytes written to the socket. When a connection breaks
    mid-record, the sender rewinds to the start of the record it cut (and _done_bytes with it): the agent
    discards a partial record, so that record is sent again whole on the next connection. A record that was
    fully written is never sent again (records the kernel took before the agent died may be lost; log_id lets
    a service drop any duplicate).
  - flush() waits for _done_bytes to reach _enq_bytes as it was at the call.
  - _sock is set and closed under _lock, so close() can shutdown() it to unblock a send to an agent that
    stopped reading, and a forked child sees a consistent value to close.

fork(): os.register_at_fork handlers take the process lock and every live client's lock before the fork, so
the child copies consistent state. The child then gives each client new locks, an empty buffer, zeroed
counters and no socket (its copy of the parent's connection is closed) and no sender thread: its next write
starts its own thread and connection. Records buffered in the parent at fork time stay the parent's.
"""
import atexit
import collections
import errno
import os
import random
import socket
import sys
import threading
import time
import warnings
import weakref

from . import _record

_fast_pack = _record.fast_pack  # logagent._speedups.pack (C) when loaded (_record.implementation), else None

DEFAULT_SOCKET = "/run/logagent/ingest.sock"
DEFAULT_BUFFER_BYTES = 4 << 20
MIN_BUFFER_BYTES = 1 << 10
MAX_RECORD_BYTES = 1 << 20  # the agent's default --max-record-bytes
DEFAULT_EXIT_FLUSH_TIMEOUT = 1.0
SEND_BATCH = 256 << 10      # bytes the sender takes off the buffer at once
LINGER_BYTES = 64 << 10
LINGER_S = 0.001
BACKOFF_MIN_S = 0.01
BACKOFF_MAX_S = 1.0
CONNECT_TIMEOUT_S = 1.0
_SUN_PATH_MAX = 107         # sizeof(sockaddr_un.sun_path) - 1 on Linux
_SEND_FLAGS = getattr(socket, "MSG_NOSIGNAL", 0)

_BUSY, _IDLE, _LINGER = 0, 1, 2

# Process-wide state: the live clients (for the fork and exit handlers) and the default client. _proc_lock
# guards both; it is an RLock so that the default client can be created while it is held.
_proc_lock = threading.RLock()
_live = weakref.WeakSet()
_default = None


def _fail(message):
    return {"success": False, "log_id": "", "error_message": message}


class Client:
    """One connection's worth of buffering to logagentd. Every method is safe from any thread.

    socket_path: the agent's ingest socket (None: $LOGAGENT_SOCKET, else /run/logagent/ingest.sock).
    buffer_bytes: bound on encoded bytes waiting in this process (default 4 MiB, at least 1 KiB).
    block_timeout: seconds a writer waits for room when the buffer is full (0: drop at once, the default;
        None: wait as long as it takes).
    max_record_bytes: largest record accepted (default 1 MiB, the agent's default; never above buffer_bytes).
    exit_flush_timeout: seconds the interpreter's exit waits for this client's buffered records (default 1).
    Raises ValueError for a bad argument (an empty or over-long socket path, a negative number)."""

    def __init__(self, socket_path=None, buffer_bytes=None, block_timeout=0.0, max_record_bytes=None,
                 exit_flush_timeout=DEFAULT_EXIT_FLUSH_TIMEOUT):
        path = socket_path if socket_path is not None else (os.environ.get("LOGAGENT_SOCKET") or DEFAULT_SOCKET)
        path = os.fsdecode(path)
        if not path:
            raise ValueError("logagent: the socket path is empty")
        if len(os.fsencode(path)) > _SUN_PATH_MAX:
            raise ValueError("logagent: the socket path is longer than %d bytes: %r" % (_SUN_PATH_MAX, path))
        if block_timeout is not None and block_timeout < 0:
            raise ValueError("logagent: block_timeout must be >= 0 seconds or None, got %r" % (block_timeout,))
        cap = DEFAULT_BUFFER_BYTES if buffer_bytes is None else int(buffer_bytes)
        if cap < 0:
            raise ValueError("logagent: buffer_bytes must be positive, got %r" % (buffer_bytes,))
        self.socket_path = path
        self.cap = max(cap, MIN_BUFFER_BYTES)
        self.max_record = min(self.cap, MAX_RECORD_BYTES if max_record_bytes is None else int(max_record_bytes))
        self.block_timeout = block_timeout
        self.exit_flush_timeout = exit_flush_timeout
        self._linger_bytes = min(self.cap // 4, LINGER_BYTES)
        self._init_state()
        with _proc_lock:
            _live.add(self)
        # The C write_log as this instance's attribute, when the extension is loaded and neither write_log nor write
        # is overridden (a subclass's own, or a mock patched onto the class, stays in charge). Compared with the
        # originals taken once below the class, not Client.write_log as it is now (a mock.patch of the class).
        # Pure mode sets no attribute (no Client <-> bound method cycle: an unused Client dies without the gc).
        cls = type(self)
        if _record.writer is not None and cls.write_log is _WRITE_LOG and cls.write is _WRITE:
            self.write_log = make_writer(self, _WRITE_LOG.__get__(self))

    def _init_state(self):
        """Fresh locks, empty buffer, zero counters, no socket, no thread (also the child's state after fork)."""
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)   # sender: records arrived, or stop
        self._room = threading.Condition(self._lock)   # writers: room freed
        self._done = threading.Condition(self._lock)   # flushers: bytes written
        self._pending = collections.deque()
        self._pending_bytes = 0
        self._io_left = 0
        self._enq_bytes = 0
        self._done_bytes = 0
        self._sock = None
        self._thread = None
        self._closed = False
        self._stopping = False
        self._io_state = _BUSY
        self._room_waiters = 0
        self._done_waiters = 0
        self._connects = 0
        self._last_error = ""
        self._written = self._sent = self._dropped = self._reconnects = self._rejected = 0

    # ---- writing ----

    def write_log(self, /, message, service_name=None, level="INFO", trace_id=None, span_id=None, **metadata):
        """The original write_log. Returns {"success": bool, "log_id": str, "error_message": str}; success
        means the record is queued (in the agent's socket, or in this buffer while the agent is away)."""
        return self.write(message, service_name, level, trace_id, span_id, metadata)

    def write(self, message, service_name=None, level="INFO", trace_id=None, span_id=None, metadata=None,
              timestamp_ns=None):
        """write_log with the metadata as a dict and an optional record time (int unix ns; None: now, or the
        metadata's "timestamp" when it has one). Never raises for a bad record: the result says why."""
        if not isinstance(message, str):
            with self._lock:
                self._rejected += 1
            if message is None:
                return _fail("invalid argument: message is None")
            return _fail("invalid argument: message must be a str, not %s" % type(message).__name__)
        log_id = "%032x" % _ids.getrandbits(128)
        meta = metadata or {}
        try:
            now = timestamp_ns if timestamp_ns is not None else time.time_ns()
            data = None if _fast_pack is None else _fast_pack(message, service_name, level, trace_id, span_id, meta,
                                                              log_id, now)
            if data is None:  # no C encoder, or a record only the Python one handles
                data = _record.pack(_record.build(message, service_name, level, trace_id, span_id, meta, log_id, now))
        except _record.RecordError as e:
            return self._reject(str(e))
        except Exception as e:  # a str() or isoformat() of the caller's object that raised
            return self._reject("cannot encode the record (%s: %s): record dropped" % (type(e).__name__, e))
        n = len(data)
        if n > self.max_record:
            return self._reject("record too large (%d bytes, limit %d): record dropped" % (n, self.max_record))
        err = self._enqueue(data)
        if err:
            return _fail(err)
        return {"success": True, "log_id": log_id, "error_message": ""}

    def _reject(self, message):
        with self._lock:
            self._rejected += 1
        return _fail(message)

    def _enqueue(self, data):
        """Appends one encoded record, waiting for room as block_timeout says. Returns "" or an error message."""
        n = len(data)
        deadline = None
        with self._lock:
            if self._closed:
                self._rejected += 1
                return "logagent client closed: record dropped"
            if self._thread is None:
                err = self._start_locked()
                if err:
                    return err
            while self._pending_bytes + self._io_left + n > self.cap:
                if self._stopping or self.block_timeout == 0:
                    return self._full_locked()
                if self._io_state == _LINGER:
                    self._work.notify()
                if self.block_timeout is not None and deadline is None:
                    deadline = time.monotonic() + self.block_timeout
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return self._full_locked()
                self._room_waiters += 1
                try:
                    self._room.wait(left)
                finally:  # (a KeyboardInterrupt in the wait must not leave a phantom waiter)
                    self._room_waiters -= 1
            self._pending.append(data)
            self._pending_bytes += n
            self._enq_bytes += n
            self._written += 1
            if self._io_state == _IDLE or (self._io_state == _LINGER and self._pending_bytes >= self._linger_bytes):
                self._work.notify()
        return ""

    def _full_locked(self):
        self._dropped += 1
        if self._sock is None and self._last_error:
            return "logagent buffer full (agent down: %s): record dropped" % self._last_error
        if self._sock is None:
            return "logagent buffer full (not connected to the agent at %s yet): record dropped" % self.socket_path
        return "logagent buffer full (agent slow or down): record dropped"

    def _start_locked(self):
        _hook_multiprocessing_exit()
        t = threading.Thread(target=self._run, name="logagent-sender", daemon=True)
        try:
            t.start()
        except RuntimeError as e:  # interpreter shutting down, or no more threads
            self._dropped += 1
            return "cannot start the logagent sender thread (%s): record dropped" % e
        self._thread = t
        return ""

    # ---- the sender thread ----

    def _run(self):
        io = b""
        ends = []       # ends[i]: offset just past record i of io
        off = rec = 0   # bytes of io written (rewound to a record start on a broken connection); records done
        backoff = 0.0
        progressed = False  # a record was completed on the current connection
        lingered = False
        lock = self._lock
        lock.acquire()
        try:
            while not self._stopping:
                if off == len(io):
                    if not self._pending:
                        self._io_state = _IDLE
                        self._work.wait()
                        self._io_state = _BUSY
                        continue
                    if (not lingered and self._pending_bytes < self._linger_bytes and not self._done_waiters
                            and not self._room_waiters):
                        self._io_state = _LINGER
                        self._work.wait(LINGER_S)
                        self._io_state = _BUSY
                        lingered = True
                        continue
                    lingered = False
                    io, ends = self._take_locked()
                    off = rec = 0
                if self._sock is None:
                    if backoff:
                        self._work.wait(backoff)  # close() wakes it
                        if self._stopping:
                            break
                    lock.release()
                    try:
                        sock, err = _connect(self.socket_path)
                    finally:
                        lock.acquire()
                    if sock is None:
                        self._last_error = err
                        backoff = min(max(backoff * 2, BACKOFF_MIN_S), BACKOFF_MAX_S)
                        continue
                    if self._stopping:
                        sock.close()
                        break
                    self._sock = sock
                    self._connects += 1
                    if self._connects > 1:
                        self._reconnects += 1
                    self._last_error = ""
                    progressed = False
                sock = self._sock
                lock.release()
                try:
                    n = sock.send(memoryview(io)[off:off + SEND_BATCH], _SEND_FLAGS)
                    err = None
                except OSError as e:
                    n, err = 0, e
                finally:
                    lock.acquire()
                if err is None and n > 0:
                    off += n
                    self._io_left -= n
                    self._done_bytes += n
                    while rec < len(ends) and ends[rec] <= off:
                        rec += 1
                        self._sent += 1
                        progressed = True
                    if progressed:
                        backoff = 0.0
                    self._wake_waiters_locked()
                    continue
                # EPIPE, ECONNRESET, ...: send the cut record again whole on a new connection. A connection that
                # broke before completing any record backs off, so an agent that keeps closing on us cannot make
                # this a busy loop.
                start = ends[rec - 1] if rec else 0
                self._io_left += off - start
                self._done_bytes -= off - start
                off = start
                self._last_error = "connection to %s lost: %s" % (self.socket_path, _strerror(err))
                self._close_sock_locked()
                if not progressed:
                    backoff = min(max(backoff * 2, BACKOFF_MIN_S), BACKOFF_MAX_S)
        finally:
            self._close_sock_locked()
            self._wake_waiters_locked()
            lock.release()

    def _take_locked(self):
        parts, ends, total = [], [], 0
        p = self._pending
        while p and total < SEND_BATCH:
            r = p.popleft()
            parts.append(r)
            total += len(r)
            ends.append(total)
        self._pending_bytes -= total
        self._io_left = total
        return b"".join(parts), ends

    def _wake_waiters_locked(self):
        if self._room_waiters:
            self._room.notify_all()
        if self._done_waiters:
            self._done.notify_all()

    def _close_sock_locked(self):
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    # ---- flush, close, stats ----

    def flush(self, timeout=5.0):
        """Waits until every record queued before the call is written to the agent's socket, up to timeout
        seconds (None: as long as it takes). Returns True when done, False when the time ran out (the agent is
        down or slow) or the client is closed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            target = self._enq_bytes
            while self._done_bytes < target:
                if self._stopping or self._thread is None:
                    return False
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._done_waiters += 1
                if self._io_state == _LINGER:
                    self._work.notify()
                try:
                    self._done.wait(left)
                finally:
                    self._done_waiters -= 1
        return True

    def close(self, timeout=1.0):
        """Flushes up to timeout seconds (None: as long as it takes, 0: not at all), then stops the sender and
        closes the connection. Records still buffered are dropped (counted). Later writes fail with "logagent
        client closed". Returns True when every record was written to the socket."""
        if timeout is None or timeout > 0:
            flushed = self.flush(timeout)
        else:
            with self._lock:
                flushed = self._done_bytes >= self._enq_bytes
        with self._lock:
            if self._closed:
                return flushed
            self._closed = self._stopping = True
            if self._sock is not None:
                try:
                    self._sock.shutdown(socket.SHUT_RDWR)  # unblocks a send to an agent that stopped reading
                except OSError:
                    pass
            self._work.notify_all()
            self._room.notify_all()
            self._done.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        with self._lock:
            self._dropped += self._written - self._sent  # queued but never fully written
            self._pending.clear()
            self._pending_bytes = self._io_left = 0
        with _proc_lock:
            _live.discard(self)
        return flushed

    def get_stats(self):
        """Counters: written (records queued), sent (fully written to the socket), dropped (buffer full, or
        left unsent at close), rejected (refused by write_log: bad argument, too large, client closed),
        reconnects (connects after the first), buffered_bytes (waiting now), connected, last_error (why the
        agent cannot be reached)."""
        with self._lock:
            return {"written": self._written, "sent": self._sent, "dropped": self._dropped,
                    "rejected": self._rejected, "reconnects": self._reconnects,
                    "buffered_bytes": self._pending_bytes + self._io_left,
                    "connected": self._sock is not None, "last_error": self._last_error,
                    "socket_path": self.socket_path}

    def __repr__(self):
        return "<logagent.Client %s>" % self.socket_path


_WRITE_LOG, _WRITE = Client.write_log, Client.write  # the originals (Client.__init__: is the C writer in charge?)


def _strerror(e):
    if isinstance(e, OSError) and e.errno:
        return os.strerror(e.errno)
    return str(e) or type(e).__name__


def _connect(path):
    """A connected blocking socket, or (None, reason)."""
    try:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    except OSError as e:
        return None, "cannot create a socket: %s" % _strerror(e)
    try:
        s.settimeout(CONNECT_TIMEOUT_S)  # a full listen backlog would block connect()
        s.connect(path)
        s.settimeout(None)  # blocking sends whatever socket.setdefaulttimeout() says
    except OSError as e:
        s.close()
        if isinstance(e, socket.timeout) and not e.errno:
            e = OSError(errno.EAGAIN, "connect timed out")
        return None, "cannot connect to %s: %s" % (path, _strerror(e))
    return s, ""


# ---- process-wide: log ids, fork handlers, exit flush, default client ----

# Log ids: 128 bits from a generator of this module's own, seeded once from the OS (256 bits) and again in every
# forked child, instead of a system call per record (os.urandom was a third of write_log's time). The argument is the
# C library's (logagent.c, xoshiro256** per thread): a generator seeded from 256 random bits gives each process its
# own stream, so ids collide only as two random 128-bit values do (after 10^12 records, a chance of ~1 in 10^15).
# Its own instance, not the `random` module's: an application's random.seed(42) must not make two processes write
# the same ids. getrandbits is one C call under the GIL: safe from every thread.
_ids = random.Random(os.urandom(32))


def make_writer(client, fallback, names=None):
    """write_log in C on client (None: the process-wide client, names["default_client"]() at each call, names being
    logagent's globals()) when the extension is loaded, else fallback: the pure-Python write_log of the same
    signature, which the C one calls for every call it does not take itself (logagent/_speedups.c, writer). Like
    the Python path, the C one looks default_client and this module's _ids up at each call (mock.patch works)."""
    if _record.writer is None:
        return fallback
    return _record.writer(client, names, fallback, globals())


def _reseed_ids():
    _ids.seed(os.urandom(32))

def _before_fork():
    _proc_lock.acquire()
    clients = list(_live)
    for c in clients:
        c._lock.acquire()
    _before_fork.held = clients


def _after_fork_parent():
    for c in _before_fork.held:
        c._lock.release()
    _before_fork.held = []
    _proc_lock.release()


def _after_fork_child():
    global _proc_lock
    for c in _before_fork.held:
        sock = c._sock
        c._init_state()  # new locks: the old ones are held, and their waiters do not exist here
        if sock is not None:
            sock.close()  # the child's copy only; the parent's connection stays open
    _before_fork.held = []
    _proc_lock = threading.RLock()
    _reseed_ids()  # the child's ids must not repeat the parent's


_before_fork.held = []
os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_parent, after_in_child=_after_fork_child)


def _at_exit():
    """Gives every live client's buffered records a bounded chance to reach the agent: each client waits up
    to its exit_flush_timeout, all of them within one deadline (the longest), not one after the other."""
    with _proc_lock:
        clients = [c for c in _live if c.exit_flush_timeout]
    start = time.monotonic()
    for c in clients:
        left = c.exit_flush_timeout - (time.monotonic() - start)
        if left > 0:
            c.flush(left)


atexit.register(_at_exit)
_mp_hooked_pid = 0


def _hook_multiprocessing_exit():
    """A multiprocessing child (Pool and Celery-style workers) leaves through os._exit(), which skips atexit,
    after running multiprocessing's own exit finalizers: hook the exit flush there too, once per process.
    Called with a client lock held, the first time a client of this process starts its sender."""
    global _mp_hooked_pid
    pid = os.getpid()
    if _mp_hooked_pid == pid:
        return
    _mp_hooked_pid = pid
    mp = sys.modules.get("multiprocessing")
    util = sys.modules.get("multiprocessing.util")
    if mp is None or util is None or mp.parent_process() is None:
        return
    util.Finalize(None, _at_exit, exitpriority=0)


# ---- environment knobs of the process-wide client ----
#
# The process-wide client (default_client(), configure()) takes its options from the environment too, so a
# pre-fork server (gunicorn, uWSGI) can be tuned without code. They carry their own LOGAGENT_CLIENT_ prefix:
# logagentd reads LOGAGENT_<FLAG> (LOGAGENT_BUFFER_BYTES is the agent's ring, 64 MiB by default), and an app
# and its agent often share one environment (a compose file, a shell, an env file). LOGAGENT_SOCKET alone is
# shared on purpose: both ends must name the same socket. Empty means unset. A bad value makes the client
# impossible to create: every write_log then says why in its error_message (the agent, too, refuses to start
# on a bad value rather than run with a setting nobody asked for).

_SIZE_UNITS = {"": 1, "k": 1 << 10, "K": 1 << 10, "KiB": 1 << 10, "KB": 1 << 10, "M": 1 << 20, "MiB": 1 << 20,
               "MB": 1 << 20, "G": 1 << 30, "GiB": 1 << 30, "GB": 1 << 30}  # the agent's sizes, same words
_MS_UNITS = {"": 1, "ms": 1, "s": 1000, "m": 60000, "min": 60000, "h": 3600000}  # the agent's durations


def _split_number(text, units):
    """(digits, unit multiplier) of "64KiB"-style text, or None when it is not a number with a known unit."""
    i = 0
    while i < len(text) and "0" <= text[i] <= "9":
        i += 1
    if i == 0 or text[i:] not in units:
        return None
    return int(text[:i]), units[text[i:]]


def _env_size(name, text, lo, hi):
    got = _split_number(text, _SIZE_UNITS)
    if got is None:
        raise ValueError("logagent: invalid value %r in %s: expected a size such as 65536, 64KiB, 4MiB"
                         % (text, name))
    v = got[0] * got[1]
    if not lo <= v <= hi:
        raise ValueError("logagent: invalid value %r in %s: out of range (%d to %d bytes)" % (text, name, lo, hi))
    return v


def _env_seconds(name, text, hi_ms, forever_ok):
    """Seconds (float) from "250", "250ms", "5s", "2m"; None for "-1"/"forever" when forever_ok."""
    if forever_ok and text in ("-1", "forever"):
        return None
    got = _split_number(text, _MS_UNITS)
    if got is None:
        raise ValueError("logagent: invalid value %r in %s: expected a duration such as 0, 250, 250ms, 5s%s"
                         % (text, name, ", or -1 (wait as long as it takes)" if forever_ok else ""))
    ms = got[0] * got[1]
    if ms > hi_ms:
        raise ValueError("logagent: invalid value %r in %s: out of range (at most %d ms)" % (text, name, hi_ms))
    return ms / 1000.0


# variable -> (Client option, parser(name, text) -> value)
ENV_KNOBS = {
    "LOGAGENT_CLIENT_BUFFER_BYTES":
        ("buffer_bytes", lambda n, t: _env_size(n, t, MIN_BUFFER_BYTES, 1 << 30)),
    "LOGAGENT_CLIENT_BLOCK_TIMEOUT_MS":
        ("block_timeout", lambda n, t: _env_seconds(n, t, 3600000, True)),
    "LOGAGENT_CLIENT_MAX_RECORD_BYTES":
        ("max_record_bytes", lambda n, t: _env_size(n, t, 64, 64 << 20)),
    "LOGAGENT_CLIENT_EXIT_FLUSH_TIMEOUT_MS":
        ("exit_flush_timeout", lambda n, t: _env_seconds(n, t, 3600000, False)),
}


def env_options(given=(), environ=None):
    """The Client options the LOGAGENT_CLIENT_* environment variables set, leaving out those in `given` (an
    explicit argument wins). Raises ValueError naming the variable for a bad value. An unknown
    LOGAGENT_CLIENT_* variable (a typo) is ignored with a RuntimeWarning."""
    env = os.environ if environ is None else environ
    out = {}
    for name in sorted(k for k in env if k.startswith("LOGAGENT_CLIENT_")):
        text = env[name].strip()
        knob = ENV_KNOBS.get(name)
        if knob is None:
            warnings.warn("logagent: unknown environment variable %s ignored (known: %s)"
                          % (name, ", ".join(sorted(ENV_KNOBS))), RuntimeWarning, stacklevel=2)
            continue
        option, parse = knob
        if text and option not in given:
            out[option] = parse(name, text)
    return out


def default_client():
    """The process-wide client, created on first use from $LOGAGENT_SOCKET and the LOGAGENT_CLIENT_* variables
    (read then, once per client made). Raises ValueError for a bad path or a bad variable (no client is made,
    so the next call tries again)."""
    global _default
    c = _default
    if c is not None and not c._closed:
        return c
    with _proc_lock:
        if _default is None or _default._closed:
            _default = Client(**env_options())
        return _default


def configure(**options):
    """Replaces the process-wide client by one made with these Client options, the LOGAGENT_CLIENT_* variables
    filling in those not given (the previous client is closed, flushing up to 1 s). Returns the new client.
    Raises ValueError for a bad option or variable (the previous client stays)."""
    global _default
    new = Client(**dict(env_options(options), **options))
    with _proc_lock:
        old, _default = _default, new
    if old is not None:
        old.close()
    return new


def close_default(timeout=1.0):
    """Closes the process-wide client (flushing up to timeout); the next write_log makes a new one."""
    global _default
    with _proc_lock:
        old, _default = _default, None
    return old.close(timeout) if old is not None else True
