#!/bin/sh
# The main job, locally: logagent-sink (the reference log service) on a free port, and logagentd shipping to it.
# The sink prints every record it receives as one JSON line; the agent logs to stderr. Ctrl-C stops both.
set -eu
BUILD=${1:-build}
RUN_DIR=${LOGAGENT_RUN_DIR:-/run/logagent}
mkdir -p "$RUN_DIR" 2>/dev/null && [ -w "$RUN_DIR" ] || RUN_DIR="$(pwd)/run"
mkdir -p "$RUN_DIR"
PORT_FILE="$RUN_DIR/sink.port"
rm -f "$PORT_FILE"
# The sink runs in its own session so that the terminal's Ctrl-C reaches only the agent: the agent drains into
# the still running sink, then the sink gets exactly one SIGTERM and prints its summary.
setsid "$BUILD/logagent-sink" --listen 127.0.0.1:0 --port-file "$PORT_FILE" --out - &
SINK=$!
stop_sink() {
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
cat >&2 <<MSG

  logagent-sink listens on 127.0.0.1:$PORT; logagentd starts below.
  Send a record from another terminal:
    $BUILD/logagent-send --socket $RUN_DIR/ingest.sock --service demo --meta user=alice "hello from logagent"
  Stats:
    curl -s --unix-socket $RUN_DIR/stats.sock http://localhost/stats
  Ctrl-C stops both.

MSG
"$BUILD/logagentd" --config "" --socket "$RUN_DIR/ingest.sock" --stats-socket "$RUN_DIR/stats.sock" --upstream "127.0.0.1:$PORT"
