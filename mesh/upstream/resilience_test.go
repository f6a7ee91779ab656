package upstream

import (
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/valyala/fasthttp"

	"github.com/meshgate/meshgate/mesh/lb"
)

// Three instances under load, one killed mid-way (its connections reset, then refused): with
// nothing but the defaults, not one GET fails, and the dead instance ends up ejected.
func TestKillOneUnderLoad(t *testing.T) {
	t.Parallel()
	m, _ := newManager(t)
	var servers []*httptest.Server
	var addrs []string
	for range 3 {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			_, _ = w.Write([]byte("ok"))
		}))
		t.Cleanup(srv.Close)
		servers = append(servers, srv)
		addrs = append(addrs, strings.TrimPrefix(srv.URL, "http://"))
	}
	c := newCluster(t, m, Options{}, addrs...)

	const workers, total, killAt = 4, 1200, 300
	var ok, failed atomic.Int64
	var firstErr atomic.Value
	killed := make(chan struct{})
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			req := fasthttp.AcquireRequest()
			defer fasthttp.ReleaseRequest(req)
			resp := fasthttp.AcquireResponse()
			defer fasthttp.ReleaseResponse(resp)
			for ok.Load()+failed.Load() < total {
				prepare(req, fasthttp.MethodGet, "")
				call := &Call{Idempotent: true, Replayable: true, Deadline: time.Now().Add(5 * time.Second)}
				if err := c.Do(req, resp, call); err != nil || resp.StatusCode() != 200 {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, errors.Join(err, errors.New(call.Address+" status "+strconv.Itoa(resp.StatusCode()))))
					continue
				}
				_ = resp.Body()
				ok.Add(1)
			}
		})
	}
	wg.Go(func() {
		defer close(killed)
		for ok.Load()+failed.Load() < killAt {
			time.Sleep(time.Millisecond) // polling the load's progress, not synchronising on time
		}
		// Active connections are cut first, so requests in flight see a reset, and new
		// ones are refused.
		servers[1].CloseClientConnections()
		servers[1].Close()
	})
	wg.Wait()
	<-killed
	if failed.Load() != 0 {
		t.Fatalf("%d of %d GETs failed after killing an instance; first: %v", failed.Load(), total, firstErr.Load())
	}
	if hs := hostStatus(t, c, addrs[1]); !hs.Ejected || hs.Healthy {
		t.Fatalf("dead instance not ejected: %+v", hs)
	}
}

// An instance answering 503 to everything is ejected after exactly consecutive_errors
// answers, stays out for base_ejection_time, and returns once healthy.
func TestOutlierEjectsAndReturns(t *testing.T) {
	t.Parallel()
	m, _, logs := newLoggedManager(t)
	clock := newFakeClock()
	good1, good2 := startServer(t, nil), startServer(t, nil)
	bad, failing := switchServer(t, true)
	c := newCluster(t, m, Options{Now: clock.Now}, good1.addr, good2.addr, bad.addr)

	for range 30 {
		if _, _, err := do(t, c, fasthttp.MethodGet, &Call{}); err != nil {
			t.Fatal(err)
		}
	}
	if bad.count() != DefaultConsecutiveErrors {
		t.Fatalf("bad host got %d requests; want exactly %d, then ejection", bad.count(), DefaultConsecutiveErrors)
	}
	hs := hostStatus(t, c, bad.addr)
	if !hs.Ejected || hs.Healthy || hs.Ejections != 1 || hs.EjectedUntil == nil ||
		!hs.EjectedUntil.Equal(clock.Now().Add(DefaultBaseEjectionTime)) {
		t.Fatalf("bad host status %+v; want ejected until now+%v", hs, DefaultBaseEjectionTime)
	}
	if st := c.Status(); st.Ejected != 1 || st.Panic {
		t.Fatalf("cluster status: ejected %d panic %v", st.Ejected, st.Panic)
	}
	if got := seriesValue(t, m, "ejections", "svc"); got != 1 {
		t.Fatalf("ejections_total = %v", got)
	}
	if got := seriesValue(t, m, "hostsEjected", "svc"); got != 1 {
		t.Fatalf("hosts_ejected = %v", got)
	}
	b, err := json.Marshal(c.Status())
	if err != nil || !strings.Contains(string(b), `"ejected_until":"2030-01-01T00:00:10Z"`) ||
		!strings.Contains(string(b), `"breaker":"closed"`) {
		t.Fatalf("status JSON %s (%v)", b, err)
	}
	waitFor(t, "the ejection log line", func() bool { return logs.count("upstream host ejected", bad.addr) == 1 })

	// Not a moment too early.
	clock.Advance(DefaultBaseEjectionTime - time.Nanosecond)
	if !hostStatus(t, c, bad.addr).Ejected {
		t.Fatal("host returned before its ejection time")
	}
	failing.Store(false)
	clock.Advance(time.Nanosecond)
	for range 30 {
		if code, _, err := do(t, c, fasthttp.MethodGet, &Call{}); err != nil || code != 200 {
			t.Fatalf("after return: %d %v", code, err)
		}
	}
	if got := bad.count() - DefaultConsecutiveErrors; got != 10 {
		t.Fatalf("returned host got %d of 30 requests, want its round-robin share of 10", got)
	}
	if hs := hostStatus(t, c, bad.addr); hs.Ejected || !hs.Healthy || hs.Ejections != 1 {
		t.Fatalf("after return: %+v", hs)
	}
	if got := seriesValue(t, m, "hostsEjected", "svc"); got != 0 {
		t.Fatalf("hosts_ejected after return = %v", got)
	}
	waitFor(t, "the return log line", func() bool { return logs.count("returned from ejection", bad.addr) == 1 })
}

