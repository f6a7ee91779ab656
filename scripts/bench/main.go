package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
)

func main() {
	// Ctrl-C or a SIGTERM from scripts/bench.sh ends the scenario through the
	// context; the deferred cleanup then stops every peer.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "[bench] error: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	scenario := "edge"
	if len(args) > 0 {
		scenario = args[0]
	}
	switch scenario {
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage())
		return nil
	case "proxy":
		// The name bench.sh used for the edge comparison.
		scenario = "edge"
	}
	if !slices.Contains(scenarios(), scenario) {
		fmt.Fprint(stderr, usage())
		return fmt.Errorf("unknown scenario %q", scenario)
	}
	if len(args) > 1 {
		return fmt.Errorf("unexpected arguments %q: settings are environment variables (see help)", args[1:])
	}
	opt, err := parseOptions(scenario, os.Getenv)
	if err != nil {
		return err
	}
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	// Debian puts nginx and haproxy in sbin, which a non-login root shell may
	// lack; wrk and the reports must agree on the decimal point.
	_ = os.Setenv("PATH", os.Getenv("PATH")+":/usr/local/sbin:/usr/sbin:/sbin")
	_ = os.Setenv("LC_ALL", "C")

	h := newHarness(scenario, opt, root, stderr)
	tmp, err := os.MkdirTemp(os.Getenv("TMPDIR"), "meshgate-bench.")
	if err != nil {
		return err
	}
	h.tmp = tmp
	if h.opt.out == "" {
		h.opt.out = filepath.Join(tmp, "bench-results.md")
	}
	defer h.cleanup()
	if err := h.prepare(ctx); err != nil {
		return err
	}
	report, err := h.runScenario(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("interrupted (%w); logs are in %s", err, tmp)
		}
		return fmt.Errorf("%w (logs are in %s)", err, tmp)
	}
	if _, err := io.WriteString(stdout, report); err != nil {
		return err
	}
	if err := os.WriteFile(h.opt.out, []byte(report), 0o644); err != nil {
		return fmt.Errorf("write results: %w", err)
	}
	fmt.Fprintf(stdout, "\nResults written to %s\n", h.opt.out)
	return nil
}

// moduleRoot is the meshgate checkout the harness runs from: the nearest
// directory up from the working directory whose go.mod is meshgate's.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.HasPrefix(string(b), "module github.com/meshgate/meshgate\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("not inside the meshgate checkout (no go.mod of github.com/meshgate/meshgate above the working directory)")
		}
		dir = parent
	}
}

func usage() string {
	return `Usage: scripts/bench.sh [SCENARIO]    (or: go run ./scripts/bench SCENARIO)

Scenarios (default: edge; "proxy" is the old name of edge):
  edge       the origin directly, nginx, HAProxy, a bare fasthttp reverse proxy and the
             meshgate edge, wrk in alternating rounds: req/s, p50, p99, CPU per request
  grpc       h2load (HTTP/2) and grpc-go unary and bidirectional-stream load through the
             origin directly, nginx (grpc_pass), HAProxy (h2) and the meshgate edge; then gRPC
             through the merged hop vs the classic chain (Consul Connect sidecars)
  sidecar    merged hop vs classic chain through Consul Connect sidecars: saturation,
             fixed rate with vCPU per 1000 req/s, idle RSS
  plugins    0, 1 and 3 out-of-process stamper plugins on the route
  jwt        a route with an RS256 jwt policy against one without
  ratelimit  a route with a never-triggering local rate_limit against one without
  fault      one of three origins SIGKILLed under load: requests lost, ejection time
  consul     SERVICES services x 2 instances in Consul: change -> traffic, idle RSS

Environment (defaults in brackets):
  ROUNDS [3] DURATION [10] WARMUP [2]   rounds, seconds per wrk run, warm-up seconds
  THREADS [2] CONNS [64; jwt, sidecar, plugins: 16]   wrk threads and connections
  H2_CONNS [4] H2_STREAMS [16]   grpc: HTTP/2 connections, concurrent streams on each
  RATE [1000] RATE_DURATION [20] RATE_WARMUP [2] RATE_CONNS [16]   sidecar, plugins:
             the fixed-rate load (req/s, recorded s, unrecorded s, workers)
  MESHGATE_BIN   prebuilt meshgate (otherwise built from the tree)
  SKIP_MESHGATE=1   edge only: leave meshgate out
  EDGE_NOLOG=1   edge only: also a meshgate with the access log off ("meshgate-nolog")
  EDGE_TRACING=1   edge only: also meshgates with tracing on, sampled at 0, 1% and 100%
  EDGE_SHIP=1   edge only: also "meshgate-ship", shipping its access log to a nats-server
             (JetStream); then the broker stopped under load and started again: replay rate
  SHIP_OUTAGE [10] SHIP_DRAIN_TIMEOUT [120]   EDGE_SHIP: seconds of load with the broker
             down (and, before, up); seconds the spool gets to drain
  PAIRS [3]   edge: windows of DURATION with the bare fasthttp proxy and meshgate (and
             meshgate-trace0) loaded at once, half the threads and connections each (0: none)
  BENCH_OUT      results file [<tmpdir>/bench-results.md]
  BENCH_CACHE    built binaries [${XDG_CACHE_HOME:-$HOME/.cache}/meshgate-bench]
  KEEP_LOGS=1    keep the access logs in the temp dir
  SERVICES [1000] CHANGES [100] IDLE [10]   consul (IDLE also: sidecar's idle window)
  FAULT_DURATION [20]   fault: seconds of load (kill at 1/4, after-window from 1/2)
  SIDECAR_GOGC, SIDECAR_GOMEMLIMIT   sidecar: Go runtime settings of the two sidecars
  SIDECAR_PROFILE=1   sidecar: CPU profile of the app sidecar in C's first fixed-rate round
  PLUGIN_TIMEOUT   plugins: each stamper's call timeout [meshgate's default]
  READY_TIMEOUT [20] MESH_READY_TIMEOUT [60]   seconds a peer gets to answer

Missing tools (nginx, haproxy, wrk, h2load, nats-server; only those the scenario uses) are installed from
Debian's packages with apt-get. Everything else is built from this tree. Nothing talks to
hosts other than 127.0.0.1. See docs/benchmarks.md.
`
}
