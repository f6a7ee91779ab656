package identity

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/meshgate/meshgate/internal/await"
)

// testCA is a self-made CA standing in for Consul's, or for a foreign one.
type testCA struct {
	cert   *x509.Certificate
	key    *ecdsa.PrivateKey
	pem    string
	serial int64
}

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: cert, key: key, serial: 1,
		pem: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))}
}

func (ca *testCA) roots(t *testing.T, td string) *Roots {
	t.Helper()
	r, err := NewRoots(td, []string{ca.pem})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// leaf issues a Consul-shaped leaf: SPIFFE URI SAN, no DNS names.
func (ca *testCA) leaf(t *testing.T, td, svc string) *Leaf {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ca.serial++
	u, err := url.Parse("spiffe://" + td + "/ns/default/dc/dc1/svc/" + svc)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(ca.serial), Subject: pkix.Name{CommonName: svc},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		URIs: []*url.URL{u}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	l, err := NewLeaf(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

type fakeResult struct {
	leaf *Leaf
	err  error
}

// fakeProvider answers roots at once and then blocks; leaf answers are served in order as the
// test publishes them, one per query, each bumping the index.
type fakeProvider struct {
	roots *Roots

	mu       sync.Mutex
	changed  chan struct{}
	results  []fakeResult
	pos      int
	rootsErr error
}

func newFakeProvider(roots *Roots, first ...fakeResult) *fakeProvider {
	return &fakeProvider{roots: roots, changed: make(chan struct{}), results: first}
}

func (f *fakeProvider) publish(r fakeResult) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.results = append(f.results, r)
	close(f.changed)
	f.changed = make(chan struct{})
}

func (f *fakeProvider) Roots(ctx context.Context, index uint64) (*Roots, uint64, error) {
	f.mu.Lock()
	err := f.rootsErr
	f.mu.Unlock()
	if err != nil {
		return nil, 0, err
	}
	if index == 0 {
		return f.roots, 1, nil
	}
	<-ctx.Done()
	return nil, 0, ctx.Err()
}

func (f *fakeProvider) Leaf(ctx context.Context, _ string, _ uint64) (*Leaf, uint64, error) {
	for {
		f.mu.Lock()
		if f.pos < len(f.results) {
			r := f.results[f.pos]
			f.pos++
			idx := uint64(f.pos)
			f.mu.Unlock()
			return r.leaf, idx, r.err
		}
		ch := f.changed
		f.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil, 0, ctx.Err()
		case <-ch:
		}
	}
}

// startManager runs m until the test ends and waits for Run to return at cleanup.
func startManager(t *testing.T, m *Manager) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
}

func newManager(t *testing.T, p Provider, svc string) *Manager {
	t.Helper()
	m, err := New(Options{Provider: p, Service: svc, Logger: zerolog.New(io.Discard),
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	await.Until(t, timeout, what, cond)
}

// tlsServer accepts connections with cfg, records each handshake outcome, and echoes lines.
type tlsServer struct {
	ln      net.Listener
	results chan serverResult
	wg      sync.WaitGroup
}

type serverResult struct {
	err  error
	peer ServiceID
}

func newTLSServer(t *testing.T, cfg *tls.Config) *tlsServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &tlsServer{ln: ln, results: make(chan serverResult, 16)}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				s.serve(tls.Server(c, cfg))
			}()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		s.wg.Wait()
	})
	return s
}

func (s *tlsServer) serve(c *tls.Conn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if err := c.Handshake(); err != nil {
		s.results <- serverResult{err: err}
		return
	}
	peer, err := PeerID(c.ConnectionState())
	s.results <- serverResult{err: err, peer: peer}
	if err != nil {
		return
	}
	buf := make([]byte, 64)
	for {
		n, err := c.Read(buf)
		if err != nil {
			return
		}
		if _, err := c.Write(buf[:n]); err != nil {
			return
		}
	}
}

// dial handshakes with cfg and proves the connection usable with one echo round trip.
func dial(t *testing.T, addr string, cfg *tls.Config) (*tls.Conn, error) {
	t.Helper()
	raw, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c := tls.Client(raw, cfg)
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if err := c.Handshake(); err != nil {
		c.Close()
		return nil, err
	}
	// With TLS 1.3 the server judges the client certificate after the client's handshake has
	// finished, so a rejection only surfaces on the first read.
	if err := echo(c, "ping"); err != nil {
		c.Close()
		return nil, err
	}
	t.Cleanup(func() { c.Close() })
	return c, nil
}

func echo(c *tls.Conn, msg string) error {
	if _, err := c.Write([]byte(msg)); err != nil {
		return err
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil {
		return err
	}
	if string(buf) != msg {
		return errors.New("echo mismatch: " + string(buf))
	}
	return nil
}

func (s *tlsServer) next(t *testing.T) serverResult {
	t.Helper()
	select {
	case r := <-s.results:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("no server handshake result")
		return serverResult{}
	}
}
