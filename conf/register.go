package conf

import (
	"maps"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
)

// discovery.consul.register defaults and limits (see schema.go for each field's meaning).
const (
	defaultRegisterCheck    = "http"
	defaultRegisterInterval = 2 * time.Second
	defaultDeregisterAfter  = time.Minute
	defaultDrainWait        = 10 * time.Second
	// Consul's own floors: an HTTP check runs at most once a second, and the agent raises a
	// deregister_critical_service_after below a minute to a minute. Rejecting smaller values
	// beats letting the effective config lie about what the agent does.
	minRegisterInterval = time.Second
	minDeregisterAfter  = time.Minute
	// Consul's service meta limits.
	maxMetaPairs    = 64
	maxMetaKeyLen   = 128
	maxMetaValueLen = 512
)

// registrationDefaults fills discovery.consul.register: address and port from the first
// listener, the ID name-address-port, an http check every 2s, deregistration after 1m critical
// and a 10s drain wait. A wildcard listener host ("", 0.0.0.0, ::) leaves the address empty, so
// Consul uses the node's address; a listener on port 0 leaves port (and ID) to be filled with
// the bound port at start-up.
func registrationDefaults(c *Config) {
	cc := c.Discovery.Consul
	if cc == nil || cc.Register == nil {
		return
	}
	r := cc.Register
	if len(c.Listeners) > 0 && (r.Address == "" || r.Port == 0) {
		if host, port, err := net.SplitHostPort(c.Listeners[0].Address); err == nil {
			if r.Address == "" && !wildcardHost(host) {
				r.Address = host
			}
			if n, err := strconv.Atoi(port); err == nil && r.Port == 0 {
				r.Port = n
			}
		}
	}
	if r.ID == "" && r.Name != "" && r.Port != 0 {
		r.ID = RegistrationID(r.Name, r.Address, r.Port)
	}
	if r.Check == "" {
		r.Check = defaultRegisterCheck
	}
	setDur(&r.CheckInterval, defaultRegisterInterval)
	setDur(&r.DeregisterAfter, defaultDeregisterAfter)
	setDur(&r.DrainWait, defaultDrainWait)
}

// RegistrationID is the default service ID, name-address-port (name-port without an address).
// Exported so the edge derives the same ID once a port-0 listener is bound.
func RegistrationID(name, address string, port int) string {
	if address == "" {
		return name + "-" + strconv.Itoa(port)
	}
	return name + "-" + address + "-" + strconv.Itoa(port)
}

func wildcardHost(host string) bool {
	if host == "" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsUnspecified()
}

// registration validates discovery.consul.register (after registrationDefaults).
func (v *validator) registration(p path, r *Registration) {
	if r == nil {
		return
	}
	if !validServiceName(r.Name) {
		if r.Name == "" {
			v.add(p.key("name"), "name is required (the Consul service to register)")
		} else {
			v.add(p.key("name"), "invalid service name %q: use letters, digits, '-', '_' and '.'", r.Name)
		}
	}
	// The ID ends up in agent URL paths (/v1/agent/service/<id>).
	if strings.ContainsAny(r.ID, "/?#% \t\n") {
		v.add(p.key("id"), "invalid id %q: must not contain '/', '?', '#', '%%' or spaces", r.ID)
	}
	if r.Address != "" {
		if _, _, err := net.SplitHostPort(r.Address); err == nil {
			v.add(p.key("address"), "invalid address %q: a host or IP without a port (the port is register.port)", r.Address)
		} else if strings.ContainsAny(r.Address, " \t/[]") {
			v.add(p.key("address"), "invalid address %q: want a host name or an IP", r.Address)
		}
	}
	if r.Port < 0 || r.Port > 65535 {
		v.add(p.key("port"), "must be 0..65535 (got %d)", r.Port)
	}
	v.tagsMeta(p, r.Tags, r.Meta)
	switch r.Check {
	case "http", "ttl":
	default:
		v.add(p.key("check"), "%q is not one of http, ttl", r.Check)
	}
	if r.CheckInterval.D() < minRegisterInterval {
		v.add(p.key("check_interval"), "must be at least %s (got %s)", minRegisterInterval, r.CheckInterval)
	}
	if r.DeregisterAfter.D() < minDeregisterAfter {
		v.add(p.key("deregister_after"), "must be at least %s (Consul's minimum; got %s)", minDeregisterAfter, r.DeregisterAfter)
	}
	v.nonNegDur(p.key("drain_wait"), r.DrainWait)
}

// tagsMeta checks service tags and meta against Consul's rules (shared by the edge's and the
// sidecar's registrations).
func (v *validator) tagsMeta(p path, tags []string, meta map[string]string) {
	for i, tag := range tags {
		if tag == "" {
			v.add(p.key("tags").idx(i), "tag must not be empty")
		}
	}
	if len(meta) > maxMetaPairs {
		v.add(p.key("meta"), "at most %d entries (Consul's limit; got %d)", maxMetaPairs, len(meta))
	}
	for _, k := range slices.Sorted(maps.Keys(meta)) {
		switch {
		case !validMetaKey(k):
			v.add(p.key("meta"), "invalid meta key %q: 1-%d letters, digits, '-' and '_'", k, maxMetaKeyLen)
		case strings.HasPrefix(k, "consul-"):
			v.add(p.key("meta"), "meta key %q: the consul- prefix is reserved", k)
		}
		if len(meta[k]) > maxMetaValueLen {
			v.add(p.key("meta").key(k), "value longer than %d bytes (Consul's limit)", maxMetaValueLen)
		}
	}
}

func validMetaKey(k string) bool {
	if k == "" || len(k) > maxMetaKeyLen {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
