#!/usr/bin/env bash
# Benchmarks of meshgate: against nginx and HAProxy, under an instance failure,
# with a rate-limit policy, with JWT verification, following a large Consul catalog, as a sidecar,
# and with out-of-process plugins. Everything runs on this machine.
#
# Usage: scripts/bench.sh [proxy|fault|ratelimit|jwt|consul|sidecar|plugins|help]   (default: proxy)
#
# Scenario "proxy": one in-tree origin (scripts/benchorigin, 1 KiB bodies) and,
# in front of it, nginx (upstream keep-alive, access log to a file), HAProxy
# (http-reuse always, no access log: it only logs via syslog) and meshgate edge
# (metrics on, access log to a file). Every target, and the origin directly, is
# loaded with `wrk -t$THREADS -c$CONNS` keep-alive GETs for ROUNDS rounds in a
# rotating order, so that drift (thermal, noisy neighbours) spreads over all
# targets instead of penalising whichever runs last. Medians are reported.
#
# Scenario "fault": meshgate edge with the minimal config (default resilience
# settings, round_robin) in front of three benchorigin instances. The in-tree
# load generator scripts/bench/faultload runs CONNS keep-alive clients for a
# fixed 20 s and SIGKILLs one origin at 5 s; it never retries, so it reports
# every request meshgate failed to answer 200 (lost requests), req/s in
# [0 s, 5 s) and in [10 s, 20 s), and the time from the kill until the admin
# /clusters (polled every 10 ms) shows the killed host ejected. One run; no
# ROUNDS. Needs neither nginx, HAProxy nor wrk.
#
# Scenario "ratelimit": two meshgate edges in front of one origin, identical
# but for the route's policies: none, or a local rate_limit (client_ip key,
# 100000000 per 1s) that never rejects. wrk alternates between them for ROUNDS
# rounds; the report gives median req/s of both and their ratio (target: the
# policy keeps >= 95%), and checks from the metrics that the policy admitted
# every request and limited none. Needs wrk, not nginx or HAProxy.
#
# Scenario "jwt": like "ratelimit", two meshgate edges in front of one origin,
# identical but for the route's policies: none, or a jwt policy (RS256, issuer
# and audience checked) whose key comes from a JWKS served on loopback by
# python3 -m http.server, i.e. fetched once and cached. The in-tree
# scripts/bench/jwtgen makes a fresh RSA-2048 key pair, the JWKS and one valid
# token (kid, iss, aud, sub, exp in 1 h) per run. curl first checks that the
# protected edge answers 200 with the token, 401 without it and 401 with a
# tampered signature, and that the other edge answers 200 without a token.
# wrk -c$CONNS (default 16 here) then sends the same "Authorization: Bearer"
# header to both, alternating for ROUNDS rounds; the report gives median req/s,
# p50 and p99 of both and their req/s ratio (target: >= 85%), any non-2xx
# answer (a rejected token) is flagged, and the JWKS server's log shows how
# often the key set was fetched. Needs wrk and curl.
#
# Scenario "consul": a `consul agent -dev` (scripts/install-consul.sh, built once
# and cached) on free loopback ports with http_max_conns_per_client raised, and
# a meshgate edge with one host route per service, all resolved through Consul
# (snapshot_dir on). The in-tree scripts/bench/consulbench registers SERVICES
# services x 2 instances (pointing at origin listeners it runs itself), waits
# until meshgate has every endpoint, samples meshgate's RSS and CPU from /proc
# over an IDLE-second quiet window, then times catalog change -> traffic: CHANGES
# sequential changes (deregister an instance, register one on another origin,
# probe the route every 1 ms until the new origin answers) and a burst changing
# every service at once. Targets: p99 <= 250 ms, idle RSS <= 60 MB. One run; no
# ROUNDS. Needs neither nginx, HAProxy nor wrk.
#
# Scenario "sidecar": the merged hop against the classic chain, with a Consul
# dev agent (Connect CA built in) and allow intentions edge -> app and
# client -> app set through its HTTP API with curl. Four paths to one app
# (benchorigin), all started once and loaded one at a time in a rotating order:
#   A direct   wrk -> app (the baseline for "added latency")
#   B edge     wrk -> meshgate edge, static plaintext route -> app
#   C merged   wrk -> meshgate edge (identity edge, Connect) =mTLS=> app's
#              meshgate sidecar inbound -> app
#   D chain    wrk -> nginx (plain, upstream keep-alive) -> a "client"
#              meshgate sidecar's upstream listener =mTLS=> app's sidecar -> app
# Access logs are off on every hop. First the app's sidecar alone sits idle
# for IDLE seconds (watches running, no traffic) and its VmRSS is read from
# /proc (target <= 20 MB). Then wrk -c$CONNS (default 16 here) measures every
# path at saturation for ROUNDS rounds, and the in-tree scripts/bench/rateload
# sends a fixed RATE req/s (open loop) through every path for RATE_DURATION s
# per round, reading utime+stime of each proxy process from /proc: latency at
# a realistic rate, and vCPU per 1000 req/s (app sidecar through C: target
# <= 0.1). Reports added p50/p99 versus direct and C's saving over D. Needs
# wrk, nginx and curl (not HAProxy).
#
# Scenario "plugins": what an out-of-process plugin costs. plugins/examples/
# stamper (it asks for no request part and sets one request header) is built
# into BENCH_CACHE and its sha256 computed; three meshgate edges in front of one
# origin differ only in their route's policies: p0 none, p1 one stamper, p3
# three separately declared stampers (three processes, each setting its own
# X-Stamp-<i> header). Before and after the load, a request through each edge
# to a header-echo server (same policies) must show exactly its stamps at the
# upstream, and /plugins must list its processes running. wrk -c$CONNS (default
# 16 here) then alternates between the three for ROUNDS rounds (req/s, p50,
# p99, ratio to p0; target: 1 plugin keeps >= 75%), and rateload sends RATE
# req/s through each for RATE_DURATION s per round: added p50/p99 of 1 plugin
# (p1 - p0) and per plugin with 3 ((p3 - p0) / 3); target <= 30 us p50 per
# plugin call. Around every window the admin /metrics is read twice: the
# difference gives meshgate's non-2xx count and, from
# meshgate_plugin_call_duration_seconds, the host-measured calls per request,
# mean and approximate p50/p99 of each plugin and phase; any plugin call that
# was not "ok" is flagged. Access log off. Needs wrk and curl.
#
# Environment:
#   ROUNDS=3          rounds per target (at least 3 for a meaningful median)
#   DURATION=10       seconds per wrk run
#   WARMUP=2          seconds of warm-up per target before round 1
#   THREADS=2 CONNS=64  wrk threads and connections (fault: CONNS clients;
#                     jwt, sidecar and plugins: CONNS defaults to 16)
#   MESHGATE_BIN=     prebuilt meshgate binary (otherwise built from the tree)
#   SKIP_MESHGATE=1   proxy only: measure only direct/nginx/haproxy
#   BENCH_OUT=        results file (default: <tmpdir>/bench-results.md)
#   BENCH_CACHE=      where built binaries go
#                     (default: ${XDG_CACHE_HOME:-$HOME/.cache}/meshgate-bench)
#   KEEP_LOGS=1       keep the (large) access logs in the temp dir
#   SERVICES=1000 CHANGES=100 IDLE=10   consul: services (x 2 instances; the
#                     burst changes all of them), sequential changes, idle seconds
#                     (sidecar: IDLE=10 seconds before the idle RSS reading)
#   RATE=1000 RATE_DURATION=20 RATE_WARMUP=2 RATE_CONNS=16   sidecar, plugins: the
#                     fixed-rate load (req/s, recorded s, unrecorded s, workers)
#   SIDECAR_GOGC= SIDECAR_GOMEMLIMIT=   sidecar: Go runtime settings for the two
#                     meshgate sidecars only (default: Go's defaults)
#   PLUGIN_TIMEOUT=   plugins: each stamper's call timeout (default: meshgate's, 50ms)
#   MESH_READY_TIMEOUT=60   sidecar: seconds a path through Consul gets to answer
#   SIDECAR_PROFILE=1 sidecar: CPU-profile the app sidecar (admin pprof) during
#                     C's first fixed-rate round into raw/app-sidecar-cpu.pprof
#
# Examples:
#   scripts/bench.sh                          # proxy comparison, 3 x 10 s rounds
#   scripts/bench.sh fault                    # 20 s of load, kill at 5 s
#   ROUNDS=5 DURATION=10 scripts/bench.sh ratelimit
#   ROUNDS=3 DURATION=8 scripts/bench.sh jwt  # about 1.5 minutes
#   scripts/bench.sh consul                   # 1000 services, a few minutes
#   ROUNDS=3 DURATION=10 scripts/bench.sh sidecar   # about 8 minutes
#   ROUNDS=3 DURATION=10 scripts/bench.sh plugins   # about 5 minutes
#
# Missing tools (nginx, haproxy, wrk; only those the scenario uses) are
# installed from Debian's packages with apt-get, so run it as root on a
# Debian/Ubuntu machine. Nothing here talks to hosts other than 127.0.0.1 (apt
# uses the configured mirrors).
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
TEMPLATES=$SCRIPT_DIR/bench

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
THREADS=${THREADS:-2}
# CONNS's default depends on the scenario (configure_scenario).
CONNS=${CONNS:-}
RATE=${RATE:-1000}
RATE_DURATION=${RATE_DURATION:-20}
RATE_WARMUP=${RATE_WARMUP:-2}
RATE_CONNS=${RATE_CONNS:-16}
SIDECAR_PROFILE=${SIDECAR_PROFILE:-0}
SKIP_MESHGATE=${SKIP_MESHGATE:-0}
KEEP_LOGS=${KEEP_LOGS:-0}
BENCH_CACHE=${BENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/meshgate-bench}
# Seconds a freshly started process gets to answer on its port.
READY_TIMEOUT=${READY_TIMEOUT:-20}
# Seconds a process gets to exit after SIGTERM before it is killed.
STOP_TIMEOUT=5
# The fault scenario's schedule (seconds) is fixed so that runs compare.
FAULT_DURATION=20
FAULT_KILL_AT=5
FAULT_AFTER_FROM=10
# Connections share the loopback with a /clusters poll this often.
FAULT_POLL=10ms

# Debian puts nginx and haproxy in sbin, which a non-login root shell may lack.
PATH=$PATH:/usr/local/sbin:/usr/sbin:/sbin
# wrk and printf must agree on the decimal point.
export LC_ALL=C

# State shared between functions; bash offers no better scoping.
TMP=""
PIDS=()                    # every process this script started
declare -A PID_NAME=()     # pid -> label, for diagnostics
declare -A TARGET_PORT=()  # target -> port wrk loads
declare -A TARGET_NOTE=()  # target -> one line for the report
declare -A TARGET_ADMIN=() # meshgate target -> admin port
declare -A RPS=() P50=() P99=() ERRS=()   # "target:round" -> value
ORIGIN_PORT=""
ORIGIN_PORTS=()            # fault scenario: one per origin instance
ORIGIN_PIDS=()
TOOLS=()                   # tools the scenario needs besides go and python3
LOAD_DESC=""               # one line for the report: how the load was made
LAST_PID=""                # pid of the latest spawn
LOAD_PID=""                # wrk or faultload run in progress, if any
ORIGIN_BIN=""
MESHGATE=""
FAULTLOAD_BIN=""
RATELOAD_BIN=""
LOAD_BEFORE=""              # /proc/loadavg when measuring started
READY_HEADER=""             # header wait_ready sends (jwt: the bearer token)
WRK_EXTRA=()                # extra wrk arguments for every run (jwt: -H ...)
JWTGEN_BIN=""
JWT_TOKEN=""                # jwt: the valid RS256 token of this run
JWKS_PORT=""                # jwt: the loopback JWKS server
JWT_ISSUER=meshgate-bench-issuer
JWT_AUDIENCE=bench-api

