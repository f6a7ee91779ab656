package host

import (
	"bytes"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/meshgate/meshgate/gateway/filter"
	"github.com/meshgate/meshgate/plugins/sdk"
)

// Restart backoff: the first restart comes quickly (a crash on one odd request should cost a
// fraction of a second of failure policy), later ones back off so a plugin that crashes at
// start does not spin. A process that stayed up for healthyAfter counts as healthy again.
const (
	minBackoff   = 100 * time.Millisecond
	maxBackoff   = 10 * time.Second
	healthyAfter = time.Minute
)

// States a plugin is in (Status.State).
const (
	StateRunning = "running"
	// StateRestarting: the process exited; a restart is scheduled.
	StateRestarting = "restarting"
	// StateFailed: the last restart attempt failed; another is scheduled.
	StateFailed = "failed"
	// StateStopped: removed from the configuration or the Manager closed.
	StateStopped = "stopped"
)

// Plugin is one configured plugin: the process running it (replaced on restart and on a
// binary change), its breaker, metrics and status. It is a filter (Request) and a response
// filter (Response); one Plugin serves every route that uses it, and survives reloads.
type Plugin struct {
	name string
	m    *Manager
	log  zerolog.Logger
	// failLog logs per-request failures, sampled: a plugin timing out on every request must
	// not turn the log into a copy of the traffic.
	failLog zerolog.Logger
	met     *pluginMetrics

	// cur is what requests use: one atomic load per call, never nil.
	cur atomic.Pointer[live]

	// mu serialises lifecycle changes (Ensure, a process exiting, restarts, stop); it is
	// held while a process starts, never on a request's path.
	mu      sync.Mutex
	spec    *spec
	gen     uint64 // bumped by every install and by stop: a restart begun under an older gen gives up
	backoff time.Duration
	stopped bool
	stopCh  chan struct{} // closed by stop: ends restart waits

	// smu guards st; it is never held across a call or a start, so Status never waits.
	smu sync.Mutex
	st  status

	calls, failures          atomic.Uint64
	failedOpen, failedClosed atomic.Uint64

	requests, responses sync.Pool // *requestCall, *responseCall
}

// live is a Plugin's current state as requests see it; replaced whole, never changed.
type live struct {
	inst    *instance // nil while there is no process to call
	shape   *shape    // the last configured capabilities (nil before the first start)
	timeout time.Duration
	closed  bool // the failure policy, resolved
}

type status struct {
	path     string
	state    string
	since    time.Time
	pid      int
	restarts uint64
	lastErr  string
}

var (
	_ filter.Filter         = (*Plugin)(nil)
	_ filter.ResponseFilter = (*Plugin)(nil)
)

func newPlugin(m *Manager, name string, sp *spec) *Plugin {
	p := &Plugin{
		name:    name,
		m:       m,
		log:     m.log.With().Str(fieldPlugin, name).Logger(),
		met:     m.metrics.bind(name),
		spec:    sp,
		backoff: minBackoff,
		stopCh:  make(chan struct{}),
	}
	p.failLog = p.log.Sample(&zerolog.BurstSampler{Burst: 10, Period: time.Second})
	p.requests.New = func() any { return new(requestCall) }
	p.responses.New = func() any { return new(responseCall) }
	p.cur.Store(&live{timeout: sp.timeout, closed: sp.policy == PolicyClosed})
	p.st.path = sp.path
	p.met.up.Set(0)
	return p
}

// Name is the plugin's configured name.
func (p *Plugin) Name() string { return p.name }

// Filter is the plugin as a filter-chain element: its request phase, and its response phase
// for the engine's response filters. Both are no-ops for a phase the plugin does not take
// part in.
func (p *Plugin) Filter() interface {
	filter.Filter
	filter.ResponseFilter
} {
	return p
}

// closedPolicy resolves the failure policy: the user's choice, else closed for a plugin that
// can deny.
func closedPolicy(sp *spec, sh *shape) bool {
	switch sp.policy {
	case PolicyClosed:
		return true
	case PolicyOpen:
		return false
	}
	return sh != nil && sh.caps.CanDeny
}

// ensure applies a new spec to a running Plugin (see Manager.Ensure).
func (p *Plugin) ensure(sp *spec) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	old, lv := p.spec, p.cur.Load()
	sameConfig := bytes.Equal(old.config, sp.config)
	switch {
	case old.sameProcess(sp) && sameConfig:
		// Nothing for the process to do, even if it is down right now: its restart uses
		// the same spec.
		p.spec = sp
		p.cur.Store(&live{inst: lv.inst, shape: lv.shape, timeout: sp.timeout, closed: closedPolicy(sp, lv.shape)})
		return nil
	case old.sameProcess(sp) && lv.inst != nil:
		caps, err := lv.inst.configure(sp.config)
		if err != nil {
			// The plugin keeps its previous configuration (the contract of Configure).
			return err
		}
		p.spec = sp
		sh := newShape(caps)
		p.cur.Store(&live{inst: lv.inst, shape: sh, timeout: sp.timeout, closed: closedPolicy(sp, sh)})
		p.log.Info().Msg("plugin reconfigured")
		return nil
	}
	// A new executable or arguments, or a new configuration while the process is down: it
	// must be started to be checked.
	inst, caps, err := p.launch(sp)
	if err != nil {
		return err
	}
	p.install(inst, caps, sp)
	return nil
}

