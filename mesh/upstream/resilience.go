package upstream

import (
	"errors"
	"fmt"
	"time"
)

// Resilience defaults. They match conf's documented defaults (docs/resilience.md); a zero field
// in Options takes them, so a cluster is protected even when built by hand.
const (
	DefaultConsecutiveErrors   = 5
	DefaultBaseEjectionTime    = 10 * time.Second
	DefaultMaxEjectionTime     = 5 * time.Minute
	DefaultMaxEjectionPercent  = 50
	DefaultPanicThreshold      = 50
	DefaultBreakerMinRequests  = 20
	DefaultBreakerFailureRatio = 0.5
	DefaultBreakerInterval     = 10 * time.Second
	DefaultBreakerOpenTimeout  = 5 * time.Second
	DefaultBreakerHalfOpen     = 1
	DefaultBudgetRatio         = 0.2
	DefaultBudgetMinPerSecond  = 10
	DefaultBackoffBase         = 25 * time.Millisecond
	DefaultBackoffMax          = 250 * time.Millisecond
	DefaultMaxInFlight         = 10000
)

// BudgetHeader carries the milliseconds left of a request's deadline to the upstream. Cluster.Do
// sets it on every try (or removes it when the request has no deadline); a meshgate receiving
// it caps its own deadline by it.
const BudgetHeader = "X-Meshgate-Budget-Ms"

// OutlierOptions configures passive outlier detection. Zero fields take the defaults.
type OutlierOptions struct {
	Disabled bool
	// ConsecutiveErrors failed tries in a row (5xx answers, connect failures, resets, timeouts,
	// protocol errors) eject a host.
	ConsecutiveErrors int
	// An ejection lasts BaseEjectionTime × the host's ejection count, at most MaxEjectionTime.
	BaseEjectionTime time.Duration
	MaxEjectionTime  time.Duration
	// MaxEjectionPercent of the hosts may be ejected at once; at least one when there are two
	// or more hosts, none when there is only one (ejecting it would change nothing).
	MaxEjectionPercent int
	// PanicThreshold: while fewer than this percent of hosts are not ejected, no host is marked
	// Down and the balancer spreads load over all of them.
	PanicThreshold int
}

// BreakerOptions configures the per-host circuit breaker. Zero fields take the defaults.
type BreakerOptions struct {
	Disabled bool
	// The breaker opens when, within one Interval, at least MinRequests tries completed and
	// FailureRatio of them failed.
	MinRequests  int
	FailureRatio float64
	Interval     time.Duration
	// OpenTimeout is how long it stays open before HalfOpenRequests probes may pass.
	OpenTimeout      time.Duration
	HalfOpenRequests int
}

// RetryBudgetOptions bounds retries per cluster. Zero fields take the defaults.
type RetryBudgetOptions struct {
	// Over the last 10 seconds retries may be at most Ratio × requests; on top of that
	// MinRetriesPerSecond are always allowed per second, so a quiet service can still retry.
	Ratio               float64
	MinRetriesPerSecond int
	// Backoff before retry n is uniformly random in [0, min(BackoffMax, BackoffBase × 2^(n-1))).
	BackoffBase time.Duration
	BackoffMax  time.Duration
}

// now is the cluster's clock for ejection timing and the retry budget window.
func (o *Options) now() time.Time {
	if o.Now != nil {
		return o.Now()
	}
	return time.Now()
}

// resilienceDefaults fills zero resilience fields and rejects values that cannot work.
func (o *Options) resilienceDefaults() error {
	od := &o.Outlier
	setInt(&od.ConsecutiveErrors, DefaultConsecutiveErrors)
	setDur(&od.BaseEjectionTime, DefaultBaseEjectionTime)
	setDur(&od.MaxEjectionTime, DefaultMaxEjectionTime)
	setInt(&od.MaxEjectionPercent, DefaultMaxEjectionPercent)
	setInt(&od.PanicThreshold, DefaultPanicThreshold)
	b := &o.Breaker
	setInt(&b.MinRequests, DefaultBreakerMinRequests)
	if b.FailureRatio == 0 {
		b.FailureRatio = DefaultBreakerFailureRatio
	}
	setDur(&b.Interval, DefaultBreakerInterval)
	setDur(&b.OpenTimeout, DefaultBreakerOpenTimeout)
	setInt(&b.HalfOpenRequests, DefaultBreakerHalfOpen)
	rb := &o.RetryBudget
	if rb.Ratio == 0 {
		rb.Ratio = DefaultBudgetRatio
	}
	setInt(&rb.MinRetriesPerSecond, DefaultBudgetMinPerSecond)
	setDur(&rb.BackoffBase, DefaultBackoffBase)
	setDur(&rb.BackoffMax, DefaultBackoffMax)
	setInt(&o.MaxInFlight, DefaultMaxInFlight)

	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	switch {
	case od.ConsecutiveErrors < 0:
		bad("outlier consecutive errors %d < 0", od.ConsecutiveErrors)
	case od.BaseEjectionTime < 0 || od.MaxEjectionTime < od.BaseEjectionTime:
		bad("outlier ejection times: want 0 < base (%v) <= max (%v)", od.BaseEjectionTime, od.MaxEjectionTime)
	case od.MaxEjectionPercent < 0 || od.MaxEjectionPercent > 100:
		bad("outlier max ejection percent %d not in 1..100", od.MaxEjectionPercent)
	case od.PanicThreshold < 0 || od.PanicThreshold > 100:
		bad("outlier panic threshold %d not in 1..100", od.PanicThreshold)
	}
	switch {
	case b.MinRequests < 0 || b.HalfOpenRequests < 0:
		bad("breaker request counts must be positive")
	case b.FailureRatio < 0 || b.FailureRatio > 1:
		bad("breaker failure ratio %v not in (0, 1]", b.FailureRatio)
	case b.Interval < 0 || b.OpenTimeout < 0:
		bad("breaker durations must be positive")
	}
	switch {
	case rb.Ratio < 0 || rb.MinRetriesPerSecond < 0:
		bad("retry budget ratio and floor must be positive")
	case rb.BackoffBase < 0 || rb.BackoffMax < rb.BackoffBase:
		bad("retry backoff: want 0 < base (%v) <= max (%v)", rb.BackoffBase, rb.BackoffMax)
	}
	if o.MaxInFlight < 0 {
		bad("max in flight %d < 0", o.MaxInFlight)
	}
	return errors.Join(errs...)
}

func setInt(p *int, def int) {
	if *p == 0 {
		*p = def
	}
}

func setDur(p *time.Duration, def time.Duration) {
	if *p == 0 {
		*p = def
	}
}
