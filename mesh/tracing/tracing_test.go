package tracing

import (
	"encoding/binary"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/valyala/fasthttp"

	"github.com/meshgate/meshgate/internal/await"
	"github.com/meshgate/meshgate/internal/otlptest"
)

const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

func TestTraceparent(t *testing.T) {
	t.Parallel()
	sc, ok := ParseTraceparent([]byte(tp))
	if !ok || !sc.Sampled {
		t.Fatalf("ParseTraceparent(%q) = %+v, %v", tp, sc, ok)
	}
	if got := string(AppendTraceparent(nil, sc)); got != tp {
		t.Errorf("round trip: %q, want %q", got, tp)
	}
	sc.Sampled = false
	if got := string(AppendTraceparent(nil, sc)); got != tp[:53]+"00" {
		t.Errorf("unsampled: %q", got)
	}
	// A later version is read by its first four fields; version 00 must be exact.
	if _, ok := ParseTraceparent([]byte("01" + tp[2:] + "-extra")); !ok {
		t.Error("version 01 with an extra field refused")
	}
	for _, bad := range []string{
		"", tp[:54], tp + "-x", "ff" + tp[2:],
		"00-00000000000000000000000000000000-00f067aa0ba902b7-01", // zero trace id
		"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", // zero span id
		"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", // upper case
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
		"00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
	} {
		if sc, ok := ParseTraceparent([]byte(bad)); ok {
			t.Errorf("ParseTraceparent(%q) = %+v, want refused", bad, sc)
		}
	}
}

func TestB3(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		in                string
		sampled, deferred bool
		trace             string
	}{
		{"4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1", true, false, "4bf92f3577b34da6a3ce929d0e0e4736"},
		{"4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0", false, false, "4bf92f3577b34da6a3ce929d0e0e4736"},
		{"4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-d", true, false, "4bf92f3577b34da6a3ce929d0e0e4736"},
		{"4bf92f3577b34da6-00f067aa0ba902b7-1-05e3ac9a4f6e3b90", true, false, "00000000000000004bf92f3577b34da6"},
		{"4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7", false, true, "4bf92f3577b34da6a3ce929d0e0e4736"},
	} {
		sc, def, ok := ParseB3([]byte(c.in))
		if !ok || sc.Sampled != c.sampled || def != c.deferred || string(appendHex(nil, sc.TraceID[:])) != c.trace {
			t.Errorf("ParseB3(%q) = %+v deferred %v ok %v", c.in, sc, def, ok)
		}
	}
	for _, bad := range []string{"1", "0", "x-y", "4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-2",
		"4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1-short", "4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-1"} {
		if _, _, ok := ParseB3([]byte(bad)); ok {
			t.Errorf("ParseB3(%q) accepted", bad)
		}
	}
	sc, _, _ := ParseB3([]byte("4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1"))
	if got := string(AppendB3(nil, sc)); got != "4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1" {
		t.Errorf("AppendB3 = %q", got)
	}
	m, def, ok := ParseB3Multi([]byte("4bf92f3577b34da6a3ce929d0e0e4736"), []byte("00f067aa0ba902b7"), nil, []byte("1"))
	if !ok || !m.Sampled || def || m != sc {
		t.Errorf("ParseB3Multi with debug flag = %+v %v %v", m, def, ok)
	}
	if _, def, ok := ParseB3Multi([]byte("4bf92f3577b34da6a3ce929d0e0e4736"), []byte("00f067aa0ba902b7"), nil, nil); !ok || !def {
		t.Error("B3 multi without a decision is not deferred")
	}
	if _, _, ok := ParseB3Multi([]byte("4bf92f3577b34da6a3ce929d0e0e4736"), []byte("00f067aa0ba902b7"), []byte("yes"), nil); ok {
		t.Error("X-B3-Sampled: yes accepted")
	}
}

