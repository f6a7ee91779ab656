#!/usr/bin/env bash
# shellcheck disable=SC2317  # functions run from traps look unreachable to shellcheck
# The quick start: a small service mesh on loopback, in one command (`make demo` does the same).
#
# Usage: scripts/demo.sh
#
# Builds meshgate, the demo app (scripts/demoorigin), a gRPC client (scripts/grpccall) and a
# JetStream reader (scripts/natstail), builds Consul and Jaeger once (cached, by
# scripts/install-consul.sh and scripts/install-jaeger.sh), installs Debian's nats-server when it
# is missing (root or sudo), then starts on free 127.0.0.1 ports:
#
#   consul agent -dev            registry, Connect CA and intentions (in memory)
#   jaeger                       Jaeger v2: OTLP/HTTP receiver, memory storage, UI and query API
#   nats-server -js              JetStream: every meshgate's access-log lines, a stream each
#   web-1         demo app  +  `meshgate sidecar` (mTLS inbound; upstream api on a local port)
#   api-1, api-2  demo apps +  `meshgate sidecar` each (mTLS inbound)
#   echo-1        the demo app as a gRPC service (demoorigin -grpc, h2c) +  `meshgate sidecar`
#   edge          `meshgate edge`, Connect identity "edge": /api/* → api,
#                 /grpc.testing.TestService/* → echo, /* → web, reaching each service through
#                 its sidecars over mTLS (the merged hop)
#
#   curl ─▶ edge ══mTLS══▶ web-1's sidecar ─▶ web-1 ─▶ web-1's sidecar ══mTLS══▶ api-N's sidecar ─▶ api-N
#   grpccall ─h2c─▶ edge ══h2, mTLS══▶ echo-1's sidecar ─h2c─▶ echo-1
#
# Intentions are written through Consul's HTTP API (config entries, with curl): edge → web,
# edge → api (GET only: an L7 permission), web → api, edge → echo; anything else is denied
# (meshgate's identity.intentions_default). echo's service-defaults entry says Protocol=grpc,
# which is how the edge and echo-1's sidecar (whose config names no protocol) know to speak
# HTTP/2 to it. Every app answers with a description of the request it got (its service and
# instance, the path, the headers: X-Forwarded-For, X-Request-Id, ...; JSON, or for echo-1
# response metadata); web's /calls-api makes web call api through its sidecar. Once a request
# (and a gRPC call) has gone all the way through, the script prints curl commands, the grpccall
# command, the admin URLs and the Consul UI address, then follows the access logs (one line per
# hop). Every meshgate traces every request into Jaeger and ships its access log to the
# nats-server (subject meshgate.access.<name>); the banner says how to see both. Ctrl-C stops
# everything in order: edge, sidecars (which deregister from Consul), apps, Consul, nats-server,
# Jaeger.
#
# Environment:
#   DEMO_SELFTEST=1   instead of waiting for Ctrl-C, check the mesh with curl (edge → web through
#                     web-1's sidecar, edge → api reaching both instances, the web → api chain,
#                     the L7 permission, a deny intention answered 403 and lifted again, a
#                     gRPC call edge → echo-1's sidecar → echo-1 with grpc-go, the admin APIs,
#                     one request's trace in Jaeger and its access-log lines in NATS, the
#                     dashboard, every meshgate exiting 0 on SIGTERM and deregistering), print
#                     "selftest: PASS" and exit 0, or exit 1
#   DEMO_PORT=        the edge's port (default 8080 if free, else a free one)
#   DEMO_ADMIN_PORT=  the edge's admin port (default 9901 if free, else a free one)
#   DEMO_BIN=         where the binaries are built (default ./bin, git-ignored)
#   DEMO_READY_TIMEOUT= seconds each start-up step may take (default 30)
#   MESHGATE_JAEGER_BIN=      a jaeger binary to use instead of scripts/install-jaeger.sh's
#   MESHGATE_NATS_SERVER_BIN= a nats-server to use instead of the one on PATH
#
# Needs Go and curl; python3 is used when present to pick ports free for TCP and UDP (Consul's
# DNS and serf ports). The first run builds Consul and Jaeger from source (several minutes
# each); later runs reach the first request in seconds. Everything listens on 127.0.0.1 only.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${DEMO_BIN:-$ROOT/bin}
SELFTEST=${DEMO_SELFTEST:-0}
READY_TIMEOUT=${DEMO_READY_TIMEOUT:-30}
STOP_TIMEOUT=5     # seconds an app or Consul gets to exit after SIGTERM before SIGKILL
MG_STOP_TIMEOUT=20 # a meshgate drains and deregisters first (bounded by its own timeouts)
# Requests the script makes while waiting carry this request id prefix; the access-log view
# leaves them out.
PROBE_ID=demo-probe

TMP=""
CONSUL_BIN=""
CONSUL_PID=""
CONSUL_HTTP=""
JAEGER_BIN=""
JAEGER_PID=""
JAEGER_OTLP="" # the OTLP/HTTP receiver's port (the meshgates' tracing.endpoint)
JAEGER_UI=""   # jaeger_query: the UI and its HTTP API
NATS_BIN=""
NATS_PID=""
NATS_PORT=""
NATS_URL=""
EDGE_PID=""
EDGE_PORT=""
EDGE_ADMIN=""
MG_PID=""
READY_PIDS="" # meshgates that were ready once
SIGNALED=0    # SIGINT or SIGTERM arrived
JOB_CONTROL=0 # children run in their own process groups (set -m)

# Every process the script started, with its kind (edge, sidecar, app, consul, nats, jaeger: the
# stop order) and, for meshgate, its admin port.
PIDS=()
KINDS=()
ADMINS=()

# The instances: app + sidecar each. Index 0 is web-1, 1 and 2 are api-1 and api-2, 3 is echo-1
# (the gRPC one).
INST_ID=(web-1 api-1 api-2 echo-1)
INST_SVC=(web api api echo)
APP_PID=("" "" "" "")
APP_ADDR=("" "" "" "")
SC_PID=("" "" "" "")
SC_ADMIN=("" "" "" "")
SC_IN=("" "" "" "")
WEB_UPSTREAM="" # web-1's sidecar's listener for api

log() { echo "demo: $*" >&2; }
die() { log "$*"; exit 1; }

# now_ms prints the wall clock in milliseconds (bash 5's EPOCHREALTIME, else python3, else
# whole seconds).
now_ms() {
  if [[ -n ${EPOCHREALTIME:-} ]]; then
    local s=${EPOCHREALTIME/[,.]/}
    echo $((s / 1000))
  elif command -v python3 >/dev/null; then
    python3 -c 'import time; print(int(time.time()*1000))'
  else
    echo $(($(date +%s) * 1000))
  fi
}
START_MS=$(now_ms)
# secs_since MS prints the seconds since MS with one decimal.
secs_since() {
  local d=$(($(now_ms) - $1))
  printf '%d.%d' $((d / 1000)) $((d % 1000 / 100))
}

# ---- processes ---------------------------------------------------------------------------

track() { PIDS+=("$1"); KINDS+=("$2"); ADMINS+=("${3:-}"); }

