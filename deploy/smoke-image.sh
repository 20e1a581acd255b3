#!/usr/bin/env bash
# Builds deploy/Dockerfile and runs the image, to see it work end to end:
# the HEALTHCHECK turns healthy, the mounted config is served as the non-root
# user, and the demo fleet answers a routed chat. Needs a running Docker daemon;
# not part of `make test` (CI has no daemon). Usage: bash deploy/smoke-image.sh
#
# BASE (default python:3.11-slim-bookworm) is pulled if missing. When it cannot
# be pulled (no route to Docker Hub), a stand-in is built from Debian's own
# packages with debootstrap (python3, python3-venv, python-is-python3), carrying
# this machine's CA bundle and PIP_CERT so pip inside the build reaches the
# package index the way the host does. That stand-in is for this smoke test only.
#
# Every container runs with --network none: the checks run inside it
# (docker exec), on its own loopback. Exit 0 when every check passed.
set -euo pipefail
cd "$(dirname "$0")/.."

image=octoroute:smoke
work=$(mktemp -d)
containers=()
cleanup() {
  for c in "${containers[@]}"; do docker rm -f "$c" >/dev/null 2>&1 || true; done
  rm -rf "$work"
}
trap cleanup EXIT
say() { printf 'smoke-image: %s\n' "$*" >&2; }
fail() { say "FAILED: $*"; exit 1; }

docker info >/dev/null 2>&1 || fail "no Docker daemon answers (docker info)"

base=${BASE:-python:3.11-slim-bookworm}
if ! docker image inspect "$base" >/dev/null 2>&1 && ! timeout 60 docker pull -q "$base" >/dev/null 2>&1; then
  say "cannot pull $base: building a stand-in from Debian packages"
  base=octoroute-smoke-base:bookworm
  if ! docker image inspect "$base" >/dev/null 2>&1; then
    command -v debootstrap >/dev/null || fail "debootstrap is needed for the stand-in base (apt-get install debootstrap)"
    debootstrap --variant=minbase --include=python3,python3-venv,python-is-python3,ca-certificates \
      bookworm "$work/rootfs" http://deb.debian.org/debian >"$work/debootstrap.log" 2>&1 \
      || fail "debootstrap (see $work/debootstrap.log)"
    cp /etc/ssl/certs/ca-certificates.crt "$work/rootfs/etc/ssl/certs/ca-certificates.crt"
    rm -rf "$work/rootfs/var/cache/apt/archives"/*.deb "$work/rootfs/var/lib/apt/lists"/*
    tar -C "$work/rootfs" -c . | docker import \
      --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' --change 'CMD ["python3"]' - "$base" >/dev/null
  fi
fi

say "building $image on $base"
start=$(date +%s)
docker build -q --network host -f deploy/Dockerfile --build-arg BASE="$base" -t "$image" . >/dev/null \
  || fail "docker build"
say "built in $(($(date +%s) - start)) s; image size $(docker image inspect -f '{{.Size}}' "$image" | numfmt --to=iec)"

user=$(docker image inspect -f '{{.Config.User}}' "$image")
[ "$user" = "10001:10001" ] || fail "image user is '$user', expected 10001:10001"

# A container as deployed: the config mounted read-only, the image's own CMD.
cat >"$work/octoroute.toml" <<'EOF'
[[models.fast]]
name = "m"
base_url = "http://127.0.0.1:9/v1"
EOF
chmod 0644 "$work/octoroute.toml"
served=octoroute-smoke-$$
containers+=("$served")
docker run -d --name "$served" --network none \
  -v "$work/octoroute.toml:/etc/octoroute/octoroute.toml:ro" "$image" >/dev/null

say "waiting for the HEALTHCHECK to report healthy"
deadline=$(($(date +%s) + 90))
while :; do
  status=$(docker inspect -f '{{.State.Health.Status}}' "$served")
  [ "$status" = healthy ] && break
  [ "$(docker inspect -f '{{.State.Running}}' "$served")" = true ] || fail "container exited: $(docker logs "$served" 2>&1 | tail -5)"
  [ "$(date +%s)" -lt "$deadline" ] || fail "still '$status' after 90 s: $(docker logs "$served" 2>&1 | tail -5)"
  sleep 1
done

inside() { docker exec "$1" python -c "$2"; }
[ "$(docker exec "$served" id -u)" = 10001 ] || fail "the gateway does not run as uid 10001"
inside "$served" "
import json, urllib.request
get = lambda path: urllib.request.urlopen('http://127.0.0.1:3000' + path, timeout=5)
assert get('/health').read() == b'OK'
assert b'<html' in get('/dashboard').read()
rows = json.load(get('/models'))['endpoints']
assert [(r['model'], r['base_url']) for r in rows] == [('m', 'http://127.0.0.1:9/v1')], rows
" || fail "/health, /dashboard or /models of the mounted config"
say "ok: healthy, uid 10001, /health, /dashboard and the mounted config's /models"

# The demo fleet inside the image: a chat routed by the learned scorer.
demo=octoroute-smoke-demo-$$
containers+=("$demo")
docker run -d --name "$demo" --network none "$image" serve --demo --host 127.0.0.1 --port 3000 >/dev/null
inside "$demo" "
import json, time, urllib.request
body = json.dumps({'model': 'auto', 'messages': [{'role': 'user', 'content': 'hi there'}]}).encode()
deadline = time.monotonic() + 30
while True:
    try:
        reply = urllib.request.urlopen(urllib.request.Request('http://127.0.0.1:3000/v1/chat/completions', body,
                                        {'Content-Type': 'application/json'}), timeout=5)
        break
    except OSError:
        if time.monotonic() > deadline:
            raise
        time.sleep(0.2)
assert reply.headers['X-Octoroute-Strategy'] == 'learned', dict(reply.headers)
answer = json.load(reply)['choices'][0]['message']['content']
assert 'answering: hi there' in answer, answer
" || fail "a chat through the demo fleet"
say "ok: the demo fleet in the image answered a routed chat"
say "all checks passed"