// idN is a deterministic trace id whose ratio bits spread evenly over the range.
func idN(i uint64) TraceID {
	var id TraceID
	binary.BigEndian.PutUint64(id[:8], i)
	binary.BigEndian.PutUint64(id[8:], i*0x9e3779b97f4a7c15) // Fibonacci hashing: equidistributed
	return id
}

func TestSamplerConsistentAndRatio(t *testing.T) {
	t.Parallel()
	a, b := NewSampler(0.25), NewSampler(0.25)
	n := 0
	const total = 100000
	for i := uint64(1); i <= total; i++ {
		id := idN(i)
		da := a.Sample(id, SpanContext{}, false, false)
		if db := b.Sample(id, SpanContext{}, false, false); da != db {
			t.Fatalf("two samplers disagree on %x", id)
		}
		if da != a.ByRatio(id) {
			t.Fatalf("one sampler is not stable on %x", id)
		}
		if da {
			n++
		}
	}
	if got := float64(n) / total; got < 0.24 || got > 0.26 {
		t.Errorf("sampled %.4f of the traces, want about 0.25", got)
	}
	// A ratio is monotone: what 1% samples, 25% samples too (hops with different ratios agree
	// upward), and the edges are all or nothing.
	one := NewSampler(0.01)
	for i := uint64(1); i <= 10000; i++ {
		if one.ByRatio(idN(i)) && !a.ByRatio(idN(i)) {
			t.Fatalf("%x sampled at 1%% but not at 25%%", idN(i))
		}
	}
	if !NewSampler(1).ByRatio(idN(3)) || NewSampler(0).ByRatio(idN(3)) {
		t.Error("ratio 1 must sample everything, 0 nothing")
	}
	// A parent's decision wins over the ratio; a deferred one does not.
	never, always := NewSampler(0), NewSampler(1)
	if !never.Sample(idN(1), SpanContext{Sampled: true}, true, false) || always.Sample(idN(1), SpanContext{}, true, false) {
		t.Error("parent's decision not followed")
	}
	if never.Sample(idN(1), SpanContext{Sampled: true}, true, true) {
		t.Error("a deferred parent's flag was followed instead of the ratio")
	}
}

func newTracer(t *testing.T, o Options) (*Tracer, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	o.Registerer = reg
	if o.Endpoint == "" {
		o.Endpoint = "http://127.0.0.1:1"
	}
	tr, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tr.Close)
	return tr, reg
}

// TestUnsampledAllocations: a request that is not sampled costs no allocation: extract,
// decide, propagate, a child, the end.
func TestUnsampledAllocations(t *testing.T) {
	tr, _ := newTracer(t, Options{SampleRatio: 0, Propagation: []Format{W3C, B3, B3Multi}})
	var in, out fasthttp.RequestHeader
	in.Set("traceparent", tp[:53]+"00")
	in.Set("tracestate", "a=b")
	buf := make([]byte, 0, 64)
	var sp, child Span
	n := testing.AllocsPerRun(200, func() {
		tr.StartServer(&sp, &in, time.Now())
		in.CopyTo(&out)
		buf = tr.Propagate(&out, &sp, buf, false)
		sp.StartChild(&child, "x", Client, time.Now())
		child.SetInt("k", 1)
		child.End(time.Now())
		sp.SetString("k", "v")
		sp.End(time.Now())
	})
	if n != 0 {
		t.Errorf("unsampled request allocates %.1f times", n)
	}
	if sp.Recording() {
		t.Fatal("an unsampled parent was recorded")
	}
	if got := string(out.Peek("traceparent")); got[3:35] != tp[3:35] || got[53:] != "00" || got[36:52] == tp[36:52] {
		t.Errorf("traceparent out %q: want the trace continued, unsampled, with our span as the parent", got)
	}
	if got := string(out.Peek("tracestate")); got != "a=b" {
		t.Errorf("tracestate out %q, want it carried with its W3C parent", got)
	}
	if got := string(out.Peek("b3")); got[:32] != tp[3:35] || got[len(got)-2:] != "-0" {
		t.Errorf("b3 out %q", got)
	}
	if got := string(out.Peek("X-B3-TraceId")); got != tp[3:35] {
		t.Errorf("X-B3-TraceId out %q", got)
	}
}

