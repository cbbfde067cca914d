"""test_docs.py — the man pages and the default config file against the programs they describe.

Every man page in packaging/man renders without a groff warning; every logagentd option of --help has an
entry in logagentd(8) naming its config key, its LOGAGENT_ variable and its default, and a commented line
in packaging/logagentd.conf with the same default; the file has no key the agent does not know; every
logagent-send option is in logagent-send(1); the example of logagent(3) compiles against <logagent.h>.
When the build has --check-config, the config file with every key uncommented must pass it."""
import glob
import os
import re
import tempfile

from pkgtest import BIN, MAN, NOT_SETTINGS, PACKAGING, ROOT, env_name, help_options, man_tp_blocks, roff_flag, \
    run, sh

AGENT = os.path.join(BIN, "logagentd")
SEND = os.path.join(BIN, "logagent-send")
CONF = os.path.join(PACKAGING, "logagentd.conf")
CONF_LINE = re.compile(r"^#([a-z0-9][a-z0-9-]*) =(?: (.*))?$")


def conf_entries():
    """{key: value} of the commented-out settings in logagentd.conf ('#key = value' lines)."""
    entries = {}
    with open(CONF, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            m = CONF_LINE.match(line.rstrip("\n"))
            if m:
                assert m.group(1) not in entries, "logagentd.conf:%d: %s listed twice" % (n, m.group(1))
                entries[m.group(1)] = m.group(2) or ""
    return entries


def test_man_pages_render_without_warnings():
    pages = sorted(glob.glob(os.path.join(MAN, "*.[1-8]")))
    names = {os.path.basename(p) for p in pages}
    assert {"logagentd.8", "logagent-send.1", "logagent.3"} <= names, names
    for page in pages:
        p = sh(["groff", "-man", "-Tutf8", "-ww", "-z", page])
        assert p.stderr == "", "%s: groff warnings:\n%s" % (page, p.stderr)
        p = sh(["man", "-l", page], env=dict(os.environ, MANWIDTH="80"))
        shown = re.sub(".\x08", "", p.stdout)  # overstrike bold, when man keeps formatting
        assert p.stderr == "" and "\nNAME\n" in shown, "%s: man -l:\n%s%s" % (page, p.stderr, shown[:500])


def test_logagentd_options_in_man_page():
    opts = help_options(AGENT)
    blocks = man_tp_blocks(os.path.join(MAN, "logagentd.8"))
    for flag, default in opts.items():
        assert flag in blocks, "logagentd(8) has no entry for --%s" % flag
        if flag in NOT_SETTINGS:
            continue
        block = blocks[flag]
        key = "\\fB%s\\fR" % flag.replace("-", "\\-")
        assert "Key: " + key in block, "logagentd(8) --%s: no 'Key: %s'" % (flag, key)
        assert "\\fB%s\\fR" % env_name(flag) in block, "logagentd(8) --%s: no %s" % (flag, env_name(flag))
        if default:
            want = "Default: \\fB%s\\fR" % default.replace("-", "\\-")
            assert want in block, "logagentd(8) --%s: default should read %r:\n%s" % (flag, want, block)
        else:
            assert "Default: empty" in block, "logagentd(8) --%s: default should be empty" % flag
    # and nothing documented that the program does not have (--config/--check-config come with the config file)
    extra = set(blocks) - set(opts) - {"config", "check-config"}
    assert not extra, "logagentd(8) documents options logagentd --help does not have: %s" % sorted(extra)


def test_logagentd_options_in_default_config():
    opts = help_options(AGENT)
    entries = conf_entries()
    settings = {f: d for f, d in opts.items() if f not in NOT_SETTINGS}
    missing = sorted(set(settings) - set(entries))
    assert not missing, "packaging/logagentd.conf lacks: %s" % missing
    unknown = sorted(set(entries) - set(settings))
    assert not unknown, "packaging/logagentd.conf has keys logagentd does not know: %s" % unknown
    for flag, default in settings.items():
        assert entries[flag] == (default or ""), "logagentd.conf: #%s = %r, but --help says the default is %r" % (
            flag, entries[flag], default)
    with open(CONF, encoding="utf-8") as f:
        text = f.read()
    assert "\n[logagentd]\n" in text, "logagentd.conf needs a [logagentd] section"
    active = [l for l in text.splitlines() if l.strip() and l[0] not in "#;" and l.strip() != "[logagentd]"]
    assert not active, "the default config must set nothing (every key commented out): %s" % active


def test_default_config_passes_check_config():
    opts = help_options(AGENT)
    if "check-config" not in opts:
        print("   (logagentd has no --check-config in this build: uncommented file not checked)")
        return
    with open(CONF, encoding="utf-8") as f:
        text = f.read()
    uncommented = "\n".join(l[1:] if CONF_LINE.match(l) else l for l in text.splitlines()) + "\n"
    with tempfile.TemporaryDirectory(prefix="la-conf-") as d:
        path = os.path.join(d, "logagentd.conf")
        with open(path, "w", encoding="utf-8") as f:
            f.write(uncommented)
        env = {k: v for k, v in os.environ.items() if not k.startswith("LOGAGENT_") and k != "LOG_SERVICE_GRPC_SERVER"}
        p = sh([AGENT, "--check-config", "--config", path], check=False, env=env)
        assert p.returncode == 0, "every default of logagentd.conf, uncommented, fails --check-config:\n%s%s" % (
            p.stdout, p.stderr)
        for flag in set(opts) - NOT_SETTINGS:
            line = [l for l in p.stdout.splitlines() if re.match(r"^%s\s*=" % re.escape(flag), l)]
            assert line and path in line[0], "--check-config: %s should come from %s:\n%s" % (flag, path, p.stdout)


def test_logagent_send_options_in_man_page():
    opts = help_options(SEND)
    with open(os.path.join(MAN, "logagent-send.1"), encoding="utf-8") as f:
        text = f.read()
    blocks = man_tp_blocks(os.path.join(MAN, "logagent-send.1"))
    for flag in opts:
        assert flag in blocks, "logagent-send(1) has no entry for --%s" % flag
    extra = set(blocks) - set(opts)
    assert not extra, "logagent-send(1) documents options logagent-send --help does not have: %s" % sorted(extra)
    assert roff_flag("flush-timeout-ms") in text


def test_library_man_page_example_compiles():
    with open(os.path.join(MAN, "logagent.3"), encoding="utf-8") as f:
        text = f.read()
    example = text.split("\n.SH EXAMPLES\n", 1)[1].split("\n.nf\n", 1)[1].split("\n.fi\n", 1)[0]
    example = example.replace("\\e", "\\").replace("\\-", "-")
    header = os.path.join(ROOT, "client-shim", "include", "logagent.h")
    with open(header, encoding="utf-8") as f:
        hdr = f.read()
    name_section = text.split("\n.SH NAME\n", 1)[1].split("\n.SH ", 1)[0]
    for fn in re.findall(r"^\S.*\b(logagent_[a-z_]+)\(", hdr, re.M):
        assert fn in name_section, "logagent(3): %s (declared in logagent.h) is not in NAME" % fn
    with tempfile.TemporaryDirectory(prefix="la-man3-") as d:
        src = os.path.join(d, "example.c")
        with open(src, "w") as f:
            f.write(example)
        sh(["cc", "-std=gnu11", "-Wall", "-Wextra", "-Werror", "-fsyntax-only",
            "-I", os.path.dirname(header), src])


if __name__ == "__main__":
    run([test_man_pages_render_without_warnings, test_logagentd_options_in_man_page,
         test_logagentd_options_in_default_config, test_default_config_passes_check_config,
         test_logagent_send_options_in_man_page, test_library_man_page_example_compiles])
