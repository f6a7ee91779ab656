package gateway

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
)

// TestTLSTerminationAndRedirect: a listener with certificate files serves HTTPS (TLS 1.2+)
// and its redirect_from address answers 308 to the https URL.
func TestTLSTerminationAndRedirect(t *testing.T) {
	t.Parallel()
	certFile, keyFile, pool := writeCert(t, "edge.test")
	up, seen := startUpstream(t, "origin", nil)
	e := startEngine(t, fmt.Sprintf(`
admin: { address: 127.0.0.1:0 }
access_log: { output: "off" }
listeners:
  - name: public
    address: 127.0.0.1:0
    tls: { certificates: [ { cert_file: %s, key_file: %s } ], redirect_from: 127.0.0.1:0 }
routes: [ { name: all, to: [ { service: origin } ] } ]
discovery: { static: { origin: [ %s ] } }
`, certFile, keyFile, hostport(up)))

	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Get("https://" + e.listener("public") + "/x")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "hello from origin" {
		t.Fatalf("https: %d %q", resp.StatusCode, body)
	}
	if r, _ := seen.last(t); r.Header.Get("X-Forwarded-Proto") != "https" {
		t.Fatalf("X-Forwarded-Proto %q, want https", r.Header.Get("X-Forwarded-Proto"))
	}
	old := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MaxVersion: tls.VersionTLS11}} // TLS 1.1 on purpose: it must be refused
	defer old.CloseIdleConnections()
	if resp, err := (&http.Client{Transport: old}).Get("https://" + e.listener("public") + "/x"); err == nil {
		resp.Body.Close()
		t.Fatal("a TLS 1.1 client was served")
	}

	resp, err = c.Get("http://" + e.listener("public-redirect") + "/a/b?q=1")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusPermanentRedirect || resp.Header.Get("Location") == "" {
		t.Fatalf("redirect: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	if loc := resp.Header.Get("Location"); loc != "https://127.0.0.1:"+portOf(e.listener("public"))+"/a/b?q=1" {
		t.Fatalf("Location %q", loc)
	}
}

func portOf(hostport string) string {
	_, p, _ := net.SplitHostPort(hostport)
	return p
}
