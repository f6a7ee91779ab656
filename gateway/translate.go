package gateway

import (
	"fmt"
	"maps"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/meshgate/meshgate/conf"
	"github.com/meshgate/meshgate/discovery"
	"github.com/meshgate/meshgate/discovery/consul"
	"github.com/meshgate/meshgate/discovery/static"
	"github.com/meshgate/meshgate/gateway/accesslog/ship"
	"github.com/meshgate/meshgate/gateway/accesslog/spool"
	"github.com/meshgate/meshgate/gateway/auth/apikey"
	"github.com/meshgate/meshgate/gateway/auth/hmac"
	"github.com/meshgate/meshgate/gateway/auth/jwt"
	"github.com/meshgate/meshgate/gateway/cors"
	"github.com/meshgate/meshgate/gateway/fault"
	"github.com/meshgate/meshgate/gateway/headers"
	"github.com/meshgate/meshgate/gateway/ipfilter"
	"github.com/meshgate/meshgate/gateway/listener"
	"github.com/meshgate/meshgate/gateway/proxy"
	"github.com/meshgate/meshgate/gateway/ratelimit"
	"github.com/meshgate/meshgate/gateway/route"
	"github.com/meshgate/meshgate/mesh/identity"
	"github.com/meshgate/meshgate/mesh/intentions"
	"github.com/meshgate/meshgate/mesh/lb"
	"github.com/meshgate/meshgate/mesh/tracing"
	"github.com/meshgate/meshgate/mesh/upstream"
)

// translate.go is the one place where the config becomes the engine packages' Options. Every
// function here is pure: no I/O, no process state, the same config gives the same Options
// (testdata/translate/*.golden records what each example becomes; `go test -run TestTranslate
// -update` rewrites them, so a change to translation shows as a diff). What needs files,
// sockets or live objects (certificates, metrics, the mesh's TLS configs, handlers) is added
// by the assembly in server code on top of these values.

// listenerOptions is the part of a listener's options its config decides; the assembly adds
// the handler, TLS, logger and metrics.
func listenerOptions(lc conf.Listener) listener.Options {
	return listener.Options{
		Name:              lc.Name,
		Address:           lc.Address,
		ReadHeaderTimeout: lc.ReadHeaderTimeout.D(),
		ReadTimeout:       lc.ReadTimeout.D(),
		WriteTimeout:      lc.WriteTimeout.D(),
		IdleTimeout:       lc.IdleTimeout.D(),
		MaxHeaderBytes:    int(lc.MaxHeaderBytes),
		StreamThreshold:   int(lc.StreamThreshold),
		MaxConnections:    lc.MaxConnections,
		// -1 (no cap) becomes 0 here; trusted proxies carry many clients on one address.
		MaxConnectionsPerIP: max(lc.MaxConnectionsPerIP, 0),
		PerIPExempt:         parsePrefixes(lc.TrustedProxies),
		ErrorHandler:        proxy.ParseErrorHandler,
		// HTTP2Handler (whether the listener speaks HTTP/2, lc.HTTP2Enabled) is the assembly's.
		MaxConcurrentStreams: uint32(max(lc.MaxConcurrentStreams, 0)),
	}
}

// redirectOptions is the plain-HTTP listener of tls.redirect_from (it answers 308 to https).
func redirectOptions(lc conf.Listener) listener.Options {
	return listener.Options{
		Name: lc.Name + "-redirect", Address: lc.TLS.RedirectFrom,
		ReadHeaderTimeout: lc.ReadHeaderTimeout.D(), ReadTimeout: lc.ReadTimeout.D(), WriteTimeout: lc.WriteTimeout.D(),
		IdleTimeout: lc.IdleTimeout.D(), MaxHeaderBytes: int(lc.MaxHeaderBytes), MaxConnections: lc.MaxConnections,
	}
}

// handlerOptions is the part of a listener's request engine its config decides; the assembly
// adds the access log, metrics and a connect listener's intentions check.
func handlerOptions(lc conf.Listener) proxy.Options {
	return proxy.Options{
		Listener: lc.Name,
		TLS:      lc.Connect || lc.TLS != nil,
		// A connect listener's callers proved a Consul-issued identity; only the peers named in
		// trusted_peers (the edge, typically) may speak for a client behind them.
		Connect:         lc.Connect,
		TrustedPeers:    lc.TrustedPeers,
		TrustedProxies:  parsePrefixes(lc.TrustedProxies),
		Linger:          listener.Linger,
		IdentityHeader:  strings.TrimPrefix(lc.IdentityHeader, "-"),
		MaxBodyBytes:    int64(lc.MaxBodyBytes),
		StreamThreshold: int64(lc.StreamThreshold),
		// Upgraded sessions stay the listener's: counted, and closed by its drain.
		Upgraded:             listener.Upgraded,
		WebSocketIdleTimeout: lc.WebSocketIdleTimeout.D(),
	}
}

