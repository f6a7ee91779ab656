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
// Contract: any secret field added to the schema (tokens, keys, passwords) MUST be blanked
// here, and the redaction test extended. Today no field is secret; values that came from
// ${ENV} are not treated as secret either (put secrets in secret fields, not in plain ones).
// The copy shares no memory with c, so callers may mutate or marshal it freely.
func Redacted(c *Config) *Config {
	if c == nil {
		return nil
	}
	out := c.clone()
	if out.Discovery.Consul != nil && out.Discovery.Consul.Token != "" {
		out.Discovery.Consul.Token = redactedValue
	}
	for name, p := range out.Plugins {
		if p.Config != nil {
			p.Config = redactedValue // plugin configs carry keys and secrets
			out.Plugins[name] = p
		}
	}
	return out
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

func (p Policy) clone() Policy {
	if p.RateLimit != nil {
		rl := *p.RateLimit
		p.RateLimit = &rl
	}
	if p.Fault != nil {
		f := *p.Fault
		if f.Delay != nil {
			d := *f.Delay
			f.Delay = &d
		}
		if f.Abort != nil {
			a := *f.Abort
			f.Abort = &a
		}
		p.Fault = &f
	}
	return p
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
