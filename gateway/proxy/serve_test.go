package proxy

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"

	"github.com/meshgate/meshgate/gateway/filter"
	"github.com/meshgate/meshgate/gateway/route"
	"github.com/meshgate/meshgate/mesh/upstream"
)

// The tests in this file drive Handler.Serve with RequestCtx values parsed from raw request
// text, as fasthttp's server parses them, and a fake backend behind the Upstream seam. Each
// asserts, for one rule of docs/security.md, what reaches the backend or what the client gets.

// sentRequest is what the fake backend received: the request as it would go on the wire.
type sentRequest struct {
	method, uri, host string
	headers           [][2]string // every line but Host, in order
	connClose         bool
	body              []byte
	bodyErr           error // reading a streamed body failed
	call              upstream.Call
	bodySet           bool   // call.Body was set (a streamed body)
	clientFailed      bool   // call.Body.ClientFailed() after the body was read
	replay            []byte // call.Recorder's replay after the body was read, when complete
}

// values is every value sent under name (any case), one per line.
func (s *sentRequest) values(name string) []string {
	var out []string
	for _, kv := range s.headers {
		if strings.EqualFold(kv[0], name) {
			out = append(out, kv[1])
		}
	}
	return out
}

// fakeUpstream is the Upstream test double: it records what the engine sends, reads a streamed
// body as a transport sending it would, and answers from its fields.
type fakeUpstream struct {
	name    string
	maxResp int64

	// The answer.
	err         error
	status      int // 0: 200
	respBody    string
	respHeaders [][2]string
	connClose   bool // the upstream closes its connection after this response

	mu   sync.Mutex
	sent []sentRequest
}

var _ Upstream = (*fakeUpstream)(nil)

func (f *fakeUpstream) Name() string            { return f.name }
func (f *fakeUpstream) MaxResponseBytes() int64 { return f.maxResp }

func (f *fakeUpstream) Do(out *fasthttp.Request, resp *fasthttp.Response, call *upstream.Call) error {
	s := sentRequest{
		method: string(out.Header.Method()), uri: string(out.RequestURI()), host: string(out.Header.Host()),
		connClose: out.Header.ConnectionClose(), call: *call, bodySet: call.Body != nil,
	}
	for k, v := range out.Header.All() {
		if string(k) != fasthttp.HeaderHost {
			s.headers = append(s.headers, [2]string{string(k), string(v)})
		}
	}
	if out.IsBodyStream() {
		s.body, s.bodyErr = io.ReadAll(out.BodyStream())
	} else {
		s.body = append([]byte(nil), out.Body()...)
	}
	if call.Body != nil {
		s.clientFailed = call.Body.ClientFailed()
	}
	if call.Recorder.Complete() {
		s.replay, _ = io.ReadAll(call.Recorder.Replay())
	}
	f.mu.Lock()
	f.sent = append(f.sent, s)
	f.mu.Unlock()

	call.Address, call.Attempts = "192.0.2.10:8080", 1
	switch {
	case s.bodyErr != nil && s.clientFailed:
		// What upstream.Cluster.Do returns when the client's body broke the try.
		return fmt.Errorf("%w: %w", upstream.ErrClientBody, s.bodyErr)
	case s.bodyErr != nil:
		return fmt.Errorf("%w: %w", upstream.ErrReset, s.bodyErr)
	case f.err != nil:
		return f.err
	}
	resp.SetStatusCode(fasthttp.StatusOK)
	if f.status != 0 {
		resp.SetStatusCode(f.status)
	}
	for _, kv := range f.respHeaders {
		resp.Header.Add(kv[0], kv[1])
	}
	if f.connClose {
		resp.SetConnectionClose()
	}
	// A body arrives as a stream, as from the fasthttp client (StreamResponseBody).
	resp.SetBodyStream(strings.NewReader(f.respBody), len(f.respBody))
	return nil
}

// only is the one request the backend received.
func (f *fakeUpstream) only(t *testing.T) *sentRequest {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.sent) != 1 {
		t.Fatalf("backend %s received %d requests, want 1", f.name, len(f.sent))
	}
	return &f.sent[0]
}

func (f *fakeUpstream) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.sent)
}

// testRoute is one route of a test engine and the fake it sends to.
type testRoute struct {
	spec    route.Spec // Name and match; Key and Targets are filled in
	up      *fakeUpstream
	filters filter.Chain
}

// engine is a Handler over test routes.
type engine struct {
	h         *Handler
	lingered  int
	lingeredM sync.Mutex
}

const streamThreshold = 32 // small, so tests reach the streaming paths with short bodies

// newEngine builds a Handler with opts over routes, in precedence order. opts.Metrics,
// StreamThreshold and Linger are set here.
func newEngine(t *testing.T, opts Options, routes ...testRoute) *engine {
	t.Helper()
	specs := make([]route.Spec, len(routes))
	backends := make([]RouteBackends, len(routes))
	for i, r := range routes {
		specs[i] = r.spec
		specs[i].Key = i
		specs[i].Targets = []route.Target{{Service: r.up.name, Weight: 1}}
		backends[i] = RouteBackends{Name: r.spec.Name, Backends: []Backend{{Cluster: r.up}}, Filters: r.filters}
	}
	table, err := route.New(route.Options{Routes: specs})
	if err != nil {
		t.Fatal(err)
	}
	m, err := NewMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	gen, err := NewGeneration(table, backends, m)
	if err != nil {
		t.Fatal(err)
	}
	e := &engine{}
	opts.Metrics = m
	opts.StreamThreshold = streamThreshold
	opts.Linger = func(net.Conn) {
		e.lingeredM.Lock()
		e.lingered++
		e.lingeredM.Unlock()
	}
	if e.h, err = New(opts, gen); err != nil {
		t.Fatal(err)
	}
	return e
}

