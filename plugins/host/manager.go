package host

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// DefaultTimeout bounds a call when Options.Timeout is 0; the request's own deadline can only
// shorten it.
const DefaultTimeout = 50 * time.Millisecond

// Failure policies (Options.FailurePolicy).
const (
	// PolicyClosed answers 503 while the plugin cannot answer: the default for a plugin that
	// declares it can deny, since skipping an auth check would let every request through.
	PolicyClosed = "closed"
	// PolicyOpen lets the request continue as if the plugin were not on the route.
	PolicyOpen = "open"
)

// ErrClosed is returned by Ensure after Close.
var ErrClosed = errors.New("plugin manager closed")

// ManagerOptions configures a Manager.
type ManagerOptions struct {
	Logger     zerolog.Logger
	Registerer prometheus.Registerer // required
	// GRPCOnly keeps every plugin's per-request calls on gRPC streams: no socketpair is
	// offered at exec. For comparing the transports, and as a way out should the socket
	// misbehave somewhere.
	GRPCOnly bool
}

// Options is one plugin as the configuration declares it. The assembly translates conf.Plugin
// into it; this package does not import conf.
type Options struct {
	// Name identifies the plugin in logs, metrics and /plugins; Ensure with the same Name
	// updates the same Plugin.
	Name string
	// Path is the executable; SHA256 its hex SHA-256, checked before it is started.
	Path   string
	SHA256 string
	Args   []string
	// Config is sent to the plugin's Configure (JSON) at every start and on reload.
	Config []byte
	// Timeout bounds each call (DefaultTimeout when 0), capped by the request's deadline.
	Timeout time.Duration
	// FailurePolicy is PolicyClosed, PolicyOpen or "" (closed when the plugin declares it
	// can deny, open otherwise).
	FailurePolicy string
	// Procs is the process's GOMAXPROCS (0: the Go runtime's own choice). See pluginEnv.
	Procs int
}

// spec is validated Options: what a Plugin should be running. Never changed once built.
type spec struct {
	path    string
	sum     []byte
	args    []string
	config  []byte
	timeout time.Duration
	policy  string
	procs   int
}

// sameProcess reports whether a and b describe the same process: the same executable (by
// checksum) started the same way. A configuration change alone is a Configure call.
func (a *spec) sameProcess(b *spec) bool {
	return a.path == b.path && bytes.Equal(a.sum, b.sum) && slices.Equal(a.args, b.args) && a.procs == b.procs
}

func (o Options) spec() (*spec, error) {
	if o.Name == "" {
		return nil, errors.New("plugin: a name is required")
	}
	if o.Path == "" {
		return nil, fmt.Errorf("plugin %q: the executable's path is required", o.Name)
	}
	sum, err := hex.DecodeString(strings.TrimSpace(o.SHA256))
	if err != nil || len(sum) != 32 {
		return nil, fmt.Errorf("plugin %q: sha256 must be the executable's SHA-256 as 64 hex digits", o.Name)
	}
	switch o.FailurePolicy {
	case "", PolicyClosed, PolicyOpen:
	default:
		return nil, fmt.Errorf("plugin %q: failure policy %q is not %q or %q", o.Name, o.FailurePolicy, PolicyClosed, PolicyOpen)
	}
	if o.Timeout < 0 {
		return nil, fmt.Errorf("plugin %q: negative timeout %s", o.Name, o.Timeout)
	}
	if o.Procs < 0 {
		return nil, fmt.Errorf("plugin %q: negative procs %d", o.Name, o.Procs)
	}
	s := &spec{
		path:    o.Path,
		sum:     sum,
		args:    slices.Clone(o.Args),
		config:  bytes.Clone(o.Config),
		timeout: o.Timeout,
		policy:  o.FailurePolicy,
		procs:   o.Procs,
	}
	if s.timeout == 0 {
		s.timeout = DefaultTimeout
	}
	return s, nil
}

// Manager owns every plugin process of meshgate. It lives as long as the process: plugins are
// keyed by name and survive reloads, so a reload that keeps a plugin keeps its process, its
// streams and its breaker.
type Manager struct {
	log     zerolog.Logger
	metrics *metrics

	// ensureMu serialises Ensure, Retain and Close, which a reload calls in sequence; it may
	// be held while a plugin starts (seconds), so nothing on a request's path or in
	// Statuses takes it.
	ensureMu sync.Mutex
	// mu guards plugins and closed, briefly.
	mu      sync.Mutex
	plugins map[string]*Plugin
	closed  bool

	// wg counts the background goroutines: process watchers, restarts, stops.
	wg sync.WaitGroup

	grpcOnly bool
}

