package gateway

import (
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshgate/meshgate/conf"
	"github.com/meshgate/meshgate/mesh/upstream"
)

// clusterHost is the part of /clusters these tests read.
type clusterHost struct {
	Address      string     `json:"address"`
	Healthy      bool       `json:"healthy"`
	Ejected      bool       `json:"ejected"`
	EjectedUntil *time.Time `json:"ejected_until"`
	Ejections    int        `json:"ejections"`
	Breaker      string     `json:"breaker"`
}

func clusterHosts(t *testing.T, e *edgeUnderTest) map[string]clusterHost {
	t.Helper()
	_, body := get(t, "http://"+e.admin+"/clusters", nil)
	var cs []struct {
		Name  string        `json:"name"`
		Hosts []clusterHost `json:"hosts"`
	}
	if err := json.Unmarshal(body, &cs); err != nil || len(cs) != 1 {
		t.Fatalf("/clusters: %v: %s", err, body)
	}
	out := map[string]clusterHost{}
	for _, h := range cs[0].Hosts {
		out[h.Address] = h
	}
	return out
}

// The conf defaults and the upstream package's defaults are the same numbers, and
// clusterOptions carries every resilience field across.
func TestResilienceDefaultsAgree(t *testing.T) {
	t.Parallel()
	cfg, err := conf.Parse("test.yaml", []byte(minimal("127.0.0.1:9")))
	if err != nil {
		t.Fatal(err)
	}
	o, err := clusterOptions("origin", cfg.Services["origin"])
	if err != nil {
		t.Fatal(err)
	}
	want := upstream.Options{
		Outlier: upstream.OutlierOptions{ConsecutiveErrors: upstream.DefaultConsecutiveErrors,
			BaseEjectionTime: upstream.DefaultBaseEjectionTime, MaxEjectionTime: upstream.DefaultMaxEjectionTime,
			MaxEjectionPercent: upstream.DefaultMaxEjectionPercent, PanicThreshold: upstream.DefaultPanicThreshold},
		Breaker: upstream.BreakerOptions{MinRequests: upstream.DefaultBreakerMinRequests,
			FailureRatio: upstream.DefaultBreakerFailureRatio, Interval: upstream.DefaultBreakerInterval,
			OpenTimeout: upstream.DefaultBreakerOpenTimeout, HalfOpenRequests: upstream.DefaultBreakerHalfOpen},
		RetryBudget: upstream.RetryBudgetOptions{Ratio: upstream.DefaultBudgetRatio,
			MinRetriesPerSecond: upstream.DefaultBudgetMinPerSecond, BackoffBase: upstream.DefaultBackoffBase,
			BackoffMax: upstream.DefaultBackoffMax},
		MaxInFlight: upstream.DefaultMaxInFlight,
	}
	if o.Outlier != want.Outlier || o.Breaker != want.Breaker || o.RetryBudget != want.RetryBudget || o.MaxInFlight != want.MaxInFlight {
		t.Fatalf("minimal config gives\n%+v %+v %+v %d\nupstream defaults are\n%+v %+v %+v %d",
			o.Outlier, o.Breaker, o.RetryBudget, o.MaxInFlight, want.Outlier, want.Breaker, want.RetryBudget, want.MaxInFlight)
	}

	tuned := cfg.Services["origin"]
	tuned.OutlierDetection.Disabled, tuned.CircuitBreaker.Disabled = true, true
	tuned.OutlierDetection.PanicThreshold, tuned.CircuitBreaker.HalfOpenRequests = 7, 3
	tuned.RetryBudget.Ratio, tuned.MaxInFlight = 0.7, 42
	o, err = clusterOptions("origin", tuned)
	if err != nil {
		t.Fatal(err)
	}
	if !o.Outlier.Disabled || !o.Breaker.Disabled || o.Outlier.PanicThreshold != 7 || o.Breaker.HalfOpenRequests != 3 ||
		o.RetryBudget.Ratio != 0.7 || o.MaxInFlight != 42 {
		t.Fatalf("tuned values not carried: %+v %+v %+v %d", o.Outlier, o.Breaker, o.RetryBudget, o.MaxInFlight)
	}
}

