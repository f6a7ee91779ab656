package ratelimit

import (
	"bytes"
	"fmt"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"
	"go.uber.org/goleak"

	"github.com/meshgate/meshgate/gateway/filter"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeClock is a settable clock; tests advance it instead of sleeping.
type fakeClock struct{ ns atomic.Int64 }

var clockBase = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func (c *fakeClock) Now() time.Time          { return clockBase.Add(time.Duration(c.ns.Load())) }
func (c *fakeClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

func newManager(t testing.TB, opts Options) (*Manager, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	opts.Registerer = reg
	m, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	return m, reg
}

func mustFilter(t testing.TB, m *Manager, p Policy) *Filter {
	t.Helper()
	f, err := m.Filter(p)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// request builds a filter.Request on a fresh RequestCtx.
func request(ip string, hdr map[string]string) *filter.Request {
	ctx := &fasthttp.RequestCtx{}
	for k, v := range hdr {
		ctx.Request.Header.Set(k, v)
	}
	r := &filter.Request{Ctx: ctx, Route: "r1"}
	if ip != "" {
		r.ClientIP = netip.MustParseAddr(ip)
	}
	return r
}

// metricValue reads one sample from a registry; labels are name=value pairs.
func metricValue(t testing.TB, g prometheus.Gatherer, name string, labels ...string) float64 {
	t.Helper()
	fams, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
	next:
		for _, m := range f.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue next
				}
			}
			if m.Counter != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return -1
}

func TestGCRA(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		requests int
		per      time.Duration
		burst    int
		steps    []struct {
			advance time.Duration
			allowed bool
		}
	}{
		{
			name: "burst then refill one at a time", requests: 2, per: time.Second,
			steps: []struct {
				advance time.Duration
				allowed bool
			}{{0, true}, {0, true}, {0, false}, {499 * time.Millisecond, false}, {time.Millisecond, true}, {0, false}, {time.Second, true}, {0, true}, {0, false}},
		},
		{
			name: "burst larger than rate", requests: 1, per: time.Second, burst: 3,
			steps: []struct {
				advance time.Duration
				allowed bool
			}{{0, true}, {0, true}, {0, true}, {0, false}, {time.Second, true}, {0, false}},
		},
		{
			name: "burst 1 smooths to the rate", requests: 10, per: time.Second, burst: 1,
			steps: []struct {
				advance time.Duration
				allowed bool
			}{{0, true}, {0, false}, {50 * time.Millisecond, false}, {50 * time.Millisecond, true}, {100 * time.Millisecond, true}, {0, false}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			clk := &fakeClock{}
			m, _ := newManager(t, Options{Now: clk.Now})
			f := mustFilter(t, m, Policy{Name: "p", Requests: tt.requests, Per: tt.per, Burst: tt.burst})
			for i, s := range tt.steps {
				clk.Advance(s.advance)
				v := f.Request(request("10.0.0.1", nil))
				if got := v.Status == 0; got != s.allowed {
					t.Fatalf("step %d (+%s): allowed = %v, want %v (verdict %+v)", i, s.advance, got, s.allowed, v)
				}
			}
		})
	}
}

