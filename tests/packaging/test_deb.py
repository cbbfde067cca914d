"""test_deb.py — the .deb, end to end: build it with CPack, read it, install it with dpkg, run the installed
programs, purge it.

Configures its own build dir (CMAKE_INSTALL_PREFIX=/usr: the pkg-config file and the library folder depend
on it, so the release build cannot be reused), builds only what the package installs, runs `cpack -G DEB`,
checks `dpkg-deb -c` (exactly the expected files, nothing from tests/) and `dpkg-deb -I` (fields, conffiles,
maintainer scripts), installs it with `dpkg -i` (its Depends are all installed on a machine set up with
packaging/install-deps.sh: nothing is fetched), runs /usr/sbin/logagentd --version and --check-config,
logagentctl --help, compiles logagent(3)'s example against the installed library, verifies the installed
units, imports the installed Python module, checks the `logagent` user, then `dpkg --purge` and checks everything is gone.

Release suite only: skipped (exit 77, with the reason) under sanitizers, when not root, or when a
`logagent` package this test did not install is present. Other tests run in parallel: the installed
/etc/logagent/logagentd.conf sets nothing, and the one line this test uncomments sets a default value."""
import glob
import os
import pwd
import grp
import re
import stat
import tempfile

from pkgtest import BIN, MAN, ROOT, SAN, help_options, run, sh, skip, target_exists

BUILD = os.environ.get("LOGAGENT_DEB_BUILD_DIR", os.path.join(BIN, "packaging-deb"))
MARKER = os.path.join(BUILD, "installed-by-test_deb")  # so a run killed half-way is cleaned up by the next
CLEAN_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}  # no LOGAGENT_*: the defaults apply
UNITS = ["logagentd.service", "logagentd.socket", "logagentd-stats.socket"]
CONF = "/etc/logagent/logagentd.conf"
PYMOD = "/usr/lib/python3/dist-packages/logagent"
state = {}


def project_version():
    with open(os.path.join(ROOT, "CMakeLists.txt"), encoding="utf-8") as f:
        return re.search(r"project\(logagent VERSION ([0-9.]+)", f.read()).group(1)


def installed(pkg="logagent"):
    r = sh(["dpkg-query", "-W", "-f", "${Status}", pkg], check=False)
    return r.returncode == 0 and r.stdout.endswith(" installed")


def purge():
    sh(["dpkg", "--purge", "logagent"], timeout=300)
    if os.path.exists(MARKER):
        os.unlink(MARKER)


def preconditions():
    if SAN:
        skip("sanitizer build (%s): the package is built and installed by the release suite only" % SAN)
    if os.geteuid() != 0:
        skip("not root: dpkg -i needs root")
    for tool in ("cpack", "dpkg-deb", "dpkg-shlibdeps", "adduser"):
        if sh(["sh", "-c", "command -v " + tool], check=False).returncode != 0:
            skip("%s is missing (packaging/install-deps.sh installs it)" % tool)
    if installed():
        if not os.path.exists(MARKER):
            skip("a logagent package is installed on this machine and this test did not install it: "
                 "not touching it (dpkg --purge logagent to let the test run)")
        print("   a previous run left its package installed: purging it first")
        purge()
    state["user_existed"] = user_exists()


def user_exists():
    try:
        pwd.getpwnam("logagent")
        return True
    except KeyError:
        return False


