package proxy

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"

	"github.com/meshgate/meshgate/discovery"
	"github.com/meshgate/meshgate/gateway/route"
	"github.com/meshgate/meshgate/mesh/lb"
	"github.com/meshgate/meshgate/mesh/tracing"
	"github.com/meshgate/meshgate/mesh/upstream"
)

// origin starts a real fasthttp server on a loopback port answering 1 KiB.
func origin(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	body := make([]byte, 1024)
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) { ctx.SetBody(body) }}
	go srv.Serve(ln) //nolint:errcheck // returns when Shutdown in Cleanup stops it
	t.Cleanup(func() { _ = srv.Shutdown() })
	return ln.Addr().String()
}

func testHandler(t testing.TB, addr string) *Handler {
	t.Helper()
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	mgr, err := upstream.NewManager(upstream.ManagerOptions{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	pol, _ := lb.New(lb.Options{})
	c, err := mgr.Ensure(upstream.Options{Name: "origin", Policy: pol, MaxConnsPerHost: 64})
	if err != nil {
		t.Fatal(err)
	}
	c.Apply(discovery.Set{Service: "origin", Endpoints: []discovery.Endpoint{{Address: addr, Weight: 1}}, Source: "test"})
	table, err := route.New(route.Options{Routes: []route.Spec{{
		Name: "all", PathPrefix: "/", Targets: []route.Target{{Service: "origin", Weight: 1}},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	gen, err := NewGeneration(table, []RouteBackends{{Name: "all", Backends: []Backend{{Cluster: c}}}}, m)
	if err != nil {
		t.Fatal(err)
	}
	h, err := New(Options{Listener: "public", Metrics: m}, gen)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// TestServeAllocations proves the proxied GET path (route, forward to a real upstream, copy
// the response, metrics, access log off) does not allocate per request in steady state.
func TestServeAllocations(t *testing.T) {
	t.Run("client", func(t *testing.T) { serveAllocs(t, testHandler(t, origin(t)), nil) })
	// Behind a trusted proxy with every owned field set: resolving the client, keeping the
	// trusted values and dropping the lines costs no allocation either.
	t.Run("trusted hop", func(t *testing.T) {
		h := testHandler(t, origin(t))
		h.opts.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
		serveAllocs(t, h, [][2]string{{"X-Forwarded-For", "6.6.6.6, 9.9.9.9"}, {"X-Forwarded-Proto", "https"},
			{"X-Forwarded-Host", "app.example"}, {"X-Meshgate-Budget-Ms", "900"}, {"Connection", "X-Gone"}, {"X-Gone", "1"}})
	})
	// User-Agent and Grpc-Timeout share a Bloom bit in scanHeaders: a "maybe repeated" that is
	// not must not take the allocating join.
	t.Run("bloom collision", func(t *testing.T) {
		serveAllocs(t, testHandler(t, origin(t)), [][2]string{{"User-Agent", "grpc-go/1.85.0"}, {"Grpc-Timeout", "10S"}})
	})
	// Tracing on but the request not sampled (ratio 0, or a parent that says no): the span is
	// started, decided and propagated upstream in every format without an allocation.
	t.Run("tracing unsampled", func(t *testing.T) {
		h := testHandler(t, origin(t))
		h.opts.Tracer = testTracer(t, 0, tracing.W3C, tracing.B3, tracing.B3Multi)
		serveAllocs(t, h, nil)
		serveAllocs(t, h, [][2]string{{"Traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"}, {"Tracestate", "a=b"}})
		serveAllocs(t, h, [][2]string{{"B3", "4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0"}})
	})
}

// testTracer is a tracer exporting nowhere (nothing is sampled, or the test reads no spans).
func testTracer(t testing.TB, ratio float64, formats ...tracing.Format) *tracing.Tracer {
	t.Helper()
	tr, err := tracing.New(tracing.Options{Endpoint: "http://127.0.0.1:1", SampleRatio: ratio, Propagation: formats,
		Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tr.Close)
	return tr
}

func TestHasRepeated(t *testing.T) {
	t.Parallel()
	var hd fasthttp.RequestHeader
	hd.Set("User-Agent", "a")
	hd.Set("Grpc-Timeout", "1S")
	hd.Set("X-Tag", "1")
	if hasRepeated(&hd) {
		t.Error("distinct names reported as repeated")
	}
	hd.Add("X-Tag", "2")
	if !hasRepeated(&hd) {
		t.Error("a repeated name not reported")
	}
}

func serveAllocs(t *testing.T, h *Handler, extra [][2]string) {
	t.Helper()
	var ctx fasthttp.RequestCtx
	var req fasthttp.Request
	remote := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5555}
	ctx.Init(&req, remote, nil) // once: Init itself allocates a fake address holder
	serve := func() {
		ctx.Request.Reset()
		ctx.Request.Header.SetMethod("GET")
		ctx.Request.SetRequestURI("/hello?x=1")
		ctx.Request.Header.SetHost("example.com")
		ctx.Request.Header.Set("X-Request-Id", "fixed-id")
		for _, kv := range extra {
			ctx.Request.Header.Set(kv[0], kv[1])
		}
		ctx.Response.Reset()
		h.Serve(&ctx)
		if ctx.Response.StatusCode() != 200 || len(ctx.Response.Body()) != 1024 {
			t.Fatalf("status %d, %d bytes", ctx.Response.StatusCode(), len(ctx.Response.Body()))
		}
	}
	for range 10 {
		serve() // warm pools and the upstream connection
	}
	if raceEnabled {
		t.Skip("the race detector changes allocation counts")
	}
	// A 1 KiB answer is read whole by the upstream transport (mesh/upstream/roundtrip.go):
	// fasthttp's stream, four allocations per response, is only for long bodies.
	if n := testing.AllocsPerRun(200, serve); n != 0 {
		t.Errorf("Serve allocates %.1f times per request, want 0", n)
	}
}

func BenchmarkServe(b *testing.B) {
	h := testHandler(b, origin(b))
	remote := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5555}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		var ctx fasthttp.RequestCtx
		var req fasthttp.Request
		for pb.Next() {
			req.Header.SetMethod("GET")
			req.SetRequestURI("/hello")
			req.Header.SetHost("example.com")
			ctx.Init(&req, remote, nil)
			ctx.Response.Reset()
			h.Serve(&ctx)
		}
	})
}

// BenchmarkServeTraced is BenchmarkServe with tracing off, on and never sampled, and sampled
// every time with the spans exported to a real HTTP collector that discards them: the profile
// of the last one is where tracing's cost per recorded request is (encoding included, since
// the exporter runs in this process).
func BenchmarkServeTraced(b *testing.B) {
	sink := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
	}))
	b.Cleanup(sink.Close)
	for _, bc := range []struct {
		name  string
		ratio float64 // < 0: no tracer
	}{{"off", -1}, {"unsampled", 0}, {"sampled", 1}} {
		b.Run(bc.name, func(b *testing.B) {
			h := testHandler(b, origin(b))
			if bc.ratio >= 0 {
				tr, err := tracing.New(tracing.Options{Endpoint: sink.URL, SampleRatio: bc.ratio, Registerer: prometheus.NewRegistry(),
					QueueSize: 1 << 16})
				if err != nil {
					b.Fatal(err)
				}
				tr.Start()
				b.Cleanup(tr.Close)
				h.opts.Tracer = tr
			}
			remote := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5555}
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				var ctx fasthttp.RequestCtx
				var req fasthttp.Request
				for pb.Next() {
					req.Header.SetMethod("GET")
					req.SetRequestURI("/hello")
					req.Header.SetHost("example.com")
					ctx.Init(&req, remote, nil)
					ctx.Response.Reset()
					h.Serve(&ctx)
				}
			})
		})
	}
}