func TestRejectionHeaders(t *testing.T) {
	t.Parallel()
	clk := &fakeClock{}
	m, _ := newManager(t, Options{Now: clk.Now})
	f := mustFilter(t, m, Policy{Name: "p", Requests: 3, Per: 10 * time.Second, Burst: 5})
	for i := range 5 {
		if v := f.Request(request("10.0.0.1", nil)); v.Status != 0 {
			t.Fatalf("request %d rejected: %+v", i, v)
		}
	}
	r := request("10.0.0.1", nil)
	v := f.Request(r)
	if v.Status != 429 || v.Reason != ReasonLimited {
		t.Fatalf("verdict = %+v, want 429 rate_limited", v)
	}
	h := &r.Ctx.Response.Header
	// interval = 10s/3 ≈ 3.33s: the next request is allowed in 3.33s → 4; full in 5×3.33s → 17.
	for k, want := range map[string]string{
		"Retry-After": "4", "RateLimit-Limit": "3", "RateLimit-Remaining": "0",
		"RateLimit-Reset": "17", "RateLimit-Policy": "3;w=10;burst=5",
	} {
		if got := string(h.Peek(k)); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
}

func TestKeysSeparateClients(t *testing.T) {
	t.Parallel()
	tests := []struct {
		key        string
		same, diff [2]*filter.Request
	}{
		{KeyClientIP,
			[2]*filter.Request{request("10.0.0.1", nil), request("::ffff:10.0.0.1", nil)},
			[2]*filter.Request{request("10.0.0.1", nil), request("10.0.0.2", nil)}},
		{"header:X-Api-Key",
			[2]*filter.Request{request("10.0.0.1", map[string]string{"X-Api-Key": "a"}), request("10.0.0.2", map[string]string{"x-api-key": "a"})},
			[2]*filter.Request{request("10.0.0.1", map[string]string{"X-Api-Key": "a"}), request("10.0.0.1", map[string]string{"X-Api-Key": "b"})}},
		{KeyRoute,
			[2]*filter.Request{{Route: "a", ClientIP: netip.MustParseAddr("10.0.0.1")}, {Route: "a", ClientIP: netip.MustParseAddr("10.0.0.2")}},
			[2]*filter.Request{{Route: "a"}, {Route: "b"}}},
		{KeyIdentity,
			[2]*filter.Request{{Identity: []byte("alice"), Route: "a"}, {Identity: []byte("alice"), Route: "b"}},
			[2]*filter.Request{{Identity: []byte("alice")}, {Identity: []byte("bob")}}},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			t.Parallel()
			for _, c := range []struct {
				name   string
				pair   [2]*filter.Request
				shared bool
			}{{"same", tt.same, true}, {"different", tt.diff, false}} {
				m, _ := newManager(t, Options{Now: (&fakeClock{}).Now})
				f := mustFilter(t, m, Policy{Name: "p", Requests: 1, Per: time.Minute, Key: tt.key})
				if v := f.Request(c.pair[0]); v.Status != 0 {
					t.Fatalf("%s: first request rejected", c.name)
				}
				v := f.Request(c.pair[1])
				if limited := v.Status == 429; limited != c.shared {
					t.Errorf("%s key: second request limited = %v, want %v", c.name, limited, c.shared)
				}
			}
		})
	}
}

func TestStateSurvivesReload(t *testing.T) {
	t.Parallel()
	clk := &fakeClock{}
	m, reg := newManager(t, Options{Now: clk.Now})
	p := Policy{Name: "p", Requests: 2, Per: time.Minute}
	f1 := mustFilter(t, m, p)
	f1.Request(request("10.0.0.1", nil))
	f1.Request(request("10.0.0.1", nil))

	f2 := mustFilter(t, m, p) // a reload with the same options
	if v := f2.Request(request("10.0.0.1", nil)); v.Status != 429 {
		t.Fatalf("reloaded filter forgot the bucket: %+v", v)
	}
	p.Cluster, p.OnRedisError = false, OnErrorOpen // not a local parameter: keeps the buckets
	if v := mustFilter(t, m, p).Request(request("10.0.0.1", nil)); v.Status != 429 {
		t.Fatalf("irrelevant change reset the bucket: %+v", v)
	}
	p.Requests = 3 // changed rate: fresh buckets
	if v := mustFilter(t, m, p).Request(request("10.0.0.1", nil)); v.Status != 0 {
		t.Fatalf("changed policy kept old buckets: %+v", v)
	}
	if got := metricValue(t, reg, "meshgate_ratelimit_decisions_total", "policy", "p", "result", "limited"); got != 2 {
		t.Errorf("limited = %v, want 2", got)
	}
	m.Retain(nil)
	if m.Keys("p") != 0 {
		t.Error("Retain kept a removed policy")
	}
	if got := metricValue(t, reg, "meshgate_ratelimit_decisions_total", "policy", "p"); got != -1 {
		t.Errorf("removed policy still exported: %v", got)
	}
}

