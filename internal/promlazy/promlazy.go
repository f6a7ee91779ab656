package promlazy

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// child is a vector's child for fixed label values, created by the first get.
type child[C any] struct {
	with   func(...string) C // the vector's WithLabelValues
	labels []string
	p      atomic.Pointer[C]
}

func (c *child[C]) get() C {
	if p := c.p.Load(); p != nil {
		return *p
	}
	// WithLabelValues returns the one child for these labels, so two first uses racing here
	// count into the same series whichever pointer is kept.
	k := c.with(c.labels...)
	c.p.CompareAndSwap(nil, &k)
	return k
}

// Counter is a CounterVec child created by its first Inc or Add.
type Counter struct{ c child[prometheus.Counter] }

// NewCounter binds labels of vec without creating the child.
func NewCounter(vec *prometheus.CounterVec, labels ...string) *Counter {
	return &Counter{child[prometheus.Counter]{with: vec.WithLabelValues, labels: labels}}
}

// Inc adds one.
func (c *Counter) Inc() { c.c.get().Inc() }

// Add adds v (v ≥ 0).
func (c *Counter) Add(v float64) { c.c.get().Add(v) }

// Observer is a HistogramVec child created by its first Observe.
type Observer struct{ c child[prometheus.Observer] }

// NewObserver binds labels of vec without creating the child.
func NewObserver(vec *prometheus.HistogramVec, labels ...string) *Observer {
	return &Observer{child[prometheus.Observer]{with: vec.WithLabelValues, labels: labels}}
}

// Observe records v.
func (o *Observer) Observe(v float64) { o.c.get().Observe(v) }