func TestPropagateOwnsTraceHeaders(t *testing.T) {
	t.Parallel()
	tr, _ := newTracer(t, Options{SampleRatio: 1, Propagation: []Format{B3, W3C}})
	var in fasthttp.RequestHeader
	in.Set("b3", "4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1")
	in.Set("traceparent", "00-11111111111111111111111111111111-2222222222222222-01") // second in order: ignored
	in.Set("tracestate", "vendor=x")
	in.Set("X-B3-Sampled", "1")
	var sp Span
	tr.StartServer(&sp, &in, time.Now())
	if got := sp.Context().TraceID; string(appendHex(nil, got[:])) != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Fatalf("parent not taken from b3 (first in propagation order): %x", got)
	}
	if sp.Parent().String() != "00f067aa0ba902b7" || !sp.Recording() {
		t.Fatalf("parent %x recording %v", sp.Parent(), sp.Recording())
	}
	var out fasthttp.RequestHeader
	in.CopyTo(&out)
	tr.Propagate(&out, &sp, nil, false)
	n := 0
	for k := range out.All() {
		if string(k) == "Traceparent" {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d traceparent lines upstream, want exactly one", n)
	}
	if len(out.Peek("tracestate")) != 0 || len(out.Peek("X-B3-Sampled")) != 0 {
		t.Error("a client's tracestate (without its W3C parent) or stray X-B3-* went upstream")
	}
	want := "00-4bf92f3577b34da6a3ce929d0e0e4736-" + sp.Context().SpanID.String() + "-01"
	if got := string(out.Peek("traceparent")); got != want {
		t.Errorf("traceparent %q, want %q", got, want)
	}
}

// TestExport: spans reach a real OTLP receiver with their ids, kinds, attributes and status.
func TestExport(t *testing.T) {
	t.Parallel()
	rcv := otlptest.Start(t)
	tr, reg := newTracer(t, Options{Endpoint: rcv.URL, ServiceName: "svc", SampleRatio: 1, BatchSize: 2, BatchInterval: 10 * time.Millisecond})
	tr.Start()
	var in fasthttp.RequestHeader
	var sp, child Span
	start := time.Now()
	tr.StartServer(&sp, &in, start)
	sp.SetName("GET r")
	sp.SetString("http.route", "r")
	sp.StartChild(&child, "GET c", Client, start)
	child.SetInt("meshgate.attempt", 1)
	child.SetStatus(Error, "boom")
	childCtx := child.Context()
	child.End(start.Add(time.Millisecond))
	serverCtx := sp.Context()
	sp.End(start.Add(2 * time.Millisecond))
	await.Until(t, 10*time.Second, "two spans received", func() bool { return len(rcv.Spans()) == 2 })
	got := rcv.Spans()
	var srv, cli otlptest.Span
	for _, s := range got {
		switch s.Name {
		case "GET r":
			srv = s
		case "GET c":
			cli = s
		}
	}
	if srv.Span == nil || cli.Span == nil {
		t.Fatalf("spans %v", got)
	}
	if srv.Service != "svc" || srv.Kind.String() != "SPAN_KIND_SERVER" || srv.Attr("http.route") != "r" || len(srv.ParentSpanId) != 0 {
		t.Errorf("server span %v", srv)
	}
	if cli.ParentID() != serverCtx.SpanID.String() || cli.SpanID() != childCtx.SpanID.String() ||
		cli.TraceID() != srv.TraceID() || cli.Attr("meshgate.attempt") != int64(1) || cli.Status.GetMessage() != "boom" ||
		cli.Status.Code.String() != "STATUS_CODE_ERROR" || cli.EndTimeUnixNano-cli.StartTimeUnixNano != uint64(time.Millisecond) {
		t.Errorf("client span %v", cli)
	}
	await.Until(t, 10*time.Second, "exported counted", func() bool {
		return testutil.ToFloat64(tr.exported) == 2
	})
	_ = reg
}

