package gateway

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
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

	"github.com/coder/websocket"
	"github.com/hashicorp/consul/api"

	"github.com/meshgate/meshgate/conf"
	"github.com/meshgate/meshgate/internal/await"
	"github.com/meshgate/meshgate/internal/consuldev"
)

// wsOrigin is a real WebSocket server on loopback (coder/websocket): on any path it echoes each
// message, on /sink it only reads. Plain requests get "plain". It records every request's
// header and how each session ended.
type wsOrigin struct {
	srv    *httptest.Server
	mu     sync.Mutex
	hdrs   []http.Header
	closed chan error // each session's end: the error its Read returned
}

func startWSOrigin(t *testing.T) *wsOrigin {
	t.Helper()
	o := &wsOrigin{closed: make(chan error, 16)}
	o.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o.mu.Lock()
		o.hdrs = append(o.hdrs, r.Header.Clone())
		o.mu.Unlock()
		if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
			io.WriteString(w, "plain")
			return
		}
		w.Header().Set("X-Origin", "ws")
		w.Header().Set("X-Request-Id", "origin-made-this-up")
		c, err := websocket.Accept(w, r, &websocket.AcceptOptions{Subprotocols: []string{"echo"}})
		if err != nil {
			return
		}
		defer func() { _ = c.CloseNow() }()
		c.SetReadLimit(4 << 20)
		ctx := context.Background()
		for {
			typ, b, err := c.Read(ctx)
			if err != nil {
				o.closed <- err
				return
			}
			if r.URL.Path == "/sink" {
				continue
			}
			if err := c.Write(ctx, typ, b); err != nil {
				o.closed <- err
				return
			}
		}
	}))
	t.Cleanup(o.srv.Close)
	return o
}

func (o *wsOrigin) requests() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.hdrs)
}

func (o *wsOrigin) lastHeader(t *testing.T) http.Header {
	t.Helper()
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.hdrs) == 0 {
		t.Fatal("the origin saw no request")
	}
	return o.hdrs[len(o.hdrs)-1]
}

// sessionEnd waits (bounded) for the origin's next session to end.
func (o *wsOrigin) sessionEnd(t *testing.T) error {
	t.Helper()
	select {
	case err := <-o.closed:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("the origin's session did not end within 10s")
		return nil
	}
}

// dialed is the handshake's answer as the client got it (the body is read and closed).
type dialed struct {
	status int
	header http.Header
	body   string
}

// wsDial opens a WebSocket through the edge at addr (ws://addr+path) within 10 s.
func wsDial(t *testing.T, addr, path string, hdr http.Header) (*websocket.Conn, dialed, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, "ws://"+addr+path, &websocket.DialOptions{Subprotocols: []string{"echo"}, HTTPHeader: hdr})
	var d dialed
	if resp != nil {
		d.status, d.header = resp.StatusCode, resp.Header
		if resp.Body != nil {
			b, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			d.body = string(b)
		}
	}
	if c != nil {
		c.SetReadLimit(4 << 20)
		t.Cleanup(func() { _ = c.CloseNow() })
	}
	return c, d, err
}

// echo sends one message and reads the echo, within 10 s.
func echo(t *testing.T, c *websocket.Conn, typ websocket.MessageType, msg []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Write(ctx, typ, msg); err != nil {
		t.Fatalf("write: %v", err)
	}
	gt, got, err := c.Read(ctx)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if gt != typ || !bytes.Equal(got, msg) {
		t.Fatalf("echo: type %v, %d bytes; want type %v, %d bytes, the same", gt, len(got), typ, len(msg))
	}
}

func wsEdgeConfig(origin, extra string) string {
	return fmt.Sprintf(`
admin: { address: 127.0.0.1:0 }
listeners:
  - { name: public, address: 127.0.0.1:0, websocket_idle_timeout: 2s }
routes:
  - name: all
    match: { path_prefix: / }
    to: [ { service: origin } ]
discovery:
  static:
    origin: [ %s ]
access_log: { output: "off" }
%s`, origin, extra)
}

