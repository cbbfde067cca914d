"""test_check_includes.py — check_includes.py can fail: small trees that break each of its rules, each must be
refused with a message naming the files, and a tree that keeps them must pass (ctest layout_includes_selftest)."""
import os
import subprocess
import sys
import tempfile

CHECK = os.path.join(os.path.dirname(os.path.abspath(__file__)), "check_includes.py")

# A tree that keeps every rule: the shape of the real one, a file or two per room.
CLEAN = {
    "agent/counters.h": '#include "ingest/membudget.h"\n',
    "agent/ingest/membudget.h": "#include <stdint.h>\n",
    "agent/ingest/ingest.h": '#include "config.h"\n#include "counters.h"\n',
    "agent/ingest/ingest.c": '#include "ingest/ingest.h"\n#include "flush/flusher.h"\n#include "common/clock.h"\n',
    "agent/flush/flusher.h": '#include "config.h"\n',
    "agent/flush/flusher.c": '#include "flush/flusher.h"\n',
    "agent/config.h": "",
    "agent/config.c": '#include "config.h"\n',
    "agent/stats.h": '#include "counters.h"\n#include "flush/flusher.h"\n',
    "agent/stats.c": '#include "stats.h"\n#include "ingest/ingest.h"\n',
    "agent/gen.c": '#include "logagent/v1/log_service.pb-c.h"\n',  # generated, not in the tree: skipped
    "common/clock.h": "#include <time.h>\n",
    "ctl/ctl_common.h": "",
    "ctl/logagentctl.c": '#include "ctl_common.h"\n#include "common/clock.h"\n',
    "sink/sink.c": '#include "sink_ledger.h"\n',
    "sink/sink_ledger.h": "",
}


def run(changes):
    """check_includes.py over CLEAN with `changes` applied (None deletes a file): (exit status, output)."""
    with tempfile.TemporaryDirectory() as root:
        tree = dict(CLEAN)
        tree.update(changes)
        for path, text in tree.items():
            if text is None:
                continue
            os.makedirs(os.path.join(root, os.path.dirname(path)), exist_ok=True)
            with open(os.path.join(root, path), "w", encoding="utf-8") as f:
                f.write(text)
        p = subprocess.run([sys.executable, CHECK, "--root", root], capture_output=True, text=True, timeout=60)
        return p.returncode, p.stdout + p.stderr


def refused(name, changes, *expect):
    rc, out = run(changes)
    assert rc == 1, "%s: expected a refusal, got %d:\n%s" % (name, rc, out)
    for e in expect:
        assert e in out, "%s: %r not in:\n%s" % (name, e, out)
    print("ok: %s refused" % name)


def main():
    rc, out = run({})
    assert rc == 0 and "layout_includes: ok" in out, "the clean tree was refused:\n" + out

    refused("file cycle", {"agent/a.h": '#include "b.h"\n', "agent/b.h": '#include "c.h"\n',
                           "agent/c.h": '#include "a.h"\n'},
            "cycle: files include each other: agent/a.h -> agent/b.h -> agent/c.h -> agent/a.h")
    refused("self include", {"agent/a.h": '#  include "a.h"\n'}, "cycle: agent/a.h includes itself")
    refused(".c files importing each other", {"agent/x.h": "", "agent/y.h": "", "agent/x.c": '#include "y.h"\n',
                                               "agent/y.c": '#include "x.h"\n'},
            "modules: agent/x -> agent/y -> agent/x import each other",
            'agent/x.c includes "y.h"', 'agent/y.c includes "x.h"')
    refused("a ring of modules", {"agent/x.h": "", "agent/y.h": "", "agent/z.h": '#include "config.h"\n',
                                  "agent/x.c": '#include "y.h"\n', "agent/y.c": '#include "z.h"\n',
                                  "agent/z.c": '#include "x.h"\n'},
            "modules: agent/x -> agent/y -> agent/z -> agent/x")
    refused("flush includes ingest", {"agent/flush/flusher.c": '#include "ingest/ingest.h"\n'},
            'stage: agent/flush/flusher.c:1: #include "ingest/ingest.h"')
    refused("ctl includes the agent", {"ctl/logagentctl.c": '#include "../agent/config.h"\n'},
            'program: ctl/logagentctl.c:1: #include "../agent/config.h" is agent/config.h')
    refused("common includes the agent", {"common/clock.h": '#include "../agent/config.h"\n'},
            "program: common/clock.h:1:", "common/ may include only common/")
    refused("the agent includes the sink", {"agent/config.c": '#include "../sink/sink_ledger.h"\n'},
            "program: agent/config.c:1:")
    refused("ingest includes the reader", {"agent/ingest/ingest.h": '#include "stats.h"\n'},
            'reader: agent/ingest/ingest.h:1: #include "stats.h"')
    refused("counters.h on a header that includes ours", {"agent/counters.h": '#include "ingest/ingest.h"\n'},
            "floor: agent/counters.h:1:", "includes agent/config.h, agent/counters.h")

    print("test_check_includes: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
