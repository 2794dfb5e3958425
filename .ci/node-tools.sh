#!/usr/bin/env bash
# Installs the pinned Node 22 and Zapier CLI into .tools/ (from the npm registry only),
# leaving the system Node untouched. `zapier-platform validate` needs Node 22; the app's
# own tests run on any Node >= 18.
#   .ci/node-tools.sh        # then: .tools/node_modules/.bin/node, .tools/node_modules/.bin/zapier-platform
set -euo pipefail
cd "$(dirname "$0")/.."
NODE_VERSION=22.23.3
ZAPIER_CLI_VERSION=19.1.0
TOOLS=.tools
have() { [ -x "$TOOLS/node_modules/.bin/node" ] && [ -x "$TOOLS/node_modules/.bin/zapier-platform" ] \
  && [ "$("$TOOLS/node_modules/.bin/node" --version)" = "v$NODE_VERSION" ]; }
if ! have; then
  mkdir -p "$TOOLS"
  npm install --prefix "$TOOLS" --no-audit --no-fund --no-save --loglevel=error \
    "node@$NODE_VERSION" "zapier-platform-cli@$ZAPIER_CLI_VERSION" >/dev/null
fi
have
echo "$(pwd)/$TOOLS/node_modules/.bin"
