#!/usr/bin/env bash
# Start web (gunicorn) and worker on one machine; Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
umask 077  # instance/ (database, secret) is readable by this user only
if [ -z "${SECRET_KEY:-}" ] && [ "${APP_ENV:-development}" = development ]; then
  # Generated once per machine, kept in instance/secret_key (0600): never a value from the repository.
  SECRET_KEY=$("$BIN/python" -m integration.devsecret instance)
  export SECRET_KEY
fi
"$BIN/python" -m integration.migrate
"$BIN/python" -m integration.worker &
worker=$!
"$BIN/gunicorn" -c gunicorn.conf.py "app:create_app()" &
web=$!
trap 'kill $worker $web 2>/dev/null; wait' INT TERM EXIT
echo "service on http://127.0.0.1:${PORT:-8000} (worker pid $worker)"
wait -n $worker $web
