package upstream

import (
	"errors"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/valyala/fasthttp"

	"github.com/meshgate/meshgate/discovery"
	"github.com/meshgate/meshgate/internal/await"
	"github.com/meshgate/meshgate/mesh/lb"
)

func TestNewManagerErrors(t *testing.T) {
	t.Parallel()
	if _, err := NewManager(ManagerOptions{}); err == nil {
		t.Fatal("NewManager without a registerer succeeded")
	}
	reg := prometheus.NewRegistry()
	first, err := NewManager(ManagerOptions{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	first.Close()
	first.Close() // idempotent
	_, err = NewManager(ManagerOptions{Registerer: reg})
	var are prometheus.AlreadyRegisteredError
	if !errors.As(err, &are) || !strings.Contains(err.Error(), "register metrics") {
		t.Fatalf("second manager on one registry: err = %v", err)
	}
}

func TestEnsureValidates(t *testing.T) {
	t.Parallel()
	m, _ := newManager(t)
	tests := []struct {
		name string
		opts Options
		want string
	}{
		{"no name", Options{Policy: lb.NewRoundRobin()}, "needs a name"},
		{"no policy", Options{Name: "api"}, `"api": no load-balancing policy`},
		{"ejection times", Options{Name: "api", Policy: lb.NewRoundRobin(),
			Outlier: OutlierOptions{BaseEjectionTime: time.Minute, MaxEjectionTime: time.Second}}, "ejection times"},
		{"ejection percent", Options{Name: "api", Policy: lb.NewRoundRobin(),
			Outlier: OutlierOptions{MaxEjectionPercent: 101}}, "max ejection percent"},
		{"failure ratio", Options{Name: "api", Policy: lb.NewRoundRobin(),
			Breaker: BreakerOptions{FailureRatio: 1.5}}, "failure ratio"},
		{"backoff", Options{Name: "api", Policy: lb.NewRoundRobin(),
			RetryBudget: RetryBudgetOptions{BackoffBase: time.Second, BackoffMax: time.Millisecond}}, "retry backoff"},
		{"in flight", Options{Name: "api", Policy: lb.NewRoundRobin(), MaxInFlight: -1}, "max in flight"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if _, err := m.Ensure(tt.opts); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestEnsureDefaultsAndIdentity(t *testing.T) {
	t.Parallel()
	m, _ := newManager(t)
	c1, err := m.Ensure(Options{Name: "svc", Policy: lb.NewRoundRobin()})
	if err != nil {
		t.Fatal(err)
	}
	if got := c1.Options().Retry; got.Attempts != DefaultRetry().Attempts || got.On != DefaultRetry().On {
		t.Fatalf("retry = %+v, want the default", got)
	}
	if c1.Name() != "svc" {
		t.Fatalf("name = %q", c1.Name())
	}
	c2, err := m.Ensure(Options{Name: "svc", Policy: lb.NewRandom(), Retry: RetryPolicy{Attempts: 4, On: Retry5xx}})
	if err != nil {
		t.Fatal(err)
	}
	if c1 != c2 {
		t.Fatal("re-Ensure returned a different cluster")
	}
	if got := c1.Options().Retry; got.Attempts != 4 || got.On != Retry5xx {
		t.Fatalf("retry after re-Ensure = %+v", got)
	}
}

// A new balancing policy reuses every host: its connections and statistics survive.
func TestEnsureNewPolicyKeepsHosts(t *testing.T) {
	t.Parallel()
	m, _ := newManager(t)
	a, b := startServer(t, nil), startServer(t, nil)
	c := newCluster(t, m, Options{}, a.addr, b.addr)
	for range 4 {
		if _, _, err := do(t, c, fasthttp.MethodGet, &Call{}); err != nil {
			t.Fatal(err)
		}
	}
	before := hostsOf(c)
	if _, err := m.Ensure(Options{Name: "svc", Policy: lb.NewP2CEWMA(), ConnectTimeout: time.Second}); err != nil {
		t.Fatal(err)
	}
	after := hostsOf(c)
	if len(after) != 2 {
		t.Fatalf("hosts after re-Ensure: %d", len(after))
	}
	var reqs uint64
	for addr, h := range after {
		if before[addr] != h {
			t.Fatalf("host %s was rebuilt by a policy change", addr)
		}
		reqs += h.Requests.Load()
	}
	if reqs != 4 {
		t.Fatalf("requests after re-Ensure = %d, want 4 (statistics survive)", reqs)
	}
	if st := c.Status(); st.Policy != lb.P2CEWMAName || st.Source != "test" {
		t.Fatalf("status policy %q source %q", st.Policy, st.Source)
	}
}

func TestEnsureTransportChangeRebuildsHosts(t *testing.T) {
	t.Parallel()
	base := Options{Name: "svc", Policy: lb.NewRoundRobin(), ConnectTimeout: time.Second, IdleTimeout: time.Minute, MaxConnsPerHost: 10}
	tests := []struct {
		name   string
		change func(*Options)
		keep   bool
	}{
		{"connect timeout", func(o *Options) { o.ConnectTimeout = 2 * time.Second }, false},
		{"idle timeout", func(o *Options) { o.IdleTimeout = time.Second }, false},
		{"max conns", func(o *Options) { o.MaxConnsPerHost = 11 }, false},
		{"retry only", func(o *Options) { o.Retry = RetryPolicy{Attempts: 3, On: Retry5xx} }, true},
		{"response limit only", func(o *Options) { o.MaxResponseBytes = 1 << 20 }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m, _ := newManager(t)
			up := startServer(t, nil)
			c := newCluster(t, m, base, up.addr)
			old := hostsOf(c)[up.addr]
			opts := base
			tt.change(&opts)
			if _, err := m.Ensure(opts); err != nil {
				t.Fatal(err)
			}
			nh := hostsOf(c)[up.addr]
			if nh == nil {
				t.Fatal("host disappeared")
			}
			if tt.keep {
				if nh != old {
					t.Fatal("host rebuilt though no transport setting changed")
				}
				return
			}
			if nh == old || nh.transport == old.transport {
				t.Fatal("transport setting changed but the host kept its client")
			}
			if p := hostPool(nh); p.max != opts.MaxConnsPerHost || p.idleTimeout != opts.IdleTimeout {
				t.Fatalf("new pool: max conns %d idle %v", p.max, p.idleTimeout)
			}
			if _, _, err := do(t, c, fasthttp.MethodGet, &Call{}); err != nil {
				t.Fatalf("Do on rebuilt host: %v", err)
			}
		})
	}
}

func TestApplyKeepsSurvivingHosts(t *testing.T) {
	t.Parallel()
	m, _ := newManager(t)
	c := newCluster(t, m, Options{}, "10.0.0.1:80", "10.0.0.2:80")
	before := hostsOf(c)
	before["10.0.0.2:80"].Requests.Store(7)

	c.Apply(discovery.Set{Service: "svc", Source: "consul", Endpoints: []discovery.Endpoint{
		{Address: "10.0.0.3:80", Weight: 1}, {Address: "10.0.0.2:80", Weight: 1},
		{Address: "10.0.0.3:80", Weight: 5}, // duplicate: the first one wins
	}})
	after := hostsOf(c)
	if len(after) != 2 || after["10.0.0.1:80"] != nil {
		t.Fatalf("hosts after apply: %v", keys(after))
	}
	if after["10.0.0.2:80"] != before["10.0.0.2:80"] || after["10.0.0.2:80"].Requests.Load() != 7 {
		t.Fatal("a host that stayed was replaced")
	}
	if h := after["10.0.0.3:80"]; h == nil || h.Weight != 1 {
		t.Fatalf("new host: %+v", h)
	}
	st := c.Status()
	if st.Source != "consul" || len(st.Hosts) != 2 || st.Hosts[0].Address != "10.0.0.2:80" || st.Hosts[1].Address != "10.0.0.3:80" {
		t.Fatalf("status = %+v; want hosts sorted by address", st)
	}
}

func TestApplyWeightChangeKeepsClient(t *testing.T) {
	t.Parallel()
	m, _ := newManager(t)
	c := newCluster(t, m, Options{}, "10.0.0.1:80")
	old := hostsOf(c)["10.0.0.1:80"]
	c.Apply(discovery.Set{Endpoints: []discovery.Endpoint{{Address: "10.0.0.1:80", Weight: 3}}})
	nh := hostsOf(c)["10.0.0.1:80"]
	if nh.Weight != 3 || nh.transport != old.transport {
		t.Fatalf("weight %d, same client %v; want weight 3 on the same connection pool", nh.Weight, nh.transport == old.transport)
	}
	// Weight 0 from discovery means 1, and is then no change at all.
	c.Apply(discovery.Set{Endpoints: []discovery.Endpoint{{Address: "10.0.0.1:80", Weight: 0}}})
	h1 := hostsOf(c)["10.0.0.1:80"]
	c.Apply(discovery.Set{Endpoints: []discovery.Endpoint{{Address: "10.0.0.1:80", Weight: 1}}})
	if h1.Weight != 1 || hostsOf(c)["10.0.0.1:80"] != h1 {
		t.Fatal("weight 0 was not treated as 1")
	}
}

func TestRetainAndStatuses(t *testing.T) {
	t.Parallel()
	m, _ := newManager(t)
	up := startServer(t, nil)
	for _, name := range []string{"zeta", "alpha", "mid"} {
		newCluster(t, m, Options{Name: name}, up.addr)
	}
	alpha, _ := m.Ensure(Options{Name: "alpha", Policy: lb.NewRoundRobin()})
	if _, _, err := do(t, alpha, fasthttp.MethodGet, &Call{}); err != nil {
		t.Fatal(err)
	}
	hostsOf(alpha)[up.addr].SetDown(true)

	sts := m.Statuses()
	var names []string
	for _, s := range sts {
		names = append(names, s.Name)
	}
	if strings.Join(names, ",") != "alpha,mid,zeta" {
		t.Fatalf("statuses order = %v", names)
	}
	h := sts[0].Hosts[0]
	if sts[0].Policy != lb.RoundRobinName || h.Address != up.addr || h.Weight != 1 || h.Healthy ||
		h.Requests != 1 || h.Errors != 0 || h.InFlight != 0 || h.EWMAms <= 0 || h.Conns != 1 {
		t.Fatalf("alpha status = %+v host %+v", sts[0], h)
	}

	zeta, _ := m.Ensure(Options{Name: "zeta", Policy: lb.NewRoundRobin()})
	m.Retain([]string{"zeta"})
	sts = m.Statuses()
	if len(sts) != 1 || sts[0].Name != "zeta" {
		t.Fatalf("after Retain: %+v", sts)
	}
	if again, _ := m.Ensure(Options{Name: "zeta", Policy: lb.NewRoundRobin()}); again != zeta {
		t.Fatal("a retained cluster was replaced")
	}
	if again, _ := m.Ensure(Options{Name: "alpha", Policy: lb.NewRoundRobin()}); again == alpha {
		t.Fatal("a dropped cluster came back instead of a new one")
	}
	// A dropped cluster's idle connections are closed.
	waitFor(t, "alpha's idle connection to close", func() bool { return hostsOf(alpha)[up.addr].transport.ConnsCount() == 0 })
}

func TestMetricsExposed(t *testing.T) {
	t.Parallel()
	m, reg := newManager(t)
	up := startServer(t, nil)
	dead := closedAddr(t)
	c := newCluster(t, m, Options{Policy: preferFirst{dead}}, dead, up.addr)
	call := &Call{Idempotent: true, Replayable: true}
	if _, _, err := do(t, c, fasthttp.MethodGet, call); err != nil {
		t.Fatal(err)
	}
	const want = `
# HELP meshgate_upstream_retries_total Requests re-sent to an upstream after a failed try.
# TYPE meshgate_upstream_retries_total counter
meshgate_upstream_retries_total{service="svc"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "meshgate_upstream_retries_total"); err != nil {
		t.Fatal(err)
	}
	if got := seriesValue(t, m, "errors", "svc", "connect"); got != 1 {
		t.Fatalf(`errors_total{kind="connect"} = %v`, got)
	}
	// Every kind is pre-created so dashboards see zeros, not gaps.
	if n, err := testutil.GatherAndCount(reg, "meshgate_upstream_errors_total"); err != nil || n != 8 {
		t.Fatalf("errors_total series = %d (%v), want 8", n, err)
	}
}

// Many requests while discovery swaps the endpoint set and reloads change the policy and
// transport: no request sees a torn state and none fails while a live host exists.
func TestConcurrentDoAndApply(t *testing.T) {
	t.Parallel()
	m, _ := newManager(t)
	ups := []*upstreamServer{startServer(t, nil), startServer(t, nil), startServer(t, nil)}
	c := newCluster(t, m, Options{}, ups[0].addr, ups[1].addr)
	sets := []discovery.Set{set(ups[0].addr, ups[1].addr), set(ups[1].addr, ups[2].addr), set(ups[2].addr), set(ups[0].addr, ups[1].addr, ups[2].addr)}
	policies := []lb.Policy{lb.NewRoundRobin(), lb.NewLeastRequest(), lb.NewP2CEWMA(), lb.NewRandom()}

	const workers, perWorker = 8, 100
	var wg sync.WaitGroup
	var ok, failed atomic.Int64
	var firstErr atomic.Value
	for range workers {
		wg.Go(func() {
			req := fasthttp.AcquireRequest()
			defer fasthttp.ReleaseRequest(req)
			resp := fasthttp.AcquireResponse()
			defer fasthttp.ReleaseResponse(resp)
			for i := range perWorker {
				prepare(req, fasthttp.MethodGet, "")
				call := &Call{Hash: uint64(i), Idempotent: true, Replayable: true}
				if err := c.Do(req, resp, call); err != nil || resp.StatusCode() != 200 {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, errors.Join(err, errors.New(call.Address)))
					continue
				}
				_ = resp.Body()
				ok.Add(1)
			}
		})
	}
	finished := func() bool { return ok.Load()+failed.Load() == workers*perWorker }
	swaps := 0
	wg.Go(func() {
		// One swap per finished request at most, so requests and swaps interleave however
		// many CPUs there are, without sleeping.
		for last := int64(-1); !finished(); runtime.Gosched() {
			done := ok.Load() + failed.Load()
			if done == last {
				continue
			}
			last = done
			swaps++
			c.Apply(sets[swaps%len(sets)])
			if swaps%10 == 0 {
				// A reload: new policy, and every other time a new transport (fresh pools).
				_, _ = m.Ensure(Options{Name: "svc", Policy: policies[swaps%len(policies)],
					ConnectTimeout: time.Second, IdleTimeout: time.Duration(1+swaps%20/10) * time.Minute})
			}
			_ = m.Statuses()
		}
	})
	wg.Wait()
	if swaps < 10 {
		t.Fatalf("only %d swaps happened during the requests", swaps)
	}
	if failed.Load() != 0 {
		t.Fatalf("%d of %d requests failed; first: %v", failed.Load(), 8*200, firstErr.Load())
	}
}

// Ensure re-applies the current endpoints; it must never put back a set that a concurrent
// Apply has already replaced.
func TestEnsureDoesNotUndoConcurrentApply(t *testing.T) {
	t.Parallel()
	m, _ := newManager(t)
	opts := Options{Name: "svc", Policy: lb.NewRoundRobin(), ConnectTimeout: time.Second}
	c := newCluster(t, m, opts)
	for i := range 2000 {
		want := []string{"10.0.0.1:80", "10.0.0.2:80"}[i%2]
		var wg sync.WaitGroup
		wg.Go(func() { _, _ = m.Ensure(opts) })
		wg.Go(func() { c.Apply(set(want)) })
		wg.Wait()
		if got := keys(hostsOf(c)); len(got) != 1 || got[0] != want {
			t.Fatalf("round %d: hosts = %v after Apply(%s)", i, got, want)
		}
	}
}

func keys(m map[string]*Host) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// seriesValue reads one of the clusters' series as a scrape would: field names the
// clusterCollector's metric (errors, retries, ejections, hostsEjected, breakerRejections,
// budgetExhausted), labels are its label values.
func seriesValue(t *testing.T, m *Manager, field string, labels ...string) float64 {
	t.Helper()
	descs := map[string]*prometheus.Desc{"errors": m.collector.errors, "retries": m.collector.retries,
		"ejections": m.collector.ejections, "hostsEjected": m.collector.hostsEjected,
		"breakerRejections": m.collector.breakerRejections, "budgetExhausted": m.collector.budgetExhausted,
		"breakerState": m.collector.breakerState}
	want, ok := descs[field]
	if !ok {
		t.Fatalf("no series %q", field)
	}
	ch := make(chan prometheus.Metric)
	go func() {
		m.collector.Collect(ch)
		close(ch)
	}()
	found, value := false, 0.0
	for mt := range ch {
		if mt.Desc() != want {
			continue
		}
		var pb dto.Metric
		if err := mt.Write(&pb); err != nil {
			t.Fatal(err)
		}
		got := make([]string, 0, len(pb.GetLabel()))
		for _, lp := range pb.GetLabel() {
			got = append(got, lp.GetValue())
		}
		// Label pairs come sorted by name (kind before service); compare the values as sets.
		slices.Sort(got)
		if w := slices.Sorted(slices.Values(labels)); slices.Equal(got, w) {
			found = true
			value = pb.GetCounter().GetValue() + pb.GetGauge().GetValue()
		}
	}
	if !found {
		t.Fatalf("series %s%v not exported", field, labels)
	}
	return value
}

// TestRetainDropsTheClusterSeries: a cluster that is gone takes its series out of /metrics
// (a stale zero would report a service that no longer exists), and the scrape takes no lock.
func TestRetainDropsTheClusterSeries(t *testing.T) {
	t.Parallel()
	m, reg := newManager(t)
	up := startServer(t, nil)
	newCluster(t, m, Options{}, up.addr)
	if n, err := testutil.GatherAndCount(reg, "meshgate_upstream_errors_total"); err != nil || n != 8 {
		t.Fatalf("errors_total series = %d (%v), want 8", n, err)
	}
	m.Retain(nil)
	for _, name := range []string{"meshgate_upstream_errors_total", "meshgate_upstream_retries_total", "meshgate_upstream_hosts_ejected"} {
		if n, err := testutil.GatherAndCount(reg, name); err != nil || n != 0 {
			t.Fatalf("%s series after Retain(nil) = %d (%v), want 0", name, n, err)
		}
	}
	// The scrape reads the published list: it must not wait for the Manager's lock.
	m.mu.Lock()
	err := await.Returns(10*time.Second, func() error { _, err := reg.Gather(); return err })
	m.mu.Unlock()
	if err != nil {
		t.Fatalf("the scrape with the Manager's lock held: %v", err)
	}
}
