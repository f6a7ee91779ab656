package identity

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

const testTD = "11111111-2222-3333-4444-555555555555.consul"

func TestNewValidates(t *testing.T) {
	t.Parallel()
	p := newFakeProvider(nil)
	tests := []struct {
		name string
		o    Options
		ok   bool
	}{
		{"ok", Options{Provider: p, Service: "web"}, true},
		{"no provider", Options{Service: "web"}, false},
		{"no service", Options{Provider: p}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m, err := New(tt.o)
			if (err == nil) != tt.ok || (m != nil) != tt.ok {
				t.Fatalf("New = %v, %v; want ok=%v", m, err, tt.ok)
			}
		})
	}
}

func TestParseServiceID(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want ServiceID
		ok   bool
	}{
		{"spiffe://td.consul/ns/default/dc/dc1/svc/web", ServiceID{"td.consul", "default", "default", "dc1", "web"}, true},
		{"spiffe://td.consul/ap/p1/ns/n1/dc/dc2/svc/api", ServiceID{"td.consul", "p1", "n1", "dc2", "api"}, true},
		{"spiffe://td.consul/agent/client/dc/dc1/id/x", ServiceID{}, false},
		{"spiffe://td.consul/ns/default/dc/dc1/svc", ServiceID{}, false},
		{"https://td.consul/ns/default/dc/dc1/svc/web", ServiceID{}, false},
		{"not a uri", ServiceID{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			got, err := ParseServiceID(tt.in)
			if (err == nil) != tt.ok || got != tt.want {
				t.Fatalf("ParseServiceID = %+v, %v; want %+v ok=%v", got, err, tt.want, tt.ok)
			}
		})
	}
}

// TestRotation: a new leaf reaches new handshakes, a failed query keeps the current leaf, and
// a connection made before the rotation keeps working throughout.
func TestRotation(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t, "consul")
	roots := ca.roots(t, testTD)
	first := ca.leaf(t, testTD, "api")
	apiP := newFakeProvider(roots, fakeResult{leaf: first})
	webP := newFakeProvider(roots, fakeResult{leaf: ca.leaf(t, testTD, "web")})
	apiM, webM := newManager(t, apiP, "api"), newManager(t, webP, "web")
	startManager(t, apiM)
	startManager(t, webM)
	waitFor(t, 5*time.Second, "ready", func() bool { return apiM.Ready() && webM.Ready() })

	srv := newTLSServer(t, apiM.ServerTLSConfig())
	addr := srv.ln.Addr().String()
	old, err := dial(t, addr, webM.ClientTLSConfig("api"))
	if err != nil {
		t.Fatal(err)
	}
	srv.next(t)

	second := ca.leaf(t, testTD, "api")
	steps := []struct {
		name    string
		publish fakeResult
		want    *Leaf // leaf the server must present afterwards
	}{
		{"failed query keeps current leaf", fakeResult{err: errors.New("agent down")}, first},
		{"expired leaf is refused", fakeResult{leaf: &Leaf{Cert: first.Cert, NotAfter: time.Now().Add(-time.Minute)}}, first},
		{"new leaf is served", fakeResult{leaf: second}, second},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			apiP.publish(st.publish)
			// The fake serves one result per query, so the next query consuming it proves
			// the manager has processed this step.
			waitFor(t, 5*time.Second, "step consumed", func() bool {
				apiP.mu.Lock()
				defer apiP.mu.Unlock()
				return apiP.pos == len(apiP.results)
			})
			waitFor(t, 5*time.Second, "manager leaf", func() bool { return apiM.Leaf() == st.want })
			if !apiM.Ready() {
				t.Fatal("manager not ready")
			}
			c, err := dial(t, addr, webM.ClientTLSConfig("api"))
			if err != nil {
				t.Fatalf("new handshake: %v", err)
			}
			srv.next(t)
			got := c.ConnectionState().PeerCertificates[0].SerialNumber
			if got.Cmp(st.want.Cert.Leaf.SerialNumber) != 0 {
				t.Fatalf("server presented serial %v, want %v", got, st.want.Cert.Leaf.SerialNumber)
			}
			if err := echo(old, "still-alive"); err != nil {
				t.Fatalf("pre-rotation connection broke: %v", err)
			}
		})
	}
}

type memSnap struct {
	mu   sync.Mutex
	docs map[string][]byte
}

func (s *memSnap) SaveDoc(kind, name string, b []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.docs[kind+"/"+name] = append([]byte(nil), b...)
	return nil
}

func (s *memSnap) LoadDoc(kind, name string) ([]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.docs[kind+"/"+name]
	return b, ok
}