// serve parses raw as fasthttp's server does (head, then the body: buffered up to the stream
// threshold, streamed beyond it and whenever chunked) and serves it as coming from remote.
func (e *engine) serve(t *testing.T, remote, raw string) *fasthttp.RequestCtx {
	t.Helper()
	return e.serveEdited(t, remote, raw, nil)
}

// serveEdited is serve with edit applied to the parsed request, for requests fasthttp's parser
// never produces but the engine must still refuse.
func (e *engine) serveEdited(t *testing.T, remote, raw string, edit func(*fasthttp.Request)) *fasthttp.RequestCtx {
	t.Helper()
	ctx := &fasthttp.RequestCtx{}
	ctx.Init(&fasthttp.Request{}, &net.TCPAddr{IP: net.ParseIP(remote), Port: 40000}, nil)
	br := bufio.NewReader(strings.NewReader(raw))
	if err := ctx.Request.Header.Read(br); err != nil {
		t.Fatalf("fasthttp refused the head: %v", err)
	}
	if err := ctx.Request.ContinueReadBodyStream(br, streamThreshold, false); err != nil {
		t.Fatalf("fasthttp refused the body: %v", err)
	}
	if edit != nil {
		edit(&ctx.Request)
	}
	e.h.Serve(ctx)
	return ctx
}

func (e *engine) lingers() int {
	e.lingeredM.Lock()
	defer e.lingeredM.Unlock()
	return e.lingered
}

const remoteClient = "203.0.113.7"

// wantError checks that ctx got the engine's error answer with status and reason.
func wantError(t *testing.T, ctx *fasthttp.RequestCtx, status int, reason string) {
	t.Helper()
	var body struct {
		Status    int    `json:"status"`
		Error     string `json:"error"`
		RequestID string `json:"request_id"`
	}
	if err := json.Unmarshal(ctx.Response.Body(), &body); err != nil {
		t.Fatalf("status %d, body %q: not the error format: %v", ctx.Response.StatusCode(), ctx.Response.Body(), err)
	}
	if ctx.Response.StatusCode() != status || body.Status != status || body.Error != reason {
		t.Fatalf("got %d %q (body %s), want %d %q", ctx.Response.StatusCode(), body.Error, ctx.Response.Body(), status, reason)
	}
	if id := string(ctx.Response.Header.Peek(hdrXRequestID)); id == "" || id != body.RequestID {
		t.Fatalf("X-Request-Id %q, body request_id %q: want the same non-empty id", id, body.RequestID)
	}
}

// wantOK checks that the backend's answer reached the client.
func wantOK(t *testing.T, ctx *fasthttp.RequestCtx) {
	t.Helper()
	if ctx.Response.StatusCode() != fasthttp.StatusOK {
		t.Fatalf("status %d, body %q; want the backend's 200", ctx.Response.StatusCode(), ctx.Response.Body())
	}
}

// wantRejectedEarly checks that an early rejection closes the connection gently: Connection:
// close and the listener told to linger.
func wantRejectedEarly(t *testing.T, e *engine, ctx *fasthttp.RequestCtx) {
	t.Helper()
	if !ctx.Response.ConnectionClose() || e.lingers() != 1 {
		t.Fatalf("connection close %v, lingered %d times; want close and one linger", ctx.Response.ConnectionClose(), e.lingers())
	}
}

func TestServeHTTPVersion(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		version string
		ok      bool
	}{
		{"HTTP/1.1", true}, {"HTTP/1.0", true}, {"HTTP/1.2", false}, {"HTTP/2.0", false}, {"HTTP/0.9", false},
	} {
		t.Run(tt.version, func(t *testing.T) {
			t.Parallel()
			up := &fakeUpstream{name: "svc"}
			e := newEngine(t, Options{}, routeWith(up))
			ctx := e.serve(t, remoteClient, "GET /x "+tt.version+"\r\nHost: app.example\r\n\r\n")
			if tt.ok {
				wantOK(t, ctx)
				if s := up.only(t); s.method != "GET" || s.uri != "/x" {
					t.Fatalf("backend got %s %s", s.method, s.uri)
				}
				return
			}
			wantError(t, ctx, fasthttp.StatusHTTPVersionNotSupported, ReasonHTTPVersion)
			wantRejectedEarly(t, e, ctx)
			if n := up.count(); n != 0 {
				t.Fatalf("backend received %d requests", n)
			}
		})
	}
}