// accessLines waits (bounded) until the access log at path has a line with want in it and
// returns the lines that do, decoded.
func accessLines(t *testing.T, path, want string) []map[string]any {
	t.Helper()
	var out []map[string]any
	waitFor(t, "access log line with "+want, func() bool {
		out = nil
		b, _ := os.ReadFile(path)
		for _, line := range bytes.Split(b, []byte("\n")) {
			if !bytes.Contains(line, []byte(want)) {
				continue
			}
			var m map[string]any
			if err := json.Unmarshal(line, &m); err != nil {
				t.Fatalf("access log line is not JSON: %s", line)
			}
			out = append(out, m)
		}
		return len(out) > 0
	})
	return out
}

// TestWebSocketThroughEdge: a real client and origin through the edge: the handshake's fields
// both ways, text, binary, a 1 MiB message, a ping, the close handshake; the metrics and the
// access-log line of the session.
func TestWebSocketThroughEdge(t *testing.T) {
	t.Parallel()
	o := startWSOrigin(t)
	logPath := filepath.Join(t.TempDir(), "access.log")
	cfg := strings.Replace(wsEdgeConfig(hostport(o.srv), ""), `access_log: { output: "off" }`, "access_log: { output: "+logPath+" }", 1)
	e := startEdge(t, cfg)

	c, resp, err := wsDial(t, e.addr, "/chat?room=1", http.Header{"X-Request-Id": {"client-id"}})
	if err != nil {
		t.Fatalf("dial: %v (response %v)", err, resp)
	}
	if c.Subprotocol() != "echo" || resp.header.Get("X-Origin") != "ws" {
		t.Fatalf("subprotocol %q, X-Origin %q: the origin's 101 fields did not reach the client", c.Subprotocol(), resp.header.Get("X-Origin"))
	}
	ids := resp.header.Values("X-Request-Id")
	if len(ids) != 1 || ids[0] == "origin-made-this-up" || ids[0] == "client-id" {
		t.Fatalf("X-Request-Id %q, want one: the edge's", ids)
	}
	h := o.lastHeader(t)
	if h.Get("X-Request-Id") != ids[0] || h.Get("X-Forwarded-For") != "127.0.0.1" || h.Get("X-Forwarded-Proto") != "http" {
		t.Fatalf("origin saw X-Request-Id %q, X-Forwarded-For %q, X-Forwarded-Proto %q", h.Get("X-Request-Id"), h.Get("X-Forwarded-For"), h.Get("X-Forwarded-Proto"))
	}

	echo(t, c, websocket.MessageText, []byte("hello"))
	echo(t, c, websocket.MessageBinary, []byte{0, 1, 2, 0xff})
	big := make([]byte, 1<<20)
	rand.Read(big)
	echo(t, c, websocket.MessageBinary, big)

	// A ping is answered while a reader runs (the pong is read by it); a message then ends the
	// read.
	readDone := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, b, err := c.Read(ctx)
		if err == nil && string(b) != "after ping" {
			err = fmt.Errorf("read %q", b)
		}
		readDone <- err
	}()
	pctx, pcancel := context.WithTimeout(context.Background(), 10*time.Second)
	if err := c.Ping(pctx); err != nil {
		t.Fatalf("ping: %v", err)
	}
	pcancel()
	wctx, wcancel := context.WithTimeout(context.Background(), 10*time.Second)
	if err := c.Write(wctx, websocket.MessageText, []byte("after ping")); err != nil {
		t.Fatal(err)
	}
	wcancel()
	if err := <-readDone; err != nil {
		t.Fatalf("read after ping: %v", err)
	}

	// While open: one upgraded connection on the route, one downstream connection on the
	// listener (the admin requests use another listener).
	if got := edgeMetricValue(t, e.admin, `meshgate_websocket_connections_active{route="all"}`); got != "1" {
		t.Errorf("open websocket gauge = %q, want 1", got)
	}
	if got := edgeMetricValue(t, e.admin, `meshgate_downstream_connections_active{listener="public"}`); got != "1" {
		t.Errorf("downstream connections gauge = %q, want 1 (the hijacked one still counts)", got)
	}

	// The close handshake: the origin sees a normal closure with our reason, the client's
	// Close returns once the origin's close frame came back.
	if err := c.Close(websocket.StatusNormalClosure, "bye"); err != nil {
		t.Fatalf("close: %v", err)
	}
	if err := o.sessionEnd(t); websocket.CloseStatus(err) != websocket.StatusNormalClosure {
		t.Fatalf("origin's session ended with %v, want a normal closure", err)
	}
	waitFor(t, "gauges back to 0", func() bool {
		return edgeMetricValue(t, e.admin, `meshgate_websocket_connections_active{route="all"}`) == "0" &&
			edgeMetricValue(t, e.admin, `meshgate_downstream_connections_active{listener="public"}`) == "0"
	})
	for dir, least := range map[string]int{"upstream": 1 << 20, "downstream": 1 << 20} {
		var n float64
		_, _ = fmt.Sscan(edgeMetricValue(t, e.admin, `meshgate_websocket_bytes_total{direction="`+dir+`",route="all"}`), &n)
		if n < float64(least) {
			t.Errorf("bytes relayed %s = %v, want at least %d", dir, n, least)
		}
	}
	if got := edgeMetricValue(t, e.admin, `meshgate_requests_total{class="1xx",route="all"}`); got != "1" {
		t.Errorf("1xx requests = %q, want 1", got)
	}

	lines := accessLines(t, logPath, ids[0])
	if len(lines) != 1 {
		t.Fatalf("%d access-log lines for the session, want 1: %v", len(lines), lines)
	}
	l := lines[0]
	if l["status"] != float64(101) || l["route"] != "all" || l["upstream"] != hostport(o.srv) || l["path"] != "/chat" {
		t.Errorf("access log entry: %v", l)
	}
	if in, _ := l["bytes_in"].(float64); in < 1<<20 {
		t.Errorf("access log bytes_in %v, want the session's (> 1 MiB)", l["bytes_in"])
	}
}

