package identity

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
)

// Snapshot persists documents across restarts; discovery/snapshot satisfies it.
type Snapshot interface {
	SaveDoc(kind, name string, b []byte) error
	LoadDoc(kind, name string) ([]byte, bool)
}

// Document kinds in the snapshot. The leaf document holds a private key, so the snapshot
// store must be private to the process user.
const (
	SnapshotKindRoots = "identity-roots"
	SnapshotKindLeaf  = "identity-leaf"
	snapshotRootsName = "connect"
)

const (
	defaultMinBackoff = 250 * time.Millisecond
	defaultMaxBackoff = 30 * time.Second
)

// Options configures a Manager.
type Options struct {
	Provider Provider
	// Service is the Connect service name this process is (its leaf certificate's identity).
	Service string
	Logger  zerolog.Logger
	// Snapshot, when set, lets the last roots and leaf outlive a Consul outage across restarts
	// until the leaf expires.
	Snapshot Snapshot
	// MinBackoff and MaxBackoff bound the retry delay after a failed query; zero means 250 ms
	// and 30 s.
	MinBackoff, MaxBackoff time.Duration
}

// Manager keeps the current roots and leaf fresh and hands out TLS configs that read them on
// every handshake, so rotation needs neither a restart nor dropping live connections.
type Manager struct {
	provider Provider
	service  string
	log      zerolog.Logger
	snap     Snapshot
	min, max time.Duration
	now      func() time.Time

	roots   atomic.Pointer[Roots]
	leaf    atomic.Pointer[Leaf]
	running atomic.Bool
	fresh   atomic.Bool // a leaf came from the provider in this process (not only the snapshot)
}

// New validates options and, when a snapshot is configured, loads unexpired persisted material.
func New(o Options) (*Manager, error) {
	if o.Provider == nil {
		return nil, errors.New("identity: nil provider")
	}
	if o.Service == "" {
		return nil, errors.New("identity: empty service name")
	}
	m := &Manager{
		provider: o.Provider, service: o.Service, log: o.Logger, snap: o.Snapshot,
		min: o.MinBackoff, max: o.MaxBackoff, now: time.Now,
	}
	if m.min <= 0 {
		m.min = defaultMinBackoff
	}
	if m.max < m.min {
		m.max = max(defaultMaxBackoff, m.min)
	}
	m.loadSnapshot()
	return m, nil
}

// Ready reports whether both roots and an unexpired leaf are available.
func (m *Manager) Ready() bool {
	l := m.leaf.Load()
	return m.roots.Load() != nil && l != nil && m.now().Before(l.NotAfter)
}

// FromSnapshot reports whether the leaf in use was loaded from the snapshot and Consul has not
// answered since: serving, but degraded until the leaf expires.
func (m *Manager) FromSnapshot() bool { return m.leaf.Load() != nil && !m.fresh.Load() }

// Roots returns the current trust roots, nil before the first answer.
func (m *Manager) Roots() *Roots { return m.roots.Load() }

// Leaf returns the current leaf certificate, nil before the first answer.
func (m *Manager) Leaf() *Leaf { return m.leaf.Load() }

// Run watches roots and leaf until ctx ends, then returns nil. Failed queries are logged and
// retried with backoff; they never replace the material in use. Run may be called once.
func (m *Manager) Run(ctx context.Context) error {
	if !m.running.CompareAndSwap(false, true) {
		return errors.New("identity: run called twice")
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		m.watch(ctx, "roots", func(idx uint64) (uint64, error) {
			r, next, err := m.provider.Roots(ctx, idx)
			if err == nil {
				if r == nil || r.Pool == nil {
					return 0, errors.New("provider returned empty roots")
				}
				m.roots.Store(r)
				m.saveRoots(r)
			}
			return next, err
		})
	}()
	m.watch(ctx, "leaf", func(idx uint64) (uint64, error) {
		l, next, err := m.provider.Leaf(ctx, m.service, idx)
		if err == nil {
			if l == nil || l.Cert.Leaf == nil || len(l.Cert.Certificate) == 0 {
				return 0, errors.New("provider returned empty leaf")
			}
			if !m.now().Before(l.NotAfter) {
				return 0, fmt.Errorf("provider returned a leaf that expired at %s", l.NotAfter)
			}
			m.leaf.Store(l)
			m.fresh.Store(true)
			m.saveLeaf(l)
		}
		return next, err
	})
	<-done
	return nil
}

