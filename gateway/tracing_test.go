package gateway

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	grpcstatus "google.golang.org/grpc/status"

	"github.com/meshgate/meshgate/internal/grpcecho"
	"github.com/meshgate/meshgate/internal/otlptest"
)

// tracedEdge is minimal(upstreams) with a tracing block exporting to endpoint in small, quick
// batches (extra: more tracing keys, "k: v, ...").
func tracedEdge(t *testing.T, endpoint, extra string, upstreams ...string) *edgeUnderTest {
	t.Helper()
	block := fmt.Sprintf("tracing: { endpoint: %q, batch_size: 1, batch_interval: 10ms, service_name: edge%s }\n", endpoint, extra)
	return startEdge(t, minimal(upstreams...)+block)
}

// traceparentOf splits a traceparent the upstream received.
func traceparentOf(t *testing.T, v string) (trace, parent, flags string) {
	t.Helper()
	p := strings.Split(v, "-")
	if len(p) != 4 || p[0] != "00" || len(p[1]) != 32 || len(p[2]) != 16 {
		t.Fatalf("upstream traceparent %q", v)
	}
	return p[1], p[2], p[3]
}

// spansOf waits until the receiver holds n spans of trace and returns them by kind.
func spansOf(t *testing.T, rcv *otlptest.Receiver, trace string, n int) (server otlptest.Span, clients []otlptest.Span) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%d spans of trace %s", n, trace), func() bool { return len(rcv.Trace(trace)) >= n })
	got := rcv.Trace(trace)
	if len(got) != n {
		t.Fatalf("%d spans of trace %s, want %d: %v", len(got), trace, n, got)
	}
	for _, s := range got {
		switch s.Kind.String() {
		case "SPAN_KIND_SERVER":
			server = s
		case "SPAN_KIND_CLIENT":
			clients = append(clients, s)
		}
	}
	if server.Span == nil {
		t.Fatalf("no server span in %v", got)
	}
	return server, clients
}

// A request through a real edge to a real upstream: a server span and a client span, parent
// and child, with their attributes, and the upstream's traceparent names the client span.
func TestTracingServerAndClientSpans(t *testing.T) {
	t.Parallel()
	rcv := otlptest.Start(t)
	up, saw := startUpstream(t, "a", nil)
	e := tracedEdge(t, rcv.URL, ", sample_ratio: 1", hostport(up))

	resp, _ := get(t, e.url+"/some/path", nil)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	r, _ := saw.last(t)
	trace, parent, flags := traceparentOf(t, r.Header.Get("Traceparent"))
	if flags != "01" {
		t.Errorf("upstream told flags %s, want sampled", flags)
	}
	srv, clients := spansOf(t, rcv, trace, 2)
	cli := clients[0]
	if srv.Name != "GET all" || len(srv.ParentSpanId) != 0 || srv.Service != "edge" {
		t.Errorf("server span %q parent %q service %q", srv.Name, srv.ParentID(), srv.Service)
	}
	for k, want := range map[string]any{"http.route": "all", "meshgate.service": "origin", "http.response.status_code": int64(200),
		"network.protocol.version": "1.1", "http.request.method": "GET", "meshgate.listener": "public",
		"meshgate.request_id": resp.Header.Get("X-Request-Id"), "meshgate.upstream.address": hostport(up)} {
		if got := srv.Attr(k); got != want {
			t.Errorf("server span %s = %v, want %v", k, got, want)
		}
	}
	for _, k := range []string{"meshgate.plugin.duration_us", "meshgate.intention", "meshgate.intention.decision"} {
		if got := srv.Attr(k); got != nil {
			t.Errorf("server span %s = %v on a route without plugins behind a public listener", k, got)
		}
	}
	if cli.ParentID() != srv.SpanID() || cli.SpanID() != parent {
		t.Errorf("client span %s (parent %s); server span %s; upstream's parent %s", cli.SpanID(), cli.ParentID(), srv.SpanID(), parent)
	}
	for k, want := range map[string]any{"meshgate.upstream.address": hostport(up), "meshgate.attempt": int64(1),
		"http.response.status_code": int64(200), "meshgate.service": "origin"} {
		if got := cli.Attr(k); got != want {
			t.Errorf("client span %s = %v, want %v", k, got, want)
		}
	}
	if cli.StartTimeUnixNano < srv.StartTimeUnixNano || cli.EndTimeUnixNano > srv.EndTimeUnixNano {
		t.Errorf("client span [%d, %d] outside its server span [%d, %d]", cli.StartTimeUnixNano, cli.EndTimeUnixNano,
			srv.StartTimeUnixNano, srv.EndTimeUnixNano)
	}
	if n, bad := rcv.Requests(); n == 0 || bad != 0 {
		t.Errorf("receiver: %d requests, %d not OTLP", n, bad)
	}
	waitFor(t, "spans exported counted", func() bool { return metricAtLeast(t, e, "meshgate_tracing_spans_exported_total", 2) })
}

