#!/bin/sh
# Installs everything logagent needs to build, run and test on Debian 12 (idempotent; run as root).
set -eu
PKGS="build-essential cmake pkg-config clang libclang-rt-14-dev \
  libevent-dev libgrpc-dev libprotobuf-c-dev protobuf-c-compiler libmsgpack-dev zlib1g-dev \
  libinih-dev libjansson-dev libsystemd-dev \
  python3 python3-dev python3-msgpack python3-prometheus-client python3-yaml curl dpkg-dev lintian systemd \
  python3-django python3-grpcio python3-protobuf protobuf-compiler python3-fluent-logger gunicorn"
# Node.js and npm run the interop tests' real peers (tests/interop: the OpenTelemetry JS SDK, @grpc/grpc-js); a
# machine that already has a node (e.g. from NodeSource) keeps it.
command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || PKGS="$PKGS nodejs npm"
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends $missing
fi
echo "logagent dependencies: all installed"
