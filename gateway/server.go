package gateway

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/rs/zerolog"

	"github.com/meshgate/meshgate/conf"
	"github.com/meshgate/meshgate/gateway/accesslog"
	"github.com/meshgate/meshgate/gateway/admin"
	"github.com/meshgate/meshgate/gateway/admin/dashboard"
	"github.com/meshgate/meshgate/gateway/listener"
	"github.com/meshgate/meshgate/gateway/proxy"
	"github.com/meshgate/meshgate/gateway/route"
	"github.com/meshgate/meshgate/mesh/tracing"
	"github.com/meshgate/meshgate/mesh/upstream"
)

// ServerOptions are the process-level inputs of the edge assembly.
type ServerOptions struct {
	Logger zerolog.Logger
	// Registry receives every metric; a fresh one per Server keeps tests independent.
	Registry *prometheus.Registry
	// OnServing, when set, is called once from Run after the listeners serve and /ready turns
	// 200, so main can tell systemd READY=1 no earlier than connections are accepted.
	OnServing func()
}

// Server is the one engine of both modes (edge and sidecar): listeners, the route engine,
// clusters, the admin API and the parts around them (Consul discovery, the mesh identity, KV
// documents, self-registration), built from one conf.Config and rebuilt on Reload. It owns its
// parts as an ordered list of components (component).
type Server struct {
	parts     []component // in construction order; unwind closes them in reverse
	log       zerolog.Logger
	reg       *prometheus.Registry
	onServing func() // ServerOptions.OnServing; may be nil

	upstreams *upstream.Manager
	policies  *policyBuilder // rate limits and faults; state survives reloads (policies.go)
	disc      *edgeDiscovery // Consul discovery, survives reloads; nil without it (discovery.go)
	mesh      *edgeMesh      // Connect identity and intentions; nil without identity.connect (mesh.go)
	metrics   *proxy.Metrics
	access    *accesslog.Logger
	tracer    *tracing.Tracer // nil without a tracing block
	admin     *admin.Server
	listeners []*listener.Listener
	handlers  map[string]*proxy.Handler // by listener name

	// self is the Consul self-registration; nil without it (register.go).
	self *edgeRegistration

	// kv holds the Consul KV documents (nil without kv_prefix); fileCfg is the config last
	// loaded from disk, which they are merged into. Both guarded by mu (kv.go).
	kv      *edgeKV
	fileCfg *conf.Config

	mu       sync.Mutex // serialises Reload; never taken by requests
	cfg      atomic.Pointer[conf.Config]
	stopGen  context.CancelFunc // cancels the current generation's watches
	ready    atomic.Bool
	reloads  *prometheus.CounterVec
	connGa   *prometheus.GaugeVec
	accepted *prometheus.CounterVec
	acceptEr *prometheus.CounterVec
	perIPRef *prometheus.CounterVec
}

// component is one part of a Server with a lifetime of its own: the Consul source, the mesh
// identity, a listener, the admin API, the KV watch. The Server keeps them in the order they
// were built; a failed construction, and the end of Run, close them in reverse, so a part is
// always closed before what it was built on. Each field is optional.
type component struct {
	name  string
	start func(ctx context.Context) error // background work, begun once everything is built
	close func()                          // release; runs once, also after a failed construction
	ready func() (bool, string)           // its say in /ready: ok, and a detail for the body
}

// add appends a part; construction adds each right after building it.
func (e *Server) add(c component) { e.parts = append(e.parts, c) }

// unwind closes every part in reverse order of construction. Safe to call once per Server,
// after a partial construction too.
func (e *Server) unwind() {
	for i := len(e.parts) - 1; i >= 0; i-- {
		if c := e.parts[i]; c.close != nil {
			c.close()
		}
	}
	e.parts = nil
}

