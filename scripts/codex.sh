#!/usr/bin/env bash
# The OpenAI Codex CLI the test suite drives (tests/integration/test_codex_cli.py),
# pinned, installed with npm into .tools/codex (gitignored), never globally.
# Reinstalls only when the installed version is not the pinned one.
set -euo pipefail
VERSION=0.171.0
cd "$(dirname "$0")/.."
DIR=.tools/codex
BIN=$DIR/node_modules/.bin/codex
if [ -x "$BIN" ] && [ "$("$BIN" --version 2>/dev/null | awk '{print $NF}')" = "$VERSION" ]; then
  exit 0
fi
command -v npm >/dev/null || { echo "npm is missing: run 'make system-deps'" >&2; exit 1; }
echo "installing @openai/codex@$VERSION into $DIR" >&2
mkdir -p "$DIR"
npm install --prefix "$DIR" --no-save --no-audit --no-fund --loglevel=error "@openai/codex@$VERSION" >&2
"$BIN" --version >/dev/null
