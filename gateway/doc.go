// Package gateway is the request engine's assembly, for the edge and the sidecar alike: it turns one conf.Config into
// listeners, per-listener route tables, clusters and the admin API, and rebuilds the
// route/cluster generation on reload.
//
//	conf.Config ──▶ Server.build ──▶ proxy.Generation (route.Table + backends + metrics)
//	                    │                 │ atomic swap per listener
//	                    ▼                 ▼
//	          upstream.Manager     listener ─▶ proxy.Handler.Serve ─▶ upstream.Cluster.Do
//	          (clusters by name,
//	           hosts by address)
//
// Subpackages own the pieces: listener (sockets, limits, drain), route (matching), proxy
// (forwarding, header hygiene, error rendering, request metrics), accesslog, admin. This
// package is the only one here that reads conf types; it translates them into each package's
// Options.
//
// A sidecar is the same engine: conf.Config.Expanded has already turned its sidecar block into
// an inbound listener with connect: true, one plaintext listener per upstream, their routes and
// a static local-app service. mesh.go adds what Connect needs (the identity manager, TLS configs
// for connect listeners and Connect clusters, the intentions filter run before routing), and
// register.go registers the app and its connect-proxy. One engine keeps the two modes from
// drifting apart: every resilience, policy and observability feature applies to both.
//
// The config a Server runs is the file config merged with the Consul KV documents under
// discovery.consul.kv_prefix (kv.go): a file reload and a KV change both re-merge and go
// through the same validate-then-swap.
package gateway
