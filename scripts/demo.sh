#!/usr/bin/env bash
# shellcheck disable=SC2317  # functions run from traps look unreachable to shellcheck
# The README's main command: see meshgate route, balance and annotate real requests.
#
# Usage: scripts/demo.sh
#
# Builds meshgate and scripts/demoorigin, starts three demo origins (two instances of "api",
# one of "web"; each answers with JSON describing the request it received, headers included),
# writes a demo config to a temp dir and runs `meshgate edge` with it:
#
#   /api/*  → api (round_robin over 2 instances, /api/ rewritten to /)
#   /*      → web
#
# The access log goes to stdout, the process log to stderr. Ctrl-C stops everything.
#
# Environment:
#   DEMO_SELFTEST=1   run the curl checks itself (both api instances and web answer, the
#                     rewrite and X-Forwarded-*/X-Request-Id headers arrive, the admin API
#                     answers), then stop and exit 0 (pass) or 1 (fail)
#   DEMO_PORT=        listener port (default 8080 if free, else a free one)
#   DEMO_ADMIN_PORT=  admin port (default 9901 if free, else a free one)
#   DEMO_BIN=         where the binaries are built (default ./bin)
#
# Needs the Go toolchain; the self-test also needs curl. Everything listens on 127.0.0.1.
# (A later milestone replaces this with a Consul-based demo.)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${DEMO_BIN:-$ROOT/bin}
SELFTEST=${DEMO_SELFTEST:-0}
# Seconds a process gets to come up, and to exit after SIGTERM before it is killed.
READY_TIMEOUT=${READY_TIMEOUT:-20}
STOP_TIMEOUT=5

TMP=""
PIDS=()        # every process this script started
MG_PID=""
PORT=""
ADMIN_PORT=""

log() { echo "demo: $*" >&2; }

# forget drops an exited pid from PIDS.
forget() {
  local pid keep=()
  for pid in "${PIDS[@]}"; do [[ $pid == "$1" ]] || keep+=("$pid"); done
  PIDS=("${keep[@]}")
}

