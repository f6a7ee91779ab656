// Package gateway is the assembly of the request engine, for the edge and the sidecar alike: it
// turns one conf.Config into listeners, per-listener route tables, clusters and the admin API,
// and rebuilds the route/cluster generation on reload. One file per concern:
//
//	effective.go  file config + KV documents + sidecar expansion ─▶ the config to run (pure)
//	translate.go  the config to run ─▶ each package's Options (pure; golden-tested)
//	server.go     Server: builds its parts (components) in order, serves, drains, reloads;
//	              unwinds in reverse on a failed start; the one place /ready is computed
//	sidecar.go    what only sidecar mode has (NewSidecar, its Consul registration)
//	discovery.go  the Consul source and the per-generation routing of static vs Consul services
//	mesh.go       Connect: identity, TLS configs, the intentions check of connect listeners
//	kv.go         the KV watch and what each merge applied or rejected
//	register.go   self-registration of an edge, drain-aware
//	policies.go   policies (rate limits, faults, API policies, plugins) built into filters
//
// The request path itself lives in the subpackages: listener (sockets, limits, lingering close),
// route (matching), proxy (trust, hygiene, forwarding, error rendering, request metrics),
// accesslog, admin.
//
//	conf.Config ──▶ Server.build ──▶ proxy.Generation (route.Table + backends + metrics)
//	                    │                 │ atomic swap per listener
//	                    ▼                 ▼
//	          upstream.Manager     listener ─▶ proxy.Handler.Serve ─▶ upstream.Cluster.Do
//	          (clusters by name,
//	           hosts by address)
//
// This package is the only one here that reads conf types. A sidecar is the same engine: one
// engine keeps the two modes from drifting apart, and every resilience, policy and
// observability feature applies to both. docs/architecture.md tells the whole story.
package gateway