// A route with a plugin: the server span says how long the plugin's calls (request and response
// phase, a real plugin process) took, and that is part of the request's time.
func TestTracingPluginTime(t *testing.T) {
	t.Parallel()
	rcv := otlptest.Start(t)
	up, saw := startUpstream(t, "origin", nil)
	yaml := minimal(hostport(up)) + "plugins:\n" +
		pluginYAML(t, "stamp", "stamper", "    config: { request: { X-Stamped-By: meshgate }, response: { X-Stamp: out } }\n") +
		"policies: { stamp: { plugin: stamp } }\n" +
		fmt.Sprintf("tracing: { endpoint: %q, sample_ratio: 1, batch_size: 1, batch_interval: 10ms }\n", rcv.URL)
	yaml = strings.Replace(yaml, "    to: [ { service: origin } ]\n", "    to: [ { service: origin } ]\n    policies: [ stamp ]\n", 1)
	e := startEdge(t, yaml)
	resp, _ := get(t, e.url+"/x", nil)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Stamp") != "out" {
		t.Fatalf("status %d, X-Stamp %q: the plugin did not run", resp.StatusCode, resp.Header.Get("X-Stamp"))
	}
	r, _ := saw.last(t)
	trace, _, _ := traceparentOf(t, r.Header.Get("Traceparent"))
	srv, _ := spansOf(t, rcv, trace, 2)
	us, ok := srv.Attr("meshgate.plugin.duration_us").(int64)
	total := int64(srv.EndTimeUnixNano-srv.StartTimeUnixNano) / 1000
	if !ok || us <= 0 || us > total {
		t.Fatalf("server span meshgate.plugin.duration_us = %v, want in (0, %d] (the span's own µs)", srv.Attr("meshgate.plugin.duration_us"), total)
	}
}

// Each try is a client span of its own, and each reaches the upstream with itself as parent.
func TestTracingSpanPerAttempt(t *testing.T) {
	t.Parallel()
	rcv := otlptest.Start(t)
	var n atomic.Int32
	up, saw := startUpstream(t, "a", func(w http.ResponseWriter, _ *http.Request) {
		if n.Add(1) == 1 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		fmt.Fprint(w, "ok")
	})
	cfg := strings.Replace(minimal(hostport(up)), "    to: [ { service: origin } ]\n",
		"    to: [ { service: origin } ]\n    retry: { attempts: 2, on: [ gateway-error ] }\n", 1)
	e := startEdge(t, cfg+fmt.Sprintf("tracing: { endpoint: %q, sample_ratio: 1, batch_size: 1, batch_interval: 10ms }\n", rcv.URL))
	if resp, _ := get(t, e.url+"/", nil); resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	saw.mu.Lock()
	var parents []string
	var trace string
	for _, r := range saw.reqs {
		var p string
		trace, p, _ = traceparentOf(t, r.Header.Get("Traceparent"))
		parents = append(parents, p)
	}
	saw.mu.Unlock()
	if len(parents) != 2 || parents[0] == parents[1] {
		t.Fatalf("upstream parents %v: want one per try", parents)
	}
	srv, clients := spansOf(t, rcv, trace, 3)
	for _, c := range clients {
		a := c.Attr("meshgate.attempt").(int64)
		if c.SpanID() != parents[a-1] || c.ParentID() != srv.SpanID() {
			t.Errorf("attempt %d: span %s parent %s; upstream saw %s", a, c.SpanID(), c.ParentID(), parents[a-1])
		}
		switch a {
		case 1:
			if c.Attr("http.response.status_code") != int64(503) || c.Status.Code.String() != "STATUS_CODE_ERROR" ||
				c.Attr("meshgate.retry.reason") != nil {
				t.Errorf("first try span %v", c)
			}
		case 2:
			if c.Attr("http.response.status_code") != int64(200) || c.Status.Code.String() == "STATUS_CODE_ERROR" {
				t.Errorf("second try span %v", c)
			}
			// The retry says why it was made: the first try's 503.
			if r, st := c.Attr("meshgate.retry.reason"), c.Attr("meshgate.retry.status"); r != "retriable-status-code" || st != int64(503) {
				t.Errorf("second try: retry reason %v, status %v; want retriable-status-code, 503", r, st)
			}
		}
	}
	if srv.Attr("meshgate.attempts") != int64(2) {
		t.Errorf("server span attempts %v", srv.Attr("meshgate.attempts"))
	}
}

