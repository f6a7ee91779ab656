package promlazy

import (
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestChildrenExistOnlyOnceUsed(t *testing.T) {
	cv := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "c_total", Help: "h"}, []string{"service", "kind"})
	hv := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "h_seconds", Help: "h"}, []string{"route"})
	c := NewCounter(cv, "api", "timeout")
	o := NewObserver(hv, "r")
	for _, col := range []prometheus.Collector{cv, hv} {
		if n := testutil.CollectAndCount(col); n != 0 {
			t.Fatalf("%d series before any use, want 0", n)
		}
	}

	// Concurrent first uses all land in the one series.
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				c.Inc()
			}
			c.Add(0.5)
		})
	}
	wg.Wait()
	if got := testutil.ToFloat64(cv.WithLabelValues("api", "timeout")); got != 804 {
		t.Fatalf("counter = %v, want 804", got)
	}
	o.Observe(0.2)
	o.Observe(0.3)
	if n := testutil.CollectAndCount(hv); n != 1 {
		t.Fatalf("%d histogram series, want 1", n)
	}
	if got := testutil.CollectAndCount(cv); got != 1 {
		t.Fatalf("%d counter series, want 1", got)
	}
}

func TestHotPathDoesNotAllocate(t *testing.T) {
	cv := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "c_total", Help: "h"}, []string{"k"})
	hv := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "h_seconds", Help: "h"}, []string{"k"})
	c, o := NewCounter(cv, "a"), NewObserver(hv, "a")
	c.Inc()
	o.Observe(1)
	if n := testing.AllocsPerRun(1000, func() {
		c.Inc()
		o.Observe(0.01)
	}); n != 0 {
		t.Fatalf("%v allocations per use after the first, want 0", n)
	}
}