func TestKeysBounded(t *testing.T) {
	t.Parallel()
	clk := &fakeClock{}
	m, _ := newManager(t, Options{Now: clk.Now, MaxKeys: 128})
	f := mustFilter(t, m, Policy{Name: "p", Requests: 1, Per: time.Hour, Key: "header:K"})
	for i := range 5000 {
		f.Request(request("", map[string]string{"K": strconv.Itoa(i)}))
	}
	if n := m.Keys("p"); n > 128 || n < 64 {
		t.Fatalf("keys = %d, want ≤ 128 (and the table used)", n)
	}

	// Idle buckets go first: a client that is still limited keeps its state while idle
	// clients churn through the table.
	m2, _ := newManager(t, Options{Now: clk.Now, MaxKeys: shardCount}) // one key per shard
	f2 := mustFilter(t, m2, Policy{Name: "q", Requests: 1, Per: time.Second, Key: "header:K"})
	for i := range 1000 {
		f2.Request(request("", map[string]string{"K": strconv.Itoa(i)}))
		clk.Advance(2 * time.Second) // every bucket so far is idle again
	}
	if n := m2.Keys("q"); n > shardCount {
		t.Fatalf("keys = %d, want ≤ %d", n, shardCount)
	}
}

func TestConcurrentExactlyBurst(t *testing.T) {
	t.Parallel()
	clk := &fakeClock{} // frozen: no refill during the test
	m, _ := newManager(t, Options{Now: clk.Now})
	f := mustFilter(t, m, Policy{Name: "p", Requests: 100, Per: time.Minute})
	var allowed atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				if f.Request(request("10.0.0.1", nil)).Status == 0 {
					allowed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if got := allowed.Load(); got != 100 {
		t.Fatalf("allowed %d of 800 concurrent requests, want exactly the burst (100)", got)
	}
}

func TestFilterErrors(t *testing.T) {
	t.Parallel()
	m, _ := newManager(t, Options{})
	for _, tt := range []struct {
		p    Policy
		want string
	}{
		{Policy{Requests: 1, Per: time.Second}, "name is required"},
		{Policy{Name: "p", Per: time.Second}, "requests must be positive"},
		{Policy{Name: "p", Requests: 1}, "per must be positive"},
		{Policy{Name: "p", Requests: 1, Per: time.Second, Burst: -1}, "burst"},
		{Policy{Name: "p", Requests: 1, Per: time.Second, Key: "cookie"}, "not one of"},
		{Policy{Name: "p", Requests: 1, Per: time.Second, Key: "header:"}, "not one of"},
		{Policy{Name: "p", Requests: 1, Per: time.Second, OnRedisError: "maybe"}, "on_redis_error"},
		{Policy{Name: "p", Requests: 1, Per: time.Second, Cluster: true}, "needs redis"},
	} {
		_, err := m.Filter(tt.p)
		if err == nil || !bytes.Contains([]byte(err.Error()), []byte(tt.want)) {
			t.Errorf("Filter(%+v) = %v, want error containing %q", tt.p, err, tt.want)
		}
	}
	if _, err := New(Options{}); err == nil {
		t.Error("New without a registerer succeeded")
	}
	reg := prometheus.NewRegistry()
	if _, err := New(Options{Registerer: reg}); err != nil {
		t.Fatal(err)
	}
	if _, err := New(Options{Registerer: reg}); err == nil {
		t.Error("second New on one registry succeeded: metrics would be shared silently")
	}
}

// The request path for a known key allocates nothing, allowed or limited, for every key kind.
func TestAllocations(t *testing.T) {
	m, _ := newManager(t, Options{Logger: zerolog.Nop()})
	for _, key := range []string{KeyClientIP, KeyRoute, KeyIdentity, "header:X-Api-Key"} {
		for _, limit := range []int{1 << 30, 1} {
			name := fmt.Sprintf("%s-%d", key, limit)
			f := mustFilter(t, m, Policy{Name: name, Requests: limit, Per: time.Hour, Key: key})
			r := request("10.1.2.3", map[string]string{"X-Api-Key": "k1"})
			if key == KeyClientIP && limit == 1 {
				r.ClientIP = netip.MustParseAddr("2001:db8::1") // the IPv6 prefix mask is on the hot path too
			}
			r.Identity = []byte("alice")
			f.Request(r) // first sight inserts the key
			f.Request(r)
			allocs := testing.AllocsPerRun(1000, func() {
				r.Ctx.Response.Header.Reset()
				f.Request(r)
			})
			if allocs != 0 {
				t.Errorf("%s: %v allocs per request, want 0", name, allocs)
			}
		}
	}
}

func BenchmarkLocalFilter(b *testing.B) {
	for _, c := range []struct {
		name  string
		limit int
	}{{"allowed", 1 << 30}, {"limited", 1}} {
		b.Run(c.name, func(b *testing.B) {
			m, _ := newManager(b, Options{})
			f := mustFilter(b, m, Policy{Name: "p", Requests: c.limit, Per: time.Hour})
			r := request("10.1.2.3", nil)
			f.Request(r)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				f.Request(r)
			}
		})
	}
	b.Run("parallel-10k-clients", func(b *testing.B) {
		m, _ := newManager(b, Options{})
		f := mustFilter(b, m, Policy{Name: "p", Requests: 1 << 30, Per: time.Hour})
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			r := &filter.Request{}
			i := 0
			for pb.Next() {
				i++
				r.ClientIP = netip.AddrFrom4([4]byte{10, 0, byte(i / 256 % 40), byte(i)}) // 10240 clients
				f.Request(r)
			}
		})
	})
}

