package consul

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/meshgate/meshgate/discovery"
	"github.com/meshgate/meshgate/discovery/snapshot"
	"github.com/meshgate/meshgate/internal/await"
)

// configWriteBound covers a fresh dev server that refuses config entry writes for a moment
// after electing itself (consuldev waits for intention writes; other kinds may lag behind).
const configWriteBound = 15 * time.Second

// setDefaults writes the service-defaults entry of name, retrying within configWriteBound.
func setDefaults(t *testing.T, c *api.Client, name, protocol string) {
	t.Helper()
	eventually(t, configWriteBound, func() error {
		ok, _, err := c.ConfigEntries().Set(&api.ServiceConfigEntry{Kind: api.ServiceDefaults, Name: name, Protocol: protocol}, nil)
		if err == nil && !ok {
			err = fmt.Errorf("service-defaults %s not written", name)
		}
		return err
	})
}

func deleteDefaults(t *testing.T, c *api.Client, name string) {
	t.Helper()
	eventually(t, configWriteBound, func() error {
		_, err := c.ConfigEntries().Delete(api.ServiceDefaults, name, nil)
		return err
	})
}

// protocolIs matches a set from Consul with the given endpoints and protocol.
func protocolIs(proto string, want ...string) func(discovery.Set) bool {
	eps := hasAddrs(SourceConsul, want...)
	return func(s discovery.Set) bool { return s.Protocol == proto && eps(s) }
}

// knownProtocol is what the running protocols loop says about Consul service name ("", false
// while it has no answer or is not running).
func (s *Source) knownProtocol(name string) (string, bool) {
	s.mu.Lock()
	p := s.proto
	s.mu.Unlock()
	if p == nil {
		return "", false
	}
	p.mu.Lock()
	known := p.known
	p.mu.Unlock()
	return p.resolve(name, ""), known
}

// awaitRaw waits until the protocols loop has applied an answer in which Consul service name's
// entry says raw ("" for no entry), whatever that maps to.
func (s *Source) awaitRaw(t *testing.T, name, raw string) {
	t.Helper()
	eventually(t, propagationBound, func() error {
		s.mu.Lock()
		p := s.proto
		s.mu.Unlock()
		if p == nil {
			return fmt.Errorf("no protocols loop")
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		if got, ok := p.raw[name]; !p.known || got != raw || (raw == "" && ok) {
			return fmt.Errorf("%s: entry protocol %q (present %v, known %v), want %q", name, got, ok, p.known, raw)
		}
		return nil
	})
}

func (s *Source) protocolsRunning() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.watches["\x00config\x00"+api.ServiceDefaults]
	return ok && s.proto != nil
}

func TestProtocolFromConsul(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		raw, want string
		ok        bool
	}{
		{"http", discovery.ProtocolHTTP1, true},
		{"http2", discovery.ProtocolHTTP2, true},
		{"grpc", discovery.ProtocolGRPC, true},
		{"", "", true}, // an entry that sets other things: unset, nothing to warn about
		{"tcp", "", false},
		{"kafka", "", false},
		{"http1", "", false}, // meshgate's spelling is not Consul's
	} {
		if got, ok := protocolFromConsul(tc.raw); got != tc.want || ok != tc.ok {
			t.Errorf("protocolFromConsul(%q) = %q, %v; want %q, %v", tc.raw, got, ok, tc.want, tc.ok)
		}
	}
}