// TestDeadCollector: a collector that is down or slow costs requests nothing: enqueue never
// waits, a full queue drops and counts, failed exports are counted.
func TestDeadCollector(t *testing.T) {
	t.Parallel()
	t.Run("down", func(t *testing.T) {
		t.Parallel()
		tr, _ := newTracer(t, Options{Endpoint: "http://127.0.0.1:1", SampleRatio: 1, BatchSize: 1, BatchInterval: time.Millisecond})
		tr.Start()
		var in fasthttp.RequestHeader
		var sp Span
		tr.StartServer(&sp, &in, time.Now())
		sp.End(time.Now())
		await.Until(t, 10*time.Second, "export failure counted", func() bool {
			return testutil.ToFloat64(tr.failures) >= 1 && testutil.ToFloat64(tr.dropFail) >= 1
		})
	})
	t.Run("slow", func(t *testing.T) {
		t.Parallel()
		rcv := otlptest.Start(t)
		rcv.Hold()
		tr, _ := newTracer(t, Options{Endpoint: rcv.URL, SampleRatio: 1, QueueSize: 4, BatchSize: 1, BatchInterval: time.Millisecond})
		tr.Start()
		var in fasthttp.RequestHeader
		var sp Span
		begin := time.Now()
		for range 100 {
			tr.StartServer(&sp, &in, time.Now())
			sp.End(time.Now())
		}
		if took := time.Since(begin); took > 2*time.Second {
			t.Errorf("100 spans took %s to end with the collector stuck", took)
		}
		// One is in the held export, at most 4 queued (and one in the batch): the rest dropped.
		if d := testutil.ToFloat64(tr.dropFull); d < 90 {
			t.Errorf("dropped %v spans with the queue full, want >= 90", d)
		}
	})
}

func TestSpanNamesAllocations(t *testing.T) {
	n := NewSpanNames("api")
	if n.names.Load() != nil {
		t.Fatal("names built before any span asked for one")
	}
	// First uses racing (under -race) all get the same names.
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if got := n.For([]byte("PUT")); got != "PUT api" {
				t.Errorf("For(PUT) = %q", got)
			}
		})
	}
	wg.Wait()
	var nilNames *SpanNames
	if got := nilNames.For([]byte("GET")); got != "GET" {
		t.Errorf("nil For(GET) = %q, want GET", got)
	}
	var zero SpanNames
	for m, want := range map[string][2]string{
		"GET": {"GET api", "GET"}, "PATCH": {"PATCH api", "PATCH"}, "PURGE": {"PURGE api", "PURGE"},
	} {
		if got := n.For([]byte(m)); got != want[0] {
			t.Errorf("For(%s) = %q, want %q", m, got, want[0])
		}
		if got := zero.For([]byte(m)); got != want[1] {
			t.Errorf("zero For(%s) = %q, want %q", m, got, want[1])
		}
		if got := Method([]byte(m)); got != m {
			t.Errorf("Method(%s) = %q", m, got)
		}
	}
	get := []byte("GET")
	if a := testing.AllocsPerRun(100, func() { _, _ = n.For(get), Method(get) }); a != 0 {
		t.Errorf("a standard method's name allocates %.0f times", a)
	}
}

