package promlazy

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// Counter is a CounterVec child created by its first Inc or Add. The zero value counts
// nothing and is safe to use.
type Counter struct {
	vec    *prometheus.CounterVec
	labels []string
	child  atomic.Pointer[counterRef]
}

type counterRef struct{ prometheus.Counter }

// NewCounter binds labels of vec without creating the child.
func NewCounter(vec *prometheus.CounterVec, labels ...string) *Counter {
	return &Counter{vec: vec, labels: labels}
}

// Inc adds one.
func (c *Counter) Inc() {
	if r := c.child.Load(); r != nil {
		r.Inc()
		return
	}
	if k := c.create(); k != nil {
		k.Inc()
	}
}

// Add adds v (v ≥ 0).
func (c *Counter) Add(v float64) {
	if r := c.child.Load(); r != nil {
		r.Add(v)
		return
	}
	if k := c.create(); k != nil {
		k.Add(v)
	}
}

func (c *Counter) create() prometheus.Counter {
	if c.vec == nil {
		return nil
	}
	// WithLabelValues returns the one child for these labels, so two first uses racing here
	// count into the same series whichever pointer is kept.
	k := c.vec.WithLabelValues(c.labels...)
	c.child.CompareAndSwap(nil, &counterRef{k})
	return k
}

// Gauge is a GaugeVec child created by the first Set of a value other than 0: a gauge that was
// only ever 0 is absent, which reads the same in a sum.
type Gauge struct {
	vec    *prometheus.GaugeVec
	labels []string
	child  atomic.Pointer[gaugeRef]
}

type gaugeRef struct{ prometheus.Gauge }

// NewGauge binds labels of vec without creating the child.
func NewGauge(vec *prometheus.GaugeVec, labels ...string) *Gauge {
	return &Gauge{vec: vec, labels: labels}
}

// Set sets the gauge to v.
func (g *Gauge) Set(v float64) {
	if r := g.child.Load(); r != nil {
		r.Set(v)
		return
	}
	if v == 0 || g.vec == nil {
		return
	}
	k := g.vec.WithLabelValues(g.labels...)
	g.child.CompareAndSwap(nil, &gaugeRef{k})
	k.Set(v)
}

// Observer is a HistogramVec child created by its first Observe.
type Observer struct {
	vec    *prometheus.HistogramVec
	labels []string
	child  atomic.Pointer[observerRef]
}

type observerRef struct{ prometheus.Observer }

// NewObserver binds labels of vec without creating the child.
func NewObserver(vec *prometheus.HistogramVec, labels ...string) *Observer {
	return &Observer{vec: vec, labels: labels}
}

// Observe records v.
func (o *Observer) Observe(v float64) {
	if r := o.child.Load(); r != nil {
		r.Observe(v)
		return
	}
	if o.vec == nil {
		return
	}
	k := o.vec.WithLabelValues(o.labels...)
	o.child.CompareAndSwap(nil, &observerRef{k})
	k.Observe(v)
}