// TestWebSocketIdleTimeout: a session nobody talks on is closed after the listener's
// websocket_idle_timeout; one where only the client talks (the origin never answers) is not.
func TestWebSocketIdleTimeout(t *testing.T) {
	t.Parallel()
	o := startWSOrigin(t)
	e := startEdge(t, wsEdgeConfig(hostport(o.srv), ""))

	// One-way traffic for longer than the timeout: the quiet direction must not end it.
	c, _, err := wsDial(t, e.addr, "/sink", nil)
	if err != nil {
		t.Fatal(err)
	}
	tick := time.NewTicker(300 * time.Millisecond)
	defer tick.Stop()
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); <-tick.C {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := c.Write(ctx, websocket.MessageText, []byte("tick"))
		cancel()
		if err != nil {
			t.Fatalf("a session with traffic one way was closed: %v", err)
		}
	}
	_ = c.CloseNow()
	_ = o.sessionEnd(t)

	// Nothing either way: closed after about 2 s (well within the 10 s bound).
	c, _, err = wsDial(t, e.addr, "/", nil)
	if err != nil {
		t.Fatal(err)
	}
	echo(t, c, websocket.MessageText, []byte("once"))
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, _, err = c.Read(ctx)
	if err == nil || ctx.Err() != nil {
		t.Fatalf("idle session: read %v (context %v); want the edge to close it", err, ctx.Err())
	}
	if took := time.Since(start); took < 1500*time.Millisecond {
		t.Fatalf("closed after %v, before the 2s idle timeout", took)
	}
	_ = o.sessionEnd(t)
}

