package gateway

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/meshgate/meshgate/internal/testcert"
)

// curl runs the real curl binary and returns its stdout; -w prints the protocol it used.
func curl(t *testing.T, args ...string) string {
	t.Helper()
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl not installed")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "curl", append([]string{"-sS", "--max-time", "10"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("curl %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// TestCurlHTTP2PriorKnowledgeToHTTP1Origin: curl --http2-prior-knowledge against a plaintext
// listener, forwarded to an HTTP/1.1 origin; the same port still serves HTTP/1.1, and
// http2: false makes it HTTP/1.1 only.
func TestCurlHTTP2PriorKnowledgeToHTTP1Origin(t *testing.T) {
	up, seen := startUpstream(t, "h1", nil)
	e := startEdge(t, minimal(hostport(up)))
	out := curl(t, "--http2-prior-knowledge", "-w", "\n%{http_version}", "-d", "payload", e.url+"/x?q=1")
	if out != "hello from h1\n2" {
		t.Fatalf("curl h2c = %q, want the origin's body over HTTP/2", out)
	}
	r, body := seen.last(t)
	if r.Proto != "HTTP/1.1" || r.URL.RequestURI() != "/x?q=1" || string(body) != "payload" || r.Header.Get("X-Request-Id") == "" {
		t.Fatalf("origin saw %s %s body %q id %q", r.Proto, r.URL.RequestURI(), body, r.Header.Get("X-Request-Id"))
	}
	if out := curl(t, "--http1.1", "-w", "\n%{http_version}", e.url+"/"); out != "hello from h1\n1.1" {
		t.Fatalf("curl http1.1 on the same port = %q", out)
	}

	off := startEdge(t, strings.Replace(minimal(hostport(up)), "address: 127.0.0.1:0\nroutes", "address: 127.0.0.1:0\n    http2: false\nroutes", 1))
	if _, err := exec.Command("curl", "-sS", "--max-time", "5", "--http2-prior-knowledge", off.url+"/").CombinedOutput(); err == nil {
		t.Fatal("http2: false still served HTTP/2")
	}
	if out := curl(t, "-w", "\n%{http_version}", off.url+"/"); out != "hello from h1\n1.1" {
		t.Fatalf("http2: false, HTTP/1.1 = %q", out)
	}
}

// TestCurlHTTP2OverTLS: ALPN h2 on a TLS listener.
func TestCurlHTTP2OverTLS(t *testing.T) {
	up, _ := startUpstream(t, "h1", nil)
	cert, key, _ := writeCert(t, "localhost")
	cfg := strings.Replace(minimal(hostport(up)), "address: 127.0.0.1:0\nroutes",
		fmt.Sprintf("address: 127.0.0.1:0\n    tls: { certificates: [ { cert_file: %s, key_file: %s } ] }\nroutes", cert, key), 1)
	e := startEdge(t, cfg)
	out := curl(t, "-k", "--http2", "-w", "\n%{http_version}", "https://"+e.addr+"/")
	if out != "hello from h1\n2" {
		t.Fatalf("curl --http2 over TLS = %q", out)
	}
	if out := curl(t, "-k", "--http1.1", "-w", "\n%{http_version}", "https://"+e.addr+"/"); out != "hello from h1\n1.1" {
		t.Fatalf("curl --http1.1 over TLS = %q", out)
	}
}

// startH2COrigin is an HTTP/2-only (h2c prior knowledge) origin that reports the protocol it saw.
func startH2COrigin(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	srv := &http.Server{Protocols: &p, ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s %d", r.Proto, r.Host, len(b))
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}

// TestHTTP1ClientToHTTP2Origin: an HTTP/1.1 client reaches a protocol: http2 service.
func TestHTTP1ClientToHTTP2Origin(t *testing.T) {
	origin := startH2COrigin(t)
	cfg := strings.Replace(minimal(origin), "discovery:", "services:\n  origin: { protocol: http2 }\ndiscovery:", 1)
	e := startEdge(t, cfg)
	out := curl(t, "--http1.1", "-H", "Host: api.example", "-d", "12345", e.url+"/")
	if out != "HTTP/2.0 api.example 5" {
		t.Fatalf("origin answered %q, want HTTP/2.0 with the client's host and body", out)
	}
}

// h2Conn opens a raw HTTP/2 connection (preface and SETTINGS sent) with a Framer.
func h2Conn(t *testing.T, addr string) (net.Conn, *http2.Framer) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(c, bufio.NewReader(c))
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	return c, fr
}

func headerBlock(t *testing.T, addr, path string) []byte {
	t.Helper()
	var buf bytes.Buffer
	enc := hpack.NewEncoder(&buf)
	fields := []string{":method", "GET", ":scheme", "http", ":authority", addr, ":path", path}
	for i := 0; i+1 < len(fields); i += 2 {
		_ = enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
	}
	return buf.Bytes()
}

// readUntilClosed reads frames until the connection ends and returns the GOAWAY code seen.
func readUntilClosed(fr *http2.Framer) (goaway http2.ErrCode, sawGoAway bool) {
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			return goaway, sawGoAway
		}
		if g, ok := f.(*http2.GoAwayFrame); ok {
			goaway, sawGoAway = g.ErrCode, true
		}
	}
}