// TestSnapshotSurvivesOutage: material persisted by one manager lets the next one, started
// while the provider is failing, be ready and complete handshakes at once.
func TestSnapshotSurvivesOutage(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t, "consul")
	roots := ca.roots(t, testTD)
	leaf := ca.leaf(t, testTD, "api")
	snap := &memSnap{docs: map[string][]byte{}}

	first, err := New(Options{Provider: newFakeProvider(roots, fakeResult{leaf: leaf}), Service: "api",
		Snapshot: snap, Logger: zerolog.New(io.Discard)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- first.Run(ctx) }()
	waitFor(t, 5*time.Second, "first ready", first.Ready)
	waitFor(t, 5*time.Second, "persisted", func() bool {
		_, r := snap.LoadDoc(SnapshotKindRoots, "connect")
		_, l := snap.LoadDoc(SnapshotKindLeaf, "api")
		return r && l
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	down := newFakeProvider(roots, fakeResult{err: errors.New("agent down")})
	down.rootsErr = errors.New("agent down")
	second := newManager(t, down, "api")
	if second.Ready() {
		t.Fatal("manager without snapshot is ready")
	}
	restored, err := New(Options{Provider: down, Service: "api", Snapshot: snap, Logger: zerolog.New(io.Discard)})
	if err != nil {
		t.Fatal(err)
	}
	if !restored.Ready() {
		t.Fatal("restored manager not ready")
	}
	startManager(t, restored)
	web := newManager(t, newFakeProvider(roots, fakeResult{leaf: ca.leaf(t, testTD, "web")}), "web")
	startManager(t, web)
	waitFor(t, 5*time.Second, "web ready", web.Ready)

	srv := newTLSServer(t, restored.ServerTLSConfig())
	c, err := dial(t, srv.ln.Addr().String(), web.ClientTLSConfig("api"))
	if err != nil {
		t.Fatalf("handshake with restored identity: %v", err)
	}
	srv.next(t)
	if got := c.ConnectionState().PeerCertificates[0].SerialNumber; got.Cmp(leaf.Cert.Leaf.SerialNumber) != 0 {
		t.Fatalf("serial %v, want persisted %v", got, leaf.Cert.Leaf.SerialNumber)
	}
}

func TestRunTwice(t *testing.T) {
	t.Parallel()
	m := newManager(t, newFakeProvider(nil), "web")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := m.Run(ctx); err != nil {
		t.Fatalf("first run: %v", err)
	}
	if err := m.Run(ctx); err == nil {
		t.Fatal("second run succeeded")
	}
	if _, err := m.getCertificate(&tls.ClientHelloInfo{}); err == nil {
		t.Fatal("getCertificate without leaf succeeded")
	}
}

// TestParsePath: the tenancy is part of the identity, and only the exact Consul shapes parse
// (a name found somewhere after "/svc/" is not an identity). Parsing allocates nothing: it runs
// on every request of a connect listener.
func TestParsePath(t *testing.T) { // not parallel: AllocsPerRun
	tests := []struct {
		in   string
		want PathName
		ok   bool
	}{
		{"/ns/default/dc/dc1/svc/web", PathName{"default", "default", "dc1", "web"}, true},
		{"/ns/team-b/dc/dc1/svc/web", PathName{"default", "team-b", "dc1", "web"}, true},
		{"/ap/finance/ns/default/dc/dc2/svc/api", PathName{"finance", "default", "dc2", "api"}, true},
		{"/ap/finance/ns/pay/dc/dc2/svc/api", PathName{"finance", "pay", "dc2", "api"}, true},
		{"/ns/default/dc/dc1/svc/", PathName{}, false},
		{"/ns/default/dc/dc1/svc/web/extra", PathName{}, false},
		{"/ns/default/dc/dc1/svc/web/", PathName{}, false},
		{"/ns//dc/dc1/svc/web", PathName{}, false},
		{"/ap//ns/default/dc/dc1/svc/web", PathName{}, false},
		{"/agent/client/dc/dc1/svc/web", PathName{}, false},
		{"/x/ns/default/dc/dc1/svc/web", PathName{}, false},
		{"ns/default/dc/dc1/svc/web", PathName{}, false},
		{"/ns/default/svc/web", PathName{}, false},
		{"", PathName{}, false},
	}
	for _, tt := range tests {
		got, ok := ParsePath(tt.in)
		if ok != tt.ok || got != tt.want {
			t.Errorf("ParsePath(%q) = %+v, %v; want %+v, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
	if n := testing.AllocsPerRun(100, func() { _, _ = ParsePath("/ap/finance/ns/pay/dc/dc2/svc/api") }); n != 0 {
		t.Errorf("ParsePath: %v allocs, want 0", n)
	}
}
