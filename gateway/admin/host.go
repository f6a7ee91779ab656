package admin

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// hostGuard refuses requests whose Host header is not one the operator reaches the admin API
// by. The admin API has no authentication and relies on being reachable only from this host;
// DNS rebinding breaks that assumption: a web page on attacker.example whose name then resolves
// to 127.0.0.1 makes the operator's browser send same-origin requests to the admin API and read
// the answers (/config, /clusters). Such a request always carries the attacker's name in Host,
// so accepting only loopback names, the admin's own IP and configured names defeats it.
type hostGuard struct {
	// bound is the IP of the configured admin address when it names one (not a wildcard): a
	// Consul HTTP check or an operator's curl to that IP carries it as Host, and an IP literal
	// cannot be rebound (the browser's origin is then the admin itself).
	bound   netip.Addr
	allowed map[string]struct{}
}

const hostRefused = "admin: Host not allowed (use a loopback address or list it in admin.allowed_hosts)\n"

func newHostGuard(address string, allowed []string) *hostGuard {
	g := &hostGuard{allowed: make(map[string]struct{}, len(allowed))}
	if host, _, err := net.SplitHostPort(address); err == nil {
		if ip, err := netip.ParseAddr(host); err == nil && !ip.IsUnspecified() {
			g.bound = ip.Unmap()
		}
	}
	for _, h := range allowed {
		g.allowed[normalHost(h)] = struct{}{}
	}
	return g
}

func (g *hostGuard) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// /live stays open whatever the Host: orchestrator liveness probes (kubelet, Nomad,
		// Docker) address the container by an IP the admin cannot know when bound to a
		// wildcard, and a failed liveness probe restarts the process. Its answer is the constant
		// "ok", so a rebinding page learns nothing it did not know from reaching the port.
		if r.URL.Path != PathLive && !g.allows(r.Host) {
			writeText(w, http.StatusForbidden, hostRefused)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// allows reports whether hostport (a Host header value, port optional) is acceptable.
func (g *hostGuard) allows(hostport string) bool {
	if hostport == "" {
		// HTTP/1.0 without Host: browsers always send one, so this is not a rebinding page.
		return true
	}
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	} else if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") {
		host = host[1 : len(host)-1] // "[::1]" without a port
	}
	host = normalHost(host)
	if host == "localhost" {
		// RFC 6761 §6.3: localhost always resolves to loopback and cannot be rebound.
		return true
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		ip = ip.Unmap()
		if ip.IsLoopback() || (g.bound.IsValid() && ip == g.bound) {
			return true
		}
	}
	_, ok := g.allowed[host]
	return ok
}

// normalHost is a host name as compared: lower case, without the root's trailing dot.
func normalHost(h string) string {
	return strings.TrimSuffix(strings.ToLower(h), ".")
}