// An incoming W3C parent is continued: its trace, its span as our parent, its decision (a
// sampled parent is recorded at ratio 0, an unsampled one not at ratio 1), its tracestate.
func TestTracingContinuesW3CParent(t *testing.T) {
	t.Parallel()
	rcv := otlptest.Start(t)
	up, saw := startUpstream(t, "a", nil)
	never := tracedEdge(t, rcv.URL, ", sample_ratio: 0", hostport(up))
	always := tracedEdge(t, rcv.URL, ", sample_ratio: 1", hostport(up))

	const tid, sid = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	get(t, always.url+"/", map[string]string{"Traceparent": "00-1111111111111111111111111111111a-" + sid + "-00"})
	r, _ := saw.last(t)
	if trace, parent, flags := traceparentOf(t, r.Header.Get("Traceparent")); trace != "1111111111111111111111111111111a" || flags != "00" || parent == sid {
		t.Errorf("unsampled parent: upstream got trace %s parent %s flags %s", trace, parent, flags)
	}

	get(t, never.url+"/", map[string]string{"Traceparent": "00-" + tid + "-" + sid + "-01", "Tracestate": "vendor=abc"})
	r, _ = saw.last(t)
	trace, parent, flags := traceparentOf(t, r.Header.Get("Traceparent"))
	if trace != tid || flags != "01" {
		t.Errorf("sampled parent: upstream got trace %s flags %s", trace, flags)
	}
	if got := r.Header.Get("Tracestate"); got != "vendor=abc" {
		t.Errorf("tracestate upstream %q", got)
	}
	srv, clients := spansOf(t, rcv, tid, 2)
	if srv.ParentID() != sid || clients[0].SpanID() != parent {
		t.Errorf("server span parent %s, want the caller's %s; client span %s, upstream's parent %s", srv.ParentID(), sid,
			clients[0].SpanID(), parent)
	}
	// Spans leave in order: the unsampled request's, had it been recorded, would be here by now.
	if got := rcv.Trace("1111111111111111111111111111111a"); len(got) != 0 {
		t.Errorf("an unsampled parent's request was recorded: %v", got)
	}
}

// propagation: [b3, w3c]: a B3 parent (either spelling) goes upstream as traceparent and b3,
// and a W3C parent goes upstream as b3 too; each continues the caller's trace.
func TestTracingB3AndW3CConversion(t *testing.T) {
	t.Parallel()
	rcv := otlptest.Start(t)
	up, saw := startUpstream(t, "a", nil)
	e := tracedEdge(t, rcv.URL, ", sample_ratio: 0, propagation: [ b3, w3c ]", hostport(up))
	const tid, sid = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	for _, c := range []struct {
		name string
		hdr  map[string]string
	}{
		{"b3 single", map[string]string{"B3": tid + "-" + sid + "-1"}},
		{"b3 multi", map[string]string{"X-B3-TraceId": tid, "X-B3-SpanId": sid, "X-B3-Sampled": "1"}},
		{"w3c", map[string]string{"Traceparent": "00-" + tid + "-" + sid + "-01", "Tracestate": "vendor=abc"}},
	} {
		get(t, e.url+"/", c.hdr)
		r, _ := saw.last(t)
		trace, parent, flags := traceparentOf(t, r.Header.Get("Traceparent"))
		if trace != tid || flags != "01" || parent == sid {
			t.Errorf("%s in: traceparent out %q", c.name, r.Header.Get("Traceparent"))
		}
		if want := tid + "-" + parent + "-1"; r.Header.Get("B3") != want {
			t.Errorf("%s in: b3 out %q, want %q", c.name, r.Header.Get("B3"), want)
		}
		if r.Header.Get("X-B3-Sampled") != "" || r.Header.Get("X-B3-Traceid") != "" {
			t.Errorf("%s in: b3multi headers went upstream without being configured", c.name)
		}
		// tracestate belongs to a W3C parent only; from B3 there is none to carry.
		if ts := r.Header.Get("Tracestate"); (c.name == "w3c") != (ts == "vendor=abc") {
			t.Errorf("%s in: tracestate out %q", c.name, ts)
		}
	}
	// Three requests, one trace: three server spans with the caller's span as the parent.
	waitFor(t, "6 spans of the trace", func() bool { return len(rcv.Trace(tid)) == 6 })
	for _, s := range rcv.Trace(tid) {
		if s.Kind.String() == "SPAN_KIND_SERVER" && s.ParentID() != sid {
			t.Errorf("server span %s parent %s, want %s", s.SpanID(), s.ParentID(), sid)
		}
	}
}

