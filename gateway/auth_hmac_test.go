package gateway

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/meshgate/meshgate/conf"
	"github.com/meshgate/meshgate/gateway/ratelimit/redistest"
)

const hmacSecret = "client-one-secret-0123456789"

// signHMAC returns the headers a client library sends for a signed request: X-Date, Digest
// and Authorization over (request-target), host, x-date and digest.
func signHMAC(method, uri, host string, body []byte, secret string, date time.Time) map[string]string {
	sum := sha256.Sum256(body)
	h := map[string]string{
		"X-Date": date.UTC().Format(http.TimeFormat),
		"Digest": "SHA-256=" + base64.StdEncoding.EncodeToString(sum[:]),
	}
	signing := "(request-target): " + strings.ToLower(method) + " " + uri + "\nhost: " + host +
		"\nx-date: " + h["X-Date"] + "\ndigest: " + h["Digest"]
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(signing))
	h["Authorization"] = `HMAC-SHA256 keyId="client-one",headers="(request-target) host x-date digest",signature="` +
		base64.StdEncoding.EncodeToString(m.Sum(nil)) + `"`
	return h
}

// echoUpstream answers every request with the exact body it received.
func echoUpstream(t *testing.T) (*httptest.Server, *seen) {
	t.Helper()
	s := &seen{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		s.mu.Lock()
		s.reqs = append(s.reqs, r.Clone(r.Context()))
		s.body = append(s.body, b)
		s.mu.Unlock()
		_, _ = w.Write(b)
	}))
	t.Cleanup(srv.Close)
	return srv, s
}

// hmacEdge starts an edge whose every route is behind an hmac policy (host signed).
func hmacEdge(t *testing.T, upstream, listenerExtra string) (*edgeUnderTest, string) {
	t.Helper()
	secrets := filepath.Join(t.TempDir(), "secrets")
	if err := os.WriteFile(secrets, []byte("client-one:"+hmacSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := policyConfig(upstream, `
  - { name: all, match: { path_prefix: / }, to: [ { service: origin } ], policies: [ signed ] }`, `
  signed: { hmac: { secrets_file: `+secrets+`, headers: [ host ] } }`, "")
	if listenerExtra != "" {
		cfg = strings.Replace(cfg, "    address: 127.0.0.1:0\n", "    address: 127.0.0.1:0\n"+listenerExtra, 1)
	}
	return startEdge(t, cfg), cfg
}

// hideLength makes net/http send a body chunked.
type hideLength struct{ io.Reader }

// TestHMACSignedBodyReachesUpstream: a verified POST reaches the real upstream with its body
// byte for byte, sent with Content-Length and chunked, small (in memory) and large (streamed
// past stream_threshold).
func TestHMACSignedBodyReachesUpstream(t *testing.T) {
	t.Parallel()
	up, _ := echoUpstream(t)
	e, _ := hmacEdge(t, hostport(up), "")
	for _, size := range []int{9, 1 << 20} {
		for _, chunked := range []bool{false, true} {
			body := make([]byte, size)
			_, _ = rand.Read(body)
			var rd io.Reader = bytes.NewReader(body)
			if chunked {
				rd = hideLength{rd}
			}
			req, err := http.NewRequest(http.MethodPost, e.url+"/v1/orders?id=7", rd)
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range signHMAC("POST", "/v1/orders?id=7", e.addr, body, hmacSecret, time.Now()) {
				req.Header.Set(k, v)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || resp.StatusCode != 200 || !bytes.Equal(got, body) {
				t.Fatalf("size %d chunked %v: %d, upstream echoed %d bytes (want %d) %v: %.100q",
					size, chunked, resp.StatusCode, len(got), len(body), err, got)
			}
		}
	}
}

// TestHMACBadSignatureRefusedWithoutBody: a request claiming a 200 MiB body with a garbage
// signature (known key id, fresh date) is answered 401 while most of its body has not been
// sent: the signature is checked before the body is read. (The listener itself buffers up to
// stream_threshold, 64 KiB, before any filter runs; so that much is sent.)
func TestHMACBadSignatureRefusedWithoutBody(t *testing.T) {
	t.Parallel()
	up, seen := echoUpstream(t)
	// A limit above the claimed size: the refusal must come from the signature check.
	e, _ := hmacEdge(t, hostport(up), "    max_body_bytes: 512MiB\n")
	h := signHMAC("POST", "/upload", "api.test", []byte("x"), "guessed-secret-0000000000000", time.Now())
	var b strings.Builder
	b.WriteString("POST /upload HTTP/1.1\r\nHost: api.test\r\nContent-Length: " + strconv.Itoa(200<<20) + "\r\n")
	for k, v := range h {
		b.WriteString(k + ": " + v + "\r\n")
	}
	b.WriteString("\r\n")
	b.WriteString(strings.Repeat("A", 128<<10))
	c, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, b.String()); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no answer while the body was withheld (the filter waited for it?): %v", err)
	}
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	if resp.StatusCode != 401 || !strings.Contains(string(msg), "hmac_bad_signature") {
		t.Fatalf("got %d %s, want 401 hmac_bad_signature", resp.StatusCode, msg)
	}
	if n := requests(seen); n != 0 {
		t.Fatalf("upstream saw %d requests", n)
	}
}

// readRSS is this process's resident set size (the edge under test runs in it).
func readRSS() (int64, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/self/status")
}

func vmRSS(t *testing.T) int64 {
	t.Helper()
	n, err := readRSS()
	if err != nil {
		t.Skipf("cannot read the RSS: %v", err)
	}
	return n
}

// TestHMACChunkedFloodBounded: a validly signed request streaming a 200 MiB chunked body to an
// hmac route with max_body_bytes 1 MiB gets 413, nothing reaches the upstream, and the process
// grows by far less than the body. Not parallel: RSS is the whole process's.
func TestHMACChunkedFloodBounded(t *testing.T) {
	up, seen := echoUpstream(t)
	e, _ := hmacEdge(t, hostport(up), "    max_body_bytes: 1MiB\n")
	before := vmRSS(t)

	c, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Minute))
	var b strings.Builder
	b.WriteString("POST /upload HTTP/1.1\r\nHost: api.test\r\nTransfer-Encoding: chunked\r\n")
	for k, v := range signHMAC("POST", "/upload", "api.test", []byte("whatever"), hmacSecret, time.Now()) {
		b.WriteString(k + ": " + v + "\r\n")
	}
	b.WriteString("\r\n")
	if _, err := io.WriteString(c, b.String()); err != nil {
		t.Fatal(err)
	}
	peak := make(chan int64, 1)
	go func() { // the flood, generated on the fly; ends when the edge stops reading
		chunk := append(append([]byte(fmt.Sprintf("%x\r\n", 64<<10)), bytes.Repeat([]byte("A"), 64<<10)...), "\r\n"...)
		var top int64
		for sent := 0; sent < 200<<20; sent += 64 << 10 {
			if _, err := c.Write(chunk); err != nil {
				break
			}
			if sent%(16<<20) == 0 {
				if n, err := readRSS(); err == nil {
					top = max(top, n)
				}
			}
		}
		_, _ = io.WriteString(c, "0\r\n\r\n")
		peak <- top
	}()
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no response: %v", err)
	}
	resp.Body.Close()
	after := vmRSS(t)
	_ = c.Close() // ends the writer
	top := max(<-peak, after)
	const bound = 64 << 20
	t.Logf("VmRSS before %d MiB, peak %d MiB", before>>20, top>>20)
	if top-before > bound {
		t.Errorf("RSS grew by %d MiB during a refused 200 MiB body, bound %d MiB", (top-before)>>20, bound>>20)
	}
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("status %d, want 413", resp.StatusCode)
	}
	if n := requests(seen); n != 0 {
		t.Errorf("upstream saw %d requests", n)
	}
}