log() { printf '[bench] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

usage() {
	sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"
}

# ---------------------------------------------------------------- lifecycle --

cleanup() {
	local rc=$? pid deadline
	trap - EXIT INT TERM
	if [[ -n $LOAD_PID ]]; then
		kill -TERM "$LOAD_PID" 2>/dev/null || true
		wait "$LOAD_PID" 2>/dev/null || true
	fi
	for pid in "${PIDS[@]}"; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	deadline=$((SECONDS + STOP_TIMEOUT))
	for pid in "${PIDS[@]}"; do
		while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do
			sleep 0.1
		done
		if kill -0 "$pid" 2>/dev/null; then
			log "${PID_NAME[$pid]:-pid $pid} ignored SIGTERM; killing"
			kill -KILL "$pid" 2>/dev/null || true
		fi
		wait "$pid" 2>/dev/null || true
	done
	if [[ -n $TMP && -d $TMP && $KEEP_LOGS != 1 ]]; then
		# Access logs reach hundreds of MB per run; the results do not need them.
		rm -f "$TMP"/*/access.log
	fi
	if ((rc != 0)) && [[ -n $TMP ]]; then
		log "failed (exit $rc); logs are in $TMP"
	fi
	exit "$rc"
}

# spawn NAME LOGFILE CMD... runs CMD in the background and records its pid so
# cleanup can stop it whatever happens next.
spawn() {
	local name=$1 logfile=$2
	shift 2
	"$@" >"$logfile" 2>&1 &
	PIDS+=("$!")
	PID_NAME[$!]=$name
	LAST_PID=$!
}

# free_ports N prints N distinct free loopback ports. They are held open
# together while chosen so that the N are distinct; the window between release
# and use is tiny and only other processes on this machine could race us.
free_ports() {
	python3 - "$1" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
}

# http_ok URL [HEADER] succeeds when URL answers 200 with a 1024-byte body:
# that proves the whole chain (proxy -> origin) works, not just that a port is
# open. HEADER ("Name: value") is sent with the request when not empty.
http_ok() {
	python3 - "$1" "${2:-}" <<'PY' 2>/dev/null
import sys, urllib.request
req = urllib.request.Request(sys.argv[1])
if sys.argv[2]:
    name, _, value = sys.argv[2].partition(":")
    req.add_header(name.strip(), value.strip())
with urllib.request.urlopen(req, timeout=1) as r:
    sys.exit(0 if r.status == 200 and len(r.read()) == 1024 else 1)
PY
}

# wait_ready NAME PID URL LOGDIR polls URL (with READY_HEADER, if set) until it
# is healthy, the process dies, or READY_TIMEOUT passes; on failure it shows
# the logs in LOGDIR.
wait_ready() {
	local name=$1 pid=$2 url=$3 logdir=$4
	local deadline=$((SECONDS + READY_TIMEOUT))
	while ! http_ok "$url" "$READY_HEADER"; do
		if ! kill -0 "$pid" 2>/dev/null; then
			tail -n 20 "$logdir"/*.log >&2 || true
			die "$name exited before becoming ready (logs: $logdir)"
		fi
		if ((SECONDS >= deadline)); then
			tail -n 20 "$logdir"/*.log >&2 || true
			die "$name not ready at $url after ${READY_TIMEOUT}s (logs: $logdir)"
		fi
		sleep 0.1
	done
}

# render TEMPLATE OUT KEY=VALUE... substitutes @KEY@ placeholders.
render() {
	local tmpl=$1 out=$2 kv expr=()
	shift 2
	for kv in "$@"; do
		expr+=(-e "s|@${kv%%=*}@|${kv#*=}|g")
	done
	sed "${expr[@]}" "$tmpl" >"$out"
	if grep -v '^[[:space:]]*#' "$out" | grep -q '@[A-Z_]*@'; then
		die "unfilled placeholder in $out"
	fi
}

# -------------------------------------------------------------------- setup --

# ensure_tools installs the scenario's TOOLS (each is also its Debian package).
ensure_tools() {
	local missing=() tool
	for tool in "${TOOLS[@]}"; do
		command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
	done
	if ((${#missing[@]} > 0)); then
		((EUID == 0)) || die "missing ${missing[*]}; run as root to install them with apt-get"
		log "installing ${missing[*]} from Debian packages"
		# On hosts without a policy-rc.d the packages start their default
		# services; they listen on standard ports, not ours, so no clash.
		# stdout is the report, so apt's chatter goes to stderr.
		DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >&2
	fi
	for tool in go python3 "${TOOLS[@]}"; do
		command -v "$tool" >/dev/null 2>&1 || die "$tool not found"
	done
}

# uses TOOL succeeds when the scenario needs TOOL.
uses() {
	local t
	for t in "${TOOLS[@]}"; do
		[[ $t == "$1" ]] && return 0
	done
	return 1
}

build_binaries() {
	mkdir -p "$BENCH_CACHE"
	# go build is incremental through Go's build cache, so always building
	# costs little and never leaves a stale binary behind.
	ORIGIN_BIN=$BENCH_CACHE/benchorigin
	log "building benchorigin"
	(cd "$ROOT" && go build -o "$ORIGIN_BIN" ./scripts/benchorigin) ||
		die "building scripts/benchorigin failed"

	if [[ $SKIP_MESHGATE == 1 ]]; then
		return
	fi
	if [[ -n ${MESHGATE_BIN:-} ]]; then
		[[ -x $MESHGATE_BIN ]] || die "MESHGATE_BIN=$MESHGATE_BIN is not executable"
		MESHGATE=$MESHGATE_BIN
	else
		MESHGATE=$BENCH_CACHE/meshgate
		log "building meshgate (first build can take minutes)"
		(cd "$ROOT" && go build -o "$MESHGATE" .) ||
			die "building meshgate failed; set MESHGATE_BIN or SKIP_MESHGATE=1"
	fi
	if [[ $SCENARIO == fault ]]; then
		FAULTLOAD_BIN=$BENCH_CACHE/faultload
		log "building faultload"
		(cd "$ROOT" && go build -o "$FAULTLOAD_BIN" ./scripts/bench/faultload) ||
			die "building scripts/bench/faultload failed"
	fi
	if [[ $SCENARIO == sidecar || $SCENARIO == plugins ]]; then
		RATELOAD_BIN=$BENCH_CACHE/rateload
		log "building rateload"
		(cd "$ROOT" && go build -o "$RATELOAD_BIN" ./scripts/bench/rateload) ||
			die "building scripts/bench/rateload failed"
	fi
	if [[ $SCENARIO == jwt ]]; then
		JWTGEN_BIN=$BENCH_CACHE/jwtgen
		log "building jwtgen"
		(cd "$ROOT" && go build -o "$JWTGEN_BIN" ./scripts/bench/jwtgen) ||
			die "building scripts/bench/jwtgen failed"
	fi
	if [[ $SCENARIO == plugins ]]; then
		STAMPER_BIN=$BENCH_CACHE/stamper
		log "building the stamper plugin"
		(cd "$ROOT" && go build -o "$STAMPER_BIN" ./plugins/examples/stamper) ||
			die "building plugins/examples/stamper failed"
		STAMPER_SHA=$(sha256sum "$STAMPER_BIN" | cut -d' ' -f1)
	fi
}

machine_description() {
	local model
	model=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo 2>/dev/null || true)
	echo "- CPUs: $(nproc) x ${model:-unknown}"
	echo "- Kernel: $(uname -srm)"
	if uses nginx; then
		echo "- nginx: $(nginx -v 2>&1 | sed 's/^nginx version: //')"
	fi
	if uses haproxy; then
		echo "- HAProxy: $(haproxy -v 2>&1 | head -n 1)"
	fi
	if uses wrk; then
		# wrk has no version flag; -v prints the banner and exits 1.
		echo "- wrk: $({ wrk -v 2>&1 || true; } | head -n 1)"
	fi
	echo "- Go: $(go version)"
	# Other work on the machine (builds, tests) skews everything, p99 most.
	echo "- Load average (1/5/15 min): before ${LOAD_BEFORE:-?}, after $(cut -d' ' -f1-3 /proc/loadavg)"
	echo "- Load: $LOAD_DESC"
}

# ------------------------------------------------------------------ targets --
# Each target has start_<name>, which starts it (and anything it needs),
# registers its pid, waits until it serves the origin's body, and sets
# TARGET_PORT[<name>] and TARGET_NOTE[<name>]. New scenarios reuse these.

# start_origin [NAME] starts one benchorigin; its port is ORIGIN_PORT and its
# pid LAST_PID.
start_origin() {
	local name=${1:-origin} port dir
	dir=$TMP/$name
	mkdir -p "$dir"
	read -r port < <(free_ports 1)
	spawn "$name" "$dir/stderr.log" "$ORIGIN_BIN" -addr "127.0.0.1:$port"
	wait_ready "$name" "$LAST_PID" "http://127.0.0.1:$port/" "$dir"
	ORIGIN_PORT=$port
}

# start_origins N starts N benchorigin instances into ORIGIN_PORTS/ORIGIN_PIDS.
start_origins() {
	local i
	for ((i = 1; i <= $1; i++)); do
		start_origin "origin$i"
		ORIGIN_PORTS+=("$ORIGIN_PORT")
		ORIGIN_PIDS+=("$LAST_PID")
	done
}

start_direct() {
	TARGET_PORT[direct]=$ORIGIN_PORT
	TARGET_NOTE[direct]="the origin itself (fasthttp, fixed 1 KiB body): the ceiling"
}

start_nginx() {
	local port dir=$TMP/nginx
	mkdir -p "$dir"
	read -r port < <(free_ports 1)
	render "$TEMPLATES/nginx.conf.tmpl" "$dir/nginx.conf" \
		DIR="$dir" PORT="$port" ORIGIN_PORT="$ORIGIN_PORT"
	# -e moves the startup error log into the temp dir too (nginx >= 1.19.5);
	# without it nginx touches /var/log/nginx/error.log before reading the conf.
	spawn nginx "$dir/stderr.log" nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log"
	wait_ready nginx "$LAST_PID" "http://127.0.0.1:$port/" "$dir"
	TARGET_PORT[nginx]=$port
	TARGET_NOTE[nginx]="2 workers, upstream keepalive 64, access log on (file, buffered)"
}

start_haproxy() {
	local port dir=$TMP/haproxy
	mkdir -p "$dir"
	read -r port < <(free_ports 1)
	render "$TEMPLATES/haproxy.cfg.tmpl" "$dir/haproxy.cfg" \
		PORT="$port" ORIGIN_PORT="$ORIGIN_PORT"
	haproxy -c -q -f "$dir/haproxy.cfg" || die "invalid HAProxy config $dir/haproxy.cfg"
	spawn haproxy "$dir/stderr.log" haproxy -f "$dir/haproxy.cfg" -db
	wait_ready haproxy "$LAST_PID" "http://127.0.0.1:$port/" "$dir"
	TARGET_PORT[haproxy]=$port
	TARGET_NOTE[haproxy]="nbthread 2, http-reuse always, NO access log (HAProxy logs only via syslog)"
}

start_meshgate() {
	start_meshgate_from meshgate meshgate.yaml.tmpl \
		"edge mode, metrics on, access log on (file)" ORIGIN_PORT="$ORIGIN_PORT"
}

# start_meshgate_from TARGET TEMPLATE NOTE KEY=VALUE... starts a meshgate edge
# from a template in scripts/bench (PORT, ADMIN_PORT and DIR are filled in).
start_meshgate_from() {
	local target=$1 tmpl=$2 note=$3 port admin dir
	shift 3
	dir=$TMP/$target
	mkdir -p "$dir"
	read -r port admin < <(free_ports 2)
	render "$TEMPLATES/$tmpl" "$dir/meshgate.yaml" \
		DIR="$dir" PORT="$port" ADMIN_PORT="$admin" "$@"
	"$MESHGATE" validate -config "$dir/meshgate.yaml" >/dev/null ||
		die "invalid meshgate config $dir/meshgate.yaml"
	spawn "$target" "$dir/stderr.log" "$MESHGATE" edge -config "$dir/meshgate.yaml"
	wait_ready "$target" "$LAST_PID" "http://127.0.0.1:$port/" "$dir"
	TARGET_PORT[$target]=$port
	TARGET_ADMIN[$target]=$admin
	TARGET_NOTE[$target]=$note
}

start_meshgate_fault() {
	start_meshgate_from meshgate meshgate-fault.yaml.tmpl \
		"edge mode, minimal config: 3 origins, round_robin, default resilience; access log on (file)" \
		ORIGIN_PORT_1="${ORIGIN_PORTS[0]}" ORIGIN_PORT_2="${ORIGIN_PORTS[1]}" \
		ORIGIN_PORT_3="${ORIGIN_PORTS[2]}"
}

start_plain() {
	start_meshgate_from plain meshgate-ratelimit.yaml.tmpl \
		"meshgate edge, route without policies, access log off" \
		ORIGIN_PORT="$ORIGIN_PORT" ROUTE_POLICIES="[ ]"
}

start_ratelimit() {
	start_meshgate_from ratelimit meshgate-ratelimit.yaml.tmpl \
		"meshgate edge, route with a local rate_limit (100000000 per 1s, key client_ip) that never triggers, access log off" \
		ORIGIN_PORT="$ORIGIN_PORT" ROUTE_POLICIES="[ never ]"
}

# start_jwks makes this run's key pair and token (jwtgen) and serves the JWKS
# from a loopback python3 http.server; sets JWT_TOKEN and JWKS_PORT.
start_jwks() {
	local dir=$TMP/jwks deadline
	mkdir -p "$dir"
	JWT_TOKEN=$("$JWTGEN_BIN" -dir "$dir" -issuer "$JWT_ISSUER" -audience "$JWT_AUDIENCE" \
		-subject bench-user -kid bench-1 -ttl 1h) || die "jwtgen failed"
	[[ -n $JWT_TOKEN ]] || die "jwtgen printed no token"
	read -r JWKS_PORT < <(free_ports 1)
	# -u: unbuffered, so the request log (one line per JWKS fetch) is complete.
	spawn jwks "$dir/stderr.log" python3 -u -m http.server --bind 127.0.0.1 \
		--directory "$dir" "$JWKS_PORT"
	deadline=$((SECONDS + READY_TIMEOUT))
	until curl -fsS -o /dev/null "http://127.0.0.1:$JWKS_PORT/jwks.json" 2>/dev/null; do
		kill -0 "$LAST_PID" 2>/dev/null || die "JWKS server exited (logs: $dir)"
		((SECONDS < deadline)) || die "JWKS server not ready after ${READY_TIMEOUT}s (logs: $dir)"
		sleep 0.1
	done
}

start_nojwt() {
	start_meshgate_from nojwt meshgate-jwt.yaml.tmpl \
		"meshgate edge, route without policies (the token header is sent but ignored), access log off" \
		ORIGIN_PORT="$ORIGIN_PORT" ROUTE_POLICIES="[ ]" \
		JWKS_URL="http://127.0.0.1:$JWKS_PORT/jwks.json" ISSUER="$JWT_ISSUER" AUDIENCE="$JWT_AUDIENCE"
}

start_jwt() {
	start_meshgate_from jwt meshgate-jwt.yaml.tmpl \
		"meshgate edge, route with a jwt policy (RS256, RSA-2048, key from a loopback JWKS, issuer and audience checked), access log off" \
		ORIGIN_PORT="$ORIGIN_PORT" ROUTE_POLICIES="[ token ]" \
		JWKS_URL="http://127.0.0.1:$JWKS_PORT/jwks.json" ISSUER="$JWT_ISSUER" AUDIENCE="$JWT_AUDIENCE"
}

# -------------------------------------------------------------- measurement --

# load_to OUT ERR CMD... runs a load generator with stdout into OUT and stderr
# into ERR (which may be OUT). It runs in the background while the script
# waits, because bash defers a trapped signal until a foreground child exits: a
# TERM would otherwise only be handled after the whole run.
load_to() {
	local out=$1 err=$2 rc=0
	shift 2
	if [[ $err == "$out" ]]; then
		"$@" >"$out" 2>&1 &
	else
		"$@" >"$out" 2>"$err" &
	fi
	LOAD_PID=$!
	wait "$LOAD_PID" || rc=$?
	LOAD_PID=""
	return "$rc"
}

# wrk_to OUT ARGS... runs wrk into OUT.
wrk_to() {
	local out=$1
	shift
	load_to "$out" "$out" wrk "$@"
}

# to_ms converts wrk's latency notation (512.00us, 1.20ms, 1.01s, 1.00m).
to_ms() {
	awk -v v="$1" 'BEGIN {
		if (v ~ /us$/)      { sub(/us$/, "", v); f = 0.001 }
		else if (v ~ /ms$/) { sub(/ms$/, "", v); f = 1 }
		else if (v ~ /m$/)  { sub(/m$/, "", v);  f = 60000 }
		else if (v ~ /s$/)  { sub(/s$/, "", v);  f = 1000 }
		else { exit 1 }
		printf "%.3f", v * f
	}'
}

# run_wrk TARGET ROUND runs one measurement and stores its figures.
run_wrk() {
	local target=$1 round=$2 out rps p50 p99 sock non2xx
	out=$TMP/raw/$target-round$round.txt
	wrk_to "$out" -t"$THREADS" -c"$CONNS" -d"${DURATION}s" --latency "${WRK_EXTRA[@]}" \
		"http://127.0.0.1:${TARGET_PORT[$target]}/" || true
	rps=$(awk '/^Requests\/sec:/ {print $2}' "$out")
	p50=$(awk '$1 == "50%" {print $2; exit}' "$out")
	p99=$(awk '$1 == "99%" {print $2; exit}' "$out")
	sock=$(awk '/Socket errors:/ {gsub(",", ""); print $4 + $6 + $8 + $10}' "$out")
	non2xx=$(awk '/Non-2xx or 3xx responses:/ {print $5}' "$out")
	if [[ -z $rps || -z $p50 || -z $p99 ]]; then
		cat "$out" >&2
		die "could not parse wrk output for $target round $round ($out)"
	fi
	RPS[$target:$round]=$rps
	P50[$target:$round]=$(to_ms "$p50")
	P99[$target:$round]=$(to_ms "$p99")
	ERRS[$target:$round]="${non2xx:-0}/${sock:-0}"
	if [[ ${non2xx:-0} != 0 || ${sock:-0} != 0 ]]; then
		log "$target round $round: ${non2xx:-0} non-2xx/3xx, ${sock:-0} socket errors:"
		grep -E 'Socket errors|Non-2xx' "$out" >&2 || true
	fi
	log "$(printf '%-9s round %d: %10.0f req/s  p50 %7.3f ms  p99 %7.3f ms' \
		"$target" "$round" "$rps" "${P50[$target:$round]}" "${P99[$target:$round]}")"
}

# median prints the median of its arguments (mean of the middle two if even).
median() {
	printf '%s\n' "$@" | sort -g | awk '{v[NR] = $1}
		END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# measure TARGET... warms each target up, then runs ROUNDS rounds, rotating
# the order by one target per round.
measure() {
	local targets=("$@") n=$# round i t
	mkdir -p "$TMP/raw"
	for t in "${targets[@]}"; do
		log "warming up $t (${WARMUP}s)"
		wrk_to "$TMP/raw/$t-warmup.txt" -t"$THREADS" -c"$CONNS" -d"${WARMUP}s" "${WRK_EXTRA[@]}" \
			"http://127.0.0.1:${TARGET_PORT[$t]}/" ||
			die "warm-up of $t failed ($TMP/raw/$t-warmup.txt)"
	done
	for ((round = 1; round <= ROUNDS; round++)); do
		for ((i = 0; i < n; i++)); do
			t=${targets[$(((i + round - 1) % n))]}
			run_wrk "$t" "$round"
		done
	done
}

# ---------------------------------------------------------------- reporting --

# median_of MAP TARGET prints the median over rounds of one figure.
median_of() {
	local -n map=$1
	local target=$2 round vals=()
	for ((round = 1; round <= ROUNDS; round++)); do
		vals+=("${map[$target:$round]}")
	done
	median "${vals[@]}"
}

# errors_cell TARGET summarises errors over all rounds; any error flags it.
errors_cell() {
	local target=$1 round non2xx=0 sock=0 e
	for ((round = 1; round <= ROUNDS; round++)); do
		e=${ERRS[$target:$round]}
		non2xx=$((non2xx + ${e%/*}))
		sock=$((sock + ${e#*/}))
	done
	if ((non2xx + sock == 0)); then
		echo "none"
	else
		echo "**FLAGGED**: $non2xx non-2xx, $sock socket"
	fi
}

