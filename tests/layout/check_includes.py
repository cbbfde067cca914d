"""check_includes.py — the layering of the C sources, checked from their `#include "..."` lines (ctest layout_includes).

Reads every .c and .h under agent/, ctl/, common/ and sink/, resolves each quoted include the way the compiler
does for that program (the including file's folder first, then the program's include folders: agent/ and the
tree's root for the agent, ctl/ and the root for logagentctl, sink/ and the root for the sink; an include that
resolves to nothing in the tree, such as a generated .pb-c.h, is not ours and is skipped) and fails, naming the
files, when:

  cycle     the file-level include graph has a cycle (a.h includes b.h includes a.h);
  modules   two modules import each other, or more go round in a ring: a module is x.c with x.h, and it imports
            y when x.c or x.h includes y.h (x.c includes y.h and y.c includes x.h is the smallest such ring);
  program   a program's files include another program's: agent/ takes only agent/ and common/, ctl/ only ctl/ and
            common/, sink/ only sink/ and common/, and common/ only common/ (logagentd, logagentctl and
            logagent-sink share no object file; common/ is the header-only floor they all may stand on);
  stage     agent/flush/ includes agent/ingest/ (the flusher's threads know nothing of the main loop's
            connections; the way up is flusher.h's callbacks, which ingest registers);
  reader    agent/ingest/ or agent/flush/ includes a reader of every stage's counters (stats.h, stats_http.h,
            metrics.h, health.h): the stages write their counters through counters.h, the bottom floor, and the
            readers on top gather them;
  floor     agent/counters.h includes a header that includes another of ours: it is the floor every stage writes
            its counters through, so it may stand only on leaf headers (today ingest/membudget.h, whose struct
            ingest_stats holds by value).

Usage: check_includes.py [--root DIR]   (default: the tree this script is in). Exit 0 when clean, 1 with one line
per finding otherwise. tests/layout/test_check_includes.py feeds it small trees that break each rule."""
import argparse
import os
import re
import sys

ROOMS = ("agent", "ctl", "common", "sink")
# What each program's files may include (by top folder).
ALLOWED = {
    "agent": ("agent", "common"),
    "ctl": ("ctl", "common"),
    "sink": ("sink", "common"),
    "common": ("common",),
}
# Include folders per program after the including file's own folder (CMake's target_include_directories).
SEARCH = {"agent": ("agent", ""), "ctl": ("ctl", ""), "sink": ("sink", ""), "common": ("",)}
READERS = ("agent/stats.h", "agent/stats_http.h", "agent/metrics.h", "agent/health.h")
STAGES = ("agent/ingest/", "agent/flush/")
FLOOR = "agent/counters.h"

INCLUDE = re.compile(r'^\s*#\s*include\s*"([^"]+)"')


def scan(root):
    """{file: [(line number, included text, resolved file or None)]} for every source file in the rooms."""
    files = []
    for room in ROOMS:
        for folder, _, names in os.walk(os.path.join(root, room)):
            for n in sorted(names):
                if n.endswith((".c", ".h")):
                    files.append(os.path.relpath(os.path.join(folder, n), root).replace(os.sep, "/"))
    graph = {}
    for f in sorted(files):
        edges = []
        with open(os.path.join(root, f), encoding="utf-8", errors="replace") as fh:
            for lineno, line in enumerate(fh, 1):
                m = INCLUDE.match(line)
                if m:
                    edges.append((lineno, m.group(1), resolve(root, f, m.group(1))))
        graph[f] = edges
    return graph


def resolve(root, f, name):
    room = f.split("/", 1)[0]
    for base in (os.path.dirname(f),) + SEARCH[room]:
        cand = os.path.normpath(os.path.join(base, name)).replace(os.sep, "/")
        if not cand.startswith("../") and os.path.isfile(os.path.join(root, cand)):
            return cand
    return None


def deps(graph, f):
    return [t for _, _, t in graph.get(f, ()) if t is not None]


