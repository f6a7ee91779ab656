package fault

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"

	"github.com/meshgate/meshgate/gateway/filter"
)

func newMetrics(t *testing.T) (*Metrics, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	return m, reg
}

func counter(t *testing.T, reg *prometheus.Registry, policy, kind string) float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		for _, m := range f.GetMetric() {
			var p, k string
			for _, l := range m.GetLabel() {
				switch l.GetName() {
				case "policy":
					p = l.GetValue()
				case "kind":
					k = l.GetValue()
				}
			}
			if f.GetName() == "meshgate_fault_injected_total" && p == policy && k == kind {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func req(header map[string]string, deadline time.Time) *filter.Request {
	ctx := &fasthttp.RequestCtx{}
	for k, v := range header {
		ctx.Request.Header.Set(k, v)
	}
	return &filter.Request{Ctx: ctx, Route: "r", Deadline: deadline}
}

func TestFilter(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name      string
		opts      Options
		header    map[string]string
		deadline  time.Time
		draw      float64
		want      filter.Verdict
		wantSleep time.Duration // -1: no sleep
		delays    float64
		aborts    float64
	}{
		{name: "abort 100%", opts: Options{AbortStatus: 503, AbortPercent: 100},
			want: filter.Verdict{Status: 503, Reason: ReasonAbort}, wantSleep: -1, aborts: 1},
		{name: "abort 0% never", opts: Options{AbortStatus: 503, AbortPercent: 0}, draw: 0, wantSleep: -1},
		{name: "abort draw inside percent", opts: Options{AbortStatus: 418, AbortPercent: 50}, draw: 0.49,
			want: filter.Verdict{Status: 418, Reason: ReasonAbort}, wantSleep: -1, aborts: 1},
		{name: "abort draw outside percent", opts: Options{AbortStatus: 418, AbortPercent: 50}, draw: 0.5, wantSleep: -1},
		{name: "delay without deadline", opts: Options{Delay: time.Second, DelayPercent: 100},
			wantSleep: time.Second, delays: 1},
		{name: "delay within deadline", opts: Options{Delay: time.Second, DelayPercent: 100}, deadline: now.Add(2 * time.Second),
			wantSleep: time.Second, delays: 1},
		{name: "delay past deadline stops at it", opts: Options{Delay: time.Second, DelayPercent: 100}, deadline: now.Add(300 * time.Millisecond),
			want: filter.Verdict{Status: 504, Reason: ReasonDelayTimeout}, wantSleep: 300 * time.Millisecond, delays: 1},
		{name: "deadline already passed", opts: Options{Delay: time.Second, DelayPercent: 100}, deadline: now.Add(-time.Second),
			want: filter.Verdict{Status: 504, Reason: ReasonDelayTimeout}, wantSleep: 0, delays: 1},
		{name: "delay then abort", opts: Options{Delay: time.Millisecond, DelayPercent: 100, AbortStatus: 500, AbortPercent: 100},
			want: filter.Verdict{Status: 500, Reason: ReasonAbort}, wantSleep: time.Millisecond, delays: 1, aborts: 1},
		{name: "header gate without header", opts: Options{AbortStatus: 503, AbortPercent: 100, Header: "X-Chaos"}, wantSleep: -1},
		{name: "header gate with header", opts: Options{AbortStatus: 503, AbortPercent: 100, Header: "X-Chaos"},
			header: map[string]string{"x-chaos": "1"}, want: filter.Verdict{Status: 503, Reason: ReasonAbort}, wantSleep: -1, aborts: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m, reg := newMetrics(t)
			slept := time.Duration(-1)
			o := tt.opts
			o.Name, o.Metrics = "p", m
			o.Rand = func() float64 { return tt.draw }
			o.Sleep = func(d time.Duration) { slept = d }
			o.Now = func() time.Time { return now }
			f, err := New(o)
			if err != nil {
				t.Fatal(err)
			}
			if got := f.Request(req(tt.header, tt.deadline)); got != tt.want {
				t.Errorf("verdict = %+v, want %+v", got, tt.want)
			}
			if slept != tt.wantSleep {
				t.Errorf("slept %v, want %v", slept, tt.wantSleep)
			}
			if got := counter(t, reg, "p", "delay"); got != tt.delays {
				t.Errorf("delay counter = %v, want %v", got, tt.delays)
			}
			if got := counter(t, reg, "p", "abort"); got != tt.aborts {
				t.Errorf("abort counter = %v, want %v", got, tt.aborts)
			}
		})
	}
}

// The real random source hits roughly the configured share (bounds are ~10 sigma wide).
func TestPercentIsAShare(t *testing.T) {
	t.Parallel()
	m, _ := newMetrics(t)
	f, err := New(Options{Name: "p", Metrics: m, AbortStatus: 503, AbortPercent: 25})
	if err != nil {
		t.Fatal(err)
	}
	aborted := 0
	for range 10000 {
		if f.Request(req(nil, time.Time{})).Status == 503 {
			aborted++
		}
	}
	if aborted < 2000 || aborted > 3000 {
		t.Fatalf("aborted %d of 10000 at 25%%", aborted)
	}
}

// The default sleep really waits (lower bound only: schedulers may add, never remove, time).
func TestRealDelay(t *testing.T) {
	t.Parallel()
	m, _ := newMetrics(t)
	f, err := New(Options{Name: "p", Metrics: m, Delay: 30 * time.Millisecond, DelayPercent: 100})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if v := f.Request(req(nil, time.Time{})); v.Status != 0 {
		t.Fatalf("verdict %+v", v)
	}
	if took := time.Since(start); took < 30*time.Millisecond {
		t.Fatalf("delay took %v, want ≥ 30ms", took)
	}
}

func TestNewErrors(t *testing.T) {
	t.Parallel()
	m, _ := newMetrics(t)
	for _, tt := range []struct {
		opts Options
		want string
	}{
		{Options{Name: "p"}, "metrics are required"},
		{Options{Metrics: m}, "name is required"},
		{Options{Name: "p", Metrics: m, AbortPercent: 101, AbortStatus: 500}, "0..100"},
		{Options{Name: "p", Metrics: m, DelayPercent: -1, Delay: time.Second}, "0..100"},
		{Options{Name: "p", Metrics: m, DelayPercent: 5}, "delay must be positive"},
		{Options{Name: "p", Metrics: m, AbortPercent: 5, AbortStatus: 200}, "400..599"},
	} {
		if _, err := New(tt.opts); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("New(%+v) = %v, want %q", tt.opts, err, tt.want)
		}
	}
	if _, err := NewMetrics(nil); err == nil {
		t.Error("NewMetrics(nil) succeeded")
	}
	reg := prometheus.NewRegistry()
	_, _ = NewMetrics(reg)
	if _, err := NewMetrics(reg); err == nil {
		t.Error("second NewMetrics on one registry succeeded")
	}
}

func TestAllocations(t *testing.T) {
	m, _ := newMetrics(t)
	f, err := New(Options{Name: "p", Metrics: m, AbortStatus: 503, AbortPercent: 50, Header: "X-Chaos"})
	if err != nil {
		t.Fatal(err)
	}
	for _, hdr := range []map[string]string{nil, {"X-Chaos": "1"}} {
		r := req(hdr, time.Time{})
		if a := testing.AllocsPerRun(1000, func() { f.Request(r) }); a != 0 {
			t.Errorf("header %v: %v allocs per request, want 0", hdr, a)
		}
	}
}
