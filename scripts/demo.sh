#!/usr/bin/env bash
# shellcheck disable=SC2317  # functions run from traps look unreachable to shellcheck
# The README's main command: see meshgate route, balance and annotate real requests.
#
# Usage: scripts/demo.sh
#
# Builds meshgate and scripts/demoorigin, builds (once, cached) Consul with
# scripts/install-consul.sh and starts `consul agent -dev` on free loopback ports, starts three
# demo origins (two instances of "api", one of "web"; each answers with JSON describing the
# request it received, headers included), registers both api instances in Consul (each with an
# HTTP check on the origin), writes a demo config to a temp dir and runs `meshgate edge` with it:
#
#   /api/*  → api (resolved through Consul: its passing instances, round_robin,
#                  /api/ rewritten to /)
#   /*      → web (static)
#
# meshgate also registers itself in Consul as "meshgate-edge". The access log goes to stdout,
# the process log to stderr. Ctrl-C stops everything, Consul included.
#
# Environment:
#   DEMO_SELFTEST=1   run the curl checks itself (both api instances and web answer, the
#                     rewrite and X-Forwarded-*/X-Request-Id headers arrive, the admin API
#                     answers, /clusters shows api from Consul with two hosts, meshgate-edge is
#                     passing in Consul, deregistering an api instance in Consul moves all
#                     traffic to the other), then stop and exit 0 (pass) or 1 (fail)
#   DEMO_PORT=        listener port (default 8080 if free, else a free one)
#   DEMO_ADMIN_PORT=  admin port (default 9901 if free, else a free one)
#   DEMO_BIN=         where the binaries are built (default ./bin)
#
# Needs the Go toolchain and curl (python3 is used, when present, to find ports free for both
# TCP and UDP for the agent). The first run builds Consul from source, which takes a few
# minutes; later runs use the cached binary. Everything listens on 127.0.0.1.
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
CONSUL_BIN=""
CONSUL_PID=""
CONSUL_HTTP="" # the agent's HTTP port

log() { echo "demo: $*" >&2; }

# forget drops an exited pid from PIDS.
forget() {
  local pid keep=()
  for pid in ${PIDS[@]+"${PIDS[@]}"}; do [[ $pid == "$1" ]] || keep+=("$pid"); done
  PIDS=(${keep[@]+"${keep[@]}"})
}

# stop_pids sends SIGTERM to the given pids (meshgate drains, origins and consul shut down),
# gives each STOP_TIMEOUT seconds, then SIGKILLs what is left.
stop_pids() {
  local pid i
  for pid in "$@"; do
    if [[ $pid == "$MG_PID" ]] && ! "$BIN/meshgate" health -addr "127.0.0.1:$ADMIN_PORT" -timeout 1s 2>/dev/null; then
      # Not ready: meshgate is already draining, typically because the terminal's Ctrl-C
      # reached it too. A second signal would make it exit at once instead of finishing
      # in-flight requests, so only wait for it (and SIGKILL after STOP_TIMEOUT).
      continue
    fi
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "$@"; do
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
}

