"""test_deb.py — the three .debs, end to end: build them with CPack, read them, run lintian, install them with
dpkg, run the installed programs, remove and reinstall the agent, purge them.

The packages (packaging/cpack.cmake): `logagent` (the agent, its tools, units, config, Python module),
`liblogagent1` (the shared library; named after its soname) and `liblogagent-dev` (header, .so link, static
library, pkg-config file, logagent(3)). Configures its own build dir (CMAKE_INSTALL_PREFIX=/usr: the pkg-config
file and the library folder depend on it, so the release build cannot be reused), builds only what the packages
install, runs `cpack -G DEB`, checks each package's `dpkg-deb -c` (exactly the expected files, nothing from
tests/), its control fields and control files, its copyright and changelog, and runs lintian on it (any E: fails,
and any W: not in LINTIAN_ALLOWED). Installs all three with one `dpkg -i` (their Depends are all installed on a
machine set up with packaging/install-deps.sh: nothing is fetched), runs /usr/sbin/logagentd --version and
--check-config, logagentctl --help, compiles logagent(3)'s example against the installed library, verifies the
installed units, imports the installed Python module, checks the `logagent` user; enables the units as an admin
would, removes and reinstalls `logagent` (the enablement survives, through deb-systemd-helper, without systemd
running); purges all three at once and checks everything is gone; then installs the agent and library alone (a
host without C development), adds -dev, and purges them one by one in dependency order.

Release suite only: skipped (exit 77, with the reason) under sanitizers, when not root, or when one of the
packages is installed and this test did not install it. Without lintian the lintian step is skipped, except
under CI=true, where it fails (packaging/install-deps.sh installs lintian). Other tests run in parallel: the
installed /etc/logagent/logagentd.conf sets nothing, and the one line this test uncomments sets a default value."""
import glob
import gzip
import io
import os
import pwd
import grp
import re
import shutil
import stat
import tarfile
import tempfile

from pkgtest import BIN, MAN, PACKAGING, ROOT, SAN, help_options, run, sh, skip, target_exists

BUILD = os.environ.get("LOGAGENT_DEB_BUILD_DIR", os.path.join(BIN, "packaging-deb"))
MARKER = os.path.join(BUILD, "installed-by-test_deb")  # so a run killed half-way is cleaned up by the next
CLEAN_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}  # no LOGAGENT_*: the defaults apply
UNITS = ["logagentd.service", "logagentd.socket", "logagentd-stats.socket"]
CONF = "/etc/logagent/logagentd.conf"
PYMOD = "/usr/lib/python3/dist-packages/logagent"
COMPAT = "/usr/lib/python3/dist-packages/log_client"  # the original Django project's import path
HOMEPAGE = "https://github.com/logagent/logagent"
state = {}

# lintian warnings this test accepts, {tag: why}. Empty: lintian (Debian 12's, 2.116) has no warning about
# the packages. A new entry needs its reason here and in docs/deployment.md ("lintian").
LINTIAN_ALLOWED = {}


def project_version():
    with open(os.path.join(ROOT, "CMakeLists.txt"), encoding="utf-8") as f:
        return re.search(r"project\(logagent VERSION ([0-9.]+)", f.read()).group(1)


def soversion():
    with open(os.path.join(ROOT, "client-shim", "CMakeLists.txt"), encoding="utf-8") as f:
        return re.search(r"\bSOVERSION (\d+)", f.read()).group(1)


AGENT, LIB, DEV = "logagent", "liblogagent" + soversion(), "liblogagent-dev"
PACKAGES = [AGENT, LIB, DEV]


def installed(pkg):
    r = sh(["dpkg-query", "-W", "-f", "${Status}", pkg], check=False)
    return r.returncode == 0 and r.stdout.endswith(" installed")


def known_to_dpkg(pkg):
    """Installed, or removed with its configuration files left (what purge still has to delete)."""
    r = sh(["dpkg-query", "-W", "-f", "${Status}", pkg], check=False)
    return r.returncode == 0 and not r.stdout.endswith(" not-installed")


def purge_all():
    """One dpkg call for every package of ours dpkg still knows (dpkg orders the purges)."""
    pkgs = [p for p in PACKAGES if known_to_dpkg(p)]
    if pkgs:
        sh(["dpkg", "--purge"] + pkgs, timeout=300)
    if os.path.exists(MARKER):
        os.unlink(MARKER)


