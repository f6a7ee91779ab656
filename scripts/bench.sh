#!/usr/bin/env bash
# Benchmarks of meshgate: the entry point of the Go harness in scripts/bench, which starts the
# peers, runs the load, computes medians and ratios and writes the markdown report.
#
# Usage: scripts/bench.sh [edge|grpc|sidecar|plugins|jwt|ratelimit|fault|consul|help]   (default: edge)
#
# Settings are environment variables (ROUNDS, DURATION, CONNS, ...): `scripts/bench.sh help`
# lists them, and docs/benchmarks.md describes every scenario and what it measures.
#
# Examples:
#   scripts/bench.sh                                # edge comparison, 3 x 10 s rounds
#   ROUNDS=5 DURATION=10 scripts/bench.sh edge
#   ROUNDS=1 DURATION=2 WARMUP=1 scripts/bench.sh edge   # a smoke run, not a measurement
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=${BENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/meshgate-bench}
mkdir -p "$cache"
# Built, not `go run`: the harness must receive Ctrl-C and SIGTERM itself so that it stops
# every process it started.
(cd "$root" && go build -o "$cache/bench" ./scripts/bench)
cd "$root"
exec "$cache/bench" "$@"