// Ejected hosts come back on time even when no request arrives to notice: the Manager's
// ticker sweeps.
func TestEjectionEndsWithoutTraffic(t *testing.T) {
	t.Parallel()
	m, _ := newManager(t)
	clock := newFakeClock()
	good := startServer(t, nil)
	bad := statusServer(t, 503)
	c := newCluster(t, m, Options{Now: clock.Now, Policy: preferFirst{bad.addr}}, good.addr, bad.addr)
	for range DefaultConsecutiveErrors {
		_, _, _ = do(t, c, fasthttp.MethodGet, &Call{})
	}
	h := hostsOf(c)[bad.addr]
	if !h.Down() {
		t.Fatal("bad host not Down after ejection")
	}
	clock.Advance(DefaultBaseEjectionTime)
	waitFor(t, "the ticker to return the host", func() bool { return !h.Down() })
	if got := seriesValue(t, m, "hostsEjected", "svc"); got != 0 {
		t.Fatalf("hosts_ejected = %v", got)
	}
}

// A host that fails again right after each return is ejected for base × n, up to the cap; time
// in service makes it forget one ejection per base_ejection_time.
func TestFlappingEjectionGrows(t *testing.T) {
	t.Parallel()
	m, _ := newManager(t)
	clock := newFakeClock()
	good := startServer(t, nil)
	bad := statusServer(t, 503)
	const base = 10 * time.Second
	// preferFirst ignores Down, so every request goes to the flapping host.
	c := newCluster(t, m, Options{Policy: preferFirst{bad.addr}, Now: clock.Now,
		Outlier: OutlierOptions{BaseEjectionTime: base, MaxEjectionTime: 25 * time.Second},
		Breaker: BreakerOptions{Disabled: true}}, good.addr, bad.addr)

	eject := func() HostStatus {
		t.Helper()
		for range DefaultConsecutiveErrors {
			_, _, _ = do(t, c, fasthttp.MethodGet, &Call{})
		}
		return hostStatus(t, c, bad.addr)
	}
	rounds := []struct {
		ejections int
		lasts     time.Duration
	}{{1, 10 * time.Second}, {2, 20 * time.Second}, {3, 25 * time.Second}, {3, 25 * time.Second}}
	for i, r := range rounds {
		hs := eject()
		if !hs.Ejected || hs.Ejections != r.ejections || hs.EjectedUntil.Sub(clock.Now()) != r.lasts {
			t.Fatalf("round %d: %+v; want ejection %d lasting %v", i, hs, r.ejections, r.lasts)
		}
		clock.Advance(r.lasts)
		if hostStatus(t, c, bad.addr).Ejected {
			t.Fatalf("round %d: still ejected after %v", i, r.lasts)
		}
	}
	// Two base periods in service forgive two of the three ejections.
	clock.Advance(2 * base)
	if hs := eject(); hs.Ejections != 2 || hs.EjectedUntil.Sub(clock.Now()) != 20*time.Second {
		t.Fatalf("after decay: %+v; want ejection 2 lasting 20s", hs)
	}
	if got := seriesValue(t, m, "ejections", "svc"); got != 5 {
		t.Fatalf("ejections_total = %v, want 5", got)
	}
}

