package upstream

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"

	"github.com/meshgate/meshgate/discovery"
	"github.com/meshgate/meshgate/mesh/lb"
)

// ManagerOptions configures a Manager.
type ManagerOptions struct {
	Registerer prometheus.Registerer // required
	Logger     zerolog.Logger
}

// Manager owns every cluster of the process. Clusters (and their hosts) are keyed by service
// name and survive reloads; Retain drops the ones a new config no longer references.
type Manager struct {
	log zerolog.Logger

	mu       sync.Mutex // guards clusters; taken on reload and discovery updates, never per request
	clusters map[string]*Cluster

	retries *prometheus.CounterVec
	errors  *prometheus.CounterVec
}

// NewManager registers the upstream metrics on opts.Registerer.
func NewManager(opts ManagerOptions) (*Manager, error) {
	if opts.Registerer == nil {
		return nil, errors.New("upstream: a prometheus registerer is required")
	}
	m := &Manager{
		log:      opts.Logger,
		clusters: make(map[string]*Cluster),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshgate_upstream_retries_total",
			Help: "Requests re-sent to an upstream after a failed try.",
		}, []string{"service"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshgate_upstream_errors_total",
			Help: "Failed upstream tries by kind: connect, reset, timeout, overflow, too_large, protocol, no_hosts.",
		}, []string{"service", "kind"}),
	}
	for _, c := range []prometheus.Collector{m.retries, m.errors} {
		if err := opts.Registerer.Register(c); err != nil {
			return nil, fmt.Errorf("upstream: register metrics: %w", err)
		}
	}
	return m, nil
}

// clusterMetrics are pre-bound label children so the request path never builds label maps.
type clusterMetrics struct {
	retries, noHosts, connect, reset, timeout, overflow, tooLarge, protocol prometheus.Counter
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
	m.mu.Lock()
	defer m.mu.Unlock()
	c, ok := m.clusters[opts.Name]
	if !ok {
		e := func(kind string) prometheus.Counter { return m.errors.WithLabelValues(opts.Name, kind) }
		c = &Cluster{name: opts.Name, metrics: clusterMetrics{
			retries: m.retries.WithLabelValues(opts.Name),
			noHosts: e("no_hosts"), connect: e("connect"), reset: e("reset"), timeout: e("timeout"),
			overflow: e("overflow"), tooLarge: e("too_large"), protocol: e("protocol"),
		}}
		c.opts.Store(&opts)
		c.state.Store(&state{picker: opts.Policy.NewPicker(nil), source: "none"})
		m.clusters[opts.Name] = c
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
	for name, c := range m.clusters {
		if slices.Contains(keep, name) {
			continue
		}
		delete(m.clusters, name)
		for _, h := range c.state.Load().hosts {
			// In-flight requests keep their connections; only idle ones go now, and the
			// rest close when their requests finish and the client is collected.
			h.client.CloseIdleConnections()
		}
	}
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

// Close drops every cluster's idle connections.
func (m *Manager) Close() { m.Retain(nil) }

// Apply installs a new endpoint set. It is the discovery callback: cheap, and never blocks on
// the request path (which only loads the state pointer).
func (c *Cluster) Apply(set discovery.Set) {
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
		if h, ok := byAddr[ep.Address]; ok && h.key == key && h.Weight == w {
			hosts = append(hosts, h)
			delete(byAddr, ep.Address)
			continue
		}
		nh := newHost(ep.Address, w, opts)
		if h, ok := byAddr[ep.Address]; ok && h.key == key {
			// Same transport, new weight: keep the connection pool, start fresh statistics.
			nh.client = h.client
			delete(byAddr, ep.Address)
		}
		hosts = append(hosts, nh)
	}
	// Keep a stable order so round-robin sequences and /clusters output do not jump around.
	sort.Slice(hosts, func(i, j int) bool { return strings.Compare(hosts[i].Address, hosts[j].Address) < 0 })
	lbHosts := make([]*lb.Host, len(hosts))
	for i, h := range hosts {
		lbHosts[i] = &h.Host
	}
	c.state.Store(&state{hosts: hosts, picker: opts.Policy.NewPicker(lbHosts), source: source})
	for _, h := range byAddr {
		h.client.CloseIdleConnections()
	}
}

func newHost(addr string, weight int, opts *Options) *Host {
	connectTimeout := opts.ConnectTimeout
	if connectTimeout <= 0 {
		connectTimeout = 2 * time.Second
	}
	dialer := &fasthttp.TCPDialer{}
	h := &Host{key: opts.transportKey()}
	h.Address = addr
	h.Weight = weight
	h.client = &fasthttp.HostClient{
		Addr:                     addr,
		NoDefaultUserAgentHeader: true,
		DialTimeout: func(addr string, timeout time.Duration) (net.Conn, error) {
			// timeout is what is left of the request's deadline (0: none); the connect timeout
			// caps it so a black-holed host fails fast and the retry can go elsewhere.
			if timeout <= 0 || timeout > connectTimeout {
				timeout = connectTimeout
			}
			return dialer.DialTimeout(addr, timeout)
		},
		MaxConns:            opts.MaxConnsPerHost,
		MaxIdleConnDuration: opts.IdleTimeout,
		// Retries are ours (they know about hosts, budgets and idempotency); the client's own
		// would silently re-send to the same host.
		MaxIdemponentCallAttempts: 1,
		RetryIfErr:                func(*fasthttp.Request, int, error) (bool, bool) { return false, false },
		// The gateway decides the exact request-target; the client must send it byte for byte.
		DisablePathNormalizing: true,
		// Bodies above the threshold are streamed to the client; small ones are copied whole by
		// the gateway. Either way the size bound is enforced by the gateway.
		StreamResponseBody:    true,
		SecureErrorLogMessage: true,
	}
	return h
}
