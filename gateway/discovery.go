package gateway

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/meshgate/meshgate/conf"
	"github.com/meshgate/meshgate/discovery"
	"github.com/meshgate/meshgate/discovery/consul"
	"github.com/meshgate/meshgate/discovery/snapshot"
	"github.com/meshgate/meshgate/discovery/static"
)

// Discovery wiring of the edge:
//
//	build(cfg) ─▶ discoverySource(cfg) ─▶ routedSource ─┬─ listed in discovery.static ─▶ static (per config)
//	                                                     ├─ a sidecar's local app, protocol unset ─▶ static
//	                                                     │    endpoints + the protocol of Consul's set
//	                                                     │    for the sidecar's own service
//	                                                     └─ anything else ─▶ consul.Source (one per process)
//
// The Consul source outlives reloads: it is created in NewServer and closed with the server. Each
// generation re-watches its services; the source joins those watches to the running blocking
// queries, so a reload never restarts them (see discovery/consul's doc).

// edgeDiscovery is the process-lifetime Consul discovery state; a nil *edgeDiscovery means
// discovery.consul is not configured, and its methods are safe on nil.
type edgeDiscovery struct {
	client *consul.Client // the process's one agent connection: also KV, registration, identity, intentions
	consul *consul.Source
	snap   *snapshot.Store // nil without snapshot_dir; also keeps Connect certificates and intentions
	conn   conf.Consul     // the settings the source was built from, see connSettings
	log    zerolog.Logger
	synced atomic.Bool // latched once every watched service had its first answer
}

// newEdgeDiscovery builds the Consul source when cfg configures one. It does not contact
// Consul: starting while Consul is down must work (the snapshot covers it).
func newEdgeDiscovery(cfg *conf.Config, reg prometheus.Registerer, log zerolog.Logger) (*edgeDiscovery, error) {
	cc := cfg.Discovery.Consul
	if cc == nil {
		return nil, nil
	}
	client, err := consul.NewClient(clientOptions(cc))
	if err != nil {
		return nil, fmt.Errorf("discovery.consul: %w", err)
	}
	opts := consulOptions(cc)
	opts.Client, opts.Logger, opts.Registerer = client, log, reg
	var snap *snapshot.Store
	if cc.SnapshotDir != "" {
		st, err := snapshot.New(snapshot.Options{Dir: cc.SnapshotDir, Logger: log})
		if err != nil {
			return nil, fmt.Errorf("discovery.consul.snapshot_dir: %w", err)
		}
		opts.Snapshot, snap = st, st
	}
	src, err := consul.New(opts)
	if err != nil {
		return nil, fmt.Errorf("discovery.consul: %w", err)
	}
	return &edgeDiscovery{client: client, consul: src, snap: snap, conn: connSettings(cc), log: log}, nil
}

// connSettings keeps the fields the long-lived source was built from; subsets are excluded
// because each generation passes its own, and register/kv_prefix are not the source's.
func connSettings(cc *conf.Consul) conf.Consul {
	c := *cc
	c.Services, c.Register, c.KVPrefix = nil, nil, ""
	if cc.TLS != nil {
		t := *cc.TLS
		c.TLS = &t
	}
	return c
}

func sameConn(a, b conf.Consul) bool {
	ta, tb := a.TLS, b.TLS
	a.TLS, b.TLS = nil, nil
	if (ta == nil) != (tb == nil) || (ta != nil && *ta != *tb) {
		return false
	}
	return a.Address == b.Address && a.Scheme == b.Scheme && a.Datacenter == b.Datacenter &&
		a.Token == b.Token && a.TokenFile == b.TokenFile && a.SnapshotDir == b.SnapshotDir && a.Wait == b.Wait
}

// discoverySource builds the Source one generation watches its services through: the config's
// static services from static, everything else from the long-lived Consul source with this
// config's subsets. Adding or removing discovery.consul needs a restart; changed connection
// settings are logged and apply at the next restart, like access_log.
func (e *Server) discoverySource(cfg *conf.Config) (discovery.Source, error) {
	src, err := staticSource(cfg)
	if err != nil {
		return nil, err
	}
	st, ok := src.(*static.Source)
	if !ok {
		return nil, fmt.Errorf("discovery: static source is %T", src)
	}
	cc := cfg.Discovery.Consul
	switch {
	case cc == nil && e.disc == nil:
		return st, nil
	case cc == nil || e.disc == nil:
		return nil, errors.New("discovery.consul added or removed: restart meshgate to change it")
	}
	if !sameConn(e.disc.conn, connSettings(cc)) {
		e.log.Warn().Msg("discovery.consul connection settings (address, scheme, datacenter, token, tls, snapshot_dir, wait) take effect at the next restart; subsets apply now")
	}
	connect := cfg.Identity != nil && cfg.Identity.Connect
	r := routedSource{static: st, consul: e.disc.consul, subsets: consulSubsets(cc), connect: connect}
	r.local, r.localName = localFollowsRegistry(cfg)
	return r, nil
}

