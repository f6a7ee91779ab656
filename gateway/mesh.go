package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"

	"github.com/meshgate/meshgate/conf"
	"github.com/meshgate/meshgate/gateway/filter"
	"github.com/meshgate/meshgate/gateway/listener"
	"github.com/meshgate/meshgate/mesh/identity"
	"github.com/meshgate/meshgate/mesh/intentions"
)

// Connect wiring of the engine (identity.connect; a sidecar always has it in Connect mode):
//
//	identity.Manager ──▶ ServerTLSConfig ──▶ listeners with connect: true (client cert required)
//	 (roots + leaf)  └─▶ ClientTLSConfig(svc) ──▶ clusters resolved through Consul, whose
//	                                              endpoints are then the Connect sidecars
//	intentions.Authorizer (destination = identity.service) ──▶ intentionsFilter, run by the
//	                                              connect listeners' handlers before routing
//
// Both watch Consul for the process's lifetime; the identity is fixed at start (changing it
// needs a restart, like the listeners it serves).

// ReasonIntentionDenied is the error code of a request an intention (or the default) denies.
const ReasonIntentionDenied = "intention_denied"

// edgeMesh is the process's Connect state; a nil *edgeMesh means identity.connect is off, and
// its methods are safe on nil.
type edgeMesh struct {
	conf   conf.Identity
	id     *identity.Manager
	authz  *intentions.Authorizer // nil unless a listener serves Connect
	denied *prometheus.CounterVec // by source service; nil with authz
	log    zerolog.Logger
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// newEdgeMesh builds the identity manager and, when a listener serves Connect, the intentions
// authorizer; it does not contact Consul (start does, in the background).
func newEdgeMesh(cfg *conf.Config, disc *edgeDiscovery, reg prometheus.Registerer, log zerolog.Logger) (*edgeMesh, error) {
	ic := cfg.Identity
	if ic == nil || !ic.Connect {
		return nil, nil
	}
	if disc == nil {
		return nil, errors.New("identity.connect needs discovery.consul")
	}
	log = log.With().Str("identity", ic.Service).Logger()
	prov, err := identity.NewConsulProvider(identity.ConsulProviderOptions{
		Client: disc.client.API(), Token: disc.client.Token(), WaitTime: cfg.Discovery.Consul.Wait.D(),
	})
	if err != nil {
		return nil, err
	}
	io := identityOptions(ic)
	io.Provider, io.Logger = prov, log
	if disc.snap != nil {
		io.Snapshot = disc.snap
	}
	m := &edgeMesh{conf: *ic, log: log}
	if m.id, err = identity.New(io); err != nil {
		return nil, err
	}
	if hasConnectListener(cfg) {
		src, err := intentions.NewConsulSource(intentions.ConsulSourceOptions{
			Client: disc.client.API(), Token: disc.client.Token(), WaitTime: cfg.Discovery.Consul.Wait.D(),
		})
		if err != nil {
			return nil, err
		}
		ao := intentionsOptions(ic)
		ao.Source, ao.Logger = src, log
		if disc.snap != nil {
			ao.Snapshot = disc.snap
		}
		if m.authz, err = intentions.New(ao); err != nil {
			return nil, err
		}
		m.denied = prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshgate_intentions_denied_total",
			Help: "Requests on connect listeners denied by intentions (or their default), by calling service.",
		}, []string{"source"})
		if err := reg.Register(m.denied); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func hasConnectListener(cfg *conf.Config) bool {
	for _, l := range cfg.Listeners {
		if l.Connect {
			return true
		}
	}
	return false
}

// start runs the watches until close. Called once listeners are bound: /ready stays 503 until
// the first certificates (and intentions) are in, so nothing routes to us before mTLS works.
func (m *edgeMesh) start() {
	if m == nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		_ = m.id.Run(ctx)
	}()
	if m.authz != nil {
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			_ = m.authz.Run(ctx)
		}()
	}
}

func (m *edgeMesh) close() {
	if m == nil || m.cancel == nil {
		return
	}
	m.cancel()
	m.wg.Wait()
}

// ready is the Connect part of /ready.
func (m *edgeMesh) ready() (bool, string) {
	switch {
	case m == nil:
		return true, ""
	case !m.id.Ready():
		return false, "waiting for the Connect certificate of " + m.conf.Service
	case m.authz != nil && !m.authz.Ready():
		return false, "waiting for the intentions of " + m.conf.Service
	case m.authz != nil && m.authz.Stale():
		// Every caller is denied (intentions.Options.MaxAge): balancers should send traffic
		// to an instance that can serve it.
		return false, "intentions of " + m.conf.Service + " are older than identity.max_snapshot_age (last confirmed " +
			m.authz.FetchedAt().UTC().Format(time.RFC3339) + "): denying every caller until consul answers"
	}
	var why []string
	if m.id.FromSnapshot() {
		why = append(why, "degraded: Connect certificate from the snapshot (consul has not answered), valid until "+
			m.id.Leaf().NotAfter.UTC().Format(time.RFC3339))
	}
	if m.authz != nil && m.authz.Origin() == intentions.OriginSnapshot {
		why = append(why, "degraded: intentions from the snapshot (consul has not answered)")
	}
	return true, strings.Join(why, "; ")
}