// The minimal config with three instances: one is killed while GETs run, and not one fails;
// the dead instance shows as ejected in /clusters.
func TestMinimalThreeInstancesKillOne(t *testing.T) {
	t.Parallel()
	a, _ := startUpstream(t, "a", nil)
	b, _ := startUpstream(t, "b", nil)
	c, _ := startUpstream(t, "c", nil)
	e := startEdge(t, minimal(hostport(a), hostport(b), hostport(c)))
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 8}}
	t.Cleanup(client.CloseIdleConnections)

	const workers, total, killAt = 4, 800, 200
	var done atomic.Int64
	var mu sync.Mutex
	var failures []string
	fail := func(s string) {
		mu.Lock()
		failures = append(failures, s)
		mu.Unlock()
	}
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for done.Add(1) <= total {
				resp, err := client.Get(e.url + "/")
				if err != nil {
					fail(err.Error())
					continue
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					fail(resp.Status + " " + string(body))
				}
			}
		})
	}
	waitFor(t, "the load to get going", func() bool { return done.Load() >= killAt })
	b.CloseClientConnections() // requests in flight on b see a reset ...
	b.Close()                  // ... and new connections are refused
	wg.Wait()
	if len(failures) > 0 {
		t.Fatalf("%d of %d GETs failed while an instance died; first: %s", len(failures), total, failures[0])
	}
	waitFor(t, "the dead instance to show as ejected", func() bool {
		h := clusterHosts(t, e)[hostport(b)]
		return h.Ejected && !h.Healthy && h.EjectedUntil != nil
	})
}

// An instance that answers 503 to everything is ejected after a handful of its answers and
// /clusters and /metrics say so.
func TestInstanceAnswering503IsEjected(t *testing.T) {
	t.Parallel()
	a, _ := startUpstream(t, "a", nil)
	b, _ := startUpstream(t, "b", nil)
	bad, sawBad := startUpstream(t, "bad", func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	})
	e := startEdge(t, minimal(hostport(a), hostport(b), hostport(bad)))
	start := time.Now()
	for range 45 {
		get(t, e.url+"/", nil)
	}
	sawBad.mu.Lock()
	n := len(sawBad.reqs)
	sawBad.mu.Unlock()
	if n != upstream.DefaultConsecutiveErrors {
		t.Fatalf("the 503 instance got %d requests; want %d, then none after its ejection", n, upstream.DefaultConsecutiveErrors)
	}
	h := clusterHosts(t, e)[hostport(bad)]
	if !h.Ejected || h.Healthy || h.Ejections != 1 || h.EjectedUntil == nil || h.Breaker != "closed" {
		t.Fatalf("/clusters for the 503 instance: %+v", h)
	}
	if until := h.EjectedUntil.Sub(start); until < upstream.DefaultBaseEjectionTime || until > upstream.DefaultBaseEjectionTime+time.Minute {
		t.Fatalf("ejected until %v after the start, want about %v", until, upstream.DefaultBaseEjectionTime)
	}
	if ok := clusterHosts(t, e)[hostport(a)]; ok.Ejected || !ok.Healthy {
		t.Fatalf("a healthy instance: %+v", ok)
	}
	_, metrics := get(t, "http://"+e.admin+"/metrics", nil)
	for _, want := range []string{
		`meshgate_upstream_ejections_total{service="origin"} 1`,
		`meshgate_upstream_hosts_ejected{service="origin"} 1`,
		`meshgate_upstream_breaker_state{host="` + hostport(bad) + `",service="origin"} 0`,
		`meshgate_upstream_retry_budget_exhausted_total{service="origin"} 0`,
	} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// The upstream is told how long it has; a trusted hop's budget caps ours, and an expired one