// TestWebSocketRefusals: routes[].websocket: false answers 403 and a route's policy refuses the
// handshake before the origin sees a byte; an h2c upgrade is never forwarded as one.
func TestWebSocketRefusals(t *testing.T) {
	t.Parallel()
	o := startWSOrigin(t)
	cfg := strings.Replace(wsEdgeConfig(hostport(o.srv), `
policies:
  office: { ip: { allow: [ 10.0.0.0/8 ] } }
`), "routes:\n", `routes:
  - { name: off, match: { path_prefix: /nows }, to: [ { service: origin } ], websocket: false }
  - { name: office, match: { path_prefix: /office }, to: [ { service: origin } ], policies: [ office ] }
`, 1)
	e := startEdge(t, cfg)

	for path, want := range map[string]string{"/nows": "websocket_disabled", "/office": "ip_denied"} {
		_, resp, err := wsDial(t, e.addr, path, nil)
		if err == nil || resp.status != http.StatusForbidden {
			t.Fatalf("%s: dial error %v, response %v; want 403", path, err, resp)
		}
		if !strings.Contains(resp.body, want) {
			t.Errorf("%s: body %q, want %s", path, resp.body, want)
		}
	}
	if n := o.requests(); n != 0 {
		t.Fatalf("the origin saw %d refused handshakes", n)
	}
	// websocket: false leaves plain requests alone.
	if code, body := status(t, e.url+"/nows"); code != http.StatusOK || body != "plain" {
		t.Fatalf("plain GET /nows = %d %q", code, body)
	}

	// h2c: forwarded as the plain request it also is, without any of the upgrade's fields.
	out := raw(t, e.addr, "GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"+
		"HTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\nConnection: close\r\n\r\n")
	if !strings.HasPrefix(out, "HTTP/1.1 200") || !strings.HasSuffix(out, "plain") {
		t.Fatalf("h2c upgrade request got:\n%s", out)
	}
	h := o.lastHeader(t)
	for _, n := range []string{"Upgrade", "Connection", "Http2-Settings"} {
		if v := h.Values(n); len(v) != 0 {
			t.Errorf("origin saw %s %q", n, v)
		}
	}
}

// TestWebSocketDrainClosesSession: on shutdown an open session keeps working through the drain
// and is closed when the drain timeout passes; Run then returns.
func TestWebSocketDrainClosesSession(t *testing.T) {
	t.Parallel()
	o := startWSOrigin(t)
	// An idle timeout far beyond the drain's, so only the drain can end the session.
	cfg := strings.Replace(wsEdgeConfig(hostport(o.srv), "shutdown: { drain_timeout: 1500ms }\n"), "websocket_idle_timeout: 2s", "websocket_idle_timeout: 1m", 1)
	e := startEdge(t, cfg)
	c, _, err := wsDial(t, e.addr, "/", nil)
	if err != nil {
		t.Fatal(err)
	}
	echo(t, c, websocket.MessageText, []byte("before"))
	start := time.Now()
	e.cancel()
	waitFor(t, "ready 503", func() bool {
		code, _ := readyBody(t, e.admin)
		return code != http.StatusOK
	})
	echo(t, c, websocket.MessageText, []byte("while draining"))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, _, err := c.Read(ctx); err == nil || ctx.Err() != nil {
		t.Fatalf("read during drain: %v (context %v); want the session closed at the drain deadline", err, ctx.Err())
	}
	if took := time.Since(start); took < time.Second || took > 6*time.Second {
		t.Fatalf("session closed %v into a 1.5s drain", took)
	}
	_ = o.sessionEnd(t)
	select {
	case err := <-e.done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after the drain")
	}
	e.cancel = nil
}

