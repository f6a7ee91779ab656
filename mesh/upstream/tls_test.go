package upstream

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/meshgate/meshgate/internal/testcert"
)

// tlsServer is an HTTPS upstream counting the requests that reached its handler.
type tlsServer struct {
	addr string
	pool *x509.CertPool // trusts this server's certificate
	hits atomic.Int64
}

// startTLSServer serves HTTPS with httptest's certificate, or with a fresh self-signed one
// when own is true (so a pool trusting httptest's certificate does not trust it).
func startTLSServer(t *testing.T, own bool) *tlsServer {
	t.Helper()
	s := &tlsServer{}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		if r.TLS == nil {
			http.Error(w, "not tls", http.StatusInternalServerError)
			return
		}
		_, _ = io.WriteString(w, "tls ok "+r.URL.RequestURI())
	}))
	if own {
		cert, pool := testcert.SelfSigned(t, "untrusted")
		srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		s.pool = pool
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	if !own {
		s.pool = srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
	}
	s.addr = strings.TrimPrefix(srv.URL, "https://")
	return s
}

func TestClusterTLS(t *testing.T) {
	t.Parallel()
	trusted := startTLSServer(t, false)
	untrusted := startTLSServer(t, true)
	trust := &tls.Config{RootCAs: trusted.pool, MinVersion: tls.VersionTLS12}

	t.Run("tls upstream succeeds with a per-host server name", func(t *testing.T) {
		t.Parallel()
		m, _ := newManager(t)
		c := newCluster(t, m, Options{TLS: trust}, trusted.addr)
		code, body, err := do(t, c, fasthttp.MethodGet, &Call{Idempotent: true, Replayable: true})
		if err != nil || code != 200 || body != "tls ok /path?q=1" {
			t.Fatalf("code=%d body=%q err=%v", code, body, err)
		}
		tr := hostsOf(c)[trusted.addr].transport.(*http1Transport)
		if tr.tls == nil || tr.tls == trust || tr.tls.ServerName != "127.0.0.1" {
			t.Fatalf("host TLS: set=%v shared=%v", tr.tls != nil, tr.tls == trust)
		}
		if trust.ServerName != "" {
			t.Fatalf("caller's config was modified: ServerName=%q", trust.ServerName)
		}
	})

	t.Run("untrusted certificate is a connect failure", func(t *testing.T) {
		t.Parallel()
		m, _ := newManager(t)
		c := newCluster(t, m, Options{TLS: trust}, untrusted.addr)
		before := untrusted.hits.Load()
		code, _, err := do(t, c, fasthttp.MethodPost, &Call{Replayable: true})
		if !errors.Is(err, ErrConnect) {
			t.Fatalf("code=%d err=%v, want ErrConnect", code, err)
		}
		var cve *tls.CertificateVerificationError
		if !errors.As(err, &cve) {
			t.Fatalf("err=%v does not carry the verification error", err)
		}
		if n := untrusted.hits.Load() - before; n != 0 {
			t.Fatalf("untrusted upstream saw %d requests", n)
		}
	})

	// Not parallel: it counts the shared servers' hits, which parallel siblings would add to
	// (parallel subtests wait until the non-parallel ones are done).
	t.Run("untrusted host is retried on a trusted one", func(t *testing.T) {
		m, _ := newManager(t)
		c := newCluster(t, m, Options{TLS: trust}, trusted.addr, untrusted.addr)
		before, beforeBad := trusted.hits.Load(), untrusted.hits.Load()
		retried := 0
		const n = 4
		for i := range n {
			// POST: only a connect failure may be retried for it, so success proves the
			// handshake failure is classified as one.
			call := &Call{Replayable: true}
			code, body, err := do(t, c, fasthttp.MethodPost, call)
			if err != nil || code != 200 || body != "tls ok /path?q=1" {
				t.Fatalf("request %d: code=%d body=%q err=%v", i, code, body, err)
			}
			if call.Attempts > 1 {
				retried++
			}
		}
		if got := trusted.hits.Load() - before; got != n {
			t.Fatalf("trusted upstream saw %d requests, want %d", got, n)
		}
		if got := untrusted.hits.Load() - beforeBad; got != 0 {
			t.Fatalf("untrusted upstream saw %d requests", got)
		}
		if retried == 0 {
			t.Fatal("round robin never tried the untrusted host")
		}
	})

	t.Run("changing TLS rebuilds the clients", func(t *testing.T) {
		t.Parallel()
		m, _ := newManager(t)
		c := newCluster(t, m, Options{}, trusted.addr)
		// Plaintext to an HTTPS server: Go's server answers 400 (or the read fails).
		if code, _, err := do(t, c, fasthttp.MethodGet, &Call{Idempotent: true, Replayable: true}); err == nil && code == 200 {
			t.Fatal("plaintext request to an https upstream succeeded")
		}
		plain := hostsOf(c)[trusted.addr].transport
		newCluster(t, m, Options{TLS: trust}, trusted.addr)
		code, body, err := do(t, c, fasthttp.MethodGet, &Call{Idempotent: true, Replayable: true})
		if err != nil || code != 200 || body != "tls ok /path?q=1" {
			t.Fatalf("after enabling TLS: code=%d body=%q err=%v", code, body, err)
		}
		if hostsOf(c)[trusted.addr].transport == plain {
			t.Fatal("host client was kept across a TLS change")
		}
		// The same pointer again keeps the client and its pool.
		tlsClient := hostsOf(c)[trusted.addr].transport
		newCluster(t, m, Options{TLS: trust}, trusted.addr)
		if hostsOf(c)[trusted.addr].transport != tlsClient {
			t.Fatal("host client was rebuilt although TLS did not change")
		}
	})
}
