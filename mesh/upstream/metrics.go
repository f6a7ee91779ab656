package upstream

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// counter is one of a cluster's counters: an atomic the request path adds to, read by the
// Manager's collector at scrape time.
type counter struct{ n atomic.Uint64 }

func (c *counter) Inc() { c.n.Add(1) }

func (c *counter) value() float64 { return float64(c.n.Load()) }

// gauge is a cluster's gauge, likewise.
type gauge struct{ v atomic.Int64 }

func (g *gauge) Set(v float64) { g.v.Store(int64(v)) }

// clusterMetrics are one cluster's counts. They are plain atomics in the cluster rather than
// children of metric vectors: a child carries its label pairs, a creation timestamp and its
// own registration, about half a kilobyte, and with thirteen series per cluster a thousand
// clusters held megabytes of heap (and as much again in the collector's headroom) for
// counters that mostly stay 0. Every series is still exported, zeros included, so
// dashboards see zeros, not gaps.
type clusterMetrics struct {
	retries, noHosts, connect, reset, timeout, overflow, tooLarge, protocol, circuitOpen counter
	ejections, breakerRejections, budgetExhausted                                        counter
	hostsEjected                                                                         gauge
}

// errorKinds are meshgate_upstream_errors_total's kind label values, with the counter of each.
var errorKinds = [...]struct {
	kind string
	get  func(*clusterMetrics) *counter
}{
	{"no_hosts", func(m *clusterMetrics) *counter { return &m.noHosts }},
	{"connect", func(m *clusterMetrics) *counter { return &m.connect }},
	{"reset", func(m *clusterMetrics) *counter { return &m.reset }},
	{"timeout", func(m *clusterMetrics) *counter { return &m.timeout }},
	{"overflow", func(m *clusterMetrics) *counter { return &m.overflow }},
	{"too_large", func(m *clusterMetrics) *counter { return &m.tooLarge }},
	{"protocol", func(m *clusterMetrics) *counter { return &m.protocol }},
	{"circuit_open", func(m *clusterMetrics) *counter { return &m.circuitOpen }},
}

// clusterCollector exports every cluster's clusterMetrics and each host's breaker state. Collect reads the Manager's
// published cluster list and each cluster's current host set, and takes no lock: a scrape must
// never wait for a lock held by a goroutine that may wait for the scrape (see
// discovery/consul's noteTrouble). A host that left the set takes its breaker series along.
type clusterCollector struct {
	m                                        *Manager
	retries, errors, ejections, hostsEjected *prometheus.Desc
	breakerRejections, budgetExhausted       *prometheus.Desc
	breakerState                             *prometheus.Desc
}

func newClusterCollector(m *Manager) *clusterCollector {
	svc := []string{"service"}
	return &clusterCollector{
		m:       m,
		retries: prometheus.NewDesc("meshgate_upstream_retries_total", "Requests re-sent to an upstream after a failed try.", svc, nil),
		errors: prometheus.NewDesc("meshgate_upstream_errors_total",
			"Failed upstream tries by kind: connect, reset, timeout, overflow, too_large, protocol, no_hosts, circuit_open.",
			[]string{"service", "kind"}, nil),
		ejections:    prometheus.NewDesc("meshgate_upstream_ejections_total", "Hosts ejected by outlier detection.", svc, nil),
		hostsEjected: prometheus.NewDesc("meshgate_upstream_hosts_ejected", "Hosts currently ejected by outlier detection.", svc, nil),
		breakerRejections: prometheus.NewDesc("meshgate_upstream_breaker_rejections_total",
			"Tries a host's open (or saturated half-open) circuit breaker turned away.", svc, nil),
		budgetExhausted: prometheus.NewDesc("meshgate_upstream_retry_budget_exhausted_total",
			"Retries not made because the service's retry budget was used up.", svc, nil),
		breakerState: prometheus.NewDesc("meshgate_upstream_breaker_state",
			"Per-host circuit breaker state: 0 closed, 1 half-open, 2 open.", []string{"service", "host"}, nil),
	}
}

func (cc *clusterCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{cc.retries, cc.errors, cc.ejections, cc.hostsEjected, cc.breakerRejections, cc.budgetExhausted, cc.breakerState} {
		ch <- d
	}
}

func (cc *clusterCollector) Collect(ch chan<- prometheus.Metric) {
	var cs []*Cluster
	if p := cc.m.list.Load(); p != nil {
		cs = *p
	}
	cv := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	for _, c := range cs {
		cm := &c.metrics
		cv(cc.retries, cm.retries.value(), c.name)
		for _, k := range errorKinds {
			cv(cc.errors, k.get(cm).value(), c.name, k.kind)
		}
		cv(cc.ejections, cm.ejections.value(), c.name)
		cv(cc.breakerRejections, cm.breakerRejections.value(), c.name)
		cv(cc.budgetExhausted, cm.budgetExhausted.value(), c.name)
		ch <- prometheus.MustNewConstMetric(cc.hostsEjected, prometheus.GaugeValue, float64(cm.hostsEjected.v.Load()), c.name)
		for _, h := range c.state.Load().hosts {
			if b := h.health.breaker.Load(); b != nil {
				ch <- prometheus.MustNewConstMetric(cc.breakerState, prometheus.GaugeValue, float64(b.state.Load()), c.name, h.Address)
			}
		}
	}
}
