package fault

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshgate/meshgate/gateway/filter"
)

// Reason codes rendered in the JSON error body and the access log.
const (
	ReasonAbort        = "fault_abort"
	ReasonDelayTimeout = "fault_delay_timeout"
)

// Metrics is the fault injection counter; create it once per registry and share it across
// config generations.
type Metrics struct {
	injected *prometheus.CounterVec
}

// NewMetrics registers meshgate_fault_injected_total{policy,kind} on reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	if reg == nil {
		return nil, errors.New("fault: a prometheus registerer is required")
	}
	m := &Metrics{injected: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "meshgate_fault_injected_total",
		Help: "Injected faults by policy and kind (delay, abort).",
	}, []string{"policy", "kind"})}
	if err := reg.Register(m.injected); err != nil {
		return nil, fmt.Errorf("fault: register metrics: %w", err)
	}
	return m, nil
}

// Options configures one fault policy. A zero percent disables that fault.
type Options struct {
	Name         string
	Delay        time.Duration
	DelayPercent float64 // 0..100
	AbortStatus  int     // 400..599
	AbortPercent float64 // 0..100
	// Header gates the faults: only requests carrying it (with a non-empty value) are touched.
	Header  string
	Metrics *Metrics // required
	// Rand returns a float in [0, 1); default math/rand/v2.Float64. Tests make it deterministic.
	Rand func() float64
	// Sleep waits d; default time.Sleep. Tests observe it instead of waiting.
	Sleep func(d time.Duration)
	// Now is the clock compared with the request deadline; default time.Now.
	Now func() time.Time
}

// Filter injects the configured faults. Safe for concurrent use; it keeps no state.
type Filter struct {
	opts             Options
	delayed, aborted prometheus.Counter
}

var _ filter.Filter = (*Filter)(nil)

// New checks opts and binds the policy's metric children.
func New(opts Options) (*Filter, error) {
	switch {
	case opts.Metrics == nil:
		return nil, errors.New("fault: metrics are required")
	case opts.Name == "":
		return nil, errors.New("fault: policy name is required")
	case opts.DelayPercent < 0 || opts.DelayPercent > 100 || opts.AbortPercent < 0 || opts.AbortPercent > 100:
		return nil, fmt.Errorf("fault: policy %q: percentages must be within 0..100", opts.Name)
	case opts.DelayPercent > 0 && opts.Delay <= 0:
		return nil, fmt.Errorf("fault: policy %q: delay must be positive (got %s)", opts.Name, opts.Delay)
	case opts.AbortPercent > 0 && (opts.AbortStatus < 400 || opts.AbortStatus > 599):
		return nil, fmt.Errorf("fault: policy %q: abort status must be 400..599 (got %d)", opts.Name, opts.AbortStatus)
	}
	if opts.Rand == nil {
		opts.Rand = rand.Float64
	}
	if opts.Sleep == nil {
		opts.Sleep = time.Sleep
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Filter{
		opts:    opts,
		delayed: opts.Metrics.injected.WithLabelValues(opts.Name, "delay"),
		aborted: opts.Metrics.injected.WithLabelValues(opts.Name, "abort"),
	}, nil
}

// Request delays and/or aborts r as configured.
func (f *Filter) Request(r *filter.Request) filter.Verdict {
	o := &f.opts
	if o.Header != "" && (r.Ctx == nil || len(r.Ctx.Request.Header.Peek(o.Header)) == 0) {
		return filter.Verdict{}
	}
	if hit(o.DelayPercent, o.Rand) {
		f.delayed.Inc()
		d := o.Delay
		if !r.Deadline.IsZero() {
			if left := r.Deadline.Sub(o.Now()); left < d {
				// The client would get a 504 from the route timeout anyway; say why.
				o.Sleep(max(left, 0))
				return filter.Verdict{Status: 504, Reason: ReasonDelayTimeout}
			}
		}
		o.Sleep(d)
	}
	if hit(o.AbortPercent, o.Rand) {
		f.aborted.Inc()
		return filter.Verdict{Status: o.AbortStatus, Reason: ReasonAbort}
	}
	return filter.Verdict{}
}

// hit reports whether this request falls within percent; 0 never draws, 100 always hits.
func hit(percent float64, rnd func() float64) bool {
	switch {
	case percent <= 0:
		return false
	case percent >= 100:
		return true
	}
	return rnd()*100 < percent
}