ratio() {
	awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'
}

# report_head TITLE prints the title and the machine description.
report_head() {
	echo "# $1 (scenario: $SCENARIO)"
	echo
	echo "## Machine"
	echo
	machine_description
	echo
}

# results_table TARGET... prints the medians over rounds.
results_table() {
	local t
	echo "## Results (median of $ROUNDS rounds)"
	echo
	echo "| target | req/s | p50 ms | p99 ms | errors |"
	echo "|---|---:|---:|---:|---|"
	for t in "$@"; do
		printf '| %s | %.0f | %.3f | %.3f | %s |\n' "$t" \
			"$(median_of RPS "$t")" "$(median_of P50 "$t")" "$(median_of P99 "$t")" "$(errors_cell "$t")"
	done
	echo
}

# rounds_table TARGET... prints every round's figures.
rounds_table() {
	local t round
	echo "## Rounds"
	echo
	echo "| round | target | req/s | p50 ms | p99 ms | non-2xx/socket errors |"
	echo "|---:|---|---:|---:|---:|---|"
	for ((round = 1; round <= ROUNDS; round++)); do
		for t in "$@"; do
			printf '| %d | %s | %s | %s | %s | %s |\n' "$round" "$t" \
				"${RPS[$t:$round]}" "${P50[$t:$round]}" "${P99[$t:$round]}" "${ERRS[$t:$round]}"
		done
	done
	echo
	echo "Raw wrk output: $TMP/raw/"
}

report() {
	local targets=("$@") t
	report_head "meshgate comparative benchmark"
	results_table "${targets[@]}"
	if [[ -n ${TARGET_PORT[meshgate]:-} ]]; then
		local mg_rps mg_p99
		mg_rps=$(median_of RPS meshgate)
		mg_p99=$(median_of P99 meshgate)
		echo "meshgate/haproxy req/s ratio: $(ratio "$mg_rps" "$(median_of RPS haproxy)")"
		echo "meshgate/nginx req/s ratio: $(ratio "$mg_rps" "$(median_of RPS nginx)")"
		echo "meshgate/haproxy p99 ratio: $(ratio "$mg_p99" "$(median_of P99 haproxy)") (lower is better)"
		echo "meshgate/nginx p99 ratio: $(ratio "$mg_p99" "$(median_of P99 nginx)") (lower is better)"
	else
		echo "meshgate skipped (SKIP_MESHGATE=1): no meshgate ratios."
	fi
	echo
	echo "## Targets"
	echo
	for t in "${targets[@]}"; do
		echo "- $t: ${TARGET_NOTE[$t]}"
	done
	echo "- note: HAProxy runs without an access log; nginx and meshgate write one."
	echo "- note: wrk, the proxy and the origin share the same $(nproc) CPUs."
	echo
	rounds_table "${targets[@]}"
}

# Access-log line counts prove the logging targets really logged under load.
access_log_summary() {
	local t f
	for t in nginx meshgate; do
		f=$TMP/$t/access.log
		if [[ -n ${TARGET_PORT[$t]:-} ]]; then
			if [[ -f $f ]]; then
				echo "- $t access log: $(wc -l <"$f") lines, $(du -h "$f" | cut -f1)"
			else
				echo "- $t access log: **missing** ($f)"
			fi
		fi
	done
}

# ---------------------------------------------------------------- scenarios --

scenario_proxy() {
	local targets=(direct nginx haproxy)
	[[ $SKIP_MESHGATE == 1 ]] || targets+=(meshgate)
	start_origin
	local t
	for t in "${targets[@]}"; do
		log "starting $t"
		"start_$t"
	done
	measure "${targets[@]}"
	{
		report "${targets[@]}"
		echo
		echo "## Access logs"
		echo
		access_log_summary
	} | tee "$BENCH_OUT"
}

# forget_pid PID drops a process this script has already reaped, so cleanup
# never signals a pid the kernel may have handed to someone else.
forget_pid() {
	local pid keep=()
	for pid in "${PIDS[@]}"; do
		[[ $pid == "$1" ]] || keep+=("$pid")
	done
	PIDS=("${keep[@]}")
}

scenario_fault() {
	local victim=2 pid host st=0 raw=$TMP/raw
	mkdir -p "$raw"
	log "starting 3 origins"
	start_origins 3
	log "starting meshgate"
	start_meshgate_fault
	pid=${ORIGIN_PIDS[victim - 1]}
	host=127.0.0.1:${ORIGIN_PORTS[victim - 1]}
	# The kill must hit benchorigin itself, not a wrapper shell: bash execs a
	# simple background command, so spawn's $! is the origin.
	[[ $(cat "/proc/$pid/comm" 2>/dev/null) == benchorigin ]] ||
		die "pid $pid (origin$victim) is not benchorigin"
	log "loading meshgate for ${FAULT_DURATION}s with $CONNS connections;" \
		"SIGKILL of origin$victim ($host, pid $pid) at ${FAULT_KILL_AT}s" \
		"(bash reports it as \"Killed\")"
	load_to "$raw/faultload.md" "$raw/faultload.stderr" "$FAULTLOAD_BIN" \
		-url "http://127.0.0.1:${TARGET_PORT[meshgate]}/" \
		-admin "127.0.0.1:${TARGET_ADMIN[meshgate]}" \
		-host "$host" -kill-pid "$pid" -conns "$CONNS" \
		-duration "${FAULT_DURATION}s" -kill-at "${FAULT_KILL_AT}s" \
		-after-from "${FAULT_AFTER_FROM}s" -poll "$FAULT_POLL" -expect-bytes 1024 || {
		cat "$raw/faultload.stderr" >&2
		die "faultload failed ($raw/faultload.stderr)"
	}
	log "$(tail -n 1 "$raw/faultload.stderr")"
	wait "$pid" 2>/dev/null || st=$?
	forget_pid "$pid"
	((st == 128 + 9)) || log "warning: origin$victim exited with status $st, not by SIGKILL"
	{
		report_head "meshgate benchmark"
		echo "## Setup"
		echo
		echo "- meshgate: ${TARGET_NOTE[meshgate]}"
		printf -- '- origins: 3 x benchorigin (fixed 1 KiB body) on'
		printf ' 127.0.0.1:%s' "${ORIGIN_PORTS[@]}"
		echo
		echo "- killed: origin$victim ($host) with SIGKILL at ${FAULT_KILL_AT}s (exit status $st)"
		echo "- lost: any answer other than 200 with the 1 KiB body, or a transport error or" \
			"5 s timeout, as the client saw it (the client never retries)"
		echo "- note: the load generator, meshgate and the origins share the same $(nproc) CPUs."
		echo
		cat "$raw/faultload.md"
		echo
		echo "## meshgate warnings"
		echo
		echo '```text'
		tail -n 20 "$TMP/meshgate/stderr.log"
		echo '```'
		echo
		echo "Raw output: $raw/"
	} | tee "$BENCH_OUT"
}

# http_get URL prints the body of URL.
http_get() {
	python3 - "$1" <<'PY'
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=5) as r:
    sys.stdout.write(r.read().decode())
PY
}

