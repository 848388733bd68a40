#!/usr/bin/env bash
# A private PostgreSQL server for tests: scripts/services/postgres.sh start|stop|url
# Runs from the Debian packages on 127.0.0.1:${AIOPS_TEST_PG_PORT:-55432} with its data under .services/postgres.
set -euo pipefail
cd "$(dirname "$0")/../.."
PORT=${AIOPS_TEST_PG_PORT:-55432}
HOME_DIR=$PWD/.services/postgres
DATA=$HOME_DIR/data
BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)

as_owner() {
  # initdb and postgres refuse to run as root; the Debian package's postgres user owns the cluster then.
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

install() {
  [ -n "$BIN" ] && return 0
  if [ "$(id -u)" != 0 ]; then echo "PostgreSQL is not installed (apt-get install postgresql)" >&2; exit 1; fi
  # Keep the package from starting its own cluster on the default port.
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null
  rm -f /usr/sbin/policy-rc.d
  BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
}

start() {
  install
  mkdir -p "$HOME_DIR"
  [ "$(id -u)" = 0 ] && chown -R postgres "$HOME_DIR"
  if [ ! -f "$DATA/PG_VERSION" ]; then
    as_owner "$BIN/initdb" -D "$DATA" -U aiops -A trust --no-sync >/dev/null
  fi
  if ! as_owner "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
    as_owner "$BIN/pg_ctl" -D "$DATA" -l "$HOME_DIR/server.log" -w -t 60 start \
      -o "-p $PORT -k $HOME_DIR -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off" >/dev/null
  fi
  as_owner "$BIN/psql" -h 127.0.0.1 -p "$PORT" -U aiops -d postgres -tAc \
    "SELECT 1 FROM pg_database WHERE datname = 'aiops_test'" | grep -q 1 \
    || as_owner "$BIN/createdb" -h 127.0.0.1 -p "$PORT" -U aiops aiops_test
}

stop() {
  [ -n "$BIN" ] && [ -f "$DATA/PG_VERSION" ] && as_owner "$BIN/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null 2>&1 || true
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  url) echo "postgresql+asyncpg://aiops@127.0.0.1:$PORT/aiops_test" ;;
  *) echo "usage: $0 start|stop|url" >&2; exit 2 ;;
esac