// Sampling without a parent's decision is a function of the trace id: the edge decides as any
// other hop with the same ratio would (OpenTelemetry's TraceIdRatioBased rule, written out here
// independently of mesh/tracing), and the ratio holds over many ids. The ids are deterministic
// and come as deferred B3 parents ("no decision").
func TestTracingSamplingConsistentAcrossHops(t *testing.T) {
	t.Parallel()
	up, saw := startUpstream(t, "a", nil)
	e := tracedEdge(t, "http://127.0.0.1:1", ", sample_ratio: 0.5, propagation: [ b3 ]", hostport(up))
	// Another hop: an OpenTelemetry SDK samples when the id's last 8 bytes, shifted right once,
	// fall below ratio * 2^63.
	other := func(id [16]byte) bool { return binary.BigEndian.Uint64(id[8:])>>1 < uint64(0.5*(1<<63)) }
	const total = 200
	sampled := 0
	for i := range total {
		var id [16]byte
		for j := range id {
			id[j] = byte((i+1)*131 + j*(i%7+1)*29)
		}
		tid := hex.EncodeToString(id[:])
		get(t, e.url+"/", map[string]string{"B3": tid + "-00f067aa0ba902b7"})
		r, _ := saw.last(t)
		got := r.Header.Get("B3")
		if !strings.HasPrefix(got, tid+"-") {
			t.Fatalf("b3 upstream %q: trace %s not continued", got, tid)
		}
		decided := strings.HasSuffix(got, "-1")
		if decided != other(id) {
			t.Errorf("trace %s: the edge decided %v, another hop at the same ratio %v", tid, decided, !decided)
		}
		if decided {
			sampled++
		}
	}
	if sampled < total*35/100 || sampled > total*65/100 {
		t.Errorf("sampled %d of %d at ratio 0.5", sampled, total)
	}
}

// A dead collector, and one that hangs: requests are unaffected; failures and drops are counted.
func TestTracingCollectorTrouble(t *testing.T) {
	t.Parallel()
	t.Run("down", func(t *testing.T) {
		t.Parallel()
		up, _ := startUpstream(t, "a", nil)
		e := tracedEdge(t, "http://127.0.0.1:1", ", sample_ratio: 1, export_timeout: 1s", hostport(up))
		for range 5 {
			if resp, _ := get(t, e.url+"/", nil); resp.StatusCode != 200 {
				t.Fatalf("status %d with the collector down", resp.StatusCode)
			}
		}
		waitFor(t, "export failures counted", func() bool {
			return metricAtLeast(t, e, "meshgate_tracing_export_failures_total", 1) &&
				metricAtLeast(t, e, `meshgate_tracing_spans_dropped_total{reason="export_failed"}`, 1)
		})
	})
	t.Run("slow", func(t *testing.T) {
		t.Parallel()
		rcv := otlptest.Start(t)
		rcv.Hold()
		up, _ := startUpstream(t, "a", nil)
		e := tracedEdge(t, rcv.URL, ", sample_ratio: 1, queue_size: 2, export_timeout: 1m", hostport(up))
		t.Cleanup(rcv.Release) // before the edge stops (cleanups run last-first)
		for i := range 20 {
			begin := time.Now()
			if resp, _ := get(t, e.url+"/", nil); resp.StatusCode != 200 {
				t.Fatalf("status %d with the collector hanging", resp.StatusCode)
			}
			// The export in flight may hang for a minute; a request waiting on it would show.
			if took := time.Since(begin); took > 5*time.Second {
				t.Fatalf("request %d took %s with the collector hanging", i, took)
			}
		}
		waitFor(t, "queue-full drops counted", func() bool {
			return metricAtLeast(t, e, `meshgate_tracing_spans_dropped_total{reason="queue_full"}`, 1)
		})
	})
}

