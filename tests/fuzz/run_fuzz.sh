#!/bin/sh
# run_fuzz.sh — what the `fuzz` ctest tests run (tests/fuzz/CMakeLists.txt); usable by hand the same way.
#
#   run_fuzz.sh replay BIN SRC NAME WORK 0        every seed (SRC/corpus/NAME) and regression input
#                                                 (SRC/regressions/NAME) once: fails on any crash
#   run_fuzz.sh fuzz   BIN SRC NAME WORK SECONDS  fuzz for SECONDS over a fresh copy of the seeds in WORK/corpus
#
# Nothing is ever written under SRC: new inputs go to WORK/corpus, crash inputs to WORK/ (crash-*, leak-*,
# timeout-*, oom-*), the targets' scratch files to WORK/tmp. WORK is emptied at the start of each fuzz run.
set -eu
mode=$1 bin=$2 src=$3 name=$4 work=$5 seconds=$6
corpus=$src/corpus/$name
regress=$src/regressions/$name
dict=$src/$name.dict

# -fno-sanitize-recover makes UBSan findings fatal; leaks are findings too (libFuzzer checks per input).
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:allocator_may_return_null=0}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
# -timeout: one input taking this long is a hang (a finding); -rss_limit_mb: two targets run at once.
common="-timeout=25 -rss_limit_mb=2048"
[ -f "$dict" ] && common="$common -dict=$dict"

explain() {
    echo "==== fuzz_$name found a problem. The input that shows it is in $work/" >&2
    echo "     (crash-*, leak-*, timeout-*, oom-*)." >&2
    echo "     Reproduce:          $bin $work/crash-<hash>" >&2
    echo "     Keep as regression: cp $work/crash-<hash> $regress/<what-it-is>   (docs/development.md, Fuzzing)" >&2
}

case $mode in
replay)
    mkdir -p "$work/tmp"
    files=$(find "$corpus" "$regress" -type f ! -name 'README*' 2>/dev/null | sort)
    [ -n "$files" ] || { echo "no seeds in $corpus" >&2; exit 1; }
    set +e
    # shellcheck disable=SC2086
    TMPDIR="$work/tmp" "$bin" $common -artifact_prefix="$work/replay-" $files >"$work/replay.log" 2>&1
    rc=$?
    set -e
    if [ $rc -ne 0 ]; then
        cat "$work/replay.log" >&2 # the last "Running:" line names the input
        # libFuzzer stops at the first failure: try each input alone to name every one that fails
        failed=""
        for f in $files; do # shellcheck disable=SC2086
            TMPDIR="$work/tmp" "$bin" $common -artifact_prefix="$work/replay-" "$f" >/dev/null 2>&1 ||
                failed="$failed
    $f"
        done
        echo "fuzz_$name: these inputs fail (the first one's report is above):$failed" >&2
        exit 1
    fi
    echo "fuzz_$name: $(echo "$files" | wc -l) seed and regression inputs pass"
    ;;
fuzz)
    rm -rf "$work"
    mkdir -p "$work/corpus" "$work/tmp"
    cp "$corpus"/* "$work/corpus/"
    set +e
    # shellcheck disable=SC2086
    TMPDIR="$work/tmp" "$bin" $common ${LOGAGENT_FUZZ_SEED:+-seed=$LOGAGENT_FUZZ_SEED} -max_total_time="$seconds" -print_final_stats=1 \
        -artifact_prefix="$work/" "$work/corpus"
    rc=$?
    set -e
    if [ $rc -ne 0 ]; then
        explain
        exit 1
    fi
    ;;
*)
    echo "usage: $0 replay|fuzz BIN SRC NAME WORK SECONDS" >&2
    exit 2
    ;;
esac
