// Command consulbench drives and measures the bench harness's (scripts/bench) "consul" scenario: how fast a
// catalog change reaches meshgate's traffic when meshgate watches many Consul services, and
// what watching them costs while nothing happens.
//
// It has two subcommands, because the harness starts (and always stops) meshgate itself:
//
//	consulbench config  renders the meshgate config: one host route per service
//	                    (sNNNN.bench → service sNNNN), discovery.consul, snapshot_dir
//	consulbench run     everything else, on one clock:
//
//	  origins (-origins fasthttp listeners; body = origin number = the instance's identity)
//	     ▲                                   ▲
//	     │ traffic                           │ registered as instances (127.0.0.1:port)
//	  meshgate ◀── 1 blocking query/service ── consul agent -dev ◀── agent API (register,
//	     ▲                                                              deregister)
//	     └── probes: GET http://sNNNN.bench/ ── consulbench ──────────────────┘
//
// Phases of run: start the origins; register -services services with two instances each
// (distinct IDs, instance i of a service on origin (service+i) mod -origins); wait (bounded)
// until meshgate's /metrics shows two endpoints for every service, then probe every route;
// sample meshgate's (and the agent's) CPU and RSS from /proc over an idle window; then
// -changes sequential changes and a burst that changes every service at once.
//
// A change deregisters a service's oldest instance and registers a new one on an origin
// that is in neither of its current instances, so the first answer from that origin proves
// meshgate applied the new set (the deregistration is issued first, so that answer's set no
// longer has the old instance either). Propagation is measured from just before the
// deregister call to the completion of that first answer: it includes the agent API calls,
// the agent's sync to the catalog, the blocking query's return and meshgate's apply — all of
// "catalog change to traffic". The sequential change's route is probed every -poll; in the
// burst, -pollers goroutines share the services, so the resolution is the per-service probe
// interval, which the report gives.
//
// The Markdown report goes to stdout, one summary line to stderr.
package main
