"""harness.py — real processes for the integration tests: logagent-sink, logagentd and clients, in a temp folder.

Every wait is on a condition with a timeout (wait_for); nothing sleeps blindly. Ports come from the sink itself
(--listen 127.0.0.1:0 --port-file), sockets live in a fresh temp folder, so parallel runs never collide.
Under sanitizer builds (LOGAGENT_SANITIZER=address|thread) timeouts stretch.
"""
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

BIN = os.environ.get("LOGAGENT_BIN_DIR", os.path.join(os.path.dirname(__file__), "..", "..", "build"))
SAN = os.environ.get("LOGAGENT_SANITIZER", "")
SLOW = {"address": 3.0, "thread": 6.0}.get(SAN, 1.0)


_live = []  # everything started by the current test, killed when it ends
_watched = []  # sinks and agents that must not die on their own while a test waits
_reserved = []  # TCP ports of the current test's stopped sinks and dead targets (see reserve_port)


def reserve_port(port=0):
    """Keeps 127.0.0.1:port (0: a free one) for the current test until it ends: a bound, never listening socket
    with SO_REUSEADDR. Connections to it are refused (a service that is down), the kernel gives the port to no
    other bind(0) — another test running at the same time cannot start its sink there and receive this test's
    records — and the test's own sink can still start on it (gRPC binds with SO_REUSEADDR). Returns the port, or
    None when it could not be bound (something else holds it)."""
    r = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    r.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        r.bind(("127.0.0.1", port))
    except OSError:
        r.close()
        return None
    _reserved.append(r)
    return r.getsockname()[1]


def check_watched():
    for w in list(_watched):
        if w.proc.poll() is not None:
            _watched.remove(w)
            raise AssertionError("%s exited unexpectedly with %s:\n%s" % (type(w).__name__, w.proc.returncode,
                                                                          w.logtext()[-4000:]))


def spawn(cmd, **kw):
    """Popen that the harness kills at the end of the test whatever happens."""
    p = subprocess.Popen(cmd, **kw)
    _live.append(p)
    return p


def scaled(seconds):
    return seconds * SLOW


def wait_for(cond, timeout, what):
    """Polls cond() until it returns a truthy value (returned) or timeout (scaled) passes (AssertionError)."""
    deadline = time.monotonic() + scaled(timeout)
    delay = 0.005
    last = None
    while True:
        check_watched()
        last = cond()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.1fs waiting for: %s" % (scaled(timeout), what))
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout=10):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.unix_path)


def http_get(path, url, method="GET"):
    c = UnixHTTPConnection(path)
    try:
        c.request(method, url)
        r = c.getresponse()
        return r.status, r.read().decode()
    finally:
        c.close()


_tempdirs = []  # the current test's TempDirs: removed when it passes, kept (and named) when it fails


class TempDir:
    def __init__(self, name):
        self.path = tempfile.mkdtemp(prefix="la-%s-" % name)
        _tempdirs.append(self.path)

    def file(self, name):
        return os.path.join(self.path, name)