def dpkg_install(pkgs):
    with open(MARKER, "w") as m:
        m.write(" ".join(pkgs) + "\n")
    sh(["dpkg", "-i"] + [state["debs"][p] for p in pkgs], timeout=300)
    for p in pkgs:
        assert installed(p), "dpkg -i did not leave %s installed" % p


def preconditions():
    if SAN:
        skip("sanitizer build (%s): the packages are built and installed by the release suite only" % SAN)
    if os.geteuid() != 0:
        skip("not root: dpkg -i needs root")
    for tool in ("cpack", "dpkg-deb", "dpkg-shlibdeps", "dpkg-parsechangelog", "adduser"):
        if not shutil.which(tool):
            skip("%s is missing (packaging/install-deps.sh installs it)" % tool)
    present = [p for p in PACKAGES if known_to_dpkg(p)]
    if present:
        if not os.path.exists(MARKER):
            skip("%s installed on this machine and this test did not install it: not touching it "
                 "(dpkg --purge %s to let the test run)" % (", ".join(present), " ".join(present)))
        print("   a previous run left its packages installed: purging them first")
        purge_all()
    state["user_existed"] = user_exists()


def user_exists():
    try:
        pwd.getpwnam("logagent")
        return True
    except KeyError:
        return False


def test_build_the_packages():
    os.makedirs(BUILD, exist_ok=True)
    sh(["cmake", "-S", ROOT, "-B", BUILD, "-DCMAKE_BUILD_TYPE=RelWithDebInfo", "-DCMAKE_INSTALL_PREFIX=/usr",
        "-DCMAKE_SKIP_INSTALL_ALL_DEPENDENCY=ON"], timeout=300)
    # What has an install rule (the test tools logagent-sink and logagent-bench have none);
    # logagentctl exists once the operator CLI is in the tree.
    targets = ["logagentd", "logagent-send", "logagent", "logagent_static", "logagent_man", "logagent_changelog",
               "logagent_speedups"]
    targets += [t for t in ("logagentctl",) if target_exists(BUILD, t)]
    state["ctl"] = "logagentctl" in targets
    if not state["ctl"]:
        print("   (no logagentctl target in this tree: the package has no logagentctl)")
    sh(["cmake", "--build", BUILD, "-j2", "--target"] + targets, timeout=900)
    for old in glob.glob(os.path.join(BUILD, "*.deb")):
        os.unlink(old)
    sh(["cpack", "-G", "DEB"], cwd=BUILD, timeout=300)
    arch = sh(["dpkg", "--print-architecture"]).stdout.strip()
    want = {p: os.path.join(BUILD, "%s_%s_%s.deb" % (p, project_version(), arch)) for p in PACKAGES}
    # Exactly these: an install rule without COMPONENT would make a fourth (logagent-Unspecified).
    assert sorted(glob.glob(os.path.join(BUILD, "*.deb"))) == sorted(want.values()), \
        glob.glob(os.path.join(BUILD, "*.deb"))
    state["debs"] = want


def expected_files():
    """{package: set of paths} (files and symlinks, not folders)."""
    multiarch = sh(["dpkg-architecture", "-qDEB_HOST_MULTIARCH"]).stdout.strip()
    lib = "/usr/lib/%s/" % multiarch
    v = project_version()
    files = {p: {"/usr/share/doc/%s/copyright" % p, "/usr/share/doc/%s/changelog.gz" % p} for p in PACKAGES}
    files[AGENT] |= {"/usr/sbin/logagentd", "/usr/bin/logagent-send", CONF, "/usr/share/doc/logagent/deployment.md"}
    files[AGENT] |= {"/lib/systemd/system/" + u for u in UNITS}
    if state["ctl"]:
        files[AGENT].add("/usr/bin/logagentctl")
    pydir = os.path.join(ROOT, "client-shim", "python", "logagent")
    files[AGENT] |= {PYMOD + "/" + f for f in os.listdir(pydir) if f.endswith(".py") and f != "bench.py"}
    files[AGENT].add(PYMOD + "/_speedups.abi3.so")  # the module's C encoder (client-shim/python/CMakeLists.txt)
    compat = os.path.join(ROOT, "client-shim", "python", "log_client")
    files[AGENT] |= {COMPAT + "/" + f for f in os.listdir(compat) if f.endswith(".py")}
    for page in [p for p in os.listdir(MAN) if re.search(r"\.[1-8]$", p)]:
        section = page.rsplit(".", 1)[1]
        files[DEV if section == "3" else AGENT].add("/usr/share/man/man%s/%s.gz" % (section, page))
    files[LIB] |= {lib + "liblogagent.so.%s" % v, lib + "liblogagent.so.%s" % soversion()}
    files[DEV] |= {"/usr/include/logagent.h", lib + "liblogagent.so", lib + "liblogagent.a",
                   lib + "pkgconfig/logagent.pc"}
    return files


