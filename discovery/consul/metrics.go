package consul

import (
	"fmt"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshgate/meshgate/internal/keyed"
)

const (
	resultSuccess = "success"
	resultError   = "error"
)

// noEndpoints marks a label whose watches have all stopped: its endpoints gauge is not exported.
const noEndpoints = -1

// metrics are the discovery series. The per-service ones (queries, updates, endpoints) are
// one collector over counts of our own rather than vector children: a child is about 400
// bytes (label pairs, exemplar slot, creation timestamp), three of them a watched service,
// where the counts here are four atomics. At 1000 services that was 1.2 MB of live heap, twice
// that in RSS once the collector's headroom is counted.
type metrics struct {
	watches                                 prometheus.Gauge
	queriesDesc, updatesDesc, endpointsDesc *prometheus.Desc

	// labels keeps a label's counts for the life of the Source, so its counters never go
	// back when a watch stops and starts again. A scrape lists them without a lock (a watch
	// may hold its own locks while it counts).
	labels keyed.Set[labelMetrics]
}

// labelMetrics are one label's counts: a service, "connect:<service>", "kv:<prefix>" or the
// protocols loop's.
type labelMetrics struct {
	label               string
	ok, failed, updates atomic.Uint64
	endpoints           atomic.Int64 // the current set's size, or noEndpoints
}

func newMetrics() *metrics {
	m := &metrics{
		watches: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "meshgate_discovery_consul_watches",
			Help: "Running blocking-query loops (one per watched service and subset), i.e. agent connections held.",
		}),
		queriesDesc: prometheus.NewDesc("meshgate_discovery_consul_queries_total",
			"Consul queries by service (health and connect; kv:<prefix>; config:service-defaults) and result (success, error).",
			[]string{"service", "result"}, nil),
		updatesDesc: prometheus.NewDesc("meshgate_discovery_updates_total",
			"Endpoint sets delivered from Consul because they changed.", []string{"service"}, nil),
		endpointsDesc: prometheus.NewDesc("meshgate_discovery_endpoints",
			"Endpoints in the current set of each watched service.", []string{"service"}, nil),
	}
	return m
}

// of returns label's counts, the same ones every time.
func (m *metrics) of(label string) *labelMetrics {
	return m.labels.Get(label, func() *labelMetrics {
		lm := &labelMetrics{label: label}
		lm.endpoints.Store(noEndpoints)
		return lm
	})
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
	for _, c := range []prometheus.Collector{m.watches, (*labelCollector)(m), gauge} {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("register metrics: %w", err)
		}
	}
	return nil
}

// labelCollector exports the per-label counts. As with a vector, a series that never moved is
// not exported; an endpoints gauge is, while a watch of its label runs, even at zero.
type labelCollector metrics

// Describe implements prometheus.Collector.
func (c *labelCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.queriesDesc
	ch <- c.updatesDesc
	ch <- c.endpointsDesc
}

// Collect implements prometheus.Collector.
func (c *labelCollector) Collect(ch chan<- prometheus.Metric) {
	counter := func(d *prometheus.Desc, n uint64, labels ...string) {
		if n > 0 {
			ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(n), labels...)
		}
	}
	for _, lm := range c.labels.All() {
		counter(c.queriesDesc, lm.ok.Load(), lm.label, resultSuccess)
		counter(c.queriesDesc, lm.failed.Load(), lm.label, resultError)
		counter(c.updatesDesc, lm.updates.Load(), lm.label)
		if n := lm.endpoints.Load(); n != noEndpoints {
			ch <- prometheus.MustNewConstMetric(c.endpointsDesc, prometheus.GaugeValue, float64(n), lm.label)
		}
	}
}