# rl_decisions TARGET RESULT sums meshgate_ratelimit_decisions_total{result=RESULT}.
rl_decisions() {
	http_get "http://127.0.0.1:${TARGET_ADMIN[$1]}/metrics" |
		awk -v want="result=\"$2\"" '
			$1 ~ /^meshgate_ratelimit_decisions_total\{/ && index($1, want) { s += $2 }
			END { printf "%.0f\n", s }'
}

# wrk_requests TARGET sums the requests wrk completed against TARGET (warm-up
# and rounds), to compare with the policy's decision count.
wrk_requests() {
	cat "$TMP/raw/$1"-*.txt | awk '/ requests in / { s += $1 } END { printf "%.0f\n", s }'
}

scenario_ratelimit() {
	local targets=(plain ratelimit) t round plain_rps rl_rps r allowed limited sent verdict
	start_origin
	for t in "${targets[@]}"; do
		log "starting $t"
		"start_$t"
	done
	measure "${targets[@]}"
	plain_rps=$(median_of RPS plain)
	rl_rps=$(median_of RPS ratelimit)
	r=$(ratio "$rl_rps" "$plain_rps")
	if awk -v r="$r" 'BEGIN { exit !(r >= 0.95) }'; then
		verdict="meets the >= 0.95 target"
	else
		verdict="**BELOW the 0.95 target**"
	fi
	allowed=$(rl_decisions ratelimit allowed) || die "cannot read the ratelimit instance's metrics"
	limited=$(rl_decisions ratelimit limited)
	sent=$(wrk_requests ratelimit)
	{
		report_head "meshgate rate-limit overhead"
		results_table "${targets[@]}"
		echo "ratelimit/plain req/s ratio (of medians): $r — $verdict"
		echo
		echo "Per round (ratelimit/plain):"
		for ((round = 1; round <= ROUNDS; round++)); do
			echo "- round $round: $(ratio "${RPS[ratelimit:$round]}" "${RPS[plain:$round]}")"
		done
		echo
		echo "## Policy check"
		echo
		echo "- meshgate_ratelimit_decisions_total on the ratelimit instance: allowed $allowed," \
			"limited $limited; wrk completed $sent requests against it"
		if ((allowed == 0)); then
			echo "- **FLAGGED**: the policy made no decision; it was not on the request path"
		fi
		if ((limited != 0)); then
			echo "- **FLAGGED**: the policy limited requests; the comparison includes 429s"
		fi
		echo
		echo "## Targets"
		echo
		for t in "${targets[@]}"; do
			echo "- $t: ${TARGET_NOTE[$t]}"
		done
		echo "- both instances run side by side (started once) and wrk alternates between them;" \
			"only one is loaded at a time."
		echo "- note: wrk, meshgate and the origin share the same $(nproc) CPUs."
		echo
		rounds_table "${targets[@]}"
	} | tee "$BENCH_OUT"
}

# http_status URL [HEADER] prints the status code curl gets from URL.
http_status() {
	local args=(-s -o /dev/null -w '%{http_code}' --max-time 5)
	[[ -z ${2:-} ]] || args+=(-H "$2")
	curl "${args[@]}" "$1" || true
}

# jwt_checks prints one markdown line per check of the two edges' answers and
# fails when any is not the expected status.
jwt_checks() {
	local jwt_url="http://127.0.0.1:${TARGET_PORT[jwt]}/" nojwt_url="http://127.0.0.1:${TARGET_PORT[nojwt]}/"
	local bad_token got want what ok=0 sig
	# Flip the signature's first character: same header and claims, bad signature.
	sig=${JWT_TOKEN##*.}
	if [[ ${sig:0:1} == A ]]; then bad_token=${JWT_TOKEN%.*}.B${sig:1}; else bad_token=${JWT_TOKEN%.*}.A${sig:1}; fi
	while IFS='|' read -r what want url header; do
		got=$(http_status "$url" "$header")
		if [[ $got == "$want" ]]; then
			echo "- $what: $got (expected $want)"
		else
			echo "- **FLAGGED** $what: $got (expected $want)"
			ok=1
		fi
	done <<-EOF
		jwt edge, valid token|200|$jwt_url|Authorization: Bearer $JWT_TOKEN
		jwt edge, no token|401|$jwt_url|
		jwt edge, tampered signature|401|$jwt_url|Authorization: Bearer $bad_token
		nojwt edge, no token|200|$nojwt_url|
	EOF
	return "$ok"
}

# jwks_fetches counts the GETs of jwks.json in the JWKS server's log.
jwks_fetches() {
	grep -c '"GET /jwks.json' "$TMP/jwks/stderr.log" || true
}

scenario_jwt() {
	local targets=(nojwt jwt) t round base_rps jwt_rps r verdict checks_before checks_after
	local fetches_before fetches_after
	start_origin
	log "generating the key pair and token; starting the JWKS server"
	start_jwks
	READY_HEADER="Authorization: Bearer $JWT_TOKEN"
	for t in "${targets[@]}"; do
		log "starting $t"
		"start_$t"
	done
	checks_before=$(jwt_checks) || {
		echo "$checks_before" >&2
		die "the jwt policy does not behave as expected; not measuring"
	}
	log "status checks passed"
	fetches_before=$(jwks_fetches)
	WRK_EXTRA=(-H "Authorization: Bearer $JWT_TOKEN")
	measure "${targets[@]}"
	fetches_after=$(jwks_fetches)
	checks_after=$(jwt_checks) || true
	base_rps=$(median_of RPS nojwt)
	jwt_rps=$(median_of RPS jwt)
	r=$(ratio "$jwt_rps" "$base_rps")
	if awk -v r="$r" 'BEGIN { exit !(r >= 0.85) }'; then
		verdict="meets the >= 0.85 target"
	else
		verdict="**BELOW the 0.85 target**"
	fi
	{
		report_head "meshgate JWT verification overhead"
		results_table "${targets[@]}"
		echo "jwt/nojwt req/s ratio (of medians): $r — $verdict"
		echo "jwt/nojwt p50 ratio: $(ratio "$(median_of P50 jwt)" "$(median_of P50 nojwt)")," \
			"p99 ratio: $(ratio "$(median_of P99 jwt)" "$(median_of P99 nojwt)") (lower is better)"
		echo
		echo "Per round (jwt/nojwt req/s):"
		for ((round = 1; round <= ROUNDS; round++)); do
			echo "- round $round: $(ratio "${RPS[jwt:$round]}" "${RPS[nojwt:$round]}")"
		done
		echo
		echo "## Policy check"
		echo
		echo "Before the load (curl):"
		echo
		echo "$checks_before"
		echo
		echo "After the load (curl):"
		echo
		echo "$checks_after"
		echo
		echo "- wrk errors column: any non-2xx from the jwt edge is a token it rejected under load."
		echo "- JWKS fetches (both edges, GET /jwks.json): $fetches_before at start," \
			"$((fetches_after - fetches_before)) during the load (0 = keys served from cache)"
		echo
		echo "## Targets"
		echo
		for t in "${targets[@]}"; do
			echo "- $t: ${TARGET_NOTE[$t]}"
		done
		echo "- token: RS256, RSA-2048, ${#JWT_TOKEN} bytes, kid/iss/aud/sub/iat/exp (1 h), fresh per run (scripts/bench/jwtgen)"
		echo "- both instances run side by side (started once) and wrk alternates between them;" \
			"only one is loaded at a time. wrk sends the same Authorization header to both."
		echo "- note: wrk, meshgate and the origin share the same $(nproc) CPUs."
		echo
		rounds_table "${targets[@]}"
	} | tee "$BENCH_OUT"
}

# consul_free_ports N prints N distinct loopback ports free for both TCP and
# UDP: the agent's DNS and serf ports use both.
consul_free_ports() {
	python3 "$ROOT/scripts/freeports.py" "$1"
}

# consul_url_ok URL succeeds when URL answers 200 with a body that is neither
# empty nor "" (the agent's answer to /v1/status/leader before it has one).
consul_url_ok() {
	python3 - "$1" <<'PY' 2>/dev/null
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=1) as r:
    body = r.read().strip()
    sys.exit(0 if r.status == 200 and body not in (b"", b'""') else 1)
PY
}

# consul_wait NAME PID URL LOG SECONDS polls URL until consul_url_ok, the
# process dies (status 2), or SECONDS pass (status 1).
consul_wait() {
	local name=$1 pid=$2 url=$3 logfile=$4 deadline=$((SECONDS + $5))
	while ! consul_url_ok "$url"; do
		if ! kill -0 "$pid" 2>/dev/null; then
			log "$name exited before becoming ready; tail of $logfile:"
			tail -n 20 "$logfile" >&2 || true
			return 2
		fi
		if ((SECONDS >= deadline)); then
			log "$name not ready at $url after $5 s; tail of $logfile:"
			tail -n 20 "$logfile" >&2 || true
			return 1
		fi
		sleep 0.1
	done
}

# start_consul_agent DIR BIN LIMIT starts a dev agent on free ports (retrying
# when another process takes a port first) and sets BENCH_CONSUL_PORT and
# BENCH_CONSUL_PID.
start_consul_agent() {
	local dir=$1 bin=$2 limit=$3 attempt st http dns lan wan server grpc grpctls
	for attempt in 1 2 3; do
		read -r http dns lan wan server grpc grpctls < <(consul_free_ports 7)
		# https stays off (the dev agent has no certificates); each watched
		# service holds one agent connection, hence the raised limit.
		cat >"$dir/agent.hcl" <<-EOF
			ports {
			  http     = $http
			  https    = -1
			  dns      = $dns
			  serf_lan = $lan
			  serf_wan = $wan
			  server   = $server
			  grpc     = $grpc
			  grpc_tls = $grpctls
			}
			disable_update_check = true
			limits {
			  http_max_conns_per_client = $limit
			}
		EOF
		rm -rf "$dir/data" && mkdir -p "$dir/data"
		# Warnings only: the info log writes a line per registration sync.
		spawn consul "$dir/consul.log" "$bin" agent -dev -bind 127.0.0.1 -client 127.0.0.1 \
			-node meshgate-bench -data-dir "$dir/data" -config-file "$dir/agent.hcl" -log-level warn
		st=0
		consul_wait consul "$LAST_PID" "http://127.0.0.1:$http/v1/status/leader" "$dir/consul.log" 60 || st=$?
		if ((st == 0)); then
			BENCH_CONSUL_PORT=$http
			BENCH_CONSUL_PID=$LAST_PID
			return 0
		fi
		((st == 2)) || die "consul agent not ready (log: $dir/consul.log)"
		wait "$LAST_PID" 2>/dev/null || true
		forget_pid "$LAST_PID"
		log "consul agent exited (port taken?); attempt $attempt of 3"
	done
	die "consul agent would not start (log: $dir/consul.log)"
}

scenario_consul() {
	local services=${SERVICES:-1000} changes=${CHANGES:-100} idle=${IDLE:-10}
	local cdir=$TMP/consul mdir=$TMP/meshgate raw=$TMP/raw
	local consul_bin bench_bin limit port admin mg_pid rc=0
	[[ $services =~ ^[1-9][0-9]*$ ]] || die "SERVICES must be a positive integer"
	if ! [[ $changes =~ ^[0-9]+$ ]] || ((changes > services)); then
		die "CHANGES must be 0..SERVICES"
	fi
	[[ $idle =~ ^[1-9][0-9]*$ ]] || die "IDLE must be a positive integer (seconds)"
	mkdir -p "$cdir" "$mdir" "$raw"

	log "installing consul (scripts/install-consul.sh; cached after the first build)"
	consul_bin=$("$ROOT/scripts/install-consul.sh" | tail -n 1) || die "scripts/install-consul.sh failed"
	[[ -x $consul_bin ]] || die "install-consul.sh printed '$consul_bin', not an executable"
	bench_bin=$BENCH_CACHE/consulbench
	log "building consulbench"
	(cd "$ROOT" && go build -o "$bench_bin" ./scripts/bench/consulbench) ||
		die "building scripts/bench/consulbench failed"

	limit=$((services * 2 > 4000 ? services * 2 : 4000))
	log "starting consul agent -dev (http_max_conns_per_client = $limit)"
	start_consul_agent "$cdir" "$consul_bin" "$limit"

	log "starting meshgate with $services Consul-backed routes"
	read -r port admin < <(free_ports 2)
	"$bench_bin" config -services "$services" -template "$TEMPLATES/meshgate-consul.yaml.tmpl" \
		-out "$mdir/meshgate.yaml" PORT="$port" ADMIN_PORT="$admin" \
		CONSUL_ADDR="127.0.0.1:$BENCH_CONSUL_PORT" DIR="$mdir" ||
		die "consulbench config failed"
	"$MESHGATE" validate -config "$mdir/meshgate.yaml" >/dev/null ||
		die "invalid meshgate config $mdir/meshgate.yaml"
	spawn meshgate "$mdir/stderr.log" "$MESHGATE" edge -config "$mdir/meshgate.yaml"
	mg_pid=$LAST_PID
	# /ready turns 200 once every service's first query has been answered.
	consul_wait meshgate "$mg_pid" "http://127.0.0.1:$admin/ready" "$mdir/stderr.log" "$READY_TIMEOUT" ||
		die "meshgate not ready (logs: $mdir)"
	# /proc figures must be meshgate's own, not a wrapper's.
	[[ $(cat "/proc/$mg_pid/comm" 2>/dev/null) == meshgate ]] || die "pid $mg_pid is not meshgate"

	log "running consulbench (registration, idle window, $changes changes, burst of $services)"
	# Its progress is shown as it runs and kept; its report is stdout.
	"$bench_bin" run -consul "127.0.0.1:$BENCH_CONSUL_PORT" -proxy "127.0.0.1:$port" \
		-admin "127.0.0.1:$admin" -pid "$mg_pid" -consul-pid "$BENCH_CONSUL_PID" \
		-services "$services" -changes "$changes" -idle "${idle}s" -clk-tck "$(getconf CLK_TCK)" \
		>"$raw/consulbench.md" 2> >(tee "$raw/consulbench.stderr" >&2) &
	LOAD_PID=$!
	wait "$LOAD_PID" || rc=$?
	LOAD_PID=""
	((rc == 0)) || die "consulbench failed (exit $rc; $raw/consulbench.stderr)"
	{
		report_head "meshgate Consul discovery benchmark"
		echo "## Consul"
		echo
		echo "- $("$consul_bin" version | head -n 1): agent -dev (one node, in memory), log level warn,"
		echo "  http_max_conns_per_client = $limit"
		echo "- note: consul, meshgate and consulbench share the same $(nproc) CPUs."
		echo
		cat "$raw/consulbench.md"
		echo
		echo "## meshgate warnings"
		echo
		echo '```text'
		tail -n 20 "$mdir/stderr.log"
		echo '```'
		echo
		echo "Raw output: $raw/ (agent log: $cdir/consul.log, meshgate config: $mdir/meshgate.yaml)"
	} | tee "$BENCH_OUT"
}

# ------------------------------------------------------- scenario: sidecar --

declare -A SIDECAR_PID=() SIDECAR_ADMIN=()   # sidecar service name -> pid, admin port
declare -A RL=()            # fixed-rate results: "target:round:key" -> value
declare -A PATH_PIDS=()     # target -> "label=pid ..." of its proxies, for CPU
declare -A PATH_DESC=()     # target -> the chain, for the report
SIDECAR_TARGETS=(direct edge merged chain)

# consul_put_config JSON writes one config entry through the agent's HTTP API.
consul_put_config() {
	local out
	out=$(curl -fsS --max-time 10 -X PUT --data-binary "$1" \
		"http://127.0.0.1:$BENCH_CONSUL_PORT/v1/config") ||
		die "PUT /v1/config failed for $1"
	[[ $out == true ]] || die "PUT /v1/config answered '$out' for $1"
}

# sidecar_env prints the environment the sidecars run with (Go runtime knobs).
sidecar_env() {
	local e=()
	[[ -z ${SIDECAR_GOGC:-} ]] || e+=("GOGC=$SIDECAR_GOGC")
	[[ -z ${SIDECAR_GOMEMLIMIT:-} ]] || e+=("GOMEMLIMIT=$SIDECAR_GOMEMLIMIT")
	echo "${e[*]}"
}

# start_sidecar NAME APP_PORT UPSTREAMS starts `meshgate sidecar` for service
# NAME fronting 127.0.0.1:APP_PORT and waits for its admin /ready (leaf
# certificate, roots, intentions and registration done).
start_sidecar() {
	local name=$1 app_port=$2 upstreams=$3 dir=$TMP/sidecar-$1 admin inbound pid
	mkdir -p "$dir"
	read -r admin inbound < <(free_ports 2)
	render "$TEMPLATES/meshgate-sidecar.yaml.tmpl" "$dir/meshgate.yaml" \
		ADMIN_PORT="$admin" CONSUL_PORT="$BENCH_CONSUL_PORT" NAME="$name" \
		APP_PORT="$app_port" INBOUND_PORT="$inbound" UPSTREAMS="$upstreams" \
		PPROF="$([[ $SIDECAR_PROFILE == 1 ]] && echo true || echo false)"
	"$MESHGATE" validate -config "$dir/meshgate.yaml" >/dev/null ||
		die "invalid meshgate config $dir/meshgate.yaml"
	# env execs meshgate, so the recorded pid is meshgate's own.
	# shellcheck disable=SC2046 # sidecar_env's words are separate assignments
	spawn "sidecar-$name" "$dir/stderr.log" env $(sidecar_env) "$MESHGATE" sidecar -config "$dir/meshgate.yaml"
	pid=$LAST_PID
	consul_wait "sidecar-$name" "$pid" "http://127.0.0.1:$admin/ready" "$dir/stderr.log" "$MESH_READY_TIMEOUT" ||
		die "sidecar $name not ready (logs: $dir)"
	[[ $(cat "/proc/$pid/comm" 2>/dev/null) == meshgate ]] || die "pid $pid is not meshgate"
	SIDECAR_PID[$name]=$pid
	SIDECAR_ADMIN[$name]=$admin
}

# start_sidecar_chain starts path D: nginx -> the client's sidecar upstream
# listener for app -> (mTLS) app's sidecar -> app.
start_sidecar_chain() {
	local dir=$TMP/nginx port up
	mkdir -p "$dir"
	read -r port up < <(free_ports 2)
	# The client sidecar fronts nginx (registered as service "client" with a
	# TCP check on nginx's port) and gives it a plaintext listener for app.
	start_sidecar client "$port" "[ { service: app, bind: 127.0.0.1:$up } ]"
	render "$TEMPLATES/nginx-sidecar.conf.tmpl" "$dir/nginx.conf" \
		DIR="$dir" PORT="$port" UPSTREAM_PORT="$up"
	spawn nginx "$dir/stderr.log" nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log"
	# The first 200 through nginx proves the whole chain, mTLS and intention included.
	wait_ready chain "$LAST_PID" "http://127.0.0.1:$port/" "$dir"
	TARGET_PORT[chain]=$port
	PATH_PIDS[chain]="nginx=$LAST_PID client-sidecar=${SIDECAR_PID[client]} app-sidecar=${SIDECAR_PID[app]}"
	PATH_DESC[chain]="nginx (2 workers, upstream keepalive 64) → client's meshgate sidecar upstream listener ═mTLS═▶ app's sidecar → app"
}

# rl_get TARGET ROUND KEY prints one fixed-rate figure (0 when absent).
rl_get() { echo "${RL[$1:$2:$3]:-0}"; }

# rl_median TARGET KEY prints the median over rounds of one fixed-rate figure.
rl_median() {
	local round vals=()
	for ((round = 1; round <= ROUNDS; round++)); do
		vals+=("$(rl_get "$1" "$round" "$2")")
	done
	median "${vals[@]}"
}

# rl_labels TARGET prints the process labels of a path, one per line.
rl_labels() {
	local kv
	for kv in ${PATH_PIDS[$1]:-}; do
		echo "${kv%%=*}"
	done
}

# run_rate TARGET ROUND runs one fixed-rate window through TARGET, sampling
# the CPU of its proxies, and stores every "key value" line in RL. It also
# derives "per1k.<label>" (vCPU per 1000 req/s) and their sum "per1k.total".
run_rate() {
	local t=$1 round=$2 out args=() kv k v label total=0 per prof=""
	out=$TMP/raw/rate-$t-round$round.txt
	for kv in ${PATH_PIDS[$t]:-}; do
		args+=(-pid "$kv")
	done
	if [[ $SIDECAR_PROFILE == 1 && $t == merged && $round == 1 ]]; then
		# A CPU profile of the app sidecar over the recorded window.
		log "profiling the app sidecar for $((RATE_DURATION > 1 ? RATE_DURATION - 1 : 1))s"
		# shellcheck disable=SC2016 # the inner sh expands its own arguments
		spawn profile "$TMP/raw/app-sidecar-cpu.pprof.log" sh -c 'sleep "$1" && exec curl -fsS -o "$2" "$3"' sh \
			"$RATE_WARMUP" "$TMP/raw/app-sidecar-cpu.pprof" \
			"http://127.0.0.1:${SIDECAR_ADMIN[app]}/debug/pprof/profile?seconds=$((RATE_DURATION > 1 ? RATE_DURATION - 1 : 1))"
		prof=$LAST_PID
	fi
	load_to "$out" "$out.stderr" "$RATELOAD_BIN" -url "http://127.0.0.1:${TARGET_PORT[$t]}/" \
		-rate "$RATE" -duration "${RATE_DURATION}s" -warmup "${RATE_WARMUP}s" -conns "$RATE_CONNS" \
		-clk-tck "$(getconf CLK_TCK)" "${args[@]}" || {
		cat "$out.stderr" >&2
		die "rateload through $t failed ($out.stderr)"
	}
	if [[ -n $prof ]]; then
		wait "$prof" || log "warning: the CPU profile failed ($TMP/raw/app-sidecar-cpu.pprof.log)"
		forget_pid "$prof"
	fi
	while read -r k v; do
		[[ $k == failure ]] && continue
		RL[$t:$round:$k]=$v
	done <"$out"
	if grep -q '^failure ' "$out"; then
		log "$t fixed-rate round $round: failures:"
		grep '^failure ' "$out" >&2
	fi
	for label in $(rl_labels "$t"); do
		per=$(awk -v v="$(rl_get "$t" "$round" "vcpu.$label")" -v r="$(rl_get "$t" "$round" achieved_rps)" \
			'BEGIN { x = 0; if (r > 0) x = v / (r / 1000); printf "%.4f", x }')
		RL[$t:$round:per1k.$label]=$per
		total=$(awk -v a="$total" -v b="$per" 'BEGIN { printf "%.4f", a + b }')
	done
	RL[$t:$round:per1k.total]=$total
	log "$(printf '%-9s rate round %d: %7.1f req/s  p50 %7.3f ms  p99 %7.3f ms  proxies %.4f vCPU per 1000 req/s' \
		"$t" "$round" "$(rl_get "$t" "$round" achieved_rps)" "$(rl_get "$t" "$round" p50_ms)" \
		"$(rl_get "$t" "$round" p99_ms)" "$total")"
}

# measure_rate TARGET... runs ROUNDS fixed-rate rounds, rotating the order.
measure_rate() {
	local targets=("$@") n=$# round i
	for ((round = 1; round <= ROUNDS; round++)); do
		for ((i = 0; i < n; i++)); do
			run_rate "${targets[$(((i + round - 1) % n))]}" "$round"
		done
	done
}

# proc_kb PID FIELD prints a /proc/PID/status figure (VmRSS, VmHWM) in kB.
proc_kb() {
	awk -v f="$2:" '$1 == f { print $2; found = 1 } END { exit !found }' "/proc/$1/status" ||
		die "no $2 for pid $1"
}

# proc_ticks PID prints utime+stime of PID in clock ticks.
proc_ticks() {
	# Fields after the command name's last ')': utime and stime are the 12th and 13th.
	sed 's/.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'
}

# mb KB prints decimal megabytes (10^6 bytes, as the consul scenario reports).
mb() { awk -v k="$1" 'BEGIN { printf "%.1f", k * 1024 / 1e6 }'; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

# delta A B prints B - A with 3 decimals; pct_saving CHAIN MERGED prints how
# much lower MERGED is than CHAIN, in percent of CHAIN.
delta() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%+.3f", b - a }'; }
# added TARGET BASE VALUE is the cell "added vs direct": VALUE - BASE, or a
# dash for direct itself.
added() {
	if [[ $1 == direct ]]; then
		echo "—"
	else
		delta "$2" "$3"
	fi
}
pct_saving() { awk -v c="$1" -v m="$2" 'BEGIN { if (c > 0) printf "%.0f%%", 100 * (c - m) / c; else print "n/a" }'; }

# stop_now NAME PID TIMEOUT sends SIGTERM to PID, waits up to TIMEOUT seconds
# (then kills it) and forgets it.
stop_now() {
	local name=$1 pid=$2 deadline=$((SECONDS + $3))
	kill -TERM "$pid" 2>/dev/null || true
	while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		log "$name still running $3 s after SIGTERM; killing"
		kill -KILL "$pid" 2>/dev/null || true
	fi
	wait "$pid" 2>/dev/null || true
	forget_pid "$pid"
}

# verdict VALUE LIMIT prints "meets" when VALUE <= LIMIT.
verdict() {
	if awk -v v="$1" -v l="$2" 'BEGIN { exit !(v <= l) }'; then echo "meets"; else echo "**MISSES**"; fi
}

scenario_sidecar() {
	local cdir=$TMP/consul raw=$TMP/raw consul_bin t round idle=${IDLE:-10}
	local app_pid idle_rss idle_hwm idle_t0 idle_t1 idle_s0 idle_cpu
	local MESH_READY_TIMEOUT=${MESH_READY_TIMEOUT:-60}
	# Registration -> passing check -> the caller's watch can take a few check
	# intervals, so paths through Consul get longer than READY_TIMEOUT.
	local READY_TIMEOUT=$MESH_READY_TIMEOUT
	[[ $idle =~ ^[1-9][0-9]*$ ]] || die "IDLE must be a positive integer (seconds)"
	mkdir -p "$cdir" "$raw"

	log "installing consul (scripts/install-consul.sh; cached after the first build)"
	consul_bin=$("$ROOT/scripts/install-consul.sh" | tail -n 1) || die "scripts/install-consul.sh failed"
	[[ -x $consul_bin ]] || die "install-consul.sh printed '$consul_bin', not an executable"
	log "starting consul agent -dev (Connect on, built-in CA)"
	start_consul_agent "$cdir" "$consul_bin" 1000

	# Intentions first: the sidecar denies callers no intention matches.
	log "setting intentions edge -> app and client -> app (allow)"
	consul_put_config '{"Kind":"service-defaults","Name":"app","Protocol":"http"}'
	consul_put_config '{"Kind":"service-intentions","Name":"app","Sources":[{"Name":"edge","Action":"allow"},{"Name":"client","Action":"allow"}]}'

	log "starting the app (benchorigin) and its sidecar"
	start_origin app
	start_sidecar app "$ORIGIN_PORT" "[ ]"
	app_pid=${SIDECAR_PID[app]}

	# Idle footprint before any request reaches it: watches (roots, leaf,
	# intentions) and the agent's check of /ready are all that run.
	log "app sidecar idle for ${idle}s (RSS and CPU from /proc/$app_pid)"
	idle_t0=$(proc_ticks "$app_pid")
	idle_s0=$(date +%s.%N)
	sleep "$idle"
	idle_t1=$(proc_ticks "$app_pid")
	idle_rss=$(proc_kb "$app_pid" VmRSS)
	idle_hwm=$(proc_kb "$app_pid" VmHWM)
	idle_cpu=$(awk -v a="$idle_t0" -v b="$idle_t1" -v s0="$idle_s0" -v s1="$(date +%s.%N)" \
		-v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.2f", 100 * (b - a) / hz / (s1 - s0) }')
	log "app sidecar idle: VmRSS $(mb "$idle_rss") MB, VmHWM $(mb "$idle_hwm") MB, CPU $idle_cpu% of a core"

	TARGET_PORT[direct]=$ORIGIN_PORT
	PATH_DESC[direct]="the app (benchorigin, fixed 1 KiB body) itself: the baseline"
	log "starting B: meshgate edge, static plaintext route"
	start_meshgate_from edge meshgate-edge-static.yaml.tmpl "" ORIGIN_PORT="$ORIGIN_PORT"
	PATH_PIDS[edge]="edge=$LAST_PID"
	PATH_DESC[edge]="meshgate edge (static route, plaintext) → app"
	log "starting C: meshgate edge with identity edge (Connect) -> app's sidecar"
	start_meshgate_from merged meshgate-edge-connect.yaml.tmpl "" CONSUL_PORT="$BENCH_CONSUL_PORT"
	PATH_PIDS[merged]="edge=$LAST_PID app-sidecar=$app_pid"
	PATH_DESC[merged]="meshgate edge (identity edge, Connect) ═mTLS═▶ app's meshgate sidecar → app"
	log "starting D: nginx -> client sidecar -> app's sidecar"
	start_sidecar_chain

	measure "${SIDECAR_TARGETS[@]}"
	log "fixed-rate phase: $RATE req/s for ${RATE_DURATION}s per path and round"
	measure_rate "${SIDECAR_TARGETS[@]}"

	local loaded_rss loaded_hwm
	loaded_rss=$(proc_kb "$app_pid" VmRSS)
	loaded_hwm=$(proc_kb "$app_pid" VmHWM)
	# A sidecar drains on SIGTERM: it deregisters and waits (up to 10 s) for
	# the agent to stop listing it, so stop both while the agent still runs.
	log "stopping the sidecars (they deregister from Consul first)"
	stop_now sidecar-client "${SIDECAR_PID[client]}" 15
	stop_now sidecar-app "$app_pid" 15
	local d_p50 d_p99 d_r50 d_r99
	d_p50=$(median_of P50 direct)
	d_p99=$(median_of P99 direct)
	d_r50=$(rl_median direct p50_ms)
	d_r99=$(rl_median direct p99_ms)
	{
		report_head "meshgate sidecar benchmark"
		echo "## Paths"
		echo
		echo "| path | what wrk / rateload reach |"
		echo "|---|---|"
		echo "| A. direct | ${PATH_DESC[direct]} |"
		echo "| B. edge | ${PATH_DESC[edge]} |"
		echo "| C. merged | ${PATH_DESC[merged]} |"
		echo "| D. chain | ${PATH_DESC[chain]} |"
		echo
		echo "- Consul: $("$consul_bin" version | head -n 1), agent -dev (built-in Connect CA), log level warn;" \
			"intentions: app allows edge and client (service-intentions config entry), everything else denied"
		echo "- Access logs off on every hop (nginx and meshgate); meshgate log level warn; metrics on (always)."
		echo "- Sidecar Go runtime settings: $(sidecar_env | sed 's/^$/defaults (no GOGC or GOMEMLIMIT)/')"
		if [[ $SIDECAR_PROFILE == 1 ]]; then
			echo "- SIDECAR_PROFILE=1: the app sidecar was CPU-profiled during C's first fixed-rate round" \
				"(that round's CPU includes the profiler's cost): $TMP/raw/app-sidecar-cpu.pprof"
		fi
		echo "- All four paths run side by side (started once); only one is loaded at a time, in a rotating order."
		echo
		echo "## Saturation: wrk -t$THREADS -c$CONNS, keep-alive (median of $ROUNDS rounds)"
		echo
		echo "| path | req/s | p50 ms | p99 ms | added p50 ms vs direct | added p99 ms vs direct | errors |"
		echo "|---|---:|---:|---:|---:|---:|---|"
		for t in "${SIDECAR_TARGETS[@]}"; do
			printf '| %s | %.0f | %.3f | %.3f | %s | %s | %s |\n' "$t" \
				"$(median_of RPS "$t")" "$(median_of P50 "$t")" "$(median_of P99 "$t")" \
				"$(added "$t" "$d_p50" "$(median_of P50 "$t")")" \
				"$(added "$t" "$d_p99" "$(median_of P99 "$t")")" \
				"$(errors_cell "$t")"
		done
		echo
		local m50 m99 c50 c99 mr cr
		m50=$(median_of P50 merged) m99=$(median_of P99 merged) mr=$(median_of RPS merged)
		c50=$(median_of P50 chain) c99=$(median_of P99 chain) cr=$(median_of RPS chain)
		echo "Merged hop (C) vs classic chain (D), saturation: req/s ratio C/D $(ratio "$mr" "$cr");" \
			"p50 saving $(delta "$m50" "$c50" | tr -d +) ms ($(pct_saving "$c50" "$m50"));" \
			"p99 saving $(delta "$m99" "$c99" | tr -d +) ms ($(pct_saving "$c99" "$m99"))."
		echo "Per round (C/D req/s):" "$(for ((round = 1; round <= ROUNDS; round++)); do
			printf '%s ' "$(ratio "${RPS[merged:$round]}" "${RPS[chain:$round]}")"
		done)"
		echo
		echo "Under wrk every path is saturated (closed loop): latency there is mostly queueing," \
			"about connections / throughput, so the fixed-rate table below is the one for per-hop latency."
		echo "A negative added figure means direct's own median was worse: at saturation wrk and the app" \
			"fight for the $(nproc) CPUs and direct's p99 is scheduler noise (see the rounds below)."
		echo
		echo "## Fixed rate: $RATE req/s open loop for ${RATE_DURATION}s (after ${RATE_WARMUP}s warm-up), median of $ROUNDS rounds"
		echo
		echo "| path | achieved req/s | p50 ms | p99 ms | added p50 ms vs direct | added p99 ms vs direct | proxies' vCPU per 1000 req/s | failed |"
		echo "|---|---:|---:|---:|---:|---:|---:|---:|"
		for t in "${SIDECAR_TARGETS[@]}"; do
			local failed=0
			for ((round = 1; round <= ROUNDS; round++)); do
				failed=$((failed + $(rl_get "$t" "$round" failed)))
			done
			printf '| %s | %.1f | %.3f | %.3f | %s | %s | %s | %s |\n' "$t" \
				"$(rl_median "$t" achieved_rps)" "$(rl_median "$t" p50_ms)" "$(rl_median "$t" p99_ms)" \
				"$(added "$t" "$d_r50" "$(rl_median "$t" p50_ms)")" \
				"$(added "$t" "$d_r99" "$(rl_median "$t" p99_ms)")" \
				"$([[ $t == direct ]] && echo "— (none)" || printf '%.4f' "$(rl_median "$t" per1k.total)")" \
				"$failed"
		done
		echo
		m50=$(rl_median merged p50_ms) m99=$(rl_median merged p99_ms)
		c50=$(rl_median chain p50_ms) c99=$(rl_median chain p99_ms)
		echo "Merged hop (C) vs classic chain (D), fixed rate: p50 saving $(delta "$m50" "$c50" | tr -d +) ms" \
			"($(pct_saving "$c50" "$m50")); p99 saving $(delta "$m99" "$c99" | tr -d +) ms ($(pct_saving "$c99" "$m99"));" \
			"proxies' CPU $(rl_median merged per1k.total) vs $(rl_median chain per1k.total) vCPU per 1000 req/s" \
			"($(pct_saving "$(rl_median chain per1k.total)" "$(rl_median merged per1k.total)") less)."
		echo
		echo "Latency is from when rateload issued each request (a request waiting for a free worker counts);" \
			"rateload's own service-time percentiles (svc_*) are in the raw files."
		echo
		echo "### CPU by process at $RATE req/s (median of $ROUNDS rounds; utime+stime from /proc over the window)"
		echo
		echo "| path | process | vCPU | vCPU per 1000 req/s |"
		echo "|---|---|---:|---:|"
		local label
		for t in edge merged chain; do
			for label in $(rl_labels "$t"); do
				printf '| %s | %s | %.4f | %.4f |\n' "$t" "$label" \
					"$(rl_median "$t" "vcpu.$label")" "$(rl_median "$t" "per1k.$label")"
			done
		done
		echo
		echo "## Targets"
		echo
		local cpu_c cpu_d
		cpu_c=$(rl_median merged per1k.app-sidecar)
		cpu_d=$(rl_median chain per1k.app-sidecar)
		echo "| figure | measured | target | verdict |"
		echo "|---|---:|---|---|"
		echo "| app sidecar idle VmRSS (after start-up + ${idle}s idle, watches running) | $(mb "$idle_rss") MB ($(mib "$idle_rss") MiB) | ≤ 20 MB | $(verdict "$(mb "$idle_rss")" 20) |"
		echo "| app sidecar CPU per 1000 req/s through C (median of $ROUNDS) | $cpu_c vCPU | ≤ 0.1 vCPU | $(verdict "$cpu_c" 0.1) |"
		echo
		echo "- app sidecar idle: VmHWM $(mb "$idle_hwm") MB, CPU $idle_cpu% of one core over the ${idle}s" \
			"(no request had reached it yet)"
		echo "- app sidecar after all the load: VmRSS $(mb "$loaded_rss") MB, VmHWM $(mb "$loaded_hwm") MB"
		echo "- app sidecar CPU per 1000 req/s through D (same role, callers via client sidecar): $cpu_d vCPU"
		echo "- CPU per round (C, app sidecar):" "$(for ((round = 1; round <= ROUNDS; round++)); do
			printf '%s ' "$(rl_get merged "$round" per1k.app-sidecar)"
		done)"
		echo "- MB = 10^6 bytes; MiB = 2^20. Clock-tick resolution: 1/$(getconf CLK_TCK) s per sample."
		echo "- note: wrk/rateload, consul, nginx, every meshgate and the app share the same $(nproc) CPUs;" \
			"vCPU figures include the sidecar's Consul watches and the agent's /ready checks."
		echo
		echo "## Rounds (wrk)"
		echo
		echo "| round | path | req/s | p50 ms | p99 ms | non-2xx/socket errors |"
		echo "|---:|---|---:|---:|---:|---|"
		for ((round = 1; round <= ROUNDS; round++)); do
			for t in "${SIDECAR_TARGETS[@]}"; do
				printf '| %d | %s | %s | %s | %s | %s |\n' "$round" "$t" \
					"${RPS[$t:$round]}" "${P50[$t:$round]}" "${P99[$t:$round]}" "${ERRS[$t:$round]}"
			done
		done
		echo
		echo "## Rounds (fixed rate)"
		echo
		echo "| round | path | achieved req/s | p50 ms | p99 ms | p99.9 ms | proxies' vCPU per 1000 req/s | failed |"
		echo "|---:|---|---:|---:|---:|---:|---:|---:|"
		for ((round = 1; round <= ROUNDS; round++)); do
			for t in "${SIDECAR_TARGETS[@]}"; do
				printf '| %d | %s | %s | %s | %s | %s | %s | %s |\n' "$round" "$t" \
					"$(rl_get "$t" "$round" achieved_rps)" "$(rl_get "$t" "$round" p50_ms)" \
					"$(rl_get "$t" "$round" p99_ms)" "$(rl_get "$t" "$round" p99.9_ms)" \
					"$(rl_get "$t" "$round" per1k.total)" "$(rl_get "$t" "$round" failed)"
			done
		done
		echo
		echo "## meshgate warnings"
		echo
		echo '```text'
		for t in edge merged sidecar-app sidecar-client; do
			if [[ -s $TMP/$t/stderr.log ]]; then
				echo "== $t"
				tail -n 10 "$TMP/$t/stderr.log"
			fi
		done
		echo '```'
		echo
		echo "Raw output: $raw/ (configs: $TMP/*/meshgate.yaml, $TMP/nginx/nginx.conf; agent log: $cdir/consul.log)"
	} | tee "$BENCH_OUT"
}

# ------------------------------------------------------- scenario: plugins --

PLUGIN_TARGETS=(p0 p1 p3)   # meshgate edges with 0, 1 and 3 stamper policies on the route
declare -A PLUGIN_N=([p0]=0 [p1]=1 [p3]=3)
declare -A PM=()            # plugin metrics of one load window: "target:kind:round:key" -> value
declare -A PLUGIN_PROCS=()  # target -> "name pid state phases" lines from /plugins
declare -A STAMPS=()        # target -> the X-Stamp-* headers the upstream saw
STAMPER_BIN=""
STAMPER_SHA=""
ECHO_PORT=""

# start_echo starts the upstream of the stamp check: it answers every GET with
# the request headers it received, one "Name: value" a line.
start_echo() {
	local dir=$TMP/echo port deadline
	mkdir -p "$dir"
	read -r port < <(free_ports 1)
	spawn echo "$dir/stderr.log" python3 -c '
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        body = "".join(f"{k}: {v}\n" for k, v in self.headers.items()).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Echo).serve_forever()
' "$port"
	deadline=$((SECONDS + READY_TIMEOUT))
	until curl -fs -o /dev/null --max-time 1 "http://127.0.0.1:$port/"; do
		if ! kill -0 "$LAST_PID" 2>/dev/null; then
			cat "$dir/stderr.log" >&2
			die "the echo server exited before becoming ready"
		fi
		((SECONDS < deadline)) || die "the echo server is not ready after ${READY_TIMEOUT}s"
		sleep 0.1
	done
	ECHO_PORT=$port
}