def deb_entries(pkg):
    """{path: (permissions, symlink target or None)} of a .deb's files and links."""
    entries = {}
    for line in sh(["dpkg-deb", "-c", state["debs"][pkg]]).stdout.splitlines():
        perms, owner, _size, _date, _time, path = line.split(None, 5)
        path, _, target = path.partition(" -> ")
        assert path.startswith("./"), line
        assert owner == "root/root", line
        if perms[0] != "d":
            entries[path[1:]] = (perms, target or None)
    return entries


def test_file_lists():
    want = expected_files()
    state["files"] = {}
    for pkg in PACKAGES:
        entries = deb_entries(pkg)
        assert set(entries) == want[pkg], "%s: unexpected: %s\nmissing: %s" % (
            pkg, sorted(set(entries) - want[pkg]), sorted(want[pkg] - set(entries)))
        assert not [p for p in entries if re.search(r"test|sink|bench|__pycache__", p)], "test tools in " + pkg
        state["files"][pkg] = sorted(entries)
        state.setdefault("entries", {}).update(entries)
    e = state["entries"]
    for p in ("/usr/sbin/logagentd", "/usr/bin/logagent-send"):
        assert e[p][0] == "-rwxr-xr-x", (p, e[p])
    assert e[CONF][0] == "-rw-r--r--"
    lib = os.path.dirname([p for p in e if p.endswith("/liblogagent.a")][0]) + "/"
    # The soname link in the library's package, the link for the linker (-llogagent) in -dev.
    assert e[lib + "liblogagent.so.%s" % soversion()][1] == "liblogagent.so.%s" % project_version(), e
    assert e[lib + "liblogagent.so"][1] == "liblogagent.so.%s" % soversion(), e
    assert e[lib + "liblogagent.so.%s" % project_version()][0] == "-rw-r--r--"


def control(pkg):
    f = {}
    for line in sh(["dpkg-deb", "-f", state["debs"][pkg]]).stdout.splitlines():
        if line[:1] not in (" ", ""):
            k, _, v = line.partition(": ")
            f[k] = v
    return f


def control_files(pkg):
    """The control archive's members beside control and md5sums: {name: executable?}."""
    info = sh(["dpkg-deb", "-I", state["debs"][pkg]]).stdout
    files = {}
    for m in re.finditer(r"^\s+\d+ bytes,\s+\d+ lines\s+(\*?)\s+(\S+)", info, re.M):
        if m.group(2) not in ("control", "md5sums"):
            files[m.group(2)] = m.group(1) == "*"
    return files


def depends(f):
    return [d.strip() for d in f.get("Depends", "").split(",") if d.strip()]


