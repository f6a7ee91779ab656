// Command bench is meshgate's benchmark harness: one Go command with a
// sub-command per scenario (edge, grpc, sidecar, plugins, jwt, ratelimit,
// fault, consul). scripts/bench.sh builds and runs it; docs/benchmarks.md says what
// each scenario measures and how to run it.
//
// A scenario starts its peers on loopback ports chosen at run time, loads
// them, computes medians over rounds and the ratios, and renders a markdown
// report to stdout and to BENCH_OUT:
//
//	harness ──apt-get (nginx, haproxy, wrk, nghttp2-client for h2load; only if missing)
//	   │    ──go build (meshgate, benchorigin, fastproxy, rateload, faultload, jwtgen, consulbench, stamper,
//	   │               grpcorigin, grpcload)
//	   │
//	   ├─ supervisor: origin(s), proxies, Consul agent, sidecars ── SIGTERM, grace, SIGKILL on every exit path
//	   │
//	   ├─ per round, per target (rotating order):
//	   │     /proc/PID/stat (utime+stime, target and its children) ──┐
//	   │     wrk -t -c -d --latency ──▶ target ──▶ origin              ├─▶ req/s, p50, p99, CPU µs per request
//	   │     /proc/PID/stat again ────────────────────────────────────┘
//	   │  or h2load / grpcload (grpc; the same /proc reads around each run),
//	   │  rateload (fixed rate, samples /proc itself), faultload, consulbench
//	   │
//	   └─ medians, ratios, verdicts ──▶ markdown tables
//
// The pure parts (parsing wrk, h2load, grpcload, rateload, /proc and Prometheus text; medians;
// table rendering; option parsing) are unit-tested with captured inputs in
// testdata/. Nothing in `go test` starts a peer or a load: the scenarios run
// only from the command.
//
// Settings are environment variables with the names bench.sh always had
// (ROUNDS, DURATION, CONNS, ...), so existing invocations keep working.
package main