func TestServeMethodCase(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		method string
		route  string // the route whose backend gets it; "": 400 invalid_method
	}{
		{"DELETE", "all"}, {"GET", "all"}, {"PURGE", "all"}, {"purge", "purge"},
		{"delete", ""}, {"Get", ""}, {"Purge", ""},
	} {
		t.Run(tt.method, func(t *testing.T) {
			t.Parallel()
			ups := map[string]*fakeUpstream{"purge": {name: "cache"}, "all": {name: "svc"}}
			e := newEngine(t, Options{},
				testRoute{spec: route.Spec{Name: "purge", PathPrefix: "/", Methods: []string{"purge"}}, up: ups["purge"]},
				testRoute{spec: route.Spec{Name: "all", PathPrefix: "/"}, up: ups["all"]})
			ctx := e.serve(t, remoteClient, tt.method+" /x HTTP/1.1\r\nHost: app.example\r\n\r\n")
			if tt.route == "" {
				wantError(t, ctx, fasthttp.StatusBadRequest, ReasonBadMethod)
				wantRejectedEarly(t, e, ctx)
			} else {
				wantOK(t, ctx)
			}
			for name, up := range ups {
				switch {
				case name == tt.route:
					if s := up.only(t); s.method != tt.method {
						t.Fatalf("route %s's backend got method %q, want %q", name, s.method, tt.method)
					}
				case up.count() != 0:
					t.Fatalf("route %s's backend received the request", name)
				}
			}
		})
	}
}

func TestServeHeaderNames(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name, line string
		ok         bool
	}{
		{"underscore", "X_User: admin", false},
		{"space", "X User: admin", false},
		{"underscore among good ones", "X-Ok: 1\r\nX-Forwarded_For: 6.6.6.6", false},
		{"dash", "X-User: admin", true},
		{"token punctuation", "X-A.b~c!: 1", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			up := &fakeUpstream{name: "svc"}
			e := newEngine(t, Options{}, routeWith(up))
			ctx := e.serve(t, remoteClient, "GET / HTTP/1.1\r\nHost: app.example\r\n"+tt.line+"\r\n\r\n")
			if tt.ok {
				wantOK(t, ctx)
				name, value, _ := strings.Cut(tt.line, ": ")
				if got := up.only(t).values(name); len(got) != 1 || got[0] != value {
					t.Fatalf("backend got %s = %q, want [%q]", name, got, value)
				}
				return
			}
			wantError(t, ctx, fasthttp.StatusBadRequest, ReasonUnderscoreHeader)
			wantRejectedEarly(t, e, ctx)
			if n := up.count(); n != 0 {
				t.Fatalf("backend received %d requests", n)
			}
		})
	}
}

// peek is a filter that records what it saw of some headers when it ran, and then sets its own.
type peek struct {
	names []string
	set   [][2]string

	mu       sync.Mutex
	seen     map[string]string
	clientIP netip.Addr
	reqID    string
	identity string
}

func (p *peek) Request(r *filter.Request) filter.Verdict {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.seen = map[string]string{}
	for _, n := range p.names {
		p.seen[n] = string(r.Ctx.Request.Header.Peek(n))
	}
	p.clientIP, p.reqID, p.identity = r.ClientIP, string(r.RequestID), string(r.Identity)
	for _, kv := range p.set {
		r.Ctx.Request.Header.Set(kv[0], kv[1])
	}
	return filter.Verdict{}
}

func (p *peek) saw(name string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.seen[name]
}

// routeWith is the catch-all route to a fake "svc" with filters.
func routeWith(up *fakeUpstream, filters ...filter.Filter) testRoute {
	return testRoute{spec: route.Spec{Name: "all", PathPrefix: "/", Timeout: 30 * time.Second}, up: up, filters: filters}
}

// Repeated lines of one field are one field, in order, for every reader: the filters, the trust
// code (which resolves the client from the whole X-Forwarded-For) and the backend.
func TestServeRepeatedHeadersJoined(t *testing.T) {
	t.Parallel()
	up := &fakeUpstream{name: "svc"}
	f := &peek{names: []string{"X-Tag"}}
	e := newEngine(t, Options{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}, routeWith(up, f))
	ctx := e.serve(t, "10.0.0.1", "GET / HTTP/1.1\r\nHost: app.example\r\nX-Tag: a\r\nX-Other: 1\r\nX-Tag: b\r\nx-tag: c\r\n"+
		"X-Forwarded-For: 6.6.6.6\r\nX-Forwarded-For: 9.9.9.9\r\n\r\n")
	wantOK(t, ctx)
	s := up.only(t)
	if got := s.values("X-Tag"); len(got) != 1 || got[0] != "a, b, c" {
		t.Fatalf("backend got X-Tag %q, want one line \"a, b, c\"", got)
	}
	if got := f.saw("X-Tag"); got != "a, b, c" {
		t.Fatalf("filter saw X-Tag %q, want \"a, b, c\"", got)
	}
	// Read as one field, the rightmost untrusted entry is the second line's.
	if f.clientIP.String() != "9.9.9.9" {
		t.Fatalf("client resolved to %s, want 9.9.9.9 (the last line's entry)", f.clientIP)
	}
	if got := s.values(hdrXForwardedFor); len(got) != 1 || got[0] != "9.9.9.9, 10.0.0.1" {
		t.Fatalf("backend got X-Forwarded-For %q", got)
	}
}