// routeWebSocket says whether a route forwards WebSocket handshakes (routes[].websocket,
// default true; Defaults sets it, a hand-built config may not).
func routeWebSocket(r conf.Route) bool { return r.WebSocket == nil || *r.WebSocket }

// listenerRoutes gives each listener the specs of its routes (a route without listeners is on
// every listener), in config order.
func listenerRoutes(cfg *conf.Config, specs []route.Spec) map[string][]route.Spec {
	out := make(map[string][]route.Spec, len(cfg.Listeners))
	for _, lc := range cfg.Listeners {
		var ls []route.Spec
		for i, r := range cfg.Routes {
			if len(r.Listeners) == 0 || slices.Contains(r.Listeners, lc.Name) {
				ls = append(ls, specs[i])
			}
		}
		out[lc.Name] = ls
	}
	return out
}

// clientOptions is the agent connection of discovery.consul: the one client the process shares
// between discovery, KV, registration, Connect certificates and intentions.
func clientOptions(cc *conf.Consul) consul.ClientOptions {
	o := consul.ClientOptions{
		Address:    cc.Address,
		Scheme:     cc.Scheme,
		Datacenter: cc.Datacenter,
		Token:      cc.Token,
		TokenFile:  cc.TokenFile,
	}
	if t := cc.TLS; t != nil {
		o.TLS = consul.TLSOptions{CAFile: t.CAFile, CertFile: t.CertFile, KeyFile: t.KeyFile,
			ServerName: t.ServerName, InsecureSkipVerify: t.InsecureSkipVerify}
	}
	return o
}

// consulOptions is the discovery source of discovery.consul; the assembly adds the client, the
// logger, the metrics registry and the snapshot store.
func consulOptions(cc *conf.Consul) consul.Options {
	return consul.Options{Wait: cc.Wait.D(), Subsets: consulSubsets(cc)}
}

func consulSubsets(cc *conf.Consul) map[string]consul.Subset {
	out := make(map[string]consul.Subset, len(cc.Services))
	for name, s := range cc.Services {
		out[name] = consul.Subset{Name: s.Name, Tags: s.Tags, Meta: s.Meta}
	}
	return out
}

func referencedServices(cfg *conf.Config) []string {
	var out []string
	for _, r := range cfg.Routes {
		for _, t := range r.To {
			if !slices.Contains(out, t.Service) {
				out = append(out, t.Service)
			}
		}
	}
	return out
}

func staticSource(cfg *conf.Config) (discovery.Source, error) {
	svcs := make(map[string][]discovery.Endpoint, len(cfg.Discovery.Static))
	for name, entries := range cfg.Discovery.Static {
		for _, ent := range entries {
			addr, w, err := conf.ParseStatic(ent)
			if err != nil {
				return nil, fmt.Errorf("discovery.static.%s: %w", name, err)
			}
			svcs[name] = append(svcs[name], discovery.Endpoint{Address: addr, Weight: w})
		}
	}
	return static.New(static.Options{Services: svcs})
}

