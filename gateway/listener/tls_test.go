package listener

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/meshgate/meshgate/internal/testcert"
)

func startTLS(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	opts := testOptions(func(ctx *fasthttp.RequestCtx) {
		if !ctx.IsTLS() {
			ctx.SetStatusCode(fasthttp.StatusInternalServerError)
			return
		}
		ctx.SetBodyString("secure " + string(ctx.Path()))
	})
	opts.TLSConfig = cfg
	l, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	s := serve(l)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := l.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := s.wait(t); err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return l.Addr().String()
}

func httpsGet(addr string, cfg *tls.Config) (int, string, error) {
	c := &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{TLSClientConfig: cfg, DisableKeepAlives: true},
	}
	resp, err := c.Get("https://" + addr + "/x")
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

func TestListenerTLS(t *testing.T) {
	t.Parallel()
	serverCert, serverPool := testcert.SelfSigned(t, "server")
	clientCert, clientPool := testcert.SelfSigned(t, "client")

	t.Run("https request succeeds and plaintext fails cleanly", func(t *testing.T) {
		t.Parallel()
		addr := startTLS(t, &tls.Config{Certificates: []tls.Certificate{serverCert}, MinVersion: tls.VersionTLS12})
		trust := &tls.Config{RootCAs: serverPool, MinVersion: tls.VersionTLS12}
		code, body, err := httpsGet(addr, trust)
		if err != nil || code != 200 || body != "secure /x" {
			t.Fatalf("https: code=%d body=%q err=%v", code, body, err)
		}

		// A plaintext request is not a TLS record: the handshake fails and the server closes
		// the connection without an HTTP answer.
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(c, "GET /x HTTP/1.1\r\nHost: test\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		if resp, err := http.ReadResponse(bufio.NewReader(c), nil); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				t.Fatalf("plaintext request was served: %d", resp.StatusCode)
			}
		}
		_ = c.Close()

		// The accept loop survived the failed handshake.
		code, body, err = httpsGet(addr, trust)
		if err != nil || code != 200 || body != "secure /x" {
			t.Fatalf("https after plaintext: code=%d body=%q err=%v", code, body, err)
		}

		// A client that does not trust the server's certificate fails its own handshake.
		if _, _, err := httpsGet(addr, &tls.Config{MinVersion: tls.VersionTLS12}); err == nil {
			t.Fatal("untrusted server certificate was accepted")
		}
	})

	t.Run("client certificate required", func(t *testing.T) {
		t.Parallel()
		addr := startTLS(t, &tls.Config{
			Certificates: []tls.Certificate{serverCert},
			ClientAuth:   tls.RequireAndVerifyClientCert,
			ClientCAs:    clientPool,
			MinVersion:   tls.VersionTLS12,
		})
		tests := []struct {
			name  string
			certs []tls.Certificate
			ok    bool
		}{
			{"without certificate", nil, false},
			{"with untrusted certificate", []tls.Certificate{serverCert}, false},
			{"with trusted certificate", []tls.Certificate{clientCert}, true},
			{"again without certificate", nil, false},
			{"again with trusted certificate", []tls.Certificate{clientCert}, true},
		}
		// Sequential on purpose (no t.Parallel): rejections in between must not stop the listener.
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				cfg := &tls.Config{RootCAs: serverPool, Certificates: tt.certs, MinVersion: tls.VersionTLS12}
				code, body, err := httpsGet(addr, cfg)
				if tt.ok && (err != nil || code != 200 || body != "secure /x") {
					t.Fatalf("code=%d body=%q err=%v", code, body, err)
				}
				if !tt.ok && err == nil {
					t.Fatalf("served with code %d", code)
				}
			})
		}
	})
}
