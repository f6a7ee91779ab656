package conf

import (
	"fmt"
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
// have a case in (TestPolicyKindsRoundTrip). Secret-bearing today: the Consul token, plugin
// config and args (plugins take keys on their command line), headers-policy set/add values
// (static credentials for upstreams are injected that way), and the userinfo and query of
// every URL or address (basic-auth passwords, ?token=). Values that came from ${ENV} are not treated as secret by origin: the field decides.
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
	for i := range out.AccessLog.Sinks {
		sk := &out.AccessLog.Sinks[i]
		sk.URL = redactAddresses(sk.URL)
		sk.Endpoint = redactAddress(sk.Endpoint)
		for k := range sk.Headers {
			sk.Headers[k] = redactedValue // an otlp sink's headers are its credentials
		}
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

// redactAddresses is redactAddress for a comma-separated list (a NATS cluster's URLs).
func redactAddresses(s string) string {
	parts := strings.Split(s, ",")
	for i, p := range parts {
		parts[i] = redactAddress(strings.TrimSpace(p))
	}
	return strings.Join(parts, ",")
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
