package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// scenarios lists every sub-command, in the order the usage shows them.
func scenarios() []string {
	return []string{"edge", "grpc", "sidecar", "plugins", "jwt", "ratelimit", "fault", "consul"}
}

// options are the knobs of a run. They come from the environment, with the
// names scripts/bench.sh has always used, so existing invocations
// (ROUNDS=5 DURATION=10 scripts/bench.sh) keep working.
type options struct {
	rounds, threads, conns int
	duration, warmup       time.Duration

	h2Conns, h2Streams int // grpc: HTTP/2 connections and concurrent streams on each

	rate, rateConns          int
	rateDuration, rateWarmup time.Duration

	meshgateBin  string
	skipMeshgate bool
	edgeNoLog    bool   // edge: also a meshgate with the access log off
	edgeTracing  bool   // edge: also meshgates with tracing on, sampled at 0, 1% and 100%
	edgeShip     bool   // edge: also a meshgate shipping its access log to a nats-server
	pairs        int    // edge: paired windows per meshgate target against the bare proxy
	out          string // results file; empty: <tmp>/bench-results.md
	cache        string // built binaries
	keepLogs     bool

	shipOutage, shipDrainTimeout time.Duration // EDGE_SHIP: load with the broker down; the drain's limit
	shipPoll                     time.Duration // EDGE_SHIP: /metrics polling during the outage and the drain

	readyTimeout     time.Duration
	meshReadyTimeout time.Duration
	stopTimeout      time.Duration

	services, changes int           // consul
	idle              time.Duration // consul, sidecar

	faultDuration, faultKillAt, faultAfterFrom time.Duration
	faultPoll                                  time.Duration

	sidecarGOGC, sidecarGOMEMLIMIT string
	sidecarProfile                 bool
	pluginTimeout                  string
}

// parseOptions reads the environment for scenario; getenv is os.Getenv in
// main and a map in tests.
func parseOptions(scenario string, getenv func(string) string) (options, error) {
	p := envParser{getenv: getenv}
	o := options{
		rounds:   p.positive("ROUNDS", 3),
		threads:  p.positive("THREADS", 2),
		conns:    p.positive("CONNS", defaultConns(scenario)),
		duration: p.seconds("DURATION", 10, 1),
		warmup:   p.seconds("WARMUP", 2, 1),

		h2Conns:   p.positive("H2_CONNS", 4),
		h2Streams: p.positive("H2_STREAMS", 16),

		rate:         p.positive("RATE", 1000),
		rateConns:    p.positive("RATE_CONNS", 16),
		rateDuration: p.seconds("RATE_DURATION", 20, 1),
		rateWarmup:   p.seconds("RATE_WARMUP", 2, 0),

		meshgateBin:  getenv("MESHGATE_BIN"),
		skipMeshgate: getenv("SKIP_MESHGATE") == "1",
		edgeNoLog:    getenv("EDGE_NOLOG") == "1",
		edgeTracing:  getenv("EDGE_TRACING") == "1",
		edgeShip:     getenv("EDGE_SHIP") == "1",
		pairs:        p.nonNegative("PAIRS", 3),
		out:          getenv("BENCH_OUT"),
		cache:        getenv("BENCH_CACHE"),
		keepLogs:     getenv("KEEP_LOGS") == "1",

		shipOutage:       p.seconds("SHIP_OUTAGE", 10, 1),
		shipDrainTimeout: p.seconds("SHIP_DRAIN_TIMEOUT", 120, 1),
		shipPoll:         100 * time.Millisecond,

		readyTimeout:     p.seconds("READY_TIMEOUT", 20, 1),
		meshReadyTimeout: p.seconds("MESH_READY_TIMEOUT", 60, 1),
		stopTimeout:      5 * time.Second,

		services: p.positive("SERVICES", 1000),
		changes:  p.nonNegative("CHANGES", 100),
		idle:     p.seconds("IDLE", 10, 1),

		// Fixed so that runs compare; FAULT_DURATION exists for smoke runs,
		// and the kill and the after-window keep their proportions.
		faultDuration: p.seconds("FAULT_DURATION", 20, 4),
		faultPoll:     10 * time.Millisecond,

		sidecarGOGC:       getenv("SIDECAR_GOGC"),
		sidecarGOMEMLIMIT: getenv("SIDECAR_GOMEMLIMIT"),
		sidecarProfile:    getenv("SIDECAR_PROFILE") == "1",
		pluginTimeout:     getenv("PLUGIN_TIMEOUT"),
	}
	o.faultKillAt = o.faultDuration / 4
	o.faultAfterFrom = o.faultDuration / 2
	if scenario == "sidecar" {
		// A sidecar's drain waits up to 10 s for Consul to drop it; when the
		// run fails early the agent stops at the same time, so give the drain
		// its full length before killing.
		o.stopTimeout = 15 * time.Second
	}
	if o.cache == "" {
		base := getenv("XDG_CACHE_HOME")
		if base == "" {
			home, _ := os.UserHomeDir()
			base = filepath.Join(home, ".cache")
		}
		o.cache = filepath.Join(base, "meshgate-bench")
	}
	if p.err != nil {
		return o, p.err
	}
	switch {
	case scenario == "grpc" && o.threads > o.h2Conns:
		return o, fmt.Errorf("THREADS must be at most H2_CONNS (h2load runs at least one connection per thread)")
	case o.skipMeshgate && scenario != "edge":
		return o, fmt.Errorf("SKIP_MESHGATE=1 applies to the edge scenario only")
	case o.edgeShip && (scenario != "edge" || o.skipMeshgate):
		return o, fmt.Errorf("EDGE_SHIP=1 applies to the edge scenario with meshgate (not with SKIP_MESHGATE=1)")
	case o.changes > o.services:
		return o, fmt.Errorf("CHANGES must be 0..SERVICES")
	}
	return o, nil
}

// defaultConns is moderate for the scenarios that also report latency per
// hop: enough to load every path, few enough that wrk's latency is not all
// queueing.
func defaultConns(scenario string) int {
	switch scenario {
	case "sidecar", "plugins", "jwt":
		return 16
	}
	return 64
}

// envParser keeps the first error so that parseOptions reads as a list.
type envParser struct {
	getenv func(string) string
	err    error
}

func (p *envParser) int(name string, def, lowest int, what string) int {
	s := p.getenv(name)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < lowest {
		if p.err == nil {
			p.err = fmt.Errorf("%s must be %s, got %q", name, what, s)
		}
		return def
	}
	return n
}

func (p *envParser) positive(name string, def int) int {
	return p.int(name, def, 1, "a positive integer")
}

func (p *envParser) nonNegative(name string, def int) int {
	return p.int(name, def, 0, "a non-negative integer")
}

// seconds reads a whole number of seconds, as bench.sh did (wrk's -d and the
// reports are in whole seconds).
func (p *envParser) seconds(name string, def, lowest int) time.Duration {
	return time.Duration(p.int(name, def, lowest, fmt.Sprintf("an integer >= %d (seconds)", lowest))) * time.Second
}
