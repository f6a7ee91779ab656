package upstream

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/meshgate/meshgate/discovery"
	"github.com/meshgate/meshgate/mesh/lb"
	"github.com/meshgate/meshgate/mesh/tracing"
)

// ManagerOptions configures a Manager.
type ManagerOptions struct {
	Registerer prometheus.Registerer // required
	Logger     zerolog.Logger
	// NewTransport builds each host's transport (nil: HTTP/1.1 over fasthttp, with the
	// cluster's TLS, timeouts and connection limit). It is the protocol seam: balancing,
	// outlier detection, breakers and retries run the same over any Transport.
	NewTransport NewTransportFunc
}

// Manager owns every cluster of the process. Clusters (and their hosts) are keyed by service
// name and survive reloads; Retain drops the ones a new config no longer references.
type Manager struct {
	log zerolog.Logger
	// http1 is shared by every HTTP/1.1 host: the dialer and the connections' buffers (see
	// http1Shared).
	http1     *http1Shared
	transport NewTransportFunc // nil: newHTTP1Transport

	mu       sync.Mutex // guards clusters; taken on reload and discovery updates, never per request
	clusters map[string]*Cluster
	// list is a copy of clusters' values for the metrics collector, replaced under mu, so a
	// scrape reads it without locking (reloads and discovery updates hold mu while they call
	// into code a scrape must never wait for).
	list atomic.Pointer[[]*Cluster]

	// collector exports every cluster's counts and its hosts' breaker states (metrics.go).
	collector *clusterCollector

	// One goroutine per Manager logs resilience events and returns ejected hosts on time when
	// no traffic arrives; no goroutine per cluster or host.
	sink      *eventSink
	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

// sweepInterval is how often the Manager returns hosts whose ejection ended on clusters that
// have no traffic (with traffic, the next request does it).
const sweepInterval = time.Second

// NewManager registers the upstream metrics on opts.Registerer and starts the Manager's event
// goroutine; Close stops it.
func NewManager(opts ManagerOptions) (*Manager, error) {
	if opts.Registerer == nil {
		return nil, errors.New("upstream: a prometheus registerer is required")
	}
	m := &Manager{
		log:       opts.Logger,
		http1:     &http1Shared{},
		transport: opts.NewTransport,
		clusters:  make(map[string]*Cluster),
		sink:      newEventSink(1024),
		stop:      make(chan struct{}),
		done:      make(chan struct{}),
	}
	m.collector = newClusterCollector(m)
	for _, c := range []prometheus.Collector{m.collector} {
		if err := opts.Registerer.Register(c); err != nil {
			return nil, fmt.Errorf("upstream: register metrics: %w", err)
		}
	}
	go m.run()
	return m, nil
}

// run logs events as they come and sweeps ejections every sweepInterval. Logging happens only
// here, never under a cluster's or a breaker's lock.
func (m *Manager) run() {
	defer close(m.done)
	tick := time.NewTicker(sweepInterval)
	defer tick.Stop()
	var reported uint64
	for {
		select {
		case ev := <-m.sink.ch:
			logEvent(&m.log, ev)
		case <-tick.C:
			m.tick()
			if d := m.sink.dropped.Load(); d != reported {
				m.log.Warn().Uint64("dropped", d-reported).Msg("upstream events dropped: log queue full")
				reported = d
			}
		case <-m.stop:
			for {
				select {
				case ev := <-m.sink.ch:
					logEvent(&m.log, ev)
				default:
					return
				}
			}
		}
	}
}

// tick returns due hosts and refreshes every breaker, which moves an open breaker whose
// timeout passed to half-open (tries change state lazily) so metrics and logs show it.
func (m *Manager) tick() {
	m.mu.Lock()
	cs := make([]*Cluster, 0, len(m.clusters))
	for _, c := range m.clusters {
		cs = append(cs, c)
	}
	m.mu.Unlock()
	for _, c := range cs {
		c.sweep(c.opts.Load().now())
		for _, h := range c.state.Load().hosts {
			if b := h.health.breaker.Load(); b != nil {
				b.refresh(time.Now())
			}
		}
	}
}

func (cm *clusterMetrics) count(err error) {
	switch {
	case errors.Is(err, ErrConnect):
		cm.connect.Inc()
	case errors.Is(err, ErrReset):
		cm.reset.Inc()
	case errors.Is(err, ErrTimeout):
		cm.timeout.Inc()
	case errors.Is(err, ErrOverflow):
		cm.overflow.Inc()
	case errors.Is(err, ErrResponseTooLarge):
		cm.tooLarge.Inc()
	default:
		cm.protocol.Inc()
	}
}

// Ensure returns the cluster for opts.Name, creating it with no hosts or updating its options.
// Hosts keep their connections unless a transport setting changed.
func (m *Manager) Ensure(opts Options) (*Cluster, error) {
	if opts.Name == "" {
		return nil, errors.New("upstream: cluster needs a name")
	}
	if opts.Policy == nil {
		return nil, fmt.Errorf("upstream: cluster %q: no load-balancing policy", opts.Name)
	}
	if opts.Retry.Attempts == 0 {
		opts.Retry = DefaultRetry()
	}
	if err := opts.resilienceDefaults(); err != nil {
		return nil, fmt.Errorf("upstream: cluster %q: %w", opts.Name, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	c, ok := m.clusters[opts.Name]
	if !ok {
		c = &Cluster{name: opts.Name, spanNames: tracing.NewSpanNames(opts.Name), mm: m, sink: m.sink}
		c.nextReturn.Store(math.MaxInt64)
		c.opts.Store(&opts)
		c.state.Store(&state{picker: opts.Policy.NewPicker(nil), source: "none"})
		m.clusters[opts.Name] = c
		m.publishLocked()
		return c, nil
	}
	c.opts.Store(&opts)
	// Re-apply the current endpoints so a new policy or transport setting takes effect now.
	c.reapply()
	return c, nil
}

// Retain closes and forgets clusters whose names are not in keep.
func (m *Manager) Retain(keep []string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := len(m.clusters)
	defer func() {
		if len(m.clusters) != n {
			m.publishLocked()
		}
	}()
	for name, c := range m.clusters {
		if slices.Contains(keep, name) {
			continue
		}
		delete(m.clusters, name)
		// Its series go with it (the collector reads the published list): series of a
		// service that is gone would report stale values forever.
		for _, h := range c.state.Load().hosts {
			// In-flight requests keep their connections; only idle ones go now, and the
			// rest close when their requests finish.
			h.transport.CloseIdleConnections()
		}
	}
}

// publishLocked replaces list with the current clusters. Called with m.mu held.
func (m *Manager) publishLocked() {
	cs := make([]*Cluster, 0, len(m.clusters))
	for _, c := range m.clusters {
		cs = append(cs, c)
	}
	m.list.Store(&cs)
}

// Statuses lists every cluster for the admin API, sorted by name.
func (m *Manager) Statuses() []Status {
	m.mu.Lock()
	cs := make([]*Cluster, 0, len(m.clusters))
	for _, c := range m.clusters {
		cs = append(cs, c)
	}
	m.mu.Unlock()
	sort.Slice(cs, func(i, j int) bool { return cs[i].name < cs[j].name })
	out := make([]Status, len(cs))
	for i, c := range cs {
		out[i] = c.Status()
	}
	return out
}

// Close stops the event goroutine (after logging what is queued) and drops every cluster's
// idle connections. It is idempotent.
func (m *Manager) Close() {
	m.closeOnce.Do(func() {
		close(m.stop)
		<-m.done
	})
	m.Retain(nil)
}

// Apply installs a new endpoint set. It is the discovery callback: cheap, and never blocks on
// the request path (which only loads the state pointer).
func (c *Cluster) Apply(set discovery.Set) {
	p, err := ParseProtocol(set.Protocol)
	if err != nil {
		p = HTTP1 // discovery only delivers the values ParseProtocol knows; "" is HTTP1
	}
	c.registry.Store(uint32(p))
	c.rebuild(set.Endpoints, set.Source)
}

// reapply rebuilds the current endpoints. They are read under rebuildMu: a copy taken before
// it could be older than a concurrent Apply, and rebuilding from it would undo that Apply.
func (c *Cluster) reapply() {
	c.rebuildMu.Lock()
	defer c.rebuildMu.Unlock()
	st := c.state.Load()
	c.rebuildLocked(endpoints(st), st.source)
}

func endpoints(st *state) []discovery.Endpoint {
	eps := make([]discovery.Endpoint, len(st.hosts))
	for i, h := range st.hosts {
		eps[i] = discovery.Endpoint{Address: h.Address, Weight: h.Weight}
	}
	return eps
}

// rebuildMu serialises state rebuilds per cluster; Do never takes it.
func (c *Cluster) rebuild(eps []discovery.Endpoint, source string) {
	c.rebuildMu.Lock()
	defer c.rebuildMu.Unlock()
	c.rebuildLocked(eps, source)
}

func (c *Cluster) rebuildLocked(eps []discovery.Endpoint, source string) {
	opts := c.opts.Load()
	if opts.ProtocolFromRegistry {
		// A local copy: the stored options stay as configured, so a reload or a registry
		// change later derives the protocol afresh.
		eff := *opts
		eff.Protocol = Protocol(c.registry.Load())
		opts = &eff
	}
	key := opts.transportKey()
	old := c.state.Load()
	byAddr := make(map[string]*Host, len(old.hosts))
	for _, h := range old.hosts {
		byAddr[h.Address] = h
	}
	hosts := make([]*Host, 0, len(eps))
	seen := make(map[string]bool, len(eps))
	for _, ep := range eps {
		if seen[ep.Address] {
			continue
		}
		seen[ep.Address] = true
		w := max(ep.Weight, 1)
		h, ok := byAddr[ep.Address]
		if ok && h.key == key && h.Weight == w {
			hosts = append(hosts, h)
			delete(byAddr, ep.Address)
			continue
		}
		var same Transport
		if ok && h.key == key {
			// Same transport, new weight: keep the connection pool, start fresh statistics.
			same = h.transport
			delete(byAddr, ep.Address)
		}
		nh := c.mm.newHost(ep.Address, w, opts, same)
		if ok {
			// Ejections and breakers belong to the address, whatever else changed.
			nh.health = h.health
		}
		hosts = append(hosts, nh)
	}
	for _, h := range hosts {
		c.ensureBreaker(h, &opts.Breaker)
	}
	// Keep a stable order so round-robin sequences and /clusters output do not jump around.
	sort.Slice(hosts, func(i, j int) bool { return strings.Compare(hosts[i].Address, hosts[j].Address) < 0 })
	lbHosts := make([]*lb.Host, len(hosts))
	for i, h := range hosts {
		lbHosts[i] = &h.Host
	}
	st := &state{hosts: hosts, picker: opts.Policy.NewPicker(lbHosts), source: source}
	c.state.Store(st)
	for _, h := range byAddr {
		h.transport.CloseIdleConnections()
	}
	// The host count decides max_ejection_percent and panic, and new *Host values start with
	// Down false: derive every Down flag again for the new set.
	c.ejectMu.Lock()
	defer c.ejectMu.Unlock()
	if opts.Outlier.Disabled {
		c.clearEjectionsLocked(st, opts.now())
	}
	c.syncDownLocked(st, &opts.Outlier)
}

// ensureBreaker gives h a breaker built with the current settings, or removes it when
// breakers are disabled. Unchanged settings keep the breaker and its state.
func (c *Cluster) ensureBreaker(h *Host, o *BreakerOptions) {
	cur := h.health.breaker.Load()
	switch {
	case o.Disabled && cur != nil:
		h.health.breaker.Store(nil)
	case !o.Disabled && (cur == nil || cur.opts != *o):
		h.health.breaker.Store(newBreaker(c.name, h.Address, *o, c.sink))
	}
}

// newHost is a host of a cluster with opts and no resilience state, using transport (nil: a
// new one).
func (m *Manager) newHost(addr string, weight int, opts *Options, transport Transport) *Host {
	if transport == nil {
		transport = m.newTransport(addr, opts)
	}
	h := &Host{key: opts.transportKey(), health: &health{}, transport: transport}
	h.Address = addr
	h.Weight = weight
	return h
}

// newTransport builds addr's transport: ManagerOptions.NewTransport's, or HTTP/1.1 over fasthttp.
func (m *Manager) newTransport(addr string, opts *Options) Transport {
	if m.transport != nil {
		return m.transport(addr, opts)
	}
	if opts.Protocol != HTTP1 {
		return newHTTP2Transport(addr, opts)
	}
	return newHTTP1Transport(addr, opts, m.http1)
}
