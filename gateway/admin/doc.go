// Package admin owns the operator HTTP API: liveness, readiness, Prometheus metrics and
// read-only views of the effective config, clusters and routes.
//
// It runs on net/http, not fasthttp: it is off the hot path, serves a handful of requests a
// minute, and benefits from net/http's mature ServeMux (method-aware patterns give 405 and 404
// for free) and graceful Shutdown. It binds to loopback by default because /config and /clusters
// describe the deployment.
//
// The package imports nothing internal. Every view is a func supplied by the assembly, which
// keeps admin ignorant of how state is stored and lets each call see the current snapshot:
//
//	edge / sidecar assembly
//	├─ Ready    func() (bool, string) ──▶ GET /ready     200 "ready" | 503 detail
//	├─ Gatherer prometheus.Gatherer   ──▶ GET /metrics   Prometheus text / OpenMetrics
//	├─ Config   func() ([]byte, error) ─▶ GET /config    text/yaml, secrets already redacted
//	├─ Clusters func() any            ──▶ GET /clusters  indented JSON
//	├─ Routes   func() any            ──▶ GET /routes    indented JSON
//	└─ Handle(pattern, h)             ──▶ what the assembly adds: / (package dashboard), /identity,
//	                                      /plugins, /debug/pprof/
//	                                      GET /live      200 "ok" while the process runs
//
// Lifecycle: New validates options; Listen binds (so bind errors surface synchronously and tests
// can use port 0); Serve runs until its ctx ends, then shuts down gracefully within 5s.
package admin
