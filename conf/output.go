package conf

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Summary is the one-line report of `meshgate validate` and of a successful reload, e.g.
// "valid: 1 listener, 3 routes, 2 services (static)". It counts services that routes reference
// as well as those listed under services:, so it reads the same before and after Defaults.
func Summary(c *Config) string {
	svcs := map[string]bool{}
	for name := range c.Services {
		svcs[name] = true
	}
	for _, r := range c.Routes {
		for _, t := range r.To {
			if t.Service != "" {
				svcs[t.Service] = true
			}
		}
	}
	var sources []string
	if len(c.Discovery.Static) > 0 {
		sources = append(sources, "static")
	}
	s := fmt.Sprintf("valid: %s, %s, %s",
		plural(len(c.Listeners), "listener"), plural(len(c.Routes), "route"), plural(len(svcs), "service"))
	if len(sources) > 0 {
		s += " (" + strings.Join(sources, ", ") + ")"
	}
	return s
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

// Redacted returns a deep copy of c that is safe to show on the admin /config endpoint.
//
// Contract: any field that can hold a secret MUST be blanked here, and TestRedactedHidesSecrets
// extended; for a policy kind, in Policy.redactKind (policykind.go), which every kind must
// have a case in (TestPolicyKindsRoundTrip). Secret-bearing today: the Consul token, plugin config and args (plugins take keys on
// their command line), headers-policy set/add values (static credentials for upstreams are
// injected that way), and the userinfo and query of every URL or address (basic-auth passwords,
// ?token=). Values that came from ${ENV} are not treated as secret by origin: the field decides.
// Names, paths and structure stay visible: the point of /config is to see what is configured.
// Route match values (paths, header and query matches) are routing data, not credentials; use
// an api_key or hmac policy, whose secrets live in files, for authentication.
// The copy shares no memory with c, so callers may mutate or marshal it freely.
func Redacted(c *Config) *Config {
	if c == nil {
		return nil
	}
	out := c.clone()
	if cc := out.Discovery.Consul; cc != nil {
		if cc.Token != "" {
			cc.Token = redactedValue
		}
		cc.Address = redactAddress(cc.Address)
	}
	if out.Redis != nil {
		out.Redis.Address = redactAddress(out.Redis.Address)
	}
	for name, p := range out.Plugins {
		if p.Config != nil {
			p.Config = redactedValue // plugin configs carry keys and secrets
		}
		for i := range p.Args {
			p.Args[i] = redactedValue // the count stays visible, the values do not
		}
		out.Plugins[name] = p
	}
	for name, p := range out.Policies {
		p.redact() // what each kind holds that is secret: Policy.redactKind
		out.Policies[name] = p
	}
	return out
}

// redactHeaderOps copies ops with every set/add value replaced; header names stay.
func redactHeaderOps(ops HeaderOps) HeaderOps {
	redact := func(m map[string]string) map[string]string {
		if m == nil {
			return nil
		}
		out := make(map[string]string, len(m))
		for k := range m {
			out[k] = redactedValue
		}
		return out
	}
	return HeaderOps{Set: redact(ops.Set), Add: redact(ops.Add), Remove: slices.Clone(ops.Remove)}
}

// redactAddress hides the userinfo and the query (and fragment) of a URL or of a
// [user[:password]@]host:port address, keeping scheme, host, port and path, which say where
// the gateway connects without saying how it authenticates.
func redactAddress(s string) string {
	if s == "" {
		return s
	}
	if scheme, rest, ok := strings.Cut(s, "://"); ok {
		authority, tail := rest, ""
		if i := strings.IndexAny(rest, "/?#"); i >= 0 {
			authority, tail = rest[:i], rest[i:]
		}
		if at := strings.LastIndexByte(authority, '@'); at >= 0 {
			authority = redactedValue + "@" + authority[at+1:]
		}
		if i := strings.IndexAny(tail, "?#"); i >= 0 {
			tail = tail[:i] + "?" + redactedValue
		}
		return scheme + "://" + authority + tail
	}
	if at := strings.LastIndexByte(s, '@'); at >= 0 {
		return redactedValue + "@" + s[at+1:]
	}
	return s
}

// redactedValue replaces secrets in the effective config; it says a value is set without
// showing it.
const redactedValue = "(redacted)"

// Marshal renders c as YAML, durations as strings and sizes as integers. Its output is the
// effective config; it is not ${ENV}-escaped, so a literal "${" in a value would be expanded
// if the output were fed back to Parse.
func Marshal(c *Config) ([]byte, error) {
	out, err := yaml.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("marshal config: %w", err)
	}
	return out, nil
}