// localFollowsRegistry names a sidecar's local app (its static service) and the sidecar's own
// Consul service when the app's protocol is left to Consul: neither sidecar.service.protocol
// nor services.local-<name>.protocol is set. Users who declared Protocol=grpc in the service's
// service-defaults (for Envoy, or for their callers) need not say it twice; what meshgate's
// config says wins, as for every other cluster. Both are "" otherwise.
func localFollowsRegistry(cfg *conf.Config) (local, name string) {
	sc := cfg.Sidecar
	if sc == nil || cfg.Discovery.Consul == nil {
		return "", ""
	}
	local = conf.SidecarLocalService(sc.Service.Name)
	if sc.Service.Protocol != "" || cfg.Services[local].Protocol != "" {
		return "", ""
	}
	return local, sc.Service.Name
}

// routedSource sends each service to the source that owns it; static always wins, so a service
// can be pinned to fixed addresses even when Consul knows it.
type routedSource struct {
	static  *static.Source
	consul  *consul.Source
	subsets map[string]consul.Subset
	// connect: Consul services are reached through their Connect sidecars
	// (/v1/health/connect), with mTLS set on their clusters by build.
	connect bool
	// local is a sidecar's local app whose protocol follows Consul's word on localName, the
	// sidecar's own service (localFollowsRegistry); "" when there is none.
	local, localName string
}

var _ discovery.Source = routedSource{}

func (r routedSource) Watch(ctx context.Context, service string, fn func(discovery.Set)) error {
	if service == r.local && r.local != "" {
		return r.watchLocal(ctx, service, fn)
	}
	if r.static.Has(service) {
		return r.static.Watch(ctx, service, fn)
	}
	sub := r.subsets[service]
	sub.Connect = r.connect
	return r.consul.WatchSubset(ctx, service, sub, fn)
}

// watchLocal delivers the local app's static endpoints with the protocol of the plain Consul
// watch of the sidecar's own service: its set carries the service-defaults protocol (and
// keeps it in the snapshot, so a restart during an outage still speaks to the app as Consul
// last said). Its endpoints, the app's registrations, are not used: the app is where the config
// says. Until Consul answers the protocol is unset (http1), but the sidecar is not ready
// before then (Synced waits for that watch and the service-defaults loop), so no caller is
// served in the wrong protocol. Both watches end with ctx.
func (r routedSource) watchLocal(ctx context.Context, service string, fn func(discovery.Set)) error {
	var (
		mu         sync.Mutex // serialises the two watches' deliveries, so fn sees one order
		set        discovery.Set
		haveStatic bool
		proto      string
	)
	deliver := func() { // with mu held
		out := set
		out.Protocol = proto
		fn(out)
	}
	// Consul first: a watch another generation (or the snapshot) already answered delivers its
	// set at once, so the static delivery below carries the known protocol. The other order
	// would apply http1 to the shared cluster for a moment at every reload, and rebuild its
	// transports twice.
	if err := r.consul.WatchSubset(ctx, r.localName, consul.Subset{Name: r.localName}, func(s discovery.Set) {
		mu.Lock()
		defer mu.Unlock()
		if s.Protocol == proto {
			return // an endpoint change of the app's registrations: nothing of ours
		}
		proto = s.Protocol
		if haveStatic {
			deliver()
		}
	}); err != nil {
		return err
	}
	// Static delivers synchronously, so the cluster has its host before build returns.
	return r.static.Watch(ctx, service, func(s discovery.Set) {
		mu.Lock()
		defer mu.Unlock()
		set, haveStatic = s, true
		deliver()
	})
}

// ready is the discovery part of /ready: not ready until the first answers are in (latched,
// so a reload adding a service does not flap /ready), then ready with Consul's health detail
// in the body ("degraded: ..." while serving snapshots or while queries fail).
func (d *edgeDiscovery) ready() (bool, string) {
	if d == nil {
		return true, ""
	}
	if !d.synced.Load() {
		if !d.consul.Synced() {
			return false, "waiting for the first consul answers"
		}
		d.synced.Store(true)
	}
	_, detail := d.consul.Health()
	return true, detail
}

func (d *edgeDiscovery) close() {
	if d != nil {
		d.consul.Close()
	}
}