def test_control_fields():
    v = project_version()
    arch = sh(["dpkg", "--print-architecture"]).stdout.strip()
    sections = {AGENT: "admin", LIB: "libs", DEV: "libdevel"}
    fields = {}
    for pkg in PACKAGES:
        f = fields[pkg] = control(pkg)
        assert f["Package"] == pkg and f["Version"] == v and f["Architecture"] == arch, f
        assert f["Section"] == sections[pkg] and f["Source"] == "logagent" and f["Homepage"] == HOMEPAGE, f
        assert re.fullmatch(r".+ <[^@ ]+@[^@ ]+>", f["Maintainer"]), f["Maintainer"]
        desc = sh(["dpkg-deb", "-f", state["debs"][pkg], "Description"]).stdout.rstrip("\n").split("\n")
        assert len(desc) > 2 and all(len(line) <= 80 for line in desc), "%s: Description:\n%s" % (pkg,
                                                                                             "\n".join(desc))
    # logagent: what dpkg-shlibdeps finds in the programs, plus adduser; not the library (logagent-send links
    # the static one) and not Python (the module is a Recommends, with its msgpack).
    names = [d.split()[0] for d in depends(fields[AGENT])]
    for need in ("adduser", "libc6", "libgrpc29", "libprotobuf-c1", "libmsgpackc2", "libevent-2.1-7"):
        assert need in names, "Depends lacks %s: %s" % (need, fields[AGENT]["Depends"])
    assert "python3" not in names, "the agent must not need Python: %s" % fields[AGENT]["Depends"]
    assert LIB not in names, "logagent-send links liblogagent.a: %s" % fields[AGENT]["Depends"]
    recommends = [d.strip().split()[0] for d in fields[AGENT].get("Recommends", "").split(",") if d.strip()]
    assert "python3-msgpack" in recommends, "Recommends lacks python3-msgpack: %s" % fields[AGENT].get("Recommends")
    unmet = [n for n in names if not installed(n)]
    assert not unmet, "Depends not installed here (run packaging/install-deps.sh): %s" % unmet
    # liblogagent1: libc only; -dev: exactly this version of the library.
    assert [d.split()[0] for d in depends(fields[LIB])] == ["libc6"], fields[LIB]
    assert depends(fields[DEV]) == ["%s (= %s)" % (LIB, v)], fields[DEV]
    for pkg in (LIB, DEV):
        assert not fields[pkg].get("Recommends"), fields[pkg]

    agent = control_files(AGENT)
    assert agent == {"conffiles": False, "postinst": True, "prerm": True, "postrm": True}, agent
    assert sh(["dpkg-deb", "-I", state["debs"][AGENT], "conffiles"]).stdout.split() == [CONF]
    # The library: its shlibs line for programs linked against it, ldconfig by trigger, no scripts.
    assert control_files(LIB) == {"shlibs": False, "triggers": False}, control_files(LIB)
    assert sh(["dpkg-deb", "-I", state["debs"][LIB], "shlibs"]).stdout.strip() == \
        "liblogagent %s %s (>= %s)" % (soversion(), LIB, v)
    assert sh(["dpkg-deb", "-I", state["debs"][LIB], "triggers"]).stdout.strip() == "activate-noawait ldconfig"
    assert control_files(DEV) == {}, control_files(DEV)


def deb_file(pkg, path):
    """The bytes of one file of a .deb (from its data archive)."""
    p = sh(["dpkg-deb", "--fsys-tarfile", state["debs"][pkg]], text=False)
    with tarfile.open(fileobj=io.BytesIO(p.stdout)) as t:
        return t.extractfile("." + path).read()


def test_copyright_and_changelog():
    with open(os.path.join(PACKAGING, "deb", "copyright"), "rb") as f:
        copyright_text = f.read()
    src = os.path.join(PACKAGING, "deb", "changelog")
    with open(src, "rb") as f:
        changelog = f.read()
    # Debian's format (dpkg-parsechangelog reads it), and its newest entry is this version.
    top = sh(["dpkg-parsechangelog", "-l", src, "-S", "Source"]).stdout.strip(), \
        sh(["dpkg-parsechangelog", "-l", src, "-S", "Version"]).stdout.strip()
    assert top == ("logagent", project_version()), "packaging/deb/changelog: newest entry %s %s" % top
    for pkg in PACKAGES:
        assert deb_file(pkg, "/usr/share/doc/%s/copyright" % pkg) == copyright_text, pkg
        gz = deb_file(pkg, "/usr/share/doc/%s/changelog.gz" % pkg)
        # gzip -9n: no file name (FLG.FNAME, 0x08) and no time stamp (MTIME 0) in the header: reproducible.
        assert gz[:2] == b"\x1f\x8b" and not gz[3] & 0x08 and gz[4:8] == b"\0\0\0\0", (pkg, gz[:10])
        assert gzip.decompress(gz) == changelog, pkg


def lintian_missing():
    if shutil.which("lintian"):
        return False
    why = "lintian is not installed (packaging/install-deps.sh installs it)"
    if os.environ.get("CI") == "true":
        raise AssertionError("under CI: " + why)
    print("   skip: " + why)
    return True


def test_lintian():
    if lintian_missing():
        return
    bad = []
    for pkg in PACKAGES:
        p = sh(["lintian", "--tag-display-limit", "0", state["debs"][pkg]], check=False, timeout=300)
        tags = re.findall(r"^([EW]): (\S+): (\S+)(.*)$", p.stdout, re.M)
        assert p.returncode == 0 or (p.returncode == 1 and any(t[0] == "E" for t in tags)), \
            "lintian %s exited %d:\n%s%s" % (pkg, p.returncode, p.stdout, p.stderr)
        for kind, who, tag, rest in tags:
            if kind == "E" or tag not in LINTIAN_ALLOWED:
                bad.append("%s: %s: %s%s" % (kind, who, tag, rest))
            else:
                print("   allowed: %s: %s: %s%s (%s)" % (kind, who, tag, rest, LINTIAN_ALLOWED[tag]))
    assert not bad, "lintian:\n" + "\n".join(bad)


