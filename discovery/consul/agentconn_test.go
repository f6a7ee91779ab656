package consul

import (
	"bufio"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshgate/meshgate/discovery"
)

// TestOneGoroutinePerWatch: a blocking query held through net/http cost three goroutines (the
// caller's, and the connection's read and write loops); a watch now holds one while it waits.
// One service has enough instances that the agent's answer is chunked.
func TestOneGoroutinePerWatch(t *testing.T) {
	a, c := startAgent(t)
	for i := range 40 {
		register(t, c, instance{id: fmt.Sprintf("many-%d", i), name: "many", port: 7000 + i,
			tags: []string{"a-tag-long-enough-to-make-the-answer-bigger"}})
	}
	const watches = 40
	s := newSource(t, Options{Address: a.HTTPAddr, Registerer: prometheus.NewRegistry()})
	base := runtime.NumGoroutine()
	r := newRecorder()
	for i := range watches {
		name := fmt.Sprintf("idle-%d", i)
		if i == 0 {
			name = "many"
		}
		if err := s.Watch(t.Context(), name, r.fn); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, propagationBound, func() error {
		if !s.Synced() {
			return fmt.Errorf("not synced")
		}
		if n := float64(s.m.of("many").endpoints.Load()); n != 40 {
			return fmt.Errorf("many has %v endpoints, want 40", n)
		}
		return nil
	})
	// Every watch is now blocked in its query. Allow for the service-defaults loop, which
	// still goes through net/http (three), and a step goroutine or two finishing.
	limit := watches + 6
	eventually(t, propagationBound, func() error {
		if n := runtime.NumGoroutine() - base; n > limit {
			return fmt.Errorf("%d goroutines more for %d watches, want at most %d", n, watches, limit)
		}
		return nil
	})
	if n := float64(s.m.of("many").failed.Load()); n != 0 {
		t.Fatalf("%v failed queries", n)
	}
}

// rawAgent is a listener that hands each accepted connection to serve: an "agent" for the
// protocol cases a real one cannot be made to produce on demand.
type rawAgent struct {
	ln    net.Listener
	conns atomic.Int32
	wg    sync.WaitGroup
}

func startRawAgent(t *testing.T, serve func(net.Conn)) *rawAgent {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ra := &rawAgent{ln: ln}
	ra.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			ra.conns.Add(1)
			ra.wg.Go(func() {
				defer func() { _ = c.Close() }()
				serve(c)
			})
		}
	})
	t.Cleanup(func() {
		_ = ln.Close()
		ra.wg.Wait()
	})
	return ra
}

// scriptedAgent answers health queries with a fixed set and closes each connection after its
// first answer, without saying so: what a restarted agent, or one with an idle timeout, leaves
// behind a kept connection.
type scriptedAgent struct {
	*rawAgent
	index atomic.Int64
}

func startScriptedAgent(t *testing.T) *scriptedAgent {
	t.Helper()
	sa := &scriptedAgent{}
	sa.rawAgent = startRawAgent(t, sa.serve)
	return sa
}

func (sa *scriptedAgent) serve(c net.Conn) {
	br := bufio.NewReader(c)
	req, err := http.ReadRequest(br)
	if err != nil {
		return
	}
	body := `[]`
	if strings.HasPrefix(req.URL.Path, "/v1/health/service/api") {
		body = `[{"Node":{"Address":"127.0.0.1"},"Service":{"Address":"127.0.0.1","Port":6100}}]`
	}
	// Every answer moves the index, so each one comes back at once and the loop asks again on
	// the kept connection.
	fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Consul-Index: %d\r\nContent-Length: %d\r\n\r\n%s",
		sa.index.Add(1), len(body), body)
	if req.URL.Path == "/v1/config/service-defaults" {
		// The protocols loop goes through net/http and would retry by itself; keep it waiting.
		_, _ = br.ReadByte()
	}
}