# start_plugin_edge TARGET N starts a meshgate edge whose routes carry N
# policies, each running its own stamper process (s1..sN) that sets the
# request header X-Stamp-<i>: stamp-<i>.
start_plugin_edge() {
	local t=$1 n=$2 i plugins="" policies="" route="" note
	for ((i = 1; i <= n; i++)); do
		plugins+="${plugins:+, }s$i: { path: $STAMPER_BIN, sha256: $STAMPER_SHA,"
		plugins+=" config: { request: { X-Stamp-$i: stamp-$i } }${PLUGIN_TIMEOUT:+, timeout: $PLUGIN_TIMEOUT} }"
		policies+="${policies:+, }s$i: { plugin: s$i }"
		route+="${route:+, }s$i"
	done
	case $n in
	0) note="meshgate edge, route without policies" ;;
	1) note="meshgate edge, route with 1 plugin policy (stamper s1: one process)" ;;
	*) note="meshgate edge, route with $n plugin policies (stampers s1..s$n: $n processes)" ;;
	esac
	start_meshgate_from "$t" meshgate-plugins.yaml.tmpl "$note, access log off" \
		ORIGIN_PORT="$ORIGIN_PORT" ECHO_PORT="$ECHO_PORT" \
		PLUGINS="{ $plugins }" POLICIES="{ $policies }" ROUTE_POLICIES="[ $route ]"
	# rateload adds the CPU of a pid's direct children: the plugin processes.
	PATH_PIDS[$t]="meshgate+plugins=$LAST_PID"
}