// NewServer validates nothing itself (conf did) but binds every listener and the admin address,
// so a port clash fails here with the listener's name rather than after start-up. The server is
// the one engine of both modes: a sidecar config reaches it expanded (effective.go).
func NewServer(cfg *conf.Config, opts ServerOptions) (_ *Server, err error) {
	if cfg == nil {
		return nil, errors.New("meshgate: config is required")
	}
	reg := opts.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	e := &Server{log: opts.Logger, reg: reg, onServing: opts.OnServing, handlers: make(map[string]*proxy.Handler)}
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	e.reloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "meshgate_config_reloads_total", Help: "Config reloads by result (success, failure).",
	}, []string{"result"})
	e.connGa = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "meshgate_downstream_connections_active", Help: "Open downstream connections.",
	}, []string{"listener"})
	e.accepted = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "meshgate_downstream_connections_total", Help: "Accepted downstream connections.",
	}, []string{"listener"})
	e.acceptEr = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "meshgate_accept_errors_total", Help: "Accept failures the listener backed off from (EMFILE and the like).",
	}, []string{"listener"})
	e.perIPRef = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "meshgate_downstream_connections_refused_total", Help: "Connections closed at accept because their client address held listeners[].max_connections_per_ip.",
	}, []string{"listener"})
	dropped := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "meshgate_access_log_dropped_total", Help: "Access-log lines dropped because the writer fell behind.",
	})
	for _, c := range []prometheus.Collector{e.reloads, e.connGa, e.accepted, e.acceptEr, e.perIPRef, dropped} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("meshgate: %w", err)
		}
	}
	defer func() {
		if err != nil {
			e.unwind()
		}
	}()

	if e.upstreams, err = upstream.NewManager(upstream.ManagerOptions{Registerer: reg, Logger: e.log}); err != nil {
		return nil, err
	}
	e.add(component{name: "clusters", close: e.upstreams.Close})
	if e.metrics, err = proxy.NewMetrics(reg); err != nil {
		return nil, err
	}
	if e.policies, err = newPolicyBuilder(reg, e.log); err != nil {
		return nil, err
	}
	e.add(component{name: "policies", close: e.policies.close})
	sinks, err := e.startLogSinks(cfg, reg) // logship.go; closed after the logger
	if err != nil {
		return nil, fmt.Errorf("meshgate: access log: %w", err)
	}
	if e.access, err = accesslog.New(accesslog.Options{Output: cfg.AccessLog.Output, BufferSize: cfg.AccessLog.BufferSize,
		FlushInterval: cfg.AccessLog.FlushInterval.D(), Dropped: dropped, Sinks: sinks}); err != nil {
		return nil, fmt.Errorf("meshgate: access log: %w", err)
	}
	e.add(component{name: "access log", close: func() { _ = e.access.Close() }})
	if e.disc, err = newEdgeDiscovery(cfg, reg, e.log); err != nil {
		return nil, fmt.Errorf("meshgate: %w", err)
	}
	if e.disc != nil {
		e.add(component{name: "consul discovery", close: e.disc.close, ready: e.disc.ready})
	}

	// The first generation is built before anything listens, so the first request is routed.
	e.fileCfg, e.kv = cfg, newEdgeKV(cfg, e.disc, e.log)
	cfg, kvRes := e.withKV(cfg) // the snapshot's KV documents, if any, serve from the start
	if cfg.Tracing != nil {
		// After the merge and the sidecar expansion: a sidecar's spans take its identity's name.
		// Closed after the listeners (components unwind in reverse), so the last requests'
		// spans get their export.
		to := tracingOptions(cfg)
		to.Registerer, to.Logger = reg, e.log
		if e.tracer, err = tracing.New(to); err != nil {
			return nil, fmt.Errorf("meshgate: %w", err)
		}
		e.add(component{name: "tracing", start: func(context.Context) error { e.tracer.Start(); return nil }, close: e.tracer.Close})
	}
	if e.mesh, err = newEdgeMesh(cfg, e.disc, reg, e.log); err != nil {
		return nil, fmt.Errorf("meshgate: %w", err)
	}
	if e.mesh != nil {
		// Started once listeners are bound: /ready stays 503 until the first certificates
		// (and intentions) are in, so nothing routes to us before mTLS works.
		e.add(component{name: "mesh identity", start: func(context.Context) error { e.mesh.start(); return nil },
			close: e.mesh.close, ready: e.mesh.ready})
	}
	e.add(component{name: "endpoint watches", close: func() {
		if e.stopGen != nil {
			e.stopGen()
		}
	}})
	gens, err := e.build(cfg)
	if err != nil {
		return nil, err
	}
	for _, lc := range cfg.Listeners {
		if err := e.addListener(lc, gens[lc.Name]); err != nil {
			return nil, err
		}
	}
	e.cfg.Store(cfg)
	e.kv.commit(kvRes)

	e.admin, err = admin.New(admin.Options{
		Address:  cfg.Admin.Address,
		Gatherer: reg,
		Ready:    e.readiness,
		Config:   e.configYAML,
		Clusters: func() any { return e.upstreams.Statuses() },
		Routes:   e.routesView,
		Logger:   e.log,
		// The Host check is built once with the server, so allowed_hosts needs a restart
		// like admin.address (reload refuses the change).
		AllowedHosts: cfg.Admin.AllowedHosts,
	})
	if err != nil {
		return nil, fmt.Errorf("meshgate: admin: %w", err)
	}
	e.add(component{name: "admin", close: func() { _ = e.admin.Close() }})
	err = e.admin.Handle("/identity", jsonHandler(e.mesh.view))
	if err == nil {
		err = e.admin.Handle("/plugins", jsonHandler(e.policies.plugins.Statuses))
	}
	if err == nil {
		// The page reads only the endpoints above, so it shows nothing curl could not.
		err = dashboard.Register(e.admin)
	}
	if err == nil && cfg.Admin.Pprof {
		err = registerPprof(e.admin)
	}
	if err == nil {
		_, err = e.admin.Listen()
	}
	if err != nil {
		return nil, fmt.Errorf("meshgate: admin: %w", err)
	}
	if e.self, err = newEdgeRegistration(cfg, e.disc, e.listeners, e.admin.Addr(), e.readiness, e.log); err != nil {
		return nil, fmt.Errorf("meshgate: %w", err)
	}
	if e.kv != nil {
		// Last: a delivery re-merges and reloads, which needs every handler in place.
		e.add(component{name: "kv watch", start: func(context.Context) error { return e.startKV() }, close: e.stopKV})
	}
	for _, c := range e.parts {
		if c.start == nil {
			continue
		}
		if err := c.start(context.Background()); err != nil {
			return nil, fmt.Errorf("meshgate: %s: %w", c.name, err)
		}
	}
	return e, nil
}