func TestMaxEjectionPercent(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		hosts, pct  int
		wantEjected int
	}{
		{"half of four", 4, 50, 2},
		{"at least one of several", 3, 10, 1},
		{"never a single host", 1, 100, 0},
		{"all of three", 3, 100, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m, _, logs := newLoggedManager(t)
			var addrs []string
			for range tt.hosts {
				addrs = append(addrs, statusServer(t, 503).addr)
			}
			c := newCluster(t, m, Options{Now: newFakeClock().Now, Breaker: BreakerOptions{Disabled: true},
				Outlier: OutlierOptions{ConsecutiveErrors: 2, MaxEjectionPercent: tt.pct}}, addrs...)
			for range 20 * tt.hosts {
				_, _, _ = do(t, c, fasthttp.MethodGet, &Call{})
			}
			if st := c.Status(); st.Ejected != tt.wantEjected {
				t.Fatalf("%d hosts ejected, want %d", st.Ejected, tt.wantEjected)
			}
			if got := seriesValue(t, m, "hostsEjected", "svc"); got != float64(tt.wantEjected) {
				t.Fatalf("hosts_ejected = %v", got)
			}
			if tt.wantEjected < tt.hosts && tt.hosts > 1 {
				waitFor(t, "the limit log line", func() bool { return logs.count("max_ejection_percent reached") == 1 })
			}
		})
	}
}

// Three of four hosts fail. With a panic threshold of 50% the third ejection leaves 25%
// healthy, so nothing is Down and load spreads over all four; with a threshold of 1% the one
// healthy host takes everything.
func TestPanicThreshold(t *testing.T) {
	t.Parallel()
	tests := []struct {
		threshold int
		panic     bool
	}{{50, true}, {1, false}}
	for _, tt := range tests {
		t.Run(strconv.Itoa(tt.threshold), func(t *testing.T) {
			t.Parallel()
			m, _, logs := newLoggedManager(t)
			bads := []*upstreamServer{statusServer(t, 503), statusServer(t, 503), statusServer(t, 503)}
			good := startServer(t, nil)
			c := newCluster(t, m, Options{Now: newFakeClock().Now, Breaker: BreakerOptions{Disabled: true},
				Outlier: OutlierOptions{ConsecutiveErrors: 2, MaxEjectionPercent: 100, PanicThreshold: tt.threshold}},
				bads[0].addr, bads[1].addr, bads[2].addr, good.addr)
			for range 40 {
				_, _, _ = do(t, c, fasthttp.MethodGet, &Call{})
			}
			st := c.Status()
			if st.Ejected != 3 || st.Panic != tt.panic {
				t.Fatalf("ejected %d panic %v; want 3, %v", st.Ejected, st.Panic, tt.panic)
			}
			before := 0
			for _, b := range bads {
				before += b.count()
			}
			for range 40 {
				_, _, _ = do(t, c, fasthttp.MethodGet, &Call{})
			}
			after := 0
			for _, b := range bads {
				after += b.count()
				if h := hostsOf(c)[b.addr]; h.Down() == tt.panic {
					t.Fatalf("ejected host Down = %v in panic=%v", h.Down(), tt.panic)
				}
			}
			if tt.panic && after-before != 30 {
				t.Fatalf("in panic the ejected hosts got %d of 40 requests, want 30 (round robin over all)", after-before)
			}
			if !tt.panic && after != before {
				t.Fatalf("ejected hosts got %d requests outside panic", after-before)
			}
			if tt.panic {
				waitFor(t, "the panic log line", func() bool { return logs.count("upstream panic mode: too few healthy hosts") == 1 })
			}
		})
	}
}