// TestWebSocketMaxConnections: upgraded sessions count against max_connections although
// fasthttp no longer serves them; closing one makes room again.
func TestWebSocketMaxConnections(t *testing.T) {
	t.Parallel()
	o := startWSOrigin(t)
	cfg := strings.Replace(wsEdgeConfig(hostport(o.srv), ""), "websocket_idle_timeout: 2s", "websocket_idle_timeout: 1m, max_connections: 2", 1)
	e := startEdge(t, cfg)
	a, _, err := wsDial(t, e.addr, "/", nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _, err := wsDial(t, e.addr, "/", nil)
	if err != nil {
		t.Fatal(err)
	}
	echo(t, a, websocket.MessageText, []byte("a"))
	echo(t, b, websocket.MessageText, []byte("b"))
	refused := func() bool {
		conn, err := net.DialTimeout("tcp", e.addr, 5*time.Second)
		if err != nil {
			return true
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"); err != nil {
			return true
		}
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			return !errors.Is(err, os.ErrDeadlineExceeded)
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusServiceUnavailable
	}
	if !refused() {
		t.Fatal("a third connection was served with two upgraded sessions open and max_connections: 2")
	}
	a.Close(websocket.StatusNormalClosure, "")
	_ = o.sessionEnd(t)
	waitFor(t, "room for a connection again", func() bool { return !refused() })
	echo(t, b, websocket.MessageText, []byte("still here"))
}

// TestWebSocketMergedHop: edge → api's sidecar over Connect mTLS (real Consul, intentions) → a
// WebSocket app; and app → web's sidecar upstream listener → api's sidecar → the app. The
// handshake passes the sidecar's intentions check, and a caller the intentions deny gets 403.
func TestWebSocketMergedHop(t *testing.T) {
	t.Parallel()
	agent := consuldev.Start(t)
	client := agentClient(t, agent.HTTPAddr)
	setIntentions(t, client, "api",
		&api.SourceIntention{Name: "edge", Permissions: []*api.IntentionPermission{
			{Action: api.IntentionActionAllow, HTTP: &api.IntentionHTTPPermission{PathPrefix: "/public"}},
		}},
		&api.SourceIntention{Name: "web", Action: api.IntentionActionAllow},
	)
	o := startWSOrigin(t)
	startEngine(t, sidecarConfigWith(agent.HTTPAddr, "api", hostport(o.srv), "{ address: 127.0.0.1:0, trusted_peers: [ edge ] }"))
	webApp, _ := startUpstream(t, "web-app", nil)
	webSide := startEngine(t, sidecarConfig(agent.HTTPAddr, "web", hostport(webApp), "api"))
	edge := startEngine(t, connectEdgeConfig(agent.HTTPAddr))
	await.Until(t, 30*time.Second, "edge reaches api through its sidecar", func() bool {
		code, _ := status(t, edge.url+"/public/plain")
		return code == http.StatusOK
	})

	c, resp, err := wsDial(t, edge.addr, "/public/chat", nil)
	if err != nil {
		t.Fatalf("dial through the merged hop: %v (response %v)", err, resp)
	}
	if c.Subprotocol() != "echo" || resp.header.Get("X-Origin") != "ws" || len(resp.header.Values("X-Request-Id")) != 1 {
		t.Fatalf("101 through two hops: subprotocol %q, header %v", c.Subprotocol(), resp.header)
	}
	if h := o.lastHeader(t); h.Get("X-Meshgate-Identity") != "edge" || h.Get("X-Request-Id") != resp.header.Get("X-Request-Id") {
		t.Fatalf("app saw identity %q and request id %q; want edge and the client's %q",
			h.Get("X-Meshgate-Identity"), h.Get("X-Request-Id"), resp.header.Get("X-Request-Id"))
	}
	echo(t, c, websocket.MessageText, []byte("over mTLS"))
	echo(t, c, websocket.MessageBinary, []byte{9, 8, 7})
	big := make([]byte, 1<<20)
	rand.Read(big)
	echo(t, c, websocket.MessageBinary, big)
	readDone := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, _, err := c.Read(ctx)
		readDone <- err
	}()
	pctx, pcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer pcancel()
	if err := c.Ping(pctx); err != nil {
		t.Fatalf("ping through the merged hop: %v", err)
	}
	if err := c.Write(pctx, websocket.MessageText, []byte("end read")); err != nil {
		t.Fatal(err)
	}
	if err := <-readDone; err != nil {
		t.Fatal(err)
	}
	if err := c.Close(websocket.StatusNormalClosure, "done"); err != nil {
		t.Fatalf("close through the merged hop: %v", err)
	}
	if err := o.sessionEnd(t); websocket.CloseStatus(err) != websocket.StatusNormalClosure {
		t.Fatalf("app's session ended with %v", err)
	}

	// The L7 intention allows the edge /public only: a handshake elsewhere is denied by the
	// sidecar, and the app never sees it.
	before := o.requests()
	if _, resp, err := wsDial(t, edge.addr, "/admin", nil); err == nil || resp.status != http.StatusForbidden {
		t.Fatalf("handshake on /admin: %v, %v; want 403 from the intentions", err, resp)
	}
	if o.requests() != before {
		t.Fatal("a denied handshake reached the app")
	}

	// web's app through its own sidecar's upstream listener.
	c2, resp, err := wsDial(t, webSide.listener(conf.SidecarUpstreamName("api")), "/anything", nil)
	if err != nil {
		t.Fatalf("dial through web's sidecar: %v (response %v)", err, resp)
	}
	echo(t, c2, websocket.MessageText, []byte("web to api"))
	c2.Close(websocket.StatusNormalClosure, "")
	_ = o.sessionEnd(t)
}