def all_files():
    return [p for pkg in PACKAGES for p in state["files"][pkg]]


def test_install():
    clash = [p for p in all_files() if os.path.lexists(p)]
    if clash:
        skip("files of the packages already exist on this machine (not from a package): %s" % clash[:5])
    dpkg_install(PACKAGES)
    for p in all_files():
        assert os.path.lexists(p), "%s not installed" % p
    u = pwd.getpwnam("logagent")
    assert grp.getgrgid(u.pw_gid).gr_name == "logagent" and u.pw_shell in ("/usr/sbin/nologin", "/bin/false"), u
    assert u.pw_uid < 1000, "logagent should be a system user: uid %d" % u.pw_uid
    st = os.stat("/var/lib/logagent")
    assert st.st_uid == u.pw_uid and stat.S_IMODE(st.st_mode) == 0o750, "/var/lib/logagent: %o" % st.st_mode
    # The library's trigger ran ldconfig: the dynamic linker's cache has the soname.
    assert re.search(r"liblogagent\.so\.%s .*=> /" % soversion(), sh(["ldconfig", "-p"]).stdout)
    # A fresh install enables nothing (the upstream is to be set first); deb-systemd-helper has its state.
    assert not [p for p in unit_links() if p.startswith("/etc/")], "enabled by the install: %s" % unit_links()
    assert [os.path.basename(p) for p in unit_links()] == sorted(u + ".dsh-also" for u in UNITS), unit_links()


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
    assert sh(["man", "-w", "3", "logagent"], env=CLEAN_ENV).stdout.strip() == "/usr/share/man/man3/logagent.3.gz"


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
    # imported, with its C encoder; its version is the package's; write_log works (no agent there: the record waits in the client's
    # buffer, success True, then is counted as dropped at exit). Byte code is written (as an app would), so the
    # purge below also checks that prerm removes it.
    code = ("import logagent, sys; r = logagent.write_log('from the .deb', service_name='deb-test');"
            "print(logagent.__file__); print(logagent.__version__); print(sorted(r)); print(r['success']);"
            "print(logagent.implementation)")
    with tempfile.TemporaryDirectory(prefix="la-deb-py-") as d:
        p = sh(["/usr/bin/python3", "-c", code], cwd=d, check=False,
               env=dict(CLEAN_ENV, LOGAGENT_SOCKET=os.path.join(d, "none.sock")))
    assert p.returncode == 0, p.stdout + p.stderr
    out = p.stdout.splitlines()
    assert out[0] == PYMOD + "/__init__.py", out
    assert out[1] == project_version(), out
    # and the original Django project's import path, from the package (no Django settings: the environment's)
    code = ("from log_client.client import write_log; import log_client; r = write_log('compat', service_name='deb');"
            "print(log_client.__file__); print(r['success'])")
    with tempfile.TemporaryDirectory(prefix="la-deb-py-") as d:
        p = sh(["/usr/bin/python3", "-c", code], cwd=d, check=False,
               env=dict(CLEAN_ENV, LOGAGENT_SOCKET=os.path.join(d, "none.sock")))
    assert p.returncode == 0 and p.stdout.split() == [COMPAT + "/__init__.py", "True"], p.stdout + p.stderr
    assert out[2] == "['error_message', 'log_id', 'success']" and out[3] == "True", out
    assert out[4] == "c", "the packaged C encoder (_speedups.abi3.so) did not load: %s" % out
    assert os.path.isdir(PYMOD + "/__pycache__"), "python3 wrote no byte code (the purge check needs it)"


def test_installed_units_verify():
    with tempfile.TemporaryDirectory(prefix="la-deb-units-") as d:
        p = sh(["systemd-analyze", "verify"] + ["/lib/systemd/system/" + u for u in UNITS], check=False, cwd=d,
               env=dict(CLEAN_ENV, SYSTEMD_LOG_LEVEL="warning"))
        assert p.returncode == 0 and not p.stdout and not p.stderr, p.stdout + p.stderr