// A real failing upstream opens the breaker, which rejects without sending; after
// open_timeout one probe is let through (half-open); a failed probe opens it again, a good
// one closes it. Each state is in Status, the gauge and the log.
func TestBreakerCycle(t *testing.T) {
	t.Parallel()
	m, _, logs := newLoggedManager(t)
	up, failing := switchServer(t, true)
	c := newCluster(t, m, Options{Breaker: BreakerOptions{MinRequests: 4, FailureRatio: 0.5,
		Interval: time.Minute, OpenTimeout: 150 * time.Millisecond, HalfOpenRequests: 1}}, up.addr)
	gauge := func() float64 { return seriesValue(t, m, "breakerState", "svc", up.addr) }
	state := func() string { return hostStatus(t, c, up.addr).Breaker }

	for i := range 4 {
		if code, _, err := do(t, c, fasthttp.MethodGet, &Call{}); err != nil || code != 503 {
			t.Fatalf("request %d: %d %v", i, code, err)
		}
	}
	if s := state(); s != "open" || gauge() != 2 {
		t.Fatalf("after 4 failures: state %s gauge %v", s, gauge())
	}
	if hostStatus(t, c, up.addr).Healthy {
		t.Fatal("host with an open breaker shown healthy")
	}
	start := time.Now()
	if _, _, err := do(t, c, fasthttp.MethodGet, &Call{}); !errors.Is(err, ErrCircuitOpen) {
		t.Fatalf("open breaker: err = %v, want ErrCircuitOpen", err)
	}
	if took := time.Since(start); took > 100*time.Millisecond || up.count() != 4 {
		t.Fatalf("rejection took %v with %d requests sent; want immediate, none sent", took, up.count())
	}
	if got := seriesValue(t, m, "breakerRejections", "svc"); got != 1 {
		t.Fatalf("breaker_rejections_total = %v", got)
	}
	if got := seriesValue(t, m, "errors", "svc", "circuit_open"); got != 1 {
		t.Fatalf(`errors_total{kind="circuit_open"} = %v`, got)
	}

	waitFor(t, "half-open", func() bool { return state() == "half-open" })
	if gauge() != 1 {
		t.Fatalf("half-open gauge = %v", gauge())
	}
	// A failed probe opens it again.
	if code, _, _ := do(t, c, fasthttp.MethodGet, &Call{}); code != 503 || state() != "open" {
		t.Fatalf("failed probe: %d, state %s", code, state())
	}
	waitFor(t, "half-open again", func() bool { return state() == "half-open" })
	failing.Store(false)
	if code, _, err := do(t, c, fasthttp.MethodGet, &Call{}); err != nil || code != 200 {
		t.Fatalf("probe: %d %v", code, err)
	}
	if s := state(); s != "closed" || gauge() != 0 {
		t.Fatalf("after a good probe: state %s gauge %v", s, gauge())
	}
	waitFor(t, "the breaker log lines", func() bool {
		return logs.count("circuit breaker state changed", `"to":"open"`) == 2 &&
			logs.count("circuit breaker state changed", `"to":"half-open"`) == 2 &&
			logs.count("circuit breaker state changed", `"to":"closed"`) == 1
	})
}

// A host whose breaker is open is skipped like a Down one: the request goes elsewhere.
func TestBreakerOpenHostSkipped(t *testing.T) {
	t.Parallel()
	m, _ := newManager(t)
	bad := statusServer(t, 503)
	good := startServer(t, nil)
	c := newCluster(t, m, Options{Policy: preferFirst{bad.addr}, Outlier: OutlierOptions{Disabled: true},
		Breaker: BreakerOptions{MinRequests: 2, OpenTimeout: time.Minute}}, bad.addr, good.addr)
	for range 2 {
		_, _, _ = do(t, c, fasthttp.MethodGet, &Call{})
	}
	for i := range 10 {
		code, body, err := do(t, c, fasthttp.MethodGet, &Call{})
		if err != nil || code != 200 || body != "ok from "+good.addr {
			t.Fatalf("request %d: %d %q %v", i, code, body, err)
		}
	}
	if bad.count() != 2 {
		t.Fatalf("host with an open breaker got %d requests, want 2", bad.count())
	}
	if got := seriesValue(t, m, "breakerRejections", "svc"); got != 10 {
		t.Fatalf("breaker_rejections_total = %v", got)
	}
}

