package listener

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"
)

var serial atomic.Int64

// writePair writes a fresh self-signed certificate for names (CN = names[0]) and its key into
// dir as base.crt/base.key, replacing any previous pair by rename so a reader never sees half
// a file. It returns the serial number to identify the certificate in handshakes.
func writePair(t *testing.T, dir, base string, notAfter time.Time, names ...string) CertFile {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial.Add(1)),
		Subject:      pkix.Name{CommonName: names[0]},
		NotBefore:    time.Now().Add(-2 * time.Hour),
		NotAfter:     notAfter,
		DNSNames:     names,
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	f := CertFile{Cert: filepath.Join(dir, base+".crt"), Key: filepath.Join(dir, base+".key")}
	writeAtomic(t, f.Key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}))
	writeAtomic(t, f.Cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	return f
}

func writeAtomic(t *testing.T, path string, data []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// servedCert handshakes with serverName and returns the leaf the server presented. The client
// skips verification on purpose: the test asserts which certificate was chosen, including the
// default one that would not verify for an unknown name.
func servedCert(t *testing.T, addr, serverName string) *x509.Certificate {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{
		ServerName: serverName, InsecureSkipVerify: true, MinVersion: tls.VersionTLS12,
	})
	if err != nil {
		t.Fatalf("handshake with SNI %q: %v", serverName, err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0]
}

func serialOf(t *testing.T, f CertFile) int64 {
	t.Helper()
	c, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	if err != nil {
		t.Fatal(err)
	}
	return c.Leaf.SerialNumber.Int64()
}

func TestCertificatesSNI(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	later := time.Now().Add(time.Hour)
	def := writePair(t, dir, "default", later, "default.mesh.test")
	api := writePair(t, dir, "api", later, "api.mesh.test", "API2.mesh.test")
	wild := writePair(t, dir, "wild", later, "*.apps.mesh.test")
	dup := writePair(t, dir, "dup", later, "api.mesh.test") // listed later: never chosen for api
	certs, err := NewCertificates(CertOptions{Files: []CertFile{def, api, wild, dup}, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	addr := startTLS(t, certs.TLSConfig())
	for sni, want := range map[string]CertFile{
		"api.mesh.test":         api,
		"API.Mesh.Test":         api, // SNI is case-insensitive
		"api2.mesh.test":        api,
		"api.mesh.test.":        api,
		"shop.apps.mesh.test":   wild,
		"apps.mesh.test":        def, // a wildcard never covers its apex
		"a.shop.apps.mesh.test": def, // nor more than one label
		"unknown.mesh.test":     def,
		"":                      def, // no SNI (client dialled an IP)
		"default.mesh.test":     def,
	} {
		if got := servedCert(t, addr, sni).SerialNumber.Int64(); got != serialOf(t, want) {
			t.Errorf("SNI %q: served %s (serial %d), want %s", sni, servedCert(t, addr, sni).Subject.CommonName, got, want.Cert)
		}
	}
	// A verifying client that asks for the right name trusts what it gets.
	pool := x509.NewCertPool()
	apiCert, _ := tls.LoadX509KeyPair(api.Cert, api.Key)
	pool.AddCert(apiCert.Leaf)
	c, err := tls.Dial("tcp", addr, &tls.Config{ServerName: "api.mesh.test", RootCAs: pool, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatalf("verified handshake: %v", err)
	}
	_ = c.Close()
	// …and a wrong SNI fails verification against that name, as it should.
	if c, err := tls.Dial("tcp", addr, &tls.Config{ServerName: "other.mesh.test", RootCAs: pool, MinVersion: tls.VersionTLS12}); err == nil {
		_ = c.Close()
		t.Fatal("wrong SNI verified")
	}
}

func TestCertificatesRefuseOldTLS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	certs, err := NewCertificates(CertOptions{Files: []CertFile{writePair(t, dir, "a", time.Now().Add(time.Hour), "a.mesh.test")}})
	if err != nil {
		t.Fatal(err)
	}
	addr := startTLS(t, certs.TLSConfig())
	for _, v := range []uint16{tls.VersionTLS10, tls.VersionTLS11} {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{
			InsecureSkipVerify: true, MinVersion: v, MaxVersion: v,
		})
		if err == nil {
			_ = c.Close()
			t.Fatalf("%s handshake succeeded", tls.VersionName(v))
		}
		// The server's refusal, not a client-side one: it alerts protocol_version.
		if !strings.Contains(err.Error(), "protocol version") {
			t.Fatalf("%s: %v, want a protocol version alert", tls.VersionName(v), err)
		}
	}
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, MinVersion: v, MaxVersion: v})
		if err != nil {
			t.Fatalf("%s refused: %v", tls.VersionName(v), err)
		}
		if got := c.ConnectionState().NegotiatedProtocol; got != "" && got != "http/1.1" {
			t.Errorf("ALPN %q", got)
		}
		_ = c.Close()
	}
}

