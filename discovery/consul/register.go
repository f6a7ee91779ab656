package consul

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/rs/zerolog"
)

// Check kinds a Registrar can register.
const (
	CheckHTTP = "http" // the agent GETs CheckURL every CheckInterval
	CheckTTL  = "ttl"  // the Registrar passes it every CheckInterval/3 from Run
	CheckTCP  = "tcp"  // the agent connects to CheckAddress every CheckInterval
)

// Registrar defaults.
const (
	DefaultCheckInterval   = 2 * time.Second
	DefaultDeregisterAfter = time.Minute
	DefaultResync          = 5 * time.Second
	// opTimeout bounds each agent call Run makes, so a hung agent cannot park the loop (and
	// the op slot Maintenance and Deregister wait for) for longer than this.
	opTimeout = 5 * time.Second
	// maxCheckTimeout caps the HTTP check's own timeout (Consul's default is 10s).
	maxCheckTimeout = 10 * time.Second
)

// Sentinel errors of the Registrar.
var (
	// ErrStillPassing is returned by WaitNotPassing when Consul still reports the instance
	// as passing when the timeout ends.
	ErrStillPassing = errors.New("consul still reports the instance as passing")
	// ErrDeregistered is returned by Register after Deregister: a deregistered instance stays
	// gone, whatever a late retry would like.
	ErrDeregistered = errors.New("service was deregistered")
)

// Instance is the service instance a Registrar registers.
type Instance struct {
	Name    string // required
	ID      string // default Name
	Address string // default: the node's address (Consul's rule for an empty address)
	Port    int
	Tags    []string
	Meta    map[string]string
	// Proxy, when set, registers the instance as a connect-proxy (Kind "connect-proxy") for
	// Proxy.DestinationServiceName: Connect callers then find it at Address:Port through
	// /v1/health/connect/<destination>, and Consul's own proxies treat it as the app's sidecar.
	// Port is then required: it is the proxy's mTLS inbound listener.
	Proxy *ProxyConfig
}

// ProxyConfig is what Consul records about a sidecar proxy (the "Proxy" block of a
// connect-proxy registration). The field names are Consul's.
type ProxyConfig struct {
	DestinationServiceName string // the app this proxy fronts; required
	DestinationServiceID   string // the app's instance ID; optional
	// LocalServiceAddress and LocalServicePort are where the proxy reaches the app; Consul's
	// defaults when empty are 127.0.0.1 and nothing.
	LocalServiceAddress string
	LocalServicePort    int
	Upstreams           []ProxyUpstream
}

// ProxyUpstream is one service the proxy offers the app on a local plaintext port.
type ProxyUpstream struct {
	DestinationName  string // required
	LocalBindAddress string // default (Consul's) 127.0.0.1
	LocalBindPort    int    // required
}

// RegistrarOptions configure a Registrar. The connection fields mean what they mean in Options
// (the same client is built from them).
type RegistrarOptions struct {
	Address    string
	Scheme     string
	Datacenter string
	Token      string
	TokenFile  string
	Getenv     func(string) string
	TLS        TLSOptions
	// Client, when set, is the agent connection to use (the process's one client); the
	// connection fields above are then ignored.
	Client *Client

	Service Instance
	// Check is CheckHTTP (default), CheckTTL or CheckTCP.
	Check string
	// CheckURL is what the agent GETs for an HTTP check (e.g. http://127.0.0.1:9901/ready);
	// required with CheckHTTP.
	CheckURL string
	// CheckAddress is the host:port the agent connects to for a TCP check; default
	// Service.Address:Service.Port. A sidecar registering its app uses it so Consul sees the
	// app passing only while the app accepts connections.
	CheckAddress string
	// CheckInterval is the HTTP or TCP check's interval or the TTL; default 2s.
	CheckInterval time.Duration
	// AliasServiceID, when set, adds a second check that mirrors the health of that service
	// instance on the same agent (Consul's alias check). A sidecar proxy sets it to its app's
	// ID — as Consul's own sidecar registrations do — so callers stop picking the proxy while
	// the app behind it is failing or in maintenance. DeregisterAfter does not apply to it: an
	// app down for a while must not make the agent drop the proxy.
	AliasServiceID string
	// DeregisterAfter: the agent removes the instance after its check is critical this long
	// (Consul raises anything below 1m to 1m). Default 1m.
	DeregisterAfter time.Duration
	// Ready gates the TTL check: it is passed only while Ready reports true (its detail goes
	// into the check output otherwise). Nil means always ready. Unused with CheckHTTP and
	// CheckTCP, where the agent's own probe answers the same question.
	Ready func() (bool, string)
	// Resync is how often Run asks the agent whether it still knows the instance, so an agent
	// that restarted without its state gets it back. Default 5s.
	Resync time.Duration
	Logger zerolog.Logger

	// Retry tuning for Run; zero values are the defaults (50ms, 30s). Tests shorten them.
	BackoffMin time.Duration
	BackoffMax time.Duration
}