# stop_all stops everything we started. meshgate goes first and alone: its shutdown puts its
# Consul registration in maintenance and deregisters it, which needs the agent still up, and
# it keeps forwarding to the origins while it drains. Safe to call twice.
stop_all() {
  if [[ -n $MG_PID && " ${PIDS[*]-} " == *" $MG_PID "* ]]; then
    stop_pids "$MG_PID"
    forget "$MG_PID"
  fi
  if ((${#PIDS[@]} > 0)); then stop_pids "${PIDS[@]}"; fi
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

# ---- consul ------------------------------------------------------------------------------

# free_ports N prints N distinct loopback ports. With python3 they are free for TCP and UDP
# (the agent's DNS and serf ports use both); without it only a TCP probe is possible, and a
# clash makes the agent exit, which start_consul retries.
free_ports() {
  if command -v python3 >/dev/null; then
    python3 "$ROOT/scripts/freeports.py" "$1"
    return
  fi
  local picked=() p
  while ((${#picked[@]} < $1)); do
    p=$(pick_port $((20000 + RANDOM % 40000)) ${picked[@]+"${picked[@]}"}) || return 1
    picked+=("$p")
  done
  echo "${picked[*]}"
}

# consul_api METHOD PATH [BODY]: one call to the agent's HTTP API; prints the answer and fails
# on a non-2xx status.
consul_api() {
  local args=(-s -S --fail-with-body --max-time 5 -X "$1")
  if (($# > 2)); then args+=(-H 'Content-Type: application/json' --data "$3"); fi
  curl "${args[@]}" "http://127.0.0.1:$CONSUL_HTTP$2"
}

# start_consul starts `consul agent -dev` (in memory, one node) on free loopback ports and
# waits, bounded, until it has elected itself leader. It retries with other ports when one was
# taken between picking and binding.
start_consul() {
  local attempt i http dns lan wan server grpc leader dir=$TMP/consul
  mkdir -p "$dir"
  for attempt in 1 2 3; do
    read -r http dns lan wan server grpc < <(free_ports 6)
    # https and grpc_tls stay off: the dev agent has no certificates.
    cat >"$dir/agent.hcl" <<EOF
ports {
  http     = $http
  https    = -1
  dns      = $dns
  serf_lan = $lan
  serf_wan = $wan
  server   = $server
  grpc     = $grpc
  grpc_tls = -1
}
disable_update_check = true
EOF
    rm -rf "$dir/data" && mkdir -p "$dir/data"
    "$CONSUL_BIN" agent -dev -bind 127.0.0.1 -client 127.0.0.1 -node meshgate-demo \
      -data-dir "$dir/data" -config-file "$dir/agent.hcl" -log-level warn \
      </dev/null >"$TMP/consul.log" 2>&1 &
    CONSUL_PID=$!
    PIDS+=("$CONSUL_PID")
    CONSUL_HTTP=$http
    for ((i = 0; i < READY_TIMEOUT * 10; i++)); do
      leader=$(consul_api GET /v1/status/leader 2>/dev/null) || leader=""
      # Before its election the agent answers "" (JSON for no leader).
      if [[ -n $leader && $leader != '""' ]]; then return 0; fi
      kill -0 "$CONSUL_PID" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$CONSUL_PID" 2>/dev/null; then
      log "consul agent has no leader after ${READY_TIMEOUT}s; its log:"; cat "$TMP/consul.log" >&2
      return 1
    fi
    wait "$CONSUL_PID" 2>/dev/null || true
    forget "$CONSUL_PID"
    log "consul agent exited during start-up (port taken?); attempt $attempt of 3"
  done
  log "consul agent would not start; its log:"; cat "$TMP/consul.log" >&2
  return 1
}

# register_api ID ADDR registers one api instance in the agent, with an HTTP check on the
# origin itself (it answers 200 on any path), so Consul reports it passing while it is up.
register_api() {
  local id=$1 host=${2%:*} port=${2##*:}
  consul_api PUT /v1/agent/service/register "{\"ID\":\"$id\",\"Name\":\"api\",\"Address\":\"$host\",\
\"Port\":$port,\"Tags\":[\"demo\"],\"Check\":{\"CheckID\":\"$id-http\",\"Name\":\"$id HTTP\",\
\"HTTP\":\"http://$host:$port/health\",\"Interval\":\"1s\",\"Timeout\":\"1s\",\
\"DeregisterCriticalServiceAfter\":\"1m\"}}" >/dev/null
}

# passing_count SERVICE prints how many instances of SERVICE Consul reports passing (-1 when
# the agent does not answer).
passing_count() {
  local body
  body=$(consul_api GET "/v1/health/service/$1?passing" 2>/dev/null) || { echo -1; return; }
  # One "Service" object per instance (pretty-printed by the dev agent, compact otherwise).
  grep -oE '"Service": ?\{' <<<"$body" | wc -l | tr -d ' '
}

# wait_passing SERVICE N waits, bounded, until Consul reports N passing instances of SERVICE.
wait_passing() {
  local i
  for ((i = 0; i < READY_TIMEOUT * 10; i++)); do
    [[ $(passing_count "$1") == "$2" ]] && return 0
    sleep 0.1
  done
  return 1
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
    web: [ $3 ]                      # every other routed service comes from Consul
  consul:                            # api: $1 and $2, registered in the agent by demo.sh
    address: 127.0.0.1:$CONSUL_HTTP
    snapshot_dir: $TMP/snapshot
    register:                        # meshgate registers itself too: see Consul's catalog
      name: meshgate-edge
      check_interval: 1s
      drain_wait: 2s                 # bounded shutdown even if Ctrl-C stopped the agent first
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
    # tee ignores the terminal's Ctrl-C so that meshgate's drain log still reaches the screen.
    "$BIN/meshgate" edge -config "$TMP/meshgate.yaml" 2> >(trap '' INT; exec tee -a "$TMP/meshgate.log" >&2) &
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

# cluster_block NAME prints cluster NAME's part of /clusters' indented JSON (read on stdin): from
# its "name" line to the next cluster's (hosts have no "name").
cluster_block() { awk -v want="\"name\": \"$1\"" '/"name": /{ in_it = index($0, want) > 0 } in_it'; }

# MOVE_TIMEOUT bounds how long a Consul change may take to reach meshgate's traffic.
MOVE_TIMEOUT=10

# answers_from ADDR N succeeds once N consecutive /api/ answers in a row came from instance
# ADDR, within MOVE_TIMEOUT seconds; it sets TOOK_MS to the time that took.
TOOK_MS=0
answers_from() {
  local want=$1 n=$2 run=0 start deadline=$((SECONDS + MOVE_TIMEOUT))
  start=$(date +%s%N)
  while ((SECONDS <= deadline)); do
    fetch "http://127.0.0.1:$PORT/api/move"
    if [[ $CODE == 200 && $(json_field instance) == "$want" ]]; then
      run=$((run + 1))
      if ((run >= n)); then TOOK_MS=$((($(date +%s%N) - start) / 1000000)); return 0; fi
    else
      run=0
    fi
    sleep 0.02
  done
  return 1
}

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

  # api comes from Consul: both registered instances, and the cluster says where it came from.
  local blk hosts
  fetch "$admin/clusters"
  blk=$(cluster_block api <<<"$BODY")
  [[ $blk == *'"source": "consul"'* ]] || fail "/clusters: api's source is not \"consul\": $blk"
  hosts=$(grep -c '"address":' <<<"$blk" || true)
  [[ $hosts == 2 && $blk == *"\"$api1\""* && $blk == *"\"$api2\""* ]] ||
    fail "/clusters: api has $hosts hosts, want $api1 and $api2: $blk"
  blk=$(cluster_block web <<<"$BODY")
  [[ $blk == *'"source": "static"'* ]] || fail "/clusters: web's source is not \"static\": $blk"

  # meshgate registered itself; its HTTP check (the agent GETs /ready) passes.
  wait_passing meshgate-edge 1 ||
    fail "consul does not report meshgate-edge passing: $(consul_api GET /v1/health/service/meshgate-edge 2>&1)"

  # Deregistering api-2 in Consul moves all traffic to api-1 (8 answers in a row: with
  # round_robin over two hosts that cannot happen by chance)...
  if ! consul_api PUT /v1/agent/service/deregister/api-2 >/dev/null; then
    fail "deregistering api-2 in consul failed"
  elif answers_from "$api1" 8; then
    log "api-2 deregistered in consul: all traffic on api-1 after ${TOOK_MS} ms"
    fetch "$admin/clusters"
    blk=$(cluster_block api <<<"$BODY")
    hosts=$(grep -c '"address":' <<<"$blk" || true)
    [[ $hosts == 1 && $blk == *"\"$api1\""* ]] || fail "/clusters after deregistering api-2: $hosts hosts, want $api1: $blk"
  else
    fail "traffic still reaches $api2 (or fails) ${MOVE_TIMEOUT}s after deregistering api-2; last answer: $CODE $BODY"
  fi
  # ...and registering it again brings it back (once its check passed).
  if ! register_api api-2 "$api2"; then
    fail "re-registering api-2 in consul failed"
  elif answers_from "$api2" 1; then
    log "api-2 registered again: answering after ${TOOK_MS} ms"
  else
    fail "api-2 did not get traffic again within ${MOVE_TIMEOUT}s of re-registering it"
  fi

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
  forget "$MG_PID"
  # Its shutdown deregistered it from Consul.
  fetch "http://127.0.0.1:$CONSUL_HTTP/v1/catalog/service/meshgate-edge"
  [[ $CODE == 200 && $BODY != *'"ServiceID"'* ]] || fail "meshgate-edge still in consul's catalog after shutdown: $CODE $BODY"

  if ((FAILURES > 0)); then
    log "meshgate log:"; cat "$TMP/meshgate.log" >&2
    log "selftest: FAIL ($FAILURES problems)"
    exit 1
  fi
  echo "selftest: PASS"
}

# ---- main --------------------------------------------------------------------------------

main() {
  command -v curl >/dev/null || { log "curl is needed (to register the demo services in Consul)"; exit 1; }
  mkdir -p "$BIN"
  log "building meshgate and demoorigin into $BIN"
  (cd "$ROOT" && go build -o "$BIN/meshgate" . && go build -o "$BIN/demoorigin" ./scripts/demoorigin)
  log "installing consul (scripts/install-consul.sh; the first build takes several minutes, then it is cached)"
  CONSUL_BIN=$("$ROOT/scripts/install-consul.sh" | tail -n 1) || { log "scripts/install-consul.sh failed"; exit 1; }
  [[ -x $CONSUL_BIN ]] || { log "install-consul.sh printed '$CONSUL_BIN', not an executable"; exit 1; }

  TMP=$(mktemp -d "${TMPDIR:-/tmp}/meshgate-demo.XXXXXX")
  local api1 api2 web attempt rc
  log "starting consul agent -dev"
  start_consul || exit 1
  start_origin api api-1; api1=$ORIGIN
  start_origin api api-2; api2=$ORIGIN
  start_origin web web; web=$ORIGIN
  log "registering api-1 ($api1) and api-2 ($api2) in consul"
  register_api api-1 "$api1" || { log "registering api-1 failed"; exit 1; }
  register_api api-2 "$api2" || { log "registering api-2 failed"; exit 1; }
  # So the first request already finds both: a new check is critical until its first run.
  wait_passing api 2 || { log "consul does not report both api instances passing:"; cat "$TMP/consul.log" >&2; exit 1; }

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
  origins   api: $api1 (api-1), $api2 (api-2), from Consul (round_robin)   web: $web (static)
  consul    http://127.0.0.1:$CONSUL_HTTP   (consul agent -dev, pid $CONSUL_PID; UI at /ui/)
  config    $TMP/meshgate.yaml

Try (each origin answers with the request it received, headers included):
  curl -s http://127.0.0.1:$PORT/api/hello      # api, rewritten to /hello; run it twice: both instances answer
  curl -s http://127.0.0.1:$PORT/               # web
  curl -s -H 'X-Request-Id: my-id' http://127.0.0.1:$PORT/api/echo
  curl -s http://127.0.0.1:$ADMIN_PORT/clusters   # endpoints, health, in-flight
  curl -s http://127.0.0.1:$ADMIN_PORT/routes
  curl -s http://127.0.0.1:$ADMIN_PORT/metrics | grep ^meshgate_
  curl -s http://127.0.0.1:$ADMIN_PORT/config

Consul (api comes from its passing instances; meshgate registered itself as meshgate-edge):
  curl -s 'http://127.0.0.1:$CONSUL_HTTP/v1/health/service/api?passing'
  curl -s http://127.0.0.1:$CONSUL_HTTP/v1/catalog/services
  curl -s -X PUT http://127.0.0.1:$CONSUL_HTTP/v1/agent/service/deregister/api-2   # then /api/hello: only api-1
  $CONSUL_BIN catalog services -http-addr=127.0.0.1:$CONSUL_HTTP

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