func clusterOptions(name string, sc conf.Service) (upstream.Options, error) {
	pol, err := lb.New(lb.Options{Policy: sc.LoadBalancer.Policy})
	if err != nil {
		return upstream.Options{}, fmt.Errorf("services.%s: %w", name, err)
	}
	o := upstream.Options{
		Name:             name,
		Policy:           pol,
		ConnectTimeout:   sc.ConnectTimeout.D(),
		IdleTimeout:      sc.IdleTimeout.D(),
		MaxConnsPerHost:  sc.MaxConnsPerHost,
		MaxResponseBytes: int64(sc.MaxResponseBytes),
		Retry:            upstream.DefaultRetry(),
		Outlier: upstream.OutlierOptions{
			Disabled:           sc.OutlierDetection.Disabled,
			ConsecutiveErrors:  sc.OutlierDetection.ConsecutiveErrors,
			BaseEjectionTime:   sc.OutlierDetection.BaseEjectionTime.D(),
			MaxEjectionTime:    sc.OutlierDetection.MaxEjectionTime.D(),
			MaxEjectionPercent: sc.OutlierDetection.MaxEjectionPercent,
			PanicThreshold:     sc.OutlierDetection.PanicThreshold,
		},
		Breaker: upstream.BreakerOptions{
			Disabled:         sc.CircuitBreaker.Disabled,
			MinRequests:      sc.CircuitBreaker.MinRequests,
			FailureRatio:     sc.CircuitBreaker.FailureRatio,
			Interval:         sc.CircuitBreaker.Interval.D(),
			OpenTimeout:      sc.CircuitBreaker.OpenTimeout.D(),
			HalfOpenRequests: sc.CircuitBreaker.HalfOpenRequests,
		},
		RetryBudget: upstream.RetryBudgetOptions{
			Ratio:               sc.RetryBudget.Ratio,
			MinRetriesPerSecond: sc.RetryBudget.MinRetriesPerSecond,
			BackoffBase:         sc.RetryBudget.BackoffBase.D(),
			BackoffMax:          sc.RetryBudget.BackoffMax.D(),
		},
		MaxInFlight: sc.MaxInFlight,
	}
	if o.Protocol, err = upstream.ParseProtocol(sc.Protocol); err != nil {
		return upstream.Options{}, fmt.Errorf("services.%s: %w", name, err)
	}
	o.ProtocolFromRegistry = sc.Protocol == ""
	if sc.Retry != nil {
		if o.Retry, err = retryPolicy(sc.Retry); err != nil {
			return upstream.Options{}, fmt.Errorf("services.%s: %w", name, err)
		}
	}
	return o, nil
}

func retryPolicy(r *conf.Retry) (upstream.RetryPolicy, error) {
	p := upstream.RetryPolicy{Attempts: r.Attempts, PerTryTimeout: r.PerTryTimeout.D()}
	for _, on := range r.On {
		switch on {
		case "connect-failure":
			p.On |= upstream.RetryConnectFailure
		case "reset":
			p.On |= upstream.RetryReset
		case "timeout":
			p.On |= upstream.RetryTimeout
		case "5xx":
			p.On |= upstream.Retry5xx
		case "gateway-error":
			p.On |= upstream.RetryGatewayError
		default:
			if g, ok := conf.GRPCRetryCode(on); ok {
				p.GRPC |= 1 << g
				continue
			}
			code, err := strconv.Atoi(on)
			if err != nil {
				return p, fmt.Errorf("retry.on: unknown condition %q", on)
			}
			p.Statuses = append(p.Statuses, code)
		}
	}
	return p, nil
}

func hashOn(sc conf.Service) proxy.HashOn {
	h := sc.LoadBalancer.Hash
	if h == nil || sc.LoadBalancer.Policy != lb.RingHashName {
		return proxy.HashOn{}
	}
	return proxy.HashOn{Header: h.Header, Cookie: h.Cookie, SourceIP: h.SourceIP}
}

func routeSpec(key int, r conf.Route) route.Spec {
	s := route.Spec{
		Name:          r.Name,
		Key:           key,
		Priority:      r.Priority,
		Hosts:         lower(r.Match.Hosts),
		Path:          r.Match.Path,
		PathPrefix:    r.Match.PathPrefix,
		PathRegex:     r.Match.PathRegex,
		Methods:       r.Match.Methods,
		RewritePrefix: r.Rewrite.PathPrefix,
		Timeout:       r.Timeout.D(),
	}
	for _, h := range r.Match.Headers {
		s.Headers = append(s.Headers, route.ValueMatch{Name: h.Name, Exact: h.Exact, Regex: h.Regex, Present: h.Present})
	}
	for _, q := range r.Match.Query {
		s.Query = append(s.Query, route.ValueMatch{Name: q.Name, Exact: q.Exact, Regex: q.Regex, Present: q.Present})
	}
	for _, t := range r.To {
		s.Targets = append(s.Targets, route.Target{Service: t.Service, Weight: t.Weight})
	}
	return s
}

func lower(in []string) []string {
	out := make([]string, len(in))
	for i, s := range in {
		out[i] = strings.ToLower(s)
	}
	return out
}