func (c *Config) clone() *Config {
	out := *c
	out.Admin.AllowedHosts = slices.Clone(c.Admin.AllowedHosts)
	out.Listeners = slices.Clone(c.Listeners)
	for i := range out.Listeners {
		out.Listeners[i].TrustedProxies = slices.Clone(c.Listeners[i].TrustedProxies)
		out.Listeners[i].TrustedPeers = slices.Clone(c.Listeners[i].TrustedPeers)
		if t := c.Listeners[i].TLS; t != nil {
			tt := *t
			tt.Certificates = slices.Clone(t.Certificates)
			out.Listeners[i].TLS = &tt
		}
	}
	out.Routes = slices.Clone(c.Routes)
	for i := range out.Routes {
		out.Routes[i] = c.Routes[i].clone()
	}
	if c.Services != nil {
		out.Services = make(map[string]Service, len(c.Services))
		for k, s := range c.Services {
			out.Services[k] = s.clone()
		}
	}
	if c.Discovery.Static != nil {
		out.Discovery.Static = make(map[string][]string, len(c.Discovery.Static))
		for k, v := range c.Discovery.Static {
			out.Discovery.Static[k] = slices.Clone(v)
		}
	}
	if c.Policies != nil {
		out.Policies = make(map[string]Policy, len(c.Policies))
		for k, p := range c.Policies {
			out.Policies[k] = p.clone()
		}
	}
	if c.Redis != nil {
		r := *c.Redis
		out.Redis = &r
	}
	if c.Discovery.Consul != nil {
		out.Discovery.Consul = c.Discovery.Consul.clone()
	}
	if c.Identity != nil {
		id := *c.Identity
		out.Identity = &id
	}
	if c.Sidecar != nil {
		out.Sidecar = c.Sidecar.clone()
	}
	if c.Plugins != nil {
		out.Plugins = make(map[string]Plugin, len(c.Plugins))
		for k, p := range c.Plugins {
			p.Args = slices.Clone(p.Args)
			p.Config = cloneAny(p.Config)
			out.Plugins[k] = p
		}
	}
	return &out
}

func (s *Sidecar) clone() *Sidecar {
	out := *s
	out.Connect = cloneBool(s.Connect)
	out.Service.Register = cloneBool(s.Service.Register)
	out.Service.Tags = slices.Clone(s.Service.Tags)
	out.Service.Meta = maps.Clone(s.Service.Meta)
	out.Inbound.Policies = slices.Clone(s.Inbound.Policies)
	out.Upstreams = slices.Clone(s.Upstreams)
	for i := range out.Upstreams {
		out.Upstreams[i].Policies = slices.Clone(s.Upstreams[i].Policies)
		out.Upstreams[i].Retry = s.Upstreams[i].Retry.clone()
	}
	return &out
}

func (r Route) clone() Route {
	r.Match.Hosts = slices.Clone(r.Match.Hosts)
	r.Match.Methods = slices.Clone(r.Match.Methods)
	r.Match.Headers = slices.Clone(r.Match.Headers)
	for i := range r.Match.Headers {
		r.Match.Headers[i].Present = cloneBool(r.Match.Headers[i].Present)
	}
	r.Match.Query = slices.Clone(r.Match.Query)
	for i := range r.Match.Query {
		r.Match.Query[i].Present = cloneBool(r.Match.Query[i].Present)
	}
	r.To = slices.Clone(r.To)
	r.Listeners = slices.Clone(r.Listeners)
	r.Policies = slices.Clone(r.Policies)
	r.Retry = r.Retry.clone()
	return r
}

func (s Service) clone() Service {
	if s.LoadBalancer.Hash != nil {
		h := *s.LoadBalancer.Hash
		s.LoadBalancer.Hash = &h
	}
	s.Retry = s.Retry.clone()
	if s.TLS != nil {
		t := *s.TLS
		s.TLS = &t
	}
	return s
}

func (r *Retry) clone() *Retry {
	if r == nil {
		return nil
	}
	out := *r
	out.On = slices.Clone(r.On)
	return &out
}

func cloneBool(b *bool) *bool {
	if b == nil {
		return nil
	}
	v := *b
	return &v
}

func (c *Consul) clone() *Consul {
	out := *c
	if c.KVMaxPriority != nil {
		p := *c.KVMaxPriority
		out.KVMaxPriority = &p
	}
	if c.TLS != nil {
		t := *c.TLS
		out.TLS = &t
	}
	if c.Services != nil {
		out.Services = make(map[string]ConsulService, len(c.Services))
		for k, v := range c.Services {
			v.Tags = slices.Clone(v.Tags)
			v.Meta = maps.Clone(v.Meta)
			out.Services[k] = v
		}
	}
	if c.Register != nil {
		r := *c.Register
		r.Tags = slices.Clone(r.Tags)
		r.Meta = maps.Clone(r.Meta)
		out.Register = &r
	}
	return &out
}

// cloneAny deep-copies a decoded YAML value (maps, lists, scalars).
func cloneAny(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = cloneAny(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = cloneAny(e)
		}
		return out
	}
	return v
}
