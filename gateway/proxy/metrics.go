package proxy

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshgate/meshgate/internal/promlazy"
)

// Metrics are the downstream request metrics. Label values are bound once per route per
// config generation so the request path only does atomic loads and adds.
type Metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	ws       wsMetrics // websocket.go
}

// NewMetrics registers the request metrics on reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshgate_requests_total",
			Help: "Downstream requests by route and response status class.",
		}, []string{"route", "class"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "meshgate_request_duration_seconds",
			Help:    "Time from request head parsed to response handed to the server, by route.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"route"}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.duration} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("proxy: register metrics: %w", err)
		}
	}
	var err error
	if m.ws, err = newWSMetrics(reg); err != nil {
		return nil, fmt.Errorf("proxy: register metrics: %w", err)
	}
	return m, nil
}

var classLabels = [...]string{"other", "1xx", "2xx", "3xx", "4xx", "5xx"}

// routeMetrics are one route's bound series, each created when first counted
// (internal/promlazy): a route that never answered a 1xx has no 1xx series, and a route never
// used has none at all.
type routeMetrics struct {
	classes  [len(classLabels)]*promlazy.Counter
	duration *promlazy.Observer
}

func (m *Metrics) bind(route string) *routeMetrics {
	rm := &routeMetrics{duration: promlazy.NewObserver(m.duration, route)}
	for i, c := range classLabels {
		rm.classes[i] = promlazy.NewCounter(m.requests, route, c)
	}
	return rm
}

func (rm *routeMetrics) observe(status int, seconds float64) {
	cls := status / 100
	if cls < 1 || cls > 5 {
		cls = 0
	}
	rm.classes[cls].Inc()
	rm.duration.Observe(seconds)
}