def unit_links():
    """Paths under /etc/systemd/system (enablement links, masks) and in deb-systemd-helper's state that name
    one of our units."""
    found = []
    for top in ["/etc/systemd/system"] + glob.glob("/var/lib/systemd/deb-systemd-helper-*"):
        for folder, _dirs, files in os.walk(top):
            found += [os.path.join(folder, f) for f in files if f.split(".dsh-also")[0] in UNITS]
    return sorted(found)


def is_enabled(unit):
    return sh(["systemctl", "is-enabled", unit], check=False, env=CLEAN_ENV).stdout.strip()


def test_enablement_survives_remove_and_reinstall():
    # As an admin would (systemctl edits the links itself when systemd is not running), then `dpkg -r` of the
    # agent alone: its units are masked, the library packages stay; a reinstall unmasks them, still enabled.
    sh(["systemctl", "enable", "logagentd.service"], env=CLEAN_ENV)
    assert [is_enabled(u) for u in UNITS] == ["enabled"] * 3, [is_enabled(u) for u in UNITS]
    sh(["dpkg", "-r", AGENT], timeout=300)
    assert not installed(AGENT) and installed(LIB) and installed(DEV)
    assert [os.path.realpath("/etc/systemd/system/" + u) for u in UNITS] == ["/dev/null"] * 3, unit_links()
    assert os.path.exists(CONF) and not os.path.exists("/usr/sbin/logagentd"), "remove keeps the config only"
    assert all(os.path.lexists(p) for p in state["files"][LIB] + state["files"][DEV])
    dpkg_install([AGENT])
    assert [is_enabled(u) for u in UNITS] == ["enabled"] * 3, [is_enabled(u) for u in UNITS]
    assert not [u for u in UNITS if os.path.lexists("/etc/systemd/system/" + u)], unit_links()


def assert_gone(pkgs, extra=()):
    left = [p for pkg in pkgs for p in state["files"][pkg]] + list(extra)
    left = [p for p in left if os.path.lexists(p)]
    assert not left, "left after purge: %s" % left


def test_purge_removes_everything():
    purge_all()  # one dpkg call: dpkg purges -dev before the library it depends on
    assert not [p for p in PACKAGES if known_to_dpkg(p)], "still known to dpkg after dpkg --purge"
    assert_gone(PACKAGES, ["/etc/logagent", "/var/lib/logagent", PYMOD, COMPAT, "/usr/share/doc/" + AGENT])
    assert not unit_links(), "left after purge: %s" % unit_links()
    assert "liblogagent" not in sh(["ldconfig", "-p"]).stdout


def test_purge_in_dependency_order():
    # A host without C development has the agent and the library; -dev comes later, for a build.
    dpkg_install([AGENT, LIB])
    assert not [p for p in state["files"][DEV] if os.path.lexists(p)]
    dpkg_install([DEV])
    # dpkg refuses to purge the library while -dev, which depends on it, is installed.
    p = sh(["dpkg", "--purge", LIB], check=False, timeout=300)
    assert p.returncode != 0 and installed(LIB), "purged %s under %s:\n%s%s" % (LIB, DEV, p.stdout, p.stderr)
    sh(["dpkg", "--purge", DEV], timeout=300)
    assert_gone([DEV])
    assert all(os.path.lexists(f) for f in state["files"][LIB] + state["files"][AGENT])
    sh(["dpkg", "--purge", LIB], timeout=300)
    assert_gone([LIB])
    assert "liblogagent" not in sh(["ldconfig", "-p"]).stdout, "the ldconfig trigger did not run on purge"
    sh(["dpkg", "--purge", AGENT], timeout=300)
    os.unlink(MARKER)
    assert not [p for p in PACKAGES if known_to_dpkg(p)]
    assert_gone(PACKAGES, ["/etc/logagent", "/var/lib/logagent", PYMOD, COMPAT])
    assert not unit_links(), "left after purge: %s" % unit_links()


def cleanup():
    if os.path.exists(MARKER):
        purge_all()
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
        run([test_build_the_packages, test_file_lists, test_control_fields, test_copyright_and_changelog,
             test_lintian, test_install, test_installed_programs_run, test_installed_check_config,
             test_installed_library_builds_the_man_page_example, test_installed_python_module,
             test_installed_units_verify, test_enablement_survives_remove_and_reinstall,
             test_purge_removes_everything, test_purge_in_dependency_order])
    finally:
        cleanup()