// TestRecordedSpansReuseMemory: once the queue's batches and the spans' attribute slices have
// grown, recording and queueing spans allocates nothing, and the queue hands the exporter
// each batch whole, with every span's attributes intact.
func TestRecordedSpansReuseMemory(t *testing.T) {
	if testing.CoverMode() != "" {
		t.Skip("instrumentation changes allocation counts")
	}
	tr, _ := newTracer(t, Options{SampleRatio: 1, QueueSize: 4, BatchSize: 2}) // not started: the test is the exporter
	var in fasthttp.RequestHeader
	var server, try Span
	var got [][]SpanData
	cycle := func(check bool) {
		for i := range 3 { // 3 batches of 2: all of them, so every one has grown
			tr.StartServer(&server, &in, time.Now())
			server.SetString("http.route", "api")
			server.SetStatus(OK, "")
			server.StartChild(&try, "GET", Client, time.Now())
			try.SetString("meshgate.upstream.address", "127.0.0.1:1")
			try.SetInt("meshgate.attempt", int64(i+1))
			try.End(time.Now())
			server.End(time.Now())
		}
		for range 3 {
			sb := <-tr.batches.full
			if check {
				got = append(got, append([]SpanData(nil), sb.spans...))
				for j := range got[len(got)-1] {
					got[len(got)-1][j].Attrs = append([]Attr(nil), sb.spans[j].Attrs...)
				}
			}
			tr.batches.release(sb)
		}
	}
	cycle(true)
	if len(got) != 3 {
		t.Fatalf("%d batches, want 3", len(got))
	}
	for i, b := range got {
		if len(b) != 2 || b[0].Kind != Client || b[1].Kind != Server {
			t.Fatalf("batch %d: %+v, want the try's span then the server's", i, b)
		}
		want := []Attr{{Key: "meshgate.upstream.address", Str: "127.0.0.1:1"}, {Key: "meshgate.attempt", Int: int64(i + 1), IsInt: true}}
		if !slices.Equal(b[0].Attrs, want) || !slices.Equal(b[1].Attrs, []Attr{{Key: "http.route", Str: "api"}}) {
			t.Errorf("batch %d attributes: try %+v, server %+v", i, b[0].Attrs, b[1].Attrs)
		}
		if b[0].Parent != b[1].SpanID {
			t.Errorf("batch %d: the try's parent is %x, want the server span %x", i, b[0].Parent, b[1].SpanID)
		}
	}
	if a := testing.AllocsPerRun(20, func() { cycle(false) }); a != 0 {
		t.Errorf("recording and queueing 6 spans allocates %.1f times once warm, want 0", a)
	}
}

// A caller that knows the request has no trace field passes no carrier: the span is a root,
// and the context written upstream is the same as through a fasthttp header or any Carrier.
func TestStartServerWithoutCarrierAndInjectForms(t *testing.T) {
	t.Parallel()
	tr, _ := newTracer(t, Options{SampleRatio: 1, Propagation: []Format{W3C, B3, B3Multi}})
	var sp Span
	tr.StartServer(&sp, nil, time.Now())
	if !sp.Started() || sp.Parent() != (SpanID{}) || sp.Context().TraceID == (TraceID{}) {
		t.Fatalf("without a carrier: started %v, parent %v, trace %v; want a root span", sp.Started(), sp.Parent(), sp.Context().TraceID)
	}
	var fast fasthttp.RequestHeader // takes the canonical names as they are
	tr.Inject(&fast, sp.Context(), nil)
	plain := mapCarrier{}
	tr.Inject(plain, sp.Context(), nil)
	for _, k := range []string{HeaderTraceparent, HeaderB3, HeaderB3TraceID, HeaderB3SpanID, HeaderB3Sampled} {
		if got, want := string(fast.Peek(k)), plain[k]; got == "" || got != want {
			t.Errorf("%s: %q through fasthttp's header, %q through a plain carrier", k, got, want)
		}
	}
}

// mapCarrier is a Carrier without SetCanonical.
type mapCarrier map[string]string

func (m mapCarrier) Peek(k string) []byte         { return []byte(m[k]) }
func (m mapCarrier) SetBytesV(k string, v []byte) { m[k] = string(v) }
func (m mapCarrier) Del(k string)                 { delete(m, k) }