// Registrar registers one service instance with the local agent and takes it out again in
// the order a graceful shutdown needs (see the package doc and docs/consul.md).
type Registrar struct {
	client    *api.Client
	closeIdle func()
	token     string
	dc        string
	reg       *api.AgentServiceRegistration
	checkID   string
	kind      string        // CheckHTTP, CheckTTL or CheckTCP
	ttl       time.Duration // 0 unless kind is CheckTTL
	ready     func() (bool, string)
	resync    time.Duration
	log       zerolog.Logger

	backoffMin, backoffMax time.Duration

	// op serialises agent writes (register, maintenance, TTL updates, deregister) so a retry
	// in Run can never land after Deregister; a channel rather than a mutex so waiting for it
	// honours the caller's ctx.
	op chan struct{}

	mu          sync.Mutex // guards the fields below; never held across an agent call
	maint       bool
	maintReason string
	registered  bool   // at least one registration succeeded
	node        string // our agent's node name, learnt at registration
	closed      bool   // Deregister was called
}

// NewRegistrar checks the options and builds the agent client; it does not contact Consul.
func NewRegistrar(opts RegistrarOptions) (*Registrar, error) {
	in := opts.Service
	if in.Name == "" {
		return nil, errors.New("consul: registrar: service name is required")
	}
	if in.ID == "" {
		in.ID = in.Name
	}
	if strings.ContainsAny(in.ID, "/?#% \t") {
		return nil, fmt.Errorf("consul: registrar: service id %q: must not contain '/', '?', '#', '%%' or spaces", in.ID)
	}
	if in.Port < 0 || in.Port > 65535 {
		return nil, fmt.Errorf("consul: registrar: port %d: want 0..65535", in.Port)
	}
	var proxy *api.AgentServiceConnectProxyConfig
	if in.Proxy != nil {
		var err error
		if proxy, err = proxyConfig(in.Port, in.Proxy); err != nil {
			return nil, fmt.Errorf("consul: registrar: proxy %s: %w", in.ID, err)
		}
	}
	interval := orDefault(opts.CheckInterval, DefaultCheckInterval)
	deregAfter := orDefault(opts.DeregisterAfter, DefaultDeregisterAfter)
	check := &api.AgentServiceCheck{
		CheckID:                        "service:" + in.ID,
		DeregisterCriticalServiceAfter: deregAfter.String(),
	}
	var ttl time.Duration
	kind := opts.Check
	switch kind {
	case "", CheckHTTP:
		kind = CheckHTTP
		if opts.CheckURL == "" {
			return nil, errors.New("consul: registrar: an http check needs a check url")
		}
		check.Name = "meshgate ready"
		check.HTTP = opts.CheckURL
		check.Method = http.MethodGet
		check.Interval = interval.String()
		check.Timeout = min(interval, maxCheckTimeout).String()
	case CheckTCP:
		addr := opts.CheckAddress
		if addr == "" && in.Address != "" && in.Port > 0 {
			addr = net.JoinHostPort(in.Address, strconv.Itoa(in.Port))
		}
		if _, port, err := net.SplitHostPort(addr); err != nil || port == "" || port == "0" {
			return nil, fmt.Errorf("consul: registrar: a tcp check needs a host:port (check address, or the service's address and port), got %q", addr)
		}
		check.Name = "listening"
		check.TCP = addr
		check.Interval = interval.String()
		check.Timeout = min(interval, maxCheckTimeout).String()
	case CheckTTL:
		ttl = interval
		check.Name = "meshgate ttl"
		check.TTL = ttl.String()
		// Critical until Run's first pass: registering is not the same as being ready.
		check.Status = api.HealthCritical
	default:
		return nil, fmt.Errorf("consul: registrar: check %q: want %s, %s or %s", opts.Check, CheckHTTP, CheckTTL, CheckTCP)
	}
	var alias api.AgentServiceChecks
	if opts.AliasServiceID != "" {
		if opts.AliasServiceID == in.ID {
			return nil, fmt.Errorf("consul: registrar: alias service %q: an instance cannot alias itself", in.ID)
		}
		alias = api.AgentServiceChecks{{
			CheckID:      check.CheckID + ":alias",
			Name:         "alias " + opts.AliasServiceID,
			AliasService: opts.AliasServiceID,
		}}
	}

	cl := opts.Client
	if cl == nil {
		var err error
		if cl, err = NewClient(ClientOptions{Address: opts.Address, Scheme: opts.Scheme, Datacenter: opts.Datacenter,
			Token: opts.Token, TokenFile: opts.TokenFile, Getenv: opts.Getenv, TLS: opts.TLS}); err != nil {
			return nil, fmt.Errorf("consul: registrar: %w", err)
		}
	}
	return &Registrar{
		client:    cl.api,
		closeIdle: cl.closeIdle,
		token:     cl.token,
		dc:        cl.dc,
		reg: &api.AgentServiceRegistration{
			Kind:    kindOf(proxy),
			ID:      in.ID,
			Name:    in.Name,
			Address: in.Address,
			Port:    in.Port,
			Tags:    append([]string(nil), in.Tags...),
			Meta:    cloneMeta(in.Meta),
			Check:   check,
			Checks:  alias,
			Proxy:   proxy,
		},
		checkID:    check.CheckID,
		kind:       kind,
		ttl:        ttl,
		ready:      opts.Ready,
		resync:     orDefault(opts.Resync, DefaultResync),
		log:        opts.Logger.With().Str(fieldComponent, "consul.register").Str("service_id", in.ID).Logger(),
		backoffMin: orDefault(opts.BackoffMin, defaultMinBackoff),
		backoffMax: orDefault(opts.BackoffMax, defaultMaxBackoff),
		op:         make(chan struct{}, 1),
	}, nil
}