// Hop-by-hop fields, and the fields Connection names, are gone before any filter runs, so a
// client cannot make the engine delete what a policy adds; Connection cannot nominate a field
// the gateway owns or needs.
func TestServeHopByHop(t *testing.T) {
	t.Parallel()
	up := &fakeUpstream{name: "svc"}
	hop := []string{"Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authorization", "Te", "Upgrade"}
	f := &peek{names: append([]string{"X-Edge-Auth"}, hop...), set: [][2]string{{"X-Edge-Auth", "policy"}}}
	e := newEngine(t, Options{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}, routeWith(up, f))
	ctx := e.serve(t, "10.0.0.1", "POST /submit HTTP/1.1\r\nHost: app.example\r\n"+
		"Connection: close, X-Edge-Auth, X-Forwarded-For, X-Request-Id, Host, Content-Type, Content-Length, X-Meshgate-Budget-Ms\r\n"+
		"X-Edge-Auth: forged\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nProxy-Authorization: Basic eDp5\r\n"+
		"TE: trailers\r\nUpgrade: websocket\r\nContent-Type: text/plain\r\nX-Forwarded-For: 9.9.9.9\r\n"+
		"X-Request-Id: hop-id-1\r\nX-Meshgate-Budget-Ms: 5000\r\nContent-Length: 5\r\n\r\nhello")
	wantOK(t, ctx)
	for _, n := range f.names {
		if v := f.saw(n); v != "" {
			t.Errorf("filter saw %s: %q; want it removed before filters", n, v)
		}
	}
	s := up.only(t)
	for _, n := range hop {
		if v := s.values(n); len(v) != 0 {
			t.Errorf("backend got %s %q", n, v)
		}
	}
	if s.connClose {
		t.Error("the client's Connection: close reached the pooled upstream connection")
	}
	if got := s.values("X-Edge-Auth"); len(got) != 1 || got[0] != "policy" {
		t.Errorf("backend got X-Edge-Auth %q, want the policy's [\"policy\"]", got)
	}
	// What Connection named but may not remove.
	if got := s.values(hdrXForwardedFor); len(got) != 1 || got[0] != "9.9.9.9, 10.0.0.1" {
		t.Errorf("backend got X-Forwarded-For %q, want the trusted chain", got)
	}
	if got := s.values(hdrXRequestID); len(got) != 1 || got[0] != "hop-id-1" {
		t.Errorf("backend got X-Request-Id %q, want the trusted hop's", got)
	}
	if s.call.CallerDeadline.IsZero() {
		t.Error("the trusted budget was lost: no caller deadline")
	}
	if s.host != "app.example" || string(s.body) != "hello" || len(s.values("Content-Type")) != 1 || s.values("Content-Type")[0] != "text/plain" {
		t.Errorf("backend got host %q, body %q, Content-Type %q", s.host, s.body, s.values("Content-Type"))
	}
}

// authorizeAs is a connect listener's Authorize: every caller is the named mesh peer.
type authorizeAs string

func (a authorizeAs) Request(r *filter.Request) filter.Verdict {
	r.Identity = append(r.Identity[:0], a...)
	return filter.Verdict{}
}

// ownedLines is a request that sets every owned field, twice where a client could.
const ownedLines = "X-Forwarded-For: 6.6.6.6, 9.9.9.9, 10.1.1.1\r\nX-Forwarded-Proto: https\r\n" +
	"X-Forwarded-Host: front.example:8443\r\nX-Request-Id: sender-id-7\r\nX-Meshgate-Budget-Ms: 900\r\n" +
	"X-Meshgate-Identity: admin\r\nX-Meshgate-Identity: root\r\nForwarded: for=6.6.6.6\r\nX-Real-Ip: 6.6.6.6\r\nX-Forwarded-Port: 443\r\n"