// TestHMACReplayRefusedAfterReload: the replay cache is kept across a reload, so a captured
// signed request cannot be sent again right after one.
func TestHMACReplayRefusedAfterReload(t *testing.T) {
	t.Parallel()
	up, _ := echoUpstream(t)
	e, cfg := hmacEdge(t, hostport(up), "")
	body := []byte(`{"qty":1}`)
	h := signHMAC("POST", "/v1/orders", e.addr, body, hmacSecret, time.Now())
	send := func() (int, string) { return postOrder(t, e, body, h) }
	if code, b := send(); code != 200 {
		t.Fatalf("first send: %d %s", code, b)
	}
	c, err := conf.Parse("test.yaml", []byte(strings.Replace(cfg, "name: all", "name: all-v2", 1)))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.edge.Reload(c); err != nil {
		t.Fatal(err)
	}
	if code, b := send(); code != 401 || !strings.Contains(b, "hmac_replayed") {
		t.Fatalf("replay after a reload: %d %s, want 401 hmac_replayed", code, b)
	}
}

// TestHMACRedisReplayAcrossEdges: with replay: redis, two edges on one real Redis share the
// replay check: a signed request accepted by one is refused as a replay by the other.
func TestHMACRedisReplayAcrossEdges(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	up, _ := echoUpstream(t)
	secrets := filepath.Join(t.TempDir(), "secrets")
	if err := os.WriteFile(secrets, []byte("client-one:"+hmacSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := policyConfig(hostport(up), `
  - { name: all, match: { path_prefix: / }, to: [ { service: origin } ], policies: [ signed ] }`, `
  signed: { hmac: { secrets_file: `+secrets+`, replay: redis } }`, "redis: { address: "+srv.Addr+", timeout: 1s }\n")
	a, b := startEdge(t, cfg), startEdge(t, cfg)
	body := []byte(`{"qty":1}`)
	// host is not signed here: the two edges listen on different addresses.
	sum := sha256.Sum256(body)
	h := map[string]string{"X-Date": time.Now().UTC().Format(http.TimeFormat), "Digest": "SHA-256=" + base64.StdEncoding.EncodeToString(sum[:])}
	m := hmac.New(sha256.New, []byte(hmacSecret))
	m.Write([]byte("(request-target): post /v1/orders\nx-date: " + h["X-Date"] + "\ndigest: " + h["Digest"]))
	h["Authorization"] = `HMAC-SHA256 keyId="client-one",headers="(request-target) x-date digest",signature="` +
		base64.StdEncoding.EncodeToString(m.Sum(nil)) + `"`
	send := func(e *edgeUnderTest) (int, string) { return postOrder(t, e, body, h) }
	if code, out := send(a); code != 200 || out != string(body) {
		t.Fatalf("first, at a: %d %s", code, out)
	}
	if code, out := send(b); code != 401 || !strings.Contains(out, "hmac_replayed") {
		t.Fatalf("replay at b: %d %s, want 401 hmac_replayed", code, out)
	}
}

// postOrder POSTs body to /v1/orders of e with the headers h and returns the status and body.
func postOrder(t *testing.T, e *edgeUnderTest, body []byte, h map[string]string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.url+"/v1/orders", bytes.NewReader(body))
	for k, v := range h {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(out)
}