// proxyConfig checks a sidecar's proxy block and converts it, so a mistake Consul would reject
// fails NewRegistrar instead of making Run retry a doomed registration forever.
func proxyConfig(port int, p *ProxyConfig) (*api.AgentServiceConnectProxyConfig, error) {
	if p.DestinationServiceName == "" {
		return nil, errors.New("destination service name is required")
	}
	if port <= 0 {
		return nil, errors.New("port is required (the proxy's inbound listener)")
	}
	if p.LocalServicePort < 0 || p.LocalServicePort > 65535 {
		return nil, fmt.Errorf("local service port %d: want 0..65535", p.LocalServicePort)
	}
	out := &api.AgentServiceConnectProxyConfig{
		DestinationServiceName: p.DestinationServiceName,
		DestinationServiceID:   p.DestinationServiceID,
		LocalServiceAddress:    p.LocalServiceAddress,
		LocalServicePort:       p.LocalServicePort,
	}
	names := make(map[string]bool, len(p.Upstreams))
	binds := make(map[string]bool, len(p.Upstreams))
	for i, u := range p.Upstreams {
		if u.DestinationName == "" {
			return nil, fmt.Errorf("upstream %d: destination name is required", i)
		}
		if u.LocalBindPort <= 0 || u.LocalBindPort > 65535 {
			return nil, fmt.Errorf("upstream %s: local bind port %d: want 1..65535", u.DestinationName, u.LocalBindPort)
		}
		bindHost := u.LocalBindAddress
		if bindHost == "" {
			bindHost = "127.0.0.1"
		}
		bind := net.JoinHostPort(bindHost, strconv.Itoa(u.LocalBindPort))
		switch {
		case names[u.DestinationName]:
			return nil, fmt.Errorf("upstream %s: listed twice", u.DestinationName)
		case binds[bind]:
			return nil, fmt.Errorf("upstream %s: local bind %s is used twice", u.DestinationName, bind)
		}
		names[u.DestinationName], binds[bind] = true, true
		out.Upstreams = append(out.Upstreams, api.Upstream{
			DestinationName:  u.DestinationName,
			LocalBindAddress: u.LocalBindAddress,
			LocalBindPort:    u.LocalBindPort,
		})
	}
	return out, nil
}