func TestCertificatesReload(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	later := time.Now().Add(time.Hour)
	first := writePair(t, dir, "site", later, "site.mesh.test")
	oldSerial := serialOf(t, first)
	reloads := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "reloads"}, []string{"result"})
	certs, err := NewCertificates(CertOptions{Files: []CertFile{first}, Interval: 20 * time.Millisecond, Logger: zerolog.Nop(), Reloads: reloads})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); certs.Watch(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	addr := startTLS(t, certs.TLSConfig())

	// An established connection keeps its certificate; new ones see the replacement.
	keep, err := tls.Dial("tcp", addr, &tls.Config{ServerName: "site.mesh.test", InsecureSkipVerify: true, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	defer keep.Close()

	second := writePair(t, dir, "site", later, "site.mesh.test")
	newSerial := serialOf(t, second)
	waitFor(t, "new connections to see the replaced certificate", func() bool {
		return servedCert(t, addr, "site.mesh.test").SerialNumber.Int64() == newSerial
	})
	if got := keep.ConnectionState().PeerCertificates[0].SerialNumber.Int64(); got != oldSerial {
		t.Errorf("established connection's certificate changed to %d", got)
	}
	// The established connection still works after the swap.
	if _, err := keep.Write([]byte("GET /still HTTP/1.1\r\nHost: site.mesh.test\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	_ = keep.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(keep), nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("old connection after reload: %v %v", resp, err)
	}
	resp.Body.Close()

	// A broken file keeps the certificate in use.
	writeAtomic(t, second.Cert, []byte("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n"))
	waitFor(t, "the bad file to be tried", func() bool { return testutil.ToFloat64(reloads.WithLabelValues("error")) >= 1 })
	if got := servedCert(t, addr, "site.mesh.test").SerialNumber.Int64(); got != newSerial {
		t.Fatalf("after a bad file: serial %d, want the previous %d", got, newSerial)
	}
	// So do a mismatched key, an expired certificate and a missing file.
	other := writePair(t, dir, "other", later, "site.mesh.test")
	writeAtomic(t, second.Cert, mustRead(t, other.Cert)) // cert of "other", key of "site"
	if err := certs.Reload(); err == nil || !strings.Contains(err.Error(), "private key does not match") {
		t.Fatalf("mismatched key: %v", err)
	}
	writePair(t, dir, "site", time.Now().Add(-time.Minute), "site.mesh.test")
	if err := certs.Reload(); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("expired certificate: %v", err)
	}
	if err := os.Remove(second.Key); err != nil {
		t.Fatal(err)
	}
	if err := certs.Reload(); err == nil {
		t.Fatal("missing key reloaded")
	}
	if got := servedCert(t, addr, "site.mesh.test").SerialNumber.Int64(); got != newSerial {
		t.Fatalf("after failed reloads: serial %d, want %d", got, newSerial)
	}

	// Fixing the files recovers without a restart.
	third := writePair(t, dir, "site", later, "site.mesh.test")
	want := serialOf(t, third)
	waitFor(t, "the fixed files to load", func() bool {
		return servedCert(t, addr, "site.mesh.test").SerialNumber.Int64() == want
	})
	if ok := testutil.ToFloat64(reloads.WithLabelValues("ok")); ok < 2 {
		t.Errorf("ok reloads = %v, want ≥ 2", ok)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestNewCertificatesErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if _, err := NewCertificates(CertOptions{}); err == nil {
		t.Error("no files accepted")
	}
	if _, err := NewCertificates(CertOptions{Files: []CertFile{{Cert: filepath.Join(dir, "none.crt"), Key: filepath.Join(dir, "none.key")}}}); err == nil ||
		!strings.Contains(err.Error(), "certificate 0") {
		t.Errorf("missing files: %v", err)
	}
	expired := writePair(t, dir, "old", time.Now().Add(-time.Minute), "old.mesh.test")
	if _, err := NewCertificates(CertOptions{Files: []CertFile{expired}}); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Errorf("expired: %v", err)
	}
}

func TestRedirect(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, host, target string
		port               int
		status             int
		location           string
	}{
		{"default port", "site.mesh.test", "/a/b?x=1&y=2", 0, 308, "https://site.mesh.test/a/b?x=1&y=2"},
		{"443 is implicit", "site.mesh.test:80", "/", 443, 308, "https://site.mesh.test/"},
		{"other port and host port dropped", "site.mesh.test:8080", "/p%20q", 8443, 308, "https://site.mesh.test:8443/p%20q"},
		{"ipv4", "127.0.0.1:8080", "/x", 8443, 308, "https://127.0.0.1:8443/x"},
		{"ipv6", "[::1]:8080", "/x", 0, 308, "https://[::1]/x"},
		{"host with a path is refused", "evil.test/x", "/", 0, 400, ""},
		{"host with userinfo is refused", "a@evil.test", "/", 0, 400, ""},
		{"bare ipv6 is refused", "::1", "/", 0, 400, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := &fasthttp.RequestCtx{}
			ctx.Request.Header.SetMethod(fasthttp.MethodPost)
			ctx.Request.SetRequestURI(tt.target)
			ctx.Request.Header.SetHost(tt.host)
			RedirectHandler(RedirectOptions{HTTPSPort: tt.port})(ctx)
			if got := ctx.Response.StatusCode(); got != tt.status {
				t.Fatalf("status %d, want %d", got, tt.status)
			}
			if got := string(ctx.Response.Header.Peek(fasthttp.HeaderLocation)); got != tt.location {
				t.Errorf("Location = %q, want %q", got, tt.location)
			}
		})
	}
}