def test_build_the_package():
    os.makedirs(BUILD, exist_ok=True)
    sh(["cmake", "-S", ROOT, "-B", BUILD, "-DCMAKE_BUILD_TYPE=RelWithDebInfo", "-DCMAKE_INSTALL_PREFIX=/usr",
        "-DCMAKE_SKIP_INSTALL_ALL_DEPENDENCY=ON"], timeout=300)
    # What has an install rule (the test tools logagent-sink and logagent-bench have none);
    # logagentctl exists once the operator CLI is in the tree.
    targets = ["logagentd", "logagent-send", "logagent", "logagent_static", "logagent_man"]
    targets += [t for t in ("logagentctl",) if target_exists(BUILD, t)]
    state["ctl"] = "logagentctl" in targets
    if not state["ctl"]:
        print("   (no logagentctl target in this tree: the package has no logagentctl)")
    sh(["cmake", "--build", BUILD, "-j2", "--target"] + targets, timeout=900)
    for old in glob.glob(os.path.join(BUILD, "logagent_*.deb")):
        os.unlink(old)
    sh(["cpack", "-G", "DEB"], cwd=BUILD, timeout=300)
    debs = glob.glob(os.path.join(BUILD, "logagent_*.deb"))
    assert len(debs) == 1, debs
    state["deb"] = debs[0]
    arch = sh(["dpkg", "--print-architecture"]).stdout.strip()
    assert os.path.basename(debs[0]) == "logagent_%s_%s.deb" % (project_version(), arch), debs[0]


def expected_files():
    multiarch = sh(["dpkg-architecture", "-qDEB_HOST_MULTIARCH"]).stdout.strip()
    lib = "/usr/lib/%s/" % multiarch
    v = project_version()
    files = {"/usr/sbin/logagentd", "/usr/bin/logagent-send", "/usr/include/logagent.h",
             lib + "liblogagent.so.%s" % v, lib + "liblogagent.so.1", lib + "liblogagent.so", lib + "liblogagent.a",
             lib + "pkgconfig/logagent.pc", CONF, "/usr/share/doc/logagent/deployment.md",
             "/usr/share/doc/logagent/copyright"}
    files |= {"/lib/systemd/system/" + u for u in UNITS}
    for page in [p for p in os.listdir(MAN) if re.search(r"\.[1-8]$", p)]:  # logagentctl.8 too, once written
        files.add("/usr/share/man/man%s/%s.gz" % (page.rsplit(".", 1)[1], page))
    if state["ctl"]:
        files.add("/usr/bin/logagentctl")
    pydir = os.path.join(ROOT, "client-shim", "python", "logagent")
    files |= {PYMOD + "/" + f for f in os.listdir(pydir) if f.endswith(".py") and f != "bench.py"}
    return files


def test_file_list():
    listing = sh(["dpkg-deb", "-c", state["deb"]]).stdout
    entries = {}
    for line in listing.splitlines():
        perms, owner, _size, _date, _time, path = line.split(None, 5)
        path = path.split(" -> ")[0]
        assert path.startswith("./"), line
        assert owner == "root/root", line
        if perms[0] != "d":
            entries[path[1:]] = perms
    want = expected_files()
    assert set(entries) == want, "unexpected: %s\nmissing: %s" % (sorted(set(entries) - want),
                                                                 sorted(want - set(entries)))
    assert not [p for p in entries if re.search(r"test|sink|bench|__pycache__", p)], "test tools in the package"
    for p in ("/usr/sbin/logagentd", "/usr/bin/logagent-send"):
        assert entries[p] == "-rwxr-xr-x", (p, entries[p])
    assert entries[CONF] == "-rw-r--r--"
    state["files"] = sorted(entries)