// install makes inst the process requests use, and retires the previous one after its
// in-flight calls. Called with p.mu held.
func (p *Plugin) install(inst *instance, caps sdk.Capabilities, sp *spec) {
	p.gen++
	p.spec = sp
	prev := p.cur.Load().inst
	sh := newShape(caps)
	p.cur.Store(&live{inst: inst, shape: sh, timeout: sp.timeout, closed: closedPolicy(sp, sh)})
	inst.breakerGauge.Set(0)
	p.met.up.Set(1)
	p.setStatus(func(s *status) {
		s.state, s.pid, s.lastErr, s.path = StateRunning, inst.pid, "", sp.path
	})
	p.log.Info().Int(fieldPID, inst.pid).Str(fieldPath, sp.path).Str("version", caps.Version).
		Bool("can_deny", caps.CanDeny).Bool("fail_closed", closedPolicy(sp, sh)).Msg("plugin running")
	p.m.wg.Add(1)
	go p.watch(inst)
	if prev != nil {
		p.retire(prev, sp.timeout)
	}
}

// retire stops inst in the background once its in-flight calls are done (they end by their
// deadline at the latest). Called with p.mu held, or from a goroutine counted in p.m.wg.
func (p *Plugin) retire(inst *instance, timeout time.Duration) {
	if !inst.retire() {
		return
	}
	p.m.wg.Add(1)
	go func() {
		defer p.m.wg.Done()
		inst.drain(timeout + time.Second)
		inst.kill()
	}()
}

// watch waits for inst's process to exit; if it was the one serving requests, requests get
// the failure policy at once and a restart is scheduled.
func (p *Plugin) watch(inst *instance) {
	defer p.m.wg.Done()
	select {
	case <-inst.rpc.Exited():
	case <-inst.retired:
		return // replaced or stopped: whoever retired it stops it
	}
	p.mu.Lock()
	lv := p.cur.Load()
	if p.stopped || lv.inst != inst {
		p.mu.Unlock()
		return
	}
	exit := inst.exitDescription()
	p.cur.Store(&live{shape: lv.shape, timeout: lv.timeout, closed: lv.closed})
	p.met.up.Set(0)
	p.gen++
	gen := p.gen
	if time.Since(inst.started) >= healthyAfter {
		p.backoff = minBackoff
	}
	delay := p.backoff
	p.backoff = min(2*p.backoff, maxBackoff)
	p.setStatus(func(s *status) { s.state, s.pid, s.lastErr = StateRestarting, 0, exit })
	p.log.Error().Int(fieldPID, inst.pid).Str("exit", exit).Dur("restart_in", delay).
		Bool("fail_closed", lv.closed).Msg("plugin process exited; requests get the failure policy until it is back")
	p.retire(inst, lv.timeout) // releases go-plugin's side of the dead process
	p.m.wg.Add(1)
	go p.restart(gen, delay)
	p.mu.Unlock()
}

// restart starts the process again after delay, backing off while attempts fail, until one
// succeeds or something else (Ensure, stop) takes over, which bumps p.gen.
func (p *Plugin) restart(gen uint64, delay time.Duration) {
	defer p.m.wg.Done()
	t := time.NewTimer(delay)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-p.stopCh:
			return
		}
		p.mu.Lock()
		if p.stopped || p.gen != gen {
			p.mu.Unlock()
			return
		}
		sp := p.spec
		p.mu.Unlock()

		p.met.restarts.Inc()
		p.setStatus(func(s *status) { s.restarts++ })
		// Started without p.mu: Ensure and Status must not wait for a process that may
		// take seconds to come up (or never does).
		inst, caps, err := p.launch(sp)

		p.mu.Lock()
		switch {
		case p.stopped || p.gen != gen:
			if inst != nil {
				p.retire(inst, sp.timeout)
			}
			p.mu.Unlock()
			return
		case err == nil && !(p.spec.sameProcess(sp) && bytes.Equal(p.spec.config, sp.config)):
			// Ensure changed the configuration meanwhile; this process has the old one.
			p.retire(inst, sp.timeout)
			p.mu.Unlock()
			t.Reset(0)
			continue
		case err == nil:
			// p.spec, not sp: Ensure may have changed the timeout or policy meanwhile.
			p.install(inst, caps, p.spec)
			p.mu.Unlock()
			return
		}
		delay = p.backoff
		p.backoff = min(2*p.backoff, maxBackoff)
		p.setStatus(func(s *status) { s.state, s.lastErr = StateFailed, err.Error() })
		p.mu.Unlock()
		p.log.Error().Err(err).Dur("retry_in", delay).Msg("plugin restart failed")
		t.Reset(delay)
	}
}