// sameIdentity refuses a reload that changes the identity: certificates, intentions and the
// connect listeners were set up for the one the process started with.
func sameIdentity(a, b *conf.Config) error {
	x, y := a.Identity, b.Identity
	if (x == nil) != (y == nil) || (x != nil && *x != *y) {
		return errors.New("identity changed: restart meshgate to change its Connect identity")
	}
	return nil
}

// serverTLS is a connect listener's TLS config.
func (m *edgeMesh) serverTLS() *tls.Config { return m.id.ServerTLSConfig() }

// clientTLS is the TLS config for a cluster whose endpoints are consulName's Connect sidecars.
func (m *edgeMesh) clientTLS(consulName string) *tls.Config { return m.id.ClientTLSConfig(consulName) }

// authorizer is the pre-routing check of a connect listener.
func (m *edgeMesh) authorizer() filter.Filter {
	return &intentionsFilter{
		authz:  m.authz,
		dest:   m.conf.Service,
		denied: m.denied,
		// One line per denial would let a misbehaving caller flood the log; bursts of 20 a
		// second are enough to see who is denied and why (metrics and the access log count all).
		log: m.log.Sample(&zerolog.BurstSampler{Burst: 20, Period: time.Second}),
	}
}

// intentionsFilter authorises the caller of a connect listener: the peer's Connect service
// (verified during the handshake) against the intentions for our service, L4 and L7.
type intentionsFilter struct {
	authz  *intentions.Authorizer
	dest   string
	denied *prometheus.CounterVec // may be nil (tests)
	log    zerolog.Logger
}

func (f *intentionsFilter) Request(r *filter.Request) filter.Verdict {
	peer, ok := peerName(r.Ctx)
	if !ok {
		// Unreachable behind ServerTLSConfig (it requires a verified Connect certificate), but a
		// connect listener must never serve an unidentified caller.
		return filter.Verdict{Status: fasthttp.StatusForbidden, Reason: ReasonIntentionDenied}
	}
	src := peer.Service
	r.Identity = append(r.Identity[:0], src...)
	req := &r.Ctx.Request
	caller := intentions.Caller{Partition: peer.Partition, Namespace: peer.Namespace, Service: src}
	d := f.authz.Authorize(caller, req.Header.Method(), req.URI().Path(), &req.Header)
	r.Notes.Intention, r.Notes.IntentionAllow = d.Intention, d.Allow
	if d.Allow {
		return filter.Verdict{}
	}
	if f.denied != nil {
		f.denied.WithLabelValues(src).Inc()
	}
	f.log.Warn().Str("source", src).Str("source_partition", peer.Partition).Str("source_namespace", peer.Namespace).
		Str("destination", f.dest).Str("intention", d.Intention).
		Bytes("method", req.Header.Method()).Bytes("path", req.URI().Path()).Msg("request denied by intentions")
	return filter.Verdict{Status: fasthttp.StatusForbidden, Reason: ReasonIntentionDenied}
}

// peerName is the partition, namespace and service of the peer certificate's SPIFFE ID
// (spiffe://<trust-domain>[/ap/<partition>]/ns/<ns>/dc/<dc>/svc/<name>). The handshake
// already verified the chain and trust domain (identity.verifyPeer); the tenancy decides as
// much as the name. A connection's peer cannot change after its handshake (Go's server does
// no renegotiation), so the name is parsed on the first request and kept on the connection
// (listener.Value) for the next ones: copying the TLS connection state and parsing the path
// was 2.3% of a sidecar's CPU at 1000 req/s. The decision itself is made on every request.
func peerName(ctx *fasthttp.RequestCtx) (identity.PathName, bool) {
	tc, ok := ctx.Conn().(*tls.Conn)
	if !ok {
		return identity.PathName{}, false
	}
	slot := listener.Value(tc)
	if slot != nil {
		if v := slot.Load(); v != nil {
			if pn, ok := (*v).(identity.PathName); ok {
				return pn, true
			}
		}
	}
	cs := tc.ConnectionState()
	if len(cs.PeerCertificates) == 0 || len(cs.PeerCertificates[0].URIs) == 0 {
		return identity.PathName{}, false
	}
	pn, ok := identity.ParsePath(cs.PeerCertificates[0].URIs[0].Path)
	if ok && slot != nil {
		var v any = pn // once per connection
		slot.Store(&v)
	}
	return pn, ok
}

// meshView is /identity on the admin API: who we are, the certificate in use, and the
// intentions enforced.
func (m *edgeMesh) view() any {
	if m == nil {
		return map[string]any{"connect": false}
	}
	out := map[string]any{"connect": true, "service": m.conf.Service, "intentions_default": m.conf.IntentionsDefault}
	if l := m.id.Leaf(); l != nil {
		out["leaf"] = map[string]any{"spiffe_id": l.SPIFFEID, "not_after": l.NotAfter, "serial": fmt.Sprintf("%x", l.Cert.Leaf.SerialNumber)}
	}
	if r := m.id.Roots(); r != nil {
		out["roots"] = len(r.PEMs)
		out["trust_domain"] = r.TrustDomain
	}
	if m.authz != nil {
		out["intentions"] = m.authz.Rules()
	}
	return out
}