// NewManager registers the plugin metrics on opts.Registerer.
func NewManager(opts ManagerOptions) (*Manager, error) {
	met, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, err
	}
	return &Manager{log: opts.Logger, metrics: met, plugins: make(map[string]*Plugin), grpcOnly: opts.GRPCOnly}, nil
}

// Ensure makes the named plugin run as o describes, and returns it; the *Plugin for a name
// stays the same across calls, so filters built from an earlier configuration keep working.
//
//   - A new name: the process is started, described and configured before Ensure returns
//     (bounded by the start timeout), so a configuration naming a broken plugin (bad
//     checksum, not executable, configuration rejected) fails with an error naming it.
//   - Same executable and arguments, new Config: the running process is reconfigured; if it
//     rejects the configuration, Ensure fails and the old one stays in force.
//   - A different executable or arguments: a new process is started and configured, requests
//     switch to it atomically, and the old one is stopped once its in-flight calls are done.
//     If the new one cannot start, Ensure fails and the old one keeps serving.
//   - Only Timeout or FailurePolicy changed, or nothing: applied at once, no call made.
func (m *Manager) Ensure(o Options) (*Plugin, error) {
	sp, err := o.spec()
	if err != nil {
		return nil, err
	}
	m.ensureMu.Lock()
	defer m.ensureMu.Unlock()
	m.mu.Lock()
	closed, p := m.closed, m.plugins[o.Name]
	m.mu.Unlock()
	if closed {
		return nil, ErrClosed
	}
	if p != nil {
		if err := p.ensure(sp); err != nil {
			return nil, fmt.Errorf("plugin %q: %w", o.Name, err)
		}
		return p, nil
	}

	p = newPlugin(m, o.Name, sp)
	inst, caps, err := p.launch(sp)
	if err != nil {
		m.metrics.unbind(o.Name)
		return nil, fmt.Errorf("plugin %q: %w", o.Name, err)
	}
	p.mu.Lock()
	p.install(inst, caps, sp)
	p.mu.Unlock()
	m.mu.Lock()
	m.plugins[o.Name] = p
	m.mu.Unlock()
	return p, nil
}

// Retain stops every plugin whose name is not in names: call it once a new configuration is
// in force. Requests still running on the old configuration's filters get the stopped
// plugin's failure policy; its process is stopped in the background once its in-flight calls
// are done.
func (m *Manager) Retain(names []string) {
	keep := make(map[string]bool, len(names))
	for _, n := range names {
		keep[n] = true
	}
	m.ensureMu.Lock()
	defer m.ensureMu.Unlock()
	m.mu.Lock()
	var drop []*Plugin
	for name, p := range m.plugins {
		if !keep[name] {
			drop = append(drop, p)
			delete(m.plugins, name)
		}
	}
	m.mu.Unlock()
	for _, p := range drop {
		p.stop()
		// Here, not when the process is gone: a plugin of the same name may be ensured
		// again before then, and its series must not be deleted.
		m.metrics.unbind(p.name)
	}
}

// Close stops every plugin and waits for their processes to exit (each has its in-flight
// calls' timeout, plus go-plugin's graceful-exit wait, to go).
func (m *Manager) Close() {
	m.ensureMu.Lock()
	m.mu.Lock()
	m.closed = true
	all := slices.Collect(maps.Values(m.plugins))
	clear(m.plugins)
	m.mu.Unlock()
	for _, p := range all {
		p.stop()
	}
	m.ensureMu.Unlock()
	m.wg.Wait()
}

// Plugin returns the running plugin of that name, if any.
func (m *Manager) Plugin(name string) (*Plugin, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p, ok := m.plugins[name]
	return p, ok
}

// Statuses is the admin API's /plugins: a []Status sorted by name.
func (m *Manager) Statuses() any {
	m.mu.Lock()
	all := slices.Collect(maps.Values(m.plugins))
	m.mu.Unlock()
	slices.SortFunc(all, func(a, b *Plugin) int { return strings.Compare(a.name, b.name) })
	out := make([]Status, len(all))
	for i, p := range all {
		out[i] = p.Status()
	}
	return out
}
