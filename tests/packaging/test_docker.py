"""test_docker.py — packaging/docker/Dockerfile, without a Docker engine.

Parses the Dockerfile (continuations, stages, exec forms) and checks what would break the image: every
shared library that ldd reports for the locally built logagentd, logagentctl and logagent-send belongs
(dpkg -S) to a Debian package the runtime stage installs, or to one of their dependencies (dpkg-query
Depends, transitively); the runtime stage runs as a non-root user it creates; every COPY source exists (in
the build context, allowed by .dockerignore, or made by a RUN of the stage it comes from); the volume,
entrypoint and health check point where the agent listens. The binaries are those of the release build
(the build stage compiles the same sources against the same Debian 12 packages)."""
import json
import os
import re
import shlex

from pkgtest import BIN, PACKAGING, ROOT, SAN, help_options, run, sh, skip, target_exists

DOCKERFILE = os.path.join(PACKAGING, "docker", "Dockerfile")
PROGRAMS = {"logagentd": "/usr/sbin/logagentd", "logagentctl": "/usr/bin/logagentctl",
            "logagent-send": "/usr/bin/logagent-send"}


def instructions():
    """[(stage index, KEYWORD, argument text)], comments dropped and continuation lines joined."""
    with open(DOCKERFILE, encoding="utf-8") as f:
        lines = [l.rstrip("\n") for l in f if not l.lstrip().startswith("#")]
    out, buf, stage = [], "", -1
    for line in lines:
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        if buf.strip():
            kw, _, arg = buf.strip().partition(" ")
            kw = kw.upper()
            if kw == "FROM":
                stage += 1
            out.append((stage, kw, arg.strip()))
        buf = ""
    return out


def stages():
    """[{'name':..., 'base':..., 'ins': [(KEYWORD, arg)]}] in order."""
    result = []
    for stage, kw, arg in instructions():
        if kw == "FROM":
            parts = arg.split()
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else None
            result.append({"name": name, "base": parts[0], "ins": []})
        else:
            result[stage]["ins"].append((kw, arg))
    return result


def apt_packages(stage):
    pkgs = []
    for kw, arg in stage["ins"]:
        if kw != "RUN":
            continue
        for cmd in re.split(r"&&|;|\|\|", arg):
            words = shlex.split(cmd)
            words = [w for w in words if "=" not in w or w.startswith("-")]
            if words[:2] in (["apt-get", "install"], ["apt", "install"]):
                pkgs += [w for w in words[2:] if not w.startswith("-")]
    return pkgs


def exec_form(arg):
    arg = arg.strip()
    assert arg.startswith("["), "use the exec form (JSON array): %s" % arg
    return json.loads(arg)


def dpkg_owners(paths):
    """{path: the Debian package that ships it}, in one dpkg -S call (usrmerge: each path is also tried as
    its real path and with /usr added or removed)."""
    spellings = {}
    for path in paths:
        real = os.path.realpath(path)
        for p in (path, real):
            for c in (p, p[4:] if p.startswith("/usr/") else "/usr" + p):
                spellings.setdefault(c, path)
    out = sh(["dpkg", "-S"] + sorted(spellings), check=False).stdout
    owners = {}
    for line in out.splitlines():
        pkgs, _, shipped = line.partition(": ")
        if shipped in spellings:
            owners.setdefault(spellings[shipped], pkgs.split(",")[0].split(":")[0].strip())
    missing = [p for p in paths if p not in owners]
    assert not missing, "no Debian package ships %s (dpkg -S)" % missing
    return owners


def installed_depends():
    """{installed package: [[alternatives] per dependency]} from one dpkg-query call."""
    out = sh(["dpkg-query", "-W", "-f", "${Package}\t${Status}\t${Depends}, ${Pre-Depends}\n"]).stdout
    deps = {}
    for line in out.splitlines():
        name, status, dep = line.split("\t")
        if status.endswith(" installed"):
            deps[name] = [[a.strip().split()[0].split(":")[0] for a in d.split("|") if a.strip()]
                          for d in dep.split(",") if d.strip()]
    return deps


def depends_closure(pkgs, deps):
    """pkgs plus everything they depend on, transitively (the first installed alternative of each)."""
    seen, todo = set(), list(pkgs)
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        assert p in deps, "%s is not a package installed here (dpkg-query)" % p
        seen.add(p)
        for alts in deps[p]:
            todo += [a for a in alts if a in deps][:1]
    return seen


def built_programs():
    """{program: path in the build dir}; logagentctl may not exist yet in builds that have no such target."""
    found = {}
    for prog in PROGRAMS:
        path = os.path.join(BIN, prog)
        if os.path.exists(path):
            found[prog] = path
        elif prog == "logagentctl" and not target_exists(BIN, prog):
            print("   (no logagentctl target in this build: its libraries are not checked)")
        else:
            raise AssertionError("%s is not built in %s" % (prog, BIN))
    return found


def test_runtime_stage_installs_every_library_the_programs_load():
    if SAN:
        skip("sanitizer build (%s): ldd would list the sanitizer runtimes, not the image's" % SAN)
    st = stages()
    assert len(st) >= 2, "multi-stage: a build stage and a runtime stage"
    for s in st:
        assert re.match(r"debian:(12|bookworm)\b", s["base"]), "stage on %s: expected debian:12" % s["base"]
    runtime = st[-1]
    listed = apt_packages(runtime)
    assert listed, "the runtime stage installs no package"
    dev = [p for p in listed if p.endswith("-dev") or p in ("build-essential", "cmake", "gcc")]
    assert not dev, "build tools in the runtime stage: %s" % dev
    deps = installed_depends()
    closure = depends_closure(listed, deps)
    loads = {}
    for prog, path in built_programs().items():
        out = sh(["ldd", path]).stdout
        assert "not found" not in out, "%s: ldd: %s" % (prog, out)
        loads[prog] = re.findall(r"(/\S+) \(0x", out)
    owners = dpkg_owners(sorted({lib for libs in loads.values() for lib in libs}))
    for prog, libs in loads.items():
        for lib in libs:
            assert owners[lib] in closure, "%s loads %s from package %s, which the runtime stage does not " \
                                           "install (it installs %s)" % (prog, lib, owners[lib], " ".join(listed))
    needed = set(owners.values())
    unused = sorted(p for p in listed if p not in needed)
    if unused:
        print("   note: runtime packages no built program loads yet: %s" % " ".join(unused))


