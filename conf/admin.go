package conf

import (
	"net/netip"
	"strings"
)

func (v *validator) admin(c *Config) {
	v.hostPort(path{"admin", "address"}, c.Admin.Address, true)
	for i, h := range c.Admin.AllowedHosts {
		if !isAllowedHost(h) {
			v.add(path{"admin", "allowed_hosts"}.idx(i), "%q is not a host name or IP address (no scheme, port or wildcard)", h)
		}
	}
}

// isAllowedHost accepts an IP literal or a DNS name: a port would never match (the admin
// compares the Host without its port) and a wildcard would let any subdomain, i.e. anyone who
// can publish DNS under it, rebind to the admin API.
func isAllowedHost(h string) bool {
	if _, err := netip.ParseAddr(h); err == nil {
		return true
	}
	h = strings.TrimSuffix(h, ".")
	if h == "" || len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return false
			}
		}
	}
	return true
}