// The owned fields: dropped from clients and replaced with the gateway's values; believed, as
// far as each is allowed, from trusted proxy hops (X-Forwarded-For counted from the right) and
// trusted mesh peers. Exactly one line of each reaches the backend, and the spellings the
// gateway does not set (Forwarded, X-Real-Ip, X-Forwarded-Port) none.
func TestServeOwnedHeaders(t *testing.T) {
	t.Parallel()
	trustedNets := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	const budget = 900 * time.Millisecond
	tests := []struct {
		name   string
		opts   Options
		remote string
		// What the backend and the filters must see.
		xff, proto, fwdHost, requestID, identity string // requestID "": a fresh one
		clientIP                                 string
		budget                                   bool // the sender's budget is the deadline
	}{
		{
			name: "client", opts: Options{TrustedProxies: trustedNets}, remote: remoteClient,
			xff: remoteClient, proto: "http", fwdHost: "app.example", clientIP: remoteClient,
		},
		{
			name: "client on a TLS listener", opts: Options{TLS: true, TrustedProxies: trustedNets}, remote: remoteClient,
			xff: remoteClient, proto: "https", fwdHost: "app.example", clientIP: remoteClient,
		},
		{
			name: "trusted proxy hop", opts: Options{TrustedProxies: trustedNets}, remote: "10.0.0.1",
			// 10.1.1.1 is a trusted hop too, so the client is 9.9.9.9; 6.6.6.6 is the client's own claim.
			xff: "9.9.9.9, 10.1.1.1, 10.0.0.1", proto: "https", fwdHost: "front.example:8443", requestID: "sender-id-7",
			clientIP: "9.9.9.9", budget: true,
		},
		{
			name: "trusted mesh peer", remote: "10.0.0.5",
			opts: Options{Connect: true, TLS: true, TrustedPeers: []string{"edge"}, Authorize: authorizeAs("edge")},
			// A meshgate edge starts the list with the client it resolved: the leftmost entry.
			xff: "6.6.6.6, 9.9.9.9, 10.1.1.1, 10.0.0.5", proto: "https", fwdHost: "front.example:8443", requestID: "sender-id-7",
			identity: "edge", clientIP: "6.6.6.6", budget: true,
		},
		{
			name: "other mesh peer", remote: "10.0.0.6",
			opts: Options{Connect: true, TLS: true, TrustedPeers: []string{"edge"}, Authorize: authorizeAs("web")},
			// It is the client: only its request id is kept (it authenticated).
			xff: "10.0.0.6", proto: "https", fwdHost: "app.example", requestID: "sender-id-7", identity: "web", clientIP: "10.0.0.6",
		},
		{
			name: "trusted range on a connect listener", remote: "10.0.0.1",
			opts: Options{Connect: true, TrustedProxies: trustedNets, Authorize: authorizeAs("web")},
			// trusted_proxies do not apply to connect listeners.
			xff: "10.0.0.1", proto: "http", fwdHost: "app.example", requestID: "sender-id-7", identity: "web", clientIP: "10.0.0.1",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			up := &fakeUpstream{name: "svc"}
			f := &peek{names: []string{hdrXForwardedFor, hdrXRequestID, upstream.BudgetHeader, "X-Meshgate-Identity", hdrForwarded}}
			opts := tt.opts
			opts.IdentityHeader = "X-Meshgate-Identity" // conf's default
			e := newEngine(t, opts, routeWith(up, f))
			start := time.Now()
			ctx := e.serve(t, tt.remote, "GET /a HTTP/1.1\r\nHost: app.example\r\n"+ownedLines+"\r\n")
			wantOK(t, ctx)
			s := up.only(t)
			one := func(name, want string) {
				t.Helper()
				if got := s.values(name); len(got) != 1 || got[0] != want {
					t.Errorf("backend got %s %q, want [%q]", name, got, want)
				}
			}
			one(hdrXForwardedFor, tt.xff)
			one(hdrXForwardedProto, tt.proto)
			one(hdrXForwardedHost, tt.fwdHost)
			respID := string(ctx.Response.Header.Peek(hdrXRequestID))
			if tt.requestID != "" {
				one(hdrXRequestID, tt.requestID)
			} else if got := s.values(hdrXRequestID); len(got) != 1 || len(got[0]) != 32 || got[0] == "sender-id-7" {
				t.Errorf("backend got X-Request-Id %q, want one fresh 32-digit id", got)
			}
			if ids := s.values(hdrXRequestID); len(ids) == 1 && (respID != ids[0] || f.reqID != ids[0]) {
				t.Errorf("request id: backend %q, response %q, filters %q; want one id", ids[0], respID, f.reqID)
			}
			if tt.identity != "" {
				one("X-Meshgate-Identity", tt.identity)
			} else if got := s.values("X-Meshgate-Identity"); len(got) != 0 {
				t.Errorf("backend got the identity header %q from a sender that may not set it", got)
			}
			for _, n := range []string{upstream.BudgetHeader, hdrForwarded, hdrXRealIP, hdrXForwardedPort} {
				if got := s.values(n); len(got) != 0 {
					t.Errorf("backend got %s %q", n, got)
				}
			}
			// Filters never see the sender's lines, only what the engine resolved.
			for _, n := range f.names {
				if v := f.saw(n); v != "" {
					t.Errorf("filter saw %s %q", n, v)
				}
			}
			if f.clientIP.String() != tt.clientIP || f.identity != tt.identity {
				t.Errorf("filter saw client %s identity %q, want %s %q", f.clientIP, f.identity, tt.clientIP, tt.identity)
			}
			// The budget: the sender's shortens the deadline and is the caller's; else the
			// route's own 30s applies and the caller imposed nothing.
			c := s.call
			if tt.budget {
				if c.CallerDeadline.IsZero() || !c.Deadline.Equal(c.CallerDeadline) ||
					c.Deadline.Before(start.Add(budget)) || c.Deadline.After(time.Now().Add(budget)) {
					t.Errorf("deadline %v, caller deadline %v after start; want both the %v budget",
						c.Deadline.Sub(start), c.CallerDeadline.Sub(start), budget)
				}
			} else if !c.CallerDeadline.IsZero() || c.Deadline.Before(start.Add(30*time.Second)) || c.Deadline.After(time.Now().Add(30*time.Second)) {
				t.Errorf("deadline %v after start, caller deadline set %v; want the route's 30s and no caller deadline",
					c.Deadline.Sub(start), !c.CallerDeadline.IsZero())
			}
		})
	}
}

