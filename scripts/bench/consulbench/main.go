package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	// The harness stops us with SIGTERM when it is interrupted; the context ends every phase so
	// the deferred cleanups (origin listeners) run and the exit is prompt.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "consulbench: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errors.New("usage: consulbench config|run [flags]")
	}
	switch args[0] {
	case "config":
		o, err := parseConfigOptions(args[1:])
		if err != nil {
			return err
		}
		return writeConfig(o)
	case "run":
		o, err := parseRunOptions(args[1:])
		if err != nil {
			return err
		}
		return bench(ctx, o, stdout, stderr)
	}
	return fmt.Errorf("unknown subcommand %q: want config or run", args[0])
}

// configOptions are the flags of "config"; the positional KEY=VALUE arguments fill the
// template's other placeholders.
type configOptions struct {
	services int
	template string
	out      string
	values   map[string]string
}

func parseConfigOptions(args []string) (configOptions, error) {
	var o configOptions
	fs := flag.NewFlagSet("consulbench config", flag.ContinueOnError)
	fs.IntVar(&o.services, "services", 1000, "number of services (one route each)")
	fs.StringVar(&o.template, "template", "", "meshgate config template with @ROUTES@ (required)")
	fs.StringVar(&o.out, "out", "", "where to write the config (required)")
	if err := fs.Parse(args); err != nil {
		return o, fmt.Errorf("parse flags: %w", err)
	}
	if o.template == "" || o.out == "" {
		return o, errors.New("-template and -out are required")
	}
	if o.services <= 0 {
		return o, errors.New("-services must be positive")
	}
	o.values = make(map[string]string, fs.NArg())
	for _, kv := range fs.Args() {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" || k == "ROUTES" {
			return o, fmt.Errorf("argument %q: want KEY=VALUE (KEY not ROUTES)", kv)
		}
		o.values[k] = v
	}
	return o, nil
}

// runOptions are the flags of "run".
type runOptions struct {
	consul       string // agent HTTP address host:port
	proxy        string // meshgate listener host:port
	admin        string // meshgate admin host:port
	pid          int    // meshgate
	consulPID    int    // the agent (0: not sampled)
	services     int
	changes      int
	origins      int
	workers      int // concurrent agent API calls
	pollers      int // concurrent probes in the burst
	idle         time.Duration
	settle       time.Duration
	poll         time.Duration
	timeout      time.Duration // per sequential change
	burstTimeout time.Duration
	setupTimeout time.Duration
	clkTck       int
	seed         uint64
}

func parseRunOptions(args []string) (runOptions, error) {
	var o runOptions
	fs := flag.NewFlagSet("consulbench run", flag.ContinueOnError)
	fs.StringVar(&o.consul, "consul", "", "consul agent HTTP address host:port (required)")
	fs.StringVar(&o.proxy, "proxy", "", "meshgate listener host:port (required)")
	fs.StringVar(&o.admin, "admin", "", "meshgate admin host:port (required)")
	fs.IntVar(&o.pid, "pid", 0, "meshgate's pid, for /proc (required)")
	fs.IntVar(&o.consulPID, "consul-pid", 0, "the agent's pid, for /proc (0: not sampled)")
	fs.IntVar(&o.services, "services", 1000, "services to register (two instances each)")
	fs.IntVar(&o.changes, "changes", 100, "sequential changes (distinct random services)")
	fs.IntVar(&o.origins, "origins", 8, "origin listeners the instances point at (at least 3)")
	fs.IntVar(&o.workers, "workers", 16, "concurrent agent API calls when registering and in the burst")
	fs.IntVar(&o.pollers, "pollers", 32, "concurrent probes in the burst")
	fs.DurationVar(&o.idle, "idle", 10*time.Second, "idle window for CPU and RSS")
	fs.DurationVar(&o.settle, "settle", 2*time.Second, "quiet time before the idle window")
	fs.DurationVar(&o.poll, "poll", time.Millisecond, "probe interval of a sequential change")
	fs.DurationVar(&o.timeout, "timeout", 10*time.Second, "give up on one sequential change after this")
	fs.DurationVar(&o.burstTimeout, "burst-timeout", 60*time.Second, "give up on the burst after this")
	fs.DurationVar(&o.setupTimeout, "setup-timeout", 180*time.Second, "bound on registering and on meshgate catching up")
	fs.IntVar(&o.clkTck, "clk-tck", 100, "kernel clock ticks per second (getconf CLK_TCK)")
	fs.Uint64Var(&o.seed, "seed", 1, "seed of the random choice of services to change")
	if err := fs.Parse(args); err != nil {
		return o, fmt.Errorf("parse flags: %w", err)
	}
	switch {
	case o.consul == "" || o.proxy == "" || o.admin == "" || o.pid <= 0:
		return o, errors.New("-consul, -proxy, -admin and -pid are required")
	case o.services <= 0 || o.changes < 0 || o.changes > o.services:
		return o, errors.New("want -services > 0 and 0 <= -changes <= -services")
	case o.origins < 3:
		// A change needs an origin in neither of the two current instances.
		return o, errors.New("-origins must be at least 3")
	case o.workers <= 0 || o.pollers <= 0 || o.clkTck <= 0:
		return o, errors.New("-workers, -pollers and -clk-tck must be positive")
	case o.idle <= 0 || o.poll <= 0 || o.timeout <= 0 || o.burstTimeout <= 0 || o.setupTimeout <= 0:
		return o, errors.New("-idle, -poll and the timeouts must be positive")
	case o.settle < 0:
		return o, errors.New("-settle must not be negative")
	}
	return o, nil
}

// serviceName is the Consul service (and route) name of service i (0-based); config and run
// must agree on it, so both derive it from -services alone.
func serviceName(i, services int) string {
	width := max(4, len(strconv.Itoa(services)))
	return fmt.Sprintf("s%0*d", width, i+1)
}

// serviceHost is the Host header routed to service name.
func serviceHost(name string) string { return name + ".bench" }