// stop takes the plugin out of service: calls get the failure policy from now on, and the
// process is stopped in the background after its in-flight calls.
func (p *Plugin) stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		return
	}
	p.stopped = true
	p.gen++
	close(p.stopCh)
	lv := p.cur.Load()
	p.cur.Store(&live{shape: lv.shape, timeout: lv.timeout, closed: lv.closed})
	p.met.up.Set(0)
	p.setStatus(func(s *status) { s.state, s.pid = StateStopped, 0 })
	if lv.inst != nil {
		p.retire(lv.inst, lv.timeout)
	}
	p.log.Info().Msg("plugin stopped")
}

func (p *Plugin) setStatus(f func(*status)) {
	p.smu.Lock()
	defer p.smu.Unlock()
	prev := p.st.state
	f(&p.st)
	if p.st.state != prev {
		p.st.since = time.Now()
	}
}

// launch starts a process for sp, and describes and configures it. Errors name what failed
// (checksum, start, configuration) for the user; the process is gone when one is returned.
func (p *Plugin) launch(sp *spec) (*instance, sdk.Capabilities, error) {
	return startInstance(p.log, sp, p.met.breaker, p.m.grpcOnly)
}

// Status is one plugin as /plugins shows it.
type Status struct {
	Name string `json:"name"`
	Path string `json:"path"`
	// PID is the running process; 0 while there is none.
	PID int `json:"pid,omitempty"`
	// State is StateRunning, StateRestarting, StateFailed or StateStopped.
	State    string    `json:"state"`
	Since    time.Time `json:"since"`
	Restarts uint64    `json:"restarts"`
	// LastError is why the process last exited or failed to start, until it runs again.
	LastError    string              `json:"last_error,omitempty"`
	Capabilities *CapabilitiesStatus `json:"capabilities,omitempty"`
	// FailurePolicy is the policy in force (PolicyClosed or PolicyOpen), resolved from the
	// configuration and the plugin's can_deny.
	FailurePolicy string `json:"failure_policy"`
	Timeout       string `json:"timeout"`
	// Breaker is the circuit breaker's state: closed, half-open or open.
	Breaker string `json:"breaker"`
	// Transport carries the per-request calls of the running process: "socket" (the
	// socketpair passed at exec) or "grpc" (a plugin that does not serve the socket, or a
	// Manager told not to offer it); empty while there is no process.
	Transport string `json:"transport,omitempty"`
	// Calls counts requests that needed the plugin; Errors those it did not answer (any
	// result but ok), FailedOpen and FailedClosed how the failure policy treated them.
	Calls        uint64 `json:"calls"`
	Errors       uint64 `json:"errors"`
	FailedOpen   uint64 `json:"failed_open"`
	FailedClosed uint64 `json:"failed_closed"`
}

// CapabilitiesStatus is what the plugin declared, after its last Configure.
type CapabilitiesStatus struct {
	Name           string   `json:"name"`
	Version        string   `json:"version"`
	Phases         []string `json:"phases"`
	CanDeny        bool     `json:"can_deny"`
	RequestHeaders any      `json:"request_headers,omitempty"` // "all" or the names
	Body           bool     `json:"body,omitempty"`
	MaxBodyBytes   int      `json:"max_body_bytes,omitempty"`
	Peer           bool     `json:"peer,omitempty"`
	ClientIP       bool     `json:"client_ip,omitempty"`
	Query          bool     `json:"query,omitempty"`
	// ResponseHeaders: "all" or the names.
	ResponseHeaders any `json:"response_headers,omitempty"`
}

// Status reports the plugin's state; it never waits for a start or a call.
func (p *Plugin) Status() Status {
	lv := p.cur.Load()
	p.smu.Lock()
	st := p.st
	p.smu.Unlock()
	out := Status{
		Name:          p.name,
		Path:          st.path,
		PID:           st.pid,
		State:         st.state,
		Since:         st.since,
		Restarts:      st.restarts,
		LastError:     st.lastErr,
		FailurePolicy: PolicyOpen,
		Timeout:       lv.timeout.String(),
		Breaker:       "closed",
		Calls:         p.calls.Load(),
		Errors:        p.failures.Load(),
		FailedOpen:    p.failedOpen.Load(),
		FailedClosed:  p.failedClosed.Load(),
	}
	if lv.closed {
		out.FailurePolicy = PolicyClosed
	}
	if lv.inst != nil {
		out.Breaker = lv.inst.breaker.State().String()
		out.Transport = lv.inst.rpc.Transport()
	}
	if sh := lv.shape; sh != nil {
		out.Capabilities = sh.status()
	}
	return out
}
