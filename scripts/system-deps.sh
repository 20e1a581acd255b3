#!/usr/bin/env bash
# Debian packages the test suite drives for real: Chromium + ChromeDriver (the
# dashboard test), Prometheus + promtool (the scrape test and the lint of
# /metrics), npm (installs the pinned Claude Code CLI: scripts/claude-code.sh),
# nginx and Caddy (deploy/nginx.conf and deploy/Caddyfile in front of the
# gateway) and systemd's
# systemd-analyze (verifies deploy/octoroute.service). Installs only what is
# missing; needs root (or sudo) when it must.
set -euo pipefail
missing=()
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
{ command -v promtool >/dev/null && command -v prometheus >/dev/null; } || missing+=(prometheus)
command -v npm >/dev/null || missing+=(npm)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
command -v caddy >/dev/null || missing+=(caddy)
command -v systemd-analyze >/dev/null || missing+=(systemd)
[ ${#missing[@]} -eq 0 ] && exit 0
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "installing Debian packages: ${missing[*]}" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
