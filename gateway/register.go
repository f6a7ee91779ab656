package gateway

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/meshgate/meshgate/conf"
	"github.com/meshgate/meshgate/discovery/consul"
	"github.com/meshgate/meshgate/gateway/listener"
)

// Self-registration of the edge in Consul (discovery.consul.register), hooked into Run:
//
//	listeners serving ─▶ start: Registrar.Run in a goroutine (register with retry, TTL passes,
//	                     re-register after an agent restart)
//	drain begins      ─▶ drain: maintenance on ─▶ WaitNotPassing (≤ drain_wait)
//	                     ─▶ (the existing drain: ready_delay, listeners stop accepting, in-flight finish)
//	listeners closed  ─▶ deregister: stop Run ─▶ Deregister (≤ 5s) ─▶ close agent connections
//
// Callers discover us through Consul, so the instance must leave Consul's passing set before
// the listeners close; otherwise callers keep picking an address that refuses connections.

// registrationOpTimeout bounds each shutdown-time agent call (maintenance, deregister): an
// unreachable agent must not hold up the process's exit.
const registrationOpTimeout = 5 * time.Second

// edgeRegistration is the process-lifetime registration; a nil *edgeRegistration means
// nothing is registered, and its methods are safe on nil. An edge registers itself
// (discovery.consul.register); a sidecar registers its connect-proxy and its app (regs[0] is
// the instance callers find, so drain waits for that one to leave the passing set).
type edgeRegistration struct {
	regs      []*consul.Registrar
	conf      conf.Registration // as configured (before filling bound ports), for reload warnings
	drainWait time.Duration
	log       zerolog.Logger
	stop      context.CancelFunc // ends the Registrars' Run; nil until start
	done      chan struct{}      // closed when every Run has returned
}

// newEdgeRegistration builds the Registrars from cfg once the listeners and the admin API are
// bound, so a port-0 listener registers its real port and the HTTP check hits the real admin
// address. It does not contact Consul.
func newEdgeRegistration(cfg *conf.Config, disc *edgeDiscovery, listeners []*listener.Listener, admin net.Addr, ready func() (bool, string), log zerolog.Logger) (*edgeRegistration, error) {
	cc := cfg.Discovery.Consul
	if cc == nil || disc == nil {
		return nil, nil
	}
	if cfg.Sidecar != nil {
		return newSidecarRegistration(cfg, disc.client, listeners, admin, ready, log)
	}
	if cc.Register == nil {
		return nil, nil
	}
	rc := *cc.Register
	port := 0
	if len(listeners) > 0 {
		port = addrPort(listeners[0].Addr())
	}
	opts := edgeRegistrarOptions(rc, port, readyURL(admin))
	opts.Client, opts.Logger, opts.Ready = disc.client, log, ready
	r, err := consul.NewRegistrar(opts)
	if err != nil {
		return nil, fmt.Errorf("discovery.consul.register: %w", err)
	}
	return &edgeRegistration{regs: []*consul.Registrar{r}, conf: rc, drainWait: rc.DrainWait.D(), log: log}, nil
}

func addrPort(a net.Addr) int {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.Port
	}
	return 0
}

// readyURL is the admin /ready as the local agent reaches it: a wildcard admin address is
// probed on loopback (the agent runs on this host; that is what an agent check is).
func readyURL(admin net.Addr) string {
	host, port, err := net.SplitHostPort(admin.String())
	if err != nil {
		return "http://" + admin.String() + "/ready"
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
		if ip.To4() == nil {
			host = "::1"
		}
	}
	return "http://" + net.JoinHostPort(host, port) + "/ready"
}

// start runs the Registrar in the background: registration never blocks or fails start-up,
// an agent that is down is retried until it answers.
func (s *edgeRegistration) start() {
	if s == nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.stop, s.done = cancel, make(chan struct{})
	var wg sync.WaitGroup
	for _, r := range s.regs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = r.Run(ctx)
		}()
	}
	go func() {
		wg.Wait()
		close(s.done)
	}()
}

// drain takes the instance out of Consul's passing set before the listeners stop: maintenance
// on, then wait (at most drain_wait) until Consul stops reporting it passing. wait false
// (a listener failed) skips the wait, like ready_delay.
func (s *edgeRegistration) drain(wait bool) {
	if s == nil {
		return
	}
	// The instance callers find (regs[0]) goes first; the app's own registration follows so
	// plain-discovery callers leave it too.
	var firstErr error
	for i, r := range s.regs {
		ctx, cancel := context.WithTimeout(context.Background(), registrationOpTimeout)
		err := r.Maintenance(ctx, true, "meshgate is shutting down")
		cancel()
		if err != nil {
			s.log.Warn().Err(err).Str("service_id", r.ID()).Msg("draining: could not set consul maintenance mode; continuing the drain")
			if i == 0 {
				firstErr = err
			}
		}
	}
	// An agent that refused the maintenance call cannot tell us when callers stop seeing us
	// either (typically it is gone, e.g. stopped with us): waiting drain_wait would only delay
	// the exit. Consul's own failure detection takes the instance out in that case.
	if !wait || firstErr != nil {
		return
	}
	start := time.Now()
	err := s.regs[0].WaitNotPassing(context.Background(), s.drainWait)
	switch {
	case errors.Is(err, consul.ErrStillPassing):
		s.log.Warn().Err(err).Dur("drain_wait", s.drainWait).Msg("draining: consul still reports this instance as passing; continuing the drain anyway")
	case err != nil:
		s.log.Warn().Err(err).Msg("draining: could not follow consul health; continuing the drain")
	default:
		s.log.Info().Dur("took", time.Since(start)).Msg("draining: consul no longer reports this instance as passing")
	}
}

// deregister removes the instance once nothing listens any more: Run is stopped first, so no
// retry can re-register it afterwards.
func (s *edgeRegistration) deregister() {
	if s == nil {
		return
	}
	if s.stop != nil {
		s.stop()
		<-s.done
	}
	for _, r := range s.regs {
		ctx, cancel := context.WithTimeout(context.Background(), registrationOpTimeout)
		if err := r.Deregister(ctx); err != nil {
			s.log.Warn().Err(err).Str("service_id", r.ID()).Msg("could not deregister from consul; the agent removes the instance after deregister_after")
		} else {
			s.log.Info().Str("service_id", r.ID()).Msg("deregistered from consul")
		}
		cancel()
		r.Close()
	}
}

// registrationReloaded warns when a reload changes discovery.consul.register: the
// registration is made once per process, so the change applies at the next restart.
func (e *Server) registrationReloaded(cfg *conf.Config) {
	var next *conf.Registration
	if cfg.Discovery.Consul != nil {
		next = cfg.Discovery.Consul.Register
	}
	var cur *conf.Registration
	if e.self != nil {
		cur = &e.self.conf
	}
	if !sameRegistration(cur, next) {
		e.log.Warn().Msg("discovery.consul.register takes effect at the next restart")
	}
}

func sameRegistration(a, b *conf.Registration) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Name == b.Name && a.ID == b.ID && a.Address == b.Address && a.Port == b.Port &&
		slices.Equal(a.Tags, b.Tags) && maps.Equal(a.Meta, b.Meta) && a.Check == b.Check &&
		a.CheckInterval == b.CheckInterval && a.DeregisterAfter == b.DeregisterAfter && a.DrainWait == b.DrainWait
}