// A trusted sender's budget can only shorten the deadline, and one already spent is answered
// at once; a malformed one is ignored rather than failing the request.
func TestServeBudget(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		budget  string
		timeout time.Duration
		status  int  // 0: forwarded
		caller  bool // the budget became the caller's deadline
	}{
		{"0", 30 * time.Second, fasthttp.StatusGatewayTimeout, false},
		{"-5", 30 * time.Second, fasthttp.StatusGatewayTimeout, false},
		{"900", 30 * time.Second, 0, true},
		{"900", 0, 0, true},                   // no route timeout: the budget is the only deadline
		{"60000", 30 * time.Second, 0, false}, // longer than the route's: ours binds
		{"abc", 30 * time.Second, 0, false},
		{"1234567890123", 30 * time.Second, 0, false}, // 13 digits: ignored
	} {
		t.Run(fmt.Sprintf("%s with %v", tt.budget, tt.timeout), func(t *testing.T) {
			t.Parallel()
			up := &fakeUpstream{name: "svc"}
			rt := testRoute{spec: route.Spec{Name: "all", PathPrefix: "/", Timeout: tt.timeout}, up: up}
			e := newEngine(t, Options{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}, rt)
			ctx := e.serve(t, "10.0.0.1", "GET / HTTP/1.1\r\nHost: app.example\r\nX-Meshgate-Budget-Ms: "+tt.budget+"\r\n\r\n")
			if tt.status != 0 {
				wantError(t, ctx, tt.status, ReasonDeadline)
				if up.count() != 0 {
					t.Fatal("a spent budget was forwarded")
				}
				return
			}
			wantOK(t, ctx)
			c := up.only(t).call
			if got := !c.CallerDeadline.IsZero(); got != tt.caller {
				t.Fatalf("caller deadline set %v, want %v (deadline in %v)", got, tt.caller, time.Until(c.Deadline))
			}
			if tt.caller && !c.Deadline.Equal(c.CallerDeadline) {
				t.Fatal("the caller's deadline is not the request's")
			}
			if tt.timeout == 0 && !tt.caller && !c.Deadline.IsZero() {
				t.Fatal("a deadline without a route timeout or budget")
			}
		})
	}
}

// The request-target is re-encoded from the normalised path; a rewrite that would bring a dot
// segment back is refused.
func TestServePath(t *testing.T) {
	t.Parallel()
	rewrite := testRoute{spec: route.Spec{Name: "static", PathPrefix: "/static", RewritePrefix: "/assets/"}}
	plainRoute := testRoute{spec: route.Spec{Name: "all", PathPrefix: "/"}}
	for _, tt := range []struct {
		target string
		want   string // "": 400 invalid_path
	}{
		{"/static/app.js", "/assets/app.js"},
		{"/static../admin", ""},
		{"/static%2e%2e/admin", ""},
		{"/static./x", ""},
		{"/static..x/y", "/assets/..x/y"}, // not a dot segment
		{"/x/../y", "/y"},                 // normalised by fasthttp before routing
		{"/x/%2e%2e/y", "/y"},
		{"/a%20b?q=%3F", "/a%20b?q=%3F"},
		{"/a%3Fb", "/a%3Fb"}, // a decoded '?' is re-encoded, not a query
		{"/a%0d%0ab", "/a%0D%0Ab"},
	} {
		t.Run(tt.target, func(t *testing.T) {
			t.Parallel()
			static, all := &fakeUpstream{name: "static"}, &fakeUpstream{name: "svc"}
			r1, r2 := rewrite, plainRoute
			r1.up, r2.up = static, all
			e := newEngine(t, Options{}, r1, r2)
			ctx := e.serve(t, remoteClient, "GET "+tt.target+" HTTP/1.1\r\nHost: app.example\r\n\r\n")
			if tt.want == "" {
				wantError(t, ctx, fasthttp.StatusBadRequest, ReasonBadPath)
				if static.count()+all.count() != 0 {
					t.Fatal("a backend received the request")
				}
				return
			}
			wantOK(t, ctx)
			got := all
			if static.count() > 0 {
				got = static
			}
			if s := got.only(t); s.uri != tt.want {
				t.Fatalf("backend %s got %q, want %q", got.name, s.uri, tt.want)
			}
		})
	}
}

func TestServeHost(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name, head string
		status     int    // 0: forwarded
		reason     string // with status
		host       string // the Host the backend gets
	}{
		// fasthttp's parser refuses this one itself; the engine must not rely on it.
		{"HTTP/1.1 without Host", "GET / HTTP/1.1\r\nHost: removed.example\r\n", fasthttp.StatusBadRequest, ReasonMissingHost, ""},
		{"HTTP/1.0 without Host", "GET / HTTP/1.0\r\n", 0, "", "0.0.0.0:0"}, // the address the client reached
		{"unbracketed IPv6", "GET / HTTP/1.1\r\nHost: ::1\r\n", fasthttp.StatusBadRequest, ReasonBadRequest, ""},
		{"bracketed IPv6", "GET / HTTP/1.1\r\nHost: [::1]:8080\r\n", 0, "", "[::1]:8080"},
		{"absolute-form target wins", "GET http://other.example/x HTTP/1.1\r\nHost: app.example\r\n", 0, "", "other.example"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			up := &fakeUpstream{name: "svc"}
			e := newEngine(t, Options{}, routeWith(up))
			ctx := e.serveEdited(t, remoteClient, tt.head+"\r\n", func(r *fasthttp.Request) {
				if tt.reason == ReasonMissingHost {
					r.Header.Del(fasthttp.HeaderHost)
				}
			})
			if tt.status != 0 {
				wantError(t, ctx, tt.status, tt.reason)
				wantRejectedEarly(t, e, ctx)
				if up.count() != 0 {
					t.Fatal("backend received the request")
				}
				return
			}
			wantOK(t, ctx)
			if s := up.only(t); s.host != tt.host {
				t.Fatalf("backend got Host %q, want %q", s.host, tt.host)
			}
		})
	}
}

