#!/bin/bash
# run.sh — the example in one command (the original project's setup_and_run.sh, minus the installing):
# logagent-sink (the reference log service), logagentd shipping to it (--upstream), and this service under
# gunicorn with several workers, all in a folder of their own. Prints the URLs and socket paths; Ctrl-C or
# SIGTERM stops all three together (gunicorn first, so its workers flush to the agent; then the agent, which
# drains to the sink; then the sink, which prints its summary). If one of them dies, the others are stopped.
#
#   ./run.sh                                    # http://127.0.0.1:8000, 4 workers
#   PORT=8001 WORKERS=8 ./run.sh
#   LOGAGENT_BUILD_DIR=/path/to/build ./run.sh  # where logagentd and logagent-sink are
#
# Environment: LOGAGENT_BUILD_DIR (default: the repository's build/, ../../../../build from here), HOST
# (127.0.0.1), PORT (8000; 0: any free port, the one chosen is printed), WORKERS (4), RUN_DIR (default: a new
# temp folder, removed at the end; a folder you give is kept, with sink.jsonl = every record delivered).
# Anything else the service reads (DJANGO_*, LOGAGENT_CLIENT_*) passes through. Needs Debian's gunicorn
# (apt-get install gunicorn), python3-django and python3-msgpack.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
BUILD=${LOGAGENT_BUILD_DIR:-$HERE/../../../../build}
HOST=${HOST:-127.0.0.1}
PORT=${PORT:-8000}
WORKERS=${WORKERS:-4}
GUNICORN=${GUNICORN:-gunicorn}

die() { echo "run.sh: $*" >&2; exit 1; }
for b in logagentd logagent-sink; do
	[ -x "$BUILD/$b" ] || die "no $BUILD/$b: build the repository first (make build) or set LOGAGENT_BUILD_DIR"
done
command -v "$GUNICORN" >/dev/null || die "no gunicorn on PATH: apt-get install gunicorn"
BUILD=$(cd "$BUILD" && pwd)

if [ -n "${RUN_DIR:-}" ]; then
	mkdir -p "$RUN_DIR"
	KEEP=1
else
	RUN_DIR=$(mktemp -d "${TMPDIR:-/tmp}/logagent-django.XXXXXX")
	KEEP=0
fi
RUN_DIR=$(cd "$RUN_DIR" && pwd)
INGEST=$RUN_DIR/ingest.sock
STATS=$RUN_DIR/stats.sock

SINK_PID= AGENT_PID= GUNICORN_PID=
STOPPED=0

# stop PID: SIGTERM, then wait for it (up to 60 s, then SIGKILL). Only our own children, by pid.
stop_one() {
	local pid=$1 i
	[ -n "$pid" ] || return 0
	kill -TERM "$pid" 2>/dev/null || return 0
	for ((i = 0; i < 600; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}

stop_all() {
	[ "$STOPPED" = 1 ] && return
	STOPPED=1
	trap '' INT TERM
	echo "run.sh: stopping gunicorn, logagentd, logagent-sink" >&2
	stop_one "$GUNICORN_PID"
	stop_one "$AGENT_PID"
	stop_one "$SINK_PID"
	grep '^{' "$RUN_DIR/sink.log" 2>/dev/null | tail -1 | sed 's/^/run.sh: sink summary: /' >&2 || true
	if [ "$KEEP" = 0 ]; then
		rm -rf "$RUN_DIR"
	else
		echo "run.sh: kept $RUN_DIR" >&2
	fi
}
trap stop_all EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# wait_until SECONDS WHAT CMD...: polls CMD every 0.05 s; dies when one of ours exited or time ran out.
wait_until() {
	local limit=$1 what=$2 i
	shift 2
	for ((i = 0; i < limit * 20; i++)); do
		"$@" && return 0
		for pid in $SINK_PID $AGENT_PID $GUNICORN_PID; do
			kill -0 "$pid" 2>/dev/null || die "waiting for $what: pid $pid exited (logs in $RUN_DIR)"
		done
		sleep 0.05
	done
	die "timed out after $limit s waiting for $what (logs in $RUN_DIR)"
}

# job control: each child in a process group of its own, so that a terminal's Ctrl-C reaches this script only
# and the stop goes in order (gunicorn takes SIGINT as a quick shutdown, SIGTERM as a graceful one)
set -m
"$BUILD/logagent-sink" --listen 127.0.0.1:0 --port-file "$RUN_DIR/sink.port" --out "$RUN_DIR/sink.jsonl" \
	>/dev/null 2>"$RUN_DIR/sink.log" &
SINK_PID=$!
wait_until 20 "logagent-sink's port" test -s "$RUN_DIR/sink.port"
SINK_PORT=$(cat "$RUN_DIR/sink.port")

LOGAGENT_CONFIG= "$BUILD/logagentd" --socket "$INGEST" --stats-socket "$STATS" \
	--upstream "127.0.0.1:$SINK_PORT" >"$RUN_DIR/agent.log" 2>&1 &
AGENT_PID=$!
wait_until 20 "logagentd's sockets" test -S "$STATS" -a -S "$INGEST"

# the service: this checkout's logagent and log_client (settings.py finds them too; PYTHONPATH makes it explicit)
cd "$HERE"
LOGAGENT_SOCKET=$INGEST PYTHONPATH="$HERE/../..${PYTHONPATH:+:$PYTHONPATH}" \
	"$GUNICORN" --workers "$WORKERS" --bind "$HOST:$PORT" --timeout 300 --graceful-timeout 30 \
	--log-file "$RUN_DIR/gunicorn.log" --access-logfile "$RUN_DIR/access.log" django_service.wsgi &
GUNICORN_PID=$!
listening() { grep -q 'Listening at: ' "$RUN_DIR/gunicorn.log" 2>/dev/null; }
wait_until 60 "gunicorn to listen" listening
booted() { [ "$(grep -c 'Booting worker' "$RUN_DIR/gunicorn.log")" -ge "$WORKERS" ]; }
wait_until 60 "$WORKERS gunicorn workers" booted
URL=$(grep -o 'Listening at: [^ ]*' "$RUN_DIR/gunicorn.log" | head -1 | cut -d' ' -f3)

cat <<EOF
logagent example service, everything in $RUN_DIR
  service:      $URL/api/write_log/  (and $URL/api/batch_write_test/, $URL/api/concurrent_test/)
                gunicorn, $WORKERS workers, pid $GUNICORN_PID (log: gunicorn.log, access.log)
  agent:        LOGAGENT_SOCKET=$INGEST
                LOGAGENT_STATS_SOCKET=$STATS   (logagentctl --stats-socket $STATS stats)
                pid $AGENT_PID (log: agent.log)
  log service:  logagent-sink at 127.0.0.1:$SINK_PORT, pid $SINK_PID, records in sink.jsonl
try:
  curl -s $URL/api/write_log/ -d '{"message": "hello", "service_name": "demo"}'
  LOGAGENT_STATS_SOCKET=$STATS /usr/bin/python3 $HERE/test_client.py --url $URL
  LOGAGENT_SOCKET=$INGEST LOGAGENT_STATS_SOCKET=$STATS /usr/bin/python3 $HERE/direct_test.py
ready; Ctrl-C stops all three
EOF

# until one of them exits (then the others are stopped: EXIT trap) or a signal comes (INT/TERM traps)
set +e
wait -n "$SINK_PID" "$AGENT_PID" "$GUNICORN_PID"
rc=$?
echo "run.sh: a process exited (status $rc); stopping the others" >&2
exit 1
