package gateway

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.uber.org/goleak"

	"github.com/meshgate/meshgate/conf"
	"github.com/meshgate/meshgate/internal/await"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, append(await.IgnoreFasthttp(), await.IgnoreIdleConns()...)...)
}

// seen records what an upstream received.
type seen struct {
	mu   sync.Mutex
	reqs []*http.Request
	body [][]byte
}

func (s *seen) last(t *testing.T) (*http.Request, []byte) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.reqs) == 0 {
		t.Fatal("upstream saw no request")
	}
	return s.reqs[len(s.reqs)-1], s.body[len(s.body)-1]
}

// startUpstream starts a real HTTP server on loopback that records requests and answers name.
func startUpstream(t *testing.T, name string, h http.HandlerFunc) (*httptest.Server, *seen) {
	t.Helper()
	s := &seen{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		s.reqs = append(s.reqs, r.Clone(context.Background()))
		s.body = append(s.body, b)
		s.mu.Unlock()
		w.Header().Set("X-Upstream", name)
		if h != nil {
			h(w, r)
			return
		}
		fmt.Fprintf(w, "hello from %s", name)
	}))
	t.Cleanup(srv.Close)
	return srv, s
}

func hostport(srv *httptest.Server) string { return strings.TrimPrefix(srv.URL, "http://") }

// startEdge parses yaml (with {{.X}} placeholders already substituted), runs a Server on port-0
// listeners and returns the base URL of listener "public" and the admin address.
type edgeUnderTest struct {
	edge   *Server
	url    string
	addr   string
	admin  string
	cancel context.CancelFunc
	done   chan error
}