// addListener builds one listener's request engine and binds its socket (and, with
// tls.redirect_from, the plain-HTTP redirect listener beside it).
func (e *Server) addListener(lc conf.Listener, gen *proxy.Generation) error {
	h, err := proxy.New(e.proxyOptions(lc), gen)
	if err != nil {
		return err
	}
	e.handlers[lc.Name] = h
	var tlsConf *tls.Config
	switch {
	case lc.Connect:
		tlsConf = e.mesh.serverTLS()
	case lc.TLS != nil:
		if tlsConf, err = e.listenerCerts(lc); err != nil {
			return err
		}
	}
	lo := listenerOptions(lc)
	lo.TLSConfig, lo.Handler = tlsConf, h.Serve
	if lc.HTTP2Enabled() {
		lo.HTTP2Handler = h
	}
	lo.Logger = e.log.With().Str("listener", lc.Name).Logger()
	lo.PerIPRefused = e.perIPRef.WithLabelValues(lc.Name)
	lo.Connections, lo.Accepted, lo.AcceptErrors = e.connGa.WithLabelValues(lc.Name), e.accepted.WithLabelValues(lc.Name), e.acceptEr.WithLabelValues(lc.Name)
	ln, err := listener.New(lo)
	if err != nil {
		return err
	}
	e.addBound(ln)
	if lc.TLS != nil && lc.TLS.RedirectFrom != "" {
		ro := redirectOptions(lc)
		ro.Handler = listener.RedirectHandler(listener.RedirectOptions{HTTPSPort: addrPort(ln.Addr())})
		ro.Logger = e.log.With().Str("listener", ro.Name).Logger()
		ro.Connections, ro.Accepted, ro.AcceptErrors = e.connGa.WithLabelValues(ro.Name), e.accepted.WithLabelValues(ro.Name), e.acceptEr.WithLabelValues(ro.Name)
		rd, err := listener.New(ro)
		if err != nil {
			return err
		}
		e.addBound(rd)
	}
	return nil
}

// addBound records a bound listener; closing it (on a failed construction or after Run)
// shuts it down, giving in-flight requests a second.
func (e *Server) addBound(ln *listener.Listener) {
	e.listeners = append(e.listeners, ln)
	e.add(component{name: "listener " + ln.Name(), close: func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = ln.Shutdown(ctx)
		cancel()
	}})
}

func (e *Server) proxyOptions(lc conf.Listener) proxy.Options {
	o := handlerOptions(lc)
	o.ConnOf = listener.ConnFromContext
	if lc.Connect {
		o.Authorize = e.mesh.authorizer()
	}
	o.AccessLog, o.Metrics = e.access, e.metrics
	o.Tracer = e.tracer // nil: tracing off
	return o
}

