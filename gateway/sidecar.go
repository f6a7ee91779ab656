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

// newSidecarRegistration registers what Consul expects of a mesh member:
//
//	Connect mode:   <app>-sidecar-proxy  kind connect-proxy at the inbound listener, HTTP check
//	                on our /ready plus an alias check on the app (callers find it through
//	                /v1/health/connect/<app>; its Proxy block names the app and the upstreams)
//	                <app>                the app itself at its own address, TCP check
//	                                     (unless sidecar.service.register is false)
//	plaintext mode: <app>                at the inbound listener, HTTP check on our /ready, so
//	                                     plain discovery sends callers through the sidecar
func newSidecarRegistration(cfg *conf.Config, client *consul.Client, listeners []*listener.Listener, admin net.Addr, ready func() (bool, string), log zerolog.Logger) (*edgeRegistration, error) {
	sc := cfg.Sidecar
	svc := sc.Service
	bound := make(map[string]net.Addr, len(listeners))
	for _, l := range listeners {
		bound[l.Name()] = l.Addr()
	}
	inHost, inPort := registeredAddr(sc.Inbound.Address, bound[conf.SidecarInboundName])
	out := &edgeRegistration{drainWait: defaultSidecarDrainWait, log: log}
	add := func(opts consul.RegistrarOptions) error {
		r, err := consul.NewRegistrar(opts)
		if err != nil {
			return fmt.Errorf("sidecar registration of %s: %w", opts.Service.ID, err)
		}
		out.regs = append(out.regs, r)
		return nil
	}
	if !sc.ConnectEnabled() {
		if !svc.Registers() {
			return nil, nil
		}
		opts := registrarBase(client, log)
		opts.Service = consul.Instance{Name: svc.Name, ID: svc.ID, Address: inHost, Port: inPort, Tags: svc.Tags, Meta: svc.Meta}
		opts.Check, opts.CheckURL, opts.Ready = consul.CheckHTTP, readyURL(admin), ready
		if err := add(opts); err != nil {
			return nil, err
		}
		return out, nil
	}

	proxy := &consul.ProxyConfig{
		DestinationServiceName: svc.Name,
		DestinationServiceID:   svc.ID,
		LocalServiceAddress:    svc.Address,
		LocalServicePort:       svc.Port,
	}
	for _, u := range sc.Upstreams {
		host, port := registeredAddr(u.Bind, bound[conf.SidecarUpstreamName(u.Service)])
		if host == "" {
			host = "127.0.0.1"
		}
		proxy.Upstreams = append(proxy.Upstreams, consul.ProxyUpstream{DestinationName: u.Service, LocalBindAddress: host, LocalBindPort: port})
	}
	po := registrarBase(client, log)
	// The proxy carries the app's tags and meta so a caller's Connect subset (tags, meta)
	// selects the same instances through their proxies.
	po.Service = consul.Instance{Name: svc.ProxyName(), ID: svc.ProxyID(), Address: inHost, Port: inPort,
		Tags: svc.Tags, Meta: svc.Meta, Proxy: proxy}
	po.Check, po.CheckURL, po.Ready = consul.CheckHTTP, readyURL(admin), ready
	po.AliasServiceID = svc.ID
	if err := add(po); err != nil {
		return nil, err
	}
	if svc.Registers() {
		ao := registrarBase(client, log)
		ao.Service = consul.Instance{Name: svc.Name, ID: svc.ID, Address: svc.Address, Port: svc.Port, Tags: svc.Tags, Meta: svc.Meta}
		ao.Check = consul.CheckTCP
		if err := add(ao); err != nil {
			return nil, err
		}
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