# plugin_status TARGET prints "name pid state phases" for each plugin of
# TARGET, from its admin /plugins.
plugin_status() {
	curl -fsS --max-time 5 "http://127.0.0.1:${TARGET_ADMIN[$1]}/plugins" | python3 -c '
import json, sys
for p in json.load(sys.stdin) or []:
    phases = ",".join((p.get("capabilities") or {}).get("phases") or []) or "-"
    print(p["name"], p.get("pid", 0), p["state"], phases)
'
}

# check_plugins TARGET N requires N running plugins on TARGET and that the
# upstream of its echo route sees exactly the N stamps, each with its value.
check_plugins() {
	local t=$1 n=$2 out=$TMP/raw/stamps-$1.txt i got procs
	procs=$(plugin_status "$t") || die "$t: cannot read /plugins"
	got=$(grep -c ' running ' <<<"$procs" || true)
	((got == n)) || die "$t: $got plugins running, want $n: $procs"
	PLUGIN_PROCS[$t]=$procs
	curl -fsS --max-time 5 -o "$out" "http://127.0.0.1:${TARGET_PORT[$t]}/__echo" ||
		die "$t: the stamp check request failed"
	for ((i = 1; i <= n; i++)); do
		grep -qix "X-Stamp-$i: stamp-$i" "$out" || {
			cat "$out" >&2
			die "$t: the upstream did not see X-Stamp-$i: stamp-$i"
		}
	done
	got=$(grep -ci '^X-Stamp-' "$out" || true)
	((got == n)) || {
		cat "$out" >&2
		die "$t: the upstream saw $got X-Stamp-* headers, want $n"
	}
	STAMPS[$t]=$({ grep -i '^X-Stamp-' "$out" || true; } | paste -sd ';' - | sed 's/;/; /g')
	log "$t: upstream saw ${STAMPS[$t]:-no stamp} ($n plugin processes running)"
}

