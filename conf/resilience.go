package conf

import "time"

// Resilience defaults (docs/resilience.md explains each). They are the same numbers as
// mesh/upstream's Default* constants; conf does not import upstream (the schema stays free of
// runtime packages), and gateway/resilience_test.go checks that the two agree.
const (
	defaultConsecutiveErrors   = 5
	defaultBaseEjectionTime    = 10 * time.Second
	defaultMaxEjectionTime     = 5 * time.Minute
	defaultMaxEjectionPercent  = 50
	defaultPanicThreshold      = 50
	defaultBreakerMinRequests  = 20
	defaultBreakerFailureRatio = 0.5
	defaultBreakerInterval     = 10 * time.Second
	defaultBreakerOpenTimeout  = 5 * time.Second
	defaultBreakerHalfOpen     = 1
	defaultBudgetRatio         = 0.2
	defaultBudgetMinPerSecond  = 10
	defaultBackoffBase         = 25 * time.Millisecond
	defaultBackoffMax          = 250 * time.Millisecond
	defaultMaxInFlight         = 10000

	// maxBudgetRatio: ten retries per request is already more than any attempts setting
	// (at most 10 tries) can use; a larger ratio is a typo.
	maxBudgetRatio = 10
)

// resilienceDefaults fills outlier_detection, circuit_breaker, retry_budget and max_in_flight.
// Values are filled even in a disabled block, so the effective config shows what switching it
// back on would mean.
func (s *Service) resilienceDefaults() {
	od := &s.OutlierDetection
	setInt(&od.ConsecutiveErrors, defaultConsecutiveErrors)
	setDur(&od.BaseEjectionTime, defaultBaseEjectionTime)
	setDur(&od.MaxEjectionTime, defaultMaxEjectionTime)
	setInt(&od.MaxEjectionPercent, defaultMaxEjectionPercent)
	setInt(&od.PanicThreshold, defaultPanicThreshold)

	cb := &s.CircuitBreaker
	setInt(&cb.MinRequests, defaultBreakerMinRequests)
	if cb.FailureRatio == 0 {
		cb.FailureRatio = defaultBreakerFailureRatio
	}
	setDur(&cb.Interval, defaultBreakerInterval)
	setDur(&cb.OpenTimeout, defaultBreakerOpenTimeout)
	setInt(&cb.HalfOpenRequests, defaultBreakerHalfOpen)

	rb := &s.RetryBudget
	if rb.Ratio == 0 {
		rb.Ratio = defaultBudgetRatio
	}
	setInt(&rb.MinRetriesPerSecond, defaultBudgetMinPerSecond)
	setDur(&rb.BackoffBase, defaultBackoffBase)
	setDur(&rb.BackoffMax, defaultBackoffMax)

	setInt(&s.MaxInFlight, defaultMaxInFlight)
}

// resilience validates the blocks resilienceDefaults filled. Zero means "default", so after
// defaults only values the user wrote can be out of range.
func (v *validator) resilience(p path, s Service) {
	od, op := s.OutlierDetection, p.key("outlier_detection")
	v.positive(op.key("consecutive_errors"), od.ConsecutiveErrors)
	v.positiveDur(op.key("base_ejection_time"), od.BaseEjectionTime)
	v.positiveDur(op.key("max_ejection_time"), od.MaxEjectionTime)
	if od.BaseEjectionTime > 0 && od.MaxEjectionTime > 0 && od.MaxEjectionTime < od.BaseEjectionTime {
		v.add(op.key("max_ejection_time"), "must not be below base_ejection_time (%s < %s)", od.MaxEjectionTime, od.BaseEjectionTime)
	}
	v.wholePercent(op.key("max_ejection_percent"), od.MaxEjectionPercent)
	v.wholePercent(op.key("panic_threshold"), od.PanicThreshold)

	cb, cp := s.CircuitBreaker, p.key("circuit_breaker")
	v.positive(cp.key("min_requests"), cb.MinRequests)
	if !(cb.FailureRatio > 0 && cb.FailureRatio <= 1) { // also rejects NaN
		v.add(cp.key("failure_ratio"), "must be a ratio above 0 and at most 1 (got %g)", cb.FailureRatio)
	}
	v.positiveDur(cp.key("interval"), cb.Interval)
	v.positiveDur(cp.key("open_timeout"), cb.OpenTimeout)
	v.positive(cp.key("half_open_requests"), cb.HalfOpenRequests)

	rb, rp := s.RetryBudget, p.key("retry_budget")
	if !(rb.Ratio > 0 && rb.Ratio <= maxBudgetRatio) { // also rejects NaN and Inf
		v.add(rp.key("ratio"), "must be above 0 and at most %d (got %g)", maxBudgetRatio, rb.Ratio)
	}
	v.positive(rp.key("min_retries_per_second"), rb.MinRetriesPerSecond)
	v.positiveDur(rp.key("backoff_base"), rb.BackoffBase)
	v.positiveDur(rp.key("backoff_max"), rb.BackoffMax)
	if rb.BackoffBase > 0 && rb.BackoffMax > 0 && rb.BackoffMax < rb.BackoffBase {
		v.add(rp.key("backoff_max"), "must not be below backoff_base (%s < %s)", rb.BackoffMax, rb.BackoffBase)
	}

	v.positive(p.key("max_in_flight"), s.MaxInFlight)
}

func (v *validator) positive(p path, n int) {
	if n <= 0 {
		v.add(p, "must be positive (got %d)", n)
	}
}

func (v *validator) positiveDur(p path, d Duration) {
	if d <= 0 {
		v.add(p, "must be positive (got %s)", d)
	}
}

func (v *validator) wholePercent(p path, n int) {
	if n < 1 || n > 100 {
		v.add(p, "must be a percentage 1..100 (got %d)", n)
	}
}

func setInt(p *int, def int) {
	if *p == 0 {
		*p = def
	}
}