// When every host fails, retries are capped by the budget: at most ratio × requests plus the
// per-second floor, instead of attempts × requests.
func TestRetryBudgetCapsRetries(t *testing.T) {
	t.Parallel()
	m, _ := newManager(t)
	ups := []*upstreamServer{statusServer(t, 503), statusServer(t, 503), statusServer(t, 503)}
	c := newCluster(t, m, Options{Now: newFakeClock().Now, Outlier: OutlierOptions{Disabled: true},
		Breaker:     BreakerOptions{Disabled: true},
		RetryBudget: RetryBudgetOptions{Ratio: 0.2, MinRetriesPerSecond: 10, BackoffBase: time.Millisecond, BackoffMax: time.Millisecond}},
		ups[0].addr, ups[1].addr, ups[2].addr)
	const requests = 100
	for range requests {
		call := &Call{Idempotent: true, Replayable: true, Retry: &RetryPolicy{Attempts: 3, On: RetryGatewayError}}
		if code, _, err := do(t, c, fasthttp.MethodGet, call); err != nil || code != 503 {
			t.Fatalf("got %d %v, want the upstream's 503", code, err)
		}
	}
	hits := 0
	for _, u := range ups {
		hits += u.count()
	}
	if limit := requests + requests*2/10 + 10; hits > limit {
		t.Fatalf("%d upstream hits for %d requests; the budget allows at most %d", hits, requests, limit)
	}
	if hits < requests+10 {
		t.Fatalf("%d upstream hits: the budget's floor and ratio should have allowed some retries", hits)
	}
	retries := seriesValue(t, m, "retries", "svc")
	exhausted := seriesValue(t, m, "budgetExhausted", "svc")
	// Each request either used both retries or was refused once.
	if int(retries) != hits-requests || exhausted < float64(requests)-retries/2 {
		t.Fatalf("retries %v, budget refusals %v for %d extra hits", retries, exhausted, hits-requests)
	}
}

func TestRetryBudgetWindow(t *testing.T) {
	t.Parallel()
	var b retryBudget
	t0 := time.Unix(1_700_000_000, 0)
	for range 100 {
		b.deposit(t0)
	}
	take := func(at time.Time) int {
		n := 0
		for b.withdraw(at, 0.2, 10) {
			n++
			if n > 1000 {
				t.Fatal("budget never ran out")
			}
		}
		return n
	}
	if n := take(t0); n != 20 {
		t.Fatalf("same second: %d retries, want 20 (ratio 0.2 of 100)", n)
	}
	if n := take(t0.Add(time.Second)); n != 10 {
		t.Fatalf("next second: %d retries, want the floor of 10", n)
	}
	// Ten seconds on, the deposits have left the window; the floor still allows 10 a second.
	if n := take(t0.Add(budgetWindow * time.Second)); n != 10 {
		t.Fatalf("after the window: %d retries, want 10", n)
	}
	for range 1000 {
		b.deposit(t0.Add(11 * time.Second))
	}
	if n := take(t0.Add(11 * time.Second)); n != 200-10 {
		// 20 % of 1000, minus the 10 retries of second 10 still in the window.
		t.Fatalf("fresh deposits: %d retries, want 190", n)
	}
}

func TestBackoffBounds(t *testing.T) {
	t.Parallel()
	base, limit := 25*time.Millisecond, 250*time.Millisecond
	for retry, ceiling := range map[int]time.Duration{1: 25 * time.Millisecond, 2: 50 * time.Millisecond,
		3: 100 * time.Millisecond, 4: 200 * time.Millisecond, 5: limit, 60: limit} {
		var top time.Duration
		for range 2000 {
			d := backoff(retry, base, limit)
			if d < 0 || d >= ceiling {
				t.Fatalf("retry %d: backoff %v outside [0, %v)", retry, d, ceiling)
			}
			top = max(top, d)
		}
		if top < ceiling/2 {
			t.Fatalf("retry %d: largest of 2000 draws %v; full jitter should reach near %v", retry, top, ceiling)
		}
	}
	if d := backoff(3, 0, 0); d != 0 {
		t.Fatalf("zero base: %v", d)
	}
}

// A backoff that would end after the deadline is not slept: the request fails at once instead
// of sleeping into a timeout.
func TestBackoffRespectsDeadline(t *testing.T) {
	t.Parallel()
	m, _ := newManager(t)
	a, b := statusServer(t, 503), statusServer(t, 503)
	opts := plain(Options{})
	opts.RetryBudget.BackoffBase, opts.RetryBudget.BackoffMax = 10*time.Second, 10*time.Second
	c := newCluster(t, m, opts, a.addr, b.addr)
	start := time.Now()
	call := &Call{Idempotent: true, Replayable: true, Deadline: start.Add(300 * time.Millisecond),
		Retry: &RetryPolicy{Attempts: 5, On: Retry5xx}}
	code, _, err := do(t, c, fasthttp.MethodGet, call)
	if err != nil || code != 503 {
		t.Fatalf("got %d %v", code, err)
	}
	if took := time.Since(start); took > time.Second {
		t.Fatalf("took %v: a backoff slept past the 300ms deadline", took)
	}
}

