package consul

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

const (
	resultSuccess = "success"
	resultError   = "error"
)

type metrics struct {
	watches   prometheus.Gauge
	queries   *prometheus.CounterVec
	updates   *prometheus.CounterVec
	endpoints *prometheus.GaugeVec
}

func newMetrics() *metrics {
	return &metrics{
		watches: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "meshgate_discovery_consul_watches",
			Help: "Running blocking-query loops (one per watched service and subset), i.e. agent connections held.",
		}),
		queries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshgate_discovery_consul_queries_total",
			Help: "Consul queries by service (health and connect; kv:<prefix>; config:service-defaults) and result (success, error).",
		}, []string{"service", "result"}),
		updates: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshgate_discovery_updates_total",
			Help: "Endpoint sets delivered from Consul because they changed.",
		}, []string{"service"}),
		endpoints: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "meshgate_discovery_endpoints",
			Help: "Endpoints in the current set of each watched service.",
		}, []string{"service"}),
	}
}

// register adds the collectors and the degraded gauge. degraded is read at scrape time, from
// the same state transitions Health describes, and must take no lock a watch holds while it
// delivers (see noteTrouble).
func (m *metrics) register(reg prometheus.Registerer, degraded func() bool) error {
	if reg == nil {
		return nil
	}
	gauge := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "meshgate_discovery_degraded",
		Help: "1 while a watched service is served from its snapshot only or its last Consul query failed.",
	}, func() float64 {
		if degraded() {
			return 1
		}
		return 0
	})
	for _, c := range []prometheus.Collector{m.watches, m.queries, m.updates, m.endpoints, gauge} {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("register metrics: %w", err)
		}
	}
	return nil
}
