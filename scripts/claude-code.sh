#!/usr/bin/env bash
# The Claude Code CLI the test suite drives (tests/integration/test_claude_code_cli.py),
# pinned, installed with npm into .tools/claude-code (gitignored), never globally.
# Reinstalls only when the installed version is not the pinned one.
set -euo pipefail
VERSION=2.1.330
cd "$(dirname "$0")/.."
DIR=.tools/claude-code
BIN=$DIR/node_modules/.bin/claude
if [ -x "$BIN" ] && [ "$("$BIN" --version 2>/dev/null | cut -d' ' -f1)" = "$VERSION" ]; then
  exit 0
fi
command -v npm >/dev/null || { echo "npm is missing: run 'make system-deps'" >&2; exit 1; }
echo "installing @anthropic-ai/claude-code@$VERSION into $DIR" >&2
mkdir -p "$DIR"
npm install --prefix "$DIR" --no-save --no-audit --no-fund --loglevel=error "@anthropic-ai/claude-code@$VERSION" >&2
"$BIN" --version >/dev/null