class Sink:
    """logagent-sink on a free port, JSON lines into a file."""

    def __init__(self, tmp, *args, port=None, name="sink"):
        self.tmp = tmp
        self.out = tmp.file(name + ".jsonl")
        self.port_file = tmp.file(name + ".port")
        self.err_path = tmp.file(name + ".stderr")
        self.args = list(args)
        self.proc = None
        self.port = port
        self.summary = None

    def start(self):
        if os.path.exists(self.port_file):
            os.unlink(self.port_file)
        listen = "127.0.0.1:%d" % (self.port or 0)
        self.err = open(self.err_path, "ab")
        self.proc = spawn([os.path.join(BIN, "logagent-sink"), "--listen", listen, "--port-file",
                                      self.port_file, "--out", self.out] + self.args,
                                     stdout=subprocess.DEVNULL, stderr=self.err)
        port = wait_for(lambda: self._read_port(), 20, "sink port file")
        self.port = port
        _watched.append(self)
        return self

    def _read_port(self):
        if self.proc.poll() is not None:
            raise AssertionError("sink exited early with %s: %s" % (self.proc.returncode, self.stderr()))
        try:
            with open(self.port_file) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return None

    @property
    def target(self):
        return "127.0.0.1:%d" % self.port

    def stderr(self):
        with open(self.err_path, "rb") as f:
            return f.read().decode(errors="replace")

    logtext = stderr

    def entries(self):
        """Every complete JSON line. A line torn by a killed sink (the restarted sink ends it) is skipped: the
        agent never got an answer for that call, so it sends those entries again."""
        if not os.path.exists(self.out):
            return []
        out = []
        with open(self.out) as f:
            for line in f:
                try:
                    out.append(json.loads(line))
                except ValueError:
                    self.torn_lines = getattr(self, "torn_lines", 0) + 1
        return out

    def count(self):
        if not os.path.exists(self.out):
            return 0
        with open(self.out, "rb") as f:
            return sum(1 for line in f if line.endswith(b"\n"))

    def wait_count(self, n, timeout=60):
        return wait_for(lambda: self.count() >= n, timeout, "%d entries at the sink (have %d)" % (n, self.count()))

    def stop(self, sig=signal.SIGTERM):
        """Stops the sink and returns its summary dict."""
        if self in _watched:
            _watched.remove(self)
        self.proc.send_signal(sig)
        rc = self.proc.wait(timeout=scaled(30))
        reserve_port(self.port)  # a restart on the same port finds it free of other tests' sinks
        self.err.close()
        assert rc == 0, "sink exit %s: %s" % (rc, self.stderr())
        lines = [l for l in self.stderr().splitlines() if l.startswith("{")]
        assert lines, "no summary line from the sink: %s" % self.stderr()
        self.summary = json.loads(lines[-1])
        return self.summary

    def kill(self):
        if self in _watched:
            _watched.remove(self)
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
            reserve_port(self.port)


class Agent:
    """logagentd with its sockets in the temp folder."""

    def __init__(self, tmp, upstream, *args, name="agent", env=None):
        self.tmp = tmp
        # no config file unless a test asks for one: /etc/logagent/logagentd.conf must not change a test
        self.env = dict(os.environ, LOGAGENT_CONFIG="")
        self.env.update(env or {})
        self.socket = tmp.file(name + ".sock")
        self.stats_socket = tmp.file(name + "-stats.sock")
        self.log_path = tmp.file(name + ".log")
        self.upstream = upstream
        self.args = list(args)
        self.proc = None
        self.preexec = None  # a function run in the child before exec (e.g. nofile_limit(128))

    def cmd(self):
        return [os.path.join(BIN, "logagentd"), "--socket", self.socket, "--stats-socket", self.stats_socket,
                "--upstream", self.upstream] + self.args

    def start(self):
        self.log = open(self.log_path, "ab")
        self.proc = spawn(self.cmd(), stdout=self.log, stderr=self.log, env=self.env, preexec_fn=self.preexec)
        wait_for(self._ready, 20, "agent ready")
        _watched.append(self)
        return self

    def _ready(self):
        if self.proc.poll() is not None:
            raise AssertionError("agent exited early with %s: %s" % (self.proc.returncode, self.logtext()))
        try:
            return self.stats() is not None
        except OSError:
            return False

    def logtext(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def stats(self):
        status, body = http_get(self.stats_socket, "/stats")
        assert status == 200, (status, body)
        return json.loads(body)

    def wait_flushed(self, n, timeout=60):
        """Waits until the agent has flushed n records; returns that stats document."""
        def done():
            st = self.stats()
            return st if st["records"]["flushed"] >= n else None
        return wait_for(done, timeout, "agent flushed %d records" % n)

    def stop(self, sig=signal.SIGTERM, timeout=60):
        if self in _watched:
            _watched.remove(self)
        self.proc.send_signal(sig)
        rc = self.proc.wait(timeout=scaled(timeout))
        self.log.close()
        return rc

    def kill(self):
        if self in _watched:
            _watched.remove(self)
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def dead_target(tmp):
    """A port nobody listens on, kept for this test (reserve_port), as (target, port): a log service that is down
    and can be started later on the same port."""
    port = reserve_port()
    return "127.0.0.1:%d" % port, port


def accounting_holds(st):
    """docs/reliability.md's identity: received = flushed + in_ring + batching + in_flight + retry_wait + spooled + dropped."""
    r = st["records"]
    held = r["in_ring"] + r["batching"] + r["in_flight"] + r["retry_wait"] + r["spooled"]
    return r["received"] + r["replayed"] == r["flushed"] + held + r["dead_letter"] + sum(r["dropped"].values())


def nofile_limit(n):
    """A preexec_fn that sets RLIMIT_NOFILE's soft and hard limits to n (the agent raises its soft limit to the hard
    one at start-up, so both must be lowered to hold it there)."""
    import resource

    def apply():
        resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))
    return apply


