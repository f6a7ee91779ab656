// Command meshgate is an edge API gateway and service-mesh sidecar in one binary. This file
// only parses subcommands and wires packages together; behaviour lives in gateway/, mesh/,
// discovery/ and conf/.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/meshgate/meshgate/conf"
	"github.com/meshgate/meshgate/gateway"
)

// Set by the linker (-ldflags "-X main.version=... -X main.commit=...").
var (
	version = "dev"
	commit  = ""
)

const usage = `meshgate: edge API gateway and service-mesh sidecar

Usage:
  meshgate edge -config FILE       run the edge gateway
  meshgate sidecar -config FILE    run as a local app's sidecar (Consul Connect proxy)
  meshgate validate -config FILE   check a config; exit 0 valid, 1 invalid
  meshgate health -addr ADMIN      exit 0 when ADMIN's /ready answers 200
  meshgate version                 print version, commit and Go version
`

func main() {
	if len(os.Args) > 1 && (os.Args[1] == "edge" || os.Args[1] == "sidecar") {
		keepSysmonPolling() // may re-execute the binary (main_sysmon.go); short commands never do
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "edge", "sidecar":
		return runServe(args[0], args[1:], stderr)
	case "validate":
		return runValidate(args[1:], stdout, stderr)
	case "health":
		return runHealth(args[1:], stderr)
	case "version", "-version", "--version":
		fmt.Fprintf(stdout, "meshgate %s (commit %s, %s)\n", version, revision(), runtime.Version())
		return 0
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "meshgate: unknown command %q\n\n%s", args[0], usage)
	return 2
}

func revision() string {
	if commit != "" {
		return commit
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				return s.Value
			}
		}
	}
	return "unknown"
}

func configFlag(name string, args []string, stderr io.Writer) (string, bool) {
	fs := flag.NewFlagSet("meshgate "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "config file (YAML)")
	if err := fs.Parse(args); err != nil {
		return "", false
	}
	if fs.NArg() > 0 {
		// "meshgate edge conf.yaml" would otherwise be told only that -config is missing, and
		// "-config a.yaml b.yaml" would silently ignore b.yaml.
		fmt.Fprintf(stderr, "meshgate %s: unexpected argument %q (use -config FILE)\n", name, fs.Arg(0))
		return "", false
	}
	if *path == "" {
		fmt.Fprintf(stderr, "meshgate %s: -config FILE is required\n", name)
		return "", false
	}
	return *path, true
}

func runValidate(args []string, stdout, stderr io.Writer) int {
	path, ok := configFlag("validate", args, stderr)
	if !ok {
		return 2
	}
	cfg, err := conf.Load(path)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	fmt.Fprintf(stdout, "%s: %s\n", path, conf.Summary(cfg))
	return 0
}

func runHealth(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("meshgate health", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:9901", "admin address host:port")
	timeout := fs.Duration("timeout", 2*time.Second, "request timeout")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	client := &http.Client{Timeout: *timeout}
	req, err := http.NewRequest(http.MethodGet, "http://"+*addr+"/ready", nil)
	if err != nil {
		fmt.Fprintf(stderr, "meshgate health: %v\n", err)
		return 2
	}
	// The admin API answers only loopback Host names unless told otherwise (DNS rebinding);
	// this command runs on the admin's own host (a container health check), whatever address
	// it dials, so it says so.
	req.Host = "localhost"
	resp, err := client.Do(req)
	if err != nil {
		fmt.Fprintf(stderr, "meshgate health: %v\n", err)
		return 1
	}
	defer func() { _ = resp.Body.Close() }() // the exit code is decided by the status alone
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		fmt.Fprintf(stderr, "meshgate health: not ready: %d %s\n", resp.StatusCode, body)
		return 1
	}
	return 0
}

func newLogger(c conf.Log, w io.Writer) zerolog.Logger {
	lvl, err := zerolog.ParseLevel(c.Level)
	if err != nil || c.Level == "" {
		lvl = zerolog.InfoLevel
	}
	if c.Format == "console" {
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.RFC3339}
	}
	return zerolog.New(w).Level(lvl).With().Timestamp().Logger()
}