# metrics_snap TARGET FILE saves TARGET's admin /metrics into FILE.
metrics_snap() {
	curl -fsS --max-time 5 -o "$2" "http://127.0.0.1:${TARGET_ADMIN[$1]}/metrics" ||
		die "$1: cannot read /metrics"
}

# plugin_window TARGET KIND ROUND BEFORE AFTER stores what happened between two
# /metrics snapshots in PM (and raw/): requests on route "all" and how many were
# not 2xx, and per plugin and phase (and summed over plugins as ALL) the calls,
# calls per request, calls not "ok", mean and approximate p50/p99 from the
# meshgate_plugin_call_duration_seconds buckets (linear inside a bucket, as
# Prometheus' histogram_quantile does).
plugin_window() {
	local t=$1 kind=$2 round=$3 out=$TMP/raw/plugin-metrics-$1-$2-round$3.txt k v
	python3 - "$4" "$5" >"$out" <<'PY' || die "cannot read the metrics of $t ($4, $5)"
import math, re, sys

LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)')
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')

def load(path):
    m = {}
    with open(path) as f:
        for ln in f:
            if ln.startswith("#"):
                continue
            g = LINE.match(ln)
            if g:
                m[(g[1], tuple(sorted(LABEL.findall(g[2] or ""))))] = float(g[3])
    return m

a, b = load(sys.argv[1]), load(sys.argv[2])
delta = [(k[0], dict(k[1]), v - a.get(k, 0.0)) for k, v in b.items()]
req = sum(v for n, l, v in delta if n == "meshgate_requests_total" and l.get("route") == "all")
ok = sum(v for n, l, v in delta
         if n == "meshgate_requests_total" and l.get("route") == "all" and l.get("class") == "2xx")
print("requests", round(req))
print("requests_non2xx", round(req - ok))

series = {}
def add(key, name, l, v):
    s = series.setdefault(key, {"buckets": {}, "count": 0.0, "sum": 0.0, "ok": 0.0, "notok": 0.0, "by": {}})
    if name == "meshgate_plugin_call_duration_seconds_bucket":
        le = float(l["le"])
        s["buckets"][le] = s["buckets"].get(le, 0.0) + v
    elif name == "meshgate_plugin_call_duration_seconds_count":
        s["count"] += v
    elif name == "meshgate_plugin_call_duration_seconds_sum":
        s["sum"] += v
    elif name == "meshgate_plugin_calls_total":
        r = l.get("result", "")
        s["ok" if r == "ok" else "notok"] += v
        if r != "ok":
            s["by"][r] = s["by"].get(r, 0.0) + v

for n, l, v in delta:
    if "plugin" in l and "phase" in l:
        add((l["plugin"], l["phase"]), n, l, v)
        add(("ALL", l["phase"]), n, l, v)

def quantile(buckets, q):
    bs = sorted(buckets.items())
    total = bs[-1][1] if bs else 0
    if total <= 0:
        return "n/a"
    rank, lo, prev = q * total, 0.0, 0.0
    for le, c in bs:
        if c >= rank:
            if math.isinf(le):
                return ">%.1f" % (lo * 1e6)
            x = le if c == prev else lo + (le - lo) * (rank - prev) / (c - prev)
            return "%.1f" % (x * 1e6)
        lo, prev = le, c
    return "n/a"

for (plugin, phase), s in sorted(series.items()):
    p = "plugin.%s.%s." % (plugin, phase)
    print(p + "calls", round(s["count"]))
    print(p + "notok", round(s["notok"]))
    for r, v in sorted(s["by"].items()):
        if round(v):
            print(p + "notok." + r, round(v))
    print(p + "per_req", "%.3f" % (s["count"] / req) if req > 0 else "n/a")
    print(p + "mean_us", "%.1f" % (s["sum"] / s["count"] * 1e6) if s["count"] > 0 else "n/a")
    print(p + "p50_us", quantile(s["buckets"], 0.5))
    print(p + "p99_us", quantile(s["buckets"], 0.99))
PY
	while read -r k v; do
		PM[$t:$kind:$round:$k]=$v
	done <"$out"
}

# pm_get TARGET KIND ROUND KEY prints one window figure ("n/a" when absent).
pm_get() { echo "${PM[$1:$2:$3:$4]:-n/a}"; }