// ListenerAddrs maps listener names to their bound addresses (tests use port 0).
func (e *Server) ListenerAddrs() map[string]net.Addr {
	out := make(map[string]net.Addr, len(e.listeners))
	for _, l := range e.listeners {
		out[l.Name()] = l.Addr()
	}
	return out
}

// AdminAddr is the admin API's bound address.
func (e *Server) AdminAddr() net.Addr { return e.admin.Addr() }

// build turns a config into one proxy generation per listener. Everything that can fail is
// done before the first live object (a cluster) is touched, so a failed reload leaves the
// running generation exactly as it was.
func (e *Server) build(cfg *conf.Config) (map[string]*proxy.Generation, error) {
	src, err := e.discoverySource(cfg)
	if err != nil {
		return nil, err
	}
	services := referencedServices(cfg)
	copts := make([]upstream.Options, len(services))
	for i, name := range services {
		if copts[i], err = clusterOptions(name, cfg.Services[name]); err != nil {
			return nil, err
		}
		if consulName, ok := connectService(cfg, name); ok && e.mesh != nil {
			copts[i].TLS = e.mesh.clientTLS(consulName)
		}
	}
	specs := make([]route.Spec, len(cfg.Routes))
	retries := make([]*upstream.RetryPolicy, len(cfg.Routes))
	for i, r := range cfg.Routes {
		specs[i] = routeSpec(i, r)
		if r.Retry != nil {
			p, err := retryPolicy(r.Retry)
			if err != nil {
				return nil, fmt.Errorf("route %q: %w", r.Name, err)
			}
			retries[i] = &p
		}
	}
	tables := make(map[string]*route.Table, len(cfg.Listeners))
	for name, ls := range listenerRoutes(cfg, specs) {
		if tables[name], err = route.New(route.Options{Routes: ls}); err != nil {
			return nil, err
		}
	}
	// Last of the fallible steps: it may start or reconfigure plugins (policies.go).
	plan, err := e.policies.plan(cfg)
	if err != nil {
		return nil, err
	}

	// From here on only programming errors can fail.
	clusters := make(map[string]*upstream.Cluster, len(services))
	for i, name := range services {
		c, err := e.upstreams.Ensure(copts[i])
		if err != nil {
			return nil, err
		}
		clusters[name] = c
	}
	chains, respChains, err := e.policies.apply(plan)
	if err != nil {
		return nil, err
	}
	backends := make([]proxy.RouteBackends, len(cfg.Routes))
	for i, r := range cfg.Routes {
		rb := proxy.RouteBackends{Name: r.Name, Retry: retries[i], Filters: chains[i], ResponseFilters: respChains[i],
			DisableWebSocket: !routeWebSocket(r)}
		for _, t := range r.To {
			rb.Backends = append(rb.Backends, proxy.Backend{Cluster: clusters[t.Service], Hash: hashOn(cfg.Services[t.Service])})
		}
		backends[i] = rb
	}
	gens := make(map[string]*proxy.Generation, len(cfg.Listeners))
	for _, lc := range cfg.Listeners {
		g, err := proxy.NewGeneration(tables[lc.Name], backends, e.metrics)
		if err != nil {
			return nil, err
		}
		gens[lc.Name] = g
	}

	// Endpoints: static sets are delivered synchronously, so clusters are populated before the
	// generation can serve. Watches of the previous generation stop after the swap.
	// Each generation's watches get a root of their own, stopped only by their own cancel
	// (stopGen, called after the next swap or at shutdown), so no parent context is kept in the
	// Server.
	ctx, cancel := context.WithCancel(context.Background())
	for name, c := range clusters {
		if err := src.Watch(ctx, name, c.Apply); err != nil {
			cancel()
			return nil, err
		}
	}
	old := e.stopGen
	e.stopGen = cancel
	if old != nil {
		defer old()
	}
	e.upstreams.Retain(services)
	return gens, nil
}

// Reload validates-then-swaps: cfg was validated by conf; here the new generations are built
// completely before any handler sees them. On error the running config stays. cfg is the file
// config; the current KV documents are merged into it (kv.go).
func (e *Server) Reload(cfg *conf.Config) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	eff, kvRes := e.withKV(cfg)
	if err := e.reload(eff); err != nil {
		e.reloads.WithLabelValues("failure").Inc()
		e.log.Error().Err(err).Msg("config reload rejected; keeping the running config")
		return err
	}
	e.fileCfg = cfg
	e.kv.commit(kvRes)
	e.reloads.WithLabelValues("success").Inc()
	e.log.Info().Str("summary", conf.Summary(eff)).Msg("config reloaded")
	return nil
}