func startEdge(t *testing.T, yaml string) *edgeUnderTest {
	t.Helper()
	cfg, err := conf.Parse("test.yaml", []byte(yaml))
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	e, err := NewServer(cfg, ServerOptions{Logger: zerolog.New(io.Discard)})
	if err != nil {
		t.Fatalf("NewEdge: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	eut := &edgeUnderTest{edge: e, cancel: cancel, done: make(chan error, 1),
		addr: e.ListenerAddrs()["public"].String(), admin: e.AdminAddr().String()}
	eut.url = "http://" + eut.addr
	go func() { eut.done <- e.Run(ctx) }()
	t.Cleanup(func() { eut.stop(t) })
	waitFor(t, "edge ready", func() bool {
		resp, err := http.Get("http://" + eut.admin + "/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	return eut
}

func (e *edgeUnderTest) stop(t *testing.T) {
	t.Helper()
	if e.cancel == nil {
		return
	}
	e.cancel()
	e.cancel = nil
	select {
	case err := <-e.done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("edge did not stop within 30s")
	}
	http.DefaultClient.CloseIdleConnections()
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	await.Until(t, 10*time.Second, what, cond)
}

func minimal(upstreams ...string) string {
	return fmt.Sprintf(`
admin: { address: 127.0.0.1:0 }
listeners:
  - name: public
    address: 127.0.0.1:0
routes:
  - name: all
    match: { path_prefix: / }
    to: [ { service: origin } ]
discovery:
  static:
    origin: [ %s ]
access_log: { output: "off" }
`, strings.Join(upstreams, ", "))
}

func get(t *testing.T, url string, hdr map[string]string) (*reply, []byte) {
	t.Helper()
	lines := make([][2]string, 0, len(hdr))
	for k, v := range hdr {
		lines = append(lines, [2]string{k, v})
	}
	return getLines(t, url, lines)
}

// getLines is get with header lines in order, a name possibly repeated (Go's client sends each
// value as its own line).
func getLines(t *testing.T, url string, lines [][2]string) (*reply, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range lines {
		req.Header.Add(kv[0], kv[1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return &reply{StatusCode: resp.StatusCode, Header: resp.Header}, b
}

// reply is what get and getLines return instead of the *http.Response: they have read and
// closed its body, so callers get only what they assert on and have nothing to close.
type reply struct {
	StatusCode int
	Header     http.Header
}

// raw sends bytes on a new connection and returns everything read until the server closes or
// 5 s pass.
func raw(t *testing.T, addr, request string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, request); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, _ := io.ReadAll(c)
	return string(b)
}

func TestMinimalConfigProxies(t *testing.T) {
	t.Parallel()
	up, saw := startUpstream(t, "a", nil)
	e := startEdge(t, minimal(hostport(up)))

	resp, body := get(t, e.url+"/some/path?q=1", map[string]string{
		"Traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
	})
	if resp.StatusCode != 200 || string(body) != "hello from a" {
		t.Fatalf("got %d %q", resp.StatusCode, body)
	}
	r, _ := saw.last(t)
	if r.URL.RequestURI() != "/some/path?q=1" {
		t.Errorf("upstream saw %q", r.URL.RequestURI())
	}
	if got := r.Header.Get("X-Forwarded-For"); got != "127.0.0.1" {
		t.Errorf("X-Forwarded-For = %q", got)
	}
	if got := r.Header.Get("X-Forwarded-Proto"); got != "http" {
		t.Errorf("X-Forwarded-Proto = %q", got)
	}
	if got := r.Header.Get("X-Forwarded-Host"); got != e.addr {
		t.Errorf("X-Forwarded-Host = %q, want %q", got, e.addr)
	}
	if r.Host != e.addr {
		t.Errorf("upstream Host = %q, want the client's %q", r.Host, e.addr)
	}
	id := r.Header.Get("X-Request-Id")
	if len(id) != 32 || resp.Header.Get("X-Request-Id") != id {
		t.Errorf("request id upstream %q, response %q", id, resp.Header.Get("X-Request-Id"))
	}
	if got := r.Header.Get("Traceparent"); got != "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01" {
		t.Errorf("traceparent = %q", got)
	}
	if resp.Header.Get("X-Upstream") != "a" {
		t.Errorf("response headers not forwarded: %v", resp.Header)
	}
}

// trustLoopback makes the test client a trusted proxy hop of minimal()'s listener.
func trustLoopback(cfg string) string {
	return strings.Replace(cfg, "    address: 127.0.0.1:0\n", "    address: 127.0.0.1:0\n    trusted_proxies: [ 127.0.0.1 ]\n", 1)
}

func TestRequestIDKeptWhenValid(t *testing.T) {
	t.Parallel()
	up, saw := startUpstream(t, "a", nil)
	// From an untrusted client the id is the gateway's: a client must not pick the id that
	// correlates logs (and later traces) across the mesh.
	plain := startEdge(t, minimal(hostport(up)))
	get(t, plain.url+"/", map[string]string{"X-Request-Id": "abc-123"})
	r, _ := saw.last(t)
	if got := r.Header.Get("X-Request-Id"); got == "abc-123" || len(got) != 32 {
		t.Errorf("an untrusted client's id reached the upstream: %q", got)
	}

	e := startEdge(t, trustLoopback(minimal(hostport(up))))
	get(t, e.url+"/", map[string]string{"X-Request-Id": "abc-123"})
	r, _ = saw.last(t)
	if got := r.Header.Get("X-Request-Id"); got != "abc-123" {
		t.Errorf("kept id = %q", got)
	}
	get(t, e.url+"/", map[string]string{"X-Request-Id": "bad id with spaces"})
	r, _ = saw.last(t)
	if got := r.Header.Get("X-Request-Id"); got == "bad id with spaces" || len(got) != 32 {
		t.Errorf("invalid id not replaced: %q", got)
	}
}

func TestHopByHopHeadersStripped(t *testing.T) {
	t.Parallel()
	up, saw := startUpstream(t, "a", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Connection", "X-Internal")
		w.Header().Set("X-Internal", "secret")
		w.Header().Set("Keep-Alive", "timeout=5")
		io.WriteString(w, "ok")
	})
	e := startEdge(t, minimal(hostport(up)))
	out := raw(t, e.addr, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close, X-Hop\r\nX-Hop: 1\r\n"+
		"Keep-Alive: timeout=9\r\nProxy-Authorization: Basic Zm9vOmJhcg==\r\nTe: trailers\r\nUpgrade: websocket\r\nX-Keep: yes\r\n\r\n")
	if !strings.HasPrefix(out, "HTTP/1.1 200") {
		t.Fatalf("response: %q", out)
	}
	r, _ := saw.last(t)
	for _, h := range []string{"X-Hop", "Keep-Alive", "Proxy-Authorization", "Te", "Upgrade"} {
		if v := r.Header.Get(h); v != "" {
			t.Errorf("upstream received hop-by-hop %s: %q", h, v)
		}
	}
	if r.Header.Get("X-Keep") != "yes" {
		t.Errorf("end-to-end header lost")
	}
	if strings.Contains(out, "X-Internal") || strings.Contains(out, "timeout=5") {
		t.Errorf("response hop-by-hop headers leaked to client:\n%s", out)
	}
}

func TestForwardedForTrust(t *testing.T) {
	t.Parallel()
	up, saw := startUpstream(t, "a", nil)
	untrusted := startEdge(t, minimal(hostport(up)))
	get(t, untrusted.url+"/", map[string]string{"X-Forwarded-For": "6.6.6.6", "X-Forwarded-Proto": "https"})
	r, _ := saw.last(t)
	if got := r.Header.Get("X-Forwarded-For"); got != "127.0.0.1" {
		t.Errorf("untrusted hop: X-Forwarded-For = %q, want the peer only", got)
	}
	if got := r.Header.Get("X-Forwarded-Proto"); got != "http" {
		t.Errorf("untrusted hop: X-Forwarded-Proto = %q", got)
	}

	trusted := startEdge(t, trustLoopback(minimal(hostport(up))))
	get(t, trusted.url+"/", map[string]string{"X-Forwarded-For": "6.6.6.6", "X-Forwarded-Proto": "https"})
	r, _ = saw.last(t)
	if got := r.Header.Get("X-Forwarded-For"); got != "6.6.6.6, 127.0.0.1" {
		t.Errorf("trusted hop: X-Forwarded-For = %q", got)
	}
	if got := r.Header.Get("X-Forwarded-Proto"); got != "https" {
		t.Errorf("trusted hop: X-Forwarded-Proto = %q", got)
	}
}

func TestBadRequests(t *testing.T) {
	t.Parallel()
	up, saw := startUpstream(t, "a", nil)
	cfg := strings.Replace(minimal(hostport(up)), "address: 127.0.0.1:0\nroutes",
		"address: 127.0.0.1:0\n    max_header_bytes: 4KiB\n    max_body_bytes: 1KiB\n    stream_threshold: 512B\nroutes", 1)
	e := startEdge(t, cfg)
	big := strings.Repeat("a", 8<<10)
	cases := []struct {
		name, req string
		status    string
		reason    string
	}{
		{"underscore header", "GET / HTTP/1.1\r\nHost: x\r\nX_User: admin\r\n\r\n", "400", "invalid_header_name"},
		{"header too large", "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + big + "\r\n\r\n", "431", "header_too_large"},
		{"body too large by length", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2048\r\n\r\n" + strings.Repeat("b", 2048), "413", "body_too_large"},
		{"chunked body too large", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n800\r\n" + strings.Repeat("c", 2048) + "\r\n0\r\n\r\n", "413", "body_too_large"},
		{"bad content length", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n", "400", "bad_request"},
		{"missing host", "GET / HTTP/1.1\r\n\r\n", "400", ""},
		{"bad chunk", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "400", ""},
		{"length and chunked", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "400", "bad_request"},
		{"two lengths", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", "400", ""},
		{"chunked not last", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n", "400", ""},
		{"two hosts", "GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", "400", ""},
		{"broken percent escape", "GET /a%zz HTTP/1.1\r\nHost: x\r\n\r\n", "400", "bad_request"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out := raw(t, e.addr, tc.req)
			if !strings.HasPrefix(out, "HTTP/1.1 "+tc.status) {
				t.Fatalf("want %s, got:\n%.300s", tc.status, out)
			}
			if tc.reason != "" && !strings.Contains(out, `"error":"`+tc.reason+`"`) {
				t.Errorf("want reason %s in:\n%.300s", tc.reason, out)
			}
			// raw returns only once the server closed the connection (or after 5 s).
			if !strings.Contains(strings.ToLower(out), "connection: close") {
				t.Errorf("connection not closed after a bad request:\n%.300s", out)
			}
		})
	}
	saw.mu.Lock()
	n := len(saw.reqs)
	saw.mu.Unlock()
	if n != 0 {
		t.Errorf("upstream received %d bad requests", n)
	}
}

func TestHTTP10WithoutHostGetsOne(t *testing.T) {
	t.Parallel()
	up, saw := startUpstream(t, "a", nil)
	e := startEdge(t, minimal(hostport(up)))
	out := raw(t, e.addr, "GET /old HTTP/1.0\r\n\r\n")
	if !strings.Contains(out, " 200 ") || !strings.HasSuffix(out, "hello from a") {
		t.Fatalf("HTTP/1.0 request without Host:\n%s", out)
	}
	if r, _ := saw.last(t); r.Host != e.addr {
		t.Errorf("upstream Host = %q, want the address the client reached (%s)", r.Host, e.addr)
	}
}

func TestAbsoluteFormRoutesOnTargetAuthority(t *testing.T) {
	t.Parallel()
	a, sawA := startUpstream(t, "a", nil)
	b, _ := startUpstream(t, "b", nil)
	cfg := fmt.Sprintf(`
admin: { address: 127.0.0.1:0 }
listeners: [ { name: public, address: 127.0.0.1:0 } ]
routes:
  - name: api
    match: { hosts: [ api.example.com ], path_prefix: / }
    to: [ { service: a } ]
  - name: other
    match: { path_prefix: / }
    to: [ { service: b } ]
discovery: { static: { a: [ %s ], b: [ %s ] } }
access_log: { output: "off" }
`, hostport(a), hostport(b))
	e := startEdge(t, cfg)
	out := raw(t, e.addr, "GET http://api.example.com/x HTTP/1.1\r\nHost: evil.example.com\r\nConnection: close\r\n\r\n")
	if !strings.HasPrefix(out, "HTTP/1.1 200") || !strings.HasSuffix(out, "hello from a") {
		t.Fatalf("absolute-form not routed on its authority:\n%s", out)
	}
	r, _ := sawA.last(t)
	if r.Host != "api.example.com" || r.URL.RequestURI() != "/x" {
		t.Errorf("upstream saw Host %q target %q", r.Host, r.URL.RequestURI())
	}
	// Host header routing with a port.
	out = raw(t, e.addr, "GET /y HTTP/1.1\r\nHost: API.example.com:8080\r\nConnection: close\r\n\r\n")
	if !strings.HasSuffix(out, "hello from a") {
		t.Errorf("host with port and upper case not routed:\n%s", out)
	}
}

func TestSlowlorisHeadTimeout(t *testing.T) {
	t.Parallel()
	up, _ := startUpstream(t, "a", nil)
	cfg := strings.Replace(minimal(hostport(up)), "address: 127.0.0.1:0\nroutes", "address: 127.0.0.1:0\n    read_header_timeout: 300ms\nroutes", 1)
	e := startEdge(t, cfg)
	c, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
	// The server must close the connection on its own; give it far longer than the timeout.
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(c)
	if ne := net.Error(nil); errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("server kept a trickling connection open: %v", err)
	}
	if len(b) > 0 && !strings.HasPrefix(string(b), "HTTP/1.1 408") {
		t.Errorf("unexpected answer to a slow head: %q", b)
	}
}

func TestStreamingBodiesBothWays(t *testing.T) {
	t.Parallel()
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	up, saw := startUpstream(t, "a", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/chunked" {
			w.(http.Flusher).Flush() // forces chunked encoding
		}
		w.Write(big)
	})
	e := startEdge(t, minimal(hostport(up)))

	for _, p := range []string{"/download", "/chunked"} {
		resp, body := get(t, e.url+p, nil)
		if resp.StatusCode != 200 || sha256.Sum256(body) != sha256.Sum256(big) {
			t.Fatalf("%s: status %d, %d bytes", p, resp.StatusCode, len(body))
		}
	}

	resp, err := http.Post(e.url+"/upload", "application/octet-stream", bytes.NewReader(big))
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("upload status %d", resp.StatusCode)
	}
	_, got := saw.last(t)
	if sha256.Sum256(got) != sha256.Sum256(big) {
		t.Fatalf("upstream received %d bytes, want %d intact", len(got), len(big))
	}
}

func TestResponseSizeBounded(t *testing.T) {
	t.Parallel()
	up, _ := startUpstream(t, "a", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/length" {
			w.Header().Set("Content-Length", "300000")
		}
		w.Write(bytes.Repeat([]byte("x"), 300000))
	})
	cfg := minimal(hostport(up)) + "services: { origin: { max_response_bytes: 200KiB } }\n"
	e := startEdge(t, cfg)
	// Known length over the limit: refused before anything is sent.
	resp, body := get(t, e.url+"/length", nil)
	if resp.StatusCode != 502 || !strings.Contains(string(body), "upstream_response_too_large") {
		t.Fatalf("got %d %.200s", resp.StatusCode, body)
	}
	// Chunked: the status line is gone by the time the limit is hit, so the only honest signal
	// is an aborted body. The client must never receive the whole thing as if it were fine.
	r, err := http.Get(e.url + "/chunked")
	if err == nil {
		n, rerr := io.Copy(io.Discard, r.Body)
		r.Body.Close()
		if rerr == nil {
			t.Fatalf("chunked oversized response delivered complete (%d bytes)", n)
		}
		if n > 200<<10+64<<10 {
			t.Errorf("forwarded %d bytes past a 200 KiB limit", n)
		}
	}
}

func TestNoRouteIs404JSON(t *testing.T) {
	t.Parallel()
	up, _ := startUpstream(t, "a", nil)
	cfg := strings.Replace(minimal(hostport(up)), "path_prefix: /", "path_prefix: /api", 1)
	e := startEdge(t, cfg)
	resp, body := get(t, e.url+"/nope", nil)
	var v map[string]any
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatalf("error body is not JSON: %q", body)
	}
	if resp.StatusCode != 404 || v["error"] != "no_route" || v["request_id"] == "" {
		t.Errorf("got %d %v", resp.StatusCode, v)
	}
}

func TestDeadUpstreamLosesNoGET(t *testing.T) {
	t.Parallel()
	live, _ := startUpstream(t, "live", nil)
	dead, _ := startUpstream(t, "dead", nil)
	deadAddr := hostport(dead)
	dead.Close() // connection refused from now on
	e := startEdge(t, minimal(hostport(live), deadAddr))
	for i := 0; i < 50; i++ {
		resp, body := get(t, e.url+"/", nil)
		if resp.StatusCode != 200 || string(body) != "hello from live" {
			t.Fatalf("request %d: %d %s", i, resp.StatusCode, body)
		}
	}
	// A POST that could not connect never reached anyone, so it is retried too.
	resp, err := http.Post(e.url+"/", "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("POST after connect failure: %d", resp.StatusCode)
	}
}

func TestUpstreamKilledMidLoad(t *testing.T) {
	t.Parallel()
	a, _ := startUpstream(t, "a", nil)
	b, _ := startUpstream(t, "b", nil)
	e := startEdge(t, minimal(hostport(a), hostport(b)))
	client := &http.Client{Timeout: 10 * time.Second}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failures []string
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 100; i++ {
				resp, err := client.Get(e.url + "/")
				if err != nil {
					mu.Lock()
					failures = append(failures, err.Error())
					mu.Unlock()
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					mu.Lock()
					failures = append(failures, resp.Status)
					mu.Unlock()
				}
			}
		}()
	}
	// Kill b while the load runs: established keep-alive connections are cut too.
	waitFor(t, "load on b", func() bool { return true })
	b.CloseClientConnections()
	b.Close()
	wg.Wait()
	if len(failures) > 0 {
		t.Fatalf("%d GETs failed while an instance died, first: %s", len(failures), failures[0])
	}
}

func TestRouteTimeoutIs504(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	up, _ := startUpstream(t, "slow", func(_ http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	t.Cleanup(func() { close(release) })
	cfg := strings.Replace(minimal(hostport(up)), "to: [ { service: origin } ]", "to: [ { service: origin } ]\n    timeout: 200ms", 1)
	e := startEdge(t, cfg)
	resp, body := get(t, e.url+"/", nil)
	if resp.StatusCode != 504 || !strings.Contains(string(body), "upstream_timeout") {
		t.Fatalf("got %d %s", resp.StatusCode, body)
	}
}

func TestWeightedSplitAndRewrite(t *testing.T) {
	t.Parallel()
	a, sawA := startUpstream(t, "a", nil)
	b, _ := startUpstream(t, "b", nil)
	cfg := fmt.Sprintf(`
admin: { address: 127.0.0.1:0 }
listeners: [ { name: public, address: 127.0.0.1:0 } ]
routes:
  - name: split
    match: { path_prefix: /api/ }
    rewrite: { path_prefix: / }
    to: [ { service: a, weight: 3 }, { service: b, weight: 1 } ]
discovery: { static: { a: [ %s ], b: [ %s ] } }
access_log: { output: "off" }
`, hostport(a), hostport(b))
	e := startEdge(t, cfg)
	counts := map[string]int{}
	for i := 0; i < 400; i++ {
		_, body := get(t, e.url+"/api/v1/items?x=%2F", nil)
		counts[string(body)]++
	}
	if ca, cb := counts["hello from a"], counts["hello from b"]; ca < 240 || ca > 360 || ca+cb != 400 {
		t.Errorf("3:1 split gave a=%d b=%d", ca, cb)
	}
	r, _ := sawA.last(t)
	if r.URL.Path != "/v1/items" || r.URL.RawQuery != "x=%2F" {
		t.Errorf("rewrite: upstream saw path %q query %q", r.URL.Path, r.URL.RawQuery)
	}
}

func TestReloadSwapsRoutesAndKeepsInFlight(t *testing.T) {
	t.Parallel()
	a, _ := startUpstream(t, "a", nil)
	started := make(chan struct{}, 1)
	release := make(chan struct{})
	slow, _ := startUpstream(t, "slow", func(w http.ResponseWriter, _ *http.Request) {
		started <- struct{}{}
		<-release
		io.WriteString(w, "slow done")
	})
	dir := t.TempDir()
	path := filepath.Join(dir, "meshgate.yaml")
	v1 := minimal(hostport(slow))
	if err := os.WriteFile(path, []byte(v1), 0o644); err != nil {
		t.Fatal(err)
	}
	e := startEdge(t, v1)

	type result struct {
		code int
		body string
	}
	inflight := make(chan result, 1)
	go func() {
		resp, err := http.Get(e.url + "/")
		if err != nil {
			inflight <- result{0, err.Error()}
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		inflight <- result{resp.StatusCode, string(b)}
	}()
	<-started

	v2, err := conf.Parse("v2.yaml", []byte(minimal(hostport(a))))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.edge.Reload(v2); err != nil {
		t.Fatalf("reload: %v", err)
	}
	if _, body := get(t, e.url+"/", nil); string(body) != "hello from a" {
		t.Errorf("after reload got %q", body)
	}
	close(release)
	if r := <-inflight; r.code != 200 || r.body != "slow done" {
		t.Errorf("in-flight request across reload: %d %q", r.code, r.body)
	}

	// A reload that changes a listener is refused and the running config stays.
	bad, err := conf.Parse("bad.yaml", []byte(strings.Replace(minimal(hostport(a)), "name: public", "name: renamed", 1)))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.edge.Reload(bad); err == nil {
		t.Error("listener change accepted by reload")
	}
	if _, body := get(t, e.url+"/", nil); string(body) != "hello from a" {
		t.Errorf("after rejected reload got %q", body)
	}
}

func TestDrainFinishesInFlight(t *testing.T) {
	t.Parallel()
	started := make(chan struct{}, 1)
	release := make(chan struct{})
	slow, _ := startUpstream(t, "slow", func(w http.ResponseWriter, _ *http.Request) {
		started <- struct{}{}
		<-release
		io.WriteString(w, "finished")
	})
	e := startEdge(t, minimal(hostport(slow)))
	got := make(chan string, 1)
	go func() {
		c, err := net.Dial("tcp", e.addr)
		if err != nil {
			got <- err.Error()
			return
		}
		defer c.Close()
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			got <- err.Error()
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		got <- resp.Status + " " + string(b) + " close=" + fmt.Sprint(resp.Close)
	}()
	<-started
	e.cancel()
	waitFor(t, "ready 503", func() bool {
		resp, err := http.Get("http://" + e.admin + "/ready")
		if err != nil {
			return true // admin already gone is also "not ready"
		}
		resp.Body.Close()
		return resp.StatusCode == 503
	})
	close(release)
	if r := <-got; r != "200 OK finished close=true" {
		t.Errorf("in-flight during drain: %s", r)
	}
	select {
	case err := <-e.done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return after drain")
	}
	e.cancel = nil
}

func TestHeadKeepsContentLength(t *testing.T) {
	t.Parallel()
	up, _ := startUpstream(t, "a", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1234")
		if r.Method != http.MethodHead {
			w.Write(bytes.Repeat([]byte("z"), 1234))
		}
	})
	e := startEdge(t, minimal(hostport(up)))
	out := raw(t, e.addr, "HEAD / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	if !strings.HasPrefix(out, "HTTP/1.1 200") || !strings.Contains(out, "Content-Length: 1234") || strings.Contains(out, "zzz") {
		t.Fatalf("HEAD response:\n%s", out)
	}
}

func TestAdminViewsMetricsAndAccessLog(t *testing.T) {
	t.Parallel()
	up, _ := startUpstream(t, "a", nil)
	logPath := filepath.Join(t.TempDir(), "access.log")
	cfg := strings.Replace(trustLoopback(minimal(hostport(up))), `access_log: { output: "off" }`, "access_log: { output: "+logPath+" }", 1)
	e := startEdge(t, cfg)
	get(t, e.url+"/x", map[string]string{"X-Request-Id": "trace-me"})
	get(t, e.url+"/y", nil)

	_, metrics := get(t, "http://"+e.admin+"/metrics", nil)
	for _, want := range []string{
		`meshgate_requests_total{class="2xx",route="all"} 2`,
		`meshgate_request_duration_seconds_count{route="all"} 2`,
		`meshgate_downstream_connections_total{listener="public"}`,
	} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	_, clusters := get(t, "http://"+e.admin+"/clusters", nil)
	var cs []struct {
		Name  string
		Hosts []struct {
			Address  string
			Requests uint64
		}
	}
	if err := json.Unmarshal(clusters, &cs); err != nil {
		t.Fatalf("/clusters: %v: %s", err, clusters)
	}
	if len(cs) != 1 || cs[0].Name != "origin" || len(cs[0].Hosts) != 1 || cs[0].Hosts[0].Requests != 2 {
		t.Errorf("/clusters = %s", clusters)
	}

	_, routes := get(t, "http://"+e.admin+"/routes", nil)
	if !strings.Contains(string(routes), `"name": "all"`) {
		t.Errorf("/routes = %s", routes)
	}
	_, config := get(t, "http://"+e.admin+"/config", nil)
	if !strings.Contains(string(config), "read_header_timeout: 10s") {
		t.Errorf("/config does not show effective defaults:\n%s", config)
	}

	// The access log is written asynchronously: wait (bounded) for the line.
	waitFor(t, "access log line", func() bool {
		b, _ := os.ReadFile(logPath)
		return bytes.Contains(b, []byte(`"request_id":"trace-me"`))
	})
	b, _ := os.ReadFile(logPath)
	var entry map[string]any
	line := b[:bytes.IndexByte(b, '\n')]
	if err := json.Unmarshal(line, &entry); err != nil {
		t.Fatalf("access log line is not JSON: %s", line)
	}
	if entry["status"] != float64(200) || entry["route"] != "all" || entry["service"] != "origin" || entry["upstream"] != hostport(up) {
		t.Errorf("access log entry: %s", line)
	}
}

func TestRingHashIsSticky(t *testing.T) {
	t.Parallel()
	a, _ := startUpstream(t, "a", nil)
	b, _ := startUpstream(t, "b", nil)
	c, _ := startUpstream(t, "c", nil)
	cfg := minimal(hostport(a), hostport(b), hostport(c)) +
		"services: { origin: { load_balancer: { policy: ring_hash, hash: { header: X-User } } } }\n"
	e := startEdge(t, cfg)
	seenBy := map[string]bool{}
	for u := 0; u < 30; u++ {
		user := fmt.Sprintf("user-%d", u)
		_, first := get(t, e.url+"/", map[string]string{"X-User": user})
		for i := 0; i < 5; i++ {
			if _, again := get(t, e.url+"/", map[string]string{"X-User": user}); string(again) != string(first) {
				t.Fatalf("%s moved from %q to %q", user, first, again)
			}
		}
		seenBy[string(first)] = true
	}
	if len(seenBy) < 2 {
		t.Errorf("30 users all hashed to %v", seenBy)
	}
}