// connectService reports whether a routed service is reached through Consul Connect, and its
// Consul name: identity.connect is on and the service is not pinned in discovery.static.
func connectService(cfg *conf.Config, name string) (string, bool) {
	if cfg.Identity == nil || !cfg.Identity.Connect || cfg.Discovery.Consul == nil {
		return "", false
	}
	if _, static := cfg.Discovery.Static[name]; static {
		return "", false
	}
	if s, ok := cfg.Discovery.Consul.Services[name]; ok && s.Name != "" {
		return s.Name, true
	}
	return name, true
}

// parsePrefixes turns validated CIDRs or bare IPs into prefixes.
func parsePrefixes(in []string) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(in))
	for _, s := range in {
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
		} else if a, err := netip.ParseAddr(s); err == nil {
			out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
		}
	}
	return out
}

// Policies. Each kind's block becomes its filter package's Options here; policies.go adds what
// is not the config's (metrics, the JWKS key sets and replay caches it keeps across reloads)
// and what the files named in the config hold (loadPolicyFiles, passed in).

func rateLimitPolicy(name string, rl *conf.RateLimit) ratelimit.Policy {
	return ratelimit.Policy{Name: name, Requests: rl.Requests, Per: rl.Per.D(), Burst: rl.Burst,
		Key: rl.Key, Cluster: rl.Cluster, OnRedisError: rl.OnRedisError, IPv6Prefix: rl.IPv6Prefix}
}

func faultOptions(name string, f *conf.Fault) fault.Options {
	o := fault.Options{Name: name, Header: f.Header}
	if f.Delay != nil {
		o.Delay, o.DelayPercent = f.Delay.Duration.D(), f.Delay.Percent
	}
	if f.Abort != nil {
		o.AbortStatus, o.AbortPercent = f.Abort.Status, f.Abort.Percent
	}
	return o
}

func ipOptions(name string, ip *conf.IPPolicy) ipfilter.Options {
	return ipfilter.Options{Name: name, Allow: parsePrefixes(ip.Allow), Deny: parsePrefixes(ip.Deny)}
}

func corsOptions(name string, c *conf.CORSPolicy) cors.Options {
	return cors.Options{Name: name, AllowOrigins: c.Origins, AllowMethods: c.Methods, AllowHeaders: c.Headers,
		ExposeHeaders: c.Expose, AllowCredentials: c.Credentials, MaxAge: c.MaxAge.D()}
}

func headersOptions(name string, h *conf.HeadersPolicy) headers.Options {
	return headers.Options{Name: name, Request: headerOps(h.Request), Response: headerOps(h.Response),
		Path: headers.PathRewrite{Regex: h.RewritePathRegex, Replacement: h.RewritePathReplacement}}
}

// headerOps turns a YAML map into ordered header edits (sorted by name, so a config always
// applies the same way).
func headerOps(o conf.HeaderOps) headers.Transform {
	t := headers.Transform{Remove: o.Remove}
	for _, k := range slices.Sorted(maps.Keys(o.Set)) {
		t.Set = append(t.Set, headers.Header{Name: k, Value: o.Set[k]})
	}
	for _, k := range slices.Sorted(maps.Keys(o.Add)) {
		t.Add = append(t.Add, headers.Header{Name: k, Value: o.Add[k]})
	}
	return t
}

func apiKeyOptions(name string, k *conf.APIKeyPolicy) apikey.Options {
	return apikey.Options{Name: name, File: k.File, Header: k.Header, Query: k.Query, KeepCredential: k.KeepHeader}
}

// jwtOptions is a jwt policy without its key set (policies.go shares those across reloads).
func jwtOptions(name string, j *conf.JWTPolicy, files policyFiles) jwt.Options {
	o := jwt.Options{Name: name, Algorithms: j.Algorithms, Issuer: j.Issuer, Audiences: j.Audiences,
		Leeway: j.Leeway.D(), IdentityClaim: j.IdentityClaim, TokenHeader: j.Header, TokenCookie: j.Cookie,
		StripToken: j.Strips(), CacheTTL: j.CacheTTL.D(), Secret: files.secret}
	for _, pem := range files.publicKeys {
		o.PublicKeys = append(o.PublicKeys, jwt.PublicKey{PEM: pem})
	}
	for _, c := range slices.Sorted(maps.Keys(j.RequiredClaims)) {
		rc := jwt.RequiredClaim{Name: c}
		if v := j.RequiredClaims[c]; v != "" {
			rc.Values = []string{v}
		}
		o.Claims = append(o.Claims, rc)
	}
	for _, c := range slices.Sorted(maps.Keys(j.ForwardClaims)) {
		o.Forward = append(o.Forward, jwt.ForwardClaim{Claim: c, Header: j.ForwardClaims[c]})
	}
	return o
}

