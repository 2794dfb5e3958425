#!/usr/bin/env bash
# The service against our fake DumplingAI: try every route without a real key.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
FAKE_PORT=${FAKE_PORT:-8900}
"$BIN/python" -m fakeupstream --port "$FAKE_PORT" --demo --follow-every "${FOLLOW_EVERY:-20}" &
fake=$!
trap 'kill $fake 2>/dev/null' EXIT
export DUMPLING_BASE_URL="http://127.0.0.1:$FAKE_PORT"
export DATABASE_URL=${DATABASE_URL:-sqlite:///$PWD/instance/demo.db}
export REFRESH_WINDOW_SECONDS=${REFRESH_WINDOW_SECONDS:-0} POLL_INTERVAL_SECONDS=${POLL_INTERVAL_SECONDS:-15}
export ALLOW_PRIVATE_WEBHOOK_TARGETS=1
export HOST=127.0.0.1  # private webhook targets are allowed: never reachable from another machine
cat <<MSG
Demo: API key 'demo-key'; handles 'dumplingdemo' (follows a new account every ${FOLLOW_EVERY:-20}s) and 'charlidamelio'.
  curl -s -X POST localhost:${PORT:-8000}/v1/api/following -H 'Authorization: Bearer demo-key' -H 'Content-Type: application/json' -d '{"handle":"@charlidamelio","limit":50}'
  curl -s -X POST localhost:${PORT:-8000}/v1/zapier/triggers/new-following -H 'Authorization: Bearer demo-key' -H 'Content-Type: application/json' -d '{"handle":"dumplingdemo"}'
Accounts both 'dumplingdemo' and 'dumplingtwin' followed (the twin follows every other one a tick later), and unfollows ('dumplingdemo' unfollows one every 6th tick; a refresh sees it for free once a first sweep recorded the list):
  curl -s -X POST localhost:${PORT:-8000}/v1/api/triggers/followed-by-many -H 'Authorization: Bearer demo-key' -H 'Content-Type: application/json' -d '{"handles":["dumplingdemo","dumplingtwin"],"minHandles":2,"withinDays":1}'
  curl -s -X POST localhost:${PORT:-8000}/v1/api/triggers/unfollowed -H 'Authorization: Bearer demo-key' -H 'Content-Type: application/json' -d '{"handle":"dumplingdemo","sweepEvery":1}'
  curl -s -X POST localhost:${PORT:-8000}/v1/api/following/check -H 'Authorization: Bearer demo-key' -H 'Content-Type: application/json' -d '{"handle":"dumplingtwin","target":"charlidamelio"}'
Cost controls: check at most every 5 minutes, spend at most 20 credits a day, then see what it cost:
  curl -s -X POST localhost:${PORT:-8000}/v1/api/triggers/new-following -H 'Authorization: Bearer demo-key' -H 'X-Daily-Credit-Budget: 20' -H 'Content-Type: application/json' -d '{"handle":"dumplingdemo","checkEvery":5}'
  curl -s localhost:${PORT:-8000}/v1/api/usage -H 'Authorization: Bearer demo-key' -H 'X-Daily-Credit-Budget: 20'
MSG
scripts/run.sh