// is answered 504 without contacting the upstream. An untrusted client's budget is dropped.
func TestDeadlineBudgetHeader(t *testing.T) {
	t.Parallel()
	up, saw := startUpstream(t, "up", nil)
	cfg := strings.Replace(minimal(hostport(up)), "to: [ { service: origin } ]", "to: [ { service: origin } ]\n    timeout: 3s", 1)
	trustedEdge := startEdge(t, trustLoopback(cfg))
	clientEdge := startEdge(t, cfg)
	tests := []struct {
		name   string
		e      *edgeUnderTest
		budget string // incoming header; "" for none
		lo, hi int    // what the upstream must see, ms
		expire bool
	}{
		{"route timeout", trustedEdge, "", 2000, 3000, false},
		{"caller's budget caps it", trustedEdge, "500", 1, 500, false},
		{"a larger budget cannot extend it", trustedEdge, "60000", 2000, 3000, false},
		{"malformed is ignored", trustedEdge, "soon", 2000, 3000, false},
		{"expired", trustedEdge, "0", 0, 0, true},
		{"overdue", trustedEdge, "-25", 0, 0, true},
		{"an untrusted client's budget is dropped", clientEdge, "1", 2000, 3000, false},
		{"an untrusted client cannot expire it", clientEdge, "0", 2000, 3000, false},
	}
	for _, tt := range tests {
		e := tt.e
		saw.mu.Lock()
		before := len(saw.reqs)
		saw.mu.Unlock()
		hdr := map[string]string{}
		if tt.budget != "" {
			hdr[upstream.BudgetHeader] = tt.budget
		}
		resp, body := get(t, e.url+"/", hdr)
		saw.mu.Lock()
		after := len(saw.reqs)
		saw.mu.Unlock()
		if tt.expire {
			if resp.StatusCode != 504 || !strings.Contains(string(body), `"error":"deadline_exceeded"`) {
				t.Errorf("%s: got %d %s, want 504 deadline_exceeded", tt.name, resp.StatusCode, body)
			}
			if after != before {
				t.Errorf("%s: the upstream was contacted", tt.name)
			}
			continue
		}
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d %s", tt.name, resp.StatusCode, body)
		}
		r, _ := saw.last(t)
		vals := r.Header.Values(upstream.BudgetHeader)
		if len(vals) != 1 {
			t.Fatalf("%s: upstream saw budget headers %q", tt.name, vals)
		}
		ms, err := strconv.Atoi(vals[0])
		if err != nil || ms < tt.lo || ms > tt.hi {
			t.Errorf("%s: upstream saw budget %q, want %d..%d", tt.name, vals[0], tt.lo, tt.hi)
		}
	}
}

// A meshgate in front of another (edge → sidecar): the first one's remaining time reaches the
// second as a budget, so the second gives up on the slow service at the same moment instead
// of holding it for its own 10 s timeout after the caller has gone.
func TestBudgetPropagatesThroughTwoHops(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	ended := make(chan time.Time, 1)
	slow, _ := startUpstream(t, "slow", func(_ http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done(): // the inner meshgate hung up
		}
		ended <- time.Now()
	})
	t.Cleanup(func() { close(release) })
	inner := startEdge(t, strings.Replace(trustLoopback(minimal(hostport(slow))), "to: [ { service: origin } ]",
		"to: [ { service: origin } ]\n    timeout: 10s", 1))
	outer := startEdge(t, strings.Replace(minimal(inner.addr), "to: [ { service: origin } ]",
		"to: [ { service: origin } ]\n    timeout: 400ms", 1))
	start := time.Now()
	resp, body := get(t, outer.url+"/", nil)
	if resp.StatusCode != 504 {
		t.Fatalf("got %d %s, want 504", resp.StatusCode, body)
	}
	select {
	case at := <-ended:
		if held := at.Sub(start); held > 3*time.Second {
			t.Fatalf("the slow service was held %v; the inner hop should have given up after ~400ms", held)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the inner hop still waits on the slow service 5s later: the budget did not propagate")
	}
}