// TestWebSocketOverTLSListener: wss to a TLS-terminating listener; the origin is told the
// scheme was https.
func TestWebSocketOverTLSListener(t *testing.T) {
	t.Parallel()
	certFile, keyFile, pool := writeCert(t, "edge.test")
	o := startWSOrigin(t)
	e := startEngine(t, fmt.Sprintf(`
admin: { address: 127.0.0.1:0 }
access_log: { output: "off" }
listeners:
  - { name: public, address: 127.0.0.1:0, tls: { certificates: [ { cert_file: %s, key_file: %s } ] } }
routes: [ { name: all, to: [ { service: origin } ] } ]
discovery: { static: { origin: [ %s ] } }
`, certFile, keyFile, hostport(o.srv)))
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}}
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, "wss://"+e.listener("public")+"/secure", &websocket.DialOptions{HTTPClient: &http.Client{Transport: tr}})
	if resp != nil && resp.Body != nil {
		_ = resp.Body.Close()
	}
	if err != nil {
		t.Fatalf("wss dial: %v", err)
	}
	defer func() { _ = c.CloseNow() }()
	echo(t, c, websocket.MessageText, []byte("over tls"))
	if p := o.lastHeader(t).Get("X-Forwarded-Proto"); p != "https" {
		t.Fatalf("origin saw X-Forwarded-Proto %q, want https", p)
	}
	if err := c.Close(websocket.StatusNormalClosure, ""); err != nil {
		t.Fatalf("close: %v", err)
	}
	_ = o.sessionEnd(t)
}

// TestWebSocketReload: a reload applies routes[].websocket to new handshakes at once and
// leaves open sessions alone; changing websocket_idle_timeout, a listener setting, is refused.
func TestWebSocketReload(t *testing.T) {
	t.Parallel()
	o := startWSOrigin(t)
	cfg := wsEdgeConfig(hostport(o.srv), "")
	e := startEdge(t, cfg)
	c, _, err := wsDial(t, e.addr, "/", nil)
	if err != nil {
		t.Fatal(err)
	}
	echo(t, c, websocket.MessageText, []byte("before"))

	off, err := conf.Parse("v2.yaml", []byte(strings.Replace(cfg, "to: [ { service: origin } ]", "to: [ { service: origin } ]\n    websocket: false", 1)))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.edge.Reload(off); err != nil {
		t.Fatalf("reload: %v", err)
	}
	if _, resp, err := wsDial(t, e.addr, "/", nil); err == nil || resp.status != http.StatusForbidden {
		t.Fatalf("handshake after the reload: %v, %v; want 403", err, resp)
	}
	echo(t, c, websocket.MessageText, []byte("after"))

	idle, err := conf.Parse("v3.yaml", []byte(strings.Replace(cfg, "websocket_idle_timeout: 2s", "websocket_idle_timeout: 5s", 1)))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.edge.Reload(idle); err == nil || !strings.Contains(err.Error(), "restart") {
		t.Fatalf("reload changing websocket_idle_timeout: %v, want it refused", err)
	}
	if err := c.Close(websocket.StatusNormalClosure, ""); err != nil {
		t.Fatal(err)
	}
	_ = o.sessionEnd(t)
}
