package proxy

import (
	"math/rand/v2"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// The route series are exported exactly as prometheus' own vectors would export the same
// observations: the counters by class and the histogram's buckets, count and sum.
func TestRouteMetricsMatchPrometheusVectors(t *testing.T) {
	m, err := NewMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "meshgate_requests_total", Help: "Downstream requests by route and response status class.",
	}, []string{"route", "class"})
	duration := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "meshgate_request_duration_seconds", Help: "Time from request head parsed to response handed to the server, by route.",
		Buckets: durationBuckets[:],
	}, []string{"route"})

	rng := rand.New(rand.NewPCG(1, 2))
	statuses := []int{200, 201, 204, 301, 404, 429, 500, 503, 101, 0, 99, 600}
	routes := []string{"api", "web", ""}
	var wg sync.WaitGroup
	var mu sync.Mutex // the reference vectors are fed under a lock; ours concurrently
	for w := range 4 {
		seed := rng.Uint64()
		wg.Go(func() {
			r := rand.New(rand.NewPCG(seed, uint64(w)))
			for range 2000 {
				route := routes[r.IntN(len(routes))]
				status := statuses[r.IntN(len(statuses))]
				// Durations spread over every bucket, the bounds themselves included.
				secs := r.ExpFloat64() * 0.05
				if r.IntN(10) == 0 {
					secs = durationBuckets[r.IntN(len(durationBuckets))]
				}
				m.bind(route).observe(status, secs)
				cls := status / 100
				if cls < 1 || cls > 5 {
					cls = 0
				}
				mu.Lock()
				requests.WithLabelValues(route, classLabels[cls]).Inc()
				duration.WithLabelValues(route).Observe(secs)
				mu.Unlock()
			}
		})
	}
	wg.Wait()

	want := exposition(t, requests, duration)
	got := exposition(t, m)
	if got != want {
		t.Fatalf("exposition differs from prometheus' vectors\n got:\n%s\nwant:\n%s", got, want)
	}
}

// exposition is the text format of the collectors, with the sum's last digits dropped: ours and
// prometheus' add the same float64s in different orders.
func exposition(t *testing.T, cs ...prometheus.Collector) string {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	for _, c := range cs {
		reg.MustRegister(c)
	}
	var b strings.Builder
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		for _, mt := range f.GetMetric() {
			if h := mt.GetHistogram(); h != nil {
				s := float64(int64(h.GetSampleSum()*1e6)) / 1e6
				h.SampleSum = &s
				h.CreatedTimestamp = nil
			}
			if c := mt.GetCounter(); c != nil {
				c.CreatedTimestamp = nil
			}
			b.WriteString(f.GetName() + " " + mt.String() + "\n")
		}
	}
	return b.String()
}

// A series that never moved is not exported, the same name binds the same counts in every
// generation, and observing allocates nothing.
func TestRouteMetricsLazyAndShared(t *testing.T) {
	m, err := NewMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	a := m.bind("api")
	m.bind("idle")
	if n := testutil.CollectAndCount(m); n != 0 {
		t.Fatalf("%d series before any request, want 0", n)
	}
	a.observe(200, 0.003)
	if again := m.bind("api"); again != a {
		t.Fatal("a second bind of a route made new counts: a reload would reset its counters")
	}
	if n := testutil.CollectAndCount(m, "meshgate_requests_total"); n != 1 {
		t.Fatalf("%d request series after one 2xx, want 1", n)
	}
	if n := testutil.CollectAndCount(m, "meshgate_request_duration_seconds"); n != 1 {
		t.Fatalf("%d histograms after one request, want 1", n)
	}
	if n := testing.AllocsPerRun(1000, func() { a.observe(503, 0.2) }); n != 0 {
		t.Fatalf("observe allocates %v times, want 0", n)
	}
}
