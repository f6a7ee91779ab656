package conf

import (
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Identity makes this process a Consul Connect peer.
type Identity struct {
	// Service is the Connect service name this process presents (its leaf certificate's
	// identity). For a sidecar it defaults to sidecar.service.name.
	Service string `yaml:"service"`
	// Connect: fetch this identity's certificate from Consul, reach services discovered through
	// Consul via their Connect sidecars with mTLS (/v1/health/connect), and allow listeners with
	// connect: true.
	Connect bool `yaml:"connect"`
	// IntentionsDefault is what a connect listener does with a caller no intention matches:
	// "deny" (default) or "allow". Consul's own default follows its ACL default policy, which
	// is "allow" when ACLs are off; we deny unless told otherwise, so a forgotten intention
	// fails closed.
	IntentionsDefault string `yaml:"intentions_default"`
	// MaxSnapshotAge: intentions last confirmed by Consul (or, from the snapshot, fetched)
	// longer ago than this deny every caller until Consul answers again, so an intention
	// revoked during an outage cannot stay granted indefinitely. Default 24h; a negative value
	// (e.g. -1s) disables the limit. Must be at least twice discovery.consul.wait: an idle
	// blocking query only answers once per wait.
	MaxSnapshotAge Duration `yaml:"max_snapshot_age"`
}

// Sidecar is `meshgate sidecar`: meshgate next to one local app, as that app's Connect proxy.
//
//	callers ──mTLS──▶ inbound (intentions, inbound policies) ──▶ service.address:port (the app)
//	app ──▶ upstreams[i].bind (plaintext, loopback) ──mTLS──▶ the upstream's Connect sidecars
//
// The engine runs Expanded(): the inbound and each upstream become ordinary listeners and
// routes, so routing, resilience, policies and the admin API are the edge's.
type Sidecar struct {
	Service   SidecarService    `yaml:"service"`
	Inbound   SidecarInbound    `yaml:"inbound"`
	Upstreams []SidecarUpstream `yaml:"upstreams"`
	// Connect (default true): mTLS with the service's Connect identity on the inbound listener
	// and to upstreams, intentions enforced. false is plaintext mode for users who only want
	// discovery: the inbound listener is plain HTTP and upstreams are reached at their
	// instances' own addresses.
	Connect *bool `yaml:"connect"`
}

// SidecarService is the local app this sidecar fronts.
type SidecarService struct {
	Name    string            `yaml:"name"`    // required: the Consul service name, also our identity
	ID      string            `yaml:"id"`      // default name-address-port
	Address string            `yaml:"address"` // default 127.0.0.1
	Port    int               `yaml:"port"`    // required
	Tags    []string          `yaml:"tags"`
	Meta    map[string]string `yaml:"meta"`
	// Protocol the app speaks: http1 (default), http2 (h2c) or grpc. The inbound listener
	// accepts HTTP/2 either way; this decides what the sidecar speaks to the app.
	Protocol string `yaml:"protocol"`
	// Register (default true) registers the app in Consul with a TCP check on address:port,
	// and this sidecar as its connect-proxy. false when the app is registered elsewhere (a
	// Nomad service block, for instance): then only the connect-proxy is registered, pointing
	// at the service ID above.
	Register *bool `yaml:"register"`
}

// SidecarInbound is the listener callers reach the app through.
type SidecarInbound struct {
	Address  string   `yaml:"address"`  // required; registered in Consul as the proxy's address
	Policies []string `yaml:"policies"` // named policies applied after intentions
	Timeout  Duration `yaml:"timeout"`  // default: the route default (15s)
	// TrustedPeers: Connect services whose X-Forwarded-* and budget this inbound believes
	// (listeners[].trusted_peers), typically the edge. Default: none.
	TrustedPeers []string `yaml:"trusted_peers"`
}

// SidecarUpstream is a service the app calls through the sidecar.
type SidecarUpstream struct {
	Service  string   `yaml:"service"`  // the Consul service name
	Bind     string   `yaml:"bind"`     // plaintext listener for the app, e.g. 127.0.0.1:10001
	Policies []string `yaml:"policies"` // named policies on this upstream's route
	Timeout  Duration `yaml:"timeout"`
	Retry    *Retry   `yaml:"retry"`
}

// Names the expansion gives the parts of a sidecar; they show up in /config, /routes,
// /clusters, metrics and access logs.
const (
	SidecarInboundName     = "inbound"
	sidecarUpstreamPrefix  = "upstream-"
	sidecarLocalPrefix     = "local-"
	defaultIntentionAction = "deny"
	// defaultMaxSnapshotAge: long enough to ride out a Consul outage of a night or a weekend
	// morning, short enough that a revoked intention is not honoured for days; Consul's
	// default leaf certificate lifetime (72h) bounds such an outage anyway.
	defaultMaxSnapshotAge = 24 * time.Hour
	defaultSidecarAddress = "127.0.0.1"
)

// SidecarUpstreamName is the listener and route name of one upstream.
func SidecarUpstreamName(service string) string { return sidecarUpstreamPrefix + service }

// SidecarLocalService is the static service name of the local app.
func SidecarLocalService(name string) string { return sidecarLocalPrefix + name }

// ConnectEnabled reports whether the sidecar runs in Connect mode.
func (s *Sidecar) ConnectEnabled() bool { return s.Connect == nil || *s.Connect }

// Registers reports whether the sidecar registers the app's service itself.
func (s *SidecarService) Registers() bool { return s.Register == nil || *s.Register }

// ProxyID is the connect-proxy's service ID: Consul's convention for sidecars.
func (s *SidecarService) ProxyID() string { return s.ID + "-sidecar-proxy" }

// ProxyName is the connect-proxy's service name.
func (s *SidecarService) ProxyName() string { return s.Name + "-sidecar-proxy" }

func sidecarDefaults(c *Config) {
	if id := c.Identity; id != nil {
		if id.IntentionsDefault == "" {
			id.IntentionsDefault = defaultIntentionAction
		}
		setDur(&id.MaxSnapshotAge, defaultMaxSnapshotAge)
	}
	sc := c.Sidecar
	if sc == nil {
		return
	}
	svc := &sc.Service
	if svc.Address == "" {
		svc.Address = defaultSidecarAddress
	}
	if svc.ID == "" && svc.Name != "" && svc.Port != 0 {
		svc.ID = RegistrationID(svc.Name, svc.Address, svc.Port)
	}
}

// sidecar validates the sidecar block and how it fits with the rest of the file.
func (v *validator) sidecar(c *Config) {
	v.identity(c)
	sc := c.Sidecar
	if sc == nil {
		return
	}
	p := path{"sidecar"}
	svc := sc.Service
	sp := p.key("service")
	switch {
	case svc.Name == "":
		v.add(sp.key("name"), "the local app's service name is required")
	case !validServiceName(svc.Name):
		v.add(sp.key("name"), "invalid service name %q: use letters, digits, '-', '_' and '.'", svc.Name)
	}
	if svc.Port < 1 || svc.Port > 65535 {
		v.add(sp.key("port"), "the local app's port is required (1..65535, got %d)", svc.Port)
	}
	switch svc.Protocol {
	case "", "http1", "http2", "grpc":
	default:
		v.add(sp.key("protocol"), "%q is not one of http1, http2, grpc", svc.Protocol)
	}
	if strings.ContainsAny(svc.Address, ":/ ") {
		v.add(sp.key("address"), "invalid address %q: a host name or IP without a port", svc.Address)
	}
	v.tagsMeta(sp, svc.Tags, svc.Meta)
	if strings.ContainsAny(svc.ID, "/?#% \t\n") {
		v.add(sp.key("id"), "invalid id %q: must not contain '/', '?', '#', '%%' or spaces", svc.ID)
	}
	if c.Discovery.Consul == nil {
		v.add(p, "a sidecar needs discovery.consul (registration, upstreams and certificates come from the agent)")
	} else if c.Discovery.Consul.Register != nil {
		v.add(path{"discovery", "consul", "register"}, "a sidecar registers sidecar.service (and itself as its connect-proxy); remove this block")
	}
	if id := c.Identity; id != nil {
		if id.Service != svc.Name {
			v.add(path{"identity", "service"}, "a sidecar's identity is its app's service %q (got %q); omit identity", svc.Name, id.Service)
		}
		if id.Connect != sc.ConnectEnabled() {
			v.add(path{"identity", "connect"}, "must match sidecar.connect; omit identity")
		}
	}

	if len(c.Listeners) == 0 && !c.expanded {
		for i, r := range c.Routes {
			if len(r.Listeners) == 0 {
				v.add(path{"routes"}.idx(i).key("listeners"), "in a sidecar file a route needs listeners of its own (the inbound and upstream routes are generated)")
			}
		}
	}
	names := map[string]bool{}
	for _, l := range c.Listeners {
		names[l.Name] = !c.expanded
	}
	ip := p.key("inbound")
	v.hostPort(ip.key("address"), sc.Inbound.Address, true)
	if names[SidecarInboundName] {
		v.add(path{"listeners"}, "listener name %q is taken by the sidecar's inbound listener", SidecarInboundName)
	}
	v.policyRefs(c, ip.key("policies"), sc.Inbound.Policies)
	v.nonNegDur(ip.key("timeout"), sc.Inbound.Timeout)
	if len(sc.Inbound.TrustedPeers) > 0 && !sc.ConnectEnabled() {
		v.add(ip.key("trusted_peers"), "peers are named by their Connect identity: needs connect (the default)")
	}
	if inStatic(c, SidecarLocalService(svc.Name)) && !c.expanded {
		v.add(path{"discovery", "static", SidecarLocalService(svc.Name)}, "this name is taken by the sidecar's local app")
	}

	seenSvc, seenBind := map[string]int{}, map[string]int{}
	for i, u := range sc.Upstreams {
		up := p.key("upstreams").idx(i)
		switch j, dup := seenSvc[u.Service]; {
		case u.Service == "":
			v.add(up.key("service"), "service name is required")
		case !validServiceName(u.Service):
			v.add(up.key("service"), "invalid service name %q: use letters, digits, '-', '_' and '.'", u.Service)
		case dup:
			v.add(up.key("service"), "duplicate upstream %q (also sidecar.upstreams[%d])", u.Service, j)
		default:
			seenSvc[u.Service] = i
			if names[SidecarUpstreamName(u.Service)] {
				v.add(path{"listeners"}, "listener name %q is taken by the sidecar's upstream", SidecarUpstreamName(u.Service))
			}
		}
		v.hostPort(up.key("bind"), u.Bind, true)
		if j, dup := seenBind[u.Bind]; dup && u.Bind != "" && !strings.HasSuffix(u.Bind, ":0") {
			v.add(up.key("bind"), "address %s is also sidecar.upstreams[%d].bind", u.Bind, j)
		} else {
			seenBind[u.Bind] = i
		}
		if u.Bind == sc.Inbound.Address && !strings.HasSuffix(u.Bind, ":0") {
			v.add(up.key("bind"), "address %s is also sidecar.inbound.address", u.Bind)
		}
		v.policyRefs(c, up.key("policies"), u.Policies)
		v.nonNegDur(up.key("timeout"), u.Timeout)
		if u.Retry != nil {
			v.retry(up.key("retry"), u.Retry)
		}
	}
}

// identity validates the identity block and listeners that depend on it.
func (v *validator) identity(c *Config) {
	id := c.Identity
	connect := id != nil && id.Connect
	if c.Sidecar != nil && id == nil {
		connect = c.Sidecar.ConnectEnabled()
	}
	v.connectTransport(c, connect) // consul.go
	for i, l := range c.Listeners {
		if l.Connect && !connect {
			v.add(path{"listeners"}.idx(i).key("connect"), "a connect listener needs identity: { service: NAME, connect: true }")
		}
	}
	if id == nil {
		return
	}
	p := path{"identity"}
	if c.Sidecar == nil {
		switch {
		case id.Service == "":
			v.add(p.key("service"), "the Connect service name this process presents is required")
		case !validServiceName(id.Service):
			v.add(p.key("service"), "invalid service name %q: use letters, digits, '-', '_' and '.'", id.Service)
		}
	}
	if id.Connect && c.Discovery.Consul == nil {
		v.add(p.key("connect"), "connect needs discovery.consul (certificates and intentions come from the agent)")
	}
	if !slices.Contains([]string{"deny", "allow"}, id.IntentionsDefault) {
		v.add(p.key("intentions_default"), "%q is not one of deny, allow", id.IntentionsDefault)
	}
	if cc := c.Discovery.Consul; cc != nil && id.MaxSnapshotAge > 0 && id.MaxSnapshotAge < 2*cc.Wait {
		// An idle blocking query answers once per wait: a shorter max age would deny callers
		// while Consul is perfectly healthy.
		v.add(p.key("max_snapshot_age"), "%s is less than twice discovery.consul.wait (%s); use a negative value to disable the limit", id.MaxSnapshotAge, cc.Wait)
	}
}

func (v *validator) policyRefs(c *Config, p path, names []string) {
	for j, name := range names {
		if _, ok := c.Policies[name]; !ok {
			v.add(p.idx(j), "no policy named %q", name)
		}
	}
}

// Expanded returns the config the engine runs. For a sidecar it is a copy with the sidecar
// turned into ordinary parts: an identity for sidecar.service (unless set), the inbound
// listener (connect: true in Connect mode) and route to the local app (a static service named
// local-<name>), and one listener and route per upstream. Without a sidecar it is c itself.
// c must be valid; the result is then valid too (a test checks this).
func (c *Config) Expanded() *Config {
	sc := c.Sidecar
	if sc == nil {
		return c
	}
	out := c.clone()
	out.expanded = true
	svc := sc.Service
	if out.Identity == nil {
		out.Identity = &Identity{Service: svc.Name, Connect: sc.ConnectEnabled(), IntentionsDefault: defaultIntentionAction,
			MaxSnapshotAge: Duration(defaultMaxSnapshotAge)}
	}
	// A user route without listeners: means "every listener"; in a sidecar file that is the
	// user's own listeners, never the inbound or upstream ones the sidecar owns.
	var own []string
	for _, l := range c.Listeners {
		own = append(own, l.Name)
	}
	for i := range out.Routes {
		if len(out.Routes[i].Listeners) == 0 {
			out.Routes[i].Listeners = slices.Clone(own)
		}
	}
	local := SidecarLocalService(svc.Name)
	if out.Discovery.Static == nil {
		out.Discovery.Static = map[string][]string{}
	}
	out.Discovery.Static[local] = []string{net.JoinHostPort(svc.Address, strconv.Itoa(svc.Port))}
	if svc.Protocol != "" {
		if out.Services == nil {
			out.Services = map[string]Service{}
		}
		ls := out.Services[local]
		ls.Protocol = svc.Protocol
		out.Services[local] = ls
	}
	out.Listeners = append(out.Listeners, Listener{Name: SidecarInboundName, Address: sc.Inbound.Address, Connect: sc.ConnectEnabled(),
		TrustedPeers: slices.Clone(sc.Inbound.TrustedPeers)})
	out.Routes = append(out.Routes, Route{
		Name:      SidecarInboundName,
		Listeners: []string{SidecarInboundName},
		Match:     Match{PathPrefix: "/"},
		To:        []Target{{Service: local}},
		Policies:  slices.Clone(sc.Inbound.Policies),
		Timeout:   sc.Inbound.Timeout,
	})
	for _, u := range sc.Upstreams {
		name := SidecarUpstreamName(u.Service)
		l := Listener{Name: name, Address: u.Bind}
		if host, _, err := net.SplitHostPort(u.Bind); err == nil {
			if a, err := netip.ParseAddr(host); err == nil && a.IsLoopback() {
				// Only the local app can reach a loopback bind, and the sidecar speaks for it:
				// its request id (and budget) are the ones to pass on, so a chain of calls
				// keeps one id (docs/security.md).
				l.TrustedProxies = []string{"127.0.0.0/8", "::1"}
			}
		}
		out.Listeners = append(out.Listeners, l)
		out.Routes = append(out.Routes, Route{
			Name:      name,
			Listeners: []string{name},
			Match:     Match{PathPrefix: "/"},
			To:        []Target{{Service: u.Service}},
			Policies:  slices.Clone(u.Policies),
			Timeout:   u.Timeout,
			Retry:     u.Retry.clone(),
		})
	}
	out.Defaults()
	return out
}
