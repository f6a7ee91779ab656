package identity

import (
	"context"
	"crypto/tls"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"go.uber.org/goleak"

	"github.com/meshgate/meshgate/internal/consuldev"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func consulProvider(t *testing.T, a *consuldev.Agent) *ConsulProvider {
	t.Helper()
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	client, err := api.NewClient(&api.Config{Address: a.HTTPAddr, Transport: tr})
	if err != nil {
		t.Fatal(err)
	}
	p, err := NewConsulProvider(ConsulProviderOptions{Client: client, WaitTime: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestConsulAgent runs everything against one real dev agent: fetching material, then mTLS
// handshakes between managers fed by it. Subtests share the agent and the managers.
func TestConsulAgent(t *testing.T) {
	t.Parallel()
	a := consuldev.Start(t)
	p := consulProvider(t, a)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()

	roots, idx, err := p.Roots(ctx, 0)
	if err != nil {
		t.Fatalf("roots: %v", err)
	}
	if !strings.HasSuffix(roots.TrustDomain, ".consul") || len(roots.PEMs) == 0 || idx == 0 {
		t.Fatalf("roots = %+v, index %d; want a .consul trust domain, PEMs and an index", roots, idx)
	}
	for _, svc := range []string{"web", "api"} {
		l, _, err := p.Leaf(ctx, svc, 0)
		if err != nil {
			t.Fatalf("leaf %s: %v", svc, err)
		}
		sid, err := ParseServiceID(l.SPIFFEID)
		if err != nil {
			t.Fatal(err)
		}
		if sid.Service != svc || sid.TrustDomain != roots.TrustDomain || sid.Namespace != "default" || sid.Datacenter != "dc1" {
			t.Fatalf("leaf %s id = %+v (%s)", svc, sid, l.SPIFFEID)
		}
		if !l.NotAfter.After(time.Now()) {
			t.Fatalf("leaf %s already expired: %s", svc, l.NotAfter)
		}
	}
	// A blocking query on the current index must not answer before its wait elapses.
	bctx, bcancel := context.WithTimeout(ctx, 300*time.Millisecond)
	_, _, err = p.Roots(bctx, idx)
	bcancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("blocking roots query returned %v, want it to block until the deadline", err)
	}

	apiM := newManager(t, p, "api")
	webM := newManager(t, p, "web")
	startManager(t, apiM)
	startManager(t, webM)
	waitFor(t, 20*time.Second, "managers ready", func() bool { return apiM.Ready() && webM.Ready() })

	srv := newTLSServer(t, apiM.ServerTLSConfig())
	addr := srv.ln.Addr().String()
	foreign := newTestCA(t, "foreign")
	foreignWeb := foreign.leaf(t, roots.TrustDomain, "web")

	tests := []struct {
		name       string
		client     *tls.Config
		wantClient bool // client side rejects the server
		wantServer bool // server rejects the client
	}{
		{name: "web expecting api", client: webM.ClientTLSConfig("api")},
		{name: "web expecting db", client: webM.ClientTLSConfig("db"), wantClient: true},
		{name: "client without cert", wantServer: true, client: &tls.Config{
			MinVersion: tls.VersionTLS12, InsecureSkipVerify: true}},
		{name: "client cert from another CA", wantServer: true, client: &tls.Config{
			MinVersion: tls.VersionTLS12, InsecureSkipVerify: true,
			Certificates: []tls.Certificate{foreignWeb.Cert}}},
		{name: "TLS 1.1 refused", wantServer: true, client: func() *tls.Config {
			c := webM.ClientTLSConfig("api")
			c.MinVersion, c.MaxVersion = tls.VersionTLS10, tls.VersionTLS11
			return c
		}()},
	}
	for _, tt := range tests {
		// Sequential: the server's result channel pairs with one dial at a time.
		t.Run(tt.name, func(t *testing.T) {
			_, err := dial(t, addr, tt.client)
			res := srv.next(t)
			switch {
			case tt.wantClient:
				if !errors.Is(err, ErrVerify) {
					t.Fatalf("client err = %v, want ErrVerify", err)
				}
			case tt.wantServer:
				if err == nil || res.err == nil {
					t.Fatalf("client err = %v, server err = %v; want both to fail", err, res.err)
				}
			default:
				if err != nil || res.err != nil {
					t.Fatalf("client err = %v, server err = %v", err, res.err)
				}
				if res.peer.Service != "web" || res.peer.TrustDomain != roots.TrustDomain {
					t.Fatalf("server saw peer %+v, want web", res.peer)
				}
			}
		})
	}

	t.Run("server with foreign cert is rejected by client", func(t *testing.T) {
		foreignAPI := foreign.leaf(t, roots.TrustDomain, "api")
		fs := newTLSServer(t, &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{foreignAPI.Cert}})
		_, err := dial(t, fs.ln.Addr().String(), webM.ClientTLSConfig("api"))
		fs.next(t)
		if !errors.Is(err, ErrVerify) {
			t.Fatalf("err = %v, want ErrVerify", err)
		}
	})
}
