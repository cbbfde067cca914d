"""pkgtest.py — small helpers shared by the packaging tests: paths, skipping, --help parsing, man page text.

A packaging test that cannot run here (sanitizer build, not root, a tool missing) exits 77, which ctest
reports as skipped (SKIP_RETURN_CODE in CMakeLists.txt), after printing why."""
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))

from harness import BIN, SAN, run, scaled  # noqa: E402  (re-exported for the tests)

PACKAGING = os.path.join(ROOT, "packaging")
MAN = os.path.join(PACKAGING, "man")
SKIP = 77


def skip(reason):
    print("SKIP: %s" % reason)
    sys.stdout.flush()
    sys.exit(SKIP)


def sh(cmd, check=True, **kw):
    """Runs cmd (a list), returns CompletedProcess with text output; check=True fails on non-zero exit."""
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    kw.setdefault("timeout", scaled(120))
    p = subprocess.run(cmd, **kw)
    if check and p.returncode != 0:
        raise AssertionError("%s exited %d\nstdout:\n%s\nstderr:\n%s" % (" ".join(cmd), p.returncode,
                                                                          p.stdout[-4000:], p.stderr[-4000:]))
    return p


_FLAG = re.compile(r"^\s+--([a-z0-9][a-z0-9-]*)\b(.*)$")
_DEFAULT = re.compile(r"\(default: (.*)\)\s*$")


def help_options(binary):
    """{flag: default text or None} from `binary --help` (flags without the leading --)."""
    out = sh([binary, "--help"]).stdout
    opts = {}
    for line in out.splitlines():
        m = _FLAG.match(line)
        if m:
            d = _DEFAULT.search(m.group(2))
            opts[m.group(1)] = d.group(1) if d else None
    assert opts, "no options found in %s --help:\n%s" % (binary, out)
    return opts


# Options that are actions or pick the file, not settings: no config key, no line in logagentd.conf.
NOT_SETTINGS = {"help", "version", "config", "check-config"}


def env_name(flag):
    return "LOGAGENT_" + flag.upper().replace("-", "_")


def roff_flag(flag):
    """How a flag is written in our man pages' source: every '-' escaped as \\-."""
    return "\\-\\-" + flag.replace("-", "\\-")


def man_tp_blocks(path):
    """The .TP entries of a man page: {the first option on the tag line (without --): the block's text}."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    blocks = {}
    for chunk in text.split("\n.TP\n")[1:]:
        tag, _, body = chunk.partition("\n")
        m = re.search(r"\\-\\-([a-z0-9\\-]+)", tag)
        if m:
            body = body.split("\n.SH ")[0].split("\n.SS ")[0]
            blocks[m.group(1).replace("\\-", "-")] = tag + "\n" + body
    return blocks


def target_exists(build_dir, target):
    """Does the CMake build dir define this target? (Makefile generator's `help` target lists them.)"""
    out = sh(["cmake", "--build", build_dir, "--target", "help"]).stdout
    return re.search(r"^\.\.\. %s(\s|$)" % re.escape(target), out, re.M) is not None