func TestClientAddr(t *testing.T) {
	t.Parallel()
	nets := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	cases := []struct {
		remote, xff, want, chain string // chain: the entries forwarded before the remote
	}{
		{"1.2.3.4", "9.9.9.9", "1.2.3.4", ""},                                      // untrusted peer: its XFF is ignored
		{"10.0.0.1", "9.9.9.9", "9.9.9.9", "9.9.9.9"},                              // trusted peer: believe the last hop
		{"10.0.0.1", "6.6.6.6, 9.9.9.9, 10.1.1.1", "9.9.9.9", "9.9.9.9, 10.1.1.1"}, // skip trusted hops right to left; drop what the client wrote
		{"10.0.0.1", "garbage", "10.0.0.1", ""},                                    // unparsable: stop at what we know
		{"10.0.0.1", "6.6.6.6, garbage, 10.1.1.1", "10.1.1.1", "10.1.1.1"},         // garbage left of a hop: the hop saw the client
		{"10.0.0.1", "", "10.0.0.1", ""},                                           // no header
		{"10.0.0.1", "10.2.2.2, 10.3.3.3", "10.2.2.2", "10.2.2.2, 10.3.3.3"},       // all trusted: leftmost
		{"10.0.0.1", "9.9.9.9,10.1.1.1", "9.9.9.9", "9.9.9.9,10.1.1.1"},            // no space after the comma
	}
	for _, tc := range cases {
		xff := []byte(tc.xff)
		got, from := clientAddr(netip.MustParseAddr(tc.remote), xff, nets)
		chain := ""
		if from >= 0 {
			chain = string(bytes.TrimSpace(xff[from:]))
		}
		if got.String() != tc.want || chain != tc.chain {
			t.Errorf("clientAddr(%s, %q) = %s, chain %q; want %s, chain %q", tc.remote, tc.xff, got, chain, tc.want, tc.chain)
		}
	}
}

func TestAppendQuotedPath(t *testing.T) {
	t.Parallel()
	cases := map[string]string{
		"/a/b":        "/a/b",
		"/a b":        "/a%20b",
		"/a?b#c":      "/a%3Fb%23c",
		"/ünï":        "/%C3%BCn%C3%AF",
		"/a;b=c@d:e~": "/a;b=c@d:e~",
		"/\r\n":       "/%0D%0A",
	}
	for in, want := range cases {
		if got := string(appendQuotedPath(nil, []byte(in))); got != want {
			t.Errorf("appendQuotedPath(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestValidRequestID(t *testing.T) {
	t.Parallel()
	for id, ok := range map[string]bool{
		"abc-123": true, "a.b:c_d": true, "": false, "a b": false, "a\"b": false,
		string(make([]byte, 129)): false,
	} {
		if validRequestID([]byte(id)) != ok {
			t.Errorf("validRequestID(%q) = %v", id, !ok)
		}
	}
	id := appendRequestID(nil)
	if len(id) != 32 || !validRequestID(id) {
		t.Errorf("generated id %q", id)
	}
}