// hmacOptions is an hmac policy without its replay cache and store (kept across reloads).
func hmacOptions(name string, h *conf.HMACPolicy, files policyFiles) (hmac.Options, error) {
	if files.secrets == nil {
		return hmac.Options{}, fmt.Errorf("hmac: %s holds no secrets", h.SecretsFile)
	}
	return hmac.Options{Name: name, Secrets: files.secrets, SignedHeaders: h.Headers, Skew: h.Window.D()}, nil
}

// parseSecrets reads "keyid:secret" lines (blank lines and # comments ignored); path names the
// file in errors.
func parseSecrets(path string, data []byte) (map[string][]byte, error) {
	out := map[string][]byte{}
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		id, secret, ok := strings.Cut(line, ":")
		if !ok || id == "" || secret == "" {
			return nil, fmt.Errorf("%s:%d: want keyid:secret", path, i+1)
		}
		out[id] = []byte(secret)
	}
	return out, nil
}

// Registration. What an edge or a sidecar registers in Consul, for the addresses its listeners
// and admin API are bound at (port 0 in a config registers the real port); the assembly adds
// the client, the logger and the readiness gate.

// edgeRegistrarOptions is an edge's self-registration (discovery.consul.register); port is the
// first listener's bound port, used when the config names none.
func edgeRegistrarOptions(rc conf.Registration, port int, checkURL string) consul.RegistrarOptions {
	in := consul.Instance{Name: rc.Name, ID: rc.ID, Address: rc.Address, Port: rc.Port, Tags: rc.Tags, Meta: rc.Meta}
	if in.Port == 0 {
		in.Port = port
	}
	if in.ID == "" {
		in.ID = conf.RegistrationID(in.Name, in.Address, in.Port)
	}
	return consul.RegistrarOptions{Service: in, Check: rc.Check, CheckURL: checkURL,
		CheckInterval: rc.CheckInterval.D(), DeregisterAfter: rc.DeregisterAfter.D()}
}

// sidecarRegistrations is what a sidecar registers, the instance callers find first (drain
// waits for that one to leave the passing set):
//
//	Connect mode:   <app>-sidecar-proxy  kind connect-proxy at the inbound listener, HTTP check
//	                on our /ready plus an alias check on the app (callers find it through
//	                /v1/health/connect/<app>; its Proxy block names the app and the upstreams)
//	                <app>                the app itself at its own address, TCP check
//	                                     (unless sidecar.service.register is false)
//	plaintext mode: <app>                at the inbound listener, HTTP check on our /ready, so
//	                                     plain discovery sends callers through the sidecar
//
// bound maps listener names to their bound addresses.
func sidecarRegistrations(sc *conf.Sidecar, bound map[string]net.Addr, checkURL string) []consul.RegistrarOptions {
	svc := sc.Service
	inHost, inPort := registeredAddr(sc.Inbound.Address, bound[conf.SidecarInboundName])
	if !sc.ConnectEnabled() {
		if !svc.Registers() {
			return nil
		}
		return []consul.RegistrarOptions{{
			Service: consul.Instance{Name: svc.Name, ID: svc.ID, Address: inHost, Port: inPort, Tags: svc.Tags, Meta: svc.Meta},
			Check:   consul.CheckHTTP, CheckURL: checkURL,
		}}
	}
	proxy := &consul.ProxyConfig{
		DestinationServiceName: svc.Name,
		DestinationServiceID:   svc.ID,
		LocalServiceAddress:    svc.Address,
		LocalServicePort:       svc.Port,
	}
	for _, u := range sc.Upstreams {
		host, port := registeredAddr(u.Bind, bound[conf.SidecarUpstreamName(u.Service)])
		if host == "" {
			host = "127.0.0.1"
		}
		proxy.Upstreams = append(proxy.Upstreams, consul.ProxyUpstream{DestinationName: u.Service, LocalBindAddress: host, LocalBindPort: port})
	}
	out := []consul.RegistrarOptions{{
		// The proxy carries the app's tags and meta so a caller's Connect subset (tags, meta)
		// selects the same instances through their proxies.
		Service: consul.Instance{Name: svc.ProxyName(), ID: svc.ProxyID(), Address: inHost, Port: inPort,
			Tags: svc.Tags, Meta: svc.Meta, Proxy: proxy},
		Check: consul.CheckHTTP, CheckURL: checkURL, AliasServiceID: svc.ID,
	}}
	if svc.Registers() {
		out = append(out, consul.RegistrarOptions{
			Service: consul.Instance{Name: svc.Name, ID: svc.ID, Address: svc.Address, Port: svc.Port, Tags: svc.Tags, Meta: svc.Meta},
			Check:   consul.CheckTCP,
		})
	}
	return out
}