def test_runtime_user_is_not_root():
    runtime = stages()[-1]
    users = [arg for kw, arg in runtime["ins"] if kw == "USER"]
    assert users, "the runtime stage sets no USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), "runs as root"
    made = " ".join(arg for kw, arg in runtime["ins"] if kw == "RUN")
    assert re.search(r"(useradd|adduser)\b[^&;]*\b%s\b" % re.escape(user), made), "USER %s is never created" % user


def dockerignore_allows(rel):
    """Our .dockerignore is an allow-list: '*' then '!top/' lines. Is rel (a context path) sent?"""
    with open(os.path.join(ROOT, ".dockerignore"), encoding="utf-8") as f:
        rules = [l.strip() for l in f if l.strip() and not l.startswith("#")]
    allowed = False
    for r in rules:
        neg = r.startswith("!")
        pat = r[1:].rstrip("/") if neg else r.rstrip("/")
        top = rel.split("/")[0]
        if pat == "*" or pat == top or pat == rel:
            allowed = neg
    return allowed


def test_every_copy_source_exists():
    st = stages()
    names = {s["name"]: s for s in st if s["name"]}
    copies = 0
    for s in st:
        for kw, arg in s["ins"]:
            if kw not in ("COPY", "ADD"):
                continue
            copies += 1
            words = arg.split()
            flags = [w for w in words if w.startswith("--")]
            srcs = [w for w in words if not w.startswith("--")][:-1]
            src_stage = [f.split("=", 1)[1] for f in flags if f.startswith("--from=")]
            for src in srcs:
                if src_stage:
                    made = " ".join(a for k, a in names[src_stage[0]]["ins"] if k == "RUN")
                    assert src_stage[0] in names, "COPY --from=%s: no such stage" % src_stage[0]
                    assert src.rstrip("/") in made, "COPY --from=%s %s: no RUN of that stage makes it" % (
                        src_stage[0], src)
                else:
                    rel = os.path.normpath(src).lstrip("./") or "."
                    assert os.path.exists(os.path.join(ROOT, rel)), "COPY %s: not in the repository" % src
                    assert dockerignore_allows(rel), "COPY %s: excluded by .dockerignore" % src
    assert copies >= 2


def test_volume_entrypoint_and_healthcheck_match_the_agent():
    defaults = help_options(os.path.join(BIN, "logagentd"))
    runtime = stages()[-1]
    ins = {}
    for kw, arg in runtime["ins"]:
        ins.setdefault(kw, []).append(arg)
    volumes = " ".join(ins.get("VOLUME", []))
    sock_dir = os.path.dirname(defaults["socket"])
    assert sock_dir in volumes and os.path.dirname(defaults["stats-socket"]) == sock_dir, (volumes, defaults)
    entry = exec_form(ins["ENTRYPOINT"][-1])
    assert entry[0] == PROGRAMS["logagentd"], entry
    env = " ".join(ins.get("ENV", []))
    assert "LOGAGENT_SOCKET" not in env and "LOGAGENT_STATS_SOCKET" not in env, \
        "an ENV setting would silently win over a mounted config file"
    hc = ins["HEALTHCHECK"][-1]
    cmd = exec_form(hc.split(" CMD ", 1)[1])
    # "ready" (the agent accepts records), not "health" (follows the log service): Swarm replaces unhealthy tasks
    assert cmd[:2] == [PROGRAMS["logagentctl"], "ready"], cmd
    assert cmd[cmd.index("--stats-socket") + 1] == defaults["stats-socket"], cmd
    build = " ".join(a for s in stages()[:-1] for k, a in s["ins"] if k == "RUN")
    for prog in PROGRAMS:
        assert re.search(r"--target\b[^&]*\b%s\b" % re.escape(prog), build), "the build stage does not build %s" % prog


def test_build_stage_has_every_build_dependency():
    """Every lib*-dev package (and build tool) packaging/install-deps.sh installs for the build is in the build stage,
    so a dependency added to the project for the local build cannot be forgotten in the image."""
    with open(os.path.join(PACKAGING, "install-deps.sh"), encoding="utf-8") as f:
        text = f.read().replace("\\\n", " ")
    local = re.search(r'PKGS="([^"]*)"', text).group(1).split()
    wanted = [p for p in local if (p.startswith("lib") and p.endswith("-dev") and not p.startswith("libclang-rt"))
              or p in ("build-essential", "cmake", "pkg-config", "protobuf-c-compiler")]
    build = [p for s in stages()[:-1] for p in apt_packages(s)]
    missing = sorted(set(wanted) - set(build))
    assert not missing, "the Dockerfile's build stage lacks %s (in packaging/install-deps.sh)" % missing


if __name__ == "__main__":
    run([test_runtime_stage_installs_every_library_the_programs_load, test_runtime_user_is_not_root,
         test_every_copy_source_exists, test_volume_entrypoint_and_healthcheck_match_the_agent,
         test_build_stage_has_every_build_dependency])
