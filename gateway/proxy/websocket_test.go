package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/meshgate/meshgate/gateway/filter"
	"github.com/meshgate/meshgate/gateway/route"
	"github.com/meshgate/meshgate/mesh/upstream"
)

// fakeUpgrader is a fakeUpstream that also takes upgrades: it records the handshake it was sent
// and answers 101 (with a pipe for the connection) or, with refuse set, a plain response.
type fakeUpgrader struct {
	fakeUpstream
	refuse     int    // answer this status instead of 101
	upgradeTo  string // the 101's Upgrade value; "" = websocket
	upgradeErr error
	headers    [][2]string // the 101's extra fields

	upgrades []sentRequest
	peer     net.Conn      // the test's end of the last upgraded connection
	peers    chan net.Conn // if set, also gets each one
}

var _ Upgrader = (*fakeUpgrader)(nil)

func (f *fakeUpgrader) Upgrade(out *fasthttp.Request, resp *fasthttp.Response, call *upstream.Call) (net.Conn, error) {
	s := sentRequest{method: string(out.Header.Method()), uri: string(out.RequestURI()), host: string(out.Header.Host()), call: *call}
	for k, v := range out.Header.All() {
		if string(k) != fasthttp.HeaderHost {
			s.headers = append(s.headers, [2]string{string(k), string(v)})
		}
	}
	f.mu.Lock()
	f.upgrades = append(f.upgrades, s)
	f.mu.Unlock()
	call.Address, call.Attempts = "192.0.2.10:8080", 1
	if f.upgradeErr != nil {
		return nil, f.upgradeErr
	}
	if f.refuse != 0 {
		resp.SetStatusCode(f.refuse)
		resp.Header.Set("X-Request-Id", "upstream-id")
		body := "no websocket here"
		resp.SetBodyStream(strings.NewReader(body), len(body))
		return nil, nil
	}
	resp.SetStatusCode(fasthttp.StatusSwitchingProtocols)
	up := f.upgradeTo
	if up == "" {
		up = "websocket"
	}
	resp.Header.Set("Upgrade", up)
	resp.Header.Set("Connection", "Upgrade")
	for _, kv := range f.headers {
		resp.Header.Add(kv[0], kv[1])
	}
	a, b := net.Pipe()
	f.mu.Lock()
	f.peer = b
	f.mu.Unlock()
	if f.peers != nil {
		f.peers <- b
	}
	return a, nil
}

func (f *fakeUpgrader) onlyUpgrade(t *testing.T) *sentRequest {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.upgrades) != 1 {
		t.Fatalf("backend received %d upgrades, want 1", len(f.upgrades))
	}
	return &f.upgrades[0]
}

// wsEngine is a Handler with one route to up, websocket on unless off.
func wsEngine(t *testing.T, up *fakeUpgrader, off bool, filters ...filter.Filter) *engine {
	t.Helper()
	e := newEngine(t, Options{}, testRoute{spec: route.Spec{Name: "all", PathPrefix: "/"}, up: &up.fakeUpstream, filters: filters})
	// newEngine binds the embedded fakeUpstream; the route must hold the upgrader itself.
	g := e.h.Generation()
	g.routes[0].Backends[0].Cluster = up
	g.routes[0].DisableWebSocket = off
	t.Cleanup(func() {
		up.mu.Lock()
		defer up.mu.Unlock()
		if up.peer != nil {
			up.peer.Close()
		}
	})
	return e
}

const wsHandshake = "GET /chat?room=1 HTTP/1.1\r\nHost: app.example\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n" +
	"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: chat\r\n"

// A WebSocket handshake goes to the upgrader with only the upgrade's own hop-by-hop fields, and
// everything else the request path does (X-Forwarded-*, the request id, re-encoded target); the
// response is hijacked with the upstream's 101 fields and one request id.
func TestServeWebSocketForwarded(t *testing.T) {
	t.Parallel()
	up := &fakeUpgrader{fakeUpstream: fakeUpstream{name: "svc"},
		headers: [][2]string{{"Sec-WebSocket-Accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="}, {"X-Request-Id", "upstream-id"},
			{"Keep-Alive", "timeout=5"}, {"X-Origin", "ws"}}}
	e := wsEngine(t, up, false)
	ctx := e.serve(t, remoteClient, wsHandshake+"Keep-Alive: timeout=5\r\nTE: trailers\r\nProxy-Authorization: Basic eDp5\r\n"+
		"X-Request-Id: client-id\r\n\r\n")
	if ctx.Response.StatusCode() != fasthttp.StatusSwitchingProtocols || !ctx.Hijacked() {
		t.Fatalf("status %d, hijacked %v; want 101 and a hijack", ctx.Response.StatusCode(), ctx.Hijacked())
	}
	if up.count() != 0 {
		t.Fatal("the handshake went through Do, not Upgrade")
	}
	s := up.onlyUpgrade(t)
	if s.method != "GET" || s.uri != "/chat?room=1" || s.host != "app.example" {
		t.Fatalf("upgrader got %s %s host %s", s.method, s.uri, s.host)
	}
	for name, want := range map[string]string{
		"Upgrade": "websocket", "Connection": "Upgrade", "Sec-Websocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
		"Sec-Websocket-Version": "13", "Sec-Websocket-Protocol": "chat", hdrXForwardedFor: remoteClient,
		hdrXForwardedProto: "http",
	} {
		if got := s.values(name); len(got) != 1 || got[0] != want {
			t.Errorf("upgrader got %s %q, want [%q]", name, got, want)
		}
	}
	for _, name := range []string{"Keep-Alive", "Te", "Proxy-Authorization"} {
		if got := s.values(name); len(got) != 0 {
			t.Errorf("upgrader got hop-by-hop %s %q", name, got)
		}
	}
	id := s.values(hdrXRequestID)
	if len(id) != 1 || id[0] == "client-id" || id[0] == "" {
		t.Fatalf("upgrader got X-Request-Id %q, want one fresh id (the client is not trusted)", id)
	}

	// The scratch the session came from serves the next request as a plain one.
	plain := e.serve(t, remoteClient, "GET / HTTP/1.1\r\nHost: app.example\r\n\r\n")
	wantOK(t, plain)
	if plain.Hijacked() {
		t.Fatal("a plain request after an upgrade was hijacked")
	}
}