// TestClosedKeptConnectionIsRetried: a query on a kept connection the agent had closed is sent
// again on a new one, like net/http does for a GET, instead of failing and backing off.
func TestClosedKeptConnectionIsRetried(t *testing.T) {
	t.Parallel()
	sa := startScriptedAgent(t)
	s := newSource(t, Options{Address: sa.ln.Addr().String(), Registerer: prometheus.NewRegistry(),
		MinInterval: time.Millisecond})
	r := newRecorder()
	if err := s.Watch(t.Context(), "api", r.fn); err != nil {
		t.Fatal(err)
	}
	r.waitLast(t, propagationBound, "api", hasAddrs(SourceConsul, ep(6100)))
	eventually(t, propagationBound, func() error {
		if n := float64(s.m.of("api").ok.Load()); n < 5 {
			return fmt.Errorf("%v answers so far", n)
		}
		return nil
	})
	if n := float64(s.m.of("api").failed.Load()); n != 0 {
		t.Fatalf("%v queries failed; a closed kept connection must be retried", n)
	}
	// Every answer after the first came on a connection dialled for the retry.
	if n := sa.conns.Load(); n < 5 {
		t.Fatalf("%d connections for 5 answers, each on a closed kept one first", n)
	}
}

// TestWatchOverHTTPS: with scheme https the watch dials TLS, verifies the agent's certificate
// against the CA file and the address dialled, and reads the answer.
func TestWatchOverHTTPS(t *testing.T) {
	t.Parallel()
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Consul-Index", "7")
		if strings.HasPrefix(r.URL.Path, "/v1/health/service/api") {
			if r.Header.Get("X-Consul-Token") != "tls-token" {
				http.Error(w, "ACL not found", http.StatusForbidden)
				return
			}
			if r.URL.Query().Get("index") == "7" {
				<-r.Context().Done() // a blocking query with nothing new
				return
			}
			_, _ = w.Write([]byte(`[{"Node":{"Address":"127.0.0.1"},"Service":{"Port":6200}}]`))
			return
		}
		_, _ = w.Write([]byte(`[]`))
	}))
	t.Cleanup(srv.Close)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	pemCert := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(ca, pemCert, 0o600); err != nil {
		t.Fatal(err)
	}
	addr := strings.TrimPrefix(srv.URL, "https://")
	s := newSource(t, Options{Address: addr, Scheme: "https", Token: "tls-token", TLS: TLSOptions{CAFile: ca},
		Registerer: prometheus.NewRegistry()})
	r := newRecorder()
	if err := s.Watch(t.Context(), "api", r.fn); err != nil {
		t.Fatal(err)
	}
	r.waitLast(t, propagationBound, "api", func(set discovery.Set) bool {
		return set.Source == SourceConsul && len(set.Endpoints) == 1 && set.Endpoints[0].Address == ep(6200)
	})

	// The same agent with no CA: the certificate is not trusted, and the query fails.
	bad := newSource(t, Options{Address: addr, Scheme: "https", Registerer: prometheus.NewRegistry()})
	if err := bad.Watch(t.Context(), "api", newRecorder().fn); err != nil {
		t.Fatal(err)
	}
	eventually(t, propagationBound, func() error {
		ok, detail := bad.Health()
		if ok || !strings.Contains(detail, "certificate") {
			return fmt.Errorf("health = %v %q, want a certificate error", ok, detail)
		}
		return nil
	})
}

// TestOversizedAnswerHeadIsRefused: an answer whose headers do not end within 1 MiB (what
// net/http's client allows) fails the query instead of growing a buffer without bound.
func TestOversizedAnswerHeadIsRefused(t *testing.T) {
	t.Parallel()
	junk := strings.Repeat("a", 2<<20)
	ra := startRawAgent(t, func(c net.Conn) {
		if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
			return
		}
		_, _ = fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nX-Consul-Index: 3\r\nX-Junk: %s\r\nContent-Length: 2\r\n\r\n[]", junk)
	})
	s := newSource(t, Options{Address: ra.ln.Addr().String(), Registerer: prometheus.NewRegistry()})
	if err := s.Watch(t.Context(), "api", newRecorder().fn); err != nil {
		t.Fatal(err)
	}
	eventually(t, propagationBound, func() error {
		ok, detail := s.Health()
		if ok || !strings.Contains(detail, "api: consul query failing") || !strings.Contains(detail, "larger than 1 MiB") {
			return fmt.Errorf("health = %v %q", ok, detail)
		}
		return nil
	})
}