func kindOf(proxy *api.AgentServiceConnectProxyConfig) api.ServiceKind {
	if proxy != nil {
		return api.ServiceKindConnectProxy
	}
	return api.ServiceKindTypical
}

func cloneMeta(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// ID is the registered service ID.
func (r *Registrar) ID() string { return r.reg.ID }

// CheckID is the ID of the instance's check ("service:<id>").
func (r *Registrar) CheckID() string { return r.checkID }

func (r *Registrar) lock(ctx context.Context) error {
	select {
	case r.op <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (r *Registrar) unlock() { <-r.op }

func (r *Registrar) query(ctx context.Context) *api.QueryOptions {
	return (&api.QueryOptions{Datacenter: r.dc, Token: r.token}).WithContext(ctx)
}

// Register registers the instance and its check once, replacing an existing registration of
// the same ID (and its checks). With maintenance on, maintenance is re-applied, so a
// re-registration after an agent restart does not bring a draining instance back. With a TTL
// check the first pass is sent at once, so a ready process does not wait a tick to be passing.
func (r *Registrar) Register(ctx context.Context) error {
	if err := r.lock(ctx); err != nil {
		return err
	}
	defer r.unlock()
	r.mu.Lock()
	closed, maint, reason := r.closed, r.maint, r.maintReason
	r.mu.Unlock()
	if closed {
		return ErrDeregistered
	}
	opts := api.ServiceRegisterOpts{ReplaceExistingChecks: true, Token: r.token}.WithContext(ctx)
	if err := r.client.Agent().ServiceRegisterOpts(r.reg, opts); err != nil {
		return fmt.Errorf("consul: register %s: %w", r.reg.ID, simplify(err))
	}
	// The node name tells our instance apart from one with the same ID on another agent
	// (service IDs are unique per agent only). Best effort: WaitNotPassing falls back to the ID.
	node := r.nodeName(ctx)
	r.mu.Lock()
	r.registered = true
	if node != "" {
		r.node = node
	}
	r.mu.Unlock()
	if maint {
		if err := r.client.Agent().EnableServiceMaintenanceOpts(r.reg.ID, reason, r.query(ctx)); err != nil {
			return fmt.Errorf("consul: re-apply maintenance to %s: %w", r.reg.ID, simplify(err))
		}
	}
	if r.ttl > 0 {
		return r.updateTTL(ctx, maint, reason)
	}
	return nil
}

// nodeName asks the agent for its node name; "" when it cannot tell.
func (r *Registrar) nodeName(ctx context.Context) string {
	var self struct{ Config struct{ NodeName string } }
	if _, err := r.client.Raw().Query("/v1/agent/self", &self, r.query(ctx)); err != nil {
		return ""
	}
	return self.Config.NodeName
}

// updateTTL reports the TTL check's status; the caller holds the op slot.
func (r *Registrar) updateTTL(ctx context.Context, maint bool, reason string) error {
	status, output := api.HealthPassing, "meshgate is ready"
	switch {
	case maint:
		status, output = api.HealthCritical, "maintenance: "+reason
	case r.ready != nil:
		if ok, detail := r.ready(); !ok {
			status, output = api.HealthCritical, "not ready: "+detail
		}
	}
	if err := r.client.Agent().UpdateTTLOpts(r.checkID, output, status, r.query(ctx)); err != nil {
		return fmt.Errorf("consul: update ttl check %s: %w", r.checkID, simplify(err))
	}
	return nil
}

// Maintenance turns the instance's maintenance mode on or off. On, the agent adds a critical
// maintenance check (so health queries stop returning the instance as soon as the catalog
// syncs) and a TTL check is marked critical too. The setting is remembered: a later
// (re-)registration re-applies it. Before the first successful registration it only records it.
func (r *Registrar) Maintenance(ctx context.Context, on bool, reason string) error {
	if reason == "" {
		reason = "meshgate maintenance"
	}
	// Recorded before waiting for the op slot, so a registration in flight (which reads it
	// under the slot) or a later one applies it even if this call gives up waiting.
	r.mu.Lock()
	r.maint, r.maintReason = on, reason
	r.mu.Unlock()
	if err := r.lock(ctx); err != nil {
		return err
	}
	defer r.unlock()
	r.mu.Lock()
	registered := r.registered
	r.mu.Unlock()
	if !registered {
		return nil
	}
	var err error
	if on {
		err = r.client.Agent().EnableServiceMaintenanceOpts(r.reg.ID, reason, r.query(ctx))
	} else {
		err = r.client.Agent().DisableServiceMaintenanceOpts(r.reg.ID, r.query(ctx))
	}
	if err != nil {
		return fmt.Errorf("consul: maintenance %t on %s: %w", on, r.reg.ID, simplify(err))
	}
	if r.ttl > 0 {
		return r.updateTTL(ctx, on, reason)
	}
	return nil
}

// WaitNotPassing blocks until Consul's health endpoint no longer lists this instance among the
// passing instances of its service — for a proxy, among the passing Connect endpoints of its
// destination, which is where its callers find it — or timeout (or ctx) ends. It follows the
// endpoint with blocking queries, so it returns as soon as the catalog changes. It returns at
// once when the instance was never registered. On timeout the error wraps ErrStillPassing (and
// the last query error, if queries were failing).
func (r *Registrar) WaitNotPassing(ctx context.Context, timeout time.Duration) error {
	r.mu.Lock()
	registered, node := r.registered, r.node
	r.mu.Unlock()
	if !registered {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var index uint64
	var lastErr error
	failures := 0
	for {
		wait := time.Second
		if dl, ok := ctx.Deadline(); ok {
			wait = max(time.Until(dl), time.Millisecond)
		}
		q := (&api.QueryOptions{Datacenter: r.dc, Token: r.token, WaitIndex: index, WaitTime: wait}).WithContext(ctx)
		entries, meta, err := r.passingEntries(q)
		if err == nil {
			if !r.listed(entries, node) {
				return nil
			}
			index = nextIndex(index, meta.LastIndex)
			continue
		}
		if ctx.Err() != nil {
			return r.stillPassing(timeout, lastErr)
		}
		lastErr = simplify(err)
		failures++
		index = 0
		if !sleep(ctx, r.backoff(failures)) {
			return r.stillPassing(timeout, lastErr)
		}
	}
}

func (r *Registrar) passingEntries(q *api.QueryOptions) ([]*api.ServiceEntry, *api.QueryMeta, error) {
	if r.reg.Proxy != nil {
		return r.client.Health().Connect(r.reg.Proxy.DestinationServiceName, "", true, q)
	}
	return r.client.Health().Service(r.reg.Name, "", true, q)
}

func (r *Registrar) stillPassing(timeout time.Duration, lastErr error) error {
	if lastErr != nil {
		return fmt.Errorf("after %s: %w (last query: %w)", timeout, ErrStillPassing, lastErr)
	}
	return fmt.Errorf("after %s: %w", timeout, ErrStillPassing)
}

func (r *Registrar) listed(entries []*api.ServiceEntry, node string) bool {
	for _, e := range entries {
		if e == nil || e.Service == nil || e.Service.ID != r.reg.ID {
			continue
		}
		if node == "" || e.Node == nil || e.Node.Node == node {
			return true
		}
	}
	return false
}

// Deregister removes the instance (and its checks) from the agent. Afterwards Register fails
// with ErrDeregistered and Run stops, so nothing brings the instance back. An instance the
// agent does not know is not an error.
func (r *Registrar) Deregister(ctx context.Context) error {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	if err := r.lock(ctx); err != nil {
		return err
	}
	defer r.unlock()
	err := r.client.Agent().ServiceDeregisterOpts(r.reg.ID, r.query(ctx))
	if err != nil && !isNotFound(err) {
		return fmt.Errorf("consul: deregister %s: %w", r.reg.ID, simplify(err))
	}
	return nil
}

// Close drops idle agent connections; call it once the Registrar is no longer used.
func (r *Registrar) Close() { r.closeIdle() }

// Run registers the instance — retrying with jittered backoff while the agent is unreachable,
// without ever failing — and then keeps it registered until ctx ends or Deregister is called:
// it passes a TTL check every TTL/3 (critical while in maintenance or not ready), and every
// Resync it asks the agent for the instance. A TTL update the agent rejects as an unknown
// check, or an instance the agent no longer knows, means the agent restarted without our
// registration: Run registers again. Run returns nil.
func (r *Registrar) Run(ctx context.Context) error {
	for {
		if !r.registerLoop(ctx) {
			return nil
		}
		if !r.maintain(ctx) {
			return nil
		}
		r.log.Warn().Msg("the consul agent lost this registration (restarted without its state?); registering again")
	}
}

func (r *Registrar) isClosed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.closed
}

// registerLoop retries Register until it succeeds; false means stop (ctx ended or deregistered).
func (r *Registrar) registerLoop(ctx context.Context) bool {
	failures := 0
	for {
		octx, cancel := context.WithTimeout(ctx, opTimeout)
		err := r.Register(octx)
		cancel()
		switch {
		case ctx.Err() != nil, errors.Is(err, ErrDeregistered):
			return false
		case err == nil:
			r.log.Info().Func(func(ev *zerolog.Event) {
				if failures > 0 {
					ev.Int("failed_attempts", failures)
				}
			}).Str("check", r.kind).Msg("registered in consul")
			return true
		}
		failures++
		// The first failure is worth a warning; the retries only at debug, so an agent that
		// stays down does not flood the log.
		lvl := zerolog.DebugLevel
		if failures == 1 {
			lvl = zerolog.WarnLevel
		}
		r.log.WithLevel(lvl).Err(err).Int("failures", failures).Msg("consul registration failed; retrying in the background")
		if !sleep(ctx, r.backoff(failures)) {
			return false
		}
	}
}

// maintain keeps a registered instance alive; it returns true when the agent lost the
// registration (register again) and false when Run should stop.
func (r *Registrar) maintain(ctx context.Context) bool {
	var ttlC <-chan time.Time
	if r.ttl > 0 {
		t := time.NewTicker(max(r.ttl/3, time.Millisecond))
		defer t.Stop()
		ttlC = t.C
	}
	resync := time.NewTicker(r.resync)
	defer resync.Stop()
	failing := false
	for {
		var err error
		select {
		case <-ctx.Done():
			return false
		case <-ttlC:
			err = r.pass(ctx)
		case <-resync.C:
			err = r.present(ctx)
		}
		switch {
		case ctx.Err() != nil || r.isClosed():
			return false
		case err == nil:
			if failing {
				r.log.Info().Msg("consul agent answers again")
			}
			failing = false
		case isGone(err):
			return true
		case !failing:
			failing = true
			r.log.Warn().Err(err).Msg("consul agent unreachable; the registration will be checked again")
		}
	}
}

// pass sends one TTL update under the op slot.
func (r *Registrar) pass(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	if err := r.lock(ctx); err != nil {
		return err
	}
	defer r.unlock()
	r.mu.Lock()
	closed, maint, reason := r.closed, r.maint, r.maintReason
	r.mu.Unlock()
	if closed {
		return nil
	}
	return r.updateTTL(ctx, maint, reason)
}

// present asks the agent whether it still has the instance; errGone when it does not.
func (r *Registrar) present(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	_, _, err := r.client.Agent().Service(r.reg.ID, r.query(ctx))
	if err != nil && isNotFound(err) {
		return fmt.Errorf("%w: %w", errGone, err)
	}
	return err
}

// errGone marks an agent that no longer has our registration.
var errGone = errors.New("the agent does not know the instance")

// isGone recognises a lost registration: our own probe, or the agent rejecting a TTL update
// for a check it does not know (404 "Unknown check ID", or a 500 saying the check has no TTL).
func isGone(err error) bool {
	if errors.Is(err, errGone) || isNotFound(err) {
		return true
	}
	var se api.StatusError
	return errors.As(err, &se) && (strings.Contains(se.Body, "Unknown check") || strings.Contains(se.Body, "does not have associated TTL"))
}

func isNotFound(err error) bool {
	var se api.StatusError
	return errors.As(err, &se) && se.Code == http.StatusNotFound
}

// backoff is exponential from backoffMin to backoffMax with equal jitter, like Source's.
func (r *Registrar) backoff(failures int) time.Duration {
	d := r.backoffMax
	if failures < 32 {
		d = min(r.backoffMin<<(failures-1), r.backoffMax)
	}
	half := d / 2
	return half + rand.N(half+1)
}