// runServe runs the engine as an edge or a sidecar. The two modes share everything; the mode
// only says which config shape the operator meant, so a sidecar file started as an edge (or
// the reverse) is refused instead of silently running something else.
func runServe(mode string, args []string, stderr io.Writer) int {
	// Subscribe before the slow part of start-up (loading, binding, building clusters): until
	// Notify, SIGHUP and SIGTERM have their default action and kill the process outright, so a
	// reload (systemctl reload) or a stop arriving during start-up would end it without a drain.
	// Signals that arrive early wait in the buffer and are handled once the edge exists.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sigs)

	path, ok := configFlag(mode, args, stderr)
	if !ok {
		return 2
	}
	// Read once and hand the same bytes to the watcher as its baseline, so an edit landing
	// between this read and the watch starting is applied, not mistaken for the running config.
	data, err := os.ReadFile(path)
	if err != nil {
		fmt.Fprintf(stderr, "read config: %v\n", err)
		return 1
	}
	cfg, err := conf.Parse(path, data)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	switch {
	case mode == "edge" && cfg.Sidecar != nil:
		fmt.Fprintf(stderr, "%s: this file has a sidecar: block; run `meshgate sidecar -config %s`\n", path, path)
		return 1
	case mode == "sidecar" && cfg.Sidecar == nil:
		fmt.Fprintf(stderr, "%s: a sidecar config needs a sidecar: block (service, inbound, upstreams)\n", path)
		return 1
	}
	log := newLogger(cfg.Log, stderr).With().Str("mode", mode).Logger()

	// The watcher is created (nothing is opened yet) before the edge binds its ports, so that
	// failing here cannot leave listeners bound; OnChange runs only once watcher.Run starts,
	// after edge is set.
	notify := &sdNotifier{log: log}
	var edge *gateway.Server
	watcher, err := conf.NewWatcher(conf.WatchOptions{
		Path:     path,
		Baseline: data,
		OnChange: func(c *conf.Config) {
			// A file change reaches here without a SIGHUP, so RELOADING=1 is sent here too;
			// after a SIGHUP it repeats the one already sent, which systemd accepts.
			notify.reloading()
			_ = edge.Reload(c) // Reload logs and counts failures itself
			notify.reloaded()
		},
		OnError: func(err error) {
			log.Error().Err(err).Msg("config file invalid; keeping the running config")
			// After a SIGHUP systemd waits for READY=1 to end the reload, also when the file
			// was rejected and the running config stays.
			notify.reloaded()
		},
	})
	if err != nil {
		log.Error().Err(err).Msg("cannot watch config")
		return 1
	}
	newEngine := gateway.NewEdge
	if mode == "sidecar" {
		newEngine = gateway.NewSidecar
	}
	edge, err = newEngine(cfg, gateway.ServerOptions{Logger: log, OnServing: notify.ready})
	if err != nil {
		log.Error().Err(err).Msg("cannot start")
		return 1
	}

	ctx, stop := context.WithCancel(context.Background())
	defer stop()

	// When the watcher cannot run (inotify instance or fd limits, common in crowded containers)
	// nothing reads its Trigger any more, so SIGHUP reloads the file directly instead: an
	// operator's reload must not become a silent no-op.
	var watchFailed atomic.Bool
	reloadFile := func() {
		defer notify.reloaded()
		c, err := conf.Load(path)
		if err != nil {
			log.Error().Err(err).Msg("config file invalid; keeping the running config")
			return
		}
		_ = edge.Reload(c)
	}
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		if err := watcher.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
			watchFailed.Store(true)
			log.Error().Err(err).Msg("config watcher stopped: file changes are no longer picked up; SIGHUP still reloads")
		}
	}()

	go func() {
		draining := false
		for s := range sigs {
			switch {
			case s == syscall.SIGHUP:
				log.Info().Msg("SIGHUP: reloading config")
				// Sent before the reload is even queued, so that `systemctl reload` always sees
				// RELOADING=1 and then READY=1, whether the file turns out changed, unchanged or invalid.
				notify.reloading()
				if watchFailed.Load() {
					reloadFile()
				} else {
					watcher.Trigger()
				}
			case !draining:
				// Nomad stops tasks with SIGINT, Docker and systemd with SIGTERM: both drain.
				log.Info().Str("signal", s.String()).Msg("draining")
				draining = true
				notify.drain()
				stop()
			default:
				log.Warn().Str("signal", s.String()).Msg("second signal: exiting now")
				os.Exit(1)
			}
		}
	}()

	err = edge.Run(ctx)
	stop()
	<-watchDone
	if err != nil {
		log.Error().Err(err).Msg("stopped with error")
		return 1
	}
	return 0
}
