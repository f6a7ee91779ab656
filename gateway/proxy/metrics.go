package proxy

import (
	"fmt"
	"math"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshgate/meshgate/internal/keyed"
)

// Metrics are the downstream request metrics: meshgate_requests_total{route,class} and
// meshgate_request_duration_seconds{route}. They are one collector over per-route counters of
// our own rather than two vectors: a vector's counter child is about 400 bytes (its label
// pairs, exemplar slot and creation timestamp) and a histogram child about 900, where a
// route's whole series here are 23 atomics. At 1000 routes that was 1.4 MB of live heap,
// twice that in RSS once the collector's headroom is counted. Observing is also cheaper: a
// bucket add and the sum's compare-and-swap, against the histogram child's four atomics.
type Metrics struct {
	requestsDesc, durationDesc *prometheus.Desc

	// routes keeps a route's series across reloads, so its counters never go back; a route
	// dropped by a reload keeps its last values, as a vector's child did.
	routes keyed.Set[routeMetrics]

	ws wsMetrics // websocket.go
}

// durationBuckets are the duration histogram's upper bounds, in seconds.
var durationBuckets = [...]float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

// NewMetrics registers the request metrics on reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		requestsDesc: prometheus.NewDesc("meshgate_requests_total",
			"Downstream requests by route and response status class.", []string{"route", "class"}, nil),
		durationDesc: prometheus.NewDesc("meshgate_request_duration_seconds",
			"Time from request head parsed to response handed to the server, by route.", []string{"route"}, nil),
	}
	if err := reg.Register(m); err != nil {
		return nil, fmt.Errorf("proxy: register metrics: %w", err)
	}
	var err error
	if m.ws, err = newWSMetrics(reg); err != nil {
		return nil, fmt.Errorf("proxy: register metrics: %w", err)
	}
	return m, nil
}

var classLabels = [...]string{"other", "1xx", "2xx", "3xx", "4xx", "5xx"}

// routeMetrics are one route's counts. A series that never moved is not exported: a route
// that never answered a 1xx has no 1xx series, and a route never used has none at all.
type routeMetrics struct {
	route   string
	classes [len(classLabels)]atomic.Uint64
	// buckets[i] counts the durations in (durationBuckets[i-1], durationBuckets[i]]; the last
	// one those above every bound. The count is their sum, so a scrape always sees a count
	// that matches its buckets.
	buckets [len(durationBuckets) + 1]atomic.Uint64
	sumBits atomic.Uint64 // float64 bits of the durations' sum
}

// bind returns route's counts, the same ones for the same name in every generation.
func (m *Metrics) bind(route string) *routeMetrics {
	return m.routes.Get(route, func() *routeMetrics { return &routeMetrics{route: route} })
}

func (rm *routeMetrics) observe(status int, seconds float64) {
	cls := status / 100
	if cls < 1 || cls > 5 {
		cls = 0
	}
	rm.classes[cls].Add(1)
	i := 0
	for i < len(durationBuckets) && seconds > durationBuckets[i] {
		i++
	}
	rm.buckets[i].Add(1)
	for {
		old := rm.sumBits.Load()
		if rm.sumBits.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+seconds)) {
			return
		}
	}
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- m.requestsDesc
	ch <- m.durationDesc
}

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	for _, rm := range m.routes.All() {
		for i := range rm.classes {
			if n := rm.classes[i].Load(); n > 0 {
				ch <- prometheus.MustNewConstMetric(m.requestsDesc, prometheus.CounterValue, float64(n), rm.route, classLabels[i])
			}
		}
		var count uint64
		cumulative := make(map[float64]uint64, len(durationBuckets))
		for i, upper := range durationBuckets {
			count += rm.buckets[i].Load()
			cumulative[upper] = count
		}
		count += rm.buckets[len(durationBuckets)].Load()
		if count == 0 {
			continue
		}
		sum := math.Float64frombits(rm.sumBits.Load())
		ch <- prometheus.MustNewConstHistogram(m.durationDesc, count, sum, cumulative, rm.route)
	}
}
