"""_client.py — the Python client's engine: a bounded in-process buffer and a sender thread writing it to
logagentd's Unix socket, plus the process-wide state (live clients, fork handlers, atexit, default client and
the LOGAGENT_CLIENT_* environment variables it is made from).

DESIGN (the same as liblogagent's, client-shim/logagent.c)
A writer encodes its record outside any lock (_record.py; with logagent._speedups loaded, Client.write_log and
logagent.write_log are C functions that bind, pack and enqueue themselves: make_writer), then appends the bytes to
the client's buffer, `_buf`: _speedups.Buffer (C) when the extension is loaded, else _PyBuffer (its Python twin,
the reference; the same methods and answers). The sender thread takes whole records off it (up to half the buffer's
bound: send_batch()) as one bytes object and writes it to the socket outside the lock, so writers never wait on
I/O. Writers
wake the sender only when it is idle; with little data pending it lingers up to 1 ms so that a slow trickle of
records still goes out in few large sends (a flush or a writer out of room cuts that short).

Locking: _lock (a threading.Lock) orders the sender's state, the waiters, the socket and the counters that only
change under it (dropped, rejected, reconnects). With _PyBuffer every buffer call is made under _lock. With the C
buffer, a record that fits while the sender runs goes in through the buffer's own enqueue (this instance's
_enqueue) under the GIL alone: each Buffer method runs whole without releasing it, so it is atomic with respect to
every Python thread, and the sender's "nothing pending: I wait" is one call (idle(), linger()) that a writer cannot
slip between. Everything else (the first record, a full buffer, a closed client) takes the slow path, Client._enqueue,
under _lock, exactly as the pure client does.

Invariants:
  - buf.pending_bytes + buf.io_left <= cap: the bound on buffered bytes. A record that does not fit is dropped and
    counted, or its writer waits up to block_timeout seconds for room (default 0: drop at once).
  - buf.enq_bytes counts bytes ever appended, buf.done_bytes bytes written to the socket. When a connection breaks
    mid-record, the sender rewinds to the start of the record it cut (and done_bytes with it): the agent
    discards a partial record, so that record is sent again whole on the next connection. A record that was
    fully written is never sent again (records the kernel took before the agent died may be lost; log_id lets
    a service drop any duplicate).
  - flush() waits for done_bytes to reach enq_bytes as it was at the call.
  - _sock is set and closed under _lock, so close() can shutdown() it to unblock a send to an agent that
    stopped reading, and a forked child sees a consistent value to close.

fork(): os.register_at_fork handlers take the process lock and every live client's lock before the fork, so
the child copies consistent state (the C buffer is consistent at any moment another thread can run: its methods
hold the GIL from start to end). The child then gives each client new locks, an empty buffer (reset in place),
zeroed counters and no socket (its copy of the parent's connection is closed) and no sender thread: its next write
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
SEND_BATCH_MIN = 256 << 10  # bytes the sender takes off the buffer at once: send_batch()
SEND_BATCH_MAX = 4 << 20
LINGER_BYTES = 64 << 10
LINGER_S = 0.001
BACKOFF_MIN_S = 0.01
BACKOFF_MAX_S = 1.0
CONNECT_TIMEOUT_S = 1.0
_SUN_PATH_MAX = 107         # sizeof(sockaddr_un.sun_path) - 1 on Linux
_SEND_FLAGS = getattr(socket, "MSG_NOSIGNAL", 0)

def send_batch(cap):
    """Bytes the sender takes off a buffer bounded at cap in one go: half the bound (the writers keep the other
    half while it is written), within [SEND_BATCH_MIN, SEND_BATCH_MAX]. Every take is one trip of the sender
    through the GIL, which it shares with the writers: with 50 busy writer threads CPython hands it the GIL only
    after its switch interval (5 ms), so 256 KiB takes starved it and filled the buffer (writers then waited for
    room: 55,000 context switches for 300,000 records); 2 MiB takes need a tenth of the trips (issue #19,
    docs/python.md). The socket is blocking, so one send() writes the whole take."""
    return min(max(cap // 2, SEND_BATCH_MIN), SEND_BATCH_MAX)


_BUSY, _IDLE, _LINGER, _WAKING = 0, 1, 2, 3  # the sender's state (Buffer.state); WAKING: a writer is waking it
_APPENDED, _WAKE, _FULL = 0, 1, 2             # Buffer.append's answers

# Process-wide state: the live clients (for the fork and exit handlers) and the default client. _proc_lock
# guards both; it is an RLock so that the default client can be created while it is held.
_proc_lock = threading.RLock()
_live = weakref.WeakSet()
_default = None


def _fail(message):
    return {"success": False, "log_id": "", "error_message": message}


class _PyBuffer:
    """A Client's queued records and the counters its writers change: the pure-Python twin of _speedups.Buffer
    (_speedups.c says what each method promises), used when the C part is not loaded. Here every method is
    called with the Client's lock held; the C one needs only the GIL (each of its methods runs whole under it),
    so that a C write_log appends without the Python lock (enqueue, the writers' path, is the C one's only)."""

    def __init__(self, owner, slow, cap, linger_bytes):
        self.cap = cap
        self.linger_bytes = linger_bytes
        self.reset()

    def reset(self):
        self.clear()
        self.enq_bytes = self.done_bytes = self.written = self.sent = 0
        self.state = _BUSY
        self.open = False

    def clear(self):
        self._pending = collections.deque()
        self._ends = []
        self._rec = 0
        self.pending_bytes = self.io_left = self.io_off = 0

    @property
    def buffered(self):
        return self.pending_bytes + self.io_left

    def append(self, data):
        n = len(data)
        if self.pending_bytes + self.io_left + n > self.cap:
            return _FULL
        self._pending.append(data)
        self.pending_bytes += n
        self.enq_bytes += n
        self.written += 1
        if self.state == _IDLE or (self.state == _LINGER and self.pending_bytes >= self.linger_bytes):
            self.state = _WAKING
            return _WAKE
        return _APPENDED

    def idle(self):
        if self.pending_bytes:
            return False
        self.state = _IDLE
        return True

    def linger(self):
        if self.pending_bytes >= self.linger_bytes:
            return False
        self.state = _LINGER
        return True

    def take(self, limit):
        parts, ends, total = [], [], 0
        p = self._pending
        while p and (not parts or total < limit):
            r = p.popleft()
            parts.append(r)
            total += len(r)
            ends.append(total)
        self.pending_bytes -= total
        self.io_left = total
        self.io_off = self._rec = 0
        self._ends = ends
        return b"".join(parts)

    def advance(self, n):
        if n < 0 or self.io_off + n > self.io_left + self.io_off:  # (io_left + io_off: the batch's size)
            raise ValueError("logagent Buffer.advance: beyond the batch in flight")
        self.io_off += n
        self.io_left -= n
        self.done_bytes += n
        ends, rec = self._ends, self._rec
        while rec < len(ends) and ends[rec] <= self.io_off:
            rec += 1
        done, self._rec = rec - self._rec, rec
        self.sent += done
        return done

    def rewind(self):
        start = self._ends[self._rec - 1] if self._rec else 0
        self.io_left += self.io_off - start
        self.done_bytes -= self.io_off - start
        self.io_off = start


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
        self._send_batch = send_batch(self.cap)
        # The queued records: in C when the extension is loaded (_speedups.Buffer), else _PyBuffer; the same
        # methods and answers. Its enqueue is this instance's _enqueue unless the class overrides _enqueue: a record
        # that fits then goes in without this client's lock (the slow path, Client._enqueue, takes it).
        cls = type(self)
        self._buf = _Buffer(self, _ENQUEUE, self.cap, min(self.cap // 4, LINGER_BYTES))
        if _record.Buffer is not None and cls._enqueue is _ENQUEUE:
            self._enqueue = self._buf.enqueue
        self._init_state()
        with _proc_lock:
            _live.add(self)
        # The C write_log as this instance's attribute, when the extension is loaded and neither write_log nor write
        # is overridden (a subclass's own, or a mock patched onto the class, stays in charge). Compared with the
        # originals taken once below the class, not Client.write_log as it is now (a mock.patch of the class).
        # Pure mode sets no attribute (no Client <-> bound method cycle: an unused Client dies without the gc).
        if _record.writer is not None and cls.write_log is _WRITE_LOG and cls.write is _WRITE:
            self.write_log = make_writer(self, _WRITE_LOG.__get__(self))

    def _init_state(self):
        """Fresh locks, empty buffer, zero counters, no socket, no thread (also the child's state after fork: the
        buffer is reset in place, since the C write_log may hold its enqueue)."""
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)   # sender: records arrived, or stop
        self._room = threading.Condition(self._lock)   # writers: room freed
        self._done = threading.Condition(self._lock)   # flushers: bytes written
        self._buf.reset()  # nothing queued, written, sent; not open: the next write starts the sender
        self._sock = None
        self._thread = None
        self._closed = False
        self._stopping = False
        self._room_waiters = 0
        self._done_waiters = 0
        self._connects = 0
        self._last_error = ""
        self._dropped = self._reconnects = self._rejected = 0

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
        """Appends one encoded record, waiting for room as block_timeout says. Returns "" or an error message.
        With the C buffer, this is its slow path: the buffer's own enqueue (this instance's _enqueue) appends a
        record that fits while the sender runs, without this lock, and calls this for everything else."""
        deadline = None
        buf = self._buf
        with self._lock:
            if self._closed:
                self._rejected += 1
                return "logagent client closed: record dropped"
            if self._thread is None:
                err = self._start_locked()
                if err:
                    return err
            while True:
                was = buf.state
                got = buf.append(data)
                if got != _FULL:
                    break
                if self._stopping or self.block_timeout == 0:
                    return self._full_locked()
                if buf.state == _LINGER:
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
            if got == _WAKE:  # the sender was idle, or lingering and now has enough
                try:
                    self._work.notify()
                except BaseException:  # (a KeyboardInterrupt): not left WAKING, the next writer wakes it (as in C)
                    if buf.state == _WAKING:
                        buf.state = was
                    raise
        return ""

    def _wake(self):
        """Wakes the sender for the C buffer's enqueue, which found it idle (once per idle spell, not per record)."""
        with self._lock:
            self._work.notify()

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
        self._buf.open = True  # from now on a record that fits goes in without this lock
        return ""

    # ---- the sender thread ----

    def _run(self):
        io = b""        # the batch in flight; buf.io_off: bytes of it written (rewound to a record start on a
        buf = self._buf  # broken connection)
        backoff = 0.0
        progressed = False  # a record was completed on the current connection
        lingered = False
        lock = self._lock
        lock.acquire()
        try:
            while not self._stopping:
                if buf.io_off == len(io):
                    # idle() and linger() check and set the state in one step: a C writer appending in between
                    # would otherwise see BUSY and not wake a sender about to wait
                    if buf.idle():
                        self._work.wait()
                        buf.state = _BUSY
                        continue
                    if not lingered and not self._done_waiters and not self._room_waiters and buf.linger():
                        self._work.wait(LINGER_S)
                        buf.state = _BUSY
                        lingered = True
                        continue
                    lingered = False
                    io = buf.take(self._send_batch)
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
                off = buf.io_off
                lock.release()
                try:
                    n = sock.send(memoryview(io)[off:], _SEND_FLAGS)
                    err = None
                except OSError as e:
                    n, err = 0, e
                finally:
                    lock.acquire()
                if err is None and n > 0:
                    if buf.advance(n):  # records completed
                        progressed = True
                    if progressed:
                        backoff = 0.0
                    self._wake_waiters_locked()
                    continue
                # EPIPE, ECONNRESET, ...: send the cut record again whole on a new connection. A connection that
                # broke before completing any record backs off, so an agent that keeps closing on us cannot make
                # this a busy loop.
                buf.rewind()
                self._last_error = "connection to %s lost: %s" % (self.socket_path, _strerror(err))
                self._close_sock_locked()
                if not progressed:
                    backoff = min(max(backoff * 2, BACKOFF_MIN_S), BACKOFF_MAX_S)
        finally:
            self._close_sock_locked()
            self._wake_waiters_locked()
            lock.release()

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
            buf = self._buf
            target = buf.enq_bytes
            while buf.done_bytes < target:
                if self._stopping or self._thread is None:
                    return False
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._done_waiters += 1
                if buf.state != _BUSY:  # lingering; or asleep on records whose writer's wake was interrupted
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
                flushed = self._buf.done_bytes >= self._buf.enq_bytes
        with self._lock:
            if self._closed:
                return flushed
            self._buf.open = False  # first: a C writer appends no more, and takes the slow path ("closed")
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
            self._dropped += self._buf.written - self._buf.sent  # queued but never fully written
            self._buf.clear()
        with _proc_lock:
            _live.discard(self)
        return flushed

    def get_stats(self):
        """Counters: written (records queued), sent (fully written to the socket), dropped (buffer full, or
        left unsent at close), rejected (refused by write_log: bad argument, too large, client closed),
        reconnects (connects after the first), buffered_bytes (waiting now), connected, last_error (why the
        agent cannot be reached)."""
        with self._lock:  # (the C buffer's counters change without it, but each read is whole: written >= sent)
            buf = self._buf
            return {"written": buf.written, "sent": buf.sent, "dropped": self._dropped,
                    "rejected": self._rejected, "reconnects": self._reconnects,
                    "buffered_bytes": buf.buffered,
                    "connected": self._sock is not None, "last_error": self._last_error,
                    "socket_path": self.socket_path}

    def __repr__(self):
        return "<logagent.Client %s>" % self.socket_path


# the originals (Client.__init__: is the C writer, or the C buffer's enqueue, in charge?)
_WRITE_LOG, _WRITE, _ENQUEUE = Client.write_log, Client.write, Client._enqueue
_Buffer = _PyBuffer if _record.Buffer is None else _record.Buffer


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