def test_control_fields():
    deb = state["deb"]
    f = {}
    for line in sh(["dpkg-deb", "-f", deb]).stdout.splitlines():
        if line[:1] not in (" ", ""):
            k, _, v = line.partition(": ")
            f[k] = v
    assert f["Package"] == "logagent" and f["Version"] == project_version(), f
    assert f["Architecture"] == sh(["dpkg", "--print-architecture"]).stdout.strip()
    assert re.fullmatch(r".+ <[^@ ]+@[^@ ]+>", f["Maintainer"]), f["Maintainer"]
    assert f["Description"] and f["Section"] == "admin", f
    depends = [d.strip() for d in f["Depends"].split(",")]
    names = [d.split()[0] for d in depends]
    for need in ("adduser", "libc6", "libgrpc29", "libprotobuf-c1", "libmsgpackc2", "libevent-2.1-7"):
        assert need in names, "Depends lacks %s: %s" % (need, f["Depends"])
    assert "python3" not in names, "the agent must not need Python: %s" % f["Depends"]
    recommends = [d.strip().split()[0] for d in f.get("Recommends", "").split(",") if d.strip()]
    assert "python3-msgpack" in recommends, "Recommends lacks python3-msgpack: %s" % f.get("Recommends")
    unmet = [n for n in names if not installed(n)]
    assert not unmet, "Depends not installed here (run packaging/install-deps.sh): %s" % unmet
    info = sh(["dpkg-deb", "-I", deb]).stdout
    for script in ("postinst", "prerm", "postrm"):
        assert re.search(r"\*\s+%s\s" % script, info), "%s missing or not executable:\n%s" % (script, info)
    assert sh(["dpkg-deb", "-I", deb, "conffiles"]).stdout.split() == [CONF]
    assert "ldconfig" in sh(["dpkg-deb", "-I", deb, "triggers"]).stdout


def test_install():
    clash = [p for p in state["files"] if os.path.lexists(p)]
    if clash:
        skip("files of the package already exist on this machine (not from a package): %s" % clash[:5])
    with open(MARKER, "w") as m:
        m.write(state["deb"] + "\n")
    sh(["dpkg", "-i", state["deb"]], timeout=300)
    assert installed(), "dpkg -i did not leave logagent installed"
    for p in state["files"]:
        assert os.path.lexists(p), "%s not installed" % p
    u = pwd.getpwnam("logagent")
    assert grp.getgrgid(u.pw_gid).gr_name == "logagent" and u.pw_shell in ("/usr/sbin/nologin", "/bin/false"), u
    assert u.pw_uid < 1000, "logagent should be a system user: uid %d" % u.pw_uid
    st = os.stat("/var/lib/logagent")
    assert st.st_uid == u.pw_uid and stat.S_IMODE(st.st_mode) == 0o750, "/var/lib/logagent: %o" % st.st_mode


def test_installed_programs_run():
    v = project_version()
    p = sh(["/usr/sbin/logagentd", "--version"], env=CLEAN_ENV)
    assert p.stdout.strip() == "logagentd " + v, p.stdout
    p = sh(["/usr/bin/logagent-send", "--version"], env=CLEAN_ENV)
    assert p.stdout.strip() == "logagent-send " + v, p.stdout
    if state["ctl"]:
        p = sh(["/usr/bin/logagentctl", "--help"], env=CLEAN_ENV)
        assert "health" in p.stdout, p.stdout
    assert sh(["man", "-w", "logagentd"], env=CLEAN_ENV).stdout.strip() == "/usr/share/man/man8/logagentd.8.gz"


def test_installed_check_config():
    if "check-config" not in help_options("/usr/sbin/logagentd"):
        print("   (this logagentd has no --check-config yet: the config file part is not checked)")
        return
    p = sh(["/usr/sbin/logagentd", "--check-config"], check=False, env=CLEAN_ENV)
    assert p.returncode == 0, "--check-config with the shipped %s exits %d:\n%s%s" % (CONF, p.returncode,
                                                                                   p.stdout, p.stderr)
    # Set one key in the installed file (to its default value: agents of parallel tests see no change).
    with open(CONF, encoding="utf-8") as f:
        text = f.read()
    assert "\n#log-level = info\n" in text
    with open(CONF, "w", encoding="utf-8") as f:
        f.write(text.replace("\n#log-level = info\n", "\nlog-level = info\n"))
    p = sh(["/usr/sbin/logagentd", "--check-config"], check=False, env=CLEAN_ENV)
    assert p.returncode == 0 and CONF in p.stdout, "--check-config should read %s:\n%s%s" % (CONF, p.stdout,
                                                                                          p.stderr)
    line = [l for l in p.stdout.splitlines() if re.match(r"log-level\s*=", l)]
    assert line and CONF in line[0], "log-level should come from %s:\n%s" % (CONF, p.stdout)