// metricAtLeast reports whether the edge's sample named series (with labels, as exposed) is at
// least floor.
func metricAtLeast(t *testing.T, e *edgeUnderTest, series string, floor float64) bool {
	t.Helper()
	for line := range strings.SplitSeq(metricsOf(t, e), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			return err == nil && f >= floor
		}
	}
	return false
}

// sample_errors: a failed request that the ratio left out is recorded after all (its server
// span alone: the upstream was already told "not sampled"); a successful one is not.
func TestTracingSampleErrors(t *testing.T) {
	t.Parallel()
	rcv := otlptest.Start(t)
	up, saw := startUpstream(t, "a", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/fail" {
			w.WriteHeader(http.StatusInternalServerError)
		}
	})
	e := tracedEdge(t, rcv.URL, ", sample_ratio: 0, sample_errors: true", hostport(up))
	get(t, e.url+"/ok", nil)
	r, _ := saw.last(t)
	okTrace, _, _ := traceparentOf(t, r.Header.Get("Traceparent"))
	if resp, _ := get(t, e.url+"/fail", nil); resp.StatusCode != 500 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	r, _ = saw.last(t)
	failTrace, _, flags := traceparentOf(t, r.Header.Get("Traceparent"))
	if flags != "00" {
		t.Errorf("upstream told flags %s: the decision is made before the answer", flags)
	}
	srv, clients := spansOf(t, rcv, failTrace, 1)
	if len(clients) != 0 || srv.Attr("http.response.status_code") != int64(500) || srv.Status.Code.String() != "STATUS_CODE_ERROR" {
		t.Errorf("failed request's span %v (clients %v)", srv, clients)
	}
	if got := rcv.Trace(okTrace); len(got) != 0 {
		t.Errorf("a successful unsampled request was recorded: %v", got)
	}
}

