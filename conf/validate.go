package conf

import (
	"fmt"
	"maps"
	"net"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Validate checks a config that has been through Defaults and returns Errors (with paths but
// without file or line) or nil. Parse does the same and adds lines.
func (c *Config) Validate() error {
	ps := validate(c)
	if len(ps) == 0 {
		return nil
	}
	es := make(Errors, len(ps))
	for i, p := range ps {
		es[i] = Error{Path: p.path.String(), Msg: p.msg}
	}
	return es
}

// validate collects every semantic problem; it never stops at the first.
func validate(c *Config) []problem {
	v := &validator{}
	v.admin(c) // admin.go
	v.listeners(c)
	v.routes(c)
	v.services(c)
	v.static(c)
	v.consul(c)
	v.kvPrefix(c) // fragment.go
	v.policies(c)
	v.plugins(c)   // plugins.go
	v.sidecar(c)   // sidecar.go, identity included
	v.tracing(c)   // tracing.go
	v.accessLog(c) // accesslog.go
	if !slices.Contains([]string{"debug", "info", "warn", "error"}, c.Log.Level) {
		v.add(path{"log", "level"}, "%q is not one of debug, info, warn, error", c.Log.Level)
	}
	if !slices.Contains([]string{"json", "console"}, c.Log.Format) {
		v.add(path{"log", "format"}, "%q is not one of json, console", c.Log.Format)
	}
	v.nonNegDur(path{"shutdown", "drain_timeout"}, c.Shutdown.DrainTimeout)
	v.nonNegDur(path{"shutdown", "ready_delay"}, c.Shutdown.ReadyDelay)
	return v.out
}

type validator struct{ out []problem }

func (v *validator) add(p path, format string, args ...any) {
	v.out = append(v.out, problemf(p, format, args...))
}

func (v *validator) nonNegDur(p path, d Duration) {
	if d < 0 {
		v.add(p, "must not be negative (got %s)", d)
	}
}

func (v *validator) nonNeg(p path, n int64) {
	if n < 0 {
		v.add(p, "must not be negative (got %d)", n)
	}
}

// hostPort checks a listen address. An empty host means all interfaces; port 0 (ephemeral) is
// allowed when listening, which tests rely on.
func (v *validator) hostPort(p path, addr string, listen bool) {
	if err := checkHostPort(addr, listen); err != nil {
		v.add(p, "%v", err)
	}
}

func checkHostPort(addr string, allowZero bool) error {
	if addr == "" {
		return fmt.Errorf("address is required (host:port)")
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("invalid address %q: want host:port", addr)
	}
	if strings.ContainsAny(host, " \t/") {
		return fmt.Errorf("invalid address %q: bad host %q", addr, host)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 0 || n > 65535 || (n == 0 && !allowZero) {
		lo := 0
		if !allowZero {
			lo = 1
		}
		return fmt.Errorf("invalid address %q: port must be a number %d..65535", addr, lo)
	}
	return nil
}

func (v *validator) listeners(c *Config) {
	if len(c.Listeners) == 0 && c.Sidecar == nil {
		v.add(path{"listeners"}, "at least one listener is required")
	}
	seen := map[string]int{}
	for i, l := range c.Listeners {
		p := path{"listeners"}.idx(i)
		if j, dup := seen[l.Name]; dup {
			v.add(p.key("name"), "duplicate listener name %q (also listeners[%d])", l.Name, j)
		} else {
			seen[l.Name] = i
		}
		v.hostPort(p.key("address"), l.Address, true)
		v.nonNegDur(p.key("read_header_timeout"), l.ReadHeaderTimeout)
		v.nonNegDur(p.key("read_timeout"), l.ReadTimeout)
		v.nonNegDur(p.key("write_timeout"), l.WriteTimeout)
		v.nonNegDur(p.key("idle_timeout"), l.IdleTimeout)
		v.nonNegDur(p.key("websocket_idle_timeout"), l.WebSocketIdleTimeout)
		v.nonNeg(p.key("max_header_bytes"), int64(l.MaxHeaderBytes))
		v.nonNeg(p.key("max_body_bytes"), int64(l.MaxBodyBytes))
		v.nonNeg(p.key("max_connections"), int64(l.MaxConnections))
		v.nonNeg(p.key("stream_threshold"), int64(l.StreamThreshold))
		if l.MaxConcurrentStreams < 0 || l.MaxConcurrentStreams > 1<<20 {
			v.add(p.key("max_concurrent_streams"), "must be 1..1048576 (got %d)", l.MaxConcurrentStreams)
		}
		if t := l.TLS; t != nil {
			if l.Connect {
				v.add(p.key("tls"), "a connect listener uses the Connect identity; remove tls or connect")
			}
			if len(t.Certificates) == 0 {
				v.add(p.key("tls").key("certificates"), "at least one {cert_file, key_file} is required")
			}
			for j, c := range t.Certificates {
				if c.CertFile == "" || c.KeyFile == "" {
					v.add(p.key("tls").key("certificates").idx(j), "cert_file and key_file are required")
				}
			}
			if t.RedirectFrom != "" {
				v.hostPort(p.key("tls").key("redirect_from"), t.RedirectFrom, true)
			}
		}
		if l.IdentityHeader != "-" && !isToken(l.IdentityHeader) {
			v.add(p.key("identity_header"), "invalid header name %q (or \"-\" to send none)", l.IdentityHeader)
		}
		for j, tp := range l.TrustedProxies {
			if _, err := netip.ParsePrefix(tp); err == nil {
				continue
			}
			if _, err := netip.ParseAddr(tp); err == nil {
				continue
			}
			v.add(p.key("trusted_proxies").idx(j), "%q is not a CIDR (10.0.0.0/8) or an IP address", tp)
		}
		for j, tp := range l.TrustedProxies {
			if pf, err := netip.ParsePrefix(tp); err == nil && pf.Bits() == 0 {
				// Trusting every address lets any client choose the address policies see.
				v.add(p.key("trusted_proxies").idx(j), "%q trusts every address; list the proxies' own ranges", tp)
			}
		}
		if l.Connect && len(l.TrustedProxies) > 0 {
			v.add(p.key("trusted_proxies"), "a connect listener's callers are named by identity: use trusted_peers")
		}
		if !l.Connect && len(l.TrustedPeers) > 0 {
			v.add(p.key("trusted_peers"), "only a connect listener has mesh peers (connect: true)")
		}
		for j, tp := range l.TrustedPeers {
			if tp == "" || strings.ContainsAny(tp, "*/ ") {
				v.add(p.key("trusted_peers").idx(j), "%q: want a Consul service name", tp)
			}
		}
		if l.MaxConnectionsPerIP < -1 {
			v.add(p.key("max_connections_per_ip"), "want a positive number, or -1 for no cap")
		}
	}
}

func (v *validator) routes(c *Config) {
	listeners := map[string]bool{}
	for _, l := range c.Listeners {
		listeners[l.Name] = true
	}
	seen := map[string]int{}
	for i, r := range c.Routes {
		p := path{"routes"}.idx(i)
		switch j, dup := seen[r.Name]; {
		case r.Name == "":
			v.add(p.key("name"), "route name is required")
		case dup:
			v.add(p.key("name"), "duplicate route name %q (also routes[%d])", r.Name, j)
		default:
			seen[r.Name] = i
		}
		v.match(p.key("match"), r.Match)
		v.targets(c, p.key("to"), r.To)
		for j, ln := range r.Listeners {
			if !listeners[ln] {
				v.add(p.key("listeners").idx(j), "no listener named %q", ln)
			}
		}
		if r.Rewrite.PathPrefix != "" {
			if r.Match.PathPrefix == "" {
				v.add(p.key("rewrite").key("path_prefix"), "requires match.path_prefix (it replaces the matched prefix)")
			}
			if !strings.HasPrefix(r.Rewrite.PathPrefix, "/") {
				v.add(p.key("rewrite").key("path_prefix"), "must start with \"/\"")
			}
		}
		v.nonNegDur(p.key("timeout"), r.Timeout)
		if r.Retry != nil {
			v.retry(p.key("retry"), r.Retry)
		}
	}
}

func (v *validator) match(p path, m Match) {
	n := 0
	for _, s := range []string{m.Path, m.PathPrefix, m.PathRegex} {
		if s != "" {
			n++
		}
	}
	if n > 1 {
		v.add(p, "at most one of path, path_prefix, path_regex may be set")
	}
	for _, kv := range []struct{ key, val string }{{"path", m.Path}, {"path_prefix", m.PathPrefix}} {
		if kv.val != "" && !strings.HasPrefix(kv.val, "/") {
			v.add(p.key(kv.key), "must start with \"/\" (got %q)", kv.val)
		}
	}
	if m.PathRegex != "" {
		v.regex(p.key("path_regex"), m.PathRegex)
	}
	for i, h := range m.Hosts {
		if err := checkHostPattern(h); err != nil {
			v.add(p.key("hosts").idx(i), "%v", err)
		}
	}
	for i, meth := range m.Methods {
		switch up := strings.ToUpper(meth); {
		case !isToken(meth):
			v.add(p.key("methods").idx(i), "%q is not a valid HTTP method", meth)
		case up != meth && slices.Contains(standardMethods, up):
			// Methods are case-sensitive: "get" would never match a GET request.
			v.add(p.key("methods").idx(i), "%q: methods are case-sensitive; write %s", meth, up)
		}
	}
	for i, h := range m.Headers {
		hp := p.key("headers").idx(i)
		if !isToken(h.Name) {
			v.add(hp.key("name"), "%q is not a valid header name", h.Name)
		}
		v.oneOf(hp, h.Exact, h.Regex, h.Present)
	}
	for i, q := range m.Query {
		qp := p.key("query").idx(i)
		if q.Name == "" {
			v.add(qp.key("name"), "query parameter name is required")
		}
		v.oneOf(qp, q.Exact, q.Regex, q.Present)
	}
}

// oneOf checks the exact/regex/present choice shared by header and query matches.
func (v *validator) oneOf(p path, exact, re string, present *bool) {
	n := 0
	if exact != "" {
		n++
	}
	if re != "" {
		n++
		v.regex(p.key("regex"), re)
	}
	if present != nil {
		n++
	}
	if n != 1 {
		v.add(p, "exactly one of exact, regex, present must be set")
	}
}

func (v *validator) regex(p path, re string) {
	if _, err := regexp.Compile(re); err != nil {
		v.add(p, "invalid regex: %v", err)
	}
}

func (v *validator) targets(c *Config, p path, to []Target) {
	if len(to) == 0 {
		v.add(p, "a route needs at least one target (to: [{service: NAME}])")
		return
	}
	positive := false
	for i, t := range to {
		tp := p.idx(i)
		switch {
		case t.Service == "":
			v.add(tp.key("service"), "service name is required")
		case !validServiceName(t.Service):
			v.add(tp.key("service"), "invalid service name %q: use letters, digits, '-', '_' and '.'", t.Service)
		case c.Discovery.Consul == nil && !inStatic(c, t.Service):
			// With Consul configured every service not listed in static resolves through it.
			v.add(tp.key("service"), "service %s is not in discovery.static", t.Service)
		}
		if t.Weight < 0 {
			v.add(tp.key("weight"), "must not be negative (got %d)", t.Weight)
		}
		positive = positive || t.Weight > 0
	}
	if !positive {
		v.add(p, "at least one target needs a weight above 0")
	}
}

func (v *validator) services(c *Config) {
	for _, name := range slices.Sorted(maps.Keys(c.Services)) {
		s := c.Services[name]
		p := path{"services", name}
		if !validServiceName(name) {
			v.add(p, "invalid service name %q: use letters, digits, '-', '_' and '.'", name)
		}
		lb := p.key("load_balancer")
		policies := []string{"round_robin", "random", "least_request", "p2c_ewma", "ring_hash"}
		if !slices.Contains(policies, s.LoadBalancer.Policy) {
			v.add(lb.key("policy"), "%q is not one of %s", s.LoadBalancer.Policy, strings.Join(policies, ", "))
		}
		switch h := s.LoadBalancer.Hash; {
		case s.LoadBalancer.Policy == "ring_hash" && h == nil:
			v.add(lb.key("hash"), "ring_hash requires hash with one of header, cookie, source_ip")
		case s.LoadBalancer.Policy != "ring_hash" && h != nil:
			v.add(lb.key("hash"), "hash is only valid with policy ring_hash")
		case h != nil:
			n := 0
			for _, set := range []bool{h.Header != "", h.Cookie != "", h.SourceIP} {
				if set {
					n++
				}
			}
			if n != 1 {
				v.add(lb.key("hash"), "exactly one of header, cookie, source_ip must be set")
			}
			if h.Header != "" && !isToken(h.Header) {
				v.add(lb.key("hash").key("header"), "%q is not a valid header name", h.Header)
			}
		}
		v.nonNegDur(p.key("connect_timeout"), s.ConnectTimeout)
		v.nonNegDur(p.key("idle_timeout"), s.IdleTimeout)
		v.nonNegDur(p.key("request_timeout"), s.RequestTimeout)
		v.nonNeg(p.key("max_conns_per_host"), int64(s.MaxConnsPerHost))
		v.nonNeg(p.key("max_response_bytes"), int64(s.MaxResponseBytes))
		switch s.Protocol {
		case "", "http1", "http2", "grpc":
		default:
			v.add(p.key("protocol"), "%q is not one of http1, http2, grpc", s.Protocol)
		}
		if s.Retry != nil {
			v.retry(p.key("retry"), s.Retry)
		}
		if s.TLS != nil {
			v.add(p.key("tls"), "upstream tls is not supported yet")
		}
		v.resilience(p, s)
	}
}

func (v *validator) retry(p path, r *Retry) {
	if r.Attempts < 1 || r.Attempts > 10 {
		v.add(p.key("attempts"), "must be 1..10 (total tries including the first; got %d)", r.Attempts)
	}
	v.nonNegDur(p.key("per_try_timeout"), r.PerTryTimeout)
	for i, on := range r.On {
		switch on {
		case "connect-failure", "reset", "timeout", "5xx", "gateway-error":
			continue
		}
		if _, ok := GRPCRetryCode(on); ok {
			continue
		}
		if n, err := strconv.Atoi(on); err == nil && len(on) == 3 && n >= 500 && n <= 599 {
			continue
		}
		v.add(p.key("on").idx(i), "%q is not one of connect-failure, reset, timeout, 5xx, gateway-error, a status 500..599 or a gRPC status (unavailable, resource-exhausted, cancelled, deadline-exceeded, internal)", on)
	}
}

func (v *validator) static(c *Config) {
	for _, name := range slices.Sorted(maps.Keys(c.Discovery.Static)) {
		p := path{"discovery", "static", name}
		if !validServiceName(name) {
			v.add(p, "invalid service name %q: use letters, digits, '-', '_' and '.'", name)
		}
		entries := c.Discovery.Static[name]
		if len(entries) == 0 {
			v.add(p, "a static service needs at least one endpoint")
		}
		seen := map[string]bool{}
		for i, e := range entries {
			addr, _, err := ParseStatic(e)
			if err != nil {
				v.add(p.idx(i), "%v", err)
				continue
			}
			if seen[addr] {
				v.add(p.idx(i), "duplicate endpoint %s", addr)
			}
			seen[addr] = true
		}
	}
}

// ParseStatic parses one discovery.static entry: "host:port" optionally followed by
// " weight=N" (N >= 1). The weight defaults to 1.
func ParseStatic(entry string) (addr string, weight int, err error) {
	fields := strings.Fields(entry)
	if len(fields) == 0 || len(fields) > 2 {
		return "", 0, fmt.Errorf("invalid endpoint %q: want \"host:port\" or \"host:port weight=N\"", entry)
	}
	addr, weight = fields[0], 1
	if err := checkHostPort(addr, false); err != nil {
		return "", 0, err
	}
	if host, _, _ := net.SplitHostPort(addr); host == "" {
		return "", 0, fmt.Errorf("invalid endpoint %q: host is required", entry)
	}
	if len(fields) == 2 {
		w, ok := strings.CutPrefix(fields[1], "weight=")
		n, convErr := strconv.Atoi(w)
		if !ok || convErr != nil || n < 1 {
			return "", 0, fmt.Errorf("invalid endpoint %q: want \"weight=N\" with N >= 1 after the address", entry)
		}
		weight = n
	}
	return addr, weight, nil
}

// checkHostPattern accepts a DNS name (or IP) with an optional leading "*." wildcard; the Host
// header is matched without its port.
func checkHostPattern(h string) error {
	name := strings.TrimPrefix(h, "*.")
	if name == "" {
		return fmt.Errorf("host must not be empty")
	}
	if strings.Contains(name, "*") {
		return fmt.Errorf("invalid host %q: a wildcard is only allowed as a leading \"*.\"", h)
	}
	for _, label := range strings.Split(name, ".") {
		if label == "" || len(label) > 63 {
			return fmt.Errorf("invalid host %q: empty or over-long label", h)
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return fmt.Errorf("invalid host %q: only letters, digits, '-' and '.' (no port)", h)
			}
		}
	}
	return nil
}

// isToken reports whether s is an RFC 9110 token (method and header-name syntax).
// standardMethods are RFC 9110's methods plus PATCH.
var standardMethods = []string{"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}

func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
			continue
		}
		if !strings.ContainsRune("!#$%&'*+-.^_`|~", rune(c)) {
			return false
		}
	}
	return true
}

// validServiceName keeps service names usable as Consul names and metric label values.
func validServiceName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			(i > 0 && (c == '-' || c == '_' || c == '.'))
		if !ok {
			return false
		}
	}
	return true
}

func inStatic(c *Config, name string) bool {
	_, ok := c.Discovery.Static[name]
	return ok
}