// Framing fasthttp accepts but an edge must not: Content-Length with chunked, broken escapes.
func TestServeFraming(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name, raw string
	}{
		{"content-length with chunked", "POST / HTTP/1.1\r\nHost: app.example\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"},
		{"chunked with content-length", "POST / HTTP/1.1\r\nHost: app.example\r\nTransfer-Encoding: chunked\r\ncontent-length: 5\r\n\r\n5\r\nhello\r\n0\r\n\r\n"},
		{"broken escape", "GET /%zz HTTP/1.1\r\nHost: app.example\r\n\r\n"},
		{"truncated escape", "GET /a%2 HTTP/1.1\r\nHost: app.example\r\n\r\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			up := &fakeUpstream{name: "svc"}
			e := newEngine(t, Options{}, routeWith(up))
			ctx := e.serve(t, remoteClient, tt.raw)
			wantError(t, ctx, fasthttp.StatusBadRequest, ReasonBadRequest)
			wantRejectedEarly(t, e, ctx)
			if up.count() != 0 {
				t.Fatal("backend received the request")
			}
		})
	}
}

// chunked encodes body as chunks of at most n bytes.
func chunked(body string, n int) string {
	var b strings.Builder
	for len(body) > 0 {
		c := body[:min(n, len(body))]
		body = body[len(c):]
		fmt.Fprintf(&b, "%x\r\n%s\r\n", len(c), c)
	}
	b.WriteString("0\r\n\r\n")
	return b.String()
}

// Request bodies: max_body_bytes before and while streaming (413), what is buffered (and so
// replayable) and what is streamed, and whose failure a broken try is: the client's (its body
// broke: 400 or 413, Call.Body reports it) or the upstream's.
func TestServeBody(t *testing.T) {
	t.Parallel()
	const maxBody = 64
	post := func(headers, body string) string {
		return "POST /up HTTP/1.1\r\nHost: app.example\r\n" + headers + "\r\n" + body
	}
	withLength := func(body string) string { return post(fmt.Sprintf("Content-Length: %d\r\n", len(body)), body) }
	asChunks := func(body string) string { return post("Transfer-Encoding: chunked\r\n", chunked(body, 16)) }
	small, medium, large := strings.Repeat("s", 20), strings.Repeat("m", 50), strings.Repeat("l", 100)
	tests := []struct {
		name       string
		raw        string
		upErr      error  // the backend's answer when the body was fine
		status     int    // 0: 200 forwarded
		reason     string // with status
		called     bool   // the backend got the request
		body       string // what the backend read, when called
		streamed   bool   // Call.Body set, not replayable
		clientFail bool   // Call.Body.ClientFailed() after the read
	}{
		{name: "buffered", raw: withLength(small), called: true, body: small},
		{name: "streamed", raw: withLength(medium), called: true, body: medium, streamed: true},
		{name: "small chunked is buffered", raw: asChunks(small), called: true, body: small},
		{name: "large chunked is streamed", raw: asChunks(medium), called: true, body: medium, streamed: true},
		{name: "announced over the limit", raw: withLength(large), status: 413, reason: ReasonBodyTooLarge},
		{name: "chunked over the limit", raw: asChunks(large), status: 413, reason: ReasonBodyTooLarge,
			called: true, body: large[:maxBody], streamed: true, clientFail: true},
		{name: "client aborts a streamed body", raw: post("Content-Length: 50\r\n", medium[:40]), status: 400, reason: ReasonBadRequest,
			called: true, body: medium[:40], streamed: true, clientFail: true},
		{name: "upstream fails a healthy streamed body", raw: withLength(medium), upErr: fmt.Errorf("%w: scripted", upstream.ErrReset),
			status: 502, reason: ReasonReset, called: true, body: medium, streamed: true},
		{name: "upstream times out on a buffered body", raw: withLength(small), upErr: fmt.Errorf("%w: scripted", upstream.ErrTimeout),
			status: 504, reason: ReasonTimeout, called: true, body: small},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			up := &fakeUpstream{name: "svc", err: tt.upErr}
			e := newEngine(t, Options{MaxBodyBytes: maxBody}, routeWith(up))
			ctx := e.serve(t, remoteClient, tt.raw)
			if tt.status == 0 {
				wantOK(t, ctx)
			} else {
				wantError(t, ctx, tt.status, tt.reason)
			}
			if !tt.called {
				if up.count() != 0 {
					t.Fatal("backend received the request")
				}
				wantRejectedEarly(t, e, ctx)
				return
			}
			s := up.only(t)
			if string(s.body) != tt.body {
				t.Errorf("backend read %d bytes %.20q…, want %d", len(s.body), s.body, len(tt.body))
			}
			if s.bodySet != tt.streamed || s.call.Replayable == tt.streamed {
				t.Errorf("Call.Body set %v, replayable %v; want a streamed body %v", s.bodySet, s.call.Replayable, tt.streamed)
			}
			if s.clientFailed != tt.clientFail {
				t.Errorf("Call.Body.ClientFailed() = %v, want %v (read error %v)", s.clientFailed, tt.clientFail, s.bodyErr)
			}
		})
	}
}