def cpu_seconds(pid):
    """User + system CPU time a live process has used, in seconds (/proc/PID/stat fields 14 and 15)."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_bytes(pid):
    """Resident set size of a live process (/proc/PID/status VmRSS), in bytes."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def mount_tmpfs(path, size):
    """Mounts a tmpfs of `size` (e.g. "4m") on path (created); needs root. Returns False when the mount is refused
    (not root, no CAP_SYS_ADMIN), so a test can skip."""
    os.makedirs(path, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%s" % size, "tmpfs", path],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return r.returncode == 0


def umount(path):
    subprocess.run(["umount", "-l", path], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


class StatsPoller:
    """Polls an agent's /stats in a thread every `period` seconds while a fault lasts. Each poll must answer 200
    within `deadline` seconds (scaled) with a document for which accounting_holds(); stop() returns the problems
    seen (empty when every poll passed), the number of polls and the slowest answer."""

    def __init__(self, agent, period=0.25, deadline=2.0):
        import threading
        self.agent, self.period, self.deadline = agent, period, scaled(deadline)
        self.problems, self.polls, self.slowest, self.last = [], 0, 0.0, None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            t0 = time.monotonic()
            try:
                c = UnixHTTPConnection(self.agent.stats_socket, timeout=self.deadline)
                try:
                    c.request("GET", "/stats")
                    r = c.getresponse()
                    status, body = r.status, r.read()
                finally:
                    c.close()
                took = time.monotonic() - t0
                self.slowest = max(self.slowest, took)
                st = json.loads(body)
                if status != 200:
                    self.problems.append("/stats answered %d" % status)
                elif not accounting_holds(st):
                    self.problems.append("accounting broken: %s" % st["records"])
                self.last = st
            except (OSError, ValueError) as e:
                self.problems.append("/stats did not answer within %.1fs: %r" % (self.deadline, e))
            self.polls += 1
            self._stop.wait(self.period)

    def stop(self):
        self._stop.set()
        self._thread.join()
        return self.problems, self.polls, self.slowest


class TcpProxy:
    """A TCP forwarder on a free 127.0.0.1 port to `target` ("HOST:PORT"), counting the bytes each way (to_target:
    what the agent put on the wire). Threads, real sockets; stopped at the end of the test by close()."""

    def __init__(self, target):
        import threading
        host, port = target.rsplit(":", 1)
        self.dest = (host, int(port))
        self.to_target = self.from_target = 0
        self._lock = threading.Lock()
        self._socks = []
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(16)
        self.port = self.lsock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def target(self):
        return "127.0.0.1:%d" % self.port

    def _accept(self):
        import threading
        while True:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            try:
                d = socket.create_connection(self.dest, timeout=10)
            except OSError:
                c.close()
                continue
            d.settimeout(None)
            with self._lock:
                self._socks += [c, d]
            threading.Thread(target=self._pump, args=(c, d, "to_target"), daemon=True).start()
            threading.Thread(target=self._pump, args=(d, c, "from_target"), daemon=True).start()

    def _pump(self, src, dst, counter):
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            if not data:
                break
            with self._lock:
                setattr(self, counter, getattr(self, counter) + len(data))
            try:
                dst.sendall(data)
            except OSError:
                break
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self):
        try:
            self.lsock.shutdown(socket.SHUT_RDWR)  # wakes the accept thread
        except OSError:
            pass
        self.lsock.close()
        with self._lock:
            for s in self._socks:
                s.close()


INTEROP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "interop")


