package ratelimit

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	decisions   *prometheus.CounterVec
	redisErrors *prometheus.CounterVec
	fallback    *prometheus.GaugeVec
}

// policyMetrics are one policy's children, bound once so requests only do atomic adds.
type policyMetrics struct {
	allowed, limited, unavailable prometheus.Counter
	redisErrors                   prometheus.Counter
	fallback                      prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (metrics, error) {
	m := metrics{
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshgate_ratelimit_decisions_total",
			Help: "Rate-limit decisions by policy and result (allowed, limited, unavailable: rejected because Redis failed and on_redis_error is closed).",
		}, []string{"policy", "result"}),
		redisErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshgate_ratelimit_redis_errors_total",
			Help: "Failed Redis calls of cluster rate limits, by policy.",
		}, []string{"policy"}),
		fallback: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "meshgate_ratelimit_fallback",
			Help: "1 while a cluster rate limit cannot reach Redis and applies its on_redis_error fallback.",
		}, []string{"policy"}),
	}
	for _, c := range []prometheus.Collector{m.decisions, m.redisErrors, m.fallback} {
		if err := reg.Register(c); err != nil {
			return metrics{}, fmt.Errorf("ratelimit: register metrics: %w", err)
		}
	}
	return m, nil
}

func (m metrics) bind(policy string) policyMetrics {
	return policyMetrics{
		allowed:     m.decisions.WithLabelValues(policy, "allowed"),
		limited:     m.decisions.WithLabelValues(policy, "limited"),
		unavailable: m.decisions.WithLabelValues(policy, "unavailable"),
		redisErrors: m.redisErrors.WithLabelValues(policy),
		fallback:    m.fallback.WithLabelValues(policy),
	}
}

func (m metrics) unbind(policy string) {
	for _, res := range []string{"allowed", "limited", "unavailable"} {
		m.decisions.DeleteLabelValues(policy, res)
	}
	m.redisErrors.DeleteLabelValues(policy)
	m.fallback.DeleteLabelValues(policy)
}