# pm_median TARGET KIND KEY prints the median over rounds of a window figure.
pm_median() {
	local round v vals=()
	for ((round = 1; round <= ROUNDS; round++)); do
		v=$(pm_get "$1" "$2" "$round" "$3")
		[[ $v =~ ^[0-9.]+$ ]] && vals+=("$v")
	done
	if ((${#vals[@]} == 0)); then echo "n/a"; else median "${vals[@]}"; fi
}

# pm_sum TARGET KIND KEY sums a window figure over the rounds.
pm_sum() {
	local round s=0 v
	for ((round = 1; round <= ROUNDS; round++)); do
		v=$(pm_get "$1" "$2" "$round" "$3")
		[[ $v =~ ^[0-9]+$ ]] && s=$((s + v))
	done
	echo "$s"
}

# plugin_run KIND TARGET ROUND runs one wrk or rateload window through TARGET
# between two /metrics snapshots.
plugin_run() {
	local kind=$1 t=$2 round=$3 snap=$TMP/raw/metrics-$2
	metrics_snap "$t" "$snap.before"
	if [[ $kind == wrk ]]; then run_wrk "$t" "$round"; else run_rate "$t" "$round"; fi
	metrics_snap "$t" "$snap.after"
	plugin_window "$t" "$kind" "$round" "$snap.before" "$snap.after"
	local bad=$(($(pm_get "$t" "$kind" "$round" requests_non2xx) + $(pm_sum_round "$t" "$kind" "$round")))
	if ((bad != 0)); then
		log "$t $kind round $round: meshgate counted $(pm_get "$t" "$kind" "$round" requests_non2xx) non-2xx" \
			"answers and $(pm_sum_round "$t" "$kind" "$round") plugin calls that were not ok"
	fi
}

# pm_sum_round TARGET KIND ROUND sums the not-ok plugin calls of one window
# over plugins and phases.
pm_sum_round() {
	local k s=0
	for k in "${!PM[@]}"; do
		[[ $k == "$1:$2:$3:plugin."*".notok" && $k != *".ALL."* ]] && s=$((s + PM[$k]))
	done
	echo "$s"
}

# plugin_bad TARGET KIND sums, over all rounds of KIND, meshgate's non-2xx
# answers and the plugin calls that were not "ok" (by result): "none", or a
# flag. A not-ok call under the open failure policy is a request that skipped
# the plugin, so that window understates what the plugins cost.
plugin_bad() {
	local round n=0 c=0 k r cell
	declare -A by=()
	for ((round = 1; round <= ROUNDS; round++)); do
		n=$((n + $(pm_get "$1" "$2" "$round" requests_non2xx)))
		c=$((c + $(pm_sum_round "$1" "$2" "$round")))
	done
	for k in "${!PM[@]}"; do
		if [[ $k == "$1:$2:"*":plugin."*".notok."* && $k != *".ALL."* ]]; then
			r=${k##*.notok.}
			by[$r]=$((${by[$r]:-0} + PM[$k]))
		fi
	done
	if ((n + c == 0)); then
		echo "none"
		return
	fi
	cell="**FLAGGED**: $n non-2xx, $c plugin calls not ok"
	if ((${#by[@]} > 0)); then
		cell+=" ($(for r in "${!by[@]}"; do printf '%s %s, ' "${by[$r]}" "$r"; done | sed 's/, $//'))"
	fi
	echo "$cell"
}

# us_delta A_MS B_MS DIV prints (B - A) / DIV in microseconds.
us_delta() { awk -v a="$1" -v b="$2" -v d="$3" 'BEGIN { printf "%+.1f", (b - a) * 1000 / d }'; }

# added_vs_p0 TARGET BASE_MS VALUE_MS is the cell "added µs vs 0 plugins".
added_vs_p0() {
	if [[ $1 == p0 ]]; then echo "—"; else us_delta "$2" "$3" 1; fi
}

# procs_cell TARGET joins TARGET's /plugins lines with "; " (a dash if none).
procs_cell() {
	local cell
	cell=$(paste -sd ';' - <<<"${PLUGIN_PROCS[$1]}")
	cell=${cell//;/; }
	echo "${cell:-—}"
}

# steal_pct STAT0 STAT1 prints the steal share of all CPU time between two
# "cpu" lines of /proc/stat.
steal_pct() {
	awk -v a="$1" -v b="$2" 'BEGIN {
		n = split(a, x); split(b, y)
		for (i = 2; i <= n; i++) t += y[i] - x[i]
		if (t > 0) printf "%.1f%%", 100 * (y[9] - x[9]) / t; else print "n/a"
	}'
}

# at_least VALUE LIMIT prints "meets" when VALUE >= LIMIT.
at_least() {
	if awk -v v="$1" -v l="$2" 'BEGIN { exit !(v >= l) }'; then echo "meets"; else echo "**MISSES**"; fi
}

# plugin_label TARGET prints "N plugin(s)" for the report.
plugin_label() {
	local n=${PLUGIN_N[$1]}
	if ((n == 1)); then echo "1 plugin"; else echo "$n plugins"; fi
}

scenario_plugins() {
	local t round i raw=$TMP/raw nt=${#PLUGIN_TARGETS[@]} load_mid stat0 stat1
	mkdir -p "$raw"
	log "stamper: $STAMPER_BIN (sha256 $STAMPER_SHA)"
	start_origin
	start_echo
	for t in "${PLUGIN_TARGETS[@]}"; do
		log "starting $t ($(plugin_label "$t") on the route)"
		start_plugin_edge "$t" "${PLUGIN_N[$t]}"
	done
	for t in "${PLUGIN_TARGETS[@]}"; do
		check_plugins "$t" "${PLUGIN_N[$t]}"
	done

	stat0=$(head -n 1 /proc/stat)
	for t in "${PLUGIN_TARGETS[@]}"; do
		log "warming up $t (${WARMUP}s)"
		wrk_to "$raw/$t-warmup.txt" -t"$THREADS" -c"$CONNS" -d"${WARMUP}s" \
			"http://127.0.0.1:${TARGET_PORT[$t]}/" || die "warm-up of $t failed ($raw/$t-warmup.txt)"
	done
	for ((round = 1; round <= ROUNDS; round++)); do
		for ((i = 0; i < nt; i++)); do
			plugin_run wrk "${PLUGIN_TARGETS[$(((i + round - 1) % nt))]}" "$round"
		done
	done
	load_mid=$(cut -d' ' -f1-3 /proc/loadavg)
	log "fixed-rate phase: $RATE req/s for ${RATE_DURATION}s per instance and round (load average $load_mid)"
	for ((round = 1; round <= ROUNDS; round++)); do
		for ((i = 0; i < nt; i++)); do
			plugin_run rate "${PLUGIN_TARGETS[$(((i + round - 1) % nt))]}" "$round"
		done
	done
	stat1=$(head -n 1 /proc/stat)
	# The stamps must still arrive after all the load (no silent fail-open).
	for t in "${PLUGIN_TARGETS[@]}"; do
		check_plugins "$t" "${PLUGIN_N[$t]}"
	done

	local r0 f50_0 f99_0 f50 f99 phases a50_1 a99_1 a50_3 a99_3 ratio1
	r0=$(median_of RPS p0)
	f50_0=$(rl_median p0 p50_ms) f99_0=$(rl_median p0 p99_ms)
	ratio1=$(ratio "$(median_of RPS p1)" "$r0")
	# Each stamper takes part in the request and the response phase: two gRPC
	# calls per request and plugin.
	phases=$(awk '{ print $4 }' <<<"${PLUGIN_PROCS[p1]}" | tr ',' '\n' | grep -c . || true)
	((phases > 0)) || phases=1
	a50_1=$(us_delta "$f50_0" "$(rl_median p1 p50_ms)" 1)
	a99_1=$(us_delta "$f99_0" "$(rl_median p1 p99_ms)" 1)
	a50_3=$(us_delta "$f50_0" "$(rl_median p3 p50_ms)" 3)
	a99_3=$(us_delta "$f99_0" "$(rl_median p3 p99_ms)" 3)
	{
		report_head "meshgate plugin overhead"
		echo "## Setup"
		echo
		echo "| instance | route policies | plugin processes (name pid state phases) | upstream saw (checked before and after the load) |"
		echo "|---|---|---|---|"
		for t in "${PLUGIN_TARGETS[@]}"; do
			printf '| %s | %s | %s | %s |\n' "$t" "$(plugin_label "$t")" \
				"$(procs_cell "$t")" \
				"${STAMPS[$t]:-no X-Stamp-* header}"
		done
		echo
		echo "- plugin: plugins/examples/stamper (go build into $STAMPER_BIN, sha256 $STAMPER_SHA);" \
			"it asks for no request part and sets one request header; it implements both phases, so" \
			"every plugin on the route costs $phases gRPC calls per request (request + response phase)"
		echo "- plugin settings: timeout ${PLUGIN_TIMEOUT:-50ms (the default)}; default failure policy" \
			"(open: the stamper cannot deny) and breaker (opens after 5 consecutive failures, for 2 s)." \
			"Any call that is not \"ok\" is flagged below: under the open policy that request skipped" \
			"the plugin, so its window understates what the plugins cost"
		echo "- origin: benchorigin (1 KiB body); the stamp check goes to a header-echo server" \
			"through the same instances (route \"echo\", same policies); the load goes to route \"all\""
		echo "- all three instances run side by side (started once); only one is loaded at a time, in a rotating order"
		echo "- access log off; meshgate log level warn; metrics on (always)"
		echo "- load average when the fixed-rate phase started: $load_mid (the saturation phase's own" \
			"processes make most of it: wrk's threads, meshgate, the plugins, the origin)"
		echo "- CPU steal (time the hypervisor gave this VM's CPUs to others) over the measurement:" \
			"$(steal_pct "$stat0" "$stat1")"
		echo
		echo "## Throughput: wrk -t$THREADS -c$CONNS, keep-alive (median of $ROUNDS rounds)"
		echo
		echo "| plugins on the route | req/s | vs 0 plugins | p50 ms | p99 ms | wrk non-2xx/socket errors | meshgate non-2xx, plugin calls not ok |"
		echo "|---|---:|---:|---:|---:|---|---|"
		for t in "${PLUGIN_TARGETS[@]}"; do
			printf '| %s | %.0f | %s | %.3f | %.3f | %s | %s |\n' "$(plugin_label "$t")" \
				"$(median_of RPS "$t")" "$(ratio "$(median_of RPS "$t")" "$r0")" \
				"$(median_of P50 "$t")" "$(median_of P99 "$t")" "$(errors_cell "$t")" "$(plugin_bad "$t" wrk)"
		done
		echo
		echo "1 plugin keeps $ratio1 of plugin-less throughput (target ≥ 0.75): $(at_least "$ratio1" 0.75)."
		echo "Per round (vs 0 plugins, same round):" "$(for ((round = 1; round <= ROUNDS; round++)); do
			printf 'round %d: 1 plugin %s, 3 plugins %s; ' "$round" \
				"$(ratio "${RPS[p1:$round]}" "${RPS[p0:$round]}")" "$(ratio "${RPS[p3:$round]}" "${RPS[p0:$round]}")"
		done | sed 's/; $//')"
		echo
		echo "## Added latency at a fixed rate: $RATE req/s open loop for ${RATE_DURATION}s (after ${RATE_WARMUP}s warm-up), median of $ROUNDS rounds"
		echo
		echo "| plugins on the route | achieved req/s | p50 ms | p99 ms | added p50 µs vs 0 | added p99 µs vs 0 | meshgate+plugins vCPU per 1000 req/s | rateload failed | meshgate non-2xx, plugin calls not ok |"
		echo "|---|---:|---:|---:|---:|---:|---:|---:|---|"
		for t in "${PLUGIN_TARGETS[@]}"; do
			local failed=0
			for ((round = 1; round <= ROUNDS; round++)); do
				failed=$((failed + $(rl_get "$t" "$round" failed)))
			done
			f50=$(rl_median "$t" p50_ms) f99=$(rl_median "$t" p99_ms)
			printf '| %s | %.1f | %.3f | %.3f | %s | %s | %.4f | %s | %s |\n' "$(plugin_label "$t")" \
				"$(rl_median "$t" achieved_rps)" "$f50" "$f99" \
				"$(added_vs_p0 "$t" "$f50_0" "$f50")" "$(added_vs_p0 "$t" "$f99_0" "$f99")" \
				"$(rl_median "$t" per1k.total)" "$failed" "$(plugin_bad "$t" rate)"
		done
		echo
		echo "### Per plugin and per call"
		echo
		echo "| figure | added p50 µs | added p99 µs | target (p50) | verdict |"
		echo "|---|---:|---:|---|---|"
		echo "| per plugin, 1 plugin − 0 ($phases calls) | $a50_1 | $a99_1 | ≤ 30 µs | $(verdict "$a50_1" 30) |"
		echo "| per plugin, (3 plugins − 0) / 3 | $a50_3 | $a99_3 | ≤ 30 µs | $(verdict "$a50_3" 30) |"
		echo "| per gRPC call, 1 plugin: the above / $phases | $(awk -v a="$a50_1" -v p="$phases" 'BEGIN { printf "%+.1f", a / p }') |" \
			"$(awk -v a="$a99_1" -v p="$phases" 'BEGIN { printf "%+.1f", a / p }') | | |"
		echo "| per gRPC call, 3 plugins: the above / $phases | $(awk -v a="$a50_3" -v p="$phases" 'BEGIN { printf "%+.1f", a / p }') |" \
			"$(awk -v a="$a99_3" -v p="$phases" 'BEGIN { printf "%+.1f", a / p }') | | |"
		echo
		echo "Per round (added p50 µs per plugin, paired within the round):" "$(for ((round = 1; round <= ROUNDS; round++)); do
			printf 'round %d: 1 plugin %s, 3 plugins %s; ' "$round" \
				"$(us_delta "$(rl_get p0 "$round" p50_ms)" "$(rl_get p1 "$round" p50_ms)" 1)" \
				"$(us_delta "$(rl_get p0 "$round" p50_ms)" "$(rl_get p3 "$round" p50_ms)" 3)"
		done | sed 's/; $//')"
		echo
		echo "Latency is rateload's, from when it issued each request (1 µs resolution). Medians of" \
			"differences this small move by several µs between runs on a shared 2-CPU machine: read the" \
			"per-round figures, not one number."
		echo
		echo "## Host-measured call latency: meshgate_plugin_call_duration_seconds (admin /metrics)"
		echo
		echo "Per load window (snapshot before and after, difference of the counters), median of $ROUNDS rounds." \
			"p50/p99 are interpolated inside the histogram's buckets (50, 100, 250, 500 µs, 1 ms, ...)," \
			"so they are approximate; the mean is exact (sum / count)."
		echo
		echo "| load | instance | plugin | phase | calls per request | mean µs | ≈ p50 µs | ≈ p99 µs | calls not ok |"
		echo "|---|---|---|---|---:|---:|---:|---:|---:|"
		local kind plugin phase
		for kind in rate wrk; do
			for t in p1 p3; do
				for plugin in $(awk '{ print $1 }' <<<"${PLUGIN_PROCS[$t]}") $([[ $t == p3 ]] && echo ALL); do
					for phase in request response; do
						[[ -n ${PM[$t:$kind:1:plugin.$plugin.$phase.calls]:-} ]] || continue
						printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' \
							"$([[ $kind == rate ]] && echo "$RATE req/s" || echo "wrk -c$CONNS")" "$t" "$plugin" "$phase" \
							"$(pm_median "$t" "$kind" "plugin.$plugin.$phase.per_req")" \
							"$(pm_median "$t" "$kind" "plugin.$plugin.$phase.mean_us")" \
							"$(pm_median "$t" "$kind" "plugin.$plugin.$phase.p50_us")" \
							"$(pm_median "$t" "$kind" "plugin.$plugin.$phase.p99_us")" \
							"$(pm_sum "$t" "$kind" "plugin.$plugin.$phase.notok")"
					done
				done
			done
		done
		echo
		echo "Host-measured per-call p50 with 1 plugin at $RATE req/s: request phase" \
			"≈ $(pm_median p1 rate plugin.s1.request.p50_us) µs, response phase" \
			"≈ $(pm_median p1 rate plugin.s1.response.p50_us) µs. This is the whole call as meshgate" \
			"times it (message fill, gRPC over the plugin's socket, the plugin's work, the decision" \
			"checked); the end-to-end added latency above also includes applying the decision and" \
			"the scheduling of one more process."
		echo
		echo "- note: wrk/rateload, meshgate, the plugin processes and the origin share the same $(nproc) CPUs;" \
			"with 3 plugins, 3 more processes compete for them."
		echo
		echo "## Rounds (wrk)"
		echo
		echo "| round | instance | req/s | p50 ms | p99 ms | wrk non-2xx/socket errors | requests (meshgate) | plugin calls not ok |"
		echo "|---:|---|---:|---:|---:|---|---:|---:|"
		for ((round = 1; round <= ROUNDS; round++)); do
			for t in "${PLUGIN_TARGETS[@]}"; do
				printf '| %d | %s | %s | %s | %s | %s | %s | %s |\n' "$round" "$t" \
					"${RPS[$t:$round]}" "${P50[$t:$round]}" "${P99[$t:$round]}" "${ERRS[$t:$round]}" \
					"$(pm_get "$t" wrk "$round" requests)" "$(pm_sum_round "$t" wrk "$round")"
			done
		done
		echo
		echo "## Rounds (fixed rate)"
		echo
		echo "| round | instance | achieved req/s | p50 ms | p99 ms | p99.9 ms | meshgate+plugins vCPU per 1000 req/s | failed | plugin calls not ok | s1 request ≈ p50 µs |"
		echo "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"
		for ((round = 1; round <= ROUNDS; round++)); do
			for t in "${PLUGIN_TARGETS[@]}"; do
				printf '| %d | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$round" "$t" \
					"$(rl_get "$t" "$round" achieved_rps)" "$(rl_get "$t" "$round" p50_ms)" \
					"$(rl_get "$t" "$round" p99_ms)" "$(rl_get "$t" "$round" p99.9_ms)" \
					"$(rl_get "$t" "$round" per1k.total)" "$(rl_get "$t" "$round" failed)" \
					"$(pm_sum_round "$t" rate "$round")" \
					"$(pm_get "$t" rate "$round" plugin.s1.request.p50_us | sed 's|^n/a$|—|')"
			done
		done
		echo
		echo "## meshgate warnings"
		echo
		echo '```text'
		for t in "${PLUGIN_TARGETS[@]}"; do
			if [[ -s $TMP/$t/stderr.log ]]; then
				echo "== $t"
				tail -n 10 "$TMP/$t/stderr.log"
			fi
		done
		echo '```'
		echo
		echo "Raw output: $raw/ (wrk, rateload, /metrics differences per window; configs: $TMP/p*/meshgate.yaml)"
	} | tee "$BENCH_OUT"
}

# configure_scenario sets what the scenario needs before anything starts.
configure_scenario() {
	if [[ $SCENARIO == sidecar ]]; then
		# A sidecar's drain waits up to 10 s for Consul to drop it; when the
		# script fails early, cleanup stops the agent at the same time, so give
		# the drain its full length before killing.
		STOP_TIMEOUT=15
	fi
	if [[ $SCENARIO == sidecar || $SCENARIO == plugins || $SCENARIO == jwt ]]; then
		# Moderate: enough to load every path, few enough that the latency
		# under wrk is not all queueing.
		CONNS=${CONNS:-16}
	else
		CONNS=${CONNS:-64}
	fi
	[[ $CONNS =~ ^[1-9][0-9]*$ ]] || die "CONNS must be a positive integer"
	case $SCENARIO in
	proxy)
		TOOLS=(nginx haproxy wrk)
		LOAD_DESC="wrk -t$THREADS -c$CONNS -d${DURATION}s, $ROUNDS rounds (rotating order), ${WARMUP}s warm-up"
		;;
	ratelimit)
		TOOLS=(wrk)
		LOAD_DESC="wrk -t$THREADS -c$CONNS -d${DURATION}s, $ROUNDS rounds (alternating), ${WARMUP}s warm-up"
		;;
	jwt)
		TOOLS=(wrk curl)
		LOAD_DESC="wrk -t$THREADS -c$CONNS -d${DURATION}s -H 'Authorization: Bearer <token>', $ROUNDS rounds (alternating), ${WARMUP}s warm-up"
		;;
	fault)
		TOOLS=()
		LOAD_DESC="scripts/bench/faultload: $CONNS keep-alive connections (fasthttp, no client retries)"
		LOAD_DESC+=" for ${FAULT_DURATION}s, one origin SIGKILLed at ${FAULT_KILL_AT}s, /clusters polled every $FAULT_POLL"
		;;
	consul)
		TOOLS=()
		LOAD_DESC="scripts/bench/consulbench: ${SERVICES:-1000} services x 2 instances; ${CHANGES:-100} sequential changes,"
		LOAD_DESC+=" then a burst changing every service; probes through meshgate (fasthttp, no client retries)"
		;;
	sidecar | plugins)
		if [[ $SCENARIO == sidecar ]]; then TOOLS=(wrk nginx curl); else TOOLS=(wrk curl); fi
		[[ $RATE =~ ^[1-9][0-9]*$ ]] || die "RATE must be a positive integer (req/s)"
		[[ $RATE_DURATION =~ ^[1-9][0-9]*$ ]] || die "RATE_DURATION must be a positive integer (seconds)"
		[[ $RATE_WARMUP =~ ^[0-9]+$ ]] || die "RATE_WARMUP must be a non-negative integer (seconds)"
		[[ $RATE_CONNS =~ ^[1-9][0-9]*$ ]] || die "RATE_CONNS must be a positive integer"
		LOAD_DESC="wrk -t$THREADS -c$CONNS -d${DURATION}s, $ROUNDS rounds (rotating order), ${WARMUP}s warm-up;"
		LOAD_DESC+=" then scripts/bench/rateload: $RATE req/s open loop, ${RATE_DURATION}s (+${RATE_WARMUP}s warm-up),"
		LOAD_DESC+=" $RATE_CONNS workers, $ROUNDS rounds (rotating order)"
		;;
	esac
	if [[ $SCENARIO != proxy && $SKIP_MESHGATE == 1 ]]; then
		die "SKIP_MESHGATE=1 applies to the proxy scenario only"
	fi
	if [[ $SCENARIO != fault ]] && ((ROUNDS < 3)); then
		log "warning: ROUNDS=$ROUNDS; use at least 3 for publishable figures"
	fi
}

main() {
	SCENARIO=${1:-proxy}
	case $SCENARIO in
	-h | --help | help)
		usage
		return 0
		;;
	esac
	declare -F "scenario_$SCENARIO" >/dev/null || {
		usage >&2
		die "unknown scenario '$SCENARIO'"
	}
	[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive integer"
	[[ $DURATION =~ ^[1-9][0-9]*$ ]] || die "DURATION must be a positive integer (seconds)"
	[[ $WARMUP =~ ^[1-9][0-9]*$ ]] || die "WARMUP must be a positive integer (seconds)"
	configure_scenario

	trap cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
	TMP=$(mktemp -d "${TMPDIR:-/tmp}/meshgate-bench.XXXXXX")
	BENCH_OUT=${BENCH_OUT:-$TMP/bench-results.md}

	ensure_tools
	build_binaries
	log "temp dir: $TMP"
	LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
	if awk -v l="${LOAD_BEFORE%% *}" 'BEGIN { exit !(l > 1) }'; then
		log "warning: load average is $LOAD_BEFORE; other work will make the figures noisy"
	fi
	"scenario_$SCENARIO"
	echo
	echo "Results written to $BENCH_OUT"
}

main "$@"