// The redirect runs as an ordinary plain listener.
func TestRedirectListener(t *testing.T) {
	t.Parallel()
	l, err := New(testOptions(RedirectHandler(RedirectOptions{HTTPSPort: 8443})))
	if err != nil {
		t.Fatal(err)
	}
	s := serve(l)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = l.Shutdown(ctx)
		_ = s.wait(t)
	})
	c := &http.Client{
		Timeout:       5 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	req, err := http.NewRequest(http.MethodPut, "http://"+l.Addr().String()+"/upload?id=7", strings.NewReader("body"))
	if err != nil {
		t.Fatal(err)
	}
	req.Host = "files.mesh.test"
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusPermanentRedirect || resp.Header.Get("Location") != "https://files.mesh.test:8443/upload?id=7" {
		t.Fatalf("got %d Location %q", resp.StatusCode, resp.Header.Get("Location"))
	}
}

func TestRedirectAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	h := RedirectHandler(RedirectOptions{HTTPSPort: 8443})
	ctx := &fasthttp.RequestCtx{}
	ctx.Request.SetRequestURI("/a/b?c=d")
	ctx.Request.Header.SetHost("site.mesh.test:8080")
	if n := testing.AllocsPerRun(1000, func() { h(ctx) }); n != 0 {
		t.Errorf("%v allocs per redirect, want 0", n)
	}
}
