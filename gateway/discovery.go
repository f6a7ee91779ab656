package gateway

import (
	"context"
	"errors"
	"fmt"
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
	return routedSource{static: st, consul: e.disc.consul, subsets: consulSubsets(cc), connect: connect}, nil
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
}

var _ discovery.Source = routedSource{}

func (r routedSource) Watch(ctx context.Context, service string, fn func(discovery.Set)) error {
	if r.static.Has(service) {
		return r.static.Watch(ctx, service, fn)
	}
	sub := r.subsets[service]
	sub.Connect = r.connect
	return r.consul.WatchSubset(ctx, service, sub, fn)
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