// What is not a WebSocket handshake is not forwarded as an upgrade: its Upgrade is stripped as
// a hop-by-hop field and the request goes upstream as a plain one (h2c above all).
func TestServeUpgradeNotWebSocket(t *testing.T) {
	t.Parallel()
	for name, raw := range map[string]string{
		"h2c":           "GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n",
		"two protocols": "GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket, h2c\r\n\r\n",
		"no connection": "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n",
		"POST":          "POST / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.0":      "GET / HTTP/1.0\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			up := &fakeUpgrader{fakeUpstream: fakeUpstream{name: "svc"}}
			e := wsEngine(t, up, false)
			ctx := e.serve(t, remoteClient, raw)
			wantOK(t, ctx)
			if ctx.Hijacked() || len(up.upgrades) != 0 {
				t.Fatal("forwarded as an upgrade")
			}
			s := up.only(t)
			for _, n := range []string{"Upgrade", "Connection", "Http2-Settings"} {
				if v := s.values(n); len(v) != 0 {
					t.Errorf("backend got %s %q", n, v)
				}
			}
		})
	}
}

// rejectAll is a route filter that refuses every request.
type rejectAll struct{}

func (rejectAll) Request(*filter.Request) filter.Verdict {
	return filter.Verdict{Status: fasthttp.StatusUnauthorized, Reason: "missing_api_key"}
}

// Refusals come before any upstream byte: the route's websocket: false, a filter, a handshake
// with a body; an upstream error is the usual error answer.
func TestServeWebSocketRefused(t *testing.T) {
	t.Parallel()
	t.Run("route off", func(t *testing.T) {
		t.Parallel()
		up := &fakeUpgrader{fakeUpstream: fakeUpstream{name: "svc"}}
		e := wsEngine(t, up, true)
		wantError(t, e.serve(t, remoteClient, wsHandshake+"\r\n"), fasthttp.StatusForbidden, ReasonWebSocketOff)
		if len(up.upgrades) != 0 || up.count() != 0 {
			t.Fatal("a refused handshake reached the backend")
		}
		// Plain requests on the route are unaffected.
		wantOK(t, e.serve(t, remoteClient, "GET / HTTP/1.1\r\nHost: a\r\n\r\n"))
	})
	t.Run("filter", func(t *testing.T) {
		t.Parallel()
		up := &fakeUpgrader{fakeUpstream: fakeUpstream{name: "svc"}}
		e := wsEngine(t, up, false, rejectAll{})
		wantError(t, e.serve(t, remoteClient, wsHandshake+"\r\n"), fasthttp.StatusUnauthorized, "missing_api_key")
		if len(up.upgrades) != 0 {
			t.Fatal("a handshake a filter refused reached the backend")
		}
	})
	t.Run("body", func(t *testing.T) {
		t.Parallel()
		up := &fakeUpgrader{fakeUpstream: fakeUpstream{name: "svc"}}
		e := wsEngine(t, up, false)
		wantError(t, e.serve(t, remoteClient, wsHandshake+"Content-Length: 3\r\n\r\nabc"), fasthttp.StatusBadRequest, ReasonBadRequest)
		if len(up.upgrades) != 0 {
			t.Fatal("a handshake with a body reached the backend")
		}
	})
	t.Run("upstream down", func(t *testing.T) {
		t.Parallel()
		up := &fakeUpgrader{fakeUpstream: fakeUpstream{name: "svc"}, upgradeErr: fmt.Errorf("%w: refused", upstream.ErrConnect)}
		e := wsEngine(t, up, false)
		wantError(t, e.serve(t, remoteClient, wsHandshake+"\r\n"), fasthttp.StatusBadGateway, ReasonConnect)
	})
	t.Run("101 to something else", func(t *testing.T) {
		t.Parallel()
		up := &fakeUpgrader{fakeUpstream: fakeUpstream{name: "svc"}, upgradeTo: "h2c"}
		e := wsEngine(t, up, false)
		ctx := e.serve(t, remoteClient, wsHandshake+"\r\n")
		wantError(t, ctx, fasthttp.StatusBadGateway, ReasonProtocol)
		if ctx.Hijacked() {
			t.Fatal("hijacked for a protocol nobody asked for")
		}
	})
}

