package upstream

import (
	"errors"
	"math"
	"sync/atomic"

	"github.com/sony/gobreaker/v2"
)

// Outcomes reported to a breaker's done func. They never leave the package.
var (
	errTryFailed   = errors.New("upstream try failed")
	errTryExcluded = errors.New("upstream try not the host's fault")
)

// breaker is one host's circuit breaker. Each try asks it before sending and reports the
// outcome after (see Cluster.attempt for why through Execute rather than the two-step type).
type breaker struct {
	cb   *gobreaker.CircuitBreaker[any]
	opts BreakerOptions
	// state is what meshgate_upstream_breaker_state exports (the Manager's collector reads
	// it): gobreaker numbers closed 0, half-open 1, open 2, as documented.
	state atomic.Int64
}

// newBreaker builds a breaker whose state changes are recorded for the collector and queued
// on sink. OnStateChange runs under gobreaker's mutex, so it only does an atomic store and a
// non-blocking channel send; the Manager's goroutine does the logging.
func newBreaker(service, addr string, o BreakerOptions, sink *eventSink) *breaker {
	minReq, ratio := saturateUint32(o.MinRequests), o.FailureRatio
	b := &breaker{opts: o}
	b.cb = gobreaker.NewCircuitBreaker[any](gobreaker.Settings{
		Name:        addr,
		MaxRequests: saturateUint32(o.HalfOpenRequests),
		Interval:    o.Interval,
		Timeout:     o.OpenTimeout,
		ReadyToTrip: func(c gobreaker.Counts) bool {
			// Completed tries only: gobreaker's Requests also counts tries still in flight,
			// which would dilute the failure ratio exactly when a host turns slow.
			done := c.TotalSuccesses + c.TotalFailures
			return done >= minReq && float64(c.TotalFailures) >= ratio*float64(done)
		},
		OnStateChange: func(_ string, from, to gobreaker.State) {
			b.state.Store(int64(to))
			sink.emit(event{kind: evBreaker, service: service, host: addr, from: from, to: to})
		},
		IsExcluded: func(err error) bool { return errors.Is(err, errTryExcluded) },
	})
	return b
}

// saturateUint32 converts a count for gobreaker, which keeps uint32 counters. The counts are
// validated positive; one past the uint32 range becomes the largest uint32 instead of wrapping.
func saturateUint32(n int) uint32 {
	switch {
	case n <= 0:
		return 0
	case n > math.MaxUint32:
		return math.MaxUint32
	default:
		return uint32(n)
	}
}

// stateName is the breaker state as /clusters shows it.
func stateName(b *breaker) string {
	if b == nil {
		return "disabled"
	}
	return b.cb.State().String()
}
