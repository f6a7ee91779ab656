package conf

import (
	"testing"
	"time"
)

// resilienceBase is lines 1-6 of every resilience test config; services start on line 7.
const resilienceBase = `listeners: [ { address: 127.0.0.1:8080 } ]
routes:
  - name: api
    to: [ { service: origin } ]
discovery:
  static: { origin: [ 127.0.0.1:9000 ] }
`

func TestResilienceDefaults(t *testing.T) {
	t.Parallel()
	c := mustParse(t, resilienceBase+`services:
  tuned:
    outlier_detection: { consecutive_errors: 3, max_ejection_percent: 100 }
    circuit_breaker: { disabled: true, failure_ratio: 0.9 }
    retry_budget: { ratio: 0.5, backoff_max: 1s }
    max_in_flight: 50
`)
	wantOutlier := OutlierDetection{ConsecutiveErrors: 5, BaseEjectionTime: Duration(10 * time.Second),
		MaxEjectionTime: Duration(5 * time.Minute), MaxEjectionPercent: 50, PanicThreshold: 50}
	wantBreaker := CircuitBreaker{MinRequests: 20, FailureRatio: 0.5, Interval: Duration(10 * time.Second),
		OpenTimeout: Duration(5 * time.Second), HalfOpenRequests: 1}
	wantBudget := RetryBudget{Ratio: 0.2, MinRetriesPerSecond: 10, BackoffBase: Duration(25 * time.Millisecond),
		BackoffMax: Duration(250 * time.Millisecond)}

	// A service only a route mentions gets every default.
	s := c.Services["origin"]
	if s.OutlierDetection != wantOutlier {
		t.Errorf("outlier_detection = %+v, want %+v", s.OutlierDetection, wantOutlier)
	}
	if s.CircuitBreaker != wantBreaker {
		t.Errorf("circuit_breaker = %+v, want %+v", s.CircuitBreaker, wantBreaker)
	}
	if s.RetryBudget != wantBudget {
		t.Errorf("retry_budget = %+v, want %+v", s.RetryBudget, wantBudget)
	}
	if s.MaxInFlight != 10000 {
		t.Errorf("max_in_flight = %d", s.MaxInFlight)
	}

	// Explicit values stay; the rest of each block is filled, even in a disabled block.
	tuned := c.Services["tuned"]
	wantOutlier.ConsecutiveErrors, wantOutlier.MaxEjectionPercent = 3, 100
	wantBreaker.Disabled, wantBreaker.FailureRatio = true, 0.9
	wantBudget.Ratio, wantBudget.BackoffMax = 0.5, Duration(time.Second)
	if tuned.OutlierDetection != wantOutlier || tuned.CircuitBreaker != wantBreaker || tuned.RetryBudget != wantBudget {
		t.Errorf("tuned = %+v %+v %+v", tuned.OutlierDetection, tuned.CircuitBreaker, tuned.RetryBudget)
	}
	if tuned.MaxInFlight != 50 {
		t.Errorf("tuned max_in_flight = %d", tuned.MaxInFlight)
	}

	// The effective config re-parses to the same values.
	out, err := Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	again, err := parse("effective.yaml", out, nil)
	if err != nil {
		t.Fatalf("effective config does not re-parse: %v\n%s", err, out)
	}
	if g := again.Services["tuned"]; g.OutlierDetection != tuned.OutlierDetection || g.CircuitBreaker != tuned.CircuitBreaker ||
		g.RetryBudget != tuned.RetryBudget || g.MaxInFlight != tuned.MaxInFlight {
		t.Errorf("round trip changed tuned: %+v", g)
	}
}

func TestResilienceErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		yaml string // appended to resilienceBase (line 7 onward)
		want []wantErr
	}{
		{
			name: "outlier detection",
			yaml: `services:
  origin:
    outlier_detection:
      consecutive_errors: -1
      base_ejection_time: 1m
      max_ejection_time: 30s
      max_ejection_percent: 101
      panic_threshold: -5
`,
			want: []wantErr{
				{10, "services.origin.outlier_detection.consecutive_errors", "must be positive (got -1)"},
				{12, "services.origin.outlier_detection.max_ejection_time", "must not be below base_ejection_time (30s < 1m0s)"},
				{13, "services.origin.outlier_detection.max_ejection_percent", "must be a percentage 1..100 (got 101)"},
				{14, "services.origin.outlier_detection.panic_threshold", "must be a percentage 1..100 (got -5)"},
			},
		},
		{
			name: "circuit breaker",
			yaml: `services:
  origin:
    circuit_breaker:
      min_requests: -3
      failure_ratio: 1.5
      interval: -1s
      open_timeout: -2s
      half_open_requests: -1
`,
			want: []wantErr{
				{10, "services.origin.circuit_breaker.min_requests", "must be positive (got -3)"},
				{11, "services.origin.circuit_breaker.failure_ratio", "must be a ratio above 0 and at most 1 (got 1.5)"},
				{12, "services.origin.circuit_breaker.interval", "must be positive (got -1s)"},
				{13, "services.origin.circuit_breaker.open_timeout", "must be positive (got -2s)"},
				{14, "services.origin.circuit_breaker.half_open_requests", "must be positive (got -1)"},
			},
		},
		{
			name: "retry budget and in-flight limit",
			yaml: `services:
  origin:
    retry_budget:
      ratio: .nan
      min_retries_per_second: -1
      backoff_base: 1s
      backoff_max: 100ms
    max_in_flight: -10
`,
			want: []wantErr{
				{10, "services.origin.retry_budget.ratio", "must be above 0 and at most 10 (got NaN)"},
				{11, "services.origin.retry_budget.min_retries_per_second", "must be positive (got -1)"},
				{13, "services.origin.retry_budget.backoff_max", "must not be below backoff_base (100ms < 1s)"},
				{14, "services.origin.max_in_flight", "must be positive (got -10)"},
			},
		},
		{
			name: "unknown key",
			yaml: `services:
  origin:
    outlier_detection: { consecutive_5xx: 3 }
`,
			want: []wantErr{{9, "services.origin.outlier_detection.consecutive_5xx", `unknown key "consecutive_5xx"`}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			checkErrors(t, resilienceBase+tt.yaml, tt.want)
		})
	}
}