// TestIPv6ClientsKeyedPerPrefix: a client that owns a /64 cannot get a fresh bucket by picking
// another address in it; other /64s and IPv4 addresses keep their own buckets.
func TestIPv6ClientsKeyedPerPrefix(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		prefix int
		a, b   string
		shared bool
	}{
		{"same /64 by default", 0, "2001:db8:1:2::1", "2001:db8:1:2:ffff:ffff:ffff:fffe", true},
		{"different /64 by default", 0, "2001:db8:1:2::1", "2001:db8:1:3::1", false},
		{"same /48 when configured", 48, "2001:db8:1:2::1", "2001:db8:1:ff::1", true},
		{"different /48", 48, "2001:db8:1::1", "2001:db8:2::1", false},
		{"per address with 128", 128, "2001:db8:1:2::1", "2001:db8:1:2::2", false},
		{"IPv4 per address", 0, "192.0.2.1", "192.0.2.2", false},
		{"IPv4-mapped is the IPv4 client", 0, "::ffff:192.0.2.1", "192.0.2.1", true},
		// ::ffff:0:0/96 would be one /64 with ::1 if mapped addresses were masked as IPv6.
		{"IPv4-mapped is not masked", 0, "::ffff:192.0.2.1", "::ffff:192.0.2.2", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m, _ := newManager(t, Options{})
			f := mustFilter(t, m, Policy{Name: "p", Requests: 1, Per: time.Hour, IPv6Prefix: tt.prefix})
			if v := f.Request(request(tt.a, nil)); v.Status != 0 {
				t.Fatalf("first request from %s: %+v", tt.a, v)
			}
			v := f.Request(request(tt.b, nil))
			if shared := v.Status == 429; shared != tt.shared {
				t.Fatalf("%s after %s: status %d, shared bucket = %v, want %v", tt.b, tt.a, v.Status, shared, tt.shared)
			}
		})
	}
	m, _ := newManager(t, Options{})
	for _, bad := range []int{-1, 129} {
		if _, err := m.Filter(Policy{Name: "bad", Requests: 1, Per: time.Second, IPv6Prefix: bad}); err == nil {
			t.Errorf("ipv6 prefix %d accepted", bad)
		}
	}
}