// watch runs one blocking-query loop. Index handling follows Consul's rules: an index that
// goes backwards (agent restart, snapshot restore) resets to 0 so we do not block on a
// future that will never come.
func (m *Manager) watch(ctx context.Context, what string, query func(uint64) (uint64, error)) {
	var index uint64
	delay := m.min
	for {
		next, err := query(index)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			m.log.Warn().Err(err).Str("what", what).Str("service", m.service).Dur("retry_in", delay).
				Msg("identity query failed; keeping current material")
			// Full jitter keeps many sidecars on one agent from retrying in lockstep.
			if !sleep(ctx, delay/2+rand.N(delay/2+1)) {
				return
			}
			delay = min(delay*2, m.max)
			continue
		}
		delay = m.min
		switch {
		case next == 0 || next == index:
			// A source that answers without blocking (no index, or a wait that timed out) would
			// spin; pace it.
			index = next
			if !sleep(ctx, m.min) {
				return
			}
		case next < index:
			index = 0
		default:
			index = next
		}
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// ServerTLSConfig is for inbound listeners: client certificates are required and must chain
// to the current roots with a service identity in our trust domain. Which services may call is
// authorisation (intentions), done by the caller with PeerID.
func (m *Manager) ServerTLSConfig() *tls.Config {
	base := &tls.Config{
		MinVersion:       tls.VersionTLS12,
		ClientAuth:       tls.RequireAnyClientCert,
		GetCertificate:   m.getCertificate,
		VerifyConnection: m.verifyConnection(""),
	}
	cfg := base.Clone()
	// Per handshake, so the CertificateRequest advertises the roots current at that moment.
	cfg.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		c := base.Clone()
		if r := m.roots.Load(); r != nil {
			c.ClientCAs = r.Pool
		}
		return c, nil
	}
	return cfg
}

// ClientTLSConfig is for outbound connections to expectService: the server must chain to the
// current roots and present exactly that service's identity in our trust domain.
func (m *Manager) ClientTLSConfig(expectService string) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		// Stdlib verification would check DNS names Consul leaves do not carry; verifyConnection
		// does the chain and identity check instead.
		InsecureSkipVerify:   true, //nolint:gosec // replaced by VerifyConnection
		GetClientCertificate: m.getClientCertificate,
		VerifyConnection:     m.verifyConnection(expectService),
	}
}

func (m *Manager) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	l := m.leaf.Load()
	if l == nil {
		return nil, errors.New("identity: no leaf certificate yet")
	}
	return &l.Cert, nil
}

func (m *Manager) getClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	l := m.leaf.Load()
	if l == nil {
		// An empty certificate lets the handshake reach the server, which then rejects it with
		// a clear alert instead of the client failing with a local error.
		return &tls.Certificate{}, nil
	}
	return &l.Cert, nil
}

// verifyConnection runs on every handshake, resumed ones included (unlike
// VerifyPeerCertificate), so a resumed session cannot skip the identity check.
func (m *Manager) verifyConnection(expect string) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		sid, err := verifyPeer(m.roots.Load(), cs.PeerCertificates, m.now())
		if err != nil {
			return err
		}
		if expect != "" && sid.Service != expect {
			return fmt.Errorf("%w: peer is service %q, want %q", ErrVerify, sid.Service, expect)
		}
		return nil
	}
}

type rootsDoc struct {
	TrustDomain string   `json:"trust_domain"`
	PEMs        []string `json:"pems"`
}

type leafDoc struct {
	CertPEM string `json:"cert_pem"`
	KeyPEM  string `json:"key_pem"`
}

func (m *Manager) saveRoots(r *Roots) {
	if m.snap == nil {
		return
	}
	b, err := json.Marshal(rootsDoc{TrustDomain: r.TrustDomain, PEMs: r.PEMs})
	if err == nil {
		err = m.snap.SaveDoc(SnapshotKindRoots, snapshotRootsName, b)
	}
	if err != nil {
		m.log.Warn().Err(err).Msg("identity: persist roots")
	}
}

func (m *Manager) saveLeaf(l *Leaf) {
	if m.snap == nil {
		return
	}
	c, k, err := encodeLeaf(l)
	var b []byte
	if err == nil {
		b, err = json.Marshal(leafDoc{CertPEM: string(c), KeyPEM: string(k)})
	}
	if err == nil {
		err = m.snap.SaveDoc(SnapshotKindLeaf, m.service, b)
	}
	if err != nil {
		m.log.Warn().Err(err).Str("service", m.service).Msg("identity: persist leaf")
	}
}

// loadSnapshot restores persisted material; anything unreadable or expired is ignored, since
// Consul will supply fresh material once reachable.
func (m *Manager) loadSnapshot() {
	if m.snap == nil {
		return
	}
	if b, ok := m.snap.LoadDoc(SnapshotKindRoots, snapshotRootsName); ok {
		var d rootsDoc
		if err := json.Unmarshal(b, &d); err != nil {
			m.log.Warn().Err(err).Msg("identity: snapshot roots unreadable")
		} else if r, err := NewRoots(d.TrustDomain, d.PEMs); err != nil {
			m.log.Warn().Err(err).Msg("identity: snapshot roots invalid")
		} else {
			m.roots.Store(r)
		}
	}
	if b, ok := m.snap.LoadDoc(SnapshotKindLeaf, m.service); ok {
		var d leafDoc
		if err := json.Unmarshal(b, &d); err != nil {
			m.log.Warn().Err(err).Msg("identity: snapshot leaf unreadable")
		} else if l, err := NewLeaf([]byte(d.CertPEM), []byte(d.KeyPEM)); err != nil {
			m.log.Warn().Err(err).Msg("identity: snapshot leaf invalid")
		} else if !m.now().Before(l.NotAfter) {
			m.log.Info().Time("not_after", l.NotAfter).Msg("identity: snapshot leaf expired; ignoring")
		} else {
			m.leaf.Store(l)
		}
	}
}
