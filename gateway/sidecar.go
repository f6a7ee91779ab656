package gateway

import (
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/rs/zerolog"

	"github.com/meshgate/meshgate/conf"
	"github.com/meshgate/meshgate/discovery/consul"
	"github.com/meshgate/meshgate/gateway/listener"
)

// Sidecar mode is the one engine (Server) run on a config with a sidecar: block. What is
// specific to it lives here or is named from here:
//
//	meshgate sidecar ─▶ NewSidecar ─▶ NewServer
//	  expansion:      conf.Config.Expanded turns sidecar: into an mTLS inbound listener
//	                  (connect: true), one loopback listener per upstream, their routes and the
//	                  static local-<app> service; effective.go applies it after the KV merge
//	  registration:   newSidecarRegistration (below): the app and its connect-proxy in Consul
//	  inbound checks: the inbound is a connect listener, so mesh.go's intentionsFilter
//	                  authorises every caller (L4 and L7) before routing, as on any connect
//	                  listener; sidecar.inbound.policies then run as route filters
//
// Everything else (routing, resilience, policies, metrics, access log, reload, drain) is the
// edge's, unchanged.

// ErrMode is returned when a config's shape does not match the mode it was started in.
var ErrMode = errors.New("config does not match the mode")

// NewEdge runs cfg as an edge gateway; a config with a sidecar: block is refused.
func NewEdge(cfg *conf.Config, opts ServerOptions) (*Server, error) {
	if cfg != nil && cfg.Sidecar != nil {
		return nil, fmt.Errorf("%w: a sidecar: block needs `meshgate sidecar`", ErrMode)
	}
	return NewServer(cfg, opts)
}

// NewSidecar runs cfg as a local app's sidecar; cfg must have a sidecar: block.
func NewSidecar(cfg *conf.Config, opts ServerOptions) (*Server, error) {
	if cfg != nil && cfg.Sidecar == nil {
		return nil, fmt.Errorf("%w: a sidecar needs a sidecar: block (service, inbound, upstreams)", ErrMode)
	}
	return NewServer(cfg, opts)
}

// mode names what this engine runs as, for its log lines.
func mode(cfg *conf.Config) string {
	if cfg.Sidecar != nil {
		return "sidecar"
	}
	return "edge"
}

// newSidecarRegistration builds the Registrars of what a sidecar registers
// (translate.go sidecarRegistrations: the connect-proxy and the app, or the app alone in
// plaintext mode), on the process's one Consul client.
func newSidecarRegistration(cfg *conf.Config, client *consul.Client, listeners []*listener.Listener, admin net.Addr, ready func() (bool, string), log zerolog.Logger) (*edgeRegistration, error) {
	bound := make(map[string]net.Addr, len(listeners))
	for _, l := range listeners {
		bound[l.Name()] = l.Addr()
	}
	out := &edgeRegistration{drainWait: defaultSidecarDrainWait, log: log}
	for _, opts := range sidecarRegistrations(cfg.Sidecar, bound, readyURL(admin)) {
		opts.Client, opts.Logger = client, log
		if opts.Check == consul.CheckHTTP {
			opts.Ready = ready
		}
		r, err := consul.NewRegistrar(opts)
		if err != nil {
			return nil, fmt.Errorf("sidecar registration of %s: %w", opts.Service.ID, err)
		}
		out.regs = append(out.regs, r)
	}
	if len(out.regs) == 0 {
		return nil, nil
	}
	return out, nil
}

// defaultSidecarDrainWait bounds how long a draining sidecar waits for Consul to stop listing
// its proxy, like discovery.consul.register.drain_wait's default for an edge.
const defaultSidecarDrainWait = 10 * time.Second

// registeredAddr is the host and port to register for a listener configured as cfgAddr and
// bound at bound: a wildcard host is left empty (Consul then uses the node's address), a
// port-0 listener registers its real port.
func registeredAddr(cfgAddr string, bound net.Addr) (string, int) {
	host, _, _ := net.SplitHostPort(cfgAddr)
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = ""
	}
	return host, addrPort(bound)
}