// Identity. The Connect identity and, with connect listeners, the intentions it enforces; the
// assembly adds the Consul-backed provider and source, the snapshot store and the logger.

func identityOptions(ic *conf.Identity) identity.Options {
	return identity.Options{Service: ic.Service}
}

func intentionsOptions(ic *conf.Identity) intentions.Options {
	return intentions.Options{Destination: ic.Service, DefaultAllow: ic.IntentionsDefault == "allow",
		MaxAge: max(ic.MaxSnapshotAge.D(), 0)} // negative: no limit
}

// Tracing. The tracer's settings; the assembly adds the metrics registry and the logger.

// tracingOptions is tracing's part of the config (cfg.Tracing set). The service name falls back
// to the Connect identity, so an edge and its sidecars' spans are named by the services Consul
// knows them as.
func tracingOptions(cfg *conf.Config) tracing.Options {
	tc := cfg.Tracing
	o := tracing.Options{Endpoint: tc.Endpoint, ServiceName: tc.ServiceName, SampleRatio: tracing.DefaultSampleRatio,
		SampleErrors: tc.SampleErrors, QueueSize: tc.QueueSize, BatchSize: tc.BatchSize,
		BatchInterval: tc.BatchInterval.D(), ExportTimeout: tc.ExportTimeout.D()}
	if tc.SampleRatio != nil {
		o.SampleRatio = *tc.SampleRatio
	}
	for _, p := range tc.Propagation {
		if f, ok := tracing.ParseFormat(p); ok { // validated: every name parses
			o.Propagation = append(o.Propagation, f)
		}
	}
	if o.ServiceName == "" {
		o.ServiceName = "meshgate"
		if cfg.Identity != nil && cfg.Identity.Service != "" {
			o.ServiceName = cfg.Identity.Service
		}
	}
	return o
}

// logSink is what one access_log.sinks entry becomes; the assembly dials the publisher of its
// Kind and adds the metrics (and, for otlp, the host name: the process's, not the config's).
// Each sink spools in its own subdirectory of spool.dir, named after it, so two sinks never
// share a checkpoint.
type logSink struct {
	Kind string
	NATS ship.NATSOptions
	OTLP ship.OTLPOptions
	Ship ship.Options
}

func logSinkOptions(cfg *conf.Config) []logSink {
	a := cfg.AccessLog
	out := make([]logSink, 0, len(a.Sinks))
	for _, s := range a.Sinks {
		ls := logSink{
			Kind: s.Kind,
			Ship: ship.Options{
				Name:      s.Name,
				Spool:     spool.Options{Dir: filepath.Join(a.Spool.Dir, s.Name), MaxBytes: int64(a.Spool.MaxBytes), MaxAge: a.Spool.MaxAge.D()},
				QueueSize: s.QueueSize, BatchSize: s.BatchSize, FlushInterval: s.FlushInterval.D(), AckTimeout: s.AckTimeout.D(),
			},
		}
		switch s.Kind {
		case conf.SinkOTLP:
			// The records' service.name is the spans' (tracing.service_name, identity.service,
			// "meshgate"), so a backend puts the gateway's logs and traces under one service.
			ls.OTLP = ship.OTLPOptions{Endpoint: s.Endpoint, Headers: maps.Clone(s.Headers), ServiceName: logServiceName(cfg)}
		default:
			ls.NATS = ship.NATSOptions{URL: s.URL, Subject: s.Subject, Stream: s.Stream, AckTimeout: s.AckTimeout.D()}
		}
		out = append(out, ls)
	}
	return out
}

// logServiceName is the service name tracing uses (tracingOptions), without needing tracing on.
func logServiceName(cfg *conf.Config) string {
	switch {
	case cfg.Tracing != nil && cfg.Tracing.ServiceName != "":
		return cfg.Tracing.ServiceName
	case cfg.Identity != nil && cfg.Identity.Service != "":
		return cfg.Identity.Service
	}
	return "meshgate"
}