// HTTP/2 on both sides (h2c client, protocol: http2 upstream) is traced the same way: the
// stream's server span, the try's client span, the upstream's traceparent naming it.
func TestTracingHTTP2(t *testing.T) {
	t.Parallel()
	rcv := otlptest.Start(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	got := make(chan string, 1)
	srv := &http.Server{Protocols: &p, ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		got <- r.Proto + " " + r.Header.Get("Traceparent")
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	cfg := strings.Replace(minimal(ln.Addr().String()), "discovery:", "services:\n  origin: { protocol: http2 }\ndiscovery:", 1)
	e := startEdge(t, cfg+fmt.Sprintf("tracing: { endpoint: %q, sample_ratio: 1, batch_size: 1, batch_interval: 10ms }\n", rcv.URL))

	var cp http.Protocols
	cp.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: &cp}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Get(e.url + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.ProtoMajor != 2 || resp.StatusCode != 200 {
		t.Fatalf("%s %d", resp.Proto, resp.StatusCode)
	}
	proto, tp, _ := strings.Cut(<-got, " ")
	if proto != "HTTP/2.0" {
		t.Fatalf("upstream spoke %s", proto)
	}
	trace, parent, _ := traceparentOf(t, tp)
	srvSpan, clients := spansOf(t, rcv, trace, 2)
	if srvSpan.Attr("network.protocol.version") != "2" || clients[0].SpanID() != parent || clients[0].ParentID() != srvSpan.SpanID() {
		t.Errorf("server span %v; client span %s (parent %s), upstream's parent %s", srvSpan, clients[0].SpanID(), clients[0].ParentID(), parent)
	}
}

// Two meshgate hops (edge → a second instance in front of the app, as a sidecar would be: the
// same engine) make one connected trace: each hop's server span is the child of the previous
// hop's client span, and the app's traceparent names the last client span. The inner hop
// samples nothing by ratio, and records the trace anyway: the first hop decided.
func TestTracingTwoHopsOneTrace(t *testing.T) {
	t.Parallel()
	rcv := otlptest.Start(t)
	app, saw := startUpstream(t, "app", nil)
	block := func(name, ratio string) string {
		return fmt.Sprintf("tracing: { endpoint: %q, sample_ratio: %s, batch_size: 1, batch_interval: 10ms, service_name: %s }\n", rcv.URL, ratio, name)
	}
	inner := startEdge(t, minimal(hostport(app))+block("inner", "0"))
	edge := startEdge(t, minimal(inner.addr)+block("edge", "1"))
	if resp, _ := get(t, edge.url+"/x", nil); resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	r, _ := saw.last(t)
	trace, parent, flags := traceparentOf(t, r.Header.Get("Traceparent"))
	if flags != "01" {
		t.Fatalf("app told flags %s", flags)
	}
	waitFor(t, "4 spans of the trace", func() bool { return len(rcv.Trace(trace)) >= 4 })
	by := map[string]otlptest.Span{}
	for _, s := range rcv.Trace(trace) {
		by[s.Service+" "+s.Kind.String()] = s
	}
	es, ec := by["edge SPAN_KIND_SERVER"], by["edge SPAN_KIND_CLIENT"]
	is, ic := by["inner SPAN_KIND_SERVER"], by["inner SPAN_KIND_CLIENT"]
	if es.Span == nil || ec.Span == nil || is.Span == nil || ic.Span == nil || len(rcv.Trace(trace)) != 4 {
		t.Fatalf("spans of the trace: %v", rcv.Trace(trace))
	}
	if len(es.ParentSpanId) != 0 || ec.ParentID() != es.SpanID() || is.ParentID() != ec.SpanID() ||
		ic.ParentID() != is.SpanID() || parent != ic.SpanID() {
		t.Errorf("chain broken: edge server %s ← client %s(parent %s) ← inner server %s(parent %s) ← client %s(parent %s) ← app's parent %s",
			es.SpanID(), ec.SpanID(), ec.ParentID(), is.SpanID(), is.ParentID(), ic.SpanID(), ic.ParentID(), parent)
	}
}

// gRPC through the edge: the caller's trace continues, and an error status in a Trailers-Only
// answer marks both spans (rpc.grpc.status_code, status ERROR) though the HTTP status is 200.
// A success's status is a trailer after the body, which the spans (ended when the response is
// handed over) do not see: they carry no gRPC code and no error.
func TestTracingGRPC(t *testing.T) {
	t.Parallel()
	rcv := otlptest.Start(t)
	addr, _ := startGRPC(t, "a")
	e := startEdge(t, grpcEdgeConfig(addr, "")+fmt.Sprintf("tracing: { endpoint: %q, sample_ratio: 0, batch_size: 1, batch_interval: 10ms }\n", rcv.URL))
	c := dialGRPC(t, e.addr)
	const tid = "4bf92f3577b34da6a3ce929d0e0e4736"
	for i, code := range []codes.Code{codes.OK, codes.NotFound} {
		sid := fmt.Sprintf("00f067aa0ba902b%d", i)
		ctx := metadata.AppendToOutgoingContext(callCtx(t), "traceparent", "00-"+tid+"-"+sid+"-01")
		if code != codes.OK {
			ctx = metadata.AppendToOutgoingContext(ctx, grpcecho.MDFailCode, fmt.Sprint(int(code)))
		}
		_, err := c.UnaryCall(ctx, &testpb.SimpleRequest{})
		if s, _ := grpcstatus.FromError(err); s.Code() != code {
			t.Fatalf("status %v, want %v", err, code)
		}
		waitFor(t, "the call's two spans", func() bool { return len(rcv.Trace(tid)) == 2*(i+1) })
		var want any // OK: no code seen
		if code != codes.OK {
			want = int64(code)
		}
		for _, s := range rcv.Trace(tid) {
			if s.ParentID() != sid && (s.Kind.String() == "SPAN_KIND_SERVER") {
				continue // the other call's
			}
			if s.Kind.String() == "SPAN_KIND_CLIENT" {
				continue
			}
			if s.Attr("rpc.grpc.status_code") != want || (s.Status.Code.String() == "STATUS_CODE_ERROR") != (code != codes.OK) ||
				s.Attr("network.protocol.version") != "2" || s.Name != "POST grpc" {
				t.Errorf("code %v: server span %v", code, s)
			}
			for _, c := range rcv.Trace(tid) {
				if c.Kind.String() == "SPAN_KIND_CLIENT" && c.ParentID() == s.SpanID() && (c.Attr("rpc.grpc.status_code") != want ||
					(c.Status.Code.String() == "STATUS_CODE_ERROR") != (code != codes.OK)) {
					t.Errorf("code %v: client span %v", code, c)
				}
			}
		}
	}
}