// Past max_in_flight a request fails at once with ErrOverflow and reaches no upstream.
func TestMaxInFlight(t *testing.T) {
	t.Parallel()
	m, _ := newManager(t)
	release := make(chan struct{})
	up := startServer(t, func(_ http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	c := newCluster(t, m, Options{MaxInFlight: 1}, up.addr)
	first := make(chan error, 1)
	go func() {
		_, _, err := do(t, c, fasthttp.MethodGet, &Call{})
		first <- err
	}()
	waitFor(t, "the first request to be in flight", func() bool { return up.count() == 1 })
	if st := c.Status(); st.InFlight != 1 {
		t.Fatalf("status in_flight = %d", st.InFlight)
	}
	start := time.Now()
	_, _, err := do(t, c, fasthttp.MethodGet, &Call{Retry: &RetryPolicy{Attempts: 3, On: RetryConnectFailure}})
	if !errors.Is(err, ErrOverflow) || !strings.Contains(err.Error(), "max_in_flight") {
		t.Fatalf("err = %v, want ErrOverflow (max_in_flight)", err)
	}
	if took := time.Since(start); took > 100*time.Millisecond || up.count() != 1 {
		t.Fatalf("overflow took %v and sent %d requests; want immediate and none", took, up.count()-1)
	}
	if got := seriesValue(t, m, "errors", "svc", "overflow"); got != 1 {
		t.Fatalf(`errors_total{kind="overflow"} = %v`, got)
	}
	close(release)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if _, _, err := do(t, c, fasthttp.MethodGet, &Call{}); err != nil {
		t.Fatalf("after the first finished: %v", err)
	}
}

// A slow upstream costs the request its deadline and no more: 504 (ErrTimeout) on time, and
// the timeout counts against the host.
func TestSlowUpstreamTimesOut(t *testing.T) {
	t.Parallel()
	m, _ := newManager(t)
	up := slowServer(t)
	c := newCluster(t, m, Options{}, up.addr)
	start := time.Now()
	_, _, err := do(t, c, fasthttp.MethodGet, &Call{Idempotent: true, Replayable: true, Deadline: start.Add(200 * time.Millisecond)})
	took := time.Since(start)
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("err = %v, want ErrTimeout", err)
	}
	if took < 200*time.Millisecond || took > 2*time.Second {
		t.Fatalf("timed out after %v, want about 200ms", took)
	}
	if hs := hostStatus(t, c, up.addr); hs.ConsecutiveErrors != 1 {
		t.Fatalf("consecutive errors = %d, want the timeout counted", hs.ConsecutiveErrors)
	}
}

// Every try carries the milliseconds it has left; without a deadline the header is removed.
func TestBudgetHeaderSent(t *testing.T) {
	t.Parallel()
	m, _ := newManager(t)
	var got atomic.Value
	up := startServer(t, func(_ http.ResponseWriter, r *http.Request) {
		got.Store(r.Header.Values(BudgetHeader))
	})
	c := newCluster(t, m, Options{}, up.addr)
	tests := []struct {
		name     string
		deadline time.Duration
		perTry   time.Duration
		lo, hi   int
	}{
		{"route deadline", 2 * time.Second, 0, 1000, 2000},
		{"per-try timeout caps it", 2 * time.Second, 300 * time.Millisecond, 1, 300},
		{"no deadline", 0, 0, -1, -1},
	}
	for _, tt := range tests {
		req := fasthttp.AcquireRequest()
		resp := fasthttp.AcquireResponse()
		prepare(req, fasthttp.MethodGet, "")
		req.Header.Set(BudgetHeader, "999999") // a caller's value never passes through
		call := &Call{Retry: &RetryPolicy{Attempts: 1, PerTryTimeout: tt.perTry}}
		if tt.deadline > 0 {
			call.Deadline = time.Now().Add(tt.deadline)
		}
		if err := c.Do(req, resp, call); err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		fasthttp.ReleaseRequest(req)
		fasthttp.ReleaseResponse(resp)
		vals := got.Load().([]string)
		if tt.lo < 0 {
			if len(vals) != 0 {
				t.Fatalf("%s: header %q sent without a deadline", tt.name, vals)
			}
			continue
		}
		if len(vals) != 1 {
			t.Fatalf("%s: header values %q", tt.name, vals)
		}
		ms, err := strconv.Atoi(vals[0])
		if err != nil || ms < tt.lo || ms > tt.hi {
			t.Fatalf("%s: budget %q, want %d..%d ms", tt.name, vals[0], tt.lo, tt.hi)
		}
	}
}

// Reloads keep ejections and breakers (they belong to the address); switching outlier
// detection off returns every host; a host that leaves takes its breaker series with it.
func TestResilienceAcrossReloads(t *testing.T) {
	t.Parallel()
	m, reg := newManager(t)
	clock := newFakeClock()
	good := startServer(t, nil)
	bad := statusServer(t, 503)
	opts := Options{Name: "svc", Policy: preferFirst{bad.addr}, Now: clock.Now, ConnectTimeout: time.Second}
	c := newCluster(t, m, opts, good.addr, bad.addr)
	for range DefaultConsecutiveErrors {
		_, _, _ = do(t, c, fasthttp.MethodGet, &Call{})
	}
	if !hostStatus(t, c, bad.addr).Ejected {
		t.Fatal("not ejected")
	}
	opts.Policy = lb.NewRoundRobin()
	opts.IdleTimeout = time.Minute // new transport: new *Host values
	if _, err := m.Ensure(opts); err != nil {
		t.Fatal(err)
	}
	if hs := hostStatus(t, c, bad.addr); !hs.Ejected || !hostsOf(c)[bad.addr].Down() {
		t.Fatalf("reload forgot the ejection: %+v", hs)
	}
	if n, _ := testutil.GatherAndCount(reg, "meshgate_upstream_breaker_state"); n != 2 {
		t.Fatalf("breaker_state series = %d, want 2", n)
	}
	opts.Outlier.Disabled = true
	if _, err := m.Ensure(opts); err != nil {
		t.Fatal(err)
	}
	if hs := hostStatus(t, c, bad.addr); hs.Ejected || hostsOf(c)[bad.addr].Down() {
		t.Fatalf("outlier detection off, host still ejected: %+v", hs)
	}
	c.Apply(set(good.addr))
	if n, _ := testutil.GatherAndCount(reg, "meshgate_upstream_breaker_state"); n != 1 {
		t.Fatalf("breaker_state series after a host left = %d, want 1", n)
	}
	opts.Breaker.Disabled = true
	if _, err := m.Ensure(opts); err != nil {
		t.Fatal(err)
	}
	if hs := hostStatus(t, c, good.addr); hs.Breaker != "disabled" {
		t.Fatalf("breaker = %q, want disabled", hs.Breaker)
	}
	if n, _ := testutil.GatherAndCount(reg, "meshgate_upstream_breaker_state"); n != 0 {
		t.Fatalf("breaker_state series with breakers off = %d, want 0", n)
	}
}

// Breakers, outlier accounting, the budget and the deadline header add no allocation to a
// request.
func TestDoResilienceAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector changes allocation counts")
	}
	m, _ := newManager(t)
	up := startServer(t, nil)
	run := func(name string, o Options) func() {
		o.Name = name
		c := newCluster(t, m, o, up.addr)
		req := fasthttp.AcquireRequest()
		t.Cleanup(func() { fasthttp.ReleaseRequest(req) })
		resp := fasthttp.AcquireResponse()
		t.Cleanup(func() { fasthttp.ReleaseResponse(resp) })
		call := &Call{}
		f := func() {
			prepare(req, fasthttp.MethodGet, "")
			*call = Call{Deadline: time.Now().Add(time.Second)}
			if err := c.Do(req, resp, call); err != nil {
				t.Fatal(err)
			}
			_ = resp.Body()
		}
		for range 10 {
			f()
		}
		return f
	}
	fWith, fWithout := run("with", Options{}), run("without", plain(Options{}))
	// AllocsPerRun counts the whole process, the in-process test server included, so other
	// goroutines can only add to a measurement: the least of several is the closest to what Do
	// itself allocates (and a Do that allocates stays above it every time). The two are
	// measured in turns, so a busy spell of the machine does not land on one side only.
	with, without := math.Inf(1), math.Inf(1)
	for range 5 {
		with = min(with, testing.AllocsPerRun(200, fWith))
		without = min(without, testing.AllocsPerRun(200, fWithout))
	}
	if with > without {
		t.Fatalf("Do allocates %.1f times with resilience on, %.1f with it off", with, without)
	}
}