def node_peers():
    """The real Node.js peers of tests/interop (the OpenTelemetry JS SDK, @grpc/grpc-js, ...), installed by `npm ci`
    from the lockfile there into a folder shared by the tests of one machine (keyed by the lockfile's hash, under a
    file lock). Returns (NODE_PATH, None), or (None, why) when node, npm or the registry is missing: the caller then
    prints "skip" — except under CI=true, where a missing prerequisite fails the test instead (CI installs them)."""
    import fcntl
    import hashlib
    import shutil
    why = None
    if not shutil.which("node") or not shutil.which("npm"):
        why = "node or npm not installed (packaging/install-deps.sh installs them)"
    else:
        with open(os.path.join(INTEROP, "package-lock.json"), "rb") as f:
            key = hashlib.sha256(f.read()).hexdigest()[:16]
        folder = os.path.join(tempfile.gettempdir(), "la-npm-" + key)
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, ".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not os.path.exists(os.path.join(folder, ".done")):
                for name in ("package.json", "package-lock.json"):
                    shutil.copy(os.path.join(INTEROP, name), folder)
                try:
                    p = subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error",
                                        "--fetch-retries=2", "--fetch-timeout=60000"], cwd=folder,
                                       capture_output=True, text=True, timeout=300)
                    if p.returncode != 0:
                        why = "npm ci failed (registry unreachable?): %s" % (p.stderr.strip().splitlines() or ["?"])[0]
                    else:
                        open(os.path.join(folder, ".done"), "w").close()
                except subprocess.TimeoutExpired:
                    why = "npm ci took more than 300 s (registry unreachable?)"
        if not why:
            return os.path.join(folder, "node_modules"), None
    if os.environ.get("CI") == "true":
        raise AssertionError("interop prerequisite missing under CI: %s" % why)
    return None, why


def send_records(sock_path, records, chunk=None):
    """Writes msgpack records (dicts) or raw bytes on one new connection, then closes it."""
    import msgpack
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(sock_path)
    data = b"".join(r if isinstance(r, bytes) else msgpack.packb(r) for r in records)
    if chunk:
        for i in range(0, len(data), chunk):
            s.sendall(data[i:i + chunk])
    else:
        s.sendall(data)
    s.close()


def recv_ack(s):
    """Reads one msgpack object (a Forward ack) from socket s; fails if the agent closes first."""
    import msgpack
    up = msgpack.Unpacker(raw=False)
    while True:
        data = s.recv(4096)
        assert data, "agent closed the connection before acking"
        up.feed(data)
        for obj in up:
            return obj


def run(tests):
    """Runs test functions in order; prints a line per test; exits non-zero on the first failure."""
    for t in tests:
        start = time.monotonic()
        try:
            t()
        except Exception:
            import traceback
            traceback.print_exc()
            print("FAIL %s (its files are kept: %s)" % (t.__name__, " ".join(_tempdirs)))
            sys.exit(1)
        finally:
            del _watched[:]
            while _reserved:
                _reserved.pop().close()
            while _live:
                p = _live.pop()
                if p.poll() is None:
                    p.kill()
                    p.wait()
        import shutil
        while _tempdirs:  # a passing test leaves nothing behind (sinks' outputs can be hundreds of MB)
            shutil.rmtree(_tempdirs.pop(), ignore_errors=True)
        print("ok   %s (%.1fs)" % (t.__name__, time.monotonic() - start))
        sys.stdout.flush()