// An upstream that declines the handshake is answered as any response: its status, body and
// fields, one request id (ours), no hijack.
func TestServeWebSocketDeclined(t *testing.T) {
	t.Parallel()
	up := &fakeUpgrader{fakeUpstream: fakeUpstream{name: "svc"}, refuse: fasthttp.StatusBadRequest}
	e := wsEngine(t, up, false)
	ctx := e.serve(t, remoteClient, wsHandshake+"\r\n")
	if ctx.Hijacked() || ctx.Response.StatusCode() != fasthttp.StatusBadRequest || string(ctx.Response.Body()) != "no websocket here" {
		t.Fatalf("hijacked %v, status %d, body %q", ctx.Hijacked(), ctx.Response.StatusCode(), ctx.Response.Body())
	}
	if id := string(ctx.Response.Header.Peek(hdrXRequestID)); id == "" || id == "upstream-id" {
		t.Fatalf("X-Request-Id %q, want the gateway's", id)
	}
}

// The session, run by a real fasthttp server: the client reads the upstream's 101 fields less
// the hop-by-hop ones and its request id, plus the upgrade's two and ours; then bytes go both
// ways (the ones the client sent right behind its handshake first), and when the upstream ends
// the client's connection is closed.
func TestServeWebSocketSession(t *testing.T) {
	t.Parallel()
	up := &fakeUpgrader{fakeUpstream: fakeUpstream{name: "svc"}, peers: make(chan net.Conn, 1),
		headers: [][2]string{{"Sec-WebSocket-Accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="}, {"X-Request-Id", "upstream-id"},
			{"Keep-Alive", "timeout=5"}, {"X-Origin", "ws"}}}
	e := wsEngine(t, up, false)
	srv := &fasthttp.Server{Handler: e.h.Serve}
	cli, sc := net.Pipe()
	defer cli.Close()
	served := make(chan error, 1)
	go func() { served <- srv.ServeConn(sc) }()
	_ = cli.SetDeadline(time.Now().Add(10 * time.Second))
	go func() { _, _ = io.WriteString(cli, wsHandshake+"\r\nearly") }()

	br := bufio.NewReader(cli)
	var head strings.Builder
	for !strings.HasSuffix(head.String(), "\r\n\r\n") {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("reading the 101: %v (so far %q)", err, head.String())
		}
		head.WriteString(line)
	}
	h := head.String()
	for _, want := range []string{"HTTP/1.1 101 Switching Protocols\r\n", "\r\nSec-Websocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n",
		"\r\nX-Origin: ws\r\n", "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nX-Request-Id: "} {
		if !strings.Contains(h, want) {
			t.Errorf("101 head lacks %q:\n%s", want, h)
		}
	}
	for _, bad := range []string{"upstream-id", "Keep-Alive", "Content-Type", "Content-Length"} {
		if strings.Contains(h, bad) {
			t.Errorf("101 head has %q:\n%s", bad, h)
		}
	}
	if strings.Count(h, "X-Request-Id") != 1 || strings.Count(h, "Connection:") != 1 || strings.Count(h, "Upgrade:") != 1 {
		t.Errorf("101 head repeats a field:\n%s", h)
	}
	if id := up.onlyUpgrade(t).values(hdrXRequestID); len(id) != 1 || !strings.Contains(h, "X-Request-Id: "+id[0]+"\r\n") {
		t.Errorf("the client's id is not the one sent upstream (%q):\n%s", id, h)
	}

	peer := <-up.peers
	_ = peer.SetDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 5)
	if _, err := io.ReadFull(peer, buf); err != nil || string(buf) != "early" {
		t.Fatalf("upstream read %q, %v; want the bytes behind the handshake", buf, err)
	}
	go func() { _, _ = io.WriteString(cli, "to-upstream") }()
	buf = make([]byte, len("to-upstream"))
	if _, err := io.ReadFull(peer, buf); err != nil || string(buf) != "to-upstream" {
		t.Fatalf("upstream read %q, %v", buf, err)
	}
	go func() { _, _ = io.WriteString(peer, "to-client") }()
	buf = make([]byte, len("to-client"))
	if _, err := io.ReadFull(br, buf); err != nil || string(buf) != "to-client" {
		t.Fatalf("client read %q, %v", buf, err)
	}
	peer.Close()
	if n, err := br.Read(buf); err == nil {
		t.Fatalf("client read %q after the upstream closed; want the connection closed", buf[:n])
	}
	if err := <-served; err != nil {
		t.Fatalf("ServeConn: %v", err)
	}
}