def test_installed_library_builds_the_man_page_example():
    with open(os.path.join(MAN, "logagent.3"), encoding="utf-8") as f:
        text = f.read()
    example = text.split("\n.SH EXAMPLES\n", 1)[1].split("\n.nf\n", 1)[1].split("\n.fi\n", 1)[0]
    example = example.replace("\\e", "\\").replace("\\-", "-")
    with tempfile.TemporaryDirectory(prefix="la-deb-") as d:
        src, exe = os.path.join(d, "example.c"), os.path.join(d, "example")
        with open(src, "w") as f:
            f.write(example)
        flags = sh(["pkg-config", "--cflags", "--libs", "logagent"], env=CLEAN_ENV).stdout.split()
        sh(["cc", "-Wall", "-Wextra", "-Werror", src, "-o", exe] + flags, env=CLEAN_ENV)
        ldd = sh(["ldd", exe]).stdout
        assert re.search(r"liblogagent\.so\.1 => /(usr/)?lib/", ldd), ldd
        # No agent at that path: the record is queued, the client gives up after its 1 s flush, exit 0.
        p = sh([exe], env=dict(CLEAN_ENV, LOGAGENT_SOCKET=os.path.join(d, "none.sock")), check=False)
        assert p.returncode == 0, p


def test_installed_python_module():
    # From a folder outside the repo, with the system's python3 and no PYTHONPATH: the packaged module is the one
    # imported; its version is the package's; write_log works (no agent there: the record waits in the client's
    # buffer, success True, then is counted as dropped at exit). Byte code is written (as an app would), so the
    # purge below also checks that prerm removes it.
    code = ("import logagent, sys; r = logagent.write_log('from the .deb', service_name='deb-test');"
            "print(logagent.__file__); print(logagent.__version__); print(sorted(r)); print(r['success'])")
    with tempfile.TemporaryDirectory(prefix="la-deb-py-") as d:
        p = sh(["/usr/bin/python3", "-c", code], cwd=d, check=False,
               env=dict(CLEAN_ENV, LOGAGENT_SOCKET=os.path.join(d, "none.sock")))
    assert p.returncode == 0, p.stdout + p.stderr
    out = p.stdout.splitlines()
    assert out[0] == PYMOD + "/__init__.py", out
    assert out[1] == project_version(), out
    assert out[2] == "['error_message', 'log_id', 'success']" and out[3] == "True", out
    assert os.path.isdir(PYMOD + "/__pycache__"), "python3 wrote no byte code (the purge check needs it)"


def test_installed_units_verify():
    with tempfile.TemporaryDirectory(prefix="la-deb-units-") as d:
        p = sh(["systemd-analyze", "verify"] + ["/lib/systemd/system/" + u for u in UNITS], check=False, cwd=d,
               env=dict(CLEAN_ENV, SYSTEMD_LOG_LEVEL="warning"))
        assert p.returncode == 0 and not p.stdout and not p.stderr, p.stdout + p.stderr


def test_purge_removes_everything():
    purge()
    assert not installed(), "still installed after dpkg --purge"
    left = [p for p in state["files"] + ["/etc/logagent", "/var/lib/logagent", PYMOD] if os.path.lexists(p)]
    assert not left, "left after purge: %s" % left


def cleanup():
    if installed() and os.path.exists(MARKER):
        purge()
    if not state.get("user_existed", True) and user_exists():
        sh(["deluser", "--system", "--quiet", "logagent"], check=False)
        try:
            grp.getgrnam("logagent")
            sh(["delgroup", "--system", "--quiet", "logagent"], check=False)
        except KeyError:
            pass


if __name__ == "__main__":
    preconditions()
    try:
        run([test_build_the_package, test_file_list, test_control_fields, test_install, test_installed_programs_run,
             test_installed_check_config, test_installed_library_builds_the_man_page_example,
             test_installed_python_module, test_installed_units_verify, test_purge_removes_everything])
    finally:
        cleanup()
