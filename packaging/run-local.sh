#!/bin/sh
# The main job, locally: logagent-sink (the reference log service) on a free port, and logagentd shipping to it.
# The sink prints every record it receives as one JSON line; the agent logs to stderr. Ctrl-C stops both.
# Its sockets live in a folder of its own, ./run (LOGAGENT_RUN_DIR to choose another), never /run/logagent, where
# an installed agent lives: a demo must not collide with a real installation.
set -eu
BUILD=${1:-build}
RUN_DIR=${LOGAGENT_RUN_DIR:-$(pwd)/run}
mkdir -p "$RUN_DIR"
RUN_DIR=$(cd "$RUN_DIR" && pwd)
PORT_FILE="$RUN_DIR/sink.port"
rm -f "$PORT_FILE"
# The sink runs in its own session so that the terminal's Ctrl-C reaches only the agent: the agent drains into
# the still running sink, then the sink gets exactly one SIGTERM and prints its summary.
setsid "$BUILD/logagent-sink" --listen 127.0.0.1:0 --port-file "$PORT_FILE" --out - &
SINK=$!
stop_sink() {
  rm -f "$PORT_FILE"
  [ -n "$SINK" ] || return 0
  kill -TERM "$SINK" 2>/dev/null || true
  wait "$SINK" 2>/dev/null || true
  SINK=
}
trap stop_sink EXIT
trap 'exit 130' INT TERM
i=0
while [ ! -s "$PORT_FILE" ]; do
  i=$((i + 1)); [ $i -lt 100 ] || { echo "logagent-sink did not start" >&2; exit 1; }
  sleep 0.1
done
PORT=$(cat "$PORT_FILE")
ABS_BUILD=$(cd "$BUILD" && pwd)
cat >&2 <<MSG

  logagent-sink listens on 127.0.0.1:$PORT; logagentd starts below, its sockets in $RUN_DIR.
  In another terminal:
    export LOGAGENT_SOCKET=$RUN_DIR/ingest.sock LOGAGENT_STATS_SOCKET=$RUN_DIR/stats.sock
    $ABS_BUILD/logagent-send --service demo --meta user=alice "hello from logagent"
    $ABS_BUILD/logagentctl stats
  Ctrl-C stops both.

MSG
"$BUILD/logagentd" --config "" --socket "$RUN_DIR/ingest.sock" --stats-socket "$RUN_DIR/stats.sock" --upstream "127.0.0.1:$PORT"
