"""test_units.py — the systemd units in packaging/systemd.

`systemd-analyze verify` (works on files, without a running systemd) must print nothing: an unknown or
invalid directive is only a warning there, so any output fails. ExecStart is pointed at the build's
logagentd in a temp copy, and MANPATH at our man pages so Documentation=man: links are checked too. Then the
units are checked against the agent: socket paths and modes equal logagentd's defaults, fd names are the ones
it looks for (ingest, stats), the stop timeout outlasts the drain, the runtime folder survives a stop while
the socket units hold the sockets in it."""
import os
import re
import shutil
import tempfile

from pkgtest import BIN, MAN, PACKAGING, help_options, run, sh, skip

UNITS = os.path.join(PACKAGING, "systemd")
AGENT = os.path.join(BIN, "logagentd")
NAMES = ["logagentd.service", "logagentd.socket", "logagentd-stats.socket"]


def unit(name):
    """A unit file as {section: {key: [values]}} (keys repeat in units)."""
    sections = {}
    current = None
    with open(os.path.join(UNITS, name), encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line or line[0] in "#;":
                continue
            if line.startswith("["):
                current = sections.setdefault(line.strip("[]"), {})
                continue
            k, _, v = line.partition("=")
            current.setdefault(k, []).append(v)
    return sections


def one(u, section, key):
    vals = u[section].get(key)
    assert vals and len(vals) == 1, "%s=%s: expected one value" % (key, vals)
    return vals[0]


def ms(text):
    """A systemd or logagentd duration ('40s', '10000', '2m', '250ms') in milliseconds."""
    m = re.fullmatch(r"(\d+)(ms|s|m|min|h)?", text.strip())
    assert m, "not a duration: %r" % text
    return int(m.group(1)) * {None: 1, "ms": 1, "s": 1000, "m": 60000, "min": 60000, "h": 3600000}[m.group(2)]


def test_systemd_analyze_verify_is_silent():
    if not shutil.which("systemd-analyze"):
        skip("systemd-analyze is not installed (Debian package systemd)")
    with tempfile.TemporaryDirectory(prefix="la-units-") as d:
        for n in NAMES:
            with open(os.path.join(UNITS, n), encoding="utf-8") as f:
                text = f.read()
            with open(os.path.join(d, n), "w", encoding="utf-8") as f:
                f.write(text.replace("ExecStart=/usr/sbin/logagentd", "ExecStart=" + AGENT))
        mandir = os.path.join(d, "man")
        for page in os.listdir(MAN):
            section = page.rsplit(".", 1)[1]
            os.makedirs(os.path.join(mandir, "man" + section), exist_ok=True)
            shutil.copy(os.path.join(MAN, page), os.path.join(mandir, "man" + section, page))
        env = dict(os.environ, MANPATH=mandir + ":/usr/share/man", SYSTEMD_LOG_LEVEL="warning")
        p = sh(["systemd-analyze", "verify"] + [os.path.join(d, n) for n in NAMES], check=False, env=env, cwd=d)
        assert p.returncode == 0 and p.stdout == "" and p.stderr == "", \
            "systemd-analyze verify (exit %d):\n%s%s" % (p.returncode, p.stdout, p.stderr)


def test_service_matches_the_agent():
    opts = help_options(AGENT)
    s = unit("logagentd.service")
    svc = s["Service"]
    wants = " ".join(s["Unit"]["Wants"]).split()
    assert "logagentd.socket" in wants and "logagentd-stats.socket" in wants, "the service brings its sockets"
    assert one(s, "Service", "Type") == "notify" and one(s, "Service", "NotifyAccess") == "main"
    assert one(s, "Service", "ExecStart").split()[0] == "/usr/sbin/logagentd"  # agent/CMakeLists.txt: sbin
    assert "kill -HUP $MAINPID" in one(s, "Service", "ExecReload")
    assert one(s, "Service", "User") == "logagent" and "DynamicUser" not in svc
    assert one(s, "Service", "RuntimeDirectory") == "logagent"
    assert one(s, "Service", "RuntimeDirectoryPreserve") == "yes", "the socket units keep listening in /run/logagent"
    assert one(s, "Service", "StateDirectory") == "logagent"
    stop, drain = ms(one(s, "Service", "TimeoutStopSec")), ms(opts["drain-timeout-ms"])
    assert stop >= drain + 10000, "TimeoutStopSec (%d ms) must outlast the drain (%d ms) with room" % (stop, drain)
    watchdog = ms(one(s, "Service", "WatchdogSec"))
    assert watchdog >= 10000, "WatchdogSec %d ms" % watchdog
    for key in ["ProtectSystem", "ProtectHome", "PrivateTmp", "NoNewPrivileges", "ProtectKernelTunables",
                "ProtectKernelModules", "ProtectKernelLogs", "LockPersonality", "MemoryDenyWriteExecute",
                "SystemCallArchitectures", "RestrictAddressFamilies"]:
        assert key in svc, "hardening: %s missing" % key
    assert one(s, "Service", "ProtectSystem") == "strict"
    assert set(one(s, "Service", "RestrictAddressFamilies").split()) == {"AF_UNIX", "AF_INET", "AF_INET6"}


def test_sockets_match_the_agent():
    opts = help_options(AGENT)
    want = {"logagentd.socket": ("ingest", opts["socket"], "0660"),
            "logagentd-stats.socket": ("stats", opts["stats-socket"], opts["stats-socket-mode"])}
    for name, (fdname, path, mode) in want.items():
        u = unit(name)
        assert one(u, "Socket", "ListenStream") == path, "%s listens on %s, the agent's default is %s" % (
            name, one(u, "Socket", "ListenStream"), path)
        assert one(u, "Socket", "FileDescriptorName") == fdname
        assert one(u, "Socket", "SocketMode") == mode
        assert one(u, "Socket", "Service") == "logagentd.service"
        assert one(u, "Socket", "SocketUser") == "logagent" and one(u, "Socket", "SocketGroup") == "logagent"
        assert "sockets.target" in one(u, "Install", "WantedBy")
    ingest = unit("logagentd.socket")
    assert "logagentd-stats.socket" in ingest["Unit"]["Wants"][0], "starting the ingest socket starts the stats one"


if __name__ == "__main__":
    run([test_systemd_analyze_verify_is_silent, test_service_matches_the_agent, test_sockets_match_the_agent])