func (e *Server) reload(cfg *conf.Config) error {
	old := e.cfg.Load()
	// Listeners own sockets; changing them needs a restart (documented), and failing loudly beats
	// silently serving on the old address.
	if err := sameListeners(old, cfg); err != nil {
		return err
	}
	if err := sameIdentity(old, cfg); err != nil {
		return err
	}
	if cfg.Admin.Address != old.Admin.Address {
		return errors.New("admin.address changed: restart meshgate to move the admin API")
	}
	if !slices.Equal(cfg.Admin.AllowedHosts, old.Admin.AllowedHosts) {
		return errors.New("admin.allowed_hosts changed: restart meshgate to apply it")
	}
	if !cfg.AccessLog.Equal(old.AccessLog) || cfg.Log != old.Log || cfg.Shutdown != old.Shutdown || !reflect.DeepEqual(cfg.Tracing, old.Tracing) {
		e.log.Warn().Msg("access_log, log, shutdown and tracing settings take effect at the next restart; the rest of the reload applies now")
	}
	e.registrationReloaded(cfg)
	gens, err := e.build(cfg)
	if err != nil {
		return err
	}
	for _, lc := range cfg.Listeners {
		e.handlers[lc.Name].Swap(gens[lc.Name])
	}
	e.cfg.Store(cfg)
	return nil
}

func sameListeners(a, b *conf.Config) error {
	if len(a.Listeners) != len(b.Listeners) {
		return errors.New("listeners added or removed: restart meshgate to change listeners")
	}
	for i := range a.Listeners {
		x, y := a.Listeners[i], b.Listeners[i]
		if x.Name != y.Name || x.Address != y.Address || x.ReadHeaderTimeout != y.ReadHeaderTimeout ||
			x.ReadTimeout != y.ReadTimeout || x.WriteTimeout != y.WriteTimeout || x.IdleTimeout != y.IdleTimeout ||
			x.MaxHeaderBytes != y.MaxHeaderBytes || x.MaxBodyBytes != y.MaxBodyBytes || x.MaxConnections != y.MaxConnections ||
			x.StreamThreshold != y.StreamThreshold || x.Connect != y.Connect || x.IdentityHeader != y.IdentityHeader ||
			(x.TLS == nil) != (y.TLS == nil) || (x.TLS != nil && (!slices.Equal(x.TLS.Certificates, y.TLS.Certificates) || x.TLS.RedirectFrom != y.TLS.RedirectFrom)) || !slices.Equal(x.TrustedProxies, y.TrustedProxies) ||
			!slices.Equal(x.TrustedPeers, y.TrustedPeers) || x.MaxConnectionsPerIP != y.MaxConnectionsPerIP ||
			x.WebSocketIdleTimeout != y.WebSocketIdleTimeout {
			return fmt.Errorf("listener %q changed: restart meshgate to change listener settings", x.Name)
		}
	}
	return nil
}

// readiness is the one place /ready is computed: the server must be serving (not starting or
// draining) and every part must be ready. The body lists what the parts say: why the ones not
// ready are not, or the details ("degraded: ...") of ready ones.
func (e *Server) readiness() (bool, string) {
	if !e.ready.Load() {
		return false, "not serving (starting or draining)"
	}
	ok := true
	var notReady, details []string
	for _, c := range e.parts {
		if c.ready == nil {
			continue
		}
		cok, why := c.ready()
		switch {
		case !cok:
			ok = false
			notReady = append(notReady, why)
		case why != "":
			details = append(details, why)
		}
	}
	if !ok {
		return false, strings.Join(notReady, "; ")
	}
	return true, strings.Join(details, "; ")
}

// configYAML is the effective config (file + KV documents) followed by a comment block on the
// KV documents: which are applied and why others were rejected.
func (e *Server) configYAML() ([]byte, error) {
	out, err := conf.Marshal(conf.Redacted(e.cfg.Load()))
	if err != nil {
		return nil, err
	}
	return append(out, e.kv.configReport()...), nil
}

// routesView lists each listener's routes in precedence order.
func (e *Server) routesView() any {
	out := make(map[string][]route.Info, len(e.handlers))
	for name, h := range e.handlers {
		rs := h.Generation().Table().Routes()
		infos := make([]route.Info, len(rs))
		for i, r := range rs {
			infos[i] = r.Info()
		}
		out[name] = infos
	}
	return out
}

