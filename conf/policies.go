package conf

import (
	"maps"
	"slices"
	"strings"
	"time"
)

// Policy and Redis defaults (see schema.go for the meaning of each field).
const (
	defaultRatePer      = time.Second
	defaultRateKey      = "client_ip"
	defaultIPv6Prefix   = 64
	defaultOnRedisError = "local"
	defaultRedisTimeout = 50 * time.Millisecond
)

var (
	rateLimitKeys = []string{"client_ip", "route", "identity", "header:<Name>"}
	onRedisErrors = []string{"local", "open", "closed"}
)

// policyDefaults fills the policies and redis blocks: per 1s, burst = requests, key client_ip,
// on_redis_error local (cluster limits only: it means nothing for a local one) and a 50ms
// Redis command timeout. Fault percentages have no default: 0 means "never", so a fault block
// does nothing until a percentage is given.
func policyDefaults(c *Config) {
	for name, p := range c.Policies {
		edgePolicyDefaults(&p)
		c.Policies[name] = p
		rl := p.RateLimit
		if rl == nil {
			continue
		}
		setDur(&rl.Per, defaultRatePer)
		if rl.Burst == 0 {
			rl.Burst = rl.Requests
		}
		if rl.Key == "" {
			rl.Key = defaultRateKey
		}
		if rl.Cluster && rl.OnRedisError == "" {
			rl.OnRedisError = defaultOnRedisError
		}
		if rl.Key == defaultRateKey && rl.IPv6Prefix == 0 {
			rl.IPv6Prefix = defaultIPv6Prefix
		}
	}
	if c.Redis != nil {
		setDur(&c.Redis.Timeout, defaultRedisTimeout)
	}
}

// policies validates the policies and redis blocks and the routes' references to policies.
func (v *validator) policies(c *Config) {
	for _, name := range slices.Sorted(maps.Keys(c.Policies)) {
		pol := c.Policies[name]
		p := path{"policies", name}
		if !validServiceName(name) {
			v.add(p, "invalid policy name %q: use letters, digits, '-', '_' and '.'", name)
		}
		if pol.Kind() == "" {
			if set := len(pol.kinds()); set > 1 {
				v.add(p, "exactly one of %s must be set (got %d: use one policy each)", kindList(), set)
			} else {
				v.add(p, "exactly one of %s must be set", kindList())
			}
		}
		v.edgePolicy(c, p, pol)
		if pol.Plugin != "" {
			if _, ok := c.Plugins[pol.Plugin]; !ok {
				v.add(p.key("plugin"), "no plugin named %q in plugins", pol.Plugin)
			}
		}
		if pol.RateLimit != nil {
			v.rateLimit(c, p.key("rate_limit"), pol.RateLimit)
		}
		if pol.Fault != nil {
			v.fault(p.key("fault"), pol.Fault)
		}
	}
	for i, r := range c.Routes {
		seen := map[string]int{}
		for j, name := range r.Policies {
			pp := path{"routes"}.idx(i).key("policies").idx(j)
			if _, ok := c.Policies[name]; !ok {
				v.add(pp, "no policy named %q in policies", name)
			}
			if k, dup := seen[name]; dup {
				v.add(pp, "policy %q is listed twice (also policies[%d])", name, k)
			}
			seen[name] = j
		}
	}
	if r := c.Redis; r != nil {
		if err := checkHostPort(r.Address, false); err != nil {
			v.add(path{"redis", "address"}, "%v", err)
		}
		v.nonNeg(path{"redis", "db"}, int64(r.DB))
		v.nonNegDur(path{"redis", "timeout"}, r.Timeout)
	}
}

func (v *validator) rateLimit(c *Config, p path, rl *RateLimit) {
	if rl.Requests <= 0 {
		v.add(p.key("requests"), "must be positive (got %d)", rl.Requests)
	}
	if rl.Per <= 0 {
		v.add(p.key("per"), "must be positive (got %s)", rl.Per)
	}
	v.nonNeg(p.key("burst"), int64(rl.Burst))
	if !validRateKey(rl.Key) {
		v.add(p.key("key"), "%q is not one of %s", rl.Key, strings.Join(rateLimitKeys, ", "))
	}
	switch {
	case rl.IPv6Prefix != 0 && rl.Key != defaultRateKey:
		v.add(p.key("ipv6_prefix"), "only applies to key: client_ip (key is %q)", rl.Key)
	case rl.IPv6Prefix < 0 || rl.IPv6Prefix > 128:
		v.add(p.key("ipv6_prefix"), "must be 1..128 (got %d)", rl.IPv6Prefix)
	}
	if rl.Cluster && c.Redis == nil {
		v.add(p.key("cluster"), "a cluster limit needs the top-level redis block")
	}
	if rl.OnRedisError != "" && !slices.Contains(onRedisErrors, rl.OnRedisError) {
		v.add(p.key("on_redis_error"), "%q is not one of %s", rl.OnRedisError, strings.Join(onRedisErrors, ", "))
	}
}

func validRateKey(k string) bool {
	if h, ok := strings.CutPrefix(k, "header:"); ok {
		return isToken(h)
	}
	return slices.Contains(rateLimitKeys[:3], k)
}

func (v *validator) fault(p path, f *Fault) {
	if f.Delay == nil && f.Abort == nil {
		v.add(p, "at least one of delay, abort must be set")
	}
	if d := f.Delay; d != nil {
		if d.Duration <= 0 {
			v.add(p.key("delay").key("duration"), "must be positive (got %s)", d.Duration)
		}
		v.percent(p.key("delay").key("percent"), d.Percent)
	}
	if a := f.Abort; a != nil {
		if a.Status < 400 || a.Status > 599 {
			v.add(p.key("abort").key("status"), "must be an HTTP status 400..599 (got %d)", a.Status)
		}
		v.percent(p.key("abort").key("percent"), a.Percent)
	}
	if f.Header != "" && !isToken(f.Header) {
		v.add(p.key("header"), "%q is not a valid header name", f.Header)
	}
}

func (v *validator) percent(p path, x float64) {
	if !(x >= 0 && x <= 100) { // also rejects NaN
		v.add(p, "must be a percentage 0..100 (got %v)", x)
	}
}