# forget drops pid $1 from the tracked processes.
forget() {
  local i p=() k=() a=()
  for ((i = 0; i < ${#PIDS[@]}; i++)); do
    [[ ${PIDS[i]} == "$1" ]] && continue
    p+=("${PIDS[i]}"); k+=("${KINDS[i]}"); a+=("${ADMINS[i]}")
  done
  PIDS=(${p[@]+"${p[@]}"}); KINDS=(${k[@]+"${k[@]}"}); ADMINS=(${a[@]+"${a[@]}"})
}

# stop_kind KIND sends SIGTERM to every tracked process of that kind at once, waits (bounded)
# for each, SIGKILLs what is left and forgets them.
stop_kind() {
  local i j pid timeout=$STOP_TIMEOUT pids=()
  [[ $1 == edge || $1 == sidecar ]] && timeout=$MG_STOP_TIMEOUT
  for ((i = 0; i < ${#PIDS[@]}; i++)); do
    [[ ${KINDS[i]} == "$1" ]] || continue
    pid=${PIDS[i]}
    pids+=("$pid")
    if [[ $SIGNALED == 1 && $JOB_CONTROL == 0 && " $READY_PIDS " == *" $pid "* ]] &&
      ! "$BIN/meshgate" health -addr "127.0.0.1:${ADMINS[i]}" -timeout 1s 2>/dev/null; then
      # Ready before, not now: the signal that stops us reached it too (no job control), and
      # it is draining. A second signal would cut its drain and deregistration short; wait.
      continue
    fi
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in ${pids[@]+"${pids[@]}"}; do
    for ((j = 0; j < timeout * 10; j++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      log "pid $pid ($1) did not stop within ${timeout}s; killing it"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
    forget "$pid"
  done
}

# stop_all stops everything in dependency order: the edge stops taking requests, the sidecars
# drain and deregister while the apps and the agent are still up, then the apps, then Consul;
# nats-server and Jaeger last, so the meshgates' final access-log lines and spans still arrive.
# Safe to call twice.
stop_all() {
  local k
  for k in edge sidecar app consul nats jaeger; do stop_kind "$k"; done
}

cleanup() {
  # A second Ctrl-C must not cut the clean-up short and leave processes behind; it is bounded.
  trap '' INT TERM
  # And a second Ctrl-C that kills a foreground sleep or curl (with job control they get the
  # terminal's signals) must not abort it either.
  set +e
  if ((${#PIDS[@]} > 0)); then
    [[ $SELFTEST == 1 ]] || log "stopping: edge, sidecars (deregistering from consul), apps, consul, nats-server, jaeger"
    stop_all
    [[ $SELFTEST == 1 ]] || log "stopped"
  fi
  if [[ -n $TMP && -d $TMP ]]; then rm -rf "$TMP"; fi
}
trap cleanup EXIT
on_signal() {
  SIGNALED=1
  echo >&2
  # Without job control a terminal's Ctrl-C reached the children too: give the meshgates a
  # moment to turn /ready 503 so stop_kind sees their drain started and does not signal twice.
  [[ $JOB_CONTROL == 1 ]] || sleep 0.2
  if [[ $SELFTEST == 1 ]]; then exit 1; fi
  exit 0
}
trap on_signal INT TERM

# With a terminal, run every child in its own process group (job control): Ctrl-C then reaches
# only this script, which stops the children in order (sidecars deregister while Consul is still
# up). Without one (CI, `go test`) children stay in our group, so whoever runs us can kill it.
if [[ -t 0 && -t 1 && $SELFTEST != 1 ]]; then set -m; JOB_CONTROL=1; fi

# ---- ports -------------------------------------------------------------------------------

# port_free is true when nothing accepts connections on 127.0.0.1:$1.
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

PICKED=() # ports handed out by pick_port, never handed out twice
# pick_port WANT sets PORT to WANT if it is free, else to a random free port.
PORT=""
pick_port() {
  local want=$1 i
  for ((i = 0; i < 100; i++)); do
    if port_free "$want" && [[ " ${PICKED[*]-} " != *" $want "* ]]; then
      PICKED+=("$want"); PORT=$want; return 0
    fi
    want=$((20000 + RANDOM % 12000))
  done
  die "no free port found"
}

# free_ports N prints N distinct loopback ports. With python3 they are free for TCP and UDP
# (the agent's DNS and serf ports use both); without it only a TCP probe is possible, and a
# clash makes the agent exit, which start_consul retries.
free_ports() {
  if command -v python3 >/dev/null; then
    python3 "$ROOT/scripts/freeports.py" "$1"
    return
  fi
  local out=() i
  for ((i = 0; i < $1; i++)); do pick_port $((20000 + RANDOM % 12000)); out+=("$PORT"); done
  echo "${out[*]}"
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

# ---- consul ------------------------------------------------------------------------------

# consul_api METHOD PATH [BODY|@FILE]: one call to the agent's HTTP API; prints the answer and
# fails on a non-2xx status.
consul_api() {
  local args=(-s -S --fail-with-body --max-time 5 -X "$1")
  if (($# > 2)); then args+=(-H 'Content-Type: application/json' --data-binary "$3"); fi
  curl "${args[@]}" "http://127.0.0.1:$CONSUL_HTTP$2"
}

# start_consul starts `consul agent -dev` (in memory, one node, Connect CA built in) on free
# loopback ports and waits, bounded, until it has elected itself leader. It retries with other
# ports when one was taken between picking and binding.
start_consul() {
  local attempt i http dns lan wan server grpc leader dir=$TMP/consul
  mkdir -p "$dir"
  for attempt in 1 2 3; do
    read -r http dns lan wan server grpc < <(free_ports 6)
    # https and grpc_tls stay off: the dev agent has no certificates of its own.
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
      </dev/null >"$TMP/logs/consul.log" 2>&1 &
    CONSUL_PID=$!
    track "$CONSUL_PID" consul
    CONSUL_HTTP=$http
    for ((i = 0; i < READY_TIMEOUT * 10; i++)); do
      leader=$(consul_api GET /v1/status/leader 2>/dev/null) || leader=""
      # Before its election the agent answers "" (JSON for no leader).
      if [[ -n $leader && $leader != '""' ]]; then return 0; fi
      kill -0 "$CONSUL_PID" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$CONSUL_PID" 2>/dev/null; then
      log "consul agent has no leader after ${READY_TIMEOUT}s; its log:"; cat "$TMP/logs/consul.log" >&2
      return 1
    fi
    wait "$CONSUL_PID" 2>/dev/null || true
    forget "$CONSUL_PID"
    log "consul agent exited during start-up (port taken?); attempt $attempt of 3"
  done
  log "consul agent would not start; its log:"; cat "$TMP/logs/consul.log" >&2
  return 1
}

# write_intentions writes the config entries to $TMP/intentions/ and applies them. The protocol
# must be http before an intention may have HTTP permissions (Consul refuses them otherwise);
# echo's grpc is what the edge and echo-1's sidecar speak to it (h2), as Envoy would; the
# sidecar's config names no protocol for its app, so it follows this entry too.
write_intentions() {
  local d=$TMP/intentions f
  mkdir -p "$d"
  echo '{"Kind": "service-defaults", "Name": "web", "Protocol": "http"}' >"$d/web-defaults.json"
  echo '{"Kind": "service-defaults", "Name": "api", "Protocol": "http"}' >"$d/api-defaults.json"
  echo '{"Kind": "service-defaults", "Name": "echo", "Protocol": "grpc"}' >"$d/echo-defaults.json"
  cat >"$d/echo.json" <<'EOF'
{"Kind": "service-intentions", "Name": "echo",
 "Sources": [{"Name": "edge", "Action": "allow"}]}
EOF
  cat >"$d/web.json" <<'EOF'
{"Kind": "service-intentions", "Name": "web",
 "Sources": [{"Name": "edge", "Action": "allow"}]}
EOF
  cat >"$d/api.json" <<'EOF'
{"Kind": "service-intentions", "Name": "api",
 "Sources": [{"Name": "edge", "Permissions": [{"Action": "allow", "HTTP": {"PathPrefix": "/api/", "Methods": ["GET"]}}]},
             {"Name": "web", "Action": "allow"}]}
EOF
  # For the user to try (and the self-test): the same, with web denied.
  sed 's/"Name": "web", "Action": "allow"/"Name": "web", "Action": "deny"/' "$d/api.json" >"$d/api-deny-web.json"
  for f in web-defaults api-defaults echo-defaults web api echo; do
    consul_api PUT /v1/config "@$d/$f.json" >/dev/null || { log "writing $d/$f.json to consul failed"; return 1; }
  done
}

# ---- jaeger and nats-server ----------------------------------------------------------------

# write_jaeger_config writes Jaeger's (an OpenTelemetry Collector's) config for ports $1 (the
# OTLP/HTTP receiver), $2 (jaeger_query's HTTP: UI and API) and $3 (jaeger_query's gRPC, unused
# but it listens). Only what the demo uses runs: no OTLP gRPC, Jaeger or Zipkin receivers, no
# health, expvar or zpages extension; the collector's own metrics are off (their default is a
# Prometheus endpoint on :8888) and so is jaeger_query's self-tracing (to OTLP gRPC on
# localhost:4317, which also held up its exit by a 10 s export timeout): no port is fixed.
write_jaeger_config() {
  cat >"$TMP/jaeger/config.yaml" <<EOF2
# Jaeger v2 for the meshgate demo, written by scripts/demo.sh.
service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics: { level: none }
    logs: { level: warn }
extensions:
  jaeger_storage:
    backends:
      demo_store: { memory: { max_traces: 100000 } }
  jaeger_query:
    storage: { traces: demo_store }
    http: { endpoint: 127.0.0.1:$2 }
    grpc: { endpoint: 127.0.0.1:$3 }
    enable_tracing: false   # default true here: it would send its own spans to localhost:4317
receivers:
  otlp:
    protocols:
      http: { endpoint: 127.0.0.1:$1 }
processors:
  batch: {}
exporters:
  jaeger_storage_exporter: { trace_storage: demo_store }
EOF2
}

# start_jaeger starts Jaeger on free loopback ports (not waiting for it; await_jaeger does).
start_jaeger() {
  local otlp ui grpc
  mkdir -p "$TMP/jaeger"
  read -r otlp ui grpc < <(free_ports 3)
  write_jaeger_config "$otlp" "$ui" "$grpc"
  "$JAEGER_BIN" --config "$TMP/jaeger/config.yaml" </dev/null >"$TMP/logs/jaeger.log" 2>&1 &
  JAEGER_PID=$!
  track "$JAEGER_PID" jaeger
  JAEGER_OTLP=$otlp
  JAEGER_UI=$ui
}

# await_jaeger waits, bounded, until Jaeger's query API answers and its OTLP receiver accepts
# connections; when it exited during start-up (a port taken meanwhile) it starts it again on
# other ports, up to 3 times.
await_jaeger() {
  local attempt i
  for attempt in 1 2 3; do
    for ((i = 0; i < READY_TIMEOUT * 10; i++)); do
      if curl -s -f -o /dev/null --max-time 2 "http://127.0.0.1:$JAEGER_UI/api/services" &&
        ! port_free "$JAEGER_OTLP"; then
        return 0
      fi
      kill -0 "$JAEGER_PID" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$JAEGER_PID" 2>/dev/null; then
      log "jaeger not ready after ${READY_TIMEOUT}s; its log:"; cat "$TMP/logs/jaeger.log" >&2
      return 1
    fi
    wait "$JAEGER_PID" 2>/dev/null || true
    forget "$JAEGER_PID"
    ((attempt < 3)) || break
    log "jaeger exited during start-up (port taken?); attempt $attempt of 3"
    start_jaeger
  done
  log "jaeger would not start; its log:"; cat "$TMP/logs/jaeger.log" >&2
  return 1
}

# find_nats_server sets NATS_BIN: $MESHGATE_NATS_SERVER_BIN, else nats-server on PATH or in
# /usr/sbin (where Debian's package puts it, not on a user's PATH), else it installs Debian's
# nats-server package (as root, or with sudo), as scripts/test.sh installs redis-server.
find_nats_server() {
  local sudo=""
  if [[ -n ${MESHGATE_NATS_SERVER_BIN:-} ]]; then
    NATS_BIN=$MESHGATE_NATS_SERVER_BIN
    [[ -x $NATS_BIN ]] || die "MESHGATE_NATS_SERVER_BIN=$NATS_BIN is not an executable"
    return 0
  fi
  if NATS_BIN=$(command -v nats-server); then return 0; fi
  NATS_BIN=/usr/sbin/nats-server
  [[ -x $NATS_BIN ]] && return 0
  if [[ $(id -u) != 0 ]]; then
    command -v sudo >/dev/null || die "nats-server is missing and neither root nor sudo is available: install Debian's nats-server package"
    sudo=sudo
  fi
  log "installing Debian's nats-server package (apt-get)"
  { $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nats-server; } >&2 ||
    die "installing nats-server failed: install Debian's nats-server package"
  # The package may start a system service on port 4222; the demo does not use it.
  $sudo service nats-server stop >/dev/null 2>&1 || true
  [[ -x $NATS_BIN ]] || NATS_BIN=$(command -v nats-server) || die "no nats-server in /usr/sbin or on PATH after installing it"
}

# start_nats starts nats-server with JetStream (its store in $TMP/nats) on a free loopback port;
# no monitoring port, no cluster.
start_nats() {
  read -r NATS_PORT < <(free_ports 1)
  NATS_URL=nats://127.0.0.1:$NATS_PORT
  "$NATS_BIN" -a 127.0.0.1 -p "$NATS_PORT" -js -sd "$TMP/nats" -n meshgate-demo \
    </dev/null >"$TMP/logs/nats.log" 2>&1 &
  NATS_PID=$!
  track "$NATS_PID" nats
}

# await_nats waits, bounded, until nats-server takes JetStream requests; when it exited during
# start-up it starts it again on another port, up to 3 times.
await_nats() {
  local attempt i
  for attempt in 1 2 3; do
    for ((i = 0; i < READY_TIMEOUT * 10; i++)); do
      if ! port_free "$NATS_PORT" &&
        "$BIN/natstail" -server "$NATS_URL" -timeout 2s >/dev/null 2>"$TMP/natstail.err"; then
        return 0
      fi
      kill -0 "$NATS_PID" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$NATS_PID" 2>/dev/null; then
      log "nats-server: no JetStream after ${READY_TIMEOUT}s ($(cat "$TMP/natstail.err")); its log:"
      cat "$TMP/logs/nats.log" >&2
      return 1
    fi
    wait "$NATS_PID" 2>/dev/null || true
    forget "$NATS_PID"
    ((attempt < 3)) || break
    log "nats-server exited during start-up (port taken?); attempt $attempt of 3"
    start_nats
  done
  log "nats-server would not start; its log:"; cat "$TMP/logs/nats.log" >&2
  return 1
}

# ---- apps and sidecars -------------------------------------------------------------------

# access_view ID LABEL: reads meshgate's access log (JSON lines) on stdin, appends it to
# $TMP/logs/ID.access.log and prints one short line per request (leaving out the script's own
# probes):
#   edge           200 GET /api/hello → api 127.0.0.1:21002  1.3ms  req 5c1f…
#   api-2 sidecar  200 GET /api/hello from edge → local-api 127.0.0.1:40119  0.4ms  req 5c1f…
# (Plain bash: mawk, a common awk, reads a pipe in blocks and would hold lines back.)
access_view() {
  local file=$TMP/logs/$1.access.log label=$2 line k v status method path from svc up err ms id ua
  # A Ctrl-C must not end the view before meshgate's last lines (and its own exit).
  trap '' INT
  while IFS= read -r line; do
    printf '%s\n' "$line" >>"$file"
    for k in status method path identity service upstream error duration_ms request_id ua; do
      v=""
      if [[ $line =~ \"$k\":\"([^\"]*)\" || $line =~ \"$k\":([0-9.]+) ]]; then v=${BASH_REMATCH[1]}; fi
      case $k in
        status) status=$v ;; method) method=$v ;; path) path=$v ;; service) svc=$v ;;
        upstream) up=$v ;; duration_ms) ms=$v ;; request_id) id=$v ;; ua) ua=$v ;;
        identity) from=${v:+ from $v} ;; error) err=${v:+ ($v)} ;;
      esac
    done
    [[ $ua == "$PROBE_ID"* ]] && continue # the demo's own readiness probes (grpc-go appends its name)
    [[ -n $svc ]] && svc=" → $svc${up:+ $up}"
    printf '%-14s %s %s %s%s%s%s  %sms  req %s\n' "$label" "$status" "$method" "$path" \
      "$from" "$svc" "$err" "$ms" "${id:0:8}"
  done
}

# access_log ID prints the access_log output of a config: in the interactive demo meshgate
# writes to stdout, which access_view reads; the self-test only needs the file.
access_log() {
  if [[ $SELFTEST == 1 ]]; then echo "$TMP/logs/$1.access.log"; else echo stdout; fi
}

# observability ID prints the access_log and tracing blocks of meshgate ID's config: the local
# access log as before, every line shipped to nats-server too, and every request traced into
# Jaeger.
#
# Each meshgate has a stream of its own (MESHGATE_ACCESS_WEB_1 for web-1, created by meshgate):
# a sink creates its stream with its own subject when it is missing, so meshgates sharing one
# stream need it created beforehand with a subject covering all (meshgate.access.>). Every line
# of a request (each hop's, and both of web-1's: inbound, then upstream-api) is kept: the
# message id is the request id and a hash of the line.
observability() {
  local stream=MESHGATE_ACCESS_${1//-/_}
  cat <<EOF
access_log:
  output: "$(access_log "$1")"
  sinks:     # every line also goes to nats-server's JetStream
    - { kind: nats, url: "$NATS_URL", subject: meshgate.access.$1, stream: ${stream^^} }
  spool: { dir: "$TMP/spool/$1" }   # lines wait here while nats-server is unreachable
# sample_ratio 1 traces every request, not the default 1%: a demo makes a handful of requests
# and each should show up in Jaeger (a busy edge samples). batch_interval 1s (default 5s): the
# trace is there a second after the request.
tracing: { endpoint: "http://127.0.0.1:$JAEGER_OTLP", sample_ratio: 1, batch_interval: 1s }
EOF
}

# run_mg ID LABEL MODE: starts `meshgate MODE -config $TMP/config/ID.yaml` in the background
# and sets MG_PID.
run_mg() {
  : >"$TMP/logs/$1.log"
  if [[ $SELFTEST == 1 ]]; then
    "$BIN/meshgate" "$3" -config "$TMP/config/$1.yaml" </dev/null >/dev/null 2>"$TMP/logs/$1.log" &
  else
    "$BIN/meshgate" "$3" -config "$TMP/config/$1.yaml" </dev/null > >(access_view "$1" "$2") 2>"$TMP/logs/$1.log" &
  fi
  MG_PID=$!
}

# start_app I starts instance I's app on a free port and records its address.
start_app() {
  local i=$1 id=${INST_ID[$1]} args=()
  rm -f "$TMP/logs/$id.addr"
  [[ ${INST_SVC[i]} == web ]] && args+=(-call "api=http://127.0.0.1:$WEB_UPSTREAM")
  [[ ${INST_SVC[i]} == echo ]] && args+=(-grpc)
  "$BIN/demoorigin" -name "${INST_SVC[i]}" -instance "$id" -addr 127.0.0.1:0 \
    -addr-file "$TMP/logs/$id.addr" ${args[@]+"${args[@]}"} </dev/null >"$TMP/logs/$id.app.log" 2>&1 &
  APP_PID[i]=$!
  track "${APP_PID[i]}" app
  if ! wait_file "$TMP/logs/$id.addr" "${APP_PID[i]}"; then
    log "app $id did not start:"; cat "$TMP/logs/$id.app.log" >&2; return 1
  fi
  APP_ADDR[i]=$(<"$TMP/logs/$id.addr")
}

write_sidecar_config() {
  # No protocol for the app, echo-1 included (it speaks gRPC, h2c only): a sidecar whose config
  # names none follows its own service's service-defaults in Consul, as the edge does.
  local i=$1 id=${INST_ID[$1]} svc=${INST_SVC[$1]} ups="[]"
  if [[ $svc == web ]]; then
    ups="
    - { service: api, bind: 127.0.0.1:$WEB_UPSTREAM }  # web-1 calls api here; mTLS onward"
  fi
  cat >"$TMP/config/$id.yaml" <<EOF
# $id's sidecar, written by scripts/demo.sh. Run: meshgate sidecar -config $TMP/config/$id.yaml
admin: { address: 127.0.0.1:${SC_ADMIN[i]} }
discovery:
  consul: { address: 127.0.0.1:$CONSUL_HTTP }
sidecar:
  service: { name: $svc, id: $id, address: 127.0.0.1, port: ${APP_ADDR[i]##*:} }  # the app; its protocol: service-defaults
  inbound: { address: 127.0.0.1:${SC_IN[i]}, trusted_peers: [ edge ] }   # mTLS; callers find it in consul; the edge may pass the client's address
  upstreams: $ups
$(observability "$id")
shutdown: { drain_timeout: 5s }
EOF
}

# start_sidecar I starts instance I's sidecar (not waiting for it).
start_sidecar() {
  local i=$1 id=${INST_ID[$1]}
  write_sidecar_config "$i"
  run_mg "$id" "$id sidecar" sidecar
  SC_PID[i]=$MG_PID
  track "${SC_PID[i]}" sidecar "${SC_ADMIN[i]}"
}

# start_instance I picks instance I's ports and starts its app and its sidecar.
start_instance() {
  local i=$1 n=$(($1 + 1))
  pick_port $((19000 + n)); SC_ADMIN[i]=$PORT
  pick_port $((21000 + n)); SC_IN[i]=$PORT
  if [[ ${INST_SVC[i]} == web ]]; then pick_port 10001; WEB_UPSTREAM=$PORT; fi
  start_app "$i" && start_sidecar "$i"
}

# await_mg PID ADMIN LABEL waits until the meshgate at PID answers /ready on ADMIN. It returns 2
# when it exited because a port was taken meanwhile (the caller picks others), 1 otherwise.
await_mg() {
  local pid=$1 admin=$2 label=$3 logf=$TMP/logs/$4.log i
  for ((i = 0; i < READY_TIMEOUT * 10; i++)); do
    if "$BIN/meshgate" health -addr "127.0.0.1:$admin" -timeout 1s 2>/dev/null; then
      READY_PIDS="$READY_PIDS $pid"
      return 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      wait "$pid" 2>/dev/null || true
      forget "$pid"
      if grep -q "address already in use" "$logf"; then return 2; fi
      log "$label exited during start-up; its log:"; cat "$logf" >&2
      return 1
    fi
    sleep 0.1
  done
  log "$label not ready within ${READY_TIMEOUT}s; /ready says: $(curl -s --max-time 2 "http://127.0.0.1:$admin/ready")"
  log "its log:"; cat "$logf" >&2
  return 1
}

# start_instances starts the instances together and waits for their sidecars; an
# instance whose sidecar lost a port race is restarted on other ports.
start_instances() {
  local i attempt rc
  for i in "${!INST_ID[@]}"; do start_instance "$i" || return 1; done
  for i in "${!INST_ID[@]}"; do
    for attempt in 1 2 3; do
      rc=0
      await_mg "${SC_PID[i]}" "${SC_ADMIN[i]}" "${INST_ID[i]}'s sidecar" "${INST_ID[i]}" || rc=$?
      [[ $rc == 0 ]] && break
      [[ $rc == 2 && $attempt -lt 3 ]] || return 1
      log "a port of ${INST_ID[i]}'s sidecar was taken meanwhile; restarting it on others"
      kill -TERM "${APP_PID[i]}" 2>/dev/null || true
      wait "${APP_PID[i]}" 2>/dev/null || true
      forget "${APP_PID[i]}"
      start_instance "$i" || return 1
    done
  done
}

write_edge_config() {
  cat >"$TMP/config/edge.yaml" <<EOF
# The edge, written by scripts/demo.sh. Run: meshgate edge -config $TMP/config/edge.yaml
admin: { address: 127.0.0.1:$EDGE_ADMIN }
identity: { service: edge, connect: true }   # a Connect peer: services are reached via their sidecars, mTLS
listeners:
  - { name: public, address: 127.0.0.1:$EDGE_PORT }
routes:                                      # equal priorities keep file order: / last
  - { name: api, match: { path_prefix: /api/ }, to: [ { service: api } ] }
  # gRPC: a call's path is /package.Service/Method
  - { name: echo, match: { path_prefix: /grpc.testing.TestService/ }, to: [ { service: echo } ] }
  - { name: web, match: { path_prefix: / }, to: [ { service: web } ] }
discovery:
  consul: { address: 127.0.0.1:$CONSUL_HTTP }
$(observability edge)
shutdown: { drain_timeout: 5s }
EOF
}

start_edge() {
  local attempt rc
  for attempt in 1 2 3; do
    if [[ -n ${DEMO_PORT:-} ]]; then EDGE_PORT=$DEMO_PORT; else pick_port 8080; EDGE_PORT=$PORT; fi
    if [[ -n ${DEMO_ADMIN_PORT:-} ]]; then EDGE_ADMIN=$DEMO_ADMIN_PORT; else pick_port 9901; EDGE_ADMIN=$PORT; fi
    write_edge_config
    run_mg edge edge edge
    EDGE_PID=$MG_PID
    track "$EDGE_PID" edge "$EDGE_ADMIN"
    rc=0
    await_mg "$EDGE_PID" "$EDGE_ADMIN" edge edge || rc=$?
    [[ $rc == 0 ]] && return 0
    if [[ $rc == 2 && -z ${DEMO_PORT:-} && -z ${DEMO_ADMIN_PORT:-} && $attempt -lt 3 ]]; then
      log "port $EDGE_PORT or $EDGE_ADMIN was taken meanwhile; picking others"
      continue
    fi
    [[ $rc == 2 ]] && { log "a port is in use:"; cat "$TMP/logs/edge.log" >&2; }
    return 1
  done
}

# ---- requests ----------------------------------------------------------------------------

# fetch [CURL ARGS...] URL: sets CODE and BODY.
CODE=""
BODY=""
fetch() {
  CODE=$(curl -s -S --max-time 5 -D "$TMP/hdr" -o "$TMP/body" -w '%{http_code}' "$@" 2>"$TMP/curl.err") ||
    CODE="curl-error: $(cat "$TMP/curl.err")"
  BODY=$(cat "$TMP/body" 2>/dev/null || true)
  # The edge gives every request from a client its own id (a client's X-Request-Id is not
  # believed, docs/security.md): RID is that id, as the edge answered it.
  RID=$(tr -d '\r' <"$TMP/hdr" 2>/dev/null | sed -n 's/^[Xx]-[Rr]equest-[Ii]d: *//p' | head -n 1)
  rm -f "$TMP/body" "$TMP/hdr"
}

# field KEY prints the first "KEY": "value" of BODY (the apps' indented JSON; the first is the
# answering app's own, nested answers come after its headers).
field() { sed -n "s/^  \"$1\": \"\\([^\"]*\\)\".*/\\1/p" <<<"$BODY" | head -n 1; }

# await_request DESC URL WANT_INSTANCE: polls URL through the edge until an answer from
# WANT_INSTANCE (a regex) arrives, bounded; the instances that answered collect in SEEN.
SEEN=""
await_request() {
  local desc=$1 url=$2 want=$3 i inst
  for ((i = 0; i < READY_TIMEOUT * 10; i++)); do
    fetch -A "$PROBE_ID" "$url"
    if [[ $CODE == 200 ]]; then
      inst=$(field instance)
      [[ " $SEEN " == *" $inst "* ]] || SEEN="$SEEN $inst"
      [[ $inst =~ ^($want)$ ]] && return 0
    fi
    sleep 0.1
  done
  log "$desc: no answer from $want within ${READY_TIMEOUT}s; last: $CODE $BODY"
  return 1
}

# grpc_call [GRPCCALL ARGS...]: one UnaryCall through the edge with scripts/grpccall; sets
# GRPC_OUT (what it printed) and GRPC_RID (the edge's x-request-id), and fails as the call did.
GRPC_OUT=""
GRPC_RID=""
grpc_call() {
  local rc=0
  GRPC_OUT=$("$BIN/grpccall" -addr "127.0.0.1:$EDGE_PORT" "$@" 2>&1) || rc=$?
  GRPC_RID=$(sed -n 's/^  header  x-request-id: //p' <<<"$GRPC_OUT" | head -n 1)
  return $rc
}

# await_grpc polls a gRPC call through the edge until echo-1 answers it, within READY_TIMEOUT.
await_grpc() {
  local until=$(($(now_ms) + READY_TIMEOUT * 1000))
  while (($(now_ms) < until)); do
    grpc_call -user-agent "$PROBE_ID" -payload warm-up -timeout 2s && [[ $GRPC_OUT == *"server_id: echo-1"* ]] && return 0
    sleep 0.1
  done
  log "edge → echo (gRPC): no answer from echo-1 within ${READY_TIMEOUT}s; last:"
  echo "$GRPC_OUT" >&2
  return 1
}

# ---- self-test ---------------------------------------------------------------------------

FAILURES=0
fail() { log "selftest: FAIL: $*"; FAILURES=$((FAILURES + 1)); }
ok() { echo "selftest: ok: $*"; }

# access_line INST ID PATTERN waits (bounded: the access log is written in batches) until
# INST's access log has a line with request id ID that contains PATTERN.
access_line() {
  local f=$TMP/logs/$1.access.log i
  for ((i = 0; i < 50; i++)); do
    grep "\"request_id\":\"$2\"" "$f" 2>/dev/null | grep -q "$3" && return 0
    sleep 0.1
  done
  return 1
}

# cluster_block NAME prints cluster NAME's part of /clusters' indented JSON (read on stdin).
cluster_block() { awk -v want="\"name\": \"$1\"" '/"name": /{ in_it = index($0, want) > 0 } in_it'; }

metric() { # metric ADMIN NAME_WITH_LABELS: prints the value (0 when absent)
  local v
  v=$(curl -s --max-time 5 "http://127.0.0.1:$1/metrics" | awk -v m="$2" 'index($0, m " ") == 1 { print $2 }') || v=""
  echo "${v:-0}"
}

# jaeger_trace RID SERVICE...: polls Jaeger's query API (bounded: the meshgates export every
# second) until the trace the edge recorded for request id RID has spans of every SERVICE; the
# answer (JSON) is in TRACE_JSON.
TRACE_JSON=""
jaeger_trace() {
  local rid=$1 i s all
  shift
  for ((i = 0; i < 150; i++)); do
    TRACE_JSON=$(curl -s -G --max-time 5 "http://127.0.0.1:$JAEGER_UI/api/traces" --data-urlencode service=edge \
      --data-urlencode "tags={\"meshgate.request_id\":\"$rid\"}") || TRACE_JSON=""
    all=1
    for s in "$@"; do
      [[ $TRACE_JSON =~ \"serviceName\":\ ?\"$s\" ]] || all=0
    done
    ((all == 1)) && return 0
    sleep 0.1
  done
  return 1
}

selftest() {
  local base=http://127.0.0.1:$EDGE_PORT i seen="" inst blk n t0 h pid rc tid

  # 1. edge → web, through web-1's sidecar over mTLS.
  fetch "$base/hello"
  if [[ $CODE != 200 ]]; then
    fail "GET /hello: $CODE $BODY"
  else
    [[ $(field service) == web && $(field instance) == web-1 && $(field path) == /hello ]] ||
      fail "GET /hello: want web-1 to see /hello: $BODY"
    for h in X-Forwarded-For X-Forwarded-Proto X-Request-Id; do
      [[ $BODY == *"\"$h\":"* ]] || fail "GET /hello: header $h did not reach the app: $BODY"
    done
    [[ -n $RID && $BODY == *"\"X-Request-Id\": \"$RID\""* ]] || fail "GET /hello: the edge's request id ${RID:-(none)} did not reach the app: $BODY"
    access_line web-1 "$RID" '"listener":"inbound".*"identity":"edge"' ||
      fail "web-1's sidecar did not log $RID on its inbound listener from identity edge"
    fetch "http://127.0.0.1:$EDGE_ADMIN/clusters"
    blk=$(cluster_block web <<<"$BODY")
    [[ $blk == *"\"127.0.0.1:${SC_IN[0]}\""* && $blk != *"\"${APP_ADDR[0]}\""* ]] ||
      fail "edge /clusters: web should list web-1's sidecar 127.0.0.1:${SC_IN[0]}, not the app: $blk"
    ((FAILURES == 0)) && ok "edge → web-1's sidecar (mTLS, identity edge) → web-1"
  fi

  # 2. edge → api: round robin over both instances, each through its own sidecar.
  n=$FAILURES
  for ((i = 0; i < 6; i++)); do
    fetch "$base/api/hello"
    if [[ $CODE != 200 ]]; then fail "GET /api/hello: $CODE $BODY"; continue; fi
    [[ $(field service) == api && $(field path) == /api/hello ]] || fail "GET /api/hello: want api to see /api/hello: $BODY"
    inst=$(field instance)
    seen="$seen $inst"
    access_line "$inst" "$RID" '"identity":"edge"' || fail "$inst's sidecar did not log request $RID from edge"
  done
  [[ $seen == *" api-1"* && $seen == *" api-2"* ]] || fail "edge → api: want both api-1 and api-2, saw:$seen"
  ((FAILURES == n)) && ok "edge → api alternates over both instances:$seen"

  # 3. web → api: the app calls its sidecar's upstream listener, which goes to an api sidecar.
  n=$FAILURES
  fetch "$base/calls-api"
  if [[ $CODE != 200 ]]; then
    fail "GET /calls-api: $CODE $BODY"
  else
    [[ $(field instance) == web-1 ]] || fail "GET /calls-api answered by $(field instance): $BODY"
    [[ $BODY == *'"status": 200'* && $BODY == *'"service": "api"'* && $BODY == *'"path": "/api/called-by-web"'* ]] ||
      fail "GET /calls-api: api's answer is missing: $BODY"
    [[ -n $RID && $(grep -c "\"X-Request-Id\": \"$RID\"" <<<"$BODY") == 2 ]] ||
      fail "GET /calls-api: the request id did not reach both apps: $BODY"
    access_line web-1 "$RID" '"listener":"upstream-api"' || fail "web-1's sidecar did not log $RID on upstream-api"
    inst=$(sed -n 's/^ *"instance": "\(api-[12]\)".*/\1/p' <<<"$BODY" | head -n 1)
    access_line "$inst" "$RID" '"identity":"web"' || fail "${inst:-api}'s sidecar did not log $RID from identity web"
  fi
  ((FAILURES == n)) && ok "web-1 → its sidecar → ${inst:-api}'s sidecar (mTLS, identity web) → ${inst:-api}"

  # 4. The L7 permission: edge may only GET api; a POST is refused by the api sidecar.
  n=$FAILURES
  fetch -X POST "$base/api/hello"
  [[ $CODE == 403 && $BODY == *intention_denied* ]] || fail "POST /api/hello: $CODE $BODY, want 403 intention_denied"
  h=$(metric "${SC_ADMIN[1]}" 'meshgate_intentions_denied_total{source="edge"}')
  h=$((h + $(metric "${SC_ADMIN[2]}" 'meshgate_intentions_denied_total{source="edge"}')))
  [[ $h == 1 ]] || fail "api sidecars count $h denials from edge, want 1"
  ((FAILURES == n)) && ok "L7 intention: POST /api/hello from edge → 403 at the api sidecar"

  # 5. A deny intention (web → api), enforced within seconds; then lifted again.
  n=$FAILURES
  if consul_api PUT /v1/config "@$TMP/intentions/api-deny-web.json" >/dev/null; then
    t0=$(now_ms)
    for ((i = 0; i < 100; i++)); do
      fetch "$base/calls-api"
      [[ $CODE == 403 ]] && break
      sleep 0.1
    done
    if [[ $CODE == 403 && $BODY == *intention_denied* ]]; then
      ok "deny intention web → api: /calls-api answers 403 after $(($(now_ms) - t0)) ms"
    else
      fail "deny intention web → api: /calls-api still $CODE after 10s: $BODY"
    fi
  else
    fail "writing the deny intention failed"
  fi
  if consul_api PUT /v1/config "@$TMP/intentions/api.json" >/dev/null; then
    for ((i = 0; i < 100; i++)); do
      fetch "$base/calls-api"
      [[ $CODE == 200 ]] && break
      sleep 0.1
    done
    [[ $CODE == 200 ]] || fail "allow intention web → api again: /calls-api still $CODE after 10s: $BODY"
  else
    fail "restoring the intentions failed"
  fi
  ((FAILURES == n)) && ok "allow intention restored: /calls-api answers 200 again"

  # 6. gRPC: a grpc-go client → the edge (h2c) → echo-1's sidecar (h2 over Connect mTLS, the
  # merged hop) → echo-1 (h2c). The app answers with the metadata it received, so the
  # caller's identity shows the call went through echo-1's sidecar (it authenticated the edge);
  # both access logs have the edge's request id on HTTP/2.
  n=$FAILURES
  h="grpc-selftest-$RANDOM"
  if ! grpc_call -payload "$h"; then
    fail "gRPC UnaryCall through the edge: $GRPC_OUT"
  else
    [[ $GRPC_OUT == *"server_id: echo-1"* && $GRPC_OUT == *"payload:   \"$h\""* ]] ||
      fail "gRPC UnaryCall: want echo-1 to echo $h: $GRPC_OUT"
    [[ $GRPC_OUT == *"header  seen-x-meshgate-identity: edge"* ]] ||
      fail "gRPC UnaryCall: echo-1 did not get the caller identity edge from its sidecar: $GRPC_OUT"
    [[ $GRPC_OUT == *"trailer x-echo-trailer: t-echo-1"* ]] || fail "gRPC UnaryCall: the app's trailer is missing: $GRPC_OUT"
    if [[ -z $GRPC_RID || $GRPC_OUT != *"header  seen-x-request-id: $GRPC_RID"* ]]; then
      fail "gRPC UnaryCall: the edge's request id ${GRPC_RID:-(none)} did not reach echo-1: $GRPC_OUT"
    else
      access_line edge "$GRPC_RID" '"protocol":"HTTP/2.0"' || fail "the edge did not log gRPC request $GRPC_RID on HTTP/2"
      access_line echo-1 "$GRPC_RID" '"identity":"edge"' || fail "echo-1's sidecar did not log $GRPC_RID from identity edge"
      access_line echo-1 "$GRPC_RID" '"protocol":"HTTP/2.0"' || fail "echo-1's sidecar did not log $GRPC_RID on HTTP/2"
    fi
    fetch "http://127.0.0.1:$EDGE_ADMIN/clusters"
    blk=$(cluster_block echo <<<"$BODY")
    [[ $blk == *'"protocol": "grpc"'* && $blk == *"\"127.0.0.1:${SC_IN[3]}\""* ]] ||
      fail "edge /clusters: echo should be grpc (service-defaults) at echo-1's sidecar 127.0.0.1:${SC_IN[3]}: $blk"
    fetch "http://127.0.0.1:${SC_ADMIN[3]}/clusters"
    blk=$(cluster_block local-echo <<<"$BODY")
    [[ $blk == *'"protocol": "grpc"'* ]] || fail "echo-1's sidecar /clusters: local-echo should be grpc: $blk"
  fi
  ((FAILURES == n)) && ok "gRPC UnaryCall: grpc-go → edge → echo-1's sidecar (h2, mTLS, identity edge) → echo-1"

  # 7. Admin APIs of the edge and every sidecar.
  n=$FAILURES
  for h in "$EDGE_ADMIN" "${SC_ADMIN[@]}"; do
    for i in / /ready /clusters /routes /identity /metrics; do
      fetch "http://127.0.0.1:$h$i"
      [[ $CODE == 200 ]] || fail "admin 127.0.0.1:$h$i: $CODE $BODY"
      [[ $i != /identity || $BODY == *spiffe://* ]] || fail "admin 127.0.0.1:$h/identity shows no SPIFFE ID: $BODY"
      [[ $i != / || $BODY == *'src="/dashboard/app.js"'* ]] || fail "admin 127.0.0.1:$h/ is not the dashboard: $BODY"
    done
  done
  ((FAILURES == n)) && ok "admin APIs answer (/ /ready /clusters /routes /identity /metrics) on the edge and ${#SC_ADMIN[@]} sidecars"

  # 8. Tracing: one request through edge → web-1 → api, found in Jaeger's query API by the
  # request id the edge gave it; its spans come from the edge and the sidecars on the way, in
  # one connected trace with the trace id the app saw. Export is batched (1s), so poll.
  n=$FAILURES
  fetch "$base/calls-api"
  if [[ $CODE != 200 || -z $RID ]]; then
    fail "GET /calls-api (to trace): $CODE $BODY"
  else
    tid=$(sed -n 's/^ *"Traceparent": "00-\([0-9a-f]\{32\}\)-.*/\1/p' <<<"$BODY" | head -n 1)
    [[ -n $tid ]] || fail "GET /calls-api: web-1 got no traceparent: $BODY"
    inst=$(sed -n 's/^ *"instance": "\(api-[12]\)".*/\1/p' <<<"$BODY" | head -n 1)
    if ! jaeger_trace "$RID" edge web api; then
      fail "no trace in jaeger with request id $RID and spans of edge, web and api within 15s: $TRACE_JSON"
    else
      h=$(grep -Eo '"traceID": ?"[0-9a-f]+"' <<<"$TRACE_JSON" | grep -Eo '[0-9a-f]{32}' | sort -u | tr '\n' ' ')
      [[ $h == "$tid " ]] || fail "jaeger: the trace of $RID has trace ids ${h:-(none)}, want the one web-1 saw, $tid"
      # Connected: exactly one span (the edge's server span) has no parent in the trace.
      t0=$(grep -o '"references": \?\[\]' <<<"$TRACE_JSON" | wc -l)
      [[ $t0 == 1 ]] || fail "jaeger: the trace of $RID has $t0 root spans, want 1 (one connected trace)"
      i=$(grep -Eo '"operationName": ?"' <<<"$TRACE_JSON" | wc -l)
      ((FAILURES == n)) && ok "trace in jaeger: edge → web-1's sidecar → web-1 → its sidecar → ${inst:-api}'s sidecar, $i spans of trace $tid (request $RID)"
    fi
  fi

  # 9. Log shipping: the same request's access-log lines from the edge, web-1's sidecar and the
  # api sidecar are in nats-server's JetStream: four lines, since web-1 logged it twice (inbound
  # and upstream; their Nats-Msg-Id is the request id and a hash of the line, so both are kept,
  # see observability). Waiting for all four, not the first three found, is what makes the
  # edge's line (the last to be written: its request ends last) certain to be among them.
  n=$FAILURES
  if [[ -n $RID ]]; then
    if ! h=$("$BIN/natstail" -server "$NATS_URL" -grep "\"request_id\":\"$RID\"" -n 4 -timeout 10s 2>&1); then
      fail "nats: 4 lines of request $RID: $h"
    fi
    for t0 in edge web-1 "${inst:-api-?}"; do
      grep -q "^meshgate\.access\.$t0 {" <<<"$h" || fail "nats: no line of request $RID on meshgate.access.$t0: $h"
    done
    ((FAILURES == n)) && ok "access logs in nats: request $RID on meshgate.access.edge, .web-1 and .${inst:-api} (JetStream)"
  fi

  # 10. The dashboards the banner names answer 200 with HTML.
  n=$FAILURES
  for h in "$EDGE_ADMIN" "${SC_ADMIN[1]}"; do
    t0=$(curl -s --max-time 5 -o "$TMP/dash" -w '%{http_code} %{content_type}' "http://127.0.0.1:$h/") || t0="curl failed"
    [[ $t0 == "200 text/html"* ]] && grep -qi '<html' "$TMP/dash" && continue
    fail "dashboard http://127.0.0.1:$h/: $t0, want 200 text/html: $(head -c 300 "$TMP/dash" 2>/dev/null)"
  done
  ((FAILURES == n)) && ok "dashboard http://127.0.0.1:$EDGE_ADMIN/ (and api-1's) answers 200 text/html"

  # 11. Shutdown: every meshgate exits 0 on SIGTERM and the sidecars deregister.
  n=$FAILURES
  for pid in "$EDGE_PID" "${SC_PID[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "$EDGE_PID" "${SC_PID[@]}"; do
    rc=0
    wait "$pid" || rc=$?
    [[ $rc == 0 ]] || fail "meshgate pid $pid exited $rc after SIGTERM"
    forget "$pid"
  done
  for h in web api echo web-sidecar-proxy api-sidecar-proxy echo-sidecar-proxy; do
    fetch "http://127.0.0.1:$CONSUL_HTTP/v1/catalog/service/$h"
    [[ $CODE == 200 && $BODY != *'"ServiceID"'* ]] || fail "$h still in consul's catalog after the sidecars stopped: $CODE $BODY"
  done
  ((FAILURES == n)) && ok "edge and sidecars exit 0 on SIGTERM; sidecars deregistered from consul"

  if ((FAILURES > 0)); then
    for h in edge "${INST_ID[@]}" jaeger nats; do log "$h log:"; cat "$TMP/logs/$h.log" >&2; done
    log "selftest: FAIL ($FAILURES problems)"
    exit 1
  fi
  echo "selftest: PASS"
}

# ---- main --------------------------------------------------------------------------------

banner() {
  local e=http://127.0.0.1:$EDGE_PORT c=http://127.0.0.1:$CONSUL_HTTP j=http://127.0.0.1:$JAEGER_UI i h
  local tail="$BIN/natstail -server $NATS_URL"
  cat <<EOF

meshgate demo is up: $1
  edge ══mTLS══▶ sidecars ─▶ apps;  web-1 ─▶ its sidecar ══mTLS══▶ api sidecars ─▶ api-1, api-2
  gRPC: edge ══h2, mTLS══▶ echo-1's sidecar ─h2c─▶ echo-1

EOF
  printf '  %-14s %-44s %s\n' process "listens on" admin edge "$e" "http://127.0.0.1:$EDGE_ADMIN"
  for i in "${!INST_ID[@]}"; do
    printf '  %-14s %-44s http://127.0.0.1:%s\n' "${INST_ID[i]} sidecar" \
      "mTLS 127.0.0.1:${SC_IN[i]}$([[ $i == 0 ]] && echo ", api: 127.0.0.1:$WEB_UPSTREAM")" "${SC_ADMIN[i]}"
    h="plain HTTP"
    [[ ${INST_SVC[i]} == echo ]] && h="gRPC, h2c"
    printf '  %-14s %s\n' "${INST_ID[i]} app" "${APP_ADDR[i]} ($h on loopback; the mesh reaches it through its sidecar)"
  done
  cat <<EOF
  consul         $c   (UI: $c/ui/)
  jaeger         $j   (query API; OTLP/HTTP in: 127.0.0.1:$JAEGER_OTLP)
  nats-server    $NATS_URL   (JetStream: meshgate.access.<name>, stream MESHGATE_ACCESS_<NAME>)

Intentions (Consul config entries; anything not listed is denied):
  edge → web  allow
  edge → api  allow GET under /api/ only (an L7 permission)
  web  → api  allow
  edge → echo allow (echo's service-defaults say Protocol grpc: the edge speaks h2 to echo-1's
              sidecar, which speaks h2c to echo-1; neither config names a protocol)

Try (every app answers with what it received: service, instance, path, headers):
  curl -s $e/hello                # edge → web-1's sidecar → web-1
  curl -s $e/api/hello            # edge → api: run it twice, api-1 and api-2 alternate
  curl -s $e/calls-api            # edge → web-1 → web-1's sidecar → an api sidecar → api-N
  curl -si $e/calls-api | grep -i request-id   # one id (the edge's), every hop
  curl -i -X POST $e/api/hello    # 403: the L7 intention allows edge only GET on api

One gRPC call (grpc-go, h2c to the edge; echo-1 answers with the metadata it received):
  $BIN/grpccall -addr 127.0.0.1:$EDGE_PORT -payload hi
      # edge → echo-1's sidecar (h2 over mTLS) → echo-1: "seen-x-meshgate-identity: edge" is
      # the caller its sidecar authenticated. Any gRPC client works the same way (grpcurl
      # -plaintext, say, with grpc-go's interop/grpc_testing protos): the path is
      # /grpc.testing.TestService/<Method>, h2c to 127.0.0.1:$EDGE_PORT.

Deny web → api, see 403, allow it again (Consul's HTTP API; no consul CLI needed):
  curl -s -X PUT --data @$TMP/intentions/api-deny-web.json $c/v1/config
  curl -i $e/calls-api            # 403 intention_denied, from an api sidecar, relayed by web-1
  curl -s -X PUT --data @$TMP/intentions/api.json $c/v1/config

Dashboard (open it in a browser; it refreshes itself):
  http://127.0.0.1:$EDGE_ADMIN/     # the edge: routes, clusters, live rates, identity, intentions
  http://127.0.0.1:${SC_ADMIN[1]}/     # api-1's sidecar: its inbound intentions, its upstreams

Traces (Jaeger; every meshgate traces every request, sample_ratio 1, and exports a second later):
  $j/
      # the UI's URL: built from the module proxy, Jaeger has no UI assets (they come from the
      # jaeger-ui repository), so it shows a placeholder page. Its query API works:
  id=\$(curl -s -o /dev/null -w '%header{x-request-id}' $e/calls-api)   # a request, and its id
  curl -sG $j/api/traces --data-urlencode service=edge \\
    --data-urlencode "tags={\"meshgate.request_id\":\"\$id\"}"
      # one trace: the edge's spans, web-1's sidecar's (inbound, then its call to api) and an api
      # sidecar's, 8 spans; the apps pass traceparent on. Services: curl -s $j/api/services

Access logs (every meshgate also ships its lines to nats-server, subject meshgate.access.<name>):
  $tail            # what is in the streams now (every meshgate.access.> stream)
  $tail -f         # and follow it
  $tail -grep "\$id"   # one request, every hop

Admin APIs (edge: $EDGE_ADMIN; sidecars web-1: ${SC_ADMIN[0]}, api-1: ${SC_ADMIN[1]}, api-2: ${SC_ADMIN[2]}, echo-1: ${SC_ADMIN[3]}):
  curl -s http://127.0.0.1:$EDGE_ADMIN/ready
  curl -s http://127.0.0.1:$EDGE_ADMIN/clusters     # web, api, echo: their sidecars' mTLS addresses; echo's protocol grpc
  curl -s http://127.0.0.1:$EDGE_ADMIN/routes
  curl -s http://127.0.0.1:$EDGE_ADMIN/identity     # the edge's SPIFFE ID and certificate
  curl -s http://127.0.0.1:$EDGE_ADMIN/metrics | grep ^meshgate_
  curl -s http://127.0.0.1:${SC_ADMIN[1]}/metrics http://127.0.0.1:${SC_ADMIN[2]}/metrics | grep intentions_denied   # api sidecars: denials by source
  (the same paths work on every sidecar's admin port)

Consul:
  $c/ui/
  curl -s '$c/v1/health/connect/api?passing'     # what the edge balances over: api's sidecars
  curl -s $c/v1/config/service-intentions

Configs: $TMP/config/   logs: $TMP/logs/   (removed on exit)
EOF
}

main() {
  local t_build t_mesh
  command -v curl >/dev/null || die "curl is needed (requests, and Consul's HTTP API)"
  command -v go >/dev/null || die "the Go toolchain is needed to build meshgate"
  mkdir -p "$BIN"
  log "building meshgate, the demo app, the gRPC client and natstail into $BIN"
  # One go build for the four: they link in parallel.
  (cd "$ROOT" && go build -o "$BIN/" . ./scripts/demoorigin ./scripts/grpccall ./scripts/natstail)
  log "installing consul (scripts/install-consul.sh: the first build takes several minutes, then it is cached)"
  CONSUL_BIN=$("$ROOT/scripts/install-consul.sh" | tail -n 1) || die "scripts/install-consul.sh failed"
  [[ -x $CONSUL_BIN ]] || die "install-consul.sh printed '$CONSUL_BIN', not an executable"
  if [[ -n ${MESHGATE_JAEGER_BIN:-} ]]; then
    JAEGER_BIN=$MESHGATE_JAEGER_BIN
  else
    log "installing jaeger (scripts/install-jaeger.sh: the first build takes several minutes, then it is cached)"
    JAEGER_BIN=$("$ROOT/scripts/install-jaeger.sh" | tail -n 1) || die "scripts/install-jaeger.sh failed"
  fi
  [[ -x $JAEGER_BIN ]] || die "jaeger: '$JAEGER_BIN' is not an executable"
  find_nats_server
  t_build=$(secs_since "$START_MS")

  TMP=$(mktemp -d "${TMPDIR:-/tmp}/meshgate-demo.XXXXXX")
  mkdir -p "$TMP/config" "$TMP/logs" "$TMP/nats" "$TMP/spool"
  t_mesh=$(now_ms)
  # Jaeger and nats-server start while the agent elects itself; they are awaited after it.
  log "starting jaeger, nats-server -js and consul agent -dev"
  start_jaeger
  start_nats
  start_consul || exit 1
  await_nats || exit 1
  await_jaeger || exit 1
  log "writing service-defaults and intentions to consul (edge → web, edge → api GET, web → api, edge → echo)"
  write_intentions || exit 1
  log "starting web-1, api-1, api-2, echo-1 (gRPC), each with a meshgate sidecar; waiting for their /ready"
  start_instances || exit 1
  log "starting the edge; waiting for its /ready"
  start_edge || exit 1
  log "waiting for a request to go edge → web-1's sidecar → web-1"
  await_request "edge → web" "http://127.0.0.1:$EDGE_PORT/" web-1 || exit 1
  local first
  first="first request edge → sidecar → app answered $(secs_since "$START_MS")s after start (build ${t_build}s, mesh $(secs_since "$t_mesh")s)"
  log "$first"
  log "waiting for both api instances to answer through the edge"
  SEEN=""
  await_request "edge → api" "http://127.0.0.1:$EDGE_PORT/api/warm-up" api-1 || exit 1
  await_request "edge → api" "http://127.0.0.1:$EDGE_PORT/api/warm-up" api-2 || exit 1
  await_request "web → api" "http://127.0.0.1:$EDGE_PORT/calls-api" web-1 || exit 1
  log "waiting for a gRPC call to go edge → echo-1's sidecar → echo-1"
  await_grpc || exit 1

  banner "$first"
  if [[ $SELFTEST == 1 ]]; then
    echo
    selftest
    exit 0
  fi
  echo
  echo "Access logs follow, one line per hop (edge, then the sidecars). Ctrl-C stops everything."
  echo
  local rc=0
  wait "$EDGE_PID" || rc=$?
  log "the edge exited ($rc); its log:"
  cat "$TMP/logs/edge.log" >&2
  exit 1
}

main "$@"