// TestServiceDefaultsProtocol: the service-defaults entry of a watched service sets its sets'
// Protocol, every change of it is delivered as a new set with the same endpoints, a deleted
// entry and tcp leave it unset (tcp warned once), subsets and Connect watches read the entry of
// their Consul name, and one loop serves every service and ends with the last watch.
func TestServiceDefaultsProtocol(t *testing.T) {
	t.Parallel()
	a, c := startAgent(t)
	logs := newLogSignal("does not proxy")
	reg := prometheus.NewRegistry()
	st, err := snapshot.New(snapshot.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Options{Address: a.HTTPAddr, Logger: zerolog.New(logs), Getenv: func(string) string { return "" },
		Registerer: reg, Snapshot: st, BackoffMax: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	register(t, c, instance{id: "rpc-1", name: "rpc", port: 9501})
	register(t, c, instance{id: "rpc-1-sidecar-proxy", name: "rpc-sidecar-proxy", port: 21501, proxyFor: "rpc"})
	register(t, c, instance{id: "web-1", name: "web", port: 9601})
	setDefaults(t, c, "web", "http")

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	plain, canary, conn, web := newRecorder(), newRecorder(), newRecorder(), newRecorder()
	for _, w := range []struct {
		routed string
		sub    Subset
		fn     func(discovery.Set)
	}{
		{"rpc", Subset{}, plain.fn},
		{"rpc-canary", Subset{Name: "rpc"}, canary.fn},
		{"rpc", Subset{Connect: true}, conn.fn},
		{"web", Subset{}, web.fn},
	} {
		if err := s.WatchSubset(ctx, w.routed, w.sub, w.fn); err != nil {
			t.Fatal(err)
		}
	}
	web.waitLast(t, propagationBound, "web: http1", protocolIs(discovery.ProtocolHTTP1, ep(9601)))
	plain.waitLast(t, propagationBound, "rpc: no entry, unset", protocolIs("", ep(9501)))
	await.Until(t, propagationBound, "Synced", s.Synced)
	if n := s.watchCount(); n != 4 || !s.protocolsRunning() {
		t.Fatalf("service loops = %d (want 4), protocols loop running = %v (want one for all)", n, s.protocolsRunning())
	}
	if got := gaugeValue(t, reg, "meshgate_discovery_consul_watches"); got != 4 {
		t.Fatalf("meshgate_discovery_consul_watches = %v, want 4: one per service loop, the protocols loop not counted", got)
	}

	steps := []struct {
		what   string
		change func()
		raw    string // what the loop must have seen before the sets are checked
		want   string
	}{
		{"grpc", func() { setDefaults(t, c, "rpc", "grpc") }, "grpc", discovery.ProtocolGRPC},
		{"http2", func() { setDefaults(t, c, "rpc", "http2") }, "http2", discovery.ProtocolHTTP2},
		{"deleted: unset", func() { deleteDefaults(t, c, "rpc") }, "", ""},
		{"tcp: unset", func() { setDefaults(t, c, "rpc", "tcp") }, "tcp", ""},
		{"upper case http2", func() { setDefaults(t, c, "rpc", "HTTP2") }, "http2", discovery.ProtocolHTTP2},
	}
	for _, step := range steps {
		before := len(plain.all())
		step.change()
		s.awaitRaw(t, "rpc", step.raw)
		plain.waitLast(t, propagationBound, "rpc: "+step.what, protocolIs(step.want, ep(9501)))
		canary.waitLast(t, propagationBound, "rpc-canary: "+step.what, protocolIs(step.want, ep(9501)))
		d := conn.waitLast(t, propagationBound, "connect:rpc: "+step.what, protocolIs(step.want, ep(21501)))
		if d.set.Service != "rpc" {
			t.Fatalf("connect set names %q", d.set.Service)
		}
		// Deleting an absent protocol and writing tcp both leave it unset: only a change is
		// delivered, so "tcp" after "deleted" adds nothing.
		if got := len(plain.all()) - before; got > 1 {
			t.Fatalf("%s: %d deliveries for one change", step.what, got)
		}
		if step.what == "grpc" {
			eventually(t, propagationBound, func() error {
				saved, _, ok := st.LoadSelected("rpc", selector(canonical("rpc", Subset{})))
				if !ok || saved.Protocol != discovery.ProtocolGRPC {
					return fmt.Errorf("snapshot = %+v (ok %v), want protocol grpc", saved, ok)
				}
				return nil
			})
		}
	}
	if d, _ := web.last(); d.set.Protocol != discovery.ProtocolHTTP1 {
		t.Fatalf("web followed rpc's entry: %+v", d.set)
	}

	// tcp was warned about once, though later entry changes woke the loop again.
	setDefaults(t, c, "rpc", "tcp")
	s.awaitRaw(t, "rpc", "tcp")
	plain.waitLast(t, propagationBound, "rpc: tcp again", protocolIs("", ep(9501)))
	setDefaults(t, c, "other", "grpc")
	s.awaitRaw(t, "other", "grpc")
	logs.mu.Lock()
	warned := 0
	for _, l := range logs.lines {
		if strings.Contains(l, "does not proxy") {
			warned++
		}
	}
	logs.mu.Unlock()
	// "tcp", then "HTTP2", then "tcp" again: two warnings, one per time it became tcp.
	if warned != 2 {
		t.Fatalf("%d tcp warnings, want 2 (one each time the entry became tcp)", warned)
	}
	if got := float64(s.m.of(protocolsLabel).failed.Load()); got != 0 {
		t.Fatalf("service-defaults query errors = %v with consul up", got)
	}
	if ok, detail := s.Health(); !ok {
		t.Fatalf("Health = %q with consul up", detail)
	}

	cancel()
	await.Until(t, propagationBound, "every loop, the protocols loop included, to end with the watches", func() bool {
		return !s.protocolsRunning() && s.watchCount() == 0
	})
	if got := gaugeValue(t, reg, "meshgate_discovery_consul_watches"); got != 0 {
		t.Fatalf("meshgate_discovery_consul_watches = %v after the last watch", got)
	}
}

// TestServiceDefaultsOutage: with the agent stopped the sets keep their protocol (and Health
// names the failing loop), a source started meanwhile serves the protocol from the snapshot,
// and once the agent is back the protocol follows Consul again.
func TestServiceDefaultsOutage(t *testing.T) {
	t.Parallel()
	a, c := startAgent(t)
	dir := t.TempDir()
	store := func() *snapshot.Store {
		st, err := snapshot.New(snapshot.Options{Dir: dir})
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	s1 := newSource(t, Options{Address: a.HTTPAddr, Snapshot: store()})
	register(t, c, instance{id: "rpc-1", name: "rpc", port: 9701})
	setDefaults(t, c, "rpc", "grpc")
	r1 := newRecorder()
	if err := s1.Watch(t.Context(), "rpc", r1.fn); err != nil {
		t.Fatal(err)
	}
	r1.waitLast(t, propagationBound, "grpc", protocolIs(discovery.ProtocolGRPC, ep(9701)))
	eventually(t, propagationBound, func() error { // saved after delivery
		if saved, _, ok := store().LoadSelected("rpc", selector(canonical("rpc", Subset{}))); !ok || saved.Protocol != discovery.ProtocolGRPC {
			return fmt.Errorf("snapshot = %+v (ok %v)", saved, ok)
		}
		return nil
	})

	a.Stop()
	eventually(t, propagationBound, func() error {
		if ok, detail := s1.Health(); ok || !strings.Contains(detail, protocolsLabel+": consul query failing") {
			return fmt.Errorf("health = %v %q", ok, detail)
		}
		return nil
	})
	if p, known := s1.knownProtocol("rpc"); !known || p != discovery.ProtocolGRPC {
		t.Fatalf("during the outage the loop says %q (known %v), want the last answer grpc", p, known)
	}
	seen := false
	for _, d := range r1.all() {
		if seen = seen || d.set.Protocol == discovery.ProtocolGRPC; seen && d.set.Protocol != discovery.ProtocolGRPC {
			t.Fatalf("a set without grpc was delivered after grpc: %+v", d.set)
		}
	}

	// A restarted meshgate during the outage: the snapshot's protocol, at once.
	s2 := newSource(t, Options{Address: a.HTTPAddr, Snapshot: store()})
	r2 := newRecorder()
	if err := s2.Watch(t.Context(), "rpc", r2.fn); err != nil {
		t.Fatal(err)
	}
	if d, ok := r2.last(); !ok || d.set.Source != SourceSnapshot || d.set.Protocol != discovery.ProtocolGRPC {
		t.Fatalf("restart during the outage delivered %+v (ok %v), want the snapshot with grpc", d.set, ok)
	}

	// The agent returns empty (dev mode): it says http2 now, and both sources follow.
	a.Restart(t)
	register(t, c, instance{id: "rpc-1", name: "rpc", port: 9701})
	setTTL(t, c, "rpc-1", api.HealthPassing)
	setDefaults(t, c, "rpc", "http2")
	for _, r := range []*recorder{r1, r2} {
		r.waitLast(t, 15*time.Second, "http2 from the restarted agent", protocolIs(discovery.ProtocolHTTP2, ep(9701)))
	}
	for _, s := range []*Source{s1, s2} {
		eventually(t, propagationBound, func() error {
			if ok, detail := s.Health(); !ok {
				return fmt.Errorf("%s", detail)
			}
			return nil
		})
	}
}

// TestSyncedWaitsForServiceDefaults: an agent whose health answers come at once but whose
// service-defaults query hangs holds Synced false (so /ready does not open with protocols
// unknown) while the endpoints are delivered, with the snapshot's protocol kept. When the
// entries come, the set is delivered again with their protocol and saved with it: the later
// save wins over the health answer's.
func TestSyncedWaitsForServiceDefaults(t *testing.T) {
	t.Parallel()
	release, answer := make(chan struct{}), make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasPrefix(r.URL.Path, "/v1/health/service/"):
			if r.URL.Query().Get("index") != "" && r.URL.Query().Get("index") != "0" {
				select { // a blocking query: nothing changes
				case <-r.Context().Done():
				case <-release:
				}
				return
			}
			w.Header().Set("X-Consul-Index", "7")
			_, _ = io.WriteString(w, `[{"Node":{"Address":"127.0.0.1"},"Service":{"Service":"rpc","Port":9801,"Weights":{"Passing":1}}}]`)
		case r.URL.Path == "/v1/config/service-defaults":
			first := r.URL.Query().Get("index") == "" || r.URL.Query().Get("index") == "0"
			select {
			case <-r.Context().Done():
				return
			case <-release:
				return
			case <-answer:
				if !first {
					select { // nothing changes after the first answer
					case <-r.Context().Done():
					case <-release:
					}
					return
				}
			}
			w.Header().Set("X-Consul-Index", "9")
			_, _ = io.WriteString(w, `[{"Kind":"service-defaults","Name":"rpc","Protocol":"http2"}]`)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(func() {
		close(release)
		srv.Close()
	})
	st, err := snapshot.New(snapshot.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	sel := selector(canonical("rpc", Subset{}))
	if err := st.SaveSelected(discovery.Set{Service: "rpc", Protocol: discovery.ProtocolGRPC,
		Endpoints: []discovery.Endpoint{{Address: "10.0.0.9:1", Weight: 1}}}, sel); err != nil {
		t.Fatal(err)
	}
	s := newSource(t, Options{Address: strings.TrimPrefix(srv.URL, "http://"), Snapshot: st})
	r := newRecorder()
	if err := s.Watch(t.Context(), "rpc", r.fn); err != nil {
		t.Fatal(err)
	}
	d := r.waitLast(t, propagationBound, "the agent's endpoints", hasAddrs(SourceConsul, ep(9801)))
	if d.set.Protocol != discovery.ProtocolGRPC {
		t.Fatalf("protocol = %q before service-defaults answered, want the snapshot's grpc", d.set.Protocol)
	}
	if s.Synced() {
		t.Fatal("Synced = true while the service-defaults query has not answered")
	}

	close(answer)
	r.waitLast(t, propagationBound, "http2 from service-defaults", protocolIs(discovery.ProtocolHTTP2, ep(9801)))
	await.Until(t, propagationBound, "Synced once service-defaults answered", s.Synced)
	eventually(t, propagationBound, func() error {
		saved, _, ok := st.LoadSelected("rpc", sel)
		if !ok || saved.Protocol != discovery.ProtocolHTTP2 || !hasAddrs(SourceSnapshot, ep(9801))(saved) {
			return fmt.Errorf("snapshot = %+v (ok %v), want the agent's endpoint with http2", saved, ok)
		}
		return nil
	})
}

// TestCloseStopsProtocols: Close ends the protocols loop with the others (goleak in TestMain
// would see it otherwise) and leaves the watches gauge at zero.
func TestCloseStopsProtocols(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	s := newSource(t, Options{Address: deadAddress(t), Registerer: reg})
	for _, svc := range []string{"a", "b"} {
		if err := s.Watch(t.Context(), svc, newRecorder().fn); err != nil {
			t.Fatal(err)
		}
	}
	if !s.protocolsRunning() {
		t.Fatal("no protocols loop with two service watches")
	}
	eventually(t, propagationBound, func() error {
		if ok, detail := s.Health(); ok || !strings.Contains(detail, protocolsLabel+": consul query failing") ||
			!strings.Contains(detail, "(no protocols known yet)") {
			return fmt.Errorf("health = %v %q, want the protocols loop failing too, with nothing known", ok, detail)
		}
		return nil
	})
	s.Close()
	if s.protocolsRunning() {
		t.Fatal("protocols loop still registered after Close")
	}
	if got := gaugeValue(t, reg, "meshgate_discovery_consul_watches"); got != 0 {
		t.Fatalf("meshgate_discovery_consul_watches = %v after Close", got)
	}
}
