package host

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// phase indexes the per-phase metric children.
type phase int

const (
	phaseRequest phase = iota
	phaseResponse
	numPhases
)

var phaseNames = [numPhases]string{"request", "response"}

// result is how one call ended, the `result` label of meshgate_plugin_calls_total.
type result int

const (
	resultOK result = iota
	// resultTimeout: the call's deadline passed (the plugin's timeout or the request's own).
	resultTimeout
	// resultError: the plugin failed the call (an error, a panic, an invalid decision).
	resultError
	// resultUnavailable: no process to call (crashed, restarting, stopped) or its
	// connection broke.
	resultUnavailable
	// resultCircuitOpen: the breaker turned the call away without sending it.
	resultCircuitOpen
	numResults
)

var resultNames = [numResults]string{"ok", "timeout", "error", "unavailable", "circuit_open"}

// metrics are the Manager's metric families; each Plugin binds its children once (see
// pluginMetrics) so a call touches only counters it already holds.
type metrics struct {
	calls    *prometheus.CounterVec
	duration *prometheus.HistogramVec
	restarts *prometheus.CounterVec
	up       *prometheus.GaugeVec
	breaker  *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	if reg == nil {
		return nil, errors.New("plugins/host: a prometheus registerer is required")
	}
	m := &metrics{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshgate_plugin_calls_total",
			Help: "Plugin calls by phase and result: ok, timeout, error, unavailable (process down or restarting), circuit_open (skipped by the breaker).",
		}, []string{"plugin", "phase", "result"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "meshgate_plugin_call_duration_seconds",
			Help: "Time of the plugin calls that were sent (answered, failed or timed out), from the host's side.",
			// From a few tens of microseconds (a stream call on an idle machine) to the
			// longest timeouts anyone configures.
			Buckets: []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1},
		}, []string{"plugin", "phase"}),
		restarts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshgate_plugin_restarts_total",
			Help: "Times a plugin's process was started again after it exited (every attempt, successful or not).",
		}, []string{"plugin"}),
		up: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "meshgate_plugin_up",
			Help: "1 while the plugin's process is running and configured, 0 while it is down or restarting.",
		}, []string{"plugin"}),
		breaker: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "meshgate_plugin_breaker_state",
			Help: "The plugin's circuit breaker: 0 closed, 1 half-open, 2 open.",
		}, []string{"plugin"}),
	}
	for _, c := range []prometheus.Collector{m.calls, m.duration, m.restarts, m.up, m.breaker} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("plugins/host: register metrics: %w", err)
		}
	}
	return m, nil
}

// pluginMetrics are one plugin's children, bound when the plugin is created: WithLabelValues
// hashes its labels and takes the vector's lock, which the hot path must not do per call.
type pluginMetrics struct {
	calls    [numPhases][numResults]prometheus.Counter
	duration [numPhases]prometheus.Observer
	restarts prometheus.Counter
	up       prometheus.Gauge
	breaker  prometheus.Gauge
}

func (m *metrics) bind(name string) *pluginMetrics {
	pm := &pluginMetrics{
		restarts: m.restarts.WithLabelValues(name),
		up:       m.up.WithLabelValues(name),
		breaker:  m.breaker.WithLabelValues(name),
	}
	for ph := range numPhases {
		pm.duration[ph] = m.duration.WithLabelValues(name, phaseNames[ph])
		for res := range numResults {
			pm.calls[ph][res] = m.calls.WithLabelValues(name, phaseNames[ph], resultNames[res])
		}
	}
	return pm
}

// unbind removes a stopped plugin's series, so /metrics lists only the plugins in use.
func (m *metrics) unbind(name string) {
	labels := prometheus.Labels{"plugin": name}
	m.calls.DeletePartialMatch(labels)
	m.duration.DeletePartialMatch(labels)
	m.restarts.DeletePartialMatch(labels)
	m.up.DeletePartialMatch(labels)
	m.breaker.DeletePartialMatch(labels)
}