// Run serves until ctx ends, then drains: /ready turns 503, keep-alive clients are told to go
// away, listeners stop accepting and in-flight requests get up to the drain timeout.
func (e *Server) Run(ctx context.Context) error {
	adminCtx, stopAdmin := context.WithCancel(context.Background())
	defer stopAdmin()
	// Run only waits for the admin server to finish after stopAdmin; what Serve returns then
	// is the shutdown itself.
	adminDone := make(chan struct{})
	go func() {
		defer close(adminDone)
		_ = e.admin.Serve(adminCtx)
	}()

	serveErr := make(chan error, len(e.listeners))
	var wg sync.WaitGroup
	for _, l := range e.listeners {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := l.Serve(); err != nil {
				serveErr <- fmt.Errorf("listener %q: %w", l.Name(), err)
			}
		}()
	}
	e.ready.Store(true)
	e.self.start()
	cfg := e.cfg.Load()
	e.log.Info().Str("summary", conf.Summary(cfg)).Str("admin", e.admin.Addr().String()).Msg("meshgate " + mode(cfg) + " serving")
	if e.onServing != nil {
		e.onServing()
	}

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-serveErr:
		e.log.Error().Err(runErr).Msg("listener failed; shutting down")
	}

	// Drain.
	e.ready.Store(false)
	for _, h := range e.handlers {
		h.SetDraining(true)
	}
	e.self.drain(runErr == nil) // leave Consul's passing set while still serving
	if d := cfg.Shutdown.ReadyDelay.D(); d > 0 && runErr == nil {
		e.log.Info().Dur("ready_delay", d).Msg("draining: /ready is 503; still serving")
		t := time.NewTimer(d)
		<-t.C
	}
	drainCtx, cancel := context.WithTimeout(context.Background(), cfg.Shutdown.DrainTimeout.D())
	defer cancel()
	var shutdownErr error
	var mu sync.Mutex
	var swg sync.WaitGroup
	for _, l := range e.listeners {
		swg.Add(1)
		go func() {
			defer swg.Done()
			if err := l.Shutdown(drainCtx); err != nil {
				mu.Lock()
				shutdownErr = errors.Join(shutdownErr, fmt.Errorf("listener %q: %w", l.Name(), err))
				mu.Unlock()
			}
		}()
	}
	swg.Wait()
	wg.Wait()
	e.self.deregister()
	if shutdownErr != nil {
		e.log.Warn().Err(shutdownErr).Msg("drain timed out; remaining connections were closed")
	}
	stopAdmin()
	<-adminDone
	e.unwind()
	e.log.Info().Msg("meshgate " + mode(cfg) + " stopped")
	return runErr
}

// registerPprof exposes Go's profiler on the admin API (admin.pprof: true).
func registerPprof(a *admin.Server) error {
	for pattern, h := range map[string]http.HandlerFunc{
		"/debug/pprof/":        pprof.Index,
		"/debug/pprof/cmdline": pprof.Cmdline,
		"/debug/pprof/profile": pprof.Profile,
		"/debug/pprof/symbol":  pprof.Symbol,
		"/debug/pprof/trace":   pprof.Trace,
	} {
		if err := a.Handle(pattern, h); err != nil {
			return err
		}
	}
	return nil
}

// jsonHandler serves view() as indented JSON (admin views other than the built-in ones).
func jsonHandler(view func() any) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(view())
	})
}

// listenerCerts loads a TLS listener's certificate files and watches them for replacement for
// the process's lifetime (certificate changes need no reload; a bad file keeps the old one).
func (e *Server) listenerCerts(lc conf.Listener) (*tls.Config, error) {
	files := make([]listener.CertFile, len(lc.TLS.Certificates))
	for i, c := range lc.TLS.Certificates {
		files[i] = listener.CertFile{Cert: c.CertFile, Key: c.KeyFile}
	}
	certs, err := listener.NewCertificates(listener.CertOptions{Files: files, Logger: e.log.With().Str("listener", lc.Name).Logger()})
	if err != nil {
		return nil, fmt.Errorf("listener %q: %w", lc.Name, err)
	}
	// One cancel per listener's watcher, closed with the other components, so no context is
	// kept in the Server.
	ctx, stop := context.WithCancel(context.Background())
	e.add(component{name: "certificate watcher " + lc.Name, close: stop})
	go certs.Watch(ctx)
	return certs.TLSConfig(), nil
}