// Upstream failures become a status and a reason code, never the error's text.
func TestServeUpstreamErrors(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		err    error
		status int
		reason string
	}{
		{upstream.ErrNoHosts, 503, ReasonNoHosts},
		{upstream.ErrOverflow, 503, ReasonOverflow},
		{upstream.ErrCircuitOpen, 503, ReasonCircuitOpen},
		{upstream.ErrTimeout, 504, ReasonTimeout},
		{upstream.ErrConnect, 502, ReasonConnect},
		{upstream.ErrReset, 502, ReasonReset},
		{upstream.ErrResponseTooLarge, 502, ReasonTooLarge},
		{upstream.ErrProtocol, 502, ReasonProtocol},
		{errors.New("something else"), 502, ReasonProtocol},
	} {
		t.Run(tt.err.Error(), func(t *testing.T) {
			t.Parallel()
			up := &fakeUpstream{name: "svc", err: fmt.Errorf("%w: secret internal detail", tt.err)}
			e := newEngine(t, Options{}, routeWith(up))
			ctx := e.serve(t, remoteClient, "GET / HTTP/1.1\r\nHost: app.example\r\n\r\n")
			wantError(t, ctx, tt.status, tt.reason)
			if bytes.Contains(ctx.Response.Body(), []byte("secret")) {
				t.Fatalf("error text reached the client: %s", ctx.Response.Body())
			}
			if ctx.Response.ConnectionClose() || e.lingers() != 0 {
				t.Fatal("an upstream failure closed the client connection")
			}
		})
	}
}

// The response: its hop-by-hop fields and what its Connection names are removed, the gateway's
// request id replaces the upstream's, the upstream connection's close does not close the
// client's, and a body over the backend's MaxResponseBytes is a 502.
func TestServeResponse(t *testing.T) {
	t.Parallel()
	t.Run("hygiene", func(t *testing.T) {
		t.Parallel()
		up := &fakeUpstream{name: "svc", status: 201, respBody: "created", respHeaders: [][2]string{
			{"Connection", "close, X-Internal"}, {"X-Internal", "secret"}, {"Keep-Alive", "timeout=5"},
			{"X-Request-Id", "upstream-id"}, {"X-Kept", "1"}, {"X-Request-Id", "upstream-id-2"},
		}, connClose: true}
		e := newEngine(t, Options{}, routeWith(up))
		ctx := e.serve(t, remoteClient, "GET / HTTP/1.1\r\nHost: app.example\r\n\r\n")
		rh := &ctx.Response.Header
		if ctx.Response.StatusCode() != 201 || string(ctx.Response.Body()) != "created" || string(rh.Peek("X-Kept")) != "1" {
			t.Fatalf("status %d body %q X-Kept %q", ctx.Response.StatusCode(), ctx.Response.Body(), rh.Peek("X-Kept"))
		}
		for _, n := range []string{"X-Internal", "Keep-Alive"} {
			if v := rh.Peek(n); len(v) != 0 {
				t.Errorf("client got %s: %q", n, v)
			}
		}
		if rh.ConnectionClose() {
			t.Error("the upstream's Connection: close closed the client connection")
		}
		var ids []string
		for k, v := range rh.All() {
			if string(k) == hdrXRequestID {
				ids = append(ids, string(v))
			}
		}
		if sent := up.only(t).values(hdrXRequestID); len(ids) != 1 || len(sent) != 1 || ids[0] != sent[0] {
			t.Errorf("response X-Request-Id %q, sent upstream %q; want the gateway's id once", ids, sent)
		}
	})
	t.Run("over max_response_bytes", func(t *testing.T) {
		t.Parallel()
		up := &fakeUpstream{name: "svc", maxResp: 10, respBody: strings.Repeat("x", 11)}
		e := newEngine(t, Options{}, routeWith(up))
		ctx := e.serve(t, remoteClient, "GET / HTTP/1.1\r\nHost: app.example\r\n\r\n")
		wantError(t, ctx, fasthttp.StatusBadGateway, ReasonTooLarge)
	})
	t.Run("at max_response_bytes", func(t *testing.T) {
		t.Parallel()
		up := &fakeUpstream{name: "svc", maxResp: 10, respBody: strings.Repeat("x", 10)}
		e := newEngine(t, Options{}, routeWith(up))
		ctx := e.serve(t, remoteClient, "GET / HTTP/1.1\r\nHost: app.example\r\n\r\n")
		wantOK(t, ctx)
		if len(ctx.Response.Body()) != 10 {
			t.Fatalf("body %q", ctx.Response.Body())
		}
	})
}

// A chunked body whose buffered head lands exactly on max_body_bytes leaves nothing for the
// streamed rest: the next byte is over the limit (413), not the start of an unlimited stream.
func TestServeChunkedLimitExactlyBuffered(t *testing.T) {
	t.Parallel()
	up := &fakeUpstream{name: "svc"}
	e := newEngine(t, Options{MaxBodyBytes: 48}, routeWith(up)) // 3 chunks of 16 pass the 32-byte threshold at 48
	body := strings.Repeat("x", 200)
	ctx := e.serve(t, remoteClient, "POST /up HTTP/1.1\r\nHost: app.example\r\nTransfer-Encoding: chunked\r\n\r\n"+chunked(body, 16))
	wantError(t, ctx, 413, ReasonBodyTooLarge)
	if s := up.only(t); len(s.body) > 48 {
		t.Fatalf("backend read %d bytes past the 48-byte limit", len(s.body))
	}
}
