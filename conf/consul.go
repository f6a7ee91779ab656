package conf

import (
	"maps"
	"net"
	"slices"
	"time"
)

// Consul defaults (see schema.go for the meaning of each field).
const (
	defaultConsulAddress = "127.0.0.1:8500"
	defaultConsulScheme  = "http"
	defaultConsulWait    = 5 * time.Minute
	// maxConsulWait is Consul's own cap on a blocking query's wait.
	maxConsulWait = 10 * time.Minute
)

// consulDefaults fills discovery.consul when it is present: the local agent on 8500 over http,
// and a 5m blocking-query wait. register and kv_prefix have their own defaults elsewhere.
func consulDefaults(c *Config) {
	cc := c.Discovery.Consul
	if cc == nil {
		return
	}
	if cc.Address == "" {
		cc.Address = defaultConsulAddress
	}
	if cc.Scheme == "" {
		cc.Scheme = defaultConsulScheme
	}
	setDur(&cc.Wait, defaultConsulWait)
	if cc.KVPrefix != "" && cc.KVMaxPriority == nil {
		// Computed from the file's routes, so a document cannot outrank the file unless the
		// file says how far it may go. Merge defaults the file before any document is added.
		top := fileTopPriority(c.Routes)
		cc.KVMaxPriority = &top
	}
	registrationDefaults(c)
}

// fileTopPriority is the highest route priority, 0 without routes (the default priority).
func fileTopPriority(routes []Route) int {
	if len(routes) == 0 {
		return 0
	}
	top := routes[0].Priority
	for _, r := range routes[1:] {
		top = max(top, r.Priority)
	}
	return top
}

// connectTransport refuses Connect over plain HTTP to an agent on another host: the ACL token
// is in every request and the leaf certificate's private key in the /agent/connect/ca/leaf
// answer, so anyone on the path could impersonate this service in the mesh. Loopback never
// leaves the host; anything else needs scheme: https. A name other than localhost counts as
// remote: what it resolves to can change after validation.
func (v *validator) connectTransport(c *Config, connect bool) {
	cc := c.Discovery.Consul
	if !connect || cc == nil || cc.Scheme == "https" {
		return
	}
	host, _, err := net.SplitHostPort(cc.Address)
	if err != nil {
		return // consul() reports the address itself
	}
	if host == "localhost" {
		return
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return
	}
	v.add(path{"discovery", "consul", "address"}, "%q is not a loopback address: Connect (identity.connect, or a sidecar) over plain http would send the ACL token and the leaf certificate's private key in clear; use scheme: https, or the local agent on 127.0.0.1", cc.Address)
}

// consul validates the connection, snapshot and subset settings of discovery.consul.
// register and kv_prefix are validated elsewhere.
func (v *validator) consul(c *Config) {
	cc := c.Discovery.Consul
	if cc == nil {
		return
	}
	p := path{"discovery", "consul"}
	v.registration(p.key("register"), cc.Register)
	if err := checkHostPort(cc.Address, false); err != nil {
		v.add(p.key("address"), "%v (the agent's HTTP API, e.g. 127.0.0.1:8500)", err)
	} else if host, _, _ := net.SplitHostPort(cc.Address); host == "" {
		v.add(p.key("address"), "invalid address %q: host is required", cc.Address)
	}
	switch cc.Scheme {
	case "http", "https":
	default:
		v.add(p.key("scheme"), "%q is not one of http, https", cc.Scheme)
	}
	if cc.Datacenter != "" && !validServiceName(cc.Datacenter) {
		v.add(p.key("datacenter"), "invalid datacenter %q: use letters, digits, '-', '_' and '.'", cc.Datacenter)
	}
	if cc.Wait < 0 || cc.Wait.D() > maxConsulWait {
		v.add(p.key("wait"), "must be 0..%s (Consul's maximum; got %s)", maxConsulWait, cc.Wait)
	}
	if t := cc.TLS; t != nil {
		tp := p.key("tls")
		if cc.Scheme != "https" {
			v.add(tp, "tls requires scheme: https")
		}
		if (t.CertFile == "") != (t.KeyFile == "") {
			v.add(tp, "cert_file and key_file must be set together")
		}
	}
	for _, name := range slices.Sorted(maps.Keys(cc.Services)) {
		s := cc.Services[name]
		sp := p.key("services").key(name)
		switch {
		case !validServiceName(name):
			v.add(sp, "invalid service name %q: use letters, digits, '-', '_' and '.'", name)
		case inStatic(c, name):
			v.add(sp, "service %s is listed in discovery.static, which wins: this subset would never be used", name)
		}
		if s.Name != "" && !validServiceName(s.Name) {
			v.add(sp.key("name"), "invalid consul service name %q: use letters, digits, '-', '_' and '.'", s.Name)
		}
		for i, tag := range s.Tags {
			if tag == "" {
				v.add(sp.key("tags").idx(i), "tag must not be empty")
			}
		}
		for _, k := range slices.Sorted(maps.Keys(s.Meta)) {
			if k == "" {
				v.add(sp.key("meta"), "meta key must not be empty")
			}
		}
	}
}