// TestHTTP2Abuse: raw frames an attacker would send. Each must end in a bounded answer and
// leave the gateway serving everyone else.
func TestHTTP2Abuse(t *testing.T) {
	slow := make(chan struct{})
	t.Cleanup(func() { close(slow) })
	var slowSeen atomic.Int64
	up, _ := startUpstream(t, "h1", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			slowSeen.Add(1)
			select {
			case <-slow:
			case <-r.Context().Done():
			}
		}
		fmt.Fprint(w, "ok")
	})
	cfg := strings.Replace(minimal(hostport(up)), "address: 127.0.0.1:0\nroutes",
		"address: 127.0.0.1:0\n    max_header_bytes: 4096\n    max_concurrent_streams: 10\nroutes", 1)
	e := startEdge(t, cfg)
	healthy := func(t *testing.T) {
		t.Helper()
		if out := curl(t, "--http2-prior-knowledge", e.url+"/"); out != "ok" {
			t.Fatalf("after the abuse, a normal client got %q", out)
		}
	}

	t.Run("SETTINGS advertise the stream limit", func(t *testing.T) {
		_, fr := h2Conn(t, e.addr)
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				t.Fatal(err)
			}
			if s, ok := f.(*http2.SettingsFrame); ok && !s.IsAck() {
				v, ok := s.Value(http2.SettingMaxConcurrentStreams)
				if !ok || v != 10 {
					t.Fatalf("SETTINGS_MAX_CONCURRENT_STREAMS = %d (%v), want 10", v, ok)
				}
				hl, ok := s.Value(http2.SettingMaxHeaderListSize)
				if !ok || hl == 0 || hl > 8192 {
					t.Fatalf("SETTINGS_MAX_HEADER_LIST_SIZE = %d (%v), want about max_header_bytes", hl, ok)
				}
				return
			}
		}
	})

	t.Run("CONTINUATION flood closes the connection", func(t *testing.T) {
		_, fr := h2Conn(t, e.addr)
		block := headerBlock(t, e.addr, "/")
		if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block, EndStream: true, EndHeaders: false}); err != nil {
			t.Fatal(err)
		}
		junk := bytes.Repeat([]byte{0x40, 0x01, 'x', 0x01, 'y'}, 1000) // literal fields, ~5 KB per frame
		var werr error
		for i := 0; i < 2000 && werr == nil; i++ { // up to ~10 MB if nothing stopped us
			werr = fr.WriteContinuation(1, false, junk)
		}
		readUntilClosed(fr)
		if werr == nil {
			// Every write went through: the server must still have closed the connection.
			if _, err := fr.ReadFrame(); err == nil {
				t.Fatal("connection still open after a CONTINUATION flood")
			}
		}
		healthy(t)
	})

	t.Run("rapid reset is bounded", func(t *testing.T) {
		_, fr := h2Conn(t, e.addr)
		block := headerBlock(t, e.addr, "/slow")
		// Fill the stream limit with slow requests, then open and reset streams far faster than
		// handlers can finish: the server must not run them all, and gives up on the connection.
		var id uint32 = 1
		var werr error
		for i := 0; i < 1000 && werr == nil; i++ {
			werr = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: block, EndStream: true, EndHeaders: true})
			if werr == nil && i >= 10 {
				werr = fr.WriteRSTStream(id, http2.ErrCodeCancel)
			}
			id += 2
		}
		_ = werr // the server may close the connection on us (ENHANCE_YOUR_CALM): that is fine too
		// While the first 10 streams hold every handler slot, the reset ones never start a
		// handler, so none of them reaches the upstream: the work an attacker causes is
		// bounded by max_concurrent_streams, not by how fast it can reset.
		before := slowSeen.Load()
		healthy(t)
		if n := slowSeen.Load(); n > 10 || before > 10 {
			t.Fatalf("%d requests reached the upstream, want at most max_concurrent_streams (10)", n)
		}
	})

	t.Run("too many concurrent streams are refused", func(t *testing.T) {
		_, fr := h2Conn(t, e.addr)
		block := headerBlock(t, e.addr, "/slow")
		// Wait for the server's SETTINGS before exceeding them, as a client must.
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				t.Fatal(err)
			}
			if s, ok := f.(*http2.SettingsFrame); ok && !s.IsAck() {
				_ = fr.WriteSettingsAck()
				break
			}
		}
		for i := range 11 {
			if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: uint32(1 + 2*i), BlockFragment: block, EndStream: true, EndHeaders: true}); err != nil {
				t.Fatal(err)
			}
		}
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				t.Fatalf("connection ended before the 11th stream was refused: %v", err)
			}
			if r, ok := f.(*http2.RSTStreamFrame); ok {
				if r.StreamID != 21 || (r.ErrCode != http2.ErrCodeRefusedStream && r.ErrCode != http2.ErrCodeProtocol) {
					t.Fatalf("RST_STREAM %d %v, want stream 21 refused", r.StreamID, r.ErrCode)
				}
				break
			}
			if g, ok := f.(*http2.GoAwayFrame); ok {
				if g.ErrCode != http2.ErrCodeProtocol {
					t.Fatalf("GOAWAY %v", g.ErrCode)
				}
				break
			}
		}
		healthy(t)
	})

	t.Run("oversized header list is refused", func(t *testing.T) {
		// Past SETTINGS_MAX_HEADER_LIST_SIZE the answer is 431, or, when the block is too big
		// for the decoder itself, the connection is closed; never a forwarded request.
		out, _ := exec.Command("curl", "-sS", "--max-time", "10", "--http2-prior-knowledge", "-o", "/dev/null", "-w", "%{http_code}",
			"-H", "X-Big: "+strings.Repeat("a", 8000), e.url+"/").CombinedOutput()
		if s := string(out); !strings.HasSuffix(s, "431") && !strings.Contains(s, "reset") && !strings.Contains(s, "closed") {
			t.Fatalf("curl = %q, want 431 or a closed connection", s)
		}
		healthy(t)
	})
}

// writeCert writes a self-signed certificate for name and its key as PEM files, and returns
// the pool that trusts it.
func writeCert(t *testing.T, name string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	cert, pool := testcert.SelfSigned(t, name)
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	kder, err := x509.MarshalECPrivateKey(cert.PrivateKey.(*ecdsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile, pool
}