def cycles(nodes, succ):
    """One cycle (a list of nodes, first repeated at the end) per strongly connected component that has one."""
    index, low, on, stack, out, counter = {}, {}, set(), [], [], [0]

    def strong(v):  # Tarjan, iterative so that a deep tree cannot hit Python's recursion limit
        work = [(v, iter(succ(v)))]
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        while work:
            node, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter[0]
                    counter[0] += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(succ(w))))
                    break
                if w in on:
                    low[node] = min(low[node], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on.discard(w)
                        comp.append(w)
                        if w == node:
                            break
                    if len(comp) > 1 or node in succ(node):
                        out.append(ring_in(set(comp), succ))

    for v in sorted(nodes):
        if v not in index:
            strong(v)
    return out


def ring_in(comp, succ):
    """A shortest cycle through the smallest node of a strongly connected component (breadth first)."""
    start = min(comp)
    prev, queue = {start: None}, [start]
    for v in queue:
        for w in sorted(succ(v)):
            if w == start:
                path = [v]
                while prev[path[-1]] is not None:
                    path.append(prev[path[-1]])
                return path[::-1] + [start]
            if w in comp and w not in prev:
                prev[w] = v
                queue.append(w)
    return [start, start]


def module(f):
    """x.c, x.h and x_internal.h (what x's own files share, kept out of x.h) are one module."""
    stem = f.rsplit(".", 1)[0]
    return stem[: -len("_internal")] if stem.endswith("_internal") else stem


def check(root):
    graph = scan(root)
    problems = []

    for ring in cycles(graph.keys(), lambda f: set(deps(graph, f))):
        if len(ring) == 2:
            problems.append("cycle: %s includes itself" % ring[0])
        else:
            problems.append("cycle: files include each other: %s" % " -> ".join(ring))

    # modules: x imports y when x.c or x.h includes y.h (the edge remembers which file did, for the message)
    why = {}
    for f in graph:
        for _, name, t in graph[f]:
            if t is not None and t.endswith(".h") and module(t) != module(f):
                why.setdefault((module(f), module(t)), "%s includes \"%s\"" % (f, name))
    mods = {module(f) for f in graph}
    msucc = {m: set() for m in mods}
    for a, b in why:
        msucc[a].add(b)
    for ring in cycles(mods, lambda m: msucc[m]):
        steps = "; ".join(why[(a, b)] for a, b in zip(ring, ring[1:]))
        problems.append("modules: %s import each other (%s)" % (" -> ".join(ring), steps))

    for f in sorted(graph):
        room = f.split("/", 1)[0]
        for lineno, name, t in graph[f]:
            if t is None:
                continue
            at = "%s:%d: #include \"%s\"" % (f, lineno, name)
            if t.split("/", 1)[0] not in ALLOWED[room]:
                problems.append("program: %s is %s; %s/ may include only %s" %
                                (at, t, room, " and ".join(r + "/" for r in ALLOWED[room])))
            if f.startswith("agent/flush/") and t.startswith("agent/ingest/"):
                problems.append("stage: %s: the flusher's room includes ingest's" % at)
            if f.startswith(STAGES) and t in READERS:
                problems.append("reader: %s: a stage includes the stats reader %s (write counters through %s)" %
                                (at, t, FLOOR))
            if f == FLOOR and deps(graph, t):
                problems.append("floor: %s: %s includes %s, but %s may include only leaf headers" %
                                (at, t, ", ".join(deps(graph, t)), FLOOR))
    return graph, problems


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--root", default=os.path.dirname(os.path.dirname(here)))
    args = ap.parse_args()
    graph, problems = check(args.root)
    for p in problems:
        print(p)
    if problems:
        print("layout_includes: %d problem(s) in %s (rules: tests/layout/check_includes.py)" % (len(problems), args.root))
        return 1
    print("layout_includes: ok (%d files, %d includes of ours)" %
          (len(graph), sum(len(deps(graph, f)) for f in graph)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