# stop_all sends SIGTERM to everything we started (meshgate drains, origins shut down), gives
# each STOP_TIMEOUT seconds, then SIGKILLs what is left. Safe to call twice.
stop_all() {
  local pid i
  for pid in "${PIDS[@]}"; do
    if [[ $pid == "$MG_PID" ]] && ! "$BIN/meshgate" health -addr "127.0.0.1:$ADMIN_PORT" -timeout 1s 2>/dev/null; then
      # Not ready: meshgate is already draining, typically because the terminal's Ctrl-C
      # reached it too. A second signal would make it exit at once instead of finishing
      # in-flight requests, so only wait for it (and SIGKILL after STOP_TIMEOUT).
      continue
    fi
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    for ((i = 0; i < STOP_TIMEOUT * 10; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      log "pid $pid did not stop within ${STOP_TIMEOUT}s; killing it"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
  done
  PIDS=()
}

cleanup() {
  # A second Ctrl-C must not cut the clean-up short and leave processes behind; it is bounded.
  trap '' INT TERM
  stop_all
  if [[ -n $TMP && -d $TMP ]]; then rm -rf "$TMP"; fi
}
trap cleanup EXIT
# Ctrl-C (or a TERM from a supervisor) ends the demo; the EXIT trap stops everything.
on_signal() {
  echo >&2
  log "stopping"
  # A Ctrl-C reaches meshgate at the same moment; give it a moment to turn /ready 503 so that
  # stop_all sees the drain already started.
  sleep 0.2
  if [[ $SELFTEST == 1 ]]; then exit 1; fi
  exit 0
}
trap on_signal INT TERM

# port_free is true when nothing accepts connections on 127.0.0.1:$1.
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# pick_port prints $1 if it is free, else a random free port (never one in $2...).
pick_port() {
  local want=$1 p i
  shift
  if port_free "$want" && [[ " $* " != *" $want "* ]]; then echo "$want"; return; fi
  for ((i = 0; i < 100; i++)); do
    p=$((20000 + RANDOM % 40000))
    if port_free "$p" && [[ " $* " != *" $p "* ]]; then echo "$p"; return; fi
  done
  log "no free port found"; return 1
}

# wait_file waits until file $1 exists and is non-empty, or process $2 exits.
wait_file() {
  local i
  for ((i = 0; i < READY_TIMEOUT * 10; i++)); do
    [[ -s $1 ]] && return 0
    kill -0 "$2" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

# start_origin NAME LABEL sets ORIGIN to the host:port the origin bound. (Not a $(...)
# function: the origin would inherit the substitution's pipe and the shell would wait on it.)
ORIGIN=""
start_origin() {
  local name=$1 label=$2 pid
  "$BIN/demoorigin" -name "$name" -addr 127.0.0.1:0 -addr-file "$TMP/$label.addr" \
    </dev/null >"$TMP/$label.log" 2>&1 &
  pid=$!
  PIDS+=("$pid")
  if ! wait_file "$TMP/$label.addr" "$pid"; then
    log "origin $label did not start:"; cat "$TMP/$label.log" >&2; return 1
  fi
  ORIGIN=$(<"$TMP/$label.addr")
}

write_config() { # api1 api2 web
  cat >"$TMP/meshgate.yaml" <<EOF
# Written by scripts/demo.sh. Validate with: meshgate validate -config $TMP/meshgate.yaml
admin:
  address: 127.0.0.1:$ADMIN_PORT
listeners:
  - name: public
    address: 127.0.0.1:$PORT
routes:
  - name: api                        # checked first: equal priorities keep file order
    match: { path_prefix: /api/ }
    rewrite: { path_prefix: / }      # the api service sees /hello for /api/hello
    to: [ { service: api } ]
  - name: web
    match: { path_prefix: / }
    to: [ { service: web } ]
services:
  api:
    load_balancer: { policy: round_robin }
discovery:
  static:
    api: [ $1, $2 ]
    web: [ $3 ]
access_log:
  output: stdout
log:
  format: console
shutdown:
  drain_timeout: 5s
EOF
}

# start_meshgate starts the edge and waits for /ready; it returns 2 on a port clash so the
# caller can pick other ports.
start_meshgate() {
  local i out=/dev/stdout
  : >"$TMP/meshgate.log"
  if [[ $SELFTEST == 1 ]]; then out=$TMP/access.log; fi
  # stderr goes to a file (to detect a port clash and for the self-test's diagnostics) and, in
  # the interactive demo, to the terminal as well.
  if [[ $SELFTEST == 1 ]]; then
    "$BIN/meshgate" edge -config "$TMP/meshgate.yaml" >"$out" 2>"$TMP/meshgate.log" &
  else
    "$BIN/meshgate" edge -config "$TMP/meshgate.yaml" 2> >(tee -a "$TMP/meshgate.log" >&2) &
  fi
  MG_PID=$!
  PIDS+=("$MG_PID")
  for ((i = 0; i < READY_TIMEOUT * 10; i++)); do
    if "$BIN/meshgate" health -addr "127.0.0.1:$ADMIN_PORT" -timeout 1s 2>/dev/null; then
      return 0
    fi
    if ! kill -0 "$MG_PID" 2>/dev/null; then
      wait "$MG_PID" 2>/dev/null || true
      if grep -q "address already in use" "$TMP/meshgate.log"; then return 2; fi
      log "meshgate exited during start-up:"; cat "$TMP/meshgate.log" >&2
      return 1
    fi
    sleep 0.1
  done
  log "meshgate not ready within ${READY_TIMEOUT}s:"; cat "$TMP/meshgate.log" >&2
  return 1
}

# ---- self-test ---------------------------------------------------------------------------

FAILURES=0
fail() { log "selftest: FAIL: $*"; FAILURES=$((FAILURES + 1)); }

# fetch URL: sets CODE and BODY.
fetch() {
  CODE=$(curl -s -S --max-time 5 -o "$TMP/body" -w '%{http_code}' "$1" 2>"$TMP/curl.err") || CODE="curl-error: $(cat "$TMP/curl.err")"
  BODY=$(cat "$TMP/body" 2>/dev/null || true)
}

json_field() { sed -n "s/.*\"$1\":\"\\([^\"]*\\)\".*/\\1/p" <<<"$BODY"; }

selftest() {
  local base=http://127.0.0.1:$PORT admin=http://127.0.0.1:$ADMIN_PORT
  local api1=$1 api2=$2 web=$3 i seen="" inst h
  command -v curl >/dev/null || { fail "curl is not installed"; return; }

  for ((i = 0; i < 4; i++)); do
    fetch "$base/api/hello?n=$i"
    if [[ $CODE != 200 ]]; then fail "GET /api/hello: $CODE $BODY"; continue; fi
    [[ $(json_field service) == api ]] || fail "GET /api/hello answered by $(json_field service), want api: $BODY"
    [[ $(json_field path) == /hello ]] || fail "GET /api/hello arrived as $(json_field path), want /hello (rewrite): $BODY"
    for h in X-Forwarded-For X-Forwarded-Proto X-Forwarded-Host X-Request-Id; do
      [[ $BODY == *"\"$h\":"* ]] || fail "GET /api/hello: header $h did not reach the origin: $BODY"
    done
    inst=$(json_field instance)
    seen="$seen $inst"
  done
  [[ $seen == *" $api1"* ]] || fail "api instance $api1 never answered (saw:$seen)"
  [[ $seen == *" $api2"* ]] || fail "api instance $api2 never answered (saw:$seen)"
  log "api answered from:$seen"

  fetch "$base/index.html"
  if [[ $CODE != 200 ]]; then
    fail "GET /index.html: $CODE $BODY"
  else
    [[ $(json_field service) == web ]] || fail "GET /index.html answered by $(json_field service), want web"
    [[ $(json_field instance) == "$web" ]] || fail "GET /index.html answered by $(json_field instance), want $web"
    [[ $(json_field path) == /index.html ]] || fail "GET /index.html arrived as $(json_field path)"
  fi

  fetch "$admin/ready";    [[ $CODE == 200 ]] || fail "/ready: $CODE"
  fetch "$admin/clusters"; [[ $CODE == 200 && $BODY == *"$api1"* && $BODY == *"$web"* ]] || fail "/clusters: $CODE $BODY"
  fetch "$admin/routes";   [[ $CODE == 200 && $BODY == *'"api"'* && $BODY == *'"web"'* ]] || fail "/routes: $CODE $BODY"
  fetch "$admin/metrics";  [[ $CODE == 200 && $BODY == *meshgate_* ]] || fail "/metrics: $CODE"

  # The access log is written off the request path, in batches: poll for it.
  for ((i = 0; i < 50; i++)); do
    grep -q '/api/hello' "$TMP/access.log" 2>/dev/null && break
    sleep 0.1
  done
  grep -q '/api/hello' "$TMP/access.log" 2>/dev/null || fail "no access-log line for /api/hello"

  # Drain: meshgate must exit 0 on SIGTERM.
  kill -TERM "$MG_PID"
  local rc=0
  wait "$MG_PID" || rc=$?
  [[ $rc == 0 ]] || fail "meshgate exited $rc after SIGTERM"

  if ((FAILURES > 0)); then
    log "meshgate log:"; cat "$TMP/meshgate.log" >&2
    log "selftest: FAIL ($FAILURES problems)"
    exit 1
  fi
  echo "selftest: PASS"
}

# ---- main --------------------------------------------------------------------------------

main() {
  mkdir -p "$BIN"
  log "building meshgate and demoorigin into $BIN"
  (cd "$ROOT" && go build -o "$BIN/meshgate" . && go build -o "$BIN/demoorigin" ./scripts/demoorigin)

  TMP=$(mktemp -d "${TMPDIR:-/tmp}/meshgate-demo.XXXXXX")
  local api1 api2 web attempt rc
  start_origin api api-1; api1=$ORIGIN
  start_origin api api-2; api2=$ORIGIN
  start_origin web web; web=$ORIGIN

  for attempt in 1 2 3; do
    PORT=${DEMO_PORT:-$(pick_port 8080)}
    ADMIN_PORT=${DEMO_ADMIN_PORT:-$(pick_port 9901 "$PORT")}
    write_config "$api1" "$api2" "$web"
    rc=0
    start_meshgate || rc=$?
    [[ $rc == 0 ]] && break
    if [[ $rc == 2 && -z ${DEMO_PORT:-} && -z ${DEMO_ADMIN_PORT:-} && $attempt -lt 3 ]]; then
      log "port $PORT or $ADMIN_PORT was taken meanwhile; picking others"
      forget "$MG_PID"
      continue
    fi
    [[ $rc == 2 ]] && { log "a port is in use:"; cat "$TMP/meshgate.log" >&2; }
    exit 1
  done

  cat <<EOF

meshgate edge is running.
  listener  http://127.0.0.1:$PORT
  admin     http://127.0.0.1:$ADMIN_PORT
  origins   api: $api1, $api2 (round_robin)   web: $web
  config    $TMP/meshgate.yaml

Try (each origin answers with the request it received, headers included):
  curl -s http://127.0.0.1:$PORT/api/hello      # api, rewritten to /hello; run it twice: both instances answer
  curl -s http://127.0.0.1:$PORT/               # web
  curl -s -H 'X-Request-Id: my-id' http://127.0.0.1:$PORT/api/echo
  curl -s http://127.0.0.1:$ADMIN_PORT/clusters   # endpoints, health, in-flight
  curl -s http://127.0.0.1:$ADMIN_PORT/routes
  curl -s http://127.0.0.1:$ADMIN_PORT/metrics | grep ^meshgate_
  curl -s http://127.0.0.1:$ADMIN_PORT/config

Edit $TMP/meshgate.yaml to see a live reload (or send SIGHUP to pid $MG_PID).
EOF

  if [[ $SELFTEST == 1 ]]; then
    selftest "$api1" "$api2" "$web"
    exit 0
  fi
  echo "Access log below; Ctrl-C stops everything."
  echo
  # Waiting (rather than running meshgate in the foreground) lets the INT/TERM trap run at once.
  local mrc=0
  wait "$MG_PID" || mrc=$?
  log "meshgate exited ($mrc)"
  exit "$mrc"
}

main "$@"
