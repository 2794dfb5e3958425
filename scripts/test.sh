#!/usr/bin/env bash
# Every test: SQLite always; PostgreSQL too when TEST_DATABASE_URL is set, or when a
# PostgreSQL server binary is installed (a throwaway cluster is started and removed).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin

if command -v npm >/dev/null 2>&1; then
  [ -d manifests/zapier/node_modules ] || npm ci --prefix manifests/zapier --no-audit --no-fund --loglevel=error
else
  echo "npm not found: the Zapier runtime tests will be SKIPPED"
fi

if [ -z "${TEST_DATABASE_URL:-}" ]; then
  initdb=$(ls /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -n 1 || true)
  if [ -n "$initdb" ]; then
    pgbin=$(dirname "$initdb")
    dir=$(mktemp -d /tmp/tf-pg.XXXXXX)
    port=$("$BIN/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
    [ "$(id -u)" = 0 ] && chown postgres "$dir"
    as_pg "$pgbin/initdb" -D "$dir/data" -A trust -U postgres --no-sync >/dev/null
    as_pg "$pgbin/pg_ctl" -D "$dir/data" -l "$dir/log" -w \
      -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300" start >/dev/null
    trap 'as_pg "$pgbin/pg_ctl" -D "$dir/data" -m fast stop >/dev/null 2>&1; rm -rf "$dir"' EXIT
    export TEST_DATABASE_URL="postgresql+psycopg://postgres@127.0.0.1:$port/postgres"
    echo "PostgreSQL $("$pgbin/postgres" --version | awk '{print $3}') started on port $port for the tests"
  else
    echo "PostgreSQL not found: the PostgreSQL runs are SKIPPED (SQLite only). Set TEST_DATABASE_URL or install postgresql."
  fi
fi

"$BIN/python" -m pytest "$@"
